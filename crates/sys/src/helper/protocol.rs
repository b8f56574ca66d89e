//! The wire between a [`UsernsChild`](super::UsernsChild) and its helper, shared by both sides
//! of the fork: one `SOCK_SEQPACKET` message per request and per reply, each a fixed header
//! ([`Req`], [`Rep`]) and a payload, with at most one fd passed alongside (`SCM_RIGHTS`).
//!
//! Everything here is plain copying between integers and byte buffers the caller provides, so
//! the helper (a fork child) may use it: no allocation, no locks.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

use rustix::fs::SeekFrom;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use crate::Errno;

/// Signals a helper ignores (so that sending them for real, to test `kill(2)`, leaves it
/// running): SIGHUP, SIGINT, SIGUSR1, SIGUSR2, SIGTERM.
pub(crate) const IGNORED_SIGNALS: [libc::c_int; 5] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGTERM,
];

/// The fd the helper keeps its control socket as.
pub(crate) const SOCK_FD: RawFd = 3;
/// Largest request (header + payload) and largest reply.
pub(crate) const MSG_MAX: usize = 64 * 1024;
/// Size of both headers.
pub(crate) const HDR: usize = 48;
/// Most supplementary groups a helper can be given.
pub(crate) const MAX_GROUPS: usize = 64;

pub(crate) const OP_OPEN: u32 = 1;
pub(crate) const OP_WRITE: u32 = 2;
pub(crate) const OP_READ_PATH: u32 = 3;
pub(crate) const OP_CLOSE: u32 = 4;
pub(crate) const OP_STAT: u32 = 5;
pub(crate) const OP_IDS: u32 = 6;
pub(crate) const OP_SET_CREDS: u32 = 7;
pub(crate) const OP_SPAWN: u32 = 8;
pub(crate) const OP_REAP: u32 = 9;
pub(crate) const OP_FETCH_FD: u32 = 10;
pub(crate) const OP_INSTALL_FD: u32 = 11;
pub(crate) const OP_EXIT: u32 = 12;
/// A connected `AF_UNIX` stream socket pair, both ends kept in the helper's fd table.
pub(crate) const OP_SOCKETPAIR: u32 = 14;
/// `getsockopt(SO_PEERCRED)` on one of the helper's fds.
pub(crate) const OP_PEERCRED: u32 = 15;
/// One system call made as the helper (which one: the request's `how`, a `CALL_*`).
pub(crate) const OP_CALL: u32 = 13;

pub(crate) const CALL_ACCESS: u32 = 1;
pub(crate) const CALL_MKDIR: u32 = 2;
pub(crate) const CALL_CREATE: u32 = 3;
pub(crate) const CALL_CHMOD: u32 = 4;
pub(crate) const CALL_CHOWN: u32 = 5;
pub(crate) const CALL_KILL: u32 = 6;
pub(crate) const CALL_SETUID: u32 = 7;
pub(crate) const CALL_SETREUID: u32 = 8;
pub(crate) const CALL_SETRESUID: u32 = 9;
pub(crate) const CALL_SETGID: u32 = 10;
pub(crate) const CALL_SETREGID: u32 = 11;
pub(crate) const CALL_SETRESGID: u32 = 12;
pub(crate) const CALL_SETGROUPS: u32 = 13;
pub(crate) const CALL_UNSHARE_USER: u32 = 14;
pub(crate) const CALL_SETNS_USER: u32 = 15;
pub(crate) const CALL_NO_NEW_PRIVS: u32 = 16;
pub(crate) const CALL_EXEC: u32 = 17;
pub(crate) const CALL_FULL_CREDS: u32 = 18;
pub(crate) const CALL_PTRACE: u32 = 19;
pub(crate) const CALL_FSIDS: u32 = 20;
pub(crate) const CALL_VM_READ: u32 = 21;
/// Directory-entry calls (numbered apart from the others): `unlinkat`, `unlinkat(AT_REMOVEDIR)`,
/// `renameat2` (flags in `arg0`), `linkat`, `symlinkat`; payload one or two NUL-terminated paths.
pub(crate) const CALL_UNLINK: u32 = 40;
pub(crate) const CALL_RMDIR: u32 = 41;
pub(crate) const CALL_RENAME: u32 = 42;
pub(crate) const CALL_LINK: u32 = 43;
pub(crate) const CALL_SYMLINK: u32 = 44;
/// `truncate(2)`, `utimensat(2)`, `setxattr(2)` (numbered apart from the others).
pub(crate) const CALL_TRUNCATE: u32 = 60;
pub(crate) const CALL_UTIMES: u32 = 61;
pub(crate) const CALL_SETXATTR: u32 = 62;
/// `setfsuid(2)`; the capability and fs-id calls are numbered from 70.
pub(crate) const CALL_SETFSUID: u32 = 70;
/// `setfsgid(2)`.
pub(crate) const CALL_SETFSGID: u32 = 71;
/// `capset(2)` of the helper itself; payload: effective, permitted, inheritable (u64 each).
pub(crate) const CALL_CAPSET: u32 = 72;
/// `prctl(arg0, arg1, arg2, 0, 0)` with integer arguments.
pub(crate) const CALL_PRCTL: u32 = 73;
/// `kcmp(self, arg0, KCMP_VM)`: `ptrace_may_access(PTRACE_MODE_READ_REALCREDS)` on arg0.
pub(crate) const CALL_KCMP_VM: u32 = 74;
/// `execve` of the re-exec helper program (payload: its path), which goes on serving the
/// same socket: the helper gets a new `mm` whose user namespace is its current one.
pub(crate) const CALL_REEXEC: u32 = 75;
/// One byte with `SCM_CREDENTIALS {own pid, arg1, arg2}` on fd arg0.
pub(crate) const CALL_SEND_CREDS: u32 = 76;
/// Receive one byte on fd arg0 with its `SCM_CREDENTIALS` (arg1 1: only set `SO_PASSCRED`).
pub(crate) const CALL_RECV_CREDS: u32 = 77;
/// `readlink(path)` (payload), the target's length in `v[0]` (the target itself is dropped).
pub(crate) const CALL_READLINK: u32 = 78;
/// Block a signal (`sigprocmask(SIG_BLOCK)`): sent to this helper it stays pending.
pub(crate) const CALL_SIG_BLOCK: u32 = 80;
/// Take a pending blocked signal (`sigtimedwait`, no wait; EAGAIN if none) and unblock it.
pub(crate) const CALL_SIG_TAKE: u32 = 81;
pub(crate) const CALL_UNSHARE_NS: u32 = 90;
pub(crate) const CALL_SETNS_NS: u32 = 91;
pub(crate) const CALL_SETHOSTNAME: u32 = 92;
pub(crate) const CALL_BIND_TCP: u32 = 93;
pub(crate) const CALL_MOUNT_NEW: u32 = 94;
pub(crate) const CALL_UMOUNT: u32 = 95;
pub(crate) const CALL_REMOUNT_BIND: u32 = 96;
/// `mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)`: no mount event of the helper's mount
/// namespace propagates out of it, nor in.
pub(crate) const CALL_ROOT_PRIVATE: u32 = 110;
/// `move_mount(fd, "", AT_FDCWD, path, MOVE_MOUNT_F_EMPTY_PATH)` of the passed fd (a detached
/// mount) at the payload's path, in the helper's mount namespace.
pub(crate) const CALL_ATTACH_MOUNT: u32 = 111;

/// Words of a `CALL_FULL_CREDS` payload before the groups: ruid euid suid fsuid rgid egid sgid
/// fsgid securebits flags umask ngroups.
pub(crate) const CREDS_WORDS: usize = 12;
/// Length of a `CALL_FULL_CREDS` payload: the words, the groups, then five u64 capability
/// sets (inheritable, permitted, effective, bounding, ambient).
pub(crate) const CREDS_LEN: usize = 4 * (CREDS_WORDS + MAX_GROUPS) + 5 * 8;
pub(crate) const CREDS_NO_NEW_PRIVS: u32 = 1;
pub(crate) const CREDS_DUMPABLE: u32 = 2;
pub(crate) const CREDS_KEEP_GROUPS: u32 = 4;

/// A `CALL_FULL_CREDS` payload, decoded: complete credentials in a form that needs no
/// allocation (the public form is [`FullCreds`](super::FullCreds)).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawCreds {
    /// Real, effective, saved and filesystem uid.
    pub uid: [u32; 4],
    /// Real, effective, saved and filesystem gid.
    pub gid: [u32; 4],
    pub securebits: u32,
    /// `CREDS_*` bits.
    pub flags: u32,
    pub umask: u32,
    /// How many of `groups` count (at most `MAX_GROUPS`).
    pub ngroups: usize,
    pub groups: [u32; MAX_GROUPS],
    pub inheritable: u64,
    pub permitted: u64,
    pub effective: u64,
    pub bounding: u64,
    pub ambient: u64,
}

impl RawCreds {
    /// The payload: the `CREDS_WORDS` words, `MAX_GROUPS` group slots, then the five sets.
    pub(crate) fn encode(&self) -> [u8; CREDS_LEN] {
        let mut p = [0u8; CREDS_LEN];
        let words = [
            self.uid[0],
            self.uid[1],
            self.uid[2],
            self.uid[3],
            self.gid[0],
            self.gid[1],
            self.gid[2],
            self.gid[3],
            self.securebits,
            self.flags,
            self.umask,
            self.ngroups as u32,
        ];
        let groups = &self.groups[..self.ngroups.min(MAX_GROUPS)];
        for (i, w) in words.iter().chain(groups).enumerate() {
            p[4 * i..4 * i + 4].copy_from_slice(&w.to_ne_bytes());
        }
        let at = 4 * (CREDS_WORDS + MAX_GROUPS);
        let sets = [
            self.inheritable,
            self.permitted,
            self.effective,
            self.bounding,
            self.ambient,
        ];
        for (i, v) in sets.iter().enumerate() {
            p[at + 8 * i..at + 8 * i + 8].copy_from_slice(&v.to_ne_bytes());
        }
        p
    }

    /// `None` if the payload is short.
    pub(crate) fn decode(p: &[u8]) -> Option<Self> {
        if p.len() < CREDS_LEN {
            return None;
        }
        let w = |i: usize| rd_u32(p, 4 * i);
        let mut groups = [0u32; MAX_GROUPS];
        for (i, g) in groups.iter_mut().enumerate() {
            *g = w(CREDS_WORDS + i);
        }
        let c = 4 * (CREDS_WORDS + MAX_GROUPS);
        Some(RawCreds {
            uid: [w(0), w(1), w(2), w(3)],
            gid: [w(4), w(5), w(6), w(7)],
            securebits: w(8),
            flags: w(9),
            umask: w(10),
            ngroups: (w(11) as usize).min(MAX_GROUPS),
            groups,
            inheritable: rd_u64(p, c),
            permitted: rd_u64(p, c + 8),
            effective: rd_u64(p, c + 16),
            bounding: rd_u64(p, c + 24),
            ambient: rd_u64(p, c + 32),
        })
    }
}

pub(crate) const HOW_WRITE: u32 = 0;
pub(crate) const HOW_SEEK: u32 = 1;
pub(crate) const HOW_PWRITE: u32 = 2;

/// Steps a failure may come from (the reply's `step`).
pub(crate) const STEP_SETGROUPS: u32 = 1;
pub(crate) const STEP_SETRESGID: u32 = 2;
pub(crate) const STEP_SETRESUID: u32 = 3;
pub(crate) const STEP_CAPSET: u32 = 4;
pub(crate) const STEP_UNSHARE: u32 = 5;
pub(crate) const STEP_PRCTL: u32 = 6;
pub(crate) const STEP_OPEN: u32 = 7;
pub(crate) const STEP_IO: u32 = 8;
pub(crate) const STEP_FORK: u32 = 9;
pub(crate) const STEP_PROTOCOL: u32 = 10;

/// Name of a step, for messages.
pub(crate) fn step_name(step: u32) -> &'static str {
    match step {
        STEP_SETGROUPS => "setgroups",
        STEP_SETRESGID => "setresgid",
        STEP_SETRESUID => "setresuid",
        STEP_CAPSET => "capset",
        STEP_UNSHARE => "unshare(CLONE_NEWUSER)",
        STEP_PRCTL => "prctl",
        STEP_OPEN => "open",
        STEP_IO => "read/write",
        STEP_FORK => "fork",
        STEP_PROTOCOL => "protocol",
        _ => "request",
    }
}

pub(crate) const F_SET_IDS: u32 = 1;
pub(crate) const F_SET_GROUPS: u32 = 2;
pub(crate) const F_SET_CAPS: u32 = 4;
pub(crate) const F_UNSHARE: u32 = 8;
pub(crate) const F_DUMPABLE: u32 = 16;

/// Credentials and namespace to set up, in a form that needs no allocation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawOpts {
    pub flags: u32,
    pub uid: u32,
    pub gid: u32,
    pub ngroups: u32,
    pub groups: [u32; MAX_GROUPS],
    pub cap_eff: u64,
    pub cap_prm: u64,
    pub cap_inh: u64,
}

pub(crate) const OPTS_LEN: usize = 16 + 4 * MAX_GROUPS + 24;

impl RawOpts {
    pub(crate) fn encode(&self, out: &mut [u8; OPTS_LEN]) {
        out[0..4].copy_from_slice(&self.flags.to_ne_bytes());
        out[4..8].copy_from_slice(&self.uid.to_ne_bytes());
        out[8..12].copy_from_slice(&self.gid.to_ne_bytes());
        out[12..16].copy_from_slice(&self.ngroups.to_ne_bytes());
        for (i, g) in self.groups.iter().enumerate() {
            out[16 + 4 * i..20 + 4 * i].copy_from_slice(&g.to_ne_bytes());
        }
        let c = 16 + 4 * MAX_GROUPS;
        out[c..c + 8].copy_from_slice(&self.cap_eff.to_ne_bytes());
        out[c + 8..c + 16].copy_from_slice(&self.cap_prm.to_ne_bytes());
        out[c + 16..c + 24].copy_from_slice(&self.cap_inh.to_ne_bytes());
    }

    pub(crate) fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < OPTS_LEN {
            return None;
        }
        let mut o = RawOpts {
            flags: rd_u32(b, 0),
            uid: rd_u32(b, 4),
            gid: rd_u32(b, 8),
            ngroups: rd_u32(b, 12),
            groups: [0; MAX_GROUPS],
            cap_eff: 0,
            cap_prm: 0,
            cap_inh: 0,
        };
        if o.ngroups as usize > MAX_GROUPS {
            return None;
        }
        for i in 0..MAX_GROUPS {
            o.groups[i] = rd_u32(b, 16 + 4 * i);
        }
        let c = 16 + 4 * MAX_GROUPS;
        o.cap_eff = rd_u64(b, c);
        o.cap_prm = rd_u64(b, c + 8);
        o.cap_inh = rd_u64(b, c + 16);
        Some(o)
    }
}

pub(crate) fn rd_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_ne_bytes(a)
}

pub(crate) fn rd_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_ne_bytes(a)
}

/// Request header: what to do.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Req {
    pub op: u32,
    pub fd: i32,
    pub how: u32,
    pub arg0: u64,
    pub arg1: u64,
    pub arg2: u64,
}

impl Req {
    pub(crate) fn encode(&self) -> [u8; HDR] {
        let mut b = [0u8; HDR];
        b[0..4].copy_from_slice(&self.op.to_ne_bytes());
        b[4..8].copy_from_slice(&self.fd.to_ne_bytes());
        b[8..12].copy_from_slice(&self.how.to_ne_bytes());
        b[16..24].copy_from_slice(&self.arg0.to_ne_bytes());
        b[24..32].copy_from_slice(&self.arg1.to_ne_bytes());
        b[32..40].copy_from_slice(&self.arg2.to_ne_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Self {
        Req {
            op: rd_u32(b, 0),
            fd: rd_u32(b, 4) as i32,
            how: rd_u32(b, 8),
            arg0: rd_u64(b, 16),
            arg1: rd_u64(b, 24),
            arg2: rd_u64(b, 32),
        }
    }
}

/// Reply header: the kernel's answer (`errno` 0 for success), the failing step, and values.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Rep {
    pub errno: i32,
    pub step: u32,
    pub v: [u64; 5],
}

impl Rep {
    pub(crate) fn encode(&self, b: &mut [u8]) {
        b[0..4].copy_from_slice(&self.errno.to_ne_bytes());
        b[4..8].copy_from_slice(&self.step.to_ne_bytes());
        for (i, v) in self.v.iter().enumerate() {
            b[8 + 8 * i..16 + 8 * i].copy_from_slice(&v.to_ne_bytes());
        }
    }

    pub(crate) fn decode(b: &[u8]) -> Self {
        let mut r = Rep {
            errno: rd_u32(b, 0) as i32,
            step: rd_u32(b, 4),
            v: [0; 5],
        };
        for i in 0..5 {
            r.v[i] = rd_u64(b, 8 + 8 * i);
        }
        r
    }

    pub(crate) fn ok() -> Self {
        Rep::default()
    }

    pub(crate) fn err(step: u32, e: Errno) -> Self {
        Rep {
            errno: e.raw_os_error(),
            step,
            v: [0; 5],
        }
    }
}

/// Send one message on `sock`: the `iov` pieces and, with `pass`, one fd (`SCM_RIGHTS`).
/// `EINTR` is retried; a closed peer is `EPIPE`, not `SIGPIPE` (`MSG_NOSIGNAL`).
pub(crate) fn send_msg(
    sock: BorrowedFd<'_>,
    iov: &[IoSlice<'_>],
    pass: Option<BorrowedFd<'_>>,
) -> Result<(), Errno> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    let fds;
    if let Some(p) = pass {
        fds = [p];
        cmsg.push(SendAncillaryMessage::ScmRights(&fds));
    }
    loop {
        match rustix::net::sendmsg(sock, iov, &mut cmsg, SendFlags::NOSIGNAL) {
            Ok(_) => return Ok(()),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Receive one message on `sock` into `buf`: its length (0 at end-of-file) and the first fd
/// passed with it, if any (further fds are closed). `EINTR` is retried.
pub(crate) fn recv_msg(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    flags: RecvFlags,
) -> Result<(usize, Option<OwnedFd>), Errno> {
    loop {
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut cmsg = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [IoSliceMut::new(buf)];
        match rustix::net::recvmsg(sock, &mut iov, &mut cmsg, flags) {
            Ok(r) => {
                let mut got = None;
                for msg in cmsg.drain() {
                    if let RecvAncillaryMessage::ScmRights(fds) = msg {
                        for f in fds {
                            if got.is_none() {
                                got = Some(f);
                            }
                            // Further fds are dropped (closed) here.
                        }
                    }
                }
                return Ok((r.bytes, got));
            }
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Write `data` to `fd`: plainly, after `lseek(offset)`, or with `pwrite(offset)`.
pub(crate) fn write_how(
    fd: BorrowedFd<'_>,
    data: &[u8],
    how: u32,
    offset: u64,
) -> Result<usize, Errno> {
    match how {
        HOW_SEEK => {
            rustix::fs::seek(fd, SeekFrom::Start(offset))?;
            rustix::io::write(fd, data)
        }
        HOW_PWRITE => rustix::io::pwrite(fd, data, offset),
        _ => rustix::io::write(fd, data),
    }
}
