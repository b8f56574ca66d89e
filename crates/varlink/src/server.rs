//! The server: one epoll loop owning every connection, a fixed pool of workers running
//! methods, limits on everything a caller can make it hold.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use credns_sys::event::{recv_nonblocking, send_nonblocking, Interest, Poller, Received, Waker};
use credns_sys::peer::{peer_cred, recv_with_fds, send_with_fds};
use credns_sys::Errno;
use serde_json::{json, Value};

use crate::call::{declared_methods, parameters_as, Call, Interface, Peer};
use crate::wire::{parse_request, reply_text, ErrorReply, SERVICE_IDL, SERVICE_INTERFACE};
use crate::Error;

/// What one caller may make the server hold. Every limit is enforced by the event loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one incoming message, without its NUL (default 64 KiB). A longer one is
    /// answered `org.varlink.service.InvalidParameter` (parameter `""`) and the connection
    /// closed.
    pub max_message: usize,
    /// File descriptors one message may carry (default 8). More pending descriptors than this
    /// without a complete message to attach them to, or a control message the kernel had to
    /// truncate, closes them and the connection at once.
    pub max_fds_per_message: usize,
    /// Worker threads running methods (default 4, at least 1).
    pub workers: usize,
    /// Connections of callers other than uid 0, in total (default 512). Over it, a new
    /// connection is closed at once.
    pub max_connections: usize,
    /// Connections of one principal (see [`Server::set_principal`]; default 16). Over it, a
    /// new connection is closed at once. Uid 0 is not counted.
    pub max_connections_per_principal: usize,
    /// Connections only uid 0 may open beyond `max_connections` (default 32).
    pub root_reserve: usize,
    /// A connection with no call in flight that sends nothing for this long is closed
    /// (default 30 s).
    pub idle_timeout: Duration,
    /// A message started but not finished within this long closes the connection (default
    /// 5 s).
    pub message_timeout: Duration,
    /// Reply bytes queued for a connection and not yet read by it (default 16 MiB). Over it,
    /// the connection is closed.
    pub max_output: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message: 64 << 10,
            max_fds_per_message: 8,
            workers: 4,
            max_connections: 512,
            max_connections_per_principal: 16,
            root_reserve: 32,
            idle_timeout: Duration::from_secs(30),
            message_timeout: Duration::from_secs(5),
            max_output: 16 << 20,
        }
    }
}

/// What `org.varlink.service.GetInfo` answers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerInfo {
    /// Vendor.
    pub vendor: String,
    /// Product.
    pub product: String,
    /// Version.
    pub version: String,
    /// URL.
    pub url: String,
}

struct Registered {
    iface: Arc<dyn Interface>,
    methods: Vec<String>,
}

/// A varlink server: interfaces, limits, and the loop that serves them.
pub struct Server {
    info: ServerInfo,
    limits: Limits,
    interfaces: Vec<Registered>,
    principal: Arc<dyn Fn(u32) -> u32 + Send + Sync>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("info", &self.info)
            .field("limits", &self.limits)
            .field(
                "interfaces",
                &self
                    .interfaces
                    .iter()
                    .map(|r| r.iface.name())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// What handling one message came to.
#[derive(Debug)]
enum Outcome {
    /// Send these bytes (NUL included).
    Reply(Vec<u8>),
    /// A oneway call: nothing to send.
    Nothing,
    /// Send these bytes if any, then close.
    Close(Option<Vec<u8>>),
}

fn frame(r: &Result<Value, ErrorReply>) -> Vec<u8> {
    let mut t = reply_text(r, false);
    t.push(0);
    t
}

/// The position of the first NUL in `buf` at or after `from`.
fn find_nul(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .iter()
        .position(|b| *b == 0)
        .map(|i| i + from)
}

/// Incoming bytes and the descriptors that came with them, cut into messages.
///
/// The kernel ends a `recvmsg(2)` on a stream socket right after the data that carried
/// descriptors, so a read's descriptors belong to the message its last byte is part of (the
/// call a client sent them with, even when calls before it arrived in the same read).
#[derive(Debug, Default)]
struct Framer {
    buf: Vec<u8>,
    /// Bytes of `buf` known to hold no NUL.
    scanned: usize,
    /// Descriptors, each with the index in `buf` of the last byte of the read that brought it.
    fds: Vec<(usize, OwnedFd)>,
}

impl Framer {
    fn push(&mut self, bytes: &[u8], fds: Vec<OwnedFd>) {
        self.buf.extend_from_slice(bytes);
        let pos = self.buf.len().saturating_sub(1);
        self.fds.extend(fds.into_iter().map(|f| (pos, f)));
    }

    /// The first complete message (without its NUL) and its descriptors.
    fn next(&mut self) -> Option<(Vec<u8>, Vec<OwnedFd>)> {
        let Some(end) = find_nul(&self.buf, self.scanned) else {
            self.scanned = self.buf.len();
            return None;
        };
        let msg: Vec<u8> = self.buf.drain(..=end).take(end).collect();
        self.scanned = 0;
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.fds)
            .into_iter()
            .partition(|(p, _)| *p <= end);
        self.fds = rest.into_iter().map(|(p, f)| (p - end - 1, f)).collect();
        Some((msg, mine.into_iter().map(|(_, f)| f).collect()))
    }

    fn len(&self) -> usize {
        self.buf.len()
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn fd_count(&self) -> usize {
        self.fds.len()
    }

    fn clear(&mut self) {
        *self = Framer::default();
    }
}

fn oversized(max: usize) -> Vec<u8> {
    frame(&Err(ErrorReply::invalid_parameter_message(
        "",
        format!("message longer than {max} bytes without a NUL terminator"),
    )))
}

impl Server {
    /// A server with no interface but `org.varlink.service`.
    pub fn new(info: ServerInfo, limits: Limits) -> Self {
        Server {
            info,
            limits,
            interfaces: Vec::new(),
            principal: Arc::new(|uid| uid),
        }
    }

    /// Serve `iface` (replacing one of the same name).
    pub fn add(&mut self, iface: Arc<dyn Interface>) {
        let methods = declared_methods(iface.description());
        self.interfaces.retain(|r| r.iface.name() != iface.name());
        self.interfaces.push(Registered { iface, methods });
    }

    /// Which principal a uid's connections count against for
    /// [`Limits::max_connections_per_principal`] (default: the uid itself).
    pub fn set_principal(&mut self, f: Arc<dyn Fn(u32) -> u32 + Send + Sync>) {
        self.principal = f;
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn service_call(&self, name: &str, method: &str, params: &Value) -> Result<Value, ErrorReply> {
        match name {
            "GetInfo" => {
                let mut interfaces = vec![SERVICE_INTERFACE.to_string()];
                interfaces.extend(self.interfaces.iter().map(|r| r.iface.name().to_string()));
                Ok(json!({
                    "vendor": self.info.vendor,
                    "product": self.info.product,
                    "version": self.info.version,
                    "url": self.info.url,
                    "interfaces": interfaces,
                }))
            }
            "GetInterfaceDescription" => {
                #[derive(serde::Deserialize)]
                #[serde(deny_unknown_fields)]
                struct P {
                    interface: String,
                }
                let p: P = parameters_as(params)?;
                if p.interface == SERVICE_INTERFACE {
                    return Ok(json!({ "description": SERVICE_IDL }));
                }
                match self
                    .interfaces
                    .iter()
                    .find(|r| r.iface.name() == p.interface)
                {
                    Some(r) => Ok(json!({ "description": r.iface.description() })),
                    None => Err(ErrorReply::interface_not_found(&p.interface)),
                }
            }
            _ => Err(ErrorReply::method_not_found(method)),
        }
    }

    /// Handle one complete message: parse, dispatch, run. `sink` takes intermediate replies.
    /// The descriptors not taken by the method are closed before this returns.
    fn handle(
        &self,
        msg: &[u8],
        peer: Peer,
        fds: Vec<OwnedFd>,
        sink: &mut dyn FnMut(Vec<u8>) -> bool,
    ) -> Outcome {
        let req = match parse_request(msg) {
            Ok(r) => r,
            Err(e) => return Outcome::Close(Some(frame(&Err(e)))),
        };
        let (iface, name) = req.method.rsplit_once('.').unwrap_or(("", &req.method));
        let result = if req.upgrade {
            Err(ErrorReply::method_not_implemented(&req.method))
        } else if iface == SERVICE_INTERFACE {
            drop(fds);
            self.service_call(name, &req.method, &req.parameters)
        } else if let Some(reg) = self.interfaces.iter().find(|r| r.iface.name() == iface) {
            if !reg.methods.is_empty() && !reg.methods.iter().any(|m| m == name) {
                Err(ErrorReply::method_not_found(&req.method))
            } else {
                let mut call = Call {
                    interface: iface,
                    method: name,
                    parameters: &req.parameters,
                    peer,
                    more: req.more,
                    oneway: req.oneway,
                    fds: fds.into_iter().map(Some).collect(),
                    sink,
                    gone: false,
                };
                let r = catch_unwind(AssertUnwindSafe(|| reg.iface.call(&mut call)));
                let gone = call.gone;
                drop(call);
                match r {
                    Err(_) => {
                        eprintln!(
                            "varlink: method {} panicked (caller uid {} pid {}); closing its \
                             connection",
                            req.method, peer.uid, peer.pid
                        );
                        return Outcome::Close(None);
                    }
                    Ok(_) if gone => return Outcome::Close(None),
                    Ok(r) => r,
                }
            }
        } else {
            Err(ErrorReply::interface_not_found(iface))
        };
        if req.oneway {
            Outcome::Nothing
        } else {
            Outcome::Reply(frame(&result))
        }
    }

    /// Answer one connected stream on the calling thread until the peer closes it or breaks
    /// the protocol, with the same framing and per-message limits as [`serve`](Self::serve);
    /// [`Limits::idle_timeout`] is the stream's read timeout. Errors only if the peer's
    /// credentials cannot be read.
    pub fn serve_stream(&self, stream: UnixStream) -> Result<(), Error> {
        let cred = peer_cred(stream.as_fd())?;
        let peer = Peer {
            uid: cred.uid,
            gid: cred.gid,
            pid: cred.pid.as_raw(),
        };
        let lim = &self.limits;
        let _ = stream.set_read_timeout(Some(lim.idle_timeout).filter(|d| !d.is_zero()));
        let send = |b: &[u8]| send_with_fds(stream.as_fd(), b, &[]).is_ok();
        let mut input = Framer::default();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            while let Some((msg, taken)) = input.next() {
                let mut sink = |b: Vec<u8>| send(&b);
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    self.handle(&msg, peer, taken, &mut sink)
                }))
                .unwrap_or(Outcome::Close(None));
                match outcome {
                    Outcome::Reply(b) => {
                        if !send(&b) {
                            return Ok(());
                        }
                    }
                    Outcome::Nothing => {}
                    Outcome::Close(b) => {
                        if let Some(b) = b {
                            send(&b);
                        }
                        return Ok(());
                    }
                }
            }
            if input.len() > lim.max_message {
                send(&oversized(lim.max_message));
                return Ok(());
            }
            if input.fd_count() > lim.max_fds_per_message {
                return Ok(());
            }
            let room = (lim.max_message + 1)
                .saturating_sub(input.len())
                .clamp(1, chunk.len());
            let mut fds = Vec::new();
            match recv_with_fds(stream.as_fd(), &mut chunk[..room], &mut fds) {
                Ok(0) | Err(_) => return Ok(()),
                Ok(n) => input.push(&chunk[..n], fds),
            }
        }
    }

    /// Serve connections accepted on `listener` until `stop` is set (looked at every 100 ms
    /// at most): one event-loop thread (the caller's) and [`Limits::workers`] worker threads.
    /// Raises the soft `RLIMIT_NOFILE` to the hard limit first. Running out of descriptors or
    /// memory on accept is logged to stderr once per burst and waited out (the listener is
    /// not polled for 100 ms); existing connections keep being served. After `stop`, calls
    /// not yet started are dropped, those running are finished and their replies written
    /// (for at most 2 s after the last one ends; [`Call::reply_continues`] fails from then
    /// on, so a stream ends and its connection is closed), every connection is closed, and
    /// `Ok(())` is returned. Errors only if the loop cannot be set up (epoll, eventfd, no worker
    /// thread).
    pub fn serve(&self, listener: UnixListener, stop: &AtomicBool) -> Result<(), Error> {
        if let Err(e) = credns_sys::event::raise_nofile_limit() {
            eprintln!("varlink: cannot raise the open file limit: {e}");
        }
        listener.set_nonblocking(true).map_err(|source| Error::Io {
            op: "set listener nonblocking",
            path: Default::default(),
            source,
        })?;
        let waker = Waker::new()?;
        let queue = JobQueue::default();
        let (tx, rx) = mpsc::channel::<FromWorker>();
        std::thread::scope(|s| {
            let mut spawned = 0;
            for i in 0..self.limits.workers.max(1) {
                let tx = tx.clone();
                let (queue, waker) = (&queue, &waker);
                let r = std::thread::Builder::new()
                    .name(format!("varlink-worker-{i}"))
                    .spawn_scoped(s, move || self.worker(queue, tx, waker));
                match r {
                    Ok(_) => spawned += 1,
                    Err(e) => eprintln!("varlink: cannot start worker thread {i}: {e}"),
                }
            }
            drop(tx);
            let r = if spawned == 0 {
                Err(Error::Io {
                    op: "spawn worker threads",
                    path: Default::default(),
                    source: std::io::Error::other("no worker thread could be started"),
                })
            } else {
                EventLoop::new(self, listener, &waker, &queue, rx).and_then(|mut lp| lp.run(stop))
            };
            queue.shut_down();
            r
        })
    }

    fn worker(&self, queue: &JobQueue, tx: Sender<FromWorker>, waker: &Waker) {
        while let Some(job) = queue.take() {
            if !job.shared.closed.load(Ordering::Acquire) {
                let conn = job.conn;
                let max_output = self.limits.max_output;
                let shared = &job.shared;
                let mut sink = |bytes: Vec<u8>| -> bool {
                    if shared.closed.load(Ordering::Acquire)
                        || queue.stopping.load(Ordering::Acquire)
                    {
                        return false;
                    }
                    let queued = shared.unsent.fetch_add(bytes.len(), Ordering::AcqRel);
                    if queued + bytes.len() > max_output {
                        shared.closed.store(true, Ordering::Release);
                        return false;
                    }
                    let ok = tx.send(FromWorker::Continues { conn, bytes }).is_ok();
                    waker.wake();
                    ok
                };
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    self.handle(&job.msg, job.peer, job.fds, &mut sink)
                }))
                .unwrap_or(Outcome::Close(None));
                let _ = tx.send(FromWorker::Done { conn, outcome });
                waker.wake();
            }
            queue.finished();
        }
    }
}

/// State a connection shares with the worker running its call.
#[derive(Debug, Default)]
struct ConnShared {
    /// The connection is closed (or must be): intermediate replies are refused.
    closed: AtomicBool,
    /// Reply bytes queued and not yet written, as last counted.
    unsent: AtomicUsize,
}

struct Job {
    conn: u64,
    peer: Peer,
    msg: Vec<u8>,
    fds: Vec<OwnedFd>,
    shared: Arc<ConnShared>,
}

#[derive(Default)]
struct Queues {
    root: VecDeque<Job>,
    other: VecDeque<Job>,
    running: usize,
    shutdown: bool,
}

/// The calls waiting for a worker: uid 0's first. It holds at most one call per connection,
/// so the connection limits bound it.
#[derive(Default)]
struct JobQueue {
    q: Mutex<Queues>,
    cond: Condvar,
    /// The server is stopping: intermediate replies are refused, so streams end.
    stopping: AtomicBool,
}

impl JobQueue {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        self.q.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, job: Job) {
        let mut q = self.lock();
        if job.peer.uid == 0 {
            q.root.push_back(job);
        } else {
            q.other.push_back(job);
        }
        drop(q);
        self.cond.notify_one();
    }

    /// The next call (counted as running), or `None` once shut down.
    fn take(&self) -> Option<Job> {
        let mut q = self.lock();
        loop {
            if q.shutdown {
                return None;
            }
            if let Some(j) = q.root.pop_front().or_else(|| q.other.pop_front()) {
                q.running += 1;
                return Some(j);
            }
            q = self.cond.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn finished(&self) {
        self.lock().running -= 1;
    }

    /// Drop the calls not started; returns their connections.
    fn clear(&self) -> Vec<u64> {
        let mut q = self.lock();
        let q = &mut *q;
        let dropped: Vec<Job> = q.root.drain(..).chain(q.other.drain(..)).collect();
        dropped.into_iter().map(|j| j.conn).collect()
    }

    fn running(&self) -> usize {
        self.lock().running
    }

    fn shut_down(&self) {
        self.lock().shutdown = true;
        self.cond.notify_all();
    }
}

enum FromWorker {
    Continues { conn: u64, bytes: Vec<u8> },
    Done { conn: u64, outcome: Outcome },
}

const LISTENER: u64 = 0;
const WAKER: u64 = 1;
const READ_CHUNK: usize = 64 << 10;
const ACCEPT_BURST: usize = 64;
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
const TICK: Duration = Duration::from_millis(100);
const STOP_FLUSH: Duration = Duration::from_secs(2);

struct Conn {
    stream: UnixStream,
    peer: Peer,
    principal: u32,
    input: Framer,
    out: Vec<u8>,
    out_pos: usize,
    in_flight: bool,
    read_eof: bool,
    /// The peer closed its end (`EPOLLHUP`): no longer in the epoll set; what it sent before
    /// is still read and run (a oneway call sent just before closing), replies fail.
    hung_up: bool,
    close_after_flush: bool,
    last_active: Instant,
    msg_started: Option<Instant>,
    interest: Interest,
    shared: Arc<ConnShared>,
}

struct EventLoop<'s> {
    server: &'s Server,
    listener: UnixListener,
    poller: Poller,
    waker: &'s Waker,
    queue: &'s JobQueue,
    rx: Receiver<FromWorker>,
    conns: HashMap<u64, Conn>,
    next_id: u64,
    per_principal: HashMap<u32, usize>,
    root_conns: usize,
    listener_paused_until: Option<Instant>,
    accept_failing: bool,
    stopping: Option<Instant>,
    chunk: Vec<u8>,
}

impl<'s> EventLoop<'s> {
    fn new(
        server: &'s Server,
        listener: UnixListener,
        waker: &'s Waker,
        queue: &'s JobQueue,
        rx: Receiver<FromWorker>,
    ) -> Result<Self, Error> {
        let poller = Poller::new(256)?;
        let readable = Interest {
            readable: true,
            writable: false,
        };
        poller.add(listener.as_fd(), LISTENER, readable)?;
        poller.add(waker.as_fd(), WAKER, readable)?;
        Ok(EventLoop {
            server,
            listener,
            poller,
            waker,
            queue,
            rx,
            conns: HashMap::new(),
            next_id: 2,
            per_principal: HashMap::new(),
            root_conns: 0,
            listener_paused_until: None,
            accept_failing: false,
            stopping: None,
            chunk: vec![0u8; READ_CHUNK],
        })
    }

    fn limits(&self) -> &'s Limits {
        &self.server.limits
    }

    fn run(&mut self, stop: &AtomicBool) -> Result<(), Error> {
        let mut last_sweep = Instant::now();
        loop {
            if self.stopping.is_none() && stop.load(Ordering::Acquire) {
                self.begin_stop();
            }
            let mut timeout = TICK;
            if let Some(until) = self.listener_paused_until {
                timeout = timeout.min(until.saturating_duration_since(Instant::now()));
            }
            let events = self.poller.wait(Some(timeout))?;
            for ev in events {
                match ev.token {
                    LISTENER => self.accept_burst(),
                    WAKER => self.waker.drain(),
                    id => self.conn_event(id, ev.readable, ev.writable, ev.hangup),
                }
            }
            self.drain_workers();
            let now = Instant::now();
            if let Some(until) = self.listener_paused_until {
                if now >= until && self.stopping.is_none() {
                    self.listener_paused_until = None;
                    let _ = self.poller.modify(
                        self.listener.as_fd(),
                        LISTENER,
                        Interest {
                            readable: true,
                            writable: false,
                        },
                    );
                }
            }
            if now.duration_since(last_sweep) >= TICK {
                last_sweep = now;
                self.sweep(now);
            }
            if let Some(since) = self.stopping {
                if self.queue.running() == 0 && !self.conns.values().any(|c| c.in_flight) {
                    self.drain_workers();
                    let flushed = self.conns.values().all(|c| c.out_pos >= c.out.len());
                    if flushed || now.duration_since(since) >= STOP_FLUSH {
                        let ids: Vec<u64> = self.conns.keys().copied().collect();
                        for id in ids {
                            self.close(id);
                        }
                        return Ok(());
                    }
                } else {
                    self.stopping = Some(now);
                }
            }
        }
    }

    fn begin_stop(&mut self) {
        self.stopping = Some(Instant::now());
        self.queue.stopping.store(true, Ordering::Release);
        let _ = self.poller.delete(self.listener.as_fd());
        for id in self.queue.clear() {
            self.close(id);
        }
        let idle: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.in_flight && c.out_pos >= c.out.len())
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            self.close(id);
        }
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        for id in ids {
            self.update_interest(id);
        }
    }

    fn accept_burst(&mut self) {
        for _ in 0..ACCEPT_BURST {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    self.accept_failing = false;
                    self.admit(stream);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e)
                    if e.raw_os_error() == Some(Errno::CONNABORTED.raw_os_error())
                        || e.raw_os_error() == Some(Errno::PROTO.raw_os_error()) =>
                {
                    // A connection that died in the backlog.
                    continue;
                }
                Err(e) => {
                    // EMFILE, ENFILE, ENOMEM, ENOBUFS or worse: stop polling the listener
                    // for a while, keep serving the connections there are.
                    if !self.accept_failing {
                        eprintln!(
                            "varlink: accept: {e}; not accepting for {} ms at a time until it \
                             works again",
                            ACCEPT_BACKOFF.as_millis()
                        );
                        self.accept_failing = true;
                    }
                    self.listener_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                    let _ =
                        self.poller
                            .modify(self.listener.as_fd(), LISTENER, Interest::default());
                    return;
                }
            }
        }
    }

    fn admit(&mut self, stream: UnixStream) {
        let Ok(cred) = peer_cred(stream.as_fd()) else {
            return;
        };
        let lim = self.limits();
        let total = self.conns.len();
        let root = cred.uid == 0;
        let principal = (self.server.principal)(cred.uid);
        if root {
            if total >= lim.max_connections + lim.root_reserve {
                return;
            }
        } else {
            let others = total - self.root_conns;
            let mine = self.per_principal.get(&principal).copied().unwrap_or(0);
            if others >= lim.max_connections
                || total >= lim.max_connections + lim.root_reserve
                || mine >= lim.max_connections_per_principal
            {
                return;
            }
        }
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        let interest = Interest {
            readable: true,
            writable: false,
        };
        if self.poller.add(stream.as_fd(), id, interest).is_err() {
            return;
        }
        if root {
            self.root_conns += 1;
        } else {
            *self.per_principal.entry(principal).or_insert(0) += 1;
        }
        self.conns.insert(
            id,
            Conn {
                stream,
                peer: Peer {
                    uid: cred.uid,
                    gid: cred.gid,
                    pid: cred.pid.as_raw(),
                },
                principal,
                input: Framer::default(),
                out: Vec::new(),
                out_pos: 0,
                in_flight: false,
                read_eof: false,
                hung_up: false,
                close_after_flush: false,
                last_active: Instant::now(),
                msg_started: None,
                interest,
                shared: Arc::default(),
            },
        );
    }

    fn close(&mut self, id: u64) {
        let Some(c) = self.conns.remove(&id) else {
            return;
        };
        c.shared.closed.store(true, Ordering::Release);
        let _ = self.poller.delete(c.stream.as_fd());
        if c.peer.uid == 0 {
            self.root_conns -= 1;
        } else if let Some(n) = self.per_principal.get_mut(&c.principal) {
            *n -= 1;
            if *n == 0 {
                self.per_principal.remove(&c.principal);
            }
        }
        // Dropping `c` closes the stream and any descriptors it was sent.
    }

    fn conn_event(&mut self, id: u64, readable: bool, writable: bool, hangup: bool) {
        if hangup {
            // Level-triggered and reported whatever the interest: leave the epoll set, then
            // read and run what the peer sent before it went.
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            if !c.hung_up {
                c.hung_up = true;
                let _ = self.poller.delete(c.stream.as_fd());
                self.drain_hung_up(id);
            }
            return;
        }
        if writable && !self.flush(id) {
            return;
        }
        if readable {
            self.read(id);
        }
    }

    /// Read a hung-up connection until a call is in flight or it is closed.
    fn drain_hung_up(&mut self, id: u64) {
        while let Some(c) = self.conns.get(&id) {
            if c.in_flight || c.close_after_flush || self.stopping.is_some() {
                return;
            }
            if c.read_eof {
                self.close(id);
                return;
            }
            self.read(id);
        }
    }

    /// One nonblocking read, then whatever it makes possible.
    fn read(&mut self, id: u64) {
        let lim = self.limits();
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.in_flight || c.close_after_flush || c.read_eof || self.stopping.is_some() {
            return;
        }
        let room = (lim.max_message + 1)
            .saturating_sub(c.input.len())
            .clamp(1, READ_CHUNK);
        let mut fds = Vec::new();
        let r = recv_nonblocking(
            c.stream.as_fd(),
            &mut self.chunk[..room],
            &mut fds,
            lim.max_fds_per_message,
        );
        match r {
            Ok(Received::Data(n)) => {
                let now = Instant::now();
                if c.input.is_empty() {
                    c.msg_started = Some(now);
                }
                c.input.push(&self.chunk[..n], fds);
                c.last_active = now;
            }
            Ok(Received::Eof) => c.read_eof = true,
            Ok(Received::WouldBlock) if c.hung_up => c.read_eof = true,
            Ok(Received::WouldBlock) => return,
            Ok(Received::FdsTruncated) | Err(_) => {
                self.close(id);
                return;
            }
        }
        if c.input.fd_count() > lim.max_fds_per_message {
            self.close(id);
            return;
        }
        self.process_input(id);
    }

    /// Dispatch the next buffered message if the connection is free; enforce the message
    /// size; close at end of stream.
    fn process_input(&mut self, id: u64) {
        let lim = self.limits();
        let stopping = self.stopping.is_some();
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.in_flight || c.close_after_flush || stopping {
            self.update_interest(id);
            return;
        }
        if let Some((msg, fds)) = c.input.next() {
            c.msg_started = (!c.input.is_empty()).then(Instant::now);
            c.in_flight = true;
            let job = Job {
                conn: id,
                peer: c.peer,
                msg,
                fds,
                shared: c.shared.clone(),
            };
            self.queue.push(job);
        } else {
            if c.input.len() > lim.max_message {
                c.input.clear();
                self.queue_output(id, oversized(lim.max_message), true);
                return;
            }
            if c.read_eof {
                c.close_after_flush = true;
                if c.out_pos >= c.out.len() {
                    self.close(id);
                    return;
                }
            }
        }
        self.update_interest(id);
    }

    fn update_interest(&mut self, id: u64) {
        let lim = self.limits();
        let stopping = self.stopping.is_some();
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.hung_up {
            return;
        }
        let want = Interest {
            readable: !c.in_flight
                && !c.close_after_flush
                && !c.read_eof
                && !stopping
                && c.input.len() <= lim.max_message,
            writable: c.out_pos < c.out.len(),
        };
        if want != c.interest {
            if self.poller.modify(c.stream.as_fd(), id, want).is_err() {
                self.close(id);
                return;
            }
            c.interest = want;
        }
    }

    /// Queue reply bytes and try to write them; `then_close` closes once they are written.
    fn queue_output(&mut self, id: u64, bytes: Vec<u8>, then_close: bool) {
        let lim = self.limits();
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.out_pos > 0 && c.out_pos * 2 >= c.out.len() {
            c.out.drain(..c.out_pos);
            c.out_pos = 0;
        }
        c.out.extend_from_slice(&bytes);
        c.close_after_flush |= then_close;
        if c.out.len() - c.out_pos > lim.max_output {
            self.close(id);
            return;
        }
        if self.flush(id) {
            self.update_interest(id);
        }
    }

    /// Write what the socket takes now. False if the connection was closed.
    fn flush(&mut self, id: u64) -> bool {
        let Some(c) = self.conns.get_mut(&id) else {
            return false;
        };
        while c.out_pos < c.out.len() {
            match send_nonblocking(c.stream.as_fd(), &c.out[c.out_pos..]) {
                Ok(0) => break,
                Ok(n) => c.out_pos += n,
                Err(_) => {
                    self.close(id);
                    return false;
                }
            }
        }
        if c.out_pos >= c.out.len() {
            c.out.clear();
            c.out_pos = 0;
            if c.close_after_flush {
                self.close(id);
                return false;
            }
        }
        c.shared
            .unsent
            .store(c.out.len() - c.out_pos, Ordering::Release);
        self.update_interest(id);
        true
    }

    fn drain_workers(&mut self) {
        while let Ok(m) = self.rx.try_recv() {
            match m {
                FromWorker::Continues { conn, bytes } => self.queue_output(conn, bytes, false),
                FromWorker::Done { conn, outcome } => {
                    let Some(c) = self.conns.get_mut(&conn) else {
                        continue;
                    };
                    c.in_flight = false;
                    c.last_active = Instant::now();
                    if !c.input.is_empty() {
                        c.msg_started = Some(c.last_active);
                    }
                    match outcome {
                        Outcome::Reply(b) => self.queue_output(conn, b, false),
                        Outcome::Nothing => {}
                        Outcome::Close(Some(b)) => {
                            self.queue_output(conn, b, true);
                            continue;
                        }
                        Outcome::Close(None) => {
                            self.close(conn);
                            continue;
                        }
                    }
                    self.process_input(conn);
                    if self.conns.get(&conn).is_some_and(|c| c.hung_up) {
                        self.drain_hung_up(conn);
                    }
                }
            }
        }
    }

    /// Close connections past their idle or message timeout.
    fn sweep(&mut self, now: Instant) {
        let lim = self.limits();
        let expired: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                !c.in_flight
                    && match c.msg_started {
                        Some(t) if !c.input.is_empty() => {
                            now.duration_since(t) >= lim.message_timeout
                        }
                        _ => now.duration_since(c.last_active) >= lim.idle_timeout,
                    }
            })
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.close(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(conn: u64, uid: u32) -> Job {
        Job {
            conn,
            peer: Peer {
                uid,
                gid: uid,
                pid: 1,
            },
            msg: Vec::new(),
            fds: Vec::new(),
            shared: Arc::default(),
        }
    }

    #[test]
    fn root_calls_are_taken_first_others_in_order() {
        let q = JobQueue::default();
        for (conn, uid) in [(1, 1000), (2, 1001), (3, 0), (4, 1000), (5, 0)] {
            q.push(job(conn, uid));
        }
        let order: Vec<u64> = (0..5).map(|_| q.take().unwrap().conn).collect();
        assert_eq!(order, [3, 5, 1, 2, 4]);
        assert_eq!(q.running(), 5);
        q.push(job(6, 1));
        assert_eq!(q.clear(), [6]);
        q.shut_down();
        assert!(q.take().is_none());
    }

    #[test]
    fn descriptors_belong_to_the_message_their_read_ended_in() {
        let fd = || rustix::pipe::pipe().unwrap().0;
        let mut f = Framer::default();
        f.push(b"one\0tw", vec![fd()]);
        f.push(b"o\0three\0", vec![fd(), fd()]);
        f.push(b"fo", vec![]);
        let (m, fds) = f.next().unwrap();
        assert_eq!((m.as_slice(), fds.len()), (&b"one"[..], 0));
        let (m, fds) = f.next().unwrap();
        assert_eq!((m.as_slice(), fds.len()), (&b"two"[..], 1));
        let (m, fds) = f.next().unwrap();
        assert_eq!((m.as_slice(), fds.len()), (&b"three"[..], 2));
        assert!(f.next().is_none());
        f.push(b"ur\0", vec![fd()]);
        let (m, fds) = f.next().unwrap();
        assert_eq!((m.as_slice(), fds.len()), (&b"four"[..], 1));
        assert!(f.is_empty() && f.fd_count() == 0);
    }

    #[test]
    fn find_nul_from() {
        assert_eq!(find_nul(b"ab\0c\0", 0), Some(2));
        assert_eq!(find_nul(b"ab\0c\0", 3), Some(4));
        assert_eq!(find_nul(b"ab", 5), None);
    }
}
