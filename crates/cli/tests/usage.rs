//! What a user sees before anything runs: help, and arguments refused with exact errors
//! (regressions: `credns help --help` failed; `credns show '#abc'` was taken as a name;
//! `alloc --write-maps` with `--name` was silently ignored; a two-field `--map` said only
//! "expected a decimal number followed by whitespace").

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_credns");

fn credns(args: &[&str]) -> Output {
    // A socket and store nobody uses: nothing here may reach a real registry.
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("none.sock");
    let store = dir.path().join("none/registry.redb");
    let mut c = Command::new(BIN);
    c.args(args);
    if args.first().is_some_and(|a| ["show", "alloc"].contains(a)) {
        c.arg("--socket").arg(&sock).arg("--store").arg(&store);
    }
    let out = c.output().unwrap();
    assert!(!store.exists(), "{args:?} created a store");
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_of_help_and_of_each_command() {
    let o = credns(&["help", "--help"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Usage: credns help [COMMAND]..."));
    let o = credns(&["help", "run"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("Usage: credns run [OPTIONS] -- <CMD>..."));
    let o = credns(&["help", "frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "credns: error: help: no command \"frobnicate\" (see `credns --help`)\n"
    );
}

#[test]
fn a_hash_must_be_followed_by_a_number() {
    let o = credns(&["show", "#abc"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "credns: error: \"#abc\": after '#' an allocation number is expected (digits only)\n"
    );
}

#[test]
fn write_maps_needs_a_namespace() {
    let o = credns(&["alloc", "--name", "x", "--write-maps"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "credns: error: --write-maps writes a namespace's maps: it needs --userns PID, not --name\n"
    );
}

#[test]
fn a_map_missing_its_count_says_so() {
    let o = credns(&["mount", "/nonexistent", "/nonexistent", "--map", "0 100000"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "credns: error: --map: the line ends after two numbers: the count is missing (an extent \
         is FIRST LOWER-FIRST COUNT) (EINVAL from map_write)\n"
    );
}

#[test]
fn run_parsed_alone_knows_what_the_whole_tree_says_of_it() {
    // `credns run` is parsed without building every command (its start-up is measured); its
    // help must say what `credns help run` says.
    let alone = String::from_utf8(credns(&["run", "--help"]).stdout).unwrap();
    let tree = String::from_utf8(credns(&["help", "run"]).stdout).unwrap();
    let options = |t: &str| -> Vec<String> {
        t.lines()
            .filter_map(|l| {
                l.trim_start()
                    .strip_prefix("--")
                    .or_else(|| l.trim_start().strip_prefix("-v, --"))
            })
            .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(alone.lines().next(), tree.lines().next());
    assert_eq!(options(&alone), options(&tree));
    assert!(options(&alone).contains(&"socket".to_string()), "{alone}");
}
