//! Random but valid model scenarios (TOML in the model's format), deterministic by seed and
//! index: 1–3 levels of user namespaces with single- and multi-extent maps, processes with
//! real/effective/saved/fs ids, groups and capability subsets, files and directories on the
//! root ext4 and a tmpfs with owners, modes (set-id, sticky, setgid directories) and ACLs, and
//! operations biased toward the boundaries: ids at the edges of extents, ids no namespace maps,
//! owners that are and are not the caller.

use std::fmt::Write;

use crate::gen::Rng;
use crate::kernel::Fixture;

/// An extent in write format: ns-local `first`, parent's `lower`, `count`.
#[derive(Clone, Copy, Debug)]
struct Ext {
    first: u32,
    lower: u32,
    count: u32,
}

#[derive(Clone, Debug)]
struct Ns {
    name: String,
    parent: Option<usize>,
    owner: u32,
    group: u32,
    uid: Vec<Ext>,
    gid: Vec<Ext>,
    deny: bool,
}

#[derive(Clone, Debug)]
struct Proc {
    name: String,
    ns: Option<usize>,
    uid: u32,
    gid: u32,
}

const CAPS: &[(u32, &str)] = &[
    (0, "CAP_CHOWN"),
    (1, "CAP_DAC_OVERRIDE"),
    (2, "CAP_DAC_READ_SEARCH"),
    (3, "CAP_FOWNER"),
    (4, "CAP_FSETID"),
    (5, "CAP_KILL"),
    (6, "CAP_SETGID"),
    (7, "CAP_SETUID"),
    (8, "CAP_SETPCAP"),
    (19, "CAP_SYS_PTRACE"),
    (21, "CAP_SYS_ADMIN"),
    (31, "CAP_SETFCAP"),
];

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.0 + b.1 && b.0 < a.0 + a.1
}

/// Local ranges (first, count) of a namespace's map; for the initial namespace, everything.
fn ranges(nss: &[Ns], ns: Option<usize>, uid: bool) -> Vec<(u32, u32)> {
    match ns {
        None => vec![(0, u32::MAX)],
        Some(i) => {
            let m = if uid { &nss[i].uid } else { &nss[i].gid };
            m.iter().map(|e| (e.first, e.count)).collect()
        }
    }
}

/// The kernel id of local id `id` of `ns`, if mapped.
fn to_kernel(nss: &[Ns], ns: Option<usize>, id: u32, uid: bool) -> Option<u32> {
    match ns {
        None => Some(id),
        Some(i) => {
            let m = if uid { &nss[i].uid } else { &nss[i].gid };
            let e = m
                .iter()
                .find(|e| id >= e.first && (id - e.first) < e.count)?;
            to_kernel(nss, nss[i].parent, e.lower + (id - e.first), uid)
        }
    }
}

/// A mapped local id of `ns`, biased to extent edges.
fn pick_id(rng: &mut Rng, nss: &[Ns], ns: Option<usize>, uid: bool) -> u32 {
    if ns.is_none() {
        return rng.pick(&[0, 0, 1000, 1001, 1002, 100000, 100001, 100005, 65534, 5000]);
    }
    let r = ranges(nss, ns, uid);
    let (s, c) = r[rng.below(r.len() as u64) as usize];
    match rng.below(4) {
        0 => s,
        1 => s + (c - 1),
        2 => s + (c > 1) as u32,
        _ => s + rng.below(c.min(20) as u64) as u32,
    }
}

fn gen_map(rng: &mut Rng, nss: &[Ns], parent: Option<usize>, uid: bool) -> Vec<Ext> {
    let mut out: Vec<Ext> = Vec::new();
    if parent.is_none() && rng.chance(1, 2) {
        let pats: &[&[(u32, u32, u32)]] = &[
            &[(0, 1000, 1)],
            &[(0, 100000, 65536)],
            &[(0, 1000, 1), (1, 100000, 1000)],
            &[(0, 0, 1), (1000, 1000, 10)],
            &[(0, 100000, 10), (10, 1000, 1), (100, 200000, 100)],
            &[(5, 1000, 1)],
        ];
        let p = pats[rng.below(pats.len() as u64) as usize];
        return p
            .iter()
            .map(|&(first, lower, count)| Ext {
                first,
                lower,
                count,
            })
            .collect();
    }
    let pr = ranges(nss, parent, uid);
    let k = 1 + rng.below(3) as usize;
    for _ in 0..k * 4 {
        if out.len() == k {
            break;
        }
        let (s, c) = pr[rng.below(pr.len() as u64) as usize];
        let (lower, max) = if parent.is_none() {
            let l = rng.pick(&[0, 1000, 1001, 1002, 5000, 100000, 100005, 200000]);
            (l, 70000)
        } else {
            let off = match rng.below(3) {
                0 => 0,
                1 => c.saturating_sub(1).min(rng.below(c as u64) as u32),
                _ => rng.below(c.min(50) as u64) as u32,
            };
            (s + off, c - off)
        };
        let count = rng.pick(&[1, 1, 2, 10, 1000, 65536]).min(max).max(1);
        let first = rng.pick(&[0, 0, 1, 5, 10, 100, 1000, 65535]);
        let ok = out.iter().all(|e| {
            !overlaps(
                (first as u64, count as u64),
                (e.first as u64, e.count as u64),
            ) && !overlaps(
                (lower as u64, count as u64),
                (e.lower as u64, e.count as u64),
            )
        });
        if ok && (first as u64 + count as u64) < u32::MAX as u64 {
            out.push(Ext {
                first,
                lower,
                count,
            });
        }
    }
    if out.is_empty() {
        let (s, _) = pr[0];
        out.push(Ext {
            first: 0,
            lower: s,
            count: 1,
        });
    }
    out
}

fn map_text(m: &[Ext]) -> String {
    m.iter()
        .map(|e| format!("{} {} {}", e.first, e.lower, e.count))
        .collect::<Vec<_>>()
        .join("\\n")
}

fn perm(rng: &mut Rng) -> String {
    let p = rng.below(8);
    format!(
        "{}{}{}",
        if p & 4 != 0 { 'r' } else { '-' },
        if p & 2 != 0 { 'w' } else { '-' },
        if p & 1 != 0 { 'x' } else { '-' }
    )
}

/// Scenario number `index` of `seed`, as TOML.
pub fn generate(seed: u64, index: u64, fx: &Fixture) -> String {
    if index % 10 == 9 {
        return crate::gen_symlinks::generate(seed, index, fx);
    }
    if index % 5 == 4 {
        return crate::gen_dirent::generate(seed, index, fx);
    }
    let mut rng = Rng::derive(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15), "model");
    let mut t = String::new();
    let _ = writeln!(t, "# generated: seed {seed:#x}, scenario {index}");
    // Namespaces.
    let mut nss: Vec<Ns> = Vec::new();
    let n_ns = rng.pick(&[0, 1, 1, 2, 2, 3]);
    for i in 0..n_ns {
        let parent = if i > 0 && rng.chance(1, 2) {
            Some(rng.below(i as u64) as usize)
        } else {
            None
        };
        let depth_ok =
            parent.is_none_or(|p| nss[p].parent.is_none_or(|pp| nss[pp].parent.is_none()));
        let parent = if depth_ok { parent } else { None };
        let uid = gen_map(&mut rng, &nss, parent, true);
        let same_parent_maps =
            parent.is_none_or(|p| ranges(&nss, Some(p), true) == ranges(&nss, Some(p), false));
        let gid = if same_parent_maps && rng.chance(3, 4) {
            uid.clone()
        } else {
            gen_map(&mut rng, &nss, parent, false)
        };
        let owner = pick_id(&mut rng, &nss, parent, true);
        let group = pick_id(&mut rng, &nss, parent, false);
        let parent_deny = parent.is_some_and(|p| nss[p].deny);
        let deny = parent_deny || rng.chance(1, 5);
        nss.push(Ns {
            name: format!("ns{i}"),
            parent,
            owner,
            group,
            uid,
            gid,
            deny,
        });
    }
    for n in &nss {
        let _ = writeln!(t, "\n[[namespace]]\nname = \"{}\"", n.name);
        if let Some(p) = n.parent {
            let _ = writeln!(t, "parent = \"{}\"", nss[p].name);
        }
        let _ = writeln!(t, "owner = {}\ngroup = {}", n.owner, n.group);
        let _ = writeln!(
            t,
            "uid_map = \"{}\"\ngid_map = \"{}\"",
            map_text(&n.uid),
            map_text(&n.gid)
        );
        let parent_deny = n.parent.is_some_and(|p| nss[p].deny);
        if n.deny && !parent_deny {
            let _ = writeln!(t, "setgroups = \"deny\"");
        }
    }
    // Sometimes a namespace just created by an unprivileged user, no maps written yet, with
    // its creator in it (ids the namespace does not map, every capability there): it may
    // write its own maps.
    let fresh_ns = rng.chance(1, 5);
    let (fresh_uid, fresh_gid) = (rng.pick(&[1000, 1001, 100000]), rng.pick(&[1000, 1001, 0]));
    if fresh_ns {
        let _ = writeln!(
            t,
            "\n[[namespace]]\nname = \"fresh\"\nowner = {fresh_uid}\ngroup = {fresh_gid}"
        );
    }
    // Processes.
    let mut procs: Vec<Proc> = Vec::new();
    let n_proc = 2 + rng.below(4) as usize;
    for i in 0..n_proc {
        let ns = if nss.is_empty() || rng.chance(1, 3) {
            None
        } else {
            Some(rng.below(nss.len() as u64) as usize)
        };
        let uid = pick_id(&mut rng, &nss, ns, true);
        let gid = if rng.chance(1, 2) && to_kernel(&nss, ns, uid, false).is_some() {
            uid
        } else {
            pick_id(&mut rng, &nss, ns, false)
        };
        let name = format!("p{i}");
        let _ = writeln!(t, "\n[[process]]\nname = \"{name}\"");
        if let Some(n) = ns {
            let _ = writeln!(t, "ns = \"{}\"", nss[n].name);
        }
        // Every helper is in the test's session (the SIGCONT rule).
        let _ = writeln!(t, "uid = {uid}\ngid = {gid}\nsession = 1");
        for k in ["euid", "suid", "fsuid"] {
            if rng.chance(1, 6) {
                let _ = writeln!(t, "{k} = {}", pick_id(&mut rng, &nss, ns, true));
            }
        }
        for k in ["egid", "sgid", "fsgid"] {
            if rng.chance(1, 8) {
                let _ = writeln!(t, "{k} = {}", pick_id(&mut rng, &nss, ns, false));
            }
        }
        let deny = ns.is_some_and(|n| nss[n].deny);
        if !deny && rng.chance(1, 3) {
            let g: Vec<String> = (0..1 + rng.below(3))
                .map(|_| pick_id(&mut rng, &nss, ns, false).to_string())
                .collect();
            let _ = writeln!(t, "groups = [{}]", g.join(", "));
        }
        match rng.below(6) {
            0 => {
                let _ = writeln!(t, "caps = \"all\"");
            }
            1 => {
                let _ = writeln!(t, "caps = \"none\"");
            }
            2 | 3 => {
                let mut prm = 0u64;
                for (bit, _) in CAPS {
                    if rng.chance(1, 3) {
                        prm |= 1 << bit;
                    }
                }
                let mut eff = prm;
                if rng.chance(1, 3) {
                    eff &= rng.next_u64();
                }
                let _ = writeln!(t, "permitted = \"{prm:#x}\"\neffective = \"{eff:#x}\"");
                if rng.chance(1, 3) {
                    // Inheritable: anything the bounding set holds; ambient: in both.
                    let mut inh = 0u64;
                    for (bit, _) in CAPS {
                        if rng.chance(1, 2) {
                            inh |= 1 << bit;
                        }
                    }
                    let amb = inh & prm & rng.next_u64();
                    let _ = writeln!(t, "inheritable = \"{inh:#x}\"\nambient = \"{amb:#x}\"");
                }
            }
            _ => {}
        }
        if ns.is_none() {
            // Now and then without CAP_NET_BIND_SERVICE and CAP_NET_RAW: a program whose file
            // capabilities want them may not run (bprm_caps_from_vfs_caps).
            let drop = if rng.chance(1, 3) { 0x2400 } else { 0 };
            let _ = writeln!(t, "bounding = \"{:#x}\"", fx.host_bset & !drop);
        }
        if rng.chance(1, 8) {
            let _ = writeln!(t, "umask = \"{}\"", rng.pick(&["000", "077", "027"]));
        }
        if rng.chance(1, 12) {
            let _ = writeln!(t, "no_new_privs = true");
        }
        if rng.chance(1, 10) {
            // SECBIT_NOROOT, SECBIT_NO_SETUID_FIXUP, SECBIT_KEEP_CAPS and combinations.
            let _ = writeln!(t, "securebits = {}", rng.pick(&[1, 4, 16, 5, 20, 21]));
        }
        if rng.chance(1, 12) {
            let _ = writeln!(t, "dumpable = false");
        }
        if let Some(n) = ns {
            let mut up = vec!["init".to_string()];
            let mut p = nss[n].parent;
            while let Some(i) = p {
                up.push(nss[i].name.clone());
                p = nss[i].parent;
            }
            crate::gen_creds::mm_userns(&mut rng, &mut t, &up);
        }
        procs.push(Proc { name, ns, uid, gid });
    }
    let mut unsharers: Vec<usize> = Vec::new();
    if fresh_ns {
        let _ = writeln!(
            t,
            "\n[[process]]\nname = \"pf\"\nns = \"fresh\"\nuid = \"kernel:{fresh_uid}\"\ngid = \"kernel:{fresh_gid}\"\ncaps = \"all\"\nsession = 1"
        );
        unsharers.push(procs.len());
        procs.push(Proc {
            name: "pf".into(),
            ns: None,
            uid: fresh_uid,
            gid: fresh_gid,
        });
    }
    // Interesting on-disk ids: the processes' kernel ids, root, and ids nobody maps.
    let mut kuids: Vec<u32> = vec![0, 4242];
    let mut kgids: Vec<u32> = vec![0, 4242];
    for p in &procs {
        if let Some(k) = to_kernel(&nss, p.ns, p.uid, true) {
            kuids.push(k);
        }
        if let Some(k) = to_kernel(&nss, p.ns, p.gid, false) {
            kgids.push(k);
        }
    }
    for n in &nss {
        if let Some(e) = n.uid.first() {
            if let Some(k) = to_kernel(
                &nss,
                Some(nss.iter().position(|x| x.name == n.name).unwrap_or(0)),
                e.first,
                true,
            ) {
                kuids.push(k);
            }
        }
    }
    // Filesystems and files.
    let tmpfs = rng.chance(1, 2);
    if tmpfs {
        let _ = writeln!(
            t,
            "\n[[filesystem]]\nname = \"t\"\ntype = \"{}\"\nroot_owner = {}\nroot_group = {}\nroot_mode = \"{}\"",
            rng.pick(&["tmpfs", "tmpfs", "xfs", "btrfs"]),
            rng.pick(&kuids),
            rng.pick(&kgids),
            rng.pick(&["0755", "0777", "1777", "0711", "0700", "2775"])
        );
        let _ = writeln!(t, "\n[[mount]]\npath = \"/t\"\nfs = \"t\"");
    }
    // A second view of the tmpfs at /m: idmapped with a namespace's maps and/or with options.
    // Without the tmpfs: the root ext4 shown again at /e, the same way.
    let alias = rng.chance(1, 2);
    if alias {
        if tmpfs {
            let _ = writeln!(t, "\n[[mount]]\npath = \"/m\"\nfs = \"t\"");
        } else {
            let _ = writeln!(t, "\n[[mount]]\npath = \"/e\"\nfs = \"rootfs\"");
        }
        if !nss.is_empty() && rng.chance(3, 5) {
            let n = &nss[rng.below(nss.len() as u64) as usize];
            let _ = writeln!(t, "idmap = \"{}\"", n.name);
        }
        for (k, num, den) in [("nosuid", 1, 4), ("noexec", 1, 5), ("read_only", 1, 5)] {
            if rng.chance(num, den) {
                let _ = writeln!(t, "{k} = true");
            }
        }
    }
    let via = |rng: &mut Rng, p: String| -> String {
        if alias && rng.chance(1, 2) {
            if let Some(rest) = p.strip_prefix("/t") {
                return format!("/m{rest}");
            }
            if p.starts_with("/d") {
                return format!("/e{p}");
            }
        }
        p
    };
    let mut dirs: Vec<String> = vec![if tmpfs { "/t".into() } else { "/d".into() }];
    if !tmpfs {
        let _ = writeln!(t, "\n[[file]]\npath = \"/d\"\ndir = true\nmode = \"0777\"");
    }
    let mut files: Vec<String> = Vec::new();
    let mut exes: Vec<String> = Vec::new();
    let n_files = 2 + rng.below(6);
    for i in 0..n_files {
        let parent = dirs[rng.below(dirs.len() as u64) as usize].clone();
        let dir = rng.chance(1, 4);
        let path = format!("{parent}/{}{i}", if dir { "d" } else { "f" });
        let mode = if dir {
            rng.pick(&[
                "0755", "0777", "1777", "2775", "0700", "0711", "3777", "0770", "2777",
            ])
        } else {
            rng.pick(&[
                "0644", "0600", "0640", "0604", "0666", "0755", "4755", "2755", "6755", "0000",
                "0060", "0006", "0750", "0711", "2710", "4711",
            ])
        };
        let _ = writeln!(
            t,
            "\n[[file]]\npath = \"{path}\"\nowner = {}\ngroup = {}\nmode = \"{mode}\"",
            rng.pick(&kuids),
            rng.pick(&kgids)
        );
        if dir {
            let _ = writeln!(t, "dir = true");
            dirs.push(path.clone());
            crate::gen_attrs::dir_default_acl(&mut rng, &mut t, &kuids, &kgids);
        } else if mode
            .bytes()
            .last()
            .is_some_and(|_| u32::from_str_radix(mode, 8).unwrap_or(0) & 0o111 != 0)
        {
            exes.push(path.clone());
            crate::gen_attrs::file_caps(&mut rng, &mut t, &kuids);
        }
        crate::gen_attrs::file_flags(&mut rng, &mut t);
        if rng.chance(1, 5) {
            let mut e = vec![format!("\"user::{}\"", perm(&mut rng))];
            let mut named = false;
            if rng.chance(2, 3) {
                e.push(format!("\"user:{}:{}\"", rng.pick(&kuids), perm(&mut rng)));
                named = true;
            }
            e.push(format!("\"group::{}\"", perm(&mut rng)));
            if rng.chance(1, 2) {
                let g = rng.pick(&kgids);
                e.push(format!("\"group:{g}:{}\"", perm(&mut rng)));
                named = true;
            }
            if named {
                e.push(format!("\"mask::{}\"", perm(&mut rng)));
            }
            e.push(format!("\"other::{}\"", perm(&mut rng)));
            let _ = writeln!(t, "acl = [{}]", e.join(", "));
        }
        files.push(path);
    }
    // Operations.
    let n_ops = 4 + rng.below(8);
    let mut execd: Vec<usize> = Vec::new();
    let mut fresh = 0;
    let mut unshared: Vec<String> = Vec::new();
    let mut conns = crate::gen_creds::Conns::default();
    for _ in 0..n_ops {
        let live: Vec<usize> = (0..procs.len()).filter(|i| !execd.contains(i)).collect();
        if live.is_empty() {
            break;
        }
        let b = live[rng.below(live.len() as u64) as usize];
        let by = &procs[b];
        let target = &procs[live[rng.below(live.len() as u64) as usize]].name;
        let any_path = |rng: &mut Rng| -> String {
            let p = if rng.chance(1, 8) || files.is_empty() {
                dirs[rng.below(dirs.len() as u64) as usize].clone()
            } else {
                files[rng.below(files.len() as u64) as usize].clone()
            };
            via(rng, p)
        };
        let uid_arg = |rng: &mut Rng| -> String {
            match rng.below(6) {
                0 => "-1".into(),
                1 => rng.pick(&[0, 4242, 65534]).to_string(),
                2 => by.uid.to_string(),
                _ => pick_id(rng, &nss, by.ns, true).to_string(),
            }
        };
        let gid_arg = |rng: &mut Rng| -> String {
            match rng.below(6) {
                0 => "-1".into(),
                1 => rng.pick(&[0, 4242]).to_string(),
                2 => by.gid.to_string(),
                _ => pick_id(rng, &nss, by.ns, false).to_string(),
            }
        };
        let _ = writeln!(t, "\n[[op]]\nby = \"{}\"", by.name);
        if rng.chance(1, 6) {
            let (u, g) = (uid_arg(&mut rng), gid_arg(&mut rng));
            crate::gen_creds::op(
                &mut rng,
                &mut t,
                (&u, &g),
                (by.uid, by.gid),
                (&by.name, target),
                &mut conns,
            );
            continue;
        }
        match rng.below(30) {
            0..=2 => {
                let _ = writeln!(
                    t,
                    "op = \"open\"\npath = \"{}\"\naccess = \"{}\"",
                    any_path(&mut rng),
                    rng.pick(&["r", "w", "rw"])
                );
            }
            3..=4 => {
                let _ = writeln!(
                    t,
                    "op = \"access\"\npath = \"{}\"\naccess = \"{}\"\neaccess = {}",
                    any_path(&mut rng),
                    rng.pick(&["r", "w", "x", "rw", "rwx", "F_OK"]),
                    rng.chance(1, 2)
                );
            }
            5..=6 => {
                fresh += 1;
                let d = dirs[rng.below(dirs.len() as u64) as usize].clone();
                let dir = rng.chance(1, 3);
                let p = format!("{d}/new{fresh}");
                let shown = via(&mut rng, p.clone());
                let _ = writeln!(
                    t,
                    "op = \"{}\"\npath = \"{shown}\"\nmode = \"{}\"",
                    if dir { "mkdir" } else { "create" },
                    rng.pick(&["0777", "0666", "0644", "2755", "0755", "6777", "1777"])
                );
                if dir {
                    dirs.push(p);
                } else {
                    files.push(p);
                }
            }
            7..=8 => {
                let _ = writeln!(t, "op = \"stat\"\npath = \"{}\"", any_path(&mut rng));
            }
            9 => {
                let _ = writeln!(
                    t,
                    "op = \"chmod\"\npath = \"{}\"\nmode = \"{}\"",
                    any_path(&mut rng),
                    rng.pick(&["0644", "4755", "2755", "0600", "1777", "2775", "0000", "6711"])
                );
            }
            10..=11 => {
                let _ = writeln!(
                    t,
                    "op = \"chown\"\npath = \"{}\"\nuid = {}\ngid = {}",
                    any_path(&mut rng),
                    uid_arg(&mut rng),
                    gid_arg(&mut rng)
                );
            }
            12 => {
                let _ = writeln!(
                    t,
                    "op = \"kill\"\ntarget = \"{target}\"\nsignal = {}",
                    rng.pick(&[0, 18, 15, 10])
                );
            }
            13 => {
                let _ = writeln!(t, "op = \"ptrace\"\ntarget = \"{target}\"");
            }
            14..=15 => match rng.below(6) {
                0 => {
                    let _ = writeln!(
                        t,
                        "op = \"setuid\"\nuid = {}",
                        uid_arg(&mut rng).replace("-1", "0")
                    );
                }
                1 => {
                    let _ = writeln!(
                        t,
                        "op = \"setreuid\"\nruid = {}\neuid = {}",
                        uid_arg(&mut rng),
                        uid_arg(&mut rng)
                    );
                }
                2 => {
                    let _ = writeln!(
                        t,
                        "op = \"setresuid\"\nruid = {}\neuid = {}\nsuid = {}",
                        uid_arg(&mut rng),
                        uid_arg(&mut rng),
                        uid_arg(&mut rng)
                    );
                }
                3 => {
                    let _ = writeln!(
                        t,
                        "op = \"setgid\"\ngid = {}",
                        gid_arg(&mut rng).replace("-1", "0")
                    );
                }
                4 => {
                    let _ = writeln!(
                        t,
                        "op = \"setregid\"\nrgid = {}\negid = {}",
                        gid_arg(&mut rng),
                        gid_arg(&mut rng)
                    );
                }
                _ => {
                    let _ = writeln!(
                        t,
                        "op = \"setresgid\"\nrgid = {}\negid = {}\nsgid = {}",
                        gid_arg(&mut rng),
                        gid_arg(&mut rng),
                        gid_arg(&mut rng)
                    );
                }
            },
            16 => {
                let g: Vec<String> = (0..rng.below(3))
                    .map(|_| pick_id(&mut rng, &nss, by.ns, false).to_string())
                    .collect();
                let _ = writeln!(t, "op = \"setgroups\"\ngroups = [{}]", g.join(", "));
            }
            17 => {
                let _ = writeln!(t, "op = \"getids\"");
            }
            18 => {
                let kind = rng.pick(&["proc_status", "peercred"]);
                let _ = writeln!(t, "op = \"{kind}\"\ntarget = \"{target}\"");
            }
            19 if !exes.is_empty() => {
                let e = exes[rng.below(exes.len() as u64) as usize].clone();
                let _ = writeln!(t, "op = \"exec\"\npath = \"{}\"", via(&mut rng, e));
                execd.push(b);
                conns.forget(&procs[b].name);
            }
            20 => {
                let name = format!("u{}", unshared.len());
                let _ = writeln!(t, "op = \"unshare\"\nname = \"{name}\"");
                unshared.push(name);
                unsharers.push(b);
            }
            22..=24 if unsharers.iter().any(|u| !execd.contains(u)) => {
                let targets: Vec<usize> = unsharers
                    .iter()
                    .copied()
                    .filter(|u| !execd.contains(u))
                    .collect();
                // Mostly a process writing its own maps (as after unshare -U).
                let tg = if targets.contains(&b) && rng.chance(2, 3) {
                    by
                } else {
                    &procs[targets[rng.below(targets.len() as u64) as usize]]
                };
                let lower = match rng.below(4) {
                    0 | 3 => by.uid,
                    1 => tg.uid,
                    _ => pick_id(&mut rng, &nss, by.ns, true),
                };
                let count = rng.pick(&[1, 1, 10]);
                let kind = rng.pick(&["write_uid_map", "write_gid_map", "write_setgroups"]);
                let text = if kind == "write_setgroups" {
                    rng.pick(&["deny", "deny", "allow"]).to_owned()
                } else if kind == "write_gid_map" && rng.chance(1, 2) {
                    format!("0 {} {count}", by.gid)
                } else {
                    format!("0 {lower} {count}")
                };
                let _ = writeln!(
                    t,
                    "op = \"{kind}\"\ntarget = \"{}\"\ntext = \"{text}\"",
                    tg.name
                );
            }
            21 if !nss.is_empty() || !unshared.is_empty() => {
                let mut names: Vec<String> = nss.iter().map(|n| n.name.clone()).collect();
                names.extend(unshared.iter().cloned());
                if fresh_ns {
                    names.push("fresh".into());
                }
                names.push("init".into());
                let _ = writeln!(
                    t,
                    "op = \"setns\"\nns = \"{}\"",
                    names[rng.below(names.len() as u64) as usize]
                );
            }
            26..=29 => {
                let raw = if rng.chance(1, 6) || files.is_empty() {
                    dirs[rng.below(dirs.len() as u64) as usize].clone()
                } else {
                    files[rng.below(files.len() as u64) as usize].clone()
                };
                let path = via(&mut rng, raw.clone());
                let ids: Vec<u32> = (0..3)
                    .map(|_| pick_id(&mut rng, &nss, by.ns, true))
                    .chain([0, 4242])
                    .collect();
                let at = crate::gen_attrs::AttrTarget {
                    path: &path,
                    exe: exes.contains(&raw),
                    ids: &ids,
                    default_ok: raw != dirs[0],
                };
                crate::gen_attrs::op(&mut rng, &mut t, &at);
            }
            _ => {
                let _ = writeln!(t, "op = \"getids\"");
            }
        }
    }
    // A process that exec'd is no helper any more: the last ops are its peers'.
    let live: Vec<Proc> = (0..procs.len())
        .filter(|i| !execd.contains(i))
        .map(|i| procs[i].clone())
        .collect();
    crate::gen_nstypes::append(&mut rng, &mut t, &gen_procs(&live, &nss), &gen_userns(&nss));
    t
}

fn gen_procs(procs: &[Proc], nss: &[Ns]) -> Vec<crate::gen_nstypes::GenProc> {
    let userns = |p: &Proc| p.ns.map(|n| nss[n].name.clone());
    let named = |p: &Proc| crate::gen_nstypes::GenProc {
        name: p.name.clone(),
        userns: if p.name == "pf" {
            Some("fresh".into())
        } else {
            userns(p)
        },
    };
    procs.iter().map(named).collect()
}

fn gen_userns(nss: &[Ns]) -> Vec<crate::gen_nstypes::GenUserns> {
    let ancestors = |mut p: Option<usize>| {
        let mut out = Vec::new();
        while let Some(i) = p {
            out.push(nss[i].name.clone());
            p = nss[i].parent;
        }
        out
    };
    let one = |n: &Ns| crate::gen_nstypes::GenUserns {
        name: n.name.clone(),
        ancestors: ancestors(n.parent),
    };
    nss.iter().map(one).collect()
}
