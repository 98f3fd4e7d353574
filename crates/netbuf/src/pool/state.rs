//! The pool's shared state: size classes, the depot of free chains, the
//! thread registry, and the one free path ([`release`]).

use core::alloc::Layout;
use core::ptr::NonNull;

use allocator_api2::alloc::Allocator;

use super::cache;
use super::header::{BLOCK_ALIGN, HEADER_SIZE, Header, ORIGIN_HEAP};
use crate::sync::{
    Arc, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Mutex, Ordering, OwnedCounter, fence,
};

/// One size class's shared state.
pub(crate) struct ClassShared {
    /// Payload bytes of every block in this class.
    pub(crate) size: usize,
    /// Blocks per chain moved between a thread cache and the depot.
    pub(crate) batch: usize,
    /// The depot: each slot holds the head of a chain of `batch` free
    /// blocks, or null. Fixed length, so the depot is bounded.
    pub(crate) depot: Box<[AtomicPtr<Header>]>,
    /// Blocks taken from the allocator and not yet given back.
    pub(crate) outstanding: AtomicUsize,
    /// Free blocks in the depot (statistics only). Added before a chain is
    /// published and subtracted after it is taken, so it never reads low.
    pub(crate) depot_blocks: AtomicUsize,
    /// Allocations and frees that had no thread cache (thread teardown).
    pub(crate) uncached_allocs: AtomicU64,
    pub(crate) uncached_frees: AtomicU64,
}

impl ClassShared {
    pub(crate) fn layout(&self) -> Layout {
        // The size was validated when the pool was built.
        Layout::from_size_align(HEADER_SIZE + self.size, BLOCK_ALIGN).expect("valid class layout")
    }
}

/// Per-thread, per-class counters, written by their thread only.
pub(crate) struct ClassCounters {
    pub(crate) allocs: OwnedCounter,
    pub(crate) frees: OwnedCounter,
    pub(crate) hits: OwnedCounter,
    pub(crate) misses: OwnedCounter,
}

/// One thread's counters for one pool.
pub(crate) struct ThreadCounters {
    pub(crate) classes: Box<[ClassCounters]>,
}

impl ThreadCounters {
    pub(crate) fn new(n: usize) -> Self {
        ThreadCounters {
            classes: (0..n)
                .map(|_| ClassCounters {
                    allocs: OwnedCounter::new(),
                    frees: OwnedCounter::new(),
                    hits: OwnedCounter::new(),
                    misses: OwnedCounter::new(),
                })
                .collect(),
        }
    }
}

#[derive(Default, Clone, Copy)]
pub(crate) struct Totals {
    pub(crate) allocs: u64,
    pub(crate) frees: u64,
    pub(crate) hits: u64,
    pub(crate) misses: u64,
}

/// Threads that hold a cache of this pool, and the totals of those gone.
pub(crate) struct Registry {
    pub(crate) threads: Vec<Arc<ThreadCounters>>,
    pub(crate) retired: Vec<Totals>,
}

type AllocFn = unsafe fn(NonNull<PoolCore>, Layout) -> Option<NonNull<u8>>;
type DeallocFn = unsafe fn(NonNull<PoolCore>, NonNull<u8>, Layout);
type DestroyFn = unsafe fn(NonNull<PoolCore>);

/// The type-erased part of a pool that blocks point to.
///
/// `#[repr(C)]` and first in [`PoolShared<A>`], so a `NonNull<PoolCore>`
/// can be cast back to the `PoolShared<A>` it came from by the function
/// pointers below, which were instantiated for that `A`.
#[repr(C)]
pub(crate) struct PoolCore {
    /// 1 for all handles together + 1 per thread cache + 1 per block handed
    /// out by the allocator (pooled or heap). The last release destroys.
    pub(crate) refs: AtomicUsize,
    pub(crate) handles: AtomicUsize,
    /// Bumped by `trim()` and by closing; thread caches compare it with the
    /// value they last saw and flush on a change.
    pub(crate) epoch: AtomicUsize,
    pub(crate) closed: AtomicBool,
    pub(crate) classes: Box<[ClassShared]>,
    pub(crate) max_message: usize,
    pub(crate) heap_allocs: AtomicU64,
    pub(crate) heap_frees: AtomicU64,
    pub(crate) heap_live_bytes: AtomicU64,
    pub(crate) registry: Mutex<Registry>,
    pub(crate) report_leaks_on_drop: bool,
    #[cfg(feature = "leak-trace")]
    pub(crate) tracer: crate::pool::leak::Tracer,
    pub(crate) alloc_fn: AllocFn,
    pub(crate) dealloc_fn: DeallocFn,
    pub(crate) destroy_fn: DestroyFn,
}

#[repr(C)]
pub(crate) struct PoolShared<A> {
    pub(crate) core: PoolCore,
    pub(crate) alloc: A,
}

pub(crate) unsafe fn alloc_raw<A: Allocator>(
    core: NonNull<PoolCore>,
    layout: Layout,
) -> Option<NonNull<u8>> {
    // SAFETY: `core` is the first field of a live `PoolShared<A>` (this
    // function is only stored in pools built for `A`, and the caller holds
    // a reference on the pool).
    let shared = unsafe { core.cast::<PoolShared<A>>().as_ref() };
    shared.alloc.allocate(layout).ok().map(|p| p.cast::<u8>())
}

pub(crate) unsafe fn dealloc_raw<A: Allocator>(
    core: NonNull<PoolCore>,
    ptr: NonNull<u8>,
    layout: Layout,
) {
    // SAFETY: as in `alloc_raw`; `ptr` was allocated by this same allocator
    // with `layout` (caller's guarantee).
    unsafe {
        let shared = core.cast::<PoolShared<A>>().as_ref();
        shared.alloc.deallocate(ptr, layout);
    }
}

pub(crate) unsafe fn destroy<A>(core: NonNull<PoolCore>) {
    // SAFETY: the pool was created by `Box::into_raw(Box<PoolShared<A>>)`
    // and the caller released its last reference, so nothing else can
    // reach it.
    drop(unsafe { Box::from_raw(core.cast::<PoolShared<A>>().as_ptr()) });
}

impl PoolCore {
    /// Takes `n` references on the pool.
    #[inline]
    pub(crate) fn acquire(&self, n: usize) {
        self.refs.fetch_add(n, Ordering::Relaxed);
    }

    /// Gives back `n` references; the last one destroys the pool.
    ///
    /// # Safety
    /// The caller owns `n` references and does not touch the pool after
    /// this call.
    pub(crate) unsafe fn release(core: NonNull<PoolCore>, n: usize) {
        // SAFETY: the caller still holds `n` references, so it is alive.
        let this = unsafe { core.as_ref() };
        if this.refs.fetch_sub(n, Ordering::Release) == n {
            // Synchronise with every other release before destroying, as
            // `Arc` does.
            fence(Ordering::Acquire);
            let destroy = this.destroy_fn;
            // SAFETY: that was the last reference.
            unsafe { destroy(core) };
        }
    }

    /// A fresh block for class `class` from the allocator (a cache miss),
    /// initialised and counted.
    pub(crate) fn carve(core: NonNull<PoolCore>, class: usize) -> Option<NonNull<Header>> {
        // SAFETY: the caller holds a reference (a handle or a thread cache).
        let this = unsafe { core.as_ref() };
        let c = &this.classes[class];
        // SAFETY: `alloc_fn` matches this pool's allocator type.
        let raw = unsafe { (this.alloc_fn)(core, c.layout()) }?;
        this.acquire(1);
        c.outstanding.fetch_add(1, Ordering::Relaxed);
        let hdr = raw.cast::<Header>();
        // SAFETY: fresh allocation of HEADER_SIZE + size bytes, aligned to
        // BLOCK_ALIGN.
        unsafe { Header::init(hdr, core, c.size as u32, class as u8) };
        Some(hdr)
    }

    /// Gives a free pooled block of class `class` back to the allocator and
    /// drops the reference it held.
    ///
    /// # Safety
    /// `hdr` is a free block of this class (no message refers to it), and
    /// the caller does not use the pool afterwards unless it holds another
    /// reference.
    pub(crate) unsafe fn release_block_to_allocator(
        core: NonNull<PoolCore>,
        class: usize,
        hdr: NonNull<Header>,
    ) {
        // SAFETY: the block holds a reference, so the pool is alive.
        let this = unsafe { core.as_ref() };
        let c = &this.classes[class];
        c.outstanding.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: the block was allocated by `alloc_fn` with this layout.
        unsafe {
            (this.dealloc_fn)(core, hdr.cast(), c.layout());
            PoolCore::release(core, 1);
        }
    }

    /// Puts a chain in the depot. Returns it if every slot is taken.
    pub(crate) fn depot_put(
        &self,
        class: usize,
        head: NonNull<Header>,
    ) -> Result<(), NonNull<Header>> {
        let c = &self.classes[class];
        for slot in c.depot.iter() {
            if slot.load(Ordering::Relaxed).is_null()
                && slot
                    .compare_exchange(
                        core::ptr::null_mut(),
                        head.as_ptr(),
                        Ordering::SeqCst,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                return Ok(());
            }
        }
        Err(head)
    }

    /// Takes a chain from the depot, if any.
    pub(crate) fn depot_take(&self, class: usize) -> Option<NonNull<Header>> {
        let c = &self.classes[class];
        for slot in c.depot.iter() {
            if !slot.load(Ordering::Relaxed).is_null() {
                // `swap` hands the chain to exactly one taker.
                if let Some(p) = NonNull::new(slot.swap(core::ptr::null_mut(), Ordering::SeqCst)) {
                    return Some(p);
                }
            }
        }
        None
    }

    /// Empties the depot into the allocator. Returns the bytes released.
    ///
    /// Starts with a SeqCst fence, so that a drain run after storing
    /// `closed` sees every chain whose putter went on to miss `closed`.
    ///
    /// # Safety
    /// The caller holds a reference other than those of the drained blocks.
    pub(crate) unsafe fn drain_depot(core: NonNull<PoolCore>) -> usize {
        // SAFETY: the caller holds a reference.
        let this = unsafe { core.as_ref() };
        // The closer's half of the store/load hand-off with `cache::park`
        // (close stores `closed`, fence, scans the slots with the Relaxed
        // loads of `depot_take`; park CASes a slot, fence, loads `closed`):
        // of the two SeqCst fences, whichever comes second sees the other
        // side's write. The SeqCst `closed` store and epoch RMW before this
        // do not give that on their own in the language model (the scan's
        // loads are Relaxed), whatever x86 and ARMv8 do. Loom models SeqCst
        // fences but not SeqCst loads/stores, so this fence pair is what
        // `pool::loom::park_vs_close_strands_no_chain` checks. For
        // `trim()` the fence is not needed, and harmless (cold path).
        fence(Ordering::SeqCst);
        let mut bytes = 0;
        for (class, c) in this.classes.iter().enumerate() {
            while let Some(head) = this.depot_take(class) {
                // SAFETY: the chain was taken exclusively from the depot.
                let n = unsafe { cache::release_chain(core, class, head) };
                c.depot_blocks.fetch_sub(n, Ordering::Relaxed);
                bytes += n * c.size;
            }
        }
        bytes
    }

    /// The size class for `n` payload bytes, if pooled.
    #[inline]
    pub(crate) fn class_for(&self, n: usize) -> Option<usize> {
        self.classes.iter().position(|c| c.size >= n)
    }
}

/// Releases the block of a message whose last owner is gone: the one free
/// path. Reads the origin tag and returns the memory where it came from.
///
/// # Safety
/// `hdr` is a block handed out by a pool, and the caller was its last owner.
pub(crate) unsafe fn release(hdr: NonNull<Header>) {
    // SAFETY: the block is valid until it is released here.
    let (core, origin, cap) = unsafe {
        let h = hdr.as_ref();
        #[cfg(feature = "leak-trace")]
        if h.flags & crate::pool::header::FLAG_TRACED != 0 {
            h.core.as_ref().tracer.forget(hdr);
        }
        (h.core, h.origin, h.capacity as usize)
    };
    if origin == ORIGIN_HEAP {
        // SAFETY: the block holds a reference on the pool.
        let this = unsafe { core.as_ref() };
        this.heap_frees.fetch_add(1, Ordering::Relaxed);
        this.heap_live_bytes
            .fetch_sub(cap as u64, Ordering::Relaxed);
        let layout = heap_layout(cap);
        // SAFETY: heap blocks are allocated by `alloc_fn` with `heap_layout`;
        // then the block's reference is dropped, last.
        unsafe {
            (this.dealloc_fn)(core, hdr.cast(), layout);
            PoolCore::release(core, 1);
        }
    } else {
        // SAFETY: a pooled block whose last owner is the caller.
        unsafe { cache::free_block(core, origin as usize, hdr) }
    }
}

pub(crate) fn heap_layout(cap: usize) -> Layout {
    // `cap` was checked against `max_message` (far below isize::MAX) at
    // allocation.
    Layout::from_size_align(HEADER_SIZE + cap, BLOCK_ALIGN).expect("valid heap layout")
}

// Used by the thread caches to fold a departing thread's counters.
impl Registry {
    pub(crate) fn retire(&mut self, counters: &Arc<ThreadCounters>) {
        if let Some(i) = self.threads.iter().position(|t| Arc::ptr_eq(t, counters)) {
            let t = self.threads.swap_remove(i);
            for (r, c) in self.retired.iter_mut().zip(t.classes.iter()) {
                r.allocs += c.allocs.get();
                r.frees += c.frees.get();
                r.hits += c.hits.get();
                r.misses += c.misses.get();
            }
        }
    }
}
