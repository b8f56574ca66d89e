//! The daemon's replies from the installed build (`cargo dist`: static, musl, dlmalloc) against
//! the same daemon as `cargo build --release` makes it (glibc, dynamically linked), side by
//! side in one run: the price or gain of the installed build's C library and allocator where a
//! process starts once and then works (`credns run` and `credns key upcall` start per use).
//!
//! Each daemon gets its own temporary socket and store and 50 name leases; then rounds
//! alternate between them, each timing `List` (all 50 allocations) and `Show` (one) calls on
//! one connection. Figures are the median per call; the ratio is of medians.
//!
//! `cargo bench -p credns --bench serve`. `CREDNS_BENCH_RUNS` sets the calls per method and
//! daemon (default 3000).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::Daemon;
use credns_service::{AllocOptions, RegistryClient, Target};

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// `n` calls of `f`, each timed.
fn timed(n: usize, mut f: impl FnMut()) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let bench = std::env::args().any(|a| a == "--bench");
    let runs: usize = match std::env::var("CREDNS_BENCH_RUNS").ok() {
        Some(s) => s.parse().expect("CREDNS_BENCH_RUNS: a number"),
        None if bench => 3000,
        None => 50,
    };
    let kinds = [
        ("installed build (musl, dlmalloc)", common::build_dist()),
        (
            "cargo build --release (glibc)",
            PathBuf::from(env!("CARGO_BIN_EXE_credns")),
        ),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let mut clients = Vec::new();
    let mut daemons = Vec::new();
    for (i, (_, bin)) in kinds.iter().enumerate() {
        let d = dir.path().join(i.to_string());
        std::fs::create_dir(&d).unwrap();
        let daemon = Daemon::start(bin, &d, &[]);
        let mut c = RegistryClient::connect(&daemon.socket).unwrap();
        for n in 0..50 {
            c.allocate_name(&format!("b{n}"), &AllocOptions::default())
                .unwrap();
        }
        // Both daemons hold and answer the same: the comparison is of like with like.
        assert_eq!(c.list().unwrap().len(), 50);
        clients.push(c);
        daemons.push(daemon);
    }
    let rounds = 10;
    let per = runs.div_ceil(rounds);
    let mut list = vec![Vec::new(); kinds.len()];
    let mut show = vec![Vec::new(); kinds.len()];
    let b7 = Target::Name("b7".into());
    for _ in 0..rounds {
        for (k, c) in clients.iter_mut().enumerate() {
            list[k].extend(timed(per, || assert_eq!(c.list().unwrap().len(), 50)));
            show[k].extend(timed(per, || {
                c.show(&b7).unwrap();
            }));
        }
    }
    println!(
        "serve: {} calls per method and daemon, interleaved rounds",
        per * rounds
    );
    println!("{:<36} {:>12} {:>12}", "daemon", "List (50)", "Show");
    let mut medians = Vec::new();
    for (k, (label, _)) in kinds.iter().enumerate() {
        let (l, s) = (median(&mut list[k]), median(&mut show[k]));
        println!(
            "{label:<36} {:>10.1}µs {:>10.1}µs",
            l.as_secs_f64() * 1e6,
            s.as_secs_f64() * 1e6
        );
        medians.push((l, s));
    }
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "installed ÷ release (medians): List {:.2}×, Show {:.2}×",
        ratio(medians[0].0, medians[1].0),
        ratio(medians[0].1, medians[1].1)
    );
}
