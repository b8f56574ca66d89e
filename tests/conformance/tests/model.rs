//! The permission model, differentially: every scenario (the hand-written corpus in
//! `corpus/*.toml` and generated ones) is realised on this machine's kernel — real user
//! namespaces, processes with the scenario's credentials, files on a tmpfs and on an ext4 loop
//! filesystem with owners, modes and ACLs — and every operation is performed for real and in
//! the model, outcome by outcome (allowed vs errno, and output values). A disagreement fails
//! the test and prints a minimised scenario as TOML, ready for `credns-model`.
//!
//! Nothing passes by not being compared: a scenario the executor cannot set up, an op it does
//! not perform and a model Unknown where the kernel answered each fail the test, unless the op
//! kind is on an allow-list below (`MAY_SKIP`, `MAY_BE_UNKNOWN`) with the reason.
//!
//! Needs root. The seed is new each run and printed (CREDNS_SEED replays one);
//! CREDNS_CONFORMANCE_SCALE multiplies the number of generated scenarios (15,000).

use std::collections::BTreeMap;

use credns_conformance::kernel::{run_both, Compared, Fixture, KernelAnswer};
use credns_conformance::scenario_gen::generate;
use credns_conformance::{announce_seed, needs_root, scaled};

/// Generated scenarios per run at scale 1 (CREDNS_CONFORMANCE_SCALE multiplies it).
const GENERATED: usize = 15_000;
use credns_model::Verdict;

/// The two tests run one after the other: each forks many helpers from this (threaded)
/// process and drives them, and runs `mount`, `losetup` and `setfacl`; sharing two cores they
/// gain nothing from running together.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Operations whose kernel side may stay unperformed, by op kind and a part of the reason,
/// with why. Nothing else may: an op the executor skips, or a scenario it cannot set up, fails
/// the test.
const MAY_SKIP: &[(&str, &str, &str)] = &[
    (
        "capable",
        "",
        "a model query (ns_capable) that is no system call: the kernel answers it only inside \
         other operations, which the suite compares",
    ),
    (
        "setns",
        "does not exist on either side",
        "the namespace's unshare was refused on both sides (and compared there): there is \
         nothing to enter",
    ),
    (
        "exec",
        "not a program (ENOEXEC)",
        "the file (made empty by a create op) holds no program: exec passed the permission \
         checks the model decides and failed in search_binary_handler, on contents scenarios \
         do not describe",
    ),
];

/// Model Unknowns allowed where the kernel answered, by op kind and a part of the reason, with
/// why the kernel's answer is not decided by the scenario's inputs. Empty: every Unknown where
/// the kernel answered fails the test.
const MAY_BE_UNKNOWN: &[(&str, &str, &str)] = &[];

fn allowed_skip(kind: &str, why: &str) -> bool {
    MAY_SKIP
        .iter()
        .any(|(k, part, _)| *k == kind && why.contains(part))
}

fn allowed_unknown(kind: &str, why: &str) -> bool {
    MAY_BE_UNKNOWN
        .iter()
        .any(|(k, part, _)| *k == kind && why.contains(part))
}

#[derive(Default)]
struct Tally {
    scenarios: usize,
    ops: usize,
    agreed_allowed: usize,
    agreed_denied: BTreeMap<String, usize>,
    /// Per op kind and reason.
    unknown: BTreeMap<String, usize>,
    skipped: BTreeMap<String, usize>,
    unrealisable: BTreeMap<String, usize>,
    /// Per op kind: (agreed allowed, agreed denied).
    by_kind: BTreeMap<String, (usize, usize)>,
    /// The same, of the ops whose walk followed a symbolic link.
    by_kind_symlink: BTreeMap<String, (usize, usize)>,
    failures: Vec<String>,
    /// Scenarios set aside (unrealisable, or with an op skipped or Unknown off the allow-lists).
    dropped: Vec<String>,
}

/// The op's kind, as the scenario names it (`open`, `keyctl_read`, …).
fn op_kind(c: &Compared) -> String {
    c.text
        .split_once(": ")
        .map(|(_, r)| r.split_whitespace().next().unwrap_or("").to_owned())
        .unwrap_or_default()
}

impl Tally {
    fn add(&mut self, res: &[Compared], name: &str) {
        self.scenarios += 1;
        for c in res {
            self.ops += 1;
            let kind = op_kind(c);
            if c.mismatch.is_none() {
                let e = self.by_kind.entry(kind.clone()).or_default();
                let mut l = (0, 0);
                match (&c.model, &c.kernel) {
                    (Verdict::Allowed, KernelAnswer::Done(_)) => (e.0, l.0) = (e.0 + 1, 1),
                    (Verdict::Denied(_), KernelAnswer::Refused(_)) => (e.1, l.1) = (e.1 + 1, 1),
                    _ => {}
                }
                if c.through_symlink {
                    let s = self.by_kind_symlink.entry(kind.clone()).or_default();
                    (s.0, s.1) = (s.0 + l.0, s.1 + l.1);
                }
            }
            match (&c.model, &c.kernel) {
                (_, KernelAnswer::Skipped(r)) => {
                    *self.skipped.entry(format!("{kind}: {r}")).or_default() += 1;
                    if !allowed_skip(&kind, r) {
                        self.dropped.push(format!(
                            "{name}: op #{} ({}) not performed on the kernel: {r}",
                            c.index,
                            c.text.trim()
                        ));
                    }
                }
                (Verdict::Unknown(r), _) => {
                    *self.unknown.entry(format!("{kind}: {r}")).or_default() += 1;
                    if !allowed_unknown(&kind, r) {
                        self.dropped.push(format!(
                            "{name}: op #{} ({}): the model says Unknown ({r}) where the kernel answered {:?}",
                            c.index,
                            c.text.trim(),
                            c.kernel
                        ));
                    }
                }
                _ if c.mismatch.is_some() => {}
                (Verdict::Allowed, _) => self.agreed_allowed += 1,
                (Verdict::Denied(e), _) => {
                    *self.agreed_denied.entry(e.name().into()).or_default() += 1
                }
            }
        }
    }

    fn unrealisable(&mut self, name: &str, why: String) {
        self.dropped
            .push(format!("{name}: the executor cannot set it up: {why}"));
        *self.unrealisable.entry(why).or_default() += 1;
    }

    fn print(&self, what: &str) {
        println!(
            "{what}: {} scenarios run, {} ops compared: {} agreed allowed, denied {:?}",
            self.scenarios, self.ops, self.agreed_allowed, self.agreed_denied
        );
        println!(
            "{what}: per op (agreed allowed, agreed denied): {:?}",
            self.by_kind
        );
        println!(
            "{what}: per op through symbolic links (agreed allowed, agreed denied): {:?}",
            self.by_kind_symlink
        );
        println!(
            "{what}: model unknown (per op and reason): {:?}",
            self.unknown
        );
        println!(
            "{what}: kernel side not performed (per op and reason): {:?}",
            self.skipped
        );
        println!(
            "{what}: scenarios not realisable (per reason): {:?}",
            self.unrealisable
        );
        println!(
            "{what}: {} disagreements, {} ops or scenarios not compared (off the allow-lists)",
            self.failures.len(),
            self.dropped.len()
        );
    }
}

fn first_mismatch(res: &[Compared]) -> Option<&Compared> {
    res.iter().find(|c| c.mismatch.is_some())
}

fn describe(c: &Compared) -> String {
    format!(
        "op #{}: {}\n  model: {} {}\n  kernel: {:?}\n  => {}",
        c.index,
        c.text.trim(),
        c.model,
        c.model_output.clone().unwrap_or_default(),
        c.kernel,
        c.mismatch.clone().unwrap_or_default()
    )
}

/// Does `text` still show a disagreement?
fn still_fails(fx: &Fixture, text: &str, tag: &str) -> bool {
    matches!(run_both(fx, text, "candidate", tag), Ok(Ok(r)) if first_mismatch(&r).is_some())
}

/// Delta-debugging by single removals: drop ops (after the failing one first), processes,
/// files, namespaces and mounts while the disagreement persists.
fn minimise(fx: &Fixture, text: &str, tag: &str) -> String {
    let mut cur: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(_) => return text.to_owned(),
    };
    let mut n = 0;
    loop {
        let mut improved = false;
        for key in ["op", "file", "process", "namespace", "mount", "filesystem"] {
            let len = cur
                .get(key)
                .and_then(|v| v.as_array())
                .map_or(0, |a| a.len());
            let mut i = len;
            while i > 0 {
                i -= 1;
                let mut cand = cur.clone();
                if let Some(a) = cand.get_mut(key).and_then(|v| v.as_array_mut()) {
                    a.remove(i);
                    if a.is_empty() {
                        cand.remove(key);
                    }
                }
                let t = toml::to_string(&cand).unwrap_or_default();
                n += 1;
                if still_fails(fx, &t, &format!("{tag}-min{n}")) {
                    cur = cand;
                    improved = true;
                }
            }
        }
        if !improved || n > 2000 {
            break;
        }
    }
    toml::to_string(&cur).unwrap_or_else(|_| text.to_owned())
}

fn check(fx: &Fixture, tally: &mut Tally, text: &str, name: &str, tag: &str) {
    match run_both(fx, text, name, tag) {
        Err(e) => panic!("{name}: the executor failed: {e}\n{text}"),
        Ok(Err(why)) => tally.unrealisable(name, why),
        Ok(Ok(res)) => {
            tally.add(&res, name);
            if let Some(c) = first_mismatch(&res) {
                let msg = describe(c);
                let min = minimise(fx, text, tag);
                let again = match run_both(fx, &min, "minimised", &format!("{tag}-final")) {
                    Ok(Ok(r)) => first_mismatch(&r).map(describe).unwrap_or_default(),
                    _ => String::new(),
                };
                tally.failures.push(format!(
                    "{name}: model and kernel disagree\n{msg}\n--- minimised scenario (realised with the bounding and permitted sets of initial-namespace processes limited to the test process's) ---\n{min}--- its disagreement ---\n{again}\n"
                ));
            }
        }
    }
}

fn report(tally: &Tally, what: &str) {
    tally.print(what);
    for f in tally.failures.iter().take(5) {
        println!("{f}");
    }
    for d in tally.dropped.iter().take(20) {
        println!("NOT COMPARED: {d}");
    }
    if !tally.dropped.is_empty() {
        println!(
            "(CREDNS_GENERATED_ONLY=N with the seed above runs and prints generated scenario N)"
        );
    }
    assert!(
        tally.failures.is_empty(),
        "{what}: {} scenarios where the model and the kernel disagree (first ones above)",
        tally.failures.len()
    );
    assert!(
        tally.dropped.is_empty(),
        "{what}: {} ops or scenarios not compared: unrealisable, not performed on the kernel, or \
         Unknown in the model, and not on the allow-lists MAY_SKIP / MAY_BE_UNKNOWN (first ones above)",
        tally.dropped.len()
    );
}

/// The filesystems, or `None` (printed "skipped: ...") when they cannot be made here (no
/// mkfs.ext4, losetup or setfacl, no loop devices); with CREDNS_REQUIRE_ALL=1 that panics.
fn fixture(test: &str) -> Option<Fixture> {
    match Fixture::new() {
        Ok(f) => Some(f),
        Err(e) => {
            let why = format!(
                "needs a tmpfs and an ext4 loop filesystem (mkfs.ext4 from e2fsprogs, losetup, setfacl from acl): {e}"
            );
            if std::env::var("CREDNS_REQUIRE_ALL").as_deref() == Ok("1") {
                panic!("{test}: {why}, and CREDNS_REQUIRE_ALL=1 forbids skipping");
            }
            println!("{test}: skipped: {why}");
            None
        }
    }
}

#[test]
fn corpus_on_kernel_and_model() {
    if !needs_root("corpus_on_kernel_and_model") {
        return;
    }
    let _serial = serial();
    let Some(fx) = fixture("corpus_on_kernel_and_model") else {
        return;
    };
    // The edge cases written for this suite, and every example the model ships (the ones
    // `credns sim` shows users), so that none of them states what the kernel does not do.
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [
        here.join("corpus"),
        here.join("../../crates/model/examples"),
    ] {
        let mut these: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        assert!(!these.is_empty(), "no scenarios in {}", dir.display());
        these.sort();
        files.extend(these);
    }
    let mut tally = Tally::default();
    for (i, f) in files.iter().enumerate() {
        let text = std::fs::read_to_string(f).expect("reading corpus file");
        let name = f
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        check(&fx, &mut tally, &text, &name, &format!("c{i}"));
    }
    report(&tally, "corpus");
    assert_eq!(tally.scenarios, files.len(), "every corpus scenario ran");
}

#[test]
fn generated_on_kernel_and_model() {
    if !needs_root("generated_on_kernel_and_model") {
        return;
    }
    let _serial = serial();
    let s = announce_seed("generated_on_kernel_and_model");
    let Some(fx) = fixture("generated_on_kernel_and_model") else {
        return;
    };
    let n = scaled(GENERATED);
    // CREDNS_GENERATED_ONLY=I runs scenario I of the seed alone (and prints it).
    let only: Option<usize> = std::env::var("CREDNS_GENERATED_ONLY").ok().map(|v| {
        v.parse()
            .expect("CREDNS_GENERATED_ONLY is a scenario number")
    });
    let mut tally = Tally::default();
    for i in 0..n {
        if only.is_some_and(|o| o != i) {
            continue;
        }
        let text = generate(s, i as u64, &fx);
        if only.is_some() {
            println!("generated #{i}:\n{text}");
        }
        check(
            &fx,
            &mut tally,
            &text,
            &format!("generated #{i}"),
            &format!("g{i}"),
        );
        if tally.failures.len() >= 5 {
            break;
        }
    }
    println!("generated_on_kernel_and_model: {n} scenarios generated");
    report(&tally, "generated");
    if only.is_none() {
        assert_eq!(tally.scenarios, n, "every generated scenario ran");
    }
}
