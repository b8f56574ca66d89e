//! The in-memory allocator: records, leases, requests, and the pure allocation logic.

use std::collections::{BTreeMap, HashMap};

use credns_idmap::{IdMap, IdRange, IdRangeSet};
use serde::{Deserialize, Serialize};

use crate::exclude::{Excluded, ExclusionIndex, Exclusions, Reserved, Source};
use crate::index::FreeIndex;
use crate::policy::{Policy, Window};
use crate::{Error, QuotaLimit, SizeProblem};

/// An allocation's number: assigned in increasing order, never reused by one database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AllocId(pub u64);

impl std::fmt::Display for AllocId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What keeps an allocation alive.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lease {
    /// A name, stable across reboots (a container, a service, a user). Released explicitly.
    Name(String),
    /// A user namespace; [`reap`](crate::Registry::reap) releases the allocation once the
    /// namespace is gone.
    ///
    /// `dev` and `ino` are the nsfs device and inode (`stat` of `/proc/PID/ns/user` or of a
    /// namespace fd). nsfs inode numbers are recycled, within a boot and certainly across
    /// reboots, so `created_ns` tells two namespaces with the same inode apart. We choose: the
    /// start time, in nanoseconds since the Unix epoch, of the process that created the
    /// namespace (boot time `btime` from `/proc/stat` plus field 22 `starttime` of
    /// `/proc/PID/stat`, converted from clock ticks), read by the registering daemon through a
    /// pidfd it holds for that process, so the pid cannot be recycled under it. Why this:
    /// * it exists on every kernel (the kernel's 64-bit namespace id, `NS_GET_ID`, exists only
    ///   on very recent ones), and it needs no clock of the registry's own;
    /// * a namespace that reuses an inode was created later, by a later-started process, so the
    ///   stamps differ; being relative to the epoch rather than to boot, it also differs across
    ///   reboots, where inode numbers repeat;
    /// * a starttime only has clock-tick resolution (usually 10 ms): two namespaces created by
    ///   processes started in the same tick that also reuse the same inode would collide; this is
    ///   the residual risk, and the reason [`observe_live`](crate::Allocator::observe_live)
    ///   still protects every id a live map uses whatever the leases say.
    ///
    /// A scan that cannot recompute the stamp (the creator has exited) passes `None` in
    /// [`LiveUserNs`]: such a namespace keeps every lease with its `dev` and `ino` alive.
    ///
    /// Where the kernel gives namespace ids, the allocation records one
    /// ([`Allocation::ns_id`]) and it decides; the stamp then only has to be no earlier than
    /// the namespace's creation, and the daemon takes the time the lease is made.
    UserNs {
        /// Device of the nsfs inode.
        dev: u64,
        /// nsfs inode number.
        ino: u64,
        /// Creation stamp; see above.
        created_ns: u64,
    },
}

impl Lease {
    /// A name lease.
    pub fn name(name: impl Into<String>) -> Self {
        Lease::Name(name.into())
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        let Lease::Name(name) = self else {
            return Ok(());
        };
        let reason = if name.is_empty() {
            "empty"
        } else if name.len() > MAX_NAME {
            "longer than 255 bytes"
        } else {
            match unprintable(name) {
                Some(r) => r,
                None => return Ok(()),
            }
        };
        Err(Error::InvalidLease {
            name: name.clone(),
            reason,
        })
    }
}

/// Longest lease name, in bytes.
pub const MAX_NAME: usize = 255;
/// Longest label, in bytes.
pub const MAX_LABEL: usize = 1024;

/// Characters that reorder the text around them when displayed (Unicode bidirectional
/// formatting characters): refused in names and labels, like control characters, so what a
/// terminal shows of them is what they hold.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Why `s` is not printable (the rule of names and labels), if it is not.
fn unprintable(s: &str) -> Option<&'static str> {
    if s.chars().any(char::is_control) {
        Some("has control characters")
    } else if s.chars().any(is_bidi_control) {
        Some("has bidirectional-text controls")
    } else {
        None
    }
}

/// A label's rule: at most [`MAX_LABEL`] bytes, printable (no control or bidi characters).
pub(crate) fn validate_label(label: &Option<String>) -> Result<(), Error> {
    let Some(l) = label else { return Ok(()) };
    let reason = if l.len() > MAX_LABEL {
        "longer than 1024 bytes"
    } else {
        match unprintable(l) {
            Some(r) => r,
            None => return Ok(()),
        }
    };
    Err(Error::InvalidLabel {
        label: l.chars().take(64).collect(),
        reason,
    })
}

impl AllocRequest {
    fn validate_label(&self) -> Result<(), Error> {
        validate_label(&self.label)
    }
}

impl std::fmt::Display for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lease::Name(n) => write!(f, "name {n:?}"),
            Lease::UserNs {
                dev,
                ino,
                created_ns,
            } => write!(f, "user namespace {dev}:{ino} created {created_ns}"),
        }
    }
}

/// A uid range and a gid range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ranges {
    /// Host uids.
    pub uid: IdRange,
    /// Host gids.
    pub gid: IdRange,
}

/// How an allocation came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Chosen by this allocator.
    Allocated,
    /// Chosen by someone else and recorded with [`register`](Allocator::register).
    Registered,
    /// Chosen ahead of time and held for an allocation to come ([`Registry::top_up_reserve`]):
    /// durable before any request needs it, so handing it out needs no fsync of its own.
    /// Not listed; `who` names it as reserved.
    ///
    /// [`Registry::top_up_reserve`]: crate::Registry::top_up_reserve
    Reserved,
}

/// The lease name of a reservation: a control character starts it, so no request can name it.
pub(crate) fn reservation_name(n: u64) -> String {
    format!("\u{1}reserved:{n}")
}

/// One allocation: the record the store keeps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// Its number.
    pub id: AllocId,
    /// Host uids of the main range (namespace ids from 0).
    pub uid: IdRange,
    /// Host gids of the main range; equal to `uid` for every allocation made here.
    pub gid: IdRange,
    /// The optional extra range from the high window (namespace ids at the top).
    pub high: Option<Ranges>,
    /// What keeps it alive.
    pub lease: Lease,
    /// The uid that asked for it: it sees, shows and releases it.
    pub owner: u32,
    /// The uid its cost is charged to when that is not the owner: the owner's principal, for
    /// an owner whose uid lies inside another allocation (a container's user is charged to the
    /// container's owner). Quotas apply per principal; root has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<u32>,
    /// For a user-namespace lease, the kernel's 64-bit id of the namespace (`NS_GET_ID`,
    /// Linux 6.18+), which unlike the nsfs inode is never reused: where both sides know it,
    /// it alone says whether a live namespace is the leased one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_id: Option<u64>,
    /// When it was made, in seconds since the Unix epoch.
    pub created: u64,
    /// The size the request named, if it named one.
    pub requested_size: Option<u64>,
    /// A free-form label.
    pub label: Option<String>,
    /// Allocated here or registered.
    pub origin: Origin,
    /// Delegated to its owner as subordinate ids (`credns delegate`): what `/etc/subuid` and
    /// `/etc/subgid` would list for the owner, answered to libsubid's callers (newuidmap,
    /// getsubids) by the credns provider. Otherwise an ordinary allocation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delegated: bool,
    /// Where its containers' `request_key` upcalls go, in order (see [`crate::routes`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_routes: Vec<crate::routes::KeyRoute>,
}

/// An allocation's footprint without a heap allocation: at most four ranges, merged.
struct Spans {
    r: [IdRange; 4],
    n: usize,
}

impl Spans {
    fn of(a: &Allocation) -> Self {
        let mut r = [a.uid; 4];
        let mut k = 1;
        for x in [Some(a.gid), a.high.map(|h| h.uid), a.high.map(|h| h.gid)]
            .into_iter()
            .flatten()
        {
            r[k] = x;
            k += 1;
        }
        r[..k].sort_unstable();
        let mut n = 0;
        for i in 0..k {
            if n > 0 && r[i].start as u64 <= r[n - 1].end as u64 + 1 {
                r[n - 1].end = r[n - 1].end.max(r[i].end);
            } else {
                r[n] = r[i];
                n += 1;
            }
        }
        Spans { r, n }
    }

    fn as_slice(&self) -> &[IdRange] {
        &self.r[..self.n]
    }
}

impl Allocation {
    /// Every host id it holds as uid or gid.
    pub fn footprint(&self) -> IdRangeSet {
        IdRangeSet::from_ranges(Spans::of(self).as_slice().iter().copied())
    }

    /// The uid charged for it: its principal, or its owner.
    pub fn charged_to(&self) -> u32 {
        self.principal.unwrap_or(self.owner)
    }

    /// This reservation bound to `req`'s lease, owner and principal at `now` (same id and
    /// ranges).
    pub(crate) fn bound_to(&self, req: &AllocRequest, now: u64) -> Allocation {
        Allocation {
            lease: req.lease.clone(),
            owner: req.owner,
            principal: req.principal.filter(|p| *p != req.owner),
            ns_id: req.ns_id,
            created: now,
            requested_size: req.size,
            label: req.label.clone(),
            origin: Origin::Allocated,
            delegated: req.delegated,
            ..self.clone()
        }
    }

    /// Ids it holds: main plus high, uid side (its quota cost is [`Allocator::cost`]).
    pub fn ids(&self) -> u64 {
        self.uid.len() + self.high.map_or(0, |h| h.uid.len())
    }

    /// The uid map this allocation is meant for: namespace 0.. onto the main range, and the
    /// namespace's top ids (ending at 4294967294) onto the high range.
    pub fn uid_map(&self) -> Result<IdMap, Error> {
        allocation_map(self.uid, self.high.map(|h| h.uid))
    }

    /// The gid map, as [`uid_map`](Self::uid_map).
    pub fn gid_map(&self) -> Result<IdMap, Error> {
        allocation_map(self.gid, self.high.map(|h| h.gid))
    }

    fn check(&self) -> Result<(), String> {
        let mut rs = vec![self.uid, self.gid];
        rs.extend(self.high.iter().flat_map(|h| [h.uid, h.gid]));
        for r in rs {
            if r.start > r.end || r.end == u32::MAX {
                return Err(format!(
                    "allocation {} has an invalid range {}-{}",
                    self.id, r.start, r.end
                ));
            }
        }
        Ok(())
    }
}

/// The map an allocation of `main` (and optionally `high`) ranges is meant for: namespace ids
/// from 0 onto the main range, and the namespace's top ids (ending at 4294967294) onto the high
/// range (seed 004's dynamic ids).
pub fn allocation_map(main: IdRange, high: Option<IdRange>) -> Result<IdMap, Error> {
    Ok(IdMap::from_base_and_top(main, high)?)
}

/// Whether and how big a high-window range to add.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HighRequest {
    /// No high range.
    #[default]
    None,
    /// `policy.high.default_size` ids.
    Default,
    /// This many ids.
    Size(u64),
}

/// A request for a new range chosen by policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocRequest {
    /// The lease; asking again with the same lease (and owner) returns the same allocation.
    pub lease: Lease,
    /// The requesting uid.
    pub owner: u32,
    /// Who pays, when not the owner (see [`Allocation::principal`]).
    pub principal: Option<u32>,
    /// The leased namespace's kernel id (see [`Allocation::ns_id`]).
    pub ns_id: Option<u64>,
    /// Ids wanted; `None` is `policy.pool.default_size`.
    pub size: Option<u64>,
    /// An extra high-window range.
    pub high: HighRequest,
    /// A free-form label to record.
    pub label: Option<String>,
    /// Delegate it to the owner as subordinate ids (see [`Allocation::delegated`]).
    pub delegated: bool,
}

impl AllocRequest {
    /// A default-sized request.
    pub fn new(lease: Lease, owner: u32) -> Self {
        Self {
            lease,
            owner,
            principal: None,
            ns_id: None,
            size: None,
            high: HighRequest::None,
            label: None,
            delegated: false,
        }
    }

    /// Ask for `size` ids.
    pub fn size(mut self, size: u64) -> Self {
        self.size = Some(size);
        self
    }

    /// Ask for a high range too.
    pub fn high(mut self, high: HighRequest) -> Self {
        self.high = high;
        self
    }

    /// Record a label.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }
}

/// A request to record ranges someone else chose.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// The lease.
    pub lease: Lease,
    /// The owner.
    pub owner: u32,
    /// Who pays, when not the owner (see [`Allocation::principal`]).
    pub principal: Option<u32>,
    /// The leased namespace's kernel id (see [`Allocation::ns_id`]).
    pub ns_id: Option<u64>,
    /// Host uids.
    pub uid: IdRange,
    /// Host gids.
    pub gid: IdRange,
    /// Extra ranges.
    pub high: Option<Ranges>,
    /// A free-form label.
    pub label: Option<String>,
}

impl RegisterRequest {
    /// Record `range` as both uids and gids.
    pub fn new(lease: Lease, owner: u32, range: IdRange) -> Self {
        Self {
            lease,
            owner,
            principal: None,
            ns_id: None,
            uid: range,
            gid: range,
            high: None,
            label: None,
        }
    }
}

/// Names an allocation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Selector {
    /// By number.
    Id(AllocId),
    /// By name lease.
    Name(String),
    /// By user-namespace lease.
    UserNs {
        /// nsfs device.
        dev: u64,
        /// nsfs inode.
        ino: u64,
        /// Creation stamp.
        created_ns: u64,
    },
}

impl From<&Lease> for Selector {
    fn from(l: &Lease) -> Self {
        match l {
            Lease::Name(n) => Selector::Name(n.clone()),
            Lease::UserNs {
                dev,
                ino,
                created_ns,
            } => Selector::UserNs {
                dev: *dev,
                ino: *ino,
                created_ns: *created_ns,
            },
        }
    }
}

impl From<AllocId> for Selector {
    fn from(id: AllocId) -> Self {
        Selector::Id(id)
    }
}

/// A live user namespace as a scan sees it, for [`reap`](crate::Registry::reap).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LiveUserNs {
    /// nsfs device.
    pub dev: u64,
    /// nsfs inode.
    pub ino: u64,
    /// Creation stamp as defined at [`Lease::UserNs`], or `None` if the scan could not compute
    /// it (then every lease with this `dev`/`ino` counts as alive).
    pub created_ns: Option<u64>,
    /// The namespace's kernel id, where the kernel tells it: a lease that recorded one is the
    /// live namespace's exactly when the ids are equal, whatever the stamps say.
    pub ns_id: Option<u64>,
}

/// Which part of an allocation holds an id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// The main range.
    Main,
    /// The high range.
    High,
}

/// Who holds a host id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    /// An allocation.
    Allocation {
        /// Its number.
        id: AllocId,
        /// Its lease.
        lease: Lease,
        /// Its owner.
        owner: u32,
        /// Which of its ranges.
        part: Part,
        /// Whether the id is one of its uids.
        as_uid: bool,
        /// Whether the id is one of its gids.
        as_gid: bool,
    },
    /// An exclusion.
    Excluded(Source),
}

/// What an owner holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Live ranges (allocations).
    pub ranges: u32,
    /// Ids, as counted by [`Allocation::ids`].
    pub ids: u64,
}

pub(crate) enum Plan {
    Existing(Allocation),
    New(Allocation),
}

/// The pure allocator: policy, exclusions, allocations and the free index, all in memory.
///
/// Invariants: allocations' footprints ([`Allocation::footprint`]) are pairwise disjoint; each
/// window's free index holds exactly `window − excluded − footprints`, as maximal extents.
#[derive(Debug, Clone)]
pub struct Allocator {
    policy: Policy,
    pool: IdRangeSet,
    window: IdRangeSet,
    host: ExclusionIndex,
    host_set: IdRangeSet,
    live: IdRangeSet,
    excluded: IdRangeSet,
    main: FreeIndex,
    high: FreeIndex,
    allocs: BTreeMap<AllocId, Allocation>,
    spans: BTreeMap<u32, (u32, AllocId)>,
    names: HashMap<String, AllocId>,
    userns: HashMap<(u64, u64, u64), AllocId>,
    usage: HashMap<u32, Usage>,
    pub(crate) next_id: u64,
}

/// The part of sorted, disjoint `set` that overlaps `r`.
fn overlapping(set: &IdRangeSet, r: IdRange) -> &[IdRange] {
    let rs = set.ranges();
    let lo = rs.partition_point(|x| x.end < r.start);
    let hi = rs.partition_point(|x| x.start <= r.end).max(lo);
    &rs[lo..hi]
}

/// `r ∩ within − minus`, ascending, in O(log |within| + log |minus| + pieces).
fn pieces(r: IdRange, within: &IdRangeSet, minus: &IdRangeSet) -> Vec<IdRange> {
    let mut out = Vec::new();
    for w in overlapping(within, r) {
        let Some(p) = w.intersect(&r) else { continue };
        let mut cur = p.start as u64;
        for m in overlapping(minus, p) {
            if m.start as u64 > cur {
                out.push(IdRange {
                    start: cur as u32,
                    end: m.start - 1,
                });
            }
            cur = m.end as u64 + 1;
        }
        if cur <= p.end as u64 {
            out.push(IdRange {
                start: cur as u32,
                end: p.end,
            });
        }
    }
    out
}

impl Allocator {
    /// An empty allocator. Reserved ids are excluded from the start; add host exclusions with
    /// [`set_host_exclusions`](Self::set_host_exclusions) and live maps with
    /// [`observe_live`](Self::observe_live) before allocating.
    pub fn new(policy: Policy) -> Result<Self, Error> {
        policy.validate()?;
        let mut a = Self {
            pool: policy.pool_set(),
            window: policy.high_set(),
            main: FreeIndex::new(policy.pool.align),
            high: FreeIndex::new(policy.high.align),
            policy,
            host: ExclusionIndex::default(),
            host_set: IdRangeSet::new(),
            live: IdRangeSet::new(),
            excluded: IdRangeSet::new(),
            allocs: BTreeMap::new(),
            spans: BTreeMap::new(),
            names: HashMap::new(),
            userns: HashMap::new(),
            usage: HashMap::new(),
            next_id: 1,
        };
        a.rebuild();
        Ok(a)
    }

    /// An allocator holding `allocs` (as read from a store). Refuses records that are malformed,
    /// share a lease or overlap, and ids at or above `next_id`.
    pub(crate) fn load(
        policy: Policy,
        allocs: Vec<Allocation>,
        next_id: u64,
    ) -> Result<Self, Error> {
        let mut a = Self::new(policy)?;
        let mut spans: Vec<(IdRange, AllocId)> = Vec::new();
        for al in allocs {
            al.check().map_err(Error::Corrupt)?;
            if al.id.0 == 0 || al.id.0 >= next_id {
                return Err(Error::Corrupt(format!(
                    "allocation {} is not below next id {next_id}",
                    al.id
                )));
            }
            if let Some(by) = a.holder_of(&al.lease) {
                return Err(Error::Corrupt(format!(
                    "{} held by both {by} and {}",
                    al.lease, al.id
                )));
            }
            spans.extend(Spans::of(&al).as_slice().iter().map(|r| (*r, al.id)));
            a.index_record(&al);
            if a.allocs.insert(al.id, al).is_some() {
                return Err(Error::Corrupt("duplicate allocation id".into()));
            }
        }
        spans.sort_unstable_by_key(|(r, _)| r.start);
        for w in spans.windows(2) {
            if w[0].0.end >= w[1].0.start {
                return Err(Error::Corrupt(format!(
                    "allocations {} and {} overlap",
                    w[0].1, w[1].1
                )));
            }
        }
        a.spans = spans
            .into_iter()
            .map(|(r, id)| (r.start, (r.end, id)))
            .collect();
        a.next_id = next_id;
        a.rebuild();
        Ok(a)
    }

    /// Recompute the excluded set and both free indexes: O((n + m) log(n + m)) for n
    /// allocations and m excluded ranges. Runs when exclusions change, not per allocation.
    fn rebuild(&mut self) {
        self.excluded = Reserved::set().union(&self.host_set).union(&self.live);
        let used = IdRangeSet::from_ranges(
            self.spans
                .iter()
                .map(|(&s, &(e, _))| IdRange { start: s, end: e }),
        );
        let taken = self.excluded.union(&used);
        self.main = FreeIndex::from_sorted(
            self.policy.pool.align,
            self.pool.difference(&taken).ranges(),
        );
        self.high = FreeIndex::from_sorted(
            self.policy.high.align,
            self.window.difference(&taken).ranges(),
        );
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The same allocations, exclusions and live maps under another policy (a daemon's
    /// reload): the free index and every principal's usage are rebuilt as at open. Allocations
    /// the new pool no longer covers are kept, as at open ([`out_of_pool`](Self::out_of_pool)).
    /// An invalid policy is refused and `self` is unchanged.
    pub fn with_policy(&self, policy: Policy) -> Result<Self, Error> {
        let mut a = Self::load(
            policy,
            self.allocs.values().cloned().collect(),
            self.next_id,
        )?;
        a.host = self.host.clone();
        a.host_set = self.host_set.clone();
        a.live = self.live.clone();
        a.rebuild();
        Ok(a)
    }

    /// Replace the host exclusions (passwd, group, subuid/subgid, other tools). Allocations
    /// already made are kept even if they now overlap an exclusion; `who` reports both.
    pub fn set_host_exclusions(&mut self, exclusions: Exclusions) {
        let entries: Vec<Excluded> = exclusions.entries().to_vec();
        self.host_set = exclusions.set();
        self.host = ExclusionIndex::new(entries);
        self.rebuild();
    }

    /// Replace the set of kernel ids that live user namespaces map (uid and gid maps' lower
    /// ids, as the caller scanned them). Call at start and whenever a fresh scan is available;
    /// these ids are never allocated, whoever holds them.
    pub fn observe_live(&mut self, live: IdRangeSet) {
        self.live = live;
        self.rebuild();
    }

    /// Every id that is never allocated now: reserved, host exclusions and live maps.
    pub fn excluded(&self) -> &IdRangeSet {
        &self.excluded
    }

    pub(crate) fn holder_of(&self, lease: &Lease) -> Option<AllocId> {
        match lease {
            Lease::Name(n) => self.names.get(n).copied(),
            Lease::UserNs {
                dev,
                ino,
                created_ns,
            } => self.userns.get(&(*dev, *ino, *created_ns)).copied(),
        }
    }

    fn index_record(&mut self, a: &Allocation) {
        match &a.lease {
            Lease::Name(n) => {
                self.names.insert(n.clone(), a.id);
            }
            Lease::UserNs {
                dev,
                ino,
                created_ns,
            } => {
                self.userns.insert((*dev, *ino, *created_ns), a.id);
            }
        }
        let cost = self.cost(a);
        let u = self.usage.entry(a.charged_to()).or_default();
        u.ranges += 1;
        u.ids += cost;
    }

    fn check_size(size: u64, window: Window, capacity: u64) -> Result<(), Error> {
        let problem = if size == 0 {
            SizeProblem::Zero
        } else if size > capacity {
            SizeProblem::BeyondWindow { capacity }
        } else {
            return Ok(());
        };
        Err(Error::InvalidSize {
            requested: size,
            window,
            problem,
        })
    }

    /// What an allocation costs its principal: the ids it takes from the pool, each range
    /// rounded up to its window's alignment (a size-1 range still takes an aligned block, as
    /// no other range can start in the rest of it); a registered range costs its length.
    pub fn cost(&self, a: &Allocation) -> u64 {
        match a.origin {
            Origin::Registered => a.ids(),
            Origin::Allocated | Origin::Reserved => {
                self.rounded(a.uid.len(), self.policy.pool.align)
                    + a.high
                        .map_or(0, |h| self.rounded(h.uid.len(), self.policy.high.align))
            }
        }
    }

    fn rounded(&self, n: u64, align: u32) -> u64 {
        let a = u64::from(align.max(1));
        n.div_ceil(a) * a
    }

    fn check_quota(&self, owner: u32, ids: u64) -> Result<(), Error> {
        if owner == 0 {
            return Ok(());
        }
        let q = &self.policy.quota;
        let u = self.usage(owner);
        let limit = if u.ranges >= q.max_ranges {
            QuotaLimit::Ranges {
                max: q.max_ranges,
                held: u.ranges,
            }
        } else if u.ids.saturating_add(ids) > q.max_ids {
            QuotaLimit::Ids {
                max: q.max_ids,
                held: u.ids,
                requested: ids,
            }
        } else {
            return Ok(());
        };
        Err(Error::QuotaExceeded { owner, limit })
    }

    /// The allocation already held by `lease`, if the same owner asks; an error if another does.
    pub(crate) fn existing(&self, lease: &Lease, owner: u32) -> Result<Option<&Allocation>, Error> {
        let Some(id) = self.holder_of(lease) else {
            return Ok(None);
        };
        let a = &self.allocs[&id];
        if a.owner == owner {
            Ok(Some(a))
        } else {
            Err(Error::LeaseTaken {
                lease: lease.clone(),
                by: id,
                owner: a.owner,
            })
        }
    }

    pub(crate) fn plan_allocate(&self, req: &AllocRequest, now: u64) -> Result<Plan, Error> {
        if let Some(a) = self.existing(&req.lease, req.owner)? {
            return Ok(Plan::Existing(a.clone()));
        }
        req.lease.validate()?;
        self.plan_allocate_unchecked(req, now)
    }

    /// [`plan_allocate`](Self::plan_allocate) without the lease's checks (for reservations,
    /// whose names no request can give).
    pub(crate) fn plan_allocate_unchecked(
        &self,
        req: &AllocRequest,
        now: u64,
    ) -> Result<Plan, Error> {
        let size = req.size.unwrap_or(self.policy.pool.default_size);
        Self::check_size(size, Window::Main, self.pool.len())?;
        let high_size = match req.high {
            HighRequest::None => None,
            HighRequest::Default => Some(self.policy.high.default_size),
            HighRequest::Size(n) => Some(n),
        };
        if let Some(n) = high_size {
            if !self.policy.high.enabled {
                return Err(Error::HighWindowDisabled);
            }
            Self::check_size(n, Window::High, self.window.len())?;
        }
        req.validate_label()?;
        let cost = self.rounded(size, self.policy.pool.align)
            + high_size.map_or(0, |n| self.rounded(n, self.policy.high.align));
        self.check_quota(req.principal.unwrap_or(req.owner), cost)?;
        let exhausted = |window, requested, align, ix: &FreeIndex| Error::PoolExhausted {
            window,
            requested,
            align,
            largest_free: ix.largest(),
        };
        let start = self
            .main
            .first_fit(size)
            .ok_or_else(|| exhausted(Window::Main, size, self.policy.pool.align, &self.main))?;
        let uid = IdRange::from_start_len(start, size).expect("first fit stays in the window");
        let high = match high_size {
            None => None,
            Some(n) => {
                let s = self.high.first_fit(n).ok_or_else(|| {
                    exhausted(Window::High, n, self.policy.high.align, &self.high)
                })?;
                let r = IdRange::from_start_len(s, n).expect("first fit stays in the window");
                Some(Ranges { uid: r, gid: r })
            }
        };
        Ok(Plan::New(Allocation {
            id: AllocId(self.next_id),
            uid,
            gid: uid,
            high,
            lease: req.lease.clone(),
            owner: req.owner,
            principal: req.principal.filter(|p| *p != req.owner),
            ns_id: req.ns_id,
            created: now,
            requested_size: req.size,
            label: req.label.clone(),
            origin: Origin::Allocated,
            delegated: req.delegated,
            key_routes: Vec::new(),
        }))
    }

    pub(crate) fn plan_register(
        &self,
        req: &RegisterRequest,
        now: u64,
    ) -> Result<Allocation, Error> {
        if let Some(by) = self.holder_of(&req.lease) {
            let owner = self.allocs[&by].owner;
            return Err(Error::LeaseTaken {
                lease: req.lease.clone(),
                by,
                owner,
            });
        }
        req.lease.validate()?;
        let a = Allocation {
            id: AllocId(self.next_id),
            uid: req.uid,
            gid: req.gid,
            high: req.high,
            lease: req.lease.clone(),
            owner: req.owner,
            principal: req.principal.filter(|p| *p != req.owner),
            ns_id: req.ns_id,
            created: now,
            requested_size: None,
            label: req.label.clone(),
            origin: Origin::Registered,
            delegated: false,
            key_routes: Vec::new(),
        };
        let mut rs = vec![a.uid, a.gid];
        rs.extend(a.high.iter().flat_map(|h| [h.uid, h.gid]));
        for r in rs {
            let reason = if r.start > r.end {
                "it ends before it starts"
            } else if r.end == u32::MAX {
                "4294967295 is (uid_t)-1 and can never be mapped"
            } else {
                continue;
            };
            return Err(Error::InvalidRange { range: r, reason });
        }
        validate_label(&req.label)?;
        self.check_quota(req.principal.unwrap_or(req.owner), self.cost(&a))?;
        for r in Spans::of(&a).as_slice() {
            if let Some((&s, &(e, with))) = self.spans.range(..=r.end).next_back() {
                if e >= r.start {
                    let at = IdRange { start: s, end: e }.intersect(r).expect("overlap");
                    let lease = self.allocs[&with].lease.clone();
                    return Err(Error::Overlap {
                        range: *r,
                        with,
                        lease,
                        at,
                    });
                }
            }
        }
        Ok(a)
    }

    /// Add a planned (or loaded) allocation. O(log n) per footprint range.
    pub(crate) fn insert(&mut self, a: Allocation) {
        for r in Spans::of(&a).as_slice() {
            self.main.take(*r);
            self.high.take(*r);
            self.spans.insert(r.start, (r.end, a.id));
        }
        self.index_record(&a);
        self.next_id = self.next_id.max(a.id.0 + 1);
        self.allocs.insert(a.id, a);
    }

    /// Drop an allocation and give its ids back to the windows (less any exclusion).
    pub(crate) fn remove(&mut self, id: AllocId) -> Option<Allocation> {
        let a = self.allocs.remove(&id)?;
        for r in Spans::of(&a).as_slice() {
            self.spans.remove(&r.start);
            for p in pieces(*r, &self.pool, &self.excluded) {
                self.main.free(p);
            }
            for p in pieces(*r, &self.window, &self.excluded) {
                self.high.free(p);
            }
        }
        match &a.lease {
            Lease::Name(n) => {
                self.names.remove(n);
            }
            Lease::UserNs {
                dev,
                ino,
                created_ns,
            } => {
                self.userns.remove(&(*dev, *ino, *created_ns));
            }
        }
        let cost = self.cost(&a);
        if let Some(u) = self.usage.get_mut(&a.charged_to()) {
            u.ranges -= 1;
            u.ids -= cost;
            if u.ranges == 0 {
                self.usage.remove(&a.charged_to());
            }
        }
        Some(a)
    }

    /// Allocate by policy (in memory only). Asking again with a held lease returns its
    /// allocation unchanged (whatever size is asked); another owner's lease is an error.
    /// `now` is recorded as the creation time.
    pub fn allocate(&mut self, req: &AllocRequest, now: u64) -> Result<Allocation, Error> {
        match self.plan_allocate(req, now)? {
            Plan::Existing(a) => Ok(a),
            Plan::New(a) => {
                self.insert(a.clone());
                Ok(a)
            }
        }
    }

    /// Record ranges someone else chose (in memory only). They may lie outside the windows and
    /// over exclusions (e.g. a live namespace being adopted) but not over another allocation.
    pub fn register(&mut self, req: &RegisterRequest, now: u64) -> Result<Allocation, Error> {
        let a = self.plan_register(req, now)?;
        self.insert(a.clone());
        Ok(a)
    }

    /// Release an allocation (in memory only).
    pub fn release(&mut self, sel: &Selector) -> Result<Allocation, Error> {
        let id = self.resolve(sel)?;
        Ok(self.remove(id).expect("resolved"))
    }

    /// The allocation a selector names.
    pub fn resolve(&self, sel: &Selector) -> Result<AllocId, Error> {
        match sel {
            Selector::Id(id) => self
                .allocs
                .contains_key(id)
                .then_some(*id)
                .ok_or(Error::UnknownId(*id)),
            Selector::Name(n) => self
                .names
                .get(n)
                .copied()
                .ok_or_else(|| Error::UnknownName(n.clone())),
            Selector::UserNs {
                dev,
                ino,
                created_ns,
            } => self
                .userns
                .get(&(*dev, *ino, *created_ns))
                .copied()
                .ok_or(Error::UnknownUserNs {
                    dev: *dev,
                    ino: *ino,
                    created_ns: *created_ns,
                }),
        }
    }

    /// The allocation a selector names, if any.
    pub fn get(&self, sel: &Selector) -> Option<&Allocation> {
        self.resolve(sel).ok().and_then(|id| self.allocs.get(&id))
    }

    /// Every allocation, by id (reservations not included).
    pub fn list(&self) -> impl Iterator<Item = &Allocation> {
        self.allocs
            .values()
            .filter(|a| a.origin != Origin::Reserved)
    }

    /// The reservations: ranges held for allocations to come.
    pub fn reserved(&self) -> impl Iterator<Item = &Allocation> {
        self.allocs
            .values()
            .filter(|a| a.origin == Origin::Reserved)
    }

    /// Whether any id of `a` is mapped by a live user namespace (as last observed).
    pub fn is_live(&self, a: &Allocation) -> bool {
        Spans::of(a)
            .as_slice()
            .iter()
            .any(|r| !overlapping(&self.live, *r).is_empty())
    }

    /// What handing out a reservation for `req` would record: the first reservation no live
    /// namespace maps, bound to `req`'s lease, owner and principal (same id and ranges). `None`
    /// when the request is not for a default-sized main range, or no reservation is usable.
    pub(crate) fn plan_reserved(
        &self,
        req: &AllocRequest,
        now: u64,
    ) -> Option<Result<Allocation, Error>> {
        let default = self.policy.pool.default_size;
        if req.high != HighRequest::None || req.size.is_some_and(|s| s != default) {
            return None;
        }
        let r = self
            .reserved()
            .find(|r| r.ids() == default && !self.is_live(r))?;
        let checks = (|| {
            req.lease.validate()?;
            req.validate_label()?;
            self.check_quota(req.principal.unwrap_or(req.owner), self.cost(r))
        })();
        Some(checks.map(|()| r.bound_to(req, now)))
    }

    /// Number of live allocations.
    pub fn len(&self) -> usize {
        self.allocs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.allocs.is_empty()
    }

    /// What an owner holds.
    pub fn usage(&self, owner: u32) -> Usage {
        self.usage.get(&owner).copied().unwrap_or_default()
    }

    /// Everyone holding host id `id`: at most one allocation (first), then every exclusion.
    /// Empty if nobody does.
    pub fn who(&self, id: u32) -> Vec<Holder> {
        let mut out = Vec::new();
        if let Some((_, &(end, aid))) = self.spans.range(..=id).next_back() {
            let a = &self.allocs[&aid];
            if end >= id && a.origin == Origin::Reserved {
                out.push(Holder::Excluded(Source::Other(
                    "reserved for the next allocations".into(),
                )));
            } else if end >= id {
                let (part, uid, gid) = match a.high {
                    Some(h) if h.uid.contains(id) || h.gid.contains(id) => {
                        (Part::High, h.uid, h.gid)
                    }
                    _ => (Part::Main, a.uid, a.gid),
                };
                out.push(Holder::Allocation {
                    id: aid,
                    lease: a.lease.clone(),
                    owner: a.owner,
                    part,
                    as_uid: uid.contains(id),
                    as_gid: gid.contains(id),
                });
            }
        }
        for (r, range) in Reserved::ALL {
            if range.contains(id) {
                out.push(Holder::Excluded(Source::Reserved(r)));
            }
        }
        out.extend(
            self.host
                .holding(id)
                .into_iter()
                .map(|e| Holder::Excluded(e.source.clone())),
        );
        if self.live.contains(id) {
            out.push(Holder::Excluded(Source::LiveUserNs));
        }
        out
    }

    /// The allocation whose ranges hold host id `id` (as a uid or a gid), if any.
    pub fn holding(&self, id: u32) -> Option<&Allocation> {
        let (_, &(end, aid)) = self.spans.range(..=id).next_back()?;
        (end >= id).then(|| &self.allocs[&aid])
    }

    /// The host exclusions (passwd, group, subuid, subgid, ...) that share ids with allocation
    /// `a`: something added to the host after the allocation was made. The allocation is kept;
    /// this says what to look at.
    pub fn conflicts(&self, a: &Allocation) -> Vec<Excluded> {
        let mut out: Vec<Excluded> = Vec::new();
        for r in Spans::of(a).as_slice() {
            for e in self.host.overlapping(*r) {
                let at = e.range.intersect(r).expect("overlapping");
                out.push(Excluded {
                    range: at,
                    source: e.source.clone(),
                });
            }
        }
        out
    }

    /// Whether `id` could be part of a future allocation from a window.
    pub fn is_free(&self, id: u32) -> bool {
        self.main.contains(id) || self.high.contains(id)
    }

    /// The free extents of a window, ascending (diagnostics and tests).
    pub fn free_extents(&self, window: Window) -> Vec<IdRange> {
        match window {
            Window::Main => self.main.extents(),
            Window::High => self.high.extents(),
        }
    }

    /// Free ids in a window.
    pub fn free_ids(&self, window: Window) -> u64 {
        match window {
            Window::Main => self.main.free_ids(),
            Window::High => self.high.free_ids(),
        }
    }

    /// The largest size one allocation from a window could get now (aligned).
    pub fn largest_free(&self, window: Window) -> u64 {
        match window {
            Window::Main => self.main.largest(),
            Window::High => self.high.largest(),
        }
    }

    /// Allocations made here whose ranges are no longer inside the configured windows (the
    /// pool was moved or shrunk). They stay valid and keep their ids; this only reports them.
    pub fn out_of_pool(&self) -> Vec<&Allocation> {
        self.allocs
            .values()
            .filter(|a| a.origin == Origin::Allocated)
            .filter(|a| {
                !self.pool.contains_range(a.uid)
                    || a.high.is_some_and(|h| !self.window.contains_range(h.uid))
            })
            .collect()
    }

    /// User-namespace leases whose namespace is not in `live`, ascending. A live entry with
    /// `created_ns: None` keeps every lease with its `dev` and `ino`.
    pub fn dead_leases(&self, live: &[LiveUserNs]) -> Vec<AllocId> {
        let mut alive: HashMap<(u64, u64), Vec<&LiveUserNs>> = HashMap::new();
        for l in live {
            alive.entry((l.dev, l.ino)).or_default().push(l);
        }
        let is_it = |l: &LiveUserNs, created: u64, ns_id: Option<u64>| match (ns_id, l.ns_id) {
            (Some(a), Some(b)) => a == b,
            _ => l.created_ns.is_none_or(|c| c == created),
        };
        let mut dead: Vec<AllocId> = self
            .userns
            .iter()
            .filter(|((dev, ino, created), id)| {
                let ns_id = self.allocs[*id].ns_id;
                !alive
                    .get(&(*dev, *ino))
                    .is_some_and(|v| v.iter().any(|l| is_it(l, *created, ns_id)))
            })
            .map(|(_, id)| *id)
            .collect();
        dead.sort_unstable();
        dead
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{HighWindow, PoolConfig, Quota};
    use credns_idmap::IdKind;

    fn r(a: u32, b: u32) -> IdRange {
        IdRange { start: a, end: b }
    }

    fn name(n: &str) -> AllocRequest {
        AllocRequest::new(Lease::name(n), 0)
    }

    fn small(start: u32, blocks: u32, align: u32) -> Policy {
        Policy {
            pool: PoolConfig {
                ranges: vec![r(start, start + blocks * 65_536 - 1)],
                default_size: 65_536,
                align,
            },
            ..Policy::default()
        }
    }

    #[test]
    fn default_policy_follows_systemd() {
        let mut a = Allocator::new(Policy::default()).unwrap();
        let x = a.allocate(&name("a"), 7).unwrap();
        assert_eq!(x.uid, r(524_288, 589_823));
        assert_eq!(x.gid, x.uid, "uid and gid ranges are equal");
        assert_eq!(x.created, 7);
        let y = a.allocate(&name("b"), 0).unwrap();
        assert_eq!(y.uid.start, 589_824);
        // The last 64K-aligned base of the window is 1878982656, as systemd says.
        assert_eq!(
            a.free_extents(Window::Main).last().unwrap().end,
            1_879_048_191
        );
        assert_eq!(a.largest_free(Window::Main) % 65_536, 0);
    }

    #[test]
    fn sizes_beyond_65536_and_unaligned_sizes() {
        let mut a = Allocator::new(Policy::default()).unwrap();
        let big = a.allocate(&name("big").size(3 << 20), 0).unwrap();
        assert_eq!(big.uid.len(), 3 << 20);
        assert_eq!(big.requested_size, Some(3 << 20));
        let odd = a.allocate(&name("odd").size(100_000), 0).unwrap();
        assert_eq!(odd.uid.start, 524_288 + (3 << 20));
        let next = a.allocate(&name("next"), 0).unwrap();
        // 100000 is not a multiple of 65536: the next range starts at the next aligned id.
        assert_eq!(next.uid.start, odd.uid.start + 131_072);
        // The 31072-id hole after `odd` stays free for unaligned needs and merges on release.
        a.release(&Selector::Name("odd".into())).unwrap();
        assert!(a
            .free_extents(Window::Main)
            .contains(&r(odd.uid.start, next.uid.start - 1)));
    }

    #[test]
    fn alignment_is_configurable() {
        let mut a = Allocator::new(small(1_000_001, 4, 1)).unwrap();
        assert_eq!(
            a.allocate(&name("a").size(10), 0).unwrap().uid,
            r(1_000_001, 1_000_010)
        );
        let mut b = Allocator::new(small(1_000_001, 4, 1000)).unwrap();
        assert_eq!(
            b.allocate(&name("a").size(10), 0).unwrap().uid.start,
            1_001_000
        );
    }

    #[test]
    fn invalid_sizes_are_refused() {
        let mut a = Allocator::new(small(1 << 20, 4, 65_536)).unwrap();
        let e = a.allocate(&name("z").size(0), 0).unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidSize {
                    requested: 0,
                    problem: SizeProblem::Zero,
                    ..
                }
            ),
            "{e}"
        );
        let e = a.allocate(&name("z").size(4 * 65_536 + 1), 0).unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidSize {
                    problem: SizeProblem::BeyondWindow { capacity: 262_144 },
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn exhaustion_reports_request_and_largest_block() {
        let mut a = Allocator::new(small(1 << 20, 4, 65_536)).unwrap();
        for i in 0..4 {
            a.allocate(&name(&format!("n{i}")), 0).unwrap();
        }
        a.release(&Selector::Name("n1".into())).unwrap();
        let e = a.allocate(&name("x").size(65_537), 0).unwrap_err();
        match e {
            Error::PoolExhausted {
                window: Window::Main,
                requested: 65_537,
                align: 65_536,
                largest_free: 65_536,
            } => {}
            e => panic!("{e}"),
        }
        assert!(
            e_text(&a.allocate(&name("y").size(200_000), 0).unwrap_err())
                .contains("largest free aligned block has 65536")
        );
    }

    fn e_text(e: &Error) -> String {
        e.to_string()
    }

    #[test]
    fn never_reserved_ids() {
        // A pool over the whole low space: 0, 65534 and 65535 are never handed out.
        let p = Policy {
            pool: PoolConfig {
                ranges: vec![r(0, 200_000)],
                default_size: 1,
                align: 1,
            },
            ..Policy::default()
        };
        let mut a = Allocator::new(p).unwrap();
        assert_eq!(a.allocate(&name("a"), 0).unwrap().uid, r(1, 1));
        let b = a.allocate(&name("b").size(65_532), 0).unwrap();
        assert_eq!(b.uid, r(2, 65_533));
        let c = a.allocate(&name("c").size(2), 0).unwrap();
        assert_eq!(c.uid, r(65_536, 65_537), "65534 and 65535 skipped");
        // Foreign range and 4294967295.
        let p = Policy {
            pool: PoolConfig {
                ranges: vec![r(2_147_352_000, u32::MAX)],
                default_size: 65_536,
                align: 65_536,
            },
            ..Policy::default()
        };
        let mut a = Allocator::new(p).unwrap();
        assert_eq!(a.allocate(&name("a"), 0).unwrap().uid.start, 2_147_418_112);
        assert!(!a.is_free(u32::MAX));
        let last = a.free_extents(Window::Main).last().copied().unwrap();
        assert_eq!(last.end, u32::MAX - 1);
    }

    #[test]
    fn passwd_group_and_subid_ids_are_avoided() {
        let mut a = Allocator::new(small(1 << 20, 8, 65_536)).unwrap();
        let users = crate::parse_passwd("passwd", "ldap:x:1048600:1179648::/:/bin/sh").unwrap();
        let groups = crate::parse_group("group", "big:x:1310720:").unwrap();
        let mut ex = Exclusions::new();
        ex.add_passwd(&users).add_group(&groups).add_set(
            &IdRangeSet::from_ranges([r(1_441_792, 1_507_327)]),
            Source::SubId {
                owner: "alice".into(),
                kind: IdKind::Uid,
            },
        );
        a.set_host_exclusions(ex);
        let got: Vec<u32> = (0..4)
            .map(|i| a.allocate(&name(&format!("{i}")), 0).unwrap().uid.start)
            .collect();
        // 1048576 (uid 1048600), 1179648 (primary gid), 1310720 (group), 1441792 (subuid) skipped.
        assert_eq!(got, [1_114_112, 1_245_184, 1_376_256, 1_507_328]);
        assert_eq!(
            a.who(1_048_600),
            vec![Holder::Excluded(Source::User {
                name: "ldap".into(),
                kind: IdKind::Uid
            })]
        );
        assert_eq!(
            a.who(1_179_648),
            vec![Holder::Excluded(Source::User {
                name: "ldap".into(),
                kind: IdKind::Gid
            })]
        );
        assert_eq!(
            a.who(1_310_720),
            vec![Holder::Excluded(Source::Group { name: "big".into() })]
        );
        assert_eq!(
            a.who(1_441_800),
            vec![Holder::Excluded(Source::SubId {
                owner: "alice".into(),
                kind: IdKind::Uid
            })]
        );
    }

    #[test]
    fn live_namespaces_are_avoided_and_observed_on_demand() {
        let mut a = Allocator::new(small(1 << 20, 8, 65_536)).unwrap();
        a.observe_live(IdRangeSet::from_ranges([r(1_048_576, 1_048_576 + 9)]));
        let x = a.allocate(&name("x"), 0).unwrap();
        assert_eq!(x.uid.start, 1_114_112);
        assert_eq!(a.who(1_048_580), vec![Holder::Excluded(Source::LiveUserNs)]);
        // A later scan shows the namespace gone: its ids come back.
        a.observe_live(IdRangeSet::new());
        assert_eq!(a.allocate(&name("y"), 0).unwrap().uid.start, 1_048_576);
        // Releasing an allocation whose namespace still lives keeps the ids out of the pool.
        a.observe_live(IdRangeSet::from_ranges([x.uid]));
        a.release(&Selector::Name("x".into())).unwrap();
        assert!(!a.is_free(x.uid.start));
        assert_eq!(a.allocate(&name("z"), 0).unwrap().uid.start, 1_179_648);
    }

    #[test]
    fn idempotent_by_lease_and_owner() {
        let mut a = Allocator::new(Policy::default()).unwrap();
        let x = a
            .allocate(&AllocRequest::new(Lease::name("c"), 1000), 1)
            .unwrap();
        let again = a
            .allocate(&AllocRequest::new(Lease::name("c"), 1000).size(5), 2)
            .unwrap();
        assert_eq!(x, again);
        assert_eq!(a.len(), 1);
        let e = a
            .allocate(&AllocRequest::new(Lease::name("c"), 1001), 3)
            .unwrap_err();
        assert!(
            matches!(e, Error::LeaseTaken { by, owner: 1000, .. } if by == x.id),
            "{e}"
        );
        let ns = Lease::UserNs {
            dev: 4,
            ino: 4_026_532_000,
            created_ns: 99,
        };
        let y = a.allocate(&AllocRequest::new(ns.clone(), 1000), 4).unwrap();
        assert_eq!(a.allocate(&AllocRequest::new(ns, 1000), 5).unwrap(), y);
        let e = a.allocate(&name(""), 0).unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidLease {
                    reason: "empty",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn a_range_costs_the_aligned_blocks_it_takes() {
        let p = Policy {
            quota: Quota {
                max_ranges: 100,
                max_ids: 3 * 65_536,
            },
            ..Policy::default()
        };
        let mut a = Allocator::new(p).unwrap();
        for i in 0..3 {
            let r = AllocRequest::new(Lease::name(format!("one{i}")), 1000).size(1);
            a.allocate(&r, 0).unwrap();
        }
        assert_eq!(a.usage(1000).ids, 3 * 65_536);
        let r = AllocRequest::new(Lease::name("one3"), 1000).size(1);
        assert!(matches!(
            a.allocate(&r, 0),
            Err(Error::QuotaExceeded { owner: 1000, .. })
        ));
        // A principal other than the owner pays: the owner's own usage is untouched.
        let mut r = AllocRequest::new(Lease::name("inside"), 600_000).size(1);
        r.principal = Some(1000);
        assert!(matches!(
            a.allocate(&r, 0),
            Err(Error::QuotaExceeded { owner: 1000, .. })
        ));
        r.principal = Some(1001);
        let x = a.allocate(&r, 0).unwrap();
        assert_eq!((x.owner, x.charged_to()), (600_000, 1001));
        assert_eq!((a.usage(600_000).ids, a.usage(1001).ids), (0, 65_536));
    }

    #[test]
    fn names_and_labels_must_be_printable() {
        let mut a = Allocator::new(Policy::default()).unwrap();
        for (name, reason) in [
            ("a\u{1b}[2J", "has control characters"),
            ("x\u{202e}gpj", "has bidirectional-text controls"),
        ] {
            let e = a
                .allocate(&AllocRequest::new(Lease::name(name), 1000), 0)
                .unwrap_err();
            assert!(
                matches!(&e, Error::InvalidLease { reason: r, .. } if *r == reason),
                "{e}"
            );
        }
        let long = "l".repeat(MAX_LABEL + 1);
        for (label, reason) in [
            (long.as_str(), "longer than 1024 bytes"),
            ("a\rb", "has control characters"),
            ("\u{2066}x", "has bidirectional-text controls"),
        ] {
            let e = a
                .allocate(&AllocRequest::new(Lease::name("n"), 1000).label(label), 0)
                .unwrap_err();
            assert!(
                matches!(&e, Error::InvalidLabel { reason: r, .. } if *r == reason),
                "{e}"
            );
        }
        assert!(a.list().next().is_none(), "nothing was allocated");
    }

    #[test]
    fn quotas_per_non_root_owner() {
        let p = Policy {
            quota: Quota {
                max_ranges: 2,
                max_ids: 200_000,
            },
            ..Policy::default()
        };
        let mut a = Allocator::new(p).unwrap();
        let req = |n: &str, owner| AllocRequest::new(Lease::name(n), owner);
        a.allocate(&req("a", 1000), 0).unwrap();
        let e = a.allocate(&req("b", 1000).size(200_000), 0).unwrap_err();
        assert!(
            matches!(
                e,
                Error::QuotaExceeded {
                    owner: 1000,
                    limit: QuotaLimit::Ids {
                        max: 200_000,
                        held: 65_536,
                        // What it would take from the pool: four aligned blocks.
                        requested: 262_144
                    }
                }
            ),
            "{e}"
        );
        a.allocate(&req("b", 1000), 0).unwrap();
        let e = a.allocate(&req("c", 1000).size(1), 0).unwrap_err();
        assert!(
            matches!(
                e,
                Error::QuotaExceeded {
                    limit: QuotaLimit::Ranges { max: 2, held: 2 },
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("quota.max_ranges"));
        a.allocate(&req("d", 1001), 0).unwrap();
        for i in 0..5 {
            a.allocate(&req(&format!("root{i}"), 0).size(1 << 20), 0)
                .unwrap();
        }
        a.release(&Selector::Name("a".into())).unwrap();
        assert_eq!(
            a.usage(1000),
            Usage {
                ranges: 1,
                ids: 65_536
            }
        );
        a.allocate(&req("c", 1000), 0).unwrap();
    }

    #[test]
    fn register_refuses_overlap_and_reserved() {
        let mut a = Allocator::new(Policy::default()).unwrap();
        let x = a.allocate(&name("x"), 0).unwrap();
        let e = a
            .register(
                &RegisterRequest::new(Lease::name("r"), 0, r(500_000, 530_000)),
                0,
            )
            .unwrap_err();
        match e {
            Error::Overlap { with, at, .. } => {
                assert_eq!(with, x.id);
                assert_eq!(at, r(524_288, 530_000));
            }
            e => panic!("{e}"),
        }
        // Gid side overlapping another allocation's uid range counts too.
        let mut req = RegisterRequest::new(Lease::name("r"), 0, r(100_000, 165_535));
        req.gid = r(589_823, 589_823);
        assert!(matches!(a.register(&req, 0), Err(Error::Overlap { .. })));
        let e = a
            .register(
                &RegisterRequest::new(Lease::name("r"), 0, r(u32::MAX - 5, u32::MAX)),
                0,
            )
            .unwrap_err();
        assert!(matches!(e, Error::InvalidRange { .. }), "{e}");
        let e = a
            .register(&RegisterRequest::new(Lease::name("x"), 0, r(10, 20)), 0)
            .unwrap_err();
        assert!(matches!(e, Error::LeaseTaken { .. }), "{e}");
        // Registering inside the pool takes the ids out of it; outside is just recorded.
        let reg = a
            .register(
                &RegisterRequest::new(Lease::name("r"), 0, r(589_824, 589_824 + 99)),
                0,
            )
            .unwrap();
        assert_eq!(reg.origin, Origin::Registered);
        a.register(
            &RegisterRequest::new(Lease::name("podman"), 0, r(100_000, 165_535)),
            0,
        )
        .unwrap();
        assert_eq!(a.allocate(&name("y"), 0).unwrap().uid.start, 655_360);
        a.release(&Selector::Name("r".into())).unwrap();
        assert_eq!(a.allocate(&name("z"), 0).unwrap().uid.start, 589_824);
    }

    #[test]
    fn who_names_the_allocation_and_part() {
        let p = Policy {
            high: HighWindow {
                enabled: true,
                ..HighWindow::default()
            },
            ..Policy::default()
        };
        let mut a = Allocator::new(p).unwrap();
        let x = a
            .allocate(
                &AllocRequest::new(Lease::name("x"), 1000).high(HighRequest::Default),
                0,
            )
            .unwrap();
        let h = x.high.unwrap();
        assert_eq!(h.uid, r(0xF000_0000, 0xF000_0000 + 65_534));
        let holder = |part| Holder::Allocation {
            id: x.id,
            lease: Lease::name("x"),
            owner: 1000,
            part,
            as_uid: true,
            as_gid: true,
        };
        assert_eq!(a.who(524_300), vec![holder(Part::Main)]);
        assert_eq!(a.who(0xF000_0001), vec![holder(Part::High)]);
        assert_eq!(
            a.who(65_534),
            vec![Holder::Excluded(Source::Reserved(Reserved::Overflow))]
        );
        assert!(a.who(3_000_000_000).is_empty());
        // Charged what it takes: the high range's 65535 ids fill an aligned block of 65536.
        assert_eq!(a.usage(1000).ids, 65_536 + 65_536);
        // The map this allocation is for: ns 0.. and the namespace's top ids.
        let m = x.uid_map().unwrap();
        assert_eq!(m.map_down(0), Some(524_288));
        assert_eq!(m.map_down(u32::MAX - 1), Some(0xF000_0000 + 65_534));
        assert_eq!(m.map_down(u32::MAX - 65_535), Some(0xF000_0000));
        assert_eq!(m.map_down(70_000), None);
    }

    #[test]
    fn high_window_is_off_by_default_and_fills_to_the_top() {
        let mut a = Allocator::new(Policy::default()).unwrap();
        assert!(matches!(
            a.allocate(&name("x").high(HighRequest::Default), 0),
            Err(Error::HighWindowDisabled)
        ));
        let p = Policy {
            high: HighWindow {
                enabled: true,
                range: r(0xFFFE_0000, 0xFFFF_FFFE),
                ..HighWindow::default()
            },
            ..Policy::default()
        };
        let mut a = Allocator::new(p).unwrap();
        let one = a
            .allocate(&name("1").high(HighRequest::Default), 0)
            .unwrap();
        let two = a
            .allocate(&name("2").high(HighRequest::Default), 0)
            .unwrap();
        assert_eq!(one.high.unwrap().uid, r(0xFFFE_0000, 0xFFFE_FFFE));
        assert_eq!(
            two.high.unwrap().uid,
            r(0xFFFF_0000, 0xFFFF_FFFE),
            "the last block stops before 4294967295"
        );
        let e = a
            .allocate(&name("3").high(HighRequest::Default), 0)
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::PoolExhausted {
                    window: Window::High,
                    ..
                }
            ),
            "{e}"
        );
        // A failed request leaves nothing behind.
        assert!(a.get(&Selector::Name("3".into())).is_none());
        let e = a
            .allocate(&name("4").high(HighRequest::Size(0)), 0)
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidSize {
                    window: Window::High,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn policy_validation() {
        let mut p = Policy::default();
        p.high.enabled = true;
        p.high.range = r(1_000_000, 2_000_000);
        assert!(matches!(Allocator::new(p), Err(Error::InvalidPolicy(_))));
        let mut p = Policy::default();
        p.pool.align = 0;
        assert!(matches!(Allocator::new(p), Err(Error::InvalidPolicy(_))));
        let mut p = Policy::default();
        p.pool.ranges.clear();
        assert!(matches!(Allocator::new(p), Err(Error::InvalidPolicy(_))));
        let mut p = Policy::default();
        p.pool.ranges = vec![IdRange { start: 5, end: 4 }];
        assert!(matches!(Allocator::new(p), Err(Error::InvalidPolicy(_))));
    }

    #[test]
    fn policy_serde_defaults() {
        let p: Policy = serde_json::from_str("{}").unwrap();
        assert_eq!(p, Policy::default());
        let p: Policy =
            serde_json::from_str(r#"{"pool":{"align":1},"quota":{"max_ranges":3}}"#).unwrap();
        assert_eq!(p.pool.align, 1);
        assert_eq!(p.pool.ranges, vec![r(524_288, 1_879_048_191)]);
        assert_eq!(p.quota.max_ranges, 3);
        assert_eq!(p.quota.max_ids, 16_777_216);
        assert!(!p.high.enabled);
        assert!(serde_json::from_str::<Policy>(r#"{"pool":{"aling":1}}"#).is_err());
        let text = serde_json::to_string(&Policy::default()).unwrap();
        assert_eq!(
            serde_json::from_str::<Policy>(&text).unwrap(),
            Policy::default()
        );
    }

    #[test]
    fn dead_leases_use_the_creation_stamp() {
        let mut a = Allocator::new(Policy::default()).unwrap();
        let ns = |ino, created_ns| {
            AllocRequest::new(
                Lease::UserNs {
                    dev: 4,
                    ino,
                    created_ns,
                },
                0,
            )
        };
        let x = a.allocate(&ns(10, 100), 0).unwrap();
        let y = a.allocate(&ns(11, 200), 0).unwrap();
        let z = a.allocate(&ns(12, 300), 0).unwrap();
        a.allocate(&name("named"), 0).unwrap();
        let live = [
            LiveUserNs {
                dev: 4,
                ino: 10,
                created_ns: Some(100),
                ns_id: None,
            },
            LiveUserNs {
                dev: 4,
                ino: 11,
                created_ns: Some(999),
                ns_id: None,
            }, // inode reused
            LiveUserNs {
                dev: 4,
                ino: 12,
                created_ns: None,
                ns_id: None,
            }, // stamp unknown: keep
        ];
        assert_eq!(a.dead_leases(&live), vec![y.id]);
        assert_eq!(a.dead_leases(&[]), vec![x.id, y.id, z.id]);
    }

    #[test]
    fn pieces_clips_and_subtracts() {
        let within = IdRangeSet::from_ranges([r(0, 99), r(200, 299)]);
        let minus = IdRangeSet::from_ranges([r(10, 19), r(95, 205), r(290, 290)]);
        assert_eq!(
            pieces(r(5, 295), &within, &minus),
            vec![r(5, 9), r(20, 94), r(206, 289), r(291, 295)]
        );
        assert!(pieces(r(100, 199), &within, &minus).is_empty());
    }

    #[test]
    fn load_refuses_overlapping_records() {
        let mut a = Allocator::new(Policy::default()).unwrap();
        let x = a.allocate(&name("x"), 0).unwrap();
        let mut y = x.clone();
        y.id = AllocId(2);
        y.lease = Lease::name("y");
        assert!(matches!(
            Allocator::load(Policy::default(), vec![x.clone(), y], 3),
            Err(Error::Corrupt(_))
        ));
        assert!(matches!(
            Allocator::load(Policy::default(), vec![x.clone()], 1),
            Err(Error::Corrupt(_))
        ));
        let loaded = Allocator::load(Policy::default(), vec![x], 2).unwrap();
        assert_eq!(
            loaded.free_extents(Window::Main),
            a.free_extents(Window::Main)
        );
    }

    #[test]
    fn out_of_pool_after_policy_change() {
        let mut a = Allocator::new(Policy::default()).unwrap();
        let x = a.allocate(&name("x"), 0).unwrap();
        let moved = Policy {
            pool: PoolConfig {
                ranges: vec![r(1 << 30, (1 << 30) + (1 << 24))],
                ..PoolConfig::default()
            },
            ..Policy::default()
        };
        let b = Allocator::load(moved, vec![x.clone()], 2).unwrap();
        assert_eq!(b.out_of_pool(), vec![&x]);
        assert_eq!(b.free_ids(Window::Main), (1 << 24) + 1);
    }
}
