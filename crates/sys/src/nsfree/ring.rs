//! The consumer side of a `BPF_MAP_TYPE_RINGBUF`, read through `mmap(2)` as libbpf's
//! `ring_buffer__consume` does (`kernel/bpf/ringbuf.c`, `Documentation/bpf/ringbuf.rst`).
//!
//! The map's fd maps as: offset 0, one page, read-write: the consumer page, whose first word
//! is `consumer_pos`; offset one page, read-only: the producer page (first word
//! `producer_pos`) followed by the data area, mapped twice in a row so that a record that
//! wraps around the end can be read as one contiguous range. Positions are byte counts that
//! only grow; `pos & (size - 1)` is the offset in the data area. A record is an 8-byte header
//! (`u32 len` with [`BUSY`] while the producer is still writing it and [`DISCARD`] if it was
//! discarded, then a `u32` page offset the kernel uses) followed by `len` bytes, padded to 8.
//!
//! Memory-safety argument:
//! * Both mappings are created in [`Ring::map`] and removed only in `Drop`, so every pointer
//!   derived from them below is valid for as long as `&self`/`&mut self` is.
//! * The kernel writes `producer_pos` and record headers concurrently, so they are only read
//!   through `AtomicU64`/`AtomicU32` (page- and 8-byte aligned), with acquire loads: a header
//!   without [`BUSY`] was committed by the kernel with release ordering after it wrote the
//!   record's bytes, so those bytes are complete when read.
//! * `consumer_pos` is written only by this process, with a release store after the record's
//!   bytes were copied out: until then the kernel does not reuse that space.
//! * Offsets are masked into the data area and a record is read only if header plus payload
//!   fit in the data area's size, so reads stay inside the double mapping (2 × size bytes).
//! * [`Ring::drain`] takes `&mut self`, so one consumer at a time walks the ring.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::Errno;

/// `BPF_RINGBUF_BUSY_BIT`.
pub(super) const BUSY: u32 = 1 << 31;
/// `BPF_RINGBUF_DISCARD_BIT`.
pub(super) const DISCARD: u32 = 1 << 30;
/// `BPF_RINGBUF_HDR_SZ`.
const HDR: usize = 8;

/// A ring buffer's two mappings.
#[derive(Debug)]
pub(super) struct Ring {
    /// The consumer page (read-write), `page` bytes.
    consumer: NonNull<u8>,
    /// The producer page and the data area twice (read-only), `page + 2 * size` bytes.
    producer: NonNull<u8>,
    page: usize,
    /// The data area's size: the map's `max_entries`, a power of two and a page multiple.
    size: usize,
}

// SAFETY: the mappings belong to this value alone (nothing else holds their addresses) and are
// not tied to the thread that made them; the kernel side is thread-agnostic.
unsafe impl Send for Ring {}
// SAFETY: `&self` methods never touch the mappings' memory; walking the ring needs `&mut self`.
unsafe impl Sync for Ring {}

impl Ring {
    /// Map the ring buffer map `map` whose `max_entries` is `size`.
    pub(super) fn map(map: BorrowedFd<'_>, size: usize) -> Result<Ring, (&'static str, Errno)> {
        let page = rustix::param::page_size();
        assert!(size.is_power_of_two() && size % page == 0);
        // SAFETY: a new shared mapping at an address of the kernel's choosing (no existing
        // memory is affected) of the ring buffer's consumer page, which the kernel allows
        // read-write.
        let consumer = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.as_raw_fd(),
                0,
            )
        };
        if consumer == libc::MAP_FAILED {
            return Err((
                "mmap of the ring buffer's consumer page",
                crate::last_errno(),
            ));
        }
        // SAFETY: as above, read-only: the producer page and the double-mapped data area.
        let producer = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page + 2 * size,
                libc::PROT_READ,
                libc::MAP_SHARED,
                map.as_raw_fd(),
                page as libc::off_t,
            )
        };
        if producer == libc::MAP_FAILED {
            let errno = crate::last_errno();
            // SAFETY: `consumer` is the mapping of `page` bytes made above, not yet shared.
            unsafe { libc::munmap(consumer, page) };
            return Err(("mmap of the ring buffer's producer pages", errno));
        }
        Ok(Ring {
            consumer: NonNull::new(consumer.cast()).expect("mmap succeeded"),
            producer: NonNull::new(producer.cast()).expect("mmap succeeded"),
            page,
            size,
        })
    }

    fn consumer_pos(&self) -> &AtomicU64 {
        // SAFETY: the consumer page is mapped read-write for the life of `self`, page-aligned,
        // and its first 8 bytes are the kernel's `unsigned long consumer_pos`, accessed only
        // atomically.
        unsafe { &*self.consumer.as_ptr().cast::<AtomicU64>() }
    }

    fn producer_pos(&self) -> &AtomicU64 {
        // SAFETY: the producer page is mapped for the life of `self`, page-aligned, and its
        // first 8 bytes are `producer_pos`, which the kernel writes atomically. It is only
        // loaded, so the read-only protection is respected.
        unsafe { &*self.producer.as_ptr().cast::<AtomicU64>() }
    }

    /// The address of data-area offset `off` (< 2 × size).
    fn data(&self, off: usize) -> *const u8 {
        debug_assert!(off < 2 * self.size);
        // SAFETY: the data area starts one page into the producer mapping and is 2 × size
        // bytes long; `off` is within it.
        unsafe { self.producer.as_ptr().add(self.page + off) }
    }

    /// Every committed record's payload, in order, passed to `each`; stops at a record still
    /// being written. Advances `consumer_pos` past what it read.
    pub(super) fn drain(&mut self, mut each: impl FnMut(&[u8])) {
        let mask = self.size - 1;
        let mut cons = self.consumer_pos().load(Ordering::Acquire);
        loop {
            let prod = self.producer_pos().load(Ordering::Acquire);
            if cons >= prod {
                return;
            }
            while cons < prod {
                let off = (cons as usize) & mask;
                // SAFETY: record headers are 8-byte aligned (positions advance in multiples of
                // 8 and the data area is page-aligned), lie inside the mapping (`off` < size),
                // and are written by the kernel atomically; they are only loaded.
                let header = unsafe { &*self.data(off).cast::<AtomicU32>() };
                let len = header.load(Ordering::Acquire);
                if len & BUSY != 0 {
                    return;
                }
                let payload = (len & !(BUSY | DISCARD)) as usize;
                let total = (payload + HDR + 7) & !7;
                if total > self.size {
                    // Not a record the kernel can write: stop rather than read outside.
                    return;
                }
                if len & DISCARD == 0 {
                    // SAFETY: header and payload span `off .. off + total`, with off < size
                    // and total <= size, inside the 2 × size double mapping. The record is
                    // committed (acquire load above) and the kernel leaves it alone until
                    // consumer_pos moves past it, so the bytes do not change while borrowed.
                    let bytes =
                        unsafe { std::slice::from_raw_parts(self.data(off + HDR), payload) };
                    each(bytes);
                }
                cons += total as u64;
                self.consumer_pos().store(cons, Ordering::Release);
            }
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: both are the mappings made in `map` with these lengths; nothing borrows them
        // any more (borrows are tied to `&self`/`&mut self`, which `drop` holds exclusively).
        unsafe { libc::munmap(self.consumer.as_ptr().cast(), self.page) };
        // SAFETY: as above.
        unsafe { libc::munmap(self.producer.as_ptr().cast(), self.page + 2 * self.size) };
    }
}
