//! `fsid_map` (seed 003): a namespace may have fs maps distinct from its id maps. Processes run
//! with kernel ids from the id maps; everything the VFS does (permission, ownership of new
//! files, chown, stat, set-id at exec) goes through the fs maps. The model realises this as a
//! view: the VFS operation is decided on a copy of the world whose namespaces carry their fs
//! maps and whose ids are renumbered into the fs numbering, and its effects are renumbered
//! back.

use credns_idmap::{IdMap, Kgid, Kuid};

use crate::world::{NsRef, TaskRef, World};

use super::{FsidMaps, Rules};

pub(super) struct FsidMap;

fn conv(map: &IdMap, back: &IdMap, k: u32) -> u32 {
    // k is a kernel id of `back`'s numbering: its id in the namespace, then `map`'s kernel id.
    back.map_up(k)
        .and_then(|v| map.map_down(v))
        .unwrap_or(u32::MAX)
}

/// Renumber kernel ids of namespace `ns` from one map pair to the other (`to_fs`: id → fs).
fn uid_in(w: &World, ns: NsRef, k: Kuid, to_fs: bool) -> Kuid {
    match w.decl.fsid.get(&ns) {
        Some(f) if k.is_valid() => {
            let idm = &w.ns(ns).uid_map;
            let r = if to_fs {
                conv(&f.uid, idm, k.0)
            } else {
                conv(idm, &f.uid, k.0)
            };
            if r == u32::MAX {
                k
            } else {
                Kuid(r)
            }
        }
        _ => k,
    }
}

fn gid_in(w: &World, ns: NsRef, k: Kgid, to_fs: bool) -> Kgid {
    match w.decl.fsid.get(&ns) {
        Some(f) if k.is_valid() => {
            let idm = &w.ns(ns).gid_map;
            let r = if to_fs {
                conv(&f.gid, idm, k.0)
            } else {
                conv(idm, &f.gid, k.0)
            };
            if r == u32::MAX {
                k
            } else {
                Kgid(r)
            }
        }
        _ => k,
    }
}

fn renumber_cred(w: &World, c: &mut crate::world::Cred, to_fs: bool) {
    let ns = c.user_ns;
    for u in [&mut c.uid, &mut c.euid, &mut c.suid, &mut c.fsuid] {
        *u = uid_in(w, ns, *u, to_fs);
    }
    for g in [&mut c.gid, &mut c.egid, &mut c.sgid, &mut c.fsgid] {
        *g = gid_in(w, ns, *g, to_fs);
    }
    for g in c.groups.iter_mut() {
        *g = gid_in(w, ns, *g, to_fs);
    }
    c.groups.sort();
}

/// Renumber the inodes of filesystems mounted in a namespace with fs maps (their on-disk ids
/// are read through the fs map). `src` holds the maps of the numbering the inodes are in.
fn renumber_inodes(src: &World, dst: &mut World, to_fs: bool) {
    for ino in dst.inodes.iter_mut() {
        let ns = src.sb(ino.sb).user_ns;
        if !src.decl.fsid.contains_key(&ns) {
            continue;
        }
        ino.uid = uid_in(src, ns, ino.uid, to_fs);
        ino.gid = gid_in(src, ns, ino.gid, to_fs);
        if let Some(acl) = &mut ino.acl {
            for e in acl.0.iter_mut() {
                e.id = e.id.map(|id| match e.tag {
                    crate::world::AclTag::User => uid_in(src, ns, Kuid(id), to_fs).0,
                    _ => gid_in(src, ns, Kgid(id), to_fs).0,
                });
            }
        }
    }
}

impl Rules for FsidMap {
    /// FS1 "On filesystem access the kernel will now lookup the mapping for 300000 in the
    /// fsid mapping tables of the user namespace": the VFS sees each namespace through its fs
    /// maps, and the caller's ids renumbered into them (F3: "fsuid/fsgid are computed through
    /// the fs map").
    fn vfs_view(&self, w: &World, task: TaskRef) -> Option<World> {
        if w.decl.fsid.is_empty() {
            return None;
        }
        let mut v = w.clone();
        renumber_cred(w, &mut v.tasks[task.0].cred, true);
        renumber_inodes(w, &mut v, true);
        for (r, n) in v.namespaces.iter_mut().enumerate() {
            if let Some(p) = n.parent {
                n.owner = uid_in(w, p, n.owner, true);
                n.group = gid_in(w, p, n.group, true);
            }
            if let Some(FsidMaps { uid, gid }) = w.decl.fsid.get(&NsRef(r)) {
                n.uid_map = uid.clone();
                n.gid_map = gid.clone();
            }
        }
        Some(v)
    }

    /// FS2 the effects of the operation (new files, changed owners, the credentials after an
    /// exec) in the world's own numbering.
    fn vfs_merge(&self, w: &mut World, mut view: World, task: TaskRef) {
        renumber_inodes(w, &mut view, false);
        let mut tk = view.tasks[task.0].clone();
        renumber_cred(w, &mut tk.cred, false);
        w.tasks[task.0] = tk;
        w.inodes = view.inodes;
        w.mount_points = view.mount_points;
        w.generation = view.generation + 1;
        w.decl.inode_ns = view.decl.inode_ns;
    }
}
