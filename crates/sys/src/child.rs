//! Helper processes in new user namespaces, driven over a socket (`unshare(2)`,
//! `user_namespaces(7)`).

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use credns_idmap::IdKind;
use rustix::fs::{Mode, OFlags};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

use crate::helper::{self, RawOpts, Rep, Req};
use crate::ns::{NsId, UserNsFd};
use crate::{Errno, Error, Pid, ProcFs};

/// How long the controller waits for any one answer from a helper before giving up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// Ids a helper takes on (`setgroups(2)`, `setresgid(2)`, `setresuid(2)`: real, effective and
/// saved all set to the one value), in the numbering of the user namespace it is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ids {
    /// The uid.
    pub uid: u32,
    /// The gid.
    pub gid: u32,
    /// The supplementary groups; `None` leaves them as they are (`setgroups(2)` needs
    /// CAP_SETGID and, in a user namespace, a written gid_map and setgroups "allow").
    pub groups: Option<Vec<u32>>,
}

/// The three capability sets of `capget(2)`/`capset(2)`: bit n is capability n
/// (`capabilities(7)`; CAP_SETUID is 7, CAP_SETGID 6, CAP_SYS_ADMIN 21, CAP_SETFCAP 31).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapSets {
    /// Effective set.
    pub effective: u64,
    /// Permitted set.
    pub permitted: u64,
    /// Inheritable set.
    pub inheritable: u64,
}

impl CapSets {
    /// No capabilities at all.
    pub const NONE: CapSets = CapSets {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    };
}

/// How a helper sets itself up before serving requests.
#[derive(Clone, Debug)]
pub struct UnshareOptions {
    /// Take on these ids first (in the spawning process's namespace). With `caps` also set,
    /// `PR_SET_KEEPCAPS` keeps the permitted set across the uid change, so `caps` can keep some.
    pub ids: Option<Ids>,
    /// Then set these capability sets (`capset(2)`); they can only shrink what is permitted.
    pub caps: Option<CapSets>,
    /// Then create and enter a new user namespace (`unshare(CLONE_NEWUSER)`). `false` leaves
    /// the helper in the spawner's namespace: a process to act with other credentials there.
    pub new_userns: bool,
    /// Mark the helper dumpable (`PR_SET_DUMPABLE` 1) after changing ids, as a process that
    /// never changed ids is. Changing the euid clears it (`prctl(2)`), and a non-dumpable
    /// process's /proc files belong to root, so without it a helper could not open its own
    /// `/proc/self/uid_map` for writing after dropping privileges.
    pub dumpable: bool,
}

impl Default for UnshareOptions {
    fn default() -> Self {
        Self {
            ids: None,
            caps: None,
            new_userns: true,
            dumpable: true,
        }
    }
}

impl UnshareOptions {
    /// Unshare with the spawner's credentials.
    pub fn new() -> Self {
        Self::default()
    }

    /// Drop to `uid`/`gid` with no supplementary groups and no capabilities, then unshare:
    /// an unprivileged user creating a namespace.
    pub fn unprivileged(uid: u32, gid: u32) -> Self {
        Self {
            ids: Some(Ids {
                uid,
                gid,
                groups: Some(Vec::new()),
            }),
            caps: Some(CapSets::NONE),
            ..Self::default()
        }
    }

    fn to_raw(&self) -> Result<RawOpts, Error> {
        let mut o = RawOpts {
            flags: 0,
            uid: 0,
            gid: 0,
            ngroups: 0,
            groups: [0; helper::MAX_GROUPS],
            cap_eff: 0,
            cap_prm: 0,
            cap_inh: 0,
        };
        if let Some(ids) = &self.ids {
            o.flags |= helper::F_SET_IDS;
            o.uid = ids.uid;
            o.gid = ids.gid;
            if let Some(groups) = &ids.groups {
                if groups.len() > helper::MAX_GROUPS {
                    return Err(Error::Invalid(format!(
                        "a helper takes at most {} supplementary groups, not {}",
                        helper::MAX_GROUPS,
                        groups.len()
                    )));
                }
                o.flags |= helper::F_SET_GROUPS;
                o.ngroups = groups.len() as u32;
                o.groups[..groups.len()].copy_from_slice(groups);
            }
        }
        if let Some(c) = self.caps {
            o.flags |= helper::F_SET_CAPS;
            o.cap_eff = c.effective;
            o.cap_prm = c.permitted;
            o.cap_inh = c.inheritable;
        }
        if self.new_userns {
            o.flags |= helper::F_UNSHARE;
        }
        if self.dumpable {
            o.flags |= helper::F_DUMPABLE;
        }
        Ok(o)
    }
}

/// An id-changing system call, with ids in the caller's namespace (`None`: -1, no change).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetId {
    /// `setuid(2)`.
    Setuid(u32),
    /// `setreuid(2)`.
    Setreuid(Option<u32>, Option<u32>),
    /// `setresuid(2)`.
    Setresuid(Option<u32>, Option<u32>, Option<u32>),
    /// `setgid(2)`.
    Setgid(u32),
    /// `setregid(2)`.
    Setregid(Option<u32>, Option<u32>),
    /// `setresgid(2)`.
    Setresgid(Option<u32>, Option<u32>, Option<u32>),
}

/// Complete credentials for a helper, in its namespace's numbering (`credentials(7)`,
/// `capabilities(7)`): what [`UsernsChild::set_full_creds`] takes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FullCreds {
    /// Real, effective, saved and filesystem uid.
    pub uid: [u32; 4],
    /// Real, effective, saved and filesystem gid.
    pub gid: [u32; 4],
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Inheritable set.
    pub inheritable: u64,
    /// Permitted set.
    pub permitted: u64,
    /// Effective set.
    pub effective: u64,
    /// Bounding set.
    pub bounding: u64,
    /// Ambient set.
    pub ambient: u64,
    /// `PR_SET_SECUREBITS` value.
    pub securebits: u32,
    /// Set `PR_SET_NO_NEW_PRIVS`.
    pub no_new_privs: bool,
    /// `PR_SET_DUMPABLE` 1 (else 0).
    pub dumpable: bool,
    /// The file mode creation mask (`umask(2)`).
    pub umask: u32,
    /// Leave the supplementary groups as they are (`groups` is then ignored): in a namespace
    /// whose setgroups is "deny", `setgroups(2)` always fails.
    pub keep_groups: bool,
}

/// How a write is made (the offset matters to map files: `map_write` refuses any but 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteHow {
    /// `write(2)` at the file's current offset (0 for a freshly opened file).
    Write,
    /// `lseek(2)` to the offset, then `write(2)`.
    SeekThenWrite(u64),
    /// `pwrite(2)` at the offset.
    Pwrite(u64),
}

impl WriteHow {
    fn raw(self) -> (u32, u64) {
        match self {
            WriteHow::Write => (helper::HOW_WRITE, 0),
            WriteHow::SeekThenWrite(o) => (helper::HOW_SEEK, o),
            WriteHow::Pwrite(o) => (helper::HOW_PWRITE, o),
        }
    }
}

/// Write `data` to an open file as `how` says, from the calling process (`write(2)`,
/// `lseek(2)`, `pwrite(2)`). Returns the byte count or the kernel's errno.
pub fn write_fd(fd: BorrowedFd<'_>, data: &[u8], how: WriteHow) -> Result<usize, Errno> {
    let (h, off) = how.raw();
    helper::write_how(fd, data, h, off)
}

/// A file descriptor number inside a helper (from [`UsernsChild::open`] or
/// [`UsernsChild::install_fd`]). It is closed with [`UsernsChild::close`] or when the helper ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteFd(pub i32);

/// Who performs a file operation: the calling process itself, or a helper. For map files the
/// actor is both opener and writer, which is what `map_write` checks (`user_namespaces(7)`).
#[derive(Clone, Copy, Debug)]
pub enum Actor<'a> {
    /// The calling process.
    Caller,
    /// A helper process.
    Process(&'a UsernsChild),
}

impl Actor<'_> {
    /// Open `path` for writing (`O_WRONLY`), write `data` as `how` says, close. The errno is the
    /// open's if opening failed, else the write's.
    pub fn write_file(
        &self,
        path: &Path,
        data: &[u8],
        how: WriteHow,
    ) -> Result<Result<usize, Errno>, Error> {
        match self {
            Actor::Caller => {
                Ok(
                    rustix::fs::open(path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())
                        .and_then(|fd| write_fd(fd.as_fd(), data, how)),
                )
            }
            Actor::Process(c) => c.write_file(path, data, how),
        }
    }

    /// Read a whole file.
    pub fn read_file(&self, path: &Path) -> Result<Result<Vec<u8>, Errno>, Error> {
        match self {
            Actor::Caller => Ok(std::fs::read(path).map_err(|e| crate::procfs::io_errno(&e))),
            Actor::Process(c) => c.read_file(path),
        }
    }

    /// The process's pid.
    pub fn pid(&self) -> Pid {
        match self {
            Actor::Caller => Pid::this(),
            Actor::Process(c) => c.pid(),
        }
    }
}

/// A helper's ids and capabilities as it sees them itself (`getresuid(2)`, `getresgid(2)`,
/// `getgroups(2)`, `capget(2)`): ids its namespace cannot map read as the overflow ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelperIds {
    /// Real, effective and saved uid.
    pub uid: [u32; 3],
    /// Real, effective and saved gid.
    pub gid: [u32; 3],
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Capability sets.
    pub caps: CapSets,
}

/// The controller's end of a helper's socket.
#[derive(Debug)]
struct Chan {
    fd: OwnedFd,
    pid: Pid,
    buf: Vec<u8>,
}

/// A reply: header, payload, passed fd.
struct Reply {
    rep: Rep,
    payload: Vec<u8>,
    fd: Option<OwnedFd>,
}

impl Chan {
    fn call(
        &mut self,
        req: Req,
        payload: &[u8],
        pass: Option<BorrowedFd<'_>>,
    ) -> Result<Reply, Error> {
        if helper::HDR + payload.len() > helper::MSG_MAX {
            return Err(Error::Invalid(format!(
                "a helper request holds at most {} bytes, not {}",
                helper::MSG_MAX - helper::HDR,
                payload.len()
            )));
        }
        let pid = self.pid;
        let hdr = req.encode();
        send_msg(&self.fd, &[IoSlice::new(&hdr), IoSlice::new(payload)], pass).map_err(
            |errno| Error::Helper {
                pid,
                op: "send request",
                errno,
            },
        )?;
        let (n, fd) = recv_msg(&self.fd, &mut self.buf).map_err(|errno| Error::Helper {
            pid,
            op: "receive reply",
            errno,
        })?;
        if n < helper::HDR {
            return Err(Error::Helper {
                pid,
                op: "receive reply (helper exited)",
                errno: Errno::PIPE,
            });
        }
        Ok(Reply {
            rep: Rep::decode(&self.buf[..helper::HDR]),
            payload: self.buf[helper::HDR..n].to_vec(),
            fd,
        })
    }
}

fn send_msg(fd: &OwnedFd, iov: &[IoSlice<'_>], pass: Option<BorrowedFd<'_>>) -> Result<(), Errno> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    let fds;
    if let Some(p) = pass {
        fds = [p];
        cmsg.push(SendAncillaryMessage::ScmRights(&fds));
    }
    loop {
        match rustix::net::sendmsg(fd, iov, &mut cmsg, SendFlags::NOSIGNAL) {
            Ok(_) => return Ok(()),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

fn recv_msg(fd: &OwnedFd, buf: &mut [u8]) -> Result<(usize, Option<OwnedFd>), Errno> {
    loop {
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut cmsg = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [IoSliceMut::new(buf)];
        match rustix::net::recvmsg(fd, &mut iov, &mut cmsg, RecvFlags::CMSG_CLOEXEC) {
            Ok(r) => {
                let mut got = None;
                for msg in cmsg.drain() {
                    if let RecvAncillaryMessage::ScmRights(fds) = msg {
                        for f in fds {
                            if got.is_none() {
                                got = Some(f);
                            }
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

fn lock(chan: &Mutex<Chan>) -> std::sync::MutexGuard<'_, Chan> {
    chan.lock().unwrap_or_else(|p| p.into_inner())
}

fn path_payload(path: &Path) -> Result<Vec<u8>, Error> {
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
        let mut buf = vec![0u8; 2 * helper::MSG_MAX];
        // SAFETY: fork in a possibly multithreaded process: the child runs only
        // `helper::helper_main`, which makes raw system calls on `buf` (allocated above) and
        // ends with _exit, never returning into the caller's code.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(Error::Sys {
                op: "fork",
                errno: crate::last_errno(),
            });
        }
        if pid == 0 {
            helper::helper_main(child_end.as_raw_fd(), &mut buf, &raw, None);
        }
        drop(child_end);
        drop(buf);
        let pid = Pid(pid);
        let pidfd = rustix::process::pidfd_open(
            rustix::process::Pid::from_raw(pid.0).expect("fork returned a positive pid"),
            rustix::process::PidfdFlags::empty(),
        )
        .ok();
        let chan = Chan {
            fd: ctl,
            pid,
            buf: vec![0u8; helper::MSG_MAX],
        };
        let mut child = UsernsChild {
            pid,
            chan: Arc::new(Mutex::new(chan)),
            pidfd,
            parent: None,
            creator_caps: CapSets::NONE,
            procfs: ProcFs::new(),
        };
        child.await_ready()?;
        Ok(child)
    }

    /// Have this helper fork a nested helper, set up as `opts` says in this helper's namespace
    /// (ids are numbered as this helper's namespace numbers them). With `new_userns` the nested
    /// helper's namespace is a child of this helper's, owned by this helper's euid.
    pub fn spawn_child(&self, opts: &UnshareOptions) -> Result<UsernsChild, Error> {
        let raw = opts.to_raw()?;
        let (ctl, child_end) = socket_pair()?;
        let mut payload = [0u8; helper::OPTS_LEN];
        raw.encode(&mut payload);
        let rep = self.call_ok(
            Req {
                op: helper::OP_SPAWN,
                ..Req::default()
            },
            &payload,
            Some(child_end.as_fd()),
            "fork nested helper",
        )?;
        drop(child_end);
        let pid = Pid(rep.rep.v[0] as i32);
        let pidfd = pid.to_rustix().and_then(|p| {
            rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
        });
        let chan = Chan {
            fd: ctl,
            pid,
            buf: vec![0u8; helper::MSG_MAX],
        };
        let mut child = UsernsChild {
            pid,
            chan: Arc::new(Mutex::new(chan)),
            pidfd,
            parent: Some(self.chan.clone()),
            creator_caps: CapSets::NONE,
            procfs: self.procfs.clone(),
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
        let (n, _) = recv_msg(fd, buf).map_err(|errno| Error::Helper {
            pid,
            op: "wait for setup",
            errno,
        })?;
        if n < helper::HDR {
            return Err(Error::Helper {
                pid,
                op: "set up (helper exited)",
                errno: Errno::PIPE,
            });
        }
        let rep = Rep::decode(&buf[..helper::HDR]);
        self.creator_caps = CapSets {
            effective: rep.v[1],
            permitted: rep.v[2],
            inheritable: rep.v[3],
        };
        if rep.errno != 0 {
            return Err(Error::Helper {
                pid,
                op: helper::step_name(rep.step),
                errno: Errno::from_raw_os_error(rep.errno),
            });
        }
        Ok(())
    }

    fn call(&self, req: Req, payload: &[u8], pass: Option<BorrowedFd<'_>>) -> Result<Reply, Error> {
        lock(&self.chan).call(req, payload, pass)
    }

    /// A call whose failure is a plumbing error (not a kernel answer the caller wants).
    fn call_ok(
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

    fn answer(rep: &Rep) -> Result<(), Errno> {
        if rep.errno == 0 {
            Ok(())
        } else {
            Err(Errno::from_raw_os_error(rep.errno))
        }
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

    /// Have the helper `open(2)` a file (flags are `O_*` bits); the fd stays open in the helper.
    pub fn open(&self, path: &Path, flags: OFlags) -> Result<Result<RemoteFd, Errno>, Error> {
        let r = self.call(
            Req {
                op: helper::OP_OPEN,
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
                op: helper::OP_WRITE,
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
                op: helper::OP_CLOSE,
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
            pid: self.pid,
            op: "close",
            errno,
        })?;
        Ok(r)
    }

    /// Have the helper read a whole file (at most 64 KiB minus a header; more is an error).
    pub fn read_file(&self, path: &Path) -> Result<Result<Vec<u8>, Errno>, Error> {
        let r = self.call(
            Req {
                op: helper::OP_READ_PATH,
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

    fn syscall(
        &self,
        how: u32,
        args: [u64; 3],
        payload: &[u8],
    ) -> Result<Result<Reply, Errno>, Error> {
        let r = self.call(
            Req {
                op: helper::OP_CALL,
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

    fn path_call(&self, how: u32, path: &Path, args: [u64; 3]) -> Result<Result<(), Errno>, Error> {
        Ok(self.syscall(how, args, &path_payload(path)?)?.map(|_| ()))
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
        self.path_call(helper::CALL_ACCESS, path, [mode as u64, flags, 0])
    }

    /// Have the helper `mkdir(2)` a directory with `mode` (before its umask).
    pub fn mkdir(&self, path: &Path, mode: u32) -> Result<Result<(), Errno>, Error> {
        self.path_call(helper::CALL_MKDIR, path, [mode as u64, 0, 0])
    }

    /// Have the helper create a file (`open(2)` with `O_CREAT|O_EXCL`, then close it).
    pub fn create(&self, path: &Path, mode: u32) -> Result<Result<(), Errno>, Error> {
        self.path_call(helper::CALL_CREATE, path, [mode as u64, 0, 0])
    }

    /// Have the helper `chmod(2)` a path.
    pub fn chmod(&self, path: &Path, mode: u32) -> Result<Result<(), Errno>, Error> {
        self.path_call(helper::CALL_CHMOD, path, [mode as u64, 0, 0])
    }

    /// Have the helper `chown(2)` a path; `None` is -1, "no change". Ids in its namespace.
    pub fn chown(
        &self,
        path: &Path,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> Result<Result<(), Errno>, Error> {
        let a = |v: Option<u32>| v.unwrap_or(u32::MAX) as u64;
        self.path_call(helper::CALL_CHOWN, path, [a(uid), a(gid), 0])
    }

    /// Have the helper send `signal` (0: only the permission check) to `pid` (`kill(2)`).
    /// Helpers ignore SIGHUP, SIGINT, SIGUSR1, SIGUSR2 and SIGTERM, so those may be sent to
    /// another helper for real ([`UsernsChild::ignored_signals`]).
    pub fn kill(&self, pid: Pid, signal: u32) -> Result<Result<(), Errno>, Error> {
        Ok(self
            .syscall(helper::CALL_KILL, [pid.0 as u64, signal as u64, 0], &[])?
            .map(|_| ()))
    }

    /// The signals every helper ignores (and so survives).
    pub fn ignored_signals() -> &'static [i32] {
        &helper::IGNORED_SIGNALS
    }

    /// Have the helper change ids (`setuid(2)`, `setreuid(2)`, `setresuid(2)` and the gid
    /// calls), in its namespace's numbering.
    pub fn set_id(&self, call: SetId) -> Result<Result<(), Errno>, Error> {
        let a = |v: Option<u32>| v.unwrap_or(u32::MAX) as u64;
        let (how, args) = match call {
            SetId::Setuid(u) => (helper::CALL_SETUID, [u as u64, 0, 0]),
            SetId::Setreuid(r, e) => (helper::CALL_SETREUID, [a(r), a(e), 0]),
            SetId::Setresuid(r, e, s) => (helper::CALL_SETRESUID, [a(r), a(e), a(s)]),
            SetId::Setgid(g) => (helper::CALL_SETGID, [g as u64, 0, 0]),
            SetId::Setregid(r, e) => (helper::CALL_SETREGID, [a(r), a(e), 0]),
            SetId::Setresgid(r, e, s) => (helper::CALL_SETRESGID, [a(r), a(e), a(s)]),
        };
        Ok(self.syscall(how, args, &[])?.map(|_| ()))
    }

    /// Have the helper set its supplementary groups (`setgroups(2)`).
    pub fn setgroups(&self, groups: &[u32]) -> Result<Result<(), Errno>, Error> {
        if groups.len() > helper::MAX_GROUPS {
            return Err(Error::Invalid(format!(
                "a helper takes at most {} supplementary groups, not {}",
                helper::MAX_GROUPS,
                groups.len()
            )));
        }
        let p: Vec<u8> = groups.iter().flat_map(|g| g.to_ne_bytes()).collect();
        Ok(self
            .syscall(helper::CALL_SETGROUPS, [0; 3], &p)?
            .map(|_| ()))
    }

    /// Have the helper move into a new user namespace (`unshare(CLONE_NEWUSER)`).
    pub fn unshare_user(&self) -> Result<Result<(), Errno>, Error> {
        Ok(self
            .syscall(helper::CALL_UNSHARE_USER, [0; 3], &[])?
            .map(|_| ()))
    }

    /// Have the helper enter the user namespace `ns` (`setns(2)` with `CLONE_NEWUSER`). The
    /// fd is opened by the caller and passed over, so only `setns`'s own checks apply.
    #[doc(alias = "setns")]
    pub fn setns_user(&self, ns: BorrowedFd<'_>) -> Result<Result<(), Errno>, Error> {
        let r = self.call(
            Req {
                op: helper::OP_CALL,
                how: helper::CALL_SETNS_USER,
                ..Req::default()
            },
            &[],
            Some(ns),
        )?;
        Ok(Self::answer(&r.rep))
    }

    /// Have the helper set `PR_SET_NO_NEW_PRIVS` (`prctl(2)`).
    pub fn set_no_new_privs(&self) -> Result<Result<(), Errno>, Error> {
        Ok(self
            .syscall(helper::CALL_NO_NEW_PRIVS, [0; 3], &[])?
            .map(|_| ()))
    }

    /// The helper's fsuid and fsgid as its namespace shows them (`setfsuid(2)` with -1).
    pub fn fs_ids(&self) -> Result<(u32, u32), Error> {
        let r = self
            .syscall(helper::CALL_FSIDS, [0; 3], &[])?
            .map_err(|errno| Error::Helper {
                pid: self.pid,
                op: "setfsuid(-1)",
                errno,
            })?;
        Ok((r.rep.v[0] as u32, r.rep.v[1] as u32))
    }

    /// Have the helper take on complete credentials (see [`FullCreds`]). The inner result is
    /// the kernel's answer to the first step that failed.
    pub fn set_full_creds(&self, c: &FullCreds) -> Result<Result<(), Errno>, Error> {
        if c.groups.len() > helper::MAX_GROUPS {
            return Err(Error::Invalid(format!(
                "a helper takes at most {} supplementary groups, not {}",
                helper::MAX_GROUPS,
                c.groups.len()
            )));
        }
        let mut p = vec![0u8; helper::CREDS_LEN];
        let flags = (c.no_new_privs as u32 * helper::CREDS_NO_NEW_PRIVS)
            | (c.dumpable as u32 * helper::CREDS_DUMPABLE)
            | (c.keep_groups as u32 * helper::CREDS_KEEP_GROUPS);
        let words = [
            c.uid[0],
            c.uid[1],
            c.uid[2],
            c.uid[3],
            c.gid[0],
            c.gid[1],
            c.gid[2],
            c.gid[3],
            c.securebits,
            flags,
            c.umask,
            c.groups.len() as u32,
        ];
        for (i, w) in words.iter().chain(c.groups.iter()).enumerate() {
            p[4 * i..4 * i + 4].copy_from_slice(&w.to_ne_bytes());
        }
        let at = 4 * (helper::CREDS_WORDS + helper::MAX_GROUPS);
        for (i, v) in [
            c.inheritable,
            c.permitted,
            c.effective,
            c.bounding,
            c.ambient,
        ]
        .iter()
        .enumerate()
        {
            p[at + 8 * i..at + 8 * i + 8].copy_from_slice(&v.to_ne_bytes());
        }
        Ok(self
            .syscall(helper::CALL_FULL_CREDS, [0; 3], &p)?
            .map(|_| ()))
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
            .syscall(helper::CALL_EXEC, [0; 3], &p)?
            .map(|r| (r.rep.v[0] as i32, r.payload)))
    }

    /// Have the helper attach to `pid` with `ptrace(2)` (`PTRACE_SEIZE`: the access check of
    /// `PTRACE_ATTACH`) and detach again at once.
    pub fn ptrace_attach(&self, pid: Pid) -> Result<Result<(), Errno>, Error> {
        Ok(self
            .syscall(helper::CALL_PTRACE, [pid.0 as u64, 0, 0], &[])?
            .map(|_| ()))
    }

    /// Have the helper create a connected `AF_UNIX` stream socket pair (`socketpair(2)`): both
    /// ends record the helper's credentials as they are now, for `SO_PEERCRED`.
    pub fn socketpair(&self) -> Result<(RemoteFd, RemoteFd), Error> {
        let r = self.call_ok(
            Req {
                op: helper::OP_SOCKETPAIR,
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
                op: helper::OP_PEERCRED,
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
                op: helper::OP_STAT,
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
                op: helper::OP_STAT,
                ..Req::default()
            },
            &path_payload(path)?,
            None,
        )?;
        Ok(Self::answer(&r.rep).map(|_| (r.rep.v[0] as u32, r.rep.v[1] as u32)))
    }

    /// The helper's ids and capabilities as it sees them.
    pub fn ids(&self) -> Result<HelperIds, Error> {
        let r = self.call_ok(
            Req {
                op: helper::OP_IDS,
                ..Req::default()
            },
            &[],
            None,
            "getresuid",
        )?;
        let w: Vec<u32> = r
            .payload
            .chunks_exact(4)
            .map(|c| helper::rd_u32(c, 0))
            .collect();
        if w.len() < 7 || w.len() < 7 + w[6] as usize {
            return Err(Error::Helper {
                pid: self.pid,
                op: "getresuid (short reply)",
                errno: Errno::PROTO,
            });
        }
        Ok(HelperIds {
            uid: [w[0], w[1], w[2]],
            gid: [w[3], w[4], w[5]],
            groups: w[7..7 + w[6] as usize].to_vec(),
            caps: CapSets {
                effective: r.rep.v[0],
                permitted: r.rep.v[1],
                inheritable: r.rep.v[2],
            },
        })
    }

    /// Have the helper take on `ids` inside its namespace (`setgroups`, `setresgid`,
    /// `setresuid`, then `PR_SET_DUMPABLE` 1). The inner result is the kernel's answer to the
    /// first call that failed. As `capabilities(7)` describes, moving every uid away from the
    /// namespace's root clears the capability sets; use [`UsernsChild::set_creds`] to keep some.
    pub fn set_ids(&self, ids: &Ids) -> Result<Result<(), Errno>, Error> {
        self.set_creds(Some(ids), None)
    }

    /// Have the helper set its capability sets (`capset(2)`).
    pub fn set_caps(&self, caps: CapSets) -> Result<Result<(), Errno>, Error> {
        self.set_creds(None, Some(caps))
    }

    /// Have the helper change ids and then capability sets in one step: with both given,
    /// `PR_SET_KEEPCAPS` keeps the permitted set across the uid change, and `capset(2)` then
    /// sets all three sets (so `caps` may keep what the helper had).
    pub fn set_creds(
        &self,
        ids: Option<&Ids>,
        caps: Option<CapSets>,
    ) -> Result<Result<(), Errno>, Error> {
        let opts = UnshareOptions {
            ids: ids.cloned(),
            caps,
            new_userns: false,
            dumpable: ids.is_some(),
        };
        let mut payload = [0u8; helper::OPTS_LEN];
        opts.to_raw()?.encode(&mut payload);
        let r = self.call(
            Req {
                op: helper::OP_SET_CREDS,
                ..Req::default()
            },
            &payload,
            None,
        )?;
        Ok(Self::answer(&r.rep))
    }

    /// Get a duplicate of one of the helper's fds (passed over the socket, `SCM_RIGHTS`): the
    /// open file keeps the helper's credentials as its opener (`f_cred`).
    pub fn fetch_fd(&self, fd: RemoteFd) -> Result<OwnedFd, Error> {
        let r = self.call_ok(
            Req {
                op: helper::OP_FETCH_FD,
                fd: fd.0,
                ..Req::default()
            },
            &[],
            None,
            "pass fd",
        )?;
        r.fd.ok_or(Error::Helper {
            pid: self.pid,
            op: "pass fd (none arrived)",
            errno: Errno::BADF,
        })
    }

    /// Give the helper a duplicate of one of the caller's fds; returns its number there.
    pub fn install_fd(&self, fd: BorrowedFd<'_>) -> Result<RemoteFd, Error> {
        let r = self.call_ok(
            Req {
                op: helper::OP_INSTALL_FD,
                ..Req::default()
            },
            &[],
            Some(fd),
            "receive fd",
        )?;
        Ok(RemoteFd(r.rep.v[0] as i32))
    }

    /// End the helper: ask it to exit (it first kills and reaps its own nested helpers), wait
    /// for its socket to close, then SIGKILL it through the pidfd in case it did not, and reap
    /// it (a nested helper is reaped by its parent helper).
    fn kill_and_reap(&mut self) {
        {
            let mut chan = lock(&self.chan);
            let hdr = Req {
                op: helper::OP_EXIT,
                ..Req::default()
            }
            .encode();
            if send_msg(&chan.fd, &[IoSlice::new(&hdr)], None).is_ok() {
                // Returns at end-of-file (the helper exited) or after the receive timeout.
                let Chan { fd, buf, .. } = &mut *chan;
                let _ = recv_msg(fd, buf);
            }
        }
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
            Some(parent) => {
                let reaped = lock(&parent)
                    .call(
                        Req {
                            op: helper::OP_REAP,
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
