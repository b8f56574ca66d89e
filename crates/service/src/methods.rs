//! The methods of `io.credns.Registry` for a caller: authorization (`SO_PEERCRED` uid against
//! owners and namespace owners), leases, map writing, and the registry calls. The same code
//! runs in the daemon and, for root with no daemon, in the command itself.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use credns_api::registry::{AllocationInfo, HolderInfo};
use credns_registry::{
    AllocId, AllocRequest, Allocation, HighRequest, Lease, RegisterRequest, Registry, Selector,
};
use credns_sys::maps::write_userns_maps;
use credns_sys::pidfd::PidFd;
use credns_sys::{NsId, Pid, ProcFs, UserNsFd};
use credns_varlink::ErrorReply;
use serde_json::{json, Value};

use crate::cell::RegistryCell;
use crate::errors::{
    denied, internal, invalid, namespace_failed, not_found, registry_error, store_unsafe,
};
use crate::params::{decode, AllocateParams, NoParams, RegisterParams, TargetParams, WhoParams};
use crate::{convert, live};

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

/// The descriptors that came with a request; each may be taken once.
pub(crate) trait Fds {
    /// Descriptor `index`, if it came and was not taken yet.
    fn take(&mut self, index: u64) -> Option<OwnedFd>;
    /// How many came.
    fn count(&self) -> usize;
}

/// Descriptors held by the caller of an in-process call.
pub(crate) struct SliceFds<'a>(pub &'a mut [Option<OwnedFd>]);

impl Fds for SliceFds<'_> {
    fn take(&mut self, index: u64) -> Option<OwnedFd> {
        self.0.get_mut(usize::try_from(index).ok()?)?.take()
    }
    fn count(&self) -> usize {
        self.0.len()
    }
}

impl Fds for credns_varlink::Call<'_> {
    fn take(&mut self, index: u64) -> Option<OwnedFd> {
        self.take_fd(index)
    }
    fn count(&self) -> usize {
        self.fd_count()
    }
}

/// An nsfs device and inode: how leases name a user namespace.
pub(crate) type NsKey = (u64, u64);

/// What keeps track of leased namespaces' lives: the daemon's death watch, or nothing (the
/// direct path's command releases its own lease).
pub(crate) trait Leases: Send + Sync {
    /// The creation stamp of a namespace lease already known.
    /// (Only when the leased namespace is the one with kernel id `ns_id`, where both are
    /// known: an inode can be reused by a new namespace before the old lease is released.)
    fn known_stamp(&self, key: NsKey, ns_id: Option<u64>) -> Option<u64>;
    /// Follow a newly leased namespace: `member` is a live process inside it.
    fn watch(&self, key: NsKey, lease: Watch, userns: UserNsFd, member: PidFd);
    /// Whether every namespace lease is followed here (so [`known_stamp`](Self::known_stamp)
    /// knows them all).
    fn follows(&self) -> bool;
    /// Stop following a namespace whose lease was released.
    fn unwatch(&self, key: NsKey);
}

/// A namespace lease to follow: its allocation, creation stamp and kernel id.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Watch {
    pub alloc: AllocId,
    pub created_ns: u64,
    pub ns_id: Option<u64>,
}

/// Follows nothing.
pub(crate) struct NoWatch;

impl Leases for NoWatch {
    fn known_stamp(&self, _: NsKey, _: Option<u64>) -> Option<u64> {
        None
    }
    fn watch(&self, _: NsKey, _: Watch, _: UserNsFd, _: PidFd) {}
    fn follows(&self) -> bool {
        false
    }
    fn unwatch(&self, _: NsKey) {}
}

/// The methods, over a registry cell.
pub(crate) struct Methods {
    pub(crate) cell: RegistryCell,
    pub(crate) procfs: ProcFs,
    pub(crate) own_ns: Option<NsId>,
    pub(crate) leases: Arc<dyn Leases>,
    /// Serve namespace leases from reservations (the daemon: its reaper refills them and
    /// makes bindings durable); off on the direct path, which keeps no state between calls.
    pub(crate) reservations: bool,
    /// A binding was committed without waiting for the disk and not flushed yet.
    pub(crate) unflushed: std::sync::atomic::AtomicBool,
    /// Reservations handed out since the last refill.
    pub(crate) taken: std::sync::atomic::AtomicUsize,
    /// Container keyrings.
    pub(crate) keys: crate::keys::KeyHome,
}

type NsArg = Option<(UserNsFd, PidFd)>;

impl Methods {
    /// Run `method` for `caller` with `params` and the descriptors that came with them.
    pub(crate) fn call(
        &self,
        caller: Caller,
        method: &str,
        params: &Value,
        fds: &mut dyn Fds,
    ) -> Result<Value, ErrorReply> {
        match method {
            "Allocate" => self.allocate(caller, decode(params)?, fds),
            "Register" => self.register(caller, decode(params)?, fds),
            "Release" => self.release(caller, decode(params)?),
            "Show" => self.show(caller, decode(params)?),
            "List" => {
                let NoParams {} = decode(params)?;
                self.list(caller)
            }
            "Who" => self.who(caller, decode(params)?),
            "Keyring" => self.keyring(caller, decode(params)?),
            "KeyRoutes" => self.key_routes(caller, decode(params)?),
            "AddKeyRoute" => self.add_key_route(caller, decode(params)?),
            "RemoveKeyRoute" => self.remove_key_route(caller, decode(params)?),
            _ => Err(ErrorReply::method_not_found(&format!(
                "{}.{method}",
                credns_api::registry::INTERFACE
            ))),
        }
    }

    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&mut Registry) -> Result<T, ErrorReply>,
    ) -> Result<T, ErrorReply> {
        self.access(true, f)
    }

    /// Whose share of connections and quota a uid's requests take (see [`principal`]).
    pub(crate) fn principal_of(&self, uid: u32) -> u32 {
        self.cell.peek(|reg| principal(reg, uid)).unwrap_or(uid)
    }

    /// [`with`](Self::with), for the other modules of this crate.
    pub(crate) fn write_registry<T>(
        &self,
        f: impl FnOnce(&mut Registry) -> Result<T, ErrorReply>,
    ) -> Result<T, ErrorReply> {
        self.with(f)
    }

    /// As [`read`](Self::read), for the other modules of this crate.
    pub(crate) fn read_registry<T>(
        &self,
        f: impl FnOnce(&mut Registry) -> Result<T, ErrorReply>,
    ) -> Result<T, ErrorReply> {
        self.read(f)
    }

    /// As [`with`](Self::with) for a call that writes nothing.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&mut Registry) -> Result<T, ErrorReply>,
    ) -> Result<T, ErrorReply> {
        self.access(false, f)
    }

    fn access<T>(
        &self,
        writes: bool,
        f: impl FnOnce(&mut Registry) -> Result<T, ErrorReply>,
    ) -> Result<T, ErrorReply> {
        self.cell.with_access(writes, f).map_err(|e| match e {
            crate::Error::Registry(r) => registry_error(r),
            e @ crate::Error::UnsafeStore { .. } => store_unsafe(e.to_string()),
            e => internal(e.to_string()),
        })?
    }

    fn lease_for(
        &self,
        caller: Caller,
        name: Option<String>,
        ns_idx: Option<u64>,
        pid_idx: Option<u64>,
        fds: &mut dyn Fds,
    ) -> Result<(Lease, NsArg), ErrorReply> {
        match (name, ns_idx) {
            (Some(_), Some(_)) => Err(invalid(
                "name",
                "give a name or a userNamespaceFileDescriptor, not both",
            )),
            (None, None) => Err(invalid(
                "name",
                "a lease is needed: a name or a userNamespaceFileDescriptor",
            )),
            (Some(_), None) if pid_idx.is_some() => Err(invalid(
                "pidFileDescriptor",
                "only with userNamespaceFileDescriptor",
            )),
            (Some(n), None) => Ok((Lease::Name(n), None)),
            (None, Some(i)) => {
                let (lease, userns, member) = self.namespace_lease(caller, i, pid_idx, fds)?;
                Ok((lease, Some((userns, member))))
            }
        }
    }

    /// The lease of the user namespace passed as descriptor `i`, checked to be the caller's,
    /// with a live member process (passed as descriptor `pid_idx`, or found in /proc).
    fn namespace_lease(
        &self,
        caller: Caller,
        i: u64,
        pid_idx: Option<u64>,
        fds: &mut dyn Fds,
    ) -> Result<(Lease, UserNsFd, PidFd), ErrorReply> {
        let param = "userNamespaceFileDescriptor";
        let userns = UserNsFd::from_owned(take_fd(fds, i, param)?);
        let owner = userns
            .owner_uid()
            .map_err(|e| invalid(param, format!("not a user namespace: {e}")))?;
        let id = userns.id().map_err(|e| invalid(param, e.to_string()))?;
        if !caller.is_admin() && owner != caller.uid {
            return Err(denied(format!(
                "user namespace {id} is owned by uid {owner}, not by the caller (uid {})",
                caller.uid
            )));
        }
        let member = match pid_idx {
            Some(j) => self.passed_member(id, take_fd(fds, j, "pidFileDescriptor")?)?,
            None => self.found_member(id)?,
        };
        let key = (id.dev, id.ino);
        let ns_id = userns.ns_id().ok().flatten();
        let created_ns = match self.leases.known_stamp(key, ns_id) {
            Some(c) => c,
            // The daemon follows every namespace lease it holds, and tells namespaces apart by
            // their kernel id: the time of the lease is stamp enough (the namespace existed
            // then, so it was created no later), and no /proc read is needed.
            None if ns_id.is_some() && self.leases.follows() => now_ns(),
            None => member.start_time_ns(&self.procfs).map_err(|e| {
                namespace_failed(
                    e.to_string(),
                    format!("cannot read the start time of a process in {id}: {e}"),
                )
            })?,
        };
        let lease = Lease::UserNs {
            dev: id.dev,
            ino: id.ino,
            created_ns,
        };
        Ok((lease, userns, member))
    }

    fn passed_member(&self, id: NsId, fd: OwnedFd) -> Result<PidFd, ErrorReply> {
        let pidfd = PidFd::from_owned(&self.procfs, fd)
            .map_err(|e| invalid("pidFileDescriptor", e.to_string()))?;
        let here = self.procfs.userns(pidfd.pid()).ok();
        if here != Some(id) || pidfd.has_exited().unwrap_or(true) {
            return Err(invalid(
                "pidFileDescriptor",
                format!(
                    "process {} is not a live process of user namespace {id}",
                    pidfd.pid()
                ),
            ));
        }
        Ok(pidfd)
    }

    fn found_member(&self, id: NsId) -> Result<PidFd, ErrorReply> {
        let ns_err = |why: String| invalid("userNamespaceFileDescriptor", why);
        let pid = self
            .procfs
            .find_pid_in_userns(id)
            .map_err(|e| ns_err(e.to_string()))?
            .ok_or_else(|| {
                ns_err(format!(
                    "no process lives in user namespace {id}; pass pidFileDescriptor"
                ))
            })?;
        let pidfd = PidFd::open(pid).map_err(|e| ns_err(e.to_string()))?;
        if self.procfs.userns(pid).ok() != Some(id) {
            return Err(ns_err(format!("process {pid} left user namespace {id}")));
        }
        Ok(pidfd)
    }

    fn allocate(
        &self,
        caller: Caller,
        p: AllocateParams,
        fds: &mut dyn Fds,
    ) -> Result<Value, ErrorReply> {
        let (lease, ns) = self.lease_for(
            caller,
            p.name,
            p.user_namespace_file_descriptor,
            p.pid_file_descriptor,
            fds,
        )?;
        if p.write_maps && ns.is_none() {
            return Err(invalid("writeMaps", "needs a userNamespaceFileDescriptor"));
        }
        let mut req = AllocRequest::new(lease, caller.uid);
        req.ns_id = ns_id(&ns);
        req.size = p.size;
        req.label = p.label;
        if p.high {
            req.high = HighRequest::Default;
        }
        let (mut reply, a, fresh) = self.with(|reg| {
            req.principal = Some(principal(reg, caller.uid));
            let fresh = reg.get(&Selector::from(&req.lease)).is_none();
            let a = self.allocate_in(reg, &req, ns.is_some())?;
            if let Some((userns, member)) = ns {
                if p.write_maps && fresh {
                    self.write_maps(reg, &a, &member, &userns)?;
                }
                self.follow(&a, userns, member);
            }
            Ok((
                json!({ "allocation": convert::allocation(reg, &a), "fresh": fresh }),
                a,
                fresh,
            ))
        })?;
        if p.keyring {
            reply["keyring"] = json!(self.keyring_for_new(&a, fresh)?);
        }
        Ok(reply)
    }

    /// Allocate `req`: a namespace lease from a reservation when the daemon holds one (no
    /// fsync on the way: the range was durable as a reservation), otherwise durably.
    fn allocate_in(
        &self,
        reg: &mut Registry,
        req: &AllocRequest,
        namespace: bool,
    ) -> Result<Allocation, ErrorReply> {
        if self.reservations && namespace {
            if let Some(a) = reg.allocate_reserved(req).map_err(registry_error)? {
                self.unflushed
                    .store(true, std::sync::atomic::Ordering::Release);
                self.taken.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                return Ok(a);
            }
        }
        reg.allocate(req).map_err(registry_error)
    }

    /// Write a fresh allocation's maps into its namespace; on failure release it again.
    fn write_maps(
        &self,
        reg: &mut Registry,
        a: &Allocation,
        member: &PidFd,
        userns: &UserNsFd,
    ) -> Result<(), ErrorReply> {
        // The allocation is durable; only now is its range put to use.
        let written = a
            .uid_map()
            .and_then(|u| Ok((u, a.gid_map()?)))
            .map_err(|e| e.to_string())
            .and_then(|(u, g)| {
                write_userns_maps(&self.procfs, member, userns, &u, &g).map_err(|e| e.to_string())
            });
        if let Err(reason) = written {
            reg.release(&Selector::Id(a.id)).map_err(registry_error)?;
            return Err(namespace_failed(
                reason.clone(),
                format!(
                    "writing the maps of the user namespace failed, allocation {} released: {reason}",
                    a.id
                ),
            ));
        }
        Ok(())
    }

    fn follow(&self, a: &Allocation, userns: UserNsFd, member: PidFd) {
        if let (Ok(id), Lease::UserNs { created_ns, .. }) = (userns.id(), &a.lease) {
            let w = Watch {
                alloc: a.id,
                created_ns: *created_ns,
                ns_id: a.ns_id,
            };
            self.leases.watch((id.dev, id.ino), w, userns, member);
        }
    }

    fn register(
        &self,
        caller: Caller,
        p: RegisterParams,
        fds: &mut dyn Fds,
    ) -> Result<Value, ErrorReply> {
        if !caller.is_admin() {
            return Err(denied(format!(
                "only root registers ranges chosen elsewhere (caller uid {})",
                caller.uid
            )));
        }
        for (name, r) in [("uid", Some(p.uid)), ("gid", p.gid)] {
            if let Some(r) = r.filter(|r| r.start > r.end) {
                return Err(invalid(
                    name,
                    format!("range {}-{} ends before it starts", r.start, r.end),
                ));
            }
        }
        let (lease, ns) = self.lease_for(
            caller,
            p.name,
            p.user_namespace_file_descriptor,
            p.pid_file_descriptor,
            fds,
        )?;
        let mut req = RegisterRequest::new(lease, caller.uid, p.uid.into());
        req.ns_id = ns_id(&ns);
        req.gid = p.gid.unwrap_or(p.uid).into();
        req.label = p.label;
        self.with(|reg| {
            let a = reg.register(&req).map_err(registry_error)?;
            if let Some((userns, member)) = ns {
                self.follow(&a, userns, member);
            }
            Ok(json!({ "allocation": convert::allocation(reg, &a) }))
        })
    }

    /// Resolve `id` or `name` to an allocation the caller may see.
    pub(crate) fn target<'r>(
        caller: Caller,
        p: &TargetParams,
        reg: &'r Registry,
    ) -> Result<&'r Allocation, ErrorReply> {
        let (sel, what) = match (p.id, &p.name) {
            (Some(i), None) => (Selector::Id(AllocId(i)), format!("allocation #{i}")),
            (None, Some(n)) => (Selector::Name(n.clone()), format!("allocation named {n:?}")),
            _ => return Err(invalid("id", "give exactly one of id and name")),
        };
        let a = reg
            .get(&sel)
            // Reservations are the daemon's own: not shown, not released by a request.
            .filter(|a| a.origin != credns_registry::Origin::Reserved)
            .ok_or_else(|| not_found(&what))?;
        if !caller.is_admin() && a.owner != caller.uid {
            return Err(denied(format!(
                "{what} belongs to uid {}, not to the caller (uid {})",
                a.owner, caller.uid
            )));
        }
        Ok(a)
    }

    pub(crate) fn release(&self, caller: Caller, p: TargetParams) -> Result<Value, ErrorReply> {
        // A store that does not exist holds nothing to release: read as empty, not created.
        self.access(false, |reg| {
            let id = Self::target(caller, &p, reg)?.id;
            let a = reg.release(&Selector::Id(id)).map_err(registry_error)?;
            self.keys.released(a.id.0, a.owner);
            if let Lease::UserNs { dev, ino, .. } = a.lease {
                self.leases.unwatch((dev, ino));
            }
            // Released while its namespace may still live (or, for a delegation, while the
            // namespaces its user mapped with newuidmap do): whatever they still map stays out
            // of the pool until a later scan finds it gone.
            if matches!(a.lease, Lease::UserNs { .. }) || a.delegated {
                reg.observe_live(live::live_ids(&live::scan(&self.procfs, self.own_ns)));
            }
            Ok(json!({ "allocation": convert::allocation(reg, &a) }))
        })
    }

    fn show(&self, caller: Caller, p: TargetParams) -> Result<Value, ErrorReply> {
        self.read(|reg| {
            let a = Self::target(caller, &p, reg)?;
            Ok(json!({ "allocation": convert::allocation(reg, a) }))
        })
    }

    fn list(&self, caller: Caller) -> Result<Value, ErrorReply> {
        self.read(|reg| {
            let v: Vec<AllocationInfo> = reg
                .list()
                .filter(|a| caller.is_admin() || a.owner == caller.uid)
                .map(|a| convert::allocation(reg, a))
                .collect();
            Ok(json!({ "allocations": v }))
        })
    }

    fn who(&self, caller: Caller, p: WhoParams) -> Result<Value, ErrorReply> {
        let id = u32::try_from(p.id)
            .map_err(|_| invalid("id", format!("{} is not a 32-bit id", p.id)))?;
        let mut holders: Vec<HolderInfo> = self.read(|reg| {
            Ok(reg
                .who(id)
                .iter()
                .map(|h| {
                    let mine = match h {
                        credns_registry::Holder::Allocation { owner, .. } => {
                            caller.is_admin() || *owner == caller.uid
                        }
                        _ => true,
                    };
                    convert::holder(h, mine)
                })
                .collect())
        })?;
        holders.extend(self.namespaces_mapping(id));
        Ok(json!({ "holders": holders }))
    }

    /// The live namespaces whose maps hold host id `id`.
    fn namespaces_mapping(&self, id: u32) -> Vec<HolderInfo> {
        let maps = |m: &credns_idmap::IdMap| {
            m.extents().iter().any(|e| {
                e.lower_first as u64 <= id as u64
                    && (id as u64) < e.lower_first as u64 + e.count as u64
            })
        };
        live::scan(&self.procfs, self.own_ns)
            .into_iter()
            .filter_map(|n| {
                let (u, g) = (maps(&n.uid_map), maps(&n.gid_map));
                (u || g).then(|| HolderInfo {
                    kind: "namespace".into(),
                    allocation: None,
                    lease: None,
                    owner: None,
                    part: None,
                    as_uid: Some(u),
                    as_gid: Some(g),
                    source: None,
                    user_namespace: Some(format!("{} (pid {})", n.id, n.pids[0])),
                })
            })
            .collect()
    }
}

/// Who pays for what `uid` allocates: a uid inside an allocation is charged to that
/// allocation's owner, and so on up (a container's users cannot multiply their owner's quota
/// by switching uids). Inside a root-owned allocation the container itself is the principal,
/// named by its first uid, with an ordinary user's quota: never root, which has none.
pub(crate) fn principal(reg: &Registry, uid: u32) -> u32 {
    let mut p = uid;
    for _ in 0..16 {
        let Some(a) = reg.allocator().holding(p) else {
            return p;
        };
        if a.owner == 0 || a.charged_to() == 0 {
            return a.uid.start;
        }
        p = a.charged_to();
    }
    p
}

/// Now, in nanoseconds since the Unix epoch.
pub(crate) fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The kernel's id of a leased namespace, where the kernel tells it.
fn ns_id(ns: &NsArg) -> Option<u64> {
    ns.as_ref().and_then(|(u, _)| u.ns_id().ok().flatten())
}

fn take_fd(fds: &mut dyn Fds, i: u64, param: &str) -> Result<OwnedFd, ErrorReply> {
    let n = fds.count();
    fds.take(i).ok_or_else(|| {
        invalid(
            param,
            format!("no file descriptor {i} came with the request ({n} did)"),
        )
    })
}
