//! Map-down lookups: `IdMap::map_down` against the kernel's two methods over the same extents,
//! measured side by side in one run: a linear scan (`map_id_range_down_base`, up to 5 extents)
//! and a binary search over extents sorted by first id (`map_id_range_down_max`, bsearch with
//! `cmp_map_id`, above 5). `cargo bench -p credns-idmap --bench lookup`
//!
//! Each figure is the best of several rounds of a batch of lookups (nanoseconds per lookup);
//! the query ids are a fixed pseudo-random mix: 7 in 8 inside some extent, 1 in 8 unmapped.

use std::hint::black_box;
use std::time::Instant;

use credns_idmap::{Extent, IdMap};

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// `n` extents of 1000 ids with 24-id gaps, written in shuffled order (as a map may be).
fn make_map(n: usize, rng: &mut u64) -> Vec<Extent> {
    let mut v: Vec<Extent> = (0..n as u32)
        .map(|i| Extent::new(i * 1024, 100_000 + i * 1024, 1000))
        .collect();
    for i in (1..v.len()).rev() {
        let j = (xorshift(rng) % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

fn linear_down(extents: &[Extent], id: u32) -> Option<u32> {
    for e in extents {
        if id >= e.first && id - e.first < e.count {
            return Some(id - e.first + e.lower_first);
        }
    }
    None
}

/// The kernel's method above 5 extents: the extents sorted by their first id (as
/// `sort_idmaps` leaves the forward copy), then a binary search for the one holding `id`.
struct Sorted(Vec<Extent>);

impl Sorted {
    fn new(extents: &[Extent]) -> Sorted {
        let mut v = extents.to_vec();
        v.sort_by_key(|e| e.first);
        Sorted(v)
    }

    fn down(&self, id: u32) -> Option<u32> {
        let i = self.0.partition_point(|e| e.first <= id).checked_sub(1)?;
        let e = self.0[i];
        (id - e.first < e.count).then(|| id - e.first + e.lower_first)
    }
}

fn queries(extents: &[Extent], rng: &mut u64) -> Vec<u32> {
    (0..4096)
        .map(|_| {
            let r = xorshift(rng);
            let e = extents[(r % extents.len() as u64) as usize];
            if r % 8 == 0 {
                e.first + e.count + (r >> 32) as u32 % 24
            } else {
                e.first + (r >> 32) as u32 % e.count
            }
        })
        .collect()
}

fn time<F: FnMut(u32) -> Option<u32>>(qs: &[u32], mut f: F) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..30 {
        let start = Instant::now();
        let mut acc = 0u32;
        for _ in 0..8 {
            for &q in qs {
                acc = acc.wrapping_add(f(black_box(q)).unwrap_or(1));
            }
        }
        black_box(acc);
        best = best.min(start.elapsed().as_nanos() as f64 / (qs.len() * 8) as f64);
    }
    best
}

fn main() {
    // `cargo test --benches` runs benches with --bench absent; keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    println!(
        "{:>8} {:>12} {:>12} {:>12} {:>10} {:>10}",
        "extents", "IdMap ns/op", "linear ns/op", "bsearch ns/op", "÷ linear", "÷ bsearch"
    );
    for n in [1usize, 5, 6, 64, 340] {
        let extents = make_map(n, &mut rng);
        let map = IdMap::new(extents.clone()).expect("valid map");
        let sorted = Sorted::new(&extents);
        let qs = queries(&extents, &mut rng);
        for &q in &qs {
            let want = linear_down(&extents, q);
            assert_eq!(map.map_down(q), want, "IdMap and the scan disagree at {q}");
            assert_eq!(
                sorted.down(q),
                want,
                "the binary search and the scan disagree at {q}"
            );
        }
        if quick {
            println!(
                "{n:>8} extents: {} lookups agree (IdMap, scan, binary search)",
                qs.len()
            );
            continue;
        }
        let ours = time(&qs, |q| map.map_down(q));
        let linear = time(&qs, |q| linear_down(&extents, q));
        let bsearch = time(&qs, |q| sorted.down(q));
        println!(
            "{n:>8} {ours:>12.2} {linear:>12.2} {bsearch:>12.2} {:>9.2}x {:>9.2}x",
            linear / ours,
            bsearch / ours
        );
    }
}
