//! One process as `credns explain` needs it: its credentials from /proc/PID/status, its
//! session, and its user-namespace chain up to the scanner's own namespace, each level with
//! its owner and its maps (read as the scanner's namespace numbers them: host ids from the
//! initial namespace).

use credns_idmap::{IdKind, IdMap};
use credns_sys::{NsId, Pid, ProcFs, ProcStatus, UserNsFd};

use crate::Error;

/// One user namespace of a process's chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NsLevel {
    /// Its identity.
    pub id: NsId,
    /// Its creator's euid (`NS_GET_OWNER_UID`), in the scanner's numbering.
    pub owner: u32,
    /// Its uid map, lower ids in the scanner's numbering.
    pub uid_map: IdMap,
    /// Its gid map, likewise.
    pub gid_map: IdMap,
    /// `/proc/PID/setgroups` reads "allow".
    pub setgroups_allowed: bool,
}

/// A process's credentials and namespaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessSnapshot {
    /// Its pid in the scanner's pid namespace.
    pub pid: u32,
    /// `/proc/PID/status`: ids in the scanner's numbering, capability sets, no_new_privs.
    pub status: ProcStatus,
    /// Its session id.
    pub session: Option<u32>,
    /// The owner of /proc/PID: the process's euid if it is dumpable, root (of its address
    /// space's namespace) if not (`task_dump_owner`).
    pub proc_owner: Option<u32>,
    /// Its user namespace and the ancestors below the scanner's, its own first. Empty when
    /// it lives in the scanner's namespace.
    pub chain: Vec<NsLevel>,
}

fn vanished(pid: u32, e: credns_sys::Error) -> Error {
    match &e {
        credns_sys::Error::Path { errno, .. }
            if *errno == credns_sys::Errno::NOENT || *errno == credns_sys::Errno::SRCH =>
        {
            Error::NoProcess(pid)
        }
        _ => Error::Sys(e),
    }
}

impl ProcessSnapshot {
    /// Read `pid` under `procfs`. A process that does not exist, or exits while it is read, is
    /// [`Error::NoProcess`]; an ancestor namespace no process lives in (held by an fd or a
    /// mount) is [`Error::Unseen`], as its maps cannot be read.
    pub fn take(procfs: &ProcFs, pid: u32) -> Result<Self, Error> {
        if pid == 0 || pid > i32::MAX as u32 {
            return Err(Error::NoProcess(pid));
        }
        let p = Pid(pid as i32);
        let own = procfs.userns(Pid::this())?;
        let status = procfs.status(p).map_err(|e| vanished(pid, e))?;
        let session = procfs.session(p).ok();
        let proc_owner = std::fs::metadata(procfs.pid_path(p)).ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.uid()
        });
        let fd = UserNsFd::open(procfs, p).map_err(|e| vanished(pid, e))?;
        let mut chain = Vec::new();
        let mut cur = fd;
        let mut reader = Some(p);
        loop {
            let id = cur.id()?;
            if id == own {
                break;
            }
            let holder = match reader.take() {
                Some(r) => r,
                None => procfs
                    .find_pid_in_userns(id)?
                    .ok_or(Error::Unseen(id, pid))?,
            };
            chain.push(level(procfs, &cur, id, holder).map_err(|e| vanished(pid, e))?);
            match cur.parent()? {
                Some(parent) => cur = parent,
                None => return Err(Error::Outside(pid)),
            }
            if chain.len() > 33 {
                return Err(Error::Outside(pid));
            }
        }
        // Read again: a process that exited (or changed namespace) meanwhile is not described.
        if procfs.userns(p).map_err(|e| vanished(pid, e))? != chain.first().map_or(own, |l| l.id) {
            return Err(Error::NoProcess(pid));
        }
        Ok(ProcessSnapshot {
            pid,
            status,
            session,
            proc_owner,
            chain,
        })
    }

    /// The process's own user namespace, if not the scanner's.
    pub fn userns(&self) -> Option<NsId> {
        self.chain.first().map(|l| l.id)
    }
}

fn level(
    procfs: &ProcFs,
    fd: &UserNsFd,
    id: NsId,
    holder: Pid,
) -> Result<NsLevel, credns_sys::Error> {
    Ok(NsLevel {
        id,
        owner: fd.owner_uid()?,
        uid_map: procfs.read_map(holder, IdKind::Uid)?,
        gid_map: procfs.read_map(holder, IdKind::Gid)?,
        setgroups_allowed: procfs.setgroups_allowed(holder)?,
    })
}
