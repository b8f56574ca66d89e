//! The executor's part for namespaces other than user namespaces: the declared ones made for
//! real (a creator helper in the owning user namespace unshares the type and is kept alive),
//! processes put in them with `setns` before they take on their credentials, and `unshare_ns`,
//! `setns_ns`, `sethostname` and `bind` performed by the process's helper.
//!
//! The model's initial mount and UTS namespaces are the scenario's stand-ins
//! ([`crate::kernel_standin`]): `sethostname`, `mount`, `umount` and remounts there are
//! performed inside them, never in this machine's namespaces (an op by a helper found in the
//! host's namespace is refused, never performed). Never touched either: the host's sysctls (a
//! declared `ip_unprivileged_port_start` other than the host's makes the scenario
//! unrealisable).

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use credns_model::{NsType, Op, TaskRef, World};
use credns_sys::{Errno, NsId, UnshareOptions, UserNsFd, UsernsChild};

use crate::kernel_standin::StandIn;

use crate::kernel::KernelAnswer;

/// `CLONE_NEW*` of a type.
fn flag(k: NsType) -> u64 {
    match k {
        NsType::Mnt => 0x0002_0000,
        NsType::Net => 0x4000_0000,
        NsType::Uts => 0x0400_0000,
        NsType::Ipc => 0x0800_0000,
        NsType::Pid => 0x2000_0000,
        NsType::Cgroup => 0x0200_0000,
        NsType::Time => 0x0000_0080,
    }
}

/// The `/proc/PID/ns/` file where a process's namespace of this type is: for pid and time,
/// the one its children will be born in (what `unshare` and `setns` change).
fn ns_file(k: NsType) -> &'static str {
    match k {
        NsType::Pid => "pid_for_children",
        NsType::Time => "time_for_children",
        k => k.name(),
    }
}

fn open_ns(pid: i32, k: NsType) -> Result<UserNsFd, String> {
    let p = PathBuf::from(format!("/proc/{pid}/ns/{}", ns_file(k)));
    UserNsFd::open_path(&p).map_err(|e| e.to_string())
}

fn id_of(pid: i32, k: NsType) -> Option<NsId> {
    open_ns(pid, k).ok().and_then(|f| f.id().ok())
}

/// The realised namespaces of the seven types, by the model's name.
#[derive(Debug, Default)]
pub struct Typed {
    /// Helpers that created a declared namespace (they keep pid/time ones alive too).
    creators: Vec<UsernsChild>,
    fds: BTreeMap<(NsType, String), UserNsFd>,
}

/// `net.ipv4.ip_unprivileged_port_start` of this machine's initial network namespace.
fn host_port_start() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// What of the declared namespaces cannot be realised here.
pub fn check_realisable(w: &World) -> Result<(), String> {
    for (r, n) in w.typed_namespaces() {
        if n.kind == NsType::Net && w.is_initial_typed(r) {
            if host_port_start() != Some(n.ip_unprivileged_port_start) {
                return Err(
                    "net.ipv4.ip_unprivileged_port_start differs from this machine's".into(),
                );
            }
            continue;
        }
        if w.is_initial_typed(r) {
            continue;
        }
        if n.kind == NsType::Net && n.ip_unprivileged_port_start != credns_model::PROT_SOCK {
            return Err(format!(
                "ip_unprivileged_port_start of net namespace {}",
                n.name
            ));
        }
        // pidns_for_children_get answers ENOENT until a process lives in a new pid
        // namespace: a declared one could not be handed to its members.
        if n.kind == NsType::Pid {
            return Err(format!("pid namespace {} (no process lives in it)", n.name));
        }
    }
    for (t, task) in w.tasks() {
        for k in [NsType::Pid, NsType::Time] {
            if !w.is_initial_typed(w.task_typed_ns(t, k)) {
                return Err(format!(
                    "process {} in a {} namespace of its own",
                    task.name,
                    k.name()
                ));
            }
        }
    }
    Ok(())
}

impl Typed {
    /// Make every declared namespace: a helper of its owner (forked from the keeper of that
    /// user namespace, or from the stand-ins' keeper for the initial one) unshares it.
    pub fn realise(
        w: &World,
        keepers: &BTreeMap<usize, UsernsChild>,
        stand_in: &StandIn,
    ) -> Result<Typed, String> {
        let mut t = Typed::default();
        let plain = UnshareOptions {
            ids: None,
            caps: None,
            new_userns: false,
            dumpable: true,
        };
        for k in NsType::ALL {
            let own = match stand_in.ns_fd(k) {
                Some(_) => open_ns(stand_in.keeper().pid().0, k)?,
                None => UserNsFd::open_path(Path::new(&format!("/proc/self/ns/{}", ns_file(k))))
                    .map_err(|e| e.to_string())?,
            };
            t.fds.insert((k, "init".into()), own);
        }
        for (r, n) in w.typed_namespaces() {
            if w.is_initial_typed(r) {
                continue;
            }
            let c = if n.owner == w.init_ns() {
                stand_in.keeper().spawn_child(&plain)
            } else {
                keepers[&n.owner.index()].spawn_child(&plain)
            }
            .map_err(|e| format!("{} namespace {}: {e}", n.kind.name(), n.name))?;
            let fail = |x: String| format!("{} namespace {}: {x}", n.kind.name(), n.name);
            c.unshare_ns(flag(n.kind))
                .map_err(|e| fail(e.to_string()))?
                .map_err(|e| fail(format!("unshare: {e}")))?;
            if let Some(h) = &n.hostname {
                c.sethostname(h.as_bytes())
                    .map_err(|e| fail(e.to_string()))?
                    .map_err(|e| fail(format!("sethostname: {e}")))?;
            }
            t.fds
                .insert((n.kind, n.name.clone()), open_ns(c.pid().0, n.kind)?);
            t.creators.push(c);
        }
        Ok(t)
    }

    /// Put the helper of `task` in its declared namespaces (before it takes on its
    /// credentials: it still has its keeper's capabilities).
    pub fn join(&self, w: &World, task: TaskRef, h: &UsernsChild) -> Result<(), String> {
        for k in NsType::ALL {
            let r = w.task_typed_ns(task, k);
            if w.is_initial_typed(r) {
                continue;
            }
            let name = &w.typed_ns(r).name;
            let fd = &self.fds[&(k, name.clone())];
            h.setns_ns(fd.as_fd(), flag(k))
                .map_err(|e| e.to_string())?
                .map_err(|e| {
                    format!("{}: setns into {} {name}: {e}", w.task(task).name, k.name())
                })?;
        }
        Ok(())
    }

    /// Drop every creator (helpers end on drop).
    pub fn clear(&mut self) {
        self.fds.clear();
        self.creators.clear();
    }

    /// The model's name of the namespace of type `k` the helper is in (for pid and time, its
    /// children's), if it is one we know.
    fn name_of(&self, pid: i32, k: NsType) -> Option<String> {
        let id = id_of(pid, k)?;
        self.fds
            .iter()
            .find(|((kk, _), fd)| *kk == k && fd.id().ok() == Some(id))
            .map(|((_, n), _)| n.clone())
    }
}

/// The name of a user namespace by its id, among the realised ones.
fn userns_name(ns_fds: &BTreeMap<String, UserNsFd>, id: NsId) -> Option<String> {
    ns_fds
        .iter()
        .find(|(_, f)| f.id().ok() == Some(id))
        .map(|(n, _)| n.clone())
}

type Values = Vec<(String, String)>;

/// Refuse an operation by a helper found in this machine's own namespace of type `k` (it
/// should be in the stand-in or a namespace of the scenario): it would change the host.
fn not_on_host(pid: i32, k: &str) -> Result<(), KernelAnswer> {
    if crate::kernel_standin::is_host_ns(pid, k) {
        return Err(KernelAnswer::Skipped(format!(
            "refused: the helper is in this machine's {k} namespace"
        )));
    }
    Ok(())
}

/// Perform one of the operations as helper `h` (`real` gives a model path's real directory).
pub fn perform(
    typed: &mut Typed,
    ns_fds: &BTreeMap<String, UserNsFd>,
    w: &World,
    h: &UsernsChild,
    op: &Op,
    real: &dyn Fn(&str) -> Option<PathBuf>,
    attached: &[PathBuf],
) -> Result<Result<Values, Errno>, KernelAnswer> {
    let pid = h.pid().0;
    let e = |x: credns_sys::Error| KernelAnswer::Skipped(format!("helper: {x}"));
    match op {
        Op::UnshareNs { kind, name } => {
            if let Err(x) = h.unshare_ns(flag(*kind)).map_err(e)? {
                return Ok(Err(x));
            }
            if *kind == NsType::Pid {
                // No nsfs file until a process lives in it: nothing more to observe.
                return Ok(Ok(vec![
                    ("ns".into(), name.clone()),
                    ("type".into(), kind.name().into()),
                ]));
            }
            let fd = open_ns(pid, *kind).map_err(KernelAnswer::Skipped)?;
            let owner = fd
                .owning_userns()
                .ok()
                .flatten()
                .and_then(|o| o.id().ok())
                .and_then(|id| userns_name(ns_fds, id))
                .unwrap_or_else(|| "?".into());
            typed.fds.insert((*kind, name.clone()), fd);
            Ok(Ok(vec![
                ("ns".into(), name.clone()),
                ("type".into(), kind.name().into()),
                ("owner".into(), owner),
            ]))
        }
        Op::SetnsNs { ns } => {
            let n = w.typed_ns(*ns);
            let Some(fd) = typed.fds.get(&(n.kind, n.name.clone())) else {
                return Err(KernelAnswer::Skipped(format!(
                    "{} {} not realised",
                    n.kind.name(),
                    n.name
                )));
            };
            Ok(h.setns_ns(fd.as_fd(), flag(n.kind))
                .map_err(e)?
                .map(|()| Vec::new()))
        }
        Op::Sethostname { name } => {
            not_on_host(pid, "uts")?;
            if let Err(x) = h.sethostname(name.as_bytes()).map_err(e)? {
                return Ok(Err(x));
            }
            let got = h
                .read_file(Path::new("/proc/sys/kernel/hostname"))
                .map_err(e)?
                .map(|b| String::from_utf8_lossy(&b).trim().to_string())
                .unwrap_or_default();
            let uts = typed
                .name_of(pid, NsType::Uts)
                .unwrap_or_else(|| "?".into());
            Ok(Ok(vec![("hostname".into(), got), ("uts".into(), uts)]))
        }
        Op::BindPort { port } => match h.bind_tcp(*port).map_err(e)? {
            Err(Errno::ADDRINUSE) => Err(KernelAnswer::Skipped(format!("port {port} in use here"))),
            r => Ok(r.map(|()| vec![("port".into(), port.to_string())])),
        },
        Op::MountNew { fs_type, path } => {
            not_on_host(pid, "mnt")?;
            let Some(dir) = real(path) else {
                return Err(KernelAnswer::Skipped(format!("no real path for {path}")));
            };
            Ok(h.mount_new(fs_type, &dir).map_err(e)?.map(|()| Vec::new()))
        }
        Op::Remount { path, flags } => {
            let Some(dir) = real(path) else {
                return Err(KernelAnswer::Skipped(format!("no real path for {path}")));
            };
            let model_mount = w
                .mounts()
                .any(|(_, m)| m.path == path.trim_end_matches('/'));
            if model_mount && !attached.contains(&dir) {
                return Err(KernelAnswer::Skipped(
                    "a mount realised as a plain directory here".into(),
                ));
            }
            not_on_host(pid, "mnt")?;
            let bits = u64::from(flags.read_only)
                | (u64::from(flags.nosuid) << 1)
                | (u64::from(flags.noexec) << 3);
            Ok(h.remount_bind(&dir, bits).map_err(e)?.map(|()| Vec::new()))
        }
        Op::Umount { path } => {
            let Some(dir) = real(path) else {
                return Err(KernelAnswer::Skipped(format!("no real path for {path}")));
            };
            let model_mount = w
                .mounts()
                .any(|(_, m)| Some(m.path.as_str()) == Some(path.trim_end_matches('/')));
            if model_mount && !attached.contains(&dir) {
                return Err(KernelAnswer::Skipped(
                    "a mount realised as a plain directory here".into(),
                ));
            }
            not_on_host(pid, "mnt")?;
            Ok(h.umount(&dir).map_err(e)?.map(|()| Vec::new()))
        }
        _ => Err(KernelAnswer::Skipped(
            "not an operation on other namespaces".into(),
        )),
    }
}
