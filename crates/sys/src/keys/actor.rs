//! The parent's side of [`KeyActor`]: the fork, encoding commands and decoding replies.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};

use super::actor_child::{actor_main, ActorMemory};
use super::wire::*;
use super::{KeyCall, KeyReply};
use crate::{last_errno, Errno, Error, Pid};

/// Commands of the actor protocol.
enum Cmd<'a> {
    Call(&'a KeyCall),
    Unshare,
    Setns(Pid),
    SetIds {
        uid: u32,
        gid: u32,
        groups: &'a [u32],
    },
    SetFsuid(u32),
}

/// A request frame: length, header (op, three arguments, three field lengths), the fields.
fn frame(op: u32, args: [u32; 3], fields: [&[u8]; 3]) -> Vec<u8> {
    let body_len = REQ_HDR + fields.iter().map(|f| f.len() + 1).sum::<usize>();
    let mut m = Vec::with_capacity(4 + body_len);
    m.extend_from_slice(&(body_len as u32).to_ne_bytes());
    m.extend_from_slice(&op.to_ne_bytes());
    for a in args {
        m.extend_from_slice(&a.to_ne_bytes());
    }
    for f in fields {
        m.extend_from_slice(&(f.len() as u32).to_ne_bytes());
    }
    m.extend_from_slice(&0u32.to_ne_bytes());
    for f in fields {
        m.extend_from_slice(f);
        m.push(0);
    }
    m
}

fn encode(c: &Cmd<'_>) -> Vec<u8> {
    let none: &[u8] = &[];
    let id = |v: Option<u32>| v.unwrap_or(u32::MAX);
    match c {
        Cmd::Unshare => frame(OP_UNSHARE, [0; 3], [none; 3]),
        Cmd::Setns(p) => frame(OP_SETNS, [p.0 as u32, 0, 0], [none; 3]),
        Cmd::SetFsuid(u) => frame(OP_SET_FSUID, [*u, 0, 0], [none; 3]),
        Cmd::SetIds { uid, gid, groups } => {
            let g: Vec<u8> = groups.iter().flat_map(|g| g.to_ne_bytes()).collect();
            frame(OP_SET_IDS, [*uid, *gid, 0], [&g, none, none])
        }
        Cmd::Call(k) => match k {
            KeyCall::AddKey {
                ktype,
                description,
                payload,
                keyring,
            } => frame(
                OP_ADD,
                [*keyring as u32, 0, 0],
                [ktype.as_bytes(), description.as_bytes(), payload],
            ),
            KeyCall::Read(k) => frame(OP_READ, [*k as u32, 0, 0], [none; 3]),
            KeyCall::Describe(k) => frame(OP_DESCRIBE, [*k as u32, 0, 0], [none; 3]),
            KeyCall::Update(k, p) => frame(OP_UPDATE, [*k as u32, 0, 0], [none, none, p]),
            KeyCall::Search {
                keyring,
                ktype,
                description,
            } => frame(
                OP_SEARCH,
                [*keyring as u32, 0, 0],
                [ktype.as_bytes(), description.as_bytes(), none],
            ),
            KeyCall::Link(k, r) => frame(OP_LINK, [*k as u32, *r as u32, 0], [none; 3]),
            KeyCall::Unlink(k, r) => frame(OP_UNLINK, [*k as u32, *r as u32, 0], [none; 3]),
            KeyCall::Setperm(k, p) => frame(OP_SETPERM, [*k as u32, *p, 0], [none; 3]),
            KeyCall::Chown(k, u, g) => frame(OP_CHOWN, [*k as u32, id(*u), id(*g)], [none; 3]),
            KeyCall::GetKeyringId(k, c) => frame(OP_GET_ID, [*k as u32, *c as u32, 0], [none; 3]),
            KeyCall::Invalidate(k) => frame(OP_INVALIDATE, [*k as u32, 0, 0], [none; 3]),
        },
    }
}

/// A key type the line protocol this one replaced could not carry (empty, or holding
/// whitespace, which separated its words): the actor answered EINVAL without asking the
/// kernel, and still does.
fn unsendable(c: &Cmd<'_>) -> bool {
    let bad = |t: &str| t.is_empty() || t.contains(char::is_whitespace);
    match c {
        Cmd::Call(KeyCall::AddKey { ktype, .. } | KeyCall::Search { ktype, .. }) => bad(ktype),
        _ => false,
    }
}

/// A reply body as the caller sees it; a description's bytes become text as
/// [`describe`](super::describe) makes them. `None` if it is malformed.
fn decode_reply(body: &[u8], describe: bool) -> Option<Result<KeyReply, Errno>> {
    if body.len() < REP_HDR {
        return None;
    }
    let value = rd_u32(body, 4) as i32;
    Some(match rd_u32(body, 0) {
        REP_ERRNO => Err(Errno::from_raw_os_error(value)),
        REP_SERIAL => Ok(KeyReply::Serial(value)),
        REP_BYTES if describe => Ok(KeyReply::Bytes(
            String::from_utf8_lossy(&body[REP_HDR..])
                .into_owned()
                .into_bytes(),
        )),
        REP_BYTES => Ok(KeyReply::Bytes(body[REP_HDR..].to_vec())),
        REP_DONE => Ok(KeyReply::Done),
        _ => return None,
    })
}

fn raw_pipe() -> Result<(OwnedFd, OwnedFd), Error> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the two-element array.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if r < 0 {
        return Err(Error::Sys {
            op: "pipe2",
            errno: last_errno(),
        });
    }
    // SAFETY: the descriptor was just created and is owned by nobody else.
    let r = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    // SAFETY: as above.
    let w = unsafe { OwnedFd::from_raw_fd(fds[1]) };
    Ok((r, w))
}

/// A forked process that performs key operations on request. It starts as a copy of the
/// caller (same credentials; the same session keyring, no thread or process keyring) and can
/// [`unshare_userns`](KeyActor::unshare_userns), [`setns_userns`](KeyActor::setns_userns) and
/// [`set_ids`](KeyActor::set_ids). Dropping it ends the process (its keyrings go with it).
#[derive(Debug)]
pub struct KeyActor {
    pid: Pid,
    cmds: Option<std::fs::File>,
    replies: std::fs::File,
}

impl KeyActor {
    /// Fork the actor (`fork(2)`).
    pub fn spawn() -> Result<KeyActor, Error> {
        let (cr, cw) = raw_pipe()?;
        let (rr, rw) = raw_pipe()?;
        // Allocated before the fork: the child's only memory for requests and replies.
        let mut mem = ActorMemory::new();
        // SAFETY: fork in a possibly multithreaded process: the child only runs `actor_main`,
        // which makes raw system calls on its own descriptors and on `mem` (allocated above,
        // or mapped with mmap(2) for a larger message) and ends with _exit, never returning
        // into the caller's code.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(Error::Sys {
                op: "fork",
                errno: last_errno(),
            });
        }
        if pid == 0 {
            drop(cw);
            drop(rr);
            actor_main(cr, rw, &mut mem);
        }
        drop(cr);
        drop(rw);
        Ok(KeyActor {
            pid: Pid(pid),
            cmds: Some(std::fs::File::from(cw)),
            replies: std::fs::File::from(rr),
        })
    }

    /// Its pid.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    fn send(&mut self, c: &Cmd<'_>, op: &'static str) -> Result<Result<KeyReply, Errno>, Error> {
        let broken = |pid| Error::Helper {
            pid,
            op,
            errno: Errno::PIPE,
        };
        let cmds = self.cmds.as_mut().ok_or_else(|| broken(self.pid))?;
        if unsendable(c) {
            return Ok(Err(Errno::INVAL));
        }
        cmds.write_all(&encode(c)).map_err(|_| broken(self.pid))?;
        let mut len = [0u8; 4];
        self.replies
            .read_exact(&mut len)
            .map_err(|_| broken(self.pid))?;
        let mut body = vec![0u8; u32::from_ne_bytes(len) as usize];
        self.replies
            .read_exact(&mut body)
            .map_err(|_| broken(self.pid))?;
        let describe = matches!(c, Cmd::Call(KeyCall::Describe(_)));
        decode_reply(&body, describe).ok_or_else(|| broken(self.pid))
    }

    /// Perform a key operation as the actor; the outer error is a broken actor.
    pub fn call(&mut self, c: &KeyCall) -> Result<Result<KeyReply, Errno>, Error> {
        self.send(&Cmd::Call(c), "key call")
    }

    /// `unshare(CLONE_NEWUSER)` in the actor; write its maps with [`KeyActor::write_maps`].
    pub fn unshare_userns(&mut self) -> Result<Result<(), Errno>, Error> {
        self.send(&Cmd::Unshare, "unshare").map(|r| r.map(|_| ()))
    }

    /// `setns(2)` into the user namespace of process `pid`.
    pub fn setns_userns(&mut self, pid: Pid) -> Result<Result<(), Errno>, Error> {
        self.send(&Cmd::Setns(pid), "setns").map(|r| r.map(|_| ()))
    }

    /// `setgroups(2)`, `setresgid(2)`, `setresuid(2)` to these ids (of its namespace).
    pub fn set_ids(
        &mut self,
        uid: u32,
        gid: u32,
        groups: &[u32],
    ) -> Result<Result<(), Errno>, Error> {
        self.send(&Cmd::SetIds { uid, gid, groups }, "set ids")
            .map(|r| r.map(|_| ()))
    }

    /// `setfsuid(2)` to this id of its namespace (EPERM if it did not take).
    pub fn set_fsuid(&mut self, uid: u32) -> Result<Result<(), Errno>, Error> {
        self.send(&Cmd::SetFsuid(uid), "setfsuid")
            .map(|r| r.map(|_| ()))
    }

    /// Write the actor's `uid_map` and `gid_map` (from this process, as `user_namespaces(7)`
    /// allows a privileged process in the parent namespace to).
    pub fn write_maps(&self, uid_map: &str, gid_map: &str) -> Result<(), Error> {
        for (f, text) in [("uid_map", uid_map), ("gid_map", gid_map)] {
            let path = std::path::PathBuf::from(format!("/proc/{}/{f}", self.pid));
            std::fs::write(&path, text).map_err(|e| Error::Path {
                op: "write",
                path,
                errno: Errno::from_raw_os_error(e.raw_os_error().unwrap_or(libc::EIO)),
            })?;
        }
        Ok(())
    }
}

impl Drop for KeyActor {
    fn drop(&mut self) {
        // Other actors forked later may hold copies of our pipe ends, so end it with SIGKILL
        // rather than waiting for EOF; its thread and process keyrings go with it.
        self.cmds = None;
        // SAFETY: signals our own child.
        unsafe { libc::kill(self.pid.0, libc::SIGKILL) };
        let mut status = 0;
        // SAFETY: reaps our own child; `status` is a live int.
        unsafe { libc::waitpid(self.pid.0, &mut status, 0) };
    }
}
