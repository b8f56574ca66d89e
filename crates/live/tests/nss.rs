//! Host users from NSS beyond the files: userdb services planted in a directory of the test's
//! own (one a host user source, one named as credns's own face, whose records must not count),
//! read as the audit reads /run/systemd/userdb; then a namespace mapping the NSS user's id is
//! reported as mapping a host user's id.

mod common;

use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{ns_ino, write_maps, Planted};
use credns_live::{audit, FindingKind, HostSnapshot};
use credns_sys::ProcFs;
use credns_varlink::{Call, ErrorReply, Interface, Limits, Server, ServerInfo};
use serde_json::{json, Value};

const IDL: &str = "interface io.systemd.UserDatabase\n\
method GetUserRecord(uid: ?int, userName: ?string, service: string) -> (record: object, incomplete: bool)\n\
method GetGroupRecord(gid: ?int, groupName: ?string, service: string) -> (record: object, incomplete: bool)\n\
error NoRecordFound()\n";

/// A userdb service with one user and one group.
struct Users {
    user: &'static str,
    id: u32,
}

impl Interface for Users {
    fn name(&self) -> &str {
        "io.systemd.UserDatabase"
    }

    fn description(&self) -> &str {
        IDL
    }

    fn call(&self, call: &mut Call<'_>) -> Result<Value, ErrorReply> {
        let record = match call.method() {
            "GetUserRecord" => json!({ "userName": self.user, "uid": self.id, "gid": self.id }),
            _ => json!({ "groupName": self.user, "gid": self.id, "members": [self.user] }),
        };
        Ok(json!({ "record": record, "incomplete": false }))
    }
}

/// Serve `users` on `dir`/`name` until dropped.
struct Served(Arc<AtomicBool>, Option<std::thread::JoinHandle<()>>);

impl Drop for Served {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
        if let Some(h) = self.1.take() {
            let _ = h.join();
        }
    }
}

fn serve(dir: &std::path::Path, name: &str, users: Users) -> Served {
    let listener = UnixListener::bind(dir.join(name)).unwrap();
    let mut server = Server::new(
        ServerInfo {
            vendor: "test".into(),
            product: "test".into(),
            version: "0".into(),
            url: String::new(),
        },
        Limits::default(),
    );
    server.add(Arc::new(users));
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let h = std::thread::spawn(move || server.serve(listener, &s).unwrap());
    Served(stop, Some(h))
}

#[test]
fn nss_users_of_the_systemd_source_are_host_users() {
    let etc = tempfile::tempdir().unwrap();
    std::fs::write(etc.path().join("passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    std::fs::write(etc.path().join("group"), "root:x:0:\n").unwrap();
    std::fs::write(
        etc.path().join("nsswitch.conf"),
        "passwd: files systemd sss\ngroup: files systemd\n",
    )
    .unwrap();
    let userdb = tempfile::tempdir().unwrap();
    let _a = serve(
        userdb.path(),
        "io.test.Users",
        Users {
            user: "nssuser",
            id: 4_100_042,
        },
    );
    let _b = serve(
        userdb.path(),
        "io.credns.UserDatabase",
        Users {
            user: "ct-allocation-0",
            id: 4_100_043,
        },
    );
    let procfs = ProcFs::new();
    let snap =
        HostSnapshot::take_with_userdb(&procfs, etc.path(), Some(userdb.path()), &mut |_, _| {})
            .unwrap();
    let users: Vec<(&str, u32)> = snap
        .files
        .passwd
        .iter()
        .map(|p| (p.name.as_str(), p.uid))
        .collect();
    assert_eq!(users, [("root", 0), ("nssuser", 4_100_042)]);
    let groups: Vec<(&str, u32)> = snap
        .files
        .groups
        .iter()
        .map(|g| (g.name.as_str(), g.gid))
        .collect();
    assert_eq!(groups, [("root", 0), ("nssuser", 4_100_042)]);
    let conf = etc.path().join("nsswitch.conf");
    assert_eq!(
        snap.files.warnings,
        [format!(
            "{}: passwd source \"sss\" is not read by credns audit (its users are not checked)",
            conf.display()
        )]
    );
    // Without the systemd source, nothing is asked.
    std::fs::write(&conf, "passwd: files\ngroup: files\n").unwrap();
    let snap =
        HostSnapshot::take_with_userdb(&procfs, etc.path(), Some(userdb.path()), &mut |_, _| {})
            .unwrap();
    assert_eq!(snap.files.passwd.len(), 1);
}

#[test]
fn a_namespace_mapping_an_nss_users_id_is_reported() {
    if !credns_sys::is_root() {
        if std::env::var_os("CREDNS_REQUIRE_ALL").is_some() {
            panic!("a_namespace_mapping_an_nss_users_id_is_reported needs root");
        }
        eprintln!("skipped: needs root (writes a namespace's maps to another user's id)");
        return;
    }
    let etc = tempfile::tempdir().unwrap();
    std::fs::write(etc.path().join("passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    std::fs::write(etc.path().join("nsswitch.conf"), "passwd: files systemd\n").unwrap();
    let userdb = tempfile::tempdir().unwrap();
    let _a = serve(
        userdb.path(),
        "io.test.Users",
        Users {
            user: "nssuser",
            id: 4_100_044,
        },
    );
    let mut p = Planted(Vec::new());
    let ns = p.holder(&[], ns_ino(std::process::id()));
    write_maps(&[], ns, "0 4100044 1");
    let snap = HostSnapshot::take_with_userdb(
        &ProcFs::new(),
        etc.path(),
        Some(userdb.path()),
        &mut |_, _| {},
    )
    .unwrap();
    let report = audit(&snap, &[]);
    let hit: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::HostIdMapped && f.message.contains("nssuser"))
        .map(|f| f.message.as_str())
        .collect();
    let ino = ns_ino(ns);
    assert_eq!(
        hit,
        [
            format!("user namespace user:[{ino}] (owner 0 root) maps the uid of host users other than its owner's: 4100044 (nssuser)"),
            format!("user namespace user:[{ino}] (owner 0 root) maps the gid of host groups other than its owner's: 4100044 (nssuser)"),
        ]
    );
}
