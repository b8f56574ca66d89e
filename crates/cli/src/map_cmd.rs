//! `credns map`: check a map as the kernel would judge its write, translate ids between
//! namespaces, and show a live process's namespace chain.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use credns_idmap::{
    judge_write, munge, IdKind, IdMap, Kgid, Kuid, OpenerNs, WriteContext, WriteRule, OVERFLOW_ID,
};
use credns_sys::{Pid, ProcFs};
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum MapCommand {
    /// Judge a map file as the kernel would judge writing it to /proc/PID/uid_map.
    ///
    /// By default the writer is host root writing a child namespace's map; --parent gives the
    /// parent's map (in kernel ids) for a nested namespace, --unprivileged UID:GID a writer with
    /// no capabilities writing its own namespace's map. Exit status 0 when the kernel would
    /// accept it, 1 when it would refuse.
    Check(CheckArgs),
    /// Translate an id from one namespace to another.
    Translate(TranslateArgs),
    /// Show the user-namespace chain of a live process, with each level's map and view of its ids.
    Show(ShowArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    Uid,
    Gid,
}

impl From<Kind> for IdKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Uid => IdKind::Uid,
            Kind::Gid => IdKind::Gid,
        }
    }
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The map text (the write format, or a /proc/PID/uid_map copy); `-` reads standard input.
    file: PathBuf,
    /// Which map the text is written to.
    #[arg(long, value_enum, default_value = "uid")]
    kind: Kind,
    /// The parent namespace's map in kernel ids (a copy of its /proc/PID/uid_map).
    #[arg(long, value_name = "MAPFILE")]
    parent: Option<PathBuf>,
    /// The writer is this uid:gid with no capabilities, writing its own namespace's map
    /// (after `unshare -U`), with setgroups already denied when checking a gid map.
    #[arg(long, value_name = "UID:GID")]
    unprivileged: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct TranslateArgs {
    /// The id to translate.
    id: u32,
    /// The namespace the id belongs to: `host`, a PID, `map:FIRST:LOWER:COUNT[,...]` (kernel ids) or a map file.
    #[arg(long, default_value = "host")]
    from: String,
    /// The namespace to show it in (same forms as --from).
    #[arg(long, default_value = "host")]
    to: String,
    /// uid or gid.
    #[arg(long, value_enum, default_value = "uid")]
    kind: Kind,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The process (`self` or a PID; `$$` in a shell is the shell itself).
    pid: String,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: MapCommand) -> Result<ExitCode> {
    match cmd {
        MapCommand::Check(a) => check(a),
        MapCommand::Translate(a) => translate(a),
        MapCommand::Show(a) => show(a),
    }
}

fn read_input(path: &PathBuf) -> Result<(String, Vec<u8>)> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading standard input")?;
        Ok(("<stdin>".into(), buf))
    } else {
        let buf = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Ok((path.display().to_string(), buf))
    }
}

/// A map in kernel ids from text (write or /proc format).
fn parse_kernel_map(name: &str, text: &[u8]) -> Result<IdMap> {
    if text.iter().all(u8::is_ascii_whitespace) {
        return Ok(IdMap::empty());
    }
    let extents = credns_idmap::parse_write(text)
        .map_err(|rule| anyhow::anyhow!("{name}: {}", located(&rule)))?;
    IdMap::new(extents).with_context(|| format!("{name}: not a valid map"))
}

fn located(rule: &WriteRule) -> String {
    format!("{rule} ({} from {})", rule.errno(), rule.kernel_function())
}

fn check(a: CheckArgs) -> Result<ExitCode> {
    let (name, text) = read_input(&a.file)?;
    let kind: IdKind = a.kind.into();
    let mut ctx = WriteContext::host_root(kind);
    if let Some(p) = &a.parent {
        let (pname, ptext) = read_input(p)?;
        ctx.parent_map = parse_kernel_map(&pname, &ptext)?;
    }
    if let Some(spec) = &a.unprivileged {
        let (uid, gid) = spec
            .split_once(':')
            .and_then(|(u, g)| Some((u.parse::<u32>().ok()?, g.parse::<u32>().ok()?)))
            .with_context(|| {
                format!("--unprivileged {spec:?}: expected UID:GID, two decimal numbers")
            })?;
        // A process that unshared its own namespace: owner, full caps inside, none in the parent.
        ctx.opener_ns = OpenerNs::Target;
        ctx.owner = Kuid(uid);
        ctx.opener_euid = Kuid(uid);
        ctx.opener_egid = Kgid(gid);
        ctx.parent_could_setfcap = false;
        ctx.opener_cap_setfcap_in_parent = false;
        ctx.writer_cap_setid_in_parent = false;
        ctx.opener_cap_setid_in_parent = false;
        ctx.setgroups_allowed = false;
    }
    let verdict = judge_write(&ctx, &text);
    if a.json {
        let v = match &verdict {
            Ok(ok) => json!({
                "file": name, "kind": kind, "accepted": true,
                "extents": ok.written, "kernel": ok.kernel,
            }),
            Err(rule) => json!({
                "file": name, "kind": kind, "accepted": false,
                "errno": rule.errno(), "kernel_function": rule.kernel_function(),
                "rule": rule, "message": rule.to_string(),
            }),
        };
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        match &verdict {
            Ok(ok) => {
                println!(
                    "{name}: ok: the kernel accepts this {} ({} extent{})",
                    kind.file_name(),
                    ok.written.len(),
                    if ok.written.len() == 1 { "" } else { "s" }
                );
                print!("{}", ok.kernel.to_proc_format());
            }
            Err(rule) => {
                let at = match rule.position() {
                    Some((line, Some(col))) => format!(":{line}:{col}"),
                    Some((line, None)) => format!(":{line}"),
                    None => String::new(),
                };
                println!("{name}{at}: refused: {}", located(rule));
            }
        }
    }
    Ok(if verdict.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A namespace named on the command line, as a kernel map (lower ids in the reader's numbering).
struct NsSpec {
    label: String,
    map: IdMap,
}

fn ns_spec(procfs: &ProcFs, spec: &str, kind: IdKind) -> Result<NsSpec> {
    if spec == "host" {
        return Ok(NsSpec {
            label: "the host (initial namespace)".into(),
            map: IdMap::identity(),
        });
    }
    if let Some(list) = spec.strip_prefix("map:") {
        let mut text = String::new();
        for (i, ext) in list.split(',').enumerate() {
            let f: Vec<&str> = ext.split(':').collect();
            if f.len() != 3 {
                bail!(
                    "{spec:?}: extent {} {ext:?}: expected FIRST:LOWER:COUNT",
                    i + 1
                );
            }
            text.push_str(&f.join(" "));
            text.push('\n');
        }
        let map = parse_kernel_map(spec, text.as_bytes())?;
        return Ok(NsSpec {
            label: format!("map {list}"),
            map,
        });
    }
    if let Ok(pid) = spec.parse::<i32>() {
        let pid = Pid(pid);
        let map = procfs.read_map(pid, kind)?;
        let ns = procfs.userns(pid)?;
        return Ok(NsSpec {
            label: format!("pid {pid} ({ns})"),
            map,
        });
    }
    let (name, text) = read_input(&PathBuf::from(spec))?;
    Ok(NsSpec {
        label: name.clone(),
        map: parse_kernel_map(&name, &text)?,
    })
}

fn translate(a: TranslateArgs) -> Result<ExitCode> {
    let procfs = ProcFs::new();
    let kind: IdKind = a.kind.into();
    let from = ns_spec(&procfs, &a.from, kind)?;
    let to = ns_spec(&procfs, &a.to, kind)?;
    let kernel = from.map.map_down(a.id);
    let result = kernel.and_then(|k| to.map.map_up(k));
    if a.json {
        let v = json!({
            "kind": kind, "id": a.id, "from": from.label, "to": to.label,
            "kernel_id": kernel, "result": result, "shown_as": munge(result),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        match (kernel, result) {
            (None, _) => println!("{kind} {} is not mapped in {} (the kernel shows it as {OVERFLOW_ID})", a.id, from.label),
            (Some(k), None) => println!(
                "{kind} {} in {} is kernel {kind} {k}, which {} does not map (shown there as {OVERFLOW_ID})",
                a.id, from.label, to.label
            ),
            (Some(k), Some(r)) => println!("{kind} {} in {} is kernel {kind} {k}, which is {kind} {r} in {}", a.id, from.label, to.label),
        }
    }
    Ok(if result.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[derive(serde::Serialize)]
struct Level {
    level: usize,
    userns: String,
    seen_through_pid: Option<i32>,
    uid_map: Option<IdMap>,
    gid_map: Option<IdMap>,
    /// real, effective, saved, filesystem uid as this level numbers them (65534 where unmapped).
    uids: Option<[u32; 4]>,
    gids: Option<[u32; 4]>,
}

fn show(a: ShowArgs) -> Result<ExitCode> {
    let procfs = ProcFs::new();
    let pid = if a.pid == "self" {
        Pid(std::process::id() as i32)
    } else {
        Pid(a
            .pid
            .parse()
            .with_context(|| format!("{:?}: expected a process id or `self`", a.pid))?)
    };
    let status = procfs.status(pid)?;
    let chain = credns_sys::userns_ancestry(&procfs, pid)?;
    // chain[0] is the process's namespace; the last is ours (the reader's), whose ids are the
    // numbering /proc shows us.
    let depth = chain.len() - 1;
    let mut levels = Vec::new();
    for (i, ns) in chain.iter().rev().enumerate() {
        let (seen, uid_map, gid_map) = if i == 0 {
            (None, Some(IdMap::identity()), Some(IdMap::identity()))
        } else if i == depth {
            (
                Some(pid.0),
                Some(procfs.read_map(pid, IdKind::Uid)?),
                Some(procfs.read_map(pid, IdKind::Gid)?),
            )
        } else {
            match procfs.find_pid_in_userns(*ns)? {
                Some(p) => (
                    Some(p.0),
                    procfs.read_map(p, IdKind::Uid).ok(),
                    procfs.read_map(p, IdKind::Gid).ok(),
                ),
                None => (None, None, None),
            }
        };
        let view = |m: &Option<IdMap>, ids: [u32; 4]| {
            m.as_ref()
                .map(|m| ids.map(|k| m.map_up_munged(k, OVERFLOW_ID)))
        };
        levels.push(Level {
            level: i,
            userns: ns.to_string(),
            seen_through_pid: seen,
            uids: view(&uid_map, status.uid),
            gids: view(&gid_map, status.gid),
            uid_map,
            gid_map,
        });
    }
    if a.json {
        let v = json!({ "pid": pid.0, "name": status.name, "levels": levels });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "pid {} ({}): {} user namespace level{} below this reader's",
        pid,
        status.name,
        depth,
        if depth == 1 { "" } else { "s" }
    );
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    table.set_header(vec![
        "level",
        "user namespace",
        "uid_map (first lower count)",
        "gid_map",
        "uid r/e/s/fs",
        "gid r/e/s/fs",
    ]);
    for l in &levels {
        let map_text = |m: &Option<IdMap>| match m {
            Some(_) if l.level == 0 => "(the reader's own ids)".to_string(),
            Some(m) if m.is_empty() => "(not written)".into(),
            Some(m) => m.to_write_format().trim_end().to_string(),
            None => "(no live process there to read it from)".into(),
        };
        let ids = |v: &Option<[u32; 4]>| match v {
            Some(v) => v.map(|x| x.to_string()).join("/"),
            None => "?".into(),
        };
        table.add_row(vec![
            l.level.to_string(),
            format!(
                "{}{}",
                l.userns,
                l.seen_through_pid
                    .map(|p| format!(" (pid {p})"))
                    .unwrap_or_default()
            ),
            map_text(&l.uid_map),
            map_text(&l.gid_map),
            ids(&l.uids),
            ids(&l.gids),
        ]);
    }
    println!("{table}");
    let own = levels.last().and_then(|l| l.uids);
    if let Some(u) = own {
        if u[1] == OVERFLOW_ID && status.uid[1] != OVERFLOW_ID {
            println!("note: its effective uid is not mapped in its own namespace; inside it shows as {OVERFLOW_ID}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
