//! `io.credns.Registry`: host UID/GID ranges for user namespaces, leased by a name or by a user
//! namespace. Its IDL, its records as the wire carries them, its error names, and
//! [`RegistryClient`], the typed blocking client.

use std::os::fd::BorrowedFd;
use std::path::Path;
use std::time::Duration;

use credns_idmap::IdMap;
use credns_varlink::Client;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::Error;

/// The interface name.
pub const INTERFACE: &str = "io.credns.Registry";

/// Where the daemon listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/credns/io.credns.Registry";

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
  origin: (allocated, registered),
  # Delegated to its owner as subordinate ids (io.credns.Subid).
  delegated: ?bool,
  # What on the host now shares its ids (added after the allocation), one sentence each.
  conflicts: ?[]string
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
# Asking again with the same lease returns the same allocation, with fresh false.
method Allocate(
  name: ?string,
  userNamespaceFileDescriptor: ?int,
  pidFileDescriptor: ?int,
  size: ?int,
  high: ?bool,
  label: ?string,
  writeMaps: ?bool,
  # keyring: also make (or find) the allocation's container keyring, its serial in the reply.
  keyring: ?bool
) -> (allocation: Allocation, fresh: bool, keyring: ?int)

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

# The container keyring ("_container", owned by the allocation's owner) of an allocation the
# caller may see; create makes it if there is none. Its owner manages it with keyctl; the
# daemon drops it when the allocation is released.
method Keyring(id: ?int, name: ?string, create: ?bool) -> (keyring: int, allocation: Allocation)

# Where a container's request_key upcalls of a type go: description and callout are patterns
# (* any run, ? one character, \ escapes); handler an absolute path and its arguments, run
# on the host as the allocation's owner (inside: in the container, as its root); timeout in
# seconds, after which the key is negated.
type KeyRoute (
  type: string,
  description: string,
  callout: string,
  handler: []string,
  inside: bool,
  timeout: int
)

# An allocation's key routes, in the order they are tried.
method KeyRoutes(id: ?int, name: ?string) -> (routes: []KeyRoute, allocation: Allocation)

# Add a route after the others.
method AddKeyRoute(id: ?int, name: ?string, route: KeyRoute) -> (routes: []KeyRoute)

# Remove the route at index (from 0).
method RemoveKeyRoute(id: ?int, name: ?string, index: int) -> (routes: []KeyRoute)

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
# The store cannot take writes now (full disk, I/O error); nothing was changed. Retry later.
error StoreUnavailable (reason: string, message: string)
# The daemon failed in a way no parameter explains.
error Internal (message: string)
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
    /// Creation stamp: a time (ns since the epoch) no earlier than the namespace's creation.
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
    /// Delegated to its owner as subordinate ids (`io.credns.Subid`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delegated: bool,
    /// What on the host now shares its ids (a user, group or subordinate range added after it
    /// was made), one sentence each; empty when nothing does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
}

impl AllocationInfo {
    /// The uid map this allocation is meant for: namespace ids from 0 onto `uid`, the top ids
    /// onto the high range.
    pub fn uid_map(&self) -> Result<IdMap, credns_idmap::Error> {
        IdMap::from_base_and_top(self.uid.into(), self.high.map(|h| h.uid.into()))
    }

    /// The gid map, as [`uid_map`](Self::uid_map).
    pub fn gid_map(&self) -> Result<IdMap, credns_idmap::Error> {
        IdMap::from_base_and_top(self.gid.into(), self.high.map(|h| h.gid.into()))
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

/// Names an allocation: `#N` or `N` is its number, anything else a name lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// By number.
    Id(u64),
    /// By name lease.
    Name(String),
}

impl Target {
    /// What a user types: `N` or `#N` is an allocation number, `#` followed by anything else
    /// is refused (it is almost surely a mistyped number; build [`Target::Name`] to name such
    /// a lease), anything else is a name.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(digits) = s.strip_prefix('#') {
            return digits.parse().map(Target::Id).map_err(|_| {
                format!("{s:?}: after '#' an allocation number is expected (digits only)")
            });
        }
        Ok(match s.parse() {
            Ok(n) => Target::Id(n),
            Err(_) => Target::Name(s.to_string()),
        })
    }

    /// The method parameters that name it.
    pub fn params(&self) -> Value {
        match self {
            Target::Id(i) => json!({ "id": i }),
            Target::Name(n) => json!({ "name": n }),
        }
    }
}

/// Options of an allocation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllocOptions {
    /// Ids wanted (the policy's default size if `None`).
    pub size: Option<u64>,
    /// Add a high-window range of the default size.
    pub high: bool,
    /// A label to record.
    pub label: Option<String>,
    /// Write the namespace's `uid_map` and `gid_map` (user-namespace leases only).
    pub write_maps: bool,
}

impl AllocOptions {
    fn params(&self) -> Map<String, Value> {
        let mut p = Map::new();
        if let Some(s) = self.size {
            p.insert("size".into(), s.into());
        }
        if self.high {
            p.insert("high".into(), true.into());
        }
        if let Some(l) = &self.label {
            p.insert("label".into(), l.clone().into());
        }
        if self.write_maps {
            p.insert("writeMaps".into(), true.into());
        }
        p
    }
}

/// The reply of `Allocate`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocated {
    /// The allocation.
    pub allocation: AllocationInfo,
    /// Made by this call (false: the lease already held it).
    #[serde(default)]
    pub fresh: bool,
    /// The container keyring's serial, when asked for.
    #[serde(default)]
    pub keyring: Option<i32>,
}

/// A key route as the wire carries it (`KeyRoute` in the IDL).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRouteInfo {
    /// The key type.
    #[serde(rename = "type")]
    pub key_type: String,
    /// The description's pattern.
    pub description: String,
    /// The callout information's pattern.
    pub callout: String,
    /// The handler command.
    pub handler: Vec<String>,
    /// Run inside the container.
    pub inside: bool,
    /// Seconds before the key is negated.
    pub timeout: u32,
}

/// The reply of `KeyRoutes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRoutesInfo {
    /// The routes, in the order they are tried.
    pub routes: Vec<KeyRouteInfo>,
    /// Their allocation.
    pub allocation: AllocationInfo,
}

/// The reply of `Keyring`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyringInfo {
    /// The container keyring's serial.
    pub keyring: i32,
    /// Its allocation.
    pub allocation: AllocationInfo,
}

impl std::ops::Deref for Allocated {
    type Target = AllocationInfo;

    fn deref(&self) -> &AllocationInfo {
        &self.allocation
    }
}

/// A connection to the registry daemon. Requests are answered in order, one at a time.
#[derive(Debug)]
pub struct RegistryClient {
    varlink: Client,
}

fn decode<T: serde::de::DeserializeOwned>(v: Value, field: &str) -> Result<T, Error> {
    let inner = match field {
        "" => v,
        f => v.get(f).cloned().unwrap_or(Value::Null),
    };
    serde_json::from_value(inner).map_err(|e| Error::Reply(format!("{field}: {e}")))
}

impl RegistryClient {
    /// Connect to the daemon's socket.
    pub fn connect(path: impl AsRef<Path>) -> Result<Self, Error> {
        Ok(Self::new(Client::connect(path)?))
    }

    /// Connect with a timeout for the connection and for every reply.
    pub fn connect_timeout(path: impl AsRef<Path>, timeout: Duration) -> Result<Self, Error> {
        Ok(Self::new(Client::connect_timeout(path, timeout)?))
    }

    /// Over an established varlink connection.
    pub fn new(varlink: Client) -> Self {
        RegistryClient { varlink }
    }

    /// The varlink connection (for other calls, raw tests).
    pub fn varlink(&mut self) -> &mut Client {
        &mut self.varlink
    }

    /// The varlink connection, for another interface the same daemon serves.
    pub fn into_varlink(self) -> Client {
        self.varlink
    }

    fn call(&mut self, method: &str, p: Value, fds: &[BorrowedFd<'_>]) -> Result<Value, Error> {
        Ok(self
            .varlink
            .call(&format!("{INTERFACE}.{method}"), p, fds)?)
    }

    /// The container keyring of `target` (made if `create` and there is none).
    pub fn keyring(&mut self, target: &Target, create: bool) -> Result<KeyringInfo, Error> {
        let mut p = target.params();
        if create {
            p["create"] = true.into();
        }
        decode(self.call("Keyring", p, &[])?, "")
    }

    /// The key routes of `target`, and its allocation.
    pub fn key_routes(&mut self, target: &Target) -> Result<KeyRoutesInfo, Error> {
        decode(self.call("KeyRoutes", target.params(), &[])?, "")
    }

    /// Add a key route to `target`; its routes after.
    pub fn add_key_route(
        &mut self,
        target: &Target,
        route: &KeyRouteInfo,
    ) -> Result<Vec<KeyRouteInfo>, Error> {
        let mut p = target.params();
        p["route"] = json!(route);
        decode(self.call("AddKeyRoute", p, &[])?, "routes")
    }

    /// Remove `target`'s key route at `index`; its routes after.
    pub fn remove_key_route(
        &mut self,
        target: &Target,
        index: usize,
    ) -> Result<Vec<KeyRouteInfo>, Error> {
        let mut p = target.params();
        p["index"] = json!(index);
        decode(self.call("RemoveKeyRoute", p, &[])?, "routes")
    }

    /// Allocate a range leased to `name`.
    pub fn allocate_name(&mut self, name: &str, opts: &AllocOptions) -> Result<Allocated, Error> {
        self.allocate_name_keyring(name, opts, false)
    }

    /// [`allocate_name`](Self::allocate_name), with `keyring` also the allocation's container
    /// keyring (made if there is none), in [`Allocated::keyring`].
    pub fn allocate_name_keyring(
        &mut self,
        name: &str,
        opts: &AllocOptions,
        keyring: bool,
    ) -> Result<Allocated, Error> {
        let mut p = opts.params();
        if keyring {
            p.insert("keyring".into(), true.into());
        }
        p.insert("name".into(), name.into());
        decode(self.call("Allocate", Value::Object(p), &[])?, "")
    }

    /// Allocate a range leased to the user namespace `userns` (an nsfs fd); `member` is a pidfd
    /// of a process inside it. With `opts.write_maps` the daemon writes the namespace's maps.
    pub fn allocate_userns(
        &mut self,
        userns: BorrowedFd<'_>,
        member: Option<BorrowedFd<'_>>,
        opts: &AllocOptions,
    ) -> Result<Allocated, Error> {
        self.allocate_userns_keyring(userns, member, opts, false)
    }

    /// [`allocate_userns`](Self::allocate_userns), with `keyring` also the allocation's
    /// container keyring (made if there is none), in [`Allocated::keyring`].
    pub fn allocate_userns_keyring(
        &mut self,
        userns: BorrowedFd<'_>,
        member: Option<BorrowedFd<'_>>,
        opts: &AllocOptions,
        keyring: bool,
    ) -> Result<Allocated, Error> {
        let mut p = opts.params();
        if keyring {
            p.insert("keyring".into(), true.into());
        }
        p.insert("userNamespaceFileDescriptor".into(), 0.into());
        let mut fds = vec![userns];
        if let Some(m) = member {
            p.insert("pidFileDescriptor".into(), 1.into());
            fds.push(m);
        }
        decode(self.call("Allocate", Value::Object(p), &fds)?, "")
    }

    /// Record ranges chosen elsewhere under a name lease (root only); `gid` defaults to `uid`.
    pub fn register_name(
        &mut self,
        name: &str,
        uid: Range,
        gid: Option<Range>,
    ) -> Result<AllocationInfo, Error> {
        let mut p = json!({ "name": name, "uid": uid });
        if let Some(g) = gid {
            p["gid"] = json!(g);
        }
        decode(self.call("Register", p, &[])?, "allocation")
    }

    /// Record ranges chosen elsewhere leased to a user namespace (root only).
    pub fn register_userns(
        &mut self,
        userns: BorrowedFd<'_>,
        member: Option<BorrowedFd<'_>>,
        uid: Range,
        gid: Option<Range>,
    ) -> Result<AllocationInfo, Error> {
        let mut p = json!({ "userNamespaceFileDescriptor": 0, "uid": uid });
        if let Some(g) = gid {
            p["gid"] = json!(g);
        }
        let mut fds = vec![userns];
        if let Some(m) = member {
            p["pidFileDescriptor"] = json!(1);
            fds.push(m);
        }
        decode(self.call("Register", p, &fds)?, "allocation")
    }

    /// Release an allocation; returns what was released.
    pub fn release(&mut self, target: &Target) -> Result<AllocationInfo, Error> {
        decode(self.call("Release", target.params(), &[])?, "allocation")
    }

    /// One allocation.
    pub fn show(&mut self, target: &Target) -> Result<AllocationInfo, Error> {
        decode(self.call("Show", target.params(), &[])?, "allocation")
    }

    /// The caller's allocations (all of them for root).
    pub fn list(&mut self) -> Result<Vec<AllocationInfo>, Error> {
        decode(self.call("List", json!({}), &[])?, "allocations")
    }

    /// Who holds host id `id`.
    pub fn who(&mut self, id: u32) -> Result<Vec<HolderInfo>, Error> {
        decode(self.call("Who", json!({ "id": id }), &[])?, "holders")
    }
}
