//! The README's examples, run as written and in order, so that the README cannot drift from what
//! credns does.
//!
//! Conventions of README.md (HTML comments, which GitHub does not render, mark the exceptions):
//!
//! * every fenced ```` ```sh ```` block is run, in order, by one `bash -euo pipefail` script, so
//!   a block sees the variables, directory and background jobs the blocks before it left;
//! * a block preceded by `<!-- readme-test: skip (REASON) -->` is not run (installing packages,
//!   the test suite itself);
//! * a block preceded by `<!-- readme-test: daemon -->` starts the daemon: in its place the
//!   script runs `credns serve &` on the default socket and store and waits until the socket
//!   listens;
//! * a ```` ```text ```` block is output: what the nearest ```` ```sh ```` block above it prints
//!   on stdout. Each of its lines but `...` must be a line of that output (trailing blanks
//!   aside), in the order shown; lines not shown may come between.
//!
//! Isolation: the script runs in a private mount namespace (`unshare --mount --propagation
//! private`) where fresh tmpfs instances cover `/run/credns`, `/var/lib/credns` (the daemon's
//! default socket and store) and `/run/crun` (crun's state), so nothing of the host's is read
//! or written there; an existing store or daemon of the host is hidden, not touched. The
//! README's own files go to a directory it makes with `mktemp -d` and removes at its end. A mount point that is missing is made (an empty directory)
//! and removed again afterwards. The script starts in a scratch directory standing for the
//! checkout (it holds a `crates` link to this one's), with the test's `credns` first on PATH.
//! It runs in its own process group: afterwards the daemon gets SIGTERM and whatever else the
//! script left running gets SIGKILL, whether it succeeded or not.

mod common;

use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_credns");
/// The whole script's time limit (it takes a few seconds).
const LIMIT: Duration = Duration::from_secs(120);
/// Where the README's examples put the daemon's socket (its default).
const SOCKET: &str = "/run/credns/io.credns.Registry";
/// Covered by a fresh tmpfs inside the test's mount namespace.
const PRIVATE_DIRS: [&str; 3] = ["/run/credns", "/var/lib/credns", "/run/crun"];

#[derive(Debug, PartialEq)]
enum Kind {
    Run,
    Skip(String),
    Daemon,
}

/// A ```sh block of the README.
#[derive(Debug)]
struct Block {
    /// The README line of its opening fence.
    line: usize,
    kind: Kind,
    code: String,
    /// The ```text blocks that follow it: (line, text).
    expect: Vec<(usize, String)>,
}

/// The README's ```sh blocks with their directives and expected outputs.
fn parse(readme: &str) -> Vec<Block> {
    let mut blocks: Vec<Block> = Vec::new();
    let mut directive: Option<(usize, Kind)> = None;
    let mut lines = readme.lines().enumerate().map(|(i, l)| (i + 1, l));
    while let Some((n, line)) = lines.next() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("<!-- readme-test:") {
            let body = rest
                .strip_suffix("-->")
                .unwrap_or_else(|| panic!("README.md:{n}: a readme-test comment on one line"))
                .trim();
            let kind = if body == "daemon" {
                Kind::Daemon
            } else if let Some(reason) = body.strip_prefix("skip") {
                let reason = reason.trim();
                assert!(
                    reason.starts_with('(') && reason.ends_with(')') && reason.len() > 2,
                    "README.md:{n}: `skip (REASON)` wants a reason"
                );
                Kind::Skip(reason[1..reason.len() - 1].to_string())
            } else {
                panic!("README.md:{n}: unknown readme-test directive {body:?}");
            };
            directive = Some((n, kind));
            continue;
        }
        if let Some(lang) = trimmed.strip_prefix("```") {
            let mut text = String::new();
            loop {
                let (_, l) = lines
                    .next()
                    .unwrap_or_else(|| panic!("README.md:{n}: unclosed code block"));
                if l.trim() == "```" {
                    break;
                }
                text.push_str(l);
                text.push('\n');
            }
            match lang.trim() {
                "sh" => {
                    let kind = directive.take().map_or(Kind::Run, |(_, k)| k);
                    blocks.push(Block {
                        line: n,
                        kind,
                        code: text,
                        expect: Vec::new(),
                    });
                }
                "text" => {
                    let block = blocks
                        .last_mut()
                        .unwrap_or_else(|| panic!("README.md:{n}: output before any sh block"));
                    assert_eq!(
                        block.kind,
                        Kind::Run,
                        "README.md:{n}: output shown for the block at line {}, which is not run",
                        block.line
                    );
                    block.expect.push((n, text));
                }
                _ => {}
            }
            assert!(
                directive.is_none(),
                "README.md:{n}: a readme-test directive must come right before a sh block"
            );
            continue;
        }
        if !trimmed.is_empty() {
            if let Some((d, _)) = directive {
                panic!("README.md:{d}: a readme-test directive must come right before a sh block");
            }
        }
    }
    blocks
}

/// The marker the script prints on stdout and stderr before block `i`.
fn marker(i: usize) -> String {
    format!("@@credns-readme-test block {i}@@")
}

/// The script: every block to run, each after its marker; the daemon's pid goes to `pid_file`.
fn script(blocks: &[Block], pid_file: &Path) -> String {
    let mut s = String::from("# Generated by crates/cli/tests/readme.rs from README.md.\n");
    for (i, b) in blocks.iter().enumerate() {
        let code = match &b.kind {
            Kind::Skip(_) => continue,
            Kind::Run => b.code.clone(),
            Kind::Daemon => format!(
                "credns serve &\n\
                 echo $! > '{pid}'\n\
                 until [ -S {SOCKET} ]; do\n  \
                   kill -0 $! 2>/dev/null || {{ echo 'credns serve exited' >&2; exit 1; }}\n  \
                   sleep 0.02\n\
                 done\n",
                pid = pid_file.display()
            ),
        };
        let m = marker(i);
        writeln!(s, "\nprintf '\\n%s\\n' '{m}'; printf '\\n%s\\n' '{m}' >&2").unwrap();
        writeln!(s, "# README.md line {}\n{code}", b.line).unwrap();
    }
    s
}

/// What each block printed on one stream: the text after its marker, up to the next.
fn split(out: &str, blocks: usize) -> Vec<Option<String>> {
    let mut parts = vec![None; blocks];
    let mut current: Option<(usize, String)> = None;
    for line in out.lines() {
        if let Some(i) = (0..blocks).find(|&i| line == marker(i)) {
            if let Some((j, text)) = current.take() {
                parts[j] = Some(text);
            }
            current = Some((i, String::new()));
        } else if let Some((_, text)) = current.as_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    if let Some((j, text)) = current {
        parts[j] = Some(text);
    }
    parts
}

/// Whether every line of `expected` but `...` is a line of `output`, in order.
fn shows(output: &str, expected: &str) -> Result<(), String> {
    let mut out = output.lines().map(str::trim_end);
    for want in expected.lines().map(str::trim_end) {
        if want.is_empty() || want == "..." {
            continue;
        }
        if !out.any(|l| l == want) {
            return Err(want.to_string());
        }
    }
    Ok(())
}

/// Cleans up, pass or fail: stops the daemon (SIGTERM, by its pid) and kills the script's
/// process group, then removes the mount points it made and (by its TempDir) the scratch dir.
struct Cleanup {
    pgid: Option<rustix::process::Pid>,
    pid_file: PathBuf,
    made: Vec<PathBuf>,
    /// The README's demo directories (`mktemp -d /var/tmp/credns-demo.XXXXXX`) that existed
    /// before the run: any other one was made by the run, and goes even if the script stopped
    /// before its own clean-up block.
    demos_before: Vec<PathBuf>,
}

/// The README's demo directories now present.
fn demo_dirs() -> Vec<PathBuf> {
    std::fs::read_dir("/var/tmp")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("credns-demo."))
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        use rustix::process::{kill_process, kill_process_group, test_kill_process, Pid, Signal};
        let daemon = std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .and_then(Pid::from_raw);
        if let Some(pid) = daemon {
            if kill_process(pid, Signal::TERM).is_ok() {
                let t0 = Instant::now();
                while test_kill_process(pid).is_ok() && t0.elapsed() < Duration::from_secs(10) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        if let Some(pgid) = self.pgid {
            let _ = kill_process_group(pgid, Signal::KILL);
        }
        for dir in &self.made {
            // Only if still empty: whatever someone else put there meanwhile stays.
            let _ = std::fs::remove_dir(dir);
        }
        for dir in demo_dirs() {
            if !self.demos_before.contains(&dir) {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
}

#[test]
fn readme_examples_run_as_written() {
    let test = "readme_examples_run_as_written";
    if !needs_root(test)
        || !needs_tool(test, "unshare", "util-linux")
        || !needs_tool(test, "setpriv", "util-linux")
        || !needs_tool(test, "chroot", "coreutils")
        || !needs_tool(test, "crun", "crun")
        || static_busybox(test).is_none()
    {
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let blocks = parse(&readme);
    assert!(
        blocks.iter().filter(|b| b.kind == Kind::Daemon).count() == 1,
        "README.md: exactly one block starts the daemon"
    );

    let scratch = tempfile::Builder::new()
        .prefix("readme-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let work = scratch.path().join("checkout");
    std::fs::create_dir(&work).unwrap();
    std::os::unix::fs::symlink(
        repo.join("crates").canonicalize().unwrap(),
        work.join("crates"),
    )
    .unwrap();
    let pid_file = scratch.path().join("daemon.pid");
    let script_file = scratch.path().join("readme.sh");
    std::fs::write(&script_file, script(&blocks, &pid_file)).unwrap();
    let (out_file, err_file) = (scratch.path().join("stdout"), scratch.path().join("stderr"));

    let mut cleanup = Cleanup {
        pgid: None,
        pid_file: pid_file.clone(),
        made: Vec::new(),
        demos_before: demo_dirs(),
    };
    for dir in PRIVATE_DIRS.map(Path::new) {
        if !dir.exists() {
            std::fs::create_dir(dir).unwrap();
            cleanup.made.push(dir.to_path_buf());
        }
    }
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        bin_dir.display()
    );
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "bash", "-c"])
        .arg(
            "set -e
             for d in /run/credns /var/lib/credns /run/crun; do
               mount -t tmpfs -o mode=0755 credns-readme-test \"$d\"
             done
             cd \"$1\"
             exec bash -euo pipefail \"$2\"",
        )
        .arg("bash")
        .arg(&work)
        .arg(&script_file)
        .env_clear()
        .env("PATH", path)
        .env("HOME", "/root")
        .stdin(Stdio::null())
        .stdout(File::create(&out_file).unwrap())
        .stderr(File::create(&err_file).unwrap())
        .process_group(0)
        .spawn()
        .expect("unshare starts");
    cleanup.pgid = rustix::process::Pid::from_raw(child.id() as i32);

    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if t0.elapsed() > LIMIT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(cleanup);
    let elapsed = t0.elapsed();

    let stdout = std::fs::read_to_string(&out_file).unwrap();
    let stderr = std::fs::read_to_string(&err_file).unwrap();
    let outs = split(&stdout, blocks.len());
    let errs = split(&stderr, blocks.len());
    let report = |i: usize, what: &str| -> String {
        let b = &blocks[i];
        format!(
            "README.md line {}: {what}\n--- block\n{}--- stdout\n{}--- stderr\n{}",
            b.line,
            b.code,
            outs[i].as_deref().unwrap_or(""),
            errs[i].as_deref().unwrap_or("")
        )
    };
    let last_started = (0..blocks.len()).rev().find(|&i| outs[i].is_some());
    match status {
        Some(st) if st.success() => {}
        status => {
            let what = match status {
                Some(st) => format!("the block fails ({st})"),
                None => format!("the script did not finish in {LIMIT:?}"),
            };
            match last_started {
                Some(i) => panic!("{}", report(i, &what)),
                None => panic!("{what} before any block\nstdout:\n{stdout}\nstderr:\n{stderr}"),
            }
        }
    }
    for (i, b) in blocks.iter().enumerate() {
        if b.kind == Kind::Run {
            assert!(outs[i].is_some(), "README.md line {}: never ran", b.line);
        }
        for (line, text) in &b.expect {
            if let Err(missing) = shows(outs[i].as_deref().unwrap_or(""), text) {
                panic!(
                    "{}",
                    report(
                        i,
                        &format!(
                            "the output shown at README.md line {line} is not what it prints \
                             (no line {missing:?} where expected)"
                        )
                    )
                );
            }
        }
    }
    println!(
        "{test}: {} blocks run, {} skipped, in {elapsed:.1?}",
        blocks
            .iter()
            .filter(|b| !matches!(b.kind, Kind::Skip(_)))
            .count(),
        blocks
            .iter()
            .filter(|b| matches!(b.kind, Kind::Skip(_)))
            .count()
    );
}

#[test]
fn the_output_check_wants_lines_in_order() {
    assert_eq!(shows("a\nb\nc\n", "a\n...\nc\n"), Ok(()));
    assert_eq!(shows("a  \nb\n", "a\nb"), Ok(()));
    assert_eq!(shows("a\nb\n", "b\na\n"), Err("a".into()));
    assert_eq!(shows("ab\n", "a\n"), Err("a".into()));
}

#[test]
fn the_readme_parses() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let blocks = parse(&readme);
    assert!(blocks.iter().any(|b| b.kind == Kind::Daemon));
    assert!(blocks
        .iter()
        .all(|b| !matches!(&b.kind, Kind::Skip(r) if r.is_empty())));
}
