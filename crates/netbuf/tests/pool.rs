//! Message pool: routing, the one free path, caches and caps, leak report,
//! large messages, cross-thread frees.

use std::hint::black_box;

use bytes::BufMut;
use netbuf::test_util::quiet_pool;
use netbuf::{Origin, PoolError, SharedMessage};

allocators::global_allocator!();

#[test]
fn routing_at_every_boundary() {
    let pool = quiet_pool().max_message(2 << 20).build();
    let bs = 4096;
    for (n, pooled) in [
        (0, true),
        (1, true),
        (bs - 1, true),
        (bs, true),
        (bs + 1, false),
        (1 << 20, false),
        (2 << 20, false),
    ] {
        let m = pool.alloc(n).unwrap();
        assert_eq!(m.is_pooled(), pooled, "size {n}");
        assert!(m.capacity() >= n);
        if pooled {
            assert_eq!(m.origin(), Origin::Pooled { class_size: bs });
        } else {
            assert_eq!(m.origin(), Origin::Heap);
            assert_eq!(m.capacity(), n);
        }
    }
    assert_eq!(
        pool.alloc((2 << 20) + 1).unwrap_err(),
        PoolError::TooLarge {
            requested: (2 << 20) + 1,
            max: 2 << 20
        }
    );
    assert_eq!(pool.stats().live_messages, 0);
}

#[test]
fn extra_classes_route_to_the_smallest_fit() {
    let pool = quiet_pool().extra_class(256).extra_class(1024).build();
    assert_eq!(pool.class_sizes(), vec![256, 1024, 4096]);
    let cases = [
        (10, 256),
        (256, 256),
        (257, 1024),
        (1024, 1024),
        (1025, 4096),
    ];
    for (n, class) in cases {
        assert_eq!(
            pool.alloc(n).unwrap().origin(),
            Origin::Pooled { class_size: class }
        );
    }
    let s = pool.stats();
    assert_eq!(s.classes.iter().map(|c| c.allocs).sum::<u64>(), 5);
}

#[test]
fn heap_only_pool_sends_everything_to_the_allocator() {
    let pool = quiet_pool().pooled(false).build();
    let m = pool.alloc(10).unwrap();
    assert!(!m.is_pooled());
    assert!(pool.class_sizes().is_empty());
    let s = pool.stats();
    assert_eq!((s.heap_live, s.pooled_live), (1, 0));
    drop(m);
    assert_eq!(pool.stats().heap_live, 0);
}

#[test]
fn one_free_path_for_every_origin() {
    let pool = quiet_pool().build();
    let pooled = pool.message_from(&[1; 100]).unwrap();
    let heap = pool.message_from(&vec![2; 100_000]).unwrap();
    let shared_pooled = pool.message_from(&[3; 10]).unwrap().freeze();
    let shared_heap = pool.message_from(&vec![4; 10_000]).unwrap().freeze();
    let bytes = pool.message_from(&[5; 20]).unwrap().freeze().into_bytes();
    let clones: Vec<SharedMessage> = (0..10).map(|_| shared_heap.clone()).collect();
    let s = pool.stats();
    assert_eq!((s.pooled_live, s.heap_live), (3, 2));
    assert_eq!(s.live_bytes, 3 * 4096 + 100_000 + 10_000);
    assert_eq!(&bytes[..], &[5; 20]);
    assert_eq!(&heap[..3], &[2, 2, 2]);
    drop((pooled, heap, shared_pooled, shared_heap, bytes));
    assert_eq!(
        pool.stats().heap_live,
        1,
        "clones keep the heap message alive"
    );
    drop(clones);
    let s = pool.stats();
    assert_eq!(s.live_messages, 0);
    assert_eq!(s.live_bytes, 0);
}

#[test]
fn message_writes_and_capacity_errors() {
    let pool = quiet_pool().build();
    let mut m = pool.alloc(8).unwrap();
    m.put_u32_le(0xdead_beef);
    m.put_slice(b"abcd");
    assert_eq!(&m[..], &[0xef, 0xbe, 0xad, 0xde, b'a', b'b', b'c', b'd']);
    m[0] = 1;
    m.truncate(2);
    assert_eq!(&m[..], &[1, 0xbe]);
    let left = m.remaining_capacity();
    let err = m.extend_from_slice(&vec![0; left + 1]).unwrap_err();
    assert_eq!(err.remaining, left);
    m.resize(10, 7).unwrap();
    assert_eq!(m.len(), 10);
    assert!(m.resize(m.capacity() + 1, 0).is_err());
    m.clear();
    assert!(m.is_empty());
}

#[test]
fn shared_message_back_to_owned_when_unique() {
    let pool = quiet_pool().build();
    let s = pool.message_from(b"abc").unwrap().freeze();
    let c = s.clone();
    assert!(SharedMessage::ptr_eq(&s, &c));
    let s = s.try_into_message().unwrap_err();
    drop(c);
    let mut m = s.try_into_message().unwrap();
    m.extend_from_slice(b"d").unwrap();
    assert_eq!(&m[..], b"abcd");
}

#[test]
fn blocks_are_reused_and_steady_state_makes_no_global_allocation() {
    let pool = quiet_pool().build();
    // Warm up: fill this thread's cache.
    for _ in 0..4 {
        let v: Vec<_> = (0..64).map(|_| pool.alloc(4096).unwrap()).collect();
        drop(v);
    }
    let misses = pool.stats().misses;
    let before = allocators::thread_stats();
    for i in 0..10_000u32 {
        let mut m = pool.alloc(4096).unwrap();
        m.put_u32(i);
        black_box(&m);
    }
    let shared = pool.alloc(512).unwrap().freeze();
    for _ in 0..100 {
        black_box(shared.clone());
    }
    drop(shared);
    let d = allocators::thread_stats().since(&before);
    assert_eq!(
        d.calls(),
        0,
        "pooled alloc + free touched the global allocator: {d:?}"
    );
    assert_eq!(pool.stats().misses, misses, "no new block after warm-up");
}

#[test]
fn thread_cache_is_capped_and_trim_returns_memory() {
    // 4 KiB blocks, 32 KiB per thread (two chains of 4), 64 KiB depot (4 chains).
    let pool = quiet_pool()
        .thread_cache_bytes(32 << 10)
        .total_cache_bytes(64 << 10)
        .build();
    let msgs: Vec<_> = (0..100).map(|_| pool.alloc(100).unwrap()).collect();
    drop(msgs);
    let s = pool.stats();
    assert_eq!(s.live_messages, 0);
    // At most 8 blocks in this thread's cache + 16 in the depot.
    assert!(s.bytes_cached <= (8 + 16) * 4096, "{}", s.bytes_cached);
    assert!(s.bytes_cached >= 8 * 4096);
    let freed = pool.trim();
    assert_eq!(freed as u64, s.bytes_cached);
    assert_eq!(pool.stats().bytes_cached, 0);
}

#[test]
fn trim_reaches_other_threads_at_their_next_operation() {
    let pool = quiet_pool().build();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let p2 = pool.clone();
    let t = std::thread::spawn(move || {
        drop((0..10).map(|_| p2.alloc(1).unwrap()).collect::<Vec<_>>());
        done_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        // Next operation: sees the trim, flushes, then allocates one block.
        drop(p2.alloc(1).unwrap());
        done_tx.send(()).unwrap();
        go_rx.recv().unwrap();
    });
    done_rx.recv().unwrap();
    assert_eq!(pool.stats().bytes_cached, 10 * 4096);
    pool.trim();
    assert_eq!(
        pool.stats().bytes_cached,
        10 * 4096,
        "other thread has not looked yet"
    );
    go_tx.send(()).unwrap();
    done_rx.recv().unwrap();
    assert_eq!(pool.stats().bytes_cached, 4096);
    go_tx.send(()).unwrap();
    t.join().unwrap();
    // The thread exited: its cache went to the depot.
    assert_eq!(pool.stats().threads, 0);
    assert_eq!(pool.stats().bytes_cached, 4096);
}

#[test]
fn leak_report_lists_live_messages() {
    let pool = quiet_pool().build();
    assert!(pool.leak_report().is_clean());
    let a = pool.alloc(10).unwrap();
    let b = pool.alloc(100_000).unwrap();
    let r = pool.leak_report();
    assert_eq!((r.live_pooled, r.live_heap), (1, 1));
    assert!(r.to_string().starts_with("2 live messages"));
    drop((a, b));
    assert!(pool.leak_report().is_clean());
}

#[test]
fn one_mib_messages_expand_and_return() {
    let pool = quiet_pool().build();
    for round in 0..20u8 {
        let mut msgs = Vec::new();
        for k in 0..4u8 {
            let mut m = pool.alloc(1 << 20).unwrap();
            m.resize(1 << 20, round ^ k).unwrap();
            msgs.push(m);
        }
        for (k, m) in msgs.iter().enumerate() {
            assert!(m.iter().all(|&b| b == round ^ k as u8));
        }
        assert_eq!(pool.stats().heap_live_bytes, 4 << 20);
    }
    let s = pool.stats();
    assert_eq!(
        (s.live_messages, s.heap_live_bytes, s.heap_allocs),
        (0, 0, 80)
    );
}

#[test]
fn pool_dropped_before_its_messages() {
    let pool = quiet_pool().build();
    let m = pool.message_from(b"outlives").unwrap();
    let s = pool.message_from(&[9; 9000]).unwrap().freeze();
    let c = s.clone();
    drop(pool);
    assert_eq!(&m[..], b"outlives");
    drop(m);
    let t = std::thread::spawn(move || c.len());
    assert_eq!(t.join().unwrap(), 9000);
    assert_eq!(s[8999], 9);
}

#[test]
fn cross_thread_stress_balances() {
    let pool = quiet_pool().thread_cache_bytes(64 << 10).build();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<netbuf::Message>>(16);
    let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
    std::thread::scope(|s| {
        for t in 0..3u8 {
            let pool = pool.clone();
            let tx = tx.clone();
            s.spawn(move || {
                for i in 0..300usize {
                    let batch: Vec<_> = (0..20)
                        .map(|k| {
                            let n = [16, 700, 4096, 5000, 70_000][(i + k) % 5];
                            let mut m = pool.alloc(n).unwrap();
                            m.resize(n.min(64), t).unwrap();
                            m
                        })
                        .collect();
                    tx.send(batch).unwrap();
                }
            });
        }
        drop(tx);
        for _ in 0..2 {
            let rx = rx.clone();
            s.spawn(move || {
                loop {
                    let batch = rx.lock().unwrap().recv();
                    let Ok(batch) = batch else { break };
                    for m in &batch {
                        let first = m[0];
                        assert!(m.iter().all(|&b| b == first));
                    }
                    drop(batch);
                }
            });
        }
    });
    let s = pool.stats();
    assert_eq!(s.live_messages, 0, "{s:?}");
    assert_eq!(s.pooled_allocs + s.heap_allocs, 3 * 300 * 20);
    assert!(
        s.hits > s.misses,
        "blocks were reused across threads: {s:?}"
    );
}
