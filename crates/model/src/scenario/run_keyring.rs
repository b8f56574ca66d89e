//! `[[run_keyring]]`: the keyrings `credns run` gives a container, declared in one table.
//!
//! What `credns run` builds (docs/ARCHITECTURE.md, "Keys"): the daemon keeps allocation N's
//! container keyring `_container` in root's user keyring, under a holder `credns:STORE` and a
//! keyring `credns.N` (both root's, mask 0x3f3f0000), owned by the allocation's owner (the
//! manager) with mask 0x0b3f0000 (possessors view, read, search; the owner all); `credns run`
//! makes the container's session keyring `_ses.credns.N`, the manager's, mask 0x0f0b0000
//! (possessors view, read, write, search; the owner view, read, search), links `_container` in
//! it and installs it as the container's first process's session keyring. The table declares
//! exactly that: keyrings `NAME.session` and `NAME.container`, so `[[key]]` tables put keys
//! `at = "NAME.container"` as `credns key add` and `credns key grant` do.

use serde::Deserialize;
use toml::Spanned;

use super::raw::Ctx;
use crate::keys::{KeyRef, KeySpec, KeyType};
use crate::world::World;
use crate::Error;
use credns_idmap::{Kgid, Kuid};

/// The holder and `credns.N` keyrings: root's, every right to their owner.
pub const HOLDER_PERM: u32 = 0x3f3f_0000;
/// `_container`: possessors view, read, search; the owner (the manager) all.
pub const CONTAINER_PERM: u32 = 0x0b3f_0000;
/// `_ses.credns.N`: possessors view, read, write, search; the owner view, read, search.
pub const RUN_SESSION_PERM: u32 = 0x0f0b_0000;

/// One `[[run_keyring]]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRunKeyring {
    name: Spanned<String>,
    allocation: u64,
    #[serde(default)]
    manager: u32,
    manager_group: Option<u32>,
    processes: Spanned<Vec<String>>,
    store: Option<String>,
}

/// Declare the keyrings of one container.
pub(super) fn declare_run_keyring(
    c: &Ctx,
    w: &mut World,
    r: &Spanned<RawRunKeyring>,
) -> Result<(), Error> {
    let raw = r.get_ref();
    let name = raw.name.get_ref();
    for suffix in ["session", "container"] {
        if w.key_by_name(&format!("{name}.{suffix}")).is_some() {
            return Err(c.err(
                raw.name.span(),
                format!("a key called \"{name}.{suffix}\" is already declared"),
            ));
        }
    }
    let model = |e| c.model(r.span(), e);
    let (mgr, mgr_group) = (
        Kuid(raw.manager),
        Kgid(raw.manager_group.unwrap_or(raw.manager)),
    );
    let n = raw.allocation;
    let init = w.init_ns();
    let root_user = w.user_keyrings(init, Kuid(0)).map_err(model)?.0;
    let store = raw
        .store
        .as_deref()
        .unwrap_or("/var/lib/credns/registry.redb");
    let ring = |w: &mut World, name: Option<&str>, desc: &str, uid, gid, perm| {
        w.alloc_key(name, KeyType::Keyring, desc, uid, gid, perm, &[])
    };
    let holder = ring(
        w,
        None,
        &format!("credns:{store}"),
        Kuid(0),
        Kgid(0),
        HOLDER_PERM,
    );
    let slot = ring(
        w,
        None,
        &format!("credns.{n}"),
        Kuid(0),
        Kgid(0),
        HOLDER_PERM,
    );
    // The daemon makes it as root and chowns its owner only: its group stays root's.
    let container = ring(
        w,
        Some(&format!("{name}.container")),
        "_container",
        mgr,
        Kgid(0),
        CONTAINER_PERM,
    );
    let session = ring(
        w,
        Some(&format!("{name}.session")),
        &format!("_ses.credns.{n}"),
        mgr,
        mgr_group,
        RUN_SESSION_PERM,
    );
    let links: [(KeyRef, KeyRef); 4] = [
        (root_user, holder),
        (holder, slot),
        (slot, container),
        (session, container),
    ];
    for (into, key) in links {
        w.link_key(into, key).map_err(model)?;
    }
    for p in raw.processes.get_ref() {
        let t = w
            .task_by_name(p)
            .ok_or_else(|| c.err(raw.processes.span(), format!("no process called \"{p}\"")))?;
        w.install_keyring(t, KeySpec::Session, session)
            .map_err(|e| c.model(raw.processes.span(), e))?;
    }
    Ok(())
}
