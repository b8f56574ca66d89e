//! The executor's side of the capability and fs-id operations: `setfsuid`, `setfsgid`,
//! `capset` and the capability `prctl`s, made by the acting process's helper, each followed
//! by the helper's own `/proc/PID/status` so the resulting ids and sets are compared too.

use credns_model::{CapPrctlOption, Op};
use std::collections::BTreeMap;

use credns_sys::{Errno, OFlags, Pid, ProcFs, RemoteFd, UserNsFd, UsernsChild};

use crate::kernel::{status_values, Fixture};

/// The `prctl(2)` options (include/uapi/linux/prctl.h).
const PR_SET_KEEPCAPS: i32 = 8;
const PR_CAPBSET_DROP: i32 = 24;
const PR_GET_SECUREBITS: i32 = 27;
const PR_SET_SECUREBITS: i32 = 28;
const PR_CAP_AMBIENT: i32 = 47;
/// `PR_CAP_AMBIENT`'s sub-operations.
const PR_CAP_AMBIENT_RAISE: u64 = 2;
const PR_CAP_AMBIENT_LOWER: u64 = 3;
const PR_CAP_AMBIENT_CLEAR_ALL: u64 = 4;

/// Perform one of the operations as `h`: `Ok(Ok(values))`, `Ok(Err(errno))`, or `Err` when
/// the helper itself failed.
pub fn perform(h: &UsernsChild, op: &Op) -> Result<Result<Vec<(String, String)>, Errno>, String> {
    let e = |x: credns_sys::Error| x.to_string();
    let mut v: Vec<(String, String)> = Vec::new();
    let keys: &[&str] = match op {
        Op::Setfsuid { uid } => {
            v.push(("old".into(), h.setfsuid(*uid).map_err(e)?.to_string()));
            &["fsuid", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]
        }
        Op::Setfsgid { gid } => {
            v.push(("old".into(), h.setfsgid(*gid).map_err(e)?.to_string()));
            &["fsgid"]
        }
        Op::Capset {
            effective,
            permitted,
            inheritable,
        } => {
            let r = h.capset(effective.bits(), permitted.bits(), inheritable.bits());
            if let Err(x) = r.map_err(e)? {
                return Ok(Err(x));
            }
            &["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]
        }
        Op::CapPrctl { option, arg } => {
            let a = *arg as u64;
            let (opt, a2, a3) = match option {
                CapPrctlOption::SetSecurebits => (PR_SET_SECUREBITS, a, 0),
                CapPrctlOption::SetKeepcaps => (PR_SET_KEEPCAPS, a, 0),
                CapPrctlOption::CapbsetDrop => (PR_CAPBSET_DROP, a, 0),
                CapPrctlOption::AmbientRaise => (PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, a),
                CapPrctlOption::AmbientLower => (PR_CAP_AMBIENT, PR_CAP_AMBIENT_LOWER, a),
                CapPrctlOption::AmbientClearAll => (PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0),
            };
            if let Err(x) = h.prctl(opt, a2, a3).map_err(e)? {
                return Ok(Err(x));
            }
            let bits = h
                .prctl(PR_GET_SECUREBITS, 0, 0)
                .map_err(e)?
                .map_err(|x| format!("PR_GET_SECUREBITS: {x}"))?;
            v.push(("securebits".into(), bits.to_string()));
            &["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]
        }
        _ => return Err(format!("not a capability operation: {op}")),
    };
    let p = ProcFs::new().pid_path(h.pid()).join("status");
    let text = h
        .read_file(&p)
        .map_err(e)?
        .map_err(|x| format!("read {}: {x}", p.display()))?;
    v.extend(
        status_values(&String::from_utf8_lossy(&text), true)
            .into_iter()
            .filter(|(k, _)| keys.contains(&k.as_str())),
    );
    Ok(Ok(v))
}

/// `ptrace` in read mode and `open_proc`, as `h` on process `pid`: with the real ids
/// `kcmp(KCMP_VM)` (only `ptrace_may_access(PTRACE_MODE_READ_REALCREDS)` refuses it), with the
/// fs ids `readlink(/proc/PID/cwd)` (only `proc_fd_access_allowed`, READ_FSCREDS, refuses
/// it), and `open_proc` the open of the file itself.
pub fn perform_proc(
    h: &UsernsChild,
    pid: Pid,
    op: &Op,
) -> Result<Result<Vec<(String, String)>, Errno>, String> {
    let e = |x: credns_sys::Error| x.to_string();
    let file = match op {
        Op::PtraceRead { fscreds: false, .. } => {
            return Ok(h.kcmp_vm(pid).map_err(e)?.map(|()| Vec::new()));
        }
        Op::PtraceRead { fscreds: true, .. } => {
            let p = ProcFs::new().pid_path(pid).join("cwd");
            return Ok(h.readlink(&p).map_err(e)?.map(|()| Vec::new()));
        }
        Op::ReadlinkProcFd { fd, .. } => {
            let p = ProcFs::new().pid_path(pid).join(format!("fd/{fd}"));
            return Ok(h.readlink(&p).map_err(e)?.map(|()| Vec::new()));
        }
        Op::OpenProc { file, .. } => *file,
        _ => return Err(format!("not a /proc access operation: {op}")),
    };
    let p = ProcFs::new().pid_path(pid).join(file.name());
    match h.open(&p, OFlags::RDONLY | OFlags::CLOEXEC).map_err(e)? {
        Ok(fd) => {
            h.close(fd).map_err(e)?.map_err(|x| format!("close: {x}"))?;
            Ok(Ok(Vec::new()))
        }
        Err(x) => Ok(Err(x)),
    }
}

/// The re-exec helper program, built with this package (`src/bin/credns-reexec-helper.rs`)
/// beside the test binaries' `deps` directory, copied (once per fixture) to the fixture's
/// tmpfs: processes of user namespaces must be able to reach and exec it, which they may not
/// where the build lives (a 0700 home directory, say).
pub fn reexec_program(fx: &Fixture) -> Result<std::path::PathBuf, String> {
    let dest = fx.tmpfs.join("credns-reexec-helper");
    if dest.is_file() {
        return Ok(dest);
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let dir = exe
        .parent()
        .and_then(|d| {
            if d.ends_with("deps") {
                d.parent()
            } else {
                Some(d)
            }
        })
        .ok_or_else(|| format!("no directory above {}", exe.display()))?;
    let built = dir.join("credns-reexec-helper");
    std::fs::copy(&built, &dest).map_err(|e| {
        format!(
            "copying {} (cargo builds it with this package's tests): {e}",
            built.display()
        )
    })?;
    std::fs::set_permissions(&dest, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", dest.display()))?;
    Ok(dest)
}

/// Give helper `h` (forked from a keeper of namespace A, so in A) an `mm` of A: unless A is
/// the initial namespace (the test program's own `mm`), it execs `program`
/// ([`reexec_program`]); then,
/// if its credentials belong to another namespace `into`, it enters it (`setns`, which needs
/// CAP_SYS_ADMIN over it: `into` below A). `Ok(Err(why))`: not realisable.
pub fn reexec_in(
    h: &UsernsChild,
    program: Option<&std::path::Path>,
    into: Option<&str>,
    fd: Option<&UserNsFd>,
) -> Result<Result<(), String>, String> {
    let e = |x: credns_sys::Error| x.to_string();
    if let Some(p) = program {
        h.reexec(p)
            .map_err(e)?
            .map_err(|x| format!("re-exec: {x}"))?;
    }
    let Some(name) = into else {
        return Ok(Ok(()));
    };
    let Some(fd) = fd else {
        return Ok(Err(format!("namespace {name} not realised")));
    };
    Ok(h.setns_user(std::os::fd::AsFd::as_fd(fd))
        .map_err(e)?
        .map_err(|x| format!("setns into {name} after the exec: {x} (not below its mm->user_ns)")))
}

/// One end of a connection: the model process index and the fd in its helper.
pub type End = (usize, RemoteFd);
/// Connections made by `connect` ops: name → (the caller's end, the target's end).
pub type Connections = BTreeMap<String, (End, End)>;
/// An operation's values, or the errno the kernel refused it with.
pub type Answer = Result<Vec<(String, String)>, Errno>;

/// `connect`, `peercred` of a connection and `send_creds` as process `by`. `Ok(None)`: an end
/// belongs to a process that exec'd (its helper is not that program).
pub fn perform_socket(
    procs: &BTreeMap<usize, UsernsChild>,
    conns: &mut Connections,
    execd: &[usize],
    by: usize,
    op: &Op,
) -> Result<Option<Answer>, String> {
    let e = |x: credns_sys::Error| x.to_string();
    let h = &procs[&by];
    let ends = |name: &str| -> Result<(End, End), String> {
        let (a, b) = conns
            .get(name)
            .copied()
            .ok_or_else(|| format!("connection {name} not made"))?;
        Ok(if a.0 == by { (a, b) } else { (b, a) })
    };
    let ids = |u: u32, g: u32| {
        vec![
            ("uid".to_string(), u.to_string()),
            ("gid".to_string(), g.to_string()),
        ]
    };
    Ok(Some(match op {
        Op::Connect { target, name } => {
            if execd.contains(&target.index()) {
                return Ok(None);
            }
            // The target makes the pair now (both ends record its credentials) and the caller
            // gets one end.
            let t = &procs[&target.index()];
            let (a, b) = t.socketpair().map_err(e)?;
            let passed = t.fetch_fd(b).map_err(e)?;
            let mine = h.install_fd(std::os::fd::AsFd::as_fd(&passed)).map_err(e)?;
            t.close(b).map_err(e)?.map_err(|x| format!("close: {x}"))?;
            conns.insert(name.clone(), ((by, mine), (target.index(), a)));
            Ok(Vec::new())
        }
        Op::PeerCredOf { socket } => {
            let ((_, mine), _) = ends(socket)?;
            h.peercred(mine).map_err(e)?.map(|(_, u, g)| ids(u, g))
        }
        Op::SendCreds {
            socket,
            uid,
            gid,
            other_pid,
        } => {
            let ((_, mine), (other, theirs)) = ends(socket)?;
            if execd.contains(&other) {
                return Ok(None);
            }
            let r = &procs[&other];
            r.set_passcred(theirs)
                .map_err(e)?
                .map_err(|x| format!("SO_PASSCRED: {x}"))?;
            let pid = other_pid.then(|| r.pid());
            match h.send_creds(mine, pid, *uid, *gid).map_err(e)? {
                Err(x) => Err(x),
                Ok(()) => {
                    let (_, u, g) = r
                        .recv_creds(theirs)
                        .map_err(e)?
                        .map_err(|x| format!("receiving the credentials: {x}"))?;
                    Ok(ids(u, g))
                }
            }
        }
        _ => return Err(format!("not a socket operation: {op}")),
    }))
}
