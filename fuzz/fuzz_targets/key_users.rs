//! `KeyUser::parse_all` (`/proc/key-users`) on arbitrary text: never panics, every entry comes
//! from a line of the text, and printing the entries as the kernel does parses back to them.
#![no_main]

use credns_sys::keys::session::KeyUser;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let users = KeyUser::parse_all(text);
    assert!(users.len() <= text.lines().count());
    let printed: String = users
        .iter()
        .map(|u| {
            format!(
                "{:5}: {:5} {}/{} {}/{} {}/{}\n",
                u.uid, 1, u.nkeys, u.nkeys, u.qnkeys, u.maxkeys, u.qnbytes, u.maxbytes
            )
        })
        .collect();
    assert_eq!(KeyUser::parse_all(&printed), users);
});
