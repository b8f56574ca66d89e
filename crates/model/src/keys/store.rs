//! The key store: allocating keys, linking them, and the per-task and per-user keyrings
//! created on first use.

use std::collections::BTreeMap;

use credns_idmap::{Kgid, Kuid};

use crate::world::{NsRef, TaskRef, World};
use crate::Error;

/// `KEY_*_VIEW`: see the key's attributes.
use super::types::*;

/// The keys of a world, with the per-namespace user keyring registers.
#[derive(Clone, Debug, Default)]
pub(crate) struct KeyStore {
    pub(crate) keys: Vec<Key>,
    /// `user_ns->user_keyring_register` contents: (user keyring, user-session keyring) per
    /// (namespace, real kuid).
    pub(crate) user_keyrings: BTreeMap<(NsRef, Kuid), (KeyRef, KeyRef)>,
    /// The register keyring of each namespace (`.user_reg`).
    pub(crate) registers: BTreeMap<NsRef, KeyRef>,
}

const FIRST_SERIAL: i32 = 100_000_000;

impl World {
    /// A key.
    pub fn key(&self, k: KeyRef) -> &Key {
        &self.keys.keys[k.0]
    }

    /// A key, mutably (owner, permissions, payload).
    pub fn key_mut(&mut self, k: KeyRef) -> &mut Key {
        &mut self.keys.keys[k.0]
    }

    /// The key the scenario calls `name`.
    pub fn key_by_name(&self, name: &str) -> Option<KeyRef> {
        self.keys
            .keys
            .iter()
            .rposition(|k| k.name.as_deref() == Some(name))
            .map(KeyRef)
    }

    /// The key with this serial, if it was ever created.
    pub fn key_by_serial(&self, serial: i32) -> Option<KeyRef> {
        self.keys
            .keys
            .iter()
            .position(|k| k.serial == serial)
            .map(KeyRef)
    }

    /// Every key, in creation order.
    pub fn keys(&self) -> impl Iterator<Item = (KeyRef, &Key)> {
        self.keys
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| (KeyRef(i), k))
    }

    /// Create a key linked nowhere (`key_alloc`); link it with [`World::link_key`].
    #[allow(clippy::too_many_arguments)]
    pub fn alloc_key(
        &mut self,
        name: Option<&str>,
        ktype: KeyType,
        description: &str,
        uid: Kuid,
        gid: Kgid,
        perm: u32,
        payload: &[u8],
    ) -> KeyRef {
        let serial = FIRST_SERIAL + self.keys.keys.len() as i32;
        self.keys.keys.push(Key {
            serial,
            name: name.map(str::to_owned),
            ktype,
            description: description.to_owned(),
            uid,
            gid,
            perm,
            payload: payload.to_vec(),
            links: Vec::new(),
            uid_keyring: false,
        });
        KeyRef(self.keys.keys.len() - 1)
    }

    /// Link `key` into `keyring` (`__key_link`): a link with the same (type, description) is
    /// displaced. No permission check, no cycle check.
    pub fn link_key(&mut self, keyring: KeyRef, key: KeyRef) -> Result<(), Error> {
        if !self.key(keyring).is_keyring() {
            return Err(Error::Model(format!(
                "\"{}\" is not a keyring",
                self.key(keyring).label()
            )));
        }
        let (ty, desc) = (self.key(key).ktype, self.key(key).description.clone());
        let pos = self.keys.keys[keyring.0].links.iter().position(|&l| {
            let k = &self.keys.keys[l.0];
            k.ktype == ty && k.description == desc
        });
        let links = &mut self.keys.keys[keyring.0].links;
        match pos {
            Some(p) => links[p] = key,
            None => links.push(key),
        }
        Ok(())
    }

    /// The user and user-session keyrings of `kuid` in `ns` (`look_up_user_keyrings`),
    /// created with the kernel's defaults if they do not exist yet.
    pub fn user_keyrings(&mut self, ns: NsRef, kuid: Kuid) -> Result<(KeyRef, KeyRef), Error> {
        if let Some(r) = self.keys.user_keyrings.get(&(ns, kuid)) {
            return Ok(*r);
        }
        // from_kuid: an unmapped uid is (uid_t)-1, so every unmapped user of the namespace
        // finds the same `_uid.4294967295` in its register (keyring_search by description).
        let uid = self.from_kuid(ns, kuid).unwrap_or(u32::MAX);
        let desc = format!("_uid.{uid}");
        let shared = self
            .keys
            .user_keyrings
            .iter()
            .find(|((n, _), (u, _))| *n == ns && self.key(*u).description == desc)
            .map(|(_, r)| *r);
        if let Some(r) = shared {
            self.keys.user_keyrings.insert((ns, kuid), r);
            return Ok(r);
        }
        let reg = match self.keys.registers.get(&ns) {
            Some(r) => *r,
            None => {
                let owner = self.ns(ns).owner;
                let r = self.alloc_key(
                    None,
                    KeyType::Keyring,
                    ".user_reg",
                    owner,
                    Kgid::INVALID,
                    0x0c03_0000,
                    &[],
                );
                self.keys.registers.insert(ns, r);
                r
            }
        };
        let user = self.alloc_key(
            None,
            KeyType::Keyring,
            &format!("_uid.{uid}"),
            kuid,
            Kgid::INVALID,
            USER_KEYRING_PERM,
            &[],
        );
        let session = self.alloc_key(
            None,
            KeyType::Keyring,
            &format!("_uid_ses.{uid}"),
            kuid,
            Kgid::INVALID,
            USER_KEYRING_PERM,
            &[],
        );
        self.keys.keys[user.0].uid_keyring = true;
        self.keys.keys[session.0].uid_keyring = true;
        self.link_key(reg, user)?;
        self.link_key(reg, session)?;
        self.link_key(session, user)?;
        self.keys.user_keyrings.insert((ns, kuid), (user, session));
        Ok((user, session))
    }

    /// A task's thread, process, session, user or user-session keyring, created with the
    /// kernel's defaults if missing (a missing session keyring gets a new anonymous `_ses`).
    pub fn task_keyring(&mut self, task: TaskRef, spec: KeySpec) -> Result<KeyRef, Error> {
        let c = self.task(task).cred.clone();
        let kr = self.task(task).keyrings;
        let new = |w: &mut World, desc: &str, perm: u32| {
            w.alloc_key(None, KeyType::Keyring, desc, c.uid, c.gid, perm, &[])
        };
        Ok(match spec {
            KeySpec::Thread => match kr.thread {
                Some(k) => k,
                None => {
                    let k = new(self, "_tid", KEY_DEFAULT_PERM);
                    self.tasks[task.0].keyrings.thread = Some(k);
                    k
                }
            },
            KeySpec::Process => match kr.process {
                Some(k) => k,
                None => {
                    let k = new(self, "_pid", KEY_DEFAULT_PERM);
                    self.tasks[task.0].keyrings.process = Some(k);
                    k
                }
            },
            KeySpec::Session => match kr.session {
                Some(k) => k,
                None => {
                    let k = new(self, "_ses", SESSION_KEYRING_PERM);
                    self.tasks[task.0].keyrings.session = Some(k);
                    k
                }
            },
            KeySpec::User => self.user_keyrings(c.user_ns, c.uid)?.0,
            KeySpec::UserSession => self.user_keyrings(c.user_ns, c.uid)?.1,
        })
    }

    /// Make `keyring` a task's thread, process or session keyring.
    pub fn install_keyring(
        &mut self,
        task: TaskRef,
        spec: KeySpec,
        keyring: KeyRef,
    ) -> Result<(), Error> {
        if !self.key(keyring).is_keyring() {
            return Err(Error::Model(format!(
                "\"{}\" is not a keyring",
                self.key(keyring).label()
            )));
        }
        let kr = &mut self.tasks[task.0].keyrings;
        let slot = match spec {
            KeySpec::Thread => &mut kr.thread,
            KeySpec::Process => &mut kr.process,
            KeySpec::Session => &mut kr.session,
            _ => {
                return Err(Error::Model(
                    "only thread, process and session keyrings can be installed".into(),
                ))
            }
        };
        if slot.is_some() {
            return Err(Error::Model(format!(
                "the process already has a {} keyring",
                spec.shorthand()
            )));
        }
        *slot = Some(keyring);
        Ok(())
    }

    pub(crate) fn key_show(&self, k: KeyRef) -> String {
        let key = self.key(k);
        format!("\"{}\" ({} {})", key.label(), key.ktype.name(), key.serial)
    }
}
