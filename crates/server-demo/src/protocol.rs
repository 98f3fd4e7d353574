//! The demo's wire protocol, one [`Framing`] among others for netbuf.
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
//! The length layout is what netbuf's [`LengthDelimited`] expresses with a
//! 4-byte little-endian field at offset 0 and an 8-byte header
//! ([`DemoFraming::length_framing`]; a test checks both agree).
//! [`DemoFraming`] reads that fixed layout directly (constant offsets, so
//! the decode compiles to a few instructions inside the buffers' loops) and
//! adds the kind and flag checks, so an unknown kind or a reserved flag
//! closes the session with a typed error; it hands out a parsed
//! [`FrameHeader`].
//!
//! ```
//! use netbuf::framing::{Framing, decode_frame};
//! use server_demo::protocol::{DemoFraming, FrameHeader, Kind, encode_header};
//!
//! let mut wire = encode_header(Kind::Publish, 7, 5).to_vec();
//! wire.extend_from_slice(b"hello");
//! let framing = DemoFraming::new(); // 10 KiB body limit
//! let (frame, used) = decode_frame(&framing, &wire).unwrap().unwrap();
//! assert_eq!(used, wire.len());
//! assert_eq!(frame.header, FrameHeader::new(Kind::Publish, 7, 5));
//! assert_eq!(frame.body, b"hello");
//! ```

use bytes::BufMut;
use netbuf::framing::{
    DecodeError, EncodeError, FrameInfo, Framing, HeaderBytes, LengthDelimited, decode_frame,
};

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 8;

/// The default body limit: 10 KiB.
pub const DEFAULT_MAX_BODY: usize = netbuf::framing::DEFAULT_MAX_BODY;

/// A decoded demo frame borrowing its body from the receive buffer.
pub type Frame<'a> = netbuf::framing::Frame<'a, FrameHeader>;

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

    /// The kind with wire value `v`, or `None`.
    #[inline]
    pub const fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::EchoRequest,
            2 => Kind::EchoReply,
            3 => Kind::Join,
            4 => Kind::Leave,
            5 => Kind::Publish,
            6 => Kind::Delivery,
            7 => Kind::Closing,
            _ => return None,
        })
    }

    /// The wire value.
    #[inline]
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
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
    #[inline]
    pub fn encode(&self, dst: &mut [u8; HEADER_LEN]) {
        dst[0..4].copy_from_slice(&self.body_len.to_le_bytes());
        dst[4] = self.kind as u8;
        dst[5] = 0;
        dst[6..8].copy_from_slice(&self.room.to_le_bytes());
    }
}

/// The demo's [`Framing`]: the 8-byte header above, with the kind and
/// flags checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoFraming {
    max_body: usize,
}

impl Default for DemoFraming {
    fn default() -> Self {
        DemoFraming::new()
    }
}

impl DemoFraming {
    /// The default body limit ([`DEFAULT_MAX_BODY`], 10 KiB).
    pub fn new() -> DemoFraming {
        DemoFraming::with_max_body(DEFAULT_MAX_BODY)
    }

    /// A body limit of `max_body` bytes (clamped to the `u32` length field).
    pub fn with_max_body(max_body: usize) -> DemoFraming {
        DemoFraming {
            max_body: max_body.min(u32::MAX as usize),
        }
    }

    /// The length part of the format as netbuf's ready-made framing.
    pub fn length_framing() -> LengthDelimited {
        LengthDelimited::builder()
            .little_endian()
            .header_len(HEADER_LEN)
            .build()
            .expect("a valid layout")
    }

    /// The body limit.
    #[inline]
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// Decodes the header at the start of `src`: `Ok(None)` if fewer than
    /// [`HEADER_LEN`] bytes are there. The length is checked first, so an
    /// oversized frame is `FrameTooLarge` whatever its other bytes.
    #[inline]
    pub fn decode_header(&self, src: &[u8]) -> Result<Option<FrameHeader>, DecodeError> {
        Ok(Framing::decode_header(self, src)?.map(|i| i.header))
    }

    /// Decodes the whole frame at the start of `src`, or `Ok(None)`.
    #[inline]
    pub fn decode_frame<'a>(
        &self,
        src: &'a [u8],
    ) -> Result<Option<(Frame<'a>, usize)>, DecodeError> {
        decode_frame(self, src)
    }

    /// Encodes a frame into `dst`, checking the body against the limit.
    pub fn encode_frame_into<B: BufMut + ?Sized>(
        &self,
        dst: &mut B,
        kind: Kind,
        room: u16,
        body: &[u8],
    ) -> Result<(), EncodeError> {
        netbuf::framing::encode_frame_into(self, dst, &FrameHeader::new(kind, room, 0), body)
    }
}

impl Framing for DemoFraming {
    type Header = FrameHeader;

    #[inline(always)]
    fn decode_header(&self, src: &[u8]) -> Result<Option<FrameInfo<FrameHeader>>, DecodeError> {
        let Some(h) = src.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let body_len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if body_len > self.max_body {
            return Err(too_large(body_len, self.max_body));
        }
        let Some(kind) = Kind::from_u8(h[4]) else {
            return Err(header_error(h[4]));
        };
        if h[5] != 0 {
            return Err(header_error(h[4]));
        }
        Ok(Some(FrameInfo {
            header: FrameHeader {
                body_len: body_len as u32,
                kind,
                room: u16::from_le_bytes([h[6], h[7]]),
            },
            header_len: HEADER_LEN,
            body_len,
        }))
    }

    /// The header's own `body_len` is ignored: the body's length is written.
    #[inline]
    fn encode_header(
        &self,
        header: &FrameHeader,
        body_len: usize,
    ) -> Result<HeaderBytes, EncodeError> {
        if body_len > self.max_body() {
            return Err(EncodeError::BodyTooLarge {
                len: body_len,
                max: self.max_body(),
            });
        }
        Ok(encode_header(header.kind, header.room, body_len as u32).into())
    }

    #[inline]
    fn max_body(&self) -> usize {
        self.max_body
    }

    #[inline]
    fn max_header_len(&self) -> usize {
        HEADER_LEN
    }
}

#[cold]
#[inline(never)]
fn too_large(len: usize, max: usize) -> DecodeError {
    DecodeError::FrameTooLarge {
        len: len as u64,
        max,
    }
}

/// The error of a header with an unknown kind or reserved flags (out of
/// line: the decode loop's happy path stays small).
#[cold]
#[inline(never)]
fn header_error(kind: u8) -> DecodeError {
    if Kind::from_u8(kind).is_none() {
        DecodeError::malformed("unknown frame kind")
    } else {
        DecodeError::malformed("non-zero frame flags")
    }
}

/// What a demo frame says, read from its header.
pub trait FrameExt<'a> {
    /// The frame kind.
    fn kind(&self) -> Kind;
    /// The room id.
    fn room(&self) -> u16;
    /// The reason of a [`Kind::Closing`] frame, or `Malformed` if the frame
    /// is not a closing frame or its body is not UTF-8.
    fn closing_reason(&self) -> Result<&'a str, DecodeError>;
}

impl<'a> FrameExt<'a> for Frame<'a> {
    #[inline]
    fn kind(&self) -> Kind {
        self.header.kind
    }
    #[inline]
    fn room(&self) -> u16 {
        self.header.room
    }
    fn closing_reason(&self) -> Result<&'a str, DecodeError> {
        if self.header.kind != Kind::Closing {
            return Err(DecodeError::malformed("not a closing frame"));
        }
        core::str::from_utf8(self.body)
            .map_err(|_| DecodeError::malformed("closing reason is not UTF-8"))
    }
}

/// The 8 header bytes of a frame (flags 0), for the send path.
///
/// ```
/// use server_demo::protocol::{Kind, encode_header};
/// assert_eq!(encode_header(Kind::EchoReply, 0, 300), [44, 1, 0, 0, 2, 0, 0, 0]);
/// ```
#[inline]
pub fn encode_header(kind: Kind, room: u16, body_len: u32) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    FrameHeader::new(kind, room, body_len).encode(&mut b);
    b
}

/// Appends header + body to `dst`, or fails without writing anything if the
/// body does not fit the `u32` length field or `dst` has no room.
pub fn encode_frame_into<B: BufMut + ?Sized>(
    dst: &mut B,
    kind: Kind,
    room: u16,
    body: &[u8],
) -> Result<(), EncodeError> {
    DemoFraming::with_max_body(u32::MAX as usize).encode_frame_into(dst, kind, room, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netbuf::framing::MAX_HEADER_LEN;

    #[test]
    fn header_roundtrip_every_kind() {
        let f = DemoFraming::new();
        for kind in Kind::ALL {
            for (room, len) in [(0u16, 0u32), (1, 1), (u16::MAX, 10240)] {
                let h = FrameHeader::new(kind, room, len);
                let mut b = [0u8; 8];
                h.encode(&mut b);
                assert_eq!(f.decode_header(&b), Ok(Some(h)));
                assert_eq!(Kind::from_u8(kind.as_u8()), Some(kind));
            }
        }
    }

    #[test]
    fn header_errors() {
        let f = DemoFraming::with_max_body(100);
        let ok = encode_header(Kind::Publish, 3, 10);
        let mut b = ok;
        b[4] = 0;
        assert_eq!(
            f.decode_header(&b),
            Err(DecodeError::malformed("unknown frame kind"))
        );
        b[4] = 8;
        assert_eq!(
            f.decode_header(&b),
            Err(DecodeError::malformed("unknown frame kind"))
        );
        let mut b = ok;
        b[5] = 0x80;
        assert_eq!(
            f.decode_header(&b),
            Err(DecodeError::malformed("non-zero frame flags"))
        );
        let b = [0xff; 8];
        assert_eq!(
            DemoFraming::with_max_body(usize::MAX).decode_header(&b),
            Err(DecodeError::malformed("unknown frame kind"))
        );
        assert_eq!(
            DemoFraming::with_max_body(10).decode_header(&b),
            Err(DecodeError::FrameTooLarge {
                len: u32::MAX as u64,
                max: 10
            })
        );
        assert_eq!(f.decode_header(&[1, 2, 3]), Ok(None));
        const { assert!(HEADER_LEN <= MAX_HEADER_LEN) };
    }

    /// netbuf's `LengthDelimited` with the demo's layout reads the same
    /// lengths and limits as the demo framing.
    #[test]
    fn the_length_is_netbufs_length_delimited() {
        let plain = DemoFraming::length_framing().with_max_body(DEFAULT_MAX_BODY);
        for len in [
            0u32,
            1,
            300,
            DEFAULT_MAX_BODY as u32,
            DEFAULT_MAX_BODY as u32 + 1,
        ] {
            let b = encode_header(Kind::EchoRequest, 9, len);
            let a = Framing::decode_header(&DemoFraming::new(), &b).map(|o| o.map(|i| i.body_len));
            let p = plain.decode_header(&b).map(|o| o.map(|i| i.body_len));
            assert_eq!(a, p);
        }
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
        let f = DemoFraming::with_max_body(2);
        assert!(matches!(
            f.encode_frame_into(&mut v, Kind::EchoRequest, 0, b"abc"),
            Err(EncodeError::BodyTooLarge { len: 3, max: 2 })
        ));
        f.encode_frame_into(&mut v, Kind::Closing, 0, b"ok")
            .unwrap();
        let (fr, n) = f.decode_frame(&v).unwrap().unwrap();
        assert_eq!(n, 10);
        assert_eq!(fr.closing_reason(), Ok("ok"));
        let bad = Frame {
            header: FrameHeader::new(Kind::Closing, 0, 2),
            body: &[0xff, 0xfe],
        };
        assert!(matches!(
            bad.closing_reason(),
            Err(DecodeError::Malformed(_))
        ));
    }
}
