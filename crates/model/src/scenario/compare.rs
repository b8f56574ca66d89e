//! Running one scenario under several semantics and finding the operations whose outcome
//! differs (`credns sim --compare`).

use serde::Serialize;

use super::Scenario;
use crate::outcome::{Outcome, Step};
use crate::semantics::Semantics;

/// One side of a difference: the semantics, its outcome, and its trace from the first step
/// where the sides part.
#[derive(Clone, Debug, Serialize)]
pub struct Side {
    /// The semantics (`mainline`, `host_admin+inode_userns`, …).
    pub semantics: String,
    /// The whole outcome (its `trace` is the full trace).
    pub outcome: Outcome,
    /// The trace from the first step where the sides part.
    pub from_parting: Vec<Step>,
}

/// An operation whose outcome (verdict or output) differs between semantics.
#[derive(Clone, Debug, Serialize)]
pub struct Difference {
    /// 0-based index in the scenario.
    pub index: usize,
    /// 1-based line of its `[[op]]` table.
    pub line: usize,
    /// The operation as written.
    pub text: String,
    /// The index of the first trace step where the sides part.
    pub parted_at: usize,
    /// Each semantics' side, in the order asked.
    pub sides: Vec<Side>,
}

/// The first index where the traces are not all the same step.
fn parting(traces: &[&[Step]]) -> usize {
    let longest = traces.iter().map(|t| t.len()).max().unwrap_or(0);
    (0..longest)
        .find(|&i| {
            let first = traces[0].get(i);
            traces.iter().any(|t| t.get(i) != first)
        })
        .unwrap_or(longest)
}

impl Scenario {
    /// Run every operation under each of `sems` (each on its own copy of the world, so each
    /// run follows its own history) and return the operations whose verdict or output is not
    /// the same under all of them.
    pub fn compare(&self, sems: &[Semantics]) -> Vec<Difference> {
        let runs: Vec<_> = sems.iter().map(|s| self.run_with(*s)).collect();
        let Some(first) = runs.first() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, r0) in first.iter().enumerate() {
            let same = runs.iter().all(|r| {
                r[i].outcome.result == r0.outcome.result && r[i].outcome.output == r0.outcome.output
            });
            if same {
                continue;
            }
            let traces: Vec<&[Step]> = runs.iter().map(|r| r[i].outcome.trace.as_slice()).collect();
            let at = parting(&traces);
            let sides = runs
                .iter()
                .zip(sems)
                .map(|(r, s)| Side {
                    semantics: s.to_string(),
                    outcome: r[i].outcome.clone(),
                    from_parting: r[i].outcome.trace.get(at..).unwrap_or(&[]).to_vec(),
                })
                .collect();
            out.push(Difference {
                index: i,
                line: r0.line,
                text: r0.text.clone(),
                parted_at: at,
                sides,
            });
        }
        out
    }
}
