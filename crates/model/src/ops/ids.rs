//! Credentials as another namespace sees them: `getresuid`, `/proc/PID/status`,
//! `SO_PEERCRED` all show kernel ids through the reader's namespace (`from_kuid_munged`).

use credns_idmap::{Kgid, Kuid};

use crate::capability::show_groups;
use crate::outcome::{Output, Tracer};
use crate::world::{Cred, NsRef, TaskRef, World};

use super::{out, OpResult};

impl World {
    pub(super) fn cred_values(&self, task: TaskRef) -> Vec<(&'static str, String)> {
        let c = &self.task(task).cred;
        vec![
            (
                "uid",
                format!("{}/{}/{}/{}", c.uid.0, c.euid.0, c.suid.0, c.fsuid.0),
            ),
            (
                "gid",
                format!("{}/{}/{}/{}", c.gid.0, c.egid.0, c.sgid.0, c.fsgid.0),
            ),
            ("groups", show_groups(&c.groups)),
            ("cap_effective", c.cap_effective.to_string()),
        ]
    }

    /// The ids of `c` as a reader in `view` sees them (`from_k*id_munged`), traced.
    pub(super) fn render_cred(&self, t: &mut Tracer, view: NsRef, c: &Cred, caps: bool) -> Output {
        let u = |k: Kuid| self.from_kuid_munged(view, k).to_string();
        let g = |k: Kgid| self.from_kgid_munged(view, k).to_string();
        let groups: Vec<String> = c.groups.iter().map(|k| g(*k)).collect();
        let mut v = vec![
            ("uid", u(c.uid)),
            ("euid", u(c.euid)),
            ("suid", u(c.suid)),
            ("fsuid", u(c.fsuid)),
            ("gid", g(c.gid)),
            ("egid", g(c.egid)),
            ("sgid", g(c.sgid)),
            ("fsgid", g(c.fsgid)),
            (
                "groups",
                if groups.is_empty() {
                    "none".into()
                } else {
                    groups.join(",")
                },
            ),
        ];
        if caps {
            v.push(("CapInh", format!("{:016x}", c.cap_inheritable.bits())));
            v.push(("CapPrm", format!("{:016x}", c.cap_permitted.bits())));
            v.push(("CapEff", format!("{:016x}", c.cap_effective.bits())));
            v.push(("CapBnd", format!("{:016x}", c.cap_bset.bits())));
            v.push(("CapAmb", format!("{:016x}", c.cap_ambient.bits())));
        }
        tr!(t.info(
            "from_kuid_munged",
            format!(
                "kernel ids shown in \"{}\" (unmapped ids show as {})",
                self.ns(view).name,
                self.overflowuid
            ),
            vec![
                (
                    "kuids",
                    format!("{}/{}/{}/{}", c.uid.0, c.euid.0, c.suid.0, c.fsuid.0),
                ),
                (
                    "kgids",
                    format!("{}/{}/{}/{}", c.gid.0, c.egid.0, c.sgid.0, c.fsgid.0),
                ),
            ],
        ));
        out(v)
    }

    pub(super) fn op_proc_status(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        target: TaskRef,
    ) -> OpResult {
        let view = self.task(task).cred.user_ns;
        let c = self.task(target).cred.clone();
        tr!(t.info(
            "proc_pid_status",
            format!(
                "ids translated through the reader's namespace \"{}\" (seq_user_ns)",
                self.ns(view).name
            ),
            vec![],
        ));
        Ok(Some(self.render_cred(t, view, &c, true)))
    }

    pub(super) fn op_peercred(&mut self, t: &mut Tracer, task: TaskRef, peer: TaskRef) -> OpResult {
        let view = self.task(task).cred.user_ns;
        let c = self.task(peer).cred.clone();
        let uid = self.from_kuid_munged(view, c.euid);
        let gid = self.from_kgid_munged(view, c.egid);
        tr!(t.info(
            "cred_to_ucred",
            format!(
                "the peer's euid/egid shown in the reader's namespace \"{}\"",
                self.ns(view).name
            ),
            vec![
                ("peer_euid", c.euid.0.to_string()),
                ("peer_egid", c.egid.0.to_string()),
                ("uid", uid.to_string()),
                ("gid", gid.to_string()),
            ],
        ));
        Ok(Some(out(vec![
            ("uid", uid.to_string()),
            ("gid", gid.to_string()),
        ])))
    }
}
