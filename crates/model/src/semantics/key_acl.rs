//! `key_acl` (seed 002 (3)): a key carries an access control list instead of the
//! possessor/user/group/other mask; Invalidate and Join are permissions of their own, and
//! subjects go beyond the standard four (a container).

use crate::keys::{perm_str, KeyNeed, KeyRef};
use crate::outcome::Tracer;
use crate::world::{TaskRef, World};

use super::Rules;

/// `KEY_ACE_INVAL`: invalidate the key.
pub const KEY_ACL_INVAL: u32 = 0x040;
/// `KEY_ACE_REVOKE`: revoke the key.
pub const KEY_ACL_REVOKE: u32 = 0x080;
/// `KEY_ACE_JOIN`: join a keyring as a session keyring.
pub const KEY_ACL_JOIN: u32 = 0x100;
/// `KEY_ACE_CLEAR`: clear a keyring.
pub const KEY_ACL_CLEAR: u32 = 0x200;

const NAMES: [(&str, u32); 10] = [
    ("view", 0x001),
    ("read", 0x002),
    ("write", 0x004),
    ("search", 0x008),
    ("link", 0x010),
    ("set_security", 0x020),
    ("inval", KEY_ACL_INVAL),
    ("revoke", KEY_ACL_REVOKE),
    ("join", KEY_ACL_JOIN),
    ("clear", KEY_ACL_CLEAR),
];

/// Who an ACE grants to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AceSubject {
    /// `KEY_ACE_POSSESSOR`.
    Possessor,
    /// `KEY_ACE_OWNER`.
    Owner,
    /// `KEY_ACE_GROUP`.
    Group,
    /// `KEY_ACE_EVERYONE`.
    Everyone,
    /// `KEY_ACE_SUBJ_CONTAINER`: the denizens of a container (an index of
    /// `Declarations::containers`).
    Container(usize),
}

/// An access control entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ace {
    /// The subject.
    pub subject: AceSubject,
    /// The permissions granted (`KEY_ACE_*` bits).
    pub perm: u32,
}

impl Ace {
    /// Parse `SUBJECT=PERMS`: SUBJECT is possessor, owner, group, everyone or
    /// `container:NAME`; PERMS is `all` or a comma list of view, read, write, search, link,
    /// set_security, inval, revoke, join, clear. `container` finds a container's index.
    pub fn parse(s: &str, container: impl Fn(&str) -> Option<usize>) -> Result<Ace, String> {
        let (subj, perms) = s.split_once('=').ok_or_else(|| {
            format!("ACE \"{s}\": write SUBJECT=PERMS, e.g. \"possessor=all\" or \"container:box=search\"")
        })?;
        let subject = match subj.trim() {
            "possessor" => AceSubject::Possessor,
            "owner" => AceSubject::Owner,
            "group" => AceSubject::Group,
            "everyone" => AceSubject::Everyone,
            other => match other.strip_prefix("container:") {
                Some(n) => AceSubject::Container(
                    container(n.trim()).ok_or_else(|| format!("ACE \"{s}\": no container called \"{}\"", n.trim()))?,
                ),
                None => return Err(format!("ACE \"{s}\": the subject is possessor, owner, group, everyone or container:NAME")),
            },
        };
        let mut perm = 0;
        for p in perms.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if p == "all" {
                perm |= 0x3ff;
                continue;
            }
            let bit = NAMES.iter().find(|(n, _)| *n == p).map(|(_, b)| *b).ok_or_else(|| {
                format!("ACE \"{s}\": unknown permission \"{p}\" (all, view, read, write, search, link, set_security, inval, revoke, join, clear)")
            })?;
            perm |= bit;
        }
        Ok(Ace { subject, perm })
    }
}

/// The names of the bits of an ACE permission.
pub(super) fn acl_perm_str(perm: u32) -> String {
    let v: Vec<&str> = NAMES
        .iter()
        .filter(|(_, b)| perm & b != 0)
        .map(|(n, _)| *n)
        .collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(",")
    }
}

/// KA3 (choice, after the series' conversion of SETPERM): the ACL equivalent of a mask. Each
/// byte becomes the ACE of its class; SEARCH also grants INVAL and JOIN, WRITE grants REVOKE
/// and CLEAR, SETATTR grants REVOKE — what those operations needed under the mask.
pub fn acl_of_mask(mask: u32) -> Vec<Ace> {
    let conv = |b: u32| {
        let mut p = b & 0x3f;
        if b & 0x08 != 0 {
            p |= KEY_ACL_INVAL | KEY_ACL_JOIN;
        }
        if b & 0x04 != 0 {
            p |= KEY_ACL_REVOKE | KEY_ACL_CLEAR;
        }
        if b & 0x20 != 0 {
            p |= KEY_ACL_REVOKE;
        }
        p
    };
    [
        (AceSubject::Possessor, mask >> 24),
        (AceSubject::Owner, mask >> 16),
        (AceSubject::Group, mask >> 8),
        (AceSubject::Everyone, mask),
    ]
    .into_iter()
    .map(|(subject, b)| Ace {
        subject,
        perm: conv(b & 0xff),
    })
    .filter(|a| a.perm != 0)
    .collect()
}

pub(super) struct KeyAcl;

impl Rules for KeyAcl {
    /// KA1 "The permissions can be split more finely" / KA2 "Permits to be granted to
    /// non-standard subjects": the permission is the OR of every matching ACE (possessor if
    /// possessed, owner if the key's uid is the fsuid, group if its gid is the fsgid or a
    /// supplementary group, everyone, a container for its denizens) — cumulative, not the
    /// mask's first match.
    fn key_permission(
        &self,
        w: &World,
        t: &mut Tracer,
        task: TaskRef,
        k: KeyRef,
        possessed: bool,
        need: KeyNeed,
    ) -> Option<bool> {
        let bit = need.bit()?;
        let key = w.key(k);
        let c = &w.task(task).cred;
        let derived;
        let acl = match w.decl.key_acl.get(&k) {
            Some(a) => a,
            None => {
                derived = acl_of_mask(key.perm);
                &derived
            }
        };
        let my_container = w.decl.task_container.get(&task).copied();
        let mut allow = 0;
        let mut matched = Vec::new();
        for ace in acl {
            let (hit, name) = match &ace.subject {
                AceSubject::Possessor => (possessed, "possessor".to_string()),
                AceSubject::Owner => (key.uid == c.fsuid, "owner".into()),
                AceSubject::Group => (
                    key.gid.is_valid() && w.in_group_p(c, key.gid),
                    "group".into(),
                ),
                AceSubject::Everyone => (true, "everyone".into()),
                AceSubject::Container(i) => (
                    my_container == Some(*i),
                    format!("container:{}", w.decl.containers[*i].name),
                ),
            };
            if hit {
                allow |= ace.perm;
                matched.push(format!("{name}={}", acl_perm_str(ace.perm)));
            }
        }
        let ok = allow & bit != 0;
        Some(tr!(t.check(
            ok,
            "key_acl:key_task_permission",
            format!(
                "[002 (3)] {} on {}: the OR of every matching ACE{}",
                need.name(),
                w.key_show(k),
                if w.decl.key_acl.contains_key(&k) {
                    ""
                } else {
                    " (the ACL equivalent of its mask)"
                }
            ),
            vec![
                ("perm", perm_str(key.perm)),
                (
                    "matched",
                    if matched.is_empty() {
                        "none".into()
                    } else {
                        matched.join(" ")
                    }
                ),
                ("granted", acl_perm_str(allow)),
            ],
        )))
    }
}
