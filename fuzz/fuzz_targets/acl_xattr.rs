//! `parse_acl_xattr` on arbitrary bytes: never panics; a value it accepts has one entry per 8
//! bytes after the header and prints back to the same bytes, but for the ids of entries that
//! carry none (the kernel writes -1 there; any value reads the same).
#![no_main]

use credns_idmap::formats::acl_xattr::{parse_acl_xattr, print_acl_xattr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_acl_xattr(data) {
        Ok(entries) => {
            assert_eq!(entries.len() * 8 + 4, data.len());
            let printed = print_acl_xattr(&entries);
            assert_eq!(parse_acl_xattr(&printed).unwrap(), entries);
            for (e, (a, b)) in entries
                .iter()
                .zip(data[4..].chunks_exact(8).zip(printed[4..].chunks_exact(8)))
            {
                assert_eq!(a[..4], b[..4]);
                if e.id.is_some() {
                    assert_eq!(a[4..], b[4..]);
                }
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
