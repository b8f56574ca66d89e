//! Scenario files: a TOML description of a world and a list of operations with expected
//! results. The format is documented in `docs/scenarios.md` at the top of the workspace.

use std::ops::Range;

use credns_idmap::{Kgid, Kuid};
use serde::Deserialize;
use toml::Spanned;

use crate::caps::{Cap, CapSet};
use crate::keys::{KeyId, KeySpec, KeyType};
use crate::ops::{MapKind, Op, SIGCONT};
use crate::outcome::{Outcome, Verdict};
use crate::world::{Acl, AclEntry, AclTag, Cred, MountOptions, NsRef, SbRef, TaskRef, World};
use crate::Error;
use credns_idmap::Errno;

/// What an operation is expected to return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Success.
    Allowed,
    /// Failure with this errno, or with any errno (`"denied"`).
    Denied(Option<Errno>),
    /// The model cannot tell.
    Unknown,
}

impl Expect {
    /// Parse `allowed` (or `ok`), `denied`, `unknown`, or an errno name such as `EACCES`.
    pub fn parse(s: &str) -> Option<Expect> {
        match s.trim().to_ascii_lowercase().as_str() {
            "allowed" | "allow" | "ok" | "success" => Some(Expect::Allowed),
            "denied" => Some(Expect::Denied(None)),
            "unknown" => Some(Expect::Unknown),
            _ => Errno::parse(s).map(|e| Expect::Denied(Some(e))),
        }
    }

    /// Whether `v` satisfies the expectation.
    pub fn matches(&self, v: &Verdict) -> bool {
        match (self, v) {
            (Expect::Allowed, Verdict::Allowed) => true,
            (Expect::Unknown, Verdict::Unknown(_)) => true,
            (Expect::Denied(None), Verdict::Denied(_)) => true,
            (Expect::Denied(Some(e)), Verdict::Denied(d)) => e == d,
            _ => false,
        }
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Allowed => f.write_str("allowed"),
            Expect::Denied(None) => f.write_str("denied"),
            Expect::Denied(Some(e)) => write!(f, "{e}"),
            Expect::Unknown => f.write_str("unknown"),
        }
    }
}

/// One operation of a scenario.
#[derive(Clone, Debug)]
pub struct ScenarioOp {
    /// The task performing it.
    pub by: TaskRef,
    /// The operation.
    pub op: Op,
    /// A namespace named by the operation that only exists once an earlier `unshare` ran.
    deferred_ns: Option<String>,
    /// The operation as written, for reports.
    pub text: String,
    /// Expected result.
    pub expect: Option<Expect>,
    /// Expected output tokens (`key=value …`), each of which must appear in the output.
    pub expect_output: Option<String>,
    /// 1-based line of the `[[op]]` table.
    pub line: usize,
}

/// A parsed scenario: the initial world and the operations to run on it.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The name the scenario was parsed under.
    pub source_name: String,
    /// The world before the first operation.
    pub world: World,
    /// The operations, in order.
    pub ops: Vec<ScenarioOp>,
}

/// The result of running one operation of a scenario.
#[derive(Clone, Debug, serde::Serialize)]
pub struct OpReport {
    /// 0-based index in the scenario.
    pub index: usize,
    /// 1-based line of its `[[op]]` table.
    pub line: usize,
    /// The operation as written.
    pub text: String,
    /// What the model answered.
    pub outcome: Outcome,
    /// The expected result, if given.
    pub expect: Option<String>,
    /// The expected output tokens, if given.
    pub expect_output: Option<String>,
    /// Whether the expectations hold (`None` when there are none).
    pub matched: Option<bool>,
}

impl OpReport {
    /// True unless an expectation was given and does not hold.
    pub fn matches(&self) -> bool {
        self.matched != Some(false)
    }
}

impl std::fmt::Display for OpReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = match self.matched {
            Some(true) => "ok",
            Some(false) => "MISMATCH",
            None => "-",
        };
        write!(
            f,
            "#{} (line {}) {}: {}",
            self.index, self.line, status, self.text
        )?;
        if let Some(e) = &self.expect {
            write!(f, " [expect {e}]")?;
        }
        if let Some(e) = &self.expect_output {
            write!(f, " [expect output {e}]")?;
        }
        write!(f, "\n{}", self.outcome)
    }
}

// ---------------------------------------------------------------- raw TOML shapes

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    settings: Option<RawSettings>,
    #[serde(default)]
    namespace: Vec<Spanned<RawNs>>,
    #[serde(default)]
    filesystem: Vec<Spanned<RawFs>>,
    #[serde(default)]
    mount: Vec<Spanned<RawMount>>,
    #[serde(default)]
    file: Vec<Spanned<RawFile>>,
    #[serde(default)]
    process: Vec<Spanned<RawProcess>>,
    #[serde(default)]
    key: Vec<Spanned<RawKey>>,
    #[serde(default)]
    op: Vec<Spanned<RawOp>>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum RawList {
    One(String),
    Many(Vec<String>),
}

impl RawList {
    fn items(&self) -> Vec<String> {
        match self {
            RawList::One(s) => vec![s.clone()],
            RawList::Many(v) => v.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    name: Spanned<String>,
    #[serde(rename = "type")]
    ktype: Option<Spanned<String>>,
    description: Option<String>,
    payload: Option<String>,
    owner: Option<Spanned<RawId>>,
    group: Option<Spanned<RawId>>,
    perm: Option<Spanned<RawNum>>,
    ns: Option<Spanned<String>>,
    at: Option<Spanned<RawList>>,
    install: Option<Spanned<RawList>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    overflowuid: Option<u32>,
    overflowgid: Option<u32>,
    suid_dumpable: Option<u32>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum RawId {
    Num(i64),
    Str(String),
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum RawNum {
    Num(i64),
    Str(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNs {
    name: Spanned<String>,
    parent: Option<Spanned<String>>,
    owner: Spanned<RawId>,
    group: Option<Spanned<RawId>>,
    uid_map: Option<Spanned<String>>,
    gid_map: Option<Spanned<String>>,
    setgroups: Option<Spanned<String>>,
    parent_could_setfcap: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFs {
    name: Spanned<String>,
    #[serde(rename = "type")]
    fs_type: Option<String>,
    ns: Option<Spanned<String>>,
    read_only: Option<bool>,
    posix_acl: Option<bool>,
    root_owner: Option<Spanned<RawId>>,
    root_group: Option<Spanned<RawId>>,
    root_mode: Option<Spanned<RawNum>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMount {
    path: Spanned<String>,
    fs: Spanned<String>,
    idmap: Option<Spanned<String>>,
    subdir: Option<Spanned<String>>,
    nosuid: Option<bool>,
    noexec: Option<bool>,
    read_only: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    path: Spanned<String>,
    owner: Option<Spanned<RawId>>,
    group: Option<Spanned<RawId>>,
    mode: Option<Spanned<RawNum>>,
    dir: Option<bool>,
    acl: Option<Vec<Spanned<String>>>,
    immutable: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProcess {
    name: Spanned<String>,
    ns: Option<Spanned<String>>,
    uid: Spanned<RawId>,
    gid: Option<Spanned<RawId>>,
    euid: Option<Spanned<RawId>>,
    suid: Option<Spanned<RawId>>,
    fsuid: Option<Spanned<RawId>>,
    egid: Option<Spanned<RawId>>,
    sgid: Option<Spanned<RawId>>,
    fsgid: Option<Spanned<RawId>>,
    groups: Option<Vec<Spanned<RawId>>>,
    caps: Option<Spanned<String>>,
    permitted: Option<Spanned<String>>,
    effective: Option<Spanned<String>>,
    inheritable: Option<Spanned<String>>,
    bounding: Option<Spanned<String>>,
    ambient: Option<Spanned<String>>,
    securebits: Option<u32>,
    no_new_privs: Option<bool>,
    umask: Option<Spanned<RawNum>>,
    chrooted: Option<bool>,
    multithreaded: Option<bool>,
    shared_fs: Option<bool>,
    dumpable: Option<bool>,
    session: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOp {
    by: Spanned<String>,
    op: Spanned<String>,
    path: Option<Spanned<String>>,
    access: Option<Spanned<String>>,
    eaccess: Option<bool>,
    mode: Option<Spanned<RawNum>>,
    uid: Option<Spanned<i64>>,
    gid: Option<Spanned<i64>>,
    ruid: Option<Spanned<i64>>,
    euid: Option<Spanned<i64>>,
    suid: Option<Spanned<i64>>,
    rgid: Option<Spanned<i64>>,
    egid: Option<Spanned<i64>>,
    sgid: Option<Spanned<i64>>,
    groups: Option<Spanned<Vec<i64>>>,
    target: Option<Spanned<String>>,
    signal: Option<Spanned<RawNum>>,
    name: Option<Spanned<String>>,
    text: Option<Spanned<String>>,
    ns: Option<Spanned<String>>,
    cap: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    keyring: Option<Spanned<String>>,
    #[serde(rename = "type")]
    ktype: Option<Spanned<String>>,
    description: Option<Spanned<String>>,
    payload: Option<Spanned<String>>,
    perm: Option<Spanned<RawNum>>,
    create: Option<bool>,
    expect: Option<Spanned<String>>,
    expect_output: Option<Spanned<String>>,
    note: Option<String>,
}

// ---------------------------------------------------------------- parsing

struct Ctx<'a> {
    text: &'a str,
    source: &'a str,
}

impl Ctx<'_> {
    fn pos(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before
            .rfind('\n')
            .map(|i| before[i + 1..].chars().count() + 1)
            .unwrap_or(before.chars().count() + 1);
        (line, col)
    }

    fn err(&self, span: Range<usize>, message: impl Into<String>) -> Error {
        let (line, column) = self.pos(span.start);
        Error::Scenario {
            source_name: self.source.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }

    fn line(&self, span: &Range<usize>) -> usize {
        self.pos(span.start).0
    }
}

fn parse_num(c: &Ctx, v: &Spanned<RawNum>, what: &str) -> Result<u32, Error> {
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
fn parse_perm(c: &Ctx, v: &Spanned<RawNum>) -> Result<u32, Error> {
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

fn key_type(c: &Ctx, v: &Option<Spanned<String>>) -> Result<KeyType, Error> {
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

fn slot(s: &str) -> Option<KeySpec> {
    match s {
        "thread" => Some(KeySpec::Thread),
        "process" => Some(KeySpec::Process),
        "session" => Some(KeySpec::Session),
        "user" => Some(KeySpec::User),
        "user_session" => Some(KeySpec::UserSession),
        _ => None,
    }
}

/// Declare one `[[key]]`.
fn declare_key(c: &Ctx, w: &mut World, kspan: Range<usize>, k: &RawKey) -> Result<(), Error> {
    let model = |span: Range<usize>, e: Error| match e {
        Error::Model(m) => c.err(span, m),
        other => other,
    };
    let name = k.name.get_ref();
    if w.key_by_name(name).is_some() {
        return Err(c.err(
            k.name.span(),
            format!("a key called \"{name}\" already exists"),
        ));
    }
    if KeySpec::parse(name).is_some() || name.parse::<i64>().is_ok() || name.contains(':') {
        return Err(c.err(
            k.name.span(),
            format!("key name \"{name}\" must not be a number, an @ shorthand or contain ':'"),
        ));
    }
    let ktype = key_type(c, &k.ktype)?;
    let at: Vec<String> =
        k.at.as_ref()
            .map(|a| a.get_ref().items())
            .unwrap_or_default();
    let install: Vec<String> = k
        .install
        .as_ref()
        .map(|a| a.get_ref().items())
        .unwrap_or_default();
    let at_span = k.at.as_ref().map(|a| a.span()).unwrap_or(kspan.clone());
    let in_span = k
        .install
        .as_ref()
        .map(|a| a.span())
        .unwrap_or(kspan.clone());
    if at.is_empty() && install.is_empty() {
        return Err(c.err(
            kspan,
            format!(
                "key \"{name}\" is linked nowhere: give `at` (where it is linked) or `install`"
            ),
        ));
    }
    // The first process named decides the default numbering and owner.
    let first_proc = at
        .iter()
        .chain(install.iter())
        .filter_map(|p| p.split_once(':').map(|(a, _)| a.trim().to_string()))
        .find_map(|p| w.task_by_name(&p));
    let ns = match (&k.ns, first_proc) {
        (Some(n), _) => ns_ref(c, w, n)?,
        (None, Some(t)) => w.task(t).cred.user_ns,
        (None, None) => w.init_ns(),
    };
    // A key placed in another declared keyring defaults to that keyring's owner and group.
    let parent_key = at
        .iter()
        .filter(|a| !a.contains(':'))
        .find_map(|a| w.key_by_name(a.trim()));
    let uid = match (&k.owner, first_proc) {
        (Some(v), _) => Kuid(resolve_id(c, w, v, ns, true, "owner")?),
        (None, Some(t)) => w.task(t).cred.fsuid,
        (None, None) if parent_key.is_some() => w.key(parent_key.expect("checked")).uid,
        (None, None) => {
            return Err(c.err(kspan, format!("key \"{name}\" needs an `owner`")));
        }
    };
    let gid = match (&k.group, first_proc) {
        (Some(v), _) if matches!(v.get_ref(), RawId::Num(-1)) => Kgid::INVALID,
        (Some(v), _) => Kgid(resolve_id(c, w, v, ns, false, "group")?),
        (None, Some(t)) => w.task(t).cred.fsgid,
        (None, None) if parent_key.is_some() => w.key(parent_key.expect("checked")).gid,
        (None, None) => {
            return Err(c.err(
                kspan,
                format!("key \"{name}\" needs a `group` (-1 for none)"),
            ));
        }
    };
    let perm = match &k.perm {
        Some(p) => parse_perm(c, p)?,
        None => crate::keys::KEY_DEFAULT_PERM,
    };
    let desc = k.description.clone().unwrap_or_else(|| name.clone());
    let payload = k.payload.clone().unwrap_or_default();
    if ktype == KeyType::Keyring && !payload.is_empty() {
        return Err(c.err(kspan, "a keyring has no payload"));
    }
    let key = w.alloc_key(Some(name), ktype, &desc, uid, gid, perm, payload.as_bytes());
    for i in &install {
        let bad = || {
            c.err(
                in_span.clone(),
                format!("install \"{i}\": write \"PROCESS:thread\", \"PROCESS:process\" or \"PROCESS:session\""),
            )
        };
        let (p, sl) = i.split_once(':').ok_or_else(bad)?;
        let t = w
            .task_by_name(p.trim())
            .ok_or_else(|| c.err(in_span.clone(), format!("no process called \"{p}\"")))?;
        let spec = match slot(sl.trim()) {
            Some(s @ (KeySpec::Thread | KeySpec::Process | KeySpec::Session)) => s,
            _ => return Err(bad()),
        };
        w.install_keyring(t, spec, key)
            .map_err(|e| model(in_span.clone(), e))?;
    }
    for a in &at {
        let parts: Vec<&str> = a.split(':').map(str::trim).collect();
        let ring = match parts.as_slice() {
            [kname] => {
                let r = w.key_by_name(kname).ok_or_else(|| {
                    c.err(at_span.clone(), format!("no key called \"{kname}\" (declare keyrings before what they hold)"))
                })?;
                r
            }
            [p, sl] => {
                let t = w.task_by_name(p).ok_or_else(|| {
                    c.err(at_span.clone(), format!("no process called \"{p}\""))
                })?;
                let spec = slot(sl).ok_or_else(|| {
                    c.err(at_span.clone(), format!("at \"{a}\": the keyring is thread, process, session, user or user_session"))
                })?;
                w.task_keyring(t, spec)
                    .map_err(|e| model(at_span.clone(), e))?
            }
            [n, u, sl] => {
                let nsr = w
                    .ns_by_name(n)
                    .ok_or_else(|| c.err(at_span.clone(), format!("no namespace called \"{n}\"")))?;
                let uid: u32 = u
                    .parse()
                    .map_err(|_| c.err(at_span.clone(), format!("at \"{a}\": \"{u}\" is not a uid")))?;
                let ku = w.make_kuid(nsr, uid);
                if !ku.is_valid() {
                    return Err(c.err(at_span.clone(), format!("uid {uid} is not mapped in \"{n}\"")));
                }
                let (ur, us) = w
                    .user_keyrings(nsr, ku)
                    .map_err(|e| model(at_span.clone(), e))?;
                match *sl {
                    "user" => ur,
                    "user_session" => us,
                    _ => {
                        return Err(c.err(
                            at_span.clone(),
                            format!("at \"{a}\": NAMESPACE:UID: takes user or user_session"),
                        ))
                    }
                }
            }
            _ => {
                return Err(c.err(
                    at_span.clone(),
                    format!("at \"{a}\": write a keyring's name, \"PROCESS:SLOT\" or \"NAMESPACE:UID:user\""),
                ))
            }
        };
        w.link_key(ring, key)
            .map_err(|e| model(at_span.clone(), e))?;
    }
    Ok(())
}

fn parse_signal(c: &Ctx, v: &Spanned<RawNum>) -> Result<u32, Error> {
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
fn resolve_id(
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

fn ns_ref(c: &Ctx, w: &World, v: &Spanned<String>) -> Result<NsRef, Error> {
    w.ns_by_name(v.get_ref())
        .ok_or_else(|| c.err(v.span(), format!("no namespace called \"{}\"", v.get_ref())))
}

fn task_ref(c: &Ctx, w: &World, v: &Spanned<String>) -> Result<TaskRef, Error> {
    w.task_by_name(v.get_ref())
        .ok_or_else(|| c.err(v.span(), format!("no process called \"{}\"", v.get_ref())))
}

fn sb_ref(c: &Ctx, w: &World, v: &Spanned<String>) -> Result<SbRef, Error> {
    w.sb_by_name(v.get_ref()).ok_or_else(|| {
        c.err(
            v.span(),
            format!("no filesystem called \"{}\"", v.get_ref()),
        )
    })
}

fn capset(c: &Ctx, v: &Spanned<String>) -> Result<CapSet, Error> {
    CapSet::parse(v.get_ref()).map_err(|m| c.err(v.span(), m))
}

fn parse_acl_entry(
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

fn access_mask(c: &Ctx, v: &Spanned<String>) -> Result<u32, Error> {
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

fn opt_arg(c: &Ctx, v: &Option<Spanned<i64>>) -> Result<Option<u32>, Error> {
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

impl Scenario {
    /// Parse a scenario. Errors name `source_name`, the line and column, and what was wrong.
    pub fn parse(text: &str, source_name: &str) -> Result<Scenario, Error> {
        let c = Ctx {
            text,
            source: source_name,
        };
        let raw: RawScenario = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            c.err(span, e.message().trim().to_string())
        })?;
        let mut w = World::new();
        if let Some(s) = &raw.settings {
            if let Some(v) = s.overflowuid {
                w.overflowuid = v;
            }
            if let Some(v) = s.overflowgid {
                w.overflowgid = v;
            }
            if let Some(v) = s.suid_dumpable {
                w.suid_dumpable = v;
            }
        }
        let model = |span: Range<usize>, e: Error| match e {
            Error::Model(m) => c.err(span, m),
            other => other,
        };

        for ns in &raw.namespace {
            let n = ns.get_ref();
            let parent = match &n.parent {
                Some(p) => ns_ref(&c, &w, p)?,
                None => w.init_ns(),
            };
            let owner = resolve_id(&c, &w, &n.owner, parent, true, "owner")?;
            let group = match &n.group {
                Some(g) => resolve_id(&c, &w, g, parent, false, "group")?,
                None => {
                    let g = Spanned::new(n.owner.span(), n.owner.get_ref().clone());
                    resolve_id(&c, &w, &g, parent, false, "group (defaulted from owner)")?
                }
            };
            let r = w
                .add_userns(n.name.get_ref(), parent, Kuid(owner), Kgid(group))
                .map_err(|e| model(n.name.span(), e))?;
            if let Some(sg) = &n.setgroups {
                match sg.get_ref().trim() {
                    "allow" => w.set_setgroups(r, true),
                    "deny" => w.set_setgroups(r, false),
                    other => {
                        return Err(c.err(
                            sg.span(),
                            format!("setgroups must be \"allow\" or \"deny\", not \"{other}\""),
                        ))
                    }
                }
            }
            if let Some(m) = &n.uid_map {
                w.set_uid_map(r, m.get_ref())
                    .map_err(|e| model(m.span(), e))?;
            }
            if let Some(m) = &n.gid_map {
                w.set_gid_map(r, m.get_ref())
                    .map_err(|e| model(m.span(), e))?;
            }
            w.set_parent_could_setfcap(r, n.parent_could_setfcap.unwrap_or(false));
        }

        for fs in &raw.filesystem {
            let f = fs.get_ref();
            let ns = match &f.ns {
                Some(n) => ns_ref(&c, &w, n)?,
                None => w.init_ns(),
            };
            let uid = match &f.root_owner {
                Some(v) => resolve_id(&c, &w, v, ns, true, "root_owner")?,
                None => w.make_kuid(ns, 0).0,
            };
            let gid = match &f.root_group {
                Some(v) => resolve_id(&c, &w, v, ns, false, "root_group")?,
                None => w.make_kgid(ns, 0).0,
            };
            let mode = match &f.root_mode {
                Some(m) => parse_num(&c, m, "root_mode")?,
                None => 0o755,
            };
            let sb = w
                .add_superblock(
                    f.name.get_ref(),
                    f.fs_type.as_deref().unwrap_or("ext4"),
                    ns,
                    Kuid(uid),
                    Kgid(gid),
                    mode,
                )
                .map_err(|e| model(f.name.span(), e))?;
            w.sb_mut(sb).read_only = f.read_only.unwrap_or(false);
            w.sb_mut(sb).posix_acl = f.posix_acl.unwrap_or(true);
        }

        if !raw
            .mount
            .iter()
            .any(|m| crate::world::normalise(m.get_ref().path.get_ref()).as_deref() == Some("/"))
        {
            let sb = w
                .add_superblock("rootfs", "ext4", w.init_ns(), Kuid(0), Kgid(0), 0o755)
                .map_err(|e| model(0..0, e))?;
            w.add_mount("/", sb, MountOptions::default())
                .map_err(|e| model(0..0, e))?;
        }
        let mut mounts: Vec<&Spanned<RawMount>> = raw.mount.iter().collect();
        mounts.sort_by_key(|m| {
            crate::world::path_components(m.get_ref().path.get_ref())
                .map(|c| c.len())
                .unwrap_or(0)
        });
        for m in mounts {
            let mm = m.get_ref();
            let sb = sb_ref(&c, &w, &mm.fs)?;
            let idmap = match &mm.idmap {
                Some(n) => Some(ns_ref(&c, &w, n)?),
                None => None,
            };
            let opts = MountOptions {
                idmap,
                nosuid: mm.nosuid.unwrap_or(false),
                noexec: mm.noexec.unwrap_or(false),
                read_only: mm.read_only.unwrap_or(false),
                subdir: mm.subdir.as_ref().map(|s| s.get_ref().clone()),
            };
            w.add_mount(mm.path.get_ref(), sb, opts)
                .map_err(|e| model(mm.path.span(), e))?;
        }

        for f in &raw.file {
            let fr = f.get_ref();
            let path = fr.path.get_ref();
            // The filesystem the file lands on decides the numbering of owner/group.
            let parent_path = match path.rsplit_once('/') {
                Some(("", _)) => "/".to_string(),
                Some((p, _)) => p.to_string(),
                None => {
                    return Err(c.err(
                        fr.path.span(),
                        format!("\"{path}\" is not an absolute path"),
                    ))
                }
            };
            let fs_ns = {
                let mut p = parent_path.clone();
                loop {
                    if let Some((_, ino)) = w.lookup_unchecked(&p) {
                        break w.sb(w.inode(ino).sb).user_ns;
                    }
                    p = match p.rsplit_once('/') {
                        Some(("", _)) | None => "/".into(),
                        Some((q, _)) => q.into(),
                    };
                }
            };
            let uid = match &fr.owner {
                Some(v) => resolve_id(&c, &w, v, fs_ns, true, "owner")?,
                None => w.make_kuid(fs_ns, 0).0,
            };
            let gid = match &fr.group {
                Some(v) => resolve_id(&c, &w, v, fs_ns, false, "group")?,
                None => w.make_kgid(fs_ns, 0).0,
            };
            let dir = fr.dir.unwrap_or(false);
            let mode = match &fr.mode {
                Some(m) => parse_num(&c, m, "mode")?,
                None => {
                    if dir {
                        0o755
                    } else {
                        0o644
                    }
                }
            };
            let ino = w
                .add_inode(path, dir, Kuid(uid), Kgid(gid), mode)
                .map_err(|e| model(fr.path.span(), e))?;
            if let Some(acl) = &fr.acl {
                let mut entries = Vec::new();
                for e in acl {
                    entries.push(parse_acl_entry(&c, &w, e, fs_ns)?);
                }
                let span = acl.first().map(|e| e.span()).unwrap_or(fr.path.span());
                w.set_acl(ino, Acl(entries)).map_err(|e| model(span, e))?;
            }
            if fr.immutable.unwrap_or(false) {
                w.inode_mut(ino).immutable = true;
            }
        }

        for p in &raw.process {
            let pr = p.get_ref();
            let ns = match &pr.ns {
                Some(n) => ns_ref(&c, &w, n)?,
                None => w.init_ns(),
            };
            let uid = Kuid(resolve_id(&c, &w, &pr.uid, ns, true, "uid")?);
            let gid = match &pr.gid {
                Some(g) => Kgid(resolve_id(&c, &w, g, ns, false, "gid")?),
                None => {
                    let g = Spanned::new(pr.uid.span(), pr.uid.get_ref().clone());
                    Kgid(resolve_id(
                        &c,
                        &w,
                        &g,
                        ns,
                        false,
                        "gid (defaulted from uid)",
                    )?)
                }
            };
            let mut cred = Cred::new(ns, uid, gid, CapSet::EMPTY);
            let opt_u = |v: &Option<Spanned<RawId>>, what: &str, d: Kuid| -> Result<Kuid, Error> {
                v.as_ref()
                    .map(|v| resolve_id(&c, &w, v, ns, true, what).map(Kuid))
                    .unwrap_or(Ok(d))
            };
            let opt_g = |v: &Option<Spanned<RawId>>, what: &str, d: Kgid| -> Result<Kgid, Error> {
                v.as_ref()
                    .map(|v| resolve_id(&c, &w, v, ns, false, what).map(Kgid))
                    .unwrap_or(Ok(d))
            };
            cred.euid = opt_u(&pr.euid, "euid", uid)?;
            cred.suid = opt_u(&pr.suid, "suid", uid)?;
            cred.fsuid = opt_u(&pr.fsuid, "fsuid", cred.euid)?;
            cred.egid = opt_g(&pr.egid, "egid", gid)?;
            cred.sgid = opt_g(&pr.sgid, "sgid", gid)?;
            cred.fsgid = opt_g(&pr.fsgid, "fsgid", cred.egid)?;
            if let Some(gs) = &pr.groups {
                for g in gs {
                    cred.groups
                        .push(Kgid(resolve_id(&c, &w, g, ns, false, "group")?));
                }
            }
            let default = w.default_caps(ns, cred.euid);
            let base = match &pr.caps {
                Some(s) => capset(&c, s)?,
                None => default,
            };
            cred.cap_permitted = match &pr.permitted {
                Some(s) => capset(&c, s)?,
                None => base,
            };
            cred.cap_effective = match &pr.effective {
                Some(s) => capset(&c, s)?,
                None => base,
            };
            if let Some(s) = &pr.inheritable {
                cred.cap_inheritable = capset(&c, s)?;
            }
            if let Some(s) = &pr.bounding {
                cred.cap_bset = capset(&c, s)?;
            }
            if let Some(s) = &pr.ambient {
                cred.cap_ambient = capset(&c, s)?;
            }
            if !cred.cap_effective.is_subset(cred.cap_permitted) {
                return Err(c.err(
                    p.span(),
                    "the effective set must be a subset of the permitted set",
                ));
            }
            if !cred
                .cap_ambient
                .is_subset(cred.cap_permitted.intersect(cred.cap_inheritable))
            {
                return Err(c.err(
                    p.span(),
                    "the ambient set must be a subset of permitted and inheritable",
                ));
            }
            cred.securebits = pr.securebits.unwrap_or(0);
            let t = w
                .add_task(pr.name.get_ref(), cred)
                .map_err(|e| model(pr.name.span(), e))?;
            let tm = w.task_mut(t);
            tm.no_new_privs = pr.no_new_privs.unwrap_or(false);
            if let Some(u) = &pr.umask {
                tm.umask = parse_num(&c, u, "umask")? & 0o777;
            }
            tm.chrooted = pr.chrooted.unwrap_or(false);
            tm.multithreaded = pr.multithreaded.unwrap_or(false);
            tm.shared_fs = pr.shared_fs.unwrap_or(false);
            tm.dumpable = pr.dumpable.unwrap_or(true);
            tm.session = pr.session;
        }

        for k in &raw.key {
            declare_key(&c, &mut w, k.span(), k.get_ref())?;
        }

        let mut created: Vec<String> = Vec::new();
        let mut key_names: Vec<String> = Vec::new();
        let mut ops = Vec::new();
        for o in &raw.op {
            let so = parse_op(&c, &w, o, &mut created, &mut key_names)?;
            ops.push(so);
        }
        Ok(Scenario {
            source_name: source_name.to_owned(),
            world: w,
            ops,
        })
    }

    /// Run every operation in order on a copy of the world.
    pub fn run(&self) -> Vec<OpReport> {
        let mut w = self.world.clone();
        let mut out = Vec::new();
        for (i, so) in self.ops.iter().enumerate() {
            let mut op = so.op.clone();
            let mut missing = None;
            if let Some(name) = &so.deferred_ns {
                match w.ns_by_name(name) {
                    Some(r) => match &mut op {
                        Op::Setns { ns } | Op::Capable { ns, .. } => *ns = r,
                        _ => {}
                    },
                    None => missing = Some(name.clone()),
                }
            }
            let outcome = match missing {
                Some(name) => Outcome {
                    result: Verdict::Unknown(format!("namespace \"{name}\" does not exist (the unshare that was to create it failed)")),
                    output: None,
                    trace: Vec::new(),
                },
                None => w.op(so.by, &op),
            };
            let mut matched = so.expect.as_ref().map(|e| e.matches(&outcome.result));
            if let Some(exp) = &so.expect_output {
                let got = outcome
                    .output
                    .as_ref()
                    .map(|o| o.to_string())
                    .unwrap_or_default();
                let toks: Vec<&str> = got.split_whitespace().collect();
                let ok = exp.split_whitespace().all(|t| toks.contains(&t));
                matched = Some(matched.unwrap_or(true) && ok);
            }
            out.push(OpReport {
                index: i,
                line: so.line,
                text: so.text.clone(),
                outcome,
                expect: so.expect.as_ref().map(|e| e.to_string()),
                expect_output: so.expect_output.clone(),
                matched,
            });
        }
        out
    }
}

/// A key reference of an op: `@t`…`@us`, a serial number, or the name of a declared key or
/// of one an earlier `add_key` names.
fn need_key(
    c: &Ctx,
    w: &World,
    o: &Spanned<RawOp>,
    v: &Option<Spanned<String>>,
    field: &str,
    kind: &str,
    key_names: &[String],
) -> Result<KeyId, Error> {
    let s = v
        .as_ref()
        .ok_or_else(|| c.err(o.span(), format!("op \"{kind}\" needs `{field}`")))?;
    let id = KeyId::parse(s.get_ref());
    if let KeyId::Name(n) = &id {
        if w.key_by_name(n).is_none() && !key_names.contains(n) {
            return Err(c.err(
                s.span(),
                format!("no key called \"{n}\" (use a [[key]] name, a name given by an earlier add_key, @t, @p, @s, @u, @us or a serial number)"),
            ));
        }
    }
    Ok(id)
}

fn parse_op(
    c: &Ctx,
    w: &World,
    o: &Spanned<RawOp>,
    created: &mut Vec<String>,
    key_names: &mut Vec<String>,
) -> Result<ScenarioOp, Error> {
    let r = o.get_ref();
    let by = task_ref(c, w, &r.by)?;
    let kind = r.op.get_ref().trim().to_ascii_lowercase();
    let need_path = || -> Result<String, Error> {
        let p = r
            .path
            .as_ref()
            .ok_or_else(|| c.err(o.span(), format!("op \"{kind}\" needs a `path`")))?;
        crate::world::normalise(p.get_ref())
            .ok_or_else(|| c.err(p.span(), "paths must be absolute and free of . and .."))
    };
    let need_target = || -> Result<TaskRef, Error> {
        let t = r
            .target
            .as_ref()
            .ok_or_else(|| c.err(o.span(), format!("op \"{kind}\" needs a `target` process")))?;
        task_ref(c, w, t)
    };
    let need_id = |v: &Option<Spanned<i64>>, what: &str| -> Result<u32, Error> {
        let s = v
            .as_ref()
            .ok_or_else(|| c.err(o.span(), format!("op \"{kind}\" needs `{what}`")))?;
        match opt_arg(c, v)? {
            Some(x) => Ok(x),
            None => Err(c.err(s.span(), format!("`{what}` cannot be -1 here"))),
        }
    };
    // Which optional fields each op may use (beyond by, op, expect, expect_output, note).
    let allowed: &[&str] = match kind.as_str() {
        "open" => &["path", "access"],
        "access" => &["path", "access", "eaccess"],
        "create" | "mkdir" => &["path", "mode"],
        "stat" | "exec" => &["path"],
        "chmod" => &["path", "mode"],
        "chown" => &["path", "uid", "gid"],
        "kill" => &["target", "signal"],
        "ptrace" | "proc_status" | "peercred" => &["target"],
        "setuid" => &["uid"],
        "setreuid" => &["ruid", "euid"],
        "setresuid" => &["ruid", "euid", "suid"],
        "setgid" => &["gid"],
        "setregid" => &["rgid", "egid"],
        "setresgid" => &["rgid", "egid", "sgid"],
        "setgroups" => &["groups"],
        "unshare" => &["name"],
        "write_uid_map" | "write_gid_map" | "write_setgroups" => &["target", "text"],
        "setns" => &["ns", "target"],
        "no_new_privs" | "getids" => &[],
        "capable" => &["ns", "cap"],
        "add_key" => &["keyring", "type", "description", "payload", "name"],
        "keyctl_read" | "keyctl_describe" => &["key"],
        "keyctl_update" => &["key", "payload"],
        "keyctl_search" => &["keyring", "type", "description"],
        "keyctl_link" | "keyctl_unlink" => &["key", "keyring"],
        "keyctl_setperm" => &["key", "perm"],
        "keyctl_chown" => &["key", "uid", "gid"],
        "keyctl_get_keyring_id" => &["key", "create"],
        _ => {
            return Err(c.err(
                r.op.span(),
                format!("unknown op \"{}\" (one of open, access, create, mkdir, stat, chmod, chown, exec, kill, ptrace, setuid, setreuid, setresuid, setgid, setregid, setresgid, setgroups, unshare, write_uid_map, write_gid_map, write_setgroups, setns, no_new_privs, getids, proc_status, peercred, capable, add_key, keyctl_read, keyctl_describe, keyctl_update, keyctl_search, keyctl_link, keyctl_unlink, keyctl_setperm, keyctl_chown, keyctl_get_keyring_id)", r.op.get_ref()),
            ))
        }
    };
    let present: Vec<(&str, Option<Range<usize>>)> = vec![
        ("path", r.path.as_ref().map(|v| v.span())),
        ("access", r.access.as_ref().map(|v| v.span())),
        ("eaccess", r.eaccess.map(|_| o.span())),
        ("mode", r.mode.as_ref().map(|v| v.span())),
        ("uid", r.uid.as_ref().map(|v| v.span())),
        ("gid", r.gid.as_ref().map(|v| v.span())),
        ("ruid", r.ruid.as_ref().map(|v| v.span())),
        ("euid", r.euid.as_ref().map(|v| v.span())),
        ("suid", r.suid.as_ref().map(|v| v.span())),
        ("rgid", r.rgid.as_ref().map(|v| v.span())),
        ("egid", r.egid.as_ref().map(|v| v.span())),
        ("sgid", r.sgid.as_ref().map(|v| v.span())),
        ("groups", r.groups.as_ref().map(|v| v.span())),
        ("target", r.target.as_ref().map(|v| v.span())),
        ("signal", r.signal.as_ref().map(|v| v.span())),
        ("name", r.name.as_ref().map(|v| v.span())),
        ("text", r.text.as_ref().map(|v| v.span())),
        ("ns", r.ns.as_ref().map(|v| v.span())),
        ("cap", r.cap.as_ref().map(|v| v.span())),
        ("key", r.key.as_ref().map(|v| v.span())),
        ("keyring", r.keyring.as_ref().map(|v| v.span())),
        ("type", r.ktype.as_ref().map(|v| v.span())),
        ("description", r.description.as_ref().map(|v| v.span())),
        ("payload", r.payload.as_ref().map(|v| v.span())),
        ("perm", r.perm.as_ref().map(|v| v.span())),
        ("create", r.create.map(|_| o.span())),
    ];
    for (field, span) in &present {
        if let Some(span) = span {
            if !allowed.contains(field) {
                return Err(c.err(
                    span.clone(),
                    format!(
                        "op \"{kind}\" does not take `{field}` (it takes: {})",
                        if allowed.is_empty() {
                            "nothing".to_string()
                        } else {
                            allowed.join(", ")
                        }
                    ),
                ));
            }
        }
    }
    let mut deferred_ns = None;
    let op = match kind.as_str() {
        "open" | "access" => {
            let mask = match &r.access {
                Some(a) => access_mask(c, a)?,
                None => 4,
            };
            if kind == "open" {
                if mask & 1 != 0 {
                    return Err(c.err(r.access.as_ref().map(|a| a.span()).unwrap_or(o.span()), "open takes access \"r\", \"w\" or \"rw\" (use op \"exec\" or \"access\" for x)"));
                }
                Op::Open {
                    path: need_path()?,
                    read: mask & 4 != 0 || mask == 0,
                    write: mask & 2 != 0,
                }
            } else {
                Op::Access {
                    path: need_path()?,
                    mode: mask,
                    eaccess: r.eaccess.unwrap_or(false),
                }
            }
        }
        "create" | "mkdir" => {
            let dir = kind == "mkdir";
            let mode = match &r.mode {
                Some(m) => parse_num(c, m, "mode")?,
                None => {
                    if dir {
                        0o777
                    } else {
                        0o666
                    }
                }
            };
            Op::Create {
                path: need_path()?,
                mode,
                dir,
            }
        }
        "stat" => Op::Stat { path: need_path()? },
        "exec" => Op::Exec { path: need_path()? },
        "chmod" => {
            let m = r
                .mode
                .as_ref()
                .ok_or_else(|| c.err(o.span(), "op \"chmod\" needs `mode`"))?;
            Op::Chmod {
                path: need_path()?,
                mode: parse_num(c, m, "mode")?,
            }
        }
        "chown" => Op::Chown {
            path: need_path()?,
            uid: opt_arg(c, &r.uid)?,
            gid: opt_arg(c, &r.gid)?,
        },
        "kill" => {
            let signal = match &r.signal {
                Some(s) => parse_signal(c, s)?,
                None => 15,
            };
            Op::Kill {
                target: need_target()?,
                signal,
            }
        }
        "ptrace" => Op::Ptrace {
            target: need_target()?,
        },
        "proc_status" => Op::ProcStatus {
            target: need_target()?,
        },
        "peercred" => Op::PeerCred {
            peer: need_target()?,
        },
        "setuid" => Op::Setuid {
            uid: need_id(&r.uid, "uid")?,
        },
        "setreuid" => Op::Setreuid {
            ruid: opt_arg(c, &r.ruid)?,
            euid: opt_arg(c, &r.euid)?,
        },
        "setresuid" => Op::Setresuid {
            ruid: opt_arg(c, &r.ruid)?,
            euid: opt_arg(c, &r.euid)?,
            suid: opt_arg(c, &r.suid)?,
        },
        "setgid" => Op::Setgid {
            gid: need_id(&r.gid, "gid")?,
        },
        "setregid" => Op::Setregid {
            rgid: opt_arg(c, &r.rgid)?,
            egid: opt_arg(c, &r.egid)?,
        },
        "setresgid" => Op::Setresgid {
            rgid: opt_arg(c, &r.rgid)?,
            egid: opt_arg(c, &r.egid)?,
            sgid: opt_arg(c, &r.sgid)?,
        },
        "setgroups" => {
            let g = r
                .groups
                .as_ref()
                .ok_or_else(|| c.err(o.span(), "op \"setgroups\" needs `groups`"))?;
            let mut v = Vec::new();
            for x in g.get_ref() {
                if !(0..u32::MAX as i64).contains(x) {
                    return Err(c.err(g.span(), format!("{x} is not a group id")));
                }
                v.push(*x as u32);
            }
            Op::Setgroups { groups: v }
        }
        "unshare" => {
            let name = match &r.name {
                Some(n) => {
                    if w.ns_by_name(n.get_ref()).is_some() || created.contains(n.get_ref()) {
                        return Err(c.err(
                            n.span(),
                            format!("a namespace called \"{}\" already exists", n.get_ref()),
                        ));
                    }
                    n.get_ref().clone()
                }
                None => format!("{}-ns{}", w.task(by).name, created.len() + 1),
            };
            created.push(name.clone());
            Op::UnshareUser { name }
        }
        "write_uid_map" | "write_gid_map" => {
            let target = match &r.target {
                Some(t) => task_ref(c, w, t)?,
                None => by,
            };
            let text = r
                .text
                .as_ref()
                .ok_or_else(|| c.err(o.span(), format!("op \"{kind}\" needs `text`")))?;
            Op::WriteMap {
                target,
                kind: if kind == "write_uid_map" {
                    MapKind::Uid
                } else {
                    MapKind::Gid
                },
                text: text.get_ref().clone(),
            }
        }
        "write_setgroups" => {
            let target = match &r.target {
                Some(t) => task_ref(c, w, t)?,
                None => by,
            };
            let text = r
                .text
                .as_ref()
                .ok_or_else(|| c.err(o.span(), "op \"write_setgroups\" needs `text`"))?;
            Op::WriteSetgroups {
                target,
                text: text.get_ref().clone(),
            }
        }
        "setns" | "capable" => {
            let ns = match (&r.ns, &r.target) {
                (Some(n), None) => match w.ns_by_name(n.get_ref()) {
                    Some(x) => x,
                    None if created.contains(n.get_ref()) => {
                        deferred_ns = Some(n.get_ref().clone());
                        w.init_ns()
                    }
                    None => {
                        return Err(
                            c.err(n.span(), format!("no namespace called \"{}\"", n.get_ref()))
                        )
                    }
                },
                (None, Some(t)) if kind == "setns" => {
                    let tr = task_ref(c, w, t)?;
                    w.task(tr).cred.user_ns
                }
                _ => {
                    return Err(c.err(
                        o.span(),
                        format!(
                            "op \"{kind}\" needs `ns` (a namespace name){}",
                            if kind == "setns" {
                                " or `target` (a process)"
                            } else {
                                ""
                            }
                        ),
                    ))
                }
            };
            if kind == "setns" {
                Op::Setns { ns }
            } else {
                let cs = r
                    .cap
                    .as_ref()
                    .ok_or_else(|| c.err(o.span(), "op \"capable\" needs `cap`"))?;
                let cap = Cap::parse(cs.get_ref()).ok_or_else(|| {
                    c.err(
                        cs.span(),
                        format!("unknown capability \"{}\"", cs.get_ref()),
                    )
                })?;
                Op::Capable { ns, cap }
            }
        }
        "no_new_privs" => Op::SetNoNewPrivs,
        "getids" => Op::GetIds,
        "add_key" => {
            let desc = r
                .description
                .as_ref()
                .map(|d| d.get_ref().clone())
                .unwrap_or_default();
            let name = r.name.as_ref().map(|n| n.get_ref().clone());
            if let Some(n) = &r.name {
                let nm = n.get_ref();
                if w.key_by_name(nm).is_some() || key_names.contains(nm) {
                    return Err(c.err(n.span(), format!("a key called \"{nm}\" already exists")));
                }
                if KeySpec::parse(nm).is_some() || nm.parse::<i64>().is_ok() {
                    return Err(c.err(
                        n.span(),
                        format!("key name \"{nm}\" must not be a number or an @ shorthand"),
                    ));
                }
                key_names.push(nm.clone());
            }
            Op::AddKey {
                ktype: key_type(c, &r.ktype)?,
                description: desc,
                payload: r
                    .payload
                    .as_ref()
                    .map(|p| p.get_ref().clone())
                    .unwrap_or_default(),
                keyring: need_key(c, w, o, &r.keyring, "keyring", &kind, key_names)?,
                name,
            }
        }
        "keyctl_read" => Op::KeyRead {
            key: need_key(c, w, o, &r.key, "key", &kind, key_names)?,
        },
        "keyctl_describe" => Op::KeyDescribe {
            key: need_key(c, w, o, &r.key, "key", &kind, key_names)?,
        },
        "keyctl_update" => Op::KeyUpdate {
            key: need_key(c, w, o, &r.key, "key", &kind, key_names)?,
            payload: r
                .payload
                .as_ref()
                .map(|p| p.get_ref().clone())
                .unwrap_or_default(),
        },
        "keyctl_search" => Op::KeySearch {
            keyring: need_key(c, w, o, &r.keyring, "keyring", &kind, key_names)?,
            ktype: key_type(c, &r.ktype)?,
            description: r
                .description
                .as_ref()
                .map(|d| d.get_ref().clone())
                .ok_or_else(|| c.err(o.span(), "op \"keyctl_search\" needs `description`"))?,
        },
        "keyctl_link" | "keyctl_unlink" => {
            let key = need_key(c, w, o, &r.key, "key", &kind, key_names)?;
            let keyring = need_key(c, w, o, &r.keyring, "keyring", &kind, key_names)?;
            if kind == "keyctl_link" {
                Op::KeyLink { key, keyring }
            } else {
                Op::KeyUnlink { key, keyring }
            }
        }
        "keyctl_setperm" => {
            let p = r
                .perm
                .as_ref()
                .ok_or_else(|| c.err(o.span(), "op \"keyctl_setperm\" needs `perm`"))?;
            Op::KeySetperm {
                key: need_key(c, w, o, &r.key, "key", &kind, key_names)?,
                perm: parse_perm(c, p)?,
            }
        }
        "keyctl_chown" => Op::KeyChown {
            key: need_key(c, w, o, &r.key, "key", &kind, key_names)?,
            uid: opt_arg(c, &r.uid)?,
            gid: opt_arg(c, &r.gid)?,
        },
        "keyctl_get_keyring_id" => Op::KeyGetId {
            key: need_key(c, w, o, &r.key, "key", &kind, key_names)?,
            create: r.create.unwrap_or(false),
        },
        _ => unreachable!("checked above"),
    };
    let expect = match &r.expect {
        Some(e) => Some(Expect::parse(e.get_ref()).ok_or_else(|| c.err(e.span(), format!("expect \"{}\": use allowed, denied, unknown or an errno name (EPERM, EACCES, …)", e.get_ref())))?),
        None => None,
    };
    // The op as written, for reports.
    let mut text = format!("{}: {kind}", r.by.get_ref());
    for (field, span) in &present {
        if let Some(span) = span {
            if *field == "create" {
                text.push_str(&format!(" create={}", r.create.unwrap_or(false)));
                continue;
            }
            if *field == "eaccess" {
                text.push_str(" eaccess");
                continue;
            }
            let raw = c.text.get(span.clone()).unwrap_or("?").trim_matches('"');
            text.push_str(&format!(" {field}={raw}"));
        }
    }
    if let Some(n) = &r.note {
        text.push_str(&format!("  # {n}"));
    }
    Ok(ScenarioOp {
        by,
        op,
        deferred_ns,
        text,
        expect,
        expect_output: r.expect_output.as_ref().map(|e| e.get_ref().clone()),
        line: c.line(&o.span()),
    })
}
