//! The blocking client of `io.credns.Registry`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use credns_sys::peer::{recv_with_fds, send_with_fds};
use serde_json::{json, Map, Value};

use crate::wire::{
    next_message, request_text, AllocationInfo, ErrorReply, HolderInfo, Range, Request, INTERFACE,
};
use crate::Error;

/// Names an allocation for [`Client::release`] and [`Client::show`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// By number.
    Id(u64),
    /// By name lease.
    Name(String),
}

impl Target {
    /// A number if `s` is one (optionally `#N`), else a name.
    pub fn parse(s: &str) -> Self {
        match s.strip_prefix('#').unwrap_or(s).parse() {
            Ok(n) => Target::Id(n),
            Err(_) => Target::Name(s.to_string()),
        }
    }

    fn params(&self) -> Value {
        match self {
            Target::Id(i) => json!({ "id": i }),
            Target::Name(n) => json!({ "name": n }),
        }
    }
}

/// Options of an allocation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllocOptions {
    /// Ids wanted (the policy's default size if `None`).
    pub size: Option<u64>,
    /// Add a high-window range of the default size.
    pub high: bool,
    /// A label to record.
    pub label: Option<String>,
    /// Write the namespace's `uid_map` and `gid_map` (user-namespace leases only).
    pub write_maps: bool,
}

/// A connection to the daemon. Requests are answered in order; one at a time.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    path: PathBuf,
    buf: Vec<u8>,
}

impl Client {
    /// Connect to the daemon's socket.
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

    /// Connect to the daemon's default socket, [`DEFAULT_SOCKET`](crate::DEFAULT_SOCKET).
    pub fn connect_default() -> Result<Self, Error> {
        Self::connect(crate::DEFAULT_SOCKET)
    }

    /// Call `method` (fully qualified, e.g. `io.credns.Registry.List`) with `parameters` and
    /// `fds` sent along by `SCM_RIGHTS`; the reply's parameters, or the daemon's error as
    /// [`Error::Remote`].
    pub fn call(
        &mut self,
        method: &str,
        parameters: Value,
        fds: &[BorrowedFd<'_>],
    ) -> Result<Value, Error> {
        let mut msg = request_text(&Request {
            method: method.to_string(),
            parameters,
            oneway: false,
            more: false,
        });
        msg.push(0);
        self.send_raw(&msg, fds)?;
        let reply = self.recv_raw()?;
        let v: Value = serde_json::from_slice(&reply)
            .map_err(|e| Error::Protocol(format!("reply is not JSON: {e}")))?;
        let params = v
            .get("parameters")
            .cloned()
            .unwrap_or(Value::Object(Map::new()));
        match v.get("error").and_then(Value::as_str) {
            Some(e) => Err(Error::Remote(ErrorReply {
                error: e.to_string(),
                parameters: params,
            })),
            None => Ok(params),
        }
    }

    /// Send raw bytes (tests of malformed input).
    pub fn send_raw(&mut self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), Error> {
        send_with_fds(self.stream.as_fd(), bytes, fds).map_err(Error::Sys)
    }

    /// Receive one reply's JSON text (without its NUL).
    pub fn recv_raw(&mut self) -> Result<Vec<u8>, Error> {
        let mut chunk = vec![0u8; 64 * 1024];
        let mut fds: Vec<OwnedFd> = Vec::new();
        loop {
            if let Some(msg) = next_message(&mut self.buf) {
                return Ok(msg);
            }
            let n = recv_with_fds(self.stream.as_fd(), &mut chunk, &mut fds)?;
            if n == 0 {
                return Err(Error::Protocol(format!(
                    "{}: the daemon closed the connection",
                    self.path.display()
                )));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn registry(
        &mut self,
        method: &str,
        parameters: Value,
        fds: &[BorrowedFd<'_>],
    ) -> Result<Value, Error> {
        self.call(&format!("{INTERFACE}.{method}"), parameters, fds)
    }

    fn allocation(v: Value) -> Result<AllocationInfo, Error> {
        serde_json::from_value(v.get("allocation").cloned().unwrap_or(Value::Null))
            .map_err(|e| Error::Protocol(format!("reply without an allocation: {e}")))
    }

    fn alloc_params(opts: &AllocOptions) -> Map<String, Value> {
        let mut p = Map::new();
        if let Some(s) = opts.size {
            p.insert("size".into(), s.into());
        }
        if opts.high {
            p.insert("high".into(), true.into());
        }
        if let Some(l) = &opts.label {
            p.insert("label".into(), l.clone().into());
        }
        if opts.write_maps {
            p.insert("writeMaps".into(), true.into());
        }
        p
    }

    /// Allocate a range leased to `name`.
    pub fn allocate_name(
        &mut self,
        name: &str,
        opts: &AllocOptions,
    ) -> Result<AllocationInfo, Error> {
        let mut p = Self::alloc_params(opts);
        p.insert("name".into(), name.into());
        Self::allocation(self.registry("Allocate", Value::Object(p), &[])?)
    }

    /// Allocate a range leased to the user namespace `userns` (an nsfs fd); `member` is a pidfd
    /// of a process inside it (needed when nothing else lives there yet). With
    /// `opts.write_maps` the daemon writes the namespace's maps.
    pub fn allocate_userns(
        &mut self,
        userns: BorrowedFd<'_>,
        member: Option<BorrowedFd<'_>>,
        opts: &AllocOptions,
    ) -> Result<AllocationInfo, Error> {
        let mut p = Self::alloc_params(opts);
        p.insert("userNamespaceFileDescriptor".into(), 0.into());
        let mut fds = vec![userns];
        if let Some(m) = member {
            p.insert("pidFileDescriptor".into(), 1.into());
            fds.push(m);
        }
        Self::allocation(self.registry("Allocate", Value::Object(p), &fds)?)
    }

    /// Record ranges chosen elsewhere under a name lease (root only); `gid` defaults to `uid`.
    pub fn register_name(
        &mut self,
        name: &str,
        uid: Range,
        gid: Option<Range>,
    ) -> Result<AllocationInfo, Error> {
        let mut p = json!({ "name": name, "uid": uid });
        if let Some(g) = gid {
            p["gid"] = json!(g);
        }
        Self::allocation(self.registry("Register", p, &[])?)
    }

    /// Record ranges chosen elsewhere leased to a user namespace (root only).
    pub fn register_userns(
        &mut self,
        userns: BorrowedFd<'_>,
        member: Option<BorrowedFd<'_>>,
        uid: Range,
        gid: Option<Range>,
    ) -> Result<AllocationInfo, Error> {
        let mut p = json!({ "userNamespaceFileDescriptor": 0, "uid": uid });
        if let Some(g) = gid {
            p["gid"] = json!(g);
        }
        let mut fds = vec![userns];
        if let Some(m) = member {
            p["pidFileDescriptor"] = json!(1);
            fds.push(m);
        }
        Self::allocation(self.registry("Register", p, &fds)?)
    }

    /// Release an allocation; returns what was released.
    pub fn release(&mut self, target: &Target) -> Result<AllocationInfo, Error> {
        Self::allocation(self.registry("Release", target.params(), &[])?)
    }

    /// One allocation.
    pub fn show(&mut self, target: &Target) -> Result<AllocationInfo, Error> {
        Self::allocation(self.registry("Show", target.params(), &[])?)
    }

    /// The caller's allocations (all of them for root).
    pub fn list(&mut self) -> Result<Vec<AllocationInfo>, Error> {
        let v = self.registry("List", json!({}), &[])?;
        serde_json::from_value(v.get("allocations").cloned().unwrap_or(Value::Null))
            .map_err(|e| Error::Protocol(format!("reply without allocations: {e}")))
    }

    /// Who holds host id `id`.
    pub fn who(&mut self, id: u32) -> Result<Vec<HolderInfo>, Error> {
        let v = self.registry("Who", json!({ "id": id }), &[])?;
        serde_json::from_value(v.get("holders").cloned().unwrap_or(Value::Null))
            .map_err(|e| Error::Protocol(format!("reply without holders: {e}")))
    }
}
