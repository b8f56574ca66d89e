//! Where the methods find the registry: held open by the daemon for its lifetime, or opened
//! by a command for one call at a time (the direct path, as root with no daemon), so that the
//! store is locked only for a transaction and never for a container's lifetime.
//!
//! Either way the host's id files are re-read when they change, before the call runs, and
//! the store's directory and file are checked: owned by this process's uid, writable by no
//! one else (a store file readable by others is made 0600).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use credns_registry::{HostFiles, MemStore, Policy, Registry, StoreError, StoreErrorKind};
use credns_sys::lockfile::FileLock;
use credns_sys::ProcFs;

use crate::Error;

/// How long a command waits for another command's transaction on the same store.
const LOCK_WAIT: Duration = Duration::from_secs(30);

pub(crate) enum RegistryCell {
    /// The daemon's: open for its lifetime, behind one mutex.
    Held {
        reg: Mutex<Registry>,
        host: Mutex<Option<HostFiles>>,
        _lock: FileLock,
    },
    /// A command's: opened, used and closed by each call.
    PerCall {
        store: PathBuf,
        policy: Policy,
        host: Mutex<Option<HostFiles>>,
        procfs: ProcFs,
    },
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking method must not take the daemon down; the registry's own transactions undo
    // themselves on unwind.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn lock_path(store: &Path) -> PathBuf {
    let mut p = store.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Create the store's directory (0700) if it is missing, and refuse a directory or file that
/// another uid owns or may write; tighten a store file others may read to 0600.
pub(crate) fn check_store_path(store: &Path) -> Result<(), Error> {
    let euid = credns_sys::euid();
    let refuse = |path: &Path, why: String| Error::UnsafeStore {
        path: path.to_path_buf(),
        why,
    };
    let io = |op: &'static str, path: &Path, source: std::io::Error| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = store.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| io("create directory", dir, e))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| io("chmod", dir, e))?;
        }
        let m = std::fs::metadata(dir).map_err(|e| io("stat", dir, e))?;
        if m.uid() != euid {
            return Err(refuse(dir, format!("owned by uid {}, not {euid}", m.uid())));
        }
        if m.mode() & 0o022 != 0 {
            return Err(refuse(
                dir,
                format!("mode {:o}: others may write to it", m.mode() & 0o7777),
            ));
        }
    }
    match std::fs::symlink_metadata(store) {
        // Made here, empty and private, so the database never exists with another mode.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(store)
                .map(drop)
                .map_err(|e| io("create", store, e))
        }
        Err(e) => Err(io("stat", store, e)),
        Ok(m) if !m.is_file() => Err(refuse(store, "not a regular file".into())),
        Ok(m) if m.uid() != euid => Err(refuse(
            store,
            format!("owned by uid {}, not {euid}", m.uid()),
        )),
        Ok(m) if m.mode() & 0o022 != 0 => Err(refuse(
            store,
            format!("mode {:o}: others may write to it", m.mode() & 0o7777),
        )),
        Ok(m) if m.mode() & 0o077 != 0 => {
            std::fs::set_permissions(store, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| io("chmod", store, e))
        }
        Ok(_) => Ok(()),
    }
}

/// Re-read the host's id files into `reg` if they changed since the last read.
fn refresh_host(reg: &mut Registry, host: &mut Option<HostFiles>) -> Result<(), Error> {
    let Some(h) = host.as_mut() else {
        return Ok(());
    };
    if h.changed() {
        let ids = h.load()?;
        for w in &ids.warnings {
            tracing::warn!("{w} (line taken leniently)");
        }
        reg.set_host_exclusions(ids.exclusions);
    }
    Ok(())
}

impl RegistryCell {
    /// The daemon's cell: the store opened and locked for the daemon's lifetime.
    pub(crate) fn held(cfg: &crate::Config) -> Result<Self, Error> {
        let store = &cfg.store;
        check_store_path(store)?;
        // A command may hold it for the call it is making: wait for that, as commands do.
        let lock = FileLock::acquire(&lock_path(store), LOCK_WAIT)?
            .ok_or_else(|| Error::Registry(locked(store)))?;
        let mut reg = if cfg.accept_rollback {
            Registry::open_accepting_rollback(store, cfg.policy.clone())?
        } else {
            open(store, cfg.policy.clone())?
        };
        let mut host = cfg.etc.as_deref().map(HostFiles::new);
        refresh_host(&mut reg, &mut host)?;
        Ok(RegistryCell::Held {
            reg: Mutex::new(reg),
            host: Mutex::new(host),
            _lock: lock,
        })
    }

    /// A command's cell: nothing is opened until a call.
    pub(crate) fn per_call(
        store: &Path,
        policy: Policy,
        etc: Option<&Path>,
        procfs: ProcFs,
    ) -> Self {
        RegistryCell::PerCall {
            store: store.to_path_buf(),
            policy,
            host: Mutex::new(etc.map(HostFiles::new)),
            procfs,
        }
    }

    /// Run `f` on the daemon's registry as it is (no host-file refresh); `None` on the direct
    /// path, which holds no registry between calls.
    pub(crate) fn peek<T>(&self, f: impl FnOnce(&Registry) -> T) -> Option<T> {
        match self {
            RegistryCell::Held { reg, .. } => Some(f(&lock(reg))),
            RegistryCell::PerCall { .. } => None,
        }
    }

    /// Run `f` with the registry: the daemon's, locked; or the store opened (waiting for its
    /// lock), the host's ids and live maps applied, then closed again.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> Result<T, Error> {
        self.with_access(true, f)
    }

    /// As [`with`](Self::with); a call that only reads (`writes` false) of a store that does
    /// not exist yet sees an empty registry and creates nothing.
    pub(crate) fn with_access<T>(
        &self,
        writes: bool,
        f: impl FnOnce(&mut Registry) -> T,
    ) -> Result<T, Error> {
        match self {
            RegistryCell::Held { reg, host, .. } => {
                let mut reg = lock(reg);
                refresh_host(&mut reg, &mut lock(host))?;
                Ok(f(&mut reg))
            }
            RegistryCell::PerCall {
                store,
                policy,
                host,
                procfs,
            } => {
                if !writes && !store.exists() {
                    let mut reg = Registry::with_store(Box::new(MemStore::new()), policy.clone())?;
                    return Ok(f(&mut reg));
                }
                check_store_path(store)?;
                let _lock = FileLock::acquire(&lock_path(store), LOCK_WAIT)?
                    .ok_or_else(|| Error::Registry(locked(store)))?;
                let mut reg = open(store, policy.clone())?;
                let mut host = lock(host);
                if let Some(h) = host.as_mut() {
                    // A fresh registry has no exclusions yet: load them whatever changed.
                    *h = HostFiles::new(h.dir().to_path_buf());
                }
                refresh_host(&mut reg, &mut host)?;
                drop(host);
                // Our own namespace's map (the host's identity map, usually) is not a container's.
                let own = procfs.userns(credns_sys::Pid::this()).ok();
                reg.observe_live(crate::live::live_ids(&crate::live::scan(procfs, own)));
                Ok(f(&mut reg))
            }
        }
    }
}

/// Open the store; a store another process holds (without our lock file: an older daemon, a
/// tool) is the same clear refusal as a held lock.
fn open(store: &Path, policy: Policy) -> Result<Registry, Error> {
    Registry::open(store, policy).map_err(|e| match e {
        credns_registry::Error::Store(s) if s.kind == StoreErrorKind::Locked => {
            Error::Registry(locked(store))
        }
        e => e.into(),
    })
}

fn locked(store: &Path) -> credns_registry::Error {
    credns_registry::Error::Store(StoreError::new(
        StoreErrorKind::Locked,
        format!(
            "the registry store {} is held by another process (a credns daemon? give its socket with --socket)",
            store.display()
        ),
    ))
}
