//! Allocation cost as live ranges grow: ours (durable, and the in-memory policy step alone)
//! against two baselines built here, measured side by side in one run.
//! `cargo bench -p credns-registry --bench alloc`
//!
//! * scan: first fit over the sorted list of used ranges, walked from the pool's start, as Incus
//!   (`findIdmap`) and Podman (`--userns=auto`) do; kept sorted incrementally (cheaper than
//!   their re-sort per allocation).
//! * bitmap: one bit per 65536-id slot, first clear bit by a word scan, as kubelet's userns
//!   manager does (kubelet starts at a random slot; we start at slot 0 to stay comparable).
//!
//! All four use the same pool, `65536..=4294967294` (kubelet's default; systemd's window holds
//! only 28,663 ranges of 65536, fewer than 60,000), with 65536-id ranges at 65536 alignment and
//! the reserved foreign range pre-taken. The live ranges are allocated first-fit from the pool's
//! start, as containers created one after another are; each measured step allocates one more
//! range (timed) and releases it (not timed), so the live count stays put. "durable" includes
//! redb's commit with fsync, in a temporary directory. Setup uses batched commits.
//!
//! Without `--bench` (as `cargo test --benches` runs it) this is a quick correctness check:
//! the four allocators must choose the same ranges.

use std::hint::black_box;
use std::time::{Duration, Instant};

use credns_idmap::IdRange;
use credns_registry::{
    AllocRequest, Allocator, Lease, Policy, PoolConfig, Registry, Reserved, Selector,
};

const SIZE: u64 = 65_536;
const POOL: IdRange = IdRange {
    start: 65_536,
    end: u32::MAX - 1,
};

fn policy() -> Policy {
    Policy {
        pool: PoolConfig {
            ranges: vec![POOL],
            default_size: SIZE,
            align: SIZE as u32,
        },
        ..Policy::default()
    }
}

fn req(i: usize) -> AllocRequest {
    AllocRequest::new(Lease::Name(format!("c{i}")), 0)
}

/// Baseline 1: first fit over sorted used ranges.
struct Scan {
    used: Vec<(u64, u64)>,
}

impl Scan {
    fn new() -> Self {
        let mut s = Scan { used: Vec::new() };
        for (_, r) in Reserved::ALL {
            s.insert(r.start as u64, r.end as u64);
        }
        s
    }
    fn insert(&mut self, start: u64, end: u64) {
        let i = self.used.partition_point(|&(s, _)| s < start);
        self.used.insert(i, (start, end));
    }
    fn allocate(&mut self, size: u64) -> Option<u64> {
        let align = SIZE;
        let mut cand = (POOL.start as u64).div_ceil(align) * align;
        for &(s, e) in &self.used {
            if cand + size - 1 < s {
                break;
            }
            if e >= cand {
                cand = (e + 1).div_ceil(align) * align;
            }
        }
        if cand + size - 1 > POOL.end as u64 {
            return None;
        }
        self.insert(cand, cand + size - 1);
        Some(cand)
    }
    fn release(&mut self, start: u64) {
        let i = self.used.partition_point(|&(s, _)| s < start);
        self.used.remove(i);
    }
}

/// Baseline 2: a bitmap of 65536-id slots.
struct Bitmap {
    words: Vec<u64>,
    slots: usize,
}

impl Bitmap {
    fn new() -> Self {
        let slots = ((POOL.end as u64 + 1 - POOL.start as u64) / SIZE) as usize;
        let mut b = Bitmap {
            words: vec![0; slots.div_ceil(64)],
            slots,
        };
        // A slot is unusable if it holds a reserved id or runs past the pool.
        for slot in 0..slots {
            let start = POOL.start as u64 + slot as u64 * SIZE;
            let end = start + SIZE - 1;
            let reserved = Reserved::ALL
                .iter()
                .any(|(_, r)| r.start as u64 <= end && start <= r.end as u64);
            if reserved || end > POOL.end as u64 {
                b.words[slot / 64] |= 1 << (slot % 64);
            }
        }
        b
    }
    fn allocate(&mut self) -> Option<u64> {
        for (w, word) in self.words.iter_mut().enumerate() {
            if *word != u64::MAX {
                let bit = word.trailing_ones() as usize;
                let slot = w * 64 + bit;
                if slot >= self.slots {
                    return None;
                }
                *word |= 1 << bit;
                return Some(POOL.start as u64 + slot as u64 * SIZE);
            }
        }
        None
    }
    fn release(&mut self, start: u64) {
        let slot = ((start - POOL.start as u64) / SIZE) as usize;
        self.words[slot / 64] &= !(1 << (slot % 64));
    }
}

#[derive(Clone, Copy)]
struct Stats {
    mean: f64,
    p99: f64,
}

fn stats(mut ns: Vec<u64>) -> Stats {
    ns.sort_unstable();
    let mean = ns.iter().sum::<u64>() as f64 / ns.len() as f64;
    let p99 = ns[((ns.len() as f64 * 0.99).ceil() as usize).clamp(1, ns.len()) - 1] as f64;
    Stats { mean, p99 }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos() as u64
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1_000_000.0 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1_000.0 {
        format!("{:.1} us", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

struct Row {
    live: usize,
    durable: Stats,
    mem: Stats,
    scan: Stats,
    bitmap: Stats,
}

fn measure(live: usize, durable_iters: usize, mem_iters: usize, dir: &std::path::Path) -> Row {
    // Ours, durable.
    let path = dir.join(format!("bench-{live}.redb"));
    let mut reg = Registry::open(&path, policy()).expect("open");
    let mut i = 0;
    while i < live {
        let mut t = reg.begin().expect("begin");
        for _ in 0..5_000.min(live - i) {
            t.allocate(&req(i)).expect("setup allocation");
            i += 1;
        }
        t.commit().expect("setup commit");
    }
    // Ours, in memory; and the baselines, with the same live ranges.
    let mut mem = Allocator::new(policy()).expect("policy");
    let mut scan = Scan::new();
    let mut bitmap = Bitmap::new();
    for i in 0..live {
        let a = mem.allocate(&req(i), 0).expect("setup");
        assert_eq!(
            scan.allocate(SIZE),
            Some(a.uid.start as u64),
            "scan disagrees at {i}"
        );
        assert_eq!(
            bitmap.allocate(),
            Some(a.uid.start as u64),
            "bitmap disagrees at {i}"
        );
    }
    assert_eq!(
        reg.allocator().free_extents(credns_registry::Window::Main),
        mem.free_extents(credns_registry::Window::Main)
    );

    let mut durable = Vec::with_capacity(durable_iters);
    for k in 0..durable_iters {
        let r = req(live + k);
        let t0 = Instant::now();
        let a = reg.allocate(&r).expect("allocate");
        durable.push(nanos(t0.elapsed()));
        reg.release(&Selector::Id(a.id)).expect("release");
    }
    // Each allocator runs its own loop (interleaving them would let one evict the other's data
    // from the caches); every step of each must pick the same start.
    let probe = req(live);
    let expect = mem.allocate(&probe, 0).expect("allocate");
    mem.release(&Selector::Id(expect.id)).expect("release");
    let expect = expect.uid.start as u64;
    let mut m = Vec::with_capacity(mem_iters);
    for _ in 0..mem_iters {
        let t0 = Instant::now();
        let a = mem.allocate(black_box(&probe), 0).expect("allocate");
        m.push(nanos(t0.elapsed()));
        assert_eq!(a.uid.start as u64, expect);
        mem.release(&Selector::Id(a.id)).expect("release");
    }
    let mut s = Vec::with_capacity(mem_iters);
    for _ in 0..mem_iters {
        let t0 = Instant::now();
        let x = scan.allocate(black_box(SIZE)).expect("scan");
        s.push(nanos(t0.elapsed()));
        assert_eq!(x, expect, "scan disagrees with ours");
        scan.release(x);
    }
    let mut b = Vec::with_capacity(mem_iters);
    for _ in 0..mem_iters {
        let t0 = Instant::now();
        let y = bitmap.allocate().expect("bitmap");
        b.push(nanos(t0.elapsed()));
        assert_eq!(y, expect, "bitmap disagrees with ours");
        bitmap.release(y);
    }
    drop(reg);
    let _ = std::fs::remove_file(&path);
    Row {
        live,
        durable: stats(durable),
        mem: stats(m),
        scan: stats(s),
        bitmap: stats(b),
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let dir = std::env::temp_dir().join(format!("credns-registry-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (sizes, durable_iters, mem_iters): (&[usize], usize, usize) = if full {
        (&[0, 1_000, 60_000], 2_000, 20_000)
    } else {
        (&[0, 100], 5, 50)
    };
    let rows: Vec<Row> = sizes
        .iter()
        .map(|&n| measure(n, durable_iters, mem_iters, &dir))
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    if !full {
        println!(
            "alloc bench (quick check): ours, scan and bitmap agree on {} sizes",
            rows.len()
        );
        return;
    }
    println!(
        "allocate one 65536-id range; {durable_iters} durable and {mem_iters} in-memory samples per row; database in {}",
        std::env::temp_dir().display()
    );
    println!(
        "{:>7} | {:>21} | {:>21} | {:>21} | {:>21} | {:>15} | {:>15}",
        "live",
        "ours durable mean/p99",
        "ours memory mean/p99",
        "scan mean/p99",
        "bitmap mean/p99",
        "scan/ours mean",
        "bitmap/ours mean"
    );
    for r in &rows {
        let pair = |s: Stats| format!("{} / {}", fmt_ns(s.mean), fmt_ns(s.p99));
        println!(
            "{:>7} | {:>21} | {:>21} | {:>21} | {:>21} | {:>14.1}x | {:>15.1}x",
            r.live,
            pair(r.durable),
            pair(r.mem),
            pair(r.scan),
            pair(r.bitmap),
            r.scan.mean / r.mem.mean,
            r.bitmap.mean / r.mem.mean,
        );
    }
    println!(
        "p99 ratios (baseline p99 / ours in-memory p99): {}",
        rows.iter()
            .map(|r| format!(
                "{}: scan {:.1}x, bitmap {:.1}x",
                r.live,
                r.scan.p99 / r.mem.p99,
                r.bitmap.p99 / r.mem.p99
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
}
