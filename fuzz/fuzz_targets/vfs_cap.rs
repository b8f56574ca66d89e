//! `parse_vfs_cap` on arbitrary bytes: never panics; a value it accepts has its revision's size
//! and prints back to the same bytes.
#![no_main]

use credns_idmap::formats::vfs_cap::{parse_vfs_cap, print_vfs_cap};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_vfs_cap(data) {
        Ok(c) => {
            assert_eq!(print_vfs_cap(&c), data);
            assert_eq!(c.rootid.is_some(), c.revision == 3);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
