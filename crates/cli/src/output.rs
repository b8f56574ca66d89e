//! What every command's output shares: JSON keys in snake_case, and user-supplied text
//! (names, labels) printed with terminal controls made visible.

use serde_json::{Map, Value};

/// `camelCase` → `snake_case` (keys already in snake_case are unchanged).
fn snake(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A JSON value with every object key in snake_case: the one naming convention of credns's
/// JSON output. (Varlink messages on the wire keep the interface's camelCase.)
pub fn snake_json(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (snake(&k), snake_json(v)))
                .collect::<Map<_, _>>(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(snake_json).collect()),
        v => v,
    }
}

/// Whether printing `c` raw could change what a terminal shows elsewhere: control characters
/// (C0, DEL, C1: escape sequences, carriage return) and the bidirectional-text controls that
/// reorder what follows them.
fn is_terminal_control(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `s` with terminal controls and backslashes escaped (`\e`-free: `\x1b`, `\u{202e}`, `\\`), so
/// a name or label printed to a terminal shows exactly what it holds.
pub fn escape(s: &str) -> String {
    if !s.chars().any(|c| c == '\\' || is_terminal_control(c)) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x100 && is_terminal_control(c) => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if is_terminal_control(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The error and its causes, each said once: a cause whose text the message already holds
/// (an errno a library error names, a wrapped error shown through) is not repeated.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        // An errno's text names itself again with "(os error N)": said once is enough.
        let bare = text.split(" (os error ").next().unwrap_or(&text);
        if out.contains(bare) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn controls_are_escaped() {
        assert_eq!(escape("web"), "web");
        assert_eq!(escape("a\u{1b}[2Jb"), "a\\x1b[2Jb");
        assert_eq!(escape("x\ry"), "x\\x0dy");
        assert_eq!(escape("\u{202e}evil"), "\\u{202e}evil");
        assert_eq!(escape("\u{1b}]0;title\u{7}"), "\\x1b]0;title\\x07");
        assert_eq!(escape("a\\b"), "a\\\\b");
        assert_eq!(escape("\u{85}"), "\\x85");
    }

    #[test]
    fn causes_are_said_once() {
        let io = std::io::Error::from_raw_os_error(2);
        let e = anyhow::Error::new(io).context("read /x: ENOENT (No such file or directory)");
        assert_eq!(
            error_text(&e),
            "read /x: ENOENT (No such file or directory)"
        );
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_text(&e), "outer: inner");
    }

    #[test]
    fn keys_become_snake_case() {
        let v = serde_json::json!({"userNamespace": {"createdNs": 1}, "asUid": [{"largestFree": 2}], "id": 3});
        assert_eq!(
            snake_json(v),
            serde_json::json!({"user_namespace": {"created_ns": 1}, "as_uid": [{"largest_free": 2}], "id": 3})
        );
    }

    proptest! {
        #[test]
        fn escaped_text_has_no_terminal_controls(s in any::<String>()) {
            let e = escape(&s);
            prop_assert!(!e.chars().any(is_terminal_control), "{:?}", e);
        }
    }
}
