//! Scenario files: a TOML description of a world and a list of operations with expected
//! results. The format is documented in `docs/scenarios.md` at the top of the workspace.

use credns_idmap::{Kgid, Kuid};
use toml::Spanned;

use crate::ops::Op;
use crate::outcome::{Outcome, Verdict};
use crate::semantics::Semantics;
use crate::world::{MountOptions, TaskRef, World};
use crate::Error;
use credns_idmap::Errno;

mod attr_ops;
mod buildable;
mod compare;
mod dirent;
mod file_xattrs;
mod nstypes;
mod op_args;
mod ops;
mod ops_caps;
mod ops_sockets;
mod proposals;
mod raw;
mod run_keyring;
mod world;

pub use buildable::{knows_fs_type, FS_USERNS_MOUNT};
pub use compare::{Difference, Side};
use ops::parse_op;
use raw::*;
use world::*;

/// What an operation is expected to return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Success.
    Allowed,
    /// Failure with this errno, or with any errno (`"denied"`).
    Denied(Option<Errno>),
    /// The model cannot tell.
    Unknown,
}

impl Expect {
    /// Parse `allowed` (or `ok`), `denied`, `unknown`, or an errno name such as `EACCES`.
    pub fn parse(s: &str) -> Option<Expect> {
        match s.trim().to_ascii_lowercase().as_str() {
            "allowed" | "allow" | "ok" | "success" => Some(Expect::Allowed),
            "denied" => Some(Expect::Denied(None)),
            "unknown" => Some(Expect::Unknown),
            _ => Errno::parse(s).map(|e| Expect::Denied(Some(e))),
        }
    }

    /// Whether `v` satisfies the expectation.
    pub fn matches(&self, v: &Verdict) -> bool {
        match (self, v) {
            (Expect::Allowed, Verdict::Allowed) => true,
            (Expect::Unknown, Verdict::Unknown(_)) => true,
            (Expect::Denied(None), Verdict::Denied(_)) => true,
            (Expect::Denied(Some(e)), Verdict::Denied(d)) => e == d,
            _ => false,
        }
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Allowed => f.write_str("allowed"),
            Expect::Denied(None) => f.write_str("denied"),
            Expect::Denied(Some(e)) => write!(f, "{e}"),
            Expect::Unknown => f.write_str("unknown"),
        }
    }
}

/// One operation of a scenario.
#[derive(Clone, Debug)]
pub struct ScenarioOp {
    /// The task performing it.
    pub by: TaskRef,
    /// The operation.
    pub op: Op,
    /// A namespace named by the operation that only exists once an earlier `unshare` ran.
    deferred_ns: Option<String>,
    /// The operation as written, for reports.
    pub text: String,
    /// Expected result.
    pub expect: Option<Expect>,
    /// Expected output tokens (`key=value …`), each of which must appear in the output.
    pub expect_output: Option<String>,
    /// 1-based line of the `[[op]]` table.
    pub line: usize,
}

/// A parsed scenario: the initial world and the operations to run on it.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The name the scenario was parsed under.
    pub source_name: String,
    /// The world before the first operation.
    pub world: World,
    /// The operations, in order.
    pub ops: Vec<ScenarioOp>,
    /// The semantics the file names (`[settings] semantics`; mainline by default).
    pub semantics: Semantics,
}

/// The result of running one operation of a scenario.
#[derive(Clone, Debug, serde::Serialize)]
pub struct OpReport {
    /// 0-based index in the scenario.
    pub index: usize,
    /// 1-based line of its `[[op]]` table.
    pub line: usize,
    /// The operation as written.
    pub text: String,
    /// What the model answered.
    pub outcome: Outcome,
    /// The expected result, if given.
    pub expect: Option<String>,
    /// The expected output tokens, if given.
    pub expect_output: Option<String>,
    /// Whether the expectations hold (`None` when there are none).
    pub matched: Option<bool>,
}

impl OpReport {
    /// True unless an expectation was given and does not hold.
    pub fn matches(&self) -> bool {
        self.matched != Some(false)
    }
}

impl std::fmt::Display for OpReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = match self.matched {
            Some(true) => "ok",
            Some(false) => "MISMATCH",
            None => "-",
        };
        write!(
            f,
            "#{} (line {}) {}: {}",
            self.index, self.line, status, self.text
        )?;
        if let Some(e) = &self.expect {
            write!(f, " [expect {e}]")?;
        }
        if let Some(e) = &self.expect_output {
            write!(f, " [expect output {e}]")?;
        }
        write!(f, "\n{}", self.outcome)
    }
}

impl Scenario {
    /// Parse a scenario. Errors name `source_name`, the line and column, and what was wrong.
    pub fn parse(text: &str, source_name: &str) -> Result<Scenario, Error> {
        let c = Ctx {
            text,
            source: source_name,
            sem: Semantics::MAINLINE,
        };
        let raw: RawScenario = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            c.err(span, e.message().trim().to_string())
        })?;
        let sem = proposals::semantics(&c, raw.settings.as_ref())?;
        let c = Ctx { sem, ..c };
        let mut w = World::new();
        w.set_semantics(sem);
        if let Some(s) = &raw.settings {
            if let Some(v) = s.overflowuid {
                w.overflowuid = v;
            }
            if let Some(v) = s.overflowgid {
                w.overflowgid = v;
            }
            if let Some(v) = s.suid_dumpable {
                w.suid_dumpable = v;
            }
            w.protected = dirent::protected(&c, s)?;
        }

        for ns in &raw.namespace {
            declare_namespace(&c, &mut w, ns)?;
        }

        for fs in &raw.filesystem {
            declare_filesystem(&c, &mut w, fs)?;
        }

        if !raw
            .mount
            .iter()
            .any(|m| crate::world::normalise(m.get_ref().path.get_ref()).as_deref() == Some("/"))
        {
            let sb = w
                .add_superblock("rootfs", "ext4", w.init_ns(), Kuid(0), Kgid(0), 0o755)
                .map_err(|e| c.model(0..0, e))?;
            w.add_mount("/", sb, MountOptions::default())
                .map_err(|e| c.model(0..0, e))?;
        }
        let mut mounts: Vec<&Spanned<RawMount>> = raw.mount.iter().collect();
        mounts.sort_by_key(|m| {
            crate::world::path_components(m.get_ref().path.get_ref())
                .map(|c| c.len())
                .unwrap_or(0)
        });
        for m in mounts {
            declare_mount(&c, &mut w, m)?;
        }

        for f in &raw.file {
            declare_file(&c, &mut w, f)?;
        }

        for p in &raw.process {
            declare_process(&c, &mut w, p)?;
        }
        for o in &raw.other_namespace {
            nstypes::declare(&c, &mut w, o)?;
        }

        for r in &raw.run_keyring {
            run_keyring::declare_run_keyring(&c, &mut w, r)?;
        }
        for k in &raw.key {
            declare_key(&c, &mut w, k.span(), k.get_ref())?;
        }
        for ct in &raw.container {
            proposals::declare_container(&c, &mut w, ct)?;
        }
        for k in &raw.key {
            proposals::declare_key_acl(&c, &mut w, k.get_ref())?;
        }
        for p in &raw.process {
            proposals::declare_denizen(&c, &mut w, p.get_ref())?;
        }

        let mut earlier = ops::Earlier::default();
        let mut ops = Vec::new();
        for o in &ops::op_tables(&c, text)? {
            ops.push(parse_op(&c, &w, o, &mut earlier)?);
        }
        Ok(Scenario {
            source_name: source_name.to_owned(),
            world: w,
            ops,
            semantics: sem,
        })
    }

    /// Run every operation in order on a copy of the world, under the semantics the file
    /// names.
    pub fn run(&self) -> Vec<OpReport> {
        self.run_with(self.semantics)
    }

    /// Run every operation in order on a copy of the world, under `sem` (the declarations
    /// of proposals `sem` does not name are ignored).
    pub fn run_with(&self, sem: Semantics) -> Vec<OpReport> {
        let mut w = self.world.clone();
        w.set_semantics(sem);
        let mut out = Vec::new();
        for (i, so) in self.ops.iter().enumerate() {
            let mut op = so.op.clone();
            let mut missing = None;
            if let Some(name) = &so.deferred_ns {
                match w.ns_by_name(name) {
                    Some(r) => match &mut op {
                        Op::Setns { ns } | Op::Capable { ns, .. } => *ns = r,
                        _ => {}
                    },
                    None => missing = Some(name.clone()),
                }
            }
            let outcome = match missing {
                Some(name) => Outcome {
                    result: Verdict::Unknown(format!("namespace \"{name}\" does not exist (the unshare that was to create it failed)")),
                    output: None,
                    trace: Vec::new(),
                },
                None => w.op(so.by, &op),
            };
            let mut matched = so.expect.as_ref().map(|e| e.matches(&outcome.result));
            if let Some(exp) = &so.expect_output {
                let got = outcome
                    .output
                    .as_ref()
                    .map(|o| o.to_string())
                    .unwrap_or_default();
                let toks: Vec<&str> = got.split_whitespace().collect();
                let ok = exp.split_whitespace().all(|t| toks.contains(&t));
                matched = Some(matched.unwrap_or(true) && ok);
            }
            out.push(OpReport {
                index: i,
                line: so.line,
                text: so.text.clone(),
                outcome,
                expect: so.expect.as_ref().map(|e| e.to_string()),
                expect_output: so.expect_output.clone(),
                matched,
            });
        }
        out
    }
}
