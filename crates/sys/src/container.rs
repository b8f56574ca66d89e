//! A container's first process: `clone(2)` into new user and mount namespaces (optionally a pid
//! namespace), the parent writes the ID maps, the child takes its ids, optionally switches to a
//! root filesystem with `/proc` and a minimal `/dev`, and `execve(2)`s the command.
//!
//! The child is made by a raw `clone(2)` with `CLONE_NEWUSER | CLONE_NEWNS` (and `CLONE_NEWPID`,
//! which makes the command pid 1 of the new pid namespace without a second fork). The calling
//! process may have many threads, so the child follows the discipline of `helper.rs`: it only
//! makes raw system calls on data built before the clone (paths, argv, envp, PATH candidates), no
//! allocation, no locks, no stdio, and ends in `execve` or `_exit`.
//!
//! Protocol: the child blocks reading a `go` pipe until the parent has written `uid_map` and
//! `gid_map` ([`Container::write_maps`]) and calls [`Container::start`]; end-of-file instead of
//! the go byte (the parent died or dropped the handle) makes it exit. Every failure of the child,
//! up to and including `execve`, is sent as a 16-byte record (step, errno, index) on a
//! close-on-exec pipe; end-of-file on that pipe without a record means `execve` succeeded.

use std::ffi::{CStr, CString, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use credns_idmap::{IdKind, IdMap};
use rustix::fs::{Mode, OFlags};
use rustix::mount::{MountFlags, MountPropagationFlags, MoveMountFlags, UnmountFlags};
use rustix::process::{Gid, Uid};

use crate::exec::ExecPlan;
use crate::{Errno, Error, Pid, ProcFs, UserNsFd};

/// An already-made detached mount (from `open_tree(2)` with `OPEN_TREE_CLONE`, or `fsmount(2)`,
/// possibly idmapped with `mount_setattr(2)`) to attach in the container's mount namespace with
/// `move_mount(2)`, before `pivot_root(2)`.
#[derive(Debug)]
pub struct ExtraMount {
    /// The detached mount.
    pub fd: OwnedFd,
    /// Where to attach it: a path inside the container's root (absolute, taken relative to the
    /// rootfs when there is one; on the host's tree otherwise). It must exist.
    pub target: PathBuf,
}

/// What to run and how: the input of [`Container::spawn`].
#[derive(Debug)]
pub struct ContainerSpec {
    /// The command and its arguments; `argv[0]` is looked up in `PATH` (inside the rootfs, if
    /// any) unless it contains a `/`, as `execvp(3)` does.
    pub argv: Vec<OsString>,
    /// The environment; `None` passes the caller's.
    pub env: Option<Vec<OsString>>,
    /// The uid the command runs as, in the new namespace.
    pub uid: u32,
    /// The gid the command runs as, in the new namespace.
    pub gid: u32,
    /// Supplementary groups, in the new namespace (empty: none).
    pub groups: Vec<u32>,
    /// Also make a pid namespace (`CLONE_NEWPID`): the command is its pid 1.
    pub new_pid: bool,
    /// Switch to this root filesystem (`pivot_root(2)`), with `/proc` and a minimal `/dev`. It
    /// must contain the directories `proc` and `dev`.
    pub rootfs: Option<PathBuf>,
    /// A detached mount (typically an idmapped clone of `rootfs`) attached at `rootfs` in the
    /// container's mount namespace instead of a recursive bind of it. Ignored without `rootfs`.
    pub rootfs_mount: Option<OwnedFd>,
    /// Mounts to attach before the switch.
    pub mounts: Vec<ExtraMount>,
}

impl ContainerSpec {
    /// Run `argv` as the namespace's root (uid 0, gid 0, no supplementary groups), no pid
    /// namespace, no rootfs.
    pub fn new(argv: Vec<OsString>) -> Self {
        ContainerSpec {
            argv,
            env: None,
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            new_pid: false,
            rootfs: None,
            rootfs_mount: None,
            mounts: Vec::new(),
        }
    }
}

/// How a container's process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// It called `exit` with this code.
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
}

impl ExitStatus {
    /// The shell's convention: the exit code, or 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Signaled(s) => 128 + s,
        }
    }
}

// Steps of the child, reported with a failure.
const STEP_GO: u32 = 1;
const STEP_SETUP_IDS: u32 = 2;
const STEP_PRIVATE: u32 = 3;
const STEP_BIND_ROOTFS: u32 = 4;
const STEP_PROC: u32 = 5;
const STEP_DEV_TMPFS: u32 = 6;
const STEP_DEV_NODE: u32 = 7;
const STEP_DEV_DIR: u32 = 8;
const STEP_DEV_SHM: u32 = 9;
const STEP_EXTRA_MOUNT: u32 = 10;
const STEP_PIVOT: u32 = 11;
const STEP_SETGROUPS: u32 = 12;
const STEP_SETRESGID: u32 = 13;
const STEP_SETRESUID: u32 = 14;
const STEP_PDEATHSIG: u32 = 15;
const STEP_EXEC: u32 = 16;
const STEP_KEYRING: u32 = 17;

/// The largest start message: go, a keyring serial, a name's length and the name with its NUL.
const GO_MAX: usize = 64;

/// Device files bound from the host into the container's `/dev`.
const DEV_NODES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];
/// Most supplementary groups.
const MAX_GROUPS: usize = 64;

/// Everything the child needs, built before the clone.
struct Prepared {
    /// The command, its environment and its `PATH` candidates.
    exec: ExecPlan,
    uid: u32,
    gid: u32,
    groups: [Gid; MAX_GROUPS],
    ngroups: usize,
    new_pid: bool,
    rootfs: Option<RootfsPaths>,
    /// Extra mounts: fd and target path (under the rootfs when there is one).
    mounts: Vec<(RawFd, CString)>,
    /// `/proc` to mount over when there is a pid namespace but no rootfs.
    proc_dir: CString,
}

struct RootfsPaths {
    root: CString,
    /// A detached mount to attach at `root` instead of binding it.
    mount: Option<RawFd>,
    proc_dir: CString,
    dev: CString,
    /// (host source, target in the rootfs's /dev)
    nodes: Vec<(CString, CString)>,
    pts: CString,
    shm: CString,
    ptmx: CString,
    /// (target, link path)
    links: Vec<(&'static CStr, CString)>,
}

fn cpath(p: &Path) -> Result<CString, Error> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::Invalid(format!("path {} contains a NUL byte", p.display())))
}

impl Prepared {
    fn new(spec: &ContainerSpec) -> Result<Self, Error> {
        let exec = ExecPlan::new(&spec.argv, spec.env.as_deref())?;
        if spec.groups.len() > MAX_GROUPS {
            return Err(Error::Invalid(format!(
                "{} supplementary groups given; at most {MAX_GROUPS}",
                spec.groups.len()
            )));
        }
        let mut groups = [Gid::ROOT; MAX_GROUPS];
        for (g, raw) in groups.iter_mut().zip(&spec.groups) {
            *g = Gid::from_raw(*raw);
        }
        let under = |root: &Path, rel: &Path| -> PathBuf {
            root.join(rel.strip_prefix("/").unwrap_or(rel))
        };
        let rootfs = match &spec.rootfs {
            None => None,
            Some(root) => {
                let dev = root.join("dev");
                Some(RootfsPaths {
                    root: cpath(root)?,
                    mount: spec.rootfs_mount.as_ref().map(|fd| fd.as_raw_fd()),
                    proc_dir: cpath(&root.join("proc"))?,
                    nodes: DEV_NODES
                        .iter()
                        .map(|n| Ok((cpath(&Path::new("/dev").join(n))?, cpath(&dev.join(n))?)))
                        .collect::<Result<Vec<_>, Error>>()?,
                    pts: cpath(&dev.join("pts"))?,
                    shm: cpath(&dev.join("shm"))?,
                    ptmx: cpath(&dev.join("ptmx"))?,
                    links: vec![
                        (c"/proc/self/fd", cpath(&dev.join("fd"))?),
                        (c"/proc/self/fd/0", cpath(&dev.join("stdin"))?),
                        (c"/proc/self/fd/1", cpath(&dev.join("stdout"))?),
                        (c"/proc/self/fd/2", cpath(&dev.join("stderr"))?),
                    ],
                    dev: cpath(&dev)?,
                })
            }
        };
        let mounts = spec
            .mounts
            .iter()
            .map(|m| {
                let target = match &spec.rootfs {
                    Some(root) => under(root, &m.target),
                    None => m.target.clone(),
                };
                Ok((m.fd.as_raw_fd(), cpath(&target)?))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Prepared {
            exec,
            uid: spec.uid,
            gid: spec.gid,
            groups,
            ngroups: spec.groups.len(),
            new_pid: spec.new_pid,
            rootfs,
            mounts,
            proc_dir: c"/proc".to_owned(),
        })
    }
}

/// A container's first process, between [`spawn`](Container::spawn) and
/// [`wait`](Container::wait). Dropping it before `wait` kills and reaps the process.
#[derive(Debug)]
pub struct Container {
    pid: Pid,
    userns: UserNsFd,
    go: Option<OwnedFd>,
    errors: OwnedFd,
    rootfs: Option<PathBuf>,
    argv0: OsString,
    reaped: bool,
}

impl Container {
    /// `clone(2)` the container's first process into new user and mount namespaces (and a pid
    /// namespace if `spec.new_pid`). It waits until [`start`](Self::start); write its maps
    /// first with [`write_maps`](Self::write_maps).
    #[doc(alias = "clone")]
    #[doc(alias = "CLONE_NEWUSER")]
    pub fn spawn(spec: &ContainerSpec) -> Result<Self, Error> {
        let prep = Prepared::new(spec)?;
        let (go_r, go_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let mut flags = libc::CLONE_NEWUSER | libc::CLONE_NEWNS;
        if prep.new_pid {
            flags |= libc::CLONE_NEWPID;
        }
        // SAFETY: a raw clone without CLONE_VM is a fork: the child gets a copy-on-write copy of
        // this address space and continues on its own copy of this stack. The child runs only
        // `child_main`, which makes raw system calls on `prep` (built above, never freed or
        // moved in the child) and ends in execve or _exit.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_clone,
                (flags | libc::SIGCHLD) as libc::c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        };
        if ret < 0 {
            return Err(Error::Sys {
                op: "clone(CLONE_NEWUSER | CLONE_NEWNS)",
                errno: crate::last_errno(),
            });
        }
        if ret == 0 {
            // The parent's ends: without closing its copy of `go_w` the child would never see
            // end-of-file when the parent dies.
            close_raw(go_w.as_raw_fd());
            close_raw(err_r.as_raw_fd());
            child_main(&prep, go_r.as_fd(), err_w.as_fd());
        }
        drop(go_r);
        drop(err_w);
        let pid = Pid(ret as i32);
        let userns = match UserNsFd::open(&ProcFs::new(), pid) {
            Ok(u) => u,
            Err(e) => {
                // The child waits for the go byte: closing the pipe ends it; reap it.
                drop(go_w);
                if let Some(p) = pid.to_rustix() {
                    let _ =
                        rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty());
                }
                return Err(e);
            }
        };
        Ok(Container {
            pid,
            userns,
            go: Some(go_w),
            errors: err_r,
            rootfs: spec.rootfs.clone(),
            argv0: spec.argv[0].clone(),
            reaped: false,
        })
    }

    /// The first process's pid (as the caller's pid namespace numbers it).
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The container's user namespace (nsfs file; its [`UserNsFd::id`] names the namespace).
    pub fn userns_fd(&self) -> &UserNsFd {
        &self.userns
    }

    /// Write `/proc/PID/uid_map` and `gid_map` from the calling process (which must hold
    /// `CAP_SETUID`/`CAP_SETGID` over the parent namespace for maps of more than its own ids,
    /// `user_namespaces(7)`). `setgroups` is left `allow`: a privileged writer may.
    pub fn write_maps(&self, uid: &IdMap, gid: &IdMap) -> Result<(), Error> {
        let procfs = ProcFs::new();
        for (kind, map) in [(IdKind::Uid, uid), (IdKind::Gid, gid)] {
            let path = procfs.map_path(self.pid, kind);
            let text = map.to_write_format();
            let fd = rustix::fs::open(&path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|errno| Error::Path {
                    op: "open",
                    path: path.clone(),
                    errno,
                })?;
            crate::maps::write_map_text(&fd, path, &text)?;
        }
        Ok(())
    }

    /// Let the child go on: take its ids, set up mounts, exec. Returns once `execve` succeeded;
    /// a failure of any step is returned as [`Error::Container`] (the child has exited; it is
    /// reaped by [`wait`](Self::wait) or on drop).
    pub fn start(&mut self) -> Result<(), Error> {
        self.start_in_session(None)
    }

    /// [`start`](Self::start), the first process first joining a new session keyring named
    /// `name` (at most 57 bytes) with the container keyring `container` linked in it
    /// (`keys::session::enter_container_session`), while it still has this process's uid.
    pub fn start_in_session(
        &mut self,
        session: Option<(&std::ffi::CStr, crate::keys::KeySerial)>,
    ) -> Result<(), Error> {
        let mut msg = [0u8; GO_MAX];
        msg[0] = 1;
        let mut len = 1;
        if let Some((name, serial)) = session {
            let n = name.to_bytes_with_nul();
            if 6 + n.len() > GO_MAX {
                return Err(Error::Invalid(format!(
                    "session keyring name {name:?} is longer than {} bytes",
                    GO_MAX - 7
                )));
            }
            msg[1..5].copy_from_slice(&serial.to_ne_bytes());
            msg[5] = n.len() as u8;
            msg[6..6 + n.len()].copy_from_slice(n);
            len = 6 + n.len();
        }
        let Some(go) = self.go.take() else {
            return Err(Error::Invalid("container already started".into()));
        };
        rustix::io::write(&go, &msg[..len]).map_err(|errno| Error::Process {
            op: "start container",
            pid: self.pid,
            errno,
        })?;
        drop(go);
        let mut rec = [0u8; 16];
        let mut got = 0;
        while got < rec.len() {
            match rustix::io::read(&self.errors, &mut rec[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(Errno::INTR) => continue,
                Err(errno) => {
                    return Err(Error::Process {
                        op: "read container status",
                        pid: self.pid,
                        errno,
                    })
                }
            }
        }
        if got == 0 {
            return Ok(());
        }
        let step = u32::from_ne_bytes(rec[0..4].try_into().expect("4 bytes"));
        let errno =
            Errno::from_raw_os_error(i32::from_ne_bytes(rec[4..8].try_into().expect("4 bytes")));
        let index = u32::from_ne_bytes(rec[8..12].try_into().expect("4 bytes")) as usize;
        Err(Error::Container {
            what: self.describe(step, index),
            errno,
        })
    }

    fn describe(&self, step: u32, index: usize) -> String {
        let root = self.rootfs.clone().unwrap_or_default();
        let dev = root.join("dev");
        match step {
            STEP_GO => "wait for the maps".into(),
            STEP_SETUP_IDS => "become the namespace's root (is 0 mapped?)".into(),
            STEP_PRIVATE => "make mounts private".into(),
            STEP_BIND_ROOTFS => format!("mount rootfs {}", root.display()),
            STEP_PROC => format!("mount /proc on {}", root.join("proc").display()),
            STEP_DEV_TMPFS => format!("mount tmpfs on {}", dev.display()),
            STEP_DEV_NODE => format!(
                "bind /dev/{0} on {1}",
                DEV_NODES.get(index).unwrap_or(&"?"),
                dev.join(DEV_NODES.get(index).unwrap_or(&"?")).display()
            ),
            STEP_DEV_DIR => format!("populate {}", dev.display()),
            STEP_DEV_SHM => format!("mount tmpfs on {}", dev.join("shm").display()),
            STEP_EXTRA_MOUNT => format!("attach extra mount #{index}"),
            STEP_PIVOT => format!("pivot_root to {}", root.display()),
            STEP_SETGROUPS => "setgroups".into(),
            STEP_SETRESGID => "setresgid".into(),
            STEP_SETRESUID => "setresuid".into(),
            STEP_PDEATHSIG => "prctl(PR_SET_PDEATHSIG)".into(),
            STEP_EXEC => format!("cannot execute '{}'", self.argv0.to_string_lossy()),
            STEP_KEYRING => "join the container's session keyring".into(),
            _ => format!("step {step}"),
        }
    }

    /// Wait for the first process to end (`waitpid(2)`). SIGINT and SIGQUIT are ignored by the
    /// caller meanwhile, as `system(3)` does: the terminal sends them to the container too.
    pub fn wait(mut self) -> Result<ExitStatus, Error> {
        drop(self.go.take());
        let _quiet = IgnoreInteractive::new();
        let st = loop {
            match rustix::process::waitpid(
                self.pid.to_rustix(),
                rustix::process::WaitOptions::empty(),
            ) {
                Ok(Some((_, st))) => break st,
                Ok(None) => continue,
                Err(Errno::INTR) => continue,
                Err(errno) => {
                    return Err(Error::Process {
                        op: "waitpid",
                        pid: self.pid,
                        errno,
                    })
                }
            }
        };
        self.reaped = true;
        if let Some(code) = st.exit_status() {
            Ok(ExitStatus::Exited(code))
        } else if let Some(sig) = st.terminating_signal() {
            Ok(ExitStatus::Signaled(sig))
        } else {
            Ok(ExitStatus::Exited(255))
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        if let Some(p) = self.pid.to_rustix() {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty());
        }
    }
}

/// SIGINT and SIGQUIT ignored while it lives (restored on drop).
struct IgnoreInteractive {
    old: [libc::sighandler_t; 2],
}

impl IgnoreInteractive {
    fn new() -> Self {
        // SAFETY: signal(2) with SIG_IGN installs no handler code; the previous dispositions are
        // kept and restored on drop.
        let a = unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
        // SAFETY: as above.
        let b = unsafe { libc::signal(libc::SIGQUIT, libc::SIG_IGN) };
        IgnoreInteractive { old: [a, b] }
    }
}

impl Drop for IgnoreInteractive {
    fn drop(&mut self) {
        for (sig, old) in [libc::SIGINT, libc::SIGQUIT].into_iter().zip(self.old) {
            if old != libc::SIG_ERR {
                // SAFETY: restores the disposition saved by `new` (SIG_DFL, SIG_IGN or the
                // handler that was installed before).
                unsafe { libc::signal(sig, old) };
            }
        }
    }
}

/// Make the calling process the reaper of its orphaned descendants
/// (`PR_SET_CHILD_SUBREAPER`, `prctl(2)`): a container's processes that outlive its first
/// process become the caller's children, so [`descendants_remain`] can tell whether any is
/// left without scanning `/proc`.
#[doc(alias = "PR_SET_CHILD_SUBREAPER")]
pub fn become_subreaper() -> Result<(), Error> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).map_err(|errno| {
        Error::Sys {
            op: "prctl(PR_SET_CHILD_SUBREAPER)",
            errno,
        }
    })
}

/// Reap the caller's children that have exited and tell whether any child is still alive
/// (`waitpid(2)` with `WNOHANG` until it answers "none exited" or `ECHILD`). After
/// [`become_subreaper`] and [`Container::wait`], `false` means no process forked from the
/// container is left.
pub fn descendants_remain() -> Result<bool, Error> {
    loop {
        match rustix::process::wait(rustix::process::WaitOptions::NOHANG) {
            Ok(Some(_)) => continue,
            Ok(None) => return Ok(true),
            Err(Errno::CHILD) => return Ok(false),
            Err(Errno::INTR) => continue,
            Err(errno) => {
                return Err(Error::Sys {
                    op: "waitpid",
                    errno,
                })
            }
        }
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Error> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|errno| Error::Sys { op: "pipe2", errno })
}

/// The process's start time in nanoseconds since the Unix epoch: `btime` of `/proc/stat` plus
/// field 22 (`starttime`, clock ticks since boot) of `/proc/PID/stat` (`proc(5)`). This is the
/// creation stamp of a user-namespace lease (see `credns_registry::Lease::UserNs`).
pub fn process_start_ns(procfs: &ProcFs, pid: Pid) -> Result<u64, Error> {
    let stat_path = procfs.root().join("stat");
    let text = std::fs::read_to_string(&stat_path).map_err(|e| Error::Path {
        op: "read",
        path: stat_path.clone(),
        errno: Errno::from_io_error(&e).unwrap_or(Errno::IO),
    })?;
    let btime: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| Error::Format {
            path: stat_path.clone(),
            line: 0,
            message: "no btime line".into(),
        })?;
    let pstat = procfs.pid_path(pid).join("stat");
    let text = std::fs::read_to_string(&pstat).map_err(|e| Error::Path {
        op: "read",
        path: pstat.clone(),
        errno: Errno::from_io_error(&e).unwrap_or(Errno::IO),
    })?;
    // comm (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    // After ')' come field 3 (state) onwards; starttime is field 22, so index 19.
    let ticks: u64 = rest
        .split_whitespace()
        .nth(19)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::Format {
            path: pstat.clone(),
            line: 1,
            message: "no starttime (field 22)".into(),
        })?;
    let hz = rustix::param::clock_ticks_per_second().max(1);
    Ok(btime * 1_000_000_000 + ticks * (1_000_000_000 / hz))
}

// ---------------------------------------------------------------------------------------------
// The child. Raw system calls on `Prepared` only.

/// `close(2)` of a raw fd in the child, whose `OwnedFd` copies are never dropped (it ends in
/// execve or _exit).
fn close_raw(fd: RawFd) {
    // SAFETY: `fd` is open in this process (inherited through the clone) and nothing in the
    // child uses it afterwards.
    unsafe { libc::close(fd) };
}

fn report(err: BorrowedFd<'_>, step: u32, errno: Errno, index: usize) -> ! {
    let mut rec = [0u8; 16];
    rec[0..4].copy_from_slice(&step.to_ne_bytes());
    rec[4..8].copy_from_slice(&errno.raw_os_error().to_ne_bytes());
    rec[8..12].copy_from_slice(&(index as u32).to_ne_bytes());
    let _ = rustix::io::write(err, &rec);
    crate::helper::exit_now(127)
}

fn child_main(p: &Prepared, go: BorrowedFd<'_>, err: BorrowedFd<'_>) -> ! {
    let fail = |step: u32, e: Errno, i: usize| -> ! { report(err, step, e, i) };
    // One write of at most GO_MAX bytes (< PIPE_BUF) arrives whole.
    let mut b = [0u8; GO_MAX];
    let n = loop {
        match rustix::io::read(go, &mut b) {
            Ok(n) if n >= 1 && b[0] == 1 => break n,
            Ok(_) => crate::helper::exit_now(1),
            Err(Errno::INTR) => continue,
            Err(e) => fail(STEP_GO, e, 0),
        }
    };
    if n > 6 {
        // The session keyring is made while this process still has the caller's uid: it is
        // the manager's, not the container's.
        let serial = crate::keys::KeySerial::from_ne_bytes([b[1], b[2], b[3], b[4]]);
        let len = b[5] as usize;
        let name = b
            .get(6..6 + len)
            .and_then(|s| std::ffi::CStr::from_bytes_with_nul(s).ok())
            .unwrap_or_else(|| fail(STEP_KEYRING, Errno::INVAL, 0));
        crate::keys::session::enter_container_session(name, serial)
            .unwrap_or_else(|e| fail(STEP_KEYRING, e, 0));
    }
    // Become the namespace's root first: mounts and /dev files are then made by (and owned by)
    // a mapped id, and the final switch below drops capabilities as a uid change from 0 does.
    rustix::thread::set_thread_groups(&[]).unwrap_or_else(|e| fail(STEP_SETUP_IDS, e, 0));
    rustix::thread::set_thread_res_gid(Gid::ROOT, Gid::ROOT, Gid::ROOT)
        .unwrap_or_else(|e| fail(STEP_SETUP_IDS, e, 0));
    rustix::thread::set_thread_res_uid(Uid::ROOT, Uid::ROOT, Uid::ROOT)
        .unwrap_or_else(|e| fail(STEP_SETUP_IDS, e, 0));
    if let Some(r) = &p.rootfs {
        setup_rootfs(p, r, err);
    } else {
        for (i, (fd, target)) in p.mounts.iter().enumerate() {
            attach(*fd, target).unwrap_or_else(|e| fail(STEP_EXTRA_MOUNT, e, i));
        }
        if p.new_pid {
            // The pid namespace's own /proc, on this mount namespace's copy of the tree.
            rustix::mount::mount(
                c"proc",
                p.proc_dir.as_c_str(),
                c"proc",
                MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
                None,
            )
            .unwrap_or_else(|e| fail(STEP_PROC, e, 0));
        }
    }
    rustix::thread::set_thread_groups(&p.groups[..p.ngroups])
        .unwrap_or_else(|e| fail(STEP_SETGROUPS, e, 0));
    let g = Gid::from_raw(p.gid);
    rustix::thread::set_thread_res_gid(g, g, g).unwrap_or_else(|e| fail(STEP_SETRESGID, e, 0));
    let u = Uid::from_raw(p.uid);
    rustix::thread::set_thread_res_uid(u, u, u).unwrap_or_else(|e| fail(STEP_SETRESUID, e, 0));
    // No fd of the caller beyond stdin, stdout and stderr may reach the command (a host
    // directory fd would be a way out of the rootfs): close-on-exec for all of them.
    // SAFETY: close_range takes plain integers and only sets flags on this process's fds.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        )
    };
    // Die with the parent (armed after the id changes, which clear it, prctl(2)).
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .unwrap_or_else(|e| fail(STEP_PDEATHSIG, e, 0));
    fail(STEP_EXEC, p.exec.exec(), 0)
}

fn attach(fd: RawFd, target: &CStr) -> Result<(), Errno> {
    // SAFETY: `fd` is a detached mount fd of the caller's spec, inherited through the clone
    // and open for this process's whole life.
    let from = unsafe { BorrowedFd::borrow_raw(fd) };
    rustix::mount::move_mount(
        from,
        c"",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )?;
    // Attached: the fd is of no further use, and the command must not inherit it.
    close_raw(fd);
    Ok(())
}

fn setup_rootfs(p: &Prepared, r: &RootfsPaths, err: BorrowedFd<'_>) {
    let fail = |step: u32, e: Errno, i: usize| -> ! { report(err, step, e, i) };
    // Nothing done here may propagate back to the host's tree, and pivot_root(2) refuses a
    // shared new root or parent.
    rustix::mount::mount_change(
        c"/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )
    .unwrap_or_else(|e| fail(STEP_PRIVATE, e, 0));
    // pivot_root needs the new root to be a mount point: the given (idmapped) clone of the
    // rootfs, or a bind of the directory onto itself.
    match r.mount {
        Some(fd) => attach(fd, &r.root).unwrap_or_else(|e| fail(STEP_BIND_ROOTFS, e, 0)),
        None => rustix::mount::mount_bind_recursive(r.root.as_c_str(), r.root.as_c_str())
            .unwrap_or_else(|e| fail(STEP_BIND_ROOTFS, e, 0)),
    }
    let nosuid = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    if p.new_pid {
        rustix::mount::mount(c"proc", r.proc_dir.as_c_str(), c"proc", nosuid, None)
            .unwrap_or_else(|e| fail(STEP_PROC, e, 0));
    } else {
        // A fresh proc needs a pid namespace this user namespace owns: bind the host's.
        rustix::mount::mount_bind_recursive(c"/proc", r.proc_dir.as_c_str())
            .unwrap_or_else(|e| fail(STEP_PROC, e, 0));
    }
    rustix::mount::mount(
        c"tmpfs",
        r.dev.as_c_str(),
        c"tmpfs",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        Some(c"mode=755,size=65536k"),
    )
    .unwrap_or_else(|e| fail(STEP_DEV_TMPFS, e, 0));
    // mknod(2) of devices needs CAP_MKNOD in the initial namespace: bind the host's nodes over
    // empty files instead.
    for (i, (src, dst)) in r.nodes.iter().enumerate() {
        match rustix::fs::open(
            dst.as_c_str(),
            OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        ) {
            Ok(fd) => drop(fd),
            Err(e) => fail(STEP_DEV_NODE, e, i),
        }
        if let Err(e) = rustix::mount::mount_bind(src.as_c_str(), dst.as_c_str()) {
            // /dev/tty only exists usefully with a controlling terminal; the rest must bind.
            if DEV_NODES[i] != "tty" {
                fail(STEP_DEV_NODE, e, i);
            }
        }
    }
    for d in [&r.pts, &r.shm] {
        rustix::fs::mkdir(d.as_c_str(), Mode::from_raw_mode(0o755))
            .unwrap_or_else(|e| fail(STEP_DEV_DIR, e, 0));
    }
    rustix::mount::mount(
        c"shm",
        r.shm.as_c_str(),
        c"tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        Some(c"mode=1777,size=65536k"),
    )
    .unwrap_or_else(|e| fail(STEP_DEV_SHM, e, 0));
    // A private devpts instance is optional (it needs no capability the container lacks, but
    // may be refused by a restricted host); /dev/ptmx follows it.
    if rustix::mount::mount(
        c"devpts",
        r.pts.as_c_str(),
        c"devpts",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        Some(c"newinstance,ptmxmode=0666,mode=0620"),
    )
    .is_ok()
    {
        let _ = rustix::fs::symlink(c"pts/ptmx", r.ptmx.as_c_str());
    }
    for (target, link) in &r.links {
        rustix::fs::symlink(*target, link.as_c_str()).unwrap_or_else(|e| fail(STEP_DEV_DIR, e, 0));
    }
    for (i, (fd, target)) in p.mounts.iter().enumerate() {
        attach(*fd, target).unwrap_or_else(|e| fail(STEP_EXTRA_MOUNT, e, i));
    }
    // pivot_root(".", "."): the old root ends up stacked on the new one; detach it.
    rustix::process::chdir(r.root.as_c_str()).unwrap_or_else(|e| fail(STEP_PIVOT, e, 0));
    rustix::process::pivot_root(c".", c".").unwrap_or_else(|e| fail(STEP_PIVOT, e, 0));
    rustix::mount::unmount(c".", UnmountFlags::DETACH).unwrap_or_else(|e| fail(STEP_PIVOT, e, 1));
    rustix::process::chdir(c"/").unwrap_or_else(|e| fail(STEP_PIVOT, e, 2));
}
