//! `/proc/PID/uid_map`, `gid_map` and `projid_map` as the kernel shows them.
//!
//! `uid_m_show` prints one extent per line as `"%10u %10u %10u\n"`: the first id inside the
//! namespace, the first lower id *as the reader's namespace numbers it*, and the count. Maps of
//! up to five extents are listed in the order they were written, longer ones sorted by first id.
//! A map that was never written reads as an empty file.
//!
//! The parser is tolerant of layout: fields may be separated and surrounded by any whitespace
//! and blank lines are skipped. It is strict about content: three plain decimal numbers per line,
//! and the extents must obey the kernel's structural rules (`map_write`'s per-extent checks).
//!
//! A lower id of 4294967295 is how the kernel shows a lower range that does not map into the
//! reader's namespace (`from_kuid` gave -1); such a text does not describe a map in any one
//! numbering, so it is an error.
//!
//! Printing is [`IdMap::to_proc_format`] (or [`IdMap::render_proc`] for another reader).

use crate::id::{INVALID_ID, MAX_EXTENTS};
use crate::map::{check_extent, Extent, ExtentRule, IdMap};
use crate::Error;

use super::{extent_message, num_message, parse_u32, syntax};

/// The names of the three columns, for messages.
const FIELDS: [&str; 3] = ["first id", "lower id", "count"];

/// Whitespace between fields: ASCII whitespace and vertical tab (C `isspace`), and any Unicode space.
fn is_space(c: char) -> bool {
    c.is_whitespace() || c == '\x0b'
}

/// Split a line into fields with their 1-based byte columns.
fn fields(line: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    for (i, c) in line.char_indices() {
        match (is_space(c), start) {
            (true, Some(s)) => {
                out.push((s + 1, &line[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s + 1, &line[s..]));
    }
    out
}

/// One line of a `/proc/PID/uid_map` text that holds an extent, before any rule between
/// extents is checked (see [`proc_map_lines`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcMapLine {
    /// 1-based line.
    pub line: usize,
    /// 1-based byte columns of the three fields.
    pub columns: [usize; 3],
    /// The extent the line lists.
    pub extent: Extent,
}

/// What is wrong with one line of a `/proc/PID/uid_map` text.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProcLineErrorKind {
    /// The line does not hold three fields; how many it holds.
    FieldCount(usize),
    /// A field is not a plain decimal `u32`.
    Number {
        /// Which field: 0 first id, 1 lower id, 2 count.
        field: usize,
        /// Its text.
        text: String,
    },
    /// The lower id is 4294967295: the extent's lower ids are not visible from the reader's
    /// namespace.
    LowerNotVisible,
}

/// A line of a `/proc/PID/uid_map` text that is not an extent: where, what, and the message
/// [`parse_proc_map`] words it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcLineError {
    /// 1-based line.
    pub line: usize,
    /// 1-based byte column.
    pub column: usize,
    /// What is wrong.
    pub kind: ProcLineErrorKind,
    /// The message, as in [`Error::Syntax`].
    pub message: String,
}

impl ProcLineError {
    /// The [`Error::Syntax`] for this error in the source `source_name`.
    pub fn into_syntax(self, source_name: &str) -> Error {
        syntax(source_name, self.line, self.column, self.message)
    }
}

/// The lines of a `/proc/PID/uid_map` text that hold extents, in order, each parsed on its own:
/// three plain decimal fields, and a lower id other than 4294967295. Blank lines are skipped.
/// Rules between extents (overlaps, how many) are [`parse_proc_map`]'s, or [`IdMap::new`]'s.
///
/// ```
/// use credns_idmap::formats::{proc_map_lines, ProcLineErrorKind};
/// let mut lines = proc_map_lines("0 1000 1\n\n  5 x 1\n");
/// assert_eq!(lines.next().unwrap().unwrap().extent.lower_first, 1000);
/// let e = lines.next().unwrap().unwrap_err();
/// assert_eq!((e.line, e.column), (3, 5));
/// assert!(matches!(e.kind, ProcLineErrorKind::Number { field: 1, .. }));
/// ```
pub fn proc_map_lines(text: &str) -> impl Iterator<Item = Result<ProcMapLine, ProcLineError>> + '_ {
    text.split('\n')
        .enumerate()
        .filter_map(|(i, line)| parse_line(i + 1, line))
}

/// One line: `None` if it is blank.
fn parse_line(line_no: usize, line: &str) -> Option<Result<ProcMapLine, ProcLineError>> {
    let f = fields(line);
    if f.is_empty() {
        return None;
    }
    let err = |column: usize, kind: ProcLineErrorKind, message: String| ProcLineError {
        line: line_no,
        column,
        kind,
        message,
    };
    if f.len() != 3 {
        let column = f
            .get(3)
            .map_or(line.trim_end_matches(is_space).len() + 1, |&(c, _)| c);
        let message = format!(
            "expected 3 fields (first id, lower id, count), found {}",
            f.len()
        );
        return Some(Err(err(
            column,
            ProcLineErrorKind::FieldCount(f.len()),
            message,
        )));
    }
    let mut v = [0u32; 3];
    for (k, &(col, field)) in f.iter().enumerate() {
        match parse_u32(field) {
            Ok(n) => v[k] = n,
            Err(e) => {
                let (column, message) = num_message(col, FIELDS[k], field, e);
                let kind = ProcLineErrorKind::Number {
                    field: k,
                    text: field.to_owned(),
                };
                return Some(Err(err(column, kind, message)));
            }
        }
    }
    if v[1] == INVALID_ID {
        let message = "lower id 4294967295: this extent's lower ids are not visible from the \
                       reader's namespace";
        let kind = ProcLineErrorKind::LowerNotVisible;
        return Some(Err(err(f[1].0, kind, message.to_owned())));
    }
    Some(Ok(ProcMapLine {
        line: line_no,
        columns: [f[0].0, f[1].0, f[2].0],
        extent: Extent::new(v[0], v[1], v[2]),
    }))
}

/// Parse the text of a `/proc/PID/uid_map` (or `gid_map`, `projid_map`) into a map.
///
/// An empty (or all-whitespace) text is [`IdMap::empty()`], a namespace whose map was never
/// written. Extents are kept in the order listed. Each line is checked whole (as
/// [`proc_map_lines`] does) and against the lines before it before the next line is read.
///
/// ```
/// use credns_idmap::formats::parse_proc_map;
/// let m = parse_proc_map("         0       1000          1\n", "uid_map").unwrap();
/// assert_eq!(m.map_down(0), Some(1000));
/// assert_eq!(parse_proc_map(&m.to_proc_format(), "uid_map").unwrap(), m);
/// let e = parse_proc_map("0 4294967295 1\n", "uid_map").unwrap_err();
/// assert_eq!(
///     e.to_string(),
///     "uid_map:1:3: lower id 4294967295: this extent's lower ids are not visible from the reader's namespace"
/// );
/// ```
pub fn parse_proc_map(text: &str, source_name: &str) -> Result<IdMap, Error> {
    let mut extents: Vec<Extent> = Vec::new();
    for l in proc_map_lines(text) {
        let l = l.map_err(|e| e.into_syntax(source_name))?;
        let (e, column) = (l.extent, l.columns[0]);
        if extents.len() == MAX_EXTENTS {
            let message = extent_message(None, &ExtentRule::TooMany);
            return Err(syntax(source_name, l.line, column, message));
        }
        check_extent(&extents, &e)
            .map_err(|rule| syntax(source_name, l.line, column, extent_message(Some(&e), &rule)))?;
        extents.push(e);
    }
    if extents.is_empty() {
        return Ok(IdMap::empty());
    }
    Ok(IdMap::from_checked(extents))
}

impl IdMap {
    /// Parse the text of `/proc/PID/uid_map`; see [`parse_proc_map`].
    pub fn from_proc_format(text: &str, source_name: &str) -> Result<IdMap, Error> {
        parse_proc_map(text, source_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_layout_and_loose_layout() {
        let m = parse_proc_map(
            "         0     100000      65536\n     65536       1000          1\n",
            "m",
        )
        .unwrap();
        assert_eq!(
            m.extents(),
            &[Extent::new(0, 100000, 65536), Extent::new(65536, 1000, 1)]
        );
        let loose = parse_proc_map("\n\t0 100000\t65536  \r\n\n65536 1000 1", "m").unwrap();
        assert_eq!(loose, m);
        assert_eq!(parse_proc_map("", "m").unwrap(), IdMap::empty());
        assert_eq!(parse_proc_map(" \n\n", "m").unwrap(), IdMap::empty());
    }

    #[test]
    fn errors() {
        let err = |t: &str| parse_proc_map(t, "uid_map").unwrap_err().to_string();
        assert_eq!(
            err("0 1 2 3\n"),
            "uid_map:1:7: expected 3 fields (first id, lower id, count), found 4"
        );
        assert_eq!(
            err("0 1\n"),
            "uid_map:1:4: expected 3 fields (first id, lower id, count), found 2"
        );
        assert_eq!(
            err("0 1 x\n"),
            "uid_map:1:5: count must be a decimal number, found \"x\""
        );
        assert_eq!(
            err("0 -1 1\n"),
            "uid_map:1:3: lower id must be a decimal number, found \"-1\""
        );
        assert_eq!(
            err("0 4294967296 1\n"),
            "uid_map:1:3: lower id 4294967296 is larger than 4294967295"
        );
        assert_eq!(
            err("0 0 0\n"),
            "uid_map:1:1: extent \"0 0 0\": count is zero or the range wraps past 4294967295"
        );
    }
}
