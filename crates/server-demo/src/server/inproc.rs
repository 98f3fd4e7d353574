//! The in-process transport: the same path as a socket session (receive
//! buffer, decode, logic threads, send queue, flusher) with a pair of
//! bounded in-memory byte pipes where the kernel socket would be, so the
//! demo can compare tcp / ipc (Unix socket) / inproc as the messaging
//! engine's matrix did.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::io::IoShared;
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

    fn lock(&self) -> std::sync::MutexGuard<'_, PipeState> {
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
#[derive(Clone)]
pub struct InprocClient {
    shared: Arc<InprocShared>,
    _guard: Arc<CloseOnDrop>,
    timeout: Duration,
}

struct CloseOnDrop(Arc<InprocShared>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.to_server.close();
        self.0.to_client.close();
        self.0.wake_server();
    }
}

impl std::fmt::Debug for InprocClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InprocClient").finish_non_exhaustive()
    }
}

impl InprocClient {
    /// Sets how long a read or write may block (default 30 s); past it the
    /// call fails with `TimedOut`.
    pub fn set_timeout(&mut self, t: Duration) {
        self.timeout = t;
    }
}

pub(crate) fn pair() -> (ServerEnd, InprocClient) {
    let shared = Arc::new(InprocShared {
        to_server: Pipe::new(),
        to_client: Pipe::new(),
        server: OnceLock::new(),
    });
    (
        ServerEnd {
            shared: shared.clone(),
        },
        InprocClient {
            _guard: Arc::new(CloseOnDrop(shared.clone())),
            shared,
            timeout: Duration::from_secs(30),
        },
    )
}

impl Read for InprocClient {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let deadline = Instant::now() + self.timeout;
        let pipe = &self.shared.to_client;
        let mut st = pipe.lock();
        while st.buf.is_empty() {
            if st.closed {
                return Ok(0);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(io::ErrorKind::TimedOut.into());
            }
            st = pipe
                .cv
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
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
        let deadline = Instant::now() + self.timeout;
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
            let now = Instant::now();
            if now >= deadline {
                return Err(io::ErrorKind::TimedOut.into());
            }
            st = pipe
                .cv
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
