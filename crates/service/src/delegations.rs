//! `io.credns.Subid`: ranges delegated to users as subordinate ids. A delegation is an
//! allocation owned by the user, leased to `subid:USER:N` and marked delegated; `Delegate`
//! (root only) makes them, and anyone may ask what libsubid asks (as anyone may read
//! `/etc/subuid`): a user's delegations, whether a range is the user's, who owns an id.

use std::sync::Arc;

use credns_api::registry::Range;
use credns_api::subid::{covers, Delegation, Kind, IDL, INTERFACE};
use credns_registry::{AllocRequest, Allocation, Holder, Lease, Registry, Selector};
use credns_varlink::{Call, ErrorReply, Interface};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::daemon::Inner;
use crate::errors::{denied, invalid, registry_error};
use crate::params::decode;
use crate::users::Users;

/// The most delegations one call makes (quotas bound what a user holds).
const MAX_COUNT: u32 = 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DelegateParams {
    user: String,
    size: Option<u64>,
    count: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserParams {
    user: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HasRangeParams {
    user: String,
    start: u64,
    count: u64,
    kind: Kind,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnersParams {
    id: u64,
    kind: Kind,
}

/// `io.credns.Subid` over the daemon's methods (or the direct path's).
pub(crate) struct SubidInterface {
    inner: Arc<Inner>,
    users: Users,
}

impl SubidInterface {
    pub(crate) fn new(inner: Arc<Inner>, etc: Option<&std::path::Path>) -> Self {
        SubidInterface {
            inner,
            users: Users::new(etc),
        }
    }

    fn user(&self, user: &str) -> Result<(u32, String), ErrorReply> {
        self.users.resolve(user).ok_or_else(|| {
            ErrorReply::new(
                INTERFACE,
                "NoSuchUser",
                json!({ "user": user, "message": format!("no user {user:?} in the daemon's passwd file") }),
            )
        })
    }

    fn delegate(&self, uid: u32, p: DelegateParams) -> Result<Value, ErrorReply> {
        if uid != 0 {
            return Err(denied(format!(
                "only root delegates subordinate ids (caller uid {uid})"
            )));
        }
        let count = p.count.unwrap_or(1);
        if count > MAX_COUNT {
            return Err(invalid(
                "count",
                format!("{count} is more than {MAX_COUNT} delegations at once"),
            ));
        }
        let (owner, name) = self.user(&p.user)?;
        self.inner.methods.with(|reg| {
            let held = delegations(reg, owner).len() as u32;
            let principal = crate::methods::principal(reg, owner);
            // One commit for all of them: a refusal (quota, pool) leaves nothing made.
            let mut txn = reg.begin().map_err(registry_error)?;
            let (mut made, mut n) = (0u32, 0u32);
            while held + made < count {
                while txn
                    .allocator()
                    .get(&Selector::Name(lease_name(&name, n)))
                    .is_some()
                {
                    n += 1;
                }
                let mut req = AllocRequest::new(Lease::Name(lease_name(&name, n)), owner);
                req.principal = Some(principal);
                req.size = p.size;
                req.delegated = true;
                txn.allocate(&req).map_err(registry_error)?;
                made += 1;
            }
            txn.commit().map_err(registry_error)?;
            Ok(json!({ "uid": owner, "made": made, "delegations": wire(&delegations(reg, owner)) }))
        })
    }

    fn ranges(&self, owner: u32, kind: Kind) -> Result<Vec<Range>, ErrorReply> {
        self.inner.methods.read(|reg| {
            Ok(delegations(reg, owner)
                .iter()
                .map(|d| match kind {
                    Kind::Uid => d.uid.into(),
                    Kind::Gid => d.gid.into(),
                })
                .collect())
        })
    }

    fn owners(&self, p: OwnersParams) -> Result<Value, ErrorReply> {
        let Ok(id) = u32::try_from(p.id) else {
            return Ok(json!({ "uids": [] }));
        };
        self.inner.methods.read(|reg| {
            let mut uids: Vec<u32> = reg
                .who(id)
                .iter()
                .filter_map(|h| match h {
                    Holder::Allocation {
                        id: a,
                        as_uid,
                        as_gid,
                        ..
                    } if (p.kind == Kind::Uid && *as_uid) || (p.kind == Kind::Gid && *as_gid) => {
                        reg.get(&Selector::Id(*a)).filter(|a| a.delegated)
                    }
                    _ => None,
                })
                .map(|a| a.owner)
                .collect();
            uids.dedup();
            Ok(json!({ "uids": uids }))
        })
    }
}

/// The lease name of a user's `n`th delegation.
fn lease_name(user: &str, n: u32) -> String {
    format!("subid:{user}:{n}")
}

/// The delegations `owner` holds, in the order they were made.
fn delegations(reg: &Registry, owner: u32) -> Vec<Allocation> {
    let mut v: Vec<Allocation> = reg
        .list()
        .filter(|a| a.delegated && a.owner == owner)
        .cloned()
        .collect();
    v.sort_by_key(|a| a.id);
    v
}

fn wire(ds: &[Allocation]) -> Vec<Delegation> {
    ds.iter()
        .map(|a| Delegation {
            allocation: a.id.0,
            name: match &a.lease {
                Lease::Name(n) => n.clone(),
                l => l.to_string(),
            },
            uid: a.uid.into(),
            gid: a.gid.into(),
        })
        .collect()
}

impl Interface for SubidInterface {
    fn name(&self) -> &str {
        INTERFACE
    }

    fn description(&self) -> &str {
        IDL
    }

    fn call(&self, call: &mut Call<'_>) -> Result<Value, ErrorReply> {
        let caller = call.peer().uid;
        let params = call.parameters().clone();
        match call.method() {
            "Delegate" => self.delegate(caller, decode(&params)?),
            "Delegations" => {
                let p: UserParams = decode(&params)?;
                let (uid, _) = self.user(&p.user)?;
                let ds = self.inner.methods.read(|reg| Ok(delegations(reg, uid)))?;
                Ok(json!({ "uid": uid, "delegations": wire(&ds) }))
            }
            "HasRange" => {
                let p: HasRangeParams = decode(&params)?;
                let (uid, _) = self.user(&p.user)?;
                let ranges = self.ranges(uid, p.kind)?;
                Ok(json!({ "result": covers(&ranges, p.start, p.count) }))
            }
            "Owners" => self.owners(decode(&params)?),
            m => Err(ErrorReply::method_not_found(&format!("{INTERFACE}.{m}"))),
        }
    }
}
