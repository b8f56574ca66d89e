//! The daemon's log: `tracing` events written to stderr one line each, for the journal when
//! systemd runs the daemon (stderr is then the journal's stream, and each line starts with its
//! syslog priority, `<3>` for an error, which the journal takes as the entry's priority), or
//! for a terminal with the level spelled out.
//!
//! Every call is one line: the caller's uid and pid, the method and the outcome (the
//! allocation's id, or the error's name). Parameters are never logged: a call may carry what
//! is not ours to write down (a key's payload, once keys are served).

use std::fmt;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use serde_json::Value;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

pub use tracing::level_filters::LevelFilter;

use crate::methods::Caller;
use credns_varlink::ErrorReply;

/// Whether stderr is the journal's stream: `JOURNAL_STREAM` (`DEV:INODE`, set by systemd for a
/// unit whose output goes to the journal) names the file stderr is. A child whose stderr was
/// redirected keeps the variable but not the stream, hence the comparison.
pub fn stderr_is_journal() -> bool {
    let Ok(v) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some(fd) = std::io::stderr().as_fd().try_clone_to_owned().ok() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(fd).metadata() else {
        return false;
    };
    journal_stream_is(&v, meta.dev(), meta.ino())
}

/// Whether a `JOURNAL_STREAM` value names the file `dev`, `ino`.
pub fn journal_stream_is(value: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = value.split_once(':') else {
        return false;
    };
    d.parse() == Ok(dev) && i.parse() == Ok(ino)
}

/// The syslog priority of a level (`sd-daemon(3)`'s `SD_ERR`...`SD_DEBUG`).
pub fn syslog_priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// One line per event: `<6>message key=value...` for the journal, `INFO message key=value...`
/// otherwise.
#[derive(Debug)]
struct Line {
    journal: bool,
}

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = event.metadata().level();
        if self.journal {
            write!(w, "<{}>", syslog_priority(level))?;
        } else {
            write!(w, "credns: {level}: ")?;
        }
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// Send this process's `tracing` events at `level` and above to stderr, with priority
/// prefixes when stderr is the journal. Once per process; later calls change nothing. For a
/// command: a line is written before the call that logs it returns.
pub fn init(level: LevelFilter) {
    let journal = stderr_is_journal();
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .event_format(Line { journal })
        .try_init();
}

/// Lines the daemon's log holds while stderr is not keeping up; more are dropped.
const QUEUED_LINES: usize = 4096;

/// Keeps the daemon's log thread; dropping it writes what is queued (waiting a second at most).
#[derive(Debug)]
#[must_use = "dropping it stops the log"]
pub struct LogGuard(#[allow(dead_code)] tracing_appender::non_blocking::WorkerGuard);

/// [`init`] for the daemon: lines go through a bounded queue to a thread that writes them, and
/// are dropped when it is full. A reader of stderr that falls behind (the journal under load)
/// or stops (a pipe nobody reads) then costs log lines, never a stalled call: every call logs.
pub fn init_daemon(level: LevelFilter) -> LogGuard {
    let journal = stderr_is_journal();
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("credns-log")
        .finish(std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(writer)
        .event_format(Line { journal })
        .try_init();
    LogGuard(guard)
}

/// What a reply says in the log: the allocation's id, how many records, or "ok".
fn outcome(reply: &Value) -> String {
    if let Some(id) = reply.pointer("/allocation/id") {
        return format!("allocation {id}");
    }
    for (key, what) in [("allocations", "allocations"), ("holders", "holders")] {
        if let Some(v) = reply.get(key).and_then(Value::as_array) {
            return format!("{} {what}", v.len());
        }
    }
    "ok".into()
}

/// Whether an error is the daemon's fault rather than the caller's.
fn is_ours(e: &ErrorReply) -> bool {
    e.error.ends_with(".Internal") || e.error.ends_with(".StoreUnavailable")
}

/// The line of one call: who asked, what, and the outcome (never the parameters).
pub(crate) fn call(interface: &str, method: &str, caller: Caller, r: &Result<Value, ErrorReply>) {
    let (uid, pid) = (caller.uid, caller.pid.0);
    match r {
        Ok(reply) => tracing::info!(
            uid,
            pid,
            method = %format_args!("{interface}.{method}"),
            outcome = %outcome(reply),
            "call"
        ),
        Err(e) if is_ours(e) => tracing::error!(
            uid,
            pid,
            method = %format_args!("{interface}.{method}"),
            error = %e.error,
            reason = %reason(e),
            "call failed"
        ),
        Err(e) => tracing::info!(
            uid,
            pid,
            method = %format_args!("{interface}.{method}"),
            error = %e.error,
            "call refused"
        ),
    }
}

/// The human message or reason an error carries (every io.credns.Registry error has one).
fn reason(e: &ErrorReply) -> String {
    e.parameters
        .get("reason")
        .or_else(|| e.parameters.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_names_dev_and_inode() {
        assert!(journal_stream_is("8:1234", 8, 1234));
        assert!(!journal_stream_is("8:1234", 8, 1235));
        assert!(!journal_stream_is("8", 8, 1234));
        assert!(!journal_stream_is("x:y", 8, 1234));
    }

    #[test]
    fn outcomes_name_the_allocation_or_count() {
        let v = serde_json::json!({"allocation": {"id": 7}, "fresh": true});
        assert_eq!(outcome(&v), "allocation 7");
        let v = serde_json::json!({"allocations": [1, 2]});
        assert_eq!(outcome(&v), "2 allocations");
        assert_eq!(outcome(&serde_json::json!({})), "ok");
    }

    #[test]
    fn priorities_follow_syslog() {
        assert_eq!(syslog_priority(&Level::ERROR), 3);
        assert_eq!(syslog_priority(&Level::WARN), 4);
        assert_eq!(syslog_priority(&Level::INFO), 6);
        assert_eq!(syslog_priority(&Level::DEBUG), 7);
    }
}
