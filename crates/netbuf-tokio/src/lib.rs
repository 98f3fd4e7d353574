//! netbuf on tokio.
//!
//! * [`FrameReader`]: frames from any `AsyncRead` through a netbuf receive
//!   buffer ([`LinearBuffer`](netbuf::LinearBuffer) or
//!   [`ChainedBuffer`](netbuf::ChainedBuffer)) and any
//!   [`Framing`](netbuf::framing::Framing): a `Stream` of pooled
//!   [`Message`](netbuf::Message)s, and a borrowed-frame API.
//! * [`outbox`] + [`FrameWriter`]: a per-connection
//!   [`SendQueue`](netbuf::SendQueue) drained into any `AsyncWrite` through
//!   the [`Flusher`](netbuf::Flusher): small frames coalesced, large bodies
//!   gathered with `poll_write_vectored` and freed once written, partial
//!   writes resumed to the byte; ends after a graceful
//!   [`shutdown`](netbuf::SendQueue::shutdown) once everything queued is
//!   written.
//! * Backpressure: producers `queue.send(frame).await` (resolves when the
//!   byte bound admits the frame), or use [`QueueSink`] (a `Sink`).
//! * [`FramingCodec`]: tokio-util `Decoder` / `Encoder` for any framing, to
//!   switch a `Framed` in one line (its docs say where `Framed` copies).
//!
//! This is a crate of its own, not a feature of `netbuf`: netbuf stays
//! runtime-agnostic (its awaitable queue uses only `std::task`), and users
//! of mio, glommio or plain threads do not compile tokio.
//!
//! # Example: echo over any framing
//!
//! ```
//! use futures::StreamExt;
//! use netbuf::framing::{HeaderBytes, LengthDelimited};
//! use netbuf::{Flusher, MessagePool, OutFrame, SendQueue};
//! use netbuf_tokio::{FrameReader, outbox};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (client, server) = tokio::io::duplex(64 << 10);
//! let (server_rx, server_tx) = tokio::io::split(server);
//! let framing = LengthDelimited::default();
//! let pool = MessagePool::new();
//!
//! let (queue, writer) = outbox(SendQueue::builder().limit(1 << 20));
//! let writer = tokio::spawn(writer.writer(server_tx, Flusher::new(Default::default())).run());
//! let mut frames = FrameReader::linear(server_rx, framing, pool.clone());
//! let echo = tokio::spawn(async move {
//!     while let Some(Ok((_, body))) = frames.next().await {
//!         let reply = OutFrame::encode(&framing, &HeaderBytes::EMPTY, body.into()).unwrap();
//!         queue.send(reply).await.unwrap(); // waits for room, never fails while open
//!     }
//!     queue.shutdown(); // the writer sends what is queued, then ends
//! });
//!
//! let (client_rx, mut client_tx) = tokio::io::split(client);
//! use tokio::io::AsyncWriteExt;
//! client_tx.write_all(b"\0\0\0\x05hello").await?;
//! client_tx.shutdown().await?;
//! let mut replies = FrameReader::linear(client_rx, framing, pool);
//! let (_, body) = replies.next().await.unwrap()?;
//! assert_eq!(&body[..], b"hello");
//! echo.await?;
//! writer.await??;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod codec;
mod io;
mod reader;
mod sink;
mod writer;

pub use codec::{CodecError, FramingCodec};
pub use reader::{COOP_UNIT_BYTES, FrameReader, HeaderOf, ReadError};
pub use sink::{QueueSink, SinkError};
pub use writer::{
    DEFAULT_KEEP_BUFFERED, DEFAULT_MAX_BUFFERED, FrameWriter, WriteError, WriterHandle, outbox,
};
