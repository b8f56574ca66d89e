//! ID maps, differentially: every generated map is written to a fresh real user namespace and
//! judged by `credns_idmap::judge_write` with a context observed from the real processes; both
//! must accept, or both refuse with the same errno. Accepted maps are read back from several
//! namespaces and compared byte for byte with `IdMap::render_proc`. Translations (stat, getuid,
//! /proc/PID/status) through real nested namespaces are compared with `NsChain`/`translate`.
//!
//! Needs root: without it each test prints "skipped: needs root (...)", or panics when
//! CREDNS_REQUIRE_ALL=1. CREDNS_SEED replays a run (the seed is new each run and printed); CREDNS_CONFORMANCE_SCALE multiplies
//! the number of cases.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use credns_conformance::diff::Tally;
use credns_conformance::gen::{self, escape, Rng};
use credns_conformance::observe::{observe, WriteSetup, ALL_CAPS, CAP_SETFCAP};
use credns_conformance::{announce_seed, needs_root, scaled, Host};
use credns_idmap::{judge_write, munge, translate, AcceptedWrite, Extent, IdKind, IdMap, NsChain};
use credns_sys::{
    userns_ancestry, Actor, CapSets, Errno, Ids, Pid, ProcFs, ProcStatus, UnshareOptions,
    UsernsChild, WriteHow,
};

fn start(test: &str) -> Option<(Host, u64)> {
    if !needs_root(test) {
        return None;
    }
    let s = announce_seed(test);
    Some((Host::new(), s))
}

fn kind_name(kind: IdKind) -> &'static str {
    kind.file_name()
}

/// Write with `by`, after observing the context; compare; on acceptance, compare the map as the
/// host and as the target itself read it.
#[allow(clippy::too_many_arguments)]
fn write_and_compare(
    tally: &mut Tally,
    host: &Host,
    case: &str,
    target: &UsernsChild,
    parent_proc: Pid,
    by: Actor<'_>,
    kind: IdKind,
    text: &[u8],
    how: WriteHow,
) -> Option<AcceptedWrite> {
    let offset = match how {
        WriteHow::Write => 0,
        WriteHow::SeekThenWrite(o) | WriteHow::Pwrite(o) => o,
    };
    let setup = WriteSetup {
        kind,
        target: target.pid(),
        creator_caps: target.creator_caps(),
        parent_proc,
        opener: by.pid(),
        writer: by.pid(),
        offset,
    };
    let obs = match observe(&host.fs, &setup) {
        Ok(o) => o,
        Err(e) => {
            tally.fail(format!("{case}: observing the context failed: {e}"));
            return None;
        }
    };
    let kernel = match by.write_file(&target.map_path(kind), text, how) {
        Ok(r) => r.map(|_| ()),
        Err(e) => {
            tally.fail(format!("{case}: the write could not be made: {e}"));
            return None;
        }
    };
    let library = judge_write(&obs.ctx, text);
    let accepted = tally.write(case, text, &obs.ctx, kernel, library)?;
    check_views(
        tally,
        host,
        case,
        target,
        kind,
        text,
        &accepted,
        &obs.ctx.parent_map,
    );
    Some(accepted)
}

/// The map as the host reads it and as the namespace's own process reads it.
#[allow(clippy::too_many_arguments)]
fn check_views(
    tally: &mut Tally,
    host: &Host,
    case: &str,
    target: &UsernsChild,
    kind: IdKind,
    text: &[u8],
    accepted: &AcceptedWrite,
    parent_map: &IdMap,
) {
    let name = kind_name(kind);
    match host.fs.read_map_text(target.pid(), kind) {
        Ok(got) => {
            let want = accepted.kernel.render_proc(host.map(kind));
            if host.is_initial() {
                // From the initial namespace the rendering is the kernel map itself.
                tally.view(
                    case,
                    &format!("{name} read by the host: to_proc_format"),
                    text,
                    &got,
                    &accepted.kernel.to_proc_format(),
                );
            }
            tally.view(case, &format!("{name} read by the host"), text, &got, &want);
        }
        Err(e) => tally.fail(format!("{case}: host read of {name}: {e}")),
    }
    match target.read_file(&target.map_path(kind)) {
        Ok(Ok(bytes)) => {
            let got = String::from_utf8_lossy(&bytes).into_owned();
            let want = accepted.kernel.render_proc(parent_map);
            tally.view(
                case,
                &format!("{name} read from inside the namespace (parent's numbering)"),
                text,
                &got,
                &want,
            );
        }
        Ok(Err(e)) => tally.fail(format!("{case}: inside read of {name}: {e}")),
        Err(e) => tally.fail(format!("{case}: inside read of {name}: {e}")),
    }
}

fn spawn(opts: &UnshareOptions) -> UsernsChild {
    UsernsChild::spawn(opts).unwrap_or_else(|e| panic!("spawning a helper: {e}"))
}

/// Host root writes the uid_map and gid_map of children of the initial namespace.
#[test]
fn host_root_writes_child_maps() {
    let Some((host, seed)) = start("host_root_writes_child_maps") else {
        return;
    };
    let mut rng = Rng::derive(seed, "host");
    let mut tally =
        Tally::new("host root writes a child's uid_map/gid_map (parent = initial namespace)");
    // Fixed edge cases first, each in a fresh namespace, uid and gid.
    for (text, note) in gen::edge_cases() {
        for kind in [IdKind::Uid, IdKind::Gid] {
            let child = spawn(&UnshareOptions::new());
            let case = format!("edge {kind}: {note}");
            write_and_compare(
                &mut tally,
                &host,
                &case,
                &child,
                host.pid,
                Actor::Caller,
                kind,
                &text,
                WriteHow::Write,
            );
            tally.classify(&format!("edge: {note}"));
        }
    }
    let children = scaled(620);
    for i in 0..children {
        let child = spawn(&UnshareOptions::new());
        for kind in [IdKind::Uid, IdKind::Gid] {
            let (text, note) = gen::generic_text(&mut rng);
            let how = match rng.below(40) {
                0 => WriteHow::SeekThenWrite(rng.pick(&[1, 2, 10, 4095, 4096, 1 << 20])),
                _ => WriteHow::Write,
            };
            let case = format!("#{i} {kind} {note} {how:?}");
            let accepted = write_and_compare(
                &mut tally,
                &host,
                &case,
                &child,
                host.pid,
                Actor::Caller,
                kind,
                &text,
                how,
            );
            tally.classify(&random_class(&note, how));
            // A second write, by a fresh open: the map is written once.
            if accepted.is_some() && rng.chance(1, 6) {
                let (text2, note2) = gen::generic_text(&mut rng);
                let case = format!("#{i} {kind} second write by a fresh open: {note2}");
                write_and_compare(
                    &mut tally,
                    &host,
                    &case,
                    &child,
                    host.pid,
                    Actor::Caller,
                    kind,
                    &text2,
                    WriteHow::Write,
                );
                tally.classify("second write by a fresh open");
            }
        }
        // Half of the time the helper also reports its ids, as the maps now make them look.
        if i % 2 == 0 {
            check_ids_inside(
                &mut tally,
                &host,
                &format!("#{i}"),
                &child,
                &NsChain::init(),
                &NsChain::init(),
            );
        }
    }
    // The initial namespace's own map (W0: no parent).
    let me_child = spawn(&UnshareOptions {
        new_userns: false,
        ..UnshareOptions::new()
    });
    for text in [&b"0 0 1\n"[..], b"0 0 4294967295\n"] {
        for kind in [IdKind::Uid, IdKind::Gid] {
            let setup = WriteSetup {
                kind,
                target: me_child.pid(),
                creator_caps: me_child.creator_caps(),
                parent_proc: me_child.pid(),
                opener: host.pid,
                writer: host.pid,
                offset: 0,
            };
            let obs = observe(&host.fs, &setup).expect("observe");
            let kernel = Actor::Caller
                .write_file(&me_child.map_path(kind), text, WriteHow::Write)
                .unwrap()
                .map(|_| ());
            tally.write(
                "the initial namespace's own map",
                text,
                &obs.ctx,
                kernel,
                judge_write(&obs.ctx, text),
            );
        }
    }
    tally.finish();
}

/// A coarse class of a generated case, for the coverage table.
fn random_class(note: &str, how: WriteHow) -> String {
    if how != WriteHow::Write {
        return "random: lseek to a non-zero offset first".to_string();
    }
    let n: Option<usize> = note.split(' ').next().and_then(|w| w.parse().ok());
    let mutated = note.split("; ").count() > 1;
    let bucket = match n {
        None => return format!("random special: {note}"),
        Some(n @ (1 | 5 | 6 | 339 | 340 | 341)) => format!("{n} extents"),
        Some(2..=4) => "2-4 extents".to_string(),
        Some(7..=100) => "7-100 extents".to_string(),
        Some(_) => "101-338 extents".to_string(),
    };
    format!("random: {bucket}{}", if mutated { ", mutated" } else { "" })
}

/// Check getresuid/getresgid inside: the helper's kernel ids (read by the host) translated into
/// its namespace. `uid_chain`/`gid_chain` are the helper's namespace chains; when they are
/// `init()` the chains are read from the host.
fn check_ids_inside(
    tally: &mut Tally,
    host: &Host,
    case: &str,
    child: &UsernsChild,
    uid_chain: &NsChain,
    gid_chain: &NsChain,
) {
    let (uc, gc) = if uid_chain.level() == 0 {
        let um = host
            .fs
            .read_map(child.pid(), IdKind::Uid)
            .unwrap_or_default();
        let gm = host
            .fs
            .read_map(child.pid(), IdKind::Gid)
            .unwrap_or_default();
        (NsChain::from_kernel([um]), NsChain::from_kernel([gm]))
    } else {
        (uid_chain.clone(), gid_chain.clone())
    };
    let st = match host.fs.status(child.pid()) {
        Ok(s) => s,
        Err(e) => return tally.fail(format!("{case}: status: {e}")),
    };
    let ids = match child.ids() {
        Ok(i) => i,
        Err(e) => return tally.fail(format!("{case}: ids: {e}")),
    };
    let want_u: Vec<u32> = st.uid[..3]
        .iter()
        .map(|&k| munge(uc.from_kernel_id(k)))
        .collect();
    let want_g: Vec<u32> = st.gid[..3]
        .iter()
        .map(|&k| munge(gc.from_kernel_id(k)))
        .collect();
    tally.view(
        case,
        "getresuid inside",
        b"",
        &format!("{:?}", ids.uid),
        &format!("{want_u:?}"),
    );
    tally.view(
        case,
        "getresgid inside",
        b"",
        &format!("{:?}", ids.gid),
        &format!("{want_g:?}"),
    );
    let want_groups: Vec<u32> = st
        .groups
        .iter()
        .map(|&k| munge(gc.from_kernel_id(k)))
        .collect();
    tally.view(
        case,
        "getgroups inside",
        b"",
        &format!("{:?}", ids.groups),
        &format!("{want_groups:?}"),
    );
}

/// A level-1 map with several extents: upper ranges mostly contiguous from 0 (so a range of
/// level-1 ids can cross from one extent into the next while every id is mapped), lower ranges
/// scattered and disjoint.
fn level1_map(rng: &mut Rng) -> Vec<Extent> {
    let n = rng.pick(&[2usize, 3, 4, 5, 6, 7, 9]);
    let counts: Vec<u32> = (0..n)
        .map(|_| {
            if rng.chance(1, 5) {
                1
            } else {
                rng.range(2, 5000) as u32
            }
        })
        .collect();
    let mut first = 0u32;
    let mut ext = Vec::new();
    let mut lowers: Vec<u32> = Vec::new();
    for (k, &c) in counts.iter().enumerate() {
        if k > 0 && rng.chance(1, 4) {
            first += rng.range(1, 100) as u32; // a gap
        }
        // Disjoint lower ranges: slots of 2^20 ids, each used once, from 2^20 up.
        let slot = loop {
            let s = rng.range(1, 4000) as u32;
            if !lowers.contains(&s) {
                break s;
            }
        };
        lowers.push(slot);
        let lower = slot * (1 << 20) + rng.below(1000) as u32;
        ext.push(Extent::new(first, lower, c));
        first += c;
    }
    rng.shuffle(&mut ext);
    ext
}

/// A map for a level-2 namespace, lower ids in level 1's numbering: ranges inside one level-1
/// extent, crossing into a contiguous neighbour, partly or wholly unmapped, or whole extents.
fn nested_text(rng: &mut Rng, parent: &IdMap) -> (Vec<u8>, String) {
    if rng.chance(1, 12) {
        return gen::generic_text(rng);
    }
    let sorted = parent.sorted().to_vec();
    let n = match rng.below(10) {
        0..=4 => 1,
        5..=7 => rng.range(2, 5) as usize,
        _ => rng.range(6, 12) as usize,
    };
    let mut ext: Vec<Extent> = Vec::new();
    let mut notes = Vec::new();
    let mut upper = if rng.chance(1, 2) {
        0
    } else {
        rng.below(100_000) as u32
    };
    for _ in 0..n {
        let mut tries = 0;
        loop {
            tries += 1;
            let pi = rng.below(sorted.len() as u64) as usize;
            let p = sorted[pi];
            let next = sorted
                .get(pi + 1)
                .copied()
                .filter(|q| q.first as u64 == p.upper_last() + 1);
            let (lower, count, note) = match rng.below(7) {
                0 | 1 => {
                    let off = rng.below(p.count as u64) as u32;
                    let len = rng.range(1, (p.count - off) as u64) as u32;
                    (p.first + off, len, "inside one parent extent")
                }
                2 => (p.first, p.count, "a whole parent extent"),
                3 if next.is_some() => {
                    let q = next.unwrap_or(p);
                    let back = rng.range(1, p.count as u64) as u32;
                    let fwd = rng.range(1, q.count as u64) as u32;
                    (
                        p.first + p.count - back,
                        back + fwd,
                        "crosses into the contiguous next parent extent",
                    )
                }
                4 => {
                    // Start inside, run past the end of p (into a gap or a neighbour).
                    let back = rng.range(1, p.count as u64) as u32;
                    (
                        p.first + p.count - back,
                        back + rng.range(1, 200) as u32,
                        "runs past a parent extent",
                    )
                }
                5 if p.first > 0 => {
                    let before = rng.range(1, p.first.min(50) as u64) as u32;
                    (
                        p.first - before,
                        before + rng.range(1, p.count as u64) as u32,
                        "starts before a parent extent",
                    )
                }
                _ => {
                    let last = sorted.last().map(|e| e.upper_last()).unwrap_or(0) as u32;
                    (
                        last + 1 + rng.below(1000) as u32,
                        rng.range(1, 10) as u32,
                        "outside every parent extent",
                    )
                }
            };
            // Keep the lower ranges apart (overlaps are the generic cases' business) unless
            // retrying does not help.
            let overlaps = ext.iter().any(|e| {
                let (a0, a1) = (lower as u64, lower as u64 + count as u64 - 1);
                a0 <= e.lower_last() && e.lower_first as u64 <= a1
            });
            if overlaps && tries < 8 {
                continue;
            }
            ext.push(Extent::new(upper, lower, count));
            notes.push(note);
            upper = upper.wrapping_add(count).wrapping_add(if rng.chance(1, 2) {
                0
            } else {
                rng.below(10) as u32
            });
            break;
        }
    }
    if rng.chance(1, 6) {
        notes.push(gen::mutate_extents(rng, &mut ext));
    }
    let st = gen::style(rng);
    let mut text = gen::render(rng, &ext, &st);
    if rng.chance(1, 10) {
        notes.push(gen::mutate_text(rng, &mut text));
    }
    (text, notes.join("; "))
}

/// A coarse class of a nested case: single-extent cases by their lower-range kind.
fn nested_class(note: &str) -> String {
    let parts: Vec<&str> = note.split("; ").collect();
    if parts.len() == 1 && !parts[0].contains("extents") {
        format!("one extent, lower range {}", parts[0])
    } else if parts[0].contains("extents") {
        "generic (parent-agnostic) map".to_string()
    } else {
        let crossing = parts.iter().any(|p| p.contains("crosses"));
        let bucket = match parts.len() {
            2..=5 => "2-5 extents (or mutated)",
            _ => "6+ extents (or mutated)",
        };
        format!(
            "{bucket}{}",
            if crossing {
                ", one crossing into the next parent extent"
            } else {
                ""
            }
        )
    }
}

/// A sibling namespace's map that sees part of level 1's kernel ids: it maps half of a random
/// level-1 extent's lower range, plus a small unrelated range.
fn sibling_map(rng: &mut Rng, l1_kernel: &IdMap) -> Vec<Extent> {
    let e = l1_kernel.extents()[rng.below(l1_kernel.len() as u64) as usize];
    let half = (e.count / 2).max(1);
    vec![
        Extent::new(0, e.lower_first, half),
        Extent::new(half + 10, 5000, 100),
    ]
}

/// Level 1 (root inside, every capability there, a multi-extent map) writes its child's maps.
#[test]
fn level1_writes_nested_maps() {
    let Some((host, seed)) = start("level1_writes_nested_maps") else {
        return;
    };
    let mut rng = Rng::derive(seed, "nested");
    let mut tally = Tally::new(
        "level-1 root (multi-extent map, full caps) writes a level-2 child's uid_map/gid_map",
    );
    let mut setup_tally = Tally::new("host root writes level-1 and sibling maps (nested setup)");
    let groups = scaled(10);
    let per_group = 32;
    for g in 0..groups {
        let l1 = spawn(&UnshareOptions::new());
        for kind in [IdKind::Uid, IdKind::Gid] {
            let text = gen::plain(&level1_map(&mut rng));
            let a = write_and_compare(
                &mut setup_tally,
                &host,
                &format!("group {g} level 1 {kind}"),
                &l1,
                host.pid,
                Actor::Caller,
                kind,
                &text,
                WriteHow::Write,
            );
            assert!(
                a.is_some(),
                "level-1 {kind} map {} was not accepted",
                escape(&text)
            );
        }
        let l1_uid = host
            .fs
            .read_map(l1.pid(), IdKind::Uid)
            .expect("level-1 uid map");
        let sib = spawn(&UnshareOptions::new());
        for kind in [IdKind::Uid, IdKind::Gid] {
            let l1k = host.fs.read_map(l1.pid(), kind).expect("level-1 map");
            let text = gen::plain(&sibling_map(&mut rng, &l1k));
            write_and_compare(
                &mut setup_tally,
                &host,
                &format!("group {g} sibling {kind}"),
                &sib,
                host.pid,
                Actor::Caller,
                kind,
                &text,
                WriteHow::Write,
            );
        }
        // Become root inside level 1 (the map puts uid 0 and gid 0 in the first extent).
        let become_root = l1
            .set_ids(&Ids {
                uid: 0,
                gid: 0,
                groups: Some(Vec::new()),
            })
            .expect("set_ids");
        assert_eq!(
            become_root,
            Ok(()),
            "level 1 could not become root inside; uid map {l1_uid:?}"
        );
        for c in 0..per_group {
            let l2 = l1
                .spawn_child(&UnshareOptions::new())
                .expect("nested helper");
            for kind in [IdKind::Uid, IdKind::Gid] {
                let l1k = host.fs.read_map(l1.pid(), kind).expect("level-1 map");
                let (text, note) = nested_text(&mut rng, &l1k);
                let case = format!("group {g} #{c} {kind} {note}");
                let accepted = write_and_compare(
                    &mut tally,
                    &host,
                    &case,
                    &l2,
                    l1.pid(),
                    Actor::Process(&l1),
                    kind,
                    &text,
                    WriteHow::Write,
                );
                tally.classify(&nested_class(&note));
                let Some(a) = accepted else {
                    continue;
                };
                // Level 1 (an ancestor) and the sibling read the map too.
                let name = kind_name(kind);
                let sibk = host.fs.read_map(sib.pid(), kind).expect("sibling map");
                for (who, reader, viewer) in [
                    ("level 1", &l1, &l1k),
                    ("a sibling of level 1", &sib, &sibk),
                ] {
                    match reader.read_file(&l2.map_path(kind)) {
                        Ok(Ok(b)) => tally.view(
                            &case,
                            &format!("{name} read by {who}"),
                            &text,
                            &String::from_utf8_lossy(&b),
                            &a.kernel.render_proc(viewer),
                        ),
                        other => tally.fail(format!("{case}: {who} reading {name}: {other:?}")),
                    }
                }
            }
        }
        // Host root is neither in a level-2 namespace nor in its parent (level 1): W0 refuses
        // even host root. (A sibling of level 1 cannot even open the file: it is owned by an
        // id the sibling does not map, so open(2) fails with EACCES before map_write runs.)
        for kind in [IdKind::Uid, IdKind::Gid] {
            let l2 = l1
                .spawn_child(&UnshareOptions::new())
                .expect("nested helper");
            let (text, note) = nested_text(
                &mut rng,
                &host.fs.read_map(l1.pid(), kind).expect("level-1 map"),
            );
            let case =
                format!("group {g} host root writes a level-2 (grandchild) {kind} map: {note}");
            write_and_compare(
                &mut tally,
                &host,
                &case,
                &l2,
                l1.pid(),
                Actor::Caller,
                kind,
                &text,
                WriteHow::Write,
            );
            tally.classify("host root writes a grandchild's map (opener in neither the namespace nor its parent)");
            sibling_writes(&mut tally, &host, &case, &sib, &l1, &l2, kind);
        }
    }
    setup_tally.finish();
    tally.finish();
}

/// A sibling of level 1 (root in its own namespace) opens a level-2 map file for writing and,
/// if it can, writes it. Opening is `open(2)`'s permission check, which the library does not
/// model: the file belongs to the level-2 process's euid and egid, mode 0644, so the sibling
/// may open it for writing only through CAP_DAC_OVERRIDE in its namespace, which counts only
/// when both owner ids are mapped there (`capable_wrt_inode_uidgid`). If it opens it, map_write
/// refuses (the opener is in neither the namespace nor its parent) and that is compared with
/// the library.
fn sibling_writes(
    tally: &mut Tally,
    host: &Host,
    case: &str,
    sib: &UsernsChild,
    l1: &UsernsChild,
    l2: &UsernsChild,
    kind: IdKind,
) {
    use std::os::unix::fs::MetadataExt;
    let path = l2.map_path(kind);
    let meta = std::fs::metadata(&path).expect("stat map file");
    let sib_uid = host
        .fs
        .read_map(sib.pid(), IdKind::Uid)
        .expect("sibling uid map");
    let sib_gid = host
        .fs
        .read_map(sib.pid(), IdKind::Gid)
        .expect("sibling gid map");
    let dac_override = sib_uid.map_up(meta.uid()).is_some() && sib_gid.map_up(meta.gid()).is_some();
    let opened = sib
        .open(&path, credns_sys::OFlags::WRONLY)
        .expect("sibling open");
    let want_open = if dac_override {
        "ok"
    } else {
        "EACCES (Permission denied)"
    };
    let got_open = credns_conformance::diff::kernel_display(&opened.map(|_| ()));
    tally.view(
        case,
        "a sibling of level 1 opening the level-2 map for writing (open(2))",
        b"",
        &got_open,
        want_open,
    );
    let Ok(fd) = opened else {
        tally.classify_outcome(
            "a sibling of level 1 opens a level-2 map",
            "EACCES at open(2)",
        );
        return;
    };
    let text = b"0 0 1\n";
    let setup = WriteSetup {
        kind,
        target: l2.pid(),
        creator_caps: l2.creator_caps(),
        parent_proc: l1.pid(),
        opener: sib.pid(),
        writer: sib.pid(),
        offset: 0,
    };
    let obs = observe(&host.fs, &setup).expect("observe");
    let kernel = sib
        .write(fd, text, WriteHow::Write)
        .expect("sibling write")
        .map(|_| ());
    sib.close(fd).expect("close").expect("close");
    tally.write(case, text, &obs.ctx, kernel, judge_write(&obs.ctx, text));
    tally.classify("a sibling of level 1 opens a level-2 map and writes it");
}

/// A map for a process that dropped to `id` and writes its own map: mostly the one allowed
/// shape (one extent, count 1, its own id), and its near misses.
fn unprivileged_text(rng: &mut Rng, id: u32) -> (Vec<u8>, String) {
    let first = match rng.below(5) {
        0 => 0,
        1 => id,
        2 => u32::MAX - 1,
        3 => u32::MAX,
        _ => rng.next_u64() as u32,
    };
    let (ext, note): (Vec<Extent>, &str) = match rng.below(14) {
        0..=4 => (vec![Extent::new(first, id, 1)], "own id, count 1"),
        5 => (vec![Extent::new(first, id - 1, 1)], "id - 1"),
        6 => (vec![Extent::new(first, id + 1, 1)], "id + 1"),
        7 => (vec![Extent::new(first, 0, 1)], "parent id 0"),
        8 => (vec![Extent::new(first, id, 2)], "count 2"),
        9 => (vec![Extent::new(first, id, 0)], "count 0"),
        10 => (
            vec![
                Extent::new(first, id, 1),
                Extent::new(first.wrapping_add(1), id + 1, 1),
            ],
            "two extents",
        ),
        11 => (
            vec![Extent::new(first, id - 5, 10)],
            "a range around its id",
        ),
        12 => (vec![Extent::new(first, 65534, 1)], "the overflow id"),
        _ => return gen::generic_text(rng),
    };
    let st = gen::style(rng);
    let mut text = gen::render(rng, &ext, &st);
    let mut note = note.to_string();
    if rng.chance(1, 8) {
        note = format!("{note}; {}", gen::mutate_text(rng, &mut text));
    }
    (text, note)
}

/// An unprivileged process (uid/gid 1000, no capabilities) creates a namespace and writes its
/// own uid_map, gid_map (with and without "deny" to setgroups first) and projid_map.
#[test]
fn unprivileged_writes_own_maps() {
    let Some((host, seed)) = start("unprivileged_writes_own_maps") else {
        return;
    };
    let mut rng = Rng::derive(seed, "unprivileged");
    let mut uid_tally = Tally::new("unprivileged (uid 1000, no caps) writes its own uid_map");
    let mut gid_tally =
        Tally::new("unprivileged (gid 1000, no caps) writes its own gid_map, setgroups allow/deny");
    let mut projid_tally = Tally::new("unprivileged writes its own projid_map");
    let n = scaled(260);
    for i in 0..n {
        let child = spawn(&UnshareOptions::unprivileged(1000, 1000));
        let me = Actor::Process(&child);
        let (text, note) = unprivileged_text(&mut rng, 1000);
        write_and_compare(
            &mut uid_tally,
            &host,
            &format!("#{i} {note}"),
            &child,
            host.pid,
            me,
            IdKind::Uid,
            &text,
            WriteHow::Write,
        );
        uid_tally.classify(note.split("; ").next().unwrap_or(""));
        let deny = i % 2 == 0;
        if deny {
            let r = child.write_setgroups(me, b"deny").expect("write setgroups");
            assert_eq!(r, Ok(()), "writing deny to its own setgroups");
        }
        let (text, note) = unprivileged_text(&mut rng, 1000);
        let case = format!(
            "#{i} setgroups {} {note}",
            if deny { "deny" } else { "allow" }
        );
        write_and_compare(
            &mut gid_tally,
            &host,
            &case,
            &child,
            host.pid,
            me,
            IdKind::Gid,
            &text,
            WriteHow::Write,
        );
        gid_tally.classify(&format!(
            "setgroups {}: {}",
            if deny { "deny" } else { "allow" },
            note.split("; ").next().unwrap_or("")
        ));
        let (text, note) = gen::generic_text(&mut rng);
        write_and_compare(
            &mut projid_tally,
            &host,
            &format!("#{i} {note}"),
            &child,
            host.pid,
            me,
            IdKind::Projid,
            &text,
            WriteHow::Write,
        );
        if i % 4 == 0 {
            check_ids_inside(
                &mut uid_tally,
                &host,
                &format!("#{i} ids"),
                &child,
                &NsChain::init(),
                &NsChain::init(),
            );
        }
    }
    uid_tally.finish();
    gid_tally.finish();
    projid_tally.finish();
}

/// Mapping parent uid 0 needs CAP_SETFCAP: in one's own namespace, the creator must have had it
/// in its effective set when it unshared; from the parent, the opener must have it there.
#[test]
fn mapping_parent_root_needs_setfcap() {
    let Some((host, seed)) = start("mapping_parent_root_needs_setfcap") else {
        return;
    };
    let mut rng = Rng::derive(seed, "setfcap");
    let mut own = Tally::new("root creator with/without CAP_SETFCAP writes its own uid_map");
    let mut from_parent = Tally::new("a root opener without CAP_SETFCAP writes a child's uid_map");
    // The test process's own capabilities (this VM's root may lack some, e.g. CAP_SYS_RESOURCE).
    let all = host.fs.status(host.pid).expect("own status").cap_prm & ALL_CAPS;
    let no_setfcap = all & !(1 << CAP_SETFCAP);
    let variants = [
        (
            "every capability",
            CapSets {
                effective: all,
                permitted: all,
                inheritable: 0,
            },
        ),
        (
            "CAP_SETFCAP permitted, not effective",
            CapSets {
                effective: no_setfcap,
                permitted: all,
                inheritable: 0,
            },
        ),
        (
            "no CAP_SETFCAP",
            CapSets {
                effective: no_setfcap,
                permitted: no_setfcap,
                inheritable: 0,
            },
        ),
        (
            "only CAP_SETFCAP",
            CapSets {
                effective: 1 << CAP_SETFCAP,
                permitted: 1 << CAP_SETFCAP,
                inheritable: 0,
            },
        ),
    ];
    let texts = |rng: &mut Rng| -> (Vec<u8>, String) {
        let f = rng.below(100_000) as u32;
        match rng.below(8) {
            0 => (b"0 0 1\n".to_vec(), "0 0 1".into()),
            1 => (
                format!("{f} 0 1\n").into_bytes(),
                "parent 0, count 1".into(),
            ),
            2 => (b"0 0 2\n".to_vec(), "parent 0, count 2".into()),
            3 => (format!("{f} 1 1\n").into_bytes(), "parent 1".into()),
            4 => (
                format!("{f} 5 1\n{} 0 1\n", f + 1).into_bytes(),
                "parent 0 in the second extent".into(),
            ),
            5 => (b"0 0 4294967295\n".to_vec(), "everything".into()),
            6 => (
                format!("{f} 100000 1000\n").into_bytes(),
                "a range not holding 0".into(),
            ),
            _ => gen::generic_text(rng),
        }
    };
    for i in 0..scaled(120) {
        let (vname, caps) = variants[i % variants.len()];
        let child = spawn(&UnshareOptions {
            caps: Some(caps),
            ..UnshareOptions::new()
        });
        let (text, note) = texts(&mut rng);
        let case = format!("#{i} creator: {vname}; {note}");
        write_and_compare(
            &mut own,
            &host,
            &case,
            &child,
            host.pid,
            Actor::Process(&child),
            IdKind::Uid,
            &text,
            WriteHow::Write,
        );
        own.classify(&format!(
            "creator {vname}: {}",
            if note.contains("extents") {
                "generic map"
            } else {
                note.as_str()
            }
        ));
    }
    for (vname, caps) in variants {
        // A root process in the initial namespace with these capabilities writes the map of a
        // child namespace created by host root.
        let opener = spawn(&UnshareOptions {
            caps: Some(caps),
            new_userns: false,
            ..UnshareOptions::new()
        });
        for i in 0..scaled(20) {
            let child = spawn(&UnshareOptions::new());
            let (text, note) = texts(&mut rng);
            let case = format!("#{i} opener: {vname}; {note}");
            write_and_compare(
                &mut from_parent,
                &host,
                &case,
                &child,
                host.pid,
                Actor::Process(&opener),
                IdKind::Uid,
                &text,
                WriteHow::Write,
            );
            from_parent.classify(&format!(
                "opener {vname}: {}",
                if note.contains("extents") {
                    "generic map"
                } else {
                    note.as_str()
                }
            ));
        }
    }
    own.finish();
    from_parent.finish();
}

/// An opener in the parent namespace that can open the file (root with CAP_DAC_OVERRIDE) but
/// has no CAP_SYS_ADMIN over the target (not its owner, CAP_SYS_ADMIN dropped): uid and gid
/// maps are refused before they are parsed; projid maps have no such check.
#[test]
fn opener_without_cap_sys_admin() {
    let Some((host, seed)) = start("opener_without_cap_sys_admin") else {
        return;
    };
    let mut rng = Rng::derive(seed, "no-sys-admin");
    let mut tally = Tally::new("root opener in the parent without CAP_SYS_ADMIN over the target");
    let all = host.fs.status(host.pid).expect("own status").cap_prm & ALL_CAPS;
    let no_admin = all & !(1 << credns_conformance::observe::CAP_SYS_ADMIN);
    let opener = spawn(&UnshareOptions {
        caps: Some(CapSets {
            effective: no_admin,
            permitted: no_admin,
            inheritable: 0,
        }),
        new_userns: false,
        ..UnshareOptions::new()
    });
    for i in 0..scaled(30) {
        // Owned by uid 1000, so root's euid is not the owner.
        let child = spawn(&UnshareOptions::unprivileged(1000, 1000));
        for kind in [IdKind::Uid, IdKind::Gid, IdKind::Projid] {
            let (text, note) = gen::generic_text(&mut rng);
            let case = format!("#{i} {kind}: {note}");
            write_and_compare(
                &mut tally,
                &host,
                &case,
                &child,
                host.pid,
                Actor::Process(&opener),
                kind,
                &text,
                WriteHow::Write,
            );
            tally.classify(&format!("{kind}"));
        }
    }
    tally.finish();
}

/// The opener and the writer differ (the fd is passed): map_write checks the opener's
/// capabilities (file_ns_capable) and the writer's (ns_capable) separately.
#[test]
fn opener_and_writer_differ() {
    let Some((host, seed)) = start("opener_and_writer_differ") else {
        return;
    };
    let mut rng = Rng::derive(seed, "split");
    let mut tally = Tally::new("opener and writer differ (fd passed between processes)");
    for i in 0..scaled(40) {
        let child = spawn(&UnshareOptions::unprivileged(1000, 1000));
        let kind = if i % 2 == 0 { IdKind::Uid } else { IdKind::Gid };
        if kind == IdKind::Gid && rng.chance(1, 2) {
            assert_eq!(
                child
                    .write_setgroups(Actor::Process(&child), b"deny")
                    .unwrap(),
                Ok(())
            );
        }
        let (text, note) = if rng.chance(1, 2) {
            unprivileged_text(&mut rng, 1000)
        } else {
            gen::generic_text(&mut rng)
        };
        let path = child.map_path(kind);
        // (a) the unprivileged child opens its own map; host root writes through that fd.
        // (b) host root opens the map; the unprivileged child writes through that fd.
        let (opener, writer, kernel) = if i % 4 < 2 {
            let fd = child
                .open(&path, credns_sys::OFlags::WRONLY)
                .unwrap()
                .expect("child opens its own map");
            let local = child.fetch_fd(fd).unwrap();
            child.close(fd).unwrap().unwrap();
            (child.pid(), host.pid, Some(local))
        } else {
            (host.pid, child.pid(), None)
        };
        let setup = WriteSetup {
            kind,
            target: child.pid(),
            creator_caps: child.creator_caps(),
            parent_proc: host.pid,
            opener,
            writer,
            offset: 0,
        };
        let obs = observe(&host.fs, &setup).expect("observe");
        let result = match kernel {
            Some(fd) => credns_sys::write_fd(fd.as_fd(), &text, WriteHow::Write).map(|_| ()),
            None => {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .expect("host opens the map");
                let remote = child.install_fd(f.as_fd()).unwrap();
                drop(f);
                let r = child
                    .write(remote, &text, WriteHow::Write)
                    .unwrap()
                    .map(|_| ());
                child.close(remote).unwrap().unwrap();
                r
            }
        };
        let case = format!("#{i} {kind} opener pid {opener} writer pid {writer}: {note}");
        let accepted = tally.write(&case, &text, &obs.ctx, result, judge_write(&obs.ctx, &text));
        let direction = if opener == child.pid() {
            "unprivileged opener, root writer"
        } else {
            "root opener, unprivileged writer"
        };
        tally.classify(&format!(
            "{kind} {direction}: {}",
            note.split("; ").next().unwrap_or("")
        ));
        if let Some(a) = accepted {
            check_views(
                &mut tally,
                &host,
                &case,
                &child,
                kind,
                &text,
                &a,
                &obs.ctx.parent_map,
            );
        }
    }
    tally.finish();
}

/// Writes at a non-zero offset, a second write on the same fd, and pwrite.
#[test]
fn offsets_and_second_writes() {
    let Some((host, seed)) = start("offsets_and_second_writes") else {
        return;
    };
    let mut rng = Rng::derive(seed, "offsets");
    let mut tally = Tally::new("second write on the same fd; lseek to a non-zero offset");
    let mut pwrite = Tally::new("pwrite(2) on a map file");
    for i in 0..scaled(60) {
        let child = spawn(&UnshareOptions::new());
        let kind = if i % 2 == 0 { IdKind::Uid } else { IdKind::Gid };
        let path = child.map_path(kind);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open map");
        let mut offset = 0u64;
        for round in 0..3 {
            let (text, note) = if round == 0 && rng.chance(3, 4) {
                (
                    format!("0 {} {}\n", rng.range(1, 1 << 30), rng.range(1, 1 << 16)).into_bytes(),
                    "valid one-extent map".to_string(),
                )
            } else {
                gen::generic_text(&mut rng)
            };
            let setup = WriteSetup {
                kind,
                target: child.pid(),
                creator_caps: child.creator_caps(),
                parent_proc: host.pid,
                opener: host.pid,
                writer: host.pid,
                offset,
            };
            let obs = observe(&host.fs, &setup).expect("observe");
            let kernel = credns_sys::write_fd(f.as_fd(), &text, WriteHow::Write);
            let case = format!("#{i} {kind} write {round} on one fd (offset {offset}): {note}");
            if let Ok(n) = kernel {
                offset += n as u64;
            }
            let accepted = tally.write(
                &case,
                &text,
                &obs.ctx,
                kernel.map(|_| ()),
                judge_write(&obs.ctx, &text),
            );
            tally.classify(&format!(
                "write {round} on one fd{}",
                if round == 0 {
                    ""
                } else {
                    " (offset = bytes accepted so far)"
                }
            ));
            if let Some(a) = accepted {
                check_views(
                    &mut tally,
                    &host,
                    &case,
                    &child,
                    kind,
                    &text,
                    &a,
                    &obs.ctx.parent_map,
                );
            }
        }
        // lseek (checked on its own, so its failure cannot pass for map_write's), then write.
        let child = spawn(&UnshareOptions::new());
        let off = rng.pick(&[0u64, 1, 5, 4095, 4096, 1 << 32]);
        let text = b"0 1000 10\n".to_vec();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(child.map_path(kind))
            .expect("open map");
        let pos = std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(off))
            .expect("lseek on a map file");
        assert_eq!(pos, off);
        let setup = WriteSetup {
            kind,
            target: child.pid(),
            creator_caps: child.creator_caps(),
            parent_proc: host.pid,
            opener: host.pid,
            writer: host.pid,
            offset: off,
        };
        let obs = observe(&host.fs, &setup).expect("observe");
        let kernel = credns_sys::write_fd(f.as_fd(), &text, WriteHow::Write).map(|_| ());
        let case = format!("#{i} {kind} lseek {off} then write a valid map");
        if let Some(a) = tally.write(&case, &text, &obs.ctx, kernel, judge_write(&obs.ctx, &text)) {
            check_views(
                &mut tally,
                &host,
                &case,
                &child,
                kind,
                &text,
                &a,
                &obs.ctx.parent_map,
            );
        }
        tally.classify(&format!("lseek to {off}, then a valid map"));
        // pwrite: a map file is a seq_file, and seq_open() clears FMODE_PWRITE, so
        // ksys_pwrite64() refuses with ESPIPE before proc_uid_map_write() is reached, whatever
        // the offset or the text: the write rules (the library's) are never asked. Compared:
        // that answer, and that the map stays unwritten (a later plain write is still the
        // first, and the library's judgement of it must hold).
        let off = rng.pick(&[0u64, 0, 3]);
        let text = b"0 1000 10\n".to_vec();
        let child2 = spawn(&UnshareOptions::new());
        let kernel = Actor::Caller
            .write_file(&child2.map_path(kind), &text, WriteHow::Pwrite(off))
            .expect("pwrite on a map file")
            .map(|_| ());
        let case = format!("#{i} {kind} pwrite at offset {off}");
        pwrite_compare(&mut pwrite, &case, &text, &kernel);
        let map = host
            .fs
            .read_map_text(child2.pid(), kind)
            .unwrap_or_else(|e| format!("(unreadable: {e})"));
        pwrite.view(&case, "the map after the refused pwrite", &text, &map, "");
    }
    tally.finish();
    pwrite.finish();
}

/// The one answer pwrite(2) on a map file can get: ESPIPE (seq_open clears FMODE_PWRITE;
/// ksys_pwrite64 checks it before calling the file's write). Anything else is a mismatch.
fn pwrite_compare(t: &mut Tally, case: &str, text: &[u8], kernel: &Result<(), Errno>) {
    t.writes += 1;
    match kernel {
        Err(e) if *e == Errno::SPIPE => {
            *t.refused.entry("ESPIPE".into()).or_default() += 1;
            t.classify_outcome("pwrite (seq_open clears FMODE_PWRITE)", "ESPIPE");
        }
        other => t.fail(format!(
            "{case}: pwrite of {}: kernel {}, expected ESPIPE (seq_open clears FMODE_PWRITE)",
            escape(text),
            credns_conformance::diff::kernel_display(other)
        )),
    }
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p =
            std::env::temp_dir().join(format!("credns-conformance-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir(&p).expect("create temp dir");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
            .expect("chmod temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A map for level `k+1` carved out of level `k`'s ids: pieces inside single extents of
/// `parent` (kernel map of level k, upper ids in level k's numbering), the first piece holding
/// `root` so a process can become that id.
fn inner_map(rng: &mut Rng, parent: &IdMap) -> Vec<Extent> {
    let mut out: Vec<Extent> = Vec::new();
    let mut upper = 0u32;
    let mut exts = parent.sorted().to_vec();
    rng.shuffle(&mut exts);
    for p in exts.iter().take(rng.range(1, 4) as usize) {
        let off = rng.below(p.count as u64) as u32;
        let len = rng.range(1, (p.count - off).min(3000) as u64) as u32;
        out.push(Extent::new(upper, p.first + off, len));
        upper += len + rng.below(50) as u32;
    }
    out
}

/// Translations through real nested namespaces: maps read from several namespaces, stat of
/// files owned by mapped and unmapped ids, getresuid and /proc/PID/status across levels,
/// ancestry and namespace lookup.
#[test]
fn translations_through_nested_namespaces() {
    let Some((host, seed)) = start("translations_through_nested_namespaces") else {
        return;
    };
    let mut rng = Rng::derive(seed, "translate");
    let mut tally = Tally::new("translations through nested namespaces (3 levels + a sibling)");
    let dir = TempDir::new("translate");
    for chain_no in 0..scaled(12) {
        // Level 1 and a sibling, written by the host.
        let l1 = spawn(&UnshareOptions::new());
        let sib = spawn(&UnshareOptions::new());
        let mut written: Vec<[IdMap; 2]> = Vec::new();
        let mut w = Vec::new();
        for kind in [IdKind::Uid, IdKind::Gid] {
            let text = gen::plain(&level1_map(&mut rng));
            let a = write_and_compare(
                &mut tally,
                &host,
                &format!("chain {chain_no} level 1 {kind}"),
                &l1,
                host.pid,
                Actor::Caller,
                kind,
                &text,
                WriteHow::Write,
            )
            .unwrap_or_else(|| panic!("level-1 map {} refused", escape(&text)));
            w.push(a.written);
        }
        written.push([w[0].clone(), w[1].clone()]);
        for kind in [IdKind::Uid, IdKind::Gid] {
            let l1k = host.fs.read_map(l1.pid(), kind).unwrap();
            let text = gen::plain(&sibling_map(&mut rng, &l1k));
            write_and_compare(
                &mut tally,
                &host,
                &format!("chain {chain_no} sibling {kind}"),
                &sib,
                host.pid,
                Actor::Caller,
                kind,
                &text,
                WriteHow::Write,
            );
        }
        // Levels 2 and 3, each written by the level above after it became an id inside.
        let mut levels: Vec<UsernsChild> = vec![l1];
        for depth in 1..3 {
            let parent = &levels[depth - 1];
            let pk = [
                host.fs.read_map(parent.pid(), IdKind::Uid).unwrap(),
                host.fs.read_map(parent.pid(), IdKind::Gid).unwrap(),
            ];
            // Become the first id of a random extent (so the nested namespace's owner varies).
            let pick = |m: &IdMap, rng: &mut Rng| {
                let e = m.extents()[rng.below(m.len() as u64) as usize];
                e.first + rng.below(e.count.min(10) as u64) as u32
            };
            let (u, g) = (pick(&pk[0], &mut rng), pick(&pk[1], &mut rng));
            // Keep the capabilities across the uid change (PR_SET_KEEPCAPS + capset): moving
            // every uid away from the namespace's root would clear them (capabilities(7)),
            // and the next map write (which may map parent id 0) needs CAP_SETUID/CAP_SETGID/
            // CAP_SETFCAP here.
            let caps = parent.ids().unwrap().caps;
            let ids = Ids {
                uid: u,
                gid: g,
                groups: Some(Vec::new()),
            };
            let r = parent.set_creds(Some(&ids), Some(caps)).unwrap();
            assert_eq!(r, Ok(()), "level {depth} becoming uid {u} gid {g}");
            let child = parent
                .spawn_child(&UnshareOptions::new())
                .expect("nested helper");
            let mut w = Vec::new();
            for (ki, kind) in [IdKind::Uid, IdKind::Gid].into_iter().enumerate() {
                let text = gen::plain(&inner_map(&mut rng, &pk[ki]));
                let case = format!("chain {chain_no} level {} {kind}", depth + 1);
                let a = write_and_compare(
                    &mut tally,
                    &host,
                    &case,
                    &child,
                    parent.pid(),
                    Actor::Process(parent),
                    kind,
                    &text,
                    WriteHow::Write,
                )
                .unwrap_or_else(|| panic!("{case}: map {} refused", escape(&text)));
                w.push(a.written);
            }
            written.push([w[0].clone(), w[1].clone()]);
            levels.push(child);
        }
        // The deepest level becomes an id inside too.
        {
            let last = levels.last().unwrap();
            let um = host.fs.read_map(last.pid(), IdKind::Uid).unwrap();
            let gm = host.fs.read_map(last.pid(), IdKind::Gid).unwrap();
            let r = last
                .set_ids(&Ids {
                    uid: um.extents()[0].first,
                    gid: gm.extents()[0].first,
                    groups: Some(Vec::new()),
                })
                .unwrap();
            assert_eq!(r, Ok(()));
        }
        check_chain(&mut tally, &host, chain_no, &levels, &sib, &written, &dir.0);
    }
    tally.finish();
}

#[allow(clippy::too_many_arguments)]
fn check_chain(
    tally: &mut Tally,
    host: &Host,
    chain_no: usize,
    levels: &[UsernsChild],
    sib: &UsernsChild,
    written: &[[IdMap; 2]],
    dir: &Path,
) {
    let case = format!("chain {chain_no}");
    let fs = &host.fs;
    let kinds = [IdKind::Uid, IdKind::Gid];
    // Kernel maps of each level as the host reads them, and the chains.
    let kmaps: Vec<[IdMap; 2]> = levels
        .iter()
        .map(|l| kinds.map(|k| fs.read_map(l.pid(), k).unwrap()))
        .collect();
    let chains: Vec<[NsChain; 2]> = (0..levels.len())
        .map(|d| [0, 1].map(|ki| NsChain::from_kernel(kmaps[..=d].iter().map(|m| m[ki].clone()))))
        .collect();
    let sib_k = kinds.map(|k| fs.read_map(sib.pid(), k).unwrap());
    let sib_chain = [0, 1].map(|ki| NsChain::from_kernel([sib_k[ki].clone()]));
    // Composing the maps as written gives the kernel maps.
    for ki in 0..2 {
        match NsChain::from_written(written.iter().map(|w| w[ki].clone())) {
            // Compared sorted: /proc lists maps of more than five extents sorted by first, and
            // IdMap equality and Debug follow the written order.
            Ok(c) => {
                let sorted =
                    |ms: &[IdMap]| ms.iter().map(|m| m.sorted().to_vec()).collect::<Vec<_>>();
                let want = sorted(c.kernel_maps());
                let got = sorted(chains.last().unwrap()[ki].kernel_maps());
                tally.view(
                    &case,
                    &format!("{} NsChain::from_written kernel maps (sorted)", kinds[ki]),
                    b"",
                    &format!("{got:?}"),
                    &format!("{want:?}"),
                )
            }
            Err(e) => tally.fail(format!("{case}: NsChain::from_written: {e}")),
        }
    }
    // NsChain::from_kernel recovers each level's map as written (lower ids in the parent's
    // numbering) from the kernel maps.
    for ki in 0..2 {
        let c = &chains.last().unwrap()[ki];
        for (d, w) in c.written_maps().iter().enumerate() {
            tally.view(
                &case,
                &format!(
                    "level {} {} NsChain::from_kernel written map (sorted)",
                    d + 1,
                    kinds[ki]
                ),
                b"",
                &format!("{:?}", w.sorted()),
                &format!("{:?}", written[d][ki].sorted()),
            );
        }
    }
    // Each level's map file as read by: the host, the namespace itself, its parent level, its
    // child level, and the sibling.
    for (d, l) in levels.iter().enumerate() {
        for (ki, kind) in kinds.into_iter().enumerate() {
            let parent_k = if d == 0 {
                host.map(kind).clone()
            } else {
                kmaps[d - 1][ki].clone()
            };
            let mut readers: Vec<(&str, &UsernsChild, IdMap)> = vec![
                ("itself", l, parent_k.clone()),
                ("the sibling", sib, sib_k[ki].clone()),
            ];
            if d > 0 {
                readers.push(("its parent level", &levels[d - 1], kmaps[d - 1][ki].clone()));
            }
            if d + 1 < levels.len() {
                readers.push(("its child level", &levels[d + 1], kmaps[d + 1][ki].clone()));
            }
            let mine = &kmaps[d][ki];
            tally.view(
                &case,
                &format!("level {} {kind} map read by the host", d + 1),
                b"",
                &fs.read_map_text(l.pid(), kind).unwrap(),
                &mine.render_proc(host.map(kind)),
            );
            for (who, reader, viewer) in readers {
                match reader.read_file(&l.map_path(kind)) {
                    Ok(Ok(b)) => tally.view(
                        &case,
                        &format!("level {} {kind} map read by {who}", d + 1),
                        b"",
                        &String::from_utf8_lossy(&b),
                        &mine.render_proc(&viewer),
                    ),
                    other => tally.fail(format!(
                        "{case}: level {} {kind} map read by {who}: {other:?}",
                        d + 1
                    )),
                }
            }
        }
    }
    // Ids: each level's helper's own view, and every other helper's view through
    // /proc/PID/status, against translate().
    let init = NsChain::init();
    let mut all: Vec<(String, &UsernsChild, [NsChain; 2])> = levels
        .iter()
        .enumerate()
        .map(|(d, l)| (format!("level {}", d + 1), l, chains[d].clone()))
        .collect();
    all.push(("the sibling".to_string(), sib, sib_chain.clone()));
    for (name, l, ch) in &all {
        check_ids_inside(tally, host, &format!("{case} {name}"), l, &ch[0], &ch[1]);
        let st = fs.status(l.pid()).unwrap();
        // The helper's kernel ids (the host is in the initial namespace), its own view of them,
        // and every other namespace's view.
        let (kuid, kgid) = (st.uid[1], st.gid[1]);
        let own_uid = ch[0].from_kernel_id(kuid);
        let own_gid = ch[1].from_kernel_id(kgid);
        let views_u = own_uid.map(|u| ch[0].views(u));
        for (rname, reader, rch) in all
            .iter()
            .map(|(n, r, c)| (n.as_str(), Some(*r), c.clone()))
            .chain([("the host", None, [init.clone(), init.clone()])])
        {
            let status = match reader {
                Some(r) => match r.read_file(&fs.pid_path(l.pid()).join("status")) {
                    Ok(Ok(b)) => {
                        ProcStatus::parse(Path::new("status"), &String::from_utf8_lossy(&b))
                            .unwrap()
                    }
                    other => {
                        tally.fail(format!(
                            "{case}: {rname} reading status of {name}: {other:?}"
                        ));
                        continue;
                    }
                },
                None => st.clone(),
            };
            let want_u = munge(rch[0].from_kernel_id(kuid));
            let want_g = munge(rch[1].from_kernel_id(kgid));
            tally.view(
                &case,
                &format!("euid of {name} in /proc/PID/status read by {rname}"),
                b"",
                &status.uid[1].to_string(),
                &want_u.to_string(),
            );
            tally.view(
                &case,
                &format!("egid of {name} in /proc/PID/status read by {rname}"),
                b"",
                &status.gid[1].to_string(),
                &want_g.to_string(),
            );
            // translate() from the helper's namespace agrees, where the helper's id is mapped.
            if let Some(u) = own_uid {
                tally.view(
                    &case,
                    &format!("translate {name}'s uid {u} into {rname}'s namespace"),
                    b"",
                    &munge(translate(&ch[0], &rch[0], u)).to_string(),
                    &want_u.to_string(),
                );
            }
            if let Some(g) = own_gid {
                tally.view(
                    &case,
                    &format!("translate {name}'s gid {g} into {rname}'s namespace"),
                    b"",
                    &munge(translate(&ch[1], &rch[1], g)).to_string(),
                    &want_g.to_string(),
                );
            }
            // NsChain::views agrees for the ancestors on the helper's own branch.
            if rname != "the sibling" && name != "the sibling" && rch[0].level() <= ch[0].level() {
                if let Some(v) = views_u.as_ref().and_then(|v| v.get(rch[0].level())) {
                    tally.view(
                        &case,
                        &format!("NsChain::views of {name}'s uid at {rname}'s level"),
                        b"",
                        &munge(*v).to_string(),
                        &want_u.to_string(),
                    );
                }
            }
        }
    }
    // Files owned by ids at and around every extent boundary, stat'ed from every namespace.
    let mut kuids: Vec<u32> = vec![0, 1, 1000, 65534, 65535, u32::MAX - 1];
    let mut kgids: Vec<u32> = kuids.clone();
    for m in kmaps.iter().chain([&sib_k]) {
        for (ki, out) in [(0, &mut kuids), (1, &mut kgids)] {
            for e in m[ki].extents() {
                let last = (e.lower_first as u64 + e.count as u64 - 1) as u32;
                out.extend([
                    e.lower_first.wrapping_sub(1),
                    e.lower_first,
                    last,
                    last.wrapping_add(1),
                ]);
            }
        }
    }
    kuids.retain(|&k| k != u32::MAX);
    kgids.retain(|&k| k != u32::MAX);
    kuids.sort_unstable();
    kuids.dedup();
    kgids.sort_unstable();
    kgids.dedup();
    let mut files = Vec::new();
    for (i, &u) in kuids.iter().enumerate() {
        let g = kgids[i % kgids.len()];
        let p = dir.join(format!("c{chain_no}-f{i}"));
        std::fs::write(&p, b"").unwrap();
        std::os::unix::fs::chown(&p, Some(u), Some(g)).unwrap();
        files.push((p, u, g));
    }
    for (name, l, ch) in &all {
        for (p, u, g) in &files {
            let want = (
                munge(translate(&init, &ch[0], *u)),
                munge(translate(&init, &ch[1], *g)),
            );
            match l.stat_owner(p) {
                Ok(Ok(got)) => tally.view(
                    &case,
                    &format!("stat of a file owned by kuid {u} kgid {g}, from {name}"),
                    b"",
                    &format!("{got:?}"),
                    &format!("{want:?}"),
                ),
                other => tally.fail(format!("{case}: {name} stat {}: {other:?}", p.display())),
            }
        }
    }
    for (p, _, _) in &files {
        let _ = std::fs::remove_file(p);
    }
    // Ancestry (NS_GET_PARENT) and finding a process by namespace.
    let ns: Vec<_> = levels.iter().map(|l| l.userns().unwrap()).collect();
    let host_ns = fs.userns(host.pid).unwrap();
    let mut want: Vec<_> = ns.iter().rev().copied().collect();
    want.push(host_ns);
    for (d, l) in levels.iter().enumerate() {
        let got = userns_ancestry(fs, l.pid()).unwrap();
        tally.view(
            &case,
            &format!("userns_ancestry of level {}", d + 1),
            b"",
            &format!("{got:?}"),
            &format!("{:?}", &want[levels.len() - 1 - d..]),
        );
        let found = fs.find_pid_in_userns(ns[d]).unwrap();
        tally.view(
            &case,
            &format!("find_pid_in_userns(level {})", d + 1),
            b"",
            &format!("{found:?}"),
            &format!("{:?}", Some(l.pid())),
        );
    }
}

/// The namespace fd keeps the namespace alive after its process is gone, and no helper is
/// left behind after the handles are dropped.
#[test]
fn userns_fd_outlives_helper_and_nothing_is_left_behind() {
    let Some((host, _)) = start("userns_fd_outlives_helper_and_nothing_is_left_behind") else {
        return;
    };
    let fs = &host.fs;
    let l1 = spawn(&UnshareOptions::new());
    assert_eq!(
        l1.write_map(Actor::Caller, IdKind::Uid, b"0 200000 1000\n")
            .unwrap(),
        Ok(())
    );
    assert_eq!(
        l1.write_map(Actor::Caller, IdKind::Gid, b"0 200000 1000\n")
            .unwrap(),
        Ok(())
    );
    assert_eq!(
        l1.set_ids(&Ids {
            uid: 0,
            gid: 0,
            groups: Some(vec![])
        })
        .unwrap(),
        Ok(())
    );
    let l2 = l1.spawn_child(&UnshareOptions::new()).unwrap();
    let l1_ns = l1.userns().unwrap();
    let l2_ns = l2.userns().unwrap();
    let fd = l2.userns_fd().unwrap();
    let owner = fd.owner_uid().unwrap();
    assert_eq!(
        owner, 200000,
        "owner of level 2 is level 1's euid (kernel uid 200000)"
    );
    let pids = [l1.pid(), l2.pid()];
    drop(l2);
    drop(l1);
    assert_eq!(fd.id().unwrap(), l2_ns, "the fd still names the namespace");
    let parent = fd
        .parent()
        .unwrap()
        .expect("parent visible from the initial namespace");
    assert_eq!(parent.id().unwrap(), l1_ns);
    assert_eq!(fs.find_pid_in_userns(l2_ns).unwrap(), None);
    for p in pids {
        assert!(
            !fs.pid_path(p).exists() || fs.status(p).is_err(),
            "pid {p} is still there after drop"
        );
    }
    // Dropping a helper and then its nested helper (re-parented, killed by PDEATHSIG), or the
    // other way round, leaves neither process behind.
    for i in 0..50 {
        let c = spawn(&UnshareOptions::new());
        let n = c
            .spawn_child(&UnshareOptions {
                new_userns: false,
                ..UnshareOptions::new()
            })
            .unwrap();
        let pids = [c.pid(), n.pid()];
        if i % 2 == 0 {
            drop(c);
            drop(n);
        } else {
            drop(n);
            drop(c);
        }
        for p in pids {
            assert!(
                gone(fs, p),
                "pid {p} is still alive after its handle was dropped"
            );
        }
    }
}

/// Whether a process is gone: no /proc entry at all, not even a zombie (a pid reused by an
/// unrelated process would not carry this thread's name as its comm).
fn gone(fs: &ProcFs, p: Pid) -> bool {
    let me: String = std::thread::current()
        .name()
        .unwrap_or("")
        .chars()
        .take(15)
        .collect();
    match std::fs::read_to_string(fs.pid_path(p).join("comm")) {
        Err(_) => true,
        Ok(comm) => comm.trim_end() != me,
    }
}
