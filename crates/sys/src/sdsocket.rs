//! Sockets passed by the service manager (socket activation, the protocol of
//! `sd_listen_fds(3)`): `LISTEN_PID` names the process they are for, `LISTEN_FDS` how many
//! descriptors follow from fd 3 on, `LISTEN_FDNAMES` their names, colon-separated (systemd's
//! `FileDescriptorName=`, the socket unit's name by default).
//!
//! The variables are read once and removed, so that children (a container's command) neither
//! inherit them nor take the daemon's sockets for theirs; the descriptors are made close-on-exec
//! for the same reason.

use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::net::{AddressFamily, SocketType};

use crate::Error;

/// The first passed descriptor (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;

/// At most this many descriptors are taken: a `LISTEN_FDS` above it is refused as malformed.
const MAX_FDS: usize = 64;

/// One passed descriptor and its name (`unknown` when the manager gave none, as systemd says).
#[derive(Debug)]
pub struct ListenFd {
    /// Its `LISTEN_FDNAMES` entry.
    pub name: String,
    /// The descriptor, now owned by this process.
    pub fd: OwnedFd,
}

/// What the three variables say, before any descriptor is touched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listen {
    /// How many descriptors, from [`LISTEN_FDS_START`] on.
    pub count: usize,
    /// One name per descriptor.
    pub names: Vec<String>,
}

/// Read `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` for a process `own_pid`: `Ok(None)` when
/// no descriptors were passed or they were passed to another process (a parent that was
/// activated and did not clear them); an error names the variable that is malformed.
pub fn parse_listen(
    pid: Option<&str>,
    fds: Option<&str>,
    names: Option<&str>,
    own_pid: u32,
) -> Result<Option<Listen>, Error> {
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(None);
    };
    let bad = |var: &str, v: &str, why: &str| {
        Error::Activation(format!("{var}={v:?} from the service manager: {why}"))
    };
    let pid: u32 = pid
        .parse()
        .map_err(|_| bad("LISTEN_PID", pid, "not a process id"))?;
    if pid != own_pid {
        return Ok(None);
    }
    let count: usize = fds
        .parse()
        .map_err(|_| bad("LISTEN_FDS", fds, "not a number of descriptors"))?;
    if count > MAX_FDS {
        return Err(bad(
            "LISTEN_FDS",
            fds,
            "more descriptors than a daemon listens on",
        ));
    }
    if count == 0 {
        return Ok(None);
    }
    let names: Vec<String> = match names {
        None => vec!["unknown".into(); count],
        Some(n) => n.split(':').map(str::to_string).collect(),
    };
    if names.len() != count {
        return Err(bad(
            "LISTEN_FDNAMES",
            &names.join(":"),
            &format!("{} names for LISTEN_FDS={count} descriptors", names.len()),
        ));
    }
    Ok(Some(Listen { count, names }))
}

/// Guards the descriptors against being taken twice (they would be closed twice).
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The descriptors the service manager passed to this process, each made close-on-exec; empty
/// when none were passed. The variables are removed from the environment. Call once, early,
/// before other threads exist (the environment is process-wide); a second call finds none.
pub fn listen_fds() -> Result<Vec<ListenFd>, Error> {
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(Vec::new());
    }
    let var = |k: &str| std::env::var(k).ok();
    let listen = parse_listen(
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
        var("LISTEN_FDNAMES").as_deref(),
        std::process::id(),
    );
    for k in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(k);
    }
    let Some(listen) = listen? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(listen.count);
    for (i, name) in listen.names.into_iter().enumerate() {
        let raw = LISTEN_FDS_START + i as RawFd;
        // SAFETY: F_GETFD on a raw number only asks whether it is open; it touches no memory.
        let open = unsafe { libc::fcntl(raw, libc::F_GETFD) } >= 0;
        if !open {
            return Err(Error::Activation(format!(
                "LISTEN_FDS names fd {raw} ({name}), which is not open"
            )));
        }
        // SAFETY: the service manager passed fd `raw` to this process for it to own (it is
        // open, checked above), and TAKEN makes this the only place that takes it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC).map_err(|errno| Error::Sys {
            op: "fcntl(F_SETFD, FD_CLOEXEC) on a passed socket",
            errno,
        })?;
        out.push(ListenFd { name, fd });
    }
    Ok(out)
}

/// A passed descriptor as a Unix listener, if it is a listening `AF_UNIX` stream socket; else
/// an error saying what it is instead (a unit whose `ListenStream=` is not a path, a
/// `ListenDatagram=`, a file).
pub fn unix_stream_listener(passed: ListenFd) -> Result<UnixListener, Error> {
    let ListenFd { name, fd } = passed;
    let refuse = |what: String| {
        Error::Activation(format!(
            "the descriptor passed as {name:?} is {what}, not a listening AF_UNIX stream socket"
        ))
    };
    let ty = match rustix::net::sockopt::socket_type(fd.as_fd()) {
        Ok(t) => t,
        Err(rustix::io::Errno::NOTSOCK) => return Err(refuse("not a socket".into())),
        Err(errno) => {
            return Err(Error::Sys {
                op: "getsockopt(SO_TYPE) on a passed socket",
                errno,
            })
        }
    };
    let domain = rustix::net::sockopt::socket_domain(fd.as_fd()).map_err(|errno| Error::Sys {
        op: "getsockopt(SO_DOMAIN) on a passed socket",
        errno,
    })?;
    if domain != AddressFamily::UNIX {
        return Err(refuse(format!(
            "a socket of address family {}",
            domain.as_raw()
        )));
    }
    if ty != SocketType::STREAM {
        let kind = match ty {
            SocketType::DGRAM => "SOCK_DGRAM".to_string(),
            SocketType::SEQPACKET => "SOCK_SEQPACKET".to_string(),
            t => format!("type {}", t.as_raw()),
        };
        return Err(refuse(format!("an AF_UNIX {kind} socket")));
    }
    let listening =
        rustix::net::sockopt::socket_acceptconn(fd.as_fd()).map_err(|errno| Error::Sys {
            op: "getsockopt(SO_ACCEPTCONN) on a passed socket",
            errno,
        })?;
    if !listening {
        return Err(refuse(
            "an AF_UNIX stream socket that is not listening".into(),
        ));
    }
    Ok(UnixListener::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_for_another_process_or_absent_pass_nothing() {
        assert_eq!(parse_listen(None, Some("1"), None, 7).unwrap(), None);
        assert_eq!(parse_listen(Some("8"), Some("1"), None, 7).unwrap(), None);
        assert_eq!(parse_listen(Some("7"), Some("0"), None, 7).unwrap(), None);
    }

    #[test]
    fn names_default_to_unknown_and_must_match_the_count() {
        let l = parse_listen(Some("7"), Some("2"), None, 7)
            .unwrap()
            .unwrap();
        assert_eq!(l.names, ["unknown", "unknown"]);
        let l = parse_listen(Some("7"), Some("2"), Some("a:b"), 7)
            .unwrap()
            .unwrap();
        assert_eq!((l.count, l.names), (2, vec!["a".into(), "b".into()]));
        let e = parse_listen(Some("7"), Some("2"), Some("a"), 7).unwrap_err();
        assert!(e.to_string().contains("1 names for LISTEN_FDS=2"), "{e}");
    }

    #[test]
    fn malformed_variables_are_named() {
        let e = parse_listen(Some("x"), Some("1"), None, 7).unwrap_err();
        assert!(e.to_string().starts_with("LISTEN_PID=\"x\""), "{e}");
        let e = parse_listen(Some("7"), Some("-1"), None, 7).unwrap_err();
        assert!(e.to_string().starts_with("LISTEN_FDS=\"-1\""), "{e}");
        let e = parse_listen(Some("7"), Some("100000"), None, 7).unwrap_err();
        assert!(e.to_string().contains("more descriptors"), "{e}");
    }
}
