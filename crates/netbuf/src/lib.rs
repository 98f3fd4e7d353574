//! Network buffers and messages for Rust services.
//!
//! * [`MessagePool`] hands out [`Message`]s: pooled blocks up to the block
//!   size (4 KiB by default), heap allocations beyond (up to 16 MiB by
//!   default, configurable), one free path for both (the origin tag in
//!   every block's header), per-thread caches with bounded batched returns
//!   so messages allocated on logic threads can be freed on IO threads
//!   without a lock.
//! * [`SharedMessage`]: a frozen message shared by reference count, so a
//!   broadcast to N sessions is one allocation and N increments; converts
//!   into [`bytes::Bytes`] without copying.
//!
//! Every atomic, `UnsafeCell` and thread-local comes from one internal
//! facade that maps to `loom` under `--cfg loom`, so the crate's concurrent
//! code is model-checked (see `loom-tests/`).
//!
//! # Example
//!
//! ```
//! use bytes::BufMut;
//! use netbuf::MessagePool;
//!
//! let pool = MessagePool::new();
//!
//! // A logic thread builds a reply once ...
//! let mut reply = pool.alloc(64).unwrap();
//! reply.put_slice(b"tick 42");
//! let reply = reply.freeze();
//!
//! // ... and fans it out: one allocation, one refcount increment per session.
//! let outboxes: Vec<Vec<netbuf::SharedMessage>> =
//!     (0..100).map(|_| vec![reply.clone()]).collect();
//!
//! // IO threads drop what they wrote; the last drop frees the block.
//! std::thread::scope(|s| {
//!     for outbox in outboxes {
//!         s.spawn(move || drop(outbox));
//!     }
//! });
//! drop(reply);
//! assert_eq!(pool.stats().live_messages, 0);
//! ```
//!
//! # Tiny objects do not belong in the pool
//!
//! Closures, timers and small control records are short-lived and small:
//! give them to the global allocator (`Box`). Storing each in a 4 KiB block
//! spreads a few bytes of data over a page of cache, and the `pool`
//! benchmark (`closures_100k`) measures it slower than `Box` under every
//! allocator, as the field report found (3.7x there). The pool is for
//! message payloads, where the block is filled.
//!
//! # Receiving frames
//!
//! The wire format (8-byte header: `u32` LE body length, kind, flags,
//! `u16` LE room; then the body) is encoded and decoded by [`codec`]; every
//! malformed input ends in a typed [`DecodeError`] that closes one session,
//! never a panic. Two receive buffers implement [`FrameSource`] (and
//! [`ReceiveBuffer`] picks one at run time):
//!
//! * [`RecvBuffer`]: linear, owned by one IO thread, with lazy compaction
//!   (cursors reset for free when everything is consumed; bytes move only
//!   when the free tail cannot hold the frame still needed). Fastest
//!   decode; holds its capacity (16 KiB by default) per session.
//! * [`ChainedBuffer`]: a chain of pool blocks; an idle session holds no
//!   block, so memory follows the bytes in flight. Implements
//!   [`bytes::Buf`] / [`bytes::BufMut`] and yields `IoSlice`s.
//!
//! Frames come out as a borrowed [`Frame`] view, or as a pooled
//! [`Message`] with the body copied once (`next_message`).
//!
//! ```
//! use netbuf::codec::{Kind, encode_frame_into};
//! use netbuf::{FrameSource, MessagePool, ReceiveBuffer};
//!
//! let mut wire = Vec::new();
//! encode_frame_into(&mut wire, Kind::Publish, 3, b"news").unwrap();
//! let pool = MessagePool::new();
//! let mut buf = ReceiveBuffer::chained(pool.clone(), Default::default());
//! buf.read_from(&mut &wire[..]).unwrap();
//! let (header, body) = buf.next_message(&pool).unwrap().unwrap();
//! assert_eq!((header.kind, header.room, &body[..]), (Kind::Publish, 3, &b"news"[..]));
//! let broadcast = body.freeze(); // one allocation for every recipient
//! # drop(broadcast);
//! ```
//!
//! # Sending: the per-session queue
//!
//! [`SendQueue`] is a lock-free MPSC queue of [`Outgoing`] messages (owned
//! or shared), one per session. Logic threads push from any thread without
//! blocking ([`SendQueue::try_push`], or [`SendQueue::push_batch`] for many
//! messages at the cost of one notification); the IO thread drains in
//! batches. The queue is bounded **in bytes**, exactly: the bytes (plus a
//! per-entry overhead) are reserved in the same atomic update as the slot,
//! so concurrent producers never overshoot, and a refused message comes back
//! in [`PushError::Full`]. The consumer is woken through a [`Notify`] (a
//! mio `Waker`, [`CondvarNotify`], ...) only on the empty -> non-empty
//! transition, with no lost wakeup (model-checked with loom).
//!
//! ```
//! use netbuf::{MessagePool, Outgoing, SendQueue};
//!
//! let pool = MessagePool::new();
//! let queue: SendQueue = SendQueue::builder().limit(64 << 10).build();
//! let news = pool.message_from(b"news").unwrap().freeze();
//! let mut batch: Vec<Outgoing> = vec![news.clone().into(), news.into()];
//! queue.push_batch(&mut batch).unwrap(); // one notification at most
//!
//! let mut out = Vec::new();
//! let drained = queue.drain_into(&mut out, 64); // on the IO thread
//! assert_eq!(drained.items, 2);
//! assert!(drained.idle); // the next push will notify
//! ```

mod cache;
mod chained;
pub mod codec;
mod flush;
#[cfg(not(loom))]
#[doc(hidden)]
pub mod fuzzing;
mod header;
#[cfg(feature = "leak-trace")]
mod leak;
#[cfg(all(test, loom))]
mod loom_models;
mod message;
mod notify;
mod pool;
mod recv;
mod send_queue;
mod shared;
mod source;
mod sync;

pub use chained::{ChainStats, ChainedBuffer};
pub use codec::{DecodeError, EncodeError, Frame, FrameCodec, FrameHeader, Kind};
pub use flush::{
    Calibration, ChaCha20Transform, DEFAULT_GATHER_THRESHOLD, FlushError, FlushMetrics, Flushed,
    Flusher, GatherThreshold, MAX_IOV, OutFrame, Transform, Transport, calibrate,
};
pub use message::{CapacityError, Message, Origin};
pub use notify::{CondvarNotify, FnNotify, Notify};
pub use pool::{
    ClassStats, LeakReport, MessagePool, PoolBuilder, PoolConfig, PoolError, PoolStats,
};
pub use recv::{Compaction, DEFAULT_RECV_CAPACITY, RecvBuffer, RecvStats};
pub use send_queue::{
    BatchError, Drained, MAX_LIMIT, Outgoing, PushError, QueueItem, SendQueue, SendQueueBuilder,
};
pub use shared::SharedMessage;
pub use source::{FrameSource, ReceiveBuffer};
