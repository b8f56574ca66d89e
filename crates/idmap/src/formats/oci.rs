//! The OCI runtime spec's user-namespace mappings: `linux.uidMappings` and `linux.gidMappings`.
//!
//! Each is an array of `{"containerID": u32, "hostID": u32, "size": u32}` objects (all three
//! REQUIRED, config-linux.md "User namespace mappings"); an extent is `containerID hostID size`
//! in `uid_map` terms. Unknown properties are ignored, as the spec requires of readers. A `null`
//! or missing array means no mapping (`None`); an empty array is [`IdMap::empty()`]. A non-empty
//! array must obey the kernel's structural rules (no reserved id, no zero count or wrap, no
//! overlap, at most 340 extents), checked in array order as `map_write` checks lines.
//!
//! Errors name the JSON path of the offending value (`linux.uidMappings[2].size`) and, when
//! parsing text, its line and column (serde_json's position for malformed JSON). When parsing a
//! [`serde_json::Value`] there is no text, and line and column are 0.

use serde_json::{Map, Value};

use crate::id::MAX_EXTENTS;
use crate::map::{check_extent, Extent, ExtentRule, IdMap};
use crate::Error;

use super::{extent_message, syntax};

/// The mappings of a config.json.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OciMappings {
    /// `linux.uidMappings`, if present and not null.
    pub uid: Option<IdMap>,
    /// `linux.gidMappings`, if present and not null.
    pub gid: Option<IdMap>,
}

/// One step of a JSON path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn path_string(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    if s.is_empty() {
        s.push_str("(root)");
    }
    s
}

/// Where an error is reported: the source and, when there is text, the text to locate paths in.
struct Ctx<'a> {
    source: &'a str,
    text: Option<&'a str>,
}

impl Ctx<'_> {
    fn err(&self, path: &[Seg], message: impl std::fmt::Display) -> Error {
        let (line, column) = self.text.and_then(|t| locate(t, path)).unwrap_or((0, 0));
        syntax(
            self.source,
            line,
            column,
            format!("{}: {message}", path_string(path)),
        )
    }
}

fn kind_of(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn field_u32(
    ctx: &Ctx,
    obj: &Map<String, Value>,
    path: &mut Vec<Seg>,
    key: &str,
) -> Result<u32, Error> {
    let Some(v) = obj.get(key) else {
        return Err(ctx.err(path, format!("missing required field \"{key}\"")));
    };
    path.push(Seg::Key(key.into()));
    let r = match v.as_u64() {
        Some(n) if n <= u32::MAX as u64 => Ok(n as u32),
        _ => Err(ctx.err(
            path,
            format!("expected an unsigned 32-bit integer, found {}", kind_of(v)),
        )),
    };
    path.pop();
    r
}

fn mappings(ctx: &Ctx, v: &Value, path: &mut Vec<Seg>) -> Result<IdMap, Error> {
    let Value::Array(items) = v else {
        return Err(ctx.err(
            path,
            format!("expected an array of mappings, found {}", kind_of(v)),
        ));
    };
    let mut extents: Vec<Extent> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        path.push(Seg::Index(i));
        let Value::Object(obj) = item else {
            return Err(ctx.err(
                path,
                format!("expected a mapping object, found {}", kind_of(item)),
            ));
        };
        let first = field_u32(ctx, obj, path, "containerID")?;
        let lower_first = field_u32(ctx, obj, path, "hostID")?;
        let count = field_u32(ctx, obj, path, "size")?;
        let e = Extent::new(first, lower_first, count);
        if i == MAX_EXTENTS {
            return Err(ctx.err(path, extent_message(None, &ExtentRule::TooMany)));
        }
        check_extent(&extents, &e)
            .map_err(|rule| ctx.err(path, extent_message(Some(&e), &rule)))?;
        extents.push(e);
        path.pop();
    }
    if extents.is_empty() {
        return Ok(IdMap::empty());
    }
    Ok(IdMap::from_checked(extents))
}

fn config(ctx: &Ctx, v: &Value) -> Result<OciMappings, Error> {
    let Value::Object(root) = v else {
        return Err(ctx.err(
            &[],
            format!("expected a config object, found {}", kind_of(v)),
        ));
    };
    let mut out = OciMappings::default();
    let linux = match root.get("linux") {
        None | Some(Value::Null) => return Ok(out),
        Some(Value::Object(l)) => l,
        Some(other) => {
            return Err(ctx.err(
                &[Seg::Key("linux".into())],
                format!("expected an object, found {}", kind_of(other)),
            ))
        }
    };
    for (key, slot) in [("uidMappings", &mut out.uid), ("gidMappings", &mut out.gid)] {
        match linux.get(key) {
            None | Some(Value::Null) => {}
            Some(v) => {
                let mut path = vec![Seg::Key("linux".into()), Seg::Key(key.into())];
                *slot = Some(mappings(ctx, v, &mut path)?);
            }
        }
    }
    Ok(out)
}

fn parse_json(text: &str, source_name: &str) -> Result<Value, Error> {
    serde_json::from_str(text).map_err(|e| {
        let msg = e.to_string();
        // serde_json appends " at line L column C"; the position goes into the error's fields.
        let msg = match msg.rfind(" at line ") {
            Some(i) => msg[..i].to_owned(),
            None => msg,
        };
        syntax(
            source_name,
            e.line(),
            e.column(),
            format!("invalid JSON: {msg}"),
        )
    })
}

/// Parse the mappings out of the text of a whole config.json.
///
/// ```
/// use credns_idmap::formats::parse_oci_config;
/// let text = r#"{"ociVersion": "1.2.0", "linux": {
///   "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
///   "gidMappings": [{"containerID": 0, "hostID": 100000, "size": -1}]}}"#;
/// let e = parse_oci_config(text, "config.json").unwrap_err();
/// assert_eq!(
///     e.to_string(),
///     "config.json:3:64: linux.gidMappings[0].size: expected an unsigned 32-bit integer, found -1"
/// );
/// ```
pub fn parse_oci_config(text: &str, source_name: &str) -> Result<OciMappings, Error> {
    let v = parse_json(text, source_name)?;
    config(
        &Ctx {
            source: source_name,
            text: Some(text),
        },
        &v,
    )
}

/// Parse the mappings out of a config.json already read into a [`Value`] (positions are 0).
pub fn parse_oci_config_value(
    config_json: &Value,
    source_name: &str,
) -> Result<OciMappings, Error> {
    config(
        &Ctx {
            source: source_name,
            text: None,
        },
        config_json,
    )
}

/// Parse the text of a mapping array alone (`[{"containerID": 0, ...}, ...]`).
pub fn parse_oci_mappings(text: &str, source_name: &str) -> Result<IdMap, Error> {
    let v = parse_json(text, source_name)?;
    mappings(
        &Ctx {
            source: source_name,
            text: Some(text),
        },
        &v,
        &mut Vec::new(),
    )
}

/// Parse a mapping array already read into a [`Value`] (positions are 0; paths start at `[i]`).
pub fn parse_oci_mappings_value(array: &Value, source_name: &str) -> Result<IdMap, Error> {
    mappings(
        &Ctx {
            source: source_name,
            text: None,
        },
        array,
        &mut Vec::new(),
    )
}

/// A map as an OCI mapping array, in written order.
pub fn oci_mappings_json(map: &IdMap) -> Value {
    Value::Array(
        map.extents()
            .iter()
            .map(|e| {
                let mut o = Map::new();
                o.insert("containerID".into(), e.first.into());
                o.insert("hostID".into(), e.lower_first.into());
                o.insert("size".into(), e.count.into());
                Value::Object(o)
            })
            .collect(),
    )
}

/// Set `linux.uidMappings` and/or `linux.gidMappings` of a config.json (`None` leaves a key as
/// it is), creating `linux` if absent and touching nothing else.
///
/// Key order elsewhere is kept only as far as [`serde_json::Map`] keeps it (sorted, unless
/// serde_json's `preserve_order` feature is enabled somewhere in the build).
pub fn set_oci_mappings(
    config_json: &mut Value,
    uid: Option<&IdMap>,
    gid: Option<&IdMap>,
) -> Result<(), Error> {
    let ctx = Ctx {
        source: "config.json",
        text: None,
    };
    let Value::Object(root) = config_json else {
        return Err(ctx.err(
            &[],
            format!("expected a config object, found {}", kind_of(config_json)),
        ));
    };
    let linux = root
        .entry("linux")
        .or_insert_with(|| Value::Object(Map::new()));
    if linux.is_null() {
        *linux = Value::Object(Map::new());
    }
    let Value::Object(linux) = linux else {
        return Err(ctx.err(
            &[Seg::Key("linux".into())],
            format!("expected an object, found {}", kind_of(linux)),
        ));
    };
    if let Some(m) = uid {
        linux.insert("uidMappings".into(), oci_mappings_json(m));
    }
    if let Some(m) = gid {
        linux.insert("gidMappings".into(), oci_mappings_json(m));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Locating a path in JSON text. The text has already been parsed by serde_json, so it is valid;
// the scanner only needs to skip values. Duplicate keys resolve to the last one, as serde_json's
// `Value` keeps the last.

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// End (exclusive) of the string starting at `b[i] == '"'`.
fn skip_string(b: &[u8], mut i: usize) -> usize {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// End (exclusive) of the value starting at `i`.
fn skip_value(b: &[u8], i: usize) -> usize {
    match b.get(i) {
        Some(b'"') => skip_string(b, i),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = skip_string(b, j);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return j + 1;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            b.len()
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                j += 1;
            }
            j
        }
    }
}

/// Byte offset of the value at `path`.
fn locate_offset(text: &str, path: &[Seg]) -> Option<usize> {
    let b = text.as_bytes();
    let mut at = skip_ws(b, 0);
    for seg in path {
        match (seg, b.get(at)) {
            (Seg::Key(want), Some(b'{')) => {
                let mut i = skip_ws(b, at + 1);
                let mut found = None;
                while b.get(i) == Some(&b'"') {
                    let kend = skip_string(b, i);
                    let key: String = serde_json::from_str(&text[i..kend]).ok()?;
                    let colon = skip_ws(b, kend);
                    let v = skip_ws(b, colon + 1);
                    if &key == want {
                        found = Some(v);
                    }
                    i = skip_ws(b, skip_value(b, v));
                    if b.get(i) == Some(&b',') {
                        i = skip_ws(b, i + 1);
                    }
                }
                at = found?;
            }
            (Seg::Index(n), Some(b'[')) => {
                let mut i = skip_ws(b, at + 1);
                for _ in 0..*n {
                    if b.get(i) == Some(&b']') {
                        return None;
                    }
                    i = skip_ws(b, skip_value(b, i));
                    if b.get(i) == Some(&b',') {
                        i = skip_ws(b, i + 1);
                    }
                }
                if matches!(b.get(i), None | Some(b']')) {
                    return None;
                }
                at = i;
            }
            _ => return None,
        }
    }
    Some(at)
}

/// 1-based line and byte column of the value at `path`.
fn locate(text: &str, path: &[Seg]) -> Option<(usize, usize)> {
    let off = locate_offset(text, path)?;
    let before = &text.as_bytes()[..off];
    let line = before.iter().filter(|&&c| c == b'\n').count() + 1;
    let col = off
        - before
            .iter()
            .rposition(|&c| c == b'\n')
            .map_or(0, |p| p + 1)
        + 1;
    Some((line, col))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locator() {
        let t = "{\n \"a\": [1, {\"b\": \"x\\\"]\"}, 3],\n \"a\": [7, 8]\n}";
        let p = |v: Vec<Seg>| locate(t, &v);
        assert_eq!(p(vec![Seg::Key("a".into())]), Some((3, 7)));
        assert_eq!(p(vec![Seg::Key("a".into()), Seg::Index(1)]), Some((3, 11)));
        assert_eq!(p(vec![Seg::Key("a".into()), Seg::Index(2)]), None);
        assert_eq!(p(vec![]), Some((1, 1)));
    }

    #[test]
    fn absent_null_empty() {
        assert_eq!(parse_oci_config("{}", "c").unwrap(), OciMappings::default());
        assert_eq!(
            parse_oci_config(r#"{"linux": {"uidMappings": null}}"#, "c").unwrap(),
            OciMappings::default()
        );
        let m = parse_oci_config(r#"{"linux": {"uidMappings": []}}"#, "c").unwrap();
        assert_eq!(m.uid, Some(IdMap::empty()));
        assert_eq!(m.gid, None);
    }
}
