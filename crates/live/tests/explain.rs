//! `explain` on live processes: every (actor, target, question) among processes planted in
//! the initial namespace, two sibling user namespaces and a nested one, each answered by the
//! model and by the kernel as the actor — they must agree every time.

mod common;

use common::{inside, ns_ino, sleeper, write_maps, Planted};

use credns_live::explain::{explain, KernelAnswer, Question};
use credns_sys::ProcFs;

#[test]
fn model_and_kernel_agree_on_every_planted_situation() {
    if !credns_sys::is_root() {
        if std::env::var_os("CREDNS_REQUIRE_ALL").is_some() {
            panic!("model_and_kernel_agree_on_every_planted_situation needs root");
        }
        eprintln!("skipped: needs root (plants processes in user namespaces, writes their maps)");
        return;
    }
    let own = ns_ino(std::process::id());
    let mut p = Planted(Vec::new());
    let a = p.holder(&[], own);
    write_maps(&[], a, "0 600000 1000");
    let b = p.holder(&[], own);
    write_maps(&[], b, "0 700000 1000");
    let a_ns = ns_ino(a);
    // A namespace nested in A, made by A's root; its maps written from inside A.
    let a_root: Vec<String> = inside(a, 0);
    let a_root_ref: Vec<&str> = a_root.iter().map(String::as_str).collect();
    let n = p.holder(&a_root_ref, a_ns);
    // Written from inside A, by its root (nsenter keeps the ids it enters with).
    write_maps(
        &["nsenter", "--user", "--target", &a.to_string()],
        n,
        "0 100 10",
    );
    let mut actors = vec![
        sleeper(&mut p, vec![], 0),
        sleeper(
            &mut p,
            [
                "setpriv",
                "--reuid",
                "1000",
                "--regid",
                "1000",
                "--clear-groups",
            ]
            .map(String::from)
            .to_vec(),
            0,
        ),
        sleeper(
            &mut p,
            [
                "setpriv",
                "--reuid",
                "1001",
                "--regid",
                "1001",
                "--clear-groups",
            ]
            .map(String::from)
            .to_vec(),
            0,
        ),
        sleeper(&mut p, inside(a, 0), own),
        sleeper(&mut p, inside(a, 5), own),
        sleeper(&mut p, inside(a, 5), own),
        sleeper(&mut p, inside(b, 0), own),
        sleeper(&mut p, inside(b, 7), own),
        sleeper(&mut p, inside(n, 0), a_ns),
        sleeper(&mut p, inside(n, 3), a_ns),
    ];
    // A namespace whose maps were never written (a regression: its empty maps once stopped
    // the model's world from being built).
    let bare = p.holder(&[], own);
    let mut targets = actors.clone();
    targets.extend([a, b, n, bare]);
    actors.sort_unstable();
    let procfs = ProcFs::new();
    let mut asked = 0;
    let mut outcomes = std::collections::BTreeMap::new();
    for &actor in &actors {
        for &target in &targets {
            for q in [
                Question::Kill { target, signal: 15 },
                Question::Kill { target, signal: 0 },
                Question::Kill { target, signal: 18 },
                Question::Setns { target },
                Question::Ptrace { target },
                Question::PtraceRead {
                    target,
                    fscreds: false,
                },
                Question::PtraceRead {
                    target,
                    fscreds: true,
                },
            ] {
                let e = explain(&procfs, actor, q).unwrap_or_else(|e| panic!("{actor} {q:?}: {e}"));
                assert_eq!(
                    e.agree
                        .or(matches!(q, Question::Ptrace { target } if target == actor)
                            .then_some(true)),
                    Some(true),
                    "{}\nmodel {}\nkernel {:?}",
                    e.question,
                    e.model,
                    e.kernel
                );
                if matches!(q, Question::Ptrace { target } if target == actor) {
                    // Not compared (see explain's reason); the model refuses.
                    assert!(matches!(e.kernel, KernelAnswer::NotAsked { .. }));
                    assert_eq!(e.model.result.errno().map(|e| e.name()), Some("EPERM"));
                    continue;
                }
                let k = match &e.kernel {
                    KernelAnswer::Allowed { .. } => "allowed".to_string(),
                    KernelAnswer::Denied { errno, .. } => errno.clone(),
                    KernelAnswer::NotAsked { reason } => panic!("not asked: {reason}"),
                };
                *outcomes.entry(k).or_insert(0) += 1;
                asked += 1;
            }
        }
    }
    assert!(asked >= 500, "{asked} situations");
    // The planted world exercises both answers, and more than one refusal.
    assert!(outcomes.len() >= 3, "{outcomes:?}");
    eprintln!("{asked} situations, kernel answers {outcomes:?}");
}

#[test]
fn a_process_that_does_not_exist_is_a_clear_error() {
    let e = explain(
        &ProcFs::new(),
        4_000_000,
        Question::Kill {
            target: 1,
            signal: 0,
        },
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "no process 4000000 (it does not exist, or it exited while credns read it)"
    );
    let e = explain(
        &ProcFs::new(),
        std::process::id(),
        Question::Setns { target: 0 },
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "no process 0 (it does not exist, or it exited while credns read it)"
    );
}

#[test]
fn a_process_that_exits_while_it_is_read_is_a_clear_error() {
    // /proc is injectable: a tree where pid 77 still has its status but no longer its
    // namespace files, as a process that exits between the two reads leaves it.
    let dir = tempfile::tempdir().unwrap();
    let me = std::process::id();
    std::fs::create_dir_all(dir.path().join(format!("{me}/ns"))).unwrap();
    std::os::unix::fs::symlink(
        "/proc/self/ns/user",
        dir.path().join(format!("{me}/ns/user")),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("77")).unwrap();
    std::fs::write(
        dir.path().join("77/status"),
        "Name:\tsleep\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\nCapEff:\t0\nCapPrm:\t0\n",
    )
    .unwrap();
    let procfs = ProcFs::at(dir.path());
    let e = explain(&procfs, 77, Question::Setns { target: 77 }).unwrap_err();
    assert_eq!(
        e.to_string(),
        "no process 77 (it does not exist, or it exited while credns read it)"
    );
}

#[test]
fn a_path_that_changes_under_the_snapshot_is_a_clear_error() {
    if !credns_sys::is_root() {
        if std::env::var_os("CREDNS_REQUIRE_ALL").is_some() {
            panic!("a_path_that_changes_under_the_snapshot_is_a_clear_error needs root");
        }
        eprintln!("skipped: needs root (chmods and chowns a file of its own between the reads)");
        return;
    }
    use credns_live::explain::{explain_path_observed, PathQuestion};
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x");
    std::fs::write(&file, "x").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let me = std::process::id();
    let path = file.to_str().unwrap().to_string();
    let procfs = ProcFs::new();
    let q = PathQuestion::Access {
        mode: 4,
        eaccess: false,
    };
    // Unchanged: an answer.
    let e = explain_path_observed(&procfs, me, &path, q, &mut || {}).unwrap();
    assert_eq!(e.agree, Some(true));
    // Its mode changed after the model answered and before the kernel was asked.
    let e = explain_path_observed(&procfs, me, &path, q, &mut || {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap()
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{path}: changed while credns read it (mode of {path}); ask again")
    );
    // Its owner.
    let e = explain_path_observed(&procfs, me, &path, q, &mut || {
        std::os::unix::fs::chown(&file, Some(1000), None).unwrap()
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{path}: changed while credns read it (owner or group of {path}); ask again")
    );
    // It went away.
    let e = explain_path_observed(&procfs, me, &path, q, &mut || {
        std::fs::remove_file(&file).unwrap()
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{path}: changed while credns read it ({path} appeared or went); ask again")
    );
}

/// `chattr +FLAG` on a file of the test's own, cleared when dropped (also when an assertion
/// fails), so the directory can go.
struct Chattr(std::path::PathBuf, char);

impl Chattr {
    fn set(path: &std::path::Path, flag: char) -> Chattr {
        let st = std::process::Command::new("chattr")
            .arg(format!("+{flag}"))
            .arg(path)
            .status()
            .unwrap();
        assert!(st.success(), "chattr +{flag}");
        Chattr(path.to_path_buf(), flag)
    }
}

impl Drop for Chattr {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg(format!("-{}", self.1))
            .arg(&self.0)
            .status();
    }
}

#[test]
fn immutable_and_append_only_flags_and_file_capabilities_are_read() {
    if !credns_sys::is_root() {
        if std::env::var_os("CREDNS_REQUIRE_ALL").is_some() {
            panic!("immutable_and_append_only_flags_and_file_capabilities_are_read needs root");
        }
        eprintln!("skipped: needs root (chattr +i needs CAP_LINUX_IMMUTABLE)");
        return;
    }
    use credns_live::explain::{explain_path, PathQuestion};
    // A tmpfs of the test's own: chattr works there whatever /tmp is.
    let dir = tempfile::tempdir().unwrap();
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "credns-test", dir.path().to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _mounted = Unmount(dir.path().to_path_buf());
    let file = dir.path().join("x");
    std::fs::write(&file, "x").unwrap();
    let _flag = Chattr::set(&file, 'i');
    let path = file.to_str().unwrap();
    let me = std::process::id();
    let e = explain_path(
        &ProcFs::new(),
        me,
        path,
        PathQuestion::Open {
            read: false,
            write: true,
        },
    )
    .unwrap();
    assert_eq!(
        e.model.result.errno().map(|e| e.name()),
        Some("EPERM"),
        "{}",
        e.model
    );
    assert_eq!(e.agree, Some(true), "{:?}", e.kernel);
    assert!(e.scenario.as_ref().unwrap().contains("immutable = true"));
    // Reading is not refused.
    let e = explain_path(
        &ProcFs::new(),
        me,
        path,
        PathQuestion::Open {
            read: true,
            write: false,
        },
    )
    .unwrap();
    assert!(e.model.result.is_allowed(), "{}", e.model);
    assert_eq!(e.agree, Some(true));
    // Append-only: opening for writing without O_APPEND is refused, by both.
    let log = dir.path().join("log");
    std::fs::write(&log, "x").unwrap();
    let _a = Chattr::set(&log, 'a');
    let e = explain_path(
        &ProcFs::new(),
        me,
        log.to_str().unwrap(),
        PathQuestion::Open {
            read: false,
            write: true,
        },
    )
    .unwrap();
    assert_eq!(
        e.model.result.errno().map(|e| e.name()),
        Some("EPERM"),
        "{}",
        e.model
    );
    assert_eq!(e.agree, Some(true), "{:?}", e.kernel);
    assert!(e.scenario.as_ref().unwrap().contains("append_only = true"));
    // File capabilities: exec follows them.
    let prog = dir.path().join("prog");
    std::fs::copy("/bin/true", &prog).unwrap();
    let st = std::process::Command::new("setcap")
        .arg("cap_net_bind_service+ep")
        .arg(&prog)
        .status()
        .unwrap();
    assert!(st.success(), "setcap");
    let e = explain_path(
        &ProcFs::new(),
        me,
        prog.to_str().unwrap(),
        PathQuestion::Exec,
    )
    .unwrap();
    // get_file_caps applies the file's capabilities; the saved scenario declares them and
    // replays in the model (as `credns sim` runs it) with the same answer and sets.
    assert!(e.model.result.is_allowed(), "{}", e.model);
    assert!(
        e.model
            .trace
            .iter()
            .any(|s| s.function == "rootid_owns_currentns"),
        "{}",
        e.model
    );
    let text = e.scenario.as_ref().unwrap_or_else(|w| panic!("{w}"));
    assert!(text.contains("fcaps_permitted = \"0x400\""), "{text}");
    assert!(text.contains("fcaps_effective = true"), "{text}");
    let s = credns_model::Scenario::parse(text, "saved.toml")
        .unwrap_or_else(|err| panic!("{err}\n{text}"));
    let reports = s.run();
    assert!(
        reports.len() == 1
            && reports[0].outcome.result == e.model.result
            && reports[0].outcome.output == e.model.output,
        "{text}\n{:?}",
        reports.iter().map(|r| &r.outcome).collect::<Vec<_>>()
    );
}
