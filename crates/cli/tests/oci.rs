//! `credns oci BUNDLE`: config.json gets the allocation's mappings and a user namespace, the
//! allocation is named after the bundle and reused; and a real OCI runtime (crun) runs the
//! container with the allocated range.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use credns_registry::Lease;
use serde_json::{json, Value};

fn write_config(bundle: &Path, v: &Value) {
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_string_pretty(v).unwrap(),
    )
    .unwrap();
}

fn read_config(bundle: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(bundle.join("config.json")).unwrap()).unwrap()
}

/// `credns oci` on the store directly (no daemon answers on the socket it is given).
fn oci(store: &Path, bundle: &Path) -> std::process::Output {
    let nosock = store.with_extension("no-daemon.sock");
    credns(&[
        "oci",
        "--store",
        store.to_str().unwrap(),
        "--socket",
        nosock.to_str().unwrap(),
        bundle.to_str().unwrap(),
    ])
}

#[test]
fn mappings_written_and_allocation_reused() {
    if !needs_root("mappings_written_and_allocation_reused") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("b1");
    std::fs::create_dir(&bundle).unwrap();
    let store = dir.path().join("registry.redb");
    let original = json!({
        "ociVersion": "1.0.2",
        "process": {"args": ["sh"], "cwd": "/"},
        "root": {"path": "rootfs"},
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}], "maskedPaths": ["/proc/kcore"]},
        "annotations": {"x": "y"}
    });
    write_config(&bundle, &original);
    let out = ok(&oci(&store, &bundle));
    let canon = std::fs::canonicalize(&bundle).unwrap();
    let name = format!("oci:{}", canon.display());
    let allocs = allocations(&store);
    assert_eq!(allocs.len(), 1);
    let a = &allocs[0];
    assert_eq!(a.lease, Lease::name(name.clone()));
    assert_eq!(
        out,
        format!(
            "{name}: allocation {} uids {}-{} gids {}-{} (65536 ids)\n",
            a.id, a.uid.start, a.uid.end, a.gid.start, a.gid.end
        )
    );
    let cfg = read_config(&bundle);
    let mut expected = original.clone();
    expected["linux"]["uidMappings"] =
        json!([{"containerID": 0, "hostID": a.uid.start, "size": 65536}]);
    expected["linux"]["gidMappings"] =
        json!([{"containerID": 0, "hostID": a.gid.start, "size": 65536}]);
    expected["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "mount"}, {"type": "user"}]);
    assert_eq!(
        cfg, expected,
        "only the mappings and the user namespace change"
    );

    // Again, through another spelling of the path: the same allocation, the same file.
    let again = ok(&oci(&store, &bundle.join(".")));
    assert_eq!(again, out);
    assert_eq!(read_config(&bundle), expected);
    assert_eq!(allocations(&store).len(), 1);
    // No temporary file is left in the bundle.
    let names: Vec<_> = std::fs::read_dir(&bundle)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["config.json"]);

    // Another bundle: another range.
    let b2 = dir.path().join("b2");
    std::fs::create_dir(&b2).unwrap();
    write_config(&b2, &json!({"ociVersion": "1.0.2"}));
    ok(&oci(&store, &b2));
    let cfg2 = read_config(&b2);
    assert_eq!(cfg2["linux"]["namespaces"], json!([{"type": "user"}]));
    assert_ne!(
        cfg2["linux"]["uidMappings"][0]["hostID"],
        expected["linux"]["uidMappings"][0]["hostID"]
    );
    assert_eq!(allocations(&store).len(), 2);
}

#[test]
fn bad_bundles_change_nothing() {
    if !needs_root("bad_bundles_change_nothing") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("registry.redb");
    let bundle = dir.path().join("b");
    std::fs::create_dir(&bundle).unwrap();
    let cfg = bundle.join("config.json");

    let out = oci(&store, &bundle);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "credns: error: reading {}: No such file or directory (os error 2)\n",
            cfg.display()
        )
    );

    std::fs::write(&cfg, "{\n  \"linux\": {,\n}").unwrap();
    let out = oci(&store, &bundle);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "credns: error: {}:2:13: key must be a string at line 2 column 13\n",
            cfg.display()
        )
    );
    assert_eq!(
        std::fs::read_to_string(&cfg).unwrap(),
        "{\n  \"linux\": {,\n}"
    );

    let bad = "{\"linux\": {\"uidMappings\": [{\"containerID\": 0, \"hostID\": 1000}]}}";
    std::fs::write(&cfg, bad).unwrap();
    let out = oci(&store, &bundle);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.starts_with("credns: error: ") && err.contains("linux.uidMappings[0]"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), bad);

    let bad = "{\"linux\": {\"namespaces\": {\"type\": \"user\"}}}";
    std::fs::write(&cfg, bad).unwrap();
    let out = oci(&store, &bundle);
    assert_eq!(
        stderr(&out),
        format!(
            "credns: error: {}: linux.namespaces: expected an array\n",
            cfg.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), bad);

    // Nothing was allocated for any of them.
    assert_eq!(allocations(&store), vec![]);
}

/// Removes a crun container left behind by a failed test.
struct CrunGuard(String);

impl Drop for CrunGuard {
    fn drop(&mut self) {
        let _ = Command::new("crun")
            .args(["delete", "--force", &self.0])
            .output();
    }
}

#[test]
fn crun_runs_the_container_with_the_allocated_range() {
    let test = "crun_runs_the_container_with_the_allocated_range";
    if !needs_root(test)
        || !needs_tool(test, "crun", "crun")
        || !needs_tool(test, "unshare", "util-linux")
    {
        return;
    }
    let Some(busybox) = static_busybox(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    std::fs::create_dir(&bundle).unwrap();
    busybox_rootfs(&busybox, &bundle);
    let st = Command::new("crun")
        .arg("spec")
        .current_dir(&bundle)
        .status()
        .unwrap();
    assert!(st.success(), "crun spec");
    let mut cfg = read_config(&bundle);
    cfg["process"]["terminal"] = json!(false);
    cfg["process"]["args"] = json!([
        "sh",
        "-c",
        "cat /proc/self/uid_map; cat /proc/self/gid_map; id -u; id -g"
    ]);
    write_config(&bundle, &cfg);

    let store = dir.path().join("registry.redb");
    ok(&oci(&store, &bundle));
    let allocs = allocations(&store);
    assert_eq!(allocs.len(), 1);
    let a = &allocs[0];

    let id = format!("credns-test-{}", std::process::id());
    let _guard = CrunGuard(id.clone());
    // crun refuses hybrid cgroup hierarchies (v1 controllers beside a v2 mount); in a private
    // mount namespace with a plain cgroup2 tree it does not need to touch cgroups at all.
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(
            "umount -R /sys/fs/cgroup 2>/dev/null; mount -t cgroup2 none /sys/fs/cgroup && \
             exec crun --cgroup-manager=disabled run --bundle \"$1\" \"$2\"",
        )
        .args(["sh", bundle.to_str().unwrap(), &id])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "crun run: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    let lines: Vec<Vec<u64>> = text
        .lines()
        .map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect())
        .collect();
    assert_eq!(
        lines,
        vec![
            vec![0, u64::from(a.uid.start), 65536],
            vec![0, u64::from(a.gid.start), 65536],
            vec![0],
            vec![0],
        ],
        "{text}"
    );
}

/// With a daemon answering, the bundle's allocation comes from it (the daemon holds the store),
/// named after the bundle, and is reused the next time.
#[test]
fn through_the_daemon() {
    if !needs_root("through_the_daemon") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/io.credns.Registry");
    let store = dir.path().join("lib/registry.redb");
    let _d = serve(&socket, &store);
    let bundle = dir.path().join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::write(
        bundle.join("config.json"),
        r#"{"ociVersion": "1.0.2", "linux": {}}"#,
    )
    .unwrap();
    let sock = socket.to_str().unwrap();
    let first = ok(&credns(&[
        "oci",
        "--socket",
        sock,
        bundle.to_str().unwrap(),
    ]));
    let again = ok(&credns(&[
        "oci",
        "--socket",
        sock,
        bundle.to_str().unwrap(),
    ]));
    assert_eq!(first, again, "the same allocation is reused");
    let name = format!("oci:{}", std::fs::canonicalize(&bundle).unwrap().display());
    let shown: Value =
        serde_json::from_str(&ok(&credns(&["show", "--socket", sock, &name, "--json"]))).unwrap();
    let config = read_config(&bundle);
    let m = &config["linux"]["uidMappings"][0];
    assert_eq!(m["containerID"], 0);
    assert_eq!(m["hostID"], shown["uid"]["start"], "{config} {shown}");
    assert_eq!(m["size"], 65536);
    assert!(
        first.starts_with(&format!("{name}: allocation #{} uids ", shown["id"])),
        "{first}"
    );
}
