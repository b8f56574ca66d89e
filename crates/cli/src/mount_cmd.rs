//! `credns mount`: make a directory tree available elsewhere through an idmapped mount.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::{ArgGroup, Args};
use credns_idmap::{Extent, IdKind, IdMap};
use credns_sys::{DetachedMount, MappingUserns, Pid, ProcFs};
use serde_json::json;

/// Show a tree elsewhere with its on-disk ids translated (an idmapped mount)
///
/// SRC appears at DST through an idmapped mount (open_tree(2) clone, mount_setattr(2)
/// MOUNT_ATTR_IDMAP, move_mount(2)). Needs CAP_SYS_ADMIN (root).
///
/// The idmap says which on-disk id appears as which host id (kuid/kgid) through DST; the
/// same map is used for uids and gids. On-disk ids outside it show as 65534 and cannot be written
/// through DST; files created through DST are stored with the on-disk id of the creator's
/// kuid, and a creator whose kuid is outside the map gets EOVERFLOW.
///
///   --map "0 100000 65536"   on-disk 0..65535 appear as 100000..165535 (uid_map write format:
///                            DISK-FIRST HOST-FIRST COUNT per line; extents may also be
///                            separated by ','; @FILE reads the text from a file).
///
///   --like PID               as PID's user namespace maps ids: on-disk N appears as the kuid
///                            of PID's namespace id N (on-disk 0 as its root), so PID sees the
///                            files with their on-disk owners.
///
///   --name ALLOCATION        as the registry allocation ALLOCATION maps its namespace's ids
///                            (on-disk 0.. onto its host range, and its high range if any).
///
///   --disk-base B            shift the on-disk side by B: on-disk B+N appears as the id that
///                            N would have (an image stored at 300000..399999 shown as a
///                            container whose 0.. is 100000..: --map "0 100000 100000"
///                            --disk-base 300000).
///
/// Unmount with umount(8) (`umount DST`).
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
#[command(group(ArgGroup::new("idmap").required(true).args(["map", "like", "name"])))]
pub struct MountArgs {
    /// The tree to show (a directory; with --recursive the mounts below it come too).
    src: PathBuf,
    /// Where to show it (an existing directory).
    dst: PathBuf,
    /// The idmap in uid_map write format, or @FILE.
    #[arg(long, value_name = "SPEC")]
    map: Option<String>,
    /// Take the idmap from a process's user namespace (/proc/PID/uid_map and gid_map).
    #[arg(long, value_name = "PID")]
    like: Option<i32>,
    /// Take the idmap from a registry allocation (by name lease).
    #[arg(long, value_name = "ALLOCATION")]
    name: Option<String>,
    /// Where --name finds the allocation.
    #[command(flatten)]
    at: crate::registry_cmd::Where,
    /// The first on-disk id of the tree (added to the idmap's on-disk side).
    #[arg(long, value_name = "B", default_value_t = 0)]
    disk_base: u32,
    /// Make DST read-only.
    #[arg(long)]
    ro: bool,
    /// Clone the mounts below SRC too, each idmapped.
    #[arg(long)]
    recursive: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// The map `--map` gives: write-format text, commas allowed between extents.
pub fn parse_spec(spec: &str) -> Result<IdMap> {
    let (name, text) = match spec.strip_prefix('@') {
        Some(path) => (
            path.to_string(),
            std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        ),
        None => ("--map".to_string(), spec.replace(',', "\n")),
    };
    let extents = credns_idmap::parse_write(text.as_bytes()).map_err(|rule| {
        anyhow!(
            "{name}: {rule} ({} from {})",
            rule.errno(),
            rule.kernel_function()
        )
    })?;
    IdMap::new(extents).map_err(|e| anyhow!("{name}: {e}"))
}

/// Shift the on-disk (upper) side of `map` by `base`.
pub fn shift_disk(map: &IdMap, base: u32) -> Result<IdMap> {
    if base == 0 {
        return Ok(map.clone());
    }
    let mut out = Vec::with_capacity(map.len());
    for e in map.display_order() {
        let first = e
            .first
            .checked_add(base)
            .filter(|f| u64::from(*f) + u64::from(e.count) <= u64::from(u32::MAX))
            .ok_or_else(|| {
                anyhow!("--disk-base {base}: extent \"{e}\" would reach past on-disk id 4294967294")
            })?;
        out.push(Extent::new(first, e.lower_first, e.count));
    }
    IdMap::new(out).map_err(|e| anyhow!("--disk-base {base}: {e}"))
}

fn maps_from(a: &MountArgs) -> Result<(IdMap, IdMap, String)> {
    if let Some(spec) = &a.map {
        let m = parse_spec(spec)?;
        return Ok((m.clone(), m, "--map".into()));
    }
    if let Some(pid) = a.like {
        let fs = ProcFs::new();
        let uid = fs
            .read_map(Pid(pid), IdKind::Uid)
            .with_context(|| format!("--like {pid}"))?;
        let gid = fs
            .read_map(Pid(pid), IdKind::Gid)
            .with_context(|| format!("--like {pid}"))?;
        if uid.is_empty() || gid.is_empty() {
            bail!("--like {pid}: the process's user namespace has no uid or gid map written yet");
        }
        return Ok((uid, gid, format!("--like {pid}")));
    }
    let name = a.name.as_deref().expect("clap requires one of the three");
    let (mut client, _) = a.at.connect().with_context(|| format!("--name {name}"))?;
    let alloc = client
        .show(&credns_service::Target::Name(name.to_string()))
        .with_context(|| format!("--name {name}"))?;
    let uid = alloc.uid_map().with_context(|| format!("--name {name}"))?;
    let gid = alloc.gid_map().with_context(|| format!("--name {name}"))?;
    Ok((uid, gid, format!("--name {name}")))
}

fn extents_json(m: &IdMap) -> serde_json::Value {
    m.display_order()
        .iter()
        .map(|e| json!({"disk_first": e.first, "host_first": e.lower_first, "count": e.count}))
        .collect()
}

fn show_map(m: &IdMap) -> String {
    m.display_order()
        .iter()
        .map(|e| {
            format!(
                "on-disk {}..{} -> {}..{}",
                e.first,
                e.upper_last(),
                e.lower_first,
                e.lower_last()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn run(a: MountArgs) -> Result<ExitCode> {
    let (uid, gid, from) = maps_from(&a)?;
    let uid = shift_disk(&uid, a.disk_base)?;
    let gid = shift_disk(&gid, a.disk_base)?;
    let dst: &Path = &a.dst;
    if !dst.is_dir() {
        bail!("{}: not an existing directory", dst.display());
    }
    let userns = MappingUserns::new(&uid, &gid).context("making the idmap's user namespace")?;
    let tree = DetachedMount::clone_tree(&a.src, a.recursive)?;
    tree.set_idmap(&userns)?;
    if a.ro {
        tree.set_read_only()?;
    }
    let fs_type = tree.fs_type().to_string();
    tree.attach(dst)?;
    if a.json {
        println!(
            "{}",
            json!({
                "source": a.src,
                "target": a.dst,
                "fs_type": fs_type,
                "idmap_from": from,
                "disk_base": a.disk_base,
                "read_only": a.ro,
                "recursive": a.recursive,
                "uid_map": extents_json(&uid),
                "gid_map": extents_json(&gid),
            })
        );
    } else {
        let mut flags = vec!["idmapped"];
        if a.ro {
            flags.push("read-only");
        }
        if a.recursive {
            flags.push("recursive");
        }
        println!(
            "mounted {} ({fs_type}) at {} ({}), idmap from {from}",
            a.src.display(),
            a.dst.display(),
            flags.join(", ")
        );
        println!("  uids: {}", show_map(&uid));
        println!("  gids: {}", show_map(&gid));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_with_commas_and_disk_base() {
        let m = parse_spec("0 100000 1000,1000 300000 64536").unwrap();
        assert_eq!(m.map_down(5), Some(100005));
        assert_eq!(m.map_down(1000), Some(300000));
        let s = shift_disk(&m, 300000).unwrap();
        assert_eq!(s.map_down(300005), Some(100005));
        assert_eq!(s.map_down(5), None);
        let e = shift_disk(&m, u32::MAX - 10).unwrap_err().to_string();
        assert_eq!(
            e,
            "--disk-base 4294967285: extent \"0 100000 1000\" would reach past on-disk id \
             4294967294"
        );
        let e = parse_spec("0 100000").unwrap_err().to_string();
        assert!(e.starts_with("--map: "), "{e}");
    }
}
