//! Producers waiting for space: the wakers registered by
//! [`SendFuture`](super::SendFuture)s and
//! [`try_push_or_wait`](super::SendQueue::try_push_or_wait), woken all at
//! once by the release that clears `WAITERS` (see "Space wakeups" on
//! [`SendQueue`](super::SendQueue)), or by a close.
//!
//! Every entry in the list either belongs to a push still in progress, or
//! was announced by a successful `WAITERS` CAS (its own or a later one on
//! the same entry): a push that registered and then did not wait (its
//! retry succeeded, or found the queue closed) takes its registration
//! back. So the next release of bytes, or a close, empties the list: no
//! waker lingers in it.

use core::mem;
use core::task::Waker;

use crate::sync::{Mutex, lock};

/// A registration: the entry's id and the generation of the list it was
/// added to. The entry is still in the list only while the list is in
/// that generation (a wake takes every entry and starts a new one).
#[derive(Debug, Clone, Copy)]
pub(super) struct WaitSlot {
    id: u64,
    generation: u64,
}

/// How a registration finds its entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Share {
    /// Its own entry (a [`SendFuture`](super::SendFuture)), updated in
    /// place while it is in the list.
    Own,
    /// Any entry whose waker wakes the same task (`will_wake`), shared and
    /// counted ([`try_push_or_wait`](super::SendQueue::try_push_or_wait),
    /// which has no handle: repeated calls by one task keep one entry).
    SameTask,
}

struct Entry {
    id: u64,
    waker: Waker,
    /// Registrations holding the entry (always 1 for [`Share::Own`]).
    refs: usize,
}

struct List {
    next_id: u64,
    generation: u64,
    entries: Vec<Entry>,
}

/// The registered wakers, behind a mutex only producers that found the
/// queue full, the release that wakes them and `close` take.
pub(super) struct Waiters(Mutex<List>);

impl Waiters {
    pub(super) fn new() -> Self {
        Waiters(Mutex::new(List {
            next_id: 0,
            generation: 0,
            entries: Vec::new(),
        }))
    }

    /// Registers `waker` to be woken by the next [`wake_all`](Self::wake_all),
    /// unless `*slot` is still registered (then an [`Share::Own`] entry
    /// takes `waker` if it wakes another task). Happens before the
    /// caller's CAS that sets `WAITERS`: the release that sees the bit then
    /// finds the entry.
    pub(super) fn register(&self, waker: &Waker, slot: &mut Option<WaitSlot>, share: Share) {
        let mut l = lock(&self.0);
        let generation = l.generation;
        if let Some(s) = slot.filter(|s| s.generation == generation)
            && let Some(e) = l.entries.iter_mut().find(|e| e.id == s.id)
        {
            if share == Share::Own && !e.waker.will_wake(waker) {
                e.waker.clone_from(waker);
            }
            return;
        }
        if share == Share::SameTask
            && let Some(e) = l.entries.iter_mut().find(|e| e.waker.will_wake(waker))
        {
            e.refs += 1;
            *slot = Some(WaitSlot {
                id: e.id,
                generation,
            });
            return;
        }
        l.next_id += 1;
        let id = l.next_id;
        l.entries.push(Entry {
            id,
            waker: waker.clone(),
            refs: 1,
        });
        *slot = Some(WaitSlot { id, generation });
    }

    /// Takes a registration back (a push that did not wait after all, a
    /// completed or cancelled send): the entry goes once no registration
    /// holds it. Nothing to do if a wake took the entry already.
    pub(super) fn remove(&self, slot: WaitSlot) {
        let mut l = lock(&self.0);
        if l.generation != slot.generation {
            return;
        }
        let Some(i) = l.entries.iter().position(|e| e.id == slot.id) else {
            return;
        };
        l.entries[i].refs -= 1;
        if l.entries[i].refs == 0 {
            let e = l.entries.swap_remove(i);
            // Dropped outside the lock: a waker's drop is user code.
            drop(l);
            drop(e);
        }
    }

    /// Wakes every registered producer (they retry their push, and the
    /// ones still refused register again). The wakers run after the lock
    /// is released.
    pub(super) fn wake_all(&self) {
        let entries = {
            let mut l = lock(&self.0);
            if l.entries.is_empty() {
                return;
            }
            l.generation += 1;
            mem::take(&mut l.entries)
        };
        for e in entries {
            e.waker.wake();
        }
    }

    /// Entries in the list (for the models).
    #[cfg(all(test, loom))]
    pub(super) fn len(&self) -> usize {
        lock(&self.0).entries.len()
    }

    /// Entries ever created (for the models: 0 means no push registered).
    #[cfg(all(test, loom))]
    pub(super) fn created(&self) -> u64 {
        lock(&self.0).next_id
    }
}
