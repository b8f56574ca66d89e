//! UID/GID range allocation for user namespaces: the policy and its durable, crash-safe store.
//!
//! * [`Policy`] says where ranges come from (systemd's container window by default), how big and
//!   how aligned they are, whether an extra range from a high window is allowed, and per-owner
//!   quotas.
//! * [`Allocator`] is the pure, in-memory allocator: aligned first fit in O(log n) (see
//!   `DESIGN.md` and the `index` module), never handing out reserved ids, ids of
//!   passwd/group/subuid/subgid entries ([`Exclusions`]) or ids live user namespaces map
//!   ([`Allocator::observe_live`]). It answers [`who`](Allocator::who) holds a host id.
//! * [`Registry`] is the allocator over a [`Store`]: every change is committed durably before
//!   it is returned, and opening rebuilds the in-memory index from the store's records.
//!   [`Txn`] groups changes into one commit (batches, or two-phase use by a daemon).
//!   [`RedbStore`] is the store of one host (a redb file); no redb type leaves it.
//!
//! I/O: the store's file, and the host's id files ([`HostFiles`] reads passwd, group, subuid
//! and subgid). Callers scan live namespaces themselves.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod alloc;
mod etc;
mod exclude;
mod host;
mod index;
mod mem_store;
pub mod names;
pub mod nsswitch;
mod policy;
mod redb_store;
mod registry;
pub mod routes;
mod store;

pub use alloc::{
    allocation_map, is_bidi_control, AllocId, AllocRequest, Allocation, Allocator, HighRequest,
    Holder, Lease, LiveUserNs, Origin, Part, Ranges, RegisterRequest, Selector, Usage, MAX_LABEL,
    MAX_NAME,
};
pub use etc::{
    parse_group, parse_group_lenient, parse_passwd, parse_passwd_lenient, GroupEntry, PasswdEntry,
};
pub use exclude::{Excluded, Exclusions, Reserved, Source};
pub use host::{HostFileError, HostFiles, HostIds};
pub use mem_store::MemStore;
pub use policy::{
    HighWindow, Policy, PoolConfig, Quota, Window, CONTAINER_POOL_END, CONTAINER_POOL_START,
    DEFAULT_ALIGN, DEFAULT_MAX_IDS, DEFAULT_MAX_RANGES, DEFAULT_SIZE, HIGH_DEFAULT_SIZE,
    HIGH_WINDOW_END, HIGH_WINDOW_START,
};
pub use redb_store::RedbStore;
pub use registry::{Registry, Txn, ID_BLOCK};
pub use store::{Loaded, Store, StoreError, StoreErrorKind, StoreTxn};

use credns_idmap::IdRange;

/// Why a size was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeProblem {
    /// A size of 0.
    Zero,
    /// More ids than the window holds at all.
    BeyondWindow {
        /// How many ids the window holds.
        capacity: u64,
    },
}

impl std::fmt::Display for SizeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SizeProblem::Zero => f.write_str("a range holds at least one id"),
            SizeProblem::BeyondWindow { capacity } => {
                write!(f, "more than the {capacity} ids it holds")
            }
        }
    }
}

/// Which quota limit was hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaLimit {
    /// Too many live ranges.
    Ranges {
        /// The limit.
        max: u32,
        /// Ranges the owner holds now.
        held: u32,
    },
    /// Too many ids.
    Ids {
        /// The limit.
        max: u64,
        /// Ids the owner holds now.
        held: u64,
        /// Ids asked for.
        requested: u64,
    },
}

impl std::fmt::Display for QuotaLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QuotaLimit::Ranges { max, held } => write!(
                f,
                "holds {held} ranges, the limit is {max} (quota.max_ranges)"
            ),
            QuotaLimit::Ids {
                max,
                held,
                requested,
            } => {
                write!(f, "holds {held} ids and asked for {requested}, the limit is {max} (quota.max_ids)")
            }
        }
    }
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A passwd or group line did not parse.
    #[error("{source_name}:{line}:{column}: {message}")]
    Syntax {
        /// The file (or other source) name.
        source_name: String,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// What was wrong.
        message: String,
    },
    /// The policy is inconsistent.
    #[error("invalid policy: {0}")]
    InvalidPolicy(String),
    /// A requested size is 0 or larger than the window.
    #[error("invalid size {requested} for the {window}: {problem}")]
    InvalidSize {
        /// The size asked for.
        requested: u64,
        /// Which window.
        window: Window,
        /// What is wrong with it.
        problem: SizeProblem,
    },
    /// No free aligned block is large enough.
    #[error(
        "{window} exhausted: asked for {requested} ids aligned to {align}, the largest free aligned block has {largest_free}"
    )]
    PoolExhausted {
        /// Which window.
        window: Window,
        /// Ids asked for.
        requested: u64,
        /// The window's alignment.
        align: u32,
        /// The largest block that could be allocated now.
        largest_free: u64,
    },
    /// The owner would exceed a quota.
    #[error("quota exceeded for owner {owner}: {limit}")]
    QuotaExceeded {
        /// The owner.
        owner: u32,
        /// Which limit.
        limit: QuotaLimit,
    },
    /// A key route is malformed, or there are too many.
    #[error("invalid key route: {0}")]
    InvalidKeyRoute(String),
    /// No allocation has this id.
    #[error("no allocation {0}")]
    UnknownId(AllocId),
    /// No allocation has this name.
    #[error("no allocation named {0:?}")]
    UnknownName(String),
    /// No allocation is leased to this user namespace.
    #[error("no allocation leased to user namespace dev {dev} ino {ino} created {created_ns}")]
    UnknownUserNs {
        /// Device of the nsfs inode.
        dev: u64,
        /// Inode.
        ino: u64,
        /// Creation stamp.
        created_ns: u64,
    },
    /// The lease (name or namespace) already holds an allocation of another owner, or, for
    /// `register`, any allocation.
    #[error("{lease} already holds allocation {by} (owner {owner})")]
    LeaseTaken {
        /// The lease.
        lease: Lease,
        /// The allocation holding it.
        by: AllocId,
        /// That allocation's owner.
        owner: u32,
    },
    /// A lease name is empty, too long or has control characters.
    #[error("invalid lease name {name:?}: {reason}")]
    InvalidLease {
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// A label is too long or not printable.
    #[error("invalid label {label:?}: {reason}")]
    InvalidLabel {
        /// The label (its first 64 characters).
        label: String,
        /// Why.
        reason: &'static str,
    },
    /// A range to register overlaps a live allocation.
    #[error("range {range} overlaps allocation {with} ({lease}) at {at}")]
    Overlap {
        /// The range asked for.
        range: IdRange,
        /// The allocation in the way.
        with: AllocId,
        /// Its lease.
        lease: Lease,
        /// The ids both hold.
        at: IdRange,
    },
    /// A range to register is malformed or holds 4294967295.
    #[error("invalid range {range}: {reason}")]
    InvalidRange {
        /// The range.
        range: IdRange,
        /// Why.
        reason: &'static str,
    },
    /// A high range was asked for but the policy has no high window.
    #[error("a high-window range was requested but high.enabled is false")]
    HighWindowDisabled,
    /// A database operation of this transaction failed; it can only be dropped.
    #[error("an earlier step of this transaction failed; drop it and begin a new one")]
    TxnPoisoned,
    /// The store failed (locked, full, unwritable, corrupt: see its kind).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database holds something this code cannot have written.
    #[error("corrupt registry database: {0}")]
    Corrupt(String),
    /// An id map could not be built.
    #[error(transparent)]
    Map(#[from] credns_idmap::Error),
}
