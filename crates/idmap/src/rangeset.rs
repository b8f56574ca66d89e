//! Sets of ids as sorted, disjoint, non-adjacent inclusive ranges.

use serde::{Deserialize, Serialize};

/// An inclusive range of ids `start..=end`; may cover the whole 32-bit space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IdRange {
    /// First id.
    pub start: u32,
    /// Last id (inclusive).
    pub end: u32,
}

impl IdRange {
    /// `start..=end`; `None` if `end < start`.
    pub fn new(start: u32, end: u32) -> Option<Self> {
        (start <= end).then_some(Self { start, end })
    }

    /// `len` ids from `start`; `None` if `len` is 0 or the range passes 4294967295.
    pub fn from_start_len(start: u32, len: u64) -> Option<Self> {
        if len == 0 {
            return None;
        }
        let end = start as u64 + len - 1;
        (end <= u32::MAX as u64).then_some(Self {
            start,
            end: end as u32,
        })
    }

    /// Number of ids (up to 2^32).
    pub fn len(&self) -> u64 {
        self.end as u64 - self.start as u64 + 1
    }

    /// Never empty; present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `id` is in the range.
    pub fn contains(&self, id: u32) -> bool {
        self.start <= id && id <= self.end
    }

    /// Whether the two ranges share an id.
    pub fn overlaps(&self, other: &IdRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }

    /// The shared ids.
    pub fn intersect(&self, other: &IdRange) -> Option<IdRange> {
        IdRange::new(self.start.max(other.start), self.end.min(other.end))
    }
}

impl std::fmt::Display for IdRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// A set of ids, kept as sorted, disjoint, non-adjacent ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdRangeSet {
    ranges: Vec<IdRange>,
}

impl IdRangeSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every id `0..=4294967295`.
    pub fn full() -> Self {
        Self {
            ranges: vec![IdRange {
                start: 0,
                end: u32::MAX,
            }],
        }
    }

    /// The union of any ranges, in any order, overlapping or not.
    pub fn from_ranges(ranges: impl IntoIterator<Item = IdRange>) -> Self {
        let mut v: Vec<IdRange> = ranges.into_iter().collect();
        v.sort_unstable();
        let mut out: Vec<IdRange> = Vec::with_capacity(v.len());
        for r in v {
            match out.last_mut() {
                Some(last) if r.start as u64 <= last.end as u64 + 1 => {
                    last.end = last.end.max(r.end)
                }
                _ => out.push(r),
            }
        }
        Self { ranges: out }
    }

    /// The ranges, sorted and disjoint.
    pub fn ranges(&self) -> &[IdRange] {
        &self.ranges
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Number of ids in the set.
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(IdRange::len).sum()
    }

    /// Index of the range holding `id`.
    fn find(&self, id: u32) -> Option<usize> {
        let i = self.ranges.partition_point(|r| r.start <= id);
        (i > 0 && self.ranges[i - 1].end >= id).then(|| i - 1)
    }

    /// Whether `id` is in the set.
    pub fn contains(&self, id: u32) -> bool {
        self.find(id).is_some()
    }

    /// Whether every id of `range` is in the set.
    pub fn contains_range(&self, range: IdRange) -> bool {
        self.find(range.start)
            .is_some_and(|i| self.ranges[i].end >= range.end)
    }

    /// Whether any id of `range` is in the set.
    pub fn overlaps_range(&self, range: IdRange) -> bool {
        let i = self.ranges.partition_point(|r| r.end < range.start);
        i < self.ranges.len() && self.ranges[i].start <= range.end
    }

    /// Add a range.
    pub fn insert(&mut self, range: IdRange) {
        *self = self.union(&IdRangeSet {
            ranges: vec![range],
        });
    }

    /// Remove a range.
    pub fn remove(&mut self, range: IdRange) {
        *self = self.difference(&IdRangeSet {
            ranges: vec![range],
        });
    }

    /// Ids in either set.
    pub fn union(&self, other: &IdRangeSet) -> IdRangeSet {
        IdRangeSet::from_ranges(self.ranges.iter().chain(&other.ranges).copied())
    }

    /// Ids in both sets.
    pub fn intersection(&self, other: &IdRangeSet) -> IdRangeSet {
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        while i < self.ranges.len() && j < other.ranges.len() {
            let (a, b) = (self.ranges[i], other.ranges[j]);
            if let Some(r) = a.intersect(&b) {
                out.push(r);
            }
            if a.end < b.end {
                i += 1;
            } else {
                j += 1;
            }
        }
        IdRangeSet { ranges: out }
    }

    /// Ids in `self` but not in `other`.
    pub fn difference(&self, other: &IdRangeSet) -> IdRangeSet {
        let mut out = Vec::new();
        let mut j = 0;
        for &r in &self.ranges {
            let mut start = r.start as u64;
            let end = r.end as u64;
            while j < other.ranges.len() && (other.ranges[j].end as u64) < start {
                j += 1;
            }
            let mut k = j;
            while k < other.ranges.len() && other.ranges[k].start as u64 <= end {
                let o = other.ranges[k];
                if o.start as u64 > start {
                    out.push(IdRange {
                        start: start as u32,
                        end: o.start - 1,
                    });
                }
                start = o.end as u64 + 1;
                if start > end {
                    break;
                }
                k += 1;
            }
            if start <= end {
                out.push(IdRange {
                    start: start as u32,
                    end: end as u32,
                });
            }
        }
        IdRangeSet { ranges: out }
    }

    /// Ids not in the set.
    pub fn complement(&self) -> IdRangeSet {
        IdRangeSet::full().difference(self)
    }

    /// The lowest start `s` with `s % align == 0`, `lo <= s` and `s + size - 1 <= hi`, such that
    /// `s..s+size` lies wholly inside the set (first fit). `align` 0 is treated as 1.
    pub fn first_fit(&self, size: u64, align: u32, lo: u32, hi: u32) -> Option<u32> {
        if size == 0 || lo > hi {
            return None;
        }
        let align = align.max(1) as u64;
        let i = self.ranges.partition_point(|r| r.end < lo);
        for r in &self.ranges[i..] {
            let start = (r.start.max(lo) as u64).div_ceil(align) * align;
            let end = r.end.min(hi) as u64;
            if r.start > hi {
                break;
            }
            if start.checked_add(size - 1).is_some_and(|last| last <= end) {
                return Some(start as u32);
            }
        }
        None
    }
}

impl std::fmt::Display for IdRangeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}
