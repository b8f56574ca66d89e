//! A store in memory: nothing survives the process. For a registry that must not create a
//! file (a read of a store that does not exist yet) and for tests of the seam.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::alloc::{AllocId, Allocation};
use crate::store::{Loaded, Store, StoreError, StoreTxn};

#[derive(Debug, Default)]
struct State {
    allocs: BTreeMap<AllocId, Allocation>,
    id_mark: u64,
}

/// Records in memory; transactions apply at commit, all or nothing.
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    state: Arc<Mutex<State>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        MemStore::default()
    }
}

enum Change {
    Put(Allocation),
    Delete(AllocId),
    Mark(u64),
}

struct MemTxn {
    state: Arc<Mutex<State>>,
    changes: Vec<Change>,
}

impl Store for MemStore {
    fn load(&mut self) -> Result<Loaded, StoreError> {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Ok(Loaded {
            allocations: s.allocs.values().cloned().collect(),
            id_mark: s.id_mark.max(1),
        })
    }

    fn begin(&mut self) -> Result<Box<dyn StoreTxn>, StoreError> {
        Ok(Box::new(MemTxn {
            state: self.state.clone(),
            changes: Vec::new(),
        }))
    }

    fn location(&self) -> String {
        "(in memory)".into()
    }
}

impl StoreTxn for MemTxn {
    fn put(&mut self, a: &Allocation) -> Result<(), StoreError> {
        self.changes.push(Change::Put(a.clone()));
        Ok(())
    }

    fn delete(&mut self, id: AllocId) -> Result<(), StoreError> {
        self.changes.push(Change::Delete(id));
        Ok(())
    }

    fn set_id_mark(&mut self, mark: u64) -> Result<(), StoreError> {
        self.changes.push(Change::Mark(mark));
        Ok(())
    }

    fn commit(self: Box<Self>, _durable: bool) -> Result<(), StoreError> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for c in self.changes {
            match c {
                Change::Put(a) => {
                    s.allocs.insert(a.id, a);
                }
                Change::Delete(id) => {
                    s.allocs.remove(&id);
                }
                Change::Mark(m) => s.id_mark = m,
            }
        }
        Ok(())
    }
}
