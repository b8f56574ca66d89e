//! Key routes: which handler answers a container's `request_key` upcalls. Kept in the
//! allocation's record, so they are as durable as it is and go when it is released.
//!
//! A route names a key type, optionally globs on the description and the callout info, and a
//! handler command. [`KeyRoute::check`] is the one validation, done before a route is stored.

use serde::{Deserialize, Serialize};

/// The longest glob (a key description is at most 4095 bytes).
const MAX_GLOB: usize = 4095;
/// A key type's longest name.
const MAX_TYPE: usize = 31;
/// The most words of a handler command, and the most bytes of it.
const MAX_HANDLER_WORDS: usize = 64;
const MAX_HANDLER_BYTES: usize = 4096;
/// The most routes of one allocation.
pub const MAX_ROUTES: usize = 64;
/// The longest a handler may run, in seconds.
pub const MAX_TIMEOUT: u32 = 3600;

/// A shell-style pattern: `*` any run of characters, `?` one character, `\x` the character x.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Glob(String);

/// Why a route (or a glob in it) was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct RouteError {
    /// Which part of the route.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn refuse(field: &'static str, reason: impl Into<String>) -> RouteError {
    RouteError {
        field,
        reason: reason.into(),
    }
}

impl Glob {
    /// Check `s` as a pattern.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("an empty pattern matches nothing; use * for anything".into());
        }
        if s.len() > MAX_GLOB {
            return Err(format!("longer than {MAX_GLOB} bytes"));
        }
        if let Some(c) = s.chars().find(|c| c.is_control()) {
            return Err(format!("control character {:?} in the pattern", c));
        }
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\\' && chars.next().is_none() {
                return Err("a trailing \\ escapes nothing".into());
            }
        }
        Ok(Glob(s.to_string()))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        let p: Vec<char> = self.0.chars().collect();
        let t: Vec<char> = text.chars().collect();
        // Iterative matching with one backtrack point for the last '*': linear in practice,
        // O(len(p) * len(t)) at worst, never exponential.
        let (mut pi, mut ti) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            match p.get(pi) {
                Some('*') => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                Some('?') => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                Some('\\') if p.get(pi + 1) == Some(&t[ti]) => {
                    pi += 2;
                    ti += 1;
                    continue;
                }
                Some(c) if *c != '\\' && *c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
            match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            }
        }
        p[pi..].iter().all(|c| *c == '*')
    }
}

impl TryFrom<String> for Glob {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Glob::parse(&s)
    }
}

impl From<Glob> for String {
    fn from(g: Glob) -> String {
        g.0
    }
}

/// One route of an allocation's upcalls.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRoute {
    /// The key type requested (exact).
    pub key_type: String,
    /// The description's pattern.
    pub description: Glob,
    /// The callout information's pattern.
    pub callout: Glob,
    /// The handler: an absolute path and its arguments.
    pub handler: Vec<String>,
    /// Run the handler inside the container (the requester's user and mount namespaces, as
    /// their root) rather than on the host as the allocation's owner; its path is then one of
    /// the container's.
    #[serde(default)]
    pub inside: bool,
    /// Seconds the handler may take before the key is negated.
    pub timeout: u32,
}

impl KeyRoute {
    /// Check every field; the first refusal names its field.
    pub fn check(&self) -> Result<(), RouteError> {
        let t = &self.key_type;
        if t.is_empty() || t.len() > MAX_TYPE {
            return Err(refuse(
                "type",
                format!("{t:?}: a key type has 1 to {MAX_TYPE} bytes"),
            ));
        }
        if t.starts_with('.') || t == "keyring" {
            return Err(refuse(
                "type",
                format!("{t:?}: not a type request_key constructs"),
            ));
        }
        if t.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(refuse(
                "type",
                format!("{t:?}: no spaces or control characters"),
            ));
        }
        let Some(prog) = self.handler.first() else {
            return Err(refuse("handler", "no command"));
        };
        if !prog.starts_with('/') {
            return Err(refuse(
                "handler",
                format!("{prog:?}: give the program's absolute path (upcalls run with PATH unset)"),
            ));
        }
        let bytes: usize = self.handler.iter().map(|w| w.len() + 1).sum();
        if self.handler.len() > MAX_HANDLER_WORDS || bytes > MAX_HANDLER_BYTES {
            return Err(refuse(
                "handler",
                format!("at most {MAX_HANDLER_WORDS} words and {MAX_HANDLER_BYTES} bytes"),
            ));
        }
        if self.handler.iter().any(|w| w.contains('\0')) {
            return Err(refuse("handler", "a NUL in the command"));
        }
        if self.timeout == 0 || self.timeout > MAX_TIMEOUT {
            return Err(refuse("timeout", format!("1 to {MAX_TIMEOUT} seconds")));
        }
        Ok(())
    }

    /// Whether a request for (`key_type`, `description`, `callout`) takes this route.
    pub fn matches(&self, key_type: &str, description: &str, callout: &str) -> bool {
        self.key_type == key_type
            && self.description.matches(description)
            && self.callout.matches(callout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn g(s: &str) -> Glob {
        Glob::parse(s).unwrap()
    }

    #[test]
    fn globs_match_as_the_shell_does() {
        assert!(g("debug:*").matches("debug:e"));
        assert!(g("debug:*").matches("debug:"));
        assert!(!g("debug:*").matches("debu"));
        assert!(g("*").matches(""));
        assert!(g("a?c").matches("abc"));
        assert!(!g("a?c").matches("ac"));
        assert!(g("*x*y").matches("axbxy"));
        assert!(g("a\\*").matches("a*"));
        assert!(!g("a\\*").matches("ab"));
        assert!(g("é*").matches("été"));
    }

    #[test]
    fn bad_globs_are_refused() {
        assert!(Glob::parse("").is_err());
        assert!(Glob::parse("a\\").unwrap_err().contains("trailing"));
        assert!(Glob::parse("a\nb").unwrap_err().contains("control"));
        assert!(Glob::parse(&"a".repeat(4096)).is_err());
    }

    fn route() -> KeyRoute {
        KeyRoute {
            key_type: "user".into(),
            description: g("debug:*"),
            callout: g("*"),
            handler: vec!["/bin/echo".into(), "hi".into()],
            inside: false,
            timeout: 30,
        }
    }

    #[test]
    fn routes_are_checked_field_by_field() {
        assert_eq!(route().check(), Ok(()));
        let bad = |f: fn(&mut KeyRoute), field: &str| {
            let mut r = route();
            f(&mut r);
            assert_eq!(r.check().unwrap_err().field, field);
        };
        bad(|r| r.key_type = ".request_key_auth".into(), "type");
        bad(|r| r.key_type = "keyring".into(), "type");
        bad(|r| r.key_type = "a b".into(), "type");
        bad(|r| r.handler = vec![], "handler");
        bad(|r| r.handler = vec!["echo".into()], "handler");
        bad(|r| r.handler = vec!["/bin/a\0".into()], "handler");
        bad(|r| r.timeout = 0, "timeout");
        let mut inside = route();
        inside.inside = true;
        assert_eq!(inside.check(), Ok(()));
        assert!(route().matches("user", "debug:e", "a"));
        assert!(!route().matches("logon", "debug:e", "a"));
    }

    #[test]
    fn records_without_routes_read_as_before() {
        let j = serde_json::to_string(&route()).unwrap();
        let back: KeyRoute = serde_json::from_str(&j).unwrap();
        assert_eq!(back, route());
        let bad = j.replace("debug:*", "");
        assert!(serde_json::from_str::<KeyRoute>(&bad).is_err());
    }

    /// A reference matcher: plain recursion, exponential but obviously right.
    fn reference(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|i| reference(rest, &t[i..])),
            Some(('?', rest)) => !t.is_empty() && reference(rest, &t[1..]),
            Some(('\\', rest)) => match (rest.split_first(), t.split_first()) {
                (Some((c, r2)), Some((d, t2))) => c == d && reference(r2, t2),
                _ => false,
            },
            Some((c, rest)) => t.first() == Some(c) && reference(rest, &t[1..]),
        }
    }

    proptest! {
        #[test]
        fn the_matcher_agrees_with_the_reference(p in "[ab*?\\\\]{1,8}", t in "[ab*?]{0,10}") {
            if let Ok(glob) = Glob::parse(&p) {
                let pc: Vec<char> = p.chars().collect();
                let tc: Vec<char> = t.chars().collect();
                prop_assert_eq!(glob.matches(&t), reference(&pc, &tc), "{} ~ {}", p, t);
            }
        }

        #[test]
        fn a_literal_matches_itself(t in "[a-z:.]{1,20}") {
            prop_assert!(g(&t).matches(&t));
        }
    }
}
