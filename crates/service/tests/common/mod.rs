//! Shared test plumbing: a server on a temporary socket and store, root checks, and re-running
//! this test binary as a helper process (another uid, or a server to kill).
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use credns_registry::Policy;
use credns_service::{Config, RegistryClient as Client, Server, Service};
use credns_sys::{Pid, ProcFs};

/// Whether the test runs as root; otherwise it says why it skips (or fails under
/// `CREDNS_REQUIRE_ALL=1`).
pub fn needs_root(test: &str) -> bool {
    let euid = ProcFs::new().status(Pid::this()).map(|s| s.uid[1]);
    let reason = match euid {
        Ok(0) => return true,
        Ok(uid) => format!("needs root (running as uid {uid}; the daemon writes namespace maps and the test switches uids)"),
        Err(e) => format!("needs root (cannot read own credentials: {e})"),
    };
    if std::env::var("CREDNS_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("{test}: {reason}, and CREDNS_REQUIRE_ALL=1 forbids skipping");
    }
    println!("{test}: skipped: {reason}");
    false
}

/// A temporary directory every user may enter (so another uid can reach the socket).
pub fn open_tempdir() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    d
}

/// A daemon served by threads of this process, on a socket and store in its own directory.
/// Its threads outlive the value (they block in accept); the directory is removed on drop.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub store: PathBuf,
    pub service: Service,
}

impl TestServer {
    pub fn start(policy: Policy) -> Self {
        let dir = open_tempdir();
        let socket = dir.path().join("run/io.credns.Registry");
        let store = dir.path().join("registry.redb");
        let cfg = Config {
            store: store.clone(),
            policy,
            procfs: ProcFs::new(),
            etc: None,
            accept_rollback: false,
            reserve: 0,
        };
        let service = Service::open(&cfg).expect("open service");
        let server = Server::bind(&socket, service.clone()).expect("bind");
        std::thread::spawn(move || server.run());
        TestServer {
            dir,
            socket,
            store,
            service,
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.socket).expect("connect")
    }
}

/// Wait (bounded) until `socket` accepts connections.
pub fn wait_for_socket(socket: &Path, limit: Duration) -> Client {
    let t0 = Instant::now();
    loop {
        if let Ok(c) = Client::connect(socket) {
            return c;
        }
        assert!(
            t0.elapsed() < limit,
            "{} did not come up within {limit:?}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A policy with a small quota for non-root owners.
pub fn small_quota(max_ranges: u32) -> Policy {
    let mut p = Policy::default();
    p.quota.max_ranges = max_ranges;
    p
}

/// Run the ignored test `name` of this same binary as a helper process with `env` set.
pub fn helper_command(name: &str, env: &[(&str, String)]) -> std::process::Command {
    let mut c = std::process::Command::new(std::env::current_exe().expect("current exe"));
    c.args([
        "--exact",
        name,
        "--include-ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// A policy whose pool is a window of its own (33,554,432 ids between 2^28 and 2^31, chosen by
/// this process and a counter): every registry excludes what live namespaces map, so tests
/// running side by side, each with its own store, would otherwise push each other's ranges
/// about through the namespaces they make.
pub fn own_pool() -> credns_registry::Policy {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let slot = (u64::from(std::process::id()) * 7 + n) % 56;
    let start = (1u64 << 28) + slot * (1 << 25);
    let mut p = credns_registry::Policy::default();
    p.pool.ranges = vec![credns_idmap::IdRange {
        start: start as u32,
        end: (start + (1 << 25) - 1) as u32,
    }];
    p
}
