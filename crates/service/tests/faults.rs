//! Faults of the store under a running daemon: a full disk is a clear, recoverable refusal
//! (regression: one ENOSPC wedged every later request until restart), and nothing
//! acknowledged is lost.

mod common;

use std::path::Path;

use credns_registry::Policy;
use credns_service::{AllocOptions, Config, RegistryClient, Server, Service};
use credns_sys::ProcFs;

/// A small tmpfs of its own, unmounted (lazily) when dropped.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn new(size: &str) -> Self {
        let dir = common::open_tempdir();
        rustix::mount::mount(
            "tmpfs",
            dir.path(),
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            Some(
                std::ffi::CString::new(format!("size={size},mode=0700"))
                    .unwrap()
                    .as_c_str(),
            ),
        )
        .expect("mount tmpfs");
        SmallFs { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = credns_sys::unmount(self.dir.path(), true);
    }
}

/// Fill the filesystem holding `dir` until it refuses more, in one file.
fn fill(dir: &Path) -> std::path::PathBuf {
    use std::io::Write;
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).unwrap();
    let chunk = vec![0u8; 64 << 10];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    p
}

#[test]
fn a_full_disk_is_refused_clearly_and_recovered_from_without_a_restart() {
    if !common::needs_root("a_full_disk_is_refused_clearly_and_recovered_from_without_a_restart") {
        return;
    }
    let fs = SmallFs::new("4m");
    let store = fs.path().join("lib/registry.redb");
    let socket = fs.path().join("run/io.credns.Registry");
    let cfg = Config {
        store: store.clone(),
        policy: Policy::default(),
        procfs: ProcFs::new(),
        etc: None,
        accept_rollback: false,
        reserve: 0,
    };
    let server = Server::bind(&socket, Service::open(&cfg).unwrap()).unwrap();
    let stop = server.stop_flag();
    let serving = std::thread::spawn(move || server.run());
    let mut c = RegistryClient::connect(&socket).unwrap();
    let mut acked = Vec::new();
    for i in 0..3 {
        acked.push(
            c.allocate_name(&format!("before{i}"), &AllocOptions::default())
                .unwrap(),
        );
    }
    let filler = fill(fs.path());
    // Until the disk takes writes again, every write is the same clear refusal.
    let mut refused = 0;
    for i in 0..20 {
        match c.allocate_name(&format!("during{i}"), &AllocOptions::default()) {
            Ok(a) => acked.push(a),
            Err(e) => {
                let r = e.remote().unwrap_or_else(|| panic!("{e}"));
                assert_eq!(r.error, "io.credns.Registry.StoreUnavailable", "{e}");
                assert_eq!(r.parameters["reason"], "store full", "{e}");
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "the full disk refused nothing");
    // Reads still answer, and show exactly what was acknowledged.
    let listed: Vec<u64> = c.list().unwrap().iter().map(|a| a.id).collect();
    assert_eq!(listed, acked.iter().map(|a| a.id).collect::<Vec<_>>());
    std::fs::remove_file(&filler).unwrap();
    // Space again: the same daemon allocates, no restart.
    acked.push(c.allocate_name("after", &AllocOptions::default()).unwrap());
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    drop(c);
    serving.join().unwrap().unwrap();
    // Reopened (the daemon's lock released with it), every acknowledged allocation is there.
    let svc = Service::open(&cfg).expect("the stopped daemon let go of its store");
    let ids: Vec<u64> = svc
        .with_registry(|r| r.list().map(|a| a.id.0).collect())
        .unwrap();
    assert_eq!(ids, acked.iter().map(|a| a.id).collect::<Vec<_>>());
}
