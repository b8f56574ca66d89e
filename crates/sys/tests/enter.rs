//! `enter::enter_as_root` against the running kernel: a child enters a real container's user
//! namespace (and mount namespace) as its root before exec, sees what only the container's
//! mount namespace holds, and a refused `setns` fails the spawn. Root is needed (the container's
//! maps are written as root).

mod common;

use std::ffi::OsString;
use std::process::Command;
use std::time::{Duration, Instant};

use credns_idmap::{Extent, IdMap};
use credns_sys::container::{Container, ContainerSpec, ExtraMount};
use credns_sys::enter::{enter_as_root, Namespaces};
use credns_sys::mount::DetachedMount;
use credns_sys::pidfd::PidFd;
use credns_sys::Pid;

fn needs_root(test: &str) -> bool {
    common::needs_root(
        test,
        "creates user namespaces and writes their maps as root",
    )
}

/// A container running `sleep` (uid 0 → 2,100,000,000, 65,536 ids) with `src` attached at
/// `dst` in its mount namespace only; returned once it runs `sleep` (its mounts are made).
fn sleeping_container(src: &std::path::Path, dst: &std::path::Path) -> Container {
    let mut spec = ContainerSpec::new(["/bin/sleep", "60"].map(OsString::from).to_vec());
    spec.mounts.push(ExtraMount {
        fd: DetachedMount::clone_tree(src, false).unwrap().into(),
        target: dst.to_path_buf(),
    });
    let map = IdMap::new(vec![Extent::new(0, 2_100_000_000, 65536)]).unwrap();
    let mut c = Container::spawn(&spec).unwrap();
    c.write_maps(&map, &map).unwrap();
    c.start().unwrap();
    let comm = format!("/proc/{}/comm", c.pid());
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&comm).unwrap_or_default().trim() != "sleep" {
        assert!(Instant::now() < deadline, "the container never ran sleep");
        std::thread::sleep(Duration::from_millis(5));
    }
    c
}

fn kill(c: Container) {
    if let Some(pid) = rustix::process::Pid::from_raw(c.pid().0) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    let _ = c.wait();
}

/// What `script` prints when run by `sh` entering `target`'s namespaces.
fn inside(target: &PidFd, which: Namespaces, script: &str) -> std::io::Result<String> {
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", script]);
    enter_as_root(&mut cmd, target, which).unwrap();
    let o = cmd.output()?;
    assert!(o.status.success(), "{script}: {o:?}");
    Ok(String::from_utf8(o.stdout).unwrap())
}

#[test]
fn a_child_enters_a_containers_namespaces_as_its_root() {
    if !needs_root("a_child_enters_a_containers_namespaces_as_its_root") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    std::fs::create_dir(&src).unwrap();
    std::fs::create_dir(&dst).unwrap();
    std::fs::write(src.join("hello"), "only inside\n").unwrap();
    let c = sleeping_container(&src, &dst);
    let target = PidFd::open(c.pid()).unwrap();

    let script = format!(
        "id -u; id -g; id -G; cat /proc/self/uid_map; cat {}/hello 2>/dev/null || echo absent",
        dst.display()
    );
    let got = inside(&target, Namespaces::UserAndMount, &script).unwrap();
    let lines: Vec<&str> = got.lines().map(str::trim).collect();
    assert_eq!(lines[..3], ["0", "0", "0"], "{got}");
    let map: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(map, ["0", "2100000000", "65536"], "{got}");
    assert_eq!(lines[4], "only inside", "{got}");

    // The user namespace alone: root there, the host's mount table.
    let got = inside(&target, Namespaces::User, &script).unwrap();
    assert_eq!(got.lines().last(), Some("absent"), "{got}");
    assert!(got.starts_with("0\n0\n0\n"), "{got}");
    kill(c);
    assert!(!dst.join("hello").exists());
}

#[test]
fn a_refused_setns_fails_the_spawn() {
    if !needs_root("a_refused_setns_fails_the_spawn") {
        return;
    }
    // This process's own user namespace: setns(2) refuses to enter the caller's own (EINVAL),
    // and the program never runs.
    let me = PidFd::open(Pid::this()).unwrap();
    let mut cmd = Command::new("/bin/true");
    enter_as_root(&mut cmd, &me, Namespaces::User).unwrap();
    let e = cmd.output().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}");
}
