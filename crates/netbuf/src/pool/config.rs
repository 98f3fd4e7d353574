//! [`PoolConfig`] and [`PoolBuilder`]: size classes, cache bounds, limits.

use allocator_api2::alloc::{Allocator, Global};

use super::*;

/// How a [`MessagePool`] routes and caches. Build with [`MessagePool::builder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Payload capacity of the main block size class (default 4096).
    pub block_size: usize,
    /// Further size classes (payload bytes), e.g. `[256, 1024]`.
    pub extra_classes: Vec<usize>,
    /// Whether to pool at all: `false` sends every message to the fallback
    /// allocator (the demo's `--pool heap`).
    pub pooled: bool,
    /// Largest message the pool hands out (default 16 MiB).
    pub max_message: usize,
    /// Bytes each thread may cache per size class (default 256 KiB, held as
    /// two chains of half that).
    pub thread_cache_bytes: usize,
    /// Bytes the shared depot may hold per size class (default 16 MiB).
    pub total_cache_bytes: usize,
    /// Log a warning through `tracing` when the last handle is dropped while
    /// messages are still alive (default true).
    pub report_leaks_on_drop: bool,
    /// With the `leak-trace` feature: record the allocation site of one in
    /// every `trace_sample` messages (0 = off, the default).
    pub trace_sample: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            block_size: 4096,
            extra_classes: Vec::new(),
            pooled: true,
            max_message: 16 << 20,
            thread_cache_bytes: 256 << 10,
            total_cache_bytes: 16 << 20,
            report_leaks_on_drop: true,
            trace_sample: 0,
        }
    }
}

/// Builder for a [`MessagePool`].
///
/// ```
/// let pool = netbuf::MessagePool::builder()
///     .block_size(4096)
///     .extra_class(512)
///     .max_message(2 << 20)
///     .thread_cache_bytes(64 << 10)
///     .build();
/// assert_eq!(pool.class_sizes(), vec![512, 4096]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct PoolBuilder {
    pub(crate) config: PoolConfig,
}

impl PoolBuilder {
    /// Sets the main block size (payload bytes; at least 16).
    pub fn block_size(mut self, bytes: usize) -> Self {
        self.config.block_size = bytes;
        self
    }
    /// Adds a size class (payload bytes; at least 16).
    pub fn extra_class(mut self, bytes: usize) -> Self {
        self.config.extra_classes.push(bytes);
        self
    }
    /// `false`: every message comes from the fallback allocator.
    pub fn pooled(mut self, pooled: bool) -> Self {
        self.config.pooled = pooled;
        self
    }
    /// Largest message the pool hands out.
    pub fn max_message(mut self, bytes: usize) -> Self {
        self.config.max_message = bytes;
        self
    }
    /// Per-thread cache cap per size class, in bytes.
    pub fn thread_cache_bytes(mut self, bytes: usize) -> Self {
        self.config.thread_cache_bytes = bytes;
        self
    }
    /// Shared depot cap per size class, in bytes.
    pub fn total_cache_bytes(mut self, bytes: usize) -> Self {
        self.config.total_cache_bytes = bytes;
        self
    }
    /// Whether dropping the last handle with live messages logs a warning.
    pub fn report_leaks_on_drop(mut self, on: bool) -> Self {
        self.config.report_leaks_on_drop = on;
        self
    }
    /// Records the allocation site of one in `n` messages (needs the
    /// `leak-trace` feature; 0 = off).
    pub fn trace_sample(mut self, n: u64) -> Self {
        self.config.trace_sample = n;
        self
    }
    /// Builds a pool whose fallback allocator is the global allocator.
    pub fn build(self) -> MessagePool {
        MessagePool::with_config_in(self.config, Global)
    }
    /// Builds a pool whose blocks and heap messages come from `alloc`.
    pub fn build_in<A: Allocator + Send + Sync + 'static>(self, alloc: A) -> MessagePool<A> {
        MessagePool::with_config_in(self.config, alloc)
    }
}
