//! `parse_group` and `parse_group_lenient` on arbitrary text: never panic; an error names `source:line:column`; every
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
    // Lenient: a superset of the strict entries (conservative), every error names its line.
    let strict = credns_registry::parse_group("group", text);
    let (groups, errors) = credns_registry::parse_group_lenient("group", text);
    assert!(groups.iter().all(|g| g.gid < u32::MAX));
    assert!(errors.iter().all(|e| e.to_string().starts_with("group:")));
    if let Ok(s) = strict {
        assert!(errors.is_empty());
        assert_eq!(s, groups);
    }
});
