//! [`QueueSink`]: a [`Sink`] into a [`SendQueue`], waiting for room under
//! its byte bound.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Sink;
use netbuf::{PushError, QueueItem, SendQueue};

/// Why a [`QueueSink`] refused an item: the queue is closed or shut down
/// (the item is given back), or the item alone exceeds the queue's limit.
pub type SinkError<T> = PushError<T>;

/// A [`Sink`] into a [`SendQueue`]: `poll_ready` / `poll_flush` wait for
/// room under the byte bound (woken by the consumer's release, no lost
/// wakeup), so `sink.send(item).await` applies backpressure to the
/// producer instead of failing with `Full`. It holds at most one item
/// while waiting; `poll_close` flushes it and shuts the queue down
/// gracefully (the consumer drains what is queued, then ends).
///
/// For a single item without the `Sink` machinery, await
/// [`SendQueue::send`] directly.
///
/// ```
/// use futures::SinkExt;
/// use netbuf_tokio::QueueSink;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let queue: std::sync::Arc<netbuf::SendQueue<Vec<u8>>> =
///     std::sync::Arc::new(netbuf::SendQueue::builder().limit(1 << 10).build());
/// let mut sink = QueueSink::new(queue.clone());
/// sink.send(b"hello".to_vec()).await.unwrap();
/// assert!(queue.queued_bytes() > 0);
/// # }
/// ```
#[derive(Debug)]
pub struct QueueSink<T: QueueItem> {
    queue: Arc<SendQueue<T>>,
    pending: Option<T>,
}

impl<T: QueueItem> QueueSink<T> {
    /// A sink into `queue`.
    pub fn new(queue: Arc<SendQueue<T>>) -> Self {
        QueueSink {
            queue,
            pending: None,
        }
    }

    /// The queue.
    pub fn queue(&self) -> &Arc<SendQueue<T>> {
        &self.queue
    }

    fn poll_push_pending(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PushError<T>>> {
        let Some(item) = self.pending.take() else {
            return Poll::Ready(Ok(()));
        };
        if !self.queue.fits_when_empty(&item) {
            // Waiting would never end: refuse it now.
            return Poll::Ready(self.queue.try_push(item));
        }
        match self.queue.try_push_or_wait(item, cx.waker()) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(PushError::Full { item, .. }) if !self.queue.is_closed() => {
                // Registered: the consumer's next release wakes us.
                self.pending = Some(item);
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl<T: QueueItem + Unpin> Sink<T> for QueueSink<T> {
    type Error = SinkError<T>;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().poll_push_pending(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: T) -> Result<(), Self::Error> {
        let this = self.get_mut();
        debug_assert!(this.pending.is_none(), "start_send without poll_ready");
        match this.queue.try_push(item) {
            Ok(()) => Ok(()),
            // No room now: hold it; poll_ready / poll_flush wait for room.
            Err(PushError::Full { item, .. }) => {
                this.pending = Some(item);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().poll_push_pending(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let this = self.get_mut();
        match this.poll_push_pending(cx) {
            Poll::Ready(r) => {
                this.queue.shutdown();
                Poll::Ready(r)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
