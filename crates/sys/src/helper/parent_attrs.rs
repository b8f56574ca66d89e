//! Attribute changes made as a helper: `truncate(2)`, `utimensat(2)`, `setxattr(2)`.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::parent::{path_payload, UsernsChild};
use super::protocol;
use crate::{Errno, Error};

impl UsernsChild {
    /// Have the helper `truncate(2)` `path` to `length`.
    pub fn truncate(&self, path: &Path, length: i64) -> Result<Result<(), Errno>, Error> {
        self.path_call(protocol::CALL_TRUNCATE, path, [length as u64, 0, 0])
    }

    /// Have the helper `utimensat(2)` `path`: `explicit` times (1 s after the epoch), or
    /// `NULL` (now).
    #[doc(alias = "utimensat")]
    pub fn utimes(&self, path: &Path, explicit: bool) -> Result<Result<(), Errno>, Error> {
        self.path_call(protocol::CALL_UTIMES, path, [explicit as u64, 0, 0])
    }

    /// Have the helper `setxattr(2)` `name` on `path` to `value` (flags 0).
    pub fn setxattr(
        &self,
        path: &Path,
        name: &str,
        value: &[u8],
    ) -> Result<Result<(), Errno>, Error> {
        let mut p = path_payload(path)?;
        if name.as_bytes().contains(&0) {
            return Err(Error::Invalid(format!(
                "xattr name {name:?} holds a NUL byte"
            )));
        }
        p.extend_from_slice(std::ffi::OsStr::new(name).as_bytes());
        p.push(0);
        p.extend_from_slice(value);
        if p.len() > protocol::MSG_MAX / 2 {
            return Err(Error::Invalid(format!(
                "xattr value of {} bytes is too long",
                value.len()
            )));
        }
        Ok(self
            .syscall(protocol::CALL_SETXATTR, [0; 3], &p)?
            .map(|_| ()))
    }
}
