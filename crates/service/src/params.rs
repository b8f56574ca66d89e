//! The parameters of each `io.credns.Registry` method, as serde types: unknown fields, wrong
//! types and missing fields are refused by the deserializer, and the refusal names the field.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::errors::invalid;
use credns_api::registry::Range;
use credns_varlink::ErrorReply;

/// `Allocate`'s parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct AllocateParams {
    pub name: Option<String>,
    pub user_namespace_file_descriptor: Option<u64>,
    pub pid_file_descriptor: Option<u64>,
    pub size: Option<u64>,
    #[serde(default)]
    pub high: bool,
    pub label: Option<String>,
    #[serde(default)]
    pub write_maps: bool,
    #[serde(default)]
    pub keyring: bool,
}

/// `AddKeyRoute`'s parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddKeyRouteParams {
    pub id: Option<u64>,
    pub name: Option<String>,
    pub route: credns_api::registry::KeyRouteInfo,
}

/// `RemoveKeyRoute`'s parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RemoveKeyRouteParams {
    pub id: Option<u64>,
    pub name: Option<String>,
    pub index: u64,
}

/// `Keyring`'s parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyringParams {
    pub id: Option<u64>,
    pub name: Option<String>,
    #[serde(default)]
    pub create: bool,
}

/// `Register`'s parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RegisterParams {
    pub name: Option<String>,
    pub user_namespace_file_descriptor: Option<u64>,
    pub pid_file_descriptor: Option<u64>,
    pub uid: Range,
    pub gid: Option<Range>,
    pub label: Option<String>,
}

/// `Release`'s and `Show`'s parameters: exactly one of them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TargetParams {
    pub id: Option<u64>,
    pub name: Option<String>,
}

/// `List`'s parameters: none.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoParams {}

/// `Who`'s parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WhoParams {
    pub id: u64,
}

/// Decode a method's parameters (absent counts as `{}`); a refusal is `InvalidParameter`
/// naming the field (or `parameters` when they are not an object).
pub(crate) fn decode<T: DeserializeOwned>(params: &Value) -> Result<T, ErrorReply> {
    let empty = Value::Object(Default::default());
    let v = match params {
        Value::Null => &empty,
        Value::Object(_) => params,
        _ => return Err(invalid("parameters", "not an object")),
    };
    serde_path_to_error::deserialize(v).map_err(|e| {
        let inner = e.inner().to_string();
        let path = e.path().to_string();
        let field = if path != "." {
            path.split('.').next().unwrap_or(&path).to_string()
        } else {
            // Unknown and missing fields are reported at the top, named in the text.
            inner.split('`').nth(1).unwrap_or("parameters").to_string()
        };
        let reason = match inner.split_once(", expected one of") {
            Some((head, _)) => head.to_string(),
            None => inner,
        };
        invalid(&field, reason)
    })
}
