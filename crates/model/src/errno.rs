//! The errnos the modelled decisions return.

use serde::{Serialize, Serializer};

/// An errno, by its name; the numbers are those of x86-64 Linux.
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Errno {
    EPERM = 1,
    ENOENT = 2,
    ESRCH = 3,
    EIO = 5,
    EACCES = 13,
    EEXIST = 17,
    ENOTDIR = 20,
    EISDIR = 21,
    EINVAL = 22,
    ENOSPC = 28,
    EROFS = 30,
    EDEADLK = 35,
    EOVERFLOW = 75,
    EOPNOTSUPP = 95,
    EDQUOT = 122,
    ENOKEY = 126,
}

impl Errno {
    const ALL: [Errno; 16] = [
        Errno::EPERM,
        Errno::ENOENT,
        Errno::ESRCH,
        Errno::EIO,
        Errno::EACCES,
        Errno::EEXIST,
        Errno::ENOTDIR,
        Errno::EISDIR,
        Errno::EINVAL,
        Errno::ENOSPC,
        Errno::EROFS,
        Errno::EOVERFLOW,
        Errno::EDEADLK,
        Errno::EOPNOTSUPP,
        Errno::EDQUOT,
        Errno::ENOKEY,
    ];

    /// The errno's number.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// Its name, e.g. `EACCES`.
    pub fn name(self) -> &'static str {
        match self {
            Errno::EPERM => "EPERM",
            Errno::ENOENT => "ENOENT",
            Errno::ESRCH => "ESRCH",
            Errno::EIO => "EIO",
            Errno::EACCES => "EACCES",
            Errno::EEXIST => "EEXIST",
            Errno::ENOTDIR => "ENOTDIR",
            Errno::EISDIR => "EISDIR",
            Errno::EINVAL => "EINVAL",
            Errno::ENOSPC => "ENOSPC",
            Errno::EROFS => "EROFS",
            Errno::EOVERFLOW => "EOVERFLOW",
            Errno::EDEADLK => "EDEADLK",
            Errno::EOPNOTSUPP => "EOPNOTSUPP",
            Errno::EDQUOT => "EDQUOT",
            Errno::ENOKEY => "ENOKEY",
        }
    }

    /// From a name (`EACCES`, case-insensitive) or a number.
    pub fn parse(s: &str) -> Option<Errno> {
        let t = s.trim();
        if let Ok(n) = t.parse::<i32>() {
            return Errno::ALL.into_iter().find(|e| e.code() == n);
        }
        Errno::ALL
            .into_iter()
            .find(|e| e.name().eq_ignore_ascii_case(t))
    }

    /// From the ID-map crate's errno.
    pub fn from_idmap(e: credns_idmap::Errno) -> Errno {
        Errno::parse(&e.code().to_string()).unwrap_or(Errno::EINVAL)
    }
}

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Errno {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}
