//! Kernel-exact user-namespace ID maps.
//!
//! Everything here is pure arithmetic on maps, checked against the Linux kernel's
//! `kernel/user_namespace.c`: [`IdMap`] lookups are `map_id_down`/`map_id_up`,
//! [`judge_write`] is `map_write` with `new_idmap_permitted`, [`IdMap::compose_strict`] is the
//! translation of lower ids through the parent at write time. No I/O and no `unsafe`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod algebra;
mod errno;
pub mod formats;
mod id;
mod map;
mod rangeset;
mod write;

pub use algebra::{munge, translate, NsChain, Overlap};
pub use errno::Errno;
pub use id::{IdKind, Kgid, Kuid, INVALID_ID, MAX_BASE_EXTENTS, MAX_EXTENTS, OVERFLOW_ID};
pub use map::{Extent, ExtentRule, IdMap};
pub use rangeset::{IdRange, IdRangeSet};
pub use write::{
    judge_write, parse_write, AcceptedWrite, OpenerNs, ParseRule, Position, WriteContext,
    WriteRule, MAX_WRITE_BYTES,
};

/// Errors of this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An extent breaks a structural map rule.
    #[error("extent {}{}: {rule}", index + 1, extent.map(|e| format!(" \"{e}\"")).unwrap_or_default())]
    Extent {
        /// 0-based index of the extent.
        index: usize,
        /// The extent, when there is one.
        extent: Option<Extent>,
        /// The rule.
        rule: ExtentRule,
    },
    /// Composing with a parent: an extent's lower range straddles or leaves the parent's extents.
    #[error("extent {} \"{extent}\": lower range is not inside one extent of the parent's map", index + 1)]
    NotInOneParentExtent {
        /// 0-based index.
        index: usize,
        /// The extent.
        extent: Extent,
    },
    /// Carving: a lower id the parent does not map.
    #[error("extent \"{extent}\": parent id {id} is not mapped by the parent namespace")]
    UnmappedInParent {
        /// The first unmapped id.
        id: u32,
        /// The extent it belongs to.
        extent: Extent,
    },
    /// Carving would need more extents than a map may hold.
    #[error("carving needs {needed} extents; a map holds at most 340")]
    CarveTooManyExtents {
        /// How many it would need.
        needed: usize,
    },
    /// A text format did not parse.
    #[error("{source_name}:{line}:{column}: {message}")]
    Syntax {
        /// The file (or other source) name.
        source_name: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What was wrong.
        message: String,
    },
}
