//! Raw `bpf(2)` and `perf_event_open(2)`: the few commands [`super::NsFreeWatch`] needs, with
//! the attribute structs laid out as `include/uapi/linux/bpf.h` and `perf_event.h` define them.
//!
//! Every attribute struct here is `repr(C)` with no implicit padding (checked by the size
//! assertions below), so passing one to the kernel hands it only initialised bytes; the kernel
//! requires any byte past the fields it knows for a command to be zero, and reads no further
//! than the size passed.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::Errno;

/// `enum bpf_cmd`.
const BPF_MAP_CREATE: u32 = 0;
const BPF_MAP_LOOKUP_ELEM: u32 = 1;
const BPF_PROG_LOAD: u32 = 5;
#[cfg(test)]
const BPF_PROG_TEST_RUN: u32 = 10;
const BPF_RAW_TRACEPOINT_OPEN: u32 = 17;

/// `BPF_MAP_TYPE_ARRAY`.
pub(super) const MAP_TYPE_ARRAY: u32 = 2;
/// `BPF_MAP_TYPE_RINGBUF`.
pub(super) const MAP_TYPE_RINGBUF: u32 = 27;

/// `BPF_PROG_TYPE_SOCKET_FILTER`.
#[cfg(test)]
pub(super) const PROG_TYPE_SOCKET_FILTER: u32 = 1;
/// `BPF_PROG_TYPE_KPROBE`.
pub(super) const PROG_TYPE_KPROBE: u32 = 2;
/// `BPF_PROG_TYPE_TRACING`.
pub(super) const PROG_TYPE_TRACING: u32 = 26;
/// `BPF_TRACE_FENTRY` (`enum bpf_attach_type`).
pub(super) const TRACE_FENTRY: u32 = 24;

/// The `BPF_MAP_CREATE` part of `union bpf_attr`, up to `map_ifindex`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
    map_ifindex: u32,
}

/// The `BPF_MAP_*_ELEM` part of `union bpf_attr`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// The `BPF_PROG_LOAD` part of `union bpf_attr`, up to `attach_btf_obj_fd` (plus the
/// following `core_relo_cnt`, zero, which keeps the struct free of tail padding).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
    attach_btf_obj_fd: u32,
    core_relo_cnt: u32,
}

/// The `BPF_RAW_TRACEPOINT_OPEN` part of `union bpf_attr`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct RawTracepointAttr {
    name: u64,
    prog_fd: u32,
    _pad: u32,
}

/// `struct perf_event_attr` as of `PERF_ATTR_SIZE_VER8` (136 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct PerfEventAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    /// The bitfield word: bit 0 is `disabled`.
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    /// `kprobe_func`: a pointer to the probed function's name.
    config1: u64,
    /// `probe_offset`.
    config2: u64,
    branch_sample_type: u64,
    sample_regs_user: u64,
    sample_stack_user: u32,
    clockid: i32,
    sample_regs_intr: u64,
    aux_watermark: u32,
    sample_max_stack: u16,
    _reserved_2: u16,
    aux_sample_size: u32,
    aux_action: u32,
    sig_data: u64,
    config3: u64,
}

/// The `BPF_PROG_TEST_RUN` part of `union bpf_attr`, up to `batch_size`.
#[cfg(test)]
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

#[cfg(test)]
const _: () = assert!(std::mem::size_of::<TestRunAttr>() == 80);
const _: () = assert!(std::mem::size_of::<MapCreateAttr>() == 48);
const _: () = assert!(std::mem::size_of::<MapElemAttr>() == 32);
const _: () = assert!(std::mem::size_of::<ProgLoadAttr>() == 120);
const _: () = assert!(std::mem::size_of::<RawTracepointAttr>() == 16);
const _: () = assert!(std::mem::size_of::<PerfEventAttr>() == 136);

/// The attribute structs above: plain `repr(C)` data without padding.
trait BpfAttr: Copy {}
impl BpfAttr for MapCreateAttr {}
impl BpfAttr for MapElemAttr {}
impl BpfAttr for ProgLoadAttr {}
impl BpfAttr for RawTracepointAttr {}
#[cfg(test)]
impl BpfAttr for TestRunAttr {}

/// `bpf(cmd, attr, sizeof attr)`: the nonnegative result, or the errno.
fn sys_bpf<A: BpfAttr>(cmd: u32, attr: &mut A) -> Result<i64, Errno> {
    // SAFETY: `attr` is a live, exclusively borrowed attribute struct of this module (every
    // byte initialised, no padding) and the size passed is its own, so the kernel reads (and,
    // for some commands, writes back) only within it. Any pointer stored in it (instructions,
    // license, log buffer, key, value) was taken by the caller from a buffer that outlives this
    // call, with the length the command implies.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut A,
            std::mem::size_of::<A>() as libc::c_long,
        )
    };
    if r < 0 {
        Err(crate::last_errno())
    } else {
        Ok(r)
    }
}

/// A new fd the kernel returned.
fn owned(fd: i64) -> OwnedFd {
    // SAFETY: the commands that reach here (map create, prog load, raw tracepoint open,
    // perf_event_open) return a new file descriptor on success, which nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

fn name16(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    let n = name.len().min(15);
    out[..n].copy_from_slice(&name.as_bytes()[..n]);
    out
}

/// `BPF_MAP_CREATE`.
pub(super) fn map_create(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    name: &str,
) -> Result<OwnedFd, Errno> {
    let mut attr = MapCreateAttr {
        map_type,
        key_size,
        value_size,
        max_entries,
        map_name: name16(name),
        ..Default::default()
    };
    sys_bpf(BPF_MAP_CREATE, &mut attr).map(owned)
}

/// `BPF_MAP_LOOKUP_ELEM` of a `u32` key with a `u64` value.
pub(super) fn map_lookup_u64(map: BorrowedFd<'_>, key: u32) -> Result<u64, Errno> {
    let mut value = 0u64;
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        value: &mut value as *mut u64 as u64,
        ..Default::default()
    };
    sys_bpf(BPF_MAP_LOOKUP_ELEM, &mut attr)?;
    Ok(value)
}

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Insn {
    code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

const _: () = assert!(std::mem::size_of::<Insn>() == 8);

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Insn {
            code,
            regs: (src << 4) | (dst & 0x0f),
            off,
            imm,
        }
    }
    /// `dst = *(u64 *)(src + off)` (BPF_LDX | BPF_MEM | BPF_DW).
    pub(super) const fn ldx_dw(dst: u8, src: u8, off: i16) -> Self {
        Self::new(0x79, dst, src, off, 0)
    }
    /// `dst = *(u32 *)(src + off)` (BPF_LDX | BPF_MEM | BPF_W).
    #[cfg(test)]
    pub(super) const fn ldx_w(dst: u8, src: u8, off: i16) -> Self {
        Self::new(0x61, dst, src, off, 0)
    }
    /// `*(u64 *)(dst + off) = src` (BPF_STX | BPF_MEM | BPF_DW).
    pub(super) const fn stx_dw(dst: u8, off: i16, src: u8) -> Self {
        Self::new(0x7b, dst, src, off, 0)
    }
    /// `*(u32 *)(dst + off) = imm` (BPF_ST | BPF_MEM | BPF_W).
    pub(super) const fn st_w(dst: u8, off: i16, imm: i32) -> Self {
        Self::new(0x62, dst, 0, off, imm)
    }
    /// `lock *(u64 *)(dst + off) += src` (BPF_STX | BPF_ATOMIC | BPF_DW, BPF_ADD).
    pub(super) const fn atomic_add_dw(dst: u8, off: i16, src: u8) -> Self {
        Self::new(0xdb, dst, src, off, 0)
    }
    /// `dst = src` (BPF_ALU64 | BPF_MOV | BPF_X).
    pub(super) const fn mov64(dst: u8, src: u8) -> Self {
        Self::new(0xbf, dst, src, 0, 0)
    }
    /// `dst = imm` (BPF_ALU64 | BPF_MOV | BPF_K).
    pub(super) const fn mov64_imm(dst: u8, imm: i32) -> Self {
        Self::new(0xb7, dst, 0, 0, imm)
    }
    /// `wdst = wsrc`: 32-bit move, zeroing the upper half (BPF_ALU | BPF_MOV | BPF_X).
    pub(super) const fn mov32(dst: u8, src: u8) -> Self {
        Self::new(0xbc, dst, src, 0, 0)
    }
    /// `dst += imm` (BPF_ALU64 | BPF_ADD | BPF_K).
    pub(super) const fn add64_imm(dst: u8, imm: i32) -> Self {
        Self::new(0x07, dst, 0, 0, imm)
    }
    /// `if dst == imm goto +off` (BPF_JMP | BPF_JEQ | BPF_K).
    pub(super) const fn jeq_imm(dst: u8, imm: i32, off: i16) -> Self {
        Self::new(0x15, dst, 0, off, imm)
    }
    /// `call helper` (BPF_JMP | BPF_CALL).
    pub(super) const fn call(helper: i32) -> Self {
        Self::new(0x85, 0, 0, 0, helper)
    }
    /// `exit` (BPF_JMP | BPF_EXIT).
    pub(super) const fn exit() -> Self {
        Self::new(0x95, 0, 0, 0, 0)
    }
    /// `dst = map` (BPF_LD | BPF_IMM | BPF_DW with src_reg BPF_PSEUDO_MAP_FD): two slots.
    pub(super) fn ld_map_fd(dst: u8, map: BorrowedFd<'_>) -> [Self; 2] {
        [
            Self::new(0x18, dst, 1, 0, map.as_raw_fd()),
            Self::new(0, 0, 0, 0, 0),
        ]
    }
}

/// What a failed `BPF_PROG_LOAD` said.
#[derive(Debug)]
pub(super) struct LoadError {
    pub(super) errno: Errno,
    /// The verifier's log (from a second load with logging on), trimmed; empty if none.
    pub(super) log: String,
}

/// How a program is to be loaded.
pub(super) struct ProgSpec<'a> {
    pub(super) prog_type: u32,
    pub(super) expected_attach_type: u32,
    /// The BTF type id of the traced function in vmlinux's BTF (0 for kprobes).
    pub(super) attach_btf_id: u32,
    pub(super) name: &'a str,
    pub(super) insns: &'a [Insn],
}

/// `BPF_PROG_LOAD` under license "GPL". On failure it loads again with verifier logging on,
/// so the error carries the verifier's reason.
pub(super) fn prog_load(spec: &ProgSpec<'_>) -> Result<OwnedFd, LoadError> {
    let license: &CStr = c"GPL";
    let attempt = |log: &mut [u8]| {
        let mut attr = ProgLoadAttr {
            prog_type: spec.prog_type,
            insn_cnt: spec.insns.len() as u32,
            insns: spec.insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name: name16(spec.name),
            expected_attach_type: spec.expected_attach_type,
            attach_btf_id: spec.attach_btf_id,
            ..Default::default()
        };
        if !log.is_empty() {
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
        }
        sys_bpf(BPF_PROG_LOAD, &mut attr).map(owned)
    };
    let errno = match attempt(&mut []) {
        Ok(fd) => return Ok(fd),
        Err(errno) => errno,
    };
    let mut log = vec![0u8; 64 * 1024];
    let log = match attempt(&mut log) {
        // Loads with the log on but not without: report the first answer, without a log.
        Ok(_) => String::new(),
        Err(_) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            String::from_utf8_lossy(&log[..end]).trim().to_string()
        }
    };
    Err(LoadError { errno, log })
}

/// `BPF_PROG_TEST_RUN`: run `prog` `repeat` times on a packet of `data` (tests drive the
/// ring buffer with a socket filter this way, where no tracing program may be attached).
#[cfg(test)]
pub(super) fn test_run(prog: BorrowedFd<'_>, data: &[u8], repeat: u32) -> Result<u32, Errno> {
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: data.len() as u32,
        data_in: data.as_ptr() as u64,
        repeat,
        ..Default::default()
    };
    sys_bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    Ok(attr.retval)
}

/// `BPF_RAW_TRACEPOINT_OPEN` with no name: attaches an fentry program to the function it was
/// loaded for and returns the link (the program stays attached while the link fd is open).
pub(super) fn attach_tracing(prog: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    let mut attr = RawTracepointAttr {
        name: 0,
        prog_fd: prog.as_raw_fd() as u32,
        _pad: 0,
    };
    sys_bpf(BPF_RAW_TRACEPOINT_OPEN, &mut attr).map(owned)
}

/// `PERF_EVENT_IOC_ENABLE`: `_IO('$', 0)`.
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
/// `PERF_EVENT_IOC_SET_BPF`: `_IOW('$', 8, __u32)`.
const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;
/// `PERF_FLAG_FD_CLOEXEC`.
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;

/// Why a kprobe could not be attached.
#[derive(Debug)]
pub(super) enum KprobeError {
    /// `/sys/bus/event_source/devices/kprobe/type` could not be read.
    NoPmu(std::io::Error),
    /// A system call failed.
    Sys(&'static str, Errno),
}

/// A kprobe on `func` (perf_event_open(2) on the kprobe PMU, as libbpf does it) with `prog`
/// attached (`PERF_EVENT_IOC_SET_BPF`) and enabled; the probe lives while the returned perf
/// event fd is open.
pub(super) fn attach_kprobe(prog: BorrowedFd<'_>, func: &CStr) -> Result<OwnedFd, KprobeError> {
    let pmu = std::fs::read_to_string("/sys/bus/event_source/devices/kprobe/type")
        .map_err(KprobeError::NoPmu)?;
    let pmu: u32 = pmu.trim().parse().map_err(|_| {
        KprobeError::NoPmu(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not a number: {pmu:?}"),
        ))
    })?;
    let attr = PerfEventAttr {
        type_: pmu,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        flags: 1, // disabled until the program is set
        config1: func.as_ptr() as u64,
        config2: 0,
        ..Default::default()
    };
    // SAFETY: perf_event_open reads `size` bytes of the fully initialised, padding-free attr,
    // and the C string config1 points to (alive: borrowed for this whole function). pid -1 with
    // cpu 0 is a system-wide event; kprobe events run their BPF program on every CPU.
    let r = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            -1 as libc::c_int,
            0 as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if r < 0 {
        return Err(KprobeError::Sys(
            "perf_event_open(kprobe)",
            crate::last_errno(),
        ));
    }
    let event = owned(r);
    // SAFETY: PERF_EVENT_IOC_SET_BPF takes the program fd as its integer argument; both fds are
    // open for the call.
    let r = unsafe {
        libc::ioctl(
            event.as_raw_fd(),
            PERF_EVENT_IOC_SET_BPF as _,
            prog.as_raw_fd(),
        )
    };
    if r < 0 {
        return Err(KprobeError::Sys(
            "ioctl(PERF_EVENT_IOC_SET_BPF)",
            crate::last_errno(),
        ));
    }
    // SAFETY: PERF_EVENT_IOC_ENABLE takes an integer argument (0: this event only); the fd is
    // open.
    let r = unsafe { libc::ioctl(event.as_raw_fd(), PERF_EVENT_IOC_ENABLE as _, 0) };
    if r < 0 {
        return Err(KprobeError::Sys(
            "ioctl(PERF_EVENT_IOC_ENABLE)",
            crate::last_errno(),
        ));
    }
    Ok(event)
}
