//! [`Notify`]: how a [`SendQueue`](crate::SendQueue) wakes its consumer.
//!
//! The queue calls [`Notify::notify`] only when its consumer may be asleep:
//! on the first push after a drain that found the queue empty (the
//! empty -> non-empty transition), never once per message, and on
//! `close` / `shutdown`. Plug in mio's `Waker`, an eventfd, a condvar
//! ([`CondvarNotify`]), an async task's waker ([`WakerNotify`]) or a test
//! double ([`FnNotify`]).

use core::fmt;
use core::task::Waker;

use crate::sync::{AtomicUsize, Mutex, Ordering, UnsafeCell};

// `Condvar` is not part of the crate-wide `sync` facade (nothing else needs
// it); it maps to loom the same way, so `CondvarNotify` is model-checked.
#[cfg(loom)]
use loom::sync::Condvar;
#[cfg(not(loom))]
use std::sync::Condvar;

/// Wakes the consumer of a [`SendQueue`](crate::SendQueue).
///
/// Called from producer threads, without any lock of the queue held, at
/// most once per empty -> non-empty transition, and by
/// [`close`](crate::SendQueue::close) / [`shutdown`](crate::SendQueue::shutdown)
/// (unconditionally, so a sleeping consumer wakes up and ends).
/// Implementations must be cheap and must not push to the same queue.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use netbuf::{FnNotify, SendQueue};
///
/// let wakes = Arc::new(AtomicUsize::new(0));
/// let w = wakes.clone();
/// let q: SendQueue<Vec<u8>> = SendQueue::builder()
///     .notify(FnNotify(move || { w.fetch_add(1, Ordering::Relaxed); }))
///     .build();
/// q.try_push(b"a".to_vec()).unwrap();
/// q.try_push(b"b".to_vec()).unwrap(); // not a transition: no second wake
/// assert_eq!(wakes.load(Ordering::Relaxed), 1);
/// ```
pub trait Notify: Send + Sync {
    /// Wakes the consumer (or marks it runnable).
    fn notify(&self);

    /// Registers an async consumer's waker, to be woken by the next
    /// [`notify`](Self::notify). Returns whether this notifier can wake
    /// tasks: [`WakerNotify`] can; the default cannot (returns `false`).
    /// [`SendQueue::poll_drain_each`](crate::SendQueue::poll_drain_each)
    /// relies on it.
    fn register_waker(&self, waker: &Waker) -> bool {
        let _ = waker;
        false
    }
}

impl<N: Notify + ?Sized> Notify for std::sync::Arc<N> {
    fn notify(&self) {
        (**self).notify()
    }

    fn register_waker(&self, waker: &Waker) -> bool {
        (**self).register_waker(waker)
    }
}

impl<N: Notify + ?Sized> Notify for Box<N> {
    fn notify(&self) {
        (**self).notify()
    }

    fn register_waker(&self, waker: &Waker) -> bool {
        (**self).register_waker(waker)
    }
}

/// A closure as a [`Notify`] (e.g. `FnNotify(move || waker.wake().unwrap())`
/// for a mio `Waker`).
#[derive(Debug, Clone, Copy)]
pub struct FnNotify<F>(pub F);

impl<F: Fn() + Send + Sync> Notify for FnNotify<F> {
    fn notify(&self) {
        (self.0)()
    }
}

/// A real, blocking [`Notify`]: a flag under a mutex plus a condition
/// variable. The consumer thread calls [`wait`](Self::wait) when a drain
/// reported the queue idle; a notification that arrives before the wait is
/// remembered, so none is lost.
///
/// ```
/// use std::sync::Arc;
/// use netbuf::{CondvarNotify, SendQueue};
///
/// let wake = Arc::new(CondvarNotify::new());
/// let q = Arc::new(SendQueue::builder().notify(wake.clone()).build::<Vec<u8>>());
/// let producer = {
///     let q = q.clone();
///     std::thread::spawn(move || for i in 0..100u8 { q.try_push(vec![i]).unwrap() })
/// };
/// let mut got = Vec::new();
/// while got.len() < 100 {
///     let d = q.drain_into(&mut got, usize::MAX);
///     if d.idle && got.len() < 100 {
///         wake.wait(); // sleeps until the next empty -> non-empty push
///     }
/// }
/// producer.join().unwrap();
/// assert!(got.iter().enumerate().all(|(i, m)| m[0] == i as u8));
/// ```
#[derive(Debug)]
pub struct CondvarNotify {
    pending: Mutex<bool>,
    cv: Condvar,
}

impl Default for CondvarNotify {
    fn default() -> Self {
        Self::new()
    }
}

impl CondvarNotify {
    /// A notifier with no pending notification.
    pub fn new() -> Self {
        CondvarNotify {
            pending: Mutex::new(false),
            cv: Condvar::new(),
        }
    }

    /// Blocks until notified, then consumes the notification. Returns at
    /// once if a notification is already pending.
    pub fn wait(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        while !*pending {
            pending = self.cv.wait(pending).unwrap_or_else(|p| p.into_inner());
        }
        *pending = false;
    }

    /// Like [`wait`](Self::wait) with a time limit; returns whether a
    /// notification was consumed.
    #[cfg(not(loom))]
    pub fn wait_timeout(&self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        while !*pending {
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            pending = match self.cv.wait_timeout(pending, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        *pending = false;
        true
    }
}

impl Notify for CondvarNotify {
    fn notify(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        *pending = true;
        drop(pending);
        self.cv.notify_one();
    }
}

/// No waker is being registered or taken.
const WAITING: usize = 0;
/// [`WakerNotify::register`] is updating the waker (holds the cell).
const REGISTERING: usize = 0b01;
/// A notification is taking the waker (holds the cell, unless
/// `REGISTERING` was set first: then the registration wakes its own waker).
const WAKING: usize = 0b10;

/// The [`Notify`] of an async consumer: an `AtomicWaker` (the algorithm of
/// `futures`' and tokio's, on netbuf's `sync` facade, so loom checks it).
///
/// The consumer task registers its waker, **then** drains; if the drain
/// reports [`Drained::idle`](crate::Drained::idle) without taking anything
/// (and not [`closed`](crate::Drained::closed)), it returns `Pending`. The
/// next push (an empty -> non-empty transition), `shutdown` or `close`
/// wakes it. [`SendQueue::poll_drain_each`](crate::SendQueue::poll_drain_each)
/// does exactly this. A notification that finds no waker registered is not
/// remembered (as with `AtomicWaker`): registering before draining is what
/// makes it lost-wakeup-free, because the drain either takes the message
/// that would have notified, or arms the wakeup after the registration.
///
/// One consumer task: concurrent `register` calls from two tasks race, and
/// one of them may not be registered.
///
/// ```
/// use std::future::poll_fn;
/// use std::sync::Arc;
/// use std::task::Poll;
/// use netbuf::{SendQueue, WakerNotify};
///
/// let wake = Arc::new(WakerNotify::new());
/// let q = Arc::new(SendQueue::builder().notify(wake.clone()).build::<Vec<u8>>());
/// let producer = {
///     let q = q.clone();
///     std::thread::spawn(move || {
///         for i in 0..100u8 {
///             q.try_push(vec![i]).unwrap();
///         }
///     })
/// };
/// let mut got = Vec::new();
/// futures::executor::block_on(poll_fn(|cx| {
///     // What `q.poll_drain_into(cx, &mut got, max)` does:
///     loop {
///         wake.register(cx.waker()); // register, then drain
///         let d = q.drain_into(&mut got, usize::MAX);
///         if got.len() == 100 {
///             return Poll::Ready(());
///         }
///         if d.idle && d.items == 0 {
///             return Poll::Pending; // armed: the next push wakes this task
///         }
///     }
/// }));
/// producer.join().unwrap();
/// assert!(got.iter().enumerate().all(|(i, m)| m[0] == i as u8));
/// ```
pub struct WakerNotify {
    state: AtomicUsize,
    waker: UnsafeCell<Option<Waker>>,
}

// SAFETY: the waker cell is only accessed by the thread that moved `state`
// from `WAITING` to `REGISTERING` (register) or to `WAKING` (notify), which
// excludes every other access until it moves it back (acquire/release on
// `state`); `Waker` is `Send + Sync`.
unsafe impl Send for WakerNotify {}
// SAFETY: as above.
unsafe impl Sync for WakerNotify {}

impl Default for WakerNotify {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for WakerNotify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WakerNotify")
            .field("state", &self.state.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl WakerNotify {
    /// A notifier with no task registered.
    pub fn new() -> Self {
        WakerNotify {
            state: AtomicUsize::new(WAITING),
            waker: UnsafeCell::new(None),
        }
    }

    /// Registers `waker` to be woken by the next notification (replacing
    /// the one registered before, unless it wakes the same task). If a
    /// notification is being delivered concurrently, `waker` is woken at
    /// once.
    pub fn register(&self, waker: &Waker) {
        match self
            .state
            .compare_exchange(WAITING, REGISTERING, Ordering::Acquire, Ordering::Acquire)
            .unwrap_or_else(|s| s)
        {
            WAITING => {
                // SAFETY: `REGISTERING` gives us the cell (see the `Sync`
                // impl); nothing else reads or writes it until we leave it.
                self.waker.with_mut(|w| unsafe {
                    match &*w {
                        Some(old) if old.will_wake(waker) => {}
                        _ => *w = Some(waker.clone()),
                    }
                });
                // Release the cell (and our waker) to the next notifier.
                if let Err(actual) = self.state.compare_exchange(
                    REGISTERING,
                    WAITING,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    // A notification came while we held the cell: it could
                    // not take the waker, so we wake it ourselves.
                    debug_assert_eq!(actual, REGISTERING | WAKING);
                    // SAFETY: still `REGISTERING`: the cell is ours.
                    let w = self.waker.with_mut(|w| unsafe { (*w).take() });
                    // Back to `WAITING`, acquiring the notifications'
                    // `WAKING` and releasing the cell.
                    self.state.swap(WAITING, Ordering::AcqRel);
                    if let Some(w) = w {
                        w.wake();
                    }
                }
            }
            WAKING => {
                // A notification is waking the previous waker right now: it
                // is meant for this task too. (A task that polls again at
                // once spins until the notifier is done; under loom, let
                // the model run it.)
                waker.wake_by_ref();
                #[cfg(loom)]
                loom::thread::yield_now();
            }
            state => {
                // Another `register` holds the cell: two consumer tasks.
                debug_assert!(state == REGISTERING || state == REGISTERING | WAKING);
            }
        }
    }

    /// Takes the registered waker, if no registration is in progress (the
    /// registration then wakes its waker itself).
    fn take(&self) -> Option<Waker> {
        match self.state.fetch_or(WAKING, Ordering::AcqRel) {
            WAITING => {
                // SAFETY: `WAKING` from `WAITING` gives us the cell.
                let w = self.waker.with_mut(|w| unsafe { (*w).take() });
                self.state.fetch_and(!WAKING, Ordering::Release);
                w
            }
            _ => None,
        }
    }
}

impl Notify for WakerNotify {
    fn notify(&self) {
        if let Some(w) = self.take() {
            w.wake();
        }
    }

    fn register_waker(&self, waker: &Waker) -> bool {
        self.register(waker);
        true
    }
}
