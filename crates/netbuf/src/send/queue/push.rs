//! The producers' side of [`SendQueue`]: the reservation loop (one CAS on
//! the state word for slots and bytes), single and batch pushes, and
//! pushes that wait for room (`send`, `try_push_or_wait`).

use core::task::Waker;

use super::*;

impl<T: QueueItem> SendQueue<T> {
    /// Bytes an item accounts for: its size plus the entry overhead.
    #[inline]
    pub(super) fn entry_size(&self, item: &T) -> u64 {
        let size = if self.pinned {
            item.pinned_bytes()
        } else {
            item.byte_size()
        };
        (size as u64).saturating_add(self.overhead)
    }

    /// Whether `bytes` more fit on top of `queued`.
    #[inline]
    pub(super) fn fits(&self, queued: u64, bytes: u64) -> bool {
        queued.saturating_add(bytes) <= self.limit
    }

    /// The reservation loop of every push: one CAS on the state word that
    /// reserves consecutive slots of the tail block and their bytes.
    ///
    /// `fit(queued, room)` says how many of the caller's next items to
    /// reserve (at most `room`, the slots left in the block) and their
    /// entry bytes, given `queued` bytes in the queue; 0 items means the
    /// next one does not fit. It runs again after a failed CAS (and also
    /// before installing a block in a queue that has none), and only before
    /// the CAS, so it may run user code that panics (`byte_size`).
    ///
    /// If the reservation is to include the block's last slot, a block for
    /// linking is taken into `*next` first (unless it holds one); the
    /// caller owns it, whatever the outcome.
    pub(super) fn reserve(
        &self,
        next: &mut *mut Block<T>,
        mut fit: impl FnMut(u64, usize) -> (usize, u64),
    ) -> Result<Reservation<T>, Refused> {
        let mut step = 0;
        let mut st = self.state.load(Ordering::Acquire);
        loop {
            if st & CLOSED != 0 {
                return Err(Refused::Closed);
            }
            let off = offset_of(index_of(st));
            if off == BLOCK_CAP {
                if self.first.load(Ordering::Acquire).is_null() {
                    // No block (a new queue, or its blocks were released):
                    // install one, unless the items do not fit anyway. They
                    // are sized as for a reservation at its first slot
                    // (taking the block to link next if they fill it).
                    let (n, _) = fit(st & BYTES_MASK, BLOCK_CAP);
                    if n == 0 {
                        return Err(Refused::Full { state: st });
                    }
                    if n == BLOCK_CAP && next.is_null() {
                        *next = self.take_block();
                    }
                    self.install_block();
                } else {
                    // Another producer is linking the next block (or
                    // installing one), or the consumer is releasing them.
                    backoff(&mut step);
                }
                st = self.state.load(Ordering::Acquire);
                continue;
            }
            let queued = st & BYTES_MASK;
            let (n, bytes) = fit(queued, BLOCK_CAP - off);
            if n == 0 {
                return Err(Refused::Full { state: st });
            }
            debug_assert!(off + n <= BLOCK_CAP);
            if off + n == BLOCK_CAP && next.is_null() {
                *next = self.take_block();
            }
            let block = self.tail_block.load(Ordering::Acquire);
            if block.is_null() {
                // Nulled by a release after we read `st`, which is stale
                // (the release moved the index on).
                backoff(&mut step);
                st = self.state.load(Ordering::Acquire);
                continue;
            }
            match self.state.compare_exchange_weak(
                st,
                reserved(st, n as u64, bytes, u64::from(self.high)),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                // The slots are those of our index: `block` was the tail
                // block when we read `st`, and it only changes (is linked,
                // installed, or nulled by a release) after an RMW on the
                // state word that moves the index, which would have failed
                // this CAS (such a store is a release that our load
                // acquires: see `release.rs`).
                Ok(_) => {
                    return Ok(Reservation {
                        block,
                        off,
                        n,
                        was_idle: st & IDLE != 0,
                    });
                }
                Err(cur) => {
                    st = cur;
                    spin(&mut step);
                }
            }
        }
    }

    #[inline]
    pub(super) fn wake(&self) {
        if let Some(n) = &self.notify {
            n.notify();
        }
    }

    /// Queues `item` without blocking. Fails, handing the item back, if it
    /// would take the queued bytes over the limit or the queue is closed.
    ///
    /// Calls the notifier if this push ends an idle period of the consumer.
    ///
    /// ```
    /// let q: netbuf::SendQueue<Vec<u8>> = netbuf::SendQueue::new();
    /// q.try_push(b"hello".to_vec()).unwrap();
    /// assert_eq!(q.queued_bytes(), 5 + q.entry_overhead());
    /// ```
    pub fn try_push(&self, item: T) -> Result<(), PushError<T>> {
        // Computed before reserving: nothing that can panic runs between a
        // reservation and its publication.
        let size = self.entry_size(&item);
        self.push_sized(item, size).map_err(|e| match e {
            Rejected::Closed(item) => PushError::Closed(item),
            Rejected::Full { item, state } => PushError::Full {
                item,
                queued_bytes: (state & BYTES_MASK) as usize,
                limit: self.limit as usize,
            },
        })
    }

    /// [`try_push`](Self::try_push) of an item whose entry size is `size`.
    pub(super) fn push_sized(&self, item: T, size: u64) -> Result<(), Rejected<T>> {
        let mut next: *mut Block<T> = ptr::null_mut();
        let fit = |queued: u64, _room: usize| {
            if self.fits(queued, size) {
                (1, size)
            } else {
                (0, 0)
            }
        };
        let r = match self.reserve(&mut next, fit) {
            Ok(r) => r,
            Err(refused) => {
                self.put_spare(next);
                return Err(match refused {
                    Refused::Closed => Rejected::Closed(item),
                    Refused::Full { state } => Rejected::Full { item, state },
                });
            }
        };
        if r.takes_last_slot() {
            // SAFETY: we reserved the last slot of `r.block` and have not
            // published it; `next` is ours.
            unsafe { self.link_next(r.block, next) };
            next = ptr::null_mut();
        }
        // SAFETY: slot `r.off` of `r.block` is ours, reserved above.
        let parked = unsafe { self.publish(r.block, r.off, item) };
        self.put_spare(next);
        if r.was_idle || parked {
            self.wake();
        }
        Ok(())
    }

    /// Queues as many messages from the front of `batch` as fit, in order,
    /// with one reservation per block (up to 63 messages) and at most one
    /// notification for the whole batch. Pushed messages are removed from
    /// `batch`; on error the rest stay in it, in order.
    ///
    /// Returns the number pushed (all of them on `Ok`).
    ///
    /// ```
    /// let q: netbuf::SendQueue<Vec<u8>> =
    ///     netbuf::SendQueue::builder().limit(10).entry_overhead(0).build();
    /// let mut batch = vec![vec![0; 4], vec![1; 4], vec![2; 4]];
    /// let err = q.push_batch(&mut batch).unwrap_err();
    /// assert!(matches!(err, netbuf::BatchError::Full { pushed: 2, .. }));
    /// assert_eq!(batch, vec![vec![2; 4]]);
    /// ```
    pub fn push_batch(&self, batch: &mut Vec<T>) -> Result<usize, BatchError> {
        // The guard settles the batch and the block taken for linking
        // however this ends, a panic in `byte_size` included (issue 12).
        let mut g = BatchGuard::new(self, batch);
        let mut notify = false;
        let result = loop {
            let pushed = g.taken();
            let (rest, next) = g.rest_and_next();
            if rest.is_empty() {
                break Ok(pushed);
            }
            // As many of the next items as fit in the block and the limit.
            let fit = |queued: u64, room: usize| {
                let mut size = 0u64;
                let mut n = 0;
                for item in rest.iter().take(room) {
                    // User code, which may panic: before the reservation.
                    let s = self.entry_size(item);
                    if !self.fits(queued.saturating_add(size), s) {
                        break;
                    }
                    size += s;
                    n += 1;
                }
                (n, size)
            };
            let r = match self.reserve(next, fit) {
                Ok(r) => r,
                Err(Refused::Closed) => break Err(BatchError::Closed { pushed }),
                Err(Refused::Full { state }) => {
                    break Err(BatchError::Full {
                        pushed,
                        queued_bytes: (state & BYTES_MASK) as usize,
                        limit: self.limit as usize,
                    });
                }
            };
            // Nothing from here to the last publication can panic.
            if r.takes_last_slot() {
                // SAFETY: our reservation includes the block's last slot,
                // not yet published; the block taken for linking is ours.
                unsafe { self.link_next(r.block, g.take_next()) };
            }
            for i in 0..r.n {
                // `r.n <= rest.len()`: the batch has these items.
                let item = g.take();
                // SAFETY: slots `r.off..r.off + r.n` of `r.block` are ours.
                notify |= unsafe { self.publish(r.block, r.off + i, item) };
            }
            notify |= r.was_idle;
        };
        // Settle the batch and the spare before the notifier (user code)
        // runs.
        drop(g);
        if notify {
            self.wake();
        }
        result
    }

    /// Queues `item`, waiting for space if the queue is full: the future
    /// resolves to `Ok(())` once the byte bound admits the item, to
    /// [`PushError::Closed`] if the queue is closed or shut down (also
    /// while waiting), and to [`PushError::Full`] at once if the item can
    /// never fit (its entry size exceeds the limit; see
    /// [`fits_when_empty`](Self::fits_when_empty)). The item comes back in
    /// the error.
    ///
    /// Cancel-safe: dropping the pending future deregisters its waker and
    /// drops the item; nothing was queued. Waiting producers are woken by
    /// every release of bytes and retry in no particular order ("Space
    /// wakeups" on the type). Works on any executor: the queue only uses
    /// `core::task`.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let q: netbuf::SendQueue<Vec<u8>> =
    ///     netbuf::SendQueue::builder().limit(8).entry_overhead(0).build();
    /// q.send(vec![1; 8]).await.unwrap();
    /// let mut second = std::pin::pin!(q.send(vec![2; 4]));
    /// // Full: the second send waits ...
    /// assert!(futures::poll!(second.as_mut()).is_pending());
    /// // ... until the consumer drains.
    /// q.drain_into(&mut Vec::new(), usize::MAX);
    /// second.await.unwrap();
    /// assert_eq!(q.queued_bytes(), 4);
    /// # });
    /// ```
    pub fn send(&self, item: T) -> SendFuture<'_, T> {
        SendFuture::new(self, item)
    }

    /// The poll-level building block of [`send`](Self::send), for `Sink`
    /// implementations: pushes `item` if it fits; if the queue is full,
    /// registers `waker` to be woken when bytes are released (or the queue
    /// closes) and returns [`PushError::Full`] with the item.
    ///
    /// Lost-wakeup-free: the waker is registered before a CAS that
    /// succeeds only on the very state word found full; if space appeared
    /// (or the queue closed) in between, the push is retried instead of
    /// returning `Full` ("Space wakeups" on the type).
    ///
    /// An item that can never fit ([`fits_when_empty`](Self::fits_when_empty)
    /// is false) also comes back in [`PushError::Full`], at once and
    /// **without** registering: check for it rather than waiting forever.
    /// The registration lasts until the next release of bytes or close
    /// wakes it (once), even if the task pushes by other means meanwhile:
    /// at most one spurious wakeup, and nothing to clean up when a `Sink`
    /// is dropped. Registrations are per task (`Waker::will_wake`): several
    /// calls with the same task's waker share one entry.
    ///
    /// ```
    /// use std::task::Waker;
    /// use netbuf::{PushError, SendQueue};
    ///
    /// let q: SendQueue<Vec<u8>> = SendQueue::builder().limit(4).entry_overhead(0).build();
    /// q.try_push(vec![0; 4]).unwrap();
    /// let Err(PushError::Full { item, .. }) = q.try_push_or_wait(vec![1; 2], Waker::noop())
    /// else { panic!() };
    /// // Registered: the drain below wakes the waker; then retry.
    /// q.drain_into(&mut Vec::new(), usize::MAX);
    /// q.try_push_or_wait(item, Waker::noop()).unwrap();
    /// ```
    pub fn try_push_or_wait(&self, item: T, waker: &Waker) -> Result<(), PushError<T>> {
        let mut slot = None;
        match self.push_or_wait(item, waker, &mut slot, Share::SameTask) {
            Waited::Pushed => Ok(()),
            Waited::Closed(item) => Err(PushError::Closed(item)),
            Waited::TooLarge(item) => Err(self.full(item)),
            Waited::Registered { item, queued_bytes } => Err(PushError::Full {
                item,
                queued_bytes,
                limit: self.limit as usize,
            }),
        }
    }

    /// Whether `item` fits in the empty queue (its size plus the entry
    /// overhead is at most the limit). One that does not is refused by
    /// every push, [`send`](Self::send) and
    /// [`try_push_or_wait`](Self::try_push_or_wait) included, without
    /// waiting.
    pub fn fits_when_empty(&self, item: &T) -> bool {
        self.entry_size(item) <= self.limit
    }

    /// A [`PushError::Full`] for `item`, with the bytes queued now.
    pub(super) fn full(&self, item: T) -> PushError<T> {
        PushError::Full {
            item,
            queued_bytes: self.queued_bytes(),
            limit: self.limit as usize,
        }
    }

    /// The push of [`send`](Self::send) and
    /// [`try_push_or_wait`](Self::try_push_or_wait): pushes, or registers
    /// `waker` (in `*slot`) and sets `WAITERS` on the exact word found
    /// full, or retries if that word changed meanwhile. A push that ends
    /// without waiting (`Pushed`, `Closed`) leaves no registration of its
    /// own behind: `*slot` is then `None`.
    pub(super) fn push_or_wait(
        &self,
        item: T,
        waker: &Waker,
        slot: &mut Option<WaitSlot>,
        share: Share,
    ) -> Waited<T> {
        let size = self.entry_size(&item);
        if size > self.limit {
            return Waited::TooLarge(item);
        }
        let mut item = item;
        loop {
            let (it, state) = match self.push_sized(item, size) {
                Ok(()) => {
                    self.deregister(slot);
                    return Waited::Pushed;
                }
                Err(Rejected::Closed(it)) => {
                    self.deregister(slot);
                    return Waited::Closed(it);
                }
                Err(Rejected::Full { item, state }) => (item, state),
            };
            // Register first, then announce it on the word found full: a
            // release that sees `WAITERS` has acquired this CAS, so it
            // finds the waker. If the word moved on, the release (or close)
            // came first: push again instead of waiting.
            self.waiters.register(waker, slot, share);
            if self
                .state
                .compare_exchange(state, state | WAITERS, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Waited::Registered {
                    item: it,
                    queued_bytes: (state & BYTES_MASK) as usize,
                };
            }
            item = it;
        }
    }

    /// Takes back the registration in `*slot`, if any.
    #[inline]
    pub(super) fn deregister(&self, slot: &mut Option<WaitSlot>) {
        if let Some(s) = slot.take() {
            self.waiters.remove(s);
        }
    }
}
