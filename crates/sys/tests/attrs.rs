//! Attribute changes made as a helper (`truncate`, `utimensat`, `setxattr`) and the inode
//! flags, against the running kernel. Needs root (a helper as root in the initial namespace,
//! and CAP_LINUX_IMMUTABLE for the flags); without it each test prints "skipped" and returns,
//! unless CREDNS_REQUIRE_ALL=1.

mod common;

use std::os::unix::fs::PermissionsExt;

use credns_sys::fsflags::{clear_inode_flags_below, set_inode_flags, InodeFlags};
use credns_sys::xattr::get_xattr;
use credns_sys::{Errno, UnshareOptions, UsernsChild, UtimensTimes};

fn needs_root(test: &str) -> bool {
    common::needs_root(test, "CAP_LINUX_IMMUTABLE, helpers as root")
}

#[test]
fn truncate_utimes_and_setxattr_as_a_helper_meet_the_flags() {
    if !needs_root("truncate_utimes_and_setxattr_as_a_helper_meet_the_flags") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("f");
    std::fs::write(&f, b"0123456789").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o4777)).unwrap();
    let h = UsernsChild::spawn(&UnshareOptions {
        new_userns: false,
        ..UnshareOptions::new()
    })
    .unwrap();
    h.truncate(&f, 3).unwrap().unwrap();
    assert_eq!(std::fs::metadata(&f).unwrap().len(), 3);
    assert_eq!(h.truncate(&f, -1).unwrap(), Err(Errno::INVAL));
    h.utimes(&f, UtimensTimes::Explicit).unwrap().unwrap();
    let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
    assert_eq!(
        mtime,
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1)
    );
    assert_eq!(
        h.utimes(&d.path().join("missing"), UtimensTimes::Omit)
            .unwrap(),
        Ok(())
    );
    h.setxattr(&f, "user.credns", b"v").unwrap().unwrap();
    assert_eq!(
        get_xattr(&f, "user.credns").unwrap().as_deref(),
        Some(&b"v"[..])
    );

    let append = InodeFlags {
        immutable: false,
        append_only: true,
    };
    set_inode_flags(&f, append).unwrap();
    assert_eq!(h.truncate(&f, 0).unwrap(), Err(Errno::PERM));
    assert_eq!(h.utimes(&f, UtimensTimes::Null).unwrap(), Ok(()));
    assert_eq!(
        h.utimes(&f, UtimensTimes::Explicit).unwrap(),
        Err(Errno::PERM)
    );
    assert_eq!(h.setxattr(&f, "user.x", b"1").unwrap(), Err(Errno::PERM));
    clear_inode_flags_below(d.path());
    h.truncate(&f, 0).unwrap().unwrap();
}
