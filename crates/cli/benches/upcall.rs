//! A container's `request_key` upcall through a credns route, against the same request answered
//! by plain `/sbin/request-key` with a handler doing the same work, side by side in one run.
//!
//! * routed: request-key runs `credns key upcall` (the line `credns key setup` writes), which
//!   reads the container's routes from the copy the daemon keeps beside its keyring (no round
//!   trip to the daemon) and runs the route's handler, `/bin/echo issued`, instantiating the
//!   key with what it printed;
//! * plain: request-key runs `/bin/keyctl instantiate %k issued 0` from its own configuration
//!   line: one program that instantiates the key.
//!
//! Both requests come from a thread with what the upcall sees of a container (a session keyring
//! `_ses.credns.N` of the allocation's owner, root here, and the container root's host uid as its
//! fsuid): on the project's VM the kernel runs request-key only for requesters with
//! CAP_SYS_ADMIN in the initial user namespace (docs/kernel-notes.md, "Upcalls"). Every request is for a new description, so each
//! makes an upcall; the key is invalidated afterwards.
//!
//! `cargo bench -p credns --bench upcall` as root, with keyutils' request-key. It writes two
//! files of its own in /etc/request-key.d (the kernel's request-key reads no other directory)
//! matching only its own descriptions, and removes them at the end. `CREDNS_BENCH_RUNS` sets the
//! requests per kind (default 200). Figures are the median and mean per request; the ratio is
//! of medians.

mod common;

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Daemon;
use credns_sys::keys::{self, session, upcall, KEY_SPEC_SESSION_KEYRING};

/// A file removed when dropped.
struct Installed(PathBuf);

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `credns ARGS` with `--socket SOCKET` before any `--` (never the host's daemon or store).
fn credns(bin: &Path, socket: &Path, args: &[&str]) -> String {
    let (head, tail) = match args.iter().position(|a| *a == "--") {
        Some(i) => args.split_at(i),
        None => (args, &[][..]),
    };
    let o = Command::new(bin)
        .args(head)
        .arg("--socket")
        .arg(socket)
        .args(tail)
        .stdin(Stdio::null())
        .output()
        .expect("running credns");
    assert!(o.status.success(), "credns {args:?}: {o:?}");
    String::from_utf8(o.stdout).unwrap()
}

/// One request as the container's, timed; the key is checked and invalidated.
fn request(alloc: u64, uid: u32, desc: String) -> Duration {
    std::thread::spawn(move || {
        let name = CString::new(format!("_ses.credns.{alloc}")).unwrap();
        session::join_session_keyring(&name).expect("session keyring");
        session::set_thread_fsuid(uid).expect("setfsuid");
        let t = Instant::now();
        let key = upcall::request_key("user", &desc, Some("a"), KEY_SPEC_SESSION_KEYRING);
        let d = t.elapsed();
        session::set_thread_fsuid(0).expect("setfsuid back");
        let key = key.unwrap_or_else(|e| panic!("request for {desc}: {e}"));
        let payload = keys::read(key).expect("read the key");
        assert!(payload.starts_with(b"issued"), "{desc}: {payload:?}");
        let _ = keys::invalidate(key);
        d
    })
    .join()
    .unwrap()
}

fn median(v: &[Duration]) -> Duration {
    let mut s = v.to_vec();
    s.sort_unstable();
    s[s.len() / 2]
}

fn mean(v: &[Duration]) -> Duration {
    v.iter().sum::<Duration>() / v.len() as u32
}

fn main() {
    if std::env::args().any(|a| a == "--bench") && !credns_sys::is_root() {
        eprintln!("upcall bench: needs root (it installs request-key configuration); skipped");
        return;
    }
    if !Path::new("/sbin/request-key").exists() || !Path::new("/bin/keyctl").exists() {
        eprintln!("upcall bench: needs keyutils (/sbin/request-key, /bin/keyctl); skipped");
        return;
    }
    let runs: usize = std::env::var("CREDNS_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let bin = common::build_dist();
    let dir = tempfile::tempdir().unwrap();
    // Its /etc is the benchmark's own directory: no host file decides its exclusions.
    let daemon = Daemon::start(
        &bin,
        dir.path(),
        &["--etc".as_ref(), dir.path().as_os_str()],
    );
    let socket = daemon.socket.clone();
    let store = dir.path().join("registry.redb");
    credns(
        &bin,
        &socket,
        &["run", "--name", "bench", "--", "/bin/true"],
    );
    let shown: serde_json::Value =
        serde_json::from_str(&credns(&bin, &socket, &["show", "bench", "--json"])).unwrap();
    let alloc = shown["id"].as_u64().unwrap();
    let uid = shown["uid"]["start"].as_u64().unwrap() as u32;
    let tag = format!("debug:credns-bench{}", std::process::id());
    let routed_file = format!("credns-bench-{}-routed.conf", std::process::id());
    credns(
        &bin,
        &socket,
        &[
            "key",
            "setup",
            "--file",
            &routed_file,
            "--type",
            "user",
            "--desc",
            &format!("{tag}r*"),
            "--store",
            store.to_str().unwrap(),
        ],
    );
    let _routed = Installed(Path::new("/etc/request-key.d").join(&routed_file));
    let plain = Installed(
        Path::new("/etc/request-key.d")
            .join(format!("credns-bench-{}-plain.conf", std::process::id())),
    );
    std::fs::write(
        &plain.0,
        format!("create user {tag}p* * /bin/keyctl instantiate %k issued 0\n"),
    )
    .unwrap();
    credns(
        &bin,
        &socket,
        &[
            "key",
            "route",
            "bench",
            "--type",
            "user",
            "--desc",
            &format!("{tag}r*"),
            "--handler",
            "/bin/echo issued",
        ],
    );
    // Warm up, then interleave the two kinds so machine noise hits them alike.
    for i in 0..10 {
        request(alloc, uid, format!("{tag}rw{i}"));
        request(alloc, uid, format!("{tag}pw{i}"));
    }
    let (mut routed, mut plain_t) = (Vec::new(), Vec::new());
    for i in 0..runs {
        routed.push(request(alloc, uid, format!("{tag}r{i}")));
        plain_t.push(request(alloc, uid, format!("{tag}p{i}")));
    }
    println!("upcall: {runs} requests per kind, interleaved; wall time of request_key(2)");
    println!("{:<58} {:>10} {:>10}", "kind", "median", "mean");
    for (label, v) in [
        ("plain request-key: /bin/keyctl instantiate", &plain_t),
        ("credns route: credns key upcall + /bin/echo", &routed),
    ] {
        println!(
            "{label:<58} {:>8.3}ms {:>8.3}ms",
            median(v).as_secs_f64() * 1e3,
            mean(v).as_secs_f64() * 1e3
        );
    }
    println!(
        "routed ÷ plain (medians): {:.2}×",
        median(&routed).as_secs_f64() / median(&plain_t).as_secs_f64()
    );
    credns(&bin, &socket, &["release", "bench"]);
}
