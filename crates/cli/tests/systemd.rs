//! `credns serve` as a systemd service: started by systemd's own `systemd-socket-activate` on
//! the first connection, READY=1 and the watchdog on a notify socket of the test's, the wrong
//! kind of passed descriptor refused clearly, SIGHUP with a broken policy (the old one kept,
//! the daemon still serving), one log line per call, and syslog priorities under the journal.
//! Every daemon has its own socket, store and notify socket in a temporary directory.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_credns");
/// Long enough for a loaded machine; only a hang reaches it.
const PATIENCE: Duration = Duration::from_secs(60);

struct Scratch {
    dir: tempfile::TempDir,
    socket: PathBuf,
    store: PathBuf,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("io.credns.Registry");
        let store = dir.path().join("lib/registry.redb");
        Scratch { dir, socket, store }
    }

    /// `credns serve` on this scratch's socket and store, no host id files.
    fn serve_args(&self) -> Vec<String> {
        [
            "serve",
            "--socket",
            path(&self.socket),
            "--store",
            path(&self.store),
            "--etc",
            path(self.dir.path()),
        ]
        .map(str::to_string)
        .to_vec()
    }

    fn client(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--store")
            .arg(self.dir.path().join("no-direct-store/registry.redb"))
            .output()
            .unwrap()
    }

    /// A notify socket the daemon will send to.
    fn notify_socket(&self) -> (UnixDatagram, PathBuf) {
        let p = self.dir.path().join("notify");
        let s = UnixDatagram::bind(&p).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        (s, p)
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A daemon child whose stderr lines arrive on a channel; killed if the test ends early.
struct Daemon {
    child: Option<Child>,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Daemon {
    fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Daemon {
            child: Some(child),
            lines,
            seen: Vec::new(),
        }
    }

    /// The first stderr line (from now on) containing every one of `parts`.
    fn wait_line(&mut self, parts: &[&str]) -> String {
        let t0 = Instant::now();
        loop {
            let left = PATIENCE.saturating_sub(t0.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if parts.iter().all(|p| l.contains(p)) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "no line with {parts:?}; stderr so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn signal(&self, sig: rustix::process::Signal) {
        let pid = self.child.as_ref().unwrap().id() as i32;
        rustix::process::kill_process(rustix::process::Pid::from_raw(pid).unwrap(), sig).unwrap();
    }

    /// SIGTERM, then the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        self.signal(rustix::process::Signal::TERM);
        self.child.take().unwrap().wait().unwrap()
    }

    /// Wait for the daemon to exit by itself; its status and whole stderr.
    fn exit(mut self) -> (std::process::ExitStatus, String) {
        let st = self.child.take().unwrap().wait().unwrap();
        self.seen.extend(self.lines.try_iter());
        // The reader thread may still hold the last lines: it ends with the pipe.
        while let Ok(l) = self.lines.recv_timeout(PATIENCE) {
            self.seen.push(l);
        }
        (st, self.seen.join("\n"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn recv(s: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = s.recv(&mut buf).expect("a notification arrives");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Ids in an allocation's uid range.
fn size(a: &serde_json::Value) -> u64 {
    a["uid"]["end"].as_u64().unwrap() - a["uid"]["start"].as_u64().unwrap() + 1
}

fn ready(test: &str) -> bool {
    common::needs_root(test) && common::needs_tool(test, "systemd-socket-activate", "systemd")
}

#[test]
fn socket_activation_starts_the_daemon_on_the_first_connection_and_it_notifies() {
    let test = "socket_activation_starts_the_daemon_on_the_first_connection_and_it_notifies";
    if !ready(test) {
        return;
    }
    let s = Scratch::new();
    let (notify, notify_path) = s.notify_socket();
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.arg("--listen")
        .arg(&s.socket)
        .arg(format!("--setenv=NOTIFY_SOCKET={}", path(&notify_path)))
        .arg("--setenv=WATCHDOG_USEC=200000")
        .arg("--fdname=io.credns.Registry")
        .arg(BIN)
        .args(s.serve_args());
    let mut d = Daemon::spawn(cmd);
    // systemd-socket-activate listens; credns starts only when someone connects.
    d.wait_line(&["Listening on", path(&s.socket)]);
    assert!(
        !s.store.exists(),
        "the daemon ran before the first connection"
    );

    let a = json(&s.client(&["alloc", "--name", "first-use", "--json"]));
    assert_eq!(a["lease"]["name"], "first-use");
    let id = a["id"].as_u64().unwrap();

    let first = recv(&notify);
    assert_eq!(
        first,
        format!(
            "READY=1\nSTATUS=serving io.credns.Registry on {}",
            s.socket.display()
        )
    );
    assert_eq!(recv(&notify), "WATCHDOG=1", "WATCHDOG_USEC asks for pings");
    d.wait_line(&["serving io.credns.Registry", "activated=true"]);
    let line = d.wait_line(&["call", "method=io.credns.Registry.Allocate"]);
    assert!(line.contains("uid=0 "), "{line}");
    assert!(line.contains(&format!("outcome=allocation {id}")), "{line}");
    // Parameters are not logged.
    assert!(!line.contains("first-use"), "{line}");

    let st = d.terminate();
    assert!(st.success(), "{st}");
    let stopping = std::iter::repeat_with(|| recv(&notify))
        .find(|m| m != "WATCHDOG=1")
        .unwrap();
    assert!(stopping.starts_with("STOPPING=1\n"), "{stopping}");
    // The socket is the service manager's: left for the next start.
    assert!(s.socket.exists(), "a passed socket was removed");
}

#[test]
fn the_userdb_socket_passed_beside_the_registrys_is_served_and_left_in_place() {
    // As credns.socket and credns-userdb.socket together pass them to credns.service.
    let test = "the_userdb_socket_passed_beside_the_registrys_is_served_and_left_in_place";
    if !ready(test) {
        return;
    }
    let s = Scratch::new();
    let userdb = s.dir.path().join("userdb/io.credns.UserDatabase");
    std::fs::create_dir_all(userdb.parent().unwrap()).unwrap();
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.arg("--listen")
        .arg(&s.socket)
        .arg("--listen")
        .arg(&userdb)
        .arg("--fdname=io.credns.Registry:io.systemd.UserDatabase")
        .arg(BIN)
        .args(s.serve_args());
    let mut d = Daemon::spawn(cmd);
    d.wait_line(&["Listening on", path(&userdb)]);
    let a = json(&s.client(&["alloc", "--name", "web", "--json"]));
    let uid = a["uid"]["start"].as_u64().unwrap() + 1;
    d.wait_line(&["serving io.systemd.UserDatabase", "activated=true"]);
    // The userdb face answers on the passed socket, named by its file.
    let mut c = credns_varlink::Client::connect(&userdb).unwrap();
    let r = c
        .call(
            "io.systemd.UserDatabase.GetUserRecord",
            serde_json::json!({ "uid": uid, "service": "io.credns.UserDatabase" }),
            &[],
        )
        .unwrap();
    assert_eq!(r["record"]["userName"], "ct-web-1", "{r}");
    let st = d.terminate();
    assert!(st.success(), "{st}");
    assert!(userdb.exists(), "a passed socket was removed");
}

#[test]
fn a_passed_descriptor_of_the_wrong_kind_is_refused_clearly() {
    let test = "a_passed_descriptor_of_the_wrong_kind_is_refused_clearly";
    if !ready(test) {
        return;
    }
    // A datagram socket, as a unit with ListenDatagram= would pass.
    let s = Scratch::new();
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.arg("--datagram")
        .arg("--listen")
        .arg(&s.socket)
        .arg(BIN)
        .args(s.serve_args());
    let mut d = Daemon::spawn(cmd);
    d.wait_line(&["Listening on"]);
    UnixDatagram::unbound()
        .unwrap()
        .send_to(b"hello", &s.socket)
        .unwrap();
    let (st, err) = d.exit();
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "credns: error: the descriptor passed as \"unknown\" is an AF_UNIX SOCK_DGRAM \
             socket, not a listening AF_UNIX stream socket"
        ),
        "{err}"
    );
    assert!(
        !s.store.exists(),
        "the store was opened before the socket was checked"
    );

    // A file where a socket should be.
    let file = s.dir.path().join("not-a-socket");
    std::fs::write(&file, "").unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(
            "LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=io.credns.Registry \
             exec \"$0\" \"$@\" 3<\"$NOT_A_SOCKET\"",
        )
        .arg(BIN)
        .args(s.serve_args())
        .env("NOT_A_SOCKET", &file);
    let (st, err) = Daemon::spawn(cmd).exit();
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "the descriptor passed as \"io.credns.Registry\" is not a socket, not a listening \
             AF_UNIX stream socket"
        ),
        "{err}"
    );

    // A socket passed under another interface's name only.
    let s2 = Scratch::new();
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.arg("--listen")
        .arg(&s2.socket)
        .arg("--fdname=io.systemd.NamespaceResource")
        .arg(BIN)
        .args(s2.serve_args());
    let mut d = Daemon::spawn(cmd);
    d.wait_line(&["Listening on"]);
    // The connection starts the daemon, which refuses and closes it.
    let _ = std::os::unix::net::UnixStream::connect(&s2.socket);
    let (st, err) = d.exit();
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "credns: error: the service manager passed sockets named [\"io.systemd.NamespaceResource\"], none of them \"io.credns.Registry\""
        ),
        "{err}"
    );

    // LISTEN_FDS naming a descriptor that is not open.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\" 3<&-")
        .arg(BIN)
        .args(s.serve_args());
    let (st, err) = Daemon::spawn(cmd).exit();
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(
        err.contains("LISTEN_FDS names fd 3 (unknown), which is not open"),
        "{err}"
    );
}

#[test]
fn sighup_with_a_broken_policy_keeps_the_old_one_and_keeps_serving() {
    let test = "sighup_with_a_broken_policy_keeps_the_old_one_and_keeps_serving";
    if !common::needs_root(test) {
        return;
    }
    let s = Scratch::new();
    let policy = s.dir.path().join("policy.toml");
    std::fs::write(&policy, "[pool]\ndefault_size = 65536\n").unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(s.serve_args()).arg("--policy").arg(&policy);
    let mut d = Daemon::spawn(cmd);
    d.wait_line(&["serving io.credns.Registry", "activated=false"]);
    let a = json(&s.client(&["alloc", "--name", "before", "--json"]));
    assert_eq!(size(&a), 65_536);

    std::fs::write(&policy, "[pool]\ndefault_size = 4096\nalign = \"x\"\n").unwrap();
    d.signal(rustix::process::Signal::HUP);
    let line = d.wait_line(&["SIGHUP"]);
    assert!(
        line.contains(&format!(
            "SIGHUP: {}:3:9: not a valid policy: invalid type",
            path(&policy)
        )) && line.contains("keeping the policy in force"),
        "{line}"
    );
    assert!(line.starts_with("credns: ERROR: "), "{line}");
    let a = json(&s.client(&["alloc", "--name", "after-broken", "--json"]));
    assert_eq!(size(&a), 65_536, "the old policy stays in force");

    std::fs::write(&policy, "[pool]\ndefault_size = 4096\nalign = 4096\n").unwrap();
    d.signal(rustix::process::Signal::HUP);
    d.wait_line(&["SIGHUP: policy reloaded"]);
    let a = json(&s.client(&["alloc", "--name", "after-fixed", "--json"]));
    assert_eq!(size(&a), 4096, "the new policy is in force");
    let l = json(&s.client(&["list", "--json"]));
    assert_eq!(l.as_array().unwrap().len(), 3, "every allocation kept: {l}");
    assert!(d.terminate().success());
}

#[test]
fn under_the_journal_each_line_starts_with_its_syslog_priority() {
    let test = "under_the_journal_each_line_starts_with_its_syslog_priority";
    if !common::needs_root(test) {
        return;
    }
    let s = Scratch::new();
    let log = s.dir.path().join("journal");
    let file = std::fs::File::create(&log).unwrap();
    let m = file.metadata().unwrap();
    let mut child = Command::new(BIN)
        .args(s.serve_args())
        .args(["--log-level", "info"])
        .env("JOURNAL_STREAM", format!("{}:{}", m.dev(), m.ino()))
        .stderr(file)
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while std::os::unix::net::UnixStream::connect(&s.socket).is_err() {
        assert!(t0.elapsed() < PATIENCE, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let o = s.client(&["release", "nothing-here"]);
    assert_eq!(o.status.code(), Some(2));
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert!(child.wait().unwrap().success());
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<6>serving io.credns.Registry")),
        "{text}"
    );
    let call = lines
        .iter()
        .find(|l| l.contains("method=io.credns.Registry.Release"))
        .unwrap_or_else(|| panic!("no call line: {text}"));
    assert!(call.starts_with("<6>call refused uid=0 pid="), "{call}");
    assert!(call.contains("error=io.credns.Registry.NotFound"), "{call}");
    assert!(lines.iter().all(|l| l.starts_with('<')), "{text}");

    // The same variable naming another file (a redirected child of a unit) is not the journal.
    let s = Scratch::new();
    let mut d = Daemon::spawn({
        let mut c = Command::new(BIN);
        c.args(s.serve_args())
            .env("JOURNAL_STREAM", format!("{}:{}", m.dev(), m.ino()));
        c
    });
    let l = d.wait_line(&["serving io.credns.Registry"]);
    assert!(l.starts_with("credns: INFO: "), "{l}");
    assert!(d.terminate().success());
}

/// The capabilities `CapabilityBoundingSet=` in packaging/credns.service keeps, as setpriv's
/// `--bounding-set` (`-all,+sys_admin,...`).
fn units_bounding_set() -> String {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/credns.service"),
    )
    .unwrap();
    let caps = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("credns.service sets CapabilityBoundingSet=");
    let keep: Vec<String> = caps
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    format!("-all,{}", keep.join(","))
}

#[test]
fn the_daemon_serves_inside_the_units_sandbox() {
    // What credns.service's sandbox takes away, done by hand (systemd is not pid 1 in every
    // test machine): a read-only root but for the store, empty /tmp, /root and /home, no
    // network, no new privileges, only the unit's capability bounding set; the socket passed
    // in by systemd-socket-activate as credns.socket would pass it. The daemon must still write
    // a user's namespace maps, serve `credns run` to that user, and see the namespace die.
    let test = "the_daemon_serves_inside_the_units_sandbox";
    if !ready(test)
        || !common::needs_tool(test, "setpriv", "util-linux")
        || !common::needs_tool(test, "unshare", "util-linux")
    {
        return;
    }
    let s = Scratch::new();
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // Outside /tmp, which the sandbox covers; made and removed here.
    let state = tempfile::Builder::new()
        .prefix("credns-sandbox-test-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let store = state.path().join("registry.redb");
    // The binary too: a checkout under /tmp, /root or /home is covered in the sandbox.
    let bin = state.path().join("credns");
    std::fs::copy(BIN, &bin).unwrap();
    let inner = "set -e
        mount --bind \"$STATE\" \"$STATE\"
        mount -o remount,bind,ro /
        for d in /tmp /root /home /run/user; do
          if [ -d \"$d\" ]; then mount -t tmpfs -o mode=0755 credns-sandbox-test \"$d\"; fi
        done
        exec setpriv --no-new-privs --bounding-set=\"$CAPS\" \"$0\" serve --store \"$STATE/registry.redb\" --etc /etc";
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.arg("--listen")
        .arg(&s.socket)
        .arg("--fdname=io.credns.Registry")
        // systemd-socket-activate gives the program only the variables it is told.
        .arg(format!("--setenv=STATE={}", path(state.path())))
        .arg(format!("--setenv=CAPS={}", units_bounding_set()))
        .args(["unshare", "--mount", "--net", "sh", "-c", inner])
        .arg(&bin);
    let mut d = Daemon::spawn(cmd);
    d.wait_line(&["Listening on"]);
    // As SocketMode=0666 makes it.
    std::fs::set_permissions(&s.socket, std::fs::Permissions::from_mode(0o666)).unwrap();

    // A user's namespace, its maps written by the sandboxed daemon.
    let mut user_ns = Command::new("setpriv")
        .args(["--reuid=1000", "--regid=1000", "--clear-groups"])
        .args(["unshare", "--user", "sleep", "600"])
        .spawn()
        .unwrap();
    let pid = user_ns.id().to_string();
    let t0 = Instant::now();
    while std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap() != "sleep\n" {
        assert!(t0.elapsed() < PATIENCE, "unshare did not exec sleep");
        std::thread::sleep(Duration::from_millis(10));
    }
    let a = json(&s.client(&[
        "alloc",
        "--userns",
        &pid,
        "--write-maps",
        "--size",
        "1000",
        "--json",
    ]));
    d.wait_line(&["serving io.credns.Registry", "activated=true"]);
    assert!(
        store.exists(),
        "the store is not where the sandbox lets it write"
    );
    // The daemon runs as the sandbox says: the unit's capabilities only, no new privileges.
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", d.child.as_ref().unwrap().id()))
            .unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(field("NoNewPrivs:"), "1");
    let bounding = u64::from_str_radix(&field("CapBnd:"), 16).unwrap();
    let (sys_module, sys_admin) = (16, 21);
    assert_eq!(bounding & (1 << sys_module), 0, "CapBnd {bounding:x}");
    assert_ne!(bounding & (1 << sys_admin), 0, "CapBnd {bounding:x}");
    let start = a["uid"]["start"].as_u64().unwrap();
    let map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    assert_eq!(
        map.split_whitespace().collect::<Vec<_>>(),
        ["0", &start.to_string(), "1000"]
    );

    // `credns run` by that user, through the daemon.
    let o = Command::new("setpriv")
        .args(["--reuid=1000", "--regid=1000", "--clear-groups"])
        .arg(BIN)
        .args(["run", "--socket", path(&s.socket), "--store"])
        .arg(s.dir.path().join("no-direct-store/registry.redb"))
        .args(["--", "id", "-u"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "0\n", "{}", stderr(&o));
    d.wait_line(&["call uid=1000", "method=io.credns.Registry.Allocate"]);

    // The namespace dies; the sandboxed daemon sees it and releases its lease.
    user_ns.kill().unwrap();
    user_ns.wait().unwrap();
    let t0 = Instant::now();
    loop {
        let l = json(&s.client(&["list", "--json"]));
        if l.as_array().unwrap().is_empty() {
            break;
        }
        assert!(t0.elapsed() < PATIENCE, "the lease was not released: {l}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(d.terminate().success());
}

#[test]
fn a_log_nobody_reads_does_not_stall_the_daemon() {
    // One line per call: a reader of stderr that falls behind (or a pipe nobody reads) must
    // cost log lines, never answers. 5000 calls write far more than a pipe holds.
    let test = "a_log_nobody_reads_does_not_stall_the_daemon";
    if !common::needs_root(test) {
        return;
    }
    let s = Scratch::new();
    let mut child = Command::new(BIN)
        .args(s.serve_args())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _unread = child.stderr.take().unwrap();
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Kill(child);
    let t0 = Instant::now();
    let mut client = loop {
        match credns_service::RegistryClient::connect(&s.socket) {
            Ok(c) => break c,
            Err(e) => assert!(t0.elapsed() < PATIENCE, "the daemon did not start: {e}"),
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    for _ in 0..5000 {
        assert!(client.list().unwrap().is_empty());
    }
    let pid = rustix::process::Pid::from_raw(child.0.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let mut child = child;
    assert!(child.0.wait().unwrap().success());
}
