//! The key wrappers against the running kernel: add, describe, read, search, update, setperm,
//! link/unlink, invalidate, and a `KeyActor` that drops to other ids. Each test works in a fresh
//! session keyring of its own thread, so nothing it makes outlives it.

use credns_sys::keys::{self as k, KeyActor, KeyCall, KeyReply};
use credns_sys::Errno;

#[test]
fn wrappers_round_trip() {
    let ses = k::join_new_session_keyring().expect("join a session keyring");
    assert_eq!(
        k::get_keyring_id(k::KEY_SPEC_SESSION_KEYRING, false),
        Ok(ses)
    );
    let key = k::add_key("user", "credns-sys-test", b"v1", ses).expect("add_key");
    let d = k::describe(key).expect("describe");
    assert!(
        d.starts_with("user;") && d.ends_with(";3f010000;credns-sys-test"),
        "{d}"
    );
    assert_eq!(k::read(key), Ok(b"v1".to_vec()));
    k::update(key, b"v2").expect("update");
    assert_eq!(k::read(key), Ok(b"v2".to_vec()));
    assert_eq!(k::search(ses, "user", "credns-sys-test"), Ok(key));
    assert_eq!(k::search(ses, "user", "credns-sys-none"), Err(Errno::NOKEY));
    let ring = k::add_key("keyring", "credns-sys-ring", b"", ses).expect("keyring");
    k::link(key, ring).expect("link");
    let listed = k::read(ring).expect("read keyring");
    assert_eq!(listed, key.to_ne_bytes().to_vec());
    // Keyrings have no update operation.
    assert_eq!(k::update(ring, b"x"), Err(Errno::OPNOTSUPP));
    k::setperm(key, 0x3f00_0000).expect("setperm");
    assert!(k::describe(key).expect("describe").contains(";3f000000;"));
    assert_eq!(k::setperm(key, 0x4000_0000), Err(Errno::INVAL));
    k::unlink(key, ring).expect("unlink");
    assert_eq!(k::unlink(key, ring), Err(Errno::NOENT));
    k::invalidate(key).expect("invalidate");
    k::invalidate(ring).expect("invalidate ring");
    assert_eq!(
        k::get_keyring_id(k::KEY_SPEC_THREAD_KEYRING, false),
        Err(Errno::NOKEY)
    );
    let _ = k::join_new_session_keyring();
}

#[test]
fn actor_takes_other_ids() {
    if rustix::process::geteuid().as_raw() != 0 {
        if std::env::var("CREDNS_REQUIRE_ALL").as_deref() == Ok("1") {
            panic!("actor_takes_other_ids needs root and CREDNS_REQUIRE_ALL=1 forbids skipping");
        }
        println!("actor_takes_other_ids: skipped: needs root (it changes the actor's uid)");
        return;
    }
    let ses = k::join_new_session_keyring().expect("join a session keyring");
    let key = k::add_key("user", "credns-sys-actor", b"secret", ses).expect("add_key");
    let mut a = KeyActor::spawn().expect("spawn");
    // Root's key, default mask (possessor all, user view): the actor still shares the session.
    a.set_ids(4242, 4242, &[])
        .expect("actor alive")
        .expect("set ids");
    match a.call(&KeyCall::Read(key)).expect("actor alive") {
        Ok(KeyReply::Bytes(b)) => assert_eq!(b, b"secret"),
        other => panic!("possessed read: {other:?}"),
    }
    // Not the owner and no CAP_SYS_ADMIN any more.
    assert_eq!(
        a.call(&KeyCall::Setperm(key, 0)).expect("actor alive"),
        Err(Errno::ACCESS)
    );
    drop(a);
    k::invalidate(key).expect("invalidate");
    let _ = k::join_new_session_keyring();
}

#[test]
fn actor_carries_every_call() {
    if rustix::process::geteuid().as_raw() != 0 {
        if std::env::var("CREDNS_REQUIRE_ALL").as_deref() == Ok("1") {
            panic!("actor_carries_every_call needs root and CREDNS_REQUIRE_ALL=1 forbids skipping");
        }
        println!("actor_carries_every_call: skipped: needs root (it sets many groups)");
        return;
    }
    let ses = k::join_new_session_keyring().expect("join a session keyring");
    let mut a = KeyActor::spawn().expect("spawn");
    let call = |a: &mut KeyActor, c: KeyCall| a.call(&c).expect("actor alive");
    let big = vec![0xa5u8; 30_000];
    let key = match call(
        &mut a,
        KeyCall::AddKey {
            ktype: "user".into(),
            description: "credns sys actor ü".into(),
            payload: big.clone(),
            keyring: ses,
        },
    ) {
        Ok(KeyReply::Serial(s)) => s,
        other => panic!("add_key: {other:?}"),
    };
    assert_eq!(call(&mut a, KeyCall::Read(key)), Ok(KeyReply::Bytes(big)));
    match call(&mut a, KeyCall::Describe(key)) {
        Ok(KeyReply::Bytes(d)) => {
            assert_eq!(d, k::describe(key).expect("describe").into_bytes());
            assert!(d.ends_with("credns sys actor ü".as_bytes()));
        }
        other => panic!("describe: {other:?}"),
    }
    let search = |ktype: &str, description: &str| KeyCall::Search {
        keyring: ses,
        ktype: ktype.into(),
        description: description.into(),
    };
    assert_eq!(
        call(&mut a, search("user", "credns sys actor ü")),
        Ok(KeyReply::Serial(key))
    );
    assert_eq!(call(&mut a, search("user", "no such")), Err(Errno::NOKEY));
    assert_eq!(call(&mut a, search("us er", "x")), Err(Errno::INVAL));
    assert_eq!(call(&mut a, search("user", "a\0b")), Err(Errno::INVAL));
    assert_eq!(
        call(&mut a, KeyCall::Update(key, b"small".to_vec())),
        Ok(KeyReply::Done)
    );
    assert_eq!(k::read(key), Ok(b"small".to_vec()));
    let ring = k::add_key("keyring", "credns-sys-actor-ring", b"", ses).expect("keyring");
    assert_eq!(call(&mut a, KeyCall::Link(key, ring)), Ok(KeyReply::Done));
    assert_eq!(
        call(&mut a, KeyCall::Read(ring)),
        Ok(KeyReply::Bytes(key.to_ne_bytes().to_vec()))
    );
    assert_eq!(call(&mut a, KeyCall::Unlink(key, ring)), Ok(KeyReply::Done));
    assert_eq!(call(&mut a, KeyCall::Unlink(key, ring)), Err(Errno::NOENT));
    assert_eq!(
        call(&mut a, KeyCall::Chown(key, None, Some(77))),
        Ok(KeyReply::Done)
    );
    assert!(k::describe(key).expect("describe").contains(";0;77;"));
    assert_eq!(
        call(&mut a, KeyCall::Setperm(key, 0x3f3f_0000)),
        Ok(KeyReply::Done)
    );
    assert_eq!(
        call(
            &mut a,
            KeyCall::GetKeyringId(k::KEY_SPEC_SESSION_KEYRING, false)
        ),
        Ok(KeyReply::Serial(ses))
    );
    // More groups than the actor's buffers hold: the request is read into a mapping.
    let groups: Vec<u32> = (1000..21_000).collect();
    assert_eq!(a.set_ids(0, 0, &groups).expect("actor alive"), Ok(()));
    assert_eq!(a.set_fsuid(4242).expect("actor alive"), Ok(()));
    assert_eq!(a.set_fsuid(0).expect("actor alive"), Ok(()));
    assert_eq!(call(&mut a, KeyCall::Invalidate(key)), Ok(KeyReply::Done));
    assert_eq!(call(&mut a, KeyCall::Read(key)), Err(Errno::NOKEY));
    assert_eq!(a.unshare_userns().expect("actor alive"), Ok(()));
    let pid = a.pid();
    let mut b = KeyActor::spawn().expect("spawn");
    assert_eq!(b.setns_userns(pid).expect("actor alive"), Ok(()));
    assert_eq!(
        b.setns_userns(credns_sys::Pid(-1)).expect("actor alive"),
        Err(Errno::NOENT)
    );
    drop(b);
    drop(a);
    k::invalidate(ring).expect("invalidate ring");
    let _ = k::join_new_session_keyring();
}
