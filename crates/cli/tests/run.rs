//! `credns run` end to end, as root on the real kernel: ids and maps inside, `--user`, `--pid`,
//! `--rootfs`, exit codes, leases, and errors.

mod common;

use common::*;
use credns_registry::{Lease, Policy, Registry, Selector};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn store(&self) -> String {
        self.dir.path().join("registry.redb").display().to_string()
    }
    fn run(&self, args: &[&str]) -> std::process::Output {
        let store = self.store();
        // A socket nobody serves: these tests use the store directly, never a host's daemon.
        let socket = self.dir.path().join("no-daemon.sock").display().to_string();
        let mut all = vec!["run", "--store", &store, "--socket", &socket];
        all.extend_from_slice(args);
        credns(&all)
    }
}

/// The one line of a /proc map with a single extent: (first, lower_first, count).
fn one_extent(text: &str) -> (u64, u64, u64) {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one extent expected in {text:?}");
    let f: Vec<u64> = lines[0]
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    (f[0], f[1], f[2])
}

#[test]
fn root_inside_with_the_allocated_range_and_released_after() {
    if !needs_root("root_inside_with_the_allocated_range_and_released_after") {
        return;
    }
    let env = Env::new();
    let out = ok(&env.run(&[
        "--",
        "sh",
        "-c",
        "id -u; id -g; id -G; cat /proc/self/uid_map; cat /proc/self/gid_map",
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..3], &["0", "0", "0"], "{out}");
    let uid = one_extent(lines[3]);
    let gid = one_extent(lines[4]);
    assert_eq!(uid, gid);
    assert_eq!(uid.0, 0);
    assert_eq!(uid.2, 65536);
    assert!(uid.1 >= 524_288 && uid.1 % 65536 == 0, "{uid:?}");
    // A namespace lease: released once the container is gone.
    assert_eq!(
        allocations(env.dir.path().join("registry.redb").as_path()),
        vec![]
    );
}

#[test]
fn named_lease_is_kept_and_reused() {
    if !needs_root("named_lease_is_kept_and_reused") {
        return;
    }
    let env = Env::new();
    let map1 = ok(&env.run(&["--name", "web", "--", "cat", "/proc/self/uid_map"]));
    let store = env.dir.path().join("registry.redb");
    let allocs = allocations(&store);
    assert_eq!(allocs.len(), 1);
    let a = &allocs[0];
    assert_eq!(a.lease, Lease::name("web"));
    assert_eq!(
        one_extent(&map1),
        (0, u64::from(a.uid.start), a.uid.len()),
        "the map inside is the stored allocation"
    );
    // Same name: same range. A namespace lease meanwhile gets another one.
    let map2 = ok(&env.run(&["--name", "web", "--", "cat", "/proc/self/uid_map"]));
    assert_eq!(one_extent(&map2), one_extent(&map1));
    let other = ok(&env.run(&["--", "cat", "/proc/self/uid_map"]));
    assert_ne!(one_extent(&other).1, one_extent(&map1).1);
    let allocs = allocations(&store);
    assert_eq!(allocs.len(), 1, "{allocs:?}");
    assert_eq!(allocs[0].id, a.id);
}

#[test]
fn size_is_allocated() {
    if !needs_root("size_is_allocated") {
        return;
    }
    let env = Env::new();
    let out = ok(&env.run(&["--size", "131072", "--", "cat", "/proc/self/uid_map"]));
    assert_eq!(one_extent(&out).2, 131072);
    let out = env.run(&["--size", "0", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).starts_with("credns run: error: invalid size 0 for the "),
        "{}",
        stderr(&out)
    );
}

#[test]
fn user_option_sets_ids_inside() {
    if !needs_root("user_option_sets_ids_inside") {
        return;
    }
    let env = Env::new();
    let out = ok(&env.run(&["--user", "1000", "--", "sh", "-c", "id -u; id -g; id -G"]));
    assert_eq!(out, "1000\n1000\n1000\n");
    let out = ok(&env.run(&["--user", "1000:2000", "--", "sh", "-c", "id -u; id -g"]));
    assert_eq!(out, "1000\n2000\n");
    // A non-root uid keeps no capability after exec.
    let out = ok(&env.run(&[
        "--user",
        "1000",
        "--",
        "sh",
        "-c",
        "grep CapEff /proc/self/status",
    ]));
    assert_eq!(out, "CapEff:\t0000000000000000\n");
}

#[test]
fn pid_namespace_makes_the_command_pid_1() {
    if !needs_root("pid_namespace_makes_the_command_pid_1") {
        return;
    }
    let env = Env::new();
    let out = ok(&env.run(&[
        "--pid",
        "--",
        "sh",
        "-c",
        "echo $$; read -r me rest < /proc/self/stat; echo $me",
    ]));
    assert_eq!(out, "1\n1\n", "a fresh /proc of the new pid namespace");
}

#[test]
fn exit_codes_are_propagated() {
    if !needs_root("exit_codes_are_propagated") {
        return;
    }
    let env = Env::new();
    assert_eq!(
        env.run(&["--", "sh", "-c", "exit 7"]).status.code(),
        Some(7)
    );
    assert_eq!(env.run(&["--", "false"]).status.code(), Some(1));
    // Killed by a signal: 128 + the signal, as a shell reports it.
    let out = env.run(&["--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.status.code(), Some(128 + 15));
    assert_eq!(allocations(&env.dir.path().join("registry.redb")), vec![]);
}

#[test]
fn rootfs_has_proc_and_dev() {
    if !needs_root("rootfs_has_proc_and_dev") {
        return;
    }
    let Some(busybox) = static_busybox("rootfs_has_proc_and_dev") else {
        return;
    };
    let env = Env::new();
    let root = busybox_rootfs(&busybox, env.dir.path());
    let root_s = root.display().to_string();
    let script = "test -c /dev/null && echo null; echo hi > /dev/null && echo writable; \
                  test -c /dev/zero && test -c /dev/urandom && echo nodes; \
                  test -d /dev/shm && echo shm; cat /proc/self/uid_map | wc -l; \
                  ls / ; id -u";
    for pid in [false, true] {
        let mut args = vec!["--rootfs", root_s.as_str()];
        if pid {
            args.push("--pid");
        }
        args.extend(["--", "sh", "-c", script]);
        let out = ok(&env.run(&args));
        assert_eq!(
            out, "null\nwritable\nnodes\nshm\n1\nbin\ndev\nproc\nsys\ntmp\n0\n",
            "pid namespace: {pid}"
        );
    }
    let out = ok(&env.run(&[
        "--rootfs",
        &root_s,
        "--pid",
        "--",
        "sh",
        "-c",
        "echo $$; read -r me rest < /proc/self/stat; echo $me",
    ]));
    assert_eq!(out, "1\n1\n");
    // The host's tree is not touched: nothing stays mounted on the rootfs.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&root_s), "{mounts}");
    // Not found inside the rootfs (it is on the host): the usual message and 127.
    let out = env.run(&["--rootfs", &root_s, "--", "/usr/bin/env"]);
    assert_eq!(out.status.code(), Some(127));
    assert_eq!(
        stderr(&out),
        "credns run: cannot execute '/usr/bin/env': No such file or directory\n"
    );
}

#[test]
fn bad_input_is_refused_with_a_clear_error() {
    if !needs_root("bad_input_is_refused_with_a_clear_error") {
        return;
    }
    let env = Env::new();
    let store = env.dir.path().join("registry.redb");

    let out = env.run(&["--", "/nonexistent/cmd", "x"]);
    assert_eq!(out.status.code(), Some(127));
    assert_eq!(
        stderr(&out),
        "credns run: cannot execute '/nonexistent/cmd': No such file or directory\n"
    );
    let out = env.run(&["--", "no-such-command-credns"]);
    assert_eq!(out.status.code(), Some(127));
    assert_eq!(
        stderr(&out),
        "credns run: cannot execute 'no-such-command-credns': No such file or directory\n"
    );
    // Regression: a PATH directory the container cannot search is "not there", not EACCES
    // (exit 127, as a shell says, not 126).
    let locked = env.dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let path = format!("{}:/usr/bin:/bin", locked.display());
    let store_s = env.store();
    let socket = env.dir.path().join("no-daemon.sock").display().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_credns"))
        .args([
            "run",
            "--store",
            &store_s,
            "--socket",
            &socket,
            "--",
            "no-such-command-credns",
        ])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "credns run: cannot execute 'no-such-command-credns': No such file or directory\n"
    );
    // Found but not executable; executable but not a program (no shell fallback, as execve).
    let file = env.dir.path().join("data");
    std::fs::write(&file, "not a program\n").unwrap();
    let file_s = file.display().to_string();
    let out = env.run(&["--", &file_s]);
    assert_eq!(out.status.code(), Some(126));
    assert_eq!(
        stderr(&out),
        format!("credns run: cannot execute '{file_s}': Permission denied\n")
    );
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = env.run(&["--", &file_s]);
    assert_eq!(out.status.code(), Some(126));
    assert_eq!(
        stderr(&out),
        format!("credns run: cannot execute '{file_s}': Exec format error\n")
    );

    let out = env.run(&["--user", "abc", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        stderr(&out),
        "credns run: error: --user \"abc\": \"abc\" is not a numeric id: invalid digit found in string\n"
    );
    let out = env.run(&["--user", "70000", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    let err = stderr(&out);
    assert!(
        err.starts_with(
            "credns run: error: --user: uid 70000 is outside the namespace's mapped ids 0-65535 (allocation #"
        ),
        "{err}"
    );

    let empty = env.dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = env.run(&["--rootfs", empty.to_str().unwrap(), "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        stderr(&out),
        format!(
            "credns run: error: --rootfs {}: no proc directory in it\n",
            empty.display()
        )
    );

    let out = env.run(&["true"]);
    assert_eq!(out.status.code(), Some(2), "the command must follow --");

    // Every failure released its namespace lease.
    assert_eq!(allocations(&store), vec![]);

    // A store another process holds (a daemon) is refused, naming the reason.
    let held = Registry::open(&store, Policy::default()).unwrap();
    let out = env.run(&["--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        stderr(&out),
        format!(
            "credns run: error: the registry store {} is held by another process (a credns \
             daemon? give its socket with --socket) (io.credns.Registry.StoreUnavailable)\n",
            store.display()
        )
    );
    drop(held);
    assert!(Registry::open(&store, Policy::default())
        .unwrap()
        .get(&Selector::Name("x".into()))
        .is_none());
}

#[test]
fn namespace_lease_stays_while_processes_outlive_the_command() {
    if !needs_root("namespace_lease_stays_while_processes_outlive_the_command") {
        return;
    }
    let env = Env::new();
    // The shell exits at once; its background child lives on in the namespace.
    let out = env.run(&["--", "sh", "-c", "sleep 1 >/dev/null 2>&1 &"]);
    assert_eq!(out.status.code(), Some(0));
    let allocs = allocations(&env.dir.path().join("registry.redb"));
    assert_eq!(allocs.len(), 1, "{allocs:?}");
    assert!(
        matches!(allocs[0].lease, Lease::UserNs { .. }),
        "{allocs:?}"
    );
    let err = stderr(&out);
    assert!(
        err.starts_with("credns run: processes of user:[")
            && err.ends_with(&format!(
                "] outlive the command; allocation {} stays until the namespace is reaped\n",
                allocs[0].id
            )),
        "{err}"
    );
    // With a pid namespace the kernel kills them with its pid 1: released.
    let env = Env::new();
    ok(&env.run(&["--pid", "--", "sh", "-c", "sleep 5 >/dev/null 2>&1 &"]));
    assert_eq!(allocations(&env.dir.path().join("registry.redb")), vec![]);
}

#[test]
fn no_fd_of_the_caller_reaches_the_command() {
    if !needs_root("no_fd_of_the_caller_reaches_the_command") {
        return;
    }
    let env = Env::new();
    let store = env.store();
    // A socket nobody serves (regression: without it this test reached the host's daemon).
    let socket = env.dir.path().join("no-daemon.sock");
    // fd 7 is open without close-on-exec in credns; the command must not see it.
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            "exec 7</etc/passwd; exec \"$0\" run --store \"$1\" --socket \"$2\" -- sh -c 'ls /proc/$$/fd'",
        ])
        .arg(env!("CARGO_BIN_EXE_credns"))
        .arg(&store)
        .arg(&socket)
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert_eq!(ok(&out), "0\n1\n2\n");
}

#[test]
fn concurrent_direct_runs_get_disjoint_ranges_and_the_store_stays_usable() {
    // The store is locked for a transaction, never for a container's lifetime: runs as root
    // with no daemon all succeed side by side, and `list` and `serve` work while they run.
    if !needs_root("concurrent_direct_runs_get_disjoint_ranges_and_the_store_stays_usable") {
        return;
    }
    let env = Env::new();
    let store = env.store();
    // No daemon answers on this socket until one is started below, on it.
    let sock = env.dir.path().join("d.sock");
    let nosock = sock.display().to_string();
    let bin = env!("CARGO_BIN_EXE_credns");
    let runs: Vec<std::process::Child> = (0..4)
        .map(|_| {
            std::process::Command::new(bin)
                .args(["run", "--store", &store, "--socket", &nosock, "--"])
                // Each stays until the test lets it go, so all four are running at once.
                .args(["sh", "-c", "cat /proc/self/uid_map; read x"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // While they run: list (directly) sees their leases, and a daemon can start on the store.
    let t0 = std::time::Instant::now();
    let listed = loop {
        let out = credns(&["list", "--store", &store, "--socket", &nosock, "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let n = v.as_array().unwrap().len();
        if n == 4 || t0.elapsed() > std::time::Duration::from_secs(60) {
            break n;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(listed, 4, "the four runs' leases, listed while they run");
    let mut daemon = std::process::Command::new(bin)
        .args([
            "serve",
            "--store",
            &store,
            "--socket",
            sock.to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(20),
            "serve did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut starts = Vec::new();
    for mut r in runs {
        use std::io::Write;
        r.stdin.take().unwrap().write_all(b"\n").unwrap();
        let out = r.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        starts.push(one_extent(&String::from_utf8_lossy(&out.stdout)).1);
    }
    starts.sort_unstable();
    starts.dedup();
    assert_eq!(starts.len(), 4, "disjoint ranges: {starts:?}");
    // Their leases were given back, through the daemon that holds the store now.
    let out = credns(&["list", "--socket", sock.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 0, "{v}");
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(daemon.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    );
    daemon.wait().unwrap();
}
