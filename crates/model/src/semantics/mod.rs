//! Semantics you can switch: mainline Linux, plus the rule changes of designs that were proposed
//! on the mailing lists and never merged (the seeds under `../shared/seeds`, described in
//! `docs/semantics.md`).
//!
//! A proposal is a set of rule changes in its own module. Each implements [`Rules`], whose
//! methods are the narrow hook points where a kernel rule it changes lives (capability over a
//! namespace, the permission of an inode, the set-id owner at exec, the uid match of a signal,
//! the permission of a key, the keyrings `request_key` searches, the numbering the VFS sees).
//! Every method defaults to "not mine": mainline decides. The rule sites of the model ask the
//! world's [`Semantics`] once (`World::proposal`), and the first active proposal that answers
//! decides. No proposal is active unless a scenario names it.
//!
//! The declarations a proposal needs (CAP_HOST_ADMIN, keychains, fsid maps, inode namespaces,
//! key ACLs, containers) live in [`Declarations`], kept beside the world and read only by the
//! proposals.

use std::collections::BTreeMap;

use credns_idmap::{IdMap, Kgid, Kuid};

use crate::caps::Cap;
use crate::keys::{KeyNeed, KeyRef, KeyType};
use crate::outcome::Tracer;
use crate::vfs::Check;
use crate::world::{Cred, InodeRef, Mount, MountRef, NsRef, TaskRef, World};

mod container;
mod fsid_map;
mod host_admin;
mod inode_userns;
mod isolated_userns;
mod key_acl;
mod keychain;

pub(crate) use isolated_userns::{band_map, is_full_range};
pub use isolated_userns::{ISOLATED_BAND, ISOLATED_BASE, ISOLATED_MAX};
pub use key_acl::{Ace, AceSubject, KEY_ACL_CLEAR, KEY_ACL_INVAL, KEY_ACL_JOIN, KEY_ACL_REVOKE};

/// One proposal (or mainline).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proposal {
    /// Seed 001 §1–2, §6: CAP_HOST_ADMIN as a mask over namespace-local capabilities.
    HostAdmin,
    /// Seed 001 §4 with seed 000's file rules: inodes belong to a user namespace.
    InodeUserns,
    /// Seed 001 §4–5 and seed 000: credentials of other namespaces held in a keychain.
    Keychain,
    /// Seed 002 (3): key ACLs.
    KeyAcl,
    /// Seed 002 (4): a kernel container object with a keyring and upcall interception.
    Container,
    /// Seed 003: fsid mappings distinct from id mappings.
    FsidMap,
    /// Seed 004: isolated user namespaces with kernel ids of their own.
    IsolatedUserns,
}

impl Proposal {
    /// Every proposal the model knows, in the order their rules are consulted.
    pub const ALL: [Proposal; 7] = [
        Proposal::HostAdmin,
        Proposal::InodeUserns,
        Proposal::Keychain,
        Proposal::KeyAcl,
        Proposal::Container,
        Proposal::FsidMap,
        Proposal::IsolatedUserns,
    ];

    /// The name used in scenario files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Proposal::HostAdmin => "host_admin",
            Proposal::InodeUserns => "inode_userns",
            Proposal::Keychain => "keychain",
            Proposal::KeyAcl => "key_acl",
            Proposal::Container => "container",
            Proposal::FsidMap => "fsid_map",
            Proposal::IsolatedUserns => "isolated_userns",
        }
    }

    /// The proposal a name means.
    pub fn parse(s: &str) -> Option<Proposal> {
        Proposal::ALL.into_iter().find(|p| p.name() == s.trim())
    }

    /// The proposals whose rules this one's rules are written in terms of.
    pub fn needs(self) -> &'static [Proposal] {
        match self {
            // Step 4's "inode->i_uid is in current's keychain" is a line of inode_userns's
            // access algorithm.
            Proposal::Keychain => &[Proposal::InodeUserns],
            _ => &[],
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    fn rules(self) -> &'static dyn Rules {
        match self {
            Proposal::HostAdmin => &host_admin::HostAdmin,
            Proposal::InodeUserns => &inode_userns::InodeUserns,
            Proposal::Keychain => &keychain::Keychain,
            Proposal::KeyAcl => &key_acl::KeyAcl,
            Proposal::Container => &container::Container,
            Proposal::FsidMap => &fsid_map::FsidMap,
            Proposal::IsolatedUserns => &isolated_userns::IsolatedUserns,
        }
    }
}

impl std::fmt::Display for Proposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A semantics: mainline plus a set of proposals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Semantics(u8);

impl Semantics {
    /// Mainline Linux: no proposal.
    pub const MAINLINE: Semantics = Semantics(0);

    /// Mainline plus `p`.
    pub fn with(self, p: Proposal) -> Semantics {
        Semantics(self.0 | p.bit())
    }

    /// Whether `p` is active.
    pub fn has(self, p: Proposal) -> bool {
        self.0 & p.bit() != 0
    }

    /// Whether this is plain mainline.
    pub fn is_mainline(self) -> bool {
        self.0 == 0
    }

    /// The active proposals, in rule order.
    pub fn proposals(self) -> impl Iterator<Item = Proposal> {
        Proposal::ALL.into_iter().filter(move |p| self.has(*p))
    }

    /// Parse one name (`mainline` or a proposal) and add it; the error says what is wrong.
    pub fn add_name(self, name: &str) -> Result<Semantics, String> {
        let n = name.trim();
        if n == "mainline" {
            return Ok(self);
        }
        if let Some(p) = Proposal::parse(n) {
            return Ok(self.with(p));
        }
        let known: Vec<&str> = std::iter::once("mainline")
            .chain(Proposal::ALL.iter().map(|p| p.name()))
            .collect();
        Err(format!(
            "unknown semantics \"{n}\" (known: {})",
            known.join(", ")
        ))
    }

    /// Every proposal another one needs must be there too.
    pub fn check_needs(self) -> Result<(), String> {
        for p in self.proposals() {
            for n in p.needs() {
                if !self.has(*n) {
                    return Err(format!(
                        "semantics \"{p}\" adds a line to the rules of \"{n}\": name \"{n}\" too"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Parse `"mainline"`, `"host_admin"` or a `+`-joined combination such as
    /// `"host_admin+inode_userns"` (the form `credns sim --compare` takes).
    pub fn parse(s: &str) -> Result<Semantics, String> {
        let mut sem = Semantics::MAINLINE;
        for part in s.split('+') {
            sem = sem.add_name(part)?;
        }
        sem.check_needs()?;
        Ok(sem)
    }
}

impl std::fmt::Display for Semantics {
    /// `mainline` or `host_admin+inode_userns`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_mainline() {
            return f.write_str("mainline");
        }
        let names: Vec<&str> = self.proposals().map(|p| p.name()).collect();
        f.write_str(&names.join("+"))
    }
}

/// A kernel container object (seed 002 (4)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerObj {
    /// Its name.
    pub name: String,
    /// The container keyring, if one was set (`KEYCTL_SET_CONTAINER_KEYRING`).
    pub keyring: Option<KeyRef>,
    /// Upcall interception filters in the order they are tried: a key type (or `*`, kept
    /// after the specific ones) and the keyring the authorisation key is linked into.
    pub intercept: Vec<(String, KeyRef)>,
}

/// The fs maps of a namespace (seed 003), in kernel form like `UserNs::uid_map`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsidMaps {
    /// `fsuid_map`.
    pub uid: IdMap,
    /// `fsgid_map`.
    pub gid: IdMap,
}

/// What the proposals' rules read that mainline has no place for.
#[derive(Clone, Debug, Default)]
pub struct Declarations {
    /// `inode->user_ns` where it is not the superblock's namespace.
    pub inode_ns: BTreeMap<InodeRef, NsRef>,
    /// The fs maps of namespaces that have them, or whose ancestors do.
    pub fsid: BTreeMap<NsRef, FsidMaps>,
    /// Key ACLs declared or set; other keys' ACLs are derived from their masks.
    pub key_acl: BTreeMap<KeyRef, Vec<Ace>>,
    /// Container objects.
    pub containers: Vec<ContainerObj>,
    /// Which container each denizen belongs to (an index into `containers`).
    pub task_container: BTreeMap<TaskRef, usize>,
    /// Isolated namespaces; the i-th owns kernel ids `ISOLATED_BASE + i * ISOLATED_BAND ..`.
    pub isolated: Vec<NsRef>,
}

/// What `request_key` found in a place the mainline search does not look.
pub(crate) enum Found {
    Key(KeyRef),
    /// The upcall was diverted: the authorisation key went to this keyring.
    Intercepted(KeyRef),
}

/// The rules a proposal changes. Every method answers `None` when the proposal does not
/// change that rule; mainline then decides.
#[allow(unused_variables)]
pub(crate) trait Rules: Sync {
    /// `cap_capable(cred, target_ns, cap)`.
    fn cap_capable(
        &self,
        w: &World,
        t: &mut Tracer,
        cred: &Cred,
        target: NsRef,
        cap: Cap,
    ) -> Option<bool> {
        None
    }

    /// The uid part of `kill_ok_by_cred`: do sender and target count as the same user?
    fn kill_ids_match(&self, w: &World, t: &mut Tracer, c: &Cred, tc: &Cred) -> Option<bool> {
        None
    }

    /// `generic_permission` of an inode (after the write checks of `inode_permission`).
    fn inode_permission(
        &self,
        w: &World,
        t: &mut Tracer,
        cred: &Cred,
        m: MountRef,
        ino: InodeRef,
        mask: u32,
    ) -> Option<Check> {
        None
    }

    /// The owner and group a set-id file gives at exec (`bprm_fill_uid`), or `Some(None)`
    /// when the set-id bits are ignored.
    fn setid_ids(
        &self,
        w: &World,
        t: &mut Tracer,
        old: &Cred,
        mnt: &Mount,
        ino: InodeRef,
    ) -> Option<Option<(Kuid, Kgid)>> {
        None
    }

    /// `key_task_permission`.
    fn key_permission(
        &self,
        w: &World,
        t: &mut Tracer,
        task: TaskRef,
        k: KeyRef,
        possessed: bool,
        need: KeyNeed,
    ) -> Option<bool> {
        None
    }

    /// Whether kernel id `k` has no mapping in `ns` whatever its maps say (`make_kuid`,
    /// `from_kuid` and their gid forms).
    fn id_hidden(&self, w: &World, ns: NsRef, k: u32) -> Option<bool> {
        None
    }

    /// A write of `text` to the uid or gid map of `ns` by `cred` (`map_write`): the kernel
    /// form of the map, or the refusal.
    fn write_map(
        &self,
        w: &World,
        t: &mut Tracer,
        cred: &Cred,
        ns: NsRef,
        uid: bool,
        text: &str,
    ) -> Option<Result<IdMap, crate::vfs::Stop>> {
        None
    }

    /// `request_key` after the thread, process and session keyrings found nothing.
    fn request_key_more(
        &self,
        w: &World,
        t: &mut Tracer,
        task: TaskRef,
        ktype: KeyType,
        description: &str,
        upcall: bool,
    ) -> Option<Found> {
        None
    }

    /// The world the VFS sees for `task`'s filesystem operation, if not the world itself.
    fn vfs_view(&self, w: &World, task: TaskRef) -> Option<World> {
        None
    }

    /// Apply a filesystem operation's effects, decided on `view`, to `w`.
    fn vfs_merge(&self, w: &mut World, view: World, task: TaskRef) {}

    /// An inode was created by `cred`.
    fn inode_created(&self, w: &mut World, ino: InodeRef, cred: &Cred) {}

    /// The user keyring `ur` of (`ns`, `kuid`) was just created (`look_up_user_keyrings`).
    fn user_keyring_created(
        &self,
        w: &mut World,
        t: &mut Tracer,
        ns: NsRef,
        kuid: Kuid,
        ur: KeyRef,
    ) {
    }
}

impl World {
    /// The semantics the world's rules follow.
    pub fn semantics(&self) -> Semantics {
        self.semantics
    }

    /// Follow `sem` from now on.
    pub fn set_semantics(&mut self, sem: Semantics) {
        self.semantics = sem;
    }

    /// The proposals' declarations.
    pub fn declarations(&self) -> &Declarations {
        &self.decl
    }

    /// The proposals' declarations, mutably (to build a world).
    pub fn declarations_mut(&mut self) -> &mut Declarations {
        &mut self.decl
    }

    /// Ask each active proposal in turn; the first answer decides. `None`: mainline decides.
    #[inline]
    pub(crate) fn proposal<R>(&self, mut ask: impl FnMut(&dyn Rules) -> Option<R>) -> Option<R> {
        if self.semantics.is_mainline() {
            return None;
        }
        self.semantics.proposals().find_map(|p| ask(p.rules()))
    }

    /// Tell every active proposal about a change (`inode_created`, `user_keyring_created`).
    pub(crate) fn proposals_notify(&mut self, mut tell: impl FnMut(&dyn Rules, &mut World)) {
        if self.semantics.is_mainline() {
            return;
        }
        for p in self.semantics.proposals() {
            tell(p.rules(), self);
        }
    }

    /// Whether an active proposal hides kernel id `k` from namespace `ns` (isolated_userns).
    #[inline]
    pub(crate) fn id_hidden(&self, ns: NsRef, k: u32) -> bool {
        !self.decl.isolated.is_empty()
            && self.proposal(|p| p.id_hidden(self, ns, k)).unwrap_or(false)
    }

    /// The namespace an inode belongs to under inode_userns: declared or recorded at its
    /// creation, else its superblock's.
    pub fn inode_userns(&self, ino: InodeRef) -> NsRef {
        self.decl
            .inode_ns
            .get(&ino)
            .copied()
            .unwrap_or_else(|| self.sb(self.inode(ino).sb).user_ns)
    }
}

impl World {
    /// The world the VFS sees for `task` under an active proposal that changes it (fsid
    /// maps), for questions that change nothing (`decide_access`).
    pub(crate) fn vfs_view_of(&self, task: TaskRef) -> Option<World> {
        if self.semantics.is_mainline() {
            return None;
        }
        self.semantics
            .proposals()
            .find_map(|p| p.rules().vfs_view(self, task))
    }

    /// A filesystem operation decided in the view an active proposal gives the VFS (fsid
    /// maps), its effects brought back. `None`: no proposal changes what the VFS sees.
    pub(crate) fn dispatch_in_vfs_view(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        op: &crate::ops::Op,
    ) -> Option<Result<Option<crate::outcome::Output>, crate::vfs::Stop>> {
        if self.semantics.is_mainline() {
            return None;
        }
        let (rules, mut view) = self
            .semantics
            .proposals()
            .find_map(|p| p.rules().vfs_view(self, task).map(|v| (p.rules(), v)))?;
        let c = &view.task(task).cred;
        tr!(t.info(
            "fsid_map:vfs",
            "[003] the filesystem sees the ids through the fsid maps",
            vec![
                ("fsuid", c.fsuid.0.to_string()),
                ("fsgid", c.fsgid.0.to_string()),
            ],
        ));
        let r = view.dispatch_op(t, task, op);
        rules.vfs_merge(self, view, task);
        Some(r)
    }
}
