//! Interfaces served on sockets of their own beside `io.credns.Registry`'s: the faces other
//! programs know (systemd's `io.systemd.UserDatabase` and `io.systemd.NamespaceResource`).
//! Each gets a varlink server with the daemon's limits and principals, on its own thread.

use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;

use credns_varlink::{Interface, Limits};

use crate::daemon::{server_info, Service};

/// A socket of its own and the interfaces served on it.
pub(crate) struct Face {
    pub(crate) listener: UnixListener,
    pub(crate) path: PathBuf,
    pub(crate) interfaces: Vec<Arc<dyn Interface>>,
}

/// Serve each face on a thread until `stop` is set; the threads and
/// the paths to remove once they ended.
pub(crate) fn serve_each(
    extra: Vec<Face>,
    limits: &Limits,
    service: &Service,
    stop: &Arc<AtomicBool>,
) -> Vec<(JoinHandle<()>, PathBuf)> {
    extra
        .into_iter()
        .filter_map(
            |Face {
                 listener,
                 path,
                 interfaces,
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
                    .map(|t| (t, path))
            },
        )
        .collect()
}
