//! The forked child's side: what a helper runs from the fork to `_exit`. It takes over the
//! process (its socket as fd 3, every other fd above 2 closed, child subreaper, parent-death
//! signal, ignored signals), sets up its credentials and namespace, reports, then serves
//! requests in a loop until told to exit or its controller goes away.
//!
//! The child is forked from a process that may have many threads, so it only makes raw system
//! calls (rustix's linux_raw backend, or thin libc wrappers) on buffers allocated before the
//! fork: no allocation, no locks, no stdio.

use std::io::IoSlice;
use std::os::fd::{BorrowedFd, IntoRawFd, OwnedFd, RawFd};

use rustix::net::RecvFlags;

use super::child_creds::{apply_creds, arm_parent_death_signal, caps_now};
use super::child_serve::serve;
use super::child_sys::exit_now;
use super::child_tables::{Children, FdTable};
use super::protocol::{
    recv_msg, send_msg, RawOpts, Rep, Req, F_UNSHARE, HDR, IGNORED_SIGNALS, MSG_MAX, OP_EXIT,
    OP_REAP, OP_SPAWN, SOCK_FD, STEP_FORK, STEP_IO, STEP_PROTOCOL, STEP_UNSHARE,
};
use crate::Errno;

/// Run the helper: set up credentials and the namespace, report, then serve requests.
/// Never returns: the process ends with `_exit`.
///
/// `buf` must be at least `2 * MSG_MAX` bytes and was allocated before the fork.
/// `parent` is the pid of the helper that forked this one (nested helpers only): the helper
/// asks to be killed when that parent dies (`PR_SET_PDEATHSIG`).
pub(crate) fn helper_main(sock: RawFd, buf: &mut [u8], opts: &RawOpts, parent: Option<i32>) -> ! {
    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let (req_buf, rep_buf) = buf.split_at_mut(MSG_MAX);
        run(sock, req_buf, rep_buf, opts, parent)
    }))
    .unwrap_or(101);
    exit_now(code)
}

fn sock() -> BorrowedFd<'static> {
    // SAFETY: fd SOCK_FD is the control socket, set up at the start of `run` and never closed
    // while the helper runs (the helper exits instead).
    unsafe { BorrowedFd::borrow_raw(SOCK_FD) }
}

/// Set up, report, serve: the exit code.
fn run(
    sock_in: RawFd,
    req_buf: &mut [u8],
    rep_buf: &mut [u8],
    opts: &RawOpts,
    parent: Option<i32>,
) -> i32 {
    if let Err(code) = take_over(sock_in, parent) {
        return code;
    }
    let ready = match set_up(opts, parent) {
        Ok(rep) => rep,
        Err(code) => return code,
    };
    let failed = ready.errno != 0;
    ready.encode(&mut rep_buf[..HDR]);
    if send_reply(&rep_buf[..HDR], None).is_err() || failed {
        return 1;
    }
    serve_loop(req_buf, rep_buf, parent)
}

/// Make the process the helper's own: the control socket as fd 3 and no other fd above it,
/// a child subreaper, killed with its parent helper, deaf to the signals tests send.
pub(super) fn take_over(sock_in: RawFd, parent: Option<i32>) -> Result<(), i32> {
    if sock_in != SOCK_FD {
        // SAFETY: dup2 takes two fd numbers; sock_in is the open control socket and fd 3 is
        // free to be replaced (it is either unused or the socket of the helper we were forked
        // from, which this process must not keep).
        if unsafe { libc::dup2(sock_in, SOCK_FD) } < 0 {
            return Err(120);
        }
    }
    // SAFETY: close_range takes plain integers; it closes every fd from 4 up, none of which
    // this process uses (the control socket is fd 3).
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            (SOCK_FD + 1) as libc::c_uint,
            libc::c_uint::MAX,
            0 as libc::c_uint,
        )
    };
    // Orphans of this helper's descendants come here, not to pid 1, so that this helper can
    // reap them: no zombie is left behind whatever order helpers are dropped in.
    if rustix::process::set_child_subreaper(Some(rustix::process::getpid())).is_err() {
        return Err(123);
    }
    if arm_parent_death_signal(parent).is_err() {
        return Err(121);
    }
    // Signals sent to test the kill(2) permission rules are ignored (delivered and dropped),
    // so a helper survives them; SIGKILL still ends it.
    for sig in IGNORED_SIGNALS {
        // SAFETY: signal() with SIG_IGN installs no handler code; it only changes this
        // process's disposition of a catchable signal.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
    Ok(())
}

/// Apply the setup options and unshare: the "ready" reply (pid, capability sets before the
/// unshare, or the failed step), or an exit code if the parent helper is already gone.
fn set_up(opts: &RawOpts, parent: Option<i32>) -> Result<Rep, i32> {
    let mut ready = match apply_creds(opts) {
        Ok(()) => Rep::ok(),
        Err((step, e)) => Rep::err(step, e),
    };
    if arm_parent_death_signal(parent).is_err() {
        return Err(122);
    }
    let (eff, prm, inh) = caps_now();
    ready.v = [
        rustix::process::getpid().as_raw_nonzero().get() as u64,
        eff,
        prm,
        inh,
        0,
    ];
    if ready.errno == 0 && opts.flags & F_UNSHARE != 0 {
        // SAFETY: unshare(CLONE_NEWUSER) changes only this process's credentials; the process
        // is single-threaded (a fork child) and shares no fs_struct, as the kernel requires.
        let r = unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWUSER) };
        if let Err(e) = r {
            ready.errno = e.raw_os_error();
            ready.step = STEP_UNSHARE;
        }
    }
    Ok(ready)
}

/// Serve requests until `OP_EXIT` or end-of-file (the controller is gone): the exit code.
/// In a nested helper forked by `OP_SPAWN` this starts over as that helper.
pub(super) fn serve_loop(req_buf: &mut [u8], rep_buf: &mut [u8], parent: Option<i32>) -> i32 {
    let mut table = FdTable::new();
    let mut children = Children::new();
    loop {
        children.reap_exited();
        let (n, passed) = match recv_request(req_buf) {
            Ok(Some(x)) => x,
            Ok(None) => {
                children.kill_and_reap_all();
                return 0;
            }
            Err(_) => {
                children.kill_and_reap_all();
                return 2;
            }
        };
        let mut out_fd: Option<RawFd> = None;
        let (rep, payload_len) = if n < HDR {
            drop(passed);
            (Rep::err(STEP_PROTOCOL, Errno::INVAL), 0)
        } else {
            let req = Req::decode(&req_buf[..HDR]);
            match req.op {
                OP_EXIT => {
                    children.kill_and_reap_all();
                    return 0;
                }
                OP_REAP => (reap(&req, &mut children), 0),
                OP_SPAWN => match spawn(&req_buf[HDR..n], passed) {
                    Spawned::Parent(rep) => (track(rep, &mut children), 0),
                    Spawned::Child {
                        sock,
                        opts: child_opts,
                        parent: me,
                    } => {
                        // This is the new helper: start over with its socket and options.
                        return run(sock, req_buf, rep_buf, &child_opts, Some(me));
                    }
                },
                _ => serve(
                    &req,
                    &req_buf[HDR..n],
                    passed,
                    &mut rep_buf[HDR..],
                    &mut out_fd,
                    &mut table,
                    parent,
                ),
            }
        };
        rep.encode(&mut rep_buf[..HDR]);
        let total = HDR + payload_len;
        let sent = match out_fd.map(|fd| table.get(fd)) {
            Some(Ok(fd)) => send_reply(&rep_buf[..total], Some(fd)),
            _ => send_reply(&rep_buf[..total], None),
        };
        if sent.is_err() {
            return 3;
        }
    }
}

/// Record a nested helper `OP_SPAWN` just forked. One that cannot be tracked could not be
/// reaped in order: it is killed and reaped now, and the request refused.
fn track(rep: Rep, children: &mut Children) -> Rep {
    if rep.errno != 0 || children.add(rep.v[0] as i32) {
        return rep;
    }
    if let Some(p) = rustix::process::Pid::from_raw(rep.v[0] as i32) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty());
    }
    Rep::err(STEP_FORK, Errno::AGAIN)
}

/// `OP_REAP`: wait for a child this helper forked (already killed by the controller). A child
/// already reaped (it exited before and was collected by `reap_exited`) counts as reaped.
fn reap(req: &Req, children: &mut Children) -> Rep {
    let pid = req.arg0 as i32;
    let Some(p) = rustix::process::Pid::from_raw(pid) else {
        return Rep::err(STEP_PROTOCOL, Errno::INVAL);
    };
    if !children.remove(pid) {
        return Rep::ok();
    }
    loop {
        match rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty()) {
            Ok(Some((_, status))) => {
                let mut rep = Rep::ok();
                rep.v[0] = status.as_raw() as u64;
                return rep;
            }
            Err(Errno::INTR) | Ok(None) => continue,
            Err(e) => return Rep::err(STEP_IO, e),
        }
    }
}

// Not boxed: the helper must not allocate.
#[allow(clippy::large_enum_variant)]
enum Spawned {
    Parent(Rep),
    Child {
        sock: RawFd,
        opts: RawOpts,
        parent: i32,
    },
}

/// `OP_SPAWN`: fork a nested helper that serves the socket passed with the request.
fn spawn(payload: &[u8], passed: Option<OwnedFd>) -> Spawned {
    let Some(opts) = RawOpts::decode(payload) else {
        return Spawned::Parent(Rep::err(STEP_PROTOCOL, Errno::INVAL));
    };
    let Some(sock_fd) = passed else {
        return Spawned::Parent(Rep::err(STEP_PROTOCOL, Errno::BADF));
    };
    let me = rustix::process::getpid().as_raw_nonzero().get();
    // SAFETY: this helper is single-threaded, so the child is a full copy of it; the child only
    // continues in `run`, which makes raw system calls on the preallocated buffers.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        return Spawned::Child {
            sock: sock_fd.into_raw_fd(),
            opts,
            parent: me,
        };
    }
    drop(sock_fd);
    if pid < 0 {
        return Spawned::Parent(Rep::err(STEP_FORK, crate::last_errno()));
    }
    let mut rep = Rep::ok();
    rep.v[0] = pid as u64;
    Spawned::Parent(rep)
}

/// Receive one request; `None` at end-of-file (the controller is gone). A passed fd, if any,
/// now belongs to this helper.
fn recv_request(buf: &mut [u8]) -> Result<Option<(usize, Option<OwnedFd>)>, Errno> {
    let (n, got) = recv_msg(sock(), buf, RecvFlags::empty())?;
    if n == 0 {
        return Ok(None);
    }
    Ok(Some((n, got)))
}

pub(super) fn send_reply(data: &[u8], fd: Option<BorrowedFd<'_>>) -> Result<(), Errno> {
    send_msg(sock(), &[IoSlice::new(data)], fd)
}
