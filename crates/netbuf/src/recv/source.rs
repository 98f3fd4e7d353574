//! [`FrameSource`]: what the linear and the chained receive buffers have in
//! common, and [`ReceiveBuffer`], the one to pick at run time.

use std::io::{self, Read};

use allocator_api2::alloc::{Allocator, Global};

use super::framing::{DecodeError, Frame, Framing};
use super::uninit::ReadUninit;
use super::{ChainedBuffer, LinearBuffer};
use crate::{Message, MessagePool};

/// A receive buffer that reads bytes and decodes frames of its
/// [`Framing`]: implemented by [`LinearBuffer`], [`ChainedBuffer`] and
/// [`ReceiveBuffer`], so a session loop is written once for all three.
///
/// ```
/// use netbuf::framing::{HeaderBytes, LengthDelimited, encode_frame_into};
/// use netbuf::{FrameSource, MessagePool, ReceiveBuffer};
///
/// fn count_frames(buf: &mut impl FrameSource, mut socket: &[u8]) -> usize {
///     let mut n = 0;
///     while buf.read_from(&mut socket).unwrap() > 0 {
///         while buf.next_frame().unwrap().is_some() {
///             n += 1;
///         }
///     }
///     n
/// }
///
/// let framing = LengthDelimited::default();
/// let mut wire = Vec::new();
/// for _ in 0..3 {
///     encode_frame_into(&framing, &mut wire, &HeaderBytes::EMPTY, b"hi").unwrap();
/// }
/// let pool = MessagePool::new();
/// assert_eq!(count_frames(&mut ReceiveBuffer::linear(framing), &wire), 3);
/// assert_eq!(count_frames(&mut ReceiveBuffer::chained(pool, framing), &wire), 3);
/// ```
pub trait FrameSource {
    /// How frames are delimited.
    type Framing: Framing;

    /// Reads once from `r` into the buffer; `Ok(0)` at end of stream.
    fn read_from<R: Read + ?Sized>(&mut self, r: &mut R) -> io::Result<usize>;

    /// [`read_from`](Self::read_from) for a reader that can fill
    /// uninitialised memory: a [`LinearBuffer`] then reads direct bodies
    /// without zeroing their message first
    /// ([`LinearBuffer::read_from_uninit`]). The default is `read_from`.
    fn read_from_uninit<R: ReadUninit + ?Sized>(&mut self, r: &mut R) -> io::Result<usize> {
        self.read_from(r)
    }

    /// The next complete frame as a borrowed view (consumed), or `Ok(None)`.
    #[allow(clippy::type_complexity)]
    fn next_frame(
        &mut self,
    ) -> Result<Option<Frame<'_, <Self::Framing as Framing>::Header>>, DecodeError>;

    /// The next complete frame with its body as a pooled message (copied
    /// once, or handed over without a copy where the buffer can), or
    /// `Ok(None)`.
    #[allow(clippy::type_complexity)]
    fn next_message<P: Allocator + Send + Sync + 'static>(
        &mut self,
        pool: &MessagePool<P>,
    ) -> Result<Option<(<Self::Framing as Framing>::Header, Message)>, DecodeError>;

    /// Bytes received and not yet consumed.
    fn buffered(&self) -> usize;

    /// The framing.
    fn framing(&self) -> &Self::Framing;

    /// Changes the framing (e.g. a raised body limit).
    fn set_framing(&mut self, framing: Self::Framing);

    /// At end of stream: an error if a partial frame is left.
    fn finish(&self) -> Result<(), DecodeError>;
}

macro_rules! forward_frame_source {
    () => {
        fn read_from<R: Read + ?Sized>(&mut self, r: &mut R) -> io::Result<usize> {
            Self::read_from(self, r)
        }
        fn next_frame(&mut self) -> Result<Option<Frame<'_, F::Header>>, DecodeError> {
            Self::next_frame(self)
        }
        fn next_message<P: Allocator + Send + Sync + 'static>(
            &mut self,
            pool: &MessagePool<P>,
        ) -> Result<Option<(F::Header, Message)>, DecodeError> {
            Self::next_message(self, pool)
        }
        fn buffered(&self) -> usize {
            Self::buffered(self)
        }
        fn framing(&self) -> &F {
            Self::framing(self)
        }
        fn set_framing(&mut self, framing: F) {
            Self::set_framing(self, framing)
        }
        fn finish(&self) -> Result<(), DecodeError> {
            Self::finish(self)
        }
    };
}

impl<F: Framing> FrameSource for LinearBuffer<F> {
    type Framing = F;
    forward_frame_source!();
    fn read_from_uninit<R: ReadUninit + ?Sized>(&mut self, r: &mut R) -> io::Result<usize> {
        Self::read_from_uninit(self, r)
    }
}

impl<F: Framing, A: Allocator + Send + Sync + 'static> FrameSource for ChainedBuffer<F, A> {
    type Framing = F;
    forward_frame_source!();
}

/// A receive buffer chosen at run time (e.g. the demo's `--recv` option).
#[derive(Debug)]
pub enum ReceiveBuffer<F: Framing, A: Allocator + Send + Sync + 'static = Global> {
    /// A linear buffer with lazy compaction.
    Linear(LinearBuffer<F>),
    /// A chain of pool blocks.
    Chained(ChainedBuffer<F, A>),
}

impl<F: Framing> ReceiveBuffer<F> {
    /// A linear buffer of the default capacity (raised to fit a maximal
    /// frame of `framing`).
    pub fn linear(framing: F) -> Self {
        ReceiveBuffer::Linear(LinearBuffer::with_framing(framing))
    }
}

impl<F: Framing, A: Allocator + Send + Sync + 'static> ReceiveBuffer<F, A> {
    /// A chain of `pool`'s blocks.
    pub fn chained(pool: MessagePool<A>, framing: F) -> Self {
        ReceiveBuffer::Chained(ChainedBuffer::with_framing(pool, framing))
    }

    /// Receives bodies of at least `threshold` bytes straight into their
    /// own message: [`LinearBuffer::set_direct_threshold`]. A chained
    /// buffer already receives every body of a block or more into a block
    /// of its own, so this changes nothing for it.
    pub fn set_direct_threshold(&mut self, threshold: usize) {
        if let ReceiveBuffer::Linear(b) = self {
            b.set_direct_threshold(threshold);
        }
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

impl<F: Framing, A: Allocator + Send + Sync + 'static> FrameSource for ReceiveBuffer<F, A> {
    type Framing = F;

    fn read_from<R: Read + ?Sized>(&mut self, r: &mut R) -> io::Result<usize> {
        delegate!(self, b => b.read_from(r))
    }
    fn read_from_uninit<R: ReadUninit + ?Sized>(&mut self, r: &mut R) -> io::Result<usize> {
        match self {
            ReceiveBuffer::Linear(b) => b.read_from_uninit(r),
            // A chained buffer zeroes each block's tail once, as before.
            ReceiveBuffer::Chained(b) => b.read_from(r),
        }
    }
    fn next_frame(&mut self) -> Result<Option<Frame<'_, F::Header>>, DecodeError> {
        delegate!(self, b => b.next_frame())
    }
    fn next_message<P: Allocator + Send + Sync + 'static>(
        &mut self,
        pool: &MessagePool<P>,
    ) -> Result<Option<(F::Header, Message)>, DecodeError> {
        delegate!(self, b => b.next_message(pool))
    }
    fn buffered(&self) -> usize {
        delegate!(self, b => b.buffered())
    }
    fn framing(&self) -> &F {
        delegate!(self, b => b.framing())
    }
    fn set_framing(&mut self, framing: F) {
        delegate!(self, b => b.set_framing(framing))
    }
    fn finish(&self) -> Result<(), DecodeError> {
        delegate!(self, b => b.finish())
    }
}
