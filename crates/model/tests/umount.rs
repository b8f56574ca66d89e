//! After an `umount` takes one of the model's mounts out of a mount namespace, what lies under
//! it is not in the model: a second umount, a remount or a mount there is Unknown, saying so,
//! rather than answered from the mount table as if it were still there. Other mount
//! namespaces keep it.

use credns_model::{Scenario, Verdict};

const WORLD: &str = r#"
[[filesystem]]
name = "t"
type = "tmpfs"

[[mount]]
path = "/n"
fs = "t"

[[process]]
name = "root"
uid = 0
"#;

fn outcomes(ops: &str) -> Vec<Verdict> {
    let s =
        Scenario::parse(&format!("{WORLD}{ops}"), "umount.toml").unwrap_or_else(|e| panic!("{e}"));
    s.run().into_iter().map(|r| r.outcome.result).collect()
}

#[test]
fn what_an_umount_uncovered_is_unknown() {
    let v = outcomes(
        "[[op]]\nby = \"root\"\nop = \"umount\"\npath = \"/n\"\n\n\
         [[op]]\nby = \"root\"\nop = \"umount\"\npath = \"/n\"\n\n\
         [[op]]\nby = \"root\"\nop = \"remount\"\npath = \"/n\"\nread_only = true\n",
    );
    assert_eq!(v[0], Verdict::Allowed);
    for u in &v[1..] {
        match u {
            Verdict::Unknown(why) => assert!(
                why.contains("a mount an earlier umount took out of mount namespace \"init\""),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn an_umount_in_a_copy_leaves_the_original_its_mount() {
    let v = outcomes(
        "[[process]]\nname = \"other\"\nuid = 0\n\n\
         [[op]]\nby = \"root\"\nop = \"unshare_ns\"\ntype = \"mnt\"\nname = \"copy\"\n\n\
         [[op]]\nby = \"root\"\nop = \"umount\"\npath = \"/n\"\n\n\
         [[op]]\nby = \"root\"\nop = \"umount\"\npath = \"/n\"\n\n\
         [[op]]\nby = \"other\"\nop = \"umount\"\npath = \"/n\"\n",
    );
    assert_eq!(v[0], Verdict::Allowed);
    assert_eq!(v[1], Verdict::Allowed);
    assert!(
        matches!(&v[2], Verdict::Unknown(w) if w.contains("\"copy\"")),
        "{:?}",
        v[2]
    );
    // The initial mount namespace still has it.
    assert_eq!(v[3], Verdict::Allowed);
}
