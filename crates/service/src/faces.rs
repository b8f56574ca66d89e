//! Interfaces served on sockets of their own beside `io.credns.Registry`'s: the faces other
//! programs know (systemd's `io.systemd.UserDatabase` and `io.systemd.NamespaceResource`).
//! Each gets a varlink server with the daemon's limits and principals, on its own thread.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;

use credns_varlink::{Interface, Limits};

use crate::daemon::{server_info, Inner, Service};
use crate::Error;

/// A socket of its own and the interfaces served on it.
pub(crate) struct Face {
    pub(crate) listener: UnixListener,
    pub(crate) path: PathBuf,
    pub(crate) interfaces: Vec<Arc<dyn Interface>>,
    /// Bound by the daemon (removed when it stops); a socket the service manager passed is
    /// its, and stays.
    pub(crate) owned: bool,
}

/// Where a face listens: a path the daemon binds (and removes when it stops), or a socket the
/// service manager passed (socket activation), whose path names the service and stays.
#[derive(Debug)]
pub enum FaceSocket {
    /// Bind this path.
    Bind(PathBuf),
    /// Serve this listening socket.
    Passed(UnixListener),
}

impl FaceSocket {
    fn open(self) -> Result<(UnixListener, PathBuf, bool), Error> {
        match self {
            FaceSocket::Bind(p) => Ok((bind(&p)?, p, true)),
            FaceSocket::Passed(l) => {
                let path = l
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_pathname().map(Path::to_path_buf))
                    .unwrap_or_else(|| PathBuf::from("(passed socket)"));
                Ok((l, path, false))
            }
        }
    }
}

/// The service name of a socket: its file name.
fn service_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `io.systemd.UserDatabase` on `at`, names under `prefix`.
pub(crate) fn userdb(at: FaceSocket, inner: &Arc<Inner>, prefix: &str) -> Result<Face, Error> {
    let (listener, path, owned) = at.open()?;
    let iface =
        crate::userdb::UserDbInterface::new(inner.clone(), service_name(&path), prefix.to_string());
    Ok(Face {
        listener,
        path,
        interfaces: vec![Arc::new(iface)],
        owned,
    })
}

/// `io.systemd.NamespaceResource` on `at`, and `io.systemd.UserDatabase` for the service
/// named as the socket.
pub(crate) fn namespace_resource(
    at: FaceSocket,
    inner: &Arc<Inner>,
    prefix: &str,
) -> Result<Face, Error> {
    let (listener, path, owned) = at.open()?;
    let nr = crate::nsresource::NsResourceInterface::new(inner.clone());
    let names =
        crate::userdb::UserDbInterface::new(inner.clone(), service_name(&path), prefix.to_string());
    Ok(Face {
        listener,
        path,
        interfaces: vec![Arc::new(nr), Arc::new(names)],
        owned,
    })
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Bind `path` as `Server::bind` binds the registry's socket (creating its directory, mode 0755; replacing a stale socket nobody answers
/// on; refusing one a daemon still serves), mode 0666.
fn bind(path: &Path) -> Result<UnixListener, Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                .map_err(io_err("chmod", dir))?;
        }
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(Error::Io {
                op: "bind",
                path: path.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "exists and is not a socket; not replacing it",
                ),
            });
        }
        if UnixStream::connect(path).is_ok() {
            return Err(Error::SocketInUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(io_err("remove stale socket", path))?;
    }
    let listener = UnixListener::bind(path).map_err(io_err("bind", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .map_err(io_err("chmod", path))?;
    Ok(listener)
}

/// Serve each face on a thread until `stop` is set; the threads and the paths to remove once
/// they ended (those the daemon bound).
pub(crate) fn serve_each(
    extra: Vec<Face>,
    limits: &Limits,
    service: &Service,
    stop: &Arc<AtomicBool>,
) -> Vec<(JoinHandle<()>, Option<PathBuf>)> {
    extra
        .into_iter()
        .filter_map(
            |Face {
                 listener,
                 path,
                 interfaces,
                 owned,
             }| {
                let mut server = credns_varlink::Server::new(server_info(), limits.clone());
                for iface in interfaces {
                    server.add(iface);
                }
                server.set_principal(service.principal_fn());
                let stop = stop.clone();
                let shown = path.display().to_string();
                std::thread::Builder::new()
                    .name("credns-face".into())
                    .spawn(move || {
                        if let Err(e) = server.serve(listener, &stop) {
                            eprintln!("credns: serving {shown}: {e}");
                        }
                    })
                    .ok()
                    .map(|t| (t, owned.then_some(path)))
            },
        )
        .collect()
}
