//! Process file descriptors (`pidfd_open(2)`): a handle on a process that cannot be confused
//! with a later process reusing its pid, readable once the process has exited, so an `epoll(7)`
//! set of them tells a daemon which processes ended without polling `/proc`.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::event::epoll;
use rustix::event::{PollFd, PollFlags, Timespec};

use crate::procfs::io_errno;
use crate::{Errno, Error, Pid, ProcFs};

/// A pidfd and the pid it referred to when opened.
#[derive(Debug)]
pub struct PidFd {
    fd: OwnedFd,
    pid: Pid,
}

impl PidFd {
    /// `pidfd_open(pid, 0)`.
    #[doc(alias = "pidfd_open")]
    pub fn open(pid: Pid) -> Result<Self, Error> {
        let p = pid
            .to_rustix()
            .ok_or_else(|| Error::Invalid(format!("pid {pid} is not a process id")))?;
        let fd = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).map_err(
            |errno| Error::Process {
                op: "pidfd_open",
                pid,
                errno,
            },
        )?;
        Ok(PidFd { fd, pid })
    }

    /// `pidfd_open(tid, PIDFD_THREAD)` (Linux 6.9): a pidfd of one thread, which need not
    /// lead its thread group; `setns(2)` on it enters that thread's namespaces.
    #[doc(alias = "PIDFD_THREAD")]
    pub fn open_thread(tid: Pid) -> Result<Self, Error> {
        // PIDFD_THREAD has O_EXCL's value (include/uapi/linux/pidfd.h).
        const PIDFD_THREAD: u32 = libc::O_EXCL as u32;
        let p = tid
            .to_rustix()
            .ok_or_else(|| Error::Invalid(format!("tid {tid} is not a thread id")))?;
        let flags = rustix::process::PidfdFlags::from_bits_retain(PIDFD_THREAD);
        let fd = rustix::process::pidfd_open(p, flags).map_err(|errno| Error::Process {
            op: "pidfd_open(PIDFD_THREAD)",
            pid: tid,
            errno,
        })?;
        Ok(PidFd { fd, pid: tid })
    }

    /// Adopt a pidfd received from elsewhere (for example over `SCM_RIGHTS`); its pid, in the
    /// caller's pid namespace, is read from `/proc/self/fdinfo/FD` (`Pid:`, `proc(5)`). A pidfd
    /// of a process that already exited (`Pid: -1`) or an fd that is not a pidfd is refused.
    pub fn from_owned(procfs: &ProcFs, fd: OwnedFd) -> Result<Self, Error> {
        let path = procfs
            .root()
            .join(format!("self/fdinfo/{}", fd.as_raw_fd()));
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Path {
            op: "read",
            path: path.clone(),
            errno: io_errno(&e),
        })?;
        let pid = text
            .lines()
            .find_map(|l| l.strip_prefix("Pid:"))
            .map(|v| v.trim().parse::<i32>());
        match pid {
            Some(Ok(p)) if p > 0 => Ok(PidFd { fd, pid: Pid(p) }),
            Some(Ok(_)) => Err(Error::Process {
                op: "pidfd of an exited process",
                pid: Pid(-1),
                errno: Errno::SRCH,
            }),
            _ => Err(Error::Invalid(format!(
                "file descriptor {} is not a pidfd ({} has no Pid: line)",
                fd.as_raw_fd(),
                path.display()
            ))),
        }
    }

    /// The pid (in the opener's pid namespace).
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Whether the process has exited: the pidfd polls readable (`POLLIN`) from then on.
    pub fn has_exited(&self) -> Result<bool, Error> {
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        loop {
            match rustix::event::poll(&mut fds, Some(&zero)) {
                Ok(n) => return Ok(n > 0),
                Err(Errno::INTR) => continue,
                Err(errno) => {
                    return Err(Error::Process {
                        op: "poll pidfd",
                        pid: self.pid,
                        errno,
                    })
                }
            }
        }
    }

    /// The process's start time in nanoseconds since the Unix epoch: `btime` of `/proc/stat`
    /// plus field 22 (`starttime`, clock ticks since boot) of `/proc/PID/stat`. Read, then
    /// checked against the pidfd, so a reused pid cannot answer for the process.
    pub fn start_time_ns(&self, procfs: &ProcFs) -> Result<u64, Error> {
        let stat_path = procfs.pid_path(self.pid).join("stat");
        let text = std::fs::read_to_string(&stat_path).map_err(|e| Error::Path {
            op: "read",
            path: stat_path.clone(),
            errno: io_errno(&e),
        })?;
        if self.has_exited()? {
            return Err(Error::Process {
                op: "start time",
                pid: self.pid,
                errno: Errno::SRCH,
            });
        }
        let ticks = start_ticks(&text).ok_or_else(|| Error::Format {
            path: stat_path.clone(),
            line: 1,
            message: "no starttime (field 22)".into(),
        })?;
        let btime = boot_time(procfs)?;
        Ok(ticks_to_epoch_ns(btime, ticks))
    }
}

impl AsFd for PidFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Field 22 (`starttime`) of a `/proc/PID/stat` text.
fn start_ticks(stat: &str) -> Option<u64> {
    // Fields after the command name, which ends at the last ')': field 3 is the first.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// `btime` of `/proc/stat`: boot time in seconds since the epoch.
pub(crate) fn boot_time(procfs: &ProcFs) -> Result<u64, Error> {
    // The real /proc's is read once per process: the kernel formats every CPU's and
    // interrupt's counters for each read of /proc/stat, and btime is the boot's.
    static REAL: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    if procfs.root() == std::path::Path::new("/proc") {
        if let Some(b) = REAL.get() {
            return Ok(*b);
        }
        let b = read_boot_time(procfs)?;
        return Ok(*REAL.get_or_init(|| b));
    }
    read_boot_time(procfs)
}

fn read_boot_time(procfs: &ProcFs) -> Result<u64, Error> {
    let path = procfs.root().join("stat");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::Path {
        op: "read",
        path: path.clone(),
        errno: io_errno(&e),
    })?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or(Error::Format {
            path,
            line: 1,
            message: "no btime line".into(),
        })
}

fn ticks_to_epoch_ns(btime: u64, ticks: u64) -> u64 {
    let hz = clock_ticks();
    btime * 1_000_000_000 + ticks * (1_000_000_000 / hz)
}

/// `sysconf(_SC_CLK_TCK)`, the unit of `/proc/PID/stat` times (100 where unknown).
fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions; it reads a constant.
    let r = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if r > 0 {
        r as u64
    } else {
        100
    }
}

/// The start time, in nanoseconds since the epoch, of `pid` as `/proc/PID/stat` tells it (no
/// pidfd check; for scans, where a vanished or reused pid only makes the answer conservative).
pub fn start_time_ns_of(procfs: &ProcFs, pid: Pid) -> Result<u64, Error> {
    start_time_ns_since(procfs, pid, boot_time(procfs)?)
}

/// [`start_time_ns_of`] with `btime` already read (a scan reads `/proc/stat` once, not once per
/// process: the kernel formats every CPU's and interrupt's counters for each read).
pub(crate) fn start_time_ns_since(procfs: &ProcFs, pid: Pid, btime: u64) -> Result<u64, Error> {
    let path = procfs.pid_path(pid).join("stat");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::Path {
        op: "read",
        path: path.clone(),
        errno: io_errno(&e),
    })?;
    let ticks = start_ticks(&text).ok_or(Error::Format {
        path,
        line: 1,
        message: "no starttime (field 22)".into(),
    })?;
    Ok(ticks_to_epoch_ns(btime, ticks))
}

/// An `epoll(7)` set of pidfds: [`wait`](Self::wait) returns the tokens of processes that
/// exited. A pidfd stays readable after its process exits, so remove it once handled.
#[doc(alias = "epoll_create1")]
#[derive(Debug)]
pub struct ExitWatcher {
    epoll: OwnedFd,
}

impl ExitWatcher {
    /// An empty set (`epoll_create1(EPOLL_CLOEXEC)`).
    pub fn new() -> Result<Self, Error> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC).map_err(|errno| Error::Sys {
            op: "epoll_create1",
            errno,
        })?;
        Ok(ExitWatcher { epoll })
    }

    /// Watch `pidfd`'s process; its exit reports `token`.
    #[doc(alias = "epoll_ctl")]
    pub fn add(&self, pidfd: &PidFd, token: u64) -> Result<(), Error> {
        epoll::add(
            &self.epoll,
            pidfd,
            epoll::EventData::new_u64(token),
            epoll::EventFlags::IN,
        )
        .map_err(|errno| Error::Process {
            op: "epoll_ctl ADD pidfd",
            pid: pidfd.pid,
            errno,
        })
    }

    /// Stop watching `pidfd` (closing it also does).
    pub fn remove(&self, pidfd: &PidFd) -> Result<(), Error> {
        match epoll::delete(&self.epoll, pidfd) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(errno) => Err(Error::Process {
                op: "epoll_ctl DEL pidfd",
                pid: pidfd.pid,
                errno,
            }),
        }
    }

    /// Wait up to `timeout` (forever with `None`) and return the tokens of exited processes.
    #[doc(alias = "epoll_wait")]
    pub fn wait(&self, timeout: Option<Duration>) -> Result<Vec<u64>, Error> {
        let ts = timeout.map(|d| Timespec {
            tv_sec: d.as_secs() as _,
            tv_nsec: d.subsec_nanos() as _,
        });
        let mut events = Vec::with_capacity(32);
        match epoll::wait(
            &self.epoll,
            rustix::buffer::spare_capacity(&mut events),
            ts.as_ref(),
        ) {
            Ok(_) => Ok(events.iter().map(|e| e.data.u64()).collect()),
            Err(Errno::INTR) => Ok(Vec::new()),
            Err(errno) => Err(Error::Sys {
                op: "epoll_wait",
                errno,
            }),
        }
    }
}
