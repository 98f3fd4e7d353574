//! The opt-in allocation-site tracer (`--features leak-trace`).
#![cfg(feature = "leak-trace")]

use netbuf::MessagePool;
use netbuf::test_util::quiet_pool;

#[inline(never)]
fn leaky_site(pool: &MessagePool) -> netbuf::Message {
    pool.alloc(100).unwrap()
}

#[test]
fn sampled_sites_of_live_messages_are_reported() {
    // Trace every message.
    let pool = quiet_pool().trace_sample(1).build();
    let kept: Vec<_> = (0..3).map(|_| leaky_site(&pool)).collect();
    let freed = pool.alloc(10).unwrap();
    drop(freed);
    let r = pool.leak_report();
    assert_eq!(r.live_pooled, 3);
    let traced: u64 = r.sampled_sites.iter().map(|(n, _)| n).sum();
    assert_eq!(traced, 3, "only live messages are listed");
    assert!(r.to_string().contains("allocated at"));
    drop(kept);
    let r = pool.leak_report();
    assert!(r.is_clean());
    assert!(r.sampled_sites.is_empty());
}

#[test]
fn sampling_traces_one_in_n() {
    let pool = quiet_pool().trace_sample(10).build();
    let kept: Vec<_> = (0..100).map(|_| pool.alloc(1).unwrap()).collect();
    let traced: u64 = pool
        .leak_report()
        .sampled_sites
        .iter()
        .map(|(n, _)| n)
        .sum();
    assert_eq!(traced, 10);
    drop(kept);
}
