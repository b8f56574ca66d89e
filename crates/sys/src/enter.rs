//! A child that enters another process's user namespace (and mount namespace) as that
//! namespace's root before it execs: how an upcall handler routed `--inside` runs in the
//! container whose process asked for the key.
//!
//! The namespaces are named by a pidfd, so a pid reused after the process ended cannot send the
//! child elsewhere, and `setns(2)` with a pidfd enters the user namespace first and checks the
//! mount namespace against the credentials that gives. The child drops its supplementary groups
//! while it may (before entering), then takes uid and gid 0 of the namespace: its capabilities
//! are the namespace's, none of the host's.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use rustix::process::{Gid, Uid};
use rustix::thread::{
    move_into_thread_name_spaces, set_thread_groups, set_thread_res_gid, set_thread_res_uid,
    ThreadNameSpaceType,
};

use crate::pidfd::PidFd;
use crate::Error;

/// Which of the process's namespaces the child enters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Namespaces {
    /// Its user namespace alone (its mount namespace is the caller's own).
    User,
    /// Its user and mount namespaces.
    UserAndMount,
}

/// Have `cmd`'s child, after fork and before exec, drop its supplementary groups, enter the
/// namespaces of the process `target` names, and become uid and gid 0 there. The program is
/// then looked up in the namespaces entered. A failing step fails the spawn with its errno
/// (`setns` EPERM, say, when the caller may not enter). Do not also set `cmd`'s uid or gid.
#[doc(alias = "setns")]
pub fn enter_as_root(cmd: &mut Command, target: &PidFd, which: Namespaces) -> Result<(), Error> {
    let fd: OwnedFd = target
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| Error::Sys {
            op: "dup pidfd",
            errno: crate::procfs::io_errno(&e),
        })?;
    let types = match which {
        Namespaces::User => ThreadNameSpaceType::USER,
        Namespaces::UserAndMount => ThreadNameSpaceType::USER | ThreadNameSpaceType::MOUNT,
    };
    let enter = move || -> std::io::Result<()> {
        // The child is single-threaded: the per-thread calls are the process's.
        set_thread_groups(&[])?;
        move_into_thread_name_spaces(fd.as_fd(), types)?;
        set_thread_res_gid(Gid::ROOT, Gid::ROOT, Gid::ROOT)?;
        set_thread_res_uid(Uid::ROOT, Uid::ROOT, Uid::ROOT)?;
        Ok(())
    };
    // SAFETY: `enter` runs in the forked child before exec and makes only raw system calls
    // (no allocation, no lock); the pidfd it uses is its own duplicate, close-on-exec, alive
    // as long as `cmd`.
    unsafe { cmd.pre_exec(enter) };
    Ok(())
}
