//! The daemon's listening sockets when the service manager made them (socket activation:
//! `credns.socket` listens, systemd starts `credns serve` on the first connection and passes
//! the socket). Each passed descriptor is told apart by its name (`FileDescriptorName=` in
//! the socket unit); the registry's is [`REGISTRY_FD_NAME`]. Sockets for other interfaces
//! (userdb, `io.systemd.NamespaceResource`) come the same way, each under its own name.

use std::os::unix::net::UnixListener;

use credns_sys::sdsocket::{self, ListenFd};

use crate::Error;

/// The name under which the registry's socket is passed (`FileDescriptorName=` in
/// `credns.socket`).
pub const REGISTRY_FD_NAME: &str = "io.credns.Registry";
/// The `FileDescriptorName=` of the userdb provider's socket (credns-userdb.socket).
pub const USERDB_FD_NAME: &str = "io.systemd.UserDatabase";
/// The `FileDescriptorName=` of the NamespaceResource socket (credns-nsresource.socket).
pub const NSRESOURCE_FD_NAME: &str = "io.systemd.NamespaceResource";

/// The descriptors passed to this process, not yet taken.
#[derive(Debug, Default)]
pub struct Passed {
    fds: Vec<ListenFd>,
}

impl Passed {
    /// Take what the service manager passed (`LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`);
    /// empty when started by hand. Call once, before other threads exist.
    pub fn from_env() -> Result<Self, Error> {
        Ok(Passed {
            fds: sdsocket::listen_fds()?,
        })
    }

    /// Whether nothing (more) was passed.
    pub fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    /// The listener passed as `name`, checked to be a listening `AF_UNIX` stream socket
    /// (else an error saying what it is). A single descriptor whose name is not another
    /// interface's (`unknown` when the manager named none, or the socket unit's name) is taken
    /// as the registry's, so that `systemd-socket-activate -l PATH credns serve` works.
    pub fn take(&mut self, name: &str) -> Result<Option<UnixListener>, Error> {
        let at = self.fds.iter().position(|f| f.name == name).or_else(|| {
            (name == REGISTRY_FD_NAME
                && self.fds.len() == 1
                && (self.fds[0].name == "unknown" || self.fds[0].name.ends_with(".socket")))
            .then_some(0)
        });
        match at {
            None => Ok(None),
            Some(i) => Ok(Some(sdsocket::unix_stream_listener(self.fds.remove(i))?)),
        }
    }

    /// The names of the descriptors nobody took (they are closed when this is dropped).
    pub fn names(&self) -> Vec<String> {
        self.fds.iter().map(|f| f.name.clone()).collect()
    }
}
