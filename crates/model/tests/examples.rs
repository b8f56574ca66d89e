//! Parse and run every shipped example; every expectation must hold.

use credns_model::Scenario;

fn run_file(name: &str) -> usize {
    let path = format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("example readable");
    let s = Scenario::parse(&text, name).unwrap_or_else(|e| panic!("{e}"));
    let reports = s.run();
    let bad: Vec<String> = reports
        .iter()
        .filter(|r| !r.matches())
        .map(|r| r.to_string())
        .collect();
    assert!(
        bad.is_empty(),
        "{name}: expectations failed:\n{}",
        bad.join("\n\n")
    );
    assert!(
        reports.iter().all(|r| r.matched.is_some()),
        "{name}: every op has an expectation"
    );
    reports.len()
}

#[test]
fn every_example_holds() {
    let dir = format!("{}/examples", env!("CARGO_MANIFEST_DIR"));
    let names = tomls(&dir);
    assert!(names.len() >= 3);
    for n in names {
        let count = run_file(&n);
        assert!(count > 0, "{n} has operations");
    }
}

/// The proposals' examples (docs/semantics.md), each under the semantics it names. They live
/// apart from the examples above, which the conformance suite also runs on the kernel: these
/// state what mainline Linux does not do.
#[test]
fn every_proposal_example_holds() {
    let dir = format!("{}/examples/proposals", env!("CARGO_MANIFEST_DIR"));
    let names = tomls(&dir);
    assert!(names.len() >= 7);
    for n in names {
        let path = format!("proposals/{n}");
        let s = Scenario::parse(
            &std::fs::read_to_string(format!("{dir}/{n}")).unwrap(),
            &path,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!s.semantics.is_mainline(), "{path} names its proposals");
        assert!(run_file(&path) > 0);
    }
}

#[test]
fn seed000() {
    run_file("seed000_kill_and_files.toml");
}

/// The examples of what `credns run` builds (its keyrings): checked on real containers by
/// crates/cli/tests/run_keyring_model.rs, and here in the model.
#[test]
fn every_run_example_holds() {
    let dir = format!("{}/examples/run", env!("CARGO_MANIFEST_DIR"));
    let names = tomls(&dir);
    assert!(!names.is_empty());
    for n in names {
        assert!(run_file(&format!("run/{n}")) > 0);
    }
}

/// The `.toml` files of `dir`, sorted.
fn tomls(dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    names
}
