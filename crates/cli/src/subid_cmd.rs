//! `credns delegate` (subordinate ids for a user, through `io.credns.Subid`) and
//! `credns setup subid` (the `subid:` line of nsswitch.conf that makes libsubid ask credns).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use credns_service::subid::SubidClient;

use crate::output::{escape, snake_json};
use crate::registry_cmd::Where;

#[derive(Debug, Args)]
pub struct DelegateArgs {
    #[command(flatten)]
    at: Where,
    /// The user (a login name of the daemon's passwd, or a uid).
    user: String,
    /// Ids in each new delegation (default: the policy's, 65536).
    #[arg(long)]
    size: Option<u64>,
    /// How many delegations the user should hold (default 1); only the missing ones are made.
    #[arg(long)]
    count: Option<u32>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum SetupCommand {
    /// Make libsubid (newuidmap, getsubids, podman) ask credns for subordinate ids: the line
    /// `subid: credns` in nsswitch.conf. libsubid then loads libsubid_credns.so, which must be
    /// in the loader's path (e.g. /usr/lib/x86_64-linux-gnu/). While the daemon is down its
    /// callers get an error (no range), never another answer.
    Subid(SetupSubidArgs),
}

#[derive(Debug, Args)]
pub struct SetupSubidArgs {
    /// Remove the line instead (libsubid reads /etc/subuid and /etc/subgid again).
    #[arg(long)]
    remove: bool,
    /// The nsswitch.conf to change.
    #[arg(long, value_name = "PATH", default_value = "/etc/nsswitch.conf")]
    nsswitch: PathBuf,
}

pub fn delegate(a: DelegateArgs) -> Result<ExitCode> {
    let (c, _) = a.at.connect()?;
    let mut c = SubidClient::new(c.into_varlink());
    let got = c.delegate(&a.user, a.size, a.count)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&snake_json(serde_json::to_value(&got)?))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} (uid {}): {} delegation(s), {} made now",
        escape(&a.user),
        got.uid,
        got.delegations.len(),
        got.made
    );
    for d in &got.delegations {
        println!(
            "#{} {}: uids {} gids {}",
            d.allocation,
            escape(&d.name),
            d.uid,
            d.gid
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn setup(cmd: SetupCommand) -> Result<ExitCode> {
    match cmd {
        SetupCommand::Subid(a) => setup_subid(a),
    }
}

fn setup_subid(a: SetupSubidArgs) -> Result<ExitCode> {
    let path = &a.nsswitch;
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !a.remove => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let new = credns_registry::nsswitch::with_subid(&old, (!a.remove).then_some("credns"));
    if new == old {
        println!("{}: unchanged", path.display());
    } else {
        replace_file(path, &new)?;
        let what = if a.remove { "removed" } else { "set" };
        println!("{}: subid: credns {what}", path.display());
    }
    if !a.remove && find_library().is_none() {
        eprintln!(
            "credns: warning: libsubid_credns.so is not in the loader's directories; until it is \
             (copy it to /usr/lib/{}-linux-gnu/), libsubid's callers fall back to /etc/subuid",
            std::env::consts::ARCH
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Where the dynamic loader would find the provider for a setuid caller (newuidmap): the
/// trusted directories, not LD_LIBRARY_PATH.
fn find_library() -> Option<PathBuf> {
    let arch = format!("{}-linux-gnu", std::env::consts::ARCH);
    [
        format!("/lib/{arch}"),
        format!("/usr/lib/{arch}"),
        "/lib".into(),
        "/usr/lib".into(),
    ]
    .into_iter()
    .map(|d| Path::new(&d).join("libsubid_credns.so"))
    .find(|p| p.is_file())
}

/// Write `text` to `path` through a new file renamed over it (keeping its mode), so a reader
/// sees the old file or the new one, never half of one.
fn replace_file(path: &Path, text: &str) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mode = std::fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o7777);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.credns-{}", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("replacing {}", path.display()));
    }
    Ok(())
}
