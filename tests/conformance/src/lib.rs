//! Differential tests: the same case on the running kernel and in credns's model.
//!
//! The tests live in `tests/`; this library holds what they share: the root gate, seeds, map
//! generators ([`gen`]), the observation of real write contexts ([`observe`]), the
//! comparison and reporting of results ([`diff`]), the kernel executor that realises model
//! scenarios on this machine ([`kernel`]) and the scenario generator ([`scenario_gen`]).

#![forbid(unsafe_code)]

pub mod diff;
pub mod gen;
pub mod gen_attrs;
pub mod gen_creds;
pub mod gen_dirent;
pub mod gen_nstypes;
pub mod gen_symlinks;
pub mod kernel;
pub mod kernel_attrs;
pub mod kernel_creds;
pub mod kernel_keys;
pub mod kernel_nstypes;
pub mod kernel_standin;
pub mod keys_gen;
pub mod observe;
pub mod scenario_gen;
pub mod scratch;

use credns_idmap::{IdKind, IdMap};
use credns_sys::{Pid, ProcFs};

/// Whether the test may run. Differential tests create user namespaces and write their maps as
/// root. Without root: with `CREDNS_REQUIRE_ALL=1` (CI) this panics with the reason, otherwise
/// it prints "skipped: needs root (...)" and the test returns.
pub fn needs_root(test: &str) -> bool {
    let euid = ProcFs::new().status(Pid::this()).map(|s| s.uid[1]);
    let reason = match euid {
        Ok(0) => return true,
        Ok(uid) => format!(
            "needs root (running as uid {uid}; the test creates user namespaces and writes their maps as root)"
        ),
        Err(e) => format!("needs root (cannot read own credentials: {e})"),
    };
    if std::env::var("CREDNS_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("{test}: {reason}, and CREDNS_REQUIRE_ALL=1 forbids skipping");
    }
    println!("{test}: skipped: {reason}");
    false
}

/// The seed in force: `CREDNS_SEED` (decimal or 0x-hex) when set, else a new one per run (from
/// the clock and the process id), so that every run explores other cases. Each generated suite
/// prints it with [`announce_seed`], and that line says how to replay the run.
pub fn seed() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| match std::env::var("CREDNS_SEED") {
        Ok(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("CREDNS_SEED={s:?} is not a number"))
        }
        Err(_) => fresh_seed(),
    })
}

/// A seed from the clock and the process id, mixed (splitmix64's finaliser).
fn fresh_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut z = t ^ (u64::from(std::process::id()) << 32);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seed, printed for `test` with the command line that replays the run.
pub fn announce_seed(test: &str) -> u64 {
    let s = seed();
    let how = if std::env::var_os("CREDNS_SEED").is_some() {
        "given by CREDNS_SEED"
    } else {
        "new this run"
    };
    println!(
        "{test}: seed {s:#x} ({how}; replay with CREDNS_SEED={s:#x} cargo test -p credns-conformance -- {test})"
    );
    s
}

/// Whether CREDNS_REQUIRE_ALL=1 is in force: nothing may skip, be dropped or stay Unknown where
/// the kernel answers (CI sets it).
pub fn require_all() -> bool {
    std::env::var("CREDNS_REQUIRE_ALL").as_deref() == Ok("1")
}

/// `n` scaled by `CREDNS_CONFORMANCE_SCALE` (a positive number, default 1).
pub fn scaled(n: usize) -> usize {
    let f: f64 = std::env::var("CREDNS_CONFORMANCE_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n as f64) * f).ceil().max(1.0) as usize
}

/// The calling process's own maps (kernel ids as it sees them), for rendering host views.
#[derive(Clone, Debug)]
pub struct Host {
    /// The procfs.
    pub fs: ProcFs,
    /// The test process.
    pub pid: Pid,
    /// Its uid, gid and projid maps.
    pub uid_map: IdMap,
    /// Its gid map.
    pub gid_map: IdMap,
    /// Its projid map.
    pub projid_map: IdMap,
}

impl Host {
    /// Read the test process's maps.
    pub fn new() -> Self {
        let fs = ProcFs::new();
        let pid = Pid::this();
        let read = |k| {
            fs.read_map(pid, k)
                .unwrap_or_else(|e| panic!("reading the test process's own {k} map: {e}"))
        };
        Host {
            uid_map: read(IdKind::Uid),
            gid_map: read(IdKind::Gid),
            projid_map: read(IdKind::Projid),
            fs,
            pid,
        }
    }

    /// The host's map of a kind.
    pub fn map(&self, kind: IdKind) -> &IdMap {
        match kind {
            IdKind::Uid => &self.uid_map,
            IdKind::Gid => &self.gid_map,
            IdKind::Projid => &self.projid_map,
        }
    }

    /// Whether the test process is in the initial user namespace (its uid map is the identity).
    pub fn is_initial(&self) -> bool {
        self.uid_map == IdMap::identity()
    }
}

impl Default for Host {
    fn default() -> Self {
        Self::new()
    }
}
