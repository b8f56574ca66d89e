//! `World::access_query`: a path resolved once, decided for many tasks, the same as
//! `World::op` on `Op::Access`.

use credns_model::{Errno, Op, Scenario, Verdict, World};

const WORLD: &str = r#"
[[namespace]]
name = "ns1"
owner = 1000
uid_map = "0 100000 65536"
gid_map = "0 100000 65536"

[[filesystem]]
name = "vol"
type = "tmpfs"
root_mode = "0755"

[[mount]]
path = "/vol"
fs = "vol"
idmap = "ns1"

[[file]]
path = "/vol/d/f"
owner = 1000
group = 1000
mode = "0640"

[[file]]
path = "/vol/closed"
dir = true
owner = 0
mode = "0700"

[[file]]
path = "/vol/closed/g"
mode = "0644"

[[file]]
path = "/vol/plain"
mode = "0644"

[[process]]
name = "owner"
ns = "ns1"
uid = 1000

[[process]]
name = "other"
ns = "ns1"
uid = 2000

[[process]]
name = "nsroot"
ns = "ns1"
uid = 0

[[process]]
name = "host"
uid = 1000
"#;

fn world() -> World {
    Scenario::parse(WORLD, "query.toml")
        .unwrap_or_else(|e| panic!("{e}"))
        .world
}

fn access(path: &str, mode: u32) -> Op {
    Op::Access {
        path: path.into(),
        mode,
        eaccess: false,
    }
}

/// Every task, every path (found, missing, under a file, refused on the way, not normal),
/// every mode: the query, `decide` and `op` give one answer, and `explain_access` the trace
/// of `op`.
#[test]
fn query_answers_as_op_does() {
    let w = world();
    let paths = [
        "/",
        "/vol",
        "/vol/d/f",
        "//vol/./d/f",
        "/vol/d/missing",
        "/vol/missing/f",
        "/vol/plain/below",
        "/vol/closed/g",
        "/vol/../vol/d/f",
        "relative",
    ];
    let mut seen = std::collections::BTreeSet::new();
    for path in paths {
        for mode in [0, 1, 2, 4, 6, 7, 8] {
            let q = w.access_query(path, mode, false);
            for (task, t) in w.tasks() {
                let op = w.check(task, &access(path, mode));
                let decided = w.clone().decide(task, &access(path, mode)).0;
                assert_eq!(decided, op.result, "decide: {} {path} {mode}", t.name);
                assert_eq!(
                    w.decide_access(task, &q),
                    op.result,
                    "decide_access: {} {path} {mode}",
                    t.name
                );
                let explained = w.explain_access(task, &q);
                assert_eq!(explained.result, op.result);
                // The query walks the normalised path; the steps are otherwise the same.
                if path == q.path() {
                    assert_eq!(explained.trace, op.trace, "{} {path} {mode}", t.name);
                }
                seen.insert(format!("{:?}", op.result));
            }
        }
    }
    // The cases cover allowed, and each refusal a walk or a check can give.
    for v in [
        "Allowed",
        "Denied(EACCES)",
        "Denied(ENOENT)",
        "Denied(ENOTDIR)",
        "Denied(EINVAL)",
    ] {
        assert!(seen.contains(v), "no case gave {v}: {seen:?}");
    }
}

/// A query made before the tree changed is resolved again: a file created later is found,
/// and the answer follows a chmod made after the query.
#[test]
fn stale_query_is_resolved_again() {
    let mut w = world();
    let owner = w.task_by_name("owner").unwrap();
    let q = w.access_query("/vol/d/new", 4, false);
    assert_eq!(w.decide_access(owner, &q), Verdict::Denied(Errno::ENOENT));
    let create = Op::Create {
        path: "/vol/d/new".into(),
        mode: 0o600,
        dir: false,
    };
    // d is owned by the filesystem root's owner, so only a task that may write there creates.
    let nsroot = w.task_by_name("nsroot").unwrap();
    let made = w.op(nsroot, &create);
    assert_eq!(made.result, Verdict::Allowed, "{made}");
    assert_eq!(w.decide_access(nsroot, &q), Verdict::Allowed);
    assert_eq!(w.decide_access(owner, &q), Verdict::Denied(Errno::EACCES));

    let f = w.access_query("/vol/d/f", 4, false);
    let other = w.task_by_name("other").unwrap();
    assert_eq!(w.decide_access(other, &f), Verdict::Denied(Errno::EACCES));
    let chmod = Op::Chmod {
        path: "/vol/d/f".into(),
        mode: 0o644,
    };
    assert_eq!(w.op(owner, &chmod).result, Verdict::Allowed);
    assert_eq!(w.decide_access(other, &f), Verdict::Allowed);
}
