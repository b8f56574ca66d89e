//! The permission model, differentially: every scenario (the hand-written corpus in
//! `corpus/*.toml` and generated ones) is realised on this machine's kernel — real user
//! namespaces, processes with the scenario's credentials, files on a tmpfs and on an ext4 loop
//! filesystem with owners, modes and ACLs — and every operation is performed for real and in
//! the model, outcome by outcome (allowed vs errno, and output values). A disagreement fails
//! the test and prints a minimised scenario as TOML, ready for `credns-model`.
//!
//! Needs root. CREDNS_SEED overrides the seed; CREDNS_CONFORMANCE_SCALE multiplies the number
//! of generated scenarios (5,000).

use std::collections::BTreeMap;

use credns_conformance::kernel::{run_both, Compared, Fixture, KernelAnswer};
use credns_conformance::scenario_gen::generate;
use credns_conformance::{needs_root, scaled, seed};
use credns_model::Verdict;

/// The two tests run one after the other: each forks many helpers from this (threaded)
/// process and drives them, and runs `mount`, `losetup` and `setfacl`; sharing two cores they
/// gain nothing from running together.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default)]
struct Tally {
    scenarios: usize,
    ops: usize,
    agreed_allowed: usize,
    agreed_denied: BTreeMap<String, usize>,
    unknown: BTreeMap<String, usize>,
    skipped: BTreeMap<String, usize>,
    unrealisable: BTreeMap<String, usize>,
    /// Per op kind: (agreed allowed, agreed denied).
    by_kind: BTreeMap<String, (usize, usize)>,
    failures: Vec<String>,
}

impl Tally {
    fn add(&mut self, res: &[Compared]) {
        self.scenarios += 1;
        for c in res {
            self.ops += 1;
            let kind = c
                .text
                .split_once(": ")
                .map(|(_, r)| r.split_whitespace().next().unwrap_or("").to_owned())
                .unwrap_or_default();
            if c.mismatch.is_none() {
                let e = self.by_kind.entry(kind).or_default();
                match (&c.model, &c.kernel) {
                    (Verdict::Allowed, KernelAnswer::Done(_)) => e.0 += 1,
                    (Verdict::Denied(_), KernelAnswer::Refused(_)) => e.1 += 1,
                    _ => {}
                }
            }
            match (&c.model, &c.kernel) {
                (Verdict::Unknown(r), _) => *self.unknown.entry(r.clone()).or_default() += 1,
                (_, KernelAnswer::Skipped(r)) => *self.skipped.entry(r.clone()).or_default() += 1,
                _ if c.mismatch.is_some() => {}
                (Verdict::Allowed, _) => self.agreed_allowed += 1,
                (Verdict::Denied(e), _) => {
                    *self.agreed_denied.entry(e.name().into()).or_default() += 1
                }
            }
        }
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
        println!("{what}: model unknown (per reason): {:?}", self.unknown);
        println!(
            "{what}: kernel side not performed (per reason): {:?}",
            self.skipped
        );
        println!(
            "{what}: scenarios not realisable (per reason): {:?}",
            self.unrealisable
        );
        println!("{what}: {} disagreements", self.failures.len());
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
        Ok(Err(why)) => *tally.unrealisable.entry(why).or_default() += 1,
        Ok(Ok(res)) => {
            tally.add(&res);
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
    if !tally.failures.is_empty() {
        for f in tally.failures.iter().take(5) {
            println!("{f}");
        }
        panic!(
            "{what}: {} scenarios where the model and the kernel disagree (first ones above)",
            tally.failures.len()
        );
    }
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
    assert_eq!(
        tally.scenarios + tally.unrealisable.values().sum::<usize>(),
        files.len()
    );
    report(&tally, "corpus");
}

#[test]
fn generated_on_kernel_and_model() {
    if !needs_root("generated_on_kernel_and_model") {
        return;
    }
    let _serial = serial();
    let s = seed();
    println!("generated_on_kernel_and_model: seed {s:#x} (set CREDNS_SEED to change)");
    let Some(fx) = fixture("generated_on_kernel_and_model") else {
        return;
    };
    let n = scaled(5000);
    let mut tally = Tally::default();
    for i in 0..n {
        let text = generate(s, i as u64, &fx);
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
    report(&tally, "generated");
    assert!(
        tally.scenarios >= n * 9 / 10,
        "too many generated scenarios were not realisable"
    );
}
