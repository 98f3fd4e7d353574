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

mod cache;
mod header;
#[cfg(feature = "leak-trace")]
mod leak;
mod message;
mod pool;
mod shared;
mod sync;

pub use message::{CapacityError, Message, Origin};
pub use pool::{
    ClassStats, LeakReport, MessagePool, PoolBuilder, PoolConfig, PoolError, PoolStats,
};
pub use shared::SharedMessage;
