//! Operations: each mirrors one syscall path and returns an [`Outcome`] with its trace.
//! This module dispatches an [`Op`] to the file that models its syscall.

mod attrs;
mod capset;
mod creds;
mod dirent;
mod exec;
mod fs;
mod ids;
mod namespaces;
mod nstypes;
mod op;
mod ptrace_modes;
mod setattr;
mod signals;
mod xattr;

pub use attrs::UtimesTimes;
pub use dirent::{Protected, RENAME_EXCHANGE, RENAME_NOREPLACE};
pub use xattr::{XattrAclEntry, XattrValue};

/// `security.capability`.
pub(crate) fn xattr_caps_name() -> &'static str {
    xattr::XATTR_NAME_CAPS
}
mod sockets;

pub use op::{CapPrctlOption, MapKind, Op, ProcFile, NGROUPS_MAX, NSIG, SIGCONT};
mod acl_create;
mod fscaps_exec;
mod userns_mount;

pub use nstypes::{NsType, NsTypes, TypedNs, TypedNsRef, PROT_SOCK};
pub use userns_mount::RemountFlags;

use crate::outcome::{Outcome, Output, Tracer, Values, Verdict};
use crate::vfs::Stop;
use crate::world::{TaskRef, World};
use credns_idmap::Errno;

pub(crate) use sockets::Connection;

pub(super) type OpResult = Result<Option<Output>, Stop>;

pub(super) fn out(pairs: Vec<(&str, String)>) -> Output {
    Values(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

pub(super) fn opt_id(v: Option<u32>) -> String {
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

    pub(super) fn dispatch(&mut self, t: &mut Tracer, task: TaskRef, op: &Op) -> OpResult {
        self.trace_task(t, task);
        if op.is_vfs() {
            if let Some(r) = self.dispatch_in_vfs_view(t, task, op) {
                return r;
            }
        }
        self.dispatch_op(t, task, op)
    }

    /// The operation itself, after the trace of who acts.
    pub(crate) fn dispatch_op(&mut self, t: &mut Tracer, task: TaskRef, op: &Op) -> OpResult {
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
            Op::RequestKey {
                ktype,
                description,
                callout,
            } => self.op_request_key(t, task, *ktype, description, callout.as_deref()),
            Op::Capable { ns, cap } => {
                let c = self.task(task).cred.clone();
                if self.ns_capable(t, &c, *ns, *cap) {
                    Ok(None)
                } else {
                    Err(Errno::EPERM.into())
                }
            }
            Op::Unlink { path } => self.op_unlink(t, task, path),
            Op::Rmdir { path } => self.op_rmdir(t, task, path),
            Op::Rename { from, to, flags } => self.op_rename(t, task, from, to, *flags),
            Op::Link { from, to } => self.op_link(t, task, from, to),
            Op::Symlink { target, path } => self.op_symlink(t, task, target, path),
            Op::OpenCreat {
                path,
                read,
                write,
                mode,
            } => self.op_open_creat(t, task, path, *read, *write, *mode),
            Op::Truncate { path, length } => self.op_truncate(t, task, path, *length),
            Op::Utimes { path, times } => self.op_utimes(t, task, path, *times),
            Op::Setxattr { path, name, value } => self.op_setxattr(t, task, path, name, value),
            Op::Setfsuid { .. } | Op::Setfsgid { .. } | Op::Capset { .. } | Op::CapPrctl { .. } => {
                self.dispatch_capset(t, task, op)
            }
            Op::PtraceRead { target, fscreds } => self.op_ptrace_read(t, task, *target, *fscreds),
            Op::OpenProc { target, file } => self.op_open_proc(t, task, *target, *file),
            Op::Connect { target, name } => self.op_connect(t, task, *target, name),
            Op::PeerCredOf { socket } => self.op_peercred_of(t, task, socket),
            Op::SendCreds {
                socket,
                uid,
                gid,
                other_pid,
            } => self.op_send_creds(t, task, socket, (*uid, *gid), *other_pid),
            Op::ReadlinkProcFd { target, .. } => self.op_readlink_proc_fd(t, task, *target),
            Op::UnshareNs { kind, name } => self.op_unshare_ns(t, task, *kind, name),
            Op::SetnsNs { ns } => self.op_setns_ns(t, task, *ns),
            Op::Sethostname { name } => self.op_sethostname(t, task, name),
            Op::BindPort { port } => self.op_bind_port(t, task, *port),
            Op::MountNew { fs_type, path } => self.op_mount_new(t, task, fs_type, path),
            Op::Umount { path } => self.op_umount(t, task, path),
            Op::Remount { path, flags } => self.op_remount(t, task, path, *flags),
        }
    }
}
