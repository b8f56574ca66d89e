//! A helper that `execve`s: the process keeps its pid, credentials, namespace and control
//! socket, and gets a new `mm` whose `user_ns` is the user namespace it is in now (what
//! `ptrace_may_access` asks CAP_SYS_PTRACE over for a non-dumpable process, and what
//! `task_dump_owner` names root of). The program exec'd is a small binary that calls
//! [`reexec_helper_main`] and goes on serving the socket.

use std::ffi::CStr;

use super::child_creds::caps_now;
use super::child_main::{send_reply, serve_loop, take_over};
use super::child_sys::exit_now;
use super::protocol::{Rep, HDR, MSG_MAX, SOCK_FD};
use crate::Errno;

/// The highest capability number raised into the ambient set before the exec.
const CAP_LAST_CAP: u64 = 40;

/// In the helper: keep every permitted capability across the exec (inheritable and ambient
/// := permitted), let the control socket survive it, and `execve(path, [path, PPID])`.
/// Returns only on failure, with the errno.
pub(super) fn reexec(path: &CStr, parent: Option<i32>) -> Errno {
    let (eff, prm, _) = caps_now();
    if capset(eff, prm, prm).is_err() {
        return crate::last_errno();
    }
    for cap in 0..=CAP_LAST_CAP {
        if prm & (1 << cap) != 0 {
            // SAFETY: prctl with integer arguments only.
            unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    cap as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                )
            };
        }
    }
    // SAFETY: fcntl on the control socket's fd number: clear close-on-exec.
    if unsafe { libc::fcntl(SOCK_FD, libc::F_SETFD, 0) } < 0 {
        return crate::last_errno();
    }
    let mut digits = [0u8; 16];
    let arg = decimal(parent.unwrap_or(0), &mut digits);
    let argv = [path.as_ptr(), arg.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null::<libc::c_char>()];
    // SAFETY: argv and envp are NULL-terminated arrays of NUL-terminated strings that live in
    // the request buffer and on this stack frame.
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    let e = crate::last_errno();
    // SAFETY: as above: put close-on-exec back after the failed exec.
    unsafe { libc::fcntl(SOCK_FD, libc::F_SETFD, libc::FD_CLOEXEC) };
    e
}

/// `capset(2)` of this thread, version 3.
fn capset(eff: u64, prm: u64, inh: u64) -> Result<(), ()> {
    let header: [u32; 2] = [0x2008_0522, 0];
    let data: [u32; 6] = [
        eff as u32,
        prm as u32,
        inh as u32,
        (eff >> 32) as u32,
        (prm >> 32) as u32,
        (inh >> 32) as u32,
    ];
    // SAFETY: header and data live on this stack frame; capset only reads them.
    let r = unsafe { libc::syscall(libc::SYS_capset, header.as_ptr(), data.as_ptr()) };
    if r < 0 {
        Err(())
    } else {
        Ok(())
    }
}

/// `n` in decimal, NUL-terminated, in `buf` (no allocation).
fn decimal(n: i32, buf: &mut [u8; 16]) -> &CStr {
    let mut v = n.max(0) as u32;
    let mut tmp = [0u8; 12];
    let mut len = 0;
    loop {
        tmp[len] = b'0' + (v % 10) as u8;
        len += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[i] = tmp[len - 1 - i];
    }
    buf[len] = 0;
    CStr::from_bytes_until_nul(&buf[..=len]).unwrap_or_default()
}

/// The start of the re-exec program: the helper again, after `execve`. Its control socket is
/// fd 3 and its argument the pid of the helper that spawned it (0 for none). It answers the
/// exec request with a ready reply (its pid), then serves requests until told to exit. Its
/// inheritable and ambient sets are emptied first (the exec carried the permitted set over
/// through them).
pub fn reexec_helper_main() -> ! {
    let parent = std::env::args()
        .nth(1)
        .and_then(|a| a.parse::<i32>().ok())
        .filter(|p| *p > 0);
    // SAFETY: fcntl on the control socket: close-on-exec again, so programs this helper
    // starts (exec_capture) do not hold it.
    unsafe { libc::fcntl(SOCK_FD, libc::F_SETFD, libc::FD_CLOEXEC) };
    // The exec kept the capabilities through the ambient set; as before it, nothing is
    // inheritable (and so nothing ambient).
    let (eff, prm, _) = caps_now();
    if capset(eff, prm, 0).is_err() {
        exit_now(124);
    }
    if let Err(code) = take_over(SOCK_FD, parent) {
        exit_now(code);
    }
    let mut buf = vec![0u8; 2 * MSG_MAX];
    let (req_buf, rep_buf) = buf.split_at_mut(MSG_MAX);
    let mut ready = Rep::ok();
    ready.v[0] = rustix::process::getpid().as_raw_nonzero().get() as u64;
    ready.encode(&mut rep_buf[..HDR]);
    if send_reply(&rep_buf[..HDR], None).is_err() {
        exit_now(1);
    }
    exit_now(serve_loop(req_buf, rep_buf, parent))
}
