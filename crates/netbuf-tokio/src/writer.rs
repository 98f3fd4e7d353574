//! [`FrameWriter`]: drains a [`SendQueue`] into any `AsyncWrite` through a
//! netbuf [`Flusher`].

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use netbuf::{
    FlushError, FlushMetrics, Flushed, Flusher, GatherThreshold, OutFrame, SendQueue,
    SendQueueBuilder, WakerNotify,
};
use tokio::io::AsyncWrite;

use crate::io::Polled;

/// Frames drained per queue visit (then the flusher writes).
const DRAIN_BATCH: usize = 64;
/// The flusher holds at most about this much before the writer stops
/// draining: a slow peer pushes back on the queue's byte bound instead of
/// growing the send buffer.
pub const DEFAULT_MAX_BUFFERED: usize = 256 << 10;
/// Send-buffer memory the writer keeps once everything was written and
/// its queue is empty; a buffer grown past it by a burst goes back to the
/// allocator (see [`FrameWriter::keep_buffered`]).
pub const DEFAULT_KEEP_BUFFERED: usize = 32 << 10;

/// A [`SendQueue`] of frames whose consumer is an async task: the queue's
/// consumer notification is a [`WakerNotify`] that the [`FrameWriter`]
/// registers its task with.
///
/// ```
/// let (queue, writer) = netbuf_tokio::outbox(netbuf::SendQueue::builder().limit(1 << 20));
/// # drop((queue, writer));
/// ```
pub fn outbox(builder: SendQueueBuilder) -> (Arc<SendQueue<OutFrame>>, WriterHandle) {
    let wake = Arc::new(WakerNotify::new());
    let queue = Arc::new(builder.notify(wake.clone()).build());
    (queue.clone(), WriterHandle { queue, wake })
}

/// The consumer's half of an [`outbox`]: turn it into a [`FrameWriter`]
/// over a connection's write half.
#[derive(Debug)]
pub struct WriterHandle {
    queue: Arc<SendQueue<OutFrame>>,
    wake: Arc<WakerNotify>,
}

impl WriterHandle {
    /// A writer for `io` with `flusher`'s gather threshold. If `io` does
    /// not implement vectored writes efficiently
    /// (`!io.is_write_vectored()`), every frame takes the linear path.
    pub fn writer<W: AsyncWrite + Unpin>(self, io: W, mut flusher: Flusher) -> FrameWriter<W> {
        if !io.is_write_vectored() {
            flusher.set_threshold(GatherThreshold::Never);
        }
        FrameWriter {
            io,
            flusher,
            queue: self.queue,
            wake: self.wake,
            max_buffered: DEFAULT_MAX_BUFFERED,
            keep_buffered: DEFAULT_KEEP_BUFFERED,
            draining_done: false,
        }
    }
}

/// Why a [`FrameWriter`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Writing to the connection failed (or it accepted no bytes).
    #[error(transparent)]
    Flush(#[from] FlushError),
    /// Flushing or shutting down the `AsyncWrite` failed.
    #[error("shutdown failed: {0}")]
    Io(#[from] io::Error),
}

/// Drains its queue into an `AsyncWrite`: small frames are coalesced into
/// one buffer, bodies at or above the gather threshold leave through
/// `poll_write_vectored` without a copy and are freed once their last byte
/// is written; partial writes resume at the exact byte. Await
/// [`run`](Self::run) (or spawn it): it ends once the queue is shut down
/// ([`SendQueue::shutdown`]) and everything queued was written (then it
/// shuts the write half down), or closed ([`SendQueue::close`]), or on the
/// first write error (which closes the queue). The queue's producers never wait on the socket: they
/// wait, if at all, for room under the queue's byte bound.
#[derive(Debug)]
pub struct FrameWriter<W> {
    io: W,
    flusher: Flusher,
    queue: Arc<SendQueue<OutFrame>>,
    wake: Arc<WakerNotify>,
    max_buffered: usize,
    keep_buffered: usize,
    draining_done: bool,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// Stops draining while the flusher holds this many bytes (default
    /// [`DEFAULT_MAX_BUFFERED`]).
    pub fn max_buffered(mut self, bytes: usize) -> Self {
        self.max_buffered = bytes;
        self
    }

    /// Once everything was written and the queue is empty, gives the send
    /// buffer back to the allocator if it holds more than this (default
    /// [`DEFAULT_KEEP_BUFFERED`]): a burst grows it up to
    /// [`max_buffered`](Self::max_buffered), and a server with many
    /// connections should not keep that per connection after the burst (a
    /// fan-out to 256 subscribers kept 92 MB). A small buffer is kept, so a
    /// request-reply connection does not allocate per reply. `usize::MAX`
    /// keeps everything.
    pub fn keep_buffered(mut self, bytes: usize) -> Self {
        self.keep_buffered = bytes;
        self
    }

    /// Bytes of send buffer the writer holds now.
    pub fn buffered_capacity(&self) -> usize {
        self.flusher.allocated()
    }

    /// What the flusher did so far (large-path ratio, copies, writes).
    pub fn metrics(&self) -> FlushMetrics {
        self.flusher.metrics()
    }

    /// Writes until the queue is shut down and drained (or closed), then
    /// shuts the write half down. Returns the I/O object and the flusher's
    /// metrics.
    pub async fn run(mut self) -> Result<(W, FlushMetrics), WriteError> {
        std::future::poll_fn(|cx| self.poll_run(cx)).await?;
        Ok((self.io, self.flusher.metrics()))
    }

    /// [`run`](Self::run) as a poll function. On an error the queue is
    /// [closed](SendQueue::close): its producers get
    /// [`PushError::Closed`](netbuf::PushError::Closed) instead of filling a
    /// queue nobody drains, and what was queued is dropped.
    ///
    /// Each round moves queued frames into the flusher until it holds
    /// [`max_buffered`](Self::max_buffered) bytes or the queue is empty,
    /// **then** writes: one write (or `writev`) per batch of frames, not per
    /// drain of 64 frames (64 frames of 1 KiB were four times the write calls
    /// of one 256 KiB batch).
    pub fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WriteError>> {
        let r = self.poll_write_queue(cx);
        if let Poll::Ready(Err(_)) = r {
            self.queue.close();
        }
        r
    }

    fn poll_write_queue(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WriteError>> {
        loop {
            // The queue was found empty with the wakeup armed (our waker
            // registered before that drain): the next push wakes this task.
            let mut idle = false;
            while !self.draining_done && self.flusher.pending_bytes() < self.max_buffered {
                // Register before draining: a drain that finds the queue
                // empty arms the wakeup, and the next push wakes this task.
                self.wake.register(cx.waker());
                let flusher = &mut self.flusher;
                let drained = self.queue.drain_each(DRAIN_BATCH, |f| flusher.push(f));
                if drained.closed {
                    self.draining_done = true;
                } else if drained.idle {
                    idle = true;
                    break;
                }
            }
            if !self.flusher.is_empty() {
                let mut w = Polled {
                    io: Pin::new(&mut self.io),
                    cx,
                };
                match self.flusher.flush(&mut w)? {
                    // Written: drain what came meanwhile (or sleep below).
                    Flushed::Done => {}
                    // The AsyncWrite registered our waker for writability.
                    // With room left in the flusher and frames still
                    // queued, take them now (the next write goes out as
                    // soon as the socket takes it); otherwise wait.
                    Flushed::WouldBlock => {
                        if idle
                            || self.draining_done
                            || self.flusher.pending_bytes() >= self.max_buffered
                        {
                            return Poll::Pending;
                        }
                        continue;
                    }
                }
            }
            if self.draining_done {
                return self.poll_finish(cx);
            }
            if idle {
                // Everything written, the queue empty and armed.
                if self.flusher.allocated() > self.keep_buffered {
                    self.flusher.release_memory();
                }
                return Poll::Pending;
            }
        }
    }

    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WriteError>> {
        if !self.flusher.is_empty() {
            return Poll::Pending;
        }
        let mut io = Pin::new(&mut self.io);
        match io.as_mut().poll_flush(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
            Poll::Pending => return Poll::Pending,
        }
        io.poll_shutdown(cx).map_err(WriteError::from)
    }
}
