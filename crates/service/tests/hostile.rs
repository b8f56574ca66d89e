//! The daemon against hostile local users: each test is a regression of a promise that broke
//! (crates/service/DESIGN.md, "Threat model", names them).

mod common;

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use credns_registry::Policy;
use credns_service::{AllocOptions, RegistryClient, Target};

/// Run `f` on a thread whose uids are `uid`: the kernel records that thread's credentials for
/// the connections it makes (`SO_PEERCRED`).
fn as_uid<T: Send>(uid: u32, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let u = rustix::process::Uid::from_raw(uid);
            rustix::thread::set_thread_res_uid(u, u, u).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

/// This process's resident memory (`VmRSS`), in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn thousands_of_hostile_connections_and_fds_do_not_stop_root() {
    // Regression: connections each passing descriptors and never finishing a message made
    // accept fail with EMFILE and the daemon exit; thousands of idle ones (a thread each)
    // starved root's `credns list`.
    if !common::needs_root("thousands_of_hostile_connections_and_fds_do_not_stop_root") {
        return;
    }
    let s = common::TestServer::start(Policy::default());
    let socket = s.socket.clone();
    // The attacker's side needs many descriptors of its own.
    let _ = rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(65_536),
            maximum: Some(65_536),
        },
    );
    let pipe = rustix::pipe::pipe().unwrap();
    let rss_before = rss_kib();
    let hostile: Vec<UnixStream> = as_uid(1000, || {
        let mut v = Vec::new();
        for _ in 0..5_000 {
            let Ok(c) = UnixStream::connect(&socket) else {
                continue;
            };
            // Four descriptors and half a message on each: 20,000 descriptors offered in all,
            // and no NUL ever.
            let fds = [
                pipe.0.as_fd(),
                pipe.1.as_fd(),
                pipe.0.as_fd(),
                pipe.1.as_fd(),
            ];
            let _ = credns_sys::peer::send_with_fds(c.as_fd(), b"{\"method\":", &fds);
            v.push(c);
        }
        v
    });
    assert_eq!(
        hostile.len(),
        5_000,
        "every connect was at least accepted by the kernel"
    );
    // Root is served, at once, while they hang on.
    let t0 = Instant::now();
    let mut root = RegistryClient::connect(&s.socket).unwrap();
    root.varlink()
        .set_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    assert!(root.list().unwrap().is_empty());
    println!(
        "root's list under 5,000 hostile connections: {:?}",
        t0.elapsed()
    );
    // Memory stays bounded: the daemon (this process, with the attackers' 5,000 sockets)
    // grows by far less than a buffer per connection would take.
    let grown = rss_kib().saturating_sub(rss_before);
    println!("resident memory grown by {grown} KiB");
    assert!(
        grown < 64 * 1024,
        "grew by {grown} KiB under 5,000 idle connections"
    );
    // A user with an ordinary workload is served too (its own principal has room).
    let alloc = as_uid(1001, || {
        let mut c = RegistryClient::connect(&socket).unwrap();
        c.allocate_name("fine", &AllocOptions::default())
    })
    .unwrap();
    assert_eq!(alloc.owner, 1001);
    // The daemon closed what it did not take: most hostile connections see end of stream.
    drop(hostile);
    assert_eq!(root.list().unwrap().len(), 1);
}

#[test]
fn a_containers_users_are_charged_to_its_owner() {
    // Regression: a user's container ran `setpriv --reuid K` for 130 container uids and
    // allocated 256 ranges as each, exhausting the pool under 114 "owners".
    if !common::needs_root("a_containers_users_are_charged_to_its_owner") {
        return;
    }
    let mut p = Policy::default();
    p.quota.max_ranges = 2;
    let s = common::TestServer::start(p);
    let socket = s.socket.clone();
    let first = as_uid(1000, || {
        RegistryClient::connect(&socket)
            .unwrap()
            .allocate_name("ct", &AllocOptions::default())
            .unwrap()
    });
    // Uids inside alice's range (her container's users) pay through her: one more range fits
    // her quota of two, the next does not, whichever of her container's uids asks.
    let inside = |k: u32, name: &str| {
        let uid = first.uid.start + k;
        let socket = socket.clone();
        let name = name.to_string();
        as_uid(uid, move || {
            RegistryClient::connect(&socket)
                .unwrap()
                .allocate_name(&name, &AllocOptions::default())
        })
    };
    let second = inside(1, "ct-a").unwrap();
    assert_eq!(second.owner, first.uid.start + 1, "the asker owns it");
    let e = inside(2, "ct-b").unwrap_err();
    let r = e.remote().unwrap_or_else(|| panic!("{e}"));
    assert_eq!(r.error, "io.credns.Registry.QuotaExceeded", "{e}");
    assert_eq!(
        r.parameters["owner"], 1000,
        "charged to the container's owner: {e}"
    );
    // Another user is not affected.
    let other = as_uid(1001, || {
        RegistryClient::connect(&socket)
            .unwrap()
            .allocate_name("other", &AllocOptions::default())
    });
    assert!(other.is_ok(), "{other:?}");
    let mut root = s.client();
    assert_eq!(root.list().unwrap().len(), 3);
    root.release(&Target::Name("ct".into())).unwrap();
}

#[test]
fn the_store_is_private_to_root() {
    // Regression: the store was world-readable (every name, label and owner that `list`
    // hides), and a store another uid could write was served without complaint.
    if !common::needs_root("the_store_is_private_to_root") {
        return;
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = common::open_tempdir();
    let cfg = |store: &std::path::Path| {
        let mut c = credns_service::Config::new(store);
        c.etc = None;
        c
    };
    // A fresh store: its directory is made 0700, the file 0600.
    let fresh = dir.path().join("lib/registry.redb");
    drop(credns_service::Service::open(&cfg(&fresh)).unwrap());
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(fresh.parent().unwrap()), 0o700);
    assert_eq!(mode(&fresh), 0o600);
    // Readable by others: made private.
    std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o644)).unwrap();
    drop(credns_service::Service::open(&cfg(&fresh)).unwrap());
    assert_eq!(mode(&fresh), 0o600);
    // Writable by others, or owned by another uid: refused, naming the file and why.
    std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o666)).unwrap();
    let e = credns_service::Service::open(&cfg(&fresh)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "refusing the registry store at {}: mode 666: others may write to it",
            fresh.display()
        )
    );
    std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&fresh, Some(1000), None).unwrap();
    let e = credns_service::Service::open(&cfg(&fresh)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "refusing the registry store at {}: owned by uid 1000, not 0",
            fresh.display()
        )
    );
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let e = credns_service::Service::open(&cfg(&shared.join("r.redb"))).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "refusing the registry store at {}: mode 1777: others may write to it",
            shared.display()
        )
    );
}

#[test]
fn host_files_are_reread_before_the_next_allocation() {
    // Regression: ids added to passwd/subuid after start were handed out, and after a
    // restart `who` showed both holders with no warning.
    if !common::needs_root("host_files_are_reread_before_the_next_allocation") {
        return;
    }
    let dir = common::open_tempdir();
    let etc = dir.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    std::fs::write(etc.join("passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    let mut cfg = credns_service::Config::new(dir.path().join("lib/registry.redb"));
    cfg.etc = Some(etc.clone());
    let svc = credns_service::Service::open(&cfg).unwrap();
    let server = credns_service::Server::bind(dir.path().join("sock"), svc).unwrap();
    std::thread::spawn(move || server.run());
    let mut c = RegistryClient::connect(dir.path().join("sock")).unwrap();
    let a = c.allocate_name("a", &AllocOptions::default()).unwrap();
    // A user added inside a's range, and a delegation right where the next range would go.
    let inside = a.uid.start + 10;
    let next = a.uid.end + 1;
    std::fs::write(
        etc.join("passwd"),
        format!("root:x:0:0::/root:/bin/sh\nbob:x:{inside}:{inside}::/home/bob:/bin/sh\n"),
    )
    .unwrap();
    std::fs::write(etc.join("subuid"), format!("carol:{next}:65536\n")).unwrap();
    let b = c.allocate_name("b", &AllocOptions::default()).unwrap();
    assert!(
        b.uid.start >= next + 65_536,
        "b {} overlaps carol's delegation {next}+65536",
        b.uid
    );
    // The allocation the new user overlaps says so.
    let shown = c.show(&Target::Name("a".into())).unwrap();
    assert_eq!(
        shown.conflicts,
        vec![
            format!("{inside} also held by user bob"),
            format!("{inside} also held by primary gid of user bob"),
        ]
    );
    assert!(c
        .show(&Target::Name("b".into()))
        .unwrap()
        .conflicts
        .is_empty());
}

#[test]
fn a_containers_users_share_their_owners_connections() {
    // Connections count against the principal, as quotas do: a container's 65,536 uids cannot
    // take every connection the daemon gives non-root users.
    if !common::needs_root("a_containers_users_share_their_owners_connections") {
        return;
    }
    let s = common::TestServer::start(Policy::default());
    let socket = s.socket.clone();
    let ct = as_uid(1000, || {
        RegistryClient::connect(&socket)
            .unwrap()
            .allocate_name("ct", &AllocOptions::default())
            .unwrap()
    });
    let limit = credns_varlink::Limits::default().max_connections_per_principal as u32;
    let mut held = Vec::new();
    for k in 1..=limit {
        let socket = socket.clone();
        held.push(as_uid(ct.uid.start + k, move || {
            let mut c = RegistryClient::connect(&socket).unwrap();
            c.list().unwrap();
            c
        }));
    }
    // One more of alice's container's uids, or alice herself: over her share, closed at once.
    for uid in [ct.uid.start + limit + 1, 1000] {
        let socket = socket.clone();
        let r = as_uid(uid, move || {
            RegistryClient::connect(&socket).unwrap().list()
        });
        assert!(
            r.is_err(),
            "uid {uid} was served beyond its principal's share"
        );
    }
    // Another user is not affected.
    let socket2 = socket.clone();
    assert!(as_uid(1001, move || RegistryClient::connect(&socket2)
        .unwrap()
        .list())
    .is_ok());
    drop(held);
}
