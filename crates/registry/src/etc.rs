//! Pure parsers for `/etc/passwd` and `/etc/group` text. The caller reads the files; errors name
//! the source, the 1-based line and the 1-based column (in characters) of the offending field.
//!
//! Accepted, like glibc's `nss_files`: blank lines and lines starting with `#` are skipped, and so
//! are NIS compat lines (starting with `+` or `-`), which hold no local id of their own (ids from
//! NIS, LDAP or other NSS sources must be added by the caller, for instance as an
//! [`IdRangeSet`](credns_idmap::IdRangeSet)). Everything else must have exactly the standard
//! number of fields, a non-empty name and decimal ids in `0..=4294967294`.

use crate::Error;

/// One line of `/etc/passwd`: `name:password:uid:gid:gecos:home:shell`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswdEntry {
    /// User name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// 1-based line number in the source.
    pub line: usize,
}

/// One line of `/etc/group`: `name:password:gid:member,member,...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupEntry {
    /// Group name.
    pub name: String,
    /// Group id.
    pub gid: u32,
    /// Supplementary members, in file order.
    pub members: Vec<String>,
    /// 1-based line number in the source.
    pub line: usize,
}

/// A line split into fields, each with its 1-based character column.
fn fields(line: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut column = 1;
    for f in line.split(':') {
        out.push((column, f));
        column += f.chars().count() + 1;
    }
    out
}

/// The lines that carry entries: (1-based number, text).
fn entry_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split('\n').enumerate().filter_map(|(i, l)| {
        let l = l.strip_suffix('\r').unwrap_or(l);
        let t = l.trim_start();
        (!(t.is_empty() || t.starts_with('#') || t.starts_with('+') || t.starts_with('-')))
            .then_some((i + 1, l))
    })
}

struct Ctx<'a> {
    source: &'a str,
    line: usize,
}

impl Ctx<'_> {
    fn err(&self, column: usize, message: impl Into<String>) -> Error {
        Error::Syntax {
            source_name: self.source.to_string(),
            line: self.line,
            column,
            message: message.into(),
        }
    }

    fn count(&self, f: &[(usize, &str)], want: usize, what: &str, raw: &str) -> Result<(), Error> {
        if f.len() == want {
            return Ok(());
        }
        let (column, message) = if f.len() < want {
            (
                raw.chars().count() + 1,
                format!("{} fields where {what} has {want}", f.len()),
            )
        } else {
            (
                f[want].0 - 1,
                format!("{} fields where {what} has {want}: unexpected ':'", f.len()),
            )
        };
        Err(self.err(column, message))
    }

    fn name(&self, (column, s): (usize, &str), what: &str) -> Result<String, Error> {
        if s.is_empty() {
            return Err(self.err(column, format!("empty {what} name")));
        }
        if let Some((i, c)) = s
            .char_indices()
            .find(|(_, c)| c.is_whitespace() || c.is_control())
        {
            let col = column + s[..i].chars().count();
            return Err(self.err(col, format!("{what} name contains {c:?}")));
        }
        Ok(s.to_string())
    }

    fn id(&self, (column, s): (usize, &str), what: &str) -> Result<u32, Error> {
        if s.is_empty() {
            return Err(self.err(column, format!("empty {what}")));
        }
        if let Some((i, c)) = s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
            let col = column + s[..i].chars().count();
            return Err(self.err(col, format!("{what} {s:?} is not a decimal number ({c:?})")));
        }
        match s.parse::<u64>() {
            Ok(v) if v < u32::MAX as u64 => Ok(v as u32),
            Ok(v) if v == u32::MAX as u64 => Err(self.err(
                column,
                format!("{what} 4294967295 is (uid_t)-1, never an id"),
            )),
            _ => Err(self.err(column, format!("{what} {s} is beyond 4294967294"))),
        }
    }
}

/// Parse `/etc/passwd` text. `source_name` is used in errors only (e.g. `"/etc/passwd"`).
pub fn parse_passwd(source_name: &str, text: &str) -> Result<Vec<PasswdEntry>, Error> {
    entry_lines(text)
        .map(|(line, raw)| passwd_line(source_name, line, raw))
        .collect()
}

fn passwd_line(source: &str, line: usize, raw: &str) -> Result<PasswdEntry, Error> {
    let cx = Ctx { source, line };
    let f = fields(raw);
    cx.count(&f, 7, "a passwd line", raw)?;
    Ok(PasswdEntry {
        name: cx.name(f[0], "user")?,
        uid: cx.id(f[2], "uid")?,
        gid: cx.id(f[3], "gid")?,
        line,
    })
}

/// Parse `/etc/group` text. `source_name` is used in errors only (e.g. `"/etc/group"`).
pub fn parse_group(source_name: &str, text: &str) -> Result<Vec<GroupEntry>, Error> {
    entry_lines(text)
        .map(|(line, raw)| group_line(source_name, line, raw))
        .collect()
}

fn group_line(source: &str, line: usize, raw: &str) -> Result<GroupEntry, Error> {
    let cx = Ctx { source, line };
    let f = fields(raw);
    cx.count(&f, 4, "a group line", raw)?;
    Ok(GroupEntry {
        name: cx.name(f[0], "group")?,
        gid: cx.id(f[2], "gid")?,
        members: f[3]
            .1
            .split(',')
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .collect(),
        line,
    })
}

/// A decimal id in field `i` of a `:`-separated line, if there is one (for lenient reading).
fn salvage_id(raw: &str, i: usize) -> Option<u32> {
    let v: u64 = raw.split(':').nth(i)?.trim().parse().ok()?;
    (v < u32::MAX as u64).then_some(v as u32)
}

/// Parse `/etc/passwd` leniently and conservatively: a line that does not parse still gives
/// its entry when its uid and gid fields are decimal ids (some reader may take them), named
/// after its first field; every line that does not parse is returned as an error too.
pub fn parse_passwd_lenient(source_name: &str, text: &str) -> (Vec<PasswdEntry>, Vec<Error>) {
    let mut out = (Vec::new(), Vec::new());
    for (line, raw) in entry_lines(text) {
        match passwd_line(source_name, line, raw) {
            Ok(e) => out.0.push(e),
            Err(e) => {
                if let (Some(uid), Some(gid)) = (salvage_id(raw, 2), salvage_id(raw, 3)) {
                    let name = raw.split(':').next().unwrap_or("").to_string();
                    out.0.push(PasswdEntry {
                        name,
                        uid,
                        gid,
                        line,
                    });
                }
                out.1.push(e);
            }
        }
    }
    out
}

/// Parse `/etc/group` leniently and conservatively, as [`parse_passwd_lenient`].
pub fn parse_group_lenient(source_name: &str, text: &str) -> (Vec<GroupEntry>, Vec<Error>) {
    let mut out = (Vec::new(), Vec::new());
    for (line, raw) in entry_lines(text) {
        match group_line(source_name, line, raw) {
            Ok(e) => out.0.push(e),
            Err(e) => {
                if let Some(gid) = salvage_id(raw, 2) {
                    let name = raw.split(':').next().unwrap_or("").to_string();
                    out.0.push(GroupEntry {
                        name,
                        gid,
                        members: Vec::new(),
                        line,
                    });
                }
                out.1.push(e);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syntax(e: Error) -> (String, usize, usize, String) {
        match e {
            Error::Syntax {
                source_name,
                line,
                column,
                message,
            } => (source_name, line, column, message),
            other => panic!("not a syntax error: {other}"),
        }
    }

    #[test]
    fn passwd_parses_standard_lines() {
        let text = "root:x:0:0:root:/root:/bin/bash\n\n# comment\n+@nis::::::\nalice:x:1000:1000:Alice,,,:/home/alice:/bin/sh\r\nbig:x:4294967294:5::/:/sbin/nologin";
        let e = parse_passwd("/etc/passwd", text).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(
            e[0],
            PasswdEntry {
                name: "root".into(),
                uid: 0,
                gid: 0,
                line: 1
            }
        );
        assert_eq!(
            e[1],
            PasswdEntry {
                name: "alice".into(),
                uid: 1000,
                gid: 1000,
                line: 5
            }
        );
        assert_eq!(e[2].uid, 4_294_967_294);
    }

    #[test]
    fn passwd_errors_name_source_line_column() {
        let (src, line, col, msg) =
            syntax(parse_passwd("p", "root:x:0:0::/:/bin/sh\nbob:x:12a:1::/:/bin/sh").unwrap_err());
        assert_eq!((src.as_str(), line, col), ("p", 2, 9));
        assert!(msg.contains("not a decimal"), "{msg}");
        let (_, line, col, msg) = syntax(parse_passwd("p", "bob:x:1:1").unwrap_err());
        assert_eq!((line, col), (1, 10));
        assert!(msg.contains("4 fields"), "{msg}");
        let (_, _, col, msg) =
            syntax(parse_passwd("p", "bob:x:1:1:g:/:/bin/sh:extra").unwrap_err());
        assert_eq!(col, 22);
        assert!(msg.contains("unexpected ':'"), "{msg}");
        let (_, _, col, msg) = syntax(parse_passwd("p", ":x:1:1::/:/bin/sh").unwrap_err());
        assert_eq!(col, 1);
        assert!(msg.contains("empty user name"), "{msg}");
        let (_, _, col, msg) =
            syntax(parse_passwd("p", "bob:x:4294967295:1::/:/bin/sh").unwrap_err());
        assert_eq!(col, 7);
        assert!(msg.contains("(uid_t)-1"), "{msg}");
        let (_, _, col, msg) =
            syntax(parse_passwd("p", "bob:x:1:99999999999::/:/bin/sh").unwrap_err());
        assert_eq!(col, 9);
        assert!(msg.contains("beyond"), "{msg}");
        let (_, _, col, _) = syntax(parse_passwd("p", "bob:x::1::/:/bin/sh").unwrap_err());
        assert_eq!(col, 7);
        let (_, _, col, _) = syntax(parse_passwd("p", "bö b:x:1:1::/:/bin/sh").unwrap_err());
        assert_eq!(col, 3, "columns count characters, not bytes");
        let (_, _, col, _) = syntax(parse_passwd("p", "bob:x:-1:1::/:/bin/sh").unwrap_err());
        assert_eq!(col, 7);
    }

    #[test]
    fn group_parses_members_and_errors() {
        let g = parse_group(
            "/etc/group",
            "root:x:0:\nwheel:x:10:alice,bob\n# x\nusers:x:100:,carol,",
        )
        .unwrap();
        assert_eq!(g.len(), 3);
        assert_eq!(g[1].members, vec!["alice".to_string(), "bob".to_string()]);
        assert_eq!(g[2].members, vec!["carol".to_string()]);
        assert_eq!(g[2].line, 4);
        let (src, line, col, msg) =
            syntax(parse_group("/etc/group", "ok:x:1:\nbad:x:x1:").unwrap_err());
        assert_eq!((src.as_str(), line, col), ("/etc/group", 2, 7));
        assert!(msg.contains("gid"), "{msg}");
        let (_, _, col, _) = syntax(parse_group("g", "bad:x:1").unwrap_err());
        assert_eq!(col, 8);
    }
}
