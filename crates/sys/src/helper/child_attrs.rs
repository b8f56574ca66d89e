//! `CALL_TRUNCATE`, `CALL_UTIMES`, `CALL_SETXATTR`: attribute changes made as the helper. The
//! payload holds the path (and, for setxattr, the name) NUL-terminated, then the value; nothing
//! is allocated.

use std::ffi::CStr;

use super::child_calls::path_or_inval;
use super::child_sys::sys_ret;
use super::protocol::{
    Rep, Req, CALL_SETXATTR, CALL_TRUNCATE, CALL_UTIMES, STEP_IO, STEP_PROTOCOL,
};
use crate::Errno;

pub(super) fn attr_call(req: &Req, payload: &[u8]) -> Result<(), Rep> {
    let path = path_or_inval(payload)?;
    let r = match req.how {
        CALL_TRUNCATE => truncate(path, req.arg0 as i64),
        CALL_UTIMES => utimes(path, req.arg0),
        CALL_SETXATTR => {
            let rest = &payload[path.to_bytes_with_nul().len()..];
            let name = CStr::from_bytes_until_nul(rest)
                .map_err(|_| Rep::err(STEP_PROTOCOL, Errno::INVAL))?;
            let value = &rest[name.to_bytes_with_nul().len()..];
            setxattr(path, name, value)
        }
        _ => return Err(Rep::err(STEP_PROTOCOL, Errno::NOSYS)),
    };
    r.map_err(|e| Rep::err(STEP_IO, e))
}

fn truncate(path: &CStr, length: i64) -> Result<(), Errno> {
    // SAFETY: truncate reads the NUL-terminated path, which lives in the request buffer.
    let r = unsafe { libc::syscall(libc::SYS_truncate, path.as_ptr(), length as libc::c_long) };
    sys_ret(r).map(|_| ())
}

/// `utimensat(AT_FDCWD, path, times, 0)`: `how` 0 NULL, 1 explicit times (1 s after the
/// epoch), 2 both `UTIME_NOW`, 3 both `UTIME_OMIT`.
fn utimes(path: &CStr, how: u64) -> Result<(), Errno> {
    let nsec = match how {
        2 => libc::UTIME_NOW,
        3 => libc::UTIME_OMIT,
        _ => 0,
    };
    let times = [libc::timespec {
        tv_sec: 1,
        tv_nsec: nsec,
    }; 2];
    let ptr = if how == 0 {
        std::ptr::null()
    } else {
        times.as_ptr()
    };
    // SAFETY: utimensat reads the path and, when not NULL, two timespecs on this stack.
    let r = unsafe {
        libc::syscall(
            libc::SYS_utimensat,
            libc::AT_FDCWD,
            path.as_ptr(),
            ptr,
            0 as libc::c_int,
        )
    };
    sys_ret(r).map(|_| ())
}

fn setxattr(path: &CStr, name: &CStr, value: &[u8]) -> Result<(), Errno> {
    // SAFETY: setxattr reads the path and name (NUL-terminated) and `value.len()` bytes of
    // value, all in the request buffer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_setxattr,
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr(),
            value.len(),
            0 as libc::c_int,
        )
    };
    sys_ret(r).map(|_| ())
}
