//! The durable registry: an [`Allocator`] whose every change is committed to a [`Store`]
//! before it is returned.
//!
//! Opening loads every record and rebuilds the in-memory index. Live-namespace and host
//! exclusions are not stored: they describe the host now and are supplied again after each open.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use credns_idmap::IdRangeSet;

use crate::alloc::{
    reservation_name, AllocId, AllocRequest, Allocation, Allocator, Holder, Lease, LiveUserNs,
    Origin, Plan, RegisterRequest, Selector,
};
use crate::exclude::Exclusions;
use crate::policy::Policy;
use crate::redb_store::RedbStore;
use crate::store::{Store, StoreTxn};
use crate::Error;

/// How far the stored id mark is raised when an allocation reaches it.
pub const ID_BLOCK: u64 = 1024;

fn system_clock() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The allocator and its database. One process opens a database at a time (redb locks the
/// file); a daemon owns it and serves others. Methods take `&mut self`: wrap it in a mutex to
/// share it between threads.
pub struct Registry {
    store: Box<dyn Store>,
    alloc: Allocator,
    clock: fn() -> u64,
    id_mark: u64,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("store", &self.store.location())
            .field("allocations", &self.alloc.len())
            .finish()
    }
}

impl Registry {
    /// Open (or create) the redb store at `path` and rebuild the index from it under `policy`
    /// (see [`with_store`](Self::with_store)).
    pub fn open(path: impl AsRef<Path>, policy: Policy) -> Result<Self, Error> {
        policy.validate()?;
        Self::with_store(Box::new(RedbStore::open(path)?), policy)
    }

    /// Open the redb store at `path` even if it is older than its last recorded commit (see
    /// [`RedbStore::accept_rollback`]): for recovery, by a caller that then rescans what the
    /// host uses before allocating.
    pub fn open_accepting_rollback(path: impl AsRef<Path>, policy: Policy) -> Result<Self, Error> {
        policy.validate()?;
        Self::with_store(Box::new(RedbStore::accept_rollback(path)?), policy)
    }

    /// Load every record of `store` and rebuild the index under `policy`. Records outside the
    /// policy's windows are kept (see [`Allocator::out_of_pool`]); inconsistent records fail
    /// with [`Error::Corrupt`].
    pub fn with_store(mut store: Box<dyn Store>, policy: Policy) -> Result<Self, Error> {
        let loaded = store.load()?;
        let alloc =
            Allocator::load(policy, loaded.allocations, loaded.id_mark).map_err(|e| match e {
                Error::Corrupt(m) => Error::Corrupt(format!("{}: {m}", store.location())),
                e => e,
            })?;
        Ok(Self {
            store,
            alloc,
            clock: system_clock,
            id_mark: loaded.id_mark,
        })
    }

    /// Where the records are (for messages).
    pub fn location(&self) -> String {
        self.store.location()
    }

    /// Use another clock for creation times (seconds since the Unix epoch).
    pub fn set_clock(&mut self, clock: fn() -> u64) {
        self.clock = clock;
    }

    /// The in-memory state: every query ([`who`](Allocator::who), [`get`](Allocator::get),
    /// [`list`](Allocator::list), [`usage`](Allocator::usage), free space...).
    pub fn allocator(&self) -> &Allocator {
        &self.alloc
    }

    /// Allocate under `policy` from now on (see [`Allocator::with_policy`]); an invalid policy
    /// is refused and the one in force kept. Not stored: the policy is the daemon's
    /// configuration, given again at each open.
    pub fn set_policy(&mut self, policy: Policy) -> Result<(), Error> {
        self.alloc = self.alloc.with_policy(policy)?;
        Ok(())
    }

    /// See [`Allocator::set_host_exclusions`]. Not stored.
    pub fn set_host_exclusions(&mut self, exclusions: Exclusions) {
        self.alloc.set_host_exclusions(exclusions);
    }

    /// See [`Allocator::observe_live`]. Not stored: call after every open and on demand.
    pub fn observe_live(&mut self, live: IdRangeSet) {
        self.alloc.observe_live(live);
    }

    /// Begin a transaction: its changes show in memory at once and reach the disk together at
    /// [`Txn::commit`]; dropping it without committing undoes them.
    pub fn begin(&mut self) -> Result<Txn<'_>, Error> {
        let wtx = self.store.begin()?;
        Ok(Txn {
            saved_next_id: self.alloc.next_id,
            saved_id_mark: self.id_mark,
            reg: self,
            wtx: Some(wtx),
            undo: Vec::new(),
            poisoned: false,
            durable: true,
            force: false,
        })
    }

    /// Allocate by policy; the allocation is on disk when this returns. A held lease of the same
    /// owner returns its allocation without writing.
    pub fn allocate(&mut self, req: &AllocRequest) -> Result<Allocation, Error> {
        if let Some(a) = self.alloc.existing(&req.lease, req.owner)? {
            return Ok(a.clone());
        }
        let mut t = self.begin()?;
        let a = t.allocate(req)?;
        t.commit()?;
        Ok(a)
    }

    /// Record ranges someone else chose, durably.
    pub fn register(&mut self, req: &RegisterRequest) -> Result<Allocation, Error> {
        let mut t = self.begin()?;
        let a = t.register(req)?;
        t.commit()?;
        Ok(a)
    }

    /// Release an allocation by id, name or namespace, durably.
    pub fn release(&mut self, sel: &Selector) -> Result<Allocation, Error> {
        let mut t = self.begin()?;
        let a = t.release(sel)?;
        t.commit()?;
        Ok(a)
    }

    /// Replace the key routes of an allocation (checked first), durably.
    pub fn set_key_routes(
        &mut self,
        sel: &Selector,
        routes: Vec<crate::routes::KeyRoute>,
    ) -> Result<Allocation, Error> {
        let mut t = self.begin()?;
        let a = t.set_key_routes(sel, routes)?;
        t.commit()?;
        Ok(a)
    }

    /// Release, committed without waiting for the disk (redb's `Durability::None`): the
    /// release reaches the disk with the next durable commit, and a crash before that undoes
    /// it. Only for a lease that a restart releases again by itself: a user-namespace lease
    /// whose namespace is dead ([`reap`](Self::reap) at start). Never for a release a caller
    /// is told is done.
    pub fn release_unsynced(&mut self, sel: &Selector) -> Result<Allocation, Error> {
        let mut t = self.begin()?;
        t.durable = false;
        let a = t.release(sel)?;
        t.commit()?;
        Ok(a)
    }

    /// Hold ranges for allocations to come, so that handing one out needs no fsync: add
    /// default-sized reservations, in one durable commit, until `target` are held (fewer if
    /// the pool runs short). Returns how many were added. Reservations of another size (made
    /// under a policy since replaced) that no live namespace maps are released in the same
    /// commit.
    pub fn top_up_reserve(&mut self, target: usize) -> Result<usize, Error> {
        let default = self.alloc.policy().pool.default_size;
        let stale: Vec<AllocId> = self
            .alloc
            .reserved()
            .filter(|r| r.ids() != default && !self.alloc.is_live(r))
            .map(|r| r.id)
            .collect();
        let have = self.alloc.reserved().filter(|r| r.ids() == default).count();
        if stale.is_empty() && have >= target {
            return Ok(0);
        }
        let mut t = self.begin()?;
        for id in stale {
            t.release(&Selector::Id(id))?;
        }
        let mut added = 0;
        for _ in have..target {
            match t.reserve() {
                Ok(()) => added += 1,
                Err(Error::PoolExhausted { .. }) => break,
                Err(e) => return Err(e),
            }
        }
        t.commit()?;
        Ok(added)
    }

    /// Allocate `req` from a reservation, if it asks for a default-sized main range and a
    /// reservation no live namespace maps is held: the reservation is bound to the request's
    /// lease in a commit that does not wait for the disk. The range was durable before this
    /// call (as a reservation), so it is never handed to anyone else; the binding reaches the
    /// disk with the next durable commit ([`flush`](Self::flush)), and after a crash before
    /// that the caller finds the reservation mapped by a live namespace and binds it again.
    /// `Ok(None)`: no reservation fits; allocate as usual.
    pub fn allocate_reserved(&mut self, req: &AllocRequest) -> Result<Option<Allocation>, Error> {
        if let Some(a) = self.alloc.existing(&req.lease, req.owner)? {
            return Ok(Some(a.clone()));
        }
        let now = (self.clock)();
        let a = match self.alloc.plan_reserved(req, now) {
            None => return Ok(None),
            Some(planned) => planned?,
        };
        let mut t = self.begin()?;
        t.durable = false;
        t.rebind(a.clone())?;
        t.commit()?;
        Ok(Some(a))
    }

    /// Bind reservation `id` to `req`'s lease, owner and principal, durably: for a daemon that
    /// finds a reservation mapped by a live namespace at start (its binding was lost in a
    /// crash) and gives it back to that namespace.
    pub fn bind_reservation(
        &mut self,
        id: AllocId,
        req: &AllocRequest,
    ) -> Result<Allocation, Error> {
        let Some(r) = self.alloc.reserved().find(|a| a.id == id).cloned() else {
            return Err(Error::UnknownId(id));
        };
        let a = r.bound_to(req, (self.clock)());
        let mut t = self.begin()?;
        t.rebind(a.clone())?;
        t.commit()?;
        Ok(a)
    }

    /// Make every commit so far durable (one fsync'd commit).
    pub fn flush(&mut self) -> Result<(), Error> {
        let mut t = self.begin()?;
        t.force = true;
        t.commit()
    }

    /// Release, in one commit, every user-namespace lease whose namespace is not in `live`
    /// (see [`Allocator::dead_leases`]); returns what was released.
    pub fn reap(&mut self, live: &[LiveUserNs]) -> Result<Vec<Allocation>, Error> {
        if self.alloc.dead_leases(live).is_empty() {
            return Ok(Vec::new());
        }
        let mut t = self.begin()?;
        let out = t.reap(live)?;
        t.commit()?;
        Ok(out)
    }

    /// See [`Allocator::get`].
    pub fn get(&self, sel: &Selector) -> Option<&Allocation> {
        self.alloc.get(sel)
    }

    /// See [`Allocator::list`].
    pub fn list(&self) -> impl Iterator<Item = &Allocation> {
        self.alloc.list()
    }

    /// See [`Allocator::who`].
    pub fn who(&self, id: u32) -> Vec<Holder> {
        self.alloc.who(id)
    }
}

enum Undo {
    Inserted(AllocId),
    Removed(Allocation),
}

/// A write transaction of the registry: several changes, one durable commit.
///
/// Changes apply to the in-memory state at once (so a batch of allocations gets disjoint
/// ranges, and [`allocator`](Self::allocator) shows them) and are written to the database's
/// transaction; [`commit`](Self::commit) makes them durable together. Dropping the transaction
/// without committing, or a failed commit, aborts the database transaction and undoes the
/// in-memory changes in reverse order, so memory and disk never disagree. A daemon may use it
/// two-phase: allocate, set the namespace up, commit only if that worked.
pub struct Txn<'r> {
    reg: &'r mut Registry,
    wtx: Option<Box<dyn StoreTxn>>,
    undo: Vec<Undo>,
    saved_next_id: u64,
    saved_id_mark: u64,
    poisoned: bool,
    durable: bool,
    /// Commit even with no change (to make earlier non-durable commits durable).
    force: bool,
}

impl std::fmt::Debug for Txn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Txn")
            .field("changes", &self.undo.len())
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl Txn<'_> {
    fn write(
        &mut self,
        f: impl FnOnce(&mut dyn StoreTxn) -> Result<(), crate::StoreError>,
    ) -> Result<(), Error> {
        let r = f(self.wtx.as_deref_mut().expect("open until commit"));
        self.poisoned |= r.is_err();
        Ok(r?)
    }

    /// Write a new record, raising the stored id mark first if the id reaches it.
    fn put_new(&mut self, a: &Allocation) -> Result<(), Error> {
        if a.id.0 >= self.reg.id_mark {
            let mark = a.id.0 + ID_BLOCK;
            self.write(|w| w.set_id_mark(mark))?;
            self.reg.id_mark = mark;
        }
        self.write(|w| w.put(a))
    }

    fn usable(&self) -> Result<(), Error> {
        if self.poisoned {
            Err(Error::TxnPoisoned)
        } else {
            Ok(())
        }
    }

    /// The in-memory state including this transaction's uncommitted changes.
    pub fn allocator(&self) -> &Allocator {
        &self.reg.alloc
    }

    /// As [`Registry::allocate`], durable at [`commit`](Self::commit).
    pub fn allocate(&mut self, req: &AllocRequest) -> Result<Allocation, Error> {
        self.usable()?;
        let now = (self.reg.clock)();
        match self.reg.alloc.plan_allocate(req, now)? {
            Plan::Existing(a) => Ok(a),
            Plan::New(a) => {
                self.put_new(&a)?;
                self.reg.alloc.insert(a.clone());
                self.undo.push(Undo::Inserted(a.id));
                Ok(a)
            }
        }
    }

    /// As [`Registry::register`], durable at [`commit`](Self::commit).
    pub fn register(&mut self, req: &RegisterRequest) -> Result<Allocation, Error> {
        self.usable()?;
        let now = (self.reg.clock)();
        let a = self.reg.alloc.plan_register(req, now)?;
        self.put_new(&a)?;
        self.reg.alloc.insert(a.clone());
        self.undo.push(Undo::Inserted(a.id));
        Ok(a)
    }

    /// As [`Registry::release`], durable at [`commit`](Self::commit).
    pub fn release(&mut self, sel: &Selector) -> Result<Allocation, Error> {
        self.usable()?;
        let id = self.reg.alloc.resolve(sel)?;
        let a = self
            .reg
            .alloc
            .get(&Selector::Id(id))
            .cloned()
            .expect("resolved");
        self.write(|w| w.delete(id))?;
        self.reg.alloc.remove(id);
        self.undo.push(Undo::Removed(a.clone()));
        Ok(a)
    }

    /// Give allocation `id` another lease; its id, ranges, owner, origin and creation time stay.
    /// For a range that sets a namespace up before the namespace exists: allocated under a
    /// provisional lease, then leased to the namespace, in one transaction. The new lease must
    /// not hold an allocation. Durable at [`commit`](Self::commit).
    pub fn set_lease(&mut self, id: AllocId, lease: Lease) -> Result<Allocation, Error> {
        self.usable()?;
        lease.validate()?;
        if let Some(by) = self.reg.alloc.holder_of(&lease) {
            return Err(Error::LeaseTaken {
                owner: self.reg.alloc.get(&Selector::Id(by)).expect("held").owner,
                lease,
                by,
            });
        }
        let old = self.release(&Selector::Id(id))?;
        let new = Allocation { lease, ..old };
        self.write(|w| w.put(&new))?;
        self.reg.alloc.insert(new.clone());
        self.undo.push(Undo::Inserted(new.id));
        Ok(new)
    }

    /// Replace the key routes of an allocation. Durable at [`commit`](Self::commit).
    pub fn set_key_routes(
        &mut self,
        sel: &Selector,
        routes: Vec<crate::routes::KeyRoute>,
    ) -> Result<Allocation, Error> {
        self.usable()?;
        if routes.len() > crate::routes::MAX_ROUTES {
            return Err(Error::InvalidKeyRoute(format!(
                "at most {} per allocation",
                crate::routes::MAX_ROUTES
            )));
        }
        for r in &routes {
            r.check()
                .map_err(|e| Error::InvalidKeyRoute(e.to_string()))?;
        }
        let old = self.release(sel)?;
        let new = Allocation {
            key_routes: routes,
            ..old
        };
        self.write(|w| w.put(&new))?;
        self.reg.alloc.insert(new.clone());
        self.undo.push(Undo::Inserted(new.id));
        Ok(new)
    }

    /// Add one default-sized reservation (see [`Registry::top_up_reserve`]).
    fn reserve(&mut self) -> Result<(), Error> {
        self.usable()?;
        let now = (self.reg.clock)();
        let n = self.reg.alloc.next_id;
        let req = AllocRequest::new(Lease::Name(reservation_name(n)), 0);
        let Plan::New(planned) = self.reg.alloc.plan_allocate_unchecked(&req, now)? else {
            unreachable!("a fresh reservation name holds nothing")
        };
        let a = Allocation {
            origin: Origin::Reserved,
            ..planned
        };
        self.put_new(&a)?;
        self.reg.alloc.insert(a.clone());
        self.undo.push(Undo::Inserted(a.id));
        Ok(())
    }

    /// Replace a record by `a` (same id): a reservation bound to its lease.
    fn rebind(&mut self, a: Allocation) -> Result<(), Error> {
        self.usable()?;
        let old = self.release(&Selector::Id(a.id))?;
        debug_assert_eq!((old.uid, old.gid), (a.uid, a.gid));
        self.write(|w| w.put(&a))?;
        self.reg.alloc.insert(a.clone());
        self.undo.push(Undo::Inserted(a.id));
        Ok(())
    }

    /// As [`Registry::reap`], durable at [`commit`](Self::commit).
    pub fn reap(&mut self, live: &[LiveUserNs]) -> Result<Vec<Allocation>, Error> {
        let dead = self.reg.alloc.dead_leases(live);
        dead.into_iter()
            .map(|id| self.release(&Selector::Id(id)))
            .collect()
    }

    /// Make every change durable (one fsync'd commit). On error nothing was stored and the
    /// in-memory changes are undone.
    pub fn commit(mut self) -> Result<(), Error> {
        self.usable()?;
        let wtx = self.wtx.take().expect("open until commit");
        if self.undo.is_empty() && !self.force {
            // Dropping it aborts: nothing to write.
            return Ok(());
        }
        wtx.commit(self.durable)?;
        self.undo.clear();
        self.saved_id_mark = self.reg.id_mark;
        Ok(())
    }
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        // Dropping the store's transaction aborts it.
        self.wtx = None;
        self.reg.id_mark = self.saved_id_mark;
        if self.undo.is_empty() {
            return;
        }
        while let Some(u) = self.undo.pop() {
            match u {
                Undo::Inserted(id) => {
                    self.reg.alloc.remove(id);
                }
                Undo::Removed(a) => self.reg.alloc.insert(a),
            }
        }
        self.reg.alloc.next_id = self.saved_next_id;
    }
}
