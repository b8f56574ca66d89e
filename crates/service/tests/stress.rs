//! 32 concurrent clients, 10,000 allocate/release cycles in all, two of them leasing real user
//! namespaces whose maps the daemon writes. No two ranges overlap at any instant: each client
//! checks every acknowledged range against all ranges held at that moment (for namespace
//! clients, the range read back from the live uid_map), and a checker thread keeps comparing
//! the daemon's list and the live uid_map/gid_map files of the test's namespaces.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use credns_idmap::IdKind;
use credns_registry::Policy;
use credns_service::{AllocOptions, Range, Target};
use credns_sys::pidfd::PidFd;
use credns_sys::{Pid, ProcFs, UnshareOptions, UsernsChild};

const CLIENTS: u64 = 32;
const CYCLES: u64 = 10_000;
const NS_CLIENTS: u64 = 2;
/// Allocate/release cycles of each namespace client.
const NS_CYCLES: u64 = 100;

/// Ranges held right now, by first id: (last id, holder).
#[derive(Default)]
struct Held(Mutex<BTreeMap<u32, (u32, String)>>);

impl Held {
    fn insert(&self, r: Range, who: String) {
        let mut m = self.0.lock().unwrap();
        if let Some((s, (e, w))) = m.range(..=r.end).next_back() {
            assert!(*e < r.start, "{who} got {r}, but {w} holds {s}-{e}");
        }
        m.insert(r.start, (r.end, who));
    }

    fn remove(&self, r: Range) {
        self.0.lock().unwrap().remove(&r.start);
    }
}

fn disjoint(mut rs: Vec<(Range, String)>) {
    rs.sort_by_key(|(r, _)| r.start);
    for w in rs.windows(2) {
        assert!(
            w[0].0.end < w[1].0.start,
            "{} {} overlaps {} {}",
            w[0].1,
            w[0].0,
            w[1].1,
            w[1].0
        );
    }
}

#[test]
fn thirty_two_clients_never_overlap() {
    if !common::needs_root("thirty_two_clients_never_overlap") {
        return;
    }
    let s = common::TestServer::start(Policy::default());
    let held = Arc::new(Held::default());
    let ns_pids: Arc<Mutex<HashMap<i32, Range>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let checks = Arc::new(AtomicU64::new(0));
    let checker = {
        let (socket, done, checks, ns_pids) = (
            s.socket.clone(),
            done.clone(),
            checks.clone(),
            ns_pids.clone(),
        );
        std::thread::spawn(move || {
            let mut c = credns_service::RegistryClient::connect(&socket).unwrap();
            let procfs = ProcFs::new();
            let snapshot = || -> HashMap<i32, Range> { ns_pids.lock().unwrap().clone() };
            while !done.load(Ordering::Relaxed) {
                // Namespaces registered both before the live maps are read and after the list
                // is taken were alive, with their maps, throughout: the list must agree with
                // their live maps.
                let before = snapshot();
                let mut live_maps = Vec::new();
                for (pid, own) in &before {
                    for kind in [IdKind::Uid, IdKind::Gid] {
                        let Ok(m) = procfs.read_map(Pid(*pid), kind) else {
                            continue;
                        };
                        for e in m.extents() {
                            let live = Range {
                                start: e.lower_first,
                                end: e.lower_first + (e.count - 1),
                            };
                            live_maps.push((*pid, *own, kind, live));
                        }
                    }
                }
                let listed = c.list().unwrap();
                let after = snapshot();
                let mut rs: Vec<(Range, String)> = listed
                    .iter()
                    .map(|a| (a.uid, format!("#{}", a.id)))
                    .collect();
                disjoint(rs.clone());
                for (pid, own, kind, live) in live_maps {
                    if after.get(&pid) != Some(&own) {
                        continue; // it died (and its pid may have been reused) meanwhile
                    }
                    assert_eq!(live, own, "pid {pid}'s {kind:?} map");
                    for (r, who) in &rs {
                        assert!(
                            !r.overlaps(&live) || *r == live,
                            "live map of pid {pid} ({live}) overlaps {who} {r}"
                        );
                    }
                    if kind == IdKind::Uid {
                        rs.push((own, format!("namespace of pid {pid}")));
                    }
                }
                // Distinct live namespaces never overlap each other either.
                disjoint(
                    rs.into_iter()
                        .filter(|(_, w)| w.starts_with("namespace"))
                        .collect(),
                );
                checks.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let t0 = Instant::now();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let (socket, held, ns_pids) = (s.socket.clone(), held.clone(), ns_pids.clone());
            std::thread::spawn(move || {
                let mut c = credns_service::RegistryClient::connect(&socket).unwrap();
                // Namespace cycles fork a process each: fewer of them, the rest spread over the others.
                let plain = (CYCLES - NS_CLIENTS * NS_CYCLES) / (CLIENTS - NS_CLIENTS);
                let extra = (CYCLES - NS_CLIENTS * NS_CYCLES) % (CLIENTS - NS_CLIENTS);
                let n = if t < NS_CLIENTS {
                    NS_CYCLES
                } else {
                    plain + u64::from(t - NS_CLIENTS < extra)
                };
                let sizes = [1u64, 1000, 65_536, 100_000];
                for i in 0..n {
                    let size = sizes[((t + i) % 4) as usize];
                    let opts = AllocOptions {
                        size: Some(size),
                        write_maps: t < NS_CLIENTS,
                        ..Default::default()
                    };
                    if t < NS_CLIENTS {
                        let child = UsernsChild::spawn(&UnshareOptions::new()).unwrap();
                        let pidfd = PidFd::open(child.pid()).unwrap();
                        let ns = child.userns_fd().unwrap();
                        let a = c
                            .allocate_userns(ns.as_fd(), Some(pidfd.as_fd()), &opts)
                            .unwrap();
                        let m = ProcFs::new().read_map(child.pid(), IdKind::Uid).unwrap();
                        let e = m.extents()[0];
                        let live = Range {
                            start: e.lower_first,
                            end: e.lower_first + (e.count - 1),
                        };
                        assert_eq!(live, a.uid);
                        held.insert(live, format!("client {t} namespace of pid {}", child.pid()));
                        ns_pids.lock().unwrap().insert(child.pid().as_raw(), live);
                        if i % 2 == 0 {
                            c.release(&Target::Id(a.id)).unwrap();
                        }
                        // Otherwise the daemon releases it when the namespace dies.
                        ns_pids.lock().unwrap().remove(&child.pid().as_raw());
                        drop(ns);
                        drop(child);
                        held.remove(live);
                    } else {
                        let a = c.allocate_name(&format!("c{t}-{i}"), &opts).unwrap();
                        assert_eq!(a.uid.len(), size);
                        held.insert(a.uid, format!("client {t} #{}", a.id));
                        held.remove(a.uid);
                        c.release(&Target::Id(a.id)).unwrap();
                    }
                }
                n
            })
        })
        .collect();
    let cycles: u64 = threads.into_iter().map(|h| h.join().unwrap()).sum();
    let took = t0.elapsed();
    done.store(true, Ordering::Relaxed);
    checker.join().unwrap();
    assert_eq!(cycles, CYCLES);
    // Namespaces left to die are released by the daemon (bounded wait).
    let mut c = s.client();
    let t1 = Instant::now();
    while !c.list().unwrap().is_empty() {
        assert!(
            t1.elapsed() < Duration::from_secs(30),
            "left: {:?}",
            c.list().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "{cycles} allocate/release cycles by {CLIENTS} clients ({NS_CLIENTS} with namespaces, {} namespace cycles) in {took:?}; {} snapshot checks",
        NS_CLIENTS * NS_CYCLES,
        checks.load(Ordering::Relaxed)
    );
}
