//! Random scenarios for the directory-entry operations: sticky directories (1777, 1770, …)
//! owned by the processes or by others, files of mapped and unmapped owners, processes with
//! and without CAP_FOWNER in the initial namespace or a container's, directories empty and
//! not, renames and links within a directory, across directories, across filesystems
//! (tmpfs ↔ ext4: EXDEV) and through an idmapped view of the tmpfs, hard links of setuid,
//! setgid and unreadable files, symlinks, and `open(O_CREAT)` of existing files. The
//! fs.protected_* sysctls are this machine's (tests never change them).

use std::fmt::Write;

use crate::gen::Rng;
use crate::kernel::Fixture;

/// (uid_map, the kernel ids it maps: first kernel id, count).
const MAPS: &[(&str, u32, u32)] = &[
    ("0 100000 65536", 100000, 65536),
    ("0 1000 1", 1000, 1),
    ("0 200000 1000", 200000, 1000),
];

struct Proc {
    name: String,
    kuid: u32,
}

/// The `[settings]` lines with this machine's fs.protected_* values.
fn settings(t: &mut String, fx: &Fixture) {
    let p = fx.protected;
    let _ = writeln!(
        t,
        "[settings]\nprotected_hardlinks = {}\nprotected_symlinks = {}\nprotected_regular = {}\nprotected_fifos = {}",
        p.hardlinks, p.symlinks, p.regular, p.fifos
    );
}

/// A scenario of directory-entry operations, deterministic by seed and index.
pub fn generate(seed: u64, index: u64, fx: &Fixture) -> String {
    let mut rng = Rng::derive(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15), "dirent");
    let mut t = format!("# generated (directory entries): seed {seed:#x}, scenario {index}\n");
    settings(&mut t, fx);
    let n_ns = rng.pick(&[0, 1, 1, 2]);
    let mut nss: Vec<(String, u32, u32)> = Vec::new();
    for i in 0..n_ns {
        let (map, first, count) = MAPS[rng.below(MAPS.len() as u64) as usize];
        if nss.iter().any(|n| n.1 == first) {
            continue;
        }
        let name = format!("ct{i}");
        let owner = rng.pick(&[0, 1000, 1001]);
        let _ = writeln!(
            t,
            "\n[[namespace]]\nname = \"{name}\"\nowner = {owner}\nuid_map = \"{map}\"\ngid_map = \"{map}\""
        );
        nss.push((name, first, count));
    }
    // Processes: host users and containers' roots and users, with or without CAP_FOWNER.
    let mut procs: Vec<Proc> = Vec::new();
    for i in 0..2 + rng.below(3) {
        let name = format!("p{i}");
        let _ = writeln!(t, "\n[[process]]\nname = \"{name}\"\nsession = 1");
        let ns = (!nss.is_empty() && rng.chance(1, 2))
            .then(|| &nss[rng.below(nss.len() as u64) as usize]);
        let (uid, kuid) = match ns {
            Some((n, first, count)) => {
                let u = if rng.chance(2, 3) {
                    0
                } else {
                    rng.below(*count as u64) as u32
                };
                let _ = writeln!(t, "ns = \"{n}\"");
                (u, first + u)
            }
            None => {
                let u = rng.pick(&[0, 1000, 1001, 1002, 1002]);
                (u, u)
            }
        };
        let _ = writeln!(t, "uid = {uid}\ngid = {uid}");
        // Sometimes another fsuid: the sticky bit and ownership go by it.
        let kuid = match ns {
            Some((_, first, count)) if rng.chance(1, 6) => {
                let f = rng.below(*count as u64) as u32;
                let _ = writeln!(t, "fsuid = {f}");
                first + f
            }
            None if rng.chance(1, 6) => {
                let f = rng.pick(&[0, 1000, 1001, 1002]);
                let _ = writeln!(t, "fsuid = {f}");
                f
            }
            _ => kuid,
        };
        let caps = rng.pick(&[
            "",
            "",
            "none",
            "CAP_FOWNER",
            "CAP_DAC_OVERRIDE",
            "CAP_FOWNER, CAP_DAC_OVERRIDE",
        ]);
        if !caps.is_empty() {
            let _ = writeln!(t, "caps = \"{caps}\"");
        }
        procs.push(Proc { name, kuid });
    }
    let mut kuids: Vec<u32> = procs.iter().map(|p| p.kuid).collect();
    kuids.extend([0, 4242, 100005, 1001]);
    // Filesystems: the root ext4 (/d) and a tmpfs (/t), sometimes an idmapped view (/m).
    let _ = writeln!(
        t,
        "\n[[filesystem]]\nname = \"t\"\ntype = \"tmpfs\"\nroot_mode = \"{}\"\n\n[[mount]]\npath = \"/t\"\nfs = \"t\"",
        rng.pick(&["0755", "1777", "0777"])
    );
    let idmapped = !nss.is_empty() && rng.chance(1, 3);
    if idmapped {
        let _ = writeln!(
            t,
            "\n[[mount]]\npath = \"/m\"\nfs = \"t\"\nidmap = \"{}\"",
            nss[rng.below(nss.len() as u64) as usize].0
        );
    }
    let _ = writeln!(t, "\n[[file]]\npath = \"/d\"\ndir = true\nmode = \"0755\"");
    let mut dirs: Vec<String> = Vec::new();
    let mut files: Vec<String> = Vec::new();
    let file = |t: &mut String, rng: &mut Rng, path: &str, dir: bool, mode: &str| {
        let (o, g) = (rng.pick(&kuids), rng.pick(&kuids));
        let _ = writeln!(
            t,
            "\n[[file]]\npath = \"{path}\"\nowner = {o}\ngroup = {g}\nmode = \"{mode}\"\ndir = {dir}"
        );
    };
    for base in ["/d", "/t"] {
        for k in 0..1 + rng.below(3) {
            let d = format!("{base}/s{k}");
            let mode = rng.pick(&[
                "1777", "1777", "1770", "0777", "0775", "0755", "3777", "1733",
            ]);
            file(&mut t, &mut rng, &d, true, mode);
            dirs.push(d.clone());
            for j in 0..1 + rng.below(4) {
                if rng.chance(1, 4) {
                    let sub = format!("{d}/d{j}");
                    let mode = rng.pick(&["0755", "0777", "1777"]);
                    file(&mut t, &mut rng, &sub, true, mode);
                    dirs.push(sub.clone());
                    if rng.chance(1, 2) {
                        let f = format!("{sub}/x");
                        file(&mut t, &mut rng, &f, false, "0644");
                        files.push(f);
                    }
                } else {
                    let f = format!("{d}/f{j}");
                    let mode = rng.pick(&[
                        "0644", "0600", "0666", "4755", "2755", "2710", "0000", "0640", "4777",
                    ]);
                    file(&mut t, &mut rng, &f, false, mode);
                    files.push(f);
                }
            }
        }
    }
    if files.is_empty() {
        file(&mut t, &mut rng, "/d/s0/only", false, "0644");
        files.push("/d/s0/only".into());
    }
    ops(&mut t, &mut rng, &procs, &dirs, &files, idmapped);
    t
}

/// The operations: most name existing entries, some new names; paths on the tmpfs are
/// sometimes taken through the idmapped view.
fn ops(
    t: &mut String,
    rng: &mut Rng,
    procs: &[Proc],
    dirs: &[String],
    files: &[String],
    idmapped: bool,
) {
    let via = |rng: &mut Rng, p: &str| -> String {
        match p.strip_prefix("/t/") {
            Some(rest) if idmapped && rng.chance(1, 3) => format!("/m/{rest}"),
            _ => p.to_owned(),
        }
    };
    let mut links: Vec<String> = Vec::new();
    for fresh in 1..=5 + rng.below(8) {
        let by = &procs[rng.below(procs.len() as u64) as usize].name;
        let file = |rng: &mut Rng| files[rng.below(files.len() as u64) as usize].clone();
        let dir = |rng: &mut Rng| dirs[rng.below(dirs.len() as u64) as usize].clone();
        let entry = |rng: &mut Rng| {
            if rng.chance(1, 4) {
                dir(rng)
            } else {
                file(rng)
            }
        };
        let new_name = |rng: &mut Rng| format!("{}/n{fresh}", dir(rng));
        let _ = writeln!(t, "\n[[op]]\nby = \"{by}\"");
        match rng.below(12) {
            0..=2 => {
                let p = if !links.is_empty() && rng.chance(1, 6) {
                    links[rng.below(links.len() as u64) as usize].clone()
                } else {
                    entry(rng)
                };
                let _ = writeln!(t, "op = \"unlink\"\npath = \"{}\"", via(rng, &p));
            }
            3 => {
                let p = if rng.chance(3, 4) {
                    dir(rng)
                } else {
                    file(rng)
                };
                let _ = writeln!(t, "op = \"rmdir\"\npath = \"{}\"", via(rng, &p));
            }
            4..=6 => {
                let from = entry(rng);
                let to = match rng.below(3) {
                    0 => entry(rng),
                    _ => new_name(rng),
                };
                let flags = rng.pick(&["", "", "", "noreplace", "exchange"]);
                let _ = writeln!(
                    t,
                    "op = \"rename\"\nfrom = \"{}\"\nto = \"{}\"",
                    via(rng, &from),
                    via(rng, &to)
                );
                if !flags.is_empty() {
                    let _ = writeln!(t, "flags = \"{flags}\"");
                }
            }
            7..=8 => {
                let from = if rng.chance(1, 8) {
                    dir(rng)
                } else {
                    file(rng)
                };
                let to = if rng.chance(1, 6) {
                    file(rng)
                } else {
                    new_name(rng)
                };
                let _ = writeln!(
                    t,
                    "op = \"link\"\nfrom = \"{}\"\nto = \"{}\"",
                    via(rng, &from),
                    via(rng, &to)
                );
            }
            9 => {
                let p = new_name(rng);
                let _ = writeln!(
                    t,
                    "op = \"symlink\"\ntarget = \"{}\"\npath = \"{}\"",
                    file(rng),
                    via(rng, &p)
                );
                links.push(p);
            }
            10 => {
                let p = if rng.chance(1, 4) {
                    new_name(rng)
                } else {
                    file(rng)
                };
                let _ = writeln!(
                    t,
                    "op = \"open_creat\"\npath = \"{}\"\naccess = \"{}\"\nmode = \"0644\"",
                    via(rng, &p),
                    rng.pick(&["r", "w", "rw"])
                );
            }
            _ => {
                let p = entry(rng);
                let _ = writeln!(t, "op = \"stat\"\npath = \"{}\"", via(rng, &p));
            }
        }
    }
}
