//! `ptrace_may_access` in its other modes: PTRACE_MODE_READ with the real ids (as `kcmp(2)`
//! asks it) or with the fs ids and effective set (as /proc asks it, `mm_access`), and opening
//! /proc/PID files that `mm_access` guards (`environ`, behind the DAC check of a file owned by
//! `task_dump_owner`, and `maps`, world-readable).

use credns_idmap::{Errno, Kgid, Kuid};

use crate::caps::Cap;
use crate::outcome::Tracer;
use crate::world::{Cred, TaskRef, World};

use super::op::ProcFile;
use super::OpResult;

/// The credential half of a `PTRACE_MODE_*` (the access half here is always READ).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Creds {
    Real,
    Fs,
}

impl World {
    /// `__ptrace_may_access(target, PTRACE_MODE_READ_{REAL,FS}CREDS)` and
    /// `cap_ptrace_access_check`; Yama only restricts ATTACH.
    fn ptrace_may_read(
        &self,
        t: &mut Tracer,
        task: TaskRef,
        target: TaskRef,
        creds: Creds,
    ) -> bool {
        let f = "__ptrace_may_access";
        if task == target {
            tr!(t.pass(
                f,
                "same thread group: introspection is always allowed",
                vec![]
            ));
            return true;
        }
        let c = self.task(task).cred.clone();
        let tt = self.task(target).clone();
        let tc = &tt.cred;
        let (u, g, which) = match creds {
            Creds::Real => (
                c.uid,
                c.gid,
                "PTRACE_MODE_REALCREDS: the caller's real uid and gid",
            ),
            Creds::Fs => (
                c.fsuid,
                c.fsgid,
                "PTRACE_MODE_FSCREDS: the caller's fsuid and fsgid",
            ),
        };
        let same = ids_match(u, g, tc);
        tr!(t.check(
            same,
            f,
            format!("{which} equal all of the target's uids and gids"),
            vec![
                ("caller", format!("{}:{}", u.0, g.0)),
                (
                    "target_uids",
                    format!("{}/{}/{}", tc.uid.0, tc.euid.0, tc.suid.0)
                ),
                (
                    "target_gids",
                    format!("{}/{}/{}", tc.gid.0, tc.egid.0, tc.sgid.0)
                ),
            ],
        ));
        if !same {
            tr!(t.info(
                f,
                "otherwise CAP_SYS_PTRACE in the target's namespace (ptrace_has_cap)",
                vec![]
            ));
            if !t.nested(|t| self.ns_capable(t, &c, tc.user_ns, Cap::SYS_PTRACE)) {
                return false;
            }
        }
        if !tt.dumpable {
            tr!(t.info(
                f,
                format!("the target is not dumpable: CAP_SYS_PTRACE in its mm->user_ns \"{}\" is needed", self.ns(tt.mm_user_ns).name),
                vec![],
            ));
            if !t.nested(|t| self.ns_capable(t, &c, tt.mm_user_ns, Cap::SYS_PTRACE)) {
                return false;
            }
        } else {
            tr!(t.pass(f, "the target is dumpable", vec![]));
        }
        self.cap_ptrace_access_check(t, &c, tc, creds)
    }

    /// `cap_ptrace_access_check`: same namespace and the target's permitted set within the
    /// caller's permitted set (REALCREDS) or effective set (FSCREDS), or CAP_SYS_PTRACE.
    fn cap_ptrace_access_check(&self, t: &mut Tracer, c: &Cred, tc: &Cred, creds: Creds) -> bool {
        let (mine, which) = match creds {
            Creds::Real => (c.cap_permitted, "permitted"),
            Creds::Fs => (c.cap_effective, "effective"),
        };
        let sub = c.user_ns == tc.user_ns && tc.cap_permitted.is_subset(mine);
        tr!(t.check(
            sub,
            "cap_ptrace_access_check",
            format!(
                "same namespace and the target's permitted set within the caller's {which} set"
            ),
            vec![
                ("caller", mine.to_string()),
                ("target_permitted", tc.cap_permitted.to_string())
            ],
        ));
        sub || t.nested(|t| self.ns_capable(t, c, tc.user_ns, Cap::SYS_PTRACE))
    }

    /// `ptrace` with `mode = "read"`: with the real ids as `kcmp(2)` asks it (EPERM); with the
    /// fs ids as `proc_fd_access_allowed` asks it for the /proc/PID/cwd, exe, root and fd/*
    /// links (EACCES).
    pub(super) fn op_ptrace_read(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        target: TaskRef,
        fscreds: bool,
    ) -> OpResult {
        let (creds, e) = if fscreds {
            (Creds::Fs, Errno::EACCES)
        } else {
            (Creds::Real, Errno::EPERM)
        };
        if self.ptrace_may_read(t, task, target, creds) {
            return Ok(None);
        }
        Err(e.into())
    }

    /// `mm_access(PTRACE_MODE_READ_FSCREDS)` (`may_access_mm`): the caller's own mm,
    /// `ptrace_may_access`, or `perfmon_capable()` (CAP_PERFMON or CAP_SYS_ADMIN in the
    /// initial namespace, 6.13 and later); EACCES otherwise.
    fn mm_access_read(&self, t: &mut Tracer, task: TaskRef, target: TaskRef) -> OpResult {
        tr!(t.info(
            "may_access_mm",
            "the caller's own mm, PTRACE_MODE_READ_FSCREDS, or perfmon_capable()",
            vec![]
        ));
        if t.nested(|t| self.ptrace_may_read(t, task, target, Creds::Fs)) {
            return Ok(None);
        }
        let c = self.task(task).cred.clone();
        let init = self.init_ns();
        tr!(t.info(
            "perfmon_capable",
            "CAP_PERFMON or CAP_SYS_ADMIN in the initial namespace (capable)",
            vec![]
        ));
        let perfmon = t.nested(|t| {
            self.ns_capable(t, &c, init, Cap::PERFMON)
                || self.ns_capable(t, &c, init, Cap::SYS_ADMIN)
        });
        if perfmon {
            Ok(None)
        } else {
            Err(Errno::EACCES.into())
        }
    }

    /// `open("/proc/TARGET/FILE", O_RDONLY)`.
    pub(super) fn op_open_proc(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        target: TaskRef,
        file: ProcFile,
    ) -> OpResult {
        if file != ProcFile::Maps && !self.proc_dac_read(t, task, target) {
            return Err(Errno::EACCES.into());
        }
        if file == ProcFile::Mem {
            // mem_open: proc_mem_open(PTRACE_MODE_ATTACH), so mm_access with ATTACH_FSCREDS,
            // where perfmon_capable does not help (it is for READ only).
            tr!(t.info(
                "proc_mem_open",
                "mm_access(PTRACE_MODE_ATTACH_FSCREDS): the caller's own mm or ptrace_may_access",
                vec![]
            ));
            return if t.nested(|t| self.ptrace_may_read(t, task, target, Creds::Fs)) {
                Ok(None)
            } else {
                Err(Errno::EACCES.into())
            };
        }
        if file == ProcFile::Maps {
            tr!(t.pass(
                "generic_permission",
                "/proc/PID/maps is 0444: anyone may open it for reading",
                vec![]
            ));
        }
        tr!(t.info(
            "proc_mem_open",
            "mm_access(PTRACE_MODE_READ_FSCREDS)",
            vec![]
        ));
        self.mm_access_read(t, task, target)
    }

    /// `readlink("/proc/TARGET/fd/N")`: `proc_fd_permission` on the 0500 fd directory (its
    /// owner, CAP_DAC_READ_SEARCH or CAP_DAC_OVERRIDE over it, or the same thread group), then
    /// `proc_fd_access_allowed`: PTRACE_MODE_READ_FSCREDS. EACCES either way.
    pub(super) fn op_readlink_proc_fd(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        target: TaskRef,
    ) -> OpResult {
        let f = "proc_fd_permission";
        let (ou, og) = self.task_dump_owner(t, target);
        let c = self.task(task).cred.clone();
        let dac = tr!(t.check(
            c.fsuid == ou,
            "generic_permission",
            "the fd directory is 0500: the caller's fsuid owns it",
            vec![("fsuid", c.fsuid.0.to_string())]
        )) || self.dac_override(t, &c, ou, og, [Cap::DAC_READ_SEARCH, Cap::DAC_OVERRIDE]);
        if !dac
            && !tr!(t.check(
                task == target,
                f,
                "otherwise only the process itself may look up its fds",
                vec![]
            ))
        {
            return Err(Errno::EACCES.into());
        }
        tr!(t.info(
            "proc_fd_access_allowed",
            "ptrace_may_access(PTRACE_MODE_READ_FSCREDS)",
            vec![]
        ));
        if t.nested(|t| self.ptrace_may_read(t, task, target, Creds::Fs)) {
            Ok(None)
        } else {
            Err(Errno::EACCES.into())
        }
    }

    /// `task_dump_owner` for a /proc/PID file that is not the world-readable directory.
    fn task_dump_owner(&self, t: &mut Tracer, target: TaskRef) -> (Kuid, Kgid) {
        let tt = self.task(target);
        let (ou, og) = if tt.dumpable {
            (tt.cred.euid, tt.cred.egid)
        } else {
            let u = self.make_kuid(tt.mm_user_ns, 0);
            let g = self.make_kgid(tt.mm_user_ns, 0);
            (
                if u.is_valid() { u } else { Kuid(0) },
                if g.is_valid() { g } else { Kgid(0) },
            )
        };
        tr!(t.info(
            "task_dump_owner",
            if tt.dumpable {
                "the file belongs to the target's euid and egid".to_string()
            } else {
                format!("the target is not dumpable: the file belongs to root of its mm->user_ns \"{}\" (or global root)", self.ns(tt.mm_user_ns).name)
            },
            vec![("owner", ou.0.to_string()), ("group", og.0.to_string())],
        ));
        (ou, og)
    }

    /// `capable_wrt_inode_uidgid` for each of `caps` in turn, on a file owned by `ou:og`.
    fn dac_override(&self, t: &mut Tracer, c: &Cred, ou: Kuid, og: Kgid, caps: [Cap; 2]) -> bool {
        let mapped = self.kuid_has_mapping(c.user_ns, ou) && self.kgid_has_mapping(c.user_ns, og);
        caps.into_iter().any(|cap| {
            tr!(t.info(
                "capable_wrt_inode_uidgid",
                format!("{cap} in the caller's namespace, the file's owner and group mapped there"),
                vec![]
            ));
            t.nested(|t| {
                self.ns_capable(t, c, c.user_ns, cap)
                    && tr!(t.check(
                        mapped,
                        "privileged_wrt_inode_uidgid",
                        "the file's owner and group are mapped in the caller's namespace",
                        vec![]
                    ))
            })
        })
    }

    /// `generic_permission(MAY_READ)` on a 0400 (`environ`) or 0600 (`mem`) /proc/PID file
    /// owned by `task_dump_owner`.
    fn proc_dac_read(&self, t: &mut Tracer, task: TaskRef, target: TaskRef) -> bool {
        let (ou, og) = self.task_dump_owner(t, target);
        let c = self.task(task).cred.clone();
        tr!(t.check(
            c.fsuid == ou,
            "generic_permission",
            "owner-only mode: the caller's fsuid owns the file",
            vec![("fsuid", c.fsuid.0.to_string())]
        )) || self.dac_override(t, &c, ou, og, [Cap::DAC_OVERRIDE, Cap::DAC_READ_SEARCH])
    }
}

fn ids_match(u: Kuid, g: Kgid, tc: &Cred) -> bool {
    u == tc.euid && u == tc.suid && u == tc.uid && g == tc.egid && g == tc.sgid && g == tc.gid
}
