//! The parent's side of the fork: [`UsernsChild`], the handle of a helper process. Spawning
//! (the fork, or a request to a helper to fork a nested one), the request/reply channel, the
//! accessors that need no request, and ending the helper on drop. The requests themselves are
//! in `parent_files` and `parent_creds`.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use credns_idmap::IdKind;
use rustix::net::{AddressFamily, RecvFlags, SocketFlags, SocketType};

use super::child_main;
use super::protocol::{self, recv_msg, send_msg, Rep, Req};
use super::{Actor, CapSets, UnshareOptions, WriteHow};
use crate::ns::{NsId, UserNsFd};
use crate::{Errno, Error, Pid, ProcFs};

/// How long the controller waits for any one answer from a helper before giving up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// The controller's end of a helper's socket.
#[derive(Debug)]
struct Chan {
    fd: OwnedFd,
    pid: Pid,
    buf: Vec<u8>,
}

/// A reply: header, payload, passed fd.
pub(super) struct Reply {
    pub(super) rep: Rep,
    pub(super) payload: Vec<u8>,
    pub(super) fd: Option<OwnedFd>,
}

impl Chan {
    fn call(
        &mut self,
        req: Req,
        payload: &[u8],
        pass: Option<BorrowedFd<'_>>,
    ) -> Result<Reply, Error> {
        if protocol::HDR + payload.len() > protocol::MSG_MAX {
            return Err(Error::Invalid(format!(
                "a helper request holds at most {} bytes, not {}",
                protocol::MSG_MAX - protocol::HDR,
                payload.len()
            )));
        }
        let pid = self.pid;
        let hdr = req.encode();
        send_msg(
            self.fd.as_fd(),
            &[IoSlice::new(&hdr), IoSlice::new(payload)],
            pass,
        )
        .map_err(|errno| Error::Helper {
            pid,
            op: "send request",
            errno,
        })?;
        let (n, fd) =
            recv_msg(self.fd.as_fd(), &mut self.buf, RecvFlags::CMSG_CLOEXEC).map_err(|errno| {
                Error::Helper {
                    pid,
                    op: "receive reply",
                    errno,
                }
            })?;
        if n < protocol::HDR {
            return Err(Error::Helper {
                pid,
                op: "receive reply (helper exited)",
                errno: Errno::PIPE,
            });
        }
        Ok(Reply {
            rep: Rep::decode(&self.buf[..protocol::HDR]),
            payload: self.buf[protocol::HDR..n].to_vec(),
            fd,
        })
    }
}

fn lock(chan: &Mutex<Chan>) -> std::sync::MutexGuard<'_, Chan> {
    chan.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn path_payload(path: &Path) -> Result<Vec<u8>, Error> {
    use std::os::unix::ffi::OsStrExt;
    let b = path.as_os_str().as_bytes();
    if b.contains(&0) {
        return Err(Error::Invalid(format!(
            "path {} holds a NUL byte",
            path.display()
        )));
    }
    let mut v = b.to_vec();
    v.push(0);
    Ok(v)
}

/// A helper process, usually in a user namespace of its own: forked from the caller (or from
/// another helper, for nested namespaces), it optionally took on other ids and capabilities,
/// then unshared `CLONE_NEWUSER`, and now does what it is told: open, write and read files
/// (its own or another process's map files, `setgroups`), `setresuid` inside its namespace,
/// `stat` files, report its ids, create a nested helper.
///
/// The kernel makes the creator's euid and egid the namespace's owner and group, and gives the
/// new process every capability in the new namespace (and none above it) (`user_namespaces(7)`).
///
/// Dropping the handle ends the helper and reaps it, leaving no process behind, not even a
/// zombie: the helper is asked to exit, and first kills and reaps the nested helpers it forked;
/// then it is sent `SIGKILL` through a pidfd in case it did not exit, and waited for (the caller
/// reaps a helper it forked; a nested helper is reaped by the helper that forked it). Every
/// helper is a child subreaper (`PR_SET_CHILD_SUBREAPER`), so helpers orphaned by a dropped
/// parent come to the nearest helper above, which reaps them. A helper also exits by itself
/// when its socket reaches end-of-file (the caller is gone), and a nested one is killed when
/// its parent helper dies (`PR_SET_PDEATHSIG`, armed again after every id change, which clears
/// it). Handles are `Send` and `Sync`; requests to one helper are serialized.
///
/// The namespace outlives the helper while an fd from [`UsernsChild::userns_fd`] is open: that
/// fd is what an idmapped mount (`mount_setattr(2)`, `MOUNT_ATTR_IDMAP`) takes as `userns_fd`.
#[doc(alias = "unshare")]
#[doc(alias = "CLONE_NEWUSER")]
#[derive(Debug)]
pub struct UsernsChild {
    pid: Pid,
    chan: Arc<Mutex<Chan>>,
    pidfd: Option<OwnedFd>,
    /// For a nested helper: the channel of the helper that forked it (it reaps this one).
    parent: Option<Arc<Mutex<Chan>>>,
    creator_caps: CapSets,
    procfs: ProcFs,
}

impl UsernsChild {
    /// Fork a helper from the calling process and set it up as `opts` says.
    ///
    /// The calling process may have many threads: the forked child touches nothing but raw
    /// system calls and buffers allocated before the fork.
    pub fn spawn(opts: &UnshareOptions) -> Result<Self, Error> {
        let raw = opts.to_raw()?;
        let (ctl, child_end) = socket_pair()?;
        // Allocated before the fork: the helper's only memory for requests and replies.
        let mut buf = vec![0u8; 2 * protocol::MSG_MAX];
        // SAFETY: fork in a possibly multithreaded process: the child runs only
        // `child_main::helper_main`, which makes raw system calls on `buf` (allocated above) and
        // ends with _exit, never returning into the caller's code.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(Error::Sys {
                op: "fork",
                errno: crate::last_errno(),
            });
        }
        if pid == 0 {
            child_main::helper_main(child_end.as_raw_fd(), &mut buf, &raw, None);
        }
        drop(child_end);
        drop(buf);
        Self::attach(Pid(pid), ctl, None, ProcFs::new())
    }

    /// Have this helper fork a nested helper, set up as `opts` says in this helper's namespace
    /// (ids are numbered as this helper's namespace numbers them). With `new_userns` the nested
    /// helper's namespace is a child of this helper's, owned by this helper's euid.
    pub fn spawn_child(&self, opts: &UnshareOptions) -> Result<UsernsChild, Error> {
        let raw = opts.to_raw()?;
        let (ctl, child_end) = socket_pair()?;
        let mut payload = [0u8; protocol::OPTS_LEN];
        raw.encode(&mut payload);
        let rep = self.call_ok(
            Req {
                op: protocol::OP_SPAWN,
                ..Req::default()
            },
            &payload,
            Some(child_end.as_fd()),
            "fork nested helper",
        )?;
        drop(child_end);
        let pid = Pid(rep.rep.v[0] as i32);
        Self::attach(pid, ctl, Some(self.chan.clone()), self.procfs.clone())
    }

    /// The handle of a helper just forked (by the caller, or by the helper whose channel is
    /// `parent`), once it reports its setup; `ctl` is the controller's end of its socket.
    fn attach(
        pid: Pid,
        ctl: OwnedFd,
        parent: Option<Arc<Mutex<Chan>>>,
        procfs: ProcFs,
    ) -> Result<Self, Error> {
        let pidfd = pid.to_rustix().and_then(|p| {
            rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
        });
        let chan = Chan {
            fd: ctl,
            pid,
            buf: vec![0u8; protocol::MSG_MAX],
        };
        let mut child = UsernsChild {
            pid,
            chan: Arc::new(Mutex::new(chan)),
            pidfd,
            parent,
            creator_caps: CapSets::NONE,
            procfs,
        };
        child.await_ready()?;
        Ok(child)
    }

    fn await_ready(&mut self) -> Result<(), Error> {
        let pid = self.pid;
        let mut chan = lock(&self.chan);
        rustix::net::sockopt::set_socket_timeout(
            &chan.fd,
            rustix::net::sockopt::Timeout::Recv,
            Some(REPLY_TIMEOUT),
        )
        .map_err(|errno| Error::Helper {
            pid,
            op: "set SO_RCVTIMEO",
            errno,
        })?;
        let Chan { fd, buf, .. } = &mut *chan;
        let (n, _) =
            recv_msg(fd.as_fd(), buf, RecvFlags::CMSG_CLOEXEC).map_err(|errno| Error::Helper {
                pid,
                op: "wait for setup",
                errno,
            })?;
        if n < protocol::HDR {
            return Err(Error::Helper {
                pid,
                op: "set up (helper exited)",
                errno: Errno::PIPE,
            });
        }
        let rep = Rep::decode(&buf[..protocol::HDR]);
        self.creator_caps = CapSets {
            effective: rep.v[1],
            permitted: rep.v[2],
            inheritable: rep.v[3],
        };
        if rep.errno != 0 {
            return Err(Error::Helper {
                pid,
                op: protocol::step_name(rep.step),
                errno: Errno::from_raw_os_error(rep.errno),
            });
        }
        Ok(())
    }

    pub(super) fn call(
        &self,
        req: Req,
        payload: &[u8],
        pass: Option<BorrowedFd<'_>>,
    ) -> Result<Reply, Error> {
        lock(&self.chan).call(req, payload, pass)
    }

    /// A call whose failure is a plumbing error (not a kernel answer the caller wants).
    pub(super) fn call_ok(
        &self,
        req: Req,
        payload: &[u8],
        pass: Option<BorrowedFd<'_>>,
        op: &'static str,
    ) -> Result<Reply, Error> {
        let r = self.call(req, payload, pass)?;
        if r.rep.errno != 0 {
            return Err(Error::Helper {
                pid: self.pid,
                op,
                errno: Errno::from_raw_os_error(r.rep.errno),
            });
        }
        Ok(r)
    }

    pub(super) fn answer(rep: &Rep) -> Result<(), Errno> {
        if rep.errno == 0 {
            Ok(())
        } else {
            Err(Errno::from_raw_os_error(rep.errno))
        }
    }

    /// An `OP_CALL` request: one system call made as the helper (`how` says which).
    pub(super) fn syscall(
        &self,
        how: u32,
        args: [u64; 3],
        payload: &[u8],
    ) -> Result<Result<Reply, Errno>, Error> {
        let r = self.call(
            Req {
                op: protocol::OP_CALL,
                how,
                arg0: args[0],
                arg1: args[1],
                arg2: args[2],
                ..Req::default()
            },
            payload,
            None,
        )?;
        Ok(Self::answer(&r.rep).map(|_| r))
    }

    /// An `OP_CALL` on a path.
    pub(super) fn path_call(
        &self,
        how: u32,
        path: &Path,
        args: [u64; 3],
    ) -> Result<Result<(), Errno>, Error> {
        Ok(self.syscall(how, args, &path_payload(path)?)?.map(|_| ()))
    }

    /// The helper's pid.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The capability sets the helper had just before it unshared (after any `caps` of its
    /// options): the kernel records whether the effective set held CAP_SETFCAP as the
    /// namespace's `parent_could_setfcap`.
    pub fn creator_caps(&self) -> CapSets {
        self.creator_caps
    }

    /// `/proc/PID/uid_map` (gid_map, projid_map) of the helper.
    pub fn map_path(&self, kind: IdKind) -> PathBuf {
        self.procfs.map_path(self.pid, kind)
    }

    /// `/proc/PID/setgroups` of the helper.
    pub fn setgroups_path(&self) -> PathBuf {
        self.procfs.pid_path(self.pid).join("setgroups")
    }

    /// Open the helper's user namespace from the calling process (`/proc/PID/ns/user`). The fd
    /// keeps the namespace alive after the helper is gone; idmapped mounts take it.
    pub fn userns_fd(&self) -> Result<UserNsFd, Error> {
        UserNsFd::open(&self.procfs, self.pid)
    }

    /// The identity of the helper's user namespace.
    pub fn userns(&self) -> Result<NsId, Error> {
        self.procfs.userns(self.pid)
    }

    /// Write the helper's map of `kind`, opened and written by `by` (the caller, this helper,
    /// or the helper of the parent namespace). The inner result is the kernel's answer.
    pub fn write_map(
        &self,
        by: Actor<'_>,
        kind: IdKind,
        text: &[u8],
    ) -> Result<Result<(), Errno>, Error> {
        Ok(by
            .write_file(&self.map_path(kind), text, WriteHow::Write)?
            .map(|_| ()))
    }

    /// Write the helper's `/proc/PID/setgroups` ("deny" or "allow"), by `by`.
    pub fn write_setgroups(&self, by: Actor<'_>, text: &[u8]) -> Result<Result<(), Errno>, Error> {
        Ok(by
            .write_file(&self.setgroups_path(), text, WriteHow::Write)?
            .map(|_| ()))
    }

    /// End the helper: ask it to exit (it first kills and reaps its own nested helpers), wait
    /// for its socket to close, then SIGKILL it through the pidfd in case it did not, and reap
    /// it (a nested helper is reaped by its parent helper).
    fn kill_and_reap(&mut self) {
        self.ask_to_exit();
        match &self.pidfd {
            Some(pidfd) => {
                let _ = rustix::process::pidfd_send_signal(pidfd, rustix::process::Signal::KILL);
            }
            None => {
                if let Some(p) = self.pid.to_rustix() {
                    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                }
            }
        }
        match self.parent.take() {
            None => {
                if let Some(p) = self.pid.to_rustix() {
                    while let Err(Errno::INTR) =
                        rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty())
                    {
                    }
                }
            }
            Some(parent) => self.reaped_by(&parent),
        }
    }

    /// Send `OP_EXIT` and wait for the helper's socket to close.
    fn ask_to_exit(&self) {
        let mut chan = lock(&self.chan);
        let hdr = Req {
            op: protocol::OP_EXIT,
            ..Req::default()
        }
        .encode();
        if send_msg(chan.fd.as_fd(), &[IoSlice::new(&hdr)], None).is_ok() {
            // Returns at end-of-file (the helper exited) or after the receive timeout.
            let Chan { fd, buf, .. } = &mut *chan;
            let _ = recv_msg(fd.as_fd(), buf, RecvFlags::CMSG_CLOEXEC);
        }
    }

    /// A nested helper (already sent SIGKILL) is reaped by the helper that forked it.
    fn reaped_by(&self, parent: &Mutex<Chan>) {
        let reaped = lock(parent)
            .call(
                Req {
                    op: protocol::OP_REAP,
                    arg0: self.pid.0 as u64,
                    ..Req::default()
                },
                &[],
                None,
            )
            .map(|r| r.rep.errno == 0)
            .unwrap_or(false);
        if !reaped {
            // The parent helper is gone; it killed and reaped this one before exiting
            // (or, if it was killed itself, this one was re-parented to the nearest
            // helper above, which reaps it). Wait until it is dead.
            if let Some(pidfd) = &self.pidfd {
                let mut fds = [rustix::event::PollFd::new(
                    pidfd,
                    rustix::event::PollFlags::IN,
                )];
                let t = rustix::event::Timespec {
                    tv_sec: 10,
                    tv_nsec: 0,
                };
                let _ = rustix::event::poll(&mut fds, Some(&t));
            }
        }
    }
}

impl Drop for UsernsChild {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

fn socket_pair() -> Result<(OwnedFd, OwnedFd), Error> {
    let (a, b) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|errno| Error::Sys {
        op: "socketpair(AF_UNIX, SOCK_SEQPACKET)",
        errno,
    })?;
    Ok((a, b))
}
