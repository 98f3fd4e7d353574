//! [`FrameReader`]: frames out of any `AsyncRead`, through a netbuf
//! receive buffer and any framing.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use allocator_api2::alloc::{Allocator, Global};
use futures::Stream;
use netbuf::framing::{DecodeError, Framing};
use netbuf::{ChainedBuffer, FrameSource, LinearBuffer, Message, MessagePool};
use tokio::io::AsyncRead;
use tokio::task::coop;

use crate::io::Polled;

/// Why reading frames stopped: the connection failed, or its bytes are not
/// a valid frame stream (the session is to be closed; nothing else is
/// affected).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The `AsyncRead` failed.
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
    /// The framing rejected the stream (also: the stream ended mid-frame).
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Bytes a [`FrameReader`] fill counts as one unit of tokio's coop budget
/// on top of the unit every fill costs (8 KiB, the read size of
/// `tokio_util`'s `Framed`, so a reader yields after about as many bytes
/// as a `Framed` would: 128 units, 1 MiB).
pub const COOP_UNIT_BYTES: usize = 8 << 10;

/// Spends up to `units` of the current task's coop budget, stopping before
/// it runs out (the task's next budgeted poll then yields).
fn spend_budget(cx: &mut Context<'_>, units: usize) {
    for _ in 0..units {
        if !coop::has_budget_remaining() {
            return;
        }
        match coop::poll_proceed(cx) {
            Poll::Ready(restore) => restore.made_progress(),
            Poll::Pending => return,
        }
    }
}

/// The header type of a receive buffer's framing.
pub type HeaderOf<S> = <<S as FrameSource>::Framing as Framing>::Header;

/// Frames from an `AsyncRead`: a [`Stream`] of `(header, body)` with the
/// body as a pooled [`Message`] (copied once out of the receive buffer, or
/// handed over without a copy when a [`ChainedBuffer`] received a large
/// body into a block of its own), and a borrowed-frame API
/// ([`fill`](Self::fill) + [`buffer_mut`](Self::buffer_mut)) for handlers
/// that only read the body.
///
/// Reads go straight into the buffer's free space (no intermediate
/// `BytesMut`); the body limit of the framing is enforced before any
/// allocation.
///
/// ```
/// use futures::StreamExt;
/// use netbuf::MessagePool;
/// use netbuf::framing::{HeaderBytes, LengthDelimited, encode_frame_into};
/// use netbuf_tokio::FrameReader;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let framing = LengthDelimited::default(); // 4-byte big-endian length
/// let mut wire = Vec::new();
/// encode_frame_into(&framing, &mut wire, &HeaderBytes::EMPTY, b"hello").unwrap();
/// let mut frames = FrameReader::linear(&wire[..], framing, MessagePool::new());
/// let (_header, body) = frames.next().await.unwrap().unwrap();
/// assert_eq!(&body[..], b"hello");
/// assert!(frames.next().await.is_none()); // clean end of stream
/// # }
/// ```
#[derive(Debug)]
pub struct FrameReader<R, S, A: Allocator + Send + Sync + 'static = Global> {
    io: R,
    buf: S,
    pool: MessagePool<A>,
    done: bool,
}

impl<R, F: Framing, A: Allocator + Send + Sync + 'static> FrameReader<R, LinearBuffer<F>, A> {
    /// A reader with a [`LinearBuffer`] (16 KiB or one maximal frame).
    pub fn linear(io: R, framing: F, pool: MessagePool<A>) -> Self {
        FrameReader::new(io, LinearBuffer::with_framing(framing), pool)
    }
}

impl<R, F: Framing, A: Allocator + Send + Sync + 'static> FrameReader<R, ChainedBuffer<F, A>, A> {
    /// A reader with a [`ChainedBuffer`] of `pool`'s blocks: an idle
    /// connection holds no buffer memory.
    pub fn chained(io: R, framing: F, pool: MessagePool<A>) -> Self {
        FrameReader::new(io, ChainedBuffer::with_framing(pool.clone(), framing), pool)
    }
}

impl<R, S: FrameSource, A: Allocator + Send + Sync + 'static> FrameReader<R, S, A> {
    /// A reader over `io` decoding with `buf`; bodies come from `pool`.
    pub fn new(io: R, buf: S, pool: MessagePool<A>) -> Self {
        FrameReader {
            io,
            buf,
            pool,
            done: false,
        }
    }

    /// The receive buffer, for the borrowed-frame API:
    /// `reader.buffer_mut().next_frame()`.
    pub fn buffer_mut(&mut self) -> &mut S {
        &mut self.buf
    }

    /// The receive buffer.
    pub fn buffer(&self) -> &S {
        &self.buf
    }

    /// The I/O object.
    pub fn get_ref(&self) -> &R {
        &self.io
    }

    /// The I/O object, mutably (e.g. to set socket options).
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.io
    }

    /// The I/O object and the buffer (with any bytes not yet decoded).
    pub fn into_parts(self) -> (R, S) {
        (self.io, self.buf)
    }
}

impl<R: AsyncRead + Unpin, S: FrameSource, A: Allocator + Send + Sync + 'static>
    FrameReader<R, S, A>
{
    /// Reads once into the buffer: the bytes read, `0` at end of stream.
    /// With [`buffer_mut`](Self::buffer_mut) this is the borrowed-frame
    /// API, for handlers that only look at a body:
    ///
    /// ```
    /// # use netbuf::{FrameSource, MessagePool};
    /// # use netbuf::framing::{HeaderBytes, LengthDelimited, encode_frame_into};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), netbuf_tokio::ReadError> {
    /// # let framing = LengthDelimited::default();
    /// # let mut wire = Vec::new();
    /// # encode_frame_into(&framing, &mut wire, &HeaderBytes::EMPTY, b"hi").unwrap();
    /// let mut reader = netbuf_tokio::FrameReader::linear(&wire[..], framing, MessagePool::new());
    /// let mut total = 0;
    /// while reader.fill().await? > 0 {
    ///     while let Some(frame) = reader.buffer_mut().next_frame()? {
    ///         total += frame.body.len(); // borrowed from the buffer: no copy
    ///     }
    /// }
    /// reader.buffer().finish()?;
    /// assert_eq!(total, 2);
    /// # Ok(()) }
    /// ```
    pub async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }

    /// [`fill`](Self::fill) as a poll function.
    ///
    /// Cooperative under tokio: a fill spends one unit of the task's
    /// [coop budget](tokio::task::coop) plus one per [`COOP_UNIT_BYTES`]
    /// read (as if the bytes came in `COOP_UNIT_BYTES` reads), and returns
    /// `Pending` (the task yields) once the budget is spent. A buffer of a
    /// megabyte or more brings hundreds of frames per read: without this a
    /// reader whose handlers push into other connections' queues could run
    /// for many reads before the tasks draining those queues (woken on the
    /// same worker) get a turn, and the queues would overflow. Outside a
    /// tokio runtime nothing is counted.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let coop = std::task::ready!(coop::poll_proceed(cx));
        let mut polled = Polled {
            io: Pin::new(&mut self.io),
            cx,
        };
        loop {
            match self.buf.read_from(&mut polled) {
                Ok(n) => {
                    coop.made_progress();
                    spend_budget(polled.cx, n / COOP_UNIT_BYTES);
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

// The pool handle is a pointer; nothing in the reader is pinned structurally.
impl<R: Unpin, S: Unpin, A: Allocator + Send + Sync + 'static> Unpin for FrameReader<R, S, A> {}

impl<R: AsyncRead + Unpin, S: FrameSource + Unpin, A: Allocator + Send + Sync + 'static> Stream
    for FrameReader<R, S, A>
{
    type Item = Result<(HeaderOf<S>, Message), ReadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match this.buf.next_message(&this.pool) {
                Ok(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
                Ok(None) => {}
                Err(e) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
            match this.poll_fill(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    this.done = true;
                    // End of stream: clean only between frames.
                    return Poll::Ready(this.buf.finish().err().map(|e| Err(e.into())));
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }
}
