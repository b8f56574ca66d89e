//! `ProcKey::parse` and `requester_in` (`/proc/keys`) on arbitrary text: never panics, every
//! parsed line's type is a word of it, and a requester is only ever named by an authorisation
//! key's line of the text.
#![no_main]

use credns_sys::keys::proc_keys::{requester_in, ProcKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut auth = Vec::new();
    for line in text.lines() {
        if let Some(k) = ProcKey::parse(line) {
            assert!(line.split_whitespace().any(|w| w == k.type_prefix));
            if k.type_prefix == ".request_" {
                auth.push(k.serial);
            }
        }
    }
    for serial in [0, 1, 0x2c, -1] {
        for target in [0, 1, 0x4d2] {
            if requester_in(text, serial, target).is_some() {
                assert!(auth.contains(&serial));
            }
        }
    }
});
