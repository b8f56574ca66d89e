//! The key operations of a model scenario, replayed on real key actors
//! ([`credns_sys::keys::KeyActor`]): one forked actor per model process, sharing the session
//! keyring the scenario installs for it, in its user namespace with its ids; the scenario's
//! keys made for real (thread and process keyrings, keys and keyrings linked where the scenario
//! links them), then chowned and given their masks; then every key op performed by its
//! process's actor. The answers come back in the model's output vocabulary (`key`, `desc`,
//! `payload`, `keys`), keys named by the scenario's names, so that [`crate::kernel::compare`]
//! holds them to the model's.
//!
//! What is not realised here (the scenario is then unrealisable, with the reason): key ops
//! after other ops (the actors do not follow the executor's credential changes), nested user
//! namespaces, processes whose ids differ between real, effective, saved and fs ids or whose
//! capabilities are not what their uid gives, keys linked into user keyrings at setup, keys
//! named by serial, request_key (its upcall is exercised by the upcall tests), and `@s`/`@us`
//! named by a process without a session keyring (each actor has one: the kernel gives every
//! forked process its parent's, and an empty anonymous one stands in for none).

use std::collections::{BTreeMap, HashMap};

use credns_model::{CapSet, KeyId, KeyRef, KeySpec, Op, Scenario, TaskRef, World};
use credns_sys::keys::{self as k, KeyActor, KeyCall, KeyReply, KeySerial};
use credns_sys::Errno;

use crate::kernel::{KernelAnswer, Unrealisable};

/// Whether `op` is a key operation (realised here, not by the executor).
pub fn is_key_op(op: &Op) -> bool {
    matches!(
        op,
        Op::AddKey { .. }
            | Op::KeyRead { .. }
            | Op::KeyDescribe { .. }
            | Op::KeyUpdate { .. }
            | Op::KeySearch { .. }
            | Op::KeyLink { .. }
            | Op::KeyUnlink { .. }
            | Op::KeySetperm { .. }
            | Op::KeyChown { .. }
            | Op::KeyGetId { .. }
            | Op::RequestKey { .. }
    )
}

fn setup<T>(what: &str, r: Result<Result<T, Errno>, credns_sys::Error>) -> Result<T, String> {
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!(
            "key setup: {what}: {}",
            credns_sys::errno_display(e)
        )),
        Err(e) => Err(format!("key setup: {what}: {e}")),
    }
}

fn serial_of(r: KeyReply) -> KeySerial {
    match r {
        KeyReply::Serial(s) => s,
        _ => -1,
    }
}

/// The scenario's keys made for real, and the actors.
struct Keys {
    actors: BTreeMap<usize, KeyActor>,
    /// Namespace keepers (dropped last).
    keepers: Vec<KeyActor>,
    serial: HashMap<KeyRef, KeySerial>,
    name: HashMap<KeySerial, String>,
    /// Tasks without a session keyring in the model.
    sessionless: Vec<usize>,
}

impl Drop for Keys {
    fn drop(&mut self) {
        self.actors.clear();
        self.keepers.clear();
        // Leave the calling thread in a fresh, empty session keyring: the scenario's go.
        let _ = k::join_new_session_keyring();
    }
}

fn check_world(w: &World) -> Result<(), Unrealisable> {
    let init = w.init_ns();
    for (_, t) in w.tasks() {
        let c = &t.cred;
        if c.uid != c.euid || c.uid != c.suid || c.uid != c.fsuid {
            return Err(format!("key ops: process {} has differing uids", t.name));
        }
        if c.gid != c.egid || c.gid != c.sgid || c.gid != c.fsgid {
            return Err(format!("key ops: process {} has differing gids", t.name));
        }
        // Root keeps what it has (the executor cut the initial namespace's to the test
        // process's, which the actors have); any other uid has none after setresuid.
        let root = w.from_kuid(c.user_ns, c.uid) == Some(0);
        let full_in_ns = c.user_ns == init || c.cap_effective.bits() == CapSet::FULL.bits();
        // In a namespace without a uid_map the process is the one that unshared it: its
        // owner, with every capability there.
        let mapless = c.user_ns != init && w.ns(c.user_ns).uid_map.is_empty();
        if mapless {
            let n = w.ns(c.user_ns);
            if (c.uid, c.gid) != (n.owner, n.group) || !full_in_ns {
                return Err(format!(
                    "key ops: process {} in a namespace without maps is not its unsharer",
                    t.name
                ));
            }
        } else if (root && !full_in_ns) || (!root && c.cap_effective.bits() != 0) {
            return Err(format!(
                "key ops: process {} has capabilities other than its uid gives",
                t.name
            ));
        }
        if c.user_ns != init && w.ns(c.user_ns).parent != Some(init) {
            return Err(format!("key ops: process {} in a nested namespace", t.name));
        }
    }
    for (_, key) in w.keys() {
        if key.uid_keyring && !key.links.is_empty() {
            return Err("key ops: keys linked into a user keyring at setup".into());
        }
    }
    Ok(())
}

/// Where each key is first linked (a keyring of the world, in creation order), or installed.
fn parents(w: &World) -> HashMap<KeyRef, KeyRef> {
    let mut p = HashMap::new();
    for (r, key) in w.keys() {
        for l in &key.links {
            p.entry(*l).or_insert(r);
        }
    }
    p
}

impl Keys {
    fn build(w: &World) -> Result<Keys, String> {
        let init = w.init_ns();
        let mut me = Keys {
            actors: BTreeMap::new(),
            keepers: Vec::new(),
            serial: HashMap::new(),
            name: HashMap::new(),
            sessionless: Vec::new(),
        };
        // Session groups: the calling thread joins each session keyring, then forks the actors
        // of the processes that have it.
        let mut groups: BTreeMap<Option<KeyRef>, Vec<TaskRef>> = BTreeMap::new();
        for (t, task) in w.tasks() {
            groups.entry(task.keyrings.session).or_default().push(t);
        }
        for (ses, tasks) in &groups {
            let s = match ses {
                None => k::join_new_session_keyring().map_err(|e| format!("key setup: {e}"))?,
                Some(r) => {
                    let d = &w.key(*r).description;
                    let name = std::ffi::CString::new(d.as_str())
                        .map_err(|_| format!("key setup: keyring name {d:?}"))?;
                    let s = k::session::join_session_keyring(&name)
                        .map_err(|e| format!("key setup: join {d:?}: {e}"))?;
                    // A keyring of that name already there would have been joined: only a
                    // fresh one is ours to change.
                    let fresh = k::read(s).map(|b| b.is_empty()).unwrap_or(false);
                    if !fresh {
                        return Err(format!(
                            "key setup: a keyring named {d:?} exists on this machine already"
                        ));
                    }
                    me.serial.insert(*r, s);
                    me.name.insert(s, w.key(*r).label());
                    s
                }
            };
            for t in tasks {
                let a = KeyActor::spawn().map_err(|e| format!("key setup: spawn: {e}"))?;
                me.actors.insert(t.index(), a);
                if ses.is_none() {
                    me.sessionless.push(t.index());
                }
            }
            let _ = s;
        }
        // Thread and process keyrings, made by their actors while still root.
        for (t, task) in w.tasks() {
            for (r, spec) in [
                (task.keyrings.thread, KeySpec::Thread),
                (task.keyrings.process, KeySpec::Process),
            ] {
                if let Some(r) = r {
                    let a = me.actors.get_mut(&t.index()).expect("actor");
                    let s = serial_of(setup(
                        "thread/process keyring",
                        a.call(&KeyCall::GetKeyringId(spec.id(), true)),
                    )?);
                    me.serial.insert(r, s);
                    me.name.insert(s, w.key(r).label());
                }
            }
        }
        // The other keys, each by a root actor into the keyring that first links it.
        let parent = parents(w);
        let any = *me.actors.keys().next().ok_or("key setup: no process")?;
        let mut todo: Vec<KeyRef> = w
            .keys()
            .filter(|(r, key)| !key.uid_keyring && !me.serial.contains_key(r))
            .map(|(r, _)| r)
            .collect();
        while !todo.is_empty() {
            let before = todo.len();
            let mut rest = Vec::new();
            for r in todo {
                let Some((pr, p)) = parent
                    .get(&r)
                    .and_then(|p| me.serial.get(p).map(|s| (*p, *s)))
                else {
                    rest.push(r);
                    continue;
                };
                let key = w.key(r);
                let call = KeyCall::AddKey {
                    ktype: key.ktype.name().into(),
                    description: key.description.clone(),
                    payload: key.payload.clone(),
                    keyring: p,
                };
                let by = possessor(w, pr).unwrap_or(any);
                let a = me.actors.get_mut(&by).expect("actor");
                let s = serial_of(setup("add_key", a.call(&call))?);
                me.serial.insert(r, s);
                me.name.insert(s, key.label());
            }
            if rest.len() == before {
                return Err("key setup: keys linked nowhere the kernel can reach".into());
            }
            todo = rest;
        }
        // Further links, then owners and masks, innermost (latest) first.
        for (r, key) in w.keys() {
            for l in &key.links {
                if parent.get(l) != Some(&r) {
                    let (kr, ks) = (me.serial[&r], me.serial[l]);
                    let a = me
                        .actors
                        .get_mut(&possessor(w, r).unwrap_or(any))
                        .expect("actor");
                    setup("link", a.call(&KeyCall::Link(ks, kr)))?;
                }
            }
        }
        let mut all: Vec<KeyRef> = me.serial.keys().copied().collect();
        all.sort_by_key(|r| std::cmp::Reverse(w.key(*r).serial));
        for r in all {
            let key = w.key(r);
            let s = me.serial[&r];
            let owner = possessor(w, r).unwrap_or(any);
            let a = me.actors.get_mut(&owner).expect("actor");
            setup(
                "chown",
                a.call(&KeyCall::Chown(s, Some(key.uid.0), Some(key.gid.0))),
            )?;
            setup("setperm", a.call(&KeyCall::Setperm(s, key.perm)))?;
        }
        // Namespaces (each kept by an actor of its owner), then every process's ids.
        let mut keeper_pid = HashMap::new();
        for (t, task) in w.tasks() {
            let ns = task.cred.user_ns;
            if ns != init && w.ns(ns).uid_map.is_empty() {
                // Its unsharer: the process itself, with its host ids, unshares and stays there.
                if keeper_pid.insert(ns, credns_sys::Pid(0)).is_some() {
                    return Err("key ops: two processes in one namespace without maps".into());
                }
                let a = me.actors.get_mut(&t.index()).expect("actor");
                let groups: Vec<u32> = task.cred.groups.iter().map(|g| g.0).collect();
                setup(
                    "set ids",
                    a.set_ids(task.cred.uid.0, task.cred.gid.0, &groups),
                )?;
                setup("unshare", a.unshare_userns())?;
                continue;
            }
            if ns != init && !keeper_pid.contains_key(&ns) {
                let n = w.ns(ns);
                let mut kp = KeyActor::spawn().map_err(|e| format!("key setup: spawn: {e}"))?;
                setup("keeper ids", kp.set_ids(n.owner.0, n.group.0, &[]))?;
                setup("unshare", kp.unshare_userns())?;
                kp.write_maps(&n.uid_map.to_write_format(), &n.gid_map.to_write_format())
                    .map_err(|e| format!("key setup: maps of {}: {e}", n.name))?;
                keeper_pid.insert(ns, kp.pid());
                me.keepers.push(kp);
            }
            let a = me.actors.get_mut(&t.index()).expect("actor");
            if ns != init {
                setup("setns", a.setns_userns(keeper_pid[&ns]))?;
            }
            let uid = w
                .from_kuid(ns, task.cred.uid)
                .ok_or("key setup: unmapped uid")?;
            let gid = w
                .from_kgid(ns, task.cred.gid)
                .ok_or("key setup: unmapped gid")?;
            let groups: Vec<u32> = task
                .cred
                .groups
                .iter()
                .filter_map(|g| w.from_kgid(ns, *g))
                .collect();
            setup("set ids", a.set_ids(uid, gid, &groups))?;
        }
        Ok(me)
    }

    fn resolve(&self, w: &World, id: &KeyId) -> Result<KeySerial, Unrealisable> {
        match id {
            KeyId::Special(s) => Ok(s.id()),
            KeyId::Serial(n) if *n <= 0 => Ok(*n),
            KeyId::Serial(_) => Err("key ops: a key named by serial".into()),
            KeyId::Name(n) => match w.key_by_name(n).and_then(|r| self.serial.get(&r)) {
                Some(s) => Ok(*s),
                None => Ok(self
                    .name
                    .iter()
                    .find(|(_, v)| *v == n)
                    .map_or(0x7fff_0000, |(s, _)| *s)),
            },
        }
    }
}

/// A process that possesses `r` (one of its keyrings is `r` or links it), if any.
fn possessor(w: &World, r: KeyRef) -> Option<usize> {
    w.tasks()
        .find(|(_, t)| {
            [t.keyrings.thread, t.keyrings.process, t.keyrings.session]
                .into_iter()
                .flatten()
                .any(|k| k == r || reaches(w, k, r))
        })
        .map(|(t, _)| t.index())
}

/// Whether keyring `from` links `to`, directly or through keyrings.
fn reaches(w: &World, from: KeyRef, to: KeyRef) -> bool {
    let mut seen = vec![from];
    let mut i = 0;
    while i < seen.len() {
        for l in &w.key(seen[i]).links {
            if *l == to {
                return true;
            }
            if !seen.contains(l) {
                seen.push(*l);
            }
        }
        i += 1;
    }
    false
}

/// The key ops of `s` (its indices in `s.ops`) on real key actors: the kernel's answer to each,
/// in the model's output vocabulary. `worlds[i]` is the model's world before op `i` (to
/// resolve names) and `outputs[i]` its output (only its `serial`, the model's own numbering, is
/// taken from it, for a key the kernel found under the same name).
pub fn replay(
    s: &Scenario,
    worlds: &[World],
    outputs: &[Option<credns_model::Output>],
) -> Result<Result<BTreeMap<usize, KernelAnswer>, Unrealisable>, String> {
    let key_ops: Vec<usize> = (0..s.ops.len())
        .filter(|i| is_key_op(&s.ops[*i].op))
        .collect();
    if let Some(last) = key_ops.last() {
        if (0..*last).any(|i| !is_key_op(&s.ops[i].op)) {
            return Ok(Err("key ops after other ops".into()));
        }
    }
    if let Err(why) = check_world(&s.world) {
        return Ok(Err(why));
    }
    let mut keys = Keys::build(&s.world)?;
    let mut out = BTreeMap::new();
    for &i in &key_ops {
        let w = &worlds[i];
        let by = s.ops[i].by.index();
        let names_special =
            |id: &KeyId| matches!(id, KeyId::Special(KeySpec::Session | KeySpec::UserSession));
        let call = match &s.ops[i].op {
            Op::AddKey {
                ktype,
                description,
                payload,
                keyring,
                ..
            } => {
                if keys.sessionless.contains(&by) && names_special(keyring) {
                    return Ok(Err(
                        "key ops: @s or @us of a process without a session keyring".into(),
                    ));
                }
                KeyCall::AddKey {
                    ktype: ktype.name().into(),
                    description: description.clone(),
                    payload: payload.clone().into_bytes(),
                    keyring: match keys.resolve(w, keyring) {
                        Ok(x) => x,
                        Err(why) => return Ok(Err(why)),
                    },
                }
            }
            Op::KeySearch {
                keyring,
                ktype,
                description,
            } => {
                if keys.sessionless.contains(&by) && names_special(keyring) {
                    return Ok(Err(
                        "key ops: @s or @us of a process without a session keyring".into(),
                    ));
                }
                KeyCall::Search {
                    keyring: match keys.resolve(w, keyring) {
                        Ok(x) => x,
                        Err(why) => return Ok(Err(why)),
                    },
                    ktype: ktype.name().into(),
                    description: description.clone(),
                }
            }
            Op::RequestKey { .. } => {
                return Ok(Err(
                    "request_key (its upcall is tested by the upcall tests)".into(),
                ))
            }
            op => {
                let one = |id: &KeyId| keys.resolve(w, id);
                let r = match op {
                    Op::KeyRead { key } => one(key).map(KeyCall::Read),
                    Op::KeyDescribe { key } => one(key).map(KeyCall::Describe),
                    Op::KeyUpdate { key, payload } => {
                        one(key).map(|k| KeyCall::Update(k, payload.clone().into_bytes()))
                    }
                    Op::KeyLink { key, keyring } => {
                        one(key).and_then(|a| one(keyring).map(|b| KeyCall::Link(a, b)))
                    }
                    Op::KeyUnlink { key, keyring } => {
                        one(key).and_then(|a| one(keyring).map(|b| KeyCall::Unlink(a, b)))
                    }
                    Op::KeySetperm { key, perm } => one(key).map(|k| KeyCall::Setperm(k, *perm)),
                    Op::KeyChown { key, uid, gid } => {
                        one(key).map(|k| KeyCall::Chown(k, *uid, *gid))
                    }
                    Op::KeyGetId { key, create } => {
                        if keys.sessionless.contains(&by) && names_special(key) {
                            Err("key ops: @s or @us of a process without a session keyring".into())
                        } else {
                            one(key).map(|k| KeyCall::GetKeyringId(k, *create))
                        }
                    }
                    _ => unreachable!("is_key_op"),
                };
                match r {
                    Ok(c) => c,
                    Err(why) => return Ok(Err(why)),
                }
            }
        };
        let actor = keys.actors.get_mut(&by).expect("actor");
        let reply = actor
            .call(&call)
            .map_err(|e| format!("key actor of op #{i}: {e}"))?;
        let answer = match reply {
            Err(e) => KernelAnswer::Refused(e),
            Ok(r) => KernelAnswer::Done(values(&mut keys, w, &s.ops[i].op, by, r, &outputs[i])?),
        };
        out.insert(i, answer);
    }
    Ok(Ok(out))
}

/// A successful reply as the model's output values.
fn values(
    keys: &mut Keys,
    w: &World,
    op: &Op,
    by: usize,
    r: KeyReply,
    model: &Option<credns_model::Output>,
) -> Result<Vec<(String, String)>, String> {
    Ok(match r {
        KeyReply::Done => Vec::new(),
        KeyReply::Serial(s) => {
            let label = match keys.name.get(&s) {
                Some(n) => n.clone(),
                None => {
                    // A key the scenario did not make: an added one takes the op's name, a user
                    // keyring its description (as the model names it).
                    let n = match op {
                        Op::AddKey { description, .. } => model
                            .as_ref()
                            .and_then(|o| o.get("key"))
                            .map_or(description.clone(), str::to_owned),
                        _ => {
                            let a = keys.actors.get_mut(&by).expect("actor");
                            match a.call(&KeyCall::Describe(s)) {
                                Ok(Ok(KeyReply::Bytes(b))) => String::from_utf8_lossy(&b)
                                    .rsplit(';')
                                    .next()
                                    .unwrap_or_default()
                                    .trim_end_matches('\0')
                                    .to_owned(),
                                other => format!("(serial {s}, not describable: {other:?})"),
                            }
                        }
                    };
                    keys.name.insert(s, n.clone());
                    n
                }
            };
            let mut v = vec![("key".to_owned(), label.clone())];
            // The serial is the kernel's own number; the model numbers its keys itself. It is
            // compared through the key's name: the model's serial of the key named so.
            if let Some(ms) = model.as_ref().and_then(|o| o.get("serial")) {
                let same = model.as_ref().and_then(|o| o.get("key")) == Some(label.as_str());
                v.push((
                    "serial".into(),
                    if same {
                        ms.to_owned()
                    } else {
                        format!("(kernel serial {s})")
                    },
                ));
            }
            v
        }
        KeyReply::Bytes(b) => match op {
            Op::KeyDescribe { .. } => vec![(
                "desc".into(),
                String::from_utf8_lossy(&b)
                    .trim_end_matches('\0')
                    .to_owned(),
            )],
            Op::KeyRead { key } if is_keyring(keys, w, key) => {
                let names: Vec<String> = b
                    .chunks_exact(4)
                    .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                    .map(|s| keys.name.get(&s).cloned().unwrap_or(format!("serial {s}")))
                    .collect();
                vec![("keys".into(), names.join(","))]
            }
            _ => vec![("payload".into(), String::from_utf8_lossy(&b).into_owned())],
        },
    })
}

fn is_keyring(keys: &Keys, w: &World, id: &KeyId) -> bool {
    match id {
        KeyId::Special(_) => true,
        KeyId::Name(n) => w
            .key_by_name(n)
            .map(|r| w.key(r).is_keyring())
            .unwrap_or_else(|| keys.name.values().any(|v| v == n)),
        KeyId::Serial(_) => false,
    }
}
