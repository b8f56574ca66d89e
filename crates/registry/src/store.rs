//! The storage seam: what the [`Registry`](crate::Registry) needs from a durable store, and the
//! errors a store reports. The registry keeps every allocation in memory and asks its store
//! only to load them all at open and to apply a transaction's changes atomically. redb
//! ([`RedbStore`](crate::RedbStore)) is the store of one host; a cluster store implements the
//! same two traits.

use crate::alloc::{AllocId, Allocation};

/// What a store holds: every allocation record and the allocation-id high-water mark (every id
/// ever used is below it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    /// The records, in any order.
    pub allocations: Vec<Allocation>,
    /// The id mark (at least 1).
    pub id_mark: u64,
}

/// A durable home for allocation records. One writer at a time: a store that other processes
/// can also open reports [`StoreErrorKind::Locked`] while one holds it.
pub trait Store: Send {
    /// Every record and the id mark, as last committed.
    fn load(&mut self) -> Result<Loaded, StoreError>;
    /// Begin a write transaction. Its changes become visible to [`load`](Self::load), together
    /// and only together, at [`StoreTxn::commit`]; dropping it uncommitted discards them.
    fn begin(&mut self) -> Result<Box<dyn StoreTxn>, StoreError>;
    /// Where it is, for messages (a path, an endpoint).
    fn location(&self) -> String;
}

/// A store's write transaction.
pub trait StoreTxn {
    /// Write (insert or replace) a record.
    fn put(&mut self, a: &Allocation) -> Result<(), StoreError>;
    /// Delete a record.
    fn delete(&mut self, id: AllocId) -> Result<(), StoreError>;
    /// Raise the id mark.
    fn set_id_mark(&mut self, mark: u64) -> Result<(), StoreError>;
    /// Apply the changes atomically. `durable`: on stable storage when this returns (else
    /// they reach it with a later durable commit, and a crash before that loses them).
    fn commit(self: Box<Self>, durable: bool) -> Result<(), StoreError>;
}

/// What kind of failure a store reported; callers decide on the kind, never on the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// Another process holds the store.
    Locked,
    /// The device is full (ENOSPC, EDQUOT): nothing was written; retry once space is freed.
    Full,
    /// The store cannot be read or written (EIO, EACCES, EROFS, ...): nothing was written.
    Unwritable,
    /// The store holds something this code cannot have written.
    Corrupt,
    /// The store is older than its last acknowledged commit (restored from a backup, rolled
    /// back by a corruption, emptied): allocations made since may be in use.
    RolledBack,
}

/// A store's failure: its kind and a sentence saying what happened where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    /// The kind.
    pub kind: StoreErrorKind,
    /// What happened, naming the store.
    pub message: String,
}

impl StoreError {
    /// A failure of `kind`.
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        StoreError {
            kind,
            message: message.into(),
        }
    }
}
