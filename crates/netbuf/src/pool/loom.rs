//! Loom models of the pool: depot put/take/drain, park vs close, trim.
//!
//! `loom-tests/tests/pool.rs` already covers, through the public API,
//! cross-thread frees with batched returns, `SharedMessage` refcounts and a
//! pool dropped while messages live elsewhere; it cannot see where a block
//! ends up. These models reach the crate-private protocols (the depot's
//! slots, `cache::park`, `drain_depot`, the epoch catch-up) and count every
//! block through a [`CountingAllocator`], so "no block is stranded" and "no
//! block is freed twice" become plain assertions on the allocator.
//!
//! Every pool here has one 64-byte class, one block per chain and a
//! one-slot depot, so two chains already contend for the depot.

use core::ptr::NonNull;

use allocator_api2::alloc::Global;
use allocators::CountingAllocator;
use loom::sync::Notify;
use loom::thread;

use crate::pool::cache::{self, Chain};
use crate::pool::header::Header;
use crate::pool::{MessagePool, PoolBuilder, PoolCore};
use crate::sync::{Arc, AtomicBool, Ordering};

type Counted = CountingAllocator<Global>;

/// One 64-byte class, batch of one block, one depot slot.
fn tiny() -> PoolBuilder {
    MessagePool::builder()
        .block_size(64)
        .thread_cache_bytes(128)
        .total_cache_bytes(64)
        .report_leaks_on_drop(false)
}

fn counted_pool() -> (MessagePool<Counted>, Counted) {
    let alloc = CountingAllocator::new(Global);
    (tiny().build_in(alloc.clone()), alloc)
}

/// Asserts every block taken from the allocator went back to it.
fn assert_all_returned(alloc: &Counted, what: &str) {
    let s = alloc.stats();
    assert_eq!(
        s.allocations,
        s.deallocations,
        "{what}: {} block(s) never went back to the allocator",
        s.allocations - s.deallocations
    );
}

/// A fresh block of class 0.
fn block(core: NonNull<PoolCore>) -> NonNull<Header> {
    PoolCore::carve(core, 0).expect("allocator failed")
}

/// A one-block chain of `h`, tagged through the block's (loom-tracked)
/// `refs` word by the calling thread: the taker checks the tag to prove
/// that the depot hands the chain over with release/acquire ordering. (The
/// link and length words are plain memory that loom cannot see; they ride
/// on the same ordering.)
fn tagged_chain(h: NonNull<Header>, tag: usize) -> Chain {
    // SAFETY: a free block owned by the caller; `refs` is an initialised
    // atomic.
    unsafe { h.as_ref() }.refs.store(tag, Ordering::Relaxed);
    let mut c = Chain::EMPTY;
    c.push(h);
    c
}

/// The pool behind `addr` (the models' threads borrow the pool by address;
/// the handle outlives them, they are joined before it is dropped).
fn core_at(addr: usize) -> NonNull<PoolCore> {
    NonNull::new(addr as *mut PoolCore).expect("non-null pool")
}

/// Takes one chain from the depot and checks what its putter wrote before
/// publishing it: the length word, the link word and the tag. Gives the
/// block back to the allocator and returns the tag.
///
/// # Safety
/// The caller holds a reference on the pool.
unsafe fn take_check_release(core: NonNull<PoolCore>, tags: &[usize]) -> Option<usize> {
    // SAFETY: the caller holds a reference.
    let head = unsafe { core.as_ref() }.depot_take(0)?;
    // SAFETY: taken exclusively from the depot.
    let mut chain = unsafe { Chain::from_depot(head) };
    assert_eq!(chain.len, 1, "length word not published with the chain");
    let h = chain.pop().expect("chain of one");
    assert!(
        chain.pop().is_none(),
        "link word not published with the chain"
    );
    // SAFETY: the block is ours now.
    let tag = unsafe { h.as_ref() }.refs.load(Ordering::Relaxed);
    assert!(tags.contains(&tag), "stale block contents: tag {tag}");
    // SAFETY: the block is ours and free; the caller's reference outlives it.
    unsafe { PoolCore::release_block_to_allocator(core, 0, h) };
    Some(tag)
}

/// A one-shot hand-shake that blocks instead of spinning: a flag (the
/// release/acquire edge) plus a `Notify` to sleep on, since loom's `Notify`
/// may wake its waiter spuriously.
struct Signal {
    flag: AtomicBool,
    notify: Notify,
}

impl Signal {
    fn new() -> Self {
        Signal {
            flag: AtomicBool::new(false),
            notify: Notify::new(),
        }
    }

    fn set(&self) {
        self.flag.store(true, Ordering::Release);
        self.notify.notify();
    }

    fn wait(&self) {
        while !self.flag.load(Ordering::Acquire) {
            self.notify.wait();
        }
    }
}

// Loom 0.7's partial-order reduction remembers only the last access to an
// atomic, so a thread's own Relaxed pre-check load right before its CAS or
// swap (the depot's pattern, in `depot_put` and `depot_take`) hides another
// thread's earlier load of the slot, and loom never tries the CAS first
// (tokio-rs/loom#166, #392). The depot models therefore steer the schedule
// themselves: the taker spins until it gets a chain, and the drain model
// runs once with the drainer first and once with it yielding to the others.

/// Two threads park a chain each into the one-slot depot while this one
/// spins until it takes one: the taker sees everything the putter wrote
/// before its CAS, the loser of the slot gives its chain back to the
/// allocator, and every block is freed exactly once.
#[test]
fn depot_put_take_hands_each_chain_to_one_owner() {
    loom::model(|| {
        let (pool, alloc) = counted_pool();
        let core = pool.core;
        let addr = core.as_ptr() as usize;
        // Each putter carves its own block: the block's initial `refs`
        // value is then a store this (spinning) thread never saw, which
        // loom may still return to its load if the hand-over is not
        // ordered (loom does not return stores a spinning thread saw
        // before it yielded).
        let put = move |tag: usize| {
            let core = core_at(addr);
            let chain = tagged_chain(block(core), tag);
            // SAFETY: the chain is ours; the handle holds a reference.
            unsafe { cache::park(core, 0, chain) };
        };
        let ta = thread::spawn(move || put(11));
        let tb = thread::spawn(move || put(22));
        // At least one put succeeds (the slot only fills by a put).
        // SAFETY: the handle holds a reference.
        while unsafe { take_check_release(core, &[11, 22]) }.is_none() {
            thread::yield_now();
        }
        ta.join().unwrap();
        tb.join().unwrap();
        // The other chain was refused (and released) or is still parked.
        // SAFETY: the handle holds a reference.
        let left = unsafe { PoolCore::drain_depot(core) };
        assert_eq!(alloc.stats().deallocations, 2, "left in the depot: {left}");
        drop(pool);
        assert_all_returned(&alloc, "depot put/take");
    });
}

/// `drain_depot` (what `trim()` and close run) races a park and an
/// allocating thread's take on an open pool: the chain is drained, taken or
/// left parked, never two of these, and a later drain finds what the first
/// one missed.
#[test]
fn depot_drain_races_put_and_take() {
    for drainer_yields in [false, true] {
        loom::model(move || {
            let (pool, alloc) = counted_pool();
            let core = pool.core;
            let a = block(core).as_ptr() as usize;
            let addr = core.as_ptr() as usize;
            let ta = thread::spawn(move || {
                let chain = tagged_chain(NonNull::new(a as *mut Header).unwrap(), 11);
                // SAFETY: the chain is ours; the handle holds a reference.
                unsafe { cache::park(core_at(addr), 0, chain) };
            });
            let tb = thread::spawn(move || {
                // SAFETY: the handle holds a reference.
                unsafe { take_check_release(core_at(addr), &[11]) }.is_some()
            });
            if drainer_yields {
                thread::yield_now();
            }
            // SAFETY: the handle holds a reference.
            let drained = unsafe { PoolCore::drain_depot(core) };
            ta.join().unwrap();
            let took = tb.join().unwrap();
            // SAFETY: the handle holds a reference.
            let left = unsafe { PoolCore::drain_depot(core) };
            assert_eq!(
                usize::from(took) + drained / 64 + left / 64,
                1,
                "took {took}, drained {drained}, left {left}"
            );
            drop(pool);
            assert_all_returned(&alloc, "drain vs put/take");
        });
    }
}

/// Issue 12: the third free on another thread parks a chain in the depot
/// while this thread drops the last handle. Either `park` sees `closed` and
/// drains the chain itself, or the closing drain finds it; a chain left in
/// a closed pool's depot would keep its blocks, the pool's shared state and
/// the allocator alive for ever. (The other thread's remaining chains go
/// back when it exits, through `LocalPool::drop`, which runs the same
/// park-vs-close race.)
#[test]
fn park_vs_close_strands_no_chain() {
    loom::model(|| {
        let (pool, alloc) = counted_pool();
        let msgs: Vec<_> = (0..3).map(|_| pool.alloc(16).unwrap()).collect();
        let t = thread::spawn(move || {
            // batch 1: the first two frees fill `loaded` and `spare`, the
            // third parks the first block's chain.
            drop(msgs);
            // The thread's exit: parks (or, if it sees `closed`, flushes)
            // the other two chains.
            cache::exit_thread_caches();
        });
        drop(pool);
        t.join().unwrap();
        assert_all_returned(&alloc, "park vs close");
    });
}

/// After `trim()`, a thread that has seen it flushes what it cached before
/// the trim at its next alloc or free, even while the last handle is being
/// dropped concurrently (and then, at its exit, parks or flushes against
/// that close). The hand-shakes block on a [`Signal`] rather than spin with
/// `yield_now`: loom will not return to a thread that yielded a store it saw
/// before yielding, which would make its Relaxed epoch load see the trim
/// whatever the ordering.
#[test]
fn trim_then_other_thread_catches_up() {
    loom::model(|| {
        let (pool, alloc) = counted_pool();
        let m0 = pool.alloc(16).unwrap();
        let m1 = pool.alloc(16).unwrap();
        let cached = Arc::new(Signal::new());
        let trimmed = Arc::new(Signal::new());
        let (c2, t2, a2) = (cached.clone(), trimmed.clone(), alloc.clone());
        let t = thread::spawn(move || {
            // Registers this thread's cache (at the pre-trim epoch) and
            // caches m1's block there.
            drop(m1);
            c2.set();
            t2.wait();
            assert_eq!(a2.stats().deallocations, 0);
            // The next touch sees the new epoch and flushes m1's block
            // before caching m0's (or, if the pool closed meanwhile, gives
            // both back).
            drop(m0);
            assert!(
                a2.stats().deallocations >= 1,
                "the block cached before the trim is still cached"
            );
            cache::exit_thread_caches();
        });
        cached.wait();
        // Nothing in this thread's cache (its two allocations were misses)
        // nor in the depot.
        assert_eq!(pool.trim(), 0);
        trimmed.set();
        drop(pool);
        t.join().unwrap();
        assert_all_returned(&alloc, "trim catch-up");
    });
}
