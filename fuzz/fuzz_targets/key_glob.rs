//! `Glob::parse` (a key route's pattern) and `Glob::matches`: never panic; the matcher agrees
//! with a plain recursive one; a pattern matches its own text when it has no `*`, `?` or `\`.
//! Input: pattern and text separated by the first NUL (short, for the reference's sake).
#![no_main]

use credns_registry::routes::Glob;
use libfuzzer_sys::fuzz_target;

fn reference(p: &[char], t: &[char]) -> bool {
    match p.split_first() {
        None => t.is_empty(),
        Some(('*', rest)) => (0..=t.len()).any(|i| reference(rest, &t[i..])),
        Some(('?', rest)) => !t.is_empty() && reference(rest, &t[1..]),
        Some(('\\', rest)) => match (rest.split_first(), t.split_first()) {
            (Some((c, r2)), Some((d, t2))) => c == d && reference(r2, t2),
            _ => false,
        },
        Some((c, rest)) => t.first() == Some(c) && reference(rest, &t[1..]),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let (pat, text) = s.split_once('\0').unwrap_or((s, ""));
    let Ok(g) = Glob::parse(pat) else {
        return;
    };
    let (p, t): (Vec<char>, Vec<char>) = (pat.chars().collect(), text.chars().collect());
    if p.len() <= 12 && t.len() <= 16 {
        assert_eq!(g.matches(text), reference(&p, &t), "{pat:?} ~ {text:?}");
    } else {
        let _ = g.matches(text);
    }
    if !pat.contains(['*', '?', '\\']) {
        assert!(g.matches(pat));
    }
});
