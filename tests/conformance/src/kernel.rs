//! The kernel executor: a model [`Scenario`] realised on the running kernel and its operations
//! performed for real, next to the model, outcome by outcome.
//!
//! What is real: user namespaces (one helper process per namespace keeps it alive and writes
//! its children's maps, as a privileged `newuidmap` would), one helper per model process with
//! the process's complete credentials (real/effective/saved/fs ids, groups, the five capability
//! sets, securebits, no_new_privs, umask), files and directories on a tmpfs and on an ext4
//! filesystem on a loop device (owners, modes, POSIX ACLs set with `setfacl`, immutable and append-only flags with `FS_IOC_SETFLAGS`), and every
//! sets, securebits, no_new_privs, umask, and its `mm->user_ns`: a helper outside the initial
//! namespace execs a small program there, see `kernel_creds::reexec_in`), files and directories on a tmpfs and on an ext4
//! filesystem on a loop device (owners, modes, POSIX ACLs set with `setfacl`), and every
//! operation made as a system call by the helper of the process that performs it.
//!
//! What a scenario must not use to be realised here (it is then skipped with the reason):
//! idmapped mounts, mount options, filesystems owned by other namespaces, read-only
//! filesystems, immutable files, non-default sysctls (the fs.protected_* ones its operations
//! read must be this machine's: kernel_dirent.rs), processes that are chrooted,
//! filesystems, non-default sysctls, processes that are chrooted,
//! multithreaded, share an fs_struct or are in another session, and mounts
//! other than at `/` or `/NAME`. Model processes in the initial namespace get the test
//! process's bounding set (the kernel does not let a process raise it), applied to the model's
//! world before it runs. A scenario that does not set fs.suid_dumpable runs with this
//! machine's. Key operations are replayed on key actors ([`crate::kernel_keys`]) and compared
//! the same way.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use credns_model::{AclTag, MapKind, NsRef, Op, Scenario, TaskRef, Verdict, World};
use credns_sys::mount::{DetachedMount, MountFlags};
use credns_sys::{
    Actor, CapSets, Errno, FullCreds, Ids, OFlags, Pid, ProcFs, SetId, UnshareOptions, UserNsFd,
    UsernsChild, WriteHow,
};

/// Every capability up to CAP_LAST_CAP 40.
pub const ALL_CAPS: u64 = (1 << 41) - 1;
const CAP_SETFCAP: u64 = 1 << 31;

#[path = "kernel_dirent.rs"]
mod dirent;
pub use dirent::host_protected;

fn run_cmd(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The filesystems the scenarios live on: a tmpfs, and an ext4, an xfs and a btrfs on loop
/// devices, each mounted under a fresh directory in /tmp. Dropping it unmounts them, detaches
/// the loop devices and removes the directory, also when a test panics.
#[derive(Debug)]
pub struct Fixture {
    base: PathBuf,
    /// Where the tmpfs is mounted.
    pub tmpfs: PathBuf,
    /// Where the ext4 is mounted.
    pub ext4: PathBuf,
    loop_dev: Option<String>,
    mounted: Vec<PathBuf>,
    /// xfs and btrfs, each on a loop device: (type, where mounted).
    pub loop_fs: Vec<(String, PathBuf)>,
    loop_devs: Vec<String>,
    /// The test process's bounding set (processes in the initial namespace cannot exceed it).
    pub host_bset: u64,
    /// The test process's permitted set.
    pub host_prm: u64,
    /// The test process's umask (a helper forked as it is keeps it).
    pub umask: u32,
    /// A small binary that prints a file: `cat`.
    pub cat: Vec<u8>,
    /// This machine's fs.protected_* sysctls (generated scenarios declare them).
    pub protected: credns_model::Protected,
}

impl Fixture {
    /// Mount the filesystems. Needs root, `mkfs.ext4`, `mkfs.xfs`, `mkfs.btrfs` and `losetup`.
    pub fn new() -> Result<Fixture, String> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = std::env::temp_dir().join(format!("credns-model-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&base).map_err(|e| format!("mkdir {}: {e}", base.display()))?;
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        let st = ProcFs::new()
            .status(Pid::this())
            .map_err(|e| e.to_string())?;
        let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        let mut f = Fixture {
            tmpfs: base.join("tmpfs"),
            ext4: base.join("ext4"),
            base,
            loop_dev: None,
            mounted: Vec::new(),
            loop_fs: Vec::new(),
            loop_devs: Vec::new(),
            host_bset: u64::from_str_radix(&field("CapBnd:"), 16).map_err(|e| e.to_string())?,
            host_prm: st.cap_prm,
            umask: u32::from_str_radix(&field("Umask:"), 8).unwrap_or(0o022),
            cat: std::fs::read("/usr/bin/cat")
                .or_else(|_| std::fs::read("/bin/cat"))
                .map_err(|e| format!("reading cat: {e}"))?,
            protected: host_protected()?,
        };
        run_cmd("setfacl", &["--version"])?;
        for d in [&f.tmpfs, &f.ext4] {
            std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
        }
        let t = f.tmpfs.to_str().unwrap_or_default().to_owned();
        run_cmd(
            "mount",
            &["-t", "tmpfs", "-o", "mode=0755", "credns-tmpfs", &t],
        )?;
        f.mounted.push(f.tmpfs.clone());
        let img = f.base.join("ext4.img");
        let imgs = img.to_str().unwrap_or_default().to_owned();
        std::fs::File::create(&img)
            .and_then(|h| h.set_len(1280 << 20))
            .map_err(|e| format!("creating {imgs}: {e}"))?;
        // 4 KiB blocks, as the model's ext4 s_maxbytes assumes (mke2fs picks 1 KiB for an
        // image this small); inode tables not zeroed after mount (a fresh sparse image).
        run_cmd(
            "mkfs.ext4",
            &["-q", "-F", "-b", "4096", "-N", "300000", &imgs],
        )?;
        let dev = run_cmd("losetup", &["-f", "--show", &imgs])?;
        f.loop_dev = Some(dev.clone());
        let e = f.ext4.to_str().unwrap_or_default().to_owned();
        run_cmd(
            "mount",
            &["-t", "ext4", "-o", "acl,noinit_itable", &dev, &e],
        )?;
        f.mounted.push(f.ext4.clone());
        std::fs::set_permissions(&f.ext4, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        for t in ["xfs", "btrfs"] {
            let (dir, dev) = crate::kernel_attrs::mount_loop_fs(&f.base, t)?;
            f.loop_devs.push(dev);
            f.mounted.push(dir.clone());
            f.loop_fs.push((t.to_owned(), dir));
        }
        Ok(f)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for m in self.mounted.drain(..).rev() {
            let _ = run_cmd("umount", &["-l", m.to_str().unwrap_or_default()]);
        }
        if let Some(dev) = self.loop_dev.take() {
            let _ = run_cmd("losetup", &["-d", &dev]);
        }
        for dev in self.loop_devs.drain(..) {
            let _ = run_cmd("losetup", &["-d", &dev]);
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// The kernel's answer to one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelAnswer {
    /// Success, with the values observed (`key`, `value`) in the model's output vocabulary.
    Done(Vec<(String, String)>),
    /// The errno.
    Refused(Errno),
    /// Not performed (with why): the comparison skips it.
    Skipped(String),
}

/// One operation compared.
#[derive(Clone, Debug)]
pub struct Compared {
    /// Index of the op.
    pub index: usize,
    /// The op as written.
    pub text: String,
    /// What the model said.
    pub model: Verdict,
    /// The model's output.
    pub model_output: Option<String>,
    /// What the kernel did.
    pub kernel: KernelAnswer,
    /// Why they disagree, if they do.
    pub mismatch: Option<String>,
    /// The model's walk followed a symbolic link (its trace has `pick_link`).
    pub through_symlink: bool,
}

/// Why a scenario could not be realised.
pub type Unrealisable = String;

struct Live {
    keepers: BTreeMap<usize, UsernsChild>,
    procs: BTreeMap<usize, UsernsChild>,
    ns_fds: BTreeMap<String, UserNsFd>,
    /// Processes that exec'd in the model: the helper did not become the new program.
    execd: Vec<usize>,
    /// Connections made by `connect` ops.
    conns: crate::kernel_creds::Connections,
}

const ERRNO_NAMES: &[(i32, &str)] = &[
    (1, "EPERM"),
    (2, "ENOENT"),
    (3, "ESRCH"),
    (5, "EIO"),
    (7, "E2BIG"),
    (8, "ENOEXEC"),
    (9, "EBADF"),
    (11, "EAGAIN"),
    (12, "ENOMEM"),
    (13, "EACCES"),
    (14, "EFAULT"),
    (16, "EBUSY"),
    (17, "EEXIST"),
    (18, "EXDEV"),
    (20, "ENOTDIR"),
    (21, "EISDIR"),
    (22, "EINVAL"),
    (26, "ETXTBSY"),
    (28, "ENOSPC"),
    (30, "EROFS"),
    (32, "EPIPE"),
    (34, "ERANGE"),
    (39, "ENOTEMPTY"),
    (38, "ENOSYS"),
    (75, "EOVERFLOW"),
    (87, "EUSERS"),
];

/// The name of an errno (`EACCES`), or its number.
pub fn errno_name(e: Errno) -> String {
    ERRNO_NAMES
        .iter()
        .find(|(code, _)| *code == e.raw_os_error())
        .map(|(_, n)| (*n).to_owned())
        .unwrap_or_else(|| format!("errno {}", e.raw_os_error()))
}

/// A scenario, realised under `dir_tag` on the fixture's filesystems.
pub struct Realised<'f> {
    fx: &'f Fixture,
    /// Filesystem name -> real directory of its root.
    sb_dirs: BTreeMap<String, PathBuf>,
    /// Mount path ("/" or "/NAME") -> the real directory shown there.
    mounts: BTreeMap<String, PathBuf>,
    /// Mount path -> the filesystem directory it shows, not idmapped (for on-disk ids).
    disk: BTreeMap<String, PathBuf>,
    /// Clones attached for mounts with options or idmaps (detached on drop).
    attached: Vec<PathBuf>,
    live: Live,
    /// Namespaces of the other seven types.
    typed: crate::kernel_nstypes::Typed,
    /// The initial mount and UTS namespaces' stand-ins: every helper is forked from its keeper.
    stand_in: Option<crate::kernel_standin::StandIn>,
}

impl std::fmt::Debug for Realised<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Realised")
            .field("sb_dirs", &self.sb_dirs)
            .finish()
    }
}

impl Drop for Realised<'_> {
    fn drop(&mut self) {
        // Helpers first (procs, then the keepers of their namespaces, deepest first).
        self.typed.clear();
        self.live.procs.clear();
        while let Some((_, k)) = self.live.keepers.pop_last() {
            drop(k);
        }
        // The clones are attached in the stand-in only: they go with it.
        self.stand_in = None;
        for m in self.attached.drain(..) {
            let _ = std::fs::remove_dir(&m);
        }
        for d in self.sb_dirs.values() {
            credns_sys::fsflags::clear_inode_flags_below(d);
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Adjust the model's world to what a test process can realise: processes in the initial
/// namespace cannot have a bounding or permitted set larger than the test process's own.
/// (Every process's `mm->user_ns` is realised as declared: see [`crate::kernel_creds::reexec_in`].)
pub fn adapt_world(world: &mut World, fx: &Fixture) {
    let init = world.init_ns();
    let tasks: Vec<TaskRef> = world.tasks().map(|(r, _)| r).collect();
    for t in tasks {
        let task = world.task_mut(t);
        if task.cred.user_ns == init {
            let c = &mut task.cred;
            let cut =
                |s: credns_model::CapSet, m: u64| credns_model::CapSet::from_bits(s.bits() & m);
            c.cap_bset = cut(c.cap_bset, fx.host_bset);
            c.cap_permitted = cut(c.cap_permitted, fx.host_prm);
            c.cap_effective = cut(c.cap_effective, fx.host_prm);
            c.cap_ambient = cut(c.cap_ambient, fx.host_prm);
        }
    }
}

/// The machine's fs.suid_dumpable.
fn machine_suid_dumpable() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/fs/suid_dumpable")
        .ok()
        .and_then(|v| v.trim().parse().ok())
}

/// A scenario that does not set fs.suid_dumpable is run with this machine's value (the kernel
/// side cannot change a sysctl it did not create); one that sets it must match the machine.
fn adapt_settings(world: &mut World, raw: &toml::Table) {
    let set = raw
        .get("settings")
        .and_then(|v| v.as_table())
        .is_some_and(|t| t.contains_key("suid_dumpable"));
    if !set {
        if let Some(v) = machine_suid_dumpable() {
            world.suid_dumpable = v;
        }
    }
}

fn check_realisable(s: &Scenario, raw: &toml::Table, fx: &Fixture) -> Result<(), Unrealisable> {
    let w = &s.world;
    if let Some(why) = dirent::sysctls_differ(s, &fx.protected) {
        return Err(why);
    }
    if w.overflowuid != 65534 || w.overflowgid != 65534 {
        return Err("overflowuid/overflowgid settings".into());
    }
    let dumpable = std::fs::read_to_string("/proc/sys/fs/suid_dumpable").unwrap_or_default();
    if dumpable.trim() != w.suid_dumpable.to_string() {
        return Err("fs.suid_dumpable differs from this machine's".into());
    }
    crate::kernel_nstypes::check_realisable(w)?;
    if let Some(ms) = raw.get("mount").and_then(|v| v.as_array()) {
        for m in ms {
            let t = m.as_table().cloned().unwrap_or_default();
            let p = t.get("path").and_then(|v| v.as_str()).unwrap_or("");
            if p != "/" && (p.matches('/').count() != 1) {
                return Err(format!("mount at {p} (only / and /NAME)"));
            }
        }
    }
    for (_, t) in w.tasks() {
        if t.chrooted || t.multithreaded || t.shared_fs {
            return Err(format!(
                "process {} chrooted/multithreaded/shared_fs",
                t.name
            ));
        }
        if t.session.is_some_and(|s| s != 1) {
            return Err(format!("process {} in another session", t.name));
        }
    }
    Ok(())
}

fn raw_array<'a>(raw: &'a toml::Table, key: &str) -> Vec<&'a toml::Table> {
    raw.get(key)
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_table()).collect())
        .unwrap_or_default()
}

fn ns_id(world: &World, ns: NsRef, k: u32, uid: bool) -> Option<u32> {
    if uid {
        world.from_kuid(ns, credns_idmap::Kuid(k))
    } else {
        world.from_kgid(ns, credns_idmap::Kgid(k))
    }
}

impl<'f> Realised<'f> {
    /// Build the scenario's world for real. `tag` names its directories (unique per scenario).
    pub fn new(
        fx: &'f Fixture,
        s: &Scenario,
        raw: &toml::Table,
        tag: &str,
    ) -> Result<Result<Realised<'f>, Unrealisable>, String> {
        if let Err(why) = check_realisable(s, raw, fx) {
            return Ok(Err(why));
        }
        let w = &s.world;
        let init = w.init_ns();
        let mut r = Realised {
            fx,
            sb_dirs: BTreeMap::new(),
            mounts: BTreeMap::new(),
            disk: BTreeMap::new(),
            attached: Vec::new(),
            live: Live {
                keepers: BTreeMap::new(),
                procs: BTreeMap::new(),
                ns_fds: BTreeMap::new(),
                execd: Vec::new(),
                conns: Default::default(),
            },
            typed: Default::default(),
            stand_in: None,
        };
        // Filesystems: one directory per superblock; mounts: that directory when the mount is
        // the filesystem's first plain one, else a clone of it attached with the mount's
        // options and idmap (after the namespaces exist).
        let mut trees = Vec::new();
        let mut pending = Vec::new();
        for (k, (_, m)) in w.mounts().enumerate() {
            let sb = w.sb(m.sb);
            if sb.user_ns != init {
                return Ok(Err(format!(
                    "filesystem {} owned by a user namespace",
                    sb.name
                )));
            }
            if sb.read_only || !sb.posix_acl {
                return Ok(Err(format!(
                    "filesystem {} read-only or without ACLs",
                    sb.name
                )));
            }
            let fresh = !r.sb_dirs.contains_key(&sb.name);
            let dir = match sb.fs_type.as_str() {
                "tmpfs" => fx.tmpfs.join(format!("{tag}-{}", sb.name)),
                "ext4" => fx.ext4.join(format!("{tag}-{}", sb.name)),
                t => match fx.loop_fs.iter().find(|(n, _)| n == t) {
                    Some((_, d)) => d.join(format!("{tag}-{}", sb.name)),
                    None => return Ok(Err(format!("filesystem type {t}"))),
                },
            };
            if fresh {
                r.sb_dirs.insert(sb.name.clone(), dir.clone());
                trees.push((sb.root, dir.clone()));
            }
            let idmapped = !matches!(m.idmap, credns_model::MntIdmap::Nop);
            if m.path == "/" {
                let root = w.inode(m.root);
                if idmapped
                    || root.uid.0 != 0
                    || root.gid.0 != 0
                    || root.mode & 0o7777 != 0o755
                    || root.acl.is_some()
                {
                    return Ok(Err("the root directory is not root's 0755".into()));
                }
            }
            let plain =
                fresh && m.root == sb.root && !idmapped && !m.nosuid && !m.noexec && !m.read_only;
            let Some(sub) = inode_path(w, sb.root, m.root) else {
                return Ok(Err("a mount of a directory not in its filesystem".into()));
            };
            r.disk.insert(m.path.clone(), dir.join(&sub));
            if plain {
                r.mounts.insert(m.path.clone(), dir);
                continue;
            }
            let real = fx.tmpfs.join(format!("{tag}-m{k}"));
            let idmap_ns = match &m.idmap {
                credns_model::MntIdmap::Nop => None,
                credns_model::MntIdmap::Mapped { from, .. } => Some(w.ns(*from).name.clone()),
            };
            let attrs = MountFlags {
                read_only: m.read_only,
                nosuid: m.nosuid,
                noexec: m.noexec,
            };
            pending.push((real.clone(), dir.join(sub), attrs, idmap_ns));
            r.mounts.insert(m.path.clone(), real);
        }
        if !r.mounts.contains_key("/") {
            return Ok(Err("nothing mounted at /".into()));
        }
        for (root, dir) in &trees {
            r.make_tree(w, *root, dir)?;
        }
        let stand_in = crate::kernel_standin::StandIn::new(w)?;
        let stand_in = &*r.stand_in.insert(stand_in);
        // Namespaces: a keeper per namespace, created by its parent's keeper with the owner's
        // ids; maps written by the parent's keeper.
        let ns_raw = raw_array(raw, "namespace");
        for (nsr, ns) in w.namespaces() {
            let Some(parent) = ns.parent else { continue };
            let (Some(ou), Some(og)) = (
                ns_id(w, parent, ns.owner.0, true),
                ns_id(w, parent, ns.group.0, false),
            ) else {
                return Ok(Err(format!(
                    "namespace {}: owner unmapped in its parent",
                    ns.name
                )));
            };
            let base = if parent == init {
                fx.host_prm
            } else {
                ALL_CAPS
            };
            let eff = if ns.parent_could_setfcap {
                base
            } else {
                base & !CAP_SETFCAP
            };
            let opts = UnshareOptions {
                ids: Some(Ids {
                    uid: ou,
                    gid: og,
                    groups: w.ns(parent).setgroups_allowed.then(Vec::new),
                }),
                caps: Some(CapSets {
                    effective: eff,
                    permitted: base,
                    inheritable: 0,
                }),
                new_userns: true,
                dumpable: true,
            };
            let keeper = if parent == init {
                stand_in.keeper().spawn_child(&opts)
            } else {
                match r.live.keepers.get(&parent.index()) {
                    Some(k) => k.spawn_child(&opts),
                    None => return Ok(Err(format!("namespace {}: parent not realised", ns.name))),
                }
            }
            .map_err(|e| format!("namespace {}: {e}", ns.name))?;
            let decl = ns_raw
                .iter()
                .find(|t| t.get("name").and_then(|v| v.as_str()) == Some(ns.name.as_str()));
            let text = |k: &str| {
                decl.and_then(|t| t.get(k))
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            };
            let parent_allows = w.ns(parent).setgroups_allowed;
            {
                let by = match r.live.keepers.get(&parent.index()) {
                    Some(k) => Actor::Process(k),
                    None => Actor::Caller,
                };
                if parent_allows && !ns.setgroups_allowed {
                    keeper
                        .write_setgroups(by, b"deny")
                        .map_err(|e| e.to_string())?
                        .map_err(|e| format!("namespace {}: setgroups deny: {e}", ns.name))?;
                }
                for (kind, key) in [
                    (credns_idmap::IdKind::Uid, "uid_map"),
                    (credns_idmap::IdKind::Gid, "gid_map"),
                ] {
                    if let Some(t) = text(key) {
                        let mut t = t.trim().to_owned();
                        t.push('\n');
                        keeper
                            .write_map(by, kind, t.as_bytes())
                            .map_err(|e| e.to_string())?
                            .map_err(|e| {
                                format!("namespace {}: writing {key} {t:?}: {e}", ns.name)
                            })?;
                    }
                }
            }
            r.live.ns_fds.insert(
                ns.name.clone(),
                keeper.userns_fd().map_err(|e| e.to_string())?,
            );
            r.live.keepers.insert(nsr.index(), keeper);
        }
        r.live.ns_fds.insert(
            w.ns(init).name.clone(),
            UserNsFd::open(&ProcFs::new(), Pid::this()).map_err(|e| e.to_string())?,
        );
        for (real, source, attrs, idmap_ns) in pending {
            std::fs::create_dir(&real).map_err(|e| format!("mkdir {}: {e}", real.display()))?;
            let userns = match &idmap_ns {
                None => None,
                Some(n) => match r.live.ns_fds.get(n) {
                    Some(fd) => Some(fd),
                    None => return Ok(Err(format!("idmap namespace {n} not realised"))),
                },
            };
            let mounting = |e: credns_sys::Error| format!("mounting {}: {e}", real.display());
            let clone = DetachedMount::clone_tree(&source, false).map_err(mounting)?;
            clone.set_flags(attrs).map_err(mounting)?;
            if let Some(ns) = userns {
                clone.set_idmap(ns).map_err(mounting)?;
            }
            stand_in.attach(clone, &real)?;
            r.attached.push(real);
        }
        r.typed = match crate::kernel_nstypes::Typed::realise(w, &r.live.keepers, stand_in) {
            Ok(t) => t,
            Err(why) => return Ok(Err(why)),
        };
        // Processes.
        for (tr, t) in w.tasks() {
            let c = &t.cred;
            let ns = c.user_ns;
            let u: Vec<Option<u32>> = [c.uid, c.euid, c.suid, c.fsuid]
                .iter()
                .map(|k| ns_id(w, ns, k.0, true))
                .collect();
            let g: Vec<Option<u32>> = [c.gid, c.egid, c.sgid, c.fsgid]
                .iter()
                .chain(c.groups.iter())
                .map(|k| ns_id(w, ns, k.0, false))
                .collect();
            let plain = UnshareOptions {
                ids: None,
                caps: None,
                new_userns: false,
                dumpable: true,
            };
            let all_mapped = u.iter().chain(g.iter()).all(Option::is_some);
            let mm = t.mm_user_ns;
            let child = if mm == init {
                stand_in.keeper().spawn_child(&plain)
            } else {
                r.live.keepers[&mm.index()].spawn_child(&plain)
            }
            .map_err(|e| format!("process {}: {e}", t.name))?;
            let into = (mm != ns).then(|| w.ns(ns).name.clone());
            let fd = into.as_ref().and_then(|n| r.live.ns_fds.get(n));
            let program = if mm == init {
                None
            } else {
                Some(crate::kernel_creds::reexec_program(fx)?)
            };
            if let Err(why) =
                crate::kernel_creds::reexec_in(&child, program.as_deref(), into.as_deref(), fd)?
            {
                return Ok(Err(format!("process {}: {why}", t.name)));
            }
            if let Err(why) = r.typed.join(w, tr, &child) {
                return Ok(Err(why));
            }
            if all_mapped {
                let fc = FullCreds {
                    uid: [
                        u[0].unwrap_or(0),
                        u[1].unwrap_or(0),
                        u[2].unwrap_or(0),
                        u[3].unwrap_or(0),
                    ],
                    gid: [
                        g[0].unwrap_or(0),
                        g[1].unwrap_or(0),
                        g[2].unwrap_or(0),
                        g[3].unwrap_or(0),
                    ],
                    groups: g[4..].iter().map(|x| x.unwrap_or(0)).collect(),
                    inheritable: c.cap_inheritable.bits(),
                    permitted: c.cap_permitted.bits(),
                    effective: c.cap_effective.bits(),
                    bounding: c.cap_bset.bits(),
                    ambient: c.cap_ambient.bits(),
                    securebits: c.securebits,
                    no_new_privs: t.no_new_privs,
                    dumpable: t.dumpable,
                    umask: t.umask,
                    keep_groups: c.groups.is_empty() && !w.ns(ns).setgroups_allowed,
                };
                if let Err(e) = child.set_full_creds(&fc).map_err(|e| e.to_string())? {
                    return Err(format!("process {}: taking on {fc:?}: {e}", t.name));
                }
            } else {
                // Ids its namespace does not map: only the namespace creator's own credentials
                // (a process just after unshare) can be had, by forking the keeper as it is.
                let nsd = w.ns(ns);
                let same = [c.uid, c.euid, c.suid, c.fsuid]
                    .iter()
                    .all(|k| *k == nsd.owner)
                    && [c.gid, c.egid, c.sgid, c.fsgid]
                        .iter()
                        .all(|k| *k == nsd.group)
                    && c.groups.is_empty()
                    && c.cap_permitted.bits() == ALL_CAPS
                    && c.cap_effective.bits() == ALL_CAPS
                    && c.cap_bset.bits() == ALL_CAPS
                    && c.cap_inheritable.bits() == 0
                    && c.cap_ambient.bits() == 0
                    && c.securebits == 0
                    && !t.no_new_privs
                    && t.umask == fx.umask;
                if !same || ns == init || mm != ns {
                    return Ok(Err(format!(
                        "process {}: ids unmapped in its namespace",
                        t.name
                    )));
                }
                // The re-exec kept the keeper's capabilities through the ambient set: back to
                // a creator's sets (no inheritable, no ambient).
                child
                    .capset(ALL_CAPS, ALL_CAPS, 0)
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("process {}: capset after exec: {e}", t.name))?;
            }
            r.live.procs.insert(tr.index(), child);
        }
        Ok(Ok(r))
    }

    fn make_tree(&self, w: &World, ino: credns_model::InodeRef, dir: &Path) -> Result<(), String> {
        let i = w.inode(ino);
        if i.is_dir() {
            std::fs::create_dir(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        } else {
            let content: &[u8] = if i.mode & 0o111 != 0 {
                &self.fx.cat
            } else {
                b""
            };
            std::fs::write(dir, content).map_err(|e| format!("write {}: {e}", dir.display()))?;
        }
        std::os::unix::fs::chown(dir, Some(i.uid.0), Some(i.gid.0))
            .map_err(|e| format!("chown {}: {e}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(i.mode & 0o7777))
            .map_err(|e| format!("chmod {}: {e}", dir.display()))?;
        if let Some(acl) = &i.acl {
            let text: Vec<String> = acl
                .0
                .iter()
                .map(|e| {
                    let t = match e.tag {
                        AclTag::UserObj | AclTag::User => "u",
                        AclTag::GroupObj | AclTag::Group => "g",
                        AclTag::Mask => "m",
                        AclTag::Other => "o",
                    };
                    let id = e.id.map(|v| v.to_string()).unwrap_or_default();
                    let p = format!(
                        "{}{}{}",
                        if e.perm & 4 != 0 { 'r' } else { '-' },
                        if e.perm & 2 != 0 { 'w' } else { '-' },
                        if e.perm & 1 != 0 { 'x' } else { '-' }
                    );
                    format!("{t}:{id}:{p}")
                })
                .collect();
            run_cmd(
                "setfacl",
                &[
                    "-n",
                    "--set",
                    &text.join(","),
                    dir.to_str().unwrap_or_default(),
                ],
            )?;
            let m = std::fs::metadata(dir).map_err(|e| e.to_string())?.mode() & 0o7777;
            if m != i.mode & 0o7777 {
                return Err(format!(
                    "{}: mode {m:04o} after setfacl, the model has {:04o}",
                    dir.display(),
                    i.mode & 0o7777
                ));
            }
        }
        for (name, child) in &i.children {
            self.make_tree(w, *child, &dir.join(name))?;
        }
        // After the children: they are declared as they are, not inherited from a default ACL.
        crate::kernel_attrs::apply_xattrs(w, ino, dir)?;
        crate::kernel_attrs::apply_flags(i, dir)
    }

    /// The real path of a model path.
    pub fn real_path(&self, path: &str) -> Option<PathBuf> {
        Self::resolve(&self.mounts, path)
    }

    /// The real path of a model path through the filesystem's own, not idmapped, directory.
    pub fn disk_path(&self, path: &str) -> Option<PathBuf> {
        Self::resolve(&self.disk, path)
    }

    /// [`Realised::disk_path`] of `path` after the model's symlinks on it are followed (the
    /// last component too when `follow_last`): outputs read from the filesystem's own directory
    /// must name the inode the op reached, and a link's real target may be a mount this
    /// process does not see (the stand-in's).
    pub fn disk_path_through_links(
        &self,
        w: &World,
        path: &str,
        follow_last: bool,
    ) -> Option<PathBuf> {
        // A loop (the op then fails with ELOOP, and nothing is read): the path as written.
        let resolved = follow_links(w, path, follow_last).unwrap_or_else(|| path.to_string());
        Self::resolve(&self.disk, &resolved)
    }

    fn resolve(mounts: &BTreeMap<String, PathBuf>, path: &str) -> Option<PathBuf> {
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        if let Some(first) = comps.first() {
            let mp = format!("/{first}");
            if let Some(base) = mounts.get(&mp) {
                let mut p = base.clone();
                for c in &comps[1..] {
                    p.push(c);
                }
                return Some(p);
            }
        }
        let mut p = mounts.get("/")?.clone();
        for c in &comps {
            p.push(c);
        }
        Some(p)
    }

    fn pid_of(&self, t: TaskRef) -> Option<Pid> {
        self.live.procs.get(&t.index()).map(|c| c.pid())
    }

    /// Perform one op for real as `by`. `world` is the model's world before the op (for
    /// namespace names); `raw` the op's table as written.
    pub fn perform(
        &mut self,
        world: &World,
        by: TaskRef,
        op: &Op,
        raw: &toml::Table,
    ) -> Result<KernelAnswer, String> {
        if self.live.execd.contains(&by.index()) {
            return Ok(KernelAnswer::Skipped(
                "the process exec'd (the helper is not the new program)".into(),
            ));
        }
        let target = match op {
            Op::Kill { target, .. }
            | Op::Ptrace { target }
            | Op::ProcStatus { target }
            | Op::WriteMap { target, .. }
            | Op::WriteSetgroups { target, .. }
            | Op::PeerCred { peer: target }
            | Op::PtraceRead { target, .. }
            | Op::OpenProc { target, .. }
            | Op::ReadlinkProcFd { target, .. } => Some(*target),
            _ => None,
        };
        if let Some(t) = target {
            if self.live.execd.contains(&t.index()) {
                return Ok(KernelAnswer::Skipped("the target exec'd".into()));
            }
        }
        let h = &self.live.procs[&by.index()];
        if let Some(r) = self.perform_dirent(world, h, op) {
            return r;
        }
        let e = |x: credns_sys::Error| x.to_string();
        let path_of = |p: &str| {
            self.real_path(p)
                .ok_or_else(|| format!("no real path for {p}"))
        };
        let ans = |r: Result<(), Errno>| match r {
            Ok(()) => Ok(Vec::new()),
            Err(x) => Err(x),
        };
        let res: Result<Vec<(String, String)>, Errno> = match op {
            Op::Open { path, read, write } => {
                let acc = match (read, write) {
                    (true, true) => OFlags::RDWR,
                    (false, true) => OFlags::WRONLY,
                    _ => OFlags::RDONLY,
                };
                match h.open(&path_of(path)?, acc | OFlags::CLOEXEC).map_err(e)? {
                    Ok(fd) => {
                        h.close(fd).map_err(e)?.map_err(|x| format!("close: {x}"))?;
                        Ok(Vec::new())
                    }
                    Err(x) => Err(x),
                }
            }
            Op::Access {
                path,
                mode,
                eaccess,
            } => ans(h.access(&path_of(path)?, *mode, *eaccess).map_err(e)?),
            Op::Create { path, mode, dir } => {
                let p = path_of(path)?;
                let r = if *dir {
                    h.mkdir(&p, *mode).map_err(e)?
                } else {
                    h.create(&p, *mode).map_err(e)?
                };
                match r {
                    Ok(()) => {
                        let mut v = self.stat_values(h, &p)?;
                        let dp = self
                            .disk_path_through_links(world, path, false)
                            .ok_or_else(|| format!("no real path for {path}"))?;
                        let md = std::fs::metadata(&dp)
                            .map_err(|x| format!("stat {}: {x}", dp.display()))?;
                        v.push(("disk_uid".into(), md.uid().to_string()));
                        v.push(("disk_gid".into(), md.gid().to_string()));
                        Ok(v)
                    }
                    Err(x) => Err(x),
                }
            }
            Op::Stat { path } => {
                let p = path_of(path)?;
                match h.stat(&p).map_err(e)? {
                    Ok(_) => Ok(self.stat_values(h, &p)?),
                    Err(x) => Err(x),
                }
            }
            Op::Chmod { path, mode } => {
                let p = path_of(path)?;
                match h.chmod(&p, *mode).map_err(e)? {
                    Ok(()) => {
                        // Root looks through the filesystem's own directory: through an
                        // idmapped mount its capabilities may not apply.
                        let dp = self
                            .disk_path_through_links(world, path, true)
                            .ok_or_else(|| format!("no real path for {path}"))?;
                        let md = std::fs::metadata(&dp)
                            .map_err(|x| format!("stat {}: {x}", dp.display()))?;
                        Ok(vec![("mode".into(), format!("{:04o}", md.mode() & 0o7777))])
                    }
                    Err(x) => Err(x),
                }
            }
            Op::Chown { path, uid, gid } => {
                let p = path_of(path)?;
                match h.chown(&p, *uid, *gid).map_err(e)? {
                    Ok(()) => Ok(self.stat_values(h, &p)?),
                    Err(x) => Err(x),
                }
            }
            Op::Exec { path } => {
                let p = path_of(path)?;
                match h.exec_capture(&p, "/proc/self/status").map_err(e)? {
                    Ok((status, outp)) => {
                        if status != 0 {
                            return Ok(KernelAnswer::Skipped(format!(
                                "the program exited with {status:#x}"
                            )));
                        }
                        self.live.execd.push(by.index());
                        Ok(status_values(&String::from_utf8_lossy(&outp), true))
                    }
                    Err(x) if x == Errno::NOEXEC => {
                        return Ok(KernelAnswer::Skipped("not a program (ENOEXEC)".into()));
                    }
                    Err(x) => Err(x),
                }
            }
            Op::Kill { target, signal } => {
                let Some(pid) = self.pid_of(*target) else {
                    return Ok(KernelAnswer::Skipped("no such process".into()));
                };
                self.kill(h, *target, pid, *signal)?
            }
            Op::Ptrace { target } => {
                let Some(pid) = self.pid_of(*target) else {
                    return Ok(KernelAnswer::Skipped("no such process".into()));
                };
                ans(h.ptrace_attach(pid).map_err(e)?)
            }
            Op::Setuid { uid } => ans(h.set_id(SetId::Setuid(*uid)).map_err(e)?),
            Op::Setreuid { ruid, euid } => {
                ans(h.set_id(SetId::Setreuid(*ruid, *euid)).map_err(e)?)
            }
            Op::Setresuid { ruid, euid, suid } => {
                ans(h.set_id(SetId::Setresuid(*ruid, *euid, *suid)).map_err(e)?)
            }
            Op::Setgid { gid } => ans(h.set_id(SetId::Setgid(*gid)).map_err(e)?),
            Op::Setregid { rgid, egid } => {
                ans(h.set_id(SetId::Setregid(*rgid, *egid)).map_err(e)?)
            }
            Op::Setresgid { rgid, egid, sgid } => {
                ans(h.set_id(SetId::Setresgid(*rgid, *egid, *sgid)).map_err(e)?)
            }
            Op::Setgroups { groups } => ans(h.setgroups(groups).map_err(e)?),
            Op::UnshareUser { name } => match h.unshare_user().map_err(e)? {
                Ok(()) => {
                    let fd = h.userns_fd().map_err(e)?;
                    self.live.ns_fds.insert(name.clone(), fd);
                    // The namespace the helper is now in: its depth below the initial one
                    // (NS_GET_PARENT up to the top), under the name the op gave it.
                    let chain = credns_sys::userns_ancestry(&ProcFs::new(), h.pid()).map_err(e)?;
                    Ok(vec![
                        ("ns".into(), name.clone()),
                        ("level".into(), (chain.len() - 1).to_string()),
                    ])
                }
                Err(x) => Err(x),
            },
            Op::WriteMap { target, kind, text } => {
                let Some(t) = self.live.procs.get(&target.index()) else {
                    return Ok(KernelAnswer::Skipped("no such process".into()));
                };
                let file = match kind {
                    MapKind::Uid => "uid_map",
                    MapKind::Gid => "gid_map",
                };
                let p = ProcFs::new().pid_path(t.pid()).join(file);
                h.write_file(&p, text.as_bytes(), WriteHow::Write)
                    .map_err(e)?
                    .map(|_| Vec::new())
            }
            Op::WriteSetgroups { target, text } => {
                let Some(t) = self.live.procs.get(&target.index()) else {
                    return Ok(KernelAnswer::Skipped("no such process".into()));
                };
                let p = ProcFs::new().pid_path(t.pid()).join("setgroups");
                h.write_file(&p, text.as_bytes(), WriteHow::Write)
                    .map_err(e)?
                    .map(|_| Vec::new())
            }
            Op::Setns { ns } => {
                let name = match raw.get("ns").and_then(|v| v.as_str()) {
                    Some(n) => n.to_owned(),
                    None => world.ns(*ns).name.clone(),
                };
                let Some(fd) = self.live.ns_fds.get(&name) else {
                    return Ok(KernelAnswer::Skipped(format!(
                        "namespace {name} not realised"
                    )));
                };
                ans(h.setns_user(fd.as_fd()).map_err(e)?)
            }
            Op::SetNoNewPrivs => ans(h.set_no_new_privs().map_err(e)?),
            Op::GetIds => {
                let ids = h.ids().map_err(e)?;
                let (fsu, fsg) = h.fs_ids().map_err(e)?;
                let mut groups = ids.groups.clone();
                groups.sort_unstable();
                Ok(vec![
                    ("uid".into(), ids.uid[0].to_string()),
                    ("euid".into(), ids.uid[1].to_string()),
                    ("suid".into(), ids.uid[2].to_string()),
                    ("fsuid".into(), fsu.to_string()),
                    ("gid".into(), ids.gid[0].to_string()),
                    ("egid".into(), ids.gid[1].to_string()),
                    ("sgid".into(), ids.gid[2].to_string()),
                    ("fsgid".into(), fsg.to_string()),
                    ("groups".into(), show_groups(&groups)),
                ])
            }
            Op::ProcStatus { target } => {
                let Some(pid) = self.pid_of(*target) else {
                    return Ok(KernelAnswer::Skipped("no such process".into()));
                };
                let p = ProcFs::new().pid_path(pid).join("status");
                match h.read_file(&p).map_err(e)? {
                    Ok(b) => Ok(status_values(&String::from_utf8_lossy(&b), true)),
                    Err(x) => Err(x),
                }
            }
            Op::PeerCred { peer } => {
                let Some(t) = self.live.procs.get(&peer.index()) else {
                    return Ok(KernelAnswer::Skipped("no such process".into()));
                };
                // The peer makes a socket pair now (its credentials are recorded in both
                // ends); the caller gets one end and asks who is on the other side.
                let (a, b) = t.socketpair().map_err(e)?;
                let passed = t.fetch_fd(b).map_err(e)?;
                let mine = h.install_fd(passed.as_fd()).map_err(e)?;
                let r = h.peercred(mine).map_err(e)?;
                h.close(mine)
                    .map_err(e)?
                    .map_err(|x| format!("close: {x}"))?;
                t.close(a).map_err(e)?.map_err(|x| format!("close: {x}"))?;
                t.close(b).map_err(e)?.map_err(|x| format!("close: {x}"))?;
                r.map(|(_, u, g)| {
                    vec![("uid".into(), u.to_string()), ("gid".into(), g.to_string())]
                })
            }
            Op::UnshareNs { .. }
            | Op::SetnsNs { .. }
            | Op::Sethostname { .. }
            | Op::BindPort { .. }
            | Op::MountNew { .. }
            | Op::Umount { .. }
            | Op::Remount { .. } => {
                let fds = &self.live.ns_fds;
                let real = |p: &str| Self::resolve(&self.mounts, p);
                let att = &self.attached;
                match crate::kernel_nstypes::perform(&mut self.typed, fds, world, h, op, &real, att)
                {
                    Ok(r) => r,
                    Err(skip) => return Ok(skip),
                }
            }
            Op::Capable { .. } => {
                return Ok(KernelAnswer::Skipped(
                    "a model query, no system call".into(),
                ))
            }
            // Keys run in key actors with their own keyrings: tests/keys.rs compares them.
            Op::AddKey { .. }
            | Op::KeyRead { .. }
            | Op::KeyDescribe { .. }
            | Op::KeyUpdate { .. }
            | Op::KeySearch { .. }
            | Op::KeyLink { .. }
            | Op::KeyUnlink { .. }
            | Op::KeySetperm { .. }
            | Op::KeyChown { .. }
            | Op::KeyGetId { .. }
            | Op::RequestKey { .. } => {
                return Ok(KernelAnswer::Skipped(
                    "key operations are compared by the keys suite (tests/keys.rs)".into(),
                ))
            }
            Op::Unlink { .. }
            | Op::Rmdir { .. }
            | Op::Rename { .. }
            | Op::Link { .. }
            | Op::Symlink { .. }
            | Op::OpenCreat { .. } => unreachable!("performed by perform_dirent"),
            Op::Truncate { path, .. } | Op::Utimes { path, .. } | Op::Setxattr { path, .. } => {
                let disk = self
                    .disk_path_through_links(world, path, true)
                    .ok_or_else(|| format!("no real path for {path}"))?;
                match crate::kernel_attrs::perform(h, op, &path_of(path)?, &disk) {
                    Some(r) => r?,
                    None => unreachable!("an attribute op"),
                }
            }
            Op::Setfsuid { .. } | Op::Setfsgid { .. } | Op::Capset { .. } | Op::CapPrctl { .. } => {
                crate::kernel_creds::perform(h, op)?
            }
            Op::Connect { .. } | Op::PeerCredOf { .. } | Op::SendCreds { .. } => {
                let l = &mut self.live;
                match crate::kernel_creds::perform_socket(
                    &l.procs,
                    &mut l.conns,
                    &l.execd,
                    by.index(),
                    op,
                )? {
                    Some(r) => r,
                    None => {
                        return Ok(KernelAnswer::Skipped(
                            "an end of the connection exec'd".into(),
                        ))
                    }
                }
            }
            Op::PtraceRead { target, .. }
            | Op::OpenProc { target, .. }
            | Op::ReadlinkProcFd { target, .. } => {
                let Some(pid) = self.pid_of(*target) else {
                    return Ok(KernelAnswer::Skipped("no such process".into()));
                };
                crate::kernel_creds::perform_proc(h, pid, op)?
            }
        };
        Ok(match res {
            Ok(v) => KernelAnswer::Done(v),
            Err(x) => KernelAnswer::Refused(x),
        })
    }

    /// `kill(2)` by `h`. A signal the target's helper can block is sent for real and taken
    /// by the target, which reports the `si_uid` it received (the model's output); signal 0,
    /// invalid numbers, SIGKILL and SIGSTOP (which would end or stop the helper, and which no
    /// process can block) are sent as signal 0 after the same permission check, and report
    /// nothing.
    fn kill(
        &self,
        h: &UsernsChild,
        target: TaskRef,
        pid: Pid,
        signal: u32,
    ) -> Result<Result<Vec<(String, String)>, Errno>, String> {
        let e = |x: credns_sys::Error| x.to_string();
        let receiver = self.live.procs.get(&target.index());
        let real = (1..=64).contains(&signal) && signal != 9 && signal != 19 && receiver.is_some();
        let Some(rx) = receiver.filter(|_| real) else {
            let sig = if signal > 64 { signal } else { 0 };
            return Ok(h.kill(pid, sig).map_err(e)?.map(|()| Vec::new()));
        };
        rx.block_signal(signal)
            .map_err(e)?
            .map_err(|x| format!("blocking signal {signal}: {x}"))?;
        let sent = h.kill(pid, signal).map_err(e)?;
        let taken = rx.take_signal(signal).map_err(e)?;
        Ok(match (sent, taken) {
            (Ok(()), Ok(uid)) => Ok(vec![("si_uid".into(), uid.to_string())]),
            (Ok(()), Err(x)) => return Err(format!("signal {signal} sent but not received: {x}")),
            (Err(x), _) => Err(x),
        })
    }

    fn stat_values(&self, h: &UsernsChild, p: &Path) -> Result<Vec<(String, String)>, String> {
        match h.stat(p).map_err(|e| e.to_string())? {
            Ok((u, g, m)) => Ok(vec![
                ("uid".into(), u.to_string()),
                ("gid".into(), g.to_string()),
                ("mode".into(), format!("{:04o}", m & 0o7777)),
            ]),
            Err(x) => Err(format!("stat {} after success: {x}", p.display())),
        }
    }
}

/// `path` with the model's symbolic links on it replaced by their targets, as the walk follows
/// them (at most 40); `None` for a loop.
fn follow_links(w: &World, path: &str, follow_last: bool) -> Option<String> {
    let mut todo: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect();
    todo.reverse();
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let here = format!("/{}", [done.clone(), vec![c.clone()]].concat().join("/"));
        let link = w
            .lookup_unchecked(&here)
            .and_then(|(_, ino)| w.inode(ino).link.clone());
        match link {
            Some(t) if follow_last || !todo.is_empty() => {
                links += 1;
                if links > 40 {
                    return None;
                }
                if t.starts_with('/') {
                    done.clear();
                }
                todo.extend(
                    t.split('/')
                        .filter(|x| !x.is_empty())
                        .rev()
                        .map(String::from),
                );
            }
            _ => done.push(c),
        }
    }
    Some(format!("/{}", done.join("/")))
}

/// The path of `ino` below `root` (relative, empty for the root itself).
fn inode_path(
    w: &World,
    root: credns_model::InodeRef,
    ino: credns_model::InodeRef,
) -> Option<PathBuf> {
    if root == ino {
        return Some(PathBuf::new());
    }
    for (name, c) in &w.inode(root).children {
        if let Some(p) = inode_path(w, *c, ino) {
            return Some(Path::new(name).join(p));
        }
    }
    None
}

fn show_groups(g: &[u32]) -> String {
    if g.is_empty() {
        "none".into()
    } else {
        g.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// `/proc/PID/status` as the model's `proc_status` output keys.
pub fn status_values(text: &str, caps: bool) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for line in text.lines() {
        let Some((k, rest)) = line.split_once(':') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        match k {
            "Uid" | "Gid" if f.len() == 4 => {
                let names: [&str; 4] = if k == "Uid" {
                    ["uid", "euid", "suid", "fsuid"]
                } else {
                    ["gid", "egid", "sgid", "fsgid"]
                };
                for (n, x) in names.iter().zip(f) {
                    v.push(((*n).to_owned(), x.to_owned()));
                }
            }
            "Groups" => {
                let mut g: Vec<u32> = f.iter().filter_map(|x| x.parse().ok()).collect();
                g.sort_unstable();
                v.push(("groups".into(), show_groups(&g)));
            }
            "CapInh" | "CapPrm" | "CapEff" | "CapBnd" | "CapAmb" if caps => {
                if let Some(x) = f.first() {
                    v.push((k.to_owned(), (*x).to_owned()));
                }
            }
            _ => {}
        }
    }
    v
}

/// Compare one op's answers. `None` when they agree. Outputs are compared on the union of
/// their keys: a value only one side prints is a disagreement, as is a different value. A model
/// Unknown or a kernel side not performed is no disagreement here; the suites count those and
/// hold them to their allow-lists.
pub fn compare(
    model: &Verdict,
    model_out: Option<&credns_model::Output>,
    kernel: &KernelAnswer,
) -> Option<String> {
    match (model, kernel) {
        (Verdict::Unknown(_), _) | (_, KernelAnswer::Skipped(_)) => None,
        (Verdict::Allowed, KernelAnswer::Done(vals)) => {
            let diffs = output_diffs(model_out.map_or(&[][..], |o| &o.0[..]), vals);
            (!diffs.is_empty()).then(|| format!("output differs: {}", diffs.join("; ")))
        }
        (Verdict::Allowed, KernelAnswer::Refused(e)) => Some(format!(
            "model allowed, kernel refused with {}",
            errno_name(*e)
        )),
        (Verdict::Denied(m), KernelAnswer::Done(_)) => {
            Some(format!("model denied with {}, kernel allowed", m.name()))
        }
        (Verdict::Denied(m), KernelAnswer::Refused(e)) => {
            (m.code() != e.raw_os_error()).then(|| {
                format!(
                    "model denied with {}, kernel with {}",
                    m.name(),
                    errno_name(*e)
                )
            })
        }
    }
}

/// Every key whose value differs, or that only one side printed (`groups` compared as a set).
fn output_diffs(model: &[(String, String)], kernel: &[(String, String)]) -> Vec<String> {
    let m: BTreeMap<&str, &str> = model
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let k: BTreeMap<&str, &str> = kernel
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let norm = |key: &str, v: &str| {
        if key == "groups" || key == "keys" {
            let mut g: Vec<&str> = v.split(',').collect();
            g.sort_unstable();
            g.join(",")
        } else {
            v.to_owned()
        }
    };
    let keys: std::collections::BTreeSet<&str> = m.keys().chain(k.keys()).copied().collect();
    keys.into_iter()
        .filter_map(|key| match (m.get(key), k.get(key)) {
            (Some(mv), Some(kv)) if norm(key, mv) == norm(key, kv) => None,
            (Some(mv), Some(kv)) => Some(format!("{key}: model {mv}, kernel {kv}")),
            (Some(mv), None) => Some(format!("{key}: model {mv}, kernel prints no {key}")),
            (None, Some(kv)) => Some(format!("{key}: kernel {kv}, model prints no {key}")),
            (None, None) => None,
        })
        .collect()
}

/// The model's untraced answers to `op` ([`World::decide`], and for an access
/// [`World::decide_access`] on a resolved query) against its traced one: they run the same
/// rules with shortcuts of their own, so each is held to the kernel through the traced one.
fn untraced_disagrees(before: &World, by: TaskRef, op: &Op, traced: &Verdict) -> Option<String> {
    let decided = before.clone().decide(by, op).0;
    if &decided != traced {
        return Some(format!(
            "World::decide says {decided:?}, World::op says {traced:?}"
        ));
    }
    if let Op::Access {
        path,
        mode,
        eaccess,
    } = op
    {
        let q = before.access_query(path, *mode, *eaccess);
        let queried = before.decide_access(by, &q);
        if &queried != traced {
            return Some(format!(
                "World::decide_access says {queried:?}, World::op says {traced:?}"
            ));
        }
    }
    None
}

/// Run a scenario on the kernel and the model, op by op. `Ok(Err(why))`: not realisable.
pub fn run_both(
    fx: &Fixture,
    text: &str,
    name: &str,
    tag: &str,
) -> Result<Result<Vec<Compared>, Unrealisable>, String> {
    let raw: toml::Table = text.parse().map_err(|e| format!("{name}: not TOML: {e}"))?;
    let mut s = Scenario::parse(text, name).map_err(|e| e.to_string())?;
    adapt_world(&mut s.world, fx);
    adapt_settings(&mut s.world, &raw);
    let mut real = match Realised::new(fx, &s, &raw, tag)? {
        Ok(r) => r,
        Err(why) => return Ok(Err(why)),
    };
    let raw_ops = raw_array(&raw, "op");
    let mut w = s.world.clone();
    let mut out = Vec::new();
    // Key ops are replayed on key actors afterwards, against the model's world before each.
    let has_keys = s.ops.iter().any(|o| crate::kernel_keys::is_key_op(&o.op));
    let mut worlds = Vec::new();
    let mut outputs = Vec::new();
    for (i, so) in s.ops.iter().enumerate() {
        let mut op = so.op.clone();
        let empty = toml::Table::new();
        let rop = raw_ops.get(i).copied().unwrap_or(&empty);
        let mut missing = false;
        if let Op::Setns { ns } | Op::Capable { ns, .. } = &mut op {
            if let Some(n) = rop.get("ns").and_then(|v| v.as_str()) {
                match w.ns_by_name(n) {
                    Some(r) => *ns = r,
                    None => missing = true,
                }
            }
        }
        let before = w.clone();
        if has_keys {
            worlds.push(before.clone());
        }
        let outcome = if missing {
            credns_model::Outcome {
                result: Verdict::Unknown("namespace does not exist".into()),
                output: None,
                trace: Vec::new(),
            }
        } else {
            w.op(so.by, &op)
        };
        let kernel = if missing {
            KernelAnswer::Skipped("the namespace does not exist on either side".into())
        } else {
            real.perform(&before, so.by, &op, rop)?
        };
        let mismatch = compare(&outcome.result, outcome.output.as_ref(), &kernel).or_else(|| {
            (!missing)
                .then(|| untraced_disagrees(&before, so.by, &op, &outcome.result))
                .flatten()
        });
        if has_keys {
            outputs.push(outcome.output.clone());
        }
        out.push(Compared {
            index: i,
            text: so.text.clone(),
            model: outcome.result.clone(),
            model_output: outcome.output.as_ref().map(|o| o.to_string()),
            kernel,
            mismatch,
            through_symlink: outcome.step("pick_link").is_some(),
        });
    }
    if has_keys {
        drop(real);
        let answers = match crate::kernel_keys::replay(&s, &worlds, &outputs)? {
            Ok(a) => a,
            Err(why) => return Ok(Err(why)),
        };
        for (i, kernel) in answers {
            let c = &mut out[i];
            c.mismatch = compare(&c.model, outputs[i].as_ref(), &kernel);
            c.kernel = kernel;
        }
    }
    Ok(Ok(out))
}
