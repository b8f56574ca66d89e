//! The forked child's side: serving one request (all but `OP_EXIT`, `OP_REAP` and `OP_SPAWN`,
//! which the loop in `child_main` handles). Raw system calls on the request and reply buffers
//! and on fds from the helper's fd table: no allocation.

use std::os::fd::OwnedFd;

use rustix::fs::{Mode, OFlags};

use super::child_calls::{self, path_or_inval};
use super::child_creds::{apply_creds, arm_parent_death_signal, caps_now};
use super::child_tables::FdTable;
use super::protocol::{
    write_how, RawOpts, Rep, Req, OP_CALL, OP_CLOSE, OP_FETCH_FD, OP_IDS, OP_INSTALL_FD, OP_OPEN,
    OP_PEERCRED, OP_READ_PATH, OP_SET_CREDS, OP_SOCKETPAIR, OP_STAT, OP_WRITE, STEP_IO, STEP_OPEN,
    STEP_PRCTL, STEP_PROTOCOL,
};
use crate::Errno;

/// A reply and the length of its payload, or a failure reply (no payload).
type Served = Result<(Rep, usize), Rep>;

/// Serve one request, writing any reply payload into `out`; `out_fd` is set to an fd of the
/// table to pass back with the reply. Returns the reply and the payload length. A passed fd
/// the request does not consume is closed.
pub(super) fn serve(
    req: &Req,
    payload: &[u8],
    mut passed: Option<OwnedFd>,
    out: &mut [u8],
    out_fd: &mut Option<i32>,
    table: &mut FdTable,
    parent: Option<i32>,
) -> (Rep, usize) {
    let result = match req.op {
        OP_OPEN => open(req, payload, table),
        OP_WRITE => {
            let fd = table.get(req.fd).map_err(|e| Rep::err(STEP_PROTOCOL, e));
            fd.and_then(|fd| {
                let n =
                    write_how(fd, payload, req.how, req.arg0).map_err(|e| Rep::err(STEP_IO, e))?;
                Ok(value(n as u64))
            })
        }
        OP_READ_PATH => read_path(payload, out),
        OP_CLOSE => match table.remove(req.fd) {
            Ok(fd) => {
                drop(fd);
                Ok((Rep::ok(), 0))
            }
            Err(e) => Err(Rep::err(STEP_PROTOCOL, e)),
        },
        OP_STAT => stat(payload),
        OP_IDS => ids(out),
        OP_SET_CREDS => set_creds(payload, parent),
        OP_FETCH_FD => match table.get(req.fd) {
            Ok(_) => {
                *out_fd = Some(req.fd);
                Ok((Rep::ok(), 0))
            }
            Err(e) => Err(Rep::err(STEP_PROTOCOL, e)),
        },
        OP_INSTALL_FD => match passed.take() {
            Some(fd) => match table.insert(fd) {
                Ok(raw) => Ok(value(raw as u64)),
                Err(e) => Err(Rep::err(STEP_PROTOCOL, e)),
            },
            None => Err(Rep::err(STEP_PROTOCOL, Errno::BADF)),
        },
        OP_SOCKETPAIR => socketpair(table),
        OP_PEERCRED => peercred(req, table),
        OP_CALL => child_calls::call(req, payload, passed.take(), out, parent),
        _ => Err(Rep::err(STEP_PROTOCOL, Errno::NOSYS)),
    };
    drop(passed);
    match result {
        Ok(x) => x,
        Err(rep) => (rep, 0),
    }
}

/// A success reply with one value and no payload.
fn value(v0: u64) -> (Rep, usize) {
    let mut rep = Rep::ok();
    rep.v[0] = v0;
    (rep, 0)
}

/// `OP_OPEN`: open the payload's path with the request's flags and mode; the fd joins the table.
fn open(req: &Req, payload: &[u8], table: &mut FdTable) -> Served {
    let path = path_or_inval(payload)?;
    let flags = OFlags::from_bits_retain(req.arg0 as u32);
    let fd = rustix::fs::open(path, flags, Mode::from_bits_retain(req.arg1 as u32))
        .map_err(|e| Rep::err(STEP_OPEN, e))?;
    let raw = table.insert(fd).map_err(|e| Rep::err(STEP_OPEN, e))?;
    Ok(value(raw as u64))
}

/// `OP_READ_PATH`: read a whole file into `out`; `v[1]` is 1 if it did not fit.
fn read_path(payload: &[u8], out: &mut [u8]) -> Served {
    let path = path_or_inval(payload)?;
    let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Rep::err(STEP_OPEN, e))?;
    let mut len = 0usize;
    let mut truncated = false;
    loop {
        if len == out.len() {
            truncated = true;
            break;
        }
        match rustix::io::read(&fd, &mut out[len..]) {
            Ok(0) => break,
            Ok(k) => len += k,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(Rep::err(STEP_IO, e)),
        }
    }
    let mut rep = Rep::ok();
    rep.v[0] = len as u64;
    rep.v[1] = truncated as u64;
    Ok((rep, len))
}

/// `OP_STAT`: owner, group, mode, inode and device of the payload's path.
fn stat(payload: &[u8]) -> Served {
    let path = path_or_inval(payload)?;
    let st = rustix::fs::stat(path).map_err(|e| Rep::err(STEP_IO, e))?;
    let mut rep = Rep::ok();
    rep.v = [
        st.st_uid as u64,
        st.st_gid as u64,
        st.st_mode as u64,
        st.st_ino,
        st.st_dev,
    ];
    Ok((rep, 0))
}

/// `OP_IDS`: the real, effective and saved uids and gids, the groups (payload: u32 words
/// ruid euid suid rgid egid sgid ngroups groups...) and the capability sets (`v[0..3]`).
fn ids(out: &mut [u8]) -> Served {
    let mut r = [0 as libc::uid_t; 3];
    let mut g = [0 as libc::gid_t; 3];
    // SAFETY: getresuid writes one id through each pointer; each points to an
    // element of a live local array.
    let ok_u = unsafe { libc::getresuid(&mut r[0], &mut r[1], &mut r[2]) } == 0;
    // SAFETY: as above, for getresgid.
    let ok_g = unsafe { libc::getresgid(&mut g[0], &mut g[1], &mut g[2]) } == 0;
    let ok = ok_u && ok_g;
    if !ok {
        return Err(Rep::err(STEP_IO, Errno::FAULT));
    }
    let mut groups = [0 as libc::gid_t; 256];
    // SAFETY: getgroups writes at most `size` gids into the array, which has that many.
    let n = unsafe { libc::getgroups(groups.len() as libc::c_int, groups.as_mut_ptr()) };
    if n < 0 {
        return Err(Rep::err(STEP_IO, Errno::RANGE));
    }
    let (eff, prm, inh) = caps_now();
    let words = [r[0], r[1], r[2], g[0], g[1], g[2], n as u32];
    let mut len = 0;
    for w in words.iter().chain(groups[..n as usize].iter()) {
        out[len..len + 4].copy_from_slice(&w.to_ne_bytes());
        len += 4;
    }
    let mut rep = Rep::ok();
    rep.v[0] = eff;
    rep.v[1] = prm;
    rep.v[2] = inh;
    Ok((rep, len))
}

/// `OP_SET_CREDS`: apply ids and capability sets as the setup options would.
fn set_creds(payload: &[u8], parent: Option<i32>) -> Served {
    let o = RawOpts::decode(payload).ok_or(Rep::err(STEP_PROTOCOL, Errno::INVAL))?;
    let r = apply_creds(&o).map_err(|(step, e)| Rep::err(step, e));
    // Re-arm even after a partial change: any euid/egid change cleared it.
    arm_parent_death_signal(parent).map_err(|()| Rep::err(STEP_PRCTL, Errno::SRCH))?;
    r?;
    Ok((Rep::ok(), 0))
}

/// `OP_SOCKETPAIR`: a connected `AF_UNIX` stream pair; both ends join the table.
fn socketpair(table: &mut FdTable) -> Served {
    let (a, b) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| Rep::err(STEP_IO, e))?;
    let mut rep = Rep::ok();
    rep.v[0] = table.insert(a).map_err(|e| Rep::err(STEP_OPEN, e))? as u64;
    rep.v[1] = table.insert(b).map_err(|e| Rep::err(STEP_OPEN, e))? as u64;
    Ok((rep, 0))
}

/// `OP_PEERCRED`: pid, uid and gid of the peer of a socket in the table.
fn peercred(req: &Req, table: &FdTable) -> Served {
    let fd = table.get(req.fd).map_err(|e| Rep::err(STEP_PROTOCOL, e))?;
    let c = rustix::net::sockopt::socket_peercred(fd).map_err(|e| Rep::err(STEP_IO, e))?;
    let mut rep = Rep::ok();
    rep.v[0] = c.pid.as_raw_nonzero().get() as u64;
    rep.v[1] = c.uid.as_raw() as u64;
    rep.v[2] = c.gid.as_raw() as u64;
    Ok((rep, 0))
}
