//! `io.systemd.NamespaceResource` on its own socket, so programs written for
//! systemd-nsresourced (systemd 256+) get their ranges from credns on hosts without it:
//! `AllocateUserRange` (a range for a fresh user namespace, as an ordinary registry allocation
//! leased to that namespace, with its maps written by the daemon), `RegisterUserNamespace` and
//! `AddMountToUserNamespace`. The same socket answers `io.systemd.UserDatabase` for the
//! service named as its file.
//!
//! Limits (DESIGN.md): registrations without a range and added mounts are kept in memory (a
//! restart forgets them); credns has no LSM program restricting what a namespace writes, so
//! adding a mount records it and restricts nothing; `delegateContainerRanges`,
//! `AddControlGroupToUserNamespace` and `AddNetworkToUserNamespace` are not offered.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};

use credns_idmap::{Extent, IdMap};
use credns_registry::{AllocRequest, Allocation, Lease, Registry, Selector};
use credns_sys::maps::write_userns_maps;
use credns_sys::pidfd::PidFd;
use credns_sys::{UnshareOptions, UserNsFd, UsernsChild};
use credns_varlink::{Call, ErrorReply, Interface};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::daemon::Inner;
use crate::errors::registry_error;
use crate::methods::{principal, Watch};

/// The interface name.
pub const INTERFACE: &str = "io.systemd.NamespaceResource";

/// Longest namespace name (nsresourced's user names are `ns-NAME-N`).
const MAX_NAME: usize = 16;

/// Registrations without a range one user may hold; the oldest goes first.
const MAX_REGISTRATIONS: usize = 128;

const IDL: &str = r#"# Transient UID ranges for user namespaces, as systemd-nsresourced offers them, from credns.
interface io.systemd.NamespaceResource

# Assign a range of size ids (1 or 65536) to a user namespace of the caller's with no maps yet,
# mapped from target (default 0) inside it; an ordinary credns allocation leased to it.
method AllocateUserRange(
  name: string,
  mangleName: ?bool,
  size: int,
  target: ?int,
  userNamespaceFileDescriptor: int,
  delegateContainerRanges: ?int
) -> (name: ?string)

# Register a user namespace whose maps are written already, for resources to be added.
method RegisterUserNamespace(name: string, mangleName: ?bool, userNamespaceFileDescriptor: int) -> (
  name: ?string
)

# Allowlist a mount for a user namespace that has a range (recorded; credns restricts no writes).
method AddMountToUserNamespace(userNamespaceFileDescriptor: int, mountFileDescriptor: int) -> ()

error UserNamespaceInterfaceNotSupported()
error NameExists()
error UserNamespaceExists()
error DynamicRangeUnavailable()
error NoDynamicRange()
error UserNamespaceNotRegistered()
error UserNamespaceWithoutUserRange()
error TooManyDelegations()
"#;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AllocateParams {
    name: String,
    mangle_name: Option<bool>,
    size: u64,
    target: Option<u64>,
    user_namespace_file_descriptor: u64,
    delegate_container_ranges: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RegisterParams {
    name: String,
    mangle_name: Option<bool>,
    user_namespace_file_descriptor: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AddMountParams {
    user_namespace_file_descriptor: u64,
    mount_file_descriptor: u64,
}

fn error(name: &str) -> ErrorReply {
    ErrorReply::new(INTERFACE, name, json!({}))
}

fn invalid(parameter: &str, message: impl Into<String>) -> ErrorReply {
    ErrorReply::invalid_parameter_message(parameter, message)
}

fn permission_denied(message: String) -> ErrorReply {
    ErrorReply::new(
        "org.varlink.service",
        "PermissionDenied",
        json!({ "message": message }),
    )
}

/// A name fit for a user name and a file name: `[A-Za-z_][A-Za-z0-9_-]*`, at most 16 bytes;
/// with `mangle`, other characters become `_` and the name is shortened.
pub(crate) fn namespace_name(name: &str, mangle: bool) -> Option<String> {
    let fits = |n: &str| {
        let mut cs = n.chars();
        n.len() <= MAX_NAME
            && cs
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if fits(name) {
        return Some(name.to_string());
    }
    if !mangle {
        return None;
    }
    let mut m: String = name
        .chars()
        .map(|c| match c {
            c if c.is_ascii_alphanumeric() || c == '-' => c,
            _ => '_',
        })
        .collect();
    if !m.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        m.insert(0, '_');
    }
    m.truncate(MAX_NAME);
    fits(&m).then_some(m)
}

/// A namespace registered without a range, or a leased one's added mounts.
#[derive(Debug, Default)]
struct Registration {
    owner: u32,
    name: String,
    ns_id: Option<u64>,
    has_range: bool,
    /// Added mounts, by device and inode of their root.
    mounts: Vec<(u64, u64)>,
}

/// `io.systemd.NamespaceResource` over the daemon's registry.
pub(crate) struct NsResourceInterface {
    inner: Arc<Inner>,
    /// By the namespace's nsfs device and inode.
    registered: Mutex<Vec<((u64, u64), Registration)>>,
}

/// The user namespace passed as descriptor `i`, the caller's (or anyone's, for root).
fn callers_userns(call: &mut Call<'_>, i: u64) -> Result<UserNsFd, ErrorReply> {
    let param = "userNamespaceFileDescriptor";
    let fd = call
        .take_fd(i)
        .ok_or_else(|| invalid(param, format!("no file descriptor {i} came with the call")))?;
    let userns = UserNsFd::from_owned(fd);
    let owner = userns
        .owner_uid()
        .map_err(|e| invalid(param, format!("not a user namespace: {e}")))?;
    let uid = call.peer().uid;
    if uid != 0 && owner != uid {
        return Err(permission_denied(format!(
            "the user namespace is owned by uid {owner}, not by the caller (uid {uid})"
        )));
    }
    Ok(userns)
}

/// The allocation leased to the namespace `(dev, ino)` with kernel id `ns_id`, if any.
fn leased(reg: &Registry, key: (u64, u64), ns_id: Option<u64>) -> Option<&Allocation> {
    reg.list().find(|a| match a.lease {
        Lease::UserNs { dev, ino, .. } => {
            (dev, ino) == key && (a.ns_id.is_none() || ns_id.is_none() || a.ns_id == ns_id)
        }
        Lease::Name(_) => false,
    })
}

impl NsResourceInterface {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        NsResourceInterface {
            inner,
            registered: Mutex::new(Vec::new()),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Vec<((u64, u64), Registration)>> {
        self.registered.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record `r` for namespace `key`; a user's oldest record goes beyond the limit.
    fn insert(t: &mut Vec<((u64, u64), Registration)>, key: (u64, u64), r: Registration) -> usize {
        let mine: Vec<usize> = (0..t.len()).filter(|&i| t[i].1.owner == r.owner).collect();
        if mine.len() >= MAX_REGISTRATIONS {
            t.remove(mine[0]);
        }
        t.push((key, r));
        t.len() - 1
    }

    /// Whether `owner` already named a live registration or allocation `name`.
    fn name_taken(&self, reg: &Registry, owner: u32, name: &str) -> bool {
        let allocated = reg.list().any(|a| {
            a.owner == owner
                && a.label.as_deref() == Some(name)
                && matches!(a.lease, Lease::UserNs { .. })
        });
        allocated
            || self
                .table()
                .iter()
                .any(|(_, r)| r.owner == owner && r.name == name && !r.has_range)
    }

    /// Why a range may not be allocated to namespace `key` under `name` for `uid`, if so.
    fn refusal(
        &self,
        reg: &Registry,
        key: (u64, u64),
        ns_id: Option<u64>,
        uid: u32,
        name: &str,
    ) -> Result<(), ErrorReply> {
        if leased(reg, key, ns_id).is_some()
            || self
                .table()
                .iter()
                .any(|(k, r)| *k == key && r.ns_id == ns_id)
        {
            return Err(error("UserNamespaceExists"));
        }
        if self.name_taken(reg, uid, name) {
            return Err(error("NameExists"));
        }
        Ok(())
    }

    fn allocate(&self, call: &mut Call<'_>) -> Result<Value, ErrorReply> {
        let p: AllocateParams = call.parameters_as()?;
        if p.size != 1 && p.size != 65536 {
            return Err(invalid("size", "must be 1 or 65536"));
        }
        match p.delegate_container_ranges {
            Some(n) if n > 16 => return Err(error("TooManyDelegations")),
            Some(n) if n > 0 => {
                return Err(invalid(
                    "delegateContainerRanges",
                    "credns delegates no container ranges through this interface",
                ))
            }
            _ => {}
        }
        let target = p.target.unwrap_or(0);
        if target + p.size > 4_294_967_295 {
            return Err(invalid("target", "the range would pass 4294967294"));
        }
        let name = namespace_name(&p.name, p.mangle_name.unwrap_or(false))
            .ok_or_else(|| invalid("name", "not a valid user namespace name"))?;
        let userns = callers_userns(call, p.user_namespace_file_descriptor)?;
        let uid = call.peer().uid;
        let id = userns
            .id()
            .map_err(|e| invalid("userNamespaceFileDescriptor", e.to_string()))?;
        let ns_id = userns.ns_id().ok().flatten();
        let key = (id.dev, id.ino);
        // Refused before any process is forked for it (and checked again under the lock).
        self.inner
            .methods
            .read(|reg| self.refusal(reg, key, ns_id, uid, &name))?;
        // A process of ours inside the namespace, through whose /proc the maps are written: the
        // caller's namespace may have no process yet (systemd's callers pass an empty one).
        let opts = UnshareOptions {
            new_userns: false,
            ..UnshareOptions::default()
        };
        let fail = crate::errors::internal;
        let helper = UsernsChild::spawn(&opts).map_err(|e| fail(e.to_string()))?;
        helper
            .setns_user(userns.as_fd())
            .map_err(|e| fail(e.to_string()))?
            .map_err(|e| fail(format!("entering the user namespace: {e}")))?;
        let member = PidFd::open(helper.pid()).map_err(|e| fail(e.to_string()))?;
        let m = &self.inner.methods;
        let created_ns = match ns_id {
            Some(_) => crate::methods::now_ns(),
            None => member
                .start_time_ns(&m.procfs)
                .map_err(|e| fail(e.to_string()))?,
        };
        let lease = Lease::UserNs {
            dev: id.dev,
            ino: id.ino,
            created_ns,
        };
        let key = (id.dev, id.ino);
        let got = m.with(|reg| {
            if leased(reg, key, ns_id).is_some()
                || self
                    .table()
                    .iter()
                    .any(|(k, r)| *k == key && r.ns_id == ns_id)
            {
                return Err(error("UserNamespaceExists"));
            }
            if self.name_taken(reg, uid, &name) {
                return Err(error("NameExists"));
            }
            let mut req = AllocRequest::new(lease, uid);
            req.principal = Some(principal(reg, uid));
            req.ns_id = ns_id;
            req.size = Some(p.size);
            req.label = Some(name.clone());
            let a = reg.allocate(&req).map_err(|e| match e {
                credns_registry::Error::PoolExhausted { .. }
                | credns_registry::Error::QuotaExceeded { .. } => error("DynamicRangeUnavailable"),
                e => registry_error(e),
            })?;
            let map = |start: u32| {
                IdMap::new(vec![Extent {
                    first: target as u32,
                    lower_first: start,
                    count: p.size as u32,
                }])
            };
            let written = map(a.uid.start)
                .and_then(|u| Ok((u, map(a.gid.start)?)))
                .map_err(|e| e.to_string())
                .and_then(|(u, g)| {
                    write_userns_maps(&m.procfs, &member, &userns, &u, &g)
                        .map_err(|e| e.to_string())
                });
            if let Err(why) = written {
                reg.release(&Selector::Id(a.id)).map_err(registry_error)?;
                return Err(invalid(
                    "userNamespaceFileDescriptor",
                    format!("writing its maps failed (nothing allocated): {why}"),
                ));
            }
            Ok(a)
        });
        drop(helper);
        let a = got?;
        // Followed like every namespace lease: released once nothing holds the namespace.
        let w = Watch {
            alloc: a.id,
            created_ns,
            ns_id,
        };
        // Its only known process (our helper) has exited: the next batch looks in /proc for
        // what holds the namespace (the caller's descriptor, its processes).
        m.leases.watch(key, w, userns, member);
        Ok(json!({ "name": name }))
    }

    fn register(&self, call: &mut Call<'_>) -> Result<Value, ErrorReply> {
        let p: RegisterParams = call.parameters_as()?;
        let name = namespace_name(&p.name, p.mangle_name.unwrap_or(false))
            .ok_or_else(|| invalid("name", "not a valid user namespace name"))?;
        let userns = callers_userns(call, p.user_namespace_file_descriptor)?;
        let uid = call.peer().uid;
        let id = userns
            .id()
            .map_err(|e| invalid("userNamespaceFileDescriptor", e.to_string()))?;
        let ns_id = userns.ns_id().ok().flatten();
        let key = (id.dev, id.ino);
        self.inner.methods.read(|reg| {
            // A namespace inode reused by a new namespace: the old registration goes.
            self.table().retain(|(k, r)| *k != key || r.ns_id == ns_id);
            if leased(reg, key, ns_id).is_some() || self.table().iter().any(|(k, _)| *k == key) {
                return Err(error("UserNamespaceExists"));
            }
            if self.name_taken(reg, uid, &name) {
                return Err(error("NameExists"));
            }
            let r = Registration {
                owner: uid,
                name: name.clone(),
                ns_id,
                has_range: false,
                mounts: Vec::new(),
            };
            Self::insert(&mut self.table(), key, r);
            Ok(json!({ "name": name }))
        })
    }

    fn add_mount(&self, call: &mut Call<'_>) -> Result<Value, ErrorReply> {
        let p: AddMountParams = call.parameters_as()?;
        let userns = callers_userns(call, p.user_namespace_file_descriptor)?;
        let mount: OwnedFd = call.take_fd(p.mount_file_descriptor).ok_or_else(|| {
            invalid(
                "mountFileDescriptor",
                "no such file descriptor came with the call",
            )
        })?;
        let st = std::fs::File::from(mount)
            .metadata()
            .map_err(|e| invalid("mountFileDescriptor", e.to_string()))?;
        let root = {
            use std::os::unix::fs::MetadataExt;
            (st.dev(), st.ino())
        };
        let id = userns
            .id()
            .map_err(|e| invalid("userNamespaceFileDescriptor", e.to_string()))?;
        let ns_id = userns.ns_id().ok().flatten();
        let key = (id.dev, id.ino);
        let uid = call.peer().uid;
        self.inner.methods.read(|reg| {
            let a = leased(reg, key, ns_id);
            let mut t = self.table();
            let registered = t.iter().position(|(k, r)| *k == key && r.ns_id == ns_id);
            let i = match (a, registered) {
                (None, None) => return Err(error("UserNamespaceNotRegistered")),
                (None, Some(i)) if !t[i].1.has_range => {
                    return Err(error("UserNamespaceWithoutUserRange"))
                }
                (_, Some(i)) => i,
                (Some(a), None) => {
                    let r = Registration {
                        owner: a.owner,
                        name: a.label.clone().unwrap_or_default(),
                        ns_id,
                        has_range: true,
                        mounts: Vec::new(),
                    };
                    Self::insert(&mut t, key, r)
                }
            };
            if uid != 0 && t[i].1.owner != uid {
                return Err(permission_denied(format!(
                    "the user namespace was registered by uid {}",
                    t[i].1.owner
                )));
            }
            if !t[i].1.mounts.contains(&root) {
                t[i].1.mounts.push(root);
            }
            Ok(json!({}))
        })
    }
}

impl Interface for NsResourceInterface {
    fn name(&self) -> &str {
        INTERFACE
    }

    fn description(&self) -> &str {
        IDL
    }

    fn call(&self, call: &mut Call<'_>) -> Result<Value, ErrorReply> {
        match call.method() {
            "AllocateUserRange" => self.allocate(call),
            "RegisterUserNamespace" => self.register(call),
            "AddMountToUserNamespace" => self.add_mount(call),
            m => Err(ErrorReply::method_not_found(&format!("{INTERFACE}.{m}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::namespace_name;
    use proptest::prelude::*;

    #[test]
    fn names_are_checked_or_mangled() {
        assert_eq!(namespace_name("web", false).as_deref(), Some("web"));
        assert_eq!(namespace_name("my pod:1", false), None);
        assert_eq!(
            namespace_name("my pod:1", true).as_deref(),
            Some("my_pod_1")
        );
        assert_eq!(namespace_name("1abc", true).as_deref(), Some("_1abc"));
        assert_eq!(namespace_name("", false), None);
        assert_eq!(
            namespace_name("a-very-long-name-indeed", true).as_deref(),
            Some("a-very-long-name")
        );
    }

    proptest! {
        #[test]
        fn a_mangled_name_is_valid_and_stable(s in "\\PC{0,40}") {
            if let Some(n) = namespace_name(&s, true) {
                prop_assert_eq!(namespace_name(&n, false), Some(n.clone()));
            }
        }
    }
}
