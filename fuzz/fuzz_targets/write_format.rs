//! `parse_write` and `judge_write` (host root, each kind) on arbitrary bytes: never panic, agree
//! with each other, and an accepted map's write format parses back to the same extents.
#![no_main]

use credns_idmap::{judge_write, parse_write, IdKind, IdMap, WriteContext, WriteRule};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = parse_write(data);
    for kind in [IdKind::Uid, IdKind::Gid, IdKind::Projid] {
        let judged = judge_write(&WriteContext::host_root(kind), data);
        match (&judged, &parsed) {
            (Ok(a), Ok(extents)) => {
                assert_eq!(a.written.extents(), &extents[..]);
                // Host root's parent is the initial namespace: the kernel map is the written one.
                assert_eq!(a.kernel, a.written);
                assert_eq!(IdMap::new(extents.clone()).as_ref(), Ok(&a.written));
                let text = a.written.to_write_format();
                assert_eq!(parse_write(text.as_bytes()).as_ref(), Ok(extents));
                assert_eq!(
                    judge_write(&WriteContext::host_root(kind), text.as_bytes()).as_ref(),
                    Ok(a)
                );
            }
            (Err(WriteRule::TooLong { len }), _) => assert_eq!(*len, data.len()),
            (Err(rule), Err(parse_rule)) => assert_eq!(rule, parse_rule),
            (Err(rule), Ok(_)) => panic!("parsed but host root refused: {rule:?}"),
            (Ok(_), Err(_)) => unreachable!("judge_write parses with parse_write"),
        }
    }
});
