//! `Scenario::parse` on arbitrary text: never panics; an error names a line and column inside
//! the text; a scenario that parses runs every operation without panicking, and running it twice
//! gives the same outcomes (the model is a pure function of the scenario), and comparing it
//! under mainline and its own semantics (`[settings] semantics`) never panics.
#![no_main]

use credns_model::{Error, Scenario, Semantics};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Scenario::parse(text, "fuzz.toml") {
        Err(Error::Scenario { line, column, .. }) => {
            assert!(
                line >= 1 && line <= text.lines().count().max(1) + 1,
                "line {line}"
            );
            assert!(column >= 1, "column {column}");
        }
        Err(Error::Model(_)) => {}
        Ok(s) => {
            let first = s.run();
            assert_eq!(first.len(), s.ops.len());
            let again = s.run();
            for (a, b) in first.iter().zip(&again) {
                assert_eq!(a.outcome, b.outcome);
            }
            // Under mainline and the file's own semantics: a difference names an op that ran.
            let diffs = s.compare(&[Semantics::MAINLINE, s.semantics]);
            assert!(diffs.iter().all(|d| d.index < s.ops.len() && d.sides.len() == 2));
        }
    }
});
