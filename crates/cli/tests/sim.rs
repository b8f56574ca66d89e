//! `credns sim` as a user runs it: the shipped examples, a failed expectation, bad input, JSON.

use std::process::{Command, Output};

fn credns(args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_credns"));
    cmd.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("credns runs");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn example(name: &str) -> String {
    format!("{}/../model/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn shipped_examples_hold() {
    for name in [
        "seed000_kill_and_files.toml",
        "seed001_access_order.toml",
        "idmapped_mount.toml",
        "setuid_exec_in_namespace.toml",
    ] {
        let out = credns(&["sim", &example(name)], None);
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}:\n{stdout}{}",
            text(&out.stderr)
        );
        let last = stdout.lines().last().unwrap();
        assert!(last.ends_with("0 not"), "{name}: {last}");
        assert!(!stdout.contains("MISMATCH"), "{name}");
    }
}

#[test]
fn seed001_explains_the_refused_override() {
    let out = credns(&["sim", &example("seed001_access_order.toml")], None);
    let stdout = text(&out.stdout);
    let first = stdout
        .split("\n\n")
        .find(|b| b.starts_with("#0 "))
        .expect("first op printed");
    assert!(
        first.contains("=> denied EACCES   expected EACCES: ok"),
        "{first}"
    );
    assert!(first.contains("capable_wrt_inode_uidgid"), "{first}");
    assert!(
        stdout.ends_with("12 operations, 12 as expected, 0 not\n"),
        "{stdout}"
    );
}

const MISMATCH: &str = r#"
[[process]]
name = "alice"
uid = 1000

[[process]]
name = "bob"
uid = 1001

[[op]]
by = "alice"
op = "kill"
target = "bob"
expect = "allowed"
"#;

#[test]
fn failed_expectation_exits_1() {
    let out = credns(&["sim", "--brief", "-"], Some(MISMATCH));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    // Exactly one line per operation; the totals on stderr.
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.starts_with("<stdin>:"), "{stdout}");
    assert!(
        stdout.ends_with("=> denied EPERM   expected allowed: MISMATCH\n"),
        "{stdout}"
    );
    assert_eq!(text(&out.stderr), "1 operations, 0 as expected, 1 not\n");
}

#[test]
fn bad_scenario_names_file_line_and_column() {
    let bad = "[[process]]\nname = \"a\"\nuid = \"x\"\n";
    let out = credns(&["sim", "-"], Some(bad));
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("credns: error: <stdin>:3:"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing printed before the error");
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = credns(&["sim", "/nonexistent/s.toml"], None);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "credns: error: reading /nonexistent/s.toml: No such file or directory (os error 2)\n"
    );
}

#[test]
fn json_is_one_object_per_operation() {
    let out = credns(
        &["sim", "--json", &example("seed001_access_order.toml")],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 12);
    assert_eq!(lines[0]["index"], 0);
    assert_eq!(lines[0]["result"], "denied");
    assert_eq!(lines[0]["errno"], "EACCES");
    assert_eq!(lines[0]["matched"], true);
    assert!(lines[0]["trace"].as_array().unwrap().len() > 2);
    assert_eq!(lines[9]["output"]["uid"], "1");
    assert!(lines[1].get("errno").is_none());
}

/// `--who-can`: every process of seed 000 asked whether it may read the file of host uid
/// 501, which namespace 1 does not map. Only its owner may: ns1's root (host uid 500) has no
/// capability over an inode whose owner its namespace does not map, and ns1's 501 is not host
/// uid 501.
#[test]
fn who_can_read_seed000_file() {
    let f = example("seed000_kill_and_files.toml");
    let out = credns(&["sim", &f, "--who-can", "/home/f501"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "{f}: access(\"/home/f501\", r) by each process: 1 of 4 allowed
┌────────────────────────────────────────────────────────────────┐
│ process   namespace   uid:gid   kernel uid:gid   answer        │
╞════════════════════════════════════════════════════════════════╡
│ host500   init        500:500   500:500          denied EACCES │
│ host501   init        501:501   501:501          allowed       │
│ nsroot    ns1         0:0       500:500          denied EACCES │
│ ns501     ns1         501:501   100500:100500    denied EACCES │
└────────────────────────────────────────────────────────────────┘
"
        )
    );

    let out = credns(
        &[
            "sim",
            &f,
            "--who-can",
            "/home/f501",
            "--access",
            "rw",
            "--json",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[1]["process"], "host501");
    assert_eq!(lines[1]["access"], "rw");
    assert_eq!(lines[1]["result"], "allowed");
    assert_eq!(lines[2]["process"], "nsroot");
    assert_eq!(
        (lines[2]["uid"].as_u64(), lines[2]["kuid"].as_u64()),
        (Some(0), Some(500))
    );
    assert_eq!(
        (lines[2]["result"].as_str(), lines[2]["errno"].as_str()),
        (Some("denied"), Some("EACCES"))
    );
}

#[test]
fn who_can_refuses_a_bad_access() {
    let f = example("seed000_kill_and_files.toml");
    let out = credns(
        &["sim", &f, "--who-can", "/home/f501", "--access", "rq"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with(
            "error: invalid value 'rq' for '--access <rwx>': 'q' is not one of r, w, x\n"
        ),
        "{}",
        text(&out.stderr)
    );
}
