//! `io.systemd.UserDatabase`: every method and error through a varlink client, and the names
//! through nss-systemd (`getent`, `ls -l`) in a private mount namespace whose
//! /run/systemd/userdb holds only this test's socket.

mod common;

use std::path::Path;
use std::process::Command;

use credns_registry::{HighWindow, Policy};
use credns_service::{AllocOptions, Config, RegistryClient, Server, Service};
use credns_varlink::Client;
use serde_json::{json, Value};

const SERVICE: &str = "io.credns.UserDatabase";

struct Daemon {
    dir: tempfile::TempDir,
    registry: std::path::PathBuf,
    userdb: std::path::PathBuf,
}

fn start() -> Daemon {
    let dir = common::open_tempdir();
    let registry = dir.path().join("io.credns.Registry");
    let userdb = dir.path().join("userdb").join(SERVICE);
    let mut cfg = Config::new(dir.path().join("registry.redb"));
    cfg.policy = common::own_pool();
    cfg.policy = Policy {
        high: HighWindow {
            enabled: true,
            ..HighWindow::default()
        },
        ..Policy::default()
    };
    cfg.etc = None;
    cfg.reserve = 2;
    let server = Server::bind(&registry, Service::open(&cfg).unwrap())
        .unwrap()
        .with_userdb(credns_service::FaceSocket::Bind(userdb.clone()), "ct-")
        .unwrap();
    std::thread::spawn(move || server.run());
    Daemon {
        dir,
        registry,
        userdb,
    }
}

fn call(c: &mut Client, method: &str, p: Value) -> Result<Value, String> {
    c.call(&format!("io.systemd.UserDatabase.{method}"), p, &[])
        .map_err(|e| e.remote_name().unwrap_or("local error").to_string())
}

#[test]
fn every_method_and_error_through_a_varlink_client() {
    if !common::needs_root("every_method_and_error_through_a_varlink_client") {
        return;
    }
    let d = start();
    let mut r = RegistryClient::connect(&d.registry).unwrap();
    let web = r
        .allocate_name(
            "web",
            &AllocOptions {
                high: true,
                ..Default::default()
            },
        )
        .unwrap();
    let odd = r
        .allocate_name("pod:not a user name", &AllocOptions::default())
        .unwrap();
    let mut c = Client::connect(&d.userdb).unwrap();
    let user = |c: &mut Client, p: Value| call(c, "GetUserRecord", p);
    let s = SERVICE;
    let w = web.uid.start as u64;

    // By uid, by name, by both: one record.
    let rec = user(&mut c, json!({ "uid": w + 1, "service": s })).unwrap();
    assert_eq!(rec["incomplete"], false);
    let want = json!({
        "userName": "ct-web-1", "uid": w + 1, "gid": w + 1,
        "realName": format!("credns allocation #{} (web), id 1", web.id),
        "homeDirectory": "/", "shell": "/usr/sbin/nologin", "locked": true,
        "disposition": "container", "service": s,
    });
    assert_eq!(rec["record"], want);
    assert_eq!(
        user(&mut c, json!({ "userName": "ct-web-1", "service": s })).unwrap(),
        rec
    );
    let both = json!({ "uid": w + 1, "userName": "ct-web-1", "service": s });
    assert_eq!(user(&mut c, both).unwrap(), rec);
    // The high range: the namespace's top ids.
    let top = web.high.unwrap().uid.end as u64;
    let hi = user(&mut c, json!({ "uid": top, "service": s })).unwrap();
    assert_eq!(hi["record"]["userName"], "ct-web-4294967294");
    // An allocation whose name cannot stand in a user name is named by its number.
    let o = odd.uid.start as u64;
    let rec = user(&mut c, json!({ "uid": o + 7, "service": s })).unwrap();
    let name = format!("ct-{}-7", odd.id);
    assert_eq!(rec["record"]["userName"], name.as_str());
    // A name with ':' stays out of the real name (a passwd line's separator).
    let about = format!("credns allocation #{}, id 7", odd.id);
    assert_eq!(rec["record"]["realName"], about.as_str());
    assert_eq!(
        user(&mut c, json!({ "userName": name, "service": s })).unwrap(),
        rec
    );

    // Groups.
    let g = call(&mut c, "GetGroupRecord", json!({ "gid": w, "service": s })).unwrap();
    assert_eq!(
        g["record"],
        json!({
            "groupName": "ct-web-0", "gid": w,
            "description": format!("credns allocation #{} (web), id 0", web.id),
            "disposition": "container", "service": s,
        })
    );
    let by_name = call(
        &mut c,
        "GetGroupRecord",
        json!({ "groupName": "ct-web-0", "service": s }),
    );
    assert_eq!(by_name.unwrap(), g);

    // Errors.
    let e = |c: &mut Client, p: Value| user(c, p).unwrap_err();
    let nf = "io.systemd.UserDatabase.NoRecordFound";
    assert_eq!(e(&mut c, json!({ "uid": 1000, "service": s })), nf);
    assert_eq!(e(&mut c, json!({ "uid": 1u64 << 40, "service": s })), nf);
    assert_eq!(
        e(&mut c, json!({ "userName": "ct-web-x", "service": s })),
        nf
    );
    assert_eq!(
        e(&mut c, json!({ "userName": "ct-web-65536", "service": s })),
        nf
    );
    // The number form of a named allocation is not its name.
    let other_form = format!("ct-{}-1", web.id);
    assert_eq!(
        e(&mut c, json!({ "userName": other_form, "service": s })),
        nf
    );
    // Reserved ranges (the first two of the pool) belong to nobody yet.
    assert_eq!(e(&mut c, json!({ "uid": 524288, "service": s })), nf);
    assert_eq!(
        e(
            &mut c,
            json!({ "uid": w + 2, "userName": "ct-web-1", "service": s })
        ),
        "io.systemd.UserDatabase.ConflictingRecordFound"
    );
    assert_eq!(
        e(
            &mut c,
            json!({ "uid": 1000, "userName": "ct-web-1", "service": s })
        ),
        "io.systemd.UserDatabase.ConflictingRecordFound"
    );
    assert_eq!(
        e(
            &mut c,
            json!({ "uid": w, "service": "io.systemd.Multiplexer" })
        ),
        "io.systemd.UserDatabase.BadService"
    );
    assert_eq!(
        e(&mut c, json!({ "uid": w })),
        "org.varlink.service.InvalidParameter"
    );
    assert_eq!(
        e(
            &mut c,
            json!({ "uid": w, "fuzzyNames": ["web"], "service": s })
        ),
        "org.varlink.service.InvalidParameter"
    );
    assert_eq!(
        e(&mut c, json!({ "service": s })),
        "io.systemd.UserDatabase.EnumerationNotSupported"
    );
    let more = c
        .call_more(
            "io.systemd.UserDatabase.GetGroupRecord",
            json!({ "service": s }),
            &[],
        )
        .map(|_| ())
        .unwrap_err();
    assert_eq!(
        more.remote_name(),
        Some("io.systemd.UserDatabase.EnumerationNotSupported")
    );
    // Filters: a record found that does not pass them.
    let nm = "io.systemd.UserDatabase.NonMatchingRecordFound";
    assert_eq!(
        e(
            &mut c,
            json!({ "uid": w, "dispositionMask": ["regular"], "service": s })
        ),
        nm
    );
    assert_eq!(
        e(&mut c, json!({ "uid": w, "uidMin": w + 1, "service": s })),
        nm
    );
    assert_eq!(
        e(
            &mut c,
            json!({ "uid": w + 9, "uidMax": w + 8, "service": s })
        ),
        nm
    );
    assert!(user(
        &mut c,
        json!({ "uid": w, "dispositionMask": ["container"], "uidMin": w, "uidMax": w, "service": s })
    )
    .is_ok());
    // Memberships: none.
    for p in [
        json!({ "userName": "ct-web-1", "service": s }),
        json!({ "groupName": "ct-web-1", "service": s }),
        json!({ "service": s }),
    ] {
        assert_eq!(call(&mut c, "GetMemberships", p).unwrap_err(), nf);
    }
    assert_eq!(
        call(&mut c, "GetMemberships", json!({ "service": "x" })).unwrap_err(),
        "io.systemd.UserDatabase.BadService"
    );
    // The interface describes itself.
    let desc = c
        .call(
            "org.varlink.service.GetInterfaceDescription",
            json!({ "interface": "io.systemd.UserDatabase" }),
            &[],
        )
        .unwrap();
    assert!(desc["description"]
        .as_str()
        .unwrap()
        .contains("method GetMemberships("));
    drop(d.dir);
}

fn tool(test: &str, tool: &str, package: &str) -> bool {
    let found = ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .any(|d| Path::new(d).join(tool).exists());
    let why = (!found).then(|| format!("needs {tool} ({package})"));
    let Some(why) = why else { return true };
    if std::env::var("CREDNS_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("{test}: {why}, and CREDNS_REQUIRE_ALL=1 forbids skipping");
    }
    println!("{test}: skipped: {why}");
    false
}

#[test]
fn nss_systemd_names_every_id_of_an_allocation() {
    let test = "nss_systemd_names_every_id_of_an_allocation";
    if !common::needs_root(test)
        || !tool(test, "getent", "libc-bin")
        || !tool(test, "unshare", "util-linux")
    {
        return;
    }
    if !Path::new("/lib/x86_64-linux-gnu/libnss_systemd.so.2").exists()
        && !Path::new("/usr/lib/x86_64-linux-gnu/libnss_systemd.so.2").exists()
        && !tool(test, "libnss_systemd.so.2", "libnss-systemd")
    {
        return;
    }
    let d = start();
    let mut r = RegistryClient::connect(&d.registry).unwrap();
    let web = r.allocate_name("web", &AllocOptions::default()).unwrap();
    let w = web.uid.start;
    let dir = d.dir.path();
    std::fs::write(
        dir.join("nsswitch.conf"),
        "passwd: files systemd\ngroup: files systemd\n",
    )
    .unwrap();
    let file = dir.join("owned");
    std::fs::write(&file, "").unwrap();
    std::os::unix::fs::chown(&file, Some(w + 2), Some(w + 3)).unwrap();
    // /run is a tmpfs of this namespace: the host's /run (and its userdb services) unseen.
    let script = format!(
        "mount --bind {dir}/nsswitch.conf /etc/nsswitch.conf
mount -t tmpfs credns-test /run
mkdir -p /run/systemd/userdb
touch /run/systemd/userdb/{SERVICE}
mount --bind {sock} /run/systemd/userdb/{SERVICE}
getent passwd {u}
getent group {g}
getent passwd ct-web-65535
getent passwd {outside} || echo outside-unknown
ls -ln {file} | cut -d' ' -f3,4
ls -l {file} | cut -d' ' -f3,4
",
        dir = dir.display(),
        sock = d.userdb.display(),
        u = w + 1,
        g = w + 1,
        outside = w + 65536,
        file = file.display(),
    );
    let o = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-ec", &script])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let about = format!("credns allocation #{} (web)", web.id);
    let want = format!(
        "ct-web-1:x:{u}:{u}:{about}, id 1:/:/usr/sbin/nologin
ct-web-1:x:{u}:
ct-web-65535:x:{last}:{last}:{about}, id 65535:/:/usr/sbin/nologin
outside-unknown
{a} {b}
ct-web-2 ct-web-3
",
        u = w + 1,
        last = w + 65535,
        a = w + 2,
        b = w + 3,
    );
    assert_eq!(out, want, "stderr: {}", String::from_utf8_lossy(&o.stderr));
}
