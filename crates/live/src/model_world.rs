//! A model `World` holding just the processes a question touches: their user-namespace
//! chains (each level's maps turned from the scanner's numbering into its parent's, as the
//! model takes them) and their credentials.
//!
//! What /proc does not show is assumed, and each assumption is listed with the answer:
//! securebits (0), the address space's namespace (the credentials' own), dumpability (read
//! from the owner of /proc/PID), a shared fs_struct (none).

use std::collections::BTreeMap;

use credns_idmap::{IdMap, Kgid, Kuid};
use credns_model::{
    Acl, AclEntry, AclTag, CapSet, Cred, InodeRef, MountOptions, NsRef, TaskRef, World,
};
use credns_sys::NsId;

use crate::process::{NsLevel, ProcessSnapshot};
use crate::Error;

/// The world and where each snapshot went in it.
#[derive(Debug)]
pub struct Built {
    /// The model world.
    pub world: World,
    /// Each process's task, in the order given.
    pub tasks: Vec<TaskRef>,
    /// Each namespace's place.
    pub namespaces: BTreeMap<NsId, NsRef>,
}

/// What the model is told that /proc does not show.
pub const ASSUMED: &[&str] = &[
    "securebits 0 (/proc does not show them)",
    "each process's address space belongs to its credentials' user namespace (no setns after exec)",
    "dumpable as the owner of /proc/PID says (its euid: dumpable; another id: not), and no \
     shared fs_struct",
];

/// Build the world of `procs` (the scanner's namespace is the model's initial one).
pub fn build(procs: &[&ProcessSnapshot]) -> Result<Built, Error> {
    let mut world = World::new();
    let mut namespaces: BTreeMap<NsId, NsRef> = BTreeMap::new();
    let mut kuid_maps: BTreeMap<NsId, (IdMap, IdMap)> = BTreeMap::new();
    for p in procs {
        // Ancestors first: the chain is own-first.
        let mut parent = world.init_ns();
        let mut parent_maps: Option<(IdMap, IdMap)> = None;
        for level in p.chain.iter().rev() {
            if let Some(r) = namespaces.get(&level.id) {
                parent = *r;
                parent_maps = kuid_maps.get(&level.id).cloned();
                continue;
            }
            let r = add_level(&mut world, parent, level, parent_maps.as_ref())?;
            namespaces.insert(level.id, r);
            kuid_maps.insert(level.id, (level.uid_map.clone(), level.gid_map.clone()));
            parent = r;
            parent_maps = Some((level.uid_map.clone(), level.gid_map.clone()));
        }
    }
    let mut tasks = Vec::new();
    for p in procs {
        let ns = p.userns().map_or(world.init_ns(), |id| namespaces[&id]);
        let t = add_task(&mut world, p, ns)?;
        tasks.push(t);
    }
    Ok(Built {
        world,
        tasks,
        namespaces,
    })
}

fn add_level(
    world: &mut World,
    parent: NsRef,
    level: &NsLevel,
    parent_maps: Option<&(IdMap, IdMap)>,
) -> Result<NsRef, Error> {
    let name = level.id.to_string();
    // The namespace's group is not shown by the kernel; no rule modelled here reads it.
    let r = world
        .add_userns(&name, parent, Kuid(level.owner), Kgid(level.owner))
        .map_err(|e| Error::Model(e.to_string()))?;
    let uid_text = relative(&level.uid_map, parent_maps.map(|m| &m.0), &name)?;
    let gid_text = relative(&level.gid_map, parent_maps.map(|m| &m.1), &name)?;
    // A map not written yet stays empty, as the model's new namespaces start.
    if !uid_text.is_empty() {
        world
            .set_uid_map(r, &uid_text)
            .map_err(|e| Error::Model(format!("{name} uid_map: {e}")))?;
    }
    if !gid_text.is_empty() {
        world
            .set_gid_map(r, &gid_text)
            .map_err(|e| Error::Model(format!("{name} gid_map: {e}")))?;
    }
    world.set_setgroups(r, level.setgroups_allowed);
    Ok(r)
}

/// A map whose lower ids are in the scanner's numbering, written with lower ids in the
/// parent's numbering (the parent's own map, also in the scanner's numbering, translates).
fn relative(map: &IdMap, parent: Option<&IdMap>, name: &str) -> Result<String, Error> {
    let mut out = String::new();
    for e in map.extents() {
        let Some(parent) = parent else {
            out.push_str(&format!("{} {} {}\n", e.first, e.lower_first, e.count));
            continue;
        };
        let mut done: u64 = 0;
        while done < e.count as u64 {
            let k = (e.lower_first as u64 + done) as u32;
            let Some(pe) = parent.extent_up(k) else {
                return Err(Error::Model(format!(
                    "{name}: host id {k} is mapped but its parent namespace does not map it"
                )));
            };
            let offset = k - pe.lower_first;
            let run = (pe.count - offset) as u64;
            let n = run.min(e.count as u64 - done);
            out.push_str(&format!(
                "{} {} {}\n",
                e.first as u64 + done,
                pe.first + offset,
                n
            ));
            done += n;
        }
    }
    Ok(out)
}

fn add_task(world: &mut World, p: &ProcessSnapshot, ns: NsRef) -> Result<TaskRef, Error> {
    let s = &p.status;
    let cred = Cred {
        uid: Kuid(s.uid[0]),
        euid: Kuid(s.uid[1]),
        suid: Kuid(s.uid[2]),
        fsuid: Kuid(s.uid[3]),
        gid: Kgid(s.gid[0]),
        egid: Kgid(s.gid[1]),
        sgid: Kgid(s.gid[2]),
        fsgid: Kgid(s.gid[3]),
        groups: s.groups.iter().map(|&g| Kgid(g)).collect(),
        cap_inheritable: CapSet::from_bits(s.cap_inh),
        cap_permitted: CapSet::from_bits(s.cap_prm),
        cap_effective: CapSet::from_bits(s.cap_eff),
        cap_bset: CapSet::from_bits(s.cap_bnd),
        cap_ambient: CapSet::from_bits(s.cap_amb),
        securebits: 0,
        user_ns: ns,
        // Live processes live under mainline's rules: no proposal's credentials.
        host_admin: false,
        keychain: Vec::new(),
    };
    let t = world
        .add_task(&format!("pid {}", p.pid), cred)
        .map_err(|e| Error::Model(e.to_string()))?;
    let task = world.task_mut(t);
    task.no_new_privs = s.no_new_privs;
    task.multithreaded = s.threads > 1;
    task.session = p.session;
    task.dumpable = p.proc_owner.is_none_or(|o| o == s.uid[1]);
    if let Some(m) = s.umask {
        task.umask = m;
    }
    Ok(t)
}

/// What the model is told of a path that the snapshot does not show.
pub const ASSUMED_FS: &[&str] = &[
    "every filesystem on the path was mounted in the initial user namespace (s_user_ns)",
    "no security module on the path (immutable and append-only flags and file capabilities \
     are read)",
];

/// The sysctls the model's path rules read (`fs.protected_*`), as the host has them; what
/// could not be read keeps the kernel's default and is returned as an assumption.
pub fn read_sysctls(built: &mut Built, procfs: &credns_sys::ProcFs) -> Vec<String> {
    let p = &mut built.world.protected;
    let mut assumed = Vec::new();
    for (name, slot) in [
        ("fs/protected_hardlinks", &mut p.hardlinks),
        ("fs/protected_symlinks", &mut p.symlinks),
        ("fs/protected_regular", &mut p.regular),
        ("fs/protected_fifos", &mut p.fifos),
    ] {
        match procfs.sysctl(name) {
            Ok(v) => *slot = v,
            Err(e) => assumed.push(format!(
                "{} = {} (unreadable: {e})",
                name.replace('/', "."),
                slot
            )),
        }
    }
    assumed
}

/// Add the filesystems, mounts and inodes of `path` to `built`'s world.
pub fn add_path(built: &mut Built, path: &crate::path::PathSnapshot) -> Result<(), Error> {
    let model = |e: credns_model::Error| Error::Model(e.to_string());
    let w = &mut built.world;
    let init = w.init_ns();
    let mut last_mount = None;
    for c in &path.components {
        if last_mount == Some(c.mount) {
            let ino = w
                .add_inode(&c.path, c.dir, Kuid(c.uid), Kgid(c.gid), c.mode)
                .map_err(model)?;
            set_acl(w, ino, c)?;
            set_flags(w, ino, c);
            continue;
        }
        // A mount root: its filesystem and its mount.
        last_mount = Some(c.mount);
        let facts = &path.mounts[&c.mount];
        let name = format!("mount {} ({})", c.mount, facts.fs_type);
        let sb = w
            .add_superblock(
                &name,
                &facts.fs_type,
                init,
                Kuid(c.uid),
                Kgid(c.gid),
                c.mode,
            )
            .map_err(model)?;
        w.sb_mut(sb).read_only = facts.sb_read_only;
        let idmap = match &facts.idmap {
            None => None,
            Some(m) => Some(idmap_ns(w, &name, m)?),
        };
        let opts = MountOptions {
            idmap,
            nosuid: facts.nosuid,
            noexec: facts.noexec,
            read_only: facts.read_only,
            subdir: None,
        };
        w.add_mount(&c.path, sb, opts).map_err(model)?;
        let root = w.sb(sb).root;
        set_acl(w, root, c)?;
        set_flags(w, root, c);
    }
    Ok(())
}

/// A namespace holding an idmapped mount's maps, as the kernel's mount idmap holds them.
fn idmap_ns(w: &mut World, name: &str, m: &credns_sys::fsinfo::MountIdmap) -> Result<NsRef, Error> {
    let model = |e: credns_model::Error| Error::Model(format!("{name} idmap: {e}"));
    let init = w.init_ns();
    let ns = w
        .add_userns(&format!("idmap of {name}"), init, Kuid(0), Kgid(0))
        .map_err(model)?;
    let text = |v: &[(u32, u32, u32)]| {
        v.iter()
            .map(|(a, b, c)| format!("{a} {b} {c}\n"))
            .collect::<String>()
    };
    w.set_uid_map(ns, &text(&m.uid)).map_err(model)?;
    w.set_gid_map(ns, &text(&m.gid)).map_err(model)?;
    Ok(ns)
}

/// The inode flags and file capabilities the model decides by.
fn set_flags(w: &mut World, ino: InodeRef, c: &crate::path::Component) {
    let i = w.inode_mut(ino);
    i.immutable = c.immutable;
    i.append_only = c.append;
    i.fscaps = c.file_caps.map(|f| credns_model::FileCaps {
        version: f.revision,
        rootid: f.rootid.unwrap_or(0),
        // get_vfs_caps_from_disk keeps only CAP_VALID_MASK.
        permitted: CapSet::from_bits(f.permitted & CapSet::FULL.bits()),
        inheritable: CapSet::from_bits(f.inheritable & CapSet::FULL.bits()),
        effective: f.effective(),
    });
}

fn set_acl(w: &mut World, ino: InodeRef, c: &crate::path::Component) -> Result<(), Error> {
    let Some(entries) = &c.acl else {
        return Ok(());
    };
    let tag = |t: u16| -> Result<AclTag, Error> {
        Ok(match t {
            0x01 => AclTag::UserObj,
            0x02 => AclTag::User,
            0x04 => AclTag::GroupObj,
            0x08 => AclTag::Group,
            0x10 => AclTag::Mask,
            0x20 => AclTag::Other,
            t => {
                return Err(Error::Path(
                    c.path.clone(),
                    format!("ACL tag {t:#x} unknown"),
                ))
            }
        })
    };
    let acl = Acl(entries
        .iter()
        .map(|&(t, id, perm)| {
            Ok(AclEntry {
                tag: tag(t)?,
                id,
                perm: perm as u32,
            })
        })
        .collect::<Result<_, Error>>()?);
    w.set_acl(ino, acl)
        .map_err(|e| Error::Path(c.path.clone(), format!("ACL: {e}")))
}
