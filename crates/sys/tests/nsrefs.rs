//! `scan_userns_refs` on the running system: a real nsfs fd, a real nsfs bind mount and a
//! real idmapped mount appear in a scan, and are gone from the next scan once dropped.
//!
//! These need root (they create user namespaces, mount, and read every process's fds).
//! Without root each test prints "skipped: ..." and returns, unless CREDNS_REQUIRE_ALL=1,
//! which turns the skip into a failure.

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use credns_idmap::IdMap;
use credns_sys::nsrefs::scan_userns_refs;
use credns_sys::{DetachedMount, MappingUserns, ProcFs, UnshareOptions, UsernsChild};

fn needs_root(test: &str) -> bool {
    common::needs_root(
        test,
        "creates user namespaces, mounts, reads every process's fds",
    )
}

/// Unmounts (lazily if need be) when dropped.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        if rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::empty()).is_err() {
            let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

#[test]
fn a_held_nsfs_fd_is_seen_until_closed() {
    if !needs_root("a_held_nsfs_fd_is_seen_until_closed") {
        return;
    }
    let fs = ProcFs::new();
    let child = UsernsChild::spawn(&UnshareOptions::new()).unwrap();
    let fd = child.userns_fd().unwrap();
    let ino = fd.id().unwrap().ino;
    drop(child);
    let started = Instant::now();
    let refs = scan_userns_refs(&fs).unwrap();
    println!(
        "scan of the running system took {:?}; unreadable processes: {:?}",
        started.elapsed(),
        refs.unreadable
    );
    assert!(!refs.unreadable.contains(&credns_sys::Pid::this()));
    assert!(
        refs.fds.contains(&ino),
        "user:[{ino}] not in {:?}",
        refs.fds
    );
    assert!(!refs.bind_mounts.contains(&ino));
    drop(fd);
    let refs = scan_userns_refs(&fs).unwrap();
    assert!(
        !refs.fds.contains(&ino),
        "user:[{ino}] still in {:?}",
        refs.fds
    );
}

#[test]
fn a_bind_mount_is_seen_until_unmounted() {
    if !needs_root("a_bind_mount_is_seen_until_unmounted") {
        return;
    }
    let fs = ProcFs::new();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("userns");
    std::fs::write(&target, b"").unwrap();
    let child = UsernsChild::spawn(&UnshareOptions::new()).unwrap();
    let ino = child.userns().unwrap().ino;
    let source = PathBuf::from(format!("/proc/{}/ns/user", child.pid()));
    rustix::mount::mount_bind(&source, &target).unwrap();
    let mount = Unmount(target.clone());
    drop(child);
    let refs = scan_userns_refs(&fs).unwrap();
    assert!(
        refs.bind_mounts.contains(&ino),
        "user:[{ino}] not in {:?}",
        refs.bind_mounts
    );
    assert!(!refs.fds.contains(&ino), "no fd holds it");
    drop(mount);
    let refs = scan_userns_refs(&fs).unwrap();
    assert!(!refs.bind_mounts.contains(&ino));
}

fn idmapped_tmpfs(dir: &Path) -> Unmount {
    let src = dir.join("src");
    let dst = dir.join("dst");
    std::fs::create_dir(&src).unwrap();
    std::fs::create_dir(&dst).unwrap();
    let m = IdMap::new(credns_idmap::parse_write(b"0 100000 1000\n").unwrap()).unwrap();
    let ns = MappingUserns::new(&m, &m).unwrap();
    let d = DetachedMount::clone_tree(dir, false).unwrap();
    d.set_idmap(&ns).unwrap();
    d.attach(&dst).unwrap();
    Unmount(dst)
}

#[test]
fn an_idmapped_mount_is_counted_until_unmounted() {
    if !needs_root("an_idmapped_mount_is_counted_until_unmounted") {
        return;
    }
    let fs = ProcFs::new();
    // A tmpfs of its own: idmapping needs a filesystem that supports it.
    let dir = tempfile::tempdir().unwrap();
    rustix::mount::mount(
        "credns-nsrefs",
        dir.path(),
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        None,
    )
    .unwrap();
    let _tmpfs = Unmount(dir.path().to_owned());
    let before = scan_userns_refs(&fs).unwrap().idmapped_mounts;
    let mount = idmapped_tmpfs(dir.path());
    assert_eq!(scan_userns_refs(&fs).unwrap().idmapped_mounts, before + 1);
    drop(mount);
    assert_eq!(scan_userns_refs(&fs).unwrap().idmapped_mounts, before);
}

#[test]
fn a_thread_with_its_own_file_table_is_scanned_too() {
    if !needs_root("a_thread_with_its_own_file_table_is_scanned_too") {
        return;
    }
    let fs = ProcFs::new();
    let child = UsernsChild::spawn(&UnshareOptions::new()).unwrap();
    let ino = child.userns().unwrap().ino;
    let path = PathBuf::from(format!("/proc/{}/ns/user", child.pid()));
    let (opened_tx, opened_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        // SAFETY: after this the thread's fd table is its own copy; the only fd it opens
        // afterwards (the nsfs fd below) is created, used and closed on this thread alone.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FILES) }.unwrap();
        let fd = credns_sys::UserNsFd::open_path(&path).unwrap();
        opened_tx.send(()).unwrap();
        done_rx.recv().unwrap();
        drop(fd);
    });
    opened_rx.recv().unwrap();
    let refs = scan_userns_refs(&fs).unwrap();
    done_tx.send(()).unwrap();
    thread.join().unwrap();
    assert!(
        refs.fds.contains(&ino),
        "user:[{ino}], open only in a thread's own file table, not in {:?}",
        refs.fds
    );
    let refs = scan_userns_refs(&fs).unwrap();
    assert!(!refs.fds.contains(&ino));
    drop(child);
}
