//! Property tests of the wire format: requests print and parse back, framing survives any
//! chunking.

use credns_varlink::{next_message, parse_request, request_text, Request};
use proptest::prelude::*;
use serde_json::{Map, Value};

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".*".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn request() -> impl Strategy<Value = Request> {
    (
        ".*",
        prop::option::of(prop::collection::btree_map(".{0,8}", json_value(), 0..5)),
        any::<(bool, bool, bool)>(),
    )
        .prop_map(|(method, params, (oneway, more, upgrade))| Request {
            method,
            parameters: params.map_or(Value::Null, |m| {
                Value::Object(m.into_iter().collect::<Map<_, _>>())
            }),
            oneway,
            more,
            upgrade,
        })
}

proptest! {
    #[test]
    fn request_round_trips(r in request()) {
        let text = request_text(&r);
        prop_assert!(!text.contains(&0));
        prop_assert_eq!(parse_request(&text).unwrap(), r);
    }

    #[test]
    fn parse_request_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Err(e) = parse_request(&bytes) {
            prop_assert_eq!(e.error, "org.varlink.service.InvalidParameter");
            prop_assert!(e.parameters["parameter"].is_string());
        }
    }

    #[test]
    fn framing_survives_any_chunking(
        msgs in prop::collection::vec(prop::collection::vec(1u8..=255, 0..40), 0..8),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        tail in prop::collection::vec(1u8..=255, 0..10),
    ) {
        let mut stream = Vec::new();
        for m in &msgs {
            stream.extend_from_slice(m);
            stream.push(0);
        }
        stream.extend_from_slice(&tail);
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        cuts.push(stream.len());
        cuts.sort_unstable();
        let mut buf = Vec::new();
        let mut got = Vec::new();
        let mut from = 0;
        for c in cuts {
            buf.extend_from_slice(&stream[from..c]);
            from = c;
            while let Some(m) = next_message(&mut buf) {
                got.push(m);
            }
        }
        prop_assert_eq!(got, msgs);
        // What is left is the unterminated tail, untouched.
        prop_assert_eq!(buf, tail);
    }
}
