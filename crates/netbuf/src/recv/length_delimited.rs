//! [`LengthDelimited`]: the ready-made framing for headers that carry the
//! body length in a fixed field, with the knobs of tokio-util's
//! `length_delimited::Builder`.

use super::framing::{DecodeError, EncodeError, FrameInfo, Framing, HeaderBytes, MAX_HEADER_LEN};

/// The default body limit: 10 KiB (a common game-server frame limit).
pub const DEFAULT_MAX_BODY: usize = 10 * 1024;

/// Byte order of the length field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endian {
    /// Most significant byte first (network order).
    Big,
    /// Least significant byte first.
    Little,
}

/// A framing whose header is `header_len` bytes with the body length in a
/// field of 1, 2, 4 or 8 bytes at `length_field_offset`; the other header
/// bytes are the protocol's own (an opcode, a kind, flags) and come with
/// each frame as [`HeaderBytes`]. The body length is the field's value plus
/// `length_adjustment` (e.g. `-(header_len)` where the field counts the
/// header too).
///
/// Three formats, built with [`LengthDelimited::builder`]:
///
/// ```
/// use netbuf::framing::{Endian, Framing, HeaderBytes, LengthDelimited};
///
/// // A plain 4-byte big-endian length prefix (tokio-util's default).
/// let plain = LengthDelimited::builder().build().unwrap();
/// // A game header: u16 LE opcode, then u32 LE body length.
/// let game = LengthDelimited::builder()
///     .length_field_offset(2)
///     .little_endian()
///     .header_len(6)
///     .build()
///     .unwrap();
/// // An 8-byte header: u32 LE length, kind, flags, u16 LE room.
/// let eight = LengthDelimited::builder().little_endian().header_len(8).build().unwrap();
///
/// let h = game.encode_header(&HeaderBytes::new(&[7, 0, 0, 0, 0, 0]), 3).unwrap();
/// assert_eq!(h.as_slice(), &[7, 0, 3, 0, 0, 0]);
/// let info = game.decode_header(&[7, 0, 3, 0, 0, 0, b'a']).unwrap().unwrap();
/// assert_eq!((info.header_len, info.body_len, info.header.as_slice()[0]), (6, 3, 7));
/// assert_eq!(plain.encode_header(&HeaderBytes::EMPTY, 5).unwrap().as_slice(), &[0, 0, 0, 5]);
/// assert_eq!(eight.decode_header(&[1, 0, 0, 0, 5, 0, 3, 0]).unwrap().unwrap().body_len, 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LengthDelimited {
    offset: u8,
    width: u8,
    header_len: u8,
    endian: Endian,
    adjustment: i64,
    max_body: usize,
}

impl Default for LengthDelimited {
    /// A 4-byte big-endian length prefix, 10 KiB body limit.
    fn default() -> Self {
        LengthDelimited {
            offset: 0,
            width: 4,
            header_len: 4,
            endian: Endian::Big,
            adjustment: 0,
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

/// Builds a [`LengthDelimited`] framing; every setting is checked by
/// [`build`](Builder::build).
#[derive(Debug, Clone, Copy)]
pub struct Builder {
    offset: usize,
    width: usize,
    header_len: Option<usize>,
    endian: Endian,
    adjustment: i64,
    max_body: usize,
}

/// A [`Builder`] setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The length field is not 1, 2, 4 or 8 bytes wide.
    #[error("length field width {0} is not 1, 2, 4 or 8")]
    Width(usize),
    /// The length field does not lie inside the header, or the header is
    /// longer than `MAX_HEADER_LEN`.
    #[error("length field at {offset}..{end} does not fit a {header_len}-byte header (max 16)")]
    Layout {
        /// Field offset.
        offset: usize,
        /// Field end.
        end: usize,
        /// Header length.
        header_len: usize,
    },
}

impl Builder {
    /// Where the length field starts in the header (default 0).
    pub fn length_field_offset(&mut self, offset: usize) -> &mut Self {
        self.offset = offset;
        self
    }

    /// The length field's width in bytes: 1, 2, 4 (default) or 8.
    pub fn length_field_length(&mut self, width: usize) -> &mut Self {
        self.width = width;
        self
    }

    /// The whole header's length (default: the end of the length field).
    pub fn header_len(&mut self, len: usize) -> &mut Self {
        self.header_len = Some(len);
        self
    }

    /// Added to the field's value to get the body length (default 0).
    pub fn length_adjustment(&mut self, adjustment: i64) -> &mut Self {
        self.adjustment = adjustment;
        self
    }

    /// Big-endian length field (the default).
    pub fn big_endian(&mut self) -> &mut Self {
        self.endian = Endian::Big;
        self
    }

    /// Little-endian length field.
    pub fn little_endian(&mut self) -> &mut Self {
        self.endian = Endian::Little;
        self
    }

    /// The largest body accepted (default [`DEFAULT_MAX_BODY`]).
    pub fn max_body(&mut self, max: usize) -> &mut Self {
        self.max_body = max;
        self
    }

    /// The framing, or why these settings cannot work.
    pub fn build(&self) -> Result<LengthDelimited, BuildError> {
        if !matches!(self.width, 1 | 2 | 4 | 8) {
            return Err(BuildError::Width(self.width));
        }
        let end = self.offset + self.width;
        let header_len = self.header_len.unwrap_or(end);
        if end > header_len || header_len > MAX_HEADER_LEN {
            return Err(BuildError::Layout {
                offset: self.offset,
                end,
                header_len,
            });
        }
        Ok(LengthDelimited {
            offset: self.offset as u8,
            width: self.width as u8,
            header_len: header_len as u8,
            endian: self.endian,
            adjustment: self.adjustment,
            max_body: self.max_body,
        })
    }
}

impl LengthDelimited {
    /// A builder starting from the defaults (4-byte big-endian prefix).
    pub fn builder() -> Builder {
        Builder {
            offset: 0,
            width: 4,
            header_len: None,
            endian: Endian::Big,
            adjustment: 0,
            max_body: DEFAULT_MAX_BODY,
        }
    }

    /// The same framing with another body limit.
    pub fn with_max_body(mut self, max: usize) -> LengthDelimited {
        self.max_body = max;
        self
    }

    /// Header length in bytes.
    #[inline]
    pub fn header_len(&self) -> usize {
        self.header_len as usize
    }

    /// Reads the length field of a complete header (the common layouts
    /// as fixed-size loads; the rest through a padded copy).
    #[inline(always)]
    fn read_field(&self, h: &[u8]) -> u64 {
        let f = &h[self.offset as usize..];
        match (self.width, self.endian) {
            (4, Endian::Little) => u32::from_le_bytes([f[0], f[1], f[2], f[3]]) as u64,
            (4, Endian::Big) => u32::from_be_bytes([f[0], f[1], f[2], f[3]]) as u64,
            (2, Endian::Little) => u16::from_le_bytes([f[0], f[1]]) as u64,
            (2, Endian::Big) => u16::from_be_bytes([f[0], f[1]]) as u64,
            (1, _) => f[0] as u64,
            (_, endian) => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&f[..8]);
                match endian {
                    Endian::Little => u64::from_le_bytes(b),
                    Endian::Big => u64::from_be_bytes(b),
                }
            }
        }
    }

    /// The body length a complete header announces, checked against the
    /// adjustment and the limit; `Ok(None)` if `src` holds less than a
    /// header. For framings built on this one that parse the rest of the
    /// header themselves (no [`HeaderBytes`] copy).
    ///
    /// ```
    /// let f = netbuf::framing::LengthDelimited::default();
    /// assert_eq!(f.decode_len(&[0, 0, 1, 0, 9]).unwrap(), Some(256));
    /// assert_eq!(f.decode_len(&[0, 0]).unwrap(), None);
    /// ```
    #[inline(always)]
    pub fn decode_len(&self, src: &[u8]) -> Result<Option<usize>, DecodeError> {
        let Some(h) = src.get(..self.header_len as usize) else {
            return Ok(None);
        };
        let field = self.read_field(h);
        let body_len = if self.adjustment == 0 {
            field
        } else {
            match field.checked_add_signed(self.adjustment) {
                Some(l) => l,
                None if self.adjustment < 0 => return Err(below_adjustment()),
                None => u64::MAX,
            }
        };
        if body_len > self.max_body as u64 {
            return Err(too_large(body_len, self.max_body));
        }
        Ok(Some(body_len as usize))
    }
}

#[cold]
#[inline(never)]
fn below_adjustment() -> DecodeError {
    DecodeError::malformed("length field below the length adjustment")
}

#[cold]
#[inline(never)]
fn too_large(len: u64, max: usize) -> DecodeError {
    DecodeError::FrameTooLarge { len, max }
}

impl Framing for LengthDelimited {
    type Header = HeaderBytes;

    #[inline(always)]
    fn decode_header(&self, src: &[u8]) -> Result<Option<FrameInfo<HeaderBytes>>, DecodeError> {
        let Some(body_len) = self.decode_len(src)? else {
            return Ok(None);
        };
        let header_len = self.header_len as usize;
        Ok(Some(FrameInfo {
            header: HeaderBytes::new(&src[..header_len]),
            header_len,
            body_len,
        }))
    }

    /// Copies `header` (its length must be the framing's header length;
    /// an empty one means all zeros) and writes the length field.
    #[inline]
    fn encode_header(
        &self,
        header: &HeaderBytes,
        body_len: usize,
    ) -> Result<HeaderBytes, EncodeError> {
        let too_large = EncodeError::BodyTooLarge {
            len: body_len,
            max: self.max_body,
        };
        if body_len > self.max_body {
            return Err(too_large);
        }
        let field = i128::from(body_len as u64) - i128::from(self.adjustment);
        let width_max = if self.width == 8 {
            u64::MAX as i128
        } else {
            (1i128 << (8 * self.width)) - 1
        };
        if !(0..=width_max).contains(&field) {
            return Err(too_large);
        }
        let header_len = self.header_len as usize;
        let mut out = match header.len() {
            0 => HeaderBytes::new(&[0; MAX_HEADER_LEN][..header_len]),
            n if n == header_len => *header,
            _ => {
                return Err(EncodeError::InvalidHeader(
                    "header length differs from the framing's",
                ));
            }
        };
        let (off, w) = (self.offset as usize, self.width as usize);
        let dst = &mut out.as_mut_slice()[off..off + w];
        match self.endian {
            Endian::Little => dst.copy_from_slice(&(field as u64).to_le_bytes()[..w]),
            Endian::Big => dst.copy_from_slice(&(field as u64).to_be_bytes()[8 - w..]),
        }
        Ok(out)
    }

    #[inline]
    fn max_body(&self) -> usize {
        self.max_body
    }

    #[inline]
    fn max_header_len(&self) -> usize {
        self.header_len as usize
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn builder_rejects_impossible_layouts() {
        assert_eq!(
            LengthDelimited::builder().length_field_length(3).build(),
            Err(BuildError::Width(3))
        );
        assert!(matches!(
            LengthDelimited::builder()
                .length_field_offset(2)
                .header_len(4)
                .build(),
            Err(BuildError::Layout { .. })
        ));
        assert!(matches!(
            LengthDelimited::builder().header_len(17).build(),
            Err(BuildError::Layout { .. })
        ));
    }

    #[test]
    fn every_width_and_endianness_roundtrips() {
        for width in [1, 2, 4, 8] {
            for big in [false, true] {
                let mut b = LengthDelimited::builder();
                b.length_field_offset(1)
                    .length_field_length(width)
                    .max_body(200);
                if big {
                    b.big_endian();
                } else {
                    b.little_endian();
                }
                let f = b.build().unwrap();
                for len in [0, 1, 200] {
                    let h = f.encode_header(&HeaderBytes::EMPTY, len).unwrap();
                    assert_eq!(h.len(), 1 + width);
                    let info = f.decode_header(h.as_slice()).unwrap().unwrap();
                    assert_eq!(info.body_len, len);
                    assert_eq!(f.decode_header(&h.as_slice()[..width]).unwrap(), None);
                }
                assert!(f.encode_header(&HeaderBytes::EMPTY, 201).is_err());
            }
        }
    }

    #[test]
    fn adjustment_and_limits() {
        // The field counts the whole frame (header included).
        let f = LengthDelimited::builder()
            .length_adjustment(-4)
            .max_body(10)
            .build()
            .unwrap();
        let h = f.encode_header(&HeaderBytes::EMPTY, 6).unwrap();
        assert_eq!(h.as_slice(), &[0, 0, 0, 10]);
        assert_eq!(
            f.decode_header(&[0, 0, 0, 10]).unwrap().unwrap().body_len,
            6
        );
        assert!(matches!(
            f.decode_header(&[0, 0, 0, 3]),
            Err(DecodeError::Malformed(_))
        ));
        assert_eq!(
            f.decode_header(&[0xff, 0, 0, 0]),
            Err(DecodeError::FrameTooLarge {
                len: 0xff00_0000 - 4,
                max: 10
            })
        );
        // A 1-byte field cannot say 256.
        let one = LengthDelimited::builder()
            .length_field_length(1)
            .max_body(1000)
            .build()
            .unwrap();
        assert!(one.encode_header(&HeaderBytes::EMPTY, 256).is_err());
        assert!(matches!(
            one.encode_header(&HeaderBytes::new(&[0, 0]), 1),
            Err(EncodeError::InvalidHeader(_))
        ));
    }
}
