//! Keys, keyrings and their permission masks: the types of `security/keys/`.

use credns_idmap::{Kgid, Kuid};
use serde::{Serialize, Serializer};

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

    pub(crate) fn name(self) -> &'static str {
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
