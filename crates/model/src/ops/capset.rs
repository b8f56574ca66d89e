//! Changing one's own capabilities and fs ids: `setfsuid`/`setfsgid` (kernel/sys.c) with
//! `cap_task_fix_setuid(LSM_SETID_FS)`, `capset` (`cap_capset`) and the capability module's
//! `prctl` options (`cap_task_prctl`: securebits, keepcaps, bounding set, ambient set).

use credns_idmap::{Errno, Kgid, Kuid};

use crate::caps::{Cap, CapSet, CAP_LAST_CAP};
use crate::outcome::{Output, Tracer};
use crate::world::{Cred, TaskRef, World, SECURE_KEEP_CAPS, SECURE_NO_SETUID_FIXUP};

use super::op::{CapPrctlOption, Op};
use super::{out, OpResult};

/// `SECURE_KEEP_CAPS_LOCKED`.
const SECURE_KEEP_CAPS_LOCKED: u32 = 5;
/// `SECURE_NO_CAP_AMBIENT_RAISE`.
const SECURE_NO_CAP_AMBIENT_RAISE: u32 = 6;
/// `SECURE_ALL_BITS` (6.14 and later: with `SECURE_EXEC_RESTRICT_FILE` and
/// `SECURE_EXEC_DENY_INTERACTIVE`).
const SECURE_ALL_BITS: u32 = 1 << 0 | 1 << 2 | 1 << 4 | 1 << 6 | 1 << 8 | 1 << 10;
/// `SECURE_ALL_LOCKS`: each bit's lock is the bit above it.
const SECURE_ALL_LOCKS: u32 = SECURE_ALL_BITS << 1;
/// `SECURE_ALL_UNPRIVILEGED`: the exec restrictions a process may put on itself, and their
/// locks.
const SECURE_UNPRIV_AND_LOCKS: u32 = (1 << 8 | 1 << 10) | (1 << 8 | 1 << 10) << 1;

/// `CAP_FS_SET`: `CAP_FS_MASK` (what fsuid 0 historically meant) and `CAP_LINUX_IMMUTABLE`.
fn cap_fs_set() -> CapSet {
    // CHOWN, DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER, FSETID, LINUX_IMMUTABLE, MKNOD,
    // MAC_OVERRIDE.
    CapSet::from_bits(0x1f | 1 << 9 | 1 << 27 | 1 << 32)
}

fn hex(c: CapSet) -> String {
    format!("{:016x}", c.bits())
}

impl World {
    pub(super) fn dispatch_capset(&mut self, t: &mut Tracer, task: TaskRef, op: &Op) -> OpResult {
        match op {
            Op::Setfsuid { uid } => self.op_setfsuid(t, task, *uid),
            Op::Setfsgid { gid } => self.op_setfsgid(t, task, *gid),
            Op::Capset {
                effective,
                permitted,
                inheritable,
            } => self.op_capset(t, task, *effective, *permitted, *inheritable),
            Op::CapPrctl { option, arg } => self.op_cap_prctl(t, task, *option, *arg),
            _ => unreachable!("dispatched by World::dispatch_op"),
        }
    }

    /// The capability sets after the change, as `/proc/self/status` shows them.
    fn cap_values(&self, task: TaskRef) -> Vec<(&'static str, String)> {
        let c = &self.task(task).cred;
        vec![
            ("CapInh", hex(c.cap_inheritable)),
            ("CapPrm", hex(c.cap_permitted)),
            ("CapEff", hex(c.cap_effective)),
            ("CapBnd", hex(c.cap_bset)),
            ("CapAmb", hex(c.cap_ambient)),
        ]
    }

    fn with_caps(&self, task: TaskRef, mut v: Vec<(&'static str, String)>) -> Option<Output> {
        v.extend(self.cap_values(task));
        Some(out(v))
    }

    /// `__sys_setfsuid`: never fails; changes the fsuid only to a valid id that is one of
    /// the real, effective, saved or current fs uid, or with CAP_SETUID.
    fn op_setfsuid(&mut self, t: &mut Tracer, task: TaskRef, uid: Option<u32>) -> OpResult {
        let f = "__sys_setfsuid";
        let old = self.task(task).cred.clone();
        let old_fsuid = self.from_kuid_munged(old.user_ns, old.fsuid);
        let k = uid.map_or(Kuid(u32::MAX), |u| self.make_kuid(old.user_ns, u));
        let change = self.may_set_fsid(
            t,
            f,
            &old,
            k.0,
            [old.uid.0, old.euid.0, old.suid.0],
            old.fsuid.0,
            Cap::SETUID,
        );
        if change {
            let mut new = old.clone();
            new.fsuid = k;
            self.fix_setfsuid(t, &old, &mut new);
            self.commit_creds(t, task, new);
        }
        let c = &self.task(task).cred;
        let v = vec![
            ("old", old_fsuid.to_string()),
            (
                "fsuid",
                self.from_kuid_munged(c.user_ns, c.fsuid).to_string(),
            ),
        ];
        Ok(self.with_caps(task, v))
    }

    /// `__sys_setfsgid`: as `setfsuid` with CAP_SETGID; no capability fix-up.
    fn op_setfsgid(&mut self, t: &mut Tracer, task: TaskRef, gid: Option<u32>) -> OpResult {
        let f = "__sys_setfsgid";
        let old = self.task(task).cred.clone();
        let old_fsgid = self.from_kgid_munged(old.user_ns, old.fsgid);
        let k = gid.map_or(Kgid(u32::MAX), |g| self.make_kgid(old.user_ns, g));
        let change = self.may_set_fsid(
            t,
            f,
            &old,
            k.0,
            [old.gid.0, old.egid.0, old.sgid.0],
            old.fsgid.0,
            Cap::SETGID,
        );
        if change {
            let mut new = old.clone();
            new.fsgid = k;
            self.commit_creds(t, task, new);
        }
        let c = &self.task(task).cred;
        let v = vec![
            ("old", old_fsgid.to_string()),
            (
                "fsgid",
                self.from_kgid_munged(c.user_ns, c.fsgid).to_string(),
            ),
        ];
        Ok(Some(out(v)))
    }

    /// The shared rule of `setfsuid`/`setfsgid`: whether the fs id changes to `k`.
    #[allow(clippy::too_many_arguments)]
    fn may_set_fsid(
        &self,
        t: &mut Tracer,
        f: &str,
        old: &Cred,
        k: u32,
        ids: [u32; 3],
        fs: u32,
        cap: Cap,
    ) -> bool {
        if !tr!(t.check(
            k != u32::MAX,
            f,
            "the new id must be valid in the caller's namespace (make_kuid/make_kgid); otherwise nothing changes and the old fs id is returned",
            vec![("kernel_id", if k == u32::MAX { "INVALID".into() } else { k.to_string() })],
        )) {
            return false;
        }
        let own = ids.contains(&k) || k == fs;
        let ok = own
            || {
                tr!(t.info(
                f,
                "not one of the real, effective, saved or fs ids: needs the capability (ns_capable_setid)",
                vec![],
            ));
                t.nested(|t| self.ns_capable(t, old, old.user_ns, cap))
            };
        if !ok {
            tr!(t.fail(
                f,
                "not permitted: nothing changes (the call still returns the old fs id, no error)",
                vec![],
            ));
            return false;
        }
        tr!(t.check(
            k != fs,
            f,
            "the fs id changes only if it differs from the current one",
            vec![],
        ))
    }

    /// `cap_task_fix_setuid(LSM_SETID_FS)`: leaving fsuid 0 of the caller's namespace drops
    /// `CAP_FS_SET` from the effective set; coming to it raises them from the permitted set;
    /// `SECURE_NO_SETUID_FIXUP` suppresses both.
    fn fix_setfsuid(&self, t: &mut Tracer, old: &Cred, new: &mut Cred) {
        let f = "cap_task_fix_setuid";
        if old.issecure(SECURE_NO_SETUID_FIXUP) {
            tr!(t.info(
                f,
                "SECURE_NO_SETUID_FIXUP: capabilities do not follow the fsuid",
                vec![]
            ));
            return;
        }
        let root = self.make_kuid(old.user_ns, 0);
        let fs = cap_fs_set();
        if old.fsuid == root && new.fsuid != root {
            new.cap_effective = CapSet::from_bits(new.cap_effective.bits() & !fs.bits());
            tr!(t.info(
                f,
                "fsuid left the namespace's root: CAP_FS_SET dropped from the effective set (cap_drop_fs_set)",
                vec![("CapEff", hex(new.cap_effective))],
            ));
        }
        if old.fsuid != root && new.fsuid == root {
            new.cap_effective = new.cap_effective.union(new.cap_permitted.intersect(fs));
            tr!(t.info(
                f,
                "fsuid became the namespace's root: CAP_FS_SET ∩ permitted raised in the effective set (cap_raise_fs_set)",
                vec![("CapEff", hex(new.cap_effective))],
            ));
        }
    }

    /// `sys_capset` → `cap_capset`: the new sets within what the old ones allow.
    fn op_capset(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        eff: CapSet,
        prm: CapSet,
        inh: CapSet,
    ) -> OpResult {
        let f = "cap_capset";
        let old = self.task(task).cred.clone();
        tr!(t.info(
            "cap_inh_is_capped",
            "a new inheritable set beyond old inheritable ∪ permitted needs CAP_SETPCAP",
            vec![],
        ));
        let capped = !t.nested(|t| self.ns_capable(t, &old, old.user_ns, Cap::SETPCAP));
        let steps = [
            (
                !capped || inh.is_subset(old.cap_inheritable.union(old.cap_permitted)),
                "without CAP_SETPCAP the new inheritable set ⊆ old inheritable ∪ old permitted",
            ),
            (
                inh.is_subset(old.cap_inheritable.union(old.cap_bset)),
                "the new inheritable set ⊆ old inheritable ∪ bounding set",
            ),
            (
                prm.is_subset(old.cap_permitted),
                "the new permitted set ⊆ old permitted",
            ),
            (eff.is_subset(prm), "the new effective set ⊆ new permitted"),
        ];
        for (ok, what) in steps {
            if !tr!(t.check(ok, f, what, vec![])) {
                return Err(Errno::EPERM.into());
            }
        }
        let mut new = old;
        new.cap_effective = eff;
        new.cap_permitted = prm;
        new.cap_inheritable = inh;
        new.cap_ambient = new.cap_ambient.intersect(prm.intersect(inh));
        tr!(t.info(
            f,
            "sets installed; ambient masked to permitted ∩ inheritable",
            vec![("CapAmb", hex(new.cap_ambient))],
        ));
        self.commit_creds(t, task, new);
        Ok(self.with_caps(task, vec![]))
    }

    /// `cap_task_prctl`.
    fn op_cap_prctl(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        option: CapPrctlOption,
        arg: u32,
    ) -> OpResult {
        let old = self.task(task).cred.clone();
        let mut new = old.clone();
        match option {
            CapPrctlOption::SetSecurebits => {
                self.set_securebits(t, &old, arg)?;
                new.securebits = arg;
            }
            CapPrctlOption::SetKeepcaps => {
                let f = "cap_task_prctl";
                if !tr!(t.check(arg <= 1, f, "PR_SET_KEEPCAPS takes 0 or 1", vec![])) {
                    return Err(Errno::EINVAL.into());
                }
                if !tr!(t.check(
                    !old.issecure(SECURE_KEEP_CAPS_LOCKED),
                    f,
                    "SECURE_KEEP_CAPS_LOCKED is not set",
                    vec![("securebits", format!("{:#x}", old.securebits))],
                )) {
                    return Err(Errno::EPERM.into());
                }
                new.securebits = if arg == 1 {
                    old.securebits | 1 << SECURE_KEEP_CAPS
                } else {
                    old.securebits & !(1 << SECURE_KEEP_CAPS)
                };
            }
            CapPrctlOption::CapbsetDrop => {
                tr!(t.info(
                    "cap_prctl_drop",
                    "dropping from the bounding set needs CAP_SETPCAP",
                    vec![]
                ));
                if !t.nested(|t| self.ns_capable(t, &old, old.user_ns, Cap::SETPCAP)) {
                    return Err(Errno::EPERM.into());
                }
                let cap = self.valid_cap(t, "cap_prctl_drop", arg)?;
                new.cap_bset = old.cap_bset.without(cap);
            }
            CapPrctlOption::AmbientClearAll => new.cap_ambient = CapSet::EMPTY,
            CapPrctlOption::AmbientRaise | CapPrctlOption::AmbientLower => {
                let cap = self.valid_cap(t, "cap_task_prctl", arg)?;
                if option == CapPrctlOption::AmbientRaise {
                    let f = "cap_task_prctl";
                    let ok = tr!(t.check(
                        old.cap_permitted.has(cap),
                        f,
                        format!("PR_CAP_AMBIENT_RAISE: {cap} must be permitted"),
                        vec![]
                    )) && tr!(t.check(
                        old.cap_inheritable.has(cap),
                        f,
                        format!("PR_CAP_AMBIENT_RAISE: {cap} must be inheritable"),
                        vec![]
                    )) && tr!(t.check(
                        !old.issecure(SECURE_NO_CAP_AMBIENT_RAISE),
                        f,
                        "SECURE_NO_CAP_AMBIENT_RAISE is not set",
                        vec![]
                    ));
                    if !ok {
                        return Err(Errno::EPERM.into());
                    }
                    new.cap_ambient = old.cap_ambient.with(cap);
                } else {
                    new.cap_ambient = old.cap_ambient.without(cap);
                }
            }
        }
        tr!(t.pass(
            "cap_task_prctl",
            format!("{}: credentials committed", option.name()),
            vec![]
        ));
        let bits = new.securebits;
        self.commit_creds(t, task, new);
        Ok(self.with_caps(task, vec![("securebits", bits.to_string())]))
    }

    /// `cap_valid(arg)`, or EINVAL.
    fn valid_cap(&self, t: &mut Tracer, f: &str, arg: u32) -> Result<Cap, crate::vfs::Stop> {
        let cap =
            Cap::from_number(arg.min(u8::MAX as u32) as u8).filter(|_| arg <= CAP_LAST_CAP as u32);
        match cap {
            Some(c) => {
                tr!(t.pass(f, format!("cap_valid({arg})"), vec![]));
                Ok(c)
            }
            None => {
                tr!(t.fail(f, format!("cap_valid({arg}): beyond CAP_LAST_CAP"), vec![]));
                Err(Errno::EINVAL.into())
            }
        }
    }

    /// `PR_SET_SECUREBITS`: no locked bit changed, no lock released, no unknown bit, and
    /// CAP_SETPCAP unless only the exec restrictions (and their locks) change.
    fn set_securebits(&self, t: &mut Tracer, old: &Cred, arg: u32) -> Result<(), crate::vfs::Stop> {
        let f = "cap_task_prctl";
        let o = old.securebits;
        let steps = [
            (
                (o & SECURE_ALL_LOCKS) >> 1 & (o ^ arg) == 0,
                "PR_SET_SECUREBITS: no locked bit changes",
            ),
            (
                o & SECURE_ALL_LOCKS & !arg == 0,
                "PR_SET_SECUREBITS: no lock is released",
            ),
            (
                arg & !(SECURE_ALL_LOCKS | SECURE_ALL_BITS) == 0,
                "PR_SET_SECUREBITS: no unsupported bit",
            ),
        ];
        for (ok, what) in steps {
            if !tr!(t.check(
                ok,
                f,
                what,
                vec![("old", format!("{o:#x}")), ("new", format!("{arg:#x}"))]
            )) {
                return Err(Errno::EPERM.into());
            }
        }
        tr!(t.info(
            f,
            "PR_SET_SECUREBITS needs CAP_SETPCAP, except for changing only the exec restrictions",
            vec![]
        ));
        if t.nested(|t| self.ns_capable(t, old, old.user_ns, Cap::SETPCAP)) {
            return Ok(());
        }
        let changed = o ^ arg;
        let ok = tr!(t.check(changed != 0, f, "without CAP_SETPCAP: a call that changes nothing is refused", vec![]))
            && tr!(t.check(
                changed & !SECURE_UNPRIV_AND_LOCKS == 0,
                f,
                "without CAP_SETPCAP: only SECBIT_EXEC_RESTRICT_FILE, SECBIT_EXEC_DENY_INTERACTIVE and their locks may change",
                vec![],
            ));
        if ok {
            Ok(())
        } else {
            Err(Errno::EPERM.into())
        }
    }
}
