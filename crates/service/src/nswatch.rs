//! The death watch of leased user namespaces: a pidfd of every known process inside each
//! leased namespace (or nested below it), in one epoll set; when the last one exits, `/proc`
//! is searched once for others, and if none is left the lease is released.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use credns_registry::{AllocId, Lease, LiveUserNs as RegLiveNs, Registry, Selector};
use credns_sys::maps::LiveUserNs;
use credns_sys::pidfd::{ExitWatcher, PidFd};
use credns_sys::{userns_ancestry, NsId, Pid, ProcFs, UserNsFd};

use crate::live;
use crate::methods::{Leases, Methods, NsKey};
use crate::Error;

/// What the daemon keeps for a leased user namespace: the nsfs fd (so its inode cannot be
/// reused while the lease lives) and a pidfd per known process inside.
struct Watched {
    alloc: AllocId,
    created_ns: u64,
    _userns: Option<UserNsFd>,
    pidfds: HashMap<u64, PidFd>,
}

#[derive(Default)]
struct Watches {
    ns: HashMap<NsKey, Watched>,
    tokens: HashMap<u64, NsKey>,
    next: u64,
}

/// The daemon's watch of leased namespaces.
pub(crate) struct NsWatch {
    watches: Mutex<Watches>,
    watcher: ExitWatcher,
    procfs: ProcFs,
    own_ns: Option<NsId>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn ns_of(key: NsKey) -> NsId {
    NsId {
        dev: key.0,
        ino: key.1,
    }
}

impl Leases for NsWatch {
    fn known_stamp(&self, key: NsKey) -> Option<u64> {
        lock(&self.watches).ns.get(&key).map(|n| n.created_ns)
    }

    fn watch(&self, key: NsKey, alloc: AllocId, created_ns: u64, userns: UserNsFd, member: PidFd) {
        let mut w = lock(&self.watches);
        w.ns.entry(key).or_insert_with(|| Watched {
            alloc,
            created_ns,
            _userns: Some(userns),
            pidfds: HashMap::new(),
        });
        self.add_pidfd(&mut w, key, member);
    }

    fn unwatch(&self, key: NsKey) {
        let mut w = lock(&self.watches);
        if let Some(n) = w.ns.remove(&key) {
            for (t, p) in n.pidfds {
                let _ = self.watcher.remove(&p);
                w.tokens.remove(&t);
            }
        }
    }
}

impl NsWatch {
    pub(crate) fn new(procfs: ProcFs, own_ns: Option<NsId>) -> Result<Self, Error> {
        Ok(NsWatch {
            watches: Mutex::new(Watches::default()),
            watcher: ExitWatcher::new()?,
            procfs,
            own_ns,
        })
    }

    fn add_pidfd(&self, w: &mut Watches, key: NsKey, pidfd: PidFd) {
        let token = w.next;
        w.next += 1;
        if self.watcher.add(&pidfd, token).is_ok() {
            w.tokens.insert(token, key);
            if let Some(n) = w.ns.get_mut(&key) {
                n.pidfds.insert(token, pidfd);
            }
        }
    }

    /// Whether `pid` lives in `ns` or in a namespace nested below it: a nested namespace keeps
    /// its ancestors alive, and its processes' ids lie in the ancestors' ranges.
    fn lives_in(&self, pid: Pid, ns: NsId) -> bool {
        match self.procfs.userns(pid) {
            Ok(id) if id == ns => true,
            Ok(id) if Some(id) == self.own_ns => false,
            Ok(_) => userns_ancestry(&self.procfs, pid).is_ok_and(|a| a.contains(&ns)),
            Err(_) => false,
        }
    }

    /// Open a pidfd of `pid` and watch it for namespace `key` if, once open, it is still a
    /// live process of that namespace (the pid could have been reused since it was seen).
    fn try_watch(&self, w: &mut Watches, key: NsKey, pid: Pid) -> bool {
        let Ok(pidfd) = PidFd::open(pid) else {
            return false;
        };
        if !self.lives_in(pid, ns_of(key)) || pidfd.has_exited().unwrap_or(true) {
            return false;
        }
        self.add_pidfd(w, key, pidfd);
        true
    }

    /// Watch every process of `scan` in namespace `key` or below it; false if there is none.
    /// The ancestry is asked once per namespace, not once per process.
    fn watch_scanned(&self, w: &mut Watches, key: NsKey, scan: &[LiveUserNs]) -> bool {
        let ns = ns_of(key);
        let mut found = false;
        for n in scan {
            let inside = n.id == ns
                || n.pids
                    .iter()
                    .find_map(|p| userns_ancestry(&self.procfs, *p).ok())
                    .is_some_and(|a| a.contains(&ns));
            if inside {
                for &pid in &n.pids {
                    found |= self.try_watch(w, key, pid);
                }
            }
        }
        found
    }

    /// An nsfs fd of namespace `key` through one of `pids` (in it or below it).
    fn open_ns(&self, key: NsKey, pids: &[Pid]) -> Option<UserNsFd> {
        pids.iter().find_map(|p| {
            let mut fd = UserNsFd::open(&self.procfs, *p).ok()?;
            for _ in 0..64 {
                if fd.id().is_ok_and(|i| (i.dev, i.ino) == key) {
                    return Some(fd);
                }
                fd = fd.parent().ok()??;
            }
            None
        })
    }

    /// The namespaces a start-up scan finds alive, for [`Registry::reap`]. A live namespace
    /// with a lease's dev and inode is the leased one if one of its processes started no later
    /// than the lease's stamp (a namespace that reused the inode was created after the leased
    /// one died, so all its processes started later). Ancestors of live namespaces are alive
    /// too; their stamps are unknown, so they keep every lease with their dev and inode.
    fn alive(&self, scan: &[LiveUserNs], leases: &[(u64, u64, u64)]) -> Vec<RegLiveNs> {
        let mut live = Vec::new();
        for n in scan {
            live.push(RegLiveNs {
                dev: n.id.dev,
                ino: n.id.ino,
                created_ns: n.oldest_start_ns,
            });
            for (dev, ino, stamp) in leases {
                if (n.id.dev, n.id.ino) == (*dev, *ino)
                    && n.oldest_start_ns.is_none_or(|o| o <= *stamp)
                {
                    live.push(RegLiveNs {
                        dev: *dev,
                        ino: *ino,
                        created_ns: Some(*stamp),
                    });
                }
            }
            let ancestors = userns_ancestry(&self.procfs, n.pids[0]).unwrap_or_default();
            for a in ancestors
                .iter()
                .skip(1)
                .filter(|a| Some(**a) != self.own_ns)
            {
                live.push(RegLiveNs {
                    dev: a.dev,
                    ino: a.ino,
                    created_ns: None,
                });
            }
        }
        live
    }

    /// At start: ids of live maps are never allocated; a namespace lease whose namespace is
    /// gone is released; the rest are watched.
    pub(crate) fn reap_and_watch(&self, reg: &mut Registry) -> Result<(), Error> {
        let scan = live::scan_with(&self.procfs, self.own_ns, true);
        reg.observe_live(live::live_ids(&scan));
        let leases: Vec<(u64, u64, u64)> = reg
            .list()
            .filter_map(|a| match a.lease {
                Lease::UserNs {
                    dev,
                    ino,
                    created_ns,
                } => Some((dev, ino, created_ns)),
                Lease::Name(_) => None,
            })
            .collect();
        reg.reap(&self.alive(&scan, &leases))?;
        let mut gone = Vec::new();
        let mut w = lock(&self.watches);
        for a in reg.list() {
            let Lease::UserNs {
                dev,
                ino,
                created_ns,
            } = a.lease
            else {
                continue;
            };
            let key = (dev, ino);
            let pids: Vec<Pid> = scan
                .iter()
                .filter(|n| n.id == ns_of(key) || self.lives_in(n.pids[0], ns_of(key)))
                .map(|n| n.pids[0])
                .collect();
            w.ns.insert(
                key,
                Watched {
                    alloc: a.id,
                    created_ns,
                    _userns: self.open_ns(key, &pids),
                    pidfds: HashMap::new(),
                },
            );
            if !self.watch_scanned(&mut w, key, &scan) {
                // Its processes exited between the scan and now.
                w.ns.remove(&key);
                gone.push(a.id);
            }
        }
        drop(w);
        for id in gone {
            reg.release(&Selector::Id(id))?;
        }
        Ok(())
    }

    /// Serve exit events of watched processes until `stop` is set (run it on its own thread).
    pub(crate) fn run_reaper(&self, methods: &Methods, stop: &AtomicBool) {
        while !stop.load(Ordering::Acquire) {
            let tokens = match self.watcher.wait(Some(Duration::from_millis(250))) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("credns: epoll_wait: {e}");
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    continue;
                }
            };
            for t in tokens {
                if let Err(e) = self.on_exit(methods, t) {
                    eprintln!("credns: releasing a dead namespace's lease: {e}");
                }
            }
        }
    }

    /// The exited process's watch goes; the namespace whose last known process it was, if
    /// any, is returned.
    fn forget(&self, token: u64) -> Option<NsKey> {
        let mut w = lock(&self.watches);
        let key = w.tokens.remove(&token)?;
        let n = w.ns.get_mut(&key)?;
        if let Some(p) = n.pidfds.remove(&token) {
            let _ = self.watcher.remove(&p);
        }
        n.pidfds.is_empty().then_some(key)
    }

    fn on_exit(&self, methods: &Methods, token: u64) -> Result<(), Error> {
        let Some(key) = self.forget(token) else {
            return Ok(());
        };
        // One /proc scan, made without holding the registry, serves both to look for
        // processes of the namespace not yet watched and for the ids live maps use. A scan
        // that misses fresh maps of a new allocation loses nothing: that range is recorded.
        let scan = live::scan(&self.procfs, self.own_ns);
        methods.cell.with(|reg| -> Result<(), Error> {
            let mut w = lock(&self.watches);
            match w.ns.get(&key) {
                // Released meanwhile, or a new member was handed in with a request.
                None => return Ok(()),
                Some(n) if !n.pidfds.is_empty() => return Ok(()),
                Some(_) => {}
            }
            if self.watch_scanned(&mut w, key, &scan) {
                return Ok(());
            }
            let n = w.ns.remove(&key).expect("present");
            drop(w);
            if reg.get(&Selector::Id(n.alloc)).is_some() {
                // No fsync of its own: lost in a crash, the release is made again at start,
                // where every lease of a dead namespace is reaped. It reaches the disk with the
                // next allocation, which is durable before its range is used.
                reg.release_unsynced(&Selector::Id(n.alloc))?;
            }
            reg.observe_live(live::live_ids(&scan));
            Ok(())
        })?
    }
}
