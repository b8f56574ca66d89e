//! `credns explain PID OP ...`: the model's answer to a question about live processes, with
//! its trace, and the kernel's answer to the same question asked as that process.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use clap::{Args, Subcommand};

use credns_live::explain::{
    explain, explain_access, explain_key, explain_map_write, explain_path, Explanation,
    KernelAnswer, KeyPerm, KeyQuestion, MapWrite, PathQuestion, Question,
};
use credns_sys::ProcFs;

use crate::output::snake_json;

/// Explain why the kernel lets a process do something to another, or not: the model's
/// verdict and every rule it applied, then the kernel asked the same question as that
/// process (from a helper that takes on its user namespace and credentials; no side effects).
/// Exit 0 when they agree (or the kernel could not be asked), 1 when they disagree, 2 error.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The process that would act.
    pub pid: u32,
    #[command(subcommand)]
    pub op: ExplainOp,
    /// Print the answer as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// Also write what was read as a scenario file asking the same question, with the kernel's
    /// answer as its expectation (`credns sim FILE` replays it).
    #[arg(long, global = true, value_name = "FILE")]
    pub save_scenario: Option<std::path::PathBuf>,
}

/// What the process would do.
#[derive(Debug, Subcommand)]
pub enum ExplainOp {
    /// kill(PID2, SIG): may it signal PID2? (the kernel is asked with signal 0)
    Kill {
        /// The process to signal.
        pid2: u32,
        /// A signal number or name (TERM, SIGKILL, ...); default TERM.
        #[arg(default_value = "TERM")]
        signal: String,
    },
    /// setns(PID2's user namespace): may it enter it?
    Setns {
        /// The process whose user namespace it would enter.
        pid2: u32,
    },
    /// ptrace(PTRACE_ATTACH, PID2): may it trace PID2? (the kernel is asked with
    /// process_vm_readv, which makes the same check and stops or reads nothing). With
    /// `--mode read`: may it read PID2 as ptrace's read mode allows (/proc/PID2's files with
    /// --fscreds, asked with readlink of /proc/PID2/cwd; kcmp without, asked with kcmp)?
    Ptrace {
        /// The process it would attach to (or read).
        pid2: u32,
        /// attach (PTRACE_MODE_ATTACH) or read (PTRACE_MODE_READ).
        #[arg(long, default_value = "attach", value_name = "attach|read")]
        mode: String,
        /// Read mode with the fs ids and effective set (PTRACE_MODE_FSCREDS, as /proc checks)
        /// rather than the real ids (PTRACE_MODE_REALCREDS).
        #[arg(long)]
        fscreds: bool,
    },
    /// access(PATH, MODE) as the process: may it read/write/execute PATH (as it names it, in its
    /// mount namespace and root)? Components, modes, ACLs and idmapped mounts are read; the
    /// kernel is asked with faccessat2 from the process's root.
    Access {
        /// An absolute path as the process sees it.
        path: String,
        /// What to check: any of r, w, x, or f for existence only.
        #[arg(long = "access", default_value = "r", value_name = "rwx")]
        access: String,
        /// Check with the effective ids (AT_EACCESS) rather than the real ones.
        #[arg(long)]
        eaccess: bool,
    },
    /// open(PATH) of an existing file for reading or writing (no O_TRUNC): asked of the kernel
    /// too (opened and closed at once).
    Open {
        /// An absolute path as the process sees it.
        path: String,
        /// r, w or rw.
        #[arg(long = "access", default_value = "r", value_name = "r|w|rw")]
        access: String,
    },
    /// open(PATH, O_CREAT|O_EXCL) (or mkdir with --dir): the model answers alone (asking the
    /// kernel would create it).
    Create {
        /// An absolute path as the process sees it.
        path: String,
        /// The mode argument, octal (default 0666, 0777 with --dir).
        #[arg(long)]
        mode: Option<String>,
        /// mkdir(2).
        #[arg(long)]
        dir: bool,
    },
    /// chmod(PATH, MODE): the model answers alone.
    Chmod {
        /// An absolute path as the process sees it.
        path: String,
        /// Octal mode.
        mode: String,
    },
    /// chown(PATH, UID:GID), ids as the process numbers them (-1: unchanged): the model answers
    /// alone.
    Chown {
        /// An absolute path as the process sees it.
        path: String,
        /// UID:GID (either may be -1 or empty).
        #[arg(allow_hyphen_values = true)]
        owner: String,
    },
    /// execve(PATH): the model answers alone (asking the kernel would run it).
    Exec {
        /// An absolute path as the process sees it.
        path: String,
    },
    /// May it view, read, write, search, link or setattr key KEY? The key's owner, group and
    /// mask are read with KEYCTL_DESCRIBE; whether the process possesses it cannot be seen
    /// from outside, so it is taken as not possessed unless --possessed says so. The kernel is
    /// asked (view, read, search, link) by a helper with the process's ids in its namespace.
    Key {
        /// The key's serial (decimal, or hex with 0x).
        key: String,
        /// view, read, write, search, link or setattr.
        #[arg(long, value_name = "PERM")]
        perm: String,
        /// The process reaches the key from its thread, process or session keyring.
        #[arg(long)]
        possessed: bool,
    },
    /// Would writing FILE as PID2's namespace's uid_map (gid_map with --gid) be accepted?
    /// The model answers; the kernel is not asked, as a map is written only once.
    MapWrite {
        /// The process whose namespace's map would be written.
        pid2: u32,
        /// The map text, in /proc/PID/uid_map's write format ("-" reads standard input).
        file: std::path::PathBuf,
        /// The gid map.
        #[arg(long)]
        gid: bool,
    },
}

const SIGNALS: &[(&str, u32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("WINCH", 28),
];

fn parse_signal(s: &str) -> Result<u32> {
    if let Ok(n) = s.parse::<u32>() {
        if n > 64 {
            bail!("signal {n}: signals are 0 to 64");
        }
        return Ok(n);
    }
    let name = s.strip_prefix("SIG").unwrap_or(s).to_ascii_uppercase();
    match SIGNALS.iter().find(|(n, _)| *n == name) {
        Some((_, n)) => Ok(*n),
        None => bail!("signal {s:?}: not a signal number or a known name (TERM, KILL, HUP, ...)"),
    }
}

/// A key serial: decimal or 0x hex, positive.
fn parse_serial(s: &str) -> Result<i32> {
    let n = match s.strip_prefix("0x") {
        Some(h) => i32::from_str_radix(h, 16),
        None => s.parse::<i32>(),
    };
    match n {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("key {s:?}: not a key serial (a positive number, decimal or 0x hex)"),
    }
}

/// An octal mode up to 07777.
fn parse_mode(s: &str) -> Result<u32> {
    match u32::from_str_radix(s.trim_start_matches("0o"), 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        _ => bail!("mode {s:?}: not an octal mode from 0 to 7777"),
    }
}

/// `UID:GID`, either part -1 or empty for "unchanged".
fn parse_owner(s: &str) -> Result<(Option<u32>, Option<u32>)> {
    let Some((u, g)) = s.split_once(':') else {
        bail!("owner {s:?}: give UID:GID (either may be -1)");
    };
    let id = |t: &str| -> Result<Option<u32>> {
        match t {
            "" | "-1" => Ok(None),
            t => match t.parse::<u32>() {
                Ok(v) if v != u32::MAX => Ok(Some(v)),
                _ => bail!("owner {s:?}: {t:?} is not an id"),
            },
        }
    };
    Ok((id(u)?, id(g)?))
}

/// `rwx` letters (or `f`) as access(2)'s mode bits.
fn parse_access(s: &str) -> Result<u32> {
    if s == "f" {
        return Ok(0);
    }
    let mut mode = 0;
    for c in s.chars() {
        mode |= match c {
            'r' => 4,
            'w' => 2,
            'x' => 1,
            c => bail!("--access {s:?}: {c:?} is not one of r, w, x (or f alone)"),
        };
    }
    if mode == 0 {
        bail!("--access is empty: give r, w, x or f");
    }
    Ok(mode)
}

pub fn run(a: ExplainArgs) -> Result<ExitCode> {
    let procfs = ProcFs::new();
    let q = match &a.op {
        ExplainOp::Kill { pid2, signal } => Question::Kill {
            target: *pid2,
            signal: parse_signal(signal)?,
        },
        ExplainOp::Setns { pid2 } => Question::Setns { target: *pid2 },
        ExplainOp::Ptrace {
            pid2,
            mode,
            fscreds,
        } => match (mode.as_str(), fscreds) {
            ("attach", false) => Question::Ptrace { target: *pid2 },
            ("attach", true) => bail!("--fscreds: attach checks the real ids; use --mode read"),
            ("read", _) => Question::PtraceRead {
                target: *pid2,
                fscreds: *fscreds,
            },
            (m, _) => bail!("--mode {m:?}: give attach or read"),
        },
        ExplainOp::Access {
            path,
            access,
            eaccess,
        } => {
            let mode = parse_access(access)?;
            return finish(&explain_access(&procfs, a.pid, path, mode, *eaccess)?, &a);
        }
        ExplainOp::Open { path, access } => {
            let (read, write) = match access.as_str() {
                "r" => (true, false),
                "w" => (false, true),
                "rw" => (true, true),
                other => bail!("--access {other:?}: give r, w or rw"),
            };
            let q = PathQuestion::Open { read, write };
            return finish(&explain_path(&procfs, a.pid, path, q)?, &a);
        }
        ExplainOp::Create { path, mode, dir } => {
            let default = if *dir { "0777" } else { "0666" };
            let mode = parse_mode(mode.as_deref().unwrap_or(default))?;
            let q = PathQuestion::Create { mode, dir: *dir };
            return finish(&explain_path(&procfs, a.pid, path, q)?, &a);
        }
        ExplainOp::Chmod { path, mode } => {
            let q = PathQuestion::Chmod {
                mode: parse_mode(mode)?,
            };
            return finish(&explain_path(&procfs, a.pid, path, q)?, &a);
        }
        ExplainOp::Chown { path, owner } => {
            let (uid, gid) = parse_owner(owner)?;
            let q = PathQuestion::Chown { uid, gid };
            return finish(&explain_path(&procfs, a.pid, path, q)?, &a);
        }
        ExplainOp::Exec { path } => {
            return finish(&explain_path(&procfs, a.pid, path, PathQuestion::Exec)?, &a);
        }
        ExplainOp::Key {
            key,
            perm,
            possessed,
        } => {
            let Some(perm) = KeyPerm::parse(perm) else {
                bail!("--perm {perm:?}: give view, read, write, search, link or setattr");
            };
            let q = KeyQuestion {
                key: parse_serial(key)?,
                perm,
                possessed: *possessed,
            };
            return finish(&explain_key(&procfs, a.pid, q)?, &a);
        }
        ExplainOp::MapWrite { pid2, file, gid } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading the map from stdin")?
            } else {
                std::fs::read_to_string(file).with_context(|| format!("{}", file.display()))?
            };
            let w = MapWrite {
                target: *pid2,
                gid: *gid,
                text,
            };
            return finish(&explain_map_write(&procfs, a.pid, &w)?, &a);
        }
    };
    finish(&explain(&procfs, a.pid, q)?, &a)
}

/// Save the scenario if asked, then print.
fn finish(e: &Explanation, a: &ExplainArgs) -> Result<ExitCode> {
    if let Some(path) = &a.save_scenario {
        let text = e
            .scenario
            .as_ref()
            .map_err(|why| anyhow::anyhow!("--save-scenario {}: {why}", path.display()))?;
        std::fs::write(path, text)
            .with_context(|| format!("--save-scenario {}", path.display()))?;
    }
    print(e, a.json)
}

fn print(e: &Explanation, json: bool) -> Result<ExitCode> {
    let a_json = json;
    if a_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&snake_json(serde_json::to_value(e)?))?
        );
    } else {
        print_text(e);
    }
    Ok(match e.agree {
        Some(false) => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}

fn print_text(e: &Explanation) {
    println!("{}", e.question);
    println!("model {}", e.model);
    match &e.kernel {
        KernelAnswer::Allowed { call } => println!("kernel => allowed ({call})"),
        KernelAnswer::Denied { call, errno } => println!("kernel => denied: {errno} ({call})"),
        KernelAnswer::NotAsked { reason } => println!("kernel => not asked: {reason}"),
    }
    println!(
        "{}",
        match e.agree {
            Some(true) => "model and kernel agree",
            Some(false) => "MODEL AND KERNEL DISAGREE",
            None => "model and kernel not compared",
        }
    );
    for a in &e.assumed {
        println!("assumed: {a}");
    }
}
