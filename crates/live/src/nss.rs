//! Host users and groups beyond /etc/passwd and /etc/group: the sources nsswitch.conf names.
//!
//! The `systemd` source (nss-systemd) is read where nss-systemd reads it: from every
//! `io.systemd.UserDatabase` service whose socket is in /run/systemd/userdb, asked for all
//! its records, except the multiplexer and the NSS bridge (they repeat the others and the
//! files) and credns's own (its records are the names of the registry's allocations, not host
//! users). Other sources (ldap, sss, nis, ...) are not read: each is named in the snapshot's
//! warnings, so the report says what it could not see.

use std::path::Path;
use std::time::Duration;

use credns_registry::{GroupEntry, PasswdEntry};
use credns_varlink::Client;
use serde_json::{json, Value};

/// Where userdb services put their sockets.
pub const USERDB_DIR: &str = "/run/systemd/userdb";

/// Services whose records are not host users of their own.
const NOT_READ: &[&str] = &[
    "io.systemd.Multiplexer",
    "io.systemd.NameServiceSwitch",
    "io.credns.UserDatabase",
];

/// A service that does not answer within this is skipped (and said so).
const TIMEOUT: Duration = Duration::from_secs(2);

/// At most this many records are taken from one service.
const MAX_RECORDS: usize = 1 << 20;

/// What the NSS sources beyond the files gave.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NssUsers {
    /// Users (line 0: not from a file).
    pub users: Vec<PasswdEntry>,
    /// Groups.
    pub groups: Vec<GroupEntry>,
    /// What could not be read, as messages.
    pub warnings: Vec<String>,
}

/// Read the sources of `etc`/nsswitch.conf beyond `files`: `systemd` from the userdb services
/// in `userdb_dir`; the others named as unread.
pub fn read(etc: &Path, userdb_dir: &Path) -> NssUsers {
    let mut out = NssUsers::default();
    let conf = etc.join("nsswitch.conf");
    let text = std::fs::read_to_string(&conf).unwrap_or_default();
    let mut systemd = false;
    for db in ["passwd", "group"] {
        for s in credns_registry::nsswitch::sources(&text, db) {
            match s.as_str() {
                "files" | "compat" => {}
                "systemd" => systemd = true,
                other => out.warnings.push(format!(
                    "{}: {db} source {other:?} is not read by credns audit (its users are not checked)",
                    conf.display()
                )),
            }
        }
    }
    if systemd {
        read_userdb(userdb_dir, &mut out);
    }
    out
}

/// Every service socket in `dir` but those in [`NOT_READ`], sorted by name.
fn services(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| {
            use std::os::unix::fs::FileTypeExt;
            e.file_type().is_ok_and(|t| t.is_socket())
        })
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !NOT_READ.contains(&n.as_str()))
        .collect();
    v.sort();
    v
}

fn read_userdb(dir: &Path, out: &mut NssUsers) {
    for service in services(dir) {
        let path = dir.join(&service);
        for (method, user) in [("GetUserRecord", true), ("GetGroupRecord", false)] {
            match records(&path, &service, method) {
                Ok(recs) => {
                    for r in recs {
                        add_record(out, &r, user);
                    }
                }
                Err(e) => out.warnings.push(format!(
                    "userdb service {service} ({}): {method}: {e}",
                    path.display()
                )),
            }
        }
    }
}

/// All records of one service (`more`), or none when it has none (`NoRecordFound`).
fn records(path: &Path, service: &str, method: &str) -> Result<Vec<Value>, String> {
    let mut c = Client::connect_timeout(path, TIMEOUT).map_err(|e| e.to_string())?;
    let method = format!("io.systemd.UserDatabase.{method}");
    match c.call_more(&method, json!({ "service": service }), &[]) {
        Ok(v) => Ok(v.into_iter().take(MAX_RECORDS).collect()),
        Err(e) if e.remote_name() == Some("io.systemd.UserDatabase.NoRecordFound") => Ok(vec![]),
        Err(e) => Err(e.to_string()),
    }
}

fn add_record(out: &mut NssUsers, reply: &Value, user: bool) {
    let r = &reply["record"];
    let id = |k: &str| r[k].as_u64().and_then(|v| u32::try_from(v).ok());
    if user {
        let (Some(name), Some(uid)) = (r["userName"].as_str(), id("uid")) else {
            return;
        };
        out.users.push(PasswdEntry {
            name: name.to_string(),
            uid,
            gid: id("gid").unwrap_or(uid),
            line: 0,
        });
    } else {
        let (Some(name), Some(gid)) = (r["groupName"].as_str(), id("gid")) else {
            return;
        };
        let members = r["members"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        out.groups.push(GroupEntry {
            name: name.to_string(),
            gid,
            members,
            line: 0,
        });
    }
}
