//! The daemon: the registry held open, the namespace death watch, and `io.credns.Registry`
//! served over varlink on a Unix socket.

use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use credns_api::registry::{IDL, INTERFACE};
use credns_registry::{Policy, Registry};
use credns_sys::{Pid, ProcFs};
use credns_varlink::{Call, ErrorReply, Interface, Limits, ServerInfo};
use serde_json::Value;

use crate::cell::RegistryCell;
use crate::methods::{Caller, Methods};
use crate::nswatch::NsWatch;
use crate::Error;

/// Where the daemon keeps its store unless told otherwise.
pub const DEFAULT_STORE: &str = "/var/lib/credns/registry.redb";

/// How many ranges the daemon holds ready by default: enough for a burst of containers
/// between two refills (every quarter second).
pub const DEFAULT_RESERVE: usize = 8;

/// How to open a [`Service`].
#[derive(Clone, Debug)]
pub struct Config {
    /// The redb store.
    pub store: PathBuf,
    /// The allocation policy.
    pub policy: Policy,
    /// The procfs to scan and to write maps through.
    pub procfs: ProcFs,
    /// Directory holding `passwd`, `group`, `subuid`, `subgid` whose ids are never allocated
    /// (`/etc`); `None` reads none.
    pub etc: Option<PathBuf>,
    /// Take a store older than its last recorded commit as it is (recovery; see DESIGN.md).
    pub accept_rollback: bool,
    /// Ranges held ready for namespace leases (0: every allocation commits durably first).
    pub reserve: usize,
}

impl Config {
    /// Defaults: the store at `store`, the default policy, `/proc`, `/etc`.
    pub fn new(store: impl Into<PathBuf>) -> Self {
        Config {
            store: store.into(),
            policy: Policy::default(),
            procfs: ProcFs::new(),
            etc: Some("/etc".into()),
            accept_rollback: false,
            reserve: DEFAULT_RESERVE,
        }
    }
}

pub(crate) struct Inner {
    pub(crate) methods: Methods,
    /// The daemon's death watch; none on the direct path.
    watch: Option<Arc<NsWatch>>,
    reserve: usize,
    /// The daemon logs each call; a command's own calls (the direct path) are its output.
    log_calls: bool,
    /// The host's id files (the passwd that names users for `io.credns.Subid`).
    etc: Option<PathBuf>,
}

/// The daemon's registry and methods, shared between the server's workers and the reaper.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").finish_non_exhaustive()
    }
}

impl Service {
    /// Open and lock the store, exclude host ids, scan live namespaces, reap leases whose
    /// namespace is gone and start watching the rest.
    pub fn open(cfg: &Config) -> Result<Self, Error> {
        let cell = RegistryCell::held(cfg)?;
        let own_ns = cfg.procfs.userns(Pid::this()).ok();
        let watch = Arc::new(NsWatch::new(cfg.procfs.clone(), own_ns)?);
        let methods = Methods {
            cell,
            procfs: cfg.procfs.clone(),
            own_ns,
            leases: watch.clone(),
            reservations: cfg.reserve > 0,
            unflushed: Default::default(),
            taken: Default::default(),
            keys: crate::keys::KeyHome::new(&cfg.store),
        };
        methods.cell.with(|reg| -> Result<(), Error> {
            methods.keys.sweep(&methods.procfs);
            watch.reap_and_watch(reg, &methods.keys)?;
            watch.rebind_reservations(reg)?;
            // Best effort: a full pool or disk leaves allocations to the durable path.
            let _ = reg.top_up_reserve(cfg.reserve);
            Ok(())
        })??;
        Ok(Service {
            inner: Arc::new(Inner {
                methods,
                watch: Some(watch),
                reserve: cfg.reserve,
                log_calls: true,
                etc: cfg.etc.clone(),
            }),
        })
    }

    /// Allocate under `policy` from now on (a reload); an invalid one is refused and the
    /// policy in force kept. Allocations are kept whatever the new pool.
    pub fn set_policy(&self, policy: Policy) -> Result<(), Error> {
        Ok(self
            .inner
            .methods
            .cell
            .with(|reg| reg.set_policy(policy))??)
    }

    /// Run `f` with the registry locked: a caller holding it knows no commit is in flight.
    pub fn with_registry<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> Result<T, Error> {
        self.inner.methods.cell.with(f)
    }

    /// Run one method of `io.credns.Registry` for `caller`, in this process. `fds` are the
    /// descriptors that came with the request.
    pub fn call(
        &self,
        caller: Caller,
        method: &str,
        params: &Value,
        fds: &mut [Option<OwnedFd>],
    ) -> Result<Value, ErrorReply> {
        self.inner
            .methods
            .call(caller, method, params, &mut crate::methods::SliceFds(fds))
    }

    /// Serve exit events of leased namespaces' processes until `stop` is set (on its own
    /// thread); meanwhile make reservation bindings durable and refill the reservations.
    pub fn run_reaper(&self, stop: &AtomicBool) {
        if let Some(w) = &self.inner.watch {
            w.run_reaper(&self.inner.methods, stop, self.inner.reserve)
        }
    }

    /// Which principal a uid's connections count against: a uid inside an allocation counts
    /// against that allocation's owner (as its quota does).
    pub fn principal_fn(&self) -> Arc<dyn Fn(u32) -> u32 + Send + Sync> {
        let inner = self.inner.clone();
        Arc::new(move |uid| inner.methods.principal_of(uid))
    }

    /// The varlink interface of these methods.
    pub fn interface(&self) -> Arc<dyn Interface> {
        Arc::new(RegistryInterface(self.inner.clone()))
    }

    /// `io.credns.Subid` (delegations to users) over the same registry.
    pub fn subid_interface(&self) -> Arc<dyn Interface> {
        Arc::new(crate::delegations::SubidInterface::new(
            self.inner.clone(),
            self.inner.etc.as_deref(),
        ))
    }
}

/// `io.credns.Registry` as a varlink interface over [`Methods`].
pub(crate) struct RegistryInterface(Arc<Inner>);

impl RegistryInterface {
    /// The methods it serves, for other interfaces over the same registry.
    pub(crate) fn inner(&self) -> Arc<Inner> {
        self.0.clone()
    }

    pub(crate) fn direct(methods: Methods) -> Self {
        RegistryInterface(Arc::new(Inner {
            methods,
            watch: None,
            reserve: 0,
            log_calls: false,
            etc: None,
        }))
    }
}

impl Interface for RegistryInterface {
    fn name(&self) -> &str {
        INTERFACE
    }

    fn description(&self) -> &str {
        IDL
    }

    fn call(&self, call: &mut Call<'_>) -> Result<Value, ErrorReply> {
        let peer = call.peer();
        let caller = Caller {
            uid: peer.uid,
            pid: Pid(peer.pid),
        };
        let method = call.method().to_string();
        let params = call.parameters().clone();
        let r = self.0.methods.call(caller, &method, &params, call);
        if self.0.log_calls {
            crate::logging::call(INTERFACE, &method, caller, &r);
        }
        r
    }
}

/// The server's identity in `org.varlink.service.GetInfo`.
pub(crate) fn server_info() -> ServerInfo {
    ServerInfo {
        vendor: "credns".into(),
        product: "credns registry daemon".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        url: "https://example.invalid/credns".into(),
    }
}

/// A bound socket and the service it serves.
pub struct Server {
    service: Service,
    listener: UnixListener,
    path: PathBuf,
    limits: Limits,
    stop: Arc<AtomicBool>,
    /// Other interfaces on sockets of their own (the systemd faces).
    extra: Vec<crate::faces::Face>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

impl Server {
    /// Bind `socket` (creating its directory, mode 0755; replacing a stale socket nobody
    /// answers on; refusing one a daemon still serves). The socket is mode 0666: every user
    /// may connect, and each is told apart by `SO_PEERCRED`.
    pub fn bind(socket: impl AsRef<Path>, service: Service) -> Result<Self, Error> {
        let path = socket.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                    .map_err(io_err("chmod", dir))?;
            }
        }
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            if !meta.file_type().is_socket() {
                return Err(Error::Io {
                    op: "bind",
                    path,
                    source: std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "exists and is not a socket; not replacing it",
                    ),
                });
            }
            if UnixStream::connect(&path).is_ok() {
                return Err(Error::SocketInUse(path));
            }
            std::fs::remove_file(&path).map_err(io_err("remove stale socket", &path))?;
        }
        let listener = UnixListener::bind(&path).map_err(io_err("bind", &path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
            .map_err(io_err("chmod", &path))?;
        Ok(Server {
            service,
            listener,
            path,
            limits: Limits::default(),
            stop: Arc::new(AtomicBool::new(false)),
            extra: Vec::new(),
        })
    }

    /// Serve on a socket someone else bound: the service manager's (socket activation, see
    /// [`crate::activation`]). It is served as it is (its mode is the socket unit's) and left in
    /// place when the server stops.
    pub fn from_listener(listener: UnixListener, service: Service) -> Self {
        let path = listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("(passed socket)"));
        Server {
            service,
            listener,
            path,
            limits: Limits::default(),
            stop: Arc::new(AtomicBool::new(false)),
            extra: Vec::new(),
        }
    }

    /// Also serve `io.systemd.UserDatabase` at `at` (nss-systemd asks every socket in
    /// `/run/systemd/userdb/`; the service name is the socket's file name), naming the ids of
    /// allocations under `prefix`.
    pub fn with_userdb(mut self, at: crate::FaceSocket, prefix: &str) -> Result<Self, Error> {
        let face = crate::faces::userdb(at, &self.service.inner, prefix)?;
        self.extra.push(face);
        Ok(self)
    }

    /// Also serve `io.systemd.NamespaceResource` at `at` (systemd's clients look for
    /// `/run/systemd/userdb/io.systemd.NamespaceResource`), with `io.systemd.UserDatabase` for
    /// the service named as the socket's file, names under `prefix`.
    pub fn with_namespace_resource(
        mut self,
        at: crate::FaceSocket,
        prefix: &str,
    ) -> Result<Self, Error> {
        let face = crate::faces::namespace_resource(at, &self.service.inner, prefix)?;
        self.extra.push(face);
        Ok(self)
    }

    /// Serve with other limits than [`Limits::default`].
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The service.
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// Setting it makes [`run`](Self::run) return once requests being run are answered.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Serve until the stop flag is set; also runs the namespace reaper meanwhile. When it
    /// returns, requests being run were answered and the reaper has stopped.
    pub fn run(self) -> Result<(), Error> {
        let reaper = self.service.clone();
        let stop = self.stop.clone();
        let reaping = std::thread::Builder::new()
            .name("credns-reaper".into())
            .spawn(move || reaper.run_reaper(&stop))
            .map_err(io_err("spawn reaper thread", &self.path))?;
        let mut server = credns_varlink::Server::new(server_info(), self.limits.clone());
        server.add(self.service.interface());
        server.add(self.service.subid_interface());
        server.set_principal(self.service.principal_fn());
        let extra = crate::faces::serve_each(self.extra, &self.limits, &self.service, &self.stop);
        let served = server.serve(self.listener, &self.stop);
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = reaping.join();
        for (t, path) in extra {
            let _ = t.join();
            if let Some(p) = path {
                let _ = std::fs::remove_file(p);
            }
        }
        Ok(served?)
    }
}
