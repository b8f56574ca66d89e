//! `/proc/keys`: the one place the kernel names the process that asked for a key under
//! construction. Its authorisation key (type `.request_key_auth`, held in the upcall's
//! session keyring) is described there as `key:TARGET pid:PID ci:LEN`, TARGET the constructed
//! key's serial in hex and PID the requesting thread's id (not its thread group's: a thread
//! of a many-threaded process is named as itself) in the reader's pid namespace
//! (`request_key_auth_describe`).

use super::KeySerial;
use crate::{Error, Pid, ProcFs};

/// One line of `/proc/keys` as `proc_keys_show` prints it:
/// `%08x %c%c%c%c%c%c%c %5d %4s %08x %5d %5d %-9.9s DESCRIPTION`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcKey {
    /// The key's serial.
    pub serial: KeySerial,
    /// Its type's name, cut to nine characters as the kernel prints it.
    pub type_prefix: String,
    /// What the type's `describe` printed (the rest of the line).
    pub description: String,
}

impl ProcKey {
    /// Parse one line; `None` for a line of another shape.
    pub fn parse(line: &str) -> Option<ProcKey> {
        let mut f = line.split_whitespace();
        let serial = u32::from_str_radix(f.next()?, 16).ok()?;
        let flags = f.next()?;
        if flags.len() != 7 {
            return None;
        }
        let _usage: i64 = f.next()?.parse().ok()?;
        let _expiry = f.next()?;
        let _perm = u32::from_str_radix(f.next()?, 16).ok()?;
        let _uid: i64 = f.next()?.parse().ok()?;
        let _gid: i64 = f.next()?.parse().ok()?;
        let type_prefix = f.next()?.to_string();
        let description = f.collect::<Vec<_>>().join(" ");
        Some(ProcKey {
            serial: serial as KeySerial,
            type_prefix,
            description,
        })
    }

    /// For the authorisation key of `target`, the requester's pid it names.
    pub fn requester_of(&self, target: KeySerial) -> Option<u32> {
        if self.type_prefix != ".request_" {
            return None;
        }
        let mut words = self.description.split(' ');
        let key = words.next()?.strip_prefix("key:")?;
        if u32::from_str_radix(key, 16).ok()? != target as u32 {
            return None;
        }
        let pid: u32 = words.next()?.strip_prefix("pid:")?.parse().ok()?;
        (pid > 0).then_some(pid)
    }
}

/// The requester named by `auth`, the authorisation key to construct `target`, in `/proc/keys`
/// text: `None` when no line is that key's or it names no pid.
pub fn requester_in(text: &str, auth: KeySerial, target: KeySerial) -> Option<u32> {
    text.lines()
        .filter_map(ProcKey::parse)
        .find(|k| k.serial == auth)
        .and_then(|k| k.requester_of(target))
}

/// The process that asked for `target`, from `/proc/keys` under `procfs`: the reader must be
/// able to view `auth` (an upcall possesses it through its session keyring).
pub fn requester_pid(
    procfs: &ProcFs,
    auth: KeySerial,
    target: KeySerial,
) -> Result<Option<Pid>, Error> {
    let path = procfs.root().join("keys");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::Path {
        op: "read",
        path,
        errno: crate::Errno::from_io_error(&e).unwrap_or(crate::Errno::IO),
    })?;
    Ok(requester_in(&text, auth, target).and_then(|p| i32::try_from(p).ok().map(Pid)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A line as `proc_keys_show` prints it.
    fn line(serial: u32, ktype: &str, desc: &str) -> String {
        format!(
            "{serial:08x} I--Q---     1 perm 3f010000     0     0 {:<9.9} {desc}",
            ktype
        )
    }

    #[test]
    fn the_auth_key_names_its_requester() {
        let text = [
            line(0x1a2b, "keyring", "_ses: 1"),
            line(0x2c, ".request_key_auth", "key:4d2 pid:4242 ci:1"),
            line(0x4d2, "user", "debug:e: 0"),
        ]
        .join("\n");
        assert_eq!(requester_in(&text, 0x2c, 0x4d2), Some(4242));
        // Another target, or a key that is not an authorisation key: none.
        assert_eq!(requester_in(&text, 0x2c, 0x4d3), None);
        assert_eq!(requester_in(&text, 0x1a2b, 0x4d2), None);
        assert_eq!(requester_in(&text, 0x99, 0x4d2), None);
    }

    #[test]
    fn a_revoked_auth_key_names_no_one() {
        // Once the key is made, the authorisation key is revoked: no pid is printed.
        let text = line(0x2c, ".request_key_auth", "key:4d2");
        assert_eq!(requester_in(&text, 0x2c, 0x4d2), None);
    }

    #[test]
    fn lines_of_other_shapes_are_skipped() {
        for l in [
            "",
            "zz I--Q--- 1 perm 0 0 0 user x",
            "0000002c I-- 1 perm 0 0 0 user x",
        ] {
            assert_eq!(ProcKey::parse(l), None, "{l:?}");
        }
    }

    proptest! {
        #[test]
        fn printed_lines_parse_back(
            serial in 1u32..,
            target in 1u32..,
            pid in 1u32..=4_194_304,
            ci in 0usize..4096,
        ) {
            let l = line(serial, ".request_key_auth", &format!("key:{target:x} pid:{pid} ci:{ci}"));
            let k = ProcKey::parse(&l).unwrap();
            prop_assert_eq!(k.serial as u32, serial);
            prop_assert_eq!(k.requester_of(target as KeySerial), Some(pid));
        }

        #[test]
        fn any_text_is_taken(s in "\\PC{0,80}") {
            for l in s.lines() {
                if let Some(k) = ProcKey::parse(l) {
                    prop_assert!(l.contains(&k.type_prefix));
                }
            }
            let _ = requester_in(&s, 1, 2);
        }
    }
}
