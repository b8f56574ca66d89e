//! Directory-entry operations (fs/namei.c): `unlink`, `rmdir`, `renameat2`, `link`, `symlink`
//! and `open(O_CREAT)` of what may already exist, with the checks they share: `may_delete`
//! with the sticky bit (`check_sticky`), `may_create`, `may_linkat` (fs.protected_hardlinks)
//! and `may_create_in_sticky` (fs.protected_regular, fs.protected_fifos).
//!
//! None of them follows a trailing symbolic link except `open(O_CREAT)` without `O_EXCL`,
//! which creates a dangling link's target (the walk: walk.rs).

use serde::Serialize;

use crate::caps::Cap;
use crate::outcome::Tracer;
use crate::vfs::{mode_str, Check, Stop, MAY_EXEC, MAY_WRITE};
use crate::world::{
    Cred, InodeRef, MountRef, TaskRef, World, S_IFLNK, S_ISGID, S_ISUID, S_ISVTX, S_IXGRP,
};
use credns_idmap::Errno;

use super::{out, OpResult};
use crate::walk::Last;

/// The fs.protected_* sysctls the directory-entry rules read. They are global (not per user
/// namespace); the kernel's built-in defaults are all 0 (distributions often set them to 1
/// at boot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Protected {
    /// `fs.protected_hardlinks` (0 or 1).
    pub hardlinks: u32,
    /// `fs.protected_symlinks` (0 or 1): read by `may_follow_link` (walk.rs).
    pub symlinks: u32,
    /// `fs.protected_regular` (0, 1 or 2).
    pub regular: u32,
    /// `fs.protected_fifos` (0, 1 or 2): the model has no FIFOs, so nothing reads it yet.
    pub fifos: u32,
}

/// `RENAME_NOREPLACE`.
pub const RENAME_NOREPLACE: u32 = 1;
/// `RENAME_EXCHANGE`.
pub const RENAME_EXCHANGE: u32 = 2;

/// The entry the last component of a path names, as `filename_parentat` and
/// `lookup_one_qstr_excl` find it: in the parent directory, under any mount on it.
struct Entry {
    path: String,
    mnt: MountRef,
    dir: InodeRef,
    name: String,
    inode: Option<InodeRef>,
    /// A mount sits on the entry (`is_local_mountpoint`).
    mountpoint: bool,
}

/// `a` is a strict ancestor of `b` (both normal paths).
fn is_ancestor(a: &str, b: &str) -> bool {
    a != b && (a == "/" || (b.starts_with(a) && b.as_bytes().get(a.len()) == Some(&b'/')))
}

/// The child of `a` on the way to its descendant `b`.
fn child_towards(a: &str, b: &str) -> String {
    let rest = b[a.len()..].trim_start_matches('/');
    let first = rest.split('/').next().unwrap_or("");
    if a == "/" {
        format!("/{first}")
    } else {
        format!("{a}/{first}")
    }
}

fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

impl World {
    /// `filename_parentat` and the lookup of the last component in the parent. `None` for
    /// `/` (no last component: `LAST_ROOT`).
    fn entry(&self, t: &mut Tracer, cred: &Cred, path: &str) -> Result<Option<Entry>, Stop> {
        // `filename_parentat`: the last component is never followed.
        let w = self.path_walk(t, cred, path, Last::NoFollow)?;
        let normal = w.path_of(path);
        if normal == "/" {
            return Ok(None);
        }
        let (mnt, dir) = w.parent;
        let name = normal.rsplit('/').next().unwrap_or("").to_owned();
        let inode = self.inode(dir).children.get(&name).copied();
        let mountpoint = self.mount_at(&normal).is_some();
        if mountpoint && inode.is_none() {
            return Err(Stop::unknown(format!(
                "the directory under the mount point \"{normal}\" is not declared"
            )));
        }
        Ok(Some(Entry {
            path: normal,
            mnt,
            dir,
            name,
            inode,
            mountpoint,
        }))
    }

    fn absent(&self, t: &mut Tracer, e: &Entry) -> Result<InodeRef, Stop> {
        match e.inode {
            Some(i) => Ok(i),
            None => {
                tr!(t.fail(
                    "lookup_one_qstr_excl",
                    format!("\"{}\" does not exist", e.path),
                    vec![]
                ));
                Err(Errno::ENOENT.into())
            }
        }
    }

    /// A mount below `path` (the model keeps mounts by path; moving or removing a directory
    /// that holds one is not modelled).
    fn mount_below(&self, path: &str) -> Check {
        match self.mounts().find(|(_, m)| is_ancestor(path, &m.path)) {
            Some((_, m)) => Err(Stop::unknown(format!(
                "\"{path}\" holds the mount point \"{}\": the model keeps mounts by path",
                m.path
            ))),
            None => Ok(()),
        }
    }

    /// `check_sticky` / `__check_sticky`: in a sticky directory only the file's owner, the
    /// directory's owner, or CAP_FOWNER over the file (its owner and group mapped in the
    /// caller's namespace) may remove or replace an entry. True when that refuses.
    fn check_sticky(&self, t: &mut Tracer, cred: &Cred, e: &Entry, victim: InodeRef) -> bool {
        let f = "check_sticky";
        let d = self.inode(e.dir);
        if d.mode & S_ISVTX == 0 {
            tr!(t.info(
                f,
                "the directory is not sticky",
                vec![("dir_mode", mode_str(d.mode))]
            ));
            return false;
        }
        let idmap = &self.mount(e.mnt).idmap;
        let vu = self.i_uid_into_vfsuid(idmap, victim);
        let du = self.i_uid_into_vfsuid(idmap, e.dir);
        let vals = vec![
            ("fsuid", cred.fsuid.0.to_string()),
            ("file_vfsuid", vu.show()),
            ("dir_vfsuid", du.show()),
        ];
        if vu.eq_kuid(cred.fsuid) {
            tr!(t.pass(
                "__check_sticky",
                "sticky directory: the caller owns the file",
                vals
            ));
            return false;
        }
        if du.eq_kuid(cred.fsuid) {
            tr!(t.pass(
                "__check_sticky",
                "sticky directory: the caller owns the directory",
                vals
            ));
            return false;
        }
        tr!(t.info(
            "__check_sticky",
            "sticky directory, owner of neither: CAP_FOWNER over the file decides",
            vals
        ));
        !t.nested(|t| self.capable_wrt_inode_uidgid(t, cred, idmap, victim, Cap::FOWNER))
    }

    /// `may_delete(idmap, dir, victim, isdir)`.
    fn may_delete(
        &self,
        t: &mut Tracer,
        cred: &Cred,
        e: &Entry,
        victim: InodeRef,
        isdir: bool,
    ) -> Check {
        let f = "may_delete";
        tr!(t.info(f, format!("may the caller remove \"{}\"?", e.path), vec![]));
        t.nested(|t| {
            let idmap = &self.mount(e.mnt).idmap;
            let (vu, vg) = self.trace_inode_ids(t, idmap, victim, "the victim");
            let ok = vu.is_valid() && vg.is_valid();
            tr!(t.check(
                ok,
                f,
                "the victim's owner and group must be valid through the mount (inode writeback)",
                vec![]
            ));
            if !ok {
                return Err(Errno::EOVERFLOW.into());
            }
            t.nested(|t| self.inode_permission(t, cred, e.mnt, e.dir, MAY_WRITE | MAY_EXEC))?;
            if self.check_sticky(t, cred, e, victim) {
                tr!(t.fail(f, "the sticky bit refuses", vec![]));
                return Err(Errno::EPERM.into());
            }
            let i = self.inode(victim);
            if i.immutable {
                tr!(t.fail(f, "the victim is immutable", vec![]));
                return Err(Errno::EPERM.into());
            }
            if isdir && !i.is_dir() {
                tr!(t.fail(f, "a directory was wanted", vec![]));
                return Err(Errno::ENOTDIR.into());
            }
            if !isdir && i.is_dir() {
                tr!(t.fail(f, "the victim is a directory", vec![]));
                return Err(Errno::EISDIR.into());
            }
            tr!(t.pass(f, "the entry may be removed", vec![]));
            Ok(())
        })
    }

    /// `may_create(idmap, dir, child)` for an absent child.
    fn may_create(&self, t: &mut Tracer, cred: &Cred, e: &Entry) -> Check {
        tr!(t.info(
            "may_create",
            format!("may the caller create \"{}\"?", e.path),
            vec![]
        ));
        let (ok, _, _) = t.nested(|t| self.fsuidgid_has_mapping(t, cred, e.mnt));
        if !ok {
            return Err(Errno::EOVERFLOW.into());
        }
        t.nested(|t| self.inode_permission(t, cred, e.mnt, e.dir, MAY_WRITE | MAY_EXEC))
    }

    /// `filename_create`: `/` or an existing entry is EEXIST, then a read-only mount.
    fn filename_create(&self, t: &mut Tracer, cred: &Cred, path: &str) -> Result<Entry, Stop> {
        let Some(e) = self.entry(t, cred, path)? else {
            tr!(t.fail("filename_create", "\"/\" has no last component", vec![]));
            return Err(Errno::EEXIST.into());
        };
        if e.inode.is_some() {
            tr!(t.fail(
                "filename_create",
                format!("\"{}\" already exists", e.path),
                vec![]
            ));
            return Err(Errno::EEXIST.into());
        }
        self.mnt_want_write(t, e.mnt)?;
        Ok(e)
    }

    fn set_entry(&mut self, dir: InodeRef, name: &str, ino: Option<InodeRef>) {
        let children = &mut self.inode_mut(dir).children;
        match ino {
            Some(i) => children.insert(name.to_owned(), i),
            None => children.remove(name),
        };
    }

    pub(super) fn op_unlink(&mut self, t: &mut Tracer, task: TaskRef, path: &str) -> OpResult {
        let cred = self.task(task).cred.clone();
        let Some(e) = self.entry(t, &cred, path)? else {
            tr!(t.fail("do_unlinkat", "\"/\" has no last component", vec![]));
            return Err(Errno::EISDIR.into());
        };
        self.mnt_want_write(t, e.mnt)?;
        let v = self.absent(t, &e)?;
        self.may_delete(t, &cred, &e, v, false)?;
        if e.mountpoint {
            tr!(t.fail("vfs_unlink", "the entry is a mount point", vec![]));
            return Err(Errno::EBUSY.into());
        }
        self.set_entry(e.dir, &e.name, None);
        Ok(None)
    }

    pub(super) fn op_rmdir(&mut self, t: &mut Tracer, task: TaskRef, path: &str) -> OpResult {
        let cred = self.task(task).cred.clone();
        let Some(e) = self.entry(t, &cred, path)? else {
            tr!(t.fail("do_rmdir", "\"/\" is LAST_ROOT", vec![]));
            return Err(Errno::EBUSY.into());
        };
        self.mnt_want_write(t, e.mnt)?;
        let v = self.absent(t, &e)?;
        self.may_delete(t, &cred, &e, v, true)?;
        if e.mountpoint {
            tr!(t.fail("vfs_rmdir", "the directory is a mount point", vec![]));
            return Err(Errno::EBUSY.into());
        }
        let n = self.inode(v).children.len();
        tr!(t.check(
            n == 0,
            "simple_rmdir",
            "the directory must be empty",
            vec![("entries", n.to_string())]
        ));
        if n != 0 {
            return Err(Errno::ENOTEMPTY.into());
        }
        self.mount_below(&e.path)?;
        self.set_entry(e.dir, &e.name, None);
        Ok(None)
    }

    pub(super) fn op_rename(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        from: &str,
        to: &str,
        flags: u32,
    ) -> OpResult {
        let f = "do_renameat2";
        let cred = self.task(task).cred.clone();
        let exchange = flags & RENAME_EXCHANGE != 0;
        if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE) != 0
            || flags == RENAME_NOREPLACE | RENAME_EXCHANGE
        {
            tr!(t.fail(f, "invalid flags", vec![("flags", flags.to_string())]));
            return Err(Errno::EINVAL.into());
        }
        let old = self.entry(t, &cred, from)?;
        let new = self.entry(t, &cred, to)?;
        if let (Some(o), Some(n)) = (&old, &new) {
            let same = o.mnt == n.mnt;
            tr!(t.check(same, f, "both parents must be on the same mount", vec![]));
            if !same {
                return Err(Errno::EXDEV.into());
            }
        }
        let Some(old) = old else {
            tr!(t.fail(f, "the source \"/\" is LAST_ROOT", vec![]));
            return Err(Errno::EBUSY.into());
        };
        let Some(new) = new else {
            tr!(t.fail(f, "the target \"/\" is LAST_ROOT", vec![]));
            return Err(if flags & RENAME_NOREPLACE != 0 {
                Errno::EEXIST
            } else {
                Errno::EBUSY
            }
            .into());
        };
        self.mnt_want_write(t, old.mnt)?;
        let source = self.absent(t, &old)?;
        if flags & RENAME_NOREPLACE != 0 && new.inode.is_some() {
            tr!(t.fail(
                "lookup_one_qstr_excl",
                "RENAME_NOREPLACE: the target exists",
                vec![]
            ));
            return Err(Errno::EEXIST.into());
        }
        if exchange {
            self.absent(t, &new)?;
        }
        self.rename_trap(t, &old, &new, exchange)?;
        self.vfs_rename(t, &cred, &old, &new, source, exchange)
    }

    /// `lock_rename`'s trap: a directory may not move below itself, nor may the target be an
    /// ancestor of the source.
    fn rename_trap(&self, t: &mut Tracer, old: &Entry, new: &Entry, exchange: bool) -> Check {
        let (op, np) = (parent_of(&old.path), parent_of(&new.path));
        if is_ancestor(op, np) && old.path == child_towards(op, np) {
            tr!(t.fail(
                "do_renameat2",
                "the source is an ancestor of the target",
                vec![]
            ));
            return Err(Errno::EINVAL.into());
        }
        if is_ancestor(np, op) && new.path == child_towards(np, op) {
            tr!(t.fail(
                "do_renameat2",
                "the target is an ancestor of the source",
                vec![]
            ));
            return Err(if exchange {
                Errno::EINVAL
            } else {
                Errno::ENOTEMPTY
            }
            .into());
        }
        Ok(())
    }

    /// `vfs_rename` and the filesystem's rename.
    fn vfs_rename(
        &mut self,
        t: &mut Tracer,
        cred: &Cred,
        old: &Entry,
        new: &Entry,
        source: InodeRef,
        exchange: bool,
    ) -> OpResult {
        let f = "vfs_rename";
        if new.inode == Some(source) {
            tr!(t.pass(
                f,
                "source and target are the same inode: nothing to do",
                vec![]
            ));
            return Ok(None);
        }
        let is_dir = self.inode(source).is_dir();
        self.may_delete(t, cred, old, source, is_dir)?;
        let new_is_dir = new.inode.is_some_and(|i| self.inode(i).is_dir());
        match new.inode {
            None => self.may_create(t, cred, new)?,
            Some(target) => self.may_delete(
                t,
                cred,
                new,
                target,
                if exchange { new_is_dir } else { is_dir },
            )?,
        }
        if new.dir != old.dir {
            if is_dir {
                tr!(t.info(
                    f,
                    "a directory changing parent needs write on itself (its \"..\")",
                    vec![]
                ));
                t.nested(|t| self.inode_permission(t, cred, old.mnt, source, MAY_WRITE))?;
            }
            if let (true, true, Some(target)) = (exchange, new_is_dir, new.inode) {
                tr!(t.info(
                    f,
                    "the exchanged directory changes parent: write on it",
                    vec![]
                ));
                t.nested(|t| self.inode_permission(t, cred, new.mnt, target, MAY_WRITE))?;
            }
        }
        if old.mountpoint || new.mountpoint {
            tr!(t.fail(f, "a mount point cannot be renamed or replaced", vec![]));
            return Err(Errno::EBUSY.into());
        }
        if let (false, Some(target)) = (exchange, new.inode) {
            let n = self.inode(target).children.len();
            if n != 0 {
                tr!(t.fail(
                    "simple_rename",
                    "the target directory is not empty",
                    vec![("entries", n.to_string())]
                ));
                return Err(Errno::ENOTEMPTY.into());
            }
        }
        if is_dir {
            self.mount_below(&old.path)?;
        }
        if new_is_dir {
            self.mount_below(&new.path)?;
        }
        tr!(t.pass(
            f,
            if exchange {
                "the entries are exchanged"
            } else {
                "the entry moves"
            },
            vec![]
        ));
        let target = new.inode;
        self.set_entry(old.dir, &old.name, if exchange { target } else { None });
        self.set_entry(new.dir, &new.name, Some(source));
        Ok(None)
    }

    pub(super) fn op_link(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        from: &str,
        to: &str,
    ) -> OpResult {
        let cred = self.task(task).cred.clone();
        // Without AT_SYMLINK_FOLLOW: a trailing link is linked itself.
        let w = self.path_walk(t, &cred, from, Last::NoFollow)?;
        let Some((om, ino)) = w.target else {
            tr!(t.fail(
                "filename_lookup",
                format!("\"{from}\" does not exist"),
                vec![]
            ));
            return Err(Errno::ENOENT.into());
        };
        let new = self.filename_create(t, &cred, to)?;
        let same = om == new.mnt;
        tr!(t.check(
            same,
            "do_linkat",
            "old and new must be on the same mount",
            vec![]
        ));
        if !same {
            return Err(Errno::EXDEV.into());
        }
        self.may_linkat(t, &cred, new.mnt, ino)?;
        let f = "vfs_link";
        self.may_create(t, &cred, &new)?;
        let i = self.inode(ino);
        if i.immutable {
            tr!(t.fail(f, "a link to an immutable file cannot be made", vec![]));
            return Err(Errno::EPERM.into());
        }
        if i.is_dir() {
            tr!(t.fail(f, "a directory cannot be hard-linked", vec![]));
            return Err(Errno::EPERM.into());
        }
        tr!(t.pass(f, "the new name links the inode", vec![]));
        self.set_entry(new.dir, &new.name, Some(ino));
        Ok(None)
    }

    /// `may_linkat`: owner and group valid through the mount; with fs.protected_hardlinks, a
    /// safe source (`safe_hardlink_source`) or `inode_owner_or_capable`.
    fn may_linkat(&self, t: &mut Tracer, cred: &Cred, m: MountRef, ino: InodeRef) -> Check {
        let f = "may_linkat";
        let idmap = &self.mount(m).idmap;
        let (vu, vg) = self.trace_inode_ids(t, idmap, ino, "the link's source");
        let ok = vu.is_valid() && vg.is_valid();
        tr!(t.check(
            ok,
            f,
            "the source's owner and group must be valid through the mount",
            vec![]
        ));
        if !ok {
            return Err(Errno::EOVERFLOW.into());
        }
        let on = self.protected.hardlinks != 0;
        tr!(t.info(
            f,
            if on {
                "fs.protected_hardlinks is on: a safe source, or its owner or CAP_FOWNER"
            } else {
                "fs.protected_hardlinks is off"
            },
            vec![("protected_hardlinks", self.protected.hardlinks.to_string())]
        ));
        if !on {
            return Ok(());
        }
        if t.nested(|t| self.safe_hardlink_source(t, cred, m, ino)) {
            return Ok(());
        }
        if t.nested(|t| self.inode_owner_or_capable(t, cred, idmap, ino)) {
            return Ok(());
        }
        tr!(t.fail(
            f,
            "not a safe source, and neither its owner nor capable over it",
            vec![]
        ));
        Err(Errno::EPERM.into())
    }

    /// `safe_hardlink_source`: a regular file, not setuid, not setgid+group-exec, that the
    /// caller may read and write.
    fn safe_hardlink_source(
        &self,
        t: &mut Tracer,
        cred: &Cred,
        m: MountRef,
        ino: InodeRef,
    ) -> bool {
        let f = "safe_hardlink_source";
        let i = self.inode(ino);
        let mode = vec![("mode", mode_str(i.mode))];
        if !i.is_reg() {
            tr!(t.fail(f, "not a regular file", mode));
            return false;
        }
        if i.mode & S_ISUID != 0 {
            tr!(t.fail(f, "setuid", mode));
            return false;
        }
        if i.mode & (S_ISGID | S_IXGRP) == (S_ISGID | S_IXGRP) {
            tr!(t.fail(f, "setgid and group-executable", mode));
            return false;
        }
        tr!(t.info(f, "the caller must be able to read and write it", vec![]));
        let ok = t
            .nested(|t| self.inode_permission(t, cred, m, ino, crate::vfs::MAY_READ | MAY_WRITE))
            .is_ok();
        tr!(t.check(ok, f, "readable and writable by the caller", vec![]));
        ok
    }

    pub(super) fn op_symlink(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        target: &str,
        path: &str,
    ) -> OpResult {
        let cred = self.task(task).cred.clone();
        if target.is_empty() {
            tr!(t.fail("getname", "an empty target", vec![]));
            return Err(Errno::ENOENT.into());
        }
        let e = self.filename_create(t, &cred, path)?;
        self.may_create(t, &cred, &e)?;
        let (_, ku, kg) = self.fsuidgid_has_mapping(&mut Tracer::off(), &cred, e.mnt);
        let d = self.inode(e.dir);
        let (gid, how) = if d.mode & S_ISGID != 0 {
            (d.gid, "the directory is setgid: group inherited from it")
        } else {
            (kg, "group from the caller's fsgid")
        };
        let sbns = self.sb(d.sb).user_ns;
        let (du, dg) = (
            self.show_in(sbns, ku.0, true),
            self.show_in(sbns, gid.0, false),
        );
        tr!(t.info(
            "inode_init_owner",
            format!("owner from the caller's fsuid; {how}"),
            vec![("on_disk", format!("{du}:{dg}"))]
        ));
        let ino = self
            .add_inode(&e.path, false, ku, gid, 0o777)
            .map_err(|x| Stop::unknown(format!("model could not add the inode: {x}")))?;
        let i = self.inode_mut(ino);
        i.mode = S_IFLNK | 0o777;
        i.link = Some(target.to_owned());
        Ok(Some(out(vec![("disk_uid", du), ("disk_gid", dg)])))
    }

    /// `open(path, O_CREAT | access, mode)` without `O_EXCL`: create when absent (as
    /// `create`), else `do_open` on the existing file with `may_create_in_sticky`.
    pub(super) fn op_open_creat(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        path: &str,
        read: bool,
        write: bool,
        mode: u32,
    ) -> OpResult {
        let cred = self.task(task).cred.clone();
        // Without O_EXCL, O_CREAT follows a trailing link (`open_last_lookups`): a dangling
        // one creates its target.
        let w = self.path_walk(t, &cred, path, Last::Creat)?;
        if w.slash {
            tr!(t.fail(
                "open_last_lookups",
                "O_CREAT of a name with a slash after it (from a link's target)",
                vec![]
            ));
            return Err(Errno::EISDIR.into());
        }
        let Some((m, ino)) = w.target else {
            return self.create_at(t, task, w, path, mode, false).map(|_| None);
        };
        let i = self.inode(ino);
        if i.is_dir() {
            tr!(t.fail("do_open", "O_CREAT on a directory", vec![]));
            return Err(Errno::EISDIR.into());
        }
        self.may_create_in_sticky(t, &cred, w.parent, (m, ino))?;
        let acc = if write { MAY_WRITE } else { 0 }
            | if read || !write {
                crate::vfs::MAY_READ
            } else {
                0
            };
        tr!(t.info(
            "may_open",
            format!("open for {}", crate::vfs::mask_str(acc)),
            vec![]
        ));
        t.nested(|t| self.inode_permission(t, &cred, m, ino, acc))?;
        if write {
            self.mnt_want_write(t, m)?;
        }
        Ok(None)
    }

    /// `may_create_in_sticky`: with fs.protected_regular, an O_CREAT open of an existing
    /// regular file in a sticky directory that is world-writable (1) or group-writable (2)
    /// is refused unless the file's owner is the directory's owner or the caller.
    fn may_create_in_sticky(
        &self,
        t: &mut Tracer,
        cred: &Cred,
        (pm, dir): (MountRef, InodeRef),
        (m, ino): (MountRef, InodeRef),
    ) -> Check {
        let f = "may_create_in_sticky";
        let d = self.inode(dir);
        let i = self.inode(ino);
        let p = self.protected;
        let vals = vec![
            ("dir_mode", mode_str(d.mode)),
            ("protected_regular", p.regular.to_string()),
        ];
        if d.mode & S_ISVTX == 0 {
            tr!(t.pass(f, "the directory is not sticky", vals));
            return Ok(());
        }
        if i.is_reg() && p.regular == 0 {
            tr!(t.pass(f, "fs.protected_regular is off", vals));
            return Ok(());
        }
        let iu = self.i_uid_into_vfsuid(&self.mount(m).idmap, ino);
        let du = self.i_uid_into_vfsuid(&self.mount(pm).idmap, dir);
        let ids = vec![
            ("file_vfsuid", iu.show()),
            ("dir_vfsuid", du.show()),
            ("fsuid", cred.fsuid.0.to_string()),
        ];
        if iu.is_valid() && iu == du {
            tr!(t.pass(f, "the file's owner owns the directory", ids));
            return Ok(());
        }
        if iu.eq_kuid(cred.fsuid) {
            tr!(t.pass(f, "the caller owns the file", ids));
            return Ok(());
        }
        if d.mode & 0o002 != 0 {
            tr!(t.fail(
                f,
                "someone else's file in a sticky world-writable directory",
                ids
            ));
            return Err(Errno::EACCES.into());
        }
        if d.mode & 0o020 != 0 && i.is_reg() && p.regular >= 2 {
            tr!(t.fail(
                f,
                "someone else's file in a sticky group-writable directory (protected_regular 2)",
                ids
            ));
            return Err(Errno::EACCES.into());
        }
        tr!(t.pass(
            f,
            "the directory is neither world-writable nor (at level 2) group-writable",
            ids
        ));
        Ok(())
    }
}
