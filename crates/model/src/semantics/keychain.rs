//! `keychain` (seed 001 §4–5, seed 000): a task holds credentials as users of other
//! namespaces; a file whose owner is one of them treats the task as its owner. At
//! CLONE_NEWUSER the new namespace's root gets a copy of the creator's keychains.

use crate::outcome::Tracer;
use crate::world::{Cred, NsRef, TaskRef, World};

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
    /// copy of the userns->creator's keychains": the creator's user keyring is copied into the
    /// new namespace's user keyring of the same kernel uid (the task's own keychain travels
    /// with its credentials anyway).
    fn userns_created(
        &self,
        w: &mut World,
        t: &mut Tracer,
        task: TaskRef,
        parent: NsRef,
        new: NsRef,
    ) {
        let uid = w.task(task).cred.uid;
        let Some(&(from, _)) = w.keys.user_keyrings.get(&(parent, uid)) else {
            tr!(t.info(
                "keychain:create_user_ns",
                "[000] the creator has no user keyring yet: nothing to copy",
                vec![],
            ));
            return;
        };
        let Ok((to, _)) = w.user_keyrings(new, uid) else {
            return;
        };
        let links = w.key(from).links.clone();
        for k in &links {
            let _ = w.link_key(to, *k);
        }
        tr!(t.info(
            "keychain:create_user_ns",
            "[000] the new namespace's root gets a copy of the creator's user keyring",
            vec![
                ("from", w.key_show(from)),
                ("to", w.key_show(to)),
                ("keys", links.len().to_string()),
            ],
        ));
    }
}
