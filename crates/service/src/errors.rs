//! `io.credns.Registry`'s errors, each with a human `message`, and the registry's errors
//! mapped onto them.

use credns_api::registry::{Range, INTERFACE};
use credns_registry::{QuotaLimit, StoreErrorKind};
use credns_varlink::ErrorReply;
use serde_json::{json, Value};

fn named(name: &str, parameters: Value) -> ErrorReply {
    ErrorReply::new(INTERFACE, name, parameters)
}

/// `InvalidParameter`.
pub(crate) fn invalid(parameter: &str, reason: impl Into<String>) -> ErrorReply {
    let reason = reason.into();
    named(
        "InvalidParameter",
        json!({"parameter": parameter, "reason": reason, "message": format!("invalid parameter {parameter}: {reason}")}),
    )
}

/// `PermissionDenied`.
pub(crate) fn denied(reason: impl Into<String>) -> ErrorReply {
    let reason = reason.into();
    named(
        "PermissionDenied",
        json!({"reason": reason, "message": format!("permission denied: {reason}")}),
    )
}

/// `NotFound`.
pub(crate) fn not_found(what: &str) -> ErrorReply {
    named(
        "NotFound",
        json!({"what": what, "message": format!("no {what}")}),
    )
}

/// `NamespaceFailed`.
pub(crate) fn namespace_failed(reason: impl Into<String>, message: String) -> ErrorReply {
    named(
        "NamespaceFailed",
        json!({"reason": reason.into(), "message": message}),
    )
}

/// `StoreUnavailable` for a store this daemon refuses to use (another owner, write bits).
pub(crate) fn store_unsafe(message: String) -> ErrorReply {
    named(
        "StoreUnavailable",
        json!({"reason": "store unsafe", "message": message}),
    )
}

/// `Internal`.
pub(crate) fn internal(message: impl Into<String>) -> ErrorReply {
    named("Internal", json!({"message": message.into()}))
}

/// The registry's errors as varlink errors; every one carries a `message`.
pub(crate) fn registry_error(e: credns_registry::Error) -> ErrorReply {
    use credns_registry::Error as E;
    let message = e.to_string();
    let bad = |parameter: &str| {
        named(
            "InvalidParameter",
            json!({"parameter": parameter, "reason": message, "message": message}),
        )
    };
    match e {
        E::InvalidSize { .. } => bad("size"),
        E::InvalidLease { .. } => bad("name"),
        E::InvalidRange { .. } => bad("uid"),
        E::HighWindowDisabled => bad("high"),
        E::InvalidKeyRoute(_) => bad("route"),
        E::PoolExhausted {
            window,
            requested,
            align,
            largest_free,
        } => named(
            "PoolExhausted",
            json!({"window": window.to_string(), "requested": requested, "align": align, "largestFree": largest_free, "message": message}),
        ),
        E::QuotaExceeded { owner, limit } => {
            let (l, max, held, requested) = match limit {
                QuotaLimit::Ranges { max, held } => ("max_ranges", max as u64, held as u64, 1),
                QuotaLimit::Ids {
                    max,
                    held,
                    requested,
                } => ("max_ids", max, held, requested),
            };
            named(
                "QuotaExceeded",
                json!({"owner": owner, "limit": l, "max": max, "held": held, "requested": requested, "message": message}),
            )
        }
        E::UnknownId(id) => not_found(&format!("allocation {id}")),
        E::UnknownName(n) => not_found(&format!("allocation named {n:?}")),
        E::UnknownUserNs { dev, ino, .. } => {
            not_found(&format!("allocation leased to user namespace {dev}:{ino}"))
        }
        E::LeaseTaken { lease, by, owner } => named(
            "LeaseTaken",
            json!({"lease": lease.to_string(), "allocation": by.0, "owner": owner, "message": message}),
        ),
        E::Overlap { range, with, .. } => named(
            "RangeUnavailable",
            json!({"range": Range::from(range), "allocation": with.0, "message": message}),
        ),
        E::Store(s) if matches!(s.kind, StoreErrorKind::Full | StoreErrorKind::Unwritable) => {
            let reason = match s.kind {
                StoreErrorKind::Full => "store full",
                _ => "store unwritable",
            };
            named(
                "StoreUnavailable",
                json!({"reason": reason, "message": format!("{reason}: {s}; nothing was changed, retry once it takes writes")}),
            )
        }
        E::Store(s) if s.kind == StoreErrorKind::Locked => named(
            "StoreUnavailable",
            json!({"reason": "store locked", "message": message}),
        ),
        _ => internal(message),
    }
}
