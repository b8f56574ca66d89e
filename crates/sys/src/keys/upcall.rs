//! What a `request_key` upcall handler does with the key it was called for: take the
//! authority to instantiate it, then instantiate or negate it; and how credns's handler hands
//! a request it does not route back to `/sbin/request-key` without its own configuration.

use std::path::Path;

use super::{keyctl, KeySerial};
use crate::{Errno, Error};

/// `KEYCTL_INSTANTIATE`.
const KEYCTL_INSTANTIATE: libc::c_int = 12;
/// `KEYCTL_NEGATE`.
const KEYCTL_NEGATE: libc::c_int = 13;
/// `KEYCTL_ASSUME_AUTHORITY`.
const KEYCTL_ASSUME_AUTHORITY: libc::c_int = 16;

/// `keyctl(KEYCTL_ASSUME_AUTHORITY)` (`keyctl_assume_authority(3)`): act with the authority
/// to instantiate `key`, whose authorisation key this process's keyrings hold (an upcall's
/// session keyring does). Inherited by children forked after it; returns the authorisation
/// key's serial.
#[doc(alias = "keyctl_assume_authority")]
pub fn assume_authority(key: KeySerial) -> Result<KeySerial, Errno> {
    keyctl(KEYCTL_ASSUME_AUTHORITY, key as libc::c_ulong, 0, 0, 0).map(|r| r as KeySerial)
}

/// `keyctl(KEYCTL_INSTANTIATE)` (`keyctl_instantiate(3)`) with `payload`, linking the key
/// into `keyring` too unless it is 0.
#[doc(alias = "keyctl_instantiate")]
pub fn instantiate(key: KeySerial, payload: &[u8], keyring: KeySerial) -> Result<(), Errno> {
    let p = if payload.is_empty() {
        std::ptr::null()
    } else {
        payload.as_ptr()
    };
    keyctl(
        KEYCTL_INSTANTIATE,
        key as libc::c_ulong,
        p as libc::c_ulong,
        payload.len() as libc::c_ulong,
        keyring as libc::c_ulong,
    )
    .map(|_| ())
}

/// `keyctl(KEYCTL_NEGATE)` (`keyctl_negate(3)`): the key's requesters get ENOKEY, and so does
/// anyone asking again within `timeout` seconds.
#[doc(alias = "keyctl_negate")]
pub fn negate(key: KeySerial, timeout: u32, keyring: KeySerial) -> Result<(), Errno> {
    keyctl(
        KEYCTL_NEGATE,
        key as libc::c_ulong,
        timeout as libc::c_ulong,
        keyring as libc::c_ulong,
        0,
    )
    .map(|_| ())
}

/// `request_key(2)`: find a key of `ktype` described `description` in this thread's keyrings,
/// or have it made by an upcall with `callout` (none: ENOKEY if not found); linked into
/// `keyring` unless it is 0. Returns its serial.
pub fn request_key(
    ktype: &str,
    description: &str,
    callout: Option<&str>,
    keyring: KeySerial,
) -> Result<KeySerial, Errno> {
    let t = super::cstring(ktype)?;
    let d = super::cstring(description)?;
    let c = callout.map(super::cstring).transpose()?;
    let cp = c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: the strings are NUL-terminated and live across the call; the callout pointer is
    // null or one of them.
    let r = unsafe { libc::syscall(libc::SYS_request_key, t.as_ptr(), d.as_ptr(), cp, keyring) };
    if r < 0 {
        Err(crate::last_errno())
    } else {
        Ok(r as KeySerial)
    }
}

/// Give this process a mount namespace of its own in which `file` reads as empty (an empty
/// file bind-mounted over it; `empty` must be one), nothing propagating to or from the host's.
/// The rest of the tree is the host's. Needs CAP_SYS_ADMIN; the process must be
/// single-threaded (`unshare(2)`).
pub fn hide_file(file: &Path, empty: &Path) -> Result<(), Error> {
    // SAFETY: CLONE_NEWNS gives this process a copy of its mount table; no memory or file
    // table is unshared, so nothing the Rust runtime holds is affected.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }.map_err(
        |errno| Error::Sys {
            op: "unshare(CLONE_NEWNS)",
            errno,
        },
    )?;
    rustix::mount::mount_change(
        "/",
        rustix::mount::MountPropagationFlags::PRIVATE | rustix::mount::MountPropagationFlags::REC,
    )
    .map_err(|errno| Error::Path {
        op: "make private",
        path: "/".into(),
        errno,
    })?;
    rustix::mount::mount_bind(empty, file).map_err(|errno| Error::Path {
        op: "bind an empty file over",
        path: file.to_path_buf(),
        errno,
    })
}
