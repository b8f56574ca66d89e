//! Worlds the kernel cannot build are refused when parsed, with the table, line, column and
//! the kernel's rule (function and errno). Each refusal is tried on the kernel in
//! tests/conformance/tests/unbuildable.rs.

use credns_model::{Error, Scenario};

fn refused(text: &str) -> String {
    match Scenario::parse(text, "w.toml") {
        Err(e @ Error::Scenario { .. }) => e.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

const CONTAINER: &str = "[[namespace]]\nname = \"c\"\nowner = 1000\nuid_map = \"0 100000 65536\"\n";

#[test]
fn idmap_through_a_namespace_without_a_gid_map() {
    let text = format!(
        "{CONTAINER}\n[[filesystem]]\nname = \"data\"\ntype = \"ext4\"\n\n[[mount]]\npath = \"/m\"\nfs = \"data\"\nidmap = \"c\"\n"
    );
    assert_eq!(
        refused(&text),
        "w.toml:13:9: a mount cannot be idmapped through namespace \"c\": it has no gid_map (can_idmap_mount: EINVAL)"
    );
}

#[test]
fn idmap_through_a_namespace_without_any_map() {
    let text = "[[namespace]]\nname = \"e\"\nowner = 1000\n\n[[filesystem]]\nname = \"t\"\ntype = \"tmpfs\"\n\n[[mount]]\npath = \"/m\"\nfs = \"t\"\nidmap = \"e\"\n";
    assert_eq!(
        refused(text),
        "w.toml:12:9: a mount cannot be idmapped through namespace \"e\": it has no uid_map and no gid_map (can_idmap_mount: EINVAL)"
    );
}

#[test]
fn idmap_with_the_initial_namespace() {
    let text = "[[filesystem]]\nname = \"t\"\ntype = \"tmpfs\"\n\n[[mount]]\npath = \"/m\"\nfs = \"t\"\nidmap = \"init\"\n";
    assert_eq!(
        refused(text),
        "w.toml:8:9: a mount cannot be idmapped with the initial namespace (build_mount_idmapped: EPERM): declare a namespace with an identity map instead"
    );
}

#[test]
fn idmap_with_the_superblocks_own_namespace() {
    let text = format!(
        "{CONTAINER}gid_map = \"0 100000 65536\"\n\n[[filesystem]]\nname = \"t\"\ntype = \"tmpfs\"\nns = \"c\"\n\n[[mount]]\npath = \"/m\"\nfs = \"t\"\nidmap = \"c\"\n"
    );
    assert_eq!(
        refused(&text),
        "w.toml:15:9: filesystem \"t\" belongs to namespace \"c\" already: an idmap with the superblock's own namespace is refused (can_idmap_mount: EINVAL)"
    );
}

#[test]
fn idmap_of_a_type_without_fs_allow_idmap() {
    let text = format!(
        "{CONTAINER}gid_map = \"0 100000 65536\"\n\n[[filesystem]]\nname = \"p\"\ntype = \"ramfs\"\n\n[[mount]]\npath = \"/m\"\nfs = \"p\"\nidmap = \"c\"\n"
    );
    assert_eq!(
        refused(&text),
        "w.toml:14:9: filesystem \"p\" is ramfs, which lacks FS_ALLOW_IDMAP (can_idmap_mount: EINVAL)"
    );
}

#[test]
fn ext4_owned_by_a_container_namespace() {
    let text = format!("{CONTAINER}\n[[filesystem]]\nname = \"d\"\ntype = \"ext4\"\nns = \"c\"\n");
    assert_eq!(
        refused(&text),
        "w.toml:9:6: a ext4 filesystem cannot belong to namespace \"c\": ext4 lacks FS_USERNS_MOUNT, so its superblocks belong to the initial namespace (sget_fc: EPERM)"
    );
}

#[test]
fn tmpfs_owned_by_a_container_namespace_is_buildable() {
    let text = format!("{CONTAINER}\n[[filesystem]]\nname = \"d\"\ntype = \"tmpfs\"\nns = \"c\"\n");
    Scenario::parse(&text, "w.toml").expect("tmpfs has FS_USERNS_MOUNT");
}

#[test]
fn unknown_type_in_a_container_namespace_names_what_decides() {
    let text = format!("{CONTAINER}\n[[filesystem]]\nname = \"d\"\ntype = \"zfs\"\nns = \"c\"\n");
    let msg = refused(&text);
    assert!(
        msg.starts_with("w.toml:9:6: the model does not know whether filesystem type \"zfs\" has FS_USERNS_MOUNT"),
        "{msg}"
    );
}

#[test]
fn overlapping_extents() {
    let text = "[[namespace]]\nname = \"c\"\nowner = 0\nuid_map = \"0 100000 10\\n5 200000 10\"\n";
    let msg = refused(text);
    assert!(msg.starts_with("w.toml:4:11: uid map of \"c\": "), "{msg}");
    assert!(msg.ends_with("(map_write: EINVAL)"), "{msg}");
    assert!(msg.contains("overlaps"), "{msg}");
}

#[test]
fn too_many_extents() {
    let map: String = (0..341).map(|i| format!("{i} {} 1\\n", 1000 + i)).collect();
    let text = format!("[[namespace]]\nname = \"c\"\nowner = 0\nuid_map = \"{map}\"\n");
    let msg = refused(&text);
    assert!(msg.starts_with("w.toml:4:11: uid map of \"c\": "), "{msg}");
    assert!(msg.ends_with("(map_write: EINVAL)"), "{msg}");
}

#[test]
fn a_field_missing() {
    let text = "[[namespace]]\nname = \"c\"\nowner = 0\ngid_map = \"0 100000\"\n";
    let msg = refused(text);
    assert!(
        msg.starts_with("w.toml:4:11: gid map of \"c\": the line ends after two numbers"),
        "{msg}"
    );
    assert!(msg.ends_with("(map_write: EINVAL)"), "{msg}");
}

#[test]
fn lower_ids_not_mapped_in_the_parent() {
    let text = format!(
        "{CONTAINER}\n[[namespace]]\nname = \"n\"\nparent = \"c\"\nowner = \"kernel:1000\"\nuid_map = \"0 70000 10\"\n"
    );
    let msg = refused(&text);
    assert!(msg.starts_with("w.toml:10:11: uid map of \"n\": "), "{msg}");
    assert!(msg.ends_with("(map_write: EPERM)"), "{msg}");
}

#[test]
fn setgroups_allow_below_deny() {
    let text = format!(
        "{CONTAINER}setgroups = \"deny\"\n\n[[namespace]]\nname = \"n\"\nparent = \"c\"\nowner = \"kernel:1000\"\nsetgroups = \"allow\"\n"
    );
    assert_eq!(
        refused(&text),
        "w.toml:11:13: setgroups \"allow\" cannot be written in a namespace whose parent \"c\" denies setgroups: a new namespace starts with its parent's flag, and \"allow\" once denied is refused (proc_setgroups_write: EPERM)"
    );
}

#[test]
fn thirty_three_levels_deep() {
    let mut text = String::new();
    for i in 1..=34 {
        let parent = if i == 1 {
            "init".to_string()
        } else {
            format!("n{}", i - 1)
        };
        text += &format!(
            "[[namespace]]\nname = \"n{i}\"\nparent = \"{parent}\"\nowner = \"kernel:0\"\n\n"
        );
    }
    let msg = refused(&text);
    assert!(
        msg.contains("its parent \"n33\" is at level 33 (create_user_ns: ENOSPC"),
        "{msg}"
    );
    text.truncate(text.rfind("[[namespace]]").expect("34 tables"));
    Scenario::parse(&text, "w.toml").expect("33 levels are allowed");
}
