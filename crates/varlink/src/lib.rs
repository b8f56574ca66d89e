//! Varlink for credns: a server built to survive hostile local clients, and a blocking
//! client.
//!
//! Varlink messages are JSON objects, each followed by a NUL byte, on a Unix stream socket.
//! A call names a fully qualified method (`io.credns.Registry.Allocate`) and carries
//! `parameters`; `oneway` asks for no reply, `more` lets the method send several replies
//! (all but the last marked `"continues": true`). Errors are replies naming a fully qualified
//! error (`org.varlink.service.MethodNotFound`). File descriptors travel as `SCM_RIGHTS`
//! with a message's bytes and belong to the message they came with: the one the read that
//! brought them ends in, which for a client sending each call with its own `sendmsg(2)` (as
//! [`Client`] and systemd do) is that call, pipelined calls before it notwithstanding.
//!
//! # Server design
//!
//! Every local user may connect, and any of them may be hostile, so nothing a caller does may
//! make the [`Server`] hold unbounded memory, threads or descriptors, or starve other callers:
//!
//! * **One event loop** ([`Server::serve`]'s thread) owns the listener and every connection,
//!   through epoll ([`credns_sys::event`]). It accepts, reads nonblocking (with descriptors,
//!   `MSG_CMSG_CLOEXEC`), frames messages, writes queued replies as the socket takes them,
//!   and enforces timeouts and [`Limits`]. It never runs a method.
//! * **A fixed pool of workers** ([`Limits::workers`]) runs methods. Complete calls wait in a
//!   queue where uid 0's calls come first, so root is answered while other users flood it.
//!   A connection has at most one call in flight; meanwhile the loop stops reading it
//!   (backpressure), and calls it pipelined are run in order afterwards, so the queue never
//!   holds more calls than there are connections. Workers hand replies back to the loop over
//!   a channel and wake it with an eventfd; a `more` method's intermediate replies are queued
//!   as [`Call::reply_continues`] produces them.
//! * **Limits**: connections per principal and in total, with a reserve only uid 0 may use
//!   (peers over a limit are closed at accept, by `SO_PEERCRED`); bytes of one message and
//!   descriptors with it; reply bytes a peer leaves unread; idle connections and messages
//!   left unfinished time out. Running out of descriptors on accept pauses accepting, never
//!   the loop. A method that panics is logged and its connection closed; the daemon goes on.
//!
//! `org.varlink.service` (`GetInfo`, `GetInterfaceDescription`) is answered by the server
//! from the registered [`Interface`]s; calls of methods their descriptions do not declare are
//! answered `MethodNotFound`; `upgrade` is not supported (`MethodNotImplemented`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod call;
mod client;
mod error;
mod server;
mod wire;

pub use call::{parameters_as, Call, Interface, Peer};
pub use client::{Client, MAX_REPLY};
pub use error::Error;
pub use server::{Limits, Server, ServerInfo};
pub use wire::{
    next_message, parse_request, reply_text, request_text, ErrorReply, Request, DISCONNECTED,
    SERVICE_IDL, SERVICE_INTERFACE,
};
