//! What a new image or a new inode inherits: file capabilities at exec
//! (`cap_bprm_creds_from_file`), default ACLs at create (`posix_acl_create`), and the size
//! limit of truncate (`s_maxbytes`).

use credns_model::{Errno, Scenario, Verdict};

fn run(text: &str) -> Vec<(Verdict, Vec<(String, String)>)> {
    let s = Scenario::parse(text, "inherit-test").unwrap_or_else(|e| panic!("{e}"));
    s.run()
        .into_iter()
        .map(|r| {
            let o = r
                .outcome
                .output
                .map(|o| {
                    o.0.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                })
                .unwrap_or_default();
            (r.outcome.result, o)
        })
        .collect()
}

fn get<'a>(o: &'a [(String, String)], k: &str) -> &'a str {
    o.iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {k} in {o:?}"))
}

const NET_BIND: &str = "0000000000000400";

fn caps_world(file: &str, process: &str) -> String {
    let file = if file.contains("mode =") {
        file.to_string()
    } else {
        format!("mode = \"0755\"\n{file}")
    };
    format!(
        r#"
[[namespace]]
name = "c"
parent = "init"
owner = 1000
uid_map = "0 100000 1000"
gid_map = "0 100000 1000"

[[file]]
path = "/bin"
dir = true

[[file]]
path = "/bin/prog"
{file}

[[process]]
name = "p"
{process}

[[op]]
by = "p"
op = "exec"
path = "/bin/prog"
"#
    )
}

#[test]
fn file_caps_give_permitted_and_effective_to_an_unprivileged_user() {
    let r = run(&caps_world(
        "fcaps_permitted = \"CAP_NET_BIND_SERVICE\"\nfcaps_effective = true",
        "uid = 1000",
    ));
    assert_eq!(r[0].0, Verdict::Allowed);
    assert_eq!(get(&r[0].1, "CapPrm"), NET_BIND);
    assert_eq!(get(&r[0].1, "CapEff"), NET_BIND);
}

#[test]
fn without_the_effective_bit_caps_stay_permitted_only() {
    let r = run(&caps_world(
        "fcaps_permitted = \"CAP_NET_BIND_SERVICE\"",
        "uid = 1000",
    ));
    assert_eq!(get(&r[0].1, "CapPrm"), NET_BIND);
    assert_eq!(get(&r[0].1, "CapEff"), "0000000000000000");
}

#[test]
fn a_capability_dumb_program_missing_a_bounded_cap_fails_with_eperm() {
    let r = run(&caps_world(
        "fcaps_permitted = \"CAP_NET_BIND_SERVICE,CAP_CHOWN\"\nfcaps_effective = true",
        "uid = 1000\nbounding = \"CAP_NET_BIND_SERVICE\"",
    ));
    assert_eq!(r[0].0, Verdict::Denied(Errno::EPERM));
}

#[test]
fn file_caps_clear_the_ambient_set() {
    let r = run(&caps_world(
        "fcaps_permitted = \"CAP_NET_BIND_SERVICE\"",
        "uid = 1000\ncaps = \"CAP_CHOWN\"\ninheritable = \"CAP_CHOWN\"\nambient = \"CAP_CHOWN\"",
    ));
    assert_eq!(get(&r[0].1, "CapAmb"), "0000000000000000");
    // Inheritable CAP_CHOWN is not in fI: it is not permitted after exec.
    assert_eq!(get(&r[0].1, "CapPrm"), NET_BIND);
}

#[test]
fn a_v3_rootid_not_root_of_any_ancestor_namespace_is_ignored() {
    // rootid 100000 is root of "c": a process of the initial namespace gets nothing, one of
    // "c" gets the caps.
    let file =
        "fcaps_permitted = \"CAP_NET_BIND_SERVICE\"\nfcaps_effective = true\nfcaps_rootid = 100000";
    let host = run(&caps_world(file, "uid = 1000"));
    assert_eq!(get(&host[0].1, "CapPrm"), "0000000000000000");
    let inner = run(&caps_world(file, "ns = \"c\"\nuid = 5\ncaps = \"\""));
    assert_eq!(inner[0].0, Verdict::Allowed);
    assert_eq!(get(&inner[0].1, "CapPrm"), NET_BIND);
    assert_eq!(get(&inner[0].1, "CapEff"), NET_BIND);
}

#[test]
fn no_new_privs_limits_file_caps_to_what_the_task_had() {
    let r = run(&caps_world(
        "fcaps_permitted = \"CAP_NET_BIND_SERVICE\"\nfcaps_effective = false",
        "uid = 1000\nno_new_privs = true",
    ));
    assert_eq!(r[0].0, Verdict::Allowed);
    assert_eq!(get(&r[0].1, "CapPrm"), "0000000000000000");
}

fn acl_world(op: &str) -> String {
    format!(
        r#"
[[filesystem]]
name = "t"
type = "tmpfs"

[[mount]]
path = "/t"
fs = "t"

[[file]]
path = "/t/d"
dir = true
mode = "0777"
default_acl = ["u::rwx", "u:1001:rwx", "g::r-x", "m::rwx", "o::r-x"]

[[process]]
name = "p"
uid = 1000
umask = "0077"

[[process]]
name = "q"
uid = 1001

{op}
"#
    )
}

#[test]
fn default_acl_masks_with_the_create_mode_and_ignores_the_umask() {
    let r = run(&acl_world(
        "[[op]]\nby = \"p\"\nop = \"create\"\npath = \"/t/d/f\"\nmode = \"0664\"\n\n[[op]]\nby = \"q\"\nop = \"open\"\npath = \"/t/d/f\"\naccess = \"rw\"",
    ));
    assert_eq!(r[0].0, Verdict::Allowed);
    // The mask takes the group bits (rw-), other r-- from 4 & 5; no umask.
    assert_eq!(get(&r[0].1, "mode"), "0664");
    // user:1001:rwx through mask rw-: read-write allowed.
    assert_eq!(r[1].0, Verdict::Allowed);
}

#[test]
fn a_new_directory_inherits_the_default_acl() {
    let r = run(&acl_world(
        "[[op]]\nby = \"p\"\nop = \"mkdir\"\npath = \"/t/d/s\"\nmode = \"0777\"\n\n[[op]]\nby = \"p\"\nop = \"create\"\npath = \"/t/d/s/f\"\nmode = \"0600\"\n\n[[op]]\nby = \"q\"\nop = \"open\"\npath = \"/t/d/s/f\"\naccess = \"r\"",
    ));
    assert_eq!(get(&r[0].1, "mode"), "0775");
    assert_eq!(get(&r[1].1, "mode"), "0600");
    // The mask is cut to ---: the named user gets nothing.
    assert_eq!(r[2].0, Verdict::Denied(Errno::EACCES));
}

fn truncate_world(fs_type: &str, length: i64) -> String {
    format!(
        r#"
[[filesystem]]
name = "f"
type = "{fs_type}"

[[mount]]
path = "/m"
fs = "f"

[[file]]
path = "/m/x"
mode = "0666"

[[process]]
name = "p"
uid = 1000

[[op]]
by = "p"
op = "truncate"
path = "/m/x"
length = {length}
"#
    )
}

#[test]
fn truncate_beyond_s_maxbytes_is_efbig() {
    let ext4_max = ((1i64 << 32) - 1) << 12;
    let v = |t: &str, l: i64| run(&truncate_world(t, l))[0].0.clone();
    assert_eq!(v("ext4", ext4_max), Verdict::Allowed);
    assert_eq!(v("ext4", ext4_max + 1), Verdict::Denied(Errno::EFBIG));
    assert_eq!(v("tmpfs", i64::MAX), Verdict::Allowed);
    assert_eq!(v("xfs", 1 << 62), Verdict::Allowed);
    assert_eq!(v("btrfs", i64::MAX), Verdict::Allowed);
}

#[test]
fn a_setuid_root_program_with_file_caps_gives_a_non_root_user_only_the_file_caps() {
    let r = run(&caps_world(
        "mode = \"4755\"\nfcaps_permitted = \"CAP_NET_BIND_SERVICE\"\nfcaps_effective = true",
        "uid = 1000",
    ));
    assert_eq!(r[0].0, Verdict::Allowed);
    assert_eq!(get(&r[0].1, "euid"), "0");
    assert_eq!(get(&r[0].1, "CapPrm"), NET_BIND);
    assert_eq!(get(&r[0].1, "CapEff"), NET_BIND);
}

#[test]
fn a_rootid_the_filesystems_namespace_does_not_map_is_refused_at_parse() {
    let text = r#"
[[namespace]]
name = "c"
owner = 1000
uid_map = "0 100000 1000"
gid_map = "0 100000 1000"

[[filesystem]]
name = "t"
type = "tmpfs"
ns = "c"

[[mount]]
path = "/t"
fs = "t"

[[file]]
path = "/t/p"
mode = "0755"
fcaps_permitted = "CAP_NET_RAW"
fcaps_rootid = 5000
"#;
    let e = Scenario::parse(text, "bad")
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("fcaps_rootid 5000"), "{e}");
}
