//! `credns explain PID OP ...`: the model's answer to a question about live processes, with
//! its trace, and the kernel's answer to the same question asked as that process.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use credns_live::explain::{explain, Explanation, KernelAnswer, Question};
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

pub fn run(a: ExplainArgs) -> Result<ExitCode> {
    let q = match &a.op {
        ExplainOp::Kill { pid2, signal } => Question::Kill {
            target: *pid2,
            signal: parse_signal(signal)?,
        },
        ExplainOp::Setns { pid2 } => Question::Setns { target: *pid2 },
    };
    let e = explain(&ProcFs::new(), a.pid, q)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&snake_json(serde_json::to_value(&e)?))?
        );
    } else {
        print_text(&e);
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
