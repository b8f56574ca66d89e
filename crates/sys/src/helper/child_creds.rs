//! The forked child's side: setting the helper's credentials. Raw system calls that change only
//! the calling thread, which is the whole (single-threaded) helper, on values decoded into
//! fixed-size structs: no allocation.
//!
//! The id calls go to the kernel directly, not through libc's `setuid` family, which would
//! broadcast the change to all threads with a signal (`nptl(7)`): the helper has one thread,
//! and it must not depend on libc's thread bookkeeping copied from a multithreaded parent.

use rustix::fs::Mode;
use rustix::thread::{CapabilitySet, CapabilitySets};

use super::protocol::{
    RawCreds, RawOpts, CREDS_DUMPABLE, CREDS_KEEP_GROUPS, CREDS_NO_NEW_PRIVS, F_DUMPABLE,
    F_SET_CAPS, F_SET_GROUPS, F_SET_IDS, MAX_GROUPS, STEP_CAPSET, STEP_PRCTL, STEP_PROTOCOL,
    STEP_SETGROUPS, STEP_SETRESGID, STEP_SETRESUID,
};
use crate::Errno;

/// A failure: the step (a `STEP_*`) and the kernel's answer.
pub(super) type StepError = (u32, Errno);

/// Ask for SIGKILL when the parent helper dies, and check it has not died already. The kernel
/// clears this setting whenever the euid, egid, fsuid or fsgid change (`prctl(2)`), so it is
/// armed again after every credential change.
pub(super) fn arm_parent_death_signal(parent: Option<i32>) -> Result<(), ()> {
    let Some(ppid) = parent else { return Ok(()) };
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(|_| ())?;
    if rustix::process::getppid().map(|p| p.as_raw_nonzero().get()) != Some(ppid) {
        return Err(());
    }
    Ok(())
}

/// The effective, permitted and inheritable sets now (all 0 if `capget(2)` fails).
pub(super) fn caps_now() -> (u64, u64, u64) {
    match rustix::thread::capabilities(None) {
        Ok(c) => (c.effective.bits(), c.permitted.bits(), c.inheritable.bits()),
        Err(_) => (0, 0, 0),
    }
}

/// Set the supplementary groups (`setgroups(2)`) from a fixed array: no allocation.
fn set_groups(groups: &[u32]) -> Result<(), Errno> {
    let n = groups.len().min(MAX_GROUPS);
    let mut gids = [rustix::process::Gid::ROOT; MAX_GROUPS];
    for (g, raw) in gids.iter_mut().zip(&groups[..n]) {
        *g = rustix::process::Gid::from_raw(*raw);
    }
    rustix::thread::set_thread_groups(&gids[..n])
}

/// `setgroups(2)` with the gids of a `CALL_SETGROUPS` payload (native-endian u32s; at most
/// `MAX_GROUPS` are used).
pub(super) fn set_groups_from(payload: &[u8]) -> Result<(), Errno> {
    let n = (payload.len() / 4).min(MAX_GROUPS);
    let mut gids = [0u32; MAX_GROUPS];
    for (i, g) in gids.iter_mut().enumerate().take(n) {
        *g = super::protocol::rd_u32(payload, 4 * i);
    }
    set_groups(&gids[..n])
}

/// Apply setup options (or an `OP_SET_CREDS` request): groups, gids, uids, capability sets,
/// dumpable.
pub(super) fn apply_creds(o: &RawOpts) -> Result<(), StepError> {
    let keep = o.flags & F_SET_CAPS != 0 && o.flags & F_SET_IDS != 0;
    if keep {
        rustix::thread::set_keep_capabilities(true).map_err(|e| (STEP_PRCTL, e))?;
    }
    if o.flags & F_SET_GROUPS != 0 {
        let n = (o.ngroups as usize).min(MAX_GROUPS);
        set_groups(&o.groups[..n]).map_err(|e| (STEP_SETGROUPS, e))?;
    }
    if o.flags & F_SET_IDS != 0 {
        let g = rustix::process::Gid::from_raw(o.gid);
        rustix::thread::set_thread_res_gid(g, g, g).map_err(|e| (STEP_SETRESGID, e))?;
        let u = rustix::process::Uid::from_raw(o.uid);
        rustix::thread::set_thread_res_uid(u, u, u).map_err(|e| (STEP_SETRESUID, e))?;
    }
    if o.flags & F_SET_CAPS != 0 {
        let sets = CapabilitySets {
            effective: CapabilitySet::from_bits_retain(o.cap_eff),
            permitted: CapabilitySet::from_bits_retain(o.cap_prm),
            inheritable: CapabilitySet::from_bits_retain(o.cap_inh),
        };
        rustix::thread::set_capabilities(None, sets).map_err(|e| (STEP_CAPSET, e))?;
    }
    if keep {
        rustix::thread::set_keep_capabilities(false).map_err(|e| (STEP_PRCTL, e))?;
    }
    if o.flags & F_DUMPABLE != 0 {
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::Dumpable)
            .map_err(|e| (STEP_PRCTL, e))?;
    }
    Ok(())
}

/// `prctl(2)` with integer arguments.
pub(super) fn prctl(op: libc::c_int, a: libc::c_ulong, b: libc::c_ulong) -> Result<(), Errno> {
    // SAFETY: the prctl options used here take integer arguments only.
    let r = unsafe {
        libc::syscall(
            libc::SYS_prctl,
            op,
            a,
            b,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    super::child_sys::sys_ret(r).map(|_| ())
}

/// `CALL_FULL_CREDS`: take on complete credentials in the helper's namespace. The order makes
/// each step legal: keep the permitted set across the id changes (`PR_SET_KEEPCAPS`), set
/// groups, gids and uids, fs ids, then (with every permitted capability effective, CAP_SETPCAP
/// among them) inheritable, ambient, bounding and securebits, and last the exact sets.
pub(super) fn full_creds(p: &[u8]) -> Result<(), StepError> {
    let c = RawCreds::decode(p).ok_or((STEP_PROTOCOL, Errno::INVAL))?;
    prctl(libc::PR_SET_KEEPCAPS, 1, 0).map_err(|e| (STEP_PRCTL, e))?;
    set_res_ids(&c)?;
    set_fs_ids(&c)?;
    set_cap_state(&c)?;
    if c.flags & CREDS_NO_NEW_PRIVS != 0 {
        rustix::thread::set_no_new_privs(true).map_err(|e| (STEP_PRCTL, e))?;
    }
    let dumpable = (c.flags & CREDS_DUMPABLE != 0) as libc::c_ulong;
    prctl(libc::PR_SET_DUMPABLE, dumpable, 0).map_err(|e| (STEP_PRCTL, e))?;
    rustix::process::umask(Mode::from_bits_retain(c.umask));
    Ok(())
}

/// Groups (unless kept), then real/effective/saved gids and uids.
fn set_res_ids(c: &RawCreds) -> Result<(), StepError> {
    if c.flags & CREDS_KEEP_GROUPS == 0 {
        set_groups(&c.groups[..c.ngroups]).map_err(|e| (STEP_SETGROUPS, e))?;
    }
    // SAFETY: setresgid takes three integers and changes only this thread.
    let r = unsafe { libc::syscall(libc::SYS_setresgid, c.gid[0], c.gid[1], c.gid[2]) };
    super::child_sys::sys_ret(r).map_err(|e| (STEP_SETRESGID, e))?;
    // SAFETY: setresuid takes three integers and changes only this thread.
    let r = unsafe { libc::syscall(libc::SYS_setresuid, c.uid[0], c.uid[1], c.uid[2]) };
    super::child_sys::sys_ret(r).map_err(|e| (STEP_SETRESUID, e))?;
    Ok(())
}

/// The fsuid and fsgid, checked by reading them back.
fn set_fs_ids(c: &RawCreds) -> Result<(), StepError> {
    // Leaving uid 0 cleared the effective set; setfsuid/setfsgid to an id other than the
    // real/effective/saved ones need CAP_SETUID/CAP_SETGID effective again.
    let now = rustix::thread::capabilities(None).map_err(|e| (STEP_CAPSET, e))?;
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: now.permitted,
            permitted: now.permitted,
            inheritable: now.inheritable,
        },
    )
    .map_err(|e| (STEP_CAPSET, e))?;
    // setfsuid/setfsgid return the old value, never an error: check the result by reading back.
    // SAFETY: setfsgid takes one integer.
    unsafe { libc::syscall(libc::SYS_setfsgid, c.gid[3]) };
    // SAFETY: setfsuid takes one integer.
    unsafe { libc::syscall(libc::SYS_setfsuid, c.uid[3]) };
    // SAFETY: as above, -1 only reads.
    let fsgid = unsafe { libc::syscall(libc::SYS_setfsgid, -1 as libc::c_long) } as u32;
    // SAFETY: as above, -1 only reads.
    let fsuid = unsafe { libc::syscall(libc::SYS_setfsuid, -1 as libc::c_long) } as u32;
    if fsuid != c.uid[3] || fsgid != c.gid[3] {
        return Err((STEP_SETRESUID, Errno::PERM));
    }
    Ok(())
}

/// With every permitted capability effective: the inheritable set, the ambient set, the
/// bounding set and the securebits; then the exact effective, permitted and inheritable sets.
fn set_cap_state(c: &RawCreds) -> Result<(), StepError> {
    let now = rustix::thread::capabilities(None).map_err(|e| (STEP_CAPSET, e))?;
    let all = now.permitted;
    let inheritable = CapabilitySet::from_bits_retain(c.inheritable);
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: all,
            permitted: all,
            inheritable,
        },
    )
    .map_err(|e| (STEP_CAPSET, e))?;
    raise_ambient(c.ambient)?;
    drop_bounding(c.bounding)?;
    prctl(libc::PR_SET_SECUREBITS, c.securebits as libc::c_ulong, 0)
        .map_err(|e| (STEP_PRCTL, e))?;
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: CapabilitySet::from_bits_retain(c.effective),
            permitted: CapabilitySet::from_bits_retain(c.permitted),
            inheritable,
        },
    )
    .map_err(|e| (STEP_CAPSET, e))
}

/// Raise every capability of `amb` in the ambient set (`PR_CAP_AMBIENT_RAISE`).
fn raise_ambient(amb: u64) -> Result<(), StepError> {
    for cap in 0..64u64 {
        if amb & (1 << cap) != 0 {
            prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                cap as libc::c_ulong,
            )
            .map_err(|e| (STEP_CAPSET, e))?;
        }
    }
    Ok(())
}

/// Drop every capability the kernel knows that `bnd` lacks from the bounding set.
fn drop_bounding(bnd: u64) -> Result<(), StepError> {
    for cap in 0..64u64 {
        if bnd & (1 << cap) == 0 {
            match prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0) {
                Ok(()) => {}
                Err(_) => break, // past the last capability
            }
            prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0).map_err(|e| (STEP_CAPSET, e))?;
        }
    }
    Ok(())
}
