//! `posix_acl_create`: a new inode in a directory with a default ACL takes its access ACL
//! from that default ACL, masked by the create mode (`posix_acl_create_masq`), and the umask
//! is not applied; a new directory also inherits the default ACL itself.

use crate::outcome::Tracer;
use crate::vfs::mode_str;
use crate::world::{Acl, AclTag, InodeRef, World};

/// What `posix_acl_create` gives the new inode.
pub(super) struct AclCreate {
    /// The new `i_mode`.
    pub mode: u32,
    /// The access ACL (`None` when `posix_acl_create_masq` found it equivalent to the mode).
    pub acl: Option<Acl>,
    /// The default ACL a new directory inherits.
    pub default_acl: Option<Acl>,
}

impl World {
    /// `posix_acl_create(dir, &mode)` with the directory's default ACL (`None`: the umask was
    /// already applied and nothing is inherited).
    pub(super) fn posix_acl_create(
        &self,
        t: &mut Tracer,
        pdir: InodeRef,
        mode: u32,
        dir: bool,
    ) -> AclCreate {
        // IS_POSIXACL(dir): without SB_POSIXACL the default ACL is never read.
        let posix_acl = self.sb(self.inode(pdir).sb).posix_acl;
        let Some(def) = self.inode(pdir).default_acl.clone().filter(|_| posix_acl) else {
            return AclCreate {
                mode,
                acl: None,
                default_acl: None,
            };
        };
        let (acl, mode) = posix_acl_create_masq(def.clone(), mode);
        let keep = !acl.is_minimal();
        tr!(t.info(
            "posix_acl_create_masq",
            "the directory's default ACL masked by the create mode (the umask is not applied); stored as the access ACL unless only user::, group:: and other:: remain",
            vec![
                ("mode", mode_str(mode)),
                ("access_acl", keep.to_string()),
                ("inherits_default", dir.to_string()),
            ],
        ));
        AclCreate {
            mode,
            acl: keep.then_some(acl),
            default_acl: dir.then_some(def),
        }
    }
}

/// `posix_acl_create_masq`: `user::` and `other::` are cut to the mode's owner and other
/// bits and cut them in turn; the mask (or, without one, `group::`) likewise with the group
/// bits. Set-id, sticky and type bits stay.
fn posix_acl_create_masq(mut acl: Acl, mode_p: u32) -> (Acl, u32) {
    let mut mode = mode_p;
    let has_mask = acl.0.iter().any(|e| e.tag == AclTag::Mask);
    for e in acl.0.iter_mut() {
        match e.tag {
            AclTag::UserObj => {
                e.perm &= (mode >> 6) & 7;
                mode &= (e.perm << 6) | !0o700;
            }
            AclTag::Other => {
                e.perm &= mode & 7;
                mode &= e.perm | !0o007;
            }
            // The group bits are settled after the loop, by the mask or group::.
            _ => {}
        }
    }
    let group_tag = if has_mask {
        AclTag::Mask
    } else {
        AclTag::GroupObj
    };
    if let Some(e) = acl.0.iter_mut().find(|e| e.tag == group_tag) {
        e.perm &= (mode >> 3) & 7;
        mode &= (e.perm << 3) | !0o070;
    }
    (acl, (mode_p & !0o777) | (mode & 0o777))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::AclEntry;

    fn e(tag: AclTag, id: Option<u32>, perm: u32) -> AclEntry {
        AclEntry { tag, id, perm }
    }

    #[test]
    fn masq_cuts_entries_and_mode_both_ways() {
        let acl = Acl(vec![
            e(AclTag::UserObj, None, 7),
            e(AclTag::User, Some(1000), 7),
            e(AclTag::GroupObj, None, 5),
            e(AclTag::Mask, None, 7),
            e(AclTag::Other, None, 0),
        ]);
        let (a, m) = posix_acl_create_masq(acl, 0o100644);
        assert_eq!(m, 0o100640);
        let perms: Vec<u32> = a.0.iter().map(|x| x.perm).collect();
        // user:: 7&6, named user untouched, group:: untouched (a mask exists), mask 7&4.
        assert_eq!(perms, vec![6, 7, 5, 4, 0]);
    }

    #[test]
    fn masq_without_mask_cuts_group_obj() {
        let acl = Acl(vec![
            e(AclTag::UserObj, None, 5),
            e(AclTag::GroupObj, None, 7),
            e(AclTag::Other, None, 1),
        ]);
        let (a, m) = posix_acl_create_masq(acl, 0o42777);
        assert_eq!(m, 0o42571);
        assert!(a.is_minimal());
    }
}
