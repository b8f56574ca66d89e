//! Idmapped mounts, differentially: on tmpfs, ext4, btrfs and xfs, generated cases (random mount
//! idmaps of one to three extents, some read-only, files with random on-disk owners and modes, callers with
//! random credentials on the host or in a container namespace) are run on the kernel and in
//! `credns_model`: stat results through the idmapped and the original mount, open for reading
//! and for writing, and file creation (outcome and the new file's on-disk owner) must agree.
//! A mismatch fails the test with the whole case printed.
//!
//! Needs root: without it each test prints "skipped: needs root (...)", or panics when
//! CREDNS_REQUIRE_ALL=1. CREDNS_SEED replays a run (the seed is new each run and printed); CREDNS_CONFORMANCE_SCALE multiplies
//! the number of cases.

use std::fmt::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use credns_conformance::gen::Rng;
use credns_conformance::scratch::{mount_overlay, FsKind, MountGuard, ScratchFs};
use credns_conformance::{announce_seed, needs_root, scaled};
use credns_idmap::{Extent, IdKind, IdMap, Kgid, Kuid};
use credns_model::{CapSet, Cred, MountOptions, Op, Verdict, World};
use credns_sys::{
    Actor, CapSets, DetachedMount, Errno, Ids, MappingUserns, OFlags, UnshareOptions, UsernsChild,
};

/// Model paths: the filesystem's root is mounted at /src, the idmapped clone of a case's
/// directory at /idm.
const SRC: &str = "/src";
const IDM: &str = "/idm";

#[derive(Clone, Debug)]
struct FileSpec {
    name: String,
    uid: u32,
    gid: u32,
    mode: u32,
    dir: bool,
}

#[derive(Clone, Debug)]
enum Who {
    /// A host process with these kuids; `root` keeps every capability.
    Host { uid: u32, gid: u32, root: bool },
    /// A process in a container namespace with `map` (both uid and gid), as uid/gid there,
    /// with supplementary `groups` (namespace ids); capabilities only as its namespace's root.
    Container {
        map: String,
        uid: u32,
        gid: u32,
        groups: Vec<u32>,
    },
}

struct Case {
    idmap: Vec<Extent>,
    /// The idmapped mount is read-only (`MOUNT_ATTR_RDONLY`).
    read_only: bool,
    files: Vec<FileSpec>,
    callers: Vec<Who>,
}

fn map_text(ext: &[Extent]) -> String {
    ext.iter()
        .map(|e| format!("{} {} {}\n", e.first, e.lower_first, e.count))
        .collect()
}

/// One to three extents over on-disk ids 0..3000, onto disjoint kuid blocks above 100000.
fn gen_idmap(rng: &mut Rng) -> Vec<Extent> {
    let n = rng.range(1, 3) as usize;
    let mut out = Vec::new();
    let mut start = rng.below(3) as u32 * 500;
    for i in 0..n {
        let count = rng.range(1, 1000) as u32;
        let lower = 100_000 + (i as u32) * 1_000_000 + rng.below(100) as u32 * 1000;
        out.push(Extent::new(start, lower, count));
        start += count + rng.below(200) as u32;
    }
    rng.shuffle(&mut out);
    out
}

/// An on-disk id: usually inside the idmap, sometimes anywhere below 4000.
fn disk_id(rng: &mut Rng, idmap: &[Extent]) -> u32 {
    if rng.chance(3, 4) {
        let e = idmap[rng.below(idmap.len() as u64) as usize];
        e.first + rng.below(e.count as u64) as u32
    } else {
        rng.below(4000) as u32
    }
}

fn gen_case(rng: &mut Rng) -> Case {
    let idmap = gen_idmap(rng);
    let mut files = Vec::new();
    for i in 0..5 {
        let uid = disk_id(rng, &idmap);
        let gid = if rng.chance(1, 2) {
            uid
        } else {
            disk_id(rng, &idmap)
        };
        let mode = rng.pick(&[
            0o600, 0o640, 0o644, 0o660, 0o666, 0o604, 0o000, 0o060, 0o006,
        ]) | if rng.chance(1, 4) {
            rng.below(0o1000) as u32
        } else {
            0
        };
        files.push(FileSpec {
            name: format!("f{i}"),
            uid,
            gid,
            mode,
            dir: false,
        });
    }
    let uid = disk_id(rng, &idmap);
    files.push(FileSpec {
        name: "d".into(),
        uid,
        gid: if rng.chance(1, 2) {
            uid
        } else {
            disk_id(rng, &idmap)
        },
        mode: rng.pick(&[
            0o777, 0o775, 0o755, 0o730, 0o703, 0o1777, 0o2777, 0o2770, 0o700,
        ]),
        dir: true,
    });
    let mut callers = Vec::new();
    for _ in 0..4 {
        let pick_owner = |rng: &mut Rng, files: &[FileSpec]| files[rng.below(6) as usize].clone();
        let who = match rng.below(8) {
            0 => Who::Host {
                uid: 0,
                gid: 0,
                root: true,
            },
            1 | 2 => {
                // A host process whose kuid the idmap maps (or not).
                let f = pick_owner(rng, &files);
                let kuid = |id: u32| {
                    IdMap::new(idmap.clone())
                        .unwrap()
                        .map_down(id)
                        .unwrap_or(5000 + id)
                };
                Who::Host {
                    uid: kuid(f.uid),
                    gid: if rng.chance(3, 4) {
                        kuid(f.gid)
                    } else {
                        rng.below(200_000) as u32
                    },
                    root: false,
                }
            }
            _ => {
                // A container: usually the namespace the idmap was made for.
                let map = if rng.chance(3, 4) {
                    map_text(&idmap)
                } else {
                    format!("0 {} 65536\n", 100_000 + rng.below(4) as u32 * 1_000_000)
                };
                let m = IdMap::new(credns_idmap::parse_write(map.as_bytes()).unwrap()).unwrap();
                // Ids the namespace maps: the wanted one if it can, else its first.
                let inside = |want: u32| {
                    if m.map_down(want).is_some() {
                        want
                    } else {
                        m.sorted()[0].first
                    }
                };
                let f = pick_owner(rng, &files);
                let uid = if rng.chance(1, 4) && m.map_down(0).is_some() {
                    0
                } else {
                    inside(f.uid)
                };
                let gid = if rng.chance(3, 4) {
                    inside(f.gid)
                } else {
                    inside(uid)
                };
                let groups = if rng.chance(1, 2) {
                    vec![inside(pick_owner(rng, &files).gid)]
                } else {
                    vec![]
                };
                Who::Container {
                    map,
                    uid,
                    gid,
                    groups,
                }
            }
        };
        callers.push(who);
    }
    Case {
        idmap,
        read_only: rng.chance(1, 5),
        files,
        callers,
    }
}

fn describe(kind: FsKind, case_no: usize, c: &Case) -> String {
    let mut s = format!(
        "filesystem {} case {case_no}\n  mount idmap (on-disk -> kuid): {}{}\n  files (on-disk):\n",
        kind.name(),
        map_text(&c.idmap).trim_end().replace('\n', ", "),
        if c.read_only { " (read-only)" } else { "" }
    );
    for f in &c.files {
        let _ = writeln!(
            s,
            "    {}{} {}:{} {:04o}",
            f.name,
            if f.dir { "/" } else { "" },
            f.uid,
            f.gid,
            f.mode
        );
    }
    s
}

/// The model of one case, with a task per caller (named "c0", "c1", ...).
fn model(kind: FsKind, c: &Case) -> World {
    let mut w = World::new();
    let init = w.init_ns();
    let root = w
        .add_superblock("root", "tmpfs", init, Kuid(0), Kgid(0), 0o755)
        .unwrap();
    w.add_mount("/", root, MountOptions::default()).unwrap();
    let disk = w
        .add_superblock("disk", kind.name(), init, Kuid(0), Kgid(0), 0o755)
        .unwrap();
    w.add_mount(SRC, disk, MountOptions::default()).unwrap();
    let mapns = w.add_userns("idmap", init, Kuid(0), Kgid(0)).unwrap();
    let text = map_text(&c.idmap);
    w.set_uid_map(mapns, &text).unwrap();
    w.set_gid_map(mapns, &text).unwrap();
    w.add_inode(&format!("{SRC}/case"), true, Kuid(0), Kgid(0), 0o755)
        .unwrap();
    for f in &c.files {
        w.add_inode(
            &format!("{SRC}/case/{}", f.name),
            f.dir,
            Kuid(f.uid),
            Kgid(f.gid),
            f.mode,
        )
        .unwrap();
    }
    w.add_mount(
        IDM,
        disk,
        MountOptions {
            idmap: Some(mapns),
            subdir: Some("/case".into()),
            read_only: c.read_only,
            ..MountOptions::default()
        },
    )
    .unwrap();
    for (i, who) in c.callers.iter().enumerate() {
        let cred = match who {
            Who::Host { uid, gid, root } => Cred::new(
                init,
                Kuid(*uid),
                Kgid(*gid),
                if *root { CapSet::FULL } else { CapSet::EMPTY },
            ),
            Who::Container {
                map,
                uid,
                gid,
                groups,
            } => {
                let ns = w
                    .add_userns(&format!("ct{i}"), init, Kuid(0), Kgid(0))
                    .unwrap();
                w.set_uid_map(ns, map).unwrap();
                w.set_gid_map(ns, map).unwrap();
                let ku = w.make_kuid(ns, *uid);
                let kg = w.make_kgid(ns, *gid);
                let caps = if *uid == 0 {
                    CapSet::FULL
                } else {
                    CapSet::EMPTY
                };
                let mut cred = Cred::new(ns, ku, kg, caps);
                cred.groups = groups.iter().map(|g| w.make_kgid(ns, *g)).collect();
                cred
            }
        };
        let t = w.add_task(&format!("c{i}"), cred).unwrap();
        // The helpers run with the test's umask.
        w.task_mut(t).umask = current_umask();
    }
    w
}

fn current_umask() -> u32 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .map(|v| u32::from_str_radix(v.trim(), 8).unwrap())
        .unwrap_or(0o022)
}

/// The real process for a caller.
fn spawn(who: &Who) -> UsernsChild {
    match who {
        Who::Host { uid, gid, root } => UsernsChild::spawn(&UnshareOptions {
            ids: (!*root).then(|| Ids {
                uid: *uid,
                gid: *gid,
                groups: Some(vec![]),
            }),
            caps: (!*root).then_some(CapSets::NONE),
            new_userns: false,
            ..UnshareOptions::default()
        })
        .unwrap(),
        Who::Container {
            map,
            uid,
            gid,
            groups,
        } => {
            let c = UsernsChild::spawn(&UnshareOptions::new()).unwrap();
            for k in [IdKind::Uid, IdKind::Gid] {
                c.write_map(Actor::Caller, k, map.as_bytes())
                    .unwrap()
                    .unwrap();
            }
            let ids = Ids {
                uid: *uid,
                gid: *gid,
                groups: Some(groups.clone()),
            };
            c.set_creds(Some(&ids), (*uid != 0).then_some(CapSets::NONE))
                .unwrap()
                .unwrap();
            c
        }
    }
}

fn outcome_name<T>(r: &Result<T, Errno>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => credns_sys::errno_name(*e).unwrap_or("other").into(),
    }
}

fn kernel_str<T>(r: &Result<T, Errno>) -> String {
    credns_sys::outcome_display(r)
}

fn agree<T>(k: &Result<T, Errno>, m: &Verdict) -> bool {
    match (k, m) {
        (Ok(_), Verdict::Allowed) => true,
        (Err(e), Verdict::Denied(me)) => e.raw_os_error() == me.code(),
        _ => false,
    }
}

struct Run {
    /// Kernel outcomes seen, by name ("ok", "EACCES", ...), to show what the cases covered.
    outcomes: std::collections::BTreeMap<String, usize>,
    compared: usize,
    mismatches: Vec<String>,
}

fn run_case(kind: FsKind, fs: &ScratchFs, case_no: usize, c: &Case, out: &mut Run) {
    // The real tree: ROOT/caseN holds the files; its idmapped clone is mounted beside.
    let dir = fs.root().join(format!("case{case_no}"));
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in &c.files {
        let p = dir.join(&f.name);
        if f.dir {
            std::fs::create_dir(&p).unwrap();
        } else {
            std::fs::write(&p, b"x").unwrap();
        }
        std::os::unix::fs::lchown(&p, Some(f.uid), Some(f.gid)).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(f.mode)).unwrap();
    }
    let idm = fs.mount_point(&format!("idm{case_no}"));
    let m = IdMap::new(c.idmap.clone()).unwrap();
    let ns = MappingUserns::new(&m, &m).unwrap();
    let tree = DetachedMount::clone_tree(&dir, false).unwrap();
    tree.set_idmap(&ns).unwrap();
    if c.read_only {
        tree.set_read_only().unwrap();
    }
    tree.attach(&idm).unwrap();
    let _guard = MountGuard(idm.clone());

    let real = |model_path: &str| -> PathBuf {
        if let Some(rest) = model_path.strip_prefix(&format!("{IDM}/")) {
            idm.join(rest)
        } else {
            let rest = model_path.strip_prefix(&format!("{SRC}/case/")).unwrap();
            dir.join(rest)
        }
    };
    let mut world = model(kind, c);
    let header = describe(kind, case_no, c);
    for (i, who) in c.callers.iter().enumerate() {
        let task = world.task_by_name(&format!("c{i}")).unwrap();
        let p = spawn(who);
        let mut report = |op: String, kernel: String, model: String| {
            out.mismatches.push(format!(
                "{header}  caller c{i}: {who:?}\n  op: {op}\n  kernel: {kernel}\n  model:  {model}\n"
            ));
        };
        for f in &c.files {
            for base in [IDM.to_string(), format!("{SRC}/case")] {
                let mp = format!("{base}/{}", f.name);
                let rp = real(&mp);
                // stat
                let k = p.stat_owner(&rp).unwrap();
                let mo = world.op(task, &Op::Stat { path: mp.clone() });
                out.compared += 1;
                if let Ok((u, _)) = &k {
                    let key = if *u == 65534 {
                        "stat overflowuid"
                    } else {
                        "stat mapped"
                    };
                    *out.outcomes.entry(key.into()).or_default() += 1;
                }
                let m_ids = mo.output.as_ref().and_then(|o| {
                    Some((
                        o.get("uid")?.parse::<u32>().ok()?,
                        o.get("gid")?.parse::<u32>().ok()?,
                    ))
                });
                let same = match (&k, &mo.result) {
                    (Ok(ids), Verdict::Allowed) => Some(*ids) == m_ids,
                    (k, v) => agree(k, v),
                };
                if !same {
                    report(format!("stat {mp}"), format!("{k:?}"), mo.to_string());
                }
                if f.dir {
                    continue;
                }
                for (read, write) in [(true, false), (false, true)] {
                    let flags = if write {
                        OFlags::WRONLY
                    } else {
                        OFlags::RDONLY
                    };
                    let k = p.open(&rp, flags).unwrap();
                    if let Ok(fd) = k {
                        p.close(fd).unwrap().unwrap();
                    }
                    let mo = world.op(
                        task,
                        &Op::Open {
                            path: mp.clone(),
                            read,
                            write,
                        },
                    );
                    out.compared += 1;
                    *out.outcomes.entry(outcome_name(&k)).or_default() += 1;
                    if !agree(&k, &mo.result) {
                        report(
                            format!("open {mp} {}", if write { "O_WRONLY" } else { "O_RDONLY" }),
                            kernel_str(&k),
                            mo.to_string(),
                        );
                    }
                }
            }
        }
        // Create through the idmapped mount; if both succeed, the on-disk owner must agree.
        let name = format!("new-c{i}");
        let mp = format!("{IDM}/d/{name}");
        let rp = real(&mp);
        let k = p
            .open(&rp, OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY)
            .unwrap();
        let mo = world.op(
            task,
            &Op::Create {
                path: mp.clone(),
                mode: 0o600,
                dir: false,
            },
        );
        out.compared += 1;
        *out.outcomes
            .entry(format!("create {}", outcome_name(&k)))
            .or_default() += 1;
        if !agree(&k, &mo.result) {
            report(format!("create {mp}"), kernel_str(&k), mo.to_string());
        } else if k.is_ok() {
            let md = std::fs::symlink_metadata(dir.join("d").join(&name)).unwrap();
            let (_, ino) = world
                .lookup_unchecked(&format!("{SRC}/case/d/{name}"))
                .unwrap();
            let mi = world.inode(ino);
            out.compared += 1;
            if (md.uid(), md.gid()) != (mi.uid.0, mi.gid.0) {
                report(
                    format!("create {mp}: on-disk owner"),
                    format!("{}:{}", md.uid(), md.gid()),
                    format!("{}:{}", mi.uid.0, mi.gid.0),
                );
            }
        }
    }
}

fn differential(kind: FsKind) {
    let test = format!("idmapped_{}", kind.name());
    if !needs_root(&test) {
        return;
    }
    if let Some(why) = kind.missing_tool() {
        if std::env::var("CREDNS_REQUIRE_ALL").as_deref() == Ok("1") {
            panic!("{test}: {why}, and CREDNS_REQUIRE_ALL=1 forbids skipping");
        }
        println!("{test}: skipped: {why}");
        return;
    }
    let s = announce_seed(&test);
    let mut rng = Rng::derive(s, &test);
    let fs = ScratchFs::new(kind);
    let mut out = Run {
        outcomes: Default::default(),
        compared: 0,
        mismatches: Vec::new(),
    };
    let cases = scaled(12);
    for n in 0..cases {
        let c = gen_case(&mut rng);
        run_case(kind, &fs, n, &c, &mut out);
    }
    println!(
        "{test}: {cases} cases, {} kernel/model comparisons, {} mismatches; kernel outcomes {:?}",
        out.compared,
        out.mismatches.len(),
        out.outcomes
    );
    assert!(
        out.compared > cases * 50,
        "too few comparisons: {}",
        out.compared
    );
    if !out.mismatches.is_empty() {
        for m in out.mismatches.iter().take(20) {
            println!("MISMATCH\n{m}");
        }
        panic!(
            "{test}: {} of {} comparisons disagree (first 20 printed above)",
            out.mismatches.len(),
            out.compared
        );
    }
}

#[test]
fn idmapped_tmpfs() {
    differential(FsKind::Tmpfs);
}

#[test]
fn idmapped_ext4() {
    differential(FsKind::Ext4);
}

#[test]
fn idmapped_btrfs() {
    differential(FsKind::Btrfs);
}

#[test]
fn idmapped_xfs() {
    differential(FsKind::Xfs);
}

/// overlayfs has its own `->permission` (it checks the upper or lower inode with the mounter's
/// credentials too): the model does not follow it and must say so rather than guess.
#[test]
fn overlayfs_is_unknown_to_the_model() {
    if !needs_root("overlayfs_is_unknown_to_the_model") {
        return;
    }
    // The kernel side: an overlay over an idmapped lower layer does answer.
    let lower_fs = ScratchFs::new(FsKind::Tmpfs);
    let f = lower_fs.root().join("f");
    std::fs::write(&f, "x").unwrap();
    std::os::unix::fs::lchown(&f, Some(5), Some(5)).unwrap();
    let lower = lower_fs.mount_point("lower");
    let m = IdMap::new(vec![Extent::new(0, 100_000, 65536)]).unwrap();
    let tree = DetachedMount::clone_tree(lower_fs.root(), false).unwrap();
    tree.set_idmap(&MappingUserns::new(&m, &m).unwrap())
        .unwrap();
    tree.attach(&lower).unwrap();
    let _gl = MountGuard(lower.clone());
    let up = lower_fs.mount_point("up");
    let (upper, work, merged) = (up.join("u"), up.join("w"), lower_fs.mount_point("merged"));
    std::fs::create_dir(&upper).unwrap();
    std::fs::create_dir(&work).unwrap();
    let _go = mount_overlay(&lower, &upper, &work, &merged);
    let real = std::fs::metadata(merged.join("f")).unwrap();
    assert_eq!((real.uid(), real.gid()), (100_005, 100_005));

    // The model side: the same file on an overlay superblock is Unknown, with the reason.
    let mut w = World::new();
    let init = w.init_ns();
    let root = w
        .add_superblock("root", "tmpfs", init, Kuid(0), Kgid(0), 0o755)
        .unwrap();
    w.add_mount("/", root, MountOptions::default()).unwrap();
    let ovl = w
        .add_superblock("ovl", "overlay", init, Kuid(0), Kgid(0), 0o755)
        .unwrap();
    w.add_mount("/merged", ovl, MountOptions::default())
        .unwrap();
    w.add_inode("/merged/f", false, Kuid(100_005), Kgid(100_005), 0o644)
        .unwrap();
    let t = w
        .add_task("p", Cred::new(init, Kuid(1000), Kgid(1000), CapSet::EMPTY))
        .unwrap();
    let o = w.op(
        t,
        &Op::Open {
            path: "/merged/f".into(),
            read: true,
            write: false,
        },
    );
    match &o.result {
        Verdict::Unknown(why) => assert!(why.contains("overlay"), "{why}"),
        other => panic!("the model answered {other} for a file on overlayfs"),
    }
    // And the model refuses to idmap an overlay mount, as the kernel does (EINVAL).
    let mapns = w.add_userns("m", init, Kuid(0), Kgid(0)).unwrap();
    w.set_uid_map(mapns, "0 100000 65536").unwrap();
    w.set_gid_map(mapns, "0 100000 65536").unwrap();
    let e = w
        .add_mount(
            "/merged2",
            ovl,
            MountOptions {
                idmap: Some(mapns),
                ..MountOptions::default()
            },
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "filesystem overlay does not support idmapped mounts (FS_ALLOW_IDMAP)"
    );
}
