//! Kernel keys: typed wrappers of `add_key(2)` and `keyctl(2)`, and [`KeyActor`], a forked
//! process that takes on other credentials (optionally inside a user namespace) and performs
//! key operations on request.
//!
//! Every call here returns the kernel's errno as is; the differential tests compare it with the
//! model's answer.

use std::ffi::{CStr, CString};

use crate::{last_errno, Errno};

mod actor;
mod actor_child;
pub mod proc_keys;
pub mod session;
pub mod upcall;
mod wire;

pub use actor::KeyActor;

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
    add_key_c(&t, &d, payload, keyring)
}

/// [`add_key`] on C strings: no allocation, so a fork child may call it.
fn add_key_c(t: &CStr, d: &CStr, payload: &[u8], keyring: KeySerial) -> Result<KeySerial, Errno> {
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

/// One `KEYCTL_READ` or `KEYCTL_DESCRIBE` into `buf`: the full length of the answer, which
/// is in `buf` only if it is at most `buf.len()`. No allocation, so a fork child may call it.
fn read_into(op: libc::c_int, key: KeySerial, buf: &mut [u8]) -> Result<usize, Errno> {
    keyctl(
        op,
        key as libc::c_ulong,
        buf.as_mut_ptr() as libc::c_ulong,
        buf.len() as libc::c_ulong,
        0,
    )
    .map(|n| n as usize)
}

fn read_buffer(op: libc::c_int, key: KeySerial) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; 256];
    loop {
        let n = read_into(op, key, &mut buf)?;
        if n <= buf.len() {
            buf.truncate(n);
            return Ok(buf);
        }
        buf.resize(n, 0);
    }
}

/// A description without the NUL bytes that end it.
fn trim_nuls(mut b: &[u8]) -> &[u8] {
    while let [rest @ .., 0] = b {
        b = rest;
    }
    b
}

/// `keyctl(KEYCTL_DESCRIBE)` (`keyctl_describe(3)`): "type;uid;gid;perm;description".
#[doc(alias = "keyctl_describe")]
pub fn describe(key: KeySerial) -> Result<String, Errno> {
    let b = read_buffer(KEYCTL_DESCRIBE, key)?;
    Ok(String::from_utf8_lossy(trim_nuls(&b)).into_owned())
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
    search_c(keyring, &t, &d)
}

/// [`search`] on C strings: no allocation, so a fork child may call it.
fn search_c(keyring: KeySerial, t: &CStr, d: &CStr) -> Result<KeySerial, Errno> {
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
