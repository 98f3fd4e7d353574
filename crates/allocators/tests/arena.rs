//! The bump adapter frees nothing until reset, and says so.

use allocator_api2::vec::Vec;
use allocators::{CountingAllocator, FrameArena};

#[test]
fn arena_frees_nothing_until_reset() {
    let mut arena = FrameArena::with_capacity(64 * 1024);
    let cap = arena.capacity();
    for tick in 0..5u32 {
        {
            let counted = CountingAllocator::new(&arena);
            let mut a: Vec<u32, _> = Vec::new_in(counted.clone());
            for i in 0..100 {
                a.push(i * tick);
            }
            let mut b: Vec<u8, _> = Vec::new_in(counted.clone());
            b.extend_from_slice(&[1u8; 300]);
            drop(a);
            drop(b);
            let s = counted.stats();
            // The adapter saw every free ...
            assert_eq!(s.deallocations, 2);
            assert_eq!(s.live_bytes, 0);
        }
        // ... but the arena kept all of it until the reset.
        let in_use = arena.bytes_in_use();
        assert!(in_use >= 400 + 300, "{in_use}");
        let r = arena.reset();
        assert_eq!(r.bytes_released, in_use);
        assert_eq!(r.frees_deferred, 2);
        assert_eq!(arena.bytes_in_use(), 0);
        assert_eq!(arena.resets(), u64::from(tick) + 1);
    }
    // The chunk reserved up front is reused every tick.
    assert_eq!(arena.capacity(), cap);
}

#[test]
fn bump_itself_is_an_allocator_api2_allocator() {
    // bumpalo's `allocator-api2` impls meet ours: same trait line.
    let bump = bumpalo::Bump::new();
    let mut v: Vec<u64, &bumpalo::Bump> = Vec::new_in(&bump);
    v.extend(0..64);
    assert_eq!(v.iter().sum::<u64>(), 63 * 64 / 2);
}
