//! The helper processes and the /proc readers against the running kernel.
//!
//! These need root (they create user namespaces with arbitrary maps). Without root each test
//! prints "skipped: needs root (...)" and returns, unless CREDNS_REQUIRE_ALL=1, which turns the
//! skip into a failure.

mod common;

use std::os::fd::AsFd;

use credns_idmap::{IdKind, IdMap};
use credns_sys::{
    userns_ancestry, Actor, CapSets, Errno, Error, Ids, OFlags, Pid, ProcFs, UnshareOptions,
    UsernsChild, WriteHow,
};

fn needs_root(test: &str) -> bool {
    common::needs_root(
        test,
        "creates user namespaces and writes their maps as root",
    )
}

const PLAIN: &str = "         0     100000       1000\n";

#[test]
fn caller_writes_child_maps_and_both_sides_read_them() {
    if !needs_root("caller_writes_child_maps_and_both_sides_read_them") {
        return;
    }
    let fs = ProcFs::new();
    let c = UsernsChild::spawn(&UnshareOptions::new()).unwrap();
    assert_ne!(c.userns().unwrap(), fs.userns(Pid::this()).unwrap());
    assert!(fs.read_map(c.pid(), IdKind::Uid).unwrap().is_empty());
    assert!(fs.setgroups_allowed(c.pid()).unwrap());
    // Before any map: the helper is nobody inside, with every capability there.
    let ids = c.ids().unwrap();
    assert_eq!(ids.uid, [65534; 3]);
    let me = fs.status(Pid::this()).unwrap();
    assert_eq!(
        c.creator_caps().effective,
        me.cap_eff,
        "before unsharing it had the caller's capabilities"
    );
    assert_eq!(
        ids.caps.effective & me.cap_eff,
        me.cap_eff,
        "inside it has at least those"
    );
    assert_eq!(
        c.write_map(Actor::Caller, IdKind::Uid, b"0 100000 1000\n")
            .unwrap(),
        Ok(())
    );
    assert_eq!(fs.read_map_text(c.pid(), IdKind::Uid).unwrap(), PLAIN);
    assert_eq!(
        String::from_utf8(c.read_file(&c.map_path(IdKind::Uid)).unwrap().unwrap()).unwrap(),
        PLAIN
    );
    // The kernel refuses a second write; the errno comes back as is.
    let again = c
        .write_map(Actor::Caller, IdKind::Uid, b"0 100000 1000\n")
        .unwrap();
    assert_eq!(again.map_err(|e| e.raw_os_error()), Err(libc::EPERM));
    // A process inside its namespace lacks CAP_SETGID over the parent: a multi-id gid map fails.
    let own = c
        .write_map(Actor::Process(&c), IdKind::Gid, b"0 100000 1000\n")
        .unwrap();
    assert_eq!(own, Err(Errno::PERM));
    assert_eq!(c.write_setgroups(Actor::Caller, b"deny").unwrap(), Ok(()));
    assert!(!fs.setgroups_allowed(c.pid()).unwrap());
    assert_eq!(
        c.write_map(Actor::Caller, IdKind::Gid, b"0 100000 1000\n")
            .unwrap(),
        Ok(())
    );
    let st = fs.status(c.pid()).unwrap();
    assert_eq!(
        st.uid, [0; 4],
        "the host sees kernel ids: unshare does not change them"
    );
    assert_eq!(st.nspid, vec![c.pid()]);
    let anc = userns_ancestry(&fs, c.pid()).unwrap();
    assert_eq!(
        anc,
        vec![c.userns().unwrap(), fs.userns(Pid::this()).unwrap()]
    );
    assert_eq!(fs.find_pid_in_userns(anc[0]).unwrap(), Some(c.pid()));
    assert_eq!(format!("{}", anc[0]), format!("user:[{}]", anc[0].ino));
}

#[test]
fn nested_helpers_write_maps_and_become_ids() {
    if !needs_root("nested_helpers_write_maps_and_become_ids") {
        return;
    }
    let fs = ProcFs::new();
    let l1 = UsernsChild::spawn(&UnshareOptions::new()).unwrap();
    for k in [IdKind::Uid, IdKind::Gid] {
        assert_eq!(
            l1.write_map(Actor::Caller, k, b"0 100000 1000\n1000 300000 10\n")
                .unwrap(),
            Ok(())
        );
    }
    // setresuid inside needs the target ids mapped.
    assert_eq!(
        l1.set_ids(&Ids {
            uid: 5000,
            gid: 0,
            groups: None
        })
        .unwrap(),
        Err(Errno::INVAL)
    );
    assert_eq!(
        l1.set_ids(&Ids {
            uid: 1000,
            gid: 1000,
            groups: Some(vec![0, 1005])
        })
        .unwrap(),
        Ok(())
    );
    let ids = l1.ids().unwrap();
    assert_eq!(
        (ids.uid, ids.gid, ids.groups.clone()),
        ([1000; 3], [1000; 3], vec![0, 1005])
    );
    assert_eq!(fs.status(l1.pid()).unwrap().uid[1], 300000);
    let l2 = l1.spawn_child(&UnshareOptions::new()).unwrap();
    let owner = l2.userns_fd().unwrap().owner_uid().unwrap();
    assert_eq!(
        owner, 300000,
        "the nested namespace's owner is level 1's euid"
    );
    // Level 1 writes level 2's map: a range inside one level-1 extent works, a range that
    // crosses from one level-1 extent into the next does not, though every id is mapped.
    assert_eq!(
        l2.write_map(Actor::Process(&l1), IdKind::Uid, b"0 990 20\n")
            .unwrap(),
        Err(Errno::PERM)
    );
    assert_eq!(
        l2.write_map(Actor::Process(&l1), IdKind::Uid, b"0 1000 5\n")
            .unwrap(),
        Ok(())
    );
    assert_eq!(
        fs.read_map_text(l2.pid(), IdKind::Uid).unwrap(),
        "         0     300000          5\n"
    );
    assert_eq!(
        String::from_utf8(l1.read_file(&l2.map_path(IdKind::Uid)).unwrap().unwrap()).unwrap(),
        "         0       1000          5\n"
    );
    // The host cannot write a grandchild's map (its namespace is not the parent).
    assert_eq!(
        l2.write_map(Actor::Caller, IdKind::Gid, b"0 1000 5\n")
            .unwrap(),
        Err(Errno::PERM)
    );
    let anc = userns_ancestry(&fs, l2.pid()).unwrap();
    assert_eq!(
        anc,
        vec![
            l2.userns().unwrap(),
            l1.userns().unwrap(),
            fs.userns(Pid::this()).unwrap()
        ]
    );
    // Seen from level 1, the ancestry stops at level 1's own namespace (NS_GET_PARENT: EPERM).
    let fd = l2.userns_fd().unwrap();
    assert_eq!(
        fd.parent().unwrap().unwrap().id().unwrap(),
        l1.userns().unwrap()
    );
    // A map read from a reader that cannot see the lower ids is an error that says so.
    let sib = UsernsChild::spawn(&UnshareOptions::new()).unwrap();
    assert_eq!(
        sib.write_map(Actor::Caller, IdKind::Uid, b"0 0 1\n")
            .unwrap(),
        Ok(())
    );
    let seen =
        String::from_utf8(sib.read_file(&l2.map_path(IdKind::Uid)).unwrap().unwrap()).unwrap();
    assert_eq!(seen, "         0 4294967295          5\n");
    let dir = std::env::temp_dir().join(format!("credns-sys-test-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("77")).unwrap();
    std::fs::write(dir.join("77/uid_map"), &seen).unwrap();
    let e = ProcFs::at(&dir).read_map(Pid(77), IdKind::Uid).unwrap_err();
    assert!(matches!(e, Error::LowerNotVisible { line: 1, .. }), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unprivileged_helper_writes_its_own_map() {
    if !needs_root("unprivileged_helper_writes_its_own_map") {
        return;
    }
    let fs = ProcFs::new();
    let c = UsernsChild::spawn(&UnshareOptions::unprivileged(1000, 1000)).unwrap();
    assert_eq!(c.creator_caps(), CapSets::NONE);
    let st = fs.status(c.pid()).unwrap();
    assert_eq!(
        (st.uid, st.gid, st.groups.clone()),
        ([1000; 4], [1000; 4], vec![])
    );
    assert_eq!(
        c.write_map(Actor::Process(&c), IdKind::Uid, b"0 1001 1\n")
            .unwrap(),
        Err(Errno::PERM)
    );
    assert_eq!(
        c.write_map(Actor::Process(&c), IdKind::Uid, b"0 1000 1\n")
            .unwrap(),
        Ok(())
    );
    assert_eq!(
        c.write_map(Actor::Process(&c), IdKind::Gid, b"0 1000 1\n")
            .unwrap(),
        Err(Errno::PERM)
    );
    assert_eq!(
        c.write_setgroups(Actor::Process(&c), b"deny").unwrap(),
        Ok(())
    );
    assert_eq!(
        c.write_map(Actor::Process(&c), IdKind::Gid, b"0 1000 1\n")
            .unwrap(),
        Ok(())
    );
    assert_eq!(c.ids().unwrap().uid, [0; 3]);
    assert_eq!(
        fs.read_map(c.pid(), IdKind::Gid).unwrap(),
        IdMap::new(vec![credns_idmap::Extent::new(0, 1000, 1)]).unwrap()
    );
}

#[test]
fn fds_pass_both_ways_and_offsets_reach_the_kernel() {
    if !needs_root("fds_pass_both_ways_and_offsets_reach_the_kernel") {
        return;
    }
    let c = UsernsChild::spawn(&UnshareOptions::unprivileged(1000, 1000)).unwrap();
    // The helper opens its own map; the caller writes through that fd: the opener lacks
    // CAP_SETUID in the parent, so only the unprivileged shape is allowed.
    let fd = c
        .open(&c.map_path(IdKind::Uid), OFlags::WRONLY)
        .unwrap()
        .unwrap();
    let local = c.fetch_fd(fd).unwrap();
    assert_eq!(c.close(fd).unwrap(), Ok(()));
    assert_eq!(
        credns_sys::write_fd(local.as_fd(), b"0 1000 2\n", WriteHow::Write),
        Err(Errno::PERM)
    );
    // pwrite on a map file: seq_file clears FMODE_PWRITE, so even offset 0 is ESPIPE.
    assert_eq!(
        credns_sys::write_fd(local.as_fd(), b"0 1000 1\n", WriteHow::Pwrite(0)),
        Err(Errno::SPIPE)
    );
    assert_eq!(
        credns_sys::write_fd(local.as_fd(), b"0 1000 1\n", WriteHow::SeekThenWrite(1)),
        Err(Errno::INVAL)
    );
    assert_eq!(
        credns_sys::write_fd(local.as_fd(), b"0 1000 1\n", WriteHow::SeekThenWrite(0)),
        Ok(9)
    );
    // The caller opens, the helper writes.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(c.map_path(IdKind::Gid))
        .unwrap();
    let remote = c.install_fd(f.as_fd()).unwrap();
    assert_eq!(
        c.write(remote, b"0 1000 1\n", WriteHow::Write).unwrap(),
        Err(Errno::PERM)
    );
    assert_eq!(c.close(remote).unwrap(), Ok(()));
    assert_eq!(c.close(remote).unwrap(), Err(Errno::BADF));
    assert_eq!(
        c.stat_owner(std::path::Path::new("/proc/self")).unwrap(),
        Ok((0, 65534))
    );
    assert_eq!(
        c.stat_owner(std::path::Path::new("/nonexistent")).unwrap(),
        Err(Errno::NOENT)
    );
}

#[test]
fn setup_failures_name_the_step() {
    if !needs_root("setup_failures_name_the_step") {
        return;
    }
    // An unprivileged user cannot take on uid 0 again: the nested helper's setresuid fails.
    let c = UsernsChild::spawn(&UnshareOptions {
        new_userns: false,
        ..UnshareOptions::unprivileged(1000, 1000)
    })
    .unwrap();
    let e = c
        .spawn_child(&UnshareOptions {
            ids: Some(Ids {
                uid: 0,
                gid: 1000,
                groups: None,
            }),
            ..UnshareOptions::new()
        })
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("setresuid") && msg.contains("EPERM"), "{msg}");
    // A creator whose egid has no mapping in its namespace cannot unshare (EPERM).
    let l1 = UsernsChild::spawn(&UnshareOptions::new()).unwrap();
    assert_eq!(
        l1.write_map(Actor::Caller, IdKind::Uid, b"0 0 1\n")
            .unwrap(),
        Ok(())
    );
    let msg = l1
        .spawn_child(&UnshareOptions::new())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("unshare(CLONE_NEWUSER)") && msg.contains("EPERM"),
        "{msg}"
    );
    let e = UsernsChild::spawn(&UnshareOptions {
        ids: Some(Ids {
            uid: 1,
            gid: 1,
            groups: Some(vec![0; 65]),
        }),
        ..UnshareOptions::new()
    })
    .unwrap_err();
    assert!(matches!(e, Error::Invalid(_)), "{e}");
    let e = ProcFs::new().status(Pid(i32::MAX)).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("read /proc/{}/status: ENOENT", i32::MAX)),
        "{e}"
    );
}

#[test]
fn drop_kills_and_reaps_every_helper() {
    if !needs_root("drop_kills_and_reaps_every_helper") {
        return;
    }
    let fs = ProcFs::new();
    let mut pids = Vec::new();
    let t = std::time::Instant::now();
    for i in 0..200 {
        let c = UsernsChild::spawn(&UnshareOptions::new()).unwrap();
        // The creator's euid and egid must both be mapped for it to unshare (else EPERM).
        for k in [IdKind::Uid, IdKind::Gid] {
            c.write_map(Actor::Caller, k, b"0 0 1\n").unwrap().unwrap();
        }
        let n = c.spawn_child(&UnshareOptions::new()).unwrap();
        for k in [IdKind::Uid, IdKind::Gid] {
            n.write_map(Actor::Process(&c), k, b"0 0 1\n")
                .unwrap()
                .unwrap();
        }
        let nn = n.spawn_child(&UnshareOptions::new()).unwrap();
        pids.extend([c.pid(), n.pid(), nn.pid()]);
        // Either order: a nested helper whose parent is gone was killed by PR_SET_PDEATHSIG.
        if i % 2 == 0 {
            drop((nn, n, c));
        } else {
            drop(c);
            drop(n);
            drop(nn);
        }
    }
    println!("200 three-level namespace trees in {:?}", t.elapsed());
    // Not even a zombie is left: each helper kills and reaps its nested helpers (and orphans
    // re-parented to it) before it exits, and its parent reaps it. A pid reused by some other
    // process would not carry this thread's name.
    let me = std::thread::current()
        .name()
        .unwrap_or("")
        .chars()
        .take(15)
        .collect::<String>();
    let left: Vec<(Pid, String)> = pids
        .iter()
        .filter_map(|p| {
            let stat = std::fs::read_to_string(fs.pid_path(*p).join("stat")).ok()?;
            let comm = std::fs::read_to_string(fs.pid_path(*p).join("comm")).unwrap_or_default();
            (comm.trim_end() == me).then_some((*p, stat))
        })
        .collect();
    assert!(left.is_empty(), "helpers left behind: {left:?}");
}

#[test]
fn nested_helpers_that_changed_ids_still_die_with_their_parent() {
    if !needs_root("nested_helpers_that_changed_ids_still_die_with_their_parent") {
        return;
    }
    // The kernel clears PR_SET_PDEATHSIG when the euid changes; the helper arms it again. The
    // third level matters: when the first level exits it kills its own child, and the third
    // level, re-parented to the first (a subreaper), must die of its parent-death signal.
    let fs = ProcFs::new();
    for _ in 0..20 {
        let c = UsernsChild::spawn(&UnshareOptions::new()).unwrap();
        for k in [IdKind::Uid, IdKind::Gid] {
            c.write_map(Actor::Caller, k, b"0 0 1\n1 1000 1\n")
                .unwrap()
                .unwrap();
        }
        let n = c.spawn_child(&UnshareOptions::new()).unwrap();
        for k in [IdKind::Uid, IdKind::Gid] {
            n.write_map(Actor::Process(&c), k, b"0 0 1\n1 1 1\n")
                .unwrap()
                .unwrap();
        }
        let nn = n.spawn_child(&UnshareOptions::new()).unwrap();
        for k in [IdKind::Uid, IdKind::Gid] {
            nn.write_map(Actor::Process(&n), k, b"0 0 1\n1 1 1\n")
                .unwrap()
                .unwrap();
        }
        assert_eq!(
            nn.set_ids(&Ids {
                uid: 1,
                gid: 1,
                groups: None
            })
            .unwrap(),
            Ok(())
        );
        assert_eq!(fs.status(nn.pid()).unwrap().uid[1], 1000);
        let pids = [c.pid(), n.pid(), nn.pid()];
        let t = std::time::Instant::now();
        drop(c);
        assert!(
            t.elapsed() < std::time::Duration::from_secs(3),
            "dropping the first level took {:?}",
            t.elapsed()
        );
        for p in pids {
            assert!(!fs.pid_path(p).exists(), "pid {p} left behind");
        }
        drop(n);
        drop(nn);
    }
}

#[test]
fn full_credentials_system_calls_and_exec_as_a_helper() {
    if !needs_root("full_credentials_system_calls_and_exec_as_a_helper") {
        return;
    }
    use credns_sys::{FullCreds, SetId};
    let c = UsernsChild::spawn(&UnshareOptions {
        new_userns: false,
        ..UnshareOptions::new()
    })
    .unwrap();
    const CAP_KILL: u64 = 1 << 5;
    const CAP_SETUID: u64 = 1 << 7;
    let want = FullCreds {
        uid: [1000, 1001, 1002, 1003],
        gid: [2000, 2001, 2002, 2003],
        groups: vec![5, 6],
        inheritable: CAP_KILL,
        permitted: CAP_KILL | CAP_SETUID,
        effective: CAP_KILL,
        bounding: CAP_KILL | CAP_SETUID,
        ambient: CAP_KILL,
        securebits: 0,
        no_new_privs: false,
        dumpable: true,
        umask: 0o027,
        keep_groups: false,
    };
    c.set_full_creds(&want).unwrap().unwrap();
    let ids = c.ids().unwrap();
    assert_eq!(ids.uid, [1000, 1001, 1002]);
    assert_eq!(ids.gid, [2000, 2001, 2002]);
    assert_eq!(ids.groups, vec![5, 6]);
    assert_eq!(c.fs_ids().unwrap(), (1003, 2003));
    assert_eq!(ids.caps.permitted, CAP_KILL | CAP_SETUID);
    assert_eq!(ids.caps.effective, CAP_KILL);
    let st = std::fs::read_to_string(format!("/proc/{}/status", c.pid().0)).unwrap();
    assert!(st.contains("CapAmb:\t0000000000000020"), "{st}");
    assert!(st.contains("CapBnd:\t00000000000000a0"), "{st}");
    assert!(st.contains("Umask:\t0027"), "{st}");
    // Without CAP_SETUID in the effective set a uid outside r/e/s is refused.
    assert_eq!(c.set_id(SetId::Setuid(7)).unwrap(), Err(Errno::PERM));
    assert_eq!(
        c.set_id(SetId::Setresuid(None, Some(1000), None)).unwrap(),
        Ok(())
    );
    // exec: cat prints its own status. The egid (2001) is neither the fsgid nor a
    // supplementary group, so the kernel counts the exec as an id change: the ambient set is
    // cleared and nothing is effective.
    let (status, out) = c
        .exec_capture(std::path::Path::new("/bin/cat"), "/proc/self/status")
        .unwrap()
        .unwrap();
    assert_eq!(status, 0);
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("CapAmb:\t0000000000000000"), "{out}");
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    assert!(out.contains("Uid:\t1000\t1000\t1000\t1000"), "{out}");
    assert_eq!(
        c.exec_capture(std::path::Path::new("/nonexistent"), "x")
            .unwrap(),
        Err(Errno::NOENT)
    );
    // kill: signal 0 to the test process (other uid, CAP_KILL effective) is allowed; an
    // ignored signal to another helper arrives without ending it.
    let other = UsernsChild::spawn(&UnshareOptions {
        new_userns: false,
        ..UnshareOptions::new()
    })
    .unwrap();
    assert_eq!(c.kill(Pid::this(), 0).unwrap(), Ok(()));
    assert_eq!(c.kill(other.pid(), 15).unwrap(), Ok(()));
    assert!(other.ids().is_ok(), "the helper survived SIGTERM");
    // SO_PEERCRED: the other helper (root) on one end, seen from this one.
    let (a, b) = other.socketpair().unwrap();
    let fd = other.fetch_fd(b).unwrap();
    let mine = c.install_fd(fd.as_fd()).unwrap();
    let (pid, uid, gid) = c.peercred(mine).unwrap().unwrap();
    assert_eq!((pid, uid, gid), (other.pid(), 0, 0));
    other.close(a).unwrap().unwrap();
    // ptrace: the test process's helper (root) may attach to this one and leaves it running.
    assert_eq!(other.ptrace_attach(c.pid()).unwrap(), Ok(()));
    assert!(c.ids().is_ok());
}
