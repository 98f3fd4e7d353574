//! Global allocators side by side: alloc + free of 16 B .. 1 MiB, on one
//! thread and across threads (allocate on one, free on another), for system,
//! mimalloc and jemalloc called directly through `GlobalAlloc`, plus the
//! overhead of the `Counting` wrapper.
//!
//! `cargo bench -p benches --bench alloc` prints ratio tables at the end.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::time::Duration;

use allocators::{Counters, Counting};
use benches::{Jemalloc, MiMalloc, allocators, cross_thread, print_ratio_table};
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

/// A block of one of the compared allocators, freed (by whichever thread
/// drops it) through the allocator that made it.
struct Block {
    ptr: *mut u8,
    layout: Layout,
    alloc: &'static (dyn GlobalAlloc + Sync),
}

// SAFETY: the block is owned by exactly one `Block` and the allocators are
// `Sync`, so it may be freed on another thread.
unsafe impl Send for Block {}

impl Block {
    fn new(alloc: &'static (dyn GlobalAlloc + Sync), layout: Layout) -> Block {
        // SAFETY: non-zero size; the block is written within bounds.
        let ptr = unsafe { alloc.alloc(layout) };
        assert!(!ptr.is_null());
        // SAFETY: `ptr` is valid for `layout.size() >= 1` bytes.
        unsafe { ptr.write_volatile(1) };
        Block { ptr, layout, alloc }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        // SAFETY: allocated by `self.alloc` with `self.layout`, freed once.
        unsafe { self.alloc.dealloc(self.ptr, self.layout) }
    }
}

fn cross_thread_group(c: &mut Criterion) {
    let mut g = c.benchmark_group("alloc_cross_thread");
    for (name, a) in allocators() {
        for (size, label) in SIZES {
            let layout = Layout::from_size_align(size, 8).unwrap();
            g.bench_function(BenchmarkId::new(name, label), |b| {
                b.iter_custom(|iters| cross_thread(iters, || Block::new(a, layout)))
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
    cross_thread_group(&mut c);
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
