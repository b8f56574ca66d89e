//! Writing a map: the kernel's parser and every check of `map_write` and `new_idmap_permitted`,
//! in the kernel's order, so a refusal names the same rule and errno the kernel would return.

use serde::Serialize;

use crate::errno::Errno;
use crate::id::{IdKind, Kgid, Kuid, MAX_EXTENTS};
use crate::map::{check_extent, Extent, ExtentRule, IdMap};

/// The kernel refuses map writes of a page or more (`count >= PAGE_SIZE`).
pub const MAX_WRITE_BYTES: usize = 4095;

/// `isspace` of the kernel's `lib/ctype.c`: the C locale set plus 0xA0 (Latin-1 no-break space).
fn kernel_isspace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0xa0)
}

/// Where in the written text a parse failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based byte column.
    pub column: usize,
}

/// What the parser expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParseRule {
    /// A number must be followed by whitespace (after the first and second field).
    ExpectedSpaceAfterNumber,
    /// Only whitespace may follow the third number.
    TrailingJunk,
    /// The text has an empty line other than one trailing newline (or is empty).
    EmptyLine,
    /// The line ends after this many of its three fields.
    MissingField {
        /// Fields present (1 or 2).
        present: u8,
    },
}

impl std::fmt::Display for ParseRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ParseRule::ExpectedSpaceAfterNumber => {
                "expected a decimal number followed by whitespace"
            }
            ParseRule::TrailingJunk => "unexpected text after the third number",
            ParseRule::EmptyLine => "empty line (only one trailing newline is allowed)",
            ParseRule::MissingField { present: 1 } => {
                "the line ends after its first number: the lower first id and the count are missing (an extent is FIRST LOWER-FIRST COUNT)"
            }
            ParseRule::MissingField { .. } => {
                "the line ends after two numbers: the count is missing (an extent is FIRST LOWER-FIRST COUNT)"
            }
        })
    }
}

/// The rule of `map_write` that refused a write, in the kernel's order of checking.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "kebab-case")]
pub enum WriteRule {
    /// The initial namespace's map cannot be written.
    InitNamespace,
    /// The opener lives neither in the target namespace nor in its parent.
    OpenerNotInNamespaceOrParent,
    /// The write is not at offset 0.
    NonZeroOffset,
    /// The write is 4096 bytes or longer.
    TooLong {
        /// Bytes written.
        len: usize,
    },
    /// The map was already written (only one write ever succeeds).
    AlreadyWritten,
    /// The opener lacks CAP_SYS_ADMIN in the target namespace.
    NoCapSysAdminInTarget,
    /// A line does not parse.
    Parse {
        /// Where.
        at: Position,
        /// What was expected.
        what: ParseRule,
    },
    /// An extent breaks a structural rule.
    Extent {
        /// 1-based line of the extent.
        line: usize,
        /// The extent as parsed.
        extent: Option<Extent>,
        /// Which structural rule.
        why: ExtentRule,
    },
    /// Mapping parent id 0 needs CAP_SETFCAP over the parent (or, writing one's own map, that
    /// the creator had CAP_SETFCAP when it made the namespace).
    RootMapNeedsSetfcap {
        /// Whether the opener writes its own namespace's map.
        own_namespace: bool,
    },
    /// Not the unprivileged own-id case, and writer or opener lacks CAP_SETUID/CAP_SETGID
    /// in the parent namespace.
    NotPermitted {
        /// The capability that was missing ("CAP_SETUID" or "CAP_SETGID").
        cap: &'static str,
        /// Why the unprivileged single-extent case did not apply.
        unprivileged_case: &'static str,
    },
    /// The lower range of an extent is not inside one extent of the parent's map.
    NotMappedInParent {
        /// 1-based line of the extent.
        line: usize,
        /// The extent.
        extent: Extent,
    },
}

impl WriteRule {
    /// The errno the kernel returns for this refusal.
    pub fn errno(&self) -> Errno {
        match self {
            WriteRule::InitNamespace
            | WriteRule::OpenerNotInNamespaceOrParent
            | WriteRule::AlreadyWritten
            | WriteRule::NoCapSysAdminInTarget
            | WriteRule::RootMapNeedsSetfcap { .. }
            | WriteRule::NotPermitted { .. }
            | WriteRule::NotMappedInParent { .. } => Errno::EPERM,
            WriteRule::NonZeroOffset
            | WriteRule::TooLong { .. }
            | WriteRule::Parse { .. }
            | WriteRule::Extent { .. } => Errno::EINVAL,
        }
    }

    /// Where in the text the refusal points: (line, column), when it points anywhere.
    pub fn position(&self) -> Option<(usize, Option<usize>)> {
        match self {
            WriteRule::Parse { at, .. } => Some((at.line, Some(at.column))),
            WriteRule::Extent { line, .. } | WriteRule::NotMappedInParent { line, .. } => {
                Some((*line, None))
            }
            _ => None,
        }
    }

    /// The kernel function where the check lives.
    pub fn kernel_function(&self) -> &'static str {
        match self {
            WriteRule::InitNamespace | WriteRule::OpenerNotInNamespaceOrParent => {
                "proc_uid_map_write"
            }
            WriteRule::RootMapNeedsSetfcap { .. } => "verify_root_map",
            WriteRule::NotPermitted { .. } => "new_idmap_permitted",
            _ => "map_write",
        }
    }
}

impl std::fmt::Display for WriteRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteRule::InitNamespace => f.write_str("the initial user namespace's map cannot be written"),
            WriteRule::OpenerNotInNamespaceOrParent => {
                f.write_str("the opener must live in the target namespace or its parent")
            }
            WriteRule::NonZeroOffset => f.write_str("maps must be written at offset 0"),
            WriteRule::TooLong { len } => write!(f, "the write is {len} bytes; it must be under 4096"),
            WriteRule::AlreadyWritten => f.write_str("the map was already written; a map is written once"),
            WriteRule::NoCapSysAdminInTarget => f.write_str("the opener lacks CAP_SYS_ADMIN in the target namespace"),
            WriteRule::Parse { what, .. } => write!(f, "{what}"),
            WriteRule::Extent { extent, why, .. } => match extent {
                Some(e) => write!(f, "extent \"{e}\": {why}"),
                None => write!(f, "{why}"),
            },
            WriteRule::RootMapNeedsSetfcap { own_namespace: true } => f.write_str(
                "mapping parent id 0 in one's own namespace needs the creator to have held CAP_SETFCAP when it created the namespace",
            ),
            WriteRule::RootMapNeedsSetfcap { own_namespace: false } => {
                f.write_str("mapping parent id 0 needs CAP_SETFCAP in the parent namespace")
            }
            WriteRule::NotPermitted { cap, unprivileged_case } => write!(
                f,
                "writer and opener both need {cap} in the parent namespace (the unprivileged case does not apply: {unprivileged_case})"
            ),
            WriteRule::NotMappedInParent { extent, .. } => write!(
                f,
                "lower range {}..={} of extent \"{extent}\" is not inside one extent of the parent's map",
                extent.lower_first,
                extent.lower_last()
            ),
        }
    }
}

/// Parse the write format exactly as `map_write` does: lines split on '\n' (one trailing newline
/// allowed), three base-10 numbers per line separated by whitespace, numbers truncated to 32 bits,
/// a NUL byte ending the text. Structural extent rules are checked line by line in kernel order.
pub fn parse_write(text: &[u8]) -> Result<Vec<Extent>, WriteRule> {
    // memdup_user_nul: the kernel sees the text up to the first NUL.
    let text = match text.iter().position(|&b| b == 0) {
        Some(n) => &text[..n],
        None => text,
    };
    let mut extents: Vec<Extent> = Vec::new();
    let mut line_start = 0usize;
    let mut line_no = 0usize;
    loop {
        line_no += 1;
        let rest = &text[line_start..];
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(n) => {
                let next = line_start + n + 1;
                (&rest[..n], (next < text.len()).then_some(next))
            }
            None => (rest, None),
        };
        let mut pos = 0usize;
        let err = |pos: usize, what| WriteRule::Parse {
            at: Position {
                line: line_no,
                column: pos + 1,
            },
            what,
        };
        let skip = |mut p: usize| {
            while p < line.len() && kernel_isspace(line[p]) {
                p += 1;
            }
            p
        };
        let number = |mut p: usize| {
            let mut v: u32 = 0;
            while p < line.len() && line[p].is_ascii_digit() {
                v = v.wrapping_mul(10).wrapping_add((line[p] - b'0') as u32);
                p += 1;
            }
            (v, p)
        };
        let at_space = |p: usize| p < line.len() && kernel_isspace(line[p]);
        pos = skip(pos);
        // A number the line ends right after leaves fields out: the kernel's "whitespace after
        // the number" check fails on the string's end, named here for what is missing.
        let ends_line = |from: usize, p: usize| p > from && p == line.len();
        let (first, p) = number(pos);
        if !at_space(p) || ends_line(pos, p) {
            let rule = if line.is_empty() {
                ParseRule::EmptyLine
            } else if ends_line(pos, p) {
                ParseRule::MissingField { present: 1 }
            } else {
                ParseRule::ExpectedSpaceAfterNumber
            };
            return Err(err(p, rule));
        }
        let from = skip(p);
        let (lower_first, p) = number(from);
        if !at_space(p) || ends_line(from, p) {
            let rule = if ends_line(from, p) {
                ParseRule::MissingField { present: 2 }
            } else {
                ParseRule::ExpectedSpaceAfterNumber
            };
            return Err(err(p, rule));
        }
        let (count, p) = number(skip(p));
        if p < line.len() && !kernel_isspace(line[p]) {
            return Err(err(p, ParseRule::TrailingJunk));
        }
        let p = skip(p);
        if p != line.len() {
            return Err(err(p, ParseRule::TrailingJunk));
        }
        let e = Extent {
            first,
            lower_first,
            count,
        };
        check_extent(&extents, &e).map_err(|rule| WriteRule::Extent {
            line: line_no,
            extent: Some(e),
            why: rule,
        })?;
        if extents.len() + 1 == MAX_EXTENTS && next.is_some() {
            return Err(WriteRule::Extent {
                line: line_no + 1,
                extent: None,
                why: ExtentRule::TooMany,
            });
        }
        extents.push(e);
        match next {
            Some(n) => line_start = n,
            None => break,
        }
    }
    Ok(extents)
}

/// Where the opener of the map file lives relative to the target namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpenerNs {
    /// In the target namespace itself (a process writing its own map after unshare).
    Target,
    /// In the target's parent (as newuidmap or a container manager).
    Parent,
    /// Anywhere else.
    Other,
}

/// The facts `map_write` consults, already evaluated against the namespace tree
/// (the model crate computes them from credentials; callers may also set them directly).
#[derive(Clone, Debug)]
pub struct WriteContext {
    /// Which map.
    pub kind: IdKind,
    /// The target is the initial namespace.
    pub target_is_init: bool,
    /// Where the opener lives.
    pub opener_ns: OpenerNs,
    /// File offset of the write.
    pub offset: u64,
    /// The map already has extents.
    pub already_written: bool,
    /// The opener has CAP_SYS_ADMIN in the target (owner rule included).
    pub opener_cap_sys_admin_in_target: bool,
    /// The target's creator had CAP_SETFCAP in its effective set.
    pub parent_could_setfcap: bool,
    /// The opener has CAP_SETFCAP in the target's parent.
    pub opener_cap_setfcap_in_parent: bool,
    /// The target's owner kuid.
    pub owner: Kuid,
    /// The opener's effective uid.
    pub opener_euid: Kuid,
    /// The opener's effective gid.
    pub opener_egid: Kgid,
    /// The target's setgroups flag is still "allow".
    pub setgroups_allowed: bool,
    /// The writing task has CAP_SETUID (uid map) / CAP_SETGID (gid map) in the parent.
    pub writer_cap_setid_in_parent: bool,
    /// The opener has CAP_SETUID / CAP_SETGID in the parent.
    pub opener_cap_setid_in_parent: bool,
    /// The parent's kernel map (lower ids are kernel ids); the identity for the initial namespace.
    pub parent_map: IdMap,
}

impl WriteContext {
    /// Host root (all capabilities in the initial namespace) writing the map of a child of the
    /// initial namespace that it owns: every permission check passes.
    pub fn host_root(kind: IdKind) -> Self {
        Self {
            kind,
            target_is_init: false,
            opener_ns: OpenerNs::Parent,
            offset: 0,
            already_written: false,
            opener_cap_sys_admin_in_target: true,
            parent_could_setfcap: true,
            opener_cap_setfcap_in_parent: true,
            owner: Kuid(0),
            opener_euid: Kuid(0),
            opener_egid: Kgid(0),
            setgroups_allowed: true,
            writer_cap_setid_in_parent: true,
            opener_cap_setid_in_parent: true,
            parent_map: IdMap::identity(),
        }
    }
}

/// A map write judged as the kernel would: the extents as written (lower ids in the parent's
/// numbering) and the kernel map the namespace gets (lower ids translated to kernel ids).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptedWrite {
    /// Extents as written.
    pub written: IdMap,
    /// The installed kernel map.
    pub kernel: IdMap,
}

/// Judge a write of `text` to a map file, applying every check of `proc_*_map_write`,
/// `map_write`, `verify_root_map` and `new_idmap_permitted` in the kernel's order.
#[doc(alias = "map_write")]
pub fn judge_write(ctx: &WriteContext, text: &[u8]) -> Result<AcceptedWrite, WriteRule> {
    if ctx.target_is_init {
        return Err(WriteRule::InitNamespace);
    }
    if ctx.opener_ns == OpenerNs::Other {
        return Err(WriteRule::OpenerNotInNamespaceOrParent);
    }
    if ctx.offset != 0 {
        return Err(WriteRule::NonZeroOffset);
    }
    if text.len() > MAX_WRITE_BYTES {
        return Err(WriteRule::TooLong { len: text.len() });
    }
    if ctx.already_written {
        return Err(WriteRule::AlreadyWritten);
    }
    let setid = matches!(ctx.kind, IdKind::Uid | IdKind::Gid);
    if setid && !ctx.opener_cap_sys_admin_in_target {
        return Err(WriteRule::NoCapSysAdminInTarget);
    }
    let extents = parse_write(text)?;
    if extents.is_empty() {
        return Err(WriteRule::Extent {
            line: 1,
            extent: None,
            why: ExtentRule::Empty,
        });
    }
    permitted(ctx, &extents)?;
    let mut kernel = Vec::with_capacity(extents.len());
    for (i, e) in extents.iter().enumerate() {
        match ctx.parent_map.map_range_down(e.lower_first, e.count) {
            Some(lower) => kernel.push(Extent {
                lower_first: lower,
                ..*e
            }),
            None => {
                return Err(WriteRule::NotMappedInParent {
                    line: i + 1,
                    extent: *e,
                })
            }
        }
    }
    Ok(AcceptedWrite {
        written: IdMap::from_checked(extents),
        kernel: IdMap::from_checked(kernel),
    })
}

/// `new_idmap_permitted` with `verify_root_map`.
fn permitted(ctx: &WriteContext, extents: &[Extent]) -> Result<(), WriteRule> {
    if ctx.kind == IdKind::Uid && extents.iter().any(|e| e.lower_first == 0) {
        let own = ctx.opener_ns == OpenerNs::Target;
        let ok = if own {
            ctx.parent_could_setfcap
        } else {
            ctx.opener_cap_setfcap_in_parent
        };
        if !ok {
            return Err(WriteRule::RootMapNeedsSetfcap { own_namespace: own });
        }
    }
    let why_not_unprivileged: &'static str = if extents.len() != 1 {
        "more than one extent"
    } else if extents[0].count != 1 {
        "the extent maps more than one id"
    } else if ctx.owner != ctx.opener_euid {
        "the opener's euid is not the namespace's owner"
    } else {
        let parent_id = ctx.parent_map.map_down(extents[0].lower_first);
        match ctx.kind {
            IdKind::Uid if parent_id == Some(ctx.opener_euid.0) => return Ok(()),
            IdKind::Uid => "the mapped parent id is not the opener's euid",
            IdKind::Gid if ctx.setgroups_allowed => "setgroups is not denied",
            IdKind::Gid if parent_id == Some(ctx.opener_egid.0) => return Ok(()),
            IdKind::Gid => "the mapped parent id is not the opener's egid",
            IdKind::Projid => "",
        }
    };
    let cap = match ctx.kind {
        IdKind::Projid => return Ok(()),
        IdKind::Uid => "CAP_SETUID",
        IdKind::Gid => "CAP_SETGID",
    };
    if ctx.writer_cap_setid_in_parent && ctx.opener_cap_setid_in_parent {
        Ok(())
    } else {
        Err(WriteRule::NotPermitted {
            cap,
            unprivileged_case: why_not_unprivileged,
        })
    }
}
