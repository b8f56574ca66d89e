//! Reading an extended attribute as the calling process (`getxattr(2)`, `lgetxattr(2)`).

use std::path::Path;

use crate::{Errno, Error};

/// The value of `name` on `path`, `None` when it has none (`ENODATA`).
pub fn get_xattr(path: &Path, name: &str) -> Result<Option<Vec<u8>>, Error> {
    let mut buf = vec![0u8; 4096];
    match rustix::fs::getxattr(path, name, &mut buf[..]) {
        Ok(n) => {
            buf.truncate(n);
            Ok(Some(buf))
        }
        Err(Errno::NODATA) => Ok(None),
        Err(errno) => Err(Error::Path {
            op: "getxattr",
            path: path.to_owned(),
            errno,
        }),
    }
}

/// The value of `name` on `path` itself (a final symlink not followed), `None` when it has none
/// (`ENODATA`) or its filesystem keeps no such attributes (`EOPNOTSUPP`).
#[doc(alias = "lgetxattr")]
pub fn lget_xattr(path: &Path, name: &str) -> Result<Option<Vec<u8>>, Error> {
    let mut buf = vec![0u8; 65536];
    match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
        Ok(n) => {
            buf.truncate(n);
            Ok(Some(buf))
        }
        Err(Errno::NODATA) | Err(Errno::NOTSUP) => Ok(None),
        Err(errno) => Err(Error::Path {
            op: "lgetxattr",
            path: path.to_owned(),
            errno,
        }),
    }
}

/// Set `name` on `path` to `value` (`setxattr(2)` with no flags), following a final symlink.
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) -> Result<(), Error> {
    rustix::fs::setxattr(path, name, value, rustix::fs::XattrFlags::empty()).map_err(|errno| {
        Error::Path {
            op: "setxattr",
            path: path.to_owned(),
            errno,
        }
    })
}
