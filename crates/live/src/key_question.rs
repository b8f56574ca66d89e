//! `credns explain PID key KEY --perm PERM`: may a process use a key in this way?
//!
//! What is read: the key's type, owner, group and mask, by `KEYCTL_DESCRIBE` from a key actor
//! with the process's host ids (the kernel shows a key only to those it grants VIEW, and grants
//! root nothing extra), or from root's own ids when the process may not view it.
//!
//! What cannot be read: whether the process *possesses* the key (reaches it from its thread,
//! process or session keyring). No interface shows another process's keyrings, so the caller
//! says so with `--possessed`; without it the key is taken as not possessed, and the answer
//! lists that assumption.
//!
//! The kernel is asked by a key actor that has entered the process's user namespace with its
//! ids and a fresh session keyring of its own (possessing nothing), into which the key is
//! linked first when `--possessed` is given. view, read, search and link are asked (link into
//! the actor's own session keyring, which dies with it); write and setattr would change the
//! key and are answered by the model alone.

use credns_idmap::{Kgid, Kuid};
use credns_model::{KeyId, KeySpec, KeyType, Op, Verdict};
use credns_sys::keys::{KeyActor, KeyCall, KeyReply, KeySerial, KEY_SPEC_SESSION_KEYRING};
use credns_sys::{Errno, Pid, ProcFs};
use serde::Serialize;

use crate::explain::{Explanation, KernelAnswer};
use crate::model_world::{build, Built, ASSUMED};
use crate::process::ProcessSnapshot;
use crate::scenario_out::{scenario_text, SavedKey, SavedOp};
use crate::Error;

/// One permission of `key_task_permission` (`enum key_need_perm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyPerm {
    /// `KEY_NEED_VIEW`: describe it.
    View,
    /// `KEY_NEED_READ`: read its payload (or a keyring's list).
    Read,
    /// `KEY_NEED_WRITE`: update it.
    Write,
    /// `KEY_NEED_SEARCH`: find it, or search in it.
    Search,
    /// `KEY_NEED_LINK`: link it into a keyring.
    Link,
    /// `KEY_NEED_SETATTR`: change its mask, owner or timeout.
    Setattr,
}

impl KeyPerm {
    /// From its name (`view`, `read`, `write`, `search`, `link`, `setattr`).
    pub fn parse(s: &str) -> Option<KeyPerm> {
        Some(match s {
            "view" => KeyPerm::View,
            "read" => KeyPerm::Read,
            "write" => KeyPerm::Write,
            "search" => KeyPerm::Search,
            "link" => KeyPerm::Link,
            "setattr" => KeyPerm::Setattr,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            KeyPerm::View => "view",
            KeyPerm::Read => "read",
            KeyPerm::Write => "write",
            KeyPerm::Search => "search",
            KeyPerm::Link => "link",
            KeyPerm::Setattr => "setattr",
        }
    }
}

/// The question: may process `actor` use key `key` with `perm`?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyQuestion {
    /// The key's serial.
    pub key: KeySerial,
    /// The permission.
    pub perm: KeyPerm,
    /// The process reaches the key from its own keyrings (credns cannot see that).
    pub possessed: bool,
}

/// A description that no key has: a search that is permitted finds nothing (ENOKEY).
const ABSENT: &str = "credns-explain-absent";

/// What `KEYCTL_DESCRIBE` said of the key, ids as host (initial namespace) ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescribedKey {
    /// Its type.
    pub ktype: KeyType,
    /// Its owner's kuid.
    pub uid: u32,
    /// Its group's kgid.
    pub gid: u32,
    /// Its mask.
    pub perm: u32,
    /// Its description.
    pub description: String,
}

/// `type;uid;gid;perm;description` as KEYCTL_DESCRIBE prints it.
pub fn parse_description(key: KeySerial, s: &str) -> Result<DescribedKey, Error> {
    let bad = |what: &str| Error::Model(format!("key {key}: KEYCTL_DESCRIBE said {s:?}: {what}"));
    let mut parts = s.splitn(5, ';');
    let mut next = |what: &str| parts.next().ok_or_else(|| bad(what));
    let ty = next("no type")?;
    let ktype = KeyType::parse(ty).ok_or_else(|| {
        Error::Model(format!(
            "key {key} is a {ty:?} key: the model has user keys and keyrings only"
        ))
    })?;
    let uid = next("no owner")?
        .parse()
        .map_err(|_| bad("the owner is not a number"))?;
    let gid = next("no group")?
        .parse()
        .map_err(|_| bad("the group is not a number"))?;
    let perm = u32::from_str_radix(next("no mask")?, 16).map_err(|_| bad("the mask is not hex"))?;
    let description = next("no description")?.to_string();
    Ok(DescribedKey {
        ktype,
        uid,
        gid,
        perm,
        description,
    })
}

/// Ask `q` of process `actor`.
pub fn explain_key(procfs: &ProcFs, actor: u32, q: KeyQuestion) -> Result<Explanation, Error> {
    let a = ProcessSnapshot::take(procfs, actor)?;
    let key = describe_as(&a, q.key)?;
    let mut built = build(&[&a])?;
    let ta = built.tasks[0];
    place_key(&mut built, &key, q.possessed)?;
    let op = model_op(q.perm, &key);
    let mut model = built.world.clone().op(ta, &op);
    // The payload and a keyring's contents are not read: what the model would print of them
    // is not the key's.
    model.output = None;
    let kernel = ask_kernel(procfs, &a, &built, q, &key);
    let agree = agreement(&model.result, &kernel);
    let mut assumed: Vec<String> = ASSUMED.iter().map(|s| s.to_string()).collect();
    assumed.push(if q.possessed {
        format!("pid {} possesses key {} (--possessed)", a.pid, q.key)
    } else {
        format!(
            "pid {} does not possess key {} (credns cannot see another process's keyrings; \
             --possessed says it does)",
            a.pid, q.key
        )
    });
    let question = format!(
        "may {} {} key {} ({} {:?}, owner {}, group {}, mask {:08x})?",
        crate::explain::who(&a),
        q.perm.name(),
        q.key,
        key.ktype.name(),
        key.description,
        key.uid,
        key.gid,
        key.perm
    );
    let saved = SavedOp::Key {
        key: SavedKey {
            ktype: key.ktype,
            description: key.description.clone(),
            uid: key.uid,
            gid: key.gid,
            perm: key.perm,
            possessed: q.possessed,
        },
        op: op.clone(),
    };
    let expect = crate::explain::expectation(&kernel);
    let scenario =
        scenario_text(&built, None, ta, None, &saved, expect, &question).map_err(|e| e.to_string());
    Ok(Explanation {
        question,
        model,
        kernel,
        agree,
        assumed,
        scenario,
    })
}

/// Describe the key as the process's host ids would see it, else as root.
fn describe_as(a: &ProcessSnapshot, key: KeySerial) -> Result<DescribedKey, Error> {
    let s = &a.status;
    let as_process = describe_with(Some((s.uid[3], s.gid[3], &s.groups)), key)?;
    let text = match as_process {
        Ok(t) => t,
        Err(e) if e == Errno::ACCESS => match describe_with(None, key)? {
            Ok(t) => t,
            Err(e) if e == Errno::ACCESS => {
                return Err(Error::Model(format!(
                    "key {key}: neither pid {}'s ids nor root's may view it (EACCES), so its \
                     owner and mask are hidden from credns",
                    a.pid
                )))
            }
            Err(e) => return Err(Error::Model(format!("key {key}: {e}"))),
        },
        Err(e) if e == Errno::NOKEY => return Err(Error::Model(format!("no key {key} (ENOKEY)"))),
        Err(e) => return Err(Error::Model(format!("key {key}: {e}"))),
    };
    parse_description(key, &text)
}

/// KEYCTL_DESCRIBE from a fresh actor in the initial namespace with `ids` (fsuid, fsgid,
/// groups as host ids), or root's own.
fn describe_with(
    ids: Option<(u32, u32, &Vec<u32>)>,
    key: KeySerial,
) -> Result<Result<String, Errno>, Error> {
    let mut actor = KeyActor::spawn()?;
    if let Some((uid, gid, groups)) = ids {
        if let Err(e) = actor.set_ids(uid, gid, groups)? {
            return Ok(Err(e));
        }
    }
    Ok(actor.call(&KeyCall::Describe(key))?.map(|r| match r {
        KeyReply::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
        other => format!("{other:?}"),
    }))
}

/// The key in the model: linked into the task's session keyring if possessed, else into a
/// keyring only root's user keyring holds (alive, and not reachable from the task's keyrings).
fn place_key(built: &mut Built, key: &DescribedKey, possessed: bool) -> Result<(), Error> {
    let w = &mut built.world;
    let ta = built.tasks[0];
    let model = |e: credns_model::Error| Error::Model(e.to_string());
    // Real processes have a session keyring (the kernel gives one at the first need; login
    // gives one at once); with it the user-session keyring is not searched.
    let session = w.task_keyring(ta, KeySpec::Session).map_err(model)?;
    let k = w.alloc_key(
        Some("key"),
        key.ktype,
        &key.description,
        Kuid(key.uid),
        Kgid(key.gid),
        key.perm,
        b"",
    );
    let holder = if possessed {
        session
    } else {
        let init = w.init_ns();
        w.user_keyrings(init, Kuid(0)).map_err(model)?.0
    };
    w.link_key(holder, k).map_err(model)
}

fn model_op(perm: KeyPerm, key: &DescribedKey) -> Op {
    let k = KeyId::Name("key".into());
    match perm {
        KeyPerm::View => Op::KeyDescribe { key: k },
        KeyPerm::Read => Op::KeyRead { key: k },
        KeyPerm::Write => Op::KeyUpdate {
            key: k,
            payload: "x".into(),
        },
        KeyPerm::Search => Op::KeySearch {
            keyring: k,
            ktype: KeyType::User,
            description: ABSENT.into(),
        },
        KeyPerm::Link => Op::KeyLink {
            key: k,
            keyring: KeyId::Special(KeySpec::Session),
        },
        KeyPerm::Setattr => Op::KeySetperm {
            key: k,
            perm: key.perm,
        },
    }
}

/// A search that is permitted and finds nothing answers ENOKEY: for the question that is
/// "allowed", on both sides alike, so the verdicts are compared as they are.
fn agreement(model: &Verdict, kernel: &KernelAnswer) -> Option<bool> {
    crate::explain::agreement(model, kernel)
}

fn ask_kernel(
    procfs: &ProcFs,
    a: &ProcessSnapshot,
    built: &Built,
    q: KeyQuestion,
    key: &DescribedKey,
) -> KernelAnswer {
    let not_asked = |reason: String| KernelAnswer::NotAsked { reason };
    if key_call(q.perm, q.key).is_none() {
        return not_asked("asking the kernel would change the key".into());
    }
    let mut actor = match KeyActor::spawn() {
        Ok(x) => x,
        Err(e) => return not_asked(format!("no key helper: {e}")),
    };
    let (serial, on) = if q.possessed {
        match replica(&mut actor, key) {
            Ok(serial) => (serial, ", on a replica of it that the helper possesses"),
            Err(r) => return not_asked(r),
        }
    } else {
        (q.key, "")
    };
    if let Err(r) = actor_as(procfs, a, built, &mut actor) {
        return not_asked(r);
    }
    let Some((call, kc)) = key_call(q.perm, serial) else {
        return not_asked("asking the kernel would change the key".into());
    };
    let call = format!("{call}{on}");
    match actor.call(&kc) {
        Ok(Ok(_)) => KernelAnswer::Allowed { call },
        Ok(Err(e)) => KernelAnswer::Denied {
            call,
            errno: crate::explain::errno_name(e),
        },
        Err(e) => not_asked(format!("key helper: {e}")),
    }
}

/// The call that asks `perm` of key `serial` without changing it; none for write and
/// setattr.
fn key_call(perm: KeyPerm, serial: KeySerial) -> Option<(String, KeyCall)> {
    Some(match perm {
        KeyPerm::View => (
            format!("keyctl describe {serial}"),
            KeyCall::Describe(serial),
        ),
        KeyPerm::Search => (
            format!("keyctl search {serial} user {ABSENT}"),
            KeyCall::Search {
                keyring: serial,
                ktype: "user".into(),
                description: ABSENT.into(),
            },
        ),
        KeyPerm::Link => (
            format!("keyctl link {serial} @s (the helper's own session keyring)"),
            KeyCall::Link(serial, KEY_SPEC_SESSION_KEYRING),
        ),
        KeyPerm::Read => (format!("keyctl read {serial}"), KeyCall::Read(serial)),
        KeyPerm::Write | KeyPerm::Setattr => return None,
    })
}

/// Possession cannot be borrowed from another process (its keyrings are out of reach, and
/// linking the key needs LINK, which keys seldom grant to others), so the helper makes, as
/// root, a key of the same type, owner, group and mask in its own session keyring: what
/// `key_task_permission` reads is the same. It dies with the helper.
fn replica(actor: &mut KeyActor, key: &DescribedKey) -> Result<KeySerial, String> {
    let fail =
        |what: &str, e: String| format!("the replica of the key could not be made ({what}: {e})");
    let payload = match key.ktype {
        KeyType::User => b"credns-explain".to_vec(),
        KeyType::Keyring => Vec::new(),
    };
    let add = KeyCall::AddKey {
        ktype: key.ktype.name().into(),
        description: format!("credns-explain-replica-{}", std::process::id()),
        payload,
        keyring: KEY_SPEC_SESSION_KEYRING,
    };
    let serial = match actor.call(&add) {
        Ok(Ok(KeyReply::Serial(s))) => s,
        Ok(Ok(other)) => return Err(fail("add_key", format!("{other:?}"))),
        Ok(Err(e)) => return Err(fail("add_key", crate::explain::errno_name(e))),
        Err(e) => return Err(fail("add_key", e.to_string())),
    };
    // Owner first: the mask may take SETATTR from everyone but the possessor.
    for c in [
        KeyCall::Chown(serial, Some(key.uid), Some(key.gid)),
        KeyCall::Setperm(serial, key.perm),
    ] {
        match actor.call(&c) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(fail("keyctl", crate::explain::errno_name(e))),
            Err(e) => return Err(fail("keyctl", e.to_string())),
        }
    }
    Ok(serial)
}

/// A key actor in `a`'s user namespace with its filesystem ids and groups (what
/// `key_task_permission` reads), and a session keyring of its own.
fn actor_as(
    procfs: &ProcFs,
    a: &ProcessSnapshot,
    built: &Built,
    actor: &mut KeyActor,
) -> Result<(), String> {
    let creds = crate::explain::helper_creds(a, built)?;
    if a.userns().is_some() {
        // The actor enters the namespace of the process itself, checked to be the one read.
        let pid = Pid(a.pid as i32);
        let now = credns_sys::UserNsFd::open(procfs, pid)
            .and_then(|fd| fd.id())
            .map_err(|e| format!("pid {}: {e}", a.pid))?;
        if Some(now) != a.userns() {
            return Err(format!(
                "pid {} left its user namespace while credns read it",
                a.pid
            ));
        }
        match actor.setns_userns(pid) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("the key helper could not enter it: {e}")),
            Err(e) => return Err(format!("key helper: {e}")),
        }
    }
    match actor.set_ids(creds.uid[3], creds.gid[3], &creds.groups) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!(
            "the key helper could not take pid {}'s ids: {e}",
            a.pid
        )),
        Err(e) => Err(format!("key helper: {e}")),
    }
}
