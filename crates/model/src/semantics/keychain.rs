//! `keychain` (seed 001 §4–5, seed 000): a task holds credentials as users of other
//! namespaces; a file whose owner is one of them treats the task as its owner. At
//! CLONE_NEWUSER the new namespace's root gets a copy of the creator's keychains.

use crate::outcome::Tracer;
use credns_idmap::Kuid;

use crate::keys::KeyRef;
use crate::world::{Cred, NsRef, World};

use super::inode_userns::show_chain;
use super::Rules;

pub(super) struct Keychain;

/// KC1 "inode->i_uid is in current's keychain → allow as owner" (001 §4): a credential
/// (namespace, uid) that is the file's owner at any level of its chain. Choice: the line is
/// consulted whatever namespace the caller is in (001 §5: "credentials as users in other
/// namespaces"), not only inside the same-namespace block where §4's indentation puts it.
pub(super) fn holds_owner(w: &World, t: &mut Tracer, cred: &Cred, owners: &[(NsRef, u32)]) -> bool {
    let hit = cred.keychain.iter().find(|c| owners.contains(c));
    tr!(t.check(
        hit.is_some(),
        "keychain:permission",
        "[001 §4–5] a credential in the caller's keychain is the file's owner at some level",
        vec![
            ("keychain", show_chain(w, &cred.keychain)),
            ("owners", show_chain(w, owners)),
        ],
    ))
}

impl Rules for Keychain {
    /// KC2 (000) "at clone(CLONE_NEWUSER) … give the new root user_struct in the new user_ns a
    /// copy of the userns->creator's keychains": when the user keyring of a namespace's root
    /// is made, it starts with the links of its creator's user keyring in the parent.
    /// Choice: the copy is taken when the root's user keyring is first made (the kernel makes
    /// it on first use), not at the unshare, when the root's uid is not mapped yet.
    fn user_keyring_created(
        &self,
        w: &mut World,
        t: &mut Tracer,
        ns: NsRef,
        kuid: Kuid,
        ur: KeyRef,
    ) {
        let n = w.ns(ns).clone();
        let Some(parent) = n.parent else { return };
        if w.make_kuid(ns, 0) != kuid {
            return;
        }
        let Some(&(from, _)) = w.keys.user_keyrings.get(&(parent, n.owner)) else {
            tr!(t.info(
                "keychain:look_up_user_keyrings",
                "[000] the namespace's creator has no user keyring: nothing to copy",
                vec![],
            ));
            return;
        };
        let links = w.key(from).links.clone();
        for k in &links {
            let _ = w.link_key(ur, *k);
        }
        tr!(t.info(
            "keychain:look_up_user_keyrings",
            format!(
                "[000] the root of \"{}\" gets a copy of its creator's user keyring",
                n.name
            ),
            vec![
                ("from", w.key_show(from)),
                ("to", w.key_show(ur)),
                ("keys", links.len().to_string()),
            ],
        ));
    }
}
