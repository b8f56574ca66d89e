//! `credns explain`: one question about live processes, answered by the model (with its trace)
//! and then by the kernel, asked the same question by a helper process that has entered the
//! asking process's user namespace and taken on its credentials (sys's helper), without side
//! effects on anyone else: `kill` with signal 0, `setns` in the helper.

use credns_model::{Op, Outcome, Verdict, SIGCONT};
use std::os::fd::AsFd;

use credns_sys::{Errno, FullCreds, NsId, Pid, ProcFs, UnshareOptions, UserNsFd, UsernsChild};
use serde::Serialize;

pub use crate::key_question::{explain_key, KeyPerm, KeyQuestion};
use crate::model_world::{build, Built, ASSUMED};
use crate::process::ProcessSnapshot;
pub use crate::question::{MapWrite, PathQuestion, Question};
use crate::scenario_out::{scenario_text, SavedOp};
use crate::Error;

/// The kernel's answer, or why it was not asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum KernelAnswer {
    /// The call succeeded.
    Allowed {
        /// The call made.
        call: String,
    },
    /// The call failed with this errno.
    Denied {
        /// The call made.
        call: String,
        /// Its errno's name.
        errno: String,
    },
    /// The kernel could not be asked as the process.
    NotAsked {
        /// Why.
        reason: String,
    },
}

/// The answer to one question.
#[derive(Debug, Serialize)]
pub struct Explanation {
    /// The question in words.
    pub question: String,
    /// The model's answer and trace.
    pub model: Outcome,
    /// The kernel's answer.
    pub kernel: KernelAnswer,
    /// Whether the two agree (`None` when either could not answer).
    pub agree: Option<bool>,
    /// What the model was told that /proc does not show.
    pub assumed: Vec<String>,
    /// The question as a scenario file (`--save-scenario`), or why it cannot be one.
    #[serde(skip)]
    pub scenario: Result<String, String>,
}

/// The kernel's answer as a scenario's expectation.
pub(crate) fn expectation(k: &KernelAnswer) -> Option<&str> {
    match k {
        KernelAnswer::Allowed { .. } => Some("allowed"),
        KernelAnswer::Denied { errno, .. } => Some(errno),
        KernelAnswer::NotAsked { .. } => None,
    }
}

/// Ask `question` of process `actor`.
pub fn explain(procfs: &ProcFs, actor: u32, question: Question) -> Result<Explanation, Error> {
    let a = ProcessSnapshot::take(procfs, actor)?;
    let t = ProcessSnapshot::take(procfs, question.target())?;
    // A process asking about itself is one task of the model.
    let same = a.pid == t.pid;
    let mut built = if same {
        build(&[&a])?
    } else {
        build(&[&a, &t])?
    };
    let (ta, tt) = (built.tasks[0], built.tasks[usize::from(!same)]);
    let op = match question {
        Question::Kill { signal, .. } => Op::Kill { target: tt, signal },
        Question::Setns { .. } => Op::Setns {
            ns: built.world.task(tt).cred.user_ns,
        },
        Question::Ptrace { .. } => Op::Ptrace { target: tt },
        Question::PtraceRead { fscreds, .. } => Op::PtraceRead {
            target: tt,
            fscreds,
        },
    };
    let model = built.world.clone().op(ta, &op);
    // The kernel is asked with signal 0 (permission only). SIGCONT's same-session exception
    // cannot be checked that way, so the comparison is then with the model's answer for 0.
    let compared = match question {
        Question::Kill { signal, .. } if signal == SIGCONT => {
            built
                .world
                .op(
                    ta,
                    &Op::Kill {
                        target: tt,
                        signal: 0,
                    },
                )
                .result
        }
        _ => model.result.clone(),
    };
    let kernel = ask_kernel(procfs, &a, &t, question, &mut built);
    let agree = agreement(&compared, &kernel);
    let saved = match question {
        // The kernel was asked with signal 0: the saved question is that one.
        Question::Kill { .. } => SavedOp::Kill { signal: 0 },
        Question::Setns { .. } => SavedOp::Setns,
        Question::Ptrace { .. } => SavedOp::Ptrace,
        Question::PtraceRead { fscreds, .. } => SavedOp::PtraceRead { fscreds },
    };
    let text = describe(&a, question);
    let scenario = scenario_text(
        &built,
        None,
        ta,
        Some(tt),
        &saved,
        expectation(&kernel),
        &text,
    )
    .map_err(|e| e.to_string());
    Ok(Explanation {
        question: text,
        model,
        kernel,
        agree,
        assumed: ASSUMED.iter().map(|s| s.to_string()).collect(),
        scenario,
    })
}

/// `pid N (host uid U, euid E, in NS)`.
pub(crate) fn who(a: &ProcessSnapshot) -> String {
    let ns = a
        .userns()
        .map_or("the initial user namespace".into(), |n| n.to_string());
    format!(
        "pid {} (host uid {}, euid {}, in {ns})",
        a.pid, a.status.uid[0], a.status.uid[1]
    )
}

fn describe(a: &ProcessSnapshot, q: Question) -> String {
    let who = who(a);
    match q {
        Question::Kill { target, signal } => {
            format!("may {who} kill pid {target} with signal {signal}?")
        }
        Question::Setns { target } => format!("may {who} enter pid {target}'s user namespace?"),
        Question::Ptrace { target } => format!("may {who} attach to pid {target} with ptrace?"),
        Question::PtraceRead { target, fscreds } => format!(
            "may {who} read pid {target} as ptrace's read mode allows ({})?",
            if fscreds {
                "with its fs ids, as /proc does"
            } else {
                "with its real ids, as kcmp does"
            }
        ),
    }
}

pub(crate) fn agreement(model: &Verdict, kernel: &KernelAnswer) -> Option<bool> {
    match (model, kernel) {
        (Verdict::Unknown(_), _) | (_, KernelAnswer::NotAsked { .. }) => None,
        (Verdict::Allowed, KernelAnswer::Allowed { .. }) => Some(true),
        (Verdict::Denied(e), KernelAnswer::Denied { errno, .. }) => Some(e.name() == errno),
        _ => Some(false),
    }
}

/// The kernel's errno by the name the model gives it (`EPERM`).
pub(crate) fn errno_name(e: Errno) -> String {
    credns_model::Errno::from_code(e.raw_os_error()).map_or_else(
        || format!("errno {}", e.raw_os_error()),
        |m| m.name().to_string(),
    )
}

/// The helper takes on `a`'s credentials inside `a`'s user namespace and makes the call.
fn ask_kernel(
    procfs: &ProcFs,
    a: &ProcessSnapshot,
    t: &ProcessSnapshot,
    q: Question,
    built: &mut Built,
) -> KernelAnswer {
    let not_asked = |reason: String| KernelAnswer::NotAsked { reason };
    let helper = match helper_as(procfs, a, built, None) {
        Ok((h, _)) => h,
        Err(r) => return not_asked(r),
    };
    if let Question::Ptrace { target } = q {
        if target == a.pid {
            return not_asked(
                "the kernel is asked through process_vm_readv, whose check lacks \
                 ptrace_attach's refusal of the caller's own thread group"
                    .into(),
            );
        }
    }
    let (call, r) = match q {
        Question::Ptrace { target } => (
            // PTRACE_MODE_ATTACH_REALCREDS without attaching: nothing is stopped or read.
            format!("process_vm_readv({target}, address 0)"),
            helper.ptrace_access_check(Pid(target as i32)),
        ),
        Question::Kill { target, .. } => (
            format!("kill({target}, 0)"),
            helper.kill(Pid(target as i32), 0),
        ),
        Question::PtraceRead {
            target,
            fscreds: false,
        } => (
            // PTRACE_MODE_READ_REALCREDS; comparing address spaces reads nothing.
            format!("kcmp(self, {target}, KCMP_VM)"),
            helper.kcmp_vm(Pid(target as i32)),
        ),
        Question::PtraceRead {
            target,
            fscreds: true,
        } => {
            // PTRACE_MODE_READ_FSCREDS, as every /proc/PID file that needs it.
            let link = procfs.pid_path(Pid(target as i32)).join("cwd");
            (
                format!("readlink({})", link.display()),
                helper.readlink(&link),
            )
        }
        Question::Setns { target } => {
            let call = format!("setns(pid {target}'s user namespace)");
            match UserNsFd::open(procfs, Pid(t.pid as i32)) {
                Ok(fd) => (call, helper.setns_user(fd.as_fd())),
                Err(e) => return not_asked(format!("pid {target}'s user namespace: {e}")),
            }
        }
    };
    match r {
        Ok(Ok(())) => KernelAnswer::Allowed { call },
        Ok(Err(e)) => KernelAnswer::Denied {
            call,
            errno: errno_name(e),
        },
        Err(e) => not_asked(format!("helper: {e}")),
    }
}

/// A helper process with `a`'s user namespace and credentials, holding `fd` if one is given
/// (passed before it gives up root's). `Err` says why the kernel cannot be asked as `a`.
fn helper_as(
    procfs: &ProcFs,
    a: &ProcessSnapshot,
    built: &Built,
    fd: Option<std::os::fd::BorrowedFd<'_>>,
) -> Result<(UsernsChild, Option<credns_sys::RemoteFd>), String> {
    let creds = helper_creds(a, built)?;
    let helper = UsernsChild::spawn(&UnshareOptions {
        new_userns: false,
        ..UnshareOptions::default()
    })
    .map_err(|e| format!("no helper process: {e}"))?;
    let remote = match fd {
        Some(fd) => Some(helper.install_fd(fd).map_err(|e| format!("helper: {e}"))?),
        None => None,
    };
    if let Some(ns) = a.userns() {
        enter(procfs, &helper, a.pid, ns)?;
    }
    match helper.set_full_creds(&creds) {
        Ok(Ok(())) => Ok((helper, remote)),
        Ok(Err(e)) => Err(format!(
            "the helper could not take pid {}'s credentials: {e}",
            a.pid
        )),
        Err(e) => Err(format!("helper: {e}")),
    }
}

/// Enter `pid`'s user namespace (still `ns`), as root of the scanner's namespace may.
fn enter(procfs: &ProcFs, helper: &UsernsChild, pid: u32, ns: NsId) -> Result<(), String> {
    let fd = UserNsFd::open(procfs, Pid(pid as i32)).map_err(|e| format!("pid {pid}: {e}"))?;
    if fd.id().ok() != Some(ns) {
        return Err(format!("pid {pid} left {ns} while credns read it"));
    }
    match helper.setns_user(fd.as_fd()) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("the helper could not enter {ns}: {e}")),
        Err(e) => Err(format!("helper: {e}")),
    }
}

/// `a`'s credentials in its own namespace's numbering, for the helper.
pub(crate) fn helper_creds(a: &ProcessSnapshot, built: &Built) -> Result<FullCreds, String> {
    let w = &built.world;
    let ns = a.userns().map_or(w.init_ns(), |id| built.namespaces[&id]);
    let s = &a.status;
    let uid = |k: u32| {
        w.from_kuid(ns, credns_idmap::Kuid(k)).ok_or_else(|| {
            format!(
                "pid {}'s uid {k} has no mapping in its own namespace",
                a.pid
            )
        })
    };
    let gid = |k: u32| {
        w.from_kgid(ns, credns_idmap::Kgid(k)).ok_or_else(|| {
            format!(
                "pid {}'s gid {k} has no mapping in its own namespace",
                a.pid
            )
        })
    };
    let setgroups = a.chain.first().is_none_or(|l| l.setgroups_allowed);
    Ok(FullCreds {
        uid: [
            uid(s.uid[0])?,
            uid(s.uid[1])?,
            uid(s.uid[2])?,
            uid(s.uid[3])?,
        ],
        gid: [
            gid(s.gid[0])?,
            gid(s.gid[1])?,
            gid(s.gid[2])?,
            gid(s.gid[3])?,
        ],
        groups: s.groups.iter().map(|&g| gid(g)).collect::<Result<_, _>>()?,
        inheritable: s.cap_inh,
        permitted: s.cap_prm,
        effective: s.cap_eff,
        bounding: s.cap_bnd,
        ambient: s.cap_amb,
        securebits: 0,
        no_new_privs: s.no_new_privs,
        dumpable: true,
        umask: s.umask.unwrap_or(0o022),
        keep_groups: !setgroups,
    })
}

/// Would writing `w.text` as `w.target`'s namespace's uid (gid) map, as process `actor`, be
/// accepted? The model answers with its trace; the kernel is not asked, because a map is
/// written once and the write cannot be undone.
pub fn explain_map_write(procfs: &ProcFs, actor: u32, w: &MapWrite) -> Result<Explanation, Error> {
    let a = ProcessSnapshot::take(procfs, actor)?;
    let t = ProcessSnapshot::take(procfs, w.target)?;
    let same = a.pid == t.pid;
    let mut built = if same {
        build(&[&a])?
    } else {
        build(&[&a, &t])?
    };
    let (ta, tt) = (built.tasks[0], built.tasks[usize::from(!same)]);
    let kind = if w.gid {
        credns_model::MapKind::Gid
    } else {
        credns_model::MapKind::Uid
    };
    let model = built.world.op(
        ta,
        &Op::WriteMap {
            target: tt,
            kind,
            text: w.text.clone(),
        },
    );
    let file = if w.gid { "gid_map" } else { "uid_map" };
    let question = format!("may {} write this to /proc/{}/{file}?", who(&a), w.target);
    let saved = SavedOp::MapWrite {
        gid: w.gid,
        text: w.text.clone(),
    };
    let scenario = scenario_text(&built, None, ta, Some(tt), &saved, None, &question)
        .map_err(|e| e.to_string());
    Ok(Explanation {
        question,
        model,
        kernel: KernelAnswer::NotAsked {
            reason: "a map is written once: asking the kernel would write it".into(),
        },
        agree: None,
        assumed: ASSUMED.iter().map(|s| s.to_string()).collect(),
        scenario,
    })
}

/// May process `actor` do `q` to `path`? The model walks the path as the snapshot shows it;
/// the kernel is asked (`faccessat2`, `open`) from a helper with the process's user namespace
/// and credentials, starting at the process's root (an fd of `/proc/PID/root` passed to the
/// helper), so the walk crosses the process's own mounts. Calls that would change something
/// (create, chmod, chown, exec) are answered by the model alone.
pub fn explain_path(
    procfs: &ProcFs,
    actor: u32,
    path: &str,
    q: PathQuestion,
) -> Result<Explanation, Error> {
    explain_path_observed(procfs, actor, path, q, &mut || {})
}

/// [`explain_path`], running `between` after the path was read and before the kernel is
/// asked. The path is read again after the kernel answered: if anything on it changed
/// meanwhile (an owner, a mode, an ACL, a mount, a component appearing or going), the two
/// answers were not about the same path, and the result is an error saying what changed.
pub fn explain_path_observed(
    procfs: &ProcFs,
    actor: u32,
    path: &str,
    q: PathQuestion,
    between: &mut dyn FnMut(),
) -> Result<Explanation, Error> {
    let a = ProcessSnapshot::take(procfs, actor)?;
    let snap = crate::path::PathSnapshot::take(procfs, actor, path)?;
    let mut built = build(&[&a])?;
    crate::model_world::add_path(&mut built, &snap)?;
    let sysctls = crate::model_world::read_sysctls(&mut built, procfs);
    let ta = built.tasks[0];
    let model = built.world.clone().op(ta, &q.op(path));
    between();
    let kernel = match q.side_effect() {
        Some(why) => KernelAnswer::NotAsked { reason: why.into() },
        None => ask_kernel_path(procfs, &a, &built, path, q),
    };
    let again = crate::path::PathSnapshot::take(procfs, actor, path)?;
    if let Some(what) = snap.first_difference(&again) {
        return Err(Error::Path(
            path.to_string(),
            format!("changed while credns read it ({what}); ask again"),
        ));
    }
    let agree = agreement(&model.result, &kernel);
    let mut assumed: Vec<String> = ASSUMED.iter().map(|s| s.to_string()).collect();
    assumed.extend(crate::model_world::ASSUMED_FS.iter().map(|s| s.to_string()));
    assumed.extend(sysctls);
    let question = format!("may {} {}?", who(&a), q.words(path));
    let saved = SavedOp::Path {
        path: path.to_string(),
        q,
    };
    let scenario = scenario_text(
        &built,
        Some(&snap),
        ta,
        None,
        &saved,
        expectation(&kernel),
        &question,
    )
    .map_err(|e| e.to_string());
    Ok(Explanation {
        question,
        model,
        kernel,
        agree,
        assumed,
        scenario,
    })
}

/// [`explain_path`] with [`PathQuestion::Access`].
pub fn explain_access(
    procfs: &ProcFs,
    actor: u32,
    path: &str,
    mode: u32,
    eaccess: bool,
) -> Result<Explanation, Error> {
    explain_path(procfs, actor, path, PathQuestion::Access { mode, eaccess })
}

fn ask_kernel_path(
    procfs: &ProcFs,
    a: &ProcessSnapshot,
    built: &Built,
    path: &str,
    q: PathQuestion,
) -> KernelAnswer {
    let not_asked = |reason: String| KernelAnswer::NotAsked { reason };
    let root_path = procfs.pid_path(Pid(a.pid as i32)).join("root");
    let root = match std::fs::File::open(&root_path) {
        Ok(f) => f,
        Err(e) => return not_asked(format!("{}: {e}", root_path.display())),
    };
    let (helper, remote) = match helper_as(procfs, a, built, Some(root.as_fd())) {
        Ok((h, Some(r))) => (h, r),
        Ok((_, None)) => unreachable!("a descriptor was given"),
        Err(r) => return not_asked(r),
    };
    let via = format!("/proc/self/fd/{}{path}", remote.0);
    let via = std::path::Path::new(&via);
    let (call, r) = match q {
        PathQuestion::Access { mode, eaccess } => {
            let flag = if eaccess { ", AT_EACCESS" } else { "" };
            (
                format!("faccessat2(pid {}'s root, {path}, {mode}{flag})", a.pid),
                helper.access(via, mode, eaccess),
            )
        }
        PathQuestion::Open { read, write } => {
            use credns_sys::OFlags;
            let (flags, name) = match (read, write) {
                (true, true) => (OFlags::RDWR, "O_RDWR"),
                (false, true) => (OFlags::WRONLY, "O_WRONLY"),
                _ => (OFlags::RDONLY, "O_RDONLY"),
            };
            // Opened and closed at once; without O_TRUNC nothing of the file changes.
            let r = helper.open(via, flags | OFlags::NOCTTY).map(|r| {
                r.map(|fd| {
                    let _ = helper.close(fd);
                })
            });
            (format!("open(pid {}'s root, {path}, {name})", a.pid), r)
        }
        _ => return not_asked("not a question the kernel is asked".into()),
    };
    match r {
        Ok(Ok(())) => KernelAnswer::Allowed { call },
        Ok(Err(e)) => KernelAnswer::Denied {
            call,
            errno: errno_name(e),
        },
        Err(e) => not_asked(format!("helper: {e}")),
    }
}
