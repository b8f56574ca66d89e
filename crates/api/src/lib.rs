//! credns's varlink interfaces as types, for clients and for the daemon that serves them: each
//! interface's IDL text, the records its methods carry, its error names, and a typed blocking
//! client over [`credns_varlink::Client`]. This crate links no server and no store, so a small
//! client (a libsubid provider, a command) can use it alone.
//!
//! * [`registry`]: `io.credns.Registry`, host UID/GID ranges leased to names and namespaces.
//! * [`subid`]: `io.credns.Subid`, ranges delegated to users as subordinate ids (libsubid).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod registry;
pub mod subid;

pub use credns_varlink::ErrorReply;

/// Errors of a typed client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection or the daemon's answer (a varlink error reply is
    /// [`credns_varlink::Error::Remote`]).
    #[error(transparent)]
    Varlink(#[from] credns_varlink::Error),
    /// A reply did not have the shape the interface promises.
    #[error("malformed reply: {0}")]
    Reply(String),
}

impl Error {
    /// The varlink error name if the daemon answered with one.
    pub fn remote_name(&self) -> Option<&str> {
        match self {
            Error::Varlink(v) => v.remote_name(),
            Error::Reply(_) => None,
        }
    }

    /// The daemon's error reply, if it answered with one.
    pub fn remote(&self) -> Option<&ErrorReply> {
        match self {
            Error::Varlink(credns_varlink::Error::Remote(r)) => Some(r),
            _ => None,
        }
    }
}
