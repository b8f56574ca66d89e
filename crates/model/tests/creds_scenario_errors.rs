//! Parse errors of the fs-id, capability, ptrace-mode and socket operations: each names the
//! line and what was wrong.

use credns_model::{Error, Scenario};

const HEAD: &str = "[[process]]\nname = \"a\"\nuid = 0\n\n[[process]]\nname = \"b\"\nuid = 1\n\n[[op]]\nby = \"a\"\n";

/// Line and message of the error for HEAD followed by `op` (the op's fields start at line 11).
fn err(op: &str) -> (usize, String) {
    match Scenario::parse(&format!("{HEAD}{op}"), "bad.toml") {
        Err(Error::Scenario { line, message, .. }) => (line, message),
        other => panic!("expected a scenario error, got {other:?}"),
    }
}

#[test]
fn ptrace_attach_takes_no_fs_creds() {
    let (line, msg) = err("op = \"ptrace\"\ntarget = \"b\"\ncreds = \"fs\"\n");
    assert_eq!(line, 13, "{msg}");
    assert!(msg.contains("attach takes only creds = \"real\""), "{msg}");
}

#[test]
fn ptrace_unknown_mode() {
    let (line, msg) = err("op = \"ptrace\"\ntarget = \"b\"\nmode = \"peek\"\n");
    assert_eq!(line, 13, "{msg}");
    assert!(msg.contains("use attach or read"), "{msg}");
}

#[test]
fn ambient_raise_needs_a_cap() {
    let (line, msg) = err("op = \"cap_ambient\"\naction = \"raise\"\n");
    assert_eq!(line, 12, "{msg}");
    assert!(msg.contains("needs `cap`"), "{msg}");
}

#[test]
fn unknown_capability_name() {
    let (line, msg) = err("op = \"capbset_drop\"\ncap = \"CAP_FLY\"\n");
    assert_eq!(line, 12, "{msg}");
    assert!(msg.contains("unknown capability \"CAP_FLY\""), "{msg}");
}

#[test]
fn peercred_of_an_unknown_connection() {
    let (line, msg) = err("op = \"peercred\"\nsocket = \"s9\"\n");
    assert_eq!(line, 12, "{msg}");
    assert!(msg.contains("no connection called \"s9\""), "{msg}");
}

#[test]
fn send_creds_by_a_process_without_an_end() {
    let text = "op = \"connect\"\ntarget = \"b\"\nname = \"s1\"\n\n[[op]]\nby = \"b\"\nop = \"send_creds\"\nsocket = \"s1\"\nuid = 1\ngid = 1\n\n[[process]]\nname = \"c\"\nuid = 2\n";
    // b holds an end; a process that holds none is refused.
    assert!(Scenario::parse(&format!("{HEAD}{text}"), "ok.toml").is_ok());
    let (line, msg) = err("op = \"connect\"\ntarget = \"a\"\nname = \"s1\"\n\n[[op]]\nby = \"b\"\nop = \"send_creds\"\nsocket = \"s1\"\nuid = 1\ngid = 1\n");
    assert_eq!(line, 18, "{msg}");
    assert!(msg.contains("holds no end of connection \"s1\""), "{msg}");
}

#[test]
fn mm_userns_must_name_a_namespace() {
    match Scenario::parse(
        "[[process]]\nname = \"a\"\nuid = 0\nmm_userns = \"nowhere\"\n",
        "bad.toml",
    ) {
        Err(Error::Scenario { line, message, .. }) => {
            assert_eq!(line, 4, "{message}");
            assert!(
                message.contains("no namespace called \"nowhere\""),
                "{message}"
            );
        }
        other => panic!("expected a scenario error, got {other:?}"),
    }
}

#[test]
fn readlink_proc_fd_takes_the_standard_fds() {
    let (line, msg) = err("op = \"readlink_proc_fd\"\ntarget = \"b\"\nfd = 7\n");
    assert_eq!(line, 13, "{msg}");
    assert!(msg.contains("fd 0, 1 or 2"), "{msg}");
}
