//! Directory-entry operations against each value of the fs.protected_* sysctls they read.

use credns_model::{Errno, Scenario, Verdict};

/// The verdicts of `ops` (TOML `[[op]]` tables) in a small world under `settings`.
fn verdicts(settings: &str, ops: &str) -> Vec<Verdict> {
    let text = format!(
        r#"
[settings]
{settings}

[[file]]
path = "/tmp"
dir = true
mode = "1777"

[[file]]
path = "/grp"
dir = true
group = 50
mode = "1770"

[[file]]
path = "/tmp/secret"           # root's, unreadable by others
mode = "0600"

[[file]]
path = "/tmp/shared"           # root's, anyone may read and write
mode = "0666"

[[file]]
path = "/tmp/suid"
mode = "4777"

[[file]]
path = "/grp/theirs"
owner = 1002
mode = "0666"

[[file]]
path = "/tmp/theirs"
owner = 1002
mode = "0666"

[[process]]
name = "u"
uid = 1001
groups = [50]

[[process]]
name = "fowner"
uid = 1003
caps = "CAP_FOWNER"

{ops}
"#
    );
    let s = Scenario::parse(&text, "dirent-test").unwrap_or_else(|e| panic!("{e}"));
    s.run().into_iter().map(|r| r.outcome.result).collect()
}

fn op(by: &str, kind: &str, fields: &str) -> String {
    format!("[[op]]\nby = \"{by}\"\nop = \"{kind}\"\n{fields}\n")
}

#[test]
fn protected_hardlinks_each_value() {
    let ops = [
        op("u", "link", "from = \"/tmp/secret\"\nto = \"/tmp/l1\""),
        op("u", "link", "from = \"/tmp/shared\"\nto = \"/tmp/l2\""),
        op("u", "link", "from = \"/tmp/suid\"\nto = \"/tmp/l3\""),
        op("fowner", "link", "from = \"/tmp/secret\"\nto = \"/tmp/l4\""),
    ]
    .concat();
    let off = verdicts("protected_hardlinks = 0", &ops);
    assert!(off.iter().all(|v| *v == Verdict::Allowed), "{off:?}");
    let on = verdicts("protected_hardlinks = 1", &ops);
    assert_eq!(
        on,
        vec![
            Verdict::Denied(Errno::EPERM),
            Verdict::Allowed,
            Verdict::Denied(Errno::EPERM),
            Verdict::Allowed,
        ]
    );
}

#[test]
fn protected_regular_each_value() {
    let ops = [
        op("u", "open_creat", "path = \"/tmp/theirs\"\naccess = \"w\""),
        op("u", "open_creat", "path = \"/grp/theirs\"\naccess = \"w\""),
        op("u", "open_creat", "path = \"/tmp/new\"\naccess = \"w\""),
        op("u", "open", "path = \"/tmp/theirs\"\naccess = \"w\""),
    ]
    .concat();
    let want = |a: Verdict, b: Verdict| vec![a, b, Verdict::Allowed, Verdict::Allowed];
    let eacces = Verdict::Denied(Errno::EACCES);
    assert_eq!(
        verdicts("protected_regular = 0", &ops),
        want(Verdict::Allowed, Verdict::Allowed)
    );
    assert_eq!(
        verdicts("protected_regular = 1", &ops),
        want(eacces.clone(), Verdict::Allowed)
    );
    assert_eq!(
        verdicts("protected_regular = 2", &ops),
        want(eacces.clone(), eacces)
    );
}

#[test]
fn protected_fifos_and_symlinks_each_value() {
    // No FIFOs in the model: protected_fifos never changes a regular file's answer.
    // protected_symlinks refuses only a trailing link in a sticky world-writable directory
    // that neither the follower nor the directory's owner owns; a link met before the last
    // component is followed whatever it says.
    let ops = [
        op(
            "u",
            "symlink",
            "target = \"/tmp/shared\"\npath = \"/tmp/ln\"",
        ),
        op("fowner", "open", "path = \"/tmp/ln\""),
        op("fowner", "stat", "path = \"/tmp/ln/x\""),
        op("u", "open_creat", "path = \"/tmp/theirs\""),
        op("u", "open", "path = \"/tmp/ln\""),
        op("fowner", "unlink", "path = \"/tmp/ln\""),
    ]
    .concat();
    for fifos in 0..=2 {
        for symlinks in 0..=1 {
            let v = verdicts(
                &format!("protected_fifos = {fifos}\nprotected_symlinks = {symlinks}"),
                &ops,
            );
            assert_eq!(v[0], Verdict::Allowed);
            let follow = if symlinks == 1 {
                Verdict::Denied(Errno::EACCES)
            } else {
                Verdict::Allowed
            };
            assert_eq!(v[1], follow, "{v:?}");
            assert_eq!(v[2], Verdict::Denied(Errno::ENOTDIR), "{v:?}");
            assert_eq!(v[3], Verdict::Allowed);
            assert_eq!(v[4], Verdict::Allowed, "the link's owner follows it");
            assert_eq!(v[5], Verdict::Allowed, "CAP_FOWNER passes the sticky bit");
        }
    }
}

#[test]
fn rename_edges() {
    let ops = [
        op("fowner", "mkdir", "path = \"/tmp/d\""),
        op("fowner", "mkdir", "path = \"/tmp/d/e\""),
        op("fowner", "rename", "from = \"/tmp/d\"\nto = \"/tmp/d/e/f\""),
        op("fowner", "rename", "from = \"/tmp/d/e\"\nto = \"/tmp/d\""),
        op(
            "fowner",
            "rename",
            "from = \"/tmp/d/e\"\nto = \"/tmp/shared\"",
        ),
        op(
            "fowner",
            "rename",
            "from = \"/tmp/shared\"\nto = \"/tmp/d\"",
        ),
        op(
            "fowner",
            "rename",
            "from = \"/tmp/shared\"\nto = \"/tmp/theirs\"\nflags = \"noreplace\"",
        ),
        op(
            "fowner",
            "rename",
            "from = \"/tmp/shared\"\nto = \"/tmp/d\"\nflags = \"exchange\"",
        ),
        op("fowner", "rmdir", "path = \"/tmp/shared\""),
        op("u", "rmdir", "path = \"/tmp/shared/e\""),
        op("fowner", "rmdir", "path = \"/\""),
    ]
    .concat();
    let d = |e| Verdict::Denied(e);
    assert_eq!(
        verdicts("", &ops),
        vec![
            Verdict::Allowed,
            Verdict::Allowed,
            d(Errno::EINVAL),
            d(Errno::ENOTEMPTY),
            d(Errno::ENOTDIR),
            d(Errno::EISDIR),
            d(Errno::EEXIST),
            Verdict::Allowed,
            d(Errno::ENOTEMPTY),
            d(Errno::EACCES),
            d(Errno::EBUSY),
        ]
    );
}

#[test]
fn bad_settings_and_flags_name_their_place() {
    let e = Scenario::parse("[settings]\nprotected_regular = 3\n", "x").unwrap_err();
    assert!(e.to_string().contains(":2:"), "{e}");
    let e = Scenario::parse(
        "[[process]]\nname = \"p\"\nuid = 0\n[[op]]\nby = \"p\"\nop = \"rename\"\nfrom = \"/a\"\nto = \"/b\"\nflags = \"whiteout\"\n",
        "x",
    )
    .unwrap_err();
    assert!(e.to_string().contains(":9:"), "{e}");
}
