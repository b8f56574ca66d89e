//! `parse_passwd` and `parse_passwd_lenient` on arbitrary text: never panic; an error names `source:line:column`; every
//! parsed entry comes from a line of the text and has an id below 4294967295.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match credns_registry::parse_passwd("passwd", text) {
        Ok(users) => {
            let lines = text.split('\n').count();
            for u in &users {
                assert!(u.line >= 1 && u.line <= lines);
                assert!(u.uid < u32::MAX && u.gid < u32::MAX);
                assert!(text
                    .split('\n')
                    .nth(u.line - 1)
                    .unwrap()
                    .starts_with(&u.name));
            }
        }
        Err(e) => assert!(e.to_string().starts_with("passwd:"), "{e}"),
    }
    // Lenient: a superset of the strict entries (conservative), every error names its line.
    let strict = credns_registry::parse_passwd("passwd", text);
    let (users, errors) = credns_registry::parse_passwd_lenient("passwd", text);
    assert!(users.iter().all(|u| u.uid < u32::MAX && u.gid < u32::MAX));
    assert!(errors.iter().all(|e| e.to_string().starts_with("passwd:")));
    if let Ok(s) = strict {
        assert!(errors.is_empty());
        assert_eq!(s, users);
    }
});
