//! [`CountedFuture`]: counting what a future allocates while it is polled,
//! on whichever thread each poll runs.

use core::fmt;
use core::future::{Future, IntoFuture};
use core::pin::Pin;
use core::task::{Context, Poll};

use super::{AllocDelta, thread_stats};

/// Wraps a future so that it counts the allocations it makes while it is
/// polled; see [`CountedFuture`].
pub fn counted<F: IntoFuture>(future: F) -> CountedFuture<F::IntoFuture> {
    CountedFuture::new(future.into_future())
}

/// A future that counts, through the counting global allocator, the
/// allocator calls made **while its inner future is being polled**, and
/// completes with `(output, counts)`.
///
/// Right before each `poll` of the inner future it takes a
/// [`thread_stats()`] snapshot, right after the poll another one on the same
/// thread, and adds the difference to its total. A task that moves between
/// the worker threads of a multi-threaded runtime is therefore measured
/// correctly: each poll is measured on the thread it ran on, and the
/// allocations of other tasks polled on those threads between two polls are
/// not counted. Runtime-agnostic: it only uses `std::future`.
///
/// Create it with [`counted`] or [`CountedFuture::new`]. The counts so far
/// are also readable while it is pending, with [`counts`](Self::counts).
/// Wrappers nest: an outer one also counts what an inner one counts.
///
/// # What it does not see
///
/// Only what the polling thread does inside those polls is counted, so the
/// counts **leave out**:
///
/// * frees that happen elsewhere: memory the future allocated and handed
///   to another task or thread, which frees it there, and whatever the
///   output owns, freed after completion. So `live_bytes_change` is not
///   "memory kept" (and memory allocated elsewhere that the future frees
///   does count as freed);
/// * the work of tasks the future spawns (the spawn call itself, allocating
///   the task, is counted), and of threads or tasks it waits on (a
///   `spawn_blocking` closure, a channel peer, a resolver thread);
/// * the work the runtime does for the future outside its polls (waking
///   it, I/O driver bookkeeping).
///
/// And, by design, it does **not** count the allocations of other tasks
/// polled on the same threads. Anything the runtime itself allocates
/// *inside* the poll is counted: tokio's `yield_now`, for one, may grow a
/// per-worker list of deferred wakers.
///
/// Without the counting global allocator installed (with
/// [`global_allocator!()`](crate::global_allocator)), every count is zero.
///
/// # Example
///
/// A request handler measured on a tokio multi-threaded runtime, while
/// other tasks allocate on the same worker threads:
///
/// ```
/// allocators::global_allocator!();
///
/// async fn handle(n: usize) -> usize {
///     let mut v = Vec::with_capacity(n); // 1 allocation
///     for i in 0..n {
///         v.push(i);
///         tokio::task::yield_now().await; // may resume on another worker
///     }
///     v.len()
/// }
///
/// #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// async fn main() {
///     let noise = tokio::spawn(async {
///         for _ in 0..1000 {
///             std::hint::black_box(vec![0u8; 100]);
///             tokio::task::yield_now().await;
///         }
///     });
///     let (len, counts) = tokio::spawn(allocators::counted(handle(100)))
///         .await
///         .unwrap();
///     noise.await.unwrap();
///     assert_eq!(len, 100);
///     // The handler's one allocation (and its free), plus at most what
///     // tokio's `yield_now` allocated inside its polls, but none of the
///     // 1000 of the other task.
///     assert!(counts.allocations >= 1 && counts.allocations < 10, "{counts:?}");
///     assert!(counts.deallocations >= 1);
///     assert!(!counts.cross_thread);
/// }
/// ```
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct CountedFuture<F> {
    inner: F,
    counts: AllocDelta,
}

impl<F> CountedFuture<F> {
    /// Wraps `inner`, with zero counts.
    pub const fn new(inner: F) -> Self {
        CountedFuture {
            inner,
            counts: AllocDelta {
                allocations: 0,
                deallocations: 0,
                reallocations: 0,
                bytes_allocated: 0,
                bytes_freed: 0,
                live_bytes_change: 0,
                cross_thread: false,
            },
        }
    }

    /// What the inner future's polls have done so far.
    pub fn counts(&self) -> AllocDelta {
        self.counts
    }
}

impl<F> fmt::Debug for CountedFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountedFuture")
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

impl<F: Future> Future for CountedFuture<F> {
    type Output = (F::Output, AllocDelta);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `inner` is structurally pinned: it is only ever reached
        // through the `Pin::new_unchecked` below, never moved out of or
        // replaced, and `CountedFuture` has no `Drop` impl and is `Unpin`
        // only if `F` is. `counts` is not pinned and is only copied.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: see above; `this` came from a pinned `self`.
        let inner = unsafe { Pin::new_unchecked(&mut this.inner) };
        let before = thread_stats();
        let poll = inner.poll(cx);
        // Same thread as `before`: a poll runs on one thread from start to
        // finish, so this is never the cross-thread sentinel.
        this.counts += thread_stats().since(&before);
        match poll {
            Poll::Ready(output) => Poll::Ready((output, this.counts)),
            Poll::Pending => Poll::Pending,
        }
    }
}
