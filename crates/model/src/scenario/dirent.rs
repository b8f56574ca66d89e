//! The directory-entry operations' `[[op]]` tables and the `[settings]` fs.protected_*
//! sysctls they read.

use toml::Spanned;

use super::op_args::OpSpec;
use super::raw::{access_mask, parse_num, Ctx, RawSettings};
use crate::ops::{Op, Protected, RENAME_EXCHANGE, RENAME_NOREPLACE};
use crate::Error;

/// `[settings] protected_hardlinks` … `protected_fifos`: the kernel's built-in defaults (0)
/// when absent; each refused outside the range its sysctl takes.
pub(super) fn protected(c: &Ctx, s: &RawSettings) -> Result<Protected, Error> {
    let one = |v: &Option<Spanned<i64>>, name: &str, max: i64| -> Result<u32, Error> {
        match v {
            None => Ok(0),
            Some(x) if (0..=max).contains(x.get_ref()) => Ok(*x.get_ref() as u32),
            Some(x) => Err(c.err(
                x.span(),
                format!("fs.{name} takes 0 to {max}, not {}", x.get_ref()),
            )),
        }
    };
    Ok(Protected {
        hardlinks: one(&s.protected_hardlinks, "protected_hardlinks", 1)?,
        symlinks: one(&s.protected_symlinks, "protected_symlinks", 1)?,
        regular: one(&s.protected_regular, "protected_regular", 2)?,
        fifos: one(&s.protected_fifos, "protected_fifos", 2)?,
    })
}

fn path(c: &Ctx, p: &Spanned<String>) -> Result<String, Error> {
    crate::world::normalise(p.get_ref())
        .ok_or_else(|| c.err(p.span(), "paths must be absolute and free of . and .."))
}

/// `unlink`, `rmdir`, `rename`, `link`, `symlink`, `open_creat`.
pub(super) fn dirent_op(c: &Ctx, spec: &OpSpec) -> Result<Op, Error> {
    Ok(match spec {
        OpSpec::Unlink(a) => Op::Unlink {
            path: path(c, &a.path)?,
        },
        OpSpec::Rmdir(a) => Op::Rmdir {
            path: path(c, &a.path)?,
        },
        OpSpec::Rename(a) => {
            let flags = match a
                .flags
                .as_ref()
                .map(|f| (f, f.get_ref().trim().to_ascii_lowercase()))
            {
                None => 0,
                Some((_, f)) if f.is_empty() || f == "none" => 0,
                Some((_, f)) if f == "noreplace" => RENAME_NOREPLACE,
                Some((_, f)) if f == "exchange" => RENAME_EXCHANGE,
                Some((f, _)) => {
                    return Err(c.err(
                        f.span(),
                        format!(
                            "rename flags \"{}\": use \"noreplace\" or \"exchange\"",
                            f.get_ref()
                        ),
                    ))
                }
            };
            Op::Rename {
                from: path(c, &a.from)?,
                to: path(c, &a.to)?,
                flags,
            }
        }
        OpSpec::Link(a) => Op::Link {
            from: path(c, &a.from)?,
            to: path(c, &a.to)?,
        },
        OpSpec::Symlink(a) => {
            if a.target.get_ref().contains('\0') {
                return Err(c.err(a.target.span(), "a symlink target cannot hold a NUL byte"));
            }
            Op::Symlink {
                target: a.target.get_ref().clone(),
                path: path(c, &a.path)?,
            }
        }
        OpSpec::OpenCreat(a) => {
            let mask = a.access.as_ref().map_or(Ok(4), |m| access_mask(c, m))?;
            if mask & 1 != 0 {
                let at = a.access.as_ref().map(|a| a.span()).unwrap_or(a.path.span());
                return Err(c.err(at, "open_creat takes access \"r\", \"w\" or \"rw\""));
            }
            Op::OpenCreat {
                path: path(c, &a.path)?,
                read: mask & 4 != 0 || mask == 0,
                write: mask & 2 != 0,
                mode: match &a.mode {
                    Some(m) => parse_num(c, m, "mode")?,
                    None => 0o666,
                },
            }
        }
        _ => unreachable!("dispatched by OpCx::op"),
    })
}
