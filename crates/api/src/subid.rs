//! `io.credns.Subid`: subordinate ids, the ranges delegated to users as `/etc/subuid` and
//! `/etc/subgid` would list them. A delegation is an ordinary registry allocation owned by the
//! user and marked delegated; this interface makes them and answers libsubid's three questions
//! (the user's ranges, whether a range is the user's, who owns an id). Its IDL, records and
//! [`SubidClient`].

use std::path::Path;
use std::time::Duration;

use credns_varlink::Client;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::registry::Range;
use crate::Error;

/// The interface name.
pub const INTERFACE: &str = "io.credns.Subid";

/// The interface description served by `org.varlink.service.GetInterfaceDescription`.
pub const IDL: &str = r#"# Subordinate ids: ranges delegated to users, as /etc/subuid and /etc/subgid would list
# them. A delegation is an ordinary allocation of io.credns.Registry, owned by the user, leased
# to the name subid:USER:N and marked delegated: listed, shown and released like any other.
# A user is a login name of the daemon's passwd file or a decimal uid. Errors of the registry
# (quota, pool, store, parameters) are io.credns.Registry's.
interface io.credns.Subid

type Range (start: int, end: int)

type Delegation (allocation: int, name: string, uid: Range, gid: Range)

# Make sure user holds at least count delegations (default 1), making the missing ones of size
# ids each (the policy's default size). Root only. Returns every delegation of the user.
method Delegate(user: string, size: ?int, count: ?int) -> (
  uid: int,
  made: int,
  delegations: []Delegation
)

# The user's delegations, in the order they were made.
method Delegations(user: string) -> (uid: int, delegations: []Delegation)

# Whether ids [start, start+count) of the kind are all delegated to user (count 0: false),
# the way libsubid's files backend answers newuidmap.
method HasRange(user: string, start: int, count: int, kind: (uid, gid)) -> (result: bool)

# The uids whose delegations hold id as the kind.
method Owners(id: int, kind: (uid, gid)) -> (uids: []int)

# No user of that name in the daemon's passwd file.
error NoSuchUser (user: string, message: string)
"#;

/// One delegation on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delegation {
    /// The allocation's number.
    pub allocation: u64,
    /// Its lease name (`subid:USER:N`).
    pub name: String,
    /// Host uids delegated.
    pub uid: Range,
    /// Host gids delegated.
    pub gid: Range,
}

/// Which side of a delegation a question is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Subordinate uids (`/etc/subuid`).
    Uid,
    /// Subordinate gids (`/etc/subgid`).
    Gid,
}

impl Delegation {
    /// Its range of this kind.
    pub fn range(&self, kind: Kind) -> Range {
        match kind {
            Kind::Uid => self.uid,
            Kind::Gid => self.gid,
        }
    }
}

/// The reply of `Delegations` (and, with `made`, of `Delegate`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegations {
    /// The user's uid.
    pub uid: u32,
    /// Delegations this call made (`Delegate` only).
    #[serde(default)]
    pub made: u32,
    /// Every delegation of the user.
    pub delegations: Vec<Delegation>,
}

/// Whether `ranges` together hold every id of `[start, start + count)`; false for `count` 0
/// or a range past 2^32. The question newuidmap asks through libsubid: a map may span
/// adjacent delegations, as with adjacent `/etc/subuid` lines.
pub fn covers(ranges: &[Range], start: u64, count: u64) -> bool {
    if count == 0 {
        return false;
    }
    let Some(last) = start.checked_add(count - 1) else {
        return false;
    };
    let mut next = start;
    loop {
        let Some(r) = ranges
            .iter()
            .find(|r| r.start as u64 <= next && next <= r.end as u64)
        else {
            return false;
        };
        if r.end as u64 >= last {
            return true;
        }
        next = r.end as u64 + 1;
    }
}

/// A connection to the daemon's `io.credns.Subid`.
#[derive(Debug)]
pub struct SubidClient {
    varlink: Client,
}

fn decode<T: serde::de::DeserializeOwned>(v: Value, field: &str) -> Result<T, Error> {
    let inner = match field {
        "" => v,
        f => v.get(f).cloned().unwrap_or(Value::Null),
    };
    serde_json::from_value(inner).map_err(|e| Error::Reply(format!("{field}: {e}")))
}

impl SubidClient {
    /// Connect with a timeout for the connection and for every reply.
    pub fn connect_timeout(path: impl AsRef<Path>, timeout: Duration) -> Result<Self, Error> {
        Ok(Self::new(Client::connect_timeout(path, timeout)?))
    }

    /// Over an established varlink connection.
    pub fn new(varlink: Client) -> Self {
        SubidClient { varlink }
    }

    fn call(&mut self, method: &str, p: Value) -> Result<Value, Error> {
        Ok(self
            .varlink
            .call(&format!("{INTERFACE}.{method}"), p, &[])?)
    }

    /// Make sure `user` holds at least `count` delegations (root only).
    pub fn delegate(
        &mut self,
        user: &str,
        size: Option<u64>,
        count: Option<u32>,
    ) -> Result<Delegations, Error> {
        let mut p = json!({ "user": user });
        if let Some(s) = size {
            p["size"] = json!(s);
        }
        if let Some(c) = count {
            p["count"] = json!(c);
        }
        decode(self.call("Delegate", p)?, "")
    }

    /// The delegations of `user`.
    pub fn delegations(&mut self, user: &str) -> Result<Delegations, Error> {
        decode(self.call("Delegations", json!({ "user": user }))?, "")
    }

    /// Whether `[start, start + count)` of `kind` is delegated to `user`.
    pub fn has_range(
        &mut self,
        user: &str,
        start: u64,
        count: u64,
        kind: Kind,
    ) -> Result<bool, Error> {
        let p = json!({ "user": user, "start": start, "count": count, "kind": kind });
        decode(self.call("HasRange", p)?, "result")
    }

    /// The uids whose delegations hold `id` as `kind`.
    pub fn owners(&mut self, id: u64, kind: Kind) -> Result<Vec<u32>, Error> {
        decode(
            self.call("Owners", json!({ "id": id, "kind": kind }))?,
            "uids",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brute(ranges: &[Range], start: u64, count: u64) -> bool {
        count > 0
            && (start..start + count).all(|i| {
                ranges
                    .iter()
                    .any(|r| r.start as u64 <= i && i <= r.end as u64)
            })
    }

    #[test]
    fn adjacent_ranges_cover_together_and_gaps_do_not() {
        let rs = [Range { start: 10, end: 19 }, Range { start: 20, end: 29 }];
        assert!(covers(&rs, 15, 10));
        assert!(!covers(&rs, 15, 16));
        assert!(!covers(&rs, 10, 0));
        assert!(!covers(&rs, 0, u64::MAX));
        assert!(!covers(&rs, u64::MAX, 2));
        let gap = [Range { start: 10, end: 19 }, Range { start: 21, end: 29 }];
        assert!(!covers(&gap, 15, 10));
    }

    proptest! {
        #[test]
        fn covers_is_every_id_held(
            rs in proptest::collection::vec((0u32..200, 0u32..40), 0..5),
            start in 0u64..260,
            count in 0u64..80,
        ) {
            let rs: Vec<Range> = rs.into_iter()
                .map(|(s, l)| Range { start: s, end: s + l })
                .collect();
            prop_assert_eq!(covers(&rs, start, count), brute(&rs, start, count));
        }
    }
}
