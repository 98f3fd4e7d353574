//! The server: N IO threads, each a `mio` event loop owning its sockets,
//! receive buffers and flushers (no lock on the receive path); M logic
//! threads fed by byte-bounded job queues with smart notify; sessions whose
//! outgoing frames go through a `SendQueue`.
//!
//! ```text
//! socket -> ReceiveBuffer<DemoFraming> -> decode (limit) -> Message (pool) -> job queue
//!        -> logic thread: echo (reply reuses the request's message) /
//!           publish (one SharedMessage, N refcounts) -> SessionQueue
//!        -> IO thread (woken on empty -> non-empty) -> Flusher -> socket
//! ```

pub(crate) mod direct;
pub mod inproc;
pub(crate) mod io;
mod logic;
pub mod memory;
pub mod queue;
pub(crate) mod session;

use std::io as stdio;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use netbuf::{CondvarNotify, GatherThreshold, MessagePool, SendQueue, Transport};

use crate::config::{Listen, PoolMode, StrategyArgs};
use crate::sync::LockExt;

pub use inproc::{InprocClient, InprocConnector};
pub use io::{DEMO_KEY, DEMO_NONCE};
pub use session::SessionShared;

/// Counters one server thread publishes about itself (read by reports).
#[derive(Debug, Default)]
pub struct ThreadMeter {
    /// Allocator calls (allocations + reallocations) made by the thread,
    /// through the counting global allocator.
    pub allocations: AtomicU64,
    /// CPU time the thread consumed, in nanoseconds.
    pub cpu_ns: AtomicU64,
}

impl ThreadMeter {
    /// Busy loop turns between two publications: reading a thread's CPU
    /// time is a syscall (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`), once
    /// per turn it was 1 of 9 syscalls per 64 B round trip.
    pub(crate) const METER_EVERY: u32 = 64;

    /// Publishes the calling thread's current figures.
    pub fn update(&self) {
        let t = allocators::thread_stats();
        self.allocations
            .store(t.allocations + t.reallocations, Ordering::Relaxed);
        self.cpu_ns.store(thread_cpu_ns(), Ordering::Relaxed);
    }
}

/// CPU time of the calling thread.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is
    // supported on Linux for the calling thread.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Totals across the server, for reports and tests.
#[derive(Debug, Default)]
pub struct ServerCounters {
    /// Sessions accepted.
    pub sessions_opened: AtomicU64,
    /// Sessions closed (any reason).
    pub sessions_closed: AtomicU64,
    /// Sessions closed for a protocol error, oversize frame or slow consumer.
    pub sessions_rejected: AtomicU64,
    /// Frames decoded.
    pub frames_in: AtomicU64,
    /// Frames handed to flushers.
    pub frames_out: AtomicU64,
    /// Frames that took the flusher's gather path (closed sessions).
    pub gather_frames: AtomicU64,
    /// Frames that took the linear path (closed sessions).
    pub linear_frames: AtomicU64,
    /// Bytes copied into send buffers (closed sessions).
    pub bytes_copied: AtomicU64,
    /// Bytes written to sockets (closed sessions).
    pub bytes_written: AtomicU64,
    /// Times a session's reading was paused for backpressure.
    pub read_pauses: AtomicU64,
}

impl ServerCounters {
    /// Adds what a session's flusher did (when it closes or parks).
    pub(crate) fn add_flushed(&self, m: &netbuf::FlushMetrics) {
        self.gather_frames
            .fetch_add(m.gather_frames, Ordering::Relaxed);
        self.linear_frames
            .fetch_add(m.linear_frames, Ordering::Relaxed);
        self.bytes_copied
            .fetch_add(m.bytes_copied, Ordering::Relaxed);
        self.bytes_written
            .fetch_add(m.bytes_written, Ordering::Relaxed);
    }
}

/// Everything the threads share.
pub(crate) struct Shared {
    pub(crate) cfg: StrategyArgs,
    pub(crate) pool: MessagePool,
    pub(crate) counters: ServerCounters,
    pub(crate) shutdown: AtomicBool,
    pub(crate) logic: Vec<Arc<logic::LogicQueue>>,
    pub(crate) rooms: logic::Rooms,
    pub(crate) meters: Mutex<Vec<Arc<ThreadMeter>>>,
    /// Bumped by [`Server::thread_totals`]: threads publish their meters
    /// when they see it change (else only now and then, see
    /// `ThreadMeter::METER_EVERY`).
    pub(crate) meter_epoch: AtomicU64,
    pub(crate) memory: Mutex<Vec<Arc<memory::MemoryMeter>>>,
    pub(crate) next_session: AtomicU64,
    pub(crate) live_sessions: AtomicU64,
    /// Gather thresholds resolved (calibrated) once at start: TCP, Unix.
    thresholds: [usize; 2],
    /// ZMTP endpoints and the broker.
    pub(crate) zmtp: crate::zmtp::ZmtpState,
}

impl Shared {
    /// The state every thread starts from: no session, no meter yet, the
    /// gather thresholds resolved (calibrated) once here.
    fn new(
        cfg: &StrategyArgs,
        pool: MessagePool,
        logic: Vec<Arc<logic::LogicQueue>>,
        zmtp: crate::zmtp::ZmtpState,
    ) -> Shared {
        Shared {
            zmtp,
            cfg: cfg.clone(),
            pool,
            counters: ServerCounters::default(),
            shutdown: AtomicBool::new(false),
            logic,
            rooms: logic::Rooms::default(),
            meters: Mutex::new(Vec::new()),
            meter_epoch: AtomicU64::new(0),
            memory: Mutex::new(Vec::new()),
            next_session: AtomicU64::new(1),
            live_sessions: AtomicU64::new(0),
            thresholds: [
                cfg.gather_threshold_for(Transport::Tcp).resolve(),
                cfg.gather_threshold_for(Transport::Unix).resolve(),
            ],
        }
    }

    pub(crate) fn threshold(&self, t: Transport) -> GatherThreshold {
        GatherThreshold::Bytes(match t {
            Transport::Tcp => self.thresholds[0],
            Transport::Unix => self.thresholds[1],
        })
    }

    fn memory_meter(&self) -> Arc<memory::MemoryMeter> {
        let m = Arc::new(memory::MemoryMeter::default());
        self.memory.locked().push(m.clone());
        m
    }

    fn meter(&self) -> Arc<ThreadMeter> {
        let m = Arc::new(ThreadMeter::default());
        self.meters.locked().push(m.clone());
        m
    }
}

/// A running server. Dropping it shuts the server down.
pub struct Server {
    shared: Arc<Shared>,
    io: Vec<Arc<io::IoShared>>,
    threads: Vec<JoinHandle<()>>,
    tcp_addr: Option<SocketAddr>,
    unix_path: Option<PathBuf>,
    /// ipc:// paths to remove at shutdown.
    ipc_paths: Vec<PathBuf>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("tcp", &self.tcp_addr)
            .field("unix", &self.unix_path)
            .finish_non_exhaustive()
    }
}

/// Raises a listener's accept backlog from the library default (128) so a
/// burst of thousands of connects is not dropped (and retried by the client
/// a second later) while the IO thread is busy.
pub(crate) fn deepen_backlog(l: &impl std::os::fd::AsRawFd) {
    // SAFETY: `listen` on a valid, bound, listening socket only changes its
    // backlog; the kernel caps it at `net.core.somaxconn`.
    unsafe {
        libc::listen(l.as_raw_fd(), 8192);
    }
}

/// The server's message pool. 256 B and 2 KiB classes beside the 4 KiB
/// block: small requests and replies (the common case) do not pin a whole
/// page each, nor does a 1 KiB message with its header (fan-out x256 at
/// 1 KiB peaked 0.5-1 MB higher with 4 KiB blocks for them).
fn message_pool(cfg: &StrategyArgs) -> MessagePool {
    MessagePool::builder()
        .extra_class(256)
        .extra_class(2048)
        .pooled(cfg.pool == PoolMode::Pooled)
        .max_message(cfg.max_frame.max(16 << 20))
        .build()
}

/// One job queue per logic thread, each waking its thread on a condvar.
fn logic_queues(n: usize) -> Vec<Arc<logic::LogicQueue>> {
    (0..n)
        .map(|_| {
            let wake = Arc::new(CondvarNotify::new());
            Arc::new(logic::LogicQueue {
                jobs: SendQueue::builder()
                    .limit(netbuf::MAX_LIMIT)
                    .notify(wake.clone())
                    .build(),
                wake,
            })
        })
        .collect()
}

/// The ZMTP endpoints' listeners, bound before any thread starts (so a
/// taken address fails the start), with the endpoints' shared state and
/// the ipc:// paths to remove at shutdown.
type ZmtpBound = (
    crate::zmtp::ZmtpState,
    Vec<(io::ZmtpListener, Arc<crate::zmtp::endpoint::Endpoint>)>,
    Vec<PathBuf>,
);

/// Binds every ZMTP endpoint of `specs` (see [`ZmtpBound`]).
fn bind_zmtp(specs: &[crate::zmtp::EndpointSpec], pool: &MessagePool) -> stdio::Result<ZmtpBound> {
    let mut state = crate::zmtp::ZmtpState::new(pool.clone());
    let mut listeners = Vec::new();
    let mut ipc_paths = Vec::new();
    for spec in specs {
        let (l, address) = io::ZmtpListener::bind(&spec.addr)?;
        if let crate::zmtp::EndpointAddr::Ipc(p) = &spec.addr {
            ipc_paths.push(p.clone());
        }
        let ep = Arc::new(crate::zmtp::endpoint::Endpoint::new(spec.kind, address));
        state.endpoints.push(ep.clone());
        listeners.push((l, ep));
    }
    Ok((state, listeners, ipc_paths))
}

/// Binds the demo protocol's listeners, TCP (its bound address returned
/// too: the port may have been 0) and Unix (a stale socket file at the path
/// removed first), and joins them with the ZMTP ones.
fn bind_listeners(
    listen: &Listen,
    zmtp: Vec<(io::ZmtpListener, Arc<crate::zmtp::endpoint::Endpoint>)>,
) -> stdio::Result<(FirstListeners, Option<SocketAddr>)> {
    let mut tcp = None;
    let mut tcp_addr = None;
    if let Some(addr) = listen.tcp {
        let l = mio::net::TcpListener::bind(addr)?;
        deepen_backlog(&l);
        tcp_addr = Some(l.local_addr()?);
        tcp = Some(l);
    }
    let mut unix = None;
    if let Some(path) = &listen.unix {
        let _ = std::fs::remove_file(path);
        let l = mio::net::UnixListener::bind(path)?;
        deepen_backlog(&l);
        unix = Some(l);
    }
    Ok((FirstListeners { tcp, unix, zmtp }, tcp_addr))
}

/// Each IO thread's poll and shared half (its waker registered with that
/// poll), created before any thread starts: every IO thread gets all the
/// shared halves, to hand connections to the others.
fn io_polls(n: usize) -> stdio::Result<(Vec<Arc<io::IoShared>>, Vec<mio::Poll>)> {
    let mut io_shared = Vec::new();
    let mut polls = Vec::new();
    for _ in 0..n {
        let poll = mio::Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), io::WAKE)?;
        io_shared.push(Arc::new(io::IoShared::new(waker)));
        polls.push(poll);
    }
    Ok((io_shared, polls))
}

/// The listeners, all served by the first IO thread (it hands accepted
/// connections round-robin to the others).
struct FirstListeners {
    tcp: Option<mio::net::TcpListener>,
    unix: Option<mio::net::UnixListener>,
    zmtp: Vec<(io::ZmtpListener, Arc<crate::zmtp::endpoint::Endpoint>)>,
}

/// Starts one IO thread per poll (`io-N`), the first with the listeners.
fn spawn_io_threads(
    shared: &Arc<Shared>,
    io_shared: &[Arc<io::IoShared>],
    polls: Vec<mio::Poll>,
    mut first: FirstListeners,
) -> stdio::Result<Vec<JoinHandle<()>>> {
    let mut threads = Vec::new();
    for (i, poll) in polls.into_iter().enumerate() {
        let ctx = io::IoThread::new(
            i,
            poll,
            shared.clone(),
            io_shared.to_vec(),
            if i == 0 { first.tcp.take() } else { None },
            if i == 0 { first.unix.take() } else { None },
            if i == 0 {
                std::mem::take(&mut first.zmtp)
            } else {
                Vec::new()
            },
        )?;
        threads.push(
            std::thread::Builder::new()
                .name(format!("io-{i}"))
                .spawn(move || ctx.run())?,
        );
    }
    Ok(threads)
}

/// Starts one logic thread per job queue (`logic-N`).
fn spawn_logic_threads(
    shared: &Arc<Shared>,
    threads: &mut Vec<JoinHandle<()>>,
) -> stdio::Result<()> {
    for (i, q) in shared.logic.iter().enumerate() {
        let q = q.clone();
        let s = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("logic-{i}"))
                .spawn(move || logic::run(s, q))?,
        );
    }
    Ok(())
}

impl Server {
    /// Binds, starts every thread, and returns once the listeners accept
    /// connections.
    pub fn start(listen: Listen, cfg: StrategyArgs) -> stdio::Result<Server> {
        Server::start_with_zmtp(listen, &[], cfg)
    }

    /// [`start`](Self::start) with ZMTP endpoints too (in-process ZMTP
    /// connections are always available, see
    /// [`connect_zmtp_inproc`](Self::connect_zmtp_inproc)).
    ///
    /// ```no_run
    /// use server_demo::config::{Listen, StrategyArgs};
    /// use server_demo::server::Server;
    /// use server_demo::zmtp::{EndpointKind, EndpointSpec};
    ///
    /// let spec = EndpointSpec {
    ///     kind: EndpointKind::Router,
    ///     addr: "tcp://127.0.0.1:0".parse().unwrap(),
    /// };
    /// let server = Server::start_with_zmtp(Listen::default(), &[spec], StrategyArgs::default()).unwrap();
    /// for (kind, addr) in server.zmtp_endpoints() {
    ///     println!("listening {} {addr}", kind.label());
    /// }
    /// ```
    pub fn start_with_zmtp(
        listen: Listen,
        zmtp: &[crate::zmtp::EndpointSpec],
        cfg: StrategyArgs,
    ) -> stdio::Result<Server> {
        // As many connections as the hard limit allows (10,000+ idle ones
        // in the main job); a refusal leaves the soft limit as it is.
        let _ = crate::load::raise_fd_limit(u64::MAX);
        let pool = message_pool(&cfg);
        // 0 logic threads: handlers run inline on the IO threads.
        let logic = logic_queues(cfg.logic_threads);
        let (zmtp_state, zmtp_listeners, ipc_paths) = bind_zmtp(zmtp, &pool)?;
        let shared = Arc::new(Shared::new(&cfg, pool, logic, zmtp_state));
        let (first, tcp_addr) = bind_listeners(&listen, zmtp_listeners)?;
        let (io_shared, polls) = io_polls(cfg.io_threads.max(1))?;
        let mut threads = spawn_io_threads(&shared, &io_shared, polls, first)?;
        spawn_logic_threads(&shared, &mut threads)?;
        Ok(Server {
            shared,
            io: io_shared,
            threads,
            tcp_addr,
            unix_path: listen.unix,
            ipc_paths,
        })
    }

    /// The ZMTP endpoints listening, with their bound addresses
    /// (`tcp://127.0.0.1:PORT`, `ipc://PATH`), in the order given.
    pub fn zmtp_endpoints(&self) -> Vec<(crate::zmtp::EndpointKind, String)> {
        self.shared
            .zmtp
            .endpoints
            .iter()
            .map(|e| (e.kind, e.address.clone()))
            .collect()
    }

    /// Counters of every ZMTP endpoint (listening ones, then the in-process
    /// ones that saw a connection): sessions, messages, slow-subscriber
    /// drops, large-path ratio, copies per byte.
    pub fn zmtp_stats(&self) -> Vec<crate::zmtp::EndpointReport> {
        let z = &self.shared.zmtp;
        z.endpoints
            .iter()
            .map(|e| e.report())
            .chain(
                z.inproc
                    .iter()
                    .map(|e| e.report())
                    .filter(|r| r.sessions_opened > 0),
            )
            .collect()
    }

    /// Broker members: (subscribers, publishers) past their handshake.
    pub fn zmtp_broker_members(&self) -> (usize, usize) {
        self.shared.zmtp.broker.members()
    }

    /// Opens an in-process ZMTP connection to an endpoint of `kind`: the
    /// same path as a socket (ZMTP receive buffer, handlers, send queue,
    /// flusher) over in-memory pipes. The client speaks ZMTP (greeting
    /// first) through blocking `Read` / `Write`.
    pub fn connect_zmtp_inproc(&self, kind: crate::zmtp::EndpointKind) -> InprocClient {
        let (end, client) = inproc::pair();
        let n = self.io.len();
        let target = self.shared.next_session.load(Ordering::Relaxed) as usize % n;
        let ep = self.shared.zmtp.inproc(kind).clone();
        self.io[target]
            .incoming_zmtp
            .locked()
            .push((io::Stream::Inproc(end), ep));
        self.io[target].wake();
        client
    }

    /// The bound TCP address (the real port when 0 was asked).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// The Unix socket path.
    pub fn unix_path(&self) -> Option<&PathBuf> {
        self.unix_path.as_ref()
    }

    /// Opens an in-process connection: the same session path as a socket
    /// (receive buffer, decoding, logic threads, send queue, flusher) over
    /// in-memory pipes. The client speaks the wire format through blocking
    /// `Read`/`Write`.
    pub fn connect_inproc(&self) -> InprocClient {
        self.inproc_connector().connect()
    }

    /// What opens [`connect_inproc`](Self::connect_inproc) connections
    /// without borrowing the server (the load generator's
    /// [`Target::Inproc`](crate::load::Target::Inproc)).
    pub fn inproc_connector(&self) -> InprocConnector {
        InprocConnector::new(self.shared.clone(), self.io.clone())
    }

    /// The message pool (for statistics).
    pub fn pool(&self) -> &MessagePool {
        &self.shared.pool
    }

    /// Where the memory is: what sessions hold (as of the IO threads' last
    /// sweep, about once a second), the pool's blocks, the resident set.
    pub fn memory_report(&self) -> memory::MemoryReport {
        let meters = self.shared.memory.locked();
        memory::MemoryReport::collect(meters.iter().map(|m| &**m), self.shared.pool.stats())
    }

    /// Server-wide counters.
    pub fn counters(&self) -> &ServerCounters {
        &self.shared.counters
    }

    /// The gather thresholds in use (TCP, Unix), in bytes.
    pub fn gather_thresholds(&self) -> (usize, usize) {
        (self.shared.thresholds[0], self.shared.thresholds[1])
    }

    /// Room memberships currently held.
    pub fn room_memberships(&self) -> usize {
        self.shared.rooms.memberships()
    }

    /// Sessions currently open.
    pub fn live_sessions(&self) -> u64 {
        self.shared.live_sessions.load(Ordering::Relaxed)
    }

    /// Sums of the server threads' allocator calls and CPU time
    /// (`(allocations, cpu_ns)`), as last published by each thread.
    pub fn thread_totals(&self) -> (u64, u64) {
        // Ask every thread to publish fresh figures.
        self.shared.meter_epoch.fetch_add(1, Ordering::SeqCst);
        for io in &self.io {
            io.wake();
        }
        for q in &self.shared.logic {
            netbuf::Notify::notify(&*q.wake);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        let meters = self.shared.meters.locked();
        meters.iter().fold((0, 0), |(a, c), m| {
            (
                a + m.allocations.load(Ordering::Relaxed),
                c + m.cpu_ns.load(Ordering::Relaxed),
            )
        })
    }

    /// Stops accepting, closes every session, joins every thread. Returns
    /// the pool's leak report taken after everything closed.
    pub fn shutdown(mut self) -> netbuf::LeakReport {
        self.stop();
        self.shared.pool.leak_report()
    }

    /// [`shutdown`](Self::shutdown), also returning the ZMTP endpoints'
    /// final counters (every session closed).
    pub fn shutdown_with_stats(mut self) -> (netbuf::LeakReport, Vec<crate::zmtp::EndpointReport>) {
        self.stop();
        (self.shared.pool.leak_report(), self.zmtp_stats())
    }

    fn stop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        for io in &self.io {
            io.wake();
        }
        for q in &self.shared.logic {
            netbuf::Notify::notify(&*q.wake);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(p) = &self.unix_path {
            let _ = std::fs::remove_file(p);
        }
        for p in &self.ipc_paths {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.stop();
        }
    }
}
