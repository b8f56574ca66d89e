//! `Scenario::parse` on arbitrary text after a fixed header with processes and a keyring, so
//! that `[[key]]` tables and key ops in the input reach the key code: never panic; errors
//! point inside the text; a parsed scenario runs without panicking and is deterministic.
#![no_main]

use credns_model::{Error, Scenario};
use libfuzzer_sys::fuzz_target;

const HEADER: &str = "[[namespace]]\nname = \"ns\"\nowner = 0\nuid_map = \"0 100000 65536\"\ngid_map = \"0 100000 65536\"\n\n[[process]]\nname = \"a\"\nuid = 1000\n\n[[process]]\nname = \"b\"\nns = \"ns\"\nuid = 0\n\n[[key]]\nname = \"r\"\ntype = \"keyring\"\nat = \"a:session\"\n\n";

fuzz_target!(|data: &[u8]| {
    let Ok(tail) = std::str::from_utf8(data) else {
        return;
    };
    let text = format!("{HEADER}{tail}");
    match Scenario::parse(&text, "fuzz.toml") {
        Ok(s) => {
            let a: Vec<String> = s.run().iter().map(|r| r.outcome.to_string()).collect();
            let b: Vec<String> = s.run().iter().map(|r| r.outcome.to_string()).collect();
            assert_eq!(a, b);
        }
        Err(Error::Scenario { line, column, .. }) => {
            assert!(line >= 1 && line <= text.lines().count() + 1);
            assert!(column >= 1);
        }
        Err(e) => panic!("unpositioned error: {e}"),
    }
});
