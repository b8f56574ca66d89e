//! `credns mount` on the running kernel: --map with --disk-base on every filesystem, --like,
//! --name from a registry (and a locked one), --ro, and refusals with their messages. Every
//! mount, loop device and file is removed by Drop guards.
//!
//! These need root. Without it each test prints "skipped: ..." and returns, unless
//! CREDNS_REQUIRE_ALL=1, which turns the skip into a failure.

#[path = "../../../tests/conformance/src/scratch.rs"]
mod scratch;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};

use credns_idmap::IdKind;
use credns_sys::{mount::mount_is_idmapped, Actor, UnshareOptions, UsernsChild};
use scratch::{FsKind, MountGuard, ScratchFs, TempDir};

fn skip(test: &str, reason: Option<String>) -> bool {
    let Some(reason) = reason else { return false };
    if std::env::var("CREDNS_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("{test}: {reason}, and CREDNS_REQUIRE_ALL=1 forbids skipping");
    }
    println!("{test}: skipped: {reason}");
    true
}

fn needs_root(test: &str) -> bool {
    !skip(
        test,
        (!rustix::process::geteuid().is_root())
            .then(|| "needs root (makes idmapped mounts)".to_string()),
    )
}

fn credns(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_credns"))
        .args(args)
        .output()
        .expect("run credns")
}

fn ok(args: &[&str]) -> String {
    let out = credns(args);
    assert!(
        out.status.success(),
        "credns {}: {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(args: &[&str]) -> String {
    let out = credns(args);
    assert_eq!(
        out.status.code(),
        Some(2),
        "credns {} should fail",
        args.join(" ")
    );
    assert!(out.stdout.is_empty());
    String::from_utf8(out.stderr).unwrap()
}

fn owner(p: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap();
    (m.uid(), m.gid())
}

fn file(p: &Path, uid: u32, gid: u32) {
    std::fs::write(p, "x").unwrap();
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn map_with_disk_base_on_every_filesystem() {
    if !needs_root("map_with_disk_base_on_every_filesystem") {
        return;
    }
    for kind in FsKind::ALL {
        if skip(
            "map_with_disk_base_on_every_filesystem",
            kind.missing_tool(),
        ) {
            continue;
        }
        let fs = ScratchFs::new(kind);
        // An image stored at 300000.. shown to a container whose 0.. is 100000.. (seed 003).
        file(&fs.root().join("f"), 300005, 300006);
        file(&fs.root().join("below"), 5, 5);
        let dst = fs.mount_point("dst");
        let out = ok(&[
            "mount",
            s(fs.root()),
            s(&dst),
            "--map",
            "0 100000 100000",
            "--disk-base",
            "300000",
        ]);
        let _g = MountGuard(dst.clone());
        assert_eq!(
            out,
            format!(
                "mounted {} ({}) at {} (idmapped), idmap from --map\n  uids: on-disk \
                 300000..399999 -> 100000..199999\n  gids: on-disk 300000..399999 -> \
                 100000..199999\n",
                fs.root().display(),
                kind.name(),
                dst.display()
            )
        );
        assert_eq!(owner(&dst.join("f")), (100005, 100006), "{kind:?}");
        assert_eq!(owner(&dst.join("below")), (65534, 65534), "{kind:?}");
        assert_eq!(owner(&fs.root().join("f")), (300005, 300006));
    }
}

#[test]
fn json_output_read_only_and_multi_extent() {
    if !needs_root("json_output_read_only_and_multi_extent") {
        return;
    }
    let fs = ScratchFs::new(FsKind::Tmpfs);
    file(&fs.root().join("f"), 1001, 1001);
    let dst = fs.mount_point("dst");
    let out = ok(&[
        "mount",
        s(fs.root()),
        s(&dst),
        "--map",
        "0 100000 1000,1000 500000 1000",
        "--ro",
        "--json",
    ]);
    let _g = MountGuard(dst.clone());
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["fs_type"], "tmpfs");
    assert_eq!(v["read_only"], true);
    assert_eq!(v["recursive"], false);
    assert_eq!(
        v["uid_map"],
        serde_json::json!([
            {"disk_first": 0, "host_first": 100000, "count": 1000},
            {"disk_first": 1000, "host_first": 500000, "count": 1000}
        ])
    );
    assert_eq!(owner(&dst.join("f")), (500001, 500001));
    let e = std::fs::write(dst.join("f"), "y").unwrap_err();
    assert_eq!(
        e.raw_os_error(),
        Some(rustix::io::Errno::ROFS.raw_os_error())
    );
}

#[test]
fn like_a_process_shows_it_the_on_disk_owners() {
    if !needs_root("like_a_process_shows_it_the_on_disk_owners") {
        return;
    }
    let c = UsernsChild::spawn(&UnshareOptions::new()).unwrap();
    for k in [IdKind::Uid, IdKind::Gid] {
        c.write_map(Actor::Caller, k, b"0 200000 65536")
            .unwrap()
            .unwrap();
    }
    let fs = ScratchFs::new(FsKind::Tmpfs);
    file(&fs.root().join("f"), 7, 8);
    let dst = fs.mount_point("dst");
    let pid = c.pid().to_string();
    ok(&["mount", s(fs.root()), s(&dst), "--like", &pid]);
    let _g = MountGuard(dst.clone());
    assert_eq!(owner(&dst.join("f")), (200007, 200008));
    assert_eq!(c.stat_owner(&dst.join("f")).unwrap(), Ok((7, 8)));
    assert_eq!(
        c.stat_owner(&fs.root().join("f")).unwrap(),
        Ok((65534, 65534))
    );

    // A process without maps yet cannot lend them.
    let bare = UsernsChild::spawn(&UnshareOptions::new()).unwrap();
    let dst2 = fs.mount_point("dst2");
    let pid = bare.pid().to_string();
    let err = fails(&["mount", s(fs.root()), s(&dst2), "--like", &pid]);
    assert_eq!(
        err,
        format!(
            "credns: error: --like {pid}: the process's user namespace has no uid or gid map \
             written yet\n"
        )
    );
    assert!(!mount_is_idmapped(&dst2).unwrap());
}

#[test]
fn name_takes_the_allocation_from_the_registry() {
    if !needs_root("name_takes_the_allocation_from_the_registry") {
        return;
    }
    let dir = TempDir::new("registry");
    let db = dir.0.join("registry.redb");
    let nosock = dir.0.join("no-daemon.sock");
    let alloc = {
        let mut reg =
            credns_registry::Registry::open(&db, credns_registry::Policy::default()).unwrap();
        reg.allocate(&credns_registry::AllocRequest::new(
            credns_registry::Lease::name("web"),
            0,
        ))
        .unwrap()
    };
    let base = alloc.uid.start;
    let fs = ScratchFs::new(FsKind::Tmpfs);
    file(&fs.root().join("f"), 5, 5);
    let dst = fs.mount_point("dst");
    ok(&[
        "mount",
        s(fs.root()),
        s(&dst),
        "--name",
        "web",
        "--store",
        s(&db),
        "--socket",
        s(&nosock),
    ]);
    let _g = MountGuard(dst.clone());
    assert_eq!(owner(&dst.join("f")), (base + 5, alloc.gid.start + 5));

    let dst2 = fs.mount_point("dst2");
    let err = fails(&[
        "mount",
        s(fs.root()),
        s(&dst2),
        "--name",
        "nope",
        "--store",
        s(&db),
        "--socket",
        s(&nosock),
    ]);
    assert_eq!(
        err,
        "credns: error: --name nope: no allocation named \"nope\" (io.credns.Registry.NotFound)\n"
    );
    // A registry held open by another process (as the daemon holds it) is refused clearly.
    let held = credns_registry::Registry::open(&db, credns_registry::Policy::default()).unwrap();
    let err = fails(&[
        "mount",
        s(fs.root()),
        s(&dst2),
        "--name",
        "web",
        "--store",
        s(&db),
        "--socket",
        s(&nosock),
    ]);
    assert_eq!(
        err,
        format!(
            "credns: error: --name web: the registry store {} is held by another process (a \
             credns daemon? give its socket with --socket) (io.credns.Registry.StoreUnavailable)\n",
            db.display()
        )
    );
    drop(held);
    assert!(!mount_is_idmapped(&dst2).unwrap());

    // With a daemon holding the store, --name asks it.
    let sock = dir.0.join("run/io.credns.Registry");
    let mut serve = std::process::Command::new(env!("CARGO_BIN_EXE_credns"))
        .args(["serve", "--socket", s(&sock), "--store", s(&db)])
        .spawn()
        .unwrap();
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let t0 = std::time::Instant::now();
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        if let Some(st) = serve.try_wait().unwrap() {
            panic!("credns serve exited: {st}");
        }
        assert!(t0.elapsed().as_secs() < 30, "daemon did not start");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let _serve = Stop(serve);
    ok(&[
        "mount",
        s(fs.root()),
        s(&dst2),
        "--name",
        "web",
        "--socket",
        s(&sock),
    ]);
    let _g2 = MountGuard(dst2.clone());
    assert_eq!(owner(&dst2.join("f")), (base + 5, alloc.gid.start + 5));
    let err = fails(&[
        "mount",
        s(fs.root()),
        s(&fs.mount_point("dst3")),
        "--name",
        "nope",
        "--socket",
        s(&sock),
    ]);
    assert!(
        err.starts_with("credns: error: --name nope: ") && err.contains("NotFound"),
        "{err}"
    );
}

#[test]
fn refusals_leave_nothing_mounted() {
    if !needs_root("refusals_leave_nothing_mounted") {
        return;
    }
    let fs = ScratchFs::new(FsKind::Tmpfs);
    let dst = fs.mount_point("dst");
    let err = fails(&["mount", "/proc", s(&dst), "--map", "0 100000 65536"]);
    assert_eq!(
        err,
        "credns: error: mount_setattr /proc (proc): filesystem proc does not support idmapped \
         mounts (FS_ALLOW_IDMAP): EINVAL (Invalid argument)\n"
    );
    assert!(!dst.join("self").exists(), "nothing was attached");

    ok(&["mount", s(fs.root()), s(&dst), "--map", "0 100000 65536"]);
    let _g = MountGuard(dst.clone());
    let dst2 = fs.mount_point("dst2");
    let err = fails(&["mount", s(&dst), s(&dst2), "--map", "0 200000 65536"]);
    assert_eq!(
        err,
        format!(
            "credns: error: mount_setattr {} (tmpfs): mount is already idmapped (the kernel \
             sets a mount's idmap once; clone the original, not an idmapped mount): EPERM \
             (Operation not permitted)\n",
            dst.display()
        )
    );
    assert!(!mount_is_idmapped(&dst2).unwrap());

    let err = fails(&["mount", s(fs.root()), s(&dst2), "--map", "0 100000"]);
    assert!(err.starts_with("credns: error: --map: "), "{err}");
    let err = fails(&[
        "mount",
        s(fs.root()),
        "/nonexistent-credns",
        "--map",
        "0 1 1",
    ]);
    assert_eq!(
        err,
        "credns: error: /nonexistent-credns: not an existing directory\n"
    );
}
