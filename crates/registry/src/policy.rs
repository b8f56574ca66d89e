//! The allocation policy: where ranges come from, how big and how aligned they are, and how many
//! a user may hold. Plain data with serde; every field has a documented default.

use credns_idmap::{IdRange, IdRangeSet};
use serde::{Deserialize, Serialize};

use crate::Error;

/// First id of systemd's container window (`CONTAINER_UID_BASE_MIN`, `0x00080000`).
pub const CONTAINER_POOL_START: u32 = 524_288;
/// Last id of systemd's container window (`0x6FFFFFFF`; the last 64K-aligned base is 1878982656).
pub const CONTAINER_POOL_END: u32 = 1_879_048_191;
/// Ids per allocation unless asked otherwise: one 16-bit id space.
pub const DEFAULT_SIZE: u64 = 65_536;
/// Alignment of a range's first id unless configured otherwise: the upper 16 bits name the
/// container, the lower 16 bits are the id inside it (systemd's convention).
pub const DEFAULT_ALIGN: u32 = 65_536;
/// First id of the default high window (`0xF0000000`).
pub const HIGH_WINDOW_START: u32 = 0xF000_0000;
/// Last id of the default high window (`0xFFFFFFFE`: 4294967295 is never an id).
pub const HIGH_WINDOW_END: u32 = 0xFFFF_FFFE;
/// Default size of a high-window range: 65535, so that it can map a namespace's top ids
/// 4294901760..=4294967294 (its `(uid_t)-1` is never mapped).
pub const HIGH_DEFAULT_SIZE: u64 = 65_535;
/// Default cap on live ranges per non-root owner (systemd-nsresourced's `USERNS_PER_UID`).
pub const DEFAULT_MAX_RANGES: u32 = 256;
/// Default cap on ids held per non-root owner: 256 ranges of 65536 (16777216).
pub const DEFAULT_MAX_IDS: u64 = 256 * 65_536;

/// Everything the allocator decides by. `Policy::default()` is the documented default of each
/// field; a config file may name only the fields it changes (`#[serde(default)]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// The main pool, where every allocation's range comes from.
    pub pool: PoolConfig,
    /// The optional high window for an extra range near the top of the 32-bit space.
    pub high: HighWindow,
    /// Per-owner limits.
    pub quota: Quota,
}

/// The main pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Host id ranges to allocate from, in any order (overlaps are merged).
    /// Default: systemd's container window, `524288..=1879048191`.
    pub ranges: Vec<IdRange>,
    /// Ids per allocation when a request names no size. Default 65536. Any size from 1 up to the
    /// pool's size may be requested; sizes need not be multiples of the alignment.
    pub default_size: u64,
    /// Every range starts at a multiple of this (1 = no alignment). Default 65536.
    pub align: u32,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            ranges: vec![IdRange {
                start: CONTAINER_POOL_START,
                end: CONTAINER_POOL_END,
            }],
            default_size: DEFAULT_SIZE,
            align: DEFAULT_ALIGN,
        }
    }
}

/// An optional second range per allocation, from a window near the top of the 32-bit space, for
/// the "dynamic" ids a namespace may need right at the end of its own id space (network users,
/// transient users). Off by default.
///
/// Caveats of host ids at or above 2^31 (2147483648), which this window holds by default:
/// * userspace that keeps ids in a signed `int` sees them as negative (`%d` formatting, devpts'
///   `uid=`/`gid=` mount options, `setfsuid()` return values); systemd's UIDS-GIDS table marks the
///   whole region "avoid";
/// * 4294967295 is the kernel's `(uid_t)-1` and never valid, and the overflow ids 65534
///   (`kernel.overflowuid`/`overflowgid`, plus `fs.overflowuid` for filesystems with 16-bit ids)
///   are what such filesystems show for ids they cannot store;
/// * NFS (v3 and `sec=sys` v4) sends raw host ids to the server, which enforces them and does not
///   honour user namespaces; many network directories (AD/SSSD idmap ranges) also live up here,
///   so collisions with directory users are likelier than in the container window;
/// * filesystems with 16-bit ids (old ext2/minix, some FAT/ISO mount options) cannot store them;
/// * these ids are not covered by systemd-homed's idmapped homes or by most distributions'
///   `/etc/subuid` defaults, so files they own may be unreadable from outside the namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HighWindow {
    /// Whether high-window ranges may be allocated at all. Default `false`.
    pub enabled: bool,
    /// The window. Default `0xF0000000..=0xFFFFFFFE` (4026531840..=4294967294). Must not overlap
    /// the main pool.
    pub range: IdRange,
    /// Size of a high range when a request asks for the default one. Default 65535.
    pub default_size: u64,
    /// Alignment of a high range's first id. Default 65536.
    pub align: u32,
}

impl Default for HighWindow {
    fn default() -> Self {
        Self {
            enabled: false,
            range: IdRange {
                start: HIGH_WINDOW_START,
                end: HIGH_WINDOW_END,
            },
            default_size: HIGH_DEFAULT_SIZE,
            align: DEFAULT_ALIGN,
        }
    }
}

/// Limits per owner (the uid that asked). Root (owner 0) has none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quota {
    /// Most live ranges one non-root owner may hold. Default 256.
    pub max_ranges: u32,
    /// Most ids (main plus high ranges, uid side) one non-root owner may hold. Default 16777216.
    pub max_ids: u64,
}

impl Default for Quota {
    fn default() -> Self {
        Self {
            max_ranges: DEFAULT_MAX_RANGES,
            max_ids: DEFAULT_MAX_IDS,
        }
    }
}

/// Which window a range comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    /// The main pool.
    Main,
    /// The high window.
    High,
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Window::Main => "main pool",
            Window::High => "high window",
        })
    }
}

impl Policy {
    /// The main pool as a set.
    pub fn pool_set(&self) -> IdRangeSet {
        IdRangeSet::from_ranges(self.pool.ranges.iter().copied())
    }

    /// The high window as a set (empty when disabled).
    pub fn high_set(&self) -> IdRangeSet {
        if self.high.enabled {
            IdRangeSet::from_ranges([self.high.range])
        } else {
            IdRangeSet::new()
        }
    }

    /// Check the policy: a non-empty pool, well-formed ranges, non-zero sizes and alignments,
    /// default sizes that fit, and a high window disjoint from the pool.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::InvalidPolicy(m));
        for r in self.pool.ranges.iter().chain([&self.high.range]) {
            if r.start > r.end {
                return bad(format!("range {}-{} ends before it starts", r.start, r.end));
            }
        }
        let pool = self.pool_set();
        if pool.is_empty() {
            return bad("the pool has no ranges".into());
        }
        if self.pool.align == 0 {
            return bad("pool.align is 0 (use 1 for no alignment)".into());
        }
        if self.pool.default_size == 0 || self.pool.default_size > pool.len() {
            return bad(format!(
                "pool.default_size {} is not in 1..={} (the pool's size)",
                self.pool.default_size,
                pool.len()
            ));
        }
        if self.high.enabled {
            if self.high.align == 0 {
                return bad("high.align is 0 (use 1 for no alignment)".into());
            }
            if self.high.default_size == 0 || self.high.default_size > self.high.range.len() {
                return bad(format!(
                    "high.default_size {} is not in 1..={} (the window's size)",
                    self.high.default_size,
                    self.high.range.len()
                ));
            }
            if pool.overlaps_range(self.high.range) {
                return bad(format!(
                    "the high window {} overlaps the pool {pool}",
                    self.high.range
                ));
            }
        }
        Ok(())
    }
}
