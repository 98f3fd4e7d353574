//! Memory of a run: the allocator set-up of the harness (glibc thresholds,
//! per-thread release), the monitor thread that samples RSS and the pool
//! against their bounds, and the after-load check that the memory comes
//! back ([`AFTER_LOAD_SLACK`] within [`AFTER_LOAD_WAIT`]).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::server::Server;

use super::Ctx;
use super::report::{Memory, mib};
use super::rss::{rss_bytes, rss_bytes_of};
use crate::sync::LockExt;

/// RSS the process may keep over its baseline once every session closed
/// (issue 16: the server gives its memory back).
pub const AFTER_LOAD_SLACK: u64 = 8 << 20;
/// How long after the last session closed it has to get there.
pub const AFTER_LOAD_WAIT: Duration = Duration::from_secs(5);

/// Polls this process's RSS ([`settle_rss_of`]).
pub(super) fn settle_rss(bound: u64) -> (u64, Duration) {
    settle_rss_of("self", bound)
}

/// Polls the RSS of process `pid` (a number or `self`) every 100 ms for up
/// to [`AFTER_LOAD_WAIT`] until it is at most `bound`; returns the last
/// reading and the time waited.
pub fn settle_rss_of(pid: &str, bound: u64) -> (u64, Duration) {
    let t = Instant::now();
    loop {
        let now = rss_bytes_of(pid);
        if now <= bound || t.elapsed() >= AFTER_LOAD_WAIT {
            return (now, t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Under glibc's malloc, fixes the mmap threshold at its default (128 KiB)
/// for this process, which also stops glibc from raising its trim
/// threshold. The soak's client threads run in the server's process, each
/// with its own malloc arena, and echo bodies up to 1 MiB: glibc then raises
/// both thresholds dynamically (to the largest freed mmap'd chunk), and the
/// free top of each client thread's arena (2-4 MiB of 16 arenas, 40+ MiB in
/// a run) stays resident, which `malloc_trim` does not reach. That is
/// memory of the harness, not of the server (whose own after-load RSS,
/// measured in a process of its own, is in the README), so the soak pins
/// the thresholds, and caps the arenas, to check the after-load bound on
/// what the server holds.
pub(super) fn pin_glibc_thresholds() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if allocators::active() == allocators::AllocatorKind::System {
        // SAFETY: `mallopt` takes no pointer; M_MMAP_THRESHOLD (-3) with a
        // value within glibc's limits only changes its policy.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10) };
        // And at most 4 arenas: each of the harness's dozens of threads
        // would otherwise get one (up to 8 per core), each keeping its
        // fragments and a top below the trim threshold after the run.
        // SAFETY: as above; M_ARENA_MAX (-8) only caps future arenas.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 4) };
    }
}

/// Runs a harness thread's body, then gives back what the allocator keeps
/// for that thread alone ([`allocators::release_thread_memory`]: mimalloc's
/// heap, jemalloc's thread cache) before it exits: the harness's client
/// and reader threads live in the server's process, and their leftovers
/// would otherwise count against the server's after-load bound (a
/// mimalloc run kept 44 MiB of exited threads' pages).
pub(crate) fn tidy<T>(body: impl FnOnce() -> T) -> T {
    let out = body();
    allocators::release_thread_memory();
    out
}

/// The memory monitor: every 100 ms until `stop`, samples RSS and the
/// pool's stats into `memory` (the peaks) and fails the run on each sample
/// over its bound.
pub(super) fn monitor(server: &Server, memory: &Mutex<Memory>, stop: &AtomicBool, ctx: &Ctx) {
    while !stop.load(Ordering::Acquire) {
        let rss = rss_bytes();
        let st = server.pool().stats();
        let mut m = memory.locked();
        m.samples += 1;
        m.peak_rss = m.peak_rss.max(rss);
        m.peak_live_bytes = m.peak_live_bytes.max(st.live_bytes);
        m.peak_live_messages = m.peak_live_messages.max(st.live_messages);
        m.peak_cached = m.peak_cached.max(st.bytes_cached);
        if rss > m.rss_bound {
            ctx.fail(format!(
                "RSS {:.1} MiB over its bound {:.1} MiB",
                mib(rss),
                mib(m.rss_bound)
            ));
        }
        if st.live_bytes > m.live_bytes_bound {
            ctx.fail(format!(
                "pool live bytes {:.1} MiB over their bound {:.1} MiB",
                mib(st.live_bytes),
                mib(m.live_bytes_bound)
            ));
        }
        if st.bytes_cached > m.cached_bound {
            ctx.fail(format!(
                "pool cache {:.1} MiB over its bound {:.1} MiB",
                mib(st.bytes_cached),
                mib(m.cached_bound)
            ));
        }
        drop(m);
        std::thread::sleep(Duration::from_millis(100));
    }
}
