//! Scratch filesystems for mount tests: tmpfs, and ext4, btrfs and xfs on loop devices over
//! sparse files, each mounted on a fresh directory and removed (unmount, `losetup -d`, files)
//! by `Drop`, also when a test panics. Needs root and the `mount`, `losetup` and `mkfs.*`
//! commands (util-linux, e2fsprogs, btrfs-progs, xfsprogs).
//!
//! This file is also compiled into crates/sys's and the CLI's tests (`#[path]`), so it uses
//! nothing but std and `credns_sys`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The filesystem types the mount tests run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsKind {
    /// tmpfs (no device).
    Tmpfs,
    /// ext4 on a loop device.
    Ext4,
    /// btrfs on a loop device.
    Btrfs,
    /// xfs on a loop device.
    Xfs,
}

impl FsKind {
    /// Every kind.
    pub const ALL: [FsKind; 4] = [FsKind::Tmpfs, FsKind::Ext4, FsKind::Btrfs, FsKind::Xfs];

    /// The kernel's name of the type.
    pub fn name(self) -> &'static str {
        match self {
            FsKind::Tmpfs => "tmpfs",
            FsKind::Ext4 => "ext4",
            FsKind::Btrfs => "btrfs",
            FsKind::Xfs => "xfs",
        }
    }

    fn mkfs(self) -> Option<(&'static str, &'static [&'static str])> {
        match self {
            FsKind::Tmpfs => None,
            FsKind::Ext4 => Some(("mkfs.ext4", &["-q", "-F"])),
            FsKind::Btrfs => Some(("mkfs.btrfs", &["-q", "-f"])),
            FsKind::Xfs => Some(("mkfs.xfs", &["-q", "-f"])),
        }
    }

    /// Why this kind cannot be made here (a missing command), if it cannot.
    pub fn missing_tool(self) -> Option<String> {
        let mut tools = vec!["mount", "umount"];
        if let Some((mkfs, _)) = self.mkfs() {
            tools.push("losetup");
            tools.push(mkfs);
        }
        tools
            .into_iter()
            .find(|t| !command_exists(t))
            .map(|t| format!("the {t} command is missing"))
    }
}

fn command_exists(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .chain(["/sbin".into(), "/usr/sbin".into()])
                .any(|d| d.join(name).is_file())
        })
        .unwrap_or(false)
}

/// Run a command; panic with its output if it fails.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {}: {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh directory under the temp dir, removed (with whatever is left in it) on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Make one whose name starts with `tag`.
    pub fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("credns-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        TempDir(p)
    }

    /// A directory inside it (created).
    pub fn subdir(&self, name: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Something mounted at a path, unmounted on drop (lazily if it is busy).
#[derive(Debug)]
pub struct MountGuard(pub PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        if credns_sys::unmount(&self.0, false).is_err() {
            let _ = credns_sys::unmount(&self.0, true);
        }
    }
}

/// Mount an overlay of `lower` with `upper` and `work` (directories that exist) at `merged`;
/// unmounted when the guard drops.
pub fn mount_overlay(lower: &Path, upper: &Path, work: &Path, merged: &Path) -> MountGuard {
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let target = merged.to_str().expect("a UTF-8 mount point");
    run("mount", &["-t", "overlay", "overlay", "-o", &opts, target]);
    MountGuard(merged.to_owned())
}

/// A loop device attached to a file, detached on drop.
#[derive(Debug)]
pub struct LoopDevice(pub String);

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// A scratch filesystem mounted at [`ScratchFs::root`]. Fields drop in order: the mount, then
/// the loop device, then the directory holding the mount point and the backing file.
#[derive(Debug)]
pub struct ScratchFs {
    mount: MountGuard,
    _loop: Option<LoopDevice>,
    dir: TempDir,
    kind: FsKind,
}

impl ScratchFs {
    /// Make and mount a filesystem of `kind` (owned by root, mode 0755 at its root).
    pub fn new(kind: FsKind) -> Self {
        let dir = TempDir::new(kind.name());
        let mnt = dir.subdir("mnt");
        let mnt_s = mnt.to_str().expect("utf-8 temp path");
        let lo = match kind.mkfs() {
            None => {
                run(
                    "mount",
                    &["-t", "tmpfs", "-o", "mode=0755", "credns-scratch", mnt_s],
                );
                None
            }
            Some((mkfs, args)) => {
                let img = dir.0.join("disk.img");
                // xfs wants at least 300 MiB; the file is sparse.
                std::fs::File::create(&img)
                    .and_then(|f| f.set_len(320 << 20))
                    .unwrap_or_else(|e| panic!("create {}: {e}", img.display()));
                let img_s = img.to_str().expect("utf-8 temp path");
                let mut a: Vec<&str> = args.to_vec();
                a.push(img_s);
                run(mkfs, &a);
                let dev = run("losetup", &["--find", "--show", img_s])
                    .trim()
                    .to_string();
                let lo = LoopDevice(dev);
                run("mount", &[&lo.0, mnt_s]);
                Some(lo)
            }
        };
        std::fs::set_permissions(&mnt, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        ScratchFs {
            mount: MountGuard(mnt),
            _loop: lo,
            dir,
            kind,
        }
    }

    /// Where it is mounted.
    pub fn root(&self) -> &Path {
        &self.mount.0
    }

    /// The loop device it lives on (none for tmpfs).
    pub fn device(&self) -> Option<&str> {
        self._loop.as_ref().map(|l| l.0.as_str())
    }

    /// Its kind.
    pub fn kind(&self) -> FsKind {
        self.kind
    }

    /// A fresh empty directory beside the mount (for mount points of clones).
    pub fn mount_point(&self, name: &str) -> PathBuf {
        self.dir.subdir(name)
    }
}
