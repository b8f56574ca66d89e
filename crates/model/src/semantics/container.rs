//! `container` (seed 002 (4)): a kernel container object whose keyring `request_key` searches
//! after the thread, process and session keyrings, and whose upcall filters divert
//! `request_key` construction to a keyring a service watches.

use crate::keys::{KeyType, Match};
use crate::outcome::Tracer;
use crate::world::{TaskRef, World};

use super::{Found, Rules};

pub(super) struct Container;

impl Rules for Container {
    /// CT1 "A keyring can be attached to the container such that this is searched by a
    /// request_key() performed by a denizen of the container after searching the thread,
    /// process and session keyrings. The keyring and the keys contained therein must be
    /// granted Search for that container": searched as a non-possessor, so the permission
    /// comes from the key's mask or, with key_acl, a `container:` ACE.
    /// CT2 "The manager of a container can intercept requests made inside the container and,
    /// using a series of filters, can cause the authkeys to be placed into keyrings": when
    /// construction is needed, the first filter for the key type (then `*`) takes it.
    fn request_key_more(
        &self,
        w: &World,
        t: &mut Tracer,
        task: TaskRef,
        ktype: KeyType,
        description: &str,
        upcall: bool,
    ) -> Option<Found> {
        let &ci = w.decl.task_container.get(&task)?;
        let c = &w.decl.containers[ci];
        match c.keyring {
            Some(kr) => {
                tr!(t.info(
                    "container:search_process_keyrings",
                    format!(
                        "[002 (4)(b)] search the keyring of container \"{}\" (not possessed)",
                        c.name
                    ),
                    vec![("keyring", w.key_show(kr))],
                ));
                let r = t.nested(|t| {
                    w.keyring_search(t, task, kr, false, Match::Index(ktype, description))
                });
                if let Ok(k) = r {
                    return Some(Found::Key(k));
                }
            }
            None => {
                tr!(t.info(
                    "container:search_process_keyrings",
                    format!("[002 (4)(b)] container \"{}\" has no keyring", c.name),
                    vec![],
                ));
            }
        }
        if !upcall {
            return None;
        }
        let name = ktype.name();
        let hit = c
            .intercept
            .iter()
            .find(|(ty, _)| ty == name)
            .or_else(|| c.intercept.iter().find(|(ty, _)| ty == "*"));
        match hit {
            Some((ty, ring)) => {
                tr!(t.pass(
                    "container:request_key_intercept",
                    format!("[002 (4)(a)] filter \"{ty}\" of container \"{}\": the authorisation key is linked into the service keyring instead of running /sbin/request-key", c.name),
                    vec![("service_keyring", w.key_show(*ring))],
                ));
                Some(Found::Intercepted(*ring))
            }
            None => {
                tr!(t.info(
                    "container:request_key_intercept",
                    format!("[002 (4)(a)] no filter of container \"{}\" takes type {name}: the normal upcall", c.name),
                    vec![],
                ));
                None
            }
        }
    }
}
