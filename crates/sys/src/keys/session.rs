//! A container's session keyring: the calls `credns run` makes to give the container's first
//! process its own named session keyring, with the container keyring linked in it and the
//! possessor mask the container may have (see docs/ARCHITECTURE.md, "Keys"). They make no
//! allocation, so a fork child (the container's init) may call them.

use std::ffi::CStr;

use super::{keyctl, KeySerial, KEYCTL_JOIN_SESSION_KEYRING, KEY_SPEC_SESSION_KEYRING};
use crate::Errno;

/// `KEY_POS_VIEW` and the other permission bits (`include/uapi/linux/keyctl.h`); one byte per
/// class: possessor, user (owner), group, other.
pub mod perm {
    /// View the key's attributes.
    pub const VIEW: u32 = 0x01;
    /// Read the payload (a keyring: list it).
    pub const READ: u32 = 0x02;
    /// Update the payload (a keyring: add and remove links).
    pub const WRITE: u32 = 0x04;
    /// Find it in a search (and invalidate it: `KEYCTL_INVALIDATE` needs only this).
    pub const SEARCH: u32 = 0x08;
    /// Link it into a keyring.
    pub const LINK: u32 = 0x10;
    /// Change its attributes (timeout, restriction, permissions by the owner).
    pub const SETATTR: u32 = 0x20;
    /// Every bit of one class.
    pub const ALL: u32 = 0x3f;
    /// The possessor class's shift.
    pub const POS: u32 = 24;
    /// The owner class's shift.
    pub const USR: u32 = 16;
    /// The group class's shift.
    pub const GRP: u32 = 8;
    /// The other class's shift.
    pub const OTH: u32 = 0;
}

/// The container's session keyring: possessors (the container's processes) may view, list,
/// add to and search it (add_key and request_key into `@s` need Write), not link it elsewhere
/// nor change its attributes; its owner (the manager) may view, list and search it.
pub const SESSION_PERM: u32 = ((perm::VIEW | perm::READ | perm::WRITE | perm::SEARCH) << perm::POS)
    | ((perm::VIEW | perm::READ | perm::SEARCH) << perm::USR);

/// The container keyring: possessors may view, list and search it (so find and read what is
/// in it), not add, remove, link it elsewhere or change it; its owner (the manager) may do all.
pub const CONTAINER_PERM: u32 =
    ((perm::VIEW | perm::READ | perm::SEARCH) << perm::POS) | (perm::ALL << perm::USR);

/// `keyctl(KEYCTL_JOIN_SESSION_KEYRING, name)` (`keyctl_join_session_keyring(3)`): join the
/// keyring named `name` in this process's user namespace as its session keyring, creating it
/// (owned by this process's uid) if no keyring of that name may be joined; returns its serial.
#[doc(alias = "keyctl_join_session_keyring")]
pub fn join_session_keyring(name: &CStr) -> Result<KeySerial, Errno> {
    keyctl(
        KEYCTL_JOIN_SESSION_KEYRING,
        name.as_ptr() as libc::c_ulong,
        0,
        0,
        0,
    )
    .map(|r| r as KeySerial)
}

/// Make a new session keyring `name` for this process, link the container keyring `container`
/// in it and set its mask to [`SESSION_PERM`] (three system calls). The process must still
/// have the uid that is to own the keyring (the manager's), and Link on `container`.
pub fn enter_container_session(name: &CStr, container: KeySerial) -> Result<KeySerial, Errno> {
    let ses = join_session_keyring(name)?;
    super::link(container, KEY_SPEC_SESSION_KEYRING)?;
    super::setperm(ses, SESSION_PERM)?;
    Ok(ses)
}

/// `setfsuid(2)` for this thread; returns the previous fsuid. Key permissions and the owner
/// of a new key follow the fsuid, so a root process acts on a user's keys as that user.
pub fn set_thread_fsuid(uid: u32) -> Result<u32, Errno> {
    // SAFETY: setfsuid takes an integer and changes only this thread's credentials.
    let old = unsafe { libc::syscall(libc::SYS_setfsuid, uid) } as u32;
    // setfsuid reports no error; asking again (-1 changes nothing) tells whether it took.
    // SAFETY: as above; -1 is never a valid id, so nothing changes.
    let now = unsafe { libc::syscall(libc::SYS_setfsuid, u32::MAX) } as u32;
    if now != uid {
        return Err(Errno::PERM);
    }
    Ok(old)
}

/// The serials a keyring's payload (`KEYCTL_READ` of a keyring) lists.
pub fn keyring_serials(payload: &[u8]) -> Vec<KeySerial> {
    payload
        .chunks_exact(4)
        .map(|c| KeySerial::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// A `KEYCTL_DESCRIBE` answer: `type;uid;gid;perm;description`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyDescription {
    /// The key type's name.
    pub ktype: String,
    /// Owner, as the caller's namespace sees it.
    pub uid: u32,
    /// Group, likewise.
    pub gid: u32,
    /// The permission mask.
    pub perm: u32,
    /// The description.
    pub description: String,
}

impl KeyDescription {
    /// Parse a `KEYCTL_DESCRIBE` answer; `None` if it does not have that shape.
    pub fn parse(text: &str) -> Option<Self> {
        let mut f = text.splitn(5, ';');
        Some(KeyDescription {
            ktype: f.next()?.to_string(),
            uid: f.next()?.parse().ok()?,
            gid: f.next()?.parse().ok()?,
            perm: u32::from_str_radix(f.next()?, 16).ok()?,
            description: f.next()?.to_string(),
        })
    }
}

/// [`super::describe`], parsed.
pub fn describe_key(key: KeySerial) -> Result<KeyDescription, Errno> {
    KeyDescription::parse(&super::describe(key)?).ok_or(Errno::INVAL)
}

/// One line of `/proc/key-users`: a kuid's key quota use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyUser {
    /// The kuid (as the reader's namespace sees it).
    pub uid: u32,
    /// Keys it owns.
    pub nkeys: u32,
    /// Keys counted against its quota.
    pub qnkeys: u32,
    /// Its key quota.
    pub maxkeys: u32,
    /// Bytes counted against its quota.
    pub qnbytes: u32,
    /// Its byte quota.
    pub maxbytes: u32,
}

impl KeyUser {
    /// Parse `/proc/key-users` (`  uid: usage nkeys/nikeys qnkeys/maxkeys qnbytes/maxbytes`);
    /// a line of another shape is skipped.
    pub fn parse_all(text: &str) -> Vec<KeyUser> {
        text.lines().filter_map(Self::parse_line).collect()
    }

    fn parse_line(line: &str) -> Option<KeyUser> {
        let (uid, rest) = line.trim().split_once(':')?;
        let mut f = rest.split_whitespace();
        let _usage: u32 = f.next()?.parse().ok()?;
        let pair = |s: Option<&str>| -> Option<(u32, u32)> {
            let (a, b) = s?.split_once('/')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        };
        let (nkeys, _) = pair(f.next())?;
        let (qnkeys, maxkeys) = pair(f.next())?;
        let (qnbytes, maxbytes) = pair(f.next())?;
        if f.next().is_some() {
            return None;
        }
        Some(KeyUser {
            uid: uid.trim().parse().ok()?,
            nkeys,
            qnkeys,
            maxkeys,
            qnbytes,
            maxbytes,
        })
    }
}

/// `/proc/key-users` under `procfs`.
pub fn key_users(procfs: &crate::ProcFs) -> Result<Vec<KeyUser>, crate::Error> {
    let path = procfs.root().join("key-users");
    let text = std::fs::read_to_string(&path).map_err(|e| crate::Error::Path {
        op: "read",
        path,
        errno: crate::Errno::from_io_error(&e).unwrap_or(crate::Errno::IO),
    })?;
    Ok(KeyUser::parse_all(&text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn masks_are_the_documented_ones() {
        assert_eq!(SESSION_PERM, 0x0f0b_0000);
        assert_eq!(CONTAINER_PERM, 0x0b3f_0000);
    }

    #[test]
    fn key_users_parse() {
        let t = "    0:    12 11/11 8/1000000 189/25000000\n100000:     1 1/1 1/200 9/20000\n";
        let k = KeyUser::parse_all(t);
        assert_eq!(k.len(), 2);
        assert_eq!(k[1].uid, 100000);
        assert_eq!(
            (k[1].qnkeys, k[1].maxkeys, k[1].qnbytes, k[1].maxbytes),
            (1, 200, 9, 20000)
        );
    }

    #[test]
    fn descriptions_parse() {
        let d = KeyDescription::parse("keyring;0;0;0b3f0000;_container").unwrap();
        assert_eq!(d.ktype, "keyring");
        assert_eq!(d.perm, CONTAINER_PERM);
        assert_eq!(d.description, "_container");
        let d = KeyDescription::parse("user;65534;65534;3f010000;a;b").unwrap();
        assert_eq!(d.description, "a;b");
        assert!(KeyDescription::parse("user;x;0;0;d").is_none());
        assert!(KeyDescription::parse("user;0;0").is_none());
    }

    proptest! {
        #[test]
        fn descriptions_round_trip(t in "[a-z_]{1,10}", u: u32, g: u32, p: u32, d in "[^\\x00]{0,30}") {
            let text = format!("{t};{u};{g};{p:08x};{d}");
            let k = KeyDescription::parse(&text).unwrap();
            prop_assert_eq!(k, KeyDescription { ktype: t, uid: u, gid: g, perm: p, description: d });
        }

        #[test]
        fn any_text_parses_or_not_without_panic(s in "\\PC{0,40}") {
            let _ = KeyDescription::parse(&s);
        }

        #[test]
        fn key_users_round_trip(u: u32, n: u32, q: u32, m: u32, b: u32, mb: u32) {
            let text = format!("{u:5}: {:5} {n}/{n} {q}/{m} {b}/{mb}\nnot a line\n", n + 1);
            prop_assert_eq!(
                KeyUser::parse_all(&text),
                vec![KeyUser { uid: u, nkeys: n, qnkeys: q, maxkeys: m, qnbytes: b, maxbytes: mb }]
            );
        }

        #[test]
        fn key_users_take_any_text(s in "\\PC{0,60}") {
            let _ = KeyUser::parse_all(&s);
        }

        #[test]
        fn serials_round_trip(v in prop::collection::vec(any::<i32>(), 0..20)) {
            let bytes: Vec<u8> = v.iter().flat_map(|s| s.to_ne_bytes()).collect();
            prop_assert_eq!(keyring_serials(&bytes), v);
        }
    }
}
