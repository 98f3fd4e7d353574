//! [`SendQueue`]: a lock-free, byte-bounded MPSC queue of outgoing messages,
//! one per session, with lost-wakeup-free "smart" notification.
//!
//! The design and its invariants are documented on [`SendQueue`] itself, so
//! that they render. One concept per module:
//!
//! * `state`: the 64-bit state word (layout, bit helpers, backoff);
//! * `block`: slots, blocks, the block list and the spare block, and the
//!   [`Cursor`] a reader walks them with;
//! * `consumer`: the lock that serialises the consumer side;
//! * `release`: giving an idle queue's blocks back
//!   ([`SendQueue::release_idle_blocks`]), and why producers may race it;
//! * `guard`: the panic-safety guards of drains and batches;
//! * `waiters`: the wakers of producers waiting for space;
//! * `future`: [`SendFuture`], a push that waits for space;
//! * `builder`, `error`, `item`: the public types around the queue;
//! * `loom` (`--cfg loom` tests only): models of the internals.

mod block;
mod builder;
mod consumer;
mod drain;
mod error;
mod future;
mod guard;
mod item;
#[cfg(all(test, loom))]
mod loom;
mod push;
mod release;
mod state;
mod waiters;

pub use builder::SendQueueBuilder;
pub use error::{BatchError, PushError};
pub use future::SendFuture;
pub use item::{Drained, QueueItem};
pub use state::MAX_LIMIT;

use core::fmt;
use core::ptr;

use self::block::{Block, Cursor, EMPTY, PARKED, READY, Remains};
use self::consumer::ConsumerLock;
use self::guard::{BatchGuard, Unreleased};
use self::state::{
    BLOCK_CAP, BYTES_MASK, CLOSED, IDLE, UNWRITABLE, WAITERS, backoff, index_of, next_index,
    offset_of, released, reserved, spin,
};
use self::waiters::{Share, WaitSlot, Waiters};
use crate::message::Outgoing;
use crate::send::notify::Notify;
use crate::sync::{AtomicPtr, AtomicU64, Ordering};

/// A lock-free, byte-bounded multi-producer single-consumer queue of
/// outgoing messages: one per session.
///
/// * Producers (logic threads) call [`try_push`](Self::try_push) or
///   [`push_batch`](Self::push_batch) from any thread; they never block.
///   Over the byte limit the message comes back in [`PushError::Full`].
///   Async producers can wait for space instead:
///   [`send(item).await`](Self::send), or
///   [`try_push_or_wait`](Self::try_push_or_wait) in a `Sink`'s poll
///   functions ("Space wakeups" below).
/// * The consumer (the session's IO thread) drains in batches with
///   [`drain_into`](Self::drain_into) / [`drain_each`](Self::drain_each) and
///   sleeps when a drain reports [`Drained::idle`]; the next push wakes it
///   through the [`Notify`] given to the builder, once per
///   empty -> non-empty transition. An async consumer uses a
///   [`WakerNotify`](crate::WakerNotify) and
///   [`poll_drain_each`](Self::poll_drain_each) ("Async consumer" below).
/// * [`shutdown`](Self::shutdown) ends the session gracefully (no more
///   pushes; the consumer drains what is queued, then sees
///   [`Drained::closed`]); [`close`](Self::close) ends it at once (no more
///   pushes; what is queued is dropped). Both wake the consumer and every
///   waiting producer ("Closing" below).
///
/// Items are [`Outgoing`] by default, or any [`QueueItem`]. The design and
/// its invariants follow the example. How to drive a queue and a
/// [`Flusher`](crate::Flusher) from an event loop (when to sleep, one write
/// per drained batch, waiting for writable, backpressure) is in
/// [`netbuf::event_loop`](crate::event_loop).
///
/// ```
/// use netbuf::{MessagePool, Outgoing, PushError, SendQueue};
///
/// let pool = MessagePool::new();
/// let q: SendQueue = SendQueue::builder().limit(100).entry_overhead(0).build();
///
/// q.try_push(pool.message_from(&[1; 60]).unwrap().into()).unwrap();
/// // 60 + 50 > 100: the message comes back intact.
/// let Err(PushError::Full { item, queued_bytes, .. }) =
///     q.try_push(pool.message_from(&[2; 50]).unwrap().into())
/// else { panic!() };
/// assert_eq!((item.len(), queued_bytes), (50, 60));
///
/// let mut out = Vec::new();
/// let d = q.drain_into(&mut out, usize::MAX);
/// assert_eq!((d.items, d.bytes, d.idle), (1, 60, true));
/// q.try_push(item).unwrap(); // fits now
/// ```
///
/// # Design
///
/// The queue is a linked list of fixed-size blocks of slots, as in
/// `crossbeam_queue::SegQueue` and tokio's mpsc block list (a node per
/// message, as in Vyukov's intrusive MPSC queue, would cost one allocation
/// per push). What is specific to a session's send queue is that **one
/// 64-bit state word** holds everything producers must agree on:
///
/// ```text
/// bit 63 ...... 32 | 31      | 30     | 29   | 28         | 27 ...... 0
/// tail index (32)  | WAITERS | CLOSED | IDLE | UNWRITABLE | queued bytes (28)
/// ```
///
/// A producer reserves its slot **and** its bytes with a single
/// compare-and-swap on that word, so:
///
/// * **The byte bound is exact.** A reservation only succeeds if
///   `queued + entry <= limit` in the very word it updates; concurrent
///   producers can never overshoot, not even by one message. An entry costs
///   [`QueueItem::byte_size`] plus a fixed per-entry overhead (by default
///   the size of one slot). A rejected message comes back inside
///   [`PushError::Full`].
/// * **Closing is exact.** `CLOSED` lives in the same word: every push
///   either reserved before the close, or fails with [`PushError::Closed`].
/// * **Waiting for space loses no wakeup.** `WAITERS` lives in the same
///   word too ("Space wakeups" below).
/// * **Writability is consistent.** `UNWRITABLE` is set by the reservation
///   that reaches the high watermark and cleared by the release that goes
///   down to the low watermark, in the same atomic update as the byte count,
///   so it can never be left stale by a race (hysteresis without locks).
///
/// Slots are then written and published one by one (`swap(READY)` on the
/// slot). The single consumer reads slots in index order, so each
/// producer's messages come out in the order it pushed them. When the
/// consumer leaves a block, every slot in it has been published and read,
/// so no producer can still touch it: it is reset and kept as a spare for
/// the next block (at most one spare), or freed.
///
/// # Smart notify, and why no wakeup is lost
///
/// The consumer is only woken when it may be asleep. A drain that finds
/// nothing more to read *arms* a wakeup before it returns
/// [`Drained::idle`] `== true`, in one of two ways:
///
/// 1. Nothing is reserved beyond what it read (tail index == head): it sets
///    `IDLE` with a CAS on the state word that succeeds only while the tail
///    index still equals its head. Every later reservation is a CAS on the
///    same word, so exactly the first one sees `IDLE`, clears it, and calls
///    [`Notify::notify`] after publishing its slot. This is the
///    empty -> non-empty transition: one notify per idle period, never one
///    per message.
/// 2. A producer has reserved the head slot but not yet published it: the
///    consumer marks that slot `PARKED` with a CAS. The producer publishes
///    with a `swap`, sees `PARKED`, and notifies. If the CAS finds the slot
///    already published, the drain simply goes on.
///
/// Both hand-offs are read-modify-writes on one location each (the state
/// word, or the slot), so they are totally ordered: either the consumer's
/// arming comes first and the producer sees it, or the producer's
/// reservation/publication comes first and the consumer's arming CAS fails
/// (or finds the slot ready) and it keeps draining. No `SeqCst` fences, no
/// Dekker-style reasoning; `loom-tests/tests/send_queue.rs` checks it.
///
/// # Space wakeups (producers waiting for room)
///
/// A producer that finds the queue full ([`send`](Self::send),
/// [`try_push_or_wait`](Self::try_push_or_wait)) registers its waker in a
/// waiter list (behind a mutex that only waiting producers, the waking
/// release and `close` take), **then** sets `WAITERS` with a CAS that
/// succeeds only on the exact state word it found full. If the CAS fails,
/// the word changed (bytes released, a close, another reservation): it
/// retries the push instead of waiting. Every release of bytes (a drain,
/// `close`, the panic guards) is one RMW on the word that clears `WAITERS`
/// and, if the word it replaced had it, wakes **every** registered
/// producer (the list is emptied; each retries, and the ones still refused
/// register again). Waking all rather than "enough for the freed bytes"
/// keeps the protocol simple: items differ in size, and a woken producer
/// may be gone (cancelled). `close` and `shutdown` set `CLOSED` (clearing
/// `WAITERS`) and wake every registered producer; they then get
/// [`PushError::Closed`].
///
/// No wakeup is lost, for the same reason as above: the producer's CAS and
/// the consumer's release are RMWs on one word. If the CAS comes first, the
/// release sees `WAITERS` and (having acquired the CAS, which the
/// registration happens-before) finds the waker in the list; if the
/// release comes first, the word the producer saw is gone, its CAS fails
/// and it retries the push, which now sees the freed bytes.
///
/// A push that registered but then did not wait (its retry succeeded or
/// found the queue closed) takes its entry back, and so does a pending
/// [`SendFuture`] that is dropped (cancelled). A `try_push_or_wait` that
/// returned `Full` leaves its entry until the next wake, whoever retries
/// (at most one spurious wakeup if its task pushed by other means). So the
/// next release of bytes, or a close, always empties the list: no waker
/// lingers in it. `loom-tests/tests/send_space.rs` and the models beside
/// the code check this, cancellation included.
///
/// # Async consumer
///
/// Build the queue with a [`WakerNotify`](crate::WakerNotify) and drain
/// with [`poll_drain_each`](Self::poll_drain_each) /
/// [`poll_drain_into`](Self::poll_drain_into): they register the task's
/// waker, **then** drain, and return `Pending` only when the drain found
/// nothing and armed the wakeup; the next push (or a close) wakes the
/// task. Registering after the drain could lose the wakeup of a push made
/// in between. The same pattern by hand: `notify.register(cx.waker())`,
/// then `drain_each`, then `Pending` if [`Drained::idle`] and nothing was
/// taken.
///
/// # Closing
///
/// * [`shutdown`](Self::shutdown): graceful. Pushes (and sends waiting for
///   space) fail with [`PushError::Closed`] from then on; what is queued
///   stays for the consumer, whose drains return it and then report
///   [`Drained::closed`].
/// * [`close`](Self::close): abrupt. Pushes fail likewise, and what is
///   queued is dropped at once; the consumer's next drain reports
///   [`Drained::closed`] (after any message whose push had reserved its
///   slot before the close).
///
/// Both call the consumer's [`Notify`] unconditionally (whether or not it
/// is armed), so a consumer asleep in any mode ([`CondvarNotify`],
/// [`WakerNotify`](crate::WakerNotify), a mio waker) wakes up, drains and
/// ends; and both wake every producer waiting for space.
///
/// [`CondvarNotify`]: crate::CondvarNotify
///
/// # Idle memory
///
/// A new queue holds no block of slots: its first push installs one. When
/// the queue has been quiet, the consumer can give its blocks back with
/// [`release_idle_blocks`](Self::release_idle_blocks) (issue 16: a server
/// holds one queue per connection); the next push installs a fresh block
/// the same way. A release changes the state word (the tail index moves to
/// the block's boundary position, never back), so a producer racing it with
/// an older word fails its CAS; the protocol and its proof are in
/// `release.rs`.
///
/// # Progress
///
/// Pushes never take a lock (only a producer that found the queue full and
/// chose to wait takes the waiter list's mutex, briefly, to register). Like
/// `SegQueue`, a producer that arrives exactly while another one links the
/// next block spins (with backoff) for those few instructions; the only
/// time a push waits for the consumer is the same kind of window, while
/// the consumer releases an idle queue's blocks (between its CAS on the
/// state word and its nulling of the block pointers). The consumer side
/// (`drain_*`, `close`, `release_idle_blocks`) is serialised by a mutex
/// that only the consumer and `close` take, so a misused second consumer
/// is safe.
///
/// # Limits
///
/// The byte limit is at most [`MAX_LIMIT`] (256 MiB - 1). The tail index
/// wraps at 2^32; a producer preempted between reading the state and its
/// CAS (a reservation, or setting `WAITERS`) for 2^32 positions of pushes
/// by others (a release of idle blocks skips at most 63), ending with
/// identical byte count and flags, would be fooled (the same ABA window
/// `SegQueue` has at 2^64 / 64 bits). At a million pushes per second to one
/// queue, that is a preemption of over an hour.
// Layout: one 64-byte line holds the state word and everything a push
// reads (producers CAS the state, then read the block pointers and the
// configuration: one line, not two); the consumer's lock, the notify and
// the waiter list start on the next line. `repr(C)` keeps that order, and
// 64-byte alignment (not `CachePadded`'s 128 on x86_64) keeps an idle
// queue at 192 bytes: a server holds one per connection (issue 16: an idle
// connection's whole cost is measured against 512 bytes).
#[repr(C, align(64))]
pub struct SendQueue<T: QueueItem = Outgoing> {
    /// The state word (see "Design" above).
    state: AtomicU64,
    /// The block producers reserve slots in.
    tail_block: AtomicPtr<Block<T>>,
    /// At most one reset block, ready to be linked as the next one.
    spare: AtomicPtr<Block<T>>,
    /// The first block, installed by the first push (or the first after a
    /// release of idle blocks), null before; the consumer starts from it
    /// (by then `tail_block` may have moved on).
    first: AtomicPtr<Block<T>>,
    limit: u64,
    overhead: u64,
    /// Watermarks, at most [`MAX_LIMIT`] (under 2^32).
    high: u32,
    low: u32,
    /// Count `pinned_bytes` instead of `byte_size`.
    pinned: bool,
    // -- next cache line --
    consumer: ConsumerLock<T>,
    notify: Option<Box<dyn Notify>>,
    /// Producers waiting for space ("Space wakeups" above).
    waiters: Waiters,
}

// The consumer's side starts on its own cache line.
#[cfg(not(loom))]
const _: () = assert!(core::mem::offset_of!(SendQueue<Outgoing>, consumer) == 64);

// SAFETY: items are moved in by producers and out by the consumer, never
// shared by reference between threads, so `T: Send` suffices; the raw block
// pointers are owned by the queue and only dereferenced under the protocol
// described on the type. `Notify` is `Send + Sync` by its bounds.
unsafe impl<T: QueueItem> Send for SendQueue<T> {}
// SAFETY: as above: `&SendQueue` only moves items in (push) or out (drain,
// serialised by the consumer mutex).
unsafe impl<T: QueueItem> Sync for SendQueue<T> {}

impl<T: QueueItem> Default for SendQueue<T> {
    fn default() -> Self {
        SendQueue::builder().build()
    }
}

/// Slots and bytes reserved by one CAS on the state word: `n` consecutive
/// slots of `block`, from offset `off`.
struct Reservation<T> {
    block: *mut Block<T>,
    off: usize,
    n: usize,
    /// `IDLE` was set: the consumer must be notified once published.
    was_idle: bool,
}

impl<T> Reservation<T> {
    /// Whether the reservation includes the block's last slot (its owner
    /// links the next block before publishing).
    #[inline]
    fn takes_last_slot(&self) -> bool {
        self.off + self.n == BLOCK_CAP
    }
}

/// Why a reservation failed.
enum Refused {
    Closed,
    /// `state`: the word the refusal was decided on.
    Full {
        state: u64,
    },
}

/// Why a single push failed, with the item.
enum Rejected<T> {
    Closed(T),
    /// `state`: the word found full (a waiting producer's CAS expects it).
    Full {
        item: T,
        state: u64,
    },
}

/// How a push that may wait ended.
enum Waited<T> {
    Pushed,
    Closed(T),
    /// Can never fit (entry size over the limit); not registered.
    TooLarge(T),
    /// Full (`queued_bytes` in the word found full): the waker is
    /// registered and `WAITERS` set; a release or a close will wake it.
    Registered {
        item: T,
        queued_bytes: usize,
    },
}

/// What a release of bytes saw and did (see [`SendQueue::release`]).
#[derive(Debug, Clone, Copy)]
struct Released {
    /// It set `IDLE` (nothing reserved beyond the given head).
    idle: bool,
    /// The word it replaced had `CLOSED`.
    closed: bool,
    /// The word it replaced had `WAITERS`, which it cleared: the caller
    /// must wake the waiting producers.
    wake_waiters: bool,
}

impl SendQueue<Outgoing> {
    /// A builder with the defaults (4 MiB limit, no notifier).
    pub fn builder() -> SendQueueBuilder {
        SendQueueBuilder::default()
    }
}

impl<T: QueueItem> SendQueue<T> {
    /// A queue with the default settings (4 MiB limit, no notifier).
    pub fn new() -> Self {
        SendQueueBuilder::default().build()
    }

    /// The byte limit.
    pub fn limit(&self) -> usize {
        self.limit as usize
    }

    /// The per-entry overhead counted on top of each item's size.
    pub fn entry_overhead(&self) -> usize {
        self.overhead as usize
    }

    /// Bytes queued (or reserved by pushes in progress), overhead included.
    pub fn queued_bytes(&self) -> usize {
        (self.state.load(Ordering::Relaxed) & BYTES_MASK) as usize
    }

    /// Whether the queue is below its high watermark (with hysteresis: after
    /// reaching it, writable again only once drained to the low watermark)
    /// and not closed.
    pub fn is_writable(&self) -> bool {
        self.state.load(Ordering::Relaxed) & (UNWRITABLE | CLOSED) == 0
    }

    /// Whether [`close`](Self::close) or [`shutdown`](Self::shutdown) was
    /// called.
    pub fn is_closed(&self) -> bool {
        self.state.load(Ordering::Relaxed) & CLOSED != 0
    }

    /// Sets `CLOSED` (clearing `WAITERS`: no producer sets it again, as its
    /// CAS expects a word without `CLOSED`) and wakes every waiting
    /// producer; they see `CLOSED` on their retry. The RMW acquires every
    /// waiter's CAS that came before it, so their wakers are in the list.
    fn set_closed(&self) {
        let mut st = self.state.load(Ordering::Acquire);
        loop {
            let new = (st | CLOSED) & !WAITERS;
            match self
                .state
                .compare_exchange_weak(st, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(cur) => st = cur,
            }
        }
        self.waiters.wake_all();
    }

    /// Shuts the queue down gracefully: every later push, and every send
    /// waiting for space, fails with [`PushError::Closed`]; what is queued
    /// stays for the consumer, whose drains return it and then report
    /// [`Drained::closed`]. Wakes the consumer (calls the notifier
    /// unconditionally) and every producer waiting for space. Idempotent;
    /// a later [`close`](Self::close) drops what is still queued.
    ///
    /// As with `close`, a push that reserved its slot just before the
    /// shutdown may publish its message after this returns; the consumer
    /// still receives it before [`Drained::closed`].
    ///
    /// ```
    /// let q: netbuf::SendQueue<Vec<u8>> = netbuf::SendQueue::new();
    /// q.try_push(b"last words".to_vec()).unwrap();
    /// q.shutdown();
    /// assert!(q.try_push(b"late".to_vec()).is_err());
    /// let mut out = Vec::new();
    /// let d = q.drain_into(&mut out, usize::MAX);
    /// assert_eq!((d.items, d.closed), (1, true));
    /// ```
    pub fn shutdown(&self) {
        self.set_closed();
        self.wake();
    }

    /// Closes the queue: every later push, and every send waiting for
    /// space, fails with [`PushError::Closed`], and the messages queued now
    /// are dropped (freed through their origin). Returns how many were
    /// dropped. Wakes the consumer (calls the notifier unconditionally:
    /// its next drain reports [`Drained::closed`]) and every producer
    /// waiting for space. For a graceful end, see
    /// [`shutdown`](Self::shutdown).
    ///
    /// A push that reserved its slot just before the close may publish its
    /// message after this returns; that message is returned by a later
    /// drain or freed when the queue drops, so nothing leaks.
    ///
    /// If a message's `Drop` panics, the panic propagates (the queue stays
    /// closed) and the consumer is not notified; the bytes of the messages
    /// dropped are given back, and the messages after it stay queued until
    /// a drain, another `close` or the queue's drop.
    ///
    /// ```
    /// let pool = netbuf::MessagePool::new();
    /// let q: netbuf::SendQueue = netbuf::SendQueue::new();
    /// q.try_push(pool.message_from(b"bye").unwrap().into()).unwrap();
    /// assert_eq!(q.close(), 1);
    /// assert_eq!(pool.stats().live_messages, 0);
    /// assert!(q.try_push(pool.message_from(b"late").unwrap().into()).is_err());
    /// assert!(q.drain_into(&mut Vec::new(), usize::MAX).closed);
    /// ```
    pub fn close(&self) -> usize {
        self.set_closed();
        let dropped = self.drain_inner(usize::MAX, false, drop).items;
        self.wake();
        dropped
    }
}

impl<T: QueueItem> Drop for SendQueue<T> {
    fn drop(&mut self) {
        // First, so that a panicking item `Drop` below cannot leak it.
        let spare = self.spare.swap(ptr::null_mut(), Ordering::Acquire);
        if !spare.is_null() {
            // SAFETY: the spare is reset, holds no item, and the queue is
            // gone, so nothing else references it.
            unsafe { Block::free(spare) };
        }
        let (mut head, mut block) = {
            let c = self.consumer.lock();
            (c.head, c.block)
        };
        if block.is_null() {
            // The consumer holds no block (it never drained since the queue
            // was new or released): start from the first block, if a push
            // installed one, at its first slot, past the boundary `head`.
            block = self.first.load(Ordering::Acquire);
            if block.is_null() {
                return;
            }
            head = next_index(head);
        }
        let end = index_of(self.state.load(Ordering::Acquire));
        // No producer is running (we are exclusive), so every reserved slot
        // between head and the tail index is published.
        let mut rest = Remains {
            at: Cursor { head, block },
            end,
        };
        // SAFETY: `block` is the live block holding `head`, the items from
        // `head` to `end` were never read, and the queue is gone, so nothing
        // else references these blocks.
        unsafe { rest.drop_all() };
    }
}

impl<T: QueueItem> fmt::Debug for SendQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendQueue")
            .field("queued_bytes", &self.queued_bytes())
            .field("limit", &self.limit)
            .field("writable", &self.is_writable())
            .field("closed", &self.is_closed())
            .finish()
    }
}
