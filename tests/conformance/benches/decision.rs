//! One permission decision by the model against the kernel's own answer to the same question.
//! `cargo bench -p credns-conformance --bench decision`
//!
//! The setup, built for real and in the model: a 3-level user-namespace chain (l1 below the
//! host, l2 with a 340-extent map, l3 inside one of l2's extents), a tmpfs idmapped through l3's
//! maps at a mount point, and a file on it owned (on disk) by l3's uid 1000. The question is
//! "may l3's uid 1000 open it for reading": the model's `World::op(Access)` against
//! `faccessat(2)` made by a real process in l3 with those credentials, in the same run.
//! Then "which of these 10,000 processes can write this file", by the model.

use std::hint::black_box;
use std::time::Instant;

use credns_model::{Op, Scenario, TaskRef, Verdict};

/// l2's map: 340 extents of 20,000 ids, in reverse order over l1's range.
fn l2_map() -> String {
    (0..340u32)
        .map(|i| format!("{} {} 20000", i * 20_000, (339 - i) * 20_000))
        .collect::<Vec<_>>()
        .join("\n")
}

fn scenario(extra_processes: usize) -> String {
    let mut s = format!(
        r#"
[[namespace]]
name = "l1"
owner = 0
uid_map = "0 1000000 10000000"
gid_map = "0 1000000 10000000"

[[namespace]]
name = "l2"
parent = "l1"
owner = 0
uid_map = """{m}"""
gid_map = """{m}"""

[[namespace]]
name = "l3"
parent = "l2"
owner = 0
uid_map = "0 40000 20000"
gid_map = "0 40000 20000"

[[filesystem]]
name = "vol"
type = "tmpfs"
root_mode = "0755"

[[mount]]
path = "/vol"
fs = "vol"
idmap = "l3"

[[file]]
path = "/vol/d/f"
owner = 1000
group = 1000
mode = "0640"

[[process]]
name = "p"
ns = "l3"
uid = 1000
"#,
        m = l2_map()
    );
    // Processes spread over l3's ids and the host's: a few own the file, some share its group.
    for i in 0..extra_processes {
        let (ns, uid) = match i % 4 {
            0 => ("l3", (i % 20_000) as u32),
            1 => ("l3", 1000),
            2 => ("init", 7_700_000 + (i % 100_000) as u32),
            _ => ("init", (i % 60_000) as u32),
        };
        let gid = if i % 7 == 0 { 1000 } else { uid };
        s.push_str(&format!(
            "\n[[process]]\nname = \"q{i}\"\nns = \"{ns}\"\nuid = {uid}\ngid = {gid}\n"
        ));
    }
    s
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let s = Scenario::parse(&scenario(10_000), "decision.toml").expect("scenario parses");
    let mut world = s.world.clone();
    let p = world.task_by_name("p").expect("p");
    let read = Op::Access {
        path: "/vol/d/f".into(),
        mode: 4,
        eaccess: false,
    };
    let o = world.op(p, &read);
    assert_eq!(o.result, Verdict::Allowed, "{o}");
    let write = Op::Access {
        path: "/vol/d/f".into(),
        mode: 2,
        eaccess: false,
    };
    let tasks: Vec<TaskRef> = world.tasks().map(|(r, _)| r).collect();
    let rounds = if bench { 30 } else { 1 };

    let mut best_one = f64::INFINITY;
    for _ in 0..rounds {
        let n = 20_000;
        let t = Instant::now();
        for _ in 0..n {
            black_box(world.decide(p, black_box(&read)));
        }
        best_one = best_one.min(t.elapsed().as_nanos() as f64 / n as f64);
    }
    let mut best_all = f64::INFINITY;
    let mut writers = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        writers = tasks
            .iter()
            .filter(|&&q| world.decide(q, &write).0 == Verdict::Allowed)
            .count();
        best_all = best_all.min(t.elapsed().as_secs_f64() * 1e3);
    }
    println!("model: one decision {best_one:.0} ns; which of {} processes can write: {best_all:.2} ms ({writers} can)", tasks.len());
}
