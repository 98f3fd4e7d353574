//! Per-thread allocation counts: the thread-local the counting global
//! allocator records into, and [`ThreadStats`] snapshots of it.

use core::cell::Cell;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::AllocDelta;
#[cfg(doc)]
use super::counted;

#[derive(Clone, Copy)]
pub(super) struct ThreadCells {
    pub(super) allocations: u64,
    pub(super) deallocations: u64,
    pub(super) reallocations: u64,
    pub(super) bytes_allocated: u64,
    pub(super) bytes_freed: u64,
}

thread_local! {
    // `const` initialised and free of `Drop`: reading it never allocates and
    // registers no destructor, which is what makes it usable from inside a
    // global allocator.
    static THREAD: Cell<ThreadCells> = const {
        Cell::new(ThreadCells {
            allocations: 0,
            deallocations: 0,
            reallocations: 0,
            bytes_allocated: 0,
            bytes_freed: 0,
        })
    };
    // This thread's tag for `ThreadStats`, 0 until the first snapshot. Kept
    // apart from `THREAD` so the allocator's path does not copy it around.
    static THREAD_TAG: Cell<u64> = const { Cell::new(0) };
}

/// The next thread tag; 0 means "no thread".
static NEXT_THREAD_TAG: AtomicU64 = AtomicU64::new(1);

/// The calling thread's tag, assigned on first use (no allocation). Tags are
/// never reused, unlike OS thread ids. 0 while the thread is torn down.
fn thread_tag() -> u64 {
    THREAD_TAG
        .try_with(|t| {
            let mut tag = t.get();
            if tag == 0 {
                tag = NEXT_THREAD_TAG.fetch_add(1, Relaxed);
                t.set(tag);
            }
            tag
        })
        .unwrap_or(0)
}

#[inline]
pub(super) fn thread_record(f: impl FnOnce(&mut ThreadCells)) {
    // `try_with` fails only while the thread is being torn down; those
    // allocations still reach the process-wide counters.
    let _ = THREAD.try_with(|c| {
        let mut v = c.get();
        f(&mut v);
        c.set(v);
    });
}

/// Allocation counts of the calling thread through the counting global
/// allocator (live bytes are only kept process-wide: memory freed on
/// another thread would make a per-thread figure meaningless).
///
/// A snapshot remembers the thread it was taken on
/// ([`same_thread`](Self::same_thread)); [`since`](Self::since) only
/// measures between two snapshots of one thread. The `Default` value (all
/// zero, no thread) is the origin of every thread's counts:
/// `thread_stats().since(&ThreadStats::default())` is everything the calling
/// thread did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadStats {
    /// Allocations made by this thread.
    pub allocations: u64,
    /// Deallocations made by this thread.
    pub deallocations: u64,
    /// Reallocations made by this thread.
    pub reallocations: u64,
    /// Bytes allocated by this thread.
    pub bytes_allocated: u64,
    /// Bytes freed by this thread.
    pub bytes_freed: u64,
    /// The tag of the thread the snapshot was taken on; 0 for none.
    pub(super) thread: u64,
}

impl ThreadStats {
    /// Whether `self` and `other` were taken on the same thread, so that
    /// [`since`](Self::since) between them measures something. A `Default`
    /// snapshot (no thread) counts as the same thread as any other.
    pub fn same_thread(&self, other: &ThreadStats) -> bool {
        self.thread == 0 || other.thread == 0 || self.thread == other.thread
    }

    /// What this thread did between `earlier` and `self`.
    ///
    /// Never panics. Saturating (see [`AllocDelta`]): snapshots passed in
    /// the wrong order give zero counts. If the two snapshots come from
    /// different threads (see [`same_thread`](Self::same_thread)), the result
    /// is the [cross-thread sentinel](AllocDelta#deltas-across-threads): zero
    /// counts with [`AllocDelta::cross_thread`] set. Use
    /// [`try_since`](Self::try_since) to get an `Option` instead, and
    /// [`counted`] to measure a future.
    pub fn since(&self, earlier: &ThreadStats) -> AllocDelta {
        self.try_since(earlier).unwrap_or(AllocDelta {
            cross_thread: true,
            ..AllocDelta::default()
        })
    }

    /// What this thread did between `earlier` and `self`, or `None` if the
    /// snapshots were taken on different threads. Saturating, like
    /// [`since`](Self::since).
    pub fn try_since(&self, earlier: &ThreadStats) -> Option<AllocDelta> {
        if !self.same_thread(earlier) {
            return None;
        }
        let bytes_allocated = self.bytes_allocated.saturating_sub(earlier.bytes_allocated);
        let bytes_freed = self.bytes_freed.saturating_sub(earlier.bytes_freed);
        Some(AllocDelta {
            allocations: self.allocations.saturating_sub(earlier.allocations),
            deallocations: self.deallocations.saturating_sub(earlier.deallocations),
            reallocations: self.reallocations.saturating_sub(earlier.reallocations),
            bytes_allocated,
            bytes_freed,
            live_bytes_change: (bytes_allocated as i64).wrapping_sub(bytes_freed as i64),
            cross_thread: false,
        })
    }
}

/// The calling thread's counts through the counting global allocator.
///
/// Never allocates. Compare two snapshots with [`ThreadStats::since`] only
/// on one thread; in async code, where a task may resume on another worker
/// thread after an `.await`, wrap the future in [`counted`].
pub fn thread_stats() -> ThreadStats {
    let thread = thread_tag();
    THREAD
        .try_with(|c| {
            let v = c.get();
            ThreadStats {
                allocations: v.allocations,
                deallocations: v.deallocations,
                reallocations: v.reallocations,
                bytes_allocated: v.bytes_allocated,
                bytes_freed: v.bytes_freed,
                thread,
            }
        })
        .unwrap_or_default()
}
