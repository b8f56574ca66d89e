//! The attribute operations on the kernel: `truncate`, `utimes` and `setxattr` made by a
//! process's helper, the values encoded as the kernel takes them (`vfs_cap_data`,
//! `posix_acl_xattr`), and what they left read back as root of the initial namespace through
//! the filesystem's own directory. Also the inode flags of a realised tree
//! (`FS_IOC_SETFLAGS`), cleared again before the tree is removed.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use credns_idmap::formats::acl_xattr::{
    parse_acl_xattr, print_acl_xattr, AclXattrEntry, ACL_GROUP, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER,
    ACL_USER, ACL_USER_OBJ,
};
use credns_model::{AclTag, Inode, InodeRef, Op, UtimesTimes, World, XattrAclEntry, XattrValue};
use credns_sys::fsflags::{set_inode_flags, InodeFlags};
use credns_sys::xattr::{get_xattr, set_xattr};
use credns_sys::{Errno, UsernsChild, UtimensTimes};

/// `VFS_CAP_REVISION_1`..`_3` and `VFS_CAP_FLAGS_EFFECTIVE`.
const VFS_CAP_REVISION: [u32; 3] = [0x0100_0000, 0x0200_0000, 0x0300_0000];
const VFS_CAP_FLAGS_EFFECTIVE: u32 = 1;

/// Set the realised inode's immutable and append-only flags as the model has them (after its
/// owner, mode, ACL and children: an immutable directory takes no new entries).
pub fn apply_flags(i: &Inode, path: &Path) -> Result<(), String> {
    if !i.immutable && !i.append_only {
        return Ok(());
    }
    set_inode_flags(
        path,
        InodeFlags {
            immutable: i.immutable,
            append_only: i.append_only,
        },
    )
    .map_err(|e| e.to_string())
}

/// A `security.capability` value as `setcap` writes it: the header, then permitted and
/// inheritable in two 32-bit halves; revision 1 has one half, revision 3 a root id.
pub fn encode_caps(v: &XattrValue) -> Vec<u8> {
    let XattrValue::Caps {
        version,
        rootid,
        permitted,
        inheritable,
        effective,
    } = v
    else {
        return Vec::new();
    };
    let mut magic = VFS_CAP_REVISION[(*version as usize).clamp(1, 3) - 1];
    if *effective {
        magic |= VFS_CAP_FLAGS_EFFECTIVE;
    }
    let (p, i) = (permitted.bits(), inheritable.bits());
    let mut out = magic.to_le_bytes().to_vec();
    let halves = if *version == 1 { 1 } else { 2 };
    for h in 0..halves {
        out.extend(((p >> (32 * h)) as u32).to_le_bytes());
        out.extend(((i >> (32 * h)) as u32).to_le_bytes());
    }
    if *version == 3 {
        out.extend(rootid.to_le_bytes());
    }
    out
}

/// Write the realised inode's default ACL and file capabilities as the model has them, as
/// root of the initial namespace through the filesystem's own directory: the default ACL's
/// ids are kernel ids, and a revision 3 root id is written as the kernel id of the stored
/// one (`cap_convert_nscap` maps it back into the filesystem's namespace).
pub fn apply_xattrs(w: &World, ino: InodeRef, path: &Path) -> Result<(), String> {
    let i = w.inode(ino);
    if let Some(acl) = &i.default_acl {
        let entries: Vec<XattrAclEntry> = acl
            .0
            .iter()
            .map(|e| XattrAclEntry {
                tag: e.tag,
                id: e.id,
                perm: e.perm,
            })
            .collect();
        set_xattr(
            path,
            "system.posix_acl_default",
            &acl_value(&XattrValue::Acl(entries)),
        )
        .map_err(|e| e.to_string())?;
    }
    if let Some(c) = i.fscaps {
        let fs_ns = w.sb(i.sb).user_ns;
        let rootid = w.make_kuid(fs_ns, c.rootid).0;
        let v = XattrValue::Caps {
            version: c.version,
            rootid,
            permitted: c.permitted,
            inheritable: c.inheritable,
            effective: c.effective,
        };
        set_xattr(path, "security.capability", &encode_caps(&v)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn acl_value(v: &XattrValue) -> Vec<u8> {
    let XattrValue::Acl(entries) = v else {
        return Vec::new();
    };
    let e: Vec<AclXattrEntry> = entries
        .iter()
        .map(|e| AclXattrEntry {
            tag: match e.tag {
                AclTag::UserObj => ACL_USER_OBJ,
                AclTag::User => ACL_USER,
                AclTag::GroupObj => ACL_GROUP_OBJ,
                AclTag::Group => ACL_GROUP,
                AclTag::Mask => ACL_MASK,
                AclTag::Other => ACL_OTHER,
            },
            id: e.id,
            perm: e.perm as u16,
        })
        .collect();
    print_acl_xattr(&e)
}

/// The values an op yielded, or the kernel's errno.
pub type Answer = Result<Vec<(String, String)>, Errno>;

/// Perform an attribute op as `h` on `real`; `disk` is the same file through the filesystem's
/// own directory. `None` for an op that is not an attribute op.
pub fn perform(
    h: &UsernsChild,
    op: &Op,
    real: &Path,
    disk: &Path,
) -> Option<Result<Answer, String>> {
    let e = |x: credns_sys::Error| x.to_string();
    let r = match op {
        Op::Truncate { length, .. } => h
            .truncate(real, *length)
            .map_err(e)
            .and_then(|r| r.map(|()| mode_of(disk)).transpose_ok()),
        Op::Utimes { times, .. } => h
            .utimes(real, utimens_times(*times))
            .map_err(e)
            .map(|r| r.map(|()| Vec::new())),
        Op::Setxattr { name, value, .. } => {
            let bytes = match value {
                XattrValue::Text(t) => t.as_bytes().to_vec(),
                XattrValue::Caps { .. } => encode_caps(value),
                XattrValue::Acl(_) => acl_value(value),
            };
            h.setxattr(real, name, &bytes)
                .map_err(e)
                .and_then(|r| r.map(|()| after_setxattr(name, value, disk)).transpose_ok())
        }
        _ => return None,
    };
    Some(r)
}

/// `Result<Result<T, String>, Errno>` turned inside out.
trait TransposeOk<T> {
    fn transpose_ok(self) -> Result<Result<T, Errno>, String>;
}

impl<T> TransposeOk<T> for Result<Result<T, String>, Errno> {
    fn transpose_ok(self) -> Result<Result<T, Errno>, String> {
        match self {
            Ok(Ok(v)) => Ok(Ok(v)),
            Ok(Err(s)) => Err(s),
            Err(x) => Ok(Err(x)),
        }
    }
}

fn utimens_times(t: UtimesTimes) -> UtimensTimes {
    match t {
        UtimesTimes::Null => UtimensTimes::Null,
        UtimesTimes::Now => UtimensTimes::Now,
        UtimesTimes::Omit => UtimensTimes::Omit,
        UtimesTimes::Explicit => UtimensTimes::Explicit,
    }
}

fn mode_of(disk: &Path) -> Result<Vec<(String, String)>, String> {
    let md = std::fs::metadata(disk).map_err(|x| format!("stat {}: {x}", disk.display()))?;
    Ok(vec![("mode".into(), format!("{:04o}", md.mode() & 0o7777))])
}

/// What the model's setxattr yields, read back: the capability's revision and root id, or the
/// mode and the ACL.
fn after_setxattr(
    name: &str,
    value: &XattrValue,
    disk: &Path,
) -> Result<Vec<(String, String)>, String> {
    match value {
        XattrValue::Text(_) => Ok(Vec::new()),
        XattrValue::Caps { .. } => {
            let raw = get_xattr(disk, name)
                .map_err(|x| x.to_string())?
                .ok_or_else(|| format!("{}: no {name} after setxattr", disk.display()))?;
            let word = |k: usize| {
                raw.get(4 * k..4 * k + 4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            };
            let magic = word(0).unwrap_or(0) & 0xff00_0000;
            let (v, root) = if magic == VFS_CAP_REVISION[2] {
                ("3", word(5).unwrap_or(u32::MAX))
            } else {
                ("2", 0)
            };
            Ok(vec![
                ("version".into(), v.into()),
                ("rootid".into(), root.to_string()),
            ])
        }
        XattrValue::Acl(_) => {
            let acl = match get_xattr(disk, name).map_err(|x| x.to_string())? {
                None => "none".to_string(),
                Some(raw) => show_acl(&raw)?,
            };
            let mut v = Vec::new();
            if name == "system.posix_acl_access" {
                v = mode_of(disk)?;
            }
            v.push(("acl".into(), acl));
            Ok(v)
        }
    }
}

fn show_acl(raw: &[u8]) -> Result<String, String> {
    let entries = parse_acl_xattr(raw).map_err(|e| e.to_string())?;
    Ok(entries
        .iter()
        .map(|e| {
            let t = match e.tag {
                ACL_USER_OBJ | ACL_USER => 'u',
                ACL_GROUP_OBJ | ACL_GROUP => 'g',
                ACL_MASK => 'm',
                _ => 'o',
            };
            let id = match e.tag {
                ACL_USER | ACL_GROUP => e.id.map(|i| i.to_string()).unwrap_or_default(),
                _ => String::new(),
            };
            let p: String = [(4, 'r'), (2, 'w'), (1, 'x')]
                .iter()
                .map(|(b, c)| if e.perm & b != 0 { *c } else { '-' })
                .collect();
            format!("{t}:{id}:{p}")
        })
        .collect::<Vec<_>>()
        .join(","))
}

fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Make a `fs_type` (xfs or btrfs) filesystem in a sparse image under `base`, attach it to a
/// loop device and mount it at `base/<fs_type>` (root 0755). Returns the mount point and the
/// device; on failure whatever was set up is undone.
pub fn mount_loop_fs(base: &Path, fs_type: &str) -> Result<(std::path::PathBuf, String), String> {
    use std::os::unix::fs::PermissionsExt;
    let dir = base.join(fs_type);
    let img = base.join(format!("{fs_type}.img"));
    let imgs = img.to_str().unwrap_or_default().to_owned();
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    // mkfs.xfs wants at least 300 MiB; the image is sparse.
    std::fs::File::create(&img)
        .and_then(|h| h.set_len(320 << 20))
        .map_err(|e| format!("creating {imgs}: {e}"))?;
    match fs_type {
        "xfs" => run("mkfs.xfs", &["-q", "-f", &imgs])?,
        _ => run("mkfs.btrfs", &["-q", "-f", &imgs])?,
    };
    let dev = run("losetup", &["-f", "--show", &imgs])?;
    let d = dir.to_str().unwrap_or_default().to_owned();
    if let Err(e) = run("mount", &["-t", fs_type, &dev, &d]) {
        let _ = run("losetup", &["-d", &dev]);
        return Err(e);
    }
    if let Err(e) = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)) {
        let _ = run("umount", &[&d]);
        let _ = run("losetup", &["-d", &dev]);
        return Err(format!("chmod {d}: {e}"));
    }
    Ok((dir, dev))
}
