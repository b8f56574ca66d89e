//! The forked child's side: the bookkeeping a helper keeps in fixed-size arrays on its stack
//! (it must not allocate): the fds it may touch and the nested helpers it must reap.

use std::os::fd::{BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use crate::Errno;

/// The fds this helper opened or was given (and may therefore use and close). Requests naming
/// any other fd get EBADF, so a confused controller cannot make the helper touch its socket or
/// close an fd twice (which Rust's I/O-safety checks would turn into an abort).
pub(super) struct FdTable {
    fds: [RawFd; 128],
    len: usize,
}

impl FdTable {
    pub(super) fn new() -> Self {
        FdTable {
            fds: [-1; 128],
            len: 0,
        }
    }

    pub(super) fn insert(&mut self, fd: OwnedFd) -> Result<RawFd, Errno> {
        if self.len == self.fds.len() {
            return Err(Errno::MFILE); // `fd` is dropped (closed) here
        }
        let raw = fd.into_raw_fd();
        self.fds[self.len] = raw;
        self.len += 1;
        Ok(raw)
    }

    pub(super) fn get(&self, fd: i32) -> Result<BorrowedFd<'_>, Errno> {
        if self.fds[..self.len].contains(&fd) {
            // SAFETY: the fd is in the table, so this helper owns it and it is open until
            // `remove` takes it out; the borrow cannot outlive `&self`.
            Ok(unsafe { BorrowedFd::borrow_raw(fd) })
        } else {
            Err(Errno::BADF)
        }
    }

    pub(super) fn remove(&mut self, fd: i32) -> Result<OwnedFd, Errno> {
        let i = self.fds[..self.len]
            .iter()
            .position(|&f| f == fd)
            .ok_or(Errno::BADF)?;
        self.fds[i] = self.fds[self.len - 1];
        self.len -= 1;
        Ok(own(fd))
    }
}

/// The helpers this helper forked and has not reaped yet.
pub(super) struct Children {
    pids: [i32; 1024],
    len: usize,
}

impl Children {
    pub(super) fn new() -> Self {
        Children {
            pids: [0; 1024],
            len: 0,
        }
    }

    pub(super) fn add(&mut self, pid: i32) -> bool {
        if self.len == self.pids.len() {
            return false;
        }
        self.pids[self.len] = pid;
        self.len += 1;
        true
    }

    pub(super) fn remove(&mut self, pid: i32) -> bool {
        match self.pids[..self.len].iter().position(|&p| p == pid) {
            Some(i) => {
                self.pids[i] = self.pids[self.len - 1];
                self.len -= 1;
                true
            }
            None => false,
        }
    }

    /// Reap every child that has already exited (its own or an orphan re-parented to this
    /// helper, which is a child subreaper), without blocking.
    pub(super) fn reap_exited(&mut self) {
        while let Ok(Some((pid, _))) =
            rustix::process::waitpid(None, rustix::process::WaitOptions::NOHANG)
        {
            self.remove(pid.as_raw_nonzero().get());
        }
    }

    /// Before exiting: kill every child and reap everything, orphans of dead children included
    /// (they were re-parented here and die of PR_SET_PDEATHSIG), until there are no children.
    /// Bounded: after 5 seconds of children that will not die the helper gives up and exits
    /// (they then go to the next subreaper up, or to pid 1).
    pub(super) fn kill_and_reap_all(&mut self) {
        for &pid in &self.pids[..self.len] {
            if let Some(p) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
        }
        let pause = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 200_000,
        };
        let mut waited = 0u32;
        loop {
            match rustix::process::waitpid(None, rustix::process::WaitOptions::NOHANG) {
                Ok(Some((pid, _))) => {
                    self.remove(pid.as_raw_nonzero().get());
                }
                Ok(None) if waited < 25_000 => {
                    waited += 1;
                    let _ = rustix::thread::nanosleep(&pause);
                }
                Err(Errno::INTR) => continue,
                _ => break,
            }
        }
        self.len = 0;
    }
}

/// Take ownership of a raw fd this helper holds in its fd table, so it closes when dropped.
fn own(raw: RawFd) -> OwnedFd {
    // SAFETY: the only caller, `FdTable::remove`, passes an fd it held in the table and removed
    // from it first, so nothing else owns or uses the raw number afterwards.
    unsafe { OwnedFd::from_raw_fd(raw) }
}
