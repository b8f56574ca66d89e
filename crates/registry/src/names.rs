//! Names for the ids of allocations, as the daemon's userdb provider announces them (nss-systemd
//! then shows them in `ls -l`, `ps`, `getent`): `PREFIX` + the allocation's name + `-N` for an
//! allocation named like a user (`[A-Za-z_][A-Za-z0-9_-]*`, short enough), else `PREFIX` + its
//! number + `-N`; N is the id inside the allocation's namespace (0 for the first host id of its
//! main range; for a high range, the namespace's top ids, ending at 4294967294). Each host id has
//! one name; [`IdNames::parse`] gives back what a name would belong to, and a caller answers a
//! name only if it is the name of the id found.

use credns_idmap::IdKind;

use crate::alloc::{Allocation, Lease, Part, Selector};
use crate::AllocId;

/// The namespace id a high range's last host id maps to.
const TOP_ID: u64 = 4_294_967_294;

/// Longest name handed out (utmp and many tools keep 32 bytes with the NUL).
pub const MAX_USER_NAME: usize = 31;

/// Whether `name` may stand in a user name as it is: `[A-Za-z_][A-Za-z0-9_-]*`.
pub fn user_like(name: &str) -> bool {
    let mut cs = name.chars();
    cs.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The names of allocations' ids under one prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdNames {
    /// Put before every name.
    pub prefix: String,
}

fn ranges(a: &Allocation, kind: IdKind) -> (credns_idmap::IdRange, Option<credns_idmap::IdRange>) {
    match kind {
        IdKind::Gid => (a.gid, a.high.map(|h| h.gid)),
        _ => (a.uid, a.high.map(|h| h.uid)),
    }
}

/// The namespace id that host id `id` of `a`'s `part` stands for (`id` must be in that part).
pub fn inside(a: &Allocation, part: Part, id: u32, kind: IdKind) -> u64 {
    match (part, ranges(a, kind)) {
        (Part::High, (_, Some(h))) => TOP_ID - (h.end as u64 - id as u64),
        (_, (main, _)) => id as u64 - main.start as u64,
    }
}

/// The host id of namespace id `n` of `a` and the part holding it, if it holds one.
pub fn host_id(a: &Allocation, n: u64, kind: IdKind) -> Option<(Part, u32)> {
    let (main, high) = ranges(a, kind);
    if n < main.len() {
        return Some((Part::Main, main.start + n as u32));
    }
    let h = high?;
    let from_top = TOP_ID.checked_sub(n)?;
    (from_top < h.len()).then(|| (Part::High, h.end - from_top as u32))
}

impl IdNames {
    /// The allocation's part of a name: its name if user-like and short enough, else its
    /// number.
    fn base(&self, a: &Allocation) -> String {
        match &a.lease {
            // Room for "-" and the ten digits of any N.
            Lease::Name(n) if user_like(n) && self.prefix.len() + n.len() + 11 <= MAX_USER_NAME => {
                n.clone()
            }
            _ => a.id.0.to_string(),
        }
    }

    /// The name of host id `id` of `a`'s `part`.
    pub fn name(&self, a: &Allocation, part: Part, id: u32, kind: IdKind) -> String {
        let n = inside(a, part, id, kind);
        format!("{}{}-{n}", self.prefix, self.base(a))
    }

    /// The allocation a name may belong to and its N; `None` for text no id is named.
    pub fn parse(&self, name: &str) -> Option<(Selector, u64)> {
        let rest = name.strip_prefix(self.prefix.as_str())?;
        let (base, n) = rest.rsplit_once('-')?;
        let digits = |s: &str| {
            !s.is_empty()
                && s.len() <= 20
                && s.bytes().all(|b| b.is_ascii_digit())
                && (s == "0" || !s.starts_with('0'))
        };
        if !digits(n) {
            return None;
        }
        let n: u64 = n.parse().ok()?;
        let sel = if digits(base) {
            Selector::Id(AllocId(base.parse().ok()?))
        } else if user_like(base) {
            Selector::Name(base.to_string())
        } else {
            return None;
        };
        Some((sel, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc::{Origin, Ranges};
    use credns_idmap::IdRange;
    use proptest::prelude::*;

    fn alloc(id: u64, lease: Lease, start: u32, len: u32, high: Option<u32>) -> Allocation {
        let r = IdRange::from_start_len(start, len as u64).unwrap();
        Allocation {
            id: AllocId(id),
            uid: r,
            gid: r,
            high: high.map(|s| {
                let h = IdRange {
                    start: s,
                    end: TOP_ID as u32,
                };
                Ranges { uid: h, gid: h }
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

    #[test]
    fn names_follow_the_allocation() {
        let n = IdNames {
            prefix: "ct-".into(),
        };
        let web = alloc(3, Lease::name("web"), 524288, 65536, Some(4294901760));
        assert_eq!(n.name(&web, Part::Main, 524289, IdKind::Uid), "ct-web-1");
        assert_eq!(
            n.name(&web, Part::High, 4294967294, IdKind::Uid),
            "ct-web-4294967294"
        );
        assert_eq!(
            host_id(&web, 4294967294, IdKind::Gid),
            Some((Part::High, 4294967294))
        );
        let odd = alloc(4, Lease::name("subid:alice:0"), 589824, 65536, None);
        assert_eq!(n.name(&odd, Part::Main, 589824, IdKind::Gid), "ct-4-0");
        assert_eq!(n.parse("ct-web-1"), Some((Selector::Name("web".into()), 1)));
        assert_eq!(n.parse("ct-4-0"), Some((Selector::Id(AllocId(4)), 0)));
        for bad in [
            "web-1",
            "ct-web-",
            "ct-web-x",
            "ct--1",
            "ct-04-1",
            "ct-a:b-1",
            "ct-+5-1",
            "ct-web-01",
            "ct-web-999999999999999999999",
        ] {
            assert_eq!(n.parse(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn each_id_has_one_name_that_parses_back(
            name in "[a-z_][a-z0-9_:-]{0,30}",
            id in 1u64..100_000,
            off in 0u32..65536,
            prefix in "[a-z]{0,4}-?",
        ) {
            let n = IdNames { prefix };
            let a = alloc(id, Lease::name(&name), 524288, 65536, None);
            let host = 524288 + off;
            let s = n.name(&a, Part::Main, host, IdKind::Uid);
            prop_assert!(s.len() <= MAX_USER_NAME, "{}", s);
            let (sel, k) = n.parse(&s).expect("a name given out parses");
            match sel {
                Selector::Name(b) => prop_assert_eq!(b, name),
                Selector::Id(i) => prop_assert_eq!(i, AllocId(id)),
                _ => prop_assert!(false),
            }
            prop_assert_eq!(host_id(&a, k, IdKind::Uid), Some((Part::Main, host)));
        }

        #[test]
        fn parsing_any_text_is_total(s in "\\PC{0,40}") {
            let _ = IdNames { prefix: "ct-".into() }.parse(&s);
        }
    }
}
