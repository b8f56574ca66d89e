//! `parse_passwd` on arbitrary text: never panics; an error names `source:line:column`; every
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
});
