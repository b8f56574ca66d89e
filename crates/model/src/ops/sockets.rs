//! Credentials over `AF_UNIX` sockets: `SO_PEERCRED` recorded when a connection is made (a
//! later change of the peer's ids does not change it) and `SCM_CREDENTIALS` checked at the
//! sender (`scm_check_creds`) and shown in the receiver's namespace (`scm_recv`).

use credns_idmap::{Errno, Kgid, Kuid};

use crate::caps::Cap;
use crate::outcome::Tracer;
use crate::world::{Cred, TaskRef, World};

use super::{out, OpResult};

/// A connected pair made by `connect`: the caller holds one end, the target (which made the
/// pair) the other; both ends' peer credentials are the target's at that time.
#[derive(Clone, Debug)]
pub(crate) struct Connection {
    /// The scenario's name for it.
    pub(crate) name: String,
    /// The process that asked for it (holds one end).
    pub(crate) holder: TaskRef,
    /// The process that made the pair (holds the other end).
    pub(crate) maker: TaskRef,
    /// The maker's credentials when the pair was made (`sk_peer_cred` of both ends).
    pub(crate) peer_cred: Cred,
}

impl World {
    fn connection(&self, t: &mut Tracer, name: &str) -> Result<usize, crate::vfs::Stop> {
        match self.connections.iter().position(|c| c.name == name) {
            Some(i) => Ok(i),
            None => {
                tr!(t.fail(
                    "connect",
                    format!(
                        "no connection called \"{name}\" (the connect that was to make it failed)"
                    ),
                    vec![]
                ));
                Err(crate::vfs::Stop::unknown(format!(
                    "no connection called \"{name}\""
                )))
            }
        }
    }

    /// `connect`: the target makes a connected pair (`socketpair`: `init_peercred` records its
    /// credentials in both ends) and passes one end to the caller.
    pub(super) fn op_connect(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        target: TaskRef,
        name: &str,
    ) -> OpResult {
        let c = self.task(target).cred.clone();
        tr!(t.info(
            "init_peercred",
            format!(
                "both ends record the credentials of \"{}\" now",
                self.task(target).name
            ),
            vec![
                ("euid", c.euid.0.to_string()),
                ("egid", c.egid.0.to_string())
            ],
        ));
        self.connections.push(Connection {
            name: name.to_owned(),
            holder: task,
            maker: target,
            peer_cred: c,
        });
        Ok(None)
    }

    /// `getsockopt(SO_PEERCRED)` on the caller's end of a connection: the recorded
    /// credentials, shown in the reader's namespace now.
    pub(super) fn op_peercred_of(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        socket: &str,
    ) -> OpResult {
        let i = self.connection(t, socket)?;
        let conn = self.connections[i].clone();
        let view = self.task(task).cred.user_ns;
        let (uid, gid) = (
            self.from_kuid_munged(view, conn.peer_cred.euid),
            self.from_kgid_munged(view, conn.peer_cred.egid),
        );
        tr!(t.info(
            "cred_to_ucred",
            format!(
                "sk_peer_cred as recorded when \"{socket}\" was made, shown in \"{}\"",
                self.ns(view).name
            ),
            vec![
                ("peer_euid", conn.peer_cred.euid.0.to_string()),
                ("uid", uid.to_string()),
                ("gid", gid.to_string())
            ],
        ));
        Ok(Some(out(vec![
            ("uid", uid.to_string()),
            ("gid", gid.to_string()),
        ])))
    }

    /// `sendmsg` with `SCM_CREDENTIALS {pid, uid, gid}` on the caller's end (the pid its own,
    /// or with `other_pid` the receiver's), received by the process at the other end with
    /// `SO_PASSCRED`: yields the ids it sees.
    pub(super) fn op_send_creds(
        &mut self,
        t: &mut Tracer,
        task: TaskRef,
        socket: &str,
        (uid, gid): (u32, u32),
        other_pid: bool,
    ) -> OpResult {
        let i = self.connection(t, socket)?;
        let conn = self.connections[i].clone();
        let receiver = if conn.holder == task {
            conn.maker
        } else {
            conn.holder
        };
        let c = self.task(task).cred.clone();
        // The receiver's pid is the sender's own when it holds both ends.
        let other_pid = other_pid && receiver != task;
        let (ku, kg) = self.scm_check_creds(t, &c, uid, gid, other_pid)?;
        let view = self.task(receiver).cred.user_ns;
        let (ru, rg) = (
            self.from_kuid_munged(view, ku),
            self.from_kgid_munged(view, kg),
        );
        tr!(t.info(
            "scm_recv",
            format!(
                "the receiver \"{}\" sees the kernel ids through its namespace \"{}\"",
                self.task(receiver).name,
                self.ns(view).name
            ),
            vec![
                ("kuid", ku.0.to_string()),
                ("kgid", kg.0.to_string()),
                ("uid", ru.to_string()),
                ("gid", rg.to_string())
            ],
        ));
        Ok(Some(out(vec![
            ("uid", ru.to_string()),
            ("gid", rg.to_string()),
        ])))
    }

    /// `scm_check_creds`: the ids valid in the sender's namespace (EINVAL); the pid its own or
    /// CAP_SYS_ADMIN over the pid namespace's owner, and each id one of its real, effective or
    /// saved ids or CAP_SETUID/CAP_SETGID in its namespace (EPERM).
    fn scm_check_creds(
        &self,
        t: &mut Tracer,
        c: &Cred,
        uid: u32,
        gid: u32,
        other_pid: bool,
    ) -> Result<(Kuid, Kgid), crate::vfs::Stop> {
        let f = "scm_check_creds";
        let (ku, kg) = (
            self.make_kuid(c.user_ns, uid),
            self.make_kgid(c.user_ns, gid),
        );
        if !tr!(t.check(
            ku.is_valid() && kg.is_valid(),
            f,
            "the claimed uid and gid must be mapped in the sender's namespace",
            vec![("uid", uid.to_string()), ("gid", gid.to_string())],
        )) {
            return Err(Errno::EINVAL.into());
        }
        if other_pid {
            let init = self.init_ns();
            tr!(t.info(
                f,
                "the claimed pid is not the sender's: CAP_SYS_ADMIN over its pid namespace's owner (the initial namespace) is needed",
                vec![],
            ));
            if !t.nested(|t| self.ns_capable(t, c, init, Cap::SYS_ADMIN)) {
                return Err(Errno::EPERM.into());
            }
        } else {
            tr!(t.pass(f, "the claimed pid is the sender's own", vec![]));
        }
        let own_u = ku == c.uid || ku == c.euid || ku == c.suid;
        tr!(t.check(
            own_u,
            f,
            "the claimed uid is the sender's real, effective or saved uid",
            vec![("kuid", ku.0.to_string())]
        ));
        if !own_u && !t.nested(|t| self.ns_capable(t, c, c.user_ns, Cap::SETUID)) {
            return Err(Errno::EPERM.into());
        }
        let own_g = kg == c.gid || kg == c.egid || kg == c.sgid;
        tr!(t.check(
            own_g,
            f,
            "the claimed gid is the sender's real, effective or saved gid",
            vec![("kgid", kg.0.to_string())]
        ));
        if !own_g && !t.nested(|t| self.ns_capable(t, c, c.user_ns, Cap::SETGID)) {
            return Err(Errno::EPERM.into());
        }
        Ok((ku, kg))
    }
}
