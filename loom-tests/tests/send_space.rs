//! Loom models of `SendQueue`'s waiting side, through the public API: a
//! producer waiting for space (`send().await`) while the consumer drains
//! completes; a pending send cancelled (dropped) while the consumer
//! releases leaves the count exact and a later send succeeds; `close` and
//! `shutdown` wake a waiting producer, which gets `Closed`; an async
//! consumer on a `WakerNotify` (`poll_drain_into`) loses no wakeup and
//! ends on `shutdown` / `close`, and not before a push that reserved before
//! the shutdown is received; `close` wakes a consumer asleep on a
//! `CondvarNotify`. A lost wakeup leaves a thread blocked forever, which
//! loom reports as a deadlock. The models that need the queue's internals
//! (the waiter list, the retry after a failed `WAITERS` CAS) are beside
//! the code, in `crates/netbuf/src/send/queue/loom.rs`.
//!
//! Futures are driven by a hand-rolled `block_on` whose waker is a loom
//! `Notify`: no executor is involved.
//!
//! Run: `scripts/loom.sh` (`RUSTFLAGS="--cfg loom -C debug-assertions=on"
//! LOOM_MAX_PREEMPTIONS=2 cargo test -p loom-tests --release`)
#![cfg(loom)]

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc as StdArc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::task::{Context, Poll, Waker};

use loom::sync::Arc;
use loom::thread;
use netbuf::loom_support::{TrackedItem as Item, block_on, seqs};
use netbuf::{CondvarNotify, PushError, SendQueue, WakerNotify};

fn item(seq: u8, drops: &StdArc<AtomicUsize>) -> Item {
    Item::new(0, seq, drops)
}

/// Room for exactly one message.
fn one_slot_queue() -> SendQueue<Item> {
    SendQueue::builder().limit(1).entry_overhead(0).build()
}

/// Drives `f` to completion with loom's `block_on`, counting the polls
/// that returned `Pending`.
fn block_on_counting<F: Future>(f: F) -> (F::Output, usize) {
    let mut f = pin!(f);
    let mut pending = 0;
    let out = block_on(poll_fn(|cx| {
        let r = f.as_mut().poll(cx);
        if r.is_pending() {
            pending += 1;
        }
        r
    }));
    (out, pending)
}

/// The queue is full; a producer sends one more message while the consumer
/// drains once. The send must complete (a lost wakeup is a deadlock), and
/// both a send that waited and one that found room at once must occur.
#[test]
fn waiting_send_completes_when_consumer_drains() {
    static WAITED: AtomicUsize = AtomicUsize::new(0);
    static DIRECT: AtomicUsize = AtomicUsize::new(0);
    loom::model(|| {
        let drops = StdArc::new(AtomicUsize::new(0));
        let q = Arc::new(one_slot_queue());
        q.try_push(item(0, &drops)).unwrap();
        let producer = {
            let (q, drops) = (q.clone(), drops.clone());
            thread::spawn(move || {
                let (r, pending) = block_on_counting(q.send(item(1, &drops)));
                r.unwrap();
                pending
            })
        };
        let mut got = Vec::new();
        assert_eq!(q.drain_into(&mut got, usize::MAX).items, 1);
        let pending = producer.join().unwrap();
        if pending > 0 {
            WAITED.fetch_add(1, Relaxed);
        } else {
            DIRECT.fetch_add(1, Relaxed);
        }
        assert_eq!(q.queued_bytes(), 1);
        q.drain_into(&mut got, usize::MAX);
        assert_eq!(seqs(&got), [0, 1]);
        assert_eq!(q.queued_bytes(), 0);
        drop(got);
        drop(q);
        assert_eq!(drops.load(Relaxed), 2);
    });
    assert!(WAITED.load(Relaxed) > 0, "the send never waited");
    assert!(DIRECT.load(Relaxed) > 0);
}

/// Two producers wait for the one slot while the consumer drains until it
/// has both messages, sleeping on a `CondvarNotify` when the queue is
/// empty. Every release wakes every waiter; the one that loses the race
/// registers again. Both sends complete, each message exactly once.
#[test]
fn two_waiting_senders_both_complete() {
    loom::model(|| {
        let drops = StdArc::new(AtomicUsize::new(0));
        let wake = StdArc::new(CondvarNotify::new());
        let q = Arc::new(
            SendQueue::builder()
                .limit(1)
                .entry_overhead(0)
                .notify(wake.clone())
                .build::<Item>(),
        );
        q.try_push(item(0, &drops)).unwrap();
        let producers: Vec<_> = (1..3u8)
            .map(|seq| {
                let (q, drops) = (q.clone(), drops.clone());
                thread::spawn(move || block_on(q.send(item(seq, &drops))).unwrap())
            })
            .collect();
        let mut got = Vec::new();
        while got.len() < 3 {
            let d = q.drain_into(&mut got, usize::MAX);
            if d.idle && got.len() < 3 {
                wake.wait();
            }
        }
        for p in producers {
            p.join().unwrap();
        }
        let mut s = seqs(&got);
        assert_eq!(s[0], 0);
        s.sort_unstable();
        assert_eq!(s, [0, 1, 2]);
        assert_eq!(q.queued_bytes(), 0);
    });
}

/// A producer polls a send once on a full queue (it registers, unless the
/// consumer's release came first) and drops it, racing the consumer's
/// drain. Either way the count is exact, the dropped message is dropped
/// once, and a later send gets the whole limit. Both a cancelled send and
/// one that completed must occur.
#[test]
fn cancelled_send_racing_release_leaves_queue_consistent() {
    static CANCELLED: AtomicUsize = AtomicUsize::new(0);
    static COMPLETED: AtomicUsize = AtomicUsize::new(0);
    loom::model(|| {
        let drops = StdArc::new(AtomicUsize::new(0));
        let q = Arc::new(one_slot_queue());
        q.try_push(item(0, &drops)).unwrap();
        let producer = {
            let (q, drops) = (q.clone(), drops.clone());
            thread::spawn(move || {
                let mut send = q.send(item(1, &drops));
                let r = pin!(&mut send).poll(&mut Context::from_waker(Waker::noop()));
                // Cancelled if pending: drops the message and deregisters.
                drop(send);
                match r {
                    Poll::Ready(r) => {
                        r.unwrap();
                        true
                    }
                    Poll::Pending => false,
                }
            })
        };
        let mut got = Vec::new();
        assert_eq!(q.drain_into(&mut got, usize::MAX).items, 1);
        let completed = producer.join().unwrap();
        if completed {
            COMPLETED.fetch_add(1, Relaxed);
            assert_eq!(q.queued_bytes(), 1);
            assert_eq!(drops.load(Relaxed), 0);
        } else {
            CANCELLED.fetch_add(1, Relaxed);
            assert_eq!(q.queued_bytes(), 0);
            assert_eq!(drops.load(Relaxed), 1, "the cancelled message");
        }
        q.drain_into(&mut got, usize::MAX);
        assert_eq!(q.queued_bytes(), 0);
        // The whole limit is available to a later send, at once.
        let (r, pending) = block_on_counting(q.send(item(2, &drops)));
        r.unwrap();
        assert_eq!(pending, 0);
        assert_eq!(q.queued_bytes(), 1);
        drop(got);
        drop(q);
        assert_eq!(drops.load(Relaxed), 3);
    });
    assert!(CANCELLED.load(Relaxed) > 0);
    assert!(COMPLETED.load(Relaxed) > 0);
}

/// A producer waits on a full queue while another thread closes it (or
/// shuts it down): the send must end with `Closed` and the message back
/// (never blocked forever), and it must sometimes have waited first.
#[test]
fn close_and_shutdown_wake_a_waiting_sender() {
    for shutdown in [false, true] {
        let waited = StdArc::new(AtomicUsize::new(0));
        let w = waited.clone();
        loom::model(move || {
            let drops = StdArc::new(AtomicUsize::new(0));
            let q = Arc::new(one_slot_queue());
            q.try_push(item(0, &drops)).unwrap();
            let producer = {
                let (q, drops) = (q.clone(), drops.clone());
                thread::spawn(move || block_on_counting(q.send(item(1, &drops))))
            };
            if shutdown {
                q.shutdown();
            } else {
                assert_eq!(q.close(), 1);
            }
            let (r, pending) = producer.join().unwrap();
            let Err(PushError::Closed(back)) = r else {
                panic!("{r:?}")
            };
            assert_eq!(back.seq, 1);
            if pending > 0 {
                w.fetch_add(1, Relaxed);
            }
            drop(back);
            assert_eq!(q.queued_bytes(), usize::from(shutdown));
            drop(q);
            assert_eq!(drops.load(Relaxed), 2);
        });
        assert!(waited.load(Relaxed) > 0, "the send never waited");
    }
}

/// An async consumer drains with `poll_drain_into` on a `WakerNotify`
/// (register, then drain; `Pending` when idle) while a producer pushes two
/// messages: it receives both (a lost wakeup is a deadlock), and must
/// sometimes have slept.
#[test]
fn async_consumer_loses_no_wakeup() {
    static SLEPT: AtomicUsize = AtomicUsize::new(0);
    loom::model(|| {
        let drops = StdArc::new(AtomicUsize::new(0));
        let q = Arc::new(
            SendQueue::builder()
                .entry_overhead(0)
                .notify(WakerNotify::new())
                .build::<Item>(),
        );
        let producer = {
            let (q, drops) = (q.clone(), drops.clone());
            thread::spawn(move || {
                q.try_push(item(0, &drops)).unwrap();
                q.try_push(item(1, &drops)).unwrap();
            })
        };
        let mut got = Vec::new();
        let ((), pending) = block_on_counting(poll_fn(|cx| {
            loop {
                match q.poll_drain_into(cx, &mut got, usize::MAX) {
                    Poll::Ready(_) if got.len() == 2 => return Poll::Ready(()),
                    Poll::Ready(d) => assert!(!d.closed),
                    Poll::Pending => return Poll::Pending,
                }
            }
        }));
        if pending > 0 {
            SLEPT.fetch_add(1, Relaxed);
        }
        producer.join().unwrap();
        assert_eq!(seqs(&got), [0, 1]);
    });
    assert!(SLEPT.load(Relaxed) > 0);
}

/// An async consumer on a `WakerNotify` drains until `Drained::closed`
/// while a producer pushes one message and then shuts the queue down (or
/// closes it): the consumer must wake up and end (it would otherwise sleep
/// forever: only the first push is an empty -> non-empty transition, and
/// the close notifies unconditionally). After a shutdown it has the
/// message; after a close, the message was received or dropped, once.
#[test]
fn async_consumer_ends_on_shutdown_and_close() {
    for shutdown in [false, true] {
        loom::model(move || {
            let drops = StdArc::new(AtomicUsize::new(0));
            let q = Arc::new(
                SendQueue::builder()
                    .entry_overhead(0)
                    .notify(WakerNotify::new())
                    .build::<Item>(),
            );
            let producer = {
                let (q, drops) = (q.clone(), drops.clone());
                thread::spawn(move || {
                    q.try_push(item(0, &drops)).unwrap();
                    if shutdown {
                        q.shutdown();
                        0
                    } else {
                        q.close()
                    }
                })
            };
            let mut got = Vec::new();
            block_on(poll_fn(|cx| {
                loop {
                    match q.poll_drain_into(cx, &mut got, usize::MAX) {
                        Poll::Ready(d) if d.closed => return Poll::Ready(()),
                        Poll::Ready(_) => {}
                        Poll::Pending => return Poll::Pending,
                    }
                }
            }));
            let closed_dropped = producer.join().unwrap();
            if shutdown {
                assert_eq!(got.len(), 1);
            } else {
                assert_eq!(got.len() + closed_dropped, 1);
            }
            drop(got);
            assert_eq!(drops.load(Relaxed), 1);
            assert_eq!(q.queued_bytes(), 0);
        });
    }
}

/// A producer pushes one message while the consumer shuts the queue down
/// and then drains with `poll_drain_into` until `Drained::closed`. A push
/// that reserved its slot before the shutdown may publish after it: the
/// consumer must not report `closed` before it has that message (it parks
/// on the slot and is woken by the publication). Every accepted message is
/// received, and both an accepted and a refused push must occur.
#[test]
fn shutdown_racing_a_push_loses_no_accepted_message() {
    static ACCEPTED: AtomicUsize = AtomicUsize::new(0);
    static REFUSED: AtomicUsize = AtomicUsize::new(0);
    static WAITED_FOR_LATE_PUSH: AtomicUsize = AtomicUsize::new(0);
    loom::model(|| {
        let drops = StdArc::new(AtomicUsize::new(0));
        let q = Arc::new(
            SendQueue::builder()
                .entry_overhead(0)
                .notify(WakerNotify::new())
                .build::<Item>(),
        );
        let producer = {
            let (q, drops) = (q.clone(), drops.clone());
            thread::spawn(move || match q.try_push(item(0, &drops)) {
                Ok(()) => true,
                Err(PushError::Closed(_)) => false,
                Err(e) => panic!("{e:?}"),
            })
        };
        q.shutdown();
        let mut got = Vec::new();
        let ((), pending) = block_on_counting(poll_fn(|cx| {
            loop {
                match q.poll_drain_into(cx, &mut got, usize::MAX) {
                    Poll::Ready(d) if d.closed => return Poll::Ready(()),
                    Poll::Ready(_) => {}
                    Poll::Pending => return Poll::Pending,
                }
            }
        }));
        if pending > 0 {
            // Closed, yet not done: a reserved slot was not published yet.
            WAITED_FOR_LATE_PUSH.fetch_add(1, Relaxed);
        }
        let accepted = producer.join().unwrap();
        assert_eq!(got.len(), usize::from(accepted));
        if accepted {
            ACCEPTED.fetch_add(1, Relaxed);
        } else {
            REFUSED.fetch_add(1, Relaxed);
        }
        assert_eq!(q.queued_bytes(), 0);
        drop(got);
        assert_eq!(drops.load(Relaxed), 1);
    });
    assert!(ACCEPTED.load(Relaxed) > 0);
    assert!(REFUSED.load(Relaxed) > 0);
    assert!(WAITED_FOR_LATE_PUSH.load(Relaxed) > 0);
}

/// A blocking consumer asleep on a `CondvarNotify` whenever a drain
/// reports idle; another thread closes the queue. The close must wake it
/// (a consumer left asleep is a deadlock) and its next drain must report
/// `closed`.
#[test]
fn close_wakes_a_condvar_consumer() {
    loom::model(|| {
        let wake = StdArc::new(CondvarNotify::new());
        let q = Arc::new(
            SendQueue::builder()
                .entry_overhead(0)
                .notify(wake.clone())
                .build::<Item>(),
        );
        let closer = {
            let q = q.clone();
            thread::spawn(move || q.close())
        };
        let mut got = Vec::new();
        loop {
            let d = q.drain_into(&mut got, usize::MAX);
            if d.closed {
                break;
            }
            assert!(d.idle);
            wake.wait();
        }
        assert_eq!(closer.join().unwrap(), 0);
        assert!(got.is_empty());
    });
}
