//! What a pool reports: [`PoolStats`], [`ClassStats`], [`LeakReport`].

use core::fmt;

/// Counters of a pool. Per-thread figures are read without stopping the
/// threads, so a snapshot taken while they run is approximate; once they
/// are quiet it is exact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Messages alive (pooled + heap).
    pub live_messages: u64,
    /// Capacity bytes of the live messages.
    pub live_bytes: u64,
    /// Live messages in pooled blocks.
    pub pooled_live: u64,
    /// Live messages on the fallback allocator.
    pub heap_live: u64,
    /// Capacity bytes of live heap messages.
    pub heap_live_bytes: u64,
    /// Pooled allocations ever.
    pub pooled_allocs: u64,
    /// Heap allocations ever.
    pub heap_allocs: u64,
    /// Pooled allocations served from a cache (thread or depot).
    pub hits: u64,
    /// Pooled allocations that needed a new block from the allocator.
    pub misses: u64,
    /// Bytes of free blocks held by caches and the depot.
    pub bytes_cached: u64,
    /// Of [`bytes_cached`](Self::bytes_cached), the shared depot's.
    pub bytes_in_depot: u64,
    /// Of [`bytes_cached`](Self::bytes_cached), the thread caches' (given
    /// back by [`MessagePool::trim`](crate::MessagePool::trim) for the
    /// calling thread, by [`release_thread_caches`](crate::release_thread_caches)
    /// on each thread that calls it).
    pub bytes_in_thread_caches: u64,
    /// Bytes of every pooled block taken from the allocator and not given
    /// back (in use + cached), headers included: the pool's share of the
    /// heap, heap messages aside.
    pub bytes_held: u64,
    /// Threads currently holding a cache of this pool.
    pub threads: usize,
    /// Per size class.
    pub classes: Vec<ClassStats>,
}

/// Counters of one size class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Payload bytes per block.
    pub size: usize,
    /// Live messages.
    pub live: u64,
    /// Allocations ever.
    pub allocs: u64,
    /// Served from a cache.
    pub hits: u64,
    /// New blocks from the allocator.
    pub misses: u64,
    /// Blocks taken from the allocator and not given back (live + cached).
    pub blocks_held: u64,
    /// Free blocks in caches and the depot.
    pub blocks_cached: u64,
    /// Of those, in the shared depot.
    pub blocks_in_depot: u64,
    /// Of those, in thread caches.
    pub blocks_in_thread_caches: u64,
}

/// Messages still alive when asked (see [`MessagePool::leak_report`](crate::MessagePool::leak_report)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeakReport {
    /// Live pooled messages.
    pub live_pooled: u64,
    /// Live heap messages.
    pub live_heap: u64,
    /// Their capacity bytes.
    pub live_bytes: u64,
    /// Allocation sites of sampled live messages (`leak-trace` feature),
    /// as `(count, backtrace)`, most frequent first.
    pub sampled_sites: Vec<(u64, String)>,
}

impl LeakReport {
    /// No message is alive.
    pub fn is_clean(&self) -> bool {
        self.live_pooled == 0 && self.live_heap == 0
    }
}

impl fmt::Display for LeakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} live messages ({} pooled, {} heap, {} bytes)",
            self.live_pooled + self.live_heap,
            self.live_pooled,
            self.live_heap,
            self.live_bytes
        )?;
        for (n, site) in &self.sampled_sites {
            write!(f, "\n  {n} allocated at:\n{site}")?;
        }
        Ok(())
    }
}

impl fmt::Display for PoolStats {
    /// One line: bytes in use (pooled, heap), cached (threads, depot), held.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} live messages ({} B: {} pooled, {} heap {} B); pool blocks held {} B, \
             cached {} B ({} B in thread caches, {} B in the depot); {} threads",
            self.live_messages,
            self.live_bytes,
            self.pooled_live,
            self.heap_live,
            self.heap_live_bytes,
            self.bytes_held,
            self.bytes_cached,
            self.bytes_in_thread_caches,
            self.bytes_in_depot,
            self.threads
        )
    }
}
