//! The hybrid message pool: size-routed pooled blocks with per-thread
//! caches, a heap fallback, and one free path.
//!
//! # Routing
//!
//! A request for `n` bytes goes to the smallest size class that holds `n`
//! (by default one class, the 4 KiB block). Larger requests, up to
//! [`PoolConfig::max_message`] (16 MiB by default), are allocated from the
//! pool's fallback [`Allocator`] (the global allocator by default); beyond
//! that, [`PoolError::TooLarge`]. Tiny, short-lived objects that are not
//! messages (closures, small control records) do not belong here at all:
//! the `pool` benchmark measured a 4 KiB-block pool for them at 2-3x the
//! cost of `Box` (cache pollution): a few bytes of data spread over a page.
//!
//! # Where freed blocks go
//!
//! Each thread keeps, per pool and size class, two chains of at most
//! `batch` free blocks (`batch = thread_cache_bytes / (2 * class size)`).
//! Allocation pops from the thread's chain and free pushes to it: no atomic
//! instruction, no lock. When a thread's chains are full, one whole chain
//! moves to the pool's *depot* with one compare-and-swap; when they are
//! empty, the thread takes a whole chain from the depot with one swap. So
//! a logic thread that allocates and an IO thread that frees exchange
//! blocks a batch at a time. The depot has a fixed number of slots
//! (`total_cache_bytes / (batch * class size)`): when it is full, the chain
//! goes back to the allocator instead. Nothing grows without bound.
//!
//! # Lifetime
//!
//! The pool's shared state is reference counted by its handles, by each
//! thread cache that holds its blocks, and by every block it handed out, so
//! messages may outlive the pool and the pool may outlive its messages.
//! Dropping the last [`MessagePool`] handle returns the depot's blocks to the
//! allocator; blocks cached by other threads go back when those threads next
//! touch the pool or exit.

use core::alloc::Layout;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;

use allocator_api2::alloc::{Allocator, Global};

use crate::cache;
use crate::header::{BLOCK_ALIGN, HEADER_SIZE, Header, ORIGIN_HEAP};
use crate::message::Message;
use crate::sync::{
    Arc, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Mutex, Ordering, OwnedCounter, fence, lock,
};

/// Why the pool could not hand out a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The request is larger than [`PoolConfig::max_message`].
    #[error("message of {requested} bytes exceeds the pool's maximum of {max} bytes")]
    TooLarge {
        /// Bytes requested.
        requested: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The underlying allocator returned an error.
    #[error("the allocator could not provide {0} bytes")]
    AllocFailed(usize),
}

/// How a [`MessagePool`] routes and caches. Build with [`MessagePool::builder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Payload capacity of the main block size class (default 4096).
    pub block_size: usize,
    /// Further size classes (payload bytes), e.g. `[256, 1024]`.
    pub extra_classes: Vec<usize>,
    /// Whether to pool at all: `false` sends every message to the fallback
    /// allocator (the demo's `--pool heap`).
    pub pooled: bool,
    /// Largest message the pool hands out (default 16 MiB).
    pub max_message: usize,
    /// Bytes each thread may cache per size class (default 256 KiB, held as
    /// two chains of half that).
    pub thread_cache_bytes: usize,
    /// Bytes the shared depot may hold per size class (default 16 MiB).
    pub total_cache_bytes: usize,
    /// Log a warning through `tracing` when the last handle is dropped while
    /// messages are still alive (default true).
    pub report_leaks_on_drop: bool,
    /// With the `leak-trace` feature: record the allocation site of one in
    /// every `trace_sample` messages (0 = off, the default).
    pub trace_sample: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            block_size: 4096,
            extra_classes: Vec::new(),
            pooled: true,
            max_message: 16 << 20,
            thread_cache_bytes: 256 << 10,
            total_cache_bytes: 16 << 20,
            report_leaks_on_drop: true,
            trace_sample: 0,
        }
    }
}

/// Builder for a [`MessagePool`].
///
/// ```
/// let pool = netbuf::MessagePool::builder()
///     .block_size(4096)
///     .extra_class(512)
///     .max_message(2 << 20)
///     .thread_cache_bytes(64 << 10)
///     .build();
/// assert_eq!(pool.class_sizes(), vec![512, 4096]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct PoolBuilder {
    config: PoolConfig,
}

impl PoolBuilder {
    /// Sets the main block size (payload bytes; at least 16).
    pub fn block_size(mut self, bytes: usize) -> Self {
        self.config.block_size = bytes;
        self
    }
    /// Adds a size class (payload bytes; at least 16).
    pub fn extra_class(mut self, bytes: usize) -> Self {
        self.config.extra_classes.push(bytes);
        self
    }
    /// `false`: every message comes from the fallback allocator.
    pub fn pooled(mut self, pooled: bool) -> Self {
        self.config.pooled = pooled;
        self
    }
    /// Largest message the pool hands out.
    pub fn max_message(mut self, bytes: usize) -> Self {
        self.config.max_message = bytes;
        self
    }
    /// Per-thread cache cap per size class, in bytes.
    pub fn thread_cache_bytes(mut self, bytes: usize) -> Self {
        self.config.thread_cache_bytes = bytes;
        self
    }
    /// Shared depot cap per size class, in bytes.
    pub fn total_cache_bytes(mut self, bytes: usize) -> Self {
        self.config.total_cache_bytes = bytes;
        self
    }
    /// Whether dropping the last handle with live messages logs a warning.
    pub fn report_leaks_on_drop(mut self, on: bool) -> Self {
        self.config.report_leaks_on_drop = on;
        self
    }
    /// Records the allocation site of one in `n` messages (needs the
    /// `leak-trace` feature; 0 = off).
    pub fn trace_sample(mut self, n: u64) -> Self {
        self.config.trace_sample = n;
        self
    }
    /// Builds a pool whose fallback allocator is the global allocator.
    pub fn build(self) -> MessagePool {
        MessagePool::with_config_in(self.config, Global)
    }
    /// Builds a pool whose blocks and heap messages come from `alloc`.
    pub fn build_in<A: Allocator + Send + Sync + 'static>(self, alloc: A) -> MessagePool<A> {
        MessagePool::with_config_in(self.config, alloc)
    }
}

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
struct Totals {
    allocs: u64,
    frees: u64,
    hits: u64,
    misses: u64,
}

/// Threads that hold a cache of this pool, and the totals of those gone.
pub(crate) struct Registry {
    pub(crate) threads: Vec<Arc<ThreadCounters>>,
    retired: Vec<Totals>,
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
    refs: AtomicUsize,
    handles: AtomicUsize,
    /// Bumped by `trim()` and by closing; thread caches compare it with the
    /// value they last saw and flush on a change.
    pub(crate) epoch: AtomicUsize,
    pub(crate) closed: AtomicBool,
    pub(crate) classes: Box<[ClassShared]>,
    max_message: usize,
    heap_allocs: AtomicU64,
    heap_frees: AtomicU64,
    heap_live_bytes: AtomicU64,
    pub(crate) registry: Mutex<Registry>,
    report_leaks_on_drop: bool,
    #[cfg(feature = "leak-trace")]
    pub(crate) tracer: crate::leak::Tracer,
    alloc_fn: AllocFn,
    dealloc_fn: DeallocFn,
    destroy_fn: DestroyFn,
}

#[repr(C)]
struct PoolShared<A> {
    core: PoolCore,
    alloc: A,
}

unsafe fn alloc_raw<A: Allocator>(core: NonNull<PoolCore>, layout: Layout) -> Option<NonNull<u8>> {
    // SAFETY: `core` is the first field of a live `PoolShared<A>` (this
    // function is only stored in pools built for `A`, and the caller holds
    // a reference on the pool).
    let shared = unsafe { core.cast::<PoolShared<A>>().as_ref() };
    shared.alloc.allocate(layout).ok().map(|p| p.cast::<u8>())
}

unsafe fn dealloc_raw<A: Allocator>(core: NonNull<PoolCore>, ptr: NonNull<u8>, layout: Layout) {
    // SAFETY: as in `alloc_raw`; `ptr` was allocated by this same allocator
    // with `layout` (caller's guarantee).
    unsafe {
        let shared = core.cast::<PoolShared<A>>().as_ref();
        shared.alloc.deallocate(ptr, layout);
    }
}

unsafe fn destroy<A>(core: NonNull<PoolCore>) {
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
        // `loom_models::pool::park_vs_close_strands_no_chain` checks. For
        // `trim()` the fence is not needed, and harmless (cold path).
        fence(Ordering::SeqCst);
        let mut bytes = 0;
        for (class, c) in this.classes.iter().enumerate() {
            while let Some(head) = this.depot_take(class) {
                // SAFETY: the chain was taken exclusively from the depot.
                bytes += unsafe { cache::release_chain(core, class, head) } * c.size;
            }
        }
        bytes
    }

    /// The size class for `n` payload bytes, if pooled.
    #[inline]
    fn class_for(&self, n: usize) -> Option<usize> {
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
        if h.flags & crate::header::FLAG_TRACED != 0 {
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

fn heap_layout(cap: usize) -> Layout {
    // `cap` was checked against `max_message` (far below isize::MAX) at
    // allocation.
    Layout::from_size_align(HEADER_SIZE + cap, BLOCK_ALIGN).expect("valid heap layout")
}

/// A pool of messages. Cheap to clone (clones share the pool); `Send` and
/// `Sync`, so logic threads can allocate from it while IO threads free.
///
/// ```
/// use netbuf::MessagePool;
/// use bytes::BufMut;
///
/// let pool = MessagePool::new();
/// let mut m = pool.alloc(11).unwrap();
/// m.put_slice(b"hello world");
/// assert_eq!(&m[..], b"hello world");
/// assert!(m.is_pooled());
///
/// let big = pool.alloc(1 << 20).unwrap(); // past the block size: heap
/// assert!(!big.is_pooled());
/// drop((m, big)); // one free path, whatever the origin
/// assert_eq!(pool.stats().live_messages, 0);
/// ```
pub struct MessagePool<A: Allocator + Send + Sync + 'static = Global> {
    pub(crate) core: NonNull<PoolCore>,
    _alloc: PhantomData<A>,
}

// SAFETY: the shared state is only mutated through atomics and a mutex, and
// the allocator `A` is `Send + Sync`.
unsafe impl<A: Allocator + Send + Sync + 'static> Send for MessagePool<A> {}
// SAFETY: as above.
unsafe impl<A: Allocator + Send + Sync + 'static> Sync for MessagePool<A> {}

impl MessagePool {
    /// A pool with the default configuration: one 4 KiB block class, heap
    /// fallback up to 16 MiB through the global allocator.
    pub fn new() -> Self {
        Self::with_config(PoolConfig::default())
    }

    /// A pool with `config`, falling back to the global allocator.
    pub fn with_config(config: PoolConfig) -> Self {
        Self::with_config_in(config, Global)
    }

    /// A builder starting from the defaults.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }
}

impl Default for MessagePool {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: Allocator + Send + Sync + 'static> MessagePool<A> {
    /// A pool with `config` whose blocks and heap messages come from `alloc`.
    ///
    /// Class sizes below 16 bytes are raised to 16, duplicates removed, and
    /// at most 254 classes are kept.
    pub fn with_config_in(config: PoolConfig, alloc: A) -> Self {
        let mut sizes: Vec<usize> = if config.pooled {
            std::iter::once(config.block_size)
                .chain(config.extra_classes.iter().copied())
                .map(|s| s.clamp(16, u32::MAX as usize / 2))
                .collect()
        } else {
            Vec::new()
        };
        sizes.sort_unstable();
        sizes.dedup();
        sizes.truncate(254);
        let classes = sizes
            .into_iter()
            .map(|size| {
                let batch = (config.thread_cache_bytes / (2 * size)).max(1);
                let slots = config.total_cache_bytes / (batch * size);
                ClassShared {
                    size,
                    batch,
                    depot: (0..slots)
                        .map(|_| AtomicPtr::new(core::ptr::null_mut()))
                        .collect(),
                    outstanding: AtomicUsize::new(0),
                    uncached_allocs: AtomicU64::new(0),
                    uncached_frees: AtomicU64::new(0),
                }
            })
            .collect::<Box<[_]>>();
        let n = classes.len();
        let shared = Box::new(PoolShared {
            core: PoolCore {
                refs: AtomicUsize::new(1),
                handles: AtomicUsize::new(1),
                epoch: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
                classes,
                max_message: config.max_message.min(u32::MAX as usize / 2),
                heap_allocs: AtomicU64::new(0),
                heap_frees: AtomicU64::new(0),
                heap_live_bytes: AtomicU64::new(0),
                registry: Mutex::new(Registry {
                    threads: Vec::new(),
                    retired: vec![Totals::default(); n],
                }),
                report_leaks_on_drop: config.report_leaks_on_drop,
                #[cfg(feature = "leak-trace")]
                tracer: crate::leak::Tracer::new(config.trace_sample),
                alloc_fn: alloc_raw::<A>,
                dealloc_fn: dealloc_raw::<A>,
                destroy_fn: destroy::<A>,
            },
            alloc,
        });
        let core = NonNull::from(Box::leak(shared)).cast::<PoolCore>();
        MessagePool {
            core,
            _alloc: PhantomData,
        }
    }

    fn core(&self) -> &PoolCore {
        // SAFETY: a handle holds a reference, so the pool is alive.
        unsafe { self.core.as_ref() }
    }

    /// A message with room for at least `capacity` bytes (length 0).
    ///
    /// Up to the largest size class it comes from the pool, beyond that from
    /// the fallback allocator, beyond [`PoolConfig::max_message`] it is an
    /// error. Never panics.
    #[inline]
    pub fn alloc(&self, capacity: usize) -> Result<Message, PoolError> {
        let core = self.core();
        let hdr = match core.class_for(capacity) {
            Some(class) => cache::alloc_block(self.core, class)
                .ok_or(PoolError::AllocFailed(core.classes[class].size))?,
            None => self.alloc_heap(capacity)?,
        };
        #[cfg(feature = "leak-trace")]
        core.tracer.maybe_record(hdr);
        // SAFETY: `hdr` is a block just handed out to us alone.
        Ok(unsafe { Message::from_block(hdr) })
    }

    /// A message holding a copy of `data`.
    pub fn message_from(&self, data: &[u8]) -> Result<Message, PoolError> {
        let mut m = self.alloc(data.len())?;
        m.extend_from_slice(data).expect("capacity was requested");
        Ok(m)
    }

    #[cold]
    fn alloc_heap(&self, capacity: usize) -> Result<NonNull<Header>, PoolError> {
        let core = self.core();
        if capacity > core.max_message {
            return Err(PoolError::TooLarge {
                requested: capacity,
                max: core.max_message,
            });
        }
        // SAFETY: `alloc_fn` matches this pool's allocator type and the
        // handle holds a reference.
        let raw = unsafe { (core.alloc_fn)(self.core, heap_layout(capacity)) }
            .ok_or(PoolError::AllocFailed(capacity))?;
        core.acquire(1);
        core.heap_allocs.fetch_add(1, Ordering::Relaxed);
        core.heap_live_bytes
            .fetch_add(capacity as u64, Ordering::Relaxed);
        let hdr = raw.cast::<Header>();
        // SAFETY: fresh allocation of HEADER_SIZE + capacity bytes, aligned.
        unsafe { Header::init(hdr, self.core, capacity as u32, ORIGIN_HEAP) };
        Ok(hdr)
    }

    /// Payload sizes of the size classes, ascending (empty when not pooled).
    pub fn class_sizes(&self) -> Vec<usize> {
        self.core().classes.iter().map(|c| c.size).collect()
    }

    /// The largest message this pool hands out.
    pub fn max_message(&self) -> usize {
        self.core().max_message
    }

    /// Returns cached free blocks to the allocator: the shared depot's and
    /// the calling thread's now, and every other thread's at its next
    /// allocation or free from this pool. Returns the bytes released now.
    pub fn trim(&self) -> usize {
        let core = self.core();
        core.epoch.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the handle holds a reference.
        let mut bytes = unsafe { cache::flush_current_thread(self.core) };
        // SAFETY: the handle holds a reference.
        bytes += unsafe { PoolCore::drain_depot(self.core) };
        bytes
    }

    /// Counters of the whole pool, summed over threads.
    pub fn stats(&self) -> PoolStats {
        let core = self.core();
        let reg = lock(&core.registry);
        let mut stats = PoolStats::default();
        for (i, c) in core.classes.iter().enumerate() {
            let mut t = reg.retired[i];
            for th in &reg.threads {
                let cc = &th.classes[i];
                t.allocs += cc.allocs.get();
                t.frees += cc.frees.get();
                t.hits += cc.hits.get();
                t.misses += cc.misses.get();
            }
            t.allocs += c.uncached_allocs.load(Ordering::Relaxed);
            t.frees += c.uncached_frees.load(Ordering::Relaxed);
            let live = t.allocs.saturating_sub(t.frees);
            let outstanding = c.outstanding.load(Ordering::Relaxed) as u64;
            let cls = ClassStats {
                size: c.size,
                live,
                allocs: t.allocs,
                hits: t.hits,
                misses: t.misses,
                blocks_held: outstanding,
                blocks_cached: outstanding.saturating_sub(live),
            };
            stats.pooled_live += live;
            stats.pooled_allocs += t.allocs;
            stats.hits += t.hits;
            stats.misses += t.misses;
            stats.live_bytes += live * c.size as u64;
            stats.bytes_cached += cls.blocks_cached * c.size as u64;
            stats.classes.push(cls);
        }
        stats.heap_allocs = core.heap_allocs.load(Ordering::Relaxed);
        stats.heap_live = stats
            .heap_allocs
            .saturating_sub(core.heap_frees.load(Ordering::Relaxed));
        stats.heap_live_bytes = core.heap_live_bytes.load(Ordering::Relaxed);
        stats.live_messages = stats.pooled_live + stats.heap_live;
        stats.live_bytes += stats.heap_live_bytes;
        stats.threads = reg.threads.len();
        stats
    }

    /// Messages still alive, with the allocation sites sampled by the
    /// `leak-trace` feature (empty without it).
    pub fn leak_report(&self) -> LeakReport {
        let s = self.stats();
        LeakReport {
            live_pooled: s.pooled_live,
            live_heap: s.heap_live,
            live_bytes: s.live_bytes,
            #[cfg(feature = "leak-trace")]
            sampled_sites: self.core().tracer.sites(),
            #[cfg(not(feature = "leak-trace"))]
            sampled_sites: Vec::new(),
        }
    }
}

impl<A: Allocator + Send + Sync + 'static> Clone for MessagePool<A> {
    fn clone(&self) -> Self {
        self.core().handles.fetch_add(1, Ordering::Relaxed);
        MessagePool {
            core: self.core,
            _alloc: PhantomData,
        }
    }
}

impl<A: Allocator + Send + Sync + 'static> Drop for MessagePool<A> {
    fn drop(&mut self) {
        let core = self.core();
        if core.handles.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        if core.report_leaks_on_drop {
            let report = self.leak_report();
            if report.live_pooled + report.live_heap > 0 {
                tracing::warn!(%report, "MessagePool dropped while messages are alive");
            }
        }
        // Close: thread caches that see the new epoch and `closed` give their
        // blocks back instead of caching them; a chain put in the depot
        // concurrently is either found by the drain below or taken back by
        // its putter (the fences in `drain_depot` and `cache::park`).
        core.closed.store(true, Ordering::SeqCst);
        core.epoch.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the handles' reference is still held.
        unsafe {
            cache::flush_current_thread(self.core);
            PoolCore::drain_depot(self.core);
            PoolCore::release(self.core, 1);
        }
    }
}

impl<A: Allocator + Send + Sync + 'static> fmt::Debug for MessagePool<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessagePool")
            .field("classes", &self.class_sizes())
            .field("max_message", &self.max_message())
            .finish_non_exhaustive()
    }
}

/// Counters of a pool. Per-thread figures are read without stopping the
/// threads, so a snapshot taken while they run is approximate; once they
/// are quiet it is exact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Messages alive (pooled + heap).
    pub live_messages: u64,
    /// Capacity bytes of the live messages.
    pub live_bytes: u64,
    /// Live messages in pooled blocks.
    pub pooled_live: u64,
    /// Live messages on the fallback allocator.
    pub heap_live: u64,
    /// Capacity bytes of live heap messages.
    pub heap_live_bytes: u64,
    /// Pooled allocations ever.
    pub pooled_allocs: u64,
    /// Heap allocations ever.
    pub heap_allocs: u64,
    /// Pooled allocations served from a cache (thread or depot).
    pub hits: u64,
    /// Pooled allocations that needed a new block from the allocator.
    pub misses: u64,
    /// Bytes of free blocks held by caches and the depot.
    pub bytes_cached: u64,
    /// Threads currently holding a cache of this pool.
    pub threads: usize,
    /// Per size class.
    pub classes: Vec<ClassStats>,
}

/// Counters of one size class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Payload bytes per block.
    pub size: usize,
    /// Live messages.
    pub live: u64,
    /// Allocations ever.
    pub allocs: u64,
    /// Served from a cache.
    pub hits: u64,
    /// New blocks from the allocator.
    pub misses: u64,
    /// Blocks taken from the allocator and not given back (live + cached).
    pub blocks_held: u64,
    /// Free blocks in caches and the depot.
    pub blocks_cached: u64,
}

/// Messages still alive when asked (see [`MessagePool::leak_report`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeakReport {
    /// Live pooled messages.
    pub live_pooled: u64,
    /// Live heap messages.
    pub live_heap: u64,
    /// Their capacity bytes.
    pub live_bytes: u64,
    /// Allocation sites of sampled live messages (`leak-trace` feature),
    /// as `(count, backtrace)`, most frequent first.
    pub sampled_sites: Vec<(u64, String)>,
}

impl LeakReport {
    /// No message is alive.
    pub fn is_clean(&self) -> bool {
        self.live_pooled == 0 && self.live_heap == 0
    }
}

impl fmt::Display for LeakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} live messages ({} pooled, {} heap, {} bytes)",
            self.live_pooled + self.live_heap,
            self.live_pooled,
            self.live_heap,
            self.live_bytes
        )?;
        for (n, site) in &self.sampled_sites {
            write!(f, "\n  {n} allocated at:\n{site}")?;
        }
        Ok(())
    }
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
