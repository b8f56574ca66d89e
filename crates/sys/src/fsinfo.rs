//! What the filesystem says about a path, for a snapshot of it: the mount it is on
//! (`statx(2)`'s unique mount id) and the inode's immutable and append-only flags (its
//! attributes), an idmapped mount's maps (`statmount(2)`, `STATMOUNT_MNT_UIDMAP`/`GIDMAP`,
//! Linux 6.15+), the raw POSIX access ACL (`getxattr(2)` of `system.posix_acl_access`) and the
//! raw file capabilities (`security.capability`).

use std::path::Path;

use linux_raw_sys::general as uapi;
use rustix::fs::{statx, AtFlags, StatxFlags, CWD};

use crate::{Errno, Error};

/// `STATX_MNT_ID_UNIQUE` (Linux 6.8): the 64-bit mount id `statmount(2)` takes.
const STATX_MNT_ID_UNIQUE: u32 = 0x4000;

/// What `statx(2)` says of an inode beyond `stat(2)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InodeFacts {
    /// The unique id of the mount it is on.
    pub mount_id: u64,
    /// `STATX_ATTR_IMMUTABLE` (`chattr +i`).
    pub immutable: bool,
    /// `STATX_ATTR_APPEND` (`chattr +a`).
    pub append: bool,
}

/// The mount `path` (not following a final symlink) is on, and its immutable and append-only
/// flags (`stx_attributes`; a filesystem without them reports neither).
#[doc(alias = "statx")]
pub fn inode_facts(path: &Path) -> Result<InodeFacts, Error> {
    let st = statx(
        CWD,
        path,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::from_bits_retain(STATX_MNT_ID_UNIQUE),
    )
    .map_err(|errno| Error::Path {
        op: "statx",
        path: path.to_owned(),
        errno,
    })?;
    if st.stx_mask & STATX_MNT_ID_UNIQUE == 0 {
        return Err(Error::Path {
            op: "statx (STATX_MNT_ID_UNIQUE)",
            path: path.to_owned(),
            errno: Errno::NOSYS,
        });
    }
    let known = st.stx_attributes & st.stx_attributes_mask;
    let attr = |bit: u32| known.bits() & u64::from(bit) != 0;
    Ok(InodeFacts {
        mount_id: st.stx_mnt_id,
        immutable: attr(uapi::STATX_ATTR_IMMUTABLE),
        append: attr(uapi::STATX_ATTR_APPEND),
    })
}

/// The unique mount id of the mount `path` (not following a final symlink) is on.
#[doc(alias = "STATX_MNT_ID_UNIQUE")]
pub fn mount_id(path: &Path) -> Result<u64, Error> {
    inode_facts(path).map(|f| f.mount_id)
}

/// An idmapped mount's maps, each extent as `statmount(2)` reports it: `(first, lower,
/// count)`, the lower ids in the caller's user namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountIdmap {
    /// uid extents.
    pub uid: Vec<(u32, u32, u32)>,
    /// gid extents.
    pub gid: Vec<(u32, u32, u32)>,
}

/// What `statmount(2)` says of a mount.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountFacts {
    /// The filesystem type (`tmpfs`, `ext4`, ...).
    pub fs_type: String,
    /// `MOUNT_ATTR_RDONLY`.
    pub read_only: bool,
    /// `MOUNT_ATTR_NOSUID`.
    pub nosuid: bool,
    /// `MOUNT_ATTR_NOEXEC`.
    pub noexec: bool,
    /// The superblock is read-only (`SB_RDONLY`).
    pub sb_read_only: bool,
    /// An idmapped mount's maps.
    pub idmap: Option<MountIdmap>,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const SB_RDONLY: u32 = 0x1;

/// What `statmount(2)` says of mount `mnt_id` (a unique id, [`mount_id`]) in the mount
/// namespace `mnt_ns_id` ([`mnt_ns_id`]; 0 for the caller's). Errors are the kernel's (ENOENT:
/// no such mount; EINVAL: no STATMOUNT_MNT_UIDMAP before Linux 6.15).
pub fn statmount(mnt_id: u64, mnt_ns_id: u64) -> Result<MountFacts, Error> {
    let req = uapi::mnt_id_req {
        size: if mnt_ns_id == 0 {
            uapi::MNT_ID_REQ_SIZE_VER0
        } else {
            uapi::MNT_ID_REQ_SIZE_VER1
        },
        spare: 0,
        mnt_id,
        param: (uapi::STATMOUNT_SB_BASIC
            | uapi::STATMOUNT_MNT_BASIC
            | uapi::STATMOUNT_FS_TYPE
            | uapi::STATMOUNT_MNT_UIDMAP
            | uapi::STATMOUNT_MNT_GIDMAP) as u64,
        mnt_ns_id,
    };
    // 8-byte aligned room for the fixed reply and the strings after it.
    let mut buf = vec![0u64; 4096];
    let bytes = buf.len() * 8;
    // SAFETY: statmount reads the request and writes at most `bytes` bytes into `buf`, which
    // is that long and aligned for `struct statmount`.
    let r = unsafe {
        libc::syscall(
            uapi::__NR_statmount as libc::c_long,
            &req as *const uapi::mnt_id_req,
            buf.as_mut_ptr(),
            bytes,
            0 as libc::c_uint,
        )
    };
    if r < 0 {
        return Err(Error::Sys {
            op: "statmount",
            errno: crate::last_errno(),
        });
    }
    // SAFETY: the buffer is aligned and large enough for the fixed part, which the kernel
    // filled; it is read by value.
    let sm: uapi::statmount = unsafe { std::ptr::read(buf.as_ptr().cast()) };
    // SAFETY: viewing the u64 buffer as bytes of the same length.
    let raw: &[u8] = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast(), bytes) };
    let strs = &raw[std::mem::size_of::<uapi::statmount>()..(sm.size as usize).min(bytes)];
    let idmap = if sm.mnt_attr & MOUNT_ATTR_IDMAP == 0 {
        None
    } else if sm.mask & (uapi::STATMOUNT_MNT_UIDMAP as u64) == 0 {
        return Err(Error::Sys {
            op: "statmount (STATMOUNT_MNT_UIDMAP)",
            errno: Errno::NOSYS,
        });
    } else {
        Some(MountIdmap {
            uid: extents(strs, sm.mnt_uidmap as usize, sm.mnt_uidmap_num as usize)?,
            gid: extents(strs, sm.mnt_gidmap as usize, sm.mnt_gidmap_num as usize)?,
        })
    };
    Ok(MountFacts {
        fs_type: string_at(strs, sm.fs_type as usize)?,
        read_only: sm.mnt_attr & MOUNT_ATTR_RDONLY != 0,
        nosuid: sm.mnt_attr & MOUNT_ATTR_NOSUID != 0,
        noexec: sm.mnt_attr & MOUNT_ATTR_NOEXEC != 0,
        sb_read_only: sm.sb_flags & SB_RDONLY != 0,
        idmap,
    })
}

fn string_at(strs: &[u8], at: usize) -> Result<String, Error> {
    let rest = strs
        .get(at..)
        .ok_or_else(|| Error::Invalid("statmount: string offset past the strings".into()))?;
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// `NS_GET_MNTNS_ID` of `/proc/PID/ns/mnt`: the id `statmount(2)` takes for a mount in that
/// namespace.
#[doc(alias = "NS_GET_MNTNS_ID")]
pub fn mnt_ns_id(procfs: &crate::ProcFs, pid: crate::Pid) -> Result<u64, Error> {
    let path = procfs.pid_path(pid).join("ns/mnt");
    let fd = rustix::fs::open(
        &path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|errno| Error::Path {
        op: "open",
        path: path.clone(),
        errno,
    })?;
    // The request's C type differs between libcs (unsigned long in glibc, int in musl).
    const NS_GET_MNTNS_ID: u32 = 0x8008_b705;
    let mut id: u64 = 0;
    // SAFETY: NS_GET_MNTNS_ID writes one u64 into `id`.
    let r = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            NS_GET_MNTNS_ID as _,
            &mut id,
        )
    };
    if r < 0 {
        return Err(Error::Path {
            op: "ioctl NS_GET_MNTNS_ID",
            path,
            errno: crate::last_errno(),
        });
    }
    Ok(id)
}

/// `num` NUL-terminated "first lower count" strings from offset `at` of `strs`.
fn extents(strs: &[u8], at: usize, num: usize) -> Result<Vec<(u32, u32, u32)>, Error> {
    let bad = |m: &str| Error::Invalid(format!("statmount idmap: {m}"));
    let mut out = Vec::with_capacity(num);
    let mut rest = strs
        .get(at..)
        .ok_or_else(|| bad("offset past the strings"))?;
    for _ in 0..num {
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| bad("unterminated"))?;
        let text = std::str::from_utf8(&rest[..end]).map_err(|_| bad("not text"))?;
        let n: Vec<u32> = text
            .split_whitespace()
            .map(|f| f.parse().map_err(|_| bad("not a number")))
            .collect::<Result<_, _>>()?;
        let [a, b, c] = n[..] else {
            return Err(bad("not three numbers"));
        };
        out.push((a, b, c));
        rest = &rest[end + 1..];
    }
    Ok(out)
}

/// The raw `system.posix_acl_access` value of `path` (not following a final symlink), or
/// `None` if it has none (ENODATA) or the filesystem has no ACLs (EOPNOTSUPP).
pub fn posix_acl_access(path: &Path) -> Result<Option<Vec<u8>>, Error> {
    crate::xattr::lget_xattr(path, "system.posix_acl_access")
}

/// The raw `security.capability` value of `path` (its file capabilities, any revision), or
/// `None` if it has none.
pub fn file_caps(path: &Path) -> Result<Option<Vec<u8>>, Error> {
    crate::xattr::lget_xattr(path, "security.capability")
}
