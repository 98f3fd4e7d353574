//! [`LinearBuffer`]: a linear receive buffer with lazy compaction.

use core::cell::Cell;
use core::marker::PhantomData;
use std::io::{self, Read};

use allocator_api2::alloc::Allocator;

use super::framing::{self, DecodeError, Frame, Framing};
use super::length_delimited::LengthDelimited;
use super::uninit::ReadUninit;
use crate::{Message, MessagePool};

mod direct;

use direct::Direct;

/// Default capacity of a [`LinearBuffer`]: 16 KiB.
pub const DEFAULT_RECV_CAPACITY: usize = 16 * 1024;

/// The largest read a [`LinearBuffer`] with direct bodies (see
/// [`LinearBuffer::set_direct_threshold`]) makes right after a direct body
/// completed: enough for the next frame's header and a few small frames,
/// little of a large body (the bytes of a body that land in the buffer are
/// moved into its message: at most this many per large frame).
pub const DIRECT_HEAD_READ: usize = 512;

/// The largest read a [`LinearBuffer`] with no storage makes (into a stack
/// buffer, so that a read that brings nothing allocates nothing; see
/// [`LinearBuffer::release_if_empty`]).
pub const PROBE_READ: usize = 512;

// `read_probe` does not apply the short read after a direct body: it never
// reads more than the short read would.
const _: () = assert!(PROBE_READ <= DIRECT_HEAD_READ);

/// When a [`LinearBuffer`] moves buffered bytes to the front.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compaction {
    /// Only when the free tail is too small for the frame still needed,
    /// or smaller than the buffer's minimum read (see
    /// [`LinearBuffer::set_min_read`]; 0 makes the rule strict). Since the
    /// frames already complete are decoded before reading, what moves is at
    /// most one partial frame. When everything is consumed the cursors are
    /// reset for free. The default.
    #[default]
    Lazy,
    /// Before every read, whenever any byte is consumed: the naive
    /// strategy, kept to measure against.
    EveryRead,
}

/// Counters of a receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecvStats {
    /// Bytes read into the buffer.
    pub bytes_read: u64,
    /// Frames decoded.
    pub frames: u64,
    /// Times buffered bytes were moved to the front.
    pub compactions: u64,
    /// Bytes moved by those compactions.
    pub bytes_moved: u64,
    /// Times the cursors were reset for free (everything consumed).
    pub resets: u64,
    /// Body bytes copied out of the buffer into messages
    /// ([`LinearBuffer::next_message`], including the part of a direct
    /// body that had landed in the buffer before it was staged).
    pub bytes_copied: u64,
    /// Bodies received straight into their own message (see
    /// [`LinearBuffer::set_direct_threshold`]).
    pub direct_bodies: u64,
    /// Bytes of direct bodies' messages zeroed before a read:
    /// [`LinearBuffer::read_from`] must hand [`Read::read`] initialised
    /// memory (each body's bytes past those already received, once);
    /// [`LinearBuffer::read_from_uninit`] zeroes none.
    pub bytes_zeroed: u64,
    /// Reads made with no storage held, into a stack buffer of at most
    /// [`PROBE_READ`] bytes (see [`LinearBuffer::release_if_empty`]).
    pub probe_reads: u64,
}

/// A linear receive buffer owned by one IO thread (it is `Send`, not
/// `Sync`: no lock, no atomic).
///
/// Reads from any [`std::io::Read`] into its free tail and decodes frames
/// in place. Compaction is lazy: when everything is consumed the cursors go
/// back to the start for free; buffered bytes are moved only when the free
/// tail cannot hold the rest of the frame being received. The storage is
/// taken on the first read, grows while a frame larger than the capacity
/// is received (up to one maximal frame: header + body limit, so a valid
/// frame always fits) and is given back by
/// [`release_if_empty`](Self::release_if_empty); a frame over the limit is
/// a [`DecodeError`] that closes this session only.
///
/// ```
/// use netbuf::LinearBuffer;
/// use netbuf::framing::{HeaderBytes, LengthDelimited, encode_frame_into};
///
/// let framing = LengthDelimited::default(); // 4-byte big-endian length
/// let mut wire = Vec::new();
/// encode_frame_into(&framing, &mut wire, &HeaderBytes::EMPTY, b"ping").unwrap();
/// encode_frame_into(&framing, &mut wire, &HeaderBytes::EMPTY, b"").unwrap();
///
/// let mut buf = LinearBuffer::with_framing(framing);
/// let mut socket = &wire[..]; // any `Read`
/// while buf.read_from(&mut socket).unwrap() > 0 {}
///
/// let f = buf.next_frame().unwrap().unwrap();
/// assert_eq!(f.body, b"ping");
/// let pool = netbuf::MessagePool::new();
/// let (h, body) = buf.next_message(&pool).unwrap().unwrap(); // kept: one copy
/// assert_eq!((h.as_slice(), body.len()), (&[0u8, 0, 0, 0][..], 0));
/// assert!(buf.next_frame().unwrap().is_none());
/// ```
#[derive(Debug)]
pub struct LinearBuffer<F = LengthDelimited> {
    /// The storage: empty until the first read, and again after
    /// [`release_if_empty`](Self::release_if_empty).
    buf: Box<[u8]>,
    /// The capacity the storage has when allocated.
    cap: usize,
    start: usize,
    end: usize,
    framing: F,
    compaction: Compaction,
    min_read: usize,
    stats: RecvStats,
    /// Bodies of at least this many bytes are received into their own
    /// message (`usize::MAX`: never).
    direct_threshold: usize,
    /// The large body being received, if any.
    direct: Option<Direct>,
    /// A completed direct body viewed by the last `next_frame`.
    viewed: Option<Message>,
    /// A direct body just completed: the next read is a short one.
    after_direct: bool,
    _not_sync: PhantomData<Cell<()>>,
}

impl Default for LinearBuffer {
    fn default() -> Self {
        LinearBuffer::new()
    }
}

impl LinearBuffer {
    /// A lazy buffer of [`DEFAULT_RECV_CAPACITY`] with the default framing
    /// (a 4-byte big-endian length prefix, 10 KiB body limit).
    pub fn new() -> LinearBuffer {
        LinearBuffer::with_framing(LengthDelimited::default())
    }
}

impl<F: Framing> LinearBuffer<F> {
    /// A lazy buffer of [`DEFAULT_RECV_CAPACITY`] for `framing`.
    pub fn with_framing(framing: F) -> LinearBuffer<F> {
        LinearBuffer::with_config(DEFAULT_RECV_CAPACITY, framing, Compaction::Lazy)
    }

    /// A buffer of `capacity` bytes. A frame larger than that (up to the
    /// framing's `max_header_len() + max_body()`) grows the storage while it
    /// is received; [`release_if_empty`](Self::release_if_empty) shrinks it
    /// back. So a session allowed 2 MiB frames holds 2 MiB only while it
    /// receives one.
    pub fn with_config(capacity: usize, framing: F, compaction: Compaction) -> LinearBuffer<F> {
        let capacity = capacity.max(framing.max_header_len() + 1);
        LinearBuffer {
            buf: Box::default(),
            cap: capacity,
            start: 0,
            end: 0,
            framing,
            compaction,
            min_read: capacity / 4,
            stats: RecvStats::default(),
            direct_threshold: usize::MAX,
            direct: None,
            viewed: None,
            after_direct: false,
            _not_sync: PhantomData,
        }
    }

    /// The same buffer that compacts before every read (for comparison).
    pub fn compact_every_read(capacity: usize, framing: F) -> LinearBuffer<F> {
        LinearBuffer::with_config(capacity, framing, Compaction::EveryRead)
    }

    /// Capacity in bytes (allocated on the first read, see
    /// [`allocated`](Self::allocated)).
    #[inline]
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Bytes of storage held now: 0 before the first read and after
    /// [`release_if_empty`](Self::release_if_empty); [`PROBE_READ`] after a
    /// first read that brought fewer bytes than that (the next read takes
    /// the capacity); else the capacity, or more while a frame larger than
    /// the capacity is received.
    #[inline]
    pub fn allocated(&self) -> usize {
        self.buf.len()
    }

    /// Hands the storage back to the allocator if no byte is buffered
    /// (the next read that brings bytes takes it again: a read with no
    /// storage goes to a [`PROBE_READ`]-byte stack buffer first, so polling
    /// an idle connection allocates nothing), and returns the bytes
    /// released. An idle session then holds no receive memory: call it when
    /// a session goes quiet, not after every read (taking the storage again
    /// costs an allocation that zeroes it).
    ///
    /// ```
    /// let mut buf = netbuf::LinearBuffer::new();
    /// assert_eq!(buf.allocated(), 0); // nothing until the first read
    /// buf.fill_from_slice(b"\0\0\0\x01x");
    /// assert_eq!(buf.allocated(), 16 * 1024);
    /// assert_eq!(buf.release_if_empty(), 0); // a frame is buffered
    /// assert!(buf.next_frame().unwrap().is_some());
    /// assert_eq!(buf.release_if_empty(), 16 * 1024);
    /// assert_eq!(buf.allocated(), 0);
    /// ```
    pub fn release_if_empty(&mut self) -> usize {
        if !self.is_empty() || self.buf.is_empty() {
            return 0;
        }
        let n = self.buf.len();
        self.buf = Box::default();
        self.viewed = None;
        self.start = 0;
        self.end = 0;
        n
    }

    /// Bytes received and not yet consumed (the bytes of a direct body
    /// received so far included; its header is not: it was consumed when
    /// the body was staged).
    #[inline]
    pub fn buffered(&self) -> usize {
        self.end - self.start + self.direct.as_ref().map_or(0, |d| d.msg.len())
    }

    /// Whether no byte is buffered.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.start == self.end && self.direct.is_none()
    }

    /// The framing of this session.
    #[inline]
    pub fn framing(&self) -> &F {
        &self.framing
    }

    /// Changes the framing (e.g. a login raised the body limit). The
    /// capacity grows if a maximal frame would no longer fit.
    pub fn set_framing(&mut self, framing: F) {
        self.framing = framing;
        self.cap = self.cap.max(self.framing.max_header_len() + 1);
    }

    /// The largest frame of the framing, header included.
    fn max_frame(&self) -> usize {
        self.framing
            .max_header_len()
            .saturating_add(self.framing.max_body())
    }

    /// Grows the storage to hold `need` bytes from the front (a frame
    /// larger than the buffer), moving what is buffered to the front.
    #[cold]
    fn grow(&mut self, need: usize) {
        let len = need
            .max(self.buf.len().saturating_mul(2))
            .min(self.max_frame())
            .max(need);
        let mut bigger = vec![0u8; len].into_boxed_slice();
        let n = self.buffered();
        bigger[..n].copy_from_slice(&self.buf[self.start..self.end]);
        self.buf = bigger;
        self.start = 0;
        self.end = n;
    }

    /// The smallest free tail a read is offered before a lazy buffer
    /// compacts (default: a quarter of the capacity). Without it, a tail
    /// that still fits the pending frame could be a few bytes long, and
    /// each read (a system call on a socket) would return only those.
    pub fn set_min_read(&mut self, bytes: usize) {
        self.min_read = bytes;
    }

    /// The smallest free tail offered to a read (see
    /// [`set_min_read`](Self::set_min_read)).
    pub fn min_read(&self) -> usize {
        self.min_read
    }

    /// The compaction strategy.
    pub fn compaction(&self) -> Compaction {
        self.compaction
    }

    /// Counters so far.
    #[inline]
    pub fn stats(&self) -> RecvStats {
        self.stats
    }

    /// The unconsumed bytes (raw access, for a protocol decoded by hand).
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// The first `n` unconsumed bytes without consuming them, or `None` if
    /// fewer are buffered.
    ///
    /// ```
    /// let mut buf = netbuf::LinearBuffer::new();
    /// buf.fill_from_slice(b"\x01\x00hello");
    /// assert_eq!(buf.peek(2), Some(&[1u8, 0][..]));
    /// buf.consume(2);
    /// assert_eq!(buf.as_slice(), b"hello");
    /// assert_eq!(buf.peek(6), None);
    /// ```
    #[inline]
    pub fn peek(&self, n: usize) -> Option<&[u8]> {
        self.as_slice().get(..n)
    }

    /// Consumes `n` buffered bytes (raw access).
    ///
    /// # Panics
    /// If `n` is more than [`buffered`](Self::buffered) (a caller bug, as
    /// for `bytes::Buf::advance`).
    #[inline]
    pub fn consume(&mut self, n: usize) {
        let buffered = self.buffered();
        assert!(
            n <= buffered,
            "consume({n}) past the {buffered} buffered bytes"
        );
        self.start += n;
    }

    /// Bytes the frame being received still needs from `start`, at least a
    /// maximal header's worth.
    fn frame_needed(&self) -> usize {
        match framing::decode_checked(&self.framing, self.as_slice()) {
            Ok(Some(info)) => info.frame_len(),
            // An error is reported by the decoder; do not compact for it.
            _ => self.framing.max_header_len(),
        }
    }

    fn compact(&mut self) {
        let n = self.buffered();
        self.buf.copy_within(self.start..self.end, 0);
        self.stats.compactions += 1;
        self.stats.bytes_moved += n as u64;
        self.start = 0;
        self.end = n;
    }

    /// Prepares the free tail for a read and returns it.
    fn prepare_tail(&mut self) -> &mut [u8] {
        if self.buf.is_empty() {
            // Taken on the first read (or the first after a release).
            self.buf = vec![0u8; self.cap].into_boxed_slice();
        }
        if self.start == self.end {
            if self.start != 0 {
                self.stats.resets += 1;
            }
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 {
            let compact = match self.compaction {
                Compaction::EveryRead => true,
                Compaction::Lazy => {
                    let tail = self.buf.len() - self.end;
                    tail == 0
                        || tail < self.min_read
                        || self.buf.len() - self.start < self.frame_needed()
                }
            };
            if compact {
                self.compact();
            }
        }
        // Small storage taken by a probe read (`read_probe`): the full
        // capacity once a read would be offered less than `min_read`.
        if self.buf.len() < self.cap && self.buf.len() - self.end < self.min_read.max(1) {
            self.grow(self.cap);
        }
        // A partial frame at the front that the storage cannot hold: grow
        // (never past one maximal frame).
        if self.start == 0 && self.end > 0 && self.buf.len() < self.max_frame() {
            let need = self.frame_needed();
            if need > self.buf.len() {
                self.grow(need);
            }
        }
        &mut self.buf[self.end..]
    }

    /// The free tail to fill directly (e.g. from a socket API that is not
    /// `Read`), compacting first if needed; commit with
    /// [`commit`](Self::commit). Empty only when the buffer is full of
    /// complete frames that were not decoded yet.
    pub fn free_tail(&mut self) -> &mut [u8] {
        self.prepare_tail()
    }

    /// Marks `n` bytes of the free tail as received (clamped to the tail).
    pub fn commit(&mut self, n: usize) {
        let n = n.min(self.buf.len() - self.end);
        self.end += n;
        self.stats.bytes_read += n as u64;
    }

    /// Reads once from `r` into the free tail and returns the bytes read
    /// (`0` at end of stream). Decode the frames already complete before
    /// reading again: if the buffer is full of them this returns an
    /// [`io::ErrorKind::OutOfMemory`] error instead of a misleading `0`.
    /// Errors from `r` (including `Interrupted` and `WouldBlock`) are
    /// returned as they are.
    pub fn read_from<R: Read + ?Sized>(&mut self, r: &mut R) -> io::Result<usize> {
        self.viewed = None;
        if self.direct_pending() {
            return self.read_direct(r);
        }
        self.read_tail(r)
    }

    /// [`read_from`](Self::read_from) for a reader that can fill
    /// uninitialised memory ([`ReadUninit`]: std's and mio's sockets): a
    /// direct body (see [`set_direct_threshold`](Self::set_direct_threshold))
    /// is read into its message's spare capacity without zeroing it first
    /// (`read_from` zeroes each body once: a 256 KiB memset for a 256 KiB
    /// body; see [`RecvStats::bytes_zeroed`]). Everything else is the same.
    ///
    /// ```
    /// use netbuf::framing::{HeaderBytes, LengthDelimited, encode_frame_into};
    /// use netbuf::{LinearBuffer, MessagePool};
    ///
    /// let framing = LengthDelimited::default().with_max_body(1 << 20);
    /// let mut wire = Vec::new();
    /// encode_frame_into(&framing, &mut wire, &HeaderBytes::EMPTY, &[7u8; 100_000]).unwrap();
    /// let pool = MessagePool::new();
    /// let mut buf = LinearBuffer::with_framing(framing);
    /// buf.set_direct_threshold(32 << 10);
    /// let mut socket = &wire[..]; // `&[u8]` is a `ReadUninit`, as sockets are
    /// let mut bodies = 0;
    /// while buf.read_from_uninit(&mut socket).unwrap() > 0 {
    ///     while let Some((_, body)) = buf.next_message(&pool).unwrap() {
    ///         assert!(body.iter().all(|&b| b == 7));
    ///         bodies += 1;
    ///     }
    /// }
    /// assert_eq!((bodies, buf.stats().direct_bodies), (1, 1));
    /// assert_eq!(buf.stats().bytes_zeroed, 0);
    /// ```
    pub fn read_from_uninit<R: ReadUninit + ?Sized>(&mut self, r: &mut R) -> io::Result<usize> {
        self.viewed = None;
        if self.direct_pending() {
            return self.read_direct_uninit(r);
        }
        self.read_tail(r)
    }

    /// Reads once into the free tail of the buffer.
    #[inline]
    fn read_tail<R: Read + ?Sized>(&mut self, r: &mut R) -> io::Result<usize> {
        if self.buf.is_empty() {
            return self.read_probe(r);
        }
        // The short read stays in force until it returns bytes (a
        // `WouldBlock` in between must not let a large body in).
        let short = self.after_direct;
        let tail = self.prepare_tail();
        let tail = if short && tail.len() > DIRECT_HEAD_READ {
            &mut tail[..DIRECT_HEAD_READ]
        } else {
            tail
        };
        if tail.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "receive buffer full of undecoded frames",
            ));
        }
        let room = tail.len();
        let n = r.read(tail)?;
        check_claim(n, room)?;
        self.end += n;
        self.stats.bytes_read += n as u64;
        if n > 0 {
            self.after_direct = false;
        }
        Ok(n)
    }

    /// Reads once with no storage held (before the first read, or after
    /// [`release_if_empty`](Self::release_if_empty)): into a small stack
    /// buffer, and only if bytes came is the storage taken and they are
    /// copied in. A readable event that brings nothing (`WouldBlock`, end of
    /// stream, an error) then allocates nothing, so an idle connection holds
    /// no receive memory even when it is polled. The copy is at most
    /// [`PROBE_READ`] bytes once per activation.
    #[cold]
    fn read_probe<R: Read + ?Sized>(&mut self, r: &mut R) -> io::Result<usize> {
        let mut probe = [0u8; PROBE_READ];
        // Never more than the storage will hold.
        let room = PROBE_READ.min(self.cap);
        self.stats.probe_reads += 1;
        let n = r.read(&mut probe[..room])?;
        check_claim(n, room)?;
        if n > 0 {
            if n < room {
                // The read drained the socket: a hello, a request, a join.
                // Storage the size of the probe holds it; the next read
                // takes the full capacity (`prepare_tail`). A burst of new
                // connections that each send a few bytes then costs
                // `PROBE_READ` each, not the capacity, until they send more.
                self.buf = probe[..room].into();
                self.start = 0;
                self.end = n;
            } else {
                let tail = self.prepare_tail();
                tail[..n].copy_from_slice(&probe[..n]);
                self.end += n;
            }
            self.stats.bytes_read += n as u64;
            self.after_direct = false;
        }
        Ok(n)
    }

    /// Copies as much of `data` as fits into the free tail, returning the
    /// bytes taken (for tests and for callers that already hold the bytes).
    pub fn fill_from_slice(&mut self, data: &[u8]) -> usize {
        self.viewed = None;
        let tail = self.prepare_tail();
        let n = tail.len().min(data.len());
        tail[..n].copy_from_slice(&data[..n]);
        self.end += n;
        self.stats.bytes_read += n as u64;
        n
    }

    /// Decodes the next complete frame as a view borrowing the buffer, or
    /// `Ok(None)` if it has not fully arrived. The frame is consumed.
    ///
    /// A header error is reported as soon as the header bytes are in,
    /// before the body arrives; the error repeats on later calls (the
    /// session is to be closed).
    #[inline]
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_, F::Header>>, DecodeError> {
        // Direct bodies are rare: one test on the hot path, the rest out of line.
        if self.direct.is_some() || self.viewed.is_some() {
            return self.next_frame_after_direct();
        }
        self.decode_in_place()
    }

    #[inline(always)]
    fn decode_in_place(&mut self) -> Result<Option<Frame<'_, F::Header>>, DecodeError> {
        match framing::decode_frame(&self.framing, &self.buf[self.start..self.end])? {
            Some((frame, used)) => {
                self.start += used;
                self.stats.frames += 1;
                Ok(Some(frame))
            }
            None => Ok(None),
        }
    }

    /// Decodes the next complete frame and copies its body, once, into a
    /// message from `pool` (a pooled block up to the block size), for
    /// handlers that keep or forward it ([`Message::freeze`] makes it a
    /// `SharedMessage` without copying).
    pub fn next_message<A: Allocator + Send + Sync + 'static>(
        &mut self,
        pool: &MessagePool<A>,
    ) -> Result<Option<(F::Header, Message)>, DecodeError> {
        self.viewed = None;
        if self.direct.is_some() {
            return self.take_direct();
        }
        let Some((frame, used)) = framing::decode_frame(&self.framing, self.as_slice())? else {
            if self.direct_threshold != usize::MAX
                && let Some(info) = framing::decode_checked(&self.framing, self.as_slice())?
                && info.body_len >= self.direct_threshold
            {
                self.stage_direct(info, pool)?;
            }
            return Ok(None);
        };
        let header = frame.header;
        let m = pool.message_from(frame.body)?;
        self.stats.bytes_copied += frame.body.len() as u64;
        self.start += used;
        self.stats.frames += 1;
        Ok(Some((header, m)))
    }

    /// At end of stream: `Ok(())` if no partial frame is left, else
    /// [`DecodeError::Truncated`] (or the header's error).
    pub fn finish(&self) -> Result<(), DecodeError> {
        if let Some(d) = &self.direct
            && d.msg.len() < d.need
        {
            return Err(DecodeError::Truncated {
                buffered: self.buffered(),
            });
        }
        framing::decode_checked(&self.framing, self.as_slice())?;
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Truncated {
                buffered: self.buffered(),
            })
        }
    }
}

/// A reader that reports more bytes than the `room` it was offered broke
/// `Read`'s contract: an error for this session, never a slice past the
/// buffer.
#[inline]
fn check_claim(n: usize, room: usize) -> io::Result<()> {
    if n > room {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "reader claimed more bytes than the buffer it was given",
        ));
    }
    Ok(())
}

#[cfg(all(test, not(loom)))]
mod tests;
