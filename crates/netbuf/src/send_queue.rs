//! [`SendQueue`]: a lock-free, byte-bounded MPSC queue of outgoing messages,
//! one per session, with lost-wakeup-free "smart" notification.
//!
//! # Design
//!
//! The queue is a linked list of fixed-size blocks of slots, as in
//! `crossbeam_queue::SegQueue` and tokio's mpsc block list (a node per
//! message, as in Vyukov's intrusive MPSC queue, would cost one allocation
//! per push). What is specific to a session's send queue is that **one
//! 64-bit state word** holds everything producers must agree on:
//!
//! ```text
//! bit 63 ............ 31 | 30     | 29   | 28         | 27 .......... 0
//! tail index (33 bits)   | CLOSED | IDLE | UNWRITABLE | queued bytes (28 bits)
//! ```
//!
//! A producer reserves its slot **and** its bytes with a single
//! compare-and-swap on that word, so:
//!
//! * **The byte bound is exact.** A reservation only succeeds if
//!   `queued + entry <= limit` in the very word it updates; concurrent
//!   producers can never overshoot, not even by one message. An entry costs
//!   [`QueueItem::byte_size`] plus a fixed per-entry overhead (by default
//!   the size of one slot). A rejected message comes back inside
//!   [`PushError::Full`].
//! * **Closing is exact.** `CLOSED` lives in the same word: every push
//!   either reserved before the close, or fails with [`PushError::Closed`].
//! * **Writability is consistent.** `UNWRITABLE` is set by the reservation
//!   that reaches the high watermark and cleared by the release that goes
//!   down to the low watermark, in the same atomic update as the byte count,
//!   so it can never be left stale by a race (hysteresis without locks).
//!
//! Slots are then written and published one by one (`swap(READY)` on the
//! slot). The single consumer reads slots in index order, so each
//! producer's messages come out in the order it pushed them. When the
//! consumer leaves a block, every slot in it has been published and read,
//! so no producer can still touch it: it is reset and kept as a spare for
//! the next block (at most one spare), or freed.
//!
//! # Smart notify, and why no wakeup is lost
//!
//! The consumer is only woken when it may be asleep. A drain that finds
//! nothing more to read *arms* a wakeup before it returns
//! [`Drained::idle`] `== true`, in one of two ways:
//!
//! 1. Nothing is reserved beyond what it read (tail index == head): it sets
//!    `IDLE` with a CAS on the state word that succeeds only while the tail
//!    index still equals its head. Every later reservation is a CAS on the
//!    same word, so exactly the first one sees `IDLE`, clears it, and calls
//!    [`Notify::notify`] after publishing its slot. This is the
//!    empty -> non-empty transition: one notify per idle period, never one
//!    per message.
//! 2. A producer has reserved the head slot but not yet published it: the
//!    consumer marks that slot `PARKED` with a CAS. The producer publishes
//!    with a `swap`, sees `PARKED`, and notifies. If the CAS finds the slot
//!    already published, the drain simply goes on.
//!
//! Both hand-offs are read-modify-writes on one location each (the state
//! word, or the slot), so they are totally ordered: either the consumer's
//! arming comes first and the producer sees it, or the producer's
//! reservation/publication comes first and the consumer's arming CAS fails
//! (or finds the slot ready) and it keeps draining. No `SeqCst` fences, no
//! Dekker-style reasoning; `loom-tests/tests/send_queue.rs` checks it.
//!
//! # Progress
//!
//! Producers never take a lock and never wait for the consumer. Like
//! `SegQueue`, a producer that arrives exactly while another one links the
//! next block spins (with backoff) for those few instructions. The consumer
//! side (`drain_*`, `close`) is serialised by a mutex that only the
//! consumer and `close` take, so a misused second consumer is safe.
//!
//! # Limits
//!
//! The byte limit is at most [`MAX_LIMIT`] (256 MiB - 1). The tail index
//! wraps at 2^33; a producer preempted between reading the state and its
//! CAS for 2^33 pushes by others with identical byte count and flags would
//! be fooled (the same ABA window `SegQueue` has at 2^64 / 64 bits).

use core::fmt;
use core::mem::{self, MaybeUninit};
use core::ops::Deref;
use core::{ptr, slice};

use crate::message::Message;
use crate::message::shared::SharedMessage;
use crate::notify::Notify;
#[cfg(loom)]
use crate::sync::AtomicBool;
use crate::sync::{AtomicPtr, AtomicU64, AtomicUsize, Ordering, UnsafeCell};
#[cfg(not(loom))]
use crate::sync::{Mutex, lock};

/// Positions per block, including one "boundary" position that no slot
/// uses (it marks "the next block is being linked"). Small under loom so
/// models cross block boundaries with a handful of messages.
#[cfg(not(loom))]
const LAP: u64 = 64;
#[cfg(loom)]
const LAP: u64 = 4;
/// Slots per block.
pub(crate) const BLOCK_CAP: usize = (LAP - 1) as usize;

const BYTES_MASK: u64 = (1 << 28) - 1;
const UNWRITABLE: u64 = 1 << 28;
const IDLE: u64 = 1 << 29;
const CLOSED: u64 = 1 << 30;
const INDEX_SHIFT: u32 = 31;
const INDEX_ONE: u64 = 1 << INDEX_SHIFT;
const INDEX_MASK: u64 = u64::MAX >> INDEX_SHIFT;

/// The largest byte limit a [`SendQueue`] supports (256 MiB - 1).
pub const MAX_LIMIT: usize = BYTES_MASK as usize;

/// Slot states.
const EMPTY: usize = 0;
const READY: usize = 1;
const PARKED: usize = 2;

#[inline(always)]
fn index_of(state: u64) -> u64 {
    state >> INDEX_SHIFT
}

#[inline(always)]
fn offset_of(index: u64) -> usize {
    (index % LAP) as usize
}

/// An item a [`SendQueue`] can hold: it reports the bytes it will put on
/// the wire, which is what the queue's bound counts.
///
/// `byte_size` must return the same value for as long as the item is
/// queued (it is read once on push and once on drain). A wrong
/// implementation can only skew the accounting (it saturates), never cause
/// memory unsafety.
pub trait QueueItem: Send {
    /// Bytes this item accounts for (without the queue's per-entry overhead).
    fn byte_size(&self) -> usize;
}

impl QueueItem for Message {
    #[inline]
    fn byte_size(&self) -> usize {
        self.len()
    }
}

impl QueueItem for SharedMessage {
    #[inline]
    fn byte_size(&self) -> usize {
        self.len()
    }
}

impl QueueItem for Vec<u8> {
    #[inline]
    fn byte_size(&self) -> usize {
        self.len()
    }
}

impl QueueItem for Box<[u8]> {
    #[inline]
    fn byte_size(&self) -> usize {
        self.len()
    }
}

impl QueueItem for bytes::Bytes {
    #[inline]
    fn byte_size(&self) -> usize {
        self.len()
    }
}

/// One outgoing message of a session: owned (sent once) or shared
/// (a broadcast, one refcount per recipient). The default item type of
/// [`SendQueue`].
///
/// ```
/// let pool = netbuf::MessagePool::new();
/// let owned: netbuf::Outgoing = pool.message_from(b"reply").unwrap().into();
/// let shared: netbuf::Outgoing = pool.message_from(b"news").unwrap().freeze().into();
/// assert_eq!((&owned[..], &shared[..]), (&b"reply"[..], &b"news"[..]));
/// ```
#[derive(Debug)]
pub enum Outgoing {
    /// A message for this session only.
    Owned(Message),
    /// A shared (broadcast) message.
    Shared(SharedMessage),
}

impl QueueItem for Outgoing {
    #[inline]
    fn byte_size(&self) -> usize {
        self.len()
    }
}

impl Deref for Outgoing {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        match self {
            Outgoing::Owned(m) => m,
            Outgoing::Shared(m) => m,
        }
    }
}

impl AsRef<[u8]> for Outgoing {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl From<Message> for Outgoing {
    fn from(m: Message) -> Self {
        Outgoing::Owned(m)
    }
}

impl From<SharedMessage> for Outgoing {
    fn from(m: SharedMessage) -> Self {
        Outgoing::Shared(m)
    }
}

/// Why [`SendQueue::try_push`] refused a message; the message comes back.
#[derive(thiserror::Error)]
pub enum PushError<T> {
    /// Queuing the message would exceed the byte limit.
    #[error("send queue full: {queued_bytes} bytes queued, limit {limit}")]
    Full {
        /// The refused message, untouched.
        item: T,
        /// Bytes queued when the push was refused.
        queued_bytes: usize,
        /// The queue's limit.
        limit: usize,
    },
    /// The queue was closed.
    #[error("send queue closed")]
    Closed(T),
}

impl<T> PushError<T> {
    /// The refused message.
    pub fn into_inner(self) -> T {
        match self {
            PushError::Full { item, .. } | PushError::Closed(item) => item,
        }
    }

    /// Whether the queue was full (as opposed to closed).
    pub fn is_full(&self) -> bool {
        matches!(self, PushError::Full { .. })
    }
}

impl<T> fmt::Debug for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Full {
                queued_bytes,
                limit,
                ..
            } => f
                .debug_struct("Full")
                .field("queued_bytes", queued_bytes)
                .field("limit", limit)
                .finish_non_exhaustive(),
            PushError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

/// Why [`SendQueue::push_batch`] stopped early. The messages not pushed are
/// left in the caller's vector, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The next message would exceed the byte limit.
    #[error("send queue full after {pushed} messages: {queued_bytes} bytes queued, limit {limit}")]
    Full {
        /// Messages pushed (removed from the front of the vector).
        pushed: usize,
        /// Bytes queued when the push stopped.
        queued_bytes: usize,
        /// The queue's limit.
        limit: usize,
    },
    /// The queue was closed.
    #[error("send queue closed after {pushed} messages")]
    Closed {
        /// Messages pushed before the close was seen.
        pushed: usize,
    },
}

/// What one drain call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Drained {
    /// Messages taken.
    pub items: usize,
    /// Bytes released (entry overhead included).
    pub bytes: usize,
    /// `true`: the queue was found empty and the wakeup is armed, so the
    /// next push will call [`Notify::notify`]; the consumer may sleep.
    /// `false`: the drain stopped at `max`; messages may remain, drain
    /// again without waiting.
    pub idle: bool,
}

/// Builder for a [`SendQueue`].
///
/// ```
/// let q: netbuf::SendQueue = netbuf::SendQueue::builder()
///     .limit(1 << 20)
///     .watermarks(256 << 10, 768 << 10)
///     .entry_overhead(64)
///     .build();
/// assert_eq!(q.limit(), 1 << 20);
/// assert!(q.is_writable());
/// ```
pub struct SendQueueBuilder {
    limit: usize,
    entry_overhead: Option<usize>,
    watermarks: Option<(usize, usize)>,
    notify: Option<Box<dyn Notify>>,
}

impl fmt::Debug for SendQueueBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendQueueBuilder")
            .field("limit", &self.limit)
            .field("entry_overhead", &self.entry_overhead)
            .field("watermarks", &self.watermarks)
            .field("notify", &self.notify.is_some())
            .finish()
    }
}

impl Default for SendQueueBuilder {
    fn default() -> Self {
        SendQueueBuilder {
            limit: 4 << 20,
            entry_overhead: None,
            watermarks: None,
            notify: None,
        }
    }
}

impl SendQueueBuilder {
    /// Byte limit (default 4 MiB; clamped to [`MAX_LIMIT`]). A single
    /// message larger than the limit can never be queued.
    pub fn limit(mut self, bytes: usize) -> Self {
        self.limit = bytes;
        self
    }

    /// Bytes counted per entry on top of its [`QueueItem::byte_size`]
    /// (default: the size of one slot, `size_of::<T>()` + 8).
    pub fn entry_overhead(mut self, bytes: usize) -> Self {
        self.entry_overhead = Some(bytes);
        self
    }

    /// Writability hysteresis: [`SendQueue::is_writable`] turns false when
    /// the queued bytes reach `high` and true again when they fall to `low`
    /// (default: `high` = limit, `low` = limit / 2; clamped so that
    /// `low <= high <= limit`).
    pub fn watermarks(mut self, low: usize, high: usize) -> Self {
        self.watermarks = Some((low, high));
        self
    }

    /// The consumer's wakeup (default: none; the consumer polls).
    pub fn notify(mut self, notify: impl Notify + 'static) -> Self {
        self.notify = Some(Box::new(notify));
        self
    }

    /// Builds the queue.
    pub fn build<T: QueueItem>(self) -> SendQueue<T> {
        let limit = self.limit.min(MAX_LIMIT) as u64;
        let (low, high) = self
            .watermarks
            .map(|(l, h)| (l as u64, h as u64))
            .unwrap_or((limit / 2, limit));
        let high = high.min(limit);
        let low = low.min(high);
        let overhead = self
            .entry_overhead
            .unwrap_or(core::mem::size_of::<Slot<T>>()) as u64;
        // No block yet: an idle session's queue holds no slot memory. The
        // first push installs one (see `first_block`).
        let first: *mut Block<T> = ptr::null_mut();
        SendQueue {
            state: Padded(AtomicU64::new(IDLE)),
            tail_block: AtomicPtr::new(first),
            first: AtomicPtr::new(first),
            spare: AtomicPtr::new(ptr::null_mut()),
            limit,
            overhead,
            high,
            low,
            notify: self.notify,
            consumer: Padded(ConsumerLock::new(Consumer {
                head: 0,
                block: first,
            })),
        }
    }
}

struct Slot<T> {
    item: UnsafeCell<MaybeUninit<T>>,
    state: AtomicUsize,
}

struct Block<T> {
    next: AtomicPtr<Block<T>>,
    slots: [Slot<T>; BLOCK_CAP],
    /// Under loom, a block still allocated when a model execution ends
    /// fails the model ("Allocation leaked"), in every model of the queue.
    #[cfg(loom)]
    _leak_check: loom::alloc::Track<()>,
}

impl<T> Block<T> {
    fn alloc() -> *mut Block<T> {
        Box::into_raw(Box::new(Block {
            next: AtomicPtr::new(ptr::null_mut()),
            slots: core::array::from_fn(|_| Slot {
                item: UnsafeCell::new(MaybeUninit::uninit()),
                state: AtomicUsize::new(EMPTY),
            }),
            #[cfg(loom)]
            _leak_check: loom::alloc::Track::new(()),
        }))
    }

    /// # Safety
    /// `b` came from [`Block::alloc`], no slot holds an item, and nothing
    /// else can reach it.
    unsafe fn free(b: *mut Block<T>) {
        // SAFETY: guaranteed by the caller; `MaybeUninit` slots drop nothing.
        drop(unsafe { Box::from_raw(b) });
    }
}

/// State owned by the (single) consumer.
struct Consumer<T> {
    /// Index of the next slot to read (33-bit domain, never a boundary).
    head: u64,
    /// The block holding `head`.
    block: *mut Block<T>,
}

/// The lock that serialises the consumer side (`drain_*`, `close`).
///
/// `std`'s mutex, whose poisoning is ignored: a drain moves the consumer
/// state past an item before any call that can panic, so a panicking drain
/// callback leaves it consistent and the queue keeps working.
#[cfg(not(loom))]
struct ConsumerLock<T>(Mutex<Consumer<T>>);

#[cfg(not(loom))]
impl<T> ConsumerLock<T> {
    fn new(c: Consumer<T>) -> Self {
        ConsumerLock(Mutex::new(c))
    }

    #[inline]
    fn lock(&self) -> impl core::ops::DerefMut<Target = Consumer<T>> + '_ {
        lock(&self.0)
    }
}

/// Under loom: a spin lock with the mutex's acquire/release semantics and,
/// like the `std` version, no poisoning. `loom::sync::Mutex` cannot stand
/// in: its `lock` panics once a panic has unwound through one of its
/// guards, so no model could drain again (or drop the queue) after a
/// panicking drain callback, which the real queue supports (issue 12).
#[cfg(loom)]
struct ConsumerLock<T> {
    locked: AtomicBool,
    consumer: UnsafeCell<Consumer<T>>,
}

#[cfg(loom)]
impl<T> ConsumerLock<T> {
    fn new(c: Consumer<T>) -> Self {
        ConsumerLock {
            locked: AtomicBool::new(false),
            consumer: UnsafeCell::new(c),
        }
    }

    fn lock(&self) -> ConsumerGuard<'_, T> {
        while self
            .locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            loom::thread::yield_now();
        }
        ConsumerGuard {
            lock: self,
            // Loom checks every access made through this pointer against
            // the other threads' (a broken lock would be reported).
            consumer: Some(self.consumer.get_mut()),
        }
    }
}

#[cfg(loom)]
struct ConsumerGuard<'a, T> {
    lock: &'a ConsumerLock<T>,
    consumer: Option<loom::cell::MutPtr<Consumer<T>>>,
}

#[cfg(loom)]
impl<T> Deref for ConsumerGuard<'_, T> {
    type Target = Consumer<T>;
    fn deref(&self) -> &Consumer<T> {
        let Some(p) = &self.consumer else {
            unreachable!()
        };
        // SAFETY: the lock is held, so this guard has exclusive access.
        unsafe { p.deref() }
    }
}

#[cfg(loom)]
impl<T> core::ops::DerefMut for ConsumerGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut Consumer<T> {
        let Some(p) = &self.consumer else {
            unreachable!()
        };
        // SAFETY: the lock is held, so this guard has exclusive access, and
        // `&mut self` makes the reference unique.
        unsafe { p.deref() }
    }
}

#[cfg(loom)]
impl<T> Drop for ConsumerGuard<'_, T> {
    fn drop(&mut self) {
        // End the tracked access before unlocking.
        self.consumer = None;
        self.lock.locked.store(false, Ordering::Release);
    }
}

#[cfg_attr(target_arch = "x86_64", repr(align(128)))]
#[cfg_attr(not(target_arch = "x86_64"), repr(align(64)))]
struct Padded<T>(T);

impl<T> Deref for Padded<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A lock-free, byte-bounded multi-producer single-consumer queue of
/// outgoing messages: one per session.
///
/// * Producers (logic threads) call [`try_push`](Self::try_push) or
///   [`push_batch`](Self::push_batch) from any thread; they never block.
///   Over the byte limit the message comes back in [`PushError::Full`].
/// * The consumer (the session's IO thread) drains in batches with
///   [`drain_into`](Self::drain_into) / [`drain_each`](Self::drain_each) and
///   sleeps when a drain reports [`Drained::idle`]; the next push wakes it
///   through the [`Notify`] given to the builder, once per
///   empty -> non-empty transition.
///
/// Items are [`Outgoing`] by default, or any [`QueueItem`]. See the
/// [module docs](self) for the design and its invariants.
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
pub struct SendQueue<T: QueueItem = Outgoing> {
    /// The state word (see the module docs).
    state: Padded<AtomicU64>,
    /// The block producers reserve slots in.
    tail_block: AtomicPtr<Block<T>>,
    /// At most one reset block, ready to be linked as the next one.
    spare: AtomicPtr<Block<T>>,
    /// The first block, installed by the first push; the consumer starts
    /// from it (by then `tail_block` may have moved on).
    first: AtomicPtr<Block<T>>,
    limit: u64,
    overhead: u64,
    high: u64,
    low: u64,
    notify: Option<Box<dyn Notify>>,
    consumer: Padded<ConsumerLock<T>>,
}

// SAFETY: items are moved in by producers and out by the consumer, never
// shared by reference between threads, so `T: Send` suffices; the raw block
// pointers are owned by the queue and only dereferenced under the protocol
// described in the module docs. `Notify` is `Send + Sync` by its bounds.
unsafe impl<T: QueueItem> Send for SendQueue<T> {}
// SAFETY: as above: `&SendQueue` only moves items in (push) or out (drain,
// serialised by the consumer mutex).
unsafe impl<T: QueueItem> Sync for SendQueue<T> {}

impl<T: QueueItem> Default for SendQueue<T> {
    fn default() -> Self {
        SendQueue::builder().build()
    }
}

/// After a failed CAS: spins a little (exponentially, capped), so that
/// contending producers spread out.
#[inline]
fn spin(step: &mut u32) {
    #[cfg(loom)]
    let _ = step;
    #[cfg(not(loom))]
    {
        for _ in 0..(1u32 << (*step).min(6)) {
            core::hint::spin_loop();
        }
        *step += 1;
    }
}

/// While waiting for another producer to link the next block: spins a
/// little, then yields. Under loom, yields so the model scheduler runs the
/// thread being waited for.
#[inline]
fn backoff(step: &mut u32) {
    #[cfg(loom)]
    {
        let _ = step;
        loom::thread::yield_now();
    }
    #[cfg(not(loom))]
    {
        if *step < 6 {
            for _ in 0..(1u32 << *step) {
                core::hint::spin_loop();
            }
            *step += 1;
        } else {
            std::thread::yield_now();
        }
    }
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

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.state.load(Ordering::Relaxed) & CLOSED != 0
    }

    /// Bytes an item accounts for: its size plus the entry overhead.
    #[inline]
    fn entry_size(&self, item: &T) -> u64 {
        (item.byte_size() as u64).saturating_add(self.overhead)
    }

    /// The state after reserving `n` slots and `bytes` bytes from `st`.
    #[inline]
    fn reserved(&self, st: u64, n: u64, bytes: u64) -> u64 {
        let total = (st & BYTES_MASK) + bytes;
        let mut new = st.wrapping_add(n << INDEX_SHIFT) + bytes;
        new &= !IDLE;
        if total >= self.high {
            new |= UNWRITABLE;
        }
        new
    }

    /// Installs the first block (the queue is created without one). Called
    /// by a producer that found `tail_block` null, before it reserves: a
    /// reservation is therefore only ever made once the block exists, which
    /// is what lets the consumer find it (see `drain_inner`).
    #[cold]
    fn first_block(&self) {
        let mut f = self.first.load(Ordering::Acquire);
        if f.is_null() {
            let b = Block::<T>::alloc();
            match self.first.compare_exchange(
                ptr::null_mut(),
                b,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => f = b,
                Err(cur) => {
                    // SAFETY: another producer installed its block first;
                    // `b` was never published.
                    unsafe { Block::free(b) };
                    f = cur;
                }
            }
        }
        // `first` is set before `tail_block`, and every reservation is made
        // after `tail_block` was seen non-null: whoever acquires a
        // reservation also sees `first`. Only the null -> first transition
        // is allowed here (a later block must not be overwritten).
        let _ = self.tail_block.compare_exchange(
            ptr::null_mut(),
            f,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// A reset block for linking: the spare, or a new one.
    fn take_block(&self) -> *mut Block<T> {
        let b = self.spare.swap(ptr::null_mut(), Ordering::Acquire);
        if b.is_null() { Block::alloc() } else { b }
    }

    /// Keeps `b` (a reset block nobody else can reach) as the spare, or
    /// frees it.
    fn put_spare(&self, b: *mut Block<T>) {
        if b.is_null() {
            return;
        }
        if self
            .spare
            .compare_exchange(ptr::null_mut(), b, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            // SAFETY: `b` is reset and unreachable (caller's guarantee), and
            // it did not become the spare.
            unsafe { Block::free(b) };
        }
    }

    /// Links `next` after `block`, whose last slot the caller reserved, and
    /// moves the tail index past the boundary position.
    ///
    /// # Safety
    /// The caller's reservation includes the last slot of `block` and it
    /// has not published that slot yet (so `block` is alive); `next` is a
    /// reset block nobody else can reach.
    #[inline]
    unsafe fn link_next(&self, block: *mut Block<T>, next: *mut Block<T>) {
        debug_assert!(!next.is_null());
        // SAFETY: `block` is alive: our unpublished slot keeps the consumer
        // from leaving it.
        unsafe { (*block).next.store(next, Ordering::Release) };
        self.tail_block.store(next, Ordering::Release);
        // The index sits on the boundary position, which no one else can
        // move; the add wraps out of the top of the word at 2^33.
        self.state.fetch_add(INDEX_ONE, Ordering::Release);
    }

    /// Writes `item` into slot `off` of `block` and publishes it. Returns
    /// whether the consumer had parked on that slot (it must be notified).
    ///
    /// # Safety
    /// The caller reserved this slot (exactly once) and has not published
    /// it; `block` is the block of that reservation.
    #[inline]
    unsafe fn publish(&self, block: *mut Block<T>, off: usize, item: T) -> bool {
        // SAFETY: the slot is reserved to us, so the consumer does not leave
        // the block and nobody else writes this slot until we publish.
        let slot = unsafe { &(*block).slots[off] };
        // SAFETY: exclusive access to the cell until the `swap` below, which
        // releases the write to the consumer.
        slot.item.with_mut(|p| unsafe { (*p).write(item) });
        // After this swap the consumer may read the slot and recycle the
        // block: do not touch it again.
        slot.state.swap(READY, Ordering::AcqRel) == PARKED
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
        let mut next: *mut Block<T> = ptr::null_mut();
        let mut step = 0;
        let mut st = self.state.load(Ordering::Acquire);
        let (block, off, was_idle) = loop {
            if st & CLOSED != 0 {
                self.put_spare(next);
                return Err(PushError::Closed(item));
            }
            let off = offset_of(index_of(st));
            if off == BLOCK_CAP {
                // Another producer is linking the next block.
                backoff(&mut step);
                st = self.state.load(Ordering::Acquire);
                continue;
            }
            let bytes = st & BYTES_MASK;
            if bytes.saturating_add(size) > self.limit {
                self.put_spare(next);
                return Err(PushError::Full {
                    item,
                    queued_bytes: bytes as usize,
                    limit: self.limit as usize,
                });
            }
            if off + 1 == BLOCK_CAP && next.is_null() {
                next = self.take_block();
            }
            let block = self.tail_block.load(Ordering::Acquire);
            if block.is_null() {
                self.first_block();
                continue;
            }
            match self.state.compare_exchange_weak(
                st,
                self.reserved(st, 1, size),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break (block, off, st & IDLE != 0),
                Err(cur) => {
                    st = cur;
                    spin(&mut step);
                }
            }
        };
        if off + 1 == BLOCK_CAP {
            // SAFETY: we reserved the last slot of `block` (the block of our
            // index: see the module docs) and `next` is ours.
            unsafe { self.link_next(block, next) };
            next = ptr::null_mut();
        }
        // SAFETY: slot `off` of `block` is ours, reserved by the CAS above.
        let parked = unsafe { self.publish(block, off, item) };
        self.put_spare(next);
        if was_idle || parked {
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
        let mut step = 0;
        let result = 'outer: loop {
            let pushed = g.taken;
            if pushed == g.len {
                break Ok(pushed);
            }
            let mut st = self.state.load(Ordering::Acquire);
            let (block, off, k, was_idle) = loop {
                if st & CLOSED != 0 {
                    break 'outer Err(BatchError::Closed { pushed });
                }
                let off = offset_of(index_of(st));
                if off == BLOCK_CAP {
                    backoff(&mut step);
                    st = self.state.load(Ordering::Acquire);
                    continue;
                }
                let bytes = st & BYTES_MASK;
                let rest = g.rest();
                let want = rest.len().min(BLOCK_CAP - off);
                let mut k = 0;
                let mut size = 0u64;
                while k < want {
                    // User code, which may panic: before the reservation.
                    let s = self.entry_size(&rest[k]);
                    if bytes.saturating_add(size).saturating_add(s) > self.limit {
                        break;
                    }
                    size += s;
                    k += 1;
                }
                if k == 0 {
                    break 'outer Err(BatchError::Full {
                        pushed,
                        queued_bytes: bytes as usize,
                        limit: self.limit as usize,
                    });
                }
                if off + k == BLOCK_CAP && g.next.is_null() {
                    g.next = self.take_block();
                }
                let block = self.tail_block.load(Ordering::Acquire);
                if block.is_null() {
                    self.first_block();
                    continue;
                }
                match self.state.compare_exchange_weak(
                    st,
                    self.reserved(st, k as u64, size),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => break (block, off, k, st & IDLE != 0),
                    Err(cur) => {
                        st = cur;
                        spin(&mut step);
                    }
                }
            };
            // Nothing from here to the last publication can panic.
            if off + k == BLOCK_CAP {
                // SAFETY: our reservation includes the block's last slot,
                // not yet published; `g.next` is ours.
                unsafe { self.link_next(block, g.next) };
                g.next = ptr::null_mut();
            }
            for i in 0..k {
                // `k <= rest.len()`: the batch has these items.
                let item = g.take();
                // SAFETY: slots `off..off + k` of `block` are ours.
                notify |= unsafe { self.publish(block, off + i, item) };
            }
            notify |= was_idle;
        };
        // Settle the batch and the spare before the notifier (user code)
        // runs.
        drop(g);
        if notify {
            self.wake();
        }
        result
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

    fn drain_inner(&self, max: usize, arm: bool, mut f: impl FnMut(T)) -> Drained {
        let mut c = self.consumer.lock();
        // Bytes of the items handed out, given back in one RMW when the
        // drain ends, or by the guard if user code panics first (issue 12).
        // Declared after `c`, so it is dropped before the lock is released.
        let mut unreleased = Unreleased {
            queue: self,
            bytes: 0,
        };
        let mut items = 0;
        let mut total = 0u64;
        if c.block.is_null() {
            let b = self.first.load(Ordering::Acquire);
            if b.is_null() {
                // No block yet, so nothing was reserved before this load.
                if !arm {
                    return Drained::default();
                }
                if self.release(0, Some(c.head)) {
                    return Drained {
                        idle: true,
                        ..Drained::default()
                    };
                }
                // A producer reserved meanwhile; it installed the block
                // before its reservation, which the state load in `release`
                // acquired, so the block is visible now.
            }
            c.block = self.first.load(Ordering::Acquire);
            debug_assert!(!c.block.is_null());
        }
        loop {
            if items == max {
                self.release(unreleased.take(), None);
                return Drained {
                    items,
                    bytes: total as usize,
                    idle: false,
                };
            }
            let off = offset_of(c.head);
            // SAFETY: `c.block` is the consumer's current block: producers
            // never free blocks and the consumer only recycles a block after
            // leaving it.
            let slot = unsafe { &(*c.block).slots[off] };
            if slot.state.load(Ordering::Acquire) == READY {
                // SAFETY: READY (acquired) means the producer wrote the item
                // and will not touch the slot again; we read it exactly once
                // and move on.
                let item = slot.item.with(|p| unsafe { ptr::read(p).assume_init() });
                items += 1;
                c.head = (c.head + 1) & INDEX_MASK;
                if off + 1 == BLOCK_CAP {
                    let old = c.block;
                    // SAFETY: the producer of the last slot linked the next
                    // block before publishing it (acquired above).
                    let next = unsafe { (*old).next.load(Ordering::Acquire) };
                    debug_assert!(!next.is_null());
                    c.block = next;
                    c.head = (c.head + 1) & INDEX_MASK;
                    // SAFETY: every slot of `old` was published and read, so
                    // no producer touches it any more and no item is left in
                    // it; `tail_block` moved on before the last slot was
                    // published.
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
                self.release(unreleased.take(), None);
                return Drained {
                    items,
                    bytes: total as usize,
                    idle: false,
                };
            }
            // Nothing published at `head`: arm the wakeup (module docs).
            if self.release(unreleased.take(), Some(c.head)) {
                return Drained {
                    items,
                    bytes: total as usize,
                    idle: true,
                };
            }
            // A producer reserved slot `head` and has not published it.
            match slot
                .state
                .compare_exchange(EMPTY, PARKED, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) | Err(PARKED) => {
                    return Drained {
                        items,
                        bytes: total as usize,
                        idle: true,
                    };
                }
                // Published meanwhile: keep draining.
                Err(_) => continue,
            }
        }
    }

    /// Gives back `bytes`; with `idle_at = Some(head)`, also sets `IDLE` if
    /// nothing is reserved beyond `head`. Returns whether it set `IDLE`.
    fn release(&self, bytes: u64, idle_at: Option<u64>) -> bool {
        let mut st = self.state.load(Ordering::Acquire);
        loop {
            let left = (st & BYTES_MASK).saturating_sub(bytes);
            let mut new = (st & !BYTES_MASK) | left;
            if left <= self.low {
                new &= !UNWRITABLE;
            }
            let idle = idle_at == Some(index_of(st));
            if idle {
                new |= IDLE;
            }
            if new == st {
                return idle;
            }
            match self
                .state
                .compare_exchange_weak(st, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return idle,
                Err(cur) => st = cur,
            }
        }
    }

    /// Resets a block the consumer left and keeps it as the spare.
    ///
    /// # Safety
    /// Every slot of `b` was published and read; nothing else references it.
    unsafe fn recycle(&self, b: *mut Block<T>) {
        // SAFETY: exclusive access (caller's guarantee).
        let block = unsafe { &*b };
        for s in &block.slots {
            s.state.store(EMPTY, Ordering::Relaxed);
        }
        block.next.store(ptr::null_mut(), Ordering::Relaxed);
        // The Release in `put_spare` publishes the reset to the producer
        // that takes the block.
        self.put_spare(b);
    }

    /// Closes the queue: every later push fails with
    /// [`PushError::Closed`], and the messages queued now are dropped (freed
    /// through their origin). Returns how many were dropped.
    ///
    /// A push that reserved its slot just before the close may publish its
    /// message after this returns; that message is returned by a later
    /// drain or freed when the queue drops, so nothing leaks.
    ///
    /// If a message's `Drop` panics, the panic propagates (the queue stays
    /// closed); the bytes of the messages dropped are given back, and the
    /// messages after it stay queued until a drain or the queue's drop.
    ///
    /// ```
    /// let pool = netbuf::MessagePool::new();
    /// let q: netbuf::SendQueue = netbuf::SendQueue::new();
    /// q.try_push(pool.message_from(b"bye").unwrap().into()).unwrap();
    /// assert_eq!(q.close(), 1);
    /// assert_eq!(pool.stats().live_messages, 0);
    /// assert!(q.try_push(pool.message_from(b"late").unwrap().into()).is_err());
    /// ```
    pub fn close(&self) -> usize {
        self.state.fetch_or(CLOSED, Ordering::AcqRel);
        self.drain_inner(usize::MAX, false, drop).items
    }
}

/// Internals for the loom models beside the code
/// (`loom_models/send_queue.rs`).
#[cfg(all(test, loom))]
impl<T: QueueItem> SendQueue<T> {
    /// Address of the first block (0: none yet).
    pub(crate) fn first_block_addr(&self) -> usize {
        self.first.load(Ordering::Acquire) as usize
    }

    /// Address of the block producers reserve in (0: none yet).
    pub(crate) fn tail_block_addr(&self) -> usize {
        self.tail_block.load(Ordering::Acquire) as usize
    }

    /// Address of the spare block (0: none).
    pub(crate) fn spare_addr(&self) -> usize {
        self.spare.load(Ordering::Acquire) as usize
    }

    /// Blocks from the consumer's (or the first, if it never drained) to
    /// the tail block, both included. Only while no push is in progress.
    pub(crate) fn blocks_in_use(&self) -> usize {
        let c = self.consumer.lock();
        let mut b = if c.block.is_null() {
            self.first.load(Ordering::Acquire)
        } else {
            c.block
        };
        if b.is_null() {
            return 0;
        }
        let tail = self.tail_block.load(Ordering::Acquire);
        let mut n = 1;
        while b != tail {
            // SAFETY: with no push in progress, every block from the
            // consumer's to the tail is linked and alive (only the consumer,
            // whose lock we hold, recycles blocks).
            b = unsafe { (*b).next.load(Ordering::Acquire) };
            n += 1;
        }
        n
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
        let (head, mut block) = {
            let c = self.consumer.lock();
            (c.head, c.block)
        };
        if block.is_null() {
            // The consumer never drained: start from the first block, if a
            // push ever installed one.
            block = self.first.load(Ordering::Acquire);
            if block.is_null() {
                return;
            }
        }
        let end = index_of(self.state.load(Ordering::Acquire));
        // No producer is running (we are exclusive), so every reserved slot
        // between head and the tail index is published.
        let mut rest = Remains { head, end, block };
        // SAFETY: `block` is the live block holding `head`, the items from
        // `head` to `end` were never read, and the queue is gone, so nothing
        // else references these blocks.
        unsafe { rest.drop_all() };
    }
}

/// What the drop of a [`SendQueue`] still has to free: the items from
/// `head` to `end` and the blocks holding them (from `block` on).
struct Remains<T> {
    head: u64,
    end: u64,
    block: *mut Block<T>,
}

impl<T> Remains<T> {
    /// Moves the item at `head` out and steps past it, freeing each block
    /// it leaves; `None` at `end`.
    ///
    /// # Safety
    /// As for [`drop_all`](Self::drop_all).
    unsafe fn next(&mut self) -> Option<T> {
        if self.head == self.end {
            return None;
        }
        let off = offset_of(self.head);
        // SAFETY: `block` is the live block holding `head` (caller's
        // guarantee, kept below when stepping to the next block).
        let slot = unsafe { &(*self.block).slots[off] };
        if slot.state.load(Ordering::Acquire) != READY {
            // Cannot happen (a push cannot stop between reserving and
            // publishing); leak rather than read an unwritten slot.
            self.end = self.head;
            return None;
        }
        // SAFETY: a published item, read exactly once: `head` moves past it.
        let item = slot.item.with(|p| unsafe { ptr::read(p).assume_init() });
        self.head = (self.head + 1) & INDEX_MASK;
        if off + 1 == BLOCK_CAP {
            // SAFETY: the last slot was published, so `next` is linked.
            let next = unsafe { (*self.block).next.load(Ordering::Acquire) };
            // SAFETY: all of the block's items were read; nothing else
            // references it.
            unsafe { Block::free(self.block) };
            self.block = next;
            self.head = (self.head + 1) & INDEX_MASK;
        }
        Some(item)
    }

    /// Drops every remaining item and frees the blocks. If an item's `Drop`
    /// panics, the rest are still dropped and freed while unwinding (a
    /// second panic aborts, as in `Vec`).
    ///
    /// # Safety
    /// `block` is the live block holding `head`; the slots from `head` to
    /// `end` hold items nobody else will read; nothing else references
    /// `block` or the blocks after it.
    unsafe fn drop_all(&mut self) {
        /// Carries on with the rest if an item's `Drop` panicked.
        struct OnUnwind<'a, T>(&'a mut Remains<T>);
        impl<T> Drop for OnUnwind<'_, T> {
            fn drop(&mut self) {
                // SAFETY: the caller's guarantees, still held by `Remains`.
                unsafe { self.0.drop_all() };
            }
        }
        // SAFETY: the caller's guarantees.
        while let Some(item) = unsafe { self.next() } {
            let guard = OnUnwind(self);
            drop(item);
            mem::forget(guard);
        }
        if !self.block.is_null() {
            // SAFETY: every item of the block was read; nothing else
            // references it, and `block` is cleared so it is freed once.
            unsafe { Block::free(mem::replace(&mut self.block, ptr::null_mut())) };
        }
    }
}

/// Bytes of the items a drain handed out that it has not given back to the
/// state word yet. A drain that ends gives them back itself, in the one RMW
/// that may also arm the wakeup ([`take`](Self::take)); if user code panics
/// first (the `drain_each` callback, an item's `Drop` in `close`,
/// `byte_size`), the drop of this guard gives them back while unwinding.
struct Unreleased<'a, T: QueueItem> {
    queue: &'a SendQueue<T>,
    bytes: u64,
}

impl<T: QueueItem> Unreleased<'_, T> {
    /// The bytes, for the caller to release; the guard then holds none.
    #[inline]
    fn take(&mut self) -> u64 {
        mem::take(&mut self.bytes)
    }
}

impl<T: QueueItem> Drop for Unreleased<'_, T> {
    #[inline]
    fn drop(&mut self) {
        if self.bytes != 0 {
            self.queue.release(self.bytes, None);
        }
    }
}

/// A [`SendQueue::push_batch`] in progress, settled when dropped, however
/// the push ends (a panic in `byte_size` or the notifier included): the
/// items moved into the queue (the first `taken`) are removed from the
/// caller's vector, the others stay in it, in order, and the block taken
/// for linking, if not linked, becomes the spare.
struct BatchGuard<'a, T: QueueItem> {
    queue: &'a SendQueue<T>,
    /// The caller's vector. Its length is 0 while the guard lives, so the
    /// items are never dropped twice, even if the guard were leaked.
    batch: &'a mut Vec<T>,
    /// The vector's length when the push started.
    len: usize,
    /// Items moved out of the front of the vector (into the queue).
    taken: usize,
    /// A reset block taken for linking, not linked yet (or null).
    next: *mut Block<T>,
}

impl<'a, T: QueueItem> BatchGuard<'a, T> {
    fn new(queue: &'a SendQueue<T>, batch: &'a mut Vec<T>) -> Self {
        let len = batch.len();
        // SAFETY: 0 <= capacity, and no element is exposed uninitialised:
        // the items stay in the buffer, owned by the guard.
        unsafe { batch.set_len(0) };
        BatchGuard {
            queue,
            batch,
            len,
            taken: 0,
            next: ptr::null_mut(),
        }
    }

    /// The items not moved out yet.
    #[inline]
    fn rest(&self) -> &[T] {
        // SAFETY: the buffer's items `taken..len` are initialised and not
        // moved out; `taken <= len <= capacity`.
        unsafe { slice::from_raw_parts(self.batch.as_ptr().add(self.taken), self.len - self.taken) }
    }

    /// Moves the next item out of the vector. Runs between a reservation
    /// and its publication, so it must not panic: the caller checked
    /// `taken < len` (it reserved at most `rest().len()` slots).
    #[inline]
    fn take(&mut self) -> T {
        debug_assert!(self.taken < self.len);
        // SAFETY: item `taken` is initialised and not moved out yet; it is
        // counted as taken, so it is neither read nor dropped again.
        let item = unsafe { ptr::read(self.batch.as_ptr().add(self.taken)) };
        self.taken += 1;
        item
    }
}

impl<T: QueueItem> Drop for BatchGuard<'_, T> {
    fn drop(&mut self) {
        self.queue
            .put_spare(mem::replace(&mut self.next, ptr::null_mut()));
        let rest = self.len - self.taken;
        if self.taken != 0 && rest != 0 {
            let p = self.batch.as_mut_ptr();
            // SAFETY: the buffer's items `taken..len` are initialised and
            // owned by the guard; `copy` handles the overlap. The items
            // before them were moved out, so they are overwritten, not
            // dropped.
            unsafe { ptr::copy(p.add(self.taken), p, rest) };
        }
        // SAFETY: the first `rest` items of the buffer are initialised and
        // owned by nobody else now.
        unsafe { self.batch.set_len(rest) };
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
