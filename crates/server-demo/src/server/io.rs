//! IO threads: one `mio` event loop each, owning its sockets, receive
//! buffers and flushers. Nothing on the receive path takes a lock.

use std::collections::HashMap;
use std::io::{self, IoSlice, Read, Write};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::protocol::{DemoFraming, Kind, encode_header};
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};
use netbuf::{
    ChaCha20Transform, Flusher, FrameSource, OutFrame, Outgoing, ReceiveBuffer, Transport,
};

mod events;
mod input;
mod memory;
mod output;
mod zmtp;

use input::{decode_all, dispatch};
use output::pump_output;
pub(crate) use zmtp::ZmtpListener;

use super::inproc::ServerEnd;
use super::logic::Job;
use super::queue::SessionQueue;
use super::session::{SessionNotify, SessionShared};
use super::{Shared, ThreadMeter};
use crate::config::{RecvMode, TransformMode};
use crate::sync::LockExt;

/// The demo's ChaCha20 key and nonce: every session's outgoing stream is
/// enciphered from its first byte with this keystream. It stands in for
/// the cost of session encryption (fused with the send-buffer copy) and is
/// not a security mechanism: a client decrypts with the same constants.
pub const DEMO_KEY: [u8; 32] = [0x42; 32];
/// See [`DEMO_KEY`].
pub const DEMO_NONCE: [u8; 12] = [0; 12];

pub(crate) const WAKE: Token = Token(usize::MAX);
const TCP_LISTENER: Token = Token(usize::MAX - 1);
const UNIX_LISTENER: Token = Token(usize::MAX - 2);

/// Frames a flusher takes from its queue per drain.
pub(crate) const DRAIN_BATCH: usize = 256;

/// Frames taken at a time within a drain, checking [`FLUSHER_HIGH`]
/// between chunks.
const DRAIN_CHUNK: usize = 16;

/// Bytes a session's flusher may hold before it stops draining the queue
/// (the rest waits in the send queue, whose bound counts it; the kernel's
/// socket buffer is far larger, so this costs no throughput).
pub(crate) const FLUSHER_HIGH: usize = 16 << 10;

/// The largest send buffer kept once drained, by a session or as the IO
/// thread's spare (larger ones were grown by a burst and are released, see
/// `return_buffer`).
// Above FLUSHER_HIGH plus a chunk of small frames, so the buffer that busy
// sessions pass around is kept (4 KiB here cost 0.14 allocations per 64 B
// echo: a 64-deep window fills ~4.6 KiB per drain).
pub(crate) const FLUSHER_KEEP: usize = 32 << 10;

/// Bytes read from one session before the loop serves the others (a
/// client that never stops sending must not starve the rest).
pub(crate) const READ_BUDGET: usize = 256 << 10;

/// Delivery bytes (headers and bodies) inline handlers may queue or stage
/// for other sessions from one session's reads before the loop flushes
/// them (the rest of the input waits for the next turn). Without it, one
/// turn of a publisher's input (up to `READ_BUDGET`: 250 publishes of
/// 1 KiB) queued 250 deliveries for each of 256 subscribers before any was
/// written: they sat in send-queue blocks instead of the kernel's socket
/// buffers. Counted in deliveries first (1,024: fan-out x256 1 KiB peaked
/// at 7.6-7.8 MB RSS where no budget peaked at 13.7-14.1 MB); in bytes
/// since, with the same 1 MiB at 1 KiB, because a count starved small
/// messages: at 64 B to 256 subscribers 1,024 deliveries are 4 publishes,
/// so every turn wrote 256 sockets 288 bytes each.
pub(crate) const INLINE_DELIVERY_BYTES: usize = 1 << 20;

/// The part of an IO thread other threads reach: its waker, the sessions
/// that have something for it, and connections handed to it.
pub(crate) struct IoShared {
    /// Unique in the process (an IO thread's index is unique only within
    /// a server, and tests run several servers in one process).
    uid: usize,
    waker: Waker,
    ready: Mutex<Vec<u64>>,
    pub(crate) incoming: Mutex<Vec<Stream>>,
    /// ZMTP connections handed to it, with their endpoint.
    pub(crate) incoming_zmtp: Mutex<Vec<(Stream, Arc<crate::zmtp::endpoint::Endpoint>)>>,
}

thread_local! {
    /// The `uid` of the IO thread running on this thread, if any.
    static CURRENT_IO: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

/// The next `IoShared::uid`.
static NEXT_IO_UID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Whether this thread is the IO thread with `uid` (see `IoShared::uid`).
pub(crate) fn on_io_thread(uid: usize) -> bool {
    CURRENT_IO.with(|c| c.get()) == uid
}

/// Marks this thread as the IO thread with `uid` (once, when it starts;
/// tests use it to act as one).
pub(crate) fn enter_io_thread(uid: usize) {
    CURRENT_IO.with(|c| c.set(uid));
}

/// A fresh process-wide IO thread id.
pub(crate) fn next_io_uid() -> usize {
    NEXT_IO_UID.fetch_add(1, Ordering::Relaxed)
}

impl IoShared {
    pub(crate) fn new(waker: Waker) -> Self {
        IoShared {
            uid: next_io_uid(),
            waker,
            ready: Mutex::new(Vec::new()),
            incoming: Mutex::new(Vec::new()),
            incoming_zmtp: Mutex::new(Vec::new()),
        }
    }

    /// Session `id` has output queued or a close request.
    pub(crate) fn mark_ready(&self, id: u64) {
        let first = {
            let mut r = self.ready.locked();
            r.push(id);
            r.len() == 1
        };
        // The IO thread itself (inline handlers, its own closes) reads the
        // ready list before it next polls: no wakeup syscall needed.
        if first && !on_io_thread(self.uid) {
            self.wake();
        }
    }

    /// This IO thread's process-wide id (see [`on_io_thread`]).
    pub(crate) fn uid(&self) -> usize {
        self.uid
    }

    pub(crate) fn wake(&self) {
        let _ = self.waker.wake();
    }
}

/// A connected socket of either transport, or an in-process connection.
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Inproc(ServerEnd),
}

impl Stream {
    pub(crate) fn transport(&self) -> Transport {
        match self {
            Stream::Tcp(_) => Transport::Tcp,
            // Bodies copied into an in-memory pipe: the Unix socket's
            // threshold is the closer model.
            Stream::Unix(_) | Stream::Inproc(_) => Transport::Unix,
        }
    }

    /// The mio source (none for in-process connections, which wake their
    /// IO thread through its ready list).
    pub(crate) fn source(&mut self) -> Option<&mut dyn mio::event::Source> {
        match self {
            Stream::Tcp(s) => Some(s),
            Stream::Unix(s) => Some(s),
            Stream::Inproc(_) => None,
        }
    }

    pub(crate) fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Both),
            Stream::Inproc(s) => {
                s.shutdown();
                Ok(())
            }
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Inproc(s) => s.read(buf),
        }
    }
}

// SAFETY: the sockets go through `netbuf::read_fd` (read(2): writes at most
// `buf.len()` bytes, never reads `buf`, returns the count written); the
// in-process pipe through `netbuf::read_zeroed` (zeroes `buf`, then reads).
unsafe impl netbuf::ReadUninit for Stream {
    #[inline]
    fn read_uninit(&mut self, buf: &mut [std::mem::MaybeUninit<u8>]) -> io::Result<usize> {
        use std::os::fd::AsFd;
        match self {
            Stream::Tcp(s) => netbuf::read_fd(s.as_fd(), buf),
            Stream::Unix(s) => netbuf::read_fd(s.as_fd(), buf),
            Stream::Inproc(s) => netbuf::read_zeroed(s, buf),
        }
    }
}

/// A reader that remembers how many bytes the last read was offered: a
/// read that returns fewer has drained the socket (edge-triggered
/// readiness reports the next arrival), so no `WouldBlock` read follows.
pub(crate) struct Offered<'a> {
    pub(crate) stream: &'a mut Stream,
    pub(crate) offered: usize,
}

impl io::Read for Offered<'_> {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.offered = buf.len();
        self.stream.read(buf)
    }
}

// SAFETY: forwards to `Stream`'s `read_uninit`, which keeps the contract.
unsafe impl netbuf::ReadUninit for Offered<'_> {
    #[inline]
    fn read_uninit(&mut self, buf: &mut [std::mem::MaybeUninit<u8>]) -> io::Result<usize> {
        self.offered = buf.len();
        self.stream.read_uninit(buf)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::Inproc(s) => s.write(buf),
        }
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
            Stream::Inproc(s) => s.write_vectored(bufs),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The IO thread's half of a session.
struct Session {
    stream: Stream,
    shared: Arc<SessionShared>,
    /// Receive buffer and flusher, `None` while the session is parked: the
    /// sweep drops them from a session with nothing buffered, pending or
    /// queued, and its next event takes them again (see `memory.rs`), so an
    /// idle connection holds only this struct and its shared half.
    io: Option<Box<SessionIo>>,
    /// Readable edge seen and not yet read to `WouldBlock`.
    want_read: bool,
    /// The peer closed its side (or the socket failed): read to the end.
    read_closed: bool,
}

/// Nothing held by the receive buffer: no byte and no frame half-way (a
/// staged large body has had its header consumed; dropping the buffer then
/// would lose the stream's framing).
fn recv_is_empty(recv: &ReceiveBuffer<DemoFraming>) -> bool {
    match recv {
        ReceiveBuffer::Linear(b) => b.is_empty(),
        ReceiveBuffer::Chained(b) => b.is_empty(),
    }
}

/// What a session needs only while it has traffic.
struct SessionIo {
    recv: ReceiveBuffer<DemoFraming>,
    flusher: Flusher<Outgoing>,
}

impl SessionIo {
    fn new(shared: &Shared, transport: netbuf::Transport) -> Box<SessionIo> {
        let cfg = &shared.cfg;
        let codec = DemoFraming::with_max_body(cfg.max_frame);
        let recv = match cfg.recv {
            RecvMode::Linear => ReceiveBuffer::linear(codec),
            RecvMode::Chained => ReceiveBuffer::chained(shared.pool.clone(), codec),
        };
        let mut flusher = Flusher::new(shared.threshold(transport));
        if cfg.transform == TransformMode::Chacha20 {
            flusher = flusher.with_transform(ChaCha20Transform::new(DEMO_KEY, DEMO_NONCE));
        }
        Box::new(SessionIo { recv, flusher })
    }
}

impl Session {
    /// Nothing received and not decoded, nothing to write or queued.
    fn is_quiet(&self) -> bool {
        self.shared.queue.queued_bytes() == 0
            && self.shared.staged.is_empty()
            && self
                .io
                .as_ref()
                .is_none_or(|io| recv_is_empty(&io.recv) && io.flusher.is_empty())
    }

    /// Drops the receive buffer and flusher of a quiet session, counting
    /// what the flusher sent, and its queue's slot blocks; a session with a stream transform keeps its
    /// flusher (the cipher's position is in it). Returns whether it parked.
    fn park(&mut self, shared: &Shared) -> bool {
        if shared.cfg.transform != TransformMode::None || !self.is_quiet() {
            return false;
        }
        // Already parked: its queue's block went back then, and a push
        // since would have taken the session out of the parked state.
        let Some(io) = self.io.take() else {
            return true;
        };
        shared.counters.add_flushed(&io.flusher.metrics());
        self.shared.queue.release_idle_memory();
        self.shared.staged.discard(self.shared.io.uid());
        true
    }

    /// The receive buffer and flusher, taken again if the session was
    /// parked.
    fn io(&mut self, shared: &Shared) -> (&mut SessionIo, &mut Stream, &Arc<SessionShared>) {
        let io = self
            .io
            .get_or_insert_with(|| SessionIo::new(shared, self.stream.transport()));
        (io, &mut self.stream, &self.shared)
    }
}

pub(crate) struct IoThread {
    index: usize,
    poll: Poll,
    shared: Arc<Shared>,
    all: Vec<Arc<IoShared>>,
    tcp: Option<TcpListener>,
    unix: Option<UnixListener>,
    /// Boxed: a map keeps up to twice its length in spare buckets, which
    /// would each cost a whole session (~400 B) inline.
    sessions: HashMap<u64, Box<Session>>,
    /// ZMTP connections (the same ids and tokens as `sessions`).
    /// Boxed, as `sessions`.
    zmtp: HashMap<u64, Box<crate::zmtp::conn::ZmtpConn>>,
    zmtp_listeners: Vec<(ZmtpListener, Arc<crate::zmtp::endpoint::Endpoint>)>,
    next_target: usize,
    /// Sessions that used their read budget and have more to read.
    again: Vec<u64>,
    /// The send buffer lent to whichever session is being flushed (see
    /// `pump_output`): sessions taking turns share its memory.
    send_spare: Vec<u8>,
    /// What this thread's sessions hold, for the memory report.
    memory: Arc<super::memory::MemoryMeter>,
    house: memory::Housekeeping,
}

/// Why a session ends.
enum Close {
    /// The peer closed or the connection failed: nothing to tell it.
    Quiet(String),
    /// A protocol violation: tell the peer why, then close.
    Protocol(String),
}

impl IoThread {
    pub(crate) fn new(
        index: usize,
        poll: Poll,
        shared: Arc<Shared>,
        all: Vec<Arc<IoShared>>,
        mut tcp: Option<TcpListener>,
        mut unix: Option<UnixListener>,
        mut zmtp_listeners: Vec<(ZmtpListener, Arc<crate::zmtp::endpoint::Endpoint>)>,
    ) -> io::Result<Self> {
        for (i, (l, _)) in zmtp_listeners.iter_mut().enumerate() {
            l.register(poll.registry(), zmtp::listener_token(i))?;
        }
        if let Some(l) = &mut tcp {
            poll.registry()
                .register(l, TCP_LISTENER, Interest::READABLE)?;
        }
        if let Some(l) = &mut unix {
            poll.registry()
                .register(l, UNIX_LISTENER, Interest::READABLE)?;
        }
        let memory = shared.memory_meter();
        Ok(IoThread {
            index,
            poll,
            shared,
            all,
            tcp,
            unix,
            sessions: HashMap::new(),
            zmtp: HashMap::new(),
            zmtp_listeners,
            next_target: index,
            again: Vec::new(),
            send_spare: Vec::new(),
            memory,
            house: memory::Housekeeping::new(),
        })
    }

    fn me(&self) -> &Arc<IoShared> {
        &self.all[self.index]
    }

    pub(crate) fn run(mut self) {
        enter_io_thread(self.me().uid);
        let meter: Arc<ThreadMeter> = self.shared.meter();
        let (mut seen_epoch, mut spins) = (0u64, 0u32);
        let mut events = Events::with_capacity(1024);
        let mut ready = Vec::new();
        loop {
            if self.shared.shutdown.load(Ordering::SeqCst) {
                self.shut_down();
                break;
            }
            let idle = self.is_idle();
            let timeout = self.poll_timeout(idle, spins);
            if !self.poll_events(&mut events, timeout) {
                break;
            }
            if events.is_empty() && idle {
                spins = spins.saturating_add(1);
            } else {
                spins = 0;
            }
            self.dispatch_events(&events);
            self.take_incoming();
            self.process_ready(&mut ready);
            let quiet = events.is_empty() && !timeout.is_zero();
            self.housekeeping(quiet);
            self.publish_meter(&meter, quiet, &mut seen_epoch);
        }
        meter.update();
    }

    /// Server shutdown: every peer is told why its session ends.
    fn shut_down(&mut self) {
        let ids: Vec<u64> = self.sessions.keys().copied().collect();
        for id in ids {
            self.close(id, Close::Protocol("server shutdown".into()));
        }
        self.close_all_zmtp();
    }

    /// Nothing waits for this thread but the poll: sessions that used their
    /// read budget, and work this thread queued for itself (inline handlers
    /// mark their own sessions ready without a wakeup), must not wait for a
    /// poll timeout.
    #[inline]
    fn is_idle(&self) -> bool {
        self.again.is_empty() && self.me().ready.locked().is_empty()
    }

    /// Busy-poll (`--busy-poll N`): up to N non-blocking polls after the
    /// last event before sleeping, so a request that arrives meanwhile is
    /// seen without a wakeup. Counted in polls, not time: reading the clock
    /// is a syscall on some machines.
    #[inline]
    fn poll_timeout(&self, idle: bool, spins: u32) -> Duration {
        let timeout = if idle && spins >= self.shared.cfg.busy_poll {
            Duration::from_millis(100)
        } else {
            Duration::ZERO
        };
        if idle && spins > 0 && spins < self.shared.cfg.busy_poll {
            // Spinning for the next request: let a runnable thread on
            // this core (the peer's, on a small machine) go first.
            std::thread::yield_now();
        }
        timeout
    }

    /// Waits for events; `false` if polling failed for good (logged), which
    /// ends the thread.
    #[inline]
    fn poll_events(&mut self, events: &mut Events, timeout: Duration) -> bool {
        if let Err(e) = self.poll.poll(events, Some(timeout))
            && e.kind() != io::ErrorKind::Interrupted
        {
            tracing::error!(thread = self.index, error = %e, "poll failed");
            return false;
        }
        true
    }

    /// Adopts the connections other threads' accepts handed to this one.
    #[inline]
    fn take_incoming(&mut self) {
        let incoming = std::mem::take(&mut *self.me().incoming.locked());
        for s in incoming {
            self.add_session(s);
        }
        let incoming = std::mem::take(&mut *self.me().incoming_zmtp.locked());
        for (s, ep) in incoming {
            self.add_zmtp(s, ep);
        }
    }

    /// Serves the sessions marked ready (output queued, a close requested),
    /// then those that used their read budget last turn. `ready` is the
    /// loop's spare list, swapped with the shared one so producers keep
    /// pushing into an allocated vector.
    #[inline]
    fn process_ready(&mut self, ready: &mut Vec<u64>) {
        std::mem::swap(ready, &mut *self.me().ready.locked());
        for id in ready.drain(..) {
            self.process(id);
        }
        ready.append(&mut self.again);
        for id in ready.drain(..) {
            self.process(id);
        }
    }

    /// Publishes the thread's meter when idle, when a report asked for it
    /// (a new epoch), and otherwise only every `METER_EVERY` turns (reading
    /// the thread's CPU time is a syscall).
    #[inline]
    fn publish_meter(&self, meter: &ThreadMeter, quiet: bool, seen_epoch: &mut u64) {
        let epoch = self.shared.meter_epoch.load(Ordering::Relaxed);
        if quiet
            || epoch != *seen_epoch
            || self
                .house
                .turns()
                .is_multiple_of(super::ThreadMeter::METER_EVERY)
        {
            *seen_epoch = epoch;
            meter.update();
        }
    }

    /// Round-robin over IO threads.
    pub(crate) fn assign(&mut self, s: Stream) {
        let target = self.next_target % self.all.len();
        self.next_target = self.next_target.wrapping_add(1);
        if target == self.index {
            self.add_session(s);
        } else {
            self.all[target].incoming.locked().push(s);
            self.all[target].wake();
        }
    }

    /// Registers a new session's socket with the poller (or binds an
    /// in-process end to this thread); `false` if that failed (logged).
    pub(super) fn attach(&mut self, stream: &mut Stream, id: u64) -> bool {
        match stream.source() {
            Some(src) => {
                let interest = Interest::READABLE | Interest::WRITABLE;
                let token = Token(id as usize);
                if let Err(e) = self.poll.registry().register(src, token, interest) {
                    tracing::warn!(error = %e, "register failed");
                    return false;
                }
            }
            None => {
                if let Stream::Inproc(end) = &*stream {
                    end.bind(id, self.me().clone());
                }
            }
        }
        true
    }

    /// A new connection's id and shared half (its send queue, notifying
    /// this thread), once its stream is registered with the poller;
    /// `None` if it could not be (the stream is dropped). Counted as
    /// opened and live. Demo sessions and ZMTP connections both start here.
    pub(super) fn open_session(&mut self, stream: &mut Stream) -> Option<Arc<SessionShared>> {
        let id = self.shared.next_session.fetch_add(1, Ordering::Relaxed);
        if !self.attach(stream, id) {
            return None;
        }
        let cfg = &self.shared.cfg;
        let notify = SessionNotify {
            id,
            io: self.me().clone(),
        };
        let queue = SessionQueue::new(cfg.queue, cfg.send_queue_bytes, notify);
        let c = &self.shared.counters;
        c.sessions_opened.fetch_add(1, Ordering::Relaxed);
        self.shared.live_sessions.fetch_add(1, Ordering::Relaxed);
        Some(Arc::new(SessionShared::new(id, queue, self.me().clone())))
    }

    fn add_session(&mut self, mut stream: Stream) {
        let Some(shared) = self.open_session(&mut stream) else {
            return;
        };
        let id = shared.id;
        let session = Session {
            stream,
            shared,
            io: None,
            want_read: true,
            read_closed: false,
        };
        self.sessions.insert(id, Box::new(session));
        self.process(id);
    }

    /// Does whatever session `id` is ready for: a requested close, output,
    /// input.
    fn process(&mut self, id: u64) {
        let Some(s) = self.sessions.get_mut(&id) else {
            self.process_zmtp(id);
            return;
        };
        if matches!(s.stream, Stream::Inproc(_)) {
            // No readiness events: a wakeup may mean new input.
            s.want_read = true;
        }
        if let Some(reason) = s.shared.take_close_reason() {
            self.close(id, Close::Protocol(reason));
            return;
        }
        if let Err(e) = pump_output(s, &self.shared, &mut self.send_spare) {
            self.close(id, Close::Quiet(format!("write failed: {e}")));
            return;
        }
        if let Err(c) = self.read_input(id) {
            self.close(id, c);
            return;
        }
        if self.shared.logic.is_empty() {
            // Inline handlers queued their replies just now: send them in
            // this turn instead of waiting for the ready list.
            let Some(s) = self.sessions.get_mut(&id) else {
                return;
            };
            if let Err(e) = pump_output(s, &self.shared, &mut self.send_spare) {
                self.close(id, Close::Quiet(format!("write failed: {e}")));
            }
        }
    }

    fn read_input(&mut self, id: u64) -> Result<(), Close> {
        let shared = self.shared.clone();
        let Some(s) = self.sessions.get_mut(&id) else {
            return Ok(());
        };
        let limit = shared.cfg.send_queue_bytes / 2;
        let mut budget = READ_BUDGET;
        let was_parked = s.io.is_none();
        let inline = shared.logic.is_empty();
        let delivered = super::logic::delivery_bytes_queued();
        while s.want_read {
            if budget == 0
                || (inline
                    && super::logic::delivery_bytes_queued().wrapping_sub(delivered)
                        >= INLINE_DELIVERY_BYTES)
            {
                self.again.push(id);
                return Ok(());
            }
            // Backpressure: a client that does not read its replies stops
            // being read, so its requests wait in the kernel, not in our
            // memory. Nothing is dropped.
            let owed = s.shared.queue.queued_bytes() + s.shared.inflight.load(Ordering::Acquire);
            if owed >= limit {
                if !s.shared.read_paused.swap(true, Ordering::AcqRel) {
                    shared.counters.read_pauses.fetch_add(1, Ordering::Relaxed);
                }
                // Re-check after publishing the flag, so an answer that
                // landed in between is not missed.
                let owed =
                    s.shared.queue.queued_bytes() + s.shared.inflight.load(Ordering::Acquire);
                if owed >= limit {
                    return Ok(());
                }
            }
            s.shared.read_paused.store(false, Ordering::Release);
            let (io, stream, session) = s.io(&shared);
            let edges = !matches!(stream, Stream::Inproc(_));
            let mut reader = Offered { stream, offered: 0 };
            match io.recv.read_from(&mut reader) {
                Ok(0) => {
                    return Err(match io.recv.finish() {
                        Ok(()) => Close::Quiet("peer closed".into()),
                        Err(e) => Close::Quiet(format!("peer closed mid-frame: {e}")),
                    });
                }
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    let short = n < reader.offered;
                    // Inline echo replies may go straight into the flusher
                    // (see `decode_all`): lend it the thread's send buffer
                    // first (not with logic threads: the reply comes later,
                    // and the buffer would sit idle meanwhile).
                    if inline {
                        output::lend_buffer(&mut io.flusher, &mut self.send_spare);
                    }
                    decode_all(io, session, &shared)?;
                    // A short read drained the socket: the next arrival is
                    // a new readiness edge, so no `WouldBlock` read follows
                    // (one `recvfrom` less per request). Not after the peer
                    // closed its side (read on to the end of stream), nor
                    // for in-process streams (no readiness events).
                    if short && edges && !s.read_closed {
                        s.want_read = false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    s.want_read = false;
                    // A parked session woken by an event that brought
                    // nothing (a new connection's first readiness, a
                    // spurious wakeup) parks again at once.
                    if was_parked && s.is_quiet() {
                        s.park(&shared);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Close::Quiet(format!("read failed: {e}"))),
            }
        }
        Ok(())
    }

    fn close(&mut self, id: u64, why: Close) {
        let Some(mut s) = self.sessions.remove(&id) else {
            return;
        };
        let c = &self.shared.counters;
        let reason = match why {
            Close::Quiet(r) => r,
            Close::Protocol(r) => {
                c.sessions_rejected.fetch_add(1, Ordering::Relaxed);
                // Best effort: tell the peer why, if its socket takes it now.
                let body = r.as_bytes();
                if let Ok(m) = self.shared.pool.message_from(body) {
                    let (io, stream, _) = s.io(&self.shared);
                    io.flusher.push(OutFrame::new(
                        encode_header(Kind::Closing, 0, body.len() as u32).into(),
                        Outgoing::Owned(m),
                    ));
                    let _ = io.flusher.flush(stream);
                }
                r
            }
        };
        tracing::info!(session = id, reason = %reason, "session closed");
        if let Some(src) = s.stream.source() {
            let _ = self.poll.registry().deregister(src);
        }
        s.stream.shutdown();
        s.shared.queue.close();
        s.shared.staged.discard(s.shared.io.uid());
        if let Some(mut io) = s.io.take() {
            self.shared.counters.add_flushed(&io.flusher.metrics());
            io.flusher.clear();
        }
        c.sessions_closed.fetch_add(1, Ordering::Relaxed);
        self.shared.live_sessions.fetch_sub(1, Ordering::Relaxed);
        dispatch(&self.shared, Job::Closed(s.shared.clone()), id);
    }
}
