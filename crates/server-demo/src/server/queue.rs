//! The per-session send queue, swappable (`--queue mpsc|mutex`): netbuf's
//! lock-free `SendQueue`, or the `Mutex<VecDeque>` a user would write first,
//! with the same byte bound and the same empty -> non-empty notify.

use std::collections::VecDeque;
use std::sync::Mutex;

use netbuf::{Notify, OutFrame, PushError, QueueItem, SendQueue};

use crate::config::QueueMode;
use crate::sync::LockExt;

/// Bytes counted per queued entry on top of the frame (both variants).
pub const ENTRY_OVERHEAD: usize = 64;

/// Why a push was refused; the frame comes back.
#[derive(Debug)]
pub enum Refused {
    /// Over the byte bound.
    Full(OutFrame),
    /// The session is closed.
    Closed(OutFrame),
}

/// Why [`SessionQueue::push_all`] queued nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No room for every frame.
    Full,
    /// The session is closed.
    Closed,
}

/// A session's outgoing frames.
// The lock-free queue is cache-padded (large) and lives inside the
// session's `Arc`; boxing it would add a pointer chase to every push.
#[allow(clippy::large_enum_variant)]
pub enum SessionQueue {
    /// Lock-free MPSC.
    Mpsc(SendQueue<OutFrame>),
    /// Mutex + VecDeque.
    Mutex(MutexQueue),
}

impl SessionQueue {
    /// A queue of `mode` bounded at `limit` bytes that calls `notify` on
    /// every empty -> non-empty transition.
    pub fn new(mode: QueueMode, limit: usize, notify: impl Notify + 'static) -> Self {
        match mode {
            QueueMode::Mpsc => SessionQueue::Mpsc(
                SendQueue::builder()
                    .limit(limit)
                    .entry_overhead(ENTRY_OVERHEAD)
                    // The bound is on memory: a 1 KiB message in a 4 KiB
                    // block counts 4 KiB.
                    .count_pinned(true)
                    .notify(notify)
                    .build(),
            ),
            QueueMode::Mutex => SessionQueue::Mutex(MutexQueue {
                inner: Mutex::new(MutexInner {
                    items: VecDeque::new(),
                    bytes: 0,
                    idle: true,
                    closed: false,
                }),
                limit,
                notify: Box::new(notify),
            }),
        }
    }

    /// Queues a frame, or gives it back.
    pub fn try_push(&self, f: OutFrame) -> Result<(), Refused> {
        match self {
            SessionQueue::Mpsc(q) => q.try_push(f).map_err(|e| match e {
                PushError::Closed(f) => Refused::Closed(f),
                e => Refused::Full(e.into_inner()),
            }),
            SessionQueue::Mutex(q) => q.try_push(f),
        }
    }

    /// The byte bound (entry overhead included).
    pub fn limit(&self) -> usize {
        match self {
            SessionQueue::Mpsc(q) => q.limit(),
            SessionQueue::Mutex(q) => q.limit,
        }
    }

    /// Queues every frame of `frames` (draining it), or none: a whole
    /// multi-part message. All or nothing holds when the caller is the
    /// queue's only producer, or all its producers hold one lock: then
    /// room checked here cannot shrink before the frames are in. On
    /// refusal the frames stay in `frames`.
    pub fn push_all(&self, frames: &mut Vec<OutFrame>) -> Result<(), Refusal> {
        let cost: usize = frames
            .iter()
            .map(|f| f.pinned_bytes() + ENTRY_OVERHEAD)
            .sum();
        if self.is_closed() {
            return Err(Refusal::Closed);
        }
        if self.limit().saturating_sub(self.queued_bytes()) < cost {
            return Err(Refusal::Full);
        }
        match self {
            SessionQueue::Mpsc(q) => {
                if q.push_batch(frames).is_err() {
                    // Only a close can refuse here: the rest goes too.
                    frames.clear();
                }
            }
            SessionQueue::Mutex(q) => {
                for f in frames.drain(..) {
                    // Only a close can refuse here: the rest goes too.
                    let _ = q.try_push(f);
                }
            }
        }
        Ok(())
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        match self {
            SessionQueue::Mpsc(q) => q.is_closed(),
            SessionQueue::Mutex(q) => q.lock().closed,
        }
    }

    /// Hands up to `max` frames to `f`; `true` when the queue was found
    /// empty and the next push will notify.
    pub fn drain_each(&self, max: usize, f: impl FnMut(OutFrame)) -> bool {
        match self {
            SessionQueue::Mpsc(q) => q.drain_each(max, f).idle,
            SessionQueue::Mutex(q) => q.drain_each(max, f),
        }
    }

    /// Bytes queued (entry overhead included).
    pub fn queued_bytes(&self) -> usize {
        match self {
            SessionQueue::Mpsc(q) => q.queued_bytes(),
            SessionQueue::Mutex(q) => q.lock().bytes,
        }
    }

    /// Gives back the queue's slot memory if it is empty (the consumer, the
    /// session's IO thread, calls it when the session parks); returns the
    /// bytes released.
    pub fn release_idle_memory(&self) -> usize {
        match self {
            SessionQueue::Mpsc(q) => q.release_idle_blocks(),
            SessionQueue::Mutex(q) => {
                let mut inner = q.lock();
                if !inner.items.is_empty() {
                    return 0;
                }
                let n = inner.items.capacity() * std::mem::size_of::<OutFrame>();
                inner.items = VecDeque::new();
                n
            }
        }
    }

    /// Refuses further pushes and frees what is queued.
    pub fn close(&self) {
        match self {
            SessionQueue::Mpsc(q) => {
                q.close();
            }
            SessionQueue::Mutex(q) => {
                let drained = {
                    let mut g = q.lock();
                    g.closed = true;
                    g.bytes = 0;
                    std::mem::take(&mut g.items)
                };
                drop(drained);
            }
        }
    }
}

/// The `Mutex<VecDeque>` variant.
pub struct MutexQueue {
    inner: Mutex<MutexInner>,
    limit: usize,
    notify: Box<dyn Notify>,
}

struct MutexInner {
    items: VecDeque<OutFrame>,
    bytes: usize,
    idle: bool,
    closed: bool,
}

impl MutexQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, MutexInner> {
        self.inner.locked()
    }

    fn try_push(&self, f: OutFrame) -> Result<(), Refused> {
        let cost = f.pinned_bytes() + ENTRY_OVERHEAD;
        let wake = {
            let mut g = self.lock();
            if g.closed {
                return Err(Refused::Closed(f));
            }
            if g.bytes + cost > self.limit {
                return Err(Refused::Full(f));
            }
            g.bytes += cost;
            g.items.push_back(f);
            std::mem::replace(&mut g.idle, false)
        };
        if wake {
            self.notify.notify();
        }
        Ok(())
    }

    /// As a user would write it: the consumer holds the lock while it
    /// hands the frames on.
    fn drain_each(&self, max: usize, mut f: impl FnMut(OutFrame)) -> bool {
        let mut g = self.lock();
        for _ in 0..max {
            let Some(item) = g.items.pop_front() else {
                break;
            };
            g.bytes -= item.pinned_bytes() + ENTRY_OVERHEAD;
            f(item);
        }
        g.idle = g.items.is_empty();
        g.idle
    }
}

impl std::fmt::Debug for SessionQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            SessionQueue::Mpsc(_) => "mpsc",
            SessionQueue::Mutex(_) => "mutex",
        };
        f.debug_struct("SessionQueue")
            .field("kind", &kind)
            .field("queued_bytes", &self.queued_bytes())
            .finish()
    }
}

impl std::fmt::Debug for MutexQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MutexQueue")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}
