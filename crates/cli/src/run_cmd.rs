//! `credns run`: run a command in a new user namespace (and mount namespace, optionally a pid
//! namespace and a root filesystem) with an allocated ID range.
//!
//! Order of work: the container's first process is cloned and waits; the range is allocated
//! (durably: the record is on disk before any id of it is used); the parent writes the maps; the
//! child takes its ids and execs. A name lease (`--name`) is kept after exit; a namespace lease
//! is released after exit once no process of the container is left (this process is their
//! subreaper, so it knows without scanning /proc).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
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
    become_subreaper, descendants_remain, process_start_ns, Container, ContainerSpec,
};
use credns_sys::{Errno, ProcFs};

/// The registry database root uses when no daemon runs.
pub const DEFAULT_STORE: &str = "/var/lib/credns/registry.redb";

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Ids to allocate (default: the policy's, 65536).
    #[arg(long)]
    size: Option<u64>,
    /// Lease the range to this name: it is kept after the command exits and reused next time.
    /// Without it the range is leased to the new user namespace and released when it dies.
    #[arg(long)]
    name: Option<String>,
    /// Also make a pid namespace: the command is its pid 1.
    #[arg(long)]
    pid: bool,
    /// Run as UID[:GID] of the namespace (default 0:0, the namespace's root; GID defaults to UID).
    #[arg(long, value_name = "UID[:GID]")]
    user: Option<String>,
    /// Switch to this root filesystem, with /proc and a minimal /dev. It must have `proc` and
    /// `dev` directories.
    #[arg(long, value_name = "DIR")]
    rootfs: Option<PathBuf>,
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
                "using the registry {} directly needs root (no daemon support yet)",
                path.display()
            );
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the registry directory {}", dir.display()))?;
        }
        let mut reg = match Registry::open(path, Policy::default()) {
            Ok(r) => r,
            Err(credns_registry::Error::Db(redb::Error::DatabaseAlreadyOpen)) => bail!(
                "the registry {} is locked by another process (a credns daemon?); \
                 running through the daemon is not supported yet",
                path.display()
            ),
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

    fn release(&mut self, lease: &Lease) -> Result<Allocation> {
        Ok(self.reg.release(&Selector::from(lease))?)
    }
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
    let mut store = DirectStore::open(&args.store)?;
    let mut spec = ContainerSpec::new(args.cmd.clone());
    spec.uid = uid;
    spec.gid = gid;
    spec.new_pid = args.pid;
    spec.rootfs = rootfs;
    run_with(&mut store, &args, spec)
}

fn run_with(source: &mut dyn RangeSource, args: &RunArgs, spec: ContainerSpec) -> Result<ExitCode> {
    // A name lease is allocated before anything else; a namespace lease needs the namespace.
    let named = match &args.name {
        Some(n) => Some(source.acquire(&Lease::name(n.clone()), args.size)?),
        None => None,
    };
    if named.is_none() {
        become_subreaper()?;
    }
    let mut c = Container::spawn(&spec).context("creating the container's namespaces")?;
    let ns = c.userns_fd().id()?;
    let (alloc, ns_lease) = match named {
        Some(a) => (a, None),
        None => {
            let created_ns = process_start_ns(&ProcFs::new(), c.pid())?;
            let lease = Lease::UserNs {
                dev: ns.dev,
                ino: ns.ino,
                created_ns,
            };
            (source.acquire(&lease, args.size)?, Some(lease))
        }
    };
    let outcome = start(&mut c, &alloc, spec.uid, spec.gid);
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

/// Write the maps and let the child exec.
fn start(c: &mut Container, alloc: &Allocation, uid: u32, gid: u32) -> Result<()> {
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
