//! The namespaces other than user namespaces (mnt, net, uts, ipc, pid, cgroup, time), each
//! owned by a user namespace, and the operations they decide: `unshare` of one type, `setns`
//! into one (the `*_install` functions), `sethostname` and `bind` of a TCP port.
//!
//! Each task belongs to one namespace of each type (the initial ones unless declared or
//! changed); for pid and time namespaces a task also has the one its children will be born in
//! (`pid_ns_for_children`, `time_ns_for_children`), which is what `unshare` and `setns` change.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::caps::Cap;
use crate::outcome::Tracer;
use crate::world::{NsRef, TaskRef, World};
use credns_idmap::Errno;

use super::{out, OpResult};

/// `MAX_PID_NS_LEVEL`.
const MAX_PID_NS_LEVEL: u32 = 32;
/// `__NEW_UTS_LEN`.
const NEW_UTS_LEN: usize = 64;
/// `PROT_SOCK`: `ip_unprivileged_port_start` of a new network namespace.
pub const PROT_SOCK: u32 = 1024;

/// A namespace type other than user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NsType {
    /// `CLONE_NEWNS`.
    Mnt,
    /// `CLONE_NEWNET`.
    Net,
    /// `CLONE_NEWUTS`.
    Uts,
    /// `CLONE_NEWIPC`.
    Ipc,
    /// `CLONE_NEWPID`.
    Pid,
    /// `CLONE_NEWCGROUP`.
    Cgroup,
    /// `CLONE_NEWTIME`.
    Time,
}

impl NsType {
    /// Every type, in `nsproxy` order.
    pub const ALL: [NsType; 7] = [
        NsType::Mnt,
        NsType::Net,
        NsType::Uts,
        NsType::Ipc,
        NsType::Pid,
        NsType::Cgroup,
        NsType::Time,
    ];

    /// The name `/proc/PID/ns/` gives it.
    pub fn name(self) -> &'static str {
        match self {
            NsType::Mnt => "mnt",
            NsType::Net => "net",
            NsType::Uts => "uts",
            NsType::Ipc => "ipc",
            NsType::Pid => "pid",
            NsType::Cgroup => "cgroup",
            NsType::Time => "time",
        }
    }

    /// Its `CLONE_NEW*` flag's name.
    pub fn flag(self) -> &'static str {
        match self {
            NsType::Mnt => "CLONE_NEWNS",
            NsType::Net => "CLONE_NEWNET",
            NsType::Uts => "CLONE_NEWUTS",
            NsType::Ipc => "CLONE_NEWIPC",
            NsType::Pid => "CLONE_NEWPID",
            NsType::Cgroup => "CLONE_NEWCGROUP",
            NsType::Time => "CLONE_NEWTIME",
        }
    }

    /// The type called `s` (`mnt`/`mount`, `net`, `uts`, `ipc`, `pid`, `cgroup`, `time`).
    pub fn parse(s: &str) -> Option<NsType> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "mnt" | "mount" => NsType::Mnt,
            "net" => NsType::Net,
            "uts" => NsType::Uts,
            "ipc" => NsType::Ipc,
            "pid" => NsType::Pid,
            "cgroup" => NsType::Cgroup,
            "time" => NsType::Time,
            _ => return None,
        })
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The `*_install` function of `setns`.
    fn install(self) -> &'static str {
        match self {
            NsType::Mnt => "mntns_install",
            NsType::Net => "netns_install",
            NsType::Uts => "utsns_install",
            NsType::Ipc => "ipcns_install",
            NsType::Pid => "pidns_install",
            NsType::Cgroup => "cgroupns_install",
            NsType::Time => "timens_install",
        }
    }
}

/// A namespace of a type other than user: its own name, type and owning user namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypedNs {
    /// Name used in scenarios (unique within its type).
    pub name: String,
    /// Its type.
    pub kind: NsType,
    /// The user namespace owning it (`ns->user_ns`).
    pub owner: NsRef,
    /// For pid namespaces: the parent pid namespace and the level.
    pub parent: Option<TypedNsRef>,
    /// Nesting level (pid namespaces; 0 for the others).
    pub level: u32,
    /// For UTS namespaces: the hostname, when known.
    pub hostname: Option<String>,
    /// For network namespaces: `net.ipv4.ip_unprivileged_port_start`.
    pub ip_unprivileged_port_start: u32,
    /// For mount namespaces: copied from one owned by another user namespace, so every mount
    /// but its root is `MNT_LOCKED` (`lock_mnt_tree`).
    pub locked: bool,
    /// For mount namespaces: the new filesystems `mount` ops put in it (or in the namespace
    /// it was copied from), outside the model's one mount table.
    pub new_mounts: Vec<super::userns_mount::NewMount>,
    /// For mount namespaces: the paths of the model's mounts an `umount` op took out of it
    /// (what lies under them is not in the model).
    pub unmounted: Vec<String>,
}

/// A [`TypedNs`] of a [`World`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct TypedNsRef(pub(crate) usize);

/// Which namespaces a task is in (its `nsproxy`), and where its children will be born.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Membership {
    ns: [TypedNsRef; 7],
    pid_for_children: TypedNsRef,
    time_for_children: TypedNsRef,
}

/// Every namespace of the seven types, and who is in which.
#[derive(Clone, Debug)]
pub struct NsTypes {
    list: Vec<TypedNs>,
    members: BTreeMap<TaskRef, Membership>,
}

impl Default for NsTypes {
    /// The seven initial namespaces, called `init`, owned by the initial user namespace.
    fn default() -> Self {
        let list = NsType::ALL
            .iter()
            .map(|&kind| TypedNs {
                name: "init".into(),
                kind,
                owner: NsRef(0),
                parent: None,
                level: 0,
                hostname: None,
                ip_unprivileged_port_start: PROT_SOCK,
                locked: false,
                new_mounts: Vec::new(),
                unmounted: Vec::new(),
            })
            .collect();
        NsTypes {
            list,
            members: BTreeMap::new(),
        }
    }
}

impl NsTypes {
    fn initial(&self) -> Membership {
        let ns = [0, 1, 2, 3, 4, 5, 6].map(TypedNsRef);
        Membership {
            ns,
            pid_for_children: ns[NsType::Pid.index()],
            time_for_children: ns[NsType::Time.index()],
        }
    }

    fn of(&self, task: TaskRef) -> Membership {
        self.members
            .get(&task)
            .copied()
            .unwrap_or_else(|| self.initial())
    }
}

impl World {
    /// A namespace of one of the seven types.
    pub fn typed_ns(&self, r: TypedNsRef) -> &TypedNs {
        &self.nstypes.list[r.0]
    }

    /// A namespace of one of the seven types, mutably (hostname, sysctl).
    pub fn typed_ns_mut(&mut self, r: TypedNsRef) -> &mut TypedNs {
        &mut self.nstypes.list[r.0]
    }

    /// Every namespace of the seven types, the initial ones first.
    pub fn typed_namespaces(&self) -> impl Iterator<Item = (TypedNsRef, &TypedNs)> {
        self.nstypes
            .list
            .iter()
            .enumerate()
            .map(|(i, n)| (TypedNsRef(i), n))
    }

    /// Whether `r` is one of the seven initial namespaces.
    pub fn is_initial_typed(&self, r: TypedNsRef) -> bool {
        r.0 < NsType::ALL.len()
    }

    /// The namespace of type `kind` called `name`.
    pub fn typed_ns_by_name(&self, kind: NsType, name: &str) -> Option<TypedNsRef> {
        self.nstypes
            .list
            .iter()
            .position(|n| n.kind == kind && n.name == name)
            .map(TypedNsRef)
    }

    /// Declare a namespace of type `kind` owned by `owner` (a pid namespace below `parent`,
    /// default the initial one). No permission check: a declaration.
    pub fn add_typed_ns(
        &mut self,
        kind: NsType,
        name: &str,
        owner: NsRef,
        parent: Option<TypedNsRef>,
    ) -> Result<TypedNsRef, crate::Error> {
        if self.typed_ns_by_name(kind, name).is_some() {
            return Err(crate::Error::Model(format!(
                "a {} namespace called \"{name}\" already exists",
                kind.name()
            )));
        }
        let parent =
            (kind == NsType::Pid).then(|| parent.unwrap_or(TypedNsRef(NsType::Pid.index())));
        let level = parent.map(|p| self.typed_ns(p).level + 1).unwrap_or(0);
        self.nstypes.list.push(TypedNs {
            name: name.into(),
            kind,
            owner,
            parent,
            level,
            hostname: None,
            ip_unprivileged_port_start: PROT_SOCK,
            // A declared mount namespace is a copy of the initial one.
            locked: kind == NsType::Mnt && owner != self.init_ns(),
            new_mounts: Vec::new(),
            unmounted: Vec::new(),
        });
        Ok(TypedNsRef(self.nstypes.list.len() - 1))
    }

    /// The namespace of type `kind` `task` is in.
    pub fn task_typed_ns(&self, task: TaskRef, kind: NsType) -> TypedNsRef {
        self.nstypes.of(task).ns[kind.index()]
    }

    /// Put `task` into `ns` (as if it had been born there: for pid and time namespaces, its
    /// children's too).
    pub fn join_typed_ns(&mut self, task: TaskRef, ns: TypedNsRef) {
        let kind = self.typed_ns(ns).kind;
        let mut m = self.nstypes.of(task);
        m.ns[kind.index()] = ns;
        match kind {
            NsType::Pid => m.pid_for_children = ns,
            NsType::Time => m.time_for_children = ns,
            _ => {}
        }
        self.nstypes.members.insert(task, m);
    }

    fn set_for_task(&mut self, task: TaskRef, ns: TypedNsRef) {
        let kind = self.typed_ns(ns).kind;
        let mut m = self.nstypes.of(task);
        match kind {
            NsType::Pid => m.pid_for_children = ns,
            NsType::Time => m.time_for_children = ns,
            k => m.ns[k.index()] = ns,
        }
        self.nstypes.members.insert(task, m);
    }

    /// `ns_capable(owner of ns, CAP_SYS_ADMIN)` with its trace.
    fn capable_over(&self, t: &mut Tracer, task: TaskRef, ns: TypedNsRef, cap: Cap) -> bool {
        let c = self.task(task).cred.clone();
        self.ns_capable(t, &c, self.typed_ns(ns).owner, cap)
    }

    fn capable_own(&self, t: &mut Tracer, task: TaskRef, cap: Cap) -> bool {
        let c = self.task(task).cred.clone();
        self.ns_capable(t, &c, c.user_ns, cap)
    }

    fn show_typed(&self, r: TypedNsRef) -> String {
        let n = self.typed_ns(r);
        format!(
            "{} namespace \"{}\" (owned by \"{}\")",
            n.kind.name(),
            n.name,
            self.ns(n.owner).name
        )
    }

    /// `unshare(CLONE_NEW<kind>)`: `unshare_nsproxy_namespaces` needs CAP_SYS_ADMIN in the
    /// caller's own user namespace, which then owns the new namespace.
    pub(super) fn op_unshare_ns(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        kind: NsType,
        name: &str,
    ) -> OpResult {
        if !tr!(t.check(
            self.capable_own(t, task, Cap::SYS_ADMIN),
            "unshare_nsproxy_namespaces",
            format!(
                "{}: CAP_SYS_ADMIN in the caller's own user namespace",
                kind.flag()
            ),
            vec![],
        )) {
            return Err(Errno::EPERM.into());
        }
        let owner = self.task(task).cred.user_ns;
        let m = self.nstypes.of(task);
        let parent = match kind {
            NsType::Pid => Some(self.pid_ns_parent(t, task, m, owner)?),
            _ => None,
        };
        if self.typed_ns_by_name(kind, name).is_some() {
            return Err(crate::vfs::Stop::unknown(format!(
                "the scenario already has a {} namespace called \"{name}\"",
                kind.name()
            )));
        }
        let new = self
            .add_typed_ns(kind, name, owner, parent)
            .map_err(|e| crate::vfs::Stop::unknown(e.to_string()))?;
        // copy_mnt_ns: a copy made for another user namespace than the old one's owner has
        // every mount but its root locked.
        if kind == NsType::Mnt {
            let old = self.typed_ns(m.ns[NsType::Mnt.index()]);
            let locked = old.locked || old.owner != owner;
            let copies = super::userns_mount::copy_new_mounts(old, owner);
            let gone = old.unmounted.clone();
            self.typed_ns_mut(new).locked = locked;
            self.typed_ns_mut(new).new_mounts = copies;
            self.typed_ns_mut(new).unmounted = gone;
        }
        // copy_utsname: the new UTS namespace starts with a copy of the old one's name.
        if kind == NsType::Uts {
            let old = m.ns[NsType::Uts.index()];
            self.typed_ns_mut(new).hostname = self.typed_ns(old).hostname.clone();
        }
        self.set_for_task(task, new);
        let who = match kind {
            NsType::Pid | NsType::Time => "the caller's future children will be in it",
            _ => "the caller is now in it",
        };
        tr!(t.pass(
            "create_new_namespaces",
            format!("{} created; {who}", self.show_typed(new)),
            vec![("level", self.typed_ns(new).level.to_string())],
        ));
        let mut o = vec![("ns", name.to_string()), ("type", kind.name().to_string())];
        // A new pid namespace shows nothing (no nsfs file) until a process lives in it.
        if kind != NsType::Pid {
            o.push(("owner", self.ns(owner).name.clone()));
        }
        Ok(Some(out(o)))
    }

    /// `copy_pid_ns` and `create_pid_namespace`: the parent of a new pid namespace is the
    /// caller's `pid_ns_for_children`, which must be its own active one.
    fn pid_ns_parent(
        &self,
        t: &mut Tracer,
        task: TaskRef,
        m: Membership,
        owner: NsRef,
    ) -> Result<TypedNsRef, crate::vfs::Stop> {
        let _ = task;
        let active = m.ns[NsType::Pid.index()];
        if !tr!(t.check(
            m.pid_for_children == active,
            "copy_pid_ns",
            "the caller's pid namespace for children must be its active one (no earlier unshare or setns of a pid namespace)",
            vec![
                ("active", self.typed_ns(active).name.clone()),
                ("for_children", self.typed_ns(m.pid_for_children).name.clone()),
            ],
        )) {
            return Err(Errno::EINVAL.into());
        }
        let p = self.typed_ns(active);
        if !tr!(t.check(
            p.level < MAX_PID_NS_LEVEL,
            "create_pid_namespace",
            format!("the parent's level must be under MAX_PID_NS_LEVEL {MAX_PID_NS_LEVEL}"),
            vec![("parent_level", p.level.to_string())],
        )) {
            return Err(Errno::ENOSPC.into());
        }
        if !tr!(t.check(
            self.in_userns(p.owner, owner),
            "create_pid_namespace",
            format!(
                "the new owner \"{}\" must be the parent pid namespace's owner \"{}\" or below it",
                self.ns(owner).name,
                self.ns(p.owner).name
            ),
            vec![],
        )) {
            return Err(Errno::EPERM.into());
        }
        Ok(active)
    }

    /// `setns(fd, CLONE_NEW<kind>)`: the type's `*_install`.
    pub(super) fn op_setns_ns(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        ns: TypedNsRef,
    ) -> OpResult {
        let kind = self.typed_ns(ns).kind;
        let f = kind.install();
        let tk = self.task(task).clone();
        if kind == NsType::Time
            && !tr!(t.check(
                !tk.multithreaded,
                f,
                "the caller must be single-threaded",
                vec![]
            ))
        {
            return Err(Errno::EUSERS.into());
        }
        let ok = match kind {
            NsType::Cgroup => {
                self.capable_own(t, task, Cap::SYS_ADMIN)
                    && self.capable_over(t, task, ns, Cap::SYS_ADMIN)
            }
            NsType::Mnt => {
                self.capable_over(t, task, ns, Cap::SYS_ADMIN)
                    && self.capable_own(t, task, Cap::SYS_CHROOT)
                    && self.capable_own(t, task, Cap::SYS_ADMIN)
            }
            _ => {
                self.capable_over(t, task, ns, Cap::SYS_ADMIN)
                    && self.capable_own(t, task, Cap::SYS_ADMIN)
            }
        };
        let need = match kind {
            NsType::Mnt => "CAP_SYS_ADMIN over the namespace's owner, and CAP_SYS_CHROOT and CAP_SYS_ADMIN in the caller's own user namespace",
            _ => "CAP_SYS_ADMIN over the namespace's owner and in the caller's own user namespace",
        };
        if !tr!(t.check(ok, f, format!("{need}: {}", self.show_typed(ns)), vec![])) {
            return Err(Errno::EPERM.into());
        }
        if kind == NsType::Mnt
            && !tr!(t.check(
                !tk.shared_fs,
                f,
                "the caller's fs_struct must not be shared (fs->users == 1)",
                vec![]
            ))
        {
            return Err(Errno::EINVAL.into());
        }
        if kind == NsType::Pid {
            self.pidns_install_descendant(t, task, ns)?;
        }
        self.set_for_task(task, ns);
        let note = match kind {
            NsType::Pid | NsType::Time => "only the caller's future children will be in it",
            _ => "the caller is now in it",
        };
        tr!(t.pass(f, format!("{}: {note}", self.show_typed(ns)), vec![]));
        Ok(None)
    }

    /// `pidns_install`: the target must be the caller's active pid namespace or below it.
    fn pidns_install_descendant(
        &self,
        t: &mut Tracer,
        task: TaskRef,
        ns: TypedNsRef,
    ) -> Result<(), crate::vfs::Stop> {
        let active = self.task_typed_ns(task, NsType::Pid);
        let mut cur = Some(ns);
        while let Some(c) = cur {
            if c == active {
                return Ok(());
            }
            cur = self.typed_ns(c).parent;
        }
        tr!(t.fail(
            "pidns_install",
            "the pid namespace must be the caller's active one or one of its descendants",
            vec![
                ("active", self.typed_ns(active).name.clone()),
                ("target", self.typed_ns(ns).name.clone()),
            ],
        ));
        Err(Errno::EINVAL.into())
    }

    /// `sethostname(name)`: CAP_SYS_ADMIN over the owner of the caller's UTS namespace, then
    /// the length.
    pub(super) fn op_sethostname(&mut self, t: &mut Tracer, task: TaskRef, name: &str) -> OpResult {
        let uts = self.task_typed_ns(task, NsType::Uts);
        if !tr!(t.check(
            self.capable_over(t, task, uts, Cap::SYS_ADMIN),
            "sethostname",
            format!("CAP_SYS_ADMIN over the owner of {}", self.show_typed(uts)),
            vec![],
        )) {
            return Err(Errno::EPERM.into());
        }
        if !tr!(t.check(
            name.len() <= NEW_UTS_LEN,
            "sethostname",
            format!("the name must be at most __NEW_UTS_LEN {NEW_UTS_LEN} bytes"),
            vec![("len", name.len().to_string())],
        )) {
            return Err(Errno::EINVAL.into());
        }
        self.typed_ns_mut(uts).hostname = Some(name.to_string());
        Ok(Some(out(vec![
            ("hostname", name.to_string()),
            ("uts", self.typed_ns(uts).name.clone()),
        ])))
    }

    /// `bind(AF_INET TCP socket, 0.0.0.0:port)`: `__inet_bind` needs CAP_NET_BIND_SERVICE over
    /// the network namespace's owner for a port below its `ip_unprivileged_port_start`.
    pub(super) fn op_bind_port(&mut self, t: &mut Tracer, task: TaskRef, port: u16) -> OpResult {
        let net = self.task_typed_ns(task, NsType::Net);
        let start = self.typed_ns(net).ip_unprivileged_port_start;
        let privileged = port != 0 && u32::from(port) < start;
        tr!(t.info(
            "inet_port_requires_bind_service",
            format!(
                "port {port} {} ip_unprivileged_port_start {start} of {}",
                if privileged {
                    "is below"
                } else {
                    "is not below"
                },
                self.show_typed(net)
            ),
            vec![],
        ));
        if privileged
            && !tr!(t.check(
                self.capable_over(t, task, net, Cap::NET_BIND_SERVICE),
                "__inet_bind",
                "CAP_NET_BIND_SERVICE over the network namespace's owner",
                vec![],
            ))
        {
            return Err(Errno::EACCES.into());
        }
        tr!(t.info(
            "__inet_bind",
            "the port is assumed free (sockets bound by other processes are not modelled)",
            vec![],
        ));
        Ok(Some(out(vec![("port", port.to_string())])))
    }
}
