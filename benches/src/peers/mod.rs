//! The servers the end-to-end report compares with `server-demo`:
//!
//! * [`tokio_peer`]: the idiomatic peer a Rust user would write: tokio,
//!   `tokio-util`'s `LengthDelimitedCodec` on a `Framed` split into sink and
//!   stream, a task per connection, rooms as `tokio::sync::broadcast` of
//!   `Bytes`.
//! * [`tokio_netbuf`]: tokio kept for the event loop, but netbuf's
//!   `RecvBuffer`, `MessagePool`, `SharedMessage`, `SendQueue` and `Flusher`
//!   on the data path, driven through `TcpStream::try_read` /
//!   `try_write_vectored` on readiness.
//! * [`mio_lean`]: no tokio and no netbuf: a lean hand-written mio server,
//!   a poll per worker thread, plain `Vec<u8>` read and write buffers per
//!   connection, rooms delivered directly on the publisher's worker and in
//!   one batch per loop turn to the others. The ceiling for small messages.
//!
//! All speak the suite's wire format (see `server_demo::protocol`): echo, join / leave
//! / publish / delivery, and a `closing` frame with the reason before a
//! session is closed for bad input. All start in-process
//! ([`tokio_peer::start`], [`tokio_netbuf::start`], [`mio_lean::start`]:
//! bind `127.0.0.1:0`, return a [`PeerHandle`] with the address) and as
//! binaries (`tokio-peer --tcp ADDR`, `tokio-netbuf --tcp ADDR`,
//! `mio-lean --tcp ADDR`, see [`run_main`]).
//!
//! ```no_run
//! use benches::peers::{PeerConfig, tokio_peer};
//! let server = tokio_peer::start(PeerConfig::default()).unwrap();
//! println!("listening on {}", server.addr());
//! server.shutdown();
//! ```

use std::fmt;
use std::future::Future;
use std::io::{self, BufRead, Write};
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Duration;

use server_demo::protocol::Kind;
use tokio::sync::oneshot;

pub mod mio_lean;
pub mod tokio_netbuf;
pub mod tokio_peer;

/// Settings shared by the peer servers.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Address to bind (default `127.0.0.1:0`).
    pub addr: SocketAddr,
    /// Body limit in bytes (default 1 MiB, as the main job's `server-demo`).
    pub max_body: usize,
    /// Runtime worker threads (`None`: tokio's default, one per core), or
    /// mio-lean's worker threads (`None`: one per CPU as well).
    pub worker_threads: Option<usize>,
    /// Messages a room buffers for its slowest member before that member
    /// is closed as a slow consumer (the `broadcast` channel capacity of the
    /// plain peer; the tokio-netbuf server bounds each member's queue in
    /// bytes instead, see [`PeerConfig::send_queue_bytes`]). The default,
    /// 65,536, is large enough that the load generator's fan-out runs (which
    /// publish as fast as the socket takes them) never lag: with 4,096 the
    /// subscriber tasks fell behind the publisher and were closed.
    pub room_capacity: usize,
    /// Byte bound of a session's send queue (tokio-netbuf), or of a
    /// connection's unsent output when a delivery is added (mio-lean):
    /// beyond it the member is closed as a slow consumer.
    pub send_queue_bytes: usize,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_body: 1 << 20,
            worker_threads: None,
            room_capacity: 1 << 16,
            send_queue_bytes: 4 << 20,
        }
    }
}

/// A running in-process server: its address, and shutdown (also on drop).
pub struct PeerHandle {
    addr: SocketAddr,
    name: &'static str,
    stop: Option<Box<dyn FnOnce() + Send>>,
    threads: Vec<JoinHandle<()>>,
}

impl fmt::Debug for PeerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerHandle")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .finish()
    }
}

impl PeerHandle {
    /// A server listening on `addr`, stopped by calling `stop`, running on
    /// `threads` (joined on shutdown).
    pub(crate) fn new(
        addr: SocketAddr,
        name: &'static str,
        stop: Box<dyn FnOnce() + Send>,
        threads: Vec<JoinHandle<()>>,
    ) -> PeerHandle {
        PeerHandle {
            addr,
            name,
            stop: Some(stop),
            threads,
        }
    }

    /// The TCP address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Which server this is (`tokio-peer`, `tokio-netbuf`, `mio-lean`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Stops accepting, drops every session and joins the server's threads.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for PeerHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Binds `cfg.addr`, builds a multi-thread runtime on a new thread and runs
/// `serve(listener)` on it until the handle shuts it down.
pub(crate) fn spawn_server<F, Fut>(
    name: &'static str,
    cfg: &PeerConfig,
    serve: F,
) -> io::Result<PeerHandle>
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let std_listener = std::net::TcpListener::bind(cfg.addr)?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().thread_name(name);
    if let Some(n) = cfg.worker_threads {
        builder.worker_threads(n.max(1));
    }
    let rt = builder.build()?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<io::Result<()>>();
    let thread = std::thread::Builder::new()
        .name(format!("{name}-main"))
        .spawn(move || {
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(l) => {
                        let _ = ready_tx.send(Ok(()));
                        l
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                tokio::select! {
                    _ = serve(listener) => {}
                    _ = stop_rx => {}
                }
            });
            // Sessions still running are dropped with the runtime.
            rt.shutdown_timeout(Duration::from_secs(2));
        })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(PeerHandle::new(
            addr,
            name,
            Box::new(move || {
                let _ = stop_tx.send(());
            }),
            vec![thread],
        )),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(io::Error::other("server thread ended before listening"))
        }
    }
}

/// What a client frame asks for, after the checks both servers share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    Echo,
    Join(u16),
    Leave(u16),
    Publish(u16),
}

/// Classifies a decoded frame (kind byte, flags byte, room, body length)
/// or returns the reason to close the session with.
pub(crate) fn classify(
    kind: u8,
    flags: u8,
    room: u16,
    body_len: usize,
    max_body: usize,
) -> Result<Request, String> {
    if body_len > max_body {
        return Err(format!(
            "frame body of {body_len} bytes exceeds the limit of {max_body} bytes"
        ));
    }
    if flags != 0 {
        return Err(format!("non-zero frame flags {flags:#04x}"));
    }
    match Kind::from_u8(kind) {
        Some(Kind::EchoRequest) => Ok(Request::Echo),
        Some(Kind::Join) => Ok(Request::Join(room)),
        Some(Kind::Leave) => Ok(Request::Leave(room)),
        Some(Kind::Publish) => Ok(Request::Publish(room)),
        Some(k) => Err(format!("kind {k:?} may only be sent by the server")),
        None => Err(format!("unknown frame kind {kind}")),
    }
}

/// Which server a binary runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerKind {
    /// [`tokio_peer`].
    TokioPeer,
    /// [`tokio_netbuf`].
    TokioNetbuf,
    /// [`mio_lean`].
    MioLean,
}

impl PeerKind {
    /// Starts this server in-process.
    pub fn start(self, cfg: PeerConfig) -> io::Result<PeerHandle> {
        match self {
            PeerKind::TokioPeer => tokio_peer::start(cfg),
            PeerKind::TokioNetbuf => tokio_netbuf::start(cfg),
            PeerKind::MioLean => mio_lean::start(cfg),
        }
    }
}

/// `main` of the `tokio-peer` / `tokio-netbuf` / `mio-lean` binaries:
/// `--tcp ADDR [--max-body BYTES] [--workers N] [--send-queue-bytes BYTES]
/// [--stdin-control]`.
/// Prints `listening tcp ADDR` and serves until killed, or with
/// `--stdin-control` until standard input closes (answering a `stats` line
/// with `stats allocations=N` from the counting global allocator, if the
/// binary installed it).
pub fn run_main(kind: PeerKind) -> i32 {
    let mut cfg = PeerConfig::default();
    let mut control = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |what: &str| {
            args.next()
                .ok_or_else(|| format!("{a} needs a {what}"))
                .map(|v| v.to_string())
        };
        let r: Result<(), String> = match a.as_str() {
            "--tcp" => value("address").and_then(|v| {
                cfg.addr = v.parse().map_err(|e| format!("--tcp {v}: {e}"))?;
                Ok(())
            }),
            "--max-body" => value("byte count").and_then(|v| {
                cfg.max_body = v.parse().map_err(|e| format!("--max-body {v}: {e}"))?;
                Ok(())
            }),
            "--workers" => value("thread count").and_then(|v| {
                cfg.worker_threads = Some(v.parse().map_err(|e| format!("--workers {v}: {e}"))?);
                Ok(())
            }),
            "--send-queue-bytes" => value("byte count").and_then(|v| {
                cfg.send_queue_bytes = v
                    .parse()
                    .map_err(|e| format!("--send-queue-bytes {v}: {e}"))?;
                Ok(())
            }),
            "--stdin-control" => {
                control = true;
                Ok(())
            }
            "-h" | "--help" => {
                println!(
                    "usage: {} --tcp ADDR [--max-body BYTES] [--workers N] \
                     [--send-queue-bytes BYTES] [--stdin-control]",
                    std::env::args().next().unwrap_or_default()
                );
                return 0;
            }
            other => Err(format!("unknown argument {other}")),
        };
        if let Err(e) = r {
            eprintln!("{e}");
            return 2;
        }
    }
    let server = match kind.start(cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return 1;
        }
    };
    println!("listening tcp {}", server.addr());
    let _ = io::stdout().flush();
    if control {
        stdin_control();
        server.shutdown();
    } else {
        loop {
            std::thread::park();
        }
    }
    0
}

/// Serves `stats` requests on standard input until it closes.
pub fn stdin_control() {
    let stdin = io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() == "stats" {
            let s = allocators::global_stats();
            println!("stats allocations={}", s.allocations + s.reallocations);
            let _ = io::stdout().flush();
        }
    }
}
