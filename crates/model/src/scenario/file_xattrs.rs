//! A `[[file]]`'s extended attributes: `security.capability` (`fcaps_*`) and a directory's
//! `system.posix_acl_default` (`default_acl`).

use toml::Spanned;

use super::raw::*;
use crate::caps::CapSet;
use crate::world::{validate_acl, Acl, FileCaps, InodeRef, NsRef, World};
use crate::Error;

/// Set the file's capabilities and default ACL as declared.
pub(super) fn declare(
    c: &Ctx,
    w: &mut World,
    f: &Spanned<RawFile>,
    ino: InodeRef,
    fs_ns: NsRef,
) -> Result<(), Error> {
    let fr = f.get_ref();
    declare_caps(c, w, f, ino, fs_ns)?;
    let Some(entries) = &fr.default_acl else {
        return Ok(());
    };
    if !fr.dir.unwrap_or(false) {
        return Err(c.err(f.span(), "default_acl: only a directory has a default ACL"));
    }
    let mut acl = Vec::new();
    for e in entries {
        acl.push(parse_acl_entry(c, w, e, fs_ns)?);
    }
    let span = entries.first().map(|e| e.span()).unwrap_or(f.span());
    let mut acl = Acl(acl);
    validate_acl(&acl).map_err(|e| c.model(span, e))?;
    acl.0.sort_by_key(|e| (e.tag, e.id));
    w.inode_mut(ino).default_acl = Some(acl);
    Ok(())
}

/// `fcaps_permitted`, `fcaps_inheritable`, `fcaps_effective` and `fcaps_rootid` (revision 3
/// when given, the id in the filesystem's numbering; revision 2 otherwise).
/// A root id the filesystem's namespace does not map could never have been written
/// (`cap_convert_nscap`: EINVAL), so it is refused.
fn declare_caps(
    c: &Ctx,
    w: &mut World,
    f: &Spanned<RawFile>,
    ino: InodeRef,
    fs_ns: NsRef,
) -> Result<(), Error> {
    let fr = f.get_ref();
    if fr.fcaps_permitted.is_none()
        && fr.fcaps_inheritable.is_none()
        && fr.fcaps_effective.is_none()
        && fr.fcaps_rootid.is_none()
    {
        return Ok(());
    }
    if fr.dir.unwrap_or(false) {
        return Err(c.err(f.span(), "fcaps_*: file capabilities are for regular files"));
    }
    let set = |v: &Option<Spanned<String>>| match v {
        Some(s) => capset(c, s),
        None => Ok(CapSet::EMPTY),
    };
    let (version, rootid) = match &fr.fcaps_rootid {
        Some(r) => {
            if !w.make_kuid(fs_ns, *r.get_ref()).is_valid() {
                return Err(c.err(
                    r.span(),
                    format!(
                        "fcaps_rootid {}: the filesystem's namespace \"{}\" does not map it, so setxattr could not have stored it (cap_convert_nscap: EINVAL)",
                        r.get_ref(),
                        w.ns(fs_ns).name
                    ),
                ));
            }
            (3, *r.get_ref())
        }
        None => (2, 0),
    };
    w.inode_mut(ino).fscaps = Some(FileCaps {
        version,
        rootid,
        permitted: set(&fr.fcaps_permitted)?,
        inheritable: set(&fr.fcaps_inheritable)?,
        effective: fr.fcaps_effective.unwrap_or(false),
    });
    Ok(())
}
