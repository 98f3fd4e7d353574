//! [`SendFuture`]: a push that waits for space.

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use super::waiters::{Share, WaitSlot};
use super::{PushError, QueueItem, SendQueue, Waited};

/// The future of [`SendQueue::send`]: queues its item once the byte bound
/// admits it.
///
/// Resolves to `Ok(())` once the item is queued, to
/// [`PushError::Closed`] if the queue is closed or shut down (before or
/// while waiting), and to [`PushError::Full`] at the first poll if the item
/// can never fit (its entry size exceeds the limit). The item comes back in
/// the error.
///
/// **Cancel-safe**: dropping a pending `SendFuture` removes its waker from
/// the queue and drops the item it holds; nothing was queued. While it is
/// pending, its waker is woken by every release of bytes (and by a close):
/// each waiting producer then retries, in no particular order, so there is
/// no fairness between producers (each producer's own items stay in
/// order, as it awaits one send before the next).
#[must_use = "futures do nothing unless polled"]
pub struct SendFuture<'a, T: QueueItem> {
    queue: &'a SendQueue<T>,
    /// The item, until it is queued or handed back.
    item: Option<T>,
    /// This future's entry in the queue's waiter list, if it registered.
    slot: Option<WaitSlot>,
}

impl<'a, T: QueueItem> SendFuture<'a, T> {
    pub(super) fn new(queue: &'a SendQueue<T>, item: T) -> Self {
        SendFuture {
            queue,
            item: Some(item),
            slot: None,
        }
    }
}

// The item is never pinned: it is moved in and out by value.
impl<T: QueueItem> Unpin for SendFuture<'_, T> {}

impl<T: QueueItem> Future for SendFuture<'_, T> {
    type Output = Result<(), PushError<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let item = this
            .item
            .take()
            .expect("SendFuture polled after completion");
        // `Pushed` and `Closed` take our registration back.
        Poll::Ready(
            match this
                .queue
                .push_or_wait(item, cx.waker(), &mut this.slot, Share::Own)
            {
                Waited::Registered { item, .. } => {
                    this.item = Some(item);
                    return Poll::Pending;
                }
                Waited::Pushed => Ok(()),
                Waited::Closed(item) => Err(PushError::Closed(item)),
                Waited::TooLarge(item) => Err(this.queue.full(item)),
            },
        )
    }
}

impl<T: QueueItem> Drop for SendFuture<'_, T> {
    fn drop(&mut self) {
        // Cancelled: no waker of ours may stay in the list. The item, if
        // still held, is dropped with the future.
        self.queue.deregister(&mut self.slot);
    }
}

impl<T: QueueItem> fmt::Debug for SendFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendFuture")
            .field("pending", &self.item.is_some())
            .field("registered", &self.slot.is_some())
            .finish()
    }
}
