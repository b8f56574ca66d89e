//! `credns sim --compare`: the operations whose outcome differs between semantics, each side's
//! trace from where they part (docs/semantics.md).

use std::process::{Command, Output};

fn credns(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_credns"))
        .args(args)
        .output()
        .expect("credns runs")
}

fn example(name: &str) -> String {
    format!("{}/../model/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn seed000_differences_with_their_traces() {
    let f = example("proposals/seed000_userns_hierarchy.toml");
    let out = credns(&["sim", "--compare", "mainline,host_admin+inode_userns", &f]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("4 of 9 operations differ between mainline and host_admin+inode_userns"),
        "{stdout}"
    );
    // The creator kill: both sides' verdicts, and each side's rule where they part.
    let kill = stdout
        .split("\n\n")
        .find(|b| b.contains("nsroot: kill target=host500"))
        .expect("the kill of the creator differs");
    assert!(
        kill.contains("  mainline => allowed [si_uid=500]"),
        "{kill}"
    );
    assert!(
        kill.contains("  host_admin+inode_userns => denied EPERM"),
        "{kill}"
    );
    assert!(
        kill.contains("[pass] kill_ok_by_cred: kernel ids match"),
        "{kill}"
    );
    assert!(kill.contains("[FAIL] host_admin:kill_ok_by_cred"), "{kill}");
    // An op both agree on is not printed.
    assert!(!stdout.contains("nsroot: kill target=ns501"), "{stdout}");
}

#[test]
fn compare_json_lines() {
    let f = example("proposals/seed003_fsid_map.toml");
    let out = credns(&["sim", "--compare", "mainline,fsid_map", "--json", &f]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 4);
    let first = &lines[0];
    assert_eq!(
        first["op"].as_str().unwrap().split("  #").next().unwrap(),
        "ctroot: stat path=/image/etc_passwd"
    );
    let sides = first["sides"].as_array().unwrap();
    assert_eq!(sides[0]["semantics"], "mainline");
    assert_eq!(sides[0]["output"]["uid"], "65534");
    assert_eq!(sides[1]["semantics"], "fsid_map");
    assert_eq!(sides[1]["output"]["uid"], "0");
    let parted = first["parted_at"].as_u64().unwrap();
    assert!(parted >= 1);
    assert_eq!(
        sides[1]["trace"][0]["function"], "fsid_map:vfs",
        "the fsid_map side parts at the view of the fs maps"
    );
}

#[test]
fn compare_refuses_bad_lists() {
    for (arg, want) in [
        ("mainline", "at least two"),
        ("mainline,hostadmin", "unknown semantics \"hostadmin\""),
        ("mainline,keychain", "name \"inode_userns\" too"),
        ("mainline,host_admin+bogus", "unknown semantics \"bogus\""),
    ] {
        let out = credns(&[
            "sim",
            "--compare",
            arg,
            &example("seed000_kill_and_files.toml"),
        ]);
        assert_eq!(out.status.code(), Some(2), "{arg}");
        let err = text(&out.stderr);
        assert!(err.contains(want), "{arg}: {err}");
    }
}

#[test]
fn unknown_semantics_in_a_file_is_a_parse_error() {
    let dir = std::env::temp_dir().join(format!("credns-sim-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("bad.toml");
    std::fs::write(
        &f,
        "[settings]\nsemantics = [\"mainline\", \"fsid_maps\"]\n",
    )
    .unwrap();
    let out = credns(&["sim", f.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("bad.toml:2:26: unknown semantics \"fsid_maps\""),
        "{err}"
    );
}

#[test]
fn a_proposal_file_names_its_semantics() {
    let out = credns(&["sim", &example("proposals/seed002_key_acl.toml")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let first = text(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        first.ends_with("(4 operations, semantics key_acl)"),
        "{first}"
    );
}
