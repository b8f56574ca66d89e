//! The model's `[[run_keyring]]` held to real containers: containers made by `credns run`
//! (through a daemon of the test's own), keys put in by `credns key add` and `credns key
//! grant`, key operations made inside them with keyutils' `keyctl` — and the same world written
//! as a scenario (its allocations, maps and keys as the registry and the kernel report them),
//! each operation expected to give what the kernel gave.

mod common;

use common::keys_env::*;
use common::*;
use credns_model::Scenario;
use serde_json::Value;

/// One operation: who makes it, the scenario's `[[op]]` fields, and the shell command.
struct KeyOp {
    by: &'static str,
    fields: String,
    shell: String,
}

fn op(by: &'static str, fields: &str, shell: &str) -> KeyOp {
    KeyOp {
        by,
        fields: fields.to_string(),
        shell: shell.to_string(),
    }
}

/// The errno keyctl's message names.
fn errno_of(msg: &str) -> &'static str {
    for (text, errno) in [
        ("Permission denied", "EACCES"),
        ("Required key not available", "ENOKEY"),
        ("Operation not permitted", "EPERM"),
        ("Not a directory", "ENOTDIR"),
        ("No such file or directory", "ENOENT"),
        ("Invalid argument", "EINVAL"),
        ("Key has been revoked", "EKEYREVOKED"),
    ] {
        if msg.contains(text) {
            return errno;
        }
    }
    panic!("keyctl said {msg:?}: no errno known for it");
}

/// `N RC MESSAGE` lines for each command of `ops`, as a shell script.
fn script(ops: &[&KeyOp]) -> String {
    ops.iter()
        .enumerate()
        .map(|(i, o)| format!("m=$({} 2>&1 >/dev/null); echo \"{i} $? $m\"; ", o.shell))
        .collect()
}

/// The kernel's answers, `allowed` or an errno name, from the lines of [`script`].
fn answers(text: &str, n: usize) -> Vec<String> {
    let got: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let mut w = l.splitn(3, ' ');
            let (_, rc, msg) = (w.next()?, w.next()?, w.next().unwrap_or(""));
            Some(if rc == "0" {
                "allowed".to_string()
            } else {
                errno_of(msg).to_string()
            })
        })
        .collect();
    assert_eq!(got.len(), n, "{text}");
    got
}

/// An allocation's number and its uid range's first host id, from `credns show --json`.
fn allocation(env: &Env, name: &str) -> (u64, u64) {
    let v: Value = serde_json::from_str(&ok(&env.run(&["show", name, "--json"]))).unwrap();
    let id = v["id"].as_u64().unwrap_or_else(|| panic!("{v}"));
    let base = v["uid"]["start"].as_u64().unwrap_or_else(|| panic!("{v}"));
    (id, base)
}

/// `[[key]]` fields from `keyctl rdescribe` as root sees the key: owner, group, mask.
fn key_table(name: &str, described: &str, payload: &str, at: &str) -> String {
    let f: Vec<&str> = described.trim().splitn(5, ';').collect();
    assert_eq!(f.len(), 5, "{described:?}");
    format!(
        "[[key]]\nname = \"{name}\"\ndescription = \"{}\"\npayload = \"{payload}\"\nowner = \"kernel:{}\"\ngroup = \"kernel:{}\"\nperm = \"0x{}\"\nat = {at}\n\n",
        f[4], f[1], f[2], f[3]
    )
}

#[test]
fn the_model_answers_as_real_containers_do() {
    let Some(env) = Env::new("the_model_answers_as_real_containers_do") else {
        return;
    };
    ok(&env.run(&["run", "--name", "a", "--", "true"]));
    ok(&env.run(&["run", "--name", "b", "--", "true"]));
    let foobar = ok(&env.run(&["key", "add", "a", "user", "foobar", "bar"]));
    let foobar = foobar.trim();
    let (a_id, a_base) = allocation(&env, "a");
    let (b_id, b_base) = allocation(&env, "b");
    let ring = {
        let v: Value =
            serde_json::from_str(&ok(&env.run(&["key", "show", "a", "--json"]))).unwrap();
        v[0]["keyring"].as_i64().unwrap()
    };
    let f = foobar;
    let a_ops = |by: &'static str| {
        vec![
            op(by, "op = \"request_key\"\ntype = \"user\"\ndescription = \"foobar\"", "keyctl request user foobar"),
            op(by, "op = \"keyctl_read\"\nkey = \"foobar\"", &format!("keyctl print {f}")),
            op(by, "op = \"keyctl_update\"\nkey = \"foobar\"\npayload = \"changed\"", &format!("keyctl update {f} changed")),
            op(by, "op = \"keyctl_setperm\"\nkey = \"foobar\"\nperm = \"0x3f3f0000\"", &format!("keyctl setperm {f} 0x3f3f0000")),
            op(by, "op = \"keyctl_unlink\"\nkey = \"foobar\"\nkeyring = \"a.container\"", &format!("keyctl unlink {f} {ring}")),
            op(by, "op = \"keyctl_link\"\nkey = \"foobar\"\nkeyring = \"@s\"", &format!("keyctl link {f} @s")),
            op(by, "op = \"request_key\"\ntype = \"user\"\ndescription = \"afs:token\"", "keyctl request user afs:token"),
            op(by, "op = \"request_key\"\ntype = \"user\"\ndescription = \"secret\"", "keyctl request user secret"),
            op(by, "op = \"keyctl_read\"\nkey = \"secret\"", "keyctl print $SECRET"),
            op(by, "op = \"keyctl_setperm\"\nkey = \"@s\"\nperm = \"0x3f3f0000\"", "keyctl setperm @s 0x3f3f0000"),
            op(by, "op = \"keyctl_search\"\nkeyring = \"a.container\"\ntype = \"user\"\ndescription = \"foobar\"", &format!("keyctl search {ring} user foobar")),
            op(by, "op = \"keyctl_read\"\nkey = \"a.container\"", &format!("keyctl rlist {ring}")),
            op(by, "op = \"add_key\"\ntype = \"user\"\ndescription = \"x\"\npayload = \"y\"\nkeyring = \"a.container\"", &format!("keyctl add user x y {ring}")),
            op(by, &format!("op = \"add_key\"\ntype = \"user\"\ndescription = \"{by}-own\"\npayload = \"x\"\nkeyring = \"@s\""), &format!("keyctl add user {by}-own x @s")),
        ]
    };
    let outsider = |by: &'static str| {
        vec![
            op(by, "op = \"request_key\"\ntype = \"user\"\ndescription = \"foobar\"", "keyctl request user foobar"),
            op(by, "op = \"keyctl_read\"\nkey = \"foobar\"", &format!("keyctl print {f}")),
            op(by, "op = \"request_key\"\ntype = \"user\"\ndescription = \"afs:token\"", "keyctl request user afs:token"),
            op(by, "op = \"keyctl_search\"\nkeyring = \"a.container\"\ntype = \"user\"\ndescription = \"foobar\"", &format!("keyctl search {ring} user foobar")),
        ]
    };
    let groups: [(&str, Vec<KeyOp>); 4] = [
        ("$CREDNS run --name a --socket $S --", a_ops("a_root")),
        ("$CREDNS run --name a --user 5 --socket $S --", a_ops("a_5")),
        ("$CREDNS run --name b --socket $S --", outsider("b_root")),
        (
            "setpriv --reuid 1000 --regid 1000 --clear-groups keyctl session - ",
            outsider("user"),
        ),
    ];
    // The manager (root, in a session keyring of its own) makes a key, grants it to a, keeps
    // another, then runs each group of operations and prints the keys as it sees them.
    let mut sh = String::from(
        "T=$(keyctl add user afs:token secret @s) && $CREDNS key grant $T a --socket $S && \
         SECRET=$(keyctl add user secret x @s) && export SECRET && \
         echo \"T $(keyctl rdescribe $T)\" && echo \"S $(keyctl rdescribe $SECRET)\" && ",
    );
    sh.push_str(&format!("echo \"F $(keyctl rdescribe {f})\"; "));
    for (i, (prefix, ops)) in groups.iter().enumerate() {
        let refs: Vec<&KeyOp> = ops.iter().collect();
        let body = script(&refs).replace('\'', "'\\''");
        sh.push_str(&format!(
            "echo '== {i}'; {prefix} sh -c '{body}' | sed 's/^/{i}: /'; "
        ));
    }
    let o = env.shell(&sh);
    let text = ok(&o);
    let described = |tag: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{tag} ")))
            .unwrap_or_else(|| panic!("no {tag} line in {text}"))
            .to_string()
    };
    // The world as it was built, written as a scenario.
    let mut scenario = format!(
        "[[namespace]]\nname = \"a\"\nowner = 0\nuid_map = \"0 {a_base} 65536\"\ngid_map = \"0 {a_base} 65536\"\n\n\
         [[namespace]]\nname = \"b\"\nowner = 0\nuid_map = \"0 {b_base} 65536\"\ngid_map = \"0 {b_base} 65536\"\n\n\
         [[process]]\nname = \"a_root\"\nns = \"a\"\nuid = 0\n\n\
         [[process]]\nname = \"a_5\"\nns = \"a\"\nuid = 5\n\n\
         [[process]]\nname = \"b_root\"\nns = \"b\"\nuid = 0\n\n\
         [[process]]\nname = \"user\"\nuid = 1000\n\n\
         [[process]]\nname = \"manager\"\nuid = 0\n\n\
         [[run_keyring]]\nname = \"a\"\nallocation = {a_id}\nprocesses = [\"a_root\", \"a_5\"]\n\n\
         [[run_keyring]]\nname = \"b\"\nallocation = {b_id}\nprocesses = [\"b_root\"]\n\n"
    );
    scenario.push_str(&key_table(
        "foobar",
        &described("F"),
        "bar",
        "\"a.container\"",
    ));
    scenario.push_str(&key_table(
        "token",
        &described("T"),
        "secret",
        "[\"a.container\", \"manager:session\"]",
    ));
    scenario.push_str(&key_table(
        "secret",
        &described("S"),
        "x",
        "\"manager:session\"",
    ));
    let mut kernel = Vec::new();
    for (i, (_, ops)) in groups.iter().enumerate() {
        let tag = format!("{i}: ");
        let lines: String = text
            .lines()
            .filter_map(|l| l.strip_prefix(&tag))
            .map(|l| format!("{l}\n"))
            .collect();
        let got = answers(&lines, ops.len());
        for (o, k) in ops.iter().zip(got) {
            scenario.push_str(&format!(
                "[[op]]\nby = \"{}\"\n{}\nexpect = \"{k}\"\n\n",
                o.by, o.fields
            ));
            kernel.push(k);
        }
    }
    let s = Scenario::parse(&scenario, "run_keyring_model.toml")
        .unwrap_or_else(|e| panic!("{e}\n{scenario}"));
    let reports = s.run();
    assert_eq!(reports.len(), kernel.len());
    let wrong: Vec<String> = reports
        .iter()
        .filter(|r| r.matched != Some(true))
        .map(|r| {
            format!(
                "line {}: {} => model {}, kernel {:?}",
                r.line, r.text, r.outcome.result, r.expect
            )
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{}\n--- scenario ---\n{scenario}",
        wrong.join("\n")
    );
    // Every kind of answer occurs, so the comparison is not vacuous.
    for k in ["allowed", "EACCES", "ENOKEY"] {
        assert!(kernel.iter().any(|x| x == k), "no {k} among {kernel:?}");
    }
    eprintln!(
        "{} operations in real containers, the model agreeing on each: {kernel:?}",
        kernel.len()
    );
}
