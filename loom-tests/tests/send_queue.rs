//! Loom models of `SendQueue`: two producers and one consumer (every pushed
//! message drained exactly once, in per-producer order, across a block
//! boundary: blocks hold 3 slots under loom), no lost wakeup with the real
//! `CondvarNotify`, and exact byte accounting under races.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p loom-tests --release`
#![cfg(loom)]

use std::sync::Arc as StdArc;

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
