//! `credns run` through the registry daemon: the path of every caller when `credns serve` answers
//! on its socket, and the only path of an unprivileged caller.
//!
//! Namespace lease (the default): the container's first process is cloned into its new user
//! and mount namespaces (a user namespace needs no privilege, `user_namespaces(7)`) and waits;
//! the daemon gets the namespace's nsfs fd and a pidfd of that process, checks the namespace
//! belongs to the caller (`SO_PEERCRED` against `NS_GET_OWNER_UID`), allocates durably and
//! writes `uid_map` and `gid_map` itself (newuidmap's job, done by the one process that knows
//! every allocation; no setuid binary); then the child goes on. Nothing is released at exit: the
//! daemon watches the namespace's processes by pidfd and releases the lease when the last one
//! is gone, so the command's exit costs the client nothing.
//!
//! Name lease (`--name`, root only): the daemon allocates (or finds) the named range and this
//! process writes the maps, as on the direct path; the lease outlives the command.
//!
//! `--rootfs` and `--volume` (root only) need the container's maps before the container
//! exists, for their idmapped mounts. With a namespace lease, the range is leased to a holder:
//! a helper process in an empty user namespace of its own, whose maps the daemon writes like any
//! other. That namespace then carries the idmap of the mounts, the container gets the same maps
//! (written by this process), and the holder lives until the command ends: its exit is what
//! the daemon sees to release the range (if this process dies, the holder sees its socket close
//! and exits, and the container, whose parent-death signal is set, goes too).

use std::os::fd::AsFd;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use credns_service::{AllocOptions, AllocationInfo, Client};
use credns_sys::container::{Container, ContainerSpec};
use credns_sys::pidfd::PidFd;
use credns_sys::{MappingUserns, UnshareOptions, UsernsChild};

use crate::run_cmd::{idmap_into, ChildFailed, PendingMount, RunArgs};

/// A connection to the daemon at `socket`, or `None` if nothing answers there.
pub fn connect(socket: &Path) -> Option<Client> {
    Client::connect(socket).ok()
}

/// Run `spec` with a range from the daemon behind `client`; `root` tells whether the caller is
/// root (only root writes maps itself, for a name lease).
pub fn run(
    mut client: Client,
    args: &RunArgs,
    mut spec: ContainerSpec,
    mounts: Vec<PendingMount>,
    root: bool,
) -> Result<ExitCode> {
    let opts = AllocOptions {
        size: args.size,
        ..AllocOptions::default()
    };
    // Kept until the command ends when it holds the lease (see the module's documentation).
    let mut _holder: Option<UsernsChild> = None;
    let mut c = match &args.name {
        Some(name) => {
            if !root {
                bail!(
                    "--name needs root: the daemon writes the maps of namespace leases only; \
                     run without --name (the range is then leased to the new namespace)"
                );
            }
            let a = client
                .allocate_name(name, &opts)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            check_size(&a, args.size, name)?;
            check_ids_mapped(a.uid.len(), a.id, spec.uid, spec.gid)?;
            if !mounts.is_empty() {
                let idmap = MappingUserns::new(&a.uid_map()?, &a.gid_map()?)
                    .context("making the idmap's user namespace")?;
                idmap_into(mounts, &idmap, &mut spec)?;
            }
            let c = Container::spawn(&spec).context("creating the container's namespaces")?;
            c.write_maps(&a.uid_map()?, &a.gid_map()?)
                .context("writing the container's ID maps")?;
            c
        }
        None if !mounts.is_empty() => {
            let holder = UsernsChild::spawn(&UnshareOptions::new())
                .context("creating the lease holder's user namespace")?;
            let ns = holder.userns_fd()?;
            let member = PidFd::open(holder.pid()).context("opening a pidfd of the holder")?;
            let opts = AllocOptions {
                write_maps: true,
                ..opts
            };
            let a = client
                .allocate_userns(ns.as_fd(), Some(member.as_fd()), &opts)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            check_ids_mapped(a.uid.len(), a.id, spec.uid, spec.gid)?;
            idmap_into(mounts, &ns, &mut spec)?;
            let c = Container::spawn(&spec).context("creating the container's namespaces")?;
            c.write_maps(&a.uid_map()?, &a.gid_map()?)
                .context("writing the container's ID maps")?;
            _holder = Some(holder);
            c
        }
        None => {
            let c = Container::spawn(&spec).context("creating the container's namespaces")?;
            let member = PidFd::open(c.pid()).context("opening a pidfd of the container")?;
            let opts = AllocOptions {
                write_maps: true,
                ..opts
            };
            // The daemon commits the allocation, then writes the maps; on any failure it has
            // released it again. Dropping `c` on an error kills the waiting child.
            let a = client
                .allocate_userns(c.userns_fd().as_fd(), Some(member.as_fd()), &opts)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            // Checked after the maps are written (the daemon reaps the lease when the child
            // dies); a size the caller picked too small for --user is the caller's error.
            check_ids_mapped(a.uid.len(), a.id, spec.uid, spec.gid)?;
            c
        }
    };
    // The connection is of no further use; the daemon must not wait on it while the command runs.
    drop(client);
    c.start().map_err(|e| match e {
        credns_sys::Error::Container { what, errno } => {
            anyhow::Error::new(ChildFailed { what, errno })
        }
        e => e.into(),
    })?;
    let status = c.wait()?;
    Ok(ExitCode::from(status.code().clamp(0, 255) as u8))
}

/// `--user`'s ids must lie in the namespace's mapped ids `0..size`.
fn check_ids_mapped(size: u64, alloc: u64, uid: u32, gid: u32) -> Result<()> {
    for (what, id) in [("uid", uid), ("gid", gid)] {
        if u64::from(id) >= size {
            bail!(
                "--user: {what} {id} is outside the namespace's mapped ids 0-{} (allocation {alloc})",
                size - 1
            );
        }
    }
    Ok(())
}

fn check_size(a: &AllocationInfo, size: Option<u64>, name: &str) -> Result<()> {
    if let Some(s) = size {
        if a.uid.len() != s {
            bail!(
                "name {name:?} already holds allocation {} of {} ids, not {s}; release it first",
                a.id,
                a.uid.len()
            );
        }
    }
    Ok(())
}
