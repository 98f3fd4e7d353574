//! Per-task allocation counts under an async runtime (issue 14, item 4).
//!
//! Installs the counting global allocator in this test binary, then checks
//! that
//!
//! * a [`ThreadStats::since`](allocators::ThreadStats::since) of snapshots
//!   from two threads no longer underflows (it used to panic with "attempt
//!   to subtract with overflow" in debug builds) and is recognisable;
//! * [`allocators::counted`] charges a task that migrates between the
//!   worker threads of a tokio multi-thread runtime exactly its own
//!   allocations, while other tasks allocate a lot on the same threads.

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use allocators::{AllocDelta, counted};

allocators::global_allocator!();

/// How long a test waits, at most, for the scheduler to move a task to
/// another worker thread (generous: under valgrind everything is ~30x
/// slower). It normally takes milliseconds.
const MIGRATION_DEADLINE: Duration = Duration::from_secs(120);

/// Yields once by waking itself and returning `Pending`: unlike
/// `tokio::task::yield_now`, it allocates nothing inside the poll (tokio
/// defers that waker in a per-worker `Vec`, which may grow), so the counts
/// of the task that uses it are exact.
struct YieldNow(bool);

fn yield_now() -> YieldNow {
    YieldNow(false)
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Tasks that allocate (and free) a lot on the runtime's worker threads
/// until stopped, and now and then sleep so that a worker runs out of work
/// and steals tasks from the other one. Returns the stop flag and the
/// number of allocations made so far.
fn spawn_noise(tasks: usize) -> (Arc<AtomicBool>, Arc<AtomicU64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let allocations = Arc::new(AtomicU64::new(0));
    for t in 0..tasks {
        let (stop, allocations) = (stop.clone(), allocations.clone());
        tokio::spawn(async move {
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for i in 0..100u64 {
                    black_box(Box::new(i ^ round));
                }
                allocations.fetch_add(100, Ordering::Relaxed);
                round += 1;
                if (round + t as u64).is_multiple_of(8) {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                } else {
                    yield_now().await;
                }
            }
        });
    }
    (stop, allocations)
}

/// What the measured task saw.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// It was polled on at least two different threads.
    migrated: bool,
    /// Allocations the noise tasks had made when it finished.
    noise_seen: u64,
    /// Yields it went through.
    yields: u64,
}

/// Boxes the measured task allocates and keeps alive until it finishes.
const N: usize = 1000;
/// Noise allocations that must happen while the measured task runs.
const MIN_NOISE: u64 = 100_000;
/// The measured task's own allocations: its `Vec` and the `N` boxes.
const OWN_ALLOCATIONS: u64 = N as u64 + 1;
/// And their bytes: `N` 24-byte boxes and a `Vec` of `N` pointers.
const OWN_BYTES: u64 = N as u64 * 24 + N as u64 * 8;

/// The measured task: allocates exactly `N` boxes and one `Vec`, yields
/// after each (with `tokio::task::yield_now` if `tokio_yield`, else with
/// [`YieldNow`]) and goes on yielding until it has run on two threads and
/// the noise made `MIN_NOISE` allocations; then frees everything. No
/// formatting or other allocation in between. With `tokio_yield` every
/// 16th yield is a `tokio::time::sleep` instead (see below).
async fn measured(noise: Arc<AtomicU64>, tokio_yield: bool) -> Run {
    let deadline = Instant::now() + MIGRATION_DEADLINE;
    let first: ThreadId = thread::current().id();
    let mut migrated = false;
    let mut boxes: Vec<Box<[u64; 3]>> = Vec::with_capacity(N);
    let mut yields = 0u64;
    loop {
        if boxes.len() < N {
            boxes.push(Box::new([yields; 3]));
        }
        if tokio_yield {
            // A task woken from `yield_now` lands in its worker's LIFO slot,
            // which other workers do not steal from: the timer's wake-ups
            // (from whichever worker drives the timer) are what moves it.
            if yields % 16 == 15 {
                tokio::time::sleep(Duration::from_micros(100)).await;
            } else {
                tokio::task::yield_now().await;
            }
        } else {
            yield_now().await;
        }
        yields += 1;
        migrated |= thread::current().id() != first;
        let done = boxes.len() == N && migrated && noise.load(Ordering::Relaxed) >= MIN_NOISE;
        if done || Instant::now() > deadline {
            break;
        }
    }
    black_box(&boxes);
    drop(boxes);
    Run {
        migrated,
        noise_seen: noise.load(Ordering::Relaxed),
        yields,
    }
}

/// Runs [`measured`] wrapped in `counted` among noise tasks.
async fn run_counted(tokio_yield: bool) -> (Run, AllocDelta) {
    let (stop, noise) = spawn_noise(3);
    let task = tokio::spawn(counted(measured(noise.clone(), tokio_yield)));
    let result = task.await.expect("the measured task panicked");
    stop.store(true, Ordering::Relaxed);
    result
}

/// The task moves between the two workers while three other tasks make
/// 100,000+ allocations on them; `counted` reports exactly the task's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migrating_task_is_charged_exactly_its_own_allocations() {
    let (run, d) = run_counted(false).await;
    assert!(run.migrated, "never ran on a second worker thread: {run:?}");
    assert!(run.noise_seen >= MIN_NOISE, "{run:?}");
    assert!(run.yields >= N as u64, "{run:?}");
    assert_eq!(d.allocations, OWN_ALLOCATIONS, "{d:?} {run:?}");
    assert_eq!(d.deallocations, OWN_ALLOCATIONS, "{d:?} {run:?}");
    assert_eq!(d.reallocations, 0, "{d:?}");
    assert_eq!(d.bytes_allocated, OWN_BYTES, "{d:?}");
    assert_eq!(d.bytes_freed, OWN_BYTES, "{d:?}");
    assert_eq!(d.live_bytes_change, 0, "{d:?}");
    assert!(!d.cross_thread, "{d:?}");
}

/// The same with tokio's own `yield_now` and `sleep`. `yield_now` hands the
/// waker to a per-worker list of deferred wakers, which may allocate (once
/// per worker, and when it grows) inside the task's polls: at least the
/// task's own allocations, and nowhere near the noise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migrating_task_using_tokio_yield_now_and_sleep_is_charged_its_own_allocations() {
    let (run, d) = run_counted(true).await;
    assert!(run.migrated, "never ran on a second worker thread: {run:?}");
    assert!(run.noise_seen >= MIN_NOISE, "{run:?}");
    assert!(d.allocations >= OWN_ALLOCATIONS, "{d:?} {run:?}");
    assert!(d.allocations <= OWN_ALLOCATIONS + 16, "{d:?} {run:?}");
    assert!(d.deallocations >= OWN_ALLOCATIONS, "{d:?}");
    assert!(d.deallocations <= OWN_ALLOCATIONS + 16, "{d:?}");
    assert!(d.bytes_allocated >= OWN_BYTES, "{d:?}");
    assert!(!d.cross_thread, "{d:?}");
}

/// The old pattern: a `thread_stats()` snapshot before an `.await` and one
/// after, subtracted. When the task resumed on the other worker this
/// subtracted two threads' counters and panicked ("attempt to subtract
/// with overflow") in debug builds whenever the new thread had counted
/// less. It no longer panics, and the result is the cross-thread sentinel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_across_a_migrating_await_do_not_panic() {
    let (stop, _noise) = spawn_noise(3);
    let task = tokio::spawn(async {
        let deadline = Instant::now() + MIGRATION_DEADLINE;
        let (mut crossings, mut stays) = (0u32, 0u32);
        // Crossings in both directions, so that (before the fix) at least
        // one of them went to the thread with the smaller counts.
        while crossings < 20 && Instant::now() < deadline {
            let here = thread::current().id();
            let before = allocators::thread_stats();
            // Woken by the timer, from whichever worker drives it.
            tokio::time::sleep(Duration::from_micros(100)).await;
            let after = allocators::thread_stats();
            let d = after.since(&before);
            if thread::current().id() == here {
                stays += 1;
                assert!(after.same_thread(&before));
                assert!(!d.cross_thread, "{d:?}");
                assert_eq!(after.try_since(&before), Some(d));
            } else {
                crossings += 1;
                assert!(!after.same_thread(&before));
                assert!(d.cross_thread, "{d:?}");
                assert_eq!(d.calls(), 0, "{d:?}");
                assert_eq!(d.bytes_allocated, 0, "{d:?}");
                assert_eq!(after.try_since(&before), None);
            }
        }
        (crossings, stays)
    });
    let (crossings, stays) = task.await.expect("the snapshotting task panicked");
    stop.store(true, Ordering::Relaxed);
    assert!(
        crossings >= 1,
        "never migrated ({stays} polls on one thread)"
    );
}

/// Deterministic: a snapshot on a thread that allocated a lot, then one on
/// a fresh thread. Before the fix `since` panicked with "attempt to
/// subtract with overflow" here in debug builds (and wrapped around to
/// nonsense in release builds).
#[test]
fn since_across_threads_does_not_underflow() {
    let busy = thread::spawn(|| {
        for i in 0..1000u64 {
            black_box(Box::new(i));
        }
        allocators::thread_stats()
    })
    .join()
    .unwrap();
    let fresh = thread::spawn(allocators::thread_stats).join().unwrap();
    assert!(busy.allocations > fresh.allocations);

    let d = fresh.since(&busy);
    assert!(d.cross_thread, "{d:?}");
    assert_eq!(d.calls(), 0, "{d:?}");
    assert_eq!((d.bytes_allocated, d.bytes_freed), (0, 0), "{d:?}");
    assert_eq!(d.live_bytes_change, 0, "{d:?}");
    assert!(fresh.since(&busy).allocations_per(1).is_finite());
    assert_eq!(fresh.try_since(&busy), None);
    assert!(busy.since(&fresh).cross_thread);
    assert!(!busy.same_thread(&fresh));

    // On one thread, in the wrong order: saturates at zero.
    let early = allocators::thread_stats();
    black_box(Box::new(1u8));
    let late = allocators::thread_stats();
    assert_eq!(late.since(&early).allocations, 1);
    assert_eq!(early.since(&late).allocations, 0);
    assert!(!early.since(&late).cross_thread);
}

/// Runtime-agnostic: on `futures`' single-threaded executor, a counted
/// future polled together with another one (`join`) is charged only its
/// own allocations, although both run on the same thread, interleaved.
#[test]
fn other_futures_polled_on_the_same_thread_are_not_counted() {
    let own = async {
        let mut kept = Vec::with_capacity(10); // 1 allocation, 80 bytes
        for i in 0..10u64 {
            kept.push(Box::new(i)); // 10 allocations of 8 bytes
            yield_now().await;
        }
        kept.len()
    };
    let other = async {
        for i in 0..10u64 {
            for j in 0..100u64 {
                black_box(Box::new(i * j));
            }
            yield_now().await;
        }
    };
    let ((len, d), ()) = futures::executor::block_on(futures::future::join(counted(own), other));
    assert_eq!(len, 10);
    assert_eq!(d.allocations, 11, "{d:?}");
    assert_eq!(d.deallocations, 11, "{d:?}");
    assert_eq!(d.bytes_allocated, 80 + 10 * 8, "{d:?}");
    assert_eq!(d.live_bytes_change, 0, "{d:?}");
}

/// Wrappers nest (the outer one counts what the inner one does, plus its
/// own), and the counts so far can be read while the future is pending.
#[test]
fn counted_futures_nest_and_report_while_pending() {
    let inner = async {
        black_box(Box::new(1u32));
        yield_now().await;
        black_box(Box::new(2u32));
    };
    let outer = async {
        let ((), inner_counts) = counted(inner).await;
        black_box(vec![0u8; 100]);
        inner_counts
    };
    let mut fut = std::pin::pin!(counted(outer));
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    let so_far = fut.counts();
    assert_eq!((so_far.allocations, so_far.deallocations), (1, 1));
    let Poll::Ready((inner_counts, outer_counts)) = fut.as_mut().poll(&mut cx) else {
        panic!("ready after one yield");
    };
    assert_eq!(inner_counts.allocations, 2);
    assert_eq!(inner_counts.bytes_allocated, 8);
    assert_eq!(outer_counts.allocations, 3);
    assert_eq!(outer_counts.bytes_allocated, 108);
    assert_eq!(outer_counts.live_bytes_change, 0);
}
