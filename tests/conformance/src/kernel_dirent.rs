//! The executor's directory-entry operations: `unlink`, `rmdir`, `rename`, `link`, `symlink`
//! and `open(O_CREAT)` made by the acting process's helper, and the fs.protected_* sysctls
//! they read (global: a scenario is realised only where its values are this machine's).
//!
//! Mount points are realised as separate directories (not mounted on their parents), so an
//! operation on a mount point itself is skipped, and so is a rename or link between two
//! model mounts that one real filesystem shows without a mount between them.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use credns_model::{Op, Protected, Scenario, World};
use credns_sys::{Errno, OFlags, UsernsChild};

use super::{KernelAnswer, Realised};

/// This machine's /proc/sys/fs/protected_* values.
pub fn host_protected() -> Result<Protected, String> {
    let read = |name: &str| -> Result<u32, String> {
        let p = format!("/proc/sys/fs/{name}");
        let s = std::fs::read_to_string(&p).map_err(|e| format!("{p}: {e}"))?;
        s.trim().parse().map_err(|e| format!("{p}: {e}"))
    };
    Ok(Protected {
        hardlinks: read("protected_hardlinks")?,
        symlinks: read("protected_symlinks")?,
        regular: read("protected_regular")?,
        fifos: read("protected_fifos")?,
    })
}

/// Why the scenario's fs.protected_* values cannot be had here: each sysctl that one of its
/// operations reads (`link`: protected_hardlinks; `open_creat`: protected_regular and
/// protected_fifos; any walk once a `symlink` made a link: protected_symlinks) must be this
/// machine's value. Tests do not change the host's sysctls.
pub(super) fn sysctls_differ(s: &Scenario, host: &Protected) -> Option<String> {
    let w = &s.world.protected;
    let links = s.ops.iter().any(|o| matches!(o.op, Op::Link { .. }));
    let creat = s.ops.iter().any(|o| matches!(o.op, Op::OpenCreat { .. }));
    let symlinks = s.ops.iter().any(|o| matches!(o.op, Op::Symlink { .. }));
    let differs = |name: &str, mine: u32, theirs: u32| {
        (mine != theirs).then(|| format!("fs.{name} = {mine}, this machine has {theirs}"))
    };
    let mut why = Vec::new();
    if links {
        why.extend(differs("protected_hardlinks", w.hardlinks, host.hardlinks));
    }
    if symlinks {
        why.extend(differs("protected_symlinks", w.symlinks, host.symlinks));
    }
    if creat {
        why.extend(differs("protected_regular", w.regular, host.regular));
        why.extend(differs("protected_fifos", w.fifos, host.fifos));
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// The model mount a path is under as the executor realises it ("/" or "/NAME").
fn mount_of<'m>(r: &'m Realised, path: &str) -> Option<&'m str> {
    let first = path.split('/').find(|c| !c.is_empty())?;
    let mp = format!("/{first}");
    r.mounts
        .get_key_value(mp.as_str())
        .map(|(k, _)| k.as_str())
        .or(Some("/"))
}

/// The model directory holding the symlink at `path` (a normal path, or `None`).
fn parent_dir(path: &str) -> Option<&str> {
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

impl Realised<'_> {
    /// A symlink's target as the kernel must see it: an absolute target names a model path,
    /// which lives under the fixture's directory for its mount, so it is rewritten to that
    /// real path; a relative one is kept. Mounts are realised as separate directories, so a
    /// target whose walk would leave or enter a model mount by its text (`..` at a mount's
    /// root or at `/`, a component naming a mount point, dots in an absolute target), or that
    /// names the model's `/` itself, is refused with the reason.
    fn real_target(&self, path: &str, target: &str) -> Result<String, String> {
        let comps = target.split('/').filter(|c| !c.is_empty());
        // The model's `/` holds every other mount; here it is one directory beside them, so a
        // change made through a link to it (chmod, chown) would not reach walks to them.
        let to_root = "a link to the model's / (realised beside the other mounts, not above them)";
        if let Some(abs) = target.strip_prefix('/') {
            if comps.clone().next().is_none() {
                return Err(to_root.into());
            }
            if comps.clone().any(|c| c == "." || c == "..") {
                return Err(format!(
                    "the absolute target {target:?} has . or .. (not rewritten into the fixture)"
                ));
            }
            let real = self
                .real_path(&format!("/{abs}"))
                .ok_or_else(|| format!("no real path for {target}"))?;
            // A slash after the last component asks for a directory: kept.
            let tail = if target.ends_with('/') { "/" } else { "" };
            return Ok(format!("{}{tail}", real.to_string_lossy()));
        }
        let norm = credns_model::normalise(path).unwrap_or_default();
        let mut here = parent_dir(&norm).unwrap_or("/").to_owned();
        for c in comps {
            match c {
                "." => {}
                ".." => {
                    if here == "/" || self.mounts.contains_key(&here) {
                        return Err(format!(
                            "the relative target {target:?} of {path} goes above {here}, a mount's root (mounts are separate directories here)"
                        ));
                    }
                    here = parent_dir(&here).unwrap_or("/").to_owned();
                }
                name => {
                    here = if here == "/" {
                        format!("/{name}")
                    } else {
                        format!("{here}/{name}")
                    };
                    if self.mounts.contains_key(&here) {
                        return Err(format!(
                            "the relative target {target:?} of {path} enters the mount {here} (mounts are separate directories here)"
                        ));
                    }
                }
            }
        }
        if here == "/" {
            return Err(to_root.into());
        }
        Ok(target.to_owned())
    }

    /// Why `op` cannot be compared here, if it cannot.
    fn dirent_skip(&self, world: &World, paths: &[&str]) -> Option<String> {
        for p in paths {
            if *p == "/" || self.mounts.contains_key(*p) {
                return Some(format!(
                    "{p} is a mount point (realised as a separate directory)"
                ));
            }
        }
        if let [a, b] = paths {
            let (ma, mb) = (mount_of(self, a)?, mount_of(self, b)?);
            if ma != mb {
                let (ra, rb) = (&self.mounts[ma], &self.mounts[mb]);
                let attached = self.attached.contains(ra) || self.attached.contains(rb);
                let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).ok();
                if !attached && dev(ra) == dev(rb) {
                    return Some(format!(
                        "mounts {ma} and {mb} are one real filesystem with no mount between them"
                    ));
                }
            }
        }
        let _ = world;
        None
    }

    /// Perform a directory-entry op as `h`; `None` if `op` is not one.
    pub(super) fn perform_dirent(
        &self,
        world: &World,
        h: &UsernsChild,
        op: &Op,
    ) -> Option<Result<KernelAnswer, String>> {
        let paths: Vec<&str> = match op {
            Op::Unlink { path } | Op::Rmdir { path } | Op::Symlink { path, .. } => vec![path],
            Op::OpenCreat { path, .. } => vec![path],
            Op::Rename { from, to, .. } | Op::Link { from, to } => vec![from, to],
            _ => return None,
        };
        if let Some(why) = self.dirent_skip(world, &paths) {
            return Some(Ok(KernelAnswer::Skipped(why)));
        }
        if let Op::Symlink { target, path } = op {
            if let Err(why) = self.real_target(path, target) {
                return Some(Ok(KernelAnswer::Skipped(why)));
            }
        }
        Some(self.dirent_call(world, h, op))
    }

    fn dirent_call(&self, world: &World, h: &UsernsChild, op: &Op) -> Result<KernelAnswer, String> {
        let e = |x: credns_sys::Error| x.to_string();
        let real = |p: &str| {
            self.real_path(p)
                .ok_or_else(|| format!("no real path for {p}"))
        };
        let r: Result<Vec<(String, String)>, Errno> = match op {
            Op::Unlink { path } => h.unlink(&real(path)?).map_err(e)?.map(|()| Vec::new()),
            Op::Rmdir { path } => h.rmdir(&real(path)?).map_err(e)?.map(|()| Vec::new()),
            Op::Rename { from, to, flags } => h
                .rename(&real(from)?, &real(to)?, *flags)
                .map_err(e)?
                .map(|()| Vec::new()),
            Op::Link { from, to } => h
                .link(&real(from)?, &real(to)?)
                .map_err(e)?
                .map(|()| Vec::new()),
            Op::Symlink { target, path } => {
                let target = self.real_target(path, target)?;
                match h.symlink(target.as_ref(), &real(path)?).map_err(e)? {
                    Ok(()) => {
                        let dp = self
                            .disk_path_through_links(world, path, false)
                            .ok_or_else(|| format!("no disk path for {path}"))?;
                        let md = std::fs::symlink_metadata(&dp)
                            .map_err(|x| format!("lstat {}: {x}", dp.display()))?;
                        Ok(vec![
                            ("disk_uid".into(), md.uid().to_string()),
                            ("disk_gid".into(), md.gid().to_string()),
                        ])
                    }
                    Err(x) => Err(x),
                }
            }
            Op::OpenCreat {
                path,
                read,
                write,
                mode,
            } => {
                let acc = match (read, write) {
                    (true, true) => OFlags::RDWR,
                    (false, true) => OFlags::WRONLY,
                    _ => OFlags::RDONLY,
                };
                let flags = acc | OFlags::CREATE | OFlags::CLOEXEC;
                match h.open_mode(&real(path)?, flags, *mode).map_err(e)? {
                    Ok(fd) => {
                        h.close(fd).map_err(e)?.map_err(|x| format!("close: {x}"))?;
                        Ok(Vec::new())
                    }
                    Err(x) => Err(x),
                }
            }
            _ => return Err(format!("{op} is not a directory-entry operation")),
        };
        Ok(match r {
            Ok(v) => KernelAnswer::Done(v),
            Err(x) => KernelAnswer::Refused(x),
        })
    }
}
