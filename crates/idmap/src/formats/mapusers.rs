//! util-linux `unshare --map-users` / `--map-groups` arguments (sys-utils/unshare.c).
//!
//! Each argument is one of:
//!
//! * `inner:outer:count` — map `count` ids from `outer` (the parent's numbering) to `inner`
//!   (the namespace's), the order of `/proc/PID/uid_map`. This is the syntax since util-linux
//!   2.39 (`sscanf("%u:%u:%u")`, nothing may follow).
//! * `outer,inner,count` — the syntax of 2.38, note the *reversed* order; unshare still accepts
//!   it (deprecated), and so does this parser.
//! * `auto` — the first `/etc/subuid` (`/etc/subgid`) range of the calling user, mapped to
//!   inner ids starting at 0 (2.38+).
//! * `subids` — the same range, identity-mapped (inner = outer) (2.41+).
//! * `all` — every id of the caller's own namespace, identity-mapped: one extent
//!   `first first count` per line of the caller's `/proc/self/uid_map` (2.40+).
//!
//! The keywords need the subid file, the user and the caller's own map: they parse to
//! [`MapUsersArg`] variants that the caller resolves with [`MapUsers::resolve`] (this crate does
//! no I/O). `nsenter` has no such option.
//!
//! Order: unshare prepends each range to a list and then rebuilds the list once more, reversed,
//! in `add_single_map_range`, so the map it writes lists the ranges in argument order (and the
//! lines of `all` in file order). This module keeps that order.
//!
//! Stricter than unshare: `sscanf("%u")` also takes leading whitespace, a sign (`-1` wraps to
//! 4294967295) and truncates numbers past 32 bits; here a number is plain decimal digits. unshare
//! also turns an inner id of 4294967295 into 0 (its marker for `auto`); here that is the
//! kernel's reserved-id error. Combining with `--map-user`/`--map-root-user` (which punches a
//! one-id hole into the ranges) is not modelled.

use std::fmt;

use crate::map::{check_extent, Extent, ExtentRule, IdMap};
use crate::Error;

use super::subid::SubidFile;
use super::{extent_message, num_error, parse_u32, syntax};

/// One `--map-users` / `--map-groups` argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapUsersArg {
    /// `inner:outer:count` (or the 2.38 form `outer,inner,count`) as an extent
    /// `first = inner, lower_first = outer, count`.
    Range(Extent),
    /// `auto`: the user's first subordinate range, mapped from inner id 0.
    Auto,
    /// `subids`: the user's first subordinate range, identity-mapped.
    Subids,
    /// `all`: every id of the caller's own namespace, identity-mapped.
    All,
}

impl fmt::Display for MapUsersArg {
    /// In the current (2.39+) syntax.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapUsersArg::Range(e) => write!(f, "{}:{}:{}", e.first, e.lower_first, e.count),
            MapUsersArg::Auto => f.write_str("auto"),
            MapUsersArg::Subids => f.write_str("subids"),
            MapUsersArg::All => f.write_str("all"),
        }
    }
}

impl MapUsersArg {
    /// Parse one argument. `line` is what errors report as the line (the argument's 1-based
    /// position among several); columns are 1-based bytes within the argument.
    pub fn parse(arg: &str, source_name: &str, line: usize) -> Result<MapUsersArg, Error> {
        match arg {
            "auto" => return Ok(MapUsersArg::Auto),
            "subids" => return Ok(MapUsersArg::Subids),
            "all" => return Ok(MapUsersArg::All),
            _ => {}
        }
        let (sep, names, legacy) = if arg.contains(':') {
            (':', ["inner", "outer", "count"], false)
        } else if arg.contains(',') {
            (',', ["outer", "inner", "count"], true)
        } else {
            return Err(syntax(
                source_name,
                line,
                1,
                format!("expected inner:outer:count, auto, subids or all, found {arg:?}"),
            ));
        };
        let mut fields: Vec<(usize, &str)> = Vec::with_capacity(3);
        let mut col = 1;
        for f in arg.split(sep) {
            fields.push((col, f));
            col += f.len() + 1;
        }
        if fields.len() != 3 {
            let form = if legacy {
                "outer,inner,count"
            } else {
                "inner:outer:count"
            };
            let column = fields.get(3).map_or(arg.len() + 1, |f| f.0 - 1);
            return Err(syntax(
                source_name,
                line,
                column,
                format!(
                    "expected {form}, found {} field{}",
                    fields.len(),
                    if fields.len() == 1 { "" } else { "s" }
                ),
            ));
        }
        let mut v = [0u32; 3];
        for (k, &(c, f)) in fields.iter().enumerate() {
            v[k] = parse_u32(f).map_err(|e| num_error(source_name, line, c, names[k], f, e))?;
        }
        let e = if legacy {
            Extent::new(v[1], v[0], v[2])
        } else {
            Extent::new(v[0], v[1], v[2])
        };
        Ok(MapUsersArg::Range(e))
    }
}

/// Several `--map-users` (or `--map-groups`) arguments, in command-line order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapUsers {
    /// The arguments.
    pub args: Vec<MapUsersArg>,
    /// The source name errors name.
    pub source_name: String,
}

impl MapUsers {
    /// Parse arguments; errors report the argument's 1-based position as the line.
    ///
    /// ```
    /// use credns_idmap::formats::{map_users_args, MapUsers};
    /// let m = MapUsers::parse(&["0:100000:65536", "1000,65536,1"], "--map-users").unwrap();
    /// let map = m.to_idmap().unwrap();
    /// assert_eq!(map.to_write_format(), "0 100000 65536\n65536 1000 1\n");
    /// assert_eq!(map_users_args(&map), ["0:100000:65536", "65536:1000:1"]);
    /// let e = MapUsers::parse(&["0:100000:65536", "1:2"], "--map-users").unwrap_err();
    /// assert_eq!(e.to_string(), "--map-users:2:4: expected inner:outer:count, found 2 fields");
    /// ```
    pub fn parse<S: AsRef<str>>(args: &[S], source_name: &str) -> Result<MapUsers, Error> {
        let args = args
            .iter()
            .enumerate()
            .map(|(i, a)| MapUsersArg::parse(a.as_ref(), source_name, i + 1))
            .collect::<Result<_, _>>()?;
        Ok(MapUsers {
            args,
            source_name: source_name.to_owned(),
        })
    }

    /// Whether some argument is a keyword that needs [`MapUsers::resolve`].
    pub fn needs_resolving(&self) -> bool {
        self.args
            .iter()
            .any(|a| !matches!(a, MapUsersArg::Range(_)))
    }

    /// The map of explicit ranges; an error if a keyword needs resolving or the ranges break a
    /// structural rule (no arguments gives the empty map).
    pub fn to_idmap(&self) -> Result<IdMap, Error> {
        let mut pieces = Vec::with_capacity(self.args.len());
        for (i, a) in self.args.iter().enumerate() {
            match a {
                MapUsersArg::Range(e) => pieces.push((i, *e)),
                kw => {
                    return Err(syntax(
                        &self.source_name,
                        i + 1,
                        1,
                        format!("{kw} needs /etc/subuid or /proc/self/uid_map: resolve it first"),
                    ))
                }
            }
        }
        self.build(pieces)
    }

    /// Resolve the keywords and build the map unshare would write.
    ///
    /// `subids` is the parsed `/etc/subuid` (or `/etc/subgid` for `--map-groups`) and
    /// `subid_source` its name for messages; `user` and `uid` identify the calling user (unshare
    /// uses the passwd entry of its effective uid, for groups too); `own_map` is the caller's own
    /// `/proc/self/uid_map` (or `gid_map`), needed only by `all`.
    pub fn resolve(
        &self,
        subids: &SubidFile,
        subid_source: &str,
        user: &str,
        uid: u32,
        own_map: Option<&IdMap>,
    ) -> Result<IdMap, Error> {
        let mut pieces = Vec::new();
        for (i, a) in self.args.iter().enumerate() {
            match a {
                MapUsersArg::Range(e) => pieces.push((i, *e)),
                MapUsersArg::Auto | MapUsersArg::Subids => {
                    match resolve_subid_keyword(a, subids, user, uid) {
                        Some(e) => pieces.push((i, e)),
                        None => {
                            return Err(syntax(
                                &self.source_name,
                                i + 1,
                                1,
                                format!(
                            "{a}: no line matching user \"{user}\" (uid {uid}) in {subid_source}"
                        ),
                            ))
                        }
                    }
                }
                MapUsersArg::All => match own_map {
                    Some(m) => pieces.extend(
                        m.extents()
                            .iter()
                            .map(|e| (i, Extent::new(e.first, e.first, e.count))),
                    ),
                    None => {
                        return Err(syntax(
                            &self.source_name,
                            i + 1,
                            1,
                            "all: needs the caller's own /proc/self/uid_map (or gid_map)",
                        ))
                    }
                },
            }
        }
        self.build(pieces)
    }

    fn build(&self, pieces: Vec<(usize, Extent)>) -> Result<IdMap, Error> {
        let mut extents: Vec<Extent> = Vec::with_capacity(pieces.len());
        for (n, (i, e)) in pieces.into_iter().enumerate() {
            if n == crate::id::MAX_EXTENTS {
                return Err(syntax(
                    &self.source_name,
                    i + 1,
                    1,
                    extent_message(None, &ExtentRule::TooMany),
                ));
            }
            check_extent(&extents, &e).map_err(|rule| {
                syntax(&self.source_name, i + 1, 1, extent_message(Some(&e), &rule))
            })?;
            extents.push(e);
        }
        if extents.is_empty() {
            return Ok(IdMap::empty());
        }
        Ok(IdMap::from_checked(extents))
    }
}

/// `strtoul(s, NULL, 10)` as glibc computes it: leading whitespace, a sign, digits (none gives
/// 0), saturating at `ULONG_MAX`, negated modulo 2^64 for a minus sign.
fn c_strtoul10(s: &str) -> u64 {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
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
    let mut v: u64 = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        match v
            .checked_mul(10)
            .and_then(|x| x.checked_add((b[i] - b'0') as u64))
        {
            Some(x) => v = x,
            None => return u64::MAX,
        }
        i += 1;
    }
    if neg {
        v.wrapping_neg()
    } else {
        v
    }
}

/// Resolve `auto` or `subids` as unshare's `read_subid_range` does: the *first* entry whose
/// owner equals `user`, or whose owner read by `strtoul(owner, NULL, 10)` equals `uid`; `auto`
/// maps it from inner id 0, `subids` identity-maps it. `None` for no match, or for a `Range` or
/// `All` argument.
///
/// The `strtoul` comparison is unshare's: an owner that does not start with digits reads as 0,
/// so for uid 0 the first entry of *any* named owner matches, and `1000abc` matches uid 1000.
/// Lines the subid parser skipped are not seen (unshare would read them, and exit with an error
/// on a bad number in a matching line).
pub fn resolve_subid_keyword(
    arg: &MapUsersArg,
    subids: &SubidFile,
    user: &str,
    uid: u32,
) -> Option<Extent> {
    let identity = match arg {
        MapUsersArg::Auto => false,
        MapUsersArg::Subids => true,
        _ => return None,
    };
    let e = subids.entries.iter().find(|e| {
        let owner = e.owner.to_string();
        owner == user || c_strtoul10(&owner) == uid as u64
    })?;
    Some(Extent::new(
        if identity { e.start } else { 0 },
        e.start,
        e.count,
    ))
}

/// A map as `--map-users` arguments in the current syntax, one per extent in written order.
pub fn map_users_args(map: &IdMap) -> Vec<String> {
    map.extents()
        .iter()
        .map(|e| MapUsersArg::Range(*e).to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtoul() {
        assert_eq!(c_strtoul10("alice"), 0);
        assert_eq!(c_strtoul10("1000abc"), 1000);
        assert_eq!(c_strtoul10(" +12"), 12);
        assert_eq!(c_strtoul10("-1"), u64::MAX);
        assert_eq!(c_strtoul10("99999999999999999999999"), u64::MAX);
    }
}
