//! Telling the service manager how the daemon is doing (the protocol of `sd_notify(3)`): one
//! datagram of `KEY=VALUE` lines to the `AF_UNIX` socket named by `NOTIFY_SOCKET`, a path or,
//! with a leading `@`, an abstract name. `READY=1` once the socket is served (a `Type=notify`
//! unit is started then), `STATUS=` lines for `systemctl status`, `STOPPING=1`, and
//! `WATCHDOG=1` pings when the unit sets `WatchdogSec=` (`WATCHDOG_USEC`).
//!
//! Without `NOTIFY_SOCKET` every call does nothing: the daemon started by hand is unchanged.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::time::Duration;

use crate::Error;

/// Where notifications go; `None` inside when no manager listens.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(SocketAddr, String)>,
    watchdog: Option<Duration>,
}

/// Where `NOTIFY_SOCKET`'s value points: an abstract name (`@name`) or a path.
pub fn notify_address(value: &str) -> Result<SocketAddr, Error> {
    let bad = |why: String| Error::Notify {
        socket: value.to_string(),
        why,
    };
    if let Some(name) = value.strip_prefix('@') {
        SocketAddr::from_abstract_name(name.as_bytes()).map_err(|e| bad(e.to_string()))
    } else if value.starts_with('/') {
        SocketAddr::from_pathname(value).map_err(|e| bad(e.to_string()))
    } else {
        Err(bad(
            "neither an absolute path nor an abstract name (@...)".into()
        ))
    }
}

/// The watchdog interval `WATCHDOG_USEC` asks for, if it is for this process (`WATCHDOG_PID`
/// absent or ours) and a positive number of microseconds.
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    if pid.is_some_and(|p| p.parse::<u32>() != Ok(own_pid)) {
        return None;
    }
    let usec: u64 = usec?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

impl Notifier {
    /// The manager's socket from `NOTIFY_SOCKET`, and the watchdog from `WATCHDOG_USEC` and
    /// `WATCHDOG_PID`; the variables are removed so that children do not notify for us. Call
    /// before other threads exist.
    pub fn from_env() -> Result<Self, Error> {
        let var = |k: &str| std::env::var(k).ok();
        let socket = var("NOTIFY_SOCKET");
        let watchdog = watchdog_interval(
            var("WATCHDOG_USEC").as_deref(),
            var("WATCHDOG_PID").as_deref(),
            std::process::id(),
        );
        for k in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            std::env::remove_var(k);
        }
        let target = match socket.filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some((notify_address(&s)?, s)),
        };
        Ok(Notifier { target, watchdog })
    }

    /// A notifier that sends nothing.
    pub fn none() -> Self {
        Notifier {
            target: None,
            watchdog: None,
        }
    }

    /// Whether a manager listens.
    pub fn is_active(&self) -> bool {
        self.target.is_some()
    }

    /// How often the manager wants `WATCHDOG=1`: half its timeout, as systemd advises.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog.map(|d| d / 2)
    }

    /// Send `state` (newline-separated `KEY=VALUE` lines) as one datagram.
    pub fn send(&self, state: &str) -> Result<(), Error> {
        let Some((addr, name)) = &self.target else {
            return Ok(());
        };
        let io = |source| Error::Io {
            op: "notify the service manager at",
            path: PathBuf::from(name),
            source,
        };
        let sock = UnixDatagram::unbound().map_err(io)?;
        sock.send_to_addr(state.as_bytes(), addr).map_err(io)?;
        Ok(())
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) -> Result<(), Error> {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)))
    }

    /// A status line alone.
    pub fn status(&self, status: &str) -> Result<(), Error> {
        self.send(&format!("STATUS={}", one_line(status)))
    }

    /// `STOPPING=1` with a status line.
    pub fn stopping(&self, status: &str) -> Result<(), Error> {
        self.send(&format!("STOPPING=1\nSTATUS={}", one_line(status)))
    }

    /// One watchdog ping.
    pub fn watchdog(&self) -> Result<(), Error> {
        self.send("WATCHDOG=1")
    }
}

/// A status is one line of the datagram: a newline would start another assignment.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_paths_or_abstract_names() {
        let a = notify_address("/run/systemd/notify").unwrap();
        assert_eq!(
            a.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        let a = notify_address("@sd-notify").unwrap();
        assert_eq!(a.as_abstract_name(), Some(&b"sd-notify"[..]));
        let e = notify_address("relative").unwrap_err().to_string();
        assert!(e.contains("NOTIFY_SOCKET=\"relative\""), "{e}");
    }

    #[test]
    fn the_watchdog_is_ours_only_when_its_pid_matches() {
        let us = Some(Duration::from_micros(2_000_000));
        assert_eq!(watchdog_interval(Some("2000000"), None, 9), us);
        assert_eq!(watchdog_interval(Some("2000000"), Some("9"), 9), us);
        assert_eq!(watchdog_interval(Some("2000000"), Some("8"), 9), None);
        assert_eq!(watchdog_interval(Some("0"), None, 9), None);
        assert_eq!(watchdog_interval(Some("x"), None, 9), None);
        assert_eq!(watchdog_interval(None, None, 9), None);
    }

    #[test]
    fn a_datagram_reaches_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            target: Some((notify_address(path.to_str().unwrap()).unwrap(), "t".into())),
            watchdog: None,
        };
        n.ready("serving\nsomething").unwrap();
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=serving something");

        // An abstract name, as some service managers give (`@...`).
        let name = format!("credns-notify-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&notify_address(&format!("@{name}")).unwrap()).unwrap();
        let n = Notifier {
            target: Some((notify_address(&format!("@{name}")).unwrap(), name)),
            watchdog: None,
        };
        n.watchdog().unwrap();
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
    }
}
