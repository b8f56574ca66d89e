//! `credns run`: run a command in a new user namespace (and mount namespace, optionally a pid
//! namespace and a root filesystem) with an allocated ID range.
//!
//! When a daemon answers on `--socket`, the work goes through it (run_daemon.rs); otherwise root
//! uses the registry directly, as follows.
//!
//! Order of work: the arguments are checked and the trees of `--rootfs` and `--volume` are
//! cloned (detached mounts); the range is allocated in a registry transaction; the clones get
//! an idmap equal to the container's maps (on-disk N appears as the container's N) and the
//! container's first process is cloned (inheriting them) and waits; for a namespace lease the
//! allocation is re-keyed to the new namespace; the transaction commits (the record is on disk
//! before any id of it is used); the parent writes the maps; the child attaches the mounts,
//! takes its ids and execs. A failure before the commit leaves nothing allocated. A name lease
//! (`--name`) is kept after exit; a namespace lease is released after exit once no process of
//! the container is left (this process is their subreaper, so it knows without scanning
//! /proc).

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use credns_idmap::formats::SubidFile;
use credns_idmap::IdKind;
use credns_registry::{
    parse_group, parse_passwd, AllocRequest, Allocation, Exclusions, Lease, Policy, Registry,
    Selector,
};
use credns_sys::container::{
    become_subreaper, descendants_remain, process_start_ns, Container, ContainerSpec, ExtraMount,
};
use credns_sys::{DetachedMount, Errno, MappingUserns, ProcFs};

/// The registry database root uses when no daemon runs.
pub const DEFAULT_STORE: &str = "/var/lib/credns/registry.redb";

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Ids to allocate (default: the policy's, 65536).
    #[arg(long)]
    pub(crate) size: Option<u64>,
    /// Lease the range to this name: it is kept after the command exits and reused next time.
    /// Without it the range is leased to the new user namespace and released when it dies.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Also make a pid namespace: the command is its pid 1.
    #[arg(long)]
    pid: bool,
    /// Run as UID[:GID] of the namespace (default 0:0, the namespace's root; GID defaults to UID).
    #[arg(long, value_name = "UID[:GID]")]
    user: Option<String>,
    /// Switch to this root filesystem, with /proc and a minimal /dev. It must have `proc` and
    /// `dev` directories. It is idmapped like the container: its files stored with ids
    /// 0..SIZE-1 appear owned by the container's same ids, and files the container makes are
    /// stored with the container's ids.
    #[arg(long, value_name = "DIR")]
    rootfs: Option<PathBuf>,
    /// Show the directory SRC at DST (absolute; inside the rootfs when there is one, where it
    /// must exist), idmapped as the rootfs is; `:ro` makes it read-only. Repeatable; attached
    /// in the order given.
    #[arg(long = "volume", short = 'v', value_name = "SRC:DST[:ro]")]
    volumes: Vec<String>,
    /// The registry daemon's socket: used when a daemon answers there.
    #[arg(long, value_name = "PATH", default_value = credns_service::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// The registry database (used directly, as root, when no daemon runs).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_STORE)]
    store: PathBuf,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    cmd: Vec<OsString>,
}

/// Where ranges come from. The direct store is used by root when no daemon runs; a daemon
/// client implements the same calls.
pub trait RangeSource {
    /// The allocation held by `lease`, made now if there is none; durable when it returns.
    fn acquire(&mut self, lease: &Lease, size: Option<u64>) -> Result<Allocation>;
    /// Two-phase [`acquire`](Self::acquire): the allocation held by `lease` (made now if there
    /// is none), or with `lease` `None` a fresh one for a user namespace that `setup` makes, is
    /// given to `setup`; it is stored (durably, when this returns) only if `setup` succeeds.
    /// `setup` returns the namespace's lease when `lease` is `None`, and `None` otherwise.
    fn acquire_with(
        &mut self,
        lease: Option<&Lease>,
        size: Option<u64>,
        setup: &mut dyn FnMut(&Allocation) -> Result<Option<Lease>>,
    ) -> Result<Allocation>;
    /// Release the allocation held by `lease`.
    fn release(&mut self, lease: &Lease) -> Result<Allocation>;
}

/// The registry database, opened by this process (redb lets one process open it at a time).
#[derive(Debug)]
pub struct DirectStore {
    reg: Registry,
    owner: u32,
}

impl DirectStore {
    /// Open (or create) the database at `path`, creating its directory, with the host's
    /// passwd, group, subuid and subgid ids excluded.
    pub fn open(path: &Path) -> Result<Self> {
        let owner = ProcFs::new()
            .status(credns_sys::Pid::this())
            .context("reading this process's credentials")?
            .uid[1];
        if owner != 0 {
            bail!(
                "using the registry {} directly needs root; without root, run through \
                 the daemon (`credns serve`)",
                path.display()
            );
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the registry directory {}", dir.display()))?;
        }
        let mut reg = match Registry::open(path, Policy::default()) {
            Ok(r) => r,
            Err(credns_registry::Error::Store(e))
                if e.kind == credns_registry::StoreErrorKind::Locked =>
            {
                bail!(
                    "the registry {} is locked by another process (a credns daemon? give its \
                 socket with --socket)",
                    path.display()
                )
            }
            Err(e) => {
                return Err(e).with_context(|| format!("opening the registry {}", path.display()))
            }
        };
        reg.set_host_exclusions(host_exclusions()?);
        Ok(DirectStore { reg, owner })
    }
}

impl RangeSource for DirectStore {
    fn acquire(&mut self, lease: &Lease, size: Option<u64>) -> Result<Allocation> {
        let mut req = AllocRequest::new(lease.clone(), self.owner);
        if let Some(s) = size {
            req = req.size(s);
        }
        let a = self.reg.allocate(&req)?;
        if let Some(s) = size {
            if a.uid.len() != s {
                bail!(
                    "{lease} already holds allocation {} of {} ids, not {s}; release it first",
                    a.id,
                    a.uid.len()
                );
            }
        }
        Ok(a)
    }

    fn acquire_with(
        &mut self,
        lease: Option<&Lease>,
        size: Option<u64>,
        setup: &mut dyn FnMut(&Allocation) -> Result<Option<Lease>>,
    ) -> Result<Allocation> {
        // Until the namespace exists its lease is this key; nsfs inodes are never 0, and the
        // transaction is never committed with it.
        let provisional = Lease::UserNs {
            dev: 0,
            ino: 0,
            created_ns: 0,
        };
        let lease = lease.cloned();
        let mut txn = self.reg.begin()?;
        let mut req = AllocRequest::new(lease.clone().unwrap_or(provisional), self.owner);
        if let Some(s) = size {
            req = req.size(s);
        }
        let a = txn.allocate(&req)?;
        if let (Some(s), Some(l)) = (size, &lease) {
            if a.uid.len() != s {
                bail!(
                    "{l} already holds allocation {} of {} ids, not {s}; release it first",
                    a.id,
                    a.uid.len()
                );
            }
        }
        let a = match (lease, setup(&a)?) {
            (Some(_), None) => a,
            (None, Some(ns)) => txn.set_lease(a.id, ns)?,
            (Some(l), Some(ns)) => bail!("{l} given, yet the setup named {ns} too"),
            (None, None) => bail!("the setup named no user namespace to lease the range to"),
        };
        txn.commit()?;
        Ok(a)
    }

    fn release(&mut self, lease: &Lease) -> Result<Allocation> {
        Ok(self.reg.release(&Selector::from(lease))?)
    }
}

/// One `--volume SRC:DST[:ro]`, checked for syntax.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeSpec {
    /// The host directory.
    pub src: PathBuf,
    /// Where it appears in the container (absolute, without `..`).
    pub dst: PathBuf,
    /// `:ro`.
    pub read_only: bool,
}

/// Parse `SRC:DST[:ro|:rw]`. SRC and DST may not contain ':' (there is no escape).
pub fn parse_volume(s: &str) -> Result<VolumeSpec> {
    let mut parts = s.splitn(3, ':');
    let src = parts.next().unwrap_or("");
    let Some(dst) = parts.next() else {
        bail!("--volume {s:?}: no DST (expected SRC:DST[:ro])");
    };
    let opt = parts.next();
    if src.is_empty() {
        bail!("--volume {s:?}: empty SRC (expected SRC:DST[:ro])");
    }
    if dst.is_empty() {
        bail!("--volume {s:?}: empty DST (expected SRC:DST[:ro])");
    }
    let dst_path = Path::new(dst);
    if !dst_path.is_absolute() {
        bail!("--volume {s:?}: DST {dst:?} is not an absolute path");
    }
    if dst_path.components().any(|c| c == Component::ParentDir) {
        bail!("--volume {s:?}: DST {dst:?} contains \"..\"");
    }
    let read_only = match opt {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(o) => bail!("--volume {s:?}: unknown option {o:?} (expected ro or rw)"),
    };
    Ok(VolumeSpec {
        src: PathBuf::from(src),
        dst: dst_path.to_owned(),
        read_only,
    })
}

/// A detached clone (of the rootfs or a volume) waiting for its idmap.
#[derive(Debug)]
pub(crate) struct PendingMount {
    tree: DetachedMount,
    /// `None`: the rootfs; else where it is attached.
    target: Option<PathBuf>,
    read_only: bool,
    /// The option it came from, for errors.
    what: String,
}

/// Check the volumes against the host and the rootfs and clone their trees (and the rootfs's)
/// as detached mounts, before anything is allocated.
pub(crate) fn clone_trees(rootfs: Option<&Path>, volumes: &[String]) -> Result<Vec<PendingMount>> {
    let specs = volumes
        .iter()
        .map(|v| parse_volume(v))
        .collect::<Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(specs.len() + 1);
    if let Some(root) = rootfs {
        let what = format!("--rootfs {}", root.display());
        out.push(PendingMount {
            tree: DetachedMount::clone_tree(root, true).with_context(|| what.clone())?,
            target: None,
            read_only: false,
            what,
        });
    }
    for (i, (v, text)) in specs.iter().zip(volumes).enumerate() {
        let src = std::fs::canonicalize(&v.src)
            .with_context(|| format!("--volume {text:?}: SRC {}", v.src.display()))?;
        // A DST below an earlier volume's DST is looked for when that volume is attached.
        let below_earlier = specs[..i].iter().any(|e| v.dst.starts_with(&e.dst));
        if !below_earlier {
            let (at, where_) = match rootfs {
                Some(root) => (
                    root.join(v.dst.strip_prefix("/").unwrap_or(&v.dst)),
                    format!(" in the rootfs {}", root.display()),
                ),
                None => (v.dst.clone(), String::new()),
            };
            let Ok(resolved) = std::fs::canonicalize(&at) else {
                bail!(
                    "--volume {text:?}: DST {} does not exist{where_}",
                    v.dst.display()
                );
            };
            // The container attaches the volume before it switches root, where an absolute
            // symlink of the image points into the host's tree.
            if let Some(root) = rootfs.filter(|r| !resolved.starts_with(r)) {
                bail!(
                    "--volume {text:?}: DST {} resolves to {}, outside the rootfs {} (a symlink \
                     in the image?)",
                    v.dst.display(),
                    resolved.display(),
                    root.display()
                );
            }
        }
        let what = format!("--volume {text:?}");
        out.push(PendingMount {
            tree: DetachedMount::clone_tree(&src, true).with_context(|| what.clone())?,
            target: Some(v.dst.clone()),
            read_only: v.read_only,
            what,
        });
    }
    Ok(out)
}

/// Host ids no container range may use: users and groups of /etc/passwd and /etc/group, and the
/// delegations of /etc/subuid and /etc/subgid. Missing files exclude nothing.
fn host_exclusions() -> Result<Exclusions> {
    let mut ex = Exclusions::new();
    let read = |p: &str| -> Result<Option<String>> {
        match std::fs::read_to_string(p) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {p}")),
        }
    };
    if let Some(t) = read("/etc/passwd")? {
        ex.add_passwd(&parse_passwd("/etc/passwd", &t)?);
    }
    if let Some(t) = read("/etc/group")? {
        ex.add_group(&parse_group("/etc/group", &t)?);
    }
    for (p, kind) in [("/etc/subuid", IdKind::Uid), ("/etc/subgid", IdKind::Gid)] {
        if let Some(t) = read(p)? {
            // Lenient: a line other tools tolerate must not stop containers from running.
            let (file, _skipped) = SubidFile::parse_lenient(&t, p);
            ex.add_subid(&file.entries, kind);
        }
    }
    Ok(ex)
}

/// Whether this process's effective uid is 0.
fn euid_is_root() -> bool {
    ProcFs::new()
        .status(credns_sys::Pid::this())
        .is_ok_and(|s| s.uid[1] == 0)
}

fn parse_user(s: &str) -> Result<(u32, u32)> {
    let num = |v: &str| -> Result<u32> {
        v.parse::<u32>()
            .with_context(|| format!("--user {s:?}: {v:?} is not a numeric id"))
    };
    match s.split_once(':') {
        Some((u, g)) => Ok((num(u)?, num(g)?)),
        None => {
            let u = num(s)?;
            Ok((u, u))
        }
    }
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    let (uid, gid) = match &args.user {
        Some(u) => parse_user(u)?,
        None => (0, 0),
    };
    let root = euid_is_root();
    if !root && (args.rootfs.is_some() || !args.volumes.is_empty()) {
        let what = if args.rootfs.is_some() {
            "--rootfs"
        } else {
            "--volume"
        };
        bail!(
            "{what} needs root (an idmapped mount needs CAP_SYS_ADMIN over the host's filesystem)"
        );
    }
    let rootfs = match &args.rootfs {
        Some(r) => {
            Some(std::fs::canonicalize(r).with_context(|| format!("--rootfs {}", r.display()))?)
        }
        None => None,
    };
    if let Some(root) = &rootfs {
        for d in ["proc", "dev"] {
            if !root.join(d).is_dir() {
                bail!("--rootfs {}: no {d} directory in it", root.display());
            }
        }
    }
    let mut spec = ContainerSpec::new(args.cmd.clone());
    spec.uid = uid;
    spec.gid = gid;
    spec.new_pid = args.pid;
    spec.rootfs = rootfs;
    if let Some(client) = crate::run_daemon::connect(&args.socket) {
        let mounts = clone_trees(spec.rootfs.as_deref(), &args.volumes)?;
        return crate::run_daemon::run(client, &args, spec, mounts, root);
    }
    if !root {
        bail!(
            "no credns daemon answers at {}; start `credns serve` as root, or run as root",
            args.socket.display()
        );
    }
    let mounts = clone_trees(spec.rootfs.as_deref(), &args.volumes)?;
    let mut store = DirectStore::open(&args.store)?;
    run_with(&mut store, &args, spec, mounts)
}

fn run_with(
    source: &mut dyn RangeSource,
    args: &RunArgs,
    mut spec: ContainerSpec,
    mut mounts: Vec<PendingMount>,
) -> Result<ExitCode> {
    let name_lease = args.name.clone().map(Lease::name);
    if name_lease.is_none() {
        become_subreaper()?;
    }
    let mut container: Option<Container> = None;
    let mut ns_lease: Option<Lease> = None;
    // Everything that can fail for a reason of the arguments or the filesystems happens inside
    // the transaction, before it commits: a refusal leaves nothing allocated.
    let alloc = source.acquire_with(name_lease.as_ref(), args.size, &mut |alloc| {
        check_ids(alloc, spec.uid, spec.gid)?;
        if !mounts.is_empty() {
            // The container's own maps: inside N is host base+N, so on-disk N appears to the
            // container as its N, and what its N creates is stored as N.
            let idmap = MappingUserns::new(&alloc.uid_map()?, &alloc.gid_map()?)
                .context("making the idmap's user namespace")?;
            idmap_into(std::mem::take(&mut mounts), &idmap, &mut spec)?;
        }
        let c = Container::spawn(&spec).context("creating the container's namespaces")?;
        // The child holds its copies of the mount fds; ours are of no further use.
        spec.rootfs_mount = None;
        spec.mounts.clear();
        let lease = match name_lease {
            Some(_) => None,
            None => {
                let ns = c.userns_fd().id()?;
                Some(Lease::UserNs {
                    dev: ns.dev,
                    ino: ns.ino,
                    created_ns: process_start_ns(&ProcFs::new(), c.pid())?,
                })
            }
        };
        container = Some(c);
        ns_lease.clone_from(&lease);
        Ok(lease)
    })?;
    let mut c = container.expect("set by a successful setup");
    let ns = c.userns_fd().id()?;
    let outcome = start(&mut c, &alloc);
    let status = match outcome {
        Ok(()) => Some(c.wait()?),
        Err(e) => {
            drop(c);
            if let Some(lease) = &ns_lease {
                source.release(lease)?;
            }
            return Err(e);
        }
    };
    if let Some(lease) = &ns_lease {
        // This process is the subreaper of the container's processes: when none is left, no
        // process of the namespace is (barring a process that joined it from outside with
        // setns(2)), and the lease is released. Otherwise the namespace lives on and so does
        // the lease, until a reaper finds the namespace gone.
        if descendants_remain()? {
            eprintln!(
                "credns run: processes of {ns} outlive the command; allocation {} stays until \
                 the namespace is reaped",
                alloc.id
            );
        } else {
            source.release(lease)?;
        }
    }
    let code = status.map_or(1, |s| s.code());
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// Give each cloned tree the idmap of `userns` (a namespace with the container's maps) and
/// hand it to the container's spec: the rootfs, or a volume at its target.
pub(crate) fn idmap_into(
    mounts: Vec<PendingMount>,
    userns: &credns_sys::UserNsFd,
    spec: &mut ContainerSpec,
) -> Result<()> {
    for m in mounts {
        m.tree.set_idmap(userns).with_context(|| m.what.clone())?;
        if m.read_only {
            m.tree.set_read_only().with_context(|| m.what.clone())?;
        }
        let fd = OwnedFd::from(m.tree);
        match m.target {
            None => spec.rootfs_mount = Some(fd),
            Some(target) => spec.mounts.push(ExtraMount { fd, target }),
        }
    }
    Ok(())
}

/// `--user`'s ids must be mapped.
fn check_ids(alloc: &Allocation, uid: u32, gid: u32) -> Result<()> {
    let size = alloc.uid.len();
    for (what, id) in [("uid", uid), ("gid", gid)] {
        if u64::from(id) >= size {
            bail!(
                "--user: {what} {id} is outside the namespace's mapped ids 0-{} (allocation {})",
                size - 1,
                alloc.id
            );
        }
    }
    Ok(())
}

/// Write the maps and let the child exec.
fn start(c: &mut Container, alloc: &Allocation) -> Result<()> {
    c.write_maps(&alloc.uid_map()?, &alloc.gid_map()?)
        .context("writing the container's ID maps")?;
    c.start().map_err(|e| match e {
        credns_sys::Error::Container { what, errno } => {
            anyhow::Error::new(ChildFailed { what, errno })
        }
        e => e.into(),
    })
}

/// A failure inside the container before its command ran; reported as the shell would.
#[derive(Debug)]
pub struct ChildFailed {
    pub what: String,
    pub errno: Errno,
}

impl ChildFailed {
    /// 126 when the command was found but could not run, 127 when it was not found, 125 for a
    /// failure of the setup.
    pub fn exit_code(&self) -> u8 {
        if self.what.starts_with("cannot execute") {
            if self.errno == Errno::NOENT {
                127
            } else {
                126
            }
        } else {
            125
        }
    }
}

impl std::fmt::Display for ChildFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = std::io::Error::from_raw_os_error(self.errno.raw_os_error()).to_string();
        let text = text.split(" (os error").next().unwrap_or(&text);
        write!(f, "{}: {text}", self.what)
    }
}

impl std::error::Error for ChildFailed {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn err(s: &str) -> String {
        parse_volume(s).unwrap_err().to_string()
    }

    #[test]
    fn volume_syntax() {
        assert_eq!(
            parse_volume("/srv/data:/data").unwrap(),
            VolumeSpec {
                src: "/srv/data".into(),
                dst: "/data".into(),
                read_only: false
            }
        );
        assert!(parse_volume("rel/dir:/data:ro").unwrap().read_only);
        assert!(!parse_volume("a:/b:rw").unwrap().read_only);
        assert_eq!(
            err("/srv"),
            "--volume \"/srv\": no DST (expected SRC:DST[:ro])"
        );
        assert_eq!(
            err("/srv:"),
            "--volume \"/srv:\": empty DST (expected SRC:DST[:ro])"
        );
        assert_eq!(
            err(":/data"),
            "--volume \":/data\": empty SRC (expected SRC:DST[:ro])"
        );
        assert_eq!(
            err("/srv:data"),
            "--volume \"/srv:data\": DST \"data\" is not an absolute path"
        );
        assert_eq!(
            err("/srv:/data/../etc"),
            "--volume \"/srv:/data/../etc\": DST \"/data/../etc\" contains \"..\""
        );
        assert_eq!(
            err("/srv:/data:rx"),
            "--volume \"/srv:/data:rx\": unknown option \"rx\" (expected ro or rw)"
        );
        assert_eq!(
            err("/srv:/data:ro:x"),
            "--volume \"/srv:/data:ro:x\": unknown option \"ro:x\" (expected ro or rw)"
        );
    }

    proptest! {
        #[test]
        fn well_formed_volumes_round_trip(
            src in "[^:\\x00]{1,20}",
            dst in "(/[a-z.]{1,6}){1,4}",
            opt in prop::option::of(prop::bool::ANY),
        ) {
            prop_assume!(!dst.split('/').any(|c| c == ".."));
            let text = match opt {
                None => format!("{src}:{dst}"),
                Some(true) => format!("{src}:{dst}:ro"),
                Some(false) => format!("{src}:{dst}:rw"),
            };
            let v = parse_volume(&text).unwrap();
            prop_assert_eq!(v.src, PathBuf::from(&src));
            prop_assert_eq!(v.dst, PathBuf::from(&dst));
            prop_assert_eq!(v.read_only, opt == Some(true));
        }

        #[test]
        fn accepted_volumes_are_safe(text in "[a-z/.:]{0,24}") {
            match parse_volume(&text) {
                Ok(v) => {
                    prop_assert!(!v.src.as_os_str().is_empty());
                    prop_assert!(v.dst.is_absolute());
                    prop_assert!(!v.dst.components().any(|c| c == Component::ParentDir));
                    prop_assert!(text.matches(':').count() <= 2);
                }
                Err(e) => {
                    let msg = e.to_string();
                    prop_assert!(msg.starts_with(&format!("--volume {text:?}: ")), "{}", msg);
                }
            }
        }
    }
}
