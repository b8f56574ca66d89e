//! Text and JSON formats of ID maps and subordinate-id files.
//!
//! Every parser here takes text (never a path: this crate does no I/O) and the name of its
//! source, and fails with [`Error::Syntax`](crate::Error::Syntax) naming the source, the 1-based
//! line, the 1-based byte column and the rule that was broken, ripgrep style:
//! `/etc/subuid:3:7: start must be a decimal number`. Every format has a printer, and
//! `parse(print(x)) == x`.
//!
//! | module | format | parse | print |
//! |---|---|---|---|
//! | [`proc`] | `/proc/PID/uid_map` as the kernel shows it (`uid_m_show`) | [`parse_proc_map`] | [`IdMap::to_proc_format`](crate::IdMap::to_proc_format) |
//! | [`subid`] | `/etc/subuid`, `/etc/subgid` (shadow's `subordinateio.c`) | [`SubidFile::parse`] | `Display` of [`SubidFile`] |
//! | [`oci`] | OCI runtime spec `linux.uidMappings` / `linux.gidMappings` | [`parse_oci_config`], [`parse_oci_mappings`] | [`oci_mappings_json`], [`set_oci_mappings`] |
//! | [`acl_xattr`] | `system.posix_acl_access` values (binary; errors say which entry) | [`acl_xattr::parse_acl_xattr`] | [`acl_xattr::print_acl_xattr`] |
//! | [`vfs_cap`] | `security.capability` values, revisions 1–3 (binary) | [`vfs_cap::parse_vfs_cap`] | [`vfs_cap::print_vfs_cap`] |
//! | [`mapusers`] | util-linux `unshare --map-users` / `--map-groups` arguments | [`MapUsers::parse`] | [`map_users_args`] |
//!
//! The write format of `uid_map` (what `map_write` accepts) is [`parse_write`](crate::parse_write)
//! and [`IdMap::to_write_format`](crate::IdMap::to_write_format).

pub mod acl_xattr;
pub mod mapusers;
pub mod oci;
pub mod proc;
pub mod subid;
pub mod vfs_cap;

pub use mapusers::{map_users_args, resolve_subid_keyword, MapUsers, MapUsersArg};
pub use oci::{
    oci_mappings_json, parse_oci_config, parse_oci_config_value, parse_oci_mappings,
    parse_oci_mappings_value, set_oci_mappings, OciMappings,
};
pub use proc::{parse_proc_map, proc_map_lines, ProcLineError, ProcLineErrorKind, ProcMapLine};
pub use subid::{SubidEntry, SubidFile, SubidOwner};

use crate::map::{Extent, ExtentRule};
use crate::Error;

/// An [`Error::Syntax`].
pub(crate) fn syntax(
    source_name: &str,
    line: usize,
    column: usize,
    message: impl Into<String>,
) -> Error {
    Error::Syntax {
        source_name: source_name.to_owned(),
        line,
        column,
        message: message.into(),
    }
}

/// The message for an extent that breaks a structural rule, as the formats word it.
pub(crate) fn extent_message(extent: Option<&Extent>, rule: &ExtentRule) -> String {
    match extent {
        Some(e) => format!("extent \"{e}\": {rule}"),
        None => rule.to_string(),
    }
}

/// Why a field is not a plain decimal `u32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumError {
    /// The field is empty.
    Empty,
    /// A byte that is not a digit, at this byte offset in the field.
    NotDigit(usize),
    /// Larger than 4294967295.
    TooLarge,
}

/// Parse a plain decimal `u32` (digits only, no sign, no whitespace).
pub(crate) fn parse_u32(field: &str) -> Result<u32, NumError> {
    if field.is_empty() {
        return Err(NumError::Empty);
    }
    if let Some(i) = field.bytes().position(|b| !b.is_ascii_digit()) {
        return Err(NumError::NotDigit(i));
    }
    let mut v: u64 = 0;
    for b in field.bytes() {
        v = v * 10 + (b - b'0') as u64;
        if v > u32::MAX as u64 {
            return Err(NumError::TooLarge);
        }
    }
    Ok(v as u32)
}

/// Turn a [`NumError`] for the field `what` (starting at 1-based `column`) into a syntax error.
pub(crate) fn num_error(
    source_name: &str,
    line: usize,
    column: usize,
    what: &str,
    field: &str,
    e: NumError,
) -> Error {
    let (column, message) = num_message(column, what, field, e);
    syntax(source_name, line, column, message)
}

/// The column and message of a [`NumError`] for the field `what` starting at 1-based `column`.
pub(crate) fn num_message(column: usize, what: &str, field: &str, e: NumError) -> (usize, String) {
    match e {
        NumError::Empty => (column, format!("{what} is empty")),
        NumError::NotDigit(i) => (
            column + i,
            format!("{what} must be a decimal number, found {:?}", field),
        ),
        NumError::TooLarge => (column, format!("{what} {field} is larger than 4294967295")),
    }
}
