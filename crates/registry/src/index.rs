//! The free-extent index: O(log n) aligned first fit.
//!
//! Free ids of one window are kept as maximal extents (never adjacent, never overlapping) in a
//! treap ordered by start. The alignment `a` is fixed per index, which makes "does a range of
//! `size` ids with an `a`-aligned start fit in extent `[s, e]`" a threshold on one number per
//! extent, its *aligned room* `e + 1 - roundup(s, a)` (0 when no aligned id lies in the extent):
//! the first aligned start is the best one the extent offers. Every node also keeps the maximum
//! aligned room of its subtree, so the lowest fitting extent is found by one descent: go left
//! while the left subtree's maximum suffices, else take this node if it suffices, else go right.
//! No backtracking, so first fit, insertion, removal, predecessor and successor are all
//! O(depth) = O(log n) expected, with n the number of free extents (at most live ranges plus
//! excluded pieces plus one). All arithmetic is in u64; ids stay u32.
//!
//! Nodes live in a `Vec` arena with a free list (no `unsafe`, no `Rc`). Priorities come from a
//! SplitMix64 stream seeded from the standard library's per-process random hasher keys, so the
//! shape does not depend on the order ranges arrive in.

use credns_idmap::IdRange;

const NIL: u32 = u32::MAX;

#[derive(Clone, Debug)]
struct Node {
    start: u32,
    end: u32,
    prio: u64,
    left: u32,
    right: u32,
    room: u64,
    max_room: u64,
}

/// Free extents of one window with aligned first fit.
#[derive(Clone, Debug)]
pub(crate) struct FreeIndex {
    align: u64,
    nodes: Vec<Node>,
    spare: Vec<u32>,
    root: u32,
    len: usize,
    ids: u64,
    rng: u64,
}

impl FreeIndex {
    /// An empty index whose ranges start at multiples of `align` (0 is taken as 1).
    pub(crate) fn new(align: u32) -> Self {
        use std::hash::BuildHasher;
        let seed = std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64);
        Self {
            align: align.max(1) as u64,
            nodes: Vec::new(),
            spare: Vec::new(),
            root: NIL,
            len: 0,
            ids: 0,
            rng: seed,
        }
    }

    /// An index holding `ranges`, which must be sorted, disjoint and non-adjacent.
    pub(crate) fn from_sorted(align: u32, ranges: &[IdRange]) -> Self {
        let mut ix = Self::new(align);
        ix.nodes.reserve(ranges.len());
        // Ascending keys: build by a right-spine stack (Cartesian tree), O(n).
        let mut spine: Vec<u32> = Vec::new();
        for r in ranges {
            debug_assert!(spine
                .last()
                .map_or(true, |&t| ix.nodes[t as usize].end as u64 + 1
                    < r.start as u64));
            let n = ix.alloc_node(r.start, r.end);
            let mut last = NIL;
            while let Some(&t) = spine.last() {
                if ix.nodes[t as usize].prio > ix.nodes[n as usize].prio {
                    break;
                }
                spine.pop();
                ix.pull(t);
                last = t;
            }
            ix.nodes[n as usize].left = last;
            if let Some(&t) = spine.last() {
                ix.nodes[t as usize].right = n;
            }
            spine.push(n);
            ix.len += 1;
            ix.ids += r.len();
        }
        // The bottom of the spine has the highest priority: the root.
        ix.root = spine.first().copied().unwrap_or(NIL);
        while let Some(t) = spine.pop() {
            ix.pull(t);
        }
        ix
    }

    fn next_prio(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn room_of(&self, start: u32, end: u32) -> u64 {
        let s0 = (start as u64).div_ceil(self.align) * self.align;
        (end as u64 + 1).saturating_sub(s0)
    }

    fn alloc_node(&mut self, start: u32, end: u32) -> u32 {
        let room = self.room_of(start, end);
        let node = Node {
            start,
            end,
            prio: self.next_prio(),
            left: NIL,
            right: NIL,
            room,
            max_room: room,
        };
        match self.spare.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        }
    }

    fn max_room(&self, t: u32) -> u64 {
        if t == NIL {
            0
        } else {
            self.nodes[t as usize].max_room
        }
    }

    fn pull(&mut self, t: u32) {
        let n = &self.nodes[t as usize];
        let m = n
            .room
            .max(self.max_room(n.left))
            .max(self.max_room(n.right));
        self.nodes[t as usize].max_room = m;
    }

    /// Split `t` into (starts < key, starts >= key).
    fn split(&mut self, t: u32, key: u64) -> (u32, u32) {
        if t == NIL {
            return (NIL, NIL);
        }
        if (self.nodes[t as usize].start as u64) < key {
            let (l, r) = self.split(self.nodes[t as usize].right, key);
            self.nodes[t as usize].right = l;
            self.pull(t);
            (t, r)
        } else {
            let (l, r) = self.split(self.nodes[t as usize].left, key);
            self.nodes[t as usize].left = r;
            self.pull(t);
            (l, t)
        }
    }

    /// Join two treaps, every start of `a` below every start of `b`.
    fn merge(&mut self, a: u32, b: u32) -> u32 {
        if a == NIL {
            return b;
        }
        if b == NIL {
            return a;
        }
        if self.nodes[a as usize].prio > self.nodes[b as usize].prio {
            let r = self.merge(self.nodes[a as usize].right, b);
            self.nodes[a as usize].right = r;
            self.pull(a);
            a
        } else {
            let l = self.merge(a, self.nodes[b as usize].left);
            self.nodes[b as usize].left = l;
            self.pull(b);
            b
        }
    }

    fn insert_raw(&mut self, start: u32, end: u32) {
        let n = self.alloc_node(start, end);
        let (l, r) = self.split(self.root, start as u64);
        let l = self.merge(l, n);
        self.root = self.merge(l, r);
        self.len += 1;
        self.ids += end as u64 - start as u64 + 1;
    }

    fn remove_raw(&mut self, start: u32) -> Option<IdRange> {
        let (l, r) = self.split(self.root, start as u64);
        let (m, r) = self.split(r, start as u64 + 1);
        self.root = self.merge(l, r);
        if m == NIL {
            return None;
        }
        let n = &self.nodes[m as usize];
        debug_assert!(n.left == NIL && n.right == NIL);
        let out = IdRange {
            start: n.start,
            end: n.end,
        };
        self.spare.push(m);
        self.len -= 1;
        self.ids -= out.len();
        Some(out)
    }

    /// The extent with the largest start `<= key`.
    fn floor(&self, key: u64) -> Option<IdRange> {
        let (mut t, mut best) = (self.root, None);
        while t != NIL {
            let n = &self.nodes[t as usize];
            if n.start as u64 <= key {
                best = Some(IdRange {
                    start: n.start,
                    end: n.end,
                });
                t = n.right;
            } else {
                t = n.left;
            }
        }
        best
    }

    /// The extent with the smallest start `>= key`.
    fn ceil(&self, key: u64) -> Option<IdRange> {
        let (mut t, mut best) = (self.root, None);
        while t != NIL {
            let n = &self.nodes[t as usize];
            if n.start as u64 >= key {
                best = Some(IdRange {
                    start: n.start,
                    end: n.end,
                });
                t = n.left;
            } else {
                t = n.right;
            }
        }
        best
    }

    /// The lowest aligned start of a free run of `size` ids, if any.
    pub(crate) fn first_fit(&self, size: u64) -> Option<u32> {
        if size == 0 || self.max_room(self.root) < size {
            return None;
        }
        let mut t = self.root;
        loop {
            let n = &self.nodes[t as usize];
            if self.max_room(n.left) >= size {
                t = n.left;
            } else if n.room >= size {
                return Some(((n.start as u64).div_ceil(self.align) * self.align) as u32);
            } else {
                t = n.right;
            }
        }
    }

    /// The size of the largest aligned block that could be allocated now.
    pub(crate) fn largest(&self) -> u64 {
        self.max_room(self.root)
    }

    /// Number of free ids.
    pub(crate) fn free_ids(&self) -> u64 {
        self.ids
    }

    /// Whether `id` is free.
    pub(crate) fn contains(&self, id: u32) -> bool {
        self.floor(id as u64).is_some_and(|r| r.end >= id)
    }

    /// Give the extent starting at `key` new bounds that keep its place in the order (no other
    /// extent starts between its old and new start). One descent; aggregates fixed on the way up.
    fn modify(&mut self, key: u32, start: u32, end: u32) {
        fn go(ix: &mut FreeIndex, t: u32, key: u32, start: u32, end: u32) -> u64 {
            debug_assert!(t != NIL, "no extent starts at {key}");
            let n = &ix.nodes[t as usize];
            let old = if key < n.start {
                go(ix, n.left, key, start, end)
            } else if key > n.start {
                go(ix, n.right, key, start, end)
            } else {
                let old = n.end as u64 - n.start as u64 + 1;
                let room = ix.room_of(start, end);
                let n = &mut ix.nodes[t as usize];
                (n.start, n.end, n.room) = (start, end, room);
                old
            };
            ix.pull(t);
            old
        }
        let old = go(self, self.root, key, start, end);
        self.ids = self.ids - old + (end as u64 - start as u64 + 1);
    }

    /// Mark `range` free. It must not overlap a free extent; it is merged with adjacent ones.
    pub(crate) fn free(&mut self, range: IdRange) {
        let pred = range
            .start
            .checked_sub(1)
            .and_then(|k| self.floor(k as u64));
        debug_assert!(
            pred.map_or(true, |p| p.end < range.start),
            "freeing {range} overlaps free {pred:?}"
        );
        let pred = pred.filter(|p| p.end as u64 + 1 == range.start as u64);
        let succ = self.ceil(range.start as u64);
        debug_assert!(
            succ.map_or(true, |s| s.start > range.end),
            "freeing {range} overlaps free {succ:?}"
        );
        let succ = succ.filter(|s| s.start as u64 == range.end as u64 + 1);
        match (pred, succ) {
            (Some(p), Some(s)) => {
                self.remove_raw(s.start);
                self.modify(p.start, p.start, s.end);
            }
            (Some(p), None) => self.modify(p.start, p.start, range.end),
            (None, Some(s)) => self.modify(s.start, range.start, s.end),
            (None, None) => self.insert_raw(range.start, range.end),
        }
    }

    /// Mark every id of `range` taken, wherever free extents overlap it. O((k + 1) log n) for k
    /// overlapped extents; an allocation found by [`first_fit`](Self::first_fit) has k = 1 and
    /// usually costs two descents (find, then trim in place).
    pub(crate) fn take(&mut self, range: IdRange) {
        let mut cursor = match self.floor(range.start as u64) {
            Some(p) if p.end >= range.start => Some(p),
            _ => self.ceil(range.start as u64),
        };
        while let Some(x) = cursor.filter(|x| x.start <= range.end) {
            match (x.start < range.start, x.end > range.end) {
                (false, false) => {
                    self.remove_raw(x.start);
                }
                (true, false) => self.modify(x.start, x.start, range.start - 1),
                (false, true) => {
                    self.modify(x.start, range.end + 1, x.end);
                    break;
                }
                (true, true) => {
                    self.modify(x.start, x.start, range.start - 1);
                    self.insert_raw(range.end + 1, x.end);
                    break;
                }
            }
            cursor = self.ceil(x.end as u64 + 1);
        }
    }

    /// Every free extent, ascending.
    pub(crate) fn extents(&self) -> Vec<IdRange> {
        let mut out = Vec::with_capacity(self.len);
        let mut stack = Vec::new();
        let mut t = self.root;
        while t != NIL || !stack.is_empty() {
            while t != NIL {
                stack.push(t);
                t = self.nodes[t as usize].left;
            }
            let Some(n) = stack.pop() else { break };
            let node = &self.nodes[n as usize];
            out.push(IdRange {
                start: node.start,
                end: node.end,
            });
            t = node.right;
        }
        out
    }

    /// Check the treap's laws (order, heap, aggregates, maximality). For tests.
    #[cfg(test)]
    pub(crate) fn check(&self) {
        fn walk(ix: &FreeIndex, t: u32, lo: u64, hi: u64) -> (u64, usize, u64) {
            if t == NIL {
                return (0, 0, 0);
            }
            let n = &ix.nodes[t as usize];
            assert!(lo <= n.start as u64 && (n.start as u64) < hi, "order");
            for c in [n.left, n.right] {
                if c != NIL {
                    assert!(ix.nodes[c as usize].prio <= n.prio, "heap");
                }
            }
            assert_eq!(n.room, ix.room_of(n.start, n.end));
            let (lm, lc, li) = walk(ix, n.left, lo, n.start as u64);
            let (rm, rc, ri) = walk(ix, n.right, n.start as u64 + 1, hi);
            let m = n.room.max(lm).max(rm);
            assert_eq!(n.max_room, m, "aggregate");
            (
                m,
                lc + rc + 1,
                li + ri + (n.end as u64 - n.start as u64 + 1),
            )
        }
        let (_, count, ids) = walk(self, self.root, 0, u64::MAX);
        assert_eq!(count, self.len);
        assert_eq!(ids, self.ids);
        let ext = self.extents();
        for w in ext.windows(2) {
            assert!(
                (w[0].end as u64) + 1 < w[1].start as u64,
                "extents {} and {} touch",
                w[0],
                w[1]
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use credns_idmap::IdRangeSet;
    use proptest::prelude::*;

    fn r(a: u32, b: u32) -> IdRange {
        IdRange { start: a, end: b }
    }

    #[test]
    fn first_fit_honours_alignment_not_just_length() {
        // [5, 20] is 16 long but its first 16-aligned id is 16: room 5.
        let ix = FreeIndex::from_sorted(16, &[r(5, 20), r(40, 60), r(100, 200)]);
        ix.check();
        assert_eq!(ix.first_fit(5), Some(16));
        assert_eq!(ix.first_fit(6), Some(48));
        assert_eq!(ix.first_fit(14), Some(112));
        assert_eq!(ix.first_fit(89), Some(112));
        assert_eq!(ix.first_fit(90), None);
        assert_eq!(ix.largest(), 89);
    }

    #[test]
    fn free_coalesces_and_take_splits() {
        let mut ix = FreeIndex::new(1);
        ix.free(r(10, 19));
        ix.free(r(30, 39));
        ix.free(r(20, 29));
        assert_eq!(ix.extents(), vec![r(10, 39)]);
        ix.take(r(15, 16));
        assert_eq!(ix.extents(), vec![r(10, 14), r(17, 39)]);
        ix.take(r(0, 12));
        ix.take(r(39, u32::MAX));
        assert_eq!(ix.extents(), vec![r(13, 14), r(17, 38)]);
        ix.take(r(14, 17));
        assert_eq!(ix.extents(), vec![r(13, 13), r(18, 38)]);
        ix.free(r(u32::MAX - 1, u32::MAX));
        ix.free(r(0, 0));
        assert_eq!(
            ix.extents(),
            vec![r(0, 0), r(13, 13), r(18, 38), r(u32::MAX - 1, u32::MAX)]
        );
        assert!(ix.contains(u32::MAX) && ix.contains(0) && !ix.contains(12));
        ix.check();
    }

    #[test]
    fn whole_space_has_no_overflow() {
        let mut ix = FreeIndex::from_sorted(65_536, &[r(0, u32::MAX)]);
        assert_eq!(ix.largest(), 1 << 32);
        assert_eq!(ix.first_fit(1 << 32), Some(0));
        ix.take(r(0, 65_535));
        assert_eq!(ix.first_fit(65_536), Some(65_536));
        assert_eq!(ix.largest(), (1 << 32) - 65_536);
        assert_eq!(ix.free_ids(), (1 << 32) - 65_536);
    }

    proptest! {
        /// Against `IdRangeSet::first_fit` over the same free set, after random frees and takes.
        #[test]
        fn matches_rangeset_first_fit(
            align in prop::sample::select(vec![1u32, 3, 16, 4096]),
            ops in prop::collection::vec((any::<bool>(), 0u32..20_000, 1u32..3_000), 1..80),
            sizes in prop::collection::vec(1u64..6_000, 1..8),
        ) {
            let mut ix = FreeIndex::new(align);
            let mut model = IdRangeSet::new();
            for (free, start, len) in ops {
                let range = r(start, start + len - 1);
                if free {
                    for piece in IdRangeSet::from_ranges([range]).difference(&model).ranges() {
                        ix.free(*piece);
                    }
                    model.insert(range);
                } else {
                    ix.take(range);
                    model.remove(range);
                }
                prop_assert_eq!(ix.extents(), model.ranges().to_vec());
                for &size in &sizes {
                    prop_assert_eq!(ix.first_fit(size), model.first_fit(size, align, 0, u32::MAX));
                }
            }
            ix.check();
            let rebuilt = FreeIndex::from_sorted(align, model.ranges());
            rebuilt.check();
            prop_assert_eq!(rebuilt.extents(), model.ranges().to_vec());
        }
    }
}
