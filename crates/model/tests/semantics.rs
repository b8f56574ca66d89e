//! The seeds' worked examples as golden tests, each under the proposal it describes and under
//! mainline (docs/semantics.md): the proposal gives the seed's stated outcome, mainline gives
//! what Linux does. Also: parsing of the proposals' declarations, with exact errors.

use credns_model::{Error, Proposal, Scenario, Semantics, Verdict};
use proptest::prelude::*;

fn example(name: &str) -> Scenario {
    let path = format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("example readable");
    Scenario::parse(&text, name).unwrap_or_else(|e| panic!("{e}"))
}

/// The verdict and output of the op on `line` under `sem`.
fn at(s: &Scenario, sem: Semantics, line: usize) -> (Verdict, String) {
    let r = s
        .run_with(sem)
        .into_iter()
        .find(|r| r.line == line)
        .unwrap_or_else(|| panic!("no op at line {line}"));
    let out = r.outcome.output.map(|o| o.to_string()).unwrap_or_default();
    (r.outcome.result, out)
}

fn line_of(s: &Scenario, needle: &str) -> usize {
    s.ops
        .iter()
        .find(|o| o.text.contains(needle))
        .unwrap_or_else(|| panic!("no op like {needle:?}"))
        .line
}

fn sem(s: &str) -> Semantics {
    Semantics::parse(s).unwrap()
}

const EACCES: Verdict = Verdict::Denied(credns_model::Errno::EACCES);
const EPERM: Verdict = Verdict::Denied(credns_model::Errno::EPERM);
const ENOKEY: Verdict = Verdict::Denied(credns_model::Errno::ENOKEY);

#[test]
fn seed000_kill_creator() {
    let s = example("proposals/seed000_userns_hierarchy.toml");
    let ha = sem("host_admin+inode_userns");
    assert_eq!(s.semantics, ha);
    let kill_child = line_of(&s, "nsroot: kill target=ns501");
    let kill_creator = line_of(&s, "nsroot: kill target=host500");
    // "(0,1) can kill the task owned by (501,1). But it can't kill … (500,0), its creator."
    assert_eq!(at(&s, ha, kill_child).0, Verdict::Allowed);
    assert_eq!(at(&s, ha, kill_creator).0, EPERM);
    // host_admin alone decides the signals.
    assert_eq!(at(&s, sem("host_admin"), kill_creator).0, EPERM);
    // Mainline: the same kernel uid 500.
    assert_eq!(
        at(&s, Semantics::MAINLINE, kill_creator).0,
        Verdict::Allowed
    );
}

#[test]
fn seed000_files() {
    let s = example("proposals/seed000_userns_hierarchy.toml");
    let iu = sem("host_admin+inode_userns");
    let m = Semantics::MAINLINE;
    // "(0,1) will receive the 'other' permissions to any files owned by (0,0)".
    let private = line_of(&s, "nsroot: open path=/home/root_private");
    let public = line_of(&s, "nsroot: open path=/home/root_public");
    assert_eq!(at(&s, iu, private).0, EACCES);
    assert_eq!(at(&s, iu, public).0, Verdict::Allowed);
    // Mainline agrees here: host uid 0 is unmapped in ns1, so no override, and 'other' bits.
    assert_eq!(at(&s, m, private).0, EACCES);
    assert_eq!(at(&s, m, public).0, Verdict::Allowed);
    // The creator's own file: 'other' under the proposal, the owner under mainline.
    let creator = line_of(&s, "nsroot: open path=/home/creator_private");
    assert_eq!(at(&s, iu, creator).0, EACCES);
    assert_eq!(at(&s, m, creator).0, Verdict::Allowed);
    // "owned by both (501,1) and (500,0) … so (500,0) may access the above file".
    let both = line_of(&s, "host500: open path=/shared/f501");
    assert_eq!(at(&s, iu, both).0, Verdict::Allowed);
    assert_eq!(at(&s, sem("inode_userns"), both).0, Verdict::Allowed);
    assert_eq!(at(&s, m, both).0, EACCES);
}

#[test]
fn seed000_setuid_exec_runs_as_the_creator() {
    let s = example("proposals/seed000_userns_hierarchy.toml");
    let iu = sem("inode_userns");
    // "If (0,0) executes a setuid-(0,1) file, it will do so as a setuid(500,0) file."
    let l = line_of(&s, "hostroot: exec path=/bin/suid_ns1root");
    let (v, out) = at(&s, iu, l);
    assert_eq!(v, Verdict::Allowed);
    assert!(out.split(' ').any(|t| t == "euid=500"), "{out}");
    // Mainline gets there too for ns1, whose root is kernel uid 500 …
    let (_, out) = at(&s, Semantics::MAINLINE, l);
    assert!(out.split(' ').any(|t| t == "euid=500"), "{out}");
    // … but not for ns2, whose root a helper mapped to kernel uid 200000.
    let l2 = line_of(&s, "host500: exec path=/bin/suid_ns2root");
    let (_, out) = at(&s, iu, l2);
    assert!(out.split(' ').any(|t| t == "euid=500"), "{out}");
    let (_, out) = at(&s, Semantics::MAINLINE, l2);
    assert!(out.split(' ').any(|t| t == "euid=200000"), "{out}");
}

#[test]
fn seed001_step4_with_and_without_host_admin() {
    let s = example("proposals/seed001_access_order.toml");
    let all = sem("host_admin+inode_userns+keychain");
    let with = line_of(&s, "hostroot: open path=/srv/ct_private");
    let without = line_of(&s, "hostroot_bounded: open path=/srv/ct_private");
    assert_eq!(at(&s, all, with).0, Verdict::Allowed);
    assert_eq!(at(&s, all, without).0, EACCES);
    // Without host_admin there is no CAP_HOST_ADMIN line: both host roots are 'other'.
    let iu = sem("inode_userns+keychain");
    assert_eq!(at(&s, iu, with).0, EACCES);
    assert_eq!(at(&s, iu, without).0, EACCES);
    // Mainline: CAP_DAC_OVERRIDE of the initial namespace covers every mapped id.
    assert_eq!(at(&s, Semantics::MAINLINE, with).0, Verdict::Allowed);
    assert_eq!(at(&s, Semantics::MAINLINE, without).0, Verdict::Allowed);
    // The order within the namespace: override, owner, keychain, group, other.
    for (needle, want) in [
        ("ctroot: open path=/srv/ct_private", Verdict::Allowed),
        ("ct1: open path=/srv/ct_private", Verdict::Allowed),
        ("ct2: open path=/srv/ct_group", Verdict::Allowed),
        ("ct2: open path=/srv/ct_private", EACCES),
        ("ctroot: open path=/srv/host_secret", EACCES),
        ("host2000: open path=/srv/ct_private", Verdict::Allowed),
        ("host3000: open path=/srv/ct_private", EACCES),
    ] {
        assert_eq!(at(&s, all, line_of(&s, needle)).0, want, "{needle}");
    }
    // The keychain line needs its proposal.
    let kc = line_of(&s, "host2000: open path=/srv/ct_private");
    assert_eq!(at(&s, sem("host_admin+inode_userns"), kc).0, EACCES);
    assert_eq!(at(&s, Semantics::MAINLINE, kc).0, EACCES);
}

#[test]
fn seed001_trace_names_the_lines() {
    let s = example("proposals/seed001_access_order.toml");
    let r = s.run();
    let o = &r[0].outcome;
    let steps: Vec<String> = o.trace.iter().map(|s| s.to_string()).collect();
    assert!(
        steps.iter().any(|s| s
            .contains("[pass] inode_userns:permission: [001 §4] CAP_HOST_ADMIN|CAP_DAC_OVERRIDE")),
        "{}",
        steps.join("\n")
    );
}

#[test]
fn seed003_fsid_example() {
    let s = example("proposals/seed003_fsid_map.toml");
    let fs = sem("fsid_map");
    let st = line_of(&s, "ctroot: stat path=/image/etc_passwd");
    // "on-disk 300000 appears as 0 inside".
    assert!(at(&s, fs, st).1.starts_with("uid=0 gid=0"));
    // Mainline: "the files will appear to be owned by the overflow id".
    assert!(at(&s, Semantics::MAINLINE, st)
        .1
        .starts_with("uid=65534 gid=65534"));
    let cr = line_of(&s, "ctroot: create path=/image/new");
    let (v, out) = at(&s, fs, cr);
    assert_eq!(v, Verdict::Allowed);
    assert!(out.contains("disk_uid=300000 disk_gid=300000"), "{out}");
    // The resolved access query (`credns sim --who-can`) answers as the operation does.
    let mut w = s.world.clone();
    assert_eq!(w.semantics(), fs);
    let ct = w.task_by_name("ctroot").unwrap();
    let q = w.access_query("/image/etc_passwd", 6, false);
    assert_eq!(w.decide_access(ct, &q), Verdict::Allowed);
    let op = credns_model::Op::Access {
        path: "/image/etc_passwd".into(),
        mode: 6,
        eaccess: false,
    };
    assert_eq!(w.decide(ct, &op).0, Verdict::Allowed);
    w.set_semantics(Semantics::MAINLINE);
    assert_eq!(w.decide_access(ct, &q), EACCES);
    assert_eq!(w.decide(ct, &op).0, EACCES);
    // Signals and /proc keep the id map: the process is kernel uid 100000.
    let ps = line_of(&s, "hostroot: proc_status target=ctroot");
    assert!(at(&s, fs, ps).1.contains("uid=100000"));
}

/// Today's approximation of seed 003 is an idmapped mount: the image mounted through a
/// namespace whose map sends on-disk 300000+ to the container's kernel ids 100000+. The
/// proposal (fsid maps, no idmapped mount) and mainline with the idmapped mount agree on the
/// seed's example.
#[test]
fn seed003_idmapped_mount_approximation_agrees() {
    let proposal = example("proposals/seed003_fsid_map.toml");
    let approx = Scenario::parse(
        r#"
[[namespace]]
name = "ct"
owner = 0
uid_map = "0 100000 100000"
gid_map = "0 100000 100000"

[[namespace]]
name = "shift"                   # the mount's idmap: on-disk 300000+ is kernel 100000+
owner = 0
uid_map = "300000 100000 100000"
gid_map = "300000 100000 100000"

[[filesystem]]
name = "images"
type = "ext4"

[[mount]]
path = "/store"
fs = "images"

[[mount]]
path = "/image"
fs = "images"
idmap = "shift"

[[file]]
path = "/store/etc_passwd"
owner = 300000
group = 300000
mode = "0644"

[[process]]
name = "ctroot"
ns = "ct"
uid = 0

[[process]]
name = "hostroot"
uid = 0

[[op]]
by = "ctroot"
op = "stat"
path = "/image/etc_passwd"

[[op]]
by = "ctroot"
op = "open"
path = "/image/etc_passwd"
access = "rw"

[[op]]
by = "hostroot"
op = "chown"
path = "/store"
uid = 300000
gid = 300000

[[op]]
by = "ctroot"
op = "create"
path = "/image/new"
mode = "0644"

[[op]]
by = "hostroot"
op = "stat"
path = "/store/new"
"#,
        "approx.toml",
    )
    .unwrap();
    assert!(approx.semantics.is_mainline());
    let a = approx.run();
    let p = proposal.run();
    let out = |r: &credns_model::OpReport| {
        r.outcome
            .output
            .as_ref()
            .map(|o| o.to_string())
            .unwrap_or_default()
    };
    // stat: 0:0 inside, both ways.
    assert_eq!(p[0].outcome.result, Verdict::Allowed);
    assert_eq!(out(&p[0]), out(&a[0]));
    // open rw as the owner, both ways.
    assert_eq!(p[1].outcome.result, a[1].outcome.result);
    assert_eq!(a[1].outcome.result, Verdict::Allowed);
    // A new file: 0:0 inside and 300000 on disk, both ways.
    assert_eq!(a[2].outcome.result, Verdict::Allowed);
    assert_eq!(p[2].outcome.result, Verdict::Allowed);
    assert_eq!(a[3].outcome.result, Verdict::Allowed, "{}", a[3]);
    let (po, ao) = (out(&p[2]), out(&a[3]));
    assert!(
        po.starts_with("uid=0 gid=0") && ao.starts_with("uid=0 gid=0"),
        "{po} / {ao}"
    );
    assert!(po.contains("disk_uid=300000"), "{po}");
    assert_eq!(
        out(&a[4]).split(' ').take(2).collect::<Vec<_>>(),
        ["uid=300000", "gid=300000"]
    );
    assert_eq!(
        out(&p[3]).split(' ').take(2).collect::<Vec<_>>(),
        ["uid=300000", "gid=300000"]
    );
}

#[test]
fn seed002_container_keyring_after_session() {
    let s = example("proposals/seed002_container_keys.toml");
    let ct = sem("key_acl+container");
    let l = line_of(&s, "denizen: request_key description=foobar");
    let (v, out) = at(&s, ct, l);
    assert_eq!(v, Verdict::Allowed);
    assert!(out.starts_with("key=foobar "), "{out}");
    let r = s.run_with(ct).into_iter().find(|r| r.line == l).unwrap();
    let fs: Vec<&str> = r
        .outcome
        .trace
        .iter()
        .map(|s| s.function.as_str())
        .collect();
    let session = fs
        .iter()
        .position(|f| *f == "search_cred_keyrings_rcu")
        .unwrap();
    let container = fs
        .iter()
        .position(|f| *f == "container:search_process_keyrings")
        .unwrap();
    assert!(session < container, "{fs:?}");
    // Its own session keyring's "foobar" wins.
    let own = line_of(&s, "denizen_own: request_key");
    assert!(at(&s, ct, own).1.starts_with("key=own_foobar "));
    // Mainline: no container keyring.
    assert_eq!(at(&s, Semantics::MAINLINE, l).0, ENOKEY);
    // The container keyring's SEARCH comes from the container ACE: with the mask alone
    // (container without key_acl) its 0x3f000000 grants a non-possessor nothing.
    assert_eq!(at(&s, sem("container"), l).0, ENOKEY);
    // The upcall is intercepted.
    let up = line_of(&s, "callout=a");
    match at(&s, ct, up).0 {
        Verdict::Unknown(why) => assert!(why.contains("upcall"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn seed002_acl_is_cumulative() {
    let s = example("proposals/seed002_key_acl.toml");
    let l = line_of(&s, "alice: keyctl_read key=memo");
    assert_eq!(at(&s, sem("key_acl"), l).0, Verdict::Allowed);
    assert_eq!(at(&s, Semantics::MAINLINE, l).0, EACCES);
}

#[test]
fn mainline_examples_are_unchanged_by_naming_no_proposal() {
    for name in [
        "seed000_kill_and_files.toml",
        "seed001_access_order.toml",
        "idmapped_mount.toml",
        "keys_across_namespaces.toml",
    ] {
        let s = example(name);
        assert!(s.semantics.is_mainline(), "{name}");
        // A file that names no proposal runs mainline.
        let a = s.run();
        let b = s.run_with(Semantics::MAINLINE);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.outcome, y.outcome, "{name}");
        }
    }
}

// --- parsing -------------------------------------------------------------------------------

fn err(text: &str) -> (usize, usize, String) {
    match Scenario::parse(text, "bad.toml") {
        Err(Error::Scenario {
            line,
            column,
            message,
            ..
        }) => (line, column, message),
        other => panic!("expected a scenario error, got {other:?}"),
    }
}

#[test]
fn unknown_semantics_names_its_line() {
    let (line, col, msg) = err("[settings]\nsemantics = [\"mainline\",\n  \"host_admn\"]\n");
    assert_eq!((line, col), (3, 3));
    assert!(
        msg.contains("unknown semantics \"host_admn\"") && msg.contains("host_admin"),
        "{msg}"
    );
    let (line, _, msg) = err("[settings]\nsemantics = [\"keychain\"]\n");
    assert_eq!(line, 2);
    assert!(msg.contains("name \"inode_userns\" too"), "{msg}");
}

#[test]
fn declarations_need_their_proposal() {
    for (text, line, what) in [
        (
            "[[process]]\nname = \"a\"\nuid = 0\ncaps = \"CAP_KILL,CAP_HOST_ADMIN\"\n",
            4,
            "CAP_HOST_ADMIN",
        ),
        (
            "[[process]]\nname = \"a\"\nuid = 0\ncap_bset = \"all\"\n",
            4,
            "`cap_bset`",
        ),
        (
            "[[namespace]]\nname = \"n\"\nowner = 0\nuid_map = \"0 1 1\"\nfsuid_map = \"0 3 1\"\n",
            5,
            "an fsid map",
        ),
        (
            "[[file]]\npath = \"/f\"\nuserns = \"init\"\n",
            3,
            "`userns` on a file",
        ),
        (
            "[[process]]\nname = \"a\"\nuid = 0\nkeychain = [\"init:5\"]\n",
            4,
            "a keychain",
        ),
        ("[[container]]\nname = \"box\"\n", 1, "a [[container]]"),
        (
            "[[namespace]]\nname = \"n\"\nowner = 0\nisolated = true\n",
            4,
            "`isolated` on a namespace",
        ),
    ] {
        let (l, _, msg) = err(text);
        assert_eq!(l, line, "{text}: {msg}");
        assert!(
            msg.contains(what) && msg.contains("[settings] semantics"),
            "{msg}"
        );
    }
}

#[test]
fn declaration_errors_are_exact() {
    let head =
        "[settings]\nsemantics = [\"inode_userns\", \"keychain\", \"key_acl\", \"container\"]\n";
    let (l, _, msg) = err(&format!(
        "{head}[[process]]\nname = \"a\"\nuid = 0\nkeychain = [\"nowhere:1\"]\n"
    ));
    assert_eq!(l, 6);
    assert!(msg.contains("no namespace called \"nowhere\""), "{msg}");
    let (l, _, msg) = err(&format!(
        "{head}[[process]]\nname = \"a\"\nuid = 0\nkeychain = [\"init\"]\n"
    ));
    assert_eq!(l, 6);
    assert!(msg.contains("NAMESPACE:UID"), "{msg}");
    let (l, _, msg) = err(&format!(
        "{head}[[process]]\nname = \"a\"\nuid = 0\ncontainer = \"box\"\n"
    ));
    assert_eq!(l, 6);
    assert!(msg.contains("no container called \"box\""), "{msg}");
    let keys = format!("{head}[[process]]\nname = \"a\"\nuid = 0\n[[key]]\nname = \"r\"\ntype = \"keyring\"\ninstall = \"a:session\"\n");
    let (l, _, msg) = err(&format!("{keys}acl = [\"owner=view\", \"owner=read\"]\n"));
    assert_eq!(l, 10);
    assert!(msg.contains("already has an entry"), "{msg}");
    let (l, _, msg) = err(&format!("{keys}acl = [\"owner=fly\"]\n"));
    assert_eq!(l, 10);
    assert!(msg.contains("unknown permission \"fly\""), "{msg}");
    let (l, _, msg) = err(&format!(
        "{keys}[[container]]\nname = \"box\"\nintercept = [\"user:nokey\"]\n"
    ));
    assert_eq!(l, 12);
    assert!(msg.contains("no key called \"nokey\""), "{msg}");
    let (l, _, msg) = err(&format!(
        "{keys}[[container]]\nname = \"box\"\nintercept = [\"user:r\", \"user:r\"]\n"
    ));
    assert_eq!(l, 12);
    assert!(msg.contains("EEXIST"), "{msg}");
}

#[test]
fn proposals_are_off_unless_named() {
    let s = Scenario::parse("[[process]]\nname = \"a\"\nuid = 0\n", "x.toml").unwrap();
    assert!(s.semantics.is_mainline());
    assert!(s.world.semantics().is_mainline());
}

proptest! {
    /// Keychain entries: `NS:UID` with a known namespace and a mapped uid parse to that
    /// credential; anything else is an error at the entry's line naming the entry.
    #[test]
    fn keychain_entries(ns in prop::sample::select(vec!["init", "ct", "nope", ""]), uid in prop::sample::select(vec!["0", "5", "70000", "x", "-1", ""]), colon in any::<bool>()) {
        let entry = if colon { format!("{ns}:{uid}") } else { format!("{ns}{uid}") };
        let text = format!("[settings]\nsemantics = [\"inode_userns\", \"keychain\"]\n[[namespace]]\nname = \"ct\"\nowner = 0\nuid_map = \"0 100000 65536\"\n[[process]]\nname = \"p\"\nuid = 0\nkeychain = [{entry:?}]\n");
        let good = colon && (ns == "init" || ns == "ct") && uid.parse::<u32>().is_ok_and(|u| ns == "init" || u < 65536);
        match Scenario::parse(&text, "k.toml") {
            Ok(s) => {
                prop_assert!(good, "{entry} accepted");
                let w = &s.world;
                let kc = &w.task(w.task_by_name("p").unwrap()).cred.keychain;
                prop_assert_eq!(kc.len(), 1);
                prop_assert_eq!(kc[0].1, uid.parse::<u32>().unwrap());
                prop_assert_eq!(&w.ns(kc[0].0).name, ns);
            }
            Err(Error::Scenario { line, message, .. }) => {
                prop_assert!(!good, "{entry} refused: {message}");
                prop_assert_eq!(line, 10);
                prop_assert!(message.contains(&format!("keychain entry {entry:?}")), "{message}");
            }
            Err(e) => prop_assert!(false, "{e}"),
        }
    }

    /// Intercept filters: `TYPE:KEYRING` naming a declared keyring, types 1..=31 characters,
    /// no type twice; "*" is kept last whatever the order written.
    #[test]
    fn intercept_filters(types in prop::collection::vec(prop::sample::select(vec!["user", "*", "rxrpc", "", "abcdefghijabcdefghijabcdefghijab"]), 0..4), ring in prop::sample::select(vec!["up", "nokey", "plain"])) {
        let list = types.iter().map(|t| format!("\"{t}:{ring}\"")).collect::<Vec<_>>().join(", ");
        let text = format!("[settings]\nsemantics = [\"container\"]\n[[process]]\nname = \"m\"\nuid = 0\n[[key]]\nname = \"up\"\ntype = \"keyring\"\nat = \"m:session\"\n[[key]]\nname = \"plain\"\nat = \"m:session\"\n[[container]]\nname = \"box\"\nintercept = [{list}]\n");
        let distinct = types.iter().collect::<std::collections::BTreeSet<_>>().len() == types.len();
        let good = types.is_empty() || (ring == "up" && distinct && types.iter().all(|t| !t.is_empty() && t.len() <= 31));
        match Scenario::parse(&text, "i.toml") {
            Ok(s) => {
                prop_assert!(good, "{list}");
                let f = &s.world.declarations().containers[0].intercept;
                prop_assert_eq!(f.len(), types.len());
                if let Some(p) = f.iter().position(|(t, _)| t == "*") {
                    prop_assert_eq!(p, f.len() - 1);
                }
            }
            Err(Error::Scenario { line, message, .. }) => {
                prop_assert!(!good, "{list}: {message}");
                prop_assert_eq!(line, 15, "{}", message);
            }
            Err(e) => prop_assert!(false, "{e}"),
        }
    }
}

proptest! {
    /// Any combination of proposals prints and parses back to itself.
    #[test]
    fn semantics_round_trip(bits in 0u8..128) {
        let mut s = Semantics::MAINLINE;
        for (i, p) in Proposal::ALL.iter().enumerate() {
            if bits & (1 << i) != 0 {
                s = s.with(*p);
            }
        }
        let text = s.to_string();
        match Semantics::parse(&text) {
            Ok(back) => prop_assert_eq!(back, s),
            Err(e) => {
                // Only a combination missing what a proposal needs is refused.
                prop_assert!(s.check_needs().is_err(), "{text}: {e}");
                prop_assert!(e.contains("too"), "{e}");
            }
        }
    }

    /// Arbitrary names are refused with a message naming them (or accepted if they are known).
    #[test]
    fn semantics_names(name in "[a-z_+]{0,20}") {
        match Semantics::parse(&name) {
            Ok(s) => prop_assert!(name.split('+').all(|p| p == "mainline" || Proposal::parse(p).is_some()), "{name} -> {s}"),
            Err(e) => prop_assert!(e.contains("semantics") || e.contains("too"), "{e}"),
        }
    }

    /// A `[settings] semantics` list of known names parses; its set is what the file runs.
    #[test]
    fn settings_semantics(bits in 0u8..128, order in any::<bool>()) {
        let mut names: Vec<&str> = vec!["mainline"];
        for (i, p) in Proposal::ALL.iter().enumerate() {
            if bits & (1 << i) != 0 {
                names.push(p.name());
            }
        }
        if order {
            names.reverse();
        }
        let list = names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ");
        let text = format!("[settings]\nsemantics = [{list}]\n");
        let want = Semantics::parse(&names.join("+"));
        match (Scenario::parse(&text, "p.toml"), want) {
            (Ok(s), Ok(w)) => prop_assert_eq!(s.semantics, w),
            (Err(Error::Scenario { line, message, .. }), Err(_)) => {
                prop_assert_eq!(line, 2);
                prop_assert!(message.contains("too"), "{message}");
            }
            (a, b) => prop_assert!(false, "{a:?} vs {b:?}"),
        }
    }

    /// ACEs: a known subject and permission list parses; the bits are those named.
    #[test]
    fn ace_parse(subj in prop::sample::select(vec!["possessor", "owner", "group", "everyone", "container:box", "container:nobox", "nobody"]),
                 perms in prop::collection::vec(prop::sample::select(vec!["view", "read", "write", "search", "link", "set_security", "inval", "revoke", "join", "clear", "bogus"]), 0..5)) {
        let text = format!("{subj}={}", perms.join(","));
        let r = credns_model::Ace::parse(&text, |n| (n == "box").then_some(0));
        let bad = subj == "nobody" || subj == "container:nobox" || perms.contains(&"bogus");
        match r {
            Ok(a) => {
                prop_assert!(!bad, "{text}");
                prop_assert_eq!(a.perm.count_ones() as usize, perms.iter().collect::<std::collections::BTreeSet<_>>().len());
            }
            Err(e) => {
                prop_assert!(bad, "{text}: {e}");
                prop_assert!(e.contains(&text), "{e}");
            }
        }
    }
}

#[test]
fn seed000_keychain_copied_to_the_new_root() {
    let s = example("proposals/seed000_keychain_copy.toml");
    let l = line_of(&s, "keyctl_search keyring=@u description=tok  # found");
    let (v, out) = at(&s, sem("inode_userns+keychain"), l);
    assert_eq!(v, Verdict::Allowed);
    assert!(out.starts_with("key=tok "), "{out}");
    assert_eq!(at(&s, Semantics::MAINLINE, l).0, ENOKEY);
}

/// The declarations shown in docs/scenarios.md parse.
#[test]
fn scenarios_doc_declarations_parse() {
    let doc = std::fs::read_to_string(format!(
        "{}/../../docs/scenarios.md",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let from = doc.find("## Proposals' declarations").expect("the section");
    let rest = &doc[from..];
    let start = rest.find("```toml\n").unwrap() + 8;
    let end = start + rest[start..].find("```").unwrap();
    let s = Scenario::parse(&rest[start..end], "scenarios.md").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.semantics.proposals().count(), Proposal::ALL.len());
    let w = &s.world;
    let root = w.task(w.task_by_name("hostroot").unwrap());
    assert!(root.cred.host_admin);
    assert_eq!(root.cred.keychain.len(), 1);
    assert_eq!(w.declarations().containers[0].intercept.len(), 2);
    assert_eq!(w.declarations().containers[0].intercept[1].0, "*");
}

/// Every shipped example under every combination of proposals: every operation runs (no rule
/// panics on a world it was not written for), twice with the same outcomes, and a comparison
/// with mainline names only operations whose outcomes do differ.
#[test]
fn every_example_under_every_semantics() {
    let mut names = Vec::new();
    for sub in ["", "proposals/"] {
        let dir = format!("{}/examples/{sub}", env!("CARGO_MANIFEST_DIR"));
        let mut these: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| format!("{sub}{}", e.file_name().to_string_lossy()))
            .filter(|n| n.ends_with(".toml"))
            .collect();
        these.sort();
        names.extend(these);
    }
    assert!(names.iter().filter(|n| n.starts_with("proposals/")).count() >= 7);
    for n in &names {
        let s = example(n);
        let mainline = s.run_with(Semantics::MAINLINE);
        for bits in 0u8..128 {
            let mut sem = Semantics::MAINLINE;
            for (i, p) in Proposal::ALL.iter().enumerate() {
                if bits & (1 << i) != 0 {
                    sem = sem.with(*p);
                }
            }
            let a = s.run_with(sem);
            let b = s.run_with(sem);
            assert_eq!(a.len(), s.ops.len(), "{n} under {sem}");
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(x.outcome, y.outcome, "{n} under {sem}");
            }
            let diffs = s.compare(&[Semantics::MAINLINE, sem]);
            for d in &diffs {
                let (m, p) = (&mainline[d.index].outcome, &a[d.index].outcome);
                assert!(
                    m.result != p.result || m.output != p.output,
                    "{n} {sem} #{}",
                    d.index
                );
                assert_eq!(
                    d.sides[0].from_parting,
                    m.trace[d.parted_at.min(m.trace.len())..]
                );
            }
            if sem.is_mainline() {
                assert!(diffs.is_empty(), "{n}");
            }
        }
    }
}

#[test]
fn seed004_isolated_ids() {
    let s = example("proposals/seed004_isolated_userns.toml");
    let iso = sem("isolated_userns");
    let m = Semantics::MAINLINE;
    // "access to the full uid/gid range (uint32)" without coordination: the owner writes it.
    let w = line_of(&s, "host1000: write_uid_map");
    assert_eq!(at(&s, iso, w).0, Verdict::Allowed);
    assert_eq!(at(&s, m, w).0, EPERM);
    // "completely distinct kuid/kgid from everything else".
    let ps = line_of(&s, "hostroot: proc_status target=box1000");
    assert!(at(&s, iso, ps).1.starts_with("uid=65534 euid=65534"));
    let box1000 = credns_model::ISOLATED_BASE + credns_model::ISOLATED_BAND + 1000;
    assert!(at(&s, m, ps).1.starts_with(&format!("uid={box1000} ")));
    assert_eq!(
        at(&s, iso, line_of(&s, "box1000: kill target=host1000")).0,
        EPERM
    );
    // Host filesystems only "rely on the use of VFS based shifting".
    let host_create = line_of(&s, "boxroot: create path=/tmp/x");
    assert_eq!(
        at(&s, iso, host_create).0,
        Verdict::Denied(credns_model::Errno::EOVERFLOW)
    );
    assert_eq!(at(&s, m, host_create).0, Verdict::Allowed);
    let shifted = line_of(&s, "box1000: create path=/box-data/shared/new");
    let (v, out) = at(&s, iso, shifted);
    assert_eq!(v, Verdict::Allowed);
    assert!(out.contains("disk_uid=1000 disk_gid=1000"), "{out}");
    assert_eq!(
        at(&s, iso, line_of(&s, "box1000: open path=/data/shared/doc")).0,
        EACCES
    );
    assert_eq!(
        at(
            &s,
            iso,
            line_of(&s, "box1000: open path=/box-data/shared/doc")
        )
        .0,
        Verdict::Allowed
    );
}

#[test]
fn isolated_maps_are_the_full_range() {
    let head = "[settings]\nsemantics = [\"isolated_userns\"]\n[[namespace]]\nname = \"n\"\nowner = 0\nisolated = true\n";
    let (l, _, msg) = err(&format!("{head}uid_map = \"0 100000 65536\"\n"));
    assert_eq!(l, 7);
    assert!(msg.contains("full range"), "{msg}");
    let s = Scenario::parse(&format!("{head}uid_map = \"0 0 4294967295\"\ngid_map = \"0 0 4294967295\"\n[[process]]\nname = \"r\"\nns = \"n\"\nuid = 0\n"), "ok.toml").unwrap();
    let w = &s.world;
    let r = w.task(w.task_by_name("r").unwrap());
    assert_eq!(r.cred.uid.0, credns_model::ISOLATED_BASE);
}

/// Seed 002 on today's kernel is approximated by giving the container a session keyring with
/// the `_container` keyring linked in it (issue 11's `credns run` keyrings). In the model, under
/// mainline: the denizen finds "foobar" by `request_key` there too, after the keys of its own
/// session keyring, as the proposal's container keyring is searched after it. Where they
/// differ: through the session keyring the denizen *possesses* the container's keys (the
/// possessor rights of their masks apply), where the proposal grants only what the `container:`
/// entries of their ACLs say.
#[test]
fn seed002_session_keyring_approximation_agrees_on_the_example() {
    let approx = Scenario::parse(
        r#"
[[process]]
name = "manager"
uid = 0

[[process]]
name = "denizen"
uid = 1000

[[process]]
name = "denizen_own"
uid = 1001

[[key]]
name = "_ses_ct"                 # the container's session keyring, shared by its denizens
type = "keyring"
owner = 0
group = 0
perm = "0x3f1b0000"
install = ["denizen:session"]

[[key]]
name = "_ses_own"
type = "keyring"
owner = 0
group = 0
perm = "0x3f1b0000"
install = ["denizen_own:session"]

[[key]]
name = "own_foobar"
description = "foobar"
payload = "mine"
owner = 1001
group = 1001
at = "_ses_own"

[[key]]
name = "_container"
type = "keyring"
owner = 0
group = 0
perm = "0x0b000000"              # possessors: view, read, search
at = ["_ses_ct", "_ses_own"]

[[key]]
name = "foobar"
payload = "token"
owner = 0
group = 0
perm = "0x0b000000"
at = "_container"

[[op]]
by = "denizen"
op = "request_key"
description = "foobar"

[[op]]
by = "denizen_own"
op = "request_key"
description = "foobar"

[[op]]
by = "denizen"
op = "keyctl_read"
key = "foobar"
"#,
        "approx.toml",
    )
    .unwrap();
    let a = approx.run();
    let p = example("proposals/seed002_container_keys.toml").run();
    let out = |r: &credns_model::OpReport| {
        r.outcome
            .output
            .as_ref()
            .map(|o| o.get("key").unwrap_or("").to_string())
            .unwrap_or_default()
    };
    // The seed's example: the denizen finds "foobar"; a key of its own session keyring first.
    assert_eq!(a[0].outcome.result, Verdict::Allowed, "{}", a[0]);
    assert_eq!(out(&a[0]), "foobar");
    assert_eq!(out(&p[0]), "foobar");
    assert_eq!(out(&a[1]), "own_foobar");
    assert_eq!(out(&p[1]), "own_foobar");
    // And reads it: by possession here, by the container's ACE under the proposal.
    assert_eq!(a[2].outcome.result, Verdict::Allowed);
    assert_eq!(p[3].outcome.result, Verdict::Allowed);
    let why = |r: &credns_model::OpReport, f: &str| {
        r.outcome
            .trace
            .iter()
            .find(|s| s.function == f && s.check.contains("READ on \"foobar\""))
            .map(|s| s.check.clone())
            .unwrap_or_default()
    };
    let a_why = why(&a[2], "key_task_permission");
    let p_why = why(&p[3], "key_acl:key_task_permission");
    assert!(a_why.contains("POS (possessed)"), "{a_why}");
    assert!(!p_why.is_empty(), "the proposal decides by the ACL");
    println!("approximation: {a_why}\nproposal:      {p_why}");
}

#[test]
fn isolated_namespaces_are_bounded() {
    let mut text = String::from("[settings]\nsemantics = [\"isolated_userns\"]\n");
    for i in 0..=credns_model::ISOLATED_MAX {
        text.push_str(&format!("[[namespace]]\nname = \"n{i}\"\nowner = 0\nisolated = true\nuid_map = \"0 0 4294967295\"\n"));
    }
    let (line, _, msg) = err(&text);
    assert_eq!(line, 2 + credns_model::ISOLATED_MAX * 5 + 4);
    assert!(msg.contains("room for 127"), "{msg}");
}
