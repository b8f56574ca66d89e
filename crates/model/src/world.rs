//! The modelled system: the user-namespace tree, tasks with credentials, superblocks,
//! mounts and inodes. Built with the `add_*` methods, queried with [`World::op`].

use std::collections::BTreeMap;

use credns_idmap::{IdMap, Kgid, Kuid, OVERFLOW_ID};
use serde::Serialize;

use crate::caps::CapSet;
use crate::Error;

macro_rules! handle {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(pub(crate) usize);

        impl $name {
            /// The index of the object in its table.
            pub fn index(self) -> usize {
                self.0
            }
        }
    };
}

handle!(
    /// A user namespace of a [`World`]; `NsRef` 0 is the initial namespace.
    NsRef
);
handle!(
    /// A task (a single-threaded process) of a [`World`].
    TaskRef
);
handle!(
    /// A superblock (a mounted filesystem instance) of a [`World`].
    SbRef
);
handle!(
    /// A mount of a [`World`].
    MountRef
);
handle!(
    /// An inode of a [`World`].
    InodeRef
);

/// A user namespace (`struct user_namespace`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserNs {
    /// Name used in scenarios and traces.
    pub name: String,
    /// The parent; `None` only for the initial namespace.
    pub parent: Option<NsRef>,
    /// Nesting level: 0 for the initial namespace.
    pub level: u32,
    /// The creator's effective uid (`owner`).
    pub owner: Kuid,
    /// The creator's effective gid (`group`).
    pub group: Kgid,
    /// The uid map in kernel form (lower ids are kernel ids); empty until written.
    pub uid_map: IdMap,
    /// The gid map in kernel form.
    pub gid_map: IdMap,
    /// `USERNS_SETGROUPS_ALLOWED` ("allow" in /proc/PID/setgroups).
    pub setgroups_allowed: bool,
    /// The creator had CAP_SETFCAP in its effective set (5.12+).
    pub parent_could_setfcap: bool,
}

/// A task's credentials (`struct cred`). Every id is a kernel id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cred {
    /// Real uid.
    pub uid: Kuid,
    /// Effective uid.
    pub euid: Kuid,
    /// Saved uid.
    pub suid: Kuid,
    /// Filesystem uid.
    pub fsuid: Kuid,
    /// Real gid.
    pub gid: Kgid,
    /// Effective gid.
    pub egid: Kgid,
    /// Saved gid.
    pub sgid: Kgid,
    /// Filesystem gid.
    pub fsgid: Kgid,
    /// Supplementary groups, sorted (`group_info`).
    pub groups: Vec<Kgid>,
    /// Inheritable set.
    pub cap_inheritable: CapSet,
    /// Permitted set.
    pub cap_permitted: CapSet,
    /// Effective set.
    pub cap_effective: CapSet,
    /// Bounding set.
    pub cap_bset: CapSet,
    /// Ambient set.
    pub cap_ambient: CapSet,
    /// Securebits (`SECURE_NOROOT` = bit 0, `SECURE_NO_SETUID_FIXUP` = bit 2, `SECURE_KEEP_CAPS` = bit 4, …).
    pub securebits: u32,
    /// The namespace the credentials belong to.
    pub user_ns: NsRef,
    /// CAP_HOST_ADMIN is in both the effective set and the per-process cap_bset (seed 001,
    /// semantics `host_admin`; mainline has no such capability and never reads this).
    pub host_admin: bool,
    /// Credentials as users of other namespaces, (namespace, uid there) (seed 001 §5,
    /// semantics `keychain`; mainline never reads this).
    pub keychain: Vec<(NsRef, u32)>,
}

/// `SECURE_NOROOT`.
pub const SECURE_NOROOT: u32 = 0;
/// `SECURE_NO_SETUID_FIXUP`.
pub const SECURE_NO_SETUID_FIXUP: u32 = 2;
/// `SECURE_KEEP_CAPS`.
pub const SECURE_KEEP_CAPS: u32 = 4;

impl Cred {
    /// Credentials with every id set to `uid`/`gid`, no supplementary groups, a full bounding
    /// set and the given permitted/effective sets.
    pub fn new(user_ns: NsRef, uid: Kuid, gid: Kgid, caps: CapSet) -> Cred {
        Cred {
            uid,
            euid: uid,
            suid: uid,
            fsuid: uid,
            gid,
            egid: gid,
            sgid: gid,
            fsgid: gid,
            groups: Vec::new(),
            cap_inheritable: CapSet::EMPTY,
            cap_permitted: caps,
            cap_effective: caps,
            cap_bset: CapSet::FULL,
            cap_ambient: CapSet::EMPTY,
            securebits: 0,
            user_ns,
            host_admin: false,
            keychain: Vec::new(),
        }
    }

    /// Whether securebit `bit` is set (`issecure`).
    pub fn issecure(&self, bit: u32) -> bool {
        self.securebits & (1 << bit) != 0
    }
}

/// A task: credentials plus the process state the modelled rules read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    /// Name used in scenarios and traces.
    pub name: String,
    /// Credentials.
    pub cred: Cred,
    /// `PR_SET_NO_NEW_PRIVS`.
    pub no_new_privs: bool,
    /// The file-creation mask.
    pub umask: u32,
    /// Its root is not the root of its mount namespace (`current_chrooted`).
    pub chrooted: bool,
    /// More than one thread in its thread group.
    pub multithreaded: bool,
    /// Its `fs_struct` is shared with another task (`fs->users != 1`).
    pub shared_fs: bool,
    /// `get_dumpable(mm) == SUID_DUMP_USER`.
    pub dumpable: bool,
    /// `mm->user_ns`: the namespace its address space was created for (at its last exec).
    pub mm_user_ns: NsRef,
    /// Session id, if known (for the SIGCONT rule of `check_kill_permission`).
    pub session: Option<u32>,
    /// Its thread, process and session keyrings.
    pub keyrings: crate::keys::TaskKeyrings,
}

/// How an inode's type is stored in `i_mode`.
pub const S_IFMT: u32 = 0o170000;
/// Directory.
pub const S_IFDIR: u32 = 0o040000;
/// Regular file.
pub const S_IFREG: u32 = 0o100000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120000;
/// Set-user-id.
pub const S_ISUID: u32 = 0o4000;
/// Set-group-id.
pub const S_ISGID: u32 = 0o2000;
/// Sticky.
pub const S_ISVTX: u32 = 0o1000;
/// Group execute.
pub const S_IXGRP: u32 = 0o010;
/// Group rwx.
pub const S_IRWXG: u32 = 0o070;
/// Any execute bit.
pub const S_IXUGO: u32 = 0o111;

/// A POSIX ACL entry tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AclTag {
    /// `user::` (`ACL_USER_OBJ`).
    UserObj,
    /// `user:ID:` (`ACL_USER`).
    User,
    /// `group::` (`ACL_GROUP_OBJ`).
    GroupObj,
    /// `group:ID:` (`ACL_GROUP`).
    Group,
    /// `mask::` (`ACL_MASK`).
    Mask,
    /// `other::` (`ACL_OTHER`).
    Other,
}

/// One ACL entry as the kernel holds it in memory: ids are kernel ids (`e_uid`/`e_gid`,
/// converted from the filesystem's numbering with `make_kuid(s_user_ns, …)` when read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AclEntry {
    /// The tag.
    pub tag: AclTag,
    /// The kernel id for `User`/`Group` entries (a kuid or kgid value).
    pub id: Option<u32>,
    /// Permission bits: 4 read, 2 write, 1 execute.
    pub perm: u32,
}

/// An access ACL, entries sorted as the kernel keeps them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl(pub Vec<AclEntry>);

impl Acl {
    /// The entry with `tag` (first one).
    pub fn entry(&self, tag: AclTag) -> Option<&AclEntry> {
        self.0.iter().find(|e| e.tag == tag)
    }

    /// Whether the ACL only has the three base entries (then the kernel stores no ACL).
    pub fn is_minimal(&self) -> bool {
        self.0
            .iter()
            .all(|e| matches!(e.tag, AclTag::UserObj | AclTag::GroupObj | AclTag::Other))
    }

    /// The mode permission bits the kernel derives from the ACL (`posix_acl_equiv_mode`):
    /// owner from `user::`, group from `mask::` (else `group::`), other from `other::`.
    pub fn mode_bits(&self) -> u32 {
        let p = |t| self.entry(t).map(|e| e.perm).unwrap_or(0);
        let group = self
            .entry(AclTag::Mask)
            .map(|e| e.perm)
            .unwrap_or_else(|| p(AclTag::GroupObj));
        (p(AclTag::UserObj) << 6) | (group << 3) | p(AclTag::Other)
    }
}

/// An inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inode {
    /// Its superblock.
    pub sb: SbRef,
    /// Owner (`i_uid`), a kernel id.
    pub uid: Kuid,
    /// Group (`i_gid`), a kernel id.
    pub gid: Kgid,
    /// `i_mode`, with the type bits.
    pub mode: u32,
    /// The access ACL, if any (never a minimal one).
    pub acl: Option<Acl>,
    /// `S_IMMUTABLE`.
    pub immutable: bool,
    /// Directory entries, for directories.
    pub children: BTreeMap<String, InodeRef>,
    /// `S_APPEND` (`FS_APPEND_FL`).
    pub append_only: bool,
    /// The default ACL of a directory (`system.posix_acl_default`), ids as kernel ids.
    pub default_acl: Option<Acl>,
    /// `security.capability`, as stored.
    pub fscaps: Option<FileCaps>,
    /// A symbolic link's target text (`i_link`), as `symlink` stored it.
    pub link: Option<String>,
    /// `i_size`, as far as the rules need it: 0 for a file that holds nothing (every file an
    /// op makes, and a scenario's file without an execute bit), the length of the last
    /// truncate; a scenario's file with an execute bit holds a program (the executor copies one
    /// there) and counts as non-empty (1). A file of size 0 has no data extents.
    pub size: i64,
}

/// A `security.capability` value as the filesystem stores it (`vfs_cap_data` or, for
/// revision 3, `vfs_ns_cap_data`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileCaps {
    /// 2 (`VFS_CAP_REVISION_2`) or 3 (`VFS_CAP_REVISION_3`).
    pub version: u32,
    /// The root id of a revision 3 value, in the filesystem's numbering (0 for revision 2).
    pub rootid: u32,
    /// Permitted set.
    pub permitted: crate::caps::CapSet,
    /// Inheritable set.
    pub inheritable: crate::caps::CapSet,
    /// `VFS_CAP_FLAGS_EFFECTIVE`.
    pub effective: bool,
}

impl Inode {
    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }
    /// Whether it is a regular file.
    pub fn is_reg(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }
    /// Whether it is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.mode & S_IFMT == S_IFLNK
    }
}

/// A superblock: one instance of a filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuperBlock {
    /// Name used in scenarios and traces.
    pub name: String,
    /// Filesystem type (`ext4`, `tmpfs`, …), fixed by [`World::add_superblock`]. Types with
    /// their own `->permission` are answered `Unknown`.
    pub fs_type: String,
    /// `fs_type` decides by `generic_permission` (asked on every inode walked, so kept here).
    pub(crate) generic_permission: bool,
    /// `s_user_ns`: the namespace the on-disk ids are relative to.
    pub user_ns: NsRef,
    /// `SB_RDONLY`.
    pub read_only: bool,
    /// `SB_POSIXACL`.
    pub posix_acl: bool,
    /// The root directory.
    pub root: InodeRef,
}

/// The idmap of a mount (`struct mnt_idmap`).
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MntIdmap {
    /// `nop_mnt_idmap`: not idmapped.
    Nop,
    /// A copy of a user namespace's maps taken when the mount was idmapped.
    Mapped {
        /// The namespace the maps were copied from (for traces).
        from: NsRef,
        /// Its uid map (kernel form).
        uid_map: IdMap,
        /// Its gid map (kernel form).
        gid_map: IdMap,
    },
}

/// A mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted (absolute, normalised).
    pub path: String,
    /// The superblock.
    pub sb: SbRef,
    /// The directory of the superblock shown at `path` (its root, or a subtree for a bind mount).
    pub root: InodeRef,
    /// The idmap.
    pub idmap: MntIdmap,
    /// `MNT_NOSUID`.
    pub nosuid: bool,
    /// `MNT_NOEXEC`.
    pub noexec: bool,
    /// `MNT_READONLY`.
    pub read_only: bool,
}

/// Mount options for [`World::add_mount`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountOptions {
    /// Idmap the mount with this namespace's maps (a copy is taken now).
    pub idmap: Option<NsRef>,
    /// `nosuid`.
    pub nosuid: bool,
    /// `noexec`.
    pub noexec: bool,
    /// `ro`.
    pub read_only: bool,
    /// Bind a subtree (a path inside the filesystem, `/` for its root).
    pub subdir: Option<String>,
}

/// An index of mount points for the path walk (the model's `__lookup_mnt`): the topmost mount
/// at `/`, and a mask of the lengths of every mount point's path (bit `min(len, 127)`), so a
/// component whose prefix has no mount point's length costs no string comparison.
#[derive(Clone, Debug, Default)]
pub(crate) struct MountPoints {
    root: Option<MountRef>,
    lens: u128,
}

impl MountPoints {
    fn len_bit(len: usize) -> u128 {
        1u128 << len.min(127)
    }
}

/// The whole modelled system.
#[derive(Clone, Debug)]
pub struct World {
    pub(crate) namespaces: Vec<UserNs>,
    pub(crate) tasks: Vec<Task>,
    pub(crate) superblocks: Vec<SuperBlock>,
    pub(crate) mounts: Vec<Mount>,
    /// Where the mounts are, kept with `mounts` by [`World::add_mount`].
    pub(crate) mount_points: MountPoints,
    pub(crate) inodes: Vec<Inode>,
    /// Bumped by every change that can change what a path names (a new inode or mount, or
    /// an inode handed out mutably), so a kept resolution knows when it is stale.
    pub(crate) generation: u64,
    pub(crate) keys: crate::keys::KeyStore,
    /// `kernel.overflowuid`.
    pub overflowuid: u32,
    /// `kernel.overflowgid`.
    pub overflowgid: u32,
    /// `fs.suid_dumpable` (0, 1 or 2): the dumpable value after a credential change.
    pub suid_dumpable: u32,
    /// The rules followed: mainline unless a scenario names proposals.
    pub(crate) semantics: crate::semantics::Semantics,
    /// What the proposals' rules read.
    pub(crate) decl: crate::semantics::Declarations,
    /// `fs.protected_hardlinks`, `_symlinks`, `_regular`, `_fifos`.
    pub protected: crate::ops::Protected,
    /// Connected sockets made by `connect` ops, with the peer credentials they recorded.
    pub(crate) connections: Vec<crate::ops::Connection>,
    /// The namespaces of the other seven types and who is in which.
    pub(crate) nstypes: crate::ops::NsTypes,
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}

/// Filesystem types whose inodes use `generic_permission` (no `->permission` of their own).
pub const GENERIC_PERMISSION_FS: &[&str] = &[
    "ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "ramfs", "f2fs", "vfat", "erofs", "squashfs",
];

/// Whether a filesystem of this type decides permissions by `generic_permission` (it is in
/// [`GENERIC_PERMISSION_FS`]); a `match` rather than a scan of the list, as it is asked on
/// every inode of every path walked.
pub(crate) fn uses_generic_permission(fs_type: &str) -> bool {
    matches!(
        fs_type,
        "ext2"
            | "ext3"
            | "ext4"
            | "xfs"
            | "btrfs"
            | "tmpfs"
            | "ramfs"
            | "f2fs"
            | "vfat"
            | "erofs"
            | "squashfs"
    )
}

/// Filesystem types that may be idmapped (`FS_ALLOW_IDMAP`; `can_idmap_mount` refuses others
/// with EINVAL). tmpfs, ext4, btrfs and xfs are checked against the kernel (and proc, sysfs,
/// ramfs and overlay refused); the others are from the kernel sources.
pub const FS_ALLOW_IDMAP: &[&str] = &[
    "ext2",
    "ext3",
    "ext4",
    "xfs",
    "btrfs",
    "tmpfs",
    "f2fs",
    "vfat",
    "msdos",
    "erofs",
    "squashfs",
    "hugetlbfs",
];

/// Split an absolute path into components; `None` if it is not absolute or has `.`/`..`.
pub fn path_components(path: &str) -> Option<Vec<&str>> {
    let rest = path.strip_prefix('/')?;
    let comps: Vec<&str> = rest.split('/').filter(|c| !c.is_empty()).collect();
    if comps.iter().any(|c| *c == "." || *c == "..") {
        return None;
    }
    Some(comps)
}

/// Whether `path` is already normal: absolute, no empty, `.` or `..` component, no trailing
/// `/` (but for `/` itself), so that `normalise(path)` would return it unchanged.
pub(crate) fn is_normal_path(path: &str) -> bool {
    let b = path.as_bytes();
    if b == b"/" {
        return true;
    }
    if b.first() != Some(&b'/') || b.last() == Some(&b'/') {
        return false;
    }
    // Every component starts after a '/': none may be empty, "." or "..".
    b.iter().enumerate().all(|(i, &c)| {
        c != b'/'
            || !matches!(
                &b[i + 1..],
                [b'/', ..] | [b'.', b'/', ..] | [b'.'] | [b'.', b'.', b'/', ..] | [b'.', b'.']
            )
    })
}

/// Normalise an absolute path (`//a/b/` → `/a/b`).
pub fn normalise(path: &str) -> Option<String> {
    let comps = path_components(path)?;
    Some(format!("/{}", comps.join("/")))
}

impl World {
    /// A world with only the initial user namespace (named `init`).
    pub fn new() -> World {
        World {
            namespaces: vec![UserNs {
                name: "init".into(),
                parent: None,
                level: 0,
                owner: Kuid(0),
                group: Kgid(0),
                uid_map: IdMap::identity(),
                gid_map: IdMap::identity(),
                setgroups_allowed: true,
                parent_could_setfcap: true,
            }],
            tasks: Vec::new(),
            superblocks: Vec::new(),
            mounts: Vec::new(),
            mount_points: MountPoints::default(),
            inodes: Vec::new(),
            generation: 0,
            keys: Default::default(),
            overflowuid: OVERFLOW_ID,
            overflowgid: OVERFLOW_ID,
            suid_dumpable: 0,
            semantics: Default::default(),
            decl: Default::default(),
            protected: Default::default(),
            connections: Vec::new(),
            nstypes: Default::default(),
        }
    }

    /// The initial user namespace.
    pub fn init_ns(&self) -> NsRef {
        NsRef(0)
    }

    /// A namespace.
    pub fn ns(&self, r: NsRef) -> &UserNs {
        &self.namespaces[r.0]
    }

    /// A task.
    pub fn task(&self, r: TaskRef) -> &Task {
        &self.tasks[r.0]
    }

    /// A task, mutably (to adjust credentials directly when building a world).
    pub fn task_mut(&mut self, r: TaskRef) -> &mut Task {
        &mut self.tasks[r.0]
    }

    /// A superblock.
    pub fn sb(&self, r: SbRef) -> &SuperBlock {
        &self.superblocks[r.0]
    }

    /// A mount.
    pub fn mount(&self, r: MountRef) -> &Mount {
        &self.mounts[r.0]
    }

    /// An inode.
    pub fn inode(&self, r: InodeRef) -> &Inode {
        &self.inodes[r.0]
    }

    /// Every namespace.
    pub fn namespaces(&self) -> impl Iterator<Item = (NsRef, &UserNs)> {
        self.namespaces
            .iter()
            .enumerate()
            .map(|(i, n)| (NsRef(i), n))
    }

    /// Every task.
    pub fn tasks(&self) -> impl Iterator<Item = (TaskRef, &Task)> {
        self.tasks.iter().enumerate().map(|(i, t)| (TaskRef(i), t))
    }

    /// Every mount, in the order they were made.
    pub fn mounts(&self) -> impl Iterator<Item = (MountRef, &Mount)> {
        self.mounts
            .iter()
            .enumerate()
            .map(|(i, m)| (MountRef(i), m))
    }

    /// The namespace called `name`.
    pub fn ns_by_name(&self, name: &str) -> Option<NsRef> {
        self.namespaces
            .iter()
            .position(|n| n.name == name)
            .map(NsRef)
    }

    /// The task called `name`.
    pub fn task_by_name(&self, name: &str) -> Option<TaskRef> {
        self.tasks.iter().position(|t| t.name == name).map(TaskRef)
    }

    /// The superblock called `name`.
    pub fn sb_by_name(&self, name: &str) -> Option<SbRef> {
        self.superblocks
            .iter()
            .position(|s| s.name == name)
            .map(SbRef)
    }

    // ---- id translation (kernel/user_namespace.c) ----

    /// `make_kuid`: a uid of `ns` as a kernel id (`Kuid::INVALID` if unmapped).
    pub fn make_kuid(&self, ns: NsRef, uid: u32) -> Kuid {
        self.ns(ns)
            .uid_map
            .map_down(uid)
            .filter(|k| !self.id_hidden(ns, *k))
            .map(Kuid)
            .unwrap_or(Kuid::INVALID)
    }

    /// `make_kgid`.
    pub fn make_kgid(&self, ns: NsRef, gid: u32) -> Kgid {
        self.ns(ns)
            .gid_map
            .map_down(gid)
            .filter(|k| !self.id_hidden(ns, *k))
            .map(Kgid)
            .unwrap_or(Kgid::INVALID)
    }

    /// `from_kuid`: `None` where the kernel returns -1.
    pub fn from_kuid(&self, ns: NsRef, k: Kuid) -> Option<u32> {
        if !k.is_valid() || self.id_hidden(ns, k.0) {
            return None;
        }
        self.ns(ns).uid_map.map_up(k.0)
    }

    /// `from_kgid`.
    pub fn from_kgid(&self, ns: NsRef, k: Kgid) -> Option<u32> {
        if !k.is_valid() || self.id_hidden(ns, k.0) {
            return None;
        }
        self.ns(ns).gid_map.map_up(k.0)
    }

    /// `from_kuid_munged`: unmapped shows as overflowuid.
    pub fn from_kuid_munged(&self, ns: NsRef, k: Kuid) -> u32 {
        self.from_kuid(ns, k).unwrap_or(self.overflowuid)
    }

    /// `from_kgid_munged`.
    pub fn from_kgid_munged(&self, ns: NsRef, k: Kgid) -> u32 {
        self.from_kgid(ns, k).unwrap_or(self.overflowgid)
    }

    /// `kuid_has_mapping`.
    pub fn kuid_has_mapping(&self, ns: NsRef, k: Kuid) -> bool {
        self.from_kuid(ns, k).is_some()
    }

    /// `kgid_has_mapping`.
    pub fn kgid_has_mapping(&self, ns: NsRef, k: Kgid) -> bool {
        self.from_kgid(ns, k).is_some()
    }

    /// Whether `ancestor` is `ns` or one of its ancestors (`in_userns(ancestor, ns)`).
    pub fn in_userns(&self, ancestor: NsRef, ns: NsRef) -> bool {
        let mut cur = ns;
        loop {
            if cur == ancestor {
                return true;
            }
            match self.ns(cur).parent {
                Some(p) => cur = p,
                None => return false,
            }
        }
    }

    /// A display form of a kernel uid: `k1000`, with the owning namespace's view for context.
    pub(crate) fn show_uid(&self, k: Kuid) -> String {
        if k.is_valid() {
            format!("kuid {}", k.0)
        } else {
            "INVALID".into()
        }
    }

    pub(crate) fn show_gid(&self, k: Kgid) -> String {
        if k.is_valid() {
            format!("kgid {}", k.0)
        } else {
            "INVALID".into()
        }
    }

    // ---- building ----

    /// Add a user namespace below `parent` with the given owner and group (the creator's
    /// euid and egid). Maps are empty; the setgroups flag is inherited from the parent.
    /// This is a declaration: none of `create_user_ns`'s checks are applied (use
    /// [`Op::UnshareUser`](crate::Op::UnshareUser) for that).
    pub fn add_userns(
        &mut self,
        name: &str,
        parent: NsRef,
        owner: Kuid,
        group: Kgid,
    ) -> Result<NsRef, Error> {
        if self.ns_by_name(name).is_some() {
            return Err(Error::Model(format!(
                "a namespace called \"{name}\" already exists"
            )));
        }
        let p = self.ns(parent).clone();
        self.namespaces.push(UserNs {
            name: name.into(),
            parent: Some(parent),
            level: p.level + 1,
            owner,
            group,
            uid_map: IdMap::empty(),
            gid_map: IdMap::empty(),
            setgroups_allowed: p.setgroups_allowed,
            parent_could_setfcap: false,
        });
        Ok(NsRef(self.namespaces.len() - 1))
    }

    /// Set a namespace's uid map from its write format (lower ids in the parent's numbering),
    /// composing it with the parent's map as the kernel does. No permission check.
    pub fn set_uid_map(&mut self, ns: NsRef, text: &str) -> Result<(), Error> {
        let kernel = self.compose_written(ns, text, true)?;
        self.namespaces[ns.0].uid_map = kernel;
        Ok(())
    }

    /// Set a namespace's gid map (see [`World::set_uid_map`]).
    pub fn set_gid_map(&mut self, ns: NsRef, text: &str) -> Result<(), Error> {
        let kernel = self.compose_written(ns, text, false)?;
        self.namespaces[ns.0].gid_map = kernel;
        Ok(())
    }

    fn compose_written(&self, ns: NsRef, text: &str, uid: bool) -> Result<IdMap, Error> {
        let n = self.ns(ns);
        let parent = n
            .parent
            .ok_or_else(|| Error::Model("the initial namespace's maps cannot be set".into()))?;
        let which = if uid { "uid" } else { "gid" };
        // map_write refuses a write of a page or more: no namespace can have such a map.
        if text.len() >= 4096 {
            return Err(Error::Model(format!(
                "{which} map of \"{}\" is {} bytes; the kernel takes a map of at most 4095 bytes in one write (map_write: EINVAL)",
                n.name,
                text.len()
            )));
        }
        let extents = credns_idmap::parse_write(text.as_bytes()).map_err(|e| {
            Error::Model(format!(
                "{which} map of \"{}\": {e} ({}: {})",
                n.name,
                e.kernel_function(),
                e.errno()
            ))
        })?;
        let written = IdMap::new(extents).map_err(|e| {
            Error::Model(format!(
                "{which} map of \"{}\": {e} (map_write: EINVAL)",
                n.name
            ))
        })?;
        let pmap = if uid {
            &self.ns(parent).uid_map
        } else {
            &self.ns(parent).gid_map
        };
        written.compose_strict(pmap).map_err(|e| {
            Error::Model(format!(
                "{which} map of \"{}\": {e} (map_write: EPERM)",
                n.name
            ))
        })
    }

    /// Set the setgroups flag ("allow" = true).
    pub fn set_setgroups(&mut self, ns: NsRef, allow: bool) {
        self.namespaces[ns.0].setgroups_allowed = allow;
    }

    /// Set `parent_could_setfcap`.
    pub fn set_parent_could_setfcap(&mut self, ns: NsRef, v: bool) {
        self.namespaces[ns.0].parent_could_setfcap = v;
    }

    /// The capability sets a task gets by default: as after an exec as `uid` with no file
    /// capabilities — full permitted and effective sets if `uid` is the root of `ns`
    /// (`make_kuid(ns, 0)`), none otherwise.
    pub fn default_caps(&self, ns: NsRef, uid: Kuid) -> CapSet {
        let root = self.make_kuid(ns, 0);
        if root.is_valid() && root == uid {
            CapSet::FULL
        } else {
            CapSet::EMPTY
        }
    }

    /// Add a task with the given credentials.
    pub fn add_task(&mut self, name: &str, cred: Cred) -> Result<TaskRef, Error> {
        if self.task_by_name(name).is_some() {
            return Err(Error::Model(format!(
                "a process called \"{name}\" already exists"
            )));
        }
        let mut cred = cred;
        cred.groups.sort();
        cred.groups.dedup();
        let ns = cred.user_ns;
        self.tasks.push(Task {
            name: name.into(),
            cred,
            no_new_privs: false,
            umask: 0o022,
            chrooted: false,
            multithreaded: false,
            shared_fs: false,
            dumpable: true,
            mm_user_ns: ns,
            session: None,
            keyrings: Default::default(),
        });
        Ok(TaskRef(self.tasks.len() - 1))
    }

    fn new_inode(&mut self, sb: SbRef, uid: Kuid, gid: Kgid, mode: u32) -> InodeRef {
        self.inodes.push(Inode {
            sb,
            uid,
            gid,
            mode,
            acl: None,
            immutable: false,
            children: BTreeMap::new(),
            append_only: false,
            default_acl: None,
            fscaps: None,
            link: None,
            size: 0,
        });
        InodeRef(self.inodes.len() - 1)
    }

    /// Add a superblock whose root directory has the given owner, group (kernel ids) and mode.
    pub fn add_superblock(
        &mut self,
        name: &str,
        fs_type: &str,
        user_ns: NsRef,
        root_uid: Kuid,
        root_gid: Kgid,
        root_mode: u32,
    ) -> Result<SbRef, Error> {
        if self.sb_by_name(name).is_some() {
            return Err(Error::Model(format!(
                "a filesystem called \"{name}\" already exists"
            )));
        }
        let sb = SbRef(self.superblocks.len());
        let root = self.new_inode(sb, root_uid, root_gid, S_IFDIR | (root_mode & 0o7777));
        self.superblocks.push(SuperBlock {
            name: name.into(),
            fs_type: fs_type.into(),
            generic_permission: uses_generic_permission(fs_type),
            user_ns,
            read_only: false,
            posix_acl: true,
            root,
        });
        Ok(sb)
    }

    /// A superblock, mutably (flags).
    pub fn sb_mut(&mut self, r: SbRef) -> &mut SuperBlock {
        &mut self.superblocks[r.0]
    }

    /// Mount `sb` at `path`. An idmapped mount copies the namespace's maps now.
    pub fn add_mount(
        &mut self,
        path: &str,
        sb: SbRef,
        opts: MountOptions,
    ) -> Result<MountRef, Error> {
        let path = normalise(path)
            .ok_or_else(|| Error::Model(format!("mount path \"{path}\" is not absolute")))?;
        let mut root = self.sb(sb).root;
        if let Some(sub) = &opts.subdir {
            let comps = path_components(sub)
                .ok_or_else(|| Error::Model(format!("subdir \"{sub}\" is not absolute")))?;
            for c in comps {
                root = *self.inode(root).children.get(c).ok_or_else(|| {
                    Error::Model(format!(
                        "subdir \"{sub}\" does not exist in filesystem \"{}\"",
                        self.sb(sb).name
                    ))
                })?;
            }
        }
        let idmap = match opts.idmap {
            None => MntIdmap::Nop,
            Some(_) if !FS_ALLOW_IDMAP.contains(&self.sb(sb).fs_type.as_str()) => {
                // can_idmap_mount: EINVAL for a type without FS_ALLOW_IDMAP.
                return Err(Error::Model(format!(
                    "filesystem {} does not support idmapped mounts (FS_ALLOW_IDMAP)",
                    self.sb(sb).fs_type
                )));
            }
            Some(ns) => MntIdmap::Mapped {
                from: ns,
                uid_map: self.ns(ns).uid_map.clone(),
                gid_map: self.ns(ns).gid_map.clone(),
            },
        };
        if path != "/" && self.mount_points.root.is_none() {
            return Err(Error::Model(format!(
                "mount at \"{path}\" before anything is mounted at \"/\""
            )));
        }
        let r = MountRef(self.mounts.len());
        if path == "/" {
            self.mount_points.root = Some(r);
        }
        self.mount_points.lens |= MountPoints::len_bit(path.len());
        self.generation += 1;
        self.mounts.push(Mount {
            path,
            sb,
            root,
            idmap,
            nosuid: opts.nosuid,
            noexec: opts.noexec,
            read_only: opts.read_only,
        });
        Ok(r)
    }

    /// The topmost mount at `/`.
    pub(crate) fn root_mount(&self) -> Option<MountRef> {
        self.mount_points.root
    }

    /// The topmost mount whose mount point is `path` (a normal path other than `/`).
    pub(crate) fn mount_at(&self, path: &str) -> Option<MountRef> {
        if self.mount_points.lens & MountPoints::len_bit(path.len()) == 0 {
            return None;
        }
        self.mounts
            .iter()
            .rposition(|m| m.path == path)
            .map(MountRef)
    }

    /// The mount whose path is the longest prefix of `path`, and the remaining components.
    fn mount_for(&self, path: &str) -> Option<(MountRef, Vec<String>)> {
        let comps = path_components(path)?;
        let mut best: Option<(MountRef, usize)> = None;
        for (i, m) in self.mounts.iter().enumerate() {
            let mc = path_components(&m.path)?;
            if mc.len() <= comps.len() && mc.iter().zip(&comps).all(|(a, b)| a == b) {
                match best {
                    Some((_, l)) if l > mc.len() => {}
                    _ => best = Some((MountRef(i), mc.len())),
                }
            }
        }
        let (m, l) = best?;
        Some((m, comps[l..].iter().map(|s| s.to_string()).collect()))
    }

    /// Add an inode at `path` (an absolute path through the mount tree) with owner and group as
    /// kernel ids. Missing parent directories are created with the filesystem root's owner,
    /// group and mode 0755. `dir` makes a directory. Permissions are not checked.
    pub fn add_inode(
        &mut self,
        path: &str,
        dir: bool,
        uid: Kuid,
        gid: Kgid,
        mode: u32,
    ) -> Result<InodeRef, Error> {
        let (m, rest) = self
            .mount_for(path)
            .ok_or_else(|| Error::Model(format!("no mount holds \"{path}\"")))?;
        if rest.is_empty() {
            return Err(Error::Model(format!(
                "\"{path}\" is a mount point; declare the filesystem root instead"
            )));
        }
        let sb = self.mount(m).sb;
        let root_ino = self.sb(sb).root;
        let (ruid, rgid) = (self.inode(root_ino).uid, self.inode(root_ino).gid);
        let mut cur = self.mount(m).root;
        for (i, c) in rest.iter().enumerate() {
            let last = i + 1 == rest.len();
            if !self.inode(cur).is_dir() {
                return Err(Error::Model(format!(
                    "a parent of \"{path}\" is not a directory"
                )));
            }
            match self.inode(cur).children.get(c).copied() {
                Some(next) if last => {
                    return Err(Error::Model(format!(
                        "\"{path}\" already exists (inode {})",
                        next.0
                    )));
                }
                Some(next) => cur = next,
                None => {
                    let new = if last {
                        let ty = if dir { S_IFDIR } else { S_IFREG };
                        self.new_inode(sb, uid, gid, ty | (mode & 0o7777))
                    } else {
                        self.new_inode(sb, ruid, rgid, S_IFDIR | 0o755)
                    };
                    self.inodes[cur.0].children.insert(c.clone(), new);
                    self.generation += 1;
                    cur = new;
                }
            }
        }
        Ok(cur)
    }

    /// An inode, mutably (flags, ACL).
    pub fn inode_mut(&mut self, r: InodeRef) -> &mut Inode {
        // The caller may change `children`.
        self.generation += 1;
        &mut self.inodes[r.0]
    }

    /// Set an inode's access ACL; the mode's permission bits follow the ACL as `setfacl`
    /// leaves them, and a minimal ACL is stored as no ACL.
    pub fn set_acl(&mut self, ino: InodeRef, acl: Acl) -> Result<(), Error> {
        validate_acl(&acl)?;
        let mut acl = acl;
        acl.0.sort_by_key(|e| (e.tag, e.id));
        let bits = acl.mode_bits();
        let inode = &mut self.inodes[ino.0];
        inode.mode = (inode.mode & !0o777) | bits;
        inode.acl = if acl.is_minimal() { None } else { Some(acl) };
        Ok(())
    }

    /// Find an inode by mount-tree path without permission checks.
    pub fn lookup_unchecked(&self, path: &str) -> Option<(MountRef, InodeRef)> {
        let comps = path_components(path)?;
        let mut m = self.root_mount()?;
        let mut cur = self.mount(m).root;
        let mut here = String::new();
        for c in comps {
            here = format!("{here}/{c}");
            if let Some(i) = self.mount_at(&here) {
                m = i;
                cur = self.mount(m).root;
                continue;
            }
            cur = *self.inode(cur).children.get(c)?;
        }
        Some((m, cur))
    }
}

/// `posix_acl_valid` (the parts that matter here): exactly one `user::`, `group::`, `other::`;
/// a `mask::` when there are named entries; no duplicate named ids.
pub fn validate_acl(acl: &Acl) -> Result<(), Error> {
    let count = |t| acl.0.iter().filter(|e| e.tag == t).count();
    for (t, n) in [
        (AclTag::UserObj, "user::"),
        (AclTag::GroupObj, "group::"),
        (AclTag::Other, "other::"),
    ] {
        if count(t) != 1 {
            return Err(Error::Model(format!("an ACL needs exactly one {n} entry")));
        }
    }
    if count(AclTag::Mask) > 1 {
        return Err(Error::Model("an ACL has at most one mask:: entry".into()));
    }
    let named = count(AclTag::User) + count(AclTag::Group);
    if named > 0 && count(AclTag::Mask) == 0 {
        return Err(Error::Model(
            "an ACL with named user or group entries needs a mask:: entry".into(),
        ));
    }
    for t in [AclTag::User, AclTag::Group] {
        let mut ids: Vec<u32> = acl
            .0
            .iter()
            .filter(|e| e.tag == t)
            .filter_map(|e| e.id)
            .collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        if ids.len() != n {
            return Err(Error::Model("an ACL names the same id twice".into()));
        }
    }
    if acl.0.iter().any(|e| e.perm > 7) {
        return Err(Error::Model("ACL permissions are rwx bits (0..=7)".into()));
    }
    Ok(())
}

#[cfg(test)]
mod fs_type_tests {
    use super::*;

    #[test]
    fn generic_permission_match_is_the_list() {
        for t in GENERIC_PERMISSION_FS {
            assert!(uses_generic_permission(t), "{t}");
        }
        for t in ["overlay", "nfs", "fuse", "proc", "EXT4", ""] {
            assert!(!uses_generic_permission(t), "{t}");
        }
    }
}
