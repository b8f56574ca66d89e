//! The parent's side: [`UsernsChild`]'s requests that change the helper's fs ids and
//! capabilities (`setfsuid(2)`, `setfsgid(2)`, `capset(2)`, the capability `prctl(2)`s).

use super::protocol;
use super::UsernsChild;
use crate::{Errno, Error};

impl UsernsChild {
    /// `setfsuid(uid)` (`None`: -1) as the helper: the old fsuid it returns (never an error).
    pub fn setfsuid(&self, uid: Option<u32>) -> Result<u32, Error> {
        self.fs_id_call(protocol::CALL_SETFSUID, uid, "setfsuid")
    }

    /// `setfsgid(gid)` (`None`: -1) as the helper: the old fsgid it returns.
    pub fn setfsgid(&self, gid: Option<u32>) -> Result<u32, Error> {
        self.fs_id_call(protocol::CALL_SETFSGID, gid, "setfsgid")
    }

    fn fs_id_call(&self, how: u32, id: Option<u32>, op: &'static str) -> Result<u32, Error> {
        let a = id.unwrap_or(u32::MAX) as u64;
        let r = self
            .syscall(how, [a, 0, 0], &[])?
            .map_err(|errno| Error::Helper {
                pid: self.pid(),
                op,
                errno,
            })?;
        Ok(r.rep.v[0] as u32)
    }

    /// `capset(2)` (version 3, the helper itself) with the given effective, permitted and
    /// inheritable sets.
    pub fn capset(
        &self,
        effective: u64,
        permitted: u64,
        inheritable: u64,
    ) -> Result<Result<(), Errno>, Error> {
        let p: Vec<u8> = [effective, permitted, inheritable]
            .iter()
            .flat_map(|w| w.to_ne_bytes())
            .collect();
        Ok(self.syscall(protocol::CALL_CAPSET, [0; 3], &p)?.map(|_| ()))
    }

    /// `prctl(option, arg2, arg3, 0, 0)` as the helper: what it returns. For the capability
    /// options, which take integers only.
    pub fn prctl(&self, option: i32, arg2: u64, arg3: u64) -> Result<Result<u32, Errno>, Error> {
        Ok(self
            .syscall(
                protocol::CALL_PRCTL,
                [option as u32 as u64, arg2, arg3],
                &[],
            )?
            .map(|r| r.rep.v[0] as u32))
    }

    /// `kcmp(helper, pid, KCMP_VM)` as the helper: Ok when `ptrace_may_access(pid,
    /// PTRACE_MODE_READ_REALCREDS)` lets it compare (whatever the comparison says).
    pub fn kcmp_vm(&self, pid: crate::Pid) -> Result<Result<(), Errno>, Error> {
        Ok(self
            .syscall(
                protocol::CALL_KCMP_VM,
                [pid.as_raw() as u32 as u64, 0, 0],
                &[],
            )?
            .map(|_| ()))
    }

    /// Have the helper `execve` the re-exec program at `program` (a binary that calls
    /// [`reexec_helper_main`](crate::reexec_helper_main)), keeping its permitted capabilities
    /// through the ambient set: it goes on as the same helper with a new `mm`, whose user
    /// namespace is the one the helper is in now.
    pub fn reexec(&self, program: &std::path::Path) -> Result<Result<(), Errno>, Error> {
        let p = super::parent::path_payload(program)?;
        Ok(self.syscall(protocol::CALL_REEXEC, [0; 3], &p)?.map(|_| ()))
    }

    /// Send one byte with `SCM_CREDENTIALS {pid, uid, gid}` (the helper's own pid unless
    /// `pid` is given; ids in its namespace's numbering) on one of its sockets.
    pub fn send_creds(
        &self,
        fd: super::RemoteFd,
        pid: Option<crate::Pid>,
        uid: u32,
        gid: u32,
    ) -> Result<Result<(), Errno>, Error> {
        let p = pid
            .map(|p| p.as_raw().to_ne_bytes().to_vec())
            .unwrap_or_default();
        Ok(self
            .syscall(
                protocol::CALL_SEND_CREDS,
                [fd.0 as u32 as u64, uid as u64, gid as u64],
                &p,
            )?
            .map(|_| ()))
    }

    /// Turn `SO_PASSCRED` on for one of the helper's sockets.
    pub fn set_passcred(&self, fd: super::RemoteFd) -> Result<Result<(), Errno>, Error> {
        Ok(self
            .syscall(protocol::CALL_RECV_CREDS, [fd.0 as u32 as u64, 1, 0], &[])?
            .map(|_| ()))
    }

    /// Receive one byte on one of the helper's sockets: the pid, uid and gid of its
    /// `SCM_CREDENTIALS`, as the helper's namespaces show them.
    pub fn recv_creds(&self, fd: super::RemoteFd) -> Result<Result<(i32, u32, u32), Errno>, Error> {
        Ok(self
            .syscall(protocol::CALL_RECV_CREDS, [fd.0 as u32 as u64, 0, 0], &[])?
            .map(|r| (r.rep.v[0] as i32, r.rep.v[1] as u32, r.rep.v[2] as u32)))
    }

    /// `readlink(path)` as the helper: Ok when the link could be read (its target is not
    /// returned).
    pub fn readlink(&self, path: &std::path::Path) -> Result<Result<(), Errno>, Error> {
        let p = super::parent::path_payload(path)?;
        Ok(self
            .syscall(protocol::CALL_READLINK, [0; 3], &p)?
            .map(|_| ()))
    }
}
