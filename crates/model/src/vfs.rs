//! Idmapped mounts (fs/mnt_idmapping.c), path walk and permission checks (fs/namei.c,
//! fs/posix_acl.c).

use credns_idmap::{Kgid, Kuid};

use crate::caps::Cap;
use crate::outcome::Tracer;
use crate::world::{AclTag, Cred, InodeRef, MntIdmap, MountRef, NsRef, World, S_IRWXG, S_IXUGO};
use credns_idmap::Errno;

/// `MAY_EXEC`.
pub const MAY_EXEC: u32 = 1;
/// `MAY_WRITE`.
pub const MAY_WRITE: u32 = 2;
/// `MAY_READ`.
pub const MAY_READ: u32 = 4;

/// Why a decision stopped: an errno, or something the model does not know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    Errno(Errno),
    Unknown(String),
}

impl Stop {
    /// `Unknown`, with the reason.
    pub(crate) fn unknown(why: impl Into<String>) -> Stop {
        Stop::Unknown(why.into())
    }
}

impl From<Errno> for Stop {
    fn from(e: Errno) -> Stop {
        Stop::Errno(e)
    }
}

pub(crate) type Check = Result<(), Stop>;

/// An id as it appears through a mount (`vfsuid_t`); its value is in kernel-id space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vfsuid(pub Kuid);

/// `vfsgid_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vfsgid(pub Kgid);

impl Vfsuid {
    /// `vfsuid_valid`.
    pub fn is_valid(self) -> bool {
        self.0.is_valid()
    }
    /// `vfsuid_eq_kuid`: valid and equal.
    pub fn eq_kuid(self, k: Kuid) -> bool {
        self.is_valid() && self.0 == k
    }
    pub(crate) fn show(self) -> String {
        if self.is_valid() {
            self.0 .0.to_string()
        } else {
            "INVALID".into()
        }
    }
}

impl Vfsgid {
    /// `vfsgid_valid`.
    pub fn is_valid(self) -> bool {
        self.0.is_valid()
    }
    /// `vfsgid_eq_kgid`.
    pub fn eq_kgid(self, k: Kgid) -> bool {
        self.is_valid() && self.0 == k
    }
    pub(crate) fn show(self) -> String {
        if self.is_valid() {
            self.0 .0.to_string()
        } else {
            "INVALID".into()
        }
    }
}

pub(crate) fn mode_str(mode: u32) -> String {
    format!("{:04o}", mode & 0o7777)
}

pub(crate) fn mask_str(mask: u32) -> String {
    let mut s = String::new();
    s.push(if mask & MAY_READ != 0 { 'r' } else { '-' });
    s.push(if mask & MAY_WRITE != 0 { 'w' } else { '-' });
    s.push(if mask & MAY_EXEC != 0 { 'x' } else { '-' });
    s
}

/// `path` as the walk takes it: itself when normal, else normalised (`None`: not absolute, or
/// with `.` or `..`, which the model does not take).
pub(crate) fn normal_path(path: &str) -> Option<std::borrow::Cow<'_, str>> {
    if crate::world::is_normal_path(path) {
        Some(std::borrow::Cow::Borrowed(path))
    } else {
        crate::world::normalise(path).map(std::borrow::Cow::Owned)
    }
}

/// The first test of `acl_permission_check`: the owner, group and other bits of `mode` all
/// grant `mask` (read, write, exec), and there is no ACL that could say otherwise.
pub(crate) fn granted_to_all(mode: u32, mask: u32, has_acl: bool) -> bool {
    ((mask & 7) * 0o111) & !mode == 0 && !has_acl
}

pub(crate) use crate::walk::{Lookup, Walk, WalkEnd};

impl World {
    pub(crate) fn idmap_name(&self, idmap: &MntIdmap) -> String {
        match idmap {
            MntIdmap::Nop => "nop_mnt_idmap".into(),
            MntIdmap::Mapped { from, .. } => format!("idmap of \"{}\"", self.ns(*from).name),
        }
    }

    /// `make_vfsuid(idmap, fs_userns, kuid)`.
    pub fn make_vfsuid(&self, idmap: &MntIdmap, fs_ns: NsRef, k: Kuid) -> Vfsuid {
        match idmap {
            MntIdmap::Nop => Vfsuid(k),
            MntIdmap::Mapped { uid_map, .. } => {
                let u = if fs_ns == self.init_ns() {
                    Some(k.0)
                } else {
                    self.from_kuid(fs_ns, k)
                };
                match u.and_then(|u| uid_map.map_down(u)) {
                    Some(v) => Vfsuid(Kuid(v)),
                    None => Vfsuid(Kuid::INVALID),
                }
            }
        }
    }

    /// `make_vfsgid`.
    pub fn make_vfsgid(&self, idmap: &MntIdmap, fs_ns: NsRef, k: Kgid) -> Vfsgid {
        match idmap {
            MntIdmap::Nop => Vfsgid(k),
            MntIdmap::Mapped { gid_map, .. } => {
                let u = if fs_ns == self.init_ns() {
                    Some(k.0)
                } else {
                    self.from_kgid(fs_ns, k)
                };
                match u.and_then(|u| gid_map.map_down(u)) {
                    Some(v) => Vfsgid(Kgid(v)),
                    None => Vfsgid(Kgid::INVALID),
                }
            }
        }
    }

    /// `from_vfsuid(idmap, fs_userns, vfsuid)`: back to the kernel id stored in the inode.
    pub fn from_vfsuid(&self, idmap: &MntIdmap, fs_ns: NsRef, v: Vfsuid) -> Kuid {
        match idmap {
            MntIdmap::Nop => v.0,
            MntIdmap::Mapped { uid_map, .. } => {
                let Some(u) = (if v.is_valid() {
                    uid_map.map_up(v.0 .0)
                } else {
                    None
                }) else {
                    return Kuid::INVALID;
                };
                if fs_ns == self.init_ns() {
                    Kuid(u)
                } else {
                    self.make_kuid(fs_ns, u)
                }
            }
        }
    }

    /// `from_vfsgid`.
    pub fn from_vfsgid(&self, idmap: &MntIdmap, fs_ns: NsRef, v: Vfsgid) -> Kgid {
        match idmap {
            MntIdmap::Nop => v.0,
            MntIdmap::Mapped { gid_map, .. } => {
                let Some(u) = (if v.is_valid() {
                    gid_map.map_up(v.0 .0)
                } else {
                    None
                }) else {
                    return Kgid::INVALID;
                };
                if fs_ns == self.init_ns() {
                    Kgid(u)
                } else {
                    self.make_kgid(fs_ns, u)
                }
            }
        }
    }

    /// `i_uid_into_vfsuid(idmap, inode)`.
    pub fn i_uid_into_vfsuid(&self, idmap: &MntIdmap, ino: InodeRef) -> Vfsuid {
        let i = self.inode(ino);
        self.make_vfsuid(idmap, self.sb(i.sb).user_ns, i.uid)
    }

    /// `i_gid_into_vfsgid(idmap, inode)`.
    pub fn i_gid_into_vfsgid(&self, idmap: &MntIdmap, ino: InodeRef) -> Vfsgid {
        let i = self.inode(ino);
        self.make_vfsgid(idmap, self.sb(i.sb).user_ns, i.gid)
    }

    /// `vfsuid_has_mapping(ns, vfsuid)`.
    pub fn vfsuid_has_mapping(&self, ns: NsRef, v: Vfsuid) -> bool {
        v.is_valid() && self.kuid_has_mapping(ns, v.0)
    }

    /// `vfsgid_has_mapping(ns, vfsgid)`.
    pub fn vfsgid_has_mapping(&self, ns: NsRef, v: Vfsgid) -> bool {
        v.is_valid() && self.kgid_has_mapping(ns, v.0)
    }

    /// Record the translation of an inode's owner and group through a mount.
    pub(crate) fn trace_inode_ids(
        &self,
        t: &mut Tracer,
        idmap: &MntIdmap,
        ino: InodeRef,
        what: &str,
    ) -> (Vfsuid, Vfsgid) {
        let vu = self.i_uid_into_vfsuid(idmap, ino);
        let vg = self.i_gid_into_vfsgid(idmap, ino);
        self.record_inode_ids(t, idmap, ino, what, vu, vg);
        (vu, vg)
    }

    /// The trace step of [`World::trace_inode_ids`].
    fn record_inode_ids(
        &self,
        t: &mut Tracer,
        idmap: &MntIdmap,
        ino: InodeRef,
        what: &str,
        vu: Vfsuid,
        vg: Vfsgid,
    ) {
        let i = self.inode(ino);
        let sbns = self.sb(i.sb).user_ns;
        tr!(t.info(
            "i_uid_into_vfsuid",
            format!(
                "{what}: stored owner and group through the mount's {}",
                self.idmap_name(idmap)
            ),
            vec![
                ("i_uid", self.show_uid(i.uid)),
                ("i_gid", self.show_gid(i.gid)),
                (
                    "on_disk",
                    format!(
                        "{}:{}",
                        self.show_in(sbns, i.uid.0, true),
                        self.show_in(sbns, i.gid.0, false)
                    ),
                ),
                ("s_user_ns", self.ns(sbns).name.clone()),
                ("vfsuid", vu.show()),
                ("vfsgid", vg.show()),
            ],
        ));
    }

    /// `inode_permission(idmap, inode, mask)`.
    #[inline]
    pub(crate) fn inode_permission(
        &self,
        t: &mut Tracer,
        cred: &Cred,
        m: MountRef,
        ino: InodeRef,
        mask: u32,
    ) -> Check {
        if self.allowed_to_all(t, ino, mask) {
            return Ok(());
        }
        self.inode_permission_traced(t, cred, m, ino, mask)
    }

    /// Untraced, a request without write on a `generic_permission` filesystem that every
    /// class grants, with no ACL, is allowed by the first test of `acl_permission_check`
    /// whoever asks (most directories of a walk): `inode_permission` can answer at once.
    #[inline(always)]
    pub(crate) fn allowed_to_all(&self, t: &Tracer, ino: InodeRef, mask: u32) -> bool {
        if t.on || mask & MAY_WRITE != 0 {
            return false;
        }
        let i = self.inode(ino);
        let sb = self.sb(i.sb);
        sb.generic_permission && granted_to_all(i.mode, mask, sb.posix_acl && i.acl.is_some())
    }

    /// `inode_permission` from its trace line on (out of line: the common case above is
    /// small).
    #[inline(never)]
    pub(crate) fn inode_permission_traced(
        &self,
        t: &mut Tracer,
        cred: &Cred,
        m: MountRef,
        ino: InodeRef,
        mask: u32,
    ) -> Check {
        tr!(t.info(
            "inode_permission",
            format!(
                "{} on an inode of \"{}\" mode {}",
                mask_str(mask),
                self.sb(self.inode(ino).sb).name,
                mode_str(self.inode(ino).mode)
            ),
            vec![],
        ));
        t.enter();
        let r = self.inode_permission_steps(t, cred, m, ino, mask);
        t.leave();
        r
    }

    /// The steps of `inode_permission` below its trace line: the write checks, then the
    /// filesystem's permission function.
    fn inode_permission_steps(
        &self,
        t: &mut Tracer,
        cred: &Cred,
        m: MountRef,
        ino: InodeRef,
        mask: u32,
    ) -> Check {
        let f = "inode_permission";
        let i = self.inode(ino);
        let sb = self.sb(i.sb);
        if mask & MAY_WRITE != 0 {
            if sb.read_only && (i.is_reg() || i.is_dir()) {
                tr!(t.fail(
                    "sb_permission",
                    "write to a read-only filesystem",
                    vec![("sb", sb.name.clone())]
                ));
                return Err(Errno::EROFS.into());
            }
            if i.immutable {
                tr!(t.fail(f, "write to an immutable inode", vec![]));
                return Err(Errno::EPERM.into());
            }
            let idmap = &self.mount(m).idmap;
            let (vu, vg) = self.trace_inode_ids(t, idmap, ino, "HAS_UNMAPPED_ID");
            let ok = vu.is_valid() && vg.is_valid();
            tr!(t.check(ok, f, "writing needs the inode's owner and group valid through the mount (HAS_UNMAPPED_ID)", vec![]));
            if !ok {
                return Err(Errno::EACCES.into());
            }
        }
        if !sb.generic_permission {
            let why = format!(
                "filesystem type \"{}\" is not modelled (it may have its own ->permission)",
                sb.fs_type
            );
            tr!(t.step(
                "do_inode_permission",
                why.clone(),
                vec![],
                crate::outcome::StepVerdict::Unknown
            ));
            return Err(Stop::unknown(why));
        }
        if let Some(r) = self.proposal(|p| p.inode_permission(self, t, cred, m, ino, mask)) {
            return r;
        }
        self.generic_permission(t, cred, m, ino, mask)
    }

    /// `generic_permission`.
    pub(crate) fn generic_permission(
        &self,
        t: &mut Tracer,
        cred: &Cred,
        m: MountRef,
        ino: InodeRef,
        mask: u32,
    ) -> Check {
        let f = "generic_permission";
        let idmap = &self.mount(m).idmap;
        let i = self.inode(ino);
        match self.acl_permission_check(t, cred, m, ino, mask) {
            Err(Stop::Errno(Errno::EACCES)) => {}
            other => return other,
        }
        if i.is_dir() {
            if mask & MAY_WRITE == 0 {
                tr!(t.info(
                    f,
                    "directory without write: CAP_DAC_READ_SEARCH overrides",
                    vec![],
                ));
                if t.nested(|t| {
                    self.capable_wrt_inode_uidgid(t, cred, idmap, ino, Cap::DAC_READ_SEARCH)
                }) {
                    return Ok(());
                }
            }
            tr!(t.info(f, "directory: CAP_DAC_OVERRIDE overrides", vec![]));
            if t.nested(|t| self.capable_wrt_inode_uidgid(t, cred, idmap, ino, Cap::DAC_OVERRIDE)) {
                return Ok(());
            }
            tr!(t.fail(f, "no override applies", vec![]));
            return Err(Errno::EACCES.into());
        }
        let mask = mask & (MAY_READ | MAY_WRITE | MAY_EXEC);
        if mask == MAY_READ {
            tr!(t.info(f, "read only: CAP_DAC_READ_SEARCH overrides", vec![]));
            if t.nested(|t| {
                self.capable_wrt_inode_uidgid(t, cred, idmap, ino, Cap::DAC_READ_SEARCH)
            }) {
                return Ok(());
            }
        }
        if mask & MAY_EXEC == 0 || i.mode & S_IXUGO != 0 {
            tr!(t.info(
                f,
                "CAP_DAC_OVERRIDE overrides (no exec wanted, or some x bit is set)",
                vec![],
            ));
            if t.nested(|t| self.capable_wrt_inode_uidgid(t, cred, idmap, ino, Cap::DAC_OVERRIDE)) {
                return Ok(());
            }
        } else {
            tr!(t.fail(
                f,
                "exec of a file with no x bit at all: CAP_DAC_OVERRIDE cannot override",
                vec![("mode", mode_str(i.mode))],
            ));
        }
        tr!(t.fail(f, "no override applies", vec![]));
        Err(Errno::EACCES.into())
    }

    /// `acl_permission_check`.
    fn acl_permission_check(
        &self,
        t: &mut Tracer,
        cred: &Cred,
        m: MountRef,
        ino: InodeRef,
        mask: u32,
    ) -> Check {
        let f = "acl_permission_check";
        let idmap = &self.mount(m).idmap;
        let i = self.inode(ino);
        let sb = self.sb(i.sb);
        let want = mask & 7;
        let mut mode = i.mode;
        let has_acl = sb.posix_acl && i.acl.is_some();
        if granted_to_all(mode, want, has_acl) {
            tr!(t.pass(
                f,
                "every class (owner, group, other) grants the request and there is no ACL",
                vec![("want", mask_str(want)), ("mode", mode_str(mode))],
            ));
            return Ok(());
        }
        // The group is translated only when the owner check fails, as in the kernel.
        let vu = self.i_uid_into_vfsuid(idmap, ino);
        if t.on {
            let vg = self.i_gid_into_vfsgid(idmap, ino);
            self.record_inode_ids(t, idmap, ino, "owner check", vu, vg);
        }
        if vu.eq_kuid(cred.fsuid) {
            let ok = want & !(mode >> 6) & 7 == 0;
            tr!(t.check(
                ok,
                f,
                "the caller's fsuid owns the inode: the owner bits alone decide",
                vec![
                    ("fsuid", cred.fsuid.0.to_string()),
                    ("want", mask_str(want)),
                    ("owner_bits", mask_str((mode >> 6) & 7)),
                ],
            ));
            return if ok {
                Ok(())
            } else {
                Err(Errno::EACCES.into())
            };
        }
        tr!(t.info(
            f,
            "not the owner",
            vec![("vfsuid", vu.show()), ("fsuid", cred.fsuid.0.to_string())],
        ));
        if sb.posix_acl && mode & S_IRWXG != 0 {
            if let Some(r) = self.posix_acl_permission(t, cred, m, ino, want) {
                return r;
            }
        }
        if want & (mode ^ (mode >> 3)) != 0 {
            let vg = self.i_gid_into_vfsgid(idmap, ino);
            if t.nested(|t| self.vfsgid_in_group_p(t, cred, vg, "the inode's group")) {
                mode >>= 3;
                let ok = want & !mode & 7 == 0;
                tr!(t.check(
                    ok,
                    f,
                    "in the inode's group: the group bits decide",
                    vec![("want", mask_str(want)), ("group_bits", mask_str(mode & 7))],
                ));
                return if ok {
                    Ok(())
                } else {
                    Err(Errno::EACCES.into())
                };
            }
        } else {
            tr!(t.info(
                f,
                "group and other bits agree for the request; group membership not consulted",
                vec![],
            ));
        }
        let ok = want & !mode & 7 == 0;
        tr!(t.check(
            ok,
            f,
            "the other bits decide",
            vec![("want", mask_str(want)), ("other_bits", mask_str(mode & 7))],
        ));
        if ok {
            Ok(())
        } else {
            Err(Errno::EACCES.into())
        }
    }

    /// `check_acl` + `posix_acl_permission`. `None` when the inode has no ACL (-EAGAIN).
    fn posix_acl_permission(
        &self,
        t: &mut Tracer,
        cred: &Cred,
        m: MountRef,
        ino: InodeRef,
        want: u32,
    ) -> Option<Check> {
        let f = "posix_acl_permission";
        let idmap = &self.mount(m).idmap;
        let i = self.inode(ino);
        let acl = i.acl.as_ref()?;
        let fs_ns = self.sb(i.sb).user_ns;
        tr!(t.info(
            "check_acl",
            "the inode has an access ACL",
            vec![("entries", acl.0.len().to_string())],
        ));
        let r = t.nested(|t| {
            let mut found = false;
            let entries = &acl.0;
            let mut matched: Option<(usize, bool)> = None; // (index, apply mask)
            for (idx, e) in entries.iter().enumerate() {
                match e.tag {
                    AclTag::UserObj => {
                        let vu = self.i_uid_into_vfsuid(idmap, ino);
                        if vu.eq_kuid(cred.fsuid) {
                            tr!(t.pass(f, "user:: entry matches the caller's fsuid", vec![]));
                            matched = Some((idx, false));
                            break;
                        }
                    }
                    AclTag::User => {
                        let k = Kuid(e.id.unwrap_or(u32::MAX));
                        let vu = self.make_vfsuid(idmap, fs_ns, k);
                        let hit = vu.eq_kuid(cred.fsuid);
                        tr!(t.info(
                            f,
                            format!("user:{}: entry through the mount", self.show_in(fs_ns, k.0, true)),
                            vec![("e_uid", self.show_uid(k)), ("vfsuid", vu.show()), ("fsuid", cred.fsuid.0.to_string()), ("match", hit.to_string())],
                        ));
                        if hit {
                            matched = Some((idx, true));
                            break;
                        }
                    }
                    AclTag::GroupObj | AclTag::Group => {
                        let vg = if e.tag == AclTag::GroupObj {
                            self.i_gid_into_vfsgid(idmap, ino)
                        } else {
                            self.make_vfsgid(idmap, fs_ns, Kgid(e.id.unwrap_or(u32::MAX)))
                        };
                        let label = if e.tag == AclTag::GroupObj { "group::".to_string() } else { format!("group:{}:", self.show_in(fs_ns, e.id.unwrap_or(u32::MAX), false)) };
                        if self.in_group_p(cred, vg.0) && vg.is_valid() {
                            found = true;
                            let enough = e.perm & want == want;
                            tr!(t.info(f, format!("{label} entry: the caller is in the group"), vec![("vfsgid", vg.show()), ("perm", mask_str(e.perm)), ("want", mask_str(want)), ("grants", enough.to_string())]));
                            if enough {
                                matched = Some((idx, true));
                                break;
                            }
                        } else {
                            tr!(t.info(f, format!("{label} entry: the caller is not in the group"), vec![("vfsgid", vg.show())]));
                        }
                    }
                    AclTag::Mask => {}
                    AclTag::Other => {
                        if found {
                            tr!(t.fail(f, "a group entry matched but none grants the request; other:: is not consulted", vec![]));
                            return Err(Errno::EACCES.into());
                        }
                        tr!(t.info(f, "no user or group entry matched: other:: decides", vec![]));
                        matched = Some((idx, false));
                        break;
                    }
                }
            }
            let Some((idx, use_mask)) = matched else {
                tr!(t.fail(f, "malformed ACL", vec![]));
                return Err(Errno::EIO.into());
            };
            let e = entries[idx];
            if use_mask {
                if let Some(mk) = entries[idx + 1..].iter().find(|x| x.tag == AclTag::Mask) {
                    let ok = e.perm & mk.perm & want == want;
                    tr!(t.check(ok, f, "the entry's permissions limited by mask::", vec![("perm", mask_str(e.perm)), ("mask", mask_str(mk.perm)), ("want", mask_str(want))]));
                    return if ok { Ok(()) } else { Err(Errno::EACCES.into()) };
                }
            }
            let ok = e.perm & want == want;
            tr!(t.check(ok, f, "the entry's permissions", vec![("perm", mask_str(e.perm)), ("want", mask_str(want))]));
            if ok {
                Ok(())
            } else {
                Err(Errno::EACCES.into())
            }
        });
        Some(r)
    }
}
