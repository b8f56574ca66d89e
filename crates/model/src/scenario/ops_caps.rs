//! The `[[op]]` tables that change capabilities and fs ids: `setfsuid`, `setfsgid`,
//! `capset`, `set_securebits`, `set_keepcaps`, `capbset_drop`, `cap_ambient`.

use toml::Spanned;

use super::op_args::{OpSpec, OpenProcArgs, PtraceArgs, ReadlinkFdArgs};
use super::raw::{capset, opt_arg, task_ref, Ctx, RawNum};
use crate::caps::Cap;
use crate::ops::{CapPrctlOption, Op, ProcFile};
use crate::world::{TaskRef, World};
use crate::Error;

/// The [`Op`] of one of these tables.
pub(super) fn caps_op(c: &Ctx, spec: &OpSpec) -> Result<Op, Error> {
    Ok(match spec {
        OpSpec::Setfsuid(a) => Op::Setfsuid {
            uid: opt_arg(c, &Some(a.uid.clone()))?,
        },
        OpSpec::Setfsgid(a) => Op::Setfsgid {
            gid: opt_arg(c, &Some(a.gid.clone()))?,
        },
        OpSpec::Capset(a) => Op::Capset {
            effective: capset(c, &a.effective)?,
            permitted: capset(c, &a.permitted)?,
            inheritable: capset(c, &a.inheritable)?,
        },
        OpSpec::SetSecurebits(a) => Op::CapPrctl {
            option: CapPrctlOption::SetSecurebits,
            arg: number(c, &a.bits, "bits")?,
        },
        OpSpec::SetKeepcaps(a) => {
            let v = *a.value.get_ref();
            if !(0..=u32::MAX as i64).contains(&v) {
                return Err(c.err(a.value.span(), format!("value {v} is out of range")));
            }
            Op::CapPrctl {
                option: CapPrctlOption::SetKeepcaps,
                arg: v as u32,
            }
        }
        OpSpec::CapbsetDrop(a) => Op::CapPrctl {
            option: CapPrctlOption::CapbsetDrop,
            arg: cap_number(c, &a.cap)?,
        },
        OpSpec::CapAmbient(a) => ambient(c, &a.action, &a.cap)?,
        _ => unreachable!("dispatched by OpCx::op"),
    })
}

/// `cap_ambient`: the action, and the capability raise and lower need.
fn ambient(c: &Ctx, action: &Spanned<String>, cap: &Option<Spanned<RawNum>>) -> Result<Op, Error> {
    let option = match action.get_ref().trim().to_ascii_lowercase().as_str() {
        "raise" => CapPrctlOption::AmbientRaise,
        "lower" => CapPrctlOption::AmbientLower,
        "clear_all" => CapPrctlOption::AmbientClearAll,
        other => {
            return Err(c.err(
                action.span(),
                format!("cap_ambient action \"{other}\": use raise, lower or clear_all"),
            ))
        }
    };
    let arg = match (option, cap) {
        (CapPrctlOption::AmbientClearAll, None) => 0,
        (CapPrctlOption::AmbientClearAll, Some(x)) => {
            return Err(c.err(x.span(), "cap_ambient clear_all takes no `cap`"))
        }
        (_, Some(x)) => cap_number(c, x)?,
        (_, None) => {
            return Err(c.err(
                action.span(),
                format!("cap_ambient {} needs `cap`", action.get_ref()),
            ))
        }
    };
    Ok(Op::CapPrctl { option, arg })
}

/// A number: an integer, or a string in decimal or "0x" hex.
fn number(c: &Ctx, v: &Spanned<RawNum>, what: &str) -> Result<u32, Error> {
    let bad = || {
        c.err(
            v.span(),
            format!("{what} must be a number from 0 to 4294967295"),
        )
    };
    match v.get_ref() {
        RawNum::Num(n) => u32::try_from(*n).map_err(|_| bad()),
        RawNum::Str(s) => {
            let t = s.trim();
            match t.strip_prefix("0x") {
                Some(h) => u32::from_str_radix(h, 16),
                None => t.parse(),
            }
            .map_err(|_| bad())
        }
    }
}

/// A capability: a name (`CAP_KILL`, `kill`) or a number (any number: the kernel says
/// EINVAL beyond `CAP_LAST_CAP`).
fn cap_number(c: &Ctx, v: &Spanned<RawNum>) -> Result<u32, Error> {
    match v.get_ref() {
        RawNum::Str(s) if s.trim().parse::<u32>().is_err() => Cap::parse(s)
            .map(|cap| cap.number() as u32)
            .ok_or_else(|| c.err(v.span(), format!("unknown capability \"{s}\""))),
        _ => number(c, v, "cap"),
    }
}

/// `ptrace`: attach (`ptrace(PTRACE_ATTACH)`, real ids) or read with the real or fs ids.
pub(super) fn ptrace_op(c: &Ctx, target: TaskRef, a: &PtraceArgs) -> Result<Op, Error> {
    let word = |v: &Option<Spanned<String>>, dflt: &str| {
        v.as_ref()
            .map(|s| s.get_ref().trim().to_ascii_lowercase())
            .unwrap_or_else(|| dflt.to_owned())
    };
    let fscreds = match word(&a.creds, "real").as_str() {
        "real" => false,
        "fs" => true,
        other => {
            let span = a.creds.as_ref().map(|s| s.span()).unwrap_or_default();
            return Err(c.err(span, format!("ptrace creds \"{other}\": use real or fs")));
        }
    };
    match word(&a.mode, "attach").as_str() {
        "attach" if fscreds => Err(c.err(
            a.creds.as_ref().map(|s| s.span()).unwrap_or_default(),
            "ptrace mode attach takes only creds = \"real\" (PTRACE_ATTACH checks PTRACE_MODE_ATTACH_REALCREDS)",
        )),
        "attach" => Ok(Op::Ptrace { target }),
        "read" => Ok(Op::PtraceRead { target, fscreds }),
        other => Err(c.err(
            a.mode.as_ref().map(|s| s.span()).unwrap_or_default(),
            format!("ptrace mode \"{other}\": use attach or read"),
        )),
    }
}

/// `open_proc`: `environ` or `maps` of a process.
pub(super) fn open_proc_op(c: &Ctx, w: &World, a: &OpenProcArgs) -> Result<Op, Error> {
    let file = match a.file.get_ref().trim() {
        "environ" => ProcFile::Environ,
        "maps" => ProcFile::Maps,
        "mem" => ProcFile::Mem,
        other => {
            return Err(c.err(
                a.file.span(),
                format!("open_proc file \"{other}\": use environ, maps or mem"),
            ))
        }
    };
    Ok(Op::OpenProc {
        target: task_ref(c, w, &a.target)?,
        file,
    })
}

/// `readlink_proc_fd`: 0, 1 or 2 (the fds every helper has).
pub(super) fn readlink_fd_op(c: &Ctx, w: &World, a: &ReadlinkFdArgs) -> Result<Op, Error> {
    let fd = match &a.fd {
        None => 0,
        Some(v) if (0..=2).contains(v.get_ref()) => *v.get_ref() as u32,
        Some(v) => {
            return Err(c.err(
                v.span(),
                "readlink_proc_fd takes fd 0, 1 or 2 (the ones every process has)",
            ))
        }
    };
    Ok(Op::ReadlinkProcFd {
        target: task_ref(c, w, &a.target)?,
        fd,
    })
}
