//! Giving an idle queue's memory back: [`SendQueue::release_idle_blocks`],
//! and why producers may race it.
//!
//! A server holds one queue per connection; a connection that talked once
//! and went quiet would otherwise keep its block of slots (and maybe a
//! spare) for good (issue 16). The consumer, which knows the queue is empty
//! and quiet, frees them; the next push installs a fresh block exactly as
//! the first push of a new queue does.
//!
//! # The "no block" state
//!
//! A queue without a block has its tail index on a **boundary position**
//! (offset `BLOCK_CAP`, which no slot uses) and `first` null; the
//! consumer's cursor holds no block and its `head` is that same boundary
//! position. A new queue starts so (index `START_INDEX`). Producers that
//! find the index on a boundary already back off: normally that means
//! "another producer is linking the next block". Finding `first` null there
//! means "no block": the producer installs one (`install_block`): it takes
//! a block (the spare, or a new one), CASes `first` from null to it, stores
//! it in `tail_block` and moves the index past the boundary (`fetch_add`),
//! which lets reservations in, at the new block's first slot. Only the one
//! producer whose CAS takes `first` from null does this, so however stale
//! the view of a producer that decided to try, it never installs a block
//! twice, nor a block that was freed (it installs its own, fresh or reset).
//! The consumer adopts `first` once a load of the state word shows the index
//! past its `head` (`adopt_first`): the installer set `first` before.
//!
//! # The release (under the consumer lock)
//!
//! 1. The queue must be empty: the tail index equals the consumer's `head`
//!    (every reserved slot was published and read; `head` is never a
//!    boundary position while the cursor holds a block, so no producer is
//!    linking either). One CAS on the state word, from that exact word,
//!    moves the index to the boundary position of `head`'s block, keeping
//!    every flag and the byte count. From then on, no producer can reserve:
//!    the index is on a boundary, and any producer holding an older state
//!    word (and maybe the old block pointer) fails its CAS, because the
//!    index moved. The word never comes back to an older value: the index
//!    only moves forward (it skips the block's unused slots rather than
//!    going back), up to the 2^32 wrap ("Limits" on [`SendQueue`]).
//! 2. It nulls `tail_block`, then `first` (release), and moves its cursor
//!    to "no block" (`head` = that boundary). Producers that arrive between
//!    1 and 2 find the boundary with `first` still set and back off, as for
//!    a link. Once `first` is null, the next push installs a block as
//!    above; its CAS acquires the null `first`, so its `tail_block` store
//!    comes after the release's null store.
//! 3. It frees the block (nothing can reach it: no reservation in it is
//!    left, and none can be made) and the spare (swapped out, so it is
//!    ours alone).
//!
//! Why a producer never reserves in a freed block: its reservation is a
//! CAS from the word `st` it read before loading `tail_block`. Every
//! change of `tail_block` (a link, an install, a release's null) comes
//! after an RMW on the state word that moves the index (the last slot's
//! reservation, the release's CAS) and, except for the null, before the
//! RMW that makes the index usable again, with release/acquire on both
//! sides. So if the pointer it loaded is newer than `st`, the RMW that
//! moved the index precedes its CAS, which fails; if it is null, it
//! reloads; otherwise it is the block of `st`'s index, alive until the
//! consumer reads the slot being reserved.
//!
//! `IDLE`, `CLOSED`, `WAITERS` and the byte count are untouched: an idle
//! queue stays idle (its next reservation still clears `IDLE` and
//! notifies), a closed queue stays closed (its producers are refused
//! before they would install a block), and waiting producers still wait
//! for the next release of bytes.
//!
//! `Drop` and drains find the block installed after a release like the
//! first block of a new queue: from `first`, past the boundary `head`.

use core::mem::{self, size_of};
use core::ptr;

use super::block::Block;
use super::state::{BLOCK_CAP, boundary_of, index_of, offset_of, with_index};
use super::{QueueItem, SendQueue};
use crate::sync::Ordering;

impl<T: QueueItem> SendQueue<T> {
    /// Frees the queue's blocks of slots if it is empty (every message
    /// pushed was drained, and no push holds a reserved slot): the block
    /// producers reserve in and the spare. Returns the bytes freed (0 if the
    /// queue was not empty or held no block). A push racing the release
    /// waits for it or retries; the next push allocates a block again, as
    /// the first push to a new queue does. Everything else (ordering, the
    /// byte bound, notification, waiting producers, close) works across a
    /// release. The byte count is not looked at (it is 0 when the queue is
    /// empty, unless a [`QueueItem::byte_size`] misbehaved).
    ///
    /// For a server holding one queue per connection: an idle connection's
    /// queue then holds no slot memory. A block holds 63 slots of
    /// `size_of::<T>() + 8` bytes (2,024 bytes for
    /// [`Outgoing`](crate::Outgoing)), and a queue holds at most two of them
    /// once idle (its block and a spare).
    ///
    /// A consumer-side call: it takes the consumer's lock, as a drain does.
    /// Its cost is that lock, one CAS on the state word and up to two
    /// frees; a push racing it waits (backs off) for the few instructions
    /// between that CAS and the release of the block pointers. The cost
    /// that matters is the next push's allocation, so call it when the queue
    /// has been quiet for a while (a periodic sweep over idle connections),
    /// not after every drain that finds the queue empty.
    ///
    /// ```
    /// use netbuf::SendQueue;
    ///
    /// let q: SendQueue<Vec<u8>> = SendQueue::new();
    /// assert_eq!(q.release_idle_blocks(), 0); // a new queue has no block
    /// q.try_push(b"hello".to_vec()).unwrap();
    /// assert_eq!(q.release_idle_blocks(), 0); // not empty: nothing freed
    ///
    /// let mut out = Vec::new();
    /// assert!(q.drain_into(&mut out, usize::MAX).idle);
    /// assert!(q.release_idle_blocks() > 0); // the block is freed
    /// assert_eq!(q.release_idle_blocks(), 0);
    ///
    /// // The next push installs a new block; order and bytes as ever.
    /// q.try_push(b"again".to_vec()).unwrap();
    /// q.try_push(b"!".to_vec()).unwrap();
    /// out.clear();
    /// let d = q.drain_into(&mut out, usize::MAX);
    /// assert_eq!(out, [b"again".to_vec(), b"!".to_vec()]);
    /// assert_eq!(d.bytes, 6 + 2 * q.entry_overhead());
    /// assert_eq!(q.queued_bytes(), 0);
    /// ```
    pub fn release_idle_blocks(&self) -> usize {
        let mut c = self.consumer.lock();
        if c.block.is_null() && index_of(self.state.load(Ordering::Acquire)) != c.head {
            // A push installed a block since the queue was new or released
            // (the load above acquired that): move into it, as a drain
            // would, to see whether anything is in it.
            if !self.adopt_first(&mut c) {
                return 0; // Cannot happen.
            }
        }
        let mut freed = 0;
        if !c.block.is_null() {
            // Step 1: from a word whose index is `head` (empty), to the
            // same word with the index on the block's boundary.
            let mut st = self.state.load(Ordering::Acquire);
            let boundary = loop {
                let index = index_of(st);
                if index != c.head {
                    // Something is queued (or a push holds a reserved
                    // slot it has not published yet).
                    return 0;
                }
                debug_assert_ne!(offset_of(index), BLOCK_CAP);
                let boundary = boundary_of(index);
                match self.state.compare_exchange_weak(
                    st,
                    with_index(st, boundary),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => break boundary,
                    Err(cur) => st = cur,
                }
            };
            // Step 2. The CAS acquired the RMW that moved the index into
            // this block, which came after the `tail_block` store of this
            // block; no producer can store another now (a link needs a
            // reservation, an install a null `first`).
            let block = mem::replace(&mut c.block, ptr::null_mut());
            c.head = boundary;
            debug_assert_eq!(self.tail_block.load(Ordering::Relaxed), block);
            self.tail_block.store(ptr::null_mut(), Ordering::Release);
            // Last: from here on, a push may install a new block.
            self.first.store(ptr::null_mut(), Ordering::Release);
            // No block is linked after it: its last slot was never reserved.
            #[cfg(debug_assertions)]
            // SAFETY: `block` is alive (freed just below).
            debug_assert!(unsafe { (*block).next() }.is_null());
            // Step 3.
            // SAFETY: every slot reserved in `block` was published and read
            // (the index was `head`), so no item is in it; no reservation
            // can be made in it any more (the index moved to the boundary,
            // failing every CAS from an older word, and now waits there for
            // a new block), and no producer touches it outside a
            // reservation; no block is linked after it (its last slot was
            // never reserved). The cursor, `tail_block` and `first` no
            // longer point to it, and the spare is another block.
            unsafe { Block::free(block) };
            freed += size_of::<Block<T>>();
        }
        // The spare, which a push may have left even in a queue without a
        // block (one it took but did not link).
        let spare = self.spare.swap(ptr::null_mut(), Ordering::Acquire);
        if !spare.is_null() {
            // SAFETY: the spare is reset and holds no item, and the swap
            // made it ours alone (producers only take it by a swap too).
            unsafe { Block::free(spare) };
            freed += size_of::<Block<T>>();
        }
        freed
    }
}
