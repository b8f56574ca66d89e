//! The parent's side: [`UsernsChild`]'s requests that change or report the helper's
//! credentials and user namespace.

use std::os::fd::BorrowedFd;

use super::api::check_group_count;
use super::protocol::{self, Req};
use super::{CapSets, FullCreds, HelperIds, Ids, SetId, UnshareOptions, UsernsChild};
use crate::{Errno, Error};

impl UsernsChild {
    /// Have the helper change ids (`setuid(2)`, `setreuid(2)`, `setresuid(2)` and the gid
    /// calls), in its namespace's numbering.
    pub fn set_id(&self, call: SetId) -> Result<Result<(), Errno>, Error> {
        let a = |v: Option<u32>| v.unwrap_or(u32::MAX) as u64;
        let (how, args) = match call {
            SetId::Setuid(u) => (protocol::CALL_SETUID, [u as u64, 0, 0]),
            SetId::Setreuid(r, e) => (protocol::CALL_SETREUID, [a(r), a(e), 0]),
            SetId::Setresuid(r, e, s) => (protocol::CALL_SETRESUID, [a(r), a(e), a(s)]),
            SetId::Setgid(g) => (protocol::CALL_SETGID, [g as u64, 0, 0]),
            SetId::Setregid(r, e) => (protocol::CALL_SETREGID, [a(r), a(e), 0]),
            SetId::Setresgid(r, e, s) => (protocol::CALL_SETRESGID, [a(r), a(e), a(s)]),
        };
        Ok(self.syscall(how, args, &[])?.map(|_| ()))
    }

    /// Have the helper set its supplementary groups (`setgroups(2)`).
    pub fn setgroups(&self, groups: &[u32]) -> Result<Result<(), Errno>, Error> {
        check_group_count(groups)?;
        let p: Vec<u8> = groups.iter().flat_map(|g| g.to_ne_bytes()).collect();
        Ok(self
            .syscall(protocol::CALL_SETGROUPS, [0; 3], &p)?
            .map(|_| ()))
    }

    /// Have the helper move into a new user namespace (`unshare(CLONE_NEWUSER)`).
    pub fn unshare_user(&self) -> Result<Result<(), Errno>, Error> {
        Ok(self
            .syscall(protocol::CALL_UNSHARE_USER, [0; 3], &[])?
            .map(|_| ()))
    }

    /// Have the helper enter the user namespace `ns` (`setns(2)` with `CLONE_NEWUSER`). The
    /// fd is opened by the caller and passed over, so only `setns`'s own checks apply.
    #[doc(alias = "setns")]
    pub fn setns_user(&self, ns: BorrowedFd<'_>) -> Result<Result<(), Errno>, Error> {
        let r = self.call(
            Req {
                op: protocol::OP_CALL,
                how: protocol::CALL_SETNS_USER,
                ..Req::default()
            },
            &[],
            Some(ns),
        )?;
        Ok(Self::answer(&r.rep))
    }

    /// Have the helper set `PR_SET_NO_NEW_PRIVS` (`prctl(2)`).
    pub fn set_no_new_privs(&self) -> Result<Result<(), Errno>, Error> {
        Ok(self
            .syscall(protocol::CALL_NO_NEW_PRIVS, [0; 3], &[])?
            .map(|_| ()))
    }

    /// The helper's fsuid and fsgid as its namespace shows them (`setfsuid(2)` with -1).
    pub fn fs_ids(&self) -> Result<(u32, u32), Error> {
        let r = self
            .syscall(protocol::CALL_FSIDS, [0; 3], &[])?
            .map_err(|errno| Error::Helper {
                pid: self.pid(),
                op: "setfsuid(-1)",
                errno,
            })?;
        Ok((r.rep.v[0] as u32, r.rep.v[1] as u32))
    }

    /// Have the helper take on complete credentials (see [`FullCreds`]). The inner result is
    /// the kernel's answer to the first step that failed.
    pub fn set_full_creds(&self, c: &FullCreds) -> Result<Result<(), Errno>, Error> {
        let p = c.to_raw()?.encode();
        Ok(self
            .syscall(protocol::CALL_FULL_CREDS, [0; 3], &p)?
            .map(|_| ()))
    }

    /// The helper's ids and capabilities as it sees them.
    pub fn ids(&self) -> Result<HelperIds, Error> {
        let r = self.call_ok(
            Req {
                op: protocol::OP_IDS,
                ..Req::default()
            },
            &[],
            None,
            "getresuid",
        )?;
        let w: Vec<u32> = r
            .payload
            .chunks_exact(4)
            .map(|c| protocol::rd_u32(c, 0))
            .collect();
        if w.len() < 7 || w.len() < 7 + w[6] as usize {
            return Err(Error::Helper {
                pid: self.pid(),
                op: "getresuid (short reply)",
                errno: Errno::PROTO,
            });
        }
        Ok(HelperIds {
            uid: [w[0], w[1], w[2]],
            gid: [w[3], w[4], w[5]],
            groups: w[7..7 + w[6] as usize].to_vec(),
            caps: CapSets {
                effective: r.rep.v[0],
                permitted: r.rep.v[1],
                inheritable: r.rep.v[2],
            },
        })
    }

    /// Have the helper take on `ids` inside its namespace (`setgroups`, `setresgid`,
    /// `setresuid`, then `PR_SET_DUMPABLE` 1). The inner result is the kernel's answer to the
    /// first call that failed. As `capabilities(7)` describes, moving every uid away from the
    /// namespace's root clears the capability sets; use [`UsernsChild::set_creds`] to keep some.
    pub fn set_ids(&self, ids: &Ids) -> Result<Result<(), Errno>, Error> {
        self.set_creds(Some(ids), None)
    }

    /// Have the helper set its capability sets (`capset(2)`).
    pub fn set_caps(&self, caps: CapSets) -> Result<Result<(), Errno>, Error> {
        self.set_creds(None, Some(caps))
    }

    /// Have the helper change ids and then capability sets in one step: with both given,
    /// `PR_SET_KEEPCAPS` keeps the permitted set across the uid change, and `capset(2)` then
    /// sets all three sets (so `caps` may keep what the helper had).
    pub fn set_creds(
        &self,
        ids: Option<&Ids>,
        caps: Option<CapSets>,
    ) -> Result<Result<(), Errno>, Error> {
        let opts = UnshareOptions {
            ids: ids.cloned(),
            caps,
            new_userns: false,
            dumpable: ids.is_some(),
        };
        let mut payload = [0u8; protocol::OPTS_LEN];
        opts.to_raw()?.encode(&mut payload);
        let r = self.call(
            Req {
                op: protocol::OP_SET_CREDS,
                ..Req::default()
            },
            &payload,
            None,
        )?;
        Ok(Self::answer(&r.rep))
    }
}
