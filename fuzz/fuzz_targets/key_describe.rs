//! `KeyDescription::parse` (a `KEYCTL_DESCRIBE` answer) on arbitrary text: never panics, and
//! an accepted description prints back to the text it came from (hex mask as the kernel
//! prints it).
#![no_main]

use credns_sys::keys::session::KeyDescription;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(d) = KeyDescription::parse(text) else {
        return;
    };
    let again = format!(
        "{};{};{};{:08x};{}",
        d.ktype, d.uid, d.gid, d.perm, d.description
    );
    assert_eq!(KeyDescription::parse(&again), Some(d));
});
