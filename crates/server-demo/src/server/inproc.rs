//! The in-process transport: the same path as a socket session (receive
//! buffer, decode, logic threads, send queue, flusher) with a pair of
//! bounded in-memory byte pipes where the kernel socket would be, so the
//! demo can compare tcp / ipc (Unix socket) / inproc as the messaging
//! engine's matrix did.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::Shared;
use super::io::{IoShared, Stream};
use crate::sync::LockExt;

/// Bytes each direction buffers before the writer sees `WouldBlock` (the
/// server) or blocks (the client), like a socket buffer.
pub const PIPE_CAPACITY: usize = 4 << 20;

struct PipeState {
    buf: VecDeque<u8>,
    closed: bool,
    /// The non-blocking side (the server) got `WouldBlock` and waits for a
    /// wakeup from the other side.
    server_waiting: bool,
}

impl PipeState {
    /// Moves up to `out.len()` buffered bytes into `out`; returns how many.
    fn take_into(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.buf.len());
        let (a, b) = self.buf.as_slices();
        let from_a = n.min(a.len());
        out[..from_a].copy_from_slice(&a[..from_a]);
        out[from_a..n].copy_from_slice(&b[..n - from_a]);
        self.buf.drain(..n);
        n
    }
}

/// One direction of an in-process connection.
struct Pipe {
    state: Mutex<PipeState>,
    cv: Condvar,
}

impl Pipe {
    fn new() -> Self {
        Pipe {
            state: Mutex::new(PipeState {
                buf: VecDeque::new(),
                closed: false,
                server_waiting: false,
            }),
            cv: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PipeState> {
        self.state.locked()
    }

    fn close(&self) {
        self.lock().closed = true;
        self.cv.notify_all();
    }
}

/// What both ends share.
pub(crate) struct InprocShared {
    to_server: Pipe,
    to_client: Pipe,
    /// The session id and IO thread, set when the server adopts the
    /// connection, so the client can wake it.
    server: OnceLock<(u64, Arc<IoShared>)>,
}

impl InprocShared {
    fn wake_server(&self) {
        if let Some((id, io)) = self.server.get() {
            io.mark_ready(*id);
        }
    }
}

/// The server's end: non-blocking, like a socket in a mio loop.
pub(crate) struct ServerEnd {
    shared: Arc<InprocShared>,
}

impl ServerEnd {
    /// Binds the connection to its session so the client can wake it.
    pub(crate) fn bind(&self, id: u64, io: Arc<IoShared>) {
        let _ = self.shared.server.set((id, io));
    }

    pub(crate) fn shutdown(&self) {
        self.shared.to_server.close();
        self.shared.to_client.close();
    }
}

impl Read for ServerEnd {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let pipe = &self.shared.to_server;
        let mut st = pipe.lock();
        if st.buf.is_empty() {
            if st.closed {
                return Ok(0);
            }
            st.server_waiting = true;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = st.take_into(out);
        drop(st);
        pipe.cv.notify_all();
        Ok(n)
    }
}

impl Write for ServerEnd {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(data)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let pipe = &self.shared.to_client;
        let mut st = pipe.lock();
        if st.closed {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let mut space = PIPE_CAPACITY.saturating_sub(st.buf.len());
        if space == 0 {
            st.server_waiting = true;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut n = 0;
        for b in bufs {
            let k = b.len().min(space);
            st.buf.extend(&b[..k]);
            n += k;
            space -= k;
            if space == 0 {
                break;
            }
        }
        drop(st);
        pipe.cv.notify_all();
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The client's end of an in-process connection: blocking `Read` and
/// `Write`, cloneable so a writer and a reader thread can share it.
/// Dropping every clone closes the connection.
///
/// Like a socket's, its read and write timeouts belong to the connection,
/// not to one handle: the clones share them (default 30 s each).
#[derive(Clone)]
pub struct InprocClient {
    shared: Arc<InprocShared>,
    side: Arc<ClientSide>,
}

/// What the clones of one [`InprocClient`] share: the timeouts, and the
/// close when the last clone goes.
struct ClientSide {
    shared: Arc<InprocShared>,
    /// Nanoseconds a read may block ([`NO_LIMIT`]: no limit).
    read_timeout: AtomicU64,
    /// Nanoseconds a write may block ([`NO_LIMIT`]: no limit).
    write_timeout: AtomicU64,
}

/// A timeout of `None`.
const NO_LIMIT: u64 = u64::MAX;

/// The clients' timeout until one is set.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl Drop for ClientSide {
    fn drop(&mut self) {
        self.shared.to_server.close();
        self.shared.to_client.close();
        self.shared.wake_server();
    }
}

impl std::fmt::Debug for InprocClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InprocClient").finish_non_exhaustive()
    }
}

/// Stores a timeout as `TcpStream::set_read_timeout` takes it: `None`
/// blocks without limit, a zero duration is refused.
fn store_timeout(slot: &AtomicU64, t: Option<Duration>) -> io::Result<()> {
    let nanos = match t {
        None => NO_LIMIT,
        Some(d) if d.is_zero() => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot set a 0 duration timeout",
            ));
        }
        Some(d) => u64::try_from(d.as_nanos()).unwrap_or(NO_LIMIT - 1),
    };
    slot.store(nanos, Ordering::Relaxed);
    Ok(())
}

/// When a call that starts now must give up (`None`: never).
fn deadline_of(slot: &AtomicU64) -> Option<Instant> {
    match slot.load(Ordering::Relaxed) {
        NO_LIMIT => None,
        nanos => Instant::now().checked_add(Duration::from_nanos(nanos)),
    }
}

/// Waits for `pipe` to change; `TimedOut` once `deadline` has passed.
fn wait<'a>(
    pipe: &'a Pipe,
    st: MutexGuard<'a, PipeState>,
    deadline: Option<Instant>,
) -> io::Result<MutexGuard<'a, PipeState>> {
    let Some(deadline) = deadline else {
        return Ok(pipe.cv.wait(st).unwrap_or_else(|p| p.into_inner()));
    };
    let now = Instant::now();
    if now >= deadline {
        return Err(io::ErrorKind::TimedOut.into());
    }
    Ok(pipe
        .cv
        .wait_timeout(st, deadline - now)
        .unwrap_or_else(|p| p.into_inner())
        .0)
}

impl InprocClient {
    /// Sets how long a read may block (`None`: no limit); past it the
    /// read fails with `TimedOut`. A zero duration is refused, as by
    /// `TcpStream::set_read_timeout`.
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        store_timeout(&self.side.read_timeout, t)
    }

    /// Sets how long a write may block (`None`: no limit); past it the
    /// write fails with `TimedOut`. A zero duration is refused.
    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        store_timeout(&self.side.write_timeout, t)
    }

    /// Shuts down one or both directions, as a socket's `shutdown`:
    /// `Write` ends what the server reads (after what is buffered),
    /// `Read` ends what this side reads and what the server may send.
    /// Never fails (a `Result` as a socket's).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            self.shared.to_server.close();
        }
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            self.shared.to_client.close();
        }
        self.shared.wake_server();
        Ok(())
    }
}

/// Opens in-process connections to a running server, as
/// [`Server::connect_inproc`](super::Server::connect_inproc) does, without
/// borrowing the [`Server`](super::Server): the load generator's
/// `Target::Inproc` holds one. Clones open connections to the same server;
/// two connectors are equal when they open connections to the same one.
/// A connection opened after the server stopped is never served (its
/// reads time out).
#[derive(Clone)]
pub struct InprocConnector {
    shared: Arc<Shared>,
    io: Vec<Arc<IoShared>>,
}

impl InprocConnector {
    pub(super) fn new(shared: Arc<Shared>, io: Vec<Arc<IoShared>>) -> InprocConnector {
        InprocConnector { shared, io }
    }

    /// Opens an in-process connection: the same session path as a socket
    /// (receive buffer, decoding, logic threads, send queue, flusher) over
    /// in-memory pipes. The client speaks the wire format through blocking
    /// `Read`/`Write`.
    pub fn connect(&self) -> InprocClient {
        let (end, client) = pair();
        let n = self.io.len();
        let target = self.shared.next_session.load(Ordering::Relaxed) as usize % n;
        self.io[target].incoming.locked().push(Stream::Inproc(end));
        self.io[target].wake();
        client
    }
}

impl std::fmt::Debug for InprocConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InprocConnector").finish_non_exhaustive()
    }
}

impl PartialEq for InprocConnector {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Eq for InprocConnector {}

impl std::hash::Hash for InprocConnector {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.shared).hash(state);
    }
}

/// Serialized as the unit `null`: a connector names no address.
impl serde::Serialize for InprocConnector {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

pub(crate) fn pair() -> (ServerEnd, InprocClient) {
    let shared = Arc::new(InprocShared {
        to_server: Pipe::new(),
        to_client: Pipe::new(),
        server: OnceLock::new(),
    });
    let nanos = DEFAULT_TIMEOUT.as_nanos() as u64;
    (
        ServerEnd {
            shared: shared.clone(),
        },
        InprocClient {
            side: Arc::new(ClientSide {
                shared: shared.clone(),
                read_timeout: AtomicU64::new(nanos),
                write_timeout: AtomicU64::new(nanos),
            }),
            shared,
        },
    )
}

impl Read for InprocClient {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let deadline = deadline_of(&self.side.read_timeout);
        let pipe = &self.shared.to_client;
        let mut st = pipe.lock();
        while st.buf.is_empty() {
            if st.closed {
                return Ok(0);
            }
            st = wait(pipe, st, deadline)?;
        }
        let n = st.take_into(out);
        let wake = std::mem::replace(&mut st.server_waiting, false);
        drop(st);
        if wake {
            self.shared.wake_server();
        }
        Ok(n)
    }
}

impl Write for InprocClient {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let deadline = deadline_of(&self.side.write_timeout);
        let pipe = &self.shared.to_server;
        let mut st = pipe.lock();
        loop {
            if st.closed {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            let space = PIPE_CAPACITY.saturating_sub(st.buf.len());
            if space > 0 {
                let k = space.min(data.len());
                st.buf.extend(&data[..k]);
                let wake = std::mem::replace(&mut st.server_waiting, false);
                drop(st);
                if wake {
                    self.shared.wake_server();
                }
                return Ok(k);
            }
            st = wait(pipe, st, deadline)?;
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
