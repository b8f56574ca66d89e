//! The one way every command reaches the registry: the daemon if one answers on its socket,
//! else, for root, the store opened directly for each call. Either way the caller holds a
//! [`RegistryClient`] and the same methods answer: the direct path runs them in this process
//! (behind a socket pair, on a thread), over a store locked only while a call runs.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use credns_api::registry::{RegistryClient, DEFAULT_SOCKET};
use credns_registry::Policy;
use credns_sys::{Pid, ProcFs};

use crate::cell::RegistryCell;
use crate::daemon::{server_info, RegistryInterface, DEFAULT_STORE};
use crate::methods::{Methods, NoWatch};
use crate::Error;

/// Where the registry is: the daemon's socket, and the store root opens when none answers.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// The daemon's socket.
    pub socket: PathBuf,
    /// The store, for the direct path.
    pub store: PathBuf,
    /// The policy of the direct path (the daemon has its own).
    pub policy: Policy,
    /// The host's id files of the direct path (`/etc`).
    pub etc: Option<PathBuf>,
}

impl Default for Endpoint {
    fn default() -> Self {
        Endpoint {
            socket: DEFAULT_SOCKET.into(),
            store: DEFAULT_STORE.into(),
            policy: Policy::default(),
            etc: Some("/etc".into()),
        }
    }
}

/// Which way a [`connect`] went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Through the daemon.
    Daemon,
    /// The store, opened by this process for each call.
    Direct,
}

/// How long a command waits for the daemon's answers.
const DAEMON_TIMEOUT: Duration = Duration::from_secs(60);

/// The registry at `ep`: the daemon if one answers on `ep.socket`, else (root only) the store.
pub fn connect(ep: &Endpoint) -> Result<(RegistryClient, Route), Error> {
    match RegistryClient::connect_timeout(&ep.socket, DAEMON_TIMEOUT) {
        Ok(c) => Ok((c, Route::Daemon)),
        Err(daemon_err) => {
            if !credns_sys::is_root() {
                return Err(Error::NoDaemon {
                    socket: ep.socket.clone(),
                    store: ep.store.clone(),
                    why: daemon_err.to_string(),
                });
            }
            Ok((direct(ep)?, Route::Direct))
        }
    }
}

/// The direct path: the methods served in this process over a socket pair.
pub fn direct(ep: &Endpoint) -> Result<RegistryClient, Error> {
    let procfs = ProcFs::new();
    let methods = Methods {
        cell: RegistryCell::per_call(
            &ep.store,
            ep.policy.clone(),
            ep.etc.as_deref(),
            procfs.clone(),
        ),
        own_ns: procfs.userns(Pid::this()).ok(),
        procfs,
        leases: Arc::new(NoWatch),
        reservations: false,
        unflushed: Default::default(),
        taken: Default::default(),
        keys: crate::keys::KeyHome::new(&ep.store),
    };
    methods.keys.sweep(&methods.procfs);
    let (ours, theirs) = UnixStream::pair().map_err(|source| Error::Io {
        op: "socketpair",
        path: ep.store.clone(),
        source,
    })?;
    let mut server = credns_varlink::Server::new(server_info(), Default::default());
    let registry = RegistryInterface::direct(methods);
    let subid = crate::delegations::SubidInterface::new(registry.inner(), ep.etc.as_deref());
    server.add(Arc::new(registry));
    server.add(Arc::new(subid));
    std::thread::Builder::new()
        .name("credns-direct".into())
        .spawn(move || {
            let _ = server.serve_stream(theirs);
        })
        .map_err(|source| Error::Io {
            op: "spawn a thread for",
            path: ep.store.clone(),
            source,
        })?;
    Ok(RegistryClient::new(credns_varlink::Client::from_stream(
        ours,
    )))
}
