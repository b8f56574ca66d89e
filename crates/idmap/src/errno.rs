//! The errnos map writes and the permission model return: one type for every layer above the
//! kernel, so a refusal keeps its name from the map parser up to a scenario report.

use serde::Serialize;

/// An errno, by its name; the numbers are those of x86-64 Linux.
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
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
    EBUSY = 16,
    EXDEV = 18,
    ENOTEMPTY = 39,
    EUSERS = 87,
    EFBIG = 27,
    ELOOP = 40,
}

impl Errno {
    /// Every errno known here, in the order `parse` tries them.
    pub const ALL: [Errno; 22] = [
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
        Errno::EBUSY,
        Errno::EXDEV,
        Errno::ENOTEMPTY,
        Errno::EUSERS,
        Errno::EFBIG,
        Errno::ELOOP,
    ];

    /// The errno's number.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// From a number, if it is one of ours.
    pub fn from_code(code: i32) -> Option<Self> {
        Errno::ALL.into_iter().find(|e| e.code() == code)
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
            Errno::EBUSY => "EBUSY",
            Errno::EXDEV => "EXDEV",
            Errno::ENOTEMPTY => "ENOTEMPTY",
            Errno::EUSERS => "EUSERS",
            Errno::EFBIG => "EFBIG",
            Errno::ELOOP => "ELOOP",
        }
    }

    /// From a name (`EACCES`, case-insensitive) or a number.
    pub fn parse(s: &str) -> Option<Errno> {
        let t = s.trim();
        if let Ok(n) = t.parse::<i32>() {
            return Errno::from_code(n);
        }
        Errno::ALL
            .into_iter()
            .find(|e| e.name().eq_ignore_ascii_case(t))
    }
}

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
