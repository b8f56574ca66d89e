//! The store of one host: a [redb](https://www.redb.org) file (copy-on-write B-trees,
//! checksummed commit slots, fsync on a durable commit, one process at a time by a file lock).
//!
//! Layout (schema 1), two tables:
//! * `allocations`: `u64` allocation id → the [`Allocation`] as JSON, the only record of truth;
//! * `meta`: `"schema"` → 1, and `"id_mark"` → the allocation-id high-water mark.
//!
//! Rollback detection: every commit raises `meta.generation`; after a durable commit the new
//! generation is also written to a small file beside the store (`<store>.generation`). A
//! store whose generation is below that file's (a file restored from a backup, redb falling
//! back to an older commit slot after a corruption, a store emptied or replaced) is refused
//! with [`StoreErrorKind::RolledBack`]: allocations acknowledged since may be in use.
//! [`RedbStore::accept_rollback`] takes the store as it is (the daemon's `--recover`).
//!
//! No redb type leaves this module: every failure becomes a [`StoreError`] of a kind callers
//! can act on. After a failed write (a full disk, an I/O error) redb refuses every later
//! transaction of the same handle, so the store reopens the file before the next one: once
//! writes succeed again, the registry works again without a restart.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};

use crate::alloc::{AllocId, Allocation};
use crate::store::{Loaded, Store, StoreError, StoreErrorKind, StoreTxn};

const ALLOCS: TableDefinition<u64, &[u8]> = TableDefinition::new("allocations");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SCHEMA_KEY: &str = "schema";
const ID_MARK_KEY: &str = "id_mark";
const GENERATION_KEY: &str = "generation";
const SCHEMA: u64 = 1;

/// A registry store in one redb file.
pub struct RedbStore {
    db: Option<Database>,
    path: PathBuf,
    generation: Arc<AtomicU64>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish()
    }
}

impl RedbStore {
    /// Open (or create) the file at `path`. Another process holding it is
    /// [`StoreErrorKind::Locked`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let s = Self::open_unchecked(path)?;
        let recorded = read_recorded(&s.path)?;
        let here = s.generation.load(Ordering::Acquire);
        if recorded > here {
            return Err(StoreError::new(
                StoreErrorKind::RolledBack,
                format!(
                    "the registry store {} is at generation {here}, but {} records that \
                     generation {recorded} was committed: the store was rolled back, replaced \
                     or emptied, and ranges allocated since may be in use",
                    s.path.display(),
                    generation_path(&s.path).display()
                ),
            ));
        }
        Ok(s)
    }

    /// Open the store as it is even if it is older than its last recorded commit, and record
    /// its generation as the current one. For recovery, after which the caller must rescan
    /// what the host uses (live namespaces) before allocating.
    pub fn accept_rollback(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let s = Self::open_unchecked(path)?;
        write_recorded(&s.path, s.generation.load(Ordering::Acquire))?;
        Ok(s)
    }

    fn open_unchecked(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let db = open_db(&path)?;
        let generation = read_generation(&db).map_err(|e| from_redb(&path, "reading", e))?;
        Ok(RedbStore {
            db: Some(db),
            path,
            generation: Arc::new(AtomicU64::new(generation)),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Open the file again if the handle was dropped after a failed write.
    fn ensure_open(&mut self) -> Result<(), StoreError> {
        if self.db.is_none() {
            self.db = Some(open_db(&self.path)?);
        }
        Ok(())
    }

    /// Run `f` on the database; after a write failure (which poisons redb's handle for every
    /// later transaction) reopen the file and try once more.
    fn with_db<T>(
        &mut self,
        f: impl Fn(&Database, &Path) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.ensure_open()?;
        let first = f(self.db.as_ref().expect("open"), &self.path);
        match first {
            Err(e) if matches!(e.kind, StoreErrorKind::Full | StoreErrorKind::Unwritable) => {
                // Dropped before the reopen, so redb's file lock is released.
                self.db = None;
                self.ensure_open()?;
                f(self.db.as_ref().expect("open"), &self.path)
            }
            r => r,
        }
    }
}

fn generation_path(store: &Path) -> PathBuf {
    let mut p = store.as_os_str().to_owned();
    p.push(".generation");
    PathBuf::from(p)
}

/// The generation the record file beside the store says was committed (0 if there is none).
fn read_recorded(store: &Path) -> Result<u64, StoreError> {
    let p = generation_path(store);
    match std::fs::read_to_string(&p) {
        Ok(t) => t.trim().parse().map_err(|_| {
            StoreError::new(
                StoreErrorKind::Corrupt,
                format!("{}: not a generation number: {:?}", p.display(), t.trim()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(StoreError::new(
            StoreErrorKind::Unwritable,
            format!("reading {}: {e}", p.display()),
        )),
    }
}

/// Record `generation` beside the store. Written after the store's own durable commit and not
/// synced itself: after a crash it holds that generation or an older one, never a newer one
/// than the store, so it can only miss a rollback, never invent one.
fn write_recorded(store: &Path, generation: u64) -> Result<(), StoreError> {
    let p = generation_path(store);
    let mut tmp = p.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = PathBuf::from(tmp);
    let unwritable = |e: std::io::Error| {
        StoreError::new(
            StoreErrorKind::Unwritable,
            format!("writing {}: {e}", p.display()),
        )
    };
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(unwritable)?;
        f.write_all(format!("{generation}\n").as_bytes())
            .map_err(unwritable)?;
    }
    std::fs::rename(&tmp, &p).map_err(unwritable)
}

fn read_generation(db: &Database) -> Result<u64, redb::Error> {
    let rtx = db.begin_read()?;
    let g = rtx
        .open_table(META)?
        .get(GENERATION_KEY)?
        .map(|g| g.value());
    Ok(g.unwrap_or(0))
}

fn open_db(path: &Path) -> Result<Database, StoreError> {
    let db = Database::create(path).map_err(|e| from_redb(path, "opening", e.into()))?;
    init(&db).map_err(|e| from_redb(path, "initialising", e))?;
    Ok(db)
}

/// Map redb's error to a kind and a sentence naming the file.
fn from_redb(path: &Path, doing: &str, e: redb::Error) -> StoreError {
    let at = path.display();
    let (kind, what) = match &e {
        redb::Error::DatabaseAlreadyOpen => (
            StoreErrorKind::Locked,
            "another process has it open".to_string(),
        ),
        redb::Error::Io(io) => (io_kind(io), io.to_string()),
        redb::Error::PreviousIo => (
            StoreErrorKind::Unwritable,
            "an earlier write failed; the store will be reopened".to_string(),
        ),
        redb::Error::Corrupted(m) => (StoreErrorKind::Corrupt, m.clone()),
        other => (StoreErrorKind::Unwritable, other.to_string()),
    };
    StoreError::new(kind, format!("{doing} the registry store {at}: {what}"))
}

fn io_kind(io: &std::io::Error) -> StoreErrorKind {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    match io.raw_os_error() {
        Some(ENOSPC | EDQUOT) => StoreErrorKind::Full,
        _ => StoreErrorKind::Unwritable,
    }
}

fn init(db: &Database) -> Result<(), redb::Error> {
    let wtx = db.begin_write()?;
    let fresh = {
        let mut meta = wtx.open_table(META)?;
        let schema = meta.get(SCHEMA_KEY)?.map(|g| g.value());
        match schema {
            Some(SCHEMA) => false,
            Some(v) => {
                return Err(redb::Error::Corrupted(format!(
                    "schema {v}; this build reads schema {SCHEMA}"
                )))
            }
            None => {
                meta.insert(SCHEMA_KEY, SCHEMA)?;
                meta.insert(ID_MARK_KEY, 1)?;
                true
            }
        }
    };
    if fresh {
        wtx.open_table(ALLOCS)?;
        wtx.commit()?;
    } else {
        wtx.abort()?;
    }
    Ok(())
}

fn read_all(db: &Database) -> Result<Result<Loaded, String>, redb::Error> {
    let rtx = db.begin_read()?;
    let Some(id_mark) = rtx.open_table(META)?.get(ID_MARK_KEY)?.map(|g| g.value()) else {
        return Ok(Err("no id_mark".into()));
    };
    let mut allocations = Vec::new();
    for item in rtx.open_table(ALLOCS)?.iter()? {
        let (k, v) = item?;
        let a: Allocation = match serde_json::from_slice(v.value()) {
            Ok(a) => a,
            Err(e) => return Ok(Err(format!("allocation #{}: {e}", k.value()))),
        };
        if a.id.0 != k.value() {
            return Ok(Err(format!(
                "record under key {} says it is {}",
                k.value(),
                a.id
            )));
        }
        allocations.push(a);
    }
    Ok(Ok(Loaded {
        allocations,
        id_mark,
    }))
}

impl Store for RedbStore {
    fn load(&mut self) -> Result<Loaded, StoreError> {
        self.with_db(|db, path| match read_all(db) {
            Ok(Ok(l)) => Ok(l),
            Ok(Err(m)) => Err(StoreError::new(
                StoreErrorKind::Corrupt,
                format!("the registry store {} is corrupt: {m}", path.display()),
            )),
            Err(e) => Err(from_redb(path, "reading", e)),
        })
    }

    fn begin(&mut self) -> Result<Box<dyn StoreTxn>, StoreError> {
        let generation = self.generation.clone();
        self.with_db(|db, path| {
            let wtx = db
                .begin_write()
                .map_err(|e| from_redb(path, "writing", e.into()))?;
            Ok(Box::new(RedbTxn {
                wtx,
                path: path.to_path_buf(),
                generation: generation.clone(),
            }) as Box<dyn StoreTxn>)
        })
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }
}

struct RedbTxn {
    wtx: WriteTransaction,
    path: PathBuf,
    generation: Arc<AtomicU64>,
}

impl RedbTxn {
    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        from_redb(&self.path, "writing", e.into())
    }
}

impl StoreTxn for RedbTxn {
    fn put(&mut self, a: &Allocation) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(a).map_err(|e| {
            StoreError::new(StoreErrorKind::Corrupt, format!("encoding {}: {e}", a.id))
        })?;
        let mut t = self.wtx.open_table(ALLOCS).map_err(|e| self.err(e))?;
        t.insert(a.id.0, bytes.as_slice())
            .map_err(|e| from_redb(&self.path, "writing", e.into()))?;
        Ok(())
    }

    fn delete(&mut self, id: AllocId) -> Result<(), StoreError> {
        let mut t = self.wtx.open_table(ALLOCS).map_err(|e| self.err(e))?;
        t.remove(id.0)
            .map_err(|e| from_redb(&self.path, "writing", e.into()))?;
        Ok(())
    }

    fn set_id_mark(&mut self, mark: u64) -> Result<(), StoreError> {
        let mut t = self.wtx.open_table(META).map_err(|e| self.err(e))?;
        t.insert(ID_MARK_KEY, mark)
            .map_err(|e| from_redb(&self.path, "writing", e.into()))?;
        Ok(())
    }

    fn commit(mut self: Box<Self>, durable: bool) -> Result<(), StoreError> {
        let d = if durable {
            Durability::Immediate
        } else {
            Durability::None
        };
        self.wtx.set_durability(d).map_err(|e| self.err(e))?;
        let next = self.generation.load(Ordering::Acquire) + 1;
        {
            let mut t = self.wtx.open_table(META).map_err(|e| self.err(e))?;
            t.insert(GENERATION_KEY, next)
                .map_err(|e| from_redb(&self.path, "writing", e.into()))?;
        }
        let path = self.path.clone();
        self.wtx
            .commit()
            .map_err(|e| from_redb(&path, "committing to", e.into()))?;
        self.generation.store(next, Ordering::Release);
        if durable {
            // The commit stands whatever happens here: a record not written only makes a later
            // rollback of this commit undetectable, never a good store refused.
            let _ = write_recorded(&path, next);
        }
        Ok(())
    }
}
