//! The credns registry daemon's interface, `io.credns.Registry`, over varlink: a Unix socket
//! carrying NUL-terminated JSON messages (`{"method": ..., "parameters": ...}` one way,
//! `{"parameters": ...}` or `{"error": ..., "parameters": ...}` back), the convention systemd's
//! `io.systemd.NamespaceResource` uses.
//!
//! * [`Service`] holds the [`Registry`](credns_registry::Registry) and implements the methods
//!   for a caller identified by `SO_PEERCRED` ([`Caller`]); it watches the processes of leased
//!   user namespaces by pidfd and releases a lease when its namespace has no process left.
//! * [`Server`] listens on the socket, one thread per connection.
//! * [`Client`] is the blocking client (`credns` commands, `credns run`).
//!
//! File descriptors (a user namespace, a pidfd) travel with a request by `SCM_RIGHTS`;
//! parameters name them by index (`userNamespaceFileDescriptor: 0`), as systemd does.

#![warn(missing_docs)]

mod client;
mod server;
mod service;
pub mod wire;

pub use client::{AllocOptions, Client, Target};
pub use server::{Server, DEFAULT_SOCKET};
pub use service::{Caller, Config, Service, DEFAULT_STORE};
pub use wire::{AllocationInfo, ErrorReply, HolderInfo, Range, WireLease};

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
    /// A host file (subuid, subgid) did not parse.
    #[error(transparent)]
    Idmap(#[from] credns_idmap::Error),
    /// The daemon answered with an error.
    #[error("{0}")]
    Remote(ErrorReply),
    /// The peer broke the protocol.
    #[error("varlink protocol: {0}")]
    Protocol(String),
    /// A daemon already serves this socket.
    #[error("{}: another daemon is already listening there", .0.display())]
    SocketInUse(PathBuf),
}

impl Error {
    /// The varlink error name if the daemon answered with one.
    pub fn remote_name(&self) -> Option<&str> {
        match self {
            Error::Remote(r) => Some(&r.error),
            _ => None,
        }
    }
}
