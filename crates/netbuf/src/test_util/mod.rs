//! Test support shared by netbuf's tests, the fuzz harness, the benches
//! and the soak: scripted socket doubles, a seeded PRNG, a quiet pool, a
//! send-queue test item, and the fuzz targets' logic.
//!
//! Compiled only with the `test-util` feature (and in netbuf's own unit
//! tests); not part of the stable API.
//!
//! * [`ScriptedReader`] / [`ScriptedWriter`], driven by a [`Script`] of
//!   [`Step`]s: chunk sizes, `WouldBlock`, `Interrupted`, an error after N
//!   calls, a peer that lies about its counts.
//! * [`Rng`]: SplitMix64, seeded.
//! * [`quiet_pool`]: a pool builder that does not report leaks on drop.
//! * [`Tagged`]: a [`QueueItem`] that says who pushed it and when, and
//!   [`check_exactly_once_in_order`] for what a consumer received.
//! * [`fuzz`]: the logic of the `cargo fuzz` targets in `fuzz/`, also run
//!   by `tests/fuzz_harness.rs`.

#[cfg(not(loom))]
pub mod fuzz;
mod io;
mod rng;

pub use io::{Script, ScriptedReader, ScriptedWriter, Step};
pub use rng::Rng;

use crate::{MessagePool, PoolBuilder, QueueItem};

/// A pool builder whose pools do not report leaked messages when dropped
/// (tests that leak on purpose, or that check `live_messages` themselves,
/// stay quiet); otherwise [`MessagePool::builder`]'s defaults.
///
/// ```
/// let pool = netbuf::test_util::quiet_pool().extra_class(512).build();
/// std::mem::forget(pool.alloc(100).unwrap()); // leaked, and no report
/// ```
pub fn quiet_pool() -> PoolBuilder {
    MessagePool::builder().report_leaks_on_drop(false)
}

/// A send-queue test item: who pushed it, its sequence number, and the
/// size it claims ([`QueueItem::byte_size`]). It holds no heap memory, so
/// allocation counts see only the queue's.
///
/// ```
/// use netbuf::SendQueue;
/// use netbuf::test_util::Tagged;
///
/// let q = SendQueue::builder().entry_overhead(0).build::<Tagged>();
/// q.try_push(Tagged::new(0, 0, 10)).unwrap();
/// assert_eq!(q.queued_bytes(), 10);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tagged {
    /// Who pushed it.
    pub producer: usize,
    /// Its place in its producer's sequence.
    pub seq: usize,
    /// The bytes it claims to take.
    pub size: usize,
}

impl Tagged {
    /// An item of `producer`, number `seq`, claiming `size` bytes.
    pub fn new(producer: usize, seq: usize, size: usize) -> Tagged {
        Tagged {
            producer,
            seq,
            size,
        }
    }
}

impl QueueItem for Tagged {
    fn byte_size(&self) -> usize {
        self.size
    }
}

/// Panics unless `got`, the (producer, sequence number) of each item in the
/// order a consumer received them, holds the `per` items of each of
/// `producers` producers exactly once, each producer's in its own order
/// (`0..per`).
///
/// ```
/// use netbuf::test_util::{Tagged, check_exactly_once_in_order};
///
/// let got = [(1, 0), (0, 0), (1, 1), (0, 1)].map(|(p, s)| Tagged::new(p, s, 1));
/// check_exactly_once_in_order(got.iter().map(|t| (t.producer, t.seq)), 2, 2);
/// ```
pub fn check_exactly_once_in_order(
    got: impl IntoIterator<Item = (usize, usize)>,
    producers: usize,
    per: usize,
) {
    let mut next = vec![0usize; producers];
    for (producer, seq) in got {
        assert_eq!(seq, next[producer], "producer {producer} out of order");
        next[producer] += 1;
    }
    assert!(
        next.iter().all(|&n| n == per),
        "items received per producer: {next:?}, {per} each expected"
    );
}
