//! The model's initial mount and UTS namespaces, realised per scenario as test-owned stand-ins,
//! so that `mount`, `umount`, a bind remount and `sethostname` by a process the model puts in
//! them are performed for real without touching this machine's mount tree or hostname.
//!
//! A keeper helper, root in the initial user namespace with the test process's capabilities,
//! does `unshare(CLONE_NEWNS | CLONE_NEWUTS)`, makes its whole mount tree private
//! (`mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)`) and sets the model's initial hostname
//! if the scenario declares one. Every other process of the scenario (user namespace keepers,
//! creators of declared namespaces, the scenario's processes) is forked from it, so each is in
//! the stand-ins unless the model puts it elsewhere (then it `setns`es as before), and
//! namespaces the scenario unshares from an initial-namespace process are copies of them.
//!
//! Why the kernel's answers are the ones it gives for the host's namespaces (Linux 6.18):
//! - The stand-ins are owned by the initial user namespace: `copy_mnt_ns` and
//!   `copy_utsname` give a new namespace `get_user_ns(user_ns)` of the unsharing task's
//!   credentials, here `init_user_ns` (`fs/namespace.c`, `kernel/utsname.c`).
//! - `may_mount()` is `ns_capable(current->nsproxy->mnt_ns->user_ns, CAP_SYS_ADMIN)`, the
//!   check `mount`, `umount` (`can_umount`, also `MNT_LOCKED`) and a remount (`path_mount`)
//!   make: against `init_user_ns`, as for the host's mount namespace.
//! - `copy_mnt_ns` demotes propagation (`CL_SHARED_TO_SLAVE`; `CL_SLAVE` in recent kernels)
//!   and calls `lock_mnt_tree` (`MNT_LOCKED` on every mount but the root, and
//!   `MNT_LOCK_READONLY`/`_NOSUID`/`_NOEXEC`/... on their flags) only when
//!   `user_ns != ns->user_ns`. The stand-in is copied by root of `init_user_ns` from the host's
//!   namespace, also owned by it: nothing is locked, the copies keep the host mounts' flags
//!   unlocked, as in the host's namespace (where only `lock_mnt_tree` of such copies locks).
//!   A namespace the scenario unshares from it by a process of another user namespace is
//!   locked as one unshared from the host's would be.
//! - `sethostname` checks `ns_capable(current->nsproxy->uts_ns->user_ns, CAP_SYS_ADMIN)`
//!   (`kernel/sys.c`): `init_user_ns` for the stand-in, as for the host's UTS namespace.
//! - `setns` into a stand-in (`mntns_install`, `utsns_install`) asks CAP_SYS_ADMIN in
//!   `init_user_ns`, which only root of the initial user namespace has: the processes join by
//!   being forked from the keeper before they take on their credentials, not by `setns`.
//!
//! What is mounted and where: the copy holds every host mount, the fixture's tmpfs, ext4 and
//! loop filesystems under /tmp included (same superblocks, so the scenario's files are shared
//! with the test process). The clones the executor attaches for mounts with options or idmaps
//! are made by the test process (`open_tree(OPEN_TREE_CLONE)`) and attached by the keeper
//! inside the stand-in. Scenario mount ops target the model's paths, which the executor maps to
//! directories inside the fixture ([`crate::kernel::Realised::real_path`]), never the
//! stand-in's copies of other host paths. Either way nothing reaches the host: the tree is
//! private (no propagation to the host's peer groups) and the namespace dies with its last
//! process and nsfs fd, the keeper and [`StandIn`]'s own.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use credns_model::{NsType, World};
use credns_sys::{DetachedMount, UnshareOptions, UserNsFd, UsernsChild};

/// `CLONE_NEWNS | CLONE_NEWUTS`.
const NEWNS_NEWUTS: u64 = 0x0002_0000 | 0x0400_0000;

/// The stand-ins for the initial mount and UTS namespaces and their keeper.
#[derive(Debug)]
pub struct StandIn {
    keeper: UsernsChild,
    mnt: UserNsFd,
    uts: UserNsFd,
}

impl StandIn {
    /// Make the stand-ins: a keeper forked from us (root in the initial user namespace)
    /// unshares them, makes its mount tree private, and takes the model's initial hostname.
    pub fn new(w: &World) -> Result<StandIn, String> {
        let plain = UnshareOptions {
            ids: None,
            caps: None,
            new_userns: false,
            dumpable: true,
        };
        let fail = |what: &str, e: String| format!("initial mnt/uts stand-in: {what}: {e}");
        let keeper = UsernsChild::spawn(&plain).map_err(|e| fail("spawn", e.to_string()))?;
        keeper
            .unshare_ns(NEWNS_NEWUTS)
            .map_err(|e| fail("unshare", e.to_string()))?
            .map_err(|e| fail("unshare", e.to_string()))?;
        // Before anything else is mounted: a shared copy would propagate to the host.
        keeper
            .make_root_private()
            .map_err(|e| fail("MS_REC|MS_PRIVATE", e.to_string()))?
            .map_err(|e| fail("MS_REC|MS_PRIVATE", e.to_string()))?;
        if let Some(h) = initial_hostname(w) {
            keeper
                .sethostname(h.as_bytes())
                .map_err(|e| fail("sethostname", e.to_string()))?
                .map_err(|e| fail("sethostname", e.to_string()))?;
        }
        let open = |k: &str| {
            let p = PathBuf::from(format!("/proc/{}/ns/{k}", keeper.pid().0));
            UserNsFd::open_path(&p).map_err(|e| fail(k, e.to_string()))
        };
        let (mnt, uts) = (open("mnt")?, open("uts")?);
        let s = StandIn { keeper, mnt, uts };
        s.check_not_host()?;
        Ok(s)
    }

    /// The keeper: every process of the scenario is forked from it.
    pub fn keeper(&self) -> &UsernsChild {
        &self.keeper
    }

    /// An fd of the stand-in for the initial namespace of type `k`, if there is one.
    pub fn ns_fd(&self, k: NsType) -> Option<&UserNsFd> {
        match k {
            NsType::Mnt => Some(&self.mnt),
            NsType::Uts => Some(&self.uts),
            _ => None,
        }
    }

    /// Attach a clone made by the test process at `target` inside the stand-in.
    pub fn attach(&self, clone: DetachedMount, target: &Path) -> Result<(), String> {
        let fd = OwnedFd::from(clone);
        self.keeper
            .attach_mount(fd.as_fd(), target)
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("move_mount to {} in the stand-in: {e}", target.display()))
    }

    /// Refuse stand-ins that are the host's own namespaces (the unshare did not happen).
    fn check_not_host(&self) -> Result<(), String> {
        for (k, fd) in [("mnt", &self.mnt), ("uts", &self.uts)] {
            let host = UserNsFd::open_path(Path::new(&format!("/proc/self/ns/{k}")))
                .and_then(|h| h.id())
                .map_err(|e| e.to_string())?;
            if fd.id().map_err(|e| e.to_string())? == host {
                return Err(format!("the {k} stand-in is this machine's namespace"));
            }
        }
        Ok(())
    }
}

/// The hostname the scenario gives the initial UTS namespace, if any.
fn initial_hostname(w: &World) -> Option<&str> {
    w.typed_namespaces()
        .find(|(r, n)| n.kind == NsType::Uts && w.is_initial_typed(*r))
        .and_then(|(_, n)| n.hostname.as_deref())
}

/// Whether the namespace of type `k` of process `pid` is this machine's own (the test
/// process's): an operation there would change the host.
pub fn is_host_ns(pid: i32, k: &str) -> bool {
    let id = |p: String| {
        UserNsFd::open_path(Path::new(&p))
            .ok()
            .and_then(|f| f.id().ok())
    };
    let theirs = id(format!("/proc/{pid}/ns/{k}"));
    theirs.is_none() || theirs == id(format!("/proc/self/ns/{k}"))
}
