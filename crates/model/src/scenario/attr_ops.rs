//! The `[[op]]` tables of the attribute operations: `truncate`, `utimes`, `setxattr`.

use serde::Deserialize;
use toml::Spanned;

use super::op_args::OpSpec;
use super::ops::OpCx;
use crate::caps::CapSet;
use crate::ops::{Op, UtimesTimes, XattrAclEntry, XattrValue};
use crate::world::AclTag;
use crate::Error;

/// `truncate`: `length` (default 0).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TruncateArgs {
    pub(super) path: Spanned<String>,
    pub(super) length: Option<Spanned<i64>>,
}

/// `utimes`: `times` is "null" (the default), "now" (both UTIME_NOW), "omit" (both
/// UTIME_OMIT) or "explicit".
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UtimesArgs {
    pub(super) path: Spanned<String>,
    pub(super) times: Option<Spanned<String>>,
}

/// `setxattr`: `name`, then `value` (text) for `user.*`, `trusted.*`, `security.*`; `caps`,
/// `version`, `rootid`, `inheritable`, `effective` for `security.capability`; `acl` for
/// `system.posix_acl_access` and `system.posix_acl_default`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SetxattrArgs {
    pub(super) path: Spanned<String>,
    pub(super) name: Spanned<String>,
    pub(super) value: Option<Spanned<String>>,
    pub(super) caps: Option<Spanned<String>>,
    pub(super) inheritable: Option<Spanned<String>>,
    pub(super) effective: Option<bool>,
    pub(super) version: Option<Spanned<u32>>,
    pub(super) rootid: Option<Spanned<u32>>,
    pub(super) acl: Option<Vec<Spanned<String>>>,
}

impl OpCx<'_, '_> {
    pub(super) fn attr_op(&self, spec: &OpSpec) -> Result<Op, Error> {
        let c = self.c;
        Ok(match spec {
            OpSpec::Truncate(a) => Op::Truncate {
                path: self.path(&a.path)?,
                length: a.length.as_ref().map(|l| *l.get_ref()).unwrap_or(0),
            },
            OpSpec::Utimes(a) => {
                let times = match a.times.as_ref().map(|t| (t.get_ref().as_str(), t.span())) {
                    None | Some(("null", _)) => UtimesTimes::Null,
                    Some(("now", _)) => UtimesTimes::Now,
                    Some(("omit", _)) => UtimesTimes::Omit,
                    Some(("explicit", _)) => UtimesTimes::Explicit,
                    Some((other, sp)) => {
                        return Err(c.err(
                            sp,
                            format!("times must be \"null\", \"now\", \"omit\" or \"explicit\", not \"{other}\""),
                        ))
                    }
                };
                Op::Utimes {
                    path: self.path(&a.path)?,
                    times,
                }
            }
            OpSpec::Setxattr(a) => Op::Setxattr {
                path: self.path(&a.path)?,
                name: a.name.get_ref().clone(),
                value: self.xattr_value(a)?,
            },
            _ => unreachable!("dispatched by OpCx::op"),
        })
    }

    /// The value, by the name's kind; the fields of another kind are refused.
    fn xattr_value(&self, a: &SetxattrArgs) -> Result<XattrValue, Error> {
        let c = self.c;
        let name = a.name.get_ref().as_str();
        let caps_fields = a.caps.is_some()
            || a.inheritable.is_some()
            || a.effective.is_some()
            || a.version.is_some()
            || a.rootid.is_some();
        let is_acl = name == "system.posix_acl_access" || name == "system.posix_acl_default";
        let is_caps = name == crate::ops::xattr_caps_name();
        let wrong = |what: &str| {
            c.err(
                a.name.span(),
                format!("setxattr of \"{name}\" does not take {what}"),
            )
        };
        if is_acl {
            if a.value.is_some() || caps_fields {
                return Err(wrong("`value` or capability fields (it takes `acl`)"));
            }
            let Some(entries) = &a.acl else {
                return Err(c.err(a.name.span(), format!("setxattr of \"{name}\" needs `acl`, a list of entries like \"u::rw-\", \"u:1000:r--\"")));
            };
            let mut v = Vec::new();
            for e in entries {
                v.push(acl_entry(self, e)?);
            }
            return Ok(XattrValue::Acl(v));
        }
        if is_caps {
            if a.value.is_some() || a.acl.is_some() {
                return Err(wrong("`value` or `acl` (it takes `caps`, `inheritable`, `effective`, `version`, `rootid`)"));
            }
            let set = |s: &Option<Spanned<String>>| -> Result<CapSet, Error> {
                match s {
                    None => Ok(CapSet::EMPTY),
                    Some(s) => CapSet::parse(s.get_ref()).map_err(|e| c.err(s.span(), e)),
                }
            };
            let version = a.version.as_ref().map(|v| *v.get_ref()).unwrap_or(2);
            if !(1..=3).contains(&version) {
                let sp = a
                    .version
                    .as_ref()
                    .map(|v| v.span())
                    .unwrap_or(a.name.span());
                return Err(c.err(sp, "version must be 1, 2 or 3"));
            }
            if version != 3 && a.rootid.is_some() {
                let sp = a.rootid.as_ref().map(|v| v.span()).unwrap_or(a.name.span());
                return Err(c.err(sp, "only a version 3 value has a rootid"));
            }
            return Ok(XattrValue::Caps {
                version,
                rootid: a.rootid.as_ref().map(|v| *v.get_ref()).unwrap_or(0),
                permitted: set(&a.caps)?,
                inheritable: set(&a.inheritable)?,
                effective: a.effective.unwrap_or(false),
            });
        }
        if caps_fields || a.acl.is_some() {
            return Err(wrong("capability fields or `acl` (it takes `value`)"));
        }
        Ok(XattrValue::Text(
            a.value
                .as_ref()
                .map(|v| v.get_ref().clone())
                .unwrap_or_default(),
        ))
    }
}

/// An ACL entry `TAG:ID:PERMS` with the id in the writer's numbering (a number).
fn acl_entry(cx: &OpCx, e: &Spanned<String>) -> Result<XattrAclEntry, Error> {
    let s = e.get_ref();
    let bad = || {
        cx.c.err(
            e.span(),
            format!("ACL entry \"{s}\": write TAG:ID:PERMS with a numeric id, e.g. \"u::rw-\", \"u:1000:r--\", \"m::r-x\""),
        )
    };
    let parts: Vec<&str> = s.split(':').map(str::trim).collect();
    let [tag, id, p] = parts[..] else {
        return Err(bad());
    };
    let pb = p.as_bytes();
    if pb.len() != 3 {
        return Err(bad());
    }
    let mut perm = 0;
    for (i, (ch, bit)) in [(b'r', 4), (b'w', 2), (b'x', 1)].iter().enumerate() {
        if pb[i] == *ch {
            perm |= bit;
        } else if pb[i] != b'-' {
            return Err(bad());
        }
    }
    let id = if id.is_empty() {
        None
    } else {
        Some(id.parse::<u32>().map_err(|_| bad())?)
    };
    let tag = match (tag, id.is_some()) {
        ("user" | "u", false) => AclTag::UserObj,
        ("user" | "u", true) => AclTag::User,
        ("group" | "g", false) => AclTag::GroupObj,
        ("group" | "g", true) => AclTag::Group,
        ("mask" | "m", false) => AclTag::Mask,
        ("other" | "o", false) => AclTag::Other,
        _ => return Err(bad()),
    };
    Ok(XattrAclEntry { tag, id, perm })
}

#[cfg(test)]
mod tests {
    use crate::{Errno, Scenario, Verdict};

    fn chown_immutable_on(fs_type: &str) -> Verdict {
        let text = format!(
            "[[filesystem]]\nname = \"x\"\ntype = \"{fs_type}\"\n\n[[mount]]\npath = \"/x\"\nfs = \"x\"\n\n\
             [[file]]\npath = \"/x/f\"\nmode = \"4755\"\nimmutable = true\n\n\
             [[process]]\nname = \"root\"\nuid = 0\n\n[[op]]\nby = \"root\"\nop = \"chown\"\npath = \"/x/f\"\n"
        );
        let s = Scenario::parse(&text, "t.toml").expect("parses");
        s.run().remove(0).outcome.result
    }

    #[test]
    fn immutable_chown_is_decided_by_the_filesystem_type() {
        assert_eq!(chown_immutable_on("tmpfs"), Verdict::Allowed);
        assert_eq!(chown_immutable_on("xfs"), Verdict::Allowed);
        assert_eq!(chown_immutable_on("btrfs"), Verdict::Allowed);
        assert_eq!(chown_immutable_on("ext4"), Verdict::Denied(Errno::EPERM));
        match chown_immutable_on("f2fs") {
            Verdict::Unknown(why) => assert!(why.contains("f2fs"), "{why}"),
            v => panic!("f2fs is not modelled, got {v:?}"),
        }
    }

    fn parse_err(op: &str) -> String {
        let text = format!(
            "[[file]]\npath = \"/f\"\n\n[[process]]\nname = \"p\"\nuid = 0\n\n[[op]]\nby = \"p\"\n{op}\n"
        );
        match Scenario::parse(&text, "t.toml") {
            Ok(_) => panic!("{op} parsed"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bad_attribute_ops_are_refused_with_their_place() {
        let e = parse_err("op = \"utimes\"\npath = \"/f\"\ntimes = \"later\"");
        assert!(
            e.starts_with("t.toml:12:9:") && e.contains("\"later\""),
            "{e}"
        );
        let e = parse_err(
            "op = \"setxattr\"\npath = \"/f\"\nname = \"security.capability\"\nvalue = \"x\"",
        );
        assert!(
            e.starts_with("t.toml:12:8:") && e.contains("does not take"),
            "{e}"
        );
        let e = parse_err("op = \"setxattr\"\npath = \"/f\"\nname = \"system.posix_acl_access\"\nacl = [\"u:x:rw-\"]");
        assert!(
            e.starts_with("t.toml:13:8:") && e.contains("TAG:ID:PERMS"),
            "{e}"
        );
        let e = parse_err("op = \"setxattr\"\npath = \"/f\"\nname = \"security.capability\"\nversion = 2\nrootid = 5");
        assert!(e.contains("only a version 3"), "{e}");
    }
}
