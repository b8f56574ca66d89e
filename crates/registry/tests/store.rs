//! The durable store: what is committed survives reopening (and SIGKILL), what is not
//! committed never appears, and reopening rebuilds the same state.

use credns_idmap::{IdRange, IdRangeSet};
use credns_registry::{
    AllocId, AllocRequest, Allocation, Error, HighRequest, HighWindow, Lease, LiveUserNs, Origin,
    Policy, RegisterRequest, Registry, Selector, Window,
};

fn r(a: u32, b: u32) -> IdRange {
    IdRange { start: a, end: b }
}

fn policy() -> Policy {
    Policy {
        high: HighWindow {
            enabled: true,
            ..HighWindow::default()
        },
        ..Policy::default()
    }
}

fn named(n: &str) -> AllocRequest {
    AllocRequest::new(Lease::name(n), 0)
}

fn snapshot(reg: &Registry) -> (Vec<Allocation>, Vec<IdRange>, Vec<IdRange>) {
    (
        reg.list().cloned().collect(),
        reg.allocator().free_extents(Window::Main),
        reg.allocator().free_extents(Window::High),
    )
}

#[test]
fn committed_allocations_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.redb");
    let before = {
        let mut reg = Registry::open(&path, policy()).unwrap();
        reg.set_clock(|| 1_700_000_000);
        let a = reg.allocate(&named("web").label("nginx")).unwrap();
        let ns = Lease::UserNs {
            dev: 4,
            ino: 4_026_532_999,
            created_ns: 1_700_000_000_123_456_789,
        };
        let b = reg
            .allocate(
                &AllocRequest::new(ns, 1000)
                    .size(2_000_000)
                    .high(HighRequest::Default),
            )
            .unwrap();
        let c = reg
            .register(&RegisterRequest::new(
                Lease::name("podman-abc"),
                0,
                r(100_000, 165_535),
            ))
            .unwrap();
        assert_eq!(c.origin, Origin::Registered);
        assert_eq!(a.created, 1_700_000_000);
        assert_eq!(b.uid.len(), 2_000_000);
        snapshot(&reg)
    };
    let reg = Registry::open(&path, policy()).unwrap();
    assert_eq!(snapshot(&reg), before);
    assert_eq!(
        reg.get(&Selector::Name("web".into()))
            .unwrap()
            .label
            .as_deref(),
        Some("nginx")
    );
    // Charged the aligned blocks taken: 2,000,000 ids fill 31 blocks of 65536, the high
    // range's 65535 one.
    assert_eq!(reg.allocator().usage(1000).ids, 31 * 65_536 + 65_536);
}

#[test]
fn ids_are_never_reused_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.redb");
    let last = {
        let mut reg = Registry::open(&path, Policy::default()).unwrap();
        reg.allocate(&named("a")).unwrap();
        let b = reg.allocate(&named("b")).unwrap();
        reg.release(&Selector::Id(b.id)).unwrap();
        b.id
    };
    let mut reg = Registry::open(&path, Policy::default()).unwrap();
    let c = reg.allocate(&named("c")).unwrap();
    assert!(c.id > last, "{} after {}", c.id, last);
    // The released range is reused, the id is not.
    assert_eq!(c.uid.start, 589_824);
}

#[test]
fn an_uncommitted_allocation_never_appears() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.redb");
    let mut reg = Registry::open(&path, Policy::default()).unwrap();
    let kept = reg.allocate(&named("kept")).unwrap();
    let before = snapshot(&reg);
    {
        let mut t = reg.begin().unwrap();
        let ghost = t.allocate(&named("ghost")).unwrap();
        let ghost2 = t.allocate(&named("ghost2")).unwrap();
        assert_ne!(ghost.uid, ghost2.uid, "a batch sees its own allocations");
        t.release(&Selector::Name("kept".into())).unwrap();
        assert!(t.allocator().get(&Selector::Name("ghost".into())).is_some());
        assert!(t.allocator().get(&Selector::Name("kept".into())).is_none());
        // Dropped without commit.
    }
    assert_eq!(snapshot(&reg), before, "memory rolled back");
    drop(reg);
    let mut reg = Registry::open(&path, Policy::default()).unwrap();
    assert_eq!(snapshot(&reg), before, "nothing reached the disk");
    assert!(reg.get(&Selector::Name("ghost".into())).is_none());
    // The ghost's id was never committed, so it may be handed out again; its range certainly is.
    let next = reg.allocate(&named("next")).unwrap();
    assert_eq!(next.uid.start, kept.uid.end + 1);
}

#[test]
fn a_batch_commits_together() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.redb");
    let mut reg = Registry::open(&path, Policy::default()).unwrap();
    let mut t = reg.begin().unwrap();
    for i in 0..500 {
        t.allocate(&named(&format!("c{i}"))).unwrap();
    }
    // A refused step leaves the transaction usable.
    assert!(matches!(
        t.allocate(&named("bad").size(0)),
        Err(Error::InvalidSize { .. })
    ));
    t.commit().unwrap();
    let before = snapshot(&reg);
    drop(reg);
    let reg = Registry::open(&path, Policy::default()).unwrap();
    assert_eq!(reg.allocator().len(), 500);
    assert_eq!(snapshot(&reg), before);
}

#[test]
fn idempotent_allocate_does_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.redb");
    let mut reg = Registry::open(&path, Policy::default()).unwrap();
    let a = reg.allocate(&named("x")).unwrap();
    assert_eq!(reg.allocate(&named("x").size(12)).unwrap(), a);
    assert_eq!(reg.list().count(), 1);
}

#[test]
fn reap_releases_dead_namespaces_durably() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.redb");
    let mut reg = Registry::open(&path, Policy::default()).unwrap();
    let ns = |ino, c| {
        AllocRequest::new(
            Lease::UserNs {
                dev: 4,
                ino,
                created_ns: c,
            },
            1000,
        )
    };
    let alive = reg.allocate(&ns(1, 10)).unwrap();
    let dead = reg.allocate(&ns(2, 20)).unwrap();
    let reused = reg.allocate(&ns(3, 30)).unwrap();
    reg.allocate(&named("stable")).unwrap();
    let live = [
        LiveUserNs {
            dev: 4,
            ino: 1,
            created_ns: Some(10),
            ns_id: None,
        },
        LiveUserNs {
            dev: 4,
            ino: 3,
            created_ns: Some(31),
            ns_id: None,
        },
    ];
    let reaped: Vec<AllocId> = reg.reap(&live).unwrap().into_iter().map(|a| a.id).collect();
    assert_eq!(reaped, vec![dead.id, reused.id]);
    assert!(reg.reap(&live).unwrap().is_empty());
    drop(reg);
    let reg = Registry::open(&path, Policy::default()).unwrap();
    let left: Vec<AllocId> = reg.list().map(|a| a.id).collect();
    assert_eq!(left.len(), 2);
    assert!(left.contains(&alive.id));
    let e = Registry::open(&path, Policy::default()).unwrap_err();
    assert!(
        matches!(&e, Error::Store(s) if s.kind == credns_registry::StoreErrorKind::Locked),
        "a second open while one is live is refused: {e}"
    );
    let sel = Selector::UserNs {
        dev: 4,
        ino: 2,
        created_ns: 20,
    };
    assert!(reg.get(&sel).is_none());
}

#[test]
fn release_by_each_selector_and_unknown_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut reg = Registry::open(dir.path().join("r.redb"), Policy::default()).unwrap();
    let a = reg.allocate(&named("a")).unwrap();
    let ns = Lease::UserNs {
        dev: 1,
        ino: 2,
        created_ns: 3,
    };
    reg.allocate(&AllocRequest::new(ns.clone(), 0)).unwrap();
    let c = reg.allocate(&named("c")).unwrap();
    assert_eq!(reg.release(&Selector::Name("a".into())).unwrap().id, a.id);
    assert_eq!(reg.release(&Selector::from(&ns)).unwrap().lease, ns);
    assert_eq!(reg.release(&Selector::Id(c.id)).unwrap().id, c.id);
    assert!(matches!(
        reg.release(&Selector::Id(c.id)),
        Err(Error::UnknownId(_))
    ));
    assert!(matches!(
        reg.release(&Selector::Name("a".into())),
        Err(Error::UnknownName(_))
    ));
    assert!(matches!(
        reg.release(&Selector::from(&ns)),
        Err(Error::UnknownUserNs {
            dev: 1,
            ino: 2,
            created_ns: 3
        })
    ));
    assert!(reg.list().next().is_none());
}

#[test]
fn corrupt_records_are_reported_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.redb");
    let a = {
        let mut reg = Registry::open(&path, Policy::default()).unwrap();
        reg.allocate(&named("a")).unwrap()
    };
    {
        // Write a second record over the same range behind the registry's back.
        let db = redb::Database::create(&path).unwrap();
        let w = db.begin_write().unwrap();
        {
            let mut t = w
                .open_table(redb::TableDefinition::<u64, &[u8]>::new("allocations"))
                .unwrap();
            let mut b = a.clone();
            b.id = AllocId(a.id.0 + 100);
            b.lease = Lease::name("b");
            t.insert(b.id.0, serde_json::to_vec(&b).unwrap().as_slice())
                .unwrap();
        }
        w.commit().unwrap();
    }
    let e = Registry::open(&path, Policy::default()).unwrap_err();
    assert!(matches!(e, Error::Corrupt(_)), "{e}");
}

#[test]
fn exclusions_and_live_maps_are_applied_after_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.redb");
    let mut reg = Registry::open(&path, Policy::default()).unwrap();
    reg.observe_live(IdRangeSet::from_ranges([r(524_288, 524_288 + 65_535)]));
    let a = reg.allocate(&named("a")).unwrap();
    assert_eq!(a.uid.start, 589_824);
    drop(reg);
    // Live maps are not stored: after a reopen the caller supplies a fresh scan.
    let mut reg = Registry::open(&path, Policy::default()).unwrap();
    assert!(reg.allocator().is_free(524_288));
    reg.observe_live(IdRangeSet::from_ranges([r(524_288, 524_288)]));
    assert!(!reg.allocator().is_free(524_288));
    assert_eq!(reg.allocate(&named("b")).unwrap().uid.start, 655_360);
}

/// A child process allocates, reports each returned allocation, opens a transaction with one
/// more allocation and reports it, then waits; the parent kills it with SIGKILL (no destructors,
/// no commit). Everything reported as allocated must be in the database; the uncommitted one
/// must not.
#[test]
fn allocations_survive_sigkill() {
    use std::io::{BufRead, BufReader, Write};
    const CHILD: &str = "CREDNS_REGISTRY_KILL_CHILD";
    if let Ok(path) = std::env::var(CHILD) {
        let mut reg = Registry::open(&path, Policy::default()).unwrap();
        let mut out = std::io::stdout().lock();
        for i in 0..5 {
            let a = reg.allocate(&named(&format!("n{i}"))).unwrap();
            writeln!(out, "ALLOCATED {} {}", a.id.0, a.uid.start).unwrap();
            out.flush().unwrap();
        }
        let mut t = reg.begin().unwrap();
        let ghost = t.allocate(&named("ghost")).unwrap();
        writeln!(out, "GHOST {}", ghost.uid.start).unwrap();
        out.flush().unwrap();
        std::thread::sleep(std::time::Duration::from_secs(60));
        std::process::exit(3);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.redb");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "allocations_survive_sigkill",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, &path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut reported: Vec<(u64, u32)> = Vec::new();
    let mut ghost = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(i) = line.find("ALLOCATED ") {
            let mut f = line[i + "ALLOCATED ".len()..].split(' ');
            reported.push((
                f.next().unwrap().parse().unwrap(),
                f.next().unwrap().parse().unwrap(),
            ));
        } else if line.contains("GHOST ") {
            ghost = true;
            break;
        }
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(ghost, "the child reached its uncommitted allocation");
    assert_eq!(reported.len(), 5);
    let reg = Registry::open(&path, Policy::default()).unwrap();
    let stored: Vec<(u64, u32)> = reg.list().map(|a| (a.id.0, a.uid.start)).collect();
    assert_eq!(stored, reported);
    assert!(reg.get(&Selector::Name("ghost".into())).is_none());
}

/// `release_unsynced`: a process that dies (no clean close) after it loses the release — the
/// allocation is back on reopening, as for a crash before the next durable commit — unless a
/// durable commit followed, which carries the release to the disk with it.
#[test]
fn an_unsynced_release_reaches_the_disk_with_the_next_durable_commit() {
    const CHILD: &str = "CREDNS_REGISTRY_UNSYNCED_CHILD";
    if let Ok(spec) = std::env::var(CHILD) {
        let (path, then_commit) = spec.split_once('|').unwrap();
        let mut reg = Registry::open(path, Policy::default()).unwrap();
        let a = reg.allocate(&named("a")).unwrap();
        reg.release_unsynced(&Selector::Id(a.id)).unwrap();
        assert!(reg.get(&Selector::Id(a.id)).is_none());
        if then_commit == "commit" {
            reg.allocate(&named("b")).unwrap();
        }
        // Exit without dropping the registry: no clean close.
        std::process::exit(0);
    }
    for then_commit in ["none", "commit"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.redb");
        let st = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "an_unsynced_release_reaches_the_disk_with_the_next_durable_commit",
                "--test-threads=1",
            ])
            .env(CHILD, format!("{}|{then_commit}", path.display()))
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "{st:?}");
        let reg = Registry::open(&path, Policy::default()).unwrap();
        let names: Vec<String> = reg
            .list()
            .map(|a| match &a.lease {
                Lease::Name(n) => n.clone(),
                l => panic!("unexpected lease {l:?}"),
            })
            .collect();
        match then_commit {
            "none" => assert_eq!(names, vec!["a".to_string()], "the release was lost"),
            _ => assert_eq!(names, vec!["b".to_string()], "the release is durable"),
        }
    }
}

/// A range set up before its namespace exists is allocated under a provisional lease, then
/// leased to the namespace in the same transaction: same id, ranges, origin and creation time;
/// a taken lease is refused; dropped uncommitted, nothing changes.
#[test]
fn set_lease_keeps_the_allocation_and_refuses_a_taken_lease() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.redb");
    let mut reg = Registry::open(&path, Policy::default()).unwrap();
    reg.allocate(&named("taken")).unwrap();
    let ns = Lease::UserNs {
        dev: 4,
        ino: 4026532000,
        created_ns: 7,
    };
    let before = snapshot(&reg);
    {
        let mut t = reg.begin().unwrap();
        let a = t.allocate(&named("provisional")).unwrap();
        let e = t.set_lease(a.id, Lease::name("taken")).unwrap_err();
        assert!(matches!(e, Error::LeaseTaken { .. }), "{e}");
        // Dropped: the provisional allocation goes too.
    }
    assert_eq!(snapshot(&reg), before);
    let mut t = reg.begin().unwrap();
    let a = t.allocate(&named("provisional")).unwrap();
    let b = t.set_lease(a.id, ns.clone()).unwrap();
    assert_eq!(
        (b.id, b.uid, b.gid, b.origin, b.created),
        (a.id, a.uid, a.gid, a.origin, a.created)
    );
    assert_eq!(b.lease, ns);
    t.commit().unwrap();
    drop(reg);
    let reg = Registry::open(&path, Policy::default()).unwrap();
    assert!(reg.get(&Selector::Name("provisional".into())).is_none());
    let kept = reg
        .get(&Selector::from(&ns))
        .expect("leased to the namespace");
    assert_eq!(
        (kept.id, kept.uid, kept.origin),
        (a.id, a.uid, Origin::Allocated)
    );
}

#[test]
fn host_files_are_read_leniently_and_changes_are_noticed() {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path();
    std::fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\nodd:x:700000:700001\n",
    )
    .unwrap();
    std::fs::write(etc.join("subuid"), "alice:800000:65536\n").unwrap();
    let mut host = credns_registry::HostFiles::new(etc);
    assert!(host.changed(), "nothing is loaded yet");
    let ids = host.load().unwrap();
    let set = ids.exclusions.set();
    // The malformed line still excludes the ids some reader may take from it.
    assert!(set.contains(700000) && set.contains(700001));
    assert!(set.contains(800000) && set.contains(865535) && !set.contains(865536));
    assert_eq!(ids.warnings.len(), 1, "{:?}", ids.warnings);
    assert!(
        ids.warnings[0].starts_with(&format!("{}:2:", etc.join("passwd").display())),
        "{}",
        ids.warnings[0]
    );
    assert!(!host.changed());
    std::fs::write(etc.join("subgid"), "bob:900000:10\n").unwrap();
    assert!(host.changed(), "a new file is a change");
    assert!(host.load().unwrap().exclusions.set().contains(900009));
    assert!(!host.changed());
}

#[test]
fn a_rolled_back_or_emptied_store_is_refused_until_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.redb");
    let old = dir.path().join("old.redb");
    {
        let mut reg = Registry::open(&path, Policy::default()).unwrap();
        reg.allocate(&named("a")).unwrap();
    }
    std::fs::copy(&path, &old).unwrap();
    {
        let mut reg = Registry::open(&path, Policy::default()).unwrap();
        reg.allocate(&named("b")).unwrap();
    }
    // Restored from the older copy: "b" was acknowledged and is missing.
    std::fs::copy(&old, &path).unwrap();
    let e = Registry::open(&path, Policy::default()).unwrap_err();
    let Error::Store(s) = &e else { panic!("{e}") };
    assert_eq!(s.kind, credns_registry::StoreErrorKind::RolledBack, "{e}");
    assert!(
        s.message.starts_with(&format!(
            "the registry store {} is at generation ",
            path.display()
        )),
        "{e}"
    );
    // Emptied: refused the same way.
    std::fs::write(&path, b"").unwrap();
    let e = Registry::open(&path, Policy::default()).unwrap_err();
    assert!(
        matches!(&e, Error::Store(s) if s.kind == credns_registry::StoreErrorKind::RolledBack),
        "{e}"
    );
    // Accepted on purpose, it opens, and later opens are ordinary again.
    std::fs::copy(&old, &path).unwrap();
    let reg = Registry::open_accepting_rollback(&path, Policy::default()).unwrap();
    assert_eq!(reg.list().count(), 1);
    drop(reg);
    let mut reg = Registry::open(&path, Policy::default()).unwrap();
    reg.allocate(&named("c")).unwrap();
}

#[test]
fn reservations_are_handed_out_from_memory_and_never_while_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.redb");
    let mut reg = Registry::open(&path, Policy::default()).unwrap();
    assert_eq!(reg.top_up_reserve(3).unwrap(), 3);
    assert_eq!(reg.top_up_reserve(3).unwrap(), 0, "already held");
    // Not listed, but held: `who` names them, and a plain allocation goes past them.
    assert_eq!(reg.list().count(), 0);
    let held: Vec<IdRange> = reg.allocator().reserved().map(|a| a.uid).collect();
    assert_eq!(held.len(), 3);
    assert!(matches!(
        reg.who(held[0].start).as_slice(),
        [credns_registry::Holder::Excluded(_)]
    ));
    // A live namespace maps the first: it is skipped.
    reg.observe_live(credns_idmap::IdRangeSet::from_ranges([held[0]]));
    let ns = |i: u64| Lease::UserNs {
        dev: 4,
        ino: i,
        created_ns: i,
    };
    let a = reg
        .allocate_reserved(&AllocRequest::new(ns(1), 1000))
        .unwrap()
        .unwrap();
    assert_eq!(a.uid, held[1]);
    assert_eq!((a.owner, a.origin), (1000, Origin::Allocated));
    // Asking again with the same lease is the same allocation.
    let again = reg
        .allocate_reserved(&AllocRequest::new(ns(1), 1000))
        .unwrap();
    assert_eq!(again.as_ref().map(|x| x.id), Some(a.id));
    // Sizes other than the default are not served from reservations.
    assert!(reg
        .allocate_reserved(&AllocRequest::new(ns(2), 1000).size(10))
        .unwrap()
        .is_none());
    let b = reg
        .allocate_reserved(&AllocRequest::new(ns(3), 1000))
        .unwrap()
        .unwrap();
    assert_eq!(b.uid, held[2]);
    // Only the mapped one is left, and it is not handed out.
    assert!(reg
        .allocate_reserved(&AllocRequest::new(ns(4), 1000))
        .unwrap()
        .is_none());
    assert_eq!(reg.list().count(), 2);
    assert_eq!(
        reg.allocator().usage(1000).ids,
        2 * 65_536,
        "charged as allocations"
    );
    reg.flush().unwrap();
    drop(reg);
    let reg = Registry::open(&path, Policy::default()).unwrap();
    let listed: Vec<AllocId> = reg.list().map(|x| x.id).collect();
    assert_eq!(
        listed,
        vec![a.id, b.id],
        "the bindings are durable after a flush"
    );
    assert_eq!(reg.allocator().reserved().count(), 1);
}

#[test]
fn a_new_policy_keeps_every_allocation_and_an_invalid_one_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut reg = Registry::open(dir.path().join("registry.redb"), Policy::default()).unwrap();
    let held = reg.allocate(&named("kept")).unwrap();
    let before = snapshot(&reg);

    let mut broken = Policy::default();
    broken.pool.align = 0;
    let e = reg.set_policy(broken).unwrap_err();
    assert!(e.to_string().contains("pool.align is 0"), "{e}");
    assert_eq!(
        snapshot(&reg),
        before,
        "a refused policy changed the registry"
    );

    let mut smaller = Policy::default();
    smaller.pool.default_size = 4096;
    smaller.pool.align = 4096;
    reg.set_policy(smaller.clone()).unwrap();
    assert_eq!(reg.allocator().policy(), &smaller);
    assert_eq!(reg.list().cloned().collect::<Vec<_>>(), before.0);
    let next = reg.allocate(&named("after")).unwrap();
    assert_eq!(next.ids(), 4096, "the new default size is used");
    assert!(next.footprint().intersection(&held.footprint()).is_empty());
    assert!(next.id.0 > held.id.0);
}

#[test]
fn reservations_follow_a_new_default_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut reg = Registry::open(dir.path().join("registry.redb"), Policy::default()).unwrap();
    assert_eq!(reg.top_up_reserve(2).unwrap(), 2);
    let mut smaller = Policy::default();
    smaller.pool.default_size = 4096;
    smaller.pool.align = 4096;
    reg.set_policy(smaller).unwrap();
    // The old reservations are not the default size any more: none is handed out.
    let req = AllocRequest::new(Lease::name("ns-like"), 0);
    assert!(reg.allocate_reserved(&req).unwrap().is_none());
    // The next top-up replaces them.
    assert_eq!(reg.top_up_reserve(2).unwrap(), 2);
    let sizes: Vec<u64> = reg.allocator().reserved().map(|r| r.ids()).collect();
    assert_eq!(sizes, [4096, 4096]);
    let a = reg.allocate_reserved(&req).unwrap().unwrap();
    assert_eq!(a.ids(), 4096);
}

#[test]
fn a_delegation_stays_delegated_across_reopening_and_others_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.redb");
    {
        let mut reg = Registry::open(&path, policy()).unwrap();
        let mut req = AllocRequest::new(Lease::name("subid:alice:0"), 60123);
        req.delegated = true;
        assert!(reg.allocate(&req).unwrap().delegated);
        assert!(!reg.allocate(&named("plain")).unwrap().delegated);
    }
    let reg = Registry::open(&path, policy()).unwrap();
    let got = |n: &str| reg.get(&Selector::Name(n.into())).unwrap().clone();
    assert!(got("subid:alice:0").delegated);
    assert_eq!(got("subid:alice:0").owner, 60123);
    assert!(!got("plain").delegated);
}
