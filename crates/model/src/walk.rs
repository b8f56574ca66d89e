//! The path walk (fs/namei.c `link_path_walk`, `walk_component`, `pick_link`,
//! `follow_dotdot`), symbolic links included: a link met before the last component is always
//! followed; the last one is followed when the operation follows (`LOOKUP_FOLLOW`), after
//! `may_follow_link` (fs.protected_symlinks). At most `MAXSYMLINKS` links are followed (ELOOP).
//!
//! Which inodes a path names does not depend on who walks it; only the checks do (search
//! permission on each directory, `may_follow_link` on a trailing link). So the walk is split:
//! [`World::resolve_with`] walks and hands each check to a visitor as a [`Lookup`], which
//! [`World::may_lookup`] decides for a caller.

use crate::outcome::Tracer;
use crate::vfs::{Check, Stop, MAY_EXEC};
use crate::world::{Cred, InodeRef, MountRef, World, S_ISVTX};
use credns_idmap::Errno;

/// `MAXSYMLINKS`: the links one walk may follow.
pub(crate) const MAXSYMLINKS: u32 = 40;

/// What the walk does with a link as the last component.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Last {
    /// Not followed (`unlink`, `rename`, `mkdir`, …): the link itself is the answer.
    NoFollow,
    /// Followed (`LOOKUP_FOLLOW`).
    Follow,
    /// Followed, for `open(O_CREAT)`: a last component with a slash after it stops the walk
    /// (`open_last_lookups` answers EISDIR before looking it up).
    Creat,
}

/// What a [`Lookup`] checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LookupKind {
    /// `may_lookup`: search permission on the directory.
    Search,
    /// `pick_link` of the symbolic link `link` named by the component; `trailing` when it is
    /// the walk's last component (`WALK_TRAILING`: `may_follow_link` decides).
    Follow { link: InodeRef, trailing: bool },
}

/// One step of a walk: the directory `dir` in which the component `start..end` of a text
/// (the path, or the target of the link `text`) is looked up, a mount point when `mounted`
/// (the walk goes on at that mount's root), and what is checked there.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lookup {
    pub(crate) dir: (MountRef, InodeRef),
    text: Option<InodeRef>,
    start: usize,
    end: usize,
    mounted: Option<MountRef>,
    kind: LookupKind,
}

/// Where a walk ends, whoever walks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum WalkEnd {
    /// At an inode, looked up in `parent`; `canon` is its path when the walk followed a link
    /// or went through `.`/`..` (else the path as given).
    /// `slash`: the last component came from a link's target with a slash after it.
    Found {
        at: (MountRef, InodeRef),
        parent: (MountRef, InodeRef),
        canon: Option<String>,
        slash: bool,
    },
    /// The last component does not exist in `parent` (a create may make it at `canon`).
    Absent {
        parent: (MountRef, InodeRef),
        canon: Option<String>,
        slash: bool,
    },
    /// After the last lookup, a component under something that is not a directory (ENOTDIR).
    NotDir,
    /// After the last lookup, a component under a missing one (ENOENT).
    NoEnt,
    /// The last lookup named a link beyond `MAXSYMLINKS` (ELOOP).
    Loop,
    /// A path the model does not take (ENOENT).
    BadPath,
    /// Nothing is mounted at `/` (ENOENT).
    NoRoot,
}

/// The result of walking a path.
#[derive(Clone, Debug)]
pub(crate) struct Walk {
    /// The mount and inode of the last component, if it exists.
    pub(crate) target: Option<(MountRef, InodeRef)>,
    /// The directory holding the last component, and its mount.
    pub(crate) parent: (MountRef, InodeRef),
    /// The path of the last component when the walk followed a link (else the path given).
    pub(crate) canon: Option<String>,
    /// The last component came from a link's target with a slash after it (`f/`): the
    /// kernel then wants a directory (`LOOKUP_DIRECTORY`), and `open(O_CREAT)` is EISDIR.
    pub(crate) slash: bool,
}

impl Walk {
    /// The path of the last component: `given` (normalised) unless a link was followed.
    pub(crate) fn path_of(&self, given: &str) -> String {
        match &self.canon {
            Some(c) => c.clone(),
            None => crate::vfs::normal_path(given)
                .map(|p| p.into_owned())
                .unwrap_or_else(|| given.to_owned()),
        }
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

fn parent_of(path: &str) -> String {
    match path.rfind('/') {
        Some(0) | None => "/".into(),
        Some(i) => path[..i].into(),
    }
}

/// The directory of the path's component starting at `start` (a normal path).
fn prefix(path: &str, start: usize) -> String {
    if start <= 1 {
        "/".into()
    } else {
        path[..start - 1].into()
    }
}

impl World {
    /// The text a lookup's component is in.
    fn text_of<'a>(&'a self, path: &'a str, text: Option<InodeRef>) -> &'a str {
        match text {
            None => path,
            Some(l) => self.inode(l).link.as_deref().unwrap_or(""),
        }
    }

    /// How a trace names the component of `s`.
    fn component_shown(&self, path: &str, s: &Lookup) -> String {
        match s.text {
            None => format!("\"{}\"", &path[..s.end]),
            Some(l) => format!(
                "\"{}\" (in the target \"{}\" of a symbolic link)",
                &self.text_of(path, Some(l))[s.start..s.end],
                self.text_of(path, Some(l))
            ),
        }
    }

    /// Walk an absolute path: `may_lookup` (MAY_EXEC) on every directory that holds a
    /// component, crossing into mounts and following links (the last one when `follow`).
    /// The last component may be missing.
    pub(crate) fn path_walk(
        &self,
        t: &mut Tracer,
        cred: &Cred,
        path: &str,
        follow: Last,
    ) -> Result<Walk, Stop> {
        let normal = crate::vfs::normal_path(path);
        let shown = normal.as_deref().unwrap_or(path);
        let mut last = None;
        let end = self.resolve_with(normal.as_deref(), follow, |s| {
            self.may_lookup(t, cred, shown, s)?;
            last = Some(*s);
            Ok(())
        })?;
        self.walk_end(t, shown, end, last.as_ref())
    }

    /// The walk of `path` (normal, or `None` for a path the model does not take) without its
    /// checks, which depend on the caller: `visit` is given each check, in order, and may
    /// stop the walk; the answer is where the walk ends, as the kernel's would whoever walks.
    pub(crate) fn resolve_with(
        &self,
        path: Option<&str>,
        follow: Last,
        mut visit: impl FnMut(&Lookup) -> Result<(), Stop>,
    ) -> Result<WalkEnd, Stop> {
        let Some(path) = path else {
            return Ok(WalkEnd::BadPath);
        };
        let Some(root) = self.root_mount() else {
            return Ok(WalkEnd::NoRoot);
        };
        let (mut m, mut cur) = (root, self.mount(root).root);
        let mut parent = (m, cur);
        // The text walked (the path, or a link's target) and the offset of its next component;
        // the rest of the texts left for a link, as `nd->stack`.
        let (mut text, mut s, mut pos): (Option<InodeRef>, &str, usize) = (None, path, 1);
        let mut stack: Vec<(Option<InodeRef>, usize)> = Vec::new();
        // The path of `cur` once a link or a dot was walked (before: the path's prefix).
        let mut canon: Option<String> = None;
        let mut links = 0;
        // The last component had a slash after it (`lookup_last`: LOOKUP_FOLLOW|LOOKUP_DIRECTORY).
        let mut slash = false;
        loop {
            let b = s.as_bytes();
            while pos < b.len() && b[pos] == b'/' {
                pos += 1;
            }
            if pos >= b.len() {
                // A text with no component left (a target of only slashes: a pure jump).
                match stack.pop() {
                    Some((tx, p)) => {
                        (text, s, pos) = (tx, self.text_of(path, tx), p);
                        continue;
                    }
                    None => {
                        return Ok(WalkEnd::Found {
                            at: (m, cur),
                            parent,
                            canon,
                            slash,
                        })
                    }
                }
            }
            let end = s[pos..].find('/').map_or(b.len(), |p| pos + p);
            let mut next = end;
            while next < b.len() && b[next] == b'/' {
                next += 1;
            }
            let last_here = next == b.len();
            let trailing = last_here && stack.is_empty();
            if trailing && end < b.len() {
                slash = true;
            }
            if !self.inode(cur).is_dir() {
                return Ok(WalkEnd::NotDir);
            }
            let comp = &s[pos..end];
            let mut step = Lookup {
                dir: (m, cur),
                text,
                start: pos,
                end,
                mounted: None,
                kind: LookupKind::Search,
            };
            if comp == "." || comp == ".." {
                visit(&step)?;
                let c = canon.get_or_insert_with(|| prefix(path, pos));
                if comp == ".." {
                    // `follow_dotdot`: not above `/`; from a mount's root, to the mount
                    // point's parent; into whatever is mounted there.
                    *c = parent_of(c);
                    parent = (m, cur);
                    (m, cur) = self.lookup_unchecked(c).ok_or_else(|| {
                        Stop::unknown(format!("the model lost the directory \"{c}\""))
                    })?;
                }
            } else {
                let child_canon = canon.as_ref().map(|c| join(c, comp));
                step.mounted = match &child_canon {
                    Some(cc) => self.mount_at(cc),
                    None => self.mount_at(&path[..end]),
                };
                visit(&step)?;
                if slash && follow == Last::Creat {
                    return Ok(WalkEnd::Absent {
                        parent: (m, cur),
                        canon: None,
                        slash,
                    });
                }
                let (nm, child) = match step.mounted {
                    Some(i) => (i, self.mount(i).root),
                    None => match self.inode(cur).children.get(comp) {
                        Some(c) => (m, *c),
                        None if trailing => {
                            let canon = child_canon.or_else(|| canon.map(|c| join(&c, comp)));
                            return Ok(WalkEnd::Absent {
                                parent: (m, cur),
                                canon,
                                slash,
                            });
                        }
                        None => return Ok(WalkEnd::NoEnt),
                    },
                };
                if self.inode(child).is_symlink() && (follow != Last::NoFollow || !trailing) {
                    links += 1;
                    if links > MAXSYMLINKS {
                        return Ok(WalkEnd::Loop);
                    }
                    visit(&Lookup {
                        kind: LookupKind::Follow {
                            link: child,
                            trailing,
                        },
                        ..step
                    })?;
                    if !last_here {
                        stack.push((text, next));
                    }
                    let c = canon.get_or_insert_with(|| prefix(path, pos));
                    let body = self.text_of(path, Some(child));
                    if body.starts_with('/') {
                        // `nd_jump_root`.
                        (m, cur) = (root, self.mount(root).root);
                        *c = "/".into();
                    }
                    (text, s, pos) = (Some(child), body, 0);
                    continue;
                }
                parent = (m, cur);
                (m, cur) = (nm, child);
                if child_canon.is_some() {
                    canon = child_canon;
                }
            }
            if !last_here {
                pos = next;
                continue;
            }
            match stack.pop() {
                Some((tx, p)) => (text, s, pos) = (tx, self.text_of(path, tx), p),
                None => {
                    return Ok(WalkEnd::Found {
                        at: (m, cur),
                        parent,
                        canon,
                        slash,
                    })
                }
            }
        }
    }

    /// The check of one step of a walk of `path` for `cred`: search permission on a directory
    /// (`may_lookup`), or following a link.
    #[inline(always)]
    pub(crate) fn may_lookup(&self, t: &mut Tracer, cred: &Cred, path: &str, s: &Lookup) -> Check {
        if s.kind == LookupKind::Search && self.allowed_to_all(t, s.dir.1, MAY_EXEC) {
            return Ok(());
        }
        self.may_lookup_traced(t, cred, path, s)
    }

    /// `may_lookup` with its trace.
    #[inline(never)]
    fn may_lookup_traced(&self, t: &mut Tracer, cred: &Cred, path: &str, s: &Lookup) -> Check {
        if let LookupKind::Follow { link, trailing } = s.kind {
            return self.pick_link(t, cred, path, s, link, trailing);
        }
        let comp = &self.text_of(path, s.text)[s.start..s.end];
        let text = self.text_of(path, s.text);
        let dir = match s.text {
            None => format!("\"{}\"", prefix(path, s.start)),
            Some(_) if text.starts_with('/') => {
                format!("\"{}\" (of a link's target)", prefix(text, s.start))
            }
            Some(_) if s.start == 0 => "the link's directory".into(),
            Some(_) => format!(
                "\"{}\" from the link's directory",
                text[..s.start].trim_end_matches('/')
            ),
        };
        tr!(t.info(
            "may_lookup",
            format!("search permission on {dir} to look up \"{comp}\""),
            vec![],
        ));
        // `may_lookup` has tried the answer-at-once case already.
        t.nested(|t| self.inode_permission_traced(t, cred, s.dir.0, s.dir.1, MAY_EXEC))?;
        if let Some(m) = s.mounted {
            tr!(t.info(
                "link_path_walk",
                format!(
                    "{} is a mount point: continue on filesystem \"{}\"",
                    self.component_shown(path, s),
                    self.sb(self.mount(m).sb).name
                ),
                vec![],
            ));
        }
        Ok(())
    }

    /// `pick_link`: a trailing link passes `may_follow_link` first; then the walk goes on in
    /// the link's target.
    fn pick_link(
        &self,
        t: &mut Tracer,
        cred: &Cred,
        path: &str,
        s: &Lookup,
        link: InodeRef,
        trailing: bool,
    ) -> Check {
        if trailing {
            self.may_follow_link(t, cred, s, link)?;
        }
        let body = self.inode(link).link.as_deref().unwrap_or("");
        tr!(t.info(
            "pick_link",
            format!(
                "{} is a symbolic link: the walk goes on in its target{}",
                self.component_shown(path, s),
                if body.starts_with('/') {
                    ", from the root (nd_jump_root)"
                } else {
                    ", from the link's directory"
                }
            ),
            vec![("target", body.to_owned())],
        ));
        Ok(())
    }

    /// `may_follow_link`: with fs.protected_symlinks, a trailing link in a sticky
    /// world-writable directory is followed only by its owner, or when the directory's owner
    /// owns it (owners as seen through the mount).
    fn may_follow_link(&self, t: &mut Tracer, cred: &Cred, s: &Lookup, link: InodeRef) -> Check {
        let f = "may_follow_link";
        let p = self.protected.symlinks;
        if p == 0 {
            tr!(t.pass(
                f,
                "fs.protected_symlinks is off",
                vec![("protected_symlinks", "0".into())]
            ));
            return Ok(());
        }
        let idmap = &self.mount(s.dir.0).idmap;
        let vu = self.i_uid_into_vfsuid(idmap, link);
        let ids = vec![
            ("link_vfsuid", vu.show()),
            ("fsuid", cred.fsuid.0.to_string()),
        ];
        if vu.eq_kuid(cred.fsuid) {
            tr!(t.pass(f, "the follower's fsuid owns the link", ids));
            return Ok(());
        }
        let mode = self.inode(s.dir.1).mode;
        if mode & (S_ISVTX | 0o002) != (S_ISVTX | 0o002) {
            tr!(t.pass(
                f,
                "the link's directory is not both sticky and world-writable",
                vec![("dir_mode", crate::vfs::mode_str(mode))]
            ));
            return Ok(());
        }
        let du = self.i_uid_into_vfsuid(idmap, s.dir.1);
        let ok = du.is_valid() && du == vu;
        let mut ids = ids;
        ids.push(("dir_vfsuid", du.show()));
        tr!(t.check(
            ok,
            f,
            "a link in a sticky world-writable directory: its owner must own the directory (fs.protected_symlinks)",
            ids
        ));
        if ok {
            Ok(())
        } else {
            Err(Errno::EACCES.into())
        }
    }

    /// The end of the walk of `path` whose last check was `last`.
    pub(crate) fn walk_end(
        &self,
        t: &mut Tracer,
        path: &str,
        end: WalkEnd,
        last: Option<&Lookup>,
    ) -> Result<Walk, Stop> {
        let f = "link_path_walk";
        let here = || last.map_or_else(|| "\"/\"".to_owned(), |s| self.component_shown(path, s));
        match end {
            WalkEnd::Found {
                at,
                parent,
                canon,
                slash,
            } => Ok(Walk {
                target: Some(at),
                parent,
                canon,
                slash,
            }),
            WalkEnd::Absent {
                parent,
                canon,
                slash,
            } => Ok(Walk {
                target: None,
                parent,
                canon,
                slash,
            }),
            WalkEnd::NotDir => {
                tr!(t.fail(f, format!("{} is not a directory", here()), vec![]));
                Err(Errno::ENOTDIR.into())
            }
            WalkEnd::Loop => {
                tr!(t.fail(
                    "pick_link",
                    format!(
                        "{}: more than {MAXSYMLINKS} symbolic links followed (MAXSYMLINKS)",
                        here()
                    ),
                    vec![]
                ));
                Err(Errno::ELOOP.into())
            }
            WalkEnd::NoEnt => {
                tr!(t.fail(f, format!("{} does not exist", here()), vec![]));
                Err(Errno::ENOENT.into())
            }
            WalkEnd::BadPath => {
                tr!(t.fail(
                    f,
                    "the model only takes absolute paths without . or ..",
                    vec![("path", path.into())],
                ));
                Err(Errno::ENOENT.into())
            }
            WalkEnd::NoRoot => {
                tr!(t.fail(f, "nothing is mounted at /", vec![]));
                Err(Errno::ENOENT.into())
            }
        }
    }
}
