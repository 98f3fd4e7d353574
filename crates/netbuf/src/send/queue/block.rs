//! The block list: blocks of slots, how producers install, link and
//! publish into them, how a reader walks them ([`Cursor`]) and finds the
//! block a push installed, the spare block, and the walk that frees what
//! is left when the queue drops.

use core::mem::{self, MaybeUninit};
use core::ptr;

use super::state::{BLOCK_CAP, INDEX_ONE, next_index, offset_of};
use super::{QueueItem, SendQueue};
use crate::sync::{AtomicPtr, AtomicUsize, Ordering, UnsafeCell};

/// Slot states.
pub(super) const EMPTY: usize = 0;
pub(super) const READY: usize = 1;
pub(super) const PARKED: usize = 2;

pub(super) struct Slot<T> {
    item: UnsafeCell<MaybeUninit<T>>,
    pub(super) state: AtomicUsize,
}

pub(super) struct Block<T> {
    next: AtomicPtr<Block<T>>,
    slots: [Slot<T>; BLOCK_CAP],
    /// Under loom, a block still allocated when a model execution ends
    /// fails the model ("Allocation leaked"), in every model of the queue.
    /// Dropped by [`Block::free`].
    #[cfg(loom)]
    leak_check: core::mem::ManuallyDrop<loom::alloc::Track<()>>,
    /// Under loom, set when the block is freed into the quarantine (see
    /// [`quarantine`]); every access to the block checks it.
    #[cfg(loom)]
    freed: quarantine::Mark,
}

impl<T> Block<T> {
    pub(super) fn alloc() -> *mut Block<T> {
        Box::into_raw(Box::new(Block {
            next: AtomicPtr::new(ptr::null_mut()),
            slots: core::array::from_fn(|_| Slot {
                item: UnsafeCell::new(MaybeUninit::uninit()),
                state: AtomicUsize::new(EMPTY),
            }),
            #[cfg(loom)]
            leak_check: core::mem::ManuallyDrop::new(loom::alloc::Track::new(())),
            #[cfg(loom)]
            freed: quarantine::Mark::default(),
        }))
    }

    /// # Safety
    /// `b` came from [`Block::alloc`], no slot holds an item, and nothing
    /// else can reach it.
    pub(super) unsafe fn free(b: *mut Block<T>) {
        #[cfg(loom)]
        {
            // SAFETY: the caller's guarantee: the block is ours alone.
            let block = unsafe { &mut *b };
            block.live();
            // SAFETY: dropped once: the block is freed (or quarantined)
            // right after, and `Box`'s drop does not drop a `ManuallyDrop`.
            unsafe { core::mem::ManuallyDrop::drop(&mut block.leak_check) };
            // SAFETY: `b` came from `Box::new` (the caller's guarantee).
            if unsafe { quarantine::keep(b) } {
                return;
            }
        }
        // SAFETY: guaranteed by the caller; `MaybeUninit` slots drop nothing.
        drop(unsafe { Box::from_raw(b) });
    }

    /// Under loom, fails the model if the block was freed (into the
    /// quarantine): a use after free. Nothing otherwise.
    #[inline(always)]
    fn live(&self) {
        #[cfg(loom)]
        self.freed.check();
    }

    /// The next block (null until linked).
    #[cfg(any(debug_assertions, all(test, loom)))]
    pub(super) fn next(&self) -> *mut Block<T> {
        self.live();
        self.next.load(Ordering::Acquire)
    }
}

/// Under loom: catching a use after free of a block. Loom checks accesses
/// to its atomics and cells, but not whether the memory holding them was
/// freed, and the allocator would likely give a freed block's address to
/// the next block allocated, hiding the bug. A model that calls
/// [`quarantine::begin_execution`] first thing in its closure keeps every
/// block freed in an execution allocated until the next execution starts,
/// marked as freed, and every access to a block checks the mark (a model
/// panic). Deliberately `std` (a thread-local and a `std` atomic, not
/// `crate::sync`): the instrumentation must be invisible to loom, adding
/// no synchronisation to the model. Loom runs a model's threads as
/// coroutines on the test's thread, so the thread-local is per model run.
#[cfg(loom)]
pub(crate) mod quarantine {
    use core::alloc::Layout;
    use std::cell::RefCell;
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

    use super::Block;

    std::thread_local! {
        /// `Some` while quarantining: the blocks freed in this execution.
        static FREED: RefCell<Option<Vec<(*mut u8, Layout)>>> = const { RefCell::new(None) };
    }

    /// A block's "freed" mark.
    #[derive(Debug, Default)]
    pub(super) struct Mark(AtomicBool);

    impl Mark {
        pub(super) fn check(&self) {
            assert!(
                !self.0.load(Relaxed),
                "use after free: a block the queue freed was accessed"
            );
        }
    }

    /// Frees the blocks the previous execution quarantined (all its
    /// threads are gone) and quarantines those this one frees. Call it
    /// first in the model's closure.
    #[cfg(test)]
    pub(crate) fn begin_execution() {
        let old = FREED.with(|f| f.borrow_mut().replace(Vec::new()));
        for (p, layout) in old.into_iter().flatten() {
            // SAFETY: `p` came from `Box<Block<T>>` (the global allocator,
            // with the block's layout, recorded by `keep`); its leak check
            // was dropped, and the rest of a block (loom atomics and
            // cells, `MaybeUninit` items, the mark) needs no drop.
            unsafe { std::alloc::dealloc(p, layout) };
        }
    }

    /// Marks `b` freed and keeps it allocated, if quarantining; returns
    /// whether it did (else the caller frees it).
    ///
    /// # Safety
    /// `b` came from `Box::new`, and is being freed.
    pub(super) unsafe fn keep<T>(b: *mut Block<T>) -> bool {
        FREED.with(|f| match f.borrow_mut().as_mut() {
            Some(v) => {
                // SAFETY: alive until the next execution (the caller's
                // guarantee, and `begin_execution` frees it only then).
                unsafe { (*b).freed.0.store(true, Relaxed) };
                v.push((b.cast(), Layout::new::<Block<T>>()));
                true
            }
            None => false,
        })
    }
}

/// A reading position in the block list: the next index to read (32-bit
/// domain) and the block holding it. The consumer's, kept under its lock,
/// and the one the queue's `Drop` walks the leftovers with.
pub(super) struct Cursor<T> {
    /// Never a boundary position while `block` is set. With `block` null
    /// (a new queue, or one whose blocks were released), the boundary
    /// position just before the slots of the block the next push installs
    /// (see [`SendQueue::adopt_first`]).
    pub(super) head: u64,
    /// The block holding `head`, or null: no block adopted yet.
    pub(super) block: *mut Block<T>,
}

impl<T> Cursor<T> {
    /// The slot at `head`.
    ///
    /// # Safety
    /// `block` is the live block holding `head`.
    #[inline]
    pub(super) unsafe fn slot(&self) -> &Slot<T> {
        // SAFETY: guaranteed by the caller.
        let block = unsafe { &*self.block };
        block.live();
        &block.slots[offset_of(self.head)]
    }

    /// The one consumer advance: moves the item at `head` out and steps
    /// past it. When that was the block's last slot, it also steps into the
    /// next block and returns the block it left, for the caller to recycle
    /// or free: every slot of it was published and read, so no producer
    /// touches it any more and no item is left in it (`tail_block` moved on
    /// before the last slot was published).
    ///
    /// The item is out and the cursor past it before the caller runs any
    /// user code, so a panic there cannot make it readable twice.
    ///
    /// # Safety
    /// `block` is the live block holding `head`, and the slot at `head` is
    /// published (`READY`, acquired by the caller) and was never read.
    #[inline]
    pub(super) unsafe fn advance(&mut self) -> (T, Option<*mut Block<T>>) {
        let off = offset_of(self.head);
        // SAFETY: the caller's guarantee.
        let block = unsafe { &*self.block };
        block.live();
        let slot = &block.slots[off];
        // SAFETY: READY (acquired) means the producer wrote the item and
        // will not touch the slot again; it is read exactly once: `head`
        // moves past it.
        let item = slot.item.with(|p| unsafe { ptr::read(p).assume_init() });
        self.head = next_index(self.head);
        if off + 1 != BLOCK_CAP {
            return (item, None);
        }
        let old = self.block;
        // The producer of the last slot linked the next block before
        // publishing it (acquired by the caller).
        let next = block.next.load(Ordering::Acquire);
        debug_assert!(!next.is_null());
        self.block = next;
        // Past the boundary position.
        self.head = next_index(self.head);
        (item, Some(old))
    }
}

impl<T: QueueItem> SendQueue<T> {
    /// Installs a block in a queue that has none (a new queue, or one whose
    /// blocks [`release_idle_blocks`](Self::release_idle_blocks) freed).
    /// Called by a producer that found the tail index on a boundary
    /// position and `first` null, before it reserves.
    ///
    /// `first` is null only while the queue has no block and the tail index
    /// sits on the boundary position before the slots of the block to come
    /// (the builder starts it so; a release nulls `first` last, after
    /// moving the index there), and it leaves null only by the CAS below.
    /// So the one producer whose CAS takes `first` from null is the only
    /// installer of this block, however stale its view was when it decided
    /// to try (its block is a fresh or reset one, never a pointer read
    /// earlier), and no one else moves the index off the boundary: it
    /// publishes its block in `tail_block`, then moves the index past the
    /// boundary, which lets reservations in (see `reserve`) and the
    /// consumer adopt the block ([`adopt_first`](Self::adopt_first)).
    #[cold]
    pub(super) fn install_block(&self) {
        let b = self.take_block();
        match self
            .first
            .compare_exchange(ptr::null_mut(), b, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                // The acquire above read the release's null `first`, so the
                // release's null `tail_block` is overwritten, not the other
                // way round.
                self.tail_block.store(b, Ordering::Release);
                // The index sits on the boundary, which only we move off
                // (the add wraps out of the top of the word at 2^32).
                self.state.fetch_add(INDEX_ONE, Ordering::Release);
            }
            // Another producer installed its block: ours stays unpublished.
            Err(_) => self.put_spare(b),
        }
    }

    /// Moves the consumer's cursor `c`, which holds no block, into the
    /// block a push installed after `c.head`, at its first slot. Call only
    /// after an `Acquire` load of the state word showed the tail index past
    /// `c.head`: the installer set `first` before moving it there (and only
    /// a release, which takes the consumer lock, nulls it again). Returns
    /// `false`, leaving `c` as it was, if there is no such block (which
    /// would be a bug).
    pub(super) fn adopt_first(&self, c: &mut Cursor<T>) -> bool {
        debug_assert!(c.block.is_null());
        let b = self.first.load(Ordering::Acquire);
        debug_assert!(!b.is_null());
        if b.is_null() {
            return false;
        }
        c.block = b;
        // Past the boundary: the block's first slot.
        c.head = next_index(c.head);
        true
    }

    /// A reset block for linking: the spare, or a new one.
    pub(super) fn take_block(&self) -> *mut Block<T> {
        let b = self.spare.swap(ptr::null_mut(), Ordering::Acquire);
        if b.is_null() { Block::alloc() } else { b }
    }

    /// Keeps `b` (a reset block nobody else can reach) as the spare, or
    /// frees it.
    pub(super) fn put_spare(&self, b: *mut Block<T>) {
        if b.is_null() {
            return;
        }
        if self
            .spare
            .compare_exchange(ptr::null_mut(), b, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            // SAFETY: `b` is reset and unreachable (caller's guarantee), and
            // it did not become the spare.
            unsafe { Block::free(b) };
        }
    }

    /// Links `next` after `block`, whose last slot the caller reserved, and
    /// moves the tail index past the boundary position.
    ///
    /// # Safety
    /// The caller's reservation includes the last slot of `block` and it
    /// has not published that slot yet (so `block` is alive); `next` is a
    /// reset block nobody else can reach.
    #[inline]
    pub(super) unsafe fn link_next(&self, block: *mut Block<T>, next: *mut Block<T>) {
        debug_assert!(!next.is_null());
        // SAFETY: `block` is alive: our unpublished slot keeps the consumer
        // from leaving it.
        let b = unsafe { &*block };
        b.live();
        b.next.store(next, Ordering::Release);
        self.tail_block.store(next, Ordering::Release);
        // The index sits on the boundary position, which no one else can
        // move; the add wraps out of the top of the word at 2^32.
        self.state.fetch_add(INDEX_ONE, Ordering::Release);
    }

    /// Writes `item` into slot `off` of `block` and publishes it. Returns
    /// whether the consumer had parked on that slot (it must be notified).
    ///
    /// # Safety
    /// The caller reserved this slot (exactly once) and has not published
    /// it; `block` is the block of that reservation.
    #[inline]
    pub(super) unsafe fn publish(&self, block: *mut Block<T>, off: usize, item: T) -> bool {
        // SAFETY: the slot is reserved to us, so the consumer does not leave
        // the block and nobody else writes this slot until we publish.
        let block = unsafe { &*block };
        block.live();
        let slot = &block.slots[off];
        // SAFETY: exclusive access to the cell until the `swap` below, which
        // releases the write to the consumer.
        slot.item.with_mut(|p| unsafe { (*p).write(item) });
        // After this swap the consumer may read the slot and recycle the
        // block: do not touch it again.
        slot.state.swap(READY, Ordering::AcqRel) == PARKED
    }

    /// Resets a block the consumer left and keeps it as the spare.
    ///
    /// # Safety
    /// Every slot of `b` was published and read; nothing else references it.
    pub(super) unsafe fn recycle(&self, b: *mut Block<T>) {
        // SAFETY: exclusive access (caller's guarantee).
        let block = unsafe { &*b };
        block.live();
        for s in &block.slots {
            s.state.store(EMPTY, Ordering::Relaxed);
        }
        block.next.store(ptr::null_mut(), Ordering::Relaxed);
        // The Release in `put_spare` publishes the reset to the producer
        // that takes the block.
        self.put_spare(b);
    }
}

/// What the drop of a [`SendQueue`] still has to free: the items from
/// `at.head` to `end` and the blocks holding them (from `at.block` on).
pub(super) struct Remains<T> {
    pub(super) at: Cursor<T>,
    pub(super) end: u64,
}

impl<T> Remains<T> {
    /// Moves the item at the cursor out and steps past it, freeing each
    /// block it leaves; `None` at `end`.
    ///
    /// # Safety
    /// As for [`drop_all`](Self::drop_all).
    unsafe fn next(&mut self) -> Option<T> {
        if self.at.head == self.end {
            return None;
        }
        // SAFETY: `at.block` is the live block holding `at.head` (caller's
        // guarantee, kept by `advance` when stepping to the next block).
        let slot = unsafe { self.at.slot() };
        if slot.state.load(Ordering::Acquire) != READY {
            // Cannot happen (a push cannot stop between reserving and
            // publishing); leak rather than read an unwritten slot.
            self.end = self.at.head;
            return None;
        }
        // SAFETY: a published item (acquired above), never read: the
        // consumer stopped before it and nothing else reads it.
        let (item, left) = unsafe { self.at.advance() };
        if let Some(old) = left {
            // SAFETY: all of the block's items were read; nothing else
            // references it.
            unsafe { Block::free(old) };
        }
        Some(item)
    }

    /// Drops every remaining item and frees the blocks. If an item's `Drop`
    /// panics, the rest are still dropped and freed while unwinding (a
    /// second panic aborts, as in `Vec`).
    ///
    /// # Safety
    /// `at.block` is the live block holding `at.head`; the slots from
    /// `at.head` to `end` hold items nobody else will read; nothing else
    /// references `at.block` or the blocks after it.
    pub(super) unsafe fn drop_all(&mut self) {
        /// Carries on with the rest if an item's `Drop` panicked.
        struct OnUnwind<'a, T>(&'a mut Remains<T>);
        impl<T> Drop for OnUnwind<'_, T> {
            fn drop(&mut self) {
                // SAFETY: the caller's guarantees, still held by `Remains`.
                unsafe { self.0.drop_all() };
            }
        }
        // SAFETY: the caller's guarantees.
        while let Some(item) = unsafe { self.next() } {
            let guard = OnUnwind(self);
            drop(item);
            mem::forget(guard);
        }
        if !self.at.block.is_null() {
            // SAFETY: every item of the block was read; nothing else
            // references it, and `at.block` is cleared so it is freed once.
            unsafe { Block::free(mem::replace(&mut self.at.block, ptr::null_mut())) };
        }
    }
}
