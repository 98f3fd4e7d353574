//! [`SendQueueBuilder`]: the limit, the per-entry overhead, the
//! writability watermarks and the consumer's wakeup.

use core::fmt;
use core::ptr;

use super::block::{Block, Cursor, Slot};
use super::consumer::ConsumerLock;
use super::state::{IDLE, MAX_LIMIT, START_INDEX, with_index};
use super::waiters::Waiters;
use super::{QueueItem, SendQueue};
use crate::send::notify::Notify;
use crate::sync::{AtomicPtr, AtomicU64};

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
    pinned: bool,
}

impl fmt::Debug for SendQueueBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendQueueBuilder")
            .field("limit", &self.limit)
            .field("entry_overhead", &self.entry_overhead)
            .field("watermarks", &self.watermarks)
            .field("notify", &self.notify.is_some())
            .field("pinned", &self.pinned)
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
            pinned: false,
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

    /// `true`: the bound counts the memory each item keeps alive
    /// ([`QueueItem::pinned_bytes`]: a pooled message's whole block) instead
    /// of its length, so that the limit bounds memory, not bytes to send
    /// (default `false`).
    ///
    /// ```
    /// let pool = netbuf::MessagePool::new();
    /// let q: netbuf::SendQueue<netbuf::Message> =
    ///     netbuf::SendQueue::builder().entry_overhead(0).count_pinned(true).build();
    /// q.try_push(pool.message_from(&[1; 1000]).unwrap()).unwrap();
    /// assert_eq!(q.queued_bytes(), 4096 + 32); // a 4 KiB block and its header
    /// ```
    pub fn count_pinned(mut self, pinned: bool) -> Self {
        self.pinned = pinned;
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

    /// The consumer's wakeup (default: none; the consumer polls). A
    /// [`WakerNotify`](crate::WakerNotify) for an async consumer
    /// ([`SendQueue::poll_drain_each`]), a [`CondvarNotify`](crate::CondvarNotify)
    /// for a blocking one, or a mio waker for an event loop.
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
        // tail index and the consumer's head sit on a boundary position
        // with `first` null, as after `release_idle_blocks`: the first push
        // installs a block (see `SendQueue::install_block`).
        let first: *mut Block<T> = ptr::null_mut();
        SendQueue {
            state: AtomicU64::new(with_index(IDLE, START_INDEX)),
            tail_block: AtomicPtr::new(first),
            first: AtomicPtr::new(first),
            spare: AtomicPtr::new(ptr::null_mut()),
            limit,
            overhead,
            pinned: self.pinned,
            // Both at most `limit`, itself at most `MAX_LIMIT` < 2^32.
            high: high as u32,
            low: low as u32,
            notify: self.notify,
            waiters: Waiters::new(),
            consumer: ConsumerLock::new(Cursor {
                head: START_INDEX,
                block: first,
            }),
        }
    }
}
