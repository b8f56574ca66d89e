//! Container keyrings: the keyring `_container` of each allocation that asked for one, owned by
//! the allocation's owner, which `credns run` links into the container's session keyring.
//!
//! The daemon keeps them alive between runs in root's user keyring (which lives as long as the
//! host): a holder keyring `credns:MNT:DEV:INO:PATH` (one per store: PATH the store's absolute
//! path, DEV and INO its file's, MNT the mount namespace it was seen in, so that a test's store
//! never meets the host's even at the same path), holding for allocation N a keyring
//! `credns.N`, holding `_container`. A holder goes when its last allocation's keyrings go, and
//! a holder of a store that no longer exists (seen from the same mount namespace), or made in
//! a mount namespace where no process lives any more, is dropped when a daemon starts or a
//! command opens a store directly. Lookups
//! search by those descriptions: the kernel is the record, nothing is stored beside the lease.
//! A release invalidates `credns.N` and `_container` (the kernel then drops what only they
//! held). The daemon acts on a container keyring with its thread's fsuid set to the owner's,
//! because after the chown the owner's class of the mask is what grants root access (key
//! permissions ignore capabilities, and the daemon may not possess the holder).

use std::path::Path;
use std::sync::Mutex;

use credns_registry::routes::{Glob, KeyRoute};
use credns_registry::Selector;
use credns_sys::keys::session::{self, perm, CONTAINER_PERM};
use credns_sys::keys::{self, KeySerial, KEY_SPEC_USER_KEYRING};
use credns_sys::Errno;
use credns_varlink::ErrorReply;
use serde_json::{json, Value};

use crate::errors::{invalid, registry_error};
use crate::methods::{Caller, Methods};
use crate::params::{AddKeyRouteParams, RemoveKeyRouteParams, TargetParams};

/// Holder and per-allocation keyrings: root's, every right to their owner (root without
/// possession), none to anyone else.
const HOLDER_PERM: u32 = 0x3f3f_0000;

/// The description of the container keyring, as a container sees it.
pub const CONTAINER_KEYRING: &str = "_container";

/// The description of the copy of an allocation's routes kept in its `credns.N` keyring for
/// upcalls (the `KeyRoutes` reply as JSON), root's alone.
pub const ROUTES_COPY: &str = "credns.routes";

/// The largest `user` key payload: a longer copy is not kept (upcalls then ask the daemon).
const MAX_USER_PAYLOAD: usize = 32767;

/// Where a daemon (or a direct-path command) keeps container keyrings.
#[derive(Debug)]
pub(crate) struct KeyHome {
    /// The store's absolute path.
    store: std::path::PathBuf,
    /// One maker at a time: two workers must not both make a holder or a slot.
    lock: Mutex<()>,
}

/// This thread's fsuid set to `uid` until dropped.
struct AsOwner(u32);

impl AsOwner {
    fn new(uid: u32) -> Result<Self, Errno> {
        Ok(AsOwner(session::set_thread_fsuid(uid)?))
    }
}

impl Drop for AsOwner {
    fn drop(&mut self) {
        let _ = session::set_thread_fsuid(self.0);
    }
}

/// This process's mount namespace, as its nsfs inode (0 if unknown: never swept then).
fn mount_ns() -> String {
    std::fs::read_link("/proc/self/ns/mnt")
        .ok()
        .and_then(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("mnt:[")?.strip_suffix(']')?.to_string())
        })
        .unwrap_or_else(|| "0".into())
}

/// A search's answer: not found is `None`. A search that met only a key being collected (an
/// invalidated keyring the garbage collector has not unlinked yet) says EKEYREVOKED: not found
/// either.
fn found(r: Result<KeySerial, Errno>) -> Result<Option<KeySerial>, Errno> {
    match r {
        Ok(s) => Ok(Some(s)),
        Err(e)
            if [
                Errno::NOKEY,
                Errno::NOENT,
                Errno::KEYREVOKED,
                Errno::KEYEXPIRED,
            ]
            .contains(&e) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

impl KeyHome {
    /// The keyrings of the registry kept at `store`.
    pub(crate) fn new(store: &Path) -> Self {
        // Absolute, so that the name means one store whatever the directory it is read from.
        let store = std::fs::canonicalize(store)
            .or_else(|_| std::path::absolute(store))
            .unwrap_or_else(|_| store.to_path_buf());
        KeyHome {
            store,
            lock: Mutex::new(()),
        }
    }

    /// The holder's description, from the store file as it is now.
    fn holder(&self) -> Result<String, Errno> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&self.store).map_err(|_| Errno::NOENT)?;
        Ok(format!(
            "credns:{}:{}:{}:{}",
            mount_ns(),
            m.dev(),
            m.ino(),
            self.store.display()
        ))
    }

    fn slot_name(alloc: u64) -> String {
        format!("credns.{alloc}")
    }

    /// The keyring `desc` in `parent`, made if `create`; and whether it was made now.
    fn find_or_make(
        &self,
        parent: KeySerial,
        desc: &str,
        create: bool,
    ) -> Result<Option<(KeySerial, bool)>, Errno> {
        match found(keys::search(parent, "keyring", desc))? {
            Some(s) => Ok(Some((s, false))),
            None if create => {
                let s = keys::add_key("keyring", desc, &[], parent)?;
                keys::setperm(s, HOLDER_PERM)?;
                Ok(Some((s, true)))
            }
            None => Ok(None),
        }
    }

    /// Allocation `alloc`'s keyring `credns.N`, and whether it was made now.
    fn slot(&self, alloc: u64, create: bool) -> Result<Option<(KeySerial, bool)>, Errno> {
        let Some((h, _)) = self.find_or_make(KEY_SPEC_USER_KEYRING, &self.holder()?, create)?
        else {
            return Ok(None);
        };
        self.find_or_make(h, &Self::slot_name(alloc), create)
    }

    /// The container keyring of allocation `alloc` owned by `owner`; made if `create`.
    pub(crate) fn container(
        &self,
        alloc: u64,
        owner: u32,
        create: bool,
    ) -> Result<Option<KeySerial>, Errno> {
        let _one = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let Some((slot, new)) = self.slot(alloc, create)? else {
            return Ok(None);
        };
        // A slot made now holds nothing yet.
        let listed = match new {
            true => Vec::new(),
            false => keys::session::keyring_serials(&keys::read(slot)?),
        };
        if !listed.is_empty() {
            let _as = AsOwner::new(owner)?;
            for s in listed {
                match session::describe_key(s) {
                    Ok(d) if d.ktype == "keyring" && d.description == CONTAINER_KEYRING => {
                        return Ok(Some(s))
                    }
                    _ => {}
                }
            }
        }
        if !create {
            return Ok(None);
        }
        let c = keys::add_key("keyring", CONTAINER_KEYRING, &[], slot)?;
        let made =
            keys::setperm(c, CONTAINER_PERM).and_then(|()| keys::chown(c, Some(owner), None));
        if let Err(e) = made {
            let _ = keys::invalidate(c);
            return Err(e);
        }
        Ok(Some(c))
    }

    /// Allocation `alloc` was released: its keyrings are invalidated (best effort: a key the
    /// daemon cannot reach any more cannot be found through it either).
    pub(crate) fn released(&self, alloc: u64, owner: u32) {
        let _one = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let Ok(name) = self.holder() else { return };
        let Ok(Some(holder)) = found(keys::search(KEY_SPEC_USER_KEYRING, "keyring", &name)) else {
            return;
        };
        let Ok(Some(slot)) = found(keys::search(holder, "keyring", &Self::slot_name(alloc))) else {
            return;
        };
        if let Ok(listed) = keys::read(slot) {
            if let Ok(_as) = AsOwner::new(owner) {
                for s in keys::session::keyring_serials(&listed) {
                    let _ = keys::invalidate(s);
                }
            }
        }
        let _ = keys::invalidate(slot);
        // The holder goes with its last allocation's keyrings: nothing of a store whose
        // containers are all gone is left in root's user keyring.
        let rest = keys::read(holder).map(|l| session::keyring_serials(&l));
        if rest.is_ok_and(|r| r.iter().all(|s| *s == slot)) {
            let _ = keys::invalidate(holder);
        }
    }

    /// Keep allocation `alloc`'s copy of its routes current in its `credns.N` keyring (when it
    /// has one): `copy` written, or with `None` removed. Best effort: without a copy, an upcall
    /// asks the daemon.
    pub(crate) fn keep_routes_copy(&self, alloc: u64, copy: Option<&[u8]>) {
        let _one = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let Ok(Some((slot, _))) = self.slot(alloc, false) else {
            return;
        };
        match copy.filter(|c| c.len() <= MAX_USER_PAYLOAD) {
            // add_key replaces the payload of a key of the same description in the keyring.
            Some(c) => match keys::add_key("user", ROUTES_COPY, c, slot) {
                Ok(k) => {
                    if keys::setperm(k, perm::ALL << perm::USR).is_err() {
                        let _ = keys::invalidate(k);
                    }
                }
                Err(_) => self.drop_routes_copy(slot),
            },
            None => self.drop_routes_copy(slot),
        }
    }

    /// Invalidate the copy of the routes directly in `slot` (not searching below it).
    fn drop_routes_copy(&self, slot: KeySerial) {
        let Ok(listed) = keys::read(slot) else { return };
        for s in session::keyring_serials(&listed) {
            if let Ok(d) = session::describe_key(s) {
                if d.ktype == "user" && d.uid == 0 && d.description == ROUTES_COPY {
                    let _ = keys::invalidate(s);
                }
            }
        }
    }

    /// Invalidate the holders of stores that no longer exist (what a removed store, such as a
    /// test's, left in root's user keyring). Best effort.
    pub(crate) fn sweep(&self, procfs: &credns_sys::ProcFs) {
        let _one = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let Ok(listed) = keys::read(KEY_SPEC_USER_KEYRING) else {
            return;
        };
        let here = mount_ns();
        // Mount namespaces some process lives in: a holder made in another one (a test's
        // private namespace, gone) names a store no one can reach any more.
        // (Scanned only when a holder from another namespace is met.)
        let mut live: Option<std::collections::HashSet<String>> = None;
        let mut lives = |mnt: &str| {
            let set = live.get_or_insert_with(|| {
                let pids = procfs.pids().unwrap_or_default();
                pids.into_iter()
                    .filter_map(|p| procfs.mount_ns_inode(p).ok())
                    .map(|i| i.to_string())
                    .collect()
            });
            // Not knowing is living: nothing is swept on a failed scan.
            set.is_empty() || set.contains(mnt)
        };
        for s in session::keyring_serials(&listed) {
            let Ok(d) = session::describe_key(s) else {
                continue;
            };
            let Some(rest) = d.description.strip_prefix("credns:") else {
                continue;
            };
            let mut f = rest.splitn(4, ':');
            let (Some(mnt), Some(_), Some(_), Some(path)) =
                (f.next(), f.next(), f.next(), f.next())
            else {
                continue;
            };
            let unreachable = match mnt == here {
                true => !Path::new(path).exists(),
                false => mnt != "0" && !lives(mnt),
            };
            if d.ktype == "keyring" && d.uid == 0 && unreachable {
                let _ = keys::invalidate(s);
            }
        }
    }
}

impl crate::methods::Methods {
    /// The container keyring of `a`, made if `create`.
    pub(crate) fn container_keyring(
        &self,
        a: &credns_registry::Allocation,
        create: bool,
    ) -> Result<KeySerial, credns_varlink::ErrorReply> {
        match self.keys.container(a.id.0, a.owner, create) {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Err(crate::errors::not_found(&format!(
                "container keyring of allocation {} (run a container in it first, or pass create)",
                a.id
            ))),
            Err(e) if e == Errno::DQUOT => Err(crate::errors::internal(format!(
                "container keyring of allocation {}: uid {}'s key quota is used up (see \
                 /proc/key-users); free keys, or run with --no-keyring",
                a.id, a.owner
            ))),
            Err(e) => Err(crate::errors::internal(format!(
                "container keyring of allocation {}: {e}",
                a.id
            ))),
        }
    }

    /// Keep the copy of `a`'s routes in its keyring current (see [`KeyHome::keep_routes_copy`]).
    pub(crate) fn keep_routes_copy(
        &self,
        reg: &credns_registry::Registry,
        a: &credns_registry::Allocation,
    ) {
        let copy = (!a.key_routes.is_empty()).then(|| {
            let mut v = routes_reply(&a.key_routes);
            v["allocation"] = json!(crate::convert::allocation(reg, a));
            serde_json::to_vec(&v).unwrap_or_default()
        });
        self.keys.keep_routes_copy(a.id.0, copy.as_deref());
    }

    /// The container keyring of an allocation `Allocate` just gave, made outside the registry's
    /// lock (other calls need not wait for it). A fresh allocation whose keyring cannot be made
    /// is released again; an allocation released meanwhile takes its keyring along.
    pub(crate) fn keyring_for_new(
        &self,
        a: &credns_registry::Allocation,
        fresh: bool,
    ) -> Result<KeySerial, ErrorReply> {
        let made = self.container_keyring(a, true);
        let gone = self
            .cell
            .peek(|reg| reg.get(&Selector::Id(a.id)).is_none())
            .unwrap_or(false);
        if made.is_err() && fresh || gone {
            self.keys.released(a.id.0, a.owner);
        } else if made.is_ok() && !a.key_routes.is_empty() {
            let _ = self.read_registry(|reg| {
                self.keep_routes_copy(reg, a);
                Ok(())
            });
        }
        if made.is_err() && fresh && !gone {
            let root = Caller {
                uid: 0,
                pid: credns_sys::Pid::this(),
            };
            let target = TargetParams {
                id: Some(a.id.0),
                name: None,
            };
            self.release(root, target)?;
        }
        made
    }

    /// `Keyring`: the container keyring of an allocation the caller may see.
    pub(crate) fn keyring(
        &self,
        caller: crate::methods::Caller,
        p: crate::params::KeyringParams,
    ) -> Result<serde_json::Value, credns_varlink::ErrorReply> {
        let target = crate::params::TargetParams {
            id: p.id,
            name: p.name,
        };
        self.read_registry(|reg| {
            let a = Self::target(caller, &target, reg)?;
            let serial = self.container_keyring(a, p.create)?;
            if p.create {
                self.keep_routes_copy(reg, a);
            }
            Ok(serde_json::json!({
                "keyring": serial,
                "allocation": crate::convert::allocation(reg, a),
            }))
        })
    }
}

/// A route from the wire, checked.
fn route_from(r: credns_api::registry::KeyRouteInfo) -> Result<KeyRoute, ErrorReply> {
    let glob = |field: &str, s: &str| {
        Glob::parse(s).map_err(|why| invalid("route", format!("{field} pattern {s:?}: {why}")))
    };
    let route = KeyRoute {
        description: glob("description", &r.description)?,
        callout: glob("callout", &r.callout)?,
        key_type: r.key_type,
        handler: r.handler,
        inside: r.inside,
        timeout: r.timeout,
    };
    route.check().map_err(|e| invalid("route", e.to_string()))?;
    Ok(route)
}

fn route_info(r: &KeyRoute) -> credns_api::registry::KeyRouteInfo {
    credns_api::registry::KeyRouteInfo {
        key_type: r.key_type.clone(),
        description: r.description.as_str().to_string(),
        callout: r.callout.as_str().to_string(),
        handler: r.handler.clone(),
        inside: r.inside,
        timeout: r.timeout,
    }
}

fn routes_reply(routes: &[KeyRoute]) -> Value {
    let v: Vec<_> = routes.iter().map(route_info).collect();
    json!({ "routes": v })
}

impl Methods {
    /// `KeyRoutes`.
    pub(crate) fn key_routes(&self, caller: Caller, p: TargetParams) -> Result<Value, ErrorReply> {
        self.read_registry(|reg| {
            let a = Self::target(caller, &p, reg)?;
            let mut v = routes_reply(&a.key_routes);
            v["allocation"] = json!(crate::convert::allocation(reg, a));
            Ok(v)
        })
    }

    /// Change the routes of the allocation `target` names by `f`, durably.
    fn change_routes(
        &self,
        caller: Caller,
        target: TargetParams,
        f: impl FnOnce(&mut Vec<KeyRoute>) -> Result<(), ErrorReply>,
    ) -> Result<Value, ErrorReply> {
        self.write_registry(|reg| {
            let a = Self::target(caller, &target, reg)?;
            let id = a.id;
            let mut routes = a.key_routes.clone();
            f(&mut routes)?;
            let a = reg
                .set_key_routes(&Selector::Id(id), routes)
                .map_err(registry_error)?;
            self.keep_routes_copy(reg, &a);
            Ok(routes_reply(&a.key_routes))
        })
    }

    /// `AddKeyRoute`.
    pub(crate) fn add_key_route(
        &self,
        caller: Caller,
        p: AddKeyRouteParams,
    ) -> Result<Value, ErrorReply> {
        let route = route_from(p.route)?;
        let target = TargetParams {
            id: p.id,
            name: p.name,
        };
        self.change_routes(caller, target, |routes| {
            routes.push(route);
            Ok(())
        })
    }

    /// `RemoveKeyRoute`.
    pub(crate) fn remove_key_route(
        &self,
        caller: Caller,
        p: RemoveKeyRouteParams,
    ) -> Result<Value, ErrorReply> {
        let target = TargetParams {
            id: p.id,
            name: p.name,
        };
        self.change_routes(caller, target, |routes| {
            let n = routes.len();
            let i = usize::try_from(p.index)
                .ok()
                .filter(|i| *i < n)
                .ok_or_else(|| {
                    invalid(
                        "index",
                        format!("no route {} (the allocation has {n})", p.index),
                    )
                })?;
            routes.remove(i);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A search that met a keyring the garbage collector has marked dead but not unlinked yet
    /// says EKEYREVOKED (seen between back-to-back runs, when a release had just invalidated a
    /// store's holder): that is "not there", not a failure.
    #[test]
    fn keys_being_collected_are_not_found() {
        for e in [
            Errno::NOKEY,
            Errno::NOENT,
            Errno::KEYREVOKED,
            Errno::KEYEXPIRED,
        ] {
            assert_eq!(found(Err(e)), Ok(None), "{e:?}");
        }
        assert_eq!(found(Ok(7)), Ok(Some(7)));
        assert_eq!(found(Err(Errno::ACCESS)), Err(Errno::ACCESS));
    }
}
