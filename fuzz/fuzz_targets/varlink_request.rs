//! `parse_request` on arbitrary bytes (one varlink message without its NUL): never panics, a
//! refusal is always `MalformedRequest`, and an accepted request prints and parses back.
#![no_main]

use credns_service::wire::{parse_request, request_text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_request(data) {
        Ok(r) => {
            let text = request_text(&r);
            assert!(!text.contains(&0));
            assert_eq!(parse_request(&text).expect("printed request parses"), r);
        }
        Err(e) => assert_eq!(e.error, "io.credns.Registry.MalformedRequest"),
    }
});
