//! What the benchmarks share: the installed build and a daemon of their own.
// Each benchmark uses a part of this.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The installed build, `cargo dist`: target/dist/credns, static against musl (what a host
/// installs, and what request-key would run).
pub fn build_dist() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let st = Command::new(cargo)
        .args(["-q", "dist"])
        .status()
        .expect("running cargo dist to build the installed credns");
    assert!(st.success(), "cargo dist failed");
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("bench executable in target/<profile>/deps")
        .join("dist/credns")
}

/// `BIN serve` on a socket and store under `dir` (never the host's), with `extra` arguments;
/// returned once the socket answers, stopped with SIGTERM when dropped.
pub struct Daemon {
    child: std::process::Child,
    pub socket: PathBuf,
}

impl Daemon {
    pub fn start(bin: &Path, dir: &Path, extra: &[&OsStr]) -> Self {
        let socket = dir.join("io.credns.Registry");
        let child = Command::new(bin)
            .arg("serve")
            .arg("--socket")
            .arg(&socket)
            .arg("--store")
            .arg(dir.join("registry.redb"))
            .args(extra)
            .stderr(Stdio::null())
            .spawn()
            .expect("starting credns serve");
        let t0 = Instant::now();
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "{} serve did not answer on {}",
                bin.display(),
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        Daemon { child, socket }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let _ = self.child.wait();
    }
}
