//! One question asked of many tasks: `faccessat(path, mode)` with the path resolved once.
//!
//! Which inodes a path names does not depend on who walks it; only the search permission on
//! each directory does. An [`AccessQuery`] keeps the walk's lookups (the directories searched,
//! the mounts crossed, where the walk ends) as the dentry cache keeps them for the kernel, and
//! [`World::decide_access`] runs the caller's part of `do_faccessat` against them: the
//! credential override, `may_lookup` on every directory, then the file's permission. These
//! are the same functions [`World::decide`] runs for an [`Op::Access`](crate::Op::Access), so
//! the answers are the same.

use crate::outcome::{Outcome, Tracer, Verdict};
use crate::vfs::{normal_path, Lookup, Stop, WalkEnd};
use crate::world::{TaskRef, World};

/// `faccessat(path, mode)` (with `AT_EACCESS` when `eaccess`), resolved in a [`World`] by
/// [`World::access_query`] and decided for any task by [`World::decide_access`].
#[derive(Clone, Debug)]
pub struct AccessQuery {
    /// The path as walked (normalised), or as given when the model does not take it.
    path: String,
    mode: u32,
    eaccess: bool,
    lookups: Vec<Lookup>,
    end: WalkEnd,
    /// The world's generation when resolved: a later change to the tree makes it stale.
    generation: u64,
}

impl AccessQuery {
    /// The path, as walked.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The `mode` argument (`R_OK` 4, `W_OK` 2, `X_OK` 1).
    pub fn mode(&self) -> u32 {
        self.mode
    }
}

impl World {
    /// Resolve `faccessat(path, mode)` once, to be decided for many tasks by
    /// [`World::decide_access`]. `eaccess` is `AT_EACCESS` (check with the effective ids).
    pub fn access_query(&self, path: &str, mode: u32, eaccess: bool) -> AccessQuery {
        let normal = normal_path(path);
        let mut lookups = Vec::new();
        let end = match self.resolve_with(normal.as_deref(), crate::walk::Last::Follow, |s| {
            lookups.push(*s);
            Ok(())
        }) {
            Ok(end) => end,
            Err(_) => unreachable!("a visitor that never stops the walk"),
        };
        AccessQuery {
            path: normal.map_or_else(|| path.to_owned(), |p| p.into_owned()),
            mode,
            eaccess,
            lookups,
            end,
            generation: self.generation,
        }
    }

    /// The verdict of `q` for `task`: what [`World::decide`] answers for the same
    /// [`Op::Access`](crate::Op::Access), without a trace. A query resolved before the tree
    /// changed (a new inode or mount) is resolved again.
    pub fn decide_access(&self, task: TaskRef, q: &AccessQuery) -> Verdict {
        self.run_access(&mut Tracer::off(), task, q)
    }

    /// [`World::decide_access`] with the trace that [`World::op`] would give.
    pub fn explain_access(&self, task: TaskRef, q: &AccessQuery) -> Outcome {
        let mut t = Tracer::default();
        let result = self.run_access(&mut t, task, q);
        Outcome {
            result,
            output: None,
            trace: t.steps,
        }
    }

    fn run_access(&self, t: &mut Tracer, task: TaskRef, q: &AccessQuery) -> Verdict {
        // A proposal that changes what the VFS sees (fsid maps) answers in its view.
        match self.vfs_view_of(task) {
            Some(view) => view.run_access_here(t, task, q),
            None => self.run_access_here(t, task, q),
        }
    }

    fn run_access_here(&self, t: &mut Tracer, task: TaskRef, q: &AccessQuery) -> Verdict {
        if q.generation != self.generation {
            let fresh = self.access_query(&q.path, q.mode, q.eaccess);
            return self.run_access_here(t, task, &fresh);
        }
        self.trace_task(t, task);
        let r = self.access_as(t, task, &q.path, q.mode, q.eaccess, |t, cred| {
            for s in &q.lookups {
                self.may_lookup(t, cred, &q.path, s)?;
            }
            self.walk_end(t, &q.path, q.end.clone(), q.lookups.last())
        });
        match r {
            Ok(_) => Verdict::Allowed,
            Err(Stop::Errno(e)) => Verdict::Denied(e),
            Err(Stop::Unknown(why)) => Verdict::Unknown(why),
        }
    }
}
