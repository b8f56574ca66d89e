//! The forked child's side of the capability and fs-id calls: `setfsuid`, `setfsgid`,
//! `capset` and `prctl`, raw system calls on this single thread only; and `kcmp`, which asks
//! `ptrace_may_access(PTRACE_MODE_READ_REALCREDS)` and nothing else.

use super::child_sys::sys_ret;
use super::protocol::STEP_PROTOCOL;
use super::protocol::{
    Rep, Req, CALL_CAPSET, CALL_KCMP_VM, CALL_PRCTL, CALL_SETFSGID, CALL_SETFSUID, STEP_IO,
};
use crate::Errno;

/// `KCMP_VM` (include/uapi/linux/kcmp.h).
const KCMP_VM: libc::c_long = 1;
/// `_LINUX_CAPABILITY_VERSION_3`.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// One of the calls; `rep.v[0]` gets the call's return value.
pub(super) fn call(req: &Req, payload: &[u8], rep: &mut Rep) -> Result<(), Rep> {
    let fail = |e: Errno| Rep::err(STEP_IO, e);
    let r = match req.how {
        // SAFETY: setfsuid takes one integer, changes only this thread and never fails.
        CALL_SETFSUID => unsafe {
            libc::syscall(libc::SYS_setfsuid, req.arg0 as u32 as libc::c_long)
        },
        // SAFETY: setfsgid takes one integer, changes only this thread and never fails.
        CALL_SETFSGID => unsafe {
            libc::syscall(libc::SYS_setfsgid, req.arg0 as u32 as libc::c_long)
        },
        CALL_CAPSET => capset(payload).map_err(fail)?,
        CALL_PRCTL => {
            // SAFETY: the capability prctls take integers only (no pointers).
            let r = unsafe {
                libc::syscall(
                    libc::SYS_prctl,
                    req.arg0 as libc::c_long,
                    req.arg1 as libc::c_ulong,
                    req.arg2 as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                )
            };
            sys_ret(r).map_err(fail)?
        }
        CALL_KCMP_VM => {
            let me = rustix::process::getpid().as_raw_nonzero().get() as libc::c_long;
            // SAFETY: kcmp takes integers only; KCMP_VM compares the two tasks' mm pointers.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_kcmp,
                    me,
                    req.arg0 as libc::c_long,
                    KCMP_VM,
                    0 as libc::c_long,
                    0 as libc::c_long,
                )
            };
            sys_ret(r).map_err(fail)?
        }
        _ => return Err(Rep::err(STEP_PROTOCOL, Errno::NOSYS)),
    };
    rep.v[0] = r as u32 as u64;
    Ok(())
}

/// `capset(2)` version 3 for this thread (pid 0); the payload is three native-endian u64:
/// effective, permitted, inheritable.
fn capset(payload: &[u8]) -> Result<libc::c_long, Errno> {
    if payload.len() < 24 {
        return Err(Errno::INVAL);
    }
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&payload[8 * i..8 * i + 8]);
        u64::from_ne_bytes(b)
    };
    let (e, p, i) = (word(0), word(1), word(2));
    let header: [u32; 2] = [CAPABILITY_VERSION_3, 0];
    // struct __user_cap_data_struct { effective, permitted, inheritable } × 2 (low, high).
    let data: [u32; 6] = [
        e as u32,
        p as u32,
        i as u32,
        (e >> 32) as u32,
        (p >> 32) as u32,
        (i >> 32) as u32,
    ];
    // SAFETY: the header and the two data structs live on this stack frame for the call;
    // capset only reads them.
    let r = unsafe { libc::syscall(libc::SYS_capset, header.as_ptr(), data.as_ptr()) };
    sys_ret(r)
}
