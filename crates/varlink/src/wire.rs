//! The varlink wire format: NUL-terminated JSON objects, calls and replies, error replies.

use serde::Serialize;
use serde_json::{json, Map, Value};

/// The interface every varlink service provides, answered by the server itself.
pub const SERVICE_INTERFACE: &str = "org.varlink.service";

/// The interface description of `org.varlink.service`.
pub const SERVICE_IDL: &str = r#"# The Varlink Service Interface is provided by every varlink service.
interface org.varlink.service

# Get a list of all the interfaces a service provides and information
# about the implementation.
method GetInfo() -> (
  vendor: string,
  product: string,
  version: string,
  url: string,
  interfaces: []string
)

# Get the description of an interface that is implemented by this service.
method GetInterfaceDescription(interface: string) -> (description: string)

# The requested interface was not found.
error InterfaceNotFound (interface: string)

# The requested method was not found
error MethodNotFound (method: string)

# The interface defines the requested method, but the service does not
# implement it.
error MethodNotImplemented (method: string)

# One of the passed parameters is invalid.
error InvalidParameter (parameter: string)

# Client is denied access
error PermissionDenied ()

# Method is expected to be called with 'more' set to true, but wasn't
error ExpectedMore ()
"#;

/// The name [`ErrorReply::disconnected`] carries. It is never sent: it only tells a method
/// that its caller is gone.
pub const DISCONNECTED: &str = "io.credns.varlink.Disconnected";

/// A varlink error reply: its fully qualified name and its parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorReply {
    /// `org.varlink.service.MethodNotFound`, `io.credns.Registry.QuotaExceeded`, ...
    pub error: String,
    /// Its parameters (an object).
    pub parameters: Value,
}

impl ErrorReply {
    /// `{interface}.{name}` with `parameters`.
    pub fn new(interface: &str, name: &str, parameters: Value) -> Self {
        ErrorReply {
            error: format!("{interface}.{name}"),
            parameters,
        }
    }

    fn service(name: &str, parameters: Value) -> Self {
        Self::new(SERVICE_INTERFACE, name, parameters)
    }

    /// `org.varlink.service.InvalidParameter(parameter)`.
    pub fn invalid_parameter(parameter: &str) -> Self {
        Self::service("InvalidParameter", json!({ "parameter": parameter }))
    }

    /// `org.varlink.service.InvalidParameter(parameter)` with a `message` parameter.
    pub fn invalid_parameter_message(parameter: &str, message: impl Into<String>) -> Self {
        Self::service(
            "InvalidParameter",
            json!({ "parameter": parameter, "message": message.into() }),
        )
    }

    /// `org.varlink.service.MethodNotFound(method)`.
    pub fn method_not_found(method: &str) -> Self {
        Self::service("MethodNotFound", json!({ "method": method }))
    }

    /// `org.varlink.service.MethodNotImplemented(method)`.
    pub fn method_not_implemented(method: &str) -> Self {
        Self::service("MethodNotImplemented", json!({ "method": method }))
    }

    /// `org.varlink.service.InterfaceNotFound(interface)`.
    pub fn interface_not_found(iface: &str) -> Self {
        Self::service("InterfaceNotFound", json!({ "interface": iface }))
    }

    /// `org.varlink.service.PermissionDenied()`.
    pub fn permission_denied() -> Self {
        Self::service("PermissionDenied", json!({}))
    }

    /// `org.varlink.service.ExpectedMore()`.
    pub fn expected_more() -> Self {
        Self::service("ExpectedMore", json!({}))
    }

    /// [`DISCONNECTED`]: what [`Call::reply_continues`](crate::Call::reply_continues) returns
    /// once the caller has gone; a method should stop and return it.
    pub fn disconnected() -> Self {
        ErrorReply {
            error: DISCONNECTED.into(),
            parameters: json!({}),
        }
    }

    /// The unqualified error name (`MethodNotFound`).
    pub fn name(&self) -> &str {
        self.error.rsplit_once('.').map_or(&self.error, |(_, n)| n)
    }

    /// The interface that raised it (`org.varlink.service`).
    pub fn interface(&self) -> &str {
        self.error.rsplit_once('.').map_or("", |(i, _)| i)
    }

    /// A human sentence: the `message` parameter if it is a string, else the name and the
    /// parameters.
    pub fn message(&self) -> String {
        match self.parameters.get("message").and_then(Value::as_str) {
            Some(m) => m.to_string(),
            None => format!("{} {}", self.error, self.parameters),
        }
    }
}

impl std::fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message(), self.error)
    }
}

impl std::error::Error for ErrorReply {}

/// The JSON text of a reply, without its NUL: `{"parameters": ...}` (with `"continues": true`
/// if `continues`) or `{"error": ..., "parameters": ...}`.
pub fn reply_text(r: &Result<Value, ErrorReply>, continues: bool) -> Vec<u8> {
    // Serialized from borrows, keys in the order a JSON object map keeps them (sorted), so a
    // large reply is not copied into a second tree first.
    #[derive(Serialize)]
    struct Reply<'a> {
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        continues: bool,
        parameters: &'a Value,
    }
    #[derive(Serialize)]
    struct Failure<'a> {
        error: &'a str,
        parameters: &'a Value,
    }
    let text = match r {
        Ok(parameters) => serde_json::to_vec(&Reply {
            continues,
            parameters,
        }),
        Err(e) => serde_json::to_vec(&Failure {
            error: &e.error,
            parameters: &e.parameters,
        }),
    };
    text.expect("JSON values serialize")
}

/// A call as it arrives.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The fully qualified method (`io.credns.Registry.Allocate`).
    pub method: String,
    /// Its parameters: an object, or `Null` when absent.
    pub parameters: Value,
    /// No reply wanted.
    pub oneway: bool,
    /// The caller accepts several replies.
    pub more: bool,
    /// The caller asks to switch protocols after the reply (not supported by [`Server`](crate::Server)).
    pub upgrade: bool,
}

/// Parse one message (without its NUL). A message that is not a JSON object is
/// `org.varlink.service.InvalidParameter` with parameter `""` and a `message`; a field of the
/// wrong type (`method` not a string, `parameters` not an object, `oneway`, `more` or
/// `upgrade` not a boolean) is `InvalidParameter` naming that field. Other fields are ignored;
/// `null` counts as absent.
pub fn parse_request(msg: &[u8]) -> Result<Request, ErrorReply> {
    let v: Value = serde_json::from_slice(msg)
        .map_err(|e| ErrorReply::invalid_parameter_message("", format!("not JSON: {e}")))?;
    let Value::Object(mut obj) = v else {
        return Err(ErrorReply::invalid_parameter_message(
            "",
            "a call must be a JSON object",
        ));
    };
    let method = match obj.remove("method") {
        Some(Value::String(m)) => m,
        Some(_) => {
            return Err(ErrorReply::invalid_parameter_message(
                "method",
                "\"method\" must be a string",
            ))
        }
        None => {
            return Err(ErrorReply::invalid_parameter_message(
                "method",
                "a call needs a \"method\"",
            ))
        }
    };
    let parameters = match obj.remove("parameters") {
        None | Some(Value::Null) => Value::Null,
        Some(p @ Value::Object(_)) => p,
        Some(_) => {
            return Err(ErrorReply::invalid_parameter_message(
                "parameters",
                "\"parameters\" must be an object",
            ))
        }
    };
    let flag = |k: &str| match obj.get(k) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ErrorReply::invalid_parameter_message(
            k,
            format!("\"{k}\" must be a boolean"),
        )),
    };
    Ok(Request {
        oneway: flag("oneway")?,
        more: flag("more")?,
        upgrade: flag("upgrade")?,
        parameters,
        method,
    })
}

/// The JSON text of a call, without its NUL. `Null` parameters and false flags are left out.
pub fn request_text(r: &Request) -> Vec<u8> {
    let mut m = Map::new();
    m.insert("method".into(), Value::String(r.method.clone()));
    if !r.parameters.is_null() {
        m.insert("parameters".into(), r.parameters.clone());
    }
    for (k, v) in [
        ("oneway", r.oneway),
        ("more", r.more),
        ("upgrade", r.upgrade),
    ] {
        if v {
            m.insert(k.into(), Value::Bool(true));
        }
    }
    serde_json::to_vec(&Value::Object(m)).expect("JSON values serialize")
}

/// Take the first complete message (up to its NUL, which is dropped) off the front of `buf`;
/// `None` (and `buf` untouched) if there is no NUL yet.
pub fn next_message(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let end = buf.iter().position(|b| *b == 0)?;
    let mut msg: Vec<u8> = buf.drain(..=end).collect();
    msg.pop();
    Some(msg)
}

/// Which top-level parameter made deserializing `params` fail with `err`, if it can be found:
/// the field serde names as missing, else the first field (in the object's order) such that
/// the object cut just after it fails the same way.
pub(crate) fn offending_field<T: serde::de::DeserializeOwned>(
    params: &Map<String, Value>,
    err: &str,
) -> String {
    if let Some(rest) = err.strip_prefix("missing field `") {
        if let Some((name, _)) = rest.split_once('`') {
            return name.to_string();
        }
    }
    let keys: Vec<&String> = params.keys().collect();
    let fails_same = |n: usize| {
        let prefix: Map<String, Value> = params
            .iter()
            .take(n)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        matches!(T::deserialize(&Value::Object(prefix)), Err(e) if e.to_string() == err)
    };
    // The error is the first failure in visiting order: prefixes that contain the offending
    // field fail the same way, shorter ones do not. Binary search for the shortest.
    let (mut lo, mut hi) = (1usize, keys.len());
    if hi == 0 || !fails_same(hi) {
        return String::new();
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if fails_same(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    keys[lo - 1].clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_the_objects_they_stand_for() {
        let p = json!({"allocations": [{"id": 1, "uid": {"start": 524288, "end": 589823}}]});
        let text = |r, c| String::from_utf8(reply_text(&r, c)).unwrap();
        let object = |v: Value| serde_json::to_string(&v).unwrap();
        assert_eq!(
            text(Ok(p.clone()), false),
            object(json!({"parameters": p.clone()}))
        );
        assert_eq!(
            text(Ok(p.clone()), true),
            object(json!({"continues": true, "parameters": p.clone()}))
        );
        let e = ErrorReply {
            error: "io.credns.Registry.NotFound".into(),
            parameters: json!({"id": 7}),
        };
        assert_eq!(
            text(Err(e), false),
            object(json!({"error": "io.credns.Registry.NotFound", "parameters": {"id": 7}}))
        );
    }

    #[test]
    fn parse_names_the_bad_field() {
        let f = |s: &str| parse_request(s.as_bytes()).unwrap_err().parameters["parameter"].clone();
        assert_eq!(f("[1]"), json!(""));
        assert_eq!(f("{"), json!(""));
        assert_eq!(f("{}"), json!("method"));
        assert_eq!(f(r#"{"method": 1}"#), json!("method"));
        assert_eq!(
            f(r#"{"method": "a.B", "parameters": []}"#),
            json!("parameters")
        );
        assert_eq!(f(r#"{"method": "a.B", "oneway": 1}"#), json!("oneway"));
        assert_eq!(f(r#"{"method": "a.B", "more": "x"}"#), json!("more"));
        assert_eq!(f(r#"{"method": "a.B", "upgrade": {}}"#), json!("upgrade"));
        let r = parse_request(br#"{"method": "a.B", "more": true, "x": 1}"#).unwrap();
        assert!(r.more && !r.oneway && !r.upgrade);
        assert_eq!(r.parameters, Value::Null);
    }

    #[test]
    fn error_reply_text() {
        let e = ErrorReply::new("io.x", "Bad", json!({"message": "it broke"}));
        assert_eq!(e.to_string(), "it broke (io.x.Bad)");
        assert_eq!(e.name(), "Bad");
        assert_eq!(e.interface(), "io.x");
        let e = ErrorReply::expected_more();
        assert_eq!(e.message(), "org.varlink.service.ExpectedMore {}");
        assert_eq!(
            reply_text(&Ok(json!({"a": 1})), true),
            br#"{"continues":true,"parameters":{"a":1}}"#.to_vec()
        );
    }

    #[test]
    fn offending_field_found() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct P {
            a: u32,
            b: Option<String>,
            c: u32,
        }
        let check = |v: Value, want: &str| {
            let Value::Object(m) = v else { panic!() };
            let err = serde_json::from_value::<P>(Value::Object(m.clone()))
                .unwrap_err()
                .to_string();
            assert_eq!(offending_field::<P>(&m, &err), want, "{err}");
        };
        check(json!({"a": 1, "b": 5, "c": 2}), "b");
        check(json!({"a": "x", "b": "y", "c": 2}), "a");
        check(json!({"a": 1, "c": -2}), "c");
        check(json!({"a": 1}), "c");
        check(json!({"a": 1, "c": 1, "zz": 0}), "zz");
    }
}
