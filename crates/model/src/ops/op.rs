//! The operations a task can perform, as the syscalls take them.

use serde::Serialize;

use super::opt_id;

use crate::caps::{Cap, CapSet};
use crate::keys::{KeyId, KeyType};
use crate::vfs::mask_str;
use crate::world::{NsRef, TaskRef};

use super::xattr::XattrValue;

/// `SIGCONT`.
pub const SIGCONT: u32 = 18;
/// `_NSIG`: the highest valid signal number.
pub const NSIG: u32 = 64;
/// `NGROUPS_MAX`.
pub const NGROUPS_MAX: usize = 65536;

/// Which map file a [`Op::WriteMap`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MapKind {
    /// `/proc/PID/uid_map`.
    Uid,
    /// `/proc/PID/gid_map`.
    Gid,
}

/// The `prctl(2)` options `cap_task_prctl` handles that change credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CapPrctlOption {
    /// `PR_SET_SECUREBITS, arg`.
    SetSecurebits,
    /// `PR_SET_KEEPCAPS, arg`.
    SetKeepcaps,
    /// `PR_CAPBSET_DROP, cap`.
    CapbsetDrop,
    /// `PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap`.
    AmbientRaise,
    /// `PR_CAP_AMBIENT, PR_CAP_AMBIENT_LOWER, cap`.
    AmbientLower,
    /// `PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL`.
    AmbientClearAll,
}

impl CapPrctlOption {
    /// The kernel's name of the option.
    pub fn name(self) -> &'static str {
        match self {
            CapPrctlOption::SetSecurebits => "PR_SET_SECUREBITS",
            CapPrctlOption::SetKeepcaps => "PR_SET_KEEPCAPS",
            CapPrctlOption::CapbsetDrop => "PR_CAPBSET_DROP",
            CapPrctlOption::AmbientRaise => "PR_CAP_AMBIENT_RAISE",
            CapPrctlOption::AmbientLower => "PR_CAP_AMBIENT_LOWER",
            CapPrctlOption::AmbientClearAll => "PR_CAP_AMBIENT_CLEAR_ALL",
        }
    }
}

/// A /proc/PID file whose open `mm_access` guards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcFile {
    /// `environ`: mode 0400, owned by `task_dump_owner`.
    Environ,
    /// `maps`: mode 0444.
    Maps,
    /// `mem`: mode 0600, owned by `task_dump_owner`; PTRACE_MODE_ATTACH_FSCREDS.
    Mem,
}

impl ProcFile {
    /// The file's name under /proc/PID.
    pub fn name(self) -> &'static str {
        match self {
            ProcFile::Environ => "environ",
            ProcFile::Maps => "maps",
            ProcFile::Mem => "mem",
        }
    }
}

/// An operation performed by a task. Ids are in the caller's namespace numbering, as the
/// syscall takes them; `None` is the `-1` "no change" argument.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// `open(path, O_RDONLY | O_WRONLY | O_RDWR)` of an existing file (no `O_CREAT`, no `O_TRUNC`).
    Open {
        /// Absolute path.
        path: String,
        /// Open for reading.
        read: bool,
        /// Open for writing.
        write: bool,
    },
    /// `faccessat2(path, mode, eaccess ? AT_EACCESS : 0)`; `mode` is `R_OK|W_OK|X_OK` (4|2|1) or 0.
    Access {
        /// Absolute path.
        path: String,
        /// The access mode bits.
        mode: u32,
        /// Check with the effective ids (`AT_EACCESS`) instead of the real ones.
        eaccess: bool,
    },
    /// `open(path, O_CREAT|O_EXCL|O_WRONLY, mode)` or, with `dir`, `mkdir(path, mode)`.
    Create {
        /// Absolute path of the new inode.
        path: String,
        /// The mode argument (before umask).
        mode: u32,
        /// Make a directory.
        dir: bool,
    },
    /// `stat(path)`: yields the owner and group as the caller sees them.
    Stat {
        /// Absolute path.
        path: String,
    },
    /// `chmod(path, mode)`.
    Chmod {
        /// Absolute path.
        path: String,
        /// New permission bits (07777).
        mode: u32,
    },
    /// `chown(path, uid, gid)`.
    Chown {
        /// Absolute path.
        path: String,
        /// New owner in the caller's numbering, or `None` (-1).
        uid: Option<u32>,
        /// New group in the caller's numbering, or `None` (-1).
        gid: Option<u32>,
    },
    /// `execve(path)` of a regular file (assumed a valid ELF without file capabilities).
    Exec {
        /// Absolute path.
        path: String,
    },
    /// `kill(target, signal)`.
    Kill {
        /// The receiving task.
        target: TaskRef,
        /// Signal number (0 checks permission only).
        signal: u32,
    },
    /// `ptrace(PTRACE_ATTACH, target)`: `PTRACE_MODE_ATTACH_REALCREDS`, Yama scope 0.
    Ptrace {
        /// The tracee.
        target: TaskRef,
    },
    /// `setuid(uid)`.
    Setuid {
        /// New uid.
        uid: u32,
    },
    /// `setreuid(ruid, euid)`.
    Setreuid {
        /// New real uid or -1.
        ruid: Option<u32>,
        /// New effective uid or -1.
        euid: Option<u32>,
    },
    /// `setresuid(ruid, euid, suid)`.
    Setresuid {
        /// New real uid or -1.
        ruid: Option<u32>,
        /// New effective uid or -1.
        euid: Option<u32>,
        /// New saved uid or -1.
        suid: Option<u32>,
    },
    /// `setgid(gid)`.
    Setgid {
        /// New gid.
        gid: u32,
    },
    /// `setregid(rgid, egid)`.
    Setregid {
        /// New real gid or -1.
        rgid: Option<u32>,
        /// New effective gid or -1.
        egid: Option<u32>,
    },
    /// `setresgid(rgid, egid, sgid)`.
    Setresgid {
        /// New real gid or -1.
        rgid: Option<u32>,
        /// New effective gid or -1.
        egid: Option<u32>,
        /// New saved gid or -1.
        sgid: Option<u32>,
    },
    /// `setgroups(groups)`.
    Setgroups {
        /// The new supplementary groups, in the caller's numbering.
        groups: Vec<u32>,
    },
    /// `unshare(CLONE_NEWUSER)`; the new namespace gets `name`.
    UnshareUser {
        /// Name of the new namespace.
        name: String,
    },
    /// `write(open("/proc/TARGET/uid_map" or "gid_map"), text)`, opened and written by the caller.
    WriteMap {
        /// The process whose namespace's map is written.
        target: TaskRef,
        /// Which map.
        kind: MapKind,
        /// The text written.
        text: String,
    },
    /// `write(open("/proc/TARGET/setgroups"), text)`.
    WriteSetgroups {
        /// The process whose namespace's flag is written.
        target: TaskRef,
        /// "allow" or "deny".
        text: String,
    },
    /// `setns(fd of the namespace, CLONE_NEWUSER)`.
    Setns {
        /// The user namespace to enter.
        ns: NsRef,
    },
    /// `prctl(PR_SET_NO_NEW_PRIVS, 1)`.
    SetNoNewPrivs,
    /// `getresuid`/`getresgid`/`getgroups` of the caller: its own ids in its own namespace.
    GetIds,
    /// Read `/proc/TARGET/status`: the target's ids as the reader's namespace shows them.
    ProcStatus {
        /// The process whose status is read.
        target: TaskRef,
    },
    /// `getsockopt(SO_PEERCRED)` on a socket connected to `peer`.
    PeerCred {
        /// The peer.
        peer: TaskRef,
    },
    /// `ns_capable(ns, cap)` for the caller (a query, not a syscall).
    Capable {
        /// The namespace.
        ns: NsRef,
        /// The capability.
        cap: Cap,
    },
    /// `add_key(type, description, payload, keyring)`; yields the key's name and serial.
    AddKey {
        /// `user` or `keyring`.
        ktype: KeyType,
        /// The description.
        description: String,
        /// The payload (empty for a keyring).
        payload: String,
        /// The keyring to add it to.
        keyring: KeyId,
        /// The scenario's name for the new key.
        name: Option<String>,
    },
    /// `keyctl(KEYCTL_READ, key)`: yields `payload=…` or, for a keyring, `keys=a,b` (sorted).
    KeyRead {
        /// The key.
        key: KeyId,
    },
    /// `keyctl(KEYCTL_DESCRIBE, key)`: yields `desc=type;uid;gid;perm;description`.
    KeyDescribe {
        /// The key.
        key: KeyId,
    },
    /// `keyctl(KEYCTL_UPDATE, key, payload)`.
    KeyUpdate {
        /// The key.
        key: KeyId,
        /// The new payload.
        payload: String,
    },
    /// `keyctl(KEYCTL_SEARCH, keyring, type, description, 0)`: yields the key found.
    KeySearch {
        /// Where the search starts.
        keyring: KeyId,
        /// The type sought.
        ktype: KeyType,
        /// The description sought.
        description: String,
    },
    /// `keyctl(KEYCTL_LINK, key, keyring)`.
    KeyLink {
        /// The key.
        key: KeyId,
        /// The keyring.
        keyring: KeyId,
    },
    /// `keyctl(KEYCTL_UNLINK, key, keyring)`.
    KeyUnlink {
        /// The key.
        key: KeyId,
        /// The keyring.
        keyring: KeyId,
    },
    /// `keyctl(KEYCTL_SETPERM, key, perm)`.
    KeySetperm {
        /// The key.
        key: KeyId,
        /// The new mask.
        perm: u32,
    },
    /// `keyctl(KEYCTL_CHOWN, key, uid, gid)`; ids in the caller's numbering, `None` = -1.
    KeyChown {
        /// The key.
        key: KeyId,
        /// New owner or -1.
        uid: Option<u32>,
        /// New group or -1.
        gid: Option<u32>,
    },
    /// `request_key(type, description, callout, 0)`: search the caller's keyrings; yields the
    /// key found. With no callout a miss is ENOKEY; with one, construction runs an upcall.
    RequestKey {
        /// The type sought.
        ktype: KeyType,
        /// The description sought.
        description: String,
        /// The callout information (`None`: no construction).
        callout: Option<String>,
    },
    /// `keyctl(KEYCTL_GET_KEYRING_ID, key, create)`: yields the key's name and serial.
    KeyGetId {
        /// The key (usually a special keyring).
        key: KeyId,
        /// Create the keyring if missing.
        create: bool,
    },
    /// `unlink(path)`.
    Unlink {
        /// Absolute path.
        path: String,
    },
    /// `rmdir(path)`.
    Rmdir {
        /// Absolute path.
        path: String,
    },
    /// `renameat2(from, to, flags)`; flags `RENAME_NOREPLACE` 1, `RENAME_EXCHANGE` 2.
    Rename {
        /// The old path.
        from: String,
        /// The new path.
        to: String,
        /// The flags.
        flags: u32,
    },
    /// `link(from, to)` (no `AT_SYMLINK_FOLLOW`).
    Link {
        /// The existing path.
        from: String,
        /// The new name.
        to: String,
    },
    /// `symlink(target, path)`: yields the new link's `disk_uid` and `disk_gid`.
    Symlink {
        /// What the link points to (not resolved).
        target: String,
        /// The new link.
        path: String,
    },
    /// `open(path, O_CREAT | access, mode)` without `O_EXCL` (creates or opens).
    OpenCreat {
        /// Absolute path.
        path: String,
        /// Open for reading.
        read: bool,
        /// Open for writing.
        write: bool,
        /// The mode argument (before umask), used when the file is created.
        mode: u32,
    },
    /// `truncate(path, length)`: yields the mode after (set-id bits killed).
    Truncate {
        /// Absolute path.
        path: String,
        /// The new length.
        length: i64,
    },
    /// `utimensat(AT_FDCWD, path, times, 0)`.
    Utimes {
        /// Absolute path.
        path: String,
        /// The times argument.
        times: super::attrs::UtimesTimes,
    },
    /// `setxattr(path, name, value, size, 0)`.
    Setxattr {
        /// Absolute path.
        path: String,
        /// The attribute's full name (`user.x`, `security.capability`, …).
        name: String,
        /// The value.
        value: XattrValue,
    },
    /// `setfsuid(uid)` (`None`: -1): yields the old fsuid, which it returns whatever happens.
    Setfsuid {
        /// The new fsuid in the caller's numbering, or -1.
        uid: Option<u32>,
    },
    /// `setfsgid(gid)` (`None`: -1): yields the old fsgid.
    Setfsgid {
        /// The new fsgid in the caller's numbering, or -1.
        gid: Option<u32>,
    },
    /// `capset` (version 3, pid 0): the caller's new effective, permitted, inheritable sets.
    Capset {
        /// New effective set.
        effective: CapSet,
        /// New permitted set.
        permitted: CapSet,
        /// New inheritable set.
        inheritable: CapSet,
    },
    /// One of the capability module's `prctl(2)` options.
    CapPrctl {
        /// Which option.
        option: CapPrctlOption,
        /// Its argument (`arg2`; the capability number for the bounding and ambient options).
        arg: u32,
    },
    /// `ptrace_may_access(target, PTRACE_MODE_READ_*)`: with the real ids as `kcmp(2)` asks
    /// it (EPERM), with the fs ids and effective set as `readlink(/proc/PID/cwd)` asks it
    /// (EACCES).
    PtraceRead {
        /// The target.
        target: TaskRef,
        /// `PTRACE_MODE_FSCREDS` rather than `PTRACE_MODE_REALCREDS`.
        fscreds: bool,
    },
    /// `open("/proc/TARGET/FILE", O_RDONLY)`.
    OpenProc {
        /// The process whose file is opened.
        target: TaskRef,
        /// Which file.
        file: ProcFile,
    },
    /// A connected `AF_UNIX` pair made by `target` (both ends record its credentials now),
    /// one end passed to the caller; later ops name it `name`.
    Connect {
        /// The process that makes the pair and keeps the other end.
        target: TaskRef,
        /// The connection's name.
        name: String,
    },
    /// `getsockopt(SO_PEERCRED)` on the caller's end of a named connection.
    PeerCredOf {
        /// The connection.
        socket: String,
    },
    /// `sendmsg(SCM_CREDENTIALS {own pid, uid, gid})` on the caller's end of a named
    /// connection; the other end receives it with `SO_PASSCRED`. Ids in the sender's numbering.
    SendCreds {
        /// The connection.
        socket: String,
        /// The claimed uid.
        uid: u32,
        /// The claimed gid.
        gid: u32,
        /// Claim the receiver's pid instead of the sender's own.
        other_pid: bool,
    },
    /// `readlink("/proc/TARGET/fd/FD")`: the lookup in the 0500 fd directory, then
    /// `proc_fd_access_allowed` (PTRACE_MODE_READ_FSCREDS).
    ReadlinkProcFd {
        /// The process whose fd is read.
        target: TaskRef,
        /// The fd number (0, 1 and 2 exist in every process).
        fd: u32,
    },
    /// `unshare(CLONE_NEW<kind>)` of one namespace type other than user; the new namespace
    /// gets `name`.
    UnshareNs {
        /// The type.
        kind: crate::ops::NsType,
        /// Name of the new namespace.
        name: String,
    },
    /// `setns(fd of the namespace, CLONE_NEW<its type>)` for a type other than user.
    SetnsNs {
        /// The namespace to enter.
        ns: crate::ops::TypedNsRef,
    },
    /// `sethostname(name)` in the caller's UTS namespace.
    Sethostname {
        /// The new hostname.
        name: String,
    },
    /// `bind` of a TCP socket to `0.0.0.0:port` in the caller's network namespace.
    BindPort {
        /// The port.
        port: u16,
    },
    /// `mount("none", path, fs_type, 0, NULL)`: a new instance of a filesystem type.
    MountNew {
        /// The type (`tmpfs`, `proc`, …).
        fs_type: String,
        /// The mount point.
        path: String,
    },
    /// `umount(path)`.
    Umount {
        /// The mount point.
        path: String,
    },
    /// `mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | flags, NULL)`.
    Remount {
        /// The mount point.
        path: String,
        /// The flags it will have.
        flags: crate::ops::RemountFlags,
    },
}

impl Op {
    /// Whether the operation is a filesystem one (the VFS decides it).
    pub fn is_vfs(&self) -> bool {
        matches!(
            self,
            Op::Open { .. }
                | Op::Access { .. }
                | Op::Create { .. }
                | Op::Stat { .. }
                | Op::Chmod { .. }
                | Op::Chown { .. }
                | Op::Exec { .. }
                | Op::Unlink { .. }
                | Op::Rmdir { .. }
                | Op::Rename { .. }
                | Op::Link { .. }
                | Op::Symlink { .. }
                | Op::OpenCreat { .. }
                | Op::Truncate { .. }
                | Op::Utimes { .. }
                | Op::Setxattr { .. }
        )
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Open { path, read, write } => write!(
                f,
                "open {path} ({})",
                match (read, write) {
                    (_, false) => "r",
                    (false, true) => "w",
                    (true, true) => "rw",
                }
            ),
            Op::Access {
                path,
                mode,
                eaccess,
            } => write!(
                f,
                "access {path} {}{}",
                mask_str(*mode),
                if *eaccess { " AT_EACCESS" } else { "" }
            ),
            Op::Create { path, mode, dir } => write!(
                f,
                "{} {path} {:04o}",
                if *dir { "mkdir" } else { "create" },
                mode
            ),
            Op::Stat { path } => write!(f, "stat {path}"),
            Op::Chmod { path, mode } => write!(f, "chmod {path} {mode:04o}"),
            Op::Chown { path, uid, gid } => {
                write!(f, "chown {path} {}:{}", opt_id(*uid), opt_id(*gid))
            }
            Op::Exec { path } => write!(f, "exec {path}"),
            Op::Kill { target, signal } => write!(f, "kill task#{} signal {signal}", target.0),
            Op::Ptrace { target } => write!(f, "ptrace attach task#{}", target.0),
            Op::Setuid { uid } => write!(f, "setuid {uid}"),
            Op::Setreuid { ruid, euid } => {
                write!(f, "setreuid {} {}", opt_id(*ruid), opt_id(*euid))
            }
            Op::Setresuid { ruid, euid, suid } => write!(
                f,
                "setresuid {} {} {}",
                opt_id(*ruid),
                opt_id(*euid),
                opt_id(*suid)
            ),
            Op::Setgid { gid } => write!(f, "setgid {gid}"),
            Op::Setregid { rgid, egid } => {
                write!(f, "setregid {} {}", opt_id(*rgid), opt_id(*egid))
            }
            Op::Setresgid { rgid, egid, sgid } => write!(
                f,
                "setresgid {} {} {}",
                opt_id(*rgid),
                opt_id(*egid),
                opt_id(*sgid)
            ),
            Op::Setgroups { groups } => write!(f, "setgroups {groups:?}"),
            Op::UnshareUser { name } => write!(f, "unshare CLONE_NEWUSER as {name}"),
            Op::WriteMap { target, kind, text } => {
                write!(f, "write {kind:?} map of task#{} {text:?}", target.0)
            }
            Op::WriteSetgroups { target, text } => {
                write!(f, "write setgroups of task#{} {text:?}", target.0)
            }
            Op::Setns { ns } => write!(f, "setns ns#{}", ns.0),
            Op::SetNoNewPrivs => write!(f, "prctl PR_SET_NO_NEW_PRIVS"),
            Op::GetIds => write!(f, "getresuid/getresgid/getgroups"),
            Op::ProcStatus { target } => write!(f, "read /proc/task#{}/status", target.0),
            Op::PeerCred { peer } => write!(f, "SO_PEERCRED of task#{}", peer.0),
            Op::Capable { ns, cap } => write!(f, "ns_capable ns#{} {cap}", ns.0),
            Op::AddKey {
                ktype,
                description,
                keyring,
                ..
            } => write!(f, "add_key {} {description:?} to {keyring}", ktype.name()),
            Op::KeyRead { key } => write!(f, "keyctl read {key}"),
            Op::KeyDescribe { key } => write!(f, "keyctl describe {key}"),
            Op::KeyUpdate { key, .. } => write!(f, "keyctl update {key}"),
            Op::KeySearch {
                keyring,
                ktype,
                description,
            } => write!(
                f,
                "keyctl search {keyring} {} {description:?}",
                ktype.name()
            ),
            Op::KeyLink { key, keyring } => write!(f, "keyctl link {key} {keyring}"),
            Op::KeyUnlink { key, keyring } => write!(f, "keyctl unlink {key} {keyring}"),
            Op::KeySetperm { key, perm } => write!(f, "keyctl setperm {key} {perm:#010x}"),
            Op::KeyChown { key, uid, gid } => {
                write!(f, "keyctl chown {key} {} {}", opt_id(*uid), opt_id(*gid))
            }
            Op::KeyGetId { key, create } => write!(f, "keyctl get_keyring_id {key} {create}"),
            Op::RequestKey {
                ktype,
                description,
                callout,
            } => write!(
                f,
                "request_key {} {description:?}{}",
                ktype.name(),
                callout
                    .as_ref()
                    .map(|c| format!(" callout {c:?}"))
                    .unwrap_or_default()
            ),
            Op::Unlink { path } => write!(f, "unlink {path}"),
            Op::Rmdir { path } => write!(f, "rmdir {path}"),
            Op::Rename { from, to, flags } => write!(
                f,
                "rename {from} {to}{}",
                match *flags {
                    0 => "",
                    1 => " RENAME_NOREPLACE",
                    2 => " RENAME_EXCHANGE",
                    _ => " (invalid flags)",
                }
            ),
            Op::Link { from, to } => write!(f, "link {from} {to}"),
            Op::Symlink { target, path } => write!(f, "symlink {target:?} at {path}"),
            Op::OpenCreat {
                path,
                read,
                write,
                mode,
            } => write!(
                f,
                "open {path} O_CREAT {:04o} ({})",
                mode,
                match (read, write) {
                    (_, false) => "r",
                    (false, true) => "w",
                    (true, true) => "rw",
                }
            ),
            Op::Truncate { path, length } => write!(f, "truncate {path} {length}"),
            Op::Utimes { path, times } => write!(f, "utimensat {path} {}", times.name()),
            Op::Setxattr { path, name, .. } => write!(f, "setxattr {path} {name}"),
            Op::Setfsuid { uid } => write!(f, "setfsuid {}", opt_id(*uid)),
            Op::Setfsgid { gid } => write!(f, "setfsgid {}", opt_id(*gid)),
            Op::Capset {
                effective,
                permitted,
                inheritable,
            } => write!(
                f,
                "capset e={:#x} p={:#x} i={:#x}",
                effective.bits(),
                permitted.bits(),
                inheritable.bits()
            ),
            Op::CapPrctl { option, arg } => write!(f, "prctl {} {arg}", option.name()),
            Op::PtraceRead { target, fscreds } => write!(
                f,
                "ptrace_may_access task#{} PTRACE_MODE_READ_{}",
                target.0,
                if *fscreds { "FSCREDS" } else { "REALCREDS" }
            ),
            Op::OpenProc { target, file } => {
                write!(f, "open /proc/task#{}/{}", target.0, file.name())
            }
            Op::Connect { target, name } => write!(f, "connect to task#{} as {name}", target.0),
            Op::PeerCredOf { socket } => write!(f, "SO_PEERCRED of {socket}"),
            Op::SendCreds {
                socket, uid, gid, ..
            } => {
                write!(f, "SCM_CREDENTIALS {uid}:{gid} over {socket}")
            }
            Op::ReadlinkProcFd { target, fd } => {
                write!(f, "readlink /proc/task#{}/fd/{fd}", target.0)
            }
            Op::UnshareNs { kind, name } => write!(f, "unshare {} as {name}", kind.flag()),
            Op::SetnsNs { ns } => write!(f, "setns typed-ns#{}", ns.0),
            Op::Sethostname { name } => write!(f, "sethostname {name:?}"),
            Op::BindPort { port } => write!(f, "bind tcp 0.0.0.0:{port}"),
            Op::MountNew { fs_type, path } => write!(f, "mount -t {fs_type} none {path}"),
            Op::Umount { path } => write!(f, "umount {path}"),
            Op::Remount { path, flags } => write!(f, "remount,bind {path} {flags:?}"),
        }
    }
}
