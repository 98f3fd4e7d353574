//! `SendQueue`'s async side: producers waiting for space (`send().await`,
//! `try_push_or_wait`), cancellation of a pending send, the async consumer
//! (`WakerNotify`, `poll_drain_*`), and `shutdown` / `close` waking the
//! consumer and the waiting producers.

#![cfg(not(loom))]

use std::future::{Future, poll_fn};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use futures::FutureExt;
use futures::executor::block_on;
use netbuf::test_util::check_exactly_once_in_order;
use netbuf::{CondvarNotify, Drained, PushError, QueueItem, SendQueue, WakerNotify};

/// A test item: producer, sequence number, claimed size; counts its drops.
#[derive(Debug)]
struct Item {
    producer: usize,
    seq: usize,
    size: usize,
    drops: Option<Arc<AtomicUsize>>,
}

impl QueueItem for Item {
    fn byte_size(&self) -> usize {
        self.size
    }
}

impl Drop for Item {
    fn drop(&mut self) {
        if let Some(d) = &self.drops {
            d.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn item(producer: usize, seq: usize, size: usize) -> Item {
    Item {
        producer,
        seq,
        size,
        drops: None,
    }
}

fn counted(size: usize, drops: &Arc<AtomicUsize>) -> Item {
    Item {
        producer: 0,
        seq: 0,
        size,
        drops: Some(drops.clone()),
    }
}

/// A queue of `limit` bytes, no entry overhead, with `notify`.
fn queue_with(limit: usize, notify: Option<Arc<WakerNotify>>) -> SendQueue<Item> {
    let b = SendQueue::builder().limit(limit).entry_overhead(0);
    match notify {
        Some(n) => b.notify(n).build(),
        None => b.build(),
    }
}

/// A waker counting its wakes.
#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting_waker() -> (Arc<CountingWaker>, Waker) {
    let c = Arc::new(CountingWaker::default());
    (c.clone(), Waker::from(c))
}

fn wakes(c: &CountingWaker) -> usize {
    c.0.load(Ordering::SeqCst)
}

/// Polls `f` once with `waker`.
fn poll_once<F: Future + Unpin>(f: &mut F, waker: &Waker) -> Poll<F::Output> {
    std::pin::Pin::new(f).poll(&mut Context::from_waker(waker))
}

/// Checks that each producer's items came out once, in order, and all of them did.
fn check_in_order(got: &[Item], producers: usize, per: usize) {
    check_exactly_once_in_order(got.iter().map(|i| (i.producer, i.seq)), producers, per);
}

#[test]
fn send_waits_while_full_then_completes_once_drained() {
    let q = queue_with(10, None);
    block_on(q.send(item(0, 0, 8))).unwrap();
    let (count, waker) = counting_waker();
    let mut send = q.send(item(0, 1, 5));
    assert!(poll_once(&mut send, &waker).is_pending(), "8 + 5 > 10");
    assert!(
        poll_once(&mut send, &waker).is_pending(),
        "re-poll: still full"
    );
    assert_eq!(wakes(&count), 0);
    // A drain releases the bytes: the waiting send is woken and completes.
    let mut out = Vec::new();
    assert_eq!(q.drain_into(&mut out, usize::MAX).items, 1);
    assert_eq!(wakes(&count), 1);
    assert!(matches!(poll_once(&mut send, &waker), Poll::Ready(Ok(()))));
    assert_eq!(q.queued_bytes(), 5);
    drop(send);
    // Across threads: the consumer drains a little later.
    let q = Arc::new(queue_with(10, None));
    q.try_push(item(0, 0, 10)).unwrap();
    let consumer = {
        let q = q.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            let mut out = Vec::new();
            q.drain_into(&mut out, usize::MAX);
            out
        })
    };
    block_on(q.send(item(0, 1, 10))).unwrap();
    assert_eq!(consumer.join().unwrap().len(), 1);
    assert_eq!(q.queued_bytes(), 10);
}

#[test]
fn item_that_can_never_fit_fails_at_once() {
    let q = queue_with(10, None);
    assert!(!q.fits_when_empty(&item(0, 0, 11)));
    assert!(q.fits_when_empty(&item(0, 0, 10)));
    let Err(PushError::Full {
        item: back, limit, ..
    }) = block_on(q.send(item(0, 7, 11)))
    else {
        panic!("an item over the limit must be refused at once");
    };
    assert_eq!((back.seq, limit), (7, 10));
    // Not registered: nothing to wake.
    let (count, waker) = counting_waker();
    let e = q.try_push_or_wait(item(0, 8, 11), &waker).unwrap_err();
    assert!(e.is_full());
    q.try_push(item(0, 0, 4)).unwrap();
    q.drain_into(&mut Vec::new(), usize::MAX);
    assert_eq!(wakes(&count), 0);
}

#[test]
fn try_push_or_wait_registers_and_is_woken_by_release_and_close() {
    let q = queue_with(4, None);
    let (count, waker) = counting_waker();
    q.try_push_or_wait(item(0, 0, 4), &waker).unwrap();
    // Full: registered, the item comes back.
    let Err(PushError::Full {
        item: it,
        queued_bytes,
        ..
    }) = q.try_push_or_wait(item(0, 1, 2), &waker)
    else {
        panic!()
    };
    assert_eq!(queued_bytes, 4);
    // The same task registering again shares its entry: one wake.
    let it = q.try_push_or_wait(it, &waker).unwrap_err().into_inner();
    assert_eq!(wakes(&count), 0);
    // A release of bytes wakes it, once; a drain that gives back nothing
    // does not.
    let mut out = Vec::new();
    q.drain_into(&mut out, usize::MAX);
    assert_eq!(wakes(&count), 1);
    q.drain_into(&mut out, usize::MAX);
    assert_eq!(wakes(&count), 1, "the list was emptied by the wake");
    q.try_push_or_wait(it, &waker).unwrap();
    // Full again, then closed: the close wakes the waiter, whose retry
    // sees `Closed`.
    q.try_push(item(0, 2, 2)).unwrap();
    let it = q.try_push_or_wait(item(0, 3, 1), &waker).unwrap_err();
    assert!(it.is_full());
    q.close();
    assert_eq!(wakes(&count), 2);
    assert!(matches!(
        q.try_push_or_wait(it.into_inner(), &waker),
        Err(PushError::Closed(_))
    ));
    assert_eq!(wakes(&count), 2);
}

#[test]
fn many_waiting_producers_all_complete_in_order() {
    const PRODUCERS: usize = 6;
    const PER: usize = 300;
    let wake = Arc::new(WakerNotify::new());
    // Room for about three items: producers wait most of the time.
    let q = Arc::new(queue_with(64, Some(wake)));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let got = rt.block_on(async {
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let q = q.clone();
                tokio::spawn(async move {
                    for seq in 0..PER {
                        q.send(item(p, seq, 8 + (seq * 7 + p) % 17)).await.unwrap();
                    }
                })
            })
            .collect();
        let consumer = {
            let q = q.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let d = poll_fn(|cx| q.poll_drain_into(cx, &mut got, 5)).await;
                    if d.closed {
                        return got;
                    }
                    tokio::task::yield_now().await;
                }
            })
        };
        for p in producers {
            p.await.unwrap();
        }
        q.shutdown();
        consumer.await.unwrap()
    });
    check_in_order(&got, PRODUCERS, PER);
    assert_eq!(q.queued_bytes(), 0);
}

/// The same with OS threads: producers block on `send` with
/// `futures::executor::block_on`, the consumer sleeps on a `CondvarNotify`.
#[test]
fn waiting_producer_threads_and_condvar_consumer() {
    const PRODUCERS: usize = 4;
    const PER: usize = 2000;
    let wake = Arc::new(CondvarNotify::new());
    let q = Arc::new(
        SendQueue::builder()
            .limit(40)
            .entry_overhead(0)
            .notify(wake.clone())
            .build::<Item>(),
    );
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let q = q.clone();
            thread::spawn(move || {
                for seq in 0..PER {
                    block_on(q.send(item(p, seq, 1 + seq % 13))).unwrap();
                }
            })
        })
        .collect();
    let consumer = {
        let q = q.clone();
        thread::spawn(move || {
            let mut got = Vec::new();
            loop {
                let d = q.drain_into(&mut got, 3);
                if d.closed {
                    return got;
                }
                if d.idle {
                    assert!(wake.wait_timeout(Duration::from_secs(20)), "lost wakeup");
                }
            }
        })
    };
    for p in producers {
        p.join().unwrap();
    }
    q.shutdown();
    check_in_order(&consumer.join().unwrap(), PRODUCERS, PER);
}

#[test]
fn cancelled_pending_send_leaves_the_queue_consistent() {
    let drops = Arc::new(AtomicUsize::new(0));
    let q = queue_with(10, None);
    q.try_push(counted(6, &drops)).unwrap();
    // `now_or_never` polls once (pending: 6 + 5 > 10) and drops the future.
    assert!(q.send(counted(5, &drops)).now_or_never().is_none());
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "the pending item is dropped"
    );
    assert_eq!(q.queued_bytes(), 6);
    // Polled twice (re-registering), then dropped.
    let (count, waker) = counting_waker();
    let mut send = q.send(counted(5, &drops));
    assert!(poll_once(&mut send, &waker).is_pending());
    assert!(poll_once(&mut send, &waker).is_pending());
    drop(send);
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    // Deregistered: the release does not wake the dropped send's waker.
    let mut out = Vec::new();
    assert_eq!(q.drain_into(&mut out, usize::MAX).items, 1);
    assert_eq!(wakes(&count), 0);
    assert_eq!(q.queued_bytes(), 0);
    // Later sends work, and fill the whole limit.
    block_on(q.send(counted(5, &drops))).unwrap();
    block_on(q.send(counted(5, &drops))).unwrap();
    assert_eq!(q.queued_bytes(), 10);
    drop(out);
    drop(q);
    assert_eq!(drops.load(Ordering::SeqCst), 5);
}

#[test]
fn send_cancelled_by_select_timeout_then_later_send_works() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let drops = Arc::new(AtomicUsize::new(0));
        let q = Arc::new(queue_with(10, None));
        q.try_push(counted(10, &drops)).unwrap();
        tokio::select! {
            r = q.send(counted(1, &drops)) => panic!("full queue accepted: {r:?}"),
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert_eq!(q.queued_bytes(), 10);
        // A send waiting while another task drains.
        let consumer = {
            let q = q.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                q.drain_into(&mut Vec::new(), usize::MAX)
            })
        };
        q.send(counted(3, &drops)).await.unwrap();
        assert_eq!(consumer.await.unwrap().items, 1);
        assert_eq!(q.queued_bytes(), 3);
    });
}

/// Sends racing a consumer and each other, many of them cancelled by a
/// timeout: the byte count stays exact and nothing is lost or duplicated.
#[test]
fn cancellation_storm_keeps_accounting_exact() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let wake = Arc::new(WakerNotify::new());
    let q = Arc::new(queue_with(32, Some(wake)));
    let drops = Arc::new(AtomicUsize::new(0));
    let (sent, got) = rt.block_on(async {
        let producers: Vec<_> = (0..4)
            .map(|p| {
                let (q, drops) = (q.clone(), drops.clone());
                tokio::spawn(async move {
                    let mut sent = 0;
                    for seq in 0..400usize {
                        let mut it = counted(4 + seq % 9, &drops);
                        it.producer = p;
                        let timeout = Duration::from_micros((seq % 5) as u64 * 50);
                        if let Ok(r) = tokio::time::timeout(timeout, q.send(it)).await {
                            r.unwrap();
                            sent += 1;
                        }
                    }
                    sent
                })
            })
            .collect();
        let consumer = {
            let q = q.clone();
            tokio::spawn(async move {
                let mut got = 0;
                loop {
                    let d = poll_fn(|cx| q.poll_drain_each(cx, 3, drop)).await;
                    got += d.items;
                    if d.closed {
                        return got;
                    }
                    tokio::time::sleep(Duration::from_micros(20)).await;
                }
            })
        };
        let mut sent = 0;
        for p in producers {
            sent += p.await.unwrap();
        }
        q.shutdown();
        (sent, consumer.await.unwrap())
    });
    assert_eq!(sent, got);
    assert_eq!(q.queued_bytes(), 0);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1600,
        "every item dropped once"
    );
}

#[test]
fn shutdown_keeps_queued_items_for_the_consumer() {
    let wake = Arc::new(WakerNotify::new());
    let q = queue_with(1000, Some(wake));
    for seq in 0..10 {
        q.try_push(item(0, seq, 10)).unwrap();
    }
    q.shutdown();
    assert!(q.is_closed());
    assert!(matches!(
        q.try_push(item(0, 10, 1)),
        Err(PushError::Closed(_))
    ));
    assert!(matches!(
        block_on(q.send(item(0, 10, 1))),
        Err(PushError::Closed(_))
    ));
    let mut got = Vec::new();
    let d = q.drain_into(&mut got, 4);
    assert_eq!((d.items, d.idle, d.closed), (4, false, false));
    let d = block_on(poll_fn(|cx| q.poll_drain_into(cx, &mut got, 100)));
    assert_eq!(
        d,
        Drained {
            items: 6,
            bytes: 60,
            idle: true,
            closed: true
        }
    );
    check_in_order(&got, 1, 10);
    // Closed stays closed, and drains keep saying so.
    let d = q.drain_into(&mut got, usize::MAX);
    assert_eq!((d.items, d.idle, d.closed), (0, true, true));
    assert_eq!(q.queued_bytes(), 0);
    // Shutting down twice is harmless; a close then drops nothing.
    q.shutdown();
    assert_eq!(q.close(), 0);
}

#[test]
fn closed_is_reported_when_closed_and_empty() {
    let q = queue_with(100, None);
    assert!(!q.drain_into(&mut Vec::new(), usize::MAX).closed);
    q.try_push(item(0, 0, 1)).unwrap();
    q.close();
    // Closed before any block was drained, and after: both report it.
    let fresh = queue_with(100, None);
    fresh.shutdown();
    let d = fresh.drain_into(&mut Vec::new(), usize::MAX);
    assert_eq!((d.items, d.idle, d.closed), (0, true, true));
    let d = q.drain_into(&mut Vec::new(), usize::MAX);
    assert_eq!((d.items, d.idle, d.closed), (0, true, true));
}

#[test]
fn shutdown_and_close_wake_a_consumer_sleeping_in_waker_notify() {
    for close in [false, true] {
        let wake = Arc::new(WakerNotify::new());
        let q = Arc::new(queue_with(100, Some(wake)));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let consumer = {
                let q = q.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    loop {
                        let d = poll_fn(|cx| q.poll_drain_into(cx, &mut got, 100)).await;
                        if d.closed {
                            return got.len();
                        }
                    }
                })
            };
            // Let the consumer go to sleep on the empty queue first.
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(!consumer.is_finished());
            if close {
                q.close();
            } else {
                q.shutdown();
            }
            let n = tokio::time::timeout(Duration::from_secs(10), consumer)
                .await
                .expect("the close did not wake the consumer")
                .unwrap();
            assert_eq!(n, 0);
        });
    }
}

#[test]
fn shutdown_and_close_wake_a_consumer_sleeping_in_condvar_notify() {
    for close in [false, true] {
        let wake = Arc::new(CondvarNotify::new());
        let q = Arc::new(SendQueue::builder().notify(wake.clone()).build::<Vec<u8>>());
        let slept = Arc::new(AtomicUsize::new(0));
        let consumer = {
            let (q, slept) = (q.clone(), slept.clone());
            thread::spawn(move || {
                let mut got = Vec::new();
                loop {
                    let d = q.drain_into(&mut got, usize::MAX);
                    if d.closed {
                        return got.len();
                    }
                    if d.idle {
                        slept.fetch_add(1, Ordering::SeqCst);
                        assert!(
                            wake.wait_timeout(Duration::from_secs(10)),
                            "the close did not wake the consumer"
                        );
                    }
                }
            })
        };
        while slept.load(Ordering::SeqCst) == 0 {
            thread::yield_now();
        }
        thread::sleep(Duration::from_millis(10));
        if close {
            q.close();
        } else {
            q.try_push(b"bye".to_vec()).unwrap();
            q.shutdown();
        }
        assert_eq!(consumer.join().unwrap(), usize::from(!close));
    }
}

#[test]
fn waiting_sender_gets_closed_on_close_and_shutdown() {
    for close in [false, true] {
        let drops = Arc::new(AtomicUsize::new(0));
        let q = Arc::new(queue_with(10, None));
        q.try_push(counted(10, &drops)).unwrap();
        let sender = {
            let (q, drops) = (q.clone(), drops.clone());
            thread::spawn(move || match block_on(q.send(counted(5, &drops))) {
                Err(PushError::Closed(it)) => it.size,
                r => panic!("{r:?}"),
            })
        };
        // Let it wait.
        thread::sleep(Duration::from_millis(20));
        assert!(!sender.is_finished());
        if close {
            assert_eq!(q.close(), 1);
        } else {
            q.shutdown();
        }
        assert_eq!(sender.join().unwrap(), 5);
        assert_eq!(drops.load(Ordering::SeqCst), 1 + usize::from(close));
    }
}

#[test]
#[should_panic(expected = "cannot wake tasks")]
fn poll_drain_needs_a_waker_notify() {
    let q = SendQueue::builder()
        .notify(CondvarNotify::new())
        .build::<Vec<u8>>();
    let _ = block_on(poll_fn(|cx| q.poll_drain_into(cx, &mut Vec::new(), 1)));
}

#[test]
fn waker_notify_wakes_the_registered_task_once() {
    let n = WakerNotify::new();
    // Nothing registered: a notification is not remembered.
    netbuf::Notify::notify(&n);
    let (count, waker) = counting_waker();
    n.register(&waker);
    n.register(&waker); // the same task: kept, not cloned again
    netbuf::Notify::notify(&n);
    assert_eq!(wakes(&count), 1);
    netbuf::Notify::notify(&n);
    assert_eq!(wakes(&count), 1, "the waker was taken");
    // Another task's waker replaces it.
    let (other, other_waker) = counting_waker();
    n.register(&waker);
    n.register(&other_waker);
    netbuf::Notify::notify(&n);
    assert_eq!((wakes(&count), wakes(&other)), (1, 1));
}

/// The smart notify drives an async consumer: one task drains what several
/// threads push, sleeping whenever the queue is empty, and ends on
/// shutdown.
#[test]
fn async_consumer_receives_everything() {
    const PRODUCERS: usize = 3;
    const PER: usize = 5000;
    let wake = Arc::new(WakerNotify::new());
    let q = Arc::new(queue_with(netbuf::MAX_LIMIT, Some(wake)));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let q = q.clone();
            thread::spawn(move || {
                for seq in 0..PER {
                    q.try_push(item(p, seq, 1)).unwrap();
                    if seq % 512 == 0 {
                        thread::sleep(Duration::from_micros(200));
                    }
                }
            })
        })
        .collect();
    let closer = {
        let q = q.clone();
        thread::spawn(move || {
            for p in producers {
                p.join().unwrap();
            }
            q.shutdown();
        })
    };
    let mut got = Vec::new();
    block_on(poll_fn(|cx| {
        loop {
            match q.poll_drain_into(cx, &mut got, 64) {
                Poll::Ready(d) if d.closed => return Poll::Ready(()),
                Poll::Ready(_) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    }));
    closer.join().unwrap();
    check_in_order(&got, PRODUCERS, PER);
}
