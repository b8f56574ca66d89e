//! An exact, pure model of the Linux kernel's (mainline 6.x) permission decisions across user
//! namespaces.
//!
//! A [`World`] holds the user-namespace tree (with ID maps from [`credns_idmap`]), tasks with
//! full credentials ([`Cred`]: real/effective/saved/fs ids as kernel ids, supplementary
//! groups, the five capability sets, securebits), superblocks with their owning namespace,
//! mounts (optionally idmapped, `nosuid`, `noexec`, `ro`) and inodes with owner, group, mode
//! and POSIX access ACLs. [`World::op`] performs an [`Op`] as a task and returns an
//! [`Outcome`]: `Allowed`, `Denied(errno)` or `Unknown(reason)`, with a trace naming every
//! kernel rule consulted and every id translated. Successful operations change the world
//! (a `chown` changes the owner, a `setuid` the credentials, an `unshare` adds a namespace).
//! Kernel keys and keyrings ([`Key`], per-task [`TaskKeyrings`], per-namespace user keyrings)
//! are modelled with `add_key`/`keyctl` operations.
//!
//! Nothing here makes a syscall or does I/O; [`Scenario::parse`] only parses the text it is
//! given. The real kernel is the reference: where its answer depends on something the model
//! does not know, the answer is [`Verdict::Unknown`].
//!
//! ```
//! use credns_model::{Scenario, Verdict};
//! let s = Scenario::parse(r#"
//! [[namespace]]
//! name = "ns1"
//! owner = 1000
//! uid_map = "0 1000 1"
//! gid_map = "0 1000 1"
//!
//! [[process]]
//! name = "host"
//! uid = 1000
//!
//! [[process]]
//! name = "nsroot"
//! ns = "ns1"
//! uid = 0
//!
//! [[op]]
//! by = "host"
//! op = "kill"
//! target = "nsroot"
//! expect = "allowed"
//! "#, "doc.toml").unwrap();
//! let reports = s.run();
//! assert!(reports.iter().all(|r| r.matches()));
//! assert_eq!(reports[0].outcome.result, Verdict::Allowed);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// Record a trace step only when the tracer is on: `tr!(t.info(f, text, values))`. The
/// arguments (formatted text, value lists) are not evaluated when it is off; `tr!(t.check(ok, …))`
/// still yields `ok`. The recording is out of line, so the rules themselves stay small.
macro_rules! tr {
    ($t:ident . check ( $ok:expr , $($rest:tt)* )) => {{
        let ok: bool = $ok;
        if $t.on {
            $crate::outcome::traced(|| $t.check(ok, $($rest)*))
        } else {
            ok
        }
    }};
    ($t:ident . $m:ident ( $($args:tt)* )) => {
        if $t.on {
            $crate::outcome::traced(|| $t.$m($($args)*))
        }
    };
}

mod capability;
mod caps;
/// Rules that differ between filesystem types.
pub mod fs_types;
mod keys;
mod ops;
mod outcome;
mod query;
mod scenario;
mod semantics;
mod vfs;
mod walk;
mod world;

pub use capability::has_ns_capability;
pub use caps::{Cap, CapSet, CAP_LAST_CAP};
pub use credns_idmap::Errno;
pub use keys::{
    perm_str, Key, KeyId, KeyNeed, KeyRef, KeySpec, KeyType, TaskKeyrings, KEY_DEFAULT_PERM,
    KEY_GRP_ALL, KEY_LINK, KEY_OTH_ALL, KEY_PERM_VALID, KEY_POS_ALL, KEY_READ, KEY_SEARCH,
    KEY_SETATTR, KEY_USR_ALL, KEY_VIEW, KEY_WRITE, SESSION_KEYRING_PERM, USER_KEYRING_PERM,
};
pub use ops::{CapPrctlOption, MapKind, Op, ProcFile, NGROUPS_MAX, NSIG, SIGCONT};
pub use ops::{NsType, NsTypes, RemountFlags, TypedNs, TypedNsRef, PROT_SOCK};
pub use ops::{Protected, RENAME_EXCHANGE, RENAME_NOREPLACE};
pub use ops::{UtimesTimes, XattrAclEntry, XattrValue};
pub use outcome::{Outcome, Output, Step, StepVerdict, Values, Verdict};
pub use query::AccessQuery;
pub use scenario::{Difference, Expect, OpReport, Scenario, Side};
pub use semantics::{
    Ace, AceSubject, ContainerObj, Declarations, FsidMaps, Proposal, Semantics, ISOLATED_BAND,
    ISOLATED_BASE, ISOLATED_MAX, KEY_ACL_CLEAR, KEY_ACL_INVAL, KEY_ACL_JOIN, KEY_ACL_REVOKE,
};
pub use vfs::{Vfsgid, Vfsuid, MAY_EXEC, MAY_READ, MAY_WRITE};
pub use world::{
    normalise, path_components, validate_acl, Acl, AclEntry, AclTag, Cred, FileCaps, Inode,
    InodeRef, MntIdmap, Mount, MountOptions, MountRef, NsRef, SbRef, SuperBlock, Task, TaskRef,
    UserNs, World, FS_ALLOW_IDMAP, GENERIC_PERMISSION_FS, SECURE_KEEP_CAPS, SECURE_NOROOT,
    SECURE_NO_SETUID_FIXUP, S_IFDIR, S_IFMT, S_IFREG, S_ISGID, S_ISUID, S_ISVTX,
};

/// Errors of this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A scenario file is malformed or refers to something that does not exist.
    #[error("{source_name}:{line}:{column}: {message}")]
    Scenario {
        /// The file (or other source) name.
        source_name: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What was wrong.
        message: String,
    },
    /// A world-building call was given something inconsistent.
    #[error("{0}")]
    Model(String),
}
