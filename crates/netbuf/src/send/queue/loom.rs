//! Loom models of the send queue's internals, beside the code: the
//! recycled block reused as a third block, `Drop` walking several blocks,
//! a drain callback that panics (issue 12), the waiter list of producers
//! waiting for space (a `Sink`-style `try_push_or_wait` that registers, or
//! retries after its `WAITERS` CAS failed; a cancelled send racing a
//! release), and pushes racing the consumer's release of an idle queue's
//! blocks (issue 16). The public-API models (exactly-once delivery, smart
//! notify, byte accounting, close, batches on a block's last slot, drains
//! limited by `max`) are in `loom-tests/tests/send_queue.rs`; those of the
//! waiting side (sends completing, cancellation, close and shutdown waking
//! producers and consumers) in `loom-tests/tests/send_space.rs`.
//!
//! Blocks hold `BLOCK_CAP` = 3 slots under loom (`LAP` = 4). Every block
//! carries a `loom::alloc::Track` under loom, and so does every `Item`
//! here: a block or an item leaked by any interleaving fails the model
//! ("Allocation leaked"); the drop counters catch an item dropped twice.
//! Every model here starts its executions with
//! `quarantine::begin_execution()`: a block the queue frees stays
//! allocated, marked, until the execution ends, and any access to it
//! fails the model (a use after free; see `block.rs`).
//!
//! What loom cannot check here:
//! * `compare_exchange_weak` never fails spuriously under loom. A spurious
//!   failure takes the same path as a failure under contention (reload
//!   `st` from the CAS result, size the items again), which the models with
//!   two producers do explore, but not with `st` unchanged.
//! * The queue has no `SeqCst` access or fence, so no ordering argument in
//!   it rests on the single total order, which loom does not fully model;
//!   the hand-offs are acquire/release RMWs on one location, which loom
//!   models exactly.
//! * The tail index wrapping at 2^32 (the ABA window in `SendQueue`'s docs).
//! * The backoff while another producer links a block is a
//!   `loom::thread::yield_now` under loom, not the real spin.
//! * Loom 0.7's DPOR never orders a consumer call that only *loads* the
//!   state word (a drain of an idle queue that finds `IDLE` already set)
//!   after a producer's `load` + CAS on it: the producer's own load hides
//!   the consumer's from the dependency check (tokio-rs/loom#392). The
//!   models below make the racing drain release bytes (an RMW), and count
//!   the interleavings they rely on, so that they are really explored.

use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::sync::Arc as StdArc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::task::{Context, Poll, Waker};

use loom::sync::Arc;
use loom::thread;

use super::block::quarantine;
use super::state::{BLOCK_CAP, WAITERS};
use super::{PushError, QueueItem, SendQueue};
use crate::loom_support::{TrackedItem as Item, block_on, seqs};
use crate::sync::Ordering::Acquire;

/// Internals the models check.
impl<T: QueueItem> SendQueue<T> {
    /// Address of the first block (0: none yet).
    fn first_block_addr(&self) -> usize {
        self.first.load(Acquire) as usize
    }

    /// Address of the block producers reserve in (0: none yet).
    fn tail_block_addr(&self) -> usize {
        self.tail_block.load(Acquire) as usize
    }

    /// Whether `WAITERS` is set.
    fn waiters_bit(&self) -> bool {
        self.state.load(Acquire) & WAITERS != 0
    }

    /// Address of the spare block (0: none).
    fn spare_addr(&self) -> usize {
        self.spare.load(Acquire) as usize
    }

    /// Blocks from the consumer's (or the first, if it never drained) to
    /// the tail block, both included. Only while no push is in progress.
    fn blocks_in_use(&self) -> usize {
        let c = self.consumer.lock();
        let mut b = if c.block.is_null() {
            self.first.load(Acquire)
        } else {
            c.block
        };
        if b.is_null() {
            return 0;
        }
        let tail = self.tail_block.load(Acquire);
        let mut n = 1;
        while b != tail {
            // SAFETY: with no push in progress, every block from the
            // consumer's to the tail is linked and alive (only the consumer,
            // whose lock we hold, recycles blocks).
            b = unsafe { (*b).next() };
            n += 1;
        }
        n
    }
}

fn item(producer: u8, seq: u8, drops: &StdArc<AtomicUsize>) -> Item {
    Item::new(producer, seq, drops)
}

fn queue() -> SendQueue<Item> {
    SendQueue::builder().entry_overhead(0).build()
}

/// A queue with room for `limit` items (of one byte each).
fn limited_queue(limit: usize) -> SendQueue<Item> {
    SendQueue::builder().limit(limit).entry_overhead(0).build()
}

/// Starts one execution of a model: the quarantine, `q` behind a loom
/// `Arc`, and the items' drop counter at zero.
fn begin(q: SendQueue<Item>) -> (Arc<SendQueue<Item>>, StdArc<AtomicUsize>) {
    quarantine::begin_execution();
    (Arc::new(q), StdArc::new(AtomicUsize::new(0)))
}

/// Runs `f` on a new loom thread with its own handles on the queue and on
/// the drop counter.
fn spawn_with<R: Send + 'static>(
    q: &Arc<SendQueue<Item>>,
    drops: &StdArc<AtomicUsize>,
    f: impl FnOnce(Arc<SendQueue<Item>>, StdArc<AtomicUsize>) -> R + Send + 'static,
) -> thread::JoinHandle<R> {
    let (q, drops) = (q.clone(), drops.clone());
    thread::spawn(move || f(q, drops))
}

/// Drops the items taken and then the last handle on the queue (whose
/// `Drop` drops what is left in it), and checks that `n` items were
/// dropped in all: each exactly once.
fn drop_all(got: Vec<Item>, q: Arc<SendQueue<Item>>, drops: &AtomicUsize, n: usize) {
    drop(got);
    drop(q);
    assert_eq!(drops.load(Relaxed), n);
}

/// Block 1 is read to its end (and recycled as the spare) by a drain that
/// races the producer reaching the end of block 2, which takes a block to
/// link as block 3: the recycled block 1 if the consumer put it back first,
/// else a new one. Either way every message comes out once, in order, the
/// third block works (a reused block with a stale slot state would show),
/// and no block leaks. Both outcomes must occur in the explored
/// interleavings.
#[test]
fn third_block_reuses_the_recycled_spare() {
    static REUSED: AtomicUsize = AtomicUsize::new(0);
    static FRESH: AtomicUsize = AtomicUsize::new(0);
    assert_eq!(BLOCK_CAP, 3);
    loom::model(|| {
        let (q, drops) = begin(queue());
        let mut got = Vec::new();
        // Slots 0 and 1 of block 1, pushed and read: the consumer stays in
        // block 1.
        for seq in 0..2 {
            q.try_push(item(0, seq, &drops)).unwrap();
        }
        q.drain_into(&mut got, usize::MAX);
        let block1 = q.first_block_addr();
        let producer = spawn_with(&q, &drops, |q, drops| {
            // 2: block 1's last slot (links a new block 2); 3, 4: block
            // 2; 5: block 2's last slot (links block 3).
            for seq in 2..6 {
                q.try_push(item(0, seq, &drops)).unwrap();
            }
        });
        // Reading seq 2 recycles block 1 (`put_spare`), racing the
        // producer's `take_block` for block 3.
        q.drain_into(&mut got, usize::MAX);
        producer.join().unwrap();
        q.drain_into(&mut got, usize::MAX);
        if q.tail_block_addr() == block1 {
            REUSED.fetch_add(1, Relaxed);
        } else {
            FRESH.fetch_add(1, Relaxed);
            // Block 1 was recycled after block 3 was taken: it is the
            // spare now (block 2, recycled later, was freed).
            assert_eq!(q.spare_addr(), block1);
        }
        // The consumer is in block 3.
        assert_eq!(q.blocks_in_use(), 1);
        q.try_push(item(0, 6, &drops)).unwrap();
        let d = q.drain_into(&mut got, usize::MAX);
        assert_eq!((d.items, d.idle), (1, true));
        assert_eq!(seqs(&got), [0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(q.queued_bytes(), 0);
        drop_all(got, q, &drops, 7);
    });
    assert!(REUSED.load(Relaxed) > 0, "the spare was never reused");
    assert!(FRESH.load(Relaxed) > 0);
}

/// The queue is dropped by whichever thread lets go of it last, with
/// messages left in two blocks: the producer pushes four more (the rest of
/// block 1, whose last slot links block 2, then block 2's first two) and
/// drops its handle, while the consumer drains at most two and drops its
/// own. `Drop` must see every published message (acquired through the
/// `Arc`), drop each exactly once and free both blocks. Both threads must
/// end up running `Drop` in the explored interleavings, and the drain must
/// race the pushes.
///
/// The message pushed before the spawn makes the racing drain release
/// bytes (an RMW on the state word): a consumer that only loads the state
/// word is never ordered after a producer's load + CAS by loom 0.7's DPOR
/// (tokio-rs/loom#392), which would leave the race unexplored.
#[test]
fn drop_walks_two_blocks() {
    static DROP_ON_MAIN: AtomicUsize = AtomicUsize::new(0);
    static DROP_ON_PRODUCER: AtomicUsize = AtomicUsize::new(0);
    static DRAINED_A_PUSH: AtomicUsize = AtomicUsize::new(0);
    loom::model(|| {
        let (q, drops) = begin(queue());
        q.try_push(item(0, 0, &drops)).unwrap();
        let producer = spawn_with(&q, &drops, |q, drops| {
            for seq in 1..5 {
                q.try_push(item(0, seq, &drops)).unwrap();
            }
            if Arc::strong_count(&q) == 1 {
                DROP_ON_PRODUCER.fetch_add(1, Relaxed);
            }
            drop(q);
        });
        // Takes seq 0, maybe seq 1: seq 2 (block 1) to seq 4 (block 2) at
        // least are left for `Drop`.
        let mut got = Vec::new();
        let d = q.drain_into(&mut got, 2);
        assert!(d.items >= 1);
        assert_eq!(seqs(&got), (0..d.items as u8).collect::<Vec<_>>());
        if d.items == 2 {
            DRAINED_A_PUSH.fetch_add(1, Relaxed);
        }
        drop(got);
        if Arc::strong_count(&q) == 1 {
            DROP_ON_MAIN.fetch_add(1, Relaxed);
        }
        drop(q);
        producer.join().unwrap();
        assert_eq!(drops.load(Relaxed), 5);
    });
    assert!(DROP_ON_MAIN.load(Relaxed) > 0);
    assert!(DROP_ON_PRODUCER.load(Relaxed) > 0);
    assert!(DRAINED_A_PUSH.load(Relaxed) > 0);
}

/// Defect 1 of issue 12: the drain callback panics (the IO thread's
/// handler, caught by its `catch_unwind`) while a producer pushes across
/// the block boundary. The bytes of the messages handed out are given back
/// while unwinding, racing the producer's reservations on the state word:
/// with room for three messages, the producer's second push fits only if
/// that release came first. Both outcomes must occur; either way the count
/// is exact, and back to 0 once the rest is drained.
#[test]
fn panicking_drain_callback_releases_bytes() {
    static FIT: AtomicUsize = AtomicUsize::new(0);
    static REFUSED: AtomicUsize = AtomicUsize::new(0);
    loom::model(|| {
        let (q, drops) = begin(limited_queue(3));
        for seq in 0..2 {
            q.try_push(item(0, seq, &drops)).unwrap();
        }
        let producer = spawn_with(&q, &drops, |q, drops| {
            // Slot 2 (links block 2): always fits (2 + 1 <= 3).
            q.try_push(item(1, 0, &drops)).unwrap();
            // Block 2's slot 0: fits once the panicking drain gave back
            // its two bytes.
            match q.try_push(item(1, 1, &drops)) {
                Ok(()) => true,
                Err(e) => {
                    assert!(e.is_full());
                    drop(e.into_inner());
                    false
                }
            }
        });
        let mut handed = 0;
        let r = catch_unwind(AssertUnwindSafe(|| {
            q.drain_each(usize::MAX, |it| {
                handed += 1;
                if it.producer == 0 && it.seq == 1 {
                    // Without the panic hook: no output per execution.
                    resume_unwind(Box::new("handler bug"));
                }
            })
        }));
        assert!(r.is_err(), "seq 1 of producer 0 is always handed out");
        assert_eq!(handed, 2, "the drain stops at the panic");
        let fit = producer.join().unwrap();
        if fit {
            FIT.fetch_add(1, Relaxed);
        } else {
            REFUSED.fetch_add(1, Relaxed);
        }
        // Only the producer's messages are still counted.
        let pushed = 1 + fit as usize;
        assert_eq!(q.queued_bytes(), pushed);
        let mut got = Vec::new();
        let d = q.drain_into(&mut got, usize::MAX);
        assert_eq!((d.items, d.bytes, d.idle), (pushed, pushed, true));
        assert!(got.iter().all(|i| i.producer == 1));
        assert_eq!(seqs(&got), (0..pushed as u8).collect::<Vec<_>>());
        assert_eq!(q.queued_bytes(), 0);
        // The whole limit is available again.
        for seq in 2..5 {
            q.try_push(item(1, seq, &drops)).unwrap();
        }
        drop_all(got, q, &drops, 7);
    });
    assert!(FIT.load(Relaxed) > 0, "the release never came first");
    assert!(REFUSED.load(Relaxed) > 0);
}

/// A `Sink`-style producer: `try_push_or_wait` with the task's waker,
/// `Pending` on `Full` (holding the item), on a full queue (limit 1) while
/// the consumer drains once. Three paths, all of which must occur:
/// * it registered and waited, and the release woke it;
/// * it registered, but its `WAITERS` CAS failed because the release came
///   in between: it retried and pushed without waiting (and took its
///   registration back);
/// * the release came first and it pushed at once.
///
/// Whichever, the push completes (a lost wakeup is a deadlock), the count
/// is exact, and the waiter list is empty and `WAITERS` clear at the end.
#[test]
fn sink_style_wait_registers_or_retries() {
    static WAITED: AtomicUsize = AtomicUsize::new(0);
    static RETRIED: AtomicUsize = AtomicUsize::new(0);
    static DIRECT: AtomicUsize = AtomicUsize::new(0);
    loom::model(|| {
        let (q, drops) = begin(limited_queue(1));
        q.try_push(item(0, 0, &drops)).unwrap();
        let producer = spawn_with(&q, &drops, |q, drops| {
            let mut pending = Some(item(1, 0, &drops));
            let mut waited = false;
            block_on(poll_fn(|cx| {
                let it = pending.take().unwrap();
                match q.try_push_or_wait(it, cx.waker()) {
                    Ok(()) => Poll::Ready(()),
                    Err(PushError::Full { item, .. }) => {
                        waited = true;
                        pending = Some(item);
                        Poll::Pending
                    }
                    Err(e) => panic!("{e:?}"),
                }
            }));
            waited
        });
        let mut got = Vec::new();
        assert_eq!(q.drain_into(&mut got, usize::MAX).items, 1);
        let waited = producer.join().unwrap();
        if waited {
            WAITED.fetch_add(1, Relaxed);
        } else if q.waiters.created() > 0 {
            RETRIED.fetch_add(1, Relaxed);
        } else {
            DIRECT.fetch_add(1, Relaxed);
        }
        assert_eq!(q.waiters.len(), 0);
        assert!(!q.waiters_bit());
        assert_eq!(q.queued_bytes(), 1);
        q.drain_into(&mut got, usize::MAX);
        assert_eq!(seqs(&got), [0, 0]);
        assert_eq!(got[1].producer, 1);
        drop_all(got, q, &drops, 2);
    });
    assert!(WAITED.load(Relaxed) > 0, "never waited");
    assert!(
        RETRIED.load(Relaxed) > 0,
        "the failed WAITERS CAS never retried"
    );
    assert!(DIRECT.load(Relaxed) > 0);
}

/// A send polled once on a full queue (registering, unless the release
/// came first) is dropped while the consumer's drain releases the byte.
/// The cancelled send's entry is gone from the list, `WAITERS` is clear,
/// the count is exact, and a later send completes at once. Both a send
/// cancelled after registering and one that completed must occur.
#[test]
fn cancelled_send_racing_release_deregisters() {
    static CANCELLED: AtomicUsize = AtomicUsize::new(0);
    static COMPLETED: AtomicUsize = AtomicUsize::new(0);
    loom::model(|| {
        let (q, drops) = begin(limited_queue(1));
        q.try_push(item(0, 0, &drops)).unwrap();
        let producer = spawn_with(&q, &drops, |q, drops| {
            let mut send = q.send(item(1, 0, &drops));
            let r = Pin::new(&mut send).poll(&mut Context::from_waker(Waker::noop()));
            drop(send);
            // Gone, whether the drop took it back or the release's wake
            // took it first (this is the only producer).
            assert_eq!(q.waiters.len(), 0);
            r.map(|r| r.unwrap()).is_ready()
        });
        let mut got = Vec::new();
        assert_eq!(q.drain_into(&mut got, usize::MAX).items, 1);
        let completed = producer.join().unwrap();
        if completed {
            COMPLETED.fetch_add(1, Relaxed);
        } else {
            CANCELLED.fetch_add(1, Relaxed);
            assert!(q.waiters.created() > 0, "pending means registered");
        }
        assert_eq!(q.waiters.len(), 0);
        assert!(!q.waiters_bit());
        assert_eq!(q.queued_bytes(), usize::from(completed));
        assert_eq!(drops.load(Relaxed), usize::from(!completed));
        q.drain_into(&mut got, usize::MAX);
        let mut send = q.send(item(2, 0, &drops));
        assert!(
            Pin::new(&mut send)
                .poll(&mut Context::from_waker(Waker::noop()))
                .is_ready()
        );
        drop(send);
        assert_eq!(q.queued_bytes(), 1);
        assert_eq!(q.waiters.len(), 0);
        drop_all(got, q, &drops, 3);
    });
    assert!(CANCELLED.load(Relaxed) > 0);
    assert!(COMPLETED.load(Relaxed) > 0);
}

/// Issue 16: the consumer drains and releases the idle queue's blocks
/// twice while a producer pushes twice, so each push may race a release:
/// one that read the state word (and maybe the block pointer) before the
/// release must fail its reservation and install a new block; one that
/// arrives during the release must wait for it; the consumer must find the
/// block installed after it. Every message comes out exactly once, in
/// order, with exact bytes; no block leaks (loom's leak check) and none is
/// used after being freed (the quarantine). Block 1 starts full and read,
/// so the first release also frees a spare. Must occur: 0, 1 and 2
/// successful releases, and a release made while a push was in progress.
#[test]
fn pushes_race_the_release_of_idle_blocks() {
    static RELEASED: [AtomicUsize; 3] = [const { AtomicUsize::new(0) }; 3];
    static DURING_A_PUSH: AtomicUsize = AtomicUsize::new(0);
    loom::model(|| {
        let (q, drops) = begin(queue());
        // The producer's push in progress (its seq), 0 if none. A `std`
        // atomic: the model's threads run on one OS thread, so it reads
        // what the interleaving did, without adding synchronisation.
        let in_push = StdArc::new(AtomicUsize::new(0));
        let mut got = Vec::new();
        // Block 1 (read, recycled as the spare), then seq 3 in block 2.
        for seq in 0..4 {
            q.try_push(item(0, seq, &drops)).unwrap();
        }
        q.drain_into(&mut got, 3);
        assert_ne!(q.spare_addr(), 0);
        let producer = {
            let in_push = in_push.clone();
            spawn_with(&q, &drops, move |q, drops| {
                for seq in 4..6 {
                    in_push.store(usize::from(seq), Relaxed);
                    q.try_push(item(0, seq, &drops)).unwrap();
                    in_push.store(0, Relaxed);
                }
            })
        };
        let mut released = 0;
        for _ in 0..2 {
            // Takes seq 3 the first time: an RMW on the state word (the
            // bytes), so loom orders it against the pushes (loom#392).
            q.drain_into(&mut got, usize::MAX);
            let pushing = in_push.load(Relaxed);
            let freed = q.release_idle_blocks();
            if freed > 0 {
                released += 1;
                if pushing != 0 && in_push.load(Relaxed) == pushing {
                    DURING_A_PUSH.fetch_add(1, Relaxed);
                }
            }
        }
        producer.join().unwrap();
        let d = q.drain_into(&mut got, usize::MAX);
        assert!(d.idle);
        assert_eq!(seqs(&got), [0, 1, 2, 3, 4, 5]);
        assert_eq!(q.queued_bytes(), 0);
        RELEASED[released].fetch_add(1, Relaxed);
        // Quiet now: a release leaves no block and no spare (there was one
        // unless the last release came after both pushes were read).
        q.release_idle_blocks();
        assert_eq!(q.first_block_addr(), 0);
        assert_eq!(q.tail_block_addr(), 0);
        assert_eq!(q.spare_addr(), 0);
        // The queue works on.
        q.try_push(item(0, 6, &drops)).unwrap();
        assert_eq!(q.drain_into(&mut got, usize::MAX).items, 1);
        assert_eq!(got.len(), 7);
        drop_all(got, q, &drops, 7);
    });
    for (n, r) in RELEASED.iter().enumerate() {
        assert!(r.load(Relaxed) > 0, "never {n} releases");
    }
    assert!(
        DURING_A_PUSH.load(Relaxed) > 0,
        "no release raced a push in progress"
    );
}

/// A release, then a push (installing a new block) racing `close`, then
/// the queue dropped: the message is dropped exactly once (by `close`, or
/// by `Drop` if it was published after the close took the consumer lock,
/// or refused) and the new block freed. `close` and the release share the
/// consumer lock; `close`'s `CLOSED` is set outside it, so the push may
/// install its block and then be refused. Must occur: the push refused,
/// and pushed then dropped by `close`.
#[test]
fn close_races_the_push_after_a_release() {
    static REFUSED: AtomicUsize = AtomicUsize::new(0);
    static CLOSED_IT: AtomicUsize = AtomicUsize::new(0);
    loom::model(|| {
        let (q, drops) = begin(queue());
        q.try_push(item(0, 0, &drops)).unwrap();
        let mut got = Vec::new();
        q.drain_into(&mut got, usize::MAX);
        assert_ne!(q.release_idle_blocks(), 0);
        let producer = spawn_with(&q, &drops, |q, drops| {
            match q.try_push(item(0, 1, &drops)) {
                Ok(()) => true,
                Err(e) => {
                    assert!(!e.is_full());
                    false
                }
            }
        });
        let closed = q.close();
        let pushed = producer.join().unwrap();
        if !pushed {
            REFUSED.fetch_add(1, Relaxed);
        } else if closed == 1 {
            CLOSED_IT.fetch_add(1, Relaxed);
        }
        assert!(closed <= usize::from(pushed));
        let d = q.drain_into(&mut got, usize::MAX);
        assert!(d.closed);
        assert_eq!(got.len() + closed, 1 + usize::from(pushed));
        // An empty closed queue gives its blocks back, and `Drop` frees
        // whatever a push installed.
        q.release_idle_blocks();
        drop_all(got, q, &drops, 2);
    });
    assert!(REFUSED.load(Relaxed) > 0);
    assert!(CLOSED_IT.load(Relaxed) > 0);
}
