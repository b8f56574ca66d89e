//! The `add_key(2)` and `keyctl(2)` operations, and what a credential change does to a
//! task's keyrings.

use credns_idmap::{Kgid, Kuid};

use crate::caps::Cap;
use crate::outcome::{Output, Tracer, Values};
use crate::vfs::Stop;
use crate::world::{TaskRef, World};
use credns_idmap::Errno;

use super::search::*;
/// `KEY_*_VIEW`: see the key's attributes.
use super::types::*;

impl World {
    pub(super) fn key_out(&self, k: KeyRef) -> Vec<(&'static str, String)> {
        vec![
            ("key", self.key(k).label()),
            ("serial", self.key(k).serial.to_string()),
        ]
    }

    /// `add_key(2)`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn op_add_key(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        ktype: KeyType,
        description: &str,
        payload: &[u8],
        keyring: &KeyId,
        name: Option<&str>,
    ) -> Result<Option<Output>, Stop> {
        let f = "add_key";
        if ktype == KeyType::Keyring && description.starts_with('.') {
            tr!(t.fail(
                f,
                "keyring descriptions beginning with '.' are reserved",
                vec![],
            ));
            return Err(Errno::EPERM.into());
        }
        let (kr, possessed) = self.lookup_user_key(t, task, keyring, true, KeyNeed::Write)?;
        self.key_create_preparse(t, kr, ktype, description, payload)?;
        if !self.key_task_permission(t, task, kr, possessed, KeyNeed::Write) {
            return Err(Errno::EACCES.into());
        }
        if ktype == KeyType::User {
            let existing =
                self.key(kr).links.iter().copied().find(|&l| {
                    self.key(l).ktype == ktype && self.key(l).description == description
                });
            if let Some(old) = existing {
                tr!(t.info(
                    "find_key_to_update",
                    format!(
                        "{} already holds {}: update it",
                        self.key_show(kr),
                        self.key_show(old)
                    ),
                    vec![],
                ));
                if !self.key_task_permission(t, task, old, possessed, KeyNeed::Write) {
                    return Err(Errno::EACCES.into());
                }
                self.keys.keys[old.0].payload = payload.to_vec();
                return Ok(Some(out(self.key_out(old))));
            }
        }
        let c = self.task(task).cred.clone();
        let k = self.alloc_key(
            name,
            ktype,
            description,
            c.fsuid,
            c.fsgid,
            KEY_DEFAULT_PERM,
            payload,
        );
        tr!(t.pass(
            "key_alloc",
            format!(
                "new {} owned by the caller's fsuid/fsgid, linked into {}",
                self.key_show(k),
                self.key_show(kr)
            ),
            vec![
                ("uid", self.show_uid(c.fsuid)),
                ("gid", self.show_gid(c.fsgid)),
                ("perm", perm_str(KEY_DEFAULT_PERM)),
            ],
        ));
        self.link_key(kr, k)
            .map_err(|e| Stop::unknown(e.to_string()))?;
        Ok(Some(out(self.key_out(k))))
    }

    /// `key_create_or_update`'s refusals before any permission check: the destination must
    /// be a keyring, the type's preparse must accept the payload, and a description is
    /// required.
    fn key_create_preparse(
        &self,
        t: &mut Tracer,
        kr: KeyRef,
        ktype: KeyType,
        description: &str,
        payload: &[u8],
    ) -> Result<(), Stop> {
        let fc = "key_create_or_update";
        if !self.key(kr).is_keyring() {
            tr!(t.fail(
                fc,
                format!("{} is not a keyring", self.key_show(kr)),
                vec![],
            ));
            return Err(Errno::ENOTDIR.into());
        }
        let bad_payload = match ktype {
            KeyType::User => payload.is_empty() || payload.len() > 32767,
            KeyType::Keyring => !payload.is_empty(),
        };
        if bad_payload {
            tr!(t.fail(
                fc,
                "the type's preparse refuses the payload (user: 1..=32767 bytes; keyring: none)",
                vec![("len", payload.len().to_string())],
            ));
            return Err(Errno::EINVAL.into());
        }
        if description.is_empty() {
            tr!(t.fail(fc, "no description", vec![]));
            return Err(Errno::EINVAL.into());
        }
        Ok(())
    }

    /// `keyctl(KEYCTL_READ)`.
    pub(crate) fn op_key_read(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        id: &KeyId,
    ) -> Result<Option<Output>, Stop> {
        let f = "keyctl_read_key";
        let (k, possessed) = match self.lookup_user_key(t, task, id, false, KeyNeed::Defer) {
            Ok(x) => x,
            Err(Stop::Errno(e)) => {
                tr!(t.fail(
                    f,
                    format!("any lookup failure ({e}) is reported as ENOKEY"),
                    vec![],
                ));
                return Err(Errno::ENOKEY.into());
            }
            Err(u) => return Err(u),
        };
        if !self.key_task_permission(t, task, k, possessed, KeyNeed::Read)
            && !tr!(t.check(
                possessed,
                f,
                "no READ permission: a possessed key (found with SEARCH) may still be read",
                vec![],
            ))
        {
            return Err(Errno::EACCES.into());
        }
        let key = self.key(k);
        let v = match key.ktype {
            KeyType::User => (
                "payload",
                String::from_utf8_lossy(&key.payload).into_owned(),
            ),
            KeyType::Keyring => {
                let mut labels: Vec<String> =
                    key.links.iter().map(|&l| self.key(l).label()).collect();
                labels.sort();
                ("keys", labels.join(","))
            }
        };
        Ok(Some(out(vec![v])))
    }

    /// `keyctl(KEYCTL_DESCRIBE)`: "type;uid;gid;perm;description", ids as the caller's
    /// namespace shows them.
    pub(crate) fn op_key_describe(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        id: &KeyId,
    ) -> Result<Option<Output>, Stop> {
        let (k, _) = self.lookup_user_key(t, task, id, false, KeyNeed::View)?;
        let ns = self.task(task).cred.user_ns;
        let key = self.key(k);
        let uid = self.from_kuid_munged(ns, key.uid);
        let gid = self.from_kgid_munged(ns, key.gid);
        tr!(t.info(
            "keyctl_describe_key",
            format!(
                "owner and group shown in \"{}\" (unmapped: overflow ids)",
                self.ns(ns).name
            ),
            vec![
                ("kuid", key.uid.0.to_string()),
                ("kgid", key.gid.0.to_string()),
            ],
        ));
        Ok(Some(out(vec![(
            "desc",
            format!(
                "{};{};{};{:08x};{}",
                key.ktype.name(),
                uid as i32,
                gid as i32,
                key.perm,
                key.description
            ),
        )])))
    }

    /// `keyctl(KEYCTL_UPDATE)`.
    pub(crate) fn op_key_update(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        id: &KeyId,
        payload: &[u8],
    ) -> Result<Option<Output>, Stop> {
        let f = "key_update";
        let (k, _) = self.lookup_user_key(t, task, id, false, KeyNeed::Write)?;
        if self.key(k).ktype != KeyType::User {
            tr!(t.fail(
                f,
                format!("{} has no update operation", self.key_show(k)),
                vec![],
            ));
            return Err(Errno::EOPNOTSUPP.into());
        }
        if payload.is_empty() || payload.len() > 32767 {
            tr!(t.fail(f, "a user key's payload is 1..=32767 bytes", vec![]));
            return Err(Errno::EINVAL.into());
        }
        tr!(t.pass(f, format!("{} updated", self.key_show(k)), vec![]));
        self.keys.keys[k.0].payload = payload.to_vec();
        Ok(None)
    }

    /// `keyctl(KEYCTL_SEARCH)` without a destination keyring.
    pub(crate) fn op_key_search(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        keyring: &KeyId,
        ktype: KeyType,
        description: &str,
    ) -> Result<Option<Output>, Stop> {
        let (kr, possessed) = self.lookup_user_key(t, task, keyring, false, KeyNeed::Search)?;
        tr!(t.info(
            "keyring_search",
            format!("recursive search for {} \"{description}\"", ktype.name()),
            vec![("possessed", possessed.to_string())],
        ));
        let r = t.nested(|t| {
            self.keyring_search(t, task, kr, possessed, Match::Index(ktype, description))
        });
        match r {
            Ok(k) => Ok(Some(out(self.key_out(k)))),
            Err(Miss::Again) => {
                tr!(t.fail(
                    "keyctl_keyring_search",
                    "nothing found: EAGAIN becomes ENOKEY",
                    vec![],
                ));
                Err(Errno::ENOKEY.into())
            }
            Err(Miss::Err(e)) => Err(e.into()),
            Err(Miss::Unknown(why)) => Err(Stop::unknown(why)),
        }
    }

    /// `keyctl(KEYCTL_LINK)`.
    pub(crate) fn op_key_link(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        key: &KeyId,
        keyring: &KeyId,
    ) -> Result<Option<Output>, Stop> {
        let f = "key_link";
        let (kr, _) = self.lookup_user_key(t, task, keyring, true, KeyNeed::Write)?;
        let (k, _) = self.lookup_user_key(t, task, key, true, KeyNeed::Link)?;
        if !self.key(kr).is_keyring() {
            tr!(t.fail(f, format!("{} is not a keyring", self.key_show(kr)), vec![]));
            return Err(Errno::ENOTDIR.into());
        }
        if self.key(k).is_keyring() {
            // keyring_detect_cycle: is the destination reachable from the key?
            let mut stack = vec![(k, 0usize)];
            while let Some((r, d)) = stack.pop() {
                if r == kr {
                    tr!(t.fail(
                        "keyring_detect_cycle",
                        format!(
                            "{} is reachable from {}",
                            self.key_show(kr),
                            self.key_show(k)
                        ),
                        vec![],
                    ));
                    return Err(Errno::EDEADLK.into());
                }
                if d >= KEYRING_SEARCH_MAX_DEPTH {
                    return Err(Stop::unknown("keyrings nested too deep (ELOOP)"));
                }
                for &l in &self.key(r).links {
                    if self.key(l).is_keyring() {
                        stack.push((l, d + 1));
                    }
                }
            }
        }
        tr!(t.pass(
            f,
            format!("link {} into {}", self.key_show(k), self.key_show(kr)),
            vec![],
        ));
        self.link_key(kr, k)
            .map_err(|e| Stop::unknown(e.to_string()))?;
        Ok(None)
    }

    /// `keyctl(KEYCTL_UNLINK)`.
    pub(crate) fn op_key_unlink(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        key: &KeyId,
        keyring: &KeyId,
    ) -> Result<Option<Output>, Stop> {
        let f = "key_unlink";
        let (kr, _) = self.lookup_user_key(t, task, keyring, false, KeyNeed::Write)?;
        let (k, _) = self.lookup_user_key(t, task, key, false, KeyNeed::Unlink)?;
        if !self.key(kr).is_keyring() {
            tr!(t.fail(f, format!("{} is not a keyring", self.key_show(kr)), vec![]));
            return Err(Errno::ENOTDIR.into());
        }
        let pos = self
            .key(kr)
            .links
            .iter()
            .position(|&l| self.index_eq(l, Match::Exact(k)));
        match pos {
            Some(p) => {
                tr!(t.pass(
                    f,
                    format!(
                        "unlink {} from {}",
                        self.key_show(self.key(kr).links[p]),
                        self.key_show(kr)
                    ),
                    vec![],
                ));
                self.keys.keys[kr.0].links.remove(p);
                Ok(None)
            }
            None => {
                tr!(t.fail(
                    f,
                    format!(
                        "{} is not linked in {}",
                        self.key_show(k),
                        self.key_show(kr)
                    ),
                    vec![],
                ));
                Err(Errno::ENOENT.into())
            }
        }
    }

    /// `keyctl(KEYCTL_SETPERM)`.
    pub(crate) fn op_key_setperm(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        id: &KeyId,
        perm: u32,
    ) -> Result<Option<Output>, Stop> {
        let f = "keyctl_setperm_key";
        if perm & !KEY_PERM_VALID != 0 {
            tr!(t.fail(
                f,
                "bits outside the four permission bytes",
                vec![("perm", format!("{perm:08x}"))],
            ));
            return Err(Errno::EINVAL.into());
        }
        let (k, _) = self.lookup_user_key(t, task, id, true, KeyNeed::Setattr)?;
        let c = self.task(task).cred.clone();
        let owner = self.key(k).uid == c.fsuid;
        tr!(t.check(
            owner,
            f,
            "the caller's fsuid owns the key",
            vec![
                ("key_uid", self.show_uid(self.key(k).uid)),
                ("fsuid", c.fsuid.0.to_string()),
            ],
        ));
        if !owner {
            let init = self.init_ns();
            if !t.nested(|t| self.ns_capable(t, &c, init, Cap::SYS_ADMIN)) {
                return Err(Errno::EACCES.into());
            }
        }
        self.keys.keys[k.0].perm = perm;
        Ok(None)
    }

    /// `keyctl(KEYCTL_CHOWN)`; ids in the caller's namespace, `None` for -1.
    pub(crate) fn op_key_chown(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        id: &KeyId,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> Result<Option<Output>, Stop> {
        let f = "keyctl_chown_key";
        let c = self.task(task).cred.clone();
        let ku = uid.map(|u| self.make_kuid(c.user_ns, u));
        let kg = gid.map(|g| self.make_kgid(c.user_ns, g));
        if ku.is_some_and(|k| !k.is_valid()) || kg.is_some_and(|k| !k.is_valid()) {
            tr!(t.fail(f, "an id the caller's namespace does not map", vec![]));
            return Err(Errno::EINVAL.into());
        }
        if ku.is_none() && kg.is_none() {
            tr!(t.pass(f, "both ids are -1: nothing to do", vec![]));
            return Ok(None);
        }
        let (k, _) = self.lookup_user_key(t, task, id, true, KeyNeed::Setattr)?;
        let key = self.key(k).clone();
        let new_uid = ku.is_some_and(|u| u != key.uid);
        let new_gid = kg.is_some_and(|g| g != key.gid && !self.in_group_p(&c, g));
        if new_uid || new_gid {
            tr!(t.info(
                f,
                "changing the owner, or the group to one the caller is not in, needs CAP_SYS_ADMIN in the initial namespace",
                vec![("new_uid", new_uid.to_string()), ("foreign_gid", new_gid.to_string())],
            ));
            let init = self.init_ns();
            if !t.nested(|t| self.ns_capable(t, &c, init, Cap::SYS_ADMIN)) {
                return Err(Errno::EACCES.into());
            }
        }
        if let Some(u) = ku {
            self.keys.keys[k.0].uid = u;
        }
        if let Some(g) = kg {
            self.keys.keys[k.0].gid = g;
        }
        tr!(t.pass(f, format!("{} changed", self.key_show(k)), vec![]));
        Ok(None)
    }

    /// `keyctl(KEYCTL_GET_KEYRING_ID)`.
    pub(crate) fn op_key_get_id(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        id: &KeyId,
        create: bool,
    ) -> Result<Option<Output>, Stop> {
        let (k, _) = self.lookup_user_key(t, task, id, create, KeyNeed::Search)?;
        Ok(Some(out(self.key_out(k))))
    }

    /// `commit_creds` → `key_fsuid_changed`/`key_fsgid_changed`: the thread keyring follows
    /// the fsuid and fsgid. `exec` drops the thread and process keyrings.
    pub(crate) fn keys_after_cred_change(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        old_fsuid: Kuid,
        old_fsgid: Kgid,
    ) {
        let c = self.task(task).cred.clone();
        let Some(th) = self.task(task).keyrings.thread else {
            return;
        };
        if c.fsuid != old_fsuid {
            self.keys.keys[th.0].uid = c.fsuid;
            tr!(t.info(
                "key_fsuid_changed",
                "the thread keyring's owner follows the fsuid",
                vec![("uid", c.fsuid.0.to_string())],
            ));
        }
        if c.fsgid != old_fsgid {
            self.keys.keys[th.0].gid = c.fsgid;
            tr!(t.info(
                "key_fsgid_changed",
                "the thread keyring's group follows the fsgid",
                vec![("gid", c.fsgid.0.to_string())],
            ));
        }
    }
}

fn out(pairs: Vec<(&str, String)>) -> Output {
    Values(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}
