//! Access probes: a short-lived process that takes on given credentials (in a given user
//! namespace) and asks the kernel one access question many times in a row (`faccessat(2)`),
//! reporting the answer and how long the calls took.
//!
//! This is how credns measures the kernel's own permission decision: the loop runs inside the
//! process with the credentials, so the time is the system call's, not that of a request to a
//! helper over a socket ([`crate::UsernsChild`] does one round trip per call).
//!
//! Fork discipline (as for the helpers of [`crate::UsernsChild`]): the caller may have many
//! threads, so the forked child touches only raw system calls (rustix's linux_raw backend) and
//! memory prepared before the fork (the path as a C string, the groups, the report buffer). It
//! allocates nothing, takes no lock, does no stdio, and ends with `_exit(2)`. It reports over a
//! non-blocking pipe one fixed-size record, which fits in the pipe's buffer, so the write never
//! waits. The parent reaps the child first and then reads the pipe: a child that died without
//! reporting is an error, never a hang.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::AtFlags;
use rustix::pipe::PipeFlags;
use rustix::process::{Gid, Uid, WaitOptions};
use rustix::thread::{CapabilitySet, CapabilitySets, LinkNameSpaceType};

pub use rustix::fs::Access;

use crate::{Errno, Error, Ids, Pid, UserNsFd};

/// Size of the child's report: step (u32), errno (i32), consistent (u64), iterations (u64),
/// elapsed nanoseconds (u64).
const REPORT: usize = 32;

/// Most supplementary groups a probe can be given.
const MAX_GROUPS: usize = 64;

const STEP_SETNS: u32 = 1;
const STEP_SETGROUPS: u32 = 2;
const STEP_SETRESGID: u32 = 3;
const STEP_SETRESUID: u32 = 4;
const STEP_CAPSET: u32 = 5;
const STEP_PANIC: u32 = 6;

fn step_name(step: u32) -> &'static str {
    match step {
        STEP_SETNS => "setns(CLONE_NEWUSER)",
        STEP_SETGROUPS => "setgroups",
        STEP_SETRESGID => "setresgid",
        STEP_SETRESUID => "setresuid",
        STEP_CAPSET => "capset",
        STEP_PANIC => "probe (panicked)",
        _ => "probe",
    }
}

/// What an access probe reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessReport {
    /// The kernel's answer to the first call: `Ok(())` or the errno (`EACCES`, `ENOENT`, ...).
    pub answer: Result<(), Errno>,
    /// Every timed call gave the same answer as the first.
    pub consistent: bool,
    /// How many timed calls were made (after the first, untimed one).
    pub iterations: u64,
    /// Wall-clock time of the timed calls together (`CLOCK_MONOTONIC`).
    pub elapsed: Duration,
}

impl AccessReport {
    /// Nanoseconds per timed call (`NaN` if there were none).
    pub fn ns_per_call(&self) -> f64 {
        self.elapsed.as_nanos() as f64 / self.iterations as f64
    }
}

/// Fork a process that asks `faccessat(AT_FDCWD, path, mode, 0)` with the credentials `ids`,
/// once for the answer and then `iterations` more times under a clock, reports, and exits.
///
/// Before asking, the process:
/// 1. joins the user namespace `userns` if one is given (`setns(2)` with `CLONE_NEWUSER`;
///    needs `CAP_SYS_ADMIN` in that namespace, which root of an ancestor namespace has);
/// 2. sets its supplementary groups to `ids.groups` if given (`setgroups(2)`; in a user
///    namespace this needs a written gid_map and setgroups "allow");
/// 3. sets real, effective and saved gids, then uids, to `ids.gid` and `ids.uid`
///    (`setresgid(2)`, `setresuid(2)`; the filesystem ids follow the effective ones), numbered
///    as the namespace it is now in numbers them;
/// 4. drops every capability (`capset(2)`): it asks as an ordinary process with those ids.
///
/// `faccessat(2)` without `AT_EACCESS` checks with the real ids, which the probe made equal to
/// the effective ones. Paths resolve from the caller's root and working directory (the probe
/// stays in the caller's mount namespace).
///
/// A failure of a setup step is [`Error::Helper`] naming the step and its errno; the kernel's
/// answer to the access question, whatever it is, is [`AccessReport::answer`].
#[doc(alias = "faccessat")]
#[doc(alias = "setns")]
pub fn probe_access(
    userns: Option<&UserNsFd>,
    ids: &Ids,
    path: &Path,
    mode: Access,
    iterations: u64,
) -> Result<AccessReport, Error> {
    // Everything the child needs, prepared before the fork.
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::Invalid(format!("{}: path contains a NUL byte", path.display())))?;
    let mut groups = [Gid::ROOT; MAX_GROUPS];
    let ngroups = match &ids.groups {
        Some(g) if g.len() > MAX_GROUPS => {
            return Err(Error::Invalid(format!(
                "an access probe takes at most {MAX_GROUPS} supplementary groups, not {}",
                g.len()
            )))
        }
        Some(g) => {
            for (slot, raw) in groups.iter_mut().zip(g) {
                *slot = Gid::from_raw(*raw);
            }
            Some(g.len())
        }
        None => None,
    };
    let plan = Plan {
        userns: userns.map(|u| u.as_fd()),
        groups: ngroups.map(|n| &groups[..n]),
        uid: Uid::from_raw(ids.uid),
        gid: Gid::from_raw(ids.gid),
        path: &c_path,
        mode,
        iterations,
    };
    let (rd, wr) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)
        .map_err(|errno| Error::Sys { op: "pipe2", errno })?;
    let mut report = [0u8; REPORT];

    // SAFETY: fork in a possibly multithreaded process: the child runs only `child_main`, which
    // makes raw system calls on memory prepared above (`plan`, `report`) and ends with _exit,
    // never returning into the caller's code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Error::Sys {
            op: "fork",
            errno: crate::last_errno(),
        });
    }
    if pid == 0 {
        child_main(&plan, &wr, &mut report);
    }
    drop(wr);
    let pid = Pid(pid);
    let status = reap(pid)?;
    let n = read_report(&rd, &mut report);
    if n != REPORT {
        return Err(Error::Helper {
            pid,
            op: if status == 0 {
                "access probe exited without a report"
            } else {
                "access probe died without a report"
            },
            errno: Errno::PIPE,
        });
    }
    let word = |i: usize| u64::from_ne_bytes(report[i..i + 8].try_into().expect("8 bytes"));
    let step = u32::from_ne_bytes(report[0..4].try_into().expect("4 bytes"));
    let errno = i32::from_ne_bytes(report[4..8].try_into().expect("4 bytes"));
    if step != 0 {
        return Err(Error::Helper {
            pid,
            op: step_name(step),
            errno: Errno::from_raw_os_error(errno),
        });
    }
    Ok(AccessReport {
        answer: if errno == 0 {
            Ok(())
        } else {
            Err(Errno::from_raw_os_error(errno))
        },
        consistent: word(8) != 0,
        iterations: word(16),
        elapsed: Duration::from_nanos(word(24)),
    })
}

/// What the child does, with borrowed, already prepared memory only.
struct Plan<'a> {
    userns: Option<BorrowedFd<'a>>,
    groups: Option<&'a [Gid]>,
    uid: Uid,
    gid: Gid,
    path: &'a std::ffi::CStr,
    mode: Access,
    iterations: u64,
}

/// The forked child: set up, ask, report, `_exit`. Never returns.
fn child_main(plan: &Plan<'_>, wr: &OwnedFd, report: &mut [u8; REPORT]) -> ! {
    // A panic must not unwind into the forked-from program's code; none is expected (no
    // allocation, fixed-size indexing only), but if one happens the child reports it and exits.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(plan)));
    let (step, errno, consistent, iterations, nanos) = match r {
        Ok(Ok((answer, consistent, nanos))) => (0, answer, consistent, plan.iterations, nanos),
        Ok(Err((step, e))) => (step, e.raw_os_error(), false, 0, 0),
        Err(_) => (STEP_PANIC, libc::EIO, false, 0, 0),
    };
    report[0..4].copy_from_slice(&step.to_ne_bytes());
    report[4..8].copy_from_slice(&errno.to_ne_bytes());
    report[8..16].copy_from_slice(&u64::from(consistent).to_ne_bytes());
    report[16..24].copy_from_slice(&iterations.to_ne_bytes());
    report[24..32].copy_from_slice(&nanos.to_ne_bytes());
    // An empty pipe takes 32 bytes at once; if this fails the parent sees no report.
    let code = match rustix::io::write(wr, &report[..]) {
        Ok(REPORT) => 0,
        _ => 1,
    };
    crate::helper::exit_now(code)
}

/// Setup and the timed loop. Returns (first answer as errno or 0, all answers equal, ns).
fn run(plan: &Plan<'_>) -> Result<(i32, bool, u64), (u32, Errno)> {
    if let Some(fd) = plan.userns {
        rustix::thread::move_into_link_name_space(fd, Some(LinkNameSpaceType::User))
            .map_err(|e| (STEP_SETNS, e))?;
    }
    // Per-thread raw system calls: the child is single-threaded, so they change the process.
    if let Some(groups) = plan.groups {
        rustix::thread::set_thread_groups(groups).map_err(|e| (STEP_SETGROUPS, e))?;
    }
    rustix::thread::set_thread_res_gid(plan.gid, plan.gid, plan.gid)
        .map_err(|e| (STEP_SETRESGID, e))?;
    rustix::thread::set_thread_res_uid(plan.uid, plan.uid, plan.uid)
        .map_err(|e| (STEP_SETRESUID, e))?;
    let none = CapabilitySets {
        effective: CapabilitySet::empty(),
        permitted: CapabilitySet::empty(),
        inheritable: CapabilitySet::empty(),
    };
    rustix::thread::set_capabilities(None, none).map_err(|e| (STEP_CAPSET, e))?;

    let ask = || match rustix::fs::accessat(rustix::fs::CWD, plan.path, plan.mode, AtFlags::empty())
    {
        Ok(()) => 0,
        Err(e) => e.raw_os_error(),
    };
    let first = ask();
    let mut consistent = true;
    // Instant::now is clock_gettime(CLOCK_MONOTONIC) through the vDSO: no allocation, no lock.
    let start = Instant::now();
    for _ in 0..plan.iterations {
        consistent &= std::hint::black_box(ask()) == first;
    }
    let nanos = start.elapsed().as_nanos() as u64;
    Ok((first, consistent, nanos))
}

/// Wait for the probe to end (`waitpid(2)`); its exit code, or 128 + signal.
fn reap(pid: Pid) -> Result<i32, Error> {
    let p = pid.to_rustix().ok_or(Error::Helper {
        pid,
        op: "fork returned no pid",
        errno: Errno::SRCH,
    })?;
    loop {
        match rustix::process::waitpid(Some(p), WaitOptions::empty()) {
            Ok(Some((_, st))) => {
                return Ok(match (st.exit_status(), st.terminating_signal()) {
                    (Some(c), _) => c,
                    (None, Some(s)) => 128 + s,
                    _ => 255,
                })
            }
            Ok(None) => continue,
            Err(Errno::INTR) => continue,
            Err(errno) => {
                return Err(Error::Process {
                    op: "waitpid",
                    pid,
                    errno,
                })
            }
        }
    }
}

/// Read what the (already exited) probe wrote; the pipe is non-blocking, so a probe that wrote
/// nothing gives 0 even if another process still holds a copy of the write end.
fn read_report(rd: &OwnedFd, buf: &mut [u8; REPORT]) -> usize {
    let mut n = 0;
    while n < REPORT {
        match rustix::io::read(rd, &mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(Errno::INTR) => continue,
            Err(_) => break,
        }
    }
    n
}
