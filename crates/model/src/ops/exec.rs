//! `execve`: opening the file for execution and computing the new credentials, step by step
//! as `bprm_execve` does: `do_open_execat`, `would_dump`, `check_unsafe_exec`,
//! `bprm_fill_uid`, `cap_bprm_creds_from_file`, `begin_new_exec`.

use crate::caps::{Cap, CapSet};
use crate::outcome::Tracer;
use crate::vfs::{mode_str, Check, Vfsgid, Vfsuid, MAY_EXEC, MAY_READ};
use crate::world::{
    Cred, InodeRef, Mount, MountRef, NsRef, TaskRef, World, SECURE_KEEP_CAPS, SECURE_NOROOT,
    S_ISGID, S_ISUID, S_IXGRP,
};
use credns_idmap::Errno;
use credns_idmap::{Kgid, Kuid};

use super::OpResult;

/// `bprm->unsafe`: what `check_unsafe_exec` found.
#[derive(Clone, Copy)]
struct Unsafe {
    /// `LSM_UNSAFE_NO_NEW_PRIVS`.
    no_new_privs: bool,
    /// `LSM_UNSAFE_SHARE`.
    share: bool,
}

impl Unsafe {
    fn any(self) -> bool {
        self.no_new_privs || self.share
    }
}

impl World {
    /// `execve(path)`: the new credentials are computed from the old ones and the file, then
    /// installed with the new address space's owner namespace and dumpability.
    pub(super) fn op_exec(&mut self, t: &mut Tracer, task: TaskRef, path: &str) -> OpResult {
        let tk = self.task(task).clone();
        let old = tk.cred.clone();
        let (m, ino) = self.walk_existing(t, &old, path)?;
        let mnt = self.mount(m).clone();
        self.do_open_execat(t, &old, m, ino)?;
        let (mm_ns, nondump) = self.would_dump(t, &old, m, ino);
        let unsafe_exec = Self::check_unsafe_exec(t, tk.no_new_privs, tk.shared_fs);
        let mut new = old.clone();
        tr!(t.info(
            "bprm_fill_uid",
            "set-user-ID and set-group-ID bits",
            vec![("mode", mode_str(self.inode(ino).mode))],
        ));
        t.nested(|t| self.bprm_fill_uid(t, &old, &mut new, &mnt, ino, tk.no_new_privs));
        self.cap_bprm_creds_from_file(t, &old, &mut new, unsafe_exec, m, ino)?;
        // commit_creds: a change of euid, egid, fsuid or fsgid, or permitted capabilities
        // gained, also makes the new image dumpable only as fs.suid_dumpable says.
        let committed = new.euid != old.euid
            || new.egid != old.egid
            || new.fsuid != old.fsuid
            || new.fsgid != old.fsgid
            || !new.cap_permitted.is_subset(old.cap_permitted);
        let dumpable = !nondump && !committed && new.euid == new.uid && new.egid == new.gid;
        tr!(t.info(
            "begin_new_exec",
            if dumpable {
                "dumpable (SUID_DUMP_USER)"
            } else {
                "not dumpable (fs.suid_dumpable applies)"
            },
            vec![],
        ));
        let view = new.user_ns;
        let o = self.render_cred(t, view, &new, true);
        let tm = &mut self.tasks[task.0];
        tm.cred = new;
        tm.mm_user_ns = mm_ns;
        tm.dumpable = dumpable || self.suid_dumpable == 1;
        Ok(Some(o))
    }

    /// `do_open_execat`: `may_open` refuses directories and noexec mounts before the
    /// permission check, and only a regular file may be executed after it.
    fn do_open_execat(&self, t: &mut Tracer, cred: &Cred, m: MountRef, ino: InodeRef) -> Check {
        let i = self.inode(ino);
        if i.is_dir() {
            tr!(t.fail("may_open", "MAY_EXEC on a directory", vec![]));
            return Err(Errno::EACCES.into());
        }
        if i.is_reg() && self.mount(m).noexec {
            tr!(t.fail("may_open", "exec from a noexec mount", vec![]));
            return Err(Errno::EACCES.into());
        }
        tr!(t.info("do_open_execat", "open the file for execution", vec![]));
        t.nested(|t| self.inode_permission(t, cred, m, ino, MAY_EXEC))?;
        if !self.inode(ino).is_reg() {
            tr!(t.fail("do_open_execat", "not a regular file", vec![]));
            return Err(Errno::EACCES.into());
        }
        Ok(())
    }

    /// `would_dump`: an unreadable file makes the process non-dumpable, and `mm->user_ns`
    /// moves up to the first ancestor privileged over the file's ids, so that nobody below
    /// it may ptrace the image. Returns the new `mm->user_ns` and whether it is non-dumpable.
    fn would_dump(&self, t: &mut Tracer, cred: &Cred, m: MountRef, ino: InodeRef) -> (NsRef, bool) {
        let mut mm_ns = cred.user_ns;
        // The probes are the kernel's own, not steps of the syscall's decision: untraced.
        let readable = self
            .inode_permission(&mut Tracer::default(), cred, m, ino, MAY_READ)
            .is_ok();
        if !readable {
            let idmap = &self.mount(m).idmap;
            while mm_ns != self.init_ns()
                && !self.privileged_wrt_inode_uidgid(&mut Tracer::default(), mm_ns, idmap, ino)
            {
                mm_ns = self.ns(mm_ns).parent.unwrap_or(self.init_ns());
            }
        }
        tr!(t.info("would_dump", if readable { "the file is readable: the process stays dumpable" } else { "the file is not readable: the process becomes non-dumpable; mm->user_ns moves up until the file's ids are mapped" }, vec![("mm_user_ns", self.ns(mm_ns).name.clone())]));
        (mm_ns, !readable)
    }

    /// `check_unsafe_exec`: which of the unsafe conditions the model knows apply.
    fn check_unsafe_exec(t: &mut Tracer, no_new_privs: bool, shared_fs: bool) -> Unsafe {
        tr!(t.info(
            "check_unsafe_exec",
            "no_new_privs and a shared fs_struct make the exec unsafe (ptrace is not modelled)",
            vec![
                ("no_new_privs", no_new_privs.to_string()),
                ("shared_fs", shared_fs.to_string()),
            ],
        ));
        Unsafe {
            no_new_privs,
            share: shared_fs,
        }
    }

    /// `bprm_fill_uid`: a set-user-ID file makes its owner the new euid, a set-group-ID
    /// (and group-executable) file its group the new egid, unless the mount is nosuid, the
    /// task has no_new_privs, or the owner or group is unmapped in the caller's namespace.
    fn bprm_fill_uid(
        &self,
        t: &mut Tracer,
        old: &Cred,
        new: &mut Cred,
        mnt: &Mount,
        ino: InodeRef,
        no_new_privs: bool,
    ) {
        let f = "bprm_fill_uid";
        let mode = self.inode(ino).mode;
        if mnt.nosuid {
            tr!(t.info(
                f,
                "nosuid mount: set-id bits ignored (mnt_may_suid)",
                vec![]
            ));
            return;
        }
        if no_new_privs {
            tr!(t.info(f, "no_new_privs: set-id bits ignored", vec![]));
            return;
        }
        if mode & (S_ISUID | S_ISGID) == 0 {
            tr!(t.info(f, "no set-id bits", vec![]));
            return;
        }
        if let Some(ids) = self.proposal(|p| p.setid_ids(self, t, old, mnt, ino)) {
            if let Some((u, g)) = ids {
                Self::apply_setid(t, new, mode, u, g);
            }
            return;
        }
        let (vu, vg) = self.trace_inode_ids(t, &mnt.idmap, ino, "bprm_fill_uid");
        let um = self.vfsuid_has_mapping(old.user_ns, vu);
        let gm = self.vfsgid_has_mapping(old.user_ns, vg);
        let ok = tr!(t.check(
            um && gm,
            f,
            format!(
                "set-id bits apply only if the file's owner and group are both mapped in \"{}\"",
                self.ns(old.user_ns).name
            ),
            vec![
                ("vfsuid", vu.show()),
                ("uid_mapped", um.to_string()),
                ("vfsgid", vg.show()),
                ("gid_mapped", gm.to_string())
            ],
        ));
        if !ok {
            return;
        }
        Self::apply_setid(t, new, mode, vu.0, vg.0);
    }

    /// The set-id bits' effect: euid := the owner, egid := the group (with S_IXGRP).
    fn apply_setid(t: &mut Tracer, new: &mut Cred, mode: u32, u: Kuid, g: Kgid) {
        let f = "bprm_fill_uid";
        let (vu, vg) = (Vfsuid(u), Vfsgid(g));
        if mode & S_ISUID != 0 {
            new.euid = vu.0;
            tr!(t.info(
                f,
                "S_ISUID: euid := the file's owner",
                vec![("euid", vu.show())]
            ));
        }
        if mode & (S_ISGID | S_IXGRP) == (S_ISGID | S_IXGRP) {
            new.egid = vg.0;
            tr!(t.info(
                f,
                "S_ISGID with S_IXGRP: egid := the file's group",
                vec![("egid", vg.show())]
            ));
        }
    }

    /// `cap_bprm_creds_from_file`: the capability sets after exec, from the file's
    /// capabilities, the namespace root's privileges, the unsafe-exec limits and the ambient
    /// set.
    fn cap_bprm_creds_from_file(
        &self,
        t: &mut Tracer,
        old: &Cred,
        new: &mut Cred,
        un: Unsafe,
        m: MountRef,
        ino: InodeRef,
    ) -> Check {
        let f = "cap_bprm_creds_from_file";
        let fc = t.nested(|t| self.get_file_caps(t, old, m, ino))?;
        new.cap_permitted = fc.permitted;
        let effective = self.handle_privileged_root(t, old, new, fc.has_fcap) || fc.effective;
        let gained = !new.cap_permitted.is_subset(old.cap_permitted);
        // Since "security/commoncap: don't assume 'setid' if all ids are identical" the
        // downgrade applies only when exec changed the euid or leaves an egid the task is not
        // in, not merely because effective ids differ from real ones (checked on 6.18).
        // The rule is `!uid_eq(new->euid, old->euid) || !in_group_p(new->egid)`: in_group_p
        // looks at the old fsgid and supplementary groups.
        let id_changed =
            new.euid != old.euid || !(new.egid == old.fsgid || old.groups.contains(&new.egid));
        if (id_changed || gained) && un.any() {
            let keep = t.nested(|t| self.ns_capable(t, old, new.user_ns, Cap::SETUID));
            if !keep || un.no_new_privs {
                new.euid = new.uid;
                new.egid = new.gid;
            }
            new.cap_permitted = new.cap_permitted.intersect(old.cap_permitted);
            tr!(t.info(
                f,
                "unsafe exec: gains are limited to what the task had",
                vec![
                    ("euid", new.euid.0.to_string()),
                    ("cap_permitted", new.cap_permitted.to_string()),
                ],
            ));
        }
        new.suid = new.euid;
        new.fsuid = new.euid;
        new.sgid = new.egid;
        new.fsgid = new.egid;
        // File capabilities or a set-id exec cancel the ambient set: the same id_changed
        // test (checked on 6.18: ambient capabilities survive an exec while euid != uid or
        // egid != gid).
        if fc.has_fcap || id_changed {
            new.cap_ambient = CapSet::EMPTY;
        }
        new.cap_permitted = new.cap_permitted.union(new.cap_ambient);
        new.cap_effective = if effective {
            new.cap_permitted
        } else {
            new.cap_ambient
        };
        new.securebits &= !(1 << SECURE_KEEP_CAPS);
        trace_new_creds(t, f, new);
        self.trace_secureexec(t, old, new, effective);
        Ok(())
    }

    /// `bprm->secureexec` (`AT_SECURE`) as cap_bprm_creds_from_file sets it: a changed
    /// id, or capabilities raised for a task whose real uid is not the namespace's root.
    fn trace_secureexec(&self, t: &mut Tracer, old: &Cred, new: &Cred, effective: bool) {
        let root = self.make_kuid(new.user_ns, 0);
        let grew = !new.cap_permitted.is_subset(new.cap_ambient);
        let secure =
            new.euid != old.uid || new.egid != old.gid || (new.uid != root && (effective || grew));
        tr!(t.info(
            "cap_bprm_creds_from_file",
            "secureexec (AT_SECURE): an id changed, or capabilities raised for a non-root real uid",
            vec![("secureexec", secure.to_string())],
        ));
    }

    /// `handle_privileged_root`: the namespace's root (as uid or euid) gets the bounding set
    /// and inheritable set as permitted; as euid it also gets them effective. Returns whether
    /// the new effective set is the whole permitted set.
    fn handle_privileged_root(
        &self,
        t: &mut Tracer,
        old: &Cred,
        new: &mut Cred,
        has_fcap: bool,
    ) -> bool {
        let f = "handle_privileged_root";
        let root = self.make_kuid(new.user_ns, 0);
        tr!(t.info(
            f,
            format!(
                "root of \"{}\" is {}",
                self.ns(new.user_ns).name,
                self.show_uid(root)
            ),
            vec![
                ("uid", new.uid.0.to_string()),
                ("euid", new.euid.0.to_string()),
            ],
        ));
        if old.issecure(SECURE_NOROOT) {
            tr!(t.info(f, "SECURE_NOROOT: root gets nothing special", vec![]));
            return false;
        }
        if has_fcap && new.uid != root && new.euid == root {
            tr!(t.info(
                f,
                "a set-user-ID-root exec by a non-root uid of a file with capabilities: only the file's capabilities count",
                vec![],
            ));
            return false;
        }
        if new.euid == root || new.uid == root {
            new.cap_permitted = old.cap_bset.union(old.cap_inheritable);
            tr!(t.pass(
                f,
                "euid or uid is the namespace's root: pP' = bounding | inheritable",
                vec![("cap_permitted", new.cap_permitted.to_string())],
            ));
        } else {
            tr!(t.info(
                f,
                "neither uid nor euid is the namespace's root (or it has no root): no capabilities",
                vec![]
            ));
        }
        new.euid == root
    }
}

/// The credentials exec computed, as one trace step.
fn trace_new_creds(t: &mut Tracer, f: &'static str, new: &Cred) {
    tr!(t.info(
        f,
        "the new credentials",
        vec![
            (
                "uid",
                format!(
                    "{}/{}/{}/{}",
                    new.uid.0, new.euid.0, new.suid.0, new.fsuid.0
                ),
            ),
            (
                "gid",
                format!(
                    "{}/{}/{}/{}",
                    new.gid.0, new.egid.0, new.sgid.0, new.fsgid.0
                ),
            ),
            ("cap_permitted", new.cap_permitted.to_string()),
            ("cap_effective", new.cap_effective.to_string()),
        ],
    ));
}
