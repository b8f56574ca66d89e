//! What other tools pay to see the registry, side by side in one run with their baselines:
//! * `shadow_subid_has_range` (newuidmap's question: connect, ask `io.credns.Subid.HasRange`,
//!   answer) against the floor of any daemon answer on the same socket (connect,
//!   `org.varlink.service.GetInfo`);
//! * `getpwuid` of an allocation's id through glibc, nss-systemd and the daemon's
//!   `io.systemd.UserDatabase`, against `getpwuid(0)` answered by /etc/passwd (`files`).
//!
//! `cargo bench -p credns-subid --bench lookups` as root. The program re-executes itself under
//! `unshare --mount` with a tmpfs over /run (holding only this daemon's userdb socket) and an
//! nsswitch.conf of `passwd: files systemd` bound over /etc's, so the host is not touched.
//! `CREDNS_BENCH_LOOKUPS` sets the lookups per row (default 10,000).

use std::ffi::{c_int, CString};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use credns_api::subid::SubidClient;
use credns_service::{AllocOptions, Config, RegistryClient, Server, Service};
use subid_credns::query::Status;

const INNER: &str = "CREDNS_BENCH_INNER";

fn lookups() -> usize {
    std::env::var("CREDNS_BENCH_LOOKUPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn sh(script: &str) {
    let st = Command::new("sh").args(["-ec", script]).status().unwrap();
    assert!(st.success(), "{script}");
}

/// Median and total of `n` timed calls of `f`.
fn time(n: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    let mut each = Vec::with_capacity(n);
    let t0 = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        f();
        each.push(t.elapsed());
    }
    let total = t0.elapsed();
    each.sort();
    (each[n / 2], total)
}

fn getpwuid_name(uid: u32) -> Option<String> {
    let mut pw: libc::passwd = unsafe_zeroed_passwd();
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: pw, buf and out are valid for the call; buf's length is passed.
    let r = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
    if r != 0 || out.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points into buf, NUL-terminated.
    let name = unsafe { std::ffi::CStr::from_ptr(pw.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

fn unsafe_zeroed_passwd() -> libc::passwd {
    // SAFETY: passwd is plain old data (pointers and integers); all zeros is a valid value.
    unsafe { std::mem::zeroed() }
}

fn row(what: &str, n: usize, (median, total): (Duration, Duration), base: Duration) {
    println!(
        "| {what} | {n} | {:.1} | {:.3} | {:.2}× |",
        median.as_secs_f64() * 1e6,
        total.as_secs_f64(),
        median.as_secs_f64() / base.as_secs_f64()
    );
}

fn inner() {
    let n = lookups();
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    std::fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\nalice:x:60123:60123::/:/bin/sh\n",
    )
    .unwrap();
    let registry = dir.path().join("io.credns.Registry");
    let userdb = dir.path().join("io.credns.UserDatabase");
    let mut cfg = Config::new(dir.path().join("registry.redb"));
    cfg.etc = Some(etc);
    let server = Server::bind(&registry, Service::open(&cfg).unwrap())
        .unwrap()
        .with_userdb(credns_service::FaceSocket::Bind(userdb.clone()), "ct-")
        .unwrap();
    std::thread::spawn(move || server.run());
    let web = RegistryClient::connect(&registry)
        .unwrap()
        .allocate_name("web", &AllocOptions::default())
        .unwrap();
    let mut c = SubidClient::new(credns_varlink::Client::connect(&registry).unwrap());
    let alice = c.delegate("alice", None, Some(1)).unwrap().delegations[0].uid;
    std::fs::write(dir.path().join("nsswitch.conf"), "passwd: files systemd\n").unwrap();
    sh(&format!(
        "mount --bind {d}/nsswitch.conf /etc/nsswitch.conf
mount -t tmpfs credns-bench /run
mkdir -p /run/systemd/userdb
touch /run/systemd/userdb/io.credns.UserDatabase
mount --bind {u} /run/systemd/userdb/io.credns.UserDatabase",
        d = dir.path().display(),
        u = userdb.display()
    ));
    std::env::set_var("CREDNS_SOCKET", &registry);

    println!("| lookup | calls | median µs | total s | ratio to its baseline |");
    println!("|---|---:|---:|---:|---:|");
    let floor = time(n, || {
        let mut v = credns_varlink::Client::connect(&registry).unwrap();
        v.call("org.varlink.service.GetInfo", serde_json::json!({}), &[])
            .unwrap();
    });
    row("connect + GetInfo (baseline)", n, floor, floor.0);
    let owner = CString::new("alice").unwrap();
    let has = time(n, || {
        let mut r = false;
        // SAFETY: a live C string and a writable bool.
        let s = unsafe {
            subid_credns::shadow_subid_has_range(
                owner.as_ptr(),
                alice.start as libc::c_ulong,
                65536,
                1 as c_int,
                &mut r,
            )
        };
        assert!(s == Status::Success && r);
    });
    row("shadow_subid_has_range", n, has, floor.0);

    let files = time(n, || {
        assert_eq!(getpwuid_name(0).as_deref(), Some("root"));
    });
    row("getpwuid(0) from /etc/passwd (baseline)", n, files, files.0);
    let uid = web.uid.start + 1;
    let want = "ct-web-1".to_string();
    let userdb_row = time(n, || {
        assert_eq!(getpwuid_name(uid), Some(want.clone()));
    });
    row(
        "getpwuid of a container id via nss-systemd",
        n,
        userdb_row,
        files.0,
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let root = credns_sys::ProcFs::new()
        .status(credns_sys::Pid::this())
        .map(|s| s.uid[1] == 0)
        .unwrap_or(false);
    if !root {
        println!("lookups: skipped: needs root (it mounts in a private mount namespace)");
        return;
    }
    if std::env::var_os(INNER).is_some() {
        return inner();
    }
    if !Path::new("/usr/bin/getent").exists() {
        println!("lookups: note: glibc's getent is missing; nss-systemd may be too");
    }
    let exe = std::env::current_exe().unwrap();
    let st = Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(exe)
        .env(INNER, "1")
        .status()
        .unwrap();
    assert!(st.success());
}
