//! Writing a user namespace's `uid_map` and `gid_map` from outside it, as `newuidmap(1)` does,
//! for a daemon that was handed the namespace (`user_namespaces(7)`), and scanning `/proc` for
//! the live user namespaces and what their maps hold.
//!
//! The map files live under `/proc/PID/`, so writing them needs a process inside the namespace.
//! The caller names one by pidfd: the `/proc/PID` directory is opened first, then the pidfd is
//! checked to be still running (so the directory is that process's, not a reused pid's), then
//! its namespace is checked to be the one the caller passed, and only then are the maps written
//! through the directory fd.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;

use credns_idmap::{IdKind, IdMap};
use rustix::fs::{AtFlags, Mode, OFlags};

use crate::ns::{NsId, UserNsFd};
use crate::pidfd::{boot_time, start_time_ns_since, PidFd};
use crate::{Errno, Error, Pid, ProcFs};

/// Write `uid_map` then `gid_map` of `userns`, through `/proc/PID` of `member`, a process
/// inside it. Both maps are checked to be unwritten before either is written (a map can be
/// written once); the kernel's own rules (`map_write`) then apply to this process as opener
/// and writer: a writer in the parent namespace with `CAP_SETUID`/`CAP_SETGID` may map any ids
/// it has there.
#[doc(alias = "newuidmap")]
pub fn write_userns_maps(
    procfs: &ProcFs,
    member: &PidFd,
    userns: &UserNsFd,
    uid_map: &IdMap,
    gid_map: &IdMap,
) -> Result<(), Error> {
    let pid = member.pid();
    let dir_path = procfs.pid_path(pid);
    let dir = rustix::fs::open(
        &dir_path,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| Error::Path {
        op: "open",
        path: dir_path.clone(),
        errno,
    })?;
    if member.has_exited()? {
        return Err(Error::Process {
            op: "write maps: member process exited",
            pid,
            errno: Errno::SRCH,
        });
    }
    let st =
        rustix::fs::statat(&dir, "ns/user", AtFlags::empty()).map_err(|errno| Error::Path {
            op: "stat",
            path: dir_path.join("ns/user"),
            errno,
        })?;
    let here = NsId::from_stat(&st);
    let want = userns.id()?;
    if here != want {
        return Err(Error::Invalid(format!(
            "process {pid} is in user namespace {here}, not in {want} whose maps were to be written"
        )));
    }
    for kind in [IdKind::Uid, IdKind::Gid] {
        let path = dir_path.join(kind.file_name());
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Path {
            op: "read",
            path: path.clone(),
            errno: crate::procfs::io_errno(&e),
        })?;
        if !text.trim().is_empty() {
            return Err(Error::Path {
                op: "write (map already written)",
                path,
                errno: Errno::PERM,
            });
        }
    }
    for (kind, map) in [(IdKind::Uid, uid_map), (IdKind::Gid, gid_map)] {
        write_one(&dir, &dir_path, kind, map)?;
    }
    Ok(())
}

fn write_one(
    dir: &OwnedFd,
    dir_path: &std::path::Path,
    kind: IdKind,
    map: &IdMap,
) -> Result<(), Error> {
    let path = dir_path.join(kind.file_name());
    let fd = rustix::fs::openat(
        dir,
        kind.file_name(),
        OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| Error::Path {
        op: "open",
        path: path.clone(),
        errno,
    })?;
    write_map_text(&fd, path, &map.to_write_format())
}

/// Write a map's text to an open map file in the one `write(2)` the kernel takes (a second
/// write, or a write at an offset, is refused); a short write is an error, never retried.
pub(crate) fn write_map_text(
    fd: &OwnedFd,
    path: std::path::PathBuf,
    text: &str,
) -> Result<(), Error> {
    let n = rustix::io::write(fd, text.as_bytes()).map_err(|errno| Error::Path {
        op: "write",
        path: path.clone(),
        errno,
    })?;
    if n != text.len() {
        return Err(Error::Path {
            op: "write (short)",
            path,
            errno: Errno::IO,
        });
    }
    Ok(())
}

/// A live user namespace as a `/proc` scan sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveUserNs {
    /// Its identity.
    pub id: NsId,
    /// Its processes (thread-group leaders), ascending.
    pub pids: Vec<Pid>,
    /// The earliest start time of those processes, ns since the epoch (see
    /// [`PidFd::start_time_ns`]); `None` if none could be read.
    pub oldest_start_ns: Option<u64>,
    /// Its uid map as read through its first process (empty if unreadable or unwritten).
    pub uid_map: IdMap,
    /// Its gid map, likewise.
    pub gid_map: IdMap,
}

/// Every user namespace some process of `procfs` lives in, with its processes and maps.
/// Processes that vanish mid-scan are skipped.
pub fn scan_user_namespaces(procfs: &ProcFs) -> Result<Vec<LiveUserNs>, Error> {
    scan(procfs, true)
}

/// [`scan_user_namespaces`] without start times (`oldest_start_ns` is `None`): the maps and
/// processes only, for a caller that needs the ids live maps use and not the namespaces' ages.
/// It reads no `/proc/PID/stat`.
pub fn scan_user_namespace_maps(procfs: &ProcFs) -> Result<Vec<LiveUserNs>, Error> {
    scan(procfs, false)
}

fn scan(procfs: &ProcFs, start_times: bool) -> Result<Vec<LiveUserNs>, Error> {
    let mut by_ns: BTreeMap<NsId, (Vec<Pid>, Option<u64>)> = BTreeMap::new();
    // Once per scan: without it, start times are unknown (the scan stays conservative).
    let btime = if start_times {
        boot_time(procfs).ok()
    } else {
        None
    };
    for pid in procfs.pids()? {
        let Ok(id) = procfs.userns(pid) else { continue };
        let e = by_ns.entry(id).or_default();
        e.0.push(pid);
        if let Some(Ok(t)) = btime.map(|b| start_time_ns_since(procfs, pid, b)) {
            e.1 = Some(e.1.map_or(t, |o: u64| o.min(t)));
        }
    }
    Ok(by_ns
        .into_iter()
        .map(|(id, (pids, oldest))| {
            let read = |kind| {
                pids.iter()
                    .find_map(|p| procfs.read_map(*p, kind).ok())
                    .unwrap_or_else(IdMap::empty)
            };
            LiveUserNs {
                id,
                uid_map: read(IdKind::Uid),
                gid_map: read(IdKind::Gid),
                pids,
                oldest_start_ns: oldest,
            }
        })
        .collect())
}
