//! The parent's side of the directory-entry calls: [`UsernsChild`] requests that remove,
//! move and make names (`unlink(2)`, `rmdir(2)`, `rename(2)`, `link(2)`, `symlink(2)`) and
//! `open(2)` with a mode.

use std::ffi::OsStr;
use std::path::Path;

use rustix::fs::OFlags;

use super::parent::path_payload;
use super::protocol::{self, Req};
use super::{RemoteFd, UsernsChild};
use crate::{Errno, Error};

/// `a` and `b`, each NUL-terminated.
fn two_payload(a: &Path, b: &Path) -> Result<Vec<u8>, Error> {
    let mut p = path_payload(a)?;
    p.extend(path_payload(b)?);
    Ok(p)
}

impl UsernsChild {
    /// Have the helper `unlink(2)` a path.
    pub fn unlink(&self, path: &Path) -> Result<Result<(), Errno>, Error> {
        self.path_call(protocol::CALL_UNLINK, path, [0; 3])
    }

    /// Have the helper `rmdir(2)` a directory.
    pub fn rmdir(&self, path: &Path) -> Result<Result<(), Errno>, Error> {
        self.path_call(protocol::CALL_RMDIR, path, [0; 3])
    }

    /// Have the helper `renameat2(2)` `from` to `to` with `flags` (`RENAME_NOREPLACE` 1,
    /// `RENAME_EXCHANGE` 2).
    #[doc(alias = "renameat2")]
    pub fn rename(&self, from: &Path, to: &Path, flags: u32) -> Result<Result<(), Errno>, Error> {
        let r = self.syscall(
            protocol::CALL_RENAME,
            [flags as u64, 0, 0],
            &two_payload(from, to)?,
        )?;
        Ok(r.map(|_| ()))
    }

    /// Have the helper make a hard link `to` of `from` (`link(2)`, no `AT_SYMLINK_FOLLOW`).
    pub fn link(&self, from: &Path, to: &Path) -> Result<Result<(), Errno>, Error> {
        let r = self.syscall(protocol::CALL_LINK, [0; 3], &two_payload(from, to)?)?;
        Ok(r.map(|_| ()))
    }

    /// Have the helper make a symbolic link at `path` holding `target` (`symlink(2)`).
    pub fn symlink(&self, target: &OsStr, path: &Path) -> Result<Result<(), Errno>, Error> {
        let r = self.syscall(
            protocol::CALL_SYMLINK,
            [0; 3],
            &two_payload(Path::new(target), path)?,
        )?;
        Ok(r.map(|_| ()))
    }

    /// Have the helper `open(2)` a file with `flags` and `mode` (used with `O_CREAT`); the fd
    /// stays open in the helper.
    pub fn open_mode(
        &self,
        path: &Path,
        flags: OFlags,
        mode: u32,
    ) -> Result<Result<RemoteFd, Errno>, Error> {
        let r = self.call(
            Req {
                op: protocol::OP_OPEN,
                arg0: flags.bits() as u64,
                arg1: mode as u64,
                ..Req::default()
            },
            &path_payload(path)?,
            None,
        )?;
        Ok(Self::answer(&r.rep).map(|_| RemoteFd(r.rep.v[0] as i32)))
    }
}
