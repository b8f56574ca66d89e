//! One test per rule: the exact outcome and the key trace steps.

use credns_model::{Cap, CapSet, Cred, Errno, MapKind, Op, Scenario, StepVerdict, Verdict, World};

use credns_idmap::{Kgid, Kuid};

const BASE: &str = r#"
[[namespace]]
name = "ns1"
owner = 1000
uid_map = "0 1000 1"
gid_map = "0 1000 1"
setgroups = "deny"

[[namespace]]
name = "big"
owner = 1000
uid_map = "0 100000 65536"
gid_map = "0 100000 65536"

[[process]]
name = "root"
uid = 0

[[process]]
name = "u1000"
uid = 1000

[[process]]
name = "u1001"
uid = 1001

[[process]]
name = "nsroot"
ns = "ns1"
uid = 0

[[process]]
name = "big5"
ns = "big"
uid = 5

[[process]]
name = "bigroot"
ns = "big"
uid = 0

[[file]]
path = "/etc/shadow"
owner = 0
group = 42
mode = "0640"

[[file]]
path = "/etc/passwd"
owner = 0
group = 0
mode = "0644"

[[file]]
path = "/home/u/mine"
owner = 1000
group = 1000
mode = "0000"

[[file]]
path = "/home/u/mine1001g"
owner = 1000
group = 1001
mode = "0000"

[[file]]
path = "/home/u/acl"
owner = 0
group = 0
mode = "0640"
acl = ["user::rw-", "user:1000:r--", "group::r--", "mask::r--", "other::---"]

[[file]]
path = "/home/u/aclowner"
owner = 1000
group = 1000
acl = ["user::---", "group::rw-", "other::---"]

[[file]]
path = "/home/u/noexec"
owner = 1000
group = 1000
mode = "0644"

[[file]]
path = "/locked"
dir = true
owner = 0
group = 0
mode = "0700"

[[file]]
path = "/locked/f"
owner = 1000
group = 1000
mode = "0644"

[[file]]
path = "/tmp"
dir = true
mode = "1777"

[[file]]
path = "/sgid"
dir = true
owner = 1000
group = 4242
mode = "2777"
"#;

fn world() -> World {
    Scenario::parse(BASE, "base.toml")
        .unwrap_or_else(|e| panic!("{e}"))
        .world
}

fn t(w: &World, name: &str) -> credns_model::TaskRef {
    w.task_by_name(name).unwrap()
}

fn run(w: &mut World, who: &str, op: Op) -> credns_model::Outcome {
    let task = t(w, who);
    w.op(task, &op)
}

fn open(path: &str, read: bool, write: bool) -> Op {
    Op::Open {
        path: path.into(),
        read,
        write,
    }
}

fn denied(o: &credns_model::Outcome) -> Errno {
    match &o.result {
        Verdict::Denied(e) => *e,
        other => panic!("expected a denial, got {other}\n{o}"),
    }
}

// ------------------------------------------------------------------ cap_capable

#[test]
fn cap_capable_owner_rule_from_parent() {
    let mut w = world();
    let ns1 = w.ns_by_name("ns1").unwrap();
    let o = run(
        &mut w,
        "u1000",
        Op::Capable {
            ns: ns1,
            cap: Cap::SYS_ADMIN,
        },
    );
    assert_eq!(o.result, Verdict::Allowed, "{o}");
    let s = o.step("cap_capable").unwrap();
    assert_eq!(s.verdict, StepVerdict::Pass);
    assert!(s.check.contains("owns"), "{s}");
}

#[test]
fn cap_capable_never_upward() {
    let mut w = world();
    let init = w.init_ns();
    let o = run(
        &mut w,
        "nsroot",
        Op::Capable {
            ns: init,
            cap: Cap::KILL,
        },
    );
    assert_eq!(denied(&o), Errno::EPERM);
    assert_eq!(o.step("cap_capable").unwrap().verdict, StepVerdict::Fail);
}

#[test]
fn cap_capable_non_owner_in_parent_has_nothing() {
    let mut w = world();
    let ns1 = w.ns_by_name("ns1").unwrap();
    let o = run(
        &mut w,
        "u1001",
        Op::Capable {
            ns: ns1,
            cap: Cap::KILL,
        },
    );
    assert_eq!(denied(&o), Errno::EPERM);
}

#[test]
fn cap_capable_sideways_denied() {
    let mut w = world();
    let big = w.ns_by_name("big").unwrap();
    let o = run(
        &mut w,
        "nsroot",
        Op::Capable {
            ns: big,
            cap: Cap::KILL,
        },
    );
    assert_eq!(denied(&o), Errno::EPERM);
}

#[test]
fn init_root_has_caps_everywhere_below() {
    let mut w = world();
    let big = w.ns_by_name("big").unwrap();
    let o = run(
        &mut w,
        "root",
        Op::Capable {
            ns: big,
            cap: Cap::SETUID,
        },
    );
    assert!(o.is_allowed(), "{o}");
}

// ------------------------------------------------------------------ permission

#[test]
fn nsroot_cannot_read_unmapped_owner_file() {
    // T18
    let mut w = world();
    let o = run(&mut w, "nsroot", open("/etc/shadow", true, false));
    assert_eq!(denied(&o), Errno::EACCES);
    assert!(
        o.trace
            .iter()
            .any(|s| s.function == "privileged_wrt_inode_uidgid" && s.verdict == StepVerdict::Fail),
        "{o}"
    );
}

#[test]
fn host_root_overrides_dac() {
    let mut w = world();
    assert!(run(&mut w, "root", open("/etc/shadow", true, true)).is_allowed());
}

#[test]
fn dac_override_with_mapped_ids_in_ns() {
    // T21: mode 0000 owned by 1000:1000, ns root with "map self" reads it.
    let mut w = world();
    let o = run(&mut w, "nsroot", open("/home/u/mine", true, false));
    assert!(o.is_allowed(), "{o}");
    assert!(o.consulted("capable_wrt_inode_uidgid"));
}

#[test]
fn no_override_when_group_unmapped() {
    // T21 second half.
    let mut w = world();
    let o = run(&mut w, "nsroot", open("/home/u/mine1001g", true, false));
    assert_eq!(denied(&o), Errno::EACCES);
}

#[test]
fn exec_without_any_x_bit_denied_even_to_root() {
    let mut w = world();
    let o = run(
        &mut w,
        "root",
        Op::Exec {
            path: "/home/u/noexec".into(),
        },
    );
    assert_eq!(denied(&o), Errno::EACCES);
    assert!(
        o.trace
            .iter()
            .any(|s| s.function == "generic_permission" && s.check.contains("no x bit")),
        "{o}"
    );
}

#[test]
fn owner_class_decides_alone() {
    // T29 second half: the owner with user::--- is denied although the group grants rw.
    let mut w = world();
    let o = run(&mut w, "u1000", open("/home/u/aclowner", true, false));
    assert_eq!(denied(&o), Errno::EACCES);
    assert!(o
        .trace
        .iter()
        .any(|s| s.function == "acl_permission_check" && s.check.contains("owner bits alone")));
}

#[test]
fn acl_named_user_limited_by_mask() {
    // T29: user:1000:r-- reads; 1001 does not; 1000 cannot write.
    let mut w = world();
    assert!(run(&mut w, "u1000", open("/home/u/acl", true, false)).is_allowed());
    assert_eq!(
        denied(&run(&mut w, "u1001", open("/home/u/acl", true, false))),
        Errno::EACCES
    );
    let o = run(&mut w, "u1000", open("/home/u/acl", false, true));
    assert_eq!(denied(&o), Errno::EACCES);
    assert!(o.consulted("posix_acl_permission"));
}

#[test]
fn search_permission_along_the_path() {
    let mut w = world();
    let o = run(&mut w, "u1000", open("/locked/f", true, false));
    assert_eq!(denied(&o), Errno::EACCES);
    assert!(o.consulted("may_lookup"));
    assert!(run(&mut w, "root", open("/locked/f", true, false)).is_allowed());
}

#[test]
fn missing_file_is_enoent() {
    let mut w = world();
    assert_eq!(
        denied(&run(&mut w, "u1000", open("/nope", true, false))),
        Errno::ENOENT
    );
}

#[test]
fn access_uses_real_ids() {
    let mut w = world();
    // euid 1000, real uid 1001: access() checks as 1001.
    let task = t(&w, "u1001");
    w.task_mut(task).cred.euid = Kuid(1000);
    w.task_mut(task).cred.fsuid = Kuid(1000);
    let o = w.op(
        task,
        &Op::Access {
            path: "/home/u/acl".into(),
            mode: 4,
            eaccess: false,
        },
    );
    assert_eq!(denied(&o), Errno::EACCES);
    assert!(o.consulted("access_override_creds"));
    let o = w.op(
        task,
        &Op::Access {
            path: "/home/u/acl".into(),
            mode: 4,
            eaccess: true,
        },
    );
    assert!(o.is_allowed(), "{o}");
}

// ------------------------------------------------------------------ stat / rendering

#[test]
fn stat_munges_unmapped_owner() {
    // T19
    let mut w = world();
    let o = run(
        &mut w,
        "nsroot",
        Op::Stat {
            path: "/etc/passwd".into(),
        },
    );
    let out = o.output.unwrap();
    assert_eq!(out.get("uid"), Some("65534"));
    assert_eq!(out.get("gid"), Some("65534"));
    let o = run(
        &mut w,
        "nsroot",
        Op::Stat {
            path: "/home/u/mine".into(),
        },
    );
    assert_eq!(o.output.unwrap().get("uid"), Some("0"));
}

#[test]
fn proc_status_from_both_sides() {
    // T34
    let mut w = world();
    let ns = t(&w, "nsroot");
    let o = run(&mut w, "root", Op::ProcStatus { target: ns });
    assert_eq!(o.output.as_ref().unwrap().get("uid"), Some("1000"));
    let o = run(&mut w, "nsroot", Op::ProcStatus { target: ns });
    assert_eq!(o.output.as_ref().unwrap().get("uid"), Some("0"));
    assert_eq!(
        o.output.as_ref().unwrap().get("CapEff"),
        Some("000001ffffffffff")
    );
}

#[test]
fn peercred_translated_for_reader() {
    // T33
    let mut w = world();
    let u1000 = t(&w, "u1000");
    let u1001 = t(&w, "u1001");
    assert_eq!(
        run(&mut w, "nsroot", Op::PeerCred { peer: u1000 })
            .output
            .unwrap()
            .get("uid"),
        Some("0")
    );
    assert_eq!(
        run(&mut w, "nsroot", Op::PeerCred { peer: u1001 })
            .output
            .unwrap()
            .get("uid"),
        Some("65534")
    );
}

// ------------------------------------------------------------------ create

#[test]
fn create_owner_and_setgid_dir() {
    let mut w = world();
    let o = run(
        &mut w,
        "u1001",
        Op::Create {
            path: "/sgid/f".into(),
            mode: 0o2775,
            dir: false,
        },
    );
    assert!(o.is_allowed(), "{o}");
    let out = o.output.unwrap();
    assert_eq!(out.get("uid"), Some("1001"));
    assert_eq!(
        out.get("gid"),
        Some("4242"),
        "group inherited from the setgid directory"
    );
    assert_eq!(
        out.get("mode"),
        Some("0755"),
        "S_ISGID stripped (not in group 4242), then umask 022"
    );
    let o = run(
        &mut w,
        "u1001",
        Op::Create {
            path: "/sgid/d".into(),
            mode: 0o777,
            dir: true,
        },
    );
    assert_eq!(
        o.output.unwrap().get("mode"),
        Some("2755"),
        "directories inherit S_ISGID"
    );
}

#[test]
fn create_in_ns_without_gid_map_works_on_host_fs() {
    // T22: the caller's fsgid kgid is mapped in the superblock's (initial) namespace.
    let mut w = world();
    let o = run(
        &mut w,
        "nsroot",
        Op::Create {
            path: "/tmp/inns".into(),
            mode: 0o644,
            dir: false,
        },
    );
    let out = o.output.unwrap();
    assert_eq!(
        (out.get("uid"), out.get("gid"), out.get("disk_uid")),
        (Some("0"), Some("0"), Some("1000"))
    );
}

#[test]
fn create_existing_is_eexist() {
    let mut w = world();
    let o = run(
        &mut w,
        "root",
        Op::Create {
            path: "/etc/passwd".into(),
            mode: 0o644,
            dir: false,
        },
    );
    assert_eq!(denied(&o), Errno::EEXIST);
}

// ------------------------------------------------------------------ chown / chmod

#[test]
fn chmod_needs_owner_or_fowner_over_mapped_owner() {
    // T20
    let mut w = world();
    assert_eq!(
        denied(&run(
            &mut w,
            "nsroot",
            Op::Chmod {
                path: "/etc/passwd".into(),
                mode: 0o644
            }
        )),
        Errno::EPERM
    );
    let o = run(
        &mut w,
        "u1000",
        Op::Chmod {
            path: "/home/u/mine".into(),
            mode: 0o2644,
        },
    );
    assert_eq!(
        o.output.unwrap().get("mode"),
        Some("2644"),
        "owner in the group keeps S_ISGID"
    );
    let o = run(
        &mut w,
        "u1000",
        Op::Chmod {
            path: "/home/u/mine1001g".into(),
            mode: 0o2644,
        },
    );
    assert_eq!(
        o.output.unwrap().get("mode"),
        Some("0644"),
        "S_ISGID silently cleared outside the group"
    );
}

#[test]
fn chown_unmapped_is_einval_and_noop_allowed() {
    // T20
    let mut w = world();
    let o = run(
        &mut w,
        "nsroot",
        Op::Chown {
            path: "/home/u/mine".into(),
            uid: Some(1),
            gid: None,
        },
    );
    assert_eq!(denied(&o), Errno::EINVAL);
    assert!(run(
        &mut w,
        "nsroot",
        Op::Chown {
            path: "/home/u/mine".into(),
            uid: Some(0),
            gid: None
        }
    )
    .is_allowed());
    // An unprivileged owner may not give the file away.
    let o = run(
        &mut w,
        "u1000",
        Op::Chown {
            path: "/home/u/mine".into(),
            uid: Some(1001),
            gid: None,
        },
    );
    assert_eq!(denied(&o), Errno::EPERM);
    assert!(o.consulted("chown_ok"));
}

#[test]
fn chown_clears_setuid() {
    let mut w = world();
    w.add_inode("/home/u/s", false, Kuid(1000), Kgid(1000), 0o4755)
        .unwrap();
    let o = run(
        &mut w,
        "root",
        Op::Chown {
            path: "/home/u/s".into(),
            uid: Some(1001),
            gid: None,
        },
    );
    assert_eq!(o.output.unwrap().get("mode"), Some("0755"));
}

#[test]
fn chgrp_to_own_group() {
    let mut w = world();
    let task = t(&w, "u1000");
    w.task_mut(task).cred.groups = vec![Kgid(1001)];
    let o = w.op(
        task,
        &Op::Chown {
            path: "/home/u/mine".into(),
            uid: None,
            gid: Some(1001),
        },
    );
    assert!(o.is_allowed(), "{o}");
    let o = w.op(
        task,
        &Op::Chown {
            path: "/home/u/mine".into(),
            uid: None,
            gid: Some(7),
        },
    );
    assert_eq!(denied(&o), Errno::EPERM);
}

// ------------------------------------------------------------------ signals, ptrace

#[test]
fn kill_rules() {
    // T30
    let mut w = world();
    let u1001 = t(&w, "u1001");
    let u1000 = t(&w, "u1000");
    let big5 = t(&w, "big5");
    assert_eq!(
        denied(&run(
            &mut w,
            "nsroot",
            Op::Kill {
                target: u1001,
                signal: 15
            }
        )),
        Errno::EPERM
    );
    assert!(run(
        &mut w,
        "nsroot",
        Op::Kill {
            target: u1000,
            signal: 15
        }
    )
    .is_allowed());
    assert!(run(
        &mut w,
        "u1000",
        Op::Kill {
            target: big5,
            signal: 15
        }
    )
    .is_allowed());
    assert_eq!(
        denied(&run(
            &mut w,
            "u1001",
            Op::Kill {
                target: big5,
                signal: 15
            }
        )),
        Errno::EPERM
    );
    assert_eq!(
        denied(&run(
            &mut w,
            "u1001",
            Op::Kill {
                target: big5,
                signal: 65
            }
        )),
        Errno::EINVAL
    );
}

#[test]
fn sigcont_without_sessions_is_unknown() {
    let mut w = world();
    let big5 = t(&w, "big5");
    let o = run(
        &mut w,
        "u1001",
        Op::Kill {
            target: big5,
            signal: 18,
        },
    );
    assert!(matches!(o.result, Verdict::Unknown(_)), "{o}");
    let u = t(&w, "u1001");
    w.task_mut(u).session = Some(7);
    w.task_mut(big5).session = Some(7);
    assert!(run(
        &mut w,
        "u1001",
        Op::Kill {
            target: big5,
            signal: 18
        }
    )
    .is_allowed());
}

#[test]
fn siginfo_uid_translation() {
    // T31
    let mut w = world();
    let ns = t(&w, "nsroot");
    assert_eq!(
        run(
            &mut w,
            "u1000",
            Op::Kill {
                target: ns,
                signal: 10
            }
        )
        .output
        .unwrap()
        .get("si_uid"),
        Some("0")
    );
    assert_eq!(
        run(
            &mut w,
            "root",
            Op::Kill {
                target: ns,
                signal: 10
            }
        )
        .output
        .unwrap()
        .get("si_uid"),
        Some("65534")
    );
}

#[test]
fn ptrace_rules() {
    // T32
    let mut w = world();
    let u1000 = t(&w, "u1000");
    let ns = t(&w, "nsroot");
    let o = run(&mut w, "nsroot", Op::Ptrace { target: u1000 });
    assert_eq!(denied(&o), Errno::EPERM);
    assert!(o.consulted("cap_ptrace_access_check"));
    assert!(run(&mut w, "u1000", Op::Ptrace { target: ns }).is_allowed());
    assert_eq!(
        denied(&run(&mut w, "u1000", Op::Ptrace { target: u1000 })),
        Errno::EPERM
    );
}

// ------------------------------------------------------------------ set*id

#[test]
fn setuid_unmapped_is_einval_before_eperm() {
    // T17
    let mut w = world();
    let o = run(&mut w, "nsroot", Op::Setuid { uid: 5 });
    assert_eq!(denied(&o), Errno::EINVAL);
    assert!(
        !o.consulted("cap_capable"),
        "EINVAL comes before any capability check"
    );
    let o = run(&mut w, "bigroot", Op::Setuid { uid: 5 });
    assert!(o.is_allowed(), "{o}");
    let b = t(&w, "bigroot");
    assert_eq!(w.task(b).cred.uid, Kuid(100005));
    assert_eq!(
        w.task(b).cred.cap_effective,
        CapSet::EMPTY,
        "leaving ns root clears the sets"
    );
}

#[test]
fn setuid_unprivileged_only_to_real_or_saved() {
    let mut w = world();
    assert_eq!(
        denied(&run(&mut w, "big5", Op::Setuid { uid: 6 })),
        Errno::EPERM
    );
    assert!(run(&mut w, "big5", Op::Setuid { uid: 5 }).is_allowed());
    assert!(run(
        &mut w,
        "big5",
        Op::Setresuid {
            ruid: None,
            euid: Some(5),
            suid: None
        }
    )
    .is_allowed());
    assert_eq!(
        denied(&run(
            &mut w,
            "big5",
            Op::Setreuid {
                ruid: Some(6),
                euid: None
            }
        )),
        Errno::EPERM
    );
}

#[test]
fn setgroups_needs_gid_map_and_allow() {
    let mut w = world();
    // ns1 has setgroups "deny".
    let o = run(&mut w, "nsroot", Op::Setgroups { groups: vec![0] });
    assert_eq!(denied(&o), Errno::EPERM);
    assert!(o.consulted("userns_may_setgroups"));
    assert!(run(&mut w, "bigroot", Op::Setgroups { groups: vec![1, 2] }).is_allowed());
    assert_eq!(
        denied(&run(
            &mut w,
            "bigroot",
            Op::Setgroups {
                groups: vec![70000]
            }
        )),
        Errno::EINVAL
    );
}

// ------------------------------------------------------------------ namespaces

#[test]
fn unshare_then_maps() {
    // T1-T5, T2
    let mut w = world();
    let me = t(&w, "u1001");
    let o = w.op(me, &Op::UnshareUser { name: "n".into() });
    assert!(o.is_allowed(), "{o}");
    assert_eq!(w.task(me).cred.cap_effective, CapSet::FULL);
    let ids = w.op(me, &Op::GetIds).output.unwrap();
    assert_eq!(ids.get("uid"), Some("65534"));
    // Nested unshare before writing maps: the euid is unmapped in the parent.
    assert_eq!(
        denied(&w.op(me, &Op::UnshareUser { name: "n2".into() })),
        Errno::EPERM
    );
    // gid_map before setgroups deny.
    assert_eq!(
        denied(&w.op(
            me,
            &Op::WriteMap {
                target: me,
                kind: MapKind::Gid,
                text: "0 1001 1".into()
            }
        )),
        Errno::EPERM
    );
    assert_eq!(
        denied(&w.op(
            me,
            &Op::WriteMap {
                target: me,
                kind: MapKind::Uid,
                text: "0 1001 2".into()
            }
        )),
        Errno::EPERM
    );
    assert!(w
        .op(
            me,
            &Op::WriteMap {
                target: me,
                kind: MapKind::Uid,
                text: "0 1001 1\n".into()
            }
        )
        .is_allowed());
    assert_eq!(
        denied(&w.op(
            me,
            &Op::WriteMap {
                target: me,
                kind: MapKind::Uid,
                text: "0 1001 1\n".into()
            }
        )),
        Errno::EPERM
    );
    assert!(w
        .op(
            me,
            &Op::WriteSetgroups {
                target: me,
                text: "deny".into()
            }
        )
        .is_allowed());
    assert!(w
        .op(
            me,
            &Op::WriteMap {
                target: me,
                kind: MapKind::Gid,
                text: "0 1001 1".into()
            }
        )
        .is_allowed());
    assert_eq!(
        denied(&w.op(
            me,
            &Op::WriteSetgroups {
                target: me,
                text: "allow".into()
            }
        )),
        Errno::EPERM
    );
    assert_eq!(w.op(me, &Op::GetIds).output.unwrap().get("uid"), Some("0"));
}

#[test]
fn map_write_from_outside_parent_is_eperm() {
    // T12 last line: host root writing a grandchild's map.
    let mut w = world();
    let me = t(&w, "bigroot");
    assert!(w
        .op(
            me,
            &Op::UnshareUser {
                name: "child".into()
            }
        )
        .is_allowed());
    let o = run(
        &mut w,
        "root",
        Op::WriteMap {
            target: me,
            kind: MapKind::Uid,
            text: "0 1000 1".into(),
        },
    );
    assert_eq!(denied(&o), Errno::EPERM);
    assert!(o.consulted("proc_uid_map_write"));
}

#[test]
fn nesting_limit_is_enospc_at_level_33() {
    // T7, checked on 6.18: a process at level 33 gets ENOSPC.
    let mut w = World::new();
    let me = w
        .add_task("p", Cred::new(w.init_ns(), Kuid(0), Kgid(0), CapSet::FULL))
        .unwrap();
    for i in 1..=33 {
        let o = w.op(
            me,
            &Op::UnshareUser {
                name: format!("l{i}"),
            },
        );
        assert!(o.is_allowed(), "level {i}: {o}");
        let ok = w.op(
            me,
            &Op::WriteMap {
                target: me,
                kind: MapKind::Uid,
                text: "0 0 1".into(),
            },
        );
        assert!(ok.is_allowed(), "{ok}");
        assert!(w
            .op(
                me,
                &Op::WriteSetgroups {
                    target: me,
                    text: "deny".into()
                }
            )
            .is_allowed());
        assert!(w
            .op(
                me,
                &Op::WriteMap {
                    target: me,
                    kind: MapKind::Gid,
                    text: "0 0 1".into()
                }
            )
            .is_allowed());
    }
    assert_eq!(
        denied(&w.op(me, &Op::UnshareUser { name: "l34".into() })),
        Errno::ENOSPC
    );
}

#[test]
fn setns_rules() {
    // T15
    let mut w = world();
    let ns1 = w.ns_by_name("ns1").unwrap();
    assert_eq!(
        denied(&run(&mut w, "u1001", Op::Setns { ns: ns1 })),
        Errno::EPERM
    );
    assert_eq!(
        denied(&run(&mut w, "nsroot", Op::Setns { ns: ns1 })),
        Errno::EINVAL
    );
    assert!(run(&mut w, "u1000", Op::Setns { ns: ns1 }).is_allowed());
    let u = t(&w, "u1000");
    assert_eq!(w.task(u).cred.cap_effective, CapSet::FULL);
}

#[test]
fn fs_with_own_permission_is_unknown() {
    let text = format!("{BASE}\n[[filesystem]]\nname = \"n\"\ntype = \"nfs\"\n\n[[mount]]\npath = \"/net\"\nfs = \"n\"\n");
    let mut w = Scenario::parse(&text, "x.toml").unwrap().world;
    let o = run(
        &mut w,
        "u1000",
        Op::Stat {
            path: "/net/x".into(),
        },
    );
    assert!(matches!(o.result, Verdict::Unknown(_)), "{o}");
}

#[test]
fn outcome_json_has_stable_fields() {
    let mut w = world();
    let o = run(&mut w, "nsroot", open("/etc/shadow", true, false));
    let v: serde_json::Value = serde_json::from_str(&o.to_json()).unwrap();
    assert_eq!(v["result"], "denied");
    assert_eq!(v["errno"], "EACCES");
    let s = &v["trace"][0];
    for k in ["depth", "function", "check", "values", "verdict"] {
        assert!(s.get(k).is_some(), "step has {k}");
    }
    let text = o.to_string();
    assert!(text.starts_with("=> denied: EACCES"));
    assert_eq!(text.lines().count(), o.trace.len() + 1);
}

/// Found by the kernel differential test (tests/conformance, generated scenario): with
/// no_new_privs, exec of a file without set-id bits keeps an euid that differs from the uid;
/// Linux 6.18 downgrades only when exec changed the effective ids.
#[test]
fn exec_with_no_new_privs_keeps_differing_euid_without_setid_file() {
    let s = Scenario::parse(
        r#"
[[filesystem]]
name = "t"
type = "tmpfs"
[[mount]]
path = "/t"
fs = "t"
[[file]]
path = "/t/f0"
owner = 0
group = 1000
mode = "0750"
[[process]]
name = "p"
uid = 1000
euid = 1002
gid = 100001
groups = [5000, 100000]
caps = "all"
no_new_privs = true
[[op]]
by = "p"
op = "exec"
path = "/t/f0"
expect = "allowed"
expect_output = "uid=1000 euid=1002 suid=1002 fsuid=1002"
"#,
        "nnp_exec.toml",
    )
    .unwrap();
    let r = s.run();
    assert!(r[0].matches(), "{}", r[0].outcome);
}

/// Found by the kernel differential test: with no_new_privs, exec of a set-group-ID file is
/// ignored (bprm_fill_uid), but an egid the task is not in (not its fsgid, not a supplementary
/// group) still counts as an id change, so the kernel resets euid/egid to the real ids.
#[test]
fn exec_with_no_new_privs_resets_egid_outside_groups() {
    let s = Scenario::parse(
        r#"
[[filesystem]]
name = "t"
type = "tmpfs"
[[mount]]
path = "/t"
fs = "t"
[[file]]
path = "/t/f"
owner = 1000
group = 4242
mode = "6755"
[[process]]
name = "p"
uid = 1000
gid = 1000
egid = 100000
fsgid = 0
permitted = "CAP_SETGID, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH"
effective = "CAP_SETGID, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH"
no_new_privs = true
[[op]]
by = "p"
op = "exec"
path = "/t/f"
expect = "allowed"
expect_output = "uid=1000 euid=1000 gid=1000 egid=1000 sgid=1000 fsgid=1000"
"#,
        "nnp_egid.toml",
    )
    .unwrap();
    let r = s.run();
    assert!(r[0].matches(), "{}", r[0].outcome);
}

/// Found by the kernel differential test: chmod rewrites the access ACL (posix_acl_chmod):
/// the mask takes the group bits, other:: the other bits.
#[test]
fn chmod_rewrites_the_access_acl() {
    let s = Scenario::parse(
        r#"
[[filesystem]]
name = "t"
type = "tmpfs"
[[mount]]
path = "/t"
fs = "t"
[[file]]
path = "/t/d"
dir = true
owner = 4242
group = 4242
mode = "2775"
acl = ["user::--x", "user:4242:rw-", "group::rw-", "mask::r--", "other::-wx"]
[[process]]
name = "root"
uid = 0
[[process]]
name = "u"
uid = 1000
[[op]]
by = "u"
op = "open"
path = "/t/d"
access = "r"
expect = "EACCES"
[[op]]
by = "root"
op = "chmod"
path = "/t/d"
mode = "2775"
expect = "allowed"
[[op]]
by = "u"
op = "open"
path = "/t/d"
access = "r"
expect = "allowed"
note = "other:: is now r-x"
"#,
        "chmod_acl.toml",
    )
    .unwrap();
    for r in s.run() {
        assert!(r.matches(), "op {}: {}", r.index, r.outcome);
    }
}

/// Found by the kernel differential test: ambient capabilities survive an exec of a plain
/// file even when the effective ids differ from the real ones (only an id change clears them).
#[test]
fn ambient_survives_exec_with_differing_effective_ids() {
    let s = Scenario::parse(
        r#"
[[filesystem]]
name = "t"
type = "tmpfs"
[[mount]]
path = "/t"
fs = "t"
[[file]]
path = "/t/f"
owner = 1000
group = 0
mode = "0711"
[[process]]
name = "p"
uid = 1000
gid = 1000
egid = 0
permitted = "0x27"
effective = "0x27"
inheritable = "0x8028002b"
ambient = "0x22"
[[op]]
by = "p"
op = "exec"
path = "/t/f"
expect = "allowed"
expect_output = "egid=0 CapPrm=0000000000000022 CapEff=0000000000000022 CapAmb=0000000000000022"
"#,
        "ambient.toml",
    )
    .unwrap();
    let r = s.run();
    assert!(r[0].matches(), "{}", r[0].outcome);
}
