//! The generated suites' seed: new on every run unless CREDNS_SEED gives it. This test runs
//! itself twice as a child that prints the seed in force and compares what they print.

use credns_conformance::seed;

const CHILD: &str = "CREDNS_SEED_TEST_CHILD";

fn child_seed(given: Option<&str>) -> String {
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("own path"));
    cmd.args([
        "--exact",
        "seed_is_new_each_run",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD, "1");
    match given {
        Some(s) => cmd.env("CREDNS_SEED", s),
        None => cmd.env_remove("CREDNS_SEED"),
    };
    let out = cmd.output().expect("running the test binary again");
    assert!(out.status.success(), "child failed: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.split_once("SEED ").map(|(_, s)| s))
        .unwrap_or_else(|| panic!("child printed no seed: {out:?}"))
        .to_owned()
}

#[test]
fn seed_is_new_each_run() {
    if std::env::var_os(CHILD).is_some() {
        println!("SEED {:#x}", seed());
        return;
    }
    let (a, b) = (child_seed(None), child_seed(None));
    assert_ne!(a, b, "two runs without CREDNS_SEED used the same seed");
    assert_eq!(
        child_seed(Some("0x2a")),
        "0x2a",
        "CREDNS_SEED replays a seed"
    );
    assert_eq!(child_seed(Some("42")), "0x2a", "CREDNS_SEED in decimal");
}
