//! The C ABI called as libsubid calls it, against a daemon of this test's own: null
//! pointers, unknown users, bad types, huge counts, a dead or silent daemon. The provider's
//! socket comes from `CREDNS_SOCKET`, which is process-wide: every test holds [`ENV`].

mod common;

use std::ffi::{c_int, c_ulong, CString};
use std::os::unix::net::UnixListener;
use std::ptr::{null, null_mut};
use std::sync::Mutex;

use common::{Daemon, ALICE};
use proptest::prelude::*;
use subid_credns::query::Status;
use subid_credns::*;

static ENV: Mutex<()> = Mutex::new(());

const UID: c_int = 1;
const GID: c_int = 2;

fn with_socket<T>(path: &std::path::Path, f: impl FnOnce() -> T) -> T {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    std::env::set_var("CREDNS_SOCKET", path);
    f()
}

fn has(owner: &str, start: u64, count: u64, t: c_int) -> (Status, bool) {
    let o = CString::new(owner).unwrap();
    let mut r = true;
    // SAFETY: a live C string and a writable bool.
    let s = unsafe {
        shadow_subid_has_range(o.as_ptr(), start as c_ulong, count as c_ulong, t, &mut r)
    };
    (s, r)
}

fn list(owner: &str, t: c_int) -> (Status, Vec<SubidRange>) {
    let o = CString::new(owner).unwrap();
    let (mut p, mut n) = (null_mut(), -1);
    // SAFETY: a live C string and writable out-pointers.
    let s = unsafe { shadow_subid_list_owner_ranges(o.as_ptr(), t, &mut p, &mut n) };
    let v = if p.is_null() {
        Vec::new()
    } else {
        // SAFETY: the provider returned n ranges at p.
        unsafe { std::slice::from_raw_parts(p, n as usize) }.to_vec()
    };
    // SAFETY: p is null or the provider's malloc'ed array, freed once.
    unsafe { shadow_subid_free(p.cast()) };
    assert!(n >= 0);
    (s, v)
}

fn owners(id: u64, t: c_int) -> (Status, Vec<u32>) {
    let (mut p, mut n) = (null_mut(), -1);
    // SAFETY: writable out-pointers.
    let s = unsafe { shadow_subid_find_subid_owners(id as c_ulong, t, &mut p, &mut n) };
    let v = if p.is_null() {
        Vec::new()
    } else {
        // SAFETY: the provider returned n uids at p.
        unsafe { std::slice::from_raw_parts(p, n as usize) }.to_vec()
    };
    // SAFETY: as in list.
    unsafe { shadow_subid_free(p.cast()) };
    (s, v)
}

#[test]
fn answers_are_the_daemons_and_bad_input_is_an_error() {
    if !common::needs_root("answers_are_the_daemons_and_bad_input_is_an_error") {
        return;
    }
    let d = Daemon::start(2);
    let a = d.alice[0].uid;
    with_socket(&d.socket, || {
        // Her ranges, uid and gid side, as getsubids prints them.
        let (s, rs) = list("alice", UID);
        assert_eq!(s, Status::Success);
        let want: Vec<SubidRange> = d
            .alice
            .iter()
            .map(|x| SubidRange {
                start: x.uid.start as c_ulong,
                count: x.uid.len() as c_ulong,
            })
            .collect();
        assert_eq!(rs, want);
        assert_eq!(list(&ALICE.to_string(), GID), (Status::Success, want));
        // has_range inside, across both, outside, empty, huge.
        assert_eq!(
            has("alice", a.start as u64, 65536, UID),
            (Status::Success, true)
        );
        assert_eq!(
            has("alice", a.start as u64, 131072, GID),
            (Status::Success, true)
        );
        assert_eq!(
            has("alice", a.start as u64, 131073, UID),
            (Status::Success, false)
        );
        assert_eq!(
            has("alice", a.start as u64 - 1, 1, UID),
            (Status::Success, false)
        );
        assert_eq!(
            has("alice", a.start as u64, 0, UID),
            (Status::Success, false)
        );
        assert_eq!(
            has("alice", a.start as u64, u64::MAX, UID),
            (Status::Success, false)
        );
        assert_eq!(
            has("alice", u64::MAX, u64::MAX, UID),
            (Status::Success, false)
        );
        // Owners.
        assert_eq!(
            owners(a.start as u64 + 7, UID),
            (Status::Success, vec![ALICE])
        );
        assert_eq!(owners(a.start as u64 - 1, GID), (Status::Success, vec![]));
        assert_eq!(owners(u64::MAX, UID), (Status::Success, vec![]));
        // Unknown users, bad types.
        assert_eq!(
            has("no-such-user-credns", a.start as u64, 1, UID),
            (Status::UnknownUser, false)
        );
        assert_eq!(
            list("no-such-user-credns", UID),
            (Status::UnknownUser, vec![])
        );
        for t in [0, 3, -1, c_int::MAX] {
            assert_eq!(has("alice", a.start as u64, 1, t), (Status::Error, false));
            assert_eq!(list("alice", t), (Status::Error, vec![]));
            assert_eq!(owners(a.start as u64, t), (Status::Error, vec![]));
        }
        // A name that is not UTF-8 names nobody.
        let latin1 = CString::new(vec![b'a', 0xe9]).unwrap();
        let mut r = true;
        // SAFETY: a live C string and a writable bool.
        let s = unsafe { shadow_subid_has_range(latin1.as_ptr(), 1, 1, UID, &mut r) };
        assert_eq!((s, r), (Status::UnknownUser, false));
    });
}

#[test]
fn null_pointers_are_refused_without_a_daemon() {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let o = CString::new("alice").unwrap();
    let mut r = true;
    let (mut p, mut n) = (null_mut(), 5);
    let mut u: *mut libc::uid_t = null_mut();
    // Every pointer below is null or valid for the call; the null ones are what is tested.
    // SAFETY: as said.
    let s = unsafe { shadow_subid_has_range(null(), 1, 1, UID, &mut r) };
    assert_eq!(
        (s, r),
        (Status::Error, false),
        "the result is written false first"
    );
    // SAFETY: as above.
    let s = unsafe { shadow_subid_has_range(o.as_ptr(), 1, 1, UID, null_mut()) };
    assert_eq!(s, Status::Error);
    // SAFETY: as above.
    let s = unsafe { shadow_subid_list_owner_ranges(null(), UID, &mut p, &mut n) };
    assert_eq!((s, p, n), (Status::Error, null_mut(), 0));
    // SAFETY: as above.
    let s = unsafe { shadow_subid_list_owner_ranges(o.as_ptr(), UID, null_mut(), &mut n) };
    assert_eq!(s, Status::Error);
    // SAFETY: as above.
    let s = unsafe { shadow_subid_list_owner_ranges(o.as_ptr(), UID, &mut p, null_mut()) };
    assert_eq!(s, Status::Error);
    // SAFETY: as above.
    let s = unsafe { shadow_subid_find_subid_owners(1, UID, null_mut(), &mut n) };
    assert_eq!(s, Status::Error);
    // SAFETY: as above.
    let s = unsafe { shadow_subid_find_subid_owners(1, UID, &mut u, null_mut()) };
    assert_eq!(s, Status::Error);
    // SAFETY: free accepts null.
    unsafe { shadow_subid_free(null_mut()) };
}

#[test]
fn no_daemon_or_a_silent_one_is_a_connection_error_never_an_answer() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("absent");
    with_socket(&absent, || {
        assert_eq!(has("alice", 1, 1, UID), (Status::ErrorConn, false));
        assert_eq!(list("alice", UID), (Status::ErrorConn, vec![]));
        assert_eq!(owners(1, UID), (Status::ErrorConn, vec![]));
    });
    // A socket that accepts and never answers: the provider gives up after its timeout.
    let silent = dir.path().join("silent");
    let listener = UnixListener::bind(&silent).unwrap();
    let held = std::thread::spawn(move || {
        let c = listener.accept();
        std::thread::sleep(subid_credns::query::TIMEOUT * 2);
        drop(c);
    });
    with_socket(&silent, || {
        assert_eq!(has("alice", 1, 1, UID), (Status::ErrorConn, false));
    });
    held.join().unwrap();
}

#[test]
fn has_range_agrees_with_the_listed_ranges() {
    if !common::needs_root("has_range_agrees_with_the_listed_ranges") {
        return;
    }
    let d = Daemon::start(3);
    let base = d.alice[0].uid.start as u64;
    let ranges: Vec<_> = d.alice.iter().map(|x| x.uid).collect();
    with_socket(&d.socket, || {
        let cfg = ProptestConfig {
            cases: 64,
            ..ProptestConfig::default()
        };
        proptest!(cfg, |(off in 0u64..300_000, count in 0u64..200_000, gid in any::<bool>())| {
            let start = (base + off).saturating_sub(100_000);
            let t = if gid { GID } else { UID };
            let want = credns_api::subid::covers(&ranges, start, count);
            prop_assert_eq!(has("alice", start, count, t), (Status::Success, want));
        });
    });
}
