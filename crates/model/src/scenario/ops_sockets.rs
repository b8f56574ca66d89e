//! The `[[op]]` tables about socket credentials: `connect`, `peercred` (of a fresh pair or of
//! a named connection) and `send_creds`.

use toml::Spanned;

use super::op_args::{ConnectArgs, PeercredArgs, SendCredsArgs};
use super::ops::Earlier;
use super::raw::{opt_arg, task_ref, Ctx};
use crate::ops::Op;
use crate::world::{TaskRef, World};
use crate::Error;

/// `connect`: a new name, and a target other than the caller.
pub(super) fn connect_op(
    c: &Ctx,
    w: &World,
    by: TaskRef,
    a: &ConnectArgs,
    earlier: &mut Earlier,
) -> Result<Op, Error> {
    let target = task_ref(c, w, &a.target)?;
    let name = a.name.get_ref().clone();
    if earlier.sockets.iter().any(|(n, _, _)| *n == name) {
        return Err(c.err(
            a.name.span(),
            format!("a connection called \"{name}\" already exists"),
        ));
    }
    earlier.sockets.push((name.clone(), by, target));
    Ok(Op::Connect { target, name })
}

/// A connection the caller holds an end of.
fn held(
    c: &Ctx,
    by: TaskRef,
    s: &Spanned<String>,
    sockets: &[(String, TaskRef, TaskRef)],
) -> Result<String, Error> {
    match sockets.iter().find(|(n, _, _)| n == s.get_ref()) {
        Some((n, a, b)) if *a == by || *b == by => Ok(n.clone()),
        Some(_) => Err(c.err(
            s.span(),
            format!("the caller holds no end of connection \"{}\"", s.get_ref()),
        )),
        None => Err(c.err(
            s.span(),
            format!(
                "no connection called \"{}\" (an earlier connect names it)",
                s.get_ref()
            ),
        )),
    }
}

/// `peercred`: `target` (a pair made now, as before) or `socket` (a named connection).
pub(super) fn peercred_op(
    c: &Ctx,
    w: &World,
    by: TaskRef,
    a: &PeercredArgs,
    sockets: &[(String, TaskRef, TaskRef)],
    span: std::ops::Range<usize>,
) -> Result<Op, Error> {
    match (&a.target, &a.socket) {
        (Some(t), None) => Ok(Op::PeerCred {
            peer: task_ref(c, w, t)?,
        }),
        (None, Some(s)) => Ok(Op::PeerCredOf {
            socket: held(c, by, s, sockets)?,
        }),
        (Some(t), Some(_)) => Err(c.err(
            t.span(),
            "op \"peercred\" takes `target` or `socket`, not both",
        )),
        (None, None) => Err(c.err(
            span,
            "op \"peercred\" needs a `target` process or a `socket` (a connection's name)",
        )),
    }
}

/// `send_creds`: ids that are not -1.
pub(super) fn send_creds_op(
    c: &Ctx,
    by: TaskRef,
    a: &SendCredsArgs,
    sockets: &[(String, TaskRef, TaskRef)],
) -> Result<Op, Error> {
    let id = |v: &Spanned<i64>, what: &str| -> Result<u32, Error> {
        opt_arg(c, &Some(v.clone()))?
            .ok_or_else(|| c.err(v.span(), format!("`{what}` cannot be -1 here")))
    };
    let other_pid = match a.pid.as_ref().map(|p| p.get_ref().trim()) {
        None | Some("own") => false,
        Some("peer") => true,
        Some(other) => {
            let span = a.pid.as_ref().map(|p| p.span()).unwrap_or_default();
            return Err(c.err(span, format!("send_creds pid \"{other}\": use own or peer")));
        }
    };
    Ok(Op::SendCreds {
        socket: held(c, by, &a.socket, sockets)?,
        uid: id(&a.uid, "uid")?,
        gid: id(&a.gid, "gid")?,
        other_pid,
    })
}
