//! Kernel ids: the global numbering every namespace's ids map onto.

use serde::{Deserialize, Serialize};

/// The kernel's "no such id" value, `(uid_t)-1`. Never valid as an id or as an extent start.
#[doc(alias = "INVALID_UID")]
pub const INVALID_ID: u32 = u32::MAX;

/// The id shown for an unmapped uid or gid (`kernel.overflowuid`, default 65534).
#[doc(alias = "overflowuid")]
pub const OVERFLOW_ID: u32 = 65534;

/// The largest number of extents a map may hold (`UID_GID_MAP_MAX_EXTENTS`).
#[doc(alias = "UID_GID_MAP_MAX_EXTENTS")]
pub const MAX_EXTENTS: usize = 340;

/// Up to this many extents the kernel keeps the map inline, in the order written, and lists it so.
#[doc(alias = "UID_GID_MAP_MAX_BASE_EXTENTS")]
pub const MAX_BASE_EXTENTS: usize = 5;

macro_rules! kernel_id {
    ($(#[$doc:meta])* $name:ident, $alias:literal) => {
        $(#[$doc])*
        #[doc(alias = $alias)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u32);

        impl $name {
            /// The kernel's invalid id.
            pub const INVALID: Self = Self(INVALID_ID);
            /// Global root.
            pub const ROOT: Self = Self(0);
            /// Whether this is a real id (not `INVALID`).
            pub fn is_valid(self) -> bool {
                self.0 != INVALID_ID
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

kernel_id!(
    /// A user id in the kernel's global numbering (`kuid_t`); equal to the initial namespace's uid.
    Kuid,
    "kuid_t"
);
kernel_id!(
    /// A group id in the kernel's global numbering (`kgid_t`).
    Kgid,
    "kgid_t"
);

/// Which kind of map: uid_map, gid_map or projid_map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdKind {
    /// `/proc/PID/uid_map`
    Uid,
    /// `/proc/PID/gid_map`
    Gid,
    /// `/proc/PID/projid_map`
    Projid,
}

impl IdKind {
    /// The /proc file name of this map.
    pub fn file_name(self) -> &'static str {
        match self {
            IdKind::Uid => "uid_map",
            IdKind::Gid => "gid_map",
            IdKind::Projid => "projid_map",
        }
    }
}

impl std::fmt::Display for IdKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IdKind::Uid => "uid",
            IdKind::Gid => "gid",
            IdKind::Projid => "projid",
        })
    }
}
