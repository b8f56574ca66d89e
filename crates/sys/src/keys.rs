//! Kernel keys: typed wrappers of `add_key(2)` and `keyctl(2)`, and [`KeyActor`], a forked
//! process that takes on other credentials (optionally inside a user namespace) and performs
//! key operations on request.
//!
//! Every call here returns the kernel's errno as is; the differential tests compare it with the
//! model's answer.

use std::ffi::CString;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, OwnedFd};

use crate::{last_errno, Errno, Error, Pid};

/// `KEYCTL_GET_KEYRING_ID`.
const KEYCTL_GET_KEYRING_ID: libc::c_int = 0;
/// `KEYCTL_JOIN_SESSION_KEYRING`.
const KEYCTL_JOIN_SESSION_KEYRING: libc::c_int = 1;
/// `KEYCTL_UPDATE`.
const KEYCTL_UPDATE: libc::c_int = 2;
/// `KEYCTL_CHOWN`.
const KEYCTL_CHOWN: libc::c_int = 4;
/// `KEYCTL_SETPERM`.
const KEYCTL_SETPERM: libc::c_int = 5;
/// `KEYCTL_DESCRIBE`.
const KEYCTL_DESCRIBE: libc::c_int = 6;
/// `KEYCTL_LINK`.
const KEYCTL_LINK: libc::c_int = 8;
/// `KEYCTL_UNLINK`.
const KEYCTL_UNLINK: libc::c_int = 9;
/// `KEYCTL_SEARCH`.
const KEYCTL_SEARCH: libc::c_int = 10;
/// `KEYCTL_READ`.
const KEYCTL_READ: libc::c_int = 11;
/// `KEYCTL_INVALIDATE`.
const KEYCTL_INVALIDATE: libc::c_int = 21;

/// A key serial number (`key_serial_t`); negative values are the special keyrings.
#[doc(alias = "key_serial_t")]
pub type KeySerial = i32;

/// `KEY_SPEC_THREAD_KEYRING`.
pub const KEY_SPEC_THREAD_KEYRING: KeySerial = -1;
/// `KEY_SPEC_PROCESS_KEYRING`.
pub const KEY_SPEC_PROCESS_KEYRING: KeySerial = -2;
/// `KEY_SPEC_SESSION_KEYRING`.
pub const KEY_SPEC_SESSION_KEYRING: KeySerial = -3;
/// `KEY_SPEC_USER_KEYRING`.
pub const KEY_SPEC_USER_KEYRING: KeySerial = -4;
/// `KEY_SPEC_USER_SESSION_KEYRING`.
pub const KEY_SPEC_USER_SESSION_KEYRING: KeySerial = -5;

fn keyctl(
    op: libc::c_int,
    a: libc::c_ulong,
    b: libc::c_ulong,
    c: libc::c_ulong,
    d: libc::c_ulong,
) -> Result<libc::c_long, Errno> {
    // SAFETY: keyctl(2) with integer arguments, or pointers the callers keep alive and sized
    // as the operation requires; the kernel only reads/writes within the given lengths.
    let r = unsafe { libc::syscall(libc::SYS_keyctl, op, a, b, c, d) };
    if r < 0 {
        Err(last_errno())
    } else {
        Ok(r)
    }
}

fn cstring(s: &str) -> Result<CString, Errno> {
    CString::new(s).map_err(|_| Errno::INVAL)
}

/// `add_key(2)`: add (or update) a key of `ktype` in `keyring`; returns its serial.
/// See `add_key(2)`.
pub fn add_key(
    ktype: &str,
    description: &str,
    payload: &[u8],
    keyring: KeySerial,
) -> Result<KeySerial, Errno> {
    let t = cstring(ktype)?;
    let d = cstring(description)?;
    let p = if payload.is_empty() {
        std::ptr::null()
    } else {
        payload.as_ptr()
    };
    // SAFETY: the strings are NUL-terminated and live across the call; the payload pointer is
    // null with length 0 or points at `payload.len()` readable bytes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            t.as_ptr(),
            d.as_ptr(),
            p,
            payload.len(),
            keyring,
        )
    };
    if r < 0 {
        Err(last_errno())
    } else {
        Ok(r as KeySerial)
    }
}

/// `keyctl(KEYCTL_GET_KEYRING_ID)` (`keyctl_get_keyring_ID(3)`): the serial of a (special)
/// keyring, creating it if `create`.
#[doc(alias = "keyctl_get_keyring_ID")]
pub fn get_keyring_id(id: KeySerial, create: bool) -> Result<KeySerial, Errno> {
    keyctl(
        KEYCTL_GET_KEYRING_ID,
        id as libc::c_ulong,
        create as libc::c_ulong,
        0,
        0,
    )
    .map(|r| r as KeySerial)
}

/// `keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL)` (`keyctl_join_session_keyring(3)`): give the
/// calling thread a new anonymous session keyring; returns its serial.
#[doc(alias = "keyctl_join_session_keyring")]
pub fn join_new_session_keyring() -> Result<KeySerial, Errno> {
    keyctl(KEYCTL_JOIN_SESSION_KEYRING, 0, 0, 0, 0).map(|r| r as KeySerial)
}

/// `keyctl(KEYCTL_UPDATE)` (`keyctl_update(3)`).
#[doc(alias = "keyctl_update")]
pub fn update(key: KeySerial, payload: &[u8]) -> Result<(), Errno> {
    let p = if payload.is_empty() {
        std::ptr::null()
    } else {
        payload.as_ptr()
    };
    keyctl(
        KEYCTL_UPDATE,
        key as libc::c_ulong,
        p as libc::c_ulong,
        payload.len() as libc::c_ulong,
        0,
    )
    .map(|_| ())
}

/// `keyctl(KEYCTL_CHOWN)` (`keyctl_chown(3)`); `None` is -1 (no change).
#[doc(alias = "keyctl_chown")]
pub fn chown(key: KeySerial, uid: Option<u32>, gid: Option<u32>) -> Result<(), Errno> {
    let u = uid.unwrap_or(u32::MAX);
    let g = gid.unwrap_or(u32::MAX);
    keyctl(
        KEYCTL_CHOWN,
        key as libc::c_ulong,
        u as libc::c_ulong,
        g as libc::c_ulong,
        0,
    )
    .map(|_| ())
}

/// `keyctl(KEYCTL_SETPERM)` (`keyctl_setperm(3)`).
#[doc(alias = "keyctl_setperm")]
pub fn setperm(key: KeySerial, perm: u32) -> Result<(), Errno> {
    keyctl(
        KEYCTL_SETPERM,
        key as libc::c_ulong,
        perm as libc::c_ulong,
        0,
        0,
    )
    .map(|_| ())
}

fn read_buffer(op: libc::c_int, key: KeySerial) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; 256];
    loop {
        let n = keyctl(
            op,
            key as libc::c_ulong,
            buf.as_mut_ptr() as libc::c_ulong,
            buf.len() as libc::c_ulong,
            0,
        )? as usize;
        if n <= buf.len() {
            buf.truncate(n);
            return Ok(buf);
        }
        buf.resize(n, 0);
    }
}

/// `keyctl(KEYCTL_DESCRIBE)` (`keyctl_describe(3)`): "type;uid;gid;perm;description".
#[doc(alias = "keyctl_describe")]
pub fn describe(key: KeySerial) -> Result<String, Errno> {
    let mut b = read_buffer(KEYCTL_DESCRIBE, key)?;
    while b.last() == Some(&0) {
        b.pop();
    }
    Ok(String::from_utf8_lossy(&b).into_owned())
}

/// `keyctl(KEYCTL_READ)` (`keyctl_read(3)`): the payload, or a keyring's serials as bytes.
#[doc(alias = "keyctl_read")]
pub fn read(key: KeySerial) -> Result<Vec<u8>, Errno> {
    read_buffer(KEYCTL_READ, key)
}

/// `keyctl(KEYCTL_LINK)` (`keyctl_link(3)`).
#[doc(alias = "keyctl_link")]
pub fn link(key: KeySerial, keyring: KeySerial) -> Result<(), Errno> {
    keyctl(
        KEYCTL_LINK,
        key as libc::c_ulong,
        keyring as libc::c_ulong,
        0,
        0,
    )
    .map(|_| ())
}

/// `keyctl(KEYCTL_UNLINK)` (`keyctl_unlink(3)`).
#[doc(alias = "keyctl_unlink")]
pub fn unlink(key: KeySerial, keyring: KeySerial) -> Result<(), Errno> {
    keyctl(
        KEYCTL_UNLINK,
        key as libc::c_ulong,
        keyring as libc::c_ulong,
        0,
        0,
    )
    .map(|_| ())
}

/// `keyctl(KEYCTL_SEARCH)` (`keyctl_search(3)`) without a destination keyring.
#[doc(alias = "keyctl_search")]
pub fn search(keyring: KeySerial, ktype: &str, description: &str) -> Result<KeySerial, Errno> {
    let t = cstring(ktype)?;
    let d = cstring(description)?;
    keyctl(
        KEYCTL_SEARCH,
        keyring as libc::c_ulong,
        t.as_ptr() as libc::c_ulong,
        d.as_ptr() as libc::c_ulong,
        0,
    )
    .map(|r| r as KeySerial)
}

/// `keyctl(KEYCTL_INVALIDATE)` (`keyctl_invalidate(3)`).
#[doc(alias = "keyctl_invalidate")]
pub fn invalidate(key: KeySerial) -> Result<(), Errno> {
    keyctl(KEYCTL_INVALIDATE, key as libc::c_ulong, 0, 0, 0).map(|_| ())
}

/// One key operation, as [`KeyActor::call`] carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyCall {
    /// [`add_key`].
    AddKey {
        /// Type name.
        ktype: String,
        /// Description (no whitespace).
        description: String,
        /// Payload.
        payload: Vec<u8>,
        /// Destination keyring.
        keyring: KeySerial,
    },
    /// [`read`].
    Read(KeySerial),
    /// [`describe`].
    Describe(KeySerial),
    /// [`update`].
    Update(KeySerial, Vec<u8>),
    /// [`search`].
    Search {
        /// Start keyring.
        keyring: KeySerial,
        /// Type name.
        ktype: String,
        /// Description (no whitespace).
        description: String,
    },
    /// [`link`].
    Link(KeySerial, KeySerial),
    /// [`unlink`].
    Unlink(KeySerial, KeySerial),
    /// [`setperm`].
    Setperm(KeySerial, u32),
    /// [`chown`].
    Chown(KeySerial, Option<u32>, Option<u32>),
    /// [`get_keyring_id`].
    GetKeyringId(KeySerial, bool),
    /// [`invalidate`].
    Invalidate(KeySerial),
}

/// What a successful [`KeyCall`] yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyReply {
    /// A serial (add_key, search, get_keyring_id).
    Serial(KeySerial),
    /// Bytes (read, describe).
    Bytes(Vec<u8>),
    /// Nothing.
    Done,
}

impl KeyCall {
    /// Perform the call in this thread.
    pub fn perform(&self) -> Result<KeyReply, Errno> {
        Ok(match self {
            KeyCall::AddKey {
                ktype,
                description,
                payload,
                keyring,
            } => KeyReply::Serial(add_key(ktype, description, payload, *keyring)?),
            KeyCall::Read(k) => KeyReply::Bytes(read(*k)?),
            KeyCall::Describe(k) => KeyReply::Bytes(describe(*k)?.into_bytes()),
            KeyCall::Update(k, p) => {
                update(*k, p)?;
                KeyReply::Done
            }
            KeyCall::Search {
                keyring,
                ktype,
                description,
            } => KeyReply::Serial(search(*keyring, ktype, description)?),
            KeyCall::Link(k, r) => {
                link(*k, *r)?;
                KeyReply::Done
            }
            KeyCall::Unlink(k, r) => {
                unlink(*k, *r)?;
                KeyReply::Done
            }
            KeyCall::Setperm(k, p) => {
                setperm(*k, *p)?;
                KeyReply::Done
            }
            KeyCall::Chown(k, u, g) => {
                chown(*k, *u, *g)?;
                KeyReply::Done
            }
            KeyCall::GetKeyringId(k, c) => KeyReply::Serial(get_keyring_id(*k, *c)?),
            KeyCall::Invalidate(k) => {
                invalidate(*k)?;
                KeyReply::Done
            }
        })
    }
}

fn hex(b: &[u8]) -> String {
    if b.is_empty() {
        return "-".into();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s == "-" {
        return Some(Vec::new());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

fn opt(v: Option<u32>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// Commands of the actor protocol (one line each).
enum Cmd {
    Call(KeyCall),
    Unshare,
    Setns(Pid),
    SetIds {
        uid: u32,
        gid: u32,
        groups: Vec<u32>,
    },
    SetFsuid(u32),
}

fn encode(c: &Cmd) -> String {
    match c {
        Cmd::Unshare => "unshare".into(),
        Cmd::Setns(p) => format!("setns {p}"),
        Cmd::SetFsuid(u) => format!("fsuid {u}"),
        Cmd::SetIds { uid, gid, groups } => format!(
            "ids {uid} {gid} {}",
            if groups.is_empty() {
                "-".into()
            } else {
                groups
                    .iter()
                    .map(|g| g.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            }
        ),
        Cmd::Call(k) => match k {
            KeyCall::AddKey {
                ktype,
                description,
                payload,
                keyring,
            } => format!(
                "add {ktype} {} {} {keyring}",
                hex(description.as_bytes()),
                hex(payload)
            ),
            KeyCall::Read(k) => format!("read {k}"),
            KeyCall::Describe(k) => format!("describe {k}"),
            KeyCall::Update(k, p) => format!("update {k} {}", hex(p)),
            KeyCall::Search {
                keyring,
                ktype,
                description,
            } => format!("search {keyring} {ktype} {}", hex(description.as_bytes())),
            KeyCall::Link(k, r) => format!("link {k} {r}"),
            KeyCall::Unlink(k, r) => format!("unlink {k} {r}"),
            KeyCall::Setperm(k, p) => format!("setperm {k} {p}"),
            KeyCall::Chown(k, u, g) => format!("chown {k} {} {}", opt(*u), opt(*g)),
            KeyCall::GetKeyringId(k, c) => format!("getid {k} {}", *c as u8),
            KeyCall::Invalidate(k) => format!("invalidate {k}"),
        },
    }
}

fn decode(line: &str) -> Option<Cmd> {
    let w: Vec<&str> = line.split_whitespace().collect();
    let n = |i: usize| w.get(i).and_then(|s| s.parse::<i64>().ok());
    let o = |i: usize| {
        w.get(i).and_then(|s| {
            if *s == "-" {
                Some(None)
            } else {
                s.parse::<u32>().ok().map(Some)
            }
        })
    };
    let s = |i: usize| {
        w.get(i)
            .and_then(|h| unhex(h))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    let call = |k| Some(Cmd::Call(k));
    match *w.first()? {
        "unshare" => Some(Cmd::Unshare),
        "setns" => Some(Cmd::Setns(Pid(n(1)? as i32))),
        "fsuid" => Some(Cmd::SetFsuid(n(1)? as u32)),
        "ids" => Some(Cmd::SetIds {
            uid: n(1)? as u32,
            gid: n(2)? as u32,
            groups: match *w.get(3)? {
                "-" => Vec::new(),
                g => g
                    .split(',')
                    .map(|x| x.parse().ok())
                    .collect::<Option<Vec<u32>>>()?,
            },
        }),
        "add" => call(KeyCall::AddKey {
            ktype: w.get(1)?.to_string(),
            description: s(2)?,
            payload: unhex(w.get(3)?)?,
            keyring: n(4)? as i32,
        }),
        "read" => call(KeyCall::Read(n(1)? as i32)),
        "describe" => call(KeyCall::Describe(n(1)? as i32)),
        "update" => call(KeyCall::Update(n(1)? as i32, unhex(w.get(2)?)?)),
        "search" => call(KeyCall::Search {
            keyring: n(1)? as i32,
            ktype: w.get(2)?.to_string(),
            description: s(3)?,
        }),
        "link" => call(KeyCall::Link(n(1)? as i32, n(2)? as i32)),
        "unlink" => call(KeyCall::Unlink(n(1)? as i32, n(2)? as i32)),
        "setperm" => call(KeyCall::Setperm(n(1)? as i32, n(2)? as u32)),
        "chown" => call(KeyCall::Chown(n(1)? as i32, o(2)?, o(3)?)),
        "getid" => call(KeyCall::GetKeyringId(n(1)? as i32, n(2)? != 0)),
        "invalidate" => call(KeyCall::Invalidate(n(1)? as i32)),
        _ => None,
    }
}

fn encode_reply(r: &Result<KeyReply, Errno>) -> String {
    match r {
        Ok(KeyReply::Serial(s)) => format!("serial {s}\n"),
        Ok(KeyReply::Bytes(b)) => format!("bytes {}\n", hex(b)),
        Ok(KeyReply::Done) => "done\n".into(),
        Err(e) => format!("errno {}\n", e.raw_os_error()),
    }
}

fn decode_reply(line: &str) -> Option<Result<KeyReply, Errno>> {
    let (a, b) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
    Some(match a {
        "serial" => Ok(KeyReply::Serial(b.parse().ok()?)),
        "bytes" => Ok(KeyReply::Bytes(unhex(b)?)),
        "done" => Ok(KeyReply::Done),
        "errno" => Err(Errno::from_raw_os_error(b.parse().ok()?)),
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

fn set_ids(uid: u32, gid: u32, groups: &[u32]) -> Result<(), Errno> {
    // Raw syscalls: per-thread credentials, as the kernel applies them (the child has one thread).
    // SAFETY: setgroups reads `groups.len()` gids from a live slice.
    let r = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
    if r < 0 {
        return Err(last_errno());
    }
    // SAFETY: integer arguments only.
    let r = unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) };
    if r < 0 {
        return Err(last_errno());
    }
    // SAFETY: integer arguments only.
    let r = unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) };
    if r < 0 {
        return Err(last_errno());
    }
    Ok(())
}

fn set_fsuid(uid: u32) -> Result<(), Errno> {
    // setfsuid(2) reports no error: it returns the previous fsuid. Ask again (with -1, which
    // changes nothing) to see whether the change took.
    // SAFETY: integer argument only.
    unsafe { libc::syscall(libc::SYS_setfsuid, uid) };
    // SAFETY: integer argument only; -1 is never a valid id, so nothing changes.
    let now = unsafe { libc::syscall(libc::SYS_setfsuid, u32::MAX) } as u32;
    if now == uid {
        Ok(())
    } else {
        Err(Errno::PERM)
    }
}

fn setns_user(pid: Pid) -> Result<(), Errno> {
    let path = cstring(&format!("/proc/{pid}/ns/user"))?;
    // SAFETY: a NUL-terminated path; the descriptor is closed below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(last_errno());
    }
    // SAFETY: fd is an open namespace descriptor.
    let r = unsafe { libc::setns(fd, libc::CLONE_NEWUSER) };
    let e = if r < 0 { Some(last_errno()) } else { None };
    // SAFETY: fd is ours and closed once.
    unsafe { libc::close(fd) };
    match e {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn actor_main(cmds: OwnedFd, replies: OwnedFd) -> ! {
    let mut input = BufReader::new(std::fs::File::from(cmds));
    let mut output = std::fs::File::from(replies);
    let mut line = String::new();
    loop {
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let reply = match decode(&line) {
            None => Err(Errno::INVAL),
            Some(Cmd::Call(k)) => k.perform(),
            Some(Cmd::Unshare) => {
                // SAFETY: unshare with a flag; affects only this single-threaded process.
                if unsafe { libc::unshare(libc::CLONE_NEWUSER) } < 0 {
                    Err(last_errno())
                } else {
                    Ok(KeyReply::Done)
                }
            }
            Some(Cmd::Setns(p)) => setns_user(p).map(|_| KeyReply::Done),
            Some(Cmd::SetFsuid(u)) => set_fsuid(u).map(|_| KeyReply::Done),
            Some(Cmd::SetIds { uid, gid, groups }) => {
                set_ids(uid, gid, &groups).map(|_| KeyReply::Done)
            }
        };
        if output.write_all(encode_reply(&reply).as_bytes()).is_err() {
            break;
        }
    }
    // SAFETY: leave the forked child without running the parent's atexit handlers or destructors.
    unsafe { libc::_exit(0) }
}

/// A forked process that performs key operations on request. It starts as a copy of the
/// caller (same credentials; the same session keyring, no thread or process keyring) and can
/// [`unshare_userns`](KeyActor::unshare_userns), [`setns_userns`](KeyActor::setns_userns) and
/// [`set_ids`](KeyActor::set_ids). Dropping it ends the process (its keyrings go with it).
#[derive(Debug)]
pub struct KeyActor {
    pid: Pid,
    cmds: Option<std::fs::File>,
    replies: BufReader<std::fs::File>,
}

impl KeyActor {
    /// Fork the actor (`fork(2)`).
    pub fn spawn() -> Result<KeyActor, Error> {
        let (cr, cw) = raw_pipe()?;
        let (rr, rw) = raw_pipe()?;
        // SAFETY: the child only runs `actor_main`, which uses its own descriptors and ends
        // with _exit; glibc's fork keeps malloc usable in the child.
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
            actor_main(cr, rw);
        }
        drop(cr);
        drop(rw);
        Ok(KeyActor {
            pid: Pid(pid),
            cmds: Some(std::fs::File::from(cw)),
            replies: BufReader::new(std::fs::File::from(rr)),
        })
    }

    /// Its pid.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    fn send(&mut self, c: &Cmd, op: &'static str) -> Result<Result<KeyReply, Errno>, Error> {
        let broken = |pid| Error::Helper {
            pid,
            op,
            errno: Errno::PIPE,
        };
        let cmds = self.cmds.as_mut().ok_or_else(|| broken(self.pid))?;
        cmds.write_all(format!("{}\n", encode(c)).as_bytes())
            .map_err(|_| broken(self.pid))?;
        let mut line = String::new();
        self.replies
            .read_line(&mut line)
            .map_err(|_| broken(self.pid))?;
        decode_reply(&line).ok_or_else(|| broken(self.pid))
    }

    /// Perform a key operation as the actor; the outer error is a broken actor.
    pub fn call(&mut self, c: &KeyCall) -> Result<Result<KeyReply, Errno>, Error> {
        self.send(&Cmd::Call(c.clone()), "key call")
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
        self.send(
            &Cmd::SetIds {
                uid,
                gid,
                groups: groups.to_vec(),
            },
            "set ids",
        )
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
