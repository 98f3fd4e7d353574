//! The load generator: drives any server that speaks the suite's wire
//! format (see `DESIGN.md`) over TCP or a Unix-domain socket and measures
//! it.
//!
//! Three scenarios, each a plain struct with a `run` method:
//!
//! * [`EchoThroughput`]: `window` echo requests in flight per connection
//!   (a writer and a reader thread per connection), timed on the receiver
//!   as libzmq's `local_thr` does: the clock starts when the first reply
//!   arrives, and that reply is not counted. Every reply is checked against
//!   its request (length, sequence number, body).
//! * [`EchoLatency`]: ping-pong, one request in flight; percentiles from an
//!   [`hdrhistogram`].
//! * [`FanOut`]: N subscribers join a room, one publisher publishes; the
//!   subscribers are read non-blocking with `mio` from one thread, so 1,000
//!   subscribers need 1,000 sockets but not 1,000 threads.
//!
//! A [`LoadPlan`] runs a list of them (with a progress bar when stdout is a
//! terminal); [`render_table`] and [`write_json`] report the results;
//! [`LoadArgs`] + [`run_load`] are the `server-demo load` subcommand.
//!
//! Every loop is bounded by a count and by a deadline: a server that hangs
//! yields [`LoadError::Timeout`], never a hung generator.
//!
//! ```no_run
//! use std::time::Duration;
//! use server_demo::load::{EchoLatency, EchoThroughput, LoadPlan, Target, render_table};
//!
//! let target = Target::Tcp("127.0.0.1:7000".parse().unwrap());
//! let mut plan = LoadPlan::new();
//! plan.push(EchoThroughput::new(target.clone(), 64, 100_000));
//! plan.push(EchoLatency::new(target, 64, 10_000).with_timeout(Duration::from_secs(10)));
//! let records = plan.run();
//! println!("{}", render_table(&records));
//! ```

use std::fmt;
use std::io::{self, IsTerminal, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crate::protocol::{DEFAULT_MAX_BODY, DemoFraming, HEADER_LEN, Kind, encode_header};
use crate::protocol::{Frame, FrameExt};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use mio::{Events, Interest, Poll, Token};
use netbuf::framing::DecodeError;
use netbuf::{Compaction, LinearBuffer};
use serde::Serialize;

/// Default time limit of one scenario run (connect to last reply).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Default number of echo requests in flight per connection.
pub const DEFAULT_WINDOW: u64 = 64;

/// Default body sizes of the `load` subcommand: 64 B, 256 B, 1 KiB, 4 KiB,
/// 64 KiB, 128 KiB, 256 KiB, 1 MiB.
pub const DEFAULT_SIZES: [usize; 8] = [
    64,
    256,
    1 << 10,
    4 << 10,
    64 << 10,
    128 << 10,
    256 << 10,
    1 << 20,
];

/// Default subscriber counts of the fan-out scenario.
pub const DEFAULT_SUBSCRIBERS: [usize; 4] = [1, 16, 256, 1000];

/// Receive buffers of all fan-out subscribers together may not exceed this
/// (each holds at least one whole frame); [`run_load`] skips larger
/// combinations and [`FanOut::run`] refuses them.
pub const FANOUT_BUFFER_LIMIT: usize = 512 << 20;

/// How long one blocking socket call may wait before the deadline and the
/// abort flag are checked again.
const IO_SLICE: Duration = Duration::from_millis(100);
/// Small frames are coalesced into writes of up to this many bytes.
const COALESCE: usize = 64 << 10;
/// Body of the fan-out warm-up publish (never a valid measured body: those
/// are `size` bytes long and carry a sequence number below `u64::MAX`).
const WARMUP: [u8; 8] = u64::MAX.to_le_bytes();
/// Minimum receive-buffer capacity.
const RECV_CAPACITY: usize = 16 << 10;
/// Minimum receive-buffer capacity of an echo-throughput reader (one per
/// connection, so it can afford fewer, larger reads).
const ECHO_RECV_CAPACITY: usize = 256 << 10;

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a load run failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The scenario's parameters are unusable (e.g. fewer than 2 messages).
    #[error("invalid load configuration: {0}")]
    Config(String),
    /// Could not connect to the server.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// The target.
        target: String,
        /// The socket error.
        source: io::Error,
    },
    /// A socket (or file) operation failed.
    #[error("i/o error during {phase}: {source}")]
    Io {
        /// What the generator was doing.
        phase: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The deadline passed before the run completed.
    #[error("timed out after {after:?} during {phase} ({done} of {expected} done)")]
    Timeout {
        /// What the generator was waiting for.
        phase: &'static str,
        /// The scenario's time limit.
        after: Duration,
        /// Units (replies, deliveries, subscribers) completed.
        done: u64,
        /// Units expected.
        expected: u64,
    },
    /// The server closed the connection (with a `closing` frame's reason,
    /// or at end of stream).
    #[error("server closed the connection during {phase}: {reason}")]
    Closed {
        /// What the generator was doing.
        phase: &'static str,
        /// The `closing` frame's reason, or what happened to the socket.
        reason: String,
    },
    /// The server sent bytes that are not a valid frame stream.
    #[error("bad frame from the server: {0}")]
    Decode(#[from] DecodeError),
    /// A frame of the wrong kind or room, or one more than expected.
    #[error("unexpected frame during {phase}: {detail}")]
    UnexpectedFrame {
        /// What the generator was doing.
        phase: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// A reply or delivery whose body differs from what was sent.
    #[error("{phase}: message {index} does not match what was sent: {detail}")]
    Mismatch {
        /// What the generator was doing.
        phase: &'static str,
        /// Sequence number of the message (per connection / subscriber).
        index: u64,
        /// First difference found.
        detail: String,
    },
    /// The process cannot open enough sockets.
    #[error("need {needed} file descriptors but RLIMIT_NOFILE allows {limit}")]
    FdLimit {
        /// Descriptors needed.
        needed: u64,
        /// The limit that could be reached.
        limit: u64,
    },
    /// Another thread of the same run failed first (reported separately).
    #[error("aborted because another thread of the run failed")]
    Aborted,
    /// A worker thread panicked.
    #[error("a load generator thread panicked")]
    Panicked,
    /// JSON serialization failed.
    #[error("cannot serialize results: {0}")]
    Json(#[from] serde_json::Error),
    /// Some runs of a plan failed (their errors are in the table / JSON).
    #[error("{failed} of {total} load runs failed")]
    RunsFailed {
        /// Runs with an error.
        failed: usize,
        /// Runs in the plan.
        total: usize,
    },
}

// ---------------------------------------------------------------------------
// Targets and streams
// ---------------------------------------------------------------------------

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum Target {
    /// A TCP address (loopback in this project).
    Tcp(SocketAddr),
    /// A Unix-domain socket path.
    Unix(PathBuf),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp(a) => write!(f, "tcp {a}"),
            Target::Unix(p) => write!(f, "unix {}", p.display()),
        }
    }
}

/// A blocking client stream to a [`Target`].
#[derive(Debug)]
pub enum Stream {
    /// TCP (with `TCP_NODELAY` on).
    Tcp(TcpStream),
    /// Unix-domain stream socket.
    Unix(UnixStream),
}

impl Stream {
    /// A second handle to the same socket (for a reader/writer pair).
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }

    /// Sets the read timeout (`None`: block forever).
    pub fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(d),
            Stream::Unix(s) => s.set_read_timeout(d),
        }
    }

    /// Sets the write timeout (`None`: block forever).
    pub fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(d),
            Stream::Unix(s) => s.set_write_timeout(d),
        }
    }

    /// Switches non-blocking mode.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(on),
            Stream::Unix(s) => s.set_nonblocking(on),
        }
    }

    /// Shuts down one or both directions.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
        }
    }

    /// Makes it a non-blocking `mio` stream.
    fn into_mio(self) -> io::Result<MioStream> {
        self.set_nonblocking(true)?;
        Ok(match self {
            Stream::Tcp(s) => MioStream::Tcp(mio::net::TcpStream::from_std(s)),
            Stream::Unix(s) => MioStream::Unix(mio::net::UnixStream::from_std(s)),
        })
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

/// Connects a blocking stream to `target` (TCP: within `timeout`, with
/// `TCP_NODELAY` on).
pub fn connect(target: &Target, timeout: Duration) -> Result<Stream, LoadError> {
    let err = |source| LoadError::Connect {
        target: target.to_string(),
        source,
    };
    match target {
        Target::Tcp(addr) => {
            let s = TcpStream::connect_timeout(addr, timeout.max(Duration::from_millis(1)))
                .map_err(err)?;
            s.set_nodelay(true).map_err(err)?;
            Ok(Stream::Tcp(s))
        }
        Target::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path).map_err(err)?)),
    }
}

/// Raises the soft `RLIMIT_NOFILE` to at least `wanted` (capped at the hard
/// limit) and returns the soft limit now in force.
#[allow(clippy::unnecessary_cast)] // `rlim_t` is `u64` on Linux, not everywhere
pub fn raise_fd_limit(wanted: u64) -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the `rlimit` we pass by a valid,
    // exclusive pointer to a live local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let cur = lim.rlim_cur as u64;
    if cur >= wanted {
        return Ok(cur);
    }
    let new = if lim.rlim_max == libc::RLIM_INFINITY {
        wanted
    } else {
        wanted.min(lim.rlim_max as u64)
    };
    lim.rlim_cur = new as libc::rlim_t;
    // SAFETY: setrlimit only reads the fully initialised `rlimit` we pass
    // by a valid pointer; the new soft limit is at most the hard limit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(new)
}

// ---------------------------------------------------------------------------
// Shared helpers: bodies, deadlines, blocking I/O
// ---------------------------------------------------------------------------

/// The request body template: a fixed pattern; bodies of 8 bytes or more
/// carry their sequence number (u64 LE) in the first 8 bytes.
fn template(size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(7))
        .collect()
}

fn stamp(body: &mut [u8], seq: u64) {
    if let Some(head) = body.first_chunk_mut::<8>() {
        *head = seq.to_le_bytes();
    }
}

/// Checks a returned body: exact length, sequence number, and every other
/// byte equal to the template (a `memcmp`, far cheaper than the socket).
fn verify(body: &[u8], template: &[u8], seq: u64) -> Result<(), String> {
    if body.len() != template.len() {
        return Err(format!(
            "length {} instead of {}",
            body.len(),
            template.len()
        ));
    }
    let from = if let Some(head) = body.first_chunk::<8>() {
        let got = u64::from_le_bytes(*head);
        if got != seq {
            return Err(format!("sequence number {got} instead of {seq}"));
        }
        8
    } else {
        0
    };
    if body[from..] != template[from..] {
        let at = body[from..]
            .iter()
            .zip(&template[from..])
            .position(|(a, b)| a != b)
            .map_or(0, |p| p + from);
        return Err(format!(
            "byte {at} is {:#04x} instead of {:#04x}",
            body[at], template[at]
        ));
    }
    Ok(())
}

fn closed_by(phase: &'static str, f: &Frame<'_>) -> LoadError {
    LoadError::Closed {
        phase,
        reason: f
            .closing_reason()
            .unwrap_or("<closing reason not UTF-8>")
            .to_owned(),
    }
}

/// Fails unless `f` is of kind `want` (a `closing` frame becomes
/// [`LoadError::Closed`]).
fn expect_kind(phase: &'static str, f: &Frame<'_>, want: Kind) -> Result<(), LoadError> {
    match f.kind() {
        k if k == want => Ok(()),
        Kind::Closing => Err(closed_by(phase, f)),
        k => Err(LoadError::UnexpectedFrame {
            phase,
            detail: format!("kind {k:?} where {want:?} was expected"),
        }),
    }
}

fn recv_buffer(size: usize) -> LinearBuffer<DemoFraming> {
    LinearBuffer::with_config(
        RECV_CAPACITY,
        DemoFraming::with_max_body(size.max(DEFAULT_MAX_BODY)),
        Compaction::Lazy,
    )
}

fn check_size(size: usize) -> Result<u32, LoadError> {
    u32::try_from(size)
        .map_err(|_| LoadError::Config(format!("body size {size} does not fit the u32 length")))
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Deadline, time limit and abort flag of one run.
#[derive(Debug, Clone)]
struct Clock {
    deadline: Instant,
    limit: Duration,
    abort: Arc<AtomicBool>,
}

impl Clock {
    fn new(limit: Duration) -> Clock {
        Clock {
            deadline: Instant::now() + limit,
            limit,
            abort: Arc::new(AtomicBool::new(false)),
        }
    }

    /// `Err` if the run is aborted or past its deadline.
    fn check(&self, phase: &'static str, done: u64, expected: u64) -> Result<(), LoadError> {
        if self.abort.load(Ordering::Relaxed) {
            return Err(LoadError::Aborted);
        }
        if Instant::now() >= self.deadline {
            return Err(LoadError::Timeout {
                phase,
                after: self.limit,
                done,
                expected,
            });
        }
        Ok(())
    }

    /// Runs `f` and sets the abort flag if it fails, so the sibling
    /// threads stop at their next check.
    fn guard<T>(&self, f: impl FnOnce() -> Result<T, LoadError>) -> Result<T, LoadError> {
        let r = f();
        if r.is_err() {
            self.abort.store(true, Ordering::Relaxed);
        }
        r
    }
}

/// `write_all` in `IO_SLICE` steps, checking the deadline between them.
fn write_all(
    s: &mut Stream,
    mut buf: &[u8],
    clock: &Clock,
    phase: &'static str,
    done: u64,
    expected: u64,
) -> Result<(), LoadError> {
    while !buf.is_empty() {
        match s.write(buf) {
            Ok(0) => {
                return Err(LoadError::Closed {
                    phase,
                    reason: "socket accepts no more bytes".into(),
                });
            }
            Ok(n) => buf = &buf[n..],
            Err(e) if is_timeout(&e) => clock.check(phase, done, expected)?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(LoadError::Io { phase, source }),
        }
    }
    Ok(())
}

/// One successful read into `rb` (`IO_SLICE` steps, deadline checked).
fn read_some(
    s: &mut Stream,
    rb: &mut LinearBuffer<DemoFraming>,
    clock: &Clock,
    phase: &'static str,
    done: u64,
    expected: u64,
) -> Result<usize, LoadError> {
    loop {
        match rb.read_from(s) {
            Ok(0) => {
                rb.finish()?;
                return Err(LoadError::Closed {
                    phase,
                    reason: "end of stream".into(),
                });
            }
            Ok(n) => return Ok(n),
            Err(e) if is_timeout(&e) => clock.check(phase, done, expected)?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(LoadError::Io { phase, source }),
        }
    }
}

fn join<T>(h: thread::JoinHandle<Result<T, LoadError>>) -> Result<T, LoadError> {
    h.join().unwrap_or(Err(LoadError::Panicked))
}

/// The first error that is not [`LoadError::Aborted`] (the cause), else
/// the first error.
fn first_cause(errors: Vec<LoadError>) -> Option<LoadError> {
    let mut aborted = None;
    for e in errors {
        if matches!(e, LoadError::Aborted) {
            aborted.get_or_insert(e);
        } else {
            return Some(e);
        }
    }
    aborted
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

// ---------------------------------------------------------------------------
// Echo throughput
// ---------------------------------------------------------------------------

/// Echo throughput: `messages` echo requests of `size` bytes, spread over
/// `connections`, each keeping `window` requests in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoThroughput {
    /// The server.
    pub target: Target,
    /// Body bytes per request.
    pub size: usize,
    /// Requests in total (at least 2 and at least one per connection).
    pub messages: u64,
    /// Requests in flight per connection (default [`DEFAULT_WINDOW`]).
    pub window: u64,
    /// Connections, each with a writer and a reader thread (default 1).
    pub connections: usize,
    /// Time limit of the whole run (default [`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
}

/// The result of an [`EchoThroughput`] run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ThroughputResult {
    /// Replies per second.
    pub msgs_per_sec: f64,
    /// Body megabytes (10^6 bytes) per second, one direction.
    pub mb_per_sec: f64,
    /// Replies counted (all but the first, which starts the clock).
    pub messages: u64,
    /// Body bytes of the counted replies.
    pub bytes: u64,
    /// From the first reply to the last.
    #[serde(rename = "elapsed_s", serialize_with = "ser_secs")]
    pub elapsed: Duration,
}

#[derive(Debug, Clone, Copy)]
struct ReaderTimes {
    first: Instant,
    last: Instant,
}

impl EchoThroughput {
    /// A run with the default window, one connection and the default
    /// timeout.
    pub fn new(target: Target, size: usize, messages: u64) -> EchoThroughput {
        EchoThroughput {
            target,
            size,
            messages,
            window: DEFAULT_WINDOW,
            connections: 1,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets the window.
    pub fn with_window(mut self, window: u64) -> Self {
        self.window = window;
        self
    }

    /// Sets the number of connections.
    pub fn with_connections(mut self, connections: usize) -> Self {
        self.connections = connections;
        self
    }

    /// Sets the time limit.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs it. Fails with a typed error on a wrong reply, a closed
    /// connection or when the time limit passes.
    pub fn run(&self) -> Result<ThroughputResult, LoadError> {
        let body_len = check_size(self.size)?;
        if self.connections == 0 || self.window == 0 {
            return Err(LoadError::Config(
                "connections and window must be at least 1".into(),
            ));
        }
        if self.messages < 2 || self.messages < self.connections as u64 {
            return Err(LoadError::Config(format!(
                "need at least 2 messages and one per connection, got {} for {} connections",
                self.messages, self.connections
            )));
        }
        let clock = Clock::new(self.timeout);
        let conns = (0..self.connections)
            .map(|_| connect(&self.target, self.timeout))
            .collect::<Result<Vec<_>, _>>()?;
        let tpl = Arc::new(template(self.size));
        let per = self.messages / self.connections as u64;
        let extra = self.messages % self.connections as u64;

        let mut writers = Vec::new();
        let mut readers = Vec::new();
        for (i, rs) in conns.into_iter().enumerate() {
            let n = per + u64::from((i as u64) < extra);
            let ws = rs.try_clone().map_err(|source| LoadError::Io {
                phase: "echo throughput setup",
                source,
            })?;
            let received = Arc::new(AtomicU64::new(0));
            let (c, t, r, window) = (clock.clone(), tpl.clone(), received.clone(), self.window);
            let w = thread::Builder::new()
                .name("load-echo-writer".into())
                .spawn(move || c.guard(|| throughput_writer(ws, n, window, body_len, &t, &r, &c)))
                .map_err(|source| LoadError::Io {
                    phase: "spawning threads",
                    source,
                })?;
            let writer_thread = w.thread().clone();
            writers.push(w);
            let (c, t) = (clock.clone(), tpl.clone());
            let r = thread::Builder::new()
                .name("load-echo-reader".into())
                .spawn(move || {
                    c.guard(|| throughput_reader(rs, n, &t, &received, &writer_thread, &c))
                });
            match r {
                Ok(r) => readers.push(r),
                Err(source) => {
                    clock.abort.store(true, Ordering::Relaxed);
                    for w in writers {
                        let _ = join(w);
                    }
                    return Err(LoadError::Io {
                        phase: "spawning threads",
                        source,
                    });
                }
            }
        }

        let mut errors = Vec::new();
        let mut times = Vec::new();
        for r in readers {
            match join(r) {
                Ok(t) => times.push(t),
                Err(e) => errors.push(e),
            }
        }
        for w in writers {
            if let Err(e) = join(w) {
                errors.push(e);
            }
        }
        if let Some(e) = first_cause(errors) {
            return Err(e);
        }
        let first = times.iter().map(|t| t.first).min();
        let last = times.iter().map(|t| t.last).max();
        let (Some(first), Some(last)) = (first, last) else {
            return Err(LoadError::Config("no connection received a reply".into()));
        };
        let elapsed = (last - first).max(Duration::from_micros(1));
        let messages = self.messages - 1;
        let bytes = messages * self.size as u64;
        let secs = elapsed.as_secs_f64();
        Ok(ThroughputResult {
            msgs_per_sec: messages as f64 / secs,
            mb_per_sec: bytes as f64 / secs / 1e6,
            messages,
            bytes,
            elapsed,
        })
    }
}

fn throughput_writer(
    mut s: Stream,
    n: u64,
    window: u64,
    body_len: u32,
    tpl: &[u8],
    received: &AtomicU64,
    clock: &Clock,
) -> Result<(), LoadError> {
    const PHASE: &str = "echo throughput (sending)";
    s.set_write_timeout(Some(IO_SLICE))
        .map_err(|source| LoadError::Io {
            phase: PHASE,
            source,
        })?;
    let mut frame = encode_header(Kind::EchoRequest, 0, body_len).to_vec();
    frame.extend_from_slice(tpl);
    let mut out = Vec::with_capacity(COALESCE.min(frame.len() * window as usize));
    let mut sent = 0u64;
    while sent < n {
        let done = received.load(Ordering::Acquire);
        let mut credit = window.saturating_sub(sent.saturating_sub(done));
        if credit == 0 {
            clock.check("echo throughput (waiting for replies)", done, n)?;
            thread::park_timeout(Duration::from_millis(10));
            continue;
        }
        out.clear();
        while credit > 0 && sent < n {
            stamp(&mut frame[HEADER_LEN..], sent);
            sent += 1;
            credit -= 1;
            if frame.len() >= COALESCE {
                write_all(&mut s, &frame, clock, PHASE, done, n)?;
            } else {
                out.extend_from_slice(&frame);
                if out.len() + frame.len() > COALESCE {
                    break;
                }
            }
        }
        write_all(&mut s, &out, clock, PHASE, done, n)?;
    }
    Ok(())
}

fn throughput_reader(
    mut s: Stream,
    n: u64,
    tpl: &[u8],
    received: &AtomicU64,
    writer: &Thread,
    clock: &Clock,
) -> Result<ReaderTimes, LoadError> {
    const PHASE: &str = "echo throughput (receiving)";
    s.set_read_timeout(Some(IO_SLICE))
        .map_err(|source| LoadError::Io {
            phase: PHASE,
            source,
        })?;
    let mut rb = LinearBuffer::with_config(
        ECHO_RECV_CAPACITY,
        DemoFraming::with_max_body(tpl.len().max(DEFAULT_MAX_BODY)),
        Compaction::Lazy,
    );
    let mut got = 0u64;
    let mut first = None;
    let mut last = Instant::now();
    while got < n {
        read_some(&mut s, &mut rb, clock, PHASE, got, n)?;
        let now = Instant::now();
        let before = got;
        while let Some(f) = rb.next_frame()? {
            expect_kind(PHASE, &f, Kind::EchoReply)?;
            if got >= n {
                return Err(LoadError::UnexpectedFrame {
                    phase: PHASE,
                    detail: format!("reply beyond the {n} requests sent"),
                });
            }
            verify(f.body, tpl, got).map_err(|detail| LoadError::Mismatch {
                phase: PHASE,
                index: got,
                detail,
            })?;
            got += 1;
        }
        if got > before {
            first.get_or_insert(now);
            last = now;
            received.store(got, Ordering::Release);
            writer.unpark();
        }
    }
    Ok(ReaderTimes {
        first: first.unwrap_or(last),
        last,
    })
}

// ---------------------------------------------------------------------------
// Echo latency
// ---------------------------------------------------------------------------

/// Echo latency: ping-pong with one request in flight, `round_trips`
/// measured after one unmeasured warm-up round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoLatency {
    /// The server.
    pub target: Target,
    /// Body bytes per request.
    pub size: usize,
    /// Measured round trips (at least 1).
    pub round_trips: u64,
    /// Time limit of the whole run (default [`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
}

/// The result of an [`EchoLatency`] run, in microseconds (histogram
/// precision: 3 significant digits).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencyResult {
    /// Median round trip.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Mean.
    pub mean_us: f64,
    /// Slowest.
    pub max_us: f64,
    /// Round trips measured.
    pub round_trips: u64,
}

impl EchoLatency {
    /// A run with the default timeout.
    pub fn new(target: Target, size: usize, round_trips: u64) -> EchoLatency {
        EchoLatency {
            target,
            size,
            round_trips,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets the time limit.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs it.
    pub fn run(&self) -> Result<LatencyResult, LoadError> {
        const PHASE: &str = "echo latency";
        let body_len = check_size(self.size)?;
        if self.round_trips == 0 {
            return Err(LoadError::Config("round_trips must be at least 1".into()));
        }
        let io = |source| LoadError::Io {
            phase: PHASE,
            source,
        };
        let clock = Clock::new(self.timeout);
        let mut s = connect(&self.target, self.timeout)?;
        s.set_read_timeout(Some(IO_SLICE)).map_err(io)?;
        s.set_write_timeout(Some(IO_SLICE)).map_err(io)?;
        let tpl = template(self.size);
        let mut frame = encode_header(Kind::EchoRequest, 0, body_len).to_vec();
        frame.extend_from_slice(&tpl);
        let mut rb = recv_buffer(self.size);
        // 1 ns .. 1 hour, 3 significant digits.
        let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3)
            .map_err(|e| LoadError::Config(format!("histogram: {e}")))?;
        let n = self.round_trips;
        for seq in 0..=n {
            stamp(&mut frame[HEADER_LEN..], seq);
            let t0 = Instant::now();
            write_all(&mut s, &frame, &clock, PHASE, seq, n)?;
            loop {
                if let Some(f) = rb.next_frame()? {
                    expect_kind(PHASE, &f, Kind::EchoReply)?;
                    verify(f.body, &tpl, seq).map_err(|detail| LoadError::Mismatch {
                        phase: PHASE,
                        index: seq,
                        detail,
                    })?;
                    break;
                }
                read_some(&mut s, &mut rb, &clock, PHASE, seq, n)?;
            }
            let ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
            if seq > 0 {
                hist.saturating_record(ns.max(1));
            }
        }
        let us = |ns: u64| ns as f64 / 1e3;
        Ok(LatencyResult {
            p50_us: us(hist.value_at_quantile(0.5)),
            p99_us: us(hist.value_at_quantile(0.99)),
            p999_us: us(hist.value_at_quantile(0.999)),
            mean_us: hist.mean() / 1e3,
            max_us: us(hist.max()),
            round_trips: hist.len(),
        })
    }
}

// ---------------------------------------------------------------------------
// Fan-out
// ---------------------------------------------------------------------------

/// Pub/sub fan-out: `subscribers` connections join `room`, then one
/// publisher publishes `messages` bodies of `size` bytes and every
/// subscriber must receive every one, in order (checked by sequence number
/// when `size >= 8`, by body otherwise).
///
/// Before measuring, the publisher publishes a warm-up message (again,
/// every 50 ms) until every subscriber has received one, which proves the
/// server has processed every join. The clock runs from the first measured
/// publish to the last delivery.
///
/// All subscribers are read from one thread with `mio`; each holds a
/// [`LinearBuffer<DemoFraming>`] of at least one frame (see [`FANOUT_BUFFER_LIMIT`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanOut {
    /// The server.
    pub target: Target,
    /// Body bytes per publish.
    pub size: usize,
    /// Subscriber connections (at least 1).
    pub subscribers: usize,
    /// Measured publishes (at least 1).
    pub messages: u64,
    /// The room id.
    pub room: u16,
    /// Time limit of the whole run (default [`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
    /// Paced: publishes at most this many messages ahead of the slowest
    /// subscriber (`None`: as fast as the socket takes them, so the
    /// server's send-queue bound decides whether a lagging subscriber is
    /// closed). A paced run measures what the server holds in steady
    /// state rather than how far its queues let subscribers lag.
    pub pace: Option<u64>,
}

/// The result of a [`FanOut`] run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FanOutResult {
    /// Delivered (subscriber, message) pairs per second.
    pub deliveries_per_sec: f64,
    /// Deliveries counted (`messages * subscribers`).
    pub deliveries: u64,
    /// From the first measured publish to the last delivery.
    #[serde(rename = "elapsed_s", serialize_with = "ser_secs")]
    pub elapsed: Duration,
}

/// A non-blocking subscriber socket.
#[derive(Debug)]
enum MioStream {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

impl MioStream {
    fn register(&mut self, poll: &Poll, token: Token) -> io::Result<()> {
        match self {
            MioStream::Tcp(s) => poll.registry().register(s, token, Interest::READABLE),
            MioStream::Unix(s) => poll.registry().register(s, token, Interest::READABLE),
        }
    }
}

impl Read for MioStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            MioStream::Tcp(s) => s.read(buf),
            MioStream::Unix(s) => s.read(buf),
        }
    }
}

#[derive(Debug)]
struct Subscriber {
    stream: MioStream,
    rb: LinearBuffer<DemoFraming>,
    warmed: bool,
    next: u64,
}

impl FanOut {
    /// A run in room 1 with the default timeout.
    pub fn new(target: Target, size: usize, subscribers: usize, messages: u64) -> FanOut {
        FanOut {
            target,
            size,
            subscribers,
            messages,
            room: 1,
            timeout: DEFAULT_TIMEOUT,
            pace: None,
        }
    }

    /// Sets the room.
    pub fn with_room(mut self, room: u16) -> Self {
        self.room = room;
        self
    }

    /// Paces the publisher: at most `window` messages ahead of the slowest
    /// subscriber (see [`FanOut::pace`]; 0 leaves the run unpaced).
    pub fn with_pace(mut self, window: u64) -> Self {
        self.pace = (window > 0).then_some(window);
        self
    }

    /// Sets the time limit.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Receive-buffer bytes the subscribers will hold together.
    pub fn buffer_memory(&self) -> usize {
        let per = RECV_CAPACITY.max(HEADER_LEN + self.size.max(DEFAULT_MAX_BODY));
        per.saturating_mul(self.subscribers)
    }

    /// Runs it (raising `RLIMIT_NOFILE` if the subscribers need it).
    pub fn run(&self) -> Result<FanOutResult, LoadError> {
        const PHASE: &str = "fan-out (publishing)";
        let body_len = check_size(self.size)?;
        if self.subscribers == 0 || self.messages == 0 {
            return Err(LoadError::Config(
                "fan-out needs at least 1 subscriber and 1 message".into(),
            ));
        }
        if self.buffer_memory() > FANOUT_BUFFER_LIMIT {
            return Err(LoadError::Config(format!(
                "{} subscribers x {} B bodies need {} MiB of receive buffers (limit {} MiB)",
                self.subscribers,
                self.size,
                self.buffer_memory() >> 20,
                FANOUT_BUFFER_LIMIT >> 20
            )));
        }
        let needed = self.subscribers as u64 + 64;
        let limit = raise_fd_limit(needed).map_err(|source| LoadError::Io {
            phase: "raising RLIMIT_NOFILE",
            source,
        })?;
        if limit < needed {
            return Err(LoadError::FdLimit { needed, limit });
        }
        let io = |phase| move |source| LoadError::Io { phase, source };
        let clock = Clock::new(self.timeout);
        let expected = self.subscribers as u64;

        // Subscribers: connect, join (blocking), then hand to mio.
        let poll = Poll::new().map_err(io("fan-out setup"))?;
        let join_frame = encode_header(Kind::Join, self.room, 0);
        let mut subs = Vec::with_capacity(self.subscribers);
        for i in 0..self.subscribers {
            clock.check("fan-out (connecting subscribers)", i as u64, expected)?;
            let mut s = connect(&self.target, self.timeout)?;
            s.set_write_timeout(Some(IO_SLICE))
                .map_err(io("fan-out setup"))?;
            write_all(
                &mut s,
                &join_frame,
                &clock,
                "fan-out (joining)",
                i as u64,
                expected,
            )?;
            let mut stream = s.into_mio().map_err(io("fan-out setup"))?;
            stream
                .register(&poll, Token(i))
                .map_err(io("fan-out setup"))?;
            subs.push(Subscriber {
                stream,
                rb: recv_buffer(self.size),
                warmed: false,
                next: 0,
            });
        }
        let mut publisher = connect(&self.target, self.timeout)?;
        publisher
            .set_write_timeout(Some(IO_SLICE))
            .map_err(io("fan-out setup"))?;

        let warmed = Arc::new(AtomicUsize::new(0));
        // The deliveries of the slowest subscriber (for pacing).
        let slowest = Arc::new(AtomicU64::new(0));
        let reader = {
            let (c, w, low) = (clock.clone(), warmed.clone(), slowest.clone());
            let (tpl, messages, room) = (template(self.size), self.messages, self.room);
            thread::Builder::new()
                .name("load-fanout-reader".into())
                .spawn(move || {
                    c.guard(|| fanout_reader(poll, subs, &tpl, messages, room, &w, &low, &c))
                })
                .map_err(io("spawning threads"))?
        };
        // Waits until publishing `seq` keeps within the pace window.
        let pace = |seq: u64| -> Result<(), LoadError> {
            let Some(window) = self.pace else {
                return Ok(());
            };
            while seq >= slowest.load(Ordering::Acquire) + window {
                clock.check(PHASE, seq, self.messages)?;
                thread::sleep(Duration::from_micros(100));
            }
            Ok(())
        };
        let published = clock.guard(|| {
            // Warm-up: until every subscriber got one, re-published every 50 ms.
            let mut warm = encode_header(Kind::Publish, self.room, WARMUP.len() as u32).to_vec();
            warm.extend_from_slice(&WARMUP);
            'warm: loop {
                let n = warmed.load(Ordering::Acquire) as u64;
                write_all(
                    &mut publisher,
                    &warm,
                    &clock,
                    "fan-out (warm-up)",
                    n,
                    expected,
                )?;
                for _ in 0..50 {
                    let n = warmed.load(Ordering::Acquire) as u64;
                    if n == expected {
                        break 'warm;
                    }
                    clock.check("fan-out (warm-up)", n, expected)?;
                    thread::sleep(Duration::from_millis(1));
                }
            }
            let start = Instant::now();
            let mut frame = encode_header(Kind::Publish, self.room, body_len).to_vec();
            frame.extend_from_slice(&template(self.size));
            let mut out = Vec::with_capacity(COALESCE.min(frame.len() * 64));
            // Coalesced writes stay well inside a pace window.
            let coalesce = match self.pace {
                Some(w) => COALESCE.min((frame.len() * (w as usize / 4)).max(frame.len())),
                None => COALESCE,
            };
            for seq in 0..self.messages {
                stamp(&mut frame[HEADER_LEN..], seq);
                if frame.len() >= coalesce {
                    pace(seq)?;
                    write_all(&mut publisher, &frame, &clock, PHASE, seq, self.messages)?;
                } else {
                    if out.len() + frame.len() > coalesce {
                        pace(seq)?;
                        write_all(&mut publisher, &out, &clock, PHASE, seq, self.messages)?;
                        out.clear();
                    }
                    out.extend_from_slice(&frame);
                }
            }
            write_all(
                &mut publisher,
                &out,
                &clock,
                PHASE,
                self.messages,
                self.messages,
            )?;
            Ok(start)
        });
        let delivered = join(reader);
        let (start, last) = match (published, delivered) {
            (Ok(start), Ok(last)) => (start, last),
            (p, d) => {
                let errors = [p.err(), d.err()].into_iter().flatten().collect();
                return Err(first_cause(errors).unwrap_or(LoadError::Aborted));
            }
        };
        let deliveries = self.messages * self.subscribers as u64;
        let elapsed = last
            .saturating_duration_since(start)
            .max(Duration::from_micros(1));
        Ok(FanOutResult {
            deliveries_per_sec: deliveries as f64 / elapsed.as_secs_f64(),
            deliveries,
            elapsed,
        })
    }
}

/// Reads every subscriber until each has `messages` deliveries; returns
/// the time of the last one; publishes the slowest subscriber's count in
/// `slowest` (the pace).
#[allow(clippy::too_many_arguments)]
fn fanout_reader(
    mut poll: Poll,
    mut subs: Vec<Subscriber>,
    tpl: &[u8],
    messages: u64,
    room: u16,
    warmed: &AtomicUsize,
    slowest: &AtomicU64,
    clock: &Clock,
) -> Result<Instant, LoadError> {
    const PHASE: &str = "fan-out (receiving)";
    let total = messages * subs.len() as u64;
    let mut delivered = 0u64;
    let mut done = 0usize;
    let mut last = Instant::now();
    let mut events = Events::with_capacity(1024);
    while done < subs.len() {
        clock.check(PHASE, delivered, total)?;
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(50))) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(LoadError::Io {
                phase: PHASE,
                source: e,
            });
        }
        for ev in events.iter() {
            let Some(sub) = subs.get_mut(ev.token().0) else {
                continue;
            };
            // Edge-triggered: read until WouldBlock.
            loop {
                match sub.rb.read_from(&mut sub.stream) {
                    Ok(0) => {
                        sub.rb.finish()?;
                        return Err(LoadError::Closed {
                            phase: PHASE,
                            reason: format!("end of stream on subscriber {}", ev.token().0),
                        });
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(source) => {
                        return Err(LoadError::Io {
                            phase: PHASE,
                            source,
                        });
                    }
                }
                let now = Instant::now();
                while let Some(f) = sub.rb.next_frame()? {
                    expect_kind(PHASE, &f, Kind::Delivery)?;
                    if f.room() != room {
                        return Err(LoadError::UnexpectedFrame {
                            phase: PHASE,
                            detail: format!("delivery for room {} instead of {room}", f.room()),
                        });
                    }
                    if f.body == WARMUP {
                        if sub.next > 0 {
                            return Err(LoadError::UnexpectedFrame {
                                phase: PHASE,
                                detail: "warm-up delivered after measured messages".into(),
                            });
                        }
                        if !sub.warmed {
                            sub.warmed = true;
                            warmed.fetch_add(1, Ordering::Release);
                        }
                        continue;
                    }
                    if sub.next >= messages {
                        return Err(LoadError::UnexpectedFrame {
                            phase: PHASE,
                            detail: format!("delivery beyond the {messages} published"),
                        });
                    }
                    verify(f.body, tpl, sub.next).map_err(|detail| LoadError::Mismatch {
                        phase: PHASE,
                        index: sub.next,
                        detail,
                    })?;
                    sub.next += 1;
                    delivered += 1;
                    if sub.next == messages {
                        done += 1;
                        last = now;
                    }
                }
            }
        }
        if !events.is_empty() {
            let low = subs.iter().map(|s| s.next).min().unwrap_or(messages);
            slowest.store(low, Ordering::Release);
        }
    }
    Ok(last)
}

// ---------------------------------------------------------------------------
// Plans, tables, JSON
// ---------------------------------------------------------------------------

/// One scenario of a [`LoadPlan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scenario {
    /// Echo throughput.
    Throughput(EchoThroughput),
    /// Echo latency.
    Latency(EchoLatency),
    /// Pub/sub fan-out.
    FanOut(FanOut),
}

impl From<EchoThroughput> for Scenario {
    fn from(s: EchoThroughput) -> Self {
        Scenario::Throughput(s)
    }
}

impl From<EchoLatency> for Scenario {
    fn from(s: EchoLatency) -> Self {
        Scenario::Latency(s)
    }
}

impl From<FanOut> for Scenario {
    fn from(s: FanOut) -> Self {
        Scenario::FanOut(s)
    }
}

impl Scenario {
    /// `"echo"`, `"latency"` or `"fanout"`.
    pub fn mode(&self) -> &'static str {
        match self {
            Scenario::Throughput(_) => "echo",
            Scenario::Latency(_) => "latency",
            Scenario::FanOut(_) => "fanout",
        }
    }

    /// Body size in bytes.
    pub fn size(&self) -> usize {
        match self {
            Scenario::Throughput(s) => s.size,
            Scenario::Latency(s) => s.size,
            Scenario::FanOut(s) => s.size,
        }
    }

    /// The parameters besides mode and size, e.g. `"window 64, 1 conn"`.
    pub fn params(&self) -> String {
        match self {
            Scenario::Throughput(s) => format!(
                "{} msgs, window {}, {} conn",
                s.messages, s.window, s.connections
            ),
            Scenario::Latency(s) => format!("{} round trips", s.round_trips),
            Scenario::FanOut(s) => format!("{} subs, {} msgs", s.subscribers, s.messages),
        }
    }

    /// Runs it.
    pub fn run(&self) -> Result<Measurement, LoadError> {
        Ok(match self {
            Scenario::Throughput(s) => Measurement::Throughput(s.run()?),
            Scenario::Latency(s) => Measurement::Latency(s.run()?),
            Scenario::FanOut(s) => Measurement::FanOut(s.run()?),
        })
    }
}

/// The result of one scenario.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Measurement {
    /// From [`EchoThroughput`].
    Throughput(ThroughputResult),
    /// From [`EchoLatency`].
    Latency(LatencyResult),
    /// From [`FanOut`].
    FanOut(FanOutResult),
}

/// One row of a plan's results: what ran and what came out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadRecord {
    /// [`Scenario::mode`].
    pub mode: &'static str,
    /// Body bytes.
    pub size: usize,
    /// [`Scenario::params`].
    pub params: String,
    /// The measurement, if the run succeeded.
    pub result: Option<Measurement>,
    /// The error, if it failed.
    pub error: Option<String>,
}

/// A list of scenarios run one after the other. A failed run is recorded
/// and the plan goes on.
#[derive(Debug, Clone, Default)]
pub struct LoadPlan {
    /// The scenarios, in order.
    pub scenarios: Vec<Scenario>,
    /// Show a progress bar: `None` (default) shows it only when stdout is a
    /// terminal.
    pub progress: Option<bool>,
}

impl LoadPlan {
    /// An empty plan.
    pub fn new() -> LoadPlan {
        LoadPlan::default()
    }

    /// Appends a scenario.
    pub fn push(&mut self, s: impl Into<Scenario>) -> &mut Self {
        self.scenarios.push(s.into());
        self
    }

    /// Runs every scenario, in order.
    pub fn run(&self) -> Vec<LoadRecord> {
        let show = self.progress.unwrap_or_else(|| io::stdout().is_terminal());
        let bar = if show {
            let b = ProgressBar::new(self.scenarios.len() as u64);
            if let Ok(style) =
                ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            {
                b.set_style(style.progress_chars("=> "));
            }
            b
        } else {
            ProgressBar::hidden()
        };
        let mut out = Vec::with_capacity(self.scenarios.len());
        for s in &self.scenarios {
            bar.set_message(format!(
                "{} {} ({})",
                s.mode(),
                fmt_size(s.size()),
                s.params()
            ));
            let r = s.run();
            out.push(LoadRecord {
                mode: s.mode(),
                size: s.size(),
                params: s.params(),
                error: r.as_ref().err().map(|e| e.to_string()),
                result: r.ok(),
            });
            bar.inc(1);
        }
        bar.finish_and_clear();
        out
    }
}

/// `64 B`, `1 KiB`, `1.5 KiB`, `1 MiB`.
pub fn fmt_size(n: usize) -> String {
    const UNITS: [(usize, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (u, name) in UNITS {
        if n >= u {
            return if n % u == 0 {
                format!("{} {name}", n / u)
            } else {
                format!("{:.1} {name}", n as f64 / u as f64)
            };
        }
    }
    format!("{n} B")
}

/// An integer with thousands separators.
fn fmt_int(v: f64) -> String {
    let s = format!("{:.0}", v.max(0.0));
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Renders results as a Markdown table: one row per record; columns that
/// do not apply to a mode are `-`; a failed run shows its error.
pub fn render_table(records: &[LoadRecord]) -> String {
    let mut t = String::from(
        "| mode | size | setup | count | per sec | MB/s | p50 us | p99 us | p99.9 us | max us | elapsed s |\n\
         |---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in records {
        let cells: [String; 8] = match &r.result {
            Some(Measurement::Throughput(m)) => [
                fmt_int(m.messages as f64),
                fmt_int(m.msgs_per_sec),
                format!("{:.1}", m.mb_per_sec),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                format!("{:.3}", m.elapsed.as_secs_f64()),
            ],
            Some(Measurement::Latency(m)) => [
                fmt_int(m.round_trips as f64),
                fmt_int(if m.mean_us > 0.0 {
                    1e6 / m.mean_us
                } else {
                    0.0
                }),
                "-".into(),
                format!("{:.1}", m.p50_us),
                format!("{:.1}", m.p99_us),
                format!("{:.1}", m.p999_us),
                format!("{:.1}", m.max_us),
                "-".into(),
            ],
            Some(Measurement::FanOut(m)) => {
                let secs = m.elapsed.as_secs_f64();
                [
                    fmt_int(m.deliveries as f64),
                    fmt_int(m.deliveries_per_sec),
                    format!("{:.1}", m.deliveries as f64 * r.size as f64 / secs / 1e6),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    format!("{secs:.3}"),
                ]
            }
            None => {
                let err = r.error.as_deref().unwrap_or("no result").replace('|', "/");
                t.push_str(&format!(
                    "| {} | {} | {} | FAILED: {err} | | | | | | | |\n",
                    r.mode,
                    fmt_size(r.size),
                    r.params
                ));
                continue;
            }
        };
        t.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            r.mode,
            fmt_size(r.size),
            r.params,
            cells.join(" | ")
        ));
    }
    t
}

/// The records as pretty JSON.
pub fn to_json(records: &[LoadRecord]) -> Result<String, LoadError> {
    Ok(serde_json::to_string_pretty(records)?)
}

/// Writes the records as pretty JSON to `path`.
pub fn write_json(path: &Path, records: &[LoadRecord]) -> Result<(), LoadError> {
    let json = to_json(records)?;
    std::fs::write(path, json + "\n").map_err(|source| LoadError::Io {
        phase: "writing the JSON report",
        source,
    })
}

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

/// Which scenarios `server-demo load` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadMode {
    /// Echo throughput.
    Echo,
    /// Echo latency (ping-pong).
    Latency,
    /// Pub/sub fan-out.
    Fanout,
    /// All three.
    All,
}

/// Parses `64`, `4k`, `4KiB`, `1M`, `1MiB`, `1 MiB` (powers of 1024).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num.parse().map_err(|_| format!("bad size {s:?}"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        _ => return Err(format!("bad size unit in {s:?} (use B, KiB or MiB)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} too large"))
}

/// Arguments of `server-demo load` (flatten into a clap subcommand).
///
/// Counts left out are chosen per size so that each run moves a bounded
/// amount of data (see [`LoadArgs::plan`]).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct LoadArgs {
    /// TCP address of the server.
    #[arg(
        long,
        value_name = "ADDR",
        conflicts_with = "unix",
        required_unless_present = "unix"
    )]
    pub tcp: Option<SocketAddr>,
    /// Unix-domain socket path of the server.
    #[arg(long, value_name = "PATH")]
    pub unix: Option<PathBuf>,
    /// Scenarios to run.
    #[arg(long, value_enum, default_value_t = LoadMode::All)]
    pub mode: LoadMode,
    /// Body sizes (B, KiB, MiB suffixes). Bodies over 10 KiB need a server
    /// started with a raised --max-frame.
    #[arg(
        long,
        value_delimiter = ',',
        value_parser = parse_size,
        default_value = "64,256,1KiB,4KiB,64KiB,128KiB,256KiB,1MiB"
    )]
    pub sizes: Vec<usize>,
    /// Echo requests per throughput run / publishes per fan-out run
    /// (default: by size).
    #[arg(long, value_name = "N")]
    pub messages: Option<u64>,
    /// Round trips per latency run (default: by size).
    #[arg(long, value_name = "N")]
    pub round_trips: Option<u64>,
    /// Echo requests in flight per connection.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_WINDOW)]
    pub window: u64,
    /// Connections of a throughput run.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub connections: usize,
    /// Subscriber counts of the fan-out runs.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256,1000")]
    pub subscribers: Vec<usize>,
    /// Room of the fan-out runs.
    #[arg(long, default_value_t = 1)]
    pub room: u16,
    /// Pace the fan-out publisher: at most N publishes ahead of the
    /// slowest subscriber (0: as fast as the socket takes them).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub pace: u64,
    /// Time limit of each run, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub timeout: u64,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Never show the progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

fn clamp_count(budget: usize, per: usize, lo: u64, hi: u64) -> u64 {
    ((budget / per.max(1)) as u64).clamp(lo, hi)
}

impl LoadArgs {
    /// The target named by `--tcp` or `--unix`.
    pub fn target(&self) -> Result<Target, LoadError> {
        match (&self.tcp, &self.unix) {
            (Some(a), None) => Ok(Target::Tcp(*a)),
            (None, Some(p)) => Ok(Target::Unix(p.clone())),
            _ => Err(LoadError::Config(
                "give exactly one of --tcp or --unix".into(),
            )),
        }
    }

    /// The plan these arguments describe, and notes on the combinations it
    /// skips (fan-outs whose receive buffers would exceed
    /// [`FANOUT_BUFFER_LIMIT`]).
    ///
    /// Default counts: throughput `128 MiB / frame` requests (1,000 ..
    /// 200,000), latency `64 MiB / frame` round trips (500 .. 20,000),
    /// fan-out `32 MiB / (frame * subscribers)` publishes (20 .. 20,000).
    pub fn plan(&self) -> Result<(LoadPlan, Vec<String>), LoadError> {
        let target = self.target()?;
        let timeout = Duration::from_secs(self.timeout.max(1));
        let all = self.mode == LoadMode::All;
        let mut plan = LoadPlan {
            scenarios: Vec::new(),
            progress: if self.no_progress { Some(false) } else { None },
        };
        let mut skipped = Vec::new();
        for &size in &self.sizes {
            let frame = size + HEADER_LEN;
            if all || self.mode == LoadMode::Echo {
                let n = self
                    .messages
                    .unwrap_or_else(|| clamp_count(128 << 20, frame, 1_000, 200_000));
                plan.push(
                    EchoThroughput::new(target.clone(), size, n)
                        .with_window(self.window)
                        .with_connections(self.connections)
                        .with_timeout(timeout),
                );
            }
            if all || self.mode == LoadMode::Latency {
                let n = self
                    .round_trips
                    .unwrap_or_else(|| clamp_count(64 << 20, frame, 500, 20_000));
                plan.push(EchoLatency::new(target.clone(), size, n).with_timeout(timeout));
            }
            if all || self.mode == LoadMode::Fanout {
                for &subs in &self.subscribers {
                    let n = self.messages.unwrap_or_else(|| {
                        clamp_count(32 << 20, frame.saturating_mul(subs.max(1)), 20, 20_000)
                    });
                    let f = FanOut::new(target.clone(), size, subs, n)
                        .with_room(self.room)
                        .with_pace(self.pace)
                        .with_timeout(timeout);
                    if f.buffer_memory() > FANOUT_BUFFER_LIMIT {
                        skipped.push(format!(
                            "skipped fanout {} with {subs} subscribers: {} MiB of receive buffers (limit {} MiB)",
                            fmt_size(size),
                            f.buffer_memory() >> 20,
                            FANOUT_BUFFER_LIMIT >> 20
                        ));
                    } else {
                        plan.push(f);
                    }
                }
            }
        }
        Ok((plan, skipped))
    }
}

/// `server-demo load`: runs the plan, prints the Markdown table (and the
/// skipped combinations) on stdout, writes the JSON file if asked, and
/// fails with [`LoadError::RunsFailed`] if any run failed.
pub fn run_load(args: LoadArgs) -> Result<(), LoadError> {
    let (plan, skipped) = args.plan()?;
    let target = args.target()?;
    let records = plan.run();
    println!("load against {target}\n");
    print!("{}", render_table(&records));
    for note in &skipped {
        println!("note: {note}");
    }
    if let Some(path) = &args.json {
        write_json(path, &records)?;
    }
    let failed = records.iter().filter(|r| r.error.is_some()).count();
    if failed > 0 {
        return Err(LoadError::RunsFailed {
            failed,
            total: records.len(),
        });
    }
    Ok(())
}
