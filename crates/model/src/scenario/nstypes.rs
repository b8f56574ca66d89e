//! The `[[other_namespace]]` table (namespaces of the types other than user) and the
//! operations on them: `unshare_ns`, `setns_ns`, `sethostname`, `bind`.

use serde::Deserialize;
use toml::Spanned;

use super::op_args::OpSpec;
use super::raw::{ns_ref, task_ref, Ctx};
use crate::ops::{NsType, TypedNsRef};
use crate::world::World;
use crate::{Error, Op};

/// `[[other_namespace]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOtherNs {
    name: Spanned<String>,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    /// The owning user namespace (default `init`).
    owner: Option<Spanned<String>>,
    /// For a pid namespace: its parent (default the initial one).
    parent: Option<Spanned<String>>,
    /// The processes in it.
    members: Option<Vec<Spanned<String>>>,
    /// UTS: the hostname.
    hostname: Option<Spanned<String>>,
    /// Network: `net.ipv4.ip_unprivileged_port_start`.
    ip_unprivileged_port_start: Option<Spanned<u32>>,
}

fn kind(c: &Ctx, k: &Spanned<String>) -> Result<NsType, Error> {
    NsType::parse(k.get_ref()).ok_or_else(|| {
        c.err(
            k.span(),
            format!(
                "namespace type \"{}\": one of mnt, net, uts, ipc, pid, cgroup, time (user namespaces are [[namespace]])",
                k.get_ref()
            ),
        )
    })
}

fn typed_ref(c: &Ctx, w: &World, kind: NsType, n: &Spanned<String>) -> Result<TypedNsRef, Error> {
    w.typed_ns_by_name(kind, n.get_ref()).ok_or_else(|| {
        c.err(
            n.span(),
            format!("no {} namespace called \"{}\"", kind.name(), n.get_ref()),
        )
    })
}

/// Declare one `[[other_namespace]]` (after the processes, which it lists as members). The
/// name `init` is the initial namespace of that type: its settings may be declared.
pub(super) fn declare(c: &Ctx, w: &mut World, o: &Spanned<RawOtherNs>) -> Result<(), Error> {
    let o = o.get_ref();
    let k = kind(c, &o.kind)?;
    let owner = match &o.owner {
        Some(n) => ns_ref(c, w, n)?,
        None => w.init_ns(),
    };
    let r = if o.name.get_ref() == "init" {
        if owner != w.init_ns() {
            return Err(c.err(
                o.name.span(),
                "the initial namespaces belong to the initial user namespace",
            ));
        }
        typed_ref(c, w, k, &o.name)?
    } else {
        let parent = match (&o.parent, k) {
            (None, _) => None,
            (Some(p), NsType::Pid) => Some(typed_ref(c, w, k, p)?),
            (Some(p), _) => {
                return Err(c.err(p.span(), "only a pid namespace has a `parent`"));
            }
        };
        w.add_typed_ns(k, o.name.get_ref(), owner, parent)
            .map_err(|e| c.model(o.name.span(), e))?
    };
    settings(c, w, o, k, r)?;
    for m in o.members.iter().flatten() {
        let t = task_ref(c, w, m)?;
        w.join_typed_ns(t, r);
    }
    Ok(())
}

fn settings(c: &Ctx, w: &mut World, o: &RawOtherNs, k: NsType, r: TypedNsRef) -> Result<(), Error> {
    if let Some(h) = &o.hostname {
        if k != NsType::Uts {
            return Err(c.err(h.span(), "only a uts namespace has a `hostname`"));
        }
        if h.get_ref().len() > 64 {
            return Err(c.err(h.span(), "a hostname is at most 64 bytes (__NEW_UTS_LEN)"));
        }
        w.typed_ns_mut(r).hostname = Some(h.get_ref().clone());
    }
    if let Some(p) = &o.ip_unprivileged_port_start {
        if k != NsType::Net {
            return Err(c.err(
                p.span(),
                "only a net namespace has `ip_unprivileged_port_start`",
            ));
        }
        if *p.get_ref() > 65535 {
            return Err(c.err(
                p.span(),
                "ip_unprivileged_port_start is at most 65535 (its sysctl's range)",
            ));
        }
        w.typed_ns_mut(r).ip_unprivileged_port_start = *p.get_ref();
    }
    Ok(())
}

/// `unshare_ns`: `type`, and the new namespace's `name`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UnshareNsArgs {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    name: Option<Spanned<String>>,
}

/// `setns_ns`: `type` and the namespace's `ns` name (declared in `[[other_namespace]]`, or
/// `init`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SetnsNsArgs {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    ns: Spanned<String>,
}

/// `sethostname`: the new `name`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SethostnameArgs {
    name: Spanned<String>,
}

/// `bind`: a TCP `port` (on 0.0.0.0).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BindArgs {
    port: Spanned<i64>,
}

/// `mount`: a new instance of `type` on `path`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MountArgs {
    #[serde(rename = "type")]
    fs_type: Spanned<String>,
    path: Spanned<String>,
}

/// `remount`: a bind remount of `path` with the flags given (missing: cleared).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RemountArgs {
    path: Spanned<String>,
    read_only: Option<bool>,
    nosuid: Option<bool>,
    noexec: Option<bool>,
}

/// The [`Op`] of one of these operations; `n` numbers unnamed new namespaces.
pub(super) fn op(c: &Ctx, w: &World, by: &str, spec: &OpSpec, n: usize) -> Result<Op, Error> {
    Ok(match spec {
        OpSpec::UnshareNs(a) => {
            let k = kind(c, &a.kind)?;
            let name = match &a.name {
                Some(n) => n.get_ref().clone(),
                None => format!("{by}-{}{n}", k.name()),
            };
            Op::UnshareNs { kind: k, name }
        }
        OpSpec::SetnsNs(a) => {
            let k = kind(c, &a.kind)?;
            Op::SetnsNs {
                ns: typed_ref(c, w, k, &a.ns)?,
            }
        }
        OpSpec::Sethostname(a) => Op::Sethostname {
            name: a.name.get_ref().clone(),
        },
        OpSpec::Bind(a) => {
            let p = *a.port.get_ref();
            if !(0..=65535).contains(&p) {
                return Err(c.err(a.port.span(), format!("port {p} is not 0..=65535")));
            }
            Op::BindPort { port: p as u16 }
        }
        OpSpec::Mount(a) => Op::MountNew {
            fs_type: a.fs_type.get_ref().clone(),
            path: a.path.get_ref().clone(),
        },
        OpSpec::Umount(a) => Op::Umount {
            path: a.path.get_ref().clone(),
        },
        OpSpec::Remount(a) => Op::Remount {
            path: a.path.get_ref().clone(),
            flags: crate::ops::RemountFlags {
                read_only: a.read_only.unwrap_or(false),
                nosuid: a.nosuid.unwrap_or(false),
                noexec: a.noexec.unwrap_or(false),
            },
        },
        _ => unreachable!("dispatched by OpCx::op"),
    })
}
