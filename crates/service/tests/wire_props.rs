//! Properties of the varlink message layer: any bytes parse or are a MalformedRequest (never a
//! panic), requests print and parse back, and framing does not depend on how the stream is cut.

use credns_service::wire::{next_message, parse_request, request_text, Request};
use proptest::prelude::*;
use serde_json::{json, Value};

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u32>().prop_map(|n| json!(n)),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn request() -> impl Strategy<Value = Request> {
    (
        "[a-z.A-Z]{1,40}",
        prop::option::of(prop::collection::btree_map("[a-zA-Z]{1,8}", value(), 0..5)),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(method, params, oneway, more)| Request {
            method,
            parameters: params.map_or(Value::Null, |m| Value::Object(m.into_iter().collect())),
            oneway,
            more,
        })
}

proptest! {
    #[test]
    fn any_bytes_parse_or_are_malformed(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Err(e) = parse_request(&bytes) {
            prop_assert_eq!(e.error.as_str(), "io.credns.Registry.MalformedRequest");
            prop_assert!(e.parameters["reason"].is_string());
        }
    }

    #[test]
    fn requests_print_and_parse_back(r in request()) {
        let text = request_text(&r);
        prop_assert!(!text.contains(&0), "a NUL inside a message would split it");
        prop_assert_eq!(parse_request(&text).unwrap(), r);
    }

    #[test]
    fn framing_is_independent_of_chunking(rs in prop::collection::vec(request(), 1..6), cuts in prop::collection::vec(1usize..50, 0..20)) {
        let mut stream = Vec::new();
        for r in &rs {
            stream.extend(request_text(r));
            stream.push(0);
        }
        let mut buf = Vec::new();
        let mut got = Vec::new();
        let mut at = 0;
        let mut cuts = cuts.into_iter();
        while at < stream.len() {
            let n = cuts.next().unwrap_or(stream.len()).min(stream.len() - at);
            buf.extend_from_slice(&stream[at..at + n]);
            at += n;
            while let Some(m) = next_message(&mut buf) {
                got.push(parse_request(&m).unwrap());
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, rs);
    }
}

#[test]
fn flags_must_be_booleans() {
    let e = parse_request(br#"{"method": "a.B", "oneway": 1}"#).unwrap_err();
    assert_eq!(e.parameters["reason"], "\"oneway\" is not a boolean");
    let r = parse_request(br#"{"method": "a.B", "more": true}"#).unwrap();
    assert!(r.more && !r.oneway && r.parameters.is_null());
}

/// Regression (found by the varlink_request fuzz target): a number in the parameters must
/// print and parse back to the same value; serde_json's fast float parsing did not round-trip
/// 6.5777777777777775e97 until `float_roundtrip` was enabled.
#[test]
fn large_numbers_round_trip() {
    let text = br#"{"method":"io.credns.Registry.Allocate","parameters":{"x":65777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777539}}"#;
    let r = parse_request(text).expect("a well-formed request");
    assert_eq!(
        parse_request(&request_text(&r)).expect("printed request parses"),
        r
    );
}
