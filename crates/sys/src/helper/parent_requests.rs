//! The parent's side: [`UsernsChild`]'s requests about files, fds, sockets and processes,
//! each one message to the helper and its answer.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::OFlags;

use super::parent::path_payload;
use super::protocol::{self, Req};
use super::{RemoteFd, UsernsChild, WriteHow};
use crate::{Errno, Error, Pid};

impl UsernsChild {
    /// Have the helper `open(2)` a file (flags are `O_*` bits); the fd stays open in the helper.
    pub fn open(&self, path: &Path, flags: OFlags) -> Result<Result<RemoteFd, Errno>, Error> {
        let r = self.call(
            Req {
                op: protocol::OP_OPEN,
                arg0: flags.bits() as u64,
                arg1: 0o600,
                ..Req::default()
            },
            &path_payload(path)?,
            None,
        )?;
        Ok(Self::answer(&r.rep).map(|_| RemoteFd(r.rep.v[0] as i32)))
    }

    /// Have the helper write to one of its fds.
    pub fn write(
        &self,
        fd: RemoteFd,
        data: &[u8],
        how: WriteHow,
    ) -> Result<Result<usize, Errno>, Error> {
        let (h, off) = how.raw();
        let r = self.call(
            Req {
                op: protocol::OP_WRITE,
                fd: fd.0,
                how: h,
                arg0: off,
                ..Req::default()
            },
            data,
            None,
        )?;
        Ok(Self::answer(&r.rep).map(|_| r.rep.v[0] as usize))
    }

    /// Have the helper close one of its fds.
    pub fn close(&self, fd: RemoteFd) -> Result<Result<(), Errno>, Error> {
        let r = self.call(
            Req {
                op: protocol::OP_CLOSE,
                fd: fd.0,
                ..Req::default()
            },
            &[],
            None,
        )?;
        Ok(Self::answer(&r.rep))
    }

    /// Have the helper open `path` for writing, write `data` as `how` says, and close it.
    pub fn write_file(
        &self,
        path: &Path,
        data: &[u8],
        how: WriteHow,
    ) -> Result<Result<usize, Errno>, Error> {
        let fd = match self.open(path, OFlags::WRONLY)? {
            Ok(fd) => fd,
            Err(e) => return Ok(Err(e)),
        };
        let r = self.write(fd, data, how)?;
        self.close(fd)?.map_err(|errno| Error::Helper {
            pid: self.pid(),
            op: "close",
            errno,
        })?;
        Ok(r)
    }

    /// Have the helper read a whole file (at most 64 KiB minus a header; more is an error).
    pub fn read_file(&self, path: &Path) -> Result<Result<Vec<u8>, Errno>, Error> {
        let r = self.call(
            Req {
                op: protocol::OP_READ_PATH,
                ..Req::default()
            },
            &path_payload(path)?,
            None,
        )?;
        if r.rep.errno == 0 && r.rep.v[1] != 0 {
            return Err(Error::Invalid(format!(
                "{} is too large for a helper to read back",
                path.display()
            )));
        }
        Ok(Self::answer(&r.rep).map(|_| r.payload))
    }

    /// Have the helper check access to `path` (`faccessat2(2)`): `mode` is `R_OK`/`W_OK`/`X_OK`
    /// bits or 0 (`F_OK`); `eaccess` checks with the effective ids (`AT_EACCESS`).
    #[doc(alias = "faccessat2")]
    pub fn access(
        &self,
        path: &Path,
        mode: u32,
        eaccess: bool,
    ) -> Result<Result<(), Errno>, Error> {
        let flags = if eaccess { libc::AT_EACCESS as u64 } else { 0 };
        self.path_call(protocol::CALL_ACCESS, path, [mode as u64, flags, 0])
    }

    /// Have the helper `mkdir(2)` a directory with `mode` (before its umask).
    pub fn mkdir(&self, path: &Path, mode: u32) -> Result<Result<(), Errno>, Error> {
        self.path_call(protocol::CALL_MKDIR, path, [mode as u64, 0, 0])
    }

    /// Have the helper create a file (`open(2)` with `O_CREAT|O_EXCL`, then close it).
    pub fn create(&self, path: &Path, mode: u32) -> Result<Result<(), Errno>, Error> {
        self.path_call(protocol::CALL_CREATE, path, [mode as u64, 0, 0])
    }

    /// Have the helper `chmod(2)` a path.
    pub fn chmod(&self, path: &Path, mode: u32) -> Result<Result<(), Errno>, Error> {
        self.path_call(protocol::CALL_CHMOD, path, [mode as u64, 0, 0])
    }

    /// Have the helper `chown(2)` a path; `None` is -1, "no change". Ids in its namespace.
    pub fn chown(
        &self,
        path: &Path,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> Result<Result<(), Errno>, Error> {
        let a = |v: Option<u32>| v.unwrap_or(u32::MAX) as u64;
        self.path_call(protocol::CALL_CHOWN, path, [a(uid), a(gid), 0])
    }

    /// Have the helper send `signal` (0: only the permission check) to `pid` (`kill(2)`).
    /// Helpers ignore SIGHUP, SIGINT, SIGUSR1, SIGUSR2 and SIGTERM, so those may be sent to
    /// another helper for real ([`UsernsChild::ignored_signals`]).
    pub fn kill(&self, pid: Pid, signal: u32) -> Result<Result<(), Errno>, Error> {
        Ok(self
            .syscall(protocol::CALL_KILL, [pid.0 as u64, signal as u64, 0], &[])?
            .map(|_| ()))
    }

    /// Block `signal` in the helper, so that one sent to it stays pending (helpers survive it,
    /// whatever it is but SIGKILL and SIGSTOP) until [`UsernsChild::take_signal`].
    pub fn block_signal(&self, signal: u32) -> Result<Result<(), Errno>, Error> {
        Ok(self
            .syscall(protocol::CALL_SIG_BLOCK, [signal as u64, 0, 0], &[])?
            .map(|_| ()))
    }

    /// Take the pending blocked `signal` and unblock it: the `si_uid` the receiver got
    /// (EAGAIN: none was pending).
    pub fn take_signal(&self, signal: u32) -> Result<Result<u32, Errno>, Error> {
        Ok(self
            .syscall(protocol::CALL_SIG_TAKE, [signal as u64, 0, 0], &[])?
            .map(|r| r.rep.v[0] as u32))
    }

    /// The signals every helper ignores (and so survives).
    pub fn ignored_signals() -> &'static [i32] {
        &protocol::IGNORED_SIGNALS
    }

    /// Have the helper run `path` with one argument in a forked child (`execve(2)`, empty
    /// environment) and collect what it writes to stdout (at most 64 KiB) and its wait status.
    /// The helper itself keeps its credentials. The errno is `execve`'s if it failed.
    pub fn exec_capture(
        &self,
        path: &Path,
        arg: &str,
    ) -> Result<Result<(i32, Vec<u8>), Errno>, Error> {
        let mut p = path_payload(path)?;
        if arg.as_bytes().contains(&0) {
            return Err(Error::Invalid(format!("argument {arg:?} holds a NUL byte")));
        }
        p.extend_from_slice(arg.as_bytes());
        p.push(0);
        Ok(self
            .syscall(protocol::CALL_EXEC, [0; 3], &p)?
            .map(|r| (r.rep.v[0] as i32, r.payload)))
    }

    /// Have the helper attach to `pid` with `ptrace(2)` (`PTRACE_SEIZE`: the access check of
    /// `PTRACE_ATTACH`) and detach again at once.
    pub fn ptrace_attach(&self, pid: Pid) -> Result<Result<(), Errno>, Error> {
        Ok(self
            .syscall(protocol::CALL_PTRACE, [pid.0 as u64, 0, 0], &[])?
            .map(|_| ()))
    }

    /// Have the helper make `ptrace(2)`'s attach check on `pid` without attaching or reading
    /// anything: `process_vm_readv(2)` of address 0 (`PTRACE_MODE_ATTACH_REALCREDS`; refused
    /// with EPERM). Unlike [`UsernsChild::ptrace_attach`], the target is never stopped.
    #[doc(alias = "process_vm_readv")]
    pub fn ptrace_access_check(&self, pid: Pid) -> Result<Result<(), Errno>, Error> {
        Ok(self
            .syscall(protocol::CALL_VM_READ, [pid.0 as u64, 0, 0], &[])?
            .map(|_| ()))
    }

    /// Have the helper create a connected `AF_UNIX` stream socket pair (`socketpair(2)`): both
    /// ends record the helper's credentials as they are now, for `SO_PEERCRED`.
    pub fn socketpair(&self) -> Result<(RemoteFd, RemoteFd), Error> {
        let r = self.call_ok(
            Req {
                op: protocol::OP_SOCKETPAIR,
                ..Req::default()
            },
            &[],
            None,
            "socketpair",
        )?;
        Ok((RemoteFd(r.rep.v[0] as i32), RemoteFd(r.rep.v[1] as i32)))
    }

    /// Have the helper read the credentials of the peer of a socket it holds
    /// (`getsockopt(SO_PEERCRED)`, `unix(7)`): `(pid, uid, gid)`, the ids as the helper's
    /// namespace shows them.
    #[doc(alias = "SO_PEERCRED")]
    pub fn peercred(&self, fd: RemoteFd) -> Result<Result<(Pid, u32, u32), Errno>, Error> {
        let r = self.call(
            Req {
                op: protocol::OP_PEERCRED,
                fd: fd.0,
                ..Req::default()
            },
            &[],
            None,
        )?;
        Ok(Self::answer(&r.rep)
            .map(|_| (Pid(r.rep.v[0] as i32), r.rep.v[1] as u32, r.rep.v[2] as u32)))
    }

    /// Have the helper `stat(2)` a path: `(st_uid, st_gid, st_mode)` as its namespace shows them.
    pub fn stat(&self, path: &Path) -> Result<Result<(u32, u32, u32), Errno>, Error> {
        let r = self.call(
            Req {
                op: protocol::OP_STAT,
                ..Req::default()
            },
            &path_payload(path)?,
            None,
        )?;
        Ok(Self::answer(&r.rep).map(|_| (r.rep.v[0] as u32, r.rep.v[1] as u32, r.rep.v[2] as u32)))
    }

    /// Have the helper `stat(2)` a path: `(st_uid, st_gid)` as the helper's namespace shows them.
    pub fn stat_owner(&self, path: &Path) -> Result<Result<(u32, u32), Errno>, Error> {
        let r = self.call(
            Req {
                op: protocol::OP_STAT,
                ..Req::default()
            },
            &path_payload(path)?,
            None,
        )?;
        Ok(Self::answer(&r.rep).map(|_| (r.rep.v[0] as u32, r.rep.v[1] as u32)))
    }

    /// Get a duplicate of one of the helper's fds (passed over the socket, `SCM_RIGHTS`): the
    /// open file keeps the helper's credentials as its opener (`f_cred`).
    pub fn fetch_fd(&self, fd: RemoteFd) -> Result<OwnedFd, Error> {
        let r = self.call_ok(
            Req {
                op: protocol::OP_FETCH_FD,
                fd: fd.0,
                ..Req::default()
            },
            &[],
            None,
            "pass fd",
        )?;
        r.fd.ok_or(Error::Helper {
            pid: self.pid(),
            op: "pass fd (none arrived)",
            errno: Errno::BADF,
        })
    }

    /// Give the helper a duplicate of one of the caller's fds; returns its number there.
    pub fn install_fd(&self, fd: BorrowedFd<'_>) -> Result<RemoteFd, Error> {
        let r = self.call_ok(
            Req {
                op: protocol::OP_INSTALL_FD,
                ..Req::default()
            },
            &[],
            Some(fd),
            "receive fd",
        )?;
        Ok(RemoteFd(r.rep.v[0] as i32))
    }
}
