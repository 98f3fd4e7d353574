//! Direct bodies of a [`LinearBuffer`]: a large body received straight into
//! its own message instead of the buffer (see
//! [`LinearBuffer::set_direct_threshold`]).

use core::mem::MaybeUninit;
use std::io::{self, Read};

use allocator_api2::alloc::Allocator;

#[cfg(doc)]
use super::DIRECT_HEAD_READ;
use super::LinearBuffer;
use crate::recv::framing::{self, DecodeError, Frame, FrameInfo, Framing, MAX_HEADER_LEN};
use crate::recv::uninit::ReadUninit;
use crate::{Message, MessagePool};

/// A large body being received straight into its own message.
#[derive(Debug)]
pub(super) struct Direct {
    /// The frame's header bytes, decoded again when the body is complete
    /// (the buffer's type has no `Framing` bound to name its header type).
    pub(super) header: [u8; MAX_HEADER_LEN],
    pub(super) header_len: usize,
    pub(super) msg: Message,
    /// The body's length.
    pub(super) need: usize,
    /// Bytes of the message's spare capacity known to be initialised.
    pub(super) init: usize,
}

impl<F: Framing> LinearBuffer<F> {
    /// Receives bodies of at least `threshold` bytes straight into their
    /// own message, as libzmq's decoder does: once such a frame's header is
    /// in, [`next_message`](Self::next_message) allocates the body's
    /// message from its pool, moves the body bytes already buffered into
    /// it, and the reads that follow land in the message (capped at the
    /// body's end) instead of the buffer; the message is then handed over
    /// without a copy. The read right after a direct body is at most
    /// [`DIRECT_HEAD_READ`] bytes, so little of the next large body is
    /// copied. `usize::MAX` (the default) turns it off.
    ///
    /// Only `next_message` stages bodies (it has a pool); `next_frame`
    /// views a completed direct body in place.
    ///
    /// ```
    /// use netbuf::framing::{HeaderBytes, LengthDelimited, encode_frame_into};
    /// use netbuf::{LinearBuffer, MessagePool};
    ///
    /// let framing = LengthDelimited::default().with_max_body(1 << 20);
    /// let mut wire = Vec::new();
    /// for _ in 0..2 {
    ///     encode_frame_into(&framing, &mut wire, &HeaderBytes::EMPTY, &[7u8; 100_000]).unwrap();
    /// }
    /// // A socket stand-in that returns at most 16 KiB per read.
    /// struct Socket<'a>(&'a [u8]);
    /// impl std::io::Read for Socket<'_> {
    ///     fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
    ///         let n = buf.len().min(self.0.len()).min(16 << 10);
    ///         buf[..n].copy_from_slice(&self.0[..n]);
    ///         self.0 = &self.0[n..];
    ///         Ok(n)
    ///     }
    /// }
    /// let pool = MessagePool::new();
    /// let mut buf = LinearBuffer::with_framing(framing);
    /// buf.set_direct_threshold(32 << 10);
    /// let mut socket = Socket(&wire);
    /// let mut bodies = 0;
    /// while buf.read_from(&mut socket).unwrap() > 0 {
    ///     while let Some((_, body)) = buf.next_message(&pool).unwrap() {
    ///         assert_eq!(body.len(), 100_000);
    ///         bodies += 1;
    ///     }
    /// }
    /// assert_eq!((bodies, buf.stats().direct_bodies), (2, 2));
    /// // Copied: what the first read brought of the first body, and of the
    /// // second body what the short read after the first one brought.
    /// assert!(buf.stats().bytes_copied < (16 << 10) + 512);
    /// ```
    pub fn set_direct_threshold(&mut self, threshold: usize) {
        self.direct_threshold = threshold.max(1);
    }

    /// The direct-body threshold (see
    /// [`set_direct_threshold`](Self::set_direct_threshold)).
    pub fn direct_threshold(&self) -> usize {
        self.direct_threshold
    }

    /// A direct body is staged and not complete: the next read is its.
    #[inline]
    pub(super) fn direct_pending(&self) -> bool {
        self.direct.as_ref().is_some_and(|d| d.msg.len() < d.need)
    }

    /// Reads once into the direct body's message, up to the body's end.
    pub(super) fn read_direct<R: Read + ?Sized>(&mut self, r: &mut R) -> io::Result<usize> {
        let d = self.direct.as_mut().expect("caller checked");
        let room = d.need - d.msg.len();
        let spare = &mut d.msg.spare_capacity_mut()[..room];
        if d.init < room {
            // `Read::read` takes initialised memory: zero the part never
            // written, once per body.
            spare[d.init..].fill(MaybeUninit::new(0));
            self.stats.bytes_zeroed += (room - d.init) as u64;
            d.init = room;
        }
        // SAFETY: every byte of `spare` is initialised: `[0, init)` by an
        // earlier zeroing or read (it only shrinks as the length grows), the
        // rest just above. `MaybeUninit<u8>` and `u8` have the same layout.
        let dst = unsafe { core::slice::from_raw_parts_mut(spare.as_mut_ptr().cast::<u8>(), room) };
        let n = r.read(dst)?;
        super::check_claim(n, room)?;
        let len = d.msg.len() + n;
        // SAFETY: `n <= room`, so `len <= need <= capacity`, and every byte
        // up to it is initialised (see above).
        unsafe { d.msg.set_len(len) };
        d.init = room - n;
        self.stats.bytes_read += n as u64;
        Ok(n)
    }

    /// Reads once into the direct body's message, up to the body's end,
    /// without zeroing its spare capacity.
    pub(super) fn read_direct_uninit<R: ReadUninit + ?Sized>(
        &mut self,
        r: &mut R,
    ) -> io::Result<usize> {
        let d = self.direct.as_mut().expect("caller checked");
        let room = d.need - d.msg.len();
        let n = r.read_uninit(&mut d.msg.spare_capacity_mut()[..room])?;
        super::check_claim(n, room)?;
        let len = d.msg.len() + n;
        // SAFETY: `n <= room`, so `len <= need <= capacity`; the bytes up to
        // the old length were initialised before, and `ReadUninit`'s contract
        // says this read initialised the `n` spare bytes after them.
        unsafe { d.msg.set_len(len) };
        // The spare prefix known initialised shrinks by the bytes that became
        // the length (a `ReadUninit` never de-initialises a byte).
        d.init = d.init.saturating_sub(n);
        self.stats.bytes_read += n as u64;
        Ok(n)
    }

    /// Stages the incomplete frame `info` at `start` as a direct body: its
    /// header is consumed, its body bytes buffered so far move into a
    /// message of `pool` sized for the body (the buffer is then empty).
    pub(super) fn stage_direct<A: Allocator + Send + Sync + 'static>(
        &mut self,
        info: FrameInfo<F::Header>,
        pool: &MessagePool<A>,
    ) -> Result<(), DecodeError> {
        let mut msg = pool.alloc(info.body_len)?;
        let mut header = [0u8; MAX_HEADER_LEN];
        header[..info.header_len]
            .copy_from_slice(&self.buf[self.start..self.start + info.header_len]);
        let body = &self.buf[self.start + info.header_len..self.end];
        msg.extend_from_slice(body)
            .expect("message was allocated for the body");
        self.stats.bytes_copied += body.len() as u64;
        self.start = self.end;
        self.direct = Some(Direct {
            header,
            header_len: info.header_len,
            msg,
            need: info.body_len,
            init: 0,
        });
        Ok(())
    }

    /// The completed direct body, if there is one.
    pub(super) fn take_direct(&mut self) -> Result<Option<(F::Header, Message)>, DecodeError> {
        if self.direct.as_ref().is_none_or(|d| d.msg.len() < d.need) {
            return Ok(None);
        }
        let Some(d) = self.direct.take() else {
            return Ok(None);
        };
        let info = framing::decode_checked(&self.framing, &d.header[..d.header_len])?.ok_or(
            DecodeError::malformed("direct body's header no longer decodes"),
        )?;
        self.stats.frames += 1;
        self.stats.direct_bodies += 1;
        self.after_direct = true;
        Ok(Some((info.header, d.msg)))
    }

    /// [`next_frame`](Self::next_frame) with a direct body staged or viewed.
    #[cold]
    #[inline(never)]
    pub(super) fn next_frame_after_direct(
        &mut self,
    ) -> Result<Option<Frame<'_, F::Header>>, DecodeError> {
        self.viewed = None;
        if self.direct.is_none() {
            return self.decode_in_place();
        }
        let Some((header, m)) = self.take_direct()? else {
            return Ok(None);
        };
        let body = &self.viewed.insert(m)[..];
        Ok(Some(Frame { header, body }))
    }
}
