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
    assert!(
        stdout.contains("=> denied EPERM   expected allowed: MISMATCH"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("1 operations, 0 as expected, 1 not\n"),
        "{stdout}"
    );
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
