//! What goes in ([`QueueItem`]) and what a drain reports ([`Drained`]).

use crate::message::{Message, Outgoing, SharedMessage};
use crate::pool::header::HEADER_SIZE;

/// An item a [`SendQueue`](super::SendQueue) can hold: it reports the bytes
/// it will put on the wire, which is what the queue's bound counts.
///
/// `byte_size` must return the same value for as long as the item is
/// queued (it is read once on push and once on drain). A wrong
/// implementation can only skew the accounting (it saturates), never cause
/// memory unsafety.
pub trait QueueItem: Send {
    /// Bytes this item accounts for (without the queue's per-entry overhead).
    fn byte_size(&self) -> usize;

    /// Bytes of memory this item keeps alive while queued: a pooled
    /// message's whole block (a 1 KiB message in a 4 KiB block pins
    /// 4 KiB), a vector's capacity. What a queue built with
    /// [`count_pinned`](crate::SendQueueBuilder::count_pinned) counts
    /// instead of [`byte_size`](Self::byte_size), so that its bound is a
    /// bound on memory. Same stability rule as `byte_size`. Default:
    /// `byte_size`.
    fn pinned_bytes(&self) -> usize {
        self.byte_size()
    }
}

/// A pool's message, owned or shared, pins its whole block: the payload
/// capacity and the header.
macro_rules! pooled_message_item {
    ($($(#[$doc:meta])* $ty:ty),+) => {$(
        $(#[$doc])*
        impl QueueItem for $ty {
            #[inline]
            fn byte_size(&self) -> usize {
                self.len()
            }
            #[inline]
            fn pinned_bytes(&self) -> usize {
                self.capacity() + HEADER_SIZE
            }
        }
    )+};
}

pooled_message_item!(
    Message,
    /// A shared message pins its whole block in each queue it is in (counted
    /// in full by each, though the queues share it: a bound, not a sum).
    SharedMessage
);

impl QueueItem for Outgoing {
    #[inline]
    fn byte_size(&self) -> usize {
        self.len()
    }
    #[inline]
    fn pinned_bytes(&self) -> usize {
        match self {
            Outgoing::Owned(m) => m.pinned_bytes(),
            Outgoing::Shared(m) => m.pinned_bytes(),
        }
    }
}

impl QueueItem for Vec<u8> {
    #[inline]
    fn byte_size(&self) -> usize {
        self.len()
    }
    #[inline]
    fn pinned_bytes(&self) -> usize {
        self.capacity()
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

/// What one drain call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Drained {
    /// Messages taken.
    pub items: usize,
    /// Bytes released (entry overhead included).
    pub bytes: usize,
    /// `true`: the queue was found empty and the wakeup is armed, so the
    /// next push will call [`Notify::notify`](crate::Notify::notify); the
    /// consumer may sleep (unless [`closed`](Self::closed)).
    /// `false`: the drain stopped at `max`; messages may remain, drain
    /// again without waiting.
    pub idle: bool,
    /// `true`: the queue is closed or shut down and nothing is left to
    /// drain, now or ever (no push that reserved before the close is still
    /// unpublished): the consumer can end. Only set with `idle`; a drain
    /// that stops at `max` reports `false` even if it took the last
    /// message, and the next drain reports `true`.
    pub closed: bool,
}
