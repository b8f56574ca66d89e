//! `container::Container` against the running kernel: maps, exit statuses, setup failures,
//! extra mounts attached inside the container only, and cleanup of an unstarted container.
//! Root is needed (maps of arbitrary ranges); see `needs_root`.

mod common;

use std::ffi::OsString;
use std::os::fd::{FromRawFd, OwnedFd};

use credns_idmap::{Extent, IdMap};
use credns_sys::container::{Container, ContainerSpec, ExitStatus, ExtraMount};
use credns_sys::{Errno, Error, Pid, ProcFs};

fn needs_root(test: &str) -> bool {
    common::needs_root(
        test,
        "creates user namespaces and writes their maps as root",
    )
}

fn map() -> IdMap {
    IdMap::new(vec![Extent::new(0, 2_100_000_000, 65536)]).unwrap()
}

fn sh(script: &str) -> ContainerSpec {
    ContainerSpec::new(
        ["/bin/sh", "-c", script]
            .iter()
            .map(OsString::from)
            .collect(),
    )
}

fn run(spec: &ContainerSpec) -> ExitStatus {
    let mut c = Container::spawn(spec).unwrap();
    c.write_maps(&map(), &map()).unwrap();
    c.start().unwrap();
    c.wait().unwrap()
}

#[test]
fn maps_ids_and_exit_statuses() {
    if !needs_root("maps_ids_and_exit_statuses") {
        return;
    }
    let mut c = Container::spawn(&sh("exit 3")).unwrap();
    let own = ProcFs::new().userns(Pid::this()).unwrap();
    assert_ne!(c.userns_fd().id().unwrap(), own);
    assert_eq!(
        ProcFs::new().userns(c.pid()).unwrap(),
        c.userns_fd().id().unwrap()
    );
    c.write_maps(&map(), &map()).unwrap();
    assert_eq!(
        ProcFs::new()
            .read_map(c.pid(), credns_idmap::IdKind::Uid)
            .unwrap(),
        map()
    );
    c.start().unwrap();
    assert_eq!(c.wait().unwrap(), ExitStatus::Exited(3));

    let script = "[ \"$(id -u):$(id -g)\" = 0:0 ] && grep -q '2100000000' /proc/self/uid_map";
    assert_eq!(run(&sh(script)), ExitStatus::Exited(0));
    let mut spec = sh("[ \"$(id -u):$(id -g):$(id -G)\" = '5:6:6 7' ]");
    spec.uid = 5;
    spec.gid = 6;
    spec.groups = vec![6, 7];
    assert_eq!(run(&spec), ExitStatus::Exited(0));
    let st = run(&sh("kill -KILL $$"));
    assert_eq!(st, ExitStatus::Signaled(9));
    assert_eq!(st.code(), 137);
}

#[test]
fn setup_and_exec_failures_are_reported() {
    if !needs_root("setup_and_exec_failures_are_reported") {
        return;
    }
    // Without maps the first id step, setgroups(2), is refused: it needs a gid_map written
    // (kernel `userns_may_setgroups`), so EPERM comes before setresuid's EINVAL.
    let mut c = Container::spawn(&sh("true")).unwrap();
    match c.start() {
        Err(Error::Container { what, errno }) => {
            assert_eq!(what, "become the namespace's root (is 0 mapped?)");
            assert_eq!(errno, Errno::PERM);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.wait().unwrap(), ExitStatus::Exited(127));

    let spec = ContainerSpec::new(vec!["/no/such/program".into()]);
    let mut c = Container::spawn(&spec).unwrap();
    c.write_maps(&map(), &map()).unwrap();
    let e = c.start().unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot execute '/no/such/program': ENOENT (No such file or directory)"
    );

    let e = Container::spawn(&ContainerSpec::new(vec![])).unwrap_err();
    assert_eq!(e.to_string(), "no command to run");
}

#[test]
fn unstarted_container_is_killed_and_reaped_on_drop() {
    if !needs_root("unstarted_container_is_killed_and_reaped_on_drop") {
        return;
    }
    let c = Container::spawn(&sh("true")).unwrap();
    let pid = c.pid();
    let path = ProcFs::new().pid_path(pid);
    assert!(path.exists());
    drop(c);
    assert!(
        !path.exists(),
        "{} still exists: not reaped",
        path.display()
    );
}

/// `open_tree(2)` with OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC: a detached copy of `path`.
fn open_tree_clone(path: &std::path::Path) -> OwnedFd {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: open_tree takes a dirfd, a NUL-terminated path and flags; it returns a new fd
    // or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            (libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC) as libc::c_uint,
        )
    };
    assert!(fd >= 0, "open_tree: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` is a new fd that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

#[test]
fn extra_mounts_are_attached_inside_only() {
    if !needs_root("extra_mounts_are_attached_inside_only") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let dst = dir.path().join("dst");
    std::fs::create_dir(&src).unwrap();
    std::fs::create_dir(&dst).unwrap();
    std::fs::write(src.join("hello"), "hi\n").unwrap();
    let check = format!("[ \"$(cat {}/hello)\" = hi ]", dst.display());

    // Without the mount the file is not there: the check can fail.
    assert_eq!(run(&sh(&check)), ExitStatus::Exited(1));
    let mut spec = sh(&check);
    spec.mounts.push(ExtraMount {
        fd: open_tree_clone(&src),
        target: dst.clone(),
    });
    assert_eq!(run(&spec), ExitStatus::Exited(0));
    // The host's tree is unchanged.
    assert!(!dst.join("hello").exists());
}

/// A rootfs with a static busybox as /bin/sh, or `None` (skipped, or failing under
/// CREDNS_REQUIRE_ALL=1) when there is no static /bin/busybox.
fn busybox_rootfs(test: &str, dir: &std::path::Path) -> Option<std::path::PathBuf> {
    let bytes = std::fs::read("/bin/busybox").unwrap_or_default();
    let dynamic =
        bytes.windows(8).any(|w| w == b"/lib64/l") || bytes.windows(7).any(|w| w == b"/lib/ld");
    if bytes.is_empty() || dynamic {
        let reason = "needs a static /bin/busybox (apt-get install busybox-static)";
        if std::env::var("CREDNS_REQUIRE_ALL").as_deref() == Ok("1") {
            panic!("{test}: {reason}, and CREDNS_REQUIRE_ALL=1 forbids skipping");
        }
        println!("{test}: skipped: {reason}");
        return None;
    }
    let root = dir.join("rootfs");
    for d in ["bin", "proc", "dev"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("bin/busybox"), bytes).unwrap();
    std::fs::set_permissions(
        root.join("bin/busybox"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    Some(root)
}

#[test]
fn rootfs_mount_is_attached_instead_of_the_bind() {
    let t = "rootfs_mount_is_attached_instead_of_the_bind";
    if !needs_root(t) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(root) = busybox_rootfs(t, dir.path()) else {
        return;
    };
    // Owned by host root: through a plain bind the container sees the overflow id.
    let check = "[ \"$(/bin/busybox stat -c %u:%g /bin/busybox)\" = 0:0 ]";
    let mut spec = sh(check);
    spec.rootfs = Some(root.clone());
    assert_eq!(run(&spec), ExitStatus::Exited(1));
    // Through a clone idmapped like the container, on-disk 0 is the container's 0.
    let idmap = credns_sys::MappingUserns::new(&map(), &map()).unwrap();
    let tree = credns_sys::DetachedMount::clone_tree(&root, true).unwrap();
    tree.set_idmap(&idmap).unwrap();
    let mut spec = sh(check);
    spec.rootfs = Some(root.clone());
    spec.rootfs_mount = Some(tree.into());
    assert_eq!(run(&spec), ExitStatus::Exited(0));
    // Nothing stays mounted on the host's tree.
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!info.contains(root.to_str().unwrap()), "{info}");
}
