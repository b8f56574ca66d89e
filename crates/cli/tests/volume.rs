//! `credns run --volume SRC:DST[:ro] --rootfs IMAGE` on the running kernel: volumes on tmpfs
//! and ext4 show their on-disk owners to the container and store what it creates with its own
//! ids; two containers with different ranges share a volume; `:ro`; the idmapped rootfs; the
//! README example; refusals that leave nothing allocated. Scratch filesystems and temp files
//! are removed by Drop guards; the container's mounts live in its own mount namespace.
//!
//! These need root and a static busybox. Without them each test prints "skipped: ..." and
//! returns, unless CREDNS_REQUIRE_ALL=1, which turns the skip into a failure.

mod common;
#[path = "../../../tests/conformance/src/scratch.rs"]
mod scratch;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use credns_registry::Lease;
use scratch::{FsKind, ScratchFs, TempDir};

/// A registry in a temp dir and an image: busybox with /etc/passwd and /etc/group naming 0
/// and 1000, and an empty /data. Everything the test made is owned by host root (on-disk 0).
struct Env {
    dir: tempfile::TempDir,
    image: PathBuf,
}

impl Env {
    /// `None` when the test is skipped.
    fn new(test: &str) -> Option<Self> {
        if !needs_root(test) {
            return None;
        }
        let busybox = static_busybox(test)?;
        let dir = tempfile::tempdir().unwrap();
        let image = busybox_rootfs(&busybox, dir.path());
        for applet in ["stat", "touch", "mkdir"] {
            std::os::unix::fs::symlink("busybox", image.join("bin").join(applet)).unwrap();
        }
        std::fs::create_dir_all(image.join("etc")).unwrap();
        std::fs::write(
            image.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(image.join("etc/group"), "root:x:0:\nuser:x:1000:\n").unwrap();
        std::fs::create_dir(image.join("data")).unwrap();
        Some(Env { dir, image })
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("registry.redb")
    }

    fn run(&self, args: &[&str]) -> Output {
        let store = self.store().display().to_string();
        // A socket nobody serves: the store is used directly, never a host's daemon.
        let socket = self.dir.path().join("no-daemon.sock").display().to_string();
        let mut all = vec!["run", "--store", &store, "--socket", &socket];
        all.extend_from_slice(args);
        credns(&all)
    }

    /// `credns run [--name NAME] [--user U] --rootfs IMAGE --volume DATA:/data[:ro] -- sh -c SCRIPT`.
    fn sh(&self, name: Option<&str>, user: Option<&str>, volume: &str, script: &str) -> Output {
        let image = s(&self.image);
        let mut args = Vec::new();
        if let Some(n) = name {
            args.extend(["--name", n]);
        }
        if let Some(u) = user {
            args.extend(["--user", u]);
        }
        args.extend([
            "--rootfs", image, "--volume", volume, "--", "sh", "-c", script,
        ]);
        self.run(&args)
    }

    /// The host uid range start of the allocation leased to `name`.
    fn range_of(&self, name: &str) -> u32 {
        let a = allocations(&self.store());
        a.iter()
            .find(|a| a.lease == Lease::name(name))
            .unwrap_or_else(|| panic!("no allocation {name} in {a:?}"))
            .uid
            .start
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn owner(p: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.uid(), m.gid())
}

/// A volume's contents as stored: files owned on disk by 0, 1000 and 70000 (outside any
/// 65536-id container), and a world-writable (sticky) directory `shared`.
fn populate(root: &Path) {
    for (name, id) in [("owned0", 0), ("owned1000", 1000), ("outside", 70000)] {
        let p = root.join(name);
        std::fs::write(&p, name).unwrap();
        std::os::unix::fs::chown(&p, Some(id), Some(id)).unwrap();
    }
    let shared = root.join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
}

fn scratch(test: &str, kind: FsKind) -> Option<ScratchFs> {
    if let Some(why) = kind.missing_tool() {
        if std::env::var("CREDNS_REQUIRE_ALL").as_deref() == Ok("1") {
            panic!("{test}: {why}, and CREDNS_REQUIRE_ALL=1 forbids skipping");
        }
        println!("{test}: skipped on {}: {why}", kind.name());
        return None;
    }
    let fs = ScratchFs::new(kind);
    populate(fs.root());
    Some(fs)
}

/// The single extent of a /proc map: (first, lower_first, count).
fn extent(line: &str) -> (u64, u64, u64) {
    let f: Vec<u64> = line
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(f.len(), 3, "{line:?}");
    (f[0], f[1], f[2])
}

/// (uid, gid, name) of each entry of `ls -ln` output.
fn ls_owners(out: &str) -> Vec<(String, String, String)> {
    out.lines()
        .filter(|l| !l.starts_with("total"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[2].to_string(),
                f[3].to_string(),
                f.last().unwrap().to_string(),
            )
        })
        .collect()
}

fn no_mount_left(env: &Env) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let image = env.image.display().to_string();
    assert!(
        !info.contains(&image),
        "a mount on the image is left on the host: {info}"
    );
}

#[test]
fn volume_shows_on_disk_owners_and_stores_the_containers_ids() {
    let t = "volume_shows_on_disk_owners_and_stores_the_containers_ids";
    let Some(env) = Env::new(t) else { return };
    for kind in [FsKind::Tmpfs, FsKind::Ext4] {
        let Some(fs) = scratch(t, kind) else { continue };
        let vol = format!("{}:/data", fs.root().display());
        let name = format!("c-{}", kind.name());
        let out = ok(&env.sh(
            Some(&name),
            None,
            &vol,
            "stat -c '%n %u %g' /data/owned0 /data/owned1000 /data/outside; \
             touch /data/by-root; stat -c '%u %g' /data/by-root",
        ));
        assert_eq!(
            out, "/data/owned0 0 0\n/data/owned1000 1000 1000\n/data/outside 65534 65534\n0 0\n",
            "{kind:?}"
        );
        let out = ok(&env.sh(
            Some(&name),
            Some("1000"),
            &vol,
            "id -u; touch /data/shared/by-1000; stat -c '%u %g' /data/shared/by-1000",
        ));
        assert_eq!(out, "1000\n1000 1000\n", "{kind:?}");
        // The container's ids are far from the on-disk ones: what landed on disk went through
        // the idmap, not the container's kernel ids.
        let base = env.range_of(&name);
        assert!(base >= 65536, "{base}");
        assert_eq!(owner(&fs.root().join("by-root")), (0, 0), "{kind:?}");
        assert_eq!(
            owner(&fs.root().join("shared/by-1000")),
            (1000, 1000),
            "{kind:?}"
        );
        assert_eq!(owner(&fs.root().join("outside")), (70000, 70000));
    }
    no_mount_left(&env);
}

#[test]
fn two_ranges_share_one_volume() {
    let t = "two_ranges_share_one_volume";
    let Some(env) = Env::new(t) else { return };
    for kind in [FsKind::Tmpfs, FsKind::Ext4] {
        let Some(fs) = scratch(t, kind) else { continue };
        let vol = format!("{}:/data", fs.root().display());
        let (one, two) = (
            format!("one-{}", kind.name()),
            format!("two-{}", kind.name()),
        );
        let out1 = ok(&env.sh(
            Some(&one),
            None,
            &vol,
            "cat /proc/self/uid_map; echo one > /data/from-one; \
             stat -c '%n %u %g' /data/owned1000",
        ));
        let out2 = ok(&env.sh(
            Some(&two),
            Some("1000"),
            &vol,
            "cat /proc/self/uid_map; stat -c '%n %u %g' /data/from-one; cat /data/from-one; \
             echo two > /data/shared/from-two",
        ));
        let out3 = ok(&env.sh(
            Some(&one),
            None,
            &vol,
            "stat -c '%n %u %g' /data/shared/from-two; cat /data/shared/from-two",
        ));
        let l1: Vec<&str> = out1.lines().collect();
        let l2: Vec<&str> = out2.lines().collect();
        let (m1, m2) = (extent(l1[0]), extent(l2[0]));
        assert_ne!(m1.1, m2.1, "two allocations, two ranges: {m1:?} {m2:?}");
        assert_eq!(m1.1, u64::from(env.range_of(&one)));
        assert_eq!(m2.1, u64::from(env.range_of(&two)));
        assert_eq!(&l1[1..], &["/data/owned1000 1000 1000"], "{kind:?}");
        assert_eq!(&l2[1..], &["/data/from-one 0 0", "one"], "{kind:?}");
        assert_eq!(out3, "/data/shared/from-two 1000 1000\ntwo\n", "{kind:?}");
        assert_eq!(owner(&fs.root().join("from-one")), (0, 0));
        assert_eq!(owner(&fs.root().join("shared/from-two")), (1000, 1000));
    }
    no_mount_left(&env);
}

#[test]
fn read_only_volume_refuses_writes() {
    let t = "read_only_volume_refuses_writes";
    let Some(env) = Env::new(t) else { return };
    let Some(fs) = scratch(t, FsKind::Tmpfs) else {
        return;
    };
    let vol = format!("{}:/data:ro", fs.root().display());
    let out = env.sh(
        None,
        None,
        &vol,
        "cat /data/owned0; echo; stat -c '%u' /data/owned0; touch /data/new",
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stdout(&out), "owned0\n0\n");
    assert_eq!(stderr(&out), "touch: /data/new: Read-only file system\n");
    assert!(!fs.root().join("new").exists());
    // The namespace lease went with the container.
    assert_eq!(allocations(&env.store()), vec![]);
}

#[test]
fn rootfs_is_idmapped() {
    let Some(env) = Env::new("rootfs_is_idmapped") else {
        return;
    };
    let image = s(&env.image);
    let out = ok(&env.run(&[
        "--rootfs",
        image,
        "--",
        "sh",
        "-c",
        "stat -c '%u %g' /bin/busybox /etc/passwd; cat /proc/self/uid_map; touch /tmp/made",
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..2], &["0 0", "0 0"], "{out}");
    let m = extent(lines[2]);
    assert!(m.1 >= 65536, "the container's root is not host root: {m:?}");
    assert_eq!(owner(&env.image.join("tmp/made")), (0, 0));
    no_mount_left(&env);
}

#[test]
fn readme_example_two_containers() {
    let t = "readme_example_two_containers";
    let Some(env) = Env::new(t) else { return };
    // DATA: a plain directory on the host's filesystem, as in the README.
    let data = TempDir::new("volume-data");
    populate(&data.0);
    let volume = format!("{}:/data", data.0.display());
    let image = s(&env.image);
    let mut ranges = Vec::new();
    for name in ["alpha", "beta"] {
        // credns run --rootfs IMAGE --volume DATA:/data -- sh -c 'id; ls -ln /data'
        let out = ok(&env.run(&[
            "--name",
            name,
            "--rootfs",
            image,
            "--volume",
            &volume,
            "--",
            "sh",
            "-c",
            "id; ls -ln /data",
        ]));
        let (id, ls) = out.split_once('\n').unwrap();
        assert_eq!(id, "uid=0(root) gid=0(root)", "{name}: {out}");
        let mut owners = ls_owners(ls);
        owners.sort_by(|a, b| a.2.cmp(&b.2));
        let want: Vec<(String, String, String)> = [
            ("65534", "65534", "outside"),
            ("0", "0", "owned0"),
            ("1000", "1000", "owned1000"),
            ("0", "0", "shared"),
        ]
        .iter()
        .map(|(u, g, n)| (u.to_string(), g.to_string(), n.to_string()))
        .collect();
        assert_eq!(owners, want, "{name}: {out}");
        ranges.push(env.range_of(name));
    }
    assert_ne!(ranges[0], ranges[1], "two containers, two ranges");
    no_mount_left(&env);
}

#[test]
fn unidmappable_volume_is_refused_and_nothing_allocated() {
    let t = "unidmappable_volume_is_refused_and_nothing_allocated";
    let Some(env) = Env::new(t) else { return };
    let image = s(&env.image);
    for name in [Some("refused"), None] {
        let mut args = Vec::new();
        if let Some(n) = name {
            args.extend(["--name", n]);
        }
        args.extend([
            "--rootfs",
            image,
            "--volume",
            "/proc/sys:/data",
            "--",
            "true",
        ]);
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
        assert_eq!(
            stderr(&out),
            "credns run: error: --volume \"/proc/sys:/data\": mount_setattr /proc/sys (proc): \
             filesystem proc does not support idmapped mounts (FS_ALLOW_IDMAP): EINVAL \
             (Invalid argument)\n"
        );
        assert_eq!(allocations(&env.store()), vec![], "{name:?}");
    }
    // An id the range does not map: refused before the allocation is stored too.
    let out = env.run(&[
        "--name", "big", "--user", "70000", "--rootfs", image, "--", "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).starts_with(
            "credns run: error: --user: uid 70000 is outside the namespace's mapped ids 0-65535"
        ),
        "{}",
        stderr(&out)
    );
    assert_eq!(allocations(&env.store()), vec![]);
    no_mount_left(&env);
}

#[test]
fn bad_volumes_are_refused_before_the_registry_is_opened() {
    let t = "bad_volumes_are_refused_before_the_registry_is_opened";
    let Some(env) = Env::new(t) else { return };
    let image = s(&env.image);
    let data = TempDir::new("volume-bad");
    let d = s(&data.0);
    let cases = [
        (
            "nodst".to_string(),
            "--volume \"nodst\": no DST (expected SRC:DST[:ro])".to_string(),
        ),
        (
            format!("{d}:data"),
            format!("--volume \"{d}:data\": DST \"data\" is not an absolute path"),
        ),
        (
            format!("{d}:/data:rx"),
            format!("--volume \"{d}:/data:rx\": unknown option \"rx\" (expected ro or rw)"),
        ),
        (
            format!("{d}/missing:/data"),
            format!(
                "--volume \"{d}/missing:/data\": SRC {d}/missing: No such file or directory \
                 (os error 2)"
            ),
        ),
        (
            format!("{d}:/nowhere"),
            format!("--volume \"{d}:/nowhere\": DST /nowhere does not exist in the rootfs {image}"),
        ),
        (
            format!("{d}:/host-etc"),
            format!(
                "--volume \"{d}:/host-etc\": DST /host-etc resolves to /etc, outside the rootfs \
                 {image} (a symlink in the image?)"
            ),
        ),
    ];
    // An absolute symlink of the image: inside the container it would name the image's /etc.
    std::os::unix::fs::symlink("/etc", env.image.join("host-etc")).unwrap();
    for (volume, msg) in cases {
        let out = env.run(&[
            "--name", "x", "--rootfs", image, "--volume", &volume, "--", "true",
        ]);
        assert_eq!(out.status.code(), Some(125), "{volume}");
        assert_eq!(stderr(&out), format!("credns run: error: {msg}\n"));
        assert!(!env.store().exists(), "{volume}: the registry was created");
    }
}

#[test]
fn volume_without_rootfs_is_attached_in_the_containers_namespace_only() {
    let t = "volume_without_rootfs_is_attached_in_the_containers_namespace_only";
    let Some(env) = Env::new(t) else { return };
    let Some(fs) = scratch(t, FsKind::Tmpfs) else {
        return;
    };
    let dst = fs.mount_point("dst");
    let vol = format!("{}:{}", fs.root().display(), dst.display());
    let script = format!(
        "stat -c '%n %u %g' {0}/owned0 {0}/owned1000; touch {0}/new",
        dst.display()
    );
    let out = ok(&env.run(&["--volume", &vol, "--", "sh", "-c", &script]));
    assert_eq!(
        out,
        format!("{0}/owned0 0 0\n{0}/owned1000 1000 1000\n", dst.display())
    );
    assert_eq!(owner(&fs.root().join("new")), (0, 0));
    // Nothing of it on the host's tree.
    assert_eq!(std::fs::read_dir(&dst).unwrap().count(), 0);
}
