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
mod error;
mod future;
mod guard;
mod item;
#[cfg(all(test, loom))]
mod loom;
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
use core::task::{Context, Poll, Waker};

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

    /// Bytes an item accounts for: its size plus the entry overhead.
    #[inline]
    fn entry_size(&self, item: &T) -> u64 {
        let size = if self.pinned {
            item.pinned_bytes()
        } else {
            item.byte_size()
        };
        (size as u64).saturating_add(self.overhead)
    }

    /// Whether `bytes` more fit on top of `queued`.
    #[inline]
    fn fits(&self, queued: u64, bytes: u64) -> bool {
        queued.saturating_add(bytes) <= self.limit
    }

    /// The reservation loop of every push: one CAS on the state word that
    /// reserves consecutive slots of the tail block and their bytes.
    ///
    /// `fit(queued, room)` says how many of the caller's next items to
    /// reserve (at most `room`, the slots left in the block) and their
    /// entry bytes, given `queued` bytes in the queue; 0 items means the
    /// next one does not fit. It runs again after a failed CAS (and also
    /// before installing a block in a queue that has none), and only before
    /// the CAS, so it may run user code that panics (`byte_size`).
    ///
    /// If the reservation is to include the block's last slot, a block for
    /// linking is taken into `*next` first (unless it holds one); the
    /// caller owns it, whatever the outcome.
    fn reserve(
        &self,
        next: &mut *mut Block<T>,
        mut fit: impl FnMut(u64, usize) -> (usize, u64),
    ) -> Result<Reservation<T>, Refused> {
        let mut step = 0;
        let mut st = self.state.load(Ordering::Acquire);
        loop {
            if st & CLOSED != 0 {
                return Err(Refused::Closed);
            }
            let off = offset_of(index_of(st));
            if off == BLOCK_CAP {
                if self.first.load(Ordering::Acquire).is_null() {
                    // No block (a new queue, or its blocks were released):
                    // install one, unless the items do not fit anyway. They
                    // are sized as for a reservation at its first slot
                    // (taking the block to link next if they fill it).
                    let (n, _) = fit(st & BYTES_MASK, BLOCK_CAP);
                    if n == 0 {
                        return Err(Refused::Full { state: st });
                    }
                    if n == BLOCK_CAP && next.is_null() {
                        *next = self.take_block();
                    }
                    self.install_block();
                } else {
                    // Another producer is linking the next block (or
                    // installing one), or the consumer is releasing them.
                    backoff(&mut step);
                }
                st = self.state.load(Ordering::Acquire);
                continue;
            }
            let queued = st & BYTES_MASK;
            let (n, bytes) = fit(queued, BLOCK_CAP - off);
            if n == 0 {
                return Err(Refused::Full { state: st });
            }
            debug_assert!(off + n <= BLOCK_CAP);
            if off + n == BLOCK_CAP && next.is_null() {
                *next = self.take_block();
            }
            let block = self.tail_block.load(Ordering::Acquire);
            if block.is_null() {
                // Nulled by a release after we read `st`, which is stale
                // (the release moved the index on).
                backoff(&mut step);
                st = self.state.load(Ordering::Acquire);
                continue;
            }
            match self.state.compare_exchange_weak(
                st,
                reserved(st, n as u64, bytes, u64::from(self.high)),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                // The slots are those of our index: `block` was the tail
                // block when we read `st`, and it only changes (is linked,
                // installed, or nulled by a release) after an RMW on the
                // state word that moves the index, which would have failed
                // this CAS (such a store is a release that our load
                // acquires: see `release.rs`).
                Ok(_) => {
                    return Ok(Reservation {
                        block,
                        off,
                        n,
                        was_idle: st & IDLE != 0,
                    });
                }
                Err(cur) => {
                    st = cur;
                    spin(&mut step);
                }
            }
        }
    }

    #[inline]
    fn wake(&self) {
        if let Some(n) = &self.notify {
            n.notify();
        }
    }

    /// Queues `item` without blocking. Fails, handing the item back, if it
    /// would take the queued bytes over the limit or the queue is closed.
    ///
    /// Calls the notifier if this push ends an idle period of the consumer.
    ///
    /// ```
    /// let q: netbuf::SendQueue<Vec<u8>> = netbuf::SendQueue::new();
    /// q.try_push(b"hello".to_vec()).unwrap();
    /// assert_eq!(q.queued_bytes(), 5 + q.entry_overhead());
    /// ```
    pub fn try_push(&self, item: T) -> Result<(), PushError<T>> {
        // Computed before reserving: nothing that can panic runs between a
        // reservation and its publication.
        let size = self.entry_size(&item);
        self.push_sized(item, size).map_err(|e| match e {
            Rejected::Closed(item) => PushError::Closed(item),
            Rejected::Full { item, state } => PushError::Full {
                item,
                queued_bytes: (state & BYTES_MASK) as usize,
                limit: self.limit as usize,
            },
        })
    }

    /// [`try_push`](Self::try_push) of an item whose entry size is `size`.
    fn push_sized(&self, item: T, size: u64) -> Result<(), Rejected<T>> {
        let mut next: *mut Block<T> = ptr::null_mut();
        let fit = |queued: u64, _room: usize| {
            if self.fits(queued, size) {
                (1, size)
            } else {
                (0, 0)
            }
        };
        let r = match self.reserve(&mut next, fit) {
            Ok(r) => r,
            Err(refused) => {
                self.put_spare(next);
                return Err(match refused {
                    Refused::Closed => Rejected::Closed(item),
                    Refused::Full { state } => Rejected::Full { item, state },
                });
            }
        };
        if r.takes_last_slot() {
            // SAFETY: we reserved the last slot of `r.block` and have not
            // published it; `next` is ours.
            unsafe { self.link_next(r.block, next) };
            next = ptr::null_mut();
        }
        // SAFETY: slot `r.off` of `r.block` is ours, reserved above.
        let parked = unsafe { self.publish(r.block, r.off, item) };
        self.put_spare(next);
        if r.was_idle || parked {
            self.wake();
        }
        Ok(())
    }

    /// Queues as many messages from the front of `batch` as fit, in order,
    /// with one reservation per block (up to 63 messages) and at most one
    /// notification for the whole batch. Pushed messages are removed from
    /// `batch`; on error the rest stay in it, in order.
    ///
    /// Returns the number pushed (all of them on `Ok`).
    ///
    /// ```
    /// let q: netbuf::SendQueue<Vec<u8>> =
    ///     netbuf::SendQueue::builder().limit(10).entry_overhead(0).build();
    /// let mut batch = vec![vec![0; 4], vec![1; 4], vec![2; 4]];
    /// let err = q.push_batch(&mut batch).unwrap_err();
    /// assert!(matches!(err, netbuf::BatchError::Full { pushed: 2, .. }));
    /// assert_eq!(batch, vec![vec![2; 4]]);
    /// ```
    pub fn push_batch(&self, batch: &mut Vec<T>) -> Result<usize, BatchError> {
        // The guard settles the batch and the block taken for linking
        // however this ends, a panic in `byte_size` included (issue 12).
        let mut g = BatchGuard::new(self, batch);
        let mut notify = false;
        let result = loop {
            let pushed = g.taken();
            let (rest, next) = g.rest_and_next();
            if rest.is_empty() {
                break Ok(pushed);
            }
            // As many of the next items as fit in the block and the limit.
            let fit = |queued: u64, room: usize| {
                let mut size = 0u64;
                let mut n = 0;
                for item in rest.iter().take(room) {
                    // User code, which may panic: before the reservation.
                    let s = self.entry_size(item);
                    if !self.fits(queued.saturating_add(size), s) {
                        break;
                    }
                    size += s;
                    n += 1;
                }
                (n, size)
            };
            let r = match self.reserve(next, fit) {
                Ok(r) => r,
                Err(Refused::Closed) => break Err(BatchError::Closed { pushed }),
                Err(Refused::Full { state }) => {
                    break Err(BatchError::Full {
                        pushed,
                        queued_bytes: (state & BYTES_MASK) as usize,
                        limit: self.limit as usize,
                    });
                }
            };
            // Nothing from here to the last publication can panic.
            if r.takes_last_slot() {
                // SAFETY: our reservation includes the block's last slot,
                // not yet published; the block taken for linking is ours.
                unsafe { self.link_next(r.block, g.take_next()) };
            }
            for i in 0..r.n {
                // `r.n <= rest.len()`: the batch has these items.
                let item = g.take();
                // SAFETY: slots `r.off..r.off + r.n` of `r.block` are ours.
                notify |= unsafe { self.publish(r.block, r.off + i, item) };
            }
            notify |= r.was_idle;
        };
        // Settle the batch and the spare before the notifier (user code)
        // runs.
        drop(g);
        if notify {
            self.wake();
        }
        result
    }

    /// Queues `item`, waiting for space if the queue is full: the future
    /// resolves to `Ok(())` once the byte bound admits the item, to
    /// [`PushError::Closed`] if the queue is closed or shut down (also
    /// while waiting), and to [`PushError::Full`] at once if the item can
    /// never fit (its entry size exceeds the limit; see
    /// [`fits_when_empty`](Self::fits_when_empty)). The item comes back in
    /// the error.
    ///
    /// Cancel-safe: dropping the pending future deregisters its waker and
    /// drops the item; nothing was queued. Waiting producers are woken by
    /// every release of bytes and retry in no particular order ("Space
    /// wakeups" on the type). Works on any executor: the queue only uses
    /// `core::task`.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let q: netbuf::SendQueue<Vec<u8>> =
    ///     netbuf::SendQueue::builder().limit(8).entry_overhead(0).build();
    /// q.send(vec![1; 8]).await.unwrap();
    /// let mut second = std::pin::pin!(q.send(vec![2; 4]));
    /// // Full: the second send waits ...
    /// assert!(futures::poll!(second.as_mut()).is_pending());
    /// // ... until the consumer drains.
    /// q.drain_into(&mut Vec::new(), usize::MAX);
    /// second.await.unwrap();
    /// assert_eq!(q.queued_bytes(), 4);
    /// # });
    /// ```
    pub fn send(&self, item: T) -> SendFuture<'_, T> {
        SendFuture::new(self, item)
    }

    /// The poll-level building block of [`send`](Self::send), for `Sink`
    /// implementations: pushes `item` if it fits; if the queue is full,
    /// registers `waker` to be woken when bytes are released (or the queue
    /// closes) and returns [`PushError::Full`] with the item.
    ///
    /// Lost-wakeup-free: the waker is registered before a CAS that
    /// succeeds only on the very state word found full; if space appeared
    /// (or the queue closed) in between, the push is retried instead of
    /// returning `Full` ("Space wakeups" on the type).
    ///
    /// An item that can never fit ([`fits_when_empty`](Self::fits_when_empty)
    /// is false) also comes back in [`PushError::Full`], at once and
    /// **without** registering: check for it rather than waiting forever.
    /// The registration lasts until the next release of bytes or close
    /// wakes it (once), even if the task pushes by other means meanwhile:
    /// at most one spurious wakeup, and nothing to clean up when a `Sink`
    /// is dropped. Registrations are per task (`Waker::will_wake`): several
    /// calls with the same task's waker share one entry.
    ///
    /// ```
    /// use std::task::Waker;
    /// use netbuf::{PushError, SendQueue};
    ///
    /// let q: SendQueue<Vec<u8>> = SendQueue::builder().limit(4).entry_overhead(0).build();
    /// q.try_push(vec![0; 4]).unwrap();
    /// let Err(PushError::Full { item, .. }) = q.try_push_or_wait(vec![1; 2], Waker::noop())
    /// else { panic!() };
    /// // Registered: the drain below wakes the waker; then retry.
    /// q.drain_into(&mut Vec::new(), usize::MAX);
    /// q.try_push_or_wait(item, Waker::noop()).unwrap();
    /// ```
    pub fn try_push_or_wait(&self, item: T, waker: &Waker) -> Result<(), PushError<T>> {
        let mut slot = None;
        match self.push_or_wait(item, waker, &mut slot, Share::SameTask) {
            Waited::Pushed => Ok(()),
            Waited::Closed(item) => Err(PushError::Closed(item)),
            Waited::TooLarge(item) => Err(self.full(item)),
            Waited::Registered { item, queued_bytes } => Err(PushError::Full {
                item,
                queued_bytes,
                limit: self.limit as usize,
            }),
        }
    }

    /// Whether `item` fits in the empty queue (its size plus the entry
    /// overhead is at most the limit). One that does not is refused by
    /// every push, [`send`](Self::send) and
    /// [`try_push_or_wait`](Self::try_push_or_wait) included, without
    /// waiting.
    pub fn fits_when_empty(&self, item: &T) -> bool {
        self.entry_size(item) <= self.limit
    }

    /// A [`PushError::Full`] for `item`, with the bytes queued now.
    fn full(&self, item: T) -> PushError<T> {
        PushError::Full {
            item,
            queued_bytes: self.queued_bytes(),
            limit: self.limit as usize,
        }
    }

    /// The push of [`send`](Self::send) and
    /// [`try_push_or_wait`](Self::try_push_or_wait): pushes, or registers
    /// `waker` (in `*slot`) and sets `WAITERS` on the exact word found
    /// full, or retries if that word changed meanwhile. A push that ends
    /// without waiting (`Pushed`, `Closed`) leaves no registration of its
    /// own behind: `*slot` is then `None`.
    fn push_or_wait(
        &self,
        item: T,
        waker: &Waker,
        slot: &mut Option<WaitSlot>,
        share: Share,
    ) -> Waited<T> {
        let size = self.entry_size(&item);
        if size > self.limit {
            return Waited::TooLarge(item);
        }
        let mut item = item;
        loop {
            let (it, state) = match self.push_sized(item, size) {
                Ok(()) => {
                    self.deregister(slot);
                    return Waited::Pushed;
                }
                Err(Rejected::Closed(it)) => {
                    self.deregister(slot);
                    return Waited::Closed(it);
                }
                Err(Rejected::Full { item, state }) => (item, state),
            };
            // Register first, then announce it on the word found full: a
            // release that sees `WAITERS` has acquired this CAS, so it
            // finds the waker. If the word moved on, the release (or close)
            // came first: push again instead of waiting.
            self.waiters.register(waker, slot, share);
            if self
                .state
                .compare_exchange(state, state | WAITERS, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Waited::Registered {
                    item: it,
                    queued_bytes: (state & BYTES_MASK) as usize,
                };
            }
            item = it;
        }
    }

    /// Takes back the registration in `*slot`, if any.
    #[inline]
    fn deregister(&self, slot: &mut Option<WaitSlot>) {
        if let Some(s) = slot.take() {
            self.waiters.remove(s);
        }
    }

    /// Moves up to `max` queued messages into `out`, oldest first (each
    /// producer's messages in the order it pushed them). See
    /// [`Drained::idle`] for when the consumer may sleep.
    ///
    /// Only one thread should consume; concurrent calls are serialised.
    pub fn drain_into(&self, out: &mut Vec<T>, max: usize) -> Drained {
        self.drain_each(max, |item| out.push(item))
    }

    /// Like [`drain_into`](Self::drain_into), handing each message to `f`
    /// (which must not push to or drain this queue).
    ///
    /// If `f` panics, the message it was given is gone (dropped by the
    /// unwinding `f`), the bytes of every message handed out are given back,
    /// and the messages after it stay queued for the next drain. The wakeup
    /// is not armed: drain again before sleeping.
    pub fn drain_each(&self, max: usize, f: impl FnMut(T)) -> Drained {
        self.drain_inner(max, true, f)
    }

    /// The async consumer's drain: registers the task's waker with the
    /// queue's notifier (a [`WakerNotify`](crate::WakerNotify)), **then**
    /// drains like [`drain_each`](Self::drain_each).
    ///
    /// Returns `Ready` with what the drain did if it took messages, stopped
    /// at `max`, or found the queue closed and drained
    /// ([`Drained::closed`]: the consumer is done); `Pending` if it found
    /// nothing, with the wakeup armed: the next push, `shutdown` or `close`
    /// wakes the task. Registering before draining is what makes it
    /// lost-wakeup-free ("Async consumer" on the type).
    ///
    /// # Panics
    ///
    /// If the queue's notifier cannot wake tasks (built without
    /// [`notify`](SendQueueBuilder::notify), or with a [`Notify`] whose
    /// [`register_waker`](Notify::register_waker) returns `false`): the task
    /// would never be woken.
    ///
    /// ```
    /// use std::future::poll_fn;
    /// use std::sync::Arc;
    /// use netbuf::{SendQueue, WakerNotify};
    ///
    /// let q = Arc::new(SendQueue::builder().notify(WakerNotify::new()).build::<Vec<u8>>());
    /// let producer = {
    ///     let q = q.clone();
    ///     std::thread::spawn(move || {
    ///         for i in 0..100u8 {
    ///             q.try_push(vec![i]).unwrap();
    ///         }
    ///         q.shutdown(); // the consumer drains the rest, then ends
    ///     })
    /// };
    /// let got = futures::executor::block_on(async {
    ///     let mut got = Vec::new();
    ///     loop {
    ///         let d = poll_fn(|cx| q.poll_drain_into(cx, &mut got, 16)).await;
    ///         if d.closed {
    ///             break got;
    ///         }
    ///     }
    /// });
    /// producer.join().unwrap();
    /// assert!(got.iter().enumerate().all(|(i, m)| m[0] == i as u8));
    /// assert_eq!(got.len(), 100);
    /// ```
    pub fn poll_drain_each(
        &self,
        cx: &mut Context<'_>,
        max: usize,
        f: impl FnMut(T),
    ) -> Poll<Drained> {
        let registered = self
            .notify
            .as_ref()
            .is_some_and(|n| n.register_waker(cx.waker()));
        assert!(
            registered,
            "SendQueue::poll_drain_*: the queue's notifier cannot wake tasks (build it with a WakerNotify)"
        );
        let d = self.drain_each(max, f);
        if d.items == 0 && d.idle && !d.closed {
            Poll::Pending
        } else {
            Poll::Ready(d)
        }
    }

    /// [`poll_drain_each`](Self::poll_drain_each) into a vector.
    pub fn poll_drain_into(
        &self,
        cx: &mut Context<'_>,
        out: &mut Vec<T>,
        max: usize,
    ) -> Poll<Drained> {
        self.poll_drain_each(cx, max, |item| out.push(item))
    }

    fn drain_inner(&self, max: usize, arm: bool, mut f: impl FnMut(T)) -> Drained {
        // Bytes of the items handed out, given back in one RMW when the
        // drain ends, or by the guard if user code panics first (issue 12);
        // the guard also wakes the producers waiting for space if a release
        // cleared `WAITERS`. Declared before `c`, so it is dropped after
        // the consumer lock is released: wakers never run under it.
        let mut unreleased = Unreleased::new(self);
        let mut c = self.consumer.lock();
        let mut items = 0;
        let mut total = 0u64;
        let drained = |items, total: u64, idle, closed| Drained {
            items,
            bytes: total as usize,
            idle,
            closed,
        };
        if c.block.is_null() {
            // No block adopted: `head` is the boundary position before the
            // slots of the block a push installs.
            if index_of(self.state.load(Ordering::Acquire)) == c.head {
                // The index has not left the boundary: no block to read,
                // nothing reserved.
                if !arm {
                    return Drained::default();
                }
                let r = unreleased.release(Some(c.head));
                if r.idle {
                    return drained(0, 0, true, r.closed);
                }
                // A push installed a block and moved the index past the
                // boundary meanwhile (the state load in `release` acquired
                // that), so the block is visible now.
            }
            if !self.adopt_first(&mut c) {
                return Drained::default();
            }
        }
        loop {
            if items == max {
                unreleased.release(None);
                return drained(items, total, false, false);
            }
            // SAFETY: `c.block` is the consumer's current block: producers
            // never free blocks and the consumer only recycles a block after
            // leaving it.
            let slot = unsafe { c.slot() };
            if slot.state.load(Ordering::Acquire) == READY {
                // SAFETY: published (acquired just above), and never read:
                // the cursor only moves past a slot by reading it.
                let (item, left) = unsafe { c.advance() };
                items += 1;
                if let Some(old) = left {
                    // SAFETY: `advance` left `old` after reading its last
                    // slot: all of it was published and read, and no
                    // producer touches it any more.
                    unsafe { self.recycle(old) };
                }
                // User code from here on (`byte_size`, `f`): the item is out
                // of the queue and `c` has moved past it, so a panic cannot
                // make it readable twice, and the guard gives back the bytes
                // counted so far. (If `byte_size` panics, this item's bytes
                // stay counted: a wrong `QueueItem` only skews accounting.)
                let size = self.entry_size(&item);
                total += size;
                unreleased.bytes += size;
                f(item);
                continue;
            }
            if !arm {
                unreleased.release(None);
                return drained(items, total, false, false);
            }
            // Nothing published at `head`: arm the wakeup ("Smart notify"
            // on the type). If nothing is reserved beyond `head` and the
            // queue is closed, nothing ever will be: the consumer is done.
            let r = unreleased.release(Some(c.head));
            if r.idle {
                return drained(items, total, true, r.closed);
            }
            // A producer reserved slot `head` and has not published it.
            match slot
                .state
                .compare_exchange(EMPTY, PARKED, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) | Err(PARKED) => return drained(items, total, true, false),
                // Published meanwhile: keep draining.
                Err(_) => continue,
            }
        }
    }

    /// Gives back `bytes` (clearing `WAITERS` if any are given back); with
    /// `idle_at = Some(head)`, also sets `IDLE` if nothing is reserved
    /// beyond `head`. One RMW on the state word (none if it would change
    /// nothing). The caller wakes the waiting producers if
    /// [`Released::wake_waiters`].
    fn release(&self, bytes: u64, idle_at: Option<u64>) -> Released {
        let mut st = self.state.load(Ordering::Acquire);
        loop {
            let (new, idle) = released(st, bytes, u64::from(self.low), idle_at);
            let r = Released {
                idle,
                closed: st & CLOSED != 0,
                wake_waiters: st & WAITERS != 0 && new & WAITERS == 0,
            };
            if new == st {
                return r;
            }
            match self
                .state
                .compare_exchange_weak(st, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return r,
                Err(cur) => st = cur,
            }
        }
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
