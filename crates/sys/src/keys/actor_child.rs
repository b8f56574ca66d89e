//! The forked child's side of [`KeyActor`](super::KeyActor): read a request frame, make the
//! system calls, write a reply frame, until the command pipe closes.
//!
//! The actor is forked from a process that may have many threads (the test harness, the
//! differential tests), so another thread may have held the allocator's or stdio's lock at the
//! fork, and the child must not take them: it makes only raw system calls, on memory allocated
//! before the fork ([`ActorMemory`]). A message larger than that memory is read into (or, for
//! a key's payload, a keyring's list or a description, answered from) an anonymous mapping
//! made with `mmap(2)` for it and unmapped after: a system call, not the allocator.

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::wire::*;
use super::{
    add_key_c, chown, get_keyring_id, invalidate, link, read_into, search_c, setperm, trim_nuls,
    unlink, update, KeySerial, KEYCTL_DESCRIBE, KEYCTL_READ,
};
use crate::{last_errno, Errno};

/// Bytes of each of the two buffers (requests, replies): enough for every message but large
/// payloads, keyring lists and group lists.
const BUF_LEN: usize = 64 * 1024;

/// The actor's memory, allocated before the fork: a request buffer and a reply buffer, as
/// `u64`s so that both start 8-aligned (see [`REQ_HDR`]).
pub(super) struct ActorMemory {
    words: Vec<u64>,
}

impl ActorMemory {
    pub(super) fn new() -> Self {
        ActorMemory {
            words: vec![0u64; 2 * BUF_LEN / 8],
        }
    }

    /// The request buffer and the reply buffer.
    fn split(&mut self) -> (&mut [u8], &mut [u8]) {
        let len = self.words.len() * 8;
        // SAFETY: the u64 slice is `len` bytes of initialized memory owned by `self`, any byte
        // pattern is a valid u8, and the byte view borrows `self` mutably so nothing else
        // touches the words while it lives.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), len) };
        bytes.split_at_mut(len / 2)
    }
}

/// `_exit(2)` once the command pipe closes (or a reply cannot be written).
pub(super) fn actor_main(cmds: OwnedFd, replies: OwnedFd, mem: &mut ActorMemory) -> ! {
    let (req_buf, rep_buf) = mem.split();
    loop {
        let mut len = [0u8; 4];
        if read_exact(cmds.as_fd(), &mut len).is_err() {
            break;
        }
        let len = u32::from_ne_bytes(len) as usize;
        let served = with_scratch(req_buf, len, |body| {
            read_exact(cmds.as_fd(), body).and_then(|()| serve(body, rep_buf, replies.as_fd()))
        });
        if !matches!(served, Ok(Ok(()))) {
            break;
        }
    }
    crate::helper::exit_now(0)
}

/// Run `f` on `len` bytes of memory: the start of `pre` (allocated before the fork) if it is
/// large enough, else a fresh anonymous mapping, unmapped afterwards. `Err` if `mmap` failed.
fn with_scratch<R>(pre: &mut [u8], len: usize, f: impl FnOnce(&mut [u8]) -> R) -> Result<R, Errno> {
    if len <= pre.len() {
        return Ok(f(&mut pre[..len]));
    }
    // SAFETY: a new private anonymous mapping at an address the kernel picks: no existing
    // memory is touched.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(last_errno());
    }
    // SAFETY: the mapping is `len` readable, writable, zero-filled (so initialized) bytes,
    // page-aligned, used only through this slice until it is unmapped below.
    let r = f(unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), len) });
    // SAFETY: unmaps exactly the mapping made above; the slice given to `f` is gone.
    unsafe { libc::munmap(p, len) };
    Ok(r)
}

fn read_exact(fd: BorrowedFd<'_>, mut buf: &mut [u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        match rustix::io::read(fd, &mut *buf) {
            Ok(0) => return Err(Errno::PIPE),
            Ok(n) => buf = &mut buf[n..],
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        match rustix::io::write(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Write one reply frame: tag, value, bytes.
fn reply(out: BorrowedFd<'_>, tag: u32, value: i32, bytes: &[u8]) -> Result<(), Errno> {
    let mut hdr = [0u8; 4 + REP_HDR];
    hdr[0..4].copy_from_slice(&((REP_HDR + bytes.len()) as u32).to_ne_bytes());
    hdr[4..8].copy_from_slice(&tag.to_ne_bytes());
    hdr[8..12].copy_from_slice(&value.to_ne_bytes());
    write_all(out, &hdr)?;
    write_all(out, bytes)
}

/// Answer one request; `Err` only if the reply could not be written (or mapped).
fn serve(body: &[u8], rep_buf: &mut [u8], out: BorrowedFd<'_>) -> Result<(), Errno> {
    let op = rd_u32(body, 0);
    let key = rd_u32(body, 4) as KeySerial;
    if body.len() < REQ_HDR {
        return reply(out, REP_ERRNO, Errno::INVAL.raw_os_error(), &[]);
    }
    match op {
        OP_READ => read_reply(KEYCTL_READ, key, rep_buf, out),
        OP_DESCRIBE => read_reply(KEYCTL_DESCRIBE, key, rep_buf, out),
        _ => match perform(op, body) {
            Ok(Some(serial)) => reply(out, REP_SERIAL, serial, &[]),
            Ok(None) => reply(out, REP_DONE, 0, &[]),
            Err(e) => reply(out, REP_ERRNO, e.raw_os_error(), &[]),
        },
    }
}

/// `KEYCTL_READ` or `KEYCTL_DESCRIBE` into `rep_buf`, or into a mapping as large as the
/// kernel says the answer is, again until it fits; a description loses its trailing NULs.
fn read_reply(
    op: libc::c_int,
    key: KeySerial,
    rep_buf: &mut [u8],
    out: BorrowedFd<'_>,
) -> Result<(), Errno> {
    let mut want = rep_buf.len();
    loop {
        let step = with_scratch(rep_buf, want, |buf| match read_into(op, key, buf) {
            Err(e) => Ok(reply(out, REP_ERRNO, e.raw_os_error(), &[])),
            Ok(n) if n <= buf.len() => {
                let b = &buf[..n];
                let b = if op == KEYCTL_DESCRIBE {
                    trim_nuls(b)
                } else {
                    b
                };
                Ok(reply(out, REP_BYTES, 0, b))
            }
            Ok(n) => Err(n),
        })?;
        match step {
            Ok(sent) => return sent,
            Err(n) => want = n,
        }
    }
}

/// Field `i` of the request as a C string: EINVAL if it is missing or holds a NUL byte.
fn c_field(body: &[u8], i: usize) -> Result<&CStr, Errno> {
    let f = field(body, i).ok_or(Errno::INVAL)?;
    CStr::from_bytes_with_nul(f).map_err(|_| Errno::INVAL)
}

/// Field `i` of the request as bytes (without its NUL).
fn bytes_field(body: &[u8], i: usize) -> Result<&[u8], Errno> {
    let f = field(body, i).ok_or(Errno::INVAL)?;
    Ok(&f[..f.len() - 1])
}

/// Perform every request but the reads: a serial, nothing, or the kernel's errno.
fn perform(op: u32, body: &[u8]) -> Result<Option<KeySerial>, Errno> {
    let a = |i: usize| rd_u32(body, 4 + 4 * i);
    let key = a(0) as KeySerial;
    let id = |v: u32| (v != u32::MAX).then_some(v);
    match op {
        OP_ADD => {
            let payload = bytes_field(body, 2)?;
            add_key_c(c_field(body, 0)?, c_field(body, 1)?, payload, key).map(Some)
        }
        OP_SEARCH => search_c(key, c_field(body, 0)?, c_field(body, 1)?).map(Some),
        OP_GET_ID => get_keyring_id(key, a(1) != 0).map(Some),
        OP_UPDATE => update(key, bytes_field(body, 2)?).map(|()| None),
        OP_LINK => link(key, a(1) as KeySerial).map(|()| None),
        OP_UNLINK => unlink(key, a(1) as KeySerial).map(|()| None),
        OP_SETPERM => setperm(key, a(1)).map(|()| None),
        OP_CHOWN => chown(key, id(a(1)), id(a(2))).map(|()| None),
        OP_INVALIDATE => invalidate(key).map(|()| None),
        OP_UNSHARE => {
            // SAFETY: unshare with a flag; affects only this single-threaded process.
            if unsafe { libc::unshare(libc::CLONE_NEWUSER) } < 0 {
                Err(last_errno())
            } else {
                Ok(None)
            }
        }
        OP_SETNS => setns_user(a(0) as i32).map(|()| None),
        OP_SET_FSUID => set_fsuid(a(0)).map(|()| None),
        OP_SET_IDS => set_ids(a(0), a(1), bytes_field(body, 0)?).map(|()| None),
        _ => Err(Errno::INVAL),
    }
}

/// `setgroups(2)`, `setresgid(2)`, `setresuid(2)`; `groups` holds native-endian gids and
/// starts 8-aligned (at [`REQ_HDR`] in an 8-aligned buffer).
fn set_ids(uid: u32, gid: u32, groups: &[u8]) -> Result<(), Errno> {
    // Raw syscalls: per-thread credentials, as the kernel applies them (the child has one thread).
    // SAFETY: setgroups reads `groups.len() / 4` gids from the live request buffer.
    let r = unsafe { libc::syscall(libc::SYS_setgroups, groups.len() / 4, groups.as_ptr()) };
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

/// `/proc/PID/ns/user` for `pid`, NUL-terminated, written into `buf` without formatting
/// machinery; the path's length without the NUL.
fn ns_path(pid: i32, buf: &mut [u8; 32]) -> usize {
    let mut digits = [0u8; 11];
    let mut n = pid.unsigned_abs();
    let mut k = digits.len();
    loop {
        k -= 1;
        digits[k] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut at = 0;
    let sign: &[u8] = if pid < 0 { b"-" } else { b"" };
    for part in [b"/proc/" as &[u8], sign, &digits[k..], b"/ns/user\0"] {
        buf[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    at - 1
}

fn setns_user(pid: i32) -> Result<(), Errno> {
    let mut path = [0u8; 32];
    ns_path(pid, &mut path);
    // SAFETY: a NUL-terminated path in a live local; the descriptor is closed below.
    let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns_paths() {
        let mut b = [0u8; 32];
        for pid in [0, 7, 42, i32::MAX, -5, i32::MIN] {
            let n = ns_path(pid, &mut b);
            assert_eq!(&b[..n], format!("/proc/{pid}/ns/user").as_bytes());
            assert_eq!(b[n], 0);
        }
    }

    #[test]
    fn answers_larger_than_the_buffer_come_from_a_mapping() {
        let Ok(ses) = super::super::join_new_session_keyring() else {
            return; // no keyrings here
        };
        let payload: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let key = super::super::add_key("user", "credns-sys-scratch", &payload, ses).unwrap();
        let (r, w) = rustix::pipe::pipe().unwrap();
        let mut small = [0u8; 16];
        read_reply(KEYCTL_READ, key, &mut small, w.as_fd()).unwrap();
        let mut frame = vec![0u8; 4 + REP_HDR + payload.len()];
        read_exact(r.as_fd(), &mut frame).unwrap();
        assert_eq!(rd_u32(&frame, 0) as usize, REP_HDR + payload.len());
        assert_eq!(rd_u32(&frame, 4), REP_BYTES);
        assert_eq!(&frame[4 + REP_HDR..], &payload[..]);
        let seen = with_scratch(&mut small, 100_000, |b| {
            (b.len(), b.iter().all(|&x| x == 0))
        });
        assert_eq!(seen, Ok((100_000, true)));
        super::super::invalidate(key).unwrap();
        let _ = super::super::join_new_session_keyring();
    }
}
