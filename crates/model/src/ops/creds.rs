//! Changing one's own credentials: the `set*id` family and `setgroups`, with
//! `commit_creds` and the capability fix-ups of `cap_task_fix_setuid`.

use credns_idmap::{Kgid, Kuid};

use crate::caps::{Cap, CapSet};
use crate::outcome::Tracer;
use crate::vfs::Stop;
use crate::world::{Cred, NsRef, TaskRef, World, SECURE_KEEP_CAPS, SECURE_NO_SETUID_FIXUP};
use credns_idmap::Errno;

use super::op::NGROUPS_MAX;
use super::OpResult;

impl World {
    /// `commit_creds`: install new credentials; a change of euid/egid/fsuid/fsgid, or new
    /// capabilities, makes the task non-dumpable per `fs.suid_dumpable`.
    pub(super) fn commit_creds(&mut self, t: &mut Tracer, task: TaskRef, new: Cred) {
        let old = self.task(task).cred.clone();
        let subset = self.cred_cap_issubset(&old, &new);
        if old.euid != new.euid
            || old.egid != new.egid
            || old.fsuid != new.fsuid
            || old.fsgid != new.fsgid
            || !subset
        {
            let d = self.suid_dumpable == 1;
            if self.task(task).dumpable != d {
                tr!(t.info(
                    "commit_creds",
                    format!(
                        "credentials changed: dumpable := fs.suid_dumpable ({})",
                        self.suid_dumpable
                    ),
                    vec![],
                ));
            }
            self.tasks[task.0].dumpable = d;
        }
        self.tasks[task.0].cred = new;
    }

    pub(super) fn cred_cap_issubset(&self, set: &Cred, subset: &Cred) -> bool {
        if set.user_ns == subset.user_ns {
            return subset.cap_permitted.is_subset(set.cap_permitted);
        }
        let mut ns = subset.user_ns;
        while ns != self.init_ns() {
            let n = self.ns(ns);
            if n.parent == Some(set.user_ns) && n.owner == set.euid {
                return true;
            }
            ns = n.parent.unwrap_or(self.init_ns());
        }
        false
    }

    /// `cap_task_fix_setuid` (`cap_emulate_setxuid`): root transitions, with root meaning the
    /// namespace's uid 0.
    pub(super) fn fix_setuid(&self, t: &mut Tracer, old: &Cred, new: &mut Cred) {
        if old.issecure(SECURE_NO_SETUID_FIXUP) {
            return;
        }
        let root = self.make_kuid(old.user_ns, 0);
        let was = old.uid == root || old.euid == root || old.suid == root;
        let is = new.uid == root || new.euid == root || new.suid == root;
        if was && !is {
            if !old.issecure(SECURE_KEEP_CAPS) {
                new.cap_permitted = CapSet::EMPTY;
                new.cap_effective = CapSet::EMPTY;
            }
            new.cap_ambient = CapSet::EMPTY;
            tr!(t.info("cap_emulate_setxuid", "no uid is the namespace's root any more: permitted and effective cleared (unless SECURE_KEEP_CAPS), ambient cleared", vec![("root", self.show_uid(root))]));
        }
        if old.euid == root && new.euid != root {
            new.cap_effective = CapSet::EMPTY;
            tr!(t.info(
                "cap_emulate_setxuid",
                "euid left root: effective cleared",
                vec![],
            ));
        }
        if old.euid != root && new.euid == root {
            new.cap_effective = new.cap_permitted;
            tr!(t.info(
                "cap_emulate_setxuid",
                "euid became root: effective := permitted",
                vec![],
            ));
        }
    }

    pub(super) fn make_ids_valid(
        &self,
        t: &mut Tracer,
        f: &str,
        ns: NsRef,
        ids: &[(&str, Option<u32>)],
        uid: bool,
    ) -> Result<Vec<Option<u32>>, Stop> {
        let mut res = Vec::new();
        for (name, v) in ids {
            match v {
                None => res.push(None),
                Some(v) => {
                    let k = if uid {
                        self.make_kuid(ns, *v).0
                    } else {
                        self.make_kgid(ns, *v).0
                    };
                    let ok = k != u32::MAX;
                    tr!(t.check(
                        ok,
                        f,
                        format!(
                            "{name} {v} must be mapped in the caller's namespace \"{}\" ({})",
                            self.ns(ns).name,
                            if uid { "make_kuid" } else { "make_kgid" }
                        ),
                        vec![
                            (name, v.to_string()),
                            (
                                "kernel_id",
                                if ok { k.to_string() } else { "INVALID".into() },
                            ),
                        ],
                    ));
                    if !ok {
                        return Err(Errno::EINVAL.into());
                    }
                    res.push(Some(k));
                }
            }
        }
        Ok(res)
    }

    pub(super) fn op_setuid(&mut self, t: &mut Tracer, task: TaskRef, uid: u32) -> OpResult {
        let old = self.task(task).cred.clone();
        let k = Kuid(
            self.make_ids_valid(t, "__sys_setuid", old.user_ns, &[("uid", Some(uid))], true)?[0]
                .unwrap_or(u32::MAX),
        );
        let mut new = old.clone();
        if t.nested(|t| self.ns_capable(t, &old, old.user_ns, Cap::SETUID)) {
            new.uid = k;
            new.suid = k;
        } else if k != old.uid && k != old.suid {
            tr!(t.fail(
                "__sys_setuid",
                "without CAP_SETUID the new uid must be the real or saved uid",
                vec![],
            ));
            return Err(Errno::EPERM.into());
        } else {
            tr!(t.pass(
                "__sys_setuid",
                "the new uid is the real or saved uid",
                vec![],
            ));
        }
        new.euid = k;
        new.fsuid = k;
        self.fix_setuid(t, &old, &mut new);
        self.commit_creds(t, task, new);
        Ok(None)
    }

    pub(super) fn op_setreuid(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        ruid: Option<u32>,
        euid: Option<u32>,
    ) -> OpResult {
        let old = self.task(task).cred.clone();
        let ks = self.make_ids_valid(
            t,
            "__sys_setreuid",
            old.user_ns,
            &[("ruid", ruid), ("euid", euid)],
            true,
        )?;
        let (kr, ke) = (ks[0].map(Kuid), ks[1].map(Kuid));
        let mut new = old.clone();
        let mut cap: Option<bool> = None;
        let mut has_cap = |t: &mut Tracer, w: &World| {
            *cap.get_or_insert_with(|| {
                t.nested(|t| w.ns_capable(t, &old, old.user_ns, Cap::SETUID))
            })
        };
        if let Some(k) = kr {
            new.uid = k;
            if k != old.uid && k != old.euid && !has_cap(t, self) {
                tr!(t.fail(
                    "__sys_setreuid",
                    "the new real uid must be the real or effective uid, or CAP_SETUID",
                    vec![],
                ));
                return Err(Errno::EPERM.into());
            }
        }
        if let Some(k) = ke {
            new.euid = k;
            if k != old.uid && k != old.euid && k != old.suid && !has_cap(t, self) {
                tr!(t.fail(
                    "__sys_setreuid",
                    "the new effective uid must be the real, effective or saved uid, or CAP_SETUID",
                    vec![],
                ));
                return Err(Errno::EPERM.into());
            }
        }
        if kr.is_some() || ke.is_some_and(|k| k != old.uid) {
            new.suid = new.euid;
        }
        new.fsuid = new.euid;
        tr!(t.pass("__sys_setreuid", "permitted", vec![]));
        self.fix_setuid(t, &old, &mut new);
        self.commit_creds(t, task, new);
        Ok(None)
    }

    pub(super) fn op_setresuid(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        ruid: Option<u32>,
        euid: Option<u32>,
        suid: Option<u32>,
    ) -> OpResult {
        let f = "__sys_setresuid";
        let old = self.task(task).cred.clone();
        let ks = self.make_ids_valid(
            t,
            f,
            old.user_ns,
            &[("ruid", ruid), ("euid", euid), ("suid", suid)],
            true,
        )?;
        let (kr, ke, ks) = (ks[0].map(Kuid), ks[1].map(Kuid), ks[2].map(Kuid));
        let noop = kr.map_or(true, |k| k == old.uid)
            && ke.map_or(true, |k| k == old.euid && k == old.fsuid)
            && ks.map_or(true, |k| k == old.suid);
        if noop {
            tr!(t.pass(
                f,
                "nothing changes: success without any permission check",
                vec![],
            ));
            return Ok(None);
        }
        let is_new =
            |k: Option<Kuid>| k.is_some_and(|k| k != old.uid && k != old.euid && k != old.suid);
        if is_new(kr) || is_new(ke) || is_new(ks) {
            tr!(t.info(
                f,
                "an id outside {uid, euid, suid} needs CAP_SETUID",
                vec![],
            ));
            if !t.nested(|t| self.ns_capable(t, &old, old.user_ns, Cap::SETUID)) {
                return Err(Errno::EPERM.into());
            }
        } else {
            tr!(t.pass(
                f,
                "every new id is one of the current uid, euid, suid",
                vec![],
            ));
        }
        let mut new = old.clone();
        if let Some(k) = kr {
            new.uid = k;
        }
        if let Some(k) = ke {
            new.euid = k;
        }
        if let Some(k) = ks {
            new.suid = k;
        }
        new.fsuid = new.euid;
        self.fix_setuid(t, &old, &mut new);
        self.commit_creds(t, task, new);
        Ok(None)
    }

    pub(super) fn op_setgid(&mut self, t: &mut Tracer, task: TaskRef, gid: u32) -> OpResult {
        let old = self.task(task).cred.clone();
        let k = Kgid(
            self.make_ids_valid(t, "__sys_setgid", old.user_ns, &[("gid", Some(gid))], false)?[0]
                .unwrap_or(u32::MAX),
        );
        let mut new = old.clone();
        if t.nested(|t| self.ns_capable(t, &old, old.user_ns, Cap::SETGID)) {
            new.gid = k;
            new.egid = k;
            new.sgid = k;
            new.fsgid = k;
        } else if k == old.gid || k == old.sgid {
            tr!(t.pass(
                "__sys_setgid",
                "the new gid is the real or saved gid",
                vec![],
            ));
            new.egid = k;
            new.fsgid = k;
        } else {
            tr!(t.fail(
                "__sys_setgid",
                "without CAP_SETGID the new gid must be the real or saved gid",
                vec![],
            ));
            return Err(Errno::EPERM.into());
        }
        self.commit_creds(t, task, new);
        Ok(None)
    }

    pub(super) fn op_setregid(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        rgid: Option<u32>,
        egid: Option<u32>,
    ) -> OpResult {
        let old = self.task(task).cred.clone();
        let ks = self.make_ids_valid(
            t,
            "__sys_setregid",
            old.user_ns,
            &[("rgid", rgid), ("egid", egid)],
            false,
        )?;
        let (kr, ke) = (ks[0].map(Kgid), ks[1].map(Kgid));
        let mut new = old.clone();
        let mut cap: Option<bool> = None;
        let mut has_cap = |t: &mut Tracer, w: &World| {
            *cap.get_or_insert_with(|| {
                t.nested(|t| w.ns_capable(t, &old, old.user_ns, Cap::SETGID))
            })
        };
        if let Some(k) = kr {
            if k == old.gid || k == old.egid || has_cap(t, self) {
                new.gid = k;
            } else {
                tr!(t.fail(
                    "__sys_setregid",
                    "the new real gid must be the real or effective gid, or CAP_SETGID",
                    vec![],
                ));
                return Err(Errno::EPERM.into());
            }
        }
        if let Some(k) = ke {
            if k == old.gid || k == old.egid || k == old.sgid || has_cap(t, self) {
                new.egid = k;
            } else {
                tr!(t.fail(
                    "__sys_setregid",
                    "the new effective gid must be the real, effective or saved gid, or CAP_SETGID",
                    vec![],
                ));
                return Err(Errno::EPERM.into());
            }
        }
        if kr.is_some() || ke.is_some_and(|k| k != old.gid) {
            new.sgid = new.egid;
        }
        new.fsgid = new.egid;
        tr!(t.pass("__sys_setregid", "permitted", vec![]));
        self.commit_creds(t, task, new);
        Ok(None)
    }

    pub(super) fn op_setresgid(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        rgid: Option<u32>,
        egid: Option<u32>,
        sgid: Option<u32>,
    ) -> OpResult {
        let f = "__sys_setresgid";
        let old = self.task(task).cred.clone();
        let ks = self.make_ids_valid(
            t,
            f,
            old.user_ns,
            &[("rgid", rgid), ("egid", egid), ("sgid", sgid)],
            false,
        )?;
        let (kr, ke, ks) = (ks[0].map(Kgid), ks[1].map(Kgid), ks[2].map(Kgid));
        let noop = kr.map_or(true, |k| k == old.gid)
            && ke.map_or(true, |k| k == old.egid && k == old.fsgid)
            && ks.map_or(true, |k| k == old.sgid);
        if noop {
            tr!(t.pass(
                f,
                "nothing changes: success without any permission check",
                vec![],
            ));
            return Ok(None);
        }
        let is_new =
            |k: Option<Kgid>| k.is_some_and(|k| k != old.gid && k != old.egid && k != old.sgid);
        if is_new(kr) || is_new(ke) || is_new(ks) {
            tr!(t.info(
                f,
                "an id outside {gid, egid, sgid} needs CAP_SETGID",
                vec![],
            ));
            if !t.nested(|t| self.ns_capable(t, &old, old.user_ns, Cap::SETGID)) {
                return Err(Errno::EPERM.into());
            }
        } else {
            tr!(t.pass(
                f,
                "every new id is one of the current gid, egid, sgid",
                vec![],
            ));
        }
        let mut new = old.clone();
        if let Some(k) = kr {
            new.gid = k;
        }
        if let Some(k) = ke {
            new.egid = k;
        }
        if let Some(k) = ks {
            new.sgid = k;
        }
        new.fsgid = new.egid;
        self.commit_creds(t, task, new);
        Ok(None)
    }

    pub(super) fn op_setgroups(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        groups: &[u32],
    ) -> OpResult {
        let f = "may_setgroups";
        let old = self.task(task).cred.clone();
        let ns = self.ns(old.user_ns).clone();
        tr!(t.info(
            f,
            "CAP_SETGID in the caller's namespace, a written gid_map, and setgroups \"allow\"",
            vec![],
        ));
        let ok = t.nested(|t| {
            if !self.ns_capable(t, &old, old.user_ns, Cap::SETGID) {
                return false;
            }
            if !tr!(t.check(
                !ns.gid_map.is_empty(),
                "userns_may_setgroups",
                "the gid_map has been written",
                vec![],
            )) {
                return false;
            }
            tr!(t.check(
                ns.setgroups_allowed,
                "userns_may_setgroups",
                "/proc/PID/setgroups says \"allow\"",
                vec![],
            ))
        });
        if !ok {
            return Err(Errno::EPERM.into());
        }
        if groups.len() > NGROUPS_MAX {
            tr!(t.fail("setgroups", "more than NGROUPS_MAX groups", vec![]));
            return Err(Errno::EINVAL.into());
        }
        let mut ks = Vec::new();
        for g in groups {
            let k = self.make_kgid(old.user_ns, *g);
            if !tr!(t.check(
                k.is_valid(),
                "groups_from_user",
                format!("group {g} must be mapped in the caller's namespace"),
                vec![("gid", g.to_string())],
            )) {
                return Err(Errno::EINVAL.into());
            }
            ks.push(k);
        }
        ks.sort();
        let mut new = old;
        new.groups = ks;
        self.commit_creds(t, task, new);
        Ok(None)
    }
}
