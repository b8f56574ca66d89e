//! The registry's records as `io.credns.Registry` carries them.

use credns_api::registry::{AllocationInfo, HighRanges, HolderInfo, UserNamespace, WireLease};
use credns_registry::{Allocation, Holder, Lease, Origin, Part, Registry};

/// A lease on the wire.
pub(crate) fn lease(l: &Lease) -> WireLease {
    match l {
        Lease::Name(n) => WireLease {
            name: Some(n.clone()),
            user_namespace: None,
        },
        Lease::UserNs {
            dev,
            ino,
            created_ns,
        } => WireLease {
            name: None,
            user_namespace: Some(UserNamespace {
                dev: *dev,
                ino: *ino,
                created_ns: *created_ns,
            }),
        },
    }
}

/// An allocation on the wire, with what on the host now overlaps it.
pub(crate) fn allocation(reg: &Registry, a: &Allocation) -> AllocationInfo {
    AllocationInfo {
        conflicts: reg
            .allocator()
            .conflicts(a)
            .iter()
            .map(|e| format!("{} also held by {}", e.range, e.source))
            .collect(),
        ..record(a)
    }
}

/// An allocation on the wire, as its record says.
pub(crate) fn record(a: &Allocation) -> AllocationInfo {
    AllocationInfo {
        id: a.id.0,
        uid: a.uid.into(),
        gid: a.gid.into(),
        high: a.high.map(|h| HighRanges {
            uid: h.uid.into(),
            gid: h.gid.into(),
        }),
        lease: lease(&a.lease),
        owner: a.owner,
        created: a.created,
        label: a.label.clone(),
        origin: match a.origin {
            Origin::Allocated => "allocated",
            Origin::Registered => "registered",
            Origin::Reserved => "reserved",
        }
        .into(),
        delegated: a.delegated,
        conflicts: Vec::new(),
    }
}

/// A holder on the wire; `show_lease` false hides another user's lease.
pub(crate) fn holder(h: &Holder, show_lease: bool) -> HolderInfo {
    let mut out = HolderInfo {
        kind: String::new(),
        allocation: None,
        lease: None,
        owner: None,
        part: None,
        as_uid: None,
        as_gid: None,
        source: None,
        user_namespace: None,
    };
    match h {
        Holder::Allocation {
            id,
            lease: l,
            owner,
            part,
            as_uid,
            as_gid,
        } => {
            out.kind = "allocation".into();
            out.allocation = Some(id.0);
            out.lease = show_lease.then(|| lease(l));
            out.owner = Some(*owner);
            out.part = Some(
                match part {
                    Part::Main => "main",
                    Part::High => "high",
                }
                .into(),
            );
            out.as_uid = Some(*as_uid);
            out.as_gid = Some(*as_gid);
        }
        Holder::Excluded(s) => {
            out.kind = "excluded".into();
            out.source = Some(s.to_string());
        }
    }
    out
}
