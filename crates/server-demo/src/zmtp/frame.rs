//! ZMTP frames as a [`netbuf::framing::Framing`]: a flags byte (MORE = 1,
//! LONG = 2, COMMAND = 4, the other bits reserved) and a 1-byte or 8-byte
//! big-endian size, then the body. Before the frames, the same framing
//! delimits the 64-byte greeting (see [`ZmtpFraming::greeting`]), so one
//! receive buffer serves the whole connection.

use netbuf::framing::{DecodeError, EncodeError, FrameInfo, Framing, HeaderBytes};

use super::greeting::{self, GREETING_BODY_LEN, GREETING_HEAD_LEN};

/// Bodies of command frames are accepted up to this many bytes even when
/// `--max-frame` is smaller (a READY with a 255-byte identity must fit).
pub const MIN_COMMAND_LIMIT: usize = 4096;

/// The flags byte of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FrameFlags(u8);

impl FrameFlags {
    /// Another part of the same message follows.
    pub const MORE: u8 = 0x01;
    /// The size is 8 bytes (big-endian) instead of 1.
    pub const LONG: u8 = 0x02;
    /// The frame is a command, not a message part.
    pub const COMMAND: u8 = 0x04;
    /// Bits the specs reserve (must be zero).
    pub const RESERVED: u8 = !0x07;

    /// A message part, with MORE set if `more`.
    pub const fn message(more: bool) -> FrameFlags {
        FrameFlags(if more { Self::MORE } else { 0 })
    }

    /// A command frame.
    pub const fn command() -> FrameFlags {
        FrameFlags(Self::COMMAND)
    }

    /// The raw byte (the LONG bit as decoded; the encoder sets it itself).
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether another part of the same message follows.
    pub const fn more(self) -> bool {
        self.0 & Self::MORE != 0
    }

    /// Whether this is a command frame.
    pub const fn is_command(self) -> bool {
        self.0 & Self::COMMAND != 0
    }

    /// Whether the size field is 8 bytes.
    pub const fn is_long(self) -> bool {
        self.0 & Self::LONG != 0
    }
}

/// What [`ZmtpFraming`] decoded at the start of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZmtpHeader {
    /// The greeting's first 11 bytes were valid (signature, major version
    /// 3 or more); its remaining 53 bytes are the "body".
    Greeting {
        /// The peer's major version (3 or more).
        major: u8,
    },
    /// A frame with these flags.
    Frame(FrameFlags),
}

/// Which part of the stream the framing expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Greeting,
    Frames,
}

/// The ZMTP 3.x [`Framing`]. Starts in greeting mode; switch the receive
/// buffer to [`ZmtpFraming::frames`] once the greeting is consumed.
///
/// ```
/// use netbuf::framing::{decode_frame, Framing};
/// use server_demo::zmtp::frame::{FrameFlags, ZmtpFraming, ZmtpHeader};
///
/// let f = ZmtpFraming::frames(1024);
/// let h = f.encode_header(&ZmtpHeader::Frame(FrameFlags::message(true)), 3).unwrap();
/// assert_eq!(h.as_slice(), &[1, 3]);
/// let mut wire = h.as_slice().to_vec();
/// wire.extend_from_slice(b"abc");
/// let (frame, used) = decode_frame(&f, &wire).unwrap().unwrap();
/// assert_eq!((frame.body, used), (&b"abc"[..], 5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZmtpFraming {
    phase: Phase,
    max_part: usize,
    max_command: usize,
}

impl ZmtpFraming {
    /// Greeting mode: delimits the peer's 64-byte greeting (checking the
    /// signature and version as soon as their bytes are in); message parts
    /// later limited to `max_part` bytes.
    pub fn greeting(max_part: usize) -> ZmtpFraming {
        ZmtpFraming {
            phase: Phase::Greeting,
            max_part,
            max_command: max_part.max(MIN_COMMAND_LIMIT),
        }
    }

    /// Frame mode: message parts up to `max_part` bytes, commands up to
    /// `max(max_part, MIN_COMMAND_LIMIT)`.
    pub fn frames(max_part: usize) -> ZmtpFraming {
        ZmtpFraming {
            phase: Phase::Frames,
            ..ZmtpFraming::greeting(max_part)
        }
    }

    /// The limit on a message part's body.
    pub fn max_part(&self) -> usize {
        self.max_part
    }

    /// Whether the framing still expects the greeting.
    pub fn in_greeting(&self) -> bool {
        self.phase == Phase::Greeting
    }
}

impl Framing for ZmtpFraming {
    type Header = ZmtpHeader;

    #[inline]
    fn decode_header(&self, src: &[u8]) -> Result<Option<FrameInfo<ZmtpHeader>>, DecodeError> {
        if self.phase == Phase::Greeting {
            return Ok(greeting::check_prefix(src)?.map(|major| FrameInfo {
                header: ZmtpHeader::Greeting { major },
                header_len: GREETING_HEAD_LEN,
                body_len: GREETING_BODY_LEN,
            }));
        }
        let Some(&flags) = src.first() else {
            return Ok(None);
        };
        if flags & FrameFlags::RESERVED != 0 {
            return Err(RESERVED);
        }
        let flags = FrameFlags(flags);
        if flags.is_command() && flags.more() {
            return Err(DecodeError::malformed("command frame with the MORE flag"));
        }
        let (header_len, len) = if flags.is_long() {
            let Some(b) = src.get(1..9) else {
                return Ok(None);
            };
            let mut size = [0u8; 8];
            size.copy_from_slice(b);
            (9, u64::from_be_bytes(size))
        } else {
            let Some(&n) = src.get(1) else {
                return Ok(None);
            };
            (2, u64::from(n))
        };
        // Checked here, before any buffer allocates for the body.
        let max = if flags.is_command() {
            self.max_command
        } else {
            self.max_part
        };
        if len > max as u64 {
            return Err(DecodeError::FrameTooLarge { len, max });
        }
        Ok(Some(FrameInfo {
            header: ZmtpHeader::Frame(flags),
            header_len,
            body_len: len as usize,
        }))
    }

    /// Short size up to 255 bytes, long beyond (as libzmq). A greeting
    /// header cannot be encoded (the greeting is sent whole, as a body).
    fn encode_header(
        &self,
        header: &ZmtpHeader,
        body_len: usize,
    ) -> Result<HeaderBytes, EncodeError> {
        let ZmtpHeader::Frame(flags) = header else {
            return Err(EncodeError::InvalidHeader(
                "the greeting has no frame header",
            ));
        };
        let max = if flags.is_command() {
            self.max_command
        } else {
            self.max_part
        };
        if body_len > max {
            return Err(EncodeError::BodyTooLarge { len: body_len, max });
        }
        Ok(encode_frame_header(*flags, body_len))
    }

    fn max_body(&self) -> usize {
        // The buffers size themselves for one maximal frame of any kind.
        self.max_command.max(GREETING_BODY_LEN)
    }

    fn max_header_len(&self) -> usize {
        GREETING_HEAD_LEN.max(9)
    }
}

/// The header of a frame with `flags` (MORE / COMMAND; LONG is chosen
/// from `body_len`) for a body of `body_len` bytes: 2 or 9 bytes.
#[inline]
pub fn encode_frame_header(flags: FrameFlags, body_len: usize) -> HeaderBytes {
    let bits = flags.0 & (FrameFlags::MORE | FrameFlags::COMMAND);
    if body_len <= 255 {
        HeaderBytes::from([bits, body_len as u8])
    } else {
        let mut h = [0u8; 9];
        h[0] = bits | FrameFlags::LONG;
        h[1..].copy_from_slice(&(body_len as u64).to_be_bytes());
        HeaderBytes::from(h)
    }
}

const RESERVED: DecodeError = DecodeError::malformed("reserved frame flag bits set");

#[cfg(test)]
mod tests {
    use super::*;
    use netbuf::framing::decode_frame;

    fn header(f: &ZmtpFraming, src: &[u8]) -> Result<Option<FrameInfo<ZmtpHeader>>, DecodeError> {
        f.decode_header(src)
    }

    #[test]
    fn short_and_long_boundaries() {
        let f = ZmtpFraming::frames(1 << 20);
        for len in [0usize, 1, 255, 256, 65536, 1 << 20] {
            for more in [false, true] {
                let h = encode_frame_header(FrameFlags::message(more), len);
                assert_eq!(h.len(), if len <= 255 { 2 } else { 9 });
                let info = header(&f, h.as_slice()).unwrap().unwrap();
                assert_eq!(info.body_len, len);
                assert_eq!(info.header_len, h.len());
                let ZmtpHeader::Frame(flags) = info.header else {
                    panic!("frame expected")
                };
                assert_eq!(flags.more(), more);
                assert!(!flags.is_command());
            }
        }
    }

    #[test]
    fn partial_headers_need_more() {
        let f = ZmtpFraming::frames(1 << 20);
        let h = encode_frame_header(FrameFlags::message(false), 1000);
        for cut in 0..h.len() {
            assert_eq!(header(&f, &h.as_slice()[..cut]), Ok(None));
        }
    }

    #[test]
    fn reserved_bits_and_command_more_are_errors() {
        let f = ZmtpFraming::frames(100);
        for bit in 3..8 {
            let e = header(&f, &[1 << bit, 0]).unwrap_err();
            assert!(matches!(e, DecodeError::Malformed(_)), "{e}");
        }
        assert!(matches!(
            header(&f, &[0x05, 0]),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn oversize_is_rejected_from_the_size_field_alone() {
        let f = ZmtpFraming::frames(100);
        assert_eq!(
            header(&f, &[0, 101]),
            Err(DecodeError::FrameTooLarge { len: 101, max: 100 })
        );
        let mut long = [0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            header(&f, &long),
            Err(DecodeError::FrameTooLarge { .. })
        ));
        // Commands get at least MIN_COMMAND_LIMIT.
        long = [0x06, 0, 0, 0, 0, 0, 0, 0x0f, 0xff];
        assert!(header(&f, &long).unwrap().is_some());
        assert!(decode_frame(&f, &long).unwrap().is_none());
    }

    #[test]
    fn encode_refuses_greeting_and_oversize() {
        let f = ZmtpFraming::frames(10);
        assert!(
            f.encode_header(&ZmtpHeader::Greeting { major: 3 }, 1)
                .is_err()
        );
        assert!(
            f.encode_header(&ZmtpHeader::Frame(FrameFlags::message(false)), 11)
                .is_err()
        );
    }
}
