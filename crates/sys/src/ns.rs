//! User namespaces as nsfs files: identity, parent, owner (`ioctl_ns(2)`, `namespaces(7)`).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

use crate::{Errno, Error, Pid, ProcFs};

/// `NS_GET_USERNS`: the owning user namespace of a namespace (`ioctl_ns(2)`).
const NS_GET_USERNS: libc::c_ulong = 0xb701;
/// `NS_GET_PARENT`: the parent of a user or pid namespace (`ioctl_ns(2)`).
const NS_GET_PARENT: libc::c_ulong = 0xb702;
/// `NS_GET_OWNER_UID`: the uid of a user namespace's owner, in the caller's namespace.
const NS_GET_OWNER_UID: libc::c_ulong = 0xb704;

/// The identity of a namespace: the device and inode number of its nsfs file, as `stat(2)` on
/// `/proc/PID/ns/user` reports them (`namespaces(7)`: two processes are in the same namespace
/// exactly when these agree). Displays as the kernel's readlink text, `user:[INODE]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NsId {
    /// `st_dev` of the nsfs file.
    pub dev: u64,
    /// `st_ino` of the nsfs file (the number in `user:[...]`).
    pub ino: u64,
}

impl std::fmt::Display for NsId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "user:[{}]", self.ino)
    }
}

impl NsId {
    pub(crate) fn from_stat(st: &rustix::fs::Stat) -> Self {
        NsId {
            dev: st.st_dev,
            ino: st.st_ino,
        }
    }
}

/// An open nsfs file of a user namespace (`/proc/PID/ns/user`, or one returned by
/// `NS_GET_PARENT`). While it is open the namespace stays alive, even after every process in it
/// has exited: idmapped mounts (`mount_setattr(2)` with `MOUNT_ATTR_IDMAP`) take such an fd as
/// `userns_fd`, and `setns(2)` takes it to enter the namespace.
#[derive(Debug)]
pub struct UserNsFd {
    fd: OwnedFd,
    /// Where it came from, for messages.
    origin: PathBuf,
}

impl UserNsFd {
    /// Open `/proc/PID/ns/user` under `procfs` (`O_RDONLY | O_CLOEXEC`).
    pub fn open(procfs: &ProcFs, pid: Pid) -> Result<Self, Error> {
        let path = procfs.pid_path(pid).join("ns/user");
        Self::open_path(&path)
    }

    /// Open an nsfs file by path.
    pub fn open_path(path: &Path) -> Result<Self, Error> {
        let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).map_err(
            |errno| Error::Path {
                op: "open",
                path: path.to_owned(),
                errno,
            },
        )?;
        Ok(UserNsFd {
            fd,
            origin: path.to_owned(),
        })
    }

    /// Wrap an fd known to be a user namespace's nsfs file.
    pub fn from_owned(fd: OwnedFd) -> Self {
        UserNsFd {
            fd,
            origin: PathBuf::from("<user namespace fd>"),
        }
    }

    /// The namespace's identity (`fstat(2)` of the fd).
    pub fn id(&self) -> Result<NsId, Error> {
        let st = rustix::fs::fstat(&self.fd).map_err(|errno| Error::Path {
            op: "fstat",
            path: self.origin.clone(),
            errno,
        })?;
        Ok(NsId::from_stat(&st))
    }

    /// The parent namespace (`NS_GET_PARENT`); `None` where the kernel answers EPERM: the
    /// initial namespace, or a parent outside the caller's own namespace and its descendants.
    #[doc(alias = "NS_GET_PARENT")]
    pub fn parent(&self) -> Result<Option<UserNsFd>, Error> {
        match ns_ioctl_fd(self.fd.as_fd(), NS_GET_PARENT) {
            Ok(fd) => Ok(Some(UserNsFd {
                fd,
                origin: self.origin.join(".."),
            })),
            Err(Errno::PERM) => Ok(None),
            Err(errno) => Err(Error::Path {
                op: "ioctl NS_GET_PARENT",
                path: self.origin.clone(),
                errno,
            }),
        }
    }

    /// The owning user namespace of the namespace (`NS_GET_USERNS`); for a user namespace this
    /// is its parent, so prefer [`UserNsFd::parent`]. EPERM becomes `None`.
    #[doc(alias = "NS_GET_USERNS")]
    pub fn owning_userns(&self) -> Result<Option<UserNsFd>, Error> {
        match ns_ioctl_fd(self.fd.as_fd(), NS_GET_USERNS) {
            Ok(fd) => Ok(Some(UserNsFd {
                fd,
                origin: self.origin.join("owner"),
            })),
            Err(Errno::PERM) => Ok(None),
            Err(errno) => Err(Error::Path {
                op: "ioctl NS_GET_USERNS",
                path: self.origin.clone(),
                errno,
            }),
        }
    }

    /// The uid of the namespace's owner (the creator's effective uid), as the caller's user
    /// namespace numbers it (`NS_GET_OWNER_UID`; 65534 style munging applies: an owner the
    /// caller cannot see reads as the overflow uid).
    #[doc(alias = "NS_GET_OWNER_UID")]
    pub fn owner_uid(&self) -> Result<u32, Error> {
        let mut uid: libc::uid_t = 0;
        // SAFETY: NS_GET_OWNER_UID writes one uid_t through the pointer, which points to a live
        // local of that type; the fd is valid for the call.
        let r = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                NS_GET_OWNER_UID as _,
                &mut uid as *mut libc::uid_t,
            )
        };
        if r < 0 {
            return Err(Error::Path {
                op: "ioctl NS_GET_OWNER_UID",
                path: self.origin.clone(),
                errno: crate::last_errno(),
            });
        }
        Ok(uid)
    }

    /// The namespace's 64-bit id (`NS_GET_ID`, Linux 6.18+): unique for the boot, never
    /// reused, unlike the nsfs inode number. `None` on a kernel without it.
    #[doc(alias = "NS_GET_ID")]
    pub fn ns_id(&self) -> Result<Option<u64>, Error> {
        // _IOR(0xb7, 13, __u64)
        const NS_GET_ID: libc::c_ulong = (2 << 30) | (8 << 16) | (0xb7 << 8) | 13;
        let mut id: u64 = 0;
        // SAFETY: NS_GET_ID writes one u64 through the pointer, which points to a live local of
        // that type; the fd is valid for the call. Older kernels refuse the request number.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), NS_GET_ID as _, &mut id as *mut u64) };
        if r < 0 {
            return match crate::last_errno() {
                Errno::NOTTY | Errno::INVAL | Errno::NOSYS => Ok(None),
                errno => Err(Error::Path {
                    op: "ioctl NS_GET_ID",
                    path: self.origin.clone(),
                    errno,
                }),
            };
        }
        Ok(Some(id))
    }

    /// Where the fd came from (for messages).
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// Give up the fd.
    pub fn into_owned_fd(self) -> OwnedFd {
        self.fd
    }
}

impl AsFd for UserNsFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// An nsfs ioctl that answers with a new fd.
fn ns_ioctl_fd(fd: BorrowedFd<'_>, request: libc::c_ulong) -> Result<OwnedFd, Errno> {
    // SAFETY: NS_GET_PARENT and NS_GET_USERNS take no argument and return a new fd or -1; the
    // fd is valid for the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), request as _) };
    if r < 0 {
        return Err(crate::last_errno());
    }
    // SAFETY: the ioctl returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// The user namespaces from a process's own up to the caller's own (or the initial one):
/// `[process's, its parent, ..., caller's]`. Each step is `NS_GET_PARENT` (`ioctl_ns(2)`); the
/// walk stops where the kernel answers EPERM, which it does above the caller's own namespace
/// and above the initial one. A process in an ancestor of the caller's namespace (or a sibling
/// branch) yields just its own namespace.
pub fn userns_ancestry(procfs: &ProcFs, pid: Pid) -> Result<Vec<NsId>, Error> {
    let mut fd = UserNsFd::open(procfs, pid)?;
    let mut out = vec![fd.id()?];
    while let Some(parent) = fd.parent()? {
        out.push(parent.id()?);
        fd = parent;
        if out.len() > 64 {
            return Err(Error::Invalid(format!(
                "user namespace ancestry of pid {pid} is deeper than 64"
            )));
        }
    }
    Ok(out)
}
