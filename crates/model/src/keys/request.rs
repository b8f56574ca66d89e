//! `request_key(2)`: search the caller's keyrings for a key, and construct it by an upcall
//! when asked to (`request_key_and_link` → `search_process_keyrings_rcu`, then
//! `construct_key_and_link`).

use crate::outcome::{Output, StepVerdict, Tracer, Values};
use crate::semantics::Found;
use crate::vfs::Stop;
use crate::world::{TaskRef, World};
use credns_idmap::Errno;

use super::search::{Match, Miss};
use super::types::KeyType;

impl World {
    /// `request_key(type, description, callout, 0)`. The destination keyring is not
    /// modelled (the key found is returned, not linked).
    pub(crate) fn op_request_key(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        ktype: KeyType,
        description: &str,
        callout: Option<&str>,
    ) -> Result<Option<Output>, Stop> {
        let f = "request_key_and_link";
        tr!(t.info(
            f,
            format!(
                "search the caller's keyrings for {} \"{description}\"",
                ktype.name()
            ),
            vec![],
        ));
        let r =
            t.nested(|t| self.search_process_keyrings(t, task, Match::Index(ktype, description)));
        let miss = match r {
            Ok(k) => return Ok(Some(out(self.key_out(k)))),
            Err(Miss::Unknown(why)) => return Err(Stop::unknown(why)),
            Err(m) => m,
        };
        let upcall = callout.is_some();
        match self.proposal(|p| p.request_key_more(self, t, task, ktype, description, upcall)) {
            Some(Found::Key(k)) => return Ok(Some(out(self.key_out(k)))),
            Some(Found::Intercepted(ring)) => {
                let why = format!(
                    "the request waits for the service watching {} to instantiate the key",
                    self.key_show(ring)
                );
                tr!(t.step(f, why.clone(), vec![], StepVerdict::Unknown));
                return Err(Stop::unknown(why));
            }
            None => {}
        }
        if let Miss::Err(e) = miss {
            tr!(t.fail(f, "the search failed", vec![("errno", e.to_string())]));
            return Err(e.into());
        }
        if !upcall {
            tr!(t.fail(f, "not found, and no callout: nothing to construct", vec![]));
            return Err(Errno::ENOKEY.into());
        }
        let why =
            "construction runs /sbin/request-key, whose answer the model does not know".to_string();
        tr!(t.step(
            "construct_key_and_link",
            why.clone(),
            vec![],
            StepVerdict::Unknown
        ));
        Err(Stop::unknown(why))
    }
}

fn out(pairs: Vec<(&str, String)>) -> Output {
    Values(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}
