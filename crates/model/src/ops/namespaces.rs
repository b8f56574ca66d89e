//! User namespaces: `unshare(CLONE_NEWUSER)`, `setns`, and writing `uid_map`, `gid_map`
//! and `setgroups` of another task.

use credns_idmap::{IdKind, Kgid, Kuid, OpenerNs, WriteContext};

use crate::caps::{Cap, CapSet};
use crate::outcome::Tracer;
use crate::vfs::{Check, Stop};
use crate::world::{Cred, NsRef, Task, TaskRef, UserNs, World};
use credns_idmap::Errno;

use super::op::MapKind;
use super::{out, OpResult};

impl World {
    /// `set_cred_user_ns`: what entering a new namespace does to credentials.
    pub(super) fn set_cred_user_ns(cred: &mut Cred, ns: NsRef) {
        cred.securebits = 0;
        cred.cap_inheritable = CapSet::EMPTY;
        cred.cap_permitted = CapSet::FULL;
        cred.cap_effective = CapSet::FULL;
        cred.cap_ambient = CapSet::EMPTY;
        cred.cap_bset = CapSet::FULL;
        cred.user_ns = ns;
    }

    pub(super) fn op_unshare(&mut self, t: &mut Tracer, task: TaskRef, name: &str) -> OpResult {
        let tk = self.task(task).clone();
        if tk.multithreaded {
            tr!(t.fail(
                "check_unshare_flags",
                "CLONE_NEWUSER implies CLONE_THREAD: the caller must be single-threaded",
                vec![],
            ));
            return Err(Errno::EINVAL.into());
        }
        let f = "create_user_ns";
        let parent = tk.cred.user_ns;
        let p = self.ns(parent).clone();
        self.create_user_ns_permitted(t, &tk)?;
        if self.ns_by_name(name).is_some() {
            return Err(Stop::unknown(format!(
                "the scenario already has a namespace called \"{name}\""
            )));
        }
        let could = tk.cred.cap_effective.has(Cap::SETFCAP);
        self.namespaces.push(UserNs {
            name: name.into(),
            parent: Some(parent),
            level: p.level + 1,
            owner: tk.cred.euid,
            group: tk.cred.egid,
            uid_map: credns_idmap::IdMap::empty(),
            gid_map: credns_idmap::IdMap::empty(),
            setgroups_allowed: p.setgroups_allowed,
            parent_could_setfcap: could,
        });
        let nsr = NsRef(self.namespaces.len() - 1);
        tr!(t.pass(
            f,
            format!("namespace \"{name}\" created at level {}", p.level + 1),
            vec![
                ("owner", tk.cred.euid.0.to_string()),
                ("group", tk.cred.egid.0.to_string()),
                ("parent_could_setfcap", could.to_string()),
                (
                    "setgroups",
                    if p.setgroups_allowed { "allow" } else { "deny" }.into(),
                ),
            ],
        ));
        let mut new = tk.cred.clone();
        Self::set_cred_user_ns(&mut new, nsr);
        tr!(t.info(
            "set_cred_user_ns",
            "the task gets every capability in the new namespace; its kernel ids are unchanged",
            vec![],
        ));
        self.commit_creds(t, task, new);
        Ok(Some(out(vec![
            ("ns", name.into()),
            ("level", (p.level + 1).to_string()),
        ])))
    }

    /// `create_user_ns`'s refusals, in its order: the nesting limit, a chrooted caller, and a
    /// creator whose euid or egid is unmapped in the parent (it would own nothing there).
    fn create_user_ns_permitted(&self, t: &mut Tracer, tk: &Task) -> Check {
        let f = "create_user_ns";
        let parent = tk.cred.user_ns;
        let p = self.ns(parent);
        if !tr!(t.check(
            p.level <= 32,
            f,
            "nesting: the parent's level must be at most 32",
            vec![
                ("parent", p.name.clone()),
                ("parent_level", p.level.to_string()),
            ],
        )) {
            return Err(Errno::ENOSPC.into());
        }
        tr!(t.info(
            "inc_user_namespaces",
            "the max_user_namespaces limits are not modelled (assumed not reached)",
            vec![],
        ));
        if !tr!(t.check(!tk.chrooted, f, "the caller must not be chrooted", vec![])) {
            return Err(Errno::EPERM.into());
        }
        let um = self.kuid_has_mapping(parent, tk.cred.euid);
        let gm = self.kgid_has_mapping(parent, tk.cred.egid);
        if !tr!(t.check(
            um && gm,
            f,
            format!(
                "the creator's euid and egid must be mapped in the parent \"{}\"",
                p.name
            ),
            vec![
                ("euid", tk.cred.euid.0.to_string()),
                ("euid_mapped", um.to_string()),
                ("egid", tk.cred.egid.0.to_string()),
                ("egid_mapped", gm.to_string()),
            ],
        )) {
            return Err(Errno::EPERM.into());
        }
        Ok(())
    }

    /// Open permission of a /proc/PID file of mode 0644 (owner from `task_dump_owner`).
    pub(super) fn proc_open_write(
        &self,
        t: &mut Tracer,
        cred: &Cred,
        target: TaskRef,
        file: &str,
    ) -> Check {
        let tt = self.task(target);
        let (ou, og) = if tt.dumpable {
            (tt.cred.euid, tt.cred.egid)
        } else {
            let r = self.make_kuid(tt.mm_user_ns, 0);
            let g = self.make_kgid(tt.mm_user_ns, 0);
            (
                if r.is_valid() { r } else { Kuid(0) },
                if g.is_valid() { g } else { Kgid(0) },
            )
        };
        let f = "proc_pid_permission";
        if cred.fsuid == ou {
            tr!(t.pass(
                f,
                format!(
                    "/proc/{}/{file} (mode 0644) is owned by the caller's fsuid",
                    tt.name
                ),
                vec![("owner", ou.0.to_string())],
            ));
            return Ok(());
        }
        tr!(t.info(f, format!("/proc/{}/{file} (mode 0644) belongs to {}: writing needs CAP_DAC_OVERRIDE with the owner mapped", tt.name, ou.0), vec![("owner", ou.0.to_string()), ("group", og.0.to_string())]));
        let ok = t.nested(|t| {
            self.ns_capable(t, cred, cred.user_ns, Cap::DAC_OVERRIDE)
                && tr!(t.check(
                    self.kuid_has_mapping(cred.user_ns, ou)
                        && self.kgid_has_mapping(cred.user_ns, og),
                    "privileged_wrt_inode_uidgid",
                    "the proc file's owner and group are mapped in the caller's namespace",
                    vec![],
                ))
        });
        if ok {
            Ok(())
        } else {
            Err(Errno::EACCES.into())
        }
    }

    pub(super) fn op_write_map(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        target: TaskRef,
        kind: MapKind,
        text: &str,
    ) -> OpResult {
        let cred = self.task(task).cred.clone();
        let file = match kind {
            MapKind::Uid => "uid_map",
            MapKind::Gid => "gid_map",
        };
        self.proc_open_write(t, &cred, target, file)?;
        let map_ns = self.task(target).cred.user_ns;
        let uid = kind == MapKind::Uid;
        if let Some(r) = self.proposal(|p| p.write_map(self, t, &cred, map_ns, uid, text)) {
            let map = r?;
            match kind {
                MapKind::Uid => self.namespaces[map_ns.0].uid_map = map,
                MapKind::Gid => self.namespaces[map_ns.0].gid_map = map,
            }
            return Ok(None);
        }
        let ctx = self.map_write_context(t, &cred, map_ns, kind);
        let n = self.ns(map_ns);
        match credns_idmap::judge_write(&ctx, text.as_bytes()) {
            Ok(acc) => {
                tr!(t.pass(
                    "map_write",
                    format!("{file} of \"{}\" written", n.name),
                    vec![(
                        "kernel_map",
                        acc.kernel.to_write_format().trim_end().replace('\n', "; "),
                    )],
                ));
                match kind {
                    MapKind::Uid => self.namespaces[map_ns.0].uid_map = acc.kernel,
                    MapKind::Gid => self.namespaces[map_ns.0].gid_map = acc.kernel,
                }
                Ok(None)
            }
            Err(rule) => {
                let e = rule.errno();
                tr!(t.fail(
                    rule.kernel_function(),
                    rule.to_string(),
                    vec![("errno", e.to_string())],
                ));
                Err(e.into())
            }
        }
    }

    /// The facts `map_write` and `new_idmap_permitted` consult, computed from the namespace
    /// tree in the order the kernel consults them; only CAP_SYS_ADMIN in the target is a
    /// step of its own in the trace, the rest are listed together.
    fn map_write_context(
        &self,
        t: &mut Tracer,
        cred: &Cred,
        map_ns: NsRef,
        kind: MapKind,
    ) -> WriteContext {
        let n = self.ns(map_ns);
        let opener_ns = if cred.user_ns == map_ns {
            OpenerNs::Target
        } else if n.parent == Some(cred.user_ns) {
            OpenerNs::Parent
        } else {
            OpenerNs::Other
        };
        let (idkind, setid) = match kind {
            MapKind::Uid => (IdKind::Uid, Cap::SETUID),
            MapKind::Gid => (IdKind::Gid, Cap::SETGID),
        };
        let parent = n.parent;
        let mut scratch = Tracer::default();
        let cap = |ns: Option<NsRef>, cap: Cap, tr: &mut Tracer| {
            ns.is_some_and(|ns| self.cap_capable(tr, cred, ns, cap))
        };
        // Compute each capability fact with its trace, in the order map_write consults them.
        let sys_admin = t.nested(|t| {
            tr!(t.info(
                "file_ns_capable",
                format!("CAP_SYS_ADMIN in \"{}\" (map_write)", n.name),
                vec![],
            ));
            cap(Some(map_ns), Cap::SYS_ADMIN, t)
        });
        let setfcap = cap(parent, Cap::SETFCAP, &mut scratch);
        let setid_parent = cap(parent, setid, &mut scratch);
        let ctx = WriteContext {
            kind: idkind,
            target_is_init: parent.is_none(),
            opener_ns,
            offset: 0,
            already_written: match kind {
                MapKind::Uid => !n.uid_map.is_empty(),
                MapKind::Gid => !n.gid_map.is_empty(),
            },
            opener_cap_sys_admin_in_target: sys_admin,
            parent_could_setfcap: n.parent_could_setfcap,
            opener_cap_setfcap_in_parent: setfcap,
            owner: n.owner,
            opener_euid: cred.euid,
            opener_egid: cred.egid,
            setgroups_allowed: n.setgroups_allowed,
            writer_cap_setid_in_parent: setid_parent,
            opener_cap_setid_in_parent: setid_parent,
            parent_map: match (parent, kind) {
                (Some(p), MapKind::Uid) => self.ns(p).uid_map.clone(),
                (Some(p), MapKind::Gid) => self.ns(p).gid_map.clone(),
                (None, _) => credns_idmap::IdMap::identity(),
            },
        };
        tr!(t.info(
            "new_idmap_permitted",
            "facts consulted (computed from the namespace tree)",
            vec![
                ("map_ns", n.name.clone()),
                ("opener_ns", format!("{opener_ns:?}")),
                ("owner", n.owner.0.to_string()),
                ("opener_euid", cred.euid.0.to_string()),
                (
                    "setgroups",
                    if n.setgroups_allowed { "allow" } else { "deny" }.into(),
                ),
                ("parent_could_setfcap", n.parent_could_setfcap.to_string()),
                ("CAP_SETFCAP_in_parent", setfcap.to_string()),
                (
                    if setid == Cap::SETUID {
                        "CAP_SETUID_in_parent"
                    } else {
                        "CAP_SETGID_in_parent"
                    },
                    setid_parent.to_string(),
                ),
            ],
        ));
        ctx
    }

    pub(super) fn op_write_setgroups(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        target: TaskRef,
        text: &str,
    ) -> OpResult {
        let cred = self.task(task).cred.clone();
        self.proc_open_write(t, &cred, target, "setgroups")?;
        let ns = self.task(target).cred.user_ns;
        let n = self.ns(ns).clone();
        tr!(t.info(
            "proc_setgroups_open",
            format!("opening for write needs CAP_SYS_ADMIN in \"{}\"", n.name),
            vec![],
        ));
        if !t.nested(|t| self.ns_capable(t, &cred, ns, Cap::SYS_ADMIN)) {
            return Err(Errno::EACCES.into());
        }
        let f = "proc_setgroups_write";
        if text.len() >= 8 {
            tr!(t.fail(f, "the write must be shorter than 8 bytes", vec![]));
            return Err(Errno::EINVAL.into());
        }
        let s = text.split('\0').next().unwrap_or("");
        let (allow, rest) = if let Some(r) = s.strip_prefix("allow") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("deny") {
            (false, r)
        } else {
            tr!(t.fail(f, "the text must start with \"allow\" or \"deny\"", vec![]));
            return Err(Errno::EINVAL.into());
        };
        if !rest
            .bytes()
            .all(|b| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
        {
            tr!(t.fail(f, "only whitespace may follow", vec![]));
            return Err(Errno::EINVAL.into());
        }
        if allow {
            if !tr!(t.check(
                n.setgroups_allowed,
                f,
                "\"allow\" cannot undo an earlier \"deny\"",
                vec![],
            )) {
                return Err(Errno::EPERM.into());
            }
        } else {
            if !tr!(t.check(
                n.gid_map.is_empty(),
                f,
                "\"deny\" is refused once the gid_map is written",
                vec![],
            )) {
                return Err(Errno::EPERM.into());
            }
            self.namespaces[ns.0].setgroups_allowed = false;
        }
        Ok(None)
    }

    pub(super) fn op_setns(&mut self, t: &mut Tracer, task: TaskRef, ns: NsRef) -> OpResult {
        let f = "userns_install";
        let tk = self.task(task).clone();
        if !tr!(t.check(
            ns != tk.cred.user_ns,
            f,
            "a task cannot re-enter its own namespace",
            vec![],
        )) {
            return Err(Errno::EINVAL.into());
        }
        if !tr!(t.check(
            !tk.multithreaded,
            f,
            "the caller must be single-threaded",
            vec![],
        )) {
            return Err(Errno::EINVAL.into());
        }
        if !tr!(t.check(
            !tk.shared_fs,
            f,
            "the caller's fs_struct must not be shared",
            vec![],
        )) {
            return Err(Errno::EINVAL.into());
        }
        if !t.nested(|t| self.ns_capable(t, &tk.cred, ns, Cap::SYS_ADMIN)) {
            return Err(Errno::EPERM.into());
        }
        let mut new = tk.cred.clone();
        Self::set_cred_user_ns(&mut new, ns);
        tr!(t.info(
            "set_cred_user_ns",
            "full capabilities in the entered namespace; kernel ids unchanged",
            vec![],
        ));
        self.commit_creds(t, task, new);
        Ok(None)
    }
}
