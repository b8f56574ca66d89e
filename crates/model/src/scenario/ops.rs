//! The `[[op]]` tables of a scenario: one struct per operation, chosen by the table's `op`
//! field. Serde decides which fields an operation takes (`deny_unknown_fields`) and which it
//! needs; this module turns the fields into an [`Op`] and errors into ones that name the
//! operation.
//!
//! The `op` field is lifted out of the table and becomes the key of a one-entry table, so the
//! operation is an externally tagged enum: serde's internally tagged enums buffer the table
//! and lose toml's positions, and every error here must point at the offending text.

use std::borrow::Cow;
use std::ops::Range;

use serde::de::{DeserializeOwned, IntoDeserializer};
use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::op_args::*;
use super::raw::*;
use super::{Expect, ScenarioOp};
use crate::caps::Cap;
use crate::keys::{KeyId, KeySpec};
use crate::ops::{MapKind, Op};
use crate::world::{NsRef, TaskRef, World};
use crate::Error;

/// The fields of an `[[op]]` table that are not the operation's own.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpCommon {
    by: Spanned<String>,
    op: Spanned<String>,
    expect: Option<Spanned<String>>,
    expect_output: Option<Spanned<String>>,
    note: Option<String>,
}

/// Names that earlier ops of the scenario create: namespaces (`unshare`) and keys
/// (`add_key` with `name`), so later ops may refer to them.
#[derive(Default)]
pub(super) struct Earlier {
    pub(super) namespaces: Vec<String>,
    pub(super) keys: Vec<String>,
    /// Connections `connect` makes: (name, the caller, the target).
    pub(super) sockets: Vec<(String, TaskRef, TaskRef)>,
    /// Operations on namespaces of the other types so far (numbers unnamed new ones).
    pub(super) typed: usize,
}

/// The whole `[[op]]` array, with positions: the scenario's structure is deserialized
/// without it, and each table is taken apart here.
pub(super) fn op_tables<'t>(c: &Ctx, text: &'t str) -> Result<Vec<Spanned<DeValue<'t>>>, Error> {
    let doc = DeTable::parse(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        c.err(span, e.message().trim().to_string())
    })?;
    let Some(ops) = doc.into_inner().remove("op") else {
        return Ok(Vec::new());
    };
    match ops.into_inner() {
        DeValue::Array(a) => Ok(a.to_vec()),
        _ => Ok(Vec::new()),
    }
}

/// Parse one `[[op]]` table.
pub(super) fn parse_op(
    c: &Ctx,
    w: &World,
    table: &Spanned<DeValue>,
    earlier: &mut Earlier,
) -> Result<ScenarioOp, Error> {
    let span = table.span();
    let Some(t) = table.get_ref().as_table() else {
        return Err(c.err(span, "an [[op]] entry must be a table"));
    };
    let (common, args) = split_common(t);
    let common: OpCommon = deserialize(c, common, span.clone())?;
    let by = task_ref(c, w, &common.by)?;
    let kind = common.op.get_ref().trim().to_ascii_lowercase();
    let spec = op_spec(c, &common.op, &kind, &args, span.clone())?;
    let mut cx = OpCx {
        c,
        w,
        by,
        kind: &kind,
        span: span.clone(),
        earlier,
    };
    let (op, deferred_ns) = cx.op(&spec)?;
    let expect = match &common.expect {
        Some(e) => Some(Expect::parse(e.get_ref()).ok_or_else(|| c.err(e.span(), format!("expect \"{}\": use allowed, denied, unknown or an errno name (EPERM, EACCES, …)", e.get_ref())))?),
        None => None,
    };
    Ok(ScenarioOp {
        by,
        op,
        deferred_ns,
        text: op_text(c, &common, &kind, spec.fields(), &args),
        expect,
        expect_output: common.expect_output.as_ref().map(|e| e.get_ref().clone()),
        line: c.line(&span),
    })
}

/// The table's common fields, and the operation's own.
fn split_common<'t>(t: &DeTable<'t>) -> (DeTable<'t>, DeTable<'t>) {
    let common = field_names::<OpCommon>();
    let mut mine = DeTable::new();
    let mut theirs = DeTable::new();
    for (k, v) in t.iter() {
        if common.contains(&k.get_ref().as_ref()) {
            mine.insert(k.clone(), v.clone());
        } else {
            theirs.insert(k.clone(), v.clone());
        }
    }
    (mine, theirs)
}

/// Deserialize a table, errors pointing where toml says (or at the whole table).
fn deserialize<T: DeserializeOwned>(c: &Ctx, t: DeTable, span: Range<usize>) -> Result<T, Error> {
    let v = Spanned::new(span.clone(), DeValue::Table(t));
    T::deserialize(v.into_deserializer())
        .map_err(|e| c.err(e.span().unwrap_or(span), e.message().trim().to_string()))
}

/// The operation: `{ <op> = <the other fields> }` as an externally tagged [`OpSpec`], with
/// serde's errors reworded to name the operation.
fn op_spec(
    c: &Ctx,
    op: &Spanned<String>,
    kind: &str,
    args: &DeTable,
    span: Range<usize>,
) -> Result<OpSpec, Error> {
    let mut tagged = DeTable::new();
    tagged.insert(
        Spanned::new(op.span(), Cow::Owned(kind.to_owned())),
        Spanned::new(span.clone(), DeValue::Table(args.clone())),
    );
    let v = Spanned::new(span.clone(), DeValue::Table(tagged));
    OpSpec::deserialize(v.into_deserializer()).map_err(|e| {
        let msg = e.message().trim();
        let names = backticked(msg);
        if msg.starts_with("unknown variant") {
            return c.err(
                op.span(),
                format!(
                    "unknown op \"{}\" (one of {})",
                    op.get_ref(),
                    names[1..].join(", ")
                ),
            );
        }
        if let Some(field) = msg
            .strip_prefix("unknown field `")
            .and_then(|_| names.first())
        {
            let at = args
                .get(field.as_str())
                .map(|v| v.span())
                .or(e.span())
                .unwrap_or(span);
            let takes = if names.len() > 1 {
                names[1..].join(", ")
            } else {
                "nothing".to_string()
            };
            return c.err(
                at,
                format!("op \"{kind}\" does not take `{field}` (it takes: {takes})"),
            );
        }
        if let Some(field) = msg
            .strip_prefix("missing field `")
            .and_then(|_| names.first())
        {
            let what = match field.as_str() {
                "path" => "a `path`".to_string(),
                "target" => "a `target` process".to_string(),
                "ns" => "`ns` (a namespace name)".to_string(),
                f => format!("`{f}`"),
            };
            return c.err(span, format!("op \"{kind}\" needs {what}"));
        }
        c.err(e.span().unwrap_or(span), format!("op \"{kind}\": {msg}"))
    })
}

/// The `quoted` names in a serde error message, in order.
fn backticked(msg: &str) -> Vec<String> {
    msg.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The op as written, for reports: `by: op field=value …` in the order the op's struct
/// declares its fields, then the note.
fn op_text(c: &Ctx, common: &OpCommon, kind: &str, fields: &[&str], args: &DeTable) -> String {
    let mut text = format!("{}: {kind}", common.by.get_ref());
    for field in fields {
        let Some(v) = args.get(*field) else {
            continue;
        };
        match *field {
            "create" => {
                let on = v.get_ref().as_bool().unwrap_or(false);
                text.push_str(&format!(" create={on}"));
            }
            "eaccess" => text.push_str(" eaccess"),
            _ => {
                let raw = c.text.get(v.span()).unwrap_or("?").trim_matches('"');
                text.push_str(&format!(" {field}={raw}"));
            }
        }
    }
    if let Some(n) = &common.note {
        text.push_str(&format!("  # {n}"));
    }
    text
}

/// What turning one op's fields into an [`Op`] needs.
pub(super) struct OpCx<'a, 'w> {
    pub(super) c: &'a Ctx<'a>,
    w: &'w World,
    by: TaskRef,
    kind: &'a str,
    span: Range<usize>,
    earlier: &'a mut Earlier,
}

impl OpCx<'_, '_> {
    /// The [`Op`], and a namespace it names that only an earlier `unshare` will create.
    fn op(&mut self, spec: &OpSpec) -> Result<(Op, Option<String>), Error> {
        use OpSpec::*;
        let op = match spec {
            Setns(a) => return self.setns(a),
            Capable(a) => return self.capable(a),
            Open(_) | Access(_) | Create(_) | Mkdir(_) | Stat(_) | Exec(_) | Chmod(_)
            | Chown(_) => self.file_op(spec)?,
            Kill(_) | Ptrace(_) | ProcStatus(_) | Peercred(_) | NoNewPrivs(_) | Getids(_) => {
                self.task_op(spec)?
            }
            Setuid(_) | Setgid(_) | Setreuid(_) | Setresuid(_) | Setregid(_) | Setresgid(_)
            | Setgroups(_) => self.creds_op(spec)?,
            Unshare(_) | WriteUidMap(_) | WriteGidMap(_) | WriteSetgroups(_) => self.ns_op(spec)?,
            AddKey(_)
            | KeyctlRead(_)
            | KeyctlDescribe(_)
            | KeyctlUpdate(_)
            | KeyctlSearch(_)
            | KeyctlLink(_)
            | KeyctlUnlink(_)
            | KeyctlSetperm(_)
            | KeyctlChown(_)
            | KeyctlGetKeyringId(_)
            | RequestKey(_) => self.key_op(spec)?,
            Unlink(_) | Rmdir(_) | Rename(_) | Link(_) | Symlink(_) | OpenCreat(_) => {
                super::dirent::dirent_op(self.c, spec)?
            }
            Truncate(_) | Utimes(_) | Setxattr(_) => self.attr_op(spec)?,
            Setfsuid(_) | Setfsgid(_) | Capset(_) | SetSecurebits(_) | SetKeepcaps(_)
            | CapbsetDrop(_) | CapAmbient(_) => super::ops_caps::caps_op(self.c, spec)?,
            OpenProc(a) => super::ops_caps::open_proc_op(self.c, self.w, a)?,
            ReadlinkProcFd(a) => super::ops_caps::readlink_fd_op(self.c, self.w, a)?,
            Connect(a) => super::ops_sockets::connect_op(self.c, self.w, self.by, a, self.earlier)?,
            SendCreds(a) => {
                super::ops_sockets::send_creds_op(self.c, self.by, a, &self.earlier.sockets)?
            }
            UnshareNs(_) | SetnsNs(_) | Sethostname(_) | Bind(_) | Mount(_) | Umount(_)
            | Remount(_) => {
                self.earlier.typed += 1;
                let by = &self.w.task(self.by).name;
                super::nstypes::op(self.c, self.w, by, spec, self.earlier.typed)?
            }
        };
        Ok((op, None))
    }

    /// A path, normalised; it must be absolute and free of `.` and `..`.
    pub(super) fn path(&self, p: &Spanned<String>) -> Result<String, Error> {
        crate::world::normalise(p.get_ref()).ok_or_else(|| {
            self.c
                .err(p.span(), "paths must be absolute and free of . and ..")
        })
    }

    /// An id that may not be -1.
    fn id(&self, v: &Spanned<i64>, what: &str) -> Result<u32, Error> {
        match opt_arg(self.c, &Some(v.clone()))? {
            Some(x) => Ok(x),
            None => Err(self.c.err(v.span(), format!("`{what}` cannot be -1 here"))),
        }
    }

    /// A `target` process, or the acting one.
    fn target_or_self(&self, t: &Option<Spanned<String>>) -> Result<TaskRef, Error> {
        match t {
            Some(t) => task_ref(self.c, self.w, t),
            None => Ok(self.by),
        }
    }

    fn file_op(&self, spec: &OpSpec) -> Result<Op, Error> {
        let c = self.c;
        Ok(match spec {
            OpSpec::Open(a) => {
                let mask = a.access.as_ref().map_or(Ok(4), |m| access_mask(c, m))?;
                if mask & 1 != 0 {
                    return Err(c.err(a.access.as_ref().map(|a| a.span()).unwrap_or(self.span.clone()), "open takes access \"r\", \"w\" or \"rw\" (use op \"exec\" or \"access\" for x)"));
                }
                Op::Open {
                    path: self.path(&a.path)?,
                    read: mask & 4 != 0 || mask == 0,
                    write: mask & 2 != 0,
                }
            }
            OpSpec::Access(a) => {
                let mode = a.access.as_ref().map_or(Ok(4), |m| access_mask(c, m))?;
                Op::Access {
                    path: self.path(&a.path)?,
                    mode,
                    eaccess: a.eaccess.unwrap_or(false),
                }
            }
            OpSpec::Create(a) | OpSpec::Mkdir(a) => {
                let dir = matches!(spec, OpSpec::Mkdir(_));
                let mode = match &a.mode {
                    Some(m) => parse_num(c, m, "mode")?,
                    None if dir => 0o777,
                    None => 0o666,
                };
                Op::Create {
                    path: self.path(&a.path)?,
                    mode,
                    dir,
                }
            }
            OpSpec::Stat(a) => Op::Stat {
                path: self.path(&a.path)?,
            },
            OpSpec::Exec(a) => Op::Exec {
                path: self.path(&a.path)?,
            },
            OpSpec::Chmod(a) => Op::Chmod {
                path: self.path(&a.path)?,
                mode: parse_num(c, &a.mode, "mode")?,
            },
            OpSpec::Chown(a) => Op::Chown {
                path: self.path(&a.path)?,
                uid: opt_arg(c, &a.uid)?,
                gid: opt_arg(c, &a.gid)?,
            },
            _ => unreachable!("dispatched by OpCx::op"),
        })
    }

    fn task_op(&self, spec: &OpSpec) -> Result<Op, Error> {
        let (c, w) = (self.c, self.w);
        Ok(match spec {
            OpSpec::Kill(a) => {
                let signal = match &a.signal {
                    Some(s) => parse_signal(c, s)?,
                    None => 15,
                };
                Op::Kill {
                    target: task_ref(c, w, &a.target)?,
                    signal,
                }
            }
            OpSpec::Ptrace(a) => super::ops_caps::ptrace_op(c, task_ref(c, w, &a.target)?, a)?,
            OpSpec::ProcStatus(a) => Op::ProcStatus {
                target: task_ref(c, w, &a.target)?,
            },
            OpSpec::Peercred(a) => super::ops_sockets::peercred_op(
                c,
                w,
                self.by,
                a,
                &self.earlier.sockets,
                self.span.clone(),
            )?,
            OpSpec::NoNewPrivs(_) => Op::SetNoNewPrivs,
            OpSpec::Getids(_) => Op::GetIds,
            _ => unreachable!("dispatched by OpCx::op"),
        })
    }

    fn creds_op(&self, spec: &OpSpec) -> Result<Op, Error> {
        let c = self.c;
        Ok(match spec {
            OpSpec::Setuid(a) => Op::Setuid {
                uid: self.id(&a.uid, "uid")?,
            },
            OpSpec::Setgid(a) => Op::Setgid {
                gid: self.id(&a.gid, "gid")?,
            },
            OpSpec::Setreuid(a) => Op::Setreuid {
                ruid: opt_arg(c, &a.ruid)?,
                euid: opt_arg(c, &a.euid)?,
            },
            OpSpec::Setresuid(a) => Op::Setresuid {
                ruid: opt_arg(c, &a.ruid)?,
                euid: opt_arg(c, &a.euid)?,
                suid: opt_arg(c, &a.suid)?,
            },
            OpSpec::Setregid(a) => Op::Setregid {
                rgid: opt_arg(c, &a.rgid)?,
                egid: opt_arg(c, &a.egid)?,
            },
            OpSpec::Setresgid(a) => Op::Setresgid {
                rgid: opt_arg(c, &a.rgid)?,
                egid: opt_arg(c, &a.egid)?,
                sgid: opt_arg(c, &a.sgid)?,
            },
            OpSpec::Setgroups(a) => {
                let g = &a.groups;
                let mut v = Vec::new();
                for x in g.get_ref() {
                    if !(0..u32::MAX as i64).contains(x) {
                        return Err(c.err(g.span(), format!("{x} is not a group id")));
                    }
                    v.push(*x as u32);
                }
                Op::Setgroups { groups: v }
            }
            _ => unreachable!("dispatched by OpCx::op"),
        })
    }

    fn ns_op(&mut self, spec: &OpSpec) -> Result<Op, Error> {
        let (c, w) = (self.c, self.w);
        Ok(match spec {
            OpSpec::Unshare(a) => {
                let created = &mut self.earlier.namespaces;
                let name = match &a.name {
                    Some(n) => {
                        if w.ns_by_name(n.get_ref()).is_some() || created.contains(n.get_ref()) {
                            return Err(c.err(
                                n.span(),
                                format!("a namespace called \"{}\" already exists", n.get_ref()),
                            ));
                        }
                        n.get_ref().clone()
                    }
                    None => format!("{}-ns{}", w.task(self.by).name, created.len() + 1),
                };
                created.push(name.clone());
                Op::UnshareUser { name }
            }
            OpSpec::WriteUidMap(a) | OpSpec::WriteGidMap(a) => Op::WriteMap {
                target: self.target_or_self(&a.target)?,
                kind: if matches!(spec, OpSpec::WriteUidMap(_)) {
                    MapKind::Uid
                } else {
                    MapKind::Gid
                },
                text: a.text.get_ref().clone(),
            },
            OpSpec::WriteSetgroups(a) => Op::WriteSetgroups {
                target: self.target_or_self(&a.target)?,
                text: a.text.get_ref().clone(),
            },
            _ => unreachable!("dispatched by OpCx::op"),
        })
    }

    /// A namespace by name; one that an earlier `unshare` creates is resolved when the op
    /// runs.
    fn ns(&self, n: &Spanned<String>) -> Result<(NsRef, Option<String>), Error> {
        match self.w.ns_by_name(n.get_ref()) {
            Some(x) => Ok((x, None)),
            None if self.earlier.namespaces.contains(n.get_ref()) => {
                Ok((self.w.init_ns(), Some(n.get_ref().clone())))
            }
            None => Err(self
                .c
                .err(n.span(), format!("no namespace called \"{}\"", n.get_ref()))),
        }
    }

    fn setns(&self, a: &SetnsArgs) -> Result<(Op, Option<String>), Error> {
        let (ns, deferred) = match (&a.ns, &a.target) {
            (Some(n), None) => self.ns(n)?,
            (None, Some(t)) => {
                let tr = task_ref(self.c, self.w, t)?;
                (self.w.task(tr).cred.user_ns, None)
            }
            _ => {
                return Err(self.c.err(
                    self.span.clone(),
                    format!(
                        "op \"{}\" needs `ns` (a namespace name) or `target` (a process)",
                        self.kind
                    ),
                ))
            }
        };
        Ok((Op::Setns { ns }, deferred))
    }

    fn capable(&self, a: &CapableArgs) -> Result<(Op, Option<String>), Error> {
        let (ns, deferred) = self.ns(&a.ns)?;
        let cap = Cap::parse(a.cap.get_ref()).ok_or_else(|| {
            self.c.err(
                a.cap.span(),
                format!("unknown capability \"{}\"", a.cap.get_ref()),
            )
        })?;
        Ok((Op::Capable { ns, cap }, deferred))
    }

    /// A key reference: `@t`…`@us`, a serial number, or the name of a declared key or of one
    /// an earlier `add_key` names.
    fn key(&self, s: &Spanned<String>) -> Result<KeyId, Error> {
        let id = KeyId::parse(s.get_ref());
        if let KeyId::Name(n) = &id {
            if self.w.key_by_name(n).is_none() && !self.earlier.keys.contains(n) {
                return Err(self.c.err(
                    s.span(),
                    format!("no key called \"{n}\" (use a [[key]] name, a name given by an earlier add_key, @t, @p, @s, @u, @us or a serial number)"),
                ));
            }
        }
        Ok(id)
    }

    fn key_op(&mut self, spec: &OpSpec) -> Result<Op, Error> {
        let c = self.c;
        let text = |v: &Option<Spanned<String>>| {
            v.as_ref().map(|p| p.get_ref().clone()).unwrap_or_default()
        };
        Ok(match spec {
            OpSpec::AddKey(a) => self.add_key(a)?,
            OpSpec::KeyctlRead(a) => Op::KeyRead {
                key: self.key(&a.key)?,
            },
            OpSpec::KeyctlDescribe(a) => Op::KeyDescribe {
                key: self.key(&a.key)?,
            },
            OpSpec::KeyctlUpdate(a) => Op::KeyUpdate {
                key: self.key(&a.key)?,
                payload: text(&a.payload),
            },
            OpSpec::KeyctlSearch(a) => Op::KeySearch {
                keyring: self.key(&a.keyring)?,
                ktype: key_type(c, &a.ktype)?,
                description: a.description.get_ref().clone(),
            },
            OpSpec::RequestKey(a) => Op::RequestKey {
                ktype: key_type(c, &a.ktype)?,
                description: a.description.get_ref().clone(),
                callout: a.callout.as_ref().map(|s| s.get_ref().clone()),
            },
            OpSpec::KeyctlLink(a) => Op::KeyLink {
                key: self.key(&a.key)?,
                keyring: self.key(&a.keyring)?,
            },
            OpSpec::KeyctlUnlink(a) => Op::KeyUnlink {
                key: self.key(&a.key)?,
                keyring: self.key(&a.keyring)?,
            },
            OpSpec::KeyctlSetperm(a) => Op::KeySetperm {
                key: self.key(&a.key)?,
                perm: parse_perm(c, &a.perm)?,
            },
            OpSpec::KeyctlChown(a) => Op::KeyChown {
                key: self.key(&a.key)?,
                uid: opt_arg(c, &a.uid)?,
                gid: opt_arg(c, &a.gid)?,
            },
            OpSpec::KeyctlGetKeyringId(a) => Op::KeyGetId {
                key: self.key(&a.key)?,
                create: a.create.unwrap_or(false),
            },
            _ => unreachable!("dispatched by OpCx::op"),
        })
    }

    /// `add_key`; a `name` must be new and must not look like a serial or an @ shorthand.
    fn add_key(&mut self, a: &AddKeyArgs) -> Result<Op, Error> {
        let c = self.c;
        let name = a.name.as_ref().map(|n| n.get_ref().clone());
        if let Some(n) = &a.name {
            let nm = n.get_ref();
            if self.w.key_by_name(nm).is_some() || self.earlier.keys.contains(nm) {
                return Err(c.err(n.span(), format!("a key called \"{nm}\" already exists")));
            }
            if KeySpec::parse(nm).is_some() || nm.parse::<i64>().is_ok() {
                return Err(c.err(
                    n.span(),
                    format!("key name \"{nm}\" must not be a number or an @ shorthand"),
                ));
            }
            self.earlier.keys.push(nm.clone());
        }
        let text = |v: &Option<Spanned<String>>| {
            v.as_ref().map(|p| p.get_ref().clone()).unwrap_or_default()
        };
        Ok(Op::AddKey {
            ktype: key_type(c, &a.ktype)?,
            description: text(&a.description),
            payload: text(&a.payload),
            keyring: self.key(&a.keyring)?,
            name,
        })
    }
}
