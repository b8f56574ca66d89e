//! The kernel layer: the only crate of credns that makes system calls or uses `unsafe`.
//!
//! * [`ProcFs`] reads what `/proc` says about processes: ID maps (`proc(5)`, `user_namespaces(7)`),
//!   the `setgroups` flag, `/proc/PID/status`, and the user namespace a process lives in.
//! * [`NsId`], [`UserNsFd`] and [`userns_ancestry`] name user namespaces and walk up the tree
//!   with the `NS_GET_PARENT` ioctl (`ioctl_ns(2)`).
//! * [`UsernsChild`] forks a helper process that optionally drops to other credentials, unshares
//!   `CLONE_NEWUSER` (`unshare(2)`) and then does what it is told over a socket: open and write
//!   map files, `setresuid(2)` inside, create nested namespaces, `stat(2)` files, report its ids.
//!   Tests use it to build real namespace trees; `credns run` and idmapped mounts use it to get
//!   a user namespace (see [`UsernsChild::userns_fd`]).
//!
//! Kernel answers are reported as [`Errno`] (rustix's errno type, with
//! [`Errno::raw_os_error`]); failures of credns's own plumbing (a helper that died, a /proc file
//! that does not parse) are [`Error`]s.

pub mod container;
pub mod enter;
pub mod event;
mod exec;
pub mod fsflags;
pub mod fsinfo;
mod helper;
pub mod inplace;
pub mod keys;
pub mod lockfile;
pub mod maps;
pub mod mount;
mod ns;
pub mod nsfree;
pub mod nsmount;
pub mod nsrefs;
pub mod peer;
pub mod pidfd;
pub mod probe;
mod procfs;
pub mod sdsocket;
pub mod signal;
pub mod xattr;

use std::path::PathBuf;

pub use helper::reexec_helper_main;
pub use helper::UtimensTimes;
pub use helper::{
    write_fd, Actor, CapSets, FullCreds, HelperIds, Ids, RemoteFd, SetId, UnshareOptions,
    UsernsChild, WriteHow,
};
pub use mount::{unmount, DetachedMount, FsType, MappingUserns, MountFailure, MountRequirement};
pub use ns::{userns_ancestry, NsId, UserNsFd};
pub use procfs::{ProcFs, ProcStatus};
/// Open flags for [`UsernsChild::open`] (`open(2)`'s `O_*`).
pub use rustix::fs::OFlags;
/// The errno type of every kernel answer: `rustix::io::Errno` (use `.raw_os_error()` for the number).
pub use rustix::io::Errno;

/// A process id as the caller's pid namespace numbers it (`pid_t`).
///
/// This is credns's own `i32` newtype (not `rustix::process::Pid`, which cannot be 0 or
/// negative): it displays as the bare number, like `/proc` names the process.
#[doc(alias = "pid_t")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pid(pub i32);

impl Pid {
    /// The calling process (`getpid(2)`).
    #[doc(alias = "getpid")]
    pub fn this() -> Self {
        Pid(rustix::process::getpid().as_raw_nonzero().get())
    }

    /// The raw number.
    pub fn as_raw(self) -> i32 {
        self.0
    }

    pub(crate) fn to_rustix(self) -> Option<rustix::process::Pid> {
        rustix::process::Pid::from_raw(self.0)
    }
}

impl std::fmt::Display for Pid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<i32> for Pid {
    fn from(p: i32) -> Self {
        Pid(p)
    }
}

/// Errors of this crate. Every message names the path, pid or operation, and the errno.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call on a path failed.
    #[error("{op} {}: {}", path.display(), errno_display(*errno))]
    Path {
        /// The operation ("open", "read", "stat", ...).
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The kernel's answer.
        #[source]
        errno: Errno,
    },
    /// A system call about a process failed.
    #[error("{op} (pid {pid}): {}", errno_display(*errno))]
    Process {
        /// The operation.
        op: &'static str,
        /// The process.
        pid: Pid,
        /// The kernel's answer.
        #[source]
        errno: Errno,
    },
    /// A system call that is about neither a path nor a process failed.
    #[error("{op}: {}", errno_display(*errno))]
    Sys {
        /// The operation.
        op: &'static str,
        /// The kernel's answer.
        #[source]
        errno: Errno,
    },
    /// A /proc file did not have the format the kernel writes.
    #[error("{}: line {line}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What was wrong.
        message: String,
    },
    /// A map line's lower id is 4294967295: the kernel could not translate the extent's first
    /// lower id into the reader's user namespace, so the map cannot be known from this reader.
    #[error(
        "{}: line {line}: lower id is 4294967295: the extent's parent ids are not visible from the \
         reader's user namespace (read the map from an ancestor namespace)",
        path.display()
    )]
    LowerNotVisible {
        /// The map file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
    },
    /// The helper process failed a step of its setup or its protocol broke.
    #[error("helper (pid {pid}): {op}: {}", errno_display(*errno))]
    Helper {
        /// The helper.
        pid: Pid,
        /// What it was doing.
        op: &'static str,
        /// The errno it reported (or that talking to it gave).
        #[source]
        errno: Errno,
    },
    /// A mount step failed: names the source, its filesystem and the kernel requirement.
    #[error("{0}")]
    Mount(Box<MountFailure>),
    /// A step of a container's setup (or its `execve`) failed in the child.
    #[error("{what}: {}", errno_display(*errno))]
    Container {
        /// What the child was doing.
        what: String,
        /// The kernel's answer.
        #[source]
        errno: Errno,
    },
    /// An argument the helper protocol cannot carry.
    #[error("{0}")]
    Invalid(String),
    /// What the service manager passed (socket activation) is malformed or of the wrong kind.
    #[error("{0}")]
    Activation(String),
}

/// The C name of an errno ("EPERM"), for the errnos credns meets; `None` for others.
pub fn errno_name(errno: Errno) -> Option<&'static str> {
    Some(match errno.raw_os_error() {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::EMFILE => "EMFILE",
        libc::ENOTTY => "ENOTTY",
        libc::ENOSPC => "ENOSPC",
        libc::ESPIPE => "ESPIPE",
        libc::EROFS => "EROFS",
        libc::EPIPE => "EPIPE",
        libc::ERANGE => "ERANGE",
        libc::ENOSYS => "ENOSYS",
        libc::ENODATA => "ENODATA",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EUSERS => "EUSERS",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ECONNRESET => "ECONNRESET",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EDQUOT => "EDQUOT",
        libc::ENOKEY => "ENOKEY",
        libc::EKEYEXPIRED => "EKEYEXPIRED",
        libc::EKEYREVOKED => "EKEYREVOKED",
        libc::EKEYREJECTED => "EKEYREJECTED",
        _ => return None,
    })
}

/// An errno as "EPERM (Operation not permitted)", or "errno 1234 (...)" for one without a name.
pub fn errno_display(errno: Errno) -> String {
    let text = std::io::Error::from_raw_os_error(errno.raw_os_error()).to_string();
    let text = text.split(" (os error").next().unwrap_or(&text).to_string();
    match errno_name(errno) {
        Some(name) => format!("{name} ({text})"),
        None => format!("errno {} ({text})", errno.raw_os_error()),
    }
}

/// A kernel answer as "ok" or its errno name, for messages.
pub fn outcome_display<T>(r: &Result<T, Errno>) -> String {
    match r {
        Ok(_) => "ok".to_string(),
        Err(e) => errno_display(*e),
    }
}

/// This process's effective uid (`geteuid(2)`): the one check of "am I root" in credns.
#[doc(alias = "geteuid")]
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Whether this process's effective uid is 0.
pub fn is_root() -> bool {
    euid() == 0
}

/// The calling thread's errno after a failed libc call.
pub(crate) fn last_errno() -> Errno {
    Errno::from_raw_os_error(
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO),
    )
}
