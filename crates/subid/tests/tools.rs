//! Debian's real tools through the provider, each in a private mount namespace whose
//! nsswitch.conf (`subid: credns`), passwd (with alice) and loader cache (naming this build's
//! libsubid_credns.so) are bound over /etc's, and whose /run is a tmpfs holding this test's
//! daemon socket at the default path: the host's files and daemon are never touched.
//!
//! newuidmap is setuid: the loader ignores LD_LIBRARY_PATH for it and the provider ignores
//! CREDNS_SOCKET, so the cache names the library and the socket is bound at the default path.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{Daemon, ALICE};

fn tools_here(test: &str) -> bool {
    common::needs_root(test)
        && common::needs_tool(test, "getsubids", "uidmap")
        && common::needs_tool(test, "newuidmap", "uidmap")
        && common::needs_tool(test, "setpriv", "util-linux")
        && common::needs_tool(test, "unshare", "util-linux")
        && common::needs_tool(test, "ldconfig", "libc-bin")
}

/// Files of the private view: nsswitch.conf, a loader cache naming the provider.
fn prepare(d: &Daemon) {
    let dir = d.dir.path();
    std::fs::write(
        dir.join("nsswitch.conf"),
        "passwd: files\ngroup: files\nsubid: credns\n",
    )
    .unwrap();
    let lib = dir.join("lib");
    std::fs::create_dir(&lib).unwrap();
    std::fs::copy(common::built_library(), lib.join("libsubid_credns.so")).unwrap();
    std::fs::write(dir.join("ld.so.conf"), format!("{}\n", lib.display())).unwrap();
    // -X: no links made in any directory; -C/-f: our own cache from our own list (plus the
    // trusted directories, so libc and libsubid are still found).
    let out = Command::new("ldconfig")
        .arg("-X")
        .arg("-C")
        .arg(dir.join("ld.so.cache"))
        .arg("-f")
        .arg(dir.join("ld.so.conf"))
        .output()
        .unwrap();
    assert!(out.status.success(), "ldconfig: {out:?}");
}

/// Run `script` with `sh -e` in a private mount namespace set up as the module says; `socket`
/// is what appears at the default socket path (a regular file: no daemon).
fn in_private_view(d: &Daemon, socket: Option<&Path>, script: &str) -> Output {
    let dir = d.dir.path().display().to_string();
    let bind_socket = match socket {
        Some(s) => format!(
            "mount --bind {} /run/credns/io.credns.Registry",
            s.display()
        ),
        None => String::new(),
    };
    let setup = format!(
        "mount --bind {dir}/nsswitch.conf /etc/nsswitch.conf
mount --bind {etc}/passwd /etc/passwd
mount --bind {etc}/group /etc/group
mount --bind {dir}/ld.so.cache /etc/ld.so.cache
mount -t tmpfs credns-test /run
mkdir /run/credns
touch /run/credns/io.credns.Registry
{bind_socket}
",
        etc = d.etc.display()
    );
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-ec"])
        .arg(format!("{setup}{script}"))
        .env_remove("CREDNS_SOCKET")
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}stderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn getsubids_prints_the_delegation_as_kubelet_parses_it() {
    if !tools_here("getsubids_prints_the_delegation_as_kubelet_parses_it") {
        return;
    }
    let d = Daemon::start(2);
    prepare(&d);
    let o = in_private_view(
        &d,
        Some(&d.socket),
        "getsubids alice; getsubids -g alice; getsubids nobody-here || echo unknown-user-refused",
    );
    assert!(o.status.success(), "{}", text(&o));
    let mut want = String::new();
    for _side in ["uid", "gid"] {
        for (i, x) in d.alice.iter().enumerate() {
            want += &format!("{i}: alice {} {}\n", x.uid.start, x.uid.len());
        }
    }
    want += "unknown-user-refused\n";
    assert_eq!(String::from_utf8_lossy(&o.stdout), want, "{}", text(&o));
    // kubelet (pkg/kubelet/userns) reads the first line: "0: USER START LENGTH".
    let first = want.lines().next().unwrap();
    let f: Vec<&str> = first.split_whitespace().collect();
    assert_eq!(f.len(), 4);
    assert_eq!(f[2].parse::<u64>().unwrap(), d.alice[0].uid.start as u64);
    assert_eq!(f[3].parse::<u64>().unwrap() % 65536, 0);

    // CREDNS_SOCKET names another socket for a program that is not setuid; with no daemon
    // there getsubids gets no ranges and says so.
    let o = in_private_view(
        &d,
        Some(&d.socket),
        &format!(
            "CREDNS_SOCKET={}/none getsubids alice || echo refused",
            d.dir.path().display()
        ),
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "refused\n",
        "{}",
        text(&o)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("Error fetching ranges"));
}

/// The script that starts two namespaces of alice's and maps `map_a` into the first and
/// `map_b` into the second with newuidmap run as alice, printing each result and map.
fn newuidmap_script(map_a: &str, map_b: &str) -> String {
    let me = format!("setpriv --reuid={ALICE} --regid={ALICE} --clear-groups");
    format!(
        r#"
own=$(readlink /proc/self/ns/user)
wait_ns() {{
  while [ "$(readlink /proc/$1/ns/user)" = "$own" ]; do sleep 0.01; done
}}
# Their output goes nowhere: they must not hold this script's stdout open.
{me} unshare --user sleep 60 >/dev/null 2>&1 &
A=$!
{me} unshare --user sleep 60 >/dev/null 2>&1 &
B=$!
trap 'kill $A $B' EXIT
wait_ns $A; wait_ns $B
# CREDNS_SOCKET is ignored by the setuid newuidmap (were it honoured, nothing would answer).
if CREDNS_SOCKET=/nonexistent {me} newuidmap $A {map_a}; then echo a=accepted; else echo a=refused; fi
if {me} newuidmap $B {map_b}; then echo b=accepted; else echo b=refused; fi
echo a-map $(cat /proc/$A/uid_map)
echo b-map $(cat /proc/$B/uid_map)
"#
    )
}

#[test]
fn newuidmap_accepts_maps_inside_the_delegation_and_refuses_others() {
    if !tools_here("newuidmap_accepts_maps_inside_the_delegation_and_refuses_others") {
        return;
    }
    let d = Daemon::start(2);
    prepare(&d);
    let (a, b) = (d.alice[0].uid, d.alice[1].uid);
    let inside = format!("0 {} 65536", a.start);
    // One id past her second delegation.
    let outside = format!("0 {} 1", b.end + 1);
    let o = in_private_view(&d, Some(&d.socket), &newuidmap_script(&inside, &outside));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(out.contains("a=accepted"), "{}", text(&o));
    assert!(
        out.contains(&format!("a-map 0 {} 65536", a.start)),
        "{}",
        text(&o)
    );
    assert!(out.contains("b=refused"), "{}", text(&o));
    assert!(out.contains("b-map\n"), "nothing mapped: {}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr)
            .matches("not allowed")
            .count(),
        1,
        "{}",
        text(&o)
    );

    // Spanning both delegations (adjacent) is as good as one line each in /etc/subuid.
    let both = format!("0 {} {}", a.start, a.len() + b.len());
    let o = in_private_view(&d, Some(&d.socket), &newuidmap_script(&both, &both));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        out.contains("a=accepted") && out.contains("b=accepted"),
        "{}",
        text(&o)
    );
}

#[test]
fn with_the_daemon_down_newuidmap_refuses_even_her_own_range() {
    if !tools_here("with_the_daemon_down_newuidmap_refuses_even_her_own_range") {
        return;
    }
    let d = Daemon::start(1);
    prepare(&d);
    let inside = format!("0 {} 65536", d.alice[0].uid.start);
    // No socket at the default path: nothing answers.
    let o = in_private_view(&d, None, &newuidmap_script(&inside, &inside));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        out.contains("a=refused") && out.contains("b=refused"),
        "{}",
        text(&o)
    );
    assert!(out.contains("a-map\n"), "{}", text(&o));
    // Refused for the range, not because the target was gone.
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches("not allowed").count(), 2, "{}", text(&o));
}

#[test]
fn podman_unshare_as_a_user_without_subuid_lines_gets_her_delegations() {
    let test = "podman_unshare_as_a_user_without_subuid_lines_gets_her_delegations";
    if !tools_here(test) || !common::needs_tool(test, "podman", "podman") {
        return;
    }
    let d = Daemon::start(2);
    prepare(&d);
    let dir = d.dir.path();
    // Her home (podman's configuration and storage) and runtime directory, in this test's
    // directory; the passwd the test binds names that home.
    let (home, run) = (dir.join("home"), dir.join("xdg"));
    for p in [&home, &run] {
        std::fs::create_dir(p).unwrap();
        std::os::unix::fs::chown(p, Some(ALICE), Some(ALICE)).unwrap();
    }
    std::fs::set_permissions(&run, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let passwd = std::fs::read_to_string(d.etc.join("passwd"))
        .unwrap()
        .replace(":Alice:/:", &format!(":Alice:{}:", home.display()));
    std::fs::write(d.etc.join("passwd"), passwd).unwrap();
    let script = format!(
        "cd /
setpriv --reuid={ALICE} --regid={ALICE} --clear-groups env -i HOME={h} XDG_RUNTIME_DIR={r} \\
  PATH=/usr/bin:/bin USER=alice LOGNAME=alice \\
  podman --storage-driver=vfs --cgroup-manager=cgroupfs --events-backend=file \\
  unshare cat /proc/self/uid_map /proc/self/gid_map
",
        h = home.display(),
        r = run.display()
    );
    let o = in_private_view(&d, Some(&d.socket), &script);
    // Rootless podman leaves a pause process holding its namespace: ended here.
    if let Ok(pid) = std::fs::read_to_string(run.join("libpod/tmp/pause.pid")) {
        let _ = Command::new("kill").arg(pid.trim()).status();
    }
    assert!(o.status.success(), "{}", text(&o));
    let maps: Vec<Vec<u64>> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.split_whitespace().map(|f| f.parse().unwrap()).collect())
        .collect();
    // Her own uid at 0, then each delegation, for uids and for gids.
    let (a, b) = (d.alice[0].uid, d.alice[1].uid);
    let one = vec![
        vec![0, ALICE as u64, 1],
        vec![1, a.start as u64, a.len()],
        vec![1 + a.len(), b.start as u64, b.len()],
    ];
    assert_eq!(maps, [one.clone(), one].concat(), "{}", text(&o));
}

#[test]
fn a_user_only_the_callers_name_service_knows_is_asked_by_uid() {
    let test = "a_user_only_the_callers_name_service_knows_is_asked_by_uid";
    if !tools_here(test) {
        return;
    }
    let d = Daemon::start(0);
    prepare(&d);
    // bob (uid 60124) is in the caller's passwd (an LDAP user, say), not in the daemon's.
    let bob =
        credns_api::subid::SubidClient::new(credns_varlink::Client::connect(&d.socket).unwrap())
            .delegate("60124", None, Some(1))
            .unwrap()
            .delegations[0]
            .uid;
    let client_passwd = d.dir.path().join("client-passwd");
    let daemons = std::fs::read_to_string(d.etc.join("passwd")).unwrap();
    std::fs::write(
        &client_passwd,
        format!("{daemons}bob:x:60124:60124::/:/bin/sh\n"),
    )
    .unwrap();
    let o = in_private_view(
        &d,
        Some(&d.socket),
        &format!(
            "mount --bind {} /etc/passwd\ngetsubids bob\ngetsubids carol || echo carol-unknown",
            client_passwd.display()
        ),
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("0: bob {} {}\ncarol-unknown\n", bob.start, bob.len()),
        "{}",
        text(&o)
    );
}
