//! `SendQueue`: exactly-once delivery and per-producer order under many
//! producers, the exact byte bound, smart notify, batch push, close and
//! drop freeing everything.

#![cfg(not(loom))]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

use netbuf::{
    BatchError, CondvarNotify, Drained, FnNotify, MessagePool, Outgoing, PushError, QueueItem,
    SendQueue,
};

/// A test item: who pushed it, its sequence number, and a claimed size.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tagged {
    producer: usize,
    seq: usize,
    size: usize,
}

impl QueueItem for Tagged {
    fn byte_size(&self) -> usize {
        self.size
    }
}

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
    assert_eq!(got.len(), producers * per);
    let mut next = vec![0usize; producers];
    for t in got {
        assert_eq!(
            t.seq, next[t.producer],
            "producer {} out of order",
            t.producer
        );
        next[t.producer] += 1;
    }
    assert!(next.iter().all(|&n| n == per));
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
        got += q.drain_into(&mut out, 64).items;
        if finished && q.queued_bytes() == 0 {
            break;
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

    // Rejected and closed pushes never notify.
    assert!(q.drain_into(&mut out, usize::MAX).idle);
    q.close();
    assert!(q.try_push(vec![9]).is_err());
    assert_eq!(count.load(Ordering::SeqCst), 3);
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
    MessagePool::builder()
        .block_size(256)
        .report_leaks_on_drop(false)
        .build()
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
