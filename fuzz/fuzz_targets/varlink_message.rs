//! credns-varlink's framing and call parsing on arbitrary bytes (a stream as a peer may send
//! it): `next_message` splits it at NULs, each message goes through `parse_request`. Never
//! panics; a refusal is always `org.varlink.service.InvalidParameter` naming a field; an
//! accepted call prints and parses back; the framing gives back exactly the stream's bytes.
#![no_main]

use credns_varlink::{next_message, parse_request, request_text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = data.to_vec();
    let mut rebuilt = Vec::new();
    while let Some(msg) = next_message(&mut buf) {
        assert!(!msg.contains(&0));
        rebuilt.extend_from_slice(&msg);
        rebuilt.push(0);
        match parse_request(&msg) {
            Ok(r) => {
                let text = request_text(&r);
                assert!(!text.contains(&0));
                assert_eq!(parse_request(&text).expect("printed call parses"), r);
            }
            Err(e) => {
                assert_eq!(e.error, "org.varlink.service.InvalidParameter");
                assert!(e.parameters["parameter"].is_string());
            }
        }
    }
    assert!(!buf.contains(&0));
    rebuilt.extend_from_slice(&buf);
    assert_eq!(rebuilt, data);
});
