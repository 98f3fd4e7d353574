//! [`Message`]: an owned, writable message from a [`MessagePool`](crate::MessagePool).

/// The accessors [`Message`] and [`SharedMessage`] share, as items of an
/// `impl` block: both are a handle (`hdr`) on one live block whose first
/// `len` payload bytes are the message.
macro_rules! block_accessors {
    () => {
        #[inline]
        fn header(&self) -> &$crate::pool::header::Header {
            // SAFETY: the block is alive while any handle on it exists.
            unsafe { self.hdr.as_ref() }
        }

        /// Bytes in the message.
        #[inline]
        pub fn len(&self) -> usize {
            self.len
        }

        /// Whether the message is empty.
        #[inline]
        pub fn is_empty(&self) -> bool {
            self.len == 0
        }

        /// Payload bytes of the block the message lives in: the class size
        /// for a pooled message, the requested size for a heap one.
        #[inline]
        pub fn capacity(&self) -> usize {
            self.header().capacity as usize
        }

        /// Whether the memory came from a pooled block (the block header's
        /// origin tag).
        #[inline]
        pub fn is_pooled(&self) -> bool {
            self.header().origin != $crate::pool::header::ORIGIN_HEAP
        }

        /// Where the memory came from.
        pub fn origin(&self) -> $crate::message::Origin {
            $crate::message::origin_of(self.hdr)
        }
    };
}

mod outgoing;
pub(crate) mod shared;

pub use outgoing::Outgoing;
pub use shared::SharedMessage;

use core::fmt;
use core::mem::MaybeUninit;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;

use bytes::buf::UninitSlice;

use crate::pool::header::{Header, ORIGIN_HEAP};
use crate::pool::{self, PoolCore};

/// Where a message's memory came from, read from its origin tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A pooled block of the size class with this payload size.
    Pooled {
        /// Payload bytes of the class.
        class_size: usize,
    },
    /// The pool's fallback allocator (a message larger than every class, or
    /// a pool built with `pooled(false)`).
    Heap,
}

/// The message would not fit in the remaining capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{needed} bytes do not fit in the {remaining} bytes left in the message")]
pub struct CapacityError {
    /// Bytes that were to be written.
    pub needed: usize,
    /// Bytes still free.
    pub remaining: usize,
}

/// An owned, writable message: a length-prefixed view of one pooled block
/// or heap allocation. Reads as `&[u8]`, writes through [`bytes::BufMut`]
/// (up to its fixed capacity), and frees itself on drop through the one
/// free path, whatever its origin. [`freeze`](Message::freeze) it into a
/// [`SharedMessage`] to send it to many sessions.
///
/// An owned message never touches an atomic: dropping it is a push on the
/// thread's free list (pooled) or one deallocation (heap).
///
/// ```
/// use bytes::BufMut;
/// let pool = netbuf::MessagePool::new();
/// let mut m = pool.alloc(64).unwrap();
/// m.put_u32_le(5);
/// m.put_slice(b"hello");
/// assert_eq!(m.len(), 9);
/// assert!(m.capacity() >= 64);
/// ```
pub struct Message {
    hdr: NonNull<Header>,
    len: usize,
}

// SAFETY: a `Message` owns its block exclusively (refs == 1, no other handle
// exists), like a `Vec<u8>`; its pool is `Sync` and handles frees from any
// thread.
unsafe impl Send for Message {}
// SAFETY: `&Message` only reads the payload.
unsafe impl Sync for Message {}

impl Message {
    /// Wraps a block just handed out.
    ///
    /// # Safety
    /// `hdr` is an initialised block with refs == 1 that the caller owns.
    #[inline]
    pub(crate) unsafe fn from_block(hdr: NonNull<Header>) -> Message {
        Message { hdr, len: 0 }
    }

    block_accessors!();

    /// Capacity not yet written.
    #[inline]
    pub fn remaining_capacity(&self) -> usize {
        self.capacity() - self.len
    }

    /// Appends `data`, or says how much room is left.
    #[inline]
    pub fn extend_from_slice(&mut self, data: &[u8]) -> Result<(), CapacityError> {
        let remaining = self.remaining_capacity();
        if data.len() > remaining {
            return Err(CapacityError {
                needed: data.len(),
                remaining,
            });
        }
        // SAFETY: `data` fits in the free tail of our own payload, and a
        // borrowed slice cannot overlap a block we own exclusively.
        unsafe {
            core::ptr::copy_nonoverlapping(
                data.as_ptr(),
                Header::data(self.hdr).as_ptr().add(self.len),
                data.len(),
            );
        }
        self.len += data.len();
        Ok(())
    }

    /// Shortens the message to `len` bytes (no effect if already shorter).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Empties the message, keeping its capacity.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The unwritten tail, to be filled in place (e.g. by a socket read)
    /// and then committed with [`set_len`](Self::set_len).
    pub fn spare_capacity_mut(&mut self) -> &mut [MaybeUninit<u8>] {
        let spare = self.remaining_capacity();
        // SAFETY: the tail [len, capacity) lies inside our own payload.
        unsafe {
            core::slice::from_raw_parts_mut(
                Header::data(self.hdr)
                    .as_ptr()
                    .add(self.len)
                    .cast::<MaybeUninit<u8>>(),
                spare,
            )
        }
    }

    /// Sets the length.
    ///
    /// # Safety
    /// `len <= capacity()` and the first `len` bytes are initialised.
    pub unsafe fn set_len(&mut self, len: usize) {
        debug_assert!(len <= self.capacity());
        self.len = len;
    }

    /// Resizes to `len` bytes, filling new bytes with `value`, or returns an
    /// error if `len` exceeds the capacity.
    pub fn resize(&mut self, len: usize, value: u8) -> Result<(), CapacityError> {
        if len > self.capacity() {
            return Err(CapacityError {
                needed: len - self.len,
                remaining: self.remaining_capacity(),
            });
        }
        if len > self.len {
            // SAFETY: [self.len, len) lies inside the payload.
            unsafe {
                Header::data(self.hdr)
                    .as_ptr()
                    .add(self.len)
                    .write_bytes(value, len - self.len)
            };
        }
        self.len = len;
        Ok(())
    }

    /// Turns the message into an immutable, ref-counted [`SharedMessage`]
    /// without copying or allocating.
    #[inline]
    pub fn freeze(self) -> SharedMessage {
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: the block's single owner (refs == 1) becomes the shared
        // message.
        unsafe { SharedMessage::from_block(this.hdr, this.len) }
    }

    /// The payload as a raw pointer (valid for `capacity()` bytes while the
    /// message lives).
    pub fn as_ptr(&self) -> *const u8 {
        Header::data(self.hdr).as_ptr()
    }
}

/// Reads a block's origin tag.
pub(crate) fn origin_of(hdr: NonNull<Header>) -> Origin {
    // SAFETY: callers pass a live block.
    let h = unsafe { hdr.as_ref() };
    if h.origin == ORIGIN_HEAP {
        Origin::Heap
    } else {
        // SAFETY: a live block keeps its pool alive.
        let core: &PoolCore = unsafe { h.core.as_ref() };
        Origin::Pooled {
            class_size: core.classes[h.origin as usize].size,
        }
    }
}

impl Drop for Message {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we are the block's only owner.
        unsafe { pool::release(self.hdr) }
    }
}

impl Deref for Message {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: the first `len` payload bytes are initialised and ours.
        unsafe { core::slice::from_raw_parts(Header::data(self.hdr).as_ptr(), self.len) }
    }
}

impl DerefMut for Message {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and we own the block exclusively.
        unsafe { core::slice::from_raw_parts_mut(Header::data(self.hdr).as_ptr(), self.len) }
    }
}

impl AsRef<[u8]> for Message {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl AsMut<[u8]> for Message {
    fn as_mut(&mut self) -> &mut [u8] {
        self
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .field("origin", &self.origin())
            .finish()
    }
}

// SAFETY: `chunk_mut` exposes exactly the unwritten tail of our payload and
// `advance_mut` only moves `len` within the capacity (checked).
unsafe impl bytes::BufMut for Message {
    #[inline]
    fn remaining_mut(&self) -> usize {
        self.remaining_capacity()
    }

    #[inline]
    unsafe fn advance_mut(&mut self, cnt: usize) {
        assert!(
            cnt <= self.remaining_capacity(),
            "advance_mut past the message's capacity"
        );
        self.len += cnt;
    }

    #[inline]
    fn chunk_mut(&mut self) -> &mut UninitSlice {
        UninitSlice::uninit(self.spare_capacity_mut())
    }
}
