//! `credns explain PID access PATH` on a live container: processes in a user namespace and
//! their own mount namespace, with a tmpfs idmapped into it by `credns mount` (on-disk 0..
//! appear as the container's 0..), files with modes and ACLs, and a host directory seen
//! without idmapping. Every (actor, path, mode, eaccess) is answered by the model and by the
//! kernel as the actor; they must agree.

mod common;

use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_credns");

/// What the test started, killed when dropped: its children, and the container's processes
/// (grandchildren, under the setup shell), by pid.
struct Planted(Vec<Child>, Vec<u32>);

impl Drop for Planted {
    fn drop(&mut self) {
        for &pid in &self.1 {
            if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
        }
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn ns_ino(pid: u32) -> u64 {
    std::fs::metadata(format!("/proc/{pid}/ns/user"))
        .map(|m| m.ino())
        .unwrap_or(0)
}

/// The `sleep`s at or below `pid` whose user namespace is `userns`.
fn sleeps(pid: u32, userns: u64, out: &mut Vec<u32>) {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() == "sleep" && ns_ino(pid) == userns {
        out.push(pid);
    }
    let kids =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for k in kids.split_whitespace().filter_map(|k| k.parse().ok()) {
        sleeps(k, userns, out);
    }
}

const SETUP: &str = r#"
set -e
src=$1; dst=$2; credns=$3; holder=$4
mount -t tmpfs t "$src"
chmod 755 "$src"
mkdir "$src/d"; chown 1000:1000 "$src/d"; chmod 700 "$src/d"
echo a > "$src/d/mine"; chown 1000:1000 "$src/d/mine"; chmod 600 "$src/d/mine"
echo b > "$src/theirs"; chown 2000:2000 "$src/theirs"; chmod 640 "$src/theirs"
setfacl -m u:1500:r,g:3000:rw "$src/theirs"
echo c > "$src/open"; chmod 644 "$src/open"
"$credns" mount "$src" "$dst" --map '0 600000 65536' > /dev/null
for uid in 1000 1500 2000; do
  nsenter --user --target "$holder" --setuid $uid --setgid $uid sleep 600 &
done
wait
"#;

#[test]
fn model_and_kernel_agree_on_paths_in_a_container_with_an_idmapped_mount() {
    if !needs_root("model_and_kernel_agree_on_paths_in_a_container_with_an_idmapped_mount")
        || !needs_tool("explain_access", "setfacl", "acl")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let (src, dst, host) = (
        dir.path().join("src"),
        dir.path().join("dst"),
        dir.path().join("host"),
    );
    for d in [&src, &dst, &host] {
        std::fs::create_dir(d).unwrap();
    }
    // A host file seen by the container without idmapping: owned by host uid 600001 (its
    // uid 1), readable by others; and one it may not read.
    std::fs::write(host.join("shared"), "s").unwrap();
    std::fs::write(host.join("private"), "p").unwrap();
    let chown = |p: &std::path::Path, id: u32, mode: u32| {
        let st = Command::new("chown")
            .arg(format!("{id}:{id}"))
            .arg(p)
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    };
    chown(&host.join("shared"), 600001, 0o644);
    chown(&host.join("private"), 600001, 0o600);
    chown(&host, 0, 0o755);

    let mut planted = Planted(Vec::new(), Vec::new());
    let holder = Command::new("unshare")
        .args(["--user", "sleep", "600"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let h = holder.id();
    planted.0.push(holder);
    let own = ns_ino(std::process::id());
    let t0 = Instant::now();
    while ns_ino(h) == own {
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    for f in ["uid_map", "gid_map"] {
        std::fs::write(format!("/proc/{h}/{f}"), "0 600000 65536\n").unwrap();
    }
    let setup = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            SETUP,
            "setup",
        ])
        .args([&src, &dst])
        .arg(BIN)
        .arg(h.to_string())
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let s = setup.id();
    planted.0.push(setup);
    let userns = ns_ino(h);
    let t0 = Instant::now();
    let mut actors = Vec::new();
    while actors.len() < 3 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the container's processes did not start"
        );
        actors.clear();
        sleeps(s, userns, &mut actors);
        planted.1 = actors.clone();
        std::thread::sleep(Duration::from_millis(10));
    }
    let d = dst.display().to_string();
    let hs = host.display().to_string();
    let paths = [
        format!("{d}/d/mine"),
        format!("{d}/d"),
        format!("{d}/theirs"),
        format!("{d}/open"),
        format!("{d}/nope"),
        format!("{d}/d/nope"),
        format!("{hs}/shared"),
        format!("{hs}/private"),
    ];
    let mut tally = std::collections::BTreeMap::new();
    for &actor in &actors {
        for p in &paths {
            for access in ["r", "w", "x", "f", "rw"] {
                for eaccess in [false, true] {
                    let a = actor.to_string();
                    let mut args = vec!["explain", &a, "access", p, "--access", access, "--json"];
                    if eaccess {
                        args.push("--eaccess");
                    }
                    let o = credns(&args);
                    let out = stdout(&o);
                    assert_eq!(o.status.code(), Some(0), "{args:?}\n{out}{}", stderr(&o));
                    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
                    assert_eq!(v["agree"], true, "{args:?}\n{out}");
                    let k = match v["kernel"]["result"].as_str().unwrap() {
                        "allowed" => "allowed".to_string(),
                        _ => v["kernel"]["errno"].as_str().unwrap().to_string(),
                    };
                    *tally.entry(k).or_insert(0) += 1;
                }
            }
        }
    }
    // open(2) of the same paths, for reading, writing or both.
    for &actor in &actors {
        for p in &paths {
            for access in ["r", "w", "rw"] {
                let a = actor.to_string();
                let args = ["explain", &a, "open", p, "--access", access, "--json"];
                let o = credns(&args);
                let out = stdout(&o);
                assert_eq!(o.status.code(), Some(0), "{args:?}\n{out}{}", stderr(&o));
                let v: serde_json::Value = serde_json::from_str(&out).unwrap();
                assert_eq!(v["agree"], true, "{args:?}\n{out}");
                *tally
                    .entry(format!("open {}", v["kernel"]["result"]))
                    .or_insert(0) += 1;
            }
        }
    }
    // What the kernel is not asked (it would change something) is the model's alone, and
    // replays as a scenario.
    let saved = dir.path().join("model-only.toml");
    let a = actors[0].to_string();
    let f = format!("{d}/open");
    let n = format!("{d}/d/new");
    for q in [
        vec!["create", n.as_str()],
        vec!["chmod", f.as_str(), "600"],
        vec!["chown", f.as_str(), "-1:0"],
        vec!["exec", f.as_str()],
    ] {
        let mut args = vec!["explain", &a];
        args.extend(q.iter().copied());
        args.extend(["--json", "--save-scenario", saved.to_str().unwrap()]);
        let o = credns(&args);
        assert_eq!(o.status.code(), Some(0), "{args:?}\n{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(v["kernel"]["result"], "not_asked", "{args:?}");
        assert!(v["model"]["trace"]
            .as_array()
            .is_some_and(|t| !t.is_empty()));
        let o = credns(&["sim", saved.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    }
    eprintln!("{tally:?}");
    // Each question saved as a scenario replays in the model with the kernel's answer.
    let saved = dir.path().join("saved.toml");
    for &actor in &actors {
        for p in &paths {
            let a = actor.to_string();
            let args = [
                "explain",
                &a,
                "access",
                p,
                "--access",
                "rw",
                "--save-scenario",
                saved.to_str().unwrap(),
            ];
            let o = credns(&args);
            assert_eq!(o.status.code(), Some(0), "{args:?}\n{}", stderr(&o));
            let o = credns(&["sim", saved.to_str().unwrap(), "--brief"]);
            let text = std::fs::read_to_string(&saved).unwrap();
            assert_eq!(
                o.status.code(),
                Some(0),
                "{}\n{}{}",
                text,
                stdout(&o),
                stderr(&o)
            );
            assert!(
                stderr(&o).contains("1 operations, 1 as expected, 0 not"),
                "{}",
                stderr(&o)
            );
        }
    }
    // Both answers and both refusals occur (so the test compares something).
    for k in ["allowed", "EACCES", "ENOENT"] {
        assert!(tally.get(k).copied().unwrap_or(0) > 0, "{tally:?}");
    }
}
