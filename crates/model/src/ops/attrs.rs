//! `truncate(2)` and `utimensat(2)`, and the immutable and append-only checks every attribute
//! change meets: `may_setattr` in the VFS, then the filesystem type's own `->setattr`, which
//! differs between types ([`crate::fs_types`]).

use crate::caps::Cap;
use crate::fs_types::{fs_type_rules, SetattrFlags};
use crate::outcome::Tracer;
use crate::vfs::{mode_str, Check, Stop, MAY_WRITE};
use crate::world::{Cred, InodeRef, MntIdmap, TaskRef, World, S_ISGID, S_ISUID, S_IXGRP};
use credns_idmap::Errno;

use super::{out, OpResult};

/// The `times` argument of `utimensat(2)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UtimesTimes {
    /// `NULL`: now (`ATTR_TOUCH`).
    Null,
    /// Both `UTIME_NOW`: the same as `NULL`.
    Now,
    /// Both `UTIME_OMIT`: nothing to do.
    Omit,
    /// Explicit times (`ATTR_TIMES_SET`).
    Explicit,
}

impl UtimesTimes {
    /// The name a scenario uses.
    pub fn name(self) -> &'static str {
        match self {
            UtimesTimes::Null => "null",
            UtimesTimes::Now => "now",
            UtimesTimes::Omit => "omit",
            UtimesTimes::Explicit => "explicit",
        }
    }
}

impl World {
    /// `may_setattr`: a change of mode, owner, group or explicit times (`changes`) on an
    /// immutable or append-only inode is refused.
    pub(super) fn may_setattr_flags(&self, t: &mut Tracer, ino: InodeRef, changes: bool) -> Check {
        let i = self.inode(ino);
        if !changes {
            return Ok(());
        }
        let ok = tr!(t.check(
            !i.immutable && !i.append_only,
            "may_setattr",
            "a change of mode, owner, group or explicit times needs an inode neither immutable nor append-only",
            vec![
                ("immutable", i.immutable.to_string()),
                ("append_only", i.append_only.to_string())
            ],
        ));
        if ok {
            Ok(())
        } else {
            Err(Errno::EPERM.into())
        }
    }

    /// The filesystem's `->setattr` with an immutable or append-only inode, by its type's
    /// rules: ext4 refuses an immutable inode always and an append-only one for a change of
    /// mode, owner, group or explicit times (`changes`); tmpfs, xfs and btrfs do not look.
    pub(super) fn fs_setattr_flags(&self, t: &mut Tracer, ino: InodeRef, changes: bool) -> Check {
        let i = self.inode(ino);
        if !i.immutable && !i.append_only {
            return Ok(());
        }
        let fs_type = &self.sb(i.sb).fs_type;
        let f = "->setattr";
        let Some(rules) = fs_type_rules(fs_type) else {
            let why = format!(
                "filesystem type \"{fs_type}\" is not modelled: whether its ->setattr refuses an immutable or append-only inode decides"
            );
            tr!(t.step(f, why.clone(), vec![], crate::outcome::StepVerdict::Unknown));
            return Err(Stop::unknown(why));
        };
        match rules.setattr_flags {
            SetattrFlags::Ignores => {
                tr!(t.pass(
                    f,
                    format!("{fs_type}'s setattr has no immutable or append-only check of its own"),
                    vec![],
                ));
                Ok(())
            }
            SetattrFlags::Delegates => {
                let why = format!(
                    "{fs_type} passes the change to its upper layer: that filesystem's type decides"
                );
                tr!(t.step(f, why.clone(), vec![], crate::outcome::StepVerdict::Unknown));
                Err(Stop::unknown(why))
            }
            SetattrFlags::Refuses => {
                let refused = i.immutable || (i.append_only && changes);
                tr!(t.check(
                    !refused,
                    f,
                    format!("{fs_type}'s setattr refuses an immutable inode, and an append-only one for a change of mode, owner, group or explicit times"),
                    vec![
                        ("immutable", i.immutable.to_string()),
                        ("append_only", i.append_only.to_string())
                    ],
                ));
                if refused {
                    Err(Errno::EPERM.into())
                } else {
                    Ok(())
                }
            }
        }
    }

    /// `setattr_prepare`'s `ATTR_KILL_PRIV`: a successful change that kills privileges
    /// removes `security.capability` (`security_inode_killpriv`).
    pub(super) fn killpriv(&mut self, t: &mut Tracer, ino: InodeRef) {
        if self.inode(ino).is_dir() || self.inode(ino).fscaps.is_none() {
            return;
        }
        tr!(t.info(
            "security_inode_killpriv",
            "ATTR_KILL_PRIV: security.capability is removed",
            vec![],
        ));
        self.inodes[ino.0].fscaps = None;
    }

    /// `truncate(path, length)`: `do_sys_truncate`, `vfs_truncate`, `do_truncate`.
    pub(super) fn op_truncate(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        path: &str,
        length: i64,
    ) -> OpResult {
        if length < 0 {
            tr!(t.fail("do_sys_truncate", "a negative length", vec![]));
            return Err(Errno::EINVAL.into());
        }
        let cred = self.task(task).cred.clone();
        let (m, ino) = self.walk_existing(t, &cred, path)?;
        let i = self.inode(ino);
        if i.is_dir() {
            tr!(t.fail("vfs_truncate", "a directory", vec![]));
            return Err(Errno::EISDIR.into());
        }
        if !i.is_reg() {
            tr!(t.fail("vfs_truncate", "not a regular file", vec![]));
            return Err(Errno::EINVAL.into());
        }
        t.nested(|t| self.inode_permission(t, &cred, m, ino, MAY_WRITE))?;
        self.mnt_want_write(t, m)?;
        let append = self.inode(ino).append_only;
        if !tr!(t.check(
            !append,
            "vfs_truncate",
            "an append-only file cannot be truncated (IS_APPEND)",
            vec![],
        )) {
            return Err(Errno::EPERM.into());
        }
        let idmap = self.mount(m).idmap.clone();
        let kill = self.should_drop_suidgid(t, &cred, &idmap, ino);
        self.setattr_unmapped_check(t, &idmap, ino, false, false)?;
        self.fs_setattr_flags(t, ino, kill.is_some())?;
        self.inode_newsize_ok(t, ino, length)?;
        tr!(t.pass(
            "setattr_prepare",
            "ATTR_SIZE: inode_newsize_ok (no ownership check for a size change)",
            vec![("length", length.to_string())],
        ));
        if let Some(mode) = kill {
            if !self.empty_truncate_is_noop(t, ino, length) {
                self.inodes[ino.0].mode = mode;
            }
        }
        // notify_change removes the capability before the filesystem's ->setattr runs.
        self.killpriv(t, ino);
        self.inodes[ino.0].size = length;
        Ok(Some(out(vec![("mode", mode_str(self.inode(ino).mode))])))
    }

    /// Whether the filesystem's `->setattr` drops this truncate whole: xfs returns before the
    /// mode change for an empty file taken to length 0 (`xfs_setattr_size`'s short circuit).
    fn empty_truncate_is_noop(&self, t: &mut Tracer, ino: InodeRef, length: i64) -> bool {
        let fs_type = &self.sb(self.inode(ino).sb).fs_type;
        let noop = fs_type_rules(fs_type).is_some_and(|r| r.empty_truncate_is_noop)
            && length == 0
            && self.inode(ino).size == 0;
        if noop {
            tr!(t.info(
                "xfs_setattr_size",
                format!(
                    "{fs_type}: an empty file taken to length 0 without ATTR_CTIME or ATTR_MTIME: \
                     nothing is applied, the set-id bits stay"
                ),
                vec![],
            ));
        }
        noop
    }

    /// `inode_newsize_ok`: a length above the filesystem's `s_maxbytes` is EFBIG (every file's
    /// size is at most `s_maxbytes`, so such a length always grows the file). RLIMIT_FSIZE is
    /// taken as unlimited, as every process of a scenario has it.
    fn inode_newsize_ok(&self, t: &mut Tracer, ino: InodeRef, length: i64) -> Check {
        let f = "inode_newsize_ok";
        let fs_type = &self.sb(self.inode(ino).sb).fs_type;
        let Some(max) = fs_type_rules(fs_type).and_then(|r| r.max_bytes) else {
            let why = format!(
                "filesystem type \"{fs_type}\" has no s_maxbytes in the model (overlay: its upper layer's decides)"
            );
            tr!(t.step(f, why.clone(), vec![], crate::outcome::StepVerdict::Unknown));
            return Err(Stop::unknown(why));
        };
        if tr!(t.check(
            length <= max,
            f,
            format!("the length must not exceed {fs_type}'s s_maxbytes (RLIMIT_FSIZE unlimited)"),
            vec![
                ("length", length.to_string()),
                ("s_maxbytes", max.to_string())
            ],
        )) {
            Ok(())
        } else {
            Err(Errno::EFBIG.into())
        }
    }

    /// `setattr_should_drop_suidgid` as `do_truncate` asks it (`dentry_needs_remove_privs`):
    /// the new mode when set-id bits are killed, with `ATTR_FORCE`. A caller with CAP_FSETID
    /// in the initial namespace (`capable`) keeps them.
    fn should_drop_suidgid(
        &self,
        t: &mut Tracer,
        cred: &Cred,
        idmap: &MntIdmap,
        ino: InodeRef,
    ) -> Option<u32> {
        let f = "setattr_should_drop_suidgid";
        let mode = self.inode(ino).mode;
        let kill_suid = mode & S_ISUID != 0;
        let kill_sgid = mode & S_ISGID != 0
            && (mode & S_IXGRP != 0 || {
                let vg = self.i_gid_into_vfsgid(idmap, ino);
                !t.nested(|t| self.in_group_or_capable(t, cred, idmap, ino, vg))
            });
        if !kill_suid && !kill_sgid {
            tr!(t.info(f, "no set-id bit to kill", vec![]));
            return None;
        }
        let init = self.init_ns();
        if t.nested(|t| self.ns_capable(t, cred, init, Cap::FSETID)) {
            tr!(t.info(
                f,
                "capable(CAP_FSETID) in the initial namespace: the set-id bits stay",
                vec![],
            ));
            return None;
        }
        let mut new = mode;
        if kill_suid {
            new &= !S_ISUID;
        }
        if kill_sgid {
            new &= !S_ISGID;
        }
        tr!(t.info(
            f,
            "ATTR_KILL_SUID/ATTR_KILL_SGID with ATTR_FORCE: the bits go, setattr_prepare checks nothing more",
            vec![("mode", mode_str(new))],
        ));
        Some(new)
    }

    /// `utimensat(path, times, 0)`: explicit times (`ATTR_TIMES_SET`) need the owner or
    /// CAP_FOWNER; `NULL` or both `UTIME_NOW` (`ATTR_TOUCH`) also write permission; both
    /// `UTIME_OMIT` returns before the path is even looked up.
    pub(super) fn op_utimes(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        path: &str,
        times: UtimesTimes,
    ) -> OpResult {
        let explicit = match times {
            UtimesTimes::Omit => {
                tr!(t.pass(
                    "utimensat",
                    "both UTIME_OMIT: nothing to do, the path is not even looked up",
                    vec![],
                ));
                return Ok(None);
            }
            UtimesTimes::Now => {
                tr!(t.info(
                    "do_utimes",
                    "both UTIME_NOW is taken as times NULL (ATTR_TOUCH)",
                    vec![],
                ));
                false
            }
            UtimesTimes::Null => false,
            UtimesTimes::Explicit => true,
        };
        let cred = self.task(task).cred.clone();
        let (m, ino) = self.walk_existing(t, &cred, path)?;
        self.mnt_want_write(t, m)?;
        let idmap = self.mount(m).idmap.clone();
        if explicit {
            self.may_setattr_flags(t, ino, true)?;
        } else {
            self.may_setattr_touch(t, &cred, m, &idmap, ino)?;
        }
        self.setattr_unmapped_check(t, &idmap, ino, false, false)?;
        self.fs_setattr_flags(t, ino, explicit)?;
        if explicit {
            tr!(t.info(
                "setattr_prepare",
                "ATTR_TIMES_SET: explicit times need the owner or CAP_FOWNER",
                vec![],
            ));
            if !t.nested(|t| self.inode_owner_or_capable(t, &cred, &idmap, ino)) {
                return Err(Errno::EPERM.into());
            }
        }
        Ok(None)
    }

    /// `may_setattr` for `ATTR_TOUCH`: not on an immutable inode; the owner or CAP_FOWNER, or
    /// else write permission.
    fn may_setattr_touch(
        &self,
        t: &mut Tracer,
        cred: &Cred,
        m: crate::world::MountRef,
        idmap: &MntIdmap,
        ino: InodeRef,
    ) -> Check {
        let imm = self.inode(ino).immutable;
        if !tr!(t.check(
            !imm,
            "may_setattr",
            "ATTR_TOUCH (times NULL or UTIME_NOW) needs an inode that is not immutable (append-only is fine)",
            vec![],
        )) {
            return Err(Errno::EPERM.into());
        }
        if t.nested(|t| self.inode_owner_or_capable(t, cred, idmap, ino)) {
            return Ok(());
        }
        tr!(t.info(
            "may_setattr",
            "not the owner nor CAP_FOWNER: ATTR_TOUCH needs write permission",
            vec![],
        ));
        t.nested(|t| self.inode_permission(t, cred, m, ino, MAY_WRITE))
    }

    /// `may_open`: an append-only file opens for writing only with `O_APPEND` (never given
    /// here).
    pub(super) fn may_open_append(&self, t: &mut Tracer, ino: InodeRef, acc: u32) -> Check {
        if acc & MAY_WRITE == 0 || !self.inode(ino).append_only {
            return Ok(());
        }
        tr!(t.fail(
            "may_open",
            "an append-only file opened for writing without O_APPEND",
            vec![],
        ));
        Err(Errno::EPERM.into())
    }
}
