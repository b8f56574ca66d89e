//! `credns explain --save-scenario FILE`: the snapshot an answer was made from, written as a
//! scenario file (docs/scenarios.md) that asks the same question, with the kernel's answer as
//! its expectation. `credns sim FILE` then replays it; a disagreement becomes a test case.

use std::fmt::Write as _;

use credns_idmap::{Kgid, Kuid};
use credns_model::{MntIdmap, NsRef, Op, TaskRef, World};

use crate::model_world::Built;
use crate::path::PathSnapshot;
use crate::Error;

/// The question, in the scenario's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SavedOp {
    /// `kill`.
    Kill {
        /// The signal.
        signal: u32,
    },
    /// `setns` into the target's namespace.
    Setns,
    /// `ptrace`.
    Ptrace,
    /// `ptrace` in read mode.
    PtraceRead {
        /// With the fs ids.
        fscreds: bool,
    },
    /// A question about a path.
    Path {
        /// The path.
        path: String,
        /// What is asked.
        q: crate::question::PathQuestion,
    },
    /// A key operation on the one key the snapshot holds.
    Key {
        /// The key as described.
        key: SavedKey,
        /// The operation (its key is the name `key`).
        op: Op,
    },
    /// `write_uid_map` / `write_gid_map`.
    MapWrite {
        /// The gid map.
        gid: bool,
        /// The text.
        text: String,
    },
}

/// The key of a key question, ids as host ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedKey {
    /// Its type.
    pub ktype: credns_model::KeyType,
    /// Its description.
    pub description: String,
    /// Owner kuid.
    pub uid: u32,
    /// Group kgid.
    pub gid: u32,
    /// Mask.
    pub perm: u32,
    /// Linked into the asking process's session keyring (else held by root's user keyring).
    pub possessed: bool,
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn ns_name(w: &World, ns: NsRef) -> String {
    w.ns(ns).name.clone()
}

fn unsaveable(what: String) -> Error {
    Error::Model(format!("cannot save the scenario: {what}"))
}

/// The scenario text. `by` asks; `target` is the other process (if any); `expect` is the
/// kernel's answer (`allowed` or an errno name) when it was asked.
pub fn scenario_text(
    built: &Built,
    path: Option<&PathSnapshot>,
    by: TaskRef,
    target: Option<TaskRef>,
    op: &SavedOp,
    expect: Option<&str>,
    question: &str,
) -> Result<String, Error> {
    let w = &built.world;
    let mut s = String::new();
    let _ = writeln!(s, "# Saved by `credns explain --save-scenario`: {question}");
    let _ = writeln!(
        s,
        "# Replay with `credns sim FILE`; the expectation is the kernel's answer.\n"
    );
    if path.is_some() {
        let p = &w.protected;
        let _ = writeln!(
            s,
            "[settings]\nprotected_hardlinks = {}\nprotected_symlinks = {}\nprotected_regular = {}\nprotected_fifos = {}\n",
            p.hardlinks, p.symlinks, p.regular, p.fifos
        );
    }
    namespaces(w, &mut s)?;
    if let Some(p) = path {
        filesystems(w, p, &mut s)?;
    }
    for (t, _) in w.tasks() {
        process(w, t, &mut s)?;
    }
    let task = |t: TaskRef| quote(&w.task(t).name);
    if let SavedOp::Key { key, .. } = op {
        key_table(&mut s, key, w, by);
    }
    let _ = writeln!(s, "[[op]]\nby = {}", task(by));
    match op {
        SavedOp::Kill { signal } => {
            let _ = writeln!(
                s,
                "op = \"kill\"\ntarget = {}\nsignal = {signal}",
                task(target.unwrap_or(by))
            );
        }
        SavedOp::Setns => {
            let _ = writeln!(s, "op = \"setns\"\ntarget = {}", task(target.unwrap_or(by)));
        }
        SavedOp::Ptrace => {
            let _ = writeln!(
                s,
                "op = \"ptrace\"\ntarget = {}",
                task(target.unwrap_or(by))
            );
        }
        SavedOp::PtraceRead { fscreds } => {
            let _ = writeln!(
                s,
                "op = \"ptrace\"\ntarget = {}\nmode = \"read\"\ncreds = \"{}\"",
                task(target.unwrap_or(by)),
                if *fscreds { "fs" } else { "real" }
            );
        }
        SavedOp::Path { path, q } => path_op(&mut s, path, *q),
        SavedOp::Key { op, .. } => key_op(&mut s, op),
        SavedOp::MapWrite { gid, text } => {
            let which = if *gid {
                "write_gid_map"
            } else {
                "write_uid_map"
            };
            let _ = writeln!(
                s,
                "op = \"{which}\"\ntarget = {}\ntext = {}",
                task(target.unwrap_or(by)),
                quote(text.trim_end_matches('\n'))
            );
        }
    }
    if let Some(e) = expect {
        let _ = writeln!(s, "expect = {}", quote(e));
    }
    Ok(s)
}

/// The process's session keyring as the kernel makes it (so the user-session keyring is not
/// searched, as for the live process), and the key: in that keyring when possessed, else held
/// by root's user keyring, out of the process's reach.
fn key_table(s: &mut String, k: &SavedKey, w: &World, by: TaskRef) {
    let c = &w.task(by).cred;
    let name = &w.task(by).name;
    let _ = writeln!(
        s,
        "[[key]]\nname = \"session\"\ntype = \"keyring\"\ndescription = \"_ses\"\nowner = \"kernel:{}\"\ngroup = \"kernel:{}\"\nperm = \"{:#010x}\"\ninstall = [{}]\n",
        c.uid.0,
        c.gid.0,
        credns_model::SESSION_KEYRING_PERM,
        quote(&format!("{name}:session"))
    );
    let at = if k.possessed {
        "session"
    } else {
        "init:0:user"
    };
    let _ = writeln!(
        s,
        "[[key]]\nname = \"key\"\ntype = \"{}\"\ndescription = {}\nowner = \"kernel:{}\"\ngroup = \"kernel:{}\"\nperm = \"{:#010x}\"\nat = {}\n",
        k.ktype.name(),
        quote(&k.description),
        k.uid,
        k.gid,
        k.perm,
        quote(at)
    );
}

fn key_op(s: &mut String, op: &Op) {
    let _ = match op {
        Op::KeyDescribe { .. } => writeln!(s, "op = \"keyctl_describe\"\nkey = \"key\""),
        Op::KeyRead { .. } => writeln!(s, "op = \"keyctl_read\"\nkey = \"key\""),
        Op::KeyUpdate { payload, .. } => writeln!(
            s,
            "op = \"keyctl_update\"\nkey = \"key\"\npayload = {}",
            quote(payload)
        ),
        Op::KeySearch {
            ktype, description, ..
        } => writeln!(
            s,
            "op = \"keyctl_search\"\nkeyring = \"key\"\ntype = \"{}\"\ndescription = {}",
            ktype.name(),
            quote(description)
        ),
        Op::KeyLink { keyring, .. } => writeln!(
            s,
            "op = \"keyctl_link\"\nkey = \"key\"\nkeyring = {}",
            quote(&keyring.to_string())
        ),
        Op::KeySetperm { perm, .. } => writeln!(
            s,
            "op = \"keyctl_setperm\"\nkey = \"key\"\nperm = \"{perm:#010x}\""
        ),
        other => writeln!(s, "# not a key question: {other}"),
    };
}

fn letters(mode: u32) -> String {
    [(4, 'r'), (2, 'w'), (1, 'x')]
        .iter()
        .filter(|(b, _)| mode & b != 0)
        .map(|(_, c)| *c)
        .collect()
}

fn path_op(s: &mut String, path: &str, q: crate::question::PathQuestion) {
    use crate::question::PathQuestion as Q;
    let p = quote(path);
    let _ = match q {
        Q::Access { mode, eaccess } => {
            let access = if mode == 0 {
                "F_OK".to_string()
            } else {
                letters(mode)
            };
            writeln!(
                s,
                "op = \"access\"\npath = {p}\naccess = {}\neaccess = {eaccess}",
                quote(&access)
            )
        }
        Q::Open { read, write } => {
            let access = match (read, write) {
                (true, true) => "rw",
                (false, true) => "w",
                _ => "r",
            };
            writeln!(s, "op = \"open\"\npath = {p}\naccess = \"{access}\"")
        }
        Q::Create { mode, dir } => {
            let op = if dir { "mkdir" } else { "create" };
            writeln!(s, "op = \"{op}\"\npath = {p}\nmode = \"{mode:04o}\"")
        }
        Q::Chmod { mode } => writeln!(s, "op = \"chmod\"\npath = {p}\nmode = \"{mode:04o}\""),
        Q::Chown { uid, gid } => {
            let id = |v: Option<u32>| v.map_or("-1".to_string(), |i| i.to_string());
            writeln!(
                s,
                "op = \"chown\"\npath = {p}\nuid = {}\ngid = {}",
                id(uid),
                id(gid)
            )
        }
        Q::Exec => writeln!(s, "op = \"exec\"\npath = {p}"),
    };
}

fn namespaces(w: &World, s: &mut String) -> Result<(), Error> {
    for (_, ns) in w.namespaces() {
        let Some(parent) = ns.parent else { continue };
        let owner = w
            .from_kuid(parent, ns.owner)
            .ok_or_else(|| unsaveable(format!("{}'s owner has no id in its parent", ns.name)))?;
        let group = w.from_kgid(parent, ns.group).unwrap_or(owner);
        let _ = writeln!(
            s,
            "[[namespace]]\nname = {}\nparent = {}",
            quote(&ns.name),
            quote(&ns_name(w, parent))
        );
        let _ = writeln!(s, "owner = {owner}\ngroup = {group}");
        for (key, map) in [("uid_map", &ns.uid_map), ("gid_map", &ns.gid_map)] {
            if !map.is_empty() {
                let _ = writeln!(s, "{key} = {}", quote(map.to_write_format().trim_end()));
            }
        }
        if !ns.setgroups_allowed && w.ns(parent).setgroups_allowed {
            let _ = writeln!(s, "setgroups = \"deny\"");
        }
        let _ = writeln!(s);
    }
    Ok(())
}

fn filesystems(w: &World, p: &PathSnapshot, s: &mut String) -> Result<(), Error> {
    let mut roots = std::collections::BTreeSet::new();
    for (_, m) in w.mounts() {
        let sb = w.sb(m.sb);
        let root = w.inode(sb.root);
        let _ = writeln!(
            s,
            "[[filesystem]]\nname = {}\ntype = {}\nns = {}\nread_only = {}",
            quote(&sb.name),
            quote(&sb.fs_type),
            quote(&ns_name(w, sb.user_ns)),
            sb.read_only
        );
        let _ = writeln!(
            s,
            "root_owner = {}\nroot_group = {}\nroot_mode = \"{:04o}\"\n",
            disk_uid(w, sb.user_ns, root.uid)?,
            disk_gid(w, sb.user_ns, root.gid)?,
            root.mode & 0o7777
        );
        let _ = writeln!(
            s,
            "[[mount]]\npath = {}\nfs = {}",
            quote(&m.path),
            quote(&sb.name)
        );
        if let MntIdmap::Mapped { from, .. } = &m.idmap {
            let _ = writeln!(s, "idmap = {}", quote(&ns_name(w, *from)));
        }
        let _ = writeln!(
            s,
            "nosuid = {}\nnoexec = {}\nread_only = {}\n",
            m.nosuid, m.noexec, m.read_only
        );
        roots.insert(m.path.clone());
    }
    for c in &p.components {
        if roots.contains(&c.path) {
            if c.acl.is_some() {
                let _ = writeln!(
                    s,
                    "# {}: its access ACL is not saved (a filesystem root's cannot be declared)\n",
                    c.path
                );
            }
            if c.immutable {
                let _ = writeln!(
                    s,
                    "# {}: its immutable flag is not saved (a filesystem root's cannot be declared)\n",
                    c.path
                );
            }
            continue;
        }
        let _ = writeln!(
            s,
            "[[file]]\npath = {}\nowner = {}\ngroup = {}\nmode = \"{:04o}\"\ndir = {}",
            quote(&c.path),
            c.uid,
            c.gid,
            c.mode,
            c.dir
        );
        if c.immutable {
            let _ = writeln!(s, "immutable = true");
        }
        if c.append {
            let _ = writeln!(s, "append_only = true");
        }
        if let Some(f) = &c.file_caps {
            file_caps(f, s);
        }
        if let Some(acl) = &c.acl {
            let entries: Vec<String> = acl
                .iter()
                .map(|&(t, id, perm)| acl_text(t, id, perm))
                .collect();
            let _ = writeln!(
                s,
                "acl = [{}]",
                entries
                    .iter()
                    .map(|e| quote(e))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let _ = writeln!(s);
    }
    Ok(())
}

/// A file's `security.capability` as `fcaps_*` keys: the sets as `get_vfs_caps_from_disk`
/// keeps them (`CAP_VALID_MASK`), revision 3's root id when there is one.
fn file_caps(f: &credns_idmap::formats::vfs_cap::VfsCap, s: &mut String) {
    let valid = credns_model::CapSet::FULL.bits();
    let _ = writeln!(
        s,
        "fcaps_permitted = \"0x{:x}\"\nfcaps_inheritable = \"0x{:x}\"\nfcaps_effective = {}",
        f.permitted & valid,
        f.inheritable & valid,
        f.effective()
    );
    if let Some(r) = f.rootid.filter(|_| f.revision == 3) {
        let _ = writeln!(s, "fcaps_rootid = {r}");
    }
}

fn acl_text(tag: u16, id: Option<u32>, perm: u16) -> String {
    let rwx: String = [(4, 'r'), (2, 'w'), (1, 'x')]
        .iter()
        .map(|&(b, c)| if perm & b != 0 { c } else { '-' })
        .collect();
    let id = id.map_or(String::new(), |i| i.to_string());
    let tag = match tag {
        0x01 | 0x02 => "user",
        0x04 | 0x08 => "group",
        0x10 => "mask",
        _ => "other",
    };
    format!("{tag}:{id}:{rwx}")
}

fn disk_uid(w: &World, ns: NsRef, k: Kuid) -> Result<u32, Error> {
    w.from_kuid(ns, k)
        .ok_or_else(|| unsaveable(format!("kuid {} has no on-disk id", k.0)))
}

fn disk_gid(w: &World, ns: NsRef, k: Kgid) -> Result<u32, Error> {
    w.from_kgid(ns, k)
        .ok_or_else(|| unsaveable(format!("kgid {} has no on-disk id", k.0)))
}

fn process(w: &World, t: TaskRef, s: &mut String) -> Result<(), Error> {
    let task = w.task(t);
    let c = &task.cred;
    let ns = c.user_ns;
    let uid = |k: Kuid| {
        w.from_kuid(ns, k).ok_or_else(|| {
            unsaveable(format!(
                "{}'s uid {} has no id in its namespace",
                task.name, k.0
            ))
        })
    };
    let gid = |k: Kgid| {
        w.from_kgid(ns, k).ok_or_else(|| {
            unsaveable(format!(
                "{}'s gid {} has no id in its namespace",
                task.name, k.0
            ))
        })
    };
    let _ = writeln!(
        s,
        "[[process]]\nname = {}\nns = {}",
        quote(&task.name),
        quote(&ns_name(w, ns))
    );
    let _ = writeln!(
        s,
        "uid = {}\neuid = {}\nsuid = {}\nfsuid = {}\ngid = {}\negid = {}\nsgid = {}\nfsgid = {}",
        uid(c.uid)?,
        uid(c.euid)?,
        uid(c.suid)?,
        uid(c.fsuid)?,
        gid(c.gid)?,
        gid(c.egid)?,
        gid(c.sgid)?,
        gid(c.fsgid)?
    );
    let groups: Vec<String> = c
        .groups
        .iter()
        .map(|&g| gid(g).map(|g| g.to_string()))
        .collect::<Result<_, _>>()?;
    let _ = writeln!(s, "groups = [{}]", groups.join(", "));
    for (k, set) in [
        ("permitted", c.cap_permitted),
        ("effective", c.cap_effective),
        ("inheritable", c.cap_inheritable),
        ("bounding", c.cap_bset),
        ("ambient", c.cap_ambient),
    ] {
        let _ = writeln!(s, "{k} = \"{:#x}\"", set.bits());
    }
    let _ = writeln!(
        s,
        "no_new_privs = {}\numask = \"{:03o}\"\nmultithreaded = {}\ndumpable = {}",
        task.no_new_privs, task.umask, task.multithreaded, task.dumpable
    );
    if let Some(sess) = task.session {
        let _ = writeln!(s, "session = {sess}");
    }
    let _ = writeln!(s);
    Ok(())
}
