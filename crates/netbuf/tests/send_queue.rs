//! `SendQueue`: exactly-once delivery and per-producer order under many
//! producers, the exact byte bound, smart notify, batch push, close and
//! drop freeing everything.

#![cfg(not(loom))]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

use netbuf::test_util::{self, Tagged, quiet_pool};
use netbuf::{
    BatchError, CondvarNotify, Drained, FnNotify, MessagePool, Outgoing, PushError, QueueItem,
    SendQueue,
};

fn counting_notify() -> (
    Arc<AtomicUsize>,
    FnNotify<impl Fn() + Send + Sync + 'static>,
) {
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    (
        n,
        FnNotify(move || {
            n2.fetch_add(1, Ordering::SeqCst);
        }),
    )
}

/// Checks that `got` holds every (producer, seq) exactly once and that each
/// producer's items appear in increasing order.
fn check_exactly_once_in_order(got: &[Tagged], producers: usize, per: usize) {
    test_util::check_exactly_once_in_order(got.iter().map(|t| (t.producer, t.seq)), producers, per);
}

fn run_mpsc(producers: usize, per: usize, batch: usize) {
    let q = Arc::new(
        SendQueue::builder()
            .limit(netbuf::MAX_LIMIT)
            .build::<Tagged>(),
    );
    let mut handles = Vec::new();
    for p in 0..producers {
        let q = q.clone();
        handles.push(thread::spawn(move || {
            let mut seq = 0;
            let mut buf = Vec::new();
            while seq < per {
                if batch <= 1 {
                    q.try_push(Tagged {
                        producer: p,
                        seq,
                        size: 1 + seq % 100,
                    })
                    .unwrap();
                    seq += 1;
                } else {
                    let n = batch.min(per - seq);
                    buf.extend((seq..seq + n).map(|s| Tagged {
                        producer: p,
                        seq: s,
                        size: 1 + s % 100,
                    }));
                    assert_eq!(q.push_batch(&mut buf), Ok(n));
                    assert!(buf.is_empty());
                    seq += n;
                }
            }
        }));
    }
    let mut got = Vec::new();
    while got.len() < producers * per {
        let d = q.drain_into(&mut got, 100);
        if d.items == 0 {
            thread::yield_now();
        }
    }
    for h in handles {
        h.join().unwrap();
    }
    let d = q.drain_into(&mut got, usize::MAX);
    assert_eq!(d.items, 0);
    assert!(d.idle);
    assert_eq!(q.queued_bytes(), 0);
    check_exactly_once_in_order(&got, producers, per);
}

#[test]
fn every_message_drained_once_in_producer_order() {
    run_mpsc(4, 50_000, 1);
}

#[test]
fn batches_drained_once_in_producer_order() {
    // Batch sizes that straddle block boundaries (63 slots per block).
    run_mpsc(3, 30_000, 17);
    run_mpsc(2, 20_000, 200);
}

#[test]
fn single_thread_fifo_across_many_blocks() {
    let q = SendQueue::builder().entry_overhead(0).build::<Tagged>();
    let mut out = Vec::new();
    for round in 0..50 {
        for seq in 0..(round * 7 + 1) {
            q.try_push(Tagged {
                producer: 0,
                seq,
                size: 3,
            })
            .unwrap();
        }
        out.clear();
        let d = q.drain_into(&mut out, usize::MAX);
        assert_eq!(d.items, round * 7 + 1);
        assert_eq!(d.bytes, 3 * (round * 7 + 1));
        assert!(d.idle);
        assert!(out.iter().enumerate().all(|(i, t)| t.seq == i));
    }
    // Drain with a small `max` stops there and is not idle.
    for seq in 0..10 {
        q.try_push(Tagged {
            producer: 0,
            seq,
            size: 1,
        })
        .unwrap();
    }
    out.clear();
    let d = q.drain_into(&mut out, 4);
    assert_eq!((d.items, d.idle), (4, false));
    let d = q.drain_into(&mut out, usize::MAX);
    assert_eq!((d.items, d.idle), (6, true));
    assert!(out.iter().enumerate().all(|(i, t)| t.seq == i));
}

/// The bound is exact: the byte count is reserved in the same CAS as the
/// slot, so concurrent producers never exceed the limit at all.
#[test]
fn byte_limit_is_exact_under_concurrent_producers() {
    const LIMIT: usize = 10_000;
    for overhead in [0usize, 16] {
        let q = Arc::new(
            SendQueue::builder()
                .limit(LIMIT)
                .entry_overhead(overhead)
                .build::<Vec<u8>>(),
        );
        let accepted_bytes = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        // A watcher samples the counter while producers race.
        let watcher = {
            let q = q.clone();
            let stop = stop.clone();
            thread::spawn(move || {
                let mut max = 0;
                while !stop.load(Ordering::Relaxed) {
                    max = max.max(q.queued_bytes());
                    // Lets the producers run where threads are serialised
                    // (valgrind), instead of spinning a whole time slice.
                    thread::yield_now();
                }
                max
            })
        };
        let producers: Vec<_> = (0..4u8)
            .map(|p| {
                let q = q.clone();
                let accepted = accepted_bytes.clone();
                thread::spawn(move || {
                    let mut rejected = 0;
                    for i in 0..2_000usize {
                        let len = 1 + (i * 37 + p as usize * 11) % 300;
                        let msg = vec![p.wrapping_add(i as u8); len];
                        match q.try_push(msg) {
                            Ok(()) => {
                                accepted.fetch_add(len + overhead, Ordering::SeqCst);
                            }
                            Err(e) => {
                                assert!(e.is_full());
                                let PushError::Full {
                                    item,
                                    queued_bytes,
                                    limit,
                                } = e
                                else {
                                    unreachable!()
                                };
                                assert_eq!(limit, LIMIT);
                                assert!(queued_bytes + len + overhead > LIMIT);
                                assert!(queued_bytes <= LIMIT);
                                // The rejected message comes back intact.
                                assert_eq!(item, vec![p.wrapping_add(i as u8); len]);
                                rejected += 1;
                            }
                        }
                    }
                    rejected
                })
            })
            .collect();
        let rejected: usize = producers.into_iter().map(|h| h.join().unwrap()).sum();
        stop.store(true, Ordering::Relaxed);
        let max_seen = watcher.join().unwrap();
        assert!(rejected > 0, "the limit must have been hit");
        assert!(max_seen <= LIMIT, "{max_seen} > {LIMIT}");
        let total = accepted_bytes.load(Ordering::SeqCst);
        assert!(total <= LIMIT, "accepted {total} bytes > {LIMIT}");
        assert_eq!(q.queued_bytes(), total);
        let mut out = Vec::new();
        let d = q.drain_into(&mut out, usize::MAX);
        assert_eq!(d.bytes, total);
        assert_eq!(q.queued_bytes(), 0);
    }
}

/// With a consumer draining concurrently, the bound still holds at every
/// sample and everything accepted is delivered.
#[test]
fn byte_limit_holds_with_concurrent_consumer() {
    const LIMIT: usize = 4_096;
    let q = Arc::new(
        SendQueue::builder()
            .limit(LIMIT)
            .entry_overhead(32)
            .build::<Vec<u8>>(),
    );
    let accepted = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let producers: Vec<_> = (0..3)
        .map(|_| {
            let (q, accepted, done) = (q.clone(), accepted.clone(), done.clone());
            thread::spawn(move || {
                for i in 0..20_000usize {
                    if q.try_push(vec![1; i % 200]).is_ok() {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    let mut got = 0;
    let mut out = Vec::new();
    loop {
        assert!(q.queued_bytes() <= LIMIT);
        let finished = done.load(Ordering::SeqCst) == 3;
        out.clear();
        let drained = q.drain_into(&mut out, 64).items;
        got += drained;
        if finished && q.queued_bytes() == 0 {
            break;
        }
        if drained == 0 {
            thread::yield_now();
        }
    }
    for p in producers {
        p.join().unwrap();
    }
    got += q.drain_into(&mut out, usize::MAX).items;
    assert_eq!(got, accepted.load(Ordering::Relaxed));
}

#[test]
fn oversized_message_is_refused_not_queued() {
    let q = SendQueue::builder()
        .limit(100)
        .entry_overhead(0)
        .build::<Vec<u8>>();
    let e = q.try_push(vec![7; 101]).unwrap_err();
    assert_eq!(e.into_inner(), vec![7; 101]);
    assert_eq!(q.queued_bytes(), 0);
    q.try_push(vec![7; 100]).unwrap();
    assert_eq!(q.queued_bytes(), 100);
}

/// Notify fires exactly once per empty -> non-empty transition.
#[test]
fn notify_once_per_empty_to_non_empty_transition() {
    let (count, notify) = counting_notify();
    let q = SendQueue::builder().notify(notify).build::<Vec<u8>>();
    let mut out = Vec::new();

    q.try_push(vec![1]).unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 1);
    q.try_push(vec![2]).unwrap();
    q.try_push(vec![3]).unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 1, "not a transition");

    // A partial drain does not re-arm.
    assert!(!q.drain_into(&mut out, 2).idle);
    q.try_push(vec![4]).unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 1);

    // Drained to empty: armed; the next push notifies once.
    assert!(q.drain_into(&mut out, usize::MAX).idle);
    assert!(
        q.drain_into(&mut out, usize::MAX).idle,
        "re-arming is idempotent"
    );
    assert_eq!(count.load(Ordering::SeqCst), 1);
    q.try_push(vec![5]).unwrap();
    q.try_push(vec![6]).unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 2);

    // A batch costs one notify.
    assert!(q.drain_into(&mut out, usize::MAX).idle);
    let mut batch: Vec<Vec<u8>> = (0..500).map(|i| vec![i as u8]).collect();
    assert_eq!(q.push_batch(&mut batch), Ok(500));
    assert_eq!(count.load(Ordering::SeqCst), 3);

    // Close notifies once, unconditionally (to wake a sleeping consumer);
    // rejected and closed pushes never notify.
    assert!(q.drain_into(&mut out, usize::MAX).idle);
    q.close();
    assert_eq!(count.load(Ordering::SeqCst), 4);
    assert!(q.try_push(vec![9]).is_err());
    assert_eq!(count.load(Ordering::SeqCst), 4);
    assert_eq!(out.len(), 506);
}

/// The real blocking notifier: the consumer sleeps whenever a drain says
/// idle and still receives everything (no lost wakeup).
#[test]
fn condvar_consumer_never_misses_a_wakeup() {
    let wake = Arc::new(CondvarNotify::new());
    let q = Arc::new(
        SendQueue::builder()
            .limit(netbuf::MAX_LIMIT)
            .notify(wake.clone())
            .build::<Tagged>(),
    );
    const P: usize = 3;
    const PER: usize = 20_000;
    let producers: Vec<_> = (0..P)
        .map(|p| {
            let q = q.clone();
            thread::spawn(move || {
                for seq in 0..PER {
                    q.try_push(Tagged {
                        producer: p,
                        seq,
                        size: 8,
                    })
                    .unwrap();
                    if seq % 1000 == 0 {
                        // Let the consumer catch up and fall asleep often.
                        thread::sleep(std::time::Duration::from_micros(50));
                    }
                }
            })
        })
        .collect();
    let mut got = Vec::new();
    let mut sleeps = 0;
    while got.len() < P * PER {
        let d: Drained = q.drain_into(&mut got, 256);
        if d.idle && got.len() < P * PER {
            // Bounded so that a lost wakeup fails the test instead of
            // hanging it.
            assert!(
                wake.wait_timeout(std::time::Duration::from_secs(10)),
                "lost wakeup: {} of {} received",
                got.len(),
                P * PER
            );
            sleeps += 1;
        }
    }
    for p in producers {
        p.join().unwrap();
    }
    assert!(sleeps > 0);
    check_exactly_once_in_order(&got, P, PER);
}

#[test]
fn push_batch_partial_fit_keeps_the_rest_in_order() {
    let q = SendQueue::builder()
        .limit(1000)
        .entry_overhead(0)
        .build::<Vec<u8>>();
    let mut batch: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; 30]).collect();
    let err = q.push_batch(&mut batch).unwrap_err();
    assert_eq!(
        err,
        BatchError::Full {
            pushed: 33,
            queued_bytes: 990,
            limit: 1000
        }
    );
    assert_eq!(batch.len(), 67);
    assert!(batch.iter().enumerate().all(|(i, m)| m[0] == 33 + i as u8));
    let mut out = Vec::new();
    q.drain_into(&mut out, usize::MAX);
    assert!(out.iter().enumerate().all(|(i, m)| m[0] == i as u8));
    q.close();
    let mut more = vec![vec![1u8]];
    assert_eq!(
        q.push_batch(&mut more),
        Err(BatchError::Closed { pushed: 0 })
    );
    assert_eq!(more.len(), 1);
}

#[test]
fn watermarks_have_hysteresis() {
    let q = SendQueue::builder()
        .limit(1000)
        .entry_overhead(0)
        .watermarks(200, 800)
        .build::<Vec<u8>>();
    let mut out = Vec::new();
    for _ in 0..7 {
        q.try_push(vec![0; 100]).unwrap();
    }
    assert!(q.is_writable(), "700 < high");
    q.try_push(vec![0; 100]).unwrap();
    assert!(!q.is_writable(), "800 reaches high");
    q.drain_into(&mut out, 3); // 500 left: still above low
    assert!(!q.is_writable());
    q.drain_into(&mut out, 3); // 200 left: low reached
    assert!(q.is_writable());
    q.try_push(vec![0; 500]).unwrap(); // 700
    assert!(q.is_writable());
    q.close();
    assert!(!q.is_writable());
}

fn pool() -> MessagePool {
    quiet_pool().block_size(256).build()
}

#[test]
fn close_frees_everything_queued() {
    let pool = pool();
    let q: SendQueue = SendQueue::new();
    let shared = pool.message_from(b"broadcast").unwrap().freeze();
    for i in 0..300u32 {
        let m: Outgoing = if i % 2 == 0 {
            pool.message_from(&i.to_le_bytes()).unwrap().into()
        } else {
            shared.clone().into()
        };
        q.try_push(m).unwrap();
    }
    // Some are taken, and dropped, by the consumer first.
    let mut out = Vec::new();
    q.drain_into(&mut out, 10);
    drop(out);
    assert_eq!(q.close(), 290);
    assert_eq!(q.queued_bytes(), 0);
    drop(shared);
    assert_eq!(pool.stats().live_messages, 0);
    // Closed: the message comes back and is freed by the caller.
    let Err(PushError::Closed(m)) = q.try_push(pool.message_from(b"x").unwrap().into()) else {
        panic!("push after close must fail")
    };
    drop(m);
    assert_eq!(pool.stats().live_messages, 0);
}

#[test]
fn drop_frees_everything_queued() {
    let pool = pool();
    for n in [0usize, 1, 62, 63, 64, 1000] {
        let q: SendQueue = SendQueue::new();
        for i in 0..n {
            let mut m = pool.alloc(100).unwrap();
            m.extend_from_slice(&i.to_le_bytes()).unwrap();
            q.try_push(m.into()).unwrap();
        }
        // Partially drained, partially dropped with the queue.
        let mut out = Vec::new();
        q.drain_into(&mut out, n / 3);
        drop(out);
        assert!(pool.stats().live_messages > 0 || n == 0);
        drop(q);
        assert_eq!(pool.stats().live_messages, 0, "n = {n}");
    }
}

#[test]
fn concurrent_close_and_drop_free_everything() {
    let pool = pool();
    for _ in 0..20 {
        let q: Arc<SendQueue> = Arc::new(SendQueue::new());
        let producers: Vec<_> = (0..3)
            .map(|_| {
                let (q, pool) = (q.clone(), pool.clone());
                thread::spawn(move || {
                    for _ in 0..2_000 {
                        let m = pool.message_from(b"payload").unwrap();
                        if let Err(e) = q.try_push(m.into()) {
                            drop(e.into_inner());
                            break;
                        }
                    }
                })
            })
            .collect();
        let mut out = Vec::new();
        q.drain_into(&mut out, 500);
        out.clear();
        q.close();
        for p in producers {
            p.join().unwrap();
        }
        drop(q);
        assert_eq!(pool.stats().live_messages, 0);
    }
}

// ---------------------------------------------------------------------------
// Panics in user code (issue 12): a panicking drain callback, item `Drop` or
// `QueueItem::byte_size` must leave the queue consistent: no bytes leaked in
// the count, no block leaked, no item dropped twice, and `push_batch`'s
// unpushed items left in the caller's vector.
// ---------------------------------------------------------------------------

/// Counts, on the current thread only, live allocations of one watched size
/// (so tests running in parallel on other threads do not interfere), and
/// records the largest allocation size seen on the thread.
mod alloc_count {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Counting;

    thread_local! {
        static WATCH: Cell<usize> = const { Cell::new(0) };
        static LIVE: Cell<isize> = const { Cell::new(0) };
        static LARGEST: Cell<usize> = const { Cell::new(0) };
    }

    fn on_alloc(size: usize) {
        let _ = WATCH.try_with(|w| {
            if w.get() == size {
                LIVE.with(|l| l.set(l.get() + 1));
            }
        });
        let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    }

    fn on_dealloc(size: usize) {
        let _ = WATCH.try_with(|w| {
            if w.get() == size {
                LIVE.with(|l| l.set(l.get() - 1));
            }
        });
    }

    // SAFETY: every call is forwarded to `System` unchanged; the counters
    // are const-initialised thread-locals without destructors, which never
    // allocate.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            on_alloc(layout.size());
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            on_alloc(layout.size());
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            on_dealloc(layout.size());
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            on_dealloc(layout.size());
            on_alloc(new_size);
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    /// Starts counting live allocations of `size` bytes on this thread.
    pub fn watch(size: usize) {
        WATCH.with(|w| w.set(size));
        LIVE.with(|l| l.set(0));
    }

    /// Live allocations of the watched size made on this thread since
    /// `watch` (allocations minus frees).
    pub fn live() -> isize {
        LIVE.with(|l| l.get())
    }

    /// Runs `f` and returns the largest allocation it made on this thread.
    pub fn largest_in(f: impl FnOnce()) -> usize {
        LARGEST.with(|l| l.set(0));
        f();
        LARGEST.with(|l| l.get())
    }
}

#[global_allocator]
static ALLOC: alloc_count::Counting = alloc_count::Counting;

use std::panic::{AssertUnwindSafe, catch_unwind};

/// An item whose `Drop` can panic, counting its drops.
#[derive(Debug)]
struct Bomb {
    size: usize,
    armed: bool,
    drops: Arc<AtomicUsize>,
}

impl QueueItem for Bomb {
    fn byte_size(&self) -> usize {
        self.size
    }
}

impl Drop for Bomb {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
        if self.armed {
            panic!("Bomb::drop");
        }
    }
}

fn bomb(size: usize, armed: bool, drops: &Arc<AtomicUsize>) -> Bomb {
    Bomb {
        size,
        armed,
        drops: drops.clone(),
    }
}

/// Defect 1: the callback panics after items were handed out; their bytes
/// must be given back anyway, or the queue stays "full" for good.
#[test]
fn panicking_drain_callback_releases_the_bytes_handed_out() {
    let q = SendQueue::builder()
        .limit(100)
        .entry_overhead(0)
        .build::<Vec<u8>>();
    q.try_push(vec![1; 60]).unwrap();
    let r = catch_unwind(AssertUnwindSafe(|| {
        q.drain_each(usize::MAX, |_| panic!("handler bug"));
    }));
    assert!(r.is_err());
    assert_eq!(q.queued_bytes(), 0, "the 60 bytes handed out leaked");
    assert!(q.is_writable());
    q.try_push(vec![2; 50])
        .expect("an empty queue must take 50 of 100 bytes");

    // Several items, panic on the second: the first two are consumed (the
    // second dropped by the unwinding callback), the third stays queued.
    let mut out = Vec::new();
    q.drain_into(&mut out, usize::MAX);
    for n in [10usize, 20, 30] {
        q.try_push(vec![n as u8; n]).unwrap();
    }
    let mut seen = Vec::new();
    let r = catch_unwind(AssertUnwindSafe(|| {
        q.drain_each(usize::MAX, |m| {
            seen.push(m.len());
            if m.len() == 20 {
                panic!("handler bug");
            }
        });
    }));
    assert!(r.is_err());
    assert_eq!(seen, [10, 20]);
    assert_eq!(q.queued_bytes(), 30);
    out.clear();
    let d = q.drain_into(&mut out, usize::MAX);
    assert_eq!((d.items, d.bytes, d.idle), (1, 30, true));
    assert_eq!(out, vec![vec![30u8; 30]]);
    assert_eq!(q.queued_bytes(), 0);
}

/// Defect 1, the same through a drain limited by `max` (the non-idle path)
/// and across a block boundary (63 slots per block).
#[test]
fn panicking_drain_callback_across_blocks_releases_bytes() {
    let q = SendQueue::builder()
        .limit(10_000)
        .entry_overhead(1)
        .build::<Vec<u8>>();
    for i in 0..100u8 {
        q.try_push(vec![i; 9]).unwrap();
    }
    let mut n = 0;
    let r = catch_unwind(AssertUnwindSafe(|| {
        q.drain_each(80, |m| {
            assert_eq!(m[0], n);
            n += 1;
            if n == 70 {
                panic!("handler bug");
            }
        });
    }));
    assert!(r.is_err());
    assert_eq!(q.queued_bytes(), 30 * 10);
    let mut out = Vec::new();
    let d = q.drain_into(&mut out, usize::MAX);
    assert_eq!((d.items, d.bytes, d.idle), (30, 300, true));
    assert!(out.iter().enumerate().all(|(i, m)| m[0] == 70 + i as u8));
    assert_eq!(q.queued_bytes(), 0);
}

/// Defect 1 on the `close()` path: an item's `Drop` panics; the bytes of
/// the items already dropped are given back, the rest stay queued and are
/// freed with the queue.
#[test]
fn panicking_item_drop_during_close_releases_bytes() {
    let drops = Arc::new(AtomicUsize::new(0));
    let q = SendQueue::builder()
        .limit(100)
        .entry_overhead(0)
        .build::<Bomb>();
    q.try_push(bomb(10, false, &drops)).unwrap();
    q.try_push(bomb(20, true, &drops)).unwrap();
    q.try_push(bomb(30, false, &drops)).unwrap();
    let r = catch_unwind(AssertUnwindSafe(|| q.close()));
    assert!(r.is_err());
    assert!(q.is_closed());
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    assert_eq!(q.queued_bytes(), 30, "bytes of the dropped items leaked");
    drop(q);
    assert_eq!(drops.load(Ordering::SeqCst), 3);
}

/// `Drop` of the queue: an item's `Drop` panics; the other items (across
/// several blocks) are still dropped, as `Vec` does.
#[test]
fn panicking_item_drop_in_queue_drop_drops_the_rest() {
    let drops = Arc::new(AtomicUsize::new(0));
    let q = SendQueue::builder().entry_overhead(0).build::<Bomb>();
    for i in 0..200 {
        q.try_push(bomb(1, i == 5, &drops)).unwrap();
    }
    let mut out = Vec::new();
    q.drain_into(&mut out, 2);
    drop(out);
    let r = catch_unwind(AssertUnwindSafe(move || drop(q)));
    assert!(r.is_err());
    assert_eq!(drops.load(Ordering::SeqCst), 200, "items leaked");
}

/// An item whose `byte_size` panics when a shared fuse burns down to zero.
#[derive(Debug)]
struct Fused {
    id: usize,
    fuse: Arc<AtomicUsize>,
}

impl QueueItem for Fused {
    fn byte_size(&self) -> usize {
        if self.fuse.fetch_sub(1, Ordering::SeqCst) == 1 {
            panic!("Fused::byte_size");
        }
        1
    }
}

fn fused_batch(n: usize, fuse: &Arc<AtomicUsize>) -> Vec<Fused> {
    (0..n)
        .map(|id| Fused {
            id,
            fuse: fuse.clone(),
        })
        .collect()
}

/// The size of one block of a `SendQueue<Fused>`: the largest allocation
/// of the first push.
fn fused_block_size() -> usize {
    alloc_count::largest_in(|| {
        let q = SendQueue::builder().entry_overhead(0).build::<Fused>();
        let fuse = Arc::new(AtomicUsize::new(usize::MAX));
        q.try_push(fused_batch(1, &fuse).pop().unwrap()).unwrap();
    })
}

/// Defect 5: `byte_size` panics inside `push_batch` after the block to link
/// next was taken. That block must not leak (counted with the test
/// binary's allocator, on this thread only).
#[test]
fn push_batch_byte_size_panic_leaks_no_block() {
    alloc_count::watch(fused_block_size());
    // A fresh queue and 70 items: the first pass sizes 63 items (a whole
    // block, so it takes the block to link next), finds no block yet,
    // installs one and sizes again: call 64 panics.
    let fuse = Arc::new(AtomicUsize::new(64));
    let mut batch = fused_batch(70, &fuse);
    let q = SendQueue::builder().entry_overhead(0).build::<Fused>();
    let r = catch_unwind(AssertUnwindSafe(|| q.push_batch(&mut batch)));
    assert!(r.is_err());
    drop(q);
    drop(batch);
    let live = alloc_count::live();
    alloc_count::watch(0);
    assert_eq!(live, 0, "blocks leaked");
}

/// Defect 5: `byte_size` panics inside `push_batch`. The unpushed items
/// stay in the batch, in order, and the queue keeps working.
#[test]
fn push_batch_byte_size_panic_keeps_the_rest_in_the_batch() {
    // Nothing pushed yet (see `push_batch_byte_size_panic_leaks_no_block`).
    let fuse = Arc::new(AtomicUsize::new(64));
    let mut batch = fused_batch(70, &fuse);
    let q = SendQueue::builder().entry_overhead(0).build::<Fused>();
    let r = catch_unwind(AssertUnwindSafe(|| q.push_batch(&mut batch)));
    assert!(r.is_err());
    assert_eq!(batch.len(), 70, "unpushed items were dropped");
    assert!(batch.iter().enumerate().all(|(i, f)| f.id == i));
    assert_eq!(q.queued_bytes(), 0);
    // The queue still works, and the batch can be pushed again.
    fuse.store(usize::MAX, Ordering::SeqCst);
    assert_eq!(q.push_batch(&mut batch), Ok(70));
    let mut out = Vec::new();
    assert_eq!(q.drain_into(&mut out, usize::MAX).items, 70);
    assert!(out.iter().enumerate().all(|(i, f)| f.id == i));

    // A panic in the second chunk: 63 pushed, the other 37 stay.
    let fuse = Arc::new(AtomicUsize::new(63 + 63 + 5));
    let mut batch = fused_batch(100, &fuse);
    let q = SendQueue::builder().entry_overhead(0).build::<Fused>();
    let r = catch_unwind(AssertUnwindSafe(|| q.push_batch(&mut batch)));
    assert!(r.is_err());
    assert_eq!(batch.len(), 37);
    assert!(batch.iter().enumerate().all(|(i, f)| f.id == 63 + i));
    assert_eq!(q.queued_bytes(), 63);
    fuse.store(usize::MAX, Ordering::SeqCst);
    let mut out = Vec::new();
    assert_eq!(q.drain_into(&mut out, usize::MAX).items, 63);
    assert!(out.iter().enumerate().all(|(i, f)| f.id == i));
}

/// A panicking notifier in `push_batch` (user code, like `byte_size`) also
/// leaves the unpushed items in the batch.
#[test]
fn push_batch_panicking_notify_keeps_the_rest() {
    let q = SendQueue::builder()
        .limit(2)
        .entry_overhead(0)
        .notify(FnNotify(|| panic!("notify")))
        .build::<Vec<u8>>();
    let mut batch = vec![vec![1u8], vec![2], vec![3]];
    let r = catch_unwind(AssertUnwindSafe(|| q.push_batch(&mut batch)));
    assert!(r.is_err());
    assert_eq!(batch, vec![vec![3u8]]);
    assert_eq!(q.queued_bytes(), 2);
}

/// `byte_size` panicking on the drain side must not leave the item it was
/// asked about readable again: it would be dropped twice.
#[test]
fn drain_byte_size_panic_never_yields_an_item_twice() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    static FUSE: AtomicUsize = AtomicUsize::new(usize::MAX);
    /// Holds no heap data, so that the double drop this test looks for is
    /// only counted, not a use after free.
    #[derive(Debug)]
    struct Plain(usize);
    impl QueueItem for Plain {
        fn byte_size(&self) -> usize {
            if FUSE.fetch_sub(1, Ordering::SeqCst) == 1 {
                panic!("Plain::byte_size");
            }
            1
        }
    }
    impl Drop for Plain {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::SeqCst);
        }
    }
    let q = SendQueue::builder().entry_overhead(0).build::<Plain>();
    q.try_push(Plain(0)).unwrap();
    q.try_push(Plain(1)).unwrap();
    FUSE.store(1, Ordering::SeqCst);
    let r = catch_unwind(AssertUnwindSafe(|| {
        q.drain_each(usize::MAX, drop);
    }));
    assert!(r.is_err());
    assert_eq!(DROPS.load(Ordering::SeqCst), 1);
    FUSE.store(usize::MAX, Ordering::SeqCst);
    let mut out = Vec::new();
    q.drain_into(&mut out, usize::MAX);
    let ids: Vec<usize> = out.iter().map(|p| p.0).collect();
    assert_eq!(ids, [1], "item 0 was read again after its drop");
    drop(out);
    drop(q);
    assert_eq!(DROPS.load(Ordering::SeqCst), 2);
}
