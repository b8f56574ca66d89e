//! Operations: each mirrors one syscall path and returns an [`Outcome`] with its trace.

use credns_idmap::{IdKind, Kgid, Kuid, OpenerNs, WriteContext};
use serde::Serialize;

use crate::capability::show_groups;
use crate::caps::{Cap, CapSet};
use credns_idmap::Errno;
use crate::keys::{KeyId, KeyType};
use crate::outcome::{Outcome, Output, StepVerdict, Tracer, Values, Verdict};
use crate::vfs::{mask_str, mode_str, Check, Stop, Vfsgid, Vfsuid, MAY_EXEC, MAY_READ, MAY_WRITE};
use crate::world::{
    AclTag, Cred, InodeRef, MntIdmap, MountRef, NsRef, TaskRef, UserNs, World, SECURE_KEEP_CAPS,
    SECURE_NOROOT, SECURE_NO_SETUID_FIXUP, S_IFMT, S_ISGID, S_ISUID, S_IXGRP,
};

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
    /// `keyctl(KEYCTL_GET_KEYRING_ID, key, create)`: yields the key's name and serial.
    KeyGetId {
        /// The key (usually a special keyring).
        key: KeyId,
        /// Create the keyring if missing.
        create: bool,
    },
}

type OpResult = Result<Option<Output>, Stop>;

fn out(pairs: Vec<(&str, String)>) -> Output {
    Values(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn opt_id(v: Option<u32>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-1".into())
}

impl World {
    /// Perform `op` as `task`: decide, trace, and apply its effects if it succeeds.
    pub fn op(&mut self, task: TaskRef, op: &Op) -> Outcome {
        let mut t = Tracer::default();
        let (fsuid, fsgid) = (self.task(task).cred.fsuid, self.task(task).cred.fsgid);
        let r = self.dispatch(&mut t, task, op);
        if r.is_ok() {
            self.keys_after_cred_change(&mut t, task, fsuid, fsgid);
            if matches!(op, Op::Exec { .. }) {
                let kr = &mut self.task_mut(task).keyrings;
                kr.thread = None;
                kr.process = None;
            }
        }
        let (result, output) = match r {
            Ok(o) => (Verdict::Allowed, o),
            Err(Stop::Errno(e)) => (Verdict::Denied(e), None),
            Err(Stop::Unknown(why)) => (Verdict::Unknown(why), None),
        };
        Outcome {
            result,
            output,
            trace: t.steps,
        }
    }

    /// Perform `op` as `task` like [`World::op`], without recording a trace: the same rules,
    /// in the same order, with nothing formatted. For questions asked many times ("which of
    /// these processes may write this file").
    pub fn decide(&mut self, task: TaskRef, op: &Op) -> (Verdict, Option<Output>) {
        let mut t = Tracer::off();
        match self.dispatch(&mut t, task, op) {
            Ok(o) => (Verdict::Allowed, o),
            Err(Stop::Errno(e)) => (Verdict::Denied(e), None),
            Err(Stop::Unknown(why)) => (Verdict::Unknown(why), None),
        }
    }

    /// Decide `op` as `task` without changing the world.
    pub fn check(&self, task: TaskRef, op: &Op) -> Outcome {
        self.clone().op(task, op)
    }

    /// The first step of every trace: who acts, with which credentials.
    pub(crate) fn trace_task(&self, t: &mut Tracer, task: TaskRef) {
        tr!(t.info(
            "task",
            format!(
                "\"{}\" in namespace \"{}\"",
                self.task(task).name,
                self.ns(self.task(task).cred.user_ns).name
            ),
            self.cred_values(task),
        ));
    }

    fn dispatch(&mut self, t: &mut Tracer, task: TaskRef, op: &Op) -> OpResult {
        self.trace_task(t, task);
        match op {
            Op::Open { path, read, write } => self.op_open(t, task, path, *read, *write),
            Op::Access {
                path,
                mode,
                eaccess,
            } => self.op_access(t, task, path, *mode, *eaccess),
            Op::Create { path, mode, dir } => self.op_create(t, task, path, *mode, *dir),
            Op::Stat { path } => self.op_stat(t, task, path),
            Op::Chmod { path, mode } => self.op_chmod(t, task, path, *mode),
            Op::Chown { path, uid, gid } => self.op_chown(t, task, path, *uid, *gid),
            Op::Exec { path } => self.op_exec(t, task, path),
            Op::Kill { target, signal } => self.op_kill(t, task, *target, *signal),
            Op::Ptrace { target } => self.op_ptrace(t, task, *target),
            Op::Setuid { uid } => self.op_setuid(t, task, *uid),
            Op::Setreuid { ruid, euid } => self.op_setreuid(t, task, *ruid, *euid),
            Op::Setresuid { ruid, euid, suid } => self.op_setresuid(t, task, *ruid, *euid, *suid),
            Op::Setgid { gid } => self.op_setgid(t, task, *gid),
            Op::Setregid { rgid, egid } => self.op_setregid(t, task, *rgid, *egid),
            Op::Setresgid { rgid, egid, sgid } => self.op_setresgid(t, task, *rgid, *egid, *sgid),
            Op::Setgroups { groups } => self.op_setgroups(t, task, groups),
            Op::UnshareUser { name } => self.op_unshare(t, task, name),
            Op::WriteMap { target, kind, text } => self.op_write_map(t, task, *target, *kind, text),
            Op::WriteSetgroups { target, text } => self.op_write_setgroups(t, task, *target, text),
            Op::Setns { ns } => self.op_setns(t, task, *ns),
            Op::SetNoNewPrivs => {
                tr!(t.pass(
                    "prctl",
                    "PR_SET_NO_NEW_PRIVS needs no privilege and cannot be undone",
                    vec![],
                ));
                self.tasks[task.0].no_new_privs = true;
                Ok(None)
            }
            Op::GetIds => {
                let c = self.task(task).cred.clone();
                Ok(Some(self.render_cred(t, c.user_ns, &c, false)))
            }
            Op::ProcStatus { target } => self.op_proc_status(t, task, *target),
            Op::PeerCred { peer } => self.op_peercred(t, task, *peer),
            Op::AddKey {
                ktype,
                description,
                payload,
                keyring,
                name,
            } => self.op_add_key(
                t,
                task,
                *ktype,
                description,
                payload.as_bytes(),
                keyring,
                name.as_deref(),
            ),
            Op::KeyRead { key } => self.op_key_read(t, task, key),
            Op::KeyDescribe { key } => self.op_key_describe(t, task, key),
            Op::KeyUpdate { key, payload } => self.op_key_update(t, task, key, payload.as_bytes()),
            Op::KeySearch {
                keyring,
                ktype,
                description,
            } => self.op_key_search(t, task, keyring, *ktype, description),
            Op::KeyLink { key, keyring } => self.op_key_link(t, task, key, keyring),
            Op::KeyUnlink { key, keyring } => self.op_key_unlink(t, task, key, keyring),
            Op::KeySetperm { key, perm } => self.op_key_setperm(t, task, key, *perm),
            Op::KeyChown { key, uid, gid } => self.op_key_chown(t, task, key, *uid, *gid),
            Op::KeyGetId { key, create } => self.op_key_get_id(t, task, key, *create),
            Op::Capable { ns, cap } => {
                let c = self.task(task).cred.clone();
                if self.ns_capable(t, &c, *ns, *cap) {
                    Ok(None)
                } else {
                    Err(Errno::EPERM.into())
                }
            }
        }
    }

    fn cred_values(&self, task: TaskRef) -> Vec<(&'static str, String)> {
        let c = &self.task(task).cred;
        vec![
            (
                "uid",
                format!("{}/{}/{}/{}", c.uid.0, c.euid.0, c.suid.0, c.fsuid.0),
            ),
            (
                "gid",
                format!("{}/{}/{}/{}", c.gid.0, c.egid.0, c.sgid.0, c.fsgid.0),
            ),
            ("groups", show_groups(&c.groups)),
            ("cap_effective", c.cap_effective.to_string()),
        ]
    }

    /// The ids of `c` as a reader in `view` sees them (`from_k*id_munged`), traced.
    fn render_cred(&self, t: &mut Tracer, view: NsRef, c: &Cred, caps: bool) -> Output {
        let u = |k: Kuid| self.from_kuid_munged(view, k).to_string();
        let g = |k: Kgid| self.from_kgid_munged(view, k).to_string();
        let groups: Vec<String> = c.groups.iter().map(|k| g(*k)).collect();
        let mut v = vec![
            ("uid", u(c.uid)),
            ("euid", u(c.euid)),
            ("suid", u(c.suid)),
            ("fsuid", u(c.fsuid)),
            ("gid", g(c.gid)),
            ("egid", g(c.egid)),
            ("sgid", g(c.sgid)),
            ("fsgid", g(c.fsgid)),
            (
                "groups",
                if groups.is_empty() {
                    "none".into()
                } else {
                    groups.join(",")
                },
            ),
        ];
        if caps {
            v.push(("CapInh", format!("{:016x}", c.cap_inheritable.bits())));
            v.push(("CapPrm", format!("{:016x}", c.cap_permitted.bits())));
            v.push(("CapEff", format!("{:016x}", c.cap_effective.bits())));
            v.push(("CapBnd", format!("{:016x}", c.cap_bset.bits())));
            v.push(("CapAmb", format!("{:016x}", c.cap_ambient.bits())));
        }
        tr!(t.info(
            "from_kuid_munged",
            format!(
                "kernel ids shown in \"{}\" (unmapped ids show as {})",
                self.ns(view).name,
                self.overflowuid
            ),
            vec![
                (
                    "kuids",
                    format!("{}/{}/{}/{}", c.uid.0, c.euid.0, c.suid.0, c.fsuid.0),
                ),
                (
                    "kgids",
                    format!("{}/{}/{}/{}", c.gid.0, c.egid.0, c.sgid.0, c.fsgid.0),
                ),
            ],
        ));
        out(v)
    }

    // ------------------------------------------------------------------ files

    fn walk_existing(
        &self,
        t: &mut Tracer,
        cred: &Cred,
        path: &str,
    ) -> Result<(MountRef, InodeRef), Stop> {
        let w = self.path_walk(t, cred, path)?;
        self.existing(t, w, path)
    }

    /// The inode the walk of `path` found, or ENOENT for a missing last component.
    fn existing(
        &self,
        t: &mut Tracer,
        w: crate::vfs::Walk,
        path: &str,
    ) -> Result<(MountRef, InodeRef), Stop> {
        match w.target {
            Some(x) => Ok(x),
            None => {
                tr!(t.fail("lookup", format!("\"{path}\" does not exist"), vec![]));
                Err(Errno::ENOENT.into())
            }
        }
    }

    /// `mnt_want_write`: a read-only mount or superblock refuses with EROFS.
    fn mnt_want_write(&self, t: &mut Tracer, m: MountRef) -> Check {
        let mnt = self.mount(m);
        let sb = self.sb(mnt.sb);
        let ro = mnt.read_only || sb.read_only;
        tr!(t.check(
            !ro,
            "mnt_want_write",
            format!("the mount at \"{}\" must be writable", mnt.path),
            vec![
                ("mnt_ro", mnt.read_only.to_string()),
                ("sb_ro", sb.read_only.to_string()),
            ],
        ));
        if ro {
            Err(Errno::EROFS.into())
        } else {
            Ok(())
        }
    }

    fn op_open(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        path: &str,
        read: bool,
        write: bool,
    ) -> OpResult {
        let cred = self.task(task).cred.clone();
        let (m, ino) = self.walk_existing(t, &cred, path)?;
        let mut acc = 0;
        if read || !write {
            acc |= MAY_READ;
        }
        if write {
            acc |= MAY_WRITE;
        }
        let i = self.inode(ino);
        if i.is_dir() && acc & MAY_WRITE != 0 {
            tr!(t.fail(
                "may_open",
                "a directory cannot be opened for writing",
                vec![],
            ));
            return Err(Errno::EISDIR.into());
        }
        tr!(t.info("may_open", format!("open for {}", mask_str(acc)), vec![]));
        t.nested(|t| self.inode_permission(t, &cred, m, ino, acc))?;
        if acc & MAY_WRITE != 0 {
            self.mnt_want_write(t, m)?;
        }
        Ok(None)
    }

    fn op_access(
        &self,
        t: &mut Tracer,
        task: TaskRef,
        path: &str,
        mode: u32,
        eaccess: bool,
    ) -> OpResult {
        self.access_as(t, task, path, mode, eaccess, |t, cred| {
            self.path_walk(t, cred, path)
        })
    }

    /// `do_faccessat(path)` as `task`, with `walk` for the walk of `path` (made with the
    /// credentials access() checks with).
    pub(crate) fn access_as(
        &self,
        t: &mut Tracer,
        task: TaskRef,
        path: &str,
        mode: u32,
        eaccess: bool,
        walk: impl FnOnce(&mut Tracer, &Cred) -> Result<crate::vfs::Walk, Stop>,
    ) -> OpResult {
        if mode & !7 != 0 {
            tr!(t.fail(
                "do_faccessat",
                "mode has bits other than R_OK|W_OK|X_OK",
                vec![("mode", mode.to_string())],
            ));
            return Err(Errno::EINVAL.into());
        }
        // `access_override_creds` checks with the real ids, and with an effective set that
        // is the permitted set for the namespace's root and empty for anyone else; like the
        // kernel (`access_need_override_creds`), the task's own credentials serve when that
        // changes nothing.
        let own = &self.task(task).cred;
        let mut cred = std::borrow::Cow::Borrowed(own);
        if !eaccess {
            let fixup = !own.issecure(SECURE_NO_SETUID_FIXUP);
            let root = || self.make_kuid(own.user_ns, 0);
            let is_root = || root().is_valid() && own.uid == root();
            // Without capabilities, the effective set is empty whether or not the task is
            // its namespace's root.
            let capless = own.cap_effective == CapSet::EMPTY && own.cap_permitted == CapSet::EMPTY;
            let need = own.fsuid != own.uid
                || own.fsgid != own.gid
                || (fixup
                    && !capless
                    && if is_root() {
                        own.cap_effective != own.cap_permitted
                    } else {
                        own.cap_effective != CapSet::EMPTY
                    });
            if need {
                let is_root = is_root();
                let c = cred.to_mut();
                c.fsuid = c.uid;
                c.fsgid = c.gid;
                if fixup {
                    c.cap_effective = if is_root {
                        c.cap_permitted
                    } else {
                        CapSet::EMPTY
                    };
                }
            }
            tr!(t.info(
                "access_override_creds",
                "access() checks with the real uid/gid; the effective set is the permitted set for the namespace's root, else empty",
                {
                    let mut v = vec![
                        ("fsuid", cred.fsuid.0.to_string()),
                        ("fsgid", cred.fsgid.0.to_string()),
                    ];
                    if fixup {
                        let root = root();
                        v.push((
                            "root_uid",
                            if root.is_valid() {
                                root.0.to_string()
                            } else {
                                "INVALID".into()
                            },
                        ));
                        v.push(("cap_effective", cred.cap_effective.to_string()));
                    }
                    v
                }
            ));
        }
        let w = walk(t, &cred)?;
        let (m, ino) = self.existing(t, w, path)?;
        let i = self.inode(ino);
        if mode & MAY_EXEC != 0 && i.is_reg() && self.mount(m).noexec {
            tr!(t.fail(
                "do_faccessat",
                "X_OK on a regular file of a noexec mount",
                vec![],
            ));
            return Err(Errno::EACCES.into());
        }
        t.nested(|t| self.inode_permission(t, &cred, m, ino, mode))?;
        if mode & MAY_WRITE != 0 {
            let ro = self.mount(m).read_only || self.sb(self.mount(m).sb).read_only;
            tr!(t.check(
                !ro,
                "do_faccessat",
                "W_OK also reports a read-only mount",
                vec![],
            ));
            if ro {
                return Err(Errno::EROFS.into());
            }
        }
        Ok(None)
    }

    /// `mapped_fsuid`/`mapped_fsgid` and `fsuidgid_has_mapping`.
    fn fsuidgid_has_mapping(&self, t: &mut Tracer, cred: &Cred, m: MountRef) -> (bool, Kuid, Kgid) {
        let mnt = self.mount(m);
        let fs_ns = self.sb(mnt.sb).user_ns;
        let ku = self.from_vfsuid(&mnt.idmap, fs_ns, Vfsuid(cred.fsuid));
        let kg = self.from_vfsgid(&mnt.idmap, fs_ns, Vfsgid(cred.fsgid));
        let ok = ku.is_valid()
            && kg.is_valid()
            && self.kuid_has_mapping(fs_ns, ku)
            && self.kgid_has_mapping(fs_ns, kg);
        tr!(t.check(
            ok,
            "fsuidgid_has_mapping",
            format!(
                "the caller's fsuid and fsgid, mapped back through the mount's {}, must be mapped in the filesystem's namespace \"{}\"",
                self.idmap_name(&mnt.idmap),
                self.ns(fs_ns).name
            ),
            vec![
                ("fsuid", cred.fsuid.0.to_string()),
                ("fsgid", cred.fsgid.0.to_string()),
                ("mapped_fsuid", self.show_uid(ku)),
                ("mapped_fsgid", self.show_gid(kg)),
            ],
        ));
        (ok, ku, kg)
    }

    fn op_create(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        path: &str,
        mode: u32,
        dir: bool,
    ) -> OpResult {
        let cred = self.task(task).cred.clone();
        let umask = self.task(task).umask;
        let w = self.path_walk(t, &cred, path)?;
        let f = if dir { "may_create" } else { "may_o_create" };
        if w.target.is_some() {
            tr!(t.fail(
                if dir { "filename_create" } else { "do_open" },
                format!("\"{path}\" already exists"),
                vec![],
            ));
            return Err(Errno::EEXIST.into());
        }
        let (pm, pdir) = w.parent;
        self.mnt_want_write(t, pm)?;
        tr!(t.info(f, "may the caller create in the directory?", vec![]));
        let (ok, ku, kg) = t.nested(|t| self.fsuidgid_has_mapping(t, &cred, pm));
        if !ok {
            return Err(Errno::EOVERFLOW.into());
        }
        t.nested(|t| self.inode_permission(t, &cred, pm, pdir, MAY_WRITE | MAY_EXEC))?;
        let idmap = self.mount(pm).idmap.clone();
        let d = self.inode(pdir).clone();
        // vfs_prepare_mode
        let mut m = if dir { mode & 0o1777 } else { mode & 0o7777 };
        if !dir && m & (S_ISGID | S_IXGRP) == (S_ISGID | S_IXGRP) && d.mode & S_ISGID != 0 {
            let (_, dvg) = self.trace_inode_ids(t, &idmap, pdir, "directory group");
            let keep = t.nested(|t| self.in_group_or_capable(t, &cred, &idmap, pdir, dvg));
            tr!(t.check(keep, "mode_strip_sgid", "a setgid+group-exec file in a setgid directory keeps S_ISGID only for a group member or CAP_FSETID", vec![]));
            if !keep {
                m &= !S_ISGID;
            }
        }
        m &= !umask;
        tr!(t.info(
            "vfs_prepare_mode",
            "apply the umask",
            vec![("umask", format!("{umask:04o}")), ("mode", mode_str(m))],
        ));
        // inode_init_owner
        let (gid, how) = if d.mode & S_ISGID != 0 {
            if dir {
                m |= S_ISGID;
            }
            (d.gid, "the directory is setgid: group inherited from it")
        } else {
            (kg, "group from the caller's fsgid (mapped_fsgid)")
        };
        let sbns = self.sb(d.sb).user_ns;
        tr!(t.info(
            "inode_init_owner",
            format!("owner from the caller's fsuid (mapped_fsuid); {how}"),
            vec![
                ("i_uid", self.show_uid(ku)),
                ("i_gid", self.show_gid(gid)),
                (
                    "on_disk",
                    format!(
                        "{}:{}",
                        self.show_in(sbns, ku.0, true),
                        self.show_in(sbns, gid.0, false)
                    ),
                ),
                ("mode", mode_str(m)),
            ],
        ));
        let full = path.to_string();
        let ino = self
            .add_inode(&full, dir, ku, gid, m)
            .map_err(|e| Stop::unknown(format!("model could not add the inode: {e}")))?;
        let vu = self.i_uid_into_vfsuid(&idmap, ino);
        let vg = self.i_gid_into_vfsgid(&idmap, ino);
        Ok(Some(out(vec![
            ("uid", self.from_kuid_munged(cred.user_ns, vu.0).to_string()),
            ("gid", self.from_kgid_munged(cred.user_ns, vg.0).to_string()),
            ("mode", mode_str(m)),
            ("disk_uid", self.show_in(sbns, ku.0, true)),
            ("disk_gid", self.show_in(sbns, gid.0, false)),
        ])))
    }

    fn op_stat(&mut self, t: &mut Tracer, task: TaskRef, path: &str) -> OpResult {
        let cred = self.task(task).cred.clone();
        let (m, ino) = self.walk_existing(t, &cred, path)?;
        let idmap = self.mount(m).idmap.clone();
        let (vu, vg) = self.trace_inode_ids(t, &idmap, ino, "generic_fillattr");
        let uid = self.from_kuid_munged(cred.user_ns, vu.0);
        let gid = self.from_kgid_munged(cred.user_ns, vg.0);
        tr!(t.info(
            "cp_new_stat",
            format!(
                "st_uid/st_gid in the caller's namespace \"{}\" (from_kuid_munged)",
                self.ns(cred.user_ns).name
            ),
            vec![("st_uid", uid.to_string()), ("st_gid", gid.to_string())],
        ));
        let i = self.inode(ino);
        Ok(Some(out(vec![
            ("uid", uid.to_string()),
            ("gid", gid.to_string()),
            ("mode", mode_str(i.mode)),
        ])))
    }

    /// `notify_change`'s EOVERFLOW checks for ids that are not being changed.
    fn setattr_unmapped_check(
        &self,
        t: &mut Tracer,
        idmap: &MntIdmap,
        ino: InodeRef,
        uid_changes: bool,
        gid_changes: bool,
    ) -> Check {
        let (vu, vg) = self.trace_inode_ids(t, idmap, ino, "notify_change");
        if !uid_changes {
            let ok = tr!(t.check(
                vu.is_valid(),
                "notify_change",
                "the owner is not being changed, so it must be valid through the mount",
                vec![("vfsuid", vu.show())],
            ));
            if !ok {
                return Err(Errno::EOVERFLOW.into());
            }
        }
        if !gid_changes {
            let ok = tr!(t.check(
                vg.is_valid(),
                "notify_change",
                "the group is not being changed, so it must be valid through the mount",
                vec![("vfsgid", vg.show())],
            ));
            if !ok {
                return Err(Errno::EOVERFLOW.into());
            }
        }
        Ok(())
    }

    fn op_chmod(&mut self, t: &mut Tracer, task: TaskRef, path: &str, mode: u32) -> OpResult {
        let cred = self.task(task).cred.clone();
        let (m, ino) = self.walk_existing(t, &cred, path)?;
        self.mnt_want_write(t, m)?;
        let idmap = self.mount(m).idmap.clone();
        let i = self.inode(ino).clone();
        if i.immutable {
            tr!(t.fail("may_setattr", "immutable inode", vec![]));
            return Err(Errno::EPERM.into());
        }
        self.setattr_unmapped_check(t, &idmap, ino, false, false)?;
        tr!(t.info(
            "setattr_prepare",
            "chmod needs the owner or CAP_FOWNER",
            vec![],
        ));
        if !t.nested(|t| self.inode_owner_or_capable(t, &cred, &idmap, ino)) {
            return Err(Errno::EPERM.into());
        }
        let mut new = (mode & 0o7777) | (i.mode & S_IFMT);
        if new & S_ISGID != 0 {
            let vg = self.i_gid_into_vfsgid(&idmap, ino);
            let keep = t.nested(|t| self.in_group_or_capable(t, &cred, &idmap, ino, vg));
            tr!(t.check(keep, "setattr_prepare", "S_ISGID is kept only for a member of the file's group or CAP_FSETID (else silently cleared)", vec![]));
            if !keep {
                new &= !S_ISGID;
            }
        }
        self.inodes[ino.0].mode = new;
        // posix_acl_chmod: an access ACL follows the new mode (user::, mask:: or group:: when
        // there is no mask, other::), as the kernel rewrites it after every chmod.
        if let Some(acl) = &mut self.inodes[ino.0].acl {
            let has_mask = acl.entry(AclTag::Mask).is_some();
            for e in &mut acl.0 {
                match e.tag {
                    AclTag::UserObj => e.perm = (new >> 6) & 7,
                    AclTag::Mask => e.perm = (new >> 3) & 7,
                    AclTag::GroupObj if !has_mask => e.perm = (new >> 3) & 7,
                    AclTag::Other => e.perm = new & 7,
                    _ => {}
                }
            }
            tr!(t.info(
                "posix_acl_chmod",
                "the access ACL's user::, mask:: (or group::) and other:: entries take the new mode",
                vec![],
            ));
        }
        Ok(Some(out(vec![("mode", mode_str(new))])))
    }

    fn op_chown(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        path: &str,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> OpResult {
        let cred = self.task(task).cred.clone();
        let (m, ino) = self.walk_existing(t, &cred, path)?;
        self.mnt_want_write(t, m)?;
        let cns = cred.user_ns;
        let nu = uid.map(|u| self.make_kuid(cns, u));
        let ng = gid.map(|g| self.make_kgid(cns, g));
        tr!(t.info(
            "chown_common",
            format!(
                "new ids from the caller's namespace \"{}\" (make_kuid); -1 leaves an id alone",
                self.ns(cns).name
            ),
            vec![
                ("uid", opt_id(uid)),
                (
                    "kuid",
                    nu.map(|k| self.show_uid(k)).unwrap_or_else(|| "-".into()),
                ),
                ("gid", opt_id(gid)),
                (
                    "kgid",
                    ng.map(|k| self.show_gid(k)).unwrap_or_else(|| "-".into()),
                ),
            ],
        ));
        if nu.is_some_and(|k| !k.is_valid()) || ng.is_some_and(|k| !k.is_valid()) {
            tr!(t.fail(
                "chown_common",
                "an id that is not -1 must be mapped in the caller's namespace",
                vec![],
            ));
            return Err(Errno::EINVAL.into());
        }
        let idmap = self.mount(m).idmap.clone();
        let i = self.inode(ino).clone();
        let fs_ns = self.sb(i.sb).user_ns;
        let mut kill_suid = false;
        let mut kill_sgid = false;
        if !i.is_dir() {
            kill_suid = true;
            if i.mode & S_ISGID != 0 {
                if i.mode & S_IXGRP != 0 {
                    kill_sgid = true;
                } else {
                    let vg = self.i_gid_into_vfsgid(&idmap, ino);
                    kill_sgid = !t.nested(|t| self.in_group_or_capable(t, &cred, &idmap, ino, vg));
                }
            }
            tr!(t.info(
                "chown_common",
                "not a directory: ATTR_KILL_SUID (and ATTR_KILL_SGID per setattr_should_drop_sgid)",
                vec![("kill_sgid", kill_sgid.to_string())],
            ));
        }
        if i.immutable {
            tr!(t.fail("may_setattr", "immutable inode", vec![]));
            return Err(Errno::EPERM.into());
        }
        let mut new_mode = None;
        if kill_suid && i.mode & S_ISUID != 0 {
            new_mode = Some(i.mode & !S_ISUID);
        }
        if kill_sgid && i.mode & S_ISGID != 0 {
            new_mode = Some(new_mode.unwrap_or(i.mode) & !S_ISGID);
        }
        if new_mode.is_some() {
            tr!(t.info(
                "notify_change",
                "killing S_ISUID/S_ISGID turns into a mode change (ATTR_MODE)",
                vec![],
            ));
        }
        let ia_vu = nu.map(Vfsuid);
        let ia_vg = ng.map(Vfsgid);
        if let Some(v) = ia_vu {
            let back = self.from_vfsuid(&idmap, fs_ns, v);
            let ok = tr!(t.check(
                back.is_valid(),
                "notify_change",
                "the new owner must map back into the filesystem (vfsuid_has_fsmapping)",
                vec![("vfsuid", v.show()), ("fs_kuid", self.show_uid(back))],
            ));
            if !ok {
                return Err(Errno::EOVERFLOW.into());
            }
        }
        if let Some(v) = ia_vg {
            let back = self.from_vfsgid(&idmap, fs_ns, v);
            let ok = tr!(t.check(
                back.is_valid(),
                "notify_change",
                "the new group must map back into the filesystem (vfsgid_has_fsmapping)",
                vec![("vfsgid", v.show()), ("fs_kgid", self.show_gid(back))],
            ));
            if !ok {
                return Err(Errno::EOVERFLOW.into());
            }
        }
        self.setattr_unmapped_check(t, &idmap, ino, ia_vu.is_some(), ia_vg.is_some())?;
        let cur_vu = self.i_uid_into_vfsuid(&idmap, ino);
        let cur_vg = self.i_gid_into_vfsgid(&idmap, ino);
        if let Some(v) = ia_vu {
            let ok = t.nested(|t| {
                let owner_noop = cur_vu.eq_kuid(cred.fsuid) && v == cur_vu;
                if tr!(t.check(owner_noop, "chown_ok", "the owner may \"change\" the owner to itself", vec![("vfsuid", cur_vu.show()), ("new", v.show()), ("fsuid", cred.fsuid.0.to_string())])) {
                    return true;
                }
                if self.capable_wrt_inode_uidgid(t, &cred, &idmap, ino, Cap::CHOWN) {
                    return true;
                }
                if !cur_vu.is_valid() {
                    tr!(t.info("chown_ok", "the owner is invalid through the mount: CAP_CHOWN in the filesystem's namespace suffices", vec![]));
                    return self.ns_capable(t, &cred, fs_ns, Cap::CHOWN);
                }
                false
            });
            if !ok {
                tr!(t.fail("setattr_prepare", "chown_ok refused", vec![]));
                return Err(Errno::EPERM.into());
            }
        }
        if let Some(v) = ia_vg {
            let ok = t.nested(|t| {
                if cur_vu.eq_kuid(cred.fsuid) {
                    if tr!(t.check(v == cur_vg, "chgrp_ok", "the owner keeps the group", vec![("vfsgid", cur_vg.show()), ("new", v.show())])) {
                        return true;
                    }
                    if self.vfsgid_in_group_p(t, &cred, v, "the new group") {
                        return true;
                    }
                } else {
                    tr!(t.info("chgrp_ok", "the caller does not own the file", vec![("vfsuid", cur_vu.show()), ("fsuid", cred.fsuid.0.to_string())]));
                }
                if self.capable_wrt_inode_uidgid(t, &cred, &idmap, ino, Cap::CHOWN) {
                    return true;
                }
                if !cur_vg.is_valid() {
                    tr!(t.info("chgrp_ok", "the group is invalid through the mount: CAP_CHOWN in the filesystem's namespace suffices", vec![]));
                    return self.ns_capable(t, &cred, fs_ns, Cap::CHOWN);
                }
                false
            });
            if !ok {
                tr!(t.fail("setattr_prepare", "chgrp_ok refused", vec![]));
                return Err(Errno::EPERM.into());
            }
        }
        if let Some(mut nm) = new_mode {
            tr!(t.info(
                "setattr_prepare",
                "the mode change (killing set-id bits) needs the owner or CAP_FOWNER",
                vec![],
            ));
            if !t.nested(|t| self.inode_owner_or_capable(t, &cred, &idmap, ino)) {
                return Err(Errno::EPERM.into());
            }
            let vg = ia_vg.unwrap_or(cur_vg);
            if nm & S_ISGID != 0
                && !t.nested(|t| self.in_group_or_capable(t, &cred, &idmap, ino, vg))
            {
                nm &= !S_ISGID;
            }
            new_mode = Some(nm);
        }
        // setattr_copy
        if let Some(v) = ia_vu {
            self.inodes[ino.0].uid = self.from_vfsuid(&idmap, fs_ns, v);
        }
        if let Some(v) = ia_vg {
            self.inodes[ino.0].gid = self.from_vfsgid(&idmap, fs_ns, v);
        }
        if let Some(mut nm) = new_mode {
            let vg = self.i_gid_into_vfsgid(&idmap, ino);
            if nm & S_ISGID != 0
                && !t.nested(|t| self.in_group_or_capable(t, &cred, &idmap, ino, vg))
            {
                nm &= !S_ISGID;
            }
            self.inodes[ino.0].mode = nm;
        }
        let i = self.inode(ino).clone();
        tr!(t.info(
            "setattr_copy",
            "new owner, group and mode stored",
            vec![
                ("i_uid", self.show_uid(i.uid)),
                ("i_gid", self.show_gid(i.gid)),
                ("mode", mode_str(i.mode)),
            ],
        ));
        let vu = self.i_uid_into_vfsuid(&idmap, ino);
        let vg = self.i_gid_into_vfsgid(&idmap, ino);
        Ok(Some(out(vec![
            ("uid", self.from_kuid_munged(cns, vu.0).to_string()),
            ("gid", self.from_kgid_munged(cns, vg.0).to_string()),
            ("mode", mode_str(i.mode)),
        ])))
    }

    // ------------------------------------------------------------------ exec

    fn op_exec(&mut self, t: &mut Tracer, task: TaskRef, path: &str) -> OpResult {
        let tk = self.task(task).clone();
        let old = tk.cred.clone();
        let (m, ino) = self.walk_existing(t, &old, path)?;
        let mnt = self.mount(m).clone();
        let i = self.inode(ino).clone();
        if i.is_dir() {
            tr!(t.fail("may_open", "MAY_EXEC on a directory", vec![]));
            return Err(Errno::EACCES.into());
        }
        if i.is_reg() && mnt.noexec {
            tr!(t.fail("may_open", "exec from a noexec mount", vec![]));
            return Err(Errno::EACCES.into());
        }
        tr!(t.info("do_open_execat", "open the file for execution", vec![]));
        t.nested(|t| self.inode_permission(t, &old, m, ino, MAY_EXEC))?;
        if !i.is_reg() {
            tr!(t.fail("do_open_execat", "not a regular file", vec![]));
            return Err(Errno::EACCES.into());
        }
        // would_dump
        let mut mm_ns = old.user_ns;
        let readable = {
            let mut scratch = Tracer::default();
            self.inode_permission(&mut scratch, &old, m, ino, MAY_READ)
                .is_ok()
        };
        let mut nondump = false;
        if !readable {
            nondump = true;
            while mm_ns != self.init_ns()
                && !self.privileged_wrt_inode_uidgid(&mut Tracer::default(), mm_ns, &mnt.idmap, ino)
            {
                mm_ns = self.ns(mm_ns).parent.unwrap_or(self.init_ns());
            }
        }
        tr!(t.info("would_dump", if readable { "the file is readable: the process stays dumpable" } else { "the file is not readable: the process becomes non-dumpable; mm->user_ns moves up until the file's ids are mapped" }, vec![("mm_user_ns", self.ns(mm_ns).name.clone())]));
        let unsafe_nnp = tk.no_new_privs;
        let unsafe_share = tk.shared_fs;
        tr!(t.info(
            "check_unsafe_exec",
            "no_new_privs and a shared fs_struct make the exec unsafe (ptrace is not modelled)",
            vec![
                ("no_new_privs", unsafe_nnp.to_string()),
                ("shared_fs", unsafe_share.to_string()),
            ],
        ));
        let mut new = old.clone();
        // bprm_fill_uid
        tr!(t.info(
            "bprm_fill_uid",
            "set-user-ID and set-group-ID bits",
            vec![("mode", mode_str(i.mode))],
        ));
        t.nested(|t| {
            let f = "bprm_fill_uid";
            if mnt.nosuid {
                tr!(t.info(f, "nosuid mount: set-id bits ignored (mnt_may_suid)", vec![]));
                return;
            }
            if tk.no_new_privs {
                tr!(t.info(f, "no_new_privs: set-id bits ignored", vec![]));
                return;
            }
            if i.mode & (S_ISUID | S_ISGID) == 0 {
                tr!(t.info(f, "no set-id bits", vec![]));
                return;
            }
            let (vu, vg) = self.trace_inode_ids(t, &mnt.idmap, ino, "bprm_fill_uid");
            let um = self.vfsuid_has_mapping(old.user_ns, vu);
            let gm = self.vfsgid_has_mapping(old.user_ns, vg);
            let ok = tr!(t.check(
                um && gm,
                f,
                format!("set-id bits apply only if the file's owner and group are both mapped in \"{}\"", self.ns(old.user_ns).name),
                vec![("vfsuid", vu.show()), ("uid_mapped", um.to_string()), ("vfsgid", vg.show()), ("gid_mapped", gm.to_string())],
            ));
            if !ok {
                return;
            }
            if i.mode & S_ISUID != 0 {
                new.euid = vu.0;
                tr!(t.info(f, "S_ISUID: euid := the file's owner", vec![("euid", vu.show())]));
            }
            if i.mode & (S_ISGID | S_IXGRP) == (S_ISGID | S_IXGRP) {
                new.egid = vg.0;
                tr!(t.info(f, "S_ISGID with S_IXGRP: egid := the file's group", vec![("egid", vg.show())]));
            }
        });
        // cap_bprm_creds_from_file
        let f = "cap_bprm_creds_from_file";
        new.cap_permitted = CapSet::EMPTY;
        tr!(t.info(
            "get_file_caps",
            "no file capabilities (not modelled: files carry none)",
            vec![],
        ));
        let root = self.make_kuid(new.user_ns, 0);
        let mut effective = false;
        tr!(t.info(
            "handle_privileged_root",
            format!(
                "root of \"{}\" is {}",
                self.ns(new.user_ns).name,
                self.show_uid(root)
            ),
            vec![
                ("uid", new.uid.0.to_string()),
                ("euid", new.euid.0.to_string()),
            ],
        ));
        if !old.issecure(SECURE_NOROOT) {
            if new.euid == root || new.uid == root {
                new.cap_permitted = old.cap_bset.union(old.cap_inheritable);
                tr!(t.pass(
                    "handle_privileged_root",
                    "euid or uid is the namespace's root: pP' = bounding | inheritable",
                    vec![("cap_permitted", new.cap_permitted.to_string())],
                ));
            } else {
                tr!(t.info("handle_privileged_root", "neither uid nor euid is the namespace's root (or it has no root): no capabilities", vec![]));
            }
            if new.euid == root {
                effective = true;
            }
        } else {
            tr!(t.info(
                "handle_privileged_root",
                "SECURE_NOROOT: root gets nothing special",
                vec![],
            ));
        }
        let gained = !new.cap_permitted.is_subset(old.cap_permitted);
        // Since "security/commoncap: don't assume 'setid' if all ids are identical" the
        // downgrade applies only when exec changed the euid or leaves an egid the task is not
        // in, not merely because effective ids differ from real ones (checked on 6.18).
        // The rule is `!uid_eq(new->euid, old->euid) || !in_group_p(new->egid)`: in_group_p
        // looks at the old fsgid and supplementary groups.
        let id_changed =
            new.euid != old.euid || !(new.egid == old.fsgid || old.groups.contains(&new.egid));
        if (id_changed || gained) && (unsafe_nnp || unsafe_share) {
            let keep = t.nested(|t| self.ns_capable(t, &old, new.user_ns, Cap::SETUID));
            if !keep || unsafe_nnp {
                new.euid = new.uid;
                new.egid = new.gid;
            }
            new.cap_permitted = new.cap_permitted.intersect(old.cap_permitted);
            tr!(t.info(
                f,
                "unsafe exec: gains are limited to what the task had",
                vec![
                    ("euid", new.euid.0.to_string()),
                    ("cap_permitted", new.cap_permitted.to_string()),
                ],
            ));
        }
        new.suid = new.euid;
        new.fsuid = new.euid;
        new.sgid = new.egid;
        new.fsgid = new.egid;
        // A set-id exec cancels the ambient set: the same id_changed test (checked on 6.18:
        // ambient capabilities survive an exec while euid != uid or egid != gid).
        if id_changed {
            new.cap_ambient = CapSet::EMPTY;
        }
        new.cap_permitted = new.cap_permitted.union(new.cap_ambient);
        new.cap_effective = if effective {
            new.cap_permitted
        } else {
            new.cap_ambient
        };
        new.securebits &= !(1 << SECURE_KEEP_CAPS);
        tr!(t.info(
            f,
            "the new credentials",
            vec![
                (
                    "uid",
                    format!(
                        "{}/{}/{}/{}",
                        new.uid.0, new.euid.0, new.suid.0, new.fsuid.0
                    ),
                ),
                (
                    "gid",
                    format!(
                        "{}/{}/{}/{}",
                        new.gid.0, new.egid.0, new.sgid.0, new.fsgid.0
                    ),
                ),
                ("cap_permitted", new.cap_permitted.to_string()),
                ("cap_effective", new.cap_effective.to_string()),
            ],
        ));
        let dumpable = !nondump && new.euid == new.uid && new.egid == new.gid;
        tr!(t.info(
            "begin_new_exec",
            if dumpable {
                "dumpable (SUID_DUMP_USER)"
            } else {
                "not dumpable (fs.suid_dumpable applies)"
            },
            vec![],
        ));
        let view = new.user_ns;
        let o = self.render_cred(t, view, &new, true);
        let tm = &mut self.tasks[task.0];
        tm.cred = new;
        tm.mm_user_ns = mm_ns;
        tm.dumpable = dumpable || self.suid_dumpable == 1;
        Ok(Some(o))
    }

    // ------------------------------------------------------------------ signals, ptrace

    fn op_kill(&mut self, t: &mut Tracer, task: TaskRef, target: TaskRef, sig: u32) -> OpResult {
        let f = "check_kill_permission";
        if sig > NSIG {
            tr!(t.fail(f, "invalid signal", vec![("signal", sig.to_string())]));
            return Err(Errno::EINVAL.into());
        }
        let c = self.task(task).cred.clone();
        let tc = self.task(target).cred.clone();
        let si_uid = || {
            // prepare_kill_siginfo + userns_fixup_signal_uid
            let mine = self.from_kuid_munged(c.user_ns, c.uid);
            if c.user_ns == tc.user_ns {
                mine
            } else {
                self.from_kuid_munged(tc.user_ns, self.make_kuid(c.user_ns, mine))
            }
        };
        let output = |t: &mut Tracer| -> Option<Output> {
            if sig == 0 {
                return None;
            }
            let v = si_uid();
            tr!(t.info(
                "userns_fixup_signal_uid",
                "si_uid as the receiver's namespace shows the sender's real uid",
                vec![("si_uid", v.to_string())],
            ));
            Some(out(vec![("si_uid", v.to_string())]))
        };
        if task == target {
            tr!(t.pass(f, "same thread group", vec![]));
            return Ok(output(t));
        }
        tr!(t.info("kill_ok_by_cred", "a uid match (sender euid or uid against target suid or uid), or CAP_KILL in the target's namespace", vec![]));
        let ok = t.nested(|t| {
            let pairs = [
                ("sender euid == target suid", c.euid == tc.suid),
                ("sender euid == target uid", c.euid == tc.uid),
                ("sender uid == target suid", c.uid == tc.suid),
                ("sender uid == target uid", c.uid == tc.uid),
            ];
            let vals = vec![
                ("sender_uid", c.uid.0.to_string()),
                ("sender_euid", c.euid.0.to_string()),
                ("target_uid", tc.uid.0.to_string()),
                ("target_suid", tc.suid.0.to_string()),
            ];
            if let Some((what, _)) = pairs.iter().find(|(_, ok)| *ok) {
                tr!(t.pass("kill_ok_by_cred", format!("kernel ids match: {what}"), vals));
                return true;
            }
            tr!(t.fail("kill_ok_by_cred", "no kernel-id match", vals));
            self.ns_capable(t, &c, tc.user_ns, Cap::KILL)
        });
        if ok {
            return Ok(output(t));
        }
        if sig == SIGCONT {
            let (a, b) = (self.task(task).session, self.task(target).session);
            match (a, b) {
                (Some(a), Some(b)) if a == b => {
                    tr!(t.pass(
                        f,
                        "SIGCONT within the same session",
                        vec![("session", a.to_string())],
                    ));
                    return Ok(output(t));
                }
                (Some(_), Some(_)) => {
                    tr!(t.fail(f, "SIGCONT to another session", vec![]));
                }
                _ => {
                    let why = "SIGCONT is allowed within the same session, and the sessions are not modelled (set `session` on both processes)".to_string();
                    tr!(t.step(f, why.clone(), vec![], StepVerdict::Unknown));
                    return Err(Stop::unknown(why));
                }
            }
        }
        Err(Errno::EPERM.into())
    }

    fn op_ptrace(&mut self, t: &mut Tracer, task: TaskRef, target: TaskRef) -> OpResult {
        if task == target {
            tr!(t.fail(
                "ptrace_attach",
                "a task cannot attach to its own thread group",
                vec![],
            ));
            return Err(Errno::EPERM.into());
        }
        let c = self.task(task).cred.clone();
        let tt = self.task(target).clone();
        let tc = tt.cred.clone();
        let f = "__ptrace_may_access";
        let same = c.uid == tc.euid
            && c.uid == tc.suid
            && c.uid == tc.uid
            && c.gid == tc.egid
            && c.gid == tc.sgid
            && c.gid == tc.gid;
        tr!(t.check(
            same,
            f,
            "PTRACE_MODE_REALCREDS: the caller's real uid and gid equal all of the target's uids and gids",
            vec![
                ("caller", format!("{}:{}", c.uid.0, c.gid.0)),
                ("target_uids", format!("{}/{}/{}", tc.uid.0, tc.euid.0, tc.suid.0)),
                ("target_gids", format!("{}/{}/{}", tc.gid.0, tc.egid.0, tc.sgid.0)),
            ],
        ));
        if !same {
            tr!(t.info(
                f,
                "otherwise CAP_SYS_PTRACE in the target's namespace (ptrace_has_cap)",
                vec![],
            ));
            if !t.nested(|t| self.ns_capable(t, &c, tc.user_ns, Cap::SYS_PTRACE)) {
                return Err(Errno::EPERM.into());
            }
        }
        if !tt.dumpable {
            tr!(t.info(f, format!("the target is not dumpable: CAP_SYS_PTRACE in its mm->user_ns \"{}\" is needed", self.ns(tt.mm_user_ns).name), vec![]));
            if !t.nested(|t| self.ns_capable(t, &c, tt.mm_user_ns, Cap::SYS_PTRACE)) {
                return Err(Errno::EPERM.into());
            }
        } else {
            tr!(t.pass(f, "the target is dumpable", vec![]));
        }
        let g = "cap_ptrace_access_check";
        let sub = c.user_ns == tc.user_ns && tc.cap_permitted.is_subset(c.cap_permitted);
        tr!(t.check(
            sub,
            g,
            "same namespace and the target's permitted set is a subset of the caller's",
            vec![
                ("caller_permitted", c.cap_permitted.to_string()),
                ("target_permitted", tc.cap_permitted.to_string()),
            ],
        ));
        if !sub && !t.nested(|t| self.ns_capable(t, &c, tc.user_ns, Cap::SYS_PTRACE)) {
            return Err(Errno::EPERM.into());
        }
        tr!(t.info(
            "yama_ptrace_access_check",
            "Yama ptrace_scope 0 (or Yama absent): no further restriction",
            vec![],
        ));
        Ok(None)
    }

    // ------------------------------------------------------------------ set*id

    /// `commit_creds`: install new credentials; a change of euid/egid/fsuid/fsgid, or new
    /// capabilities, makes the task non-dumpable per `fs.suid_dumpable`.
    fn commit_creds(&mut self, t: &mut Tracer, task: TaskRef, new: Cred) {
        let old = self.task(task).cred.clone();
        let subset = self.cred_cap_issubset(&old, &new);
        if old.euid != new.euid
            || old.egid != new.egid
            || old.fsuid != new.fsuid
            || old.fsgid != new.fsgid
            || !subset
        {
            let d = self.suid_dumpable == 1;
            if self.task(task).dumpable != d {
                tr!(t.info(
                    "commit_creds",
                    format!(
                        "credentials changed: dumpable := fs.suid_dumpable ({})",
                        self.suid_dumpable
                    ),
                    vec![],
                ));
            }
            self.tasks[task.0].dumpable = d;
        }
        self.tasks[task.0].cred = new;
    }

    fn cred_cap_issubset(&self, set: &Cred, subset: &Cred) -> bool {
        if set.user_ns == subset.user_ns {
            return subset.cap_permitted.is_subset(set.cap_permitted);
        }
        let mut ns = subset.user_ns;
        while ns != self.init_ns() {
            let n = self.ns(ns);
            if n.parent == Some(set.user_ns) && n.owner == set.euid {
                return true;
            }
            ns = n.parent.unwrap_or(self.init_ns());
        }
        false
    }

    /// `cap_task_fix_setuid` (`cap_emulate_setxuid`): root transitions, with root meaning the
    /// namespace's uid 0.
    fn fix_setuid(&self, t: &mut Tracer, old: &Cred, new: &mut Cred) {
        if old.issecure(SECURE_NO_SETUID_FIXUP) {
            return;
        }
        let root = self.make_kuid(old.user_ns, 0);
        let was = old.uid == root || old.euid == root || old.suid == root;
        let is = new.uid == root || new.euid == root || new.suid == root;
        if was && !is {
            if !old.issecure(SECURE_KEEP_CAPS) {
                new.cap_permitted = CapSet::EMPTY;
                new.cap_effective = CapSet::EMPTY;
            }
            new.cap_ambient = CapSet::EMPTY;
            tr!(t.info("cap_emulate_setxuid", "no uid is the namespace's root any more: permitted and effective cleared (unless SECURE_KEEP_CAPS), ambient cleared", vec![("root", self.show_uid(root))]));
        }
        if old.euid == root && new.euid != root {
            new.cap_effective = CapSet::EMPTY;
            tr!(t.info(
                "cap_emulate_setxuid",
                "euid left root: effective cleared",
                vec![],
            ));
        }
        if old.euid != root && new.euid == root {
            new.cap_effective = new.cap_permitted;
            tr!(t.info(
                "cap_emulate_setxuid",
                "euid became root: effective := permitted",
                vec![],
            ));
        }
    }

    fn make_ids_valid(
        &self,
        t: &mut Tracer,
        f: &str,
        ns: NsRef,
        ids: &[(&str, Option<u32>)],
        uid: bool,
    ) -> Result<Vec<Option<u32>>, Stop> {
        let mut res = Vec::new();
        for (name, v) in ids {
            match v {
                None => res.push(None),
                Some(v) => {
                    let k = if uid {
                        self.make_kuid(ns, *v).0
                    } else {
                        self.make_kgid(ns, *v).0
                    };
                    let ok = k != u32::MAX;
                    tr!(t.check(
                        ok,
                        f,
                        format!(
                            "{name} {v} must be mapped in the caller's namespace \"{}\" ({})",
                            self.ns(ns).name,
                            if uid { "make_kuid" } else { "make_kgid" }
                        ),
                        vec![
                            (name, v.to_string()),
                            (
                                "kernel_id",
                                if ok { k.to_string() } else { "INVALID".into() },
                            ),
                        ],
                    ));
                    if !ok {
                        return Err(Errno::EINVAL.into());
                    }
                    res.push(Some(k));
                }
            }
        }
        Ok(res)
    }

    fn op_setuid(&mut self, t: &mut Tracer, task: TaskRef, uid: u32) -> OpResult {
        let old = self.task(task).cred.clone();
        let k = Kuid(
            self.make_ids_valid(t, "__sys_setuid", old.user_ns, &[("uid", Some(uid))], true)?[0]
                .unwrap_or(u32::MAX),
        );
        let mut new = old.clone();
        if t.nested(|t| self.ns_capable(t, &old, old.user_ns, Cap::SETUID)) {
            new.uid = k;
            new.suid = k;
        } else if k != old.uid && k != old.suid {
            tr!(t.fail(
                "__sys_setuid",
                "without CAP_SETUID the new uid must be the real or saved uid",
                vec![],
            ));
            return Err(Errno::EPERM.into());
        } else {
            tr!(t.pass(
                "__sys_setuid",
                "the new uid is the real or saved uid",
                vec![],
            ));
        }
        new.euid = k;
        new.fsuid = k;
        self.fix_setuid(t, &old, &mut new);
        self.commit_creds(t, task, new);
        Ok(None)
    }

    fn op_setreuid(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        ruid: Option<u32>,
        euid: Option<u32>,
    ) -> OpResult {
        let old = self.task(task).cred.clone();
        let ks = self.make_ids_valid(
            t,
            "__sys_setreuid",
            old.user_ns,
            &[("ruid", ruid), ("euid", euid)],
            true,
        )?;
        let (kr, ke) = (ks[0].map(Kuid), ks[1].map(Kuid));
        let mut new = old.clone();
        let mut cap: Option<bool> = None;
        let mut has_cap = |t: &mut Tracer, w: &World| {
            *cap.get_or_insert_with(|| {
                t.nested(|t| w.ns_capable(t, &old, old.user_ns, Cap::SETUID))
            })
        };
        if let Some(k) = kr {
            new.uid = k;
            if k != old.uid && k != old.euid && !has_cap(t, self) {
                tr!(t.fail(
                    "__sys_setreuid",
                    "the new real uid must be the real or effective uid, or CAP_SETUID",
                    vec![],
                ));
                return Err(Errno::EPERM.into());
            }
        }
        if let Some(k) = ke {
            new.euid = k;
            if k != old.uid && k != old.euid && k != old.suid && !has_cap(t, self) {
                tr!(t.fail(
                    "__sys_setreuid",
                    "the new effective uid must be the real, effective or saved uid, or CAP_SETUID",
                    vec![],
                ));
                return Err(Errno::EPERM.into());
            }
        }
        if kr.is_some() || ke.is_some_and(|k| k != old.uid) {
            new.suid = new.euid;
        }
        new.fsuid = new.euid;
        tr!(t.pass("__sys_setreuid", "permitted", vec![]));
        self.fix_setuid(t, &old, &mut new);
        self.commit_creds(t, task, new);
        Ok(None)
    }

    fn op_setresuid(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        ruid: Option<u32>,
        euid: Option<u32>,
        suid: Option<u32>,
    ) -> OpResult {
        let f = "__sys_setresuid";
        let old = self.task(task).cred.clone();
        let ks = self.make_ids_valid(
            t,
            f,
            old.user_ns,
            &[("ruid", ruid), ("euid", euid), ("suid", suid)],
            true,
        )?;
        let (kr, ke, ks) = (ks[0].map(Kuid), ks[1].map(Kuid), ks[2].map(Kuid));
        let noop = kr.map_or(true, |k| k == old.uid)
            && ke.map_or(true, |k| k == old.euid && k == old.fsuid)
            && ks.map_or(true, |k| k == old.suid);
        if noop {
            tr!(t.pass(
                f,
                "nothing changes: success without any permission check",
                vec![],
            ));
            return Ok(None);
        }
        let is_new =
            |k: Option<Kuid>| k.is_some_and(|k| k != old.uid && k != old.euid && k != old.suid);
        if is_new(kr) || is_new(ke) || is_new(ks) {
            tr!(t.info(
                f,
                "an id outside {uid, euid, suid} needs CAP_SETUID",
                vec![],
            ));
            if !t.nested(|t| self.ns_capable(t, &old, old.user_ns, Cap::SETUID)) {
                return Err(Errno::EPERM.into());
            }
        } else {
            tr!(t.pass(
                f,
                "every new id is one of the current uid, euid, suid",
                vec![],
            ));
        }
        let mut new = old.clone();
        if let Some(k) = kr {
            new.uid = k;
        }
        if let Some(k) = ke {
            new.euid = k;
        }
        if let Some(k) = ks {
            new.suid = k;
        }
        new.fsuid = new.euid;
        self.fix_setuid(t, &old, &mut new);
        self.commit_creds(t, task, new);
        Ok(None)
    }

    fn op_setgid(&mut self, t: &mut Tracer, task: TaskRef, gid: u32) -> OpResult {
        let old = self.task(task).cred.clone();
        let k = Kgid(
            self.make_ids_valid(t, "__sys_setgid", old.user_ns, &[("gid", Some(gid))], false)?[0]
                .unwrap_or(u32::MAX),
        );
        let mut new = old.clone();
        if t.nested(|t| self.ns_capable(t, &old, old.user_ns, Cap::SETGID)) {
            new.gid = k;
            new.egid = k;
            new.sgid = k;
            new.fsgid = k;
        } else if k == old.gid || k == old.sgid {
            tr!(t.pass(
                "__sys_setgid",
                "the new gid is the real or saved gid",
                vec![],
            ));
            new.egid = k;
            new.fsgid = k;
        } else {
            tr!(t.fail(
                "__sys_setgid",
                "without CAP_SETGID the new gid must be the real or saved gid",
                vec![],
            ));
            return Err(Errno::EPERM.into());
        }
        self.commit_creds(t, task, new);
        Ok(None)
    }

    fn op_setregid(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        rgid: Option<u32>,
        egid: Option<u32>,
    ) -> OpResult {
        let old = self.task(task).cred.clone();
        let ks = self.make_ids_valid(
            t,
            "__sys_setregid",
            old.user_ns,
            &[("rgid", rgid), ("egid", egid)],
            false,
        )?;
        let (kr, ke) = (ks[0].map(Kgid), ks[1].map(Kgid));
        let mut new = old.clone();
        let mut cap: Option<bool> = None;
        let mut has_cap = |t: &mut Tracer, w: &World| {
            *cap.get_or_insert_with(|| {
                t.nested(|t| w.ns_capable(t, &old, old.user_ns, Cap::SETGID))
            })
        };
        if let Some(k) = kr {
            if k == old.gid || k == old.egid || has_cap(t, self) {
                new.gid = k;
            } else {
                tr!(t.fail(
                    "__sys_setregid",
                    "the new real gid must be the real or effective gid, or CAP_SETGID",
                    vec![],
                ));
                return Err(Errno::EPERM.into());
            }
        }
        if let Some(k) = ke {
            if k == old.gid || k == old.egid || k == old.sgid || has_cap(t, self) {
                new.egid = k;
            } else {
                tr!(t.fail(
                    "__sys_setregid",
                    "the new effective gid must be the real, effective or saved gid, or CAP_SETGID",
                    vec![],
                ));
                return Err(Errno::EPERM.into());
            }
        }
        if kr.is_some() || ke.is_some_and(|k| k != old.gid) {
            new.sgid = new.egid;
        }
        new.fsgid = new.egid;
        tr!(t.pass("__sys_setregid", "permitted", vec![]));
        self.commit_creds(t, task, new);
        Ok(None)
    }

    fn op_setresgid(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        rgid: Option<u32>,
        egid: Option<u32>,
        sgid: Option<u32>,
    ) -> OpResult {
        let f = "__sys_setresgid";
        let old = self.task(task).cred.clone();
        let ks = self.make_ids_valid(
            t,
            f,
            old.user_ns,
            &[("rgid", rgid), ("egid", egid), ("sgid", sgid)],
            false,
        )?;
        let (kr, ke, ks) = (ks[0].map(Kgid), ks[1].map(Kgid), ks[2].map(Kgid));
        let noop = kr.map_or(true, |k| k == old.gid)
            && ke.map_or(true, |k| k == old.egid && k == old.fsgid)
            && ks.map_or(true, |k| k == old.sgid);
        if noop {
            tr!(t.pass(
                f,
                "nothing changes: success without any permission check",
                vec![],
            ));
            return Ok(None);
        }
        let is_new =
            |k: Option<Kgid>| k.is_some_and(|k| k != old.gid && k != old.egid && k != old.sgid);
        if is_new(kr) || is_new(ke) || is_new(ks) {
            tr!(t.info(
                f,
                "an id outside {gid, egid, sgid} needs CAP_SETGID",
                vec![],
            ));
            if !t.nested(|t| self.ns_capable(t, &old, old.user_ns, Cap::SETGID)) {
                return Err(Errno::EPERM.into());
            }
        } else {
            tr!(t.pass(
                f,
                "every new id is one of the current gid, egid, sgid",
                vec![],
            ));
        }
        let mut new = old.clone();
        if let Some(k) = kr {
            new.gid = k;
        }
        if let Some(k) = ke {
            new.egid = k;
        }
        if let Some(k) = ks {
            new.sgid = k;
        }
        new.fsgid = new.egid;
        self.commit_creds(t, task, new);
        Ok(None)
    }

    fn op_setgroups(&mut self, t: &mut Tracer, task: TaskRef, groups: &[u32]) -> OpResult {
        let f = "may_setgroups";
        let old = self.task(task).cred.clone();
        let ns = self.ns(old.user_ns).clone();
        tr!(t.info(
            f,
            "CAP_SETGID in the caller's namespace, a written gid_map, and setgroups \"allow\"",
            vec![],
        ));
        let ok = t.nested(|t| {
            if !self.ns_capable(t, &old, old.user_ns, Cap::SETGID) {
                return false;
            }
            if !tr!(t.check(
                !ns.gid_map.is_empty(),
                "userns_may_setgroups",
                "the gid_map has been written",
                vec![],
            )) {
                return false;
            }
            tr!(t.check(
                ns.setgroups_allowed,
                "userns_may_setgroups",
                "/proc/PID/setgroups says \"allow\"",
                vec![],
            ))
        });
        if !ok {
            return Err(Errno::EPERM.into());
        }
        if groups.len() > NGROUPS_MAX {
            tr!(t.fail("setgroups", "more than NGROUPS_MAX groups", vec![]));
            return Err(Errno::EINVAL.into());
        }
        let mut ks = Vec::new();
        for g in groups {
            let k = self.make_kgid(old.user_ns, *g);
            if !tr!(t.check(
                k.is_valid(),
                "groups_from_user",
                format!("group {g} must be mapped in the caller's namespace"),
                vec![("gid", g.to_string())],
            )) {
                return Err(Errno::EINVAL.into());
            }
            ks.push(k);
        }
        ks.sort();
        let mut new = old;
        new.groups = ks;
        self.commit_creds(t, task, new);
        Ok(None)
    }

    // ------------------------------------------------------------------ namespaces

    /// `set_cred_user_ns`: what entering a new namespace does to credentials.
    fn set_cred_user_ns(cred: &mut Cred, ns: NsRef) {
        cred.securebits = 0;
        cred.cap_inheritable = CapSet::EMPTY;
        cred.cap_permitted = CapSet::FULL;
        cred.cap_effective = CapSet::FULL;
        cred.cap_ambient = CapSet::EMPTY;
        cred.cap_bset = CapSet::FULL;
        cred.user_ns = ns;
    }

    fn op_unshare(&mut self, t: &mut Tracer, task: TaskRef, name: &str) -> OpResult {
        let tk = self.task(task).clone();
        if tk.multithreaded {
            tr!(t.fail(
                "check_unshare_flags",
                "CLONE_NEWUSER implies CLONE_THREAD: the caller must be single-threaded",
                vec![],
            ));
            return Err(Errno::EINVAL.into());
        }
        let f = "create_user_ns";
        let parent = tk.cred.user_ns;
        let p = self.ns(parent).clone();
        if !tr!(t.check(
            p.level <= 32,
            f,
            "nesting: the parent's level must be at most 32",
            vec![
                ("parent", p.name.clone()),
                ("parent_level", p.level.to_string()),
            ],
        )) {
            return Err(Errno::ENOSPC.into());
        }
        tr!(t.info(
            "inc_user_namespaces",
            "the max_user_namespaces limits are not modelled (assumed not reached)",
            vec![],
        ));
        if !tr!(t.check(!tk.chrooted, f, "the caller must not be chrooted", vec![])) {
            return Err(Errno::EPERM.into());
        }
        let um = self.kuid_has_mapping(parent, tk.cred.euid);
        let gm = self.kgid_has_mapping(parent, tk.cred.egid);
        if !tr!(t.check(
            um && gm,
            f,
            format!(
                "the creator's euid and egid must be mapped in the parent \"{}\"",
                p.name
            ),
            vec![
                ("euid", tk.cred.euid.0.to_string()),
                ("euid_mapped", um.to_string()),
                ("egid", tk.cred.egid.0.to_string()),
                ("egid_mapped", gm.to_string()),
            ],
        )) {
            return Err(Errno::EPERM.into());
        }
        if self.ns_by_name(name).is_some() {
            return Err(Stop::unknown(format!(
                "the scenario already has a namespace called \"{name}\""
            )));
        }
        let could = tk.cred.cap_effective.has(Cap::SETFCAP);
        self.namespaces.push(UserNs {
            name: name.into(),
            parent: Some(parent),
            level: p.level + 1,
            owner: tk.cred.euid,
            group: tk.cred.egid,
            uid_map: credns_idmap::IdMap::empty(),
            gid_map: credns_idmap::IdMap::empty(),
            setgroups_allowed: p.setgroups_allowed,
            parent_could_setfcap: could,
        });
        let nsr = NsRef(self.namespaces.len() - 1);
        tr!(t.pass(
            f,
            format!("namespace \"{name}\" created at level {}", p.level + 1),
            vec![
                ("owner", tk.cred.euid.0.to_string()),
                ("group", tk.cred.egid.0.to_string()),
                ("parent_could_setfcap", could.to_string()),
                (
                    "setgroups",
                    if p.setgroups_allowed { "allow" } else { "deny" }.into(),
                ),
            ],
        ));
        let mut new = tk.cred.clone();
        Self::set_cred_user_ns(&mut new, nsr);
        tr!(t.info(
            "set_cred_user_ns",
            "the task gets every capability in the new namespace; its kernel ids are unchanged",
            vec![],
        ));
        self.commit_creds(t, task, new);
        Ok(Some(out(vec![
            ("ns", name.into()),
            ("level", (p.level + 1).to_string()),
        ])))
    }

    /// Open permission of a /proc/PID file of mode 0644 (owner from `task_dump_owner`).
    fn proc_open_write(&self, t: &mut Tracer, cred: &Cred, target: TaskRef, file: &str) -> Check {
        let tt = self.task(target);
        let (ou, og) = if tt.dumpable {
            (tt.cred.euid, tt.cred.egid)
        } else {
            let r = self.make_kuid(tt.mm_user_ns, 0);
            let g = self.make_kgid(tt.mm_user_ns, 0);
            (
                if r.is_valid() { r } else { Kuid(0) },
                if g.is_valid() { g } else { Kgid(0) },
            )
        };
        let f = "proc_pid_permission";
        if cred.fsuid == ou {
            tr!(t.pass(
                f,
                format!(
                    "/proc/{}/{file} (mode 0644) is owned by the caller's fsuid",
                    tt.name
                ),
                vec![("owner", ou.0.to_string())],
            ));
            return Ok(());
        }
        tr!(t.info(f, format!("/proc/{}/{file} (mode 0644) belongs to {}: writing needs CAP_DAC_OVERRIDE with the owner mapped", tt.name, ou.0), vec![("owner", ou.0.to_string()), ("group", og.0.to_string())]));
        let ok = t.nested(|t| {
            self.ns_capable(t, cred, cred.user_ns, Cap::DAC_OVERRIDE)
                && tr!(t.check(
                    self.kuid_has_mapping(cred.user_ns, ou)
                        && self.kgid_has_mapping(cred.user_ns, og),
                    "privileged_wrt_inode_uidgid",
                    "the proc file's owner and group are mapped in the caller's namespace",
                    vec![],
                ))
        });
        if ok {
            Ok(())
        } else {
            Err(Errno::EACCES.into())
        }
    }

    fn op_write_map(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        target: TaskRef,
        kind: MapKind,
        text: &str,
    ) -> OpResult {
        let cred = self.task(task).cred.clone();
        let file = match kind {
            MapKind::Uid => "uid_map",
            MapKind::Gid => "gid_map",
        };
        self.proc_open_write(t, &cred, target, file)?;
        let map_ns = self.task(target).cred.user_ns;
        let n = self.ns(map_ns).clone();
        let opener_ns = if cred.user_ns == map_ns {
            OpenerNs::Target
        } else if n.parent == Some(cred.user_ns) {
            OpenerNs::Parent
        } else {
            OpenerNs::Other
        };
        let (idkind, setid) = match kind {
            MapKind::Uid => (IdKind::Uid, Cap::SETUID),
            MapKind::Gid => (IdKind::Gid, Cap::SETGID),
        };
        let parent = n.parent;
        let mut scratch = Tracer::default();
        let cap = |ns: Option<NsRef>, cap: Cap, tr: &mut Tracer| {
            ns.is_some_and(|ns| self.cap_capable(tr, &cred, ns, cap))
        };
        // Compute each capability fact with its trace, in the order map_write consults them.
        let sys_admin = t.nested(|t| {
            tr!(t.info(
                "file_ns_capable",
                format!("CAP_SYS_ADMIN in \"{}\" (map_write)", n.name),
                vec![],
            ));
            cap(Some(map_ns), Cap::SYS_ADMIN, t)
        });
        let setfcap = cap(parent, Cap::SETFCAP, &mut scratch);
        let setid_parent = cap(parent, setid, &mut scratch);
        let ctx = WriteContext {
            kind: idkind,
            target_is_init: parent.is_none(),
            opener_ns,
            offset: 0,
            already_written: match kind {
                MapKind::Uid => !n.uid_map.is_empty(),
                MapKind::Gid => !n.gid_map.is_empty(),
            },
            opener_cap_sys_admin_in_target: sys_admin,
            parent_could_setfcap: n.parent_could_setfcap,
            opener_cap_setfcap_in_parent: setfcap,
            owner: n.owner,
            opener_euid: cred.euid,
            opener_egid: cred.egid,
            setgroups_allowed: n.setgroups_allowed,
            writer_cap_setid_in_parent: setid_parent,
            opener_cap_setid_in_parent: setid_parent,
            parent_map: match (parent, kind) {
                (Some(p), MapKind::Uid) => self.ns(p).uid_map.clone(),
                (Some(p), MapKind::Gid) => self.ns(p).gid_map.clone(),
                (None, _) => credns_idmap::IdMap::identity(),
            },
        };
        tr!(t.info(
            "new_idmap_permitted",
            "facts consulted (computed from the namespace tree)",
            vec![
                ("map_ns", n.name.clone()),
                ("opener_ns", format!("{opener_ns:?}")),
                ("owner", n.owner.0.to_string()),
                ("opener_euid", cred.euid.0.to_string()),
                (
                    "setgroups",
                    if n.setgroups_allowed { "allow" } else { "deny" }.into(),
                ),
                ("parent_could_setfcap", n.parent_could_setfcap.to_string()),
                ("CAP_SETFCAP_in_parent", setfcap.to_string()),
                (
                    if setid == Cap::SETUID {
                        "CAP_SETUID_in_parent"
                    } else {
                        "CAP_SETGID_in_parent"
                    },
                    setid_parent.to_string(),
                ),
            ],
        ));
        match credns_idmap::judge_write(&ctx, text.as_bytes()) {
            Ok(acc) => {
                tr!(t.pass(
                    "map_write",
                    format!("{file} of \"{}\" written", n.name),
                    vec![(
                        "kernel_map",
                        acc.kernel.to_write_format().trim_end().replace('\n', "; "),
                    )],
                ));
                match kind {
                    MapKind::Uid => self.namespaces[map_ns.0].uid_map = acc.kernel,
                    MapKind::Gid => self.namespaces[map_ns.0].gid_map = acc.kernel,
                }
                Ok(None)
            }
            Err(rule) => {
                let e = rule.errno();
                tr!(t.fail(
                    rule.kernel_function(),
                    rule.to_string(),
                    vec![("errno", e.to_string())],
                ));
                Err(e.into())
            }
        }
    }

    fn op_write_setgroups(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        target: TaskRef,
        text: &str,
    ) -> OpResult {
        let cred = self.task(task).cred.clone();
        self.proc_open_write(t, &cred, target, "setgroups")?;
        let ns = self.task(target).cred.user_ns;
        let n = self.ns(ns).clone();
        tr!(t.info(
            "proc_setgroups_open",
            format!("opening for write needs CAP_SYS_ADMIN in \"{}\"", n.name),
            vec![],
        ));
        if !t.nested(|t| self.ns_capable(t, &cred, ns, Cap::SYS_ADMIN)) {
            return Err(Errno::EACCES.into());
        }
        let f = "proc_setgroups_write";
        if text.len() >= 8 {
            tr!(t.fail(f, "the write must be shorter than 8 bytes", vec![]));
            return Err(Errno::EINVAL.into());
        }
        let s = text.split('\0').next().unwrap_or("");
        let (allow, rest) = if let Some(r) = s.strip_prefix("allow") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("deny") {
            (false, r)
        } else {
            tr!(t.fail(f, "the text must start with \"allow\" or \"deny\"", vec![]));
            return Err(Errno::EINVAL.into());
        };
        if !rest
            .bytes()
            .all(|b| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
        {
            tr!(t.fail(f, "only whitespace may follow", vec![]));
            return Err(Errno::EINVAL.into());
        }
        if allow {
            if !tr!(t.check(
                n.setgroups_allowed,
                f,
                "\"allow\" cannot undo an earlier \"deny\"",
                vec![],
            )) {
                return Err(Errno::EPERM.into());
            }
        } else {
            if !tr!(t.check(
                n.gid_map.is_empty(),
                f,
                "\"deny\" is refused once the gid_map is written",
                vec![],
            )) {
                return Err(Errno::EPERM.into());
            }
            self.namespaces[ns.0].setgroups_allowed = false;
        }
        Ok(None)
    }

    fn op_setns(&mut self, t: &mut Tracer, task: TaskRef, ns: NsRef) -> OpResult {
        let f = "userns_install";
        let tk = self.task(task).clone();
        if !tr!(t.check(
            ns != tk.cred.user_ns,
            f,
            "a task cannot re-enter its own namespace",
            vec![],
        )) {
            return Err(Errno::EINVAL.into());
        }
        if !tr!(t.check(
            !tk.multithreaded,
            f,
            "the caller must be single-threaded",
            vec![],
        )) {
            return Err(Errno::EINVAL.into());
        }
        if !tr!(t.check(
            !tk.shared_fs,
            f,
            "the caller's fs_struct must not be shared",
            vec![],
        )) {
            return Err(Errno::EINVAL.into());
        }
        if !t.nested(|t| self.ns_capable(t, &tk.cred, ns, Cap::SYS_ADMIN)) {
            return Err(Errno::EPERM.into());
        }
        let mut new = tk.cred.clone();
        Self::set_cred_user_ns(&mut new, ns);
        tr!(t.info(
            "set_cred_user_ns",
            "full capabilities in the entered namespace; kernel ids unchanged",
            vec![],
        ));
        self.commit_creds(t, task, new);
        Ok(None)
    }

    fn op_proc_status(&mut self, t: &mut Tracer, task: TaskRef, target: TaskRef) -> OpResult {
        let view = self.task(task).cred.user_ns;
        let c = self.task(target).cred.clone();
        tr!(t.info(
            "proc_pid_status",
            format!(
                "ids translated through the reader's namespace \"{}\" (seq_user_ns)",
                self.ns(view).name
            ),
            vec![],
        ));
        Ok(Some(self.render_cred(t, view, &c, true)))
    }

    fn op_peercred(&mut self, t: &mut Tracer, task: TaskRef, peer: TaskRef) -> OpResult {
        let view = self.task(task).cred.user_ns;
        let c = self.task(peer).cred.clone();
        let uid = self.from_kuid_munged(view, c.euid);
        let gid = self.from_kgid_munged(view, c.egid);
        tr!(t.info(
            "cred_to_ucred",
            format!(
                "the peer's euid/egid shown in the reader's namespace \"{}\"",
                self.ns(view).name
            ),
            vec![
                ("peer_euid", c.euid.0.to_string()),
                ("peer_egid", c.egid.0.to_string()),
                ("uid", uid.to_string()),
                ("gid", gid.to_string()),
            ],
        ));
        Ok(Some(out(vec![
            ("uid", uid.to_string()),
            ("gid", gid.to_string()),
        ])))
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
        }
    }
}
