//! The host's own ids, read from its files: users and groups (`passwd`, `group`) and the
//! subordinate ranges shadow's tools hand out (`subuid`, `subgid`). No container range may
//! use them.
//!
//! One leniency, stated once: every file is read the way the tool that owns it reads it, and
//! conservatively. A line any reader could take as an id or a range excludes it (a malformed
//! passwd line whose uid field is a number still excludes that uid; a subuid line is taken as
//! shadow's own parser takes it); a line that names no id is skipped and reported as a
//! warning, never fatal, so one odd line cannot stop containers from starting. A missing file
//! excludes nothing.
//!
//! [`HostFiles::changed`] tells whether any file changed since the last load (its inode, size,
//! or modification or change time), so a caller re-reads them before the next allocation.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use credns_idmap::formats::SubidFile;
use credns_idmap::IdKind;

use crate::etc::{parse_group_lenient, parse_passwd_lenient};
use crate::exclude::Exclusions;

const FILES: [&str; 4] = ["passwd", "group", "subuid", "subgid"];

/// What identifies one version of a file: (dev, ino, size, mtime ns, ctime ns), or `None`
/// for a missing file.
type Stamp = Option<(u64, u64, u64, i128, i128)>;

/// The host's id files in one directory (`/etc`), and what was seen of them at the last load.
#[derive(Clone, Debug)]
pub struct HostFiles {
    dir: PathBuf,
    seen: Option<[Stamp; 4]>,
}

/// The result of reading the host's files.
#[derive(Clone, Debug, Default)]
pub struct HostIds {
    /// Every id they name.
    pub exclusions: Exclusions,
    /// Lines skipped or taken leniently, each naming its file, line and column.
    pub warnings: Vec<String>,
}

/// Reading a host file failed (not a missing file: that excludes nothing).
#[derive(Debug, thiserror::Error)]
#[error("reading {}: {source}", path.display())]
pub struct HostFileError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    let ns = |s: i64, n: i64| s as i128 * 1_000_000_000 + n as i128;
    Some((
        m.dev(),
        m.ino(),
        m.size(),
        ns(m.mtime(), m.mtime_nsec()),
        ns(m.ctime(), m.ctime_nsec()),
    ))
}

fn read_opt(path: &Path) -> Result<Option<String>, HostFileError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(HostFileError {
            path: path.to_path_buf(),
            source,
        }),
    }
}

impl HostFiles {
    /// The files `passwd`, `group`, `subuid` and `subgid` of `dir` (normally `/etc`).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        HostFiles {
            dir: dir.into(),
            seen: None,
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn stamps(&self) -> [Stamp; 4] {
        FILES.map(|f| stamp(&self.dir.join(f)))
    }

    /// Whether a file changed (or appeared, or went) since the last [`load`](Self::load);
    /// true before the first.
    pub fn changed(&self) -> bool {
        self.seen.is_none_or(|s| s != self.stamps())
    }

    /// Read all four files.
    pub fn load(&mut self) -> Result<HostIds, HostFileError> {
        // Stamped before reading: a change during the read shows as a change next time.
        let stamps = self.stamps();
        let mut out = HostIds::default();
        let path = |f: &str| self.dir.join(f);
        let name = |f: &str| path(f).display().to_string();
        if let Some(t) = read_opt(&path("passwd"))? {
            let (users, errs) = parse_passwd_lenient(&name("passwd"), &t);
            out.exclusions.add_passwd(&users);
            out.warnings.extend(errs.iter().map(ToString::to_string));
        }
        if let Some(t) = read_opt(&path("group"))? {
            let (groups, errs) = parse_group_lenient(&name("group"), &t);
            out.exclusions.add_group(&groups);
            out.warnings.extend(errs.iter().map(ToString::to_string));
        }
        for (f, kind) in [("subuid", IdKind::Uid), ("subgid", IdKind::Gid)] {
            if let Some(t) = read_opt(&path(f))? {
                let (file, errs) = SubidFile::parse_lenient(&t, &name(f));
                out.exclusions.add_subid(&file.entries, kind);
                out.warnings.extend(errs.iter().map(ToString::to_string));
            }
        }
        self.seen = Some(stamps);
        Ok(out)
    }
}
