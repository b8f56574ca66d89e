//! Random sequences of allocate / release / register / observe-live (and, for the durable
//! registry, reopen): live ranges never overlap, allocations never touch excluded or reserved
//! ids, keep their alignment, are exactly the first fit, and reopening yields the same state.

use std::collections::BTreeMap;

use credns_idmap::{IdRange, IdRangeSet};
use credns_registry::{
    AllocRequest, Allocation, Allocator, Error, Exclusions, HighRequest, HighWindow, Lease, Origin,
    Policy, PoolConfig, Quota, RegisterRequest, Registry, Reserved, Selector, Source, Window,
};
use proptest::prelude::*;

const BASE: u32 = 1 << 20;
const BLOCKS: u32 = 48;
const HIGH: IdRange = IdRange {
    start: 0xFFF0_0000,
    end: 0xFFFF_FFFE,
};
const OWNERS: [u32; 3] = [0, 1000, 1001];
const SIZES: [u64; 8] = [1, 100, 4_095, 65_535, 65_536, 65_537, 200_000, 1_000_000];

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        name: u8,
        owner: usize,
        size: Option<usize>,
        high: bool,
    },
    Release {
        name: u8,
    },
    Register {
        name: u8,
        start: u32,
        len: u32,
        gid_shift: u32,
    },
    Live {
        ranges: Vec<(u32, u32)>,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..16, 0usize..3, prop::option::of(0usize..SIZES.len()), prop::bool::weighted(0.2))
            .prop_map(|(name, owner, size, high)| Op::Alloc { name, owner, size, high }),
        3 => (0u8..16).prop_map(|name| Op::Release { name }),
        1 => (0u8..16, 0u32..(BLOCKS * 65_536 + 200_000), 1u32..150_000, prop::sample::select(vec![0u32, 0, 7, 65_536]))
            .prop_map(|(name, start, len, gid_shift)| Op::Register { name, start: BASE - 100_000 + start, len, gid_shift }),
        1 => prop::collection::vec((0u32..BLOCKS * 65_536, 1u32..100_000), 0..4).prop_map(|ranges| Op::Live { ranges }),
        1 => Just(Op::Reopen),
    ]
}

fn policy(align: u32) -> Policy {
    Policy {
        pool: PoolConfig {
            ranges: vec![IdRange {
                start: BASE,
                end: BASE + BLOCKS * 65_536 - 1,
            }],
            default_size: 65_536,
            align,
        },
        high: HighWindow {
            enabled: true,
            range: HIGH,
            default_size: 65_535,
            align: 65_536,
        },
        quota: Quota {
            max_ranges: 4,
            max_ids: 1_500_000,
        },
    }
}

fn host() -> Exclusions {
    let users = credns_registry::parse_passwd(
        "passwd",
        "a:x:1048580:1048580::/:/bin/sh\nb:x:1200000:1::/:/bin/sh",
    )
    .unwrap();
    let mut ex = Exclusions::new();
    ex.add_passwd(&users).add_set(
        &IdRangeSet::from_ranges([IdRange {
            start: 1_500_000,
            end: 1_565_535,
        }]),
        Source::SubId {
            owner: "containers".into(),
            kind: credns_idmap::IdKind::Uid,
        },
    );
    ex
}

enum Subject {
    Mem(Allocator),
    Db(Option<Registry>, std::path::PathBuf),
}

impl Subject {
    fn alloc(&self) -> &Allocator {
        match self {
            Subject::Mem(a) => a,
            Subject::Db(r, _) => r.as_ref().unwrap().allocator(),
        }
    }
    fn allocate(&mut self, req: &AllocRequest) -> Result<Allocation, Error> {
        match self {
            Subject::Mem(a) => a.allocate(req, 0),
            Subject::Db(r, _) => r.as_mut().unwrap().allocate(req),
        }
    }
    fn register(&mut self, req: &RegisterRequest) -> Result<Allocation, Error> {
        match self {
            Subject::Mem(a) => a.register(req, 0),
            Subject::Db(r, _) => r.as_mut().unwrap().register(req),
        }
    }
    fn release(&mut self, sel: &Selector) -> Result<Allocation, Error> {
        match self {
            Subject::Mem(a) => a.release(sel),
            Subject::Db(r, _) => r.as_mut().unwrap().release(sel),
        }
    }
    fn observe_live(&mut self, live: IdRangeSet) {
        match self {
            Subject::Mem(a) => a.observe_live(live),
            Subject::Db(r, _) => r.as_mut().unwrap().observe_live(live),
        }
    }
}

fn state(a: &Allocator) -> (Vec<Allocation>, Vec<IdRange>, Vec<IdRange>) {
    (
        a.list().cloned().collect(),
        a.free_extents(Window::Main),
        a.free_extents(Window::High),
    )
}

/// What the free extents must be: window − reserved − host − live − every footprint.
fn expected_free(window: &IdRangeSet, live: &IdRangeSet, allocs: &[Allocation]) -> IdRangeSet {
    let used = IdRangeSet::from_ranges(allocs.iter().flat_map(|a| a.footprint().ranges().to_vec()));
    window
        .difference(&Reserved::set())
        .difference(&host().set())
        .difference(live)
        .difference(&used)
}

fn run(align: u32, ops: Vec<Op>, durable: bool) -> Result<(), TestCaseError> {
    let pol = policy(align);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.redb");
    let mut s = if durable {
        let mut reg = Registry::open(&path, pol.clone()).unwrap();
        reg.set_host_exclusions(host());
        Subject::Db(Some(reg), path.clone())
    } else {
        let mut a = Allocator::new(pol.clone()).unwrap();
        a.set_host_exclusions(host());
        Subject::Mem(a)
    };
    let pool = pol.pool_set();
    let high = pol.high_set();
    let mut live = IdRangeSet::new();
    for op in ops {
        let before: Vec<Allocation> = s.alloc().list().cloned().collect();
        let taken = Reserved::set().union(&host().set()).union(&live);
        match op {
            Op::Alloc {
                name,
                owner,
                size,
                high: want_high,
            } => {
                let size = size.map(|i| SIZES[i]);
                let mut req = AllocRequest::new(Lease::name(format!("n{name}")), OWNERS[owner]);
                req.size = size;
                if want_high {
                    req = req.high(HighRequest::Default);
                }
                let held = before.iter().find(|a| a.lease == req.lease).cloned();
                let used = IdRangeSet::from_ranges(
                    before.iter().flat_map(|a| a.footprint().ranges().to_vec()),
                );
                let free = pool.difference(&taken).difference(&used);
                let want = size.unwrap_or(65_536);
                let fit = free.first_fit(want, align, 0, u32::MAX);
                match s.allocate(&req) {
                    Ok(a) => match held {
                        Some(h) => prop_assert_eq!(a, h, "same lease, same allocation"),
                        None => {
                            prop_assert_eq!(a.origin, Origin::Allocated);
                            prop_assert_eq!(a.uid, a.gid);
                            prop_assert_eq!(a.uid.len(), want);
                            prop_assert_eq!(a.uid.start % align, 0, "aligned");
                            prop_assert!(pool.contains_range(a.uid), "in the pool");
                            prop_assert!(
                                !taken.overlaps_range(a.uid),
                                "{} touches an excluded id",
                                a.uid
                            );
                            prop_assert_eq!(Some(a.uid.start), fit, "exact first fit");
                            if let Some(h) = a.high {
                                prop_assert!(high.contains_range(h.uid));
                                prop_assert!(!taken.overlaps_range(h.uid));
                                prop_assert_eq!(h.uid.start % 65_536, 0);
                            }
                        }
                    },
                    Err(Error::LeaseTaken { owner: o, .. }) => {
                        prop_assert!(held.is_some_and(|h| h.owner == o && o != OWNERS[owner]));
                    }
                    Err(Error::PoolExhausted {
                        window: Window::Main,
                        largest_free,
                        ..
                    }) => {
                        prop_assert!(held.is_none());
                        prop_assert!(fit.is_none(), "exhausted although {:?} fits", fit);
                        prop_assert!(largest_free < want);
                    }
                    Err(Error::PoolExhausted {
                        window: Window::High,
                        ..
                    }) => prop_assert!(want_high),
                    Err(Error::QuotaExceeded { owner: o, .. }) => prop_assert!(o != 0),
                    Err(e) => prop_assert!(false, "unexpected error {e}"),
                }
            }
            Op::Release { name } => {
                let held = before
                    .iter()
                    .any(|a| a.lease == Lease::name(format!("n{name}")));
                let r = s.release(&Selector::Name(format!("n{name}")));
                prop_assert_eq!(r.is_ok(), held);
            }
            Op::Register {
                name,
                start,
                len,
                gid_shift,
            } => {
                let uid = IdRange::from_start_len(start, len as u64).unwrap();
                let gid = IdRange::from_start_len(start + gid_shift, len as u64).unwrap();
                let mut req = RegisterRequest::new(Lease::name(format!("n{name}")), 0, uid);
                req.gid = gid;
                let foot = IdRangeSet::from_ranges([uid, gid]);
                let used = IdRangeSet::from_ranges(
                    before.iter().flat_map(|a| a.footprint().ranges().to_vec()),
                );
                let lease_held = before.iter().any(|a| a.lease == req.lease);
                match s.register(&req) {
                    Ok(a) => {
                        prop_assert!(!lease_held);
                        prop_assert!(foot.intersection(&used).is_empty());
                        prop_assert_eq!(a.origin, Origin::Registered);
                    }
                    Err(Error::Overlap { .. }) => {
                        prop_assert!(!foot.intersection(&used).is_empty())
                    }
                    Err(Error::LeaseTaken { .. }) => prop_assert!(lease_held),
                    Err(e) => prop_assert!(false, "unexpected error {e}"),
                }
            }
            Op::Live { ranges } => {
                live = IdRangeSet::from_ranges(
                    ranges
                        .iter()
                        .map(|&(o, l)| IdRange::from_start_len(BASE + o, l as u64).unwrap()),
                );
                s.observe_live(live.clone());
            }
            Op::Reopen => {
                if let Subject::Db(reg, path) = &mut s {
                    let before = state(reg.as_ref().unwrap().allocator());
                    drop(reg.take());
                    let mut again = Registry::open(&*path, pol.clone()).unwrap();
                    again.set_host_exclusions(host());
                    again.observe_live(live.clone());
                    prop_assert_eq!(
                        state(again.allocator()),
                        before,
                        "reopening yields the same state"
                    );
                    *reg = Some(again);
                }
            }
        }
        // Invariants after every step.
        let a = s.alloc();
        let all: Vec<Allocation> = a.list().cloned().collect();
        let mut spans: Vec<IdRange> = all
            .iter()
            .flat_map(|x| x.footprint().ranges().to_vec())
            .collect();
        spans.sort();
        for w in spans.windows(2) {
            prop_assert!(
                w[0].end < w[1].start,
                "live ranges {} and {} overlap",
                w[0],
                w[1]
            );
        }
        prop_assert_eq!(
            a.free_extents(Window::Main),
            expected_free(&pool, &live, &all).ranges().to_vec()
        );
        prop_assert_eq!(
            a.free_extents(Window::High),
            expected_free(&high, &live, &all).ranges().to_vec()
        );
        let mut per_owner: BTreeMap<u32, (u32, u64)> = BTreeMap::new();
        for x in &all {
            let e = per_owner.entry(x.charged_to()).or_default();
            e.0 += 1;
            e.1 += a.cost(x);
        }
        for (owner, (n, ids)) in per_owner {
            let u = a.usage(owner);
            prop_assert_eq!((u.ranges, u.ids), (n, ids));
        }
    }
    if let Subject::Db(reg, path) = &mut s {
        let before = state(reg.as_ref().unwrap().allocator());
        drop(reg.take());
        let mut again = Registry::open(&*path, pol).unwrap();
        again.set_host_exclusions(host());
        again.observe_live(live);
        prop_assert_eq!(state(again.allocator()), before);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn in_memory_sequences_keep_the_invariants(
        align in prop::sample::select(vec![1u32, 4_096, 65_536]),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        run(align, ops, false)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn durable_sequences_keep_the_invariants_and_survive_reopening(
        align in prop::sample::select(vec![1u32, 4_096, 65_536]),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        run(align, ops, true)?;
    }
}
