//! The helper side of [`crate::UsernsChild`]: what a forked child runs.
//!
//! The child is forked from a process that may have many threads, so it only makes raw system
//! calls (rustix's linux_raw backend, or thin libc wrappers) on buffers allocated before the
//! fork: no allocation, no locks, no stdio. It talks to its controller over a `SOCK_SEQPACKET`
//! socket (one message per request and per reply) that it keeps as fd 3; every other fd above 2
//! is closed at start, so no helper holds another helper's socket and each sees end-of-file
//! (and exits) when its controller goes away.

use std::ffi::CStr;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use rustix::fs::{Mode, OFlags, SeekFrom};
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

/// Words of a `CALL_FULL_CREDS` payload before the groups: ruid euid suid fsuid rgid egid sgid
/// fsgid securebits flags umask ngroups.
pub(crate) const CREDS_WORDS: usize = 12;
/// Length of a `CALL_FULL_CREDS` payload: the words, the groups, then five u64 capability
/// sets (inheritable, permitted, effective, bounding, ambient).
pub(crate) const CREDS_LEN: usize = 4 * (CREDS_WORDS + MAX_GROUPS) + 5 * 8;
pub(crate) const CREDS_NO_NEW_PRIVS: u32 = 1;
pub(crate) const CREDS_DUMPABLE: u32 = 2;
pub(crate) const CREDS_KEEP_GROUPS: u32 = 4;

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

    fn decode(b: &[u8]) -> Self {
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
    fn encode(&self, b: &mut [u8]) {
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

    fn ok() -> Self {
        Rep::default()
    }

    fn err(step: u32, e: Errno) -> Self {
        Rep {
            errno: e.raw_os_error(),
            step,
            v: [0; 5],
        }
    }
}

/// The fds this helper opened or was given (and may therefore use and close). Requests naming
/// any other fd get EBADF, so a confused controller cannot make the helper touch its socket or
/// close an fd twice (which Rust's I/O-safety checks would turn into an abort).
struct FdTable {
    fds: [RawFd; 128],
    len: usize,
}

impl FdTable {
    fn new() -> Self {
        FdTable {
            fds: [-1; 128],
            len: 0,
        }
    }

    fn insert(&mut self, fd: OwnedFd) -> Result<RawFd, Errno> {
        if self.len == self.fds.len() {
            return Err(Errno::MFILE); // `fd` is dropped (closed) here
        }
        let raw = fd.into_raw_fd();
        self.fds[self.len] = raw;
        self.len += 1;
        Ok(raw)
    }

    fn get(&self, fd: i32) -> Result<BorrowedFd<'_>, Errno> {
        if self.fds[..self.len].contains(&fd) {
            // SAFETY: the fd is in the table, so this helper owns it and it is open until
            // `remove` takes it out; the borrow cannot outlive `&self`.
            Ok(unsafe { BorrowedFd::borrow_raw(fd) })
        } else {
            Err(Errno::BADF)
        }
    }

    fn remove(&mut self, fd: i32) -> Result<OwnedFd, Errno> {
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
struct Children {
    pids: [i32; 1024],
    len: usize,
}

impl Children {
    fn new() -> Self {
        Children {
            pids: [0; 1024],
            len: 0,
        }
    }

    fn add(&mut self, pid: i32) -> bool {
        if self.len == self.pids.len() {
            return false;
        }
        self.pids[self.len] = pid;
        self.len += 1;
        true
    }

    fn remove(&mut self, pid: i32) -> bool {
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
    fn reap_exited(&mut self) {
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
    fn kill_and_reap_all(&mut self) {
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

/// Ask for SIGKILL when the parent helper dies, and check it has not died already. The kernel
/// clears this setting whenever the euid, egid, fsuid or fsgid change (`prctl(2)`), so it is
/// armed again after every credential change.
fn arm_parent_death_signal(parent: Option<i32>) -> Result<(), ()> {
    let Some(ppid) = parent else { return Ok(()) };
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(|_| ())?;
    if rustix::process::getppid().map(|p| p.as_raw_nonzero().get()) != Some(ppid) {
        return Err(());
    }
    Ok(())
}

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

/// `_exit(2)`: end the process without running anything of the forked-from program.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit takes no pointers and ends the process immediately; nothing runs after it.
    unsafe { libc::_exit(code) }
}

fn sock() -> BorrowedFd<'static> {
    // SAFETY: fd SOCK_FD is the control socket, set up at the start of `run` and never closed
    // while the helper runs (the helper exits instead).
    unsafe { BorrowedFd::borrow_raw(SOCK_FD) }
}

/// Apply credentials: groups, gids, uids, capability sets, dumpable. Raw syscalls that change
/// only the calling thread, which is the whole (single-threaded) helper.
fn apply_creds(o: &RawOpts) -> Result<(), (u32, Errno)> {
    use rustix::thread::{CapabilitySet, CapabilitySets};
    let keep = o.flags & F_SET_CAPS != 0 && o.flags & F_SET_IDS != 0;
    if keep {
        rustix::thread::set_keep_capabilities(true).map_err(|e| (STEP_PRCTL, e))?;
    }
    if o.flags & F_SET_GROUPS != 0 {
        let n = (o.ngroups as usize).min(MAX_GROUPS);
        let mut gids = [rustix::process::Gid::ROOT; MAX_GROUPS];
        for (g, raw) in gids.iter_mut().zip(&o.groups[..n]) {
            *g = rustix::process::Gid::from_raw(*raw);
        }
        rustix::thread::set_thread_groups(&gids[..n]).map_err(|e| (STEP_SETGROUPS, e))?;
    }
    if o.flags & F_SET_IDS != 0 {
        let g = rustix::process::Gid::from_raw(o.gid);
        rustix::thread::set_thread_res_gid(g, g, g).map_err(|e| (STEP_SETRESGID, e))?;
        let u = rustix::process::Uid::from_raw(o.uid);
        rustix::thread::set_thread_res_uid(u, u, u).map_err(|e| (STEP_SETRESUID, e))?;
    }
    if o.flags & F_SET_CAPS != 0 {
        let sets = CapabilitySets {
            effective: CapabilitySet::from_bits_retain(o.cap_eff),
            permitted: CapabilitySet::from_bits_retain(o.cap_prm),
            inheritable: CapabilitySet::from_bits_retain(o.cap_inh),
        };
        rustix::thread::set_capabilities(None, sets).map_err(|e| (STEP_CAPSET, e))?;
    }
    if keep {
        rustix::thread::set_keep_capabilities(false).map_err(|e| (STEP_PRCTL, e))?;
    }
    if o.flags & F_DUMPABLE != 0 {
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::Dumpable)
            .map_err(|e| (STEP_PRCTL, e))?;
    }
    Ok(())
}

fn caps_now() -> (u64, u64, u64) {
    match rustix::thread::capabilities(None) {
        Ok(c) => (c.effective.bits(), c.permitted.bits(), c.inheritable.bits()),
        Err(_) => (0, 0, 0),
    }
}

fn run(
    sock_in: RawFd,
    req_buf: &mut [u8],
    rep_buf: &mut [u8],
    opts: &RawOpts,
    parent: Option<i32>,
) -> i32 {
    if sock_in != SOCK_FD {
        // SAFETY: dup2 takes two fd numbers; sock_in is the open control socket and fd 3 is
        // free to be replaced (it is either unused or the socket of the helper we were forked
        // from, which this process must not keep).
        if unsafe { libc::dup2(sock_in, SOCK_FD) } < 0 {
            return 120;
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
        return 123;
    }
    if arm_parent_death_signal(parent).is_err() {
        return 121;
    }
    // Signals sent to test the kill(2) permission rules are ignored (delivered and dropped),
    // so a helper survives them; SIGKILL still ends it.
    for sig in IGNORED_SIGNALS {
        // SAFETY: signal() with SIG_IGN installs no handler code; it only changes this
        // process's disposition of a catchable signal.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
    let mut ready = match apply_creds(opts) {
        Ok(()) => Rep::ok(),
        Err((step, e)) => Rep::err(step, e),
    };
    if arm_parent_death_signal(parent).is_err() {
        return 122;
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
    let failed = ready.errno != 0;
    ready.encode(&mut rep_buf[..HDR]);
    if send_reply(&rep_buf[..HDR], None).is_err() || failed {
        return 1;
    }
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
            if let Some(fd) = passed {
                drop(own(fd));
            }
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
                    Spawned::Parent(rep) => {
                        if rep.errno == 0 && !children.add(rep.v[0] as i32) {
                            // Untracked children could not be reaped in order: refuse.
                            if let Some(p) = rustix::process::Pid::from_raw(rep.v[0] as i32) {
                                let _ =
                                    rustix::process::kill_process(p, rustix::process::Signal::KILL);
                                let _ = rustix::process::waitpid(
                                    Some(p),
                                    rustix::process::WaitOptions::empty(),
                                );
                            }
                            (Rep::err(STEP_FORK, Errno::AGAIN), 0)
                        } else {
                            (rep, 0)
                        }
                    }
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
fn spawn(payload: &[u8], passed: Option<RawFd>) -> Spawned {
    let Some(opts) = RawOpts::decode(payload) else {
        if let Some(fd) = passed {
            drop(own(fd));
        }
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
            sock: sock_fd,
            opts,
            parent: me,
        };
    }
    drop(own(sock_fd));
    if pid < 0 {
        return Spawned::Parent(Rep::err(STEP_FORK, crate::last_errno()));
    }
    let mut rep = Rep::ok();
    rep.v[0] = pid as u64;
    Spawned::Parent(rep)
}

/// Receive one request; `None` at end-of-file (the controller is gone). A passed fd, if any,
/// is returned as a raw fd this helper now owns.
fn recv_request(buf: &mut [u8]) -> Result<Option<(usize, Option<RawFd>)>, Errno> {
    loop {
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut cmsg = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [IoSliceMut::new(buf)];
        match rustix::net::recvmsg(sock(), &mut iov, &mut cmsg, RecvFlags::empty()) {
            Ok(r) => {
                let mut got: Option<RawFd> = None;
                for msg in cmsg.drain() {
                    if let RecvAncillaryMessage::ScmRights(fds) = msg {
                        for fd in fds {
                            if got.is_none() {
                                got = Some(fd.into_raw_fd());
                            }
                            // Further fds are dropped (closed) here.
                        }
                    }
                }
                if r.bytes == 0 {
                    return Ok(None);
                }
                return Ok(Some((r.bytes, got)));
            }
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

fn send_reply(data: &[u8], fd: Option<BorrowedFd<'_>>) -> Result<(), Errno> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    let fds;
    if let Some(fd) = fd {
        fds = [fd];
        cmsg.push(SendAncillaryMessage::ScmRights(&fds));
    }
    let iov = [IoSlice::new(data)];
    loop {
        match rustix::net::sendmsg(sock(), &iov, &mut cmsg, SendFlags::NOSIGNAL) {
            Ok(_) => return Ok(()),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

fn path_arg(payload: &[u8]) -> Option<&CStr> {
    CStr::from_bytes_until_nul(payload).ok()
}

/// Take ownership of a raw fd this helper was passed or opened, so it closes when dropped.
fn own(raw: RawFd) -> OwnedFd {
    // SAFETY: callers pass only fds this helper received (SCM_RIGHTS) or holds in its fd table,
    // and give up the raw number afterwards (the table entry is removed first).
    unsafe { OwnedFd::from_raw_fd(raw) }
}

/// Serve one request (all but `OP_EXIT` and `OP_SPAWN`), writing any reply payload into
/// `out`. Returns the reply and the payload length.
fn serve(
    req: &Req,
    payload: &[u8],
    passed: Option<RawFd>,
    out: &mut [u8],
    out_fd: &mut Option<RawFd>,
    table: &mut FdTable,
    parent: Option<i32>,
) -> (Rep, usize) {
    // A passed fd not consumed by the request is closed.
    let mut passed = passed;
    let result = (|| -> Result<(Rep, usize), Rep> {
        match req.op {
            OP_OPEN => {
                let path = path_arg(payload).ok_or(Rep::err(STEP_PROTOCOL, Errno::INVAL))?;
                let flags = OFlags::from_bits_retain(req.arg0 as u32);
                let fd = rustix::fs::open(path, flags, Mode::from_bits_retain(req.arg1 as u32))
                    .map_err(|e| Rep::err(STEP_OPEN, e))?;
                let mut rep = Rep::ok();
                rep.v[0] = table.insert(fd).map_err(|e| Rep::err(STEP_OPEN, e))? as u64;
                Ok((rep, 0))
            }
            OP_WRITE => {
                let fd = table.get(req.fd).map_err(|e| Rep::err(STEP_PROTOCOL, e))?;
                let n =
                    write_how(fd, payload, req.how, req.arg0).map_err(|e| Rep::err(STEP_IO, e))?;
                let mut rep = Rep::ok();
                rep.v[0] = n as u64;
                Ok((rep, 0))
            }
            OP_READ_PATH => {
                let path = path_arg(payload).ok_or(Rep::err(STEP_PROTOCOL, Errno::INVAL))?;
                let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                    .map_err(|e| Rep::err(STEP_OPEN, e))?;
                let mut len = 0usize;
                let mut truncated = false;
                loop {
                    if len == out.len() {
                        truncated = true;
                        break;
                    }
                    match rustix::io::read(&fd, &mut out[len..]) {
                        Ok(0) => break,
                        Ok(k) => len += k,
                        Err(Errno::INTR) => continue,
                        Err(e) => return Err(Rep::err(STEP_IO, e)),
                    }
                }
                let mut rep = Rep::ok();
                rep.v[0] = len as u64;
                rep.v[1] = truncated as u64;
                Ok((rep, len))
            }
            OP_CLOSE => {
                drop(
                    table
                        .remove(req.fd)
                        .map_err(|e| Rep::err(STEP_PROTOCOL, e))?,
                );
                Ok((Rep::ok(), 0))
            }
            OP_STAT => {
                let path = path_arg(payload).ok_or(Rep::err(STEP_PROTOCOL, Errno::INVAL))?;
                let st = rustix::fs::stat(path).map_err(|e| Rep::err(STEP_IO, e))?;
                let mut rep = Rep::ok();
                rep.v = [
                    st.st_uid as u64,
                    st.st_gid as u64,
                    st.st_mode as u64,
                    st.st_ino,
                    st.st_dev,
                ];
                Ok((rep, 0))
            }
            OP_IDS => {
                let mut r = [0 as libc::uid_t; 3];
                let mut g = [0 as libc::gid_t; 3];
                // SAFETY: getresuid writes one id through each pointer; each points to an
                // element of a live local array.
                let ok_u = unsafe { libc::getresuid(&mut r[0], &mut r[1], &mut r[2]) } == 0;
                // SAFETY: as above, for getresgid.
                let ok_g = unsafe { libc::getresgid(&mut g[0], &mut g[1], &mut g[2]) } == 0;
                let ok = ok_u && ok_g;
                if !ok {
                    return Err(Rep::err(STEP_IO, Errno::FAULT));
                }
                let mut groups = [0 as libc::gid_t; 256];
                // SAFETY: getgroups writes at most `size` gids into the array, which has that many.
                let n =
                    unsafe { libc::getgroups(groups.len() as libc::c_int, groups.as_mut_ptr()) };
                if n < 0 {
                    return Err(Rep::err(STEP_IO, Errno::RANGE));
                }
                let (eff, prm, inh) = caps_now();
                let words = [r[0], r[1], r[2], g[0], g[1], g[2], n as u32];
                let mut len = 0;
                for w in words.iter().chain(groups[..n as usize].iter()) {
                    out[len..len + 4].copy_from_slice(&w.to_ne_bytes());
                    len += 4;
                }
                let mut rep = Rep::ok();
                rep.v[0] = eff;
                rep.v[1] = prm;
                rep.v[2] = inh;
                Ok((rep, len))
            }
            OP_SET_CREDS => {
                let o = RawOpts::decode(payload).ok_or(Rep::err(STEP_PROTOCOL, Errno::INVAL))?;
                let r = apply_creds(&o).map_err(|(step, e)| Rep::err(step, e));
                // Re-arm even after a partial change: any euid/egid change cleared it.
                arm_parent_death_signal(parent).map_err(|()| Rep::err(STEP_PRCTL, Errno::SRCH))?;
                r?;
                Ok((Rep::ok(), 0))
            }
            OP_FETCH_FD => {
                table.get(req.fd).map_err(|e| Rep::err(STEP_PROTOCOL, e))?;
                *out_fd = Some(req.fd);
                Ok((Rep::ok(), 0))
            }
            OP_INSTALL_FD => {
                let fd = passed.take().ok_or(Rep::err(STEP_PROTOCOL, Errno::BADF))?;
                let mut rep = Rep::ok();
                rep.v[0] = table
                    .insert(own(fd))
                    .map_err(|e| Rep::err(STEP_PROTOCOL, e))? as u64;
                Ok((rep, 0))
            }
            OP_SOCKETPAIR => {
                let (a, b) = rustix::net::socketpair(
                    rustix::net::AddressFamily::UNIX,
                    rustix::net::SocketType::STREAM,
                    rustix::net::SocketFlags::CLOEXEC,
                    None,
                )
                .map_err(|e| Rep::err(STEP_IO, e))?;
                let mut rep = Rep::ok();
                rep.v[0] = table.insert(a).map_err(|e| Rep::err(STEP_OPEN, e))? as u64;
                rep.v[1] = table.insert(b).map_err(|e| Rep::err(STEP_OPEN, e))? as u64;
                Ok((rep, 0))
            }
            OP_PEERCRED => {
                let fd = table.get(req.fd).map_err(|e| Rep::err(STEP_PROTOCOL, e))?;
                let c =
                    rustix::net::sockopt::socket_peercred(fd).map_err(|e| Rep::err(STEP_IO, e))?;
                let mut rep = Rep::ok();
                rep.v[0] = c.pid.as_raw_nonzero().get() as u64;
                rep.v[1] = c.uid.as_raw() as u64;
                rep.v[2] = c.gid.as_raw() as u64;
                Ok((rep, 0))
            }
            OP_CALL => call(req, payload, passed.take().map(own), out, parent),
            _ => Err(Rep::err(STEP_PROTOCOL, Errno::NOSYS)),
        }
    })();
    if let Some(fd) = passed {
        drop(own(fd));
    }
    match result {
        Ok(x) => x,
        Err(rep) => (rep, 0),
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

/// `u32::MAX` in a request's id argument: "no change" (-1) as the id syscalls take it.
fn id_arg(v: u64) -> libc::c_long {
    v as u32 as libc::c_long
}

/// A raw `syscall(2)` returning the errno on failure.
fn sys_ret(r: libc::c_long) -> Result<libc::c_long, Errno> {
    if r < 0 {
        Err(crate::last_errno())
    } else {
        Ok(r)
    }
}

fn path_or_inval(payload: &[u8]) -> Result<&CStr, Rep> {
    path_arg(payload).ok_or(Rep::err(STEP_PROTOCOL, Errno::INVAL))
}

/// `OP_CALL`: one system call as this helper. Raw system calls only (the id-changing ones in
/// particular must change this thread's credentials without libc's all-threads broadcast),
/// on the request and reply buffers: no allocation.
fn call(
    req: &Req,
    payload: &[u8],
    passed: Option<OwnedFd>,
    out: &mut [u8],
    parent: Option<i32>,
) -> Result<(Rep, usize), Rep> {
    let fail = |e: Errno| Rep::err(STEP_IO, e);
    let mut rep = Rep::ok();
    let mut len = 0usize;
    match req.how {
        CALL_ACCESS => {
            let path = path_or_inval(payload)?;
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
            sys_ret(r).map_err(fail)?;
        }
        CALL_MKDIR => {
            let path = path_or_inval(payload)?;
            rustix::fs::mkdir(path, Mode::from_bits_retain(req.arg0 as u32)).map_err(fail)?;
        }
        CALL_CREATE => {
            let path = path_or_inval(payload)?;
            let fd = rustix::fs::open(
                path,
                OFlags::CREATE | OFlags::EXCL | OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::from_bits_retain(req.arg0 as u32),
            )
            .map_err(fail)?;
            drop(fd);
        }
        CALL_CHMOD => {
            let path = path_or_inval(payload)?;
            rustix::fs::chmod(path, Mode::from_bits_retain(req.arg0 as u32)).map_err(fail)?;
        }
        CALL_CHOWN => {
            let path = path_or_inval(payload)?;
            // SAFETY: chown reads the NUL-terminated path in the request buffer; ids are integers.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_chown,
                    path.as_ptr(),
                    id_arg(req.arg0),
                    id_arg(req.arg1),
                )
            };
            sys_ret(r).map_err(fail)?;
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
        CALL_SETUID | CALL_SETGID => {
            let nr = if req.how == CALL_SETUID {
                libc::SYS_setuid
            } else {
                libc::SYS_setgid
            };
            // SAFETY: setuid/setgid take one integer and change only this (single) thread.
            let r = unsafe { libc::syscall(nr, id_arg(req.arg0)) };
            let r = sys_ret(r).map_err(fail);
            arm_parent_death_signal(parent).map_err(|()| Rep::err(STEP_PRCTL, Errno::SRCH))?;
            r?;
        }
        CALL_SETREUID | CALL_SETREGID => {
            let nr = if req.how == CALL_SETREUID {
                libc::SYS_setreuid
            } else {
                libc::SYS_setregid
            };
            // SAFETY: setreuid/setregid take two integers and change only this thread.
            let r = unsafe { libc::syscall(nr, id_arg(req.arg0), id_arg(req.arg1)) };
            let r = sys_ret(r).map_err(fail);
            arm_parent_death_signal(parent).map_err(|()| Rep::err(STEP_PRCTL, Errno::SRCH))?;
            r?;
        }
        CALL_SETRESUID | CALL_SETRESGID => {
            let nr = if req.how == CALL_SETRESUID {
                libc::SYS_setresuid
            } else {
                libc::SYS_setresgid
            };
            // SAFETY: setresuid/setresgid take three integers and change only this thread.
            let r =
                unsafe { libc::syscall(nr, id_arg(req.arg0), id_arg(req.arg1), id_arg(req.arg2)) };
            let r = sys_ret(r).map_err(fail);
            arm_parent_death_signal(parent).map_err(|()| Rep::err(STEP_PRCTL, Errno::SRCH))?;
            r?;
        }
        CALL_SETGROUPS => {
            let n = (payload.len() / 4).min(MAX_GROUPS);
            let mut gids = [rustix::process::Gid::ROOT; MAX_GROUPS];
            for (i, g) in gids.iter_mut().enumerate().take(n) {
                *g = rustix::process::Gid::from_raw(rd_u32(payload, 4 * i));
            }
            rustix::thread::set_thread_groups(&gids[..n]).map_err(fail)?;
        }
        CALL_UNSHARE_USER => {
            // SAFETY: unshare(CLONE_NEWUSER) changes only this single-threaded process's
            // credentials; it shares no fs_struct.
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWUSER) }
                .map_err(fail)?;
            arm_parent_death_signal(parent).map_err(|()| Rep::err(STEP_PRCTL, Errno::SRCH))?;
        }
        CALL_SETNS_USER => {
            let fd = passed.ok_or(Rep::err(STEP_PROTOCOL, Errno::BADF))?;
            rustix::thread::move_into_link_name_space(
                fd.as_fd_borrowed(),
                Some(rustix::thread::LinkNameSpaceType::User),
            )
            .map_err(fail)?;
            arm_parent_death_signal(parent).map_err(|()| Rep::err(STEP_PRCTL, Errno::SRCH))?;
        }
        CALL_NO_NEW_PRIVS => {
            rustix::thread::set_no_new_privs(true).map_err(fail)?;
        }
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
            arm_parent_death_signal(parent).map_err(|()| Rep::err(STEP_PRCTL, Errno::SRCH))?;
            r.map_err(|(step, e)| Rep::err(step, e))?;
        }
        CALL_EXEC => {
            let (status, n) = exec_capture(payload, out)?;
            rep.v[0] = status as u64;
            len = n;
        }
        CALL_PTRACE => ptrace_attach_detach(req.arg0 as libc::pid_t).map_err(fail)?,
        _ => return Err(Rep::err(STEP_PROTOCOL, Errno::NOSYS)),
    }
    Ok((rep, len))
}

trait AsFdBorrowed {
    fn as_fd_borrowed(&self) -> BorrowedFd<'_>;
}

impl AsFdBorrowed for OwnedFd {
    fn as_fd_borrowed(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self)
    }
}

fn prctl(op: libc::c_int, a: libc::c_ulong, b: libc::c_ulong) -> Result<(), Errno> {
    // SAFETY: the prctl options used here take integer arguments only.
    let r = unsafe {
        libc::syscall(
            libc::SYS_prctl,
            op,
            a,
            b,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    sys_ret(r).map(|_| ())
}

/// `CALL_FULL_CREDS`: take on complete credentials in the helper's namespace. The order makes
/// each step legal: keep the permitted set across the id changes (`PR_SET_KEEPCAPS`), set
/// groups, gids and uids, fs ids, then (with every permitted capability effective, CAP_SETPCAP
/// among them) inheritable, ambient, bounding and securebits, and last the exact sets.
fn full_creds(p: &[u8]) -> Result<(), (u32, Errno)> {
    use rustix::thread::{CapabilitySet, CapabilitySets};
    if p.len() < CREDS_LEN {
        return Err((STEP_PROTOCOL, Errno::INVAL));
    }
    let w = |i: usize| rd_u32(p, 4 * i);
    let ngroups = (w(11) as usize).min(MAX_GROUPS);
    let c = 4 * (CREDS_WORDS + MAX_GROUPS);
    let (inh, prm, eff, bnd, amb) = (
        rd_u64(p, c),
        rd_u64(p, c + 8),
        rd_u64(p, c + 16),
        rd_u64(p, c + 24),
        rd_u64(p, c + 32),
    );
    prctl(libc::PR_SET_KEEPCAPS, 1, 0).map_err(|e| (STEP_PRCTL, e))?;
    let mut gids = [rustix::process::Gid::ROOT; MAX_GROUPS];
    for (i, g) in gids.iter_mut().enumerate().take(ngroups) {
        *g = rustix::process::Gid::from_raw(w(CREDS_WORDS + i));
    }
    if w(9) & CREDS_KEEP_GROUPS == 0 {
        rustix::thread::set_thread_groups(&gids[..ngroups]).map_err(|e| (STEP_SETGROUPS, e))?;
    }
    // SAFETY: setresgid takes three integers and changes only this thread.
    let r = unsafe { libc::syscall(libc::SYS_setresgid, w(4), w(5), w(6)) };
    sys_ret(r).map_err(|e| (STEP_SETRESGID, e))?;
    // SAFETY: setresuid takes three integers and changes only this thread.
    let r = unsafe { libc::syscall(libc::SYS_setresuid, w(0), w(1), w(2)) };
    sys_ret(r).map_err(|e| (STEP_SETRESUID, e))?;
    // Leaving uid 0 cleared the effective set; setfsuid/setfsgid to an id other than the
    // real/effective/saved ones need CAP_SETUID/CAP_SETGID effective again.
    let now = rustix::thread::capabilities(None).map_err(|e| (STEP_CAPSET, e))?;
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: now.permitted,
            permitted: now.permitted,
            inheritable: now.inheritable,
        },
    )
    .map_err(|e| (STEP_CAPSET, e))?;
    // setfsuid/setfsgid return the old value, never an error: check the result by reading back.
    // SAFETY: setfsgid takes one integer.
    unsafe { libc::syscall(libc::SYS_setfsgid, w(7)) };
    // SAFETY: setfsuid takes one integer.
    unsafe { libc::syscall(libc::SYS_setfsuid, w(3)) };
    // SAFETY: as above, -1 only reads.
    let fsgid = unsafe { libc::syscall(libc::SYS_setfsgid, -1 as libc::c_long) } as u32;
    // SAFETY: as above, -1 only reads.
    let fsuid = unsafe { libc::syscall(libc::SYS_setfsuid, -1 as libc::c_long) } as u32;
    if fsuid != w(3) || fsgid != w(7) {
        return Err((STEP_SETRESUID, Errno::PERM));
    }
    let now = rustix::thread::capabilities(None).map_err(|e| (STEP_CAPSET, e))?;
    let all = now.permitted;
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: all,
            permitted: all,
            inheritable: CapabilitySet::from_bits_retain(inh),
        },
    )
    .map_err(|e| (STEP_CAPSET, e))?;
    for cap in 0..64u64 {
        if amb & (1 << cap) != 0 {
            prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                cap as libc::c_ulong,
            )
            .map_err(|e| (STEP_CAPSET, e))?;
        }
    }
    for cap in 0..64u64 {
        if bnd & (1 << cap) == 0 {
            match prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0) {
                Ok(()) => {}
                Err(_) => break, // past the last capability
            }
            prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0).map_err(|e| (STEP_CAPSET, e))?;
        }
    }
    prctl(libc::PR_SET_SECUREBITS, w(8) as libc::c_ulong, 0).map_err(|e| (STEP_PRCTL, e))?;
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: CapabilitySet::from_bits_retain(eff),
            permitted: CapabilitySet::from_bits_retain(prm),
            inheritable: CapabilitySet::from_bits_retain(inh),
        },
    )
    .map_err(|e| (STEP_CAPSET, e))?;
    if w(9) & CREDS_NO_NEW_PRIVS != 0 {
        rustix::thread::set_no_new_privs(true).map_err(|e| (STEP_PRCTL, e))?;
    }
    let dumpable = (w(9) & CREDS_DUMPABLE != 0) as libc::c_ulong;
    prctl(libc::PR_SET_DUMPABLE, dumpable, 0).map_err(|e| (STEP_PRCTL, e))?;
    rustix::process::umask(Mode::from_bits_retain(w(10)));
    Ok(())
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
        unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&out_w), 1) };
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
    let mut len = 0usize;
    loop {
        if len == out.len() {
            break;
        }
        match rustix::io::read(&out_r, &mut out[len..]) {
            Ok(0) => break,
            Ok(k) => len += k,
            Err(Errno::INTR) => continue,
            Err(_) => break,
        }
    }
    let mut eb = [0u8; 4];
    let got = loop {
        match rustix::io::read(&err_r, &mut eb) {
            Err(Errno::INTR) => continue,
            r => break r.unwrap_or(0),
        }
    };
    let status = loop {
        let mut st: libc::c_int = 0;
        // SAFETY: waitpid writes the status into a live local.
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        if r == pid {
            break st;
        }
        if crate::last_errno() != Errno::INTR {
            break -1;
        }
    };
    if got == 4 {
        return Err(Rep::err(
            STEP_IO,
            Errno::from_raw_os_error(i32::from_ne_bytes(eb)),
        ));
    }
    Ok((status, len))
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
