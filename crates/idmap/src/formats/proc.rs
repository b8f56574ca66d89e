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

use super::{extent_message, num_error, parse_u32, syntax};

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

/// Parse the text of a `/proc/PID/uid_map` (or `gid_map`, `projid_map`) into a map.
///
/// An empty (or all-whitespace) text is [`IdMap::empty()`], a namespace whose map was never
/// written. Extents are kept in the order listed.
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
    for (i, line) in text.split('\n').enumerate() {
        let line_no = i + 1;
        let f = fields(line);
        if f.is_empty() {
            continue;
        }
        if f.len() != 3 {
            let column = f
                .get(3)
                .map_or(line.trim_end_matches(is_space).len() + 1, |&(c, _)| c);
            return Err(syntax(
                source_name,
                line_no,
                column,
                format!(
                    "expected 3 fields (first id, lower id, count), found {}",
                    f.len()
                ),
            ));
        }
        let mut v = [0u32; 3];
        for (k, &(col, field)) in f.iter().enumerate() {
            v[k] = parse_u32(field)
                .map_err(|e| num_error(source_name, line_no, col, FIELDS[k], field, e))?;
        }
        if v[1] == INVALID_ID {
            return Err(syntax(
                source_name,
                line_no,
                f[1].0,
                "lower id 4294967295: this extent's lower ids are not visible from the reader's namespace",
            ));
        }
        let e = Extent::new(v[0], v[1], v[2]);
        if extents.len() == MAX_EXTENTS {
            return Err(syntax(
                source_name,
                line_no,
                f[0].0,
                extent_message(None, &ExtentRule::TooMany),
            ));
        }
        check_extent(&extents, &e).map_err(|rule| {
            syntax(
                source_name,
                line_no,
                f[0].0,
                extent_message(Some(&e), &rule),
            )
        })?;
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
