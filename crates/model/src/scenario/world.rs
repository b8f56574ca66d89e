//! Building the [`World`] a scenario declares: namespaces, filesystems, mounts, files,
//! processes and keys.

use std::ops::Range;

use credns_idmap::{Kgid, Kuid};
use toml::Spanned;

use super::raw::*;
use crate::caps::CapSet;
use crate::keys::{KeyRef, KeySpec, KeyType};
use crate::world::{Acl, Cred, MountOptions, World};
use crate::Error;

pub(super) fn declare_namespace(c: &Ctx, w: &mut World, ns: &Spanned<RawNs>) -> Result<(), Error> {
    let n = ns.get_ref();
    let parent = match &n.parent {
        Some(p) => ns_ref(c, w, p)?,
        None => w.init_ns(),
    };
    super::buildable::check_userns_level(c, w, parent, n.name.span())?;
    let owner = resolve_id(c, w, &n.owner, parent, true, "owner")?;
    let group = match &n.group {
        Some(g) => resolve_id(c, w, g, parent, false, "group")?,
        None => {
            let g = Spanned::new(n.owner.span(), n.owner.get_ref().clone());
            resolve_id(c, w, &g, parent, false, "group (defaulted from owner)")?
        }
    };
    let r = w
        .add_userns(n.name.get_ref(), parent, Kuid(owner), Kgid(group))
        .map_err(|e| c.model(n.name.span(), e))?;
    if let Some(sg) = &n.setgroups {
        match sg.get_ref().trim() {
            "allow" => {
                super::buildable::check_setgroups_allow(c, w, parent, sg.span())?;
                w.set_setgroups(r, true)
            }
            "deny" => w.set_setgroups(r, false),
            other => {
                return Err(c.err(
                    sg.span(),
                    format!("setgroups must be \"allow\" or \"deny\", not \"{other}\""),
                ))
            }
        }
    }
    if super::proposals::declare_isolated(c, w, n, r)? {
        // Its maps are the isolated_userns proposal's.
    } else {
        if let Some(m) = &n.uid_map {
            w.set_uid_map(r, m.get_ref())
                .map_err(|e| c.model(m.span(), e))?;
        }
        if let Some(m) = &n.gid_map {
            w.set_gid_map(r, m.get_ref())
                .map_err(|e| c.model(m.span(), e))?;
        }
    }
    w.set_parent_could_setfcap(r, n.parent_could_setfcap.unwrap_or(false));
    super::proposals::declare_fsid_maps(c, w, n, r)
}

pub(super) fn declare_filesystem(c: &Ctx, w: &mut World, fs: &Spanned<RawFs>) -> Result<(), Error> {
    let f = fs.get_ref();
    let ns = match &f.ns {
        Some(n) => ns_ref(c, w, n)?,
        None => w.init_ns(),
    };
    let uid = match &f.root_owner {
        Some(v) => resolve_id(c, w, v, ns, true, "root_owner")?,
        None => w.make_kuid(ns, 0).0,
    };
    let gid = match &f.root_group {
        Some(v) => resolve_id(c, w, v, ns, false, "root_group")?,
        None => w.make_kgid(ns, 0).0,
    };
    let mode = match &f.root_mode {
        Some(m) => parse_num(c, m, "root_mode")?,
        None => 0o755,
    };
    let fs_type = f.fs_type.as_ref().map(|t| t.get_ref().as_str());
    let type_span = f
        .fs_type
        .as_ref()
        .map(|t| t.span())
        .unwrap_or(f.name.span());
    let type_span = f.ns.as_ref().map(|n| n.span()).unwrap_or(type_span);
    super::buildable::check_superblock_ns(c, w, fs_type.unwrap_or("ext4"), ns, type_span)?;
    let sb = w
        .add_superblock(
            f.name.get_ref(),
            fs_type.unwrap_or("ext4"),
            ns,
            Kuid(uid),
            Kgid(gid),
            mode,
        )
        .map_err(|e| c.model(f.name.span(), e))?;
    w.sb_mut(sb).read_only = f.read_only.unwrap_or(false);
    w.sb_mut(sb).posix_acl = f.posix_acl.unwrap_or(true);
    Ok(())
}

pub(super) fn declare_mount(c: &Ctx, w: &mut World, m: &Spanned<RawMount>) -> Result<(), Error> {
    let mm = m.get_ref();
    let sb = sb_ref(c, w, &mm.fs)?;
    let idmap = match &mm.idmap {
        Some(n) => {
            let ns = ns_ref(c, w, n)?;
            super::buildable::check_idmapped_mount(c, w, sb, ns, n.span())?;
            Some(ns)
        }
        None => None,
    };
    let opts = MountOptions {
        idmap,
        nosuid: mm.nosuid.unwrap_or(false),
        noexec: mm.noexec.unwrap_or(false),
        read_only: mm.read_only.unwrap_or(false),
        subdir: mm.subdir.as_ref().map(|s| s.get_ref().clone()),
    };
    w.add_mount(mm.path.get_ref(), sb, opts)
        .map_err(|e| c.model(mm.path.span(), e))?;
    Ok(())
}

pub(super) fn declare_file(c: &Ctx, w: &mut World, f: &Spanned<RawFile>) -> Result<(), Error> {
    let fr = f.get_ref();
    let path = fr.path.get_ref();
    // The filesystem the file lands on decides the numbering of owner/group.
    let parent_path = match path.rsplit_once('/') {
        Some(("", _)) => "/".to_string(),
        Some((p, _)) => p.to_string(),
        None => {
            return Err(c.err(
                fr.path.span(),
                format!("\"{path}\" is not an absolute path"),
            ))
        }
    };
    let fs_ns = {
        let mut p = parent_path.clone();
        loop {
            if let Some((_, ino)) = w.lookup_unchecked(&p) {
                break w.sb(w.inode(ino).sb).user_ns;
            }
            p = match p.rsplit_once('/') {
                Some(("", _)) | None => "/".into(),
                Some((q, _)) => q.into(),
            };
        }
    };
    let uid = match &fr.owner {
        Some(v) => resolve_id(c, w, v, fs_ns, true, "owner")?,
        None => w.make_kuid(fs_ns, 0).0,
    };
    let gid = match &fr.group {
        Some(v) => resolve_id(c, w, v, fs_ns, false, "group")?,
        None => w.make_kgid(fs_ns, 0).0,
    };
    let dir = fr.dir.unwrap_or(false);
    let mode = match &fr.mode {
        Some(m) => parse_num(c, m, "mode")?,
        None => {
            if dir {
                0o755
            } else {
                0o644
            }
        }
    };
    let ino = w
        .add_inode(path, dir, Kuid(uid), Kgid(gid), mode)
        .map_err(|e| c.model(fr.path.span(), e))?;
    if !dir && mode & 0o111 != 0 {
        // A program file: the executor copies a program there.
        w.inode_mut(ino).size = 1;
    }
    if let Some(acl) = &fr.acl {
        let mut entries = Vec::new();
        for e in acl {
            entries.push(parse_acl_entry(c, w, e, fs_ns)?);
        }
        let span = acl.first().map(|e| e.span()).unwrap_or(fr.path.span());
        w.set_acl(ino, Acl(entries)).map_err(|e| c.model(span, e))?;
    }
    if fr.immutable.unwrap_or(false) {
        w.inode_mut(ino).immutable = true;
    }
    if fr.append_only.unwrap_or(false) {
        w.inode_mut(ino).append_only = true;
    }
    super::file_xattrs::declare(c, w, f, ino, fs_ns)?;
    super::proposals::declare_inode_userns(c, w, fr, ino)
}

/// A process's capability sets: `caps` (default: what its euid gets in its namespace) for
/// permitted and effective unless given apart, the other three as given; effective and
/// ambient must stay within permitted (and ambient within inheritable), as the kernel keeps
/// them.
fn process_caps(c: &Ctx, w: &World, p: &Spanned<RawProcess>, cred: &mut Cred) -> Result<(), Error> {
    let pr = p.get_ref();
    let ns = cred.user_ns;
    let default = w.default_caps(ns, cred.euid);
    let base = match &pr.caps {
        Some(s) => capset(c, s)?,
        None => default,
    };
    cred.cap_permitted = match &pr.permitted {
        Some(s) => capset(c, s)?,
        None => base,
    };
    cred.cap_effective = match &pr.effective {
        Some(s) => capset(c, s)?,
        None => base,
    };
    if let Some(s) = &pr.inheritable {
        cred.cap_inheritable = capset(c, s)?;
    }
    if let Some(s) = &pr.bounding {
        cred.cap_bset = capset(c, s)?;
    }
    if let Some(s) = &pr.ambient {
        cred.cap_ambient = capset(c, s)?;
    }
    if !cred.cap_effective.is_subset(cred.cap_permitted) {
        return Err(c.err(
            p.span(),
            "the effective set must be a subset of the permitted set",
        ));
    }
    if !cred
        .cap_ambient
        .is_subset(cred.cap_permitted.intersect(cred.cap_inheritable))
    {
        return Err(c.err(
            p.span(),
            "the ambient set must be a subset of permitted and inheritable",
        ));
    }
    Ok(())
}

/// Declare one `[[process]]`: its credentials, then its task flags.
pub(super) fn declare_process(
    c: &Ctx,
    w: &mut World,
    p: &Spanned<RawProcess>,
) -> Result<(), Error> {
    let pr = p.get_ref();
    let ns = match &pr.ns {
        Some(n) => ns_ref(c, w, n)?,
        None => w.init_ns(),
    };
    let uid = Kuid(resolve_id(c, w, &pr.uid, ns, true, "uid")?);
    let gid = match &pr.gid {
        Some(g) => Kgid(resolve_id(c, w, g, ns, false, "gid")?),
        None => {
            let g = Spanned::new(pr.uid.span(), pr.uid.get_ref().clone());
            Kgid(resolve_id(c, w, &g, ns, false, "gid (defaulted from uid)")?)
        }
    };
    let mut cred = Cred::new(ns, uid, gid, CapSet::EMPTY);
    let opt_u = |v: &Option<Spanned<RawId>>, what: &str, d: Kuid| -> Result<Kuid, Error> {
        v.as_ref()
            .map(|v| resolve_id(c, w, v, ns, true, what).map(Kuid))
            .unwrap_or(Ok(d))
    };
    let opt_g = |v: &Option<Spanned<RawId>>, what: &str, d: Kgid| -> Result<Kgid, Error> {
        v.as_ref()
            .map(|v| resolve_id(c, w, v, ns, false, what).map(Kgid))
            .unwrap_or(Ok(d))
    };
    cred.euid = opt_u(&pr.euid, "euid", uid)?;
    cred.suid = opt_u(&pr.suid, "suid", uid)?;
    cred.fsuid = opt_u(&pr.fsuid, "fsuid", cred.euid)?;
    cred.egid = opt_g(&pr.egid, "egid", gid)?;
    cred.sgid = opt_g(&pr.sgid, "sgid", gid)?;
    cred.fsgid = opt_g(&pr.fsgid, "fsgid", cred.egid)?;
    if let Some(gs) = &pr.groups {
        for g in gs {
            cred.groups
                .push(Kgid(resolve_id(c, w, g, ns, false, "group")?));
        }
    }
    process_caps(c, w, p, &mut cred)?;
    cred.securebits = pr.securebits.unwrap_or(0);
    let t = w
        .add_task(pr.name.get_ref(), cred)
        .map_err(|e| c.model(pr.name.span(), e))?;
    let tm = w.task_mut(t);
    tm.no_new_privs = pr.no_new_privs.unwrap_or(false);
    if let Some(u) = &pr.umask {
        tm.umask = parse_num(c, u, "umask")? & 0o777;
    }
    tm.chrooted = pr.chrooted.unwrap_or(false);
    tm.multithreaded = pr.multithreaded.unwrap_or(false);
    tm.shared_fs = pr.shared_fs.unwrap_or(false);
    tm.dumpable = pr.dumpable.unwrap_or(true);
    tm.session = pr.session;
    if let Some(n) = &pr.mm_userns {
        let ns = w
            .ns_by_name(n.get_ref())
            .ok_or_else(|| c.err(n.span(), format!("no namespace called \"{}\"", n.get_ref())))?;
        w.task_mut(t).mm_user_ns = ns;
    }
    let defaulted = pr.caps.is_none() && pr.permitted.is_none() && pr.effective.is_none();
    super::proposals::declare_process(c, w, pr, t, defaulted)
}

/// Declare one `[[key]]`.
pub(super) fn declare_key(
    c: &Ctx,
    w: &mut World,
    kspan: Range<usize>,
    k: &RawKey,
) -> Result<(), Error> {
    let name = k.name.get_ref();
    check_key_name(c, w, k)?;
    let ktype = key_type(c, &k.ktype)?;
    let at: Vec<String> =
        k.at.as_ref()
            .map(|a| a.get_ref().items())
            .unwrap_or_default();
    let install: Vec<String> = k
        .install
        .as_ref()
        .map(|a| a.get_ref().items())
        .unwrap_or_default();
    let at_span = k.at.as_ref().map(|a| a.span()).unwrap_or(kspan.clone());
    let in_span = k
        .install
        .as_ref()
        .map(|a| a.span())
        .unwrap_or(kspan.clone());
    if at.is_empty() && install.is_empty() {
        return Err(c.err(
            kspan,
            format!(
                "key \"{name}\" is linked nowhere: give `at` (where it is linked) or `install`"
            ),
        ));
    }
    let (uid, gid) = key_owner(c, w, k, kspan.clone(), &at, &install)?;
    let perm = match &k.perm {
        Some(p) => parse_perm(c, p)?,
        None => crate::keys::KEY_DEFAULT_PERM,
    };
    let desc = k.description.clone().unwrap_or_else(|| name.clone());
    let payload = k.payload.clone().unwrap_or_default();
    if ktype == KeyType::Keyring && !payload.is_empty() {
        return Err(c.err(kspan, "a keyring has no payload"));
    }
    let key = w.alloc_key(Some(name), ktype, &desc, uid, gid, perm, payload.as_bytes());
    for i in &install {
        install_key(c, w, key, i, in_span.clone())?;
    }
    for a in &at {
        let ring = at_keyring(c, w, a, at_span.clone())?;
        w.link_key(ring, key)
            .map_err(|e| c.model(at_span.clone(), e))?;
    }
    Ok(())
}

/// A declared key's name must be new, and must not read as a serial, an @ shorthand or a
/// `PROCESS:SLOT` place.
fn check_key_name(c: &Ctx, w: &World, k: &RawKey) -> Result<(), Error> {
    let name = k.name.get_ref();
    if w.key_by_name(name).is_some() {
        return Err(c.err(
            k.name.span(),
            format!("a key called \"{name}\" already exists"),
        ));
    }
    if KeySpec::parse(name).is_some() || name.parse::<i64>().is_ok() || name.contains(':') {
        return Err(c.err(
            k.name.span(),
            format!("key name \"{name}\" must not be a number, an @ shorthand or contain ':'"),
        ));
    }
    Ok(())
}

/// The key's owner and group: given, or the first named process's fsuid/fsgid, or those of
/// the keyring it is placed in.
fn key_owner(
    c: &Ctx,
    w: &World,
    k: &RawKey,
    kspan: Range<usize>,
    at: &[String],
    install: &[String],
) -> Result<(Kuid, Kgid), Error> {
    let name = k.name.get_ref();
    // The first process named decides the default numbering and owner.
    let first_proc = at
        .iter()
        .chain(install.iter())
        .filter_map(|p| p.split_once(':').map(|(a, _)| a.trim().to_string()))
        .find_map(|p| w.task_by_name(&p));
    let ns = match (&k.ns, first_proc) {
        (Some(n), _) => ns_ref(c, w, n)?,
        (None, Some(t)) => w.task(t).cred.user_ns,
        (None, None) => w.init_ns(),
    };
    // A key placed in another declared keyring defaults to that keyring's owner and group.
    let parent_key = at
        .iter()
        .filter(|a| !a.contains(':'))
        .find_map(|a| w.key_by_name(a.trim()));
    let uid = match (&k.owner, first_proc) {
        (Some(v), _) => Kuid(resolve_id(c, w, v, ns, true, "owner")?),
        (None, Some(t)) => w.task(t).cred.fsuid,
        (None, None) if parent_key.is_some() => w.key(parent_key.expect("checked")).uid,
        (None, None) => {
            return Err(c.err(kspan, format!("key \"{name}\" needs an `owner`")));
        }
    };
    let gid = match (&k.group, first_proc) {
        (Some(v), _) if matches!(v.get_ref(), RawId::Num(-1)) => Kgid::INVALID,
        (Some(v), _) => Kgid(resolve_id(c, w, v, ns, false, "group")?),
        (None, Some(t)) => w.task(t).cred.fsgid,
        (None, None) if parent_key.is_some() => w.key(parent_key.expect("checked")).gid,
        (None, None) => {
            return Err(c.err(
                kspan,
                format!("key \"{name}\" needs a `group` (-1 for none)"),
            ));
        }
    };
    Ok((uid, gid))
}

/// `install = "PROCESS:thread|process|session"`: the key becomes that keyring of the process.
fn install_key(
    c: &Ctx,
    w: &mut World,
    key: KeyRef,
    i: &str,
    in_span: Range<usize>,
) -> Result<(), Error> {
    let bad = || {
        c.err(
            in_span.clone(),
            format!("install \"{i}\": write \"PROCESS:thread\", \"PROCESS:process\" or \"PROCESS:session\""),
        )
    };
    let (p, sl) = i.split_once(':').ok_or_else(bad)?;
    let t = w
        .task_by_name(p.trim())
        .ok_or_else(|| c.err(in_span.clone(), format!("no process called \"{p}\"")))?;
    let spec = match slot(sl.trim()) {
        Some(s @ (KeySpec::Thread | KeySpec::Process | KeySpec::Session)) => s,
        _ => return Err(bad()),
    };
    w.install_keyring(t, spec, key)
        .map_err(|e| c.model(in_span.clone(), e))?;
    Ok(())
}

/// The keyring an `at` entry names: a declared keyring, `PROCESS:SLOT`, or
/// `NAMESPACE:UID:user|user_session`.
fn at_keyring(c: &Ctx, w: &mut World, a: &str, at_span: Range<usize>) -> Result<KeyRef, Error> {
    let parts: Vec<&str> = a.split(':').map(str::trim).collect();
    let ring = match parts.as_slice() {
        [kname] => {
            let r = w.key_by_name(kname).ok_or_else(|| {
                c.err(
                    at_span.clone(),
                    format!("no key called \"{kname}\" (declare keyrings before what they hold)"),
                )
            })?;
            r
        }
        [p, sl] => {
            let t = w
                .task_by_name(p)
                .ok_or_else(|| c.err(at_span.clone(), format!("no process called \"{p}\"")))?;
            let spec = slot(sl).ok_or_else(|| {
                c.err(
                    at_span.clone(),
                    format!(
                        "at \"{a}\": the keyring is thread, process, session, user or user_session"
                    ),
                )
            })?;
            w.task_keyring(t, spec)
                .map_err(|e| c.model(at_span.clone(), e))?
        }
        [n, u, sl] => {
            let nsr = w
                .ns_by_name(n)
                .ok_or_else(|| c.err(at_span.clone(), format!("no namespace called \"{n}\"")))?;
            let uid: u32 = u
                .parse()
                .map_err(|_| c.err(at_span.clone(), format!("at \"{a}\": \"{u}\" is not a uid")))?;
            let ku = w.make_kuid(nsr, uid);
            if !ku.is_valid() {
                return Err(c.err(
                    at_span.clone(),
                    format!("uid {uid} is not mapped in \"{n}\""),
                ));
            }
            let (ur, us) = w
                .user_keyrings(nsr, ku)
                .map_err(|e| c.model(at_span.clone(), e))?;
            match *sl {
                "user" => ur,
                "user_session" => us,
                _ => {
                    return Err(c.err(
                        at_span.clone(),
                        format!("at \"{a}\": NAMESPACE:UID: takes user or user_session"),
                    ))
                }
            }
        }
        _ => {
            return Err(c.err(
                at_span.clone(),
                format!(
                "at \"{a}\": write a keyring's name, \"PROCESS:SLOT\" or \"NAMESPACE:UID:user\""
            ),
            ))
        }
    };
    Ok(ring)
}
