//! Access probes (`credns_sys::probe`) on the running kernel: the answer a probe reports for
//! known allowed and known denied cases, on the host and inside a user namespace, and its
//! setup failures.
//!
//! These need root. Without it each test prints "skipped: ..." and returns, unless
//! CREDNS_REQUIRE_ALL=1, which turns the skip into a failure.

#[path = "../../../tests/conformance/src/scratch.rs"]
mod scratch;

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use credns_idmap::IdKind;
use credns_sys::probe::{probe_access, Access, AccessReport};
use credns_sys::{Actor, Errno, Error, Ids, UnshareOptions, UsernsChild};
use scratch::TempDir;

fn needs_root(test: &str) -> bool {
    common::needs_root(
        test,
        "creates files owned by other users and user namespaces",
    )
}

fn ids(uid: u32, gid: u32, groups: &[u32]) -> Ids {
    Ids {
        uid,
        gid,
        groups: Some(groups.to_vec()),
    }
}

/// `dir/f`, owned by `uid`:`gid`, mode 0640.
fn file(dir: &TempDir, uid: u32, gid: u32) -> PathBuf {
    let f = dir.0.join("f");
    std::fs::write(&f, b"x").unwrap();
    std::os::unix::fs::chown(&f, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
    f
}

fn check(r: AccessReport, want: Result<(), Errno>, n: u64, what: &str) {
    assert_eq!(r.answer, want, "{what}: {r:?}");
    assert!(r.consistent, "{what}: the timed calls disagreed: {r:?}");
    assert_eq!(r.iterations, n, "{what}: {r:?}");
    if n > 0 {
        assert!(r.elapsed.as_nanos() > 0, "{what}: no time measured: {r:?}");
    }
}

#[test]
fn probe_answers_on_the_host() {
    if !needs_root("probe_answers_on_the_host") {
        return;
    }
    let dir = TempDir::new("probe-host");
    let f = file(&dir, 1000, 1000);
    let p = |i: Ids, m: Access| probe_access(None, &i, &f, m, 50).unwrap();
    check(
        p(ids(1000, 1000, &[]), Access::READ_OK),
        Ok(()),
        50,
        "owner reads",
    );
    check(
        p(ids(1000, 1000, &[]), Access::WRITE_OK),
        Ok(()),
        50,
        "owner writes",
    );
    check(
        p(ids(1000, 1000, &[]), Access::EXEC_OK),
        Err(Errno::ACCESS),
        50,
        "owner executes",
    );
    check(
        p(ids(2000, 2000, &[]), Access::READ_OK),
        Err(Errno::ACCESS),
        50,
        "other reads",
    );
    check(
        p(ids(2000, 1000, &[]), Access::READ_OK),
        Ok(()),
        50,
        "group member reads",
    );
    check(
        p(ids(2000, 2000, &[1000]), Access::READ_OK),
        Ok(()),
        50,
        "supplementary group member reads",
    );
    check(
        p(ids(2000, 2000, &[1000]), Access::WRITE_OK),
        Err(Errno::ACCESS),
        50,
        "supplementary group member writes",
    );
    // faccessat without AT_EACCESS lets a real uid 0 check with its permitted capabilities;
    // the probe has dropped them all, so uid 0 reads only what "other" may: nothing here.
    check(
        p(ids(0, 0, &[]), Access::READ_OK),
        Err(Errno::ACCESS),
        50,
        "root without caps reads",
    );
    let missing = dir.0.join("missing");
    let r = probe_access(None, &ids(1000, 1000, &[]), &missing, Access::EXISTS, 0).unwrap();
    check(r, Err(Errno::NOENT), 0, "a missing file");
}

#[test]
fn probe_answers_inside_a_user_namespace() {
    if !needs_root("probe_answers_inside_a_user_namespace") {
        return;
    }
    let child = UsernsChild::spawn(&UnshareOptions::new()).unwrap();
    for k in [IdKind::Uid, IdKind::Gid] {
        assert_eq!(
            child
                .write_map(Actor::Caller, k, b"0 100000 65536\n")
                .unwrap(),
            Ok(())
        );
    }
    let userns = child.userns_fd().unwrap();
    drop(child);
    let dir = TempDir::new("probe-userns");
    // Kernel ids 101000 are the namespace's 1000.
    let f = file(&dir, 101_000, 101_000);
    let p = |i: Ids, m: Access| probe_access(Some(&userns), &i, &f, m, 20).unwrap();
    check(
        p(ids(1000, 1000, &[]), Access::READ_OK),
        Ok(()),
        20,
        "ns uid 1000 reads",
    );
    check(
        p(ids(2000, 2000, &[]), Access::READ_OK),
        Err(Errno::ACCESS),
        20,
        "ns uid 2000 reads",
    );
    check(
        p(ids(2000, 2000, &[1000]), Access::READ_OK),
        Ok(()),
        20,
        "ns uid 2000 in group 1000 reads",
    );
    // The namespace's root has no capability over a file of the host's uid 1000 (unmapped
    // there), and the probe has dropped its capabilities anyway.
    let host_file = {
        let d = dir.subdir("h");
        let f = d.join("f");
        std::fs::write(&f, b"x").unwrap();
        std::os::unix::fs::chown(&f, Some(1000), Some(1000)).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        f
    };
    let r = probe_access(
        Some(&userns),
        &ids(0, 0, &[]),
        &host_file,
        Access::READ_OK,
        1,
    )
    .unwrap();
    check(r, Err(Errno::ACCESS), 1, "ns root reads a host file");

    // Setup failures name the step: an id the namespace does not map.
    match probe_access(Some(&userns), &ids(70_000, 0, &[]), &f, Access::READ_OK, 1) {
        Err(Error::Helper { op, errno, .. }) => {
            assert_eq!(op, "setresuid");
            assert_eq!(errno, Errno::INVAL);
        }
        other => panic!("unmapped uid: {other:?}"),
    }
    match probe_access(
        None,
        &ids(0, 0, &[]),
        Path::new("/a\0b"),
        Access::READ_OK,
        1,
    ) {
        Err(Error::Invalid(m)) => assert!(m.contains("NUL"), "{m}"),
        other => panic!("path with NUL: {other:?}"),
    }
}
