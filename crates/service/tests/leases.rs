//! User-namespace leases: released when the namespace's last process exits (seen by pidfd),
//! reaped at start when the namespace is gone, and not confused with a later namespace that
//! reuses the nsfs inode.

mod common;

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use credns_idmap::{IdKind, IdRange};
use credns_registry::{Lease, RegisterRequest, Registry};
use credns_service::{AllocOptions, Caller, Config, Service};
use credns_sys::pidfd::PidFd;
use credns_sys::{Pid, ProcFs, UnshareOptions, UsernsChild};
use serde_json::json;

fn config(dir: &std::path::Path) -> Config {
    Config {
        store: dir.join("r.redb"),
        policy: common::own_pool(),
        procfs: ProcFs::new(),
        etc: None,
        accept_rollback: false,
        reserve: 0,
    }
}

fn leases(svc: &Service) -> Vec<serde_json::Value> {
    let root = Caller {
        uid: 0,
        pid: Pid::this(),
    };
    let v = svc.call(root, "List", &json!({}), &mut []).unwrap();
    v["allocations"].as_array().unwrap().clone()
}

#[test]
fn namespace_lease_is_released_when_its_last_process_exits() {
    if !common::needs_root("namespace_lease_is_released_when_its_last_process_exits") {
        return;
    }
    let s = common::TestServer::start(common::own_pool());
    let mut c = s.client();
    let child = UsernsChild::spawn(&UnshareOptions::new()).unwrap();
    let ns = child.userns_fd().unwrap();
    // No pidfd: the daemon finds the namespace's process in /proc itself.
    let opts = AllocOptions {
        write_maps: true,
        ..AllocOptions::default()
    };
    let a = c.allocate_userns(ns.as_fd(), None, &opts).unwrap();
    let map = ProcFs::new().read_map(child.pid(), IdKind::Uid).unwrap();
    assert_eq!(map.extents()[0].lower_first, a.uid.start);
    // Asking again for the same namespace is the same allocation; maps are not rewritten.
    let again = c.allocate_userns(ns.as_fd(), None, &opts).unwrap();
    assert_eq!(
        (&again.allocation, again.fresh, a.fresh),
        (&a.allocation, false, true)
    );
    drop(ns);
    drop(child);
    let t0 = Instant::now();
    while !c.list().unwrap().is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "lease of a dead namespace kept"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn dead_namespaces_are_reaped_at_start_and_live_ones_kept() {
    if !common::needs_root("dead_namespaces_are_reaped_at_start_and_live_ones_kept") {
        return;
    }
    let dir = common::open_tempdir();
    let cfg = config(dir.path());
    let root = Caller {
        uid: 0,
        pid: Pid::this(),
    };
    let dying = UsernsChild::spawn(&UnshareOptions::new()).unwrap();
    let staying = UsernsChild::spawn(&UnshareOptions::new()).unwrap();
    {
        let svc = Service::open(&cfg).unwrap();
        for ch in [&dying, &staying] {
            let fds = vec![Some(ch.userns_fd().unwrap().into_owned_fd())];
            let mut fds = fds;
            svc.call(
                root,
                "Allocate",
                &json!({"userNamespaceFileDescriptor": 0}),
                &mut fds,
            )
            .unwrap();
        }
        assert_eq!(leases(&svc).len(), 2);
    }
    let staying_ino = staying.userns().unwrap().ino;
    drop(dying);
    let svc = Service::open(&cfg).unwrap();
    let left = leases(&svc);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["lease"]["userNamespace"]["ino"], staying_ino);
}

#[test]
fn a_lease_older_than_every_process_of_its_inode_is_a_reused_inode() {
    if !common::needs_root("a_lease_older_than_every_process_of_its_inode_is_a_reused_inode") {
        return;
    }
    let dir = common::open_tempdir();
    let cfg = config(dir.path());
    let child = UsernsChild::spawn(&UnshareOptions::new()).unwrap();
    let id = child.userns().unwrap();
    let started = PidFd::open(child.pid())
        .unwrap()
        .start_time_ns(&ProcFs::new())
        .unwrap();
    {
        let mut reg = Registry::open(&cfg.store, cfg.policy.clone()).unwrap();
        // A namespace with this inode created long before any process now in it: the inode
        // was reused, so this lease's namespace is dead.
        let old = Lease::UserNs {
            dev: id.dev,
            ino: id.ino,
            created_ns: 1_000_000_000,
        };
        reg.register(&RegisterRequest::new(
            old,
            0,
            IdRange {
                start: 1_000_000,
                end: 1_000_099,
            },
        ))
        .unwrap();
        let now = Lease::UserNs {
            dev: id.dev,
            ino: id.ino,
            created_ns: started,
        };
        reg.register(&RegisterRequest::new(
            now,
            0,
            IdRange {
                start: 2_000_000,
                end: 2_000_099,
            },
        ))
        .unwrap();
    }
    let svc = Service::open(&cfg).unwrap();
    let left = leases(&svc);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["uid"]["start"], 2_000_000);
    assert_eq!(left[0]["lease"]["userNamespace"]["createdNs"], started);
}

#[test]
fn a_namespace_with_only_nested_processes_is_alive() {
    use std::io::{BufRead, Write};
    use std::process::{Command, Stdio};
    if !common::needs_root("a_namespace_with_only_nested_processes_is_alive") {
        return;
    }
    let dir = common::open_tempdir();
    let cfg = config(dir.path());
    let root = Caller {
        uid: 0,
        pid: Pid::this(),
    };
    // Namespace A (unshare maps root to itself), and inside it a nested namespace B whose
    // process outlives every process of A.
    let mut outer = Command::new("unshare")
        .args([
            "-U",
            "--map-root-user",
            "sh",
            "-c",
            "unshare -U sleep 120 & echo $!; read x",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(outer.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let inner = Pid(line.trim().parse().unwrap());
    struct Kill(Pid);
    impl Drop for Kill {
        fn drop(&mut self) {
            if let Some(p) = rustix::process::Pid::from_raw(self.0.as_raw()) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
        }
    }
    let inner_guard = Kill(inner);
    let outer_pid = Pid(outer.id() as i32);
    // Wait (bounded) until the inner process is in its own namespace below A.
    let procfs = ProcFs::new();
    let a = procfs.userns(outer_pid).unwrap();
    let t0 = Instant::now();
    while procfs.userns(inner).map_or(true, |b| b == a) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "nested namespace not created"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    {
        let svc = Service::open(&cfg).unwrap();
        let ns = credns_sys::UserNsFd::open(&procfs, outer_pid).unwrap();
        let mut fds = vec![Some(ns.into_owned_fd())];
        let params = json!({"userNamespaceFileDescriptor": 0, "uid": {"start": 3_000_000, "end": 3_000_099}});
        svc.call(root, "Register", &params, &mut fds).unwrap();
    }
    // A's only process exits; B's lives on.
    outer.stdin.take().unwrap().write_all(b"\n").unwrap();
    outer.wait().unwrap();
    let svc = Service::open(&cfg).unwrap();
    assert_eq!(leases(&svc).len(), 1, "A is alive while B lives");
    drop(svc);
    drop(inner_guard);
    let t0 = Instant::now();
    while procfs.userns(inner).is_ok() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "nested process did not exit"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let svc = Service::open(&cfg).unwrap();
    assert_eq!(leases(&svc).len(), 0, "A died with B");
}

/// Wait (bounded) until `f` holds.
fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_namespace_kept_by_an_nsfs_fd_keeps_its_range() {
    // Regression: a user kept only an nsfs fd of her leased namespace, its last process
    // exited, the lease was reaped and the range went to someone else, while she could
    // still setns back in.
    if !common::needs_root("a_namespace_kept_by_an_nsfs_fd_keeps_its_range") {
        return;
    }
    let s = common::TestServer::start(common::own_pool());
    let mut c = s.client();
    let child = UsernsChild::spawn(&UnshareOptions::new()).unwrap();
    let member = PidFd::open(child.pid()).unwrap();
    let ns = child.userns_fd().unwrap();
    let opts = AllocOptions {
        write_maps: true,
        ..AllocOptions::default()
    };
    let a = c
        .allocate_userns(ns.as_fd(), Some(member.as_fd()), &opts)
        .unwrap();
    drop(member);
    drop(child);
    // Its last process is gone; the fd `ns` still holds it: the lease stays.
    std::thread::sleep(Duration::from_millis(2500));
    let l = c.list().unwrap();
    assert_eq!(
        l.iter().map(|x| x.id).collect::<Vec<_>>(),
        vec![a.id],
        "{l:?}"
    );
    // The fd closes: released within a couple of rechecks.
    drop(ns);
    eventually(
        "release after the fd closed",
        Duration::from_secs(10),
        || c.list().unwrap().is_empty(),
    );
}

#[test]
fn a_namespace_kept_by_a_bind_mount_keeps_its_range() {
    if !common::needs_root("a_namespace_kept_by_a_bind_mount_keeps_its_range") {
        return;
    }
    let s = common::TestServer::start(common::own_pool());
    let mut c = s.client();
    let child = UsernsChild::spawn(&UnshareOptions::new()).unwrap();
    let member = PidFd::open(child.pid()).unwrap();
    let ns = child.userns_fd().unwrap();
    let opts = AllocOptions {
        write_maps: true,
        ..AllocOptions::default()
    };
    c.allocate_userns(ns.as_fd(), Some(member.as_fd()), &opts)
        .unwrap();
    let target = s.dir.path().join("ns-pin");
    std::fs::write(&target, b"").unwrap();
    let src = format!("/proc/{}/ns/user", child.pid());
    rustix::mount::mount_bind(src.as_str(), &target).unwrap();
    drop((member, ns, child));
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(c.list().unwrap().len(), 1, "released while bind-mounted");
    credns_sys::unmount(&target, false).unwrap();
    eventually("release after the umount", Duration::from_secs(10), || {
        c.list().unwrap().is_empty()
    });
}

#[test]
fn a_lease_whose_first_process_exited_survives_a_restart() {
    // Regression: a namespace whose first process exited while a child lived on lost its
    // allocation (record and quota charge) at a clean restart.
    if !common::needs_root("a_lease_whose_first_process_exited_survives_a_restart") {
        return;
    }
    use std::io::{BufRead, Write};
    use std::process::{Command, Stdio};
    let dir = common::open_tempdir();
    let cfg = config(dir.path());
    // The namespace's first process is the shell; the sleep started after it lives on.
    let mut first = Command::new("unshare")
        .args(["-U", "sh", "-c", "sleep 120 & echo $!; read x"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(first.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let later = Pid(line.trim().parse().unwrap());
    struct Kill(Pid);
    impl Drop for Kill {
        fn drop(&mut self) {
            if let Some(p) = rustix::process::Pid::from_raw(self.0.as_raw()) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
        }
    }
    let _later = Kill(later);
    let id = {
        let svc = Service::open(&cfg).unwrap();
        let member = PidFd::open(Pid(first.id() as i32)).unwrap();
        let ns = credns_sys::UserNsFd::open(&ProcFs::new(), Pid(first.id() as i32)).unwrap();
        let mut fds = vec![
            Some(ns.as_fd().try_clone_to_owned().unwrap()),
            Some(member.as_fd().try_clone_to_owned().unwrap()),
        ];
        let root = Caller {
            uid: 0,
            pid: Pid::this(),
        };
        let p = json!({"userNamespaceFileDescriptor": 0, "pidFileDescriptor": 1, "writeMaps": true, "size": 1000});
        let v = svc.call(root, "Allocate", &p, &mut fds).unwrap();
        v["allocation"]["id"].as_u64().unwrap()
    };
    // The first process goes; the later one stays in the namespace.
    first.stdin.take().unwrap().write_all(b"\n").unwrap();
    first.wait().unwrap();
    let svc = Service::open(&cfg).unwrap();
    let left = leases(&svc);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["id"], id);
    assert_eq!(left[0]["owner"], 0);
}

#[test]
fn a_reservation_bound_before_a_crash_goes_back_to_its_namespace() {
    // The daemon hands out reserved ranges without an fsync of their own; a crash before the
    // binding reached the disk leaves the range reserved and mapped by a live namespace. At
    // start that namespace gets it back, owned by the namespace's owner; nobody else does.
    if !common::needs_root("a_reservation_bound_before_a_crash_goes_back_to_its_namespace") {
        return;
    }
    let dir = common::open_tempdir();
    let mut cfg = config(dir.path());
    cfg.reserve = 2;
    let reserved = {
        let mut reg = Registry::open(&cfg.store, cfg.policy.clone()).unwrap();
        reg.top_up_reserve(2).unwrap();
        let r: Vec<IdRange> = reg.allocator().reserved().map(|a| a.uid).collect();
        r
    };
    // A namespace mapping the first reservation, as the lost binding had made it.
    let child = UsernsChild::spawn(&UnshareOptions::new()).unwrap();
    let map = format!("0 {} 65536", reserved[0].start);
    for kind in [IdKind::Uid, IdKind::Gid] {
        child
            .write_map(credns_sys::Actor::Caller, kind, map.as_bytes())
            .unwrap()
            .unwrap();
    }
    let svc = Service::open(&cfg).unwrap();
    let left = leases(&svc);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["uid"]["start"], reserved[0].start);
    assert_eq!(left[0]["owner"], 0);
    assert_eq!(
        left[0]["lease"]["userNamespace"]["ino"],
        child.userns().unwrap().ino
    );
    // A namespace lease now comes from the other reservation, not the mapped one.
    let other = UsernsChild::spawn(&UnshareOptions::new()).unwrap();
    let member = PidFd::open(other.pid()).unwrap();
    let ns = other.userns_fd().unwrap();
    let mut fds = vec![
        Some(ns.as_fd().try_clone_to_owned().unwrap()),
        Some(member.as_fd().try_clone_to_owned().unwrap()),
    ];
    let root = Caller {
        uid: 0,
        pid: Pid::this(),
    };
    let p = json!({"userNamespaceFileDescriptor": 0, "pidFileDescriptor": 1, "writeMaps": true});
    let v = svc.call(root, "Allocate", &p, &mut fds).unwrap();
    assert_eq!(v["allocation"]["uid"]["start"], reserved[1].start);
    assert_eq!(v["fresh"], true);
}
