//! What every decision returns: a verdict, an optional output and a step-by-step trace.
//!
//! # JSON form (stable field names)
//!
//! An [`Outcome`] serializes as
//!
//! ```json
//! {
//!   "result": "allowed" | "denied" | "unknown",
//!   "errno": "EACCES",            // only when "denied"
//!   "reason": "…",                // only when "unknown"
//!   "output": { "uid": "0", … },  // only when the operation yields values (stat, exec, …)
//!   "trace": [ Step, … ]
//! }
//! ```
//!
//! and each [`Step`] as
//!
//! ```json
//! {
//!   "depth": 1,                      // call depth; nested rules are deeper
//!   "function": "cap_capable",       // the kernel function whose rule this is
//!   "check": "…",                    // what was checked, in words
//!   "values": { "cap": "CAP_KILL" }, // the values consulted or translated, in order
//!   "verdict": "pass" | "fail" | "info" | "unknown"
//! }
//! ```

use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};

use credns_idmap::Errno;

/// The answer to an operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The kernel would allow it (the syscall returns success).
    Allowed,
    /// The kernel would refuse it with this errno.
    Denied(Errno),
    /// The kernel's answer depends on something the model does not know.
    Unknown(String),
}

impl Verdict {
    /// Whether this is `Allowed`.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allowed)
    }

    /// The errno, if denied.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Verdict::Denied(e) => Some(*e),
            _ => None,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Allowed => f.write_str("allowed"),
            Verdict::Denied(e) => write!(f, "denied: {e}"),
            Verdict::Unknown(r) => write!(f, "unknown: {r}"),
        }
    }
}

/// The verdict of one step of a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepVerdict {
    /// The rule was satisfied (a check passed, a capability was found).
    Pass,
    /// The rule was not satisfied.
    Fail,
    /// A translation or a note; not a check.
    Info,
    /// The model cannot tell.
    Unknown,
}

impl std::fmt::Display for StepVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StepVerdict::Pass => "pass",
            StepVerdict::Fail => "FAIL",
            StepVerdict::Info => "info",
            StepVerdict::Unknown => "UNKNOWN",
        })
    }
}

/// Named values, kept in the order they were recorded; serializes as a JSON object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Values(pub Vec<(String, String)>);

impl Values {
    /// The value of `name`, if recorded.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Serialize for Values {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl std::fmt::Display for Values {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

/// One rule consulted or one id translated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Call depth (0 for the operation's entry point).
    pub depth: u8,
    /// The kernel function the rule lives in.
    pub function: String,
    /// What was checked or computed, in words.
    pub check: String,
    /// The values involved.
    pub values: Values,
    /// The step's verdict.
    pub verdict: StepVerdict,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let indent = "  ".repeat(self.depth as usize);
        write!(
            f,
            "{indent}[{}] {}: {}",
            self.verdict, self.function, self.check
        )?;
        if !self.values.0.is_empty() {
            write!(f, " ({})", self.values)?;
        }
        Ok(())
    }
}

/// Values an operation yields (ids as seen by the caller, new credentials, …), as `key=value`
/// pairs in a fixed order. Displayed as `key=value key=value`.
pub type Output = Values;

/// An operation's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Allowed, denied with an errno, or unknown.
    pub result: Verdict,
    /// Values the operation yields, if any.
    pub output: Option<Output>,
    /// Every rule consulted and every id translated, in order.
    pub trace: Vec<Step>,
}

impl Outcome {
    /// Whether the result is `Allowed`.
    pub fn is_allowed(&self) -> bool {
        self.result.is_allowed()
    }

    /// The first step whose function is `function`.
    pub fn step(&self, function: &str) -> Option<&Step> {
        self.trace.iter().find(|s| s.function == function)
    }

    /// Whether some step's function is `function`.
    pub fn consulted(&self, function: &str) -> bool {
        self.step(function).is_some()
    }

    /// The output as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

impl std::fmt::Display for Outcome {
    /// One line for the result (and output), then one line per step.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "=> {}", self.result)?;
        if let Some(o) = &self.output {
            write!(f, " [{o}]")?;
        }
        for s in &self.trace {
            write!(f, "\n{s}")?;
        }
        Ok(())
    }
}

impl Serialize for Outcome {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Outcome", 5)?;
        match &self.result {
            Verdict::Allowed => st.serialize_field("result", "allowed")?,
            Verdict::Denied(e) => {
                st.serialize_field("result", "denied")?;
                st.serialize_field("errno", e)?;
            }
            Verdict::Unknown(r) => {
                st.serialize_field("result", "unknown")?;
                st.serialize_field("reason", r)?;
            }
        }
        if let Some(o) = &self.output {
            st.serialize_field("output", o)?;
        }
        st.serialize_field("trace", &self.trace)?;
        st.end()
    }
}

/// Collects steps while a decision is made. A tracer that is off records nothing, and the
/// [`tr!`] calls around every step evaluate none of their arguments: a decision asked for its
/// answer alone ([`World::decide`](crate::World::decide)) formats no text.
#[derive(Debug)]
pub(crate) struct Tracer {
    pub(crate) steps: Vec<Step>,
    pub(crate) depth: u8,
    pub(crate) on: bool,
}

impl Default for Tracer {
    fn default() -> Self {
        Tracer {
            steps: Vec::new(),
            depth: 0,
            on: true,
        }
    }
}

impl Tracer {
    /// A tracer that records nothing.
    pub(crate) fn off() -> Self {
        Tracer {
            on: false,
            ..Tracer::default()
        }
    }

    pub(crate) fn step(
        &mut self,
        function: &str,
        check: impl Into<String>,
        values: Vec<(&str, String)>,
        verdict: StepVerdict,
    ) {
        self.steps.push(Step {
            depth: self.depth,
            function: function.to_owned(),
            check: check.into(),
            values: Values(values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()),
            verdict,
        });
    }

    pub(crate) fn pass(
        &mut self,
        function: &str,
        check: impl Into<String>,
        values: Vec<(&str, String)>,
    ) {
        self.step(function, check, values, StepVerdict::Pass)
    }

    pub(crate) fn fail(
        &mut self,
        function: &str,
        check: impl Into<String>,
        values: Vec<(&str, String)>,
    ) {
        self.step(function, check, values, StepVerdict::Fail)
    }

    pub(crate) fn info(
        &mut self,
        function: &str,
        check: impl Into<String>,
        values: Vec<(&str, String)>,
    ) {
        self.step(function, check, values, StepVerdict::Info)
    }

    pub(crate) fn check(
        &mut self,
        ok: bool,
        function: &str,
        check: impl Into<String>,
        values: Vec<(&str, String)>,
    ) -> bool {
        self.step(
            function,
            check,
            values,
            if ok {
                StepVerdict::Pass
            } else {
                StepVerdict::Fail
            },
        );
        ok
    }

    /// Run `f` one level deeper.
    #[inline]
    /// One level deeper (for the steps of a rule), until [`Tracer::leave`].
    pub(crate) fn enter(&mut self) {
        self.depth = self.depth.saturating_add(1);
    }

    /// Back from [`Tracer::enter`].
    pub(crate) fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// `f` one level deeper.
    #[inline(always)]
    pub(crate) fn nested<T>(&mut self, f: impl FnOnce(&mut Tracer) -> T) -> T {
        self.enter();
        let r = f(self);
        self.leave();
        r
    }
}

/// Run the recording of a trace step (`tr!`): out of line and marked cold, as a decision made
/// for an answer alone never records.
#[cold]
#[inline(never)]
pub(crate) fn traced<R>(f: impl FnOnce() -> R) -> R {
    f()
}
