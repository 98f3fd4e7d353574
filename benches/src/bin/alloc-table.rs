//! A quick allocator comparison that prints one table: alloc + touch + free
//! of typical message sizes for system, mimalloc and jemalloc, called
//! directly through `GlobalAlloc`, same-thread. Medians of 7 timed rounds,
//! ratios against the system allocator. The criterion bench
//! (`cargo bench -p benches --bench alloc`) is the rigorous version.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::time::Instant;

allocators::global_allocator!();

fn ns_per_op(a: &dyn GlobalAlloc, size: usize, iters: u32) -> f64 {
    let layout = Layout::from_size_align(size, 8).expect("valid layout");
    let mut rounds = [0f64; 7];
    for r in rounds.iter_mut() {
        let t = Instant::now();
        for _ in 0..iters {
            // SAFETY: non-zero size; written within bounds; freed with the
            // same layout by the same allocator.
            unsafe {
                let p = a.alloc(layout);
                assert!(!p.is_null());
                p.write_volatile(1);
                black_box(p);
                a.dealloc(p, layout);
            }
        }
        *r = t.elapsed().as_nanos() as f64 / f64::from(iters);
    }
    rounds.sort_by(f64::total_cmp);
    rounds[3]
}

fn main() {
    let sizes = [16usize, 64, 512, 4096, 65536, 1 << 20];
    println!(
        "allocator comparison (alloc + touch + free, same thread, median of 7 rounds)\nglobal allocator of this binary: {} (counted)\n",
        allocators::active()
    );
    println!(
        "| {:>8} | {:>18} | {:>18} | {:>18} |",
        "size", "system", "mimalloc", "jemalloc"
    );
    println!("|---:|---:|---:|---:|");
    for size in sizes {
        let iters = if size >= 65536 { 20_000 } else { 200_000 };
        let times: Vec<f64> = benches::allocators()
            .iter()
            .map(|(_, a)| ns_per_op(*a, size, iters))
            .collect();
        let base = times[0];
        let cells: Vec<String> = times
            .iter()
            .map(|t| format!("{:.1} ns ({:.2}x)", t, base / t))
            .collect();
        println!(
            "| {:>8} | {:>18} | {:>18} | {:>18} |",
            size, cells[0], cells[1], cells[2]
        );
    }
    let s = allocators::global_stats();
    println!(
        "\n(x > 1: faster than system.) This process made {} allocations through its own global allocator; peak live {} bytes.",
        s.allocations, s.peak_live_bytes
    );
}
