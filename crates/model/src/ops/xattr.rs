//! `setxattr(2)`: `user.*`, `trusted.*` and `security.*` through `vfs_setxattr`
//! (`cap_convert_nscap` for `security.capability`, then `xattr_permission`,
//! `cap_inode_setxattr` and the filesystem's handler), and the POSIX ACL names through
//! `do_set_acl` and `vfs_set_acl`.

use credns_idmap::{Errno, Kgid, Kuid};
use serde::Serialize;

use crate::caps::{Cap, CapSet};
use crate::outcome::Tracer;
use crate::vfs::{mode_str, Check, Stop, Vfsgid, Vfsuid, MAY_WRITE};
use crate::world::{
    Acl, AclEntry, AclTag, Cred, FileCaps, InodeRef, MntIdmap, MountRef, NsRef, TaskRef, World,
    S_IFMT, S_ISGID, S_ISVTX,
};

use super::{out, OpResult};

/// `security.capability`.
pub const XATTR_NAME_CAPS: &str = "security.capability";
/// `system.posix_acl_default`.
pub const XATTR_NAME_POSIX_ACL_DEFAULT: &str = "system.posix_acl_default";

/// The value an [`Op::Setxattr`](crate::Op::Setxattr) writes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum XattrValue {
    /// Bytes, for `user.*`, `trusted.*` and `security.*` names but `security.capability`.
    Text(String),
    /// A `security.capability` value of revision `version` (1, 2 or 3; `rootid` only in 3).
    Caps {
        /// 1 (12 bytes), 2 (20 bytes) or 3 (24 bytes).
        version: u32,
        /// The root id of a revision 3 value, in the writer's numbering.
        rootid: u32,
        /// Permitted set.
        permitted: CapSet,
        /// Inheritable set.
        inheritable: CapSet,
        /// `VFS_CAP_FLAGS_EFFECTIVE`.
        effective: bool,
    },
    /// A POSIX ACL (`posix_acl_xattr` version 2), entries in the order written; ids in the
    /// writer's numbering.
    Acl(Vec<XattrAclEntry>),
}

/// One entry of an ACL written as an xattr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct XattrAclEntry {
    /// The tag.
    pub tag: AclTag,
    /// The uid or gid of a named entry, in the writer's numbering.
    pub id: Option<u32>,
    /// rwx bits.
    pub perm: u32,
}

impl World {
    /// `setxattr(path, name, value, size, 0)`.
    pub(super) fn op_setxattr(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        path: &str,
        name: &str,
        value: &XattrValue,
    ) -> OpResult {
        let cred = self.task(task).cred.clone();
        let (m, ino) = self.walk_existing(t, &cred, path)?;
        self.mnt_want_write(t, m)?;
        if let XattrValue::Acl(entries) = value {
            let default = name == XATTR_NAME_POSIX_ACL_DEFAULT;
            return self.do_set_acl(t, &cred, m, ino, default, entries);
        }
        let idmap = self.mount(m).idmap.clone();
        let caps = match value {
            XattrValue::Caps {
                version,
                rootid,
                permitted,
                inheritable,
                effective,
            } => {
                let c = FileCaps {
                    version: *version,
                    rootid: *rootid,
                    permitted: *permitted,
                    inheritable: *inheritable,
                    effective: *effective,
                };
                Some(self.cap_convert_nscap(t, &cred, &idmap, ino, c)?)
            }
            _ => None,
        };
        self.xattr_permission(t, &cred, m, ino, name)?;
        self.cap_inode_setxattr(t, &cred, ino, name)?;
        self.xattr_handler(t, ino, name)?;
        let Some(c) = caps else {
            return Ok(None);
        };
        self.inodes[ino.0].fscaps = Some(c);
        Ok(Some(self.fscaps_as_init_reads(t, ino, c)))
    }

    /// `cap_convert_nscap`: check the header and CAP_SETFCAP, then keep a revision 2 value of
    /// a writer privileged over the filesystem, or store revision 3 with the writer's root
    /// (`make_kuid(current_user_ns(), rootid or 0)`) mapped back into the filesystem.
    fn cap_convert_nscap(
        &self,
        t: &mut Tracer,
        cred: &Cred,
        idmap: &MntIdmap,
        ino: InodeRef,
        c: FileCaps,
    ) -> Result<FileCaps, Stop> {
        let f = "cap_convert_nscap";
        if !tr!(t.check(
            c.version == 2 || c.version == 3,
            f,
            "the value must have a revision 2 or 3 header (validheader)",
            vec![("version", c.version.to_string())],
        )) {
            return Err(Errno::EINVAL.into());
        }
        if !self.capable_wrt_inode_uidgid(t, cred, idmap, ino, Cap::SETFCAP) {
            tr!(t.fail(f, "CAP_SETFCAP over the inode is needed", vec![]));
            return Err(Errno::EPERM.into());
        }
        let fs_ns = self.sb(self.inode(ino).sb).user_ns;
        if c.version == 2
            && matches!(idmap, MntIdmap::Nop)
            && t.nested(|t| self.ns_capable(t, cred, fs_ns, Cap::SETFCAP))
        {
            tr!(t.pass(
                f,
                "revision 2, not idmapped, CAP_SETFCAP in the filesystem's namespace: stored as written",
                vec![],
            ));
            return Ok(FileCaps { rootid: 0, ..c });
        }
        let given = if c.version == 3 { c.rootid } else { 0 };
        let vroot = Vfsuid(self.make_kuid(cred.user_ns, given));
        let back = self.from_vfsuid(idmap, fs_ns, vroot);
        let nsroot = self.from_kuid(fs_ns, back);
        let ok = tr!(t.check(
            vroot.is_valid() && back.is_valid() && nsroot.is_some(),
            "rootid_from_xattr",
            format!(
                "the root id {given} of the writer's namespace \"{}\" must map through the mount into the filesystem",
                self.ns(cred.user_ns).name
            ),
            vec![
                ("vfsrootid", vroot.show()),
                ("kuid", self.show_uid(back)),
                ("rootid_on_disk", nsroot.map(|v| v.to_string()).unwrap_or("-1".into())),
            ],
        ));
        let Some(rootid) = nsroot.filter(|_| ok) else {
            return Err(Errno::EINVAL.into());
        };
        tr!(t.info(f, "stored as revision 3 with that root id", vec![]));
        Ok(FileCaps {
            version: 3,
            rootid,
            ..c
        })
    }

    /// What `getxattr(security.capability)` by root of the initial namespace returns through
    /// the filesystem's own mount (`cap_inode_getsecurity`): revision 3 with the root id
    /// when it is not 0, else revision 2.
    fn fscaps_as_init_reads(&self, t: &mut Tracer, ino: InodeRef, c: FileCaps) -> crate::Output {
        let fs_ns = self.sb(self.inode(ino).sb).user_ns;
        let root = if c.version == 3 { c.rootid } else { 0 };
        let kroot = self.make_kuid(fs_ns, root);
        let (v, r) = if kroot.is_valid() && kroot.0 != 0 {
            ("3", kroot.0)
        } else {
            ("2", 0)
        };
        tr!(t.info(
            "cap_inode_getsecurity",
            "as root of the initial namespace reads it: revision 3 with a root id other than 0, else revision 2",
            vec![("stored_version", c.version.to_string()), ("stored_rootid", c.rootid.to_string())],
        ));
        out(vec![("version", v.into()), ("rootid", r.to_string())])
    }

    /// `may_write_xattr`: not immutable, not append-only, owner and group valid through the
    /// mount.
    fn may_write_xattr(&self, t: &mut Tracer, idmap: &MntIdmap, ino: InodeRef) -> Check {
        let i = self.inode(ino);
        let f = "may_write_xattr";
        if !tr!(t.check(
            !i.immutable && !i.append_only,
            f,
            "the inode must be neither immutable nor append-only",
            vec![
                ("immutable", i.immutable.to_string()),
                ("append_only", i.append_only.to_string())
            ],
        )) {
            return Err(Errno::EPERM.into());
        }
        let (vu, vg) = self.trace_inode_ids(t, idmap, ino, "HAS_UNMAPPED_ID");
        if !tr!(t.check(
            vu.is_valid() && vg.is_valid(),
            f,
            "the owner and group must be valid through the mount (HAS_UNMAPPED_ID)",
            vec![],
        )) {
            return Err(Errno::EPERM.into());
        }
        Ok(())
    }

    /// `xattr_permission(idmap, inode, name, MAY_WRITE)`.
    fn xattr_permission(
        &self,
        t: &mut Tracer,
        cred: &Cred,
        m: MountRef,
        ino: InodeRef,
        name: &str,
    ) -> Check {
        let idmap = self.mount(m).idmap.clone();
        self.may_write_xattr(t, &idmap, ino)?;
        let f = "xattr_permission";
        if name.starts_with("security.") || name.starts_with("system.") {
            tr!(t.pass(
                f,
                "security.* and system.* are left to the filesystem and the security hooks",
                vec![]
            ));
            return Ok(());
        }
        if name.starts_with("trusted.") {
            tr!(t.info(
                f,
                "trusted.* needs CAP_SYS_ADMIN in the initial namespace (capable)",
                vec![]
            ));
            let init = self.init_ns();
            if !t.nested(|t| self.ns_capable(t, cred, init, Cap::SYS_ADMIN)) {
                return Err(Errno::EPERM.into());
            }
            return Ok(());
        }
        if name.starts_with("user.") {
            let mode = self.inode(ino).mode;
            let i = self.inode(ino);
            if !tr!(t.check(
                i.is_reg() || i.is_dir(),
                f,
                "user.* only on regular files and directories",
                vec![("type", format!("{:o}", mode & S_IFMT))],
            )) {
                return Err(Errno::EPERM.into());
            }
            if i.is_dir() && mode & S_ISVTX != 0 {
                tr!(t.info(
                    f,
                    "a sticky directory: user.* needs the owner or CAP_FOWNER",
                    vec![]
                ));
                if !t.nested(|t| self.inode_owner_or_capable(t, cred, &idmap, ino)) {
                    return Err(Errno::EPERM.into());
                }
            }
        }
        tr!(t.info(f, "then write permission on the inode", vec![]));
        t.nested(|t| self.inode_permission(t, cred, m, ino, MAY_WRITE))
    }

    /// `cap_inode_setxattr`: a `security.*` name other than `security.capability` needs
    /// CAP_SYS_ADMIN in the filesystem's namespace.
    fn cap_inode_setxattr(&self, t: &mut Tracer, cred: &Cred, ino: InodeRef, name: &str) -> Check {
        if !name.starts_with("security.") || name == XATTR_NAME_CAPS {
            return Ok(());
        }
        let fs_ns = self.sb(self.inode(ino).sb).user_ns;
        tr!(t.info(
            "cap_inode_setxattr",
            "security.* needs CAP_SYS_ADMIN in the filesystem's namespace",
            vec![],
        ));
        if t.nested(|t| self.ns_capable(t, cred, fs_ns, Cap::SYS_ADMIN)) {
            Ok(())
        } else {
            Err(Errno::EPERM.into())
        }
    }

    /// `__vfs_setxattr`: the filesystem's handler for the name's prefix.
    fn xattr_handler(&self, t: &mut Tracer, ino: InodeRef, name: &str) -> Check {
        let fs_type = &self.sb(self.inode(ino).sb).fs_type;
        if crate::fs_types::fs_type_rules(fs_type).is_none() {
            let why =
                format!("filesystem type \"{fs_type}\" is not modelled: its xattr handlers decide");
            tr!(t.step(
                "__vfs_setxattr",
                why.clone(),
                vec![],
                crate::outcome::StepVerdict::Unknown
            ));
            return Err(Stop::unknown(why));
        }
        let known = ["user.", "trusted.", "security."]
            .iter()
            .any(|p| name.starts_with(p) && name.len() > p.len());
        if !tr!(t.check(
            known,
            "xattr_resolve_name",
            format!("{fs_type} has a handler for user.*, trusted.* and security.*"),
            vec![("name", name.into())],
        )) {
            return Err(Errno::EOPNOTSUPP.into());
        }
        Ok(())
    }

    /// `do_set_acl` and `vfs_set_acl`: ids from the writer's namespace, through the mount
    /// into the filesystem, then `may_write_xattr`, `set_posix_acl` and the filesystem's
    /// `set_acl` (`posix_acl_update_mode` for an access ACL).
    fn do_set_acl(
        &mut self,
        t: &mut Tracer,
        cred: &Cred,
        m: MountRef,
        ino: InodeRef,
        default: bool,
        entries: &[XattrAclEntry],
    ) -> OpResult {
        let idmap = self.mount(m).idmap.clone();
        let acl = self.posix_acl_from_xattr(t, cred, &idmap, ino, entries)?;
        self.may_write_xattr(t, &idmap, ino)?;
        let i = self.inode(ino);
        let sb = self.sb(i.sb);
        if !tr!(t.check(
            sb.posix_acl,
            "set_posix_acl",
            "the filesystem must support POSIX ACLs",
            vec![]
        )) {
            return Err(Errno::EOPNOTSUPP.into());
        }
        if default && !i.is_dir() {
            tr!(t.fail("set_posix_acl", "a default ACL only on a directory", vec![]));
            return Err(Errno::EACCES.into());
        }
        tr!(t.info(
            "set_posix_acl",
            "setting an ACL needs the owner or CAP_FOWNER",
            vec![]
        ));
        if !t.nested(|t| self.inode_owner_or_capable(t, cred, &idmap, ino)) {
            return Err(Errno::EPERM.into());
        }
        let fs_ns = sb.user_ns;
        self.posix_acl_valid(t, fs_ns, &acl)?;
        if default {
            self.inodes[ino.0].default_acl = Some(acl.clone());
            return Ok(Some(out(vec![(
                "acl",
                self.acl_on_disk(fs_ns, Some(&acl)),
            )])));
        }
        let mut mode = (i.mode & !0o777) | acl.mode_bits();
        let vg: Vfsgid = self.i_gid_into_vfsgid(&idmap, ino);
        if !t.nested(|t| self.in_group_or_capable(t, cred, &idmap, ino, vg)) {
            mode &= !S_ISGID;
        }
        let keep = !acl.is_minimal();
        tr!(t.info(
            "posix_acl_update_mode",
            "the mode follows the ACL; an ACL equivalent to the mode is not stored; S_ISGID only for the group or CAP_FSETID",
            vec![("mode", mode_str(mode)), ("stored", keep.to_string())],
        ));
        self.inodes[ino.0].mode = mode;
        self.inodes[ino.0].acl = keep.then_some(acl.clone());
        let shown = self.acl_on_disk(fs_ns, keep.then_some(&acl));
        Ok(Some(out(vec![("mode", mode_str(mode)), ("acl", shown)])))
    }

    /// `posix_acl_from_xattr` (ids: `make_kuid(current_user_ns(), id)`) and
    /// `vfs_set_acl_idmapped_mnt` (through the mount back into the filesystem).
    fn posix_acl_from_xattr(
        &self,
        t: &mut Tracer,
        cred: &Cred,
        idmap: &MntIdmap,
        ino: InodeRef,
        entries: &[XattrAclEntry],
    ) -> Result<Acl, Stop> {
        let fs_ns = self.sb(self.inode(ino).sb).user_ns;
        let mut out = Vec::new();
        for e in entries {
            let id = match (e.tag, e.id) {
                (AclTag::User, Some(u)) => {
                    let k = self.make_kuid(cred.user_ns, u);
                    let back = self.from_vfsuid(idmap, fs_ns, Vfsuid(k));
                    self.acl_id_check(t, "user", u, k.is_valid(), back.is_valid(), back.0)?
                }
                (AclTag::Group, Some(g)) => {
                    let k = self.make_kgid(cred.user_ns, g);
                    let back = self.from_vfsgid(idmap, fs_ns, Vfsgid(k));
                    self.acl_id_check(t, "group", g, k.is_valid(), back.is_valid(), back.0)?
                }
                _ => None,
            };
            out.push(AclEntry {
                tag: e.tag,
                id,
                perm: e.perm,
            });
        }
        Ok(Acl(out))
    }

    fn acl_id_check(
        &self,
        t: &mut Tracer,
        what: &str,
        id: u32,
        in_ns: bool,
        through: bool,
        k: u32,
    ) -> Result<Option<u32>, Stop> {
        if !tr!(t.check(
            in_ns,
            "posix_acl_from_xattr",
            format!("{what} {id} must be mapped in the writer's namespace"),
            vec![],
        )) {
            return Err(Errno::EINVAL.into());
        }
        // vfs_set_acl_idmapped_mnt does not fail: an id the mount cannot map back becomes
        // INVALID, which posix_acl_valid refuses after the ownership checks.
        tr!(t.info(
            "vfs_set_acl_idmapped_mnt",
            format!("{what} {id} through the mount into the filesystem"),
            vec![(
                "kid",
                if through {
                    k.to_string()
                } else {
                    "INVALID".into()
                }
            )],
        ));
        Ok(Some(if through { k } else { u32::MAX }))
    }

    /// `posix_acl_valid(s_user_ns, acl)`: tags in order (`user::`, `user:`…, `group::`,
    /// `group:`…, `mask::`, `other::`), a mask when there are named entries, named ids mapped
    /// in the filesystem's namespace.
    fn posix_acl_valid(&self, t: &mut Tracer, fs_ns: NsRef, acl: &Acl) -> Check {
        let ok = acl_order_ok(acl)
            && acl.0.iter().all(|e| match (e.tag, e.id) {
                (AclTag::User, Some(k)) => self.kuid_has_mapping(fs_ns, Kuid(k)),
                (AclTag::Group, Some(k)) => self.kgid_has_mapping(fs_ns, Kgid(k)),
                _ => true,
            });
        if tr!(t.check(
            ok,
            "posix_acl_valid",
            "entries in order, a mask with named entries, named ids mapped in the filesystem's namespace",
            vec![],
        )) {
            Ok(())
        } else {
            Err(Errno::EINVAL.into())
        }
    }

    /// An ACL as `getfacl -n` shows it on the filesystem's own mount (ids on disk), or `none`.
    fn acl_on_disk(&self, fs_ns: NsRef, acl: Option<&Acl>) -> String {
        let Some(acl) = acl else {
            return "none".into();
        };
        acl.0
            .iter()
            .map(|e| {
                let id = match (e.tag, e.id) {
                    (AclTag::User, Some(k)) => self.show_in(fs_ns, k, true),
                    (AclTag::Group, Some(k)) => self.show_in(fs_ns, k, false),
                    _ => String::new(),
                };
                format!("{}:{id}:{}", acl_tag_letter(e.tag), perm_str(e.perm))
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The letter `getfacl` uses for a tag.
pub fn acl_tag_letter(tag: AclTag) -> char {
    match tag {
        AclTag::UserObj | AclTag::User => 'u',
        AclTag::GroupObj | AclTag::Group => 'g',
        AclTag::Mask => 'm',
        AclTag::Other => 'o',
    }
}

/// `rwx` bits as `r-x`.
pub fn perm_str(p: u32) -> String {
    [(4, 'r'), (2, 'w'), (1, 'x')]
        .iter()
        .map(|(b, c)| if p & b != 0 { *c } else { '-' })
        .collect()
}

/// The state machine of `posix_acl_valid`.
fn acl_order_ok(acl: &Acl) -> bool {
    // 0 user::, 1 user:, 2 group:, 3 after mask, 4 done.
    let mut state = 0;
    let mut needs_mask = false;
    for e in &acl.0 {
        if e.perm > 7 {
            return false;
        }
        state = match (e.tag, state) {
            (AclTag::UserObj, 0) => 1,
            (AclTag::User, 1) => {
                needs_mask = true;
                1
            }
            (AclTag::GroupObj, 1) => 2,
            (AclTag::Group, 2) => {
                needs_mask = true;
                2
            }
            (AclTag::Mask, 2) => 3,
            (AclTag::Other, 3) => 4,
            (AclTag::Other, 2) if !needs_mask => 4,
            _ => return false,
        };
    }
    state == 4
}
