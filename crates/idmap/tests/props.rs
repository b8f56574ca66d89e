//! Property tests: lookups against a linear scan, the map algebra's laws, range sets against a
//! bit-set model, `first_fit` against brute force, every format's parse∘print round trip, and
//! `judge_write` (host root) against `IdMap::new`.

use credns_idmap::formats::{
    map_users_args, oci_mappings_json, parse_oci_config, parse_oci_mappings, parse_proc_map,
    set_oci_mappings, MapUsers, SubidFile, SubidOwner,
};
use credns_idmap::{
    judge_write, parse_write, Error, Extent, ExtentRule, IdKind, IdMap, IdRange, IdRangeSet,
    WriteContext, WriteRule,
};
use proptest::prelude::*;
use proptest::sample::SizeRange;

// ---- generating valid maps ---------------------------------------------------------------------

/// How spread out a generated map is.
#[derive(Clone, Copy, Debug)]
enum Scale {
    /// Counts 1..=4, gaps 0..=2: many adjacent extents, small ids.
    Tiny,
    /// Counts up to 1000.
    Medium,
    /// Counts up to 2^21 (340 of them still fit in 32 bits).
    Large,
}

fn scale() -> impl Strategy<Value = Scale> {
    prop_oneof![Just(Scale::Tiny), Just(Scale::Medium), Just(Scale::Large)]
}

/// Where in the free space the block of extents sits: at 0, at the very top, or anywhere.
fn base_frac() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), Just(u32::MAX), any::<u32>()]
}

/// Lay out ranges of the given counts with the given gaps, in `order`, starting at a base chosen
/// by `frac` so that the last id is at most 4294967294. Returns the first id of each range.
fn layout(counts: &[u32], gaps: &[u32], order: &[usize], frac: u32) -> Vec<u32> {
    let total: u64 = order
        .iter()
        .map(|&i| counts[i] as u64 + gaps[i] as u64)
        .sum();
    let avail = u32::MAX as u64 - total; // last id <= u32::MAX - 1
    let base = (avail as u128 * frac as u128 / u32::MAX as u128) as u64;
    let mut firsts = vec![0u32; counts.len()];
    let mut at = base;
    for &i in order {
        at += gaps[i] as u64;
        firsts[i] = at as u32;
        at += counts[i] as u64;
    }
    firsts
}

/// Valid maps of `n` extents (in written order), lower ranges in an order unrelated to upper.
fn valid_extents(n: impl Into<SizeRange>) -> impl Strategy<Value = Vec<Extent>> {
    let n: SizeRange = n.into();
    (scale(), Just(n)).prop_flat_map(|(s, n)| {
        let (cmax, gmax) = match s {
            Scale::Tiny => (4u32, 2u32),
            Scale::Medium => (1000, 1000),
            Scale::Large => (1 << 21, 1 << 21),
        };
        prop::collection::vec((1..=cmax, 0..=gmax, 0..=gmax), n).prop_flat_map(move |v| {
            let len = v.len();
            let idx: Vec<usize> = (0..len).collect();
            (
                Just(v),
                Just(idx.clone()).prop_shuffle(),
                Just(idx).prop_shuffle(),
                base_frac(),
                base_frac(),
            )
                .prop_map(|(v, lower_order, written_order, uf, lf)| {
                    let counts: Vec<u32> = v.iter().map(|t| t.0).collect();
                    let ugaps: Vec<u32> = v.iter().map(|t| t.1).collect();
                    let lgaps: Vec<u32> = v.iter().map(|t| t.2).collect();
                    let upper_order: Vec<usize> = (0..counts.len()).collect();
                    let firsts = layout(&counts, &ugaps, &upper_order, uf);
                    let lowers = layout(&counts, &lgaps, &lower_order, lf);
                    written_order
                        .iter()
                        .map(|&i| Extent::new(firsts[i], lowers[i], counts[i]))
                        .collect()
                })
        })
    })
}

fn valid_map(n: impl Into<SizeRange>) -> impl Strategy<Value = IdMap> {
    valid_extents(n).prop_map(|e| {
        if e.is_empty() {
            IdMap::empty()
        } else {
            IdMap::new(e).expect("generated maps are valid")
        }
    })
}

/// Small valid maps in a small id space, so that two of them interact when composed: up to
/// `max_n` extents of counts up to `cmax`, upper ranges from 0 separated by gaps from `ugap`,
/// lower ranges from a base below 40 separated by gaps up to 6, in shuffled orders.
fn small_map_with(
    max_n: usize,
    cmax: u32,
    ugap: BoxedStrategy<u32>,
) -> impl Strategy<Value = IdMap> {
    prop::collection::vec((1u32..=cmax, ugap, 0u32..=6), 1..=max_n)
        .prop_flat_map(|v| {
            let idx: Vec<usize> = (0..v.len()).collect();
            (
                Just(v),
                Just(idx.clone()).prop_shuffle(),
                Just(idx).prop_shuffle(),
                0u32..40,
            )
        })
        .prop_map(|(v, lower_order, written_order, lb)| {
            let counts: Vec<u32> = v.iter().map(|t| t.0).collect();
            let mut firsts = vec![0u32; v.len()];
            let mut at = 0;
            for i in 0..v.len() {
                at += v[i].1;
                firsts[i] = at;
                at += counts[i];
            }
            let mut lowers = vec![0u32; v.len()];
            let mut at = lb;
            for &i in &lower_order {
                at += v[i].2;
                lowers[i] = at;
                at += counts[i];
            }
            let ext: Vec<Extent> = written_order
                .iter()
                .map(|&i| Extent::new(firsts[i], lowers[i], counts[i]))
                .collect();
            IdMap::new(ext).unwrap()
        })
}

/// A child map: a dozen small extents.
fn small_map(max_n: usize) -> impl Strategy<Value = IdMap> {
    small_map_with(max_n, 12, (0u32..=6).boxed())
}

/// A parent map whose upper ranges mostly tile 0..~300 (gaps rare), so that a child's lower
/// ranges often, but not always, fall inside it.
fn parent_map() -> impl Strategy<Value = IdMap> {
    small_map_with(12, 60, prop_oneof![6 => Just(0u32), 1 => 1u32..=3].boxed())
}

// ---- the naive model ---------------------------------------------------------------------------

fn naive_extent_down(ext: &[Extent], id: u32) -> Option<Extent> {
    ext.iter()
        .copied()
        .find(|e| id as u64 >= e.first as u64 && (id as u64) < e.first as u64 + e.count as u64)
}

fn naive_extent_up(ext: &[Extent], id: u32) -> Option<Extent> {
    ext.iter().copied().find(|e| {
        id as u64 >= e.lower_first as u64 && (id as u64) < e.lower_first as u64 + e.count as u64
    })
}

fn naive_down(ext: &[Extent], id: u32) -> Option<u32> {
    naive_extent_down(ext, id).map(|e| id - e.first + e.lower_first)
}

fn naive_up(ext: &[Extent], id: u32) -> Option<u32> {
    naive_extent_up(ext, id).map(|e| id - e.lower_first + e.first)
}

fn naive_range_down(ext: &[Extent], id: u32, count: u32) -> Option<u32> {
    if count == 0 {
        return None;
    }
    let e = naive_extent_down(ext, id)?;
    (id as u64 + count as u64 <= e.first as u64 + e.count as u64)
        .then(|| id - e.first + e.lower_first)
}

/// Ids worth asking about: around every extent's edges, both sides, plus the space's ends.
fn probe_ids(ext: &[Extent], extra: &[u32]) -> Vec<u32> {
    let mut v = vec![0, 1, u32::MAX - 1, u32::MAX];
    for e in ext {
        for x in [
            e.first as u64,
            e.upper_last(),
            e.lower_first as u64,
            e.lower_last(),
        ] {
            for d in [-1i64, 0, 1] {
                let y = x as i64 + d;
                if (0..=u32::MAX as i64).contains(&y) {
                    v.push(y as u32);
                }
            }
        }
    }
    v.extend_from_slice(extra);
    v
}

// ---- lookups -----------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn lookups_agree_with_a_linear_scan(ext in valid_extents(1..=340usize), extra in prop::collection::vec(any::<u32>(), 0..32), counts in prop::collection::vec(any::<u32>(), 1..4)) {
        let m = IdMap::new(ext.clone()).unwrap();
        prop_assert_eq!(m.extents(), &ext[..]);
        for id in probe_ids(&ext, &extra) {
            prop_assert_eq!(m.extent_down(id).copied(), naive_extent_down(&ext, id), "extent_down({})", id);
            prop_assert_eq!(m.extent_up(id).copied(), naive_extent_up(&ext, id), "extent_up({})", id);
            prop_assert_eq!(m.map_down(id), naive_down(&ext, id), "map_down({})", id);
            prop_assert_eq!(m.map_up(id), naive_up(&ext, id), "map_up({})", id);
            let mut cs = counts.clone();
            cs.extend([0, 1, 2]);
            if let Some(e) = naive_extent_down(&ext, id) {
                let to_end = (e.upper_last() - id as u64 + 1) as u32;
                cs.extend([to_end, to_end.wrapping_add(1), to_end - 1]);
            }
            for c in cs {
                prop_assert_eq!(m.map_range_down(id, c), naive_range_down(&ext, id, c), "map_range_down({}, {})", id, c);
            }
        }
    }

    #[test]
    fn sets_and_orders(m in valid_map(1..=340usize)) {
        let ext = m.extents();
        let upper = IdRangeSet::from_ranges(ext.iter().map(|e| e.upper().unwrap()));
        prop_assert_eq!(m.upper_set(), upper);
        let mut sorted = ext.to_vec();
        sorted.sort_by_key(|e| e.first);
        prop_assert_eq!(m.sorted(), &sorted[..]);
        if ext.len() <= 5 {
            prop_assert_eq!(m.display_order(), ext);
        } else {
            prop_assert_eq!(m.display_order(), &sorted[..]);
        }
        prop_assert_eq!(m.upper_set().len(), ext.iter().map(|e| e.count as u64).sum::<u64>());
    }
}

// ---- algebra -----------------------------------------------------------------------------------

/// Whether every extent of `m` has its lower range inside one extent of `p` (naively).
fn naive_strict_ok(m: &IdMap, p: &IdMap) -> bool {
    m.extents()
        .iter()
        .all(|e| naive_range_down(p.extents(), e.lower_first, e.count).is_some())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn invert_is_an_involution(m in valid_map(1..=340usize), extra in prop::collection::vec(any::<u32>(), 0..16)) {
        let inv = m.invert();
        prop_assert_eq!(&inv.invert(), &m);
        prop_assert_eq!(IdMap::new(inv.extents().to_vec()), Ok(inv.clone()));
        for id in probe_ids(m.extents(), &extra) {
            prop_assert_eq!(inv.map_down(id), m.map_up(id));
            prop_assert_eq!(inv.map_up(id), m.map_down(id));
        }
    }

    #[test]
    fn compose_with_identity_is_the_map(m in valid_map(1..=340usize)) {
        prop_assert_eq!(m.compose(&IdMap::identity()), m.sorted().to_vec());
        prop_assert_eq!(m.compose_strict(&IdMap::identity()), Ok(m.clone()));
        prop_assert_eq!(m.carve(&IdMap::identity()), Ok(m.clone()));
        prop_assert_eq!(IdMap::identity().compose(&m), m.sorted().to_vec());
    }

    #[test]
    fn compose_maps_through_both(a in small_map(12), b in prop_oneof![parent_map(), small_map(12)]) {
        let c = a.compose(&b);
        // Pieces are disjoint on both sides and sorted by first.
        for w in c.windows(2) {
            prop_assert!(w[0].upper_last() < w[1].first as u64);
        }
        if !c.is_empty() && c.len() <= 340 {
            prop_assert!(IdMap::new(c.clone()).is_ok(), "{:?}", c);
        }
        for x in probe_ids(a.extents(), &[]).into_iter().chain(0..200) {
            let want = a.map_down(x).and_then(|y| b.map_down(y));
            prop_assert_eq!(naive_down(&c, x), want, "x = {}", x);
        }
        // compose_strict succeeds exactly when every lower range fits one parent extent, and
        // then agrees with compose.
        match a.compose_strict(&b) {
            Ok(s) => {
                prop_assert!(naive_strict_ok(&a, &b));
                prop_assert_eq!(s.extents().len(), a.len());
                for x in probe_ids(a.extents(), &[]).into_iter().chain(0..200) {
                    prop_assert_eq!(s.map_down(x), naive_down(&c, x));
                }
            }
            Err(Error::NotInOneParentExtent { index, extent }) => {
                prop_assert!(!naive_strict_ok(&a, &b));
                prop_assert_eq!(extent, a.extents()[index]);
                prop_assert!(naive_range_down(b.extents(), extent.lower_first, extent.count).is_none());
                prop_assert!(naive_strict_ok(&IdMap::new(a.extents()[..index].to_vec()).unwrap_or_default(), &b));
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }

    #[test]
    fn carve_is_accepted_by_compose_strict(a in small_map(12), b in prop_oneof![parent_map(), small_map(12)]) {
        let c = a.compose(&b);
        let all_mapped = a.lower_set().difference(&b.upper_set()).is_empty();
        match a.carve(&b) {
            Ok(k) => {
                prop_assert!(all_mapped);
                // Same map as `a`, split.
                for x in probe_ids(a.extents(), &[]).into_iter().chain(0..200) {
                    prop_assert_eq!(k.map_down(x), a.map_down(x));
                }
                let s = k.compose_strict(&b);
                prop_assert!(s.is_ok(), "{:?}", s);
                let s = s.unwrap();
                for x in probe_ids(a.extents(), &[]).into_iter().chain(0..200) {
                    prop_assert_eq!(s.map_down(x), naive_down(&c, x), "x = {}", x);
                }
                prop_assert_eq!(IdMap::new(k.extents().to_vec()), Ok(k.clone()));
            }
            Err(Error::UnmappedInParent { id, extent }) => {
                prop_assert!(!all_mapped);
                prop_assert!(b.map_down(id).is_none());
                prop_assert!(extent.lower().unwrap().contains(id));
            }
            Err(Error::CarveTooManyExtents { needed }) => prop_assert!(needed > 340),
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }
}

// ---- range sets --------------------------------------------------------------------------------

/// A set of ids in a 64-id universe starting at `base`, as ranges and as a bit mask.
fn small_set(base: u32) -> impl Strategy<Value = (IdRangeSet, u64)> {
    prop::collection::vec((0u32..64, 0u32..8), 0..8).prop_map(move |v| {
        let mut mask = 0u64;
        let ranges: Vec<IdRange> = v
            .iter()
            .map(|&(s, l)| {
                let e = (s + l).min(63);
                for b in s..=e {
                    mask |= 1 << b;
                }
                IdRange::new(base + s, base + e).unwrap()
            })
            .collect();
        (IdRangeSet::from_ranges(ranges), mask)
    })
}

fn universe_base() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), Just(u32::MAX - 63), Just(1000u32)]
}

fn mask_of(s: &IdRangeSet, base: u32) -> u64 {
    (0..64u32)
        .filter(|&b| s.contains(base + b))
        .fold(0, |m, b| m | (1 << b))
}

fn normal(s: &IdRangeSet) -> bool {
    s.ranges()
        .windows(2)
        .all(|w| (w[0].end as u64) + 1 < w[1].start as u64)
        && s.ranges().iter().all(|r| r.start <= r.end)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn range_sets_match_a_bit_model(
        (base, (a, ma), (b, mb)) in universe_base().prop_flat_map(|base| (Just(base), small_set(base), small_set(base))),
        q in (0u32..64, 0u32..64),
    ) {
        let u = a.union(&b);
        let i = a.intersection(&b);
        let d = a.difference(&b);
        let ca = a.complement();
        for s in [&a, &b, &u, &i, &d, &ca] {
            prop_assert!(normal(s), "{:?}", s);
        }
        prop_assert_eq!(mask_of(&u, base), ma | mb);
        prop_assert_eq!(mask_of(&i, base), ma & mb);
        prop_assert_eq!(mask_of(&d, base), ma & !mb);
        prop_assert_eq!(mask_of(&ca, base), !ma);
        prop_assert_eq!(a.len(), ma.count_ones() as u64);
        prop_assert_eq!(ca.len(), (1u64 << 32) - ma.count_ones() as u64);
        // Laws on the whole space.
        prop_assert_eq!(&u, &b.union(&a));
        prop_assert_eq!(&i, &b.intersection(&a));
        prop_assert_eq!(u.complement(), ca.intersection(&b.complement()));
        prop_assert_eq!(i.complement(), ca.union(&b.complement()));
        prop_assert_eq!(&d, &a.intersection(&b.complement()));
        prop_assert_eq!(&ca.complement(), &a);
        prop_assert_eq!(a.union(&ca), IdRangeSet::full());
        prop_assert!(a.intersection(&ca).is_empty());
        prop_assert_eq!(a.union(&a), a.clone());
        prop_assert_eq!(a.intersection(&a), a.clone());
        prop_assert!(a.difference(&a).is_empty());
        // Range queries.
        let (lo, hi) = (q.0.min(q.1), q.0.max(q.1));
        let r = IdRange::new(base + lo, base + hi).unwrap();
        let rmask = if hi == 63 { u64::MAX << lo } else { ((1u64 << (hi + 1)) - 1) & (u64::MAX << lo) };
        prop_assert_eq!(a.contains_range(r), ma & rmask == rmask);
        prop_assert_eq!(a.overlaps_range(r), ma & rmask != 0);
        let mut ins = a.clone();
        ins.insert(r);
        prop_assert_eq!(mask_of(&ins, base), ma | rmask);
        prop_assert!(normal(&ins));
        let mut rem = a.clone();
        rem.remove(r);
        prop_assert_eq!(mask_of(&rem, base), ma & !rmask);
        prop_assert!(normal(&rem));
    }

    #[test]
    fn first_fit_is_the_lowest_aligned_fit(
        (base, (s, mask)) in universe_base().prop_flat_map(|base| (Just(base), small_set(base))),
        size in prop_oneof![0u64..=66, Just(1u64 << 32), Just((1u64 << 32) + 1), Just(u64::MAX)],
        align in prop_oneof![0u32..=9, Just(1u32 << 31), Just(u32::MAX)],
        bounds in (0u32..64, 0u32..64),
    ) {
        let (lo, hi) = (base + bounds.0, base + bounds.1);
        let got = s.first_fit(size, align, lo, hi);
        let al = align.max(1) as u64;
        let brute = (lo as u64..=hi as u64).find(|&st| {
            st % al == 0
                && size >= 1
                && size <= hi as u64 - st + 1
                && (st..st + size).all(|x| x - (base as u64) < 64 && mask & (1 << (x - base as u64)) != 0)
        });
        prop_assert_eq!(got.map(|x| x as u64), brute, "size {} align {} lo {} hi {}", size, align, lo, hi);
    }
}

// ---- formats -----------------------------------------------------------------------------------

fn owner() -> impl Strategy<Value = SubidOwner> {
    prop_oneof![
        "[a-z_][a-z0-9_.-]{0,15}\\$?".prop_map(SubidOwner::Name),
        any::<u32>().prop_map(SubidOwner::Id),
        "0[0-9]{1,5}".prop_map(SubidOwner::Name),
    ]
}

#[derive(Clone, Debug)]
enum SubLine {
    Entry(SubidOwner, u32, u32),
    Comment(String),
    Blank(String),
}

fn sub_line() -> impl Strategy<Value = SubLine> {
    prop_oneof![
        4 => (owner(), any::<u32>(), any::<u32>()).prop_map(|(o, s, c)| {
            let c = c.max(1);
            let s = (s as u64).min((1u64 << 32) - c as u64) as u32;
            SubLine::Entry(o, s, c)
        }),
        1 => "[ \t]*#[ -~]{0,20}".prop_map(SubLine::Comment),
        1 => "[ \t]{0,3}".prop_map(SubLine::Blank),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn write_format_round_trip(m in valid_map(1..=340usize)) {
        prop_assert_eq!(parse_write(m.to_write_format().as_bytes()), Ok(m.extents().to_vec()));
        prop_assert_eq!(m.to_string(), m.to_write_format());
    }

    #[test]
    fn proc_round_trip(m in valid_map(1..=340usize), seps in prop::collection::vec("[ \t]{1,3}", 3)) {
        let back = parse_proc_map(&m.to_proc_format(), "uid_map").unwrap();
        prop_assert_eq!(back.extents(), m.display_order());
        if m.len() <= 5 {
            prop_assert_eq!(&back, &m);
        }
        // Any whitespace layout of the written order reads back as the map.
        let text: String = m
            .extents()
            .iter()
            .map(|e| format!("{}{}{}{}{}{}{}\n", seps[0], e.first, seps[1], e.lower_first, seps[2], e.count, seps[0]))
            .collect();
        prop_assert_eq!(parse_proc_map(&text, "uid_map").unwrap(), m);
    }

    #[test]
    fn subid_round_trip(lines in prop::collection::vec(sub_line(), 0..40)) {
        let mut text = String::new();
        for l in &lines {
            match l {
                SubLine::Entry(o, s, c) => text.push_str(&format!("{o}:{s}:{c}\n")),
                SubLine::Comment(t) | SubLine::Blank(t) => text.push_str(&format!("{t}\n")),
            }
        }
        let f = SubidFile::parse(&text, "subuid").unwrap();
        prop_assert_eq!(f.to_string(), text.clone());
        prop_assert_eq!(SubidFile::parse(&f.to_string(), "subuid").unwrap(), f.clone());
        let (lenient, skipped) = SubidFile::parse_lenient(&text, "subuid");
        prop_assert!(skipped.is_empty());
        prop_assert_eq!(&lenient, &f);
        // ranges_for agrees with a filter by owner string, all_ranges with a union.
        for e in &f.entries {
            let name = e.owner.to_string();
            let want = IdRangeSet::from_ranges(f.entries.iter().filter(|x| x.owner.to_string() == name).map(|x| x.range()));
            prop_assert_eq!(f.ranges_for(Some(&name), None), want.clone());
            if let SubidOwner::Id(id) = e.owner {
                prop_assert_eq!(f.ranges_for(None, Some(id)), want);
            }
        }
        prop_assert_eq!(f.all_ranges(), IdRangeSet::from_ranges(f.entries.iter().map(|e| e.range())));
    }

    #[test]
    fn subid_push_round_trip(entries in prop::collection::vec((owner(), 0u32..1_000_000, 1u32..100_000), 0..20)) {
        let mut f = SubidFile::default();
        for (o, s, c) in entries {
            f.push(o, s, c);
        }
        prop_assert_eq!(SubidFile::parse(&f.to_string(), "subgid").unwrap(), f);
    }

    #[test]
    fn oci_round_trip(m in valid_map(0..=340usize), pretty in any::<bool>()) {
        let arr = oci_mappings_json(&m);
        let text = if pretty { serde_json::to_string_pretty(&arr).unwrap() } else { arr.to_string() };
        prop_assert_eq!(parse_oci_mappings(&text, "m.json").unwrap(), m.clone());
        let mut cfg = serde_json::json!({"ociVersion": "1.2.0", "process": {"args": ["sh"]}, "linux": {"namespaces": [{"type": "user"}]}});
        let before = cfg.clone();
        set_oci_mappings(&mut cfg, Some(&m), Some(&m.invert())).unwrap();
        let parsed = parse_oci_config(&serde_json::to_string_pretty(&cfg).unwrap(), "config.json").unwrap();
        prop_assert_eq!(parsed.uid, Some(m.clone()));
        prop_assert_eq!(parsed.gid, Some(m.invert()));
        // Nothing else changed.
        let mut stripped = cfg.clone();
        let linux = stripped["linux"].as_object_mut().unwrap();
        linux.remove("uidMappings");
        linux.remove("gidMappings");
        prop_assert_eq!(stripped, before);
    }

    #[test]
    fn map_users_round_trip(m in valid_map(0..=340usize)) {
        let args = map_users_args(&m);
        let parsed = MapUsers::parse(&args, "--map-users").unwrap();
        prop_assert!(!parsed.needs_resolving());
        prop_assert_eq!(parsed.to_idmap().unwrap(), m.clone());
        // The 2.38 syntax of the same extents reads the same.
        let legacy: Vec<String> = m.extents().iter().map(|e| format!("{},{},{}", e.lower_first, e.first, e.count)).collect();
        prop_assert_eq!(MapUsers::parse(&legacy, "--map-users").unwrap().to_idmap().unwrap(), m);
    }
}

// ---- judge_write against IdMap::new --------------------------------------------------------------

/// Arbitrary extents, valid or not: small ids, zero counts, the reserved id, wrap-arounds.
fn any_extent() -> impl Strategy<Value = Extent> {
    let id =
        prop_oneof![8 => 0u32..64, 1 => Just(u32::MAX), 1 => Just(u32::MAX - 3), 1 => any::<u32>()];
    let count = prop_oneof![8 => 0u32..16, 1 => Just(u32::MAX), 1 => any::<u32>()];
    (id.clone(), id, count).prop_map(|(a, b, c)| Extent::new(a, b, c))
}

fn any_extents() -> impl Strategy<Value = Vec<Extent>> {
    prop_oneof![
        8 => prop::collection::vec(any_extent(), 1..8),
        1 => (339usize..=342).prop_map(|n| (0..n as u32).map(|i| Extent::new(i, i, 1)).collect()),
        1 => (339usize..=342, any_extent()).prop_map(|(n, e)| {
            let mut v: Vec<Extent> = (0..n as u32 - 1).map(|i| Extent::new(i, i + 5000, 1)).collect();
            v.push(e);
            v
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn host_root_accepts_exactly_what_idmap_new_accepts(ext in any_extents()) {
        let text: String = ext.iter().map(|e| format!("{} {} {}\n", e.first, e.lower_first, e.count)).collect();
        let judged = judge_write(&WriteContext::host_root(IdKind::Uid), text.as_bytes());
        if text.len() > 4095 {
            prop_assert_eq!(judged.unwrap_err(), WriteRule::TooLong { len: text.len() });
            return Ok(());
        }
        let built = IdMap::new(ext.clone());
        match (&judged, &built) {
            (Ok(a), Ok(m)) => {
                prop_assert_eq!(&a.written, m);
                prop_assert_eq!(&a.kernel, m);
            }
            (Err(WriteRule::Extent { line, why, .. }), Err(Error::Extent { index, rule, .. })) => {
                prop_assert_eq!(why, rule);
                prop_assert_eq!(*line, index + 1);
                if *rule == ExtentRule::TooMany {
                    prop_assert_eq!(*line, 341);
                }
            }
            _ => prop_assert!(false, "judge_write {:?} but IdMap::new {:?}", judged, built),
        }
    }
}
