//! The registry commands: `credns serve` (the daemon) and `alloc`, `release`, `list`, `show`,
//! `who`, which talk to the daemon when its socket answers and otherwise open the store
//! directly (the same code answers either way).

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use credns_registry::Policy;
use credns_service::{
    AllocOptions, AllocationInfo, Caller, Client, Config, HolderInfo, Server, Service, Target,
    DEFAULT_SOCKET, DEFAULT_STORE,
};
use credns_sys::pidfd::PidFd;
use credns_sys::signal::TermSignals;
use credns_sys::{Pid, ProcFs, UserNsFd};
use serde_json::{json, Value};

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Run the registry daemon (varlink interface io.credns.Registry on a Unix socket).
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

#[derive(Debug, Args)]
pub struct Where {
    /// The daemon's socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// The store, opened directly (as root) when no daemon answers on the socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_STORE)]
    store: PathBuf,
    /// The allocation policy (TOML, fields as in credns_registry::Policy) for a directly
    /// opened store.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    at: Where,
    /// Directory of passwd, group, subuid and subgid whose ids are never allocated.
    #[arg(long, value_name = "DIR", default_value = "/etc")]
    etc: PathBuf,
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
    /// Also write that namespace's uid_map and gid_map.
    #[arg(long, requires = "userns")]
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
        RegistryCommand::Serve(a) => serve(a),
        RegistryCommand::Alloc(a) => alloc(a),
        RegistryCommand::Release(a) => release(a),
        RegistryCommand::List(a) => list(a),
        RegistryCommand::Show(a) => show(a),
        RegistryCommand::Who(a) => who(a),
    }
}

fn load_policy(path: &Option<PathBuf>) -> Result<Policy> {
    let Some(p) = path else {
        return Ok(Policy::default());
    };
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    toml::from_str(&text).with_context(|| format!("{}: not a valid policy", p.display()))
}

fn ensure_store_dir(store: &Path) -> Result<()> {
    if let Some(dir) = store.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    Ok(())
}

fn serve(a: ServeArgs) -> Result<ExitCode> {
    // Before any thread exists, so that every thread has them blocked.
    let signals = TermSignals::block()?;
    // Before the store: a running daemon holds its lock, and this is the clearer message.
    if std::os::unix::net::UnixStream::connect(&a.at.socket).is_ok() {
        return Err(credns_service::Error::SocketInUse(a.at.socket.clone()).into());
    }
    ensure_store_dir(&a.at.store)?;
    let mut cfg = Config::new(&a.at.store);
    cfg.policy = load_policy(&a.at.policy)?;
    cfg.etc = Some(a.etc.clone());
    let svc = Service::open(&cfg)
        .with_context(|| format!("opening the registry {}", a.at.store.display()))?;
    let server = Server::bind(&a.at.socket, svc.clone())?;
    eprintln!(
        "credns: serving io.credns.Registry on {} (store {})",
        a.at.socket.display(),
        a.at.store.display()
    );
    std::thread::Builder::new()
        .name("credns-accept".into())
        .spawn(move || {
            if let Err(e) = server.run() {
                eprintln!("credns: error: {e}");
                std::process::exit(2);
            }
        })?;
    let sig = signals.wait()?;
    // Holding the registry lock: no commit is in flight, and none starts.
    let _reg = svc.lock_registry();
    let _ = std::fs::remove_file(&a.at.socket);
    eprintln!("credns: signal {sig}, exiting");
    std::process::exit(0)
}

/// The daemon, or the store opened in this process.
enum Backend {
    Daemon(Client),
    Local(Service, Caller),
}

impl Backend {
    fn open(at: &Where) -> Result<Self> {
        match Client::connect(&at.socket) {
            Ok(c) => Ok(Backend::Daemon(c)),
            Err(daemon_err) => {
                let uid = std::fs::metadata("/proc/self")
                    .map(|m| m.uid())
                    .unwrap_or(u32::MAX);
                if uid != 0 {
                    bail!(
                        "no daemon answers ({daemon_err}), and only root opens the store {} directly",
                        at.store.display()
                    );
                }
                ensure_store_dir(&at.store)?;
                let mut cfg = Config::new(&at.store);
                cfg.policy = load_policy(&at.policy)?;
                let svc = Service::open(&cfg).with_context(|| {
                    format!(
                        "no daemon answers ({daemon_err}); opening the store {} directly",
                        at.store.display()
                    )
                })?;
                Ok(Backend::Local(
                    svc,
                    Caller {
                        uid,
                        pid: Pid::this(),
                    },
                ))
            }
        }
    }

    fn call(
        &mut self,
        method: &str,
        params: Value,
        fds: Vec<std::os::fd::OwnedFd>,
    ) -> Result<Value> {
        match self {
            Backend::Daemon(c) => {
                let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
                c.call(&format!("io.credns.Registry.{method}"), params, &borrowed)
                    .map_err(|e| anyhow::anyhow!("{e}"))
            }
            Backend::Local(s, caller) => {
                let mut fds: Vec<_> = fds.into_iter().map(Some).collect();
                s.call(*caller, method, &params, &mut fds)
                    .map_err(|e| anyhow::anyhow!("{e}"))
            }
        }
    }
}

fn allocation(v: &Value) -> Result<AllocationInfo> {
    Ok(serde_json::from_value(v["allocation"].clone())?)
}

fn lease_text(a: &AllocationInfo) -> String {
    match (&a.lease.name, &a.lease.user_namespace) {
        (Some(n), _) => n.clone(),
        (None, Some(u)) => format!("user:[{}] (dev {})", u.ino, u.dev),
        _ => "-".into(),
    }
}

fn print_one(a: &AllocationInfo, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(a)?);
        return Ok(());
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
    if let Some(l) = &a.label {
        t.add_row(vec!["label".to_string(), l.clone()]);
    }
    println!("{t}");
    Ok(())
}

fn alloc(a: AllocArgs) -> Result<ExitCode> {
    let opts = AllocOptions {
        size: a.size,
        high: a.high,
        label: a.label.clone(),
        write_maps: a.write_maps,
    };
    let mut params = json!({});
    if let Some(s) = opts.size {
        params["size"] = json!(s);
    }
    if opts.high {
        params["high"] = json!(true);
    }
    if let Some(l) = &opts.label {
        params["label"] = json!(l);
    }
    let mut fds = Vec::new();
    match (&a.name, a.userns) {
        (Some(n), _) => params["name"] = json!(n),
        (None, Some(pid)) => {
            let pid = Pid(pid);
            let pidfd = PidFd::open(pid)?;
            let ns = UserNsFd::open(&ProcFs::new(), pid)?;
            fds.push(ns.into_owned_fd());
            fds.push(pidfd_into_owned(pidfd)?);
            params["userNamespaceFileDescriptor"] = json!(0);
            params["pidFileDescriptor"] = json!(1);
            if a.write_maps {
                params["writeMaps"] = json!(true);
            }
        }
        (None, None) => bail!("alloc needs --name NAME or --userns PID"),
    }
    let mut b = Backend::open(&a.at)?;
    let v = b.call("Allocate", params, fds)?;
    print_one(&allocation(&v)?, a.json)?;
    Ok(ExitCode::SUCCESS)
}

fn pidfd_into_owned(p: PidFd) -> Result<std::os::fd::OwnedFd> {
    Ok(p.as_fd().try_clone_to_owned()?)
}

fn target_params(s: &str) -> Value {
    match Target::parse(s) {
        Target::Id(i) => json!({ "id": i }),
        Target::Name(n) => json!({ "name": n }),
    }
}

fn release(a: TargetArgs) -> Result<ExitCode> {
    let mut b = Backend::open(&a.at)?;
    let r = allocation(&b.call("Release", target_params(&a.target), Vec::new())?)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
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
    let mut b = Backend::open(&a.at)?;
    print_one(
        &allocation(&b.call("Show", target_params(&a.target), Vec::new())?)?,
        a.json,
    )?;
    Ok(ExitCode::SUCCESS)
}

fn list(a: ListArgs) -> Result<ExitCode> {
    let mut b = Backend::open(&a.at)?;
    let v = b.call("List", json!({}), Vec::new())?;
    let all: Vec<AllocationInfo> = serde_json::from_value(v["allocations"].clone())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
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
            x.label.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    println!("{t}");
    println!("{} allocation(s)", all.len());
    Ok(ExitCode::SUCCESS)
}

fn who(a: WhoArgs) -> Result<ExitCode> {
    let mut b = Backend::open(&a.at)?;
    let v = b.call("Who", json!({ "id": a.id }), Vec::new())?;
    let hs: Vec<HolderInfo> = serde_json::from_value(v["holders"].clone())?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "id": a.id, "holders": hs }))?
        );
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
        let holder = match h.kind.as_str() {
            "allocation" => format!(
                "#{} {} owner {}{}",
                h.allocation.unwrap_or_default(),
                h.part.as_deref().unwrap_or(""),
                h.owner.unwrap_or_default(),
                h.lease
                    .as_ref()
                    .map(|l| format!(", lease {l}"))
                    .unwrap_or_default()
            ),
            "excluded" => h.source.clone().unwrap_or_default(),
            _ => h.user_namespace.clone().unwrap_or_default(),
        };
        let as_ = match (h.as_uid, h.as_gid) {
            (Some(true), Some(true)) => "uid, gid",
            (Some(true), _) => "uid",
            (_, Some(true)) => "gid",
            _ => "-",
        };
        t.add_row(vec![h.kind.clone(), holder, as_.into()]);
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
