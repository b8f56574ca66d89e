//! Idmapped mounts on the running kernel: tmpfs, ext4, btrfs and xfs (on loop devices the tests
//! create and remove) and overlayfs over idmapped layers. Ownership through the mounts from the
//! host and from inside a user namespace, on-disk ownership, permission outcomes, files
//! created through the mounts, and the kernel's refusals with credns's error text.
//!
//! These need root. Without it each test prints "skipped: ..." and returns, unless
//! CREDNS_REQUIRE_ALL=1, which turns the skip into a failure.

#[path = "../../../tests/conformance/src/scratch.rs"]
mod scratch;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use credns_idmap::{IdKind, IdMap};
use credns_sys::{
    mount::mount_is_idmapped, Actor, CapSets, DetachedMount, Errno, Error, FsType, Ids,
    MappingUserns, MountRequirement, OFlags, ProcFs, UnshareOptions, UserNsFd, UsernsChild,
};
use scratch::{mount_overlay, run, FsKind, MountGuard, ScratchFs};

fn skip_reason(test: &str, reason: Option<String>) -> bool {
    let Some(reason) = reason else { return false };
    if std::env::var("CREDNS_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("{test}: {reason}, and CREDNS_REQUIRE_ALL=1 forbids skipping");
    }
    println!("{test}: skipped: {reason}");
    true
}

fn needs_root(test: &str) -> bool {
    !skip_reason(
        test,
        (!rustix::process::geteuid().is_root())
            .then(|| "needs root (mounts filesystems and idmaps them)".to_string()),
    )
}

fn map(s: &str) -> IdMap {
    IdMap::new(credns_idmap::parse_write(s.as_bytes()).unwrap()).unwrap()
}

fn owner(p: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("stat {}: {e}", p.display()));
    (m.uid(), m.gid())
}

fn chown(p: &Path, uid: u32, gid: u32, mode: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Clone `src`, idmap it with `m` (both uid and gid), optionally read-only, attach at `dst`.
fn idmapped(src: &Path, dst: &Path, m: &IdMap, ro: bool, recursive: bool) -> MountGuard {
    let ns = MappingUserns::new(m, m).unwrap();
    let d = DetachedMount::clone_tree(src, recursive).unwrap();
    d.set_idmap(&ns).unwrap();
    if ro {
        d.set_read_only().unwrap();
    }
    d.attach(dst).unwrap();
    MountGuard(dst.to_owned())
}

/// A process in a new user namespace with `m` as both maps, as `uid`/`gid` there.
fn container(m: &str, uid: u32, gid: u32) -> UsernsChild {
    let c = UsernsChild::spawn(&UnshareOptions::new()).unwrap();
    c.write_map(Actor::Caller, IdKind::Uid, m.as_bytes())
        .unwrap()
        .unwrap();
    c.write_map(Actor::Caller, IdKind::Gid, m.as_bytes())
        .unwrap()
        .unwrap();
    // The helper's kuid 0 is not its namespace's root, so changing uid would keep its
    // capabilities; a container's non-root process has none.
    let caps = (uid != 0).then_some(CapSets::NONE);
    let ids = Ids {
        uid,
        gid,
        groups: Some(vec![]),
    };
    c.set_creds(Some(&ids), caps).unwrap().unwrap();
    c
}

/// The on-disk tree every filesystem test starts from.
struct Tree {
    root: PathBuf,
}

impl Tree {
    fn make(root: &Path) -> Tree {
        let f = |n: &str, uid, gid, mode| {
            let p = root.join(n);
            std::fs::write(&p, n).unwrap();
            chown(&p, uid, gid, mode);
        };
        f("root-file", 0, 0, 0o644);
        f("five", 5, 5, 0o600);
        f("six", 6, 6, 0o600);
        f("high", 1000, 1000, 0o644);
        f("outside", 100000, 100000, 0o666);
        let d = root.join("shared");
        std::fs::create_dir(&d).unwrap();
        chown(&d, 0, 0, 0o777);
        Tree {
            root: root.to_owned(),
        }
    }
}

fn check_filesystem(kind: FsKind) {
    let fs = ScratchFs::new(kind);
    let tree = Tree::make(fs.root());
    let src = &tree.root;
    assert_eq!(FsType::of_path(src).unwrap().name, Some(kind.name()));

    // Two different maps over the same source; B has two extents.
    let a_map = "0 100000 65536";
    let b_map = "0 200000 1000\n1000 300000 64536";
    let a = fs.mount_point("a");
    let b = fs.mount_point("b");
    let _ga = idmapped(src, &a, &map(a_map), false, false);
    let _gb = idmapped(src, &b, &map(b_map), false, false);
    assert!(mount_is_idmapped(&a).unwrap());
    assert!(!mount_is_idmapped(src).unwrap());

    // From the host: the mapped kuids; an on-disk id outside the map is the overflow id.
    assert_eq!(owner(&a.join("root-file")), (100000, 100000));
    assert_eq!(owner(&a.join("five")), (100005, 100005));
    assert_eq!(owner(&a.join("high")), (101000, 101000));
    assert_eq!(owner(&a.join("outside")), (65534, 65534));
    assert_eq!(owner(&b.join("root-file")), (200000, 200000));
    assert_eq!(owner(&b.join("five")), (200005, 200005));
    assert_eq!(owner(&b.join("high")), (300000, 300000));
    // On disk, through the original mount: unchanged.
    assert_eq!(owner(&src.join("five")), (5, 5));

    // From inside the container whose namespace matches map A.
    let c5 = container(a_map, 5, 5);
    assert_eq!(c5.stat_owner(&a.join("five")).unwrap(), Ok((5, 5)));
    assert_eq!(c5.stat_owner(&a.join("root-file")).unwrap(), Ok((0, 0)));
    assert_eq!(
        c5.stat_owner(&a.join("outside")).unwrap(),
        Ok((65534, 65534))
    );
    // The original mount shows on-disk ids the namespace does not map.
    assert_eq!(
        c5.stat_owner(&src.join("five")).unwrap(),
        Ok((65534, 65534))
    );
    // Through map B the same file is kuid 200005, which A's namespace does not map.
    assert_eq!(c5.stat_owner(&b.join("five")).unwrap(), Ok((65534, 65534)));

    // Permissions: container uid 5 owns "five" through A, not through the original mount.
    let ro = OFlags::RDONLY;
    assert!(c5.open(&a.join("five"), ro).unwrap().is_ok());
    assert_eq!(c5.open(&src.join("five"), ro).unwrap(), Err(Errno::ACCESS));
    assert_eq!(c5.open(&a.join("six"), ro).unwrap(), Err(Errno::ACCESS));
    assert_eq!(c5.open(&b.join("five"), ro).unwrap(), Err(Errno::ACCESS));
    assert_eq!(
        c5.open(&a.join("root-file"), OFlags::WRONLY).unwrap(),
        Err(Errno::ACCESS)
    );
    // Container root: a file whose owner the idmap cannot map is not writable even with
    // CAP_DAC_OVERRIDE (the kernel's HAS_UNMAPPED_ID), though its mode is 0666.
    let c0 = container(a_map, 0, 0);
    assert!(c0.open(&a.join("six"), ro).unwrap().is_ok());
    assert_eq!(
        c0.open(&a.join("outside"), OFlags::WRONLY).unwrap(),
        Err(Errno::ACCESS)
    );

    // Creation through A by container uid 5 lands on disk as uid 5, not as kuid 100005.
    let create = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY;
    assert!(c5.open(&a.join("shared/by-five"), create).unwrap().is_ok());
    assert_eq!(owner(&src.join("shared/by-five")), (5, 5));
    assert_eq!(owner(&a.join("shared/by-five")), (100005, 100005));
    assert_eq!(
        c5.stat_owner(&a.join("shared/by-five")).unwrap(),
        Ok((5, 5))
    );
    // Host root (kuid 0) has no on-disk id through A: EOVERFLOW.
    let e = std::fs::File::create_new(a.join("shared/by-host-root")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EOVERFLOW));
    // Through B's second extent: kuid 300007 is stored as 1007.
    let h = UsernsChild::spawn(&UnshareOptions {
        ids: Some(Ids {
            uid: 300007,
            gid: 300007,
            groups: Some(vec![]),
        }),
        new_userns: false,
        ..UnshareOptions::default()
    })
    .unwrap();
    assert!(h.open(&b.join("shared/by-300007"), create).unwrap().is_ok());
    assert_eq!(owner(&src.join("shared/by-300007")), (1007, 1007));
    assert_eq!(owner(&a.join("shared/by-300007")), (101007, 101007));

    // A read-only idmapped mount: same ownership, no writes.
    let r = fs.mount_point("ro");
    let _gr = idmapped(src, &r, &map(a_map), true, false);
    assert_eq!(c5.stat_owner(&r.join("five")).unwrap(), Ok((5, 5)));
    assert_eq!(
        c5.open(&r.join("shared/nope"), create).unwrap(),
        Err(Errno::ROFS)
    );
    assert!(!src.join("shared/nope").exists());
}

#[test]
fn tmpfs() {
    if needs_root("tmpfs") {
        check_filesystem(FsKind::Tmpfs);
    }
}

fn loop_fs(kind: FsKind) {
    let test = kind.name();
    if needs_root(test) && !skip_reason(test, kind.missing_tool()) {
        check_filesystem(kind);
    }
}

#[test]
fn ext4() {
    loop_fs(FsKind::Ext4);
}

#[test]
fn btrfs() {
    loop_fs(FsKind::Btrfs);
}

#[test]
fn xfs() {
    loop_fs(FsKind::Xfs);
}

#[test]
fn recursive_clone_maps_submounts_too() {
    if !needs_root("recursive_clone_maps_submounts_too") {
        return;
    }
    let outer = ScratchFs::new(FsKind::Tmpfs);
    let sub = outer.root().join("sub");
    std::fs::create_dir(&sub).unwrap();
    run("mount", &["-t", "tmpfs", "inner", sub.to_str().unwrap()]);
    let _gs = MountGuard(sub.clone());
    std::fs::write(sub.join("inner-file"), "x").unwrap();
    chown(&sub.join("inner-file"), 7, 7, 0o644);
    let m = map("0 100000 65536");
    let rec = outer.mount_point("rec");
    let _g1 = idmapped(outer.root(), &rec, &m, false, true);
    assert_eq!(owner(&rec.join("sub/inner-file")), (100007, 100007));
    assert!(mount_is_idmapped(&rec.join("sub")).unwrap());
    let flat = outer.mount_point("flat");
    let _g2 = idmapped(outer.root(), &flat, &m, false, false);
    assert!(
        !flat.join("sub/inner-file").exists(),
        "a plain clone leaves submounts out"
    );
}

#[test]
fn overlayfs_over_idmapped_layers() {
    if !needs_root("overlayfs_over_idmapped_layers")
        || skip_reason(
            "overlayfs_over_idmapped_layers",
            FsKind::Ext4.missing_tool(),
        )
    {
        return;
    }
    let a_map = "0 100000 65536";
    let lower_fs = ScratchFs::new(FsKind::Ext4);
    let tree = Tree::make(lower_fs.root());
    let lower = lower_fs.mount_point("lower");
    let _gl = idmapped(&tree.root, &lower, &map(a_map), false, false);
    let up_fs = ScratchFs::new(FsKind::Tmpfs);
    let upper = up_fs.root().join("upper");
    let work = up_fs.root().join("work");
    std::fs::create_dir(&upper).unwrap();
    std::fs::create_dir(&work).unwrap();
    let merged = up_fs.mount_point("merged");
    let _go = mount_overlay(&lower, &upper, &work, &merged);

    assert_eq!(owner(&merged.join("five")), (100005, 100005));
    assert_eq!(owner(&merged.join("outside")), (65534, 65534));
    let c5 = container(a_map, 5, 5);
    assert_eq!(c5.stat_owner(&merged.join("five")).unwrap(), Ok((5, 5)));
    assert!(c5
        .open(&merged.join("five"), OFlags::RDONLY)
        .unwrap()
        .is_ok());
    assert_eq!(
        c5.open(&merged.join("six"), OFlags::RDONLY).unwrap(),
        Err(Errno::ACCESS)
    );

    // overlayfs itself cannot be idmapped.
    let d = DetachedMount::clone_tree(&merged, false).unwrap();
    let ns = MappingUserns::new(&map(a_map), &map(a_map)).unwrap();
    let e = d.set_idmap(&ns).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "mount_setattr {} (overlay): filesystem overlay does not support idmapped mounts \
             (FS_ALLOW_IDMAP): EINVAL (Invalid argument)",
            merged.display()
        )
    );
}

#[test]
fn refusals_name_the_filesystem_and_the_requirement() {
    if !needs_root("refusals_name_the_filesystem_and_the_requirement") {
        return;
    }
    let m = map("0 100000 65536");
    let ns = MappingUserns::new(&m, &m).unwrap();
    let fs = ScratchFs::new(FsKind::Tmpfs);
    let src = fs.root();

    // Idmapping a mount twice, and idmapping a clone of an idmapped mount.
    let d = DetachedMount::clone_tree(src, false).unwrap();
    d.set_idmap(&ns).unwrap();
    let twice = d.set_idmap(&ns).unwrap_err();
    let already = |p: &Path| {
        format!(
            "mount_setattr {} (tmpfs): mount is already idmapped (the kernel sets a mount's \
             idmap once; clone the original, not an idmapped mount): EPERM (Operation not \
             permitted)",
            p.display()
        )
    };
    assert_eq!(twice.to_string(), already(src));
    let Error::Mount(m) = &twice else {
        panic!("{twice:?}")
    };
    assert_eq!(m.errno, Errno::PERM);
    assert_eq!(m.requirement, Some(MountRequirement::NotAlreadyIdmapped));
    let dst = fs.mount_point("dst");
    d.attach(&dst).unwrap();
    let _g = MountGuard(dst.clone());
    let again = DetachedMount::clone_tree(&dst, false).unwrap();
    assert_eq!(again.set_idmap(&ns).unwrap_err().to_string(), already(&dst));

    // A filesystem type without FS_ALLOW_IDMAP: proc, sysfs, ramfs.
    for (p, t) in [("/proc", "proc"), ("/sys", "sysfs")] {
        let d = DetachedMount::clone_tree(Path::new(p), false).unwrap();
        assert_eq!(
            d.set_idmap(&ns).unwrap_err().to_string(),
            format!(
                "mount_setattr {p} ({t}): filesystem {t} does not support idmapped mounts \
                 (FS_ALLOW_IDMAP): EINVAL (Invalid argument)"
            )
        );
    }
    let r = fs.mount_point("ramfs");
    run("mount", &["-t", "ramfs", "ramfs", r.to_str().unwrap()]);
    let _gr = MountGuard(r.clone());
    let e = DetachedMount::clone_tree(&r, false)
        .unwrap()
        .set_idmap(&ns)
        .unwrap_err();
    let Error::Mount(m) = &e else { panic!("{e:?}") };
    assert_eq!(m.errno, Errno::INVAL);
    assert_eq!(
        m.requirement,
        Some(MountRequirement::FsAllowIdmap(FsType::from_magic(
            0x8584_58F6
        )))
    );
    assert_eq!(m.fs_type.name, Some("ramfs"));

    // The initial user namespace maps nothing: EPERM.
    let init = UserNsFd::open_path(Path::new("/proc/self/ns/user")).unwrap();
    let e = DetachedMount::clone_tree(src, false)
        .unwrap()
        .set_idmap(&init)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "mount_setattr {} (tmpfs): the idmap's user namespace is the initial one (the kernel \
             refuses an idmap that maps nothing): EPERM (Operation not permitted)",
            src.display()
        )
    );

    // A missing source, and a missing target.
    let missing = fs.root().join("missing");
    let e = DetachedMount::clone_tree(&missing, false).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "statfs {}: ENOENT (No such file or directory)",
            missing.display()
        )
    );
    let d = DetachedMount::clone_tree(src, false).unwrap();
    let e = d.attach(&missing).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "move_mount {} (tmpfs) onto {}: ENOENT (No such file or directory)",
            src.display(),
            missing.display()
        )
    );
}

#[test]
fn mapping_userns_leaves_no_process_behind() {
    if !needs_root("mapping_userns_leaves_no_process_behind") {
        return;
    }
    let fs = ProcFs::new();
    let ns = MappingUserns::new(&map("0 100000 65536"), &map("0 100000 65536\n")).unwrap();
    let id = ns.id().unwrap();
    assert_eq!(
        fs.find_pid_in_userns(id).unwrap(),
        None,
        "no process lives in it"
    );
    // The fd alone keeps it alive and usable: an idmapped mount takes it after the helper is gone.
    assert_eq!(ns.owner_uid().unwrap(), 0);
    let t = ScratchFs::new(FsKind::Tmpfs);
    std::fs::write(t.root().join("f"), "x").unwrap();
    let dst = t.mount_point("dst");
    let d = DetachedMount::clone_tree(t.root(), false).unwrap();
    d.set_idmap(&ns).unwrap();
    d.attach(&dst).unwrap();
    let _g = MountGuard(dst.clone());
    assert_eq!(owner(&dst.join("f")), (100000, 100000));
}
