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

/// The namespace id a high range's last host id maps to.
const TOP_ID: u64 = 4_294_967_294;

/// Longest user name handed out (Linux's utmp and many tools keep 32 bytes with the NUL).
const MAX_USER_NAME: usize = 31;

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

/// The names of allocations' ids, for one prefix.
#[derive(Clone, Debug)]
struct Names {
    prefix: String,
}

/// Whether an allocation's name may stand in a user name as it is.
fn user_like(name: &str) -> bool {
    let mut cs = name.chars();
    cs.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Names {
    /// The allocation's part of a name: its name if user-like (and short enough), else its
    /// number.
    fn base(&self, a: &Allocation) -> String {
        match &a.lease {
            Lease::Name(n) if user_like(n) && self.prefix.len() + n.len() + 11 <= MAX_USER_NAME => {
                n.clone()
            }
            _ => a.id.0.to_string(),
        }
    }

    /// The name of host id `id` of allocation `a` (its `part`), the id inside being N.
    fn name(&self, a: &Allocation, part: Part, id: u32, side: Side) -> String {
        let n = inside(a, part, id, side);
        format!("{}{}-{n}", self.prefix, self.base(a))
    }

    /// The allocation a name may belong to and the N it ends with; the caller checks that
    /// the id found has exactly this name.
    fn parse(&self, name: &str) -> Option<(Selector, u64)> {
        let rest = name.strip_prefix(self.prefix.as_str())?;
        let (base, n) = rest.rsplit_once('-')?;
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || n.len() > 10 {
            return None;
        }
        let n: u64 = n.parse().ok()?;
        let sel = match base.parse::<u64>() {
            Ok(i) if !base.starts_with('0') || base == "0" => {
                Selector::Id(credns_registry::AllocId(i))
            }
            _ if user_like(base) => Selector::Name(base.to_string()),
            _ => return None,
        };
        Some((sel, n))
    }
}

/// The namespace id host id `id` of `a`'s `part` stands for.
fn inside(a: &Allocation, part: Part, id: u32, side: Side) -> u64 {
    let (main, high) = match side {
        Side::User => (a.uid, a.high.map(|h| h.uid)),
        Side::Group => (a.gid, a.high.map(|h| h.gid)),
    };
    match (part, high) {
        (Part::High, Some(h)) => TOP_ID - (h.end as u64 - id as u64),
        _ => id as u64 - main.start as u64,
    }
}

/// The host id of namespace id `n` of `a`, if it holds one.
fn host_id(a: &Allocation, n: u64, side: Side) -> Option<(Part, u32)> {
    let (main, high) = match side {
        Side::User => (a.uid, a.high.map(|h| h.uid)),
        Side::Group => (a.gid, a.high.map(|h| h.gid)),
    };
    if n < main.len() {
        return Some((Part::Main, main.start + n as u32));
    }
    let h = high?;
    let from_top = TOP_ID.checked_sub(n)?;
    (from_top < h.len()).then(|| (Part::High, h.end - from_top as u32))
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
    names: Names,
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
            names: Names { prefix },
        }
    }

    fn by_id(&self, reg: &Registry, id: u32, side: Side) -> Option<Found> {
        let (a, part) = holder(reg, id, side)?;
        let other = match side {
            Side::User => Side::Group,
            Side::Group => Side::User,
        };
        // The user's group: the same id if the allocation holds it as a gid too.
        let n = inside(a, part, id, side);
        let gid = host_id(a, n, other).map_or(NOBODY, |(_, g)| g);
        // A passwd line's fields are split at ':' (and names have no control characters).
        let lease = match &a.lease {
            Lease::Name(n) if !n.contains(':') => format!(" ({n})"),
            _ => String::new(),
        };
        Some(Found {
            id,
            name: self.names.name(a, part, id, side),
            gid,
            about: format!("credns allocation #{}{lease}, id {n}", a.id.0),
        })
    }

    fn by_name(&self, reg: &Registry, name: &str, side: Side) -> Option<Found> {
        let (sel, n) = self.names.parse(name)?;
        let a = reg
            .get(&sel)
            .filter(|a| a.origin != credns_registry::Origin::Reserved)?;
        let (_, id) = host_id(a, n, side)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use credns_idmap::IdRange;
    use credns_registry::{AllocId, Origin, Ranges};
    use proptest::prelude::*;

    fn alloc(id: u64, lease: Lease, start: u32, len: u32, high: Option<u32>) -> Allocation {
        let r = IdRange::from_start_len(start, len as u64).unwrap();
        Allocation {
            id: AllocId(id),
            uid: r,
            gid: r,
            high: high.map(|s| {
                let h = IdRange {
                    start: s,
                    end: TOP_ID as u32,
                };
                Ranges { uid: h, gid: h }
            }),
            lease,
            owner: 0,
            principal: None,
            ns_id: None,
            created: 0,
            requested_size: None,
            label: None,
            origin: Origin::Allocated,
            delegated: false,
        }
    }

    #[test]
    fn names_follow_the_allocation() {
        let n = Names {
            prefix: "ct-".into(),
        };
        let web = alloc(3, Lease::name("web"), 524288, 65536, Some(4294901760));
        assert_eq!(n.name(&web, Part::Main, 524289, Side::User), "ct-web-1");
        assert_eq!(
            n.name(&web, Part::High, 4294967294, Side::User),
            "ct-web-4294967294"
        );
        let odd = alloc(4, Lease::name("subid:alice:0"), 589824, 65536, None);
        assert_eq!(n.name(&odd, Part::Main, 589824, Side::Group), "ct-4-0");
        assert_eq!(n.parse("ct-web-1"), Some((Selector::Name("web".into()), 1)));
        assert_eq!(n.parse("ct-4-0"), Some((Selector::Id(AllocId(4)), 0)));
        for bad in [
            "web-1",
            "ct-web-",
            "ct-web-x",
            "ct--1",
            "ct-04-1",
            "ct-a:b-1",
            "ct-web-99999999999",
        ] {
            assert_eq!(n.parse(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn each_id_has_one_name_that_parses_back(
            name in "[a-z_][a-z0-9_:-]{0,20}",
            id in 1u64..1000,
            off in 0u32..65536,
            prefix in "[a-z]{0,4}-?",
        ) {
            let n = Names { prefix };
            let a = alloc(id, Lease::name(&name), 524288, 65536, None);
            let host = 524288 + off;
            let s = n.name(&a, Part::Main, host, Side::User);
            let (sel, k) = n.parse(&s).expect("a name given out parses");
            match sel {
                Selector::Name(b) => prop_assert_eq!(b, name),
                Selector::Id(i) => prop_assert_eq!(i, AllocId(id)),
                _ => prop_assert!(false),
            }
            prop_assert_eq!(host_id(&a, k, Side::User), Some((Part::Main, host)));
        }

        #[test]
        fn parsing_any_text_is_total(s in "\\PC{0,40}") {
            let _ = Names { prefix: "ct-".into() }.parse(&s);
        }
    }
}
