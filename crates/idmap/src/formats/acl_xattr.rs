//! The binary value of the `system.posix_acl_access` (and `_default`) extended attribute, as
//! `getxattr(2)` returns it (`posix_acl_xattr_header`, then `posix_acl_xattr_entry`s; the
//! kernel's `include/uapi/linux/posix_acl_xattr.h`): a little-endian `u32` version (2), then
//! 8-byte entries of tag (`u16`), permissions (`u16`) and id (`u32`, meaningful for
//! `ACL_USER` and `ACL_GROUP` only).

/// `ACL_USER_OBJ`.
pub const ACL_USER_OBJ: u16 = 0x01;
/// `ACL_USER`.
pub const ACL_USER: u16 = 0x02;
/// `ACL_GROUP_OBJ`.
pub const ACL_GROUP_OBJ: u16 = 0x04;
/// `ACL_GROUP`.
pub const ACL_GROUP: u16 = 0x08;
/// `ACL_MASK`.
pub const ACL_MASK: u16 = 0x10;
/// `ACL_OTHER`.
pub const ACL_OTHER: u16 = 0x20;

/// One entry: its tag, its id (for `ACL_USER`/`ACL_GROUP`), its permission bits (rwx = 4|2|1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AclXattrEntry {
    /// `ACL_USER_OBJ` ... `ACL_OTHER`.
    pub tag: u16,
    /// The uid or gid of an `ACL_USER` or `ACL_GROUP` entry.
    pub id: Option<u32>,
    /// Permission bits.
    pub perm: u16,
}

/// Why a value is not an ACL.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AclXattrError {
    /// Not a header followed by whole entries.
    #[error("{0} bytes: not a 4-byte header followed by 8-byte entries")]
    Length(usize),
    /// A version other than 2.
    #[error("version {0}, not 2")]
    Version(u32),
    /// A tag the kernel does not define.
    #[error("entry {index}: tag {tag:#x} is not an ACL tag")]
    Tag {
        /// 1-based entry number.
        index: usize,
        /// The tag.
        tag: u16,
    },
    /// Permission bits beyond rwx.
    #[error("entry {index}: permissions {perm:#o} beyond rwx")]
    Perm {
        /// 1-based entry number.
        index: usize,
        /// The bits.
        perm: u16,
    },
}

/// Parse a value.
pub fn parse_acl_xattr(raw: &[u8]) -> Result<Vec<AclXattrEntry>, AclXattrError> {
    if raw.len() < 4 || !(raw.len() - 4).is_multiple_of(8) {
        return Err(AclXattrError::Length(raw.len()));
    }
    let version = u32::from_le_bytes(raw[..4].try_into().expect("4 bytes"));
    if version != 2 {
        return Err(AclXattrError::Version(version));
    }
    raw[4..]
        .chunks_exact(8)
        .enumerate()
        .map(|(i, e)| {
            let tag = u16::from_le_bytes([e[0], e[1]]);
            let perm = u16::from_le_bytes([e[2], e[3]]);
            let id = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
            if ![
                ACL_USER_OBJ,
                ACL_USER,
                ACL_GROUP_OBJ,
                ACL_GROUP,
                ACL_MASK,
                ACL_OTHER,
            ]
            .contains(&tag)
            {
                return Err(AclXattrError::Tag { index: i + 1, tag });
            }
            if perm & !7 != 0 {
                return Err(AclXattrError::Perm { index: i + 1, perm });
            }
            let id = matches!(tag, ACL_USER | ACL_GROUP).then_some(id);
            Ok(AclXattrEntry { tag, id, perm })
        })
        .collect()
}

/// The value of `entries` (ids of owner/other entries written as the kernel does: -1).
pub fn print_acl_xattr(entries: &[AclXattrEntry]) -> Vec<u8> {
    let mut out = 2u32.to_le_bytes().to_vec();
    for e in entries {
        out.extend(e.tag.to_le_bytes());
        out.extend(e.perm.to_le_bytes());
        out.extend(e.id.unwrap_or(u32::MAX).to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry() -> impl Strategy<Value = AclXattrEntry> {
        (
            prop::sample::select(vec![
                ACL_USER_OBJ,
                ACL_USER,
                ACL_GROUP_OBJ,
                ACL_GROUP,
                ACL_MASK,
                ACL_OTHER,
            ]),
            0u16..8,
            any::<u32>(),
        )
            .prop_map(|(tag, perm, id)| AclXattrEntry {
                tag,
                perm,
                id: matches!(tag, ACL_USER | ACL_GROUP).then_some(id),
            })
    }

    proptest! {
        #[test]
        fn printed_values_parse_back(entries in prop::collection::vec(entry(), 0..12)) {
            prop_assert_eq!(parse_acl_xattr(&print_acl_xattr(&entries)).unwrap(), entries);
        }

        #[test]
        fn any_bytes_parse_or_say_why(raw in prop::collection::vec(any::<u8>(), 0..64)) {
            match parse_acl_xattr(&raw) {
                Ok(v) => prop_assert_eq!(v.len() * 8 + 4, raw.len()),
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }

    #[test]
    fn errors_name_what_is_wrong() {
        assert_eq!(
            parse_acl_xattr(&[2, 0, 0]).unwrap_err().to_string(),
            "3 bytes: not a 4-byte header followed by 8-byte entries"
        );
        assert_eq!(
            parse_acl_xattr(&[1, 0, 0, 0]).unwrap_err().to_string(),
            "version 1, not 2"
        );
        let mut v = print_acl_xattr(&[AclXattrEntry {
            tag: ACL_OTHER,
            id: None,
            perm: 4,
        }]);
        v[4] = 0x40;
        assert_eq!(
            parse_acl_xattr(&v).unwrap_err().to_string(),
            "entry 1: tag 0x40 is not an ACL tag"
        );
        v[4] = 0x20;
        v[6] = 8;
        assert_eq!(
            parse_acl_xattr(&v).unwrap_err().to_string(),
            "entry 1: permissions 0o10 beyond rwx"
        );
    }
}
