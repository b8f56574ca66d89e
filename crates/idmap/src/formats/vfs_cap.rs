//! The binary value of the `security.capability` extended attribute, a file's capabilities, as
//! `getxattr(2)` returns it (`struct vfs_cap_data` and, for revision 3, `struct
//! vfs_ns_cap_data`; the kernel's `include/uapi/linux/capability.h`): a little-endian `u32`
//! `magic_etc` (the revision in its top byte, flags below: `VFS_CAP_FLAGS_EFFECTIVE` is bit 0),
//! then permitted and inheritable `u32` words, one pair in revision 1 (12 bytes), two (low and
//! high) in revisions 2 (20 bytes) and 3 (24 bytes, then the root id `u32`). A size other than
//! the revision's is refused, as `get_vfs_caps_from_disk` refuses it (EINVAL).

/// `VFS_CAP_REVISION_MASK`.
const REVISION_MASK: u32 = 0xff00_0000;
/// `VFS_CAP_FLAGS_EFFECTIVE`.
pub const FLAGS_EFFECTIVE: u32 = 0x0000_0001;

/// A file's capabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VfsCap {
    /// 1, 2 or 3.
    pub revision: u32,
    /// The bits of `magic_etc` below the revision (`FLAGS_EFFECTIVE`; the kernel ignores others).
    pub flags: u32,
    /// The permitted set (revision 1: the low 32 capabilities only).
    pub permitted: u64,
    /// The inheritable set.
    pub inheritable: u64,
    /// Revision 3's root id (in the numbering the value was read in); `None` before it.
    pub rootid: Option<u32>,
}

impl VfsCap {
    /// `VFS_CAP_FLAGS_EFFECTIVE`: the permitted set is raised into the effective one at exec.
    pub fn effective(&self) -> bool {
        self.flags & FLAGS_EFFECTIVE != 0
    }
}

/// Why a value is not a file's capabilities.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VfsCapError {
    /// Shorter than `magic_etc`.
    #[error("{0} bytes: too short for the 4-byte magic_etc")]
    Short(usize),
    /// A revision the kernel does not define.
    #[error("revision {0:#x}: not 1, 2 or 3")]
    Revision(u32),
    /// A size other than the revision's.
    #[error("{len} bytes: revision {revision} takes {want}")]
    Length {
        /// The revision.
        revision: u32,
        /// The size given.
        len: usize,
        /// The revision's size.
        want: usize,
    },
}

fn word(raw: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(raw[i * 4..i * 4 + 4].try_into().expect("4 bytes"))
}

/// Parse a value.
pub fn parse_vfs_cap(raw: &[u8]) -> Result<VfsCap, VfsCapError> {
    if raw.len() < 4 {
        return Err(VfsCapError::Short(raw.len()));
    }
    let magic = word(raw, 0);
    let revision = magic >> 24;
    let want = match revision {
        1 => 12,
        2 => 20,
        3 => 24,
        _ => return Err(VfsCapError::Revision(magic & REVISION_MASK)),
    };
    if raw.len() != want {
        return Err(VfsCapError::Length {
            revision,
            len: raw.len(),
            want,
        });
    }
    let high = |i: usize| {
        if revision == 1 {
            0
        } else {
            u64::from(word(raw, i)) << 32
        }
    };
    Ok(VfsCap {
        revision,
        flags: magic & !REVISION_MASK,
        permitted: u64::from(word(raw, 1)) | high(3),
        inheritable: u64::from(word(raw, 2)) | high(4),
        rootid: (revision == 3).then(|| word(raw, 5)),
    })
}

/// The value of `c` (revision 1 keeps the low 32 bits of each set).
pub fn print_vfs_cap(c: &VfsCap) -> Vec<u8> {
    let mut out = ((c.revision << 24) | (c.flags & !REVISION_MASK))
        .to_le_bytes()
        .to_vec();
    let lo = |v: u64| (v as u32).to_le_bytes();
    let hi = |v: u64| ((v >> 32) as u32).to_le_bytes();
    out.extend(lo(c.permitted));
    out.extend(lo(c.inheritable));
    if c.revision != 1 {
        out.extend(hi(c.permitted));
        out.extend(hi(c.inheritable));
    }
    if c.revision == 3 {
        out.extend(c.rootid.unwrap_or(0).to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cap() -> impl Strategy<Value = VfsCap> {
        (
            1u32..4,
            0u32..0x100_0000,
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
        )
            .prop_map(|(revision, flags, p, i, root)| {
                let keep = |v: u64| if revision == 1 { v & 0xffff_ffff } else { v };
                VfsCap {
                    revision,
                    flags,
                    permitted: keep(p),
                    inheritable: keep(i),
                    rootid: (revision == 3).then_some(root),
                }
            })
    }

    #[test]
    fn setcap_values() {
        // `setcap cap_net_bind_service+ep` writes revision 2 with the effective flag.
        let raw = [
            0x01, 0, 0, 0x02, 0, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let c = parse_vfs_cap(&raw).unwrap();
        assert_eq!((c.revision, c.effective(), c.permitted), (2, true, 1 << 10));
        assert_eq!(c.rootid, None);
        assert_eq!(
            parse_vfs_cap(&raw[..12]).unwrap_err().to_string(),
            "12 bytes: revision 2 takes 20"
        );
        assert_eq!(
            parse_vfs_cap(&[0, 0, 0, 4]).unwrap_err().to_string(),
            "revision 0x4000000: not 1, 2 or 3"
        );
        assert_eq!(
            parse_vfs_cap(&[1]).unwrap_err().to_string(),
            "1 bytes: too short for the 4-byte magic_etc"
        );
    }

    proptest! {
        #[test]
        fn printed_values_parse_back(c in cap()) {
            prop_assert_eq!(parse_vfs_cap(&print_vfs_cap(&c)).unwrap(), c);
        }

        #[test]
        fn any_bytes_parse_or_say_why(raw in prop::collection::vec(any::<u8>(), 0..32)) {
            match parse_vfs_cap(&raw) {
                Ok(c) => prop_assert_eq!(print_vfs_cap(&c), raw),
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }
}
