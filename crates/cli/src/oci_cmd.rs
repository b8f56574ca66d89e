//! `credns oci BUNDLE`: give an OCI bundle's container an allocated ID range.
//!
//! The allocation is leased to the name `oci:` followed by the bundle directory's canonical
//! absolute path (symlinks resolved), so running the command again for the same bundle, by any
//! spelling of its path, reuses the allocation. `config.json` gets `linux.uidMappings` and
//! `linux.gidMappings` from the allocation and a `user` entry in `linux.namespaces`; nothing
//! else is changed (keys are rewritten in serde_json's order). The new file replaces the old one
//! atomically (a temporary file in the bundle, fsynced, then renamed over it).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use credns_idmap::formats::{parse_oci_config_value, set_oci_mappings};
use serde_json::{json, Value};

use crate::registry_cmd::Where;

#[derive(Debug, Args)]
pub struct OciArgs {
    /// The bundle directory (holding config.json).
    bundle: PathBuf,
    /// Ids to allocate (default: the policy's, 65536).
    #[arg(long)]
    size: Option<u64>,
    #[command(flatten)]
    at: Where,
}

/// The lease name of a bundle: `oci:` and its canonical path.
pub fn bundle_lease_name(canonical: &std::path::Path) -> String {
    format!("oci:{}", canonical.display())
}

pub fn run(args: OciArgs) -> Result<ExitCode> {
    let bundle = std::fs::canonicalize(&args.bundle)
        .with_context(|| format!("bundle {}", args.bundle.display()))?;
    if !bundle.is_dir() {
        bail!("bundle {}: not a directory", bundle.display());
    }
    let config_path = bundle.join("config.json");
    let text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    let mut config: Value = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!("{}:{}:{}: {e}", config_path.display(), e.line(), e.column())
    })?;
    // Check the document's shape before allocating anything: bad input changes nothing.
    parse_oci_config_value(&config, &config_path.display().to_string())?;
    let namespaces_ok = match config.pointer("/linux/namespaces") {
        None | Some(Value::Null) | Some(Value::Array(_)) => true,
        Some(_) => false,
    };
    if !namespaces_ok {
        bail!(
            "{}: linux.namespaces: expected an array",
            config_path.display()
        );
    }
    if !matches!(
        config.get("linux"),
        None | Some(Value::Null) | Some(Value::Object(_))
    ) {
        bail!("{}: linux: expected an object", config_path.display());
    }
    let name = bundle_lease_name(&bundle);
    let (mut client, _) = args.at.connect()?;
    let opts = credns_service::AllocOptions {
        size: args.size,
        ..Default::default()
    };
    let a = client.allocate_name(&name, &opts)?.allocation;
    if let Some(size) = args.size.filter(|&s| s != a.uid.len()) {
        bail!(
            "{name} already holds allocation #{} of {} ids, not {size}; release it first",
            a.id,
            a.uid.len()
        );
    }
    let (id, uid, gid) = (a.id, a.uid, a.gid);
    let (uid_map, gid_map) = (a.uid_map()?, a.gid_map()?);
    set_oci_mappings(&mut config, Some(&uid_map), Some(&gid_map))?;
    let linux = config
        .get_mut("linux")
        .and_then(Value::as_object_mut)
        .expect("set_oci_mappings made linux an object");
    let ns = linux.entry("namespaces").or_insert_with(|| json!([]));
    if ns.is_null() {
        *ns = json!([]);
    }
    let list = ns.as_array_mut().expect("checked above");
    if !list
        .iter()
        .any(|n| n.get("type").and_then(Value::as_str) == Some("user"))
    {
        list.push(json!({ "type": "user" }));
    }
    let mut out = serde_json::to_string_pretty(&config)?;
    out.push('\n');
    write_atomically(&config_path, out.as_bytes())?;
    println!(
        "{name}: allocation #{id} uids {}-{} gids {}-{} ({} ids)",
        uid.start,
        uid.end,
        gid.start,
        gid.end,
        uid.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Replace `path` by `data`: a temporary file beside it with the same permissions, fsynced, then
/// renamed over it, so a reader sees the old or the new file, never a part.
fn write_atomically(path: &std::path::Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().context("config.json has no directory")?;
    let tmp = dir.join(format!(".config.json.credns-{}", std::process::id()));
    let perms = std::fs::metadata(path)?.permissions();
    let result = (|| -> Result<()> {
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.set_permissions(perms)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
