//! The declarations of the proposals (docs/semantics.md): `[settings] semantics`, CAP_HOST_ADMIN
//! and `cap_bset` on processes, keychains, fsid maps on namespaces, inode namespaces on files,
//! key ACLs and container objects. Each is refused, with its position, in a file whose
//! semantics do not name its proposal.

use credns_idmap::IdMap;
use toml::Spanned;

use super::raw::*;
use crate::caps::CapSet;
use crate::semantics::{Ace, ContainerObj, FsidMaps, Proposal, Semantics};
use crate::world::{InodeRef, NsRef, TaskRef, World};
use crate::Error;

/// `[settings] semantics = ["mainline", "host_admin", …]`; mainline when absent.
pub(super) fn semantics(c: &Ctx, s: Option<&RawSettings>) -> Result<Semantics, Error> {
    let Some(list) = s.and_then(|s| s.semantics.as_ref()) else {
        return Ok(Semantics::MAINLINE);
    };
    let mut sem = Semantics::MAINLINE;
    for name in list.get_ref() {
        sem = sem
            .add_name(name.get_ref())
            .map_err(|m| c.err(name.span(), m))?;
    }
    sem.check_needs().map_err(|m| c.err(list.span(), m))?;
    Ok(sem)
}

/// fsid_map: a namespace's fs maps in kernel form. The written fs map (or, when only the
/// other one is given, the id map it mirrors, as v3's ordering rule copies it) composed with
/// the parent's fs map; namespaces under one with fs maps get them too.
pub(super) fn declare_fsid_maps(c: &Ctx, w: &mut World, n: &RawNs, r: NsRef) -> Result<(), Error> {
    for m in [&n.fsuid_map, &n.fsgid_map].into_iter().flatten() {
        c.need(Proposal::FsidMap, m.span(), "an fsid map")?;
    }
    let parent = w.ns(r).parent.unwrap_or(w.init_ns());
    let inherited = w.declarations().fsid.contains_key(&parent);
    if n.fsuid_map.is_none() && n.fsgid_map.is_none() && !inherited {
        return Ok(());
    }
    let one = |fs: &Option<Spanned<String>>, id: &Option<Spanned<String>>, uid: bool| {
        let (text, span) = match (fs, id) {
            (Some(f), _) => (f.get_ref().clone(), f.span()),
            (None, Some(i)) => (i.get_ref().clone(), i.span()),
            (None, None) => return Ok(IdMap::empty()),
        };
        let what = if uid { "fsuid_map" } else { "fsgid_map" };
        let ext = credns_idmap::parse_write(text.as_bytes())
            .map_err(|e| c.err(span.clone(), format!("{what}: {e}")))?;
        let written = IdMap::new(ext).map_err(|e| c.err(span.clone(), format!("{what}: {e}")))?;
        let pmap = match w.declarations().fsid.get(&parent) {
            Some(f) if uid => f.uid.clone(),
            Some(f) => f.gid.clone(),
            None if uid => w.ns(parent).uid_map.clone(),
            None => w.ns(parent).gid_map.clone(),
        };
        written
            .compose_strict(&pmap)
            .map_err(|e| c.err(span, format!("{what}: {e}")))
    };
    let uid = one(&n.fsuid_map, &n.uid_map, true)?;
    let gid = one(&n.fsgid_map, &n.gid_map, false)?;
    w.declarations_mut().fsid.insert(r, FsidMaps { uid, gid });
    Ok(())
}

/// inode_userns: `userns = "NS"` on a file.
pub(super) fn declare_inode_userns(
    c: &Ctx,
    w: &mut World,
    f: &RawFile,
    ino: InodeRef,
) -> Result<(), Error> {
    if let Some(n) = &f.userns {
        c.need(Proposal::InodeUserns, n.span(), "`userns` on a file")?;
        let ns = ns_ref(c, w, n)?;
        w.declarations_mut().inode_ns.insert(ino, ns);
    }
    Ok(())
}

/// A process's proposal declarations: CAP_HOST_ADMIN (named in `caps`/`effective`, or by
/// default for a root of the initial namespace whose capabilities are not given), `cap_bset`,
/// `keychain`, `container`. `defaulted`: its capability sets were not given.
pub(super) fn declare_process(
    c: &Ctx,
    w: &mut World,
    p: &RawProcess,
    t: TaskRef,
    defaulted: bool,
) -> Result<(), Error> {
    let ns = w.task(t).cred.user_ns;
    let init = ns == w.init_ns();
    let named = [&p.caps, &p.effective]
        .into_iter()
        .flatten()
        .any(|s| mentions_host_admin(s.get_ref()));
    let eff = named
        || (defaulted && init && c.sem.has(Proposal::HostAdmin) && {
            let cr = &w.task(t).cred;
            cr.cap_effective == CapSet::FULL
        });
    // HA5 (001 §2) "start a container with cap-bset not containing CAP_HOST_ADMIN": by
    // default only processes of the initial namespace have it in their cap_bset (choice).
    let bset = match &p.cap_bset {
        Some(b) => {
            c.need(Proposal::HostAdmin, b.span(), "`cap_bset`")?;
            if p.bounding.is_some() {
                return Err(c.err(b.span(), "give `cap_bset` or `bounding`, not both"));
            }
            w.task_mut(t).cred.cap_bset = capset(c, b)?;
            mentions_host_admin(b.get_ref())
        }
        None => init,
    };
    w.task_mut(t).cred.host_admin = eff && bset;
    if let Some(kc) = &p.keychain {
        let mut creds = Vec::new();
        for e in kc {
            c.need(Proposal::Keychain, e.span(), "a keychain")?;
            creds.push(keychain_entry(c, w, e)?);
        }
        w.task_mut(t).cred.keychain = creds;
    }
    Ok(())
}

/// `container = "NAME"` on a process: it is a denizen of that container.
pub(super) fn declare_denizen(c: &Ctx, w: &mut World, p: &RawProcess) -> Result<(), Error> {
    let t = w.task_by_name(p.name.get_ref()).expect("declared");
    if let Some(name) = &p.container {
        if !c.sem.has(Proposal::KeyAcl) {
            c.need(Proposal::Container, name.span(), "`container` on a process")?;
        }
        let i = container_index(w, name.get_ref()).ok_or_else(|| {
            c.err(
                name.span(),
                format!("no container called \"{}\"", name.get_ref()),
            )
        })?;
        w.declarations_mut().task_container.insert(t, i);
    }
    Ok(())
}

/// `"NAMESPACE:UID"`: a credential as uid UID of that namespace.
fn keychain_entry(c: &Ctx, w: &World, e: &Spanned<String>) -> Result<(NsRef, u32), Error> {
    let s = e.get_ref();
    let bad = || {
        c.err(
            e.span(),
            format!("keychain entry \"{s}\": write \"NAMESPACE:UID\", e.g. \"ns1:501\""),
        )
    };
    let (n, u) = s.split_once(':').ok_or_else(bad)?;
    let ns = w.ns_by_name(n.trim()).ok_or_else(|| {
        c.err(
            e.span(),
            format!(
                "keychain entry \"{s}\": no namespace called \"{}\"",
                n.trim()
            ),
        )
    })?;
    let uid: u32 = u.trim().parse().map_err(|_| bad())?;
    if !w.make_kuid(ns, uid).is_valid() {
        return Err(c.err(
            e.span(),
            format!(
                "keychain entry \"{s}\": uid {uid} is not mapped in \"{}\"",
                n.trim()
            ),
        ));
    }
    Ok((ns, uid))
}

fn container_index(w: &World, name: &str) -> Option<usize> {
    w.declarations()
        .containers
        .iter()
        .position(|x| x.name == name)
}

/// `[[container]]`: name, keyring (a declared key), intercept filters `"TYPE:KEYRING"`.
pub(super) fn declare_container(
    c: &Ctx,
    w: &mut World,
    ct: &Spanned<RawContainer>,
) -> Result<(), Error> {
    let r = ct.get_ref();
    if !c.sem.has(Proposal::KeyAcl) {
        c.need(Proposal::Container, ct.span(), "a [[container]]")?;
    }
    let name = r.name.get_ref().trim().to_string();
    if name.is_empty() || container_index(w, &name).is_some() {
        return Err(c.err(
            r.name.span(),
            format!("container name \"{name}\" is empty or already used"),
        ));
    }
    let keyring = match &r.keyring {
        Some(k) => {
            c.need(Proposal::Container, k.span(), "a container keyring")?;
            Some(keyring_ref(c, w, k)?)
        }
        None => None,
    };
    let mut intercept: Vec<(String, crate::keys::KeyRef)> = Vec::new();
    for f in r.intercept.iter().flatten() {
        c.need(Proposal::Container, f.span(), "an intercept filter")?;
        let s = f.get_ref();
        let (ty, ring) = s.split_once(':').ok_or_else(|| {
            c.err(f.span(), format!("intercept \"{s}\": write \"TYPE:KEYRING\", e.g. \"user:upcall\" or \"*:upcall\""))
        })?;
        let ty = ty.trim();
        if ty.is_empty() || ty.len() > 31 {
            return Err(c.err(
                f.span(),
                format!("intercept \"{s}\": the type is 1 to 31 characters"),
            ));
        }
        if intercept.iter().any(|(t, _)| t == ty) {
            return Err(c.err(
                f.span(),
                format!("intercept \"{s}\": a filter for \"{ty}\" already exists (EEXIST)"),
            ));
        }
        let ring = keyring_ref(c, w, &Spanned::new(f.span(), ring.trim().to_string()))?;
        intercept.push((ty.to_string(), ring));
    }
    // "*" is kept after the specific filters.
    intercept.sort_by_key(|(t, _)| t == "*");
    w.declarations_mut().containers.push(ContainerObj {
        name,
        keyring,
        intercept,
    });
    Ok(())
}

fn keyring_ref(c: &Ctx, w: &World, k: &Spanned<String>) -> Result<crate::keys::KeyRef, Error> {
    let r = w
        .key_by_name(k.get_ref().trim())
        .ok_or_else(|| c.err(k.span(), format!("no key called \"{}\"", k.get_ref())))?;
    if !w.key(r).is_keyring() {
        return Err(c.err(k.span(), format!("\"{}\" is not a keyring", k.get_ref())));
    }
    Ok(r)
}

/// key_acl: `acl = ["possessor=all", "container:box=search", …]` on a `[[key]]`.
pub(super) fn declare_key_acl(c: &Ctx, w: &mut World, k: &RawKey) -> Result<(), Error> {
    let Some(list) = &k.acl else { return Ok(()) };
    c.need(Proposal::KeyAcl, list.span(), "a key ACL")?;
    let key = w
        .key_by_name(k.name.get_ref())
        .expect("the key was declared before its ACL");
    let mut acl: Vec<Ace> = Vec::new();
    for e in list.get_ref() {
        let ace =
            Ace::parse(e.get_ref(), |n| container_index(w, n)).map_err(|m| c.err(e.span(), m))?;
        if acl.iter().any(|a| a.subject == ace.subject) {
            return Err(c.err(
                e.span(),
                format!("ACE \"{}\": the subject already has an entry", e.get_ref()),
            ));
        }
        acl.push(ace);
    }
    // KEYCTL_GRANT_PERMISSION refuses more than 16 entries.
    if acl.len() > 16 {
        return Err(c.err(list.span(), "a key ACL has at most 16 entries (EINVAL)"));
    }
    w.declarations_mut().key_acl.insert(key, acl);
    Ok(())
}

/// isolated_userns: `isolated = true` on a namespace. Its maps, if given, must be the full
/// range, and are the kernel ids of its own band. Returns whether the namespace is isolated.
pub(super) fn declare_isolated(c: &Ctx, w: &mut World, n: &RawNs, r: NsRef) -> Result<bool, Error> {
    let Some(iso) = &n.isolated else {
        return Ok(false);
    };
    c.need(
        Proposal::IsolatedUserns,
        iso.span(),
        "`isolated` on a namespace",
    )?;
    if !*iso.get_ref() {
        return Ok(false);
    }
    if let Some(m) = n.fsuid_map.as_ref().or(n.fsgid_map.as_ref()) {
        return Err(c.err(
            m.span(),
            "an isolated namespace has no fsid maps (the model combines no two proposals' id maps)",
        ));
    }
    if w.declarations().isolated.len() >= crate::semantics::ISOLATED_MAX {
        return Err(c.err(
            iso.span(),
            format!(
                "the model has room for {} isolated namespaces (a band of kernel ids each)",
                crate::semantics::ISOLATED_MAX
            ),
        ));
    }
    w.declarations_mut().isolated.push(r);
    let band = crate::semantics::band_map(w, r).expect("just declared");
    for (m, uid) in [(&n.uid_map, true), (&n.gid_map, false)] {
        let Some(m) = m else { continue };
        if !crate::semantics::is_full_range(m.get_ref()) {
            return Err(c.err(
                m.span(),
                "the map of an isolated namespace is the full range \"0 0 4294967295\" (or not written yet)",
            ));
        }
        let ns = &mut w.namespaces[r.0];
        if uid {
            ns.uid_map = band.clone();
        } else {
            ns.gid_map = band.clone();
        }
    }
    Ok(true)
}
