//! Permission, possession and search: `key_task_permission`, the keyring search of
//! `search_process_keyrings_rcu` and `lookup_user_key`.

use crate::outcome::Tracer;
use crate::vfs::Stop;
use crate::world::{TaskRef, World};
use credns_idmap::Errno;

/// `KEY_*_VIEW`: see the key's attributes.
use super::types::*;

/// Where a key stands with respect to the garbage collector.
pub(super) enum Liveness {
    Alive,
    Gone,
    Pending,
}

/// Why a search found nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Miss {
    /// `-EAGAIN`: nothing matched.
    Again,
    /// An error (EACCES, ENOTDIR).
    Err(Errno),
    /// The model cannot tell.
    Unknown(String),
}

/// What a search looks for.
#[derive(Clone, Copy)]
pub(crate) enum Match<'a> {
    /// `lookup_user_key_possessed`: exactly this key.
    Exact(KeyRef),
    /// `key_default_cmp`: a key of this type and description.
    Index(KeyType, &'a str),
}

impl World {
    pub(super) fn liveness(&self, k: KeyRef) -> Liveness {
        // Roots: the task keyrings and the registers (which hold the user keyrings).
        let mut alive = vec![false; self.keys.keys.len()];
        let mut stack: Vec<KeyRef> = Vec::new();
        for tk in &self.tasks {
            stack.extend(
                [tk.keyrings.thread, tk.keyrings.process, tk.keyrings.session]
                    .into_iter()
                    .flatten(),
            );
        }
        stack.extend(self.keys.registers.values().copied());
        while let Some(r) = stack.pop() {
            if alive[r.0] {
                continue;
            }
            alive[r.0] = true;
            stack.extend(self.key(r).links.iter().copied());
        }
        if alive[k.0] {
            return Liveness::Alive;
        }
        if self.keys.keys.iter().any(|o| o.links.contains(&k)) {
            Liveness::Pending
        } else {
            Liveness::Gone
        }
    }

    /// `key_task_permission(key_ref, cred, need)`, traced.
    pub(crate) fn key_task_permission(
        &self,
        t: &mut Tracer,
        task: TaskRef,
        k: KeyRef,
        possessed: bool,
        need: KeyNeed,
    ) -> bool {
        if let Some(ok) = self.proposal(|p| p.key_permission(self, t, task, k, possessed, need)) {
            return ok;
        }
        let f = "key_task_permission";
        let Some(mask) = need.bit() else {
            tr!(t.pass(
                f,
                format!("{} checks no permission bit", need.name()),
                vec![("key", self.key_show(k))],
            ));
            return true;
        };
        let c = &self.task(task).cred;
        let key = self.key(k);
        let (class, byte) = if key.uid == c.fsuid {
            ("USR (the key's uid is the caller's fsuid)", key.perm >> 16)
        } else if key.gid.is_valid()
            && key.perm & KEY_GRP_ALL != 0
            && (key.gid == c.fsgid || c.groups.binary_search(&key.gid).is_ok())
        {
            (
                "GRP (the key's gid is the fsgid or a supplementary group)",
                key.perm >> 8,
            )
        } else {
            ("OTH", key.perm)
        };
        let mut kperm = byte & 0x3f;
        if possessed {
            kperm |= (key.perm >> 24) & 0x3f;
        }
        let ok = kperm & mask == mask;
        tr!(t.check(
            ok,
            f,
            format!(
                "{} on {}: class {class}{}",
                need.name(),
                self.key_show(k),
                if possessed { " + POS (possessed)" } else { "" }
            ),
            vec![
                ("perm", perm_str(key.perm)),
                ("key_uid", self.show_uid(key.uid)),
                ("key_gid", self.show_gid(key.gid)),
                ("fsuid", c.fsuid.0.to_string()),
                ("fsgid", c.fsgid.0.to_string()),
                ("granted", format!("{kperm:02x}")),
            ],
        ));
        ok
    }

    pub(super) fn matches(&self, k: KeyRef, m: Match) -> bool {
        match m {
            Match::Exact(x) => x == k,
            Match::Index(ty, d) => {
                let key = self.key(k);
                key.ktype == ty && key.description == d
            }
        }
    }

    pub(super) fn index_eq(&self, k: KeyRef, m: Match) -> bool {
        let key = self.key(k);
        match m {
            Match::Exact(x) => {
                let o = self.key(x);
                key.ktype == o.ktype && key.description == o.description
            }
            Match::Index(ty, d) => key.ktype == ty && key.description == d,
        }
    }

    /// `keyring_search_rcu` with `KEYRING_SEARCH_RECURSE`.
    pub(crate) fn keyring_search(
        &self,
        t: &mut Tracer,
        task: TaskRef,
        root: KeyRef,
        possessed: bool,
        m: Match,
    ) -> Result<KeyRef, Miss> {
        let f = "keyring_search_rcu";
        if !self.key(root).is_keyring() {
            tr!(t.fail(
                f,
                format!("{} is not a keyring", self.key_show(root)),
                vec![],
            ));
            return Err(Miss::Err(Errno::ENOTDIR));
        }
        tr!(t.info(f, format!("search {}", self.key_show(root)), vec![]));
        let ok = t.nested(|t| self.key_task_permission(t, task, root, possessed, KeyNeed::Search));
        if !ok {
            return Err(Miss::Err(Errno::EACCES));
        }
        let mut result = Miss::Again;
        // The top keyring itself is compared first. A same-index keyring that is not the one
        // sought is just not a match (the search goes on into its contents); the top keyring
        // already passed the SEARCH check above, so a match is found.
        if self.matches(root, m) {
            tr!(t.pass(
                "search_nested_keyrings",
                format!("the top keyring {} is the key sought", self.key_show(root)),
                vec![("possessed", possessed.to_string())],
            ));
            return Ok(root);
        }
        match self.search_nested(t, task, root, possessed, m, 0, &mut result) {
            Some(k) => Ok(k),
            None => Err(result),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn search_nested(
        &self,
        t: &mut Tracer,
        task: TaskRef,
        keyring: KeyRef,
        possessed: bool,
        m: Match,
        depth: usize,
        result: &mut Miss,
    ) -> Option<KeyRef> {
        let f = "search_nested_keyrings";
        let links = self.key(keyring).links.clone();
        // Direct lookup of the index key in this keyring, then the nested keyrings.
        if let Some(&k) = links.iter().find(|&&k| self.index_eq(k, m)) {
            if self.matches(k, m) {
                let ok =
                    t.nested(|t| self.key_task_permission(t, task, k, possessed, KeyNeed::Search));
                if ok {
                    tr!(t.pass(
                        f,
                        format!("found {} in {}", self.key_show(k), self.key_show(keyring)),
                        vec![("possessed", possessed.to_string())],
                    ));
                    return Some(k);
                }
                tr!(t.info(
                    f,
                    "a matching key without SEARCH is skipped; the result becomes EACCES",
                    vec![],
                ));
                *result = Miss::Err(Errno::EACCES);
            }
        }
        for k in links {
            if !self.key(k).is_keyring() {
                continue;
            }
            if depth + 1 >= KEYRING_SEARCH_MAX_DEPTH {
                *result = Miss::Unknown(format!(
                    "keyrings nested deeper than KEYRING_SEARCH_MAX_DEPTH ({KEYRING_SEARCH_MAX_DEPTH})"
                ));
                return None;
            }
            let ok = t.nested(|t| self.key_task_permission(t, task, k, possessed, KeyNeed::Search));
            if !ok {
                tr!(t.info(
                    f,
                    format!("do not descend into {}", self.key_show(k)),
                    vec![],
                ));
                continue;
            }
            tr!(t.info(f, format!("descend into {}", self.key_show(k)), vec![]));
            let r = t.nested(|t| self.search_nested(t, task, k, possessed, m, depth + 1, result));
            if r.is_some() {
                return r;
            }
            if matches!(result, Miss::Unknown(_)) {
                return None;
            }
        }
        None
    }

    /// `search_cred_keyrings_rcu` (and so `search_process_keyrings_rcu`, with no
    /// `request_key` authorisation): thread, process, then session or user-session keyring.
    pub(crate) fn search_process_keyrings(
        &self,
        t: &mut Tracer,
        task: TaskRef,
        m: Match,
    ) -> Result<KeyRef, Miss> {
        let f = "search_cred_keyrings_rcu";
        let kr = self.task(task).keyrings;
        let c = &self.task(task).cred;
        let session = match kr.session {
            Some(s) => Some(("session", s)),
            None => self
                .keys
                .user_keyrings
                .get(&(c.user_ns, c.uid))
                .map(|&(_, us)| ("user-session (no session keyring)", us)),
        };
        let order = [
            kr.thread.map(|k| ("thread", k)),
            kr.process.map(|k| ("process", k)),
            session,
        ];
        let mut ret: Option<Miss> = None;
        let mut err = Miss::Again;
        for (what, k) in order.into_iter().flatten() {
            tr!(t.info(
                f,
                format!("search the {what} keyring"),
                vec![("keyring", self.key_show(k))],
            ));
            match t.nested(|t| self.keyring_search(t, task, k, true, m)) {
                Ok(found) => return Ok(found),
                Err(Miss::Again) => ret = Some(Miss::Again),
                Err(Miss::Unknown(why)) => return Err(Miss::Unknown(why)),
                Err(e) => err = e,
            }
        }
        Err(ret.unwrap_or(err))
    }

    /// `look_up_user_keyrings`: the caller's user and user-session keyrings in its namespace,
    /// created if missing. Existing ones are found by searching the namespace's register
    /// (possessed), so each must grant the caller SEARCH; the kernel answers ENOKEY otherwise
    /// (observed on 6.18: after `setperm @u` drops SEARCH, `@u` and `@us` both give ENOKEY).
    pub(super) fn look_up_user_keyrings(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
    ) -> Result<(KeyRef, KeyRef), Stop> {
        let f = "look_up_user_keyrings";
        let c = self.task(task).cred.clone();
        if let Some(&(u, us)) = self.keys.user_keyrings.get(&(c.user_ns, c.uid)) {
            for k in [u, us] {
                let ok = t.nested(|t| self.key_task_permission(t, task, k, true, KeyNeed::Search));
                if !ok {
                    tr!(t.fail(
                        f,
                        format!(
                            "{} is not found in the register without SEARCH",
                            self.key_show(k)
                        ),
                        vec![],
                    ));
                    return Err(Errno::ENOKEY.into());
                }
            }
            return Ok((u, us));
        }
        let r = self
            .user_keyrings(c.user_ns, c.uid)
            .map_err(|e| Stop::unknown(e.to_string()))?;
        self.proposals_notify(|p, w| p.user_keyring_created(w, t, c.user_ns, c.uid, r.0));
        tr!(t.info(
            f,
            format!("created {} and {}", self.key_show(r.0), self.key_show(r.1)),
            vec![
                ("ns", self.ns(c.user_ns).name.clone()),
                ("ruid", c.uid.0.to_string()),
            ],
        ));
        Ok(r)
    }

    /// `lookup_user_key(id, flags, need)`: the key and whether the reference is possessed.
    pub(crate) fn lookup_user_key(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        id: &KeyId,
        create: bool,
        need: KeyNeed,
    ) -> Result<(KeyRef, bool), Stop> {
        let (k, possessed) = match id {
            KeyId::Special(spec) => {
                let k = match spec {
                    KeySpec::Thread | KeySpec::Process => {
                        self.lookup_task_keyring(t, task, *spec, create)?
                    }
                    KeySpec::Session => self.lookup_session_keyring(t, task, create)?,
                    KeySpec::User | KeySpec::UserSession => {
                        self.lookup_user_keyring(t, task, *spec)?
                    }
                };
                tr!(t.info(
                    "lookup_user_key",
                    format!("{} is possessed", spec.shorthand()),
                    vec![]
                ));
                (k, true)
            }
            KeyId::Serial(_) | KeyId::Name(_) => {
                let k = self.key_lookup(t, id)?;
                (k, self.key_possessed(t, task, k)?)
            }
        };
        let ok = self.key_task_permission(t, task, k, possessed, need);
        if !ok {
            return Err(Errno::EACCES.into());
        }
        Ok((k, possessed))
    }

    /// `@t`/`@p`: the task's thread or process keyring, created only with
    /// `KEY_LOOKUP_CREATE`.
    fn lookup_task_keyring(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        spec: KeySpec,
        create: bool,
    ) -> Result<KeyRef, Stop> {
        let f = "lookup_user_key";
        let kr = self.task(task).keyrings;
        let cur = if spec == KeySpec::Thread {
            kr.thread
        } else {
            kr.process
        };
        match cur {
            Some(k) => Ok(k),
            None if create => {
                let k = self
                    .task_keyring(task, spec)
                    .map_err(|e| Stop::unknown(e.to_string()))?;
                tr!(t.info(
                    f,
                    format!("{}: created {}", spec.shorthand(), self.key_show(k)),
                    vec![],
                ));
                Ok(k)
            }
            None => {
                tr!(t.fail(
                    f,
                    format!(
                        "{}: the task has none (KEY_LOOKUP_CREATE not given)",
                        spec.shorthand()
                    ),
                    vec![],
                ));
                Err(Errno::ENOKEY.into())
            }
        }
    }

    /// `@s`: the session keyring; without one (or when it is the user-session keyring and
    /// creation is asked for) the task joins a new anonymous session keyring or installs
    /// the user-session keyring.
    fn lookup_session_keyring(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        create: bool,
    ) -> Result<KeyRef, Stop> {
        let f = "lookup_user_key";
        let cur = self.task(task).keyrings.session;
        let uid_ring = cur.map(|s| self.key(s).uid_keyring).unwrap_or(false);
        if let Some(s) = cur.filter(|_| !(uid_ring && create)) {
            return Ok(s);
        }
        let c = self.task(task).cred.clone();
        let (_, us) = self.look_up_user_keyrings(t, task)?;
        let s = if create {
            let s = self.alloc_key(
                None,
                KeyType::Keyring,
                "_ses",
                c.uid,
                c.gid,
                SESSION_KEYRING_PERM,
                &[],
            );
            tr!(t.info(
                f,
                "@s: join a new anonymous session keyring",
                vec![("keyring", self.key_show(s))],
            ));
            s
        } else {
            tr!(t.info(
                f,
                "@s: no session keyring; install the user-session keyring",
                vec![("keyring", self.key_show(us))],
            ));
            us
        };
        self.tasks[task.0].keyrings.session = Some(s);
        Ok(s)
    }

    /// `@u`/`@us`: the user or user-session keyring of the real uid in the task's namespace.
    fn lookup_user_keyring(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        spec: KeySpec,
    ) -> Result<KeyRef, Stop> {
        let c = self.task(task).cred.clone();
        let (u, us) = self.look_up_user_keyrings(t, task)?;
        let k = if spec == KeySpec::User { u } else { us };
        tr!(t.info(
            "lookup_user_key",
            format!(
                "{}: the keyring of the real uid in namespace \"{}\"",
                spec.shorthand(),
                self.ns(c.user_ns).name
            ),
            vec![("keyring", self.key_show(k)), ("ruid", c.uid.0.to_string())],
        ));
        Ok(k)
    }

    /// `key_lookup`: the key a serial number (or a scenario's key name) refers to, if it is
    /// still alive.
    fn key_lookup(&self, t: &mut Tracer, id: &KeyId) -> Result<KeyRef, Stop> {
        let f = "lookup_user_key";
        let k = match id {
            KeyId::Serial(n) => {
                if *n < 1 {
                    if *n == -6 || *n == 0 || *n < -8 {
                        tr!(t.fail(f, format!("{n} is not a valid key id"), vec![]));
                        return Err(Errno::EINVAL.into());
                    }
                    return Err(Stop::unknown(format!(
                        "special id {n} (request_key authorisation) is not modelled"
                    )));
                }
                self.key_by_serial(*n)
            }
            KeyId::Name(n) => match self.key_by_name(n) {
                Some(k) => Some(k),
                None => {
                    return Err(Stop::unknown(format!(
                        "no key is called \"{n}\" (the op that was to create it failed)"
                    )))
                }
            },
            KeyId::Special(_) => unreachable!("special ids are looked up by the caller"),
        };
        let Some(k) = k else {
            tr!(t.fail(f, format!("no key has serial {id}"), vec![]));
            return Err(Errno::ENOKEY.into());
        };
        match self.liveness(k) {
            Liveness::Alive => Ok(k),
            Liveness::Gone => {
                // The unlink drops the keyring's reference only after an RCU grace
                // period (assoc_array_apply_edit -> call_rcu), and key_lookup fails
                // once the count is zero: ENOKEY or not depends on timing.
                tr!(t.step(
                    "key_lookup",
                    format!("{} is linked nowhere: whether its last reference is gone yet depends on an RCU grace period", self.key_show(k)),
                    vec![],
                    crate::outcome::StepVerdict::Unknown,
                ));
                Err(Stop::unknown(format!(
                    "{} was unlinked from everything: the kernel frees it after an RCU grace period, so a lookup may still find it",
                    self.key_show(k)
                )))
            }
            Liveness::Pending => Err(Stop::unknown(format!(
                "{} is only linked from unreferenced keyrings awaiting garbage collection",
                self.key_show(k)
            ))),
        }
    }

    /// `lookup_user_key_possessed`: a key named by serial is possessed if searching the
    /// task's keyrings finds it.
    fn key_possessed(&self, t: &mut Tracer, task: TaskRef, k: KeyRef) -> Result<bool, Stop> {
        let f = "lookup_user_key";
        tr!(t.info(
            f,
            format!(
                "{} exists; is it possessed? search the task's keyrings",
                self.key_show(k)
            ),
            vec![],
        ));
        let r = t.nested(|t| self.search_process_keyrings(t, task, Match::Exact(k)));
        let possessed = match r {
            Ok(_) => true,
            Err(Miss::Unknown(why)) => return Err(Stop::unknown(why)),
            Err(_) => false,
        };
        tr!(t.info(
            f,
            if possessed {
                "possessed"
            } else {
                "not possessed"
            },
            vec![],
        ));
        Ok(possessed)
    }
}
