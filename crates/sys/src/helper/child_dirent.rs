//! The child's side of the directory-entry calls: `unlinkat`, `renameat2`, `linkat`,
//! `symlinkat` on the paths in the request buffer (no allocation).

use std::ffi::CStr;

use rustix::fs::{AtFlags, RenameFlags, CWD};

use super::child_calls::path_or_inval;
use super::protocol::{
    Rep, Req, CALL_LINK, CALL_RENAME, CALL_RMDIR, CALL_SYMLINK, CALL_UNLINK, STEP_IO,
};

/// The first path of a payload and the one after it.
fn two_paths(payload: &[u8]) -> Result<(&CStr, &CStr), Rep> {
    let a = path_or_inval(payload)?;
    let b = path_or_inval(&payload[a.to_bytes().len() + 1..])?;
    Ok((a, b))
}

/// One directory-entry call (`req.how`).
pub(super) fn call(req: &Req, payload: &[u8]) -> Result<(), Rep> {
    let fail = |e| Rep::err(STEP_IO, e);
    match req.how {
        CALL_UNLINK => rustix::fs::unlinkat(CWD, path_or_inval(payload)?, AtFlags::empty()),
        CALL_RMDIR => rustix::fs::unlinkat(CWD, path_or_inval(payload)?, AtFlags::REMOVEDIR),
        CALL_RENAME => {
            let (a, b) = two_paths(payload)?;
            let flags = RenameFlags::from_bits_retain(req.arg0 as u32);
            rustix::fs::renameat_with(CWD, a, CWD, b, flags)
        }
        CALL_LINK => {
            let (a, b) = two_paths(payload)?;
            rustix::fs::linkat(CWD, a, CWD, b, AtFlags::empty())
        }
        CALL_SYMLINK => {
            let (target, path) = two_paths(payload)?;
            rustix::fs::symlinkat(target, CWD, path)
        }
        _ => Err(rustix::io::Errno::NOSYS),
    }
    .map_err(fail)
}
