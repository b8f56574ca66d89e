//! What the host looks like now, read through credns-sys.
//!
//! Every user namespace that some process lives in is found by a /proc scan; for each, one of
//! its processes gives its nsfs file, from which come its owner (`NS_GET_OWNER_UID`) and its
//! ancestry (`NS_GET_PARENT`), and its maps as the scanner's namespace sees them (host ids when
//! the scanner is in the initial namespace). What a process scan cannot see is counted apart:
//! namespaces held only by nsfs fds or bind mounts, idmapped mounts (whose namespace /proc
//! cannot name), processes whose fds or mounts are not readable.

use std::path::Path;

use credns_idmap::formats::subid::{SubidEntry, SubidFile};
use credns_idmap::IdMap;
use credns_registry::{parse_group_lenient, parse_passwd_lenient, GroupEntry, PasswdEntry};
use credns_sys::maps::{scan_user_namespace_maps, LiveUserNs};
use credns_sys::nsrefs::{scan_userns_refs, UserNsRefs};
use credns_sys::{NsId, Pid, ProcFs, UserNsFd};

use crate::Error;

/// A live user namespace, with what the audit needs of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveNs {
    /// Its identity (the nsfs file's device and inode).
    pub id: NsId,
    /// Its processes (thread-group leaders, as the scanner's pid namespace numbers them).
    pub pids: Vec<u32>,
    /// The euid of its creator (`NS_GET_OWNER_UID`), as the scanner's namespace sees it.
    pub owner: Option<u32>,
    /// Its ancestors below the scanner's namespace, parent first; empty for a child of the
    /// scanner's namespace. A namespace outside the scanner's subtree has `outside` set.
    pub ancestors: Vec<NsId>,
    /// Not a descendant of the scanner's namespace (its ancestry could not be followed to it).
    pub outside: bool,
    /// Its uid map as the scanner reads it.
    pub uid_map: IdMap,
    /// Its gid map as the scanner reads it.
    pub gid_map: IdMap,
}

impl LiveNs {
    /// The namespace just below the scanner's on this one's branch (itself for a child of the
    /// scanner's namespace): the container it belongs to, for the audit.
    pub fn top(&self) -> NsId {
        self.ancestors.last().copied().unwrap_or(self.id)
    }

    /// Whether it is a child of the scanner's namespace.
    pub fn is_top(&self) -> bool {
        self.ancestors.is_empty() && !self.outside
    }
}

/// The host's id files as read (each missing file reads as empty).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostIdFiles {
    /// passwd entries.
    pub passwd: Vec<PasswdEntry>,
    /// group entries.
    pub groups: Vec<GroupEntry>,
    /// subuid entries.
    pub subuid: Vec<SubidEntry>,
    /// subgid entries.
    pub subgid: Vec<SubidEntry>,
    /// Lines skipped as malformed, and files that could not be read, as messages.
    pub warnings: Vec<String>,
}

impl HostIdFiles {
    /// Read `dir`/passwd, group, subuid and subgid, leniently as the tools that use them do.
    pub fn read(dir: &Path) -> Self {
        let mut out = HostIdFiles::default();
        let mut text = |f: &str| -> Option<(String, String)> {
            let p = dir.join(f);
            match std::fs::read_to_string(&p) {
                Ok(t) => Some((p.display().to_string(), t)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    out.warnings.push(format!("{}: {e}", p.display()));
                    None
                }
            }
        };
        let passwd = text("passwd");
        let group = text("group");
        let subuid = text("subuid");
        let subgid = text("subgid");
        let mut warn = |errs: Vec<String>| out.warnings.extend(errs);
        if let Some((name, t)) = passwd {
            let (v, errs) = parse_passwd_lenient(&name, &t);
            warn(errs.iter().map(ToString::to_string).collect());
            out.passwd = v;
        }
        if let Some((name, t)) = group {
            let (v, errs) = parse_group_lenient(&name, &t);
            warn(errs.iter().map(ToString::to_string).collect());
            out.groups = v;
        }
        for (file, slot) in [(subuid, &mut out.subuid), (subgid, &mut out.subgid)] {
            if let Some((name, t)) = file {
                let (f, errs) = SubidFile::parse_lenient(&t, &name);
                out.warnings.extend(errs.iter().map(ToString::to_string));
                *slot = f.entries;
            }
        }
        out
    }

    /// Add the users and groups of NSS sources beyond the files: the files come first (as
    /// NSS asks them first), so a name they have keeps its entry.
    pub fn merge_nss(&mut self, nss: crate::nss::NssUsers) {
        for u in nss.users {
            if !self.passwd.iter().any(|p| p.name == u.name) {
                self.passwd.push(u);
            }
        }
        for g in nss.groups {
            if !self.groups.iter().any(|e| e.name == g.name) {
                self.groups.push(g);
            }
        }
        self.warnings.extend(nss.warnings);
    }

    /// The user name of `uid`, if passwd has one.
    pub fn user_name(&self, uid: u32) -> Option<&str> {
        self.passwd
            .iter()
            .find(|p| p.uid == uid)
            .map(|p| p.name.as_str())
    }

    /// The group name of `gid`, if group has one.
    pub fn group_name(&self, gid: u32) -> Option<&str> {
        self.groups
            .iter()
            .find(|g| g.gid == gid)
            .map(|g| g.name.as_str())
    }
}

/// The host as the audit sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostSnapshot {
    /// The scanner's own user namespace (not among `namespaces`).
    pub own: Option<NsId>,
    /// Every other user namespace some process lives in, by id.
    pub namespaces: Vec<LiveNs>,
    /// Namespaces held by nsfs fds or bind mounts, idmapped mounts, unreadable processes.
    pub refs: UserNsRefs,
    /// passwd, group, subuid, subgid.
    pub files: HostIdFiles,
    /// Processes that went away between the scan and the look at their namespace.
    pub vanished: usize,
}

impl HostSnapshot {
    /// Read the host: /proc under `procfs`, the id files under `etc`. `progress(done, total)`
    /// is called as namespaces are looked at.
    /// With `etc` the host's /etc, the users of the NSS sources it names are added from
    /// [`nss::USERDB_DIR`](crate::nss::USERDB_DIR); another directory is read as files only
    /// (NSS answers for the host, not for it).
    pub fn take(
        procfs: &ProcFs,
        etc: &Path,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self, Error> {
        let userdb = (etc == Path::new("/etc")).then(|| Path::new(crate::nss::USERDB_DIR));
        Self::take_with_userdb(procfs, etc, userdb, progress)
    }

    /// [`HostSnapshot::take`] with the NSS users read from the userdb services in `userdb`
    /// (when nsswitch.conf in `etc` names the `systemd` source), or none.
    pub fn take_with_userdb(
        procfs: &ProcFs,
        etc: &Path,
        userdb: Option<&Path>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self, Error> {
        let mut files = HostIdFiles::read(etc);
        if let Some(dir) = userdb {
            files.merge_nss(crate::nss::read(etc, dir));
        }
        let own = procfs.userns(Pid::this()).ok();
        let scanned = scan_user_namespace_maps(procfs)?;
        let total = scanned.len();
        let mut snap = HostSnapshot {
            own,
            refs: scan_userns_refs(procfs)?,
            files,
            ..HostSnapshot::default()
        };
        for (i, ns) in scanned.into_iter().enumerate() {
            progress(i, total);
            if Some(ns.id) == own {
                continue;
            }
            match describe(procfs, ns, own) {
                Some(live) => snap.namespaces.push(live),
                None => snap.vanished += 1,
            }
        }
        progress(total, total);
        Ok(snap)
    }

    /// The namespace with this id.
    pub fn get(&self, id: NsId) -> Option<&LiveNs> {
        self.namespaces.iter().find(|n| n.id == id)
    }
}

/// Owner and ancestry of a scanned namespace, through its first process that is still there
/// and still in it.
fn describe(procfs: &ProcFs, ns: LiveUserNs, own: Option<NsId>) -> Option<LiveNs> {
    for &pid in &ns.pids {
        let Ok(fd) = UserNsFd::open(procfs, pid) else {
            continue;
        };
        if fd.id().ok() != Some(ns.id) {
            continue; // the pid was reused, or the process changed namespace
        }
        let owner = fd.owner_uid().ok();
        let (ancestors, outside) = ancestry(fd, own);
        return Some(LiveNs {
            id: ns.id,
            pids: ns.pids.iter().map(|p| p.as_raw() as u32).collect(),
            owner,
            ancestors,
            outside,
            uid_map: ns.uid_map,
            gid_map: ns.gid_map,
        });
    }
    None
}

/// The ancestors of `fd`'s namespace strictly between it and `own`, parent first, and whether
/// the walk never reached `own` (the kernel stops it, with EPERM, above the caller's namespace).
fn ancestry(fd: UserNsFd, own: Option<NsId>) -> (Vec<NsId>, bool) {
    let mut chain = Vec::new();
    let mut cur = fd;
    while let Ok(Some(parent)) = cur.parent() {
        let Ok(id) = parent.id() else { break };
        if Some(id) == own {
            return (chain, false);
        }
        chain.push(id);
        if chain.len() > 64 {
            break;
        }
        cur = parent;
    }
    (chain, true)
}
