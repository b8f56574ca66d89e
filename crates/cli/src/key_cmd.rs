//! `credns key`: the keys a manager gives its containers. The daemon says which container
//! keyring is an allocation's (and only to its owner, or root); this process then acts on it
//! with keyctl as the allocation's owner, so the kernel's permissions are the authority too.
//!
//! `key add` puts a new key in the container keyring; `key grant` links one of the caller's
//! own keys into it (possessors there may then only view, read and search it, unless
//! `--perm` says otherwise); `key ungrant` unlinks it; `key show` lists a container keyring
//! with the ids as the host and the container see them, and the container's key quota use.

use std::io::Read;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::Table;
use std::os::unix::fs::PermissionsExt;

use credns_service::{AllocationInfo, KeyRouteInfo, KeyringInfo, RegistryClient, Target};
use credns_sys::keys::session::{self, perm, KeyDescription, KeyUser};
use credns_sys::keys::{self, KeySerial, KEY_SPEC_THREAD_KEYRING};
use credns_sys::{Errno, ProcFs};
use serde::Serialize;

use crate::output::escape;
use crate::registry_cmd::Where;

/// A key type name's longest (the kernel's buffer is 32 bytes with the NUL).
const MAX_TYPE: usize = 31;
/// A description's longest (`KEY_MAX_DESC_SIZE` with the NUL).
const MAX_DESC: usize = 4095;
/// A payload's longest for `add_key(2)`.
const MAX_DATA: usize = 1024 * 1024 - 1;

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Add a key to a container's keyring (its denizens may view, read and search it).
    Add(AddArgs),
    /// Make one of your keys findable inside a container (and nowhere else it was not).
    Grant(GrantArgs),
    /// Take a granted key out of a container's keyring (its mask stays as `grant` set it).
    Ungrant(UngrantArgs),
    /// Show container keyrings: keys, masks, owners (host and container ids), quota use.
    Show(ShowArgs),
    /// Send a container's request_key upcalls of a type to a handler of yours.
    Route(RouteArgs),
    /// List containers' key routes.
    Routes(RoutesArgs),
    /// Remove a key route.
    Unroute(UnrouteArgs),
    /// Install (or with --remove, remove) the request-key configuration that sends upcalls
    /// to `credns key upcall` (root).
    Setup(crate::key_upcall::SetupArgs),
    /// Answer one upcall (run by /sbin/request-key through the file `key setup` installs).
    #[command(hide = true)]
    Upcall(crate::key_upcall::UpcallArgs),
}

#[derive(Debug, Args)]
pub struct RouteArgs {
    /// The container: allocation number (N or #N) or name.
    container: String,
    /// The key type requested.
    #[arg(long = "type", value_name = "TYPE")]
    key_type: String,
    /// Only descriptions matching this pattern (* any run, ? one character, \\ escapes).
    #[arg(long = "desc", value_name = "GLOB", default_value = "*")]
    description: String,
    /// Only callout information matching this pattern.
    #[arg(long, value_name = "GLOB", default_value = "*")]
    callout: String,
    /// The handler: an absolute path and its arguments, split at spaces. It runs as the
    /// container's owner with KEY_ID, KEY_TYPE, KEY_DESC, KEY_CALLOUT, KEY_UID and KEY_GID
    /// (the requester's ids as the container numbers them), KEY_HOST_UID, KEY_HOST_GID,
    /// KEY_SESSION and CREDNS_ALLOCATION set; what it prints becomes the key's payload when
    /// it exits 0 (it may also instantiate the key itself).
    #[arg(long, value_name = "CMD")]
    handler: String,
    /// Seconds the handler may take; then the key is negated for 60 s.
    #[arg(long, default_value_t = 30)]
    timeout: u32,
    /// Run the handler inside the container instead: in the requesting process's user and
    /// mount namespaces, as their root (uid and gid 0, no supplementary groups). Its path is
    /// the container's, looked up when a request comes.
    #[arg(long)]
    inside: bool,
    #[command(flatten)]
    at: Where,
}

#[derive(Debug, Args)]
pub struct RoutesArgs {
    /// The container (default: every allocation of yours).
    container: Option<String>,
    /// JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    at: Where,
}

#[derive(Debug, Args)]
pub struct UnrouteArgs {
    /// The container: allocation number (N or #N) or name.
    container: String,
    /// The route's index, as `credns key routes` numbers them (from 0).
    index: usize,
    #[command(flatten)]
    at: Where,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The container: allocation number (N or #N) or name.
    container: String,
    /// The key type (user, logon, big_key, ...).
    #[arg(value_name = "TYPE")]
    ktype: String,
    /// The description.
    #[arg(value_name = "DESC")]
    description: String,
    /// The payload; `-` reads it from standard input (default: empty).
    data: Option<String>,
    #[command(flatten)]
    at: Where,
}

#[derive(Debug, Args)]
pub struct GrantArgs {
    /// The key's serial (one of yours, e.g. from `keyctl show`).
    key: KeySerial,
    /// The container: allocation number (N or #N) or name.
    container: String,
    /// What the container's processes may do with it: a comma-separated list of view, read,
    /// write, search, link, setattr (its possessor class; you keep your rights as its owner).
    #[arg(long, default_value = "view,read,search")]
    perm: String,
    #[command(flatten)]
    at: Where,
}

#[derive(Debug, Args)]
pub struct UngrantArgs {
    /// The key's serial.
    key: KeySerial,
    /// The container: allocation number (N or #N) or name.
    container: String,
    #[command(flatten)]
    at: Where,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The container (default: every allocation of yours with a container keyring).
    container: Option<String>,
    /// JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    at: Where,
}

pub fn run(cmd: KeyCommand) -> Result<ExitCode> {
    match cmd {
        KeyCommand::Add(a) => add(a),
        KeyCommand::Grant(a) => grant(a),
        KeyCommand::Ungrant(a) => ungrant(a),
        KeyCommand::Show(a) => show(a),
        KeyCommand::Route(a) => route(a),
        KeyCommand::Routes(a) => routes(a),
        KeyCommand::Unroute(a) => unroute(a),
        KeyCommand::Setup(a) => crate::key_upcall::setup(a),
        KeyCommand::Upcall(a) => crate::key_upcall::upcall(a),
    }
}

fn target(s: &str) -> Result<Target> {
    Target::parse(s).map_err(|e| anyhow::anyhow!("CONTAINER {e}"))
}

/// The container keyring of `container`, made if there is none yet.
fn container_keyring(at: &Where, container: &str, create: bool) -> Result<KeyringInfo> {
    let t = target(container)?;
    let (mut c, _) = at.connect()?;
    c.keyring(&t, create)
        .with_context(|| format!("container {container:?}"))
}

/// This thread acting as `uid` on keys (its fsuid) until dropped; nothing when it is already
/// that uid's.
struct AsOwner(Option<u32>);

impl AsOwner {
    fn new(uid: u32) -> Result<Self> {
        if !credns_sys::is_root() {
            return Ok(AsOwner(None));
        }
        let old = session::set_thread_fsuid(uid)
            .with_context(|| format!("acting as uid {uid} on its keys"))?;
        Ok(AsOwner(Some(old)))
    }
}

impl Drop for AsOwner {
    fn drop(&mut self) {
        if let Some(old) = self.0 {
            let _ = session::set_thread_fsuid(old);
        }
    }
}

fn errno_text(e: Errno) -> String {
    let t = std::io::Error::from_raw_os_error(e.raw_os_error()).to_string();
    t.split(" (os error").next().unwrap_or(&t).to_string()
}

/// Check what the kernel would refuse with a bare EINVAL, so the error can say what.
fn check_add(ktype: &str, desc: &str, data: &[u8]) -> Result<()> {
    if ktype.is_empty() || ktype.len() > MAX_TYPE || ktype.contains('\0') {
        bail!(
            "TYPE {:?}: a key type name has 1 to {MAX_TYPE} bytes, no NUL",
            escape(ktype)
        );
    }
    if ktype.starts_with('.') {
        bail!("TYPE {ktype:?}: types starting with '.' are the kernel's own");
    }
    if ktype == "keyring" {
        bail!(
            "TYPE keyring: a container keyring holds keys, not keyrings (add keys of another type)"
        );
    }
    if desc.is_empty() || desc.len() > MAX_DESC || desc.contains('\0') {
        bail!("DESC: a description has 1 to {MAX_DESC} bytes, no NUL");
    }
    if data.len() > MAX_DATA {
        bail!(
            "DATA: {} bytes, more than add_key takes ({MAX_DATA})",
            data.len()
        );
    }
    Ok(())
}

fn add(a: AddArgs) -> Result<ExitCode> {
    let data = match a.data.as_deref() {
        Some("-") => {
            let mut v = Vec::new();
            std::io::stdin()
                .read_to_end(&mut v)
                .context("reading DATA from standard input")?;
            v
        }
        Some(d) => d.as_bytes().to_vec(),
        None => Vec::new(),
    };
    check_add(&a.ktype, &a.description, &data)?;
    let k = container_keyring(&a.at, &a.container, true)?;
    let _as = AsOwner::new(k.allocation.owner)?;
    // Made in this thread's keyring, which this process possesses, so that it may set the
    // key's mask before the key is anywhere a container can see it; then moved.
    let key =
        keys::add_key(&a.ktype, &a.description, &data, KEY_SPEC_THREAD_KEYRING).map_err(|e| {
            let why = match e {
                Errno::NODEV => format!("unknown key type {:?} (is its module loaded?)", a.ktype),
                Errno::INVAL => format!(
                    "the {} type refused this description or payload ({} bytes)",
                    a.ktype,
                    data.len()
                ),
                Errno::DQUOT => format!(
                    "uid {}'s key quota is used up (see /proc/key-users)",
                    k.allocation.owner
                ),
                e => errno_text(e),
            };
            anyhow::anyhow!("adding {} key {:?}: {why}", a.ktype, escape(&a.description))
        })?;
    // Possessors (the container) find and read it; the owner keeps every right.
    let mask = ((perm::VIEW | perm::READ | perm::SEARCH) << perm::POS) | (perm::ALL << perm::USR);
    let placed = keys::setperm(key, mask)
        .map_err(|e| format!("setting the mask of key {key}: {}", errno_text(e)))
        .and_then(|()| {
            keys::link(key, k.keyring).map_err(|e| {
                format!(
                    "linking key {key} into container {:?}'s keyring: {}",
                    a.container,
                    errno_text(e)
                )
            })
        });
    if let Err(why) = placed {
        let _ = keys::invalidate(key);
        bail!("{why}; the key was removed");
    }
    let _ = keys::unlink(key, KEY_SPEC_THREAD_KEYRING);
    println!("{key}");
    Ok(ExitCode::SUCCESS)
}

/// `view,read,search` as a possessor byte.
fn parse_perm(s: &str) -> Result<u32> {
    let mut m = 0;
    for w in s.split(',') {
        m |= match w.trim() {
            "view" => perm::VIEW,
            "read" => perm::READ,
            "write" => perm::WRITE,
            "search" => perm::SEARCH,
            "link" => perm::LINK,
            "setattr" => perm::SETATTR,
            other => bail!(
                "--perm {s:?}: unknown permission {other:?} (view, read, write, search, link, setattr)"
            ),
        };
    }
    if m & perm::SEARCH == 0 {
        bail!("--perm {s:?}: without search the container cannot find the key");
    }
    Ok(m)
}

fn describe(key: KeySerial, what: &str) -> Result<KeyDescription> {
    session::describe_key(key).map_err(|e| match e {
        Errno::NOKEY => anyhow::anyhow!("{what} {key}: no such key"),
        Errno::ACCESS => anyhow::anyhow!("{what} {key}: not yours to view"),
        e => anyhow::anyhow!("{what} {key}: {}", errno_text(e)),
    })
}

fn grant(a: GrantArgs) -> Result<ExitCode> {
    let pos = parse_perm(&a.perm)?;
    let d = describe(a.key, "KEY")?;
    if d.ktype == "keyring" {
        bail!("KEY {}: a keyring; grant keys one by one", a.key);
    }
    let k = container_keyring(&a.at, &a.container, true)?;
    {
        let _as = AsOwner::new(k.allocation.owner)?;
        keys::link(a.key, k.keyring).map_err(|e| {
            anyhow::anyhow!(
                "linking key {} into container {:?}'s keyring: {}",
                a.key,
                a.container,
                match e {
                    Errno::ACCESS =>
                        "the key grants you no link right (is it yours, and possessed?)".into(),
                    e => errno_text(e),
                }
            )
        })?;
    }
    // The owner keeps as owner what it had as possessor; possessors get `pos`.
    let old = d.perm;
    let usr = ((old >> perm::POS) | (old >> perm::USR)) & perm::ALL;
    let mask = (pos << perm::POS) | (usr << perm::USR) | (old & 0xffff);
    if let Err(e) = keys::setperm(a.key, mask) {
        let _as = AsOwner::new(k.allocation.owner)?;
        let _ = keys::unlink(a.key, k.keyring);
        bail!(
            "setting the mask of key {}: {}; it was not granted",
            a.key,
            errno_text(e)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn ungrant(a: UngrantArgs) -> Result<ExitCode> {
    let k = container_keyring(&a.at, &a.container, false)?;
    let _as = AsOwner::new(k.allocation.owner)?;
    keys::unlink(a.key, k.keyring).map_err(|e| match e {
        Errno::NOENT => anyhow::anyhow!(
            "key {} is not in container {:?}'s keyring",
            a.key,
            a.container
        ),
        e => anyhow::anyhow!("unlinking key {}: {}", a.key, errno_text(e)),
    })?;
    Ok(ExitCode::SUCCESS)
}

/// One key of a container keyring, as `key show` prints it.
#[derive(Debug, Serialize)]
struct ShownKey {
    serial: KeySerial,
    /// What the container's processes (its possessors) may do, as keyctl prints it.
    possessor: String,
    /// What its owner may do.
    owner_perm: String,
    perm: String,
    uid: u32,
    gid: u32,
    /// The owner and group as the container numbers them (`None`: not its ids).
    container_uid: Option<u32>,
    container_gid: Option<u32>,
    #[serde(rename = "type")]
    ktype: String,
    description: String,
}

#[derive(Debug, Serialize)]
struct ShownContainer {
    allocation: u64,
    name: Option<String>,
    keyring: KeySerial,
    keyring_perm: String,
    owner: u32,
    keys: Vec<ShownKey>,
    /// The key quota use of the container's kuids (`/proc/key-users`).
    quota: Vec<ShownQuota>,
}

#[derive(Debug, Serialize)]
struct ShownQuota {
    uid: u32,
    container_uid: u32,
    keys: u32,
    max_keys: u32,
    bytes: u32,
    max_bytes: u32,
}

/// A permission byte in keyctl's notation (`--alswrv`).
fn alswrv(byte: u32) -> String {
    [
        (0x80, '-'),
        (0x40, '-'),
        (perm::SETATTR, 'a'),
        (perm::LINK, 'l'),
        (perm::SEARCH, 's'),
        (perm::WRITE, 'w'),
        (perm::READ, 'r'),
        (perm::VIEW, 'v'),
    ]
    .iter()
    .map(|&(bit, c)| if byte & bit != 0 { c } else { '-' })
    .collect()
}

fn inside(id: u32, start: u32, len: u64) -> Option<u32> {
    let (id, start) = (u64::from(id), u64::from(start));
    (id >= start && id < start + len).then(|| (id - start) as u32)
}

fn shown(k: &KeyringInfo, users: &[KeyUser]) -> Result<ShownContainer> {
    let a: &AllocationInfo = &k.allocation;
    let _as = AsOwner::new(a.owner)?;
    let ring = describe(k.keyring, "container keyring")?;
    let listed = keys::read(k.keyring)
        .map_err(|e| anyhow::anyhow!("listing keyring {}: {}", k.keyring, errno_text(e)))?;
    let mut out = Vec::new();
    for s in session::keyring_serials(&listed) {
        // A key that went meanwhile is not shown.
        let Ok(d) = session::describe_key(s) else {
            continue;
        };
        out.push(ShownKey {
            serial: s,
            possessor: alswrv(d.perm >> perm::POS),
            owner_perm: alswrv((d.perm >> perm::USR) & perm::ALL),
            perm: format!("{:08x}", d.perm),
            uid: d.uid,
            gid: d.gid,
            container_uid: inside(d.uid, a.uid.start, a.uid.len()),
            container_gid: inside(d.gid, a.gid.start, a.gid.len()),
            ktype: d.ktype,
            description: d.description,
        });
    }
    let quota = users
        .iter()
        .filter_map(|u| {
            Some(ShownQuota {
                uid: u.uid,
                container_uid: inside(u.uid, a.uid.start, a.uid.len())?,
                keys: u.qnkeys,
                max_keys: u.maxkeys,
                bytes: u.qnbytes,
                max_bytes: u.maxbytes,
            })
        })
        .collect();
    Ok(ShownContainer {
        allocation: a.id,
        name: a.lease.name.clone(),
        keyring: k.keyring,
        keyring_perm: format!("{:08x}", ring.perm),
        owner: a.owner,
        keys: out,
        quota,
    })
}

fn keyrings(at: &Where, container: Option<&str>) -> Result<Vec<KeyringInfo>> {
    if let Some(c) = container {
        return Ok(vec![container_keyring(at, c, false)?]);
    }
    let (mut c, _): (RegistryClient, _) = at.connect()?;
    let mut out = Vec::new();
    for a in c.list()? {
        match c.keyring(&Target::Id(a.id), false) {
            Ok(k) => out.push(k),
            Err(e) if e.remote_name().is_some_and(|n| n.ends_with(".NotFound")) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

fn show(a: ShowArgs) -> Result<ExitCode> {
    let users = session::key_users(&ProcFs::new())?;
    let all = keyrings(&a.at, a.container.as_deref())?
        .iter()
        .map(|k| shown(k, &users))
        .collect::<Result<Vec<_>>>()?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(ExitCode::SUCCESS);
    }
    for c in &all {
        let name = c
            .name
            .as_deref()
            .map(|n| format!(" ({})", escape(n)))
            .unwrap_or_default();
        println!(
            "allocation #{}{name}: keyring {} _container, owner uid {}, mask {}",
            c.allocation, c.keyring, c.owner, c.keyring_perm
        );
        let mut t = Table::new();
        t.load_preset(UTF8_BORDERS_ONLY);
        t.set_header(vec![
            "SERIAL",
            "POSSESSOR",
            "OWNER",
            "UID",
            "GID",
            "INSIDE",
            "TYPE",
            "DESCRIPTION",
        ]);
        for k in &c.keys {
            let id = |v: Option<u32>| v.map_or("-".into(), |v| v.to_string());
            t.add_row(vec![
                k.serial.to_string(),
                k.possessor.clone(),
                k.owner_perm.clone(),
                k.uid.to_string(),
                k.gid.to_string(),
                format!("{}:{}", id(k.container_uid), id(k.container_gid)),
                k.ktype.clone(),
                escape(&k.description),
            ]);
        }
        println!("{t}");
        for q in &c.quota {
            println!(
                "quota of uid {} (container's {}): {}/{} keys, {}/{} bytes",
                q.uid, q.container_uid, q.keys, q.max_keys, q.bytes, q.max_bytes
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The handler's words; its program must be an executable file (of the host's; one that runs
/// `inside` is the container's, looked for when a request comes).
fn handler_words(cmd: &str, inside: bool) -> Result<Vec<String>> {
    let words: Vec<String> = cmd.split_whitespace().map(str::to_string).collect();
    let Some(prog) = words.first() else {
        bail!("--handler: empty");
    };
    if !prog.starts_with('/') {
        bail!("--handler {prog:?}: give the program's absolute path");
    }
    if inside {
        return Ok(words);
    }
    let meta = std::fs::metadata(prog).with_context(|| format!("--handler {prog}"))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        bail!("--handler {prog}: not an executable file");
    }
    Ok(words)
}

fn route(a: RouteArgs) -> Result<ExitCode> {
    let r = KeyRouteInfo {
        key_type: a.key_type,
        description: a.description,
        callout: a.callout,
        handler: handler_words(&a.handler, a.inside)?,
        inside: a.inside,
        timeout: a.timeout,
    };
    let t = target(&a.container)?;
    let (mut c, _) = a.at.connect()?;
    let all = c
        .add_key_route(&t, &r)
        .with_context(|| format!("container {:?}", a.container))?;
    println!("{}", all.len() - 1);
    Ok(ExitCode::SUCCESS)
}

fn unroute(a: UnrouteArgs) -> Result<ExitCode> {
    let t = target(&a.container)?;
    let (mut c, _) = a.at.connect()?;
    c.remove_key_route(&t, a.index)
        .with_context(|| format!("container {:?}", a.container))?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Serialize)]
struct ShownRoutes {
    allocation: u64,
    name: Option<String>,
    routes: Vec<KeyRouteInfo>,
}

fn routes(a: RoutesArgs) -> Result<ExitCode> {
    let (mut c, _) = a.at.connect()?;
    let targets = match &a.container {
        Some(s) => vec![target(s)?],
        None => c.list()?.iter().map(|x| Target::Id(x.id)).collect(),
    };
    let mut all = Vec::new();
    for t in targets {
        let got = c.key_routes(&t)?;
        if a.container.is_some() || !got.routes.is_empty() {
            all.push(ShownRoutes {
                allocation: got.allocation.id,
                name: got.allocation.lease.name.clone(),
                routes: got.routes,
            });
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    t.set_header(vec![
        "ALLOCATION",
        "#",
        "TYPE",
        "DESCRIPTION",
        "CALLOUT",
        "HANDLER",
        "RUNS",
        "TIMEOUT",
    ]);
    for s in &all {
        let name = s
            .name
            .as_deref()
            .map(|n| format!(" ({})", escape(n)))
            .unwrap_or_default();
        for (i, r) in s.routes.iter().enumerate() {
            t.add_row(vec![
                format!("#{}{name}", s.allocation),
                i.to_string(),
                escape(&r.key_type),
                escape(&r.description),
                escape(&r.callout),
                escape(&r.handler.join(" ")),
                if r.inside { "inside" } else { "on the host" }.to_string(),
                format!("{} s", r.timeout),
            ]);
        }
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_print_as_keyctl_does() {
        assert_eq!(alswrv(0x3f), "--alswrv");
        assert_eq!(alswrv(0x0b), "----s-rv");
        assert_eq!(alswrv(0), "--------");
    }

    #[test]
    fn perms_parse() {
        assert_eq!(parse_perm("view,read,search").unwrap(), 0x0b);
        assert_eq!(parse_perm("search").unwrap(), 0x08);
        assert!(parse_perm("view,read")
            .unwrap_err()
            .to_string()
            .contains("without search"));
        assert!(parse_perm("view,fly,search")
            .unwrap_err()
            .to_string()
            .contains("\"fly\""));
    }

    #[test]
    fn adds_are_checked_before_the_kernel() {
        assert!(check_add("user", "a\0b", b"x")
            .unwrap_err()
            .to_string()
            .contains("no NUL"));
        assert!(check_add(".x", "d", b"").is_err());
        assert!(check_add("user", "d", &vec![0; MAX_DATA + 1]).is_err());
        assert!(check_add(&"t".repeat(32), "d", b"").is_err());
        assert!(check_add("user", "d", b"x").is_ok());
    }
}
