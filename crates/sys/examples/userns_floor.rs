//! The floor for `credns run -- /bin/true`: the least a root process must do to run a program
//! as root of a new user namespace with a mapped range. fork(2); the child unshare(2)s
//! CLONE_NEWUSER and says so on a pipe; the parent writes the child's uid_map and gid_map and
//! says go; the child execs the program; the parent waits (`user_namespaces(7)`).
//!
//! Usage: `userns_floor [--container] HOST_START COUNT PROGRAM [ARGS...]` (maps 0..COUNT onto
//! HOST_START..). Run as root. Used by `crates/cli/benches/run.rs`; no allocation, no registry.
//! With `--container` the same is done through `credns_sys::container::Container` (clone into
//! user and mount namespaces, maps, start, wait), to measure credns's spawn path alone.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

fn die(what: &str) -> ! {
    eprintln!("userns_floor: {what}: {}", std::io::Error::last_os_error());
    std::process::exit(1)
}

fn main() {
    let mut args: Vec<_> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "--container") {
        args.remove(1);
        container(&args);
    }
    if args.len() < 4 {
        eprintln!("usage: userns_floor HOST_START COUNT PROGRAM [ARGS...]");
        std::process::exit(2);
    }
    let start: u32 = args[1]
        .to_str()
        .and_then(|s| s.parse().ok())
        .expect("HOST_START");
    let count: u32 = args[2]
        .to_str()
        .and_then(|s| s.parse().ok())
        .expect("COUNT");
    let prog = CString::new(args[3].as_bytes()).expect("program");
    let argv_c: Vec<CString> = args[3..]
        .iter()
        .map(|a| CString::new(a.as_bytes()).expect("argument"))
        .collect();
    let mut argv: Vec<*const libc::c_char> = argv_c.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let map = format!("0 {start} {count}\n");
    let mut ready = [0i32; 2];
    let mut go = [0i32; 2];
    // SAFETY: pipe2 writes two fds into each array, which have room for two.
    if unsafe { libc::pipe2(ready.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        die("pipe2");
    }
    // SAFETY: as above.
    if unsafe { libc::pipe2(go.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        die("pipe2");
    }
    // SAFETY: this program is single-threaded; the child makes only raw calls (unshare, write,
    // read, setresuid, execv, _exit) on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        die("fork");
    }
    if pid == 0 {
        let mut b = [0u8; 1];
        // SAFETY: unshare takes a flag; the process is single-threaded as CLONE_NEWUSER needs.
        let ok = unsafe { libc::unshare(libc::CLONE_NEWUSER) } == 0;
        // SAFETY: write/read on the pipe fds from above with a 1-byte stack buffer.
        let step = unsafe { libc::write(ready[1], b.as_ptr().cast(), 1) } == 1
            // SAFETY: as above.
            && unsafe { libc::read(go[0], b.as_mut_ptr().cast(), 1) } == 1;
        if ok && step {
            // SAFETY: plain id-changing call.
            unsafe { libc::setresgid(0, 0, 0) };
            // SAFETY: as above.
            unsafe { libc::setresuid(0, 0, 0) };
            // SAFETY: NUL-terminated strings and a null-terminated array built before the fork.
            unsafe { libc::execv(prog.as_ptr(), argv.as_ptr()) };
        }
        // SAFETY: ends the child without running the parent's code.
        unsafe { libc::_exit(127) };
    }
    let mut b = [0u8; 1];
    // SAFETY: read into a 1-byte stack buffer from the pipe's read end.
    if unsafe { libc::read(ready[0], b.as_mut_ptr().cast(), 1) } != 1 {
        die("child did not unshare");
    }
    for file in ["uid_map", "gid_map"] {
        let path = format!("/proc/{pid}/{file}");
        if let Err(e) = std::fs::write(&path, &map) {
            eprintln!("userns_floor: {path}: {e}");
            std::process::exit(1);
        }
    }
    // SAFETY: write one byte from a stack buffer to the pipe's write end.
    if unsafe { libc::write(go[1], b.as_ptr().cast(), 1) } != 1 {
        die("go");
    }
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a valid out pointer.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        die("waitpid");
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    std::process::exit(code)
}

fn container(args: &[std::ffi::OsString]) -> ! {
    use credns_sys::container::{Container, ContainerSpec};
    let start: u32 = args[1]
        .to_str()
        .and_then(|s| s.parse().ok())
        .expect("HOST_START");
    let count: u32 = args[2]
        .to_str()
        .and_then(|s| s.parse().ok())
        .expect("COUNT");
    let map =
        credns_idmap::IdMap::new(vec![credns_idmap::Extent::new(0, start, count)]).expect("map");
    let spec = ContainerSpec::new(args[3..].to_vec());
    let mut c = Container::spawn(&spec).expect("spawn");
    c.write_maps(&map, &map).expect("maps");
    c.start().expect("start");
    std::process::exit(c.wait().expect("wait").code())
}
