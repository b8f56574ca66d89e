//! `credns explain` as a user runs it: the answer, the exit status, the errors.

mod common;

use std::process::{Command, Stdio};

use common::*;

/// A `sleep` killed when dropped (also when a test fails).
struct Sleeper(std::process::Child);

impl Sleeper {
    /// `sleep` as uid 1000 (through setpriv), once it has dropped its ids.
    fn as_uid_1000() -> Self {
        let c = Command::new("setpriv")
            .args([
                "--reuid",
                "1000",
                "--regid",
                "1000",
                "--clear-groups",
                "sleep",
                "60",
            ])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        wait_sleeping(c.id());
        Sleeper(c)
    }

    fn pid(&self) -> String {
        self.0.id().to_string()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Wait until `pid` has exec'd `sleep` (setpriv has changed its ids by then).
fn wait_sleeping(pid: u32) {
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(format!("/proc/{pid}/comm")).map_or(true, |c| c.trim() != "sleep")
    {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(10),
            "{pid} did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn explain_kill_between_two_host_processes() {
    if !needs_root("explain_kill_between_two_host_processes") {
        return;
    }
    // A process of uid 1000 and one of root: uid 1000 may not signal root's.
    let user = Sleeper::as_uid_1000();
    let root = Sleeper(Command::new("sleep").arg("60").spawn().unwrap());
    wait_sleeping(root.0.id());
    let (u, r) = (user.pid(), root.pid());
    let o = credns(&["explain", &u, "kill", &r, "KILL"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    let first = out.lines().next().unwrap();
    assert!(first.starts_with(&format!("may pid {u} (host uid 1000, euid 1000, in the initial user namespace) kill pid {r} with signal 9?")), "{first}");
    assert!(out.lines().any(|l| l == "model => denied: EPERM"), "{out}");
    assert!(
        out.lines()
            .any(|l| l == format!("kernel => denied: EPERM (kill({r}, 0))")),
        "{out}"
    );
    assert!(out.lines().any(|l| l == "model and kernel agree"), "{out}");
    assert!(
        out.contains("kill_ok_by_cred"),
        "the trace names the kernel's rule: {out}"
    );
}

#[test]
fn a_saved_question_replays_in_the_model() {
    if !needs_root("a_saved_question_replays_in_the_model") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("q.toml");
    let user = Sleeper::as_uid_1000();
    let u = user.pid();
    let me = std::process::id().to_string();
    let mut results = Vec::new();
    for q in [["kill", &me], ["ptrace", &me], ["setns", &me]] {
        let o = credns(&[
            "explain",
            &u,
            q[0],
            q[1],
            "--save-scenario",
            saved.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let text = std::fs::read_to_string(&saved).unwrap();
        assert!(text.contains(&format!("op = \"{}\"", q[0])), "{text}");
        let o = credns(&["sim", saved.to_str().unwrap(), "--brief"]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{text}\n{}{}",
            stdout(&o),
            stderr(&o)
        );
        results.push(stdout(&o));
    }
    drop(user);
    assert!(results[0].contains("expected EPERM: ok"), "{}", results[0]);
}

#[test]
fn explain_errors_name_what_was_wrong() {
    let o = credns(&["explain", "4000000", "kill", "1"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "credns: error: no process 4000000 (it does not exist, or it exited while credns read it)\n"
    );
    let me = std::process::id().to_string();
    let o = credns(&["explain", &me, "kill", &me, "SIGBOGUS"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "credns: error: signal \"SIGBOGUS\": not a signal number or a known name (TERM, KILL, HUP, ...)\n"
    );
    let o = credns(&["explain", &me, "ptrace", &me, "--fscreds"]);
    assert_eq!(
        stderr(&o),
        "credns: error: --fscreds: attach checks the real ids; use --mode read\n"
    );
    let o = credns(&["explain", &me, "ptrace", &me, "--mode", "peek"]);
    assert_eq!(
        stderr(&o),
        "credns: error: --mode \"peek\": give attach or read\n"
    );
    let o = credns(&["explain", &me, "kill", &me, "65"]);
    assert_eq!(
        stderr(&o),
        "credns: error: signal 65: signals are 0 to 64\n"
    );
}

#[test]
fn explain_map_write_is_answered_by_the_model_alone() {
    if !needs_root("explain_map_write_is_answered_by_the_model_alone") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("map");
    std::fs::write(&map, "0 600000 10\n").unwrap();
    let mut holder = Command::new("unshare")
        .args(["--user", "sleep", "60"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = holder.id().to_string();
    let own = std::fs::read_link("/proc/self/ns/user").unwrap();
    while std::fs::read_link(format!("/proc/{pid}/ns/user"))
        .ok()
        .as_ref()
        == Some(&own)
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let me = std::process::id().to_string();
    let o = credns(&[
        "explain",
        &me,
        "map-write",
        &pid,
        map.to_str().unwrap(),
        "--json",
    ]);
    let out = stdout(&o);
    // The map was not written (read while the namespace's process lives).
    let written = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    let _ = (holder.kill(), holder.wait());
    assert_eq!(written, "");
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["model"]["result"], "allowed", "{out}");
    assert_eq!(v["kernel"]["result"], "not_asked");
    assert_eq!(
        v["kernel"]["reason"],
        "a map is written once: asking the kernel would write it"
    );
    assert_eq!(v["agree"], serde_json::Value::Null);
    // The map was not written.
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap_or_default(),
        ""
    );
}

#[test]
fn explain_key_answers_for_a_key_a_process_made() {
    if !needs_root("explain_key_answers_for_a_key_a_process_made") {
        return;
    }
    // uid 1000 adds a key to a session keyring of its own, as a user would with keyctl.
    let dir = tempfile::tempdir().unwrap();
    let serial_file = dir.path().join("serial");
    let script = format!(
        "keyctl add user credns-test-explain v @s > {} && exec sleep 60",
        serial_file.display()
    );
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let c = Command::new("setpriv")
        .args(["--reuid", "1000", "--regid", "1000", "--clear-groups"])
        .args(["keyctl", "session", "-", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sleeper = Sleeper(c);
    let pid = sleeper.0.id();
    // setpriv, keyctl and sh each exec the next: the sleep is the same process.
    wait_sleeping(pid);
    let child = pid.to_string();
    let key = std::fs::read_to_string(&serial_file)
        .unwrap()
        .trim()
        .to_string();
    // Its own key, possessed: read is allowed, and the kernel says so too.
    let o = credns(&[
        "explain",
        &child,
        "key",
        &key,
        "--perm",
        "read",
        "--possessed",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("model => allowed"), "{out}");
    assert!(out.contains("kernel => allowed (keyctl read"), "{out}");
    assert!(out.contains("model and kernel agree"), "{out}");
    // Not possessed, add_key's default mask gives its owner view only.
    let o = credns(&["explain", &child, "key", &key, "--perm", "read"]);
    let out = stdout(&o);
    assert!(out.contains("model => denied: EACCES"), "{out}");
    assert!(out.contains("kernel => denied: EACCES"), "{out}");
    // Bad arguments name what was wrong.
    let o = credns(&["explain", &child, "key", &key, "--perm", "bogus"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "credns: error: --perm \"bogus\": give view, read, write, search, link or setattr\n"
    );
    let o = credns(&["explain", &child, "key", "-5", "--perm", "view"]);
    assert_eq!(o.status.code(), Some(2));
    let o = credns(&["explain", &child, "key", "0x", "--perm", "view"]);
    assert_eq!(
        stderr(&o),
        "credns: error: key \"0x\": not a key serial (a positive number, decimal or 0x hex)\n"
    );
}
