//! The audit's checks on snapshots built in memory: each problem kind planted alone gives
//! exactly its finding, and a clean host gives none.

use credns_api::registry::{AllocationInfo, Range, UserNamespace, WireLease};
use credns_idmap::formats::subid::{SubidEntry, SubidOwner};
use credns_idmap::{Extent, IdMap};
use credns_live::snapshot::HostIdFiles;
use credns_live::{audit, FindingKind, HostSnapshot, LiveNs, Report, Severity};
use credns_registry::{GroupEntry, PasswdEntry};
use credns_sys::NsId;

const DEV: u64 = 4;

fn ns(ino: u64, owner: u32, uid: &[(u32, u32, u32)], gid: &[(u32, u32, u32)]) -> LiveNs {
    let map = |v: &[(u32, u32, u32)]| {
        IdMap::new(
            v.iter()
                .map(|&(first, lower_first, count)| Extent {
                    first,
                    lower_first,
                    count,
                })
                .collect::<Vec<_>>(),
        )
        .unwrap()
    };
    LiveNs {
        id: NsId { dev: DEV, ino },
        pids: vec![ino as u32],
        owner: Some(owner),
        ancestors: vec![],
        outside: false,
        uid_map: map(uid),
        gid_map: map(gid),
    }
}

fn files() -> HostIdFiles {
    let user = |name: &str, uid: u32, gid: u32, line: usize| PasswdEntry {
        name: name.into(),
        uid,
        gid,
        line,
    };
    let group = |name: &str, gid: u32, members: &[&str], line: usize| GroupEntry {
        name: name.into(),
        gid,
        members: members.iter().map(|m| m.to_string()).collect(),
        line,
    };
    HostIdFiles {
        passwd: vec![
            user("root", 0, 0, 1),
            user("alice", 1000, 1000, 2),
            user("bob", 1001, 1001, 3),
        ],
        groups: vec![
            group("root", 0, &[], 1),
            group("alice", 1000, &[], 2),
            group("staff", 50, &["alice"], 3),
        ],
        ..HostIdFiles::default()
    }
}

fn alloc(id: u64, start: u32, owner: u32, lease_ns: Option<u64>) -> AllocationInfo {
    let r = Range {
        start,
        end: start + 65535,
    };
    AllocationInfo {
        id,
        uid: r,
        gid: r,
        high: None,
        lease: match lease_ns {
            Some(ino) => WireLease {
                name: None,
                user_namespace: Some(UserNamespace {
                    dev: DEV,
                    ino,
                    created_ns: 1,
                }),
            },
            None => WireLease {
                name: Some(format!("c{id}")),
                user_namespace: None,
            },
        },
        owner,
        created: 1,
        label: None,
        origin: "registry".into(),
        conflicts: vec![],
        delegated: false,
    }
}

fn snap(namespaces: Vec<LiveNs>) -> HostSnapshot {
    HostSnapshot {
        own: Some(NsId { dev: DEV, ino: 1 }),
        namespaces,
        files: files(),
        ..HostSnapshot::default()
    }
}

fn messages(r: &Report) -> Vec<String> {
    r.findings
        .iter()
        .map(|f| format!("{} {}: {}", f.severity, f.kind.name(), f.message))
        .collect()
}

const POOL: u32 = 524288;

#[test]
fn a_clean_host_has_no_findings() {
    let s = snap(vec![
        // A container in its allocation, leased by name, made by root.
        ns(10, 0, &[(0, POOL, 65536)], &[(0, POOL, 65536)]),
        // A namespace lease, made by alice.
        ns(
            11,
            1000,
            &[(0, POOL + 65536, 65536)],
            &[(0, POOL + 65536, 65536)],
        ),
        // alice's own ids, mapped as unshare -r does; her supplementary group too.
        ns(12, 1000, &[(0, 1000, 1)], &[(0, 1000, 1), (1, 50, 1)]),
    ]);
    let allocs = [
        alloc(1, POOL, 0, None),
        alloc(2, POOL + 65536, 1000, Some(11)),
    ];
    let r = audit(&s, &allocs);
    assert_eq!(messages(&r), Vec::<String>::new());
    assert_eq!(r.namespaces.len(), 3);
    assert_eq!(r.namespaces[0].allocations, vec![1]);
    assert_eq!(r.namespaces[1].allocations, vec![2]);
}

#[test]
fn nested_namespaces_share_their_ancestors_ids_without_a_finding() {
    let mut child = ns(20, 5000, &[(0, POOL, 100)], &[(0, POOL, 100)]);
    child.ancestors = vec![NsId { dev: DEV, ino: 10 }];
    let s = snap(vec![
        ns(10, 0, &[(0, POOL, 65536)], &[(0, POOL, 65536)]),
        child,
    ]);
    let r = audit(&s, &[alloc(1, POOL, 0, None)]);
    assert_eq!(messages(&r), Vec::<String>::new());
    assert_eq!(r.namespaces[1].depth, 2);
}

#[test]
fn two_owners_sharing_unregistered_ids() {
    let s = snap(vec![
        ns(10, 0, &[(0, 600000, 1000)], &[(0, 0, 1)]),
        ns(11, 1000, &[(0, 600500, 1000)], &[(0, 1000, 1)]),
    ]);
    let r = audit(&s, &[]);
    assert_eq!(
        messages(&r),
        [
            "high shared-ids: uids 600500-600999 are mapped by owner 0 (root), outside the \
             registry (user namespace user:[10]) and by owner 1000 (alice), outside the registry \
             (user namespace user:[11])",
            "medium unregistered: user namespace user:[10] (owner 0 root) maps uids 600000-600999, \
             which no allocation holds",
            "medium unregistered: user namespace user:[11] (owner 1000 alice) maps uids \
             600500-601499, which no allocation holds",
        ]
    );
    assert_eq!(r.findings[0].namespaces, vec![10, 11]);
}

#[test]
fn a_namespace_using_another_namespaces_lease() {
    let s = snap(vec![
        ns(10, 1000, &[(0, POOL, 65536)], &[(0, POOL, 65536)]),
        ns(11, 1001, &[(0, POOL + 10, 5)], &[(0, 1001, 1)]),
    ]);
    let r = audit(&s, &[alloc(1, POOL, 1000, Some(10))]);
    assert_eq!(
        messages(&r),
        [
            "high shared-ids: uids 524298-524302 are mapped by allocation #1 (user namespace \
             user:[10]) and by owner 1001 (bob), outside the registry (user namespace user:[11])",
            "high leased-elsewhere: user namespace user:[11] (owner 1001 bob) maps uids \
             524298-524302 of allocation #1, which is leased to user namespace user:[10]",
        ]
    );
    assert_eq!(r.findings[1].allocations, vec![1]);
}

#[test]
fn a_name_leased_allocation_used_by_another_user() {
    let s = snap(vec![ns(11, 1001, &[(0, POOL, 1)], &[(0, 1001, 1)])]);
    let r = audit(&s, &[alloc(1, POOL, 1000, None)]);
    assert_eq!(
        messages(&r),
        [
            "high leased-elsewhere: user namespace user:[11] (owner 1001 bob) maps uid 524288 of \
          allocation #1, which belongs to uid 1000"
        ]
    );
}

#[test]
fn host_users_ids_mapped_by_another_owner() {
    let s = snap(vec![ns(10, 1000, &[(0, 1000, 2)], &[(0, 0, 1)])]);
    let r = audit(&s, &[]);
    assert_eq!(
        messages(&r),
        [
            "high host-id-mapped: user namespace user:[10] (owner 1000 alice) maps the uid of \
             host users other than its owner's: 1001 (bob)",
            "high host-id-mapped: user namespace user:[10] (owner 1000 alice) maps the gid of \
             host groups other than its owner's: 0 (root)",
            "medium unregistered: user namespace user:[10] (owner 1000 alice) maps uid 1001, \
             which no allocation holds",
            "medium unregistered: user namespace user:[10] (owner 1000 alice) maps gid 0, which \
             no allocation holds",
        ]
    );
}

#[test]
fn unregistered_ids_within_the_owners_subordinate_range_are_low() {
    let mut s = snap(vec![ns(
        10,
        1000,
        &[(0, 1000, 1), (1, 100000, 65536)],
        &[(0, 1000, 1)],
    )]);
    s.files.subuid = vec![SubidEntry {
        owner: SubidOwner::Name("alice".into()),
        start: 100000,
        count: 65536,
        line: 1,
    }];
    let r = audit(&s, &[]);
    assert_eq!(
        messages(&r),
        ["low unregistered: user namespace user:[10] (owner 1000 alice) maps uids 100000-165535, \
          which no allocation holds (they are its owner's subordinate ids)"]
    );
    assert_eq!(r.findings[0].severity, Severity::Low);
}

#[test]
fn subid_entries_overlapping_each_other_or_host_ids() {
    let mut s = snap(vec![]);
    let e = |owner: &str, start, count, line| SubidEntry {
        owner: SubidOwner::from_field(owner),
        start,
        count,
        line,
    };
    s.files.subuid = vec![
        e("alice", 100000, 65536, 1),
        e("bob", 150000, 65536, 2),
        e("alice", 150000, 10, 3),
        e("carol", 1000, 10, 4),
    ];
    let r = audit(&s, &[]);
    assert_eq!(
        messages(&r),
        [
            "medium subid-overlap: /etc/subuid line 1 (alice:100000:65536) and line 2 \
             (bob:150000:65536) share uids 150000-165535",
            "medium subid-overlap: /etc/subuid line 2 (bob:150000:65536) and line 3 \
             (alice:150000:10) share uids 150000-150009",
            "medium subid-covers-host-id: /etc/subuid line 4 (carol:1000:10) covers host user \
             1000 (alice), user 1001 (bob)",
        ]
    );
}

#[test]
fn a_lease_whose_namespace_nothing_holds() {
    let s = snap(vec![]);
    let r = audit(&s, &[alloc(3, POOL, 1000, Some(77))]);
    assert_eq!(
        messages(&r),
        [
            "low stale-lease: allocation #3 is leased to user:[77], which no process, nsfs fd or \
          bind mount holds"
        ]
    );
    // Held by an fd: not stale, and counted among what cannot be seen into.
    let mut held = snap(vec![]);
    held.refs.fds.insert(77);
    let r = audit(&held, &[alloc(3, POOL, 1000, Some(77))]);
    assert_eq!(messages(&r), Vec::<String>::new());
    assert_eq!(r.unseen.fd_held, vec![77]);
    // With an idmapped mount somewhere, it cannot be decided.
    let mut blind = snap(vec![]);
    blind.refs.idmapped_mounts = 1;
    let r = audit(&blind, &[alloc(3, POOL, 1000, Some(77))]);
    assert_eq!(r.findings[0].severity, Severity::Info);
    assert_eq!(r.findings[0].kind, FindingKind::StaleLease);
}

#[test]
fn an_allocation_overlapping_something_added_later() {
    let mut a = alloc(4, POOL, 0, None);
    a.conflicts = vec!["/etc/subuid line 3 (dave:524288:10)".into()];
    let r = audit(&snap(vec![]), &[a]);
    assert_eq!(
        messages(&r),
        ["medium later-overlap: allocation #4 (uids 524288-589823) overlaps what was added after \
          it: /etc/subuid line 3 (dave:524288:10)"]
    );
}
