//! The forked child's side of the calls on namespaces other than user namespaces:
//! `unshare(CLONE_NEW*)`, `setns(fd, CLONE_NEW*)`, `sethostname(2)` and `bind(2)` of a TCP
//! port, `mount(2)` of a new instance, `umount2(2)` and a bind remount. Raw system calls on
//! the request buffers only, like the other child calls.

use std::os::fd::{AsRawFd, OwnedFd};

use super::child_sys::sys_ret;
use super::protocol::{
    Rep, Req, CALL_ATTACH_MOUNT, CALL_BIND_TCP, CALL_MOUNT_NEW, CALL_REMOUNT_BIND,
    CALL_ROOT_PRIVATE, CALL_SETHOSTNAME, CALL_SETNS_NS, CALL_UMOUNT, CALL_UNSHARE_NS, STEP_IO,
    STEP_PROTOCOL,
};
use crate::Errno;

fn fail(e: Errno) -> Rep {
    Rep::err(STEP_IO, e)
}

/// Whether `req.how` names one of the calls above.
pub(super) fn handles(req: &Req) -> bool {
    matches!(
        req.how,
        CALL_UNSHARE_NS
            | CALL_SETNS_NS
            | CALL_SETHOSTNAME
            | CALL_BIND_TCP
            | CALL_MOUNT_NEW
            | CALL_UMOUNT
            | CALL_REMOUNT_BIND
            | CALL_ROOT_PRIVATE
            | CALL_ATTACH_MOUNT
    )
}

/// One of the calls above ([`handles`] said so).
pub(super) fn call(req: &Req, payload: &[u8], passed: Option<OwnedFd>) -> Result<(), Rep> {
    match req.how {
        CALL_UNSHARE_NS => {
            // SAFETY: unshare takes a flags word; only non-user namespace flags are sent.
            let r = unsafe { libc::syscall(libc::SYS_unshare, req.arg0 as libc::c_ulong) };
            sys_ret(r).map(|_| ()).map_err(fail)
        }
        CALL_SETNS_NS => match passed {
            None => Err(Rep::err(STEP_PROTOCOL, Errno::BADF)),
            Some(fd) => {
                // SAFETY: setns takes an fd we own and a type flag.
                let r = unsafe {
                    libc::syscall(libc::SYS_setns, fd.as_raw_fd(), req.arg0 as libc::c_int)
                };
                sys_ret(r).map(|_| ()).map_err(fail)
            }
        },
        CALL_SETHOSTNAME => {
            let n = (req.arg0 as usize).min(payload.len());
            // SAFETY: sethostname reads `n` bytes of the request payload.
            let r = unsafe { libc::syscall(libc::SYS_sethostname, payload.as_ptr(), n) };
            sys_ret(r).map(|_| ()).map_err(fail)
        }
        CALL_BIND_TCP => bind_tcp(req.arg0 as u16).map_err(fail),
        CALL_MOUNT_NEW => mount_new(payload),
        CALL_REMOUNT_BIND => {
            let path = std::ffi::CStr::from_bytes_until_nul(payload)
                .map_err(|_| Rep::err(STEP_PROTOCOL, Errno::INVAL))?;
            // MS_REMOUNT | MS_BIND and the MS_RDONLY/MS_NOSUID/MS_NOEXEC bits sent.
            let flags = (libc::MS_REMOUNT | libc::MS_BIND) as libc::c_ulong
                | (req.arg0 as libc::c_ulong
                    & (libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NOEXEC) as libc::c_ulong);
            // SAFETY: mount reads the NUL-terminated path from the request buffer; the other
            // pointers are NULL.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_mount,
                    std::ptr::null::<libc::c_char>(),
                    path.as_ptr(),
                    std::ptr::null::<libc::c_char>(),
                    flags,
                    std::ptr::null::<libc::c_void>(),
                )
            };
            sys_ret(r).map(|_| ()).map_err(fail)
        }
        CALL_UMOUNT => {
            let path = std::ffi::CStr::from_bytes_until_nul(payload)
                .map_err(|_| Rep::err(STEP_PROTOCOL, Errno::INVAL))?;
            // SAFETY: umount2 reads the NUL-terminated path from the request buffer.
            let r = unsafe { libc::syscall(libc::SYS_umount2, path.as_ptr(), 0 as libc::c_int) };
            sys_ret(r).map(|_| ()).map_err(fail)
        }
        CALL_ROOT_PRIVATE => {
            let flags = (libc::MS_REC | libc::MS_PRIVATE) as libc::c_ulong;
            // SAFETY: mount reads the static NUL-terminated "/"; the other pointers are NULL.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_mount,
                    std::ptr::null::<libc::c_char>(),
                    c"/".as_ptr(),
                    std::ptr::null::<libc::c_char>(),
                    flags,
                    std::ptr::null::<libc::c_void>(),
                )
            };
            sys_ret(r).map(|_| ()).map_err(fail)
        }
        CALL_ATTACH_MOUNT => {
            let Some(fd) = passed else {
                return Err(Rep::err(STEP_PROTOCOL, Errno::BADF));
            };
            let path = std::ffi::CStr::from_bytes_until_nul(payload)
                .map_err(|_| Rep::err(STEP_PROTOCOL, Errno::INVAL))?;
            // SAFETY: move_mount takes the fd we own, a static empty string and the
            // NUL-terminated path from the request buffer.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_move_mount,
                    fd.as_raw_fd(),
                    c"".as_ptr(),
                    libc::AT_FDCWD,
                    path.as_ptr(),
                    0x4 as libc::c_uint, // MOVE_MOUNT_F_EMPTY_PATH
                )
            };
            sys_ret(r).map(|_| ()).map_err(fail)
        }
        _ => Err(Rep::err(STEP_PROTOCOL, Errno::NOSYS)),
    }
}

/// A TCP socket bound to 0.0.0.0:`port`, closed at once.
fn bind_tcp(port: u16) -> Result<(), Errno> {
    let s = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::STREAM,
        None,
    )?;
    rustix::net::bind(
        &s,
        &rustix::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, port),
    )
}

/// `mount("none", path, type, 0, NULL)`; the payload is "type\0path\0".
fn mount_new(payload: &[u8]) -> Result<(), Rep> {
    let bad = || Rep::err(STEP_PROTOCOL, Errno::INVAL);
    let ty = std::ffi::CStr::from_bytes_until_nul(payload).map_err(|_| bad())?;
    let rest = &payload[ty.to_bytes_with_nul().len()..];
    let path = std::ffi::CStr::from_bytes_until_nul(rest).map_err(|_| bad())?;
    // SAFETY: mount reads three NUL-terminated strings from the request buffer and no data.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount,
            c"none".as_ptr(),
            path.as_ptr(),
            ty.as_ptr(),
            0 as libc::c_ulong,
            std::ptr::null::<libc::c_void>(),
        )
    };
    sys_ret(r).map(|_| ()).map_err(fail)
}
