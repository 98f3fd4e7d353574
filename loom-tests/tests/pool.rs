//! Loom models of the message pool: cross-thread free and batched returns,
//! `SharedMessage` refcount races, and the pool dropped while messages are
//! alive elsewhere. Each runs against both allocation routes the demo can
//! swap (pooled blocks and the heap fallback).
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p loom-tests --release`
#![cfg(loom)]

use loom::thread;
use netbuf::{MessagePool, PoolBuilder};

/// Tiny caches so that a handful of frees crosses every boundary: batch of
/// one block per chain, one depot slot.
fn tiny(pooled: bool) -> PoolBuilder {
    MessagePool::builder()
        .block_size(64)
        .thread_cache_bytes(128)
        .total_cache_bytes(64)
        .pooled(pooled)
        .report_leaks_on_drop(false)
}

fn routes() -> [(bool, usize); 2] {
    // (pooled, message size): the heap route is a pooled(false) pool.
    [(true, 16), (false, 16)]
}

#[test]
fn cross_thread_free_and_batched_return() {
    for (pooled, size) in routes() {
        loom::model(move || {
            let pool = tiny(pooled).build();
            let msgs: Vec<_> = (0..3).map(|_| pool.alloc(size).unwrap()).collect();
            let p2 = pool.clone();
            let t = thread::spawn(move || {
                // Frees on another thread overflow its chains into the depot.
                drop(msgs);
                // ... and that thread can allocate again.
                let again = p2.alloc(size).unwrap();
                drop(again);
            });
            // Meanwhile this thread allocates, possibly taking from the depot.
            let mine = pool.alloc(size).unwrap();
            drop(mine);
            t.join().unwrap();
            let s = pool.stats();
            assert_eq!(s.live_messages, 0, "{s:?}");
        });
    }
}

#[test]
fn shared_message_is_freed_exactly_once() {
    for (pooled, size) in routes() {
        loom::model(move || {
            let pool = tiny(pooled).build();
            let mut m = pool.alloc(size).unwrap();
            m.extend_from_slice(b"x").unwrap();
            let shared = m.freeze();
            let a = shared.clone();
            let b = shared.clone();
            let ta = thread::spawn(move || assert_eq!(&a[..], b"x"));
            let tb = thread::spawn(move || drop(b));
            drop(shared);
            ta.join().unwrap();
            tb.join().unwrap();
            assert_eq!(pool.stats().live_messages, 0);
        });
    }
}

#[test]
fn pool_dropped_while_messages_live_elsewhere() {
    for (pooled, size) in routes() {
        loom::model(move || {
            let pool = tiny(pooled).build();
            let m = pool.alloc(size).unwrap();
            let s = pool.alloc(size).unwrap().freeze();
            let s2 = s.clone();
            let t = thread::spawn(move || {
                drop(m);
                drop(s2);
            });
            drop(pool);
            drop(s);
            t.join().unwrap();
        });
    }
}
