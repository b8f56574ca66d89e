//! A path as one process sees it, for `credns explain PID access PATH`: every component from
//! `/` down (through `/proc/PID/root`, so in the process's mount namespace and root), each with
//! its owner, mode and access ACL as the filesystem stores them, and every mount the walk
//! crosses, with its options and, if idmapped, its maps (`statmount(2)`).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use credns_idmap::formats::acl_xattr::{parse_acl_xattr, ACL_USER};
use credns_idmap::formats::vfs_cap::{parse_vfs_cap, VfsCap};
use credns_sys::fsinfo::{self, MountFacts};
use credns_sys::{Pid, ProcFs};

use crate::Error;

/// One existing component of the path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Component {
    /// The path up to it, as the process names it (`/`, `/data`, `/data/x`).
    pub path: String,
    /// A directory.
    pub dir: bool,
    /// Owner as the filesystem stores it (undone through an idmapped mount's maps).
    pub uid: u32,
    /// Group, likewise.
    pub gid: u32,
    /// `st_mode` & 0o7777.
    pub mode: u32,
    /// The access ACL as `(tag, id, perm)` entries (ids as the filesystem stores them).
    pub acl: Option<Vec<(u16, Option<u32>, u16)>>,
    /// The mount it is on (unique mount id).
    pub mount: u64,
    /// `chattr +i`.
    pub immutable: bool,
    /// `chattr +a`.
    pub append: bool,
    /// Its file capabilities (`security.capability`), the root id of a revision 3 value as
    /// the filesystem stores it (undone through an idmapped mount's maps).
    pub file_caps: Option<VfsCap>,
}

/// The path's components and mounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathSnapshot {
    /// The process.
    pub pid: u32,
    /// The path asked about.
    pub path: String,
    /// Its components that exist, from `/`.
    pub components: Vec<Component>,
    /// A component that does not exist (the walk ends there), if any.
    pub missing: Option<String>,
    /// Each mount crossed, by unique id.
    pub mounts: BTreeMap<u64, MountFacts>,
}

/// An ACL's entries as `(tag, id, perm)`.
fn acl_entries(raw: &[u8]) -> Result<Vec<(u16, Option<u32>, u16)>, String> {
    parse_acl_xattr(raw)
        .map(|v| v.into_iter().map(|e| (e.tag, e.id, e.perm)).collect())
        .map_err(|e| e.to_string())
}

impl PathSnapshot {
    /// Read `path` as process `pid` sees it. Symbolic links are not followed: a component that
    /// is one is an error naming it.
    pub fn take(procfs: &ProcFs, pid: u32, path: &str) -> Result<Self, Error> {
        let bad = |m: String| Error::Path(path.to_string(), m);
        if !path.starts_with('/') {
            return Err(bad("not an absolute path".into()));
        }
        let names: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        if names.iter().any(|c| *c == "." || *c == "..") {
            return Err(bad(
                "'.' and '..' are not followed; give the path without them".into(),
            ));
        }
        let p = Pid(pid as i32);
        let root = procfs.pid_path(p).join("root");
        let ns_id = fsinfo::mnt_ns_id(procfs, p)?;
        let own_ns = fsinfo::mnt_ns_id(procfs, Pid::this())?;
        let ns_arg = if ns_id == own_ns { 0 } else { ns_id };
        let mut snap = PathSnapshot {
            pid,
            path: path.to_string(),
            components: Vec::new(),
            missing: None,
            mounts: BTreeMap::new(),
        };
        let mut shown = String::new();
        // "root/." : the magic link is followed (to the process's root) even where the final
        // component is not.
        let mut real = root.join(".");
        for name in std::iter::once("").chain(names.iter().copied()) {
            if !name.is_empty() {
                shown.push('/');
                shown.push_str(name);
                if real.ends_with(".") {
                    real.pop();
                }
                real.push(name);
            }
            let shown_path = if shown.is_empty() {
                "/".to_string()
            } else {
                shown.clone()
            };
            match component(&real, &shown_path, ns_arg, &mut snap.mounts) {
                Ok(Some(c)) => snap.components.push(c),
                Ok(None) => {
                    snap.missing = Some(shown_path);
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(snap)
    }
}

impl PathSnapshot {
    /// What differs between two readings of the same path, first from `/`, or `None`.
    pub fn first_difference(&self, later: &PathSnapshot) -> Option<String> {
        for (a, b) in self.components.iter().zip(&later.components) {
            if a == b {
                continue;
            }
            let what = if a.path != b.path {
                "the components"
            } else if (a.uid, a.gid) != (b.uid, b.gid) {
                "owner or group"
            } else if a.mode != b.mode || a.dir != b.dir {
                "mode"
            } else if a.acl != b.acl {
                "ACL"
            } else if (a.immutable, a.append, a.file_caps) != (b.immutable, b.append, b.file_caps) {
                "flags or file capabilities"
            } else {
                "mount"
            };
            return Some(format!("{} of {}", what, a.path));
        }
        if self.components.len() != later.components.len() || self.missing != later.missing {
            let gone = |s: &PathSnapshot| s.missing.clone().unwrap_or_else(|| s.path.clone());
            return Some(format!(
                "{} appeared or went",
                gone(if self.components.len() < later.components.len() {
                    self
                } else {
                    later
                })
            ));
        }
        if self.mounts != later.mounts {
            return Some("a mount on the path".into());
        }
        None
    }
}

/// One component: `Ok(None)` if it does not exist.
fn component(
    real: &Path,
    shown: &str,
    ns: u64,
    mounts: &mut BTreeMap<u64, MountFacts>,
) -> Result<Option<Component>, Error> {
    let md = match std::fs::symlink_metadata(real) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::Path(shown.into(), e.to_string())),
    };
    if md.file_type().is_symlink() && shown != "/" {
        return Err(Error::Path(
            shown.into(),
            "a symbolic link: explain follows none; give the path it leads to".into(),
        ));
    }
    let facts = fsinfo::inode_facts(real)?;
    let mount = facts.mount_id;
    let file_caps = match md.is_file() {
        true => fsinfo::file_caps(real)?,
        false => None,
    };
    if let std::collections::btree_map::Entry::Vacant(e) = mounts.entry(mount) {
        e.insert(fsinfo::statmount(mount, ns)?);
    }
    let idmap = &mounts[&mount].idmap;
    let (uid, gid) = match idmap {
        None => (md.uid(), md.gid()),
        Some(m) => (
            unmap(&m.uid, md.uid()).ok_or_else(|| unmapped(shown, "owner", md.uid()))?,
            unmap(&m.gid, md.gid()).ok_or_else(|| unmapped(shown, "group", md.gid()))?,
        ),
    };
    let acl = match fsinfo::posix_acl_access(real)? {
        None => None,
        Some(raw) => {
            let entries =
                acl_entries(&raw).map_err(|m| Error::Path(shown.into(), format!("ACL: {m}")))?;
            Some(match idmap {
                None => entries,
                Some(m) => entries
                    .into_iter()
                    .map(|(tag, id, perm)| {
                        let map = if tag == ACL_USER { &m.uid } else { &m.gid };
                        let id = match id {
                            Some(i) => {
                                Some(unmap(map, i).ok_or_else(|| unmapped(shown, "ACL entry", i))?)
                            }
                            None => None,
                        };
                        Ok((tag, id, perm))
                    })
                    .collect::<Result<_, Error>>()?,
            })
        }
    };
    let file_caps = match file_caps {
        None => None,
        Some(raw) => {
            let mut c = parse_vfs_cap(&raw)
                .map_err(|e| Error::Path(shown.into(), format!("security.capability: {e}")))?;
            if let (Some(root), Some(m)) = (c.rootid, idmap) {
                c.rootid = Some(
                    unmap(&m.uid, root)
                        .ok_or_else(|| unmapped(shown, "file capabilities' root id", root))?,
                );
            }
            Some(c)
        }
    };
    Ok(Some(Component {
        path: shown.into(),
        dir: md.is_dir(),
        uid,
        gid,
        mode: md.mode() & 0o7777,
        acl,
        mount,
        immutable: facts.immutable,
        append: facts.append,
        file_caps,
    }))
}

fn unmapped(shown: &str, what: &str, id: u32) -> Error {
    Error::Path(
        shown.into(),
        format!("its {what} {id} is not in the idmapped mount's map: the stored id is unknown"),
    )
}

/// The id the filesystem stores for `shown`, an id as seen through an idmapped mount whose
/// extents are `(fs id, shown id, count)`.
fn unmap(extents: &[(u32, u32, u32)], shown: u32) -> Option<u32> {
    extents.iter().find_map(|&(first, lower, count)| {
        (shown >= lower && (shown - lower) < count).then(|| first + (shown - lower))
    })
}
