//! [`ChainedBuffer`]: a receive buffer made of a chain of pool blocks.

use core::cell::Cell;
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Read};

use allocator_api2::alloc::{Allocator, Global};
use bytes::buf::UninitSlice;
use bytes::{Buf, BufMut};

use super::framing::{self, DecodeError, Frame, FrameInfo, Framing, MAX_HEADER_LEN};
use super::length_delimited::LengthDelimited;
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
    /// Bodies received straight into a block of their own (see
    /// [`ChainedBuffer::expect_contiguous`]), so they were taken or viewed
    /// without a copy.
    pub bodies_contiguous: u64,
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
/// [`LinearBuffer`](crate::LinearBuffer): a borrowed view when the frame lies in
/// one block, a view of a pooled message when it spans blocks (one copy),
/// or an owned pooled [`Message`] with the body copied once.
///
/// Blocks consumed through a borrowed frame view are returned at the next
/// call on the buffer (the view borrows them until then); a decode loop
/// that runs until `next_frame` returns `Ok(None)` leaves nothing held.
///
/// **Large bodies without a copy.** When a frame's header is in and its
/// body of at least one block is still arriving, the decoder moves the few
/// body bytes already buffered into a block sized for the whole body and
/// lets the following reads land there (capped at the body's end), as
/// libzmq's decoder does. `next_message` then hands that block over as the
/// message and `next_frame` views it in place: no copy of the bulk.
/// [`expect_contiguous`](Self::expect_contiguous) and
/// [`take_message`](Self::take_message) give a hand-written protocol the
/// same path.
///
/// ```
/// use netbuf::framing::{HeaderBytes, LengthDelimited, encode_frame_into};
/// use netbuf::{ChainedBuffer, MessagePool};
///
/// let pool = MessagePool::new();
/// let framing = LengthDelimited::default().with_max_body(64 << 10);
/// let mut buf = ChainedBuffer::with_framing(pool.clone(), framing);
/// assert_eq!(buf.blocks_held(), 0); // idle: no memory
///
/// let mut wire = Vec::new();
/// encode_frame_into(&framing, &mut wire, &HeaderBytes::EMPTY, &[7u8; 6000]).unwrap();
/// let mut socket = &wire[..];
/// assert_eq!(buf.read_from(&mut socket).unwrap(), 4096); // one block
/// assert!(buf.next_frame().unwrap().is_none()); // body staged in its own block
/// while buf.read_from(&mut socket).unwrap() > 0 {}
///
/// let (_, body) = buf.next_message(&pool).unwrap().unwrap(); // no copy
/// assert_eq!(body.len(), 6000);
/// assert_eq!(buf.stats().bodies_contiguous, 1);
/// assert_eq!(buf.blocks_held(), 0);
/// ```
#[derive(Debug)]
pub struct ChainedBuffer<
    F: Framing = LengthDelimited,
    A: Allocator + Send + Sync + 'static = Global,
> {
    pool: MessagePool<A>,
    block_size: usize,
    blocks: VecDeque<Message>,
    /// The back block takes no bytes past this length (a body staged by
    /// `expect_contiguous`); `usize::MAX` otherwise.
    back_limit: usize,
    /// Bytes of the front block already consumed.
    head: usize,
    /// Unconsumed bytes in the chain.
    len: usize,
    /// Bytes past the back block's length known to be initialised.
    tail_init: usize,
    framing: F,
    /// A large frame whose header was consumed and whose body is arriving
    /// into a block of its own (see `stage_body`).
    staged: Option<FrameInfo<F::Header>>,
    /// The last frame that spanned blocks, alive while its view is.
    assembled: Option<Message>,
    stats: ChainStats,
    _not_sync: PhantomData<Cell<()>>,
}

impl<A: Allocator + Send + Sync + 'static> ChainedBuffer<LengthDelimited, A> {
    /// A chain of blocks of `pool`'s block size (its largest class, 4 KiB
    /// by default) with the default framing (4-byte big-endian length,
    /// 10 KiB body limit).
    pub fn new(pool: MessagePool<A>) -> Self {
        ChainedBuffer::with_framing(pool, LengthDelimited::default())
    }
}

impl<F: Framing, A: Allocator + Send + Sync + 'static> ChainedBuffer<F, A> {
    /// A chain of blocks of at least `block_size` bytes (at least 16).
    /// Choose a size class of `pool`, or blocks come from its fallback
    /// allocator.
    pub fn with_config(pool: MessagePool<A>, block_size: usize, framing: F) -> Self {
        ChainedBuffer {
            pool,
            block_size: block_size.max(16),
            blocks: VecDeque::new(),
            back_limit: usize::MAX,
            head: 0,
            len: 0,
            tail_init: 0,
            framing,
            staged: None,
            assembled: None,
            stats: ChainStats::default(),
            _not_sync: PhantomData,
        }
    }

    /// Bytes received and not yet consumed (the header of a large frame
    /// whose body is being received into its own block is not counted: it
    /// was consumed when the body was staged).
    #[inline]
    pub fn buffered(&self) -> usize {
        self.len
    }

    /// Whether nothing is held: no byte buffered and no frame half-way
    /// (a large body being received into its own block has had its header
    /// consumed, so [`buffered`](Self::buffered) can be 0 while the frame
    /// is still incomplete). Only then may the buffer be dropped without
    /// losing stream position.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0 && self.staged.is_none()
    }

    /// Blocks held right now (0 for an idle session).
    pub fn blocks_held(&self) -> usize {
        self.blocks.len() + usize::from(self.assembled.is_some())
    }

    /// The requested block size.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// The framing.
    pub fn framing(&self) -> &F {
        &self.framing
    }

    /// Changes the framing (e.g. a raised body limit).
    pub fn set_framing(&mut self, framing: F) {
        self.framing = framing;
    }

    /// The pool the blocks come from.
    pub fn pool(&self) -> &MessagePool<A> {
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
            self.back_limit = usize::MAX;
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
            // A staged body's block stays, even before its first byte.
            if self.head < f.len() || (self.staged.is_some() && self.blocks.len() == 1) {
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
            .is_none_or(|b| b.remaining_capacity() == 0 || b.len() >= self.back_limit)
        {
            let m = self.pool.alloc(self.block_size)?;
            self.blocks.push_back(m);
            self.back_limit = usize::MAX;
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
        let limit = self.back_limit.saturating_sub(back.len());
        let spare = back.spare_capacity_mut();
        let room = spare.len().min(limit);
        let spare = &mut spare[..room];
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
            // Hand back a block that got nothing.
            if self.blocks.back().is_some_and(|b| b.is_empty()) {
                self.blocks.pop_back();
                self.tail_init = 0;
                self.back_limit = usize::MAX;
                if self.blocks.is_empty() {
                    self.pop_front_reset();
                }
            }
            self.settle();
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

    /// Asks that the next `n` buffered bytes end up in one block: if fewer
    /// than `n` are buffered, they move into a block of their own of at
    /// least `n` bytes (one copy of what has arrived so far, at most one
    /// read's worth) and the reads that follow fill it up to exactly `n`,
    /// so [`take_message(n)`](Self::take_message) then hands it over
    /// without a copy. Does nothing if `n` bytes are already buffered or
    /// the bytes already lie in one block.
    ///
    /// For a protocol decoded by hand: consume its header, then call this
    /// with the body length.
    ///
    /// ```
    /// use bytes::Buf;
    /// use netbuf::{ChainedBuffer, MessagePool};
    ///
    /// let pool = MessagePool::new();
    /// let mut buf = ChainedBuffer::new(pool.clone());
    /// let mut wire = vec![0xAB, 0x10, 0x27]; // opcode, u16 LE body length 10000
    /// wire.extend(vec![1u8; 10_000]);
    /// let mut socket = &wire[..];
    /// buf.read_from(&mut socket).unwrap();
    /// let (_op, len) = (buf.get_u8(), buf.get_u16_le() as usize);
    /// buf.expect_contiguous(len).unwrap();
    /// while buf.buffered() < len {
    ///     buf.read_from(&mut socket).unwrap();
    /// }
    /// let body = buf.take_message(len).unwrap().unwrap(); // the block itself
    /// assert_eq!(body.len(), 10_000);
    /// assert_eq!(buf.stats().bodies_contiguous, 1);
    /// ```
    pub fn expect_contiguous(&mut self, n: usize) -> Result<(), crate::PoolError> {
        self.settle();
        if self.len >= n || self.back_limit != usize::MAX {
            return Ok(());
        }
        if self.blocks.len() == 1
            && self.head == 0
            && self.blocks[0].capacity() >= n
            && self.len > 0
        {
            // Already one block with room for all of it.
            self.back_limit = n;
            return Ok(());
        }
        let mut m = self.pool.alloc(n)?;
        let have = self.len;
        self.take_into(&mut m, have);
        self.len = have;
        self.blocks = VecDeque::from([m]);
        self.head = 0;
        self.tail_init = 0;
        self.back_limit = n;
        Ok(())
    }

    /// Consumes the next `n` bytes as one pooled [`Message`]: the block
    /// itself, without a copy, when they fill the front block from its
    /// start (see [`expect_contiguous`](Self::expect_contiguous));
    /// otherwise copied once into a message from this buffer's pool.
    /// `Ok(None)` if fewer than `n` bytes are buffered.
    pub fn take_message(&mut self, n: usize) -> Result<Option<Message>, crate::PoolError> {
        self.settle();
        if self.len < n {
            return Ok(None);
        }
        if let Some(m) = self.take_front_block(n) {
            return Ok(Some(m));
        }
        let mut m = self.pool.alloc(n)?;
        self.take_into(&mut m, n);
        Ok(Some(m))
    }

    /// The front block itself, if the next `n` (> 0) buffered bytes are
    /// exactly its contents: the zero-copy hand-over.
    fn take_front_block(&mut self, n: usize) -> Option<Message> {
        if n == 0 || self.head != 0 || self.blocks.front().is_none_or(|b| b.len() != n) {
            return None;
        }
        let m = self.blocks.pop_front()?;
        if self.blocks.is_empty() {
            self.pop_front_reset();
        }
        self.len -= n;
        self.stats.bodies_contiguous += 1;
        Some(m)
    }

    /// Resets what depends on the front block once the chain is empty.
    fn pop_front_reset(&mut self) {
        self.head = 0;
        self.tail_init = 0;
        self.back_limit = usize::MAX;
        self.blocks = VecDeque::new();
    }
}

impl<F: Framing, A: Allocator + Send + Sync + 'static> ChainedBuffer<F, A> {
    /// A chain of blocks of `pool`'s block size (its largest class) for
    /// `framing`.
    pub fn with_framing(pool: MessagePool<A>, framing: F) -> Self {
        let block_size = pool.class_sizes().last().copied().unwrap_or(4096);
        ChainedBuffer::with_config(pool, block_size, framing)
    }

    /// The header of the next frame, if it is all in.
    fn peek_header(&self) -> Result<Option<FrameInfo<F::Header>>, DecodeError> {
        let front = self.chunk();
        if front.len() >= MAX_HEADER_LEN || front.len() == self.len {
            // The common case: the header lies in the front block.
            return framing::decode_checked(&self.framing, front);
        }
        let mut h = [0u8; MAX_HEADER_LEN];
        let n = self.peek_into(&mut h);
        framing::decode_checked(&self.framing, &h[..n])
    }

    /// The next frame's header if the whole frame is in; else, for a body
    /// of a block or more, stages it into a block of its own.
    fn next_complete(&mut self) -> Result<Option<FrameInfo<F::Header>>, DecodeError> {
        self.settle();
        if let Some(info) = self.staged {
            if self.len < info.body_len {
                return Ok(None);
            }
            self.staged = None;
            // The header was consumed when the body was staged.
            return Ok(Some(FrameInfo {
                header_len: 0,
                ..info
            }));
        }
        let Some(info) = self.peek_header()? else {
            return Ok(None);
        };
        if self.len < info.frame_len() {
            if info.body_len >= self.block_size && self.back_limit == usize::MAX {
                self.stage_body(info)?;
            }
            return Ok(None);
        }
        Ok(Some(info))
    }

    /// Consumes `info`'s header (kept decoded in `staged`) and moves the
    /// body bytes already buffered into a block sized for the body, which
    /// the next reads fill up to the body's end. Everything buffered
    /// belongs to this frame (it is incomplete), so the chain is then that
    /// one block: no other block stays held while the body arrives.
    fn stage_body(&mut self, info: FrameInfo<F::Header>) -> Result<(), DecodeError> {
        let mut m = self.pool.alloc(info.body_len)?;
        self.advance(info.header_len);
        let have = self.len;
        self.take_into(&mut m, have);
        debug_assert!(self.blocks.is_empty() && self.len == 0);
        self.len = have;
        self.blocks.push_back(m);
        self.head = 0;
        self.tail_init = 0;
        self.back_limit = info.body_len;
        self.staged = Some(info);
        Ok(())
    }

    /// Decodes the next complete frame as a view, or `Ok(None)` if it has
    /// not fully arrived; the frame is consumed. A body inside one block
    /// (or staged into one, see the type's docs) is viewed in place; one
    /// spanning blocks is first assembled into a pooled message (one copy),
    /// released at the next call.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_, F::Header>>, DecodeError> {
        let Some(info) = self.next_complete()? else {
            return Ok(None);
        };
        self.stats.frames += 1;
        self.advance(info.header_len);
        let n = info.body_len;
        if n == 0 {
            return Ok(Some(Frame {
                header: info.header,
                body: &[],
            }));
        }
        let head = self.head;
        if self.blocks[0].len() - head >= n {
            if head == 0 && self.blocks[0].len() == n && n >= self.block_size {
                self.stats.bodies_contiguous += 1;
            }
            self.head += n;
            self.len -= n;
            let body = &self.blocks[0][head..head + n];
            return Ok(Some(Frame {
                header: info.header,
                body,
            }));
        }
        let mut m = self.pool.alloc(n)?;
        self.take_into(&mut m, n);
        self.stats.frames_assembled += 1;
        let body = &self.assembled.insert(m)[..];
        Ok(Some(Frame {
            header: info.header,
            body,
        }))
    }

    /// Decodes the next complete frame and hands its body over as a
    /// message: the staged block itself for a large body (no copy, from
    /// this buffer's pool), else copied once into a message from `pool`.
    pub fn next_message<P: Allocator + Send + Sync + 'static>(
        &mut self,
        pool: &MessagePool<P>,
    ) -> Result<Option<(F::Header, Message)>, DecodeError> {
        let Some(info) = self.next_complete()? else {
            return Ok(None);
        };
        self.stats.frames += 1;
        self.advance(info.header_len);
        let n = info.body_len;
        if let Some(m) = self.take_front_block(n) {
            return Ok(Some((info.header, m)));
        }
        let mut m = pool.alloc(n)?;
        self.take_into(&mut m, n);
        Ok(Some((info.header, m)))
    }

    /// At end of stream: `Ok(())` if no partial frame is left, else
    /// [`DecodeError::Truncated`] (or the header's error).
    pub fn finish(&self) -> Result<(), DecodeError> {
        if let Some(info) = self.staged {
            return Err(DecodeError::Truncated {
                buffered: info.header_len + self.len,
            });
        }
        self.peek_header()?;
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Truncated { buffered: self.len })
        }
    }
}

impl<F: Framing, A: Allocator + Send + Sync + 'static> Buf for ChainedBuffer<F, A> {
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
unsafe impl<F: Framing, A: Allocator + Send + Sync + 'static> BufMut for ChainedBuffer<F, A> {
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
    use crate::framing::{HeaderBytes, encode_frame_into};

    /// An 8-byte header: u32 LE length, then 4 bytes of the protocol's own.
    fn eight() -> LengthDelimited {
        LengthDelimited::builder()
            .little_endian()
            .header_len(8)
            .build()
            .unwrap()
    }

    fn pool() -> MessagePool {
        crate::test_util::quiet_pool().extra_class(64).build()
    }

    #[test]
    fn idle_holds_nothing_and_blocks_return() {
        let pool = pool();
        let mut b = ChainedBuffer::with_config(pool.clone(), 64, eight());
        let mut wire = Vec::new();
        for i in 0..10u8 {
            let h = HeaderBytes::new(&[0, 0, 0, 0, 5, 0, i, 0]);
            encode_frame_into(&eight(), &mut wire, &h, &[i; 50]).unwrap();
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
            assert_eq!((f.header.as_slice()[6], f.body), (i, &[i; 50][..]));
        }
        assert!(b.next_frame().unwrap().is_none());
        assert_eq!(b.blocks_held(), 0);
        assert_eq!(b.blocks.capacity(), 0);
        assert_eq!(pool.stats().live_messages, 0);
    }

    #[test]
    fn buf_advance_and_copy_across_blocks() {
        let mut b = ChainedBuffer::with_config(pool(), 64, eight());
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
