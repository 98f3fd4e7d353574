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
//! code is model-checked (models beside the code, and through the public
//! API in the workspace's `loom-tests` crate).
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
//! allocator (a C++ game server measured 3.7x). The pool is for
//! message payloads, where the block is filled.
//!
//! # Any protocol: the [`Framing`](framing::Framing) trait
//!
//! netbuf knows no protocol's messages. A [`framing::Framing`] says where
//! frames begin and end: it decodes a header from a prefix of the stream
//! (need more bytes / header length + body length / a typed
//! [`DecodeError`](framing::DecodeError)) and encodes a header of 0 to 16
//! bytes next to a body. The receive buffers and the flusher are generic
//! over it (static dispatch), and the body limit is enforced before any
//! allocation or copy. [`LengthDelimited`](framing::LengthDelimited) covers
//! headers with a length field (offset, width 1/2/4/8, endianness,
//! adjustment, header length, body limit: tokio-util's knobs) and hands
//! each frame's header over as raw bytes. Implement the trait yourself when
//! you want typed header fields (the trait's docs show a 6-byte game header
//! decoded into its opcode), validation of your own (reserved bits, known
//! message kinds), or a header whose length is not a fixed field (ZMTP's
//! 1- or 8-byte sizes).
//! Multi-part protocols keep their "more" flag in the decoded header and
//! group frames above the buffer.
//!
//! # Receiving frames
//!
//! Two receive buffers implement [`FrameSource`] (and [`ReceiveBuffer`]
//! picks one at run time):
//!
//! * [`LinearBuffer`]: linear, owned by one IO thread, with lazy compaction
//!   (cursors reset for free when everything is consumed; bytes move only
//!   when the free tail cannot hold the frame still needed). Fastest
//!   decode; holds its capacity (16 KiB by default) per session. Raw
//!   access: [`peek`](LinearBuffer::peek) / [`consume`](LinearBuffer::consume).
//! * [`ChainedBuffer`]: a chain of pool blocks; an idle session holds no
//!   block, so memory follows the bytes in flight. Implements
//!   [`bytes::Buf`] / [`bytes::BufMut`] and yields `IoSlice`s; a large body
//!   is received into a block of its own and handed over without a copy
//!   ([`ChainedBuffer::take_message`]).
//!
//! Frames come out as a borrowed [`Frame`](framing::Frame) view, or as a
//! pooled [`Message`] (`next_message`).
//!
//! ```
//! use netbuf::framing::{HeaderBytes, LengthDelimited, encode_frame_into};
//! use netbuf::{FrameSource, MessagePool, ReceiveBuffer};
//!
//! // u16 LE opcode, u32 LE body length.
//! let game = LengthDelimited::builder()
//!     .length_field_offset(2)
//!     .little_endian()
//!     .header_len(6)
//!     .build()
//!     .unwrap();
//! let mut wire = Vec::new();
//! encode_frame_into(&game, &mut wire, &HeaderBytes::new(&[3, 0, 0, 0, 0, 0]), b"news").unwrap();
//! let pool = MessagePool::new();
//! let mut buf = ReceiveBuffer::chained(pool.clone(), game);
//! buf.read_from(&mut &wire[..]).unwrap();
//! let (header, body) = buf.next_message(&pool).unwrap().unwrap();
//! let opcode = u16::from_le_bytes([header.as_slice()[0], header.as_slice()[1]]);
//! assert_eq!((opcode, &body[..]), (3, &b"news"[..]));
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
//! mio `Waker`, [`CondvarNotify`], [`WakerNotify`] for an async task, ...)
//! on the empty -> non-empty transition and on close / shutdown, with no
//! lost wakeup (model-checked with loom). Producers that would rather wait
//! than be refused `send(item).await` ([`SendQueue::send`]): the consumer's
//! release wakes them, with no runtime dependency (`std::task` only; the
//! `netbuf-tokio` crate adds the tokio reader, writer and `Sink`).
//! [`SendQueue::shutdown`] stops accepting and lets the consumer drain
//! what is queued; [`SendQueue::close`] drops it.
//!
//! [`event_loop`] shows how to drive a `SendQueue` and a [`Flusher`] from
//! your own event loop (mio, epoll) with one wakeup per idle period and one
//! write per drained batch, with a runnable example.
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

//!
//! # Cargo features
//!
//! * `chacha20`: [`ChaCha20Transform`](crate::Transform), a ChaCha20
//!   keystream as a per-session [`Transform`] of the flusher (a stand-in
//!   for session encryption, applied while copying into the send buffer).
//!   Off by default: the crate then has no cipher dependency.
//! * `leak-trace`: records the allocation site (a backtrace) of sampled
//!   messages, so [`MessagePool::leak_report`] can say where a leaked
//!   message came from. Costs nothing when off.
//! * `test-util`: the `test_util` module, test support for netbuf's
//!   tests, the fuzz harness, the benches and the soak (scripted socket
//!   doubles, a seeded PRNG, a quiet pool, the fuzz targets' logic). Not a
//!   stable API; never needed in production.
//!
//! No feature is on by default.

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(loom)]
#[doc(hidden)]
pub mod loom_support;
mod message;
mod pool;
mod recv;
mod send;
mod sync;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;

pub use message::{CapacityError, Message, Origin, Outgoing, SharedMessage};
pub use pool::{
    ClassStats, LeakReport, MessagePool, PoolBuilder, PoolConfig, PoolError, PoolStats,
    release_thread_caches, thread_cached_pools,
};
pub use recv::framing;
#[cfg(unix)]
pub use recv::read_fd;
pub use recv::{
    ChainStats, ChainedBuffer, Compaction, DEFAULT_RECV_CAPACITY, DIRECT_HEAD_READ, FrameSource,
    LinearBuffer, PROBE_READ, ReadUninit, ReceiveBuffer, RecvStats, read_zeroed,
};
#[cfg(feature = "chacha20")]
#[cfg_attr(docsrs, doc(cfg(feature = "chacha20")))]
pub use send::ChaCha20Transform;
pub use send::event_loop;
pub use send::{
    BatchError, Drained, MAX_LIMIT, PushError, QueueItem, SendFuture, SendQueue, SendQueueBuilder,
};
pub use send::{
    Calibration, DEFAULT_GATHER_THRESHOLD, FlushError, FlushMetrics, Flushed, Flusher,
    GatherThreshold, MAX_IOV, OutFrame, Transform, Transport, calibrate, calibrated,
    calibrated_threshold,
};
pub use send::{CondvarNotify, FnNotify, Notify, WakerNotify};
