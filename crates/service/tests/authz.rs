//! Authorization by SO_PEERCRED: an unprivileged caller (a helper process running as uid 1000)
//! gets ranges within its quota, for names and for user namespaces it owns, and can neither
//! see, release nor take another user's allocation nor lease a namespace it does not own.

mod common;

use std::os::fd::AsFd;

use credns_idmap::IdKind;
use credns_service::{AllocOptions, RegistryClient as Client, Target};
use credns_sys::pidfd::PidFd;
use credns_sys::{ProcFs, UnshareOptions, UserNsFd, UsernsChild};

const HELPER: &str = "helper_as_uid_1000";

fn err_name<T: std::fmt::Debug>(r: Result<T, credns_api::Error>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(e) => e
            .remote_name()
            .map_or_else(|| format!("local error {e}"), str::to_string),
    }
}

/// Run by `unprivileged_callers_are_confined` as uid 1000; not a test of its own.
#[test]
#[ignore = "helper process of unprivileged_callers_are_confined"]
fn helper_as_uid_1000() {
    let socket =
        std::env::var("CREDNS_TEST_SOCKET").expect("run by unprivileged_callers_are_confined");
    let foreign_fd: i32 = std::env::var("CREDNS_TEST_FOREIGN_FD")
        .unwrap()
        .parse()
        .unwrap();
    let ids = ProcFs::new().status(credns_sys::Pid::this()).unwrap();
    assert_eq!(ids.uid[1], 1000, "the helper runs as uid 1000");
    let mut c = Client::connect(&socket).unwrap();
    let o = AllocOptions::default();
    // Quota: 3 ranges.
    let mine: Vec<_> = ["u-a", "u-b", "u-c"]
        .iter()
        .map(|n| c.allocate_name(n, &o).unwrap())
        .collect();
    assert!(mine.iter().all(|a| a.owner == 1000));
    let e = c.allocate_name("u-d", &o).unwrap_err();
    assert_eq!(e.remote_name(), Some("io.credns.Registry.QuotaExceeded"));
    let Some(r) = e.remote() else { unreachable!() };
    assert_eq!(r.parameters["owner"], 1000);
    assert_eq!(r.parameters["limit"], "max_ranges");
    assert_eq!(r.parameters["max"], 3);
    assert_eq!(r.parameters["held"], 3);
    // Root's allocation: invisible, unreleasable, untakeable.
    assert_eq!(
        err_name(c.show(&Target::Name("root-x".into()))),
        "io.credns.Registry.PermissionDenied"
    );
    assert_eq!(
        err_name(c.show(&Target::Id(1))),
        "io.credns.Registry.PermissionDenied"
    );
    assert_eq!(
        err_name(c.release(&Target::Name("root-x".into()))),
        "io.credns.Registry.PermissionDenied"
    );
    c.release(&Target::Name("u-c".into())).unwrap();
    assert_eq!(
        err_name(c.allocate_name("root-x", &o)),
        "io.credns.Registry.LeaseTaken"
    );
    assert_eq!(
        err_name(c.register_name(
            "mine",
            credns_service::Range {
                start: 9_000_000,
                end: 9_000_009
            },
            None
        )),
        "io.credns.Registry.PermissionDenied"
    );
    let listed: Vec<String> = c
        .list()
        .unwrap()
        .iter()
        .map(|a| a.lease.to_string())
        .collect();
    assert_eq!(listed, vec!["name u-a", "name u-b"]);
    // who: root's allocation is reported with its owner but without its lease.
    let root_first: u32 = std::env::var("CREDNS_TEST_ROOT_FIRST")
        .unwrap()
        .parse()
        .unwrap();
    let hs = c.who(root_first).unwrap();
    assert_eq!(hs.len(), 1, "{hs:?}");
    assert_eq!(
        (hs[0].kind.as_str(), hs[0].owner, hs[0].lease.is_none()),
        ("allocation", Some(0), true)
    );
    // A namespace owned by uid 1001 (inherited fd): refused, nothing written.
    let foreign =
        UserNsFd::open_path(std::path::Path::new(&format!("/proc/self/fd/{foreign_fd}"))).unwrap();
    let e = c.allocate_userns(foreign.as_fd(), None, &o).unwrap_err();
    let Some(r) = e.remote() else { panic!("{e}") };
    assert_eq!(r.error, "io.credns.Registry.PermissionDenied");
    assert!(
        r.parameters["reason"]
            .as_str()
            .unwrap()
            .contains("is owned by uid 1001, not by the caller (uid 1000)"),
        "{r}"
    );
    // Its own namespace: allocated, maps written by the daemon.
    let child = UsernsChild::spawn(&UnshareOptions::new()).unwrap();
    let ns = child.userns_fd().unwrap();
    assert_eq!(ns.owner_uid().unwrap(), 1000);
    let pidfd = PidFd::open(child.pid()).unwrap();
    let a = c
        .allocate_userns(
            ns.as_fd(),
            Some(pidfd.as_fd()),
            &AllocOptions {
                write_maps: true,
                ..o.clone()
            },
        )
        .unwrap();
    assert_eq!(a.owner, 1000);
    let map = ProcFs::new().read_map(child.pid(), IdKind::Uid).unwrap();
    assert_eq!(map.extents().len(), 1);
    let e = map.extents()[0];
    assert_eq!(
        (e.first, e.lower_first, e.count as u64),
        (0, a.uid.start, a.uid.len())
    );
    let gmap = ProcFs::new().read_map(child.pid(), IdKind::Gid).unwrap();
    assert_eq!(gmap.extents()[0].lower_first, a.gid.start);
    // Quota again: 3 held.
    assert_eq!(
        err_name(c.allocate_name("u-e", &o)),
        "io.credns.Registry.QuotaExceeded"
    );
    println!("HELPER-DONE");
}

#[test]
fn unprivileged_callers_are_confined() {
    if !common::needs_root("unprivileged_callers_are_confined") {
        return;
    }
    let s = common::TestServer::start(common::small_quota(3));
    let mut root = s.client();
    let rx = root
        .allocate_name("root-x", &AllocOptions::default())
        .unwrap();
    // A namespace owned by uid 1001, handed to the helper as an inherited descriptor.
    let other = UsernsChild::spawn(&UnshareOptions::unprivileged(1001, 1001)).unwrap();
    let other_ns = other.userns_fd().unwrap();
    let inherit = other_ns.as_fd().try_clone_to_owned().unwrap();
    rustix::io::fcntl_setfd(&inherit, rustix::io::FdFlags::empty()).unwrap();
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let out = common::helper_command(
        HELPER,
        &[
            ("CREDNS_TEST_SOCKET", s.socket.display().to_string()),
            ("CREDNS_TEST_FOREIGN_FD", inherit.as_raw_fd().to_string()),
            ("CREDNS_TEST_ROOT_FIRST", rx.uid.start.to_string()),
        ],
    )
    .uid(1000)
    .gid(1000)
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("HELPER-DONE"),
        "helper failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // The helper exited, killing its namespace's only process: the daemon notices by pidfd
    // and releases the namespace's lease (bounded wait, not a timing assertion).
    let t0 = std::time::Instant::now();
    loop {
        let n = root
            .list()
            .unwrap()
            .iter()
            .filter(|a| a.lease.user_namespace.is_some())
            .count();
        if n == 0 {
            break;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(20),
            "namespace lease not released"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Root sees everything that is left: its own and the helper's two names.
    let all = root.list().unwrap();
    let owners: Vec<u32> = all.iter().map(|a| a.owner).collect();
    assert_eq!(owners, vec![0, 1000, 1000], "{all:?}");
}
