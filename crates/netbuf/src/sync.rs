//! The one place netbuf gets its atomics, locks, `Arc`, `UnsafeCell` and
//! thread-locals from.
//!
//! Under `--cfg loom` everything maps to [`loom`](https://docs.rs/loom), so
//! the loom models in `loom-tests/` explore every interleaving of the real
//! code; otherwise it maps to `std` at no cost. This mirrors `tokio`'s
//! `src/loom` and `sharded-slab`'s `src/sync.rs`. Nothing else in the crate
//! may name `std::sync::atomic`, `std::cell::UnsafeCell` or `thread_local!`
//! directly.

#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::{
    cell::UnsafeCell,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering, fence},
    },
    thread_local,
};

#[cfg(not(loom))]
pub(crate) use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering, fence},
    },
    thread_local,
};

/// `std`'s `UnsafeCell` with loom's closure-based access API, so the same
/// code compiles both ways and loom can check every access.
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
#[allow(dead_code)]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(v: T) -> Self {
        UnsafeCell(std::cell::UnsafeCell::new(v))
    }

    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// Locks a mutex, ignoring poisoning: every critical section in netbuf
/// leaves its data consistent before any call that could panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> impl std::ops::DerefMut<Target = T> + '_ {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// A counter written by one thread only and read by any: the owner updates
/// it with a relaxed load + store (a plain add, no locked instruction),
/// readers get a value that was current at some recent point.
#[derive(Debug, Default)]
pub(crate) struct OwnedCounter(AtomicU64);

impl OwnedCounter {
    pub(crate) fn new() -> Self {
        OwnedCounter(AtomicU64::new(0))
    }

    /// Adds `n`. Only the owning thread may call this.
    #[inline(always)]
    pub(crate) fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    #[inline(always)]
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
