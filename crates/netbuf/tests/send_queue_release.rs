//! `SendQueue::release_idle_blocks` (issue 16: no slot memory in an idle
//! queue): it frees the blocks of an empty queue (counted with the
//! `allocators` counting allocator, on the test's thread) and refuses
//! otherwise; the queue works on after it (order, byte bound, notify once
//! per idle period, waiting producers, `push_batch`, close, drop), across
//! many release/push cycles and with producers racing the releases.

#![cfg(not(loom))]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Wake, Waker};
use std::thread;

use netbuf::test_util::Tagged;
use netbuf::{BatchError, FnNotify, PushError, QueueItem, SendQueue};

allocators::global_allocator!();

/// An item of `producer`, number `seq`, claiming 1 to 7 bytes.
fn tagged(producer: usize, seq: usize) -> Tagged {
    Tagged::new(producer, seq, 1 + seq % 7)
}

fn queue() -> SendQueue<Tagged> {
    SendQueue::builder().entry_overhead(0).build()
}

/// A queue (no entry overhead) that holds at most `limit` bytes.
fn limited_queue(limit: usize) -> SendQueue<Tagged> {
    SendQueue::builder().limit(limit).entry_overhead(0).build()
}

/// Slots per block (63), as the queue documents it.
const BLOCK_CAP: usize = 63;

/// A queue (no entry overhead) whose notify counts its calls.
fn counting_queue() -> (SendQueue<Tagged>, Arc<AtomicUsize>) {
    let notified = Arc::new(AtomicUsize::new(0));
    let n = notified.clone();
    let q = SendQueue::builder()
        .entry_overhead(0)
        .notify(FnNotify(move || {
            n.fetch_add(1, Ordering::SeqCst);
        }))
        .build::<Tagged>();
    (q, notified)
}

/// The size of one block of a `SendQueue<Tagged>`: what its first push
/// allocates.
fn block_size() -> usize {
    let q = queue();
    let before = allocators::thread_stats();
    q.try_push(tagged(0, 0)).unwrap();
    let d = allocators::thread_stats().since(&before);
    assert_eq!(d.allocations, 1);
    d.bytes_allocated as usize
}

#[test]
fn release_on_empty_frees_the_block() {
    let block = block_size();
    let mut out = Vec::with_capacity(2 * BLOCK_CAP);
    let before = allocators::thread_stats();
    let q = queue();
    q.try_push(tagged(0, 0)).unwrap();
    assert!(q.drain_into(&mut out, usize::MAX).idle);
    let freed_before = allocators::thread_stats();
    assert_eq!(q.release_idle_blocks(), block);
    let d = allocators::thread_stats().since(&freed_before);
    assert_eq!((d.deallocations, d.bytes_freed), (1, block as u64));
    // No slot memory left: the queue's heap use is back to none.
    let d = allocators::thread_stats().since(&before);
    assert_eq!(d.live_bytes_change, 0, "{d:?}");
    // Nothing left to free.
    assert_eq!(q.release_idle_blocks(), 0);

    // Two blocks' worth: the first block is recycled as the spare, and the
    // release frees both.
    for seq in 0..BLOCK_CAP + 5 {
        q.try_push(tagged(0, seq)).unwrap();
    }
    out.clear();
    assert_eq!(q.drain_into(&mut out, usize::MAX).items, BLOCK_CAP + 5);
    let freed_before = allocators::thread_stats();
    assert_eq!(q.release_idle_blocks(), 2 * block);
    let d = allocators::thread_stats().since(&freed_before);
    assert_eq!((d.deallocations, d.bytes_freed), (2, 2 * block as u64));
    let d = allocators::thread_stats().since(&before);
    assert_eq!(d.live_bytes_change, 0, "{d:?}");
    drop(q);
}

#[test]
fn release_refuses_when_not_empty() {
    let q = queue();
    // A new queue has no block.
    assert_eq!(q.release_idle_blocks(), 0);
    q.try_push(tagged(0, 0)).unwrap();
    q.try_push(tagged(0, 1)).unwrap();
    let before = allocators::thread_stats();
    assert_eq!(q.release_idle_blocks(), 0, "two messages are queued");
    let mut out = Vec::new();
    q.drain_into(&mut out, 1);
    assert_eq!(q.release_idle_blocks(), 0, "one message is queued");
    let d = allocators::thread_stats().since(&before);
    assert_eq!(d.deallocations, 0);
    assert_eq!(q.queued_bytes(), 2);
    q.drain_into(&mut out, 1);
    assert!(q.release_idle_blocks() > 0);
    assert_eq!(out, [tagged(0, 0), tagged(0, 1)]);

    // Pushed but never drained (the consumer holds no block yet): refused.
    q.try_push(tagged(0, 2)).unwrap();
    assert_eq!(q.release_idle_blocks(), 0);
    out.clear();
    q.drain_into(&mut out, usize::MAX);
    assert_eq!(out, [tagged(0, 2)]);
    assert!(q.release_idle_blocks() > 0);
}

#[test]
fn a_refused_push_installs_no_block() {
    let q = limited_queue(10);
    let big = Tagged::new(0, 0, 11);
    let mut batch = vec![big];
    let before = allocators::thread_stats();
    assert!(matches!(q.try_push(big), Err(PushError::Full { .. })));
    assert!(matches!(
        q.push_batch(&mut batch),
        Err(BatchError::Full { pushed: 0, .. })
    ));
    assert_eq!(allocators::thread_stats().since(&before).allocations, 0);
}

/// Many cycles of: pushes (single and batches, some crossing blocks), a
/// drain in parts, a release. Order, bytes and notifications stay exact.
#[test]
fn pushes_after_release_keep_order_across_cycles() {
    let (q, notified) = counting_queue();
    let mut seq = 0;
    let mut released = 0;
    for cycle in 0..2_000usize {
        let k = (cycle * 37) % (2 * BLOCK_CAP + 10) + 1;
        let first = seq;
        let mut bytes = 0;
        let mut batch = Vec::new();
        for _ in 0..k {
            let t = tagged(0, seq);
            bytes += t.size;
            seq += 1;
            if cycle % 3 == 0 {
                batch.push(t);
            } else {
                q.try_push(t).unwrap();
            }
        }
        if !batch.is_empty() {
            assert_eq!(q.push_batch(&mut batch), Ok(k));
        }
        // One notification per idle period: the previous cycle's drain
        // armed it, the release kept it armed.
        assert_eq!(notified.load(Ordering::SeqCst), cycle + 1, "cycle {cycle}");
        assert_eq!(q.queued_bytes(), bytes);
        let mut out = Vec::new();
        let part = q.drain_into(&mut out, k / 2);
        let rest = q.drain_into(&mut out, usize::MAX);
        assert_eq!((part.bytes + rest.bytes, rest.idle), (bytes, true));
        let want: Vec<Tagged> = (first..seq).map(|s| tagged(0, s)).collect();
        assert_eq!(out, want, "cycle {cycle}");
        assert_eq!(q.queued_bytes(), 0);
        if cycle % 5 != 4 {
            assert!(q.release_idle_blocks() > 0);
            released += 1;
        }
    }
    assert!(released > 1_000);
}

/// A drain stopped by `max` on the last message does not arm the wakeup;
/// a release does not either: the consumer drains again (arming it), and
/// the next push notifies once.
#[test]
fn release_keeps_the_wakeup_as_the_drains_left_it() {
    let (q, notified) = counting_queue();
    q.try_push(tagged(0, 0)).unwrap();
    assert_eq!(notified.load(Ordering::SeqCst), 1);
    let mut out = Vec::new();
    assert!(!q.drain_into(&mut out, 1).idle);
    assert!(q.release_idle_blocks() > 0);
    let d = q.drain_into(&mut out, usize::MAX);
    assert_eq!((d.items, d.idle), (0, true));
    q.try_push(tagged(0, 1)).unwrap();
    q.try_push(tagged(0, 2)).unwrap();
    assert_eq!(notified.load(Ordering::SeqCst), 2);
    q.drain_into(&mut out, usize::MAX);
    assert_eq!(out, [tagged(0, 0), tagged(0, 1), tagged(0, 2)]);
}

/// Counts its wakes.
struct CountWake(AtomicUsize);

impl Wake for CountWake {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A producer waiting for space is woken by the drain, whatever releases
/// of blocks come between, and its retry installs a new block.
#[test]
fn waiting_producer_is_woken_across_a_release() {
    let q = limited_queue(4);
    let big = |seq| Tagged::new(0, seq, 4);
    q.try_push(big(0)).unwrap();
    let w = Arc::new(CountWake(AtomicUsize::new(0)));
    let waker = Waker::from(w.clone());
    let Err(PushError::Full { item, .. }) = q.try_push_or_wait(big(1), &waker) else {
        panic!("the queue is full");
    };
    let mut out = Vec::new();
    q.drain_into(&mut out, usize::MAX);
    assert_eq!(w.0.load(Ordering::SeqCst), 1);
    assert!(q.release_idle_blocks() > 0);
    q.try_push_or_wait(item, &waker).unwrap();
    q.drain_into(&mut out, usize::MAX);
    assert_eq!(out, [big(0), big(1)]);
}

/// Producers push (single, batches, and sends that wait for space) while
/// the consumer drains and releases whenever a drain finds the queue idle.
/// Everything is delivered once, in per-producer order, with exact bytes.
#[test]
fn concurrent_producers_with_a_releasing_consumer() {
    const PRODUCERS: usize = 4;
    const PER: usize = 50_000;
    // Small enough that producers find it full and wait.
    let q = Arc::new(limited_queue(300));
    let mut handles = Vec::new();
    for p in 0..PRODUCERS {
        let q = q.clone();
        handles.push(thread::spawn(move || {
            let mut seq = 0;
            let mut batch = Vec::new();
            while seq < PER {
                match (p + seq / 100) % 3 {
                    0 => {
                        futures::executor::block_on(q.send(tagged(p, seq))).unwrap();
                        seq += 1;
                    }
                    1 => {
                        let n = (1 + seq % 70).min(PER - seq);
                        batch.extend((seq..seq + n).map(|s| tagged(p, s)));
                        while !batch.is_empty() {
                            match q.push_batch(&mut batch) {
                                Ok(_) => {}
                                Err(BatchError::Full { .. }) => thread::yield_now(),
                                Err(e) => panic!("{e:?}"),
                            }
                        }
                        seq += n;
                    }
                    _ => {
                        let mut t = tagged(p, seq);
                        loop {
                            match q.try_push(t) {
                                Ok(()) => break,
                                Err(PushError::Full { item, .. }) => {
                                    t = item;
                                    thread::yield_now();
                                }
                                Err(e) => panic!("{e:?}"),
                            }
                        }
                        seq += 1;
                    }
                }
            }
        }));
    }
    let mut got = Vec::with_capacity(PRODUCERS * PER);
    let mut bytes = 0;
    let mut released = 0;
    let mut refused = 0;
    while got.len() < PRODUCERS * PER {
        let d = q.drain_into(&mut got, 50);
        bytes += d.bytes;
        if d.idle {
            if q.release_idle_blocks() > 0 {
                released += 1;
            } else {
                refused += 1;
            }
        }
        if d.items == 0 {
            thread::yield_now();
        }
    }
    for h in handles {
        h.join().unwrap();
    }
    let d = q.drain_into(&mut got, usize::MAX);
    assert_eq!((d.items, d.idle), (0, true));
    assert_eq!(q.queued_bytes(), 0);
    let mut next = [0usize; PRODUCERS];
    let mut want_bytes = 0;
    for t in &got {
        assert_eq!(
            t.seq, next[t.producer],
            "producer {} out of order",
            t.producer
        );
        next[t.producer] += 1;
        want_bytes += t.size;
    }
    assert_eq!(next, [PER; PRODUCERS]);
    assert_eq!(bytes, want_bytes);
    // The races must have happened, both ways.
    assert!(released > 0, "never released ({refused} refused)");
    println!("{released} releases, {refused} refused");
    // The queue works on.
    q.try_push(tagged(0, PER)).unwrap();
    q.release_idle_blocks();
    let d = q.drain_into(&mut got, usize::MAX);
    assert_eq!((d.items, d.idle), (1, true));
    assert!(q.release_idle_blocks() > 0);
}

#[test]
fn close_after_release() {
    let drops = Arc::new(AtomicUsize::new(0));
    let q = released_queue(&drops);
    let mut out = Vec::new();
    // Closing a queue without a block.
    q.shutdown();
    let d = q.drain_into(&mut out, usize::MAX);
    assert_eq!((d.items, d.idle, d.closed), (0, true, true));
    assert_eq!(q.close(), 0);
    let before = allocators::thread_stats();
    assert!(matches!(
        q.try_push(counted(&drops)),
        Err(PushError::Closed(_))
    ));
    // A closed queue installs no block.
    assert_eq!(allocators::thread_stats().since(&before).allocations, 0);
    assert!(q.drain_into(&mut out, usize::MAX).closed);
    drop(out);
    assert_eq!(drops.load(Ordering::SeqCst), 2);

    // Released, then pushed to (a new block), then closed: dropped.
    let q = released_queue(&drops);
    for _ in 0..BLOCK_CAP + 2 {
        q.try_push(counted(&drops)).unwrap();
    }
    assert_eq!(q.close(), BLOCK_CAP + 2);
    assert_eq!(drops.load(Ordering::SeqCst), 2 + 1 + BLOCK_CAP + 2);
    assert_eq!(q.queued_bytes(), 0);
    assert!(q.drain_into(&mut Vec::new(), usize::MAX).closed);
    // A closed, empty queue still gives its blocks back.
    assert!(q.release_idle_blocks() > 0);
}

#[test]
fn drop_after_release() {
    let drops = Arc::new(AtomicUsize::new(0));
    let before = allocators::thread_stats();
    // Released, then dropped.
    drop(released_queue(&drops));
    {
        // Released, then pushed to across blocks and dropped undrained:
        // `Drop` starts from the block installed after the release.
        let q = released_queue(&drops);
        for _ in 0..2 * BLOCK_CAP + 3 {
            q.try_push(counted(&drops)).unwrap();
        }
    }
    {
        // The same, with the consumer in the new blocks when dropped.
        let q = released_queue(&drops);
        for _ in 0..2 * BLOCK_CAP + 3 {
            q.try_push(counted(&drops)).unwrap();
        }
        q.drain_into(&mut Vec::new(), BLOCK_CAP + 1);
    }
    assert_eq!(drops.load(Ordering::SeqCst), 3 + 2 * (2 * BLOCK_CAP + 3));
    let d = allocators::thread_stats().since(&before);
    assert_eq!(d.live_bytes_change, 0, "{d:?}");
}

/// An item that counts its drops (its `Arc` is allocated before the
/// measurements, by the test).
#[derive(Debug)]
struct Counted(Arc<AtomicUsize>);

impl QueueItem for Counted {
    fn byte_size(&self) -> usize {
        1
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counted(drops: &Arc<AtomicUsize>) -> Counted {
    Counted(drops.clone())
}

/// A queue (no entry overhead) with one item pushed, drained (and
/// dropped) and its block released.
fn released_queue(drops: &Arc<AtomicUsize>) -> SendQueue<Counted> {
    let q = SendQueue::builder().entry_overhead(0).build();
    q.try_push(counted(drops)).unwrap();
    q.drain_into(&mut Vec::new(), usize::MAX);
    assert!(q.release_idle_blocks() > 0);
    q
}
