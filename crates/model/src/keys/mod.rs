//! Kernel keys and keyrings (`security/keys/`): permission masks, possession, the search of a
//! task's keyrings, per-namespace user keyrings and the `keyctl(2)`/`add_key(2)` operations.
//!
//! The rules follow the 6.x kernel:
//!
//! * `key_task_permission`: the USR byte if the key's kuid is the caller's fsuid; else the GRP
//!   byte if the key's gid is valid, the GRP byte is non-zero and the gid is the fsgid or a
//!   supplementary group; else the OTH byte. The POS byte is ORed in when the reference is
//!   possessed. Ids are compared as kernel ids, so a key of another namespace's uid falls to
//!   the OTH byte.
//! * Possession (`lookup_user_key` → `search_process_keyrings_rcu`): a key named by serial is
//!   possessed if it is found by searching the thread, process and session keyring (or the
//!   user-session keyring when there is no session keyring), descending only into keyrings
//!   that grant SEARCH, and the key itself grants SEARCH. Special ids (`@t`, `@p`, …) are
//!   always possessed.
//! * User keyrings (`look_up_user_keyrings`) are per (user namespace, real kuid), kept in the
//!   namespace's register and created on first use.
//!
//! Not modelled (the answer would be `Unknown` if they mattered, and the model never creates
//! such states): LSMs (`security_key_permission` is taken to allow), key quotas, expiry,
//! revocation, negative keys, `KEEP` flags, restricted keyrings, `request_key` authorisation.

mod operations;
mod request;
mod search;
mod store;
mod types;

pub(crate) use search::Match;
pub(crate) use store::KeyStore;
pub use types::*;
