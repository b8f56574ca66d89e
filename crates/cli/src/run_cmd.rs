//! `credns run`: run a command in a new user namespace (and a mount namespace, optionally a pid
//! namespace and a root filesystem) with an allocated ID range.
//!
//! The range comes through [`credns_service::connect`]: the daemon when it answers, else (root)
//! the store, opened for each call. The same methods answer either way:
//!
//! * Namespace lease (the default): the container's first process is cloned into its new
//!   namespaces and waits; the registry gets the namespace's nsfs fd and a pidfd of that
//!   process, checks the namespace is the caller's, allocates durably and writes `uid_map` and
//!   `gid_map` itself (newuidmap's job, with no setuid binary); then the child goes on. The
//!   daemon watches the namespace and releases the lease when it dies; on the direct path this
//!   process, the subreaper of the container's processes, releases it when none is left.
//! * Name lease (`--name`, root only): the named range is allocated (or found) and this
//!   process writes the maps; the lease outlives the command.
//! * `--rootfs` and `--volume` (root only) need the container's maps before the container
//!   exists, for their idmapped mounts. With a namespace lease the range is leased to a holder,
//!   a helper process in an empty user namespace of its own whose maps the registry writes;
//!   that namespace carries the mounts' idmap and lives until the command ends.
//!
//! Everything that can be refused for a reason of the arguments or the filesystems is checked
//! before the range is used, and a refused setup releases a range it allocated: a refusal
//! leaves nothing allocated. Setup failures exit 125; the command's own status is passed on
//! (126 cannot execute, 127 not found, 128 + N killed by signal N).

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use credns_service::{AllocOptions, AllocationInfo, RegistryClient, Route, Target};
use credns_sys::container::{
    become_subreaper, descendants_remain, Container, ContainerSpec, ExtraMount,
};
use credns_sys::inplace::InPlace;
use credns_sys::keys::session::enter_container_session;
use credns_sys::pidfd::PidFd;
use credns_sys::{DetachedMount, Errno, MappingUserns, UnshareOptions, UsernsChild};

use crate::registry_cmd::Where;

/// What `credns run` does, in one line (its help's first line).
pub const ABOUT: &str = "Run a command in a new user namespace with an allocated ID range";

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Ids to allocate (default: the policy's, 65536).
    #[arg(long)]
    pub(crate) size: Option<u64>,
    /// Lease the range to this name (root): it is kept after the command exits and reused next
    /// time. Without it the range is leased to the new user namespace and released when it
    /// dies.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Also make a pid namespace: the command is its pid 1.
    #[arg(long)]
    pid: bool,
    /// Run as UID[:GID] of the namespace (default 0:0, the namespace's root; GID defaults to UID).
    #[arg(long, value_name = "UID[:GID]")]
    user: Option<String>,
    /// Switch to this root filesystem, with /proc and a minimal /dev (root). It must have
    /// `proc` and `dev` directories. It is idmapped like the container: its files stored with
    /// ids 0..SIZE-1 appear owned by the container's same ids, and files the container makes
    /// are stored with the container's ids.
    #[arg(long, value_name = "DIR")]
    rootfs: Option<PathBuf>,
    /// Show the directory SRC at DST (absolute; inside the rootfs when there is one, where it
    /// must exist), idmapped as the rootfs is; `:ro` makes it read-only (root). Repeatable;
    /// attached in the order given.
    #[arg(long = "volume", short = 'v', value_name = "SRC:DST[:ro]")]
    volumes: Vec<String>,
    /// Give the container no keyring of its own: it keeps the caller's session keyring
    /// (by default it gets a new session keyring `_ses.credns.N` with the allocation's container
    /// keyring `_container` linked in it; see `credns key`).
    #[arg(long)]
    no_keyring: bool,
    #[command(flatten)]
    pub(crate) at: Where,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    cmd: Vec<OsString>,
}

/// A failure of the container's setup (exit status 125): the command did not run.
#[derive(Debug)]
pub struct SetupFailed(pub anyhow::Error);

impl std::fmt::Display for SetupFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::output::error_text(&self.0))
    }
}

impl std::error::Error for SetupFailed {}

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
    let run = Run::prepare(&args).map_err(|e| anyhow::Error::new(SetupFailed(e)))?;
    run.go()
}

/// A checked `credns run`: its spec, its cloned trees, and the registry.
struct Run<'a> {
    args: &'a RunArgs,
    spec: ContainerSpec,
    mounts: Vec<PendingMount>,
    client: RegistryClient,
    route: Route,
    /// The allocation was made by this run (not found held by its name).
    fresh: bool,
    /// The session keyring to make in the container, and the container keyring to link in it.
    session: Option<(std::ffi::CString, i32)>,
}

impl<'a> Run<'a> {
    /// Check the arguments, clone the trees and reach the registry; nothing is allocated yet.
    fn prepare(args: &'a RunArgs) -> Result<Self> {
        let (uid, gid) = match &args.user {
            Some(u) => parse_user(u)?,
            None => (0, 0),
        };
        let root = credns_sys::is_root();
        if !root {
            if let Some(what) = [
                (args.rootfs.is_some(), "--rootfs"),
                (!args.volumes.is_empty(), "--volume"),
            ]
            .iter()
            .find_map(|(on, w)| on.then_some(*w))
            {
                bail!("{what} needs root (an idmapped mount needs CAP_SYS_ADMIN over the host's filesystem)");
            }
            if args.name.is_some() {
                bail!(
                    "--name needs root: the registry writes the maps of namespace leases only; \
                     run without --name (the range is then leased to the new namespace)"
                );
            }
        }
        let rootfs = match &args.rootfs {
            Some(r) => Some(
                std::fs::canonicalize(r).with_context(|| format!("--rootfs {}", r.display()))?,
            ),
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
        let mounts = clone_trees(spec.rootfs.as_deref(), &args.volumes)?;
        let (client, route) = args.at.connect()?;
        Ok(Run {
            args,
            spec,
            mounts,
            client,
            route,
            fresh: true,
            session: None,
        })
    }

    fn opts(&self, write_maps: bool) -> AllocOptions {
        AllocOptions {
            size: self.args.size,
            write_maps,
            ..AllocOptions::default()
        }
    }

    /// Note the container keyring the registry gave, for the container's session keyring.
    fn keep_session(&mut self, got: &credns_service::Allocated) {
        self.session = got.keyring.map(|k| (session_name(got.allocation.id), k));
    }

    /// Set the container up (a refusal releases what this run allocated), run the command,
    /// and pass its status on.
    fn go(mut self) -> Result<ExitCode> {
        if self.route == Route::Daemon
            && self.args.name.is_none()
            && self.mounts.is_empty()
            && !self.args.pid
        {
            return self.in_place();
        }
        let direct_ns_lease = self.route == Route::Direct && self.args.name.is_none();
        if direct_ns_lease {
            // This process then knows, without scanning /proc, when the container's last
            // process is gone, and releases the lease itself.
            become_subreaper().map_err(|e| anyhow::Error::new(SetupFailed(e.into())))?;
        }
        let (mut c, alloc, _holder) = self
            .set_up()
            .map_err(|e| anyhow::Error::new(SetupFailed(e)))?;
        let fresh_name = self.args.name.is_some() && self.fresh;
        // Neither the daemon nor the store may wait on this run while the command runs: the
        // registry is reached again (daemon or store, whichever answers then) to release.
        drop(self.client);
        let ns = c.userns_fd().id()?;
        let session = self.session.as_ref().map(|(n, k)| (n.as_c_str(), *k));
        let started = start(&mut c, session);
        if let Err(e) = &started {
            // The container's own setup was refused: a name this run made is given back.
            let setup_step = e
                .downcast_ref::<ChildFailed>()
                .is_none_or(|f| f.exit_code() == 125);
            if fresh_name && setup_step {
                release_again(&self.args.at, alloc.id);
            }
        }
        let status = started.and_then(|()| Ok(c.wait()?));
        if !direct_ns_lease {
            return finish(status);
        }
        drop(_holder);
        if descendants_remain()? {
            eprintln!(
                "credns run: processes of {ns} outlive the command; allocation #{} stays until \
                 the namespace is reaped",
                alloc.id
            );
        } else {
            release_again(&self.args.at, alloc.id);
        }
        finish(status)
    }

    /// The fast path (through the daemon; no --name, --pid, --rootfs or --volume): this
    /// process unshares its own user namespace, the daemon allocates and writes its maps and
    /// follows it by pidfd, and it execs the command in place. No fork, no mount namespace;
    /// the command's exit status is the process's own.
    fn in_place(mut self) -> Result<ExitCode> {
        let setup = |e: anyhow::Error| anyhow::Error::new(SetupFailed(e));
        let me = InPlace::unshare()
            .context("creating the container's user namespace")
            .map_err(setup)?;
        let got = self
            .client
            .allocate_userns_keyring(
                me.userns_fd().as_fd(),
                Some(me.pidfd().as_fd()),
                &self.opts(true),
                !self.args.no_keyring,
            )
            .map_err(|e| setup(e.into()))?;
        self.keep_session(&got);
        let a = got.allocation;
        let checked = check_ids_mapped(&a, self.spec.uid, self.spec.gid).and_then(|()| {
            // Still the caller's uid: the session keyring is the manager's, not the container's.
            if let Some((name, keyring)) = &self.session {
                enter_container_session(name, *keyring)
                    .context("making the container's session keyring")?;
            }
            Ok(())
        });
        self.undo_if(true, &a, checked).map_err(setup)?;
        // The daemon follows this process by pidfd; the connection is of no further use.
        drop(self.client);
        Err(
            match me.exec(self.spec.uid, self.spec.gid, &self.args.cmd) {
                credns_sys::Error::Container { what, errno } => {
                    anyhow::Error::new(ChildFailed { what, errno })
                }
                e => setup(e.into()),
            },
        )
    }

    /// The container, waiting to start, with its maps written; its allocation; and the lease
    /// holder to keep alive while it runs.
    fn set_up(&mut self) -> Result<(Container, AllocationInfo, Option<UsernsChild>)> {
        match (self.args.name.clone(), self.mounts.is_empty()) {
            (Some(name), _) => self.named(&name).map(|(c, a)| (c, a, None)),
            (None, false) => self.held(),
            (None, true) => self.in_namespace().map(|(c, a)| (c, a, None)),
        }
    }

    /// A name lease: allocate (or find) it, idmap the trees, spawn, write the maps here. A
    /// fresh allocation is released again if any of it fails.
    fn named(&mut self, name: &str) -> Result<(Container, AllocationInfo)> {
        let got =
            self.client
                .allocate_name_keyring(name, &self.opts(false), !self.args.no_keyring)?;
        self.fresh = got.fresh;
        self.keep_session(&got);
        let a = got.allocation;
        let r = (|| {
            check_size(&a, self.args.size, name)?;
            check_ids_mapped(&a, self.spec.uid, self.spec.gid)?;
            if !self.mounts.is_empty() {
                let idmap = MappingUserns::new(&a.uid_map()?, &a.gid_map()?)
                    .context("making the idmap's user namespace")?;
                idmap_into(std::mem::take(&mut self.mounts), &idmap, &mut self.spec)?;
            }
            let c = Container::spawn(&self.spec).context("creating the container's namespaces")?;
            c.write_maps(&a.uid_map()?, &a.gid_map()?)
                .context("writing the container's ID maps")?;
            Ok(c)
        })();
        self.undo_if(got.fresh, &a, r).map(|c| (c, a))
    }

    /// A namespace lease with idmapped trees: the range is leased to a holder namespace whose
    /// maps the registry writes; the trees are idmapped through it.
    fn held(&mut self) -> Result<(Container, AllocationInfo, Option<UsernsChild>)> {
        let holder = UsernsChild::spawn(&UnshareOptions::new())
            .context("creating the lease holder's user namespace")?;
        let ns = holder.userns_fd()?;
        let member = PidFd::open(holder.pid()).context("opening a pidfd of the holder")?;
        let got = self.client.allocate_userns_keyring(
            ns.as_fd(),
            Some(member.as_fd()),
            &self.opts(true),
            !self.args.no_keyring,
        )?;
        self.keep_session(&got);
        let a = got.allocation;
        let r = (|| {
            check_ids_mapped(&a, self.spec.uid, self.spec.gid)?;
            idmap_into(std::mem::take(&mut self.mounts), &ns, &mut self.spec)?;
            let c = Container::spawn(&self.spec).context("creating the container's namespaces")?;
            c.write_maps(&a.uid_map()?, &a.gid_map()?)
                .context("writing the container's ID maps")?;
            Ok(c)
        })();
        self.undo_if(true, &a, r).map(|c| (c, a, Some(holder)))
    }

    /// A namespace lease: the container's own namespace, maps written by the registry.
    fn in_namespace(&mut self) -> Result<(Container, AllocationInfo)> {
        let c = Container::spawn(&self.spec).context("creating the container's namespaces")?;
        let member = PidFd::open(c.pid()).context("opening a pidfd of the container")?;
        // The registry commits the allocation, then writes the maps; on any failure it has
        // released it again. Dropping `c` on an error kills the waiting child.
        let got = self.client.allocate_userns_keyring(
            c.userns_fd().as_fd(),
            Some(member.as_fd()),
            &self.opts(true),
            !self.args.no_keyring,
        )?;
        self.keep_session(&got);
        let a = got.allocation;
        // A size too small for --user: the lease goes with the child this error kills.
        let r = check_ids_mapped(&a, self.spec.uid, self.spec.gid).map(|()| c);
        self.undo_if(true, &a, r).map(|c| (c, a))
    }

    /// On a failed setup, release the allocation if this run made it.
    fn undo_if<T>(&mut self, fresh: bool, a: &AllocationInfo, r: Result<T>) -> Result<T> {
        if r.is_err() && fresh {
            if let Err(e) = self.client.release(&Target::Id(a.id)) {
                eprintln!(
                    "credns run: releasing allocation #{} after the refusal: {e}",
                    a.id
                );
            }
        }
        r
    }
}

/// The container's session keyring's name: `_ses.credns.N` for allocation N.
fn session_name(id: u64) -> std::ffi::CString {
    std::ffi::CString::new(format!("_ses.credns.{id}")).expect("no NUL in a number")
}

/// Release allocation `id` through whatever answers now (a daemon started meanwhile holds the
/// store); a failure is said, not fatal: the command's status is what this run reports.
fn release_again(at: &Where, id: u64) {
    let r = at
        .connect()
        .and_then(|(mut c, _)| Ok(c.release(&Target::Id(id))?));
    if let Err(e) = r {
        eprintln!(
            "credns run: releasing allocation #{id}: {}",
            crate::output::error_text(&e)
        );
    }
}

/// Let the waiting child go on: it attaches its mounts, takes its ids and execs.
fn start(c: &mut Container, session: Option<(&std::ffi::CStr, i32)>) -> Result<()> {
    c.start_in_session(session).map_err(|e| match e {
        credns_sys::Error::Container { what, errno } => {
            anyhow::Error::new(ChildFailed { what, errno })
        }
        e => anyhow::Error::new(SetupFailed(e.into())),
    })
}

fn finish(status: Result<credns_sys::container::ExitStatus>) -> Result<ExitCode> {
    Ok(ExitCode::from(status?.code().clamp(0, 255) as u8))
}

/// `--user`'s ids must lie in the namespace's mapped ids `0..size`.
fn check_ids_mapped(a: &AllocationInfo, uid: u32, gid: u32) -> Result<()> {
    let size = a.uid.len();
    for (what, id) in [("uid", uid), ("gid", gid)] {
        if u64::from(id) >= size {
            bail!(
                "--user: {what} {id} is outside the namespace's mapped ids 0-{} (allocation #{})",
                size - 1,
                a.id
            );
        }
    }
    Ok(())
}

fn check_size(a: &AllocationInfo, size: Option<u64>, name: &str) -> Result<()> {
    if let Some(s) = size.filter(|&s| s != a.uid.len()) {
        bail!(
            "name {name:?} already holds allocation #{} of {} ids, not {s}; release it first",
            a.id,
            a.uid.len()
        );
    }
    Ok(())
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
