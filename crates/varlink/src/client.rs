//! A blocking varlink client: one call at a time on one connection.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use credns_sys::peer::{recv_with_fds, send_with_fds};
use serde_json::{Map, Value};

use crate::wire::{next_message, request_text, ErrorReply, Request};
use crate::Error;

/// Longest reply accepted, in bytes.
pub const MAX_REPLY: usize = 64 << 20;

/// A connection to a varlink service.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    path: PathBuf,
    buf: Vec<u8>,
}

impl Client {
    /// Connect to the socket at `path` (blocking, no timeouts).
    pub fn connect(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        let stream = UnixStream::connect(&path).map_err(|source| Error::Io {
            op: "connect",
            path: path.clone(),
            source,
        })?;
        Ok(Client {
            stream,
            path,
            buf: Vec::new(),
        })
    }

    /// Connect, giving up after `timeout` (a listener with a full backlog is retried until
    /// then), and use `timeout` for every later read and write.
    pub fn connect_timeout(path: impl AsRef<Path>, timeout: Duration) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        let stream = credns_sys::event::unix_connect_timeout(&path, timeout)?;
        let mut c = Client {
            stream,
            path,
            buf: Vec::new(),
        };
        c.set_timeout(Some(timeout))?;
        Ok(c)
    }

    /// A client on a stream already connected (its path is empty).
    pub fn from_stream(s: UnixStream) -> Self {
        Client {
            stream: s,
            path: PathBuf::new(),
            buf: Vec::new(),
        }
    }

    /// Read and write timeouts (`None`: block forever). A timed-out call fails with an
    /// `EAGAIN` [`Error::Sys`]; the connection is then out of step and should be dropped.
    pub fn set_timeout(&mut self, t: Option<Duration>) -> Result<(), Error> {
        let t = t
            .filter(|d| !d.is_zero())
            .or(t.map(|_| Duration::from_nanos(1)));
        let r = self
            .stream
            .set_read_timeout(t)
            .and_then(|()| self.stream.set_write_timeout(t));
        r.map_err(|source| Error::Io {
            op: "set socket timeout",
            path: self.path.clone(),
            source,
        })
    }

    /// The socket path connected to (empty for [`from_stream`](Self::from_stream)).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn send_request(&mut self, r: &Request, fds: &[BorrowedFd<'_>]) -> Result<(), Error> {
        let mut text = request_text(r);
        text.push(0);
        self.send_raw(&text, fds)
    }

    fn request(method: &str, parameters: Value, oneway: bool, more: bool) -> Request {
        Request {
            method: method.to_string(),
            parameters: match parameters {
                Value::Null => Value::Object(Map::new()),
                p => p,
            },
            oneway,
            more,
            upgrade: false,
        }
    }

    /// Read one reply: `Ok((parameters, continues))` or the remote error.
    fn recv_reply(&mut self) -> Result<(Value, bool), Error> {
        let msg = self.recv_raw()?;
        let v: Value = serde_json::from_slice(&msg)
            .map_err(|e| Error::Protocol(format!("reply is not JSON: {e}")))?;
        let Value::Object(mut obj) = v else {
            return Err(Error::Protocol("reply is not a JSON object".into()));
        };
        let parameters = match obj.remove("parameters") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(p) => p,
        };
        match obj.remove("error") {
            None | Some(Value::Null) => {}
            Some(Value::String(error)) => {
                return Err(Error::Remote(ErrorReply { error, parameters }))
            }
            Some(_) => return Err(Error::Protocol("reply's \"error\" is not a string".into())),
        }
        let continues = matches!(obj.get("continues"), Some(Value::Bool(true)));
        Ok((parameters, continues))
    }

    /// Call `method` (fully qualified) with `parameters` (`Null` is sent as `{}`) and the
    /// file descriptors `fds`: the reply's parameters, or [`Error::Remote`].
    pub fn call(
        &mut self,
        method: &str,
        parameters: Value,
        fds: &[BorrowedFd<'_>],
    ) -> Result<Value, Error> {
        self.send_request(&Self::request(method, parameters, false, false), fds)?;
        let (p, continues) = self.recv_reply()?;
        if continues {
            return Err(Error::Protocol(
                "a reply continues though \"more\" was not asked for".into(),
            ));
        }
        Ok(p)
    }

    /// Call with `"more": true`: the parameters of every reply, up to the first without
    /// `"continues"`. An error reply (even after some replies) is [`Error::Remote`].
    pub fn call_more(
        &mut self,
        method: &str,
        parameters: Value,
        fds: &[BorrowedFd<'_>],
    ) -> Result<Vec<Value>, Error> {
        self.send_request(&Self::request(method, parameters, false, true), fds)?;
        let mut out = Vec::new();
        loop {
            let (p, continues) = self.recv_reply()?;
            out.push(p);
            if !continues {
                return Ok(out);
            }
        }
    }

    /// Call with `"oneway": true`: nothing is read back.
    pub fn call_oneway(&mut self, method: &str, parameters: Value) -> Result<(), Error> {
        self.send_request(&Self::request(method, parameters, true, false), &[])
    }

    /// Send `bytes` as they are (include the NUL terminators), with `fds`.
    pub fn send_raw(&mut self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), Error> {
        send_with_fds(self.stream.as_fd(), bytes, fds)?;
        Ok(())
    }

    /// The next message's JSON text, without its NUL. Descriptors sent by the server are
    /// closed. [`Error::Disconnected`] at end of stream.
    pub fn recv_raw(&mut self) -> Result<Vec<u8>, Error> {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if let Some(m) = next_message(&mut self.buf) {
                return Ok(m);
            }
            if self.buf.len() > MAX_REPLY {
                return Err(Error::Protocol(format!(
                    "reply longer than {MAX_REPLY} bytes"
                )));
            }
            let mut fds: Vec<OwnedFd> = Vec::new();
            match recv_with_fds(self.stream.as_fd(), &mut chunk, &mut fds) {
                Ok(0) => return Err(Error::Disconnected),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(credns_sys::Error::Sys { errno, .. })
                    if errno == credns_sys::Errno::CONNRESET =>
                {
                    return Err(Error::Disconnected)
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The connection.
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }
}
