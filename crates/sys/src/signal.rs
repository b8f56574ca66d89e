//! Termination signals taken synchronously, for daemons: block `SIGTERM` and `SIGINT` before
//! any thread starts (threads inherit the mask), then wait for one with `sigwait(3)` where a
//! clean shutdown is easy, instead of running code in a signal handler.

use crate::{Errno, Error};

/// `SIGHUP`'s number, as [`TermSignals::wait`] returns it.
pub const SIGHUP: i32 = libc::SIGHUP;

/// `SIGTERM` and `SIGINT`, blocked in the thread that made this (and threads it spawns later).
#[derive(Debug)]
pub struct TermSignals {
    set: libc::sigset_t,
}

impl TermSignals {
    /// Block `SIGTERM` and `SIGINT` in the calling thread (`pthread_sigmask(2)`).
    #[doc(alias = "pthread_sigmask")]
    pub fn block() -> Result<Self, Error> {
        Self::block_these(&[libc::SIGTERM, libc::SIGINT])
    }

    /// Block `SIGTERM`, `SIGINT` and `SIGHUP` ([`SIGHUP`], a daemon's "reload") alike.
    pub fn block_with_hangup() -> Result<Self, Error> {
        Self::block_these(&[libc::SIGTERM, libc::SIGINT, libc::SIGHUP])
    }

    fn block_these(sigs: &[libc::c_int]) -> Result<Self, Error> {
        let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initializes the set it is given, a live local.
        unsafe { libc::sigemptyset(set.as_mut_ptr()) };
        // SAFETY: sigemptyset above initialized the set.
        let mut set = unsafe { set.assume_init() };
        for &sig in sigs {
            // SAFETY: the set is initialized; the signal numbers are valid.
            unsafe { libc::sigaddset(&mut set, sig) };
        }
        // SAFETY: both pointers are valid for the call; the old mask is not wanted (null).
        let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if r != 0 {
            return Err(Error::Sys {
                op: "pthread_sigmask",
                errno: Errno::from_raw_os_error(r),
            });
        }
        Ok(TermSignals { set })
    }

    /// Wait until one of the blocked signals arrives; returns its number (`sigwait(3)`).
    #[doc(alias = "sigwait")]
    pub fn wait(&self) -> Result<i32, Error> {
        let mut sig: libc::c_int = 0;
        // SAFETY: the set is initialized and the output points to a live local.
        let r = unsafe { libc::sigwait(&self.set, &mut sig) };
        if r != 0 {
            return Err(Error::Sys {
                op: "sigwait",
                errno: Errno::from_raw_os_error(r),
            });
        }
        Ok(sig)
    }
}
