//! The OCI mapping parsers on arbitrary text: never panic; accepted mappings print and parse back,
//! and setting them into a config reads back the same.
#![no_main]

use credns_idmap::formats::{
    oci_mappings_json, parse_oci_config, parse_oci_mappings, set_oci_mappings,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = parse_oci_mappings(text, "mappings.json") {
        let printed = oci_mappings_json(&m).to_string();
        assert_eq!(
            parse_oci_mappings(&printed, "mappings.json").as_ref(),
            Ok(&m)
        );
    }
    if let Ok(cfg) = parse_oci_config(text, "config.json") {
        let mut value: serde_json::Value = serde_json::from_str(text).expect("parsed once already");
        if set_oci_mappings(&mut value, cfg.uid.as_ref(), cfg.gid.as_ref()).is_ok() {
            let again = parse_oci_config(&value.to_string(), "config.json").expect("reparse");
            assert_eq!(again, cfg);
        }
    }
});
