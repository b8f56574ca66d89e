//! The registry commands: `credns serve` (the daemon) and `alloc`, `release`, `list`, `show`,
//! `who`, which reach the registry through [`credns_service::connect`]: the daemon when its
//! socket answers, otherwise (root) the store opened for each call. The same methods answer
//! either way, so the output is the same.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use credns_registry::Policy;
use credns_service::{
    AllocOptions, AllocationInfo, Endpoint, HolderInfo, RegistryClient, Route, Target,
    DEFAULT_SOCKET, DEFAULT_STORE,
};
use credns_sys::pidfd::PidFd;
use credns_sys::{Pid, ProcFs, UserNsFd};

use crate::output::{escape, snake_json};

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Run the registry daemon (varlink interface io.credns.Registry on a Unix socket).
    ///
    /// Started by hand it binds --socket itself and logs to stderr. Under systemd
    /// (credns.socket and credns.service) it serves the socket systemd passes (socket
    /// activation: the daemon starts on the first connection), says READY=1 and its status,
    /// pings the watchdog, and logs one line per call (uid, pid, method, outcome) to the
    /// journal. SIGHUP (systemctl reload credns) reads --policy again: a policy with an error is
    /// logged with its line and the one in force kept. SIGTERM stops it once the calls being
    /// run are answered.
    #[command(mut_arg("policy", |a| a.help(
        "The allocation policy (TOML, crates/registry/DESIGN.md); read again on SIGHUP"
    )))]
    Serve(ServeArgs),
    /// Allocate a uid/gid range, leased to a name or to a process's user namespace.
    Alloc(AllocArgs),
    /// Release an allocation by number or name.
    Release(TargetArgs),
    /// List allocations (your own; all of them as root).
    List(ListArgs),
    /// Show one allocation by number or name.
    Show(TargetArgs),
    /// Which allocation, exclusion or live user namespace holds a host id.
    Who(WhoArgs),
}

#[derive(Clone, Debug, Args)]
pub struct Where {
    /// The daemon's socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// The store, opened directly (as root) when no daemon answers on the socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_STORE)]
    pub store: PathBuf,
    /// The allocation policy (TOML, crates/registry/DESIGN.md) of a directly opened store.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
}

impl Where {
    /// The endpoint of [`credns_service::connect`].
    pub fn endpoint(&self) -> Result<Endpoint> {
        Ok(Endpoint {
            socket: self.socket.clone(),
            store: self.store.clone(),
            policy: load_policy(&self.policy)?,
            etc: Some("/etc".into()),
        })
    }

    /// The registry: the daemon if it answers, else the store (root only).
    pub fn connect(&self) -> Result<(RegistryClient, Route)> {
        Ok(credns_service::connect(&self.endpoint()?)?)
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub(crate) at: Where,
    /// Directory of passwd, group, subuid and subgid whose ids are never allocated.
    #[arg(long, value_name = "DIR", default_value = "/etc")]
    pub(crate) etc: PathBuf,
    /// Start on a store older than its last recorded commit (restored from a backup, rolled
    /// back, emptied), as it is: allocations made since are lost from it. The ids live user
    /// namespaces map are rescanned at start and never handed out whatever the store says.
    #[arg(long)]
    pub(crate) recover: bool,
    /// The least important log lines written (to stderr; the journal under systemd): one line
    /// per call at info.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub(crate) log_level: crate::serve_cmd::LogLevel,
    /// Also serve io.systemd.UserDatabase on this socket, so nss-systemd names every id of
    /// every allocation (/run/systemd/userdb/io.credns.UserDatabase; the service name is the
    /// file name).
    #[arg(long, value_name = "PATH")]
    pub(crate) userdb: Option<PathBuf>,
    /// Also serve io.systemd.NamespaceResource (with io.systemd.UserDatabase) on this socket,
    /// for programs written for systemd-nsresourced
    /// (/run/systemd/userdb/io.systemd.NamespaceResource).
    #[arg(long, value_name = "PATH")]
    pub(crate) nsresource: Option<PathBuf>,
    /// The prefix of those names (PREFIX + allocation name or number + "-" + id inside).
    #[arg(long, value_name = "PREFIX", default_value = credns_service::USERDB_PREFIX)]
    pub(crate) userdb_prefix: String,
}

#[derive(Debug, Args)]
pub struct AllocArgs {
    #[command(flatten)]
    at: Where,
    /// Lease the range to this name.
    #[arg(long, conflicts_with = "userns")]
    name: Option<String>,
    /// Lease the range to the user namespace of this process (released when it dies).
    #[arg(long, value_name = "PID")]
    userns: Option<i32>,
    /// Also write that namespace's uid_map and gid_map (with --userns only).
    #[arg(long)]
    write_maps: bool,
    /// Ids wanted (default: the policy's, 65536).
    #[arg(long)]
    size: Option<u64>,
    /// Add a range from the high window.
    #[arg(long)]
    high: bool,
    /// A label to record.
    #[arg(long)]
    label: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct TargetArgs {
    #[command(flatten)]
    at: Where,
    /// An allocation number (`3` or `#3`) or a lease name.
    target: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    at: Where,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct WhoArgs {
    #[command(flatten)]
    at: Where,
    /// A host uid or gid.
    id: u32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: RegistryCommand) -> Result<ExitCode> {
    match cmd {
        RegistryCommand::Serve(a) => crate::serve_cmd::serve(a),
        RegistryCommand::Alloc(a) => alloc(a),
        RegistryCommand::Release(a) => release(a),
        RegistryCommand::List(a) => list(a),
        RegistryCommand::Show(a) => show(a),
        RegistryCommand::Who(a) => who(a),
    }
}

pub(crate) fn load_policy(path: &Option<PathBuf>) -> Result<Policy> {
    let Some(p) = path else {
        return Ok(Policy::default());
    };
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    toml::from_str(&text).with_context(|| format!("{}: not a valid policy", p.display()))
}

fn lease_text(a: &AllocationInfo) -> String {
    let lease = match (&a.lease.name, &a.lease.user_namespace) {
        (Some(n), _) => escape(n),
        (None, Some(u)) => format!("user:[{}] (dev {})", u.ino, u.dev),
        _ => "-".into(),
    };
    match a.delegated {
        true => format!("{lease} (delegated)"),
        false => lease,
    }
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(&snake_json(serde_json::to_value(v)?))?
    );
    Ok(())
}

fn print_one(a: &AllocationInfo, json: bool) -> Result<()> {
    if json {
        return print_json(a);
    }
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    t.add_row(vec!["id".to_string(), format!("#{}", a.id)]);
    t.add_row(vec!["uids".to_string(), a.uid.to_string()]);
    t.add_row(vec!["gids".to_string(), a.gid.to_string()]);
    t.add_row(vec!["size".to_string(), a.uid.len().to_string()]);
    if let Some(h) = &a.high {
        t.add_row(vec!["high uids".to_string(), h.uid.to_string()]);
        t.add_row(vec!["high gids".to_string(), h.gid.to_string()]);
    }
    t.add_row(vec!["lease".to_string(), lease_text(a)]);
    t.add_row(vec!["owner".to_string(), a.owner.to_string()]);
    t.add_row(vec!["created".to_string(), utc(a.created)]);
    t.add_row(vec!["origin".to_string(), a.origin.clone()]);
    if a.delegated {
        t.add_row(vec![
            "delegated".to_string(),
            format!("subordinate ids of uid {}", a.owner),
        ]);
    }
    if let Some(l) = &a.label {
        t.add_row(vec!["label".to_string(), escape(l)]);
    }
    for c in &a.conflicts {
        t.add_row(vec!["conflict".to_string(), escape(c)]);
    }
    println!("{t}");
    Ok(())
}

fn alloc(a: AllocArgs) -> Result<ExitCode> {
    if a.write_maps && a.userns.is_none() {
        bail!("--write-maps writes a namespace's maps: it needs --userns PID, not --name");
    }
    let opts = AllocOptions {
        size: a.size,
        high: a.high,
        label: a.label.clone(),
        write_maps: a.write_maps,
    };
    let (mut c, _) = a.at.connect()?;
    let got = match (&a.name, a.userns) {
        (Some(n), _) => c.allocate_name(n, &opts)?,
        (None, Some(pid)) => {
            let pid = Pid(pid);
            let pidfd = PidFd::open(pid)?;
            let ns = UserNsFd::open(&ProcFs::new(), pid)?;
            c.allocate_userns(ns.as_fd(), Some(pidfd.as_fd()), &opts)?
        }
        (None, None) => bail!("alloc needs --name NAME or --userns PID"),
    };
    print_one(&got.allocation, a.json)?;
    Ok(ExitCode::SUCCESS)
}

fn target(s: &str) -> Result<Target> {
    Target::parse(s).map_err(|e| anyhow::anyhow!("{e}"))
}

fn release(a: TargetArgs) -> Result<ExitCode> {
    let t = target(&a.target)?;
    let (mut c, _) = a.at.connect()?;
    let r = c.release(&t)?;
    if a.json {
        print_json(&r)?;
    } else {
        println!(
            "released #{} ({}): uids {}, gids {}",
            r.id,
            lease_text(&r),
            r.uid,
            r.gid
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn show(a: TargetArgs) -> Result<ExitCode> {
    let t = target(&a.target)?;
    let (mut c, _) = a.at.connect()?;
    print_one(&c.show(&t)?, a.json)?;
    Ok(ExitCode::SUCCESS)
}

fn list(a: ListArgs) -> Result<ExitCode> {
    let (mut c, _) = a.at.connect()?;
    let all = c.list()?;
    if a.json {
        print_json(&all)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    t.set_header(vec![
        "ID", "UIDS", "GIDS", "SIZE", "HIGH", "LEASE", "OWNER", "LABEL",
    ]);
    for x in &all {
        t.add_row(vec![
            format!("#{}", x.id),
            x.uid.to_string(),
            x.gid.to_string(),
            x.uid.len().to_string(),
            x.high.map_or("-".into(), |h| h.uid.to_string()),
            lease_text(x),
            x.owner.to_string(),
            x.label.as_deref().map_or_else(|| "-".into(), escape),
        ]);
    }
    println!("{t}");
    println!("{} allocation(s)", all.len());
    for x in all.iter().filter(|x| !x.conflicts.is_empty()) {
        for c in &x.conflicts {
            println!("conflict: #{}: {}", x.id, escape(c));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn holder_text(h: &HolderInfo) -> String {
    match h.kind.as_str() {
        "allocation" => format!(
            "#{} {} owner {}{}",
            h.allocation.unwrap_or_default(),
            h.part.as_deref().unwrap_or(""),
            h.owner.unwrap_or_default(),
            h.lease
                .as_ref()
                .map(|l| format!(", lease {}", escape(&l.to_string())))
                .unwrap_or_default()
        ),
        "excluded" => escape(h.source.as_deref().unwrap_or_default()),
        _ => h.user_namespace.clone().unwrap_or_default(),
    }
}

fn who(a: WhoArgs) -> Result<ExitCode> {
    let (mut c, _) = a.at.connect()?;
    let hs = c.who(a.id)?;
    if a.json {
        print_json(&serde_json::json!({ "id": a.id, "holders": hs }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if hs.is_empty() {
        println!(
            "{}: free (no allocation, exclusion or live user namespace holds it)",
            a.id
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    t.set_header(vec!["KIND", "HOLDER", "AS"]);
    for h in &hs {
        let as_ = match (h.as_uid, h.as_gid) {
            (Some(true), Some(true)) => "uid, gid",
            (Some(true), _) => "uid",
            (_, Some(true)) => "gid",
            _ => "-",
        };
        t.add_row(vec![h.kind.clone(), holder_text(h), as_.into()]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

/// Seconds since the epoch as `YYYY-MM-DD hh:mm:ss UTC` (the civil calendar from days, as in
/// Howard Hinnant's `civil_from_days`).
fn utc(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(super::utc(1_795_493_637), "2026-11-24 04:13:57 UTC");
    }
}
