//! `can_idmap_mount`: only filesystem types with FS_ALLOW_IDMAP may be idmapped. Checked
//! against Linux 6.18 (crates/sys/tests/mount.rs): tmpfs, ext4, btrfs and xfs accept an idmap;
//! proc, sysfs, ramfs and overlay refuse it with EINVAL.

use credns_idmap::{Kgid, Kuid};
use credns_model::{MountOptions, World, FS_ALLOW_IDMAP};

fn world_with(fs_type: &str) -> Result<(), credns_model::Error> {
    let mut w = World::new();
    let init = w.init_ns();
    let root = w
        .add_superblock("root", "tmpfs", init, Kuid(0), Kgid(0), 0o755)
        .unwrap();
    w.add_mount("/", root, MountOptions::default()).unwrap();
    let sb = w
        .add_superblock("fs", fs_type, init, Kuid(0), Kgid(0), 0o755)
        .unwrap();
    let ns = w.add_userns("m", init, Kuid(0), Kgid(0)).unwrap();
    w.set_uid_map(ns, "0 100000 65536").unwrap();
    w.set_gid_map(ns, "0 100000 65536").unwrap();
    w.add_mount(
        "/mnt",
        sb,
        MountOptions {
            idmap: Some(ns),
            ..MountOptions::default()
        },
    )
    .map(|_| ())
}

#[test]
fn kernel_checked_types_accept_an_idmap() {
    for t in ["tmpfs", "ext4", "btrfs", "xfs"] {
        assert!(FS_ALLOW_IDMAP.contains(&t));
        world_with(t).unwrap_or_else(|e| panic!("{t}: {e}"));
    }
}

#[test]
fn types_without_fs_allow_idmap_are_refused() {
    for t in ["proc", "sysfs", "ramfs", "overlay"] {
        assert_eq!(
            world_with(t).unwrap_err().to_string(),
            format!("filesystem {t} does not support idmapped mounts (FS_ALLOW_IDMAP)")
        );
    }
}
