//! Idmapped mounts with the new mount API: a detached clone of a tree (`open_tree(2)` with
//! `OPEN_TREE_CLONE`), an idmap and other attributes set on it (`mount_setattr(2)` with
//! `MOUNT_ATTR_IDMAP`), and the clone attached in place (`move_mount(2)`).
//!
//! A mount's idmap is a copy of a user namespace's maps taken when it is set
//! (`fs/mnt_idmapping.c`): the maps' upper side is the id the filesystem stores (as its
//! `s_user_ns` numbers it) and the lower side is the kernel id callers see. A map
//! "0 100000 65536" makes on-disk uid 0 appear as kuid 100000, and a file created through the
//! mount by kuid 100005 is stored as uid 5. [`MappingUserns`] makes a namespace only to carry
//! such a map: its helper exits at once and only the nsfs fd keeps the namespace alive.

use std::cell::Cell;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use credns_idmap::{IdKind, IdMap};
use rustix::mount::{MoveMountFlags, OpenTreeFlags, UnmountFlags};

#[cfg(doc)]
use crate::UsernsChild;
use crate::{Actor, Errno, Error, UserNsFd};

/// `MOUNT_ATTR_RDONLY`, `_NOSUID`, `_NOEXEC` (`mount_setattr(2)`).
const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
const MOUNT_ATTR_NOEXEC: u64 = 0x0000_0008;
/// `MOUNT_ATTR_IDMAP` (`mount_setattr(2)`).
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
/// `AT_EMPTY_PATH`.
const AT_EMPTY_PATH: libc::c_uint = 0x1000;
/// `AT_RECURSIVE`.
const AT_RECURSIVE: libc::c_uint = 0x8000;

/// `struct mount_attr` (`MOUNT_ATTR_SIZE_VER0`, 32 bytes).
#[repr(C)]
#[derive(Debug, Default)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A filesystem type as `statfs(2)` names it (`f_type`), with the kernel's type name when known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsType {
    /// `f_type`, the superblock magic.
    pub magic: u64,
    /// The kernel's name of the type ("ext4", "tmpfs", ...), if the magic is a known one.
    pub name: Option<&'static str>,
}

impl FsType {
    /// The type from a superblock magic (`statfs(2)` lists them).
    pub fn from_magic(magic: u64) -> Self {
        let name = match magic {
            0xEF53 => Some("ext4"),
            0x0102_1994 => Some("tmpfs"),
            0x9123_683E => Some("btrfs"),
            0x5846_5342 => Some("xfs"),
            0x794C_7630 => Some("overlay"),
            0x9FA0 => Some("proc"),
            0x6265_6572 => Some("sysfs"),
            0x8584_58F6 => Some("ramfs"),
            0x6367_7270 => Some("cgroup2"),
            0x1CD1 => Some("devpts"),
            0x6573_5546 => Some("fuse"),
            0x4D44 => Some("vfat"),
            0xF2F5_2010 => Some("f2fs"),
            0x7371_7368 => Some("squashfs"),
            0xE0F5_E1E2 => Some("erofs"),
            0x6969 => Some("nfs"),
            0x0102_1997 => Some("9p"),
            0x4244 => Some("hfs"),
            0x6462_6720 => Some("debugfs"),
            0x7472_6163 => Some("tracefs"),
            0xCAFE_4A11 => Some("bpf"),
            0x7363_6673 => Some("securityfs"),
            0x1980_0202 => Some("mqueue"),
            0x9584_58F6 => Some("hugetlbfs"),
            _ => None,
        };
        FsType { magic, name }
    }

    /// The type of the filesystem an open file is on (`fstatfs(2)`).
    #[doc(alias = "fstatfs")]
    pub fn of_fd(fd: BorrowedFd<'_>) -> Result<Self, Errno> {
        rustix::fs::fstatfs(fd).map(|s| FsType::from_magic(s.f_type as u64))
    }

    /// The type of the filesystem `path` is on (`statfs(2)`).
    #[doc(alias = "statfs")]
    pub fn of_path(path: &Path) -> Result<Self, Error> {
        rustix::fs::statfs(path)
            .map(|s| FsType::from_magic(s.f_type as u64))
            .map_err(|errno| Error::Path {
                op: "statfs",
                path: path.to_owned(),
                errno,
            })
    }
}

impl std::fmt::Display for FsType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name {
            Some(n) => f.write_str(n),
            None => write!(f, "type {:#x}", self.magic),
        }
    }
}

/// The kernel requirement a mount step failed, as far as the errno and what credns knows tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountRequirement {
    /// The filesystem type lacks `FS_ALLOW_IDMAP` (or its superblock has `SB_I_NOIDMAP`):
    /// `can_idmap_mount` answers EINVAL.
    FsAllowIdmap(FsType),
    /// The mount already has an idmap: `can_idmap_mount` answers EPERM (an idmap is set once).
    NotAlreadyIdmapped,
    /// The idmap's namespace is the initial one: `build_mount_idmapped` answers EPERM.
    NotInitialUserns,
    /// CAP_SYS_ADMIN over the caller's mount namespace, the idmap's namespace and the
    /// filesystem's `s_user_ns`: EPERM.
    CapSysAdmin,
    /// The system call does not exist (Linux 5.2 for `open_tree`/`move_mount`, 5.12 for
    /// `mount_setattr`): ENOSYS.
    Syscall(&'static str),
}

impl std::fmt::Display for MountRequirement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MountRequirement::FsAllowIdmap(t) => write!(
                f,
                "filesystem {t} does not support idmapped mounts (FS_ALLOW_IDMAP)"
            ),
            MountRequirement::NotAlreadyIdmapped => f.write_str(
                "mount is already idmapped (the kernel sets a mount's idmap once; clone the \
                 original, not an idmapped mount)",
            ),
            MountRequirement::NotInitialUserns => f.write_str(
                "the idmap's user namespace is the initial one (the kernel refuses an idmap that \
                 maps nothing)",
            ),
            MountRequirement::CapSysAdmin => f.write_str(
                "CAP_SYS_ADMIN over the mount namespace, the idmap's user namespace and the \
                 filesystem's user namespace is required",
            ),
            MountRequirement::Syscall(name) => write!(f, "the kernel lacks the {name} system call"),
        }
    }
}

/// Per-mount flags (`mount_setattr(2)`'s `MOUNT_ATTR_*`) for [`DetachedMount::set_flags`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MountFlags {
    /// `MOUNT_ATTR_RDONLY`.
    pub read_only: bool,
    /// `MOUNT_ATTR_NOSUID`: set-id bits and file capabilities are ignored on exec.
    pub nosuid: bool,
    /// `MOUNT_ATTR_NOEXEC`.
    pub noexec: bool,
}

/// A clone of a mount tree that is not attached anywhere yet (`open_tree(2)` with
/// `OPEN_TREE_CLONE`): only such a mount can be given an idmap. Dropped before
/// [`attach`](Self::attach), the clone vanishes with its fd.
#[doc(alias = "open_tree")]
#[derive(Debug)]
pub struct DetachedMount {
    fd: OwnedFd,
    source: PathBuf,
    fs_type: FsType,
    recursive: bool,
    /// This clone has been given an idmap.
    idmapped: Cell<bool>,
}

impl DetachedMount {
    /// Clone the mount at `source` (`open_tree(AT_FDCWD, source, OPEN_TREE_CLONE |
    /// OPEN_TREE_CLOEXEC [| AT_RECURSIVE])`): with `recursive`, the mounts below it too, as a
    /// recursive bind mount would. `source` may be any directory: the clone shows the subtree.
    pub fn clone_tree(source: &Path, recursive: bool) -> Result<Self, Error> {
        let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
        if recursive {
            flags |= OpenTreeFlags::AT_RECURSIVE;
        }
        let fs_type = FsType::of_path(source)?;
        let fd = rustix::mount::open_tree(rustix::fs::CWD, source, flags).map_err(|errno| {
            mount_error(
                "open_tree",
                source,
                &fs_type,
                errno,
                syscall_req(errno, "open_tree"),
            )
        })?;
        Ok(DetachedMount {
            fd,
            source: source.to_owned(),
            fs_type,
            recursive,
            idmapped: Cell::new(false),
        })
    }

    /// The path it was cloned from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The type of the cloned filesystem.
    pub fn fs_type(&self) -> &FsType {
        &self.fs_type
    }

    /// Give the clone (every mount of it, if cloned recursively) the idmap of `userns`: a copy of
    /// its uid and gid maps (`mount_setattr(2)` with `MOUNT_ATTR_IDMAP`).
    #[doc(alias = "mount_setattr")]
    #[doc(alias = "MOUNT_ATTR_IDMAP")]
    pub fn set_idmap(&self, userns: &UserNsFd) -> Result<(), Error> {
        let attr = MountAttr {
            attr_set: MOUNT_ATTR_IDMAP,
            userns_fd: userns.as_fd().as_raw_fd() as u64,
            ..MountAttr::default()
        };
        self.setattr(&attr).map_err(|errno| {
            let req = match errno {
                Errno::INVAL => Some(MountRequirement::FsAllowIdmap(self.fs_type.clone())),
                Errno::PERM
                    if self.idmapped.get() || mount_is_idmapped(&self.source).unwrap_or(false) =>
                {
                    Some(MountRequirement::NotAlreadyIdmapped)
                }
                Errno::PERM if matches!(userns.parent(), Ok(None)) => {
                    Some(MountRequirement::NotInitialUserns)
                }
                Errno::PERM => Some(MountRequirement::CapSysAdmin),
                e => syscall_req(e, "mount_setattr"),
            };
            mount_error("mount_setattr", &self.source, &self.fs_type, errno, req)
        })?;
        self.idmapped.set(true);
        Ok(())
    }

    /// Make the clone read-only (`MOUNT_ATTR_RDONLY`); the filesystem itself is unchanged.
    pub fn set_read_only(&self) -> Result<(), Error> {
        self.set_flags(MountFlags {
            read_only: true,
            ..MountFlags::default()
        })
    }

    /// Set per-mount flags on the clone (`MOUNT_ATTR_RDONLY`, `MOUNT_ATTR_NOSUID`,
    /// `MOUNT_ATTR_NOEXEC`); the filesystem itself is unchanged. No flag: nothing is done.
    #[doc(alias = "mount_setattr")]
    pub fn set_flags(&self, flags: MountFlags) -> Result<(), Error> {
        let mut set = 0;
        for (on, bit) in [
            (flags.read_only, MOUNT_ATTR_RDONLY),
            (flags.nosuid, MOUNT_ATTR_NOSUID),
            (flags.noexec, MOUNT_ATTR_NOEXEC),
        ] {
            if on {
                set |= bit;
            }
        }
        if set == 0 {
            return Ok(());
        }
        let attr = MountAttr {
            attr_set: set,
            ..MountAttr::default()
        };
        self.setattr(&attr).map_err(|errno| {
            let req = match errno {
                Errno::PERM => Some(MountRequirement::CapSysAdmin),
                e => syscall_req(e, "mount_setattr"),
            };
            mount_error("mount_setattr", &self.source, &self.fs_type, errno, req)
        })
    }

    fn setattr(&self, attr: &MountAttr) -> Result<(), Errno> {
        let mut flags = AT_EMPTY_PATH;
        if self.recursive {
            flags |= AT_RECURSIVE;
        }
        // SAFETY: mount_setattr(dfd, "", flags, attr, size) reads `size` bytes from `attr`, a
        // live `#[repr(C)]` struct mount_attr of exactly that size; the path is a NUL-terminated
        // static empty string; the fd is owned by `self` and open for the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                self.fd.as_raw_fd(),
                c"".as_ptr(),
                flags,
                attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        if r < 0 {
            Err(crate::last_errno())
        } else {
            Ok(())
        }
    }

    /// Attach the clone at `target` (`move_mount(fd, "", AT_FDCWD, target,
    /// MOVE_MOUNT_F_EMPTY_PATH)`). It stays there after this value is dropped; remove it with
    /// [`unmount`].
    #[doc(alias = "move_mount")]
    pub fn attach(self, target: &Path) -> Result<(), Error> {
        rustix::mount::move_mount(
            self.fd.as_fd(),
            c"",
            rustix::fs::CWD,
            target,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(|errno| {
            let req = match errno {
                Errno::PERM => Some(MountRequirement::CapSysAdmin),
                e => syscall_req(e, "move_mount"),
            };
            let mut e = mount_error("move_mount", &self.source, &self.fs_type, errno, req);
            if let Error::Mount(m) = &mut e {
                m.target = Some(target.to_owned());
            }
            e
        })
    }
}

impl From<DetachedMount> for OwnedFd {
    /// The clone's fd, e.g. to hand to a process that attaches it in another mount namespace
    /// (`ExtraMount` of [`ContainerSpec`](crate::container::ContainerSpec)).
    fn from(m: DetachedMount) -> OwnedFd {
        m.fd
    }
}

impl AsFd for DetachedMount {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Unmount `target` (`umount2(2)`); `lazy` detaches it now and frees it when unused
/// (`MNT_DETACH`).
#[doc(alias = "umount2")]
pub fn unmount(target: &Path, lazy: bool) -> Result<(), Error> {
    let flags = if lazy {
        UnmountFlags::DETACH
    } else {
        UnmountFlags::empty()
    };
    rustix::mount::unmount(target, flags).map_err(|errno| Error::Path {
        op: "umount2",
        path: target.to_owned(),
        errno,
    })
}

/// Whether the mount `path` is on has an idmap: its per-mount options in
/// `/proc/self/mountinfo` (`proc(5)`) include "idmapped". The mount is found by the mount id
/// `statx(2)` reports (`STATX_MNT_ID`).
pub fn mount_is_idmapped(path: &Path) -> Result<bool, Error> {
    let stx = rustix::fs::statx(
        rustix::fs::CWD,
        path,
        rustix::fs::AtFlags::empty(),
        rustix::fs::StatxFlags::MNT_ID,
    )
    .map_err(|errno| Error::Path {
        op: "statx",
        path: path.to_owned(),
        errno,
    })?;
    let info = Path::new("/proc/self/mountinfo");
    let text = std::fs::read_to_string(info).map_err(|e| Error::Path {
        op: "read",
        path: info.to_owned(),
        errno: Errno::from_io_error(&e).unwrap_or(Errno::IO),
    })?;
    Ok(mountinfo_idmapped(&text, stx.stx_mnt_id))
}

/// Whether the `/proc/PID/mountinfo` line of mount `mnt_id` lists "idmapped" among its
/// per-mount options (the sixth field, `proc(5)`).
fn mountinfo_idmapped(text: &str, mnt_id: u64) -> bool {
    let id = mnt_id.to_string();
    text.lines().any(|line| {
        let mut f = line.split(' ');
        f.next() == Some(id.as_str())
            && f.nth(4)
                .is_some_and(|o| o.split(',').any(|o| o == "idmapped"))
    })
}

/// A user namespace made only to carry an idmap. A child process is cloned straight into a new
/// user namespace (`clone3(2)` with `CLONE_NEWUSER`) and does nothing but wait; the caller
/// (which needs CAP_SETUID and CAP_SETGID, as the writer of a multi-id map from the parent
/// namespace) writes the namespace's maps, opens its nsfs file, and kills and reaps the child.
/// Nothing of it runs afterwards: the fd alone keeps the namespace alive.
///
/// This is [`UsernsChild`] cut down to what an idmap needs: no socket protocol and no setup
/// steps, which makes it several times cheaper (the idmapped-mount benchmark counts it).
#[derive(Debug)]
pub struct MappingUserns;

/// The waiting child: killed with SIGKILL and reaped on drop. It shares our address space
/// (`CLONE_VM`), so neither its creation nor its exit copies or tears down page tables; it
/// runs only `holder_main` on its own stack, which outlives it.
#[derive(Debug)]
struct Holder {
    pid: crate::Pid,
    pidfd: OwnedFd,
    /// The child's stack: freed only after the child is reaped.
    _stack: Vec<u8>,
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = rustix::process::pidfd_send_signal(&self.pidfd, rustix::process::Signal::KILL);
        if let Some(p) = self.pid.to_rustix() {
            while let Err(Errno::INTR) =
                rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty())
            {
            }
        }
    }
}

/// The holder's whole life: wait to be killed. Only a raw system call, on its own stack.
extern "C" fn holder_main(_: *mut libc::c_void) -> libc::c_int {
    loop {
        // SAFETY: pause has no arguments; the child waits here for SIGKILL.
        unsafe { libc::pause() };
    }
}

/// Stack of the holder: `holder_main` and the signal frame of SIGKILL need little.
const HOLDER_STACK: usize = 64 * 1024;

fn spawn_holder() -> Result<Holder, Error> {
    let mut stack = vec![0u8; HOLDER_STACK];
    let mut pidfd: libc::c_int = -1;
    // The stack grows down: its top, 16-byte aligned.
    let top = (stack.as_mut_ptr() as usize + HOLDER_STACK) & !15;
    // SAFETY: clone(2) through the C library runs `holder_main` in a child that shares this address
    // space (CLONE_VM) on `stack`, which lives in the returned Holder until the child has been
    // killed and reaped; the child touches no memory of ours but its stack. With CLONE_PIDFD
    // the kernel stores the pidfd in `pidfd` (passed as parent_tid), a live local.
    let r = unsafe {
        libc::clone(
            holder_main,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_NEWUSER | libc::CLONE_PIDFD | libc::SIGCHLD,
            std::ptr::null_mut(),
            &mut pidfd as *mut libc::c_int,
        )
    };
    if r < 0 {
        return Err(Error::Sys {
            op: "clone(CLONE_VM|CLONE_NEWUSER)",
            errno: crate::last_errno(),
        });
    }
    // SAFETY: on success clone stored a new pidfd that nothing else owns.
    let pidfd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(pidfd) };
    Ok(Holder {
        pid: crate::Pid(r),
        pidfd,
        _stack: stack,
    })
}

impl MappingUserns {
    /// A namespace with `uid_map` and `gid_map` (kernel form: lower ids are the caller's
    /// namespace's ids). For an idmapped mount the upper side is the on-disk id and the lower
    /// side the id seen through the mount.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(uid_map: &IdMap, gid_map: &IdMap) -> Result<UserNsFd, Error> {
        let holder = spawn_holder()?;
        let procfs = crate::ProcFs::new();
        for (kind, map) in [(IdKind::Uid, uid_map), (IdKind::Gid, gid_map)] {
            let path = procfs.map_path(holder.pid, kind);
            let text = map.to_write_format();
            Actor::Caller
                .write_file(&path, text.as_bytes(), crate::WriteHow::Write)?
                .map_err(|errno| Error::Path {
                    op: if kind == IdKind::Uid {
                        "write uid_map"
                    } else {
                        "write gid_map"
                    },
                    path,
                    errno,
                })?;
        }
        let fd = UserNsFd::open(&procfs, holder.pid)?;
        // Killing and reaping the child leaves the namespace to the fd alone.
        drop(holder);
        Ok(fd)
    }
}

fn syscall_req(errno: Errno, name: &'static str) -> Option<MountRequirement> {
    (errno == Errno::NOSYS).then_some(MountRequirement::Syscall(name))
}

fn mount_error(
    op: &'static str,
    source: &Path,
    fs_type: &FsType,
    errno: Errno,
    requirement: Option<MountRequirement>,
) -> Error {
    Error::Mount(Box::new(MountFailure {
        op,
        source: source.to_owned(),
        target: None,
        fs_type: fs_type.clone(),
        requirement,
        errno,
    }))
}

/// What [`Error::Mount`] carries: the step, the source and its filesystem, the requirement that
/// failed when the errno and context tell, and the kernel's answer.
#[derive(Debug)]
pub struct MountFailure {
    /// The system call.
    pub op: &'static str,
    /// The source tree.
    pub source: PathBuf,
    /// Where it was being attached, for `move_mount`.
    pub target: Option<PathBuf>,
    /// The source's filesystem.
    pub fs_type: FsType,
    /// The requirement that failed, when known.
    pub requirement: Option<MountRequirement>,
    /// The kernel's answer.
    pub errno: Errno,
}

impl std::fmt::Display for MountFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} ({})",
            self.op,
            self.source.display(),
            self.fs_type
        )?;
        if let Some(t) = &self.target {
            write!(f, " onto {}", t.display())?;
        }
        if let Some(r) = &self.requirement {
            write!(f, ": {r}")?;
        }
        write!(f, ": {}", crate::errno_display(self.errno))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_options_of_the_right_mount() {
        let text = "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
                    412 22 0:55 / /mnt rw,relatime,idmapped shared:2 - tmpfs none rw\n\
                    413 22 0:56 / /idmapped rw shared:3 - tmpfs idmapped rw\n";
        assert!(mountinfo_idmapped(text, 412));
        assert!(!mountinfo_idmapped(text, 22));
        // "idmapped" as a source or a superblock option is not the mount's option.
        assert!(!mountinfo_idmapped(text, 413));
        assert!(!mountinfo_idmapped(text, 41));
        assert!(!mountinfo_idmapped("", 412));
    }

    #[test]
    fn fs_type_names() {
        assert_eq!(FsType::from_magic(0xEF53).to_string(), "ext4");
        assert_eq!(FsType::from_magic(0x1234).to_string(), "type 0x1234");
        assert_eq!(
            MountRequirement::FsAllowIdmap(FsType::from_magic(0x9FA0)).to_string(),
            "filesystem proc does not support idmapped mounts (FS_ALLOW_IDMAP)"
        );
    }
}
