//! `credns_sys::sdsocket::parse_listen` (socket activation's `LISTEN_PID`, `LISTEN_FDS`,
//! `LISTEN_FDNAMES`) on arbitrary values, one per line of the input (a missing line is an unset
//! variable), for a process whose pid is 4242: never panic; an accepted value passes 1 to 64
//! descriptors with one name each and was meant for pid 4242; a refusal names its variable.
#![no_main]

use credns_sys::sdsocket::parse_listen;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut vars = text.splitn(3, '\n');
    let (pid, fds, names) = (vars.next(), vars.next(), vars.next());
    match parse_listen(pid, fds, names, 4242) {
        Ok(Some(l)) => {
            assert_eq!(pid.map(str::parse::<u32>), Some(Ok(4242)));
            assert!((1..=64).contains(&l.count));
            assert_eq!(l.names.len(), l.count);
            if let Some(n) = names {
                assert_eq!(l.names.join(":"), n);
            }
        }
        Ok(None) => {}
        Err(e) => {
            let m = e.to_string();
            assert!(
                ["LISTEN_PID=", "LISTEN_FDS=", "LISTEN_FDNAMES="]
                    .iter()
                    .any(|v| m.starts_with(v)),
                "{m}"
            );
        }
    }
});
