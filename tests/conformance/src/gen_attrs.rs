//! The attribute side of the generated scenarios: immutable and append-only files, and the
//! `truncate`, `utimes` and `setxattr` operations (user, trusted and security names, file
//! capabilities of every revision, access and default ACLs) with arguments biased toward the
//! edges: ids the writer's namespace does not map, set-id files, sticky directories. Declared
//! programs may carry file capabilities and declared directories default ACLs, so exec and
//! create meet them.

use std::fmt::Write;

use crate::gen::Rng;

/// Sometimes mark a declared file or directory immutable or append-only.
pub fn file_flags(rng: &mut Rng, t: &mut String) {
    match rng.below(12) {
        0 => {
            let _ = writeln!(t, "immutable = true");
        }
        1 => {
            let _ = writeln!(t, "append_only = true");
        }
        _ => {}
    }
}

/// What an attribute op needs from the scenario being generated.
#[derive(Debug)]
pub struct AttrTarget<'a> {
    /// The path as the op names it (maybe through another mount).
    pub path: &'a str,
    /// The file is one the scenario may exec (no truncate: it would no longer run).
    pub exe: bool,
    /// Ids of the acting process's namespace (mapped and not) for ACL entries and root ids.
    pub ids: &'a [u32],
    /// A default ACL may be set on it (not on a directory the fixture shares between
    /// scenarios).
    pub default_ok: bool,
}

const XCAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_NET_RAW",
    "CAP_SETUID",
    "CAP_SYS_ADMIN",
    "CAP_NET_BIND_SERVICE",
];

fn perm(rng: &mut Rng) -> &'static str {
    rng.pick(&["rwx", "r--", "rw-", "r-x", "---", "-w-"])
}

/// One attribute op (after `by = …`).
pub fn op(rng: &mut Rng, t: &mut String, at: &AttrTarget) {
    let p = at.path;
    match rng.below(10) {
        // Not a program the scenario may exec: truncated, it would no longer run.
        0..=1 if !at.exe => {
            let _ = writeln!(
                t,
                "op = \"truncate\"\npath = \"{p}\"\nlength = {}",
                rng.pick(&[
                    0,
                    0,
                    1,
                    4096,
                    -1,
                    // ext4's s_maxbytes with 4 KiB blocks, one past it, MAX_LFS_FILESIZE.
                    ((1i64 << 32) - 1) << 12,
                    (((1i64 << 32) - 1) << 12) + 1,
                    i64::MAX,
                ])
            );
        }
        2..=3 => {
            let times = rng.pick(&["null", "now", "explicit", "explicit", "omit"]);
            let _ = writeln!(t, "op = \"utimes\"\npath = \"{p}\"\ntimes = \"{times}\"");
        }
        4..=5 => {
            let name = rng.pick(&["user.x", "user.x", "trusted.x", "security.x", "other.x"]);
            let _ = writeln!(
                t,
                "op = \"setxattr\"\npath = \"{p}\"\nname = \"{name}\"\nvalue = \"v\""
            );
        }
        6 => caps(rng, t, at),
        _ => acl(rng, t, at),
    }
}

/// Sometimes give a declared program file capabilities (`fcaps_*`), its revision 3 root id
/// one of `kuids` (on-disk ids of the filesystem, roots of the namespaces among them).
pub fn file_caps(rng: &mut Rng, t: &mut String, kuids: &[u32]) {
    if !rng.chance(1, 3) {
        return;
    }
    let _ = writeln!(t, "fcaps_permitted = \"{}\"", rng.pick(XCAPS));
    if rng.chance(1, 3) {
        let _ = writeln!(t, "fcaps_inheritable = \"{}\"", rng.pick(XCAPS));
    }
    let _ = writeln!(t, "fcaps_effective = {}", rng.chance(1, 2));
    if rng.chance(1, 2) {
        let root = if rng.chance(1, 4) { 0 } else { rng.pick(kuids) };
        let _ = writeln!(t, "fcaps_rootid = {root}");
    }
}

/// Sometimes give a declared directory a default ACL (`default_acl`), named entries' ids
/// from `kuids` and `kgids`.
pub fn dir_default_acl(rng: &mut Rng, t: &mut String, kuids: &[u32], kgids: &[u32]) {
    if !rng.chance(1, 4) {
        return;
    }
    let mut e = vec![format!("\"u::{}\"", perm(rng))];
    let mut named = false;
    if rng.chance(2, 3) {
        e.push(format!("\"u:{}:{}\"", rng.pick(kuids), perm(rng)));
        named = true;
    }
    e.push(format!("\"g::{}\"", perm(rng)));
    if rng.chance(1, 3) {
        e.push(format!("\"g:{}:{}\"", rng.pick(kgids), perm(rng)));
        named = true;
    }
    if named || rng.chance(1, 4) {
        e.push(format!("\"m::{}\"", perm(rng)));
    }
    e.push(format!("\"o::{}\"", perm(rng)));
    let _ = writeln!(t, "default_acl = [{}]", e.join(", "));
}

fn caps(rng: &mut Rng, t: &mut String, at: &AttrTarget) {
    let version = rng.pick(&[2, 2, 3, 3, 1]);
    let _ = writeln!(
        t,
        "op = \"setxattr\"\npath = \"{}\"\nname = \"security.capability\"\nversion = {version}\ncaps = \"{}\"\neffective = {}",
        at.path,
        rng.pick(XCAPS),
        rng.chance(1, 2)
    );
    if version == 3 {
        let root = if rng.chance(1, 3) {
            0
        } else {
            rng.pick(at.ids)
        };
        let _ = writeln!(t, "rootid = {root}");
    }
}

fn acl(rng: &mut Rng, t: &mut String, at: &AttrTarget) {
    let default = at.default_ok && rng.chance(1, 4);
    let mut e = vec![format!("\"u::{}\"", perm(rng))];
    let mut named = false;
    if rng.chance(2, 3) {
        e.push(format!("\"u:{}:{}\"", rng.pick(at.ids), perm(rng)));
        named = true;
    }
    e.push(format!("\"g::{}\"", perm(rng)));
    if rng.chance(1, 3) {
        e.push(format!("\"g:{}:{}\"", rng.pick(at.ids), perm(rng)));
        named = true;
    }
    // Now and then a mask where none is needed, or none where one is (EINVAL).
    if named != rng.chance(1, 10) {
        e.push(format!("\"m::{}\"", perm(rng)));
    }
    e.push(format!("\"o::{}\"", perm(rng)));
    let name = if default {
        "system.posix_acl_default"
    } else {
        "system.posix_acl_access"
    };
    let _ = writeln!(
        t,
        "op = \"setxattr\"\npath = \"{}\"\nname = \"{name}\"\nacl = [{}]",
        at.path,
        e.join(", ")
    );
}
