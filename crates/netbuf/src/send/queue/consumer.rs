//! The lock that serialises the consumer side (`drain_*`, `close`) around
//! the consumer's [`Cursor`]: `std`'s mutex, or under loom a spin lock.

#[cfg(loom)]
use core::ops::{Deref, DerefMut};

use super::block::Cursor;
#[cfg(loom)]
use crate::sync::{AtomicBool, Ordering, UnsafeCell};
#[cfg(not(loom))]
use crate::sync::{Mutex, lock};

/// The lock that serialises the consumer side (`drain_*`, `close`).
///
/// `std`'s mutex, whose poisoning is ignored: a drain moves the consumer
/// state past an item before any call that can panic, so a panicking drain
/// callback leaves it consistent and the queue keeps working.
#[cfg(not(loom))]
pub(super) struct ConsumerLock<T>(Mutex<Cursor<T>>);

#[cfg(not(loom))]
impl<T> ConsumerLock<T> {
    pub(super) fn new(c: Cursor<T>) -> Self {
        ConsumerLock(Mutex::new(c))
    }

    #[inline]
    pub(super) fn lock(&self) -> impl core::ops::DerefMut<Target = Cursor<T>> + '_ {
        lock(&self.0)
    }
}

/// Under loom: a spin lock with the mutex's acquire/release semantics and,
/// like the `std` version, no poisoning. `loom::sync::Mutex` cannot stand
/// in: its `lock` panics once a panic has unwound through one of its
/// guards, so no model could drain again (or drop the queue) after a
/// panicking drain callback, which the real queue supports (issue 12).
#[cfg(loom)]
pub(super) struct ConsumerLock<T> {
    locked: AtomicBool,
    consumer: UnsafeCell<Cursor<T>>,
}

#[cfg(loom)]
impl<T> ConsumerLock<T> {
    pub(super) fn new(c: Cursor<T>) -> Self {
        ConsumerLock {
            locked: AtomicBool::new(false),
            consumer: UnsafeCell::new(c),
        }
    }

    pub(super) fn lock(&self) -> ConsumerGuard<'_, T> {
        while self
            .locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            loom::thread::yield_now();
        }
        ConsumerGuard {
            lock: self,
            // Loom checks every access made through this pointer against
            // the other threads' (a broken lock would be reported).
            consumer: Some(self.consumer.get_mut()),
        }
    }
}

#[cfg(loom)]
pub(super) struct ConsumerGuard<'a, T> {
    lock: &'a ConsumerLock<T>,
    consumer: Option<loom::cell::MutPtr<Cursor<T>>>,
}

#[cfg(loom)]
impl<T> Deref for ConsumerGuard<'_, T> {
    type Target = Cursor<T>;
    fn deref(&self) -> &Cursor<T> {
        let Some(p) = &self.consumer else {
            unreachable!()
        };
        // SAFETY: the lock is held, so this guard has exclusive access.
        unsafe { p.deref() }
    }
}

#[cfg(loom)]
impl<T> DerefMut for ConsumerGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut Cursor<T> {
        let Some(p) = &self.consumer else {
            unreachable!()
        };
        // SAFETY: the lock is held, so this guard has exclusive access, and
        // `&mut self` makes the reference unique.
        unsafe { p.deref() }
    }
}

#[cfg(loom)]
impl<T> Drop for ConsumerGuard<'_, T> {
    fn drop(&mut self) {
        // End the tracked access before unlocking.
        self.consumer = None;
        self.lock.locked.store(false, Ordering::Release);
    }
}
