//! A toy interface and a server running it on a socket in a temporary directory.
#![allow(dead_code)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use credns_varlink::{Call, Client, ErrorReply, Interface, Limits, Server, ServerInfo};
use serde::Deserialize;
use serde_json::{json, Value};

pub const TOY: &str = "io.example.Toy";

pub const TOY_IDL: &str = "# A toy.
interface io.example.Toy

method Echo(text: string, times: ?int) -> (text: string, uid: int, fds: int)
method Fail() -> ()
method Count(n: int) -> (i: int)
method WriteFd(fd: int, text: string) -> ()
method Sleep(ms: int) -> ()
method Big(size: int) -> (data: string)
method Panic() -> ()

error Broken (message: string)
";

/// How many `Sleep` calls have started, in this process.
pub static SLEEPS_STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The toy interface.
pub struct Toy;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EchoP {
    text: String,
    times: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CountP {
    n: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteFdP {
    fd: u64,
    text: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SleepP {
    ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BigP {
    size: usize,
}

impl Interface for Toy {
    fn name(&self) -> &str {
        TOY
    }

    fn description(&self) -> &str {
        TOY_IDL
    }

    fn call(&self, call: &mut Call<'_>) -> Result<Value, ErrorReply> {
        match call.method() {
            "Echo" => {
                let p: EchoP = call.parameters_as()?;
                Ok(json!({
                    "text": p.text.repeat(p.times.unwrap_or(1) as usize),
                    "uid": call.peer().uid,
                    "fds": call.fd_count(),
                }))
            }
            "Fail" => Err(ErrorReply::new(
                TOY,
                "Broken",
                json!({"message": "it broke"}),
            )),
            "Count" => {
                let p: CountP = call.parameters_as()?;
                for i in 0..p.n {
                    call.reply_continues(json!({ "i": i }))?;
                }
                Ok(json!({ "i": p.n }))
            }
            "WriteFd" => {
                let p: WriteFdP = call.parameters_as()?;
                let fd = call
                    .take_fd(p.fd)
                    .ok_or_else(|| ErrorReply::invalid_parameter("fd"))?;
                std::fs::File::from(fd)
                    .write_all(p.text.as_bytes())
                    .map_err(|_| ErrorReply::invalid_parameter("fd"))?;
                Ok(json!({}))
            }
            "Sleep" => {
                let p: SleepP = call.parameters_as()?;
                SLEEPS_STARTED.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(p.ms));
                Ok(json!({}))
            }
            "Big" => {
                let p: BigP = call.parameters_as()?;
                Ok(json!({ "data": "x".repeat(p.size) }))
            }
            "Panic" => panic!("the toy panics on purpose"),
            // Declared nowhere: the server answers MethodNotFound before calling.
            other => Err(ErrorReply::method_not_found(other)),
        }
    }
}

pub fn info() -> ServerInfo {
    ServerInfo {
        vendor: "credns".into(),
        product: "toy".into(),
        version: "1.2.3".into(),
        url: "https://example.invalid/toy".into(),
    }
}

/// A server serving [`Toy`] on its own socket until dropped.
pub struct Running {
    pub path: PathBuf,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

pub fn start(limits: Limits) -> Running {
    start_with(limits, |_| {})
}

pub fn start_with(limits: Limits, setup: impl FnOnce(&mut Server)) -> Running {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("io.example.Toy");
    let listener = UnixListener::bind(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let mut server = Server::new(info(), limits);
    server.add(Arc::new(Toy));
    setup(&mut server);
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let handle = std::thread::spawn(move || server.serve(listener, &s2).unwrap());
    let r = Running {
        path,
        stop,
        handle: Some(handle),
        _dir: dir,
    };
    // Ready once it answers (and has raised the descriptor limit).
    r.client()
        .call("org.varlink.service.GetInfo", Value::Null, &[])
        .unwrap();
    r
}

impl Running {
    pub fn client(&self) -> Client {
        Client::connect_timeout(&self.path, Duration::from_secs(20)).unwrap()
    }

    pub fn stream(&self) -> UnixStream {
        UnixStream::connect(&self.path).unwrap()
    }

    /// Stop and wait for `serve` to return.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        self.handle.take().unwrap().join().unwrap();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Run `f` on a thread whose uid (real, effective, saved, fs) is `uid`: the kernel records
/// that thread's credentials for the connections it makes (`SO_PEERCRED`).
pub fn as_uid<T: Send>(uid: u32, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let u = rustix::process::Uid::from_raw(uid);
            rustix::thread::set_thread_res_uid(u, u, u).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

/// Whether a call on `c` fails because the server closed the connection.
pub fn is_closed(r: &Result<Value, credns_varlink::Error>) -> bool {
    use credns_varlink::Error;
    match r {
        Err(Error::Disconnected) => true,
        Err(Error::Sys(credns_sys::Error::Sys { errno, .. })) => {
            *errno == credns_sys::Errno::PIPE || *errno == credns_sys::Errno::CONNRESET
        }
        _ => false,
    }
}

/// Read from `c` until the server closes it (true) or `within` passes (false), dropping
/// whatever replies come first.
pub fn closed_within(c: &mut Client, within: Duration) -> bool {
    c.set_timeout(Some(within)).unwrap();
    loop {
        match c.recv_raw() {
            Ok(_) => continue,
            Err(credns_varlink::Error::Disconnected) => return true,
            Err(credns_varlink::Error::Sys(credns_sys::Error::Sys { errno, .. }))
                if errno == credns_sys::Errno::CONNRESET =>
            {
                return true
            }
            Err(_) => return false,
        }
    }
}
