//! The listening socket: one thread per connection, requests answered in order.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use credns_sys::peer::{peer_cred, recv_with_fds, send_with_fds, MAX_FDS};
use serde_json::{json, Value};

use crate::service::{Caller, Service};
use crate::wire::{
    malformed, next_message, parse_request, reply_text, ErrorReply, IDL, INTERFACE, SERVICE_IDL,
};
use crate::Error;

/// Where the daemon listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/credns/io.credns.Registry";

/// Longest request accepted, in bytes.
const MAX_MESSAGE: usize = 1 << 20;

/// A bound socket and the service it serves.
#[derive(Debug)]
pub struct Server {
    service: Service,
    listener: UnixListener,
    path: PathBuf,
}

impl Server {
    /// Bind `socket` (creating its directory, mode 0755; replacing a stale socket nobody
    /// answers on; refusing one a daemon still serves). The socket is mode 0666: every user
    /// may connect, and each is told apart by `SO_PEERCRED`.
    pub fn bind(socket: impl AsRef<Path>, service: Service) -> Result<Self, Error> {
        let path = socket.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                    op: "create directory",
                    path: dir.into(),
                    source,
                })?;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(
                    |source| Error::Io {
                        op: "chmod",
                        path: dir.into(),
                        source,
                    },
                )?;
            }
        }
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            if !meta.file_type().is_socket() {
                return Err(Error::Io {
                    op: "bind",
                    path,
                    source: std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "exists and is not a socket; not replacing it",
                    ),
                });
            }
            if UnixStream::connect(&path).is_ok() {
                return Err(Error::SocketInUse(path));
            }
            std::fs::remove_file(&path).map_err(|source| Error::Io {
                op: "remove stale socket",
                path: path.clone(),
                source,
            })?;
        }
        let listener = UnixListener::bind(&path).map_err(|source| Error::Io {
            op: "bind",
            path: path.clone(),
            source,
        })?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).map_err(
            |source| Error::Io {
                op: "chmod",
                path: path.clone(),
                source,
            },
        )?;
        Ok(Server {
            service,
            listener,
            path,
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The service.
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// Accept connections forever, each on its own thread; also starts the namespace reaper.
    pub fn run(&self) -> Result<(), Error> {
        let reaper = self.service.clone();
        std::thread::Builder::new()
            .name("credns-reaper".into())
            .spawn(move || reaper.run_reaper())
            .map_err(|source| Error::Io {
                op: "spawn reaper thread",
                path: self.path.clone(),
                source,
            })?;
        loop {
            let (stream, _) = match self.listener.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(Error::Io {
                        op: "accept",
                        path: self.path.clone(),
                        source,
                    })
                }
            };
            let svc = self.service.clone();
            let _ = std::thread::Builder::new()
                .name("credns-conn".into())
                .spawn(move || serve_connection(&svc, stream));
        }
    }
}

/// Answer one connection's requests until it closes or breaks the protocol.
pub(crate) fn serve_connection(svc: &Service, stream: UnixStream) {
    let Ok(cred) = peer_cred(stream.as_fd()) else {
        return;
    };
    let caller = Caller {
        uid: cred.uid,
        pid: cred.pid,
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        while let Some(msg) = next_message(&mut buf) {
            let taken: Vec<Option<OwnedFd>> = fds.drain(..).map(Some).collect();
            match handle(svc, caller, &msg, taken) {
                Handled::Reply(r) => {
                    if send(&stream, &reply_text(&r)).is_err() {
                        return;
                    }
                }
                Handled::Oneway => {}
                Handled::Close(r) => {
                    let _ = send(&stream, &reply_text(&Err(r)));
                    return;
                }
            }
        }
        if buf.len() > MAX_MESSAGE {
            let r = malformed(format!(
                "message longer than {MAX_MESSAGE} bytes without a NUL terminator"
            ));
            let _ = send(&stream, &reply_text(&Err(r)));
            return;
        }
        if fds.len() > 4 * MAX_FDS {
            let r = malformed(format!(
                "{} file descriptors sent without a request to use them",
                fds.len()
            ));
            let _ = send(&stream, &reply_text(&Err(r)));
            return;
        }
        match recv_with_fds(stream.as_fd(), &mut chunk, &mut fds) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn send(stream: &UnixStream, text: &[u8]) -> Result<(), credns_sys::Error> {
    let mut msg = Vec::with_capacity(text.len() + 1);
    msg.extend_from_slice(text);
    msg.push(0);
    send_with_fds(stream.as_fd(), &msg, &[])
}

enum Handled {
    Reply(Result<Value, ErrorReply>),
    Oneway,
    Close(ErrorReply),
}

fn handle(svc: &Service, caller: Caller, msg: &[u8], mut fds: Vec<Option<OwnedFd>>) -> Handled {
    let req = match parse_request(msg) {
        Ok(r) => r,
        Err(e) => return Handled::Close(e),
    };
    let r = dispatch(svc, caller, &req.method, &req.parameters, &mut fds);
    if req.oneway {
        Handled::Oneway
    } else {
        Handled::Reply(r)
    }
}

fn dispatch(
    svc: &Service,
    caller: Caller,
    method: &str,
    params: &Value,
    fds: &mut [Option<OwnedFd>],
) -> Result<Value, ErrorReply> {
    let (iface, name) = method.rsplit_once('.').unwrap_or(("", method));
    match iface {
        "org.varlink.service" => match name {
            "GetInfo" => Ok(json!({
                "vendor": "credns",
                "product": "credns registry daemon",
                "version": env!("CARGO_PKG_VERSION"),
                "url": "https://example.invalid/credns",
                "interfaces": ["org.varlink.service", INTERFACE],
            })),
            "GetInterfaceDescription" => match params.get("interface").and_then(Value::as_str) {
                Some(INTERFACE) => Ok(json!({ "description": IDL })),
                Some("org.varlink.service") => Ok(json!({ "description": SERVICE_IDL })),
                Some(other) => Err(ErrorReply {
                    error: "org.varlink.service.InterfaceNotFound".into(),
                    parameters: json!({"interface": other}),
                }),
                None => Err(ErrorReply {
                    error: "org.varlink.service.InvalidParameter".into(),
                    parameters: json!({"parameter": "interface"}),
                }),
            },
            _ => Err(ErrorReply {
                error: "org.varlink.service.MethodNotFound".into(),
                parameters: json!({"method": method}),
            }),
        },
        INTERFACE => svc.call(caller, name, params, fds),
        _ => Err(ErrorReply {
            error: "org.varlink.service.InterfaceNotFound".into(),
            parameters: json!({"interface": iface}),
        }),
    }
}
