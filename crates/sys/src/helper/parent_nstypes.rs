//! Requests about namespaces other than user namespaces: the helper unshares one, enters one,
//! sets its hostname or binds a TCP port.

use std::os::fd::BorrowedFd;

use super::parent::UsernsChild;
use super::protocol::{self, Req};
use crate::{Errno, Error};

impl UsernsChild {
    /// `unshare(flags)` with `CLONE_NEW*` flags other than `CLONE_NEWUSER`.
    pub fn unshare_ns(&self, flags: u64) -> Result<Result<(), Errno>, Error> {
        Ok(self
            .syscall(protocol::CALL_UNSHARE_NS, [flags, 0, 0], &[])?
            .map(|_| ()))
    }

    /// `setns(ns, nstype)`: the fd is opened by the caller and passed over.
    pub fn setns_ns(&self, ns: BorrowedFd<'_>, nstype: u64) -> Result<Result<(), Errno>, Error> {
        let r = self.call(
            Req {
                op: protocol::OP_CALL,
                how: protocol::CALL_SETNS_NS,
                arg0: nstype,
                ..Req::default()
            },
            &[],
            Some(ns),
        )?;
        Ok(Self::answer(&r.rep))
    }

    /// `sethostname(name)` in the helper's UTS namespace.
    pub fn sethostname(&self, name: &[u8]) -> Result<Result<(), Errno>, Error> {
        Ok(self
            .syscall(protocol::CALL_SETHOSTNAME, [name.len() as u64, 0, 0], name)?
            .map(|_| ()))
    }

    /// `bind` of a fresh TCP socket to 0.0.0.0:`port` in the helper's network namespace (the
    /// socket is closed at once).
    pub fn bind_tcp(&self, port: u16) -> Result<Result<(), Errno>, Error> {
        Ok(self
            .syscall(protocol::CALL_BIND_TCP, [u64::from(port), 0, 0], &[])?
            .map(|_| ()))
    }

    /// `mount("none", path, fs_type, 0, NULL)` in the helper's mount namespace.
    pub fn mount_new(
        &self,
        fs_type: &str,
        path: &std::path::Path,
    ) -> Result<Result<(), Errno>, Error> {
        use std::os::unix::ffi::OsStrExt;
        let mut p = fs_type.as_bytes().to_vec();
        p.push(0);
        p.extend_from_slice(path.as_os_str().as_bytes());
        p.push(0);
        Ok(self
            .syscall(protocol::CALL_MOUNT_NEW, [0, 0, 0], &p)?
            .map(|_| ()))
    }

    /// `umount2(path, 0)` in the helper's mount namespace.
    pub fn umount(&self, path: &std::path::Path) -> Result<Result<(), Errno>, Error> {
        use std::os::unix::ffi::OsStrExt;
        let mut p = path.as_os_str().as_bytes().to_vec();
        p.push(0);
        Ok(self
            .syscall(protocol::CALL_UMOUNT, [0, 0, 0], &p)?
            .map(|_| ()))
    }

    /// `mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | flags, NULL)`: `flags` of `MS_RDONLY`
    /// (1), `MS_NOSUID` (2) and `MS_NOEXEC` (8).
    pub fn remount_bind(
        &self,
        path: &std::path::Path,
        flags: u64,
    ) -> Result<Result<(), Errno>, Error> {
        use std::os::unix::ffi::OsStrExt;
        let mut p = path.as_os_str().as_bytes().to_vec();
        p.push(0);
        Ok(self
            .syscall(protocol::CALL_REMOUNT_BIND, [flags, 0, 0], &p)?
            .map(|_| ()))
    }

    /// `mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)`: every mount of the helper's mount
    /// namespace made private, so that nothing mounted or unmounted in it propagates to the
    /// namespace it was copied from (nor from there into it).
    pub fn make_root_private(&self) -> Result<Result<(), Errno>, Error> {
        Ok(self
            .syscall(protocol::CALL_ROOT_PRIVATE, [0, 0, 0], &[])?
            .map(|_| ()))
    }

    /// `move_mount(mnt, "", AT_FDCWD, path, MOVE_MOUNT_F_EMPTY_PATH)` by the helper: a detached
    /// mount (`open_tree(2)` with `OPEN_TREE_CLONE`, made by the caller) attached at `path` in
    /// the helper's mount namespace.
    pub fn attach_mount(
        &self,
        mnt: BorrowedFd<'_>,
        path: &std::path::Path,
    ) -> Result<Result<(), Errno>, Error> {
        use std::os::unix::ffi::OsStrExt;
        let mut p = path.as_os_str().as_bytes().to_vec();
        p.push(0);
        let r = self.call(
            Req {
                op: protocol::OP_CALL,
                how: protocol::CALL_ATTACH_MOUNT,
                ..Req::default()
            },
            &p,
            Some(mnt),
        )?;
        Ok(Self::answer(&r.rep))
    }
}
