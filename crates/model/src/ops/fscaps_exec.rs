//! File capabilities at exec: `get_file_caps`, `get_vfs_caps_from_disk` with
//! `rootid_owns_currentns`, and `bprm_caps_from_vfs_caps` (security/commoncap.c).

use credns_idmap::Errno;

use crate::caps::CapSet;
use crate::outcome::Tracer;
use crate::vfs::Stop;
use crate::world::{Cred, FileCaps, InodeRef, MountRef, World};

/// What `get_file_caps` left: the permitted set it computed (`pP' = (X & fP) | (pI & fI)`),
/// whether the file's effective bit is set, and whether the file has capabilities at all
/// (`has_fcap`).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct FileCapsAtExec {
    pub permitted: CapSet,
    pub effective: bool,
    pub has_fcap: bool,
}

impl World {
    /// `get_file_caps`: the file's capabilities count only on a mount that may carry set-id
    /// privileges (`mnt_may_suid`: not nosuid, the filesystem's namespace an ancestor of the
    /// caller's), and only if their root id is root of the caller's namespace or an ancestor.
    /// A file whose effective bit is set but whose permitted set the task cannot get in full
    /// fails the exec with EPERM ("capability-dumb" programs).
    pub(super) fn get_file_caps(
        &self,
        t: &mut Tracer,
        old: &Cred,
        m: MountRef,
        ino: InodeRef,
    ) -> Result<FileCapsAtExec, Stop> {
        let f = "get_file_caps";
        let none = FileCapsAtExec::default();
        let Some(c) = self.inode(ino).fscaps else {
            tr!(t.info(f, "the file has no security.capability", vec![]));
            return Ok(none);
        };
        let mnt = self.mount(m);
        let fs_ns = self.sb(self.inode(ino).sb).user_ns;
        if mnt.nosuid || !self.in_userns(fs_ns, old.user_ns) {
            tr!(t.info(
                f,
                "mnt_may_suid is false (nosuid mount, or the filesystem's namespace is not an ancestor of the caller's): file capabilities ignored",
                vec![("nosuid", mnt.nosuid.to_string())],
            ));
            return Ok(none);
        }
        if !self.get_vfs_caps_from_disk(t, old, m, ino, c) {
            return Ok(none);
        }
        self.bprm_caps_from_vfs_caps(t, old, c)
    }

    /// `get_vfs_caps_from_disk`: the root id (0 of the filesystem's namespace for revision 2,
    /// the stored one for revision 3) through the mount's idmap must be valid and
    /// `rootid_owns_currentns`: 0 in the caller's namespace or one of its ancestors.
    /// Otherwise `-ENODATA`: the file is taken as having no capabilities.
    fn get_vfs_caps_from_disk(
        &self,
        t: &mut Tracer,
        old: &Cred,
        m: MountRef,
        ino: InodeRef,
        c: FileCaps,
    ) -> bool {
        let f = "get_vfs_caps_from_disk";
        let fs_ns = self.sb(self.inode(ino).sb).user_ns;
        let stored = if c.version == 3 { c.rootid } else { 0 };
        let rootkuid = self.make_kuid(fs_ns, stored);
        let idmap = &self.mount(m).idmap;
        let rootvfsuid = self.make_vfsuid(idmap, fs_ns, rootkuid);
        let mut owner = None;
        if rootvfsuid.is_valid() {
            let mut ns = old.user_ns;
            loop {
                if self.from_kuid(ns, rootvfsuid.0) == Some(0) {
                    owner = Some(ns);
                    break;
                }
                match self.ns(ns).parent {
                    Some(p) => ns = p,
                    None => break,
                }
            }
        }
        tr!(t.check(
            owner.is_some(),
            "rootid_owns_currentns",
            "the caps' root id must be 0 of the caller's namespace or of an ancestor (else -ENODATA: no file capabilities)",
            vec![
                ("version", c.version.to_string()),
                ("stored_rootid", stored.to_string()),
                ("rootvfsuid", rootvfsuid.show()),
                ("root_of", owner.map(|n| self.ns(n).name.clone()).unwrap_or("-".into())),
            ],
        ));
        if owner.is_some() {
            tr!(t.info(
                f,
                "the file's capabilities apply",
                vec![
                    ("fP", c.permitted.to_string()),
                    ("fI", c.inheritable.to_string()),
                    ("fE", c.effective.to_string()),
                ],
            ));
        }
        owner.is_some()
    }

    /// `bprm_caps_from_vfs_caps`: `pP' = (X & fP) | (pI & fI)`; with fE set, a permitted bit
    /// of the file the task does not get fails the exec with EPERM.
    fn bprm_caps_from_vfs_caps(
        &self,
        t: &mut Tracer,
        old: &Cred,
        c: FileCaps,
    ) -> Result<FileCapsAtExec, Stop> {
        let f = "bprm_caps_from_vfs_caps";
        let permitted = old
            .cap_bset
            .intersect(c.permitted)
            .union(old.cap_inheritable.intersect(c.inheritable));
        let short = !c.permitted.is_subset(permitted);
        tr!(t.info(
            f,
            "pP' = (bounding & fP) | (pI & fI)",
            vec![
                ("cap_bset", old.cap_bset.to_string()),
                ("pI", old.cap_inheritable.to_string()),
                ("cap_permitted", permitted.to_string()),
            ],
        ));
        if short && c.effective {
            tr!(t.fail(
                f,
                "fE is set and the task does not get every bit of fP: the program is capability-dumb, exec fails",
                vec![],
            ));
            return Err(Errno::EPERM.into());
        }
        Ok(FileCapsAtExec {
            permitted,
            effective: c.effective,
            has_fcap: true,
        })
    }
}
