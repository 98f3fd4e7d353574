//! Shared helpers for the benchmarks: the allocators under comparison and
//! the ratio tables printed after each criterion run.

use std::alloc::{GlobalAlloc, System};
use std::path::PathBuf;

pub use mimalloc::MiMalloc;
pub use tikv_jemallocator::Jemalloc;

/// The three global allocators every allocation benchmark compares,
/// called directly through `GlobalAlloc`.
pub fn allocators() -> [(&'static str, &'static (dyn GlobalAlloc + Sync)); 3] {
    static SYSTEM: System = System;
    static MI: MiMalloc = MiMalloc;
    static JE: Jemalloc = Jemalloc;
    [("system", &SYSTEM), ("mimalloc", &MI), ("jemalloc", &JE)]
}

/// Where criterion writes its results: `$CARGO_TARGET_DIR/criterion`, or
/// `target/criterion` found from the running bench executable
/// (`target/<profile>/deps/<bench>`).
pub fn criterion_dir() -> Option<PathBuf> {
    if let Ok(home) = std::env::var("CRITERION_HOME") {
        return Some(PathBuf::from(home));
    }
    if let Ok(t) = std::env::var("CARGO_TARGET_DIR") {
        return Some(PathBuf::from(t).join("criterion"));
    }
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.join("criterion"))
}

/// The median time in nanoseconds criterion estimated for `group/id` in the
/// latest run, if there is one (read by the report's parser,
/// [`report::criterion`]).
pub fn median_ns(group: &str, id: &str) -> Option<f64> {
    let root = criterion_dir()?;
    let new = root.join(sanitize(group)).join(sanitize_id(id)).join("new");
    report::criterion::read_one(&new, &root).map(|e| e.median_ns)
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '?' | '"' | '/' | '\\' | '*' | '<' | '>' | ':' | '|' | '^' => '_',
            c => c,
        })
        .collect()
}

fn sanitize_id(id: &str) -> PathBuf {
    // A benchmark id "function/parameter" is stored as two directories.
    id.split('/').map(sanitize).collect()
}

/// Whether criterion runs in its smoke mode (`--test`, or run by
/// `cargo test`, which does not pass `--bench`), where no estimates are
/// written.
pub fn is_test_mode() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--test") || !args.iter().any(|a| a == "--bench")
}

/// Prints one table per group: for each row label and each column, the
/// median and its ratio to `baseline` (a column name). Ids are
/// `column/row` inside the group.
///
/// A ratio above 1 means the column is *faster* than the baseline.
pub fn print_ratio_table(group: &str, columns: &[&str], baseline: &str, rows: &[&str]) {
    if is_test_mode() {
        return;
    }
    println!("\n## {group}: median time, speed-up vs {baseline} (x > 1 is faster)");
    let mut header = format!("| {:<14} |", "case");
    for c in columns {
        header.push_str(&format!(" {c:>22} |"));
    }
    println!("{header}");
    println!("|{}", "---|".repeat(columns.len() + 1));
    for r in rows {
        let base = median_ns(group, &format!("{baseline}/{r}"));
        let mut line = format!("| {r:<14} |");
        for c in columns {
            let cell = match (median_ns(group, &format!("{c}/{r}")), base) {
                (Some(t), Some(b)) => format!("{} ({:.2}x)", fmt_ns(t), b / t),
                (Some(t), None) => fmt_ns(t),
                _ => "-".to_string(),
            };
            line.push_str(&format!(" {cell:>22} |"));
        }
        println!("{line}");
    }
}

pub use report::criterion::fmt_ns;

/// mimalloc as a `Copy` type (`mimalloc::MiMalloc` is not `Clone`), so it
/// fits in a copyable `allocator-api2` handle like the other two.
#[derive(Debug, Clone, Copy, Default)]
pub struct MimallocCopy;

// SAFETY: every method forwards unchanged to `MiMalloc`, which upholds the
// `GlobalAlloc` contract.
unsafe impl GlobalAlloc for MimallocCopy {
    #[inline]
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { MiMalloc.alloc(layout) }
    }
    #[inline]
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { MiMalloc.alloc_zeroed(layout) }
    }
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }
    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { MiMalloc.realloc(ptr, layout, new_size) }
    }
}

pub mod peers;
pub mod report;
pub mod zmtp;

/// Makes `iters` items on this thread and drops them on another, in
/// batches of 64; returns the time until the last is dropped.
pub fn cross_thread<T: Send + 'static>(
    iters: u64,
    mut make: impl FnMut() -> T,
) -> std::time::Duration {
    const BATCH: usize = 64;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<T>>(8);
    let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<T>>();
    let freer = std::thread::spawn(move || {
        for mut batch in rx {
            batch.clear();
            let _ = back_tx.send(batch);
        }
    });
    let start = std::time::Instant::now();
    let mut left = iters as usize;
    while left > 0 {
        let n = left.min(BATCH);
        let mut batch = back_rx
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH));
        batch.extend((0..n).map(|_| make()));
        tx.send(batch).expect("freer alive");
        left -= n;
    }
    drop(tx);
    freer.join().expect("freer");
    start.elapsed()
}
