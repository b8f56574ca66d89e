//! `credns_registry::names::IdNames::parse` on arbitrary text: never panics; whatever parses
//! names an id of an allocation it selects, and that id's name is the text itself (each name
//! one id, each id one name).
#![no_main]

use credns_idmap::{IdKind, IdRange};
use credns_registry::names::{host_id, IdNames};
use credns_registry::{AllocId, Allocation, Lease, Origin, Ranges, Selector};
use libfuzzer_sys::fuzz_target;

fn allocation(sel: &Selector) -> Allocation {
    let main = IdRange::from_start_len(524_288, 65_536).unwrap();
    let high = IdRange {
        start: 4_294_901_760,
        end: 4_294_967_294,
    };
    let (id, lease) = match sel {
        Selector::Id(i) => (*i, Lease::name("not:user-like")),
        Selector::Name(n) => (AllocId(7), Lease::name(n.clone())),
        _ => unreachable!("parse selects by number or name"),
    };
    Allocation {
        id,
        uid: main,
        gid: main,
        high: Some(Ranges {
            uid: high,
            gid: high,
        }),
        lease,
        owner: 0,
        principal: None,
        ns_id: None,
        created: 0,
        requested_size: None,
        label: None,
        origin: Origin::Allocated,
        delegated: false,
        key_routes: Vec::new(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let names = IdNames {
        prefix: "ct-".into(),
    };
    let Some((sel, n)) = names.parse(text) else {
        return;
    };
    let a = allocation(&sel);
    if let Some((part, host)) = host_id(&a, n, IdKind::Uid) {
        let back = names.name(&a, part, host, IdKind::Uid);
        // An allocation name too long for the name form gets the number form instead: then the
        // text is not the id's name, and the daemon does not answer it.
        let name_form = match &sel {
            Selector::Name(b) => {
                names.prefix.len() + b.len() + 11 <= credns_registry::names::MAX_USER_NAME
            }
            _ => true,
        };
        if name_form {
            assert_eq!(back, text);
        } else {
            assert_ne!(back, text);
        }
    }
});
