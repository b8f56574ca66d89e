//! Keys, differentially: generated cases (a shared session keyring, actors with thread and
//! process keyrings in the host and in user namespaces, nested keyrings with random owners,
//! groups and masks, then key operations by the actors) run on the real kernel and in
//! `credns_model`; every operation's outcome (allowed or errno, and the serial found, the
//! payload read, the description) must agree. A mismatch prints the case as a scenario TOML
//! with the kernel's answers as expectations. Model `Unknown`s are counted and printed, and
//! fail the test unless their reason is on `MAY_BE_UNKNOWN`.
//!
//! Needs root. CREDNS_SEED replays a run (the seed is new each run and printed); CREDNS_CONFORMANCE_SCALE multiplies the number
//! of cases.

use std::collections::{BTreeMap, HashMap};

use credns_conformance::gen::Rng;
use credns_conformance::keys_gen::{Case, GenOp, GenRef, Place};
use credns_conformance::{announce_seed, needs_root, scaled};
use credns_model::{Scenario, Verdict};
use credns_sys::keys::{self as k, KeyActor, KeyCall, KeyReply, KeySerial};
use credns_sys::Errno;

/// Generated cases per run at scale 1 (CREDNS_CONFORMANCE_SCALE multiplies it).
const CASES: usize = 6_000;

/// Model Unknowns allowed (a part of the reason, and why the kernel's answer is not decided
/// by the case): every other Unknown fails the test. An op after an allowed Unknown is not
/// compared (the model cannot follow the world past it); an op whose key an earlier add_key
/// failed to make on both sides has no key to act on and is counted as not run.
const MAY_BE_UNKNOWN: &[(&str, &str)] = &[
    (
        "RCU grace period",
        "a key whose last link went is freed by the key garbage collector after an RCU grace \
         period: until then a lookup by serial may still find it, so the answer depends on timing",
    ),
    (
        "awaiting garbage collection",
        "a key linked only from keyrings nothing references any more stays reachable until the \
         key garbage collector's work item runs (key_garbage_collector): timing again",
    ),
];

/// What the kernel answered to one op (`None`: not run, its key was never made).
type KernelAnswer = Option<Result<KeyReply, Errno>>;

struct Names {
    by_name: HashMap<String, KeySerial>,
    by_serial: HashMap<KeySerial, String>,
}

impl Names {
    fn insert(&mut self, name: &str, s: KeySerial) {
        self.by_name.insert(name.to_string(), s);
        self.by_serial.insert(s, name.to_string());
    }
}

fn special(s: &str) -> KeySerial {
    match s {
        "@t" => k::KEY_SPEC_THREAD_KEYRING,
        "@p" => k::KEY_SPEC_PROCESS_KEYRING,
        "@s" => k::KEY_SPEC_SESSION_KEYRING,
        "@u" => k::KEY_SPEC_USER_KEYRING,
        _ => k::KEY_SPEC_USER_SESSION_KEYRING,
    }
}

fn resolve(n: &Names, r: &GenRef) -> Option<KeySerial> {
    match r {
        GenRef::Name(x) => n.by_name.get(x).copied(),
        GenRef::Special(s) => Some(special(s)),
        GenRef::Bogus => Some(99),
    }
}

fn must<T>(what: &str, r: Result<Result<T, Errno>, credns_sys::Error>) -> Result<T, String> {
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("setup: {what}: {}", credns_sys::errno_display(e))),
        Err(e) => Err(format!("setup: {what}: {e}")),
    }
}

fn serial_of(r: KeyReply) -> KeySerial {
    match r {
        KeyReply::Serial(s) => s,
        _ => -1,
    }
}

/// Build the case on the kernel and run its ops. The caller's thread joins a fresh session
/// keyring first; everything the case makes hangs off it or off the actors, and goes away
/// with them.
fn run_kernel(c: &Case) -> Result<(Vec<KernelAnswer>, Names), String> {
    let s = k::join_new_session_keyring().map_err(|e| format!("join session keyring: {e}"))?;
    let mut names = Names {
        by_name: HashMap::new(),
        by_serial: HashMap::new(),
    };
    names.insert("S", s);
    let mut actors: Vec<KeyActor> = Vec::new();
    for _ in &c.actors {
        actors.push(KeyActor::spawn().map_err(|e| format!("spawn actor: {e}"))?);
    }
    for (i, a) in c.actors.iter().enumerate() {
        if a.thread {
            let r = must(
                "thread keyring",
                actors[i].call(&KeyCall::GetKeyringId(-1, true)),
            )?;
            names.insert(&format!("{}_t", a.name), serial_of(r));
        }
        if a.process {
            let r = must(
                "process keyring",
                actors[i].call(&KeyCall::GetKeyringId(-2, true)),
            )?;
            names.insert(&format!("{}_p", a.name), serial_of(r));
        }
    }
    for (i, key) in c.keys.iter().enumerate() {
        let parent = match &key.place {
            Place::Session => "S".to_string(),
            Place::Thread(a) => format!("{}_t", c.actors[*a].name),
            Place::Process(a) => format!("{}_p", c.actors[*a].name),
            Place::Key(p) => c.keys[*p].name.clone(),
        };
        let call = KeyCall::AddKey {
            ktype: if key.keyring { "keyring" } else { "user" }.into(),
            description: key.description.clone(),
            payload: key.payload.clone().into_bytes(),
            keyring: names.by_name[&parent],
        };
        let r = must(
            &format!("add {}", key.name),
            actors[c.home_actor(i)].call(&call),
        )?;
        names.insert(&key.name, serial_of(r));
    }
    // Owners and masks innermost first, so the creating root still possesses what it changes.
    for (i, key) in c.keys.iter().enumerate().rev() {
        let ser = names.by_name[&key.name];
        let a = &mut actors[c.home_actor(i)];
        must(
            "chown",
            a.call(&KeyCall::Chown(ser, Some(key.uid), Some(key.gid))),
        )?;
        must("setperm", a.call(&KeyCall::Setperm(ser, key.perm)))?;
    }
    for (i, a) in c.actors.iter().enumerate() {
        let ((tu, tg, tp), (pu, pg, pp)) = c.ring_attrs[i];
        for (on, slot, (u, g, p)) in [
            (a.thread, "_t", (tu, tg, tp)),
            (a.process, "_p", (pu, pg, pp)),
        ] {
            if on {
                let ser = names.by_name[&format!("{}{slot}", a.name)];
                must(
                    "chown ring",
                    actors[i].call(&KeyCall::Chown(ser, Some(u), Some(g))),
                )?;
                must("setperm ring", actors[i].call(&KeyCall::Setperm(ser, p)))?;
            }
        }
    }
    k::chown(s, Some(0), Some(0)).map_err(|e| format!("chown S: {e}"))?;
    k::setperm(s, c.session_perm).map_err(|e| format!("setperm S: {e}"))?;
    // Take on the credentials.
    let mut first_in_ns: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, a) in c.actors.iter().enumerate() {
        if a.ns.is_some_and(|n| c.namespaces[n].unmapped) {
            // Its ids are kernel ids, taken before the unshare; no maps are written.
            must("set ids", actors[i].set_ids(a.uid, a.gid, &a.groups))?;
            must("unshare", actors[i].unshare_userns())?;
            continue;
        }
        if let Some(n) = a.ns {
            match first_in_ns.get(&n) {
                None => {
                    must("unshare", actors[i].unshare_userns())?;
                    let base = c.namespaces[n].base;
                    let m = format!("0 {base} 65536\n");
                    actors[i]
                        .write_maps(&m, &m)
                        .map_err(|e| format!("write maps: {e}"))?;
                    first_in_ns.insert(n, i);
                }
                Some(&f) => {
                    let pid = actors[f].pid();
                    must("setns", actors[i].setns_userns(pid))?;
                }
            }
        }
        must("set ids", actors[i].set_ids(a.uid, a.gid, &a.groups))?;
        if let Some(f) = a.fsuid {
            must("setfsuid", actors[i].set_fsuid(f))?;
        }
    }
    let mut answers = Vec::new();
    for (by, op) in &c.ops {
        let call = match op {
            GenOp::AddKey {
                keyring,
                keyring_type,
                description,
                payload,
                ..
            } => resolve(&names, keyring).map(|r| KeyCall::AddKey {
                ktype: if *keyring_type { "keyring" } else { "user" }.into(),
                description: description.clone(),
                payload: payload.clone().into_bytes(),
                keyring: r,
            }),
            GenOp::Read(x) => resolve(&names, x).map(KeyCall::Read),
            GenOp::Describe(x) => resolve(&names, x).map(KeyCall::Describe),
            GenOp::Update(x, p) => {
                resolve(&names, x).map(|r| KeyCall::Update(r, p.clone().into_bytes()))
            }
            GenOp::Search {
                keyring,
                keyring_type,
                description,
            } => resolve(&names, keyring).map(|r| KeyCall::Search {
                keyring: r,
                ktype: if *keyring_type { "keyring" } else { "user" }.into(),
                description: description.clone(),
            }),
            GenOp::Link(a, b) => resolve(&names, a)
                .zip(resolve(&names, b))
                .map(|(a, b)| KeyCall::Link(a, b)),
            GenOp::Unlink(a, b) => resolve(&names, a)
                .zip(resolve(&names, b))
                .map(|(a, b)| KeyCall::Unlink(a, b)),
            GenOp::Setperm(x, p) => resolve(&names, x).map(|r| KeyCall::Setperm(r, *p)),
            GenOp::Chown(x, u, g) => resolve(&names, x).map(|r| KeyCall::Chown(r, *u, *g)),
            GenOp::GetId(sp, cr) => Some(KeyCall::GetKeyringId(special(sp), *cr)),
        };
        let ans = match call {
            None => None,
            Some(call) => Some(
                actors[*by]
                    .call(&call)
                    .map_err(|e| format!("actor {by}: {e}"))?,
            ),
        };
        if let (GenOp::AddKey { name, .. }, Some(Ok(KeyReply::Serial(s)))) = (op, &ans) {
            if !names.by_serial.contains_key(s) {
                names.insert(name, *s);
            }
        }
        answers.push(ans);
    }
    drop(actors);
    Ok((answers, names))
}

fn kernel_text(a: &KernelAnswer) -> String {
    match a {
        None => "not run".into(),
        Some(Ok(KeyReply::Serial(s))) => format!("serial {s}"),
        Some(Ok(KeyReply::Bytes(b))) => format!("{:?}", String::from_utf8_lossy(b)),
        Some(Ok(KeyReply::Done)) => "ok".into(),
        Some(Err(e)) => credns_sys::errno_display(*e),
    }
}

fn expect_text(a: &KernelAnswer) -> Option<String> {
    match a {
        None => None,
        Some(Ok(_)) => Some("allowed".into()),
        Some(Err(e)) => credns_sys::errno_name(*e).map(str::to_string),
    }
}

#[derive(Default)]
struct KeyTally {
    cases: usize,
    ops: usize,
    agreed: BTreeMap<String, usize>,
    unknown: BTreeMap<String, usize>,
    skipped: usize,
    after_unknown: usize,
    failures: Vec<String>,
}

fn op_name(op: &GenOp) -> &'static str {
    match op {
        GenOp::AddKey { .. } => "add_key",
        GenOp::Read(_) => "keyctl_read",
        GenOp::Describe(_) => "keyctl_describe",
        GenOp::Update(..) => "keyctl_update",
        GenOp::Search { .. } => "keyctl_search",
        GenOp::Link(..) => "keyctl_link",
        GenOp::Unlink(..) => "keyctl_unlink",
        GenOp::Setperm(..) => "keyctl_setperm",
        GenOp::Chown(..) => "keyctl_chown",
        GenOp::GetId(..) => "keyctl_get_keyring_id",
    }
}

/// Compare one op. `Err` is the mismatch text.
fn compare(
    names: &mut Names,
    known: &[String],
    op: &GenOp,
    model: &credns_model::Outcome,
    kernel: &KernelAnswer,
) -> Result<String, String> {
    let get = |key: &str| {
        model
            .output
            .as_ref()
            .and_then(|o| o.get(key))
            .map(str::to_string)
    };
    match (&model.result, kernel) {
        (Verdict::Denied(e), Some(Err(ke))) if e.code() == ke.raw_os_error() => {
            Ok(e.name().to_string())
        }
        (Verdict::Allowed, Some(Ok(reply))) => {
            match reply {
                KeyReply::Done => {}
                KeyReply::Serial(s) => {
                    let label = get("key").unwrap_or_default();
                    match names.by_serial.get(s) {
                        Some(n) if *n == label => {}
                        Some(n) => {
                            return Err(format!("the kernel's key is {n}, the model's {label}"))
                        }
                        None if matches!(op, GenOp::GetId(..))
                            || (matches!(op, GenOp::AddKey { .. }) && !known.contains(&label)) =>
                        {
                            names.insert(&label, *s);
                        }
                        None => {
                            if let GenOp::AddKey { name, .. } = op {
                                if *name == label {
                                    names.insert(&label, *s);
                                    return Ok("allowed".into());
                                }
                            }
                            return Err(format!("the kernel's key {s} is none the case knows; the model says {label}"));
                        }
                    }
                }
                KeyReply::Bytes(b) => {
                    if let Some(d) = get("desc") {
                        let kd = String::from_utf8_lossy(b).to_string();
                        if kd != d {
                            return Err(format!("describe: kernel {kd:?}, model {d:?}"));
                        }
                    } else if let Some(p) = get("payload") {
                        if b.as_slice() != p.as_bytes() {
                            return Err(format!(
                                "read: kernel {:?}, model {p:?}",
                                String::from_utf8_lossy(b)
                            ));
                        }
                    } else if let Some(keys) = get("keys") {
                        let norm = |n: &str| {
                            if known.iter().any(|k| k == n) {
                                n.to_string()
                            } else {
                                "unnamed".to_string()
                            }
                        };
                        let mut kl: Vec<String> = b
                            .chunks_exact(4)
                            .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                            .map(|s| {
                                names
                                    .by_serial
                                    .get(&s)
                                    .map(|n| norm(n))
                                    .unwrap_or_else(|| "unnamed".into())
                            })
                            .collect();
                        kl.sort();
                        let mut ml: Vec<String> = keys
                            .split(',')
                            .filter(|x| !x.is_empty())
                            .map(norm)
                            .collect();
                        ml.sort();
                        if kl != ml {
                            return Err(format!("keyring read: kernel {kl:?}, model {ml:?}"));
                        }
                    } else {
                        return Err("the kernel returned bytes, the model no output".into());
                    }
                }
            }
            Ok("allowed".into())
        }
        _ => Err(format!(
            "kernel {}, model {}",
            kernel_text(kernel),
            model.result
        )),
    }
}

/// Run a case on both sides; the index of the first op where they disagree (`None` if they
/// agree up to the end or to a model Unknown), with the kernel's answers.
fn first_mismatch(case: &Case) -> (Option<usize>, Vec<Option<String>>) {
    let Ok(scenario) = Scenario::parse(&case.to_toml(&[], usize::MAX), "minimise") else {
        return (None, Vec::new());
    };
    let reports = scenario.run();
    let Ok((answers, mut names)) = run_kernel(case) else {
        return (None, Vec::new());
    };
    let expects: Vec<Option<String>> = answers.iter().map(expect_text).collect();
    let known: Vec<String> = names
        .by_name
        .keys()
        .cloned()
        .chain(case.ops.iter().filter_map(|(_, o)| match o {
            GenOp::AddKey { name, .. } => Some(name.clone()),
            _ => None,
        }))
        .collect();
    for (i, ((_, op), (rep, ans))) in case
        .ops
        .iter()
        .zip(reports.iter().zip(&answers))
        .enumerate()
    {
        if ans.is_none() {
            continue;
        }
        if matches!(rep.outcome.result, Verdict::Unknown(_)) {
            return (None, expects);
        }
        if compare(&mut names, &known, op, &rep.outcome, ans).is_err() {
            return (Some(i), expects);
        }
    }
    (None, expects)
}

/// Drop every op before the failing one that is not needed for the mismatch to stay.
fn minimise(case: &Case, failing: usize) -> (Case, Vec<Option<String>>) {
    let mut min = case.clone();
    min.ops.truncate(failing + 1);
    let mut j = 0;
    while j + 1 < min.ops.len() {
        let mut trial = min.clone();
        trial.ops.remove(j);
        if first_mismatch(&trial).0 == Some(trial.ops.len() - 1) {
            min = trial;
        } else {
            j += 1;
        }
    }
    let (_, expects) = first_mismatch(&min);
    (min, expects)
}

#[test]
fn keys_model_matches_kernel() {
    if !needs_root("keys_model_matches_kernel") {
        return;
    }
    let s = announce_seed("keys_model_matches_kernel");
    let mut rng = Rng::derive(s, "keys");
    let n = scaled(CASES);
    println!("keys_model_matches_kernel: {n} cases generated");
    let mut t = KeyTally::default();
    for id in 0..n {
        let case = Case::generate(&mut rng, id);
        let toml = case.to_toml(&[], usize::MAX);
        let scenario = match Scenario::parse(&toml, &format!("key case {id}")) {
            Ok(sc) => sc,
            Err(e) => {
                t.failures.push(format!(
                    "case {id}: the generated scenario does not parse: {e}\n{toml}"
                ));
                continue;
            }
        };
        let reports = scenario.run();
        let (answers, mut names) = match run_kernel(&case) {
            Ok(x) => x,
            Err(e) => {
                t.failures
                    .push(format!("case {id}: kernel run failed: {e}\n{toml}"));
                continue;
            }
        };
        t.cases += 1;
        let known: Vec<String> = names
            .by_name
            .keys()
            .cloned()
            .chain(case.ops.iter().filter_map(|(_, o)| match o {
                GenOp::AddKey { name, .. } => Some(name.clone()),
                _ => None,
            }))
            .collect();
        for (i, ((by, op), (rep, ans))) in case
            .ops
            .iter()
            .zip(reports.iter().zip(&answers))
            .enumerate()
        {
            t.ops += 1;
            if ans.is_none() {
                // An add_key that was to make the key failed or updated another key instead
                // (the mismatch, if any, was reported for that op).
                t.skipped += 1;
                continue;
            }
            if let Verdict::Unknown(why) = &rep.outcome.result {
                // Group reasons: the key's name and serial left out.
                let tail = why.split(": ").last().unwrap_or(why);
                let short = match (tail.starts_with('"'), tail.find(") ")) {
                    (true, Some(p)) => format!("KEY {}", &tail[p + 2..]),
                    _ => tail.to_string(),
                };
                *t.unknown
                    .entry(format!("{} — {short}", op_name(op)))
                    .or_default() += 1;
                // The model cannot follow the world past an Unknown: stop comparing this case.
                t.after_unknown += case.ops.len() - i - 1;
                break;
            }
            match compare(&mut names, &known, op, &rep.outcome, ans) {
                Ok(class) => {
                    let bare = case.actors[*by]
                        .ns
                        .is_some_and(|n| case.namespaces[n].unmapped);
                    let class = if bare {
                        format!("{class} (by a process in a namespace without maps)")
                    } else {
                        class
                    };
                    *t.agreed
                        .entry(format!("{} => {class}", op_name(op)))
                        .or_default() += 1
                }
                Err(why) => {
                    let (min, min_expects) = minimise(&case, i);
                    t.failures.push(format!(
                        "MISMATCH case {id} op #{i} ({}): {why}\n--- model trace:\n{}\n--- minimal scenario ({} of the case's {} ops; the kernel's answers as expectations):\n{}",
                        rep.text,
                        rep.outcome,
                        min.ops.len(),
                        i + 1,
                        min.to_toml(&min_expects, usize::MAX)
                    ));
                    break;
                }
            }
        }
    }
    // Leave the test thread with a fresh, empty session keyring: the last case's keys go.
    let _ = k::join_new_session_keyring();
    let unknowns: usize = t.unknown.values().sum();
    println!(
        "keys: {} cases, {} ops ({} not run: their key was never made), {} agreed, {} model Unknown (then {} later ops of those cases not compared), {} mismatches",
        t.cases,
        t.ops,
        t.skipped,
        t.agreed.values().sum::<usize>(),
        unknowns,
        t.after_unknown,
        t.failures.len()
    );
    for (class, n) in &t.agreed {
        println!("    {n:5}  {class}");
    }
    for (why, n) in &t.unknown {
        println!("    {n:5}  UNKNOWN {why}");
    }
    for f in t.failures.iter().take(5) {
        println!("{f}\n");
    }
    assert!(
        t.failures.is_empty(),
        "{} key cases disagree with the kernel",
        t.failures.len()
    );
    assert_eq!(t.cases, n, "every case ran");
    let off_list: Vec<&String> = t
        .unknown
        .keys()
        .filter(|why| !MAY_BE_UNKNOWN.iter().any(|(part, _)| why.contains(part)))
        .collect();
    assert!(
        off_list.is_empty(),
        "the model answered Unknown where the kernel answered, for reasons not on MAY_BE_UNKNOWN: {off_list:?}"
    );
}
