//! The lean reference server: mio by hand, plain `Vec<u8>` buffers, no
//! pools, no queues, no netbuf parts. What a careful engineer writes for
//! this wire format when only speed counts; the report's *ceiling* column
//! for small messages.
//!
//! What it does:
//!
//! * `worker_threads` threads (default: one per CPU), each with its own
//!   `mio::Poll`. Worker 0 also owns the listener and hands accepted
//!   connections round-robin to the workers (itself included) through the
//!   worker's channel and one `mio::Waker` wake per accept burst (no
//!   `SO_REUSEPORT`: round-robin is deterministic, so a run with one
//!   connection always lands on the same worker, and the kernel's hash
//!   cannot pile the subscribers of a fan-out onto one worker).
//! * Per connection a plain `Vec<u8>` read buffer (4 KiB to start, doubled
//!   up to 64 KiB while reads fill it, grown to fit the largest frame, never
//!   shrunk): read, parse every complete frame in place, keep the
//!   incomplete tail where it is and compact only when the next frame does
//!   not fit where it starts or the free tail is below a quarter of the
//!   buffer. A read that does not fill the buffer is taken as "socket
//!   drained" (no extra read for `WouldBlock`: epoll reports new data as a
//!   new edge). At most 256 KiB is read from one connection per loop turn
//!   (fairness: a flooding publisher cannot starve its subscribers' writes);
//!   the rest is read on the next turn.
//! * Per connection a plain `Vec<u8>` write buffer: echo replies and
//!   deliveries are appended to it (header and body copied, the kind byte
//!   patched in place in the read buffer first), and every connection with
//!   new output is written once per loop turn, after all events of the turn
//!   were handled (until the buffer is empty or `WouldBlock`). On
//!   `WouldBlock` the connection is registered for `WRITABLE` as well (and
//!   stays so: edge-triggered, the extra events cost nothing) and the rest
//!   waits for the next writable event.
//! * Backpressure on requests: while a connection's unsent output exceeds
//!   1 MiB, its input is not read (the client's requests wait in the
//!   kernel); reading resumes once the output drops to 512 KiB.
//! * Rooms: each worker keeps its own membership (`room -> [token]`) and a
//!   shared `Mutex<HashMap<room, worker bitmask>>` says which workers have
//!   members (updated when a worker's first member joins or last member
//!   leaves; read once per publish when there are several workers). A
//!   publish is appended directly to the write buffers of the members on
//!   the publisher's worker (the publisher too, if it is a member), and to
//!   the worker's outgoing batch if another worker has members. At the end
//!   of the loop turn the batch (delivery frames back to back, each naming
//!   its room) is copied once into an `Arc<[u8]>` and sent to every worker
//!   concerned with one wake each; a worker delivers a batch's frames to
//!   its own members of each frame's room.
//! * Slow consumers: a member whose unsent output exceeds the send bound
//!   ([`PeerConfig::send_queue_bytes`]; `bench-report` gives every server
//!   64 MiB) when a delivery is appended is closed: a `closing` frame with
//!   the reason is appended after what it already owes, nothing more is
//!   delivered to it, and it is dropped once written or after 5 s.
//! * Bad input (body over the limit, reserved flags, a server-only or
//!   unknown kind) gets the same checks and reasons as the tokio peers
//!   ([`classify`]): a `closing` frame after the replies already owed, then
//!   the connection is closed. End of stream: what is owed is still written
//!   (5 s at most), then the connection is closed.
//!
//! What it deliberately does not do: no buffer pools or size classes (the
//! allocator serves the few buffer growths), no zero-copy (echo bodies and
//! deliveries are copied into each write buffer; large bodies are never
//! gathered with `writev`), no shrinking of a read buffer that grew for a
//! large frame, no per-room ordering across publishers on different
//! workers, no inter-worker backpressure (batches are unbounded; the
//! receiving worker applies the send bound), no TLS, no Unix sockets, no
//! metrics, no idle timeouts.
//!
//! ```no_run
//! use benches::peers::{PeerConfig, mio_lean};
//! let server = mio_lean::start(PeerConfig::default()).unwrap();
//! println!("listening on {}", server.addr());
//! server.shutdown();
//! ```

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::mem;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use server_demo::protocol::{HEADER_LEN, Kind};

use super::{PeerConfig, PeerHandle, Request, classify};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX);
/// A new connection's read buffer.
const READ_MIN: usize = 4 << 10;
/// Doubled up to this while reads fill it.
const READ_CAPACITY: usize = 64 << 10;
/// Bytes read from one connection per loop turn.
const READ_BUDGET: usize = 256 << 10;
/// Unsent output above which a connection's input is not read.
const PAUSE_READS: usize = 1 << 20;
/// Unsent output below which reading resumes.
const RESUME_READS: usize = PAUSE_READS / 2;
/// An emptied write buffer larger than this is given back.
const SHRINK_OUT: usize = 8 << 20;
/// How long a closing connection may take to write what it owes.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Workers are named by a bit of a `u64` in the room masks.
const MAX_WORKERS: usize = 64;

/// Starts the server on `cfg.addr` (default `127.0.0.1:0`) with
/// `cfg.worker_threads` workers (default: one per CPU); returns once it
/// listens.
pub fn start(cfg: PeerConfig) -> io::Result<PeerHandle> {
    let workers = cfg
        .worker_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, MAX_WORKERS);
    let std_listener = std::net::TcpListener::bind(cfg.addr)?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let mut listener = Some(TcpListener::from_std(std_listener));

    let mut polls = Vec::with_capacity(workers);
    let mut inboxes = Vec::with_capacity(workers);
    let mut peers = Vec::with_capacity(workers);
    for _ in 0..workers {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let (tx, rx) = mpsc::channel();
        polls.push(poll);
        inboxes.push(rx);
        peers.push(Peer { tx, waker });
    }
    let shared = Arc::new(Shared {
        masks: Mutex::new(HashMap::new()),
        peers,
    });
    let mut threads = Vec::with_capacity(workers);
    for (id, (poll, rx)) in polls.into_iter().zip(inboxes).enumerate() {
        let mut worker = Worker {
            id,
            poll,
            rx,
            shared: shared.clone(),
            listener: listener.take(),
            next_worker: 0,
            accept_retry: false,
            conns: Conns::default(),
            rooms: HashMap::new(),
            resume: Vec::new(),
            remote: Vec::new(),
            remote_mask: 0,
            max_body: cfg.max_body,
            bound: cfg.send_queue_bytes,
        };
        if let Some(l) = worker.listener.as_mut() {
            worker
                .poll
                .registry()
                .register(l, LISTENER, Interest::READABLE)?;
        }
        let spawned = std::thread::Builder::new()
            .name(format!("mio-lean-{id}"))
            .spawn(move || worker.run());
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                shared.stop_all();
                for t in threads {
                    let _ = t.join();
                }
                return Err(e);
            }
        }
    }
    let stop = move || shared.stop_all();
    Ok(PeerHandle::new(addr, "mio-lean", Box::new(stop), threads))
}

/// What a worker receives from the others.
enum Msg {
    /// An accepted connection handed over by worker 0.
    Conn(TcpStream),
    /// Delivery frames, back to back, for this worker's members.
    Batch(Arc<[u8]>),
    /// Shut down.
    Stop,
}

/// How to reach a worker.
struct Peer {
    tx: Sender<Msg>,
    waker: Waker,
}

impl Peer {
    fn send(&self, msg: Msg) {
        // A worker that is gone has nothing left to deliver to.
        if self.tx.send(msg).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

struct Shared {
    /// Room -> one bit per worker with at least one member there.
    masks: Mutex<HashMap<u16, u64>>,
    peers: Vec<Peer>,
}

impl Shared {
    fn stop_all(&self) {
        for p in &self.peers {
            p.send(Msg::Stop);
        }
    }

    fn mask(&self, room: u16) -> u64 {
        let masks = self.masks.lock().unwrap_or_else(PoisonError::into_inner);
        masks.get(&room).copied().unwrap_or(0)
    }

    fn set_member(&self, room: u16, worker: usize, member: bool) {
        let mut masks = self.masks.lock().unwrap_or_else(PoisonError::into_inner);
        let bit = 1u64 << worker;
        if member {
            *masks.entry(room).or_default() |= bit;
        } else if let Some(m) = masks.get_mut(&room) {
            *m &= !bit;
            if *m == 0 {
                masks.remove(&room);
            }
        }
    }
}

/// A read buffer: bytes `start..end` of `buf` are unparsed; `need` is the
/// length of the incomplete frame at `start` (or a header's).
#[derive(Default)]
struct RecvBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    need: usize,
}

impl RecvBuf {
    /// Makes room for the next read: compacts when the incomplete frame
    /// does not fit where it starts or the free tail is below a quarter of
    /// the buffer (so reads never shrink to a few bytes), grows when the
    /// frame does not fit at all.
    fn make_room(&mut self) {
        if self.buf.is_empty() {
            self.buf = vec![0; READ_MIN.max(self.need)];
            return;
        }
        let len = self.buf.len();
        if self.start > 0 && (self.need > len - self.start || len - self.end < len / 4) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.need > len {
            self.buf.resize(self.need, 0);
        } else if self.end == len {
            self.buf.resize(len * 2, 0);
        }
    }

    /// After a read that filled the free space: more is probably waiting,
    /// so a small buffer doubles (up to [`READ_CAPACITY`]).
    fn grow(&mut self) {
        let len = self.buf.len();
        if len < READ_CAPACITY {
            self.buf.resize((len * 2).min(READ_CAPACITY), 0);
        }
    }
}

struct Conn {
    stream: TcpStream,
    rb: RecvBuf,
    /// Output; bytes `..sent` are written.
    out: Vec<u8>,
    sent: usize,
    /// In the dirty list (output to write this turn).
    dirty: bool,
    /// Registered for `WRITABLE` too.
    writable: bool,
    /// Input not read until the output drops to [`RESUME_READS`].
    paused: bool,
    /// No more input or deliveries: dropped once the output is written or
    /// at this deadline.
    closing: Option<Instant>,
    /// Rooms joined.
    rooms: Vec<u16>,
}

impl Conn {
    fn unsent(&self) -> usize {
        self.out.len() - self.sent
    }
}

/// A worker's connections (a slab indexed by token) and the connections
/// with output to write this turn.
#[derive(Default)]
struct Conns {
    slots: Vec<Option<Conn>>,
    free: Vec<usize>,
    dirty: Vec<usize>,
    /// Connections with `closing` set.
    lingering: usize,
}

impl Conns {
    fn get(&mut self, t: usize) -> Option<&mut Conn> {
        self.slots.get_mut(t).and_then(Option::as_mut)
    }

    fn mark_dirty(&mut self, t: usize) {
        if let Some(c) = self.get(t)
            && !c.dirty
        {
            c.dirty = true;
            self.dirty.push(t);
        }
    }

    /// Appends `bytes` to connection `t`'s output.
    fn push(&mut self, t: usize, bytes: &[u8]) {
        let Some(c) = self.slots.get_mut(t).and_then(Option::as_mut) else {
            return;
        };
        c.out.extend_from_slice(bytes);
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(t);
        }
    }

    /// Appends a delivery to member `t`'s output, closing it as a slow
    /// consumer if its unsent output exceeds `bound`.
    fn deliver(&mut self, t: usize, frame: &[u8], bound: usize) {
        let Some(c) = self.slots.get_mut(t).and_then(Option::as_mut) else {
            return;
        };
        if c.closing.is_some() {
            return;
        }
        c.out.extend_from_slice(frame);
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(t);
        }
        let unsent = c.unsent();
        if unsent > bound {
            self.close_with(
                t,
                &format!("slow consumer: {unsent} bytes unsent (bound {bound} bytes)"),
            );
        }
    }

    /// Appends a `closing` frame with `reason` and stops reading and
    /// delivering to `t`; it is dropped once written.
    fn close_with(&mut self, t: usize, reason: &str) {
        let Some(c) = self.slots.get_mut(t).and_then(Option::as_mut) else {
            return;
        };
        if c.closing.is_some() {
            return;
        }
        let mut header = [0u8; HEADER_LEN];
        header[..4].copy_from_slice(&(reason.len() as u32).to_le_bytes());
        header[4] = Kind::Closing.as_u8();
        c.out.extend_from_slice(&header);
        c.out.extend_from_slice(reason.as_bytes());
        self.linger(t);
    }

    /// Stops reading and delivering to `t`; it is dropped once what it is
    /// owed is written (or at the deadline).
    fn linger(&mut self, t: usize) {
        let Some(c) = self.slots.get_mut(t).and_then(Option::as_mut) else {
            return;
        };
        if c.closing.is_none() {
            c.closing = Some(Instant::now() + CLOSE_GRACE);
            self.lingering += 1;
        }
        self.mark_dirty(t);
    }
}

struct Worker {
    id: usize,
    poll: Poll,
    rx: Receiver<Msg>,
    shared: Arc<Shared>,
    listener: Option<TcpListener>,
    next_worker: usize,
    /// `accept` failed (e.g. `EMFILE`): retried after 10 ms.
    accept_retry: bool,
    conns: Conns,
    /// Room -> this worker's members.
    rooms: HashMap<u16, Vec<usize>>,
    /// Connections with input left to read next turn.
    resume: Vec<usize>,
    /// Delivery frames for other workers' members, sent at the end of the turn.
    remote: Vec<u8>,
    /// Workers the batch in `remote` goes to.
    remote_mask: u64,
    max_body: usize,
    bound: usize,
}

/// How a read ended.
enum ReadEnd {
    /// Socket drained, reads paused or budget spent.
    Done,
    /// End of stream.
    Eof,
    /// Bad input: close with this reason.
    Bad(String),
    /// A socket error.
    Failed,
}

impl Worker {
    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = if !self.resume.is_empty() {
                Some(Duration::ZERO)
            } else if self.accept_retry {
                Some(Duration::from_millis(10))
            } else if self.conns.lingering > 0 {
                Some(Duration::from_millis(500))
            } else {
                None
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                eprintln!("mio-lean: poll failed: {e}");
                return;
            }
            if self.accept_retry {
                self.accept_retry = false;
                self.accept();
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => {
                        if !self.drain_inbox() {
                            return;
                        }
                    }
                    Token(t) => {
                        if ev.is_writable() {
                            self.conns.mark_dirty(t);
                        }
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            let closing = self.conns.get(t).is_some_and(|c| c.closing.is_some());
                            if !closing {
                                self.read(t);
                            } else if ev.is_error() || ev.is_write_closed() {
                                // Nobody left to read what it is owed.
                                self.drop_conn(t);
                            }
                        }
                    }
                }
            }
            for t in mem::take(&mut self.resume) {
                self.read(t);
            }
            self.send_remote();
            while let Some(t) = self.conns.dirty.pop() {
                self.flush(t);
            }
            if self.conns.lingering > 0 {
                self.sweep();
            }
        }
    }

    fn accept(&mut self) {
        // Taken out while connections are added to this worker's slab.
        let Some(listener) = self.listener.take() else {
            return;
        };
        let workers = self.shared.peers.len();
        let mut wake = 0u64;
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let target = self.next_worker;
                    self.next_worker = (target + 1) % workers;
                    if target == self.id {
                        self.add(stream);
                    } else if self.shared.peers[target].tx.send(Msg::Conn(stream)).is_ok() {
                        wake |= 1 << target;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: the pending connection stays
                    // queued and makes no new edge; retry shortly.
                    if std::env::var_os("PEER_LOG").is_some() {
                        eprintln!("mio-lean: accept failed: {e}");
                    }
                    self.accept_retry = true;
                    break;
                }
            }
        }
        self.listener = Some(listener);
        self.wake(wake);
    }

    fn wake(&self, mask: u64) {
        for (w, peer) in self.shared.peers.iter().enumerate() {
            if mask & (1 << w) != 0 {
                let _ = peer.waker.wake();
            }
        }
    }

    fn add(&mut self, mut stream: TcpStream) {
        let t = self.conns.free.pop().unwrap_or(self.conns.slots.len());
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(t), Interest::READABLE)
        {
            if std::env::var_os("PEER_LOG").is_some() {
                eprintln!("mio-lean: register failed: {e}");
            }
            if t < self.conns.slots.len() {
                self.conns.free.push(t);
            }
            return;
        }
        let conn = Conn {
            stream,
            rb: RecvBuf::default(),
            out: Vec::new(),
            sent: 0,
            dirty: false,
            writable: false,
            paused: false,
            closing: None,
            rooms: Vec::new(),
        };
        if t == self.conns.slots.len() {
            self.conns.slots.push(Some(conn));
        } else {
            self.conns.slots[t] = Some(conn);
        }
    }

    /// Handles what other workers sent; `false` on `Stop`.
    fn drain_inbox(&mut self) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(Msg::Conn(stream)) => self.add(stream),
                Ok(Msg::Batch(batch)) => self.deliver_batch(&batch),
                Ok(Msg::Stop) | Err(TryRecvError::Disconnected) => return false,
                Err(TryRecvError::Empty) => return true,
            }
        }
    }

    /// Delivers each frame of `batch` to this worker's members of its room.
    fn deliver_batch(&mut self, batch: &[u8]) {
        let mut at = 0;
        while at + HEADER_LEN <= batch.len() {
            let h = &batch[at..at + HEADER_LEN];
            let len = HEADER_LEN + u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
            let room = u16::from_le_bytes([h[6], h[7]]);
            let frame = &batch[at..at + len];
            at += len;
            if let Some(members) = self.rooms.get(&room) {
                for &m in members {
                    self.conns.deliver(m, frame, self.bound);
                }
            }
        }
    }

    /// Reads and handles input of connection `t` until the socket is
    /// drained, its output is too large or the turn's budget is spent.
    fn read(&mut self, t: usize) {
        let Some(c) = self.conns.get(t) else {
            return;
        };
        if c.closing.is_some() || c.paused {
            return;
        }
        let mut rb = mem::take(&mut c.rb);
        let mut budget = READ_BUDGET;
        let end = loop {
            let Some(c) = self.conns.get(t) else {
                break ReadEnd::Failed;
            };
            rb.make_room();
            let space = rb.buf.len() - rb.end;
            match c.stream.read(&mut rb.buf[rb.end..]) {
                Ok(0) => break ReadEnd::Eof,
                Ok(n) => {
                    rb.end += n;
                    if let Err(reason) = self.parse(t, &mut rb) {
                        break ReadEnd::Bad(reason);
                    }
                    let Some(c) = self.conns.get(t) else {
                        break ReadEnd::Failed;
                    };
                    if c.closing.is_some() {
                        // A member of a room it published to, closed as a
                        // slow consumer: its input no longer matters.
                        break ReadEnd::Done;
                    }
                    if c.unsent() > PAUSE_READS {
                        c.paused = true;
                        break ReadEnd::Done;
                    }
                    if n < space {
                        // A short read: the socket is drained (new data
                        // will be a new edge).
                        break ReadEnd::Done;
                    }
                    rb.grow();
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        self.resume.push(t);
                        break ReadEnd::Done;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break ReadEnd::Done,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break ReadEnd::Failed,
            }
        };
        match end {
            ReadEnd::Done => {
                if let Some(c) = self.conns.get(t) {
                    c.rb = rb;
                }
            }
            ReadEnd::Eof => {
                // What is owed still goes out.
                match self.conns.get(t) {
                    Some(c) if c.unsent() > 0 => self.conns.linger(t),
                    _ => self.drop_conn(t),
                }
            }
            ReadEnd::Bad(reason) => {
                if std::env::var_os("PEER_LOG").is_some() {
                    eprintln!("mio-lean: closing a session: {reason}");
                }
                self.conns.close_with(t, &reason);
            }
            ReadEnd::Failed => self.drop_conn(t),
        }
    }

    /// Handles every complete frame in `rb` (read from connection `t`).
    fn parse(&mut self, t: usize, rb: &mut RecvBuf) -> Result<(), String> {
        loop {
            let avail = rb.end - rb.start;
            if avail < HEADER_LEN {
                rb.need = HEADER_LEN;
                break;
            }
            let at = rb.start;
            let h = &rb.buf[at..at + HEADER_LEN];
            let body_len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
            let room = u16::from_le_bytes([h[6], h[7]]);
            let req = classify(h[4], h[5], room, body_len, self.max_body)?;
            let len = HEADER_LEN + body_len;
            if avail < len {
                rb.need = len;
                break;
            }
            rb.start += len;
            let frame = &mut rb.buf[at..at + len];
            match req {
                Request::Echo => {
                    frame[4] = Kind::EchoReply.as_u8();
                    self.conns.push(t, frame);
                }
                Request::Publish(room) => {
                    frame[4] = Kind::Delivery.as_u8();
                    self.publish(room, frame);
                }
                Request::Join(room) => self.join(t, room),
                Request::Leave(room) => self.leave(t, room),
            }
        }
        if rb.start == rb.end {
            rb.start = 0;
            rb.end = 0;
        }
        Ok(())
    }

    /// `frame` is a delivery frame: to this worker's members now, to the
    /// other workers' at the end of the turn.
    fn publish(&mut self, room: u16, frame: &[u8]) {
        if let Some(members) = self.rooms.get(&room) {
            for &m in members {
                self.conns.deliver(m, frame, self.bound);
            }
        }
        if self.shared.peers.len() > 1 {
            let others = self.shared.mask(room) & !(1u64 << self.id);
            if others != 0 {
                self.remote.extend_from_slice(frame);
                self.remote_mask |= others;
            }
        }
    }

    fn join(&mut self, t: usize, room: u16) {
        let Some(c) = self.conns.get(t) else {
            return;
        };
        if c.rooms.contains(&room) {
            return;
        }
        c.rooms.push(room);
        let members = self.rooms.entry(room).or_default();
        members.push(t);
        if members.len() == 1 && self.shared.peers.len() > 1 {
            self.shared.set_member(room, self.id, true);
        }
    }

    fn leave(&mut self, t: usize, room: u16) {
        let Some(c) = self.conns.get(t) else {
            return;
        };
        let Some(i) = c.rooms.iter().position(|&r| r == room) else {
            return;
        };
        c.rooms.swap_remove(i);
        self.remove_member(t, room);
    }

    fn remove_member(&mut self, t: usize, room: u16) {
        let Some(members) = self.rooms.get_mut(&room) else {
            return;
        };
        if let Some(i) = members.iter().position(|&m| m == t) {
            members.swap_remove(i);
        }
        if members.is_empty() {
            self.rooms.remove(&room);
            if self.shared.peers.len() > 1 {
                self.shared.set_member(room, self.id, false);
            }
        }
    }

    /// Sends the turn's batch of deliveries to the workers with members.
    fn send_remote(&mut self) {
        if self.remote.is_empty() {
            return;
        }
        let batch: Arc<[u8]> = Arc::from(&self.remote[..]);
        self.remote.clear();
        if self.remote.capacity() > SHRINK_OUT {
            self.remote = Vec::new();
        }
        let mask = mem::take(&mut self.remote_mask);
        for (w, peer) in self.shared.peers.iter().enumerate() {
            if mask & (1 << w) != 0 {
                peer.send(Msg::Batch(batch.clone()));
            }
        }
    }

    /// Writes connection `t`'s output until it is empty or the socket is
    /// full.
    fn flush(&mut self, t: usize) {
        let Some(c) = self.conns.get(t) else {
            return;
        };
        c.dirty = false;
        while c.sent < c.out.len() {
            match c.stream.write(&c.out[c.sent..]) {
                Ok(0) => return self.drop_conn(t),
                Ok(n) => c.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !c.writable {
                        if self
                            .poll
                            .registry()
                            .reregister(
                                &mut c.stream,
                                Token(t),
                                Interest::READABLE | Interest::WRITABLE,
                            )
                            .is_err()
                        {
                            return self.drop_conn(t);
                        }
                        c.writable = true;
                    }
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.drop_conn(t),
            }
        }
        if c.sent == c.out.len() {
            c.out.clear();
            c.sent = 0;
            if c.out.capacity() > SHRINK_OUT {
                c.out = Vec::new();
            }
            if c.closing.is_some() {
                return self.drop_conn(t);
            }
        } else if c.sent >= READ_CAPACITY && c.sent * 2 >= c.out.len() {
            // Compacted at most once per half of the buffer written.
            c.out.drain(..c.sent);
            c.sent = 0;
        }
        if c.paused && c.unsent() <= RESUME_READS {
            c.paused = false;
            self.resume.push(t);
        }
    }

    /// Drops closing connections past their deadline.
    fn sweep(&mut self) {
        let now = Instant::now();
        let late: Vec<usize> = (0..self.conns.slots.len())
            .filter(|&t| {
                self.conns.slots[t]
                    .as_ref()
                    .and_then(|c| c.closing)
                    .is_some_and(|d| d <= now)
            })
            .collect();
        for t in late {
            self.drop_conn(t);
        }
    }

    /// Closes connection `t` now and leaves its rooms.
    fn drop_conn(&mut self, t: usize) {
        let Some(c) = self.conns.slots.get_mut(t).and_then(Option::take) else {
            return;
        };
        self.conns.free.push(t);
        if c.closing.is_some() {
            self.conns.lingering -= 1;
        }
        for &room in &c.rooms {
            self.remove_member(t, room);
        }
        // Dropping the stream closes it (and removes it from the poll).
    }
}
