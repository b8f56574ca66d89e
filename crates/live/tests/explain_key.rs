//! `explain PID key KEY --perm P`: keys of several owners, groups and masks, held by a key
//! actor of the test's own, asked about by processes planted in the initial namespace and in a
//! user namespace, possessed and not; the model and the kernel must agree every time, and each
//! answer saved as a scenario must replay in the model with the kernel's answer.

mod common;

use common::{inside, ns_ino, sleeper, write_maps, Planted};

use credns_live::explain::{explain_key, KernelAnswer, KeyPerm, KeyQuestion};
use credns_model::Scenario;
use credns_sys::keys::{KeyActor, KeyCall, KeyReply, KeySerial, KEY_SPEC_SESSION_KEYRING};
use credns_sys::ProcFs;

/// Make a key as root in the actor's own session keyring, then give it `owner`, `group` and
/// `perm` (the actor stays its possessor, so it can still set the mask after the chown).
fn planted_key(
    holder: &mut KeyActor,
    ktype: &str,
    n: usize,
    owner: u32,
    group: u32,
    perm: u32,
) -> KeySerial {
    let add = KeyCall::AddKey {
        ktype: ktype.into(),
        description: format!("credns-test-explain-key-{}-{n}", std::process::id()),
        payload: if ktype == "user" {
            b"v".to_vec()
        } else {
            Vec::new()
        },
        keyring: KEY_SPEC_SESSION_KEYRING,
    };
    let serial = match holder.call(&add).unwrap() {
        Ok(KeyReply::Serial(s)) => s,
        other => panic!("add_key: {other:?}"),
    };
    for c in [
        KeyCall::Chown(serial, Some(owner), Some(group)),
        KeyCall::Setperm(serial, perm),
    ] {
        holder
            .call(&c)
            .unwrap()
            .unwrap_or_else(|e| panic!("{c:?}: {e}"));
    }
    serial
}

fn setpriv(uid: u32, gid: u32, groups: &str) -> Vec<String> {
    let mut v: Vec<String> = [
        "setpriv",
        "--reuid",
        &uid.to_string(),
        "--regid",
        &gid.to_string(),
    ]
    .map(String::from)
    .to_vec();
    if groups.is_empty() {
        v.push("--clear-groups".into());
    } else {
        v.extend(["--groups".into(), groups.into()]);
    }
    v
}

#[test]
fn model_and_kernel_agree_on_keys_of_every_owner_and_mask() {
    if !credns_sys::is_root() {
        if std::env::var_os("CREDNS_REQUIRE_ALL").is_some() {
            panic!("model_and_kernel_agree_on_keys_of_every_owner_and_mask needs root");
        }
        eprintln!("skipped: needs root (plants processes with other ids, chowns keys)");
        return;
    }
    let own = ns_ino(std::process::id());
    let mut p = Planted(Vec::new());
    let a = p.holder(&[], own);
    write_maps(&[], a, "0 600000 1000");
    let actors = [
        sleeper(&mut p, vec![], 0),
        sleeper(&mut p, setpriv(1000, 1000, ""), 0),
        sleeper(&mut p, setpriv(1001, 1001, "1000"), 0),
        sleeper(&mut p, inside(a, 0), own),
        sleeper(&mut p, inside(a, 5), own),
    ];
    let mut holder = KeyActor::spawn().unwrap();
    let masks = [
        0x3f01_0000, // add_key's default: possessor all, owner view
        0x3f3f_0000,
        0x0b0b_0b0b, // view, read, search for everyone
        0x0100_0000,
        0x3f00_1000, // possessor all, group link
        0x3f00_0008, // possessor all, others search
        0x0000_0000,
    ];
    let mut keys = Vec::new();
    let mut n = 0;
    for ktype in ["user", "keyring"] {
        for (owner, group) in [(1000, 1000), (600_005, 600_000), (0, 0), (1001, 1000)] {
            for &perm in &masks {
                n += 1;
                keys.push(planted_key(&mut holder, ktype, n, owner, group, perm));
            }
        }
    }
    let procfs = ProcFs::new();
    let mut tally = std::collections::BTreeMap::new();
    let mut hidden = 0;
    let dir = tempfile::tempdir().unwrap();
    for &actor in &actors {
        for &key in &keys {
            for perm in [KeyPerm::View, KeyPerm::Read, KeyPerm::Search, KeyPerm::Link] {
                for possessed in [false, true] {
                    let q = KeyQuestion {
                        key,
                        perm,
                        possessed,
                    };
                    let e = match explain_key(&procfs, actor, q) {
                        Ok(e) => e,
                        Err(e) => {
                            // Only a key that neither the process nor root may view is hidden.
                            let text = e.to_string();
                            assert!(
                                text.contains(&format!(
                                    "key {key}: neither pid {actor}'s ids nor root's may view it (EACCES)"
                                )),
                                "{text}"
                            );
                            hidden += 1;
                            continue;
                        }
                    };
                    let k = match &e.kernel {
                        KernelAnswer::Allowed { .. } => "allowed".to_string(),
                        KernelAnswer::Denied { errno, .. } => errno.clone(),
                        KernelAnswer::NotAsked { reason } => {
                            panic!("{}: not asked: {reason}", e.question)
                        }
                    };
                    assert_eq!(
                        e.agree,
                        Some(true),
                        "{}\nmodel {}\nkernel {:?}",
                        e.question,
                        e.model,
                        e.kernel
                    );
                    *tally.entry(k).or_insert(0) += 1;
                    // The saved scenario replays in the model with the kernel's answer.
                    let text = e.scenario.as_ref().unwrap_or_else(|w| panic!("{w}"));
                    let path = dir.path().join("saved.toml");
                    std::fs::write(&path, text).unwrap();
                    let s = Scenario::parse(text, "saved.toml")
                        .unwrap_or_else(|err| panic!("{err}\n{text}"));
                    let reports = s.run();
                    assert!(
                        reports.len() == 1 && reports[0].matched == Some(true),
                        "{text}\n{:?}",
                        reports.iter().map(|r| &r.outcome).collect::<Vec<_>>()
                    );
                }
            }
        }
    }
    let asked: usize = tally.values().sum();
    eprintln!(
        "{asked} key situations agreed, {hidden} keys hidden from credns; kernel answers {tally:?}"
    );
    assert!(asked >= 500, "{asked} situations");
    for k in ["allowed", "EACCES", "ENOTDIR", "ENOKEY"] {
        assert!(tally.get(k).copied().unwrap_or(0) > 0, "{tally:?}");
    }
    assert!(
        hidden > 0,
        "no key was hidden: the EACCES path went untested"
    );
}

#[test]
fn write_and_setattr_are_answered_by_the_model_alone() {
    if !credns_sys::is_root() {
        if std::env::var_os("CREDNS_REQUIRE_ALL").is_some() {
            panic!("write_and_setattr_are_answered_by_the_model_alone needs root");
        }
        eprintln!("skipped: needs root (chowns keys to another user)");
        return;
    }
    let mut p = Planted(Vec::new());
    let actor = sleeper(&mut p, setpriv(1000, 1000, ""), 0);
    let mut holder = KeyActor::spawn().unwrap();
    let key = planted_key(&mut holder, "user", 0, 1000, 1000, 0x3f3f_0000);
    let procfs = ProcFs::new();
    for perm in [KeyPerm::Write, KeyPerm::Setattr] {
        let e = explain_key(
            &procfs,
            actor,
            KeyQuestion {
                key,
                perm,
                possessed: false,
            },
        )
        .unwrap();
        assert_eq!(
            e.kernel,
            KernelAnswer::NotAsked {
                reason: "asking the kernel would change the key".into()
            }
        );
        assert_eq!(e.agree, None);
        assert!(e.model.result.is_allowed(), "{}", e.model);
    }
    // The key is as it was: nothing was written.
    let mut reader = KeyActor::spawn().unwrap();
    reader.set_ids(1000, 1000, &[]).unwrap().unwrap();
    assert_eq!(
        reader.call(&KeyCall::Read(key)).unwrap().unwrap(),
        KeyReply::Bytes(b"v".to_vec())
    );
}

#[test]
fn a_key_that_does_not_exist_is_a_clear_error() {
    let procfs = ProcFs::new();
    // The kernel never hands out serials below 3 (key_alloc_serial).
    let me = std::process::id();
    let e = explain_key(
        &procfs,
        me,
        KeyQuestion {
            key: 1,
            perm: KeyPerm::View,
            possessed: false,
        },
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the model refused the snapshot: no key 1 (ENOKEY)"
    );
}
