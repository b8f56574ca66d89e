//! The facts a conservative scan of `/proc` can gather about what keeps user namespaces alive
//! beyond their processes, for when [`crate::nsfree::NsFreeWatch`] is unavailable.
//!
//! A user namespace lives while anything references it. A scan of processes' namespaces
//! (`/proc/PID/ns/user`, see [`ProcFs::find_pid_in_userns`]) sees only members; this module
//! adds what `/proc` shows beyond that:
//! * nsfs descriptors: `/proc/PID/fd/N` (and `/proc/PID/task/TID/fd/N` for a thread with a
//!   file table of its own) whose link reads `user:[INO]`;
//! * nsfs bind mounts: `/proc/PID/mountinfo` lines of filesystem type `nsfs` whose root is
//!   `user:[INO]`, in every mount namespace that has a process;
//! * idmapped mounts (`mountinfo` option `idmapped`): `/proc` does not say which namespace
//!   such a mount holds, so only their number is known; a caller must assume any of its
//!   namespaces might be held while that number is not zero.
//!
//! Still invisible here, so a caller must stay conservative about them: references held by the
//! credentials of open files (`file->f_cred`), child user namespaces whose own holders are
//! invisible, namespaces of other types (a network namespace kept by `/run/netns/NAME` keeps
//! its owning user namespace), nsfs files in flight in `SCM_RIGHTS` messages, and mounts in
//! mount namespaces with no process left.
//!
//! Mount namespaces are read once each: processes are grouped by their `ns/mnt` inode and
//! their root directory (a chrooted process's `mountinfo` omits mounts outside its root, so a
//! different root is read again). Processes and fds that vanish during the scan are skipped.
//! Processes the kernel will not show (EACCES or EPERM, e.g. protected by a security policy)
//! are listed in [`UserNsRefs::unreadable`] rather than failing the scan; any other failure is
//! an error, since a partial scan would under-report.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use crate::procfs::io_errno;
use crate::{Errno, Error, Pid, ProcFs};

/// What keeps user namespaces alive that a process scan does not see: nsfs descriptors held by
/// any process (/proc/*/fd/* links `"user:[INO]"`), nsfs bind mounts in any mount namespace
/// (/proc/*/mountinfo lines of fstype nsfs whose root is `"user:[INO]"`), and idmapped mounts
/// (mountinfo option "idmapped"), whose namespace cannot be named from /proc.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserNsRefs {
    /// Inodes of user namespaces some process holds an nsfs fd of.
    pub fds: BTreeSet<u64>,
    /// Inodes of user namespaces bind-mounted somewhere.
    pub bind_mounts: BTreeSet<u64>,
    /// How many distinct idmapped mounts there are (by mount id, over all namespaces read).
    pub idmapped_mounts: usize,
    /// Processes whose fds or mounts the kernel would not show (EACCES or EPERM: another
    /// security policy protects them): they may hold anything.
    pub unreadable: BTreeSet<Pid>,
}

/// The errnos of a process or fd that went away while being read.
fn vanished(e: &Error) -> bool {
    matches!(
        e,
        Error::Path {
            errno: Errno::NOENT | Errno::SRCH,
            ..
        }
    )
}

fn path_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |e| Error::Path {
        op,
        path: path.to_owned(),
        errno: io_errno(&e),
    }
}

/// `user:[INO]` → INO.
fn user_ns_inode(text: &str) -> Option<u64> {
    text.strip_prefix("user:[")?.strip_suffix(']')?.parse().ok()
}

/// The errnos of a process the caller may not look into.
fn refused(e: &Error) -> bool {
    matches!(
        e,
        Error::Path {
            errno: Errno::ACCESS | Errno::PERM,
            ..
        }
    )
}

/// Scan every process under `procfs` for nsfs fds, nsfs bind mounts and idmapped mounts.
pub fn scan_userns_refs(procfs: &ProcFs) -> Result<UserNsRefs, Error> {
    let mut refs = UserNsRefs::default();
    let mut mount_views: HashSet<(u64, u64, u64)> = HashSet::new();
    let mut idmapped: HashSet<u64> = HashSet::new();
    for pid in procfs.pids()? {
        let dir = procfs.pid_path(pid);
        let fds = scan_process_fds(procfs, pid, &dir, &mut refs.fds);
        let mounts = scan_mounts(&dir, &mut refs.bind_mounts, &mut mount_views, &mut idmapped);
        for part in [fds, mounts] {
            match part {
                Ok(()) => {}
                Err(e) if vanished(&e) => {}
                Err(e) if refused(&e) => {
                    refs.unreadable.insert(pid);
                }
                Err(e) => return Err(e),
            }
        }
    }
    refs.idmapped_mounts = idmapped.len();
    Ok(refs)
}

/// The nsfs fds of process `pid` (directory `dir`) and of its threads with file tables of
/// their own.
fn scan_process_fds(
    procfs: &ProcFs,
    pid: Pid,
    dir: &Path,
    out: &mut BTreeSet<u64>,
) -> Result<(), Error> {
    scan_fds(&dir.join("fd"), out)?;
    // Threads that unshared their file table (unshare(CLONE_FILES)) hold fds of their own.
    let Ok(tasks) = std::fs::read_dir(dir.join("task")) else {
        return Ok(());
    };
    for task in tasks.flatten() {
        if task.file_name().to_str() == Some(&pid.to_string()) {
            continue;
        }
        if own_file_table(procfs, pid, &task.file_name()) {
            match scan_fds(&task.path().join("fd"), out) {
                Err(e) if !vanished(&e) => return Err(e),
                _ => {}
            }
        }
    }
    Ok(())
}

/// The nsfs bind mounts and idmapped mounts of the mount namespace of the process at `dir`,
/// unless that namespace was already read from the same root.
fn scan_mounts(
    dir: &Path,
    bind_mounts: &mut BTreeSet<u64>,
    mount_views: &mut HashSet<(u64, u64, u64)>,
    idmapped: &mut HashSet<u64>,
) -> Result<(), Error> {
    let mnt_ns = stat_ino(&dir.join("ns/mnt"))?;
    let root = rustix::fs::stat(dir.join("root")).map_err(|errno| Error::Path {
        op: "stat",
        path: dir.join("root"),
        errno,
    })?;
    let view = (mnt_ns, root.st_dev, root.st_ino);
    if mount_views.contains(&view) {
        return Ok(());
    }
    let path = dir.join("mountinfo");
    let text = std::fs::read_to_string(&path).map_err(path_err("read", &path))?;
    for (i, line) in text.lines().enumerate() {
        let m = parse_mountinfo_line(&path, i + 1, line)?;
        if m.fstype == "nsfs" {
            if let Some(ino) = user_ns_inode(m.root) {
                bind_mounts.insert(ino);
            }
        }
        if m.options.split(',').any(|o| o == "idmapped") {
            idmapped.insert(m.mount_id);
        }
    }
    mount_views.insert(view);
    Ok(())
}

/// Whether thread `tid` of `pid` may have a file table of its own: `kcmp(KCMP_FILES)` says
/// whether it shares its leader's; where kcmp cannot answer, assume it may.
fn own_file_table(procfs: &ProcFs, pid: Pid, tid: &std::ffi::OsStr) -> bool {
    // kcmp only compares tasks of the caller's pid namespace, so only for the real /proc.
    if procfs.root() != Path::new("/proc") {
        return true;
    }
    let Some(tid) = tid.to_str().and_then(|t| t.parse::<i32>().ok()) else {
        return true;
    };
    const KCMP_FILES: libc::c_int = 2;
    // SAFETY: kcmp(2) takes two pids, a type and two integers (unused for KCMP_FILES) and
    // touches no memory of the caller.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, pid.as_raw(), tid, KCMP_FILES, 0, 0) };
    r != 0
}

fn stat_ino(path: &Path) -> Result<u64, Error> {
    rustix::fs::stat(path)
        .map(|st| st.st_ino)
        .map_err(|errno| Error::Path {
            op: "stat",
            path: path.to_owned(),
            errno,
        })
}

/// Add the user namespaces of the nsfs links in the fd directory `dir` to `out`. Fds closed
/// while being read are skipped.
fn scan_fds(dir: &Path, out: &mut BTreeSet<u64>) -> Result<(), Error> {
    let entries = std::fs::read_dir(dir).map_err(path_err("readdir", dir))?;
    for entry in entries {
        let entry = entry.map_err(path_err("readdir", dir))?;
        let link = entry.path();
        match std::fs::read_link(&link) {
            Ok(target) => {
                if let Some(ino) = target.to_str().and_then(user_ns_inode) {
                    out.insert(ino);
                }
            }
            Err(e) => {
                let e = path_err("readlink", &link)(e);
                if !vanished(&e) {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

/// The fields of a `mountinfo` line this module uses (`proc_pid_mountinfo(5)`).
#[derive(Debug, PartialEq, Eq)]
struct MountInfo<'a> {
    mount_id: u64,
    /// The root of the mount within its filesystem (octal-escaped as the kernel writes it).
    root: &'a str,
    /// The per-mount options.
    options: &'a str,
    fstype: &'a str,
}

/// `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS`.
fn parse_mountinfo_line<'a>(
    path: &Path,
    line: usize,
    text: &'a str,
) -> Result<MountInfo<'a>, Error> {
    let bad = |message: &str| Error::Format {
        path: PathBuf::from(path),
        line,
        message: message.to_string(),
    };
    let mut fields = text.split(' ');
    let mount_id = fields
        .next()
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| bad("no mount id"))?;
    let mut fields = fields.skip(2);
    let root = fields.next().ok_or_else(|| bad("no root field"))?;
    let _mount_point = fields.next().ok_or_else(|| bad("no mount point field"))?;
    let options = fields.next().ok_or_else(|| bad("no mount options field"))?;
    // Optional fields up to the "-" separator.
    if !fields.any(|f| f == "-") {
        return Err(bad("no \" - \" separator"));
    }
    let fstype = fields.next().ok_or_else(|| bad("no filesystem type"))?;
    Ok(MountInfo {
        mount_id,
        root,
        options,
        fstype,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_lines() {
        let p = Path::new("/proc/1/mountinfo");
        assert_eq!(
            parse_mountinfo_line(
                p,
                1,
                "612 29 0:4 user:[4026532301] /run/x rw shared:1 master:2 - nsfs nsfs rw"
            )
            .unwrap(),
            MountInfo {
                mount_id: 612,
                root: "user:[4026532301]",
                options: "rw",
                fstype: "nsfs"
            }
        );
        let m = parse_mountinfo_line(
            p,
            2,
            "700 27 0:50 / /mnt/a\\040b rw,relatime,idmapped - tmpfs tmpfs rw",
        )
        .unwrap();
        assert_eq!(
            (m.mount_id, m.options, m.fstype),
            (700, "rw,relatime,idmapped", "tmpfs")
        );
        let e = parse_mountinfo_line(p, 3, "1 2 0:3 / / rw").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/proc/1/mountinfo: line 3: no \" - \" separator"
        );
        assert!(parse_mountinfo_line(p, 4, "x").is_err());
        assert_eq!(user_ns_inode("user:[4026531837]"), Some(4026531837));
        assert_eq!(user_ns_inode("net:[4026531840]"), None);
        assert_eq!(user_ns_inode("/dev/null"), None);
    }

    #[test]
    fn fake_procfs_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let p = |pid: &str| dir.join(pid);
        for (pid, mnt) in [("10", "mntA"), ("11", "mntA"), ("12", "mntB")] {
            std::fs::create_dir_all(p(pid).join("fd")).unwrap();
            std::fs::create_dir_all(p(pid).join("ns")).unwrap();
            // Processes of one mount namespace share the ns/mnt file (so its inode).
            let shared = dir.join(mnt);
            if !shared.exists() {
                std::fs::write(&shared, "").unwrap();
            }
            std::fs::hard_link(&shared, p(pid).join("ns/mnt")).unwrap();
            std::os::unix::fs::symlink("/", p(pid).join("root")).unwrap();
        }
        let link = |pid: &str, fd: &str, to: &str| {
            std::os::unix::fs::symlink(to, p(pid).join("fd").join(fd)).unwrap()
        };
        link("10", "0", "/dev/null");
        link("10", "3", "user:[4026532001]");
        link("11", "4", "user:[4026532002]");
        link("12", "5", "net:[4026532003]");
        link("12", "6", "user:[4026532001]");
        std::fs::write(
            p("10").join("mountinfo"),
            "1 0 0:1 / / rw - ext4 /dev/vda rw\n\
             5 1 0:4 user:[4026532010] /run/a rw - nsfs nsfs rw\n\
             6 1 0:4 net:[4026532011] /run/netns/b rw - nsfs nsfs rw\n\
             7 1 0:50 / /mnt rw,idmapped - tmpfs tmpfs rw\n",
        )
        .unwrap();
        // Never read: pid 10 already showed mount namespace A.
        std::fs::write(p("11").join("mountinfo"), "garbage\n").unwrap();
        std::fs::write(
            p("12").join("mountinfo"),
            "7 1 0:50 / /mnt rw,idmapped - tmpfs tmpfs rw\n\
             8 1 0:51 / /mnt2 rw,idmapped - tmpfs tmpfs rw\n\
             9 1 0:4 user:[4026532012] /x rw shared:3 - nsfs nsfs rw\n",
        )
        .unwrap();
        // A process that vanished: listed, but nothing under it.
        std::fs::create_dir_all(p("13")).unwrap();
        let refs = scan_userns_refs(&ProcFs::at(&dir)).unwrap();
        assert_eq!(
            refs,
            UserNsRefs {
                fds: [4026532001, 4026532002].into(),
                bind_mounts: [4026532010, 4026532012].into(),
                idmapped_mounts: 2,
                unreadable: BTreeSet::new(),
            }
        );
        // A mountinfo that does not parse is an error naming it.
        std::fs::write(p("12").join("mountinfo"), "1 0 0:1 / / rw\n").unwrap();
        let e = scan_userns_refs(&ProcFs::at(&dir)).unwrap_err();
        assert!(e.to_string().contains("12/mountinfo: line 1"), "{e}");
    }
}
