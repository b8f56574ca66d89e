//! `parse_group` on arbitrary text: never panics; an error names `source:line:column`; every
//! parsed entry comes from a line of the text and has a gid below 4294967295.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match credns_registry::parse_group("group", text) {
        Ok(groups) => {
            let lines = text.split('\n').count();
            for g in &groups {
                assert!(g.line >= 1 && g.line <= lines);
                assert!(g.gid < u32::MAX);
                assert!(text
                    .split('\n')
                    .nth(g.line - 1)
                    .unwrap()
                    .starts_with(&g.name));
            }
        }
        Err(e) => assert!(e.to_string().starts_with("group:"), "{e}"),
    }
});
