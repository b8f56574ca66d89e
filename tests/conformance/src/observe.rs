//! Facts about a real write, read from the running system: which namespace the opener and the
//! writer are in, their euid, egid and effective capabilities (`/proc/PID/status`), the target's
//! owner (`NS_GET_OWNER_UID`), parent (`NS_GET_PARENT`), setgroups flag, whether its map is
//! already written, and the parent's kernel map. From them, a [`WriteContext`] for the library.
//!
//! The one rule applied here rather than observed is the kernel's `cap_capable` walk
//! (security/commoncap.c), to turn "effective set in its own namespace" into "has capability X
//! over namespace Y"; it is written out in [`capable`].

use credns_idmap::{IdKind, IdMap, Kgid, Kuid, OpenerNs, WriteContext};
use credns_sys::{userns_ancestry, CapSets, Error, NsId, Pid, ProcFs, UserNsFd};

/// `CAP_SETGID`.
pub const CAP_SETGID: u32 = 6;
/// `CAP_SETUID`.
pub const CAP_SETUID: u32 = 7;
/// `CAP_SYS_ADMIN`.
pub const CAP_SYS_ADMIN: u32 = 21;
/// `CAP_SETFCAP`.
pub const CAP_SETFCAP: u32 = 31;
/// Every capability of this kernel generation (0..=40).
pub const ALL_CAPS: u64 = (1 << 41) - 1;

/// A process's credentials as the initial namespace sees them.
#[derive(Clone, Debug)]
pub struct Cred {
    /// The process.
    pub pid: Pid,
    /// Its user namespace, then each parent up to the observer's.
    pub ns_chain: Vec<NsId>,
    /// Effective uid (kernel id).
    pub euid: u32,
    /// Effective gid (kernel id).
    pub egid: u32,
    /// Effective capabilities (in its own namespace).
    pub cap_eff: u64,
}

/// A namespace in a chain: identity and owner.
#[derive(Clone, Copy, Debug)]
pub struct NsNode {
    /// Identity.
    pub id: NsId,
    /// The owner's uid as the observer sees it (a kernel uid for an observer in the initial
    /// namespace).
    pub owner: u32,
}

/// Read a process's credentials.
pub fn cred_of(fs: &ProcFs, pid: Pid) -> Result<Cred, Error> {
    let st = fs.status(pid)?;
    Ok(Cred {
        pid,
        ns_chain: userns_ancestry(fs, pid)?,
        euid: st.uid[1],
        egid: st.gid[1],
        cap_eff: st.cap_eff,
    })
}

/// The namespace of `pid` and its ancestors up to the observer's, with owners.
pub fn ns_nodes(fs: &ProcFs, pid: Pid) -> Result<Vec<NsNode>, Error> {
    let mut fd = UserNsFd::open(fs, pid)?;
    let mut out = vec![NsNode {
        id: fd.id()?,
        owner: fd.owner_uid()?,
    }];
    while let Some(p) = fd.parent()? {
        out.push(NsNode {
            id: p.id()?,
            owner: p.owner_uid()?,
        });
        fd = p;
    }
    Ok(out)
}

/// `cap_capable(cred, target_ns, cap)`: walk from the target up. In the cred's own namespace the
/// effective set decides; a namespace at or above the cred's level (and not its own) refuses;
/// a namespace whose parent is the cred's and whose owner is the cred's euid grants everything.
/// `target` is the target namespace first, then its ancestors (as [`ns_nodes`] gives them).
pub fn capable(cred: &Cred, target: &[NsNode], cap: u32) -> bool {
    let cred_ns = cred.ns_chain[0];
    // Levels relative to the observer: a chain of length k has level k-1.
    let cred_level = cred.ns_chain.len() - 1;
    for (i, node) in target.iter().enumerate() {
        if node.id == cred_ns {
            return cred.cap_eff & (1 << cap) != 0;
        }
        let level = target.len() - 1 - i;
        if level <= cred_level {
            return false;
        }
        if target.get(i + 1).map(|p| p.id) == Some(cred_ns) && node.owner == cred.euid {
            return true;
        }
    }
    false
}

/// Who does what in one write.
#[derive(Clone, Copy, Debug)]
pub struct WriteSetup {
    /// Which map.
    pub kind: IdKind,
    /// The process whose map is written.
    pub target: Pid,
    /// The capability sets the target's namespace's creator had when it unshared.
    pub creator_caps: CapSets,
    /// A process in the target's parent namespace (its map is the parent map).
    pub parent_proc: Pid,
    /// Who opened the map file.
    pub opener: Pid,
    /// Who writes to it.
    pub writer: Pid,
    /// The file offset of the write.
    pub offset: u64,
}

/// Everything observed for one write, with the context built from it.
#[derive(Clone, Debug)]
pub struct Observed {
    /// The context for `judge_write`.
    pub ctx: WriteContext,
    /// The target namespace and its ancestors.
    pub target_chain: Vec<NsNode>,
    /// The opener.
    pub opener: Cred,
    /// The writer.
    pub writer: Cred,
}

/// Observe the facts of a write that is about to happen and build the library's context.
pub fn observe(fs: &ProcFs, s: &WriteSetup) -> Result<Observed, Error> {
    let target_chain = ns_nodes(fs, s.target)?;
    let opener = cred_of(fs, s.opener)?;
    let writer = if s.writer == s.opener {
        opener.clone()
    } else {
        cred_of(fs, s.writer)?
    };
    let parent_ns = target_chain.get(1).map(|n| n.id);
    if let Some(p) = parent_ns {
        let seen = fs.userns(s.parent_proc)?;
        assert_eq!(
            seen, p,
            "pid {} is not in the parent namespace of pid {}",
            s.parent_proc, s.target
        );
    }
    let opener_ns = if opener.ns_chain[0] == target_chain[0].id {
        OpenerNs::Target
    } else if Some(opener.ns_chain[0]) == parent_ns {
        OpenerNs::Parent
    } else {
        OpenerNs::Other
    };
    let parent_chain = &target_chain[1.min(target_chain.len())..];
    let setid = if s.kind == IdKind::Gid {
        CAP_SETGID
    } else {
        CAP_SETUID
    };
    let parent_map = if parent_ns.is_some() {
        fs.read_map(s.parent_proc, s.kind)?
    } else {
        IdMap::empty()
    };
    let ctx = WriteContext {
        kind: s.kind,
        target_is_init: parent_ns.is_none(),
        opener_ns,
        offset: s.offset,
        already_written: !fs.read_map(s.target, s.kind)?.is_empty(),
        opener_cap_sys_admin_in_target: capable(&opener, &target_chain, CAP_SYS_ADMIN),
        parent_could_setfcap: s.creator_caps.effective & (1 << CAP_SETFCAP) != 0,
        opener_cap_setfcap_in_parent: !parent_chain.is_empty()
            && capable(&opener, parent_chain, CAP_SETFCAP),
        owner: Kuid(target_chain[0].owner),
        opener_euid: Kuid(opener.euid),
        opener_egid: Kgid(opener.egid),
        setgroups_allowed: fs.setgroups_allowed(s.target)?,
        writer_cap_setid_in_parent: !parent_chain.is_empty()
            && capable(&writer, parent_chain, setid),
        opener_cap_setid_in_parent: !parent_chain.is_empty()
            && capable(&opener, parent_chain, setid),
        parent_map,
    };
    Ok(Observed {
        ctx,
        target_chain,
        opener,
        writer,
    })
}
