//! The TOML shapes of a scenario file and the helpers that turn their values into model
//! values, each error pointing at the offending text.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::caps::CapSet;
use crate::keys::{KeySpec, KeyType};
use crate::ops::SIGCONT;
use crate::semantics::{Proposal, Semantics};
use crate::world::{AclEntry, AclTag, NsRef, SbRef, TaskRef, World};
use crate::Error;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    pub(super) settings: Option<RawSettings>,
    #[serde(default)]
    pub(super) namespace: Vec<Spanned<RawNs>>,
    #[serde(default)]
    pub(super) filesystem: Vec<Spanned<RawFs>>,
    #[serde(default)]
    pub(super) mount: Vec<Spanned<RawMount>>,
    #[serde(default)]
    pub(super) file: Vec<Spanned<RawFile>>,
    #[serde(default)]
    pub(super) process: Vec<Spanned<RawProcess>>,
    #[serde(default)]
    pub(super) key: Vec<Spanned<RawKey>>,
    #[serde(default)]
    pub(super) container: Vec<Spanned<RawContainer>>,
    #[serde(default)]
    pub(super) run_keyring: Vec<Spanned<super::run_keyring::RawRunKeyring>>,
    #[serde(default)]
    pub(super) other_namespace: Vec<Spanned<super::nstypes::RawOtherNs>>,
    /// The `[[op]]` tables are only checked to be there: `ops::op_tables` takes them apart
    /// with their positions.
    #[serde(default, rename = "op")]
    pub(super) _op: Vec<serde::de::IgnoredAny>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub(super) enum RawList {
    One(String),
    Many(Vec<String>),
}

impl RawList {
    pub(super) fn items(&self) -> Vec<String> {
        match self {
            RawList::One(s) => vec![s.clone()],
            RawList::Many(v) => v.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKey {
    pub(super) name: Spanned<String>,
    #[serde(rename = "type")]
    pub(super) ktype: Option<Spanned<String>>,
    pub(super) description: Option<String>,
    pub(super) payload: Option<String>,
    pub(super) owner: Option<Spanned<RawId>>,
    pub(super) group: Option<Spanned<RawId>>,
    pub(super) perm: Option<Spanned<RawNum>>,
    pub(super) ns: Option<Spanned<String>>,
    pub(super) at: Option<Spanned<RawList>>,
    pub(super) install: Option<Spanned<RawList>>,
    /// key_acl: the key's ACL, `SUBJECT=PERMS` entries.
    pub(super) acl: Option<Spanned<Vec<Spanned<String>>>>,
}

/// container: a kernel container object.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawContainer {
    pub(super) name: Spanned<String>,
    pub(super) keyring: Option<Spanned<String>>,
    pub(super) intercept: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSettings {
    pub(super) semantics: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) overflowuid: Option<u32>,
    pub(super) overflowgid: Option<u32>,
    pub(super) suid_dumpable: Option<u32>,
    pub(super) protected_hardlinks: Option<Spanned<i64>>,
    pub(super) protected_symlinks: Option<Spanned<i64>>,
    pub(super) protected_regular: Option<Spanned<i64>>,
    pub(super) protected_fifos: Option<Spanned<i64>>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub(super) enum RawId {
    Num(i64),
    Str(String),
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub(super) enum RawNum {
    Num(i64),
    Str(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNs {
    pub(super) name: Spanned<String>,
    pub(super) parent: Option<Spanned<String>>,
    pub(super) owner: Spanned<RawId>,
    pub(super) group: Option<Spanned<RawId>>,
    pub(super) uid_map: Option<Spanned<String>>,
    pub(super) gid_map: Option<Spanned<String>>,
    pub(super) setgroups: Option<Spanned<String>>,
    pub(super) parent_could_setfcap: Option<bool>,
    /// fsid_map: the fs maps, in the write format.
    pub(super) fsuid_map: Option<Spanned<String>>,
    pub(super) fsgid_map: Option<Spanned<String>>,
    /// isolated_userns: the namespace has kernel ids of its own.
    pub(super) isolated: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFs {
    pub(super) name: Spanned<String>,
    #[serde(rename = "type")]
    pub(super) fs_type: Option<Spanned<String>>,
    pub(super) ns: Option<Spanned<String>>,
    pub(super) read_only: Option<bool>,
    pub(super) posix_acl: Option<bool>,
    pub(super) root_owner: Option<Spanned<RawId>>,
    pub(super) root_group: Option<Spanned<RawId>>,
    pub(super) root_mode: Option<Spanned<RawNum>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMount {
    pub(super) path: Spanned<String>,
    pub(super) fs: Spanned<String>,
    pub(super) idmap: Option<Spanned<String>>,
    pub(super) subdir: Option<Spanned<String>>,
    pub(super) nosuid: Option<bool>,
    pub(super) noexec: Option<bool>,
    pub(super) read_only: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) path: Spanned<String>,
    pub(super) owner: Option<Spanned<RawId>>,
    pub(super) group: Option<Spanned<RawId>>,
    pub(super) mode: Option<Spanned<RawNum>>,
    pub(super) dir: Option<bool>,
    pub(super) acl: Option<Vec<Spanned<String>>>,
    pub(super) immutable: Option<bool>,
    /// inode_userns: the namespace the inode belongs to.
    pub(super) userns: Option<Spanned<String>>,
    /// `FS_APPEND_FL`.
    pub(super) append_only: Option<bool>,
    /// `security.capability`: permitted set.
    pub(super) fcaps_permitted: Option<Spanned<String>>,
    /// `security.capability`: inheritable set.
    pub(super) fcaps_inheritable: Option<Spanned<String>>,
    /// `security.capability`: `VFS_CAP_FLAGS_EFFECTIVE`.
    pub(super) fcaps_effective: Option<bool>,
    /// `security.capability` revision 3's root id, in the filesystem's numbering.
    pub(super) fcaps_rootid: Option<Spanned<u32>>,
    /// `system.posix_acl_default` of a directory.
    pub(super) default_acl: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProcess {
    pub(super) name: Spanned<String>,
    pub(super) ns: Option<Spanned<String>>,
    pub(super) uid: Spanned<RawId>,
    pub(super) gid: Option<Spanned<RawId>>,
    pub(super) euid: Option<Spanned<RawId>>,
    pub(super) suid: Option<Spanned<RawId>>,
    pub(super) fsuid: Option<Spanned<RawId>>,
    pub(super) egid: Option<Spanned<RawId>>,
    pub(super) sgid: Option<Spanned<RawId>>,
    pub(super) fsgid: Option<Spanned<RawId>>,
    pub(super) groups: Option<Vec<Spanned<RawId>>>,
    pub(super) caps: Option<Spanned<String>>,
    pub(super) permitted: Option<Spanned<String>>,
    pub(super) effective: Option<Spanned<String>>,
    pub(super) inheritable: Option<Spanned<String>>,
    pub(super) bounding: Option<Spanned<String>>,
    pub(super) ambient: Option<Spanned<String>>,
    pub(super) securebits: Option<u32>,
    pub(super) no_new_privs: Option<bool>,
    pub(super) umask: Option<Spanned<RawNum>>,
    pub(super) chrooted: Option<bool>,
    pub(super) multithreaded: Option<bool>,
    pub(super) shared_fs: Option<bool>,
    pub(super) dumpable: Option<bool>,
    pub(super) session: Option<u32>,
    /// host_admin: the per-process bounding set, which may hold CAP_HOST_ADMIN.
    pub(super) cap_bset: Option<Spanned<String>>,
    /// keychain: credentials as users of other namespaces, `"NAMESPACE:UID"`.
    pub(super) keychain: Option<Vec<Spanned<String>>>,
    /// container (or key_acl): the container the process is a denizen of.
    pub(super) container: Option<Spanned<String>>,
    /// `mm->user_ns`: the namespace the process last exec'd in (default: its own).
    pub(super) mm_userns: Option<Spanned<String>>,
}

pub(super) struct Ctx<'a> {
    pub(super) text: &'a str,
    pub(super) source: &'a str,
    /// The semantics the file names: proposal declarations need their proposal.
    pub(super) sem: Semantics,
}

impl Ctx<'_> {
    pub(super) fn pos(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before
            .rfind('\n')
            .map(|i| before[i + 1..].chars().count() + 1)
            .unwrap_or(before.chars().count() + 1);
        (line, col)
    }

    pub(super) fn err(&self, span: Range<usize>, message: impl Into<String>) -> Error {
        let (line, column) = self.pos(span.start);
        Error::Scenario {
            source_name: self.source.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }

    /// A world-building error, pointed at the text that caused it.
    pub(super) fn model(&self, span: Range<usize>, e: Error) -> Error {
        match e {
            Error::Model(m) => self.err(span, m),
            other => other,
        }
    }

    /// A declaration of proposal `p` is only taken in a file whose semantics name `p`.
    pub(super) fn need(&self, p: Proposal, span: Range<usize>, what: &str) -> Result<(), Error> {
        if self.sem.has(p) {
            return Ok(());
        }
        Err(self.err(
            span,
            format!("{what} belongs to semantics \"{p}\": name it in [settings] semantics (see docs/semantics.md)"),
        ))
    }

    pub(super) fn line(&self, span: &Range<usize>) -> usize {
        self.pos(span.start).0
    }
}

pub(super) fn parse_num(c: &Ctx, v: &Spanned<RawNum>, what: &str) -> Result<u32, Error> {
    match v.get_ref() {
        RawNum::Num(n) if (0..=u32::MAX as i64).contains(n) => Ok(*n as u32),
        RawNum::Num(n) => Err(c.err(v.span(), format!("{what} {n} is out of range"))),
        RawNum::Str(s) => {
            let t = s.trim();
            let t = t.strip_prefix("0o").unwrap_or(t);
            u32::from_str_radix(t, 8)
                .map_err(|_| c.err(v.span(), format!("{what} \"{s}\" is not an octal number")))
        }
    }
}

/// A key permission mask: an integer or a hex string ("0x3f010000" or "3f010000").
pub(super) fn parse_perm(c: &Ctx, v: &Spanned<RawNum>) -> Result<u32, Error> {
    match v.get_ref() {
        RawNum::Num(n) if (0..=u32::MAX as i64).contains(n) => Ok(*n as u32),
        RawNum::Num(n) => Err(c.err(v.span(), format!("perm {n} is out of range"))),
        RawNum::Str(s) => {
            let t = s.trim();
            let t = t.strip_prefix("0x").unwrap_or(t);
            u32::from_str_radix(t, 16).map_err(|_| {
                c.err(
                    v.span(),
                    format!("perm \"{s}\" is not a hex mask like \"0x3f010000\""),
                )
            })
        }
    }
}

pub(super) fn key_type(c: &Ctx, v: &Option<Spanned<String>>) -> Result<KeyType, Error> {
    match v {
        None => Ok(KeyType::User),
        Some(t) => KeyType::parse(t.get_ref()).ok_or_else(|| {
            c.err(
                t.span(),
                format!(
                    "key type \"{}\": the model knows \"user\" and \"keyring\"",
                    t.get_ref()
                ),
            )
        }),
    }
}

pub(super) fn slot(s: &str) -> Option<KeySpec> {
    match s {
        "thread" => Some(KeySpec::Thread),
        "process" => Some(KeySpec::Process),
        "session" => Some(KeySpec::Session),
        "user" => Some(KeySpec::User),
        "user_session" => Some(KeySpec::UserSession),
        _ => None,
    }
}

pub(super) fn parse_signal(c: &Ctx, v: &Spanned<RawNum>) -> Result<u32, Error> {
    match v.get_ref() {
        RawNum::Num(n) if (0..=u32::MAX as i64).contains(n) => Ok(*n as u32),
        RawNum::Num(n) => Err(c.err(v.span(), format!("signal {n} is out of range"))),
        RawNum::Str(s) => {
            let up = s.trim().to_ascii_uppercase();
            let bare = up.strip_prefix("SIG").unwrap_or(&up);
            let n = match bare {
                "HUP" => 1,
                "INT" => 2,
                "QUIT" => 3,
                "KILL" => 9,
                "USR1" => 10,
                "USR2" => 12,
                "TERM" => 15,
                "CONT" => SIGCONT,
                "STOP" => 19,
                _ => return Err(c.err(v.span(), format!("unknown signal \"{s}\" (use a number or HUP, INT, QUIT, KILL, USR1, USR2, TERM, CONT, STOP)"))),
            };
            Ok(n)
        }
    }
}

/// An id written in a scenario: an integer in the contextual numbering (`ctx_ns`), or
/// `"kernel:N"` (a kernel id), or `"NSNAME:N"` (id N of that namespace).
pub(super) fn resolve_id(
    c: &Ctx,
    w: &World,
    v: &Spanned<RawId>,
    ctx_ns: NsRef,
    uid: bool,
    what: &str,
) -> Result<u32, Error> {
    let (ns, n) = match v.get_ref() {
        RawId::Num(n) => {
            if !(0..u32::MAX as i64).contains(n) {
                return Err(c.err(v.span(), format!("{what} {n} is not a valid id")));
            }
            (Some(ctx_ns), *n as u32)
        }
        RawId::Str(s) => {
            let Some((a, b)) = s.split_once(':') else {
                return Err(c.err(
                    v.span(),
                    format!("{what} \"{s}\": write an integer, \"kernel:N\" or \"NAMESPACE:N\""),
                ));
            };
            let n: u32 = b
                .trim()
                .parse()
                .map_err(|_| c.err(v.span(), format!("{what} \"{s}\": \"{b}\" is not a number")))?;
            if a.trim() == "kernel" {
                (None, n)
            } else {
                let ns = w.ns_by_name(a.trim()).ok_or_else(|| {
                    c.err(
                        v.span(),
                        format!("{what} \"{s}\": no namespace called \"{a}\""),
                    )
                })?;
                (Some(ns), n)
            }
        }
    };
    let Some(ns) = ns else { return Ok(n) };
    let k = if uid {
        w.make_kuid(ns, n).0
    } else {
        w.make_kgid(ns, n).0
    };
    if k == u32::MAX {
        return Err(c.err(
            v.span(),
            format!("{what} {n} is not mapped in namespace \"{}\" (write \"kernel:N\" for an unmapped kernel id)", w.ns(ns).name),
        ));
    }
    Ok(k)
}

pub(super) fn ns_ref(c: &Ctx, w: &World, v: &Spanned<String>) -> Result<NsRef, Error> {
    w.ns_by_name(v.get_ref())
        .ok_or_else(|| c.err(v.span(), format!("no namespace called \"{}\"", v.get_ref())))
}

pub(super) fn task_ref(c: &Ctx, w: &World, v: &Spanned<String>) -> Result<TaskRef, Error> {
    w.task_by_name(v.get_ref())
        .ok_or_else(|| c.err(v.span(), format!("no process called \"{}\"", v.get_ref())))
}

pub(super) fn sb_ref(c: &Ctx, w: &World, v: &Spanned<String>) -> Result<SbRef, Error> {
    w.sb_by_name(v.get_ref()).ok_or_else(|| {
        c.err(
            v.span(),
            format!("no filesystem called \"{}\"", v.get_ref()),
        )
    })
}

pub(super) fn capset(c: &Ctx, v: &Spanned<String>) -> Result<CapSet, Error> {
    let text = v.get_ref();
    if mentions_host_admin(text) {
        c.need(Proposal::HostAdmin, v.span(), "CAP_HOST_ADMIN")?;
    }
    let rest: Vec<&str> = cap_tokens(text).filter(|p| !is_host_admin(p)).collect();
    let rest = if rest.is_empty() && mentions_host_admin(text) {
        "none".to_string()
    } else if mentions_host_admin(text) {
        rest.join(",")
    } else {
        text.clone()
    };
    CapSet::parse(&rest).map_err(|m| c.err(v.span(), m))
}

fn cap_tokens(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|p| !p.is_empty())
}

fn is_host_admin(p: &str) -> bool {
    let up = p.to_ascii_uppercase();
    up == "CAP_HOST_ADMIN" || up == "HOST_ADMIN"
}

/// Whether a capability list names CAP_HOST_ADMIN (seed 001's capability, semantics
/// `host_admin`), which is not one of the kernel's 41.
pub(super) fn mentions_host_admin(s: &str) -> bool {
    cap_tokens(s).any(is_host_admin)
}

pub(super) fn parse_acl_entry(
    c: &Ctx,
    w: &World,
    e: &Spanned<String>,
    fs_ns: NsRef,
) -> Result<AclEntry, Error> {
    let s = e.get_ref();
    let parts: Vec<&str> = s.split(':').collect();
    let bad = || {
        c.err(e.span(), format!("ACL entry \"{s}\": write TAG:ID:PERMS, e.g. \"user::rw-\", \"user:1000:r--\", \"mask::r-x\""))
    };
    if parts.len() != 3 {
        return Err(bad());
    }
    let perm = {
        let p = parts[2].trim();
        if p.len() != 3 {
            return Err(bad());
        }
        let b = p.as_bytes();
        let mut v = 0;
        for (i, (ch, bit)) in [(b'r', 4), (b'w', 2), (b'x', 1)].iter().enumerate() {
            if b[i] == *ch {
                v |= bit;
            } else if b[i] != b'-' {
                return Err(bad());
            }
        }
        v
    };
    let id = parts[1].trim();
    let (tag, id) = match (parts[0].trim(), id.is_empty()) {
        ("user" | "u", true) => (AclTag::UserObj, None),
        ("user" | "u", false) => (AclTag::User, Some(id)),
        ("group" | "g", true) => (AclTag::GroupObj, None),
        ("group" | "g", false) => (AclTag::Group, Some(id)),
        ("mask" | "m", true) => (AclTag::Mask, None),
        ("other" | "o", true) => (AclTag::Other, None),
        _ => return Err(bad()),
    };
    let id = match id {
        None => None,
        Some(id) => {
            let raw = match id.parse::<i64>() {
                Ok(n) => RawId::Num(n),
                Err(_) => RawId::Str(id.to_string()),
            };
            let sp = Spanned::new(e.span(), raw);
            Some(resolve_id(c, w, &sp, fs_ns, tag == AclTag::User, "ACL id")?)
        }
    };
    Ok(AclEntry { tag, id, perm })
}

pub(super) fn access_mask(c: &Ctx, v: &Spanned<String>) -> Result<u32, Error> {
    let s = v.get_ref().trim();
    if s.eq_ignore_ascii_case("f_ok") || s.is_empty() || s == "-" {
        return Ok(0);
    }
    let mut m = 0;
    for ch in s.chars() {
        m |= match ch {
            'r' => 4,
            'w' => 2,
            'x' => 1,
            '-' => 0,
            _ => {
                return Err(c.err(
                    v.span(),
                    format!("access \"{s}\": use the letters r, w, x (or F_OK)"),
                ))
            }
        };
    }
    Ok(m)
}

pub(super) fn opt_arg(c: &Ctx, v: &Option<Spanned<i64>>) -> Result<Option<u32>, Error> {
    match v {
        None => Ok(None),
        Some(s) if *s.get_ref() == -1 => Ok(None),
        Some(s) if (0..u32::MAX as i64).contains(s.get_ref()) => Ok(Some(*s.get_ref() as u32)),
        Some(s) => Err(c.err(
            s.span(),
            format!("{} is not an id (use -1 for \"no change\")", s.get_ref()),
        )),
    }
}
