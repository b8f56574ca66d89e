//! `credns audit` on real namespaces: each run is alone in a fresh pid namespace with its own
//! /proc (`unshare --pid --fork --mount-proc`), so it sees the namespaces the test planted and
//! nothing of the host's; passwd and group come from a scratch directory.

mod common;

use std::process::Command;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_credns");

/// Plant user namespaces with hand-written maps, audit, print what it said. `mk WHO UIDMAP
/// GIDMAP` starts a `sleep` in a new user namespace as WHO (root or a uid) and writes its maps
/// as root; each planted namespace's inode is printed as `ino NAME INODE`.
const PLANT: &str = r#"
set -u
credns=$1; etc=$2; store=$3; sock=$4
mk() {
  if [ "$2" = root ]; then unshare --user sleep 60 &
  else setpriv --reuid "$2" --regid "$2" --clear-groups unshare --user sleep 60 &
  fi
  p=$!
  until [ "$(stat -L -c %i /proc/$p/ns/user)" != "$(stat -L -c %i /proc/self/ns/user)" ]; do sleep 0.01; done
  echo "$3" > /proc/$p/uid_map; echo "$4" > /proc/$p/gid_map
  echo "ino $1 $(stat -L -c %i /proc/$p/ns/user)"
}
echo '== clean'
"$credns" audit --no-registry --etc "$etc"; echo "exit $?"
mk a root '0 600000 1000' '0 600000 1000'
mk b 1000 '0 600500 1000' '0 1000 1'
echo '== shared'
"$credns" audit --no-registry --etc "$etc"; echo "exit $?"
kill %1 %2; wait
"$credns" alloc --socket "$sock" --store "$store" --name web >/dev/null || exit 3
start=$("$credns" show --socket "$sock" --store "$store" web --json | sed -n 's/.*"start": \([0-9]*\).*/\1/p' | head -1)
echo "start $start"
mk web root "0 $start 65536" "0 $start 65536"
mk intruder 1000 "0 $((start + 10)) 5" '0 1000 1'
echo '== registry'
"$credns" audit --socket "$sock" --store "$store" --etc "$etc"; echo "exit $?"
echo '== json'
"$credns" audit --socket "$sock" --store "$store" --etc "$etc" --json; echo "exit $?"
kill %1 %2; wait
"#;

fn section<'a>(out: &'a str, name: &str) -> &'a str {
    let start = out
        .find(&format!("== {name}\n"))
        .unwrap_or_else(|| panic!("no section {name} in:\n{out}"));
    let rest = &out[start + name.len() + 4..];
    &rest[..rest.find("\n== ").unwrap_or(rest.len())]
}

fn value<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no line {key:?} in:\n{out}"))
        .trim()
}

#[test]
fn audit_reports_planted_problems_and_nothing_on_a_clean_host() {
    if !needs_root("audit_reports_planted_problems_and_nothing_on_a_clean_host")
        || !needs_tool("audit", "setpriv", "util-linux")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    std::fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(etc.join("group"), "root:x:0:\nalice:x:1000:\n").unwrap();
    let store = dir.path().join("lib/registry.redb");
    let sock = dir.path().join("no-daemon.sock");
    let out = Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--mount-proc",
            "bash",
            "-c",
            PLANT,
            "plant",
        ])
        .arg(BIN)
        .args([&etc, &store, &sock].map(|p: &std::path::PathBuf| p.as_os_str()))
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .expect("running unshare");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_clean(section(&text, "clean"));
    check_shared(&text);
    check_registry(&text);
}

fn check_clean(out: &str) {
    assert!(out.contains("user namespaces: 0\n"), "{out}");
    assert!(out.contains("findings: 0\n"), "{out}");
    assert_eq!(value(out, "exit"), "0", "{out}");
}

fn check_shared(text: &str) {
    let (a, b) = (value(text, "ino a"), value(text, "ino b"));
    let out = section(text, "shared");
    for want in [
        format!(
            "  high shared-ids: uids 600500-600999 are mapped by owner 0 (root), outside the \
             registry (user namespace user:[{a}]) and by owner 1000 (alice), outside the \
             registry (user namespace user:[{b}])"
        ),
        format!(
            "  medium unregistered: user namespace user:[{a}] (owner 0 root) maps uids \
             600000-600999, which no allocation holds"
        ),
        format!(
            "  medium unregistered: user namespace user:[{b}] (owner 1000 alice) maps uids \
             600500-601499, which no allocation holds"
        ),
        format!("  user:[{b}] depth 1 owner 1000 pids 1 uid_map [0 600500 1000] gid_map [0 1000 1] allocation -"),
        "findings: 4".to_string(),
    ] {
        assert!(out.lines().any(|l| l == want), "missing {want:?} in:\n{out}");
    }
    assert_eq!(value(out, "exit"), "1", "{out}");
}

fn check_registry(text: &str) {
    let start: u32 = value(text, "start").parse().unwrap();
    let (web, intruder) = (value(text, "ino web"), value(text, "ino intruder"));
    let out = section(text, "registry");
    let (lo, hi) = (start + 10, start + 14);
    for want in [
        format!(
            "  high shared-ids: uids {lo}-{hi} are mapped by allocation #1 (user namespace \
             user:[{web}]) and by owner 1000 (alice), outside the registry (user namespace \
             user:[{intruder}])"
        ),
        format!(
            "  high leased-elsewhere: user namespace user:[{intruder}] (owner 1000 alice) maps \
             uids {lo}-{hi} of allocation #1, which belongs to uid 0"
        ),
        "findings: 2".to_string(),
    ] {
        assert!(
            out.lines().any(|l| l == want),
            "missing {want:?} in:\n{out}"
        );
    }
    assert!(out.contains(&format!(
        "user:[{web}] depth 1 owner 0 pids 1 uid_map [0 {start} 65536]"
    )));
    assert!(out.contains("allocation #1\n"), "{out}");
    assert_eq!(value(out, "exit"), "1", "{out}");
    let json = section(text, "json");
    let body = &json[..json.rfind("exit").unwrap()];
    let v: serde_json::Value = serde_json::from_str(body).expect("audit --json is JSON");
    let kinds: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["shared_ids", "leased_elsewhere"]);
    assert_eq!(v["allocations"], 1);
    assert_eq!(value(json, "exit"), "1");
}

#[test]
fn audit_refuses_without_a_registry_unless_told() {
    // A user who is not root reaches the registry only through the daemon; none answers here.
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("no-daemon.sock");
    let mut cmd = if credns_sys::is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            BIN,
        ]);
        c
    } else {
        Command::new(BIN)
    };
    let o = cmd
        .args(["audit", "--socket"])
        .arg(&sock)
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.starts_with("credns: error: reaching the registry (--no-registry audits without it): "),
        "{err}"
    );
    // With --no-registry it audits (an unprivileged user sees what /proc shows it).
    let o = credns(&[
        "audit",
        "--no-registry",
        "--etc",
        dir.path().to_str().unwrap(),
    ]);
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));
    assert!(stdout(&o).contains("registry: not read"), "{}", stdout(&o));
}
