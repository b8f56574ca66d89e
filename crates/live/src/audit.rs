//! The checks `credns audit` makes: a [`HostSnapshot`] against the registry's allocations.
//!
//! Only namespaces just below the scanner's own ("top-level": a container, a sandbox, an
//! `unshare`) are compared: a nested namespace maps a subset of its ancestors' ids by
//! construction, so whatever it could share its top-level ancestor already shares. Pure: no
//! syscall.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use credns_api::registry::AllocationInfo;
use credns_idmap::{IdMap, IdRange, IdRangeSet};
use credns_sys::NsId;
use serde::Serialize;

use crate::snapshot::{HostIdFiles, HostSnapshot, LiveNs};

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Cannot be decided from what is visible.
    Info,
    /// Untidy: nothing is shared yet.
    Low,
    /// Ids are used without coordination; sharing may follow.
    Medium,
    /// Two parties share ids, or a namespace holds a host user's ids.
    High,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        })
    }
}

/// What a finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// Two namespaces of different allocations or owners map the same host ids.
    SharedIds,
    /// A namespace maps a host user's or group's id that is not its owner's.
    HostIdMapped,
    /// A namespace maps ids no allocation holds.
    Unregistered,
    /// A namespace maps ids of an allocation leased to another namespace.
    LeasedElsewhere,
    /// Two subuid (or subgid) entries of different owners overlap.
    SubidOverlap,
    /// A subuid (subgid) entry covers a host user's (group's) id.
    SubidCoversHostId,
    /// A registry lease names a namespace nothing visible holds.
    StaleLease,
    /// An allocation overlaps something added to the host after it.
    LaterOverlap,
}

impl FindingKind {
    /// The kind's name as printed.
    pub fn name(self) -> &'static str {
        match self {
            FindingKind::SharedIds => "shared-ids",
            FindingKind::HostIdMapped => "host-id-mapped",
            FindingKind::Unregistered => "unregistered",
            FindingKind::LeasedElsewhere => "leased-elsewhere",
            FindingKind::SubidOverlap => "subid-overlap",
            FindingKind::SubidCoversHostId => "subid-covers-host-id",
            FindingKind::StaleLease => "stale-lease",
            FindingKind::LaterOverlap => "later-overlap",
        }
    }
}

/// One problem, with the exact ids and the things involved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How bad.
    pub severity: Severity,
    /// What about.
    pub kind: FindingKind,
    /// The finding in words, ids and namespaces named.
    pub message: String,
    /// The user namespaces involved (nsfs inodes).
    pub namespaces: Vec<u64>,
    /// The allocations involved.
    pub allocations: Vec<u64>,
}

/// What the snapshot could not see into.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Unseen {
    /// Namespaces held by an nsfs fd and by no process (their maps cannot be read).
    pub fd_held: Vec<u64>,
    /// Namespaces bind-mounted and held by no process.
    pub bind_mounted: Vec<u64>,
    /// Idmapped mounts: each holds a namespace /proc cannot name.
    pub idmapped_mounts: usize,
    /// Processes whose fds or mounts could not be read.
    pub unreadable_processes: usize,
    /// Processes that exited while being looked at.
    pub vanished: usize,
}

/// A live namespace as the report lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NsRow {
    /// nsfs inode.
    pub ino: u64,
    /// Creator's euid.
    pub owner: Option<u32>,
    /// Its processes.
    pub pids: Vec<u32>,
    /// Nesting below the scanner's namespace (1 = top-level).
    pub depth: usize,
    /// uid_map, one extent per line, as /proc shows it.
    pub uid_map: String,
    /// gid_map.
    pub gid_map: String,
    /// The allocations its host ids fall in.
    pub allocations: Vec<u64>,
}

/// The audit's result.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Every live namespace seen.
    pub namespaces: Vec<NsRow>,
    /// What is wrong, most severe first.
    pub findings: Vec<Finding>,
    /// What could not be seen.
    pub unseen: Unseen,
    /// Counts of what was read: users, groups, subuid and subgid entries, allocations.
    pub users: usize,
    /// Groups in the group file.
    pub groups: usize,
    /// subuid entries.
    pub subuid_entries: usize,
    /// subgid entries.
    pub subgid_entries: usize,
    /// Registry allocations.
    pub allocations: usize,
    /// Malformed lines skipped and files not read.
    pub warnings: Vec<String>,
}

/// uid or gid, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ids {
    Uid,
    Gid,
}

impl Ids {
    fn word(self, many: bool) -> &'static str {
        match (self, many) {
            (Ids::Uid, false) => "uid",
            (Ids::Uid, true) => "uids",
            (Ids::Gid, false) => "gid",
            (Ids::Gid, true) => "gids",
        }
    }

    fn map(self, ns: &LiveNs) -> &IdMap {
        match self {
            Ids::Uid => &ns.uid_map,
            Ids::Gid => &ns.gid_map,
        }
    }
}

/// `uids 5-9, 12` / `uid 5`.
fn ids_text(kind: Ids, set: &IdRangeSet) -> String {
    let many = set.len() > 1;
    let mut s = format!("{} ", kind.word(many));
    for (i, r) in set.ranges().iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        if r.start == r.end {
            let _ = write!(s, "{}", r.start);
        } else {
            let _ = write!(s, "{}-{}", r.start, r.end);
        }
    }
    s
}

/// The host ids a map uses.
fn host_ids(map: &IdMap) -> IdRangeSet {
    IdRangeSet::from_ranges(map.extents().iter().map(|e| IdRange {
        start: e.lower_first,
        end: (e.lower_first as u64 + e.count as u64 - 1) as u32,
    }))
}

fn map_text(map: &IdMap) -> String {
    map.extents()
        .iter()
        .map(|e| format!("{} {} {}", e.first, e.lower_first, e.count))
        .collect::<Vec<_>>()
        .join("; ")
}

fn one(id: u32) -> IdRangeSet {
    IdRangeSet::from_ranges([IdRange { start: id, end: id }])
}

/// An allocation's host ids of one kind (its range and its high range).
fn alloc_ids(a: &AllocationInfo, kind: Ids) -> IdRangeSet {
    let (r, high) = match kind {
        Ids::Uid => (a.uid, a.high.map(|h| h.uid)),
        Ids::Gid => (a.gid, a.high.map(|h| h.gid)),
    };
    IdRangeSet::from_ranges(std::iter::once(r).chain(high).map(|r| IdRange {
        start: r.start,
        end: r.end,
    }))
}

fn ns_name(ns: &LiveNs, files: &HostIdFiles) -> String {
    match ns.owner {
        Some(o) => match files.user_name(o) {
            Some(n) => format!("user namespace {} (owner {o} {n})", ns.id),
            None => format!("user namespace {} (owner {o})", ns.id),
        },
        None => format!("user namespace {} (owner unknown)", ns.id),
    }
}

/// Who a top-level namespace's ids belong to, for the overlap check: an allocation, or (for
/// ids outside the registry) the namespace's owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Holder {
    Allocation(u64),
    Owner(Option<u32>),
}

/// Audit `snap` against `allocations`.
pub fn audit(snap: &HostSnapshot, allocations: &[AllocationInfo]) -> Report {
    let mut findings = Vec::new();
    let tops: Vec<&LiveNs> = snap.namespaces.iter().filter(|n| n.is_top()).collect();
    let mut holders: BTreeMap<Holder, Vec<&LiveNs>> = BTreeMap::new();
    let mut rows = Vec::new();
    for ns in &snap.namespaces {
        let touched = touched_allocations(ns, allocations);
        rows.push(NsRow {
            ino: ns.id.ino,
            owner: ns.owner,
            pids: ns.pids.clone(),
            depth: ns.ancestors.len() + 1,
            uid_map: map_text(&ns.uid_map),
            gid_map: map_text(&ns.gid_map),
            allocations: touched.iter().map(|a| a.id).collect(),
        });
    }
    for ns in &tops {
        let holder = registration(ns, allocations, &snap.files, &mut findings);
        holders.entry(holder).or_default().push(ns);
        host_ids_mapped(ns, &snap.files, &mut findings);
    }
    shared_ids(&holders, &snap.files, &mut findings);
    subid_checks(&snap.files, &mut findings);
    stale_leases(snap, allocations, &mut findings);
    later_overlaps(allocations, &mut findings);
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.kind.cmp(&b.kind)));
    Report {
        namespaces: rows,
        findings,
        unseen: unseen(snap),
        users: snap.files.passwd.len(),
        groups: snap.files.groups.len(),
        subuid_entries: snap.files.subuid.len(),
        subgid_entries: snap.files.subgid.len(),
        allocations: allocations.len(),
        warnings: snap.files.warnings.clone(),
    }
}

fn touched_allocations<'a>(
    ns: &LiveNs,
    allocations: &'a [AllocationInfo],
) -> Vec<&'a AllocationInfo> {
    let uids = host_ids(&ns.uid_map);
    let gids = host_ids(&ns.gid_map);
    allocations
        .iter()
        .filter(|a| {
            !uids.intersection(&alloc_ids(a, Ids::Uid)).is_empty()
                || !gids.intersection(&alloc_ids(a, Ids::Gid)).is_empty()
        })
        .collect()
}

/// The owner's own ids, which a namespace may map without any allocation (`unshare -r`).
fn owner_ids(ns: &LiveNs, files: &HostIdFiles, kind: Ids) -> IdRangeSet {
    let Some(owner) = ns.owner else {
        return IdRangeSet::default();
    };
    match kind {
        Ids::Uid => one(owner),
        Ids::Gid => {
            let user = files.passwd.iter().find(|p| p.uid == owner);
            let mut set = IdRangeSet::default();
            if let Some(u) = user {
                set.insert(IdRange {
                    start: u.gid,
                    end: u.gid,
                });
                for g in files.groups.iter().filter(|g| g.members.contains(&u.name)) {
                    set.insert(IdRange {
                        start: g.gid,
                        end: g.gid,
                    });
                }
            }
            set
        }
    }
}

/// Check a top-level namespace's ids against the registry: ids in no allocation, ids of an
/// allocation leased to another namespace. Returns who its ids belong to.
fn registration(
    ns: &LiveNs,
    allocations: &[AllocationInfo],
    files: &HostIdFiles,
    findings: &mut Vec<Finding>,
) -> Holder {
    let touched = touched_allocations(ns, allocations);
    for kind in [Ids::Uid, Ids::Gid] {
        let mut outside = host_ids(kind.map(ns)).difference(&owner_ids(ns, files, kind));
        for a in &touched {
            outside = outside.difference(&alloc_ids(a, kind));
        }
        if !outside.is_empty() {
            unregistered(ns, kind, &outside, files, findings);
        }
    }
    let mut foreign = false;
    for a in &touched {
        let Some(whose) = elsewhere(ns, a) else {
            continue;
        };
        foreign = true;
        let used = host_ids(&ns.uid_map).intersection(&alloc_ids(a, Ids::Uid));
        let mut namespaces = vec![ns.id.ino];
        namespaces.extend(a.lease.user_namespace.as_ref().map(|u| u.ino));
        findings.push(Finding {
            severity: Severity::High,
            kind: FindingKind::LeasedElsewhere,
            message: format!(
                "{} maps {} of allocation #{}, which {whose}",
                ns_name(ns, files),
                ids_text(Ids::Uid, &used),
                a.id,
            ),
            namespaces,
            allocations: vec![a.id],
        });
    }
    match touched.as_slice() {
        [a] if !foreign => Holder::Allocation(a.id),
        _ => Holder::Owner(ns.owner),
    }
}

/// Why `ns` may not use `a`'s ids, if it may not: the allocation is leased to another
/// namespace, or (leased to a name) belongs to someone else. A name lease cannot say which
/// namespaces are its container's, so any namespace of its owner, or of root (who administers
/// every allocation), counts as the container's.
fn elsewhere(ns: &LiveNs, a: &AllocationInfo) -> Option<String> {
    match a.lease.user_namespace.as_ref() {
        Some(u) if u.ino == ns.id.ino && u.dev == ns.id.dev => None,
        Some(u) => Some(format!("is leased to user namespace user:[{}]", u.ino)),
        None if ns.owner == Some(a.owner) || ns.owner == Some(0) => None,
        None => Some(format!("belongs to uid {}", a.owner)),
    }
}

fn unregistered(
    ns: &LiveNs,
    kind: Ids,
    outside: &IdRangeSet,
    files: &HostIdFiles,
    findings: &mut Vec<Finding>,
) {
    let subids = match kind {
        Ids::Uid => &files.subuid,
        Ids::Gid => &files.subgid,
    };
    let name = ns.owner.and_then(|o| files.user_name(o));
    let delegated = IdRangeSet::from_ranges(
        subids
            .iter()
            .filter(|e| e.owner.matches(name, ns.owner))
            .map(|e| e.range()),
    );
    let (severity, why) = if delegated.intersection(outside) == *outside {
        (
            Severity::Low,
            "no allocation holds (they are its owner's subordinate ids)",
        )
    } else {
        (Severity::Medium, "no allocation holds")
    };
    findings.push(Finding {
        severity,
        kind: FindingKind::Unregistered,
        message: format!(
            "{} maps {}, which {why}",
            ns_name(ns, files),
            ids_text(kind, outside)
        ),
        namespaces: vec![ns.id.ino],
        allocations: vec![],
    });
}

/// Host users' (groups') ids a top-level namespace maps that are not its owner's.
fn host_ids_mapped(ns: &LiveNs, files: &HostIdFiles, findings: &mut Vec<Finding>) {
    for kind in [Ids::Uid, Ids::Gid] {
        let mapped = host_ids(kind.map(ns)).difference(&owner_ids(ns, files, kind));
        let hits: BTreeMap<u32, &str> = match kind {
            Ids::Uid => files
                .passwd
                .iter()
                .filter(|p| mapped.contains(p.uid))
                .map(|p| (p.uid, p.name.as_str()))
                .collect(),
            Ids::Gid => files
                .groups
                .iter()
                .filter(|g| mapped.contains(g.gid))
                .map(|g| (g.gid, g.name.as_str()))
                .collect(),
        };
        if hits.is_empty() {
            continue;
        }
        let whose = match kind {
            Ids::Uid => "host users",
            Ids::Gid => "host groups",
        };
        let mut list: Vec<String> = hits
            .iter()
            .take(8)
            .map(|(id, n)| format!("{id} ({n})"))
            .collect();
        if hits.len() > 8 {
            list.push(format!("and {} more", hits.len() - 8));
        }
        findings.push(Finding {
            severity: Severity::High,
            kind: FindingKind::HostIdMapped,
            message: format!(
                "{} maps the {} of {whose} other than its owner's: {}",
                ns_name(ns, files),
                kind.word(hits.len() > 1),
                list.join(", ")
            ),
            namespaces: vec![ns.id.ino],
            allocations: vec![],
        });
    }
}

fn holder_text(h: Holder, nss: &[&LiveNs], files: &HostIdFiles) -> String {
    let who = match h {
        Holder::Allocation(id) => format!("allocation #{id}"),
        Holder::Owner(Some(o)) => match files.user_name(o) {
            Some(n) => format!("owner {o} ({n}), outside the registry"),
            None => format!("owner {o}, outside the registry"),
        },
        Holder::Owner(None) => "an unknown owner, outside the registry".to_string(),
    };
    let mut names: Vec<String> = nss.iter().take(3).map(|n| n.id.to_string()).collect();
    if nss.len() > 3 {
        names.push(format!("and {} more", nss.len() - 3));
    }
    format!("{who} (user namespace {})", names.join(", "))
}

/// Host ids mapped by top-level namespaces of two different holders.
fn shared_ids(
    holders: &BTreeMap<Holder, Vec<&LiveNs>>,
    files: &HostIdFiles,
    findings: &mut Vec<Finding>,
) {
    let keys: Vec<Holder> = holders.keys().copied().collect();
    for kind in [Ids::Uid, Ids::Gid] {
        let sets: Vec<IdRangeSet> = keys
            .iter()
            .map(|h| {
                holders[h].iter().fold(IdRangeSet::default(), |acc, ns| {
                    acc.union(&host_ids(kind.map(ns)))
                })
            })
            .collect();
        for (a, b, common) in overlapping_pairs(&sets) {
            let (ha, hb) = (keys[a], keys[b]);
            let using = |h: &Holder| -> Vec<&LiveNs> {
                holders[h]
                    .iter()
                    .copied()
                    .filter(|ns| !host_ids(kind.map(ns)).intersection(&common).is_empty())
                    .collect()
            };
            let (ua, ub) = (using(&ha), using(&hb));
            let involved: Vec<&LiveNs> = ua.iter().chain(ub.iter()).copied().collect();
            findings.push(Finding {
                severity: Severity::High,
                kind: FindingKind::SharedIds,
                message: format!(
                    "{} are mapped by {} and by {}",
                    ids_text(kind, &common),
                    holder_text(ha, &ua, files),
                    holder_text(hb, &ub, files)
                ),
                namespaces: involved.iter().map(|n| n.id.ino).collect(),
                allocations: [ha, hb]
                    .iter()
                    .filter_map(|h| match h {
                        Holder::Allocation(id) => Some(*id),
                        Holder::Owner(_) => None,
                    })
                    .collect(),
            });
        }
    }
}

/// Every pair of sets that share ids, with what they share: a sweep over all ranges sorted by
/// start, so disjoint sets (the usual case) cost a sort, not a comparison per pair.
fn overlapping_pairs(sets: &[IdRangeSet]) -> Vec<(usize, usize, IdRangeSet)> {
    let mut all: Vec<(IdRange, usize)> = sets
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.ranges().iter().map(move |r| (*r, i)))
        .collect();
    all.sort_by_key(|(r, i)| (r.start, *i));
    let mut active: Vec<(IdRange, usize)> = Vec::new();
    let mut pairs: BTreeMap<(usize, usize), IdRangeSet> = BTreeMap::new();
    for (r, i) in all {
        active.retain(|(a, _)| a.end >= r.start);
        for (a, j) in &active {
            if *j == i {
                continue;
            }
            if let Some(common) = a.intersect(&r) {
                pairs
                    .entry(((*j).min(i), (*j).max(i)))
                    .or_default()
                    .insert(common);
            }
        }
        active.push((r, i));
    }
    pairs.into_iter().map(|((a, b), s)| (a, b, s)).collect()
}

/// subuid/subgid entries overlapping each other (different owners) or host ids.
fn subid_checks(files: &HostIdFiles, findings: &mut Vec<Finding>) {
    for (kind, file, entries) in [
        (Ids::Uid, "/etc/subuid", &files.subuid),
        (Ids::Gid, "/etc/subgid", &files.subgid),
    ] {
        let sets: Vec<IdRangeSet> = entries
            .iter()
            .map(|e| IdRangeSet::from_ranges([e.range()]))
            .collect();
        for (a, b, common) in overlapping_pairs(&sets) {
            let (ea, eb) = (&entries[a], &entries[b]);
            if ea.owner == eb.owner {
                continue;
            }
            findings.push(Finding {
                severity: Severity::Medium,
                kind: FindingKind::SubidOverlap,
                message: format!(
                    "{file} line {} ({ea}) and line {} ({eb}) share {}",
                    ea.line,
                    eb.line,
                    ids_text(kind, &common)
                ),
                namespaces: vec![],
                allocations: vec![],
            });
        }
        for e in entries.iter() {
            let hits: Vec<String> = match kind {
                Ids::Uid => files
                    .passwd
                    .iter()
                    .filter(|p| e.range().contains(p.uid))
                    .map(|p| format!("user {} ({})", p.uid, p.name))
                    .collect(),
                Ids::Gid => files
                    .groups
                    .iter()
                    .filter(|g| e.range().contains(g.gid))
                    .map(|g| format!("group {} ({})", g.gid, g.name))
                    .collect(),
            };
            if hits.is_empty() {
                continue;
            }
            findings.push(Finding {
                severity: Severity::Medium,
                kind: FindingKind::SubidCoversHostId,
                message: format!(
                    "{file} line {} ({e}) covers host {}",
                    e.line,
                    hits.join(", ")
                ),
                namespaces: vec![],
                allocations: vec![],
            });
        }
    }
}

/// Namespace leases whose namespace nothing visible holds.
fn stale_leases(snap: &HostSnapshot, allocations: &[AllocationInfo], findings: &mut Vec<Finding>) {
    let live: BTreeSet<(u64, u64)> = snap
        .namespaces
        .iter()
        .map(|n| (n.id.dev, n.id.ino))
        .chain(snap.own.map(|o| (o.dev, o.ino)))
        .collect();
    let blind = snap.refs.idmapped_mounts + snap.refs.unreadable.len();
    for a in allocations {
        let Some(u) = a.lease.user_namespace.as_ref() else {
            continue;
        };
        if live.contains(&(u.dev, u.ino))
            || snap.refs.fds.contains(&u.ino)
            || snap.refs.bind_mounts.contains(&u.ino)
        {
            continue;
        }
        let ns = NsId {
            dev: u.dev,
            ino: u.ino,
        };
        let (severity, message) = if blind == 0 {
            (
                Severity::Low,
                format!(
                    "allocation #{} is leased to {ns}, which no process, nsfs fd or bind mount holds",
                    a.id
                ),
            )
        } else {
            (
                Severity::Info,
                format!(
                    "allocation #{} is leased to {ns}, which no visible process, nsfs fd or bind \
                     mount holds ({} idmapped mounts and {} unreadable processes could)",
                    a.id,
                    snap.refs.idmapped_mounts,
                    snap.refs.unreadable.len()
                ),
            )
        };
        findings.push(Finding {
            severity,
            kind: FindingKind::StaleLease,
            message,
            namespaces: vec![u.ino],
            allocations: vec![a.id],
        });
    }
}

fn later_overlaps(allocations: &[AllocationInfo], findings: &mut Vec<Finding>) {
    for a in allocations.iter().filter(|a| !a.conflicts.is_empty()) {
        findings.push(Finding {
            severity: Severity::Medium,
            kind: FindingKind::LaterOverlap,
            message: format!(
                "allocation #{} ({} {}-{}) overlaps what was added after it: {}",
                a.id,
                Ids::Uid.word(true),
                a.uid.start,
                a.uid.end,
                a.conflicts.join("; ")
            ),
            namespaces: vec![],
            allocations: vec![a.id],
        });
    }
}

fn unseen(snap: &HostSnapshot) -> Unseen {
    let seen: BTreeSet<u64> = snap
        .namespaces
        .iter()
        .map(|n| n.id.ino)
        .chain(snap.own.map(|o| o.ino))
        .collect();
    Unseen {
        fd_held: snap
            .refs
            .fds
            .iter()
            .filter(|i| !seen.contains(i))
            .copied()
            .collect(),
        bind_mounted: snap
            .refs
            .bind_mounts
            .iter()
            .filter(|i| !seen.contains(i))
            .copied()
            .collect(),
        idmapped_mounts: snap.refs.idmapped_mounts,
        unreadable_processes: snap.refs.unreadable.len(),
        vanished: snap.vanished,
    }
}
