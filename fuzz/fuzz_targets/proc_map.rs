//! `parse_proc_map` on arbitrary text: never panics, and an accepted map prints and parses back.
#![no_main]

use credns_idmap::formats::parse_proc_map;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(m) = parse_proc_map(text, "uid_map") else {
        return;
    };
    let back = parse_proc_map(&m.to_proc_format(), "uid_map").expect("printed map parses");
    assert_eq!(back.extents(), m.display_order());
    for e in m.extents() {
        assert_eq!(m.map_down(e.first), Some(e.lower_first));
        assert_eq!(m.map_up(e.lower_first), Some(e.first));
    }
});
