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
}

impl Provider {
    /// Connect to the daemon at `socket`.
    pub fn connect(socket: &std::path::Path) -> Result<Self, Status> {
        SubidClient::connect_timeout(socket, TIMEOUT)
            .map(|client| Provider { client })
            .map_err(|_| Status::ErrorConn)
    }

    /// The `kind` ranges delegated to `owner`.
    pub fn ranges(&mut self, owner: &str, kind: Kind) -> Result<Vec<Range>, Status> {
        let d = self.client.delegations(owner).map_err(status)?;
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
        self.client
            .has_range(owner, start, count, kind)
            .map_err(status)
    }

    /// The uids whose delegations hold `id`.
    pub fn owners(&mut self, id: u64, kind: Kind) -> Result<Vec<u32>, Status> {
        self.client.owners(id, kind).map_err(status)
    }
}
