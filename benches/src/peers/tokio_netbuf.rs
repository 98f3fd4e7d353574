//! tokio for the event loop, netbuf for the data path: what adopting the
//! crates gains a tokio user.
//!
//! Same runtime, accept loop and task per connection as the
//! [`tokio_peer`](super::tokio_peer), but no `Framed`, no `BytesMut` and no
//! `broadcast` channel. Built on `netbuf-tokio` only:
//!
//! * a [`FrameReader`] over the read half: a [`LinearBuffer`] (lazy
//!   compaction) filled by [`fill`](FrameReader::fill), frames borrowed
//!   from it (`buffer_mut().next_frame()`);
//! * an [`outbox`]: a [`SendQueue`] (lock-free MPSC, bounded in bytes) into
//!   which this session's replies and other sessions' publishes land, and
//!   its [`FrameWriter`](netbuf_tokio::FrameWriter) (a task of its own)
//!   draining it into the write half through a [`Flusher`] (small frames
//!   coalesced into one buffer, large bodies gathered uncopied).
//!
//! Echo bodies are copied once into a [`MessagePool`] message; a publish is
//! copied once into a pool message, frozen into a [`SharedMessage`] and
//! pushed to every member's queue as a refcount clone (zero-copy broadcast).
//! A member whose queue refuses a delivery is a slow consumer: its reader is
//! aborted, its backlog dropped and a `closing` frame sent in its place.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use futures::future::{AbortHandle, Abortable};
use netbuf::{
    Compaction, DEFAULT_RECV_CAPACITY, Flusher, GatherThreshold, LinearBuffer, MessagePool,
    OutFrame, Outgoing, SendQueue, SharedMessage, Transport,
};
use netbuf_tokio::{FrameReader, outbox};
use server_demo::protocol::{DemoFraming, Kind, encode_header};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};

use super::{PeerConfig, PeerHandle, Request, classify, spawn_server};

/// How long a closed session's writer may take to send what is owed (and
/// the `closing` frame) before the connection is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

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

/// What other sessions see of a session: its queue, the slow-consumer flag
/// a publisher sets when the queue refuses a delivery, and the handle that
/// stops its reader then.
struct Member {
    id: u64,
    queue: Arc<SendQueue<OutFrame>>,
    slow: AtomicBool,
    stop: AbortHandle,
}

impl Member {
    /// Drops the backlog, queues a `closing` frame with `reason` in its
    /// place and shuts the queue down: the writer sends what it already
    /// holds, then the `closing` frame, then ends.
    fn close_with(&self, pool: &MessagePool, reason: &str) {
        self.queue.drain_each(usize::MAX, drop);
        if let Ok(m) = pool.message_from(reason.as_bytes()) {
            let _ = self.queue.try_push(OutFrame::new(
                encode_header(Kind::Closing, 0, reason.len() as u32).into(),
                Outgoing::Owned(m),
            ));
        }
        self.queue.shutdown();
    }
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

    /// One shared message, one refcount increment per member. A member
    /// whose queue is full is flagged slow and its reader stopped (its
    /// session then closes it); nothing more is queued for it.
    fn publish(&self, room: u16, msg: SharedMessage) {
        let Some(members) = self.members(room) else {
            return;
        };
        let header = encode_header(Kind::Delivery, room, msg.len() as u32);
        for m in members.iter() {
            if m.slow.load(Ordering::Acquire) {
                continue;
            }
            let frame = OutFrame::new(header.into(), Outgoing::Shared(msg.clone()));
            if m.queue.try_push(frame).is_err() && !m.slow.swap(true, Ordering::AcqRel) {
                m.stop.abort();
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

type Reader = FrameReader<OwnedReadHalf, LinearBuffer<DemoFraming>>;

async fn session(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let (rd, wr) = stream.into_split();
    let (queue, writer) = outbox(SendQueue::builder().limit(shared.cfg.send_queue_bytes));
    let writer = writer.writer(wr, Flusher::new(GatherThreshold::Bytes(shared.threshold)));
    let writer = {
        let queue = queue.clone();
        tokio::spawn(async move {
            let r = writer.run().await;
            // A dead connection: the reader's sends fail from now on.
            queue.close();
            r
        })
    };
    let (stop, stop_reg) = AbortHandle::new_pair();
    let me = Arc::new(Member {
        id: shared.next_id.fetch_add(1, Ordering::Relaxed),
        queue,
        slow: AtomicBool::new(false),
        stop,
    });
    let mut reader = FrameReader::new(
        rd,
        LinearBuffer::with_config(
            DEFAULT_RECV_CAPACITY,
            DemoFraming::with_max_body(shared.cfg.max_body),
            Compaction::Lazy,
        ),
        shared.pool.clone(),
    );
    let mut joined = Vec::new();
    let r = Abortable::new(read_loop(&mut reader, shared, &me, &mut joined), stop_reg).await;
    for room in joined {
        shared.leave(room, &me);
    }
    let r = match r {
        Ok(Ok(())) => {
            // End of stream. Best effort: what is already owed goes out.
            me.queue.shutdown();
            Ok(())
        }
        Ok(Err(Closing::Protocol(reason))) => {
            me.close_with(&shared.pool, &reason);
            Err(io::Error::new(io::ErrorKind::InvalidData, reason))
        }
        Ok(Err(Closing::Io(e))) => {
            me.queue.close();
            Err(e)
        }
        Err(_aborted) => {
            let reason = "slow consumer: send queue full";
            me.close_with(&shared.pool, reason);
            Err(io::Error::new(io::ErrorKind::InvalidData, reason))
        }
    };
    let abort = writer.abort_handle();
    if tokio::time::timeout(CLOSE_GRACE, writer).await.is_err() {
        abort.abort();
    }
    r
}

/// Reads and handles frames until end of stream or an error. Replies wait
/// for room in this session's queue (backpressure: the peer's requests then
/// wait in the kernel, not in our memory).
async fn read_loop(
    reader: &mut Reader,
    shared: &Shared,
    me: &Arc<Member>,
    joined: &mut Vec<u16>,
) -> Result<(), Closing> {
    let max_body = shared.cfg.max_body;
    let pool = &shared.pool;
    loop {
        match reader.fill().await {
            Ok(0) => {
                return reader.buffer().finish().map_err(|e| {
                    Closing::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("peer closed mid-frame: {e}"),
                    ))
                });
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::OutOfMemory => {
                return Err(Closing::Protocol(e.to_string()));
            }
            Err(e) => return Err(Closing::Io(e)),
        }
        loop {
            let frame = match reader.buffer_mut().next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
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
                    let reply = OutFrame::new(
                        encode_header(Kind::EchoReply, 0, h.body_len).into(),
                        Outgoing::Owned(body),
                    );
                    me.queue.send(reply).await.map_err(|_| {
                        Closing::Io(io::Error::new(
                            io::ErrorKind::BrokenPipe,
                            "connection writer stopped",
                        ))
                    })?;
                }
                Request::Publish(room) => {
                    let body = pool
                        .message_from(frame.body)
                        .map_err(|e| Closing::Protocol(format!("no message: {e}")))?;
                    shared.publish(room, body.freeze());
                }
                Request::Join(room) => {
                    shared.join(room, me);
                    if !joined.contains(&room) {
                        joined.push(room);
                    }
                }
                Request::Leave(room) => {
                    shared.leave(room, me);
                    joined.retain(|r| *r != room);
                }
            }
        }
    }
}

enum Closing {
    Protocol(String),
    Io(io::Error),
}
