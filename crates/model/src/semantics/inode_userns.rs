//! `inode_userns` (seed 001 §4, seed 000's file rules): every inode belongs to a user
//! namespace; a file is owned by its owner there and, at each level above, by the creator of
//! the namespace below ("owned by both (501,1) and (500,0)"). The access algorithm of 001 §4
//! replaces `generic_permission`; set-id files give their owner as seen at the caller's level.

use credns_idmap::{Errno, Kgid, Kuid};

use crate::caps::Cap;
use crate::outcome::{StepVerdict, Tracer};
use crate::vfs::{granted_to_all, mask_str, mode_str, Check, Stop};
use crate::world::{Cred, InodeRef, Mount, MountRef, NsRef, World};

use super::{keychain, Proposal, Rules};

pub(super) struct InodeUserns;

const F: &str = "inode_userns:permission";

/// `(namespace, id there)` at each level from the inode's namespace up to the initial one:
/// the owner (or group) in its own namespace, then the creator of each namespace in its
/// parent. Stops where an id is not mapped.
pub(super) fn chain(w: &World, ino: InodeRef, uid: bool) -> Vec<(NsRef, u32)> {
    let i = w.inode(ino);
    let mut ns = w.inode_userns(ino);
    let mut k = if uid { i.uid.0 } else { i.gid.0 };
    let mut out = Vec::new();
    loop {
        let here = if uid {
            w.from_kuid(ns, Kuid(k))
        } else {
            w.from_kgid(ns, Kgid(k))
        };
        let Some(v) = here else { break };
        out.push((ns, v));
        let n = w.ns(ns);
        let Some(p) = n.parent else { break };
        k = if uid { n.owner.0 } else { n.group.0 };
        ns = p;
    }
    out
}

pub(super) fn show_chain(w: &World, c: &[(NsRef, u32)]) -> String {
    if c.is_empty() {
        return "unmapped".into();
    }
    c.iter()
        .map(|(n, v)| format!("({v},{})", w.ns(*n).name))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The class whose bits decide, as the permission check found it.
#[derive(Clone, Copy)]
enum Class {
    Owner,
    Group,
    Other,
}

fn class_bits(t: &mut Tracer, class: Class, mode: u32, want: u32, why: String) -> Check {
    let (shift, name) = match class {
        Class::Owner => (6, "owner"),
        Class::Group => (3, "group"),
        Class::Other => (0, "other"),
    };
    let bits = (mode >> shift) & 7;
    let ok = want & !bits == 0;
    tr!(t.check(
        ok,
        F,
        format!("{why}: the {name} bits decide"),
        vec![("want", mask_str(want)), ("bits", mask_str(bits))],
    ));
    if ok {
        Ok(())
    } else {
        Err(Errno::EACCES.into())
    }
}

impl Rules for InodeUserns {
    fn inode_permission(
        &self,
        w: &World,
        t: &mut Tracer,
        cred: &Cred,
        _m: MountRef,
        ino: InodeRef,
        mask: u32,
    ) -> Option<Check> {
        Some(permission(w, t, cred, ino, mask))
    }

    /// IU5 "If (0,0) executes a setuid-(0,1) file, it will do so as a setuid(500,0) file":
    /// the new euid (egid) is the file's owner (group) at the caller's level of the chain;
    /// a caller whose namespace is not on the chain gets no set-id (choice).
    fn setid_ids(
        &self,
        w: &World,
        t: &mut Tracer,
        old: &Cred,
        _mnt: &Mount,
        ino: InodeRef,
    ) -> Option<Option<(Kuid, Kgid)>> {
        let ns = old.user_ns;
        let (uc, gc) = (chain(w, ino, true), chain(w, ino, false));
        let u = uc
            .iter()
            .find(|(n, _)| *n == ns)
            .map(|(_, v)| w.make_kuid(ns, *v));
        let g = gc
            .iter()
            .find(|(n, _)| *n == ns)
            .map(|(_, v)| w.make_kgid(ns, *v));
        let ok = u.is_some() && g.is_some();
        tr!(t.check(
            ok,
            "inode_userns:bprm_fill_uid",
            format!(
                "[000] the set-id owner is the file's owner as seen at the caller's level \"{}\"",
                w.ns(ns).name
            ),
            vec![
                ("owner_chain", show_chain(w, &uc)),
                ("group_chain", show_chain(w, &gc)),
            ],
        ));
        Some(match (u, g) {
            (Some(u), Some(g)) => Some((u, g)),
            _ => None,
        })
    }

    /// IU0: a file created by a task belongs to the task's namespace ("If (501,1) creates a
    /// file … it is owned by both (501,1) and (500,0)").
    fn inode_created(&self, w: &mut World, ino: InodeRef, cred: &Cred) {
        w.decl.inode_ns.insert(ino, cred.user_ns);
    }
}

/// The access algorithm of 001 §4, with 000's levels and the keychain line.
fn permission(w: &World, t: &mut Tracer, cred: &Cred, ino: InodeRef, mask: u32) -> Check {
    let i = w.inode(ino);
    let want = mask & 7;
    let has_acl = w.sb(i.sb).posix_acl && i.acl.is_some();
    // IU0' (choice): every way through the algorithm ends in "allow" or one class's bits, so
    // when every class grants the request the answer is known; this is mainline's first test,
    // kept under its name so that a comparison parts where the answers can differ.
    if granted_to_all(i.mode, want, has_acl) {
        tr!(t.pass(
            "acl_permission_check",
            "every class (owner, group, other) grants the request and there is no ACL",
            vec![("want", mask_str(want)), ("mode", mode_str(i.mode))],
        ));
        return Ok(());
    }
    if has_acl {
        let why = "the inode has a POSIX ACL, and seed 001's access algorithm does not say where ACL entries apply".to_string();
        tr!(t.step(F, why.clone(), vec![], StepVerdict::Unknown));
        return Err(Stop::unknown(why));
    }
    let owners = chain(w, ino, true);
    tr!(t.info(
        F,
        format!(
            "{} on an inode of namespace \"{}\" mode {}, by a task of \"{}\"",
            mask_str(want),
            w.ns(w.inode_userns(ino)).name,
            mode_str(i.mode),
            w.ns(cred.user_ns).name
        ),
        vec![("owners", show_chain(w, &owners))],
    ));
    if overrides(w, t, cred, ino) {
        return Ok(());
    }
    let class = if is_owner(w, t, cred, &owners) {
        (Class::Owner, "owner")
    } else if w.semantics.has(Proposal::Keychain) && keychain::holds_owner(w, t, cred, &owners) {
        (Class::Owner, "owner by keychain")
    } else if in_group(w, t, cred, ino) {
        (Class::Group, "group")
    } else {
        // IU6 "treat as user 'other'" / 000 "cross-userns access defaults to user-other".
        (Class::Other, "[001 §4] otherwise 'other'")
    };
    class_bits(t, class.0, i.mode, want, class.1.into())
}

/// IU1 "if capable(CAP_HOST_ADMIN|CAP_DAC_OVERRIDE) allow", then IU2 "if
/// current->userns==inode->userns { if capable(CAP_DAC_OVERRIDE) allow".
fn overrides(w: &World, t: &mut Tracer, cred: &Cred, ino: InodeRef) -> bool {
    if w.semantics.has(Proposal::HostAdmin) {
        let ok = cred.host_admin && cred.cap_effective.has(Cap::DAC_OVERRIDE);
        if tr!(t.check(
            ok,
            F,
            "[001 §4] CAP_HOST_ADMIN|CAP_DAC_OVERRIDE overrides every userns check",
            vec![("cap_host_admin", cred.host_admin.to_string())],
        )) {
            return true;
        }
    } else {
        tr!(t.info(
            F,
            "[001 §4] the CAP_HOST_ADMIN|CAP_DAC_OVERRIDE line needs semantics host_admin; skipped",
            vec![],
        ));
    }
    if w.inode_userns(ino) != cred.user_ns {
        return false;
    }
    tr!(t.check(
        cred.cap_effective.has(Cap::DAC_OVERRIDE),
        F,
        "[001 §4] same namespace: CAP_DAC_OVERRIDE there overrides",
        vec![("cap_effective", cred.cap_effective.to_string())],
    ))
}

/// IU3 "current->uid==inode->i_uid allow as owner", at the caller's level (000: "file access
/// may be granted at any level in the userns hierarchy").
fn is_owner(w: &World, t: &mut Tracer, cred: &Cred, owners: &[(NsRef, u32)]) -> bool {
    let cns = cred.user_ns;
    let me = w.from_kuid(cns, cred.fsuid);
    let here = owners.iter().find(|(n, _)| *n == cns).map(|(_, v)| *v);
    tr!(t.check(
        here.is_some() && here == me,
        F,
        format!(
            "[001 §4, 000] the caller's uid is the file's owner at its level \"{}\"",
            w.ns(cns).name
        ),
        vec![
            ("uid", me.map_or("unmapped".into(), |v| v.to_string())),
            ("owner_here", here.map_or("none".into(), |v| v.to_string())),
        ],
    ))
}

/// IU3' "uid==inode->i_gid in current's groups allow as group", at the caller's level.
fn in_group(w: &World, t: &mut Tracer, cred: &Cred, ino: InodeRef) -> bool {
    let cns = cred.user_ns;
    let groups = chain(w, ino, false);
    let here = groups
        .iter()
        .find(|(n, _)| *n == cns)
        .map(|(_, v)| w.make_kgid(cns, *v));
    tr!(t.check(
        here.is_some_and(|g| w.in_group_p(cred, g)),
        F,
        "[001 §4, 000] the file's group at the caller's level is the fsgid or a supplementary group",
        vec![("groups_chain", show_chain(w, &groups))],
    ))
}
