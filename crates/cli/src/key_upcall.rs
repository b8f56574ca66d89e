//! `credns key setup` and `credns key upcall`: containers' `request_key` upcalls routed to the
//! handlers their managers chose.
//!
//! The kernel runs `/sbin/request-key` as root in the init namespaces for every upcall; the
//! file `key setup` installs in `/etc/request-key.d/` makes it run `credns key upcall` with
//! the request (key, type, description, callout, the requester's host uid and gid, its
//! keyrings). The upcall finds the container: its session keyring (`%S`) must be a
//! `_ses.credns.N` owned by allocation N's owner, and the requester's host uid (`%u`, given by
//! the kernel) must be one of N's ids. N's routes are tried in order; the first that matches
//! runs its handler, as N's owner, with the authority to instantiate the key. What the handler
//! prints is the payload when it exits 0; otherwise, or after its timeout, the key is negated
//! for 60 s. A request from outside a container, or one no route takes, goes back to
//! `/sbin/request-key` in a mount namespace of its own where credns's file reads empty: it
//! gets exactly what the host's configuration without that file gives it.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use credns_idmap::{Extent, IdKind};
use credns_registry::routes::Glob;
use credns_service::Range;
use credns_service::{AllocationInfo, KeyRouteInfo, KeyRoutesInfo, RegistryClient, Target};
use credns_sys::enter::{enter_as_root, Namespaces};
use credns_sys::keys::proc_keys::requester_pid;
use credns_sys::keys::session::{self, KeyDescription};
use credns_sys::keys::upcall::{assume_authority, hide_file, instantiate, negate};
use credns_sys::keys::{self, KeySerial, KEY_SPEC_USER_KEYRING};
use credns_sys::pidfd::{ExitWatcher, PidFd};
use credns_sys::{Pid, ProcFs};

use crate::registry_cmd::Where;

/// The program the kernel runs.
const REQUEST_KEY: &str = "/sbin/request-key";
/// How long a negated key answers ENOKEY (the kernel's own default for a failed upcall).
const NEGATE_SECS: u32 = 60;
/// The largest payload taken from a handler.
const MAX_PAYLOAD: usize = 1024 * 1024 - 1;
/// How long an upcall waits for the daemon's answer.
const DAEMON_WAIT: Duration = Duration::from_secs(10);
/// The first line of the file `key setup` writes: how it knows the file is its own.
const MARK: &str = "# Written by `credns key setup`";

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// The request-key configuration directory.
    #[arg(long, value_name = "DIR", default_value = "/etc/request-key.d")]
    dir: PathBuf,
    /// The file's name in it.
    #[arg(long, value_name = "NAME", default_value = "credns.conf")]
    file: String,
    /// Send only upcalls of this key type to credns (default: all).
    #[arg(long = "type", value_name = "TYPE", default_value = "*")]
    key_type: String,
    /// Send only upcalls whose description matches (request-key's pattern; default: all).
    #[arg(long = "desc", value_name = "PATTERN", default_value = "*")]
    description: String,
    /// Have each upcall append a line saying what it did to FILE.
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Remove the file instead.
    #[arg(long)]
    remove: bool,
    #[command(flatten)]
    at: Where,
}

/// `credns key upcall`'s arguments: the request as request-key's macros give it.
#[derive(Debug, Args)]
pub struct UpcallArgs {
    /// The configuration file that sent the request here (hidden when it is handed back).
    #[arg(long, value_name = "FILE")]
    conf: PathBuf,
    /// Append a line saying what was done to FILE.
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// %k: the key to construct.
    key: KeySerial,
    /// %t: its type.
    key_type: String,
    /// %d: its description.
    description: String,
    /// %c: the callout information.
    callout: String,
    /// %u: the requester's fsuid (host numbering).
    uid: u32,
    /// %g: the requester's fsgid (host numbering).
    gid: u32,
    /// %T: the requester's thread keyring (0: none).
    thread: KeySerial,
    /// %P: its process keyring.
    process: KeySerial,
    /// %S: its session keyring.
    session: KeySerial,
    /// The daemon's socket (the upcall asks only the daemon: with none answering, the request
    /// goes back to request-key).
    #[arg(long, value_name = "PATH", default_value = credns_service::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// The daemon's store (absolute): the copy of a container's routes the daemon keeps in
    /// its keyrings is looked for under this store's name first.
    #[arg(long, value_name = "PATH")]
    store: Option<PathBuf>,
}

fn no_space(what: &str, s: &str) -> Result<()> {
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("{what} {s:?}: request-key splits its lines at spaces; give one without");
    }
    Ok(())
}

/// The configuration line for this binary.
fn conf_text(a: &SetupArgs, file: &Path) -> Result<String> {
    let exe = std::env::current_exe().context("finding this program's path")?;
    let exe = exe
        .to_str()
        .context("this program's path is not UTF-8")?
        .to_string();
    let socket =
        a.at.socket
            .to_str()
            .context("--socket is not UTF-8")?
            .to_string();
    // Named as the daemon names its keyrings' holder: the absolute path.
    let store = std::fs::canonicalize(&a.at.store)
        .or_else(|_| std::path::absolute(&a.at.store))
        .context("--store")?;
    let store = store.to_str().context("--store is not UTF-8")?.to_string();
    let conf = file
        .to_str()
        .context("the file's path is not UTF-8")?
        .to_string();
    let log = match &a.log {
        Some(l) => {
            let l = l.to_str().context("--log is not UTF-8")?;
            no_space("--log", l)?;
            if !l.starts_with('/') {
                bail!("--log {l:?}: give an absolute path (upcalls run in /)");
            }
            format!(" --log {l}")
        }
        None => String::new(),
    };
    for (what, s) in [
        ("this program's path", &exe),
        ("--socket", &socket),
        ("--store", &store),
        ("--dir/--file", &conf),
        ("--type", &a.key_type),
        ("--desc", &a.description),
    ] {
        no_space(what, s)?;
    }
    Ok(format!(
        "{MARK}: containers' upcalls go to the handlers their managers routed them to.\n\
         # `credns key setup --remove` removes it.\n\
         create {} {} * {exe} key upcall --socket {socket} --store {store} --conf {conf}{log} -- %k %t %d %c %u %g %T %P %S\n",
        a.key_type, a.description
    ))
}

pub fn setup(a: SetupArgs) -> Result<ExitCode> {
    if a.file.contains('/') || !a.file.ends_with(".conf") {
        bail!(
            "--file {:?}: a file name ending in .conf (request-key reads no other)",
            a.file
        );
    }
    let file = a.dir.join(&a.file);
    let ours = |p: &Path| std::fs::read_to_string(p).is_ok_and(|t| t.starts_with(MARK));
    if a.remove {
        match std::fs::symlink_metadata(&file) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ExitCode::SUCCESS),
            _ if !ours(&file) => bail!("{}: not written by credns; left alone", file.display()),
            _ => std::fs::remove_file(&file)
                .with_context(|| format!("removing {}", file.display()))?,
        }
        return Ok(ExitCode::SUCCESS);
    }
    let text = conf_text(&a, &file)?;
    if file.exists() && !ours(&file) {
        bail!(
            "{}: exists and was not written by credns; left alone",
            file.display()
        );
    }
    if std::fs::read_to_string(&file).is_ok_and(|t| t == text) {
        return Ok(ExitCode::SUCCESS);
    }
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let tmp = a.dir.join(format!(".{}.tmp", a.file));
    std::fs::write(&tmp, &text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&tmp, &file).with_context(|| format!("installing {}", file.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// Append what was done with the request to the `--log` file, if any (best effort: an upcall
/// never fails for its log).
fn log(a: &UpcallArgs, what: &str) {
    let Some(path) = &a.log else { return };
    let line = format!(
        "key {} {} {:?} callout {:?} uid {}: {what}\n",
        a.key, a.key_type, a.description, a.callout, a.uid
    );
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path);
    if let Ok(mut f) = f {
        use std::io::Write;
        let _ = f.write_all(line.as_bytes());
    }
}

/// The allocation `_ses.credns.N` names, if `d` is such a keyring.
fn session_allocation(d: &KeyDescription) -> Option<u64> {
    if d.ktype != "keyring" {
        return None;
    }
    d.description.strip_prefix("_ses.credns.")?.parse().ok()
}

/// The container the request comes from and its routes; `None`: not a container's request
/// (its session keyring and its uid must both say so).
/// The copy of allocation `n`'s routes the daemon of `store` keeps in root's user keyring
/// (`credns:…:STORE` → `credns.N` → `credns.routes`, each root's and only root's to change):
/// no round trip to the daemon. `None` when there is none.
fn routes_copy(store: &Path, n: u64) -> Option<KeyRoutesInfo> {
    let suffix = format!(":{}", store.display());
    let slot_name = format!("credns.{n}");
    let mine = |s: KeySerial, ktype: &str, pred: &dyn Fn(&str) -> bool| {
        session::describe_key(s)
            .is_ok_and(|d| d.ktype == ktype && d.uid == 0 && pred(&d.description))
    };
    let holders = session::keyring_serials(&keys::read(KEY_SPEC_USER_KEYRING).ok()?);
    for h in holders {
        if !mine(h, "keyring", &|d| {
            d.starts_with("credns:") && d.ends_with(&suffix)
        }) {
            continue;
        }
        let Some(slot) = session::keyring_serials(&keys::read(h).ok()?)
            .into_iter()
            .find(|s| mine(*s, "keyring", &|d| d == slot_name))
        else {
            continue;
        };
        let copy = session::keyring_serials(&keys::read(slot).ok()?)
            .into_iter()
            .find(|s| mine(*s, "user", &|d| d == credns_service::ROUTES_COPY))?;
        return serde_json::from_slice(&keys::read(copy).ok()?).ok();
    }
    None
}

/// The container the request comes from, its routes, and where they were read ("the keyring
/// copy" or "the daemon").
type Found = (AllocationInfo, Vec<KeyRouteInfo>, &'static str);

fn container_of(a: &UpcallArgs) -> Result<Option<Found>> {
    let Ok(d) = session::describe_key(a.session) else {
        return Ok(None);
    };
    let Some(n) = session_allocation(&d) else {
        return Ok(None);
    };
    let (got, from) = match a.store.as_deref().and_then(|s| routes_copy(s, n)) {
        Some(g) => (g, "the keyring copy"),
        None => {
            let mut c = RegistryClient::connect_timeout(&a.socket, DAEMON_WAIT)?;
            match c.key_routes(&Target::Id(n)) {
                Ok(g) => (g, "the daemon"),
                Err(e) if e.remote_name().is_some_and(|n| n.ends_with(".NotFound")) => {
                    return Ok(None)
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    let al = &got.allocation;
    let in_range = u64::from(a.uid) >= u64::from(al.uid.start)
        && u64::from(a.uid) < u64::from(al.uid.start) + al.uid.len();
    if d.uid != al.owner || !in_range {
        return Ok(None);
    }
    Ok(Some((got.allocation, got.routes, from)))
}

pub fn upcall(a: UpcallArgs) -> Result<ExitCode> {
    // With the authority, the requester's keyrings count as this process's: its session
    // keyring can be described whoever owns it. The handler inherits the authority.
    let auth = match assume_authority(a.key) {
        Ok(auth) => auth,
        Err(e) => {
            log(
                &a,
                &format!("handed back: taking the authority failed: {e}"),
            );
            return hand_back(&a);
        }
    };
    let routed = container_of(&a).unwrap_or_else(|e| {
        eprintln!("credns key upcall: {}", crate::output::error_text(&e));
        None
    });
    let Some((alloc, routes, from)) = routed else {
        log(&a, "handed back: not a container's request");
        return hand_back(&a);
    };
    let Some(route) = routes.iter().find(|r| {
        let m = |p: &str, t: &str| Glob::parse(p).is_ok_and(|g| g.matches(t));
        r.key_type == a.key_type && m(&r.description, &a.description) && m(&r.callout, &a.callout)
    }) else {
        log(
            &a,
            &format!(
                "handed back: no route of allocation {} matches (routes from {from})",
                alloc.id
            ),
        );
        return hand_back(&a);
    };
    match run_handler(&a, auth, &alloc, route) {
        Ok(payload) => {
            // A handler may have instantiated the key itself (it has the authority too): then
            // this one is refused, and the key is what the handler made it.
            let how = match instantiate(a.key, &payload, 0) {
                Ok(()) => format!("{} bytes", payload.len()),
                Err(e) => format!("not by credns ({e}): the handler's own"),
            };
            log(
                &a,
                &format!(
                    "allocation {} (routes from {from}): instantiated, {how}",
                    alloc.id
                ),
            );
        }
        Err(why) => {
            let _ = negate(a.key, NEGATE_SECS, 0);
            log(
                &a,
                &format!(
                    "allocation {} (routes from {from}): negated for {NEGATE_SECS} s: {why}",
                    alloc.id
                ),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Run the route's handler as the allocation's owner; its standard output if it exits 0
/// within the timeout.
fn run_handler(
    a: &UpcallArgs,
    auth: KeySerial,
    alloc: &AllocationInfo,
    r: &KeyRouteInfo,
) -> Result<Vec<u8>, String> {
    let (prog, args) = r.handler.split_first().ok_or("the route has no handler")?;
    let inside = |id: u32, start: u32| id.checked_sub(start).map_or("-".into(), |v| v.to_string());
    let mut cmd = std::process::Command::new(prog);
    cmd.args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("KEY_ID", a.key.to_string())
        .env("KEY_TYPE", &a.key_type)
        .env("KEY_DESC", &a.description)
        .env("KEY_CALLOUT", &a.callout)
        .env("KEY_UID", inside(a.uid, alloc.uid.start))
        .env("KEY_GID", inside(a.gid, alloc.gid.start))
        .env("KEY_HOST_UID", a.uid.to_string())
        .env("KEY_HOST_GID", a.gid.to_string())
        .env("KEY_SESSION", a.session.to_string())
        .env("CREDNS_ALLOCATION", alloc.id.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .current_dir("/");
    if r.inside {
        let (requester, which) = requester_inside(a, auth, alloc)?;
        enter_as_root(&mut cmd, &requester, which)
            .map_err(|e| format!("entering the requester's namespaces: {e}"))?;
    } else if alloc.owner != 0 {
        // std drops supplementary groups when it changes the uid of a root process.
        cmd.gid(owner_gid(alloc.owner)).uid(alloc.owner);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("starting handler {prog}: {e}"))?;
    let mut out = child.stdout.take().expect("piped");
    // Read on a thread of its own, handed over through a channel: a process the handler left
    // behind may hold its output open, and the wait for it keeps the handler's deadline.
    let (tx, output) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let r = (&mut out)
            .take(MAX_PAYLOAD as u64 + 1)
            .read_to_end(&mut buf);
        let _ = tx.send(r.map(|_| buf));
    });
    let deadline = Instant::now() + Duration::from_secs(u64::from(r.timeout));
    // The handler's exit, watched through a pidfd (it is not reaped before, so its pid is its).
    let exited = PidFd::open(Pid(child.id() as i32))
        .and_then(|fd| {
            let w = ExitWatcher::new()?;
            w.add(&fd, 0)?;
            Ok((fd, w))
        })
        .map_err(|e| format!("watching handler {prog}: {e}"))?;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("handler {prog} ran over its {} s", r.timeout));
            }
            Ok(None) => {
                let left = deadline.saturating_duration_since(Instant::now());
                let _ = exited.1.wait(Some(left));
            }
            Err(e) => return Err(format!("waiting for handler {prog}: {e}")),
        }
    };
    if !status.success() {
        return Err(format!("handler {prog} failed ({status})"));
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let payload = match output.recv_timeout(left) {
        Ok(read) => read.map_err(|e| format!("reading the handler's output: {e}"))?,
        Err(_) => {
            return Err(format!(
                "handler {prog} exited, but its output stayed open past its {} s (a process \
                 it left behind holds it)",
                r.timeout
            ))
        }
    };
    if payload.len() > MAX_PAYLOAD {
        return Err(format!(
            "handler {prog} printed more than {MAX_PAYLOAD} bytes"
        ));
    }
    Ok(payload)
}

/// The process that asked for the key, for a handler `--inside`: named by the authorisation
/// key's line in /proc/keys, held by a pidfd, and accepted only if its user namespace maps
/// nothing but the allocation's ids (the container's namespace, or one nested in it). Its
/// mount namespace is entered too unless it is this process's own.
fn requester_inside(
    a: &UpcallArgs,
    auth: KeySerial,
    alloc: &AllocationInfo,
) -> Result<(PidFd, Namespaces), String> {
    let procfs = ProcFs::new();
    let pid = requester_pid(&procfs, auth, a.key)
        .map_err(|e| format!("reading /proc/keys: {e}"))?
        .ok_or("/proc/keys names no requester for the key")?;
    // The kernel records the requesting thread: its id, not necessarily its process's.
    let fd = PidFd::open_thread(pid).map_err(|e| format!("the requester, pid {pid}: {e}"))?;
    let inside = |kind: IdKind, ranges: &[Range]| -> Result<(), String> {
        let map = procfs
            .read_map(pid, kind)
            .map_err(|e| format!("the requester's {kind} map: {e}"))?;
        let within = |e: &Extent| {
            let (lo, hi) = (u64::from(e.lower_first), e.lower_last());
            ranges
                .iter()
                .any(|r| lo >= u64::from(r.start) && hi <= u64::from(r.end))
        };
        if map.is_empty() || !map.extents().iter().all(within) {
            return Err(format!(
                "the requester (pid {pid}) is not in the container: its {kind} map maps ids \
                 outside allocation {}",
                alloc.id
            ));
        }
        Ok(())
    };
    let high = alloc.high.as_ref();
    let uids: Vec<Range> = std::iter::once(alloc.uid)
        .chain(high.map(|h| h.uid))
        .collect();
    let gids: Vec<Range> = std::iter::once(alloc.gid)
        .chain(high.map(|h| h.gid))
        .collect();
    inside(IdKind::Uid, &uids)?;
    inside(IdKind::Gid, &gids)?;
    let mnt = |p: Pid| procfs.mount_ns_inode(p).map_err(|e| e.to_string());
    let which = if mnt(pid)? == mnt(Pid::this())? {
        Namespaces::User
    } else {
        Namespaces::UserAndMount
    };
    // What was read under /proc/PID was the pidfd's process only if it has not ended since.
    if fd.has_exited().map_err(|e| e.to_string())? {
        return Err(format!("the requester, pid {pid}, has exited"));
    }
    Ok((fd, which))
}

/// The owner's primary group from /etc/passwd, else the group of the same number.
fn owner_gid(uid: u32) -> u32 {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 4 && f[2].parse() == Ok(uid)).then(|| f[3].parse().ok())?
            })
        })
        .unwrap_or(uid)
}

/// Give the request back to `/sbin/request-key`, in a mount namespace where credns's file
/// reads empty; returns only on failure.
fn hand_back(a: &UpcallArgs) -> Result<ExitCode> {
    hide_file(&a.conf, Path::new("/dev/null"))
        .with_context(|| format!("hiding {} from request-key", a.conf.display()))?;
    let args: Vec<OsString> = [
        "create".to_string(),
        a.key.to_string(),
        a.uid.to_string(),
        a.gid.to_string(),
        a.thread.to_string(),
        a.process.to_string(),
        a.session.to_string(),
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    let e = std::process::Command::new(REQUEST_KEY).args(&args).exec();
    bail!("executing {REQUEST_KEY}: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_credns_sessions_name_an_allocation() {
        let d = |t: &str, desc: &str| KeyDescription {
            ktype: t.into(),
            uid: 0,
            gid: 0,
            perm: 0,
            description: desc.into(),
        };
        assert_eq!(
            session_allocation(&d("keyring", "_ses.credns.12")),
            Some(12)
        );
        assert_eq!(session_allocation(&d("keyring", "_ses")), None);
        assert_eq!(session_allocation(&d("user", "_ses.credns.12")), None);
        assert_eq!(session_allocation(&d("keyring", "_ses.credns.x")), None);
    }
}
