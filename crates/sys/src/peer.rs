//! The other end of a Unix socket: its credentials (`SO_PEERCRED`, `unix(7)`) and file
//! descriptors passed along with data (`SCM_RIGHTS`, `cmsg(3)`).

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use crate::{Errno, Error, Pid};

/// Most descriptors one message may carry (more are refused on send, closed on receive).
pub const MAX_FDS: usize = 8;

/// Who connected: the credentials the kernel recorded at `connect(2)` time, in the reader's
/// pid and user namespaces.
#[doc(alias = "SO_PEERCRED")]
#[doc(alias = "ucred")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCred {
    /// The peer's pid (0 if it is in a pid namespace the reader cannot see).
    pub pid: Pid,
    /// Its effective uid.
    pub uid: u32,
    /// Its effective gid.
    pub gid: u32,
}

/// The peer credentials of a connected Unix socket (`getsockopt(SO_PEERCRED)`, `unix(7)`).
/// They cannot be forged by the peer: the kernel takes them from its credentials at connect.
#[doc(alias = "SO_PEERCRED")]
pub fn peer_cred(sock: BorrowedFd<'_>) -> Result<PeerCred, Error> {
    let c = rustix::net::sockopt::socket_peercred(sock).map_err(|errno| Error::Sys {
        op: "getsockopt SO_PEERCRED",
        errno,
    })?;
    Ok(PeerCred {
        pid: Pid(c.pid.as_raw_nonzero().get()),
        uid: c.uid.as_raw(),
        gid: c.gid.as_raw(),
    })
}

/// Send all of `data`, with `fds` attached to its first byte (`sendmsg(2)` with one
/// `SCM_RIGHTS` control message). `MSG_NOSIGNAL`: a vanished peer is EPIPE, not SIGPIPE.
#[doc(alias = "sendmsg")]
#[doc(alias = "SCM_RIGHTS")]
pub fn send_with_fds(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<(), Error> {
    if fds.len() > MAX_FDS {
        return Err(Error::Invalid(format!(
            "{} file descriptors in one message; at most {MAX_FDS}",
            fds.len()
        )));
    }
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(Error::Invalid("control buffer too small".into()));
    }
    let mut off = 0;
    loop {
        let r = rustix::net::sendmsg(
            sock,
            &[IoSlice::new(&data[off..])],
            &mut control,
            SendFlags::NOSIGNAL,
        );
        match r {
            Ok(n) => {
                off += n;
                if off >= data.len() {
                    return Ok(());
                }
                // The descriptors went with the first chunk.
                control = SendAncillaryBuffer::new(&mut []);
            }
            Err(Errno::INTR) => continue,
            Err(errno) => {
                return Err(Error::Sys {
                    op: "sendmsg",
                    errno,
                })
            }
        }
    }
}

/// Receive up to `buf.len()` bytes, appending any descriptors that came with them to `fds`
/// (`recvmsg(2)`, `MSG_CMSG_CLOEXEC`). Returns the byte count; 0 is end of stream.
#[doc(alias = "recvmsg")]
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> Result<usize, Error> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    loop {
        match rustix::net::recvmsg(
            sock,
            &mut [IoSliceMut::new(buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(m) => {
                for msg in control.drain() {
                    if let RecvAncillaryMessage::ScmRights(rights) = msg {
                        fds.extend(rights);
                    }
                }
                return Ok(m.bytes);
            }
            Err(Errno::INTR) => continue,
            Err(errno) => {
                return Err(Error::Sys {
                    op: "recvmsg",
                    errno,
                })
            }
        }
    }
}
