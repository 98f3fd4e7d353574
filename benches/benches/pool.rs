//! The message pool against the allocators, side by side in one run:
//!
//! * `msg_same_thread` / `msg_cross_thread`: alloc + fill + free of 64 B ..
//!   1 MiB messages, `MessagePool` vs `Vec<u8>` on system, mimalloc and
//!   jemalloc (each called directly through an `allocator-api2` handle; the
//!   pool's own blocks and heap fallback come from the same allocator).
//! * `broadcast`: 1,000 sessions x 100 rounds, per-session outboxes drained
//!   every round: copy per recipient (under each allocator) vs
//!   `SharedMessage` vs `Arc<[u8]>` vs `bytes::Bytes`.
//! * `closures_100k`: 100,000 small closures boxed by the allocator vs
//!   stored one per pooled 4 KiB block (the field report's 3.7x pitfall).
//!
//! After the criterion run it prints ratio tables and allocations per
//! operation (from the `allocators` counting wrappers).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use allocator_api2::alloc::Allocator;
use allocators::{Counters, Counting, GlobalHandle};
use benches::{Jemalloc, MiMalloc, MimallocCopy, cross_thread, print_ratio_table};
use criterion::{BenchmarkId, Criterion};
use netbuf::test_util::quiet_pool;
use netbuf::{MessagePool, SharedMessage};

allocators::global_allocator!();

static SYS_C: Counters = Counters::new();
static MI_C: Counters = Counters::new();
static JE_C: Counters = Counters::new();

type H<A> = GlobalHandle<Counting<A>>;

fn handles() -> (H<System>, H<MimallocCopy>, H<Jemalloc>) {
    (
        GlobalHandle(Counting::with_counters(System, &SYS_C)),
        GlobalHandle(Counting::with_counters(MimallocCopy, &MI_C)),
        GlobalHandle(Counting::with_counters(Jemalloc, &JE_C)),
    )
}

const ALLOCS: [&str; 3] = ["system", "mimalloc", "jemalloc"];

const MSG_SIZES: [(usize, &str); 5] = [
    (64, "64B"),
    (512, "512B"),
    (4096, "4KiB"),
    (64 << 10, "64KiB"),
    (1 << 20, "1MiB"),
];

fn pool_in<A: Allocator + Clone + Send + Sync + 'static>(h: A) -> MessagePool<A> {
    quiet_pool().build_in(h)
}

/// One message's life: alloc, fill, free.
#[inline]
fn vec_cycle<A: Allocator + Clone>(h: &A, size: usize) {
    let mut v = allocator_api2::vec::Vec::with_capacity_in(size, h.clone());
    v.resize(size, 7u8);
    black_box(&v);
}

#[inline]
fn pool_cycle<A: Allocator + Send + Sync + 'static>(pool: &MessagePool<A>, size: usize) {
    let mut m = pool.alloc(size).expect("within limits");
    m.resize(size, 7).expect("fits");
    black_box(&m);
}

fn msg_same_thread(c: &mut Criterion) {
    let (sys, mi, je) = handles();
    let mut g = c.benchmark_group("msg_same_thread");
    macro_rules! variants {
        ($name:literal, $h:expr) => {{
            let h = $h;
            let pool = pool_in(h.clone());
            for (size, label) in MSG_SIZES {
                g.bench_function(BenchmarkId::new(concat!("vec-", $name), label), |b| {
                    b.iter(|| vec_cycle(&h, size))
                });
                g.bench_function(BenchmarkId::new(concat!("pool-", $name), label), |b| {
                    b.iter(|| pool_cycle(&pool, size))
                });
            }
        }};
    }
    variants!("system", sys);
    variants!("mimalloc", mi);
    variants!("jemalloc", je);
    g.finish();
}

/// Alloc + free of a 4 KiB message without filling it: the allocator's own
/// cost, which the fill hides in `msg_same_thread`.
fn alloc_free_4k(c: &mut Criterion) {
    let (sys, mi, je) = handles();
    let mut g = c.benchmark_group("alloc_free_4k");
    macro_rules! variants {
        ($name:literal, $h:expr) => {{
            let h = $h;
            let pool = pool_in(h);
            g.bench_function(BenchmarkId::new("vec", $name), |b| {
                b.iter(|| {
                    let mut v = allocator_api2::vec::Vec::<u8, _>::with_capacity_in(4096, h);
                    v.push(1);
                    black_box(&v);
                })
            });
            g.bench_function(BenchmarkId::new("pool", $name), |b| {
                b.iter(|| {
                    let mut m = pool.alloc(4096).expect("pooled");
                    m.extend_from_slice(&[1]).expect("fits");
                    black_box(&m);
                })
            });
        }};
    }
    variants!("system", sys);
    variants!("mimalloc", mi);
    variants!("jemalloc", je);
    g.finish();
}

fn msg_cross_thread(c: &mut Criterion) {
    let (sys, mi, je) = handles();
    let mut g = c.benchmark_group("msg_cross_thread");
    macro_rules! variants {
        ($name:literal, $h:expr) => {{
            let h = $h;
            let pool = pool_in(h.clone());
            for (size, label) in MSG_SIZES {
                g.bench_function(BenchmarkId::new(concat!("vec-", $name), label), |b| {
                    b.iter_custom(|iters| {
                        cross_thread(iters, || {
                            let mut v = allocator_api2::vec::Vec::with_capacity_in(size, h);
                            v.resize(size, 7u8);
                            v
                        })
                    })
                });
                g.bench_function(BenchmarkId::new(concat!("pool-", $name), label), |b| {
                    b.iter_custom(|iters| {
                        cross_thread(iters, || {
                            let mut m = pool.alloc(size).expect("within limits");
                            m.resize(size, 7).expect("fits");
                            m
                        })
                    })
                });
            }
        }};
    }
    variants!("system", sys);
    variants!("mimalloc", mi);
    variants!("jemalloc", je);
    g.finish();
}

const SESSIONS: usize = 1000;
const ROUNDS: usize = 100;
const BCAST_SIZES: [(usize, &str); 3] = [(64, "64B"), (512, "512B"), (4096, "4KiB")];

/// 1,000 sessions x 100 rounds: each round makes one payload's worth of
/// messages with `make` (one per recipient), queues them in every session's
/// outbox, then drains every outbox (the "write" drops the message).
fn broadcast_run<T>(outboxes: &mut [VecDeque<T>], mut make_round: impl FnMut(&mut [VecDeque<T>])) {
    for _ in 0..ROUNDS {
        make_round(outboxes);
        for o in outboxes.iter_mut() {
            while let Some(m) = o.pop_front() {
                black_box(&m);
            }
        }
    }
}

fn outboxes<T>() -> Vec<VecDeque<T>> {
    (0..SESSIONS).map(|_| VecDeque::with_capacity(4)).collect()
}

fn copy_round<A: Allocator + Copy>(
    h: A,
    src: &[u8],
) -> impl FnMut(&mut [VecDeque<allocator_api2::vec::Vec<u8, A>>]) {
    move |outs| {
        for o in outs.iter_mut() {
            let mut v = allocator_api2::vec::Vec::with_capacity_in(src.len(), h);
            v.extend_from_slice(src);
            o.push_back(v);
        }
    }
}

fn broadcast(c: &mut Criterion) {
    let (sys, mi, je) = handles();
    let pool = quiet_pool().build();
    let mut g = c.benchmark_group("broadcast");
    g.sample_size(10);
    for (size, label) in BCAST_SIZES {
        let src = vec![0xabu8; size];
        macro_rules! copy_variant {
            ($name:literal, $h:expr) => {{
                let mut outs = outboxes();
                g.bench_function(BenchmarkId::new(concat!("copy-", $name), label), |b| {
                    b.iter(|| broadcast_run(&mut outs, copy_round($h, &src)))
                });
            }};
        }
        copy_variant!("system", sys);
        copy_variant!("mimalloc", mi);
        copy_variant!("jemalloc", je);
        let mut outs: Vec<VecDeque<SharedMessage>> = outboxes();
        g.bench_function(BenchmarkId::new("shared", label), |b| {
            b.iter(|| {
                broadcast_run(&mut outs, |outs| {
                    let m = pool.message_from(&src).expect("fits").freeze();
                    for o in outs.iter_mut() {
                        o.push_back(m.clone());
                    }
                })
            })
        });
        let mut outs: Vec<VecDeque<Arc<[u8]>>> = outboxes();
        g.bench_function(BenchmarkId::new("arc", label), |b| {
            b.iter(|| {
                broadcast_run(&mut outs, |outs| {
                    let m: Arc<[u8]> = Arc::from(&src[..]);
                    for o in outs.iter_mut() {
                        o.push_back(m.clone());
                    }
                })
            })
        });
        let mut outs: Vec<VecDeque<bytes::Bytes>> = outboxes();
        g.bench_function(BenchmarkId::new("bytes", label), |b| {
            b.iter(|| {
                broadcast_run(&mut outs, |outs| {
                    let m = bytes::Bytes::copy_from_slice(&src);
                    for o in outs.iter_mut() {
                        o.push_back(m.clone());
                    }
                })
            })
        });
    }
    g.finish();
}

/// A type-erased closure: what `Box<dyn FnOnce() -> u64>` is, with the
/// memory coming from wherever the variant puts it.
struct Thunk<S> {
    storage: S,
    ptr: NonNull<u8>,
    call: unsafe fn(NonNull<u8>) -> u64,
}

unsafe fn call_in_place<F: FnOnce() -> u64>(p: NonNull<u8>) -> u64 {
    // SAFETY: `p` holds an initialised `F` written by `make_thunk`; it is
    // read out exactly once.
    let f = unsafe { p.cast::<F>().read() };
    f()
}

/// Closures as a game server queues them: a few words of captured state.
fn closure(i: u64) -> impl FnOnce() -> u64 {
    let (a, b, c) = (i, i.rotate_left(7), i ^ 0x9e37_79b9);
    move || a.wrapping_mul(b) ^ c
}

const CLOSURES: u64 = 100_000;

/// Boxed by allocator `h` (what `Box<dyn FnOnce, A>` would do).
fn closures_boxed<A: Allocator>(h: &A) -> u64 {
    let mut q: Vec<Thunk<Layout>> = Vec::with_capacity(CLOSURES as usize);
    for i in 0..CLOSURES {
        let f = closure(i);
        let layout = Layout::for_value(&f);
        let p = h.allocate(layout).expect("alloc").cast::<u8>();
        // SAFETY: `p` is a fresh block with `f`'s layout.
        unsafe { p.cast().write(f) };
        q.push(Thunk {
            storage: layout,
            ptr: p,
            call: call_in_place_of(&closure(0)),
        });
    }
    let mut sum = 0u64;
    for t in q {
        // SAFETY: the thunk's closure is read once, then its block is
        // returned with the layout it was allocated with.
        unsafe {
            sum = sum.wrapping_add((t.call)(t.ptr));
            h.deallocate(t.ptr, t.storage);
        }
    }
    sum
}

/// One pooled 4 KiB block per closure, as the field report's pool did.
fn closures_pooled<A: Allocator + Send + Sync + 'static>(pool: &MessagePool<A>) -> u64 {
    let mut q: Vec<Thunk<netbuf::Message>> = Vec::with_capacity(CLOSURES as usize);
    for i in 0..CLOSURES {
        let f = closure(i);
        let mut m = pool.alloc(4096).expect("pooled block");
        let p = NonNull::new(m.spare_capacity_mut().as_mut_ptr().cast::<u8>()).expect("non-null");
        // SAFETY: the block has 4 KiB of 16-aligned space, more than `f`
        // needs; the message keeps it alive until the call.
        unsafe { p.cast().write(f) };
        q.push(Thunk {
            storage: m,
            ptr: p,
            call: call_in_place_of(&closure(0)),
        });
    }
    let mut sum = 0u64;
    for t in q {
        // SAFETY: the closure was written in the block `t.storage` owns.
        sum = sum.wrapping_add(unsafe { (t.call)(t.ptr) });
        drop(t.storage);
    }
    sum
}

fn call_in_place_of<F: FnOnce() -> u64>(_: &F) -> unsafe fn(NonNull<u8>) -> u64 {
    call_in_place::<F>
}

/// `std`'s own `Box<dyn FnOnce>` on this binary's global allocator.
fn closures_std_box() -> u64 {
    let q: Vec<Box<dyn FnOnce() -> u64>> = (0..CLOSURES)
        .map(|i| Box::new(closure(i)) as Box<dyn FnOnce() -> u64>)
        .collect();
    q.into_iter().fold(0u64, |s, f| s.wrapping_add(f()))
}

fn closures(c: &mut Criterion) {
    let (sys, mi, je) = handles();
    let mut g = c.benchmark_group("closures_100k");
    g.sample_size(10);
    macro_rules! variants {
        ($name:literal, $h:expr) => {{
            let h = $h;
            // The pool is kept (warm) across iterations, as a server's is.
            let pool = pool_in(h);
            g.bench_function(BenchmarkId::new("box", $name), |b| {
                b.iter(|| closures_boxed(&h))
            });
            g.bench_function(BenchmarkId::new("pool4k", $name), |b| {
                b.iter(|| closures_pooled(&pool))
            });
        }};
    }
    variants!("system", sys);
    variants!("mimalloc", mi);
    variants!("jemalloc", je);
    g.bench_function(BenchmarkId::new("std-box", "global"), |b| {
        b.iter(closures_std_box)
    });
    g.finish();
}

/// Allocator calls (allocations + reallocations) made by `f`, through the
/// three counted handles and this binary's counted global allocator.
fn allocs_of(f: impl FnOnce()) -> u64 {
    let snap = || [SYS_C.snapshot(), MI_C.snapshot(), JE_C.snapshot()];
    let before = snap();
    let t0 = allocators::thread_stats();
    f();
    let after = snap();
    let mut n = allocators::thread_stats().since(&t0).allocations_per(1) as u64;
    for (a, b) in after.iter().zip(before.iter()) {
        let d = a.since(b);
        n += d.allocations + d.reallocations;
    }
    n
}

fn print_allocation_counts() {
    if benches::is_test_mode() {
        return;
    }
    let (sys, _, _) = handles();
    println!("\n## Allocator calls per operation (counting allocator, steady state)");
    println!("| operation | allocator calls per op |");
    println!("|---|---:|");
    let pool = pool_in(sys);
    for (size, label) in MSG_SIZES {
        for _ in 0..1000 {
            pool_cycle(&pool, size); // warm the cache
        }
        let n = allocs_of(|| (0..10_000).for_each(|_| pool_cycle(&pool, size)));
        println!(
            "| pool alloc+fill+free {label} | {:.3} |",
            n as f64 / 10_000.0
        );
        let n = allocs_of(|| (0..10_000).for_each(|_| vec_cycle(&sys, size)));
        println!(
            "| Vec alloc+fill+free {label} | {:.3} |",
            n as f64 / 10_000.0
        );
    }
    let big = pool_in(sys);
    let src = [1u8; 512];
    let mut outs: Vec<VecDeque<SharedMessage>> = outboxes();
    let n = allocs_of(|| {
        broadcast_run(&mut outs, |outs| {
            let m = big.message_from(&src).expect("fits").freeze();
            for o in outs.iter_mut() {
                o.push_back(m.clone());
            }
        })
    });
    println!(
        "| broadcast 512 B to 1,000 sessions, SharedMessage (per broadcast) | {:.3} |",
        n as f64 / ROUNDS as f64
    );
    let mut outs = outboxes();
    let n = allocs_of(|| broadcast_run(&mut outs, copy_round(sys, &src)));
    println!(
        "| broadcast 512 B to 1,000 sessions, copy (per broadcast) | {:.1} |",
        n as f64 / ROUNDS as f64
    );
    let n = allocs_of(|| {
        black_box(closures_boxed(&sys));
    });
    println!("| closure, boxed | {:.3} |", n as f64 / CLOSURES as f64);
    let warm = pool_in(sys);
    black_box(closures_pooled(&warm));
    let n = allocs_of(|| {
        black_box(closures_pooled(&warm));
    });
    println!(
        "| closure, pooled 4 KiB block (warm pool) | {:.3} |",
        n as f64 / CLOSURES as f64
    );
}

fn main() {
    // Sanity: the three counted handles really are the named allocators.
    let _ = (&System as &dyn GlobalAlloc, MiMalloc, Jemalloc);
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    msg_same_thread(&mut c);
    alloc_free_4k(&mut c);
    msg_cross_thread(&mut c);
    broadcast(&mut c);
    closures(&mut c);
    c.final_summary();

    let msg_rows: Vec<&str> = MSG_SIZES.iter().map(|s| s.1).collect();
    for group in ["msg_same_thread", "msg_cross_thread"] {
        for a in ALLOCS {
            let vec = format!("vec-{a}");
            let pool = format!("pool-{a}");
            print_ratio_table(group, &[&vec, &pool], &vec, &msg_rows);
        }
        print_ratio_table(
            group,
            &["pool-system", "vec-system", "vec-mimalloc", "vec-jemalloc"],
            "pool-system",
            &msg_rows,
        );
    }
    print_ratio_table("alloc_free_4k", &["vec", "pool"], "vec", &ALLOCS);
    let bc_rows: Vec<&str> = BCAST_SIZES.iter().map(|s| s.1).collect();
    print_ratio_table(
        "broadcast",
        &[
            "copy-system",
            "copy-mimalloc",
            "copy-jemalloc",
            "shared",
            "arc",
            "bytes",
        ],
        "copy-system",
        &bc_rows,
    );
    print_ratio_table("broadcast", &["shared", "arc", "bytes"], "arc", &bc_rows);
    print_ratio_table("closures_100k", &["box", "pool4k"], "box", &ALLOCS);
    print_allocation_counts();
}
