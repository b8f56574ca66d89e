//! The values a [`UsernsChild`]'s calls take and return: ids, capability sets, setup options,
//! full credentials, how to write, remote fds, and who acts. Parent side only.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use super::protocol::{self, RawCreds, RawOpts};
use super::UsernsChild;
use crate::{Errno, Error, Pid};

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

    pub(super) fn to_raw(&self) -> Result<RawOpts, Error> {
        let mut o = RawOpts {
            flags: 0,
            uid: 0,
            gid: 0,
            ngroups: 0,
            groups: [0; protocol::MAX_GROUPS],
            cap_eff: 0,
            cap_prm: 0,
            cap_inh: 0,
        };
        if let Some(ids) = &self.ids {
            o.flags |= protocol::F_SET_IDS;
            o.uid = ids.uid;
            o.gid = ids.gid;
            if let Some(groups) = &ids.groups {
                check_group_count(groups)?;
                o.flags |= protocol::F_SET_GROUPS;
                o.ngroups = groups.len() as u32;
                o.groups[..groups.len()].copy_from_slice(groups);
            }
        }
        if let Some(c) = self.caps {
            o.flags |= protocol::F_SET_CAPS;
            o.cap_eff = c.effective;
            o.cap_prm = c.permitted;
            o.cap_inh = c.inheritable;
        }
        if self.new_userns {
            o.flags |= protocol::F_UNSHARE;
        }
        if self.dumpable {
            o.flags |= protocol::F_DUMPABLE;
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

impl FullCreds {
    /// The `CALL_FULL_CREDS` form; too many groups is [`Error::Invalid`].
    pub(super) fn to_raw(&self) -> Result<RawCreds, Error> {
        check_group_count(&self.groups)?;
        let mut groups = [0u32; protocol::MAX_GROUPS];
        groups[..self.groups.len()].copy_from_slice(&self.groups);
        let flags = (self.no_new_privs as u32 * protocol::CREDS_NO_NEW_PRIVS)
            | (self.dumpable as u32 * protocol::CREDS_DUMPABLE)
            | (self.keep_groups as u32 * protocol::CREDS_KEEP_GROUPS);
        Ok(RawCreds {
            uid: self.uid,
            gid: self.gid,
            securebits: self.securebits,
            flags,
            umask: self.umask,
            ngroups: self.groups.len(),
            groups,
            inheritable: self.inheritable,
            permitted: self.permitted,
            effective: self.effective,
            bounding: self.bounding,
            ambient: self.ambient,
        })
    }
}

/// A helper takes at most `MAX_GROUPS` supplementary groups.
pub(super) fn check_group_count(groups: &[u32]) -> Result<(), Error> {
    if groups.len() > protocol::MAX_GROUPS {
        return Err(Error::Invalid(format!(
            "a helper takes at most {} supplementary groups, not {}",
            protocol::MAX_GROUPS,
            groups.len()
        )));
    }
    Ok(())
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
    pub(super) fn raw(self) -> (u32, u64) {
        match self {
            WriteHow::Write => (protocol::HOW_WRITE, 0),
            WriteHow::SeekThenWrite(o) => (protocol::HOW_SEEK, o),
            WriteHow::Pwrite(o) => (protocol::HOW_PWRITE, o),
        }
    }
}

/// Write `data` to an open file as `how` says, from the calling process (`write(2)`,
/// `lseek(2)`, `pwrite(2)`). Returns the byte count or the kernel's errno.
pub fn write_fd(fd: BorrowedFd<'_>, data: &[u8], how: WriteHow) -> Result<usize, Errno> {
    let (h, off) = how.raw();
    protocol::write_how(fd, data, h, off)
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
