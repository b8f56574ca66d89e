//! The one error type of this crate.

use std::path::PathBuf;

use crate::wire::ErrorReply;

/// What went wrong talking varlink.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation on a socket failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The operation ("connect", "set timeout", ...).
        op: &'static str,
        /// The socket path (empty for a stream made elsewhere).
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A system call failed (`sendmsg`, `recvmsg`, epoll, ...).
    #[error(transparent)]
    Sys(#[from] credns_sys::Error),
    /// The server answered with an error.
    #[error("{0}")]
    Remote(ErrorReply),
    /// The other side broke the protocol (a reply that is not a JSON object, or too long).
    #[error("varlink protocol: {0}")]
    Protocol(String),
    /// The other side closed the connection before a complete reply.
    #[error("the connection was closed")]
    Disconnected,
}

impl Error {
    /// The qualified error name of a [`Error::Remote`] reply.
    pub fn remote_name(&self) -> Option<&str> {
        match self {
            Error::Remote(e) => Some(&e.error),
            _ => None,
        }
    }

    /// The error reply of a [`Error::Remote`].
    pub fn remote(&self) -> Option<&ErrorReply> {
        match self {
            Error::Remote(e) => Some(e),
            _ => None,
        }
    }
}
