//! Worlds the kernel cannot build, refused when a scenario is parsed, each with the kernel's
//! rule (the function that refuses, and its errno). A declared world was made by someone: we
//! take the most privileged maker there is (host root, which holds every capability over every
//! namespace), so what is refused here is refused to everyone. Each refusal was tried on 6.18
//! (tests/conformance/tests/unbuildable.rs).

use std::ops::Range;

use super::raw::Ctx;
use crate::world::{NsRef, SbRef, World, FS_ALLOW_IDMAP};
use crate::Error;

/// Whether the model knows if `fs_type` has `FS_USERNS_MOUNT`.
pub fn knows_fs_type(fs_type: &str) -> bool {
    FS_USERNS_MOUNT.contains(&fs_type) || NOT_FS_USERNS_MOUNT.contains(&fs_type)
}

/// Filesystem types with `FS_USERNS_MOUNT` on 6.18: a superblock of one of these may belong to
/// (be mounted from) a non-initial user namespace.
pub const FS_USERNS_MOUNT: &[&str] = &[
    "tmpfs", "ramfs", "proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2", "overlay", "fuse",
    "bpf",
];

/// Types the model knows lack `FS_USERNS_MOUNT` (their superblocks always belong to the
/// initial namespace).
const NOT_FS_USERNS_MOUNT: &[&str] = &[
    "ext2",
    "ext3",
    "ext4",
    "xfs",
    "btrfs",
    "f2fs",
    "vfat",
    "msdos",
    "erofs",
    "squashfs",
    "hugetlbfs",
    "nfs",
    "iso9660",
];

/// `create_user_ns`: a namespace below one of level 32 or deeper is refused (ENOSPC).
pub(super) fn check_userns_level(
    c: &Ctx,
    w: &World,
    parent: NsRef,
    span: Range<usize>,
) -> Result<(), Error> {
    let level = w.ns(parent).level;
    if level > 32 {
        return Err(c.err(
            span,
            format!(
                "the kernel cannot create this namespace: its parent \"{}\" is at level {level} (create_user_ns: ENOSPC; at most 32 levels below the initial namespace)",
                w.ns(parent).name
            ),
        ));
    }
    Ok(())
}

/// `proc_setgroups_write`: "allow" once the flag is cleared is EPERM, and a namespace starts
/// with its parent's flag, so "allow" below a "deny" namespace cannot be made.
pub(super) fn check_setgroups_allow(
    c: &Ctx,
    w: &World,
    parent: NsRef,
    span: Range<usize>,
) -> Result<(), Error> {
    if w.ns(parent).setgroups_allowed {
        return Ok(());
    }
    Err(c.err(
        span,
        format!(
            "setgroups \"allow\" cannot be written in a namespace whose parent \"{}\" denies setgroups: a new namespace starts with its parent's flag, and \"allow\" once denied is refused (proc_setgroups_write: EPERM)",
            w.ns(parent).name
        ),
    ))
}

/// `sget_fc`: a superblock of a type without `FS_USERNS_MOUNT` never belongs to a non-initial
/// namespace (EPERM, "VFS: Mounting from non-initial user namespace is not allowed").
pub(super) fn check_superblock_ns(
    c: &Ctx,
    w: &World,
    fs_type: &str,
    ns: NsRef,
    span: Range<usize>,
) -> Result<(), Error> {
    if ns == w.init_ns() || FS_USERNS_MOUNT.contains(&fs_type) {
        return Ok(());
    }
    let name = &w.ns(ns).name;
    if NOT_FS_USERNS_MOUNT.contains(&fs_type) {
        return Err(c.err(
            span,
            format!(
                "a {fs_type} filesystem cannot belong to namespace \"{name}\": {fs_type} lacks FS_USERNS_MOUNT, so its superblocks belong to the initial namespace (sget_fc: EPERM)"
            ),
        ));
    }
    Err(c.err(
        span,
        format!(
            "the model does not know whether filesystem type \"{fs_type}\" has FS_USERNS_MOUNT, which decides whether it can belong to namespace \"{name}\" (known with it: {})",
            FS_USERNS_MOUNT.join(", ")
        ),
    ))
}

/// `build_mount_idmapped` then `can_idmap_mount` (whose first check, since 6.15, is that the
/// namespace has both maps), in the kernel's order, for an idmapped mount
/// of `sb` through namespace `ns` (made by host root on a detached clone, so the capability and
/// detached-mount checks pass).
pub(super) fn check_idmapped_mount(
    c: &Ctx,
    w: &World,
    sb: SbRef,
    ns: NsRef,
    span: Range<usize>,
) -> Result<(), Error> {
    let n = w.ns(ns);
    let s = w.sb(sb);
    let refuse = |why: String| Err(c.err(span.clone(), why));
    if ns == w.init_ns() {
        return refuse(
            "a mount cannot be idmapped with the initial namespace (build_mount_idmapped: EPERM): declare a namespace with an identity map instead"
                .to_string(),
        );
    }
    let missing: Vec<&str> = [("uid_map", &n.uid_map), ("gid_map", &n.gid_map)]
        .into_iter()
        .filter(|(_, m)| m.is_empty())
        .map(|(k, _)| k)
        .collect();
    if !missing.is_empty() {
        return refuse(format!(
            "a mount cannot be idmapped through namespace \"{}\": it has no {} (can_idmap_mount: EINVAL)",
            n.name,
            missing.join(" and no ")
        ));
    }
    if ns == s.user_ns {
        return refuse(format!(
            "filesystem \"{}\" belongs to namespace \"{}\" already: an idmap with the superblock's own namespace is refused (can_idmap_mount: EINVAL)",
            s.name, n.name
        ));
    }
    if !FS_ALLOW_IDMAP.contains(&s.fs_type.as_str()) {
        return refuse(format!(
            "filesystem \"{}\" is {}, which lacks FS_ALLOW_IDMAP (can_idmap_mount: EINVAL)",
            s.name, s.fs_type
        ));
    }
    Ok(())
}
