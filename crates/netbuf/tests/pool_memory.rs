//! Memory given back: trim, idle threads' caches, dropped pools (counts,
//! never timings).

use std::sync::mpsc;
use std::thread;

use netbuf::test_util::quiet_pool;

allocators::global_allocator!();

/// The tests of this file run one at a time: one of them reads the
/// process-wide live bytes.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A worker thread that runs closures sent to it and then waits, idle,
/// like an IO thread parked in `poll`.
struct Worker {
    tx: mpsc::Sender<Box<dyn FnOnce() + Send>>,
    handle: thread::JoinHandle<()>,
}

impl Worker {
    fn new() -> Worker {
        let (tx, rx) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let handle = thread::spawn(move || {
            for job in rx {
                job();
            }
        });
        Worker { tx, handle }
    }

    fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        let (rtx, rrx) = mpsc::channel();
        self.tx
            .send(Box::new(move || {
                let _ = rtx.send(f());
            }))
            .unwrap();
        rrx.recv().unwrap()
    }

    fn stop(self) {
        drop(self.tx);
        self.handle.join().unwrap();
    }
}

#[test]
fn trim_returns_the_depot_and_the_callers_cache() {
    let _g = serial();
    let pool = quiet_pool().thread_cache_bytes(8 * 4096).build();
    let ms: Vec<_> = (0..64).map(|_| pool.alloc(4096).unwrap()).collect();
    drop(ms);
    let s = pool.stats();
    assert_eq!(s.live_messages, 0);
    assert_eq!(s.bytes_cached, 64 * 4096);
    assert!(s.bytes_in_depot > 0, "{s:?}");
    assert_eq!(s.bytes_in_depot + s.bytes_in_thread_caches, s.bytes_cached);
    assert_eq!(pool.trim(), 64 * 4096);
    let s = pool.stats();
    assert_eq!((s.bytes_cached, s.bytes_in_depot, s.bytes_held), (0, 0, 0));
}

#[test]
fn an_idle_thread_releases_its_caches_on_request() {
    let _g = serial();
    let pool = quiet_pool().build();
    let w = Worker::new();
    let p = pool.clone();
    w.run(move || drop((0..10).map(|_| p.alloc(100).unwrap()).collect::<Vec<_>>()));
    let s = pool.stats();
    assert_eq!(s.bytes_in_thread_caches, 10 * 4096);
    // trim() from here cannot reach the idle worker's cache...
    pool.trim();
    assert_eq!(pool.stats().bytes_in_thread_caches, 10 * 4096);
    // ...the worker gives it back itself when it goes idle.
    assert_eq!(w.run(netbuf::release_thread_caches), 10 * 4096);
    assert_eq!(w.run(netbuf::thread_cached_pools), 0);
    let s = pool.stats();
    assert_eq!((s.bytes_cached, s.bytes_held, s.threads), (0, 0, 0));
    // And it still works afterwards.
    let p = pool.clone();
    w.run(move || drop(p.alloc(10).unwrap()));
    assert_eq!(pool.stats().threads, 1);
    w.stop();
}

#[test]
fn dropped_pools_do_not_pile_up_in_a_workers_cache_list() {
    let _g = serial();
    let w = Worker::new();
    let cycle = |n: usize| {
        for _ in 0..n {
            let pool = quiet_pool().build();
            let p = pool.clone();
            w.run(move || drop(p.alloc(64).unwrap()));
            drop(pool);
        }
    };
    // Warm up (the worker's cache list, the harness's own buffers), then
    // count what 100 more dropped pools leave behind: without the sweep each
    // keeps its cached 4 KiB block and its core alive (over 400 KiB).
    cycle(10);
    let before = allocators::global_stats().live_bytes;
    cycle(100);
    // Each new pool the worker registered swept the dropped ones: only the
    // last stays cached (the worker has not touched a pool since).
    assert_eq!(w.run(netbuf::thread_cached_pools), 1);
    let grown = allocators::global_stats().live_bytes - before;
    assert!(grown < 4096, "100 dropped pools left {grown} bytes behind");
    // Going idle frees the last one too.
    w.run(netbuf::release_thread_caches);
    assert_eq!(w.run(netbuf::thread_cached_pools), 0);
    w.stop();
}
