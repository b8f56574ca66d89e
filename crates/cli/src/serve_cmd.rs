//! `credns serve`: the registry daemon, started by hand or by systemd. Under systemd it takes
//! the socket `credns.socket` made (socket activation), says READY=1 and its status, pings the
//! watchdog if the unit asks, logs to the journal with priorities, re-reads its policy on
//! SIGHUP (`systemctl reload credns`) and stops on SIGTERM once the calls being run are
//! answered. Started by hand it binds its own socket and logs to stderr.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{bail, Result};
use credns_registry::Policy;
use credns_service::activation::{self, Passed, REGISTRY_FD_NAME};
use credns_service::logging::{self, LevelFilter};
use credns_service::notify::Notifier;
use credns_service::{Config, FaceSocket, Server, Service};
use credns_sys::signal::{TermSignals, SIGHUP};

use crate::registry_cmd::ServeArgs;

/// `--log-level`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LogLevel {
    /// Failures of the daemon itself.
    Error,
    /// Also what it works around (a host file line taken leniently, a reservation kept).
    Warn,
    /// Also one line per call and the daemon's start, reloads and stop.
    Info,
    /// Also details for debugging.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    fn filter(self) -> LevelFilter {
        match self {
            LogLevel::Error => LevelFilter::ERROR,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Trace => LevelFilter::TRACE,
        }
    }
}

/// A policy file, or the default policy without one. A syntax error names the file, line and
/// column on one line (the journal keeps lines apart).
pub(crate) fn read_policy(path: Option<&Path>) -> Result<Policy, String> {
    let Some(p) = path else {
        return Ok(Policy::default());
    };
    let text = std::fs::read_to_string(p).map_err(|e| format!("reading {}: {e}", p.display()))?;
    let policy: Policy = toml::from_str(&text).map_err(|e| {
        let (line, col) = e.span().map_or((1, 1), |s| line_col(&text, s.start));
        format!(
            "{}:{line}:{col}: not a valid policy: {}",
            p.display(),
            e.message().trim().replace('\n', " ")
        )
    })?;
    policy
        .validate()
        .map_err(|e| format!("{}: not a valid policy: {e}", p.display()))?;
    Ok(policy)
}

/// 1-based line and column of byte `at` in `text`.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

pub fn serve(a: ServeArgs) -> Result<ExitCode> {
    // Before any thread exists (the log's is the first), so that every thread has them
    // blocked, and so that the environment the next two read and clear is not read by another
    // thread meanwhile.
    let signals = TermSignals::block_with_hangup()?;
    let notifier = Arc::new(Notifier::from_env()?);
    let mut passed = Passed::from_env()?;
    let log = logging::init_daemon(a.log_level.filter());
    let activated = !passed.is_empty();
    let listener = passed.take(REGISTRY_FD_NAME)?;
    if activated && listener.is_none() {
        bail!(
            "the service manager passed sockets named {:?}, none of them {REGISTRY_FD_NAME:?} \
             (FileDescriptorName= of credns.socket)",
            passed.names()
        );
    }
    // The faces systemd's clients know, if their socket units passed them.
    let userdb = passed.take(activation::USERDB_FD_NAME)?;
    let nsresource = passed.take(activation::NSRESOURCE_FD_NAME)?;
    if !passed.is_empty() {
        tracing::warn!(
            "closing sockets passed as {:?}: no interface is served under those names",
            passed.names()
        );
    }
    drop(passed);
    // Before the store: a running daemon holds its lock, and this is the clearer message.
    if listener.is_none() && std::os::unix::net::UnixStream::connect(&a.at.socket).is_ok() {
        return Err(credns_service::Error::SocketInUse(a.at.socket.clone()).into());
    }
    let svc = open_service(&a)?;
    let mut server = match listener {
        Some(l) => Server::from_listener(l, svc.clone()),
        None => Server::bind(&a.at.socket, svc.clone())?,
    };
    // A face's socket passed by its socket unit comes first; else `--userdb`/`--nsresource`.
    let face = |passed: Option<std::os::unix::net::UnixListener>,
                path: &Option<std::path::PathBuf>| {
        match (passed, path) {
            (Some(l), _) => Some(FaceSocket::Passed(l)),
            (None, Some(p)) => Some(FaceSocket::Bind(p.clone())),
            (None, None) => None,
        }
    };
    if let Some(at) = face(userdb, &a.userdb) {
        let activated = matches!(at, FaceSocket::Passed(_));
        server = server.with_userdb(at, &a.userdb_prefix)?;
        tracing::info!(activated, "serving io.systemd.UserDatabase");
    }
    if let Some(at) = face(nsresource, &a.nsresource) {
        let activated = matches!(at, FaceSocket::Passed(_));
        server = server.with_namespace_resource(at, &a.userdb_prefix)?;
        tracing::info!(activated, "serving io.systemd.NamespaceResource");
    }
    let socket = server.path().to_path_buf();
    let stop = server.stop_flag();
    let serving = std::thread::Builder::new()
        .name("credns-serve".into())
        .spawn(move || server.run())?;
    let status = format!("serving io.credns.Registry on {}", socket.display());
    tracing::info!(
        socket = %socket.display(),
        store = %a.at.store.display(),
        activated,
        "serving io.credns.Registry"
    );
    if let Err(e) = notifier.ready(&status) {
        tracing::warn!("{e}");
    }
    start_watchdog(&notifier, &svc)?;
    let sig = loop {
        match signals.wait()? {
            SIGHUP => reload(a.at.policy.as_deref(), &svc, &notifier, &status),
            sig => break sig,
        }
    };
    tracing::info!(signal = sig, "stopping: answering the calls being run");
    let _ = notifier.stopping("stopping: answering the calls being run");
    stop.store(true, Ordering::SeqCst);
    // The server returns once the requests being run are answered.
    if let Ok(Err(e)) = serving.join() {
        tracing::error!("{e}");
    }
    // A passed socket is the service manager's: it stays, to start the daemon again.
    if !activated {
        let _ = std::fs::remove_file(&socket);
    }
    // Holding the registry: no commit is in flight (the reaper's included), and none starts.
    let _ = svc.with_registry(|_| {
        drop(log);
        std::process::exit(0)
    });
    Ok(ExitCode::SUCCESS)
}

fn open_service(a: &ServeArgs) -> Result<Service> {
    let mut cfg = Config::new(&a.at.store);
    cfg.policy = read_policy(a.at.policy.as_deref()).map_err(anyhow::Error::msg)?;
    cfg.etc = Some(a.etc.clone());
    cfg.accept_rollback = a.recover;
    Service::open(&cfg).map_err(|e| match e {
        credns_service::Error::Registry(credns_registry::Error::Store(s))
            if s.kind == credns_registry::StoreErrorKind::RolledBack =>
        {
            anyhow::anyhow!(
                "{s}.\nRefusing to serve from it. To continue from this store as it is, start \
                 `credns serve --recover` (live user namespaces are rescanned first; their ids \
                 are never handed out again; name leases made since must be made again)"
            )
        }
        e => e.into(),
    })
}

/// SIGHUP: the policy file read again and put in force; if it does not parse or is not a valid
/// policy, the one in force stays and the error is logged with its line.
fn reload(path: Option<&Path>, svc: &Service, notifier: &Notifier, status: &str) {
    let Some(path) = path else {
        tracing::info!("SIGHUP: no --policy file; the default policy stays in force");
        return;
    };
    let applied = read_policy(Some(path)).and_then(|p| {
        svc.set_policy(p)
            .map_err(|e| format!("{}: {e}", path.display()))
    });
    match applied {
        Ok(()) => {
            tracing::info!(policy = %path.display(), "SIGHUP: policy reloaded");
            let _ = notifier.status(&format!("{status}; policy reloaded"));
        }
        Err(e) => {
            tracing::error!("SIGHUP: {e}; keeping the policy in force");
            let _ = notifier.status(&format!("{status}; policy reload failed, old one kept"));
        }
    }
}

/// `WATCHDOG=1` every half of `WatchdogSec=`, while the registry can be taken: a daemon wedged
/// on its registry stops pinging and systemd restarts it.
fn start_watchdog(notifier: &Arc<Notifier>, svc: &Service) -> Result<()> {
    let Some(every) = notifier.watchdog_every() else {
        return Ok(());
    };
    let (notifier, svc) = (notifier.clone(), svc.clone());
    std::thread::Builder::new()
        .name("credns-watchdog".into())
        .spawn(move || loop {
            if svc.with_registry(|_| ()).is_ok() {
                if let Err(e) = notifier.watchdog() {
                    tracing::warn!("watchdog: {e}");
                }
            }
            std::thread::sleep(every);
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_error_names_its_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("policy.toml");
        std::fs::write(&p, "[pool]\ndefault_size = 4096\nalign = \"x\"\n").unwrap();
        let e = read_policy(Some(&p)).unwrap_err();
        assert!(e.contains("policy.toml:3:9: not a valid policy"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        std::fs::write(&p, "[pool]\nalign = 0\n").unwrap();
        let e = read_policy(Some(&p)).unwrap_err();
        assert!(e.contains("pool.align is 0"), "{e}");
        std::fs::write(&p, "[pool]\nalign = 4096\n").unwrap();
        assert_eq!(read_policy(Some(&p)).unwrap().pool.align, 4096);
    }

    #[test]
    fn lines_and_columns_count_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab", 99), (1, 3));
    }
}
