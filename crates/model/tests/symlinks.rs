//! Symbolic links followed by the walk as fs/namei.c follows them: relative and absolute
//! targets, chains, `..`, mounts, ELOOP, dangling links, and fs.protected_symlinks.

use credns_model::{Errno, Scenario, Verdict};

/// The verdicts and outputs of `ops` (TOML `[[op]]` tables) under `settings`.
fn run(settings: &str, ops: &str) -> Vec<(Verdict, String)> {
    let text = format!(
        r#"
[settings]
{settings}

[[filesystem]]
name = "t"
type = "tmpfs"
root_mode = "0755"

[[mount]]
path = "/t"
fs = "t"

[[file]]
path = "/tmp"
dir = true
mode = "1777"

[[file]]
path = "/d"
dir = true

[[file]]
path = "/d/f"
owner = 1001
mode = "0640"

[[file]]
path = "/t/g"
mode = "0644"

[[file]]
path = "/closed"
dir = true
mode = "0700"

[[process]]
name = "u"
uid = 1001

[[process]]
name = "v"
uid = 1002

[[process]]
name = "root"
uid = 0

{ops}
"#
    );
    let s = Scenario::parse(&text, "symlinks-test").unwrap_or_else(|e| panic!("{e}"));
    s.run()
        .into_iter()
        .map(|r| {
            let out = r
                .outcome
                .output
                .as_ref()
                .map(|o| o.to_string())
                .unwrap_or_default();
            (r.outcome.result, out)
        })
        .collect()
}

fn op(by: &str, kind: &str, fields: &str) -> String {
    format!("[[op]]\nby = \"{by}\"\nop = \"{kind}\"\n{fields}\n")
}

fn symlink(by: &str, target: &str, path: &str) -> String {
    op(
        by,
        "symlink",
        &format!("target = \"{target}\"\npath = \"{path}\""),
    )
}

fn verdicts(settings: &str, ops: &[String]) -> Vec<Verdict> {
    run(settings, &ops.concat())
        .into_iter()
        .map(|(v, _)| v)
        .collect()
}

const OK: Verdict = Verdict::Allowed;

fn no(e: Errno) -> Verdict {
    Verdict::Denied(e)
}

#[test]
fn relative_absolute_chains_and_dots() {
    let ops = [
        symlink("root", "f", "/d/rel"),           // 0
        symlink("root", "/d/f", "/abs"),          // 1
        symlink("root", "../d/./f", "/d/dots"),   // 2
        symlink("root", "/abs", "/chain"),        // 3
        symlink("root", "/d", "/dl"),             // 4
        op("u", "open", "path = \"/d/rel\""),     // 5
        op("u", "stat", "path = \"/abs\""),       // 6
        op("v", "open", "path = \"/d/dots\""),    // 7: 0640 not v's
        op("u", "open", "path = \"/chain\""),     // 8
        op("u", "stat", "path = \"/dl/f\""),      // 9: an intermediate link
        op("u", "open", "path = \"/dl/rel\""),    // 10: a link through a link
        op("u", "stat", "path = \"/abs/x\""),     // 11: ENOTDIR through a link to a file
        symlink("root", "../..", "/d/up"),        // 12: `..` not above `/`
        op("u", "stat", "path = \"/d/up/d/f\""),  // 13
        symlink("root", "../t/g", "/d/tg"),       // 14: into a mount
        op("u", "open", "path = \"/d/tg\""),      // 15
        symlink("root", "../d/f", "/t/back"),     // 16: `..` from a mount's root
        op("u", "open", "path = \"/t/back\""),    // 17
        symlink("root", "/", "/slash"),           // 18
        op("u", "stat", "path = \"/slash/d/f\""), // 19
    ];
    let v = verdicts("", &ops);
    let want = [
        OK,
        OK,
        OK,
        OK,
        OK,
        OK,
        OK,
        no(Errno::EACCES),
        OK,
        OK,
        OK,
        no(Errno::ENOTDIR),
        OK,
        OK,
        OK,
        OK,
        OK,
        OK,
        OK,
        OK,
    ];
    assert_eq!(v, want);
    let out = run("", &ops.concat());
    assert!(out[6].1.contains("uid=1001"), "stat follows: {}", out[6].1);
}

#[test]
fn loops_dangling_links_and_creation() {
    let mut ops = vec![
        symlink("root", "/loop2", "/loop1"),           // 0
        symlink("root", "/loop1", "/loop2"),           // 1
        op("u", "stat", "path = \"/loop1\""),          // 2
        symlink("root", "self", "/d/self"),            // 3
        op("u", "open", "path = \"/d/self/x\""),       // 4
        symlink("u", "/tmp/made", "/tmp/dangling"),    // 5
        op("u", "open", "path = \"/tmp/dangling\""),   // 6 ENOENT
        op("u", "create", "path = \"/tmp/dangling\""), // 7 O_EXCL: EEXIST
        op("u", "mkdir", "path = \"/tmp/dangling\""),  // 8 EEXIST
        op(
            "u",
            "open_creat",
            "path = \"/tmp/dangling\"\naccess = \"w\"",
        ), // 9 creates /tmp/made
        op("v", "stat", "path = \"/tmp/made\""),       // 10
        symlink("u", "/closed/x", "/tmp/shut"),        // 11
        op("u", "open_creat", "path = \"/tmp/shut\""), // 12 EACCES on /closed
        op("u", "unlink", "path = \"/tmp/dangling\""), // 13 the link itself
        op("v", "stat", "path = \"/tmp/made\""),       // 14 still there
        symlink("root", "/d", "/dd"),                  // 15
        op("root", "rmdir", "path = \"/dd\""),         // 16 ENOTDIR: not followed
        op("u", "open_creat", "path = \"/dd\""),       // 17 EISDIR
    ];
    // A chain of 40 links is followed; one more is ELOOP.
    for i in 0..41 {
        ops.push(symlink("root", &format!("/c{}", i + 1), &format!("/c{i}")));
    }
    ops.push(op("root", "mkdir", "path = \"/c41\""));
    ops.push(op("u", "stat", "path = \"/c1\""));
    ops.push(op("u", "stat", "path = \"/c0\""));
    let v = verdicts("", &ops);
    assert_eq!(
        v[..18],
        [
            OK,
            OK,
            no(Errno::ELOOP),
            OK,
            no(Errno::ELOOP),
            OK,
            no(Errno::ENOENT),
            no(Errno::EEXIST),
            no(Errno::EEXIST),
            OK,
            OK,
            OK,
            no(Errno::EACCES),
            OK,
            OK,
            OK,
            no(Errno::ENOTDIR),
            no(Errno::EISDIR),
        ]
    );
    let n = v.len();
    assert_eq!(v[n - 2], OK, "40 links");
    assert_eq!(v[n - 1], no(Errno::ELOOP), "41 links");
    let out = run("", &ops.concat());
    assert!(out[10].1.contains("uid=1001"), "{}", out[10].1);
}

#[test]
fn protected_symlinks_each_value() {
    let ops = [
        symlink("u", "/d/f", "/tmp/mine"),     // 0: u's link in sticky /tmp
        symlink("root", "/d/f", "/tmp/roots"), // 1: the directory owner's link
        op("u", "open", "path = \"/tmp/mine\""), // 2: the owner follows
        op("root", "open", "path = \"/tmp/mine\""), // 3: someone else: refused at 1
        op("u", "open", "path = \"/tmp/roots\""), // 4: the directory owner's link
        op("root", "stat", "path = \"/tmp/mine\""), // 5
        op("root", "access", "path = \"/tmp/mine\""), // 6
        op("root", "chmod", "path = \"/tmp/mine\"\nmode = \"0640\""), // 7
        symlink("u", "/d", "/tmp/dir"),        // 8
        op("root", "stat", "path = \"/tmp/dir/f\""), // 9: not trailing: followed
        symlink("u", "mine", "/tmp/via"),      // 10: u's link to u's link
        op("v", "open", "path = \"/tmp/via\""), // 11: refused at the first
        op("root", "unlink", "path = \"/tmp/mine\""), // 12: not followed
    ];
    let off = verdicts("protected_symlinks = 0", &ops);
    assert_eq!(off.iter().filter(|v| **v != OK).count(), 1, "{off:?}");
    assert_eq!(off[11], no(Errno::EACCES), "0640: v may not read");
    let on = verdicts("protected_symlinks = 1", &ops);
    let e = no(Errno::EACCES);
    assert_eq!(
        on,
        vec![
            OK,
            OK,
            OK,
            e.clone(),
            OK,
            e.clone(),
            e.clone(),
            e.clone(),
            OK,
            OK,
            OK,
            e,
            OK
        ]
    );
}

#[test]
fn the_trace_names_may_follow_link_and_pick_link() {
    let ops = [
        symlink("u", "/d/f", "/tmp/mine"),
        op("root", "open", "path = \"/tmp/mine\""),
    ]
    .concat();
    let text = format!(
        "[settings]\nprotected_symlinks = 1\n[[file]]\npath = \"/tmp\"\ndir = true\nmode = \"1777\"\n[[file]]\npath = \"/d/f\"\n[[process]]\nname = \"u\"\nuid = 1001\n[[process]]\nname = \"root\"\nuid = 0\n{ops}"
    );
    let s = Scenario::parse(&text, "trace").unwrap_or_else(|e| panic!("{e}"));
    let r = s.run();
    let o = &r[1].outcome;
    assert_eq!(o.result, no(Errno::EACCES));
    assert!(o.step("may_follow_link").is_some(), "{o}");
    let s2 = Scenario::parse(&text.replace("= 1\n", "= 0\n"), "trace").unwrap();
    let r2 = s2.run();
    assert!(
        r2[1].outcome.step("pick_link").is_some(),
        "{}",
        r2[1].outcome
    );
}

#[test]
fn protected_symlinks_sees_owners_through_the_mount() {
    // One tmpfs, plain at /t and idmapped at /m with ct's maps (on-disk 5 is 100005 there).
    let text = |v: u32| {
        format!(
            r#"
[settings]
protected_symlinks = {v}

[[namespace]]
name = "ct"
owner = 1000
uid_map = "0 100000 65536"
gid_map = "0 100000 65536"

[[filesystem]]
name = "t"
type = "tmpfs"
root_mode = "0755"

[[mount]]
path = "/t"
fs = "t"

[[mount]]
path = "/m"
fs = "t"
idmap = "ct"

[[file]]
path = "/t/tmp"
dir = true
mode = "1777"

[[file]]
path = "/t/f"
mode = "0644"

[[process]]
name = "host5"
uid = 5

[[process]]
name = "ct5"
ns = "ct"
uid = 5

{}{}{}"#,
            symlink("host5", "/t/f", "/t/tmp/l"),
            op("ct5", "open", "path = \"/m/tmp/l\""),
            op("ct5", "open", "path = \"/t/tmp/l\""),
        )
    };
    let v = |n| {
        Scenario::parse(&text(n), "idmap")
            .unwrap_or_else(|e| panic!("{e}"))
            .run()
            .into_iter()
            .map(|r| r.outcome.result)
            .collect::<Vec<_>>()
    };
    assert_eq!(v(0), vec![OK, OK, OK]);
    assert_eq!(
        v(1),
        vec![OK, OK, no(Errno::EACCES)],
        "through /m the link's owner is the follower's fsuid (100005); through /t it is 5"
    );
}

#[test]
fn a_target_ending_in_a_slash_wants_a_directory() {
    let ops = [
        symlink("root", "f/", "/d/ts"),
        op("u", "stat", "path = \"/d/ts\""),
        op("u", "open_creat", "path = \"/d/ts\""),
        symlink("root", "/d/", "/d/tsd"),
        op("u", "stat", "path = \"/d/tsd\""),
        symlink("root", "n/", "/d/tsn"),
        op("u", "stat", "path = \"/d/tsn\""),
        op("root", "open_creat", "path = \"/d/tsn\""),
        symlink("root", "rel", "/d/chain"),
        op("u", "stat", "path = \"/d/chain\""),
        symlink("root", "ts", "/d/chain2"),
        op("u", "stat", "path = \"/d/chain2\""),
    ];
    assert_eq!(
        verdicts("", &ops),
        vec![
            OK,
            no(Errno::ENOTDIR),
            no(Errno::EISDIR),
            OK,
            OK,
            OK,
            no(Errno::ENOENT),
            no(Errno::EISDIR),
            OK,
            no(Errno::ENOENT),
            OK,
            no(Errno::ENOTDIR),
        ]
    );
}
