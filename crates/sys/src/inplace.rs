//! The calling process becomes a container: it unshares a user namespace itself, someone else
//! (the registry daemon) writes its maps, and it takes its ids and execs the command in place.
//! No fork, no clone, no mount namespace: the fastest way to run a command in a fresh user
//! namespace whose maps another process writes.
//!
//! `unshare(CLONE_NEWUSER)` needs a single-threaded caller (`unshare(2)`: EINVAL otherwise).
//! The process keeps its pid, so a pidfd of it taken now follows the command after the exec.

use std::ffi::OsString;

use crate::exec::ExecPlan;
use crate::pidfd::PidFd;
use crate::{Errno, Error, Pid, ProcFs, UserNsFd};

/// This process, in the user namespace it just made, waiting for its maps.
#[derive(Debug)]
pub struct InPlace {
    userns: UserNsFd,
    pidfd: PidFd,
}

impl InPlace {
    /// `unshare(CLONE_NEWUSER)` this (single-threaded) process; its new namespace's nsfs fd
    /// and a pidfd of itself are for the process that writes the maps.
    #[doc(alias = "CLONE_NEWUSER")]
    pub fn unshare() -> Result<Self, Error> {
        // SAFETY: CLONE_NEWUSER changes only this process's credentials and namespace; no
        // memory or file table is unshared, so nothing the Rust runtime holds is affected. The
        // kernel refuses it (EINVAL) in a multithreaded process.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWUSER) }.map_err(
            |errno| Error::Sys {
                op: "unshare(CLONE_NEWUSER)",
                errno,
            },
        )?;
        Ok(InPlace {
            userns: UserNsFd::open(&ProcFs::new(), Pid::this())?,
            pidfd: PidFd::open(Pid::this())?,
        })
    }

    /// The new namespace.
    pub fn userns_fd(&self) -> &UserNsFd {
        &self.userns
    }

    /// This process.
    pub fn pidfd(&self) -> &PidFd {
        &self.pidfd
    }

    /// Once the maps are written: become `uid`/`gid` of the namespace (no supplementary
    /// groups) and exec `argv` (looked up in `PATH` as `execvp(3)` does). Returns only on
    /// failure, as [`Error::Container`] naming the step, like a container's first process.
    pub fn exec(self, uid: u32, gid: u32, argv: &[OsString]) -> Error {
        let plan = match ExecPlan::new(argv, None) {
            Ok(p) => p,
            Err(e) => return e,
        };
        drop(self);
        let step = |what: &str, errno: Errno| Error::Container {
            what: what.into(),
            errno,
        };
        // setgroups may be denied (/proc/self/setgroups "deny", as after an unprivileged
        // writer's gid_map): then there are no supplementary groups to drop anyway.
        match rustix::thread::set_thread_groups(&[]) {
            Ok(()) | Err(Errno::PERM) => {}
            Err(e) => return step("drop supplementary groups", e),
        }
        let g = rustix::process::Gid::from_raw(gid);
        if let Err(e) = rustix::thread::set_thread_res_gid(g, g, g) {
            return step(&format!("take gid {gid} (is it mapped?)"), e);
        }
        let u = rustix::process::Uid::from_raw(uid);
        if let Err(e) = rustix::thread::set_thread_res_uid(u, u, u) {
            return step(&format!("take uid {uid} (is it mapped?)"), e);
        }
        // No descriptor of the caller beyond stdin, stdout and stderr reaches the command, as
        // with a container's first process.
        // SAFETY: close_range takes plain integers and only sets flags on this process's fds.
        unsafe {
            libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
            )
        };
        let errno = plan.exec();
        step(
            &format!("cannot execute '{}'", argv[0].to_string_lossy()),
            errno,
        )
    }
}
