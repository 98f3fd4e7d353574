//! Installs the counting global allocator in this test binary and checks
//! exact counts for a known sequence of allocations.

use std::hint::black_box;

allocators::global_allocator!();

#[test]
fn exact_counts_for_a_known_sequence() {
    let before = allocators::thread_stats();
    let g_before = allocators::global_stats();

    let boxed = black_box(Box::new(7u64)); // alloc 8
    let mut v: Vec<u8> = black_box(Vec::with_capacity(100)); // alloc 100
    v.extend_from_slice(&[1u8; 100]);
    v.reserve_exact(156); // realloc 100 -> 256
    let s = black_box(String::from("hello")); // alloc 5
    drop(boxed); // dealloc 8
    drop(v); // dealloc 256
    drop(s); // dealloc 5

    let d = allocators::thread_stats().since(&before);
    assert_eq!(d.allocations, 3, "{d:?}");
    assert_eq!(d.reallocations, 1, "{d:?}");
    assert_eq!(d.deallocations, 3, "{d:?}");
    assert_eq!(d.bytes_allocated, 8 + 100 + 256 + 5, "{d:?}");
    assert_eq!(d.bytes_freed, 8 + 100 + 256 + 5, "{d:?}");
    assert_eq!(d.live_bytes_change, 0);
    assert_eq!(d.allocations_per(3), 4.0 / 3.0);

    // The process-wide counters saw at least what this thread did.
    let g = allocators::global_stats().since(&g_before);
    assert!(g.allocations >= 3 && g.reallocations >= 1 && g.deallocations >= 3);
    assert!(allocators::global_stats().peak_live_bytes >= 256);
}

#[test]
fn a_loop_without_allocations_counts_zero() {
    let mut buf = vec![0u8; 4096];
    let before = allocators::thread_stats();
    for i in 0..10_000usize {
        buf[i % 4096] = buf[(i * 7) % 4096].wrapping_add(1);
    }
    black_box(&buf);
    let d = allocators::thread_stats().since(&before);
    assert_eq!(d.calls(), 0, "{d:?}");
}

#[test]
fn frees_on_another_thread_are_counted_there() {
    let before = allocators::thread_stats();
    let data = black_box(vec![0u8; 1000]);
    let freed_there = std::thread::spawn(move || {
        let b = allocators::thread_stats();
        drop(data);
        allocators::thread_stats().since(&b)
    })
    .join()
    .unwrap();
    let here = allocators::thread_stats().since(&before);
    assert_eq!(freed_there.deallocations, 1);
    assert_eq!(freed_there.bytes_freed, 1000);
    assert!(here.allocations >= 1);
}

/// The test command sets `ALLOCATORS_EXPECT` for each allocator build, so
/// CI proves the feature wiring selects what it says.
#[test]
fn the_selected_allocator_is_the_expected_one() {
    let active = allocators::active();
    assert!(active.is_compiled_in());
    if let Ok(expect) = std::env::var("ALLOCATORS_EXPECT") {
        assert_eq!(active.name(), expect);
    }
    // The installed wrapper is the one counting.
    assert!(allocators::global_stats().allocations > 0);
}
