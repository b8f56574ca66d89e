//! Generated operations on one's own fs ids and capabilities: `setfsuid`, `setfsgid`,
//! `capset`, `set_securebits`, `set_keepcaps`, `capbset_drop`, `cap_ambient`, and the /proc
//! and read-mode ptrace access checks (`ptrace` mode read, `open_proc`, `readlink_proc_fd`),
//! and socket
//! credentials (`connect`, `peercred` of a connection, `send_creds`); biased toward
//! the edges (ids the caller has and has not, sets just inside and just outside the old ones,
//! locked securebits, capability numbers past CAP_LAST_CAP).

use std::fmt::Write;

use crate::gen::Rng;

/// Capabilities the sets are drawn from: the fs ones (which follow fsuid 0), the id ones and
/// CAP_SETPCAP (which the rules themselves read), and a few others.
const BITS: &[u32] = &[0, 1, 3, 5, 6, 7, 8, 9, 21, 27, 40];

/// Connections made by earlier generated `connect` ops: (name, caller, target).
#[derive(Debug, Default)]
pub struct Conns(Vec<(String, String, String)>, usize);

impl Conns {
    /// `proc` exec'd: its helper is gone, so later ops use none of its connections (their
    /// names stay taken: a new one gets a new number).
    pub fn forget(&mut self, proc: &str) {
        self.0.retain(|(_, a, b)| a != proc && b != proc);
    }
}

/// `connect`, or on a connection `by` holds an end of, `peercred` or `send_creds`.
fn socket_op(
    rng: &mut Rng,
    t: &mut String,
    (uid, gid): (&str, &str),
    by: &str,
    target: &str,
    conns: &mut Conns,
) {
    let mine: Vec<String> = conns
        .0
        .iter()
        .filter(|(_, a, b)| a == by || b == by)
        .map(|(n, _, _)| n.clone())
        .collect();
    if mine.is_empty() || rng.chance(1, 6) {
        let name = format!("s{}", conns.1);
        conns.1 += 1;
        let _ = writeln!(
            t,
            "op = \"connect\"\ntarget = \"{target}\"\nname = \"{name}\""
        );
        conns.0.push((name, by.to_owned(), target.to_owned()));
        return;
    }
    let s = &mine[rng.below(mine.len() as u64) as usize];
    if rng.chance(1, 4) {
        let _ = writeln!(t, "op = \"peercred\"\nsocket = \"{s}\"");
        return;
    }
    let id = |v: &str| {
        if v == "-1" {
            "0".to_owned()
        } else {
            v.to_owned()
        }
    };
    let _ = writeln!(
        t,
        "op = \"send_creds\"\nsocket = \"{s}\"\nuid = {}\ngid = {}",
        id(uid),
        id(gid)
    );
    if rng.chance(1, 4) {
        let _ = writeln!(t, "pid = \"peer\"");
    }
}

fn set(rng: &mut Rng) -> u64 {
    match rng.below(5) {
        0 => 0,
        1 => (1u64 << 41) - 1,
        _ => BITS
            .iter()
            .filter(|_| rng.chance(1, 2))
            .fold(0, |a, b| a | 1 << b),
    }
}

fn cap(rng: &mut Rng) -> String {
    match rng.below(8) {
        0 => "41".into(),
        1 => "CAP_SETPCAP".into(),
        _ => rng.pick(BITS).to_string(),
    }
}

/// Write one operation's fields (after `by`) into `t`. `uid` and `gid` are id arguments
/// drawn for the acting process (its own ids, ids of its namespace, -1, unmapped ones).
pub fn op(
    rng: &mut Rng,
    t: &mut String,
    ids: (&str, &str),
    own: (u32, u32),
    who: (&str, &str),
    conns: &mut Conns,
) {
    let ((uid, gid), (by, target)) = (ids, who);
    match rng.below(18) {
        0..=1 => {
            let _ = writeln!(t, "op = \"setfsuid\"\nuid = {uid}");
        }
        2 => {
            let _ = writeln!(t, "op = \"setfsgid\"\ngid = {gid}");
        }
        3..=4 => {
            let p = set(rng);
            // Mostly effective within the new permitted; sometimes not.
            let e = if rng.chance(4, 5) {
                p & set(rng)
            } else {
                set(rng)
            };
            let i = if rng.chance(1, 2) {
                p & set(rng)
            } else {
                set(rng)
            };
            let _ = writeln!(
                t,
                "op = \"capset\"\neffective = \"{e:#x}\"\npermitted = \"{p:#x}\"\ninheritable = \"{i:#x}\""
            );
        }
        5 => {
            // KEEP_CAPS, NO_SETUID_FIXUP, their locks, the exec restrictions (unprivileged),
            // an unsupported bit.
            let bits = rng.pick(&[
                0, 1, 4, 16, 20, 0x30, 0x2f, 0x15, 0x100, 0x300, 0xc00, 0x1000, 0x114,
            ]);
            let _ = writeln!(t, "op = \"set_securebits\"\nbits = {bits}");
        }
        6 => {
            let _ = writeln!(
                t,
                "op = \"set_keepcaps\"\nvalue = {}",
                rng.pick(&[0, 1, 1, 2])
            );
        }
        7 => {
            let _ = writeln!(t, "op = \"capbset_drop\"\ncap = \"{}\"", cap(rng));
        }
        10 => {
            let creds = rng.pick(&["real", "fs"]);
            let _ = writeln!(
                t,
                "op = \"ptrace\"\ntarget = \"{target}\"\nmode = \"read\"\ncreds = \"{creds}\""
            );
        }
        11 if rng.chance(1, 3) => {
            let fd = rng.below(3);
            let _ = writeln!(
                t,
                "op = \"readlink_proc_fd\"\ntarget = \"{target}\"\nfd = {fd}"
            );
        }
        11 => {
            let file = rng.pick(&["environ", "environ", "maps", "mem"]);
            let _ = writeln!(
                t,
                "op = \"open_proc\"\ntarget = \"{target}\"\nfile = \"{file}\""
            );
        }
        13..=16 => {
            // Mostly the sender's own real ids (allowed without capabilities).
            let (u, g) = (own.0.to_string(), own.1.to_string());
            let ids = if rng.chance(1, 2) {
                (&u[..], &g[..])
            } else {
                (uid, gid)
            };
            socket_op(rng, t, ids, by, target, conns)
        }
        _ => match rng.below(3) {
            0 => {
                let _ = writeln!(t, "op = \"cap_ambient\"\naction = \"clear_all\"");
            }
            n => {
                let action = if n == 1 { "raise" } else { "lower" };
                let _ = writeln!(
                    t,
                    "op = \"cap_ambient\"\naction = \"{action}\"\ncap = \"{}\"",
                    cap(rng)
                );
            }
        },
    }
}

/// Sometimes give a process in a namespace the `mm` of one of that namespace's ancestors
/// (`up`, "init" first): as after an exec there and a `setns` down into its own. Mostly also
/// non-dumpable, where the mm's namespace decides `ptrace_may_access` and `task_dump_owner`.
pub fn mm_userns(rng: &mut Rng, t: &mut String, up: &[String]) {
    if up.is_empty() || !rng.chance(1, 4) {
        return;
    }
    let _ = writeln!(
        t,
        "mm_userns = \"{}\"",
        up[rng.below(up.len() as u64) as usize]
    );
    let block = t.rsplit("[[process]]").next().unwrap_or("");
    if !block.contains("dumpable") && rng.chance(2, 3) {
        let _ = writeln!(t, "dumpable = false");
    }
}
