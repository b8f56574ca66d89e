//! `io.systemd.UserDatabase` on its own socket (in `/run/systemd/userdb/`): every id of every
//! allocation resolves to a user and a group, so `ls -l`, `ps` and `getent` (through
//! nss-systemd) show names rather than bare numbers.
//!
//! Names: `PREFIX` + the allocation's name + `-N` for an allocation named like a user
//! (`[A-Za-z_][A-Za-z0-9_-]*`), and `PREFIX` + its number + `-N` for any other (namespace
//! leases, delegations, names with other characters); N is the id inside the allocation (the
//! namespace's id: 0 for its first host id; for a high range, the namespace's top ids). Each id
//! has one name and each name one id: a name is answered only if it is the name of its id.
//! Records: userName, uid, gid (the same id if the allocation holds it as a gid, else nobody),
//! realName, homeDirectory `/`, shell nologin, locked, disposition `container`. No memberships.
//! Enumeration (neither a name nor an id) is `EnumerationNotSupported`: every allocation holds
//! 65,536 ids or more, so a full listing would be millions of records.

use std::sync::Arc;

use credns_idmap::IdKind;
use credns_registry::names::{host_id, inside, IdNames};
use credns_registry::{Allocation, Holder, Lease, Part, Registry, Selector};
use credns_varlink::{Call, ErrorReply, Interface};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::daemon::Inner;

/// The interface name.
pub const INTERFACE: &str = "io.systemd.UserDatabase";

/// The service name (and socket file name) unless told otherwise.
pub const DEFAULT_SERVICE: &str = "io.credns.UserDatabase";

/// Where nss-systemd looks for services.
pub const USERDB_DIR: &str = "/run/systemd/userdb";

/// The prefix of every name unless told otherwise.
pub const DEFAULT_PREFIX: &str = "ct-";

const NOBODY: u32 = 65534;

const IDL: &str = r#"# User and group records of every id of every credns allocation.
interface io.systemd.UserDatabase

method GetUserRecord(
  uid: ?int,
  userName: ?string,
  fuzzyNames: ?[]string,
  dispositionMask: ?[]string,
  uidMin: ?int,
  uidMax: ?int,
  service: string
) -> (record: object, incomplete: bool)

method GetGroupRecord(
  gid: ?int,
  groupName: ?string,
  fuzzyNames: ?[]string,
  dispositionMask: ?[]string,
  gidMin: ?int,
  gidMax: ?int,
  service: string
) -> (record: object, incomplete: bool)

method GetMemberships(userName: ?string, groupName: ?string, service: string) -> (
  userName: string,
  groupName: string
)

error NoRecordFound()
error BadService()
error ServiceNotAvailable()
error ConflictingRecordFound()
error NonMatchingRecordFound()
error EnumerationNotSupported()
"#;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RecordParams {
    #[serde(alias = "gid")]
    uid: Option<u64>,
    #[serde(alias = "groupName")]
    user_name: Option<String>,
    fuzzy_names: Option<Vec<String>>,
    disposition_mask: Option<Vec<String>>,
    #[serde(alias = "gidMin")]
    uid_min: Option<u64>,
    #[serde(alias = "gidMax")]
    uid_max: Option<u64>,
    service: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct MembershipParams {
    user_name: Option<String>,
    group_name: Option<String>,
    service: String,
}

fn error(name: &str) -> ErrorReply {
    ErrorReply::new(INTERFACE, name, json!({}))
}

/// Users or groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    User,
    Group,
}

impl Side {
    fn kind(self) -> IdKind {
        match self {
            Side::User => IdKind::Uid,
            Side::Group => IdKind::Gid,
        }
    }
}

/// The allocation holding host id `id` on `side`, and which of its parts.
fn holder(reg: &Registry, id: u32, side: Side) -> Option<(&Allocation, Part)> {
    reg.who(id).into_iter().find_map(|h| match h {
        Holder::Allocation {
            id: a,
            part,
            as_uid,
            as_gid,
            ..
        } if (side == Side::User && as_uid) || (side == Side::Group && as_gid) => reg
            .get(&Selector::Id(a))
            .filter(|a| a.origin != credns_registry::Origin::Reserved)
            .map(|a| (a, part)),
        _ => None,
    })
}

/// `io.systemd.UserDatabase` over the daemon's registry.
pub(crate) struct UserDbInterface {
    inner: Arc<Inner>,
    service: String,
    names: IdNames,
}

/// One record found: its id, name and allocation's description.
struct Found {
    id: u32,
    name: String,
    gid: u32,
    about: String,
}

impl UserDbInterface {
    pub(crate) fn new(inner: Arc<Inner>, service: String, prefix: String) -> Self {
        UserDbInterface {
            inner,
            service,
            names: IdNames { prefix },
        }
    }

    fn by_id(&self, reg: &Registry, id: u32, side: Side) -> Option<Found> {
        let (a, part) = holder(reg, id, side)?;
        let other = match side {
            Side::User => Side::Group,
            Side::Group => Side::User,
        };
        // The user's group: the same id if the allocation holds it as a gid too.
        let n = inside(a, part, id, side.kind());
        let gid = host_id(a, n, other.kind()).map_or(NOBODY, |(_, g)| g);
        // A passwd line's fields are split at ':' (and names have no control characters).
        let lease = match &a.lease {
            Lease::Name(n) if !n.contains(':') => format!(" ({n})"),
            _ => String::new(),
        };
        Some(Found {
            id,
            name: self.names.name(a, part, id, side.kind()),
            gid,
            about: format!("credns allocation #{}{lease}, id {n}", a.id.0),
        })
    }

    fn by_name(&self, reg: &Registry, name: &str, side: Side) -> Option<Found> {
        let (sel, n) = self.names.parse(name)?;
        let a = reg
            .get(&sel)
            .filter(|a| a.origin != credns_registry::Origin::Reserved)?;
        let (_, id) = host_id(a, n, side.kind())?;
        // Only the id's own name: another form of it (a number for a named allocation) is not.
        self.by_id(reg, id, side).filter(|f| f.name == name)
    }

    fn record(&self, f: &Found, side: Side) -> Value {
        match side {
            Side::User => json!({
                "userName": f.name,
                "uid": f.id,
                "gid": f.gid,
                "realName": f.about,
                "homeDirectory": "/",
                "shell": "/usr/sbin/nologin",
                "locked": true,
                "disposition": "container",
                "service": self.service,
            }),
            Side::Group => json!({
                "groupName": f.name,
                "gid": f.id,
                "description": f.about,
                "disposition": "container",
                "service": self.service,
            }),
        }
    }

    fn get_record(&self, call: &Call<'_>, side: Side) -> Result<Value, ErrorReply> {
        let p: RecordParams = call.parameters_as()?;
        if p.service != self.service {
            return Err(error("BadService"));
        }
        if p.fuzzy_names.is_some() {
            return Err(ErrorReply::invalid_parameter("fuzzyNames"));
        }
        let id = match p.uid {
            Some(u) => Some(u32::try_from(u).map_err(|_| error("NoRecordFound"))?),
            None => None,
        };
        let found = self.inner.methods.read(|reg| {
            Ok(match (id, &p.user_name) {
                (None, None) => return Err(error("EnumerationNotSupported")),
                (Some(i), None) => self.by_id(reg, i, side),
                (None, Some(n)) => self.by_name(reg, n, side),
                (Some(i), Some(n)) => {
                    match (self.by_id(reg, i, side), self.by_name(reg, n, side)) {
                        (Some(f), Some(_)) if f.name == *n => Some(f),
                        (None, None) => None,
                        _ => return Err(error("ConflictingRecordFound")),
                    }
                }
            })
        });
        // A registry that cannot be read says nothing about existence.
        let found = match found {
            Err(e) if e.error.starts_with(INTERFACE) => return Err(e),
            Err(_) => return Err(error("ServiceNotAvailable")),
            Ok(f) => f.ok_or_else(|| error("NoRecordFound"))?,
        };
        let disposition_ok = p
            .disposition_mask
            .as_ref()
            .is_none_or(|m| m.iter().any(|d| d == "container"));
        let in_bounds = p.uid_min.is_none_or(|m| found.id as u64 >= m)
            && p.uid_max.is_none_or(|m| found.id as u64 <= m);
        if !disposition_ok || !in_bounds {
            return Err(error("NonMatchingRecordFound"));
        }
        Ok(json!({ "record": self.record(&found, side), "incomplete": false }))
    }
}

impl Interface for UserDbInterface {
    fn name(&self) -> &str {
        INTERFACE
    }

    fn description(&self) -> &str {
        IDL
    }

    fn call(&self, call: &mut Call<'_>) -> Result<Value, ErrorReply> {
        match call.method() {
            "GetUserRecord" => self.get_record(call, Side::User),
            "GetGroupRecord" => self.get_record(call, Side::Group),
            "GetMemberships" => {
                let p: MembershipParams = call.parameters_as()?;
                if p.service != self.service {
                    return Err(error("BadService"));
                }
                // Container users belong to no group but their own (their record's gid).
                let _ = (p.user_name, p.group_name);
                Err(error("NoRecordFound"))
            }
            m => Err(ErrorReply::method_not_found(&format!("{INTERFACE}.{m}"))),
        }
    }
}
