//! The pipe protocol between a [`KeyActor`](super::KeyActor) and its forked child, shared by
//! both sides. Every message is a frame: a native-endian `u32` length, then that many bytes.
//!
//! A request is a [`REQ_HDR`]-byte header — the op, three `u32` arguments, the lengths of
//! three byte fields and a zero word — then the three fields, each followed by a NUL byte, so
//! the child can hand the type and description to the kernel as C strings where they lie.
//! The first field starts at offset [`REQ_HDR`], a multiple of 8, so in the child's 8-aligned
//! buffers a list of gids there is aligned as `setgroups(2)` reads it.
//!
//! A reply is a tag ([`REP_ERRNO`], [`REP_SERIAL`], [`REP_BYTES`], [`REP_DONE`]), an `i32`
//! value (the errno or the serial) and, for bytes, the bytes.

/// `add_key`: keyring; type, description, payload.
pub(super) const OP_ADD: u32 = 1;
/// `KEYCTL_READ`: key.
pub(super) const OP_READ: u32 = 2;
/// `KEYCTL_DESCRIBE`: key.
pub(super) const OP_DESCRIBE: u32 = 3;
/// `KEYCTL_UPDATE`: key; -, -, payload.
pub(super) const OP_UPDATE: u32 = 4;
/// `KEYCTL_SEARCH`: keyring; type, description.
pub(super) const OP_SEARCH: u32 = 5;
/// `KEYCTL_LINK`: key, keyring.
pub(super) const OP_LINK: u32 = 6;
/// `KEYCTL_UNLINK`: key, keyring.
pub(super) const OP_UNLINK: u32 = 7;
/// `KEYCTL_SETPERM`: key, perm.
pub(super) const OP_SETPERM: u32 = 8;
/// `KEYCTL_CHOWN`: key, uid, gid (`u32::MAX`: no change).
pub(super) const OP_CHOWN: u32 = 9;
/// `KEYCTL_GET_KEYRING_ID`: id, create.
pub(super) const OP_GET_ID: u32 = 10;
/// `KEYCTL_INVALIDATE`: key.
pub(super) const OP_INVALIDATE: u32 = 11;
/// `unshare(CLONE_NEWUSER)`.
pub(super) const OP_UNSHARE: u32 = 20;
/// `setns` into the user namespace of a pid.
pub(super) const OP_SETNS: u32 = 21;
/// `setgroups`, `setresgid`, `setresuid`: uid, gid; groups (native-endian `u32`s).
pub(super) const OP_SET_IDS: u32 = 22;
/// `setfsuid`: uid.
pub(super) const OP_SET_FSUID: u32 = 23;

/// Size of a request header.
pub(super) const REQ_HDR: usize = 32;
/// Size of a reply header.
pub(super) const REP_HDR: usize = 8;

pub(super) const REP_ERRNO: u32 = 0;
pub(super) const REP_SERIAL: u32 = 1;
pub(super) const REP_BYTES: u32 = 2;
pub(super) const REP_DONE: u32 = 3;

/// The native-endian `u32` at `at`, or 0 past the end.
pub(super) fn rd_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_ne_bytes(a)
}

/// Field `i` (0..3) of a request body with its NUL byte, or `None` if the body is too short.
pub(super) fn field(body: &[u8], i: usize) -> Option<&[u8]> {
    let mut at = REQ_HDR;
    for k in 0..3 {
        let len = rd_u32(body, 16 + 4 * k) as usize;
        let end = at.checked_add(len)?.checked_add(1)?;
        if k == i {
            return body.get(at..end);
        }
        at = end;
    }
    None
}
