//! Durability under SIGKILL: a real daemon process is killed at 220 points during allocate and
//! release (mid-request, right after a request was sent, and on timers landing anywhere in
//! the request cycle); after each kill the store is opened and checked: no two allocations
//! overlap, every allocation the client saw acknowledged is there unchanged, every
//! acknowledged release is gone, ids are never reused, and nothing unacknowledged appears
//! except the one request in flight.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::process::{Child, Stdio};
use std::time::Duration;

use credns_registry::{Policy, Registry};
use credns_service::{
    AllocOptions, AllocationInfo, Config, RegistryClient as Client, Server, Service, Target,
};
use credns_sys::ProcFs;

const ROUNDS: usize = 220;

/// Run by the crash test as the daemon process it kills; not a test of its own.
#[test]
#[ignore = "daemon process of sigkill_during_allocate_and_release_loses_nothing"]
fn crash_serve_helper() {
    let socket = std::env::var("CREDNS_TEST_SOCKET").expect("run by the crash test");
    let store = std::env::var("CREDNS_TEST_STORE").unwrap();
    let cfg = Config {
        store: store.into(),
        policy: Policy::default(),
        procfs: ProcFs::new(),
        etc: None,
        accept_rollback: false,
        reserve: 0,
    };
    let svc = Service::open(&cfg).unwrap();
    let server = Server::bind(&socket, svc).unwrap();
    server.run().unwrap();
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn kill(child: &Child) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
}

#[derive(Debug, Clone)]
enum Op {
    Alloc(String),
    Release(String, u64),
}

#[test]
fn sigkill_during_allocate_and_release_loses_nothing() {
    let dir = common::open_tempdir();
    let socket = dir.path().join("sock");
    let store = dir.path().join("r.redb");
    let seed = std::env::var("CREDNS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_c0ffee_u64);
    println!("seed {seed}");
    let mut rng = Rng(seed | 1);
    let mut held: BTreeMap<String, AllocationInfo> = BTreeMap::new();
    let mut released: HashSet<u64> = HashSet::new();
    let mut counter = 0u64;
    let (mut kills, mut pending_alloc, mut pending_release, mut acked_ops) = (0, 0, 0, 0);
    for round in 0..ROUNDS {
        let child = common::helper_command(
            "crash_serve_helper",
            &[
                ("CREDNS_TEST_SOCKET", socket.display().to_string()),
                ("CREDNS_TEST_STORE", store.display().to_string()),
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        let mut c: Client = common::wait_for_socket(&socket, Duration::from_secs(60));
        // Half the rounds: kill right after sending the k-th request, without waiting for its
        // answer. The other half: kill on a timer, wherever the daemon is.
        let by_timer = round % 2 == 1;
        let k = rng.next() % 10;
        let timer = by_timer.then(|| {
            let delay = Duration::from_micros(rng.next() % 5_000);
            let pid = child.id();
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            })
        });
        let mut pending: Option<Op> = None;
        let mut n = 0;
        loop {
            let op = if held.len() < 6 || rng.next() % 2 == 0 {
                counter += 1;
                Op::Alloc(format!("n{counter}"))
            } else {
                let i = (rng.next() % held.len() as u64) as usize;
                let (name, a) = held.iter().nth(i).unwrap();
                Op::Release(name.clone(), a.id)
            };
            if !by_timer && n == k {
                // Send the request and kill at once.
                let text = match &op {
                    Op::Alloc(name) => format!("{{\"method\":\"io.credns.Registry.Allocate\",\"parameters\":{{\"name\":\"{name}\"}}}}\0"),
                    Op::Release(name, _) => format!("{{\"method\":\"io.credns.Registry.Release\",\"parameters\":{{\"name\":\"{name}\"}}}}\0"),
                };
                c.varlink().send_raw(text.as_bytes(), &[]).unwrap();
                kill(&child);
                pending = Some(op);
                break;
            }
            let size = [1u64, 100, 65_536, 70_000][(rng.next() % 4) as usize];
            let r = match &op {
                Op::Alloc(name) => c
                    .allocate_name(
                        name,
                        &AllocOptions {
                            size: Some(size),
                            ..Default::default()
                        },
                    )
                    .map(Some),
                Op::Release(name, _) => c.release(&Target::Name(name.clone())).map(|_| None),
            };
            match r {
                Ok(got) => {
                    acked_ops += 1;
                    match (&op, got) {
                        (Op::Alloc(name), Some(a)) => {
                            held.insert(name.clone(), a.allocation);
                        }
                        (Op::Release(name, id), _) => {
                            held.remove(name);
                            released.insert(*id);
                        }
                        _ => unreachable!(),
                    }
                }
                Err(e) => {
                    assert!(e.remote_name().is_none(), "the daemon refused {op:?}: {e}");
                    pending = Some(op);
                    break;
                }
            }
            n += 1;
            if by_timer && n > 200 {
                break; // the timer fires during the next wait anyway
            }
        }
        if let Some(t) = timer {
            t.join().unwrap();
        }
        kill(&child);
        let mut child = child;
        child.wait().unwrap();
        kills += 1;
        match &pending {
            Some(Op::Alloc(_)) => pending_alloc += 1,
            Some(Op::Release(..)) => pending_release += 1,
            None => {}
        }
        // Check the store as the next daemon will find it.
        let reg = Registry::open(&store, Policy::default())
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        let stored: Vec<_> = reg.list().cloned().collect();
        let mut spans: Vec<(u32, u32, u64)> = stored
            .iter()
            .map(|a| (a.uid.start, a.uid.end, a.id.0))
            .collect();
        spans.sort_unstable();
        for w in spans.windows(2) {
            assert!(
                w[0].1 < w[1].0,
                "round {round}: allocations {} and {} overlap",
                w[0].2,
                w[1].2
            );
        }
        // The release in flight may or may not have landed.
        if let Some(Op::Release(name, id)) = &pending {
            if reg
                .get(&credns_registry::Selector::Name(name.clone()))
                .is_none()
            {
                held.remove(name);
                released.insert(*id);
            }
        }
        for (name, a) in &held {
            let s = reg.get(&credns_registry::Selector::Name(name.clone()));
            let s = s.unwrap_or_else(|| panic!("round {round}: acknowledged allocation {name} #{} lost; pending {pending:?}; store {:?}", a.id, stored.iter().map(|a| (a.id.0, a.lease.clone())).collect::<Vec<_>>()));
            assert_eq!(
                (s.id.0, s.uid.start, s.uid.end, s.gid.start),
                (a.id, a.uid.start, a.uid.end, a.gid.start),
                "round {round}: {name} changed"
            );
        }
        for a in &stored {
            assert!(
                !released.contains(&a.id.0),
                "round {round}: released allocation #{} is back",
                a.id.0
            );
            let credns_registry::Lease::Name(name) = &a.lease else {
                panic!("unexpected lease")
            };
            if held.contains_key(name) {
                continue;
            }
            // Only the request in flight may have landed without an acknowledgement.
            match &pending {
                Some(Op::Alloc(p)) if p == name => {
                    held.insert(name.clone(), credns_service::allocation_info(a));
                }
                _ => panic!(
                    "round {round}: allocation {name} #{} was never acknowledged",
                    a.id.0
                ),
            }
        }
    }
    println!(
        "{kills} SIGKILLs; {pending_alloc} during an allocate, {pending_release} during a release; \
         {acked_ops} acknowledged operations; {} allocations held at the end",
        held.len()
    );
    assert!(kills >= 200);
    assert!(
        pending_alloc > 0 && pending_release > 0,
        "both kinds of request were interrupted"
    );
}
