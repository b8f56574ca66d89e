//! `mount(2)` of a new filesystem instance, as a process in any user and mount namespace
//! may try it: the mount point is looked up (`user_path_at`), then `may_mount` (CAP_SYS_ADMIN
//! over the owner of the caller's mount namespace), then `mount_capable` (for a type with
//! `FS_USERNS_MOUNT` CAP_SYS_ADMIN in the caller's own user namespace, otherwise in the
//! initial one), then the type's own checks and `mount_too_revealing`.
//!
//! The new mount is not added to the world's mount table (the model keeps one, and the mount
//! lands in the caller's mount namespace only): its namespace records where it is
//! ([`NewMount`]), so that a later `umount` or remount there is answered, and an op on a path
//! below it, whose filesystem the model does not hold, is Unknown.

use crate::caps::Cap;
use crate::outcome::Tracer;
use crate::scenario::{knows_fs_type, FS_USERNS_MOUNT};
use crate::vfs::Stop;
use crate::world::{NsRef, TaskRef, World};
use credns_idmap::Errno;

use super::nstypes::{NsType, TypedNs, TypedNsRef};
use super::OpResult;

/// The `FS_USERNS_MOUNT` types whose own checks the model knows (none, or sysfs's).
const MODELLED: &[&str] = &["tmpfs", "ramfs", "proc", "sysfs"];

/// A filesystem a `mount` op put on `path` of a mount namespace (no per-mount flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMount {
    /// Where, normalised.
    pub path: String,
    /// `MNT_LOCKED`: it came with a copy of its namespace made for another user namespace.
    pub locked: bool,
}

/// The new mounts of `old` as `copy_mnt_ns` copies them for `owner`: locked when `owner` is
/// not `old`'s owner (`lock_mnt_tree`), or when they already were.
pub(super) fn copy_new_mounts(old: &TypedNs, owner: NsRef) -> Vec<NewMount> {
    old.new_mounts
        .iter()
        .map(|m| NewMount {
            path: m.path.clone(),
            locked: m.locked || old.owner != owner,
        })
        .collect()
}

impl World {
    /// The topmost new mount of `mnt` on `path` (normalised), by its index; Unknown when the
    /// path goes through one (below it is a filesystem the model does not hold).
    fn new_mount_at(&self, mnt: TypedNsRef, path: &str) -> Result<Option<usize>, crate::vfs::Stop> {
        let ns = self.typed_ns(mnt);
        if let Some(m) = ns
            .new_mounts
            .iter()
            .find(|m| path.starts_with(&format!("{}/", m.path.trim_end_matches('/'))))
        {
            return Err(Stop::unknown(format!(
                "the path is below {}, where an earlier mount op put a new filesystem in mount namespace \"{}\" (its content is not in the model)",
                m.path, ns.name
            )));
        }
        let under =
            |m: &str| path == m || path.starts_with(&format!("{}/", m.trim_end_matches('/')));
        if let Some(m) = ns.unmounted.iter().find(|m| under(m)) {
            return Err(Stop::unknown(format!(
                "the path is at or below {m}, a mount an earlier umount took out of mount namespace \"{}\" (what lies under it is not in the model)",
                ns.name
            )));
        }
        Ok(ns.new_mounts.iter().rposition(|m| m.path == path))
    }
}

impl World {
    /// `mount("none", path, fs_type, 0, NULL)`.
    pub(super) fn op_mount_new(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        fs_type: &str,
        path: &str,
    ) -> OpResult {
        let cred = self.task(task).cred.clone();
        let mnt = self.task_typed_ns(task, NsType::Mnt);
        let norm = crate::world::normalise(path).unwrap_or_default();
        self.new_mount_at(mnt, &norm)?;
        let (_, ino) = self.walk_existing(t, &cred, path)?;
        let mnt_owner = self.typed_ns(mnt).owner;
        let may = self.ns_capable(t, &cred, mnt_owner, Cap::SYS_ADMIN);
        if !tr!(t.check(
            may,
            "may_mount",
            format!(
                "CAP_SYS_ADMIN over \"{}\", the owner of mount namespace \"{}\"",
                self.ns(mnt_owner).name,
                self.typed_ns(mnt).name
            ),
            vec![],
        )) {
            return Err(Errno::EPERM.into());
        }
        let userns_mount = FS_USERNS_MOUNT.contains(&fs_type);
        if !userns_mount && !knows_fs_type(fs_type) {
            return Err(Stop::unknown(format!(
                "whether this kernel has filesystem type \"{fs_type}\" (get_fs_type: ENODEV when it does not)"
            )));
        }
        let (ns, why) = if userns_mount {
            (
                cred.user_ns,
                "FS_USERNS_MOUNT: CAP_SYS_ADMIN in the caller's own user namespace",
            )
        } else {
            (
                self.init_ns(),
                "no FS_USERNS_MOUNT: CAP_SYS_ADMIN in the initial user namespace",
            )
        };
        let ok = self.ns_capable(t, &cred, ns, Cap::SYS_ADMIN);
        if !tr!(t.check(ok, "mount_capable", format!("{fs_type} has {why}"), vec![])) {
            return Err(Errno::EPERM.into());
        }
        if !MODELLED.contains(&fs_type) {
            return Err(Stop::unknown(format!(
                "the options and own checks of {fs_type} (a source device, lower layers, a /dev/fuse fd) are not modelled"
            )));
        }
        if fs_type == "sysfs" {
            let net = self.task_typed_ns(task, NsType::Net);
            let owner = self.typed_ns(net).owner;
            let ok = self.ns_capable(t, &cred, owner, Cap::SYS_ADMIN);
            if !tr!(t.check(
                ok,
                "sysfs_get_tree",
                "kobj_ns_current_may_mount: CAP_SYS_ADMIN over the owner of the caller's network namespace",
                vec![],
            )) {
                return Err(Errno::EPERM.into());
            }
        }
        if matches!(fs_type, "proc" | "sysfs") && mnt_owner != self.init_ns() {
            return Err(Stop::unknown(format!(
                "mount_too_revealing: whether mount namespace \"{}\" holds a fully visible {fs_type} mount (the model does not hold the caller's mount table)",
                self.typed_ns(mnt).name
            )));
        }
        if !tr!(t.check(
            self.inode(ino).is_dir(),
            "graft_tree",
            "the mount point must be a directory (the new root is one)",
            vec![],
        )) {
            return Err(Errno::ENOTDIR.into());
        }
        tr!(t.pass(
            "do_add_mount",
            format!(
                "a new {fs_type} owned by \"{}\" is mounted in mount namespace \"{}\" (recorded there, not in the model's mount table)",
                self.ns(cred.user_ns).name,
                self.typed_ns(mnt).name
            ),
            vec![],
        ));
        self.typed_ns_mut(mnt).new_mounts.push(NewMount {
            path: norm,
            locked: false,
        });
        Ok(None)
    }
}

impl World {
    /// The first steps of umount and remount: the path looked up (Unknown at or below a mount
    /// the model does not hold), then `may_mount`. Gives the caller's mount namespace, the
    /// path the walk reached, and the new mount there, if an earlier op made one.
    fn lookup_then_may_mount(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        path: &str,
    ) -> Result<(TypedNsRef, String, Option<usize>), Stop> {
        let cred = self.task(task).cred.clone();
        let mnt = self.task_typed_ns(task, NsType::Mnt);
        // By the path as written, then as the walk resolved it through links.
        let written = crate::world::normalise(path).unwrap_or_default();
        self.new_mount_at(mnt, &written)?;
        let (_, _, norm) = self.walk_existing_at(t, &cred, path)?;
        let new = self.new_mount_at(mnt, &norm)?;
        let owner = self.typed_ns(mnt).owner;
        let may = self.ns_capable(t, &cred, owner, Cap::SYS_ADMIN);
        if !tr!(t.check(
            may,
            "may_mount",
            format!(
                "CAP_SYS_ADMIN over \"{}\", the owner of mount namespace \"{}\"",
                self.ns(owner).name,
                self.typed_ns(mnt).name
            ),
            vec![],
        )) {
            return Err(Errno::EPERM.into());
        }
        Ok((mnt, norm, new))
    }
}

impl World {
    /// `umount(path)` (`path_umount`, `can_umount`): the path is looked up, then `may_mount`,
    /// then it must be a mount point, then not `MNT_LOCKED`.
    pub(super) fn op_umount(&mut self, t: &mut Tracer, task: TaskRef, path: &str) -> OpResult {
        let (mnt, norm, new) = self.lookup_then_may_mount(t, task, path)?;
        if norm == "/" {
            return Err(Stop::unknown(
                "umount of the root of the mount namespace: whether it is the caller's root and busy (do_umount)",
            ));
        }
        if let Some(i) = new {
            return self.umount_new(t, mnt, i);
        }
        if !tr!(t.check(
            self.mount_at(&norm).is_some(),
            "can_umount",
            "the path must be a mount point (path_mounted)",
            vec![],
        )) {
            return Err(Errno::EINVAL.into());
        }
        let locked = self.typed_ns(mnt).locked;
        if !tr!(t.check(
            !locked,
            "can_umount",
            format!(
                "the mount must not be MNT_LOCKED (mount namespace \"{}\" was copied for a less privileged user namespace: lock_mnt_tree)",
                self.typed_ns(mnt).name
            ),
            vec![],
        )) {
            return Err(Errno::EINVAL.into());
        }
        tr!(t.pass(
            "do_umount",
            "unmounted in the caller's mount namespace (nothing holds it busy)",
            vec![],
        ));
        self.typed_ns_mut(mnt).unmounted.push(norm);
        Ok(None)
    }
}

/// The per-mount flags a bind remount sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RemountFlags {
    /// `MS_RDONLY`.
    pub read_only: bool,
    /// `MS_NOSUID`.
    pub nosuid: bool,
    /// `MS_NOEXEC`.
    pub noexec: bool,
}

impl World {
    /// `mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | flags, NULL)` (`do_reconfigure_mnt`):
    /// in a locked mount namespace a flag the mount has may not be cleared
    /// (`can_change_locked_flags`: EPERM). The access-time flags are kept (a remount without
    /// any keeps them), so `MNT_LOCK_ATIME` never refuses here.
    pub(super) fn op_remount(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        path: &str,
        f: RemountFlags,
    ) -> OpResult {
        let (mnt, norm, new) = self.lookup_then_may_mount(t, task, path)?;
        if norm == "/" {
            return Err(Stop::unknown(
                "a remount of the root of the mount namespace",
            ));
        }
        if new.is_some() {
            tr!(t.pass(
                "do_reconfigure_mnt",
                "a mount an earlier mount op made: it has no ro, nosuid or noexec that a lock could keep (can_change_locked_flags)",
                vec![],
            ));
            return Ok(None);
        }
        let Some(m) = self.mount_at(&norm) else {
            tr!(t.fail(
                "do_reconfigure_mnt",
                "the path must be a mount point (path_mounted)",
                vec![]
            ));
            return Err(Errno::EINVAL.into());
        };
        let mm = self.mount(m).clone();
        if self.typed_ns(mnt).locked {
            let cleared: Vec<&str> = [
                ("ro", mm.read_only && !f.read_only),
                ("nosuid", mm.nosuid && !f.nosuid),
                ("noexec", mm.noexec && !f.noexec),
            ]
            .into_iter()
            .filter(|(_, c)| *c)
            .map(|(n, _)| n)
            .collect();
            if !tr!(t.check(
                cleared.is_empty(),
                "can_change_locked_flags",
                "a locked mount's ro, nosuid, nodev and noexec may not be cleared",
                vec![(
                    "cleared",
                    if cleared.is_empty() {
                        "none".into()
                    } else {
                        cleared.join(",")
                    }
                )],
            )) {
                return Err(Errno::EPERM.into());
            }
        }
        tr!(t.pass(
            "do_reconfigure_mnt",
            "the mount's flags are set in the caller's mount namespace (the model's one mount table keeps its own)",
            vec![],
        ));
        Ok(None)
    }
}

impl World {
    /// `umount` of the `i`th new mount of `mnt` (the topmost at its path): refused when it is
    /// `MNT_LOCKED`, else gone from the namespace.
    fn umount_new(&mut self, t: &mut Tracer, mnt: TypedNsRef, i: usize) -> OpResult {
        let ns = self.typed_ns(mnt);
        let m = &ns.new_mounts[i];
        if !tr!(t.check(
            !m.locked,
            "can_umount",
            format!(
                "the mount an earlier mount op put on {} must not be MNT_LOCKED (it came with a copy of the namespace made for a less privileged user namespace: lock_mnt_tree)",
                m.path
            ),
            vec![],
        )) {
            return Err(Errno::EINVAL.into());
        }
        tr!(t.pass(
            "do_umount",
            format!(
                "the mount an earlier mount op put on {} is unmounted from mount namespace \"{}\"",
                m.path, ns.name
            ),
            vec![],
        ));
        self.typed_ns_mut(mnt).new_mounts.remove(i);
        Ok(None)
    }
}
