//! `MapUsers::parse` on arbitrary arguments (one per line), resolved against a fixed subuid file
//! and own map: never panics, and an accepted map prints and parses back.
#![no_main]

use credns_idmap::formats::{map_users_args, parse_proc_map, MapUsers, SubidFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let args: Vec<&str> = text.split('\n').collect();
    let Ok(m) = MapUsers::parse(&args, "--map-users") else {
        return;
    };
    let subuid = SubidFile::parse("alice:100000:65536\n1000:300000:1000\n", "/etc/subuid").unwrap();
    let own = parse_proc_map("0 0 4294967295\n", "uid_map").unwrap();
    let direct = m.to_idmap();
    if m.needs_resolving() {
        assert!(direct.is_err(), "a keyword must be resolved first");
    }
    if let Ok(map) = m.resolve(&subuid, "/etc/subuid", "alice", 1000, Some(&own)) {
        if !m.needs_resolving() {
            assert_eq!(direct.as_ref(), Ok(&map));
        }
        let printed = map_users_args(&map);
        let back = MapUsers::parse(&printed, "--map-users").expect("printed args parse");
        assert_eq!(back.to_idmap().as_ref(), Ok(&map));
        for a in &m.args {
            let one = a.to_string();
            assert_eq!(
                MapUsers::parse(&[one], "x")
                    .expect("an arg prints and parses")
                    .args,
                vec![*a]
            );
        }
    }
});
