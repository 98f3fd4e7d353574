//! Why a push was refused: [`PushError`] (one message, which comes back)
//! and [`BatchError`] (a batch, whose rest stays with the caller).

use core::fmt;

/// Why [`SendQueue::try_push`](super::SendQueue::try_push) refused a
/// message; the message comes back.
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

/// Why [`SendQueue::push_batch`](super::SendQueue::push_batch) stopped
/// early. The messages not pushed are left in the caller's vector, in
/// order.
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
