//! The forked child's side of `OP_CALL`: one system call made as the helper. Raw system calls
//! only (the id-changing ones in particular must change this thread's credentials without
//! libc's all-threads broadcast), on the request and reply buffers: no allocation.

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use rustix::fs::{Mode, OFlags};

use super::child_creds::{arm_parent_death_signal, full_creds, set_groups_from};
use super::child_sys::{exit_now, sys_ret};
use super::protocol::{
    Rep, Req, CALL_ACCESS, CALL_CHMOD, CALL_CHOWN, CALL_CREATE, CALL_EXEC, CALL_FSIDS,
    CALL_FULL_CREDS, CALL_KILL, CALL_MKDIR, CALL_NO_NEW_PRIVS, CALL_PTRACE, CALL_SETGID,
    CALL_SETGROUPS, CALL_SETNS_USER, CALL_SETREGID, CALL_SETRESGID, CALL_SETRESUID, CALL_SETREUID,
    CALL_SETUID, CALL_SIG_BLOCK, CALL_SIG_TAKE, CALL_UNSHARE_USER, CALL_VM_READ, STEP_FORK,
    STEP_IO, STEP_PRCTL, STEP_PROTOCOL,
};
use crate::Errno;

/// The NUL-terminated path at the start of a payload.
pub(super) fn path_arg(payload: &[u8]) -> Option<&CStr> {
    CStr::from_bytes_until_nul(payload).ok()
}

/// The path at the start of a payload, or the protocol error for a payload without one.
pub(super) fn path_or_inval(payload: &[u8]) -> Result<&CStr, Rep> {
    path_arg(payload).ok_or(Rep::err(STEP_PROTOCOL, Errno::INVAL))
}

/// `u32::MAX` in a request's id argument: "no change" (-1) as the id syscalls take it.
fn id_arg(v: u64) -> libc::c_long {
    v as u32 as libc::c_long
}

fn fail(e: Errno) -> Rep {
    Rep::err(STEP_IO, e)
}

/// Re-arm the parent-death signal after a credential change (any euid/egid change cleared it),
/// even after a partial one.
fn rearm(parent: Option<i32>) -> Result<(), Rep> {
    arm_parent_death_signal(parent).map_err(|()| Rep::err(STEP_PRCTL, Errno::SRCH))
}

/// `OP_CALL`: one system call as this helper (`req.how` says which), writing any reply payload
/// into `out`. Returns the reply and the payload length.
pub(super) fn call(
    req: &Req,
    payload: &[u8],
    passed: Option<OwnedFd>,
    out: &mut [u8],
    parent: Option<i32>,
) -> Result<(Rep, usize), Rep> {
    let mut rep = Rep::ok();
    let mut len = 0usize;
    if super::child_nstypes::handles(req) {
        return super::child_nstypes::call(req, payload, passed).map(|()| (rep, len));
    }
    match req.how {
        CALL_ACCESS | CALL_MKDIR | CALL_CREATE | CALL_CHMOD | CALL_CHOWN => {
            path_call(req, path_or_inval(payload)?).map_err(fail)?
        }
        CALL_KILL => {
            // SAFETY: kill takes two integers.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_kill,
                    req.arg0 as libc::pid_t,
                    req.arg1 as libc::c_int,
                )
            };
            sys_ret(r).map_err(fail)?;
        }
        CALL_SETUID | CALL_SETGID | CALL_SETREUID | CALL_SETREGID | CALL_SETRESUID
        | CALL_SETRESGID => {
            let r = set_id(req).map_err(fail);
            rearm(parent)?;
            r?;
        }
        CALL_SETGROUPS => set_groups_from(payload).map_err(fail)?,
        CALL_UNSHARE_USER => {
            // SAFETY: unshare(CLONE_NEWUSER) changes only this single-threaded process's
            // credentials; it shares no fs_struct.
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWUSER) }
                .map_err(fail)?;
            rearm(parent)?;
        }
        CALL_SETNS_USER => {
            let fd = passed.ok_or(Rep::err(STEP_PROTOCOL, Errno::BADF))?;
            rustix::thread::move_into_link_name_space(
                fd.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::User),
            )
            .map_err(fail)?;
            rearm(parent)?;
        }
        CALL_NO_NEW_PRIVS => rustix::thread::set_no_new_privs(true).map_err(fail)?,
        CALL_FSIDS => {
            // SAFETY: setfsuid/setfsgid with -1 change nothing and return the current value.
            let fsuid = unsafe { libc::syscall(libc::SYS_setfsuid, -1 as libc::c_long) };
            // SAFETY: as above.
            let fsgid = unsafe { libc::syscall(libc::SYS_setfsgid, -1 as libc::c_long) };
            rep.v[0] = fsuid as u32 as u64;
            rep.v[1] = fsgid as u32 as u64;
        }
        CALL_FULL_CREDS => {
            let r = full_creds(payload);
            rearm(parent)?;
            r.map_err(|(step, e)| Rep::err(step, e))?;
        }
        CALL_EXEC => {
            let (status, n) = exec_capture(payload, out)?;
            rep.v[0] = status as u64;
            len = n;
        }
        CALL_PTRACE => ptrace_attach_detach(req.arg0 as libc::pid_t).map_err(fail)?,
        CALL_VM_READ => vm_read_check(req.arg0 as libc::pid_t).map_err(fail)?,
        super::protocol::CALL_UNLINK..=super::protocol::CALL_SYMLINK => {
            super::child_dirent::call(req, payload)?
        }
        super::protocol::CALL_TRUNCATE
        | super::protocol::CALL_UTIMES
        | super::protocol::CALL_SETXATTR => super::child_attrs::attr_call(req, payload)?,
        super::protocol::CALL_READLINK => {
            let mut target = [0u8; 256];
            let n = rustix::fs::readlinkat_raw(
                rustix::fs::CWD,
                path_or_inval(payload)?,
                &mut target[..],
            )
            .map_err(fail)?;
            rep.v[0] = n as u64;
        }
        super::protocol::CALL_SEND_CREDS | super::protocol::CALL_RECV_CREDS => {
            super::child_scm::call(req, payload, &mut rep)?
        }
        super::protocol::CALL_REEXEC => {
            let e = super::child_reexec::reexec(path_or_inval(payload)?, parent);
            return Err(Rep::err(STEP_IO, e));
        }
        super::protocol::CALL_SETFSUID..=super::protocol::CALL_KCMP_VM => {
            let r = super::child_caps::call(req, payload, &mut rep);
            rearm(parent)?;
            r?;
        }
        CALL_SIG_BLOCK => sig_mask(libc::SIG_BLOCK, req.arg0 as libc::c_int).map_err(fail)?,
        CALL_SIG_TAKE => {
            let taken = sig_take(req.arg0 as libc::c_int);
            sig_mask(libc::SIG_UNBLOCK, req.arg0 as libc::c_int).map_err(fail)?;
            rep.v[0] = u64::from(taken.map_err(fail)?);
        }
        _ => return Err(Rep::err(STEP_PROTOCOL, Errno::NOSYS)),
    }
    Ok((rep, len))
}

/// `CALL_ACCESS`, `CALL_MKDIR`, `CALL_CREATE`, `CALL_CHMOD`, `CALL_CHOWN` on `path`, which
/// lives in the request buffer.
fn path_call(req: &Req, path: &CStr) -> Result<(), Errno> {
    let mode = || Mode::from_bits_retain(req.arg0 as u32);
    match req.how {
        CALL_ACCESS => {
            // SAFETY: faccessat2 reads the NUL-terminated path, which lives in the request buffer.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_faccessat2,
                    libc::AT_FDCWD,
                    path.as_ptr(),
                    req.arg0 as libc::c_int,
                    req.arg1 as libc::c_int,
                )
            };
            sys_ret(r).map(|_| ())
        }
        CALL_MKDIR => rustix::fs::mkdir(path, mode()),
        CALL_CREATE => rustix::fs::open(
            path,
            OFlags::CREATE | OFlags::EXCL | OFlags::RDONLY | OFlags::CLOEXEC,
            mode(),
        )
        .map(drop),
        CALL_CHMOD => rustix::fs::chmod(path, mode()),
        _ => {
            // SAFETY: chown reads the NUL-terminated path in the request buffer; ids are integers.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_chown,
                    path.as_ptr(),
                    id_arg(req.arg0),
                    id_arg(req.arg1),
                )
            };
            sys_ret(r).map(|_| ())
        }
    }
}

/// `CALL_SETUID` ... `CALL_SETRESGID`: the id-changing system call itself.
fn set_id(req: &Req) -> Result<(), Errno> {
    let (a, b, c) = (id_arg(req.arg0), id_arg(req.arg1), id_arg(req.arg2));
    let r = match req.how {
        // SAFETY: setuid takes one integer and changes only this (single) thread.
        CALL_SETUID => unsafe { libc::syscall(libc::SYS_setuid, a) },
        // SAFETY: setgid takes one integer and changes only this (single) thread.
        CALL_SETGID => unsafe { libc::syscall(libc::SYS_setgid, a) },
        // SAFETY: setreuid takes two integers and changes only this thread.
        CALL_SETREUID => unsafe { libc::syscall(libc::SYS_setreuid, a, b) },
        // SAFETY: setregid takes two integers and changes only this thread.
        CALL_SETREGID => unsafe { libc::syscall(libc::SYS_setregid, a, b) },
        // SAFETY: setresuid takes three integers and changes only this thread.
        CALL_SETRESUID => unsafe { libc::syscall(libc::SYS_setresuid, a, b, c) },
        // SAFETY: setresgid takes three integers and changes only this thread.
        _ => unsafe { libc::syscall(libc::SYS_setresgid, a, b, c) },
    };
    sys_ret(r).map(|_| ())
}

/// `CALL_EXEC`: fork; the child runs `execve(path, [path, arg], [])` with its stdout on a
/// pipe; the helper reads what it prints into `out` and reaps it. The payload is the path and
/// one argument, each NUL-terminated. An exec that fails is reported with its errno, which
/// the child sends back on a second, close-on-exec pipe.
fn exec_capture(payload: &[u8], out: &mut [u8]) -> Result<(i32, usize), Rep> {
    let path = path_or_inval(payload)?;
    let rest = &payload[path.to_bytes().len() + 1..];
    let arg = path_or_inval(rest)?;
    let (out_r, out_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| Rep::err(STEP_IO, e))?;
    let (err_r, err_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| Rep::err(STEP_IO, e))?;
    let argv = [path.as_ptr(), arg.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null::<libc::c_char>()];
    // SAFETY: this helper is single-threaded; the child only makes raw system calls (dup2,
    // execve, write, _exit) on memory that existed before the fork.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: dup2 of an open pipe fd onto stdout; both are plain integers.
        unsafe { libc::dup2(out_w.as_raw_fd(), 1) };
        // SAFETY: argv and envp are NULL-terminated arrays of NUL-terminated strings that
        // live in this process's copy of the helper's stack and request buffer.
        unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        let e = crate::last_errno().raw_os_error().to_ne_bytes();
        let _ = rustix::io::write(&err_w, &e);
        exit_now(127);
    }
    if pid < 0 {
        return Err(Rep::err(STEP_FORK, crate::last_errno()));
    }
    drop(out_w);
    drop(err_w);
    let len = read_until_full(&out_r, out);
    let mut eb = [0u8; 4];
    let got = loop {
        match rustix::io::read(&err_r, &mut eb) {
            Err(Errno::INTR) => continue,
            r => break r.unwrap_or(0),
        }
    };
    let status = wait_status(pid);
    if got == 4 {
        return Err(Rep::err(
            STEP_IO,
            Errno::from_raw_os_error(i32::from_ne_bytes(eb)),
        ));
    }
    Ok((status, len))
}

/// Read from `fd` into `out` until end-of-file, an error, or `out` is full; the byte count.
fn read_until_full(fd: &OwnedFd, out: &mut [u8]) -> usize {
    let mut len = 0usize;
    loop {
        if len == out.len() {
            break;
        }
        match rustix::io::read(fd, &mut out[len..]) {
            Ok(0) => break,
            Ok(k) => len += k,
            Err(Errno::INTR) => continue,
            Err(_) => break,
        }
    }
    len
}

/// Reap child `pid`: its wait status, or -1 if `waitpid` failed.
fn wait_status(pid: libc::pid_t) -> libc::c_int {
    loop {
        let mut st: libc::c_int = 0;
        // SAFETY: waitpid writes the status into a live local.
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        if r == pid {
            break st;
        }
        if crate::last_errno() != Errno::INTR {
            break -1;
        }
    }
}

/// `CALL_VM_READ`: `process_vm_readv(2)` of one byte at address 0 of `pid`. The kernel first
/// makes `ptrace_may_access(PTRACE_MODE_ATTACH_REALCREDS)` (refused: EPERM), then copies,
/// which faults at address 0 (EFAULT): so EFAULT means "allowed", and nothing of the target
/// is read or touched either way.
fn vm_read_check(pid: libc::pid_t) -> Result<(), Errno> {
    let mut byte = 0u8;
    let local = libc::iovec {
        iov_base: (&mut byte as *mut u8).cast(),
        iov_len: 1,
    };
    let remote = libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 1,
    };
    // SAFETY: one local iovec over a live local byte, one remote iovec (never dereferenced by
    // this process); counts match the arrays.
    let r = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    match r {
        r if r >= 0 => Ok(()),
        _ => match crate::last_errno() {
            Errno::FAULT => Ok(()),
            e => Err(e),
        },
    }
}

/// `CALL_PTRACE`: `PTRACE_SEIZE` (the same `ptrace_may_access(PTRACE_MODE_ATTACH_REALCREDS)`
/// check as `PTRACE_ATTACH`, without stopping the tracee), then interrupt, wait for the stop
/// and detach, so the tracee is left as it was.
fn ptrace_attach_detach(pid: libc::pid_t) -> Result<(), Errno> {
    let null = std::ptr::null_mut::<libc::c_void>();
    // SAFETY: PTRACE_SEIZE takes the pid and null addr/data.
    let r = unsafe { libc::ptrace(libc::PTRACE_SEIZE, pid, null, null) };
    if r < 0 {
        return Err(crate::last_errno());
    }
    // SAFETY: PTRACE_INTERRUPT on a tracee this process has just seized.
    unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, pid, null, null) };
    loop {
        let mut st: libc::c_int = 0;
        // SAFETY: waitpid writes the status into a live local.
        let r = unsafe { libc::waitpid(pid, &mut st, libc::__WALL) };
        if r == pid || crate::last_errno() != Errno::INTR {
            break;
        }
    }
    // SAFETY: PTRACE_DETACH on the stopped tracee, signal 0.
    unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, null, null) };
    Ok(())
}

/// `{sig}` as a signal set (EINVAL for a number no set holds).
fn sig_set(sig: libc::c_int) -> Result<libc::sigset_t, Errno> {
    // SAFETY: an all-zero sigset_t is a valid (empty) set.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: sigaddset writes the local set.
    if unsafe { libc::sigaddset(&mut set, sig) } != 0 {
        return Err(Errno::INVAL);
    }
    Ok(set)
}

/// `sigprocmask(how, {sig})`. A blocked signal is never ignored (sig_ignored): it is queued,
/// with the siginfo the sender's kill made, even for the signals helpers ignore.
fn sig_mask(how: libc::c_int, sig: libc::c_int) -> Result<(), Errno> {
    let set = sig_set(sig)?;
    // SAFETY: sigprocmask reads the local set and changes only this single-threaded process's
    // mask.
    let r = unsafe { libc::sigprocmask(how, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(Errno::INVAL);
    }
    Ok(())
}

/// Dequeue a pending `sig` without waiting (`rt_sigtimedwait` with a zero timeout): its
/// `si_uid`.
fn sig_take(sig: libc::c_int) -> Result<u32, Errno> {
    let set = sig_set(sig)?;
    // SAFETY: an all-zero siginfo_t is valid plain data for the kernel to fill.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: the set, siginfo and timeout are locals of the sizes the call takes; a zero
    // timeout never blocks.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigtimedwait,
            &set as *const libc::sigset_t,
            &mut info as *mut libc::siginfo_t,
            &zero as *const libc::timespec,
            std::mem::size_of::<libc::c_ulong>(),
        )
    };
    sys_ret(r)?;
    // SAFETY: a signal sent by kill(2) is SI_USER: its siginfo carries the sender's pid and uid.
    Ok(unsafe { info.si_uid() })
}
