//! `isolated_userns` (seed 004, Graber and Brauner, LPC 2021): a user namespace with the full
//! uid/gid range that is "still technically using completely distinct kuid/kgid from everything
//! else", relying on VFS shifting (idmapped mounts) for data outside it.
//!
//! Representation (choice): the model's kernel ids are the kernel's 32-bit ones, so the i-th
//! isolated namespace owns the kernel ids `ISOLATED_BASE + i * ISOLATED_BAND ..`, and its map
//! sends its ids `0 .. ISOLATED_BAND` there (the first 16777216 of the full range; higher ids
//! are not represented). The proposal's rule is that those kernel ids exist only inside the
//! namespace: from anywhere else they have no mapping, whatever the maps say.

use credns_idmap::{Extent, IdMap};

use crate::caps::Cap;
use crate::outcome::Tracer;
use crate::vfs::Stop;
use crate::world::{Cred, NsRef, World};
use credns_idmap::Errno;

use super::Rules;

/// The first kernel id of the first isolated namespace (2^31: the half of the id space some
/// subsystems treat as negative, which no host id uses).
pub const ISOLATED_BASE: u32 = 0x8000_0000;
/// How many ids of an isolated namespace the model represents.
pub const ISOLATED_BAND: u32 = 1 << 24;
/// How many isolated namespaces fit below the invalid id (u32::MAX).
pub const ISOLATED_MAX: usize = 127;

/// The isolated namespace owning kernel id `k`, if any.
fn owner_of(w: &World, k: u32) -> Option<NsRef> {
    let i = k.checked_sub(ISOLATED_BASE)? / ISOLATED_BAND;
    w.decl.isolated.get(i as usize).copied()
}

/// The kernel form of an isolated namespace's map: its ids onto its own band.
pub(crate) fn band_map(w: &World, ns: NsRef) -> Option<IdMap> {
    let i = w.decl.isolated.iter().position(|n| *n == ns)? as u32;
    IdMap::new(vec![Extent::new(
        0,
        ISOLATED_BASE + i * ISOLATED_BAND,
        ISOLATED_BAND,
    )])
    .ok()
}

/// The full range, the one map an isolated namespace takes.
pub(crate) fn is_full_range(text: &str) -> bool {
    credns_idmap::parse_write(text.as_bytes())
        .map(|e| e.len() == 1 && e[0].first == 0 && e[0].lower_first == 0 && e[0].count == u32::MAX)
        .unwrap_or(false)
}

pub(super) struct IsolatedUserns;

impl Rules for IsolatedUserns {
    /// IS2 "using completely distinct kuid/kgid from everything else": an isolated
    /// namespace's kernel ids are mapped in it and its descendants only. So on host resources
    /// its processes count as unmapped ("other" bits, no DAC override, no signals by uid), a
    /// file on a filesystem outside it cannot get their ids (EOVERFLOW), and seen from
    /// outside they show as the overflow id (choice, for the seed's open question).
    fn id_hidden(&self, w: &World, ns: NsRef, k: u32) -> Option<bool> {
        let owner = owner_of(w, k)?;
        Some(!w.in_userns(owner, ns))
    }

    /// IS1 "allow for user namespaces that have access to the full uid/gid range (uint32)"
    /// without "coordination on uid/gid range ownership": the uid or gid map of an isolated
    /// namespace is the full range "0 0 4294967295", written once by a writer with
    /// CAP_SYS_ADMIN over the namespace (its owner has it), no subordinate ids needed.
    /// Choice: no other map is taken.
    fn write_map(
        &self,
        w: &World,
        t: &mut Tracer,
        cred: &Cred,
        ns: NsRef,
        uid: bool,
        text: &str,
    ) -> Option<Result<IdMap, Stop>> {
        let map = band_map(w, ns)?;
        let f = "isolated_userns:map_write";
        let n = w.ns(ns);
        let written = if uid {
            !n.uid_map.is_empty()
        } else {
            !n.gid_map.is_empty()
        };
        if written {
            tr!(t.fail(f, "the map was written already", vec![]));
            return Some(Err(Errno::EPERM.into()));
        }
        let admin = t.nested(|t| w.cap_capable(t, cred, ns, Cap::SYS_ADMIN));
        if !admin {
            return Some(Err(Errno::EPERM.into()));
        }
        if !tr!(t.check(
            is_full_range(text),
            f,
            format!("[004] \"{}\" is isolated: its map is the full range \"0 0 4294967295\", onto kernel ids of its own", n.name),
            vec![("text", text.trim().to_string())],
        )) {
            return Some(Err(Errno::EPERM.into()));
        }
        tr!(t.info(
            f,
            "the namespace's ids 0.. are the kernel ids of its own band (the model represents 16777216 of them)",
            vec![("kernel_map", map.to_write_format().trim_end().to_string())],
        ));
        Some(Ok(map))
    }
}
