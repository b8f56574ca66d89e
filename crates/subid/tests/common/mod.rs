//! A daemon of this process's own (socket, store and passwd in a temporary directory) with
//! users delegated ranges, and root checks.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use credns_api::subid::{Delegation, SubidClient};
use credns_service::{Config, Server, Service};
use credns_sys::{Pid, ProcFs};

/// The test user's uid (none of the host's: it lives in the daemon's own passwd).
pub const ALICE: u32 = 60123;

/// Skip (or, with `CREDNS_REQUIRE_ALL=1`, fail) unless `why` is `None`.
pub fn require(test: &str, why: Option<String>) -> bool {
    let Some(reason) = why else { return true };
    if std::env::var("CREDNS_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("{test}: {reason}, and CREDNS_REQUIRE_ALL=1 forbids skipping");
    }
    println!("{test}: skipped: {reason}");
    false
}

/// Root: the daemon opens its store and the tests mount over /etc in private namespaces.
pub fn needs_root(test: &str) -> bool {
    let why = match ProcFs::new().status(Pid::this()).map(|s| s.uid[1]) {
        Ok(0) => None,
        Ok(uid) => Some(format!(
            "needs root (running as uid {uid}; the tests mount in private namespaces)"
        )),
        Err(e) => Some(format!("needs root ({e})")),
    };
    require(test, why)
}

/// A program on PATH.
pub fn needs_tool(test: &str, tool: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(tool).is_file()));
    require(
        test,
        (!found).then(|| format!("needs {tool} (apt-get install {package})")),
    )
}

/// A daemon served by threads of this process; its directory is removed on drop.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub etc: PathBuf,
    /// Alice's delegations.
    pub alice: Vec<Delegation>,
}

impl Daemon {
    /// With alice (uid [`ALICE`]) in its passwd and `delegations` ranges delegated to her.
    pub fn start(delegations: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let etc = dir.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        std::fs::write(
            etc.join("passwd"),
            format!("root:x:0:0:root:/root:/bin/sh\nalice:x:{ALICE}:{ALICE}:Alice:/:/bin/sh\n"),
        )
        .unwrap();
        std::fs::write(etc.join("group"), format!("root:x:0:\nalice:x:{ALICE}:\n")).unwrap();
        let socket = dir.path().join("run/io.credns.Registry");
        let mut cfg = Config::new(dir.path().join("registry.redb"));
        cfg.policy = own_pool();
        cfg.etc = Some(etc.clone());
        cfg.reserve = 0;
        let server = Server::bind(&socket, Service::open(&cfg).unwrap()).unwrap();
        std::thread::spawn(move || server.run());
        let alice = match delegations {
            0 => Vec::new(),
            n => {
                SubidClient::new(credns_varlink::Client::connect(&socket).unwrap())
                    .delegate("alice", None, Some(n))
                    .unwrap()
                    .delegations
            }
        };
        Daemon {
            dir,
            socket,
            etc,
            alice,
        }
    }
}

/// The provider this crate built for this test run: `target/<profile>/deps/libsubid_credns.so`,
/// beside the test binary (cargo copies it up to `target/<profile>/` only when the library
/// itself is what was asked for, so that copy may be older).
pub fn built_library() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let p = [deps.to_path_buf(), deps.parent().unwrap().to_path_buf()]
        .into_iter()
        .map(|d| d.join("libsubid_credns.so"))
        .find(|p| p.is_file());
    p.unwrap_or_else(|| panic!("libsubid_credns.so was not built beside {}", exe.display()))
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
