//! `libsubid_credns.so`: shadow's libsubid provider. With `subid: credns` in
//! `/etc/nsswitch.conf`, libsubid (newuidmap and newgidmap, getsubids, podman) `dlopen`s this
//! library and asks it, instead of `/etc/subuid` and `/etc/subgid`, which ranges a user may
//! use: the ranges the credns registry delegated to that user (`credns delegate USER`).
//!
//! The answers come from the daemon's `io.credns.Subid` over its socket (the blocking client
//! of crates/api, never the store), with a [`query::TIMEOUT`] for connecting and answering. No
//! answer is `SUBID_STATUS_ERROR_CONN` (newuidmap then refuses the map), never a guess.
//! `CREDNS_SOCKET` names another socket, except in a process that gained privilege at exec
//! (`AT_SECURE`: setuid newuidmap), where it is ignored. A user the daemon's passwd does not
//! name is asked about again by the uid this process's name service gives (`getpwnam_r`).
//!
//! The C ABI is shadow's (`lib/prototypes.h`, `struct subid_nss_ops`): `has_range`,
//! `list_owner_ranges`, `find_subid_owners`, and `free` (required from shadow 4.16). Arrays
//! handed to the caller are allocated with `malloc`, which the caller (shadow before 4.16)
//! may release with `free` itself. Pointers are checked for null; a panic is caught and
//! answered `SUBID_STATUS_ERROR`.
//!
//! This crate and crates/sys are the only ones with `unsafe`: a C ABI cannot be written
//! without it. Every unsafe block says why it is sound.
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

pub mod query;

use std::ffi::{c_char, c_int, c_ulong, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use query::{kind, socket, Provider, Status};

/// shadow's `struct subid_range`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubidRange {
    /// First id.
    pub start: c_ulong,
    /// Ids in it.
    pub count: c_ulong,
}

/// Whether this process gained privilege at exec (setuid, setgid or file capabilities): then
/// the environment is its caller's and names no socket.
fn secure() -> bool {
    // SAFETY: getauxval reads the process's auxiliary vector; any type is a valid argument.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// The owner's name, if `owner` is a non-null NUL-terminated string of UTF-8.
///
/// # Safety
/// `owner` is null or points to a NUL-terminated string that lives for the call.
unsafe fn owner_name<'a>(owner: *const c_char) -> Result<&'a str, Status> {
    if owner.is_null() {
        return Err(Status::Error);
    }
    // SAFETY: not null (checked), and NUL-terminated for the call by the caller's contract.
    let c = unsafe { CStr::from_ptr(owner) };
    // A name that is not UTF-8 names no user the daemon has.
    c.to_str().map_err(|_| Status::UnknownUser)
}

/// Run `f`, turning a panic into `SUBID_STATUS_ERROR` (unwinding into C is not allowed).
fn guarded(f: impl FnOnce() -> Result<(), Status>) -> Status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => Status::Success,
        Ok(Err(s)) => s,
        Err(_) => Status::Error,
    }
}

/// `unsigned long` as u64 (it is u32 on 32-bit targets).
#[allow(clippy::useless_conversion)]
fn wide(x: c_ulong) -> u64 {
    u64::from(x)
}

fn provider() -> Result<Provider, Status> {
    Provider::connect(&socket(secure()), local_uid)
}

/// The uid this process's name service (nsswitch `passwd:`) gives `name`, as the caller itself
/// resolved it (newuidmap passes the name of its real uid).
fn local_uid(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: passwd is plain old data (integers and pointers); all zeros is a valid value.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as c_char; 16384];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: c is NUL-terminated; pw, buf (with its length) and out are valid for the call.
    let r = unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
    (r == 0 && !out.is_null()).then_some(pw.pw_uid)
}

/// Copy `items` into an array from `malloc` (null for none), for the caller to `free`.
fn malloc_array<T: Copy>(items: &[T]) -> Result<*mut T, Status> {
    if items.is_empty() {
        return Ok(std::ptr::null_mut());
    }
    let bytes = std::mem::size_of_val(items);
    // SAFETY: malloc takes any size and returns memory suitably aligned for any type, or null.
    let p = unsafe { libc::malloc(bytes) }.cast::<T>();
    if p.is_null() {
        return Err(Status::Error);
    }
    // SAFETY: p is a fresh allocation of `bytes` = items.len() * size_of::<T>() bytes, aligned
    // for T, that cannot overlap `items`.
    unsafe { std::ptr::copy_nonoverlapping(items.as_ptr(), p, items.len()) };
    Ok(p)
}

/// `enum subid_status shadow_subid_has_range(const char *owner, unsigned long start,
/// unsigned long count, enum subid_type t, bool *result)`: whether every id of
/// `[start, start + count)` is delegated to `owner` (false for a count of 0).
///
/// # Safety
/// `owner` is null or a NUL-terminated string; `result` is null or points to a writable bool.
#[no_mangle]
pub unsafe extern "C" fn shadow_subid_has_range(
    owner: *const c_char,
    start: c_ulong,
    count: c_ulong,
    t: c_int,
    result: *mut bool,
) -> Status {
    if result.is_null() {
        return Status::Error;
    }
    // SAFETY: result is not null (checked) and writable by the caller's contract.
    unsafe { result.write(false) };
    guarded(|| {
        // SAFETY: owner is null or NUL-terminated by the caller's contract.
        let owner = unsafe { owner_name(owner) }?;
        let kind = kind(t)?;
        let has = provider()?.has_range(owner, wide(start), wide(count), kind)?;
        // SAFETY: result is not null (checked above) and writable by the caller's contract.
        unsafe { result.write(has) };
        Ok(())
    })
}

/// `enum subid_status shadow_subid_list_owner_ranges(const char *owner, enum subid_type t,
/// struct subid_range **ranges, int *count)`: the ranges delegated to `owner`, in a `malloc`ed
/// array (null when there are none).
///
/// # Safety
/// `owner` is null or a NUL-terminated string; `ranges` and `count` are null or writable.
#[no_mangle]
pub unsafe extern "C" fn shadow_subid_list_owner_ranges(
    owner: *const c_char,
    t: c_int,
    ranges: *mut *mut SubidRange,
    count: *mut c_int,
) -> Status {
    if ranges.is_null() || count.is_null() {
        return Status::Error;
    }
    // SAFETY: both are not null (checked) and writable by the caller's contract.
    unsafe { ranges.write(std::ptr::null_mut()) };
    // SAFETY: as above, for count.
    unsafe { count.write(0) };
    guarded(|| {
        // SAFETY: owner is null or NUL-terminated by the caller's contract.
        let owner = unsafe { owner_name(owner) }?;
        let kind = kind(t)?;
        let got: Vec<SubidRange> = provider()?
            .ranges(owner, kind)?
            .iter()
            .map(|r| SubidRange {
                start: r.start as c_ulong,
                count: r.len() as c_ulong,
            })
            .collect();
        let n = c_int::try_from(got.len()).map_err(|_| Status::Error)?;
        let array = malloc_array(&got)?;
        // SAFETY: ranges and count are not null (checked above) and writable.
        unsafe { ranges.write(array) };
        // SAFETY: as above, for count.
        unsafe { count.write(n) };
        Ok(())
    })
}

/// `enum subid_status shadow_subid_find_subid_owners(unsigned long id, enum subid_type t,
/// uid_t **uids, int *count)`: the uids whose delegations hold `id`, in a `malloc`ed array
/// (null when there are none).
///
/// # Safety
/// `uids` and `count` are null or writable.
#[no_mangle]
pub unsafe extern "C" fn shadow_subid_find_subid_owners(
    id: c_ulong,
    t: c_int,
    uids: *mut *mut libc::uid_t,
    count: *mut c_int,
) -> Status {
    if uids.is_null() || count.is_null() {
        return Status::Error;
    }
    // SAFETY: both are not null (checked) and writable by the caller's contract.
    unsafe { uids.write(std::ptr::null_mut()) };
    // SAFETY: as above, for count.
    unsafe { count.write(0) };
    guarded(|| {
        let kind = kind(t)?;
        let got = provider()?.owners(wide(id), kind)?;
        let n = c_int::try_from(got.len()).map_err(|_| Status::Error)?;
        let array = malloc_array(&got)?;
        // SAFETY: uids and count are not null (checked above) and writable.
        unsafe { uids.write(array) };
        // SAFETY: as above, for count.
        unsafe { count.write(n) };
        Ok(())
    })
}

/// `void shadow_subid_free(void *ptr)`: release an array this library returned.
///
/// # Safety
/// `ptr` is null or an array returned by this library and not freed yet.
#[no_mangle]
pub unsafe extern "C" fn shadow_subid_free(ptr: *mut c_void) {
    // SAFETY: null or a live malloc'ed block by the caller's contract; free accepts both.
    unsafe { libc::free(ptr) }
}
