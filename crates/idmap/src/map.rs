//! Extents and maps, with the kernel's lookups (`map_id_down`, `map_id_range_down`, `map_id_up`).

use serde::{Deserialize, Serialize};

use crate::id::{INVALID_ID, MAX_BASE_EXTENTS, MAX_EXTENTS};
use crate::rangeset::{IdRange, IdRangeSet};
use crate::Error;

/// One line of a map: ids `first..first+count` of the namespace map onto
/// `lower_first..lower_first+count` of the parent (or, in a kernel map, onto kernel ids).
#[doc(alias = "uid_gid_extent")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Extent {
    /// First id inside the namespace.
    pub first: u32,
    /// First id in the parent's (or the kernel's) numbering.
    pub lower_first: u32,
    /// Number of ids; never 0 in a valid map.
    pub count: u32,
}

impl Extent {
    /// A new extent (not validated).
    pub const fn new(first: u32, lower_first: u32, count: u32) -> Self {
        Self {
            first,
            lower_first,
            count,
        }
    }

    /// The last id of the upper range, computed without wrap-around.
    pub fn upper_last(&self) -> u64 {
        self.first as u64 + self.count as u64 - 1
    }

    /// The last id of the lower range, computed without wrap-around.
    pub fn lower_last(&self) -> u64 {
        self.lower_first as u64 + self.count as u64 - 1
    }

    /// The upper range as an [`IdRange`]; `None` for a zero-count or overflowing extent.
    pub fn upper(&self) -> Option<IdRange> {
        IdRange::from_start_len(self.first, self.count as u64)
    }

    /// The lower range as an [`IdRange`].
    pub fn lower(&self) -> Option<IdRange> {
        IdRange::from_start_len(self.lower_first, self.count as u64)
    }
}

impl std::fmt::Display for Extent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.first, self.lower_first, self.count)
    }
}

/// A user-namespace ID map: up to 340 non-overlapping extents.
///
/// The extents are kept in the order they were written (the kernel lists maps of up to five
/// extents that way) and in two sorted copies for lookups: by `first` for mapping down and by
/// `lower_first` for mapping up. Lookups are a branch-free binary search over a dense array of
/// range starts, so a 340-extent map costs nine comparisons.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct IdMap {
    written: Vec<Extent>,
    fwd_first: Vec<u32>,
    fwd: Vec<Extent>,
    rev_lower: Vec<u32>,
    rev: Vec<Extent>,
}

impl std::fmt::Debug for IdMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.written).finish()
    }
}

impl Serialize for IdMap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.written.serialize(s)
    }
}

impl<'de> Deserialize<'de> for IdMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let extents = Vec::<Extent>::deserialize(d)?;
        IdMap::new(extents).map_err(serde::de::Error::custom)
    }
}

/// Lanes compared at once when counting starts; the sorted start arrays are padded to a multiple.
const LANES: usize = 8;

/// Index of the last start `<= key`, or `None`, in a sorted, `u32::MAX`-padded array of starts.
///
/// `key` must not be `u32::MAX` (no extent can hold it), so padding never counts. A branch-free
/// binary search over blocks of `LANES` starts picks one block, which is then counted with a
/// compare-and-sum the compiler vectorises; no branch depends on the data.
#[inline(always)]
fn last_le(starts: &[u32], key: u32) -> Option<usize> {
    debug_assert!(starts.len() % LANES == 0 && key != u32::MAX);
    let mut base = 0usize;
    let mut len = starts.len() / LANES;
    while len > 1 {
        let half = len / 2;
        // Arithmetic rather than `if`, so it compiles to a conditional move, not a branch.
        base += (starts[(base + half) * LANES] <= key) as usize * half;
        len -= half;
    }
    let lanes: &[u32; LANES] = starts
        .get(base * LANES..base * LANES + LANES)?
        .try_into()
        .ok()?;
    let rank = lanes.iter().map(|&s| (s <= key) as u32).sum::<u32>() as usize;
    rank.checked_sub(1).map(|r| base * LANES + r)
}

fn padded(starts: impl Iterator<Item = u32>, n: usize) -> Vec<u32> {
    let mut v: Vec<u32> = starts.collect();
    v.resize(n.div_ceil(LANES) * LANES, u32::MAX);
    v
}

/// Why a set of extents is not a map, as the kernel's `map_write` parse loop judges it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "kebab-case")]
pub enum ExtentRule {
    /// `first` or `lower_first` is 4294967295.
    ReservedId,
    /// `count` is zero or the upper or lower range wraps past 4294967295.
    ZeroOrWrap,
    /// The upper or lower range overlaps an earlier extent (index given).
    Overlap {
        /// Index of the earlier extent it overlaps.
        with: usize,
        /// Whether the lower ranges overlap (else the upper ones).
        lower: bool,
    },
    /// More than 340 extents.
    TooMany,
    /// No extents at all.
    Empty,
}

impl std::fmt::Display for ExtentRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExtentRule::ReservedId => {
                f.write_str("4294967295 is reserved and cannot start an extent")
            }
            ExtentRule::ZeroOrWrap => {
                f.write_str("count is zero or the range wraps past 4294967295")
            }
            ExtentRule::Overlap { with, lower } => write!(
                f,
                "its {} range overlaps extent {}",
                if *lower {
                    "lower (parent)"
                } else {
                    "upper (namespace)"
                },
                with + 1
            ),
            ExtentRule::TooMany => write!(f, "a map holds at most {MAX_EXTENTS} extents"),
            ExtentRule::Empty => f.write_str("a map needs at least one extent"),
        }
    }
}

/// Check one extent against those before it, exactly as `map_write` does (in its order).
pub(crate) fn check_extent(before: &[Extent], e: &Extent) -> Result<(), ExtentRule> {
    if e.first == INVALID_ID || e.lower_first == INVALID_ID {
        return Err(ExtentRule::ReservedId);
    }
    if e.first.wrapping_add(e.count) <= e.first
        || e.lower_first.wrapping_add(e.count) <= e.lower_first
    {
        return Err(ExtentRule::ZeroOrWrap);
    }
    // mappings_overlap: inclusive intervals, upper then lower, per earlier extent.
    for (i, p) in before.iter().enumerate() {
        let (a0, a1) = (e.first as u64, e.upper_last());
        let (b0, b1) = (p.first as u64, p.upper_last());
        if a0 <= b1 && b0 <= a1 {
            return Err(ExtentRule::Overlap {
                with: i,
                lower: false,
            });
        }
        let (a0, a1) = (e.lower_first as u64, e.lower_last());
        let (b0, b1) = (p.lower_first as u64, p.lower_last());
        if a0 <= b1 && b0 <= a1 {
            return Err(ExtentRule::Overlap {
                with: i,
                lower: true,
            });
        }
    }
    Ok(())
}

impl IdMap {
    /// The map of a container given a `main` host range and an optional `top` one: namespace ids
    /// from 0 onto `main`, and the namespace's highest ids (ending at 4294967294) onto `top`
    /// (seed 004's dynamic ids near 2^32). Ranges never hold 4294967295.
    pub fn from_base_and_top(
        main: crate::IdRange,
        top: Option<crate::IdRange>,
    ) -> Result<Self, Error> {
        let mut ext = vec![Extent::new(0, main.start, main.len() as u32)];
        if let Some(h) = top {
            ext.push(Extent::new(
                (u32::MAX as u64 - h.len()) as u32,
                h.start,
                h.len() as u32,
            ));
        }
        Self::new(ext)
    }

    /// Build a map from extents in written order, applying the kernel's structural rules
    /// (reserved id, zero count and wrap-around, overlaps, at most 340, at least one).
    pub fn new(extents: impl Into<Vec<Extent>>) -> Result<Self, Error> {
        let extents = extents.into();
        if extents.is_empty() {
            return Err(Error::Extent {
                index: 0,
                extent: None,
                rule: ExtentRule::Empty,
            });
        }
        for (i, e) in extents.iter().enumerate() {
            if i >= MAX_EXTENTS {
                return Err(Error::Extent {
                    index: i,
                    extent: Some(*e),
                    rule: ExtentRule::TooMany,
                });
            }
            check_extent(&extents[..i], e).map_err(|rule| Error::Extent {
                index: i,
                extent: Some(*e),
                rule,
            })?;
        }
        Ok(Self::from_checked(extents))
    }

    /// A map that was already checked. Internal: every constructor goes through `new` or keeps its laws.
    pub(crate) fn from_checked(written: Vec<Extent>) -> Self {
        let mut fwd = written.clone();
        fwd.sort_unstable_by_key(|e| e.first);
        let mut rev = written.clone();
        rev.sort_unstable_by_key(|e| e.lower_first);
        let fwd_first = padded(fwd.iter().map(|e| e.first), fwd.len());
        let rev_lower = padded(rev.iter().map(|e| e.lower_first), rev.len());
        Self {
            fwd_first,
            rev_lower,
            written,
            fwd,
            rev,
        }
    }

    /// The empty map of a namespace whose map was never written: nothing maps.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The initial namespace's map: `0 0 4294967295`, the identity on every valid id.
    pub fn identity() -> Self {
        Self::from_checked(vec![Extent::new(0, 0, u32::MAX)])
    }

    /// Extents in written order.
    pub fn extents(&self) -> &[Extent] {
        &self.written
    }

    /// Extents sorted by `first`.
    pub fn sorted(&self) -> &[Extent] {
        &self.fwd
    }

    /// Number of extents.
    pub fn len(&self) -> usize {
        self.written.len()
    }

    /// Whether the map is empty (never written).
    pub fn is_empty(&self) -> bool {
        self.written.is_empty()
    }

    /// Extents in the order the kernel lists them in /proc: written order up to five, else sorted.
    pub fn display_order(&self) -> &[Extent] {
        if self.written.len() <= MAX_BASE_EXTENTS {
            &self.written
        } else {
            &self.fwd
        }
    }

    /// The extent whose upper range holds `id`.
    #[inline]
    pub fn extent_down(&self, id: u32) -> Option<&Extent> {
        if let [e] = self.fwd.as_slice() {
            // One extent (the common case): a single wrapping compare covers `id < first` too,
            // since `first + count` never passes 4294967295.
            return (id.wrapping_sub(e.first) < e.count).then_some(e);
        }
        if id == u32::MAX || self.fwd.is_empty() {
            return None;
        }
        let i = last_le(&self.fwd_first, id)?;
        let e = &self.fwd[i];
        (id - e.first < e.count).then_some(e)
    }

    /// The extent whose lower range holds `id`.
    #[inline]
    pub fn extent_up(&self, id: u32) -> Option<&Extent> {
        if let [e] = self.rev.as_slice() {
            return (id.wrapping_sub(e.lower_first) < e.count).then_some(e);
        }
        if id == u32::MAX || self.rev.is_empty() {
            return None;
        }
        let i = last_le(&self.rev_lower, id)?;
        let e = &self.rev[i];
        (id - e.lower_first < e.count).then_some(e)
    }

    /// `map_id_down`: a namespace id to the parent's (or kernel) id; `None` where the kernel gives -1.
    #[doc(alias = "map_id_down")]
    #[doc(alias = "make_kuid")]
    #[inline]
    pub fn map_down(&self, id: u32) -> Option<u32> {
        self.extent_down(id).map(|e| id - e.first + e.lower_first)
    }

    /// `map_id_range_down`: the whole range `[id, id+count)` must lie in one extent.
    #[doc(alias = "map_id_range_down")]
    pub fn map_range_down(&self, id: u32, count: u32) -> Option<u32> {
        if count == 0 {
            return None;
        }
        let e = self.extent_down(id)?;
        let last = id as u64 + count as u64 - 1;
        (last <= e.upper_last()).then(|| id - e.first + e.lower_first)
    }

    /// `map_id_up`: a parent (or kernel) id to the namespace's id; `None` where the kernel gives -1.
    #[doc(alias = "map_id_up")]
    #[doc(alias = "from_kuid")]
    #[inline]
    pub fn map_up(&self, id: u32) -> Option<u32> {
        self.extent_up(id).map(|e| id - e.lower_first + e.first)
    }

    /// `from_kuid_munged`: as `map_up`, with unmapped ids shown as the overflow id.
    #[doc(alias = "from_kuid_munged")]
    pub fn map_up_munged(&self, id: u32, overflow: u32) -> u32 {
        self.map_up(id).unwrap_or(overflow)
    }

    /// The ids of the namespace that map (the union of the upper ranges).
    pub fn upper_set(&self) -> IdRangeSet {
        IdRangeSet::from_ranges(self.written.iter().filter_map(Extent::upper))
    }

    /// The parent (or kernel) ids the namespace reaches (the union of the lower ranges).
    pub fn lower_set(&self) -> IdRangeSet {
        IdRangeSet::from_ranges(self.written.iter().filter_map(Extent::lower))
    }

    /// The map in the write format: one `first lower count` line per extent.
    pub fn to_write_format(&self) -> String {
        let mut s = String::new();
        for e in &self.written {
            s.push_str(&format!("{} {} {}\n", e.first, e.lower_first, e.count));
        }
        s
    }

    /// The map as `/proc/PID/uid_map` shows it to a reader in the initial namespace
    /// (this map must be a kernel map, lower ids being kernel ids).
    pub fn to_proc_format(&self) -> String {
        self.render_proc(&IdMap::identity())
    }

    /// The map as `/proc/PID/uid_map` shows it to a reader whose namespace has kernel map
    /// `viewer` (`uid_m_show`): each lower start is translated up into the reader's ids, and
    /// shown as 4294967295 where it does not map. Pass the parent's kernel map when the reader
    /// lives in the map's own namespace, as the kernel does.
    #[doc(alias = "uid_m_show")]
    pub fn render_proc(&self, viewer: &IdMap) -> String {
        let mut s = String::new();
        for e in self.display_order() {
            let lower = viewer.map_up(e.lower_first).unwrap_or(INVALID_ID);
            s.push_str(&format!("{:>10} {:>10} {:>10}\n", e.first, lower, e.count));
        }
        s
    }
}

impl std::fmt::Display for IdMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_write_format())
    }
}
