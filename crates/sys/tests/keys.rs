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
