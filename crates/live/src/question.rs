//! The questions `credns explain` answers, shared by the explanation and the scenario writer.

use credns_model::Op;

/// What is asked, of process `actor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Question {
    /// `kill(target, signal)`.
    Kill {
        /// The receiving process.
        target: u32,
        /// The signal.
        signal: u32,
    },
    /// `setns(target's user namespace, CLONE_NEWUSER)`.
    Setns {
        /// The process whose user namespace is entered.
        target: u32,
    },
    /// `ptrace(PTRACE_ATTACH, target)` (`PTRACE_MODE_ATTACH_REALCREDS`).
    Ptrace {
        /// The tracee.
        target: u32,
    },
    /// `ptrace_may_access(target, PTRACE_MODE_READ_*)`: what reading its /proc files (with
    /// the fs ids, `PTRACE_MODE_FSCREDS`) or `kcmp(2)` (with the real ids) needs.
    PtraceRead {
        /// The target.
        target: u32,
        /// With the fs ids and effective set rather than the real ids and permitted set.
        fscreds: bool,
    },
}

/// A question whose kernel answer cannot be had without changing something: writing a map
/// into `target`'s user namespace (a map is written once).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapWrite {
    /// The process whose namespace's map would be written.
    pub target: u32,
    /// The gid map (else the uid map).
    pub gid: bool,
    /// The text that would be written.
    pub text: String,
}

impl Question {
    pub(crate) fn target(self) -> u32 {
        match self {
            Question::Kill { target, .. }
            | Question::Setns { target }
            | Question::Ptrace { target }
            | Question::PtraceRead { target, .. } => target,
        }
    }
}

/// A question about a path, asked of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathQuestion {
    /// `faccessat2(path, mode, eaccess ? AT_EACCESS : 0)`: mode is R_OK|W_OK|X_OK (4|2|1) or 0.
    Access {
        /// The mode bits.
        mode: u32,
        /// With the effective ids.
        eaccess: bool,
    },
    /// `open(path, O_RDONLY | O_WRONLY | O_RDWR)` of an existing file, without O_TRUNC.
    Open {
        /// For reading.
        read: bool,
        /// For writing.
        write: bool,
    },
    /// `open(path, O_CREAT|O_EXCL|O_WRONLY, mode)` or `mkdir(path, mode)`.
    Create {
        /// The mode argument.
        mode: u32,
        /// `mkdir`.
        dir: bool,
    },
    /// `chmod(path, mode)`.
    Chmod {
        /// The mode.
        mode: u32,
    },
    /// `chown(path, uid, gid)`, ids in the process's numbering (`None`: -1).
    Chown {
        /// New owner.
        uid: Option<u32>,
        /// New group.
        gid: Option<u32>,
    },
    /// `execve(path)`.
    Exec,
}

impl PathQuestion {
    pub(crate) fn op(self, path: &str) -> Op {
        let path = path.to_string();
        match self {
            PathQuestion::Access { mode, eaccess } => Op::Access {
                path,
                mode,
                eaccess,
            },
            PathQuestion::Open { read, write } => Op::Open { path, read, write },
            PathQuestion::Create { mode, dir } => Op::Create { path, mode, dir },
            PathQuestion::Chmod { mode } => Op::Chmod { path, mode },
            PathQuestion::Chown { uid, gid } => Op::Chown { path, uid, gid },
            PathQuestion::Exec => Op::Exec { path },
        }
    }

    pub(crate) fn words(self, path: &str) -> String {
        match self {
            PathQuestion::Access { mode, eaccess } => {
                let how = if eaccess { " (effective ids)" } else { "" };
                format!("access {path} for {}{how}", mode_text(mode))
            }
            PathQuestion::Open { read, write } => {
                let how = match (read, write) {
                    (true, true) => "reading and writing",
                    (false, true) => "writing",
                    _ => "reading",
                };
                format!("open {path} for {how}")
            }
            PathQuestion::Create { mode, dir: false } => {
                format!("create the file {path} (mode {mode:04o})")
            }
            PathQuestion::Create { mode, dir: true } => {
                format!("make the directory {path} (mode {mode:04o})")
            }
            PathQuestion::Chmod { mode } => format!("chmod {path} to {mode:04o}"),
            PathQuestion::Chown { uid, gid } => {
                let id = |v: Option<u32>| v.map_or("-1".to_string(), |i| i.to_string());
                format!("chown {path} to {}:{}", id(uid), id(gid))
            }
            PathQuestion::Exec => format!("execute {path}"),
        }
    }

    /// Why the kernel is not asked: the call would change the file or run a program.
    pub(crate) fn side_effect(self) -> Option<&'static str> {
        match self {
            PathQuestion::Access { .. } | PathQuestion::Open { .. } => None,
            PathQuestion::Create { .. } => Some("asking the kernel would create it"),
            PathQuestion::Chmod { .. } | PathQuestion::Chown { .. } => {
                Some("asking the kernel would change the file (and its ctime)")
            }
            PathQuestion::Exec => Some("asking the kernel would run the program"),
        }
    }
}

pub(crate) fn mode_text(mode: u32) -> String {
    if mode == 0 {
        return "existence (F_OK)".into();
    }
    [(4, 'r'), (2, 'w'), (1, 'x')]
        .iter()
        .map(|&(b, c)| if mode & b != 0 { c } else { '-' })
        .collect()
}
