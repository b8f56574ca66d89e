//! `host_admin` (seed 001 §1, §2, §6; seed 000's signal example): capabilities are local to the
//! credentials' own user namespace, and CAP_HOST_ADMIN is a mask that makes them apply across
//! namespaces. A task's CAP_HOST_ADMIN is `Cred::host_admin` (in its effective set and its
//! per-process cap_bset).

use crate::caps::Cap;
use crate::outcome::Tracer;
use crate::world::{Cred, NsRef, World};

use super::Rules;

pub(super) struct HostAdmin;

const F: &str = "host_admin:cap_capable";

impl Rules for HostAdmin {
    /// HA1 "CAP_DAC_OVERRIDE by itself will mean within the same user namespace": in the
    /// credentials' own namespace the effective set decides. HA2 "acts like a mask. If set,
    /// all capabilities apply across namespaces": elsewhere the capability needs
    /// CAP_HOST_ADMIN too. HA3 (choice): no owner rule — the creator of a namespace has no
    /// capability in it by being its creator.
    fn cap_capable(
        &self,
        w: &World,
        t: &mut Tracer,
        cred: &Cred,
        target: NsRef,
        cap: Cap,
    ) -> Option<bool> {
        let has = cred.cap_effective.has(cap);
        let (tn, cn) = (&w.ns(target).name, &w.ns(cred.user_ns).name);
        if target == cred.user_ns {
            return Some(tr!(t.check(
                has,
                F,
                format!("[001 §1] {cap} in \"{tn}\", the credentials' own namespace: the effective set decides"),
                vec![("cap", cap.name()), ("cap_effective", cred.cap_effective.to_string())],
            )));
        }
        let ok = has && cred.host_admin;
        Some(tr!(t.check(
            ok,
            F,
            format!("[001 §1] {cap} in \"{tn}\", not the credentials' namespace \"{cn}\": it applies across namespaces only with CAP_HOST_ADMIN (no owner rule)"),
            vec![
                ("cap", cap.name()),
                ("has_cap", has.to_string()),
                ("cap_host_admin", cred.host_admin.to_string()),
            ],
        )))
    }

    /// HA4 "enforce other userns checks like signaling" (001 §6) and "(0,1) … can't kill tasks
    /// in user_ns 0, even those owned by (500,0), its creator" (000): a uid is a user only
    /// within its namespace, so the uid match of `kill_ok_by_cred` needs the same namespace.
    fn kill_ids_match(&self, w: &World, t: &mut Tracer, c: &Cred, tc: &Cred) -> Option<bool> {
        let same_ns = c.user_ns == tc.user_ns;
        let ids = c.euid == tc.suid || c.euid == tc.uid || c.uid == tc.suid || c.uid == tc.uid;
        Some(tr!(t.check(
            same_ns && ids,
            "host_admin:kill_ok_by_cred",
            "[001 §6] a uid match counts only between tasks of the same user namespace",
            vec![
                ("sender_ns", w.ns(c.user_ns).name.clone()),
                ("target_ns", w.ns(tc.user_ns).name.clone()),
                ("kernel_ids_match", ids.to_string()),
            ],
        )))
    }
}
