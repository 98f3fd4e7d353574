//! [`FramingCodec`]: tokio-util's `Decoder` / `Encoder` for any netbuf
//! framing, so a `Framed` user switches in one line.
//!
//! # Where `Framed` copies
//!
//! `Framed` owns its buffers (`BytesMut`), so going through it costs what
//! its design costs: the decoder copies each body once out of `Framed`'s
//! read buffer into a pooled [`Message`] (the body limit is checked before
//! that copy and before `Framed` grows its buffer), and the encoder copies
//! header and body into `Framed`'s write buffer. For the zero-copy paths
//! use [`FrameReader`](crate::FrameReader) (reads straight into netbuf's
//! receive buffer; a [`ChainedBuffer`](netbuf::ChainedBuffer) hands large
//! bodies over without a copy) and [`FrameWriter`](crate::FrameWriter)
//! (large bodies leave through `poll_write_vectored`, never copied).

use std::io;

use allocator_api2::alloc::{Allocator, Global};
use bytes::{Buf, BytesMut};
use netbuf::framing::{self, DecodeError, EncodeError, Framing};
use netbuf::{Message, MessagePool, OutFrame, PoolError};
use tokio_util::codec::{Decoder, Encoder};

/// Why the codec failed: I/O (from `Framed`), or the framing.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The underlying I/O failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The bytes are not a valid frame stream.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A frame could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

impl From<PoolError> for CodecError {
    fn from(e: PoolError) -> Self {
        CodecError::Decode(e.into())
    }
}

/// A tokio-util codec for a netbuf [`Framing`]: decodes `(header, pooled
/// Message)`, encodes [`OutFrame`]s and `(header, body)` pairs.
///
/// ```
/// use bytes::BytesMut;
/// use netbuf::MessagePool;
/// use netbuf::framing::{HeaderBytes, LengthDelimited};
/// use netbuf_tokio::FramingCodec;
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec = FramingCodec::new(LengthDelimited::default(), MessagePool::new());
/// let mut wire = BytesMut::new();
/// codec.encode((HeaderBytes::EMPTY, &b"hi"[..]), &mut wire).unwrap();
/// assert_eq!(&wire[..], b"\0\0\0\x02hi");
/// let (_, body) = codec.decode(&mut wire).unwrap().unwrap();
/// assert_eq!(&body[..], b"hi");
/// ```
#[derive(Debug, Clone)]
pub struct FramingCodec<F, A: Allocator + Send + Sync + 'static = Global> {
    framing: F,
    pool: MessagePool<A>,
}

impl<F: Framing, A: Allocator + Send + Sync + 'static> FramingCodec<F, A> {
    /// A codec for `framing`, with bodies from `pool`.
    pub fn new(framing: F, pool: MessagePool<A>) -> Self {
        FramingCodec { framing, pool }
    }

    /// The framing.
    pub fn framing(&self) -> &F {
        &self.framing
    }
}

impl<F: Framing, A: Allocator + Send + Sync + 'static> Decoder for FramingCodec<F, A> {
    type Item = (F::Header, Message);
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, CodecError> {
        // The header (and with it the body limit) first: `Framed` is told
        // how much to reserve only for a frame the framing accepted.
        let Some(info) = self.framing.decode_header(src)? else {
            return Ok(None);
        };
        let Some((frame, used)) = framing::decode_frame(&self.framing, src)? else {
            src.reserve(info.frame_len() - src.len());
            return Ok(None);
        };
        let body = self.pool.message_from(frame.body)?;
        let header = frame.header;
        src.advance(used);
        Ok(Some((header, body)))
    }
}

impl<F: Framing, A, B> Encoder<(F::Header, B)> for FramingCodec<F, A>
where
    A: Allocator + Send + Sync + 'static,
    B: AsRef<[u8]>,
{
    type Error = CodecError;

    fn encode(
        &mut self,
        (header, body): (F::Header, B),
        dst: &mut BytesMut,
    ) -> Result<(), CodecError> {
        let h = self.framing.encode_header(&header, body.as_ref().len())?;
        dst.reserve(h.len() + body.as_ref().len());
        dst.extend_from_slice(h.as_slice());
        dst.extend_from_slice(body.as_ref());
        Ok(())
    }
}

impl<F: Framing, A, B> Encoder<OutFrame<B>> for FramingCodec<F, A>
where
    A: Allocator + Send + Sync + 'static,
    B: AsRef<[u8]>,
{
    type Error = CodecError;

    fn encode(&mut self, frame: OutFrame<B>, dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.reserve(frame.header.len() + frame.body.as_ref().len());
        dst.extend_from_slice(frame.header.as_slice());
        dst.extend_from_slice(frame.body.as_ref());
        Ok(())
    }
}
