//! The death watch of leased user namespaces: a pidfd of every known process inside each
//! leased namespace (or nested below it), in one epoll set. When the last one exits, the
//! namespace is decided with the next batch (at most every 200 ms, one `/proc` scan for all):
//! if another process is found, it is watched; if none is left, the namespace may still be
//! alive without a process, so its lease is released only when nothing else can hold it
//! either: no process holds an nsfs descriptor of it, no nsfs bind mount names it, and no
//! idmapped mount exists on the host (an idmapped mount holds its namespace, and which one
//! cannot be read from `/proc`). A namespace held that way is looked at again with every
//! batch, and released within a second of its last reference going. The daemon itself holds no descriptor of a leased
//! namespace, so that it can die.
//!
//! This is the conservative fallback of an exact watch (a BPF program on the kernel's
//! namespace free path, `credns_sys::nsfree`), which needs kprobes or fentry programs: on a
//! kernel without both, this is what runs. Limits it cannot see past are in DESIGN.md.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use credns_registry::{AllocId, Lease, LiveUserNs as RegLiveNs, Registry, Selector};
use credns_sys::maps::LiveUserNs;
use credns_sys::nsrefs::{scan_userns_refs, UserNsRefs};
use credns_sys::pidfd::{ExitWatcher, PidFd};
use credns_sys::{userns_ancestry, NsId, Pid, ProcFs, UserNsFd};

use crate::live;
use crate::methods::{Leases, Methods, NsKey, Watch};
use crate::Error;

/// What the daemon keeps for a leased user namespace: a pidfd per known process inside.
struct Watched {
    alloc: AllocId,
    created_ns: u64,
    ns_id: Option<u64>,
    pidfds: HashMap<u64, PidFd>,
}

#[derive(Default)]
struct Watches {
    ns: HashMap<NsKey, Watched>,
    tokens: HashMap<u64, NsKey>,
    next: u64,
    /// Namespaces whose last known process exited: decided (and, while something else holds
    /// them, looked at again) with every batch.
    held: std::collections::BTreeSet<NsKey>,
    /// Leases whose namespace is certainly gone (a new namespace has its inode now): released
    /// by the reaper's next turn.
    orphans: Vec<AllocId>,
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
    fn known_stamp(&self, key: NsKey, ns_id: Option<u64>) -> Option<u64> {
        let w = lock(&self.watches);
        let n = w.ns.get(&key)?;
        match (n.ns_id, ns_id) {
            // Another namespace has this inode now: the watched one is gone.
            (Some(a), Some(b)) if a != b => None,
            _ => Some(n.created_ns),
        }
    }

    fn watch(&self, key: NsKey, lease: Watch, userns: UserNsFd, member: PidFd) {
        let mut w = lock(&self.watches);
        if w.ns.get(&key).is_some_and(|n| n.alloc != lease.alloc) {
            // The inode is another namespace's now: the old lease's namespace is gone.
            let old = w.ns.remove(&key).expect("present");
            for (t, p) in old.pidfds {
                let _ = self.watcher.remove(&p);
                w.tokens.remove(&t);
            }
            w.orphans.push(old.alloc);
        }
        w.ns.entry(key).or_insert_with(|| Watched {
            alloc: lease.alloc,
            created_ns: lease.created_ns,
            ns_id: lease.ns_id,
            pidfds: HashMap::new(),
        });
        w.held.remove(&key);
        self.add_pidfd(&mut w, key, member);
        // Not kept: a descriptor of ours would keep the namespace alive forever.
        drop(userns);
    }

    fn follows(&self) -> bool {
        true
    }

    fn unwatch(&self, key: NsKey) {
        let mut w = lock(&self.watches);
        w.held.remove(&key);
        if let Some(n) = w.ns.remove(&key) {
            for (t, p) in n.pidfds {
                let _ = self.watcher.remove(&p);
                w.tokens.remove(&t);
            }
        }
    }
}

/// What holds user namespaces besides processes (`None`: the scan failed, so anything may).
struct Refs(Option<UserNsRefs>);

impl Refs {
    /// Whether namespace inode `ino` may be alive without a process.
    fn holds(&self, ino: u64) -> bool {
        match &self.0 {
            None => true,
            Some(r) => {
                r.fds.contains(&ino) || r.bind_mounts.contains(&ino) || r.idmapped_mounts > 0
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

    /// The namespaces a start-up scan finds alive, for [`Registry::reap`].
    ///
    /// A live namespace is the leased one when their kernel ids (`NS_GET_ID`) are equal; a
    /// lease from before the daemon recorded ids is the live namespace with its dev and inode
    /// if one of its processes started no later than the lease's stamp (a namespace that
    /// reused the inode was created after the leased one died, so all its processes started
    /// later). Ancestors of live namespaces are alive too, and so is a namespace some fd or
    /// mount holds without a process; their stamps are unknown, so they keep every lease with
    /// their dev and inode.
    fn alive(&self, scan: &[LiveUserNs], leases: &[(u64, u64, u64)]) -> Vec<RegLiveNs> {
        let mut live = Vec::new();
        let refs = self.references();
        for (dev, ino, _) in leases {
            if refs.holds(*ino) {
                live.push(RegLiveNs {
                    dev: *dev,
                    ino: *ino,
                    created_ns: None,
                    ns_id: None,
                });
            }
        }
        for n in scan {
            let ns_id = UserNsFd::open(&self.procfs, n.pids[0])
                .ok()
                .and_then(|fd| fd.ns_id().ok().flatten());
            live.push(RegLiveNs {
                dev: n.id.dev,
                ino: n.id.ino,
                created_ns: n.oldest_start_ns,
                ns_id,
            });
            for (dev, ino, stamp) in leases {
                if (n.id.dev, n.id.ino) == (*dev, *ino)
                    && n.oldest_start_ns.is_none_or(|o| o <= *stamp)
                {
                    live.push(RegLiveNs {
                        dev: *dev,
                        ino: *ino,
                        created_ns: Some(*stamp),
                        ns_id: None,
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
                    ns_id: None,
                });
            }
        }
        live
    }

    /// At start: ids of live maps are never allocated; a namespace lease whose namespace is
    /// gone is released; the rest are watched.
    pub(crate) fn reap_and_watch(
        &self,
        reg: &mut Registry,
        keys: &crate::keys::KeyHome,
    ) -> Result<(), Error> {
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
                    ns_id: a.ns_id,
                    pidfds: HashMap::new(),
                },
            );
            if !self.watch_scanned(&mut w, key, &scan) {
                if pids.is_empty() && self.references().holds(key.1) {
                    w.held.insert(key);
                    continue;
                }
                // Its processes exited between the scan and now.
                w.ns.remove(&key);
                gone.push(a.id);
            }
        }
        drop(w);
        for id in gone {
            let a = reg.release(&Selector::Id(id))?;
            keys.released(a.id.0, a.owner);
        }
        Ok(())
    }

    /// Flush reservation bindings committed without waiting for the disk, and refill the
    /// reservations: off the requests' path, one fsync for many bindings.
    fn keep_reservations(methods: &Methods, reserve: usize) {
        let r = methods.cell.with(|reg| -> Result<(), Error> {
            let unflushed = methods.unflushed.swap(false, Ordering::AcqRel);
            methods.taken.store(0, Ordering::Release);
            // A refill is a durable commit, which makes earlier bindings durable too: one
            // fsync either way.
            let done = if reg.allocator().reserved().count() < reserve {
                reg.top_up_reserve(reserve).map(|_| ())
            } else if unflushed {
                reg.flush()
            } else {
                Ok(())
            };
            if done.is_err() && unflushed {
                methods.unflushed.store(true, Ordering::Release);
            }
            Ok(done?)
        });
        if let Ok(Err(e)) | Err(e) = r {
            tracing::warn!("keeping ranges reserved: {e}");
        }
    }

    /// At start: a reservation some live namespace maps was handed out and its binding lost
    /// (a crash before it reached the disk): bind it again to that namespace, owned by the
    /// namespace's owner. One mapped by several namespaces, or unreadable, stays reserved and
    /// unused while it is mapped.
    pub(crate) fn rebind_reservations(&self, reg: &mut Registry) -> Result<(), Error> {
        let mapped: Vec<credns_registry::Allocation> = reg
            .allocator()
            .reserved()
            .filter(|r| reg.allocator().is_live(r))
            .cloned()
            .collect();
        if mapped.is_empty() {
            return Ok(());
        }
        let scan = live::scan_with(&self.procfs, self.own_ns, true);
        for r in mapped {
            let holders: Vec<&LiveUserNs> = scan
                .iter()
                .filter(|n| {
                    n.uid_map
                        .extents()
                        .iter()
                        .any(|e| e.lower_first == r.uid.start)
                })
                .collect();
            let [n] = holders.as_slice() else { continue };
            let Ok(fd) = UserNsFd::open(&self.procfs, n.pids[0]) else {
                continue;
            };
            let (Ok(owner), Some(created_ns)) = (fd.owner_uid(), n.oldest_start_ns) else {
                continue;
            };
            let lease = Lease::UserNs {
                dev: n.id.dev,
                ino: n.id.ino,
                created_ns,
            };
            let mut req = credns_registry::AllocRequest::new(lease, owner);
            req.ns_id = fd.ns_id().ok().flatten();
            let a = reg.bind_reservation(r.id, &req)?;
            let key = (n.id.dev, n.id.ino);
            let mut w = lock(&self.watches);
            w.ns.insert(
                key,
                Watched {
                    alloc: a.id,
                    created_ns,
                    ns_id: a.ns_id,
                    pidfds: HashMap::new(),
                },
            );
            self.watch_scanned(&mut w, key, &scan);
        }
        Ok(())
    }

    /// What holds user namespaces besides processes, now.
    fn references(&self) -> Refs {
        match scan_userns_refs(&self.procfs) {
            Ok(r) => Refs(Some(r)),
            // Not knowing is holding: nothing is released on a failed scan.
            Err(_) => Refs(None),
        }
    }

    /// Release the leases whose namespace a new one replaced (its inode reused).
    fn release_orphans(&self, methods: &Methods) {
        let orphans = std::mem::take(&mut lock(&self.watches).orphans);
        if orphans.is_empty() {
            return;
        }
        let r = methods.cell.with(|reg| -> Result<(), Error> {
            for id in orphans {
                if reg.get(&Selector::Id(id)).is_some() {
                    let a = reg.release_unsynced(&Selector::Id(id))?;
                    methods.keys.released(a.id.0, a.owner);
                }
            }
            Ok(())
        });
        if let Ok(Err(e)) | Err(e) = r {
            tracing::warn!("releasing the lease of a namespace whose inode was reused: {e}");
        }
    }

    /// Look again at the namespaces held without a process: release those nothing holds.
    fn recheck_held(&self, methods: &Methods) {
        let held: Vec<NsKey> = lock(&self.watches).held.iter().copied().collect();
        if held.is_empty() {
            return;
        }
        let scan = live::scan(&self.procfs, self.own_ns);
        let refs = self.references();
        for key in held {
            let r = methods.cell.with(|reg| -> Result<(), Error> {
                let mut w = lock(&self.watches);
                if !w.held.contains(&key) || self.watch_scanned(&mut w, key, &scan) {
                    w.held.remove(&key);
                    return Ok(());
                }
                if refs.holds(key.1) {
                    return Ok(());
                }
                w.held.remove(&key);
                let Some(n) = w.ns.remove(&key) else {
                    return Ok(());
                };
                drop(w);
                if reg.get(&Selector::Id(n.alloc)).is_some() {
                    let a = reg.release_unsynced(&Selector::Id(n.alloc))?;
                    methods.keys.released(a.id.0, a.owner);
                }
                reg.observe_live(live::live_ids(&scan));
                Ok(())
            });
            if let Ok(Err(e)) | Err(e) = r {
                tracing::warn!("releasing a namespace lease held without a process: {e}");
            }
        }
    }

    /// Serve exit events of watched processes until `stop` is set (run it on its own thread).
    /// Every turn (a quarter second at most) it also makes reservation bindings durable and
    /// refills the reservations to `reserve`.
    pub(crate) fn run_reaper(&self, methods: &Methods, stop: &AtomicBool, reserve: usize) {
        // Deaths are handled in batches: a namespace whose last known process exited joins the
        // namespaces held without a process, and one /proc scan (processes, then fds and
        // mounts) decides for all of them, at most every BATCH. A burst of containers ending
        // costs one scan, not one each, and the release still comes within a second.
        const BATCH: Duration = Duration::from_millis(200);
        let mut last_recheck = std::time::Instant::now();
        let mut last_keep = std::time::Instant::now();
        while !stop.load(Ordering::Acquire) {
            self.release_orphans(methods);
            let held = !lock(&self.watches).held.is_empty();
            if held && last_recheck.elapsed() >= BATCH
                || last_recheck.elapsed() >= Duration::from_secs(1)
            {
                self.recheck_held(methods);
                last_recheck = std::time::Instant::now();
            }
            let low = methods.taken.load(Ordering::Acquire) >= (reserve / 2).max(1);
            if reserve > 0 && (low || last_keep.elapsed() >= BATCH) {
                Self::keep_reservations(methods, reserve);
                last_keep = std::time::Instant::now();
            }
            let wait = if held {
                BATCH.saturating_sub(last_recheck.elapsed())
            } else {
                BATCH
            };
            let tokens = match self.watcher.wait(Some(wait.max(Duration::from_millis(1)))) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!("namespace watch: epoll_wait: {e}");
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    continue;
                }
            };
            for t in tokens {
                if let Some(key) = self.forget(t) {
                    // Its last known process is gone: decided with the next batch.
                    lock(&self.watches).held.insert(key);
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
}
