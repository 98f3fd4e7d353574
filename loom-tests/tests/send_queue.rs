//! Loom models of `SendQueue`: two producers and one consumer (every pushed
//! message drained exactly once, in per-producer order, across a block
//! boundary: blocks hold 3 slots under loom), no lost wakeup with the real
//! `CondvarNotify` (also with drains limited by `max`), exact byte
//! accounting under races, a batch reserving a block's last slot for
//! several messages, and close racing a push across a block boundary.
//! Every block is leak-tracked by loom (see `send/queue/block.rs`). The
//! models that need the queue's internals (spare block reuse, `Drop` over
//! several blocks, a panicking drain callback) are beside the code, in
//! `crates/netbuf/src/send/queue/loom.rs`.
//!
//! Run: `scripts/loom.sh` (`RUSTFLAGS="--cfg loom -C debug-assertions=on"
//! LOOM_MAX_PREEMPTIONS=2 cargo test -p loom-tests --release`)
#![cfg(loom)]

use std::sync::Arc as StdArc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use loom::alloc::Track;
use loom::sync::Arc;
use loom::thread;
use netbuf::{CondvarNotify, MessagePool, Outgoing, PushError, QueueItem, SendQueue};

/// A test item: (producer, sequence number), with a claimed byte size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Item {
    producer: u8,
    seq: u8,
    size: usize,
}

impl QueueItem for Item {
    fn byte_size(&self) -> usize {
        self.size
    }
}

fn item(producer: u8, seq: u8) -> Item {
    Item {
        producer,
        seq,
        size: 1,
    }
}

fn check(got: &[Item], per: u8) {
    assert_eq!(got.len(), 2 * per as usize, "{got:?}");
    let mut next = [0u8; 2];
    for it in got {
        assert_eq!(it.seq, next[it.producer as usize], "{got:?}");
        next[it.producer as usize] += 1;
    }
}

/// Two producers push two messages each (one with `try_push`, one with
/// `push_batch`), racing a consumer drain; four messages cross the 3-slot
/// block boundary, so linking and recycling blocks are in the model too.
#[test]
fn two_producers_one_consumer_exactly_once_in_order() {
    loom::model(|| {
        let q = Arc::new(SendQueue::builder().entry_overhead(0).build::<Item>());
        let producers: Vec<_> = (0..2u8)
            .map(|p| {
                let q = q.clone();
                thread::spawn(move || {
                    q.try_push(item(p, 0)).unwrap();
                    let mut batch = vec![item(p, 1)];
                    assert_eq!(q.push_batch(&mut batch), Ok(1));
                })
            })
            .collect();
        let mut got = Vec::new();
        q.drain_into(&mut got, usize::MAX);
        for p in producers {
            p.join().unwrap();
        }
        q.drain_into(&mut got, usize::MAX);
        check(&got, 2);
        assert_eq!(q.queued_bytes(), 0);
    });
}

/// The consumer sleeps on the real `CondvarNotify` whenever a drain reports
/// idle. A lost wakeup would leave it blocked forever: loom reports that as
/// a deadlock.
#[test]
fn smart_notify_loses_no_wakeup() {
    loom::model(|| {
        let wake = StdArc::new(CondvarNotify::new());
        let q = Arc::new(
            SendQueue::builder()
                .entry_overhead(0)
                .notify(wake.clone())
                .build::<Item>(),
        );
        let producers: Vec<_> = (0..2u8)
            .map(|p| {
                let q = q.clone();
                thread::spawn(move || {
                    q.try_push(item(p, 0)).unwrap();
                    q.try_push(item(p, 1)).unwrap();
                })
            })
            .collect();
        let mut got = Vec::new();
        while got.len() < 4 {
            let d = q.drain_into(&mut got, usize::MAX);
            assert!(d.idle, "an unbounded drain always ends idle");
            if got.len() < 4 {
                wake.wait();
            }
        }
        for p in producers {
            p.join().unwrap();
        }
        check(&got, 2);
    });
}

/// One producer, one consumer, one slot short of a block: the consumer may
/// find the slot reserved but unpublished and park on the slot itself.
#[test]
fn parked_on_reserved_slot_is_woken() {
    loom::model(|| {
        let wake = StdArc::new(CondvarNotify::new());
        let q = Arc::new(
            SendQueue::builder()
                .entry_overhead(0)
                .notify(wake.clone())
                .build::<Item>(),
        );
        let q2 = q.clone();
        let producer = thread::spawn(move || {
            let mut batch = vec![item(0, 0), item(0, 1)];
            assert_eq!(q2.push_batch(&mut batch), Ok(2));
            q2.try_push(item(0, 2)).unwrap();
        });
        let mut got = Vec::new();
        while got.len() < 3 {
            if q.drain_into(&mut got, usize::MAX).idle && got.len() < 3 {
                wake.wait();
            }
        }
        producer.join().unwrap();
        assert!(got.iter().enumerate().all(|(i, it)| it.seq as usize == i));
    });
}

/// Room for exactly three one-byte entries (plus overhead 1 each: limit 6);
/// two producers push two each while the consumer drains once. The bound
/// is never exceeded, refused items come back intact, and after the final
/// drain the count is back to zero.
#[test]
fn byte_accounting_under_races() {
    loom::model(|| {
        let q = Arc::new(
            SendQueue::builder()
                .limit(6)
                .entry_overhead(1)
                .watermarks(2, 6)
                .build::<Item>(),
        );
        let producers: Vec<_> = (0..2u8)
            .map(|p| {
                let q = q.clone();
                thread::spawn(move || {
                    let mut accepted = 0usize;
                    for seq in 0..2u8 {
                        match q.try_push(item(p, seq)) {
                            Ok(()) => accepted += 1,
                            Err(PushError::Full {
                                item: back,
                                queued_bytes,
                                limit,
                            }) => {
                                assert_eq!(back, item(p, seq));
                                assert_eq!(limit, 6);
                                assert!(queued_bytes > 4 && queued_bytes <= 6);
                            }
                            Err(PushError::Closed(_)) => unreachable!(),
                        }
                        assert!(q.queued_bytes() <= 6);
                    }
                    accepted
                })
            })
            .collect();
        let mut got = Vec::new();
        let d = q.drain_into(&mut got, usize::MAX);
        assert_eq!(d.bytes, 2 * d.items);
        assert!(q.queued_bytes() <= 6);
        let accepted: usize = producers.into_iter().map(|p| p.join().unwrap()).sum();
        assert!(accepted >= 3);
        assert_eq!(q.queued_bytes(), 2 * (accepted - got.len()));
        q.drain_into(&mut got, usize::MAX);
        assert_eq!(got.len(), accepted);
        assert_eq!(q.queued_bytes(), 0);
        assert!(q.is_writable());
    });
}

/// Real messages from a pool: a producer pushes while another thread closes
/// the queue; whatever the interleaving, every message is freed exactly
/// once (close, a later drain, or the queue's drop).
#[test]
fn close_races_push_without_leaks() {
    loom::model(|| {
        let pool = MessagePool::builder()
            .block_size(64)
            .pooled(false)
            .report_leaks_on_drop(false)
            .build();
        let q: Arc<SendQueue> = Arc::new(SendQueue::new());
        let m1 = pool.message_from(b"a").unwrap();
        let m2 = pool.message_from(b"b").unwrap();
        let q2 = q.clone();
        let producer = thread::spawn(move || {
            for m in [m1, m2] {
                let m: Outgoing = m.into();
                if let Err(e) = q2.try_push(m) {
                    drop(e.into_inner());
                }
            }
        });
        q.close();
        producer.join().unwrap();
        drop(q);
        assert_eq!(pool.stats().live_messages, 0);
    });
}

/// A batch of two lands on a block's last slot: slot 0 is taken, so
/// producer 1's `push_batch` reserves slots 1 and 2 in one CAS and links
/// the next block, while producer 2's `try_push` races it (taking slot 1
/// first, or waiting at the boundary while the block is linked) and the
/// consumer drains. Both outcomes must occur in the explored interleavings.
#[test]
fn push_batch_lands_on_last_slot_with_two_items() {
    static BATCH_ON_LAST_SLOT: AtomicUsize = AtomicUsize::new(0);
    static SINGLE_FIRST: AtomicUsize = AtomicUsize::new(0);
    loom::model(|| {
        let q = Arc::new(SendQueue::builder().entry_overhead(0).build::<Item>());
        q.try_push(item(0, 0)).unwrap();
        let a = {
            let q = q.clone();
            thread::spawn(move || {
                let mut batch = vec![item(1, 0), item(1, 1)];
                assert_eq!(q.push_batch(&mut batch), Ok(2));
                assert!(batch.is_empty());
            })
        };
        let b = {
            let q = q.clone();
            thread::spawn(move || q.try_push(item(2, 0)).unwrap())
        };
        let mut got = Vec::new();
        q.drain_into(&mut got, usize::MAX);
        a.join().unwrap();
        b.join().unwrap();
        q.drain_into(&mut got, usize::MAX);
        assert_eq!(got.len(), 4, "{got:?}");
        for p in 0..3u8 {
            let s: Vec<u8> = got
                .iter()
                .filter(|i| i.producer == p)
                .map(|i| i.seq)
                .collect();
            let want: &[u8] = if p == 1 { &[0, 1] } else { &[0] };
            assert_eq!(s, want, "{got:?}");
        }
        if got[1] == item(1, 0) && got[2] == item(1, 1) {
            BATCH_ON_LAST_SLOT.fetch_add(1, Relaxed);
        } else if got[1] == item(2, 0) {
            SINGLE_FIRST.fetch_add(1, Relaxed);
        }
        assert_eq!(q.queued_bytes(), 0);
    });
    assert!(BATCH_ON_LAST_SLOT.load(Relaxed) > 0);
    assert!(SINGLE_FIRST.load(Relaxed) > 0);
}

/// The consumer drains one message at a time (`max` = 1: the non-idle
/// path, which releases without arming) and sleeps on the real
/// `CondvarNotify` only when a drain reports idle; the producer's batch
/// lands on the block's last slot. A lost wakeup is a deadlock for loom.
/// Both a consumer that catches up and sleeps, and one that never has to,
/// must occur in the explored interleavings.
///
/// The message queued before the spawn makes the first drain release bytes
/// (an RMW on the state word): loom 0.7's DPOR never orders a drain that
/// only loads the state word after a producer's load + CAS
/// (tokio-rs/loom#392), so with an empty queue at the start the producer
/// would never be explored ahead of the consumer.
#[test]
fn drains_limited_by_max_lose_no_wakeup() {
    static SLEPT: AtomicUsize = AtomicUsize::new(0);
    static NEVER_SLEPT: AtomicUsize = AtomicUsize::new(0);
    loom::model(|| {
        let wake = StdArc::new(CondvarNotify::new());
        let q = Arc::new(
            SendQueue::builder()
                .entry_overhead(0)
                .notify(wake.clone())
                .build::<Item>(),
        );
        q.try_push(item(0, 0)).unwrap();
        let producer = {
            let q = q.clone();
            thread::spawn(move || {
                q.try_push(item(0, 1)).unwrap();
                let mut batch = vec![item(0, 2), item(0, 3)];
                assert_eq!(q.push_batch(&mut batch), Ok(2));
            })
        };
        let mut got = Vec::new();
        let mut slept = false;
        while got.len() < 4 {
            let d = q.drain_into(&mut got, 1);
            assert!(d.items <= 1);
            // Stopped at `max`: not idle, drain again without waiting.
            assert_eq!(d.idle, d.items == 0);
            assert_eq!(d.bytes, d.items);
            if d.idle {
                wake.wait();
                slept = true;
            }
        }
        producer.join().unwrap();
        if slept {
            SLEPT.fetch_add(1, Relaxed);
        } else {
            NEVER_SLEPT.fetch_add(1, Relaxed);
        }
        assert!(got.iter().enumerate().all(|(i, it)| it.seq as usize == i));
        assert_eq!(q.queued_bytes(), 0);
        assert!(q.drain_into(&mut got, 1).idle);
    });
    assert!(SLEPT.load(Relaxed) > 0);
    assert!(NEVER_SLEPT.load(Relaxed) > 0);
}

/// A message leak-tracked by loom, counting its drops.
#[derive(Debug)]
struct Tracked {
    drops: StdArc<AtomicUsize>,
    _leak_check: Track<()>,
}

impl QueueItem for Tracked {
    fn byte_size(&self) -> usize {
        1
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Relaxed);
    }
}

/// Close races a producer whose pushes cross the block boundary (the first
/// takes block 1's last slot and links block 2, the second goes to block
/// 2). Every message is dropped exactly once (by `close`, by the producer
/// when its push is refused, or by the queue's drop when a push reserved
/// before the close published after it), and no block leaks. A push
/// refused by the close, and one published after the close's drain, must
/// both occur in the explored interleavings.
#[test]
fn close_races_push_across_block_boundary() {
    static REFUSED: AtomicUsize = AtomicUsize::new(0);
    static LATE: AtomicUsize = AtomicUsize::new(0);
    loom::model(|| {
        let drops = StdArc::new(AtomicUsize::new(0));
        let tracked = || Tracked {
            drops: drops.clone(),
            _leak_check: Track::new(()),
        };
        let q = Arc::new(SendQueue::builder().entry_overhead(0).build::<Tracked>());
        q.try_push(tracked()).unwrap();
        q.try_push(tracked()).unwrap();
        let producer = {
            let q = q.clone();
            let items = [tracked(), tracked()];
            thread::spawn(move || {
                let mut accepted = 0;
                for m in items {
                    match q.try_push(m) {
                        Ok(()) => accepted += 1,
                        Err(PushError::Closed(m)) => drop(m),
                        Err(e) => panic!("{e:?}"),
                    }
                }
                accepted
            })
        };
        let closed = q.close();
        let accepted = producer.join().unwrap();
        assert!(closed >= 2, "the messages queued before the close");
        assert!(closed <= 2 + accepted);
        assert_eq!(drops.load(Relaxed), closed + (2 - accepted));
        // Pushes that reserved before the close and published after it.
        let late = 2 + accepted - closed;
        assert_eq!(q.queued_bytes(), late);
        if accepted < 2 {
            REFUSED.fetch_add(1, Relaxed);
        }
        if late > 0 {
            LATE.fetch_add(1, Relaxed);
        }
        drop(q);
        assert_eq!(drops.load(Relaxed), 4);
    });
    assert!(REFUSED.load(Relaxed) > 0);
    assert!(LATE.load(Relaxed) > 0);
}
