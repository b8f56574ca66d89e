//! `io.credns.Subid` through a varlink client: delegations are allocations (listed, shown,
//! released like any other), made only by root, and answered to anyone the way libsubid asks.

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;

use credns_api::subid::{Kind, SubidClient};
use credns_service::{Config, RegistryClient, Server, Service, Target};
use credns_varlink::Client;
use serde_json::json;

const ALICE: u32 = 60123;
const HELPER: &str = "helper_delegates_as_uid_1000";

/// A daemon whose passwd names alice, on its own socket and store.
struct Daemon {
    dir: tempfile::TempDir,
    socket: std::path::PathBuf,
}

impl Daemon {
    fn start() -> Self {
        let dir = common::open_tempdir();
        let etc = dir.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        std::fs::write(
            etc.join("passwd"),
            format!("root:x:0:0::/root:/bin/sh\nalice:x:{ALICE}:{ALICE}::/home/alice:/bin/sh\n"),
        )
        .unwrap();
        let socket = dir.path().join("run/io.credns.Registry");
        let mut cfg = Config::new(dir.path().join("registry.redb"));
        cfg.policy = common::own_pool();
        cfg.policy = common::own_pool();
        cfg.etc = Some(etc);
        cfg.reserve = 0;
        let server = Server::bind(&socket, Service::open(&cfg).unwrap()).unwrap();
        std::thread::spawn(move || server.run());
        Daemon { dir, socket }
    }

    fn subid(&self) -> SubidClient {
        subid_at(&self.socket)
    }
}

fn subid_at(socket: &Path) -> SubidClient {
    SubidClient::new(Client::connect(socket).unwrap())
}

fn err<T: std::fmt::Debug>(r: Result<T, credns_api::Error>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(e) => e
            .remote_name()
            .map_or_else(|| format!("local error {e}"), str::to_string),
    }
}

#[test]
fn delegations_are_allocations_answered_as_libsubid_asks() {
    if !common::needs_root("delegations_are_allocations_answered_as_libsubid_asks") {
        return;
    }
    let d = Daemon::start();
    let mut c = d.subid();
    let got = c.delegate("alice", None, Some(2)).unwrap();
    assert_eq!((got.uid, got.made, got.delegations.len()), (ALICE, 2, 2));
    assert_eq!(got.delegations[0].name, "subid:alice:0");
    assert_eq!(got.delegations[1].name, "subid:alice:1");
    // Asking again for as many makes none; asking for one more makes one, of its own size.
    assert_eq!(c.delegate("alice", None, Some(2)).unwrap().made, 0);
    let three = c.delegate(&ALICE.to_string(), Some(10), Some(3)).unwrap();
    assert_eq!(three.made, 1);
    assert_eq!(three.delegations[2].uid.len(), 10);
    assert_eq!(
        c.delegations("alice").unwrap(),
        c.delegations("60123").unwrap()
    );

    // The registry lists and shows them as the user's delegated allocations.
    let mut r = RegistryClient::connect(&d.socket).unwrap();
    let listed: Vec<_> = r.list().unwrap();
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|a| a.delegated && a.owner == ALICE));
    let first = &three.delegations[0];
    assert!(r.show(&Target::Id(first.allocation)).unwrap().delegated);

    // HasRange: within one, spanning adjacent ones, outside, empty, huge, and the gid side.
    let (a, b) = (three.delegations[0].uid, three.delegations[1].uid);
    let has = |c: &mut SubidClient, start: u64, count: u64, k| {
        c.has_range("alice", start, count, k).unwrap()
    };
    assert!(has(&mut c, a.start as u64, a.len(), Kind::Uid));
    assert!(has(&mut c, a.start as u64 + 5, 1, Kind::Gid));
    assert_eq!(b.start, a.end + 1, "first fit makes the first two adjacent");
    assert!(has(&mut c, a.end as u64, 2, Kind::Uid));
    assert!(!has(&mut c, a.start as u64 - 1, 1, Kind::Uid));
    assert!(!has(&mut c, a.start as u64, 0, Kind::Uid));
    assert!(!has(&mut c, a.start as u64, u64::MAX, Kind::Uid));
    assert!(!has(&mut c, u64::MAX, 1, Kind::Uid));

    // Owners.
    assert_eq!(c.owners(a.start as u64, Kind::Uid).unwrap(), vec![ALICE]);
    assert_eq!(c.owners(a.start as u64, Kind::Gid).unwrap(), vec![ALICE]);
    assert!(c.owners(a.start as u64 - 1, Kind::Uid).unwrap().is_empty());
    assert!(c.owners(1 << 40, Kind::Uid).unwrap().is_empty());

    // Released like any allocation: then it is no longer hers.
    r.release(&Target::Name("subid:alice:0".into())).unwrap();
    assert_eq!(c.delegations("alice").unwrap().delegations.len(), 2);
    assert!(!has(&mut c, a.start as u64, 1, Kind::Uid));
    assert!(c.owners(a.start as u64, Kind::Uid).unwrap().is_empty());

    // Errors: an unknown user, bad parameters, a quota that would be passed.
    assert_eq!(err(c.delegations("bob")), "io.credns.Subid.NoSuchUser");
    assert_eq!(
        err(c.has_range("bob", 1, 1, Kind::Uid)),
        "io.credns.Subid.NoSuchUser"
    );
    assert_eq!(
        err(c.delegate("bob", None, None)),
        "io.credns.Subid.NoSuchUser"
    );
    assert_eq!(
        err(c.delegate("alice", None, Some(5000))),
        "io.credns.Registry.InvalidParameter"
    );
    assert_eq!(
        err(c.delegate("alice", Some(0), Some(4))),
        "io.credns.Registry.InvalidParameter"
    );
    // The first of two would fit the default quota (16,777,216 ids), the second not.
    assert_eq!(
        err(c.delegate("alice", Some(8_400_000), Some(4))),
        "io.credns.Registry.QuotaExceeded"
    );
    assert_eq!(
        c.delegations("alice").unwrap().delegations.len(),
        2,
        "a refused Delegate makes none of them"
    );
    let mut raw = Client::connect(&d.socket).unwrap();
    let e = raw
        .call(
            "io.credns.Subid.HasRange",
            json!({ "user": "alice", "start": 1, "count": 1, "kind": "pid" }),
            &[],
        )
        .unwrap_err();
    assert_eq!(e.remote_name(), Some("io.credns.Registry.InvalidParameter"));
    let e = raw
        .call("io.credns.Subid.Owners", json!({ "id": 1 }), &[])
        .unwrap_err();
    assert_eq!(e.remote_name(), Some("io.credns.Registry.InvalidParameter"));

    // Anyone may ask what libsubid asks; only root delegates.
    let status = common::helper_command(
        HELPER,
        &[("CREDNS_TEST_SOCKET", d.socket.display().to_string())],
    )
    .uid(1000)
    .gid(1000)
    .status()
    .unwrap();
    assert!(status.success(), "the uid 1000 helper failed");
    drop(d.dir);
}

/// Run by `delegations_are_allocations_answered_as_libsubid_asks` as uid 1000.
#[test]
#[ignore = "helper process of delegations_are_allocations_answered_as_libsubid_asks"]
fn helper_delegates_as_uid_1000() {
    let socket = std::env::var("CREDNS_TEST_SOCKET").expect("run by the delegation test");
    let mut c = subid_at(Path::new(&socket));
    assert_eq!(
        err(c.delegate("alice", None, Some(9))),
        "io.credns.Registry.PermissionDenied"
    );
    assert_eq!(c.delegations("alice").unwrap().delegations.len(), 2);
    let first = c.delegations("alice").unwrap().delegations[0].uid;
    assert!(c
        .has_range("alice", first.start as u64, first.len(), Kind::Gid)
        .unwrap());
}

#[test]
fn a_released_delegation_still_mapped_by_a_namespace_is_not_handed_out() {
    if !common::needs_root("a_released_delegation_still_mapped_by_a_namespace_is_not_handed_out") {
        return;
    }
    let d = Daemon::start();
    let mut c = d.subid();
    let range = c.delegate("alice", None, None).unwrap().delegations[0].uid;
    // A namespace mapping her range, as newuidmap would have written it.
    let child = credns_sys::UsernsChild::spawn(&credns_sys::UnshareOptions::new()).unwrap();
    let map = format!("0 {} 65536", range.start);
    for kind in [credns_idmap::IdKind::Uid, credns_idmap::IdKind::Gid] {
        child
            .write_map(credns_sys::Actor::Caller, kind, map.as_bytes())
            .unwrap()
            .unwrap();
    }
    let mut r = RegistryClient::connect(&d.socket).unwrap();
    r.release(&Target::Name("subid:alice:0".into())).unwrap();
    // First fit would hand the released range out next, were it not still mapped.
    let next = r
        .allocate_name("next", &credns_service::AllocOptions::default())
        .unwrap();
    assert_ne!(
        next.uid.start, range.start,
        "a mapped range was handed out again"
    );
    let holders = r.who(range.start).unwrap();
    assert!(holders.iter().any(|h| h.kind == "namespace"), "{holders:?}");
    drop(child);
}
