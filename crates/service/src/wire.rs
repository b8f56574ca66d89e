//! The varlink wire format and the `io.credns.Registry` interface: its IDL text, its error
//! names, and the record types its methods return.

use credns_registry::{Allocation, Holder, Lease, Origin, Part};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The interface name.
pub const INTERFACE: &str = "io.credns.Registry";

/// The interface description served by `org.varlink.service.GetInterfaceDescription`.
pub const IDL: &str = r#"# Host UID/GID ranges for user namespaces, leased by a name or by a user namespace.
# Callers are identified by SO_PEERCRED: uid 0 administers every allocation; any other uid
# gets ranges within its quota, for names or for user namespaces it owns, and sees and
# releases only its own.
interface io.credns.Registry

type Range (start: int, end: int)

type UserNamespace (dev: int, ino: int, createdNs: int)

# Exactly one of name and userNamespace is set.
type Lease (name: ?string, userNamespace: ?UserNamespace)

type HighRanges (uid: Range, gid: Range)

type Allocation (
  id: int,
  uid: Range,
  gid: Range,
  high: ?HighRanges,
  lease: Lease,
  owner: int,
  created: int,
  label: ?string,
  origin: (allocated, registered)
)

# kind "allocation" (allocation, owner, part, asUid, asGid; lease unless it is another
# user's), "excluded" (source) or "namespace" (a live user namespace maps the id: userNamespace,
# asUid, asGid).
type Holder (
  kind: (allocation, excluded, namespace),
  allocation: ?int,
  lease: ?Lease,
  owner: ?int,
  part: ?string,
  asUid: ?bool,
  asGid: ?bool,
  source: ?string,
  userNamespace: ?string
)

# Allocate a range by policy, leased to a name or to the user namespace passed as the file
# descriptor with index userNamespaceFileDescriptor (sent with this message by SCM_RIGHTS).
# pidFileDescriptor (a pidfd of a process inside that namespace) lets the daemon write the
# maps and notice the namespace's death; without it the daemon looks for a process in /proc.
# writeMaps writes the namespace's uid_map and gid_map (after the allocation is durable).
# Asking again with the same lease returns the same allocation.
method Allocate(
  name: ?string,
  userNamespaceFileDescriptor: ?int,
  pidFileDescriptor: ?int,
  size: ?int,
  high: ?bool,
  label: ?string,
  writeMaps: ?bool
) -> (allocation: Allocation)

# Record ranges chosen elsewhere (gid defaults to uid).
method Register(
  name: ?string,
  userNamespaceFileDescriptor: ?int,
  pidFileDescriptor: ?int,
  uid: Range,
  gid: ?Range,
  label: ?string
) -> (allocation: Allocation)

# Release an allocation by id or by name lease.
method Release(id: ?int, name: ?string) -> (allocation: Allocation)

# The caller's allocations (every allocation for uid 0).
method List() -> (allocations: []Allocation)

# One allocation by id or by name lease.
method Show(id: ?int, name: ?string) -> (allocation: Allocation)

# Who holds a host id: allocations, exclusions and live user namespaces.
method Who(id: int) -> (holders: []Holder)

# The request was not a JSON object with a string "method".
error MalformedRequest (reason: string)
# No allocation matches.
error NotFound (what: string, message: string)
# A parameter was wrong.
error InvalidParameter (parameter: string, reason: string, message: string)
# The pool has no free block of the size asked for.
error PoolExhausted (window: string, requested: int, align: int, largestFree: int, message: string)
# The caller would hold more than its quota.
error QuotaExceeded (owner: int, limit: string, max: int, held: int, requested: int, message: string)
# The lease is held by another allocation.
error LeaseTaken (lease: string, allocation: int, owner: int, message: string)
# A range to register overlaps an allocation.
error RangeUnavailable (range: Range, allocation: int, message: string)
# The caller may not do this (another user's allocation or namespace, or not root).
error PermissionDenied (reason: string, message: string)
# The kernel refused something the request needed (reading or writing a namespace).
error NamespaceFailed (reason: string, message: string)
# The daemon's store failed.
error Internal (message: string)
"#;

/// The interface description of `org.varlink.service`.
pub const SERVICE_IDL: &str = r#"# The Varlink Service Interface is provided by every varlink service.
interface org.varlink.service

method GetInfo() -> (
  vendor: string,
  product: string,
  version: string,
  url: string,
  interfaces: []string
)

method GetInterfaceDescription(interface: string) -> (description: string)

error InterfaceNotFound (interface: string)
error MethodNotFound (method: string)
error MethodNotImplemented (method: string)
error InvalidParameter (parameter: string)
error PermissionDenied ()
error ExpectedMore ()
"#;

/// An inclusive id range on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// First id.
    pub start: u32,
    /// Last id.
    pub end: u32,
}

impl Range {
    /// Ids in it.
    pub fn len(&self) -> u64 {
        self.end as u64 + 1 - self.start as u64
    }

    /// Never: a range holds at least its first id.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether it shares an id with `o`.
    pub fn overlaps(&self, o: &Range) -> bool {
        self.start <= o.end && o.start <= self.end
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

impl From<credns_idmap::IdRange> for Range {
    fn from(r: credns_idmap::IdRange) -> Self {
        Range {
            start: r.start,
            end: r.end,
        }
    }
}

impl From<Range> for credns_idmap::IdRange {
    fn from(r: Range) -> Self {
        credns_idmap::IdRange {
            start: r.start,
            end: r.end,
        }
    }
}

/// A user namespace's lease identity on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserNamespace {
    /// nsfs device.
    pub dev: u64,
    /// nsfs inode.
    pub ino: u64,
    /// Creation stamp (see `credns_registry::Lease::UserNs`).
    pub created_ns: u64,
}

/// A lease on the wire: exactly one field set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireLease {
    /// A name lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A user-namespace lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_namespace: Option<UserNamespace>,
}

impl std::fmt::Display for WireLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.name, &self.user_namespace) {
            (Some(n), _) => write!(f, "name {n}"),
            (None, Some(u)) => write!(f, "userns {}:{}", u.dev, u.ino),
            (None, None) => f.write_str("-"),
        }
    }
}

impl From<&Lease> for WireLease {
    fn from(l: &Lease) -> Self {
        match l {
            Lease::Name(n) => WireLease {
                name: Some(n.clone()),
                user_namespace: None,
            },
            Lease::UserNs {
                dev,
                ino,
                created_ns,
            } => WireLease {
                name: None,
                user_namespace: Some(UserNamespace {
                    dev: *dev,
                    ino: *ino,
                    created_ns: *created_ns,
                }),
            },
        }
    }
}

/// The high-window ranges of an allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HighRanges {
    /// Host uids.
    pub uid: Range,
    /// Host gids.
    pub gid: Range,
}

/// An allocation as the interface returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllocationInfo {
    /// Its number.
    pub id: u64,
    /// Host uids (namespace ids from 0).
    pub uid: Range,
    /// Host gids.
    pub gid: Range,
    /// The high-window ranges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<HighRanges>,
    /// What keeps it alive.
    pub lease: WireLease,
    /// The uid it belongs to.
    pub owner: u32,
    /// Creation time, seconds since the epoch.
    pub created: u64,
    /// Free-form label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `allocated` or `registered`.
    pub origin: String,
}

impl AllocationInfo {
    /// The uid map this allocation is meant for (as [`Allocation::uid_map`]).
    pub fn uid_map(&self) -> Result<credns_idmap::IdMap, credns_registry::Error> {
        credns_registry::allocation_map(self.uid.into(), self.high.map(|h| h.uid.into()))
    }

    /// The gid map this allocation is meant for (as [`Allocation::gid_map`]).
    pub fn gid_map(&self) -> Result<credns_idmap::IdMap, credns_registry::Error> {
        credns_registry::allocation_map(self.gid.into(), self.high.map(|h| h.gid.into()))
    }
}

impl From<&Allocation> for AllocationInfo {
    fn from(a: &Allocation) -> Self {
        AllocationInfo {
            id: a.id.0,
            uid: a.uid.into(),
            gid: a.gid.into(),
            high: a.high.map(|h| HighRanges {
                uid: h.uid.into(),
                gid: h.gid.into(),
            }),
            lease: (&a.lease).into(),
            owner: a.owner,
            created: a.created,
            label: a.label.clone(),
            origin: match a.origin {
                Origin::Allocated => "allocated",
                Origin::Registered => "registered",
            }
            .into(),
        }
    }
}

/// Who holds a host id, as the interface returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HolderInfo {
    /// `allocation`, `excluded` or `namespace`.
    pub kind: String,
    /// The allocation's number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation: Option<u64>,
    /// Its lease (hidden for another user's allocation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<WireLease>,
    /// Its owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<u32>,
    /// `main` or `high`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<String>,
    /// Held as a uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_uid: Option<bool>,
    /// Held as a gid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_gid: Option<bool>,
    /// Why it is excluded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The live user namespace (`user:[INODE]`) mapping it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_namespace: Option<String>,
}

impl HolderInfo {
    /// From the registry's answer; `show_lease` false hides the lease.
    pub fn from_holder(h: &Holder, show_lease: bool) -> Self {
        let mut out = HolderInfo {
            kind: String::new(),
            allocation: None,
            lease: None,
            owner: None,
            part: None,
            as_uid: None,
            as_gid: None,
            source: None,
            user_namespace: None,
        };
        match h {
            Holder::Allocation {
                id,
                lease,
                owner,
                part,
                as_uid,
                as_gid,
            } => {
                out.kind = "allocation".into();
                out.allocation = Some(id.0);
                out.lease = show_lease.then(|| lease.into());
                out.owner = Some(*owner);
                out.part = Some(match part {
                    Part::Main => "main".into(),
                    Part::High => "high".into(),
                });
                out.as_uid = Some(*as_uid);
                out.as_gid = Some(*as_gid);
            }
            Holder::Excluded(s) => {
                out.kind = "excluded".into();
                out.source = Some(s.to_string());
            }
        }
        out
    }
}

/// A varlink error reply: its qualified name and parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorReply {
    /// `io.credns.Registry.QuotaExceeded`, `org.varlink.service.MethodNotFound`, ...
    pub error: String,
    /// Its parameters.
    pub parameters: Value,
}

impl ErrorReply {
    /// `io.credns.Registry.NAME` with `parameters`.
    pub fn registry(name: &str, parameters: Value) -> Self {
        ErrorReply {
            error: format!("{INTERFACE}.{name}"),
            parameters,
        }
    }

    /// `io.credns.Registry.InvalidParameter`.
    pub fn invalid(parameter: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self::registry(
            "InvalidParameter",
            json!({"parameter": parameter, "reason": reason, "message": format!("invalid parameter {parameter}: {reason}")}),
        )
    }

    /// `io.credns.Registry.PermissionDenied`.
    pub fn denied(reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self::registry(
            "PermissionDenied",
            json!({"reason": reason, "message": format!("permission denied: {reason}")}),
        )
    }

    /// A human sentence: the `message` parameter if present, else the name and parameters.
    pub fn message(&self) -> String {
        match self.parameters.get("message").and_then(Value::as_str) {
            Some(m) => m.to_string(),
            None => format!("{} {}", self.error, self.parameters),
        }
    }
}

impl std::fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message(), self.error)
    }
}

/// The JSON text of a reply (without the terminating NUL).
pub fn reply_text(r: &Result<Value, ErrorReply>) -> Vec<u8> {
    let v = match r {
        Ok(p) => json!({ "parameters": p }),
        Err(e) => json!({ "error": e.error, "parameters": e.parameters }),
    };
    serde_json::to_vec(&v).expect("JSON values serialize")
}

/// A request as it arrives: `{"method": ..., "parameters": {...}, "oneway": ..., "more": ...}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The fully qualified method (`io.credns.Registry.Allocate`).
    pub method: String,
    /// Its parameters (`null` when absent).
    pub parameters: Value,
    /// No reply wanted.
    pub oneway: bool,
    /// The caller accepts several replies (this interface always sends one).
    pub more: bool,
}

/// `io.credns.Registry.MalformedRequest` for `reason`.
pub fn malformed(reason: impl Into<String>) -> ErrorReply {
    let reason = reason.into();
    ErrorReply::registry(
        "MalformedRequest",
        json!({"reason": reason, "message": format!("malformed request: {reason}")}),
    )
}

/// Parse one message (without its NUL). Anything but a JSON object with a string `method`
/// (and, if present, boolean `oneway`/`more`) is a `MalformedRequest`.
pub fn parse_request(msg: &[u8]) -> Result<Request, ErrorReply> {
    let v: Value = serde_json::from_slice(msg).map_err(|e| malformed(format!("not JSON: {e}")))?;
    let Value::Object(mut obj) = v else {
        return Err(malformed("not a JSON object"));
    };
    let method = match obj.remove("method") {
        Some(Value::String(m)) => m,
        _ => return Err(malformed("no string \"method\"")),
    };
    let flag = |obj: &Map<String, Value>, k: &str| match obj.get(k) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(malformed(format!("\"{k}\" is not a boolean"))),
    };
    Ok(Request {
        oneway: flag(&obj, "oneway")?,
        more: flag(&obj, "more")?,
        parameters: obj.remove("parameters").unwrap_or(Value::Null),
        method,
    })
}

/// The JSON text of a request (without the terminating NUL).
pub fn request_text(r: &Request) -> Vec<u8> {
    let mut m = Map::new();
    m.insert("method".into(), Value::String(r.method.clone()));
    if !r.parameters.is_null() {
        m.insert("parameters".into(), r.parameters.clone());
    }
    if r.oneway {
        m.insert("oneway".into(), Value::Bool(true));
    }
    if r.more {
        m.insert("more".into(), Value::Bool(true));
    }
    serde_json::to_vec(&Value::Object(m)).expect("JSON values serialize")
}

/// Take the first complete message (up to its NUL, which is dropped) off the front of `buf`.
pub fn next_message(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let end = buf.iter().position(|b| *b == 0)?;
    let mut msg: Vec<u8> = buf.drain(..=end).collect();
    msg.pop();
    Some(msg)
}
