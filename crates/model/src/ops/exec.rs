//! `execve`: opening the file for execution and computing the new credentials.

use crate::caps::{Cap, CapSet};
use crate::outcome::Tracer;
use crate::vfs::{mode_str, MAY_EXEC, MAY_READ};
use crate::world::{TaskRef, World, SECURE_KEEP_CAPS, SECURE_NOROOT, S_ISGID, S_ISUID, S_IXGRP};
use credns_idmap::Errno;

use super::OpResult;

impl World {
    pub(super) fn op_exec(&mut self, t: &mut Tracer, task: TaskRef, path: &str) -> OpResult {
        let tk = self.task(task).clone();
        let old = tk.cred.clone();
        let (m, ino) = self.walk_existing(t, &old, path)?;
        let mnt = self.mount(m).clone();
        let i = self.inode(ino).clone();
        if i.is_dir() {
            tr!(t.fail("may_open", "MAY_EXEC on a directory", vec![]));
            return Err(Errno::EACCES.into());
        }
        if i.is_reg() && mnt.noexec {
            tr!(t.fail("may_open", "exec from a noexec mount", vec![]));
            return Err(Errno::EACCES.into());
        }
        tr!(t.info("do_open_execat", "open the file for execution", vec![]));
        t.nested(|t| self.inode_permission(t, &old, m, ino, MAY_EXEC))?;
        if !i.is_reg() {
            tr!(t.fail("do_open_execat", "not a regular file", vec![]));
            return Err(Errno::EACCES.into());
        }
        // would_dump
        let mut mm_ns = old.user_ns;
        let readable = {
            let mut scratch = Tracer::default();
            self.inode_permission(&mut scratch, &old, m, ino, MAY_READ)
                .is_ok()
        };
        let mut nondump = false;
        if !readable {
            nondump = true;
            while mm_ns != self.init_ns()
                && !self.privileged_wrt_inode_uidgid(&mut Tracer::default(), mm_ns, &mnt.idmap, ino)
            {
                mm_ns = self.ns(mm_ns).parent.unwrap_or(self.init_ns());
            }
        }
        tr!(t.info("would_dump", if readable { "the file is readable: the process stays dumpable" } else { "the file is not readable: the process becomes non-dumpable; mm->user_ns moves up until the file's ids are mapped" }, vec![("mm_user_ns", self.ns(mm_ns).name.clone())]));
        let unsafe_nnp = tk.no_new_privs;
        let unsafe_share = tk.shared_fs;
        tr!(t.info(
            "check_unsafe_exec",
            "no_new_privs and a shared fs_struct make the exec unsafe (ptrace is not modelled)",
            vec![
                ("no_new_privs", unsafe_nnp.to_string()),
                ("shared_fs", unsafe_share.to_string()),
            ],
        ));
        let mut new = old.clone();
        // bprm_fill_uid
        tr!(t.info(
            "bprm_fill_uid",
            "set-user-ID and set-group-ID bits",
            vec![("mode", mode_str(i.mode))],
        ));
        t.nested(|t| {
            let f = "bprm_fill_uid";
            if mnt.nosuid {
                tr!(t.info(f, "nosuid mount: set-id bits ignored (mnt_may_suid)", vec![]));
                return;
            }
            if tk.no_new_privs {
                tr!(t.info(f, "no_new_privs: set-id bits ignored", vec![]));
                return;
            }
            if i.mode & (S_ISUID | S_ISGID) == 0 {
                tr!(t.info(f, "no set-id bits", vec![]));
                return;
            }
            let (vu, vg) = self.trace_inode_ids(t, &mnt.idmap, ino, "bprm_fill_uid");
            let um = self.vfsuid_has_mapping(old.user_ns, vu);
            let gm = self.vfsgid_has_mapping(old.user_ns, vg);
            let ok = tr!(t.check(
                um && gm,
                f,
                format!("set-id bits apply only if the file's owner and group are both mapped in \"{}\"", self.ns(old.user_ns).name),
                vec![("vfsuid", vu.show()), ("uid_mapped", um.to_string()), ("vfsgid", vg.show()), ("gid_mapped", gm.to_string())],
            ));
            if !ok {
                return;
            }
            if i.mode & S_ISUID != 0 {
                new.euid = vu.0;
                tr!(t.info(f, "S_ISUID: euid := the file's owner", vec![("euid", vu.show())]));
            }
            if i.mode & (S_ISGID | S_IXGRP) == (S_ISGID | S_IXGRP) {
                new.egid = vg.0;
                tr!(t.info(f, "S_ISGID with S_IXGRP: egid := the file's group", vec![("egid", vg.show())]));
            }
        });
        // cap_bprm_creds_from_file
        let f = "cap_bprm_creds_from_file";
        new.cap_permitted = CapSet::EMPTY;
        tr!(t.info(
            "get_file_caps",
            "no file capabilities (not modelled: files carry none)",
            vec![],
        ));
        let root = self.make_kuid(new.user_ns, 0);
        let mut effective = false;
        tr!(t.info(
            "handle_privileged_root",
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
        if !old.issecure(SECURE_NOROOT) {
            if new.euid == root || new.uid == root {
                new.cap_permitted = old.cap_bset.union(old.cap_inheritable);
                tr!(t.pass(
                    "handle_privileged_root",
                    "euid or uid is the namespace's root: pP' = bounding | inheritable",
                    vec![("cap_permitted", new.cap_permitted.to_string())],
                ));
            } else {
                tr!(t.info("handle_privileged_root", "neither uid nor euid is the namespace's root (or it has no root): no capabilities", vec![]));
            }
            if new.euid == root {
                effective = true;
            }
        } else {
            tr!(t.info(
                "handle_privileged_root",
                "SECURE_NOROOT: root gets nothing special",
                vec![],
            ));
        }
        let gained = !new.cap_permitted.is_subset(old.cap_permitted);
        // Since "security/commoncap: don't assume 'setid' if all ids are identical" the
        // downgrade applies only when exec changed the euid or leaves an egid the task is not
        // in, not merely because effective ids differ from real ones (checked on 6.18).
        // The rule is `!uid_eq(new->euid, old->euid) || !in_group_p(new->egid)`: in_group_p
        // looks at the old fsgid and supplementary groups.
        let id_changed =
            new.euid != old.euid || !(new.egid == old.fsgid || old.groups.contains(&new.egid));
        if (id_changed || gained) && (unsafe_nnp || unsafe_share) {
            let keep = t.nested(|t| self.ns_capable(t, &old, new.user_ns, Cap::SETUID));
            if !keep || unsafe_nnp {
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
        // A set-id exec cancels the ambient set: the same id_changed test (checked on 6.18:
        // ambient capabilities survive an exec while euid != uid or egid != gid).
        if id_changed {
            new.cap_ambient = CapSet::EMPTY;
        }
        new.cap_permitted = new.cap_permitted.union(new.cap_ambient);
        new.cap_effective = if effective {
            new.cap_permitted
        } else {
            new.cap_ambient
        };
        new.securebits &= !(1 << SECURE_KEEP_CAPS);
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
        let dumpable = !nondump && new.euid == new.uid && new.egid == new.gid;
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
}
