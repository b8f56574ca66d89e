//! Reading `/proc` (`proc(5)`): ID maps, setgroups, status, the process list.

use std::path::{Path, PathBuf};

use credns_idmap::formats::{proc_map_lines, ProcLineError, ProcLineErrorKind};
use credns_idmap::{IdKind, IdMap};

use crate::ns::NsId;
use crate::{Errno, Error, Pid};

/// A procfs mount, `/proc` by default; injectable so tests can point it at a fake tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcFs {
    root: PathBuf,
}

impl Default for ProcFs {
    fn default() -> Self {
        Self::new()
    }
}

/// What `/proc/PID/status` says about a process's credentials (`proc(5)`). Ids are shown as
/// the *reader's* user namespace numbers them (unmapped ones as the overflow id, 65534).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcStatus {
    /// `Name:` (the command name, `comm`).
    pub name: String,
    /// `Uid:` real, effective, saved set-user-ID, filesystem uid.
    pub uid: [u32; 4],
    /// `Gid:` real, effective, saved set-group-ID, filesystem gid.
    pub gid: [u32; 4],
    /// `Groups:` the supplementary groups.
    pub groups: Vec<u32>,
    /// `NSpid:` the pid in each pid namespace from the reader's down to the process's own.
    pub nspid: Vec<Pid>,
    /// `CapEff:` the effective capability set (bit n is capability n, `capabilities(7)`).
    pub cap_eff: u64,
    /// `CapPrm:` the permitted capability set.
    pub cap_prm: u64,
    /// `CapInh:` the inheritable set (0 if the line is missing).
    pub cap_inh: u64,
    /// `CapBnd:` the bounding set (0 if the line is missing).
    pub cap_bnd: u64,
    /// `CapAmb:` the ambient set (0 if the line is missing).
    pub cap_amb: u64,
    /// `NoNewPrivs:` 1.
    pub no_new_privs: bool,
    /// `Threads:` the number of threads (0 if the line is missing).
    pub threads: u32,
    /// `Umask:` the file mode creation mask, if shown.
    pub umask: Option<u32>,
}

impl ProcStatus {
    /// Parse the text of a `/proc/PID/status` file (read elsewhere, e.g. by a helper); `path`
    /// names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, Error> {
        parse_status(path, text)
    }
}

impl ProcFs {
    /// The session id of `pid` (field 6 of `/proc/PID/stat`, after the parenthesised
    /// command name, which may itself hold spaces and parentheses).
    pub fn session(&self, pid: Pid) -> Result<u32, Error> {
        let path = self.pid_path(pid).join("stat");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Path {
            op: "read",
            path: path.clone(),
            errno: io_errno(&e),
        })?;
        text.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(3))
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| Error::Format {
                path,
                line: 1,
                message: "no session field".into(),
            })
    }
    /// The real `/proc`.
    pub fn new() -> Self {
        Self {
            root: PathBuf::from("/proc"),
        }
    }

    /// A procfs (or a fake tree laid out like one) at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The mount point.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `ROOT/PID`.
    pub fn pid_path(&self, pid: Pid) -> PathBuf {
        self.root.join(pid.to_string())
    }

    /// `ROOT/PID/uid_map` (or `gid_map`, `projid_map`).
    pub fn map_path(&self, pid: Pid, kind: IdKind) -> PathBuf {
        self.pid_path(pid).join(kind.file_name())
    }

    fn read_text(&self, path: &Path) -> Result<String, Error> {
        let bytes = std::fs::read(path).map_err(|e| Error::Path {
            op: "read",
            path: path.to_owned(),
            errno: io_errno(&e),
        })?;
        String::from_utf8(bytes).map_err(|_| Error::Format {
            path: path.to_owned(),
            line: 1,
            message: "not UTF-8".to_string(),
        })
    }

    /// The text of `/proc/PID/uid_map` (`gid_map`, `projid_map`) exactly as the kernel renders
    /// it for this reader (`user_namespaces(7)`: lower ids in the reader's numbering, or in the
    /// parent's when the reader is inside the namespace itself).
    pub fn read_map_text(&self, pid: Pid, kind: IdKind) -> Result<String, Error> {
        self.read_text(&self.map_path(pid, kind))
    }

    /// `/proc/PID/uid_map` (...) parsed: whitespace-separated `first lower count` lines. An empty
    /// file (a map never written) is [`IdMap::empty`]. A lower id of 4294967295 means the
    /// reader cannot see the extent's parent ids and is an [`Error::LowerNotVisible`].
    pub fn read_map(&self, pid: Pid, kind: IdKind) -> Result<IdMap, Error> {
        let path = self.map_path(pid, kind);
        let text = self.read_text(&path)?;
        parse_proc_map(&path, &text)
    }

    /// The user namespace of a process (`stat(2)` of `/proc/PID/ns/user`).
    pub fn userns(&self, pid: Pid) -> Result<NsId, Error> {
        let path = self.pid_path(pid).join("ns/user");
        let st = rustix::fs::stat(&path).map_err(|errno| Error::Path {
            op: "stat",
            path: path.clone(),
            errno,
        })?;
        Ok(NsId::from_stat(&st))
    }

    /// The nsfs inode of `pid`'s mount namespace (`/proc/PID/ns/mnt`).
    pub fn mount_ns_inode(&self, pid: Pid) -> Result<u64, Error> {
        let path = self.pid_path(pid).join("ns/mnt");
        let link = std::fs::read_link(&path).map_err(|e| Error::Path {
            op: "readlink",
            path: path.clone(),
            errno: Errno::from_io_error(&e).unwrap_or(Errno::IO),
        })?;
        let text = link.to_string_lossy();
        text.strip_prefix("mnt:[")
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse().ok())
            .ok_or(Error::Format {
                path,
                line: 1,
                message: format!("{text:?} is not mnt:[INODE]"),
            })
    }

    /// Whether `/proc/PID/setgroups` says "allow" (`user_namespaces(7)`): false once "deny" was
    /// written to the namespace or an ancestor before it was created.
    pub fn setgroups_allowed(&self, pid: Pid) -> Result<bool, Error> {
        let path = self.pid_path(pid).join("setgroups");
        let text = self.read_text(&path)?;
        match text.trim_end() {
            "allow" => Ok(true),
            "deny" => Ok(false),
            other => Err(Error::Format {
                path,
                line: 1,
                message: format!("expected \"allow\" or \"deny\", found {other:?}"),
            }),
        }
    }

    /// `/proc/PID/status`: name, uid and gid lines, groups, NSpid, CapEff and CapPrm.
    pub fn status(&self, pid: Pid) -> Result<ProcStatus, Error> {
        let path = self.pid_path(pid).join("status");
        let text = self.read_text(&path)?;
        parse_status(&path, &text)
    }

    /// A numeric sysctl under `sys/`, e.g. `fs/protected_hardlinks`.
    pub fn sysctl(&self, name: &str) -> Result<u32, Error> {
        let path = self.root.join("sys").join(name);
        let text = self.read_text(&path)?;
        text.trim().parse().map_err(|_| {
            Error::Invalid(format!(
                "{}: {:?} is not a number",
                path.display(),
                text.trim()
            ))
        })
    }

    /// Every process (thread-group leader) listed in the procfs, ascending.
    pub fn pids(&self) -> Result<Vec<Pid>, Error> {
        let dir = std::fs::read_dir(&self.root).map_err(|e| Error::Path {
            op: "readdir",
            path: self.root.clone(),
            errno: io_errno(&e),
        })?;
        let mut out = Vec::new();
        for entry in dir {
            let entry = entry.map_err(|e| Error::Path {
                op: "readdir",
                path: self.root.clone(),
                errno: io_errno(&e),
            })?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if let Ok(n) = name.parse::<i32>() {
                out.push(Pid(n));
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// The lowest-numbered live (not zombie) process whose user namespace is `ns`, if any.
    /// Processes that vanish or whose namespace link the caller may not see (EACCES) are skipped.
    pub fn find_pid_in_userns(&self, ns: NsId) -> Result<Option<Pid>, Error> {
        for pid in self.pids()? {
            match self.userns(pid) {
                Ok(id) if id == ns => {
                    if !self.is_zombie(pid) {
                        return Ok(Some(pid));
                    }
                }
                Ok(_) => {}
                Err(Error::Path {
                    errno: Errno::NOENT | Errno::SRCH | Errno::ACCESS | Errno::PERM,
                    ..
                }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Whether `/proc/PID/stat` shows state Z (or X). A vanished process counts as a zombie.
    fn is_zombie(&self, pid: Pid) -> bool {
        let Ok(text) = std::fs::read_to_string(self.pid_path(pid).join("stat")) else {
            return true;
        };
        // The state follows the last ')' (the command name may itself hold parentheses).
        let state = text
            .rfind(')')
            .and_then(|i| text[i + 1..].split_whitespace().next());
        matches!(state, Some("Z") | Some("X") | None)
    }
}

pub(crate) fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_raw_os_error(e.raw_os_error().unwrap_or(libc::EIO))
}

/// Parse a map as /proc renders it (`uid_m_show`: three `%10u` columns; any whitespace
/// accepted), line by line with credns-idmap's parser, then checked whole by [`IdMap::new`].
pub(crate) fn parse_proc_map(path: &Path, text: &str) -> Result<IdMap, Error> {
    let mut extents = Vec::new();
    for l in proc_map_lines(text) {
        extents.push(l.map_err(|e| line_error(path, e))?.extent);
    }
    if extents.is_empty() {
        return Ok(IdMap::empty());
    }
    IdMap::new(extents).map_err(|e| Error::Format {
        path: path.to_owned(),
        line: 1,
        message: format!("not a valid map: {e}"),
    })
}

/// This crate's error for a map line that is not an extent.
fn line_error(path: &Path, e: ProcLineError) -> Error {
    let message = match e.kind {
        ProcLineErrorKind::LowerNotVisible => {
            return Error::LowerNotVisible {
                path: path.to_owned(),
                line: e.line,
            }
        }
        ProcLineErrorKind::FieldCount(n) => {
            format!("expected 3 numbers (first lower count), found {n}")
        }
        ProcLineErrorKind::Number { text, .. } => {
            format!("{text:?} is not a 32-bit unsigned number")
        }
        _ => e.message,
    };
    Error::Format {
        path: path.to_owned(),
        line: e.line,
        message,
    }
}

fn parse_status(path: &Path, text: &str) -> Result<ProcStatus, Error> {
    let mut st = ProcStatus::default();
    let mut seen = [false; 5];
    for (i, line) in text.lines().enumerate() {
        let bad = |message: String| Error::Format {
            path: path.to_owned(),
            line: i + 1,
            message,
        };
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let nums = || -> Result<Vec<u32>, Error> {
            value
                .split_whitespace()
                .map(|f| {
                    f.parse::<u32>()
                        .map_err(|_| bad(format!("{key}: {f:?} is not a number")))
                })
                .collect()
        };
        match key {
            "Name" => {
                st.name = value.to_string();
                seen[0] = true;
            }
            "Uid" | "Gid" => {
                let v = nums()?;
                let arr: [u32; 4] = v.try_into().map_err(|v: Vec<u32>| {
                    bad(format!("{key}: expected 4 ids, found {}", v.len()))
                })?;
                if key == "Uid" {
                    st.uid = arr;
                    seen[1] = true;
                } else {
                    st.gid = arr;
                    seen[2] = true;
                }
            }
            "Groups" => st.groups = nums()?,
            "NSpid" => {
                st.nspid = value
                    .split_whitespace()
                    .map(|f| {
                        f.parse::<i32>()
                            .map(Pid)
                            .map_err(|_| bad(format!("NSpid: {f:?} is not a pid")))
                    })
                    .collect::<Result<_, _>>()?
            }
            "CapEff" | "CapPrm" => {
                let v = u64::from_str_radix(value, 16)
                    .map_err(|_| bad(format!("{key}: {value:?} is not hexadecimal")))?;
                if key == "CapEff" {
                    st.cap_eff = v;
                    seen[3] = true;
                } else {
                    st.cap_prm = v;
                    seen[4] = true;
                }
            }
            "CapInh" | "CapBnd" | "CapAmb" => {
                let v = u64::from_str_radix(value, 16)
                    .map_err(|_| bad(format!("{key}: {value:?} is not hexadecimal")))?;
                match key {
                    "CapInh" => st.cap_inh = v,
                    "CapBnd" => st.cap_bnd = v,
                    _ => st.cap_amb = v,
                }
            }
            "NoNewPrivs" => st.no_new_privs = value == "1",
            "Threads" => {
                st.threads = value
                    .parse()
                    .map_err(|_| bad(format!("Threads: {value:?} is not a number")))?
            }
            "Umask" => {
                st.umask = Some(
                    u32::from_str_radix(value, 8)
                        .map_err(|_| bad(format!("Umask: {value:?} is not octal")))?,
                )
            }
            _ => {}
        }
    }
    let names = ["Name", "Uid", "Gid", "CapEff", "CapPrm"];
    if let Some(i) = seen.iter().position(|s| !s) {
        return Err(Error::Format {
            path: path.to_owned(),
            line: 0,
            message: format!("no {} line", names[i]),
        });
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use credns_idmap::Extent;

    #[test]
    fn parses_kernel_map_text() {
        let p = Path::new("/proc/1/uid_map");
        let m = parse_proc_map(
            p,
            "         0     100000       1000\n      1000     200000         10\n",
        )
        .unwrap();
        assert_eq!(
            m.extents(),
            &[Extent::new(0, 100000, 1000), Extent::new(1000, 200000, 10)]
        );
        assert!(parse_proc_map(p, "").unwrap().is_empty());
        assert_eq!(
            parse_proc_map(p, "0 0 4294967295\n").unwrap(),
            IdMap::identity()
        );
        let e = parse_proc_map(p, "0 1 1\n5 4294967295 1\n").unwrap_err();
        assert!(matches!(e, Error::LowerNotVisible { line: 2, .. }), "{e}");
        assert!(e.to_string().contains("/proc/1/uid_map: line 2"), "{e}");
        assert!(matches!(
            parse_proc_map(p, "0 1\n"),
            Err(Error::Format { .. })
        ));
        assert!(matches!(
            parse_proc_map(p, "0 1 4294967296\n"),
            Err(Error::Format { .. })
        ));
    }

    #[test]
    fn map_errors_keep_their_wording() {
        let p = Path::new("/proc/1/uid_map");
        let msg = |t: &str| parse_proc_map(p, t).unwrap_err().to_string();
        assert_eq!(
            msg("0 1 1\n0 1\n"),
            "/proc/1/uid_map: line 2: expected 3 numbers (first lower count), found 2"
        );
        assert_eq!(
            msg("0 1 1 1\n"),
            "/proc/1/uid_map: line 1: expected 3 numbers (first lower count), found 4"
        );
        assert_eq!(
            msg("\n\n0 x 1\n"),
            "/proc/1/uid_map: line 3: \"x\" is not a 32-bit unsigned number"
        );
        assert_eq!(
            msg("0 1 4294967296\n"),
            "/proc/1/uid_map: line 1: \"4294967296\" is not a 32-bit unsigned number"
        );
        assert_eq!(
            msg("0 0 10\n5 100 10\n"),
            "/proc/1/uid_map: line 1: not a valid map: extent 2 \"5 100 10\": its upper (namespace) \
             range overlaps extent 1"
        );
        assert!(msg("0 4294967295 1\n").starts_with("/proc/1/uid_map: line 1: lower id is"));
    }

    #[test]
    fn parses_status() {
        let text = "Name:\tcat (x)\nUmask:\t0022\nState:\tR (running)\nUid:\t0\t1\t2\t3\nGid:\t4\t5\t6\t7\n\
                    Groups:\t10 20 \nNSpid:\t42\t1\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n\
                    CapEff:\t0000000000000400\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000001\n\
                    NoNewPrivs:\t1\nThreads:\t3\n";
        let st = parse_status(Path::new("/proc/42/status"), text).unwrap();
        assert_eq!(st.cap_bnd, 0x1ff_ffff_ffff);
        assert_eq!((st.cap_amb, st.cap_inh), (1, 0));
        assert!(st.no_new_privs);
        assert_eq!((st.threads, st.umask), (3, Some(0o22)));
        assert_eq!(st.name, "cat (x)");
        assert_eq!(st.uid, [0, 1, 2, 3]);
        assert_eq!(st.gid, [4, 5, 6, 7]);
        assert_eq!(st.groups, vec![10, 20]);
        assert_eq!(st.nspid, vec![Pid(42), Pid(1)]);
        assert_eq!(st.cap_prm, 0x1ff_ffff_ffff);
        assert_eq!(st.cap_eff, 0x400);
        let e = parse_status(Path::new("/x"), "Name:\ta\n").unwrap_err();
        assert!(e.to_string().contains("no Uid line"), "{e}");
    }

    #[test]
    fn fake_procfs_tree() {
        let dir = std::env::temp_dir().join(format!("credns-sys-fakeproc-{}", std::process::id()));
        let pid_dir = dir.join("77");
        std::fs::create_dir_all(&pid_dir).unwrap();
        std::fs::create_dir_all(dir.join("self")).unwrap();
        std::fs::write(
            pid_dir.join("uid_map"),
            "         0       1000          1\n",
        )
        .unwrap();
        std::fs::write(pid_dir.join("gid_map"), "").unwrap();
        std::fs::write(pid_dir.join("setgroups"), "deny\n").unwrap();
        let fs = ProcFs::at(&dir);
        assert_eq!(
            fs.read_map(Pid(77), IdKind::Uid).unwrap().extents(),
            &[Extent::new(0, 1000, 1)]
        );
        assert!(fs.read_map(Pid(77), IdKind::Gid).unwrap().is_empty());
        assert!(!fs.setgroups_allowed(Pid(77)).unwrap());
        assert_eq!(fs.pids().unwrap(), vec![Pid(77)]);
        let e = fs.read_map(Pid(78), IdKind::Uid).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("read {}/78/uid_map: ENOENT", dir.display())),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
