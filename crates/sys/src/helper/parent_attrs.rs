//! Attribute changes made as a helper: `truncate(2)`, `utimensat(2)`, `setxattr(2)`.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::parent::{path_payload, UsernsChild};
use super::protocol;
use crate::{Errno, Error};

/// The `times` argument of `utimensat(2)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UtimensTimes {
    /// `NULL`: now.
    Null,
    /// Both `UTIME_NOW`.
    Now,
    /// Both `UTIME_OMIT`: nothing to do.
    Omit,
    /// Explicit times (1 s after the epoch).
    Explicit,
}

impl UsernsChild {
    /// Have the helper `truncate(2)` `path` to `length`.
    pub fn truncate(&self, path: &Path, length: i64) -> Result<Result<(), Errno>, Error> {
        self.path_call(protocol::CALL_TRUNCATE, path, [length as u64, 0, 0])
    }

    /// Have the helper `utimensat(2)` `path` with `times`.
    #[doc(alias = "utimensat")]
    pub fn utimes(&self, path: &Path, times: UtimensTimes) -> Result<Result<(), Errno>, Error> {
        let how = match times {
            UtimensTimes::Null => 0,
            UtimensTimes::Explicit => 1,
            UtimensTimes::Now => 2,
            UtimensTimes::Omit => 3,
        };
        self.path_call(protocol::CALL_UTIMES, path, [how, 0, 0])
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
