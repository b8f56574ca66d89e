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
    let new = with_subid(&old, (!a.remove).then_some("credns"));
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

/// The database name a line of nsswitch.conf configures, if it configures one (`subid` of
/// `subid: files`); comments and blank lines configure none.
fn database(line: &str) -> Option<&str> {
    let code = line.split('#').next().unwrap_or("");
    let (db, _) = code.split_once(':')?;
    let db = db.trim();
    (!db.is_empty() && !db.contains(char::is_whitespace)).then_some(db)
}

/// nsswitch.conf's `text` with its `subid:` line set to `module` (replacing any other, as
/// libsubid takes one module), or with a `subid: credns` line removed (`None`). Other lines
/// are kept as they are; applying the same change twice changes nothing the second time.
pub fn with_subid(text: &str, module: Option<&str>) -> String {
    let mut out = String::with_capacity(text.len() + 24);
    let mut set = false;
    for line in text.split_inclusive('\n') {
        if database(line) != Some("subid") {
            out.push_str(line);
            continue;
        }
        let value = line
            .split('#')
            .next()
            .unwrap_or("")
            .split_once(':')
            .map(|x| x.1.trim());
        match module {
            Some(m) if !set => {
                out.push_str(&format!("subid:          {m}\n"));
                set = true;
            }
            // libsubid reads the first subid line: later ones are dropped with it.
            Some(_) => {}
            None if value == Some("credns") => {}
            None => out.push_str(line),
        }
    }
    if let (Some(m), false) = (module, set) {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("subid:          {m}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::with_subid;
    use proptest::prelude::*;

    const DEBIAN: &str = "passwd:         files systemd\ngroup:          files systemd\n# subid: files\nhosts:          files dns\n";

    #[test]
    fn the_line_is_added_once_and_removed_again() {
        let added = with_subid(DEBIAN, Some("credns"));
        assert_eq!(added, format!("{DEBIAN}subid:          credns\n"));
        assert_eq!(with_subid(&added, Some("credns")), added);
        assert_eq!(with_subid(&added, None), DEBIAN);
        assert_eq!(with_subid(DEBIAN, None), DEBIAN);
    }

    #[test]
    fn another_module_is_replaced_and_a_missing_newline_kept_apart() {
        let t = "subid: sss # comment\nhosts: files";
        assert_eq!(
            with_subid(t, Some("credns")),
            "subid:          credns\nhosts: files"
        );
        assert_eq!(
            with_subid("hosts: files", Some("credns")),
            "hosts: files\nsubid:          credns\n"
        );
        // Removing leaves another module's line alone.
        assert_eq!(with_subid("subid: sss\n", None), "subid: sss\n");
    }

    fn nsswitch() -> impl Strategy<Value = String> {
        let line = prop_oneof![
            Just("passwd: files\n".to_string()),
            Just("subid: files\n".to_string()),
            Just("subid:credns\n".to_string()),
            Just("  subid :  sss  # x\n".to_string()),
            Just("# subid: credns\n".to_string()),
            Just("\n".to_string()),
            "[a-z: #]{0,12}\n",
        ];
        proptest::collection::vec(line, 0..8).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn setting_is_idempotent_and_leaves_one_active_line(t in nsswitch()) {
            let once = with_subid(&t, Some("credns"));
            prop_assert_eq!(with_subid(&once, Some("credns")), once.clone());
            let active: Vec<&str> = once.lines().filter(|l| super::database(l) == Some("subid")).collect();
            prop_assert_eq!(active, vec!["subid:          credns"]);
            let removed = with_subid(&once, None);
            prop_assert!(removed.lines().all(|l| super::database(l) != Some("subid")));
            prop_assert_eq!(with_subid(&removed, None), removed.clone());
        }
    }
}
