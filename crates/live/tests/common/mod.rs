//! Live processes planted for the explain tests: `sleep`s with chosen ids, in user
//! namespaces made for the test, killed when dropped (also when an assertion fails).
#![allow(dead_code)]

use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn ns_ino(pid: u32) -> u64 {
    std::fs::metadata(format!("/proc/{pid}/ns/user"))
        .map(|m| m.ino())
        .unwrap_or(0)
}

/// Processes killed when dropped.
pub struct Planted(pub Vec<Child>);

impl Drop for Planted {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Planted {
    pub fn spawn(&mut self, argv: &[&str]) -> u32 {
        let c = Command::new(argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        let pid = c.id();
        self.0.push(c);
        pid
    }

    /// A `sleep` in a new user namespace (unshare execs in place, so the pid is the sleep's).
    pub fn holder(&mut self, prefix: &[&str], parent_ns: u64) -> u32 {
        let mut argv = prefix.to_vec();
        argv.extend(["unshare", "--user", "sleep", "600"]);
        let pid = self.spawn(&argv);
        let t0 = Instant::now();
        // nsenter forks: find the process that is in a namespace below parent_ns.
        loop {
            if let Some(p) = descendant_in_new_ns(pid, parent_ns) {
                return p;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "{argv:?} made no namespace"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The `sleep` below `pid` that lives in a namespace other than `parent_ns` and the test's own
/// (nsenter itself starts in the test's namespace, and its child first in `parent_ns`).
pub fn descendant_in_new_ns(pid: u32, parent_ns: u64) -> Option<u32> {
    let ino = ns_ino(pid);
    let own = ns_ino(std::process::id());
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() == "sleep" && ino != 0 && ino != parent_ns && ino != own {
        return Some(pid);
    }
    let kids = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    kids.split_whitespace()
        .filter_map(|k| k.parse().ok())
        .find_map(|k| descendant_in_new_ns(k, parent_ns))
}

pub fn write_maps(writer: &[&str], pid: u32, map: &str) {
    for f in ["uid_map", "gid_map"] {
        let mut argv = writer.to_vec();
        let cmd = format!("echo '{map}' > /proc/{pid}/{f}");
        argv.extend(["sh", "-c", &cmd]);
        let st = Command::new(argv[0]).args(&argv[1..]).status().unwrap();
        assert!(st.success(), "{argv:?}");
    }
}

pub fn inside(target: u32, uid: u32) -> Vec<String> {
    ["nsenter", "--user", "--target", &target.to_string()]
        .into_iter()
        .map(String::from)
        .chain([
            "--setuid".into(),
            uid.to_string(),
            "--setgid".into(),
            uid.to_string(),
        ])
        .collect()
}

pub fn sleeper(p: &mut Planted, prefix: Vec<String>, parent_ns: u64) -> u32 {
    let mut argv: Vec<&str> = prefix.iter().map(String::as_str).collect();
    argv.extend(["sleep", "600"]);
    let pid = p.spawn(&argv);
    // nsenter forks the command: wait for the sleep below it.
    let t0 = Instant::now();
    loop {
        if let Some(c) = sleeping(pid, parent_ns) {
            return c;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{argv:?} did not start"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn sleeping(pid: u32, parent_ns: u64) -> Option<u32> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    if comm.trim() == "sleep" && ns_ino(pid) != 0 && (parent_ns == 0 || ns_ino(pid) != parent_ns) {
        return Some(pid);
    }
    let kids = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    kids.split_whitespace()
        .filter_map(|k| k.parse().ok())
        .find_map(|k| sleeping(k, parent_ns))
}
