//! Counting what an allocation strategy costs.
//!
//! [`Counting<A>`] wraps a [`GlobalAlloc`]; [`CountingAllocator<A>`] wraps an
//! `allocator-api2` [`Allocator`]. Both record into a [`Counters`]:
//! relaxed atomic adds on one cache line, plus a `fetch_max` only when the
//! live total reaches a new peak. The process-wide wrapper installed by
//! [`global_allocator!`](crate::global_allocator) also keeps per-thread
//! counts in a `const`-initialised thread-local (no allocation, no
//! destructor), so a test can measure its own thread while the test harness
//! allocates on others.
//!
//! Take a [`AllocStats`] (or [`ThreadStats`]) snapshot before and after a
//! piece of work and subtract with `since`. Per-thread snapshots only
//! subtract on one thread: async code whose task can move between threads
//! measures itself with [`counted`] instead (see [`CountedFuture`]).
//!
//! ```
//! use allocators::{Counters, CountingAllocator};
//! use allocator_api2::vec::Vec;
//! use allocator_api2::alloc::Global;
//!
//! let alloc = CountingAllocator::new(Global);
//! let before = alloc.stats();
//! let mut v: Vec<u64, _> = Vec::with_capacity_in(16, alloc.clone());
//! v.push(1);
//! drop(v);
//! let d = alloc.stats().since(&before);
//! assert_eq!((d.allocations, d.deallocations), (1, 1));
//! assert_eq!(d.bytes_allocated, 128);
//! ```

use core::alloc::{GlobalAlloc, Layout};
use core::ops::{Add, AddAssign};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use allocator_api2::alloc::{AllocError, Allocator};

mod future;
mod thread;

pub use future::{CountedFuture, counted};
use thread::thread_record;
pub use thread::{ThreadStats, thread_stats};

/// A set of allocation counters, updated with relaxed atomics.
///
/// Cache-line aligned so that counters of different wrappers do not share
/// a line.
#[derive(Debug)]
#[repr(align(64))]
pub struct Counters {
    allocations: AtomicU64,
    deallocations: AtomicU64,
    reallocations: AtomicU64,
    bytes_allocated: AtomicU64,
    bytes_freed: AtomicU64,
    /// Signed: a free of memory allocated before counting started (or by
    /// another wrapper) takes it below zero.
    live_bytes: AtomicI64,
    /// Compared and stored signed, so a negative `live_bytes` never reads as
    /// a huge peak; snapshots clamp it at zero.
    peak_live_bytes: AtomicI64,
}

/// The counters that [`global_allocator!`](crate::global_allocator) reports to.
pub static GLOBAL_COUNTERS: Counters = Counters::new();

/// A snapshot of [`GLOBAL_COUNTERS`]: every thread's allocations through the
/// counting global allocator. All zero if no binary installed it.
pub fn global_stats() -> AllocStats {
    GLOBAL_COUNTERS.snapshot()
}

impl Counters {
    /// New counters, all zero.
    pub const fn new() -> Self {
        Counters {
            allocations: AtomicU64::new(0),
            deallocations: AtomicU64::new(0),
            reallocations: AtomicU64::new(0),
            bytes_allocated: AtomicU64::new(0),
            bytes_freed: AtomicU64::new(0),
            live_bytes: AtomicI64::new(0),
            peak_live_bytes: AtomicI64::new(0),
        }
    }

    /// Records one allocation of `size` bytes.
    #[inline]
    pub fn record_alloc(&self, size: usize) {
        self.allocations.fetch_add(1, Relaxed);
        self.bytes_allocated.fetch_add(size as u64, Relaxed);
        self.add_live(size as i64);
    }

    /// Records one deallocation of `size` bytes.
    #[inline]
    pub fn record_dealloc(&self, size: usize) {
        self.deallocations.fetch_add(1, Relaxed);
        self.bytes_freed.fetch_add(size as u64, Relaxed);
        self.live_bytes.fetch_sub(size as i64, Relaxed);
    }

    /// Records one reallocation from `old` to `new` bytes: the new size counts
    /// as allocated and the old one as freed.
    #[inline]
    pub fn record_realloc(&self, old: usize, new: usize) {
        self.reallocations.fetch_add(1, Relaxed);
        self.bytes_allocated.fetch_add(new as u64, Relaxed);
        self.bytes_freed.fetch_add(old as u64, Relaxed);
        if new >= old {
            self.add_live((new - old) as i64);
        } else {
            self.live_bytes.fetch_sub((old - new) as i64, Relaxed);
        }
    }

    #[inline]
    fn add_live(&self, size: i64) {
        let live = self.live_bytes.fetch_add(size, Relaxed).wrapping_add(size);
        // The load is a plain read of a line we just wrote: the RMW is paid
        // only when a new peak is reached.
        if live > self.peak_live_bytes.load(Relaxed) {
            self.peak_live_bytes.fetch_max(live, Relaxed);
        }
    }

    /// Lowers the recorded peak to the current live bytes, so a later
    /// snapshot reports the peak of what follows.
    pub fn reset_peak(&self) {
        self.peak_live_bytes
            .store(self.live_bytes.load(Relaxed), Relaxed);
    }

    /// Reads every counter. Each field is read atomically; the set is not a
    /// single atomic snapshot while other threads allocate.
    pub fn snapshot(&self) -> AllocStats {
        AllocStats {
            allocations: self.allocations.load(Relaxed),
            deallocations: self.deallocations.load(Relaxed),
            reallocations: self.reallocations.load(Relaxed),
            bytes_allocated: self.bytes_allocated.load(Relaxed),
            bytes_freed: self.bytes_freed.load(Relaxed),
            live_bytes: self.live_bytes.load(Relaxed),
            peak_live_bytes: self.peak_live_bytes.load(Relaxed).max(0) as u64,
        }
    }
}

impl Default for Counters {
    fn default() -> Self {
        Self::new()
    }
}

/// Counter values at one moment. Subtract two with [`since`](Self::since).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocStats {
    /// Calls to `alloc` / `alloc_zeroed` / `allocate`.
    pub allocations: u64,
    /// Calls to `dealloc` / `deallocate`.
    pub deallocations: u64,
    /// Calls to `realloc` / `grow` / `shrink`.
    pub reallocations: u64,
    /// Bytes requested by allocations, plus the new size of each reallocation.
    pub bytes_allocated: u64,
    /// Bytes released by deallocations, plus the old size of each reallocation.
    pub bytes_freed: u64,
    /// Bytes currently allocated through the counted allocator. Signed: a
    /// wrapper installed after some allocations were made sees their frees.
    pub live_bytes: i64,
    /// The highest `live_bytes` seen since creation or [`Counters::reset_peak`].
    pub peak_live_bytes: u64,
}

impl AllocStats {
    /// What happened between `earlier` and `self`.
    ///
    /// The counters only grow, so for snapshots in the right order this is
    /// exact; the subtraction saturates (see [`AllocDelta`]), so swapped
    /// arguments give zero counts rather than an overflow.
    pub fn since(&self, earlier: &AllocStats) -> AllocDelta {
        AllocDelta {
            allocations: self.allocations.saturating_sub(earlier.allocations),
            deallocations: self.deallocations.saturating_sub(earlier.deallocations),
            reallocations: self.reallocations.saturating_sub(earlier.reallocations),
            bytes_allocated: self.bytes_allocated.saturating_sub(earlier.bytes_allocated),
            bytes_freed: self.bytes_freed.saturating_sub(earlier.bytes_freed),
            live_bytes_change: self.live_bytes.wrapping_sub(earlier.live_bytes),
            cross_thread: false,
        }
    }
}

/// The difference between two snapshots, or a sum of such differences.
///
/// # Arithmetic
///
/// The count and byte fields are unsigned and computed with **saturating**
/// arithmetic: a subtraction that would go below zero (the snapshots passed
/// in the wrong order) gives 0, and a sum that would pass `u64::MAX` stays
/// there; neither ever panics, in debug or release builds.
/// `live_bytes_change` is the one signed field: live bytes may go down.
///
/// # Deltas across threads
///
/// Per-thread counters of two different threads cannot be subtracted: the
/// result would charge one thread's history to the other. A
/// [`ThreadStats::since`] whose two snapshots were taken on different
/// threads (a task that moved between the worker threads of an async
/// runtime across an `.await`) therefore returns a **sentinel**: every count
/// zero and [`cross_thread`](Self::cross_thread) set. Check that flag (or use
/// [`ThreadStats::try_since`]) before trusting a per-thread delta, in
/// particular before asserting that it is zero; measure async code with
/// [`counted`] instead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocDelta {
    /// New allocations.
    pub allocations: u64,
    /// Deallocations.
    pub deallocations: u64,
    /// Reallocations.
    pub reallocations: u64,
    /// Bytes allocated (see [`AllocStats::bytes_allocated`]).
    pub bytes_allocated: u64,
    /// Bytes freed (see [`AllocStats::bytes_freed`]).
    pub bytes_freed: u64,
    /// Change of live bytes; 0 means everything allocated was freed again.
    pub live_bytes_change: i64,
    /// Set when this is (or a sum including) a [`ThreadStats::since`] of
    /// snapshots from two different threads: the counts are then not a
    /// measurement (they are zero). Always `false` for [`AllocStats::since`]
    /// and for what [`CountedFuture`] reports.
    pub cross_thread: bool,
}

impl AllocDelta {
    /// Allocations (including reallocations, which call the allocator too)
    /// per `n` operations, e.g. per message.
    pub fn allocations_per(&self, n: u64) -> f64 {
        if n == 0 {
            return 0.0;
        }
        (self.allocations + self.reallocations) as f64 / n as f64
    }

    /// Bytes allocated per `n` operations.
    pub fn bytes_per(&self, n: u64) -> f64 {
        if n == 0 {
            return 0.0;
        }
        self.bytes_allocated as f64 / n as f64
    }

    /// Calls into the allocator of any kind (allocate, free, reallocate).
    pub fn calls(&self) -> u64 {
        self.allocations
            .saturating_add(self.deallocations)
            .saturating_add(self.reallocations)
    }
}

/// Sums two deltas field by field (saturating; `cross_thread` if either is),
/// e.g. the deltas of several separate pieces of work.
impl Add for AllocDelta {
    type Output = AllocDelta;

    fn add(self, rhs: AllocDelta) -> AllocDelta {
        AllocDelta {
            allocations: self.allocations.saturating_add(rhs.allocations),
            deallocations: self.deallocations.saturating_add(rhs.deallocations),
            reallocations: self.reallocations.saturating_add(rhs.reallocations),
            bytes_allocated: self.bytes_allocated.saturating_add(rhs.bytes_allocated),
            bytes_freed: self.bytes_freed.saturating_add(rhs.bytes_freed),
            live_bytes_change: self.live_bytes_change.saturating_add(rhs.live_bytes_change),
            cross_thread: self.cross_thread || rhs.cross_thread,
        }
    }
}

impl AddAssign for AllocDelta {
    fn add_assign(&mut self, rhs: AllocDelta) {
        *self = *self + rhs;
    }
}

/// A [`GlobalAlloc`] wrapper that counts every call into `A`.
///
/// Install it with [`global_allocator!`](crate::global_allocator), or by hand:
///
/// ```
/// use allocators::{Counting, Counters};
/// static COUNTS: Counters = Counters::new();
/// #[global_allocator]
/// static A: Counting<std::alloc::System> = Counting::with_counters(std::alloc::System, &COUNTS);
/// # fn main() { let _b = Box::new(1); assert!(COUNTS.snapshot().allocations > 0); }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Counting<A> {
    inner: A,
    counters: &'static Counters,
    per_thread: bool,
}

impl<A> Counting<A> {
    /// Wraps `inner`, reporting to [`GLOBAL_COUNTERS`] and to the per-thread
    /// counters read by [`thread_stats()`].
    pub const fn global(inner: A) -> Self {
        Counting {
            inner,
            counters: &GLOBAL_COUNTERS,
            per_thread: true,
        }
    }

    /// Wraps `inner`, reporting to `counters` only.
    pub const fn with_counters(inner: A, counters: &'static Counters) -> Self {
        Counting {
            inner,
            counters,
            per_thread: false,
        }
    }

    /// The counters this wrapper reports to.
    pub fn counters(&self) -> &'static Counters {
        self.counters
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> AllocStats {
        self.counters.snapshot()
    }

    /// The wrapped allocator.
    pub fn inner(&self) -> &A {
        &self.inner
    }
}

// SAFETY: every method forwards to `A` with the caller's arguments unchanged
// and returns `A`'s result unchanged, so `A`'s `GlobalAlloc` contract carries
// over; the bookkeeping around the calls touches only atomics and a
// const-initialised, destructor-free thread-local, neither of which allocates.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees (non-zero size).
        let p = unsafe { self.inner.alloc(layout) };
        if !p.is_null() {
            self.on_alloc(layout.size());
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees (non-zero size).
        let p = unsafe { self.inner.alloc_zeroed(layout) };
        if !p.is_null() {
            self.on_alloc(layout.size());
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller guarantees `ptr` came from this allocator (hence
        // from `inner`) with `layout`.
        unsafe { self.inner.dealloc(ptr, layout) };
        self.counters.record_dealloc(layout.size());
        if self.per_thread {
            thread_record(|t| {
                t.deallocations += 1;
                t.bytes_freed += layout.size() as u64;
            });
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's guarantees for `realloc` are forwarded as is.
        let p = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            self.counters.record_realloc(layout.size(), new_size);
            if self.per_thread {
                thread_record(|t| {
                    t.reallocations += 1;
                    t.bytes_allocated += new_size as u64;
                    t.bytes_freed += layout.size() as u64;
                });
            }
        }
        p
    }
}

impl<A> Counting<A> {
    #[inline]
    fn on_alloc(&self, size: usize) {
        self.counters.record_alloc(size);
        if self.per_thread {
            thread_record(|t| {
                t.allocations += 1;
                t.bytes_allocated += size as u64;
            });
        }
    }
}

/// An [`Allocator`] adapter that counts every call into `A`.
///
/// Clones share one set of counters, so a container and the code that
/// inspects it see the same figures.
#[derive(Debug, Clone)]
pub struct CountingAllocator<A> {
    inner: A,
    counters: Arc<Counters>,
}

impl<A> CountingAllocator<A> {
    /// Wraps `inner` with fresh counters.
    pub fn new(inner: A) -> Self {
        CountingAllocator {
            inner,
            counters: Arc::new(Counters::new()),
        }
    }

    /// A snapshot of the counters shared by this adapter and its clones.
    pub fn stats(&self) -> AllocStats {
        self.counters.snapshot()
    }

    /// The shared counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The wrapped allocator.
    pub fn inner(&self) -> &A {
        &self.inner
    }
}

// SAFETY: every method forwards to `A` with unchanged arguments and returns
// `A`'s result unchanged; clones forward to clones of `A`, which the
// `Allocator` contract of `A` already requires to behave as the same
// allocator. Counting touches only atomics.
unsafe impl<A: Allocator> Allocator for CountingAllocator<A> {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let r = self.inner.allocate(layout)?;
        self.counters.record_alloc(layout.size());
        Ok(r)
    }

    #[inline]
    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let r = self.inner.allocate_zeroed(layout)?;
        self.counters.record_alloc(layout.size());
        Ok(r)
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller guarantees `ptr` is currently allocated by this
        // allocator (so by `inner`) with `layout`.
        unsafe { self.inner.deallocate(ptr, layout) };
        self.counters.record_dealloc(layout.size());
    }

    #[inline]
    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: the caller's guarantees for `grow` are forwarded as is.
        let r = unsafe { self.inner.grow(ptr, old, new) }?;
        self.counters.record_realloc(old.size(), new.size());
        Ok(r)
    }

    #[inline]
    unsafe fn grow_zeroed(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: the caller's guarantees for `grow_zeroed` are forwarded as is.
        let r = unsafe { self.inner.grow_zeroed(ptr, old, new) }?;
        self.counters.record_realloc(old.size(), new.size());
        Ok(r)
    }

    #[inline]
    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: the caller's guarantees for `shrink` are forwarded as is.
        let r = unsafe { self.inner.shrink(ptr, old, new) }?;
        self.counters.record_realloc(old.size(), new.size());
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use allocator_api2::alloc::Global;
    use allocator_api2::vec::Vec;
    use core::future::Future;
    use core::task::{Context, Poll};

    #[test]
    fn counting_allocator_counts_exactly() {
        let a = CountingAllocator::new(Global);
        let s0 = a.stats();
        let mut v: Vec<u8, _> = Vec::with_capacity_in(10, a.clone());
        v.extend_from_slice(&[1; 10]);
        v.reserve_exact(30); // grow 10 -> 40
        v.shrink_to_fit(); // shrink 40 -> 10
        let mid = a.stats().since(&s0);
        assert_eq!(mid.allocations, 1);
        assert_eq!(mid.reallocations, 2);
        assert_eq!(mid.live_bytes_change, 10);
        drop(v);
        let d = a.stats().since(&s0);
        assert_eq!(d.deallocations, 1);
        assert_eq!(d.live_bytes_change, 0);
        assert_eq!(a.stats().peak_live_bytes, 40);
        assert_eq!(d.calls(), 4);
    }

    #[test]
    fn per_and_reset_peak() {
        let c = Counters::new();
        c.record_alloc(100);
        c.record_dealloc(100);
        assert_eq!(c.snapshot().peak_live_bytes, 100);
        c.reset_peak();
        assert_eq!(c.snapshot().peak_live_bytes, 0);
        let d = c.snapshot().since(&AllocStats::default());
        assert_eq!(d.allocations_per(4), 0.25);
        assert_eq!(d.bytes_per(4), 25.0);
        assert_eq!(AllocDelta::default().allocations_per(0), 0.0);
    }

    fn snap(thread: u64, n: u64) -> ThreadStats {
        ThreadStats {
            allocations: n,
            deallocations: n / 2,
            reallocations: n,
            bytes_allocated: n * 8,
            bytes_freed: n * 4,
            thread,
        }
    }

    /// Snapshots passed in the wrong order used to underflow (a panic in
    /// debug builds); the subtraction saturates now.
    #[test]
    fn thread_deltas_saturate() {
        let (early, late) = (snap(1, 3), snap(1, 10));
        let d = late.since(&early);
        assert_eq!((d.allocations, d.deallocations), (7, 4));
        assert_eq!((d.bytes_allocated, d.bytes_freed), (56, 28));
        assert_eq!(d.live_bytes_change, 28);
        assert!(!d.cross_thread);
        assert_eq!(early.since(&late), AllocDelta::default());
        let big = ThreadStats {
            allocations: u64::MAX,
            ..snap(1, 0)
        };
        assert_eq!(snap(1, 1).since(&big).allocations, 0);
        assert_eq!(
            (AllocStats::default()).since(&AllocStats {
                allocations: 5,
                ..AllocStats::default()
            }),
            AllocDelta::default()
        );
    }

    /// Per-thread snapshots of two threads do not subtract: `since` returns
    /// the sentinel, `try_since` `None`.
    #[test]
    fn thread_deltas_across_threads_are_the_sentinel() {
        let (here, there) = (snap(1, 3), snap(2, 10));
        assert!(!there.same_thread(&here));
        assert_eq!(there.try_since(&here), None);
        for d in [there.since(&here), here.since(&there)] {
            assert!(d.cross_thread);
            assert_eq!(d.calls(), 0);
            assert_eq!(d.bytes_allocated, 0);
        }
        // The default snapshot is every thread's origin.
        let origin = ThreadStats::default();
        assert!(there.same_thread(&origin) && origin.same_thread(&here));
        assert_eq!(there.since(&origin).allocations, 10);
        assert_eq!(there.try_since(&origin), Some(there.since(&origin)));
    }

    #[test]
    fn deltas_add_up_saturating() {
        let a = snap(1, 10).since(&snap(1, 4));
        let mut sum = a + a;
        assert_eq!(sum.allocations, 12);
        assert_eq!(sum.live_bytes_change, 2 * a.live_bytes_change);
        sum += AllocDelta {
            allocations: u64::MAX,
            cross_thread: true,
            ..AllocDelta::default()
        };
        assert_eq!(sum.allocations, u64::MAX);
        assert!(sum.cross_thread);
        assert_eq!(sum.calls(), u64::MAX);
    }

    /// Without the counting global allocator (this unit-test binary has
    /// none), a counted future completes with zero counts.
    #[test]
    fn counted_future_passes_the_output_through() {
        let mut fut = core::pin::pin!(counted(async { 7 }));
        assert_eq!(fut.counts(), AllocDelta::default());
        let mut cx = Context::from_waker(core::task::Waker::noop());
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready((out, d)) => {
                assert_eq!(out, 7);
                assert_eq!(d, AllocDelta::default());
            }
            Poll::Pending => panic!("an async block without awaits is ready at once"),
        }
    }

    /// A free of memory allocated before counting started takes live bytes
    /// below zero; the peak must not read that as a huge unsigned value.
    #[test]
    fn negative_live_bytes_do_not_wrap_the_peak() {
        let c = Counters::new();
        c.record_dealloc(100);
        c.record_alloc(10);
        let s = c.snapshot();
        assert_eq!(s.live_bytes, -90);
        assert_eq!(s.peak_live_bytes, 0);
        c.reset_peak(); // current live is negative: the peak reads 0
        assert_eq!(c.snapshot().peak_live_bytes, 0);
        c.record_alloc(150); // live 60
        assert_eq!(c.snapshot().peak_live_bytes, 60);
        c.record_realloc(150, 50); // live -40
        c.record_realloc(50, 60); // live -30: below the peak
        assert_eq!(c.snapshot().peak_live_bytes, 60);
    }
}
