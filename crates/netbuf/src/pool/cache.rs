//! Per-thread block caches: the pool's hot path.
//!
//! Each thread keeps, for every pool it touched and every size class, two
//! intrusive chains of free blocks (`loaded` and `spare`, at most `batch`
//! blocks each, linked through the first payload word of each free block).
//! Alloc pops and free pushes without any atomic instruction. A full chain
//! moves to the pool's depot, an empty thread takes one from it: the
//! cross-thread traffic is one CAS or swap per `batch` blocks. Two chains
//! instead of one stop a thread that alternates alloc and free at a chain
//! boundary from hitting the depot every time (Bonwick's magazines).
//!
//! A thread's cache holds a reference on each pool it caches for; it gives
//! its blocks back (to the depot, or to the allocator if the pool is closed)
//! when the thread exits, when it sees the pool closed, and flushes them to
//! the allocator when it sees a `trim()`.

use core::cell::RefCell;
use core::ptr::NonNull;

use crate::pool::header::Header;
use crate::pool::{PoolCore, ThreadCounters};
use crate::sync::{Arc, Ordering, fence, lock, thread_local};

/// A chain of free blocks of one class.
pub(crate) struct Chain {
    pub(crate) head: Option<NonNull<Header>>,
    pub(crate) len: usize,
}

/// The payload word that links a free block to the next one.
#[inline(always)]
fn link(h: NonNull<Header>) -> NonNull<Option<NonNull<Header>>> {
    Header::data(h).cast()
}

/// The payload word of a chain's head that records the chain's length while
/// the chain sits in the depot.
#[inline(always)]
fn len_word(h: NonNull<Header>) -> NonNull<usize> {
    // SAFETY: payloads are at least 16 bytes and 16-aligned, so the second
    // word is in bounds and aligned.
    unsafe { Header::data(h).cast::<usize>().add(1) }
}

impl Chain {
    pub(crate) const EMPTY: Chain = Chain { head: None, len: 0 };

    #[inline(always)]
    pub(crate) fn push(&mut self, h: NonNull<Header>) {
        // SAFETY: `h` is a free block owned by this thread; its payload is
        // unused and at least one aligned word long.
        unsafe { link(h).write(self.head) };
        self.head = Some(h);
        self.len += 1;
    }

    #[inline(always)]
    pub(crate) fn pop(&mut self) -> Option<NonNull<Header>> {
        let h = self.head?;
        // SAFETY: `h` is in this chain, so its link word was written by `push`
        // (or `from_depot`'s putter, made visible by the depot's ordering).
        self.head = unsafe { link(h).read() };
        self.len -= 1;
        Some(h)
    }

    fn take(&mut self) -> Chain {
        core::mem::replace(self, Chain::EMPTY)
    }

    /// Rebuilds a chain taken from the depot.
    ///
    /// # Safety
    /// `head` was taken exclusively from the depot (see `PoolCore::depot_take`).
    pub(crate) unsafe fn from_depot(head: NonNull<Header>) -> Chain {
        Chain {
            head: Some(head),
            // SAFETY: written by `park` before the chain was published.
            len: unsafe { len_word(head).read() },
        }
    }
}

struct LocalClass {
    loaded: Chain,
    spare: Chain,
}

/// One thread's cache for one pool.
struct LocalPool {
    core: NonNull<PoolCore>,
    classes: Box<[LocalClass]>,
    counters: Arc<ThreadCounters>,
    epoch: usize,
}

impl LocalPool {
    fn core(&self) -> &PoolCore {
        // SAFETY: this cache holds a reference on the pool.
        unsafe { self.core.as_ref() }
    }

    #[inline]
    fn alloc(&mut self, class: usize) -> Option<NonNull<Header>> {
        let core = self.core;
        let counters = &self.counters.classes[class];
        let lc = &mut self.classes[class];
        let hdr = if let Some(h) = lc.loaded.pop() {
            h
        } else if lc.spare.len > 0 {
            core::mem::swap(&mut lc.loaded, &mut lc.spare);
            lc.loaded.pop()?
        // SAFETY: this cache holds a reference on the pool.
        } else if let Some(head) = unsafe { core.as_ref() }.depot_take(class) {
            // SAFETY: taken exclusively from the depot.
            lc.loaded = unsafe { Chain::from_depot(head) };
            // SAFETY: this cache holds a reference on the pool.
            unsafe { core.as_ref() }.classes[class]
                .depot_blocks
                .fetch_sub(lc.loaded.len, Ordering::Relaxed);
            lc.loaded.pop()?
        } else {
            let h = PoolCore::carve(core, class)?;
            counters.misses.add(1);
            counters.allocs.add(1);
            return Some(h);
        };
        counters.hits.add(1);
        counters.allocs.add(1);
        // A reused block: reset what a previous owner may have changed. The
        // store is to a line this thread owns, not a contended RMW.
        // SAFETY: the block is free and now ours alone.
        unsafe {
            let h = hdr.as_ptr();
            (*h).refs.store(1, Ordering::Relaxed);
            (*h).flags = 0;
        }
        Some(hdr)
    }

    #[inline]
    fn free(&mut self, class: usize, hdr: NonNull<Header>) {
        self.counters.classes[class].frees.add(1);
        let batch = self.core().classes[class].batch;
        let lc = &mut self.classes[class];
        if lc.loaded.len < batch {
            lc.loaded.push(hdr);
        } else if lc.spare.len == 0 {
            lc.spare = lc.loaded.take();
            lc.loaded.push(hdr);
        } else {
            let full = lc.spare.take();
            lc.spare = lc.loaded.take();
            lc.loaded.push(hdr);
            // SAFETY: `full` is owned by this thread; this cache holds a
            // reference on the pool.
            unsafe { park(self.core, class, full) };
        }
    }

    /// Gives every cached block back to the allocator. Returns the bytes.
    fn flush(&mut self) -> usize {
        let core = self.core;
        let mut bytes = 0;
        for (class, lc) in self.classes.iter_mut().enumerate() {
            // SAFETY: this cache holds a reference on the pool.
            let size = unsafe { core.as_ref() }.classes[class].size;
            for chain in [lc.loaded.take(), lc.spare.take()] {
                if let Some(head) = chain.head {
                    // SAFETY: the chain is owned by this thread, and this
                    // cache's own reference keeps the pool alive.
                    bytes += unsafe { release_chain(core, class, head) } * size;
                }
            }
        }
        bytes
    }
}

impl Drop for LocalPool {
    /// The thread is leaving (or the pool closed): hand the blocks on, fold
    /// the counters into the pool's totals, drop the cache's reference.
    fn drop(&mut self) {
        if self.core().closed.load(Ordering::SeqCst) {
            self.flush();
        } else {
            for class in 0..self.classes.len() {
                let lc = &mut self.classes[class];
                for chain in [lc.loaded.take(), lc.spare.take()] {
                    if chain.len > 0 {
                        // SAFETY: owned chain; this cache holds a reference.
                        unsafe { park(self.core, class, chain) };
                    }
                }
            }
        }
        lock(&self.core().registry).retire(&self.counters);
        // SAFETY: this cache's reference, not used again.
        unsafe { PoolCore::release(self.core, 1) };
    }
}

/// Publishes a chain in the depot, or releases it to the allocator if the
/// depot is full.
///
/// # Safety
/// The chain is owned by the caller, who holds a reference on the pool
/// other than the chain's blocks' own.
pub(crate) unsafe fn park(core: NonNull<PoolCore>, class: usize, chain: Chain) {
    let Some(head) = chain.head else { return };
    // SAFETY: the caller holds a reference.
    let pool = unsafe { core.as_ref() };
    // SAFETY: the head is a free block we own.
    unsafe { len_word(head).write(chain.len) };
    // Counted before it is published, so a taker never subtracts first.
    let depot_blocks = &pool.classes[class].depot_blocks;
    depot_blocks.fetch_add(chain.len, Ordering::Relaxed);
    match pool.depot_put(class, head) {
        Ok(()) => {
            // A pool closed meanwhile may have drained the depot before our
            // put: take everything back out so no block is stranded. This is
            // a store/load (Dekker) hand-off with the closer, which stores
            // `closed`, runs a SeqCst fence, then scans the slots with
            // Relaxed loads (`PoolCore::drain_depot`). With a fence on each
            // side, one of the two comes first in the single order of SeqCst
            // fences: if ours, the closer's scan sees our chain; if the
            // closer's, our load below sees `closed`. (In the language model
            // our SeqCst CAS and SeqCst load would already do against the
            // closer's fence; this fence makes the argument rest on fences
            // alone, which is what loom checks: loom treats SeqCst loads and
            // stores as Acquire/Release and models only SeqCst fences. See
            // `pool::loom::park_vs_close_strands_no_chain`, which
            // fails without either fence.) Cost: one fence per `batch` frees,
            // on the way to the depot.
            fence(Ordering::SeqCst);
            if pool.closed.load(Ordering::SeqCst) {
                // SAFETY: the caller's reference keeps the pool alive.
                unsafe { PoolCore::drain_depot(core) };
            }
        }
        Err(head) => {
            depot_blocks.fetch_sub(chain.len, Ordering::Relaxed);
            // SAFETY: the depot refused the chain, so it is still ours.
            unsafe { release_chain(core, class, head) };
        }
    }
}

/// Releases every block of a chain to the allocator; returns how many.
///
/// # Safety
/// The chain is owned by the caller, who holds a reference on the pool
/// other than the chain's blocks' own.
pub(crate) unsafe fn release_chain(
    core: NonNull<PoolCore>,
    class: usize,
    head: NonNull<Header>,
) -> usize {
    let mut next = Some(head);
    let mut n = 0;
    while let Some(h) = next {
        // SAFETY: `h` is a free block in our chain; read its link before
        // the block is freed.
        next = unsafe { link(h).read() };
        // SAFETY: the block is free; the caller's reference outlives it.
        unsafe { PoolCore::release_block_to_allocator(core, class, h) };
        n += 1;
    }
    n
}

/// All of one thread's pool caches.
struct ThreadCache {
    pools: Vec<LocalPool>,
}

#[cfg(not(loom))]
thread_local! {
    static CACHE: RefCell<ThreadCache> = const { RefCell::new(ThreadCache { pools: Vec::new() }) };
}

// loom's `thread_local!` has no `const` form.
#[cfg(loom)]
thread_local! {
    static CACHE: RefCell<ThreadCache> = RefCell::new(ThreadCache { pools: Vec::new() });
}

/// Does now what the calling thread's exit would do: drops its caches
/// (`LocalPool::drop` parks or flushes their blocks and drops their pool
/// references). For loom models only: loom's `JoinHandle::join` returns as
/// soon as the thread's closure does, before loom runs that thread's
/// `thread_local!` destructors (std's `join` waits for them), so a model
/// that checks the allocator after `join` calls this last in the thread.
#[cfg(all(test, loom))]
pub(crate) fn exit_thread_caches() {
    let pools = CACHE.with(|c| core::mem::take(&mut c.borrow_mut().pools));
    drop(pools);
}

impl ThreadCache {
    /// The cache for `core`, registering one if this thread has none, after
    /// applying any `trim()` or close it has not seen yet. `None` if the pool
    /// is closed.
    #[inline]
    fn local(&mut self, core: NonNull<PoolCore>) -> Option<&mut LocalPool> {
        let i = match self.pools.iter().position(|p| p.core == core) {
            Some(i) => i,
            None => self.register(core)?,
        };
        // SAFETY: the caller holds a reference (a handle or a block).
        let epoch = unsafe { core.as_ref() }.epoch.load(Ordering::Relaxed);
        if self.pools[i].epoch != epoch {
            return self.catch_up(i, epoch);
        }
        Some(&mut self.pools[i])
    }

    #[cold]
    fn catch_up(&mut self, i: usize, epoch: usize) -> Option<&mut LocalPool> {
        let lp = &mut self.pools[i];
        lp.flush();
        lp.epoch = epoch;
        if lp.core().closed.load(Ordering::SeqCst) {
            drop(self.pools.swap_remove(i));
            return None;
        }
        Some(&mut self.pools[i])
    }

    #[cold]
    fn register(&mut self, core: NonNull<PoolCore>) -> Option<usize> {
        // SAFETY: the caller holds a reference (a handle or a block).
        let pool = unsafe { core.as_ref() };
        if pool.closed.load(Ordering::SeqCst) {
            return None;
        }
        // Caches of pools dropped since this thread last looked go now:
        // their blocks back to the allocator, their pools freed, so the list
        // does not grow with dead pools (a thread that uses pool after pool).
        self.pools
            .retain(|lp| !lp.core().closed.load(Ordering::SeqCst));
        pool.acquire(1);
        let n = pool.classes.len();
        let counters = Arc::new(ThreadCounters::new(n));
        lock(&pool.registry).threads.push(counters.clone());
        self.pools.push(LocalPool {
            core,
            classes: (0..n)
                .map(|_| LocalClass {
                    loaded: Chain::EMPTY,
                    spare: Chain::EMPTY,
                })
                .collect(),
            counters,
            epoch: pool.epoch.load(Ordering::SeqCst),
        });
        Some(self.pools.len() - 1)
    }
}

/// Runs `f` on this thread's cache for `core`; `None` when there is none to
/// be had (thread-local storage already torn down, re-entered, or the pool
/// closed), in which case the caller takes the uncached path.
#[inline]
fn with_local<R>(core: NonNull<PoolCore>, f: impl FnOnce(&mut LocalPool) -> R) -> Option<R> {
    CACHE
        .try_with(|c| {
            let mut c = c.try_borrow_mut().ok()?;
            c.local(core).map(f)
        })
        .ok()
        .flatten()
}

/// A block of class `class` for a new message (refs = 1).
#[inline]
pub(crate) fn alloc_block(core: NonNull<PoolCore>, class: usize) -> Option<NonNull<Header>> {
    match with_local(core, |lp| lp.alloc(class)) {
        Some(r) => r,
        None => {
            // SAFETY: the caller holds a handle.
            let pool = unsafe { core.as_ref() };
            pool.classes[class]
                .uncached_allocs
                .fetch_add(1, Ordering::Relaxed);
            PoolCore::carve(core, class)
        }
    }
}

/// Frees a pooled block of class `class`.
///
/// # Safety
/// `hdr` is a pooled block of `core`'s class `class` whose last owner is the
/// caller.
#[inline]
pub(crate) unsafe fn free_block(core: NonNull<PoolCore>, class: usize, hdr: NonNull<Header>) {
    if with_local(core, |lp| lp.free(class, hdr)).is_none() {
        // SAFETY: the block holds a reference on the pool.
        let pool = unsafe { core.as_ref() };
        pool.classes[class]
            .uncached_frees
            .fetch_add(1, Ordering::Relaxed);
        // SAFETY: the block is ours and free; its own reference is the one
        // dropped, last.
        unsafe { PoolCore::release_block_to_allocator(core, class, hdr) };
    }
}

/// Flushes the calling thread's cache for `core` to the allocator.
///
/// # Safety
/// The caller holds a reference on the pool.
pub(crate) unsafe fn flush_current_thread(core: NonNull<PoolCore>) -> usize {
    CACHE
        .try_with(|c| {
            let Ok(mut c) = c.try_borrow_mut() else {
                return 0;
            };
            match c.pools.iter().position(|p| p.core == core) {
                Some(i) => {
                    let lp = &mut c.pools[i];
                    let bytes = lp.flush();
                    // SAFETY: the caller holds a reference.
                    lp.epoch = unsafe { core.as_ref() }.epoch.load(Ordering::SeqCst);
                    if lp.core().closed.load(Ordering::SeqCst) {
                        drop(c.pools.swap_remove(i));
                    }
                    bytes
                }
                None => 0,
            }
        })
        .unwrap_or(0)
}

/// Gives every block the calling thread caches, for every pool, back to the
/// allocator, and forgets those caches (the thread registers again, at the
/// cost of one lock, the next time it uses a pool). Pools dropped while
/// this thread still cached their blocks are freed here. Returns the bytes
/// of payload released.
///
/// A thread that goes idle (an IO thread with no sessions, a worker waiting
/// for jobs) calls it so that it holds no pool memory while idle: no other
/// thread can reach its cache.
///
/// ```
/// let pool = netbuf::MessagePool::new();
/// drop(pool.alloc(100).unwrap()); // the block stays in this thread's cache
/// assert_eq!(pool.stats().bytes_in_thread_caches, 4096);
/// assert_eq!(netbuf::release_thread_caches(), 4096);
/// assert_eq!(pool.stats().bytes_cached, 0);
/// ```
pub fn release_thread_caches() -> usize {
    CACHE
        .try_with(|c| {
            let Ok(mut c) = c.try_borrow_mut() else {
                return 0;
            };
            let pools = core::mem::take(&mut c.pools);
            // Drop outside the borrow: the last reference on a pool may go
            // with its cache, and the pool's allocator could use a pool.
            drop(c);
            let mut bytes = 0;
            for mut lp in pools {
                bytes += lp.flush();
            }
            bytes
        })
        .unwrap_or(0)
}

/// Pools the calling thread holds a cache for (dropped ones included until
/// the thread next registers a pool or calls [`release_thread_caches`]).
pub fn thread_cached_pools() -> usize {
    CACHE
        .try_with(|c| c.try_borrow().map(|c| c.pools.len()).unwrap_or(0))
        .unwrap_or(0)
}
