//! Comparing the kernel's answer with the library's, and reporting mismatches.

use std::collections::BTreeMap;

use credns_idmap::{AcceptedWrite, WriteContext, WriteRule};
use credns_sys::{errno_display, Errno};

use crate::gen::escape_short;

/// The library's answer in one line.
pub fn library_display(r: &Result<AcceptedWrite, WriteRule>) -> String {
    match r {
        Ok(a) => format!("ok (kernel map {:?})", a.kernel),
        Err(rule) => format!("{} — {} [{}]", rule.errno(), rule, rule.kernel_function()),
    }
}

/// The kernel's answer in one line.
pub fn kernel_display(r: &Result<(), Errno>) -> String {
    match r {
        Ok(()) => "ok".to_string(),
        Err(e) => errno_display(*e),
    }
}

/// The context in one line (what the library was told).
pub fn context_display(c: &WriteContext) -> String {
    format!(
        "kind={} opener_ns={:?} offset={} already_written={} cap_sys_admin_in_target={} parent_could_setfcap={} \
         opener_setfcap_in_parent={} owner={} opener_euid={} opener_egid={} setgroups_allowed={} \
         writer_setid_in_parent={} opener_setid_in_parent={} parent_map={:?}",
        c.kind,
        c.opener_ns,
        c.offset,
        c.already_written,
        c.opener_cap_sys_admin_in_target,
        c.parent_could_setfcap,
        c.opener_cap_setfcap_in_parent,
        c.owner,
        c.opener_euid,
        c.opener_egid,
        c.setgroups_allowed,
        c.writer_cap_setid_in_parent,
        c.opener_cap_setid_in_parent,
        c.parent_map
    )
}

/// Counts and mismatches of one situation.
#[derive(Debug)]
pub struct Tally {
    /// The situation's name.
    pub situation: String,
    /// Map writes compared.
    pub writes: usize,
    /// Writes both accepted.
    pub accepted: usize,
    /// Refusals by errno name, both agreeing.
    pub refused: BTreeMap<String, usize>,
    /// Read-back and translation comparisons made.
    pub views: usize,
    /// Mismatch reports.
    pub failures: Vec<String>,
    /// Outcome counts by case class (coverage).
    pub classes: BTreeMap<String, usize>,
    /// The kernel's answer to the last compared write.
    pub last: String,
}

impl Tally {
    /// A new tally.
    pub fn new(situation: impl Into<String>) -> Self {
        Tally {
            situation: situation.into(),
            writes: 0,
            accepted: 0,
            refused: BTreeMap::new(),
            views: 0,
            failures: Vec::new(),
            classes: BTreeMap::new(),
            last: String::new(),
        }
    }

    /// Compare one write. Returns the accepted write when both accepted.
    pub fn write(
        &mut self,
        case: &str,
        text: &[u8],
        ctx: &WriteContext,
        kernel: Result<(), Errno>,
        library: Result<AcceptedWrite, WriteRule>,
    ) -> Option<AcceptedWrite> {
        self.writes += 1;
        self.last = match &kernel {
            Ok(()) => "ok".to_string(),
            Err(e) => credns_sys::errno_name(*e).unwrap_or("other").to_string(),
        };
        let agree = match (&kernel, &library) {
            (Ok(()), Ok(_)) => true,
            (Err(e), Err(rule)) => e.raw_os_error() == rule.errno().code(),
            _ => false,
        };
        if !agree {
            self.failures.push(format!(
                "MISMATCH in {} ({case})\n  text:    {}\n  kernel:  {}\n  library: {}\n  context: {}",
                self.situation,
                escape_short(text),
                kernel_display(&kernel),
                library_display(&library),
                context_display(ctx)
            ));
            return None;
        }
        match (kernel, library) {
            (Ok(()), Ok(a)) => {
                self.accepted += 1;
                Some(a)
            }
            (Err(e), _) => {
                *self
                    .refused
                    .entry(credns_sys::errno_name(e).unwrap_or("other").to_string())
                    .or_default() += 1;
                None
            }
            _ => None,
        }
    }

    /// Compare a view (a map read back, an id seen from inside) with the library's prediction.
    pub fn view(&mut self, case: &str, what: &str, text: &[u8], got: &str, want: &str) {
        self.views += 1;
        if got != want {
            self.failures.push(format!(
                "MISMATCH in {} ({case}): {what}\n  text:    {}\n  kernel shows:      {:?}\n  library predicts:  {:?}",
                self.situation,
                escape_short(text),
                got,
                want
            ));
        }
    }

    /// Count the last write's outcome under a class of cases.
    pub fn classify(&mut self, class: &str) {
        *self
            .classes
            .entry(format!("{class} => {}", self.last))
            .or_default() += 1;
    }

    /// Count an outcome that is not a compared write under a class.
    pub fn classify_outcome(&mut self, class: &str, outcome: &str) {
        *self
            .classes
            .entry(format!("{class} => {outcome}"))
            .or_default() += 1;
    }

    /// A plain failure (setup went wrong in a way that is itself a finding).
    pub fn fail(&mut self, msg: String) {
        self.failures
            .push(format!("FAILURE in {}: {msg}", self.situation));
    }

    /// One summary line.
    pub fn summary(&self) -> String {
        let refused: Vec<String> = self
            .refused
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        format!(
            "{}: {} writes compared ({} accepted; refused: {}), {} views compared, {} mismatches",
            self.situation,
            self.writes,
            self.accepted,
            if refused.is_empty() {
                "none".to_string()
            } else {
                refused.join(", ")
            },
            self.views,
            self.failures.len()
        )
    }

    /// Print the summary and every mismatch (the first 30 in full); panic if there were any.
    pub fn finish(self) {
        println!("{}", self.summary());
        for (class, n) in &self.classes {
            println!("    {n:5}  {class}");
        }
        if self.failures.is_empty() {
            return;
        }
        for f in self.failures.iter().take(30) {
            println!("{f}");
        }
        if self.failures.len() > 30 {
            println!("... and {} more", self.failures.len() - 30);
        }
        panic!("{}", self.summary());
    }
}
