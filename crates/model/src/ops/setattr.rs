//! Changing an inode's attributes: `chmod` and `chown` through `notify_change`,
//! `setattr_prepare` and `setattr_copy`.

use crate::caps::Cap;
use crate::outcome::Tracer;
use crate::vfs::{mode_str, Check, Stop, Vfsgid, Vfsuid};
use crate::world::{
    AclTag, Cred, InodeRef, MntIdmap, NsRef, TaskRef, World, S_IFMT, S_ISGID, S_ISUID, S_IXGRP,
};
use credns_idmap::Errno;
use credns_idmap::{Kgid, Kuid};

use super::{opt_id, out, OpResult};

impl World {
    /// `notify_change`'s EOVERFLOW checks for ids that are not being changed.
    pub(super) fn setattr_unmapped_check(
        &self,
        t: &mut Tracer,
        idmap: &MntIdmap,
        ino: InodeRef,
        uid_changes: bool,
        gid_changes: bool,
    ) -> Check {
        let (vu, vg) = self.trace_inode_ids(t, idmap, ino, "notify_change");
        if !uid_changes {
            let ok = tr!(t.check(
                vu.is_valid(),
                "notify_change",
                "the owner is not being changed, so it must be valid through the mount",
                vec![("vfsuid", vu.show())],
            ));
            if !ok {
                return Err(Errno::EOVERFLOW.into());
            }
        }
        if !gid_changes {
            let ok = tr!(t.check(
                vg.is_valid(),
                "notify_change",
                "the group is not being changed, so it must be valid through the mount",
                vec![("vfsgid", vg.show())],
            ));
            if !ok {
                return Err(Errno::EOVERFLOW.into());
            }
        }
        Ok(())
    }

    pub(super) fn op_chmod(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        path: &str,
        mode: u32,
    ) -> OpResult {
        let cred = self.task(task).cred.clone();
        let (m, ino) = self.walk_existing(t, &cred, path)?;
        self.mnt_want_write(t, m)?;
        let idmap = self.mount(m).idmap.clone();
        let i = self.inode(ino).clone();
        self.may_setattr_flags(t, ino, true)?;
        self.setattr_unmapped_check(t, &idmap, ino, false, false)?;
        self.fs_setattr_flags(t, ino, true)?;
        tr!(t.info(
            "setattr_prepare",
            "chmod needs the owner or CAP_FOWNER",
            vec![],
        ));
        if !t.nested(|t| self.inode_owner_or_capable(t, &cred, &idmap, ino)) {
            return Err(Errno::EPERM.into());
        }
        let mut new = (mode & 0o7777) | (i.mode & S_IFMT);
        if new & S_ISGID != 0 {
            let vg = self.i_gid_into_vfsgid(&idmap, ino);
            let keep = t.nested(|t| self.in_group_or_capable(t, &cred, &idmap, ino, vg));
            tr!(t.check(keep, "setattr_prepare", "S_ISGID is kept only for a member of the file's group or CAP_FSETID (else silently cleared)", vec![]));
            if !keep {
                new &= !S_ISGID;
            }
        }
        self.inodes[ino.0].mode = new;
        // posix_acl_chmod: an access ACL follows the new mode (user::, mask:: or group:: when
        // there is no mask, other::), as the kernel rewrites it after every chmod.
        if let Some(acl) = &mut self.inodes[ino.0].acl {
            let has_mask = acl.entry(AclTag::Mask).is_some();
            for e in &mut acl.0 {
                match e.tag {
                    AclTag::UserObj => e.perm = (new >> 6) & 7,
                    AclTag::Mask => e.perm = (new >> 3) & 7,
                    AclTag::GroupObj if !has_mask => e.perm = (new >> 3) & 7,
                    AclTag::Other => e.perm = new & 7,
                    _ => {}
                }
            }
            tr!(t.info(
                "posix_acl_chmod",
                "the access ACL's user::, mask:: (or group::) and other:: entries take the new mode",
                vec![],
            ));
        }
        Ok(Some(out(vec![("mode", mode_str(new))])))
    }

    /// `chown(path, uid, gid)`: `chown_common` builds the request, `notify_change` checks
    /// that the ids map back into the filesystem, `setattr_prepare` decides, `setattr_copy`
    /// stores.
    pub(super) fn op_chown(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        path: &str,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> OpResult {
        let cred = self.task(task).cred.clone();
        let (m, ino) = self.walk_existing(t, &cred, path)?;
        self.mnt_want_write(t, m)?;
        let (nu, ng) = self.chown_common_ids(t, &cred, uid, gid)?;
        let at = ChownTarget {
            idmap: self.mount(m).idmap.clone(),
            ino,
            fs_ns: self.sb(self.inode(ino).sb).user_ns,
        };
        let mut ia = Iattr {
            vfsuid: nu.map(Vfsuid),
            vfsgid: ng.map(Vfsgid),
            mode: self.chown_kill_setid(t, &cred, &at)?,
        };
        self.may_setattr_flags(t, ino, nu.is_some() || ng.is_some())?;
        self.notify_change_fsmapping(t, &at, &ia)?;
        self.setattr_unmapped_check(t, &at.idmap, ino, ia.vfsuid.is_some(), ia.vfsgid.is_some())?;
        let changes = ia.vfsuid.is_some() || ia.vfsgid.is_some() || ia.mode.is_some();
        self.fs_setattr_flags(t, ino, changes)?;
        self.setattr_prepare_chown(t, &cred, &at, &mut ia)?;
        self.setattr_copy_chown(t, &cred, &at, &ia);
        self.killpriv(t, ino);
        let vu = self.i_uid_into_vfsuid(&at.idmap, ino);
        let vg = self.i_gid_into_vfsgid(&at.idmap, ino);
        Ok(Some(out(vec![
            ("uid", self.from_kuid_munged(cred.user_ns, vu.0).to_string()),
            ("gid", self.from_kgid_munged(cred.user_ns, vg.0).to_string()),
            ("mode", mode_str(self.inode(ino).mode)),
        ])))
    }

    /// `chown_common`: the new ids are the caller's numbers in the caller's namespace
    /// (`make_kuid`); one that is not -1 must be mapped there.
    fn chown_common_ids(
        &self,
        t: &mut Tracer,
        cred: &Cred,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> Result<(Option<Kuid>, Option<Kgid>), Stop> {
        let cns = cred.user_ns;
        let nu = uid.map(|u| self.make_kuid(cns, u));
        let ng = gid.map(|g| self.make_kgid(cns, g));
        tr!(t.info(
            "chown_common",
            format!(
                "new ids from the caller's namespace \"{}\" (make_kuid); -1 leaves an id alone",
                self.ns(cns).name
            ),
            vec![
                ("uid", opt_id(uid)),
                (
                    "kuid",
                    nu.map(|k| self.show_uid(k)).unwrap_or_else(|| "-".into()),
                ),
                ("gid", opt_id(gid)),
                (
                    "kgid",
                    ng.map(|k| self.show_gid(k)).unwrap_or_else(|| "-".into()),
                ),
            ],
        ));
        if nu.is_some_and(|k| !k.is_valid()) || ng.is_some_and(|k| !k.is_valid()) {
            tr!(t.fail(
                "chown_common",
                "an id that is not -1 must be mapped in the caller's namespace",
                vec![],
            ));
            return Err(Errno::EINVAL.into());
        }
        Ok((nu, ng))
    }

    /// `chown_common`'s `ATTR_KILL_SUID`/`ATTR_KILL_SGID` for a non-directory; the killed
    /// bits become a mode change (`ATTR_MODE`) after `may_setattr`.
    fn chown_kill_setid(
        &self,
        t: &mut Tracer,
        cred: &Cred,
        at: &ChownTarget,
    ) -> Result<Option<u32>, Stop> {
        let i = self.inode(at.ino);
        let mut kill_suid = false;
        let mut kill_sgid = false;
        if !i.is_dir() {
            kill_suid = true;
            // setattr_should_drop_sgid: a group-executable file always loses S_ISGID; one
            // that is not (mandatory locking) only for a caller outside the group.
            if i.mode & S_ISGID != 0 {
                if i.mode & S_IXGRP != 0 {
                    kill_sgid = true;
                } else {
                    let vg = self.i_gid_into_vfsgid(&at.idmap, at.ino);
                    kill_sgid =
                        !t.nested(|t| self.in_group_or_capable(t, cred, &at.idmap, at.ino, vg));
                }
            }
            tr!(t.info(
                "chown_common",
                "not a directory: ATTR_KILL_SUID (and ATTR_KILL_SGID per setattr_should_drop_sgid)",
                vec![("kill_sgid", kill_sgid.to_string())],
            ));
        }
        let mut new_mode = None;
        if kill_suid && i.mode & S_ISUID != 0 {
            new_mode = Some(i.mode & !S_ISUID);
        }
        if kill_sgid && i.mode & S_ISGID != 0 {
            new_mode = Some(new_mode.unwrap_or(i.mode) & !S_ISGID);
        }
        if new_mode.is_some() {
            tr!(t.info(
                "notify_change",
                "killing S_ISUID/S_ISGID turns into a mode change (ATTR_MODE)",
                vec![],
            ));
        }
        Ok(new_mode)
    }

    /// `notify_change`: the new owner and group, as the mount shows them, must map back into
    /// the filesystem (`vfsuid_has_fsmapping`, `vfsgid_has_fsmapping`).
    fn notify_change_fsmapping(&self, t: &mut Tracer, at: &ChownTarget, ia: &Iattr) -> Check {
        if let Some(v) = ia.vfsuid {
            let back = self.from_vfsuid(&at.idmap, at.fs_ns, v);
            let ok = tr!(t.check(
                back.is_valid(),
                "notify_change",
                "the new owner must map back into the filesystem (vfsuid_has_fsmapping)",
                vec![("vfsuid", v.show()), ("fs_kuid", self.show_uid(back))],
            ));
            if !ok {
                return Err(Errno::EOVERFLOW.into());
            }
        }
        if let Some(v) = ia.vfsgid {
            let back = self.from_vfsgid(&at.idmap, at.fs_ns, v);
            let ok = tr!(t.check(
                back.is_valid(),
                "notify_change",
                "the new group must map back into the filesystem (vfsgid_has_fsmapping)",
                vec![("vfsgid", v.show()), ("fs_kgid", self.show_gid(back))],
            ));
            if !ok {
                return Err(Errno::EOVERFLOW.into());
            }
        }
        Ok(())
    }

    /// `setattr_prepare` for a chown: `chown_ok` for a new owner, `chgrp_ok` for a new group,
    /// and owner-or-`CAP_FOWNER` for the mode change that kills set-id bits.
    fn setattr_prepare_chown(
        &self,
        t: &mut Tracer,
        cred: &Cred,
        at: &ChownTarget,
        ia: &mut Iattr,
    ) -> Check {
        let cur_vu = self.i_uid_into_vfsuid(&at.idmap, at.ino);
        let cur_vg = self.i_gid_into_vfsgid(&at.idmap, at.ino);
        if let Some(v) = ia.vfsuid {
            if !t.nested(|t| self.chown_ok(t, cred, at, cur_vu, v)) {
                tr!(t.fail("setattr_prepare", "chown_ok refused", vec![]));
                return Err(Errno::EPERM.into());
            }
        }
        if let Some(v) = ia.vfsgid {
            if !t.nested(|t| self.chgrp_ok(t, cred, at, cur_vu, cur_vg, v)) {
                tr!(t.fail("setattr_prepare", "chgrp_ok refused", vec![]));
                return Err(Errno::EPERM.into());
            }
        }
        if let Some(mut nm) = ia.mode {
            tr!(t.info(
                "setattr_prepare",
                "the mode change (killing set-id bits) needs the owner or CAP_FOWNER",
                vec![],
            ));
            if !t.nested(|t| self.inode_owner_or_capable(t, cred, &at.idmap, at.ino)) {
                return Err(Errno::EPERM.into());
            }
            let vg = ia.vfsgid.unwrap_or(cur_vg);
            if nm & S_ISGID != 0
                && !t.nested(|t| self.in_group_or_capable(t, cred, &at.idmap, at.ino, vg))
            {
                nm &= !S_ISGID;
            }
            ia.mode = Some(nm);
        }
        Ok(())
    }

    /// `chown_ok`: the owner may "change" the owner to itself; otherwise `CAP_CHOWN` over the
    /// inode, or, for an owner invalid through the mount, in the filesystem's namespace.
    fn chown_ok(
        &self,
        t: &mut Tracer,
        cred: &Cred,
        at: &ChownTarget,
        cur_vu: Vfsuid,
        v: Vfsuid,
    ) -> bool {
        let owner_noop = cur_vu.eq_kuid(cred.fsuid) && v == cur_vu;
        if tr!(t.check(
            owner_noop,
            "chown_ok",
            "the owner may \"change\" the owner to itself",
            vec![
                ("vfsuid", cur_vu.show()),
                ("new", v.show()),
                ("fsuid", cred.fsuid.0.to_string())
            ]
        )) {
            return true;
        }
        if self.capable_wrt_inode_uidgid(t, cred, &at.idmap, at.ino, Cap::CHOWN) {
            return true;
        }
        if !cur_vu.is_valid() {
            tr!(t.info("chown_ok", "the owner is invalid through the mount: CAP_CHOWN in the filesystem's namespace suffices", vec![]));
            return self.ns_capable(t, cred, at.fs_ns, Cap::CHOWN);
        }
        false
    }

    /// `chgrp_ok`: the owner may keep the group or pick one it is in; otherwise `CAP_CHOWN`
    /// over the inode, or, for a group invalid through the mount, in the filesystem's
    /// namespace.
    fn chgrp_ok(
        &self,
        t: &mut Tracer,
        cred: &Cred,
        at: &ChownTarget,
        cur_vu: Vfsuid,
        cur_vg: Vfsgid,
        v: Vfsgid,
    ) -> bool {
        if cur_vu.eq_kuid(cred.fsuid) {
            if tr!(t.check(
                v == cur_vg,
                "chgrp_ok",
                "the owner keeps the group",
                vec![("vfsgid", cur_vg.show()), ("new", v.show())]
            )) {
                return true;
            }
            if self.vfsgid_in_group_p(t, cred, v, "the new group") {
                return true;
            }
        } else {
            tr!(t.info(
                "chgrp_ok",
                "the caller does not own the file",
                vec![
                    ("vfsuid", cur_vu.show()),
                    ("fsuid", cred.fsuid.0.to_string())
                ]
            ));
        }
        if self.capable_wrt_inode_uidgid(t, cred, &at.idmap, at.ino, Cap::CHOWN) {
            return true;
        }
        if !cur_vg.is_valid() {
            tr!(t.info("chgrp_ok", "the group is invalid through the mount: CAP_CHOWN in the filesystem's namespace suffices", vec![]));
            return self.ns_capable(t, cred, at.fs_ns, Cap::CHOWN);
        }
        false
    }

    /// `setattr_copy`: store the new ids (mapped back into the filesystem) and mode; the
    /// mode's S_ISGID is checked again against the group now stored.
    fn setattr_copy_chown(&mut self, t: &mut Tracer, cred: &Cred, at: &ChownTarget, ia: &Iattr) {
        let ino = at.ino;
        if let Some(v) = ia.vfsuid {
            self.inodes[ino.0].uid = self.from_vfsuid(&at.idmap, at.fs_ns, v);
        }
        if let Some(v) = ia.vfsgid {
            self.inodes[ino.0].gid = self.from_vfsgid(&at.idmap, at.fs_ns, v);
        }
        if let Some(mut nm) = ia.mode {
            let vg = self.i_gid_into_vfsgid(&at.idmap, ino);
            if nm & S_ISGID != 0
                && !t.nested(|t| self.in_group_or_capable(t, cred, &at.idmap, ino, vg))
            {
                nm &= !S_ISGID;
            }
            self.inodes[ino.0].mode = nm;
        }
        let i = self.inode(ino);
        tr!(t.info(
            "setattr_copy",
            "new owner, group and mode stored",
            vec![
                ("i_uid", self.show_uid(i.uid)),
                ("i_gid", self.show_gid(i.gid)),
                ("mode", mode_str(i.mode)),
            ],
        ));
    }
}

/// The inode a chown changes, with the mount's idmap it was reached through and the
/// filesystem's namespace.
struct ChownTarget {
    idmap: MntIdmap,
    ino: InodeRef,
    fs_ns: NsRef,
}

/// `struct iattr` of a chown: the new owner and group as the mount shows them (`None`: -1,
/// unchanged), and the mode when set-id bits are killed.
struct Iattr {
    vfsuid: Option<Vfsuid>,
    vfsgid: Option<Vfsgid>,
    mode: Option<u32>,
}
