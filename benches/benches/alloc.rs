//! Global allocators side by side: alloc + free of 16 B .. 1 MiB, on one
//! thread and across threads (allocate on one, free on another), for system,
//! mimalloc and jemalloc called directly through `GlobalAlloc`, plus the
//! overhead of the `Counting` wrapper.
//!
//! `cargo bench -p benches --bench alloc` prints ratio tables at the end.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use allocators::{Counters, Counting};
use benches::{Jemalloc, MiMalloc, allocators, print_ratio_table};
use criterion::{BenchmarkId, Criterion};

const SIZES: [(usize, &str); 5] = [
    (16, "16B"),
    (64, "64B"),
    (4096, "4KiB"),
    (64 * 1024, "64KiB"),
    (1 << 20, "1MiB"),
];

#[inline]
fn alloc_touch_free(a: &dyn GlobalAlloc, layout: Layout) {
    // SAFETY: `layout` has a non-zero size; the block is written within its
    // size and freed with the same layout by the same allocator.
    unsafe {
        let p = a.alloc(layout);
        assert!(!p.is_null());
        p.write_volatile(1);
        black_box(p);
        a.dealloc(p, layout);
    }
}

fn same_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("alloc_same_thread");
    for (name, a) in allocators() {
        for (size, label) in SIZES {
            let layout = Layout::from_size_align(size, 8).unwrap();
            g.bench_function(BenchmarkId::new(name, label), |b| {
                b.iter(|| alloc_touch_free(a, layout))
            });
        }
    }
    g.finish();
}

/// Allocates `iters` blocks on this thread and frees them on another, in
/// batches, and returns the time until the last one is freed.
fn cross_thread_run(a: &'static (dyn GlobalAlloc + Sync), layout: Layout, iters: u64) -> Duration {
    const BATCH: usize = 64;
    let (tx, rx) = mpsc::sync_channel::<Vec<usize>>(8);
    let (back_tx, back_rx) = mpsc::channel::<Vec<usize>>();
    let freer = std::thread::spawn(move || {
        for mut batch in rx {
            for p in batch.drain(..) {
                // SAFETY: `p` was allocated by `a` with `layout` on the
                // producer thread and is freed exactly once here.
                unsafe { a.dealloc(p as *mut u8, layout) };
            }
            // Hand the empty vector back so the producer does not allocate.
            let _ = back_tx.send(batch);
        }
    });
    let start = Instant::now();
    let mut left = iters as usize;
    while left > 0 {
        let n = left.min(BATCH);
        let mut batch = back_rx
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH));
        for _ in 0..n {
            // SAFETY: non-zero size; the block is written within bounds and
            // freed by the other thread with the same layout.
            unsafe {
                let p = a.alloc(layout);
                assert!(!p.is_null());
                p.write_volatile(1);
                batch.push(p as usize);
            }
        }
        tx.send(batch).unwrap();
        left -= n;
    }
    drop(tx);
    freer.join().unwrap();
    start.elapsed()
}

fn cross_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("alloc_cross_thread");
    for (name, a) in allocators() {
        for (size, label) in SIZES {
            let layout = Layout::from_size_align(size, 8).unwrap();
            g.bench_function(BenchmarkId::new(name, label), |b| {
                b.iter_custom(|iters| cross_thread_run(a, layout, iters))
            });
        }
    }
    g.finish();
}

static SYS_COUNTS: Counters = Counters::new();
static JE_COUNTS: Counters = Counters::new();
static MI_COUNTS: Counters = Counters::new();
static COUNTED_SYSTEM: Counting<System> = Counting::with_counters(System, &SYS_COUNTS);
static COUNTED_MI: Counting<MiMalloc> = Counting::with_counters(MiMalloc, &MI_COUNTS);
static COUNTED_JE: Counting<Jemalloc> = Counting::with_counters(Jemalloc, &JE_COUNTS);
// The wrapper `global_allocator!()` installs also keeps per-thread counts.
static COUNTED_MI_GLOBAL: Counting<MiMalloc> = Counting::global(MiMalloc);

fn counting_overhead(c: &mut Criterion) {
    let mut g = c.benchmark_group("counting_overhead");
    let layout = Layout::from_size_align(64, 8).unwrap();
    let variants: [(&str, &dyn GlobalAlloc); 7] = [
        ("plain/system", &System),
        ("counted/system", &COUNTED_SYSTEM),
        ("plain/mimalloc", &MiMalloc),
        ("counted/mimalloc", &COUNTED_MI),
        ("counted+thread/mimalloc", &COUNTED_MI_GLOBAL),
        ("plain/jemalloc", &Jemalloc),
        ("counted/jemalloc", &COUNTED_JE),
    ];
    for (id, a) in variants {
        let (variant, alloc) = id.split_once('/').expect("variant/allocator");
        g.bench_function(BenchmarkId::new(variant, alloc), |b| {
            b.iter(|| alloc_touch_free(a, layout))
        });
    }
    g.finish();
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    same_thread(&mut c);
    cross_thread(&mut c);
    counting_overhead(&mut c);
    c.final_summary();

    let rows: Vec<&str> = SIZES.iter().map(|s| s.1).collect();
    let cols = ["system", "mimalloc", "jemalloc"];
    print_ratio_table("alloc_same_thread", &cols, "system", &rows);
    print_ratio_table("alloc_cross_thread", &cols, "system", &rows);
    print_ratio_table(
        "counting_overhead",
        &["plain", "counted", "counted+thread"],
        "plain",
        &["system", "mimalloc", "jemalloc"],
    );
}
