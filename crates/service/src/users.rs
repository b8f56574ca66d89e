//! Login names as the daemon sees them: its passwd file (`<etc>/passwd`), re-read when it
//! changes. A user is named by a login name or a decimal uid.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use credns_registry::{parse_passwd_lenient, PasswdEntry};

/// What identifies a version of the file: a change of any of them re-reads it.
type Stamp = (u64, u64, Option<SystemTime>);

/// The daemon's passwd file, read on demand.
#[derive(Debug)]
pub(crate) struct Users {
    path: Option<PathBuf>,
    cache: Mutex<Option<(Stamp, Vec<PasswdEntry>)>>,
}

impl Users {
    /// The passwd file in `etc` (none: only decimal uids name users).
    pub(crate) fn new(etc: Option<&std::path::Path>) -> Self {
        Users {
            path: etc.map(|d| d.join("passwd")),
            cache: Mutex::new(None),
        }
    }

    fn with_entries<T>(&self, f: impl FnOnce(&[PasswdEntry]) -> T) -> T {
        let Some(path) = &self.path else {
            return f(&[]);
        };
        let stamp = std::fs::metadata(path).ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.ino(), m.size(), m.modified().ok())
        });
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = matches!((&*cache, stamp), (Some((s, _)), Some(now)) if *s == now);
        if !fresh {
            *cache = stamp.map(|s| {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                (
                    s,
                    parse_passwd_lenient(&path.display().to_string(), &text).0,
                )
            });
        }
        f(cache.as_ref().map_or(&[][..], |(_, e)| &e[..]))
    }

    /// The uid and login name of `user` (a name, or a decimal uid, named by its passwd entry
    /// if it has one); `None` for a name passwd does not have.
    pub(crate) fn resolve(&self, user: &str) -> Option<(u32, String)> {
        if let Ok(uid) = user.parse::<u32>() {
            let name =
                self.with_entries(|es| es.iter().find(|e| e.uid == uid).map(|e| e.name.clone()));
            return Some((uid, name.unwrap_or_else(|| uid.to_string())));
        }
        self.with_entries(|es| es.iter().find(|e| e.name == user).map(|e| e.uid))
            .map(|uid| (uid, user.to_string()))
    }
}
