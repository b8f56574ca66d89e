//! Map algebra: composing a namespace's map with its parent's (down to kernel ids), carving a
//! child map along the parent's extent boundaries (seed 003), inversion, overlap, and chains.

use crate::id::{INVALID_ID, MAX_EXTENTS, OVERFLOW_ID};
use crate::map::{Extent, IdMap};
use crate::rangeset::{IdRange, IdRangeSet};
use crate::Error;

impl IdMap {
    /// What the kernel installs when this map is written below a namespace whose kernel map is
    /// `parent`: each extent's lower range must lie inside one parent extent (`map_id_range_down`),
    /// else the write fails with EPERM. The result maps straight to kernel ids.
    pub fn compose_strict(&self, parent: &IdMap) -> Result<IdMap, Error> {
        let mut out = Vec::with_capacity(self.len());
        for (index, e) in self.extents().iter().enumerate() {
            match parent.map_range_down(e.lower_first, e.count) {
                Some(lower_first) => out.push(Extent { lower_first, ..*e }),
                None => return Err(Error::NotInOneParentExtent { index, extent: *e }),
            }
        }
        Ok(IdMap::from_checked(out))
    }

    /// The relational composition `parent ∘ self`: ids of this namespace that reach the parent
    /// and on through `parent`, split wherever the parent's extents split. Ids the parent does
    /// not map are dropped. The result may exceed 340 extents; it is a mathematical map, not
    /// something the kernel would accept in one write (see [`IdMap::carve`] for that).
    pub fn compose(&self, parent: &IdMap) -> Vec<Extent> {
        let mut out = Vec::new();
        for e in self.sorted() {
            let lo = e.lower_first as u64;
            let hi = e.lower_last();
            // Parent extents, sorted by first, that meet [lo, hi].
            for p in parent.sorted() {
                let (p0, p1) = (p.first as u64, p.upper_last());
                let (s, t) = (lo.max(p0), hi.min(p1));
                if s > t {
                    continue;
                }
                out.push(Extent {
                    first: (e.first as u64 + (s - lo)) as u32,
                    lower_first: (p.lower_first as u64 + (s - p0)) as u32,
                    count: (t - s + 1) as u32,
                });
            }
        }
        out.sort_unstable_by_key(|e| e.first);
        out
    }

    /// Seed 003's carving: split this map's extents (lower ids in the parent's numbering) along
    /// the boundaries of the parent's kernel map so that every piece lies inside one parent
    /// extent, and the kernel accepts the result. Fails, naming the first id, if some lower id is
    /// not mapped by the parent, or if the result needs more than 340 extents.
    pub fn carve(&self, parent: &IdMap) -> Result<IdMap, Error> {
        let mut out = Vec::new();
        for e in self.extents() {
            let mut id = e.first as u64;
            let mut lower = e.lower_first as u64;
            let end = e.lower_last();
            while lower <= end {
                let p = parent
                    .extent_down(lower as u32)
                    .ok_or(Error::UnmappedInParent {
                        id: lower as u32,
                        extent: *e,
                    })?;
                let piece_end = end.min(p.upper_last());
                let count = piece_end - lower + 1;
                out.push(Extent::new(id as u32, lower as u32, count as u32));
                id += count;
                lower += count;
            }
        }
        if out.len() > MAX_EXTENTS {
            return Err(Error::CarveTooManyExtents { needed: out.len() });
        }
        Ok(IdMap::from_checked(out))
    }

    /// The inverse map: lower ids become upper ids. Valid because both sides are disjoint.
    pub fn invert(&self) -> IdMap {
        IdMap::from_checked(
            self.extents()
                .iter()
                .map(|e| Extent::new(e.lower_first, e.first, e.count))
                .collect(),
        )
    }

    /// The kernel ids that both maps reach (both must be kernel maps), as ranges.
    pub fn overlap(&self, other: &IdMap) -> IdRangeSet {
        self.lower_set().intersection(&other.lower_set())
    }

    /// For each overlapping piece: the range of kernel ids, and the ids it has in each namespace.
    pub fn overlap_detail(&self, other: &IdMap) -> Vec<Overlap> {
        self.overlap(other)
            .ranges()
            .iter()
            .flat_map(|r| split_by(self, other, *r))
            .collect()
    }
}

/// One piece of kernel ids reached by two maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Overlap {
    /// The kernel ids.
    pub kernel: IdRange,
    /// Their first id in the first namespace.
    pub first_in_a: u32,
    /// Their first id in the second namespace.
    pub first_in_b: u32,
}

fn split_by(a: &IdMap, b: &IdMap, r: IdRange) -> Vec<Overlap> {
    let mut out = Vec::new();
    let mut k = r.start as u64;
    while k <= r.end as u64 {
        let (Some(ea), Some(eb)) = (a.extent_up(k as u32), b.extent_up(k as u32)) else {
            break;
        };
        let end = (r.end as u64).min(ea.lower_last()).min(eb.lower_last());
        out.push(Overlap {
            kernel: IdRange {
                start: k as u32,
                end: end as u32,
            },
            first_in_a: (k - ea.lower_first as u64 + ea.first as u64) as u32,
            first_in_b: (k - eb.lower_first as u64 + eb.first as u64) as u32,
        });
        k = end + 1;
    }
    out
}

/// A namespace and its ancestors: each level's map as written (lower ids in its parent's
/// numbering). Level 0 is the initial namespace and has no entry; `levels[0]` is level 1.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NsChain {
    written: Vec<IdMap>,
    kernel: Vec<IdMap>,
}

impl NsChain {
    /// The initial namespace alone.
    pub fn init() -> Self {
        Self::default()
    }

    /// Chain from maps as written at each level below the initial namespace, composing each
    /// down to kernel ids as the kernel does when the map is written.
    pub fn from_written(levels: impl IntoIterator<Item = IdMap>) -> Result<Self, Error> {
        let mut chain = Self::init();
        for m in levels {
            chain = chain.child(m)?;
        }
        Ok(chain)
    }

    /// Chain from maps already in kernel ids at each level (as a host reader sees /proc).
    pub fn from_kernel(levels: impl IntoIterator<Item = IdMap>) -> Self {
        let kernel: Vec<IdMap> = levels.into_iter().collect();
        // The written form of each level: lower kernel ids translated up through the parent.
        let mut written = Vec::with_capacity(kernel.len());
        for (i, k) in kernel.iter().enumerate() {
            let w = if i == 0 {
                k.clone()
            } else {
                let parent = &kernel[i - 1];
                IdMap::from_checked(
                    k.extents()
                        .iter()
                        .map(|e| Extent {
                            lower_first: parent.map_up(e.lower_first).unwrap_or(INVALID_ID),
                            ..*e
                        })
                        .collect(),
                )
            };
            written.push(w);
        }
        Self { written, kernel }
    }

    /// A child namespace with `map` written (in this namespace's numbering).
    pub fn child(&self, map: IdMap) -> Result<Self, Error> {
        let kernel = map.compose_strict(self.kernel_map_ref())?;
        let mut next = self.clone();
        next.written.push(map);
        next.kernel.push(kernel);
        Ok(next)
    }

    /// Depth below the initial namespace (0 for init).
    pub fn level(&self) -> usize {
        self.kernel.len()
    }

    fn kernel_map_ref(&self) -> &IdMap {
        static IDENTITY: std::sync::OnceLock<IdMap> = std::sync::OnceLock::new();
        self.kernel
            .last()
            .unwrap_or_else(|| IDENTITY.get_or_init(IdMap::identity))
    }

    /// The namespace's map in kernel ids.
    pub fn kernel_map(&self) -> IdMap {
        self.kernel_map_ref().clone()
    }

    /// Maps as written at each level (level 1 first).
    pub fn written_maps(&self) -> &[IdMap] {
        &self.written
    }

    /// Kernel maps at each level (level 1 first).
    pub fn kernel_maps(&self) -> &[IdMap] {
        &self.kernel
    }

    /// An id of this namespace as a kernel id (`make_kuid`).
    pub fn to_kernel(&self, id: u32) -> Option<u32> {
        self.kernel_map_ref().map_down(id)
    }

    /// A kernel id as this namespace numbers it (`from_kuid`).
    pub fn from_kernel_id(&self, kid: u32) -> Option<u32> {
        self.kernel_map_ref().map_up(kid)
    }

    /// An id of this namespace as each level sees it, from the initial namespace (level 0) down.
    pub fn views(&self, id: u32) -> Vec<Option<u32>> {
        let Some(k) = self.to_kernel(id) else {
            return vec![None; self.level() + 1];
        };
        let mut v = vec![Some(k)];
        v.extend(self.kernel.iter().map(|m| m.map_up(k)));
        v
    }
}

/// Translate `id` of namespace `from` into namespace `to` through kernel ids; `None` where it
/// does not map (the kernel would show the overflow id, see [`munge`]).
pub fn translate(from: &NsChain, to: &NsChain, id: u32) -> Option<u32> {
    from.to_kernel(id).and_then(|k| to.from_kernel_id(k))
}

/// How a translated id is shown by `stat`, `getuid` and friends: unmapped becomes 65534.
pub fn munge(id: Option<u32>) -> u32 {
    id.unwrap_or(OVERFLOW_ID)
}
