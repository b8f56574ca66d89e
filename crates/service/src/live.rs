//! The host's live user namespaces, as the daemon and the direct path see them: their maps'
//! host ids are never handed out, whatever the registry's records say.

use credns_idmap::{IdRange, IdRangeSet};
use credns_sys::maps::{scan_user_namespace_maps, scan_user_namespaces, LiveUserNs};
use credns_sys::{NsId, ProcFs};

/// Live user namespaces other than `own` (the scanner's own); with the start times of their
/// processes only if `ages` is asked for (the start-up reap needs them; live ids do not).
pub(crate) fn scan_with(procfs: &ProcFs, own: Option<NsId>, ages: bool) -> Vec<LiveUserNs> {
    let scanned = if ages {
        scan_user_namespaces(procfs)
    } else {
        scan_user_namespace_maps(procfs)
    };
    let mut v = scanned.unwrap_or_default();
    v.retain(|n| Some(n.id) != own);
    v
}

/// Live user namespaces other than `own`, without ages.
pub(crate) fn scan(procfs: &ProcFs, own: Option<NsId>) -> Vec<LiveUserNs> {
    scan_with(procfs, own, false)
}

/// Every host id the scanned namespaces' uid and gid maps use.
pub(crate) fn live_ids(scan: &[LiveUserNs]) -> IdRangeSet {
    IdRangeSet::from_ranges(scan.iter().flat_map(|n| {
        [&n.uid_map, &n.gid_map].into_iter().flat_map(|m| {
            m.extents().iter().map(|e| IdRange {
                start: e.lower_first,
                end: (e.lower_first as u64 + e.count as u64 - 1) as u32,
            })
        })
    }))
}
