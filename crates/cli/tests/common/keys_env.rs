//! A daemon of a test's own for the container-keyring tests (`keys.rs`,
//! `run_keyring_model.rs`): its socket, store and keyrings, gone with it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{needs_root, needs_tool};

pub const BIN: &str = env!("CARGO_BIN_EXE_credns");
/// The unprivileged user the tests switch to.
pub const USER: &str = "1000";

/// A daemon on a socket and store of its own; on drop it is stopped and its keyrings (the
/// holder `credns:<store>` in root's user keyring) are invalidated.
pub struct Env {
    pub dir: tempfile::TempDir,
    socket: PathBuf,
    pub store: PathBuf,
    daemon: Option<Child>,
}

impl Env {
    /// None (the test skips) without root, keyctl or setpriv.
    pub fn new(test: &str) -> Option<Self> {
        if !needs_root(test)
            || !needs_tool(test, "keyctl", "keyutils")
            || !needs_tool(test, "setpriv", "util-linux")
        {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = dir.path().join("run/io.credns.Registry");
        let store = dir.path().join("lib/registry.redb");
        let daemon = spawn_daemon(&socket, &store, dir.path());
        let env = Env {
            dir,
            socket,
            store,
            daemon: Some(daemon),
        };
        wait_for(&env.socket);
        Some(env)
    }

    pub fn socket(&self) -> &str {
        self.socket.to_str().unwrap()
    }

    /// Stop the daemon and start another on the same socket and store.
    pub fn restart(&mut self) {
        self.stop();
        self.daemon = Some(spawn_daemon(&self.socket, &self.store, self.dir.path()));
        wait_for(&self.socket);
    }

    pub fn stop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            if let Some(pid) = rustix::process::Pid::from_raw(d.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let _ = d.wait();
        }
    }

    /// `credns ARGS --socket S` as root or as uid/gid 1000.
    pub fn cmd(&self, unprivileged: bool, args: &[&str]) -> Command {
        let mut c = if unprivileged {
            let mut c = Command::new("setpriv");
            c.args(["--reuid", USER, "--regid", USER, "--clear-groups", BIN]);
            c
        } else {
            Command::new(BIN)
        };
        let (head, tail) = match args.iter().position(|a| *a == "--") {
            Some(i) => (&args[..i], &args[i..]),
            None => (args, &[][..]),
        };
        c.args(head)
            .args(["--socket", self.socket()])
            .args(tail)
            .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
            .current_dir("/");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(false, args).output().unwrap()
    }

    pub fn run_as_user(&self, args: &[&str]) -> Output {
        self.cmd(true, args).output().unwrap()
    }

    /// `sh -c SCRIPT` in a new session keyring of its own (so the test's own is not touched),
    /// with `$CREDNS` the binary and `$S` the socket.
    pub fn shell(&self, script: &str) -> Output {
        Command::new("keyctl")
            .args(["session", "-", "sh", "-c", script])
            .env("CREDNS", BIN)
            .env("S", self.socket())
            .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
            .current_dir("/")
            .output()
            .unwrap()
    }
}

pub fn spawn_daemon(socket: &Path, store: &Path, etc: &Path) -> Child {
    Command::new(BIN)
        .arg("serve")
        .arg("--socket")
        .arg(socket)
        .arg("--store")
        .arg(store)
        .arg("--etc")
        .arg(etc)
        .stderr(Stdio::null())
        .spawn()
        .expect("starting credns serve")
}

pub fn wait_for(socket: &Path) {
    let t0 = Instant::now();
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "credns serve did not answer"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop();
        // The daemon drops the holder with its last allocation's keyrings; what a test left
        // (name leases not released) goes here: every holder of this store.
        let store = self.store.display().to_string();
        let Ok(o) = Command::new("keyctl").args(["rlist", "@u"]).output() else {
            return;
        };
        for serial in String::from_utf8_lossy(&o.stdout).split_whitespace() {
            let d = Command::new("keyctl").args(["rdescribe", serial]).output();
            let d = d.map(|d| String::from_utf8_lossy(&d.stdout).trim().to_string());
            if d.is_ok_and(|d| d.starts_with("keyring;0;") && d.ends_with(&format!(":{store}"))) {
                let _ = Command::new("keyctl").args(["invalidate", serial]).output();
            }
        }
    }
}
