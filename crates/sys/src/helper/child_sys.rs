//! The two raw primitives every part of the helper's child uses: a system call's result as
//! an errno, and `_exit(2)`. (Their own file, so the child's modules import downward only.)

use crate::Errno;

/// A raw `syscall(2)` returning the errno on failure.
pub(super) fn sys_ret(r: libc::c_long) -> Result<libc::c_long, Errno> {
    if r < 0 {
        Err(crate::last_errno())
    } else {
        Ok(r)
    }
}

/// `_exit(2)`: end the process without running anything of the forked-from program.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit takes no pointers and ends the process immediately; nothing runs after it.
    unsafe { libc::_exit(code) }
}
