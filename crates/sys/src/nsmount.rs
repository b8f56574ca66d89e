//! Filesystem contexts opened inside a new user namespace, and idmaps set on any mount fd: the
//! calls that show which worlds the kernel refuses to build (an `ext4` superblock owned by a
//! non-initial namespace, a `tmpfs` idmapped with its own namespace, an idmap whose namespace
//! lacks a map).
//!
//! [`fsopen_in_new_userns`] clones a throwaway child into a new user and mount namespace that
//! shares our file table (`CLONE_FILES`): there it calls `fsopen(2)`, so the context's
//! `user_ns` is the new namespace, and opens its own `/proc/self/ns/user`. Both fds land in our
//! table; the caller may give the namespace maps before the child is killed and reaped.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use credns_idmap::IdKind;

use crate::{Actor, Errno, Error, ProcFs, UserNsFd};

/// `MOUNT_ATTR_IDMAP`.
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
/// `AT_EMPTY_PATH`.
const AT_EMPTY_PATH: libc::c_uint = 0x1000;
/// Not yet set by the child.
const UNSET: i32 = i32::MIN;

/// `struct mount_attr` (`MOUNT_ATTR_SIZE_VER0`).
#[repr(C)]
#[derive(Default)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// What the child is asked to open and where it reports: fds (or `-errno`).
struct Order {
    fs_name: CString,
    fs_fd: AtomicI32,
    ns_fd: AtomicI32,
}

/// A filesystem context made by a process of a fresh user namespace, and that namespace.
#[derive(Debug)]
pub struct UsernsFsContext {
    /// The `fsopen(2)` fd: its context's `user_ns` is [`Self::userns`].
    pub fs: OwnedFd,
    /// The new user namespace.
    pub userns: UserNsFd,
    /// The kernel's answer to each map written (in the order given).
    pub map_writes: Vec<Result<(), Errno>>,
}

/// The child's whole life: two system calls through rustix (which keeps errno out of the
/// thread-local storage it shares with us), the answers stored, then wait to be killed.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `Order` the parent keeps alive until this child is reaped.
    let order = unsafe { &*(arg as *const Order) };
    let raw = |r: Result<OwnedFd, Errno>| match r {
        Ok(fd) => fd.into_raw_fd(),
        Err(e) => -e.raw_os_error(),
    };
    let fs = raw(rustix::mount::fsopen(
        order.fs_name.as_c_str(),
        rustix::mount::FsOpenFlags::FSOPEN_CLOEXEC,
    ));
    let ns = raw(rustix::fs::open(
        c"/proc/self/ns/user",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ));
    order.ns_fd.store(ns, Ordering::SeqCst);
    order.fs_fd.store(fs, Ordering::SeqCst);
    loop {
        // SAFETY: pause has no arguments; the child waits here for SIGKILL.
        unsafe { libc::pause() };
    }
}

/// The child, killed and reaped on drop (also when the caller panics); its stack is freed
/// only after.
struct Child {
    pid: crate::Pid,
    pidfd: OwnedFd,
    _stack: Vec<u8>,
}

impl Drop for Child {
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

/// `fsopen(fs_name)` by a process of a new user namespace (and of a new mount namespace it
/// owns, so `may_mount` passes); then we write each of `maps` (`uid_map` or `gid_map`, the
/// text as given, in order) into that namespace. A failed `fsopen` is the inner `Err`.
pub fn fsopen_in_new_userns(
    fs_name: &str,
    maps: &[(IdKind, &str)],
) -> Result<Result<UsernsFsContext, Errno>, Error> {
    let order = Box::new(Order {
        fs_name: CString::new(fs_name).map_err(|_| Error::Sys {
            op: "fsopen (name with NUL)",
            errno: Errno::INVAL,
        })?,
        fs_fd: AtomicI32::new(UNSET),
        ns_fd: AtomicI32::new(UNSET),
    });
    let mut stack = vec![0u8; 64 * 1024];
    let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;
    let mut pidfd: libc::c_int = -1;
    let flags = libc::CLONE_VM
        | libc::CLONE_FILES
        | libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_PIDFD
        | libc::SIGCHLD;
    // SAFETY: the child runs `child_main` on `stack` and reads `order`; both outlive it (it is
    // killed and reaped below before they are dropped). CLONE_PIDFD stores a new fd in `pidfd`.
    let pid = unsafe {
        libc::clone(
            child_main,
            top as *mut libc::c_void,
            flags,
            &*order as *const Order as *mut libc::c_void,
            &mut pidfd as *mut libc::c_int,
        )
    };
    if pid < 0 {
        return Err(Error::Sys {
            op: "clone(CLONE_NEWUSER|CLONE_NEWNS|CLONE_FILES)",
            errno: crate::last_errno(),
        });
    }
    // SAFETY: clone stored a pidfd nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let child = Child {
        pid: crate::Pid(pid),
        pidfd,
        _stack: stack,
    };
    let result = collect(&order, child.pid, maps);
    drop(child);
    result
}

fn collect(
    order: &Order,
    pid: crate::Pid,
    maps: &[(IdKind, &str)],
) -> Result<Result<UsernsFsContext, Errno>, Error> {
    let start = Instant::now();
    while order.fs_fd.load(Ordering::SeqCst) == UNSET {
        if start.elapsed() > Duration::from_secs(10) {
            return Err(Error::Sys {
                op: "fsopen in a new user namespace (child did not answer)",
                errno: Errno::TIMEDOUT,
            });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let (fs, ns) = (
        order.fs_fd.load(Ordering::SeqCst),
        order.ns_fd.load(Ordering::SeqCst),
    );
    // SAFETY: a non-negative ns is an fd the child opened in our shared table, owned by no one.
    let userns = (ns >= 0).then(|| unsafe { OwnedFd::from_raw_fd(ns) });
    if fs < 0 {
        return Ok(Err(Errno::from_raw_os_error(-fs)));
    }
    // SAFETY: as above, for the fsopen fd.
    let fs = unsafe { OwnedFd::from_raw_fd(fs) };
    let userns = userns.ok_or_else(|| Error::Sys {
        op: "open /proc/self/ns/user in the child",
        errno: Errno::from_raw_os_error(-ns),
    })?;
    let procfs = ProcFs::new();
    let mut map_writes = Vec::new();
    for (kind, text) in maps {
        let path = procfs.map_path(pid, *kind);
        let r = Actor::Caller.write_file(&path, text.as_bytes(), crate::WriteHow::Write)?;
        map_writes.push(r.map(|_| ()));
    }
    Ok(Ok(UsernsFsContext {
        fs,
        userns: UserNsFd::from_owned(userns),
        map_writes,
    }))
}

/// `fsconfig(FSCONFIG_SET_STRING, "source", source)` when given, then
/// `fsconfig(FSCONFIG_CMD_CREATE)`, then `fsmount(2)`: the new superblock's detached mount.
pub fn create_and_fsmount(fs: BorrowedFd<'_>, source: Option<&str>) -> Result<OwnedFd, Errno> {
    if let Some(s) = source {
        rustix::mount::fsconfig_set_string(fs, "source", s)?;
    }
    rustix::mount::fsconfig_create(fs)?;
    rustix::mount::fsmount(
        fs,
        rustix::mount::FsMountFlags::FSMOUNT_CLOEXEC,
        rustix::mount::MountAttrFlags::empty(),
    )
}

/// `mount_setattr(mnt, "", AT_EMPTY_PATH, {MOUNT_ATTR_IDMAP, userns})` on any mount fd (a
/// detached one from `fsmount(2)` or `open_tree(2)`, or an attached one to see it refused).
pub fn set_idmap_on(mnt: BorrowedFd<'_>, userns: &UserNsFd) -> Result<(), Errno> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        userns_fd: userns.as_fd().as_raw_fd() as u64,
        ..MountAttr::default()
    };
    // SAFETY: mount_setattr reads `attr` (its size is passed) and the empty NUL-terminated path.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(crate::last_errno());
    }
    Ok(())
}
