//! Sampled allocation sites for the leak report (`leak-trace` feature).
//!
//! One in `trace_sample` allocations captures a backtrace and marks its
//! block with `FLAG_TRACED`; the free path removes marked blocks only, so
//! unmarked messages pay nothing but the sampling counter.

use core::ptr::NonNull;
use std::backtrace::Backtrace;
use std::collections::HashMap;

use crate::pool::header::{FLAG_TRACED, Header};
use crate::sync::{AtomicU64, Mutex, Ordering, lock};

pub(crate) struct Tracer {
    sample: u64,
    counter: AtomicU64,
    live: Mutex<HashMap<usize, Backtrace>>,
}

impl Tracer {
    pub(crate) fn new(sample: u64) -> Self {
        Tracer {
            sample,
            counter: AtomicU64::new(0),
            live: Mutex::new(HashMap::new()),
        }
    }

    /// Records the caller's backtrace for one in `sample` blocks.
    #[inline]
    pub(crate) fn maybe_record(&self, hdr: NonNull<Header>) {
        if self.sample == 0 || self.counter.fetch_add(1, Ordering::Relaxed) % self.sample != 0 {
            return;
        }
        let bt = Backtrace::force_capture();
        lock(&self.live).insert(hdr.as_ptr() as usize, bt);
        // SAFETY: the block was just handed out and is owned by the caller.
        unsafe { (*hdr.as_ptr()).flags |= FLAG_TRACED };
    }

    /// Forgets a traced block that is being freed.
    pub(crate) fn forget(&self, hdr: NonNull<Header>) {
        lock(&self.live).remove(&(hdr.as_ptr() as usize));
    }

    /// Live sampled sites, grouped, most frequent first.
    pub(crate) fn sites(&self) -> Vec<(u64, String)> {
        let mut by_site: HashMap<String, u64> = HashMap::new();
        for bt in lock(&self.live).values() {
            *by_site.entry(bt.to_string()).or_default() += 1;
        }
        let mut v: Vec<(u64, String)> = by_site.into_iter().map(|(s, n)| (n, s)).collect();
        v.sort_by(|a, b| b.0.cmp(&a.0));
        v
    }
}
