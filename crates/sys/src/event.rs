//! Readiness and wake-ups for a single-threaded server loop: an epoll set (`epoll(7)`), an
//! eventfd to wake it from other threads (`eventfd(2)`), nonblocking socket I/O that carries
//! file descriptors (`recvmsg(2)`/`sendmsg(2)` with `MSG_DONTWAIT`), and raising the
//! open-file limit (`RLIMIT_NOFILE`, `getrlimit(2)`).

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::epoll;
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendFlags};

use crate::{Errno, Error};

/// What an fd in a [`Poller`] is waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Interest {
    /// Data to read (or end of stream, or a connection to accept).
    pub readable: bool,
    /// Room to write.
    pub writable: bool,
}

/// One readiness report from [`Poller::wait`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// The token the fd was registered with.
    pub token: u64,
    /// `EPOLLIN` (or `EPOLLRDHUP`).
    pub readable: bool,
    /// `EPOLLOUT`.
    pub writable: bool,
    /// `EPOLLHUP` or `EPOLLERR`: the peer is gone or the socket failed.
    pub hangup: bool,
}

/// A level-triggered epoll set (`epoll_create1(EPOLL_CLOEXEC)`).
pub struct Poller {
    epoll: OwnedFd,
    events: Vec<epoll::Event>,
}

fn flags(i: Interest) -> epoll::EventFlags {
    let mut f = epoll::EventFlags::empty();
    if i.readable {
        f |= epoll::EventFlags::IN | epoll::EventFlags::RDHUP;
    }
    if i.writable {
        f |= epoll::EventFlags::OUT;
    }
    f
}

impl Poller {
    /// A new, empty set reporting at most `capacity` fds per [`wait`](Self::wait).
    pub fn new(capacity: usize) -> Result<Self, Error> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC).map_err(|errno| Error::Sys {
            op: "epoll_create1",
            errno,
        })?;
        Ok(Poller {
            epoll,
            events: Vec::with_capacity(capacity.max(1)),
        })
    }

    /// Watch `fd` for `interest`, reporting it as `token` (`EPOLL_CTL_ADD`). Hang-ups and
    /// errors are always reported; a half-close (`EPOLLRDHUP`) only with `readable`.
    pub fn add(&self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> Result<(), Error> {
        epoll::add(
            &self.epoll,
            fd,
            epoll::EventData::new_u64(token),
            flags(interest),
        )
        .map_err(|errno| Error::Sys {
            op: "epoll_ctl ADD",
            errno,
        })
    }

    /// Change what `fd` is watched for (`EPOLL_CTL_MOD`).
    pub fn modify(&self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> Result<(), Error> {
        epoll::modify(
            &self.epoll,
            fd,
            epoll::EventData::new_u64(token),
            flags(interest),
        )
        .map_err(|errno| Error::Sys {
            op: "epoll_ctl MOD",
            errno,
        })
    }

    /// Stop watching `fd` (`EPOLL_CTL_DEL`). Closing an fd also removes it.
    pub fn delete(&self, fd: BorrowedFd<'_>) -> Result<(), Error> {
        epoll::delete(&self.epoll, fd).map_err(|errno| Error::Sys {
            op: "epoll_ctl DEL",
            errno,
        })
    }

    /// Wait up to `timeout` (forever if `None`) for readiness; an interrupted wait returns
    /// no events.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<Vec<Readiness>, Error> {
        let ts = timeout.map(|t| rustix::event::Timespec {
            tv_sec: t.as_secs().min(i32::MAX as u64) as _,
            tv_nsec: t.subsec_nanos() as _,
        });
        self.events.clear();
        match epoll::wait(
            &self.epoll,
            rustix::buffer::spare_capacity(&mut self.events),
            ts.as_ref(),
        ) {
            Ok(_) => {}
            Err(Errno::INTR) => return Ok(Vec::new()),
            Err(errno) => {
                return Err(Error::Sys {
                    op: "epoll_wait",
                    errno,
                })
            }
        }
        Ok(self
            .events
            .iter()
            .map(|e| {
                let f = e.flags;
                Readiness {
                    token: e.data.u64(),
                    readable: f.intersects(epoll::EventFlags::IN | epoll::EventFlags::RDHUP),
                    writable: f.contains(epoll::EventFlags::OUT),
                    hangup: f.intersects(epoll::EventFlags::HUP | epoll::EventFlags::ERR),
                }
            })
            .collect())
    }
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller")
            .field("epoll", &self.epoll)
            .finish()
    }
}

impl AsFd for Poller {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }
}

/// An eventfd other threads write to wake a [`Poller`] that watches it.
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
}

impl Waker {
    /// A new nonblocking, close-on-exec eventfd.
    pub fn new() -> Result<Self, Error> {
        let fd = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )
        .map_err(|errno| Error::Sys {
            op: "eventfd",
            errno,
        })?;
        Ok(Waker { fd })
    }

    /// Make the eventfd readable. Never blocks; a counter already near its maximum stays
    /// readable, which is all a wake-up needs.
    pub fn wake(&self) {
        let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
    }

    /// Reset the eventfd to not readable (after a wake-up was seen).
    pub fn drain(&self) {
        let mut b = [0u8; 8];
        let _ = rustix::io::read(&self.fd, &mut b);
    }
}

impl AsFd for Waker {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// What [`recv_nonblocking`] got.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Received {
    /// This many bytes (at least one); descriptors that came with them were appended.
    Data(usize),
    /// End of stream: the peer shut down its writing side.
    Eof,
    /// Nothing to read now (`EAGAIN`).
    WouldBlock,
    /// The kernel had more descriptors than fit (`MSG_CTRUNC`): the ones that did not fit are
    /// already closed by the kernel, those that fit were appended; the stream is no longer in
    /// a known state.
    FdsTruncated,
}

/// One `recvmsg(2)` with `MSG_DONTWAIT | MSG_CMSG_CLOEXEC`, room for at most `max_fds`
/// descriptors (`SCM_RIGHTS`, rounded up to the control buffer's alignment, so a few more
/// may arrive: callers count `fds`), appended to `fds`. `EINTR` is retried.
#[doc(alias = "recvmsg")]
pub fn recv_nonblocking(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    max_fds: usize,
) -> Result<Received, Error> {
    let mut space =
        vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(max_fds.max(1)))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    loop {
        match rustix::net::recvmsg(
            sock,
            &mut [IoSliceMut::new(buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT,
        ) {
            Ok(m) => {
                for msg in control.drain() {
                    if let RecvAncillaryMessage::ScmRights(rights) = msg {
                        fds.extend(rights);
                    }
                }
                if m.flags.contains(ReturnFlags::CTRUNC) {
                    return Ok(Received::FdsTruncated);
                }
                return Ok(if m.bytes == 0 {
                    Received::Eof
                } else {
                    Received::Data(m.bytes)
                });
            }
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(Received::WouldBlock),
            Err(errno) => {
                return Err(Error::Sys {
                    op: "recvmsg",
                    errno,
                })
            }
        }
    }
}

/// One `send(2)` with `MSG_DONTWAIT | MSG_NOSIGNAL`: the bytes written (0 when the socket is
/// full). A vanished peer is an `EPIPE` error, never `SIGPIPE`.
#[doc(alias = "send")]
pub fn send_nonblocking(sock: BorrowedFd<'_>, data: &[u8]) -> Result<usize, Error> {
    loop {
        match rustix::net::sendmsg(
            sock,
            &[IoSlice::new(data)],
            &mut rustix::net::SendAncillaryBuffer::new(&mut []),
            SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
        ) {
            Ok(n) => return Ok(n),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(0),
            Err(errno) => {
                return Err(Error::Sys {
                    op: "sendmsg",
                    errno,
                })
            }
        }
    }
}

/// Connect a stream socket to the Unix socket at `path`, giving up after `timeout`. A
/// listener whose backlog is full makes a nonblocking `connect(2)` fail with `EAGAIN` (it
/// cannot be waited for), so that is retried every few milliseconds until the deadline, then
/// reported as `ETIMEDOUT`. The stream returned is blocking.
#[doc(alias = "connect")]
pub fn unix_connect_timeout(path: &Path, timeout: Duration) -> Result<UnixStream, Error> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let err = |op, errno| Error::Path {
        op,
        path: path.to_path_buf(),
        errno,
    };
    let addr = SocketAddrUnix::new(path).map_err(|e| err("connect", e))?;
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .map_err(|e| err("socket", e))?;
    let deadline = Instant::now() + timeout;
    loop {
        match rustix::net::connect(&fd, &addr) {
            Ok(()) => break,
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) | Err(Errno::INPROGRESS) => {
                if Instant::now() >= deadline {
                    return Err(err("connect", Errno::TIMEDOUT));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(err("connect", e)),
        }
    }
    let stream = UnixStream::from(fd);
    stream.set_nonblocking(false).map_err(|e| {
        err(
            "fcntl O_NONBLOCK",
            Errno::from_io_error(&e).unwrap_or(Errno::IO),
        )
    })?;
    Ok(stream)
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit; returns the new soft limit (`None`:
/// unlimited).
#[doc(alias = "setrlimit")]
pub fn raise_nofile_limit() -> Result<Option<u64>, Error> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let cur = getrlimit(Resource::Nofile);
    if cur.current == cur.maximum {
        return Ok(cur.current);
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: cur.maximum,
            maximum: cur.maximum,
        },
    )
    .map_err(|errno| Error::Sys {
        op: "setrlimit RLIMIT_NOFILE",
        errno,
    })?;
    Ok(cur.maximum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waker_wakes_poller() {
        let mut p = Poller::new(8).unwrap();
        let w = Waker::new().unwrap();
        p.add(
            w.as_fd(),
            7,
            Interest {
                readable: true,
                writable: false,
            },
        )
        .unwrap();
        assert!(p.wait(Some(Duration::from_millis(0))).unwrap().is_empty());
        w.wake();
        let ev = p.wait(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].token, 7);
        assert!(ev[0].readable);
        w.drain();
        assert!(p.wait(Some(Duration::from_millis(0))).unwrap().is_empty());
    }

    #[test]
    fn recv_nonblocking_reports_would_block_data_eof_and_truncation() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut buf = [0u8; 16];
        let mut fds = Vec::new();
        assert_eq!(
            recv_nonblocking(b.as_fd(), &mut buf, &mut fds, 2).unwrap(),
            Received::WouldBlock
        );
        let extra: Vec<OwnedFd> = (0..8)
            .map(|_| rustix::pipe::pipe().unwrap().0)
            .collect::<Vec<_>>();
        let borrowed: Vec<BorrowedFd<'_>> = extra.iter().map(|f| f.as_fd()).collect();
        crate::peer::send_with_fds(a.as_fd(), b"x", &borrowed[..1]).unwrap();
        assert_eq!(
            recv_nonblocking(b.as_fd(), &mut buf, &mut fds, 2).unwrap(),
            Received::Data(1)
        );
        assert_eq!(fds.len(), 1);
        crate::peer::send_with_fds(a.as_fd(), b"y", &borrowed).unwrap();
        // The control buffer has some slack beyond `max_fds`; eight never fit in room for one.
        assert_eq!(
            recv_nonblocking(b.as_fd(), &mut buf, &mut fds, 1).unwrap(),
            Received::FdsTruncated
        );
        assert_eq!(send_nonblocking(a.as_fd(), b"z").unwrap(), 1);
        drop(a);
        assert_eq!(
            recv_nonblocking(b.as_fd(), &mut buf, &mut fds, 2).unwrap(),
            Received::Data(1)
        );
        assert_eq!(
            recv_nonblocking(b.as_fd(), &mut buf, &mut fds, 2).unwrap(),
            Received::Eof
        );
    }

    #[test]
    fn connect_with_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let e = unix_connect_timeout(&path, Duration::from_millis(50)).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Path {
                    errno: Errno::NOENT,
                    ..
                }
            ),
            "{e}"
        );
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let mut s = unix_connect_timeout(&path, Duration::from_secs(5)).unwrap();
        let (mut a, _) = l.accept().unwrap();
        use std::io::{Read, Write};
        s.write_all(b"hi").unwrap();
        let mut b = [0u8; 2];
        a.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"hi");
    }

    #[test]
    fn raise_nofile_limit_reaches_the_hard_limit() {
        let l = raise_nofile_limit().unwrap();
        let now = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert_eq!(now.current, l);
        assert_eq!(now.current, now.maximum);
    }
}
