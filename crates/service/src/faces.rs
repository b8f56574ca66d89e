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

/// Serve each `(listener, path, interface)` on a thread until `stop` is set; the threads and
/// the paths to remove once they ended.
pub(crate) fn serve_each(
    extra: Vec<(UnixListener, PathBuf, Arc<dyn Interface>)>,
    limits: &Limits,
    service: &Service,
    stop: &Arc<AtomicBool>,
) -> Vec<(JoinHandle<()>, PathBuf)> {
    extra
        .into_iter()
        .filter_map(|(listener, path, iface)| {
            let mut server = credns_varlink::Server::new(server_info(), limits.clone());
            server.add(iface);
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
        })
        .collect()
}
