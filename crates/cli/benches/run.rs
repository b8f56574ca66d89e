//! `credns run -- /bin/true` end to end, side by side in one run with
//! * the floor: `userns_floor` (crates/sys/examples): fork, unshare(CLONE_NEWUSER), the parent
//!   writes the maps, exec /bin/true, wait — no registry;
//! * util-linux `unshare --user --map-users=… --map-groups=… /bin/true` (maps written by
//!   shadow's setuid `newuidmap`/`newgidmap`, which need a /etc/subuid and /etc/subgid line).
//!
//! The credns rows: the spawn path alone, `credns run` on the registry opened directly (on disk
//! and on tmpfs), and `credns run` through a `credns serve` started by this program on a
//! temporary socket and store (the daemon allocates, fsyncs and writes the maps).
//!
//! `cargo bench -p credns --bench run` as root. Every command is a fresh process started by this
//! program; rounds interleave the commands so machine noise hits them alike. Figures are the
//! median and mean wall time per run; ratios are of medians. `CREDNS_BENCH_RUNS` sets the runs
//! per command (default 300).
//!
//! The program re-executes itself under `unshare --mount` with a temporary /etc/subuid and
//! /etc/subgid bound over the host's (root:2000000000:65536), so newuidmap accepts the
//! range without touching the host's files. The floor and unshare map 0..65536 onto
//! 2000000000..; credns maps its allocation (65536 ids) from a fresh registry.

mod common;

use std::path::{Path, PathBuf};

use common::Daemon;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const HOST_START: &str = "2000000000";
const COUNT: &str = "65536";

fn is_root() -> bool {
    credns_sys::ProcFs::new()
        .status(credns_sys::Pid::this())
        .map(|s| s.uid[1] == 0)
        .unwrap_or(false)
}

fn tool(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// target/<profile>/ of this bench executable (it lives in target/<profile>/deps/).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("bench executable in target/<profile>/deps")
        .to_path_buf()
}

fn build_floor() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let st = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-q",
            "-p",
            "credns-sys",
            "--example",
            "userns_floor",
        ])
        .status()
        .expect("running cargo to build the floor program");
    assert!(st.success(), "building userns_floor failed");
    profile_dir().join("examples/userns_floor")
}

/// The target the installed credns is linked for (xtask/src/main.rs).
const DIST_TARGET: &str = "x86_64-unknown-linux-musl";

/// The floor linked as the installed credns is (static-pie, musl), for a like-for-like row.
fn build_floor_static() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let st = Command::new(cargo)
        .args(["rustc", "-q", "--profile", "dist", "-p", "credns-sys"])
        .args(["--target", DIST_TARGET])
        .args([
            "--example",
            "userns_floor",
            "--",
            "-C",
            "target-feature=+crt-static",
        ])
        .status()
        .expect("running cargo to build the static floor program");
    assert!(st.success(), "building the static userns_floor failed");
    let dir = profile_dir();
    dir.parent()
        .expect("target/<profile> has a parent")
        .join(DIST_TARGET)
        .join("dist/examples/userns_floor")
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !is_root() {
        println!(
            "run: skipped: needs root (writes maps of new user namespaces, opens the registry)"
        );
        return;
    }
    if std::env::var_os("CREDNS_BENCH_INNER").is_none() {
        reexec_with_subid();
        return;
    }
    inner();
}

/// Run this program again in a private mount namespace where /etc/subuid and /etc/subgid
/// grant root the benchmark's range.
fn reexec_with_subid() {
    let Some(unshare) = tool("unshare") else {
        println!("run: skipped: needs unshare (apt-get install util-linux)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let sub = dir.path().join("subid");
    std::fs::write(&sub, format!("root:{HOST_START}:{COUNT}\n")).unwrap();
    let st = Command::new(unshare)
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount --bind \"$1\" /etc/subuid && mount --bind \"$1\" /etc/subgid && shift && exec \"$@\"")
        .arg("sh")
        .arg(&sub)
        .arg(std::env::current_exe().unwrap())
        .args(std::env::args_os().skip(1))
        .env("CREDNS_BENCH_INNER", "1")
        .status()
        .expect("re-running under unshare --mount");
    assert!(st.success(), "benchmark failed: {st:?}");
}

struct Case {
    label: &'static str,
    argv: Vec<String>,
    times: Vec<Duration>,
}

fn time_one(argv: &[String]) -> Duration {
    let t = Instant::now();
    let st = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .status()
        .expect("spawn");
    let d = t.elapsed();
    assert!(st.success(), "{argv:?} failed: {st:?}");
    d
}

/// Run `c`'s command with `cat /proc/self/uid_map` for `/bin/true`, and check the program ran
/// in a new user namespace with one extent from 0: of one id for the rows that say so, of
/// COUNT ids otherwise (the initial namespace's `0 0 4294967295` fails).
fn check_userns(c: &Case) {
    let mut argv = c.argv.clone();
    assert_eq!(
        argv.last().map(String::as_str),
        Some("/bin/true"),
        "{}",
        c.label
    );
    argv.pop();
    argv.extend(["/bin/cat".to_string(), "/proc/self/uid_map".to_string()]);
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .expect("spawn");
    assert!(out.status.success(), "{argv:?} failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let extents: Vec<Vec<u64>> = text
        .lines()
        .map(|l| {
            l.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .collect();
    let count: u64 = if c.label.contains("one id") {
        1
    } else {
        COUNT.parse().expect("COUNT")
    };
    assert!(
        extents.len() == 1 && extents[0].len() == 3 && extents[0][0] == 0 && extents[0][2] == count,
        "{}: the program's uid_map is {text:?}, not one extent of {count} ids from 0",
        c.label
    );
    if c.argv[0].ends_with("userns_floor") || c.label.starts_with("unshare --user --map-users") {
        assert_eq!(
            extents[0][1].to_string(),
            HOST_START,
            "{}: {text:?}",
            c.label
        );
    }
    println!(
        "{}: user namespace made, uid_map {:?}",
        c.label,
        text.trim()
    );
}

fn median(v: &[Duration]) -> Duration {
    let mut s = v.to_vec();
    s.sort_unstable();
    s[s.len() / 2]
}

fn mean(v: &[Duration]) -> Duration {
    v.iter().sum::<Duration>() / v.len() as u32
}

fn inner() {
    let runs: usize = std::env::var("CREDNS_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let floor = build_floor();
    let credns = env!("CARGO_BIN_EXE_credns").to_string();
    let dist = common::build_dist().display().to_string();
    let floor_static = build_floor_static().display().to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("lib/registry.redb").display().to_string();
    // The direct rows name a socket nobody serves: never a daemon on the host's defaults.
    let nosock = dir.path().join("no-daemon.sock").display().to_string();
    let s = |x: &str| x.to_string();
    let mut cases = vec![
        Case {
            label: "floor (fork, unshare, parent writes maps, exec)",
            argv: vec![
                floor.display().to_string(),
                s(HOST_START),
                s(COUNT),
                s("/bin/true"),
            ],
            times: Vec::new(),
        },
        Case {
            label: "unshare --user --map-users --map-groups",
            argv: vec![
                s("unshare"),
                s("--user"),
                format!("--map-users={HOST_START},0,{COUNT}"),
                format!("--map-groups={HOST_START},0,{COUNT}"),
                s("/bin/true"),
            ],
            times: Vec::new(),
        },
        Case {
            label: "unshare --user --map-root-user (one id, no helper)",
            argv: vec![
                s("unshare"),
                s("--user"),
                s("--map-root-user"),
                s("/bin/true"),
            ],
            times: Vec::new(),
        },
        Case {
            label: "floor, linked statically as credns is installed",
            argv: vec![floor_static, s(HOST_START), s(COUNT), s("/bin/true")],
            times: Vec::new(),
        },
        Case {
            label: "credns spawn path alone (Container, no registry)",
            argv: vec![
                floor.display().to_string(),
                s("--container"),
                s(HOST_START),
                s(COUNT),
                s("/bin/true"),
            ],
            times: Vec::new(),
        },
        Case {
            label: "credns run -- /bin/true (registry opened directly)",
            argv: vec![
                credns.clone(),
                s("run"),
                s("--socket"),
                nosock.clone(),
                s("--store"),
                store.clone(),
                s("--"),
                s("/bin/true"),
            ],
            times: Vec::new(),
        },
        Case {
            label: "credns run --name bench -- /bin/true (directly)",
            argv: vec![
                credns.clone(),
                s("run"),
                s("--socket"),
                nosock.clone(),
                s("--store"),
                store.clone(),
                s("--name"),
                s("bench"),
                s("--"),
                s("/bin/true"),
            ],
            times: Vec::new(),
        },
    ];
    // The registry on tmpfs: everything but the cost of fsync.
    let shm = tempfile::tempdir_in("/dev/shm").ok();
    if let Some(shm) = &shm {
        let shm_store = shm.path().join("lib/registry.redb").display().to_string();
        cases.push(Case {
            label: "credns run -- /bin/true (directly, registry on tmpfs)",
            argv: vec![
                credns.clone(),
                s("run"),
                s("--socket"),
                nosock.clone(),
                s("--store"),
                shm_store,
                s("--"),
                s("/bin/true"),
            ],
            times: Vec::new(),
        });
    }
    if let Some(bwrap) = tool("bwrap") {
        cases.insert(
            2,
            Case {
                label: "bwrap --unshare-user --uid 0 --gid 0 (one id)",
                argv: vec![
                    bwrap.display().to_string(),
                    s("--unshare-user"),
                    s("--uid"),
                    s("0"),
                    s("--gid"),
                    s("0"),
                    s("--dev-bind"),
                    s("/"),
                    s("/"),
                    s("/bin/true"),
                ],
                times: Vec::new(),
            },
        );
    }
    // Through a daemon (its own store beside the direct one): this process unshares its own
    // user namespace, the daemon allocates durably and writes the maps, the command is exec'd
    // in place, and the daemon releases the lease when the namespace dies.
    // The daemon is the installed build; the run command is measured both as installed
    // (static) and as `cargo build --release` makes it (dynamically linked).
    let daemon = Daemon::start(Path::new(&dist), &dir.path().join("daemon"), &[]);
    for (label, bin) in [
        (
            "credns run via daemon -- /bin/true (installed build)",
            &dist,
        ),
        (
            "credns run via daemon (cargo build --release, dynamic)",
            &credns,
        ),
    ] {
        cases.push(Case {
            label,
            argv: vec![
                bin.clone(),
                s("run"),
                s("--socket"),
                daemon.socket.display().to_string(),
                s("--"),
                s("/bin/true"),
            ],
            times: Vec::new(),
        });
    }
    // The same without the container's keyring, to show what the keyring costs.
    cases.push(Case {
        label: "credns run --no-keyring via daemon (installed)",
        argv: vec![
            dist.clone(),
            s("run"),
            s("--socket"),
            daemon.socket.display().to_string(),
            s("--no-keyring"),
            s("--"),
            s("/bin/true"),
        ],
        times: Vec::new(),
    });
    // Every command really makes a user namespace with the map it is meant to (each is run
    // once with `cat /proc/self/uid_map` in place of `/bin/true`); then it is warmed up (page
    // cache, the registry file), each run checked to succeed.
    for c in &cases {
        check_userns(c);
        for _ in 0..10 {
            time_one(&c.argv);
        }
    }
    for _ in 0..runs {
        for c in cases.iter_mut() {
            let d = time_one(&c.argv);
            c.times.push(d);
        }
    }
    let floor_med = median(&cases[0].times);
    let unshare_med = median(&cases[1].times);
    println!("run: {runs} runs per command, interleaved; wall time per run");
    println!(
        "{:<56} {:>10} {:>10} {:>9} {:>11}",
        "command", "median", "mean", "÷ floor", "÷ unshare"
    );
    for c in &cases {
        let m = median(&c.times);
        println!(
            "{:<56} {:>8.3}ms {:>8.3}ms {:>8.2}× {:>10.2}×",
            c.label,
            m.as_secs_f64() * 1e3,
            mean(&c.times).as_secs_f64() * 1e3,
            m.as_secs_f64() / floor_med.as_secs_f64(),
            m.as_secs_f64() / unshare_med.as_secs_f64(),
        );
    }
    // The same comparison round by round: each round's two runs met the same machine.
    let installed = cases
        .iter()
        .position(|c| c.label.contains("installed build"))
        .expect("the installed daemon row");
    let mut paired: Vec<f64> = (0..runs)
        .map(|i| cases[installed].times[i].as_secs_f64() / cases[0].times[i].as_secs_f64())
        .collect();
    paired.sort_by(f64::total_cmp);
    println!(
        "installed `credns run` via the daemon ÷ floor, paired by round: median {:.2}×, \
         quartiles {:.2}× – {:.2}×",
        paired[runs / 2],
        paired[runs / 4],
        paired[3 * runs / 4]
    );
}
