//! The `[[op]]` tables of a scenario.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::raw::*;
use super::{Expect, ScenarioOp};
use crate::caps::Cap;
use crate::keys::{KeyId, KeySpec};
use crate::ops::{MapKind, Op};
use crate::world::{TaskRef, World};
use crate::Error;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOp {
    by: Spanned<String>,
    op: Spanned<String>,
    path: Option<Spanned<String>>,
    access: Option<Spanned<String>>,
    eaccess: Option<bool>,
    mode: Option<Spanned<RawNum>>,
    uid: Option<Spanned<i64>>,
    gid: Option<Spanned<i64>>,
    ruid: Option<Spanned<i64>>,
    euid: Option<Spanned<i64>>,
    suid: Option<Spanned<i64>>,
    rgid: Option<Spanned<i64>>,
    egid: Option<Spanned<i64>>,
    sgid: Option<Spanned<i64>>,
    groups: Option<Spanned<Vec<i64>>>,
    target: Option<Spanned<String>>,
    signal: Option<Spanned<RawNum>>,
    name: Option<Spanned<String>>,
    text: Option<Spanned<String>>,
    ns: Option<Spanned<String>>,
    cap: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    keyring: Option<Spanned<String>>,
    #[serde(rename = "type")]
    ktype: Option<Spanned<String>>,
    description: Option<Spanned<String>>,
    payload: Option<Spanned<String>>,
    perm: Option<Spanned<RawNum>>,
    create: Option<bool>,
    expect: Option<Spanned<String>>,
    expect_output: Option<Spanned<String>>,
    note: Option<String>,
}

/// A key reference of an op: `@t`…`@us`, a serial number, or the name of a declared key or
/// of one an earlier `add_key` names.
fn need_key(
    c: &Ctx,
    w: &World,
    o: &Spanned<RawOp>,
    v: &Option<Spanned<String>>,
    field: &str,
    kind: &str,
    key_names: &[String],
) -> Result<KeyId, Error> {
    let s = v
        .as_ref()
        .ok_or_else(|| c.err(o.span(), format!("op \"{kind}\" needs `{field}`")))?;
    let id = KeyId::parse(s.get_ref());
    if let KeyId::Name(n) = &id {
        if w.key_by_name(n).is_none() && !key_names.contains(n) {
            return Err(c.err(
                s.span(),
                format!("no key called \"{n}\" (use a [[key]] name, a name given by an earlier add_key, @t, @p, @s, @u, @us or a serial number)"),
            ));
        }
    }
    Ok(id)
}

pub(super) fn parse_op(
    c: &Ctx,
    w: &World,
    o: &Spanned<RawOp>,
    created: &mut Vec<String>,
    key_names: &mut Vec<String>,
) -> Result<ScenarioOp, Error> {
    let r = o.get_ref();
    let by = task_ref(c, w, &r.by)?;
    let kind = r.op.get_ref().trim().to_ascii_lowercase();
    let need_path = || -> Result<String, Error> {
        let p = r
            .path
            .as_ref()
            .ok_or_else(|| c.err(o.span(), format!("op \"{kind}\" needs a `path`")))?;
        crate::world::normalise(p.get_ref())
            .ok_or_else(|| c.err(p.span(), "paths must be absolute and free of . and .."))
    };
    let need_target = || -> Result<TaskRef, Error> {
        let t = r
            .target
            .as_ref()
            .ok_or_else(|| c.err(o.span(), format!("op \"{kind}\" needs a `target` process")))?;
        task_ref(c, w, t)
    };
    let need_id = |v: &Option<Spanned<i64>>, what: &str| -> Result<u32, Error> {
        let s = v
            .as_ref()
            .ok_or_else(|| c.err(o.span(), format!("op \"{kind}\" needs `{what}`")))?;
        match opt_arg(c, v)? {
            Some(x) => Ok(x),
            None => Err(c.err(s.span(), format!("`{what}` cannot be -1 here"))),
        }
    };
    // Which optional fields each op may use (beyond by, op, expect, expect_output, note).
    let allowed: &[&str] = match kind.as_str() {
        "open" => &["path", "access"],
        "access" => &["path", "access", "eaccess"],
        "create" | "mkdir" => &["path", "mode"],
        "stat" | "exec" => &["path"],
        "chmod" => &["path", "mode"],
        "chown" => &["path", "uid", "gid"],
        "kill" => &["target", "signal"],
        "ptrace" | "proc_status" | "peercred" => &["target"],
        "setuid" => &["uid"],
        "setreuid" => &["ruid", "euid"],
        "setresuid" => &["ruid", "euid", "suid"],
        "setgid" => &["gid"],
        "setregid" => &["rgid", "egid"],
        "setresgid" => &["rgid", "egid", "sgid"],
        "setgroups" => &["groups"],
        "unshare" => &["name"],
        "write_uid_map" | "write_gid_map" | "write_setgroups" => &["target", "text"],
        "setns" => &["ns", "target"],
        "no_new_privs" | "getids" => &[],
        "capable" => &["ns", "cap"],
        "add_key" => &["keyring", "type", "description", "payload", "name"],
        "keyctl_read" | "keyctl_describe" => &["key"],
        "keyctl_update" => &["key", "payload"],
        "keyctl_search" => &["keyring", "type", "description"],
        "keyctl_link" | "keyctl_unlink" => &["key", "keyring"],
        "keyctl_setperm" => &["key", "perm"],
        "keyctl_chown" => &["key", "uid", "gid"],
        "keyctl_get_keyring_id" => &["key", "create"],
        _ => {
            return Err(c.err(
                r.op.span(),
                format!("unknown op \"{}\" (one of open, access, create, mkdir, stat, chmod, chown, exec, kill, ptrace, setuid, setreuid, setresuid, setgid, setregid, setresgid, setgroups, unshare, write_uid_map, write_gid_map, write_setgroups, setns, no_new_privs, getids, proc_status, peercred, capable, add_key, keyctl_read, keyctl_describe, keyctl_update, keyctl_search, keyctl_link, keyctl_unlink, keyctl_setperm, keyctl_chown, keyctl_get_keyring_id)", r.op.get_ref()),
            ))
        }
    };
    let present: Vec<(&str, Option<Range<usize>>)> = vec![
        ("path", r.path.as_ref().map(|v| v.span())),
        ("access", r.access.as_ref().map(|v| v.span())),
        ("eaccess", r.eaccess.map(|_| o.span())),
        ("mode", r.mode.as_ref().map(|v| v.span())),
        ("uid", r.uid.as_ref().map(|v| v.span())),
        ("gid", r.gid.as_ref().map(|v| v.span())),
        ("ruid", r.ruid.as_ref().map(|v| v.span())),
        ("euid", r.euid.as_ref().map(|v| v.span())),
        ("suid", r.suid.as_ref().map(|v| v.span())),
        ("rgid", r.rgid.as_ref().map(|v| v.span())),
        ("egid", r.egid.as_ref().map(|v| v.span())),
        ("sgid", r.sgid.as_ref().map(|v| v.span())),
        ("groups", r.groups.as_ref().map(|v| v.span())),
        ("target", r.target.as_ref().map(|v| v.span())),
        ("signal", r.signal.as_ref().map(|v| v.span())),
        ("name", r.name.as_ref().map(|v| v.span())),
        ("text", r.text.as_ref().map(|v| v.span())),
        ("ns", r.ns.as_ref().map(|v| v.span())),
        ("cap", r.cap.as_ref().map(|v| v.span())),
        ("key", r.key.as_ref().map(|v| v.span())),
        ("keyring", r.keyring.as_ref().map(|v| v.span())),
        ("type", r.ktype.as_ref().map(|v| v.span())),
        ("description", r.description.as_ref().map(|v| v.span())),
        ("payload", r.payload.as_ref().map(|v| v.span())),
        ("perm", r.perm.as_ref().map(|v| v.span())),
        ("create", r.create.map(|_| o.span())),
    ];
    for (field, span) in &present {
        if let Some(span) = span {
            if !allowed.contains(field) {
                return Err(c.err(
                    span.clone(),
                    format!(
                        "op \"{kind}\" does not take `{field}` (it takes: {})",
                        if allowed.is_empty() {
                            "nothing".to_string()
                        } else {
                            allowed.join(", ")
                        }
                    ),
                ));
            }
        }
    }
    let mut deferred_ns = None;
    let op = match kind.as_str() {
        "open" | "access" => {
            let mask = match &r.access {
                Some(a) => access_mask(c, a)?,
                None => 4,
            };
            if kind == "open" {
                if mask & 1 != 0 {
                    return Err(c.err(r.access.as_ref().map(|a| a.span()).unwrap_or(o.span()), "open takes access \"r\", \"w\" or \"rw\" (use op \"exec\" or \"access\" for x)"));
                }
                Op::Open {
                    path: need_path()?,
                    read: mask & 4 != 0 || mask == 0,
                    write: mask & 2 != 0,
                }
            } else {
                Op::Access {
                    path: need_path()?,
                    mode: mask,
                    eaccess: r.eaccess.unwrap_or(false),
                }
            }
        }
        "create" | "mkdir" => {
            let dir = kind == "mkdir";
            let mode = match &r.mode {
                Some(m) => parse_num(c, m, "mode")?,
                None => {
                    if dir {
                        0o777
                    } else {
                        0o666
                    }
                }
            };
            Op::Create {
                path: need_path()?,
                mode,
                dir,
            }
        }
        "stat" => Op::Stat { path: need_path()? },
        "exec" => Op::Exec { path: need_path()? },
        "chmod" => {
            let m = r
                .mode
                .as_ref()
                .ok_or_else(|| c.err(o.span(), "op \"chmod\" needs `mode`"))?;
            Op::Chmod {
                path: need_path()?,
                mode: parse_num(c, m, "mode")?,
            }
        }
        "chown" => Op::Chown {
            path: need_path()?,
            uid: opt_arg(c, &r.uid)?,
            gid: opt_arg(c, &r.gid)?,
        },
        "kill" => {
            let signal = match &r.signal {
                Some(s) => parse_signal(c, s)?,
                None => 15,
            };
            Op::Kill {
                target: need_target()?,
                signal,
            }
        }
        "ptrace" => Op::Ptrace {
            target: need_target()?,
        },
        "proc_status" => Op::ProcStatus {
            target: need_target()?,
        },
        "peercred" => Op::PeerCred {
            peer: need_target()?,
        },
        "setuid" => Op::Setuid {
            uid: need_id(&r.uid, "uid")?,
        },
        "setreuid" => Op::Setreuid {
            ruid: opt_arg(c, &r.ruid)?,
            euid: opt_arg(c, &r.euid)?,
        },
        "setresuid" => Op::Setresuid {
            ruid: opt_arg(c, &r.ruid)?,
            euid: opt_arg(c, &r.euid)?,
            suid: opt_arg(c, &r.suid)?,
        },
        "setgid" => Op::Setgid {
            gid: need_id(&r.gid, "gid")?,
        },
        "setregid" => Op::Setregid {
            rgid: opt_arg(c, &r.rgid)?,
            egid: opt_arg(c, &r.egid)?,
        },
        "setresgid" => Op::Setresgid {
            rgid: opt_arg(c, &r.rgid)?,
            egid: opt_arg(c, &r.egid)?,
            sgid: opt_arg(c, &r.sgid)?,
        },
        "setgroups" => {
            let g = r
                .groups
                .as_ref()
                .ok_or_else(|| c.err(o.span(), "op \"setgroups\" needs `groups`"))?;
            let mut v = Vec::new();
            for x in g.get_ref() {
                if !(0..u32::MAX as i64).contains(x) {
                    return Err(c.err(g.span(), format!("{x} is not a group id")));
                }
                v.push(*x as u32);
            }
            Op::Setgroups { groups: v }
        }
        "unshare" => {
            let name = match &r.name {
                Some(n) => {
                    if w.ns_by_name(n.get_ref()).is_some() || created.contains(n.get_ref()) {
                        return Err(c.err(
                            n.span(),
                            format!("a namespace called \"{}\" already exists", n.get_ref()),
                        ));
                    }
                    n.get_ref().clone()
                }
                None => format!("{}-ns{}", w.task(by).name, created.len() + 1),
            };
            created.push(name.clone());
            Op::UnshareUser { name }
        }
        "write_uid_map" | "write_gid_map" => {
            let target = match &r.target {
                Some(t) => task_ref(c, w, t)?,
                None => by,
            };
            let text = r
                .text
                .as_ref()
                .ok_or_else(|| c.err(o.span(), format!("op \"{kind}\" needs `text`")))?;
            Op::WriteMap {
                target,
                kind: if kind == "write_uid_map" {
                    MapKind::Uid
                } else {
                    MapKind::Gid
                },
                text: text.get_ref().clone(),
            }
        }
        "write_setgroups" => {
            let target = match &r.target {
                Some(t) => task_ref(c, w, t)?,
                None => by,
            };
            let text = r
                .text
                .as_ref()
                .ok_or_else(|| c.err(o.span(), "op \"write_setgroups\" needs `text`"))?;
            Op::WriteSetgroups {
                target,
                text: text.get_ref().clone(),
            }
        }
        "setns" | "capable" => {
            let ns = match (&r.ns, &r.target) {
                (Some(n), None) => match w.ns_by_name(n.get_ref()) {
                    Some(x) => x,
                    None if created.contains(n.get_ref()) => {
                        deferred_ns = Some(n.get_ref().clone());
                        w.init_ns()
                    }
                    None => {
                        return Err(
                            c.err(n.span(), format!("no namespace called \"{}\"", n.get_ref()))
                        )
                    }
                },
                (None, Some(t)) if kind == "setns" => {
                    let tr = task_ref(c, w, t)?;
                    w.task(tr).cred.user_ns
                }
                _ => {
                    return Err(c.err(
                        o.span(),
                        format!(
                            "op \"{kind}\" needs `ns` (a namespace name){}",
                            if kind == "setns" {
                                " or `target` (a process)"
                            } else {
                                ""
                            }
                        ),
                    ))
                }
            };
            if kind == "setns" {
                Op::Setns { ns }
            } else {
                let cs = r
                    .cap
                    .as_ref()
                    .ok_or_else(|| c.err(o.span(), "op \"capable\" needs `cap`"))?;
                let cap = Cap::parse(cs.get_ref()).ok_or_else(|| {
                    c.err(
                        cs.span(),
                        format!("unknown capability \"{}\"", cs.get_ref()),
                    )
                })?;
                Op::Capable { ns, cap }
            }
        }
        "no_new_privs" => Op::SetNoNewPrivs,
        "getids" => Op::GetIds,
        "add_key" => {
            let desc = r
                .description
                .as_ref()
                .map(|d| d.get_ref().clone())
                .unwrap_or_default();
            let name = r.name.as_ref().map(|n| n.get_ref().clone());
            if let Some(n) = &r.name {
                let nm = n.get_ref();
                if w.key_by_name(nm).is_some() || key_names.contains(nm) {
                    return Err(c.err(n.span(), format!("a key called \"{nm}\" already exists")));
                }
                if KeySpec::parse(nm).is_some() || nm.parse::<i64>().is_ok() {
                    return Err(c.err(
                        n.span(),
                        format!("key name \"{nm}\" must not be a number or an @ shorthand"),
                    ));
                }
                key_names.push(nm.clone());
            }
            Op::AddKey {
                ktype: key_type(c, &r.ktype)?,
                description: desc,
                payload: r
                    .payload
                    .as_ref()
                    .map(|p| p.get_ref().clone())
                    .unwrap_or_default(),
                keyring: need_key(c, w, o, &r.keyring, "keyring", &kind, key_names)?,
                name,
            }
        }
        "keyctl_read" => Op::KeyRead {
            key: need_key(c, w, o, &r.key, "key", &kind, key_names)?,
        },
        "keyctl_describe" => Op::KeyDescribe {
            key: need_key(c, w, o, &r.key, "key", &kind, key_names)?,
        },
        "keyctl_update" => Op::KeyUpdate {
            key: need_key(c, w, o, &r.key, "key", &kind, key_names)?,
            payload: r
                .payload
                .as_ref()
                .map(|p| p.get_ref().clone())
                .unwrap_or_default(),
        },
        "keyctl_search" => Op::KeySearch {
            keyring: need_key(c, w, o, &r.keyring, "keyring", &kind, key_names)?,
            ktype: key_type(c, &r.ktype)?,
            description: r
                .description
                .as_ref()
                .map(|d| d.get_ref().clone())
                .ok_or_else(|| c.err(o.span(), "op \"keyctl_search\" needs `description`"))?,
        },
        "keyctl_link" | "keyctl_unlink" => {
            let key = need_key(c, w, o, &r.key, "key", &kind, key_names)?;
            let keyring = need_key(c, w, o, &r.keyring, "keyring", &kind, key_names)?;
            if kind == "keyctl_link" {
                Op::KeyLink { key, keyring }
            } else {
                Op::KeyUnlink { key, keyring }
            }
        }
        "keyctl_setperm" => {
            let p = r
                .perm
                .as_ref()
                .ok_or_else(|| c.err(o.span(), "op \"keyctl_setperm\" needs `perm`"))?;
            Op::KeySetperm {
                key: need_key(c, w, o, &r.key, "key", &kind, key_names)?,
                perm: parse_perm(c, p)?,
            }
        }
        "keyctl_chown" => Op::KeyChown {
            key: need_key(c, w, o, &r.key, "key", &kind, key_names)?,
            uid: opt_arg(c, &r.uid)?,
            gid: opt_arg(c, &r.gid)?,
        },
        "keyctl_get_keyring_id" => Op::KeyGetId {
            key: need_key(c, w, o, &r.key, "key", &kind, key_names)?,
            create: r.create.unwrap_or(false),
        },
        _ => unreachable!("checked above"),
    };
    let expect = match &r.expect {
        Some(e) => Some(Expect::parse(e.get_ref()).ok_or_else(|| c.err(e.span(), format!("expect \"{}\": use allowed, denied, unknown or an errno name (EPERM, EACCES, …)", e.get_ref())))?),
        None => None,
    };
    // The op as written, for reports.
    let mut text = format!("{}: {kind}", r.by.get_ref());
    for (field, span) in &present {
        if let Some(span) = span {
            if *field == "create" {
                text.push_str(&format!(" create={}", r.create.unwrap_or(false)));
                continue;
            }
            if *field == "eaccess" {
                text.push_str(" eaccess");
                continue;
            }
            let raw = c.text.get(span.clone()).unwrap_or("?").trim_matches('"');
            text.push_str(&format!(" {field}={raw}"));
        }
    }
    if let Some(n) = &r.note {
        text.push_str(&format!("  # {n}"));
    }
    Ok(ScenarioOp {
        by,
        op,
        deferred_ns,
        text,
        expect,
        expect_output: r.expect_output.as_ref().map(|e| e.get_ref().clone()),
        line: c.line(&o.span()),
    })
}
