//! The block header: the origin tag every message carries.
//!
//! Every message's memory, pooled or not, is one allocation laid out as
//!
//! ```text
//! +---------------------------- HEADER_SIZE (32) ---------------------------+----------------+
//! | refs: AtomicUsize | core: *const PoolCore | capacity: u32 | origin: u8 | payload ...    |
//! | (SharedMessage)   | (which pool)          | (payload)     | flags: u8  | (capacity B)   |
//! +-------------------+-----------------------+---------------+------------+----------------+
//! ^ header pointer (aligned to 16)                                          ^ data pointer
//! ```
//!
//! `origin` is an `is_pooled` tag, widened: `Pooled`
//! names the size class of the pool `core` points to; `Heap` says the block
//! came from that pool's fallback allocator. [`release`](crate::pool::release)
//! is the one free path: it reads the tag and returns the block to the right
//! place. While a block sits in a free list, the first word of its payload
//! links it to the next free block (see `cache`).

use core::ptr::NonNull;

use crate::pool::PoolCore;
use crate::sync::AtomicUsize;

/// Bytes before the payload: `size_of::<Header>()` rounded up to
/// [`BLOCK_ALIGN`] (32 on 64-bit targets; larger under loom, whose atomics
/// are bigger).
pub(crate) const HEADER_SIZE: usize =
    (core::mem::size_of::<Header>() + BLOCK_ALIGN - 1) & !(BLOCK_ALIGN - 1);
/// Alignment of every block (and so of every payload).
pub(crate) const BLOCK_ALIGN: usize = 16;

/// `origin` value of blocks from the fallback allocator.
pub(crate) const ORIGIN_HEAP: u8 = u8::MAX;

/// Flag: this block's allocation site was recorded by the leak tracer.
#[cfg_attr(not(feature = "leak-trace"), allow(dead_code))]
pub(crate) const FLAG_TRACED: u8 = 1;

#[repr(C)]
pub(crate) struct Header {
    /// Owners of the block. Exactly 1 for a `Message`; `SharedMessage`
    /// clones add to it.
    pub(crate) refs: AtomicUsize,
    /// The pool the block belongs to; it is kept alive by every block it
    /// handed out (see `PoolCore::refs`).
    pub(crate) core: NonNull<PoolCore>,
    /// Payload capacity in bytes.
    pub(crate) capacity: u32,
    /// Size-class index, or [`ORIGIN_HEAP`].
    pub(crate) origin: u8,
    /// `FLAG_*` bits.
    pub(crate) flags: u8,
}

const _: () = assert!(HEADER_SIZE.is_multiple_of(BLOCK_ALIGN));

impl Header {
    /// The payload of the block whose header is at `hdr`.
    #[inline(always)]
    pub(crate) fn data(hdr: NonNull<Header>) -> NonNull<u8> {
        // SAFETY: every header is followed by its payload inside the same
        // allocation (HEADER_SIZE + capacity bytes), so the offset stays in
        // bounds (one past the end at most, for a zero capacity).
        unsafe { hdr.cast::<u8>().add(HEADER_SIZE) }
    }

    /// Initialises a freshly allocated block in place.
    ///
    /// # Safety
    /// `hdr` points to at least `HEADER_SIZE` writable bytes, aligned to
    /// `BLOCK_ALIGN`, holding no live `Header`.
    pub(crate) unsafe fn init(
        hdr: NonNull<Header>,
        core: NonNull<PoolCore>,
        capacity: u32,
        origin: u8,
    ) {
        // SAFETY: guaranteed by the caller.
        unsafe {
            hdr.as_ptr().write(Header {
                refs: AtomicUsize::new(1),
                core,
                capacity,
                origin,
                flags: 0,
            })
        }
    }
}
