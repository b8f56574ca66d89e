//! `credns run` through a real `credns serve`, as root and as an unprivileged user (uid 1000 by
//! `setpriv`): the daemon's range inside, the lease listed while the container lives and reaped
//! by the daemon after it exits, and the exact errors of the unprivileged path.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_credns");
/// The unprivileged user the tests switch to.
const USER: &str = "1000";

/// A temporary directory (readable by uid 1000) holding the daemon's socket, store and policy.
struct Env {
    dir: tempfile::TempDir,
    socket: PathBuf,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = dir.path().join("run/io.credns.Registry");
        Env { dir, socket }
    }

    fn socket(&self) -> &str {
        self.socket.to_str().unwrap()
    }

    /// `credns serve` on this socket and a store here, excluding nothing of the host's files;
    /// `policy` is TOML for `--policy`.
    fn serve(&self, policy: Option<&str>) -> Daemon {
        let mut c = Command::new(BIN);
        c.arg("serve")
            .arg("--socket")
            .arg(&self.socket)
            .arg("--store")
            .arg(self.dir.path().join("lib/registry.redb"))
            .arg("--etc")
            .arg(self.dir.path())
            .stderr(Stdio::null());
        if let Some(p) = policy {
            let path = self.dir.path().join("policy.toml");
            std::fs::write(&path, p).unwrap();
            c.arg("--policy").arg(path);
        }
        let child = c.spawn().expect("starting credns serve");
        let d = Daemon(child);
        let t0 = Instant::now();
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "credns serve did not answer on {}",
                self.socket.display()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        d
    }

    /// `credns ARGS` as root, or as uid/gid 1000 without supplementary groups.
    fn cmd(&self, unprivileged: bool, args: &[&str]) -> Command {
        let mut c = if unprivileged {
            let mut c = Command::new("setpriv");
            c.args(["--reuid", USER, "--regid", USER, "--clear-groups", BIN]);
            c
        } else {
            Command::new(BIN)
        };
        c.args(args)
            .env("PATH", "/usr/bin:/bin")
            // Somewhere uid 1000 and the container's root may stand.
            .current_dir("/");
        c
    }

    fn run(&self, unprivileged: bool, args: &[&str]) -> Output {
        self.cmd(unprivileged, args).output().unwrap()
    }

    /// Every allocation, as root sees them.
    fn list(&self) -> Vec<Value> {
        let o = self.run(false, &["list", "--socket", self.socket(), "--json"]);
        let text = ok(&o);
        match serde_json::from_str(&text).unwrap() {
            Value::Array(a) => a,
            v => panic!("list --json gave {v}"),
        }
    }

    /// Poll the list until `done` holds of it; bounded (a daemon that never reaps fails).
    fn wait_list(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let t0 = Instant::now();
        loop {
            let l = self.list();
            if done(&l) {
                return l;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "waited 30s for {what}; the list is {l:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A `credns serve` child, stopped with SIGTERM (by its pid) when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.0.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let _ = self.0.wait();
    }
}

/// A child killed and reaped if the test fails while it runs.
struct Reaped(Option<Child>);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The one line of a /proc map with a single extent: (first, lower_first, count).
fn one_extent(line: &str) -> (u64, u64, u64) {
    let f: Vec<u64> = line
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(f.len(), 3, "one extent expected in {line:?}");
    (f[0], f[1], f[2])
}

/// An extent of the daemon's default pool and size: 0 onto an aligned 65536-id range.
fn assert_from_pool(e: (u64, u64, u64)) {
    assert_eq!(e.0, 0, "{e:?}");
    assert_eq!(e.2, 65536, "{e:?}");
    assert!(
        e.1 >= 524_288 && e.1 + e.2 <= 1_879_048_192 && e.1 % 65536 == 0,
        "{e:?} is not a range of the daemon's pool"
    );
}

fn lease_is_userns(a: &Value) -> bool {
    a["lease"]["user_namespace"].is_object()
}

/// `credns run` as root or uid 1000: root inside, the daemon's range in uid_map and gid_map,
/// the lease listed while the container waits, released by the daemon after it exits.
fn lives_and_is_reaped(test: &str, unprivileged: bool) {
    if !needs_root(test) || !needs_tool(test, "setpriv", "util-linux") {
        return;
    }
    let env = Env::new();
    let _d = env.serve(None);
    let go = env.dir.path().join("go");
    let script = format!(
        "id -u; id -g; cat /proc/self/uid_map; cat /proc/self/gid_map; \
         while [ ! -e {} ]; do sleep 0.02; done",
        go.display()
    );
    let mut child = Reaped(Some(
        env.cmd(
            unprivileged,
            &["run", "--socket", env.socket(), "--", "sh", "-c", &script],
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap(),
    ));
    let mut out = BufReader::new(child.0.as_mut().unwrap().stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..4 {
        let mut l = String::new();
        out.read_line(&mut l).unwrap();
        lines.push(l.trim().to_string());
    }
    assert_eq!(&lines[..2], &["0", "0"], "{lines:?}");
    let uid = one_extent(&lines[2]);
    let gid = one_extent(&lines[3]);
    assert_from_pool(uid);
    assert_from_pool(gid);
    // While the container lives, its namespace lease is the daemon's one allocation.
    let l = env.list();
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(lease_is_userns(&l[0]), "{l:?}");
    assert_eq!(l[0]["uid"]["start"].as_u64(), Some(uid.1), "{l:?}");
    assert_eq!(l[0]["gid"]["start"].as_u64(), Some(gid.1), "{l:?}");
    let owner = if unprivileged { 1000 } else { 0 };
    assert_eq!(l[0]["owner"].as_u64(), Some(owner), "{l:?}");
    std::fs::write(&go, "").unwrap();
    let st = child.0.take().unwrap().wait().unwrap();
    assert!(st.success(), "{st:?}");
    // credns run released nothing itself: the daemon saw the namespace die.
    env.wait_list("the daemon to reap the namespace lease", |l| l.is_empty());
}

#[test]
fn root_runs_through_the_daemon_and_the_daemon_reaps() {
    lives_and_is_reaped("root_runs_through_the_daemon_and_the_daemon_reaps", false);
}

#[test]
fn unprivileged_user_runs_through_the_daemon() {
    lives_and_is_reaped("unprivileged_user_runs_through_the_daemon", true);
}

#[test]
fn id_prints_root_inside() {
    let test = "id_prints_root_inside";
    if !needs_root(test) || !needs_tool(test, "setpriv", "util-linux") {
        return;
    }
    let env = Env::new();
    let _d = env.serve(None);
    for unprivileged in [false, true] {
        let o = env.run(unprivileged, &["run", "--socket", env.socket(), "--", "id"]);
        let out = ok(&o);
        assert!(out.starts_with("uid=0(root) gid=0(root)"), "{out}");
        // The daemon (privileged over the parent namespace) wrote gid_map with setgroups left
        // "allow", so the child's setgroups(2) worked even for an unprivileged caller.
        let o = env.run(
            unprivileged,
            &[
                "run",
                "--socket",
                env.socket(),
                "--",
                "sh",
                "-c",
                "cat /proc/self/setgroups; id -G",
            ],
        );
        assert_eq!(ok(&o), "allow\n0\n");
    }
}

#[test]
fn root_name_lease_through_the_daemon_is_kept() {
    let test = "root_name_lease_through_the_daemon_is_kept";
    if !needs_root(test) {
        return;
    }
    let env = Env::new();
    let _d = env.serve(None);
    let run = || {
        let o = env.run(
            false,
            &[
                "run",
                "--socket",
                env.socket(),
                "--name",
                "web",
                "--",
                "cat",
                "/proc/self/uid_map",
            ],
        );
        one_extent(ok(&o).trim())
    };
    let first = run();
    assert_from_pool(first);
    let l = env.list();
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(l[0]["lease"]["name"], "web", "{l:?}");
    assert_eq!(l[0]["uid"]["start"].as_u64(), Some(first.1));
    // Reused next time.
    assert_eq!(run(), first);
    assert_eq!(env.list().len(), 1);
}

#[test]
fn unprivileged_errors_are_exact() {
    let test = "unprivileged_errors_are_exact";
    if !needs_root(test) || !needs_tool(test, "setpriv", "util-linux") {
        return;
    }
    let env = Env::new();
    let _d = env.serve(Some("[quota]\nmax_ranges = 1\n"));
    let failed = |o: &Output, want: &str| {
        assert_eq!(o.status.code(), Some(125), "{}", stderr(o));
        assert_eq!(stderr(o), want);
        assert_eq!(stdout(o), "");
    };
    // No daemon on the socket: nothing an unprivileged caller can do alone.
    let nowhere = env.dir.path().join("none/io.credns.Registry");
    failed(
        &env.run(
            true,
            &["run", "--socket", nowhere.to_str().unwrap(), "--", "id"],
        ),
        &format!(
            "credns run: error: no credns daemon answers at {} (connect {}: ENOENT (No such file or directory)), and only root opens the store /var/lib/credns/registry.redb directly\n",
            nowhere.display(),
            nowhere.display()
        ),
    );
    // --rootfs is refused before anything is allocated or spawned.
    let rootfs = env.dir.path().join("rootfs");
    for d in ["proc", "dev"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    failed(
        &env.run(
            true,
            &[
                "run",
                "--socket",
                env.socket(),
                "--rootfs",
                rootfs.to_str().unwrap(),
                "--",
                "id",
            ],
        ),
        "credns run: error: --rootfs needs root (an idmapped mount needs CAP_SYS_ADMIN over the host's filesystem)\n",
    );
    assert_eq!(env.list(), Vec::<Value>::new());
    // A name lease needs the caller to write the maps.
    failed(
        &env.run(
            true,
            &["run", "--socket", env.socket(), "--name", "x", "--", "id"],
        ),
        "credns run: error: --name needs root: the registry writes the maps of namespace leases only; \
         run without --name (the range is then leased to the new namespace)\n",
    );
    // Quota: uid 1000 holds its one range; the daemon's refusal comes through credns run.
    let o = env.run(
        true,
        &[
            "alloc",
            "--socket",
            env.socket(),
            "--name",
            "mine",
            "--json",
        ],
    );
    ok(&o);
    failed(
        &env.run(true, &["run", "--socket", env.socket(), "--", "id"]),
        "credns run: error: quota exceeded for owner 1000: holds 1 ranges, the limit is 1 \
         (quota.max_ranges) (io.credns.Registry.QuotaExceeded)\n",
    );
    let l = env.list();
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(l[0]["lease"]["name"], "mine");
    // Root's quota is not limited: the same daemon still serves root.
    ok(&env.run(false, &["run", "--socket", env.socket(), "--", "true"]));
}

/// As root with a daemon answering, --rootfs and --volume go through it too: the range is
/// leased to a holder namespace whose maps the daemon writes and which carries the mounts'
/// idmap; the container sees the image's and the volume's owners as its own ids, and the lease
/// is gone once the command ends.
#[test]
fn root_rootfs_and_volume_through_the_daemon() {
    let test = "root_rootfs_and_volume_through_the_daemon";
    if !needs_root(test) {
        return;
    }
    let Some(busybox) = common::static_busybox(test) else {
        return;
    };
    let env = Env::new();
    let _d = env.serve(None);
    let rootfs = common::busybox_rootfs(&busybox, env.dir.path());
    std::fs::create_dir_all(rootfs.join("data")).unwrap();
    let data = env.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for (name, uid) in [("by0", 0u32), ("by1000", 1000)] {
        let f = data.join(name);
        std::fs::write(&f, "").unwrap();
        std::os::unix::fs::chown(&f, Some(uid), Some(uid)).unwrap();
    }
    let volume = format!("{}:/data", data.display());
    let o = env.run(
        false,
        &[
            "run",
            "--socket",
            env.socket(),
            "--rootfs",
            rootfs.to_str().unwrap(),
            "--volume",
            &volume,
            "--",
            "sh",
            "-c",
            "id -u; stat -c %u /bin/busybox /data/by0 /data/by1000; cat /proc/self/uid_map; touch /data/new",
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..4], &["0", "0", "0", "1000"], "{out}");
    assert_from_pool(one_extent(lines[4]));
    // Created inside as the container's root: stored with the image's id 0, not a host id.
    let meta = std::fs::metadata(data.join("new")).unwrap();
    assert_eq!(
        (
            std::os::unix::fs::MetadataExt::uid(&meta),
            std::os::unix::fs::MetadataExt::gid(&meta)
        ),
        (0, 0)
    );
    env.wait_list("the daemon to release the holder's lease", |l| l.is_empty());
}

#[test]
fn a_refused_container_keeps_no_lease_through_the_daemon() {
    // Regression: `credns run --name X --rootfs IMG --volume /proc/sys:/data` (or --user
    // outside the range) through the daemon was refused, yet X's allocation stayed.
    let test = "a_refused_container_keeps_no_lease_through_the_daemon";
    if !needs_root(test) {
        return;
    }
    let Some(busybox) = common::static_busybox(test) else {
        return;
    };
    let env = Env::new();
    let _d = env.serve(None);
    let rootfs = common::busybox_rootfs(&busybox, env.dir.path());
    std::fs::create_dir_all(rootfs.join("data")).unwrap();
    let root = rootfs.to_str().unwrap();
    for extra in [vec!["--volume", "/proc/sys:/data"], vec!["--user", "70000"]] {
        let mut args = vec![
            "run",
            "--socket",
            env.socket(),
            "--name",
            "x",
            "--rootfs",
            root,
        ];
        args.extend(extra.iter().copied());
        args.extend(["--", "true"]);
        let o = env.run(false, &args);
        assert_eq!(o.status.code(), Some(125), "{extra:?}: {}", stderr(&o));
        assert_eq!(
            env.list(),
            Vec::<Value>::new(),
            "{extra:?}: the refusal left a lease"
        );
    }
}
