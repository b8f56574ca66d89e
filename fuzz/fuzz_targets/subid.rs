//! `SubidFile::parse` and `parse_lenient` on arbitrary text: never panic; a strictly parsed file
//! prints and parses back to itself; a leniently parsed one too (unparsed lines are kept verbatim);
//! where the strict parse succeeds the lenient one agrees (but for `#` lines shadow accepts).
#![no_main]

use credns_idmap::formats::SubidFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (lenient, _skipped) = SubidFile::parse_lenient(text, "subuid");
    let (again, _) = SubidFile::parse_lenient(&lenient.to_string(), "subuid");
    assert_eq!(again, lenient);
    let all = lenient.all_ranges();
    for e in &lenient.entries {
        assert!(all.contains_range(e.range()));
    }
    if let Ok(f) = SubidFile::parse(text, "subuid") {
        assert_eq!(SubidFile::parse(&f.to_string(), "subuid").as_ref(), Ok(&f));
        // Lenient reads as shadow does, which has no comments: a `#name:1:2` comment line is
        // an entry there. Apart from those, the two agree.
        let is_comment_entry = |e: &&credns_idmap::formats::SubidEntry| {
            f.other_lines
                .iter()
                .any(|(l, t)| *l == e.line && t.trim_start().starts_with('#'))
        };
        let plain: Vec<_> = lenient
            .entries
            .iter()
            .filter(|e| !is_comment_entry(e))
            .cloned()
            .collect();
        assert_eq!(f.entries, plain);
        let moved = lenient.entries.len() - plain.len();
        assert_eq!(f.other_lines.len(), lenient.other_lines.len() + moved);
    }
});
