//! Panic-safety guards (issue 12): [`Unreleased`] gives back the bytes of
//! the items a drain handed out, [`BatchGuard`] settles a `push_batch`,
//! however the user code they run around ends.

use core::{mem, ptr, slice};

use super::block::Block;
use super::{QueueItem, Released, SendQueue};

/// Bytes of the items a drain handed out that it has not given back to the
/// state word yet, and whether a release asked for the producers waiting
/// for space to be woken. A drain that ends gives the bytes back itself, in
/// the one RMW that may also arm the wakeup ([`release`](Self::release));
/// if user code panics first (the `drain_each` callback, an item's `Drop`
/// in `close`, `byte_size`), the drop of this guard gives them back while
/// unwinding. Either way, its drop wakes the waiting producers if a release
/// cleared `WAITERS`: the guard outlives the consumer lock, so the wakers
/// run after the lock is released, and no release can skip the wake.
pub(super) struct Unreleased<'a, T: QueueItem> {
    queue: &'a SendQueue<T>,
    pub(super) bytes: u64,
    wake_waiters: bool,
}

impl<'a, T: QueueItem> Unreleased<'a, T> {
    pub(super) fn new(queue: &'a SendQueue<T>) -> Self {
        Unreleased {
            queue,
            bytes: 0,
            wake_waiters: false,
        }
    }

    /// Gives the bytes back ([`SendQueue::release`]); the guard then holds
    /// none, and remembers whether to wake the waiting producers.
    #[inline]
    pub(super) fn release(&mut self, idle_at: Option<u64>) -> Released {
        let r = self.queue.release(mem::take(&mut self.bytes), idle_at);
        self.wake_waiters |= r.wake_waiters;
        r
    }
}

impl<T: QueueItem> Drop for Unreleased<'_, T> {
    #[inline]
    fn drop(&mut self) {
        if self.bytes != 0 {
            self.release(None);
        }
        if self.wake_waiters {
            self.queue.waiters.wake_all();
        }
    }
}

/// A [`SendQueue::push_batch`] in progress, settled when dropped, however
/// the push ends (a panic in `byte_size` or the notifier included): the
/// items moved into the queue (the first `taken`) are removed from the
/// caller's vector, the others stay in it, in order, and the block taken
/// for linking, if not linked, becomes the spare.
pub(super) struct BatchGuard<'a, T: QueueItem> {
    queue: &'a SendQueue<T>,
    /// The caller's vector. Its length is 0 while the guard lives, so the
    /// items are never dropped twice, even if the guard were leaked.
    batch: &'a mut Vec<T>,
    /// The vector's length when the push started.
    len: usize,
    /// Items moved out of the front of the vector (into the queue).
    taken: usize,
    /// A reset block taken for linking, not linked yet (or null).
    next: *mut Block<T>,
}

impl<'a, T: QueueItem> BatchGuard<'a, T> {
    pub(super) fn new(queue: &'a SendQueue<T>, batch: &'a mut Vec<T>) -> Self {
        let len = batch.len();
        // SAFETY: 0 <= capacity, and no element is exposed uninitialised:
        // the items stay in the buffer, owned by the guard.
        unsafe { batch.set_len(0) };
        BatchGuard {
            queue,
            batch,
            len,
            taken: 0,
            next: ptr::null_mut(),
        }
    }

    /// Items moved into the queue so far.
    #[inline]
    pub(super) fn taken(&self) -> usize {
        self.taken
    }

    /// The items not moved out yet, and the slot of the block taken for
    /// linking (the reservation may fill it; the guard owns what it holds).
    #[inline]
    pub(super) fn rest_and_next(&mut self) -> (&[T], &mut *mut Block<T>) {
        // SAFETY: the buffer's items `taken..len` are initialised and not
        // moved out; `taken <= len <= capacity`.
        let rest = unsafe {
            slice::from_raw_parts(self.batch.as_ptr().add(self.taken), self.len - self.taken)
        };
        (rest, &mut self.next)
    }

    /// The block taken for linking, now to be linked: the guard no longer
    /// owns it.
    #[inline]
    pub(super) fn take_next(&mut self) -> *mut Block<T> {
        mem::replace(&mut self.next, ptr::null_mut())
    }

    /// Moves the next item out of the vector. Runs between a reservation
    /// and its publication, so it must not panic: the caller checked
    /// `taken < len` (it reserved at most as many slots as items remain).
    #[inline]
    pub(super) fn take(&mut self) -> T {
        debug_assert!(self.taken < self.len);
        // SAFETY: item `taken` is initialised and not moved out yet; it is
        // counted as taken, so it is neither read nor dropped again.
        let item = unsafe { ptr::read(self.batch.as_ptr().add(self.taken)) };
        self.taken += 1;
        item
    }
}

impl<T: QueueItem> Drop for BatchGuard<'_, T> {
    fn drop(&mut self) {
        self.queue
            .put_spare(mem::replace(&mut self.next, ptr::null_mut()));
        let rest = self.len - self.taken;
        if self.taken != 0 && rest != 0 {
            let p = self.batch.as_mut_ptr();
            // SAFETY: the buffer's items `taken..len` are initialised and
            // owned by the guard; `copy` handles the overlap. The items
            // before them were moved out, so they are overwritten, not
            // dropped.
            unsafe { ptr::copy(p.add(self.taken), p, rest) };
        }
        // SAFETY: the first `rest` items of the buffer are initialised and
        // owned by nobody else now.
        unsafe { self.batch.set_len(rest) };
    }
}
