//! Shared by the `credns run` and `credns oci` tests: root and tool checks, a busybox rootfs,
//! running the binary.

#![allow(dead_code)]

pub mod keys_env;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use credns_registry::{Allocation, Policy, Registry};
use credns_sys::{Pid, ProcFs};

/// Skip (or, with `CREDNS_REQUIRE_ALL=1`, fail) unless `why` is `None`.
fn require(test: &str, why: Option<String>) -> bool {
    let Some(reason) = why else { return true };
    if std::env::var("CREDNS_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("{test}: {reason}, and CREDNS_REQUIRE_ALL=1 forbids skipping");
    }
    println!("{test}: skipped: {reason}");
    false
}

/// Skip (or, with `CREDNS_REQUIRE_ALL=1`, fail) with `why`, unless it is `None`.
pub fn require_or_skip(test: &str, why: Option<String>) -> bool {
    require(test, why)
}

/// Root is needed: the tests create user namespaces, write their maps and open the registry.
pub fn needs_root(test: &str) -> bool {
    let why = match ProcFs::new().status(Pid::this()).map(|s| s.uid[1]) {
        Ok(0) => None,
        Ok(uid) => Some(format!(
            "needs root (running as uid {uid}; credns run writes maps and opens the registry as root)"
        )),
        Err(e) => Some(format!("needs root (cannot read own credentials: {e})")),
    };
    require(test, why)
}

/// A statically linked busybox (Debian's `busybox-static`), to build rootfs trees.
pub fn static_busybox(test: &str) -> Option<PathBuf> {
    let p = PathBuf::from("/bin/busybox");
    let why = match std::fs::read(&p) {
        // A dynamic executable names its loader (PT_INTERP); a static one does not.
        Ok(bytes) if !contains(&bytes, b"/lib64/ld-linux") && !contains(&bytes, b"/lib/ld-") => {
            None
        }
        Ok(_) => Some("needs a static /bin/busybox (apt-get install busybox-static)".to_string()),
        Err(e) => Some(format!(
            "needs /bin/busybox (apt-get install busybox-static): {e}"
        )),
    };
    require(test, why).then_some(p)
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

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A rootfs with busybox and `proc`, `dev`, `sys`, `tmp` directories, under `dir`.
pub fn busybox_rootfs(busybox: &Path, dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for d in ["bin", "proc", "dev", "sys", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    for applet in ["sh", "cat", "id", "ls", "test", "echo", "readlink"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    root
}

/// Run the credns binary with a fixed PATH (so lookups do not depend on the caller's).
pub fn credns(args: &[&str]) -> Output {
    // Tests never reach a daemon or store they did not start: every command that may talk to
    // the registry names its socket (and the store, if it may open one).
    let registry = [
        "run", "oci", "alloc", "release", "list", "show", "who", "serve", "delegate", "key",
    ];
    if args.first().is_some_and(|c| registry.contains(c))
        || (args.first() == Some(&"mount") && args.contains(&"--name"))
        || (args.first() == Some(&"audit") && !args.contains(&"--no-registry"))
    {
        assert!(
            args.contains(&"--socket"),
            "credns {args:?} would reach the host's daemon: give --socket"
        );
    }
    Command::new(env!("CARGO_BIN_EXE_credns"))
        .args(args)
        .env("PATH", "/usr/bin:/bin")
        .output()
        .expect("running credns")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Assert success and return stdout.
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "credns failed: {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// Every allocation in the store (opened after credns exited and released its lock).
pub fn allocations(store: &Path) -> Vec<Allocation> {
    let reg = Registry::open(store, Policy::default()).expect("open store");
    reg.list().cloned().collect()
}

/// A `credns serve` on `socket` with `store`, stopped (SIGKILL, then reaped) on drop.
pub struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `credns serve --socket SOCKET --store STORE` and wait until it answers.
pub fn serve(socket: &Path, store: &Path) -> Serve {
    let mut child = Command::new(env!("CARGO_BIN_EXE_credns"))
        .arg("serve")
        .arg("--socket")
        .arg(socket)
        .arg("--store")
        .arg(store)
        .spawn()
        .expect("credns serve starts");
    let t0 = std::time::Instant::now();
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("credns serve exited: {st}");
        }
        assert!(t0.elapsed().as_secs() < 30, "credns serve did not answer");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Serve(child)
}
