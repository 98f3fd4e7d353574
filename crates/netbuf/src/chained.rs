//! [`ChainedBuffer`]: a receive buffer made of a chain of pool blocks.

use core::cell::Cell;
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Read};

use allocator_api2::alloc::Allocator;
use bytes::buf::UninitSlice;
use bytes::{Buf, BufMut};

use crate::codec::{DecodeError, Frame, FrameCodec, FrameHeader, HEADER_LEN};
use crate::{Message, MessagePool};

/// Counters of a [`ChainedBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChainStats {
    /// Bytes read or written into the chain.
    pub bytes_read: u64,
    /// Frames decoded.
    pub frames: u64,
    /// Blocks taken from the pool.
    pub blocks_taken: u64,
    /// Frames whose borrowed view spanned blocks and was assembled into one
    /// pooled message (one copy).
    pub frames_assembled: u64,
}

/// A receive buffer made of a chain of blocks from a [`MessagePool`]
/// (each block a pooled [`Message`]).
///
/// An idle session holds **no** block (and no heap memory at all): blocks
/// are taken from the pool when bytes arrive and go back as soon as their
/// bytes are consumed, so 10,000 connections cost memory in proportion to
/// the bytes in flight, not to their number. A frame may span blocks.
///
/// It implements [`bytes::Buf`] (reading, with
/// [`chunks_vectored`](Buf::chunks_vectored) yielding [`IoSlice`]s for
/// `write_vectored`) and [`bytes::BufMut`] (filling, block by block), reads
/// from any [`Read`] straight into its blocks, and decodes frames like
/// [`RecvBuffer`](crate::RecvBuffer): a borrowed view when the frame lies in
/// one block, a view of a pooled message when it spans blocks (one copy),
/// or an owned pooled [`Message`] with the body copied once.
///
/// Blocks consumed through a borrowed frame view are returned at the next
/// call on the buffer (the view borrows them until then); a decode loop
/// that runs until `next_frame` returns `Ok(None)` leaves nothing held.
///
/// ```
/// use bytes::Buf;
/// use netbuf::codec::{Kind, encode_frame_into};
/// use netbuf::{ChainedBuffer, MessagePool};
///
/// let pool = MessagePool::new();
/// let mut buf = ChainedBuffer::new(pool.clone());
/// assert_eq!(buf.blocks_held(), 0); // idle: no memory
///
/// let mut wire = Vec::new();
/// encode_frame_into(&mut wire, Kind::EchoRequest, 0, &[7u8; 6000]).unwrap();
/// let mut socket = &wire[..];
/// while buf.read_from(&mut socket).unwrap() > 0 {}
/// assert_eq!(buf.blocks_held(), 2); // 6008 bytes in 4 KiB blocks
///
/// let f = buf.next_frame().unwrap().unwrap(); // spans blocks: assembled once
/// assert_eq!(f.body.len(), 6000);
/// assert!(buf.next_frame().unwrap().is_none());
/// assert_eq!(buf.blocks_held(), 0);
/// ```
#[derive(Debug)]
pub struct ChainedBuffer {
    pool: MessagePool,
    block_size: usize,
    blocks: VecDeque<Message>,
    /// Bytes of the front block already consumed.
    head: usize,
    /// Unconsumed bytes in the chain.
    len: usize,
    /// Bytes past the back block's length known to be initialised.
    tail_init: usize,
    codec: FrameCodec,
    /// The last frame that spanned blocks, alive while its view is.
    assembled: Option<Message>,
    stats: ChainStats,
    _not_sync: PhantomData<Cell<()>>,
}

impl ChainedBuffer {
    /// A chain of blocks of `pool`'s block size (its largest class, 4 KiB
    /// by default) with the default 10 KiB body limit.
    pub fn new(pool: MessagePool) -> ChainedBuffer {
        let block_size = pool.class_sizes().last().copied().unwrap_or(4096);
        ChainedBuffer::with_config(pool, block_size, FrameCodec::new())
    }

    /// A chain of blocks of at least `block_size` bytes (at least 16).
    /// Choose a size class of `pool`, or blocks come from its fallback
    /// allocator.
    pub fn with_config(pool: MessagePool, block_size: usize, codec: FrameCodec) -> ChainedBuffer {
        ChainedBuffer {
            pool,
            block_size: block_size.max(16),
            blocks: VecDeque::new(),
            head: 0,
            len: 0,
            tail_init: 0,
            codec,
            assembled: None,
            stats: ChainStats::default(),
            _not_sync: PhantomData,
        }
    }

    /// Bytes received and not yet consumed.
    #[inline]
    pub fn buffered(&self) -> usize {
        self.len
    }

    /// Whether no byte is buffered.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Blocks held right now (0 for an idle session).
    pub fn blocks_held(&self) -> usize {
        self.blocks.len() + usize::from(self.assembled.is_some())
    }

    /// The requested block size.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// The codec (body limit).
    pub fn codec(&self) -> FrameCodec {
        self.codec
    }

    /// Changes the body limit.
    pub fn set_codec(&mut self, codec: FrameCodec) {
        self.codec = codec;
    }

    /// The pool the blocks come from.
    pub fn pool(&self) -> &MessagePool {
        &self.pool
    }

    /// Counters so far.
    pub fn stats(&self) -> ChainStats {
        self.stats
    }

    /// Non-empty slices of the unconsumed bytes, in order.
    fn slices(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.blocks
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if i == 0 {
                    &b[self.head.min(b.len())..]
                } else {
                    &b[..]
                }
            })
            .filter(|s| !s.is_empty())
    }

    /// Drops the front block and resets what depends on it.
    fn pop_front(&mut self) {
        self.blocks.pop_front();
        self.head = 0;
        if self.blocks.is_empty() {
            self.tail_init = 0;
            // An idle session holds no heap memory at all.
            self.blocks = VecDeque::new();
        }
    }

    /// Returns consumed (or never written) front blocks and the last
    /// assembled frame to the pool. Called at the start of every mutating
    /// method, once no borrowed view can be alive.
    fn settle(&mut self) {
        self.assembled = None;
        while let Some(f) = self.blocks.front() {
            if self.head < f.len() {
                break;
            }
            self.pop_front();
        }
    }

    /// Makes sure the back block has spare capacity.
    fn reserve_block(&mut self) -> Result<(), crate::PoolError> {
        if self
            .blocks
            .back()
            .is_none_or(|b| b.remaining_capacity() == 0)
        {
            let m = self.pool.alloc(self.block_size)?;
            self.blocks.push_back(m);
            self.tail_init = 0;
            self.stats.blocks_taken += 1;
        }
        Ok(())
    }

    /// Reads once from `r` straight into the back block (taking a block
    /// from the pool if needed) and returns the bytes read (`0` at end of
    /// stream). Errors from `r` are returned as they are; a pool failure
    /// is an [`io::ErrorKind::OutOfMemory`] error.
    pub fn read_from<R: Read + ?Sized>(&mut self, r: &mut R) -> io::Result<usize> {
        self.settle();
        self.reserve_block()
            .map_err(|e| io::Error::new(io::ErrorKind::OutOfMemory, e))?;
        let tail_init = self.tail_init;
        let back = self
            .blocks
            .back_mut()
            .expect("reserve_block pushed a block");
        let spare = back.spare_capacity_mut();
        let room = spare.len();
        if tail_init < room {
            // `Read::read` takes initialised memory: zero the part of the
            // tail never written, once per block.
            spare[tail_init..].fill(MaybeUninit::new(0));
        }
        // SAFETY: every byte of `spare` is initialised: `[0, tail_init)` was
        // written by an earlier zeroing or read into this same block (it only
        // shrinks as the length grows), the rest was zeroed just above.
        // `MaybeUninit<u8>` and `u8` have the same layout.
        let dst = unsafe { core::slice::from_raw_parts_mut(spare.as_mut_ptr().cast::<u8>(), room) };
        let res = r.read(dst);
        self.tail_init = room;
        let n = match res {
            Ok(n) if n <= room => n,
            Ok(_) => {
                self.settle();
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "reader claimed more bytes than the buffer it was given",
                ));
            }
            Err(e) => {
                self.settle();
                return Err(e);
            }
        };
        let back = self.blocks.back_mut().expect("still there");
        let new_len = back.len() + n;
        // SAFETY: `n <= room`, so `new_len <= capacity`, and the reader wrote
        // (or we zeroed) every byte up to it.
        unsafe { back.set_len(new_len) };
        self.tail_init = room - n;
        self.len += n;
        self.stats.bytes_read += n as u64;
        if n == 0 {
            self.settle(); // hand back a block that got nothing
        }
        Ok(n)
    }

    /// Copies the first `dst.len()` unconsumed bytes into `dst` without
    /// consuming them; returns how many were copied.
    pub fn peek_into(&self, dst: &mut [u8]) -> usize {
        let mut n = 0;
        for s in self.slices() {
            if n == dst.len() {
                break;
            }
            let k = s.len().min(dst.len() - n);
            dst[n..n + k].copy_from_slice(&s[..k]);
            n += k;
        }
        n
    }

    /// The header of the next frame, if its 8 bytes are in.
    fn peek_header(&self) -> Result<Option<FrameHeader>, DecodeError> {
        if self.len < HEADER_LEN {
            return Ok(None);
        }
        let mut h = [0u8; HEADER_LEN];
        self.peek_into(&mut h);
        FrameHeader::decode(&h, self.codec.max_body()).map(Some)
    }

    /// Consumes `n` buffered bytes into `m` (which has room).
    fn take_into(&mut self, m: &mut Message, mut n: usize) {
        while n > 0 {
            let chunk = self.chunk();
            let k = chunk.len().min(n);
            m.extend_from_slice(&chunk[..k])
                .expect("message was allocated for the body");
            self.advance(k);
            n -= k;
        }
    }

    /// Decodes the next complete frame as a view, or `Ok(None)` if it has
    /// not fully arrived; the frame is consumed. A frame inside one block
    /// is viewed in place; one spanning blocks is first assembled into a
    /// pooled message (one copy), released at the next call.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, DecodeError> {
        self.settle();
        let Some(header) = self.peek_header()? else {
            return Ok(None);
        };
        let flen = header.frame_len();
        if self.len < flen {
            return Ok(None);
        }
        self.stats.frames += 1;
        let head = self.head;
        if self.blocks[0].len() - head >= flen {
            self.head += flen;
            self.len -= flen;
            let body = &self.blocks[0][head + HEADER_LEN..head + flen];
            return Ok(Some(Frame { header, body }));
        }
        let mut m = self.pool.alloc(header.body_len())?;
        self.advance(HEADER_LEN);
        self.take_into(&mut m, header.body_len());
        self.stats.frames_assembled += 1;
        let body = &self.assembled.insert(m)[..];
        Ok(Some(Frame { header, body }))
    }

    /// Decodes the next complete frame and copies its body, once, into a
    /// message from `pool`, for handlers that keep or forward it.
    pub fn next_message<A: Allocator + Send + Sync + 'static>(
        &mut self,
        pool: &MessagePool<A>,
    ) -> Result<Option<(FrameHeader, Message)>, DecodeError> {
        self.settle();
        let Some(header) = self.peek_header()? else {
            return Ok(None);
        };
        if self.len < header.frame_len() {
            return Ok(None);
        }
        let mut m = pool.alloc(header.body_len())?;
        self.advance(HEADER_LEN);
        self.take_into(&mut m, header.body_len());
        self.stats.frames += 1;
        Ok(Some((header, m)))
    }

    /// At end of stream: `Ok(())` if no partial frame is left, else
    /// [`DecodeError::Truncated`] (or the header's error).
    pub fn finish(&self) -> Result<(), DecodeError> {
        self.peek_header()?;
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Truncated { buffered: self.len })
        }
    }
}

impl Buf for ChainedBuffer {
    #[inline]
    fn remaining(&self) -> usize {
        self.len
    }

    fn chunk(&self) -> &[u8] {
        self.slices().next().unwrap_or(&[])
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (d, s) in dst.iter_mut().zip(self.slices()) {
            *d = IoSlice::new(s);
            n += 1;
        }
        n
    }

    /// Consumes `cnt` bytes, returning every emptied block to the pool.
    ///
    /// # Panics
    /// If `cnt > self.remaining()` (a caller bug, as for every `Buf`).
    fn advance(&mut self, mut cnt: usize) {
        assert!(
            cnt <= self.len,
            "advance({cnt}) past the {} buffered bytes",
            self.len
        );
        self.assembled = None;
        self.len -= cnt;
        while let Some(f) = self.blocks.front() {
            let avail = f.len() - self.head.min(f.len());
            if cnt < avail {
                self.head += cnt;
                break;
            }
            cnt -= avail;
            self.pop_front();
        }
    }
}

// SAFETY: `chunk_mut` exposes exactly the unwritten tail of the back block
// (which we own), and `advance_mut` only commits bytes within that tail
// (checked), which the caller promises it initialised.
unsafe impl BufMut for ChainedBuffer {
    #[inline]
    fn remaining_mut(&self) -> usize {
        usize::MAX - self.len
    }

    /// Commits `cnt` bytes written into the last [`chunk_mut`](Self::chunk_mut).
    ///
    /// # Panics
    /// If `cnt` exceeds that chunk (a caller bug).
    unsafe fn advance_mut(&mut self, cnt: usize) {
        if cnt == 0 {
            return;
        }
        let back = self
            .blocks
            .back_mut()
            .expect("advance_mut without chunk_mut");
        assert!(
            cnt <= back.remaining_capacity(),
            "advance_mut past the block"
        );
        let new_len = back.len() + cnt;
        // SAFETY: within the capacity (checked), and the caller initialised
        // the `cnt` bytes of the chunk it was given.
        unsafe { back.set_len(new_len) };
        self.tail_init = self.tail_init.saturating_sub(cnt);
        self.len += cnt;
        self.stats.bytes_read += cnt as u64;
    }

    /// The back block's free tail, taking a block from the pool if needed.
    ///
    /// # Panics
    /// If the pool cannot allocate a block (out of memory), like `Vec`'s
    /// growth; [`read_from`](ChainedBuffer::read_from) reports that as an
    /// error instead.
    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.settle();
        if let Err(e) = self.reserve_block() {
            panic!("ChainedBuffer: no block from the pool: {e}");
        }
        let back = self
            .blocks
            .back_mut()
            .expect("reserve_block pushed a block");
        UninitSlice::uninit(back.spare_capacity_mut())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::codec::{Kind, encode_frame_into};

    fn pool() -> MessagePool {
        MessagePool::builder()
            .extra_class(64)
            .report_leaks_on_drop(false)
            .build()
    }

    #[test]
    fn idle_holds_nothing_and_blocks_return() {
        let pool = pool();
        let mut b = ChainedBuffer::with_config(pool.clone(), 64, FrameCodec::new());
        let mut wire = Vec::new();
        for i in 0..10u8 {
            encode_frame_into(&mut wire, Kind::Publish, i as u16, &[i; 50]).unwrap();
        }
        b.put_slice(&wire);
        assert_eq!(b.remaining(), 580);
        assert_eq!(b.blocks_held(), 10); // 580 bytes / 64
        let mut io = [IoSlice::new(&[]); 16];
        assert_eq!(b.chunks_vectored(&mut io), 10);
        let total: usize = io[..10].iter().map(|s| s.len()).sum();
        assert_eq!(total, 580);
        for i in 0..10u8 {
            let f = b.next_frame().unwrap().unwrap();
            assert_eq!((f.room(), f.body), (i as u16, &[i; 50][..]));
        }
        assert!(b.next_frame().unwrap().is_none());
        assert_eq!(b.blocks_held(), 0);
        assert_eq!(b.blocks.capacity(), 0);
        assert_eq!(pool.stats().live_messages, 0);
    }

    #[test]
    fn buf_advance_and_copy_across_blocks() {
        let mut b = ChainedBuffer::with_config(pool(), 64, FrameCodec::new());
        let data: Vec<u8> = (0..=255u8).collect();
        b.put_slice(&data);
        let mut out = [0u8; 100];
        b.copy_to_slice(&mut out);
        assert_eq!(&out[..], &data[..100]);
        assert_eq!(b.chunk(), &data[100..128]);
        b.advance(28);
        assert_eq!(b.chunk(), &data[128..192]);
        assert_eq!(b.get_u8(), 128);
        b.advance(b.remaining());
        assert_eq!(b.blocks_held(), 0);
    }

    #[test]
    fn read_eof_returns_the_empty_block() {
        let p = pool();
        let mut b = ChainedBuffer::new(p.clone());
        assert_eq!(b.read_from(&mut &b""[..]).unwrap(), 0);
        assert_eq!(b.blocks_held(), 0);
        assert_eq!(p.stats().live_messages, 0);
    }
}
