//! Acting on another task: `kill` (`check_kill_permission`) and `ptrace`
//! (`__ptrace_may_access`).

use crate::caps::Cap;
use crate::outcome::{Output, StepVerdict, Tracer};
use crate::vfs::Stop;
use crate::world::{Cred, TaskRef, World};
use credns_idmap::Errno;

use super::op::{NSIG, SIGCONT};
use super::{out, OpResult};

impl World {
    pub(super) fn op_kill(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        target: TaskRef,
        sig: u32,
    ) -> OpResult {
        let f = "check_kill_permission";
        if sig > NSIG {
            tr!(t.fail(f, "invalid signal", vec![("signal", sig.to_string())]));
            return Err(Errno::EINVAL.into());
        }
        let c = self.task(task).cred.clone();
        let tc = self.task(target).cred.clone();
        let si_uid = || {
            // prepare_kill_siginfo + userns_fixup_signal_uid
            let mine = self.from_kuid_munged(c.user_ns, c.uid);
            if c.user_ns == tc.user_ns {
                mine
            } else {
                self.from_kuid_munged(tc.user_ns, self.make_kuid(c.user_ns, mine))
            }
        };
        let output = |t: &mut Tracer| -> Option<Output> {
            if sig == 0 {
                return None;
            }
            let v = si_uid();
            tr!(t.info(
                "userns_fixup_signal_uid",
                "si_uid as the receiver's namespace shows the sender's real uid",
                vec![("si_uid", v.to_string())],
            ));
            Some(out(vec![("si_uid", v.to_string())]))
        };
        if task == target {
            tr!(t.pass(f, "same thread group", vec![]));
            return Ok(output(t));
        }
        tr!(t.info("kill_ok_by_cred", "a uid match (sender euid or uid against target suid or uid), or CAP_KILL in the target's namespace", vec![]));
        let ok = t.nested(|t| self.kill_ok_by_cred(t, &c, &tc));
        if ok {
            return Ok(output(t));
        }
        if sig == SIGCONT {
            let (a, b) = (self.task(task).session, self.task(target).session);
            match (a, b) {
                (Some(a), Some(b)) if a == b => {
                    tr!(t.pass(
                        f,
                        "SIGCONT within the same session",
                        vec![("session", a.to_string())],
                    ));
                    return Ok(output(t));
                }
                (Some(_), Some(_)) => {
                    tr!(t.fail(f, "SIGCONT to another session", vec![]));
                }
                _ => {
                    let why = "SIGCONT is allowed within the same session, and the sessions are not modelled (set `session` on both processes)".to_string();
                    tr!(t.step(f, why.clone(), vec![], StepVerdict::Unknown));
                    return Err(Stop::unknown(why));
                }
            }
        }
        Err(Errno::EPERM.into())
    }

    /// `kill_ok_by_cred`: the sender's euid or uid equals the target's suid or uid (kernel
    /// ids, so the same person in any namespace), or the sender has CAP_KILL in the
    /// target's namespace.
    fn kill_ok_by_cred(&self, t: &mut Tracer, c: &Cred, tc: &Cred) -> bool {
        if let Some(m) = self.proposal(|p| p.kill_ids_match(self, t, c, tc)) {
            return m || self.ns_capable(t, c, tc.user_ns, Cap::KILL);
        }
        let pairs = [
            ("sender euid == target suid", c.euid == tc.suid),
            ("sender euid == target uid", c.euid == tc.uid),
            ("sender uid == target suid", c.uid == tc.suid),
            ("sender uid == target uid", c.uid == tc.uid),
        ];
        let vals = vec![
            ("sender_uid", c.uid.0.to_string()),
            ("sender_euid", c.euid.0.to_string()),
            ("target_uid", tc.uid.0.to_string()),
            ("target_suid", tc.suid.0.to_string()),
        ];
        if let Some((what, _)) = pairs.iter().find(|(_, ok)| *ok) {
            tr!(t.pass("kill_ok_by_cred", format!("kernel ids match: {what}"), vals));
            return true;
        }
        tr!(t.fail("kill_ok_by_cred", "no kernel-id match", vals));
        self.ns_capable(t, c, tc.user_ns, Cap::KILL)
    }

    pub(super) fn op_ptrace(&mut self, t: &mut Tracer, task: TaskRef, target: TaskRef) -> OpResult {
        if task == target {
            tr!(t.fail(
                "ptrace_attach",
                "a task cannot attach to its own thread group",
                vec![],
            ));
            return Err(Errno::EPERM.into());
        }
        let c = self.task(task).cred.clone();
        let tt = self.task(target).clone();
        let tc = tt.cred.clone();
        let f = "__ptrace_may_access";
        let same = c.uid == tc.euid
            && c.uid == tc.suid
            && c.uid == tc.uid
            && c.gid == tc.egid
            && c.gid == tc.sgid
            && c.gid == tc.gid;
        tr!(t.check(
            same,
            f,
            "PTRACE_MODE_REALCREDS: the caller's real uid and gid equal all of the target's uids and gids",
            vec![
                ("caller", format!("{}:{}", c.uid.0, c.gid.0)),
                ("target_uids", format!("{}/{}/{}", tc.uid.0, tc.euid.0, tc.suid.0)),
                ("target_gids", format!("{}/{}/{}", tc.gid.0, tc.egid.0, tc.sgid.0)),
            ],
        ));
        if !same {
            tr!(t.info(
                f,
                "otherwise CAP_SYS_PTRACE in the target's namespace (ptrace_has_cap)",
                vec![],
            ));
            if !t.nested(|t| self.ns_capable(t, &c, tc.user_ns, Cap::SYS_PTRACE)) {
                return Err(Errno::EPERM.into());
            }
        }
        if !tt.dumpable {
            tr!(t.info(f, format!("the target is not dumpable: CAP_SYS_PTRACE in its mm->user_ns \"{}\" is needed", self.ns(tt.mm_user_ns).name), vec![]));
            if !t.nested(|t| self.ns_capable(t, &c, tt.mm_user_ns, Cap::SYS_PTRACE)) {
                return Err(Errno::EPERM.into());
            }
        } else {
            tr!(t.pass(f, "the target is dumpable", vec![]));
        }
        let g = "cap_ptrace_access_check";
        let sub = c.user_ns == tc.user_ns && tc.cap_permitted.is_subset(c.cap_permitted);
        tr!(t.check(
            sub,
            g,
            "same namespace and the target's permitted set is a subset of the caller's",
            vec![
                ("caller_permitted", c.cap_permitted.to_string()),
                ("target_permitted", tc.cap_permitted.to_string()),
            ],
        ));
        if !sub && !t.nested(|t| self.ns_capable(t, &c, tc.user_ns, Cap::SYS_PTRACE)) {
            return Err(Errno::EPERM.into());
        }
        tr!(t.info(
            "yama_ptrace_access_check",
            "Yama ptrace_scope 0 (or Yama absent): no further restriction",
            vec![],
        ));
        Ok(None)
    }
}
