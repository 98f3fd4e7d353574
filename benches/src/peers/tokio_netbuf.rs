//! tokio for the event loop, netbuf for the data path: what adopting the
//! crates gains a tokio user.
//!
//! Same runtime, accept loop and task per connection as the
//! [`tokio_peer`](super::tokio_peer), but no `Framed`, no `BytesMut` and no
//! `broadcast` channel. Each session task owns:
//!
//! * a [`RecvBuffer`] (linear, lazy compaction) filled with
//!   `TcpStream::try_read` when the socket is readable;
//! * a [`Flusher`] (small frames coalesced into one buffer, large bodies
//!   gathered uncopied) written with `try_write` / `try_write_vectored` when
//!   writable;
//! * a [`SendQueue`] (lock-free MPSC, bounded in bytes) into which other
//!   sessions' publishes land, waking the task through a
//!   `tokio::sync::Notify` only on the empty -> non-empty transition.
//!
//! Echo bodies are copied once into a [`MessagePool`] message; a publish is
//! copied once into a pool message, frozen into a [`SharedMessage`] and
//! pushed to every member's queue as a refcount clone (zero-copy broadcast).

use std::collections::HashMap;
use std::io::{self, IoSlice, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use netbuf::{
    Compaction, DEFAULT_RECV_CAPACITY, FlushError, Flushed, Flusher, FnNotify, GatherThreshold,
    LinearBuffer, MessagePool, OutFrame, Outgoing, SendQueue, SharedMessage, Transport,
};
use server_demo::protocol::{DemoFraming, Kind, encode_header};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use super::{PeerConfig, PeerHandle, Request, classify, spawn_server};

/// Frames moved from the send queue into the flusher per drain.
const DRAIN_BATCH: usize = 256;
/// The flusher is not refilled from the queue while it holds this much
/// (a slow peer then pushes back on the queue's byte bound).
const FLUSHER_HIGH: usize = 256 << 10;
/// Bytes read before the task yields to others.
const READ_BUDGET: usize = 1 << 20;

/// Starts the server on `cfg.addr` (default `127.0.0.1:0`) in its own
/// runtime; returns once it listens. The gather threshold is calibrated
/// for loopback TCP once, before the first session (as `server-demo
/// --send auto` does).
pub fn start(cfg: PeerConfig) -> io::Result<PeerHandle> {
    let threshold = netbuf::calibrated_threshold(Transport::Tcp).resolve();
    let shared = Arc::new(Shared {
        pool: MessagePool::new(),
        rooms: RwLock::new(HashMap::new()),
        threshold,
        next_id: AtomicU64::new(1),
        cfg: cfg.clone(),
    });
    spawn_server("tokio-netbuf", &cfg, move |listener| {
        accept_loop(listener, shared)
    })
}

type Members = Arc<Vec<Arc<Member>>>;

struct Shared {
    pool: MessagePool,
    rooms: RwLock<HashMap<u16, Members>>,
    threshold: usize,
    next_id: AtomicU64,
    cfg: PeerConfig,
}

/// What other sessions see of a session: its queue, its wakeup, and the
/// slow-consumer flag a publisher sets when the queue refuses a delivery.
struct Member {
    id: u64,
    queue: SendQueue<OutFrame>,
    wake: Arc<Notify>,
    slow: AtomicBool,
}

impl Shared {
    fn join(&self, room: u16, me: &Arc<Member>) {
        let mut rooms = self.rooms.write().unwrap_or_else(PoisonError::into_inner);
        let members = rooms.entry(room).or_default();
        if !members.iter().any(|m| m.id == me.id) {
            Arc::make_mut(members).push(me.clone());
        }
    }

    fn leave(&self, room: u16, me: &Member) {
        let mut rooms = self.rooms.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(members) = rooms.get_mut(&room) {
            Arc::make_mut(members).retain(|m| m.id != me.id);
            if members.is_empty() {
                rooms.remove(&room);
            }
        }
    }

    fn members(&self, room: u16) -> Option<Members> {
        let rooms = self.rooms.read().unwrap_or_else(PoisonError::into_inner);
        rooms.get(&room).cloned()
    }

    /// One shared message, one refcount increment per member.
    fn publish(&self, room: u16, msg: SharedMessage) {
        let Some(members) = self.members(room) else {
            return;
        };
        let header = encode_header(Kind::Delivery, room, msg.len() as u32);
        for m in members.iter() {
            let frame = OutFrame::new(header.into(), Outgoing::Shared(msg.clone()));
            if m.queue.try_push(frame).is_err() && !m.slow.swap(true, Ordering::AcqRel) {
                m.wake.notify_one();
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((socket, _)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    if let Err(e) = session(socket, &shared).await
                        && std::env::var_os("PEER_LOG").is_some()
                    {
                        eprintln!("tokio-netbuf: session closed: {e}");
                    }
                });
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}

/// `Write` over a tokio socket's non-blocking `try_*` calls, for the
/// flusher. `WouldBlock` means: wait for `writable()`.
struct TryIo<'a>(&'a TcpStream);

impl Write for TryIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Session<'a> {
    shared: &'a Shared,
    me: Arc<Member>,
    stream: TcpStream,
    rb: LinearBuffer<DemoFraming>,
    flusher: Flusher,
    joined: Vec<u16>,
}

enum ReadState {
    /// The socket has nothing more for now.
    Blocked,
    /// Read something; more may be there (budget used up).
    Budget,
    /// Not read: too much output owed to this peer.
    Paused,
    /// End of stream.
    Eof,
}

async fn session(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let wake = Arc::new(Notify::new());
    let queue = {
        let wake = wake.clone();
        SendQueue::builder()
            .limit(shared.cfg.send_queue_bytes)
            .notify(FnNotify(move || wake.notify_one()))
            .build()
    };
    let me = Arc::new(Member {
        id: shared.next_id.fetch_add(1, Ordering::Relaxed),
        queue,
        wake,
        slow: AtomicBool::new(false),
    });
    let mut s = Session {
        shared,
        me,
        stream,
        rb: LinearBuffer::with_config(
            DEFAULT_RECV_CAPACITY,
            DemoFraming::with_max_body(shared.cfg.max_body),
            Compaction::Lazy,
        ),
        flusher: Flusher::new(GatherThreshold::Bytes(shared.threshold)),
        joined: Vec::new(),
    };
    let r = s.run().await;
    for room in std::mem::take(&mut s.joined) {
        shared.leave(room, &s.me);
    }
    s.me.queue.close();
    r
}

impl Session<'_> {
    async fn run(&mut self) -> io::Result<()> {
        loop {
            if self.me.slow.load(Ordering::Acquire) {
                return self.close("slow consumer: send queue full");
            }
            let (write_blocked, idle) = self.pump().map_err(flush_err)?;
            let read = match self.read() {
                Ok(r) => r,
                Err(Closing::Protocol(reason)) => return self.close(&reason),
                Err(Closing::Io(e)) => return Err(e),
            };
            match read {
                ReadState::Eof => {
                    // Best effort: what is already owed goes out.
                    let _ = self.pump();
                    return Ok(());
                }
                ReadState::Budget => {
                    tokio::task::yield_now().await;
                    continue;
                }
                ReadState::Blocked | ReadState::Paused => {}
            }
            if !self.flusher.is_empty() && !write_blocked {
                // Replies produced by this read: write them before sleeping.
                continue;
            }
            let want_read = matches!(read, ReadState::Blocked);
            tokio::select! {
                r = self.stream.readable(), if want_read => r?,
                r = self.stream.writable(), if write_blocked => r?,
                _ = self.me.wake.notified(), if idle => {}
            }
        }
    }

    /// Moves queued frames into the flusher and writes until everything is
    /// out or the socket would block. Returns (write blocked, queue idle
    /// and armed).
    fn pump(&mut self) -> Result<(bool, bool), FlushError> {
        loop {
            let mut idle = false;
            if self.flusher.pending_bytes() < FLUSHER_HIGH {
                let flusher = &mut self.flusher;
                idle = self
                    .me
                    .queue
                    .drain_each(DRAIN_BATCH, |f| flusher.push(f))
                    .idle;
            }
            if self.flusher.is_empty() {
                if idle {
                    return Ok((false, true));
                }
                continue;
            }
            match self.flusher.flush(&mut TryIo(&self.stream))? {
                Flushed::Done if idle => return Ok((false, true)),
                Flushed::Done => {}
                Flushed::WouldBlock => return Ok((true, idle)),
            }
        }
    }

    /// Reads and handles frames until the socket would block, the budget is
    /// used up, or too much output is owed to this peer (backpressure:
    /// its requests then wait in the kernel, not in our memory).
    fn read(&mut self) -> Result<ReadState, Closing> {
        let mut budget = READ_BUDGET;
        loop {
            let owed = self.flusher.pending_bytes() + self.me.queue.queued_bytes();
            if owed >= self.shared.cfg.send_queue_bytes / 2 {
                return Ok(ReadState::Paused);
            }
            let tail = self.rb.free_tail();
            if tail.is_empty() {
                return Err(Closing::Protocol(
                    "receive buffer full of undecoded frames".into(),
                ));
            }
            match self.stream.try_read(tail) {
                Ok(0) => {
                    return match self.rb.finish() {
                        Ok(()) => Ok(ReadState::Eof),
                        Err(e) => Err(Closing::Io(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("peer closed mid-frame: {e}"),
                        ))),
                    };
                }
                Ok(n) => {
                    self.rb.commit(n);
                    self.decode_all()?;
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        return Ok(ReadState::Budget);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadState::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Closing::Io(e)),
            }
        }
    }

    fn decode_all(&mut self) -> Result<(), Closing> {
        let max_body = self.shared.cfg.max_body;
        let pool = &self.shared.pool;
        loop {
            let frame = match self.rb.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(()),
                Err(e) => return Err(Closing::Protocol(format!("protocol error: {e}"))),
            };
            let h = frame.header;
            let req = classify(h.kind.as_u8(), 0, h.room, frame.body.len(), max_body)
                .map_err(Closing::Protocol)?;
            match req {
                Request::Echo => {
                    let body = pool
                        .message_from(frame.body)
                        .map_err(|e| Closing::Protocol(format!("no message: {e}")))?;
                    self.flusher.push(OutFrame::new(
                        encode_header(Kind::EchoReply, 0, h.body_len).into(),
                        Outgoing::Owned(body),
                    ));
                }
                Request::Publish(room) => {
                    let body = pool
                        .message_from(frame.body)
                        .map_err(|e| Closing::Protocol(format!("no message: {e}")))?;
                    self.shared.publish(room, body.freeze());
                }
                Request::Join(room) => {
                    self.shared.join(room, &self.me);
                    if !self.joined.contains(&room) {
                        self.joined.push(room);
                    }
                }
                Request::Leave(room) => {
                    self.shared.leave(room, &self.me);
                    self.joined.retain(|r| *r != room);
                }
            }
        }
    }

    /// Sends a `closing` frame with `reason` where the socket takes it now,
    /// and ends the session.
    fn close(&mut self, reason: &str) -> io::Result<()> {
        if let Ok(m) = self.shared.pool.message_from(reason.as_bytes()) {
            self.flusher.push(OutFrame::new(
                encode_header(Kind::Closing, 0, reason.len() as u32).into(),
                Outgoing::Owned(m),
            ));
            let _ = self.flusher.flush(&mut TryIo(&self.stream));
        }
        self.flusher.clear();
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            reason.to_string(),
        ))
    }
}

enum Closing {
    Protocol(String),
    Io(io::Error),
}

fn flush_err(e: FlushError) -> io::Error {
    e.into()
}
