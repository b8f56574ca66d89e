//! File operations and their VFS glue: `open`, `faccessat2`, `open(O_CREAT)`/`mkdir`,
//! `stat`, with the path walk, `mnt_want_write` and `fsuidgid_has_mapping` they share.

use credns_idmap::{Kgid, Kuid};

use crate::caps::CapSet;
use crate::outcome::Tracer;
use crate::vfs::{mask_str, mode_str, Check, Stop, Vfsgid, Vfsuid, MAY_EXEC, MAY_READ, MAY_WRITE};
use crate::world::{
    Cred, InodeRef, MountRef, TaskRef, World, SECURE_NO_SETUID_FIXUP, S_ISGID, S_IXGRP,
};
use credns_idmap::Errno;

use super::{out, OpResult};
use crate::walk::Last;

impl World {
    pub(super) fn walk_existing(
        &self,
        t: &mut Tracer,
        cred: &Cred,
        path: &str,
    ) -> Result<(MountRef, InodeRef), Stop> {
        let w = self.path_walk(t, cred, path, Last::Follow)?;
        self.existing(t, w, path)
    }

    /// [`World::walk_existing`], with the path the walk ended at (links followed).
    pub(super) fn walk_existing_at(
        &self,
        t: &mut Tracer,
        cred: &Cred,
        path: &str,
    ) -> Result<(MountRef, InodeRef, String), Stop> {
        let w = self.path_walk(t, cred, path, Last::Follow)?;
        let at = w.path_of(path);
        let (m, ino) = self.existing(t, w, path)?;
        Ok((m, ino, at))
    }

    /// The inode the walk of `path` found, or ENOENT for a missing last component.
    pub(super) fn existing(
        &self,
        t: &mut Tracer,
        w: crate::vfs::Walk,
        path: &str,
    ) -> Result<(MountRef, InodeRef), Stop> {
        match w.target {
            Some((_, ino)) if w.slash && !self.inode(ino).is_dir() => {
                tr!(t.fail(
                    "lookup_last",
                    format!(
                        "\"{}\" (a link's target ending in /) is not a directory",
                        w.path_of(path)
                    ),
                    vec![]
                ));
                Err(Errno::ENOTDIR.into())
            }
            Some(x) => Ok(x),
            None => {
                let path = w.path_of(path);
                tr!(t.fail("lookup", format!("\"{path}\" does not exist"), vec![]));
                Err(Errno::ENOENT.into())
            }
        }
    }

    /// `mnt_want_write`: a read-only mount or superblock refuses with EROFS.
    pub(super) fn mnt_want_write(&self, t: &mut Tracer, m: MountRef) -> Check {
        let mnt = self.mount(m);
        let sb = self.sb(mnt.sb);
        let ro = mnt.read_only || sb.read_only;
        tr!(t.check(
            !ro,
            "mnt_want_write",
            format!("the mount at \"{}\" must be writable", mnt.path),
            vec![
                ("mnt_ro", mnt.read_only.to_string()),
                ("sb_ro", sb.read_only.to_string()),
            ],
        ));
        if ro {
            Err(Errno::EROFS.into())
        } else {
            Ok(())
        }
    }

    pub(super) fn op_open(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        path: &str,
        read: bool,
        write: bool,
    ) -> OpResult {
        let cred = self.task(task).cred.clone();
        let (m, ino) = self.walk_existing(t, &cred, path)?;
        let mut acc = 0;
        if read || !write {
            acc |= MAY_READ;
        }
        if write {
            acc |= MAY_WRITE;
        }
        let i = self.inode(ino);
        if i.is_dir() && acc & MAY_WRITE != 0 {
            tr!(t.fail(
                "may_open",
                "a directory cannot be opened for writing",
                vec![],
            ));
            return Err(Errno::EISDIR.into());
        }
        tr!(t.info("may_open", format!("open for {}", mask_str(acc)), vec![]));
        t.nested(|t| self.inode_permission(t, &cred, m, ino, acc))?;
        self.may_open_append(t, ino, acc)?;
        if acc & MAY_WRITE != 0 {
            self.mnt_want_write(t, m)?;
        }
        Ok(None)
    }

    pub(super) fn op_access(
        &self,
        t: &mut Tracer,
        task: TaskRef,
        path: &str,
        mode: u32,
        eaccess: bool,
    ) -> OpResult {
        self.access_as(t, task, path, mode, eaccess, |t, cred| {
            self.path_walk(t, cred, path, Last::Follow)
        })
    }

    /// `do_faccessat(path)` as `task`, with `walk` for the walk of `path` (made with the
    /// credentials access() checks with).
    pub(crate) fn access_as(
        &self,
        t: &mut Tracer,
        task: TaskRef,
        path: &str,
        mode: u32,
        eaccess: bool,
        walk: impl FnOnce(&mut Tracer, &Cred) -> Result<crate::vfs::Walk, Stop>,
    ) -> OpResult {
        if mode & !7 != 0 {
            tr!(t.fail(
                "do_faccessat",
                "mode has bits other than R_OK|W_OK|X_OK",
                vec![("mode", mode.to_string())],
            ));
            return Err(Errno::EINVAL.into());
        }
        let own = &self.task(task).cred;
        let cred = if eaccess {
            std::borrow::Cow::Borrowed(own)
        } else {
            self.access_override_creds(t, own)
        };
        let w = walk(t, &cred)?;
        let (m, ino) = self.existing(t, w, path)?;
        let i = self.inode(ino);
        if mode & MAY_EXEC != 0 && i.is_reg() && self.mount(m).noexec {
            tr!(t.fail(
                "do_faccessat",
                "X_OK on a regular file of a noexec mount",
                vec![],
            ));
            return Err(Errno::EACCES.into());
        }
        t.nested(|t| self.inode_permission(t, &cred, m, ino, mode))?;
        if mode & MAY_WRITE != 0 {
            let ro = self.mount(m).read_only || self.sb(self.mount(m).sb).read_only;
            tr!(t.check(
                !ro,
                "do_faccessat",
                "W_OK also reports a read-only mount",
                vec![],
            ));
            if ro {
                return Err(Errno::EROFS.into());
            }
        }
        Ok(None)
    }

    /// `access_override_creds`: access() checks with the real ids, and with an effective set
    /// that is the permitted set for the namespace's root and empty for anyone else; like the
    /// kernel (`access_need_override_creds`), the task's own credentials serve when that
    /// changes nothing.
    fn access_override_creds<'c>(
        &self,
        t: &mut Tracer,
        own: &'c Cred,
    ) -> std::borrow::Cow<'c, Cred> {
        let mut cred = std::borrow::Cow::Borrowed(own);
        let fixup = !own.issecure(SECURE_NO_SETUID_FIXUP);
        let root = || self.make_kuid(own.user_ns, 0);
        let is_root = || root().is_valid() && own.uid == root();
        // Without capabilities, the effective set is empty whether or not the task is
        // its namespace's root.
        let capless = own.cap_effective == CapSet::EMPTY && own.cap_permitted == CapSet::EMPTY;
        let need = own.fsuid != own.uid
            || own.fsgid != own.gid
            || (fixup
                && !capless
                && if is_root() {
                    own.cap_effective != own.cap_permitted
                } else {
                    own.cap_effective != CapSet::EMPTY
                });
        if need {
            let is_root = is_root();
            let c = cred.to_mut();
            c.fsuid = c.uid;
            c.fsgid = c.gid;
            if fixup {
                c.cap_effective = if is_root {
                    c.cap_permitted
                } else {
                    CapSet::EMPTY
                };
            }
        }
        tr!(t.info(
            "access_override_creds",
            "access() checks with the real uid/gid; the effective set is the permitted set for the namespace's root, else empty",
            {
                let mut v = vec![
                    ("fsuid", cred.fsuid.0.to_string()),
                    ("fsgid", cred.fsgid.0.to_string()),
                ];
                if fixup {
                    let root = root();
                    v.push((
                        "root_uid",
                        if root.is_valid() {
                            root.0.to_string()
                        } else {
                            "INVALID".into()
                        },
                    ));
                    v.push(("cap_effective", cred.cap_effective.to_string()));
                }
                v
            }
        ));
        cred
    }

    /// `mapped_fsuid`/`mapped_fsgid` and `fsuidgid_has_mapping`.
    pub(super) fn fsuidgid_has_mapping(
        &self,
        t: &mut Tracer,
        cred: &Cred,
        m: MountRef,
    ) -> (bool, Kuid, Kgid) {
        let mnt = self.mount(m);
        let fs_ns = self.sb(mnt.sb).user_ns;
        let ku = self.from_vfsuid(&mnt.idmap, fs_ns, Vfsuid(cred.fsuid));
        let kg = self.from_vfsgid(&mnt.idmap, fs_ns, Vfsgid(cred.fsgid));
        let ok = ku.is_valid()
            && kg.is_valid()
            && self.kuid_has_mapping(fs_ns, ku)
            && self.kgid_has_mapping(fs_ns, kg);
        tr!(t.check(
            ok,
            "fsuidgid_has_mapping",
            format!(
                "the caller's fsuid and fsgid, mapped back through the mount's {}, must be mapped in the filesystem's namespace \"{}\"",
                self.idmap_name(&mnt.idmap),
                self.ns(fs_ns).name
            ),
            vec![
                ("fsuid", cred.fsuid.0.to_string()),
                ("fsgid", cred.fsgid.0.to_string()),
                ("mapped_fsuid", self.show_uid(ku)),
                ("mapped_fsgid", self.show_gid(kg)),
            ],
        ));
        (ok, ku, kg)
    }

    pub(super) fn op_create(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        path: &str,
        mode: u32,
        dir: bool,
    ) -> OpResult {
        let cred = self.task(task).cred.clone();
        let w = self.path_walk(t, &cred, path, Last::NoFollow)?;
        self.create_at(t, task, w, path, mode, dir)
    }

    /// The create of `op_create` where the walk `w` of `path` ended (for `open(O_CREAT)`
    /// without `O_EXCL`, after following a trailing link).
    pub(super) fn create_at(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        w: crate::vfs::Walk,
        path: &str,
        mode: u32,
        dir: bool,
    ) -> OpResult {
        let cred = self.task(task).cred.clone();
        let umask = self.task(task).umask;
        let path = &w.path_of(path);
        let f = if dir { "may_create" } else { "may_o_create" };
        if w.target.is_some() {
            tr!(t.fail(
                if dir { "filename_create" } else { "do_open" },
                format!("\"{path}\" already exists"),
                vec![],
            ));
            return Err(Errno::EEXIST.into());
        }
        let (pm, pdir) = w.parent;
        self.mnt_want_write(t, pm)?;
        tr!(t.info(f, "may the caller create in the directory?", vec![]));
        let (ok, ku, kg) = t.nested(|t| self.fsuidgid_has_mapping(t, &cred, pm));
        if !ok {
            return Err(Errno::EOVERFLOW.into());
        }
        t.nested(|t| self.inode_permission(t, &cred, pm, pdir, MAY_WRITE | MAY_EXEC))?;
        let idmap = self.mount(pm).idmap.clone();
        let d = self.inode(pdir).clone();
        // mode_strip_umask leaves the umask to posix_acl_create, which applies it only
        // without a default ACL.
        let inherits = d.default_acl.is_some() && self.sb(d.sb).posix_acl;
        if inherits {
            tr!(t.info(
                "posix_acl_create",
                "the directory has a default ACL: the umask is not applied (mode_strip_umask leaves it to posix_acl_create)",
                vec![("umask", format!("{umask:04o}"))],
            ));
        }
        let umask = if inherits { 0 } else { umask };
        let mut m = self.vfs_prepare_mode(t, &cred, (pm, pdir), mode, dir, umask);
        // inode_init_owner
        let (gid, how) = if d.mode & S_ISGID != 0 {
            if dir {
                m |= S_ISGID;
            }
            (d.gid, "the directory is setgid: group inherited from it")
        } else {
            (kg, "group from the caller's fsgid (mapped_fsgid)")
        };
        let sbns = self.sb(d.sb).user_ns;
        tr!(t.info(
            "inode_init_owner",
            format!("owner from the caller's fsuid (mapped_fsuid); {how}"),
            vec![
                ("i_uid", self.show_uid(ku)),
                ("i_gid", self.show_gid(gid)),
                (
                    "on_disk",
                    format!(
                        "{}:{}",
                        self.show_in(sbns, ku.0, true),
                        self.show_in(sbns, gid.0, false)
                    ),
                ),
                ("mode", mode_str(m)),
            ],
        ));
        let inherited = self.posix_acl_create(t, pdir, m, dir);
        let m = inherited.mode;
        let full = path.to_string();
        let ino = self
            .add_inode(&full, dir, ku, gid, m)
            .map_err(|e| Stop::unknown(format!("model could not add the inode: {e}")))?;
        self.inodes[ino.0].acl = inherited.acl;
        self.inodes[ino.0].default_acl = inherited.default_acl;
        self.proposals_notify(|p, w| p.inode_created(w, ino, &cred));
        let vu = self.i_uid_into_vfsuid(&idmap, ino);
        let vg = self.i_gid_into_vfsgid(&idmap, ino);
        Ok(Some(out(vec![
            ("uid", self.from_kuid_munged(cred.user_ns, vu.0).to_string()),
            ("gid", self.from_kgid_munged(cred.user_ns, vg.0).to_string()),
            ("mode", mode_str(m)),
            ("disk_uid", self.show_in(sbns, ku.0, true)),
            ("disk_gid", self.show_in(sbns, gid.0, false)),
        ])))
    }

    /// `vfs_prepare_mode`: the requested mode, without S_ISGID where `mode_strip_sgid`
    /// strips it (a setgid, group-executable file in a setgid directory, created by someone
    /// outside the directory's group without CAP_FSETID), minus the umask.
    fn vfs_prepare_mode(
        &self,
        t: &mut Tracer,
        cred: &Cred,
        (pm, pdir): (MountRef, InodeRef),
        mode: u32,
        dir: bool,
        umask: u32,
    ) -> u32 {
        let idmap = &self.mount(pm).idmap;
        let d = self.inode(pdir);
        let mut m = if dir { mode & 0o1777 } else { mode & 0o7777 };
        if !dir && m & (S_ISGID | S_IXGRP) == (S_ISGID | S_IXGRP) && d.mode & S_ISGID != 0 {
            let (_, dvg) = self.trace_inode_ids(t, idmap, pdir, "directory group");
            let keep = t.nested(|t| self.in_group_or_capable(t, cred, idmap, pdir, dvg));
            tr!(t.check(keep, "mode_strip_sgid", "a setgid+group-exec file in a setgid directory keeps S_ISGID only for a group member or CAP_FSETID", vec![]));
            if !keep {
                m &= !S_ISGID;
            }
        }
        m &= !umask;
        tr!(t.info(
            "vfs_prepare_mode",
            "apply the umask",
            vec![("umask", format!("{umask:04o}")), ("mode", mode_str(m))],
        ));
        m
    }

    pub(super) fn op_stat(&mut self, t: &mut Tracer, task: TaskRef, path: &str) -> OpResult {
        let cred = self.task(task).cred.clone();
        let (m, ino) = self.walk_existing(t, &cred, path)?;
        let idmap = self.mount(m).idmap.clone();
        let (vu, vg) = self.trace_inode_ids(t, &idmap, ino, "generic_fillattr");
        let uid = self.from_kuid_munged(cred.user_ns, vu.0);
        let gid = self.from_kgid_munged(cred.user_ns, vg.0);
        tr!(t.info(
            "cp_new_stat",
            format!(
                "st_uid/st_gid in the caller's namespace \"{}\" (from_kuid_munged)",
                self.ns(cred.user_ns).name
            ),
            vec![("st_uid", uid.to_string()), ("st_gid", gid.to_string())],
        ));
        let i = self.inode(ino);
        Ok(Some(out(vec![
            ("uid", uid.to_string()),
            ("gid", gid.to_string()),
            ("mode", mode_str(i.mode)),
        ])))
    }
}
