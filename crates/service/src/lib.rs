//! The credns registry daemon: `io.credns.Registry` served over varlink
//! ([`credns_varlink`]), and the one way commands reach the registry ([`connect`]: the daemon
//! if it answers, else the store directly, as root).
//!
//! * [`Service`] holds the registry open and locked, runs the methods for a caller identified
//!   by `SO_PEERCRED` ([`Caller`]), and watches the processes of leased user namespaces by
//!   pidfd, releasing a lease when its namespace has no process left.
//! * [`Server`] binds the socket and serves the service (an event loop and bounded workers).
//! * [`connect`] gives a [`RegistryClient`] to the daemon or, for root with no daemon, to the
//!   same methods run in this process over a store locked only while a call runs.
//!
//! Files: `params` (method parameters as serde types), `methods` (authorization, leases, map
//! writing), `cell` (the registry held or opened per call), `nswatch` (namespace deaths),
//! `live` (live namespaces' ids), `errors` and `convert` (the interface's errors and
//! records), `daemon` and `access` (the two ways in); for running under a service manager,
//! `activation` (sockets passed by systemd), `notify` (sd_notify: READY, STATUS, WATCHDOG)
//! and `logging` (one line per call, syslog priorities for the journal).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod access;
pub mod activation;
mod cell;
mod convert;
mod daemon;
mod delegations;
mod errors;
mod faces;
mod keys;
mod live;
pub mod logging;
mod methods;
pub mod notify;
mod nsresource;
mod nswatch;
mod params;
mod userdb;
mod users;

pub use access::{connect, direct, Endpoint, Route};
pub use credns_api::registry::{
    AllocOptions, Allocated, AllocationInfo, HolderInfo, KeyRouteInfo, KeyRoutesInfo, KeyringInfo,
    Range, RegistryClient, Target, WireLease, DEFAULT_SOCKET,
};
pub use credns_api::subid;
pub use credns_varlink::ErrorReply;
pub use daemon::{Config, Server, Service, DEFAULT_STORE};
pub use faces::FaceSocket;
pub use keys::ROUTES_COPY;
pub use methods::Caller;
pub use userdb::{DEFAULT_PREFIX as USERDB_PREFIX, DEFAULT_SERVICE as USERDB_SERVICE, USERDB_DIR};

/// A registry record as `io.credns.Registry` carries it.
pub fn allocation_info(a: &credns_registry::Allocation) -> AllocationInfo {
    convert::record(a)
}

use std::path::PathBuf;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or socket operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The kernel layer failed.
    #[error(transparent)]
    Sys(#[from] credns_sys::Error),
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] credns_registry::Error),
    /// A host id file could not be read.
    #[error(transparent)]
    HostFile(#[from] credns_registry::HostFileError),
    /// The varlink layer failed.
    #[error(transparent)]
    Varlink(#[from] credns_varlink::Error),
    /// A client call failed.
    #[error(transparent)]
    Api(#[from] credns_api::Error),
    /// `NOTIFY_SOCKET` names no socket a notification can be sent to.
    #[error("NOTIFY_SOCKET={socket:?} from the service manager: {why}")]
    Notify {
        /// The variable's value.
        socket: String,
        /// What is wrong with it.
        why: String,
    },
    /// A daemon already serves this socket.
    #[error("{}: another daemon is already listening there", .0.display())]
    SocketInUse(PathBuf),
    /// The store's directory or file could be changed by someone else.
    #[error("refusing the registry store at {}: {why}", path.display())]
    UnsafeStore {
        /// The directory or file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// No daemon answers and this process may not open the store itself.
    #[error("no credns daemon answers at {} ({why}), and only root opens the store {} directly", socket.display(), store.display())]
    NoDaemon {
        /// The socket tried.
        socket: PathBuf,
        /// The store.
        store: PathBuf,
        /// Why the connection failed.
        why: String,
    },
}
