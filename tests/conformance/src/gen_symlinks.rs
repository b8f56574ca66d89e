//! Random scenarios of symbolic links and the operations that walk through them: links made
//! by different processes (so owned by others) in sticky world-writable directories and plain
//! ones, on the root ext4 and on a tmpfs, with absolute and relative targets, targets on the
//! other filesystem, chains, loops, links to directories and dangling links; then `open`,
//! `stat`, `access`, `chmod`, `chown`, `utimes`, `truncate`, `setxattr`, `open(O_CREAT)`
//! (which creates a dangling link's target), `create`/`mkdir` over a link (EEXIST), `unlink`
//! and `rmdir` through and of links. fs.protected_symlinks is this machine's (tests never
//! change it).
//!
//! Relative targets stay within the link's filesystem and never go above its mount's root:
//! the executor realises model mounts as separate directories, where such a target would
//! resolve elsewhere (kernel_dirent.rs refuses it); no link names `/`, which is realised
//! beside the other mounts (a chmod through such a link would not reach walks to them).

use std::fmt::Write;

use crate::gen::Rng;
use crate::kernel::Fixture;

/// A directory of the scenario: its path and its files' and links' names.
struct Dir {
    path: String,
    names: Vec<String>,
}

/// A scenario of symbolic links, deterministic by seed and index.
pub fn generate(seed: u64, index: u64, fx: &Fixture) -> String {
    let mut rng = Rng::derive(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15), "symlinks");
    let mut t = format!("# generated (symbolic links): seed {seed:#x}, scenario {index}\n");
    let p = fx.protected;
    let _ = writeln!(
        t,
        "[settings]\nprotected_hardlinks = {}\nprotected_symlinks = {}\nprotected_regular = {}\nprotected_fifos = {}",
        p.hardlinks, p.symlinks, p.regular, p.fifos
    );
    let container = rng.chance(1, 3);
    if container {
        let _ = writeln!(
            t,
            "\n[[namespace]]\nname = \"ct\"\nowner = 1000\nuid_map = \"0 100000 65536\"\ngid_map = \"0 100000 65536\""
        );
    }
    let mut procs = Vec::new();
    let mut kuids = vec![0, 1000, 1001, 4242];
    for i in 0..2 + rng.below(3) {
        let name = format!("p{i}");
        let _ = writeln!(t, "\n[[process]]\nname = \"{name}\"\nsession = 1");
        if container && rng.chance(1, 3) {
            let u = rng.pick(&[0, 0, 5]);
            let _ = writeln!(t, "ns = \"ct\"\nuid = {u}\ngid = {u}");
            kuids.push(100000 + u);
        } else {
            let u = rng.pick(&[0, 1000, 1001, 1002]);
            let _ = writeln!(t, "uid = {u}\ngid = {u}");
            if rng.chance(1, 4) {
                let _ = writeln!(t, "caps = \"none\"");
            }
        }
        procs.push(name);
    }
    let _ = writeln!(
        t,
        "\n[[filesystem]]\nname = \"t\"\ntype = \"tmpfs\"\nroot_mode = \"{}\"\n\n[[mount]]\npath = \"/t\"\nfs = \"t\"",
        rng.pick(&["0755", "1777", "0777"])
    );
    // Sometimes an idmapped view of the tmpfs (/m): links made and followed through it.
    let idmapped = container && rng.chance(1, 2);
    if idmapped {
        let _ = writeln!(t, "\n[[mount]]\npath = \"/m\"\nfs = \"t\"\nidmap = \"ct\"");
    }
    let _ = writeln!(t, "\n[[file]]\npath = \"/d\"\ndir = true\nmode = \"0755\"");
    let mut dirs: Vec<Dir> = Vec::new();
    for base in ["/d", "/t"] {
        for (k, mode) in [
            (0, "1777"),
            (1, rng.pick(&["0755", "0711", "0700", "0777"])),
        ] {
            let path = format!("{base}/s{k}");
            let owner = rng.pick(&kuids);
            let _ = writeln!(
                t,
                "\n[[file]]\npath = \"{path}\"\ndir = true\nowner = {owner}\nmode = \"{mode}\""
            );
            let mut names = Vec::new();
            for j in 0..1 + rng.below(3) {
                let name = format!("f{j}");
                let _ = writeln!(
                    t,
                    "\n[[file]]\npath = \"{path}/{name}\"\nowner = {}\nmode = \"{}\"",
                    rng.pick(&kuids),
                    rng.pick(&["0644", "0600", "0666", "0640", "0000"])
                );
                names.push(name);
            }
            dirs.push(Dir { path, names });
        }
    }
    links(&mut t, &mut rng, &procs, &mut dirs, idmapped);
    ops(&mut t, &mut rng, &procs, &dirs, idmapped);
    t
}

/// `path`, or its view through the idmapped mount /m for one on the tmpfs, now and then.
fn via(rng: &mut Rng, idmapped: bool, path: String) -> String {
    match path.strip_prefix("/t") {
        Some(rest) if idmapped && rng.chance(1, 3) => format!("/m{rest}"),
        _ => path,
    }
}

/// The symlink ops: each makes a new name `lN` in one of the directories.
fn links(t: &mut String, rng: &mut Rng, procs: &[String], dirs: &mut [Dir], idmapped: bool) {
    for n in 0..3 + rng.below(5) {
        let at = rng.below(dirs.len() as u64) as usize;
        let name = format!("l{n}");
        let path = format!("{}/{name}", dirs[at].path);
        // Another directory on the same filesystem, for a relative `../sK/x`.
        let fs_of = |d: &Dir| d.path[..2].to_owned();
        let same: Vec<usize> = (0..dirs.len())
            .filter(|&i| fs_of(&dirs[i]) == fs_of(&dirs[at]))
            .collect();
        let pick_name = |rng: &mut Rng, d: &Dir| -> String {
            if d.names.is_empty() || rng.chance(1, 6) {
                format!("n{}", rng.below(4))
            } else {
                d.names[rng.below(d.names.len() as u64) as usize].clone()
            }
        };
        let target = match rng.below(9) {
            // Absolute: a file or a link on either filesystem (or a missing name).
            0..=2 => {
                let d = &dirs[rng.below(dirs.len() as u64) as usize];
                format!("{}/{}", d.path, pick_name(rng, d))
            }
            // Absolute, a directory (walked through) or a mount's root.
            3 => rng.pick(&["/d/s0", "/t/s1", "/t", "/d"]).to_owned(),
            // Relative, in the same directory (itself: a loop).
            4 => {
                if rng.chance(1, 4) {
                    name.clone()
                } else {
                    pick_name(rng, &dirs[at])
                }
            }
            5 => format!("./{}", pick_name(rng, &dirs[at])),
            // Relative, through the parent, to a sibling directory of the same filesystem.
            6..=7 => {
                let o = &dirs[same[rng.below(same.len() as u64) as usize]];
                let base = o.path.rsplit('/').next().unwrap_or("");
                format!("../{base}/{}", pick_name(rng, o))
            }
            // Relative, a sibling directory itself.
            _ => {
                let o = &dirs[same[rng.below(same.len() as u64) as usize]];
                format!("../{}", o.path.rsplit('/').next().unwrap_or(""))
            }
        };
        // Now and then a slash after the last component (the kernel then wants a directory).
        let target = if rng.chance(1, 10) {
            format!("{target}/")
        } else {
            target
        };
        let target = if target.starts_with('/') {
            via(rng, idmapped, target)
        } else {
            target
        };
        let path = via(rng, idmapped, path);
        let by = &procs[rng.below(procs.len() as u64) as usize];
        let _ = writeln!(
            t,
            "\n[[op]]\nby = \"{by}\"\nop = \"symlink\"\ntarget = \"{target}\"\npath = \"{path}\""
        );
        dirs[at].names.push(name);
    }
}

/// Operations on paths that often name a link, or go through one to a directory.
fn ops(t: &mut String, rng: &mut Rng, procs: &[String], dirs: &[Dir], idmapped: bool) {
    for _ in 0..4 + rng.below(8) {
        let d = &dirs[rng.below(dirs.len() as u64) as usize];
        let links: Vec<&String> = d.names.iter().filter(|n| n.starts_with('l')).collect();
        let name = if !links.is_empty() && rng.chance(3, 4) {
            links[rng.below(links.len() as u64) as usize].clone()
        } else if d.names.is_empty() {
            "f0".into()
        } else {
            d.names[rng.below(d.names.len() as u64) as usize].clone()
        };
        let mut path = format!("{}/{name}", d.path);
        // Through the link, as a directory.
        if rng.chance(1, 5) {
            let _ = write!(path, "/{}", rng.pick(&["f0", "f1", "s0", "s1", "l0", "x"]));
        }
        let path = via(rng, idmapped, path);
        let by = &procs[rng.below(procs.len() as u64) as usize];
        let _ = writeln!(t, "\n[[op]]\nby = \"{by}\"");
        match rng.below(17) {
            0..=2 => {
                let _ = writeln!(
                    t,
                    "op = \"open\"\npath = \"{path}\"\naccess = \"{}\"",
                    rng.pick(&["r", "w", "rw"])
                );
            }
            3..=4 => {
                let _ = writeln!(t, "op = \"stat\"\npath = \"{path}\"");
            }
            5 => {
                let _ = writeln!(
                    t,
                    "op = \"access\"\npath = \"{path}\"\naccess = \"{}\"",
                    rng.pick(&["r", "w", "x", "F_OK"])
                );
            }
            6 => {
                let _ = writeln!(
                    t,
                    "op = \"chmod\"\npath = \"{path}\"\nmode = \"{}\"",
                    rng.pick(&["0644", "0600", "0666"])
                );
            }
            7..=8 => {
                let _ = writeln!(
                    t,
                    "op = \"open_creat\"\npath = \"{path}\"\naccess = \"{}\"\nmode = \"0644\"",
                    rng.pick(&["r", "w", "rw"])
                );
            }
            9 => {
                let _ = writeln!(
                    t,
                    "op = \"{}\"\npath = \"{path}\"",
                    rng.pick(&["create", "mkdir"])
                );
            }
            10 => {
                let _ = writeln!(t, "op = \"truncate\"\npath = \"{path}\"\nlength = 0");
            }
            11..=12 => {
                let _ = writeln!(t, "op = \"unlink\"\npath = \"{path}\"");
            }
            13 => {
                let _ = writeln!(
                    t,
                    "op = \"chown\"\npath = \"{path}\"\nuid = {}\ngid = -1",
                    rng.pick(&[-1, 0, 1000, 1001])
                );
            }
            14 => {
                let _ = writeln!(
                    t,
                    "op = \"utimes\"\npath = \"{path}\"\ntimes = \"{}\"",
                    rng.pick(&["now", "explicit"])
                );
            }
            15 => {
                let _ = writeln!(
                    t,
                    "op = \"setxattr\"\npath = \"{path}\"\nname = \"user.x\"\nvalue = \"v\""
                );
            }
            _ => {
                let _ = writeln!(t, "op = \"rmdir\"\npath = \"{path}\"");
            }
        }
    }
}
