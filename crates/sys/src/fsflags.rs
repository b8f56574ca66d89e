//! Inode flags (`chattr(1)`'s `i` and `a`): `FS_IMMUTABLE_FL` and `FS_APPEND_FL`, read with
//! `FS_IOC_GETFLAGS` and set with `FS_IOC_SETFLAGS` on the file itself (setting either needs
//! CAP_LINUX_IMMUTABLE in the initial namespace).

use std::path::Path;

use rustix::fs::{ioctl_getflags, ioctl_setflags, IFlags, Mode, OFlags};

use crate::Error;

/// The two flags that refuse changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InodeFlags {
    /// `FS_IMMUTABLE_FL`.
    pub immutable: bool,
    /// `FS_APPEND_FL`.
    pub append_only: bool,
}

fn open_for_flags(path: &Path) -> Result<std::os::fd::OwnedFd, Error> {
    // O_NONBLOCK as chattr opens: a FIFO or device must not block or be touched.
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| Error::Path {
        op: "open",
        path: path.to_owned(),
        errno,
    })
}

/// The flags of `path` (`FS_IOC_GETFLAGS`).
#[doc(alias = "FS_IOC_GETFLAGS")]
pub fn inode_flags(path: &Path) -> Result<InodeFlags, Error> {
    let fd = open_for_flags(path)?;
    let f = ioctl_getflags(&fd).map_err(|errno| Error::Path {
        op: "FS_IOC_GETFLAGS",
        path: path.to_owned(),
        errno,
    })?;
    Ok(InodeFlags {
        immutable: f.contains(IFlags::IMMUTABLE),
        append_only: f.contains(IFlags::APPEND),
    })
}

/// Set or clear the two flags of `path`, keeping its other flags (`FS_IOC_SETFLAGS`).
#[doc(alias = "FS_IOC_SETFLAGS")]
pub fn set_inode_flags(path: &Path, want: InodeFlags) -> Result<(), Error> {
    let fd = open_for_flags(path)?;
    let err = |op, errno| Error::Path {
        op,
        path: path.to_owned(),
        errno,
    };
    let mut f = ioctl_getflags(&fd).map_err(|e| err("FS_IOC_GETFLAGS", e))?;
    f.set(IFlags::IMMUTABLE, want.immutable);
    f.set(IFlags::APPEND, want.append_only);
    ioctl_setflags(&fd, f).map_err(|e| err("FS_IOC_SETFLAGS", e))
}

/// Clear both flags on `dir` and everything below it, so the tree can be removed; errors are
/// skipped (a file that has gone needs nothing). Symbolic links are not followed.
pub fn clear_inode_flags_below(dir: &Path) {
    let Ok(md) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if md.file_type().is_symlink() {
        return;
    }
    if inode_flags(dir).is_ok_and(|f| f.immutable || f.append_only) {
        let _ = set_inode_flags(dir, InodeFlags::default());
    }
    if md.is_dir() {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                clear_inode_flags_below(&e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs root (CAP_LINUX_IMMUTABLE) and a filesystem that keeps the flags (the test's
    /// temporary directory: tmpfs or ext4).
    #[test]
    fn set_read_and_clear() {
        let d = tempfile::tempdir().expect("tempdir");
        let f = d.path().join("f");
        std::fs::write(&f, b"x").expect("write");
        let on = InodeFlags {
            immutable: true,
            append_only: true,
        };
        set_inode_flags(&f, on).expect("FS_IOC_SETFLAGS");
        assert_eq!(inode_flags(&f).expect("FS_IOC_GETFLAGS"), on);
        assert!(std::fs::remove_file(&f).is_err(), "an immutable file stays");
        clear_inode_flags_below(d.path());
        assert_eq!(
            inode_flags(&f).expect("FS_IOC_GETFLAGS"),
            InodeFlags::default()
        );
    }
}
