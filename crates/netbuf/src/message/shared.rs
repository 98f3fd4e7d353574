//! [`SharedMessage`]: an immutable, ref-counted message for zero-copy
//! broadcast.

use core::fmt;
use core::ops::Deref;
use core::ptr::NonNull;

use crate::message::Message;
use crate::pool;
use crate::pool::header::Header;
use crate::sync::{Ordering, fence};

/// An immutable message shared by reference count.
///
/// A broadcast to N sessions is one allocation and N increments:
/// [`clone`](Clone::clone) is one relaxed atomic add, the last drop frees
/// through the same origin-tag path as [`Message`]; a drop is one release
/// decrement, as `Arc`'s. A message with one owner needs no atomic at all:
/// keep it a [`Message`] (freeze only what is shared). Skipping the
/// decrement when the count reads 1 was tried and measured: it made the
/// broadcast bench 5-8% slower than `Arc<[u8]>`, for a case `Message`
/// already covers. Converts into [`bytes::Bytes`] without copying, for
/// tokio/hyper users.
///
/// ```
/// let pool = netbuf::MessagePool::new();
/// let shared = pool.message_from(b"state update").unwrap().freeze();
/// let outboxes: Vec<_> = (0..1000).map(|_| shared.clone()).collect();
/// assert_eq!(shared.ref_count(), 1001);
/// let bytes: bytes::Bytes = shared.into_bytes(); // no copy
/// assert_eq!(&bytes[..], b"state update");
/// drop(outboxes);
/// ```
pub struct SharedMessage {
    hdr: NonNull<Header>,
    len: usize,
}

// SAFETY: the payload is immutable while shared and the reference count is
// atomic, so clones may live and drop on any thread.
unsafe impl Send for SharedMessage {}
// SAFETY: as above.
unsafe impl Sync for SharedMessage {}

impl SharedMessage {
    /// # Safety
    /// The caller hands over its single ownership of `hdr` (refs == 1),
    /// whose first `len` payload bytes are initialised.
    #[inline]
    pub(crate) unsafe fn from_block(hdr: NonNull<Header>, len: usize) -> SharedMessage {
        SharedMessage { hdr, len }
    }

    block_accessors!();

    /// Owners of this message right now (a snapshot under concurrency).
    pub fn ref_count(&self) -> usize {
        self.header().refs.load(Ordering::Relaxed)
    }

    /// Whether two handles share one allocation.
    pub fn ptr_eq(a: &SharedMessage, b: &SharedMessage) -> bool {
        a.hdr == b.hdr
    }

    /// Back to an owned, writable [`Message`] if this is the only owner.
    pub fn try_into_message(self) -> Result<Message, SharedMessage> {
        if self.header().refs.load(Ordering::Acquire) != 1 {
            return Err(self);
        }
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: we are the single owner (refs == 1 and nobody else can
        // clone without a handle), so the block is exclusively ours again.
        let mut m = unsafe { Message::from_block(this.hdr) };
        // SAFETY: the first `len` bytes were initialised when shared.
        unsafe { m.set_len(this.len) };
        Ok(m)
    }

    /// Converts into [`bytes::Bytes`] without copying the payload; the
    /// memory is released through the origin tag when the last `Bytes`
    /// drops. `Bytes::from_owner` allocates once (a small shared header
    /// that holds this message), per conversion: to hand one broadcast to N
    /// `Bytes` consumers, convert once and `clone()` the `Bytes` (a
    /// refcount increment, no allocation), rather than converting N clones
    /// of the `SharedMessage`.
    ///
    /// ```
    /// let m = netbuf::MessagePool::new().message_from(b"news").unwrap().freeze();
    /// let b: bytes::Bytes = m.into();
    /// let for_everyone = [b.clone(), b.clone(), b]; // no further allocation
    /// assert!(for_everyone.iter().all(|b| &b[..] == b"news"));
    /// ```
    pub fn into_bytes(self) -> bytes::Bytes {
        bytes::Bytes::from_owner(self)
    }
}

impl Clone for SharedMessage {
    #[inline]
    fn clone(&self) -> Self {
        // Relaxed, as `Arc::clone`: a new reference can only be made from an
        // existing one, which already orders the payload.
        let old = self.header().refs.fetch_add(1, Ordering::Relaxed);
        if old > isize::MAX as usize {
            // Overflow would free the block while in use; like `Arc`, abort.
            std::process::abort();
        }
        SharedMessage {
            hdr: self.hdr,
            len: self.len,
        }
    }
}

impl Drop for SharedMessage {
    #[inline]
    fn drop(&mut self) {
        // As `Arc::drop`: a release decrement, and an acquire fence before
        // the last owner frees, so every owner's reads happen before it.
        if self.header().refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        fence(Ordering::Acquire);
        // SAFETY: we were the last owner.
        unsafe { release_last(self.hdr) }
    }
}

/// The last owner's free, kept out of line so that the common drop (one
/// decrement of a message others still hold) stays as small as `Arc`'s.
///
/// # Safety
/// The caller was the block's last owner.
#[inline(never)]
unsafe fn release_last(hdr: NonNull<Header>) {
    // SAFETY: forwarded from the caller.
    unsafe { pool::release(hdr) }
}

impl Deref for SharedMessage {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: the first `len` payload bytes are initialised and
        // immutable while shared.
        unsafe { core::slice::from_raw_parts(Header::data(self.hdr).as_ptr(), self.len) }
    }
}

impl AsRef<[u8]> for SharedMessage {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl From<SharedMessage> for bytes::Bytes {
    /// See [`SharedMessage::into_bytes`]: no copy, one small allocation.
    fn from(m: SharedMessage) -> bytes::Bytes {
        m.into_bytes()
    }
}

impl From<Message> for bytes::Bytes {
    /// Freezes the message and converts it: no copy, one small allocation.
    fn from(m: Message) -> bytes::Bytes {
        m.freeze().into_bytes()
    }
}

impl From<Message> for SharedMessage {
    fn from(m: Message) -> Self {
        m.freeze()
    }
}

impl fmt::Debug for SharedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMessage")
            .field("len", &self.len)
            .field("refs", &self.ref_count())
            .field("origin", &self.origin())
            .finish()
    }
}
