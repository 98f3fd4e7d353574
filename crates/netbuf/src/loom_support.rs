//! Helpers for loom models of netbuf's async parts, shared by the models
//! beside the code and those in the workspace's `loom-tests` crate. Only
//! under `--cfg loom`; not a public API.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc as StdArc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::task::{Context, Poll, Wake, Waker};

use loom::alloc::Track;

use crate::QueueItem;

/// A one-byte queue item for the models: (producer, sequence number),
/// leak-tracked by loom, counting its drops in `drops`.
#[derive(Debug)]
pub struct TrackedItem {
    /// Which producer pushed it.
    pub producer: u8,
    /// Its place in that producer's order.
    pub seq: u8,
    drops: StdArc<AtomicUsize>,
    _leak_check: Track<()>,
}

impl TrackedItem {
    /// An item whose drop increments `drops`.
    pub fn new(producer: u8, seq: u8, drops: &StdArc<AtomicUsize>) -> TrackedItem {
        TrackedItem {
            producer,
            seq,
            drops: drops.clone(),
            _leak_check: Track::new(()),
        }
    }
}

impl QueueItem for TrackedItem {
    fn byte_size(&self) -> usize {
        1
    }
}

impl Drop for TrackedItem {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Relaxed);
    }
}

/// The sequence numbers of `got`, in order.
pub fn seqs(got: &[TrackedItem]) -> Vec<u8> {
    got.iter().map(|i| i.seq).collect()
}

/// Drives `f` to completion without an executor: the waker notifies a
/// loom `Notify` (which remembers a notification that comes before the
/// wait), and the thread waits on it while `f` is pending; a wakeup that
/// never comes is a deadlock for loom. (`loom::future::block_on` needs
/// loom's `futures` feature, which the workspace does not enable.)
pub fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(loom::sync::Notify);
    impl Wake for Unpark {
        fn wake(self: StdArc<Self>) {
            self.0.notify();
        }
        fn wake_by_ref(self: &StdArc<Self>) {
            self.0.notify();
        }
    }
    let unpark = StdArc::new(Unpark(loom::sync::Notify::new()));
    let waker = Waker::from(unpark.clone());
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        unpark.0.wait();
    }
}
