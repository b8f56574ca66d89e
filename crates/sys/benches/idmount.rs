//! Making a 10,000-file tree available to a container: an idmapped mount (the mapping user
//! namespace made, the tree cloned, idmapped and attached) against the old way (a bind mount,
//! then a recursive `lchown` of every file into the container's range), measured side by side
//! in one run. Needs root. `cargo bench -p credns-sys --bench idmount`
//!
//! Each round maps the tree to a fresh range, so every chown really changes the owner. The
//! figures are the median and best over the rounds; the ratio is of the medians.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use credns_idmap::{Extent, IdMap};
use credns_sys::{unmount, DetachedMount, MappingUserns};

const DIRS: usize = 100;
const FILES_PER_DIR: usize = 100;
const ROUNDS: usize = 7;

fn sh(cmd: &str, args: &[&str]) {
    let st = Command::new(cmd).args(args).status().expect(cmd);
    assert!(st.success(), "{cmd} {args:?}: {st}");
}

struct Scratch {
    dir: PathBuf,
    mounts: Vec<PathBuf>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for m in self.mounts.iter().rev() {
            let _ = unmount(m, true);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// 100 directories of 100 files each: 10,000 files (plus the 100 directories).
fn build_tree(root: &Path) -> usize {
    let mut n = 0;
    for d in 0..DIRS {
        let dir = root.join(format!("d{d:03}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..FILES_PER_DIR {
            std::fs::write(dir.join(format!("f{f:03}")), b"x").unwrap();
            n += 1;
        }
    }
    n
}

/// The old way's second half: walk the tree and `lchown` every entry from the range at `from`
/// to the same place in the range at `to`.
fn chown_tree(root: &Path, from: u32, to: u32) -> usize {
    let mut n = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let md = e.metadata().unwrap();
            let (uid, gid) = (
                std::os::unix::fs::MetadataExt::uid(&md),
                std::os::unix::fs::MetadataExt::gid(&md),
            );
            std::os::unix::fs::lchown(&p, Some(uid - from + to), Some(gid - from + to)).unwrap();
            n += 1;
            if md.is_dir() {
                stack.push(p);
            }
        }
    }
    n
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if !rustix::process::geteuid().is_root() {
        println!("idmount: skipped: needs root (mounts tmpfs and makes idmapped mounts)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("credns-bench-idmount-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut s = Scratch {
        dir: dir.clone(),
        mounts: Vec::new(),
    };
    let src = dir.join("src");
    std::fs::create_dir(&src).unwrap();
    sh("mount", &["-t", "tmpfs", "bench", src.to_str().unwrap()]);
    s.mounts.push(src.clone());
    let files = build_tree(&src);
    let probe = src.join("d042/f042");

    let (mut idm, mut old) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let base = 100_000 + 65_536 * round as u32;
        let map = IdMap::new(vec![Extent::new(0, base, 65_536)]).unwrap();

        // (a) idmapped mount, the mapping namespace included.
        let dst = dir.join(format!("idmapped{round}"));
        std::fs::create_dir(&dst).unwrap();
        let t = Instant::now();
        let ns = MappingUserns::new(&map, &map).unwrap();
        let tree = DetachedMount::clone_tree(&src, false).unwrap();
        tree.set_idmap(&ns).unwrap();
        tree.attach(&dst).unwrap();
        idm.push(t.elapsed());
        s.mounts.push(dst.clone());
        let seen = std::fs::metadata(dst.join("d042/f042")).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&seen), base);

        // (b) bind mount plus recursive chown into the range.
        let bind = dir.join(format!("bind{round}"));
        std::fs::create_dir(&bind).unwrap();
        let t = Instant::now();
        let tree = DetachedMount::clone_tree(&src, false).unwrap();
        tree.attach(&bind).unwrap();
        let n = chown_tree(&bind, 0, base);
        old.push(t.elapsed());
        s.mounts.push(bind.clone());
        assert_eq!(n, files + DIRS);
        let seen = std::fs::metadata(bind.join("d042/f042")).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&seen), base);
        // Back to on-disk 0 for the next round, untimed.
        chown_tree(&src, base, 0);
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&probe).unwrap()),
            0
        );
    }
    let (ib, ob) = (*idm.iter().min().unwrap(), *old.iter().min().unwrap());
    let (im, om) = (median(&mut idm), median(&mut old));
    println!("tree: {files} files in {DIRS} directories on tmpfs; {ROUNDS} rounds");
    println!(
        "idmapped mount (userns + open_tree + mount_setattr + move_mount): median {:>10.3} ms  best {:>10.3} ms",
        im.as_secs_f64() * 1e3,
        ib.as_secs_f64() * 1e3
    );
    println!(
        "bind mount + recursive lchown:                                   median {:>10.3} ms  best {:>10.3} ms",
        om.as_secs_f64() * 1e3,
        ob.as_secs_f64() * 1e3
    );
    println!(
        "ratio (old / idmapped, medians): {:.1}x",
        om.as_secs_f64() / im.as_secs_f64()
    );
}
