//! Key rules, one test each: the exact outcome and the decisive trace steps.

use credns_model::{Errno, Outcome, Scenario, StepVerdict, Verdict};

/// Parse `world` plus one `[[op]]` per entry of `ops` and run them; return the outcomes.
fn run(world: &str, ops: &[&str]) -> Vec<Outcome> {
    let mut text = world.to_string();
    for o in ops {
        text.push_str("\n[[op]]\n");
        text.push_str(o);
        text.push('\n');
    }
    let s = Scenario::parse(&text, "keys-test.toml").unwrap_or_else(|e| panic!("{e}"));
    s.run().into_iter().map(|r| r.outcome).collect()
}

fn last(world: &str, ops: &[&str]) -> Outcome {
    run(world, ops).pop().expect("at least one op")
}

fn denied(o: &Outcome, e: Errno) {
    assert_eq!(o.result, Verdict::Denied(e), "{o}");
}

fn allowed(o: &Outcome) {
    assert_eq!(o.result, Verdict::Allowed, "{o}");
}

fn out(o: &Outcome, key: &str) -> String {
    o.output
        .as_ref()
        .and_then(|v| v.get(key))
        .unwrap_or_else(|| panic!("no output {key}: {o}"))
        .to_string()
}

/// The `key_task_permission` steps, as (check text, verdict).
fn perm_steps(o: &Outcome) -> Vec<(String, StepVerdict)> {
    o.trace
        .iter()
        .filter(|s| s.function == "key_task_permission")
        .map(|s| (s.check.clone(), s.verdict))
        .collect()
}

const HOST: &str = r#"
[[namespace]]
name = "ctr"
owner = 0
uid_map = "0 100000 65536"
gid_map = "0 100000 65536"

[[process]]
name = "root"
uid = 0

[[process]]
name = "u1000"
uid = 1000
groups = [50]

[[process]]
name = "u1001"
uid = 1001

[[process]]
name = "fs1000"          # uid 1001 but fsuid 1000
uid = 1001
fsuid = 1000

[[process]]
name = "croot"
ns = "ctr"
uid = 0

[[process]]
name = "k100000"         # host uid 100000: the container root's kuid
uid = 100000

# A shared session keyring for everyone, searchable by possessors only.
[[key]]
name = "S"
type = "keyring"
description = "_ses"
install = ["root:session", "u1000:session", "u1001:session", "fs1000:session", "croot:session", "k100000:session"]
owner = 0
group = 0
perm = "0x3f030000"
"#;

fn with(keys: &str) -> String {
    format!("{HOST}\n{keys}")
}

// ---------------------------------------------------------------- key_task_permission

#[test]
fn owner_gets_the_usr_byte_by_fsuid() {
    // Not possessed (POS byte 0 anyway): USR has READ, OTH nothing.
    let w = with(
        r#"[[key]]
name = "k"
at = "S"
owner = 1000
group = 0
perm = "0x00020000""#,
    );
    allowed(&last(
        &w,
        &["by = \"fs1000\"\nop = \"keyctl_read\"\nkey = \"k\""],
    ));
    let o = last(&w, &["by = \"u1001\"\nop = \"keyctl_read\"\nkey = \"k\""]);
    denied(&o, Errno::EACCES);
    assert!(perm_steps(&o)
        .iter()
        .any(|(c, v)| c.contains("READ") && c.contains("class OTH") && *v == StepVerdict::Fail));
}

#[test]
fn owner_with_empty_usr_byte_does_not_fall_to_other() {
    let w = with(
        r#"[[key]]
name = "k"
at = "S"
owner = 1000
group = 0
perm = "0x0000003f""#,
    );
    let o = last(
        &w,
        &["by = \"u1000\"\nop = \"keyctl_describe\"\nkey = \"k\""],
    );
    denied(&o, Errno::EACCES);
    assert!(perm_steps(&o)
        .iter()
        .any(|(c, _)| c.contains("VIEW") && c.contains("class USR")));
    allowed(&last(
        &w,
        &["by = \"u1001\"\nop = \"keyctl_describe\"\nkey = \"k\""],
    ));
}

#[test]
fn group_byte_by_supplementary_group_only_if_nonzero() {
    let gr = with(
        r#"[[key]]
name = "k"
at = "S"
owner = 0
group = 50
perm = "0x00000100""#,
    );
    let o = last(
        &gr,
        &["by = \"u1000\"\nop = \"keyctl_describe\"\nkey = \"k\""],
    );
    allowed(&o);
    assert!(perm_steps(&o).iter().any(|(c, _)| c.contains("class GRP")));
    // GRP byte zero: a member is judged by OTH.
    let oth = with(
        r#"[[key]]
name = "k"
at = "S"
owner = 0
group = 50
perm = "0x00000001""#,
    );
    let o = last(
        &oth,
        &["by = \"u1000\"\nop = \"keyctl_describe\"\nkey = \"k\""],
    );
    allowed(&o);
    assert!(perm_steps(&o).iter().any(|(c, _)| c.contains("class OTH")));
}

#[test]
fn kuids_are_compared_across_namespaces() {
    // The container root and host uid 100000 are one kuid; host root (kuid 0) is a stranger
    // to a key owned by the container's "root".
    let w = with(
        r#"[[key]]
name = "k"
at = "S"
owner = "ctr:0"
group = "ctr:0"
perm = "0x00010000""#,
    );
    allowed(&last(
        &w,
        &["by = \"k100000\"\nop = \"keyctl_describe\"\nkey = \"k\""],
    ));
    let o = last(
        &w,
        &["by = \"root\"\nop = \"keyctl_describe\"\nkey = \"k\""],
    );
    denied(&o, Errno::EACCES);
    let o = last(
        &w,
        &["by = \"croot\"\nop = \"keyctl_describe\"\nkey = \"k\""],
    );
    assert_eq!(out(&o, "desc"), "user;0;0;00010000;k");
    let o = last(
        &w,
        &["by = \"k100000\"\nop = \"keyctl_describe\"\nkey = \"k\""],
    );
    assert_eq!(out(&o, "desc"), "user;100000;100000;00010000;k");
}

#[test]
fn possessor_bits_are_additive() {
    // USR gives VIEW, POS gives READ: a possessing owner has both.
    let w = with(
        r#"[[key]]
name = "k"
at = "u1000:thread"
owner = 1000
group = 1000
perm = "0x0a010000"
payload = "x""#,
    );
    let o = last(&w, &["by = \"u1000\"\nop = \"keyctl_read\"\nkey = \"k\""]);
    allowed(&o);
    assert!(perm_steps(&o)
        .iter()
        .any(|(c, v)| c.contains("READ") && c.contains("+ POS") && *v == StepVerdict::Pass));
}

// ---------------------------------------------------------------- possession

const NESTED: &str = r#"
[[key]]
name = "ring"
type = "keyring"
at = "u1000:process"
owner = 0
group = 0
perm = "PERM"

[[key]]
name = "inner"
at = "ring"
owner = 0
group = 0
perm = "0x0b000000"
payload = "deep"
"#;

#[test]
fn possession_descends_only_through_searchable_keyrings() {
    let ok = with(&NESTED.replace("PERM", "0x08000000"));
    let o = last(
        &ok,
        &["by = \"u1000\"\nop = \"keyctl_read\"\nkey = \"inner\""],
    );
    allowed(&o);
    assert_eq!(out(&o, "payload"), "deep");
    let no = with(&NESTED.replace("PERM", "0x37000000"));
    let o = last(
        &no,
        &["by = \"u1000\"\nop = \"keyctl_read\"\nkey = \"inner\""],
    );
    denied(&o, Errno::EACCES);
    assert!(o.trace.iter().any(|s| s.check.contains("do not descend")));
}

#[test]
fn possession_needs_search_on_the_key_itself() {
    let w = with(
        r#"[[key]]
name = "k"
at = "u1000:thread"
owner = 0
group = 0
perm = "0x03000000"
payload = "x""#,
    );
    // READ through POS would do, but without SEARCH the key is not possessed.
    let o = last(&w, &["by = \"u1000\"\nop = \"keyctl_read\"\nkey = \"k\""]);
    denied(&o, Errno::EACCES);
    assert!(o.trace.iter().any(|s| s.check == "not possessed"));
}

#[test]
fn special_ids_are_possessed() {
    let w = with(
        r#"[[key]]
name = "t"
type = "keyring"
install = "u1000:thread"
owner = 0
group = 0
perm = "0x01000000""#,
    );
    // By serial: not possessed (it lacks SEARCH), OTH byte empty.
    denied(
        &last(
            &w,
            &["by = \"u1000\"\nop = \"keyctl_describe\"\nkey = \"t\""],
        ),
        Errno::EACCES,
    );
    // As @t: possessed, POS VIEW.
    let o = last(
        &w,
        &["by = \"u1000\"\nop = \"keyctl_describe\"\nkey = \"@t\""],
    );
    allowed(&o);
    assert_eq!(out(&o, "desc"), "keyring;0;0;01000000;t");
}

#[test]
fn search_order_thread_process_session_and_errors() {
    let w = with(
        r#"[[key]]
name = "inp"
description = "x"
at = "u1000:process"
owner = 1000
group = 1000
perm = "0x3f000000"
payload = "p"

[[key]]
name = "nosearch"
description = "y"
at = "S"
owner = 0
group = 0
perm = "0x01000000"
payload = "q""#,
    );
    let o = last(&w, &["by = \"u1000\"\nop = \"keyctl_search\"\nkeyring = \"@p\"\ntype = \"user\"\ndescription = \"x\""]);
    assert_eq!(out(&o, "key"), "inp");
    // A match without SEARCH: EACCES; nothing at all: ENOKEY; wrong type: ENOKEY.
    denied(&last(&w, &["by = \"u1000\"\nop = \"keyctl_search\"\nkeyring = \"@s\"\ntype = \"user\"\ndescription = \"y\""]), Errno::EACCES);
    denied(&last(&w, &["by = \"u1000\"\nop = \"keyctl_search\"\nkeyring = \"@s\"\ntype = \"user\"\ndescription = \"zz\""]), Errno::ENOKEY);
    denied(&last(&w, &["by = \"u1000\"\nop = \"keyctl_search\"\nkeyring = \"@p\"\ntype = \"keyring\"\ndescription = \"x\""]), Errno::ENOKEY);
    // Possession of "inp" is found in the process keyring, after the (absent) thread keyring.
    let o = last(
        &w,
        &["by = \"u1000\"\nop = \"keyctl_describe\"\nkey = \"inp\""],
    );
    let searched: Vec<&str> = o
        .trace
        .iter()
        .filter(|s| s.function == "search_cred_keyrings_rcu")
        .map(|s| s.check.as_str())
        .collect();
    assert_eq!(searched, vec!["search the process keyring"]);
}

#[test]
fn without_a_session_the_user_session_keyring_is_searched_and_installed() {
    let w = r#"
[[process]]
name = "lone"
uid = 2000

[[key]]
name = "k"
at = "lone:user"
perm = "0x3f000000"
payload = "u"
"#;
    // "k" is in the user keyring, linked from the user-session keyring: possessed.
    let o = last(w, &["by = \"lone\"\nop = \"keyctl_read\"\nkey = \"k\""]);
    allowed(&o);
    assert!(o
        .trace
        .iter()
        .any(|s| s.check.contains("user-session (no session keyring)")));
    // @s without a session keyring installs the user-session keyring.
    let o = last(
        w,
        &["by = \"lone\"\nop = \"keyctl_get_keyring_id\"\nkey = \"@s\""],
    );
    assert_eq!(out(&o, "key"), "_uid_ses.2000");
    // With create, a new anonymous session keyring instead.
    let o = last(
        w,
        &["by = \"lone\"\nop = \"keyctl_get_keyring_id\"\nkey = \"@s\"\ncreate = true"],
    );
    assert_eq!(out(&o, "key"), "_ses");
}

#[test]
fn user_keyrings_are_per_namespace() {
    let o = run(
        HOST,
        &[
            "by = \"croot\"\nop = \"keyctl_get_keyring_id\"\nkey = \"@u\"",
            "by = \"k100000\"\nop = \"keyctl_get_keyring_id\"\nkey = \"@u\"",
        ],
    );
    let (a, b) = (&o[0], &o[1]);
    assert_eq!(out(a, "key"), "_uid.0");
    assert_eq!(out(b, "key"), "_uid.100000");
    assert_ne!(out(a, "serial"), out(b, "serial"));
    let o = last(
        HOST,
        &["by = \"croot\"\nop = \"keyctl_describe\"\nkey = \"@u\""],
    );
    assert_eq!(out(&o, "desc"), "keyring;0;65534;1f3f0000;_uid.0");
}

#[test]
fn user_keyring_without_search_is_enokey() {
    let o = run(
        HOST,
        &[
            "by = \"u1000\"\nop = \"keyctl_setperm\"\nkey = \"@u\"\nperm = \"0x24200000\"",
            "by = \"u1000\"\nop = \"keyctl_get_keyring_id\"\nkey = \"@us\"",
        ],
    );
    allowed(&o[0]);
    denied(&o[1], Errno::ENOKEY);
    assert!(o[1].consulted("look_up_user_keyrings"));
}

// ---------------------------------------------------------------- keyctl operations

const OPS: &str = r#"
[[key]]
name = "mine"
description = "mine"
at = "u1000:session"
payload = "v1"

[[key]]
name = "ring"
type = "keyring"
description = "ring"
at = "u1000:thread"
"#;

fn ops_world() -> String {
    // u1000 gets its own session keyring (not S) for these.
    HOST.replace("\"u1000:session\", ", "") + OPS
}

#[test]
fn read_falls_back_to_possession_and_lookup_errors_are_enokey() {
    let w = ops_world().replace(
        "payload = \"v1\"",
        "payload = \"v1\"\nperm = \"0x09000000\"",
    );
    let o = last(
        &w,
        &["by = \"u1000\"\nop = \"keyctl_read\"\nkey = \"mine\""],
    );
    allowed(&o);
    assert!(o
        .trace
        .iter()
        .any(|s| s.function == "keyctl_read_key" && s.verdict == StepVerdict::Pass));
    let o = last(&w, &["by = \"u1001\"\nop = \"keyctl_read\"\nkey = \"@p\""]);
    denied(&o, Errno::ENOKEY);
    denied(
        &last(&w, &["by = \"u1001\"\nop = \"keyctl_read\"\nkey = \"12\""]),
        Errno::ENOKEY,
    );
}

#[test]
fn update_needs_write_and_an_update_operation() {
    let w = ops_world();
    let o = run(
        &w,
        &[
            "by = \"u1000\"\nop = \"keyctl_update\"\nkey = \"mine\"\npayload = \"v2\"",
            "by = \"u1000\"\nop = \"keyctl_read\"\nkey = \"mine\"",
            "by = \"u1000\"\nop = \"keyctl_update\"\nkey = \"ring\"\npayload = \"v3\"",
            "by = \"u1001\"\nop = \"keyctl_update\"\nkey = \"mine\"\npayload = \"v4\"",
        ],
    );
    allowed(&o[0]);
    assert_eq!(out(&o[1], "payload"), "v2");
    denied(&o[2], Errno::EOPNOTSUPP);
    denied(&o[3], Errno::EACCES);
}

#[test]
fn add_key_creates_updates_and_refuses() {
    let w = ops_world();
    let o = run(
        &w,
        &[
            "by = \"u1000\"\nop = \"add_key\"\nkeyring = \"ring\"\ndescription = \"new\"\npayload = \"a\"\nname = \"new\"",
            "by = \"u1000\"\nop = \"keyctl_describe\"\nkey = \"new\"",
            "by = \"u1000\"\nop = \"add_key\"\nkeyring = \"@s\"\ndescription = \"mine\"\npayload = \"b\"",
            "by = \"u1000\"\nop = \"add_key\"\nkeyring = \"mine\"\ndescription = \"x\"\npayload = \"c\"",
            "by = \"u1000\"\nop = \"add_key\"\nkeyring = \"@s\"\ntype = \"keyring\"\ndescription = \".dot\"",
            "by = \"u1001\"\nop = \"add_key\"\nkeyring = \"ring\"\ndescription = \"z\"\npayload = \"d\"",
        ],
    );
    assert_eq!(out(&o[0], "key"), "new");
    assert_eq!(out(&o[1], "desc"), "user;1000;1000;3f010000;new");
    assert_eq!(
        out(&o[2], "key"),
        "mine",
        "same description: the existing key is updated"
    );
    denied(&o[3], Errno::ENOTDIR);
    denied(&o[4], Errno::EPERM);
    denied(&o[5], Errno::EACCES);
}

#[test]
fn link_checks_cycles_and_unlink_needs_no_key_permission() {
    let w = ops_world()
        + r#"
[[key]]
name = "sub"
type = "keyring"
description = "sub"
at = "ring"
"#;
    let o = run(
        &w,
        &[
            "by = \"u1000\"\nop = \"keyctl_link\"\nkey = \"ring\"\nkeyring = \"sub\"",
            "by = \"u1000\"\nop = \"keyctl_link\"\nkey = \"mine\"\nkeyring = \"sub\"",
            "by = \"u1000\"\nop = \"keyctl_read\"\nkey = \"sub\"",
            "by = \"u1000\"\nop = \"keyctl_unlink\"\nkey = \"mine\"\nkeyring = \"ring\"",
            "by = \"u1000\"\nop = \"keyctl_setperm\"\nkey = \"mine\"\nperm = \"0\"",
            "by = \"u1000\"\nop = \"keyctl_unlink\"\nkey = \"mine\"\nkeyring = \"sub\"",
        ],
    );
    denied(&o[0], Errno::EDEADLK);
    allowed(&o[1]);
    assert_eq!(out(&o[2], "keys"), "mine");
    denied(&o[3], Errno::ENOENT);
    allowed(&o[4]);
    allowed(&o[5]);
}

#[test]
fn setperm_and_chown_privilege() {
    let w = ops_world();
    let o = run(
        &w,
        &[
            "by = \"u1000\"\nop = \"keyctl_setperm\"\nkey = \"mine\"\nperm = \"0x40000000\"",
            "by = \"root\"\nop = \"keyctl_setperm\"\nkey = \"mine\"\nperm = \"0x3f3f3f3f\"",
            "by = \"u1000\"\nop = \"keyctl_chown\"\nkey = \"mine\"\nuid = -1\ngid = 50",
            "by = \"u1000\"\nop = \"keyctl_chown\"\nkey = \"mine\"\nuid = 0\ngid = -1",
            "by = \"u1000\"\nop = \"keyctl_chown\"\nkey = \"mine\"\nuid = -1\ngid = 7",
            "by = \"croot\"\nop = \"keyctl_chown\"\nkey = \"mine\"\nuid = 70000\ngid = -1",
            "by = \"u1000\"\nop = \"keyctl_chown\"\nkey = \"mine\"\nuid = -1\ngid = -1",
        ],
    );
    denied(&o[0], Errno::EINVAL);
    // Root does not possess it and the OTH byte is empty: the SETATTR lookup fails first.
    denied(&o[1], Errno::EACCES);
    allowed(&o[2]);
    denied(&o[3], Errno::EACCES);
    assert!(o[3].consulted("cap_capable"));
    denied(&o[4], Errno::EACCES);
    denied(&o[5], Errno::EINVAL);
    allowed(&o[6]);
}

#[test]
fn container_root_cannot_use_the_sysadmin_override() {
    let w = with(
        r#"[[key]]
name = "k"
at = "S"
owner = 0
group = 0
perm = "0x3f3f3f3f""#,
    );
    let o = last(
        &w,
        &["by = \"croot\"\nop = \"keyctl_setperm\"\nkey = \"k\"\nperm = \"0\""],
    );
    denied(&o, Errno::EACCES);
    allowed(&last(
        &w,
        &["by = \"root\"\nop = \"keyctl_setperm\"\nkey = \"k\"\nperm = \"0\""],
    ));
}

#[test]
fn get_keyring_id_creates_only_when_asked() {
    let o = run(
        HOST,
        &[
            "by = \"u1001\"\nop = \"keyctl_get_keyring_id\"\nkey = \"@t\"",
            "by = \"u1001\"\nop = \"keyctl_get_keyring_id\"\nkey = \"@t\"\ncreate = true",
            "by = \"u1001\"\nop = \"keyctl_describe\"\nkey = \"@t\"",
        ],
    );
    denied(&o[0], Errno::ENOKEY);
    assert_eq!(out(&o[1], "key"), "_tid");
    assert_eq!(out(&o[2], "desc"), "keyring;1001;1001;3f010000;_tid");
}

#[test]
fn an_unlinked_key_is_unknown() {
    let o = run(
        &ops_world(),
        &[
            "by = \"u1000\"\nop = \"keyctl_unlink\"\nkey = \"mine\"\nkeyring = \"@s\"",
            "by = \"u1000\"\nop = \"keyctl_describe\"\nkey = \"mine\"",
        ],
    );
    allowed(&o[0]);
    assert!(matches!(o[1].result, Verdict::Unknown(_)), "{}", o[1]);
}

#[test]
fn thread_keyring_follows_fsuid() {
    let o = run(
        HOST,
        &[
            "by = \"root\"\nop = \"keyctl_get_keyring_id\"\nkey = \"@t\"\ncreate = true",
            "by = \"root\"\nop = \"setresuid\"\nruid = 5\neuid = 5\nsuid = 5",
            "by = \"root\"\nop = \"keyctl_describe\"\nkey = \"@t\"",
        ],
    );
    allowed(&o[1]);
    assert!(o[1].consulted("key_fsuid_changed"));
    assert_eq!(out(&o[2], "desc"), "keyring;5;0;3f010000;_tid");
}

// ---------------------------------------------------------------- properties

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn world(place: &str, owner: u32, group: u32, perm: u32) -> String {
        format!(
            r#"
[[process]]
name = "me"
uid = 1000
groups = [50]

[[process]]
name = "other"
uid = 3000

[[key]]
name = "k"
at = "{place}"
owner = {owner}
group = {group}
perm = "{perm:#010x}"
payload = "x"
"#
        )
    }

    proptest! {
        /// Possession only adds permissions: whatever a process may do to a key it does not
        /// possess (the key sits in another process's keyring), it may do when the key sits in
        /// its own process keyring.
        #[test]
        fn possession_never_takes_a_permission_away(
            perm in any::<u32>().prop_map(|p| p & 0x3f3f_3f3f),
            owner in prop::sample::select(vec![1000u32, 1001, 3000]),
            group in prop::sample::select(vec![1000u32, 50, 7]),
            op in prop::sample::select(vec![
                "op = \"keyctl_read\"\nkey = \"k\"",
                "op = \"keyctl_describe\"\nkey = \"k\"",
                "op = \"keyctl_update\"\nkey = \"k\"\npayload = \"y\"",
                "op = \"keyctl_setperm\"\nkey = \"k\"\nperm = \"0\"",
                "op = \"keyctl_link\"\nkey = \"k\"\nkeyring = \"@t\"",
            ]),
        ) {
            let by = format!("by = \"me\"\n{op}");
            let far = last(&world("other:process", owner, group, perm), &[&by]);
            let near = last(&world("me:process", owner, group, perm), &[&by]);
            prop_assert!(!matches!(far.result, Verdict::Unknown(_)), "{}", far);
            if far.is_allowed() {
                prop_assert!(near.is_allowed(), "allowed unpossessed but not possessed:\n{}\n{}", far, near);
            }
            // Only EACCES separates them.
            if let Verdict::Denied(e) = near.result {
                prop_assert_eq!(far.result, Verdict::Denied(e));
            }
        }

        /// Any `[[key]]` table either parses or names a line and column inside the text; runs
        /// never panic.
        #[test]
        fn key_tables_parse_or_point_at_the_error(
            ty in prop::sample::select(vec!["user", "keyring", "big_key", ""]),
            at in prop::sample::select(vec!["me:thread", "me:user", "init:1000:user", "nope", "me:bogus", "x:y:z:w"]),
            perm in prop::sample::select(vec!["0x3f010000", "3f", "0xzz", "-1"]),
            owner in prop::sample::select(vec!["1000", "\"kernel:5\"", "\"ns:1\"", "-3"]),
        ) {
            let text = format!(
                "[[process]]\nname = \"me\"\nuid = 1000\n\n[[key]]\nname = \"k\"\ntype = \"{ty}\"\nat = \"{at}\"\nperm = \"{perm}\"\nowner = {owner}\n\n[[op]]\nby = \"me\"\nop = \"keyctl_describe\"\nkey = \"k\"\n"
            );
            match Scenario::parse(&text, "p.toml") {
                Ok(s) => {
                    let _ = s.run();
                }
                Err(credns_model::Error::Scenario { line, column, .. }) => {
                    prop_assert!(line >= 1 && line <= text.lines().count() + 1);
                    prop_assert!(column >= 1);
                }
                Err(e) => prop_assert!(false, "not a positioned error: {e}"),
            }
        }
    }
}
