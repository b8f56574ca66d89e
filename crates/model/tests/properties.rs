//! Property tests of the capability walk and the permission checks.

use credns_idmap::{Kgid, Kuid};
use credns_model::{has_ns_capability, Cap, CapSet, Cred, MountOptions, NsRef, Op, Verdict, World};
use proptest::prelude::*;

const OWNERS: [u32; 4] = [0, 1000, 1001, 100000];

/// A random namespace tree: entry i (for namespace i+1) names a parent index <= i and an owner.
fn tree() -> impl Strategy<Value = Vec<(usize, u32)>> {
    prop::collection::vec(
        (
            any::<prop::sample::Index>(),
            prop::sample::select(OWNERS.to_vec()),
        ),
        0..7,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (p, o))| (p.index(i + 1), o))
            .collect()
    })
}

fn build(tree: &[(usize, u32)]) -> World {
    let mut w = World::new();
    for (i, (p, owner)) in tree.iter().enumerate() {
        w.add_userns(
            &format!("n{}", i + 1),
            ns_at(*p, &w),
            Kuid(*owner),
            Kgid(*owner),
        )
        .unwrap();
    }
    w
}

fn ns_at(i: usize, w: &World) -> NsRef {
    w.namespaces().nth(i).unwrap().0
}

fn is_ancestor_or_self(w: &World, anc: NsRef, ns: NsRef) -> bool {
    w.in_userns(anc, ns)
}

proptest! {
    /// cap_capable never grants a capability in a namespace that is not the credentials' own
    /// namespace or one of its descendants.
    #[test]
    fn cap_capable_never_upward_or_sideways(t in tree(), cred_ns in any::<prop::sample::Index>(), target in any::<prop::sample::Index>(),
                                             euid in prop::sample::select(OWNERS.to_vec()), caps in any::<u64>(), cap in 0u8..=40) {
        let w = build(&t);
        let n = t.len() + 1;
        let cns = ns_at(cred_ns.index(n), &w);
        let tns = ns_at(target.index(n), &w);
        let cred = Cred::new(cns, Kuid(euid), Kgid(euid), CapSet::from_bits(caps));
        let cap = Cap::from_number(cap).unwrap();
        if !is_ancestor_or_self(&w, cns, tns) {
            prop_assert!(!has_ns_capability(&w, &cred, tns, cap));
        }
    }

    /// The owner of a namespace, acting from its parent, has every capability in it and in all
    /// its descendants, whatever its own capability sets are.
    #[test]
    fn owner_in_parent_has_every_cap(t in tree(), child in any::<prop::sample::Index>(), below in any::<prop::sample::Index>(),
                                     caps in any::<u64>(), cap in 0u8..=40) {
        prop_assume!(!t.is_empty());
        let w = build(&t);
        let c = ns_at(child.index(t.len()) + 1, &w);
        let owner = w.ns(c).owner;
        let parent = w.ns(c).parent.unwrap();
        let cred = Cred::new(parent, owner, Kgid(owner.0), CapSet::from_bits(caps));
        let cap = Cap::from_number(cap).unwrap();
        prop_assert!(has_ns_capability(&w, &cred, c, cap));
        // Any descendant of the owned namespace, too.
        let all: Vec<NsRef> = w.namespaces().map(|(r, _)| r).filter(|r| w.in_userns(c, *r)).collect();
        let d = all[below.index(all.len())];
        prop_assert!(has_ns_capability(&w, &cred, d, cap));
    }

    /// Access through an idmapped mount whose idmap is the identity equals access without it.
    #[test]
    fn identity_idmapped_mount_changes_nothing(owner in prop::sample::select(vec![0u32, 1000, 1001, 5]),
                                               group in prop::sample::select(vec![0u32, 1000, 1001, 5]),
                                               mode in 0u32..0o1000,
                                               fsuid in prop::sample::select(vec![0u32, 1000, 1001, 5]),
                                               fsgid in prop::sample::select(vec![0u32, 1000, 1001, 5]),
                                               groups in prop::collection::vec(prop::sample::select(vec![0u32, 1000, 1001, 5]), 0..3),
                                               caps in any::<u64>(), read in any::<bool>(), write in any::<bool>(), exec in any::<bool>()) {
        let mut w = World::new();
        let id = w.add_userns("identity", w.init_ns(), Kuid(0), Kgid(0)).unwrap();
        w.set_uid_map(id, "0 0 4294967295").unwrap();
        w.set_gid_map(id, "0 0 4294967295").unwrap();
        let root = w.add_superblock("root", "ext4", w.init_ns(), Kuid(0), Kgid(0), 0o755).unwrap();
        w.add_mount("/", root, MountOptions::default()).unwrap();
        let data = w.add_superblock("data", "ext4", w.init_ns(), Kuid(0), Kgid(0), 0o755).unwrap();
        w.add_mount("/plain", data, MountOptions::default()).unwrap();
        w.add_mount("/mapped", data, MountOptions { idmap: Some(id), ..Default::default() }).unwrap();
        w.add_inode("/plain/f", false, Kuid(owner), Kgid(group), mode).unwrap();
        let mut cred = Cred::new(w.init_ns(), Kuid(fsuid), Kgid(fsgid), CapSet::from_bits(caps));
        cred.groups = groups.into_iter().map(Kgid).collect();
        let t = w.add_task("p", cred).unwrap();
        let ops = |p: &str| -> Vec<Op> {
            let mut v = vec![Op::Stat { path: format!("/{p}/f") }];
            if read || write { v.push(Op::Open { path: format!("/{p}/f"), read, write }); }
            if exec { v.push(Op::Access { path: format!("/{p}/f"), mode: 1, eaccess: true }); }
            v.push(Op::Create { path: format!("/{p}/new"), mode: 0o644, dir: false });
            v
        };
        for (a, b) in ops("plain").iter().zip(ops("mapped").iter()) {
            let x = w.check(t, a);
            let y = w.check(t, b);
            prop_assert_eq!(&x.result, &y.result, "{} vs {}", x, y);
            prop_assert_eq!(&x.output, &y.output);
        }
    }

    /// A caller never gets owner-class access to a file whose owner its namespace does not map:
    /// an owner-only file (mode 0700) is closed to it whatever its capabilities.
    #[test]
    fn unmapped_owner_never_grants_owner_class(file_owner in 2000u32..3000, file_group in 0u32..3000, nsuid in 0u32..10,
                                                caps in any::<u64>(), read in any::<bool>(), write in any::<bool>()) {
        let mut w = World::new();
        let ns = w.add_userns("c", w.init_ns(), Kuid(1000), Kgid(1000)).unwrap();
        w.set_uid_map(ns, "0 1000 10").unwrap();
        w.set_gid_map(ns, "0 1000 10").unwrap();
        let root = w.add_superblock("root", "ext4", w.init_ns(), Kuid(0), Kgid(0), 0o755).unwrap();
        w.add_mount("/", root, MountOptions::default()).unwrap();
        w.add_inode("/f", false, Kuid(file_owner), Kgid(file_group), 0o700).unwrap();
        let cred = Cred::new(ns, Kuid(1000 + nsuid), Kgid(1000 + nsuid), CapSet::from_bits(caps));
        let t = w.add_task("p", cred).unwrap();
        let o = w.check(t, &Op::Open { path: "/f".into(), read: read || !write, write });
        prop_assert_eq!(o.result, Verdict::Denied(credns_model::Errno::EACCES));
        prop_assert!(!o.trace.iter().any(|s| s.check.contains("owns the inode")));
    }
}
