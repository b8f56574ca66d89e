//! The forked child's side of `SCM_CREDENTIALS`: sending the helper's pid with claimed ids on
//! one of its sockets, and receiving them (with `SO_PASSCRED`) on another. Stack buffers
//! only.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::BorrowedFd;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, UCred,
};

use super::protocol::{Rep, Req, CALL_RECV_CREDS, CALL_SEND_CREDS, STEP_IO, STEP_PROTOCOL};
use crate::Errno;

fn fd_arg(v: u64) -> BorrowedFd<'static> {
    // SAFETY: a plain fd number the controller names; a number that is not an open fd of
    // this helper makes the system calls below fail with EBADF, and nothing keeps it.
    unsafe { BorrowedFd::borrow_raw(v as i32) }
}

/// `CALL_SEND_CREDS` (arg0 fd, arg1 uid, arg2 gid; the payload, if 4 bytes, a pid to claim
/// instead of the helper's own) and `CALL_RECV_CREDS` (arg0 fd; arg1 1: only turn
/// `SO_PASSCRED` on).
pub(super) fn call(req: &Req, payload: &[u8], rep: &mut Rep) -> Result<(), Rep> {
    let fail = |e: Errno| Rep::err(STEP_IO, e);
    match req.how {
        CALL_SEND_CREDS => {
            let pid = match payload {
                [a, b, c, d] => {
                    rustix::process::Pid::from_raw(i32::from_ne_bytes([*a, *b, *c, *d]))
                }
                _ => None,
            }
            .unwrap_or_else(rustix::process::getpid);
            send(fd_arg(req.arg0), pid, req.arg1 as u32, req.arg2 as u32).map_err(fail)
        }
        CALL_RECV_CREDS if req.arg1 == 1 => {
            rustix::net::sockopt::set_socket_passcred(fd_arg(req.arg0), true).map_err(fail)
        }
        CALL_RECV_CREDS => {
            let (pid, uid, gid) = recv(fd_arg(req.arg0)).map_err(fail)?;
            rep.v[0] = pid as u64;
            rep.v[1] = uid as u64;
            rep.v[2] = gid as u64;
            Ok(())
        }
        _ => Err(Rep::err(STEP_PROTOCOL, Errno::NOSYS)),
    }
}

/// One byte with `SCM_CREDENTIALS {pid, uid, gid}`.
fn send(fd: BorrowedFd<'_>, pid: rustix::process::Pid, uid: u32, gid: u32) -> Result<(), Errno> {
    let cred = UCred {
        pid,
        uid: rustix::process::Uid::from_raw(uid),
        gid: rustix::process::Gid::from_raw(gid),
    };
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    cmsg.push(SendAncillaryMessage::ScmCredentials(cred));
    let byte = [b'c'];
    loop {
        match rustix::net::sendmsg(fd, &[IoSlice::new(&byte)], &mut cmsg, SendFlags::NOSIGNAL) {
            Ok(_) => return Ok(()),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Receive one byte without waiting: the credentials that came with it (EAGAIN: nothing
/// there; ENOMSG: no credentials).
fn recv(fd: BorrowedFd<'_>) -> Result<(i32, u32, u32), Errno> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    loop {
        match rustix::net::recvmsg(fd, &mut iov, &mut cmsg, RecvFlags::DONTWAIT) {
            Ok(_) => break,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
    for msg in cmsg.drain() {
        if let RecvAncillaryMessage::ScmCredentials(c) = msg {
            return Ok((c.pid.as_raw_nonzero().get(), c.uid.as_raw(), c.gid.as_raw()));
        }
    }
    Err(Errno::NOMSG)
}
