//! `/etc/subuid` and `/etc/subgid`: subordinate id ranges, as shadow reads them.
//!
//! Each line is `owner:start:count`: the owner is a user (or group) name or a numeric id, and the
//! owner may use the ids `start..start+count`. An owner may have several lines.
//!
//! # What shadow does (lib/commonio.c, lib/subordinateio.c)
//!
//! `commonio_open` reads the file line by line, strips the final `'\n'` and hands each line to
//! `subordinate_parse`, except lines starting with `+` or `-` (NIS entries), which are kept
//! unparsed. `subordinate_parse`:
//!
//! * fails for a line of 1024 bytes or more;
//! * splits at the first two `:`; with fewer than three fields, or an empty one, it fails. A third
//!   `:` and anything after it are silently ignored (`a:1:2:junk` reads as `a:1:2`);
//! * reads start and count with `str2ul`: `strtoul` in base 0, so `0x10` is hexadecimal and
//!   `0100` is *octal* 64; leading whitespace and a `+` are accepted, a negative number, trailing
//!   text (a `\r` of a DOS line ending included) or a value past `ULONG_MAX` fails.
//!
//! A line that fails is **not an error**: it is kept as an unparsed entry, which every lookup
//! skips and which is written back unchanged. There is no comment syntax: `# text` simply fails to
//! parse, while `#name:1:2` is a valid range for an owner called `#name`. A count of 0 parses but
//! grants nothing; ranges are not checked against 2^32.
//!
//! # What this parser does
//!
//! [`SubidFile::parse`] is strict: blank lines and lines whose first non-blank character is `#`
//! are comments; every other line must be `owner:start:count` with plain decimal numbers (no
//! sign, no whitespace, no leading zero), a non-empty owner without whitespace that does not
//! start with `+` or `-`, a count of at least 1, and a range that ends at or below 4294967295.
//! Anything else is an error naming the line, the column and the rule (and what shadow would do).
//!
//! [`SubidFile::parse_lenient`] reads a file as shadow does, number syntax included, and returns
//! the lines it skipped (with the strict parser's complaint) beside the file.
//!
//! # Matching owners
//!
//! [`SubidFile::ranges_for`] matches as shadow's `list_owner_ranges` (libsubid, `getsubids`):
//! an entry belongs to a user if its owner string equals the user's name, or equals the user's
//! uid printed in decimal. (`newuidmap`'s `find_range` also accepts an owner that is *another
//! name* with the same uid, which needs the passwd database and is not modelled here.)

use std::fmt;

use serde::Serialize;

use crate::rangeset::{IdRange, IdRangeSet};
use crate::Error;

use super::syntax;

/// Lines of this many bytes or more are rejected by shadow (`rangebuf[1024]`).
pub const SHADOW_MAX_LINE: usize = 1024;

/// The owner field of a line.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SubidOwner {
    /// A user or group name (anything that is not a canonical decimal id).
    Name(String),
    /// A numeric id written in canonical decimal (no leading zero), at most 4294967295.
    Id(u32),
}

impl SubidOwner {
    /// Classify an owner field: canonical decimal numbers are ids, everything else a name.
    ///
    /// `"01000"` stays a name: shadow compares owner strings with the uid printed by `"%u"`, so
    /// it never matches uid 1000.
    pub fn from_field(s: &str) -> Self {
        let canonical = !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit())
            && (s == "0" || !s.starts_with('0'));
        match s.parse::<u32>() {
            Ok(id) if canonical => SubidOwner::Id(id),
            _ => SubidOwner::Name(s.to_owned()),
        }
    }

    /// Whether this owner is the user `name` or the user with `uid`, as `list_owner_ranges` matches.
    pub fn matches(&self, name: Option<&str>, uid: Option<u32>) -> bool {
        match self {
            SubidOwner::Name(n) => name == Some(n.as_str()),
            SubidOwner::Id(i) => uid == Some(*i) || name.is_some_and(|n| n == i.to_string()),
        }
    }
}

impl fmt::Display for SubidOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubidOwner::Name(n) => f.write_str(n),
            SubidOwner::Id(i) => write!(f, "{i}"),
        }
    }
}

/// One `owner:start:count` line.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct SubidEntry {
    /// Who may use the range.
    pub owner: SubidOwner,
    /// First subordinate id.
    pub start: u32,
    /// Number of ids; at least 1, and `start + count <= 2^32`.
    pub count: u32,
    /// 1-based line in the file.
    pub line: usize,
}

impl SubidEntry {
    /// The ids of this entry.
    pub fn range(&self) -> IdRange {
        IdRange::from_start_len(self.start, self.count as u64)
            .expect("a parsed entry has a non-empty range below 2^32")
    }
}

impl fmt::Display for SubidEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.owner, self.start, self.count)
    }
}

/// A parsed `/etc/subuid` or `/etc/subgid`.
///
/// `Display` writes the file back: entries as `owner:start:count` and the other lines verbatim,
/// in line order, each ending in `'\n'`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SubidFile {
    /// The ranges, in file order.
    pub entries: Vec<SubidEntry>,
    /// Every other line (comments, blank lines and, after [`SubidFile::parse_lenient`], lines
    /// shadow skips), verbatim with its 1-based line number.
    pub other_lines: Vec<(usize, String)>,
}

/// What a strict parse of one line gave.
enum Line {
    Other,
    Entry(SubidEntry),
}

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Check a start or count field strictly; `col` is its 1-based column.
fn strict_number(
    source: &str,
    line: usize,
    col: usize,
    what: &str,
    field: &str,
) -> Result<u32, Error> {
    let b = field.as_bytes();
    if b.is_empty() {
        return Err(syntax(source, line, col, format!("{what} is empty")));
    }
    if let Some(i) = b.iter().position(|&c| !c.is_ascii_digit()) {
        let msg = if b.len() > 2 && b[0] == b'0' && (b[1] | 0x20) == b'x' {
            format!("{what} {field:?} is hexadecimal: shadow reads it, but write it in decimal")
        } else if is_c_space(b[i]) {
            format!("{what} {field:?} contains whitespace: write plain decimal digits")
        } else {
            format!("{what} must be a decimal number, found {field:?}")
        };
        return Err(syntax(source, line, col + i, msg));
    }
    if b.len() > 1 && b[0] == b'0' {
        return Err(syntax(
            source,
            line,
            col,
            format!(
                "{what} {field} has a leading zero: shadow reads it as octal; write it in decimal"
            ),
        ));
    }
    field.parse::<u32>().map_err(|_| {
        syntax(
            source,
            line,
            col,
            format!("{what} {field} is larger than 4294967295"),
        )
    })
}

fn strict_line(source: &str, line_no: usize, line: &str) -> Result<Line, Error> {
    let trimmed = line.trim_start_matches(|c: char| c.is_ascii() && is_c_space(c as u8));
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(Line::Other);
    }
    if line.len() >= SHADOW_MAX_LINE {
        return Err(syntax(
            source,
            line_no,
            SHADOW_MAX_LINE,
            format!(
                "line is {} bytes long: shadow ignores lines of 1024 bytes or more",
                line.len()
            ),
        ));
    }
    if line.ends_with('\r') {
        return Err(syntax(
            source,
            line_no,
            line.len(),
            "carriage return at the end of the line (DOS line ending): shadow ignores this line",
        ));
    }
    let colons: Vec<usize> = line.match_indices(':').map(|(i, _)| i).collect();
    if colons.len() < 2 {
        return Err(syntax(
            source,
            line_no,
            line.len() + 1,
            format!(
                "expected owner:start:count, found {} field{}",
                colons.len() + 1,
                if colons.is_empty() { "" } else { "s" }
            ),
        ));
    }
    if colons.len() > 2 {
        return Err(syntax(
            source,
            line_no,
            colons[2] + 1,
            format!(
                "expected owner:start:count, found {} fields (shadow ignores the rest)",
                colons.len() + 1
            ),
        ));
    }
    let owner = &line[..colons[0]];
    let start_f = &line[colons[0] + 1..colons[1]];
    let count_f = &line[colons[1] + 1..];
    if owner.is_empty() {
        return Err(syntax(source, line_no, 1, "owner is empty"));
    }
    if owner.starts_with(['+', '-']) {
        return Err(syntax(
            source,
            line_no,
            1,
            "owner starts with '+' or '-': shadow takes the line for a NIS entry and ignores it",
        ));
    }
    if let Some(i) = owner.find(char::is_whitespace) {
        return Err(syntax(
            source,
            line_no,
            i + 1,
            format!("owner {owner:?} contains whitespace"),
        ));
    }
    let start_col = colons[0] + 2;
    let count_col = colons[1] + 2;
    let start = strict_number(source, line_no, start_col, "start", start_f)?;
    let count = strict_number(source, line_no, count_col, "count", count_f)?;
    if count == 0 {
        return Err(syntax(
            source,
            line_no,
            count_col,
            "count is 0: the range is empty",
        ));
    }
    if start as u64 + count as u64 > 1 << 32 {
        return Err(syntax(
            source,
            line_no,
            count_col,
            format!("range {start}+{count} wraps past 4294967295"),
        ));
    }
    Ok(Line::Entry(SubidEntry {
        owner: SubidOwner::from_field(owner),
        start,
        count,
        line: line_no,
    }))
}

/// `strtoul(s, &end, 0)` of a whole field with shadow's `str2ul` checks: leading C whitespace, an
/// optional sign, `0x` hex or `0` octal or decimal, no trailing text, no overflow, not negative.
fn shadow_str2ul(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && is_c_space(b[i]) {
        i += 1;
    }
    let neg = match b.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let (radix, digits_at) = if b.get(i) == Some(&b'0')
        && matches!(b.get(i + 1), Some(b'x' | b'X'))
        && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
    {
        (16, i + 2)
    } else if b.get(i) == Some(&b'0') {
        (8, i)
    } else {
        (10, i)
    };
    let rest = &s[digits_at..];
    let end = rest
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(rest.len());
    if end == 0 || end != rest.len() {
        return None;
    }
    let v = u64::from_str_radix(&rest[..end], radix).ok()?;
    // strtou_noneg: strtol(s) < 0 fails, so only "-0" survives a minus sign.
    if neg && v != 0 {
        return None;
    }
    Some(v)
}

/// `subordinate_parse`: `Some((owner, start, count))` if shadow accepts the line.
fn shadow_parse(line: &str) -> Option<(&str, u64, u64)> {
    let line = line.split('\0').next().unwrap_or("");
    if line.starts_with(['+', '-']) || line.len() >= SHADOW_MAX_LINE {
        return None;
    }
    let mut parts = line.splitn(3, ':');
    let owner = parts.next()?;
    let start = parts.next()?;
    let count = parts.next()?;
    let count = count.split(':').next().unwrap_or("");
    if owner.is_empty() || start.is_empty() || count.is_empty() {
        return None;
    }
    Some((owner, shadow_str2ul(start)?, shadow_str2ul(count)?))
}

impl SubidFile {
    /// Parse strictly (see the module docs): any line that is not a comment, blank or a valid
    /// `owner:start:count` is an error.
    ///
    /// ```
    /// use credns_idmap::formats::SubidFile;
    /// let f = SubidFile::parse("# ranges\nalice:100000:65536\n1001:165536:65536\n", "/etc/subuid").unwrap();
    /// assert_eq!(f.ranges_for(Some("alice"), Some(1000)).to_string(), "100000-165535");
    /// assert_eq!(f.ranges_for(Some("bob"), Some(1001)).to_string(), "165536-231071");
    /// assert_eq!(f.to_string(), "# ranges\nalice:100000:65536\n1001:165536:65536\n");
    /// let e = SubidFile::parse("alice:0100000:65536\n", "/etc/subuid").unwrap_err();
    /// assert_eq!(
    ///     e.to_string(),
    ///     "/etc/subuid:1:7: start 0100000 has a leading zero: shadow reads it as octal; write it in decimal"
    /// );
    /// ```
    pub fn parse(text: &str, source_name: &str) -> Result<SubidFile, Error> {
        let mut file = SubidFile::default();
        for (i, line) in lines(text) {
            match strict_line(source_name, i, line)? {
                Line::Other => file.other_lines.push((i, line.to_owned())),
                Line::Entry(e) => file.entries.push(e),
            }
        }
        Ok(file)
    }

    /// Parse as shadow does: a line shadow accepts becomes an entry (its numbers read as
    /// `strtoul` base 0 reads them), every other line is kept verbatim in `other_lines`. The
    /// second value lists, for each line the strict parser rejects, its complaint; lines shadow
    /// accepts but that cannot be a range of 32-bit ids (a count of 0, a value past 4294967295,
    /// a range past 2^32) are skipped and listed too.
    ///
    /// Differences from shadow that remain: a line holding a NUL byte is cut there (as C
    /// strings are), and a `#` line shadow would accept (`#name:1:2`) is an entry here as there.
    pub fn parse_lenient(text: &str, source_name: &str) -> (SubidFile, Vec<Error>) {
        let mut file = SubidFile::default();
        let mut skipped = Vec::new();
        for (i, line) in lines(text) {
            let strict = strict_line(source_name, i, line);
            let shadow = shadow_parse(line);
            match (strict, shadow) {
                (Ok(Line::Entry(e)), _) => file.entries.push(e),
                (Ok(Line::Other), None) => file.other_lines.push((i, line.to_owned())),
                (strict, Some((owner, start, count))) => {
                    let fits = start <= u32::MAX as u64 && count >= 1 && start + count <= 1 << 32;
                    if fits {
                        file.entries.push(SubidEntry {
                            owner: SubidOwner::from_field(owner),
                            start: start as u32,
                            count: count as u32,
                            line: i,
                        });
                    } else {
                        file.other_lines.push((i, line.to_owned()));
                    }
                    if let Err(e) = strict {
                        skipped.push(e);
                    } else if !fits {
                        skipped.push(syntax(
                            source_name,
                            i,
                            1,
                            format!("range {start}+{count} is not a range of 32-bit ids"),
                        ));
                    }
                }
                (Err(e), None) => {
                    file.other_lines.push((i, line.to_owned()));
                    skipped.push(e);
                }
            }
        }
        (file, skipped)
    }

    /// Append an entry on a new last line.
    pub fn push(&mut self, owner: SubidOwner, start: u32, count: u32) {
        let line = self.last_line() + 1;
        self.entries.push(SubidEntry {
            owner,
            start,
            count,
            line,
        });
    }

    fn last_line(&self) -> usize {
        let a = self.entries.iter().map(|e| e.line).max().unwrap_or(0);
        let b = self.other_lines.iter().map(|l| l.0).max().unwrap_or(0);
        a.max(b)
    }

    /// The entries of the user `name` and/or `uid`, in file order, as `list_owner_ranges` finds
    /// them: owner string equal to the name, or to the uid in decimal.
    pub fn entries_for<'a>(
        &'a self,
        name: Option<&'a str>,
        uid: Option<u32>,
    ) -> impl Iterator<Item = &'a SubidEntry> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.owner.matches(name, uid))
    }

    /// The subordinate ids of the user `name` and/or `uid` (union of its entries).
    pub fn ranges_for(&self, name: Option<&str>, uid: Option<u32>) -> IdRangeSet {
        IdRangeSet::from_ranges(self.entries_for(name, uid).map(SubidEntry::range))
    }

    /// Every id some entry delegates.
    pub fn all_ranges(&self) -> IdRangeSet {
        IdRangeSet::from_ranges(self.entries.iter().map(SubidEntry::range))
    }
}

/// Lines as `fgets` sees them, 1-based: split on `'\n'`, without a last empty piece.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let empty = text.is_empty();
    body.split('\n')
        .enumerate()
        .filter(move |_| !empty)
        .map(|(i, l)| (i + 1, l))
}

impl fmt::Display for SubidFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut all: Vec<(usize, String)> = self
            .entries
            .iter()
            .map(|e| (e.line, e.to_string()))
            .collect();
        all.extend(self.other_lines.iter().cloned());
        all.sort_by_key(|l| l.0);
        for (_, l) in all {
            writeln!(f, "{l}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_numbers() {
        assert_eq!(shadow_str2ul("100000"), Some(100000));
        assert_eq!(shadow_str2ul("0100"), Some(64));
        assert_eq!(shadow_str2ul("0x10"), Some(16));
        assert_eq!(shadow_str2ul(" +7"), Some(7));
        assert_eq!(shadow_str2ul("-0"), Some(0));
        assert_eq!(shadow_str2ul("-1"), None);
        assert_eq!(shadow_str2ul("7 "), None);
        assert_eq!(shadow_str2ul("7\r"), None);
        assert_eq!(shadow_str2ul("08"), None);
        assert_eq!(shadow_str2ul("0x"), None);
        assert_eq!(shadow_str2ul("0"), Some(0));
        assert_eq!(shadow_str2ul("18446744073709551616"), None);
    }

    #[test]
    fn shadow_lines() {
        assert_eq!(shadow_parse("a:1:2:junk"), Some(("a", 1, 2)));
        assert_eq!(shadow_parse("#a:1:2"), Some(("#a", 1, 2)));
        assert_eq!(shadow_parse("+a:1:2"), None);
        assert_eq!(shadow_parse("a:1"), None);
        assert_eq!(shadow_parse("a::2"), None);
        assert_eq!(shadow_parse("# comment"), None);
    }
}
