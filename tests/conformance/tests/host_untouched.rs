//! A scenario that renames the initial UTS namespace and mounts, remounts and unmounts in the
//! initial mount namespace is performed for real in the executor's stand-ins for them, and
//! leaves this machine's hostname and mount table as they were.
//!
//! Needs root (the executor's fixture mounts filesystems and its helpers change credentials).

use std::collections::BTreeSet;
use std::path::Path;

use credns_conformance::kernel::{run_both, Fixture, KernelAnswer};

const SCENARIO: &str = r#"
# A declared mount (attached in the stand-in by the executor) remounted and unmounted, then a
# new tmpfs mounted, remounted, unmounted and mounted again, left for the stand-in to take.
[[other_namespace]]
name = "init"
type = "uts"
hostname = "stand-in-initial"

[[filesystem]]
name = "t"
type = "tmpfs"

[[mount]]
path = "/m"
fs = "t"
nosuid = true

[[file]]
path = "/d"
dir = true
mode = "0755"

[[process]]
name = "root"
uid = 0

[[op]]
by = "root"
op = "sethostname"
name = "renamed-in-the-stand-in"

[[op]]
by = "root"
op = "remount"
path = "/m"
read_only = true
nosuid = true

[[op]]
by = "root"
op = "umount"
path = "/m"

[[op]]
by = "root"
op = "mount"
type = "tmpfs"
path = "/d"

[[op]]
by = "root"
op = "remount"
path = "/d"
read_only = true

[[op]]
by = "root"
op = "umount"
path = "/d"

[[op]]
by = "root"
op = "mount"
type = "tmpfs"
path = "/d"
"#;

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("read the hostname")
        .trim()
        .to_owned()
}

/// The host's mounts (id and mount point), those of other tests' fixtures under /tmp left
/// out (they come and go while this runs) but this fixture's kept: a mount the scenario made
/// in the host's namespace would be below it.
fn host_mounts(own: &Path) -> BTreeSet<(u64, String)> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("read mountinfo")
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Some((f.first()?.parse().ok()?, (*f.get(4)?).to_owned()))
        })
        .filter(|(_, at): &(u64, String)| {
            !at.starts_with("/tmp/") || Path::new(at).starts_with(own)
        })
        .collect()
}

#[test]
fn initial_namespace_ops_leave_the_host_untouched() {
    let fx = Fixture::new().expect("the fixture's filesystems (needs root, mkfs.ext4, losetup)");
    let own = fx.tmpfs.parent().expect("the fixture's base").to_owned();
    let (name, mounts) = (hostname(), host_mounts(&own));
    let ops = run_both(&fx, SCENARIO, "host_untouched", "hostns")
        .expect("run the scenario")
        .expect("the scenario is realisable");
    for c in &ops {
        assert!(
            matches!(c.kernel, KernelAnswer::Done(_)),
            "{}: performed and allowed, got {:?}",
            c.text,
            c.kernel
        );
        assert_eq!(c.mismatch, None, "{}: model and kernel agree", c.text);
    }
    let KernelAnswer::Done(out) = &ops[0].kernel else {
        unreachable!()
    };
    assert!(
        out.contains(&("hostname".into(), "renamed-in-the-stand-in".into())),
        "the stand-in was renamed: {out:?}"
    );
    assert_eq!(hostname(), name, "the host's hostname");
    assert_eq!(host_mounts(&own), mounts, "the host's mount table");
}
