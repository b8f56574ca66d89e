//! `credns audit` over many live user namespaces, side by side with util-linux's `lsns -t user`
//! (which lists them but checks nothing) on the same namespaces, in the same run.
//!
//! `cargo bench -p credns --bench audit` as root. The program re-executes itself in a fresh pid
//! namespace with its own /proc (`unshare --pid --fork --mount-proc`), starts
//! `CREDNS_AUDIT_NAMESPACES` (default 10,000) processes, each `unshare --user sleep` with maps
//! written by this program (16 ids each, disjoint), then times whole `credns audit
//! --no-registry` and `lsns -t user` commands, interleaved, and prints medians and the ratio.
//! Everything it started dies with the pid namespace.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn is_root() -> bool {
    credns_sys::is_root()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !is_root() {
        println!("audit: skipped: needs root (writes maps of other namespaces, new pid namespace)");
        return;
    }
    if std::env::var_os("CREDNS_BENCH_INNER").is_none() {
        let st = Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc"])
            .arg(std::env::current_exe().unwrap())
            .args(std::env::args_os().skip(1))
            .env("CREDNS_BENCH_INNER", "1")
            .status()
            .expect("re-running under unshare --pid");
        assert!(st.success(), "benchmark failed: {st:?}");
        return;
    }
    inner();
}

fn userns_ino(pid: u32) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/ns/user"))
        .ok()
        .map(|m| m.ino())
}

/// One process in a new user namespace, its maps written: host ids `base..base+16`.
fn plant(base: u32, own: u64) -> Child {
    let child = Command::new("unshare")
        .args(["--user", "sleep", "3600"])
        .stdin(Stdio::null())
        .spawn()
        .expect("unshare --user sleep");
    let pid = child.id();
    let t0 = Instant::now();
    while userns_ino(pid) == Some(own) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "unshare did not unshare"
        );
        std::thread::yield_now();
    }
    for f in ["uid_map", "gid_map"] {
        std::fs::write(format!("/proc/{pid}/{f}"), format!("0 {base} 16\n"))
            .unwrap_or_else(|e| panic!("writing {f} of {pid}: {e}"));
    }
    child
}

fn time(argv: &[&str]) -> Duration {
    let t = Instant::now();
    let st = Command::new(argv[0])
        .args(&argv[1..])
        .stdout(Stdio::null())
        .status()
        .expect("spawn");
    let d = t.elapsed();
    // audit exits 1 when it has findings (here: every namespace is unregistered).
    assert!(matches!(st.code(), Some(0 | 1)), "{argv:?} failed: {st:?}");
    d
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn inner() {
    let n: u32 = std::env::var("CREDNS_AUDIT_NAMESPACES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let own = userns_ino(std::process::id()).unwrap();
    let t0 = Instant::now();
    let children: Vec<Child> = (0..n).map(|i| plant(1_000_000 + i * 16, own)).collect();
    eprintln!(
        "audit: {n} user namespaces planted in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let etc = tempfile::tempdir().unwrap();
    std::fs::write(etc.path().join("passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    let credns = env!("CARGO_BIN_EXE_credns");
    let etc_arg = etc.path().to_str().unwrap();
    let audit = [credns, "audit", "--no-registry", "--etc", etc_arg];
    let lsns = ["lsns", "-t", "user"];
    check_seen(&audit, n);
    let (mut a, mut l) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        a.push(time(&audit));
        l.push(time(&lsns));
    }
    let (ma, ml) = (median(a), median(l));
    println!("audit: {n} live user namespaces, 7 runs each, interleaved; medians");
    println!(
        "  credns audit --no-registry   {:>9.1} ms",
        ma.as_secs_f64() * 1e3
    );
    println!(
        "  lsns -t user                 {:>9.1} ms",
        ml.as_secs_f64() * 1e3
    );
    println!(
        "  credns audit ÷ lsns          {:>9.2}×   (target: audit < 1 s)",
        ma.as_secs_f64() / ml.as_secs_f64()
    );
    // explain, whole command: snapshot of both processes, the model with its trace, and the
    // kernel asked through a helper (here: may this process enter a planted namespace?).
    let me = std::process::id().to_string();
    let target = children[n as usize / 2].id().to_string();
    let explain = [credns, "explain", &me, "setns", &target];
    let e: Vec<Duration> = (0..7).map(|_| time(&explain)).collect();
    println!(
        "  credns explain PID setns PID2 {:>9.1} ms   (target: < 50 ms, model and kernel together)",
        median(e).as_secs_f64() * 1e3
    );
    drop(children); // they die with the pid namespace
}

/// The audit saw every planted namespace.
fn check_seen(audit: &[&str], n: u32) {
    let out = Command::new(audit[0]).args(&audit[1..]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let want = format!("user namespaces: {n}");
    assert!(
        text.lines().next() == Some(want.as_str()),
        "audit saw {:?}, planted {n}",
        text.lines().next()
    );
}
