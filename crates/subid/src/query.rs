//! The questions libsubid asks, answered by the daemon's `io.credns.Subid` (safe Rust; the C
//! ABI in the crate root only converts). Every failure to get an answer is a status, never a
//! guess: no daemon or no reply in time is [`Status::ErrorConn`].

use std::path::PathBuf;
use std::time::Duration;

use credns_api::registry::Range;
use credns_api::subid::{Kind, SubidClient};

/// How long a caller (newuidmap, getsubids) waits for the daemon to connect and to answer.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// The variable naming another socket, for tests and private daemons. Ignored in setuid and
/// file-capability programs (newuidmap): their caller must not choose who answers them.
pub const SOCKET_ENV: &str = "CREDNS_SOCKET";

/// shadow's `enum subid_status`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// `SUBID_STATUS_SUCCESS`.
    Success = 0,
    /// `SUBID_STATUS_UNKNOWN_USER`.
    UnknownUser = 1,
    /// `SUBID_STATUS_ERROR_CONN`: the daemon did not answer.
    ErrorConn = 2,
    /// `SUBID_STATUS_ERROR`.
    Error = 3,
}

/// shadow's `enum subid_type`, checked: any other value is refused, not trusted.
pub fn kind(t: libc::c_int) -> Result<Kind, Status> {
    match t {
        1 => Ok(Kind::Uid),
        2 => Ok(Kind::Gid),
        _ => Err(Status::Error),
    }
}

/// The daemon's socket: `CREDNS_SOCKET` unless `secure` (the process gained privilege at
/// exec), else the default.
pub fn socket(secure: bool) -> PathBuf {
    match std::env::var_os(SOCKET_ENV) {
        Some(p) if !secure && !p.is_empty() => p.into(),
        _ => credns_api::registry::DEFAULT_SOCKET.into(),
    }
}

fn status(e: credns_api::Error) -> Status {
    use credns_varlink::Error as V;
    match e {
        credns_api::Error::Varlink(V::Remote(r)) if r.error == "io.credns.Subid.NoSuchUser" => {
            Status::UnknownUser
        }
        // No answer: a timeout, a refused or broken connection.
        credns_api::Error::Varlink(V::Io { .. } | V::Sys(_) | V::Disconnected) => Status::ErrorConn,
        _ => Status::Error,
    }
}

/// A connection to the daemon.
#[derive(Debug)]
pub struct Provider {
    client: SubidClient,
    /// The uid this process's name service gives a name, for a name the daemon's passwd does
    /// not have (a user from LDAP): then the daemon is asked by uid.
    local_uid: fn(&str) -> Option<u32>,
}

impl Provider {
    /// Connect to the daemon at `socket`.
    pub fn connect(
        socket: &std::path::Path,
        local_uid: fn(&str) -> Option<u32>,
    ) -> Result<Self, Status> {
        SubidClient::connect_timeout(socket, TIMEOUT)
            .map(|client| Provider { client, local_uid })
            .map_err(|_| Status::ErrorConn)
    }

    /// `ask` about `owner`; if the daemon knows no such user but this process's name service
    /// does, about its uid.
    fn about<T>(
        &mut self,
        owner: &str,
        mut ask: impl FnMut(&mut SubidClient, &str) -> Result<T, credns_api::Error>,
    ) -> Result<T, Status> {
        match ask(&mut self.client, owner).map_err(status) {
            Err(Status::UnknownUser) => match (self.local_uid)(owner) {
                Some(uid) => ask(&mut self.client, &uid.to_string()).map_err(status),
                None => Err(Status::UnknownUser),
            },
            r => r,
        }
    }

    /// The `kind` ranges delegated to `owner`.
    pub fn ranges(&mut self, owner: &str, kind: Kind) -> Result<Vec<Range>, Status> {
        let d = self.about(owner, |c, o| c.delegations(o))?;
        Ok(d.delegations.iter().map(|d| d.range(kind)).collect())
    }

    /// Whether `[start, start + count)` of `kind` is delegated to `owner`.
    pub fn has_range(
        &mut self,
        owner: &str,
        start: u64,
        count: u64,
        kind: Kind,
    ) -> Result<bool, Status> {
        self.about(owner, |c, o| c.has_range(o, start, count, kind))
    }

    /// The uids whose delegations hold `id`.
    pub fn owners(&mut self, id: u64, kind: Kind) -> Result<Vec<u32>, Status> {
        self.client.owners(id, kind).map_err(status)
    }
}
