//! [`FrameSource`]: what the linear and the chained receive buffers have in
//! common, and [`ReceiveBuffer`], the one to pick at run time.

use std::io::{self, Read};

use allocator_api2::alloc::Allocator;

use crate::codec::{DecodeError, Frame, FrameCodec, FrameHeader};
use crate::{ChainedBuffer, Message, MessagePool, RecvBuffer};

/// A receive buffer that reads bytes and decodes frames of the wire format:
/// implemented by [`RecvBuffer`], [`ChainedBuffer`] and [`ReceiveBuffer`].
///
/// ```
/// use netbuf::codec::{Kind, encode_frame_into};
/// use netbuf::{FrameSource, ReceiveBuffer};
///
/// fn count_echoes(buf: &mut impl FrameSource, mut socket: &[u8]) -> usize {
///     let mut n = 0;
///     while buf.read_from(&mut socket).unwrap() > 0 {
///         while let Some(f) = buf.next_frame().unwrap() {
///             n += usize::from(f.kind() == Kind::EchoRequest);
///         }
///     }
///     n
/// }
///
/// let mut wire = Vec::new();
/// for _ in 0..3 {
///     encode_frame_into(&mut wire, Kind::EchoRequest, 0, b"hi").unwrap();
/// }
/// let pool = netbuf::MessagePool::new();
/// assert_eq!(count_echoes(&mut ReceiveBuffer::linear(Default::default()), &wire), 3);
/// assert_eq!(count_echoes(&mut ReceiveBuffer::chained(pool, Default::default()), &wire), 3);
/// ```
pub trait FrameSource {
    /// Reads once from `r` into the buffer; `Ok(0)` at end of stream.
    fn read_from<R: Read + ?Sized>(&mut self, r: &mut R) -> io::Result<usize>;

    /// The next complete frame as a borrowed view (consumed), or `Ok(None)`.
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, DecodeError>;

    /// The next complete frame with its body copied once into a message
    /// from `pool` (consumed), or `Ok(None)`.
    fn next_message<A: Allocator + Send + Sync + 'static>(
        &mut self,
        pool: &MessagePool<A>,
    ) -> Result<Option<(FrameHeader, Message)>, DecodeError>;

    /// Bytes received and not yet consumed.
    fn buffered(&self) -> usize;

    /// The codec (body limit).
    fn codec(&self) -> FrameCodec;

    /// Changes the body limit.
    fn set_codec(&mut self, codec: FrameCodec);

    /// At end of stream: an error if a partial frame is left.
    fn finish(&self) -> Result<(), DecodeError>;
}

impl FrameSource for RecvBuffer {
    fn read_from<R: Read + ?Sized>(&mut self, r: &mut R) -> io::Result<usize> {
        RecvBuffer::read_from(self, r)
    }
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, DecodeError> {
        RecvBuffer::next_frame(self)
    }
    fn next_message<A: Allocator + Send + Sync + 'static>(
        &mut self,
        pool: &MessagePool<A>,
    ) -> Result<Option<(FrameHeader, Message)>, DecodeError> {
        RecvBuffer::next_message(self, pool)
    }
    fn buffered(&self) -> usize {
        RecvBuffer::buffered(self)
    }
    fn codec(&self) -> FrameCodec {
        RecvBuffer::codec(self)
    }
    fn set_codec(&mut self, codec: FrameCodec) {
        RecvBuffer::set_codec(self, codec)
    }
    fn finish(&self) -> Result<(), DecodeError> {
        RecvBuffer::finish(self)
    }
}

impl FrameSource for ChainedBuffer {
    fn read_from<R: Read + ?Sized>(&mut self, r: &mut R) -> io::Result<usize> {
        ChainedBuffer::read_from(self, r)
    }
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, DecodeError> {
        ChainedBuffer::next_frame(self)
    }
    fn next_message<A: Allocator + Send + Sync + 'static>(
        &mut self,
        pool: &MessagePool<A>,
    ) -> Result<Option<(FrameHeader, Message)>, DecodeError> {
        ChainedBuffer::next_message(self, pool)
    }
    fn buffered(&self) -> usize {
        ChainedBuffer::buffered(self)
    }
    fn codec(&self) -> FrameCodec {
        ChainedBuffer::codec(self)
    }
    fn set_codec(&mut self, codec: FrameCodec) {
        ChainedBuffer::set_codec(self, codec)
    }
    fn finish(&self) -> Result<(), DecodeError> {
        ChainedBuffer::finish(self)
    }
}

/// A receive buffer chosen at run time (e.g. the demo's `--recv` option).
#[derive(Debug)]
pub enum ReceiveBuffer {
    /// A linear buffer with lazy compaction.
    Linear(RecvBuffer),
    /// A chain of pool blocks.
    Chained(ChainedBuffer),
}

impl ReceiveBuffer {
    /// A linear buffer of the default capacity (raised to fit a maximal
    /// frame of `codec`).
    pub fn linear(codec: FrameCodec) -> ReceiveBuffer {
        ReceiveBuffer::Linear(RecvBuffer::with_config(
            crate::recv::DEFAULT_RECV_CAPACITY,
            codec,
            crate::Compaction::Lazy,
        ))
    }

    /// A chain of `pool`'s blocks.
    pub fn chained(pool: MessagePool, codec: FrameCodec) -> ReceiveBuffer {
        let block = pool.class_sizes().last().copied().unwrap_or(4096);
        ReceiveBuffer::Chained(ChainedBuffer::with_config(pool, block, codec))
    }
}

macro_rules! delegate {
    ($self:ident, $b:ident => $e:expr) => {
        match $self {
            ReceiveBuffer::Linear($b) => $e,
            ReceiveBuffer::Chained($b) => $e,
        }
    };
}

impl FrameSource for ReceiveBuffer {
    fn read_from<R: Read + ?Sized>(&mut self, r: &mut R) -> io::Result<usize> {
        delegate!(self, b => b.read_from(r))
    }
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, DecodeError> {
        delegate!(self, b => b.next_frame())
    }
    fn next_message<A: Allocator + Send + Sync + 'static>(
        &mut self,
        pool: &MessagePool<A>,
    ) -> Result<Option<(FrameHeader, Message)>, DecodeError> {
        delegate!(self, b => b.next_message(pool))
    }
    fn buffered(&self) -> usize {
        delegate!(self, b => b.buffered())
    }
    fn codec(&self) -> FrameCodec {
        delegate!(self, b => b.codec())
    }
    fn set_codec(&mut self, codec: FrameCodec) {
        delegate!(self, b => b.set_codec(codec))
    }
    fn finish(&self) -> Result<(), DecodeError> {
        delegate!(self, b => b.finish())
    }
}
