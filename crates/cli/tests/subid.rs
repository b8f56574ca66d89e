//! `credns delegate` and `credns setup subid` through the built binary: delegations made
//! directly on a store and through a daemon, listed and released like any allocation; the
//! nsswitch line set once, kept and removed in a scratch file.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{credns, ok, stderr};

const DEBIAN: &str =
    "passwd:         files systemd\ngroup:          files systemd\nhosts:          files dns\n";

#[test]
fn setup_subid_sets_the_line_once_and_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("nsswitch.conf");
    std::fs::write(&f, DEBIAN).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
    let p = f.to_str().unwrap();
    let o = credns(&["setup", "subid", "--nsswitch", p]);
    assert_eq!(ok(&o), format!("{p}: subid: credns set\n"));
    let set = std::fs::read_to_string(&f).unwrap();
    assert_eq!(set, format!("{DEBIAN}subid:          credns\n"));
    assert_eq!(
        std::fs::metadata(&f).unwrap().permissions().mode() & 0o7777,
        0o640,
        "the file keeps its mode"
    );
    assert_eq!(
        ok(&credns(&["setup", "subid", "--nsswitch", p])),
        format!("{p}: unchanged\n")
    );
    assert_eq!(std::fs::read_to_string(&f).unwrap(), set);
    assert_eq!(
        ok(&credns(&["setup", "subid", "--remove", "--nsswitch", p])),
        format!("{p}: subid: credns removed\n")
    );
    assert_eq!(std::fs::read_to_string(&f).unwrap(), DEBIAN);
    // Nothing but the file was left in its directory.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    let o = credns(&["setup", "subid", "--remove", "--nsswitch", "/nonexistent/x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("reading /nonexistent/x"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn delegations_are_made_listed_and_released_like_allocations() {
    if !common::needs_root("delegations_are_made_listed_and_released_like_allocations") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("io.credns.Registry");
    let store = dir.path().join("registry.redb");
    let (s, st) = (socket.to_str().unwrap(), store.to_str().unwrap());
    let at = ["--socket", s, "--store", st];
    let run = |args: &[&str]| credns(&[args, &at[..]].concat());
    // Directly on the store (no daemon answers), by uid: not a name of the host's passwd.
    let o = run(&["delegate", "60999", "--count", "2"]);
    let out = ok(&o);
    assert!(
        out.starts_with("60999 (uid 60999): 2 delegation(s), 2 made now\n"),
        "{out}"
    );
    assert!(out.contains(" subid:60999:0: uids "), "{out}");
    // Through a daemon on the same store: the same two, none made.
    let serving = common::serve(&socket, &store);
    let j: serde_json::Value =
        serde_json::from_str(&ok(&run(&["delegate", "60999", "--count", "2", "--json"]))).unwrap();
    assert_eq!(j["made"], 0);
    assert_eq!(j["delegations"].as_array().unwrap().len(), 2);
    let list: serde_json::Value = serde_json::from_str(&ok(&run(&["list", "--json"]))).unwrap();
    let delegated: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["delegated"] == true && a["owner"] == 60999)
        .collect();
    assert_eq!(delegated.len(), 2);
    assert!(ok(&run(&["list"])).contains("subid:60999:1 (delegated)"));
    assert!(ok(&run(&["show", "subid:60999:0"])).contains("subordinate ids of uid 60999"));
    ok(&run(&["release", "subid:60999:0"]));
    let j: serde_json::Value =
        serde_json::from_str(&ok(&run(&["delegate", "60999", "--count", "1", "--json"]))).unwrap();
    assert_eq!(j["delegations"][0]["name"], "subid:60999:1");
    let o = run(&["delegate", "no-such-user-here"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "credns: error: no user \"no-such-user-here\" in the daemon's passwd file (io.credns.Subid.NoSuchUser)\n"
    );
    drop(serving);
}
