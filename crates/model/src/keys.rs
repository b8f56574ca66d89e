//! Kernel keys and keyrings (`security/keys/`): permission masks, possession, the search of a
//! task's keyrings, per-namespace user keyrings and the `keyctl(2)`/`add_key(2)` operations.
//!
//! The rules follow the 6.x kernel:
//!
//! * `key_task_permission`: the USR byte if the key's kuid is the caller's fsuid; else the GRP
//!   byte if the key's gid is valid, the GRP byte is non-zero and the gid is the fsgid or a
//!   supplementary group; else the OTH byte. The POS byte is ORed in when the reference is
//!   possessed. Ids are compared as kernel ids, so a key of another namespace's uid falls to
//!   the OTH byte.
//! * Possession (`lookup_user_key` → `search_process_keyrings_rcu`): a key named by serial is
//!   possessed if it is found by searching the thread, process and session keyring (or the
//!   user-session keyring when there is no session keyring), descending only into keyrings
//!   that grant SEARCH, and the key itself grants SEARCH. Special ids (`@t`, `@p`, …) are
//!   always possessed.
//! * User keyrings (`look_up_user_keyrings`) are per (user namespace, real kuid), kept in the
//!   namespace's register and created on first use.
//!
//! Not modelled (the answer would be `Unknown` if they mattered, and the model never creates
//! such states): LSMs (`security_key_permission` is taken to allow), key quotas, expiry,
//! revocation, negative keys, `KEEP` flags, restricted keyrings, `request_key` authorisation.

use std::collections::BTreeMap;

use credns_idmap::{Kgid, Kuid};
use serde::{Serialize, Serializer};

use crate::caps::Cap;
use crate::outcome::{Output, Tracer, Values};
use crate::vfs::Stop;
use crate::world::{NsRef, TaskRef, World};
use crate::Error;
use credns_idmap::Errno;

/// `KEY_*_VIEW`: see the key's attributes.
pub const KEY_VIEW: u32 = 0x01;
/// `KEY_*_READ`: read the payload (list a keyring).
pub const KEY_READ: u32 = 0x02;
/// `KEY_*_WRITE`: update the payload, add or remove links of a keyring.
pub const KEY_WRITE: u32 = 0x04;
/// `KEY_*_SEARCH`: find the key by searching (and descend into a keyring).
pub const KEY_SEARCH: u32 = 0x08;
/// `KEY_*_LINK`: link the key into a keyring.
pub const KEY_LINK: u32 = 0x10;
/// `KEY_*_SETATTR`: change owner, group, permissions.
pub const KEY_SETATTR: u32 = 0x20;
/// `KEY_POS_ALL`.
pub const KEY_POS_ALL: u32 = 0x3f00_0000;
/// `KEY_USR_ALL`.
pub const KEY_USR_ALL: u32 = 0x003f_0000;
/// `KEY_GRP_ALL`.
pub const KEY_GRP_ALL: u32 = 0x0000_3f00;
/// `KEY_OTH_ALL`.
pub const KEY_OTH_ALL: u32 = 0x0000_003f;
/// Every bit `KEYCTL_SETPERM` accepts.
pub const KEY_PERM_VALID: u32 = KEY_POS_ALL | KEY_USR_ALL | KEY_GRP_ALL | KEY_OTH_ALL;
/// The default permissions of a key made by `add_key`, and of thread and process keyrings:
/// possessor all, user view.
pub const KEY_DEFAULT_PERM: u32 = 0x3f01_0000;
/// An anonymous session keyring (`_ses`): possessor all, user view and read.
pub const SESSION_KEYRING_PERM: u32 = 0x3f03_0000;
/// User and user-session keyrings: possessor all but setattr, user all.
pub const USER_KEYRING_PERM: u32 = 0x1f3f_0000;
/// `KEYRING_SEARCH_MAX_DEPTH`.
pub const KEYRING_SEARCH_MAX_DEPTH: usize = 6;

/// A key of a [`World`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct KeyRef(pub(crate) usize);

impl KeyRef {
    /// The index of the key in its table.
    pub fn index(self) -> usize {
        self.0
    }
}

/// The key types modelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    /// `user`: a readable, updatable blob of 1..=32767 bytes.
    User,
    /// `keyring`: a set of links to keys, at most one per (type, description).
    Keyring,
}

impl KeyType {
    /// The kernel's type name.
    pub fn name(self) -> &'static str {
        match self {
            KeyType::User => "user",
            KeyType::Keyring => "keyring",
        }
    }

    /// From the kernel's type name.
    pub fn parse(s: &str) -> Option<KeyType> {
        match s.trim() {
            "user" => Some(KeyType::User),
            "keyring" => Some(KeyType::Keyring),
            _ => None,
        }
    }
}

/// A key (`struct key`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    /// The serial number (the model numbers keys in creation order; the kernel's are random).
    pub serial: i32,
    /// The scenario's name for the key, if it has one.
    pub name: Option<String>,
    /// Its type.
    pub ktype: KeyType,
    /// Its description (with the type, its index key in a keyring).
    pub description: String,
    /// Owner (kernel id).
    pub uid: Kuid,
    /// Group (kernel id; may be invalid).
    pub gid: Kgid,
    /// The permission mask: possessor, user, group, other bytes.
    pub perm: u32,
    /// The payload of a `user` key.
    pub payload: Vec<u8>,
    /// The keys a keyring links to, in link order.
    pub links: Vec<KeyRef>,
    /// `KEY_FLAG_UID_KEYRING`: a user or user-session keyring.
    pub uid_keyring: bool,
}

impl Key {
    /// The scenario name, or the description for keys the kernel made (`_uid.0`, `_ses`, …).
    pub fn label(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| self.description.clone())
    }

    /// Whether it is a keyring.
    pub fn is_keyring(&self) -> bool {
        self.ktype == KeyType::Keyring
    }
}

/// A task's own keyrings (`cred->thread_keyring`, `process_keyring`, `session_keyring`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskKeyrings {
    /// The thread keyring (`@t`).
    pub thread: Option<KeyRef>,
    /// The process keyring (`@p`).
    pub process: Option<KeyRef>,
    /// The session keyring (`@s`); `None` means the user-session keyring is searched instead.
    pub session: Option<KeyRef>,
}

/// The special keyring ids (`KEY_SPEC_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeySpec {
    /// `KEY_SPEC_THREAD_KEYRING` (-1, `@t`).
    Thread,
    /// `KEY_SPEC_PROCESS_KEYRING` (-2, `@p`).
    Process,
    /// `KEY_SPEC_SESSION_KEYRING` (-3, `@s`).
    Session,
    /// `KEY_SPEC_USER_KEYRING` (-4, `@u`).
    User,
    /// `KEY_SPEC_USER_SESSION_KEYRING` (-5, `@us`).
    UserSession,
}

impl KeySpec {
    /// The id passed to the kernel.
    pub fn id(self) -> i32 {
        match self {
            KeySpec::Thread => -1,
            KeySpec::Process => -2,
            KeySpec::Session => -3,
            KeySpec::User => -4,
            KeySpec::UserSession => -5,
        }
    }

    /// The `keyctl(1)` shorthand.
    pub fn shorthand(self) -> &'static str {
        match self {
            KeySpec::Thread => "@t",
            KeySpec::Process => "@p",
            KeySpec::Session => "@s",
            KeySpec::User => "@u",
            KeySpec::UserSession => "@us",
        }
    }

    /// From `@t`, `@p`, `@s`, `@u`, `@us`.
    pub fn parse(s: &str) -> Option<KeySpec> {
        match s.trim() {
            "@t" => Some(KeySpec::Thread),
            "@p" => Some(KeySpec::Process),
            "@s" => Some(KeySpec::Session),
            "@u" => Some(KeySpec::User),
            "@us" => Some(KeySpec::UserSession),
            _ => None,
        }
    }

    /// From a special id (-1..=-5).
    pub fn from_id(id: i32) -> Option<KeySpec> {
        [
            KeySpec::Thread,
            KeySpec::Process,
            KeySpec::Session,
            KeySpec::User,
            KeySpec::UserSession,
        ]
        .into_iter()
        .find(|s| s.id() == id)
    }
}

/// How an operation names a key: a special keyring, a raw serial, or a scenario name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyId {
    /// `@t`, `@p`, `@s`, `@u`, `@us`.
    Special(KeySpec),
    /// A serial number as passed to the syscall (any `i32`; 0 and unknown negatives are EINVAL).
    Serial(i32),
    /// The key the scenario calls this (declared in `[[key]]` or named by an `add_key`).
    Name(String),
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyId::Special(s) => f.write_str(s.shorthand()),
            KeyId::Serial(n) => write!(f, "{n}"),
            KeyId::Name(n) => f.write_str(n),
        }
    }
}

impl Serialize for KeyId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl KeyId {
    /// `@t`…`@us`, a decimal serial, or a name.
    pub fn parse(s: &str) -> KeyId {
        let t = s.trim();
        if let Some(sp) = KeySpec::parse(t) {
            return KeyId::Special(sp);
        }
        match t.parse::<i32>() {
            Ok(n) => KeyId::Serial(n),
            Err(_) => KeyId::Name(t.to_owned()),
        }
    }
}

/// The permission a lookup asks for (`enum key_need_perm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyNeed {
    /// `KEY_NEED_VIEW`.
    View,
    /// `KEY_NEED_READ`.
    Read,
    /// `KEY_NEED_WRITE`.
    Write,
    /// `KEY_NEED_SEARCH`.
    Search,
    /// `KEY_NEED_LINK`.
    Link,
    /// `KEY_NEED_SETATTR`.
    Setattr,
    /// `KEY_NEED_UNLINK`: no bit is checked.
    Unlink,
    /// `KEY_DEFER_PERM_CHECK`: the caller checks later.
    Defer,
}

impl KeyNeed {
    /// The mask bit, or `None` for the needs that check no bit.
    pub fn bit(self) -> Option<u32> {
        match self {
            KeyNeed::View => Some(KEY_VIEW),
            KeyNeed::Read => Some(KEY_READ),
            KeyNeed::Write => Some(KEY_WRITE),
            KeyNeed::Search => Some(KEY_SEARCH),
            KeyNeed::Link => Some(KEY_LINK),
            KeyNeed::Setattr => Some(KEY_SETATTR),
            KeyNeed::Unlink | KeyNeed::Defer => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            KeyNeed::View => "VIEW",
            KeyNeed::Read => "READ",
            KeyNeed::Write => "WRITE",
            KeyNeed::Search => "SEARCH",
            KeyNeed::Link => "LINK",
            KeyNeed::Setattr => "SETATTR",
            KeyNeed::Unlink => "UNLINK",
            KeyNeed::Defer => "DEFER_PERM_CHECK",
        }
    }
}

/// A permission mask as `keyctl describe` prints it, with the bytes spelled out.
pub fn perm_str(perm: u32) -> String {
    let byte = |b: u32| {
        let mut s = String::new();
        for (bit, c) in [
            (KEY_VIEW, 'v'),
            (KEY_READ, 'r'),
            (KEY_WRITE, 'w'),
            (KEY_SEARCH, 's'),
            (KEY_LINK, 'l'),
            (KEY_SETATTR, 'a'),
        ] {
            s.push(if b & bit != 0 { c } else { '-' });
        }
        s
    };
    format!(
        "{perm:08x} (pos {} usr {} grp {} oth {})",
        byte(perm >> 24),
        byte(perm >> 16),
        byte(perm >> 8),
        byte(perm)
    )
}

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

/// Where a key stands with respect to the garbage collector.
enum Liveness {
    Alive,
    Gone,
    Pending,
}

/// Why a search found nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Miss {
    /// `-EAGAIN`: nothing matched.
    Again,
    /// An error (EACCES, ENOTDIR).
    Err(Errno),
    /// The model cannot tell.
    Unknown(String),
}

/// What a search looks for.
#[derive(Clone, Copy)]
enum Match<'a> {
    /// `lookup_user_key_possessed`: exactly this key.
    Exact(KeyRef),
    /// `key_default_cmp`: a key of this type and description.
    Index(KeyType, &'a str),
}

const FIRST_SERIAL: i32 = 100_000_000;

impl World {
    // ------------------------------------------------------------ building

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
        let uid = self.from_kuid(ns, kuid).ok_or_else(|| {
            Error::Model(format!(
                "kuid {} has no mapping in \"{}\", so it has no user keyring there",
                kuid.0,
                self.ns(ns).name
            ))
        })?;
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

    fn liveness(&self, k: KeyRef) -> Liveness {
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

    fn key_show(&self, k: KeyRef) -> String {
        let key = self.key(k);
        format!("\"{}\" ({} {})", key.label(), key.ktype.name(), key.serial)
    }

    // ------------------------------------------------------------ rules

    /// `key_task_permission(key_ref, cred, need)`, traced.
    pub(crate) fn key_task_permission(
        &self,
        t: &mut Tracer,
        task: TaskRef,
        k: KeyRef,
        possessed: bool,
        need: KeyNeed,
    ) -> bool {
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

    fn matches(&self, k: KeyRef, m: Match) -> bool {
        match m {
            Match::Exact(x) => x == k,
            Match::Index(ty, d) => {
                let key = self.key(k);
                key.ktype == ty && key.description == d
            }
        }
    }

    fn index_eq(&self, k: KeyRef, m: Match) -> bool {
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
    fn keyring_search(
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
    fn search_nested(
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
    fn search_process_keyrings(
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
    fn look_up_user_keyrings(
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
        let f = "lookup_user_key";
        let model = |e: Error| Stop::unknown(e.to_string());
        let (k, possessed) = match id {
            KeyId::Special(spec) => {
                let kr = self.task(task).keyrings;
                let k = match spec {
                    KeySpec::Thread | KeySpec::Process => {
                        let cur = if *spec == KeySpec::Thread {
                            kr.thread
                        } else {
                            kr.process
                        };
                        match cur {
                            Some(k) => k,
                            None if create => {
                                let k = self.task_keyring(task, *spec).map_err(model)?;
                                tr!(t.info(
                                    f,
                                    format!("{}: created {}", spec.shorthand(), self.key_show(k)),
                                    vec![],
                                ));
                                k
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
                                return Err(Errno::ENOKEY.into());
                            }
                        }
                    }
                    KeySpec::Session => {
                        let cur = kr.session;
                        let uid_ring = cur.map(|s| self.key(s).uid_keyring).unwrap_or(false);
                        match cur {
                            Some(s) if !(uid_ring && create) => s,
                            _ => {
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
                                s
                            }
                        }
                    }
                    KeySpec::User | KeySpec::UserSession => {
                        let c = self.task(task).cred.clone();
                        let (u, us) = self.look_up_user_keyrings(t, task)?;
                        let k = if *spec == KeySpec::User { u } else { us };
                        tr!(t.info(
                            f,
                            format!(
                                "{}: the keyring of the real uid in namespace \"{}\"",
                                spec.shorthand(),
                                self.ns(c.user_ns).name
                            ),
                            vec![("keyring", self.key_show(k)), ("ruid", c.uid.0.to_string())],
                        ));
                        k
                    }
                };
                tr!(t.info(f, format!("{} is possessed", spec.shorthand()), vec![]));
                (k, true)
            }
            KeyId::Serial(_) | KeyId::Name(_) => {
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
                    KeyId::Special(_) => unreachable!(),
                };
                let Some(k) = k else {
                    tr!(t.fail(f, format!("no key has serial {id}"), vec![]));
                    return Err(Errno::ENOKEY.into());
                };
                match self.liveness(k) {
                    Liveness::Alive => {}
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
                        return Err(Stop::unknown(format!(
                            "{} was unlinked from everything: the kernel frees it after an RCU grace period, so a lookup may still find it",
                            self.key_show(k)
                        )));
                    }
                    Liveness::Pending => {
                        return Err(Stop::unknown(format!(
                        "{} is only linked from unreferenced keyrings awaiting garbage collection",
                        self.key_show(k)
                    )))
                    }
                }
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
                (k, possessed)
            }
        };
        let ok = self.key_task_permission(t, task, k, possessed, need);
        if !ok {
            return Err(Errno::EACCES.into());
        }
        Ok((k, possessed))
    }

    fn key_out(&self, k: KeyRef) -> Vec<(&'static str, String)> {
        vec![
            ("key", self.key(k).label()),
            ("serial", self.key(k).serial.to_string()),
        ]
    }

    // ------------------------------------------------------------ operations

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
