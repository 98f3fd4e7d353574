//! [`Notify`]: how a [`SendQueue`](crate::SendQueue) wakes its consumer.
//!
//! The queue calls [`Notify::notify`] only when its consumer may be asleep:
//! on the first push after a drain that found the queue empty (the
//! empty -> non-empty transition), never once per message. Plug in mio's
//! `Waker`, an eventfd, a condvar ([`CondvarNotify`]) or a test double
//! ([`FnNotify`]).

use crate::sync::Mutex;

// `Condvar` is not part of the crate-wide `sync` facade (nothing else needs
// it); it maps to loom the same way, so `CondvarNotify` is model-checked.
#[cfg(loom)]
use loom::sync::Condvar;
#[cfg(not(loom))]
use std::sync::Condvar;

/// Wakes the consumer of a [`SendQueue`](crate::SendQueue).
///
/// Called from producer threads, without any lock of the queue held, at
/// most once per empty -> non-empty transition. Implementations must be
/// cheap and must not push to the same queue.
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
}

impl<N: Notify + ?Sized> Notify for std::sync::Arc<N> {
    fn notify(&self) {
        (**self).notify()
    }
}

impl<N: Notify + ?Sized> Notify for Box<N> {
    fn notify(&self) {
        (**self).notify()
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

    /// Consumes a pending notification without blocking; returns whether
    /// there was one.
    pub fn try_take(&self) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        core::mem::replace(&mut *pending, false)
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
