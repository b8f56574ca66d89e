//! Worlds the model refuses to build, tried on the kernel: each refusal the scenario parser
//! gives (crates/model/src/scenario/buildable.rs) is the errno the kernel gives when the same
//! thing is attempted with crates/sys's mount calls. Needs root.

use std::os::fd::AsFd;
use std::path::Path;

use credns_conformance::needs_root;
use credns_conformance::scratch::{FsKind, ScratchFs};
use credns_idmap::IdKind;
use credns_sys::nsmount::{create_and_fsmount, fsopen_in_new_userns, set_idmap_on};
use credns_sys::{DetachedMount, Errno, UserNsFd};

const MAP: &str = "0 100000 65536";

/// A user namespace with the maps given (and only those), its fs context unused.
fn userns_with(maps: &[(IdKind, &str)]) -> UserNsFd {
    let ctx = fsopen_in_new_userns("tmpfs", maps)
        .expect("helper")
        .expect("fsopen tmpfs in a new user namespace");
    for w in &ctx.map_writes {
        assert_eq!(*w, Ok(()), "map write");
    }
    ctx.userns
}

fn idmap_clone_of(path: &Path, ns: &UserNsFd) -> Result<(), Errno> {
    let clone = DetachedMount::clone_tree(path, false).expect("open_tree clone");
    match clone.set_idmap(ns) {
        Ok(()) => Ok(()),
        Err(credns_sys::Error::Mount(f)) => Err(f.errno),
        Err(e) => panic!("mount_setattr: {e}"),
    }
}

#[test]
fn idmap_through_a_namespace_missing_a_map_is_einval() {
    if !needs_root("idmap_through_a_namespace_missing_a_map_is_einval") {
        return;
    }
    let fs = ScratchFs::new(FsKind::Tmpfs);
    let both = userns_with(&[(IdKind::Uid, MAP), (IdKind::Gid, MAP)]);
    assert_eq!(
        idmap_clone_of(fs.root(), &both),
        Ok(()),
        "both maps: allowed"
    );
    let no_gid = userns_with(&[(IdKind::Uid, MAP)]);
    assert_eq!(idmap_clone_of(fs.root(), &no_gid), Err(Errno::INVAL));
    let no_uid = userns_with(&[(IdKind::Gid, MAP)]);
    assert_eq!(idmap_clone_of(fs.root(), &no_uid), Err(Errno::INVAL));
    let none = userns_with(&[]);
    assert_eq!(idmap_clone_of(fs.root(), &none), Err(Errno::INVAL));
    // The missing map is can_idmap_mount's first check: before "already idmapped" (EPERM).
    let clone = DetachedMount::clone_tree(fs.root(), false).expect("open_tree clone");
    clone.set_idmap(&both).expect("first idmap");
    let again = |ns: &UserNsFd| match clone.set_idmap(ns) {
        Err(credns_sys::Error::Mount(f)) => f.errno,
        other => panic!("second idmap: {other:?}"),
    };
    assert_eq!(again(&both), Errno::PERM, "already idmapped");
    assert_eq!(again(&no_gid), Errno::INVAL, "missing map checked first");
}

#[test]
fn idmap_with_the_initial_namespace_is_eperm() {
    if !needs_root("idmap_with_the_initial_namespace_is_eperm") {
        return;
    }
    let fs = ScratchFs::new(FsKind::Tmpfs);
    let init = UserNsFd::open_path(Path::new("/proc/self/ns/user")).expect("own userns");
    assert_eq!(idmap_clone_of(fs.root(), &init), Err(Errno::PERM));
}

#[test]
fn idmap_of_a_type_without_fs_allow_idmap_is_einval() {
    if !needs_root("idmap_of_a_type_without_fs_allow_idmap_is_einval") {
        return;
    }
    let both = userns_with(&[(IdKind::Uid, MAP), (IdKind::Gid, MAP)]);
    assert_eq!(idmap_clone_of(Path::new("/proc"), &both), Err(Errno::INVAL));
}

#[test]
fn idmap_with_the_superblocks_own_namespace_is_einval() {
    if !needs_root("idmap_with_the_superblocks_own_namespace_is_einval") {
        return;
    }
    // A tmpfs whose s_user_ns is U: its context opened in U, created by us (host root).
    let ctx = fsopen_in_new_userns("tmpfs", &[(IdKind::Uid, MAP), (IdKind::Gid, MAP)])
        .expect("helper")
        .expect("fsopen");
    let mnt = create_and_fsmount(ctx.fs.as_fd(), None).expect("tmpfs owned by U");
    assert_eq!(set_idmap_on(mnt.as_fd(), &ctx.userns), Err(Errno::INVAL));
    // Another namespace than the superblock's: allowed, so the EINVAL was the same-namespace rule.
    let other = userns_with(&[
        (IdKind::Uid, "0 200000 65536"),
        (IdKind::Gid, "0 200000 65536"),
    ]);
    assert_eq!(set_idmap_on(mnt.as_fd(), &other), Ok(()));
}

#[test]
fn ext4_owned_by_a_non_initial_namespace_is_eperm() {
    if !needs_root("ext4_owned_by_a_non_initial_namespace_is_eperm") {
        return;
    }
    let fs = ScratchFs::new(FsKind::Ext4);
    let dev = fs.device().expect("loop device");
    let ctx = fsopen_in_new_userns("ext4", &[(IdKind::Uid, MAP), (IdKind::Gid, MAP)])
        .expect("helper")
        .expect("fsopen ext4 in a new user namespace");
    assert_eq!(
        create_and_fsmount(ctx.fs.as_fd(), Some(dev)).map(|_| ()),
        Err(Errno::PERM)
    );
    // tmpfs (FS_USERNS_MOUNT) in the same situation: allowed.
    let t = fsopen_in_new_userns("tmpfs", &[(IdKind::Uid, MAP), (IdKind::Gid, MAP)])
        .expect("helper")
        .expect("fsopen tmpfs");
    assert!(create_and_fsmount(t.fs.as_fd(), None).is_ok());
}

#[test]
fn maps_the_kernel_refuses() {
    if !needs_root("maps_the_kernel_refuses") {
        return;
    }
    let cases: &[(&str, Errno)] = &[
        ("0 100000 10\n5 200000 10\n", Errno::INVAL), // overlapping upper ranges
        ("0 100000 10\n20 100005 10\n", Errno::INVAL), // overlapping lower ranges
        ("0 100000 0\n", Errno::INVAL),               // zero count
        ("0 4294967295 1\n", Errno::INVAL),           // the reserved id
        ("0 100000\n", Errno::INVAL),                 // a missing field
    ];
    for (text, errno) in cases {
        let ctx = fsopen_in_new_userns("tmpfs", &[(IdKind::Uid, text)])
            .expect("helper")
            .expect("fsopen");
        assert_eq!(ctx.map_writes, vec![Err(*errno)], "uid_map {text:?}");
    }
    let many: String = (0..341).map(|i| format!("{i} {} 1\n", 1000 + i)).collect();
    assert!(
        many.len() < 4096,
        "under a page, so the count is what is refused"
    );
    let ctx = fsopen_in_new_userns("tmpfs", &[(IdKind::Uid, &many)])
        .expect("helper")
        .expect("fsopen");
    assert_eq!(ctx.map_writes, vec![Err(Errno::INVAL)], "341 extents");
}
