//! `io.systemd.NamespaceResource` through a varlink client, as systemd's clients call it: a
//! range for an empty user namespace (maps written by the daemon, an ordinary allocation that
//! goes when the namespace does), registration, mounts, and every error.

mod common;

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use credns_idmap::{IdKind, IdRange};
use credns_registry::Policy;
use credns_service::{Config, RegistryClient, Server, Service};
use credns_sys::{UnshareOptions, UserNsFd, UsernsChild};
use credns_varlink::Client;
use serde_json::{json, Value};

const NR: &str = "io.systemd.NamespaceResource";

struct Daemon {
    _dir: tempfile::TempDir,
    registry: PathBuf,
    nr: PathBuf,
}

fn start(policy: Policy) -> Daemon {
    let dir = common::open_tempdir();
    let registry = dir.path().join("io.credns.Registry");
    let nr = dir.path().join("userdb").join(NR);
    let mut cfg = Config::new(dir.path().join("registry.redb"));
    cfg.policy = common::own_pool();
    cfg.policy = policy;
    cfg.etc = None;
    cfg.reserve = 0;
    let server = Server::bind(&registry, Service::open(&cfg).unwrap())
        .unwrap()
        .with_namespace_resource(credns_service::FaceSocket::Bind(nr.clone()), "ct-")
        .unwrap();
    std::thread::spawn(move || server.run());
    Daemon {
        _dir: dir,
        registry,
        nr,
    }
}

fn call(c: &mut Client, method: &str, p: Value, fds: &[BorrowedFd<'_>]) -> Result<Value, String> {
    c.call(&format!("{NR}.{method}"), p, fds)
        .map_err(|e| e.remote_name().unwrap_or("local error").to_string())
}

/// A user namespace with no process in it, held only by the returned descriptor (as
/// systemd's clients make them).
fn empty_userns() -> UserNsFd {
    let h = UsernsChild::spawn(&UnshareOptions::default()).unwrap();
    h.userns_fd().unwrap()
}

/// The uid map of the namespace `ns`, read through a process of ours that enters it.
fn uid_map_of(ns: &UserNsFd) -> String {
    let h = UsernsChild::spawn(&UnshareOptions {
        new_userns: false,
        ..UnshareOptions::default()
    })
    .unwrap();
    h.setns_user(ns.as_fd()).unwrap().unwrap();
    String::from_utf8(std::fs::read(h.map_path(IdKind::Uid)).unwrap()).unwrap()
}

fn fd(n: &UserNsFd) -> Vec<BorrowedFd<'_>> {
    vec![n.as_fd()]
}

fn allocate(name: &str, size: u64) -> Value {
    json!({ "name": name, "size": size, "userNamespaceFileDescriptor": 0 })
}

#[test]
fn a_range_for_an_empty_namespace_lives_as_long_as_it() {
    if !common::needs_root("a_range_for_an_empty_namespace_lives_as_long_as_it") {
        return;
    }
    let d = start(Policy::default());
    let mut c = Client::connect(&d.nr).unwrap();
    let ns = empty_userns();
    let mut p = allocate("web", 65536);
    p["target"] = json!(0);
    let got = call(&mut c, "AllocateUserRange", p, &[ns.as_fd()]).unwrap();
    assert_eq!(got, json!({ "name": "web" }));
    // An ordinary allocation of the caller's, leased to the namespace and labelled with the name.
    let mut r = RegistryClient::connect(&d.registry).unwrap();
    let all = r.list().unwrap();
    assert_eq!(all.len(), 1);
    let a = &all[0];
    assert_eq!(
        (a.owner, a.label.as_deref(), a.uid.len()),
        (0, Some("web"), 65536)
    );
    assert!(a.lease.user_namespace.is_some());
    let map = uid_map_of(&ns);
    let f: Vec<&str> = map.split_whitespace().collect();
    assert_eq!(f, ["0", &a.uid.start.to_string(), "65536"], "{map}");
    // The same socket names its ids for nss-systemd, as the service named like the socket.
    let rec = c
        .call(
            "io.systemd.UserDatabase.GetUserRecord",
            json!({ "uid": a.uid.start + 1, "service": NR }),
            &[],
        )
        .unwrap();
    assert_eq!(rec["record"]["userName"], format!("ct-{}-1", a.id));
    // Asked again for the same namespace: it has its range.
    let again = call(
        &mut c,
        "AllocateUserRange",
        allocate("web2", 65536),
        &[ns.as_fd()],
    );
    assert_eq!(again.unwrap_err(), format!("{NR}.UserNamespaceExists"));
    // A second namespace under a name this caller uses: refused, nothing allocated.
    let other = empty_userns();
    let taken = call(
        &mut c,
        "AllocateUserRange",
        allocate("web", 1),
        &[other.as_fd()],
    );
    assert_eq!(taken.unwrap_err(), format!("{NR}.NameExists"));
    // A size-1 range at a target: "target host 1".
    let mut p = allocate("one", 1);
    p["target"] = json!(1000);
    assert_eq!(
        call(&mut c, "AllocateUserRange", p, &[other.as_fd()]).unwrap(),
        json!({ "name": "one" })
    );
    let map = uid_map_of(&other);
    assert_eq!(map.split_whitespace().next(), Some("1000"), "{map}");
    assert_eq!(r.list().unwrap().len(), 2);
    // Mounts: allowlisted for a namespace with a range.
    let dir = std::fs::File::open(d.registry.parent().unwrap()).unwrap();
    let p = json!({ "userNamespaceFileDescriptor": 0, "mountFileDescriptor": 1 });
    assert_eq!(
        call(
            &mut c,
            "AddMountToUserNamespace",
            p,
            &[ns.as_fd(), dir.as_fd()]
        )
        .unwrap(),
        json!({})
    );
    // Closing the last descriptors ends the namespaces; their ranges go back.
    drop((ns, other));
    let t0 = Instant::now();
    while !r.list().unwrap().is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the leases were not released"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn registration_mounts_and_every_error() {
    if !common::needs_root("registration_mounts_and_every_error") {
        return;
    }
    // A pool of one 64K block (far from where other tests' namespaces map ids): the second
    // range cannot be had.
    let mut policy = Policy::default();
    let first = 27_466 * 65_536;
    policy.pool.ranges = vec![IdRange {
        start: first,
        end: first + 65_535,
    }];
    let d = start(policy);
    let mut c = Client::connect(&d.nr).unwrap();
    let ns = empty_userns();
    let e =
        |c: &mut Client, m: &str, p: Value, fds: &[BorrowedFd<'_>]| call(c, m, p, fds).unwrap_err();
    let invalid = "org.varlink.service.InvalidParameter";
    assert_eq!(
        e(&mut c, "AllocateUserRange", allocate("x", 2), &fd(&ns)),
        invalid
    );
    assert_eq!(
        e(&mut c, "AllocateUserRange", allocate("a b", 1), &fd(&ns)),
        invalid
    );
    let mut p = allocate("x", 1);
    p["delegateContainerRanges"] = json!(17);
    assert_eq!(
        e(&mut c, "AllocateUserRange", p.clone(), &fd(&ns)),
        format!("{NR}.TooManyDelegations")
    );
    p["delegateContainerRanges"] = json!(1);
    assert_eq!(e(&mut c, "AllocateUserRange", p, &fd(&ns)), invalid);
    let mut p = allocate("x", 65536);
    p["target"] = json!(4294967295u64 - 100);
    assert_eq!(e(&mut c, "AllocateUserRange", p, &fd(&ns)), invalid);
    assert_eq!(
        e(&mut c, "AllocateUserRange", allocate("x", 1), &[]),
        invalid
    );
    // Not a user namespace.
    let file = std::fs::File::open("/proc/self/stat").unwrap();
    assert_eq!(
        e(
            &mut c,
            "AllocateUserRange",
            allocate("x", 1),
            &[file.as_fd()]
        ),
        invalid
    );
    // A mangled name is given back.
    let mut p = allocate("my pod:1", 65536);
    p["mangleName"] = json!(true);
    assert_eq!(
        call(&mut c, "AllocateUserRange", p, &fd(&ns)).unwrap(),
        json!({ "name": "my_pod_1" })
    );
    // The pool's only block is taken.
    let ns2 = empty_userns();
    assert_eq!(
        e(&mut c, "AllocateUserRange", allocate("y", 1), &fd(&ns2)),
        format!("{NR}.DynamicRangeUnavailable")
    );
    let r = RegistryClient::connect(&d.registry)
        .unwrap()
        .list()
        .unwrap();
    assert_eq!(r.len(), 1, "a refused call allocates nothing");

    // Registration of a namespace whose maps someone else wrote; mounts need a range.
    let reg = |n: &str| json!({ "name": n, "userNamespaceFileDescriptor": 0 });
    let mount = |i: u64| json!({ "userNamespaceFileDescriptor": 0, "mountFileDescriptor": i });
    let dir = std::fs::File::open(Path::new("/")).unwrap();
    let ns3 = empty_userns();
    assert_eq!(
        e(
            &mut c,
            "AddMountToUserNamespace",
            mount(1),
            &[ns3.as_fd(), dir.as_fd()]
        ),
        format!("{NR}.UserNamespaceNotRegistered")
    );
    assert_eq!(
        call(&mut c, "RegisterUserNamespace", reg("reg"), &fd(&ns3)).unwrap(),
        json!({ "name": "reg" })
    );
    assert_eq!(
        e(&mut c, "RegisterUserNamespace", reg("reg2"), &fd(&ns3)),
        format!("{NR}.UserNamespaceExists")
    );
    assert_eq!(
        e(&mut c, "RegisterUserNamespace", reg("reg"), &fd(&ns2)),
        format!("{NR}.NameExists")
    );
    assert_eq!(
        e(&mut c, "RegisterUserNamespace", reg("leased"), &fd(&ns)),
        format!("{NR}.UserNamespaceExists")
    );
    assert_eq!(
        e(
            &mut c,
            "AddMountToUserNamespace",
            mount(1),
            &[ns3.as_fd(), dir.as_fd()]
        ),
        format!("{NR}.UserNamespaceWithoutUserRange")
    );
    assert_eq!(
        e(&mut c, "AddMountToUserNamespace", mount(5), &[ns.as_fd()]),
        invalid
    );
    assert_eq!(
        call(
            &mut c,
            "AddMountToUserNamespace",
            mount(1),
            &[ns.as_fd(), dir.as_fd()]
        )
        .unwrap(),
        json!({})
    );
    // Methods systemd has and credns does not offer.
    let none = c
        .call(
            &format!("{NR}.AddControlGroupToUserNamespace"),
            json!({}),
            &[],
        )
        .unwrap_err();
    assert_eq!(
        none.remote_name(),
        Some("org.varlink.service.MethodNotFound")
    );

    // Another user may not use root's namespace.
    let status = common::helper_command(
        "helper_nsresource_as_uid_1000",
        &[("CREDNS_TEST_SOCKET", d.nr.display().to_string())],
    );
    let mut status = status;
    std::os::unix::process::CommandExt::uid(&mut status, 1000);
    assert!(
        status.status().unwrap().success(),
        "the uid 1000 helper failed"
    );
}

/// Run by `registration_mounts_and_every_error` as uid 1000.
#[test]
#[ignore = "helper process of registration_mounts_and_every_error"]
fn helper_nsresource_as_uid_1000() {
    let socket = std::env::var("CREDNS_TEST_SOCKET").expect("run by the nsresource test");
    let mut c = Client::connect(&socket).unwrap();
    // The initial user namespace (root's), which this process is in.
    let init = std::fs::File::open("/proc/self/ns/user").unwrap();
    assert_eq!(
        call(
            &mut c,
            "AllocateUserRange",
            allocate("mine", 1),
            &[init.as_fd()]
        )
        .unwrap_err(),
        "org.varlink.service.PermissionDenied"
    );
    assert_eq!(
        call(
            &mut c,
            "RegisterUserNamespace",
            json!({ "name": "m", "userNamespaceFileDescriptor": 0 }),
            &[init.as_fd()]
        )
        .unwrap_err(),
        "org.varlink.service.PermissionDenied"
    );
    // Its own namespace passes: it reaches the pool, whose one block root holds.
    let own = empty_userns();
    assert_eq!(own.owner_uid().unwrap(), 1000);
    assert_eq!(
        call(&mut c, "AllocateUserRange", allocate("mine", 1), &fd(&own)).unwrap_err(),
        format!("{NR}.DynamicRangeUnavailable")
    );
}
