//! `credns audit`: every live user namespace, the host's id files and the registry, checked
//! for ids shared without coordination (crates/live).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use credns_live::{audit, HostSnapshot, Report};
use credns_sys::ProcFs;

use crate::output::{escape, snake_json};
use crate::registry_cmd::Where;

/// Check the live host: user namespaces sharing host ids, host users' ids mapped into
/// namespaces, ids outside the registry, overlapping /etc/subuid and /etc/subgid entries,
/// stale leases. Exit 0 clean, 1 findings, 2 error.
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub at: Where,
    /// Where passwd, group, subuid, subgid and nsswitch.conf are read. Users of NSS sources
    /// beyond the files (userdb services) are added only for the host's own /etc.
    #[arg(long, value_name = "DIR", default_value = "/etc")]
    pub etc: PathBuf,
    /// Audit without the registry (every namespace's ids then read as unregistered).
    #[arg(long)]
    pub no_registry: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: AuditArgs) -> Result<ExitCode> {
    let allocations = if a.no_registry {
        Vec::new()
    } else {
        let (mut c, _) =
            a.at.connect()
                .context("reaching the registry (--no-registry audits without it)")?;
        c.list().context("listing the registry's allocations")?
    };
    let snap = HostSnapshot::take(&ProcFs::new(), &a.etc, &mut progress())?;
    let report = audit(&snap, &allocations);
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&snake_json(serde_json::to_value(&report)?))?
        );
    } else {
        print_text(&report, a.no_registry);
    }
    Ok(if report.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A progress line on stderr once the look at namespaces has taken a second, if stderr is a
/// terminal.
fn progress() -> impl FnMut(usize, usize) {
    let start = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut shown = false;
    move |done, total| {
        if !tty || start.elapsed() < Duration::from_secs(1) {
            return;
        }
        if done == total {
            if shown {
                eprint!("\r\x1b[K");
            }
            return;
        }
        if done % 64 == 0 {
            shown = true;
            eprint!("\rcredns audit: user namespaces {done}/{total}");
        }
    }
}

fn print_text(r: &Report, no_registry: bool) {
    println!("user namespaces: {}", r.namespaces.len());
    for n in &r.namespaces {
        let owner = n.owner.map_or("?".into(), |o| o.to_string());
        let allocs = if n.allocations.is_empty() {
            "-".to_string()
        } else {
            n.allocations
                .iter()
                .map(|a| format!("#{a}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        println!(
            "  user:[{}] depth {} owner {owner} pids {} uid_map [{}] gid_map [{}] allocation {allocs}",
            n.ino,
            n.depth,
            n.pids.len(),
            n.uid_map,
            n.gid_map
        );
    }
    let registry = if no_registry {
        "not read".to_string()
    } else {
        format!("{} allocations", r.allocations)
    };
    println!(
        "host: {} users, {} groups; /etc/subuid {} entries, /etc/subgid {} entries; registry: {registry}",
        r.users, r.groups, r.subuid_entries, r.subgid_entries
    );
    let u = &r.unseen;
    println!(
        "not seen into: {} namespaces held only by nsfs fds, {} only by bind mounts, {} idmapped \
         mounts, {} unreadable processes",
        u.fd_held.len(),
        u.bind_mounted.len(),
        u.idmapped_mounts,
        u.unreadable_processes
    );
    for w in &r.warnings {
        println!("warning: {}", escape(w));
    }
    println!("findings: {}", r.findings.len());
    for f in &r.findings {
        println!("  {} {}: {}", f.severity, f.kind.name(), escape(&f.message));
    }
}
