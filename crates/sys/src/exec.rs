//! `execvp(3)`'s search, split so that a forked child can run it without allocating: the
//! candidate paths, argv and envp are built first ([`ExecPlan::new`]), the exec loop is raw
//! system calls on them ([`ExecPlan::exec`]).

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use crate::{Errno, Error};

/// A command, its environment and where `PATH` says to look for it, ready to exec.
#[derive(Debug)]
pub(crate) struct ExecPlan {
    /// Candidate program paths, in `PATH` order.
    programs: Vec<CString>,
    argv: Vec<CString>,
    envp: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
}

fn cstr_os(s: &OsStr, what: &str) -> Result<CString, Error> {
    CString::new(s.as_bytes()).map_err(|_| {
        Error::Invalid(format!(
            "{what} {:?} contains a NUL byte",
            s.to_string_lossy()
        ))
    })
}

impl ExecPlan {
    /// `argv[0]` is looked up in `PATH` (of `env`, or of this process when `None`) unless it
    /// holds a `/`, as `execvp(3)` does.
    pub(crate) fn new(argv: &[OsString], env: Option<&[OsString]>) -> Result<Self, Error> {
        let Some(prog) = argv.first() else {
            return Err(Error::Invalid("no command to run".into()));
        };
        if prog.is_empty() {
            return Err(Error::Invalid("the command name is empty".into()));
        }
        let argv = argv
            .iter()
            .map(|a| cstr_os(a, "argument"))
            .collect::<Result<Vec<_>, _>>()?;
        let env: Vec<OsString> = match env {
            Some(e) => e.to_vec(),
            None => std::env::vars_os()
                .map(|(k, v)| {
                    let mut kv = k;
                    kv.push("=");
                    kv.push(v);
                    kv
                })
                .collect(),
        };
        let envp = env
            .iter()
            .map(|e| cstr_os(e, "environment entry"))
            .collect::<Result<Vec<_>, _>>()?;
        let programs = if prog.as_bytes().contains(&b'/') {
            vec![cstr_os(prog, "command")?]
        } else {
            let path = env
                .iter()
                .find_map(|e| e.as_bytes().strip_prefix(b"PATH="))
                .map(|p| p.to_vec())
                .unwrap_or_else(|| b"/usr/local/bin:/usr/bin:/bin".to_vec());
            path.split(|&b| b == b':')
                .map(|dir| {
                    let mut full = if dir.is_empty() {
                        b".".to_vec()
                    } else {
                        dir.to_vec()
                    };
                    full.push(b'/');
                    full.extend_from_slice(prog.as_bytes());
                    cstr_os(OsStr::from_bytes(&full), "command")
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
        envp_ptrs.push(std::ptr::null());
        Ok(ExecPlan {
            programs,
            argv,
            envp,
            argv_ptrs,
            envp_ptrs,
        })
    }

    /// Exec the first candidate that runs; returns only if none did, with the errno to report.
    /// execvp's rules, as a shell applies them: ENOENT, ENOTDIR (and the like) move on to the
    /// next candidate; EACCES on a file that exists is remembered and reported if nothing else
    /// runs (126), but EACCES because a `PATH` directory cannot be searched is "not here" (a
    /// command found nowhere is 127); any other error stops the search. Raw system calls on
    /// memory built by [`new`](Self::new) only: safe in a forked child.
    pub(crate) fn exec(&self) -> Errno {
        let mut last = Errno::NOENT;
        let mut saw_eacces = false;
        debug_assert_eq!(self.argv_ptrs.len(), self.argv.len() + 1);
        debug_assert_eq!(self.envp_ptrs.len(), self.envp.len() + 1);
        for prog in &self.programs {
            // SAFETY: `prog` is a NUL-terminated string, and `argv_ptrs`/`envp_ptrs` are
            // null-terminated arrays of pointers into `self.argv`/`self.envp`, all owned by
            // `self` and alive for the call.
            unsafe {
                libc::execve(
                    prog.as_ptr(),
                    self.argv_ptrs.as_ptr(),
                    self.envp_ptrs.as_ptr(),
                )
            };
            let e = crate::last_errno();
            match e {
                Errno::ACCESS
                    if rustix::fs::access(prog.as_c_str(), rustix::fs::Access::EXISTS).is_ok() =>
                {
                    saw_eacces = true
                }
                Errno::ACCESS => {}
                Errno::NOENT | Errno::NOTDIR | Errno::LOOP | Errno::NAMETOOLONG | Errno::STALE => {}
                _ => return e,
            }
            if e != Errno::ACCESS {
                last = e;
            }
        }
        if saw_eacces {
            Errno::ACCESS
        } else {
            last
        }
    }
}
