//! Helper processes in new user namespaces, driven over a socket (`unshare(2)`,
//! `user_namespaces(7)`).
//!
//! A helper is a process forked from the caller (or from another helper, for nested
//! namespaces) that sets itself up (ids, capabilities, `unshare(CLONE_NEWUSER)`) and then does
//! what it is told over a `SOCK_SEQPACKET` socket, one message per request and per reply.
//! The files are named by the side of the fork their code runs on:
//!
//! | file | side | what |
//! |---|---|---|
//! | `protocol` | both | the wire: request and reply headers, payload layouts, fd passing |
//! | `api` | parent | the public values calls take and return ([`UnshareOptions`], [`FullCreds`], ...) |
//! | `parent` | parent | [`UsernsChild`]: spawning, the channel, ending the helper on drop |
//! | `parent_requests` | parent | requests about files, fds, sockets and processes |
//! | `parent_creds` | parent | requests about credentials and namespaces |
//! | `child_main` | child | from the fork to `_exit`: take-over, setup, the request loop, nested forks |
//! | `child_serve` | child | serving one request |
//! | `child_calls` | child | `OP_CALL`: one system call made as the helper |
//! | `child_creds` | child | setting credentials: ids, groups, capability sets, securebits |
//! | `child_tables` | child | the fd table and the list of nested helpers |
//! | `parent_dirent`, `child_dirent` | both | directory-entry calls: unlink, rmdir, rename, link, symlink |
//! | `parent_attrs`, `child_attrs` | both | truncate, utimensat, setxattr as the helper |
//! | `parent_caps`, `child_caps` | both | fs ids, `capset`, the capability `prctl`s |
//! | `child_scm` | child | `SCM_CREDENTIALS` sent and received on the helper's sockets |
//! | `child_reexec` | child | `execve` of the re-exec program, and that program's start |
//!
//! The child side runs in a fork of a possibly multithreaded process, so it only makes raw
//! system calls on buffers allocated before the fork: no allocation, no locks, no stdio. It
//! keeps its control socket as fd 3; every other fd above 2 is closed at start, so no helper
//! holds another helper's socket and each sees end-of-file (and exits) when its controller
//! goes away.

mod api;
mod child_attrs;
mod child_calls;
mod child_caps;
mod child_creds;
mod child_dirent;
mod child_main;
mod child_nstypes;
mod child_reexec;
mod child_scm;
mod child_serve;
mod child_sys;
mod child_tables;
mod parent;
mod parent_attrs;
mod parent_caps;
mod parent_creds;
mod parent_dirent;
mod parent_nstypes;
mod parent_requests;
mod protocol;

pub use api::{
    write_fd, Actor, CapSets, FullCreds, HelperIds, Ids, RemoteFd, SetId, UnshareOptions, WriteHow,
};
pub use child_reexec::reexec_helper_main;
pub(crate) use child_sys::exit_now;
pub use parent::UsernsChild;
pub use parent_attrs::UtimensTimes;
