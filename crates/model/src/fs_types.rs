//! Rules that differ between filesystem types, declared once per type: whether the type's own
//! `->setattr` refuses immutable and append-only inodes, whether it supports POSIX ACLs,
//! whether a user namespace may mount it (`FS_USERNS_MOUNT`) and whether `FS_IOC_SETFLAGS`
//! sets its immutable and append-only flags. A type not in the table has no rules: where one
//! would decide, the answer is Unknown, naming the type.

/// What a filesystem type's `->setattr` does with an immutable or append-only inode once the
/// VFS (`may_setattr`) let the change through (a `chown(path, -1, -1)` that kills S_ISUID).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetattrFlags {
    /// It refuses with EPERM: an immutable inode always, an append-only one for a change of
    /// mode, owner, group or explicit times (`ext4_setattr`).
    Refuses,
    /// It does not look at the flags (`shmem_setattr`, `xfs_vn_setattr`, `btrfs_setattr`).
    Ignores,
    /// It passes the change to another filesystem (overlayfs: the upper layer's type decides).
    Delegates,
}

/// The rules of one filesystem type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsTypeRules {
    /// The type's name as `/proc/filesystems` shows it.
    pub name: &'static str,
    /// Its `->setattr` and the inode flags.
    pub setattr_flags: SetattrFlags,
    /// It supports POSIX ACLs (`SB_POSIXACL` can be set).
    pub posix_acl: bool,
    /// `FS_USERNS_MOUNT`: a user namespace's root may mount it.
    pub userns_mount: bool,
    /// `FS_IOC_SETFLAGS` sets `FS_IMMUTABLE_FL` and `FS_APPEND_FL` on it.
    pub ioc_setflags: bool,
    /// `s_maxbytes`, the largest file size (`inode_newsize_ok`); `None` where another
    /// filesystem's decides (overlay takes its upper layer's).
    pub max_bytes: Option<i64>,
    /// Its `->setattr` returns before applying anything when `truncate(2)` takes an empty file
    /// with no data extents to length 0 (`truncate(2)` sets neither ATTR_CTIME nor
    /// ATTR_MTIME), so the set-id bits `do_truncate` asked to kill stay (`xfs_setattr_size`).
    pub empty_truncate_is_noop: bool,
}

/// `MAX_LFS_FILESIZE` on 64-bit: `LLONG_MAX`.
pub const MAX_LFS_FILESIZE: i64 = i64::MAX;

/// ext4's `ext4_max_size` for extent-mapped files with 4 KiB blocks: `ee_block` is 32 bits,
/// less one block so that the last extent's length fits: (2^32 - 1) × 4096, 16 TiB - 4 KiB.
pub const EXT4_4K_MAX_BYTES: i64 = ((1i64 << 32) - 1) << 12;

/// The filesystem types whose differences are modelled. tmpfs, ext4, xfs and btrfs are checked
/// against Linux 6.18 (chown(-1, -1) of an immutable or append-only 4755 file: EPERM on ext4
/// only, and S_ISUID cleared on the others); overlay from fs/overlayfs/inode.c.
pub const FS_TYPES: &[FsTypeRules] = &[
    FsTypeRules {
        name: "tmpfs",
        setattr_flags: SetattrFlags::Ignores,
        posix_acl: true,
        userns_mount: true,
        ioc_setflags: true,
        max_bytes: Some(MAX_LFS_FILESIZE),
        empty_truncate_is_noop: false,
    },
    FsTypeRules {
        name: "ext4",
        setattr_flags: SetattrFlags::Refuses,
        posix_acl: true,
        userns_mount: false,
        ioc_setflags: true,
        max_bytes: Some(EXT4_4K_MAX_BYTES),
        empty_truncate_is_noop: false,
    },
    FsTypeRules {
        name: "btrfs",
        setattr_flags: SetattrFlags::Ignores,
        posix_acl: true,
        userns_mount: false,
        ioc_setflags: true,
        max_bytes: Some(MAX_LFS_FILESIZE),
        empty_truncate_is_noop: false,
    },
    FsTypeRules {
        name: "xfs",
        setattr_flags: SetattrFlags::Ignores,
        posix_acl: true,
        userns_mount: false,
        ioc_setflags: true,
        max_bytes: Some(MAX_LFS_FILESIZE),
        empty_truncate_is_noop: true,
    },
    FsTypeRules {
        name: "overlay",
        setattr_flags: SetattrFlags::Delegates,
        posix_acl: true,
        userns_mount: true,
        ioc_setflags: true,
        max_bytes: None,
        empty_truncate_is_noop: false,
    },
];

/// The rules of `fs_type`, or `None` for a type not modelled.
pub fn fs_type_rules(fs_type: &str) -> Option<&'static FsTypeRules> {
    FS_TYPES.iter().find(|r| r.name == fs_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ext4_refuses_and_tmpfs_ignores() {
        assert_eq!(
            fs_type_rules("ext4").map(|r| r.setattr_flags),
            Some(SetattrFlags::Refuses)
        );
        assert_eq!(
            fs_type_rules("tmpfs").map(|r| r.setattr_flags),
            Some(SetattrFlags::Ignores)
        );
        assert!(fs_type_rules("tmpfs").is_some_and(|r| r.userns_mount));
        assert!(fs_type_rules("ext4").is_some_and(|r| !r.userns_mount));
        assert!(fs_type_rules("nfs").is_none());
        assert_eq!(
            fs_type_rules("ext4").and_then(|r| r.max_bytes),
            Some(17_592_186_040_320)
        );
    }
}
