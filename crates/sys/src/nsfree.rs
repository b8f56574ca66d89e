//! Learning when the kernel frees a user namespace, from a tiny BPF program.
//!
//! A user namespace's ID range may be handed out again only once the namespace is really gone,
//! which is not when its last process exits: an nsfs fd, an nsfs bind mount, an idmapped
//! mount, a child namespace or an open file's credentials can each keep it alive, and most of
//! those are invisible to a scan of `/proc`. The kernel frees a user namespace in
//! `free_user_ns` (from a workqueue, after the last reference is put), which returns the
//! namespace's nsfs inode number to proc's inode allocator through `ns_free_inum` →
//! `proc_free_inum(unsigned int inum)`. [`NsFreeWatch`] attaches a BPF program to
//! `proc_free_inum` that copies `inum` into a ring buffer; the daemon reads the numbers and
//! releases the range of the leased namespace whose inode it is (systemd-nsresourced does the
//! same with a kprobe on the user-namespace free path).
//!
//! # Design
//!
//! credns must build with nothing but a Rust toolchain and a C compiler, so there is no
//! libbpf, no clang and no BPF object file: the program is 22 instruction slots assembled in
//! `program` and loaded with raw `bpf(2)` calls (module `bpf`). In C it is:
//!
//! ```c
//! int prog(ctx) {
//!     u64 inum = (u32)ARG0(ctx);                 // fentry: ctx[0]; kprobe: regs->di
//!     if (bpf_ringbuf_output(&ring, &inum, 8, 0)) {  // ring full: count the loss
//!         u32 key = 0;
//!         u64 *lost = bpf_map_lookup_elem(&lost_map, &key);
//!         if (lost) __sync_fetch_and_add(lost, 1);
//!     }
//!     return 0;
//! }
//! ```
//!
//! It is attached in one of two ways, the first that works:
//! 1. **fentry** (`BPF_PROG_TYPE_TRACING`, `BPF_TRACE_FENTRY`): needs the kernel's BTF
//!    (`/sys/kernel/btf/vmlinux`, walked by module `btf` for the function's type id) and BPF
//!    trampolines (x86_64 with `CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS`), but not
//!    `CONFIG_KPROBES`. Attached with `BPF_RAW_TRACEPOINT_OPEN`; the link fd holds it.
//! 2. **kprobe** (`BPF_PROG_TYPE_KPROBE`) through `perf_event_open(2)` on the kprobe PMU
//!    (`/sys/bus/event_source/devices/kprobe/type`, `config1` naming the function) and
//!    `PERF_EVENT_IOC_SET_BPF`; the perf event fd holds it. The argument is read from the
//!    saved registers (`struct pt_regs`'s `di` at offset 112), hence x86_64 only.
//!
//! Events are read from the ring buffer's memory mapping (module `ring`, which holds the
//! memory-safety argument) without a system call; the map's fd polls readable (`EPOLLIN`)
//! while records wait, so the daemon adds [`NsFreeWatch::as_fd`] to its epoll set.
//!
//! Needs `CAP_BPF` and `CAP_PERFMON` (or `CAP_SYS_ADMIN`). [`NsFreeWatch::open`] says which
//! step failed and why (the verifier's log included), so the daemon can fall back to the
//! conservative scan of [`crate::nsrefs`].
//!
//! # Kernel versions
//!
//! Up to 6.17 the path is `free_user_ns` → `ns_free_inum` → `proc_free_inum`; from 6.18 it is
//! `free_user_ns` → `ns_common_free` → `__ns_common_free` → `proc_free_inum`: the traced
//! function is the same. It is also called when creating a namespace fails after its number
//! was allocated (harmless: no lease can name that number). A kernel built with LTO may
//! inline `proc_free_inum` into its callers; then neither hook sees those calls, so a daemon
//! should treat a watch that never reports anything with suspicion.
//!
//! # Inode reuse
//!
//! The kernel reuses a freed inode number for the next namespace or proc entry it creates. The
//! program runs at the entry of `proc_free_inum`, before the number is released, so the record
//! is in the ring before any new namespace can get that number. A daemon that drains the watch
//! right before it records a new namespace's inode therefore never mistakes an old namespace's
//! free for the new one's.

#[cfg(target_arch = "x86_64")]
mod bpf;
#[cfg(target_arch = "x86_64")]
mod btf;
#[cfg(target_arch = "x86_64")]
mod ring;

use std::os::fd::{AsFd, BorrowedFd};

use crate::Error;

/// The traced function.
pub const FUNCTION: &str = "proc_free_inum";

/// The ring buffer's data size: 16384 records of 16 bytes.
#[cfg(target_arch = "x86_64")]
const RING_SIZE: u32 = 256 * 1024;

/// Reports the inode numbers the kernel frees on proc's inode allocator (`proc_free_inum`,
/// called by free_user_ns → ns_free_inum for a user namespace's nsfs inode, and for other
/// namespace types and proc entries): an inode of a leased user namespace appearing here means
/// that namespace is gone for good.
///
/// Dropping it detaches the program and frees the maps.
#[derive(Debug)]
pub struct NsFreeWatch {
    #[cfg(target_arch = "x86_64")]
    inner: imp::Inner,
    #[cfg(not(target_arch = "x86_64"))]
    inner: std::convert::Infallible,
}

/// How the program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// A BPF trampoline at the function's entry (`BPF_TRACE_FENTRY`).
    Fentry,
    /// A kprobe (`perf_event_open(2)` on the kprobe PMU).
    Kprobe,
}

impl NsFreeWatch {
    /// Load and attach the program. Err says precisely why not (no CAP_BPF/CAP_PERFMON, kprobe
    /// unavailable, verifier log excerpt, ...), so the caller can fall back.
    pub fn open() -> Result<Self, Error> {
        #[cfg(target_arch = "x86_64")]
        {
            imp::Inner::open().map(|inner| NsFreeWatch { inner })
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Err(Error::Invalid(format!(
                "cannot watch {FUNCTION}: unsupported architecture {} (the BPF program is \
                 written for x86_64)",
                std::env::consts::ARCH
            )))
        }
    }

    /// The ring buffer's fd: readable (epoll EPOLLIN) when events wait.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        #[cfg(target_arch = "x86_64")]
        {
            self.inner.as_fd()
        }
        #[cfg(not(target_arch = "x86_64"))]
        match self.inner {}
    }

    /// Every freed inode number reported since the last call, in order (non-blocking; empty if none).
    pub fn drain(&mut self) -> Vec<u64> {
        #[cfg(target_arch = "x86_64")]
        {
            self.inner.drain()
        }
        #[cfg(not(target_arch = "x86_64"))]
        match self.inner {}
    }

    /// How many frees the program could not report because the ring buffer was full (0 unless
    /// the reader fell behind by more than 16384 frees). Nonzero means some namespaces' frees
    /// were missed: fall back to scanning for them.
    pub fn lost(&self) -> Result<u64, Error> {
        #[cfg(target_arch = "x86_64")]
        {
            self.inner.lost()
        }
        #[cfg(not(target_arch = "x86_64"))]
        match self.inner {}
    }

    /// How the program is attached.
    pub fn hook(&self) -> Hook {
        #[cfg(target_arch = "x86_64")]
        {
            self.inner.hook
        }
        #[cfg(not(target_arch = "x86_64"))]
        match self.inner {}
    }
}

impl AsFd for NsFreeWatch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        NsFreeWatch::as_fd(self)
    }
}

/// The program: report the first argument (an `unsigned int`), which `load_arg` loads from the
/// context (r1) into r6, to `ring`; count a failed report in `lost[0]`.
#[cfg(target_arch = "x86_64")]
fn program(load_arg: bpf::Insn, ring: BorrowedFd<'_>, lost: BorrowedFd<'_>) -> Vec<bpf::Insn> {
    use bpf::Insn;
    const BPF_FUNC_MAP_LOOKUP_ELEM: i32 = 1;
    const BPF_FUNC_RINGBUF_OUTPUT: i32 = 130;
    let mut p = vec![
        load_arg,                // r6 = the argument's register slot
        Insn::mov32(6, 6),       // only its low 32 bits are the unsigned int
        Insn::stx_dw(10, -8, 6), // *(u64 *)(fp - 8) = r6
    ];
    p.extend(Insn::ld_map_fd(1, ring)); // r1 = &ring
    p.extend([
        Insn::mov64(2, 10),     // r2 = fp
        Insn::add64_imm(2, -8), // r2 = fp - 8
        Insn::mov64_imm(3, 8),  // size
        Insn::mov64_imm(4, 0),  // flags: wake the reader when it has caught up
        Insn::call(BPF_FUNC_RINGBUF_OUTPUT),
        Insn::jeq_imm(0, 0, 9), // written: to "r0 = 0"
        Insn::st_w(10, -12, 0), // *(u32 *)(fp - 12) = 0, the key
    ]);
    p.extend(Insn::ld_map_fd(1, lost)); // r1 = &lost
    p.extend([
        Insn::mov64(2, 10),
        Insn::add64_imm(2, -12),
        Insn::call(BPF_FUNC_MAP_LOOKUP_ELEM),
        Insn::jeq_imm(0, 0, 2), // no element: to "r0 = 0"
        Insn::mov64_imm(1, 1),
        Insn::atomic_add_dw(0, 0, 1), // lock *(u64 *)(r0 + 0) += 1
        Insn::mov64_imm(0, 0),
        Insn::exit(),
    ]);
    p
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

    use super::bpf::{self, KprobeError, LoadError, ProgSpec};
    use super::ring::Ring;
    use super::{btf, program, Hook, FUNCTION, RING_SIZE};
    use crate::{errno_display, Errno, Error};

    /// `offsetof(struct pt_regs, di)` on x86_64: the first argument at a kprobe.
    const PT_REGS_DI: i16 = 112;

    #[derive(Debug)]
    pub(super) struct Inner {
        /// Holds the attachment (a BPF link or a perf event); dropped first.
        _attachment: OwnedFd,
        _prog: OwnedFd,
        ring: Ring,
        ring_map: OwnedFd,
        lost_map: OwnedFd,
        pub(super) hook: Hook,
    }

    fn sys(what: &str, errno: Errno) -> String {
        let hint = match errno {
            Errno::PERM | Errno::ACCESS => " (needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)",
            _ => "",
        };
        format!("{what}: {}{hint}", errno_display(errno))
    }

    fn load_error(what: &str, e: LoadError) -> String {
        let mut s = if e.log.is_empty() && e.errno == Errno::PERM {
            // The verifier logs as soon as it starts: this refusal came before it.
            format!(
                "{what}: {}: refused before verification (missing CAP_BPF and CAP_PERFMON, or a \
                 security policy such as a BPF LSM forbids this program type)",
                errno_display(e.errno)
            )
        } else {
            sys(what, e.errno)
        };
        if !e.log.is_empty() {
            // The verifier's verdict is at the end of its log.
            let lines: Vec<&str> = e.log.lines().collect();
            let tail = lines[lines.len().saturating_sub(12)..].join(" | ");
            s.push_str(&format!("; verifier: {tail}"));
        }
        s
    }

    impl Inner {
        pub(super) fn open() -> Result<Inner, Error> {
            let fail = |msg: String| Error::Invalid(format!("cannot watch {FUNCTION}: {msg}"));
            let ring_map = bpf::map_create(bpf::MAP_TYPE_RINGBUF, 0, 0, RING_SIZE, "credns_nsfree")
                .map_err(|e| fail(sys("bpf(BPF_MAP_CREATE) of a ring buffer", e)))?;
            let lost_map = bpf::map_create(bpf::MAP_TYPE_ARRAY, 4, 8, 1, "credns_nslost")
                .map_err(|e| fail(sys("bpf(BPF_MAP_CREATE) of an array", e)))?;
            let ring = Ring::map(ring_map.as_fd(), RING_SIZE as usize)
                .map_err(|(what, e)| fail(sys(what, e)))?;
            let (hook, prog, attachment) = match fentry(&ring_map, &lost_map) {
                Ok((prog, link)) => (Hook::Fentry, prog, link),
                Err(fentry_why) => match kprobe(&ring_map, &lost_map) {
                    Ok((prog, event)) => (Hook::Kprobe, prog, event),
                    Err(kprobe_why) => {
                        return Err(fail(format!("fentry: {fentry_why}; kprobe: {kprobe_why}")))
                    }
                },
            };
            Ok(Inner {
                _attachment: attachment,
                _prog: prog,
                ring,
                ring_map,
                lost_map,
                hook,
            })
        }

        pub(super) fn as_fd(&self) -> BorrowedFd<'_> {
            self.ring_map.as_fd()
        }

        pub(super) fn drain(&mut self) -> Vec<u64> {
            let mut out = Vec::new();
            self.ring.drain(|rec| {
                if let Ok(b) = <[u8; 8]>::try_from(rec) {
                    out.push(u64::from_ne_bytes(b));
                }
            });
            out
        }

        pub(super) fn lost(&self) -> Result<u64, Error> {
            bpf::map_lookup_u64(self.lost_map.as_fd(), 0).map_err(|errno| Error::Sys {
                op: "bpf(BPF_MAP_LOOKUP_ELEM) of the lost-events counter",
                errno,
            })
        }
    }

    /// Load the program as fentry on [`FUNCTION`] and attach it: (program, link).
    fn fentry(ring: &OwnedFd, lost: &OwnedFd) -> Result<(OwnedFd, OwnedFd), String> {
        let path = "/sys/kernel/btf/vmlinux";
        let blob = std::fs::read(path).map_err(|e| format!("read {path}: {e}"))?;
        let btf_id = btf::find_func(&blob, FUNCTION).map_err(|e| format!("{path}: {e}"))?;
        drop(blob);
        let insns = program(bpf::Insn::ldx_dw(6, 1, 0), ring.as_fd(), lost.as_fd());
        let prog = bpf::prog_load(&ProgSpec {
            prog_type: bpf::PROG_TYPE_TRACING,
            expected_attach_type: bpf::TRACE_FENTRY,
            attach_btf_id: btf_id,
            name: "credns_nsfree",
            insns: &insns,
        })
        .map_err(|e| load_error("bpf(BPF_PROG_LOAD) fentry", e))?;
        let link = bpf::attach_tracing(prog.as_fd())
            .map_err(|e| sys("bpf(BPF_RAW_TRACEPOINT_OPEN)", e))?;
        Ok((prog, link))
    }

    /// Load the program as a kprobe and attach it to [`FUNCTION`]: (program, perf event).
    fn kprobe(ring: &OwnedFd, lost: &OwnedFd) -> Result<(OwnedFd, OwnedFd), String> {
        let insns = program(
            bpf::Insn::ldx_dw(6, 1, PT_REGS_DI),
            ring.as_fd(),
            lost.as_fd(),
        );
        let prog = bpf::prog_load(&ProgSpec {
            prog_type: bpf::PROG_TYPE_KPROBE,
            expected_attach_type: 0,
            attach_btf_id: 0,
            name: "credns_nsfree",
            insns: &insns,
        })
        .map_err(|e| load_error("bpf(BPF_PROG_LOAD) kprobe", e))?;
        let event = bpf::attach_kprobe(prog.as_fd(), c"proc_free_inum").map_err(|e| match e {
            KprobeError::NoPmu(e) => format!(
                "no kprobe PMU (/sys/bus/event_source/devices/kprobe/type: {e}; kernel without \
                 CONFIG_KPROBES?)"
            ),
            KprobeError::Sys(what, errno) => sys(what, errno),
        })?;
        Ok((prog, event))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// The kprobe flavour passes the verifier even where it cannot be attached (no
        /// CONFIG_KPROBES): loading needs only CAP_BPF and CAP_PERFMON.
        #[test]
        fn kprobe_program_loads_where_permitted() {
            if !crate::is_root() {
                println!("skipped: needs root (loads a BPF program)");
                return;
            }
            let ring_map =
                bpf::map_create(bpf::MAP_TYPE_RINGBUF, 0, 0, RING_SIZE, "t_ring").unwrap();
            let lost_map = bpf::map_create(bpf::MAP_TYPE_ARRAY, 4, 8, 1, "t_lost").unwrap();
            let insns = program(
                bpf::Insn::ldx_dw(6, 1, PT_REGS_DI),
                ring_map.as_fd(),
                lost_map.as_fd(),
            );
            let r = bpf::prog_load(&ProgSpec {
                prog_type: bpf::PROG_TYPE_KPROBE,
                expected_attach_type: 0,
                attach_btf_id: 0,
                name: "t_kprobe",
                insns: &insns,
            });
            if let Err(e) = &r {
                panic!(
                    "{}",
                    load_error(
                        "load",
                        LoadError {
                            errno: e.errno,
                            log: e.log.clone()
                        }
                    )
                );
            }
            assert_eq!(bpf::map_lookup_u64(lost_map.as_fd(), 0), Ok(0));
        }

        /// Whether `fd` polls readable right now.
        fn readable(fd: BorrowedFd<'_>) -> bool {
            use rustix::event::{poll, PollFd, PollFlags, Timespec};
            let mut fds = [PollFd::new(&fd, PollFlags::IN)];
            let zero = Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            poll(&mut fds, Some(&zero)).unwrap() == 1
        }

        /// The ring buffer, its consumer and the loss counter end to end, with the watch's
        /// program shape loaded as a socket filter (reporting `skb->len`) and run by
        /// `BPF_PROG_TEST_RUN`: tracing programs cannot be triggered on demand, and some hosts
        /// refuse them altogether.
        #[test]
        fn ring_reports_in_order_wraps_and_counts_losses() {
            if !crate::is_root() {
                println!("skipped: needs root (loads a BPF program)");
                return;
            }
            let ring_map =
                bpf::map_create(bpf::MAP_TYPE_RINGBUF, 0, 0, RING_SIZE, "t_ring").unwrap();
            let lost_map = bpf::map_create(bpf::MAP_TYPE_ARRAY, 4, 8, 1, "t_lost").unwrap();
            let mut ring = Ring::map(ring_map.as_fd(), RING_SIZE as usize).unwrap();
            // `struct __sk_buff`'s first field is `__u32 len`.
            let insns = program(
                bpf::Insn::ldx_w(6, 1, 0),
                ring_map.as_fd(),
                lost_map.as_fd(),
            );
            let prog = bpf::prog_load(&ProgSpec {
                prog_type: bpf::PROG_TYPE_SOCKET_FILTER,
                expected_attach_type: 0,
                attach_btf_id: 0,
                name: "t_filter",
                insns: &insns,
            })
            .unwrap_or_else(|e| panic!("{}", load_error("load", e)));
            let drain = |ring: &mut Ring| {
                let mut out = Vec::new();
                ring.drain(|rec| out.push(u64::from_ne_bytes(rec.try_into().unwrap())));
                out
            };
            let run = |len: usize, repeat: u32| {
                bpf::test_run(prog.as_fd(), &vec![0u8; len], repeat).unwrap();
            };
            assert!(!readable(ring_map.as_fd()));
            assert_eq!(drain(&mut ring), Vec::<u64>::new());

            for n in 0..10 {
                run(64 + n, 1);
            }
            assert!(readable(ring_map.as_fd()), "records wait");
            let got = drain(&mut ring);
            assert_eq!(got.len(), 10, "{got:?}");
            let base = got[0];
            assert_eq!(got, (0..10).map(|n| base + n).collect::<Vec<_>>());
            assert!(!readable(ring_map.as_fd()), "drained");

            // More than the ring holds: the rest is counted as lost.
            let runs = 20_000u32;
            run(64, runs);
            let got = drain(&mut ring);
            let lost = bpf::map_lookup_u64(lost_map.as_fd(), 0).unwrap();
            assert!(got.iter().all(|&v| v == base), "payloads intact");
            assert_eq!(got.len() as u64 + lost, u64::from(runs));
            assert!(
                got.len() > 16_000 && lost > 3_000,
                "{} got, {lost} lost",
                got.len()
            );

            // The positions are now past the ring's end: records that wrap still read whole.
            for round in 0..3 {
                for n in 0..1000 {
                    run(64 + n % 7, 1);
                }
                let got = drain(&mut ring);
                let want: Vec<u64> = (0..1000).map(|n| base + n % 7).collect();
                assert_eq!(got, want, "round {round}");
            }
            assert_eq!(bpf::map_lookup_u64(lost_map.as_fd(), 0).unwrap(), lost);
        }

        #[test]
        fn verifier_log_reaches_the_error() {
            if !crate::is_root() {
                println!("skipped: needs root (loads a BPF program)");
                return;
            }
            // Reads r6 before writing it.
            let insns = [bpf::Insn::mov64(0, 6), bpf::Insn::exit()];
            let e = bpf::prog_load(&ProgSpec {
                prog_type: bpf::PROG_TYPE_KPROBE,
                expected_attach_type: 0,
                attach_btf_id: 0,
                name: "t_bad",
                insns: &insns,
            })
            .unwrap_err();
            let msg = load_error("load", e);
            assert!(
                msg.contains("EACCES") && msg.contains("R6 !read_ok"),
                "{msg}"
            );
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn program_jumps_land_on_the_exit_sequence() {
        // Only the encoding's shape is checked here (the verifier checks the rest in the
        // root-only tests): 22 slots, jumps at 10 and 17 both land on slot 20, "r0 = 0".
        let fd = std::fs::File::open("/dev/null").unwrap();
        let p = program(bpf::Insn::ldx_dw(6, 1, 0), fd.as_fd(), fd.as_fd());
        assert_eq!(p.len(), 22);
        assert_eq!(p[10], bpf::Insn::jeq_imm(0, 0, 9));
        assert_eq!(p[17], bpf::Insn::jeq_imm(0, 0, 2));
        assert_eq!(p[20], bpf::Insn::mov64_imm(0, 0));
        assert_eq!(p[21], bpf::Insn::exit());
    }
}
