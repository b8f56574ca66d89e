//! Peer credentials and SCM_RIGHTS on a socketpair, pidfds and the exit watcher on real
//! processes, and the live-namespace scan.

use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;
use std::time::Duration;

use credns_sys::maps::scan_user_namespaces;
use credns_sys::peer::{peer_cred, recv_with_fds, send_with_fds, MAX_FDS};
use credns_sys::pidfd::{start_time_ns_of, ExitWatcher, PidFd};
use credns_sys::{Pid, ProcFs, UnshareOptions, UsernsChild};

fn socketpair() -> (
    std::os::unix::net::UnixStream,
    std::os::unix::net::UnixStream,
) {
    std::os::unix::net::UnixStream::pair().unwrap()
}

#[test]
fn peer_credentials_name_this_process() {
    let (a, _b) = socketpair();
    let c = peer_cred(a.as_fd()).unwrap();
    let st = ProcFs::new().status(Pid::this()).unwrap();
    assert_eq!((c.pid, c.uid, c.gid), (Pid::this(), st.uid[1], st.gid[1]));
}

#[test]
fn descriptors_travel_with_the_first_byte_and_stay_usable() {
    let (a, b) = socketpair();
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(b"passed").unwrap();
    send_with_fds(a.as_fd(), b"hello\0", &[f.as_fd(), f.as_fd()]).unwrap();
    let mut buf = [0u8; 64];
    let mut fds = Vec::new();
    let n = recv_with_fds(b.as_fd(), &mut buf, &mut fds).unwrap();
    assert_eq!(&buf[..n], b"hello\0");
    assert_eq!(fds.len(), 2);
    let mut g = std::fs::File::from(fds.remove(0));
    g.rewind().unwrap();
    let mut s = String::new();
    g.read_to_string(&mut s).unwrap();
    assert_eq!(s, "passed");
    let too_many: Vec<_> = (0..=MAX_FDS).map(|_| f.as_fd()).collect();
    let e = send_with_fds(a.as_fd(), b"x", &too_many).unwrap_err();
    assert_eq!(
        e.to_string(),
        "9 file descriptors in one message; at most 8"
    );
    // End of stream reads as 0.
    drop(a);
    assert_eq!(recv_with_fds(b.as_fd(), &mut buf, &mut fds).unwrap(), 0);
}

#[test]
fn pidfds_report_exit_through_the_watcher() {
    let child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let pid = Pid(child.id() as i32);
    let p = PidFd::open(pid).unwrap();
    assert!(!p.has_exited().unwrap());
    let start = p.start_time_ns(&ProcFs::new()).unwrap();
    assert_eq!(start_time_ns_of(&ProcFs::new(), pid).unwrap(), start);
    let mine = start_time_ns_of(&ProcFs::new(), Pid::this()).unwrap();
    assert!(start >= mine, "a child starts after its parent");
    // The same process adopted from an fd (as received over a socket).
    let dup = p.as_fd().try_clone_to_owned().unwrap();
    let q = PidFd::from_owned(&ProcFs::new(), dup).unwrap();
    assert_eq!(q.pid(), pid);
    let w = ExitWatcher::new().unwrap();
    w.add(&p, 77).unwrap();
    assert_eq!(w.wait(Some(Duration::ZERO)).unwrap(), Vec::<u64>::new());
    let mut child = child;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(w.wait(None).unwrap(), vec![77]);
    assert!(p.has_exited().unwrap());
    w.remove(&p).unwrap();
    assert_eq!(w.wait(Some(Duration::ZERO)).unwrap(), Vec::<u64>::new());
    // Not a pidfd.
    let f = tempfile::tempfile().unwrap();
    let e = PidFd::from_owned(&ProcFs::new(), f.into()).unwrap_err();
    assert!(e.to_string().contains("is not a pidfd"), "{e}");
}

#[test]
fn the_scan_finds_a_new_namespace_with_its_process() {
    let euid = ProcFs::new().status(Pid::this()).unwrap().uid[1];
    if euid != 0 {
        if std::env::var("CREDNS_REQUIRE_ALL").as_deref() == Ok("1") {
            panic!("needs root (uid {euid}), and CREDNS_REQUIRE_ALL=1 forbids skipping");
        }
        println!(
            "the_scan_finds_a_new_namespace_with_its_process: skipped: needs root (uid {euid})"
        );
        return;
    }
    let child = UsernsChild::spawn(&UnshareOptions::new()).unwrap();
    let id = child.userns().unwrap();
    let scan = scan_user_namespaces(&ProcFs::new()).unwrap();
    let n = scan
        .iter()
        .find(|n| n.id == id)
        .expect("the namespace is listed");
    assert_eq!(n.pids, vec![child.pid()]);
    assert!(n.uid_map.extents().is_empty(), "no map written yet");
    assert!(n.oldest_start_ns.is_some());
}

#[test]
fn maps_are_written_once_and_only_to_the_named_namespace() {
    use credns_idmap::{Extent, IdKind, IdMap};
    use credns_sys::maps::write_userns_maps;
    if ProcFs::new().status(Pid::this()).unwrap().uid[1] != 0 {
        if std::env::var("CREDNS_REQUIRE_ALL").as_deref() == Ok("1") {
            panic!("needs root, and CREDNS_REQUIRE_ALL=1 forbids skipping");
        }
        println!("maps_are_written_once_and_only_to_the_named_namespace: skipped: needs root");
        return;
    }
    let procfs = ProcFs::new();
    let a = UsernsChild::spawn(&UnshareOptions::new()).unwrap();
    let b = UsernsChild::spawn(&UnshareOptions::new()).unwrap();
    let map = IdMap::new(vec![Extent::new(0, 3_000_000, 1000)]).unwrap();
    let pa = PidFd::open(a.pid()).unwrap();
    // b's namespace through a's process: refused before anything is written.
    let e = write_userns_maps(&procfs, &pa, &b.userns_fd().unwrap(), &map, &map).unwrap_err();
    assert!(e.to_string().contains("not in user:["), "{e}");
    assert!(procfs
        .read_map(a.pid(), IdKind::Uid)
        .unwrap()
        .extents()
        .is_empty());
    write_userns_maps(&procfs, &pa, &a.userns_fd().unwrap(), &map, &map).unwrap();
    assert_eq!(procfs.read_map(a.pid(), IdKind::Uid).unwrap(), map);
    assert_eq!(procfs.read_map(a.pid(), IdKind::Gid).unwrap(), map);
    let e = write_userns_maps(&procfs, &pa, &a.userns_fd().unwrap(), &map, &map).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "write (map already written) /proc/{}/uid_map: EPERM (Operation not permitted)",
            a.pid()
        )
    );
}
