//! [`Framing`]: how a protocol delimits frames in a byte stream, the one
//! piece of protocol knowledge the receive buffers and the flusher need.
//!
//! A framing decodes a header from a prefix of the stream (need more bytes,
//! or header length + body length, or a typed error) and encodes a header
//! next to a body. The receive buffers ([`LinearBuffer`](crate::LinearBuffer),
//! [`ChainedBuffer`](crate::ChainedBuffer)) and the
//! [`Flusher`](crate::Flusher) are generic over it (static dispatch: the
//! decode is inlined into the buffer's loop), and check the body length
//! against [`Framing::max_body`] before they allocate or copy anything.
//!
//! Multi-part protocols (a message made of several frames, each with a
//! "more" flag, as in ZMTP) keep the flag in their [`Framing::Header`] and
//! group frames above the buffer: the buffer delivers frames one by one, in
//! order, each with its header.

use core::fmt;

pub use super::length_delimited::{BuildError, Builder, DEFAULT_MAX_BODY, Endian, LengthDelimited};
use crate::pool::PoolError;

/// The longest header a framing may decode or encode: 16 bytes (a
/// WebSocket header is at most 14, HTTP/2's is 9, ZMTP's 2 or 9).
pub const MAX_HEADER_LEN: usize = 16;

/// What a framing found at the start of the stream: a complete header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo<H> {
    /// The decoded header.
    pub header: H,
    /// Bytes the header occupies on the wire (at most [`MAX_HEADER_LEN`]).
    pub header_len: usize,
    /// Bytes of body that follow the header.
    pub body_len: usize,
}

impl<H> FrameInfo<H> {
    /// Header plus body bytes.
    #[inline]
    pub fn frame_len(&self) -> usize {
        self.header_len + self.body_len
    }
}

/// How a protocol delimits its frames.
///
/// Implement it for your own header; the buffers and the flusher do the
/// rest. A game protocol with a 6-byte header (`u16` LE opcode, `u32` LE
/// body length):
///
/// ```
/// use netbuf::framing::{DecodeError, EncodeError, FrameInfo, Framing, HeaderBytes};
///
/// #[derive(Debug, Clone, Copy)]
/// struct Game { max_body: usize }
///
/// impl Framing for Game {
///     type Header = u16; // the opcode
///
///     fn decode_header(&self, src: &[u8]) -> Result<Option<FrameInfo<u16>>, DecodeError> {
///         let Some(h) = src.first_chunk::<6>() else { return Ok(None) };
///         let body_len = u32::from_le_bytes([h[2], h[3], h[4], h[5]]) as usize;
///         if body_len > self.max_body {
///             return Err(DecodeError::FrameTooLarge { len: body_len as u64, max: self.max_body });
///         }
///         let opcode = u16::from_le_bytes([h[0], h[1]]);
///         Ok(Some(FrameInfo { header: opcode, header_len: 6, body_len }))
///     }
///
///     fn encode_header(&self, opcode: &u16, body_len: usize) -> Result<HeaderBytes, EncodeError> {
///         let len = u32::try_from(body_len)
///             .ok()
///             .filter(|&l| l as usize <= self.max_body)
///             .ok_or(EncodeError::BodyTooLarge { len: body_len, max: self.max_body })?;
///         let mut h = [0u8; 6];
///         h[..2].copy_from_slice(&opcode.to_le_bytes());
///         h[2..].copy_from_slice(&len.to_le_bytes());
///         Ok(HeaderBytes::new(&h))
///     }
///
///     fn max_body(&self) -> usize { self.max_body }
/// }
///
/// let mut buf = netbuf::LinearBuffer::with_framing(Game { max_body: 1024 });
/// let h = Game { max_body: 1024 }.encode_header(&7, 2).unwrap();
/// buf.fill_from_slice(h.as_slice());
/// buf.fill_from_slice(b"hi");
/// let f = buf.next_frame().unwrap().unwrap();
/// assert_eq!((f.header, f.body), (7, &b"hi"[..]));
/// ```
pub trait Framing {
    /// What a decoded header carries besides the lengths (a message kind,
    /// an opcode, flags; `HeaderBytes` for the raw bytes).
    type Header: Copy + fmt::Debug;

    /// Decodes the header at the start of `src`, which holds the first
    /// buffered bytes of the frame (at least [`MAX_HEADER_LEN`] of them when
    /// that many are buffered, maybe more). `Ok(None)`: more bytes are
    /// needed. A body longer than the limit must be reported here as
    /// [`DecodeError::FrameTooLarge`], as soon as the length is known.
    fn decode_header(&self, src: &[u8]) -> Result<Option<FrameInfo<Self::Header>>, DecodeError>;

    /// The header bytes for a body of `body_len` bytes.
    fn encode_header(
        &self,
        header: &Self::Header,
        body_len: usize,
    ) -> Result<HeaderBytes, EncodeError>;

    /// The largest body accepted. Receive buffers size themselves for one
    /// maximal frame and refuse a longer one before allocating.
    fn max_body(&self) -> usize;

    /// The longest header this framing decodes (default
    /// [`MAX_HEADER_LEN`]); a linear buffer holds at least this plus
    /// [`max_body`](Self::max_body).
    fn max_header_len(&self) -> usize {
        MAX_HEADER_LEN
    }
}

/// An encoded frame header of 0 to [`MAX_HEADER_LEN`] bytes, stored inline
/// (no allocation), as the flusher and the send queue carry it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct HeaderBytes {
    bytes: [u8; MAX_HEADER_LEN],
    len: u8,
}

impl HeaderBytes {
    /// An empty header (a framing without one, or a raw byte stream).
    pub const EMPTY: HeaderBytes = HeaderBytes {
        bytes: [0; MAX_HEADER_LEN],
        len: 0,
    };

    /// A copy of `bytes`.
    ///
    /// # Panics
    /// If `bytes` is longer than [`MAX_HEADER_LEN`]; use
    /// [`try_new`](Self::try_new) for lengths not known to fit.
    ///
    /// ```
    /// let h = netbuf::framing::HeaderBytes::new(&[1, 2, 3]);
    /// assert_eq!(h.as_slice(), &[1, 2, 3]);
    /// ```
    #[inline]
    pub fn new(bytes: &[u8]) -> HeaderBytes {
        match HeaderBytes::try_new(bytes) {
            Some(h) => h,
            None => panic!("a frame header is at most MAX_HEADER_LEN bytes"),
        }
    }

    /// A copy of `bytes`, or `None` if longer than [`MAX_HEADER_LEN`].
    #[inline]
    pub fn try_new(bytes: &[u8]) -> Option<HeaderBytes> {
        if bytes.len() > MAX_HEADER_LEN {
            return None;
        }
        let mut h = HeaderBytes::EMPTY;
        h.bytes[..bytes.len()].copy_from_slice(bytes);
        h.len = bytes.len() as u8;
        Some(h)
    }

    /// The header bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The header bytes, writable (e.g. to patch a field).
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.bytes[..self.len as usize]
    }

    /// Length in bytes.
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.len as usize
    }
}

impl<const N: usize> From<[u8; N]> for HeaderBytes {
    /// A fixed-size header; arrays longer than [`MAX_HEADER_LEN`] do not
    /// compile.
    ///
    /// ```
    /// let h: netbuf::framing::HeaderBytes = [1u8, 2].into();
    /// assert_eq!(h.len(), 2);
    /// ```
    #[inline]
    fn from(bytes: [u8; N]) -> HeaderBytes {
        const {
            assert!(
                N <= MAX_HEADER_LEN,
                "a frame header is at most MAX_HEADER_LEN bytes"
            )
        };
        HeaderBytes::new(&bytes)
    }
}

impl AsRef<[u8]> for HeaderBytes {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl fmt::Debug for HeaderBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HeaderBytes({:02x?})", self.as_slice())
    }
}

/// A decoded frame borrowing its body from the receive buffer, for handlers
/// that only read it. Use `next_message` on a buffer to keep the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a, H> {
    /// The frame's header, as the framing decoded it.
    pub header: H,
    /// The frame's body.
    pub body: &'a [u8],
}

/// Why the bytes of a session are not a valid frame stream. Any of them
/// closes that one session; nothing else is affected.
///
/// It is `Copy` and holds no heap data on purpose: it travels in the
/// `Result` of every decode call, and an error with drop glue (an owned
/// reason string) cost the decode loop about a third more instructions
/// (callgrind, 64-byte frames), and so did an error over 24 bytes. Reasons
/// are static strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The header announces a body longer than the limit.
    #[error("frame body of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Body length from the header.
        len: u64,
        /// The body limit.
        max: usize,
    },
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame ({buffered} bytes buffered)")]
    Truncated {
        /// Bytes of the incomplete frame that had arrived.
        buffered: usize,
    },
    /// The framing found the header invalid (a negative adjusted length,
    /// a command frame marked as continued...).
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// No message could be allocated for the frame's body.
    #[error("no message for the frame body: {0}")]
    Alloc(#[from] PoolError),
}

// Every decode returns this error inside a `Result`: keep it small (see above).
const _: () = assert!(size_of::<DecodeError>() <= 24);

impl DecodeError {
    /// A [`Malformed`](DecodeError::Malformed) error with this reason.
    pub const fn malformed(reason: &'static str) -> DecodeError {
        DecodeError::Malformed(reason)
    }
}

/// Why a frame header could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The body is longer than the limit (or than the length field holds).
    #[error("frame body of {len} bytes exceeds the limit of {max} bytes")]
    BodyTooLarge {
        /// Body length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The destination buffer has no room for the whole frame.
    #[error("frame of {needed} bytes does not fit in the {remaining} bytes left")]
    NoRoom {
        /// Header + body bytes.
        needed: usize,
        /// Bytes the destination can still take.
        remaining: usize,
    },
    /// The header to encode is invalid for this framing.
    #[error("invalid header: {0}")]
    InvalidHeader(&'static str),
}

/// Decodes one whole frame at the start of `src` with `framing`: the frame
/// and the bytes it spans, or `Ok(None)` if it is not complete yet. The
/// body limit is checked here too, so a framing that forgets it cannot make
/// a buffer allocate for an oversized frame.
#[inline(always)]
#[allow(clippy::type_complexity)]
pub fn decode_frame<'a, F: Framing + ?Sized>(
    framing: &F,
    src: &'a [u8],
) -> Result<Option<(Frame<'a, F::Header>, usize)>, DecodeError> {
    let Some(info) = decode_checked(framing, src)? else {
        return Ok(None);
    };
    let end = info.frame_len();
    match src.get(info.header_len..end) {
        Some(body) => Ok(Some((
            Frame {
                header: info.header,
                body,
            },
            end,
        ))),
        None => Ok(None),
    }
}

/// `framing.decode_header(src)` with the header and body limits enforced.
/// Inlined into the buffers' loops; the error paths are out of line so the
/// happy path stays a few compares.
#[inline(always)]
pub(crate) fn decode_checked<F: Framing + ?Sized>(
    framing: &F,
    src: &[u8],
) -> Result<Option<FrameInfo<F::Header>>, DecodeError> {
    let Some(info) = framing.decode_header(src)? else {
        return Ok(None);
    };
    if info.body_len > framing.max_body() || info.header_len > MAX_HEADER_LEN {
        return Err(limit_error(info.body_len, framing.max_body()));
    }
    Ok(Some(info))
}

#[cold]
#[inline(never)]
fn limit_error(body_len: usize, max: usize) -> DecodeError {
    if body_len > max {
        DecodeError::FrameTooLarge {
            len: body_len as u64,
            max,
        }
    } else {
        DecodeError::malformed("framing decoded a header longer than MAX_HEADER_LEN")
    }
}

/// Appends header + body to `dst`, or fails without writing anything if the
/// framing refuses the body or `dst` has no room for the whole frame (so a
/// fixed-capacity [`Message`](crate::Message) never panics).
pub fn encode_frame_into<F: Framing + ?Sized, B: bytes::BufMut + ?Sized>(
    framing: &F,
    dst: &mut B,
    header: &F::Header,
    body: &[u8],
) -> Result<(), EncodeError> {
    let h = framing.encode_header(header, body.len())?;
    let needed = h.len() + body.len();
    if dst.remaining_mut() < needed {
        return Err(EncodeError::NoRoom {
            needed,
            remaining: dst.remaining_mut(),
        });
    }
    dst.put_slice(h.as_slice());
    dst.put_slice(body);
    Ok(())
}
