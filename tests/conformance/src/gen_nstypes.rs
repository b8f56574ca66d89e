//! Generated namespaces of the other seven types and operations on them, appended to a
//! generated scenario: `[[other_namespace]]` tables (uts, net, ipc, mnt, cgroup, time; owned by
//! one of the scenario's user namespaces, with members that can enter them) and `unshare_ns`,
//! `setns_ns`, `sethostname` and `bind` ops by its processes.

use std::fmt::Write as _;

use crate::gen::Rng;

/// A process of the scenario: its name and its user namespace (`None`: the initial one).
#[derive(Clone, Debug)]
pub struct GenProc {
    /// Name.
    pub name: String,
    /// Its user namespace's name, `None` for the initial one.
    pub userns: Option<String>,
}

/// A user namespace of the scenario: its name and its ancestors' names (nearest first).
#[derive(Clone, Debug)]
pub struct GenUserns {
    /// Name.
    pub name: String,
    /// Its ancestors, nearest first (the initial namespace not included).
    pub ancestors: Vec<String>,
}

const TYPES: &[&str] = &["uts", "net", "ipc", "mnt", "cgroup", "time"];
const PORTS: &[u16] = &[0, 7, 79, 513, 1023, 1024, 4000, 40123];

/// Whether a helper of `p` (still with its keeper's capabilities) can enter a namespace owned
/// by `owner`: it must live in `owner` or in one of its ancestors.
fn can_enter(p: &GenProc, owner: Option<&GenUserns>) -> bool {
    match (owner, &p.userns) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(o), Some(n)) => o.name == *n || o.ancestors.contains(n),
    }
}

/// Append declarations and 2 to 6 operations.
pub fn append(rng: &mut Rng, t: &mut String, procs: &[GenProc], userns: &[GenUserns]) {
    if procs.is_empty() {
        return;
    }
    let mut declared: Vec<(String, String)> = Vec::new();
    for i in 0..rng.below(3) {
        let kind = rng.pick(TYPES);
        let owner = if userns.is_empty() || rng.chance(1, 3) {
            None
        } else {
            Some(&userns[rng.below(userns.len() as u64) as usize])
        };
        let name = format!("x{i}");
        let _ = writeln!(
            t,
            "\n[[other_namespace]]\nname = \"{name}\"\ntype = \"{kind}\""
        );
        if let Some(o) = owner {
            let _ = writeln!(t, "owner = \"{}\"", o.name);
        }
        // A time namespace entered only affects children: the executor's processes are not
        // born in one, so it gets no members.
        let members: Vec<String> = procs
            .iter()
            .filter(|p| kind != "time" && can_enter(p, owner) && rng.chance(1, 2))
            .map(|p| format!("\"{}\"", p.name))
            .collect();
        if !members.is_empty() {
            let _ = writeln!(t, "members = [{}]", members.join(", "));
        }
        if kind == "uts" && rng.chance(1, 2) {
            let _ = writeln!(t, "hostname = \"box{i}\"");
        }
        declared.push((kind.to_string(), name));
    }
    for i in 0..rng.range(2, 6) {
        let by = &procs[rng.below(procs.len() as u64) as usize].name;
        let _ = writeln!(t, "\n[[op]]\nby = \"{by}\"");
        match rng.below(8) {
            0 | 1 => {
                let _ = writeln!(t, "op = \"sethostname\"\nname = \"h{i}\"");
            }
            2 | 3 => {
                let _ = writeln!(t, "op = \"bind\"\nport = {}", rng.pick(PORTS));
            }
            4 | 5 => {
                let kind = rng.pick(&["uts", "net", "ipc", "mnt", "cgroup", "time", "pid"]);
                let _ = writeln!(t, "op = \"unshare_ns\"\ntype = \"{kind}\"\nname = \"u{i}\"");
            }
            _ => {
                let (kind, ns) = if declared.is_empty() || rng.chance(1, 3) {
                    (
                        rng.pick(&["uts", "net", "ipc", "mnt", "cgroup", "time", "pid"])
                            .to_string(),
                        "init".to_string(),
                    )
                } else {
                    declared[rng.below(declared.len() as u64) as usize].clone()
                };
                let _ = writeln!(t, "op = \"setns_ns\"\ntype = \"{kind}\"\nns = \"{ns}\"");
            }
        }
    }
    // A mount last: the model does not add it to its one mount table, so no later operation
    // may look below it.
    // Or an umount or a bind remount of the second view of the tmpfs (a mount with options or an idmap, when
    // the scenario has one): MNT_LOCKED in mount namespaces copied for other user namespaces.
    match rng.below(4) {
        0 | 1 => {
            let by = &procs[rng.below(procs.len() as u64) as usize].name;
            let ty = rng.pick(&["tmpfs", "tmpfs", "ramfs"]);
            let _ = writeln!(
                t,
                "\n[[op]]\nby = \"{by}\"\nop = \"mount\"\ntype = \"{ty}\"\npath = \"/\""
            );
        }
        2 => {
            let by = &procs[rng.below(procs.len() as u64) as usize].name;
            let _ = writeln!(t, "\n[[op]]\nby = \"{by}\"\nop = \"umount\"\npath = \"/m\"");
        }
        _ => {
            let by = &procs[rng.below(procs.len() as u64) as usize].name;
            let _ = writeln!(
                t,
                "\n[[op]]\nby = \"{by}\"\nop = \"remount\"\npath = \"/m\""
            );
            for k in ["read_only", "nosuid", "noexec"] {
                if rng.chance(1, 2) {
                    let _ = writeln!(t, "{k} = true");
                }
            }
        }
    }
}
