//! Seed 003's example on the real kernel, through today's approximation of fsid maps: an
//! idmapped mount. The proposal (docs/semantics.md, semantics `fsid_map`) says that with an id
//! map "0 100000 100000" and an fsid map "0 300000 100000" a container's root sees on-disk
//! 300000 as 0, may write its files as their owner, and creates files that land on disk as
//! 300000. Linux never merged fsid maps; the kernel gets the same answers when the image is
//! mounted through an idmapped mount that sends on-disk 300000+ to kernel 100000+. This test runs
//! the container on the kernel with that mount and checks its answers against the model's
//! answers under `fsid_map` (crates/model/examples/proposals/seed003_fsid_map.toml, no idmapped
//! mount there).
//!
//! Needs root: without it the test prints "skipped: needs root (...)", or panics when
//! CREDNS_REQUIRE_ALL=1.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use credns_conformance::needs_root;
use credns_conformance::scratch::{FsKind, MountGuard, ScratchFs};
use credns_idmap::{Extent, IdKind, IdMap};
use credns_model::{Scenario, Verdict};
use credns_sys::{Actor, DetachedMount, Ids, MappingUserns, OFlags, UnshareOptions, UsernsChild};

/// The proposal's answers: (stat of the image file, open rw, the new file's output).
fn proposal() -> (String, Verdict, String) {
    let path = format!(
        "{}/../../crates/model/examples/proposals/seed003_fsid_map.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let s = Scenario::parse(&std::fs::read_to_string(&path).unwrap(), "seed003").unwrap();
    let r = s.run();
    let out = |i: usize| {
        r[i].outcome
            .output
            .as_ref()
            .map(|o| o.to_string())
            .unwrap_or_default()
    };
    assert!(r[0].text.contains("stat path=/image/etc_passwd"));
    assert!(r[1].text.contains("open path=/image/etc_passwd access=rw"));
    assert!(r[2].text.contains("create path=/image/new"));
    assert_eq!(r[2].outcome.result, Verdict::Allowed);
    (out(0), r[1].outcome.result.clone(), out(2))
}

#[test]
fn fsid_example_matches_an_idmapped_mount() {
    if !needs_root("fsid_example_matches_an_idmapped_mount") {
        return;
    }
    let (p_stat, p_open, p_create) = proposal();

    // The image on disk: owned by 300000.
    let fs = ScratchFs::new(FsKind::Tmpfs);
    let image = fs.root().join("image");
    std::fs::create_dir(&image).unwrap();
    std::fs::set_permissions(&image, std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = image.join("etc_passwd");
    std::fs::write(&file, b"root:x:0:0::/root:/bin/sh\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    for p in [&image, &file] {
        std::os::unix::fs::lchown(p, Some(300_000), Some(300_000)).unwrap();
    }

    // The approximation: an idmapped clone, on-disk 300000+ -> kernel 100000+.
    let m = IdMap::new(vec![Extent::new(300_000, 100_000, 100_000)]).unwrap();
    let ns = MappingUserns::new(&m, &m).unwrap();
    let tree = DetachedMount::clone_tree(&image, false).unwrap();
    tree.set_idmap(&ns).unwrap();
    let idm = fs.mount_point("image-idmapped");
    tree.attach(&idm).unwrap();
    let _guard = MountGuard(idm.clone());

    // The container's root: id map 0 100000 100000, every capability in its namespace.
    let ct = UsernsChild::spawn(&UnshareOptions::new()).unwrap();
    for k in [IdKind::Uid, IdKind::Gid] {
        ct.write_map(Actor::Caller, k, b"0 100000 100000\n")
            .unwrap()
            .unwrap();
    }
    // setuid(0)/setgid(0) there: kernel ids 100000, keeping its capabilities.
    let ids = Ids {
        uid: 0,
        gid: 0,
        groups: Some(vec![]),
    };
    ct.set_creds(Some(&ids), None).unwrap().unwrap();

    let (u, g) = ct.stat_owner(&idm.join("etc_passwd")).unwrap().unwrap();
    assert!(
        p_stat.starts_with(&format!("uid={u} gid={g} ")),
        "the kernel shows {u}:{g}; the proposal: {p_stat}"
    );

    let k_open = ct.open(&idm.join("etc_passwd"), OFlags::RDWR).unwrap();
    if let Ok(fd) = &k_open {
        ct.close(*fd).unwrap().unwrap();
    }
    assert_eq!(
        k_open.is_ok(),
        p_open == Verdict::Allowed,
        "{k_open:?} / {p_open}"
    );

    let k_new = ct
        .open(
            &idm.join("new"),
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY,
        )
        .unwrap()
        .expect("the container's root creates a file through the idmapped mount");
    ct.close(k_new).unwrap().unwrap();
    let md = std::fs::symlink_metadata(image.join("new")).unwrap();
    assert!(
        p_create.contains(&format!("disk_uid={} disk_gid={}", md.uid(), md.gid())),
        "on disk {}:{}; the proposal: {p_create}",
        md.uid(),
        md.gid()
    );
    let (u, g) = ct.stat_owner(&idm.join("new")).unwrap().unwrap();
    assert!(
        p_create.starts_with(&format!("uid={u} gid={g} ")),
        "{u}:{g} / {p_create}"
    );
    println!(
        "seed 003 on the kernel through an idmapped mount: stat {u}:{g}, open rw {}, new file on disk {}:{} — as the proposal answers",
        if k_open.is_ok() { "allowed" } else { "refused" },
        md.uid(),
        md.gid()
    );
}
