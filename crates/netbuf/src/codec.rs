//! The frame codec for the suite's wire format (see `DESIGN.md`).
//!
//! Every frame is an 8-byte header followed by the body:
//!
//! ```text
//! offset 0  u32 LE  body length in bytes (header not counted)
//! offset 4  u8      kind   (1..=7, see [`Kind`])
//! offset 5  u8      flags  (reserved, must be 0)
//! offset 6  u16 LE  room   (room id for kinds 3-6, 0 otherwise)
//! offset 8  body
//! ```
//!
//! Decoding never panics: every malformed input ends in a typed
//! [`DecodeError`], which closes that one session.
//!
//! ```
//! use netbuf::codec::{FrameCodec, FrameHeader, Kind, encode_header};
//!
//! let mut wire = encode_header(Kind::Publish, 7, 5).to_vec();
//! wire.extend_from_slice(b"hello");
//!
//! let codec = FrameCodec::new(); // 10 KiB body limit
//! let (frame, used) = codec.decode_frame(&wire).unwrap().unwrap();
//! assert_eq!(used, wire.len());
//! assert_eq!(frame.header, FrameHeader::new(Kind::Publish, 7, 5));
//! assert_eq!(frame.body, b"hello");
//! ```

use bytes::BufMut;

use crate::pool::PoolError;

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 8;

/// The default body limit: 10 KiB.
pub const DEFAULT_MAX_BODY: usize = 10 * 1024;

/// The kind byte of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// 1: echo request; the server answers with an [`EchoReply`](Kind::EchoReply) with the same body.
    EchoRequest = 1,
    /// 2: echo reply.
    EchoReply = 2,
    /// 3: join the frame's room (empty body).
    Join = 3,
    /// 4: leave the frame's room (empty body).
    Leave = 4,
    /// 5: publish the body to the frame's room.
    Publish = 5,
    /// 6: a publish delivered to a member of the room.
    Delivery = 6,
    /// 7: the peer closes the session; the body is a UTF-8 reason.
    Closing = 7,
}

impl Kind {
    /// Every kind, in wire order.
    pub const ALL: [Kind; 7] = [
        Kind::EchoRequest,
        Kind::EchoReply,
        Kind::Join,
        Kind::Leave,
        Kind::Publish,
        Kind::Delivery,
        Kind::Closing,
    ];

    /// The kind with wire value `v`, or [`DecodeError::UnknownKind`].
    #[inline]
    pub const fn from_u8(v: u8) -> Result<Kind, DecodeError> {
        Ok(match v {
            1 => Kind::EchoRequest,
            2 => Kind::EchoReply,
            3 => Kind::Join,
            4 => Kind::Leave,
            5 => Kind::Publish,
            6 => Kind::Delivery,
            7 => Kind::Closing,
            _ => return Err(DecodeError::UnknownKind(v)),
        })
    }

    /// The wire value.
    #[inline]
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}

impl TryFrom<u8> for Kind {
    type Error = DecodeError;
    fn try_from(v: u8) -> Result<Kind, DecodeError> {
        Kind::from_u8(v)
    }
}

/// Why the bytes of a session are not a valid frame stream. Any of them
/// closes that session (the server first sends a [`Kind::Closing`] frame
/// with the error's text as the reason, where it can).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The header announces a body longer than the session's limit.
    #[error("frame body of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Body length from the header.
        len: u64,
        /// The session's body limit.
        max: usize,
    },
    /// The kind byte is not one of 1..=7.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// The reserved flags byte is not 0.
    #[error("non-zero frame flags {0:#04x}")]
    NonZeroFlags(u8),
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame ({buffered} bytes buffered)")]
    Truncated {
        /// Bytes of the incomplete frame that had arrived.
        buffered: usize,
    },
    /// A frame is well delimited but its content is invalid (e.g. a
    /// closing reason that is not UTF-8).
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// No message could be allocated for the frame's body.
    #[error("no message for the frame body: {0}")]
    Alloc(#[from] PoolError),
}

/// Why a frame could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The body is longer than the limit (or than the `u32` length field).
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
}

/// A decoded (valid) frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    /// Body length in bytes.
    pub body_len: u32,
    /// Frame kind.
    pub kind: Kind,
    /// Room id (0 for kinds without a room).
    pub room: u16,
}

impl FrameHeader {
    /// A header for a body of `body_len` bytes.
    #[inline]
    pub const fn new(kind: Kind, room: u16, body_len: u32) -> FrameHeader {
        FrameHeader {
            body_len,
            kind,
            room,
        }
    }

    /// Body length as `usize`.
    #[inline]
    pub const fn body_len(&self) -> usize {
        self.body_len as usize
    }

    /// Header plus body bytes.
    #[inline]
    pub const fn frame_len(&self) -> usize {
        HEADER_LEN + self.body_len as usize
    }

    /// Writes the 8 header bytes (flags 0).
    ///
    /// ```
    /// use netbuf::codec::{FrameHeader, Kind};
    /// let mut b = [0u8; 8];
    /// FrameHeader::new(Kind::Join, 0x0102, 0).encode(&mut b);
    /// assert_eq!(b, [0, 0, 0, 0, 3, 0, 0x02, 0x01]);
    /// ```
    #[inline]
    pub fn encode(&self, dst: &mut [u8; HEADER_LEN]) {
        dst[0..4].copy_from_slice(&self.body_len.to_le_bytes());
        dst[4] = self.kind as u8;
        dst[5] = 0;
        dst[6..8].copy_from_slice(&self.room.to_le_bytes());
    }

    /// Parses and checks 8 header bytes against a body limit of `max_body`.
    ///
    /// The length is checked first, so an oversized frame is reported as
    /// [`DecodeError::FrameTooLarge`] whatever its other bytes.
    ///
    /// ```
    /// use netbuf::codec::{DecodeError, FrameHeader};
    /// let err = FrameHeader::decode(&[0, 0, 1, 0, 1, 0, 0, 0], 1024).unwrap_err();
    /// assert_eq!(err, DecodeError::FrameTooLarge { len: 65536, max: 1024 });
    /// assert_eq!(
    ///     FrameHeader::decode(&[0, 0, 0, 0, 9, 0, 0, 0], 1024),
    ///     Err(DecodeError::UnknownKind(9))
    /// );
    /// ```
    #[inline]
    pub fn decode(src: &[u8; HEADER_LEN], max_body: usize) -> Result<FrameHeader, DecodeError> {
        let body_len = u32::from_le_bytes([src[0], src[1], src[2], src[3]]);
        if body_len as u64 > max_body as u64 {
            return Err(DecodeError::FrameTooLarge {
                len: body_len as u64,
                max: max_body,
            });
        }
        let kind = Kind::from_u8(src[4])?;
        if src[5] != 0 {
            return Err(DecodeError::NonZeroFlags(src[5]));
        }
        Ok(FrameHeader {
            body_len,
            kind,
            room: u16::from_le_bytes([src[6], src[7]]),
        })
    }

    /// The frame length a header announces, without validating it (used to
    /// size buffers before the rest of the header is checked).
    #[inline]
    pub(crate) fn announced_frame_len(src: &[u8; HEADER_LEN]) -> u64 {
        HEADER_LEN as u64 + u32::from_le_bytes([src[0], src[1], src[2], src[3]]) as u64
    }
}

/// A decoded frame borrowing its body from the receive buffer, for handlers
/// that only read it. Use `next_message` on a buffer to keep the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The frame's header.
    pub header: FrameHeader,
    /// The frame's body (`header.body_len` bytes).
    pub body: &'a [u8],
}

impl<'a> Frame<'a> {
    /// The frame kind.
    #[inline]
    pub fn kind(&self) -> Kind {
        self.header.kind
    }

    /// The room id.
    #[inline]
    pub fn room(&self) -> u16 {
        self.header.room
    }

    /// The reason of a [`Kind::Closing`] frame, or
    /// [`DecodeError::Malformed`] if the frame is not a closing frame or
    /// its body is not UTF-8.
    pub fn closing_reason(&self) -> Result<&'a str, DecodeError> {
        if self.header.kind != Kind::Closing {
            return Err(DecodeError::Malformed("not a closing frame"));
        }
        core::str::from_utf8(self.body)
            .map_err(|_| DecodeError::Malformed("closing reason is not UTF-8"))
    }
}

/// The codec's configuration: the body limit of one session.
///
/// ```
/// use netbuf::codec::{DecodeError, FrameCodec, Kind, encode_header};
/// let codec = FrameCodec::with_max_body(4);
/// let hdr = encode_header(Kind::EchoRequest, 0, 5);
/// assert_eq!(
///     codec.decode_header(&hdr),
///     Err(DecodeError::FrameTooLarge { len: 5, max: 4 })
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCodec {
    max_body: usize,
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new()
    }
}

impl FrameCodec {
    /// A codec with the default body limit ([`DEFAULT_MAX_BODY`], 10 KiB).
    pub const fn new() -> FrameCodec {
        FrameCodec {
            max_body: DEFAULT_MAX_BODY,
        }
    }

    /// A codec with a body limit of `max_body` bytes (clamped to the `u32`
    /// length field).
    pub const fn with_max_body(max_body: usize) -> FrameCodec {
        let max_body = if max_body > u32::MAX as usize {
            u32::MAX as usize
        } else {
            max_body
        };
        FrameCodec { max_body }
    }

    /// The body limit.
    #[inline]
    pub const fn max_body(&self) -> usize {
        self.max_body
    }

    /// Decodes the header at the start of `src`: `Ok(None)` if fewer than
    /// [`HEADER_LEN`] bytes are there.
    #[inline]
    pub fn decode_header(&self, src: &[u8]) -> Result<Option<FrameHeader>, DecodeError> {
        match src.first_chunk::<HEADER_LEN>() {
            Some(h) => FrameHeader::decode(h, self.max_body).map(Some),
            None => Ok(None),
        }
    }

    /// Decodes the frame at the start of `src`: the frame and the bytes it
    /// spans, or `Ok(None)` if it is not complete yet.
    #[inline]
    pub fn decode_frame<'a>(
        &self,
        src: &'a [u8],
    ) -> Result<Option<(Frame<'a>, usize)>, DecodeError> {
        let Some(header) = self.decode_header(src)? else {
            return Ok(None);
        };
        let end = header.frame_len();
        match src.get(HEADER_LEN..end) {
            Some(body) => Ok(Some((Frame { header, body }, end))),
            None => Ok(None),
        }
    }

    /// Encodes a frame into `dst`, checking the body against this codec's
    /// limit. See [`encode_frame_into`].
    pub fn encode_frame_into<B: BufMut + ?Sized>(
        &self,
        dst: &mut B,
        kind: Kind,
        room: u16,
        body: &[u8],
    ) -> Result<(), EncodeError> {
        if body.len() > self.max_body {
            return Err(EncodeError::BodyTooLarge {
                len: body.len(),
                max: self.max_body,
            });
        }
        encode_frame_into(dst, kind, room, body)
    }
}

/// The 8 header bytes of a frame (flags 0), for the send path.
///
/// ```
/// use netbuf::codec::{Kind, encode_header};
/// assert_eq!(encode_header(Kind::EchoReply, 0, 300), [44, 1, 0, 0, 2, 0, 0, 0]);
/// ```
#[inline]
pub fn encode_header(kind: Kind, room: u16, body_len: u32) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    FrameHeader::new(kind, room, body_len).encode(&mut b);
    b
}

/// Appends header + body to `dst`, or fails without writing anything if
/// the body does not fit the `u32` length field or `dst` has no room for
/// the whole frame (so a fixed-capacity [`Message`](crate::Message) never
/// panics).
///
/// ```
/// use netbuf::codec::{Kind, encode_frame_into};
/// let pool = netbuf::MessagePool::new();
/// let mut m = pool.alloc(64).unwrap();
/// encode_frame_into(&mut m, Kind::EchoRequest, 0, b"ping").unwrap();
/// assert_eq!(&m[..], b"\x04\0\0\0\x01\0\0\0ping");
/// ```
pub fn encode_frame_into<B: BufMut + ?Sized>(
    dst: &mut B,
    kind: Kind,
    room: u16,
    body: &[u8],
) -> Result<(), EncodeError> {
    let Ok(body_len) = u32::try_from(body.len()) else {
        return Err(EncodeError::BodyTooLarge {
            len: body.len(),
            max: u32::MAX as usize,
        });
    };
    let needed = HEADER_LEN + body.len();
    if dst.remaining_mut() < needed {
        return Err(EncodeError::NoRoom {
            needed,
            remaining: dst.remaining_mut(),
        });
    }
    dst.put_slice(&encode_header(kind, room, body_len));
    dst.put_slice(body);
    Ok(())
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_every_kind() {
        for kind in Kind::ALL {
            for (room, len) in [(0u16, 0u32), (1, 1), (u16::MAX, 10240)] {
                let h = FrameHeader::new(kind, room, len);
                let mut b = [0u8; 8];
                h.encode(&mut b);
                assert_eq!(FrameHeader::decode(&b, DEFAULT_MAX_BODY), Ok(h));
                assert_eq!(Kind::try_from(kind.as_u8()), Ok(kind));
            }
        }
    }

    #[test]
    fn header_errors() {
        let ok = encode_header(Kind::Publish, 3, 10);
        let mut b = ok;
        b[4] = 0;
        assert_eq!(
            FrameHeader::decode(&b, 100),
            Err(DecodeError::UnknownKind(0))
        );
        b[4] = 8;
        assert_eq!(
            FrameHeader::decode(&b, 100),
            Err(DecodeError::UnknownKind(8))
        );
        let mut b = ok;
        b[5] = 0x80;
        assert_eq!(
            FrameHeader::decode(&b, 100),
            Err(DecodeError::NonZeroFlags(0x80))
        );
        let b = [0xff; 8];
        assert_eq!(
            FrameHeader::decode(&b, usize::MAX),
            Err(DecodeError::UnknownKind(0xff))
        );
        assert_eq!(
            FrameHeader::decode(&b, 10),
            Err(DecodeError::FrameTooLarge {
                len: u32::MAX as u64,
                max: 10
            })
        );
    }

    #[test]
    fn limit_boundaries() {
        let codec = FrameCodec::new();
        let max = DEFAULT_MAX_BODY as u32;
        assert!(
            codec
                .decode_header(&encode_header(Kind::EchoRequest, 0, max))
                .is_ok()
        );
        assert_eq!(
            codec.decode_header(&encode_header(Kind::EchoRequest, 0, max + 1)),
            Err(DecodeError::FrameTooLarge {
                len: max as u64 + 1,
                max: DEFAULT_MAX_BODY
            })
        );
        assert_eq!(codec.decode_header(&[1, 2, 3]), Ok(None));
    }

    #[test]
    fn encode_into_checks_room_and_limit() {
        let mut small = [0u8; 10];
        let mut dst = &mut small[..];
        assert_eq!(
            encode_frame_into(&mut dst, Kind::EchoRequest, 0, b"abc"),
            Err(EncodeError::NoRoom {
                needed: 11,
                remaining: 10
            })
        );
        let mut v = Vec::new();
        let codec = FrameCodec::with_max_body(2);
        assert!(matches!(
            codec.encode_frame_into(&mut v, Kind::EchoRequest, 0, b"abc"),
            Err(EncodeError::BodyTooLarge { len: 3, max: 2 })
        ));
        codec
            .encode_frame_into(&mut v, Kind::Closing, 0, b"ok")
            .unwrap();
        let (f, n) = codec.decode_frame(&v).unwrap().unwrap();
        assert_eq!(n, 10);
        assert_eq!(f.closing_reason(), Ok("ok"));
    }

    #[test]
    fn closing_reason_must_be_utf8() {
        let f = Frame {
            header: FrameHeader::new(Kind::Closing, 0, 2),
            body: &[0xff, 0xfe],
        };
        assert!(matches!(f.closing_reason(), Err(DecodeError::Malformed(_))));
    }
}
