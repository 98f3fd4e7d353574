//! The hybrid message pool: size-routed pooled blocks with per-thread
//! caches, a heap fallback, and one free path.
//!
//! # Routing
//!
//! A request for `n` bytes goes to the smallest size class that holds `n`
//! (by default one class, the 4 KiB block). Larger requests, up to
//! [`PoolConfig::max_message`] (16 MiB by default), are allocated from the
//! pool's fallback [`Allocator`] (the global allocator by default); beyond
//! that, [`PoolError::TooLarge`]. Tiny, short-lived objects that are not
//! messages (closures, small control records) do not belong here at all:
//! the `pool` benchmark (100,000 closures) measured a 4 KiB-block pool for
//! them at 5.5x the cost of `Box` on the system allocator, 9.5x on
//! jemalloc and 14.8x on mimalloc (cache pollution: a few bytes of data
//! spread over a page; the field report saw 3.7x).
//!
//! # Where freed blocks go
//!
//! Each thread keeps, per pool and size class, two chains of at most
//! `batch` free blocks (`batch = thread_cache_bytes / (2 * class size)`).
//! Allocation pops from the thread's chain and free pushes to it: no atomic
//! instruction, no lock. When a thread's chains are full, one whole chain
//! moves to the pool's *depot* with one compare-and-swap; when they are
//! empty, the thread takes a whole chain from the depot with one swap. So
//! a logic thread that allocates and an IO thread that frees exchange
//! blocks a batch at a time. The depot has a fixed number of slots
//! (`total_cache_bytes / (batch * class size)`): when it is full, the chain
//! goes back to the allocator instead. Nothing grows without bound.
//!
//! # Lifetime
//!
//! The pool's shared state is reference counted by its handles, by each
//! thread cache that holds its blocks, and by every block it handed out, so
//! messages may outlive the pool and the pool may outlive its messages.
//! Dropping the last [`MessagePool`] handle returns the depot's blocks to the
//! allocator; blocks cached by other threads go back when those threads next
//! touch the pool or exit.

pub(crate) mod cache;
mod config;
pub(crate) mod header;
#[cfg(feature = "leak-trace")]
mod leak;
mod state;
mod stats;

#[cfg(all(test, loom))]
mod loom;

pub use self::cache::{release_thread_caches, thread_cached_pools};
pub use self::config::{PoolBuilder, PoolConfig};
pub(crate) use self::state::*;
pub use self::stats::{ClassStats, LeakReport, PoolStats};

use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;

use allocator_api2::alloc::{Allocator, Global};

use self::header::{Header, ORIGIN_HEAP};
use crate::message::Message;
use crate::sync::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Mutex, Ordering, lock};

/// Why the pool could not hand out a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The request is larger than [`PoolConfig::max_message`].
    #[error("message of {requested} bytes exceeds the pool's maximum of {max} bytes")]
    TooLarge {
        /// Bytes requested.
        requested: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The underlying allocator returned an error.
    #[error("the allocator could not provide {0} bytes")]
    AllocFailed(usize),
}

/// A pool of messages. Cheap to clone (clones share the pool); `Send` and
/// `Sync`, so logic threads can allocate from it while IO threads free.
///
/// ```
/// use netbuf::MessagePool;
/// use bytes::BufMut;
///
/// let pool = MessagePool::new();
/// let mut m = pool.alloc(11).unwrap();
/// m.put_slice(b"hello world");
/// assert_eq!(&m[..], b"hello world");
/// assert!(m.is_pooled());
///
/// let big = pool.alloc(1 << 20).unwrap(); // past the block size: heap
/// assert!(!big.is_pooled());
/// drop((m, big)); // one free path, whatever the origin
/// assert_eq!(pool.stats().live_messages, 0);
/// ```
pub struct MessagePool<A: Allocator + Send + Sync + 'static = Global> {
    pub(crate) core: NonNull<PoolCore>,
    _alloc: PhantomData<A>,
}

// SAFETY: the shared state is only mutated through atomics and a mutex, and
// the allocator `A` is `Send + Sync`.
unsafe impl<A: Allocator + Send + Sync + 'static> Send for MessagePool<A> {}
// SAFETY: as above.
unsafe impl<A: Allocator + Send + Sync + 'static> Sync for MessagePool<A> {}

impl MessagePool {
    /// A pool with the default configuration: one 4 KiB block class, heap
    /// fallback up to 16 MiB through the global allocator.
    pub fn new() -> Self {
        Self::with_config(PoolConfig::default())
    }

    /// A pool with `config`, falling back to the global allocator.
    pub fn with_config(config: PoolConfig) -> Self {
        Self::with_config_in(config, Global)
    }

    /// A builder starting from the defaults.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }
}

impl Default for MessagePool {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: Allocator + Send + Sync + 'static> MessagePool<A> {
    /// A pool with `config` whose blocks and heap messages come from `alloc`.
    ///
    /// Class sizes below 16 bytes are raised to 16, duplicates removed, and
    /// at most 254 classes are kept.
    pub fn with_config_in(config: PoolConfig, alloc: A) -> Self {
        let mut sizes: Vec<usize> = if config.pooled {
            std::iter::once(config.block_size)
                .chain(config.extra_classes.iter().copied())
                .map(|s| s.clamp(16, u32::MAX as usize / 2))
                .collect()
        } else {
            Vec::new()
        };
        sizes.sort_unstable();
        sizes.dedup();
        sizes.truncate(254);
        let classes = sizes
            .into_iter()
            .map(|size| {
                let batch = (config.thread_cache_bytes / (2 * size)).max(1);
                let slots = config.total_cache_bytes / (batch * size);
                ClassShared {
                    size,
                    batch,
                    depot: (0..slots)
                        .map(|_| AtomicPtr::new(core::ptr::null_mut()))
                        .collect(),
                    outstanding: AtomicUsize::new(0),
                    depot_blocks: AtomicUsize::new(0),
                    uncached_allocs: AtomicU64::new(0),
                    uncached_frees: AtomicU64::new(0),
                }
            })
            .collect::<Box<[_]>>();
        let n = classes.len();
        let shared = Box::new(PoolShared {
            core: PoolCore {
                refs: AtomicUsize::new(1),
                handles: AtomicUsize::new(1),
                epoch: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
                classes,
                max_message: config.max_message.min(u32::MAX as usize / 2),
                heap_allocs: AtomicU64::new(0),
                heap_frees: AtomicU64::new(0),
                heap_live_bytes: AtomicU64::new(0),
                registry: Mutex::new(Registry {
                    threads: Vec::new(),
                    retired: vec![Totals::default(); n],
                }),
                report_leaks_on_drop: config.report_leaks_on_drop,
                #[cfg(feature = "leak-trace")]
                tracer: crate::pool::leak::Tracer::new(config.trace_sample),
                alloc_fn: alloc_raw::<A>,
                dealloc_fn: dealloc_raw::<A>,
                destroy_fn: destroy::<A>,
            },
            alloc,
        });
        let core = NonNull::from(Box::leak(shared)).cast::<PoolCore>();
        MessagePool {
            core,
            _alloc: PhantomData,
        }
    }

    fn core(&self) -> &PoolCore {
        // SAFETY: a handle holds a reference, so the pool is alive.
        unsafe { self.core.as_ref() }
    }

    /// A message with room for at least `capacity` bytes (length 0).
    ///
    /// Up to the largest size class it comes from the pool, beyond that from
    /// the fallback allocator, beyond [`PoolConfig::max_message`] it is an
    /// error. Never panics.
    #[inline]
    pub fn alloc(&self, capacity: usize) -> Result<Message, PoolError> {
        let core = self.core();
        let hdr = match core.class_for(capacity) {
            Some(class) => cache::alloc_block(self.core, class)
                .ok_or(PoolError::AllocFailed(core.classes[class].size))?,
            None => self.alloc_heap(capacity)?,
        };
        #[cfg(feature = "leak-trace")]
        core.tracer.maybe_record(hdr);
        // SAFETY: `hdr` is a block just handed out to us alone.
        Ok(unsafe { Message::from_block(hdr) })
    }

    /// A message holding a copy of `data`.
    pub fn message_from(&self, data: &[u8]) -> Result<Message, PoolError> {
        let mut m = self.alloc(data.len())?;
        m.extend_from_slice(data).expect("capacity was requested");
        Ok(m)
    }

    #[cold]
    fn alloc_heap(&self, capacity: usize) -> Result<NonNull<Header>, PoolError> {
        let core = self.core();
        if capacity > core.max_message {
            return Err(PoolError::TooLarge {
                requested: capacity,
                max: core.max_message,
            });
        }
        // SAFETY: `alloc_fn` matches this pool's allocator type and the
        // handle holds a reference.
        let raw = unsafe { (core.alloc_fn)(self.core, heap_layout(capacity)) }
            .ok_or(PoolError::AllocFailed(capacity))?;
        core.acquire(1);
        core.heap_allocs.fetch_add(1, Ordering::Relaxed);
        core.heap_live_bytes
            .fetch_add(capacity as u64, Ordering::Relaxed);
        let hdr = raw.cast::<Header>();
        // SAFETY: fresh allocation of HEADER_SIZE + capacity bytes, aligned.
        unsafe { Header::init(hdr, self.core, capacity as u32, ORIGIN_HEAP) };
        Ok(hdr)
    }

    /// Payload sizes of the size classes, ascending (empty when not pooled).
    pub fn class_sizes(&self) -> Vec<usize> {
        self.core().classes.iter().map(|c| c.size).collect()
    }

    /// The largest message this pool hands out.
    pub fn max_message(&self) -> usize {
        self.core().max_message
    }

    /// Returns cached free blocks to the allocator: the shared depot's and
    /// the calling thread's now, and every other thread's at its next
    /// allocation or free from this pool. Returns the bytes released now.
    pub fn trim(&self) -> usize {
        let core = self.core();
        core.epoch.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the handle holds a reference.
        let mut bytes = unsafe { cache::flush_current_thread(self.core) };
        // SAFETY: the handle holds a reference.
        bytes += unsafe { PoolCore::drain_depot(self.core) };
        bytes
    }

    /// Counters of the whole pool, summed over threads.
    pub fn stats(&self) -> PoolStats {
        let core = self.core();
        let reg = lock(&core.registry);
        let mut stats = PoolStats::default();
        for (i, c) in core.classes.iter().enumerate() {
            let mut t = reg.retired[i];
            for th in &reg.threads {
                let cc = &th.classes[i];
                t.allocs += cc.allocs.get();
                t.frees += cc.frees.get();
                t.hits += cc.hits.get();
                t.misses += cc.misses.get();
            }
            t.allocs += c.uncached_allocs.load(Ordering::Relaxed);
            t.frees += c.uncached_frees.load(Ordering::Relaxed);
            let live = t.allocs.saturating_sub(t.frees);
            let outstanding = c.outstanding.load(Ordering::Relaxed) as u64;
            let cached = outstanding.saturating_sub(live);
            let in_depot = (c.depot_blocks.load(Ordering::Relaxed) as u64).min(cached);
            let cls = ClassStats {
                size: c.size,
                live,
                allocs: t.allocs,
                hits: t.hits,
                misses: t.misses,
                blocks_held: outstanding,
                blocks_cached: cached,
                blocks_in_depot: in_depot,
                blocks_in_thread_caches: cached - in_depot,
            };
            stats.pooled_live += live;
            stats.pooled_allocs += t.allocs;
            stats.hits += t.hits;
            stats.misses += t.misses;
            stats.live_bytes += live * c.size as u64;
            stats.bytes_cached += cls.blocks_cached * c.size as u64;
            stats.bytes_in_depot += cls.blocks_in_depot * c.size as u64;
            stats.bytes_held += cls.blocks_held * (c.size + header::HEADER_SIZE) as u64;
            stats.classes.push(cls);
        }
        stats.heap_allocs = core.heap_allocs.load(Ordering::Relaxed);
        stats.heap_live = stats
            .heap_allocs
            .saturating_sub(core.heap_frees.load(Ordering::Relaxed));
        stats.heap_live_bytes = core.heap_live_bytes.load(Ordering::Relaxed);
        stats.live_messages = stats.pooled_live + stats.heap_live;
        stats.live_bytes += stats.heap_live_bytes;
        stats.bytes_in_thread_caches = stats.bytes_cached - stats.bytes_in_depot;
        stats.threads = reg.threads.len();
        stats
    }

    /// Messages still alive, with the allocation sites sampled by the
    /// `leak-trace` feature (empty without it).
    pub fn leak_report(&self) -> LeakReport {
        let s = self.stats();
        LeakReport {
            live_pooled: s.pooled_live,
            live_heap: s.heap_live,
            live_bytes: s.live_bytes,
            #[cfg(feature = "leak-trace")]
            sampled_sites: self.core().tracer.sites(),
            #[cfg(not(feature = "leak-trace"))]
            sampled_sites: Vec::new(),
        }
    }
}

impl<A: Allocator + Send + Sync + 'static> Clone for MessagePool<A> {
    fn clone(&self) -> Self {
        self.core().handles.fetch_add(1, Ordering::Relaxed);
        MessagePool {
            core: self.core,
            _alloc: PhantomData,
        }
    }
}

impl<A: Allocator + Send + Sync + 'static> Drop for MessagePool<A> {
    fn drop(&mut self) {
        let core = self.core();
        if core.handles.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        if core.report_leaks_on_drop {
            let report = self.leak_report();
            if report.live_pooled + report.live_heap > 0 {
                tracing::warn!(%report, "MessagePool dropped while messages are alive");
            }
        }
        // Close: thread caches that see the new epoch and `closed` give their
        // blocks back instead of caching them; a chain put in the depot
        // concurrently is either found by the drain below or taken back by
        // its putter (the fences in `drain_depot` and `cache::park`).
        core.closed.store(true, Ordering::SeqCst);
        core.epoch.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the handles' reference is still held.
        unsafe {
            cache::flush_current_thread(self.core);
            PoolCore::drain_depot(self.core);
            PoolCore::release(self.core, 1);
        }
    }
}

impl<A: Allocator + Send + Sync + 'static> fmt::Debug for MessagePool<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessagePool")
            .field("classes", &self.class_sizes())
            .field("max_message", &self.max_message())
            .finish_non_exhaustive()
    }
}
