//! `credns_registry::nsswitch::with_subid` on arbitrary text: never panics; setting the line is
//! idempotent and leaves exactly one active `subid:` line, naming the module; removing it
//! leaves none of credns's and is idempotent; every line that configures another database is
//! kept, in order. `sources` gives words of the database's line, no bracket or comment.
#![no_main]

use credns_registry::nsswitch::{database, sources, with_subid};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let others = |t: &str| -> Vec<String> {
        t.split_terminator('\n')
            .filter(|l| database(l) != Some("subid"))
            .map(str::to_string)
            .collect()
    };
    let set = with_subid(text, Some("credns"));
    assert_eq!(with_subid(&set, Some("credns")), set);
    let active: Vec<&str> = set
        .lines()
        .filter(|l| database(l) == Some("subid"))
        .collect();
    assert_eq!(active, ["subid:          credns"]);
    assert_eq!(others(&set), others(text));
    for db in ["passwd", "group"] {
        for w in sources(text, db) {
            assert!(!w.is_empty() && !w.contains(['[', ']', '#']) && !w.contains(char::is_whitespace));
        }
    }
    let removed = with_subid(&set, None);
    assert!(removed.lines().all(|l| database(l) != Some("subid")));
    assert_eq!(with_subid(&removed, None), removed);
    assert_eq!(others(&removed), others(text));
});
