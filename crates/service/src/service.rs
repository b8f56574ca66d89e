//! The registry's methods for a caller, authorization, and the death watch of leased user
//! namespaces.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use credns_idmap::formats::SubidFile;
use credns_idmap::{IdKind, IdRangeSet};
use credns_registry::{
    parse_group, parse_passwd, AllocId, AllocRequest, Allocation, Exclusions, HighRequest, Lease,
    LiveUserNs as RegLiveNs, Policy, QuotaLimit, RegisterRequest, Registry, Selector,
};
use credns_sys::maps::{scan_user_namespaces, write_userns_maps, LiveUserNs};
use credns_sys::pidfd::{ExitWatcher, PidFd};
use credns_sys::{userns_ancestry, NsId, Pid, ProcFs, UserNsFd};
use serde_json::{json, Map, Value};

use crate::wire::{AllocationInfo, ErrorReply, HolderInfo, Range};
use crate::Error;

/// Where the daemon keeps its store unless told otherwise.
pub const DEFAULT_STORE: &str = "/var/lib/credns/registry.redb";

/// How to open a [`Service`].
#[derive(Clone, Debug)]
pub struct Config {
    /// The redb store.
    pub store: PathBuf,
    /// The allocation policy.
    pub policy: Policy,
    /// The procfs to scan and to write maps through.
    pub procfs: ProcFs,
    /// Directory holding `passwd`, `group`, `subuid`, `subgid` whose ids are never allocated
    /// (`/etc`); `None` reads none.
    pub etc: Option<PathBuf>,
}

impl Config {
    /// Defaults: the store at `store`, the default policy, `/proc`, `/etc`.
    pub fn new(store: impl Into<PathBuf>) -> Self {
        Config {
            store: store.into(),
            policy: Policy::default(),
            procfs: ProcFs::new(),
            etc: Some("/etc".into()),
        }
    }
}

/// Who is asking (from `SO_PEERCRED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Effective uid; 0 administers everything.
    pub uid: u32,
    /// Pid, for messages.
    pub pid: Pid,
}

impl Caller {
    fn is_admin(&self) -> bool {
        self.uid == 0
    }
}

type NsKey = (u64, u64);

/// What the daemon keeps for a leased user namespace: the nsfs fd (so its inode cannot be
/// reused while the lease lives) and a pidfd per known process inside.
struct NsWatch {
    alloc: AllocId,
    created_ns: u64,
    _userns: Option<UserNsFd>,
    pidfds: HashMap<u64, PidFd>,
}

#[derive(Default)]
struct Watches {
    ns: HashMap<NsKey, NsWatch>,
    tokens: HashMap<u64, NsKey>,
    next: u64,
}

struct Inner {
    reg: Mutex<Registry>,
    watches: Mutex<Watches>,
    watcher: ExitWatcher,
    procfs: ProcFs,
    own_ns: Option<NsId>,
}

/// The registry and its methods, shared between connection threads.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking connection thread must not take the daemon down; the registry's own
    // transactions undo themselves on unwind.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read_opt(path: PathBuf) -> Result<Option<String>, Error> {
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io {
            op: "read",
            path,
            source,
        }),
    }
}

/// Host exclusions from `dir/{passwd,group,subuid,subgid}` (missing files are skipped).
pub(crate) fn host_exclusions(dir: &std::path::Path) -> Result<Exclusions, Error> {
    let mut ex = Exclusions::new();
    let name = |f: &str| dir.join(f).display().to_string();
    if let Some(t) = read_opt(dir.join("passwd"))? {
        ex.add_passwd(&parse_passwd(&name("passwd"), &t)?);
    }
    if let Some(t) = read_opt(dir.join("group"))? {
        ex.add_group(&parse_group(&name("group"), &t)?);
    }
    for (f, kind) in [("subuid", IdKind::Uid), ("subgid", IdKind::Gid)] {
        if let Some(t) = read_opt(dir.join(f))? {
            ex.add_subid(&SubidFile::parse(&t, &name(f))?.entries, kind);
        }
    }
    Ok(ex)
}

impl Service {
    /// Open the store, exclude host ids, scan live namespaces, reap leases whose namespace is
    /// gone and start watching the rest.
    pub fn open(cfg: &Config) -> Result<Self, Error> {
        let mut reg = Registry::open(&cfg.store, cfg.policy.clone())?;
        if let Some(dir) = &cfg.etc {
            reg.set_host_exclusions(host_exclusions(dir)?);
        }
        let own_ns = cfg.procfs.userns(Pid::this()).ok();
        let svc = Service {
            inner: Arc::new(Inner {
                reg: Mutex::new(reg),
                watches: Mutex::new(Watches::default()),
                watcher: ExitWatcher::new()?,
                procfs: cfg.procfs.clone(),
                own_ns,
            }),
        };
        svc.reap_and_watch()?;
        Ok(svc)
    }

    /// The registry, locked: a caller holding it knows no commit is in flight (shutdown).
    pub fn lock_registry(&self) -> MutexGuard<'_, Registry> {
        lock(&self.inner.reg)
    }

    fn scan(&self) -> Vec<LiveUserNs> {
        let mut v = scan_user_namespaces(&self.inner.procfs).unwrap_or_default();
        v.retain(|n| Some(n.id) != self.inner.own_ns);
        v
    }

    fn live_ids(scan: &[LiveUserNs]) -> IdRangeSet {
        let mut set = IdRangeSet::new();
        for n in scan {
            for m in [&n.uid_map, &n.gid_map] {
                for e in m.extents() {
                    set = set.union(&IdRangeSet::from_ranges([credns_idmap::IdRange {
                        start: e.lower_first,
                        end: (e.lower_first as u64 + e.count as u64 - 1) as u32,
                    }]));
                }
            }
        }
        set
    }

    /// At start: ids of live maps are never allocated; a namespace lease whose namespace is
    /// gone is released. A live namespace with the lease's dev and inode is the leased one if
    /// one of its processes started no later than the stamp (a namespace that reused the inode
    /// was created after the leased one died, so all its processes started later); the
    /// registry still never hands out ids a live map uses, whatever the leases say.
    fn reap_and_watch(&self) -> Result<(), Error> {
        let scan = self.scan();
        let mut reg = lock(&self.inner.reg);
        reg.observe_live(Self::live_ids(&scan));
        let leases: Vec<(AllocId, u64, u64, u64)> = reg
            .list()
            .filter_map(|a| match a.lease {
                Lease::UserNs {
                    dev,
                    ino,
                    created_ns,
                } => Some((a.id, dev, ino, created_ns)),
                Lease::Name(_) => None,
            })
            .collect();
        let mut live = Vec::new();
        for n in &scan {
            live.push(RegLiveNs {
                dev: n.id.dev,
                ino: n.id.ino,
                created_ns: n.oldest_start_ns,
            });
            for (_, dev, ino, stamp) in &leases {
                if (n.id.dev, n.id.ino) == (*dev, *ino)
                    && n.oldest_start_ns.map_or(true, |o| o <= *stamp)
                {
                    live.push(RegLiveNs {
                        dev: *dev,
                        ino: *ino,
                        created_ns: Some(*stamp),
                    });
                }
            }
        }
        // Ancestors of live namespaces are alive too (their creation stamps are unknown here,
        // so they keep every lease with their dev and inode).
        for n in &scan {
            if let Ok(chain) = userns_ancestry(&self.inner.procfs, n.pids[0]) {
                for a in chain
                    .iter()
                    .skip(1)
                    .filter(|a| Some(**a) != self.inner.own_ns)
                {
                    live.push(RegLiveNs {
                        dev: a.dev,
                        ino: a.ino,
                        created_ns: None,
                    });
                }
            }
        }
        reg.reap(&live)?;
        let mut w = lock(&self.inner.watches);
        let mut gone = Vec::new();
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
            let ns = NsId { dev, ino };
            let pids: Vec<Pid> = scan
                .iter()
                .filter(|n| n.id == ns || self.lives_in(n.pids[0], ns))
                .map(|n| n.pids[0])
                .collect();
            let userns = self.open_ns(key, &pids);
            w.ns.insert(
                key,
                NsWatch {
                    alloc: a.id,
                    created_ns,
                    _userns: userns,
                    pidfds: HashMap::new(),
                },
            );
            if !self.watch_members(&mut w, key) {
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

    /// Open pidfds for every process now in namespace `key` and watch them; false if none.
    /// Whether `pid` lives in `ns` or in a namespace nested below it: a nested namespace keeps
    /// its ancestors alive, and its processes' ids lie in the ancestors' ranges.
    fn lives_in(&self, pid: Pid, ns: NsId) -> bool {
        let procfs = &self.inner.procfs;
        match procfs.userns(pid) {
            Ok(id) if id == ns => true,
            Ok(id) if Some(id) == self.inner.own_ns => false,
            Ok(_) => userns_ancestry(procfs, pid).is_ok_and(|a| a.contains(&ns)),
            Err(_) => false,
        }
    }

    /// Open pidfds for every process now in namespace `key` or below it and watch them; false
    /// if there is none.
    fn watch_members(&self, w: &mut Watches, key: NsKey) -> bool {
        let procfs = &self.inner.procfs;
        let ns = NsId {
            dev: key.0,
            ino: key.1,
        };
        let mut found = false;
        for pid in procfs.pids().unwrap_or_default() {
            if !self.lives_in(pid, ns) {
                continue;
            }
            let Ok(pidfd) = PidFd::open(pid) else {
                continue;
            };
            // The pid could have been reused between the check and pidfd_open: check again.
            if !self.lives_in(pid, ns) || pidfd.has_exited().unwrap_or(true) {
                continue;
            }
            self.add_pidfd(w, key, pidfd);
            found = true;
        }
        found
    }

    /// An nsfs fd of namespace `key` through one of `pids` (in it or below it).
    fn open_ns(&self, key: NsKey, pids: &[Pid]) -> Option<UserNsFd> {
        pids.iter().find_map(|p| {
            let mut fd = UserNsFd::open(&self.inner.procfs, *p).ok()?;
            for _ in 0..64 {
                if fd.id().is_ok_and(|i| (i.dev, i.ino) == key) {
                    return Some(fd);
                }
                fd = fd.parent().ok()??;
            }
            None
        })
    }

    fn add_pidfd(&self, w: &mut Watches, key: NsKey, pidfd: PidFd) {
        let token = w.next;
        w.next += 1;
        if self.inner.watcher.add(&pidfd, token).is_ok() {
            w.tokens.insert(token, key);
            if let Some(n) = w.ns.get_mut(&key) {
                n.pidfds.insert(token, pidfd);
            }
        }
    }

    fn unwatch(&self, w: &mut Watches, key: NsKey) {
        if let Some(n) = w.ns.remove(&key) {
            for (t, p) in n.pidfds {
                let _ = self.inner.watcher.remove(&p);
                w.tokens.remove(&t);
            }
        }
    }

    /// Serve exit events of watched processes forever (run it on its own thread). When the last
    /// known process of a leased namespace exits, `/proc` is searched for others; if none is
    /// left, the lease is released and live maps are scanned again.
    pub fn run_reaper(&self) -> ! {
        loop {
            let tokens = match self.inner.watcher.wait(None) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("credns: epoll_wait: {e}");
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    continue;
                }
            };
            for t in tokens {
                if let Err(e) = self.on_exit(t) {
                    eprintln!("credns: releasing a dead namespace's lease: {e}");
                }
            }
        }
    }

    fn on_exit(&self, token: u64) -> Result<(), Error> {
        let mut reg = lock(&self.inner.reg);
        let mut w = lock(&self.inner.watches);
        let Some(key) = w.tokens.remove(&token) else {
            return Ok(());
        };
        let Some(n) = w.ns.get_mut(&key) else {
            return Ok(());
        };
        if let Some(p) = n.pidfds.remove(&token) {
            let _ = self.inner.watcher.remove(&p);
        }
        if !n.pidfds.is_empty() || self.watch_members(&mut w, key) {
            return Ok(());
        }
        let n = w.ns.remove(&key).expect("present");
        drop(w);
        if reg.get(&Selector::Id(n.alloc)).is_some() {
            reg.release(&Selector::Id(n.alloc))?;
        }
        let scan = self.scan();
        reg.observe_live(Self::live_ids(&scan));
        Ok(())
    }

    /// Run one method for `caller`. `fds` are the descriptors that came with the request.
    pub fn call(
        &self,
        caller: Caller,
        method: &str,
        params: &Value,
        fds: &mut [Option<OwnedFd>],
    ) -> Result<Value, ErrorReply> {
        let empty = Map::new();
        let p = match params {
            Value::Object(m) => m,
            Value::Null => &empty,
            _ => return Err(ErrorReply::invalid("parameters", "not an object")),
        };
        match method {
            "Allocate" => self.allocate(caller, p, fds),
            "Register" => self.register(caller, p, fds),
            "Release" => self.release(caller, p),
            "List" => self.list(caller, p),
            "Show" => self.show(caller, p),
            "Who" => self.who(caller, p),
            _ => Err(ErrorReply {
                error: "org.varlink.service.MethodNotFound".into(),
                parameters: json!({ "method": format!("{}.{method}", crate::wire::INTERFACE) }),
            }),
        }
    }

    fn lease_for(
        &self,
        caller: Caller,
        p: &Map<String, Value>,
        fds: &mut [Option<OwnedFd>],
    ) -> Result<(Lease, Option<(UserNsFd, PidFd)>), ErrorReply> {
        let name = opt_str(p, "name")?;
        let ns_idx = opt_u64(p, "userNamespaceFileDescriptor")?;
        let pid_idx = opt_u64(p, "pidFileDescriptor")?;
        match (name, ns_idx) {
            (Some(_), Some(_)) => Err(ErrorReply::invalid(
                "name",
                "give a name or a userNamespaceFileDescriptor, not both",
            )),
            (None, None) => Err(ErrorReply::invalid(
                "name",
                "a lease is needed: a name or a userNamespaceFileDescriptor",
            )),
            (Some(n), None) => {
                if pid_idx.is_some() {
                    return Err(ErrorReply::invalid(
                        "pidFileDescriptor",
                        "only with userNamespaceFileDescriptor",
                    ));
                }
                Ok((Lease::Name(n), None))
            }
            (None, Some(i)) => {
                let userns = UserNsFd::from_owned(take_fd(fds, i, "userNamespaceFileDescriptor")?);
                let owner = userns.owner_uid().map_err(|e| {
                    ErrorReply::invalid(
                        "userNamespaceFileDescriptor",
                        format!("not a user namespace: {e}"),
                    )
                })?;
                let id = userns.id().map_err(|e| {
                    ErrorReply::invalid("userNamespaceFileDescriptor", e.to_string())
                })?;
                if !caller.is_admin() && owner != caller.uid {
                    return Err(ErrorReply::denied(format!(
                        "user namespace {id} is owned by uid {owner}, not by the caller (uid {})",
                        caller.uid
                    )));
                }
                let procfs = &self.inner.procfs;
                let member = match pid_idx {
                    Some(j) => {
                        let fd = take_fd(fds, j, "pidFileDescriptor")?;
                        let pidfd = PidFd::from_owned(procfs, fd)
                            .map_err(|e| ErrorReply::invalid("pidFileDescriptor", e.to_string()))?;
                        let here = procfs.userns(pidfd.pid()).ok();
                        if here != Some(id) || pidfd.has_exited().unwrap_or(true) {
                            return Err(ErrorReply::invalid(
                                "pidFileDescriptor",
                                format!(
                                    "process {} is not a live process of user namespace {id}",
                                    pidfd.pid()
                                ),
                            ));
                        }
                        pidfd
                    }
                    None => {
                        let ns_err =
                            |why: String| ErrorReply::invalid("userNamespaceFileDescriptor", why);
                        let pid = procfs
                            .find_pid_in_userns(id)
                            .map_err(|e| ns_err(e.to_string()))?
                            .ok_or_else(|| ns_err(format!("no process lives in user namespace {id}; pass pidFileDescriptor")))?;
                        let pidfd = PidFd::open(pid).map_err(|e| ns_err(e.to_string()))?;
                        if procfs.userns(pid).ok() != Some(id) {
                            return Err(ns_err(format!("process {pid} left user namespace {id}")));
                        }
                        pidfd
                    }
                };
                let key = (id.dev, id.ino);
                let known = lock(&self.inner.watches).ns.get(&key).map(|n| n.created_ns);
                let created_ns = match known {
                    Some(c) => c,
                    None => member.start_time_ns(procfs).map_err(|e| {
                        ErrorReply::registry(
                            "NamespaceFailed",
                            json!({"reason": e.to_string(), "message": format!("cannot read the start time of a process in {id}: {e}")}),
                        )
                    })?,
                };
                Ok((
                    Lease::UserNs {
                        dev: id.dev,
                        ino: id.ino,
                        created_ns,
                    },
                    Some((userns, member)),
                ))
            }
        }
    }

    fn allocate(
        &self,
        caller: Caller,
        p: &Map<String, Value>,
        fds: &mut [Option<OwnedFd>],
    ) -> Result<Value, ErrorReply> {
        check_fields(
            p,
            &[
                "name",
                "userNamespaceFileDescriptor",
                "pidFileDescriptor",
                "size",
                "high",
                "label",
                "writeMaps",
            ],
        )?;
        let size = opt_u64(p, "size")?;
        let high = opt_bool(p, "high")?.unwrap_or(false);
        let label = opt_str(p, "label")?;
        let write_maps = opt_bool(p, "writeMaps")?.unwrap_or(false);
        let (lease, ns) = self.lease_for(caller, p, fds)?;
        if write_maps && ns.is_none() {
            return Err(ErrorReply::invalid(
                "writeMaps",
                "needs a userNamespaceFileDescriptor",
            ));
        }
        let mut req = AllocRequest::new(lease.clone(), caller.uid);
        req.size = size;
        req.label = label;
        if high {
            req.high = HighRequest::Default;
        }
        let mut reg = lock(&self.inner.reg);
        let existed = reg.get(&Selector::from(&lease)).is_some();
        let a = reg.allocate(&req).map_err(registry_error)?;
        if let Some((userns, member)) = ns {
            if write_maps && !existed {
                // The allocation is durable; only now is its range put to use.
                let written = a
                    .uid_map()
                    .and_then(|u| Ok((u, a.gid_map()?)))
                    .map_err(|e| e.to_string())
                    .and_then(|(u, g)| {
                        write_userns_maps(&self.inner.procfs, &member, &userns, &u, &g)
                            .map_err(|e| e.to_string())
                    });
                if let Err(reason) = written {
                    reg.release(&Selector::Id(a.id)).map_err(registry_error)?;
                    return Err(ErrorReply::registry(
                        "NamespaceFailed",
                        json!({"reason": reason, "message": format!("writing the maps of the user namespace failed, allocation {} released: {reason}", a.id)}),
                    ));
                }
            }
            let key = userns.id().map(|i| (i.dev, i.ino)).unwrap_or_default();
            let mut w = lock(&self.inner.watches);
            let Lease::UserNs { created_ns, .. } = a.lease else {
                unreachable!("userns lease")
            };
            w.ns.entry(key).or_insert_with(|| NsWatch {
                alloc: a.id,
                created_ns,
                _userns: Some(userns),
                pidfds: HashMap::new(),
            });
            self.add_pidfd(&mut w, key, member);
        }
        Ok(json!({ "allocation": AllocationInfo::from(&a) }))
    }

    fn register(
        &self,
        caller: Caller,
        p: &Map<String, Value>,
        fds: &mut [Option<OwnedFd>],
    ) -> Result<Value, ErrorReply> {
        check_fields(
            p,
            &[
                "name",
                "userNamespaceFileDescriptor",
                "pidFileDescriptor",
                "uid",
                "gid",
                "label",
            ],
        )?;
        if !caller.is_admin() {
            return Err(ErrorReply::denied(format!(
                "only root registers ranges chosen elsewhere (caller uid {})",
                caller.uid
            )));
        }
        let uid = opt_range(p, "uid")?.ok_or_else(|| ErrorReply::invalid("uid", "missing"))?;
        let gid = opt_range(p, "gid")?.unwrap_or(uid);
        let label = opt_str(p, "label")?;
        let (lease, ns) = self.lease_for(caller, p, fds)?;
        let mut req = RegisterRequest::new(lease, caller.uid, uid.into());
        req.gid = gid.into();
        req.label = label;
        let mut reg = lock(&self.inner.reg);
        let a = reg.register(&req).map_err(registry_error)?;
        if let Some((userns, member)) = ns {
            if let Ok(id) = userns.id() {
                let key = (id.dev, id.ino);
                let Lease::UserNs { created_ns, .. } = a.lease else {
                    unreachable!("userns lease")
                };
                let mut w = lock(&self.inner.watches);
                w.ns.insert(
                    key,
                    NsWatch {
                        alloc: a.id,
                        created_ns,
                        _userns: Some(userns),
                        pidfds: HashMap::new(),
                    },
                );
                self.add_pidfd(&mut w, key, member);
            }
        }
        Ok(json!({ "allocation": AllocationInfo::from(&a) }))
    }

    /// Resolve `id` or `name` to an allocation the caller may see.
    fn target<'r>(
        &self,
        caller: Caller,
        p: &Map<String, Value>,
        reg: &'r Registry,
    ) -> Result<&'r Allocation, ErrorReply> {
        let id = opt_u64(p, "id")?;
        let name = opt_str(p, "name")?;
        let (sel, what) = match (id, name) {
            (Some(i), None) => (Selector::Id(AllocId(i)), format!("allocation #{i}")),
            (None, Some(n)) => (Selector::Name(n.clone()), format!("allocation named {n:?}")),
            _ => return Err(ErrorReply::invalid("id", "give exactly one of id and name")),
        };
        let a = reg.get(&sel).ok_or_else(|| not_found(&what))?;
        if !caller.is_admin() && a.owner != caller.uid {
            return Err(ErrorReply::denied(format!(
                "{what} belongs to uid {}, not to the caller (uid {})",
                a.owner, caller.uid
            )));
        }
        Ok(a)
    }

    fn release(&self, caller: Caller, p: &Map<String, Value>) -> Result<Value, ErrorReply> {
        check_fields(p, &["id", "name"])?;
        let mut reg = lock(&self.inner.reg);
        let a = self.target(caller, p, &reg)?.clone();
        let a = reg.release(&Selector::Id(a.id)).map_err(registry_error)?;
        if let Lease::UserNs { dev, ino, .. } = a.lease {
            let mut w = lock(&self.inner.watches);
            self.unwatch(&mut w, (dev, ino));
            drop(w);
            // Released while its namespace may still live: whatever that namespace still maps
            // stays out of the pool until a later scan finds it gone.
            let scan = self.scan();
            reg.observe_live(Self::live_ids(&scan));
        }
        Ok(json!({ "allocation": AllocationInfo::from(&a) }))
    }

    fn show(&self, caller: Caller, p: &Map<String, Value>) -> Result<Value, ErrorReply> {
        check_fields(p, &["id", "name"])?;
        let reg = lock(&self.inner.reg);
        let a = self.target(caller, p, &reg)?;
        Ok(json!({ "allocation": AllocationInfo::from(a) }))
    }

    fn list(&self, caller: Caller, p: &Map<String, Value>) -> Result<Value, ErrorReply> {
        check_fields(p, &[])?;
        let reg = lock(&self.inner.reg);
        let v: Vec<AllocationInfo> = reg
            .list()
            .filter(|a| caller.is_admin() || a.owner == caller.uid)
            .map(AllocationInfo::from)
            .collect();
        Ok(json!({ "allocations": v }))
    }

    fn who(&self, caller: Caller, p: &Map<String, Value>) -> Result<Value, ErrorReply> {
        check_fields(p, &["id"])?;
        let id = opt_u64(p, "id")?.ok_or_else(|| ErrorReply::invalid("id", "missing"))?;
        let id = u32::try_from(id)
            .map_err(|_| ErrorReply::invalid("id", format!("{id} is not a 32-bit id")))?;
        let mut holders: Vec<HolderInfo> = {
            let reg = lock(&self.inner.reg);
            reg.who(id)
                .iter()
                .map(|h| {
                    let mine = match h {
                        credns_registry::Holder::Allocation { owner, .. } => {
                            caller.is_admin() || *owner == caller.uid
                        }
                        _ => true,
                    };
                    HolderInfo::from_holder(h, mine)
                })
                .collect()
        };
        for n in self.scan() {
            let maps = |m: &credns_idmap::IdMap| {
                m.extents().iter().any(|e| {
                    e.lower_first as u64 <= id as u64
                        && (id as u64) < e.lower_first as u64 + e.count as u64
                })
            };
            let (u, g) = (maps(&n.uid_map), maps(&n.gid_map));
            if u || g {
                holders.push(HolderInfo {
                    kind: "namespace".into(),
                    allocation: None,
                    lease: None,
                    owner: None,
                    part: None,
                    as_uid: Some(u),
                    as_gid: Some(g),
                    source: None,
                    user_namespace: Some(format!("{} (pid {})", n.id, n.pids[0])),
                });
            }
        }
        Ok(json!({ "holders": holders }))
    }
}

fn not_found(what: &str) -> ErrorReply {
    ErrorReply::registry(
        "NotFound",
        json!({"what": what, "message": format!("no {what}")}),
    )
}

fn take_fd(fds: &mut [Option<OwnedFd>], i: u64, param: &str) -> Result<OwnedFd, ErrorReply> {
    let n = fds.len();
    fds.get_mut(i as usize)
        .and_then(Option::take)
        .ok_or_else(|| {
            ErrorReply::invalid(
                param,
                format!("no file descriptor {i} came with the request ({n} did)"),
            )
        })
}

fn check_fields(p: &Map<String, Value>, allowed: &[&str]) -> Result<(), ErrorReply> {
    for k in p.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(ErrorReply::invalid(k, "unknown parameter"));
        }
    }
    Ok(())
}

fn opt_u64(p: &Map<String, Value>, k: &str) -> Result<Option<u64>, ErrorReply> {
    match p.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            ErrorReply::invalid(k, format!("expected a non-negative integer, got {v}"))
        }),
    }
}

fn opt_str(p: &Map<String, Value>, k: &str) -> Result<Option<String>, ErrorReply> {
    match p.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(ErrorReply::invalid(
            k,
            format!("expected a string, got {v}"),
        )),
    }
}

fn opt_bool(p: &Map<String, Value>, k: &str) -> Result<Option<bool>, ErrorReply> {
    match p.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(ErrorReply::invalid(
            k,
            format!("expected a boolean, got {v}"),
        )),
    }
}

fn opt_range(p: &Map<String, Value>, k: &str) -> Result<Option<Range>, ErrorReply> {
    match p.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let r: Range = serde_json::from_value(v.clone()).map_err(|e| {
                ErrorReply::invalid(k, format!("expected {{\"start\": N, \"end\": N}}: {e}"))
            })?;
            if r.start > r.end {
                return Err(ErrorReply::invalid(
                    k,
                    format!("range {}-{} ends before it starts", r.start, r.end),
                ));
            }
            Ok(Some(r))
        }
    }
}

/// The registry's errors as varlink errors; every one carries a `message`.
pub(crate) fn registry_error(e: credns_registry::Error) -> ErrorReply {
    use credns_registry::Error as E;
    let message = e.to_string();
    match e {
        E::InvalidSize { .. } => ErrorReply::registry(
            "InvalidParameter",
            json!({"parameter": "size", "reason": message, "message": message}),
        ),
        E::InvalidLease { .. } => ErrorReply::registry(
            "InvalidParameter",
            json!({"parameter": "name", "reason": message, "message": message}),
        ),
        E::InvalidRange { .. } => ErrorReply::registry(
            "InvalidParameter",
            json!({"parameter": "uid", "reason": message, "message": message}),
        ),
        E::HighWindowDisabled => ErrorReply::registry(
            "InvalidParameter",
            json!({"parameter": "high", "reason": message, "message": message}),
        ),
        E::PoolExhausted {
            window,
            requested,
            align,
            largest_free,
        } => ErrorReply::registry(
            "PoolExhausted",
            json!({"window": window.to_string(), "requested": requested, "align": align, "largestFree": largest_free, "message": message}),
        ),
        E::QuotaExceeded { owner, limit } => {
            let (l, max, held, requested) = match limit {
                QuotaLimit::Ranges { max, held } => ("max_ranges", max as u64, held as u64, 1),
                QuotaLimit::Ids {
                    max,
                    held,
                    requested,
                } => ("max_ids", max, held, requested),
            };
            ErrorReply::registry(
                "QuotaExceeded",
                json!({"owner": owner, "limit": l, "max": max, "held": held, "requested": requested, "message": message}),
            )
        }
        E::UnknownId(id) => not_found(&format!("allocation {id}")),
        E::UnknownName(n) => not_found(&format!("allocation named {n:?}")),
        E::UnknownUserNs { dev, ino, .. } => {
            not_found(&format!("allocation leased to user namespace {dev}:{ino}"))
        }
        E::LeaseTaken { lease, by, owner } => ErrorReply::registry(
            "LeaseTaken",
            json!({"lease": lease.to_string(), "allocation": by.0, "owner": owner, "message": message}),
        ),
        E::Overlap { range, with, .. } => ErrorReply::registry(
            "RangeUnavailable",
            json!({"range": Range::from(range), "allocation": with.0, "message": message}),
        ),
        _ => ErrorReply::registry("Internal", json!({"message": message})),
    }
}
