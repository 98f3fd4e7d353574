//! The consumer's side of [`SendQueue`]: draining in order (blocking and
//! async), giving back the bytes of what was drained, and arming the
//! consumer's wakeup when the queue runs empty.

use core::task::{Context, Poll};

use super::*;

impl<T: QueueItem> SendQueue<T> {
    /// Moves up to `max` queued messages into `out`, oldest first (each
    /// producer's messages in the order it pushed them). See
    /// [`Drained::idle`] for when the consumer may sleep.
    ///
    /// Only one thread should consume; concurrent calls are serialised.
    pub fn drain_into(&self, out: &mut Vec<T>, max: usize) -> Drained {
        self.drain_each(max, |item| out.push(item))
    }

    /// Like [`drain_into`](Self::drain_into), handing each message to `f`
    /// (which must not push to or drain this queue).
    ///
    /// If `f` panics, the message it was given is gone (dropped by the
    /// unwinding `f`), the bytes of every message handed out are given back,
    /// and the messages after it stay queued for the next drain. The wakeup
    /// is not armed: drain again before sleeping.
    pub fn drain_each(&self, max: usize, f: impl FnMut(T)) -> Drained {
        self.drain_inner(max, true, f)
    }

    /// The async consumer's drain: registers the task's waker with the
    /// queue's notifier (a [`WakerNotify`](crate::WakerNotify)), **then**
    /// drains like [`drain_each`](Self::drain_each).
    ///
    /// Returns `Ready` with what the drain did if it took messages, stopped
    /// at `max`, or found the queue closed and drained
    /// ([`Drained::closed`]: the consumer is done); `Pending` if it found
    /// nothing, with the wakeup armed: the next push, `shutdown` or `close`
    /// wakes the task. Registering before draining is what makes it
    /// lost-wakeup-free ("Async consumer" on the type).
    ///
    /// # Panics
    ///
    /// If the queue's notifier cannot wake tasks (built without
    /// [`notify`](SendQueueBuilder::notify), or with a [`Notify`] whose
    /// [`register_waker`](Notify::register_waker) returns `false`): the task
    /// would never be woken.
    ///
    /// ```
    /// use std::future::poll_fn;
    /// use std::sync::Arc;
    /// use netbuf::{SendQueue, WakerNotify};
    ///
    /// let q = Arc::new(SendQueue::builder().notify(WakerNotify::new()).build::<Vec<u8>>());
    /// let producer = {
    ///     let q = q.clone();
    ///     std::thread::spawn(move || {
    ///         for i in 0..100u8 {
    ///             q.try_push(vec![i]).unwrap();
    ///         }
    ///         q.shutdown(); // the consumer drains the rest, then ends
    ///     })
    /// };
    /// let got = futures::executor::block_on(async {
    ///     let mut got = Vec::new();
    ///     loop {
    ///         let d = poll_fn(|cx| q.poll_drain_into(cx, &mut got, 16)).await;
    ///         if d.closed {
    ///             break got;
    ///         }
    ///     }
    /// });
    /// producer.join().unwrap();
    /// assert!(got.iter().enumerate().all(|(i, m)| m[0] == i as u8));
    /// assert_eq!(got.len(), 100);
    /// ```
    pub fn poll_drain_each(
        &self,
        cx: &mut Context<'_>,
        max: usize,
        f: impl FnMut(T),
    ) -> Poll<Drained> {
        let registered = self
            .notify
            .as_ref()
            .is_some_and(|n| n.register_waker(cx.waker()));
        assert!(
            registered,
            "SendQueue::poll_drain_*: the queue's notifier cannot wake tasks (build it with a WakerNotify)"
        );
        let d = self.drain_each(max, f);
        if d.items == 0 && d.idle && !d.closed {
            Poll::Pending
        } else {
            Poll::Ready(d)
        }
    }

    /// [`poll_drain_each`](Self::poll_drain_each) into a vector.
    pub fn poll_drain_into(
        &self,
        cx: &mut Context<'_>,
        out: &mut Vec<T>,
        max: usize,
    ) -> Poll<Drained> {
        self.poll_drain_each(cx, max, |item| out.push(item))
    }

    pub(super) fn drain_inner(&self, max: usize, arm: bool, mut f: impl FnMut(T)) -> Drained {
        // Bytes of the items handed out, given back in one RMW when the
        // drain ends, or by the guard if user code panics first (issue 12);
        // the guard also wakes the producers waiting for space if a release
        // cleared `WAITERS`. Declared before `c`, so it is dropped after
        // the consumer lock is released: wakers never run under it.
        let mut unreleased = Unreleased::new(self);
        let mut c = self.consumer.lock();
        let mut items = 0;
        let mut total = 0u64;
        let drained = |items, total: u64, idle, closed| Drained {
            items,
            bytes: total as usize,
            idle,
            closed,
        };
        if c.block.is_null()
            && let Some(d) = self.enter_first_block(&mut c, &mut unreleased, arm)
        {
            return d;
        }
        loop {
            if items == max {
                unreleased.release(None);
                return drained(items, total, false, false);
            }
            // SAFETY: `c.block` is the consumer's current block: producers
            // never free blocks and the consumer only recycles a block after
            // leaving it.
            let slot = unsafe { c.slot() };
            if slot.state.load(Ordering::Acquire) == READY {
                // SAFETY: published (acquired just above), and never read:
                // the cursor only moves past a slot by reading it.
                let (item, left) = unsafe { c.advance() };
                items += 1;
                if let Some(old) = left {
                    // SAFETY: `advance` left `old` after reading its last
                    // slot: all of it was published and read, and no
                    // producer touches it any more.
                    unsafe { self.recycle(old) };
                }
                // User code from here on (`byte_size`, `f`): the item is out
                // of the queue and `c` has moved past it, so a panic cannot
                // make it readable twice, and the guard gives back the bytes
                // counted so far. (If `byte_size` panics, this item's bytes
                // stay counted: a wrong `QueueItem` only skews accounting.)
                let size = self.entry_size(&item);
                total += size;
                unreleased.bytes += size;
                f(item);
                continue;
            }
            if !arm {
                unreleased.release(None);
                return drained(items, total, false, false);
            }
            // Nothing published at `head`: arm the wakeup ("Smart notify"
            // on the type). If nothing is reserved beyond `head` and the
            // queue is closed, nothing ever will be: the consumer is done.
            let r = unreleased.release(Some(c.head));
            if r.idle {
                return drained(items, total, true, r.closed);
            }
            // A producer reserved slot `head` and has not published it.
            match slot
                .state
                .compare_exchange(EMPTY, PARKED, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) | Err(PARKED) => return drained(items, total, true, false),
                // Published meanwhile: keep draining.
                Err(_) => continue,
            }
        }
    }

    /// A drain's start when the consumer holds no block (`head` is the
    /// boundary position before the slots of the block a push installs):
    /// adopts that block if the index has left the boundary; else, armed,
    /// arms the wakeup. `Some` is what the drain returns without reading a
    /// slot. Once per drain, outside the per-item loop.
    #[inline]
    fn enter_first_block(
        &self,
        c: &mut Cursor<T>,
        unreleased: &mut Unreleased<'_, T>,
        arm: bool,
    ) -> Option<Drained> {
        if index_of(self.state.load(Ordering::Acquire)) == c.head {
            // The index has not left the boundary: no block to read,
            // nothing reserved.
            if !arm {
                return Some(Drained::default());
            }
            let r = unreleased.release(Some(c.head));
            if r.idle {
                return Some(Drained {
                    idle: true,
                    closed: r.closed,
                    ..Drained::default()
                });
            }
            // A push installed a block and moved the index past the
            // boundary meanwhile (the state load in `release` acquired
            // that), so the block is visible now.
        }
        if !self.adopt_first(c) {
            return Some(Drained::default());
        }
        None
    }

    /// Gives back `bytes` (clearing `WAITERS` if any are given back); with
    /// `idle_at = Some(head)`, also sets `IDLE` if nothing is reserved
    /// beyond `head`. One RMW on the state word (none if it would change
    /// nothing). The caller wakes the waiting producers if
    /// [`Released::wake_waiters`].
    pub(super) fn release(&self, bytes: u64, idle_at: Option<u64>) -> Released {
        let mut st = self.state.load(Ordering::Acquire);
        loop {
            let (new, idle) = released(st, bytes, u64::from(self.low), idle_at);
            let r = Released {
                idle,
                closed: st & CLOSED != 0,
                wake_waiters: st & WAITERS != 0 && new & WAITERS == 0,
            };
            if new == st {
                return r;
            }
            match self
                .state
                .compare_exchange_weak(st, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return r,
                Err(cur) => st = cur,
            }
        }
    }
}
