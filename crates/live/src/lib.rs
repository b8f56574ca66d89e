//! The live host as credns audits it.
//!
//! * [`snapshot`] reads the host through credns-sys: every user namespace a process lives in
//!   (owner, ancestry, maps), what else holds namespaces (nsfs fds, bind mounts, idmapped
//!   mounts), and the host's passwd, group, subuid and subgid files.
//! * [`explain`] answers one question about live processes (may this one kill that one,
//!   enter its namespace) with the model and its trace ([`model_world`] builds the model's
//!   world from [`process`] snapshots), then asks the kernel the same as that process.
//! * [`audit`] checks a snapshot against the registry's allocations and says what is wrong,
//!   each finding with a severity and its exact ids. It makes no syscall: tests hand it
//!   snapshots built in memory.
#![forbid(unsafe_code)]

pub mod audit;
mod error;
pub mod explain;
pub mod key_question;
pub mod model_world;
pub mod nss;
pub mod path;
pub mod process;
pub mod question;
pub mod scenario_out;
pub mod snapshot;

pub use audit::{audit, Finding, FindingKind, Report, Severity, Unseen};
pub use error::Error;
pub use snapshot::{HostSnapshot, LiveNs};
