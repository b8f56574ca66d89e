//! Capabilities across namespaces: `cap_capable` (security/commoncap.c) and the wrappers of
//! kernel/capability.c and fs/inode.c.

use credns_idmap::{Kgid, Kuid};

use crate::caps::Cap;
use crate::outcome::Tracer;
use crate::vfs::Vfsgid;
use crate::world::{Cred, InodeRef, MntIdmap, NsRef, World};

impl World {
    /// `cap_capable(cred, target_ns, cap)`: walk from `target` up towards the credentials'
    /// namespace. Records one step per namespace visited.
    pub(crate) fn cap_capable(&self, t: &mut Tracer, cred: &Cred, target: NsRef, cap: Cap) -> bool {
        if let Some(ok) = self.proposal(|p| p.cap_capable(self, t, cred, target, cap)) {
            return ok;
        }
        let f = "cap_capable";
        let cns = cred.user_ns;
        let mut ns = target;
        loop {
            let n = self.ns(ns);
            if ns == cns {
                let ok = cred.cap_effective.has(cap);
                return tr!(t.check(
                    ok,
                    f,
                    format!(
                        "{cap} in \"{}\": the credentials live here, so the effective set decides",
                        n.name
                    ),
                    vec![
                        ("cap", cap.name()),
                        ("ns", n.name.clone()),
                        ("cap_effective", cred.cap_effective.to_string()),
                    ],
                ));
            }
            let cn = self.ns(cns);
            if n.level <= cn.level {
                tr!(t.fail(
                    f,
                    format!(
                        "{cap} in \"{}\": not the credentials' namespace \"{}\" nor a descendant of it (capabilities never apply upward or sideways)",
                        n.name, cn.name
                    ),
                    vec![("cap", cap.name()), ("ns", n.name.clone()), ("ns_level", n.level.to_string()), ("cred_ns", cn.name.clone()), ("cred_level", cn.level.to_string())],
                ));
                return false;
            }
            if n.parent == Some(cns) && n.owner == cred.euid {
                tr!(t.pass(
                    f,
                    format!(
                        "{cap} in \"{}\": the credentials' euid owns \"{}\" and live in its parent \"{}\", so they have every capability there",
                        self.ns(target).name, n.name, cn.name
                    ),
                    vec![("cap", cap.name()), ("ns", n.name.clone()), ("owner", n.owner.0.to_string()), ("euid", cred.euid.0.to_string())],
                ));
                return true;
            }
            tr!(t.info(
                f,
                format!("\"{}\" is below the credentials' namespace and not owned by them from its parent; go to its parent", n.name),
                vec![("ns", n.name.clone()), ("owner", n.owner.0.to_string()), ("euid", cred.euid.0.to_string())],
            ));
            ns = n.parent.expect("a namespace above level 0 has a parent");
        }
    }

    /// `ns_capable(ns, cap)` for the given credentials.
    pub(crate) fn ns_capable(&self, t: &mut Tracer, cred: &Cred, ns: NsRef, cap: Cap) -> bool {
        tr!(t.info(
            "ns_capable",
            format!("needs {cap} in \"{}\"", self.ns(ns).name),
            vec![],
        ));
        t.nested(|t| self.cap_capable(t, cred, ns, cap))
    }

    /// `privileged_wrt_inode_uidgid(ns, idmap, inode)`: the inode's vfsuid and vfsgid are both
    /// mapped in `ns`.
    pub(crate) fn privileged_wrt_inode_uidgid(
        &self,
        t: &mut Tracer,
        ns: NsRef,
        idmap: &MntIdmap,
        ino: InodeRef,
    ) -> bool {
        let vu = self.i_uid_into_vfsuid(idmap, ino);
        let vg = self.i_gid_into_vfsgid(idmap, ino);
        let uok = self.vfsuid_has_mapping(ns, vu);
        let gok = self.vfsgid_has_mapping(ns, vg);
        let n = &self.ns(ns).name;
        tr!(t.check(
            uok && gok,
            "privileged_wrt_inode_uidgid",
            format!("the inode's owner and group must both be mapped in \"{n}\""),
            vec![
                ("vfsuid", vu.show()),
                ("uid_in_ns", self.show_in(ns, vu.0 .0, true)),
                ("vfsgid", vg.show()),
                ("gid_in_ns", self.show_in(ns, vg.0 .0, false)),
            ],
        ))
    }

    /// `capable_wrt_inode_uidgid(idmap, inode, cap)`: `cap` in the caller's own namespace and
    /// the inode's ids mapped there (no owner rule reaches here: the walk starts at the
    /// caller's namespace).
    pub(crate) fn capable_wrt_inode_uidgid(
        &self,
        t: &mut Tracer,
        cred: &Cred,
        idmap: &MntIdmap,
        ino: InodeRef,
        cap: Cap,
    ) -> bool {
        tr!(t.info(
            "capable_wrt_inode_uidgid",
            format!("needs {cap} in the caller's own namespace and the inode's ids mapped there"),
            vec![],
        ));
        t.nested(|t| {
            self.ns_capable(t, cred, cred.user_ns, cap)
                && self.privileged_wrt_inode_uidgid(t, cred.user_ns, idmap, ino)
        })
    }

    /// `inode_owner_or_capable(idmap, inode)`.
    pub(crate) fn inode_owner_or_capable(
        &self,
        t: &mut Tracer,
        cred: &Cred,
        idmap: &MntIdmap,
        ino: InodeRef,
    ) -> bool {
        let f = "inode_owner_or_capable";
        let vu = self.i_uid_into_vfsuid(idmap, ino);
        if vu.eq_kuid(cred.fsuid) {
            tr!(t.pass(
                f,
                "the caller's fsuid owns the inode",
                vec![("vfsuid", vu.show()), ("fsuid", cred.fsuid.0.to_string())],
            ));
            return true;
        }
        let mapped = self.vfsuid_has_mapping(cred.user_ns, vu);
        tr!(t.check(
            mapped,
            f,
            format!("not the owner; the owner must be mapped in the caller's namespace \"{}\" for CAP_FOWNER to apply", self.ns(cred.user_ns).name),
            vec![("vfsuid", vu.show()), ("fsuid", cred.fsuid.0.to_string())],
        ));
        if !mapped {
            return false;
        }
        t.nested(|t| self.ns_capable(t, cred, cred.user_ns, Cap::FOWNER))
    }

    /// `in_group_p(gid)`: the fsgid, then the supplementary groups.
    pub(crate) fn in_group_p(&self, cred: &Cred, g: Kgid) -> bool {
        g.is_valid() && (cred.fsgid == g || cred.groups.binary_search(&g).is_ok())
    }

    /// `vfsgid_in_group_p`, traced.
    pub(crate) fn vfsgid_in_group_p(
        &self,
        t: &mut Tracer,
        cred: &Cred,
        vg: Vfsgid,
        what: &str,
    ) -> bool {
        let ok = vg.is_valid() && self.in_group_p(cred, vg.0);
        tr!(t.check(
            ok,
            "in_group_p",
            format!("{what} is the caller's fsgid or one of its supplementary groups"),
            vec![
                ("vfsgid", vg.show()),
                ("fsgid", cred.fsgid.0.to_string()),
                ("groups", show_groups(&cred.groups)),
            ],
        ));
        ok
    }

    /// `in_group_or_capable(idmap, inode, vfsgid)`.
    pub(crate) fn in_group_or_capable(
        &self,
        t: &mut Tracer,
        cred: &Cred,
        idmap: &MntIdmap,
        ino: InodeRef,
        vg: Vfsgid,
    ) -> bool {
        tr!(t.info(
            "in_group_or_capable",
            "in the group, or CAP_FSETID over the inode",
            vec![],
        ));
        t.nested(|t| {
            self.vfsgid_in_group_p(t, cred, vg, "the group")
                || self.capable_wrt_inode_uidgid(t, cred, idmap, ino, Cap::FSETID)
        })
    }

    /// The id `k` as namespace `ns` shows it, or "unmapped".
    pub(crate) fn show_in(&self, ns: NsRef, k: u32, uid: bool) -> String {
        let v = if uid {
            self.from_kuid(ns, Kuid(k))
        } else {
            self.from_kgid(ns, Kgid(k))
        };
        match v {
            Some(v) => v.to_string(),
            None => "unmapped".into(),
        }
    }
}

pub(crate) fn show_groups(g: &[Kgid]) -> String {
    if g.is_empty() {
        return "none".into();
    }
    g.iter()
        .map(|g| g.0.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Query helper for tests and the public API: does `cred` have `cap` in `ns` (`ns_capable`)?
pub fn has_ns_capability(world: &World, cred: &Cred, ns: NsRef, cap: Cap) -> bool {
    let mut t = Tracer::default();
    world.cap_capable(&mut t, cred, ns, cap)
}
