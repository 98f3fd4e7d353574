//! Send queues side by side: 2 producer threads push `SharedMessage` clones
//! (a refcount increment each, so allocation does not dominate) and 1
//! consumer thread drains them in batches, for netbuf's `SendQueue`
//! (single pushes and `push_batch` of 16), `crossbeam_queue::SegQueue`,
//! `Mutex<VecDeque>` and `std::sync::mpsc`. Time per item, from the first
//! push to the last item taken.
//!
//! Every consumer uses the same strategy: take what is there in a batch,
//! drop it, yield when nothing was there (no blocking waits, so the
//! comparison is about the queues, not about the wakeup mechanisms).
//!
//! `cargo bench -p benches --bench queue` prints the ratio tables at the end.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use benches::print_ratio_table;
use criterion::{BenchmarkId, Criterion};
use crossbeam_queue::SegQueue;
use netbuf::{MessagePool, SendQueue, SharedMessage};

const PRODUCERS: u64 = 2;
const DRAIN_BATCH: usize = 256;
const PUSH_BATCH: usize = 16;

/// The operations every variant provides.
trait BenchQueue: Send + Sync + 'static {
    fn push(&self, m: SharedMessage);
    /// Pushes everything in `batch` (emptying it).
    fn push_many(&self, batch: &mut Vec<SharedMessage>) {
        for m in batch.drain(..) {
            self.push(m);
        }
    }
    /// Takes up to `DRAIN_BATCH` items into `out`; returns how many.
    fn drain(&self, out: &mut Vec<SharedMessage>) -> usize;
}

impl BenchQueue for SendQueue<SharedMessage> {
    #[inline]
    fn push(&self, mut m: SharedMessage) {
        // The limit is never reached here, but a full queue must be retried,
        // not dropped.
        while let Err(e) = self.try_push(m) {
            m = e.into_inner();
            thread::yield_now();
        }
    }
    #[inline]
    fn push_many(&self, batch: &mut Vec<SharedMessage>) {
        while self.push_batch(batch).is_err() {
            thread::yield_now();
        }
    }
    #[inline]
    fn drain(&self, out: &mut Vec<SharedMessage>) -> usize {
        self.drain_into(out, DRAIN_BATCH).items
    }
}

impl BenchQueue for SegQueue<SharedMessage> {
    #[inline]
    fn push(&self, m: SharedMessage) {
        SegQueue::push(self, m)
    }
    #[inline]
    fn drain(&self, out: &mut Vec<SharedMessage>) -> usize {
        let mut n = 0;
        while n < DRAIN_BATCH {
            match self.pop() {
                Some(m) => out.push(m),
                None => break,
            }
            n += 1;
        }
        n
    }
}

impl BenchQueue for Mutex<VecDeque<SharedMessage>> {
    #[inline]
    fn push(&self, m: SharedMessage) {
        self.lock().unwrap().push_back(m)
    }
    #[inline]
    fn push_many(&self, batch: &mut Vec<SharedMessage>) {
        self.lock().unwrap().extend(batch.drain(..))
    }
    #[inline]
    fn drain(&self, out: &mut Vec<SharedMessage>) -> usize {
        let mut q = self.lock().unwrap();
        let n = q.len().min(DRAIN_BATCH);
        out.extend(q.drain(..n));
        n
    }
}

/// `std::sync::mpsc`: the sender is cloned per producer, the receiver is
/// used by the consumer only (behind a mutex nobody contends, to fit the
/// trait).
struct StdMpsc {
    tx: Mutex<mpsc::Sender<SharedMessage>>,
    rx: Mutex<mpsc::Receiver<SharedMessage>>,
}

thread_local! {
    static SENDER: std::cell::RefCell<Option<mpsc::Sender<SharedMessage>>> =
        const { std::cell::RefCell::new(None) };
}

impl BenchQueue for StdMpsc {
    #[inline]
    fn push(&self, m: SharedMessage) {
        SENDER.with(|s| {
            let mut s = s.borrow_mut();
            let tx = s.get_or_insert_with(|| self.tx.lock().unwrap().clone());
            tx.send(m).unwrap();
        })
    }
    #[inline]
    fn drain(&self, out: &mut Vec<SharedMessage>) -> usize {
        let rx = self.rx.lock().unwrap();
        let before = out.len();
        out.extend(rx.try_iter().take(DRAIN_BATCH));
        out.len() - before
    }
}

/// Pushes `iters` clones of `msg` from `PRODUCERS` threads (in batches of
/// `batch` if > 1) and drains them on this thread; returns the elapsed time.
fn run<Q: BenchQueue>(q: Arc<Q>, msg: &SharedMessage, iters: u64, batch: usize) -> Duration {
    let per = iters.div_ceil(PRODUCERS);
    let total = per * PRODUCERS;
    let start = Instant::now();
    thread::scope(|s| {
        for _ in 0..PRODUCERS {
            let q = q.clone();
            s.spawn(move || {
                if batch <= 1 {
                    for _ in 0..per {
                        q.push(msg.clone());
                    }
                } else {
                    let mut buf = Vec::with_capacity(batch);
                    let mut left = per;
                    while left > 0 {
                        let n = (batch as u64).min(left);
                        buf.extend((0..n).map(|_| msg.clone()));
                        q.push_many(&mut buf);
                        left -= n;
                    }
                }
                // Forget the thread's mpsc sender so the next run starts
                // fresh.
                SENDER.with(|s| s.borrow_mut().take());
            });
        }
        let mut out = Vec::with_capacity(DRAIN_BATCH);
        let mut got = 0;
        while got < total {
            let n = q.drain(&mut out);
            out.clear(); // drops the clones: the IO thread's frees
            got += n as u64;
            if n == 0 {
                thread::yield_now();
            }
        }
    });
    start.elapsed()
}

fn queues(c: &mut Criterion) {
    let pool = MessagePool::new();
    let msg = pool.message_from(&[7u8; 64]).unwrap().freeze();
    let mut g = c.benchmark_group("queue_2p1c");
    let id = |name: &str| BenchmarkId::new(name, "64B");
    g.bench_function(id("send_queue"), |b| {
        b.iter_custom(|iters| {
            let q = Arc::new(
                SendQueue::builder()
                    .limit(netbuf::MAX_LIMIT)
                    .build::<SharedMessage>(),
            );
            run(q, &msg, iters, 1)
        })
    });
    g.bench_function(id("send_queue_batch16"), |b| {
        b.iter_custom(|iters| {
            let q = Arc::new(
                SendQueue::builder()
                    .limit(netbuf::MAX_LIMIT)
                    .build::<SharedMessage>(),
            );
            run(q, &msg, iters, PUSH_BATCH)
        })
    });
    g.bench_function(id("segqueue"), |b| {
        b.iter_custom(|iters| run(Arc::new(SegQueue::new()), &msg, iters, 1))
    });
    g.bench_function(id("mutex_vecdeque"), |b| {
        b.iter_custom(|iters| run(Arc::new(Mutex::new(VecDeque::new())), &msg, iters, 1))
    });
    g.bench_function(id("mutex_vecdeque_batch16"), |b| {
        b.iter_custom(|iters| {
            run(
                Arc::new(Mutex::new(VecDeque::new())),
                &msg,
                iters,
                PUSH_BATCH,
            )
        })
    });
    g.bench_function(id("std_mpsc"), |b| {
        b.iter_custom(|iters| {
            let (tx, rx) = mpsc::channel();
            let q = Arc::new(StdMpsc {
                tx: Mutex::new(tx),
                rx: Mutex::new(rx),
            });
            run(q, &msg, iters, 1)
        })
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    queues(&mut c);
    c.final_summary();

    let cols = [
        "send_queue",
        "send_queue_batch16",
        "segqueue",
        "mutex_vecdeque",
        "mutex_vecdeque_batch16",
        "std_mpsc",
    ];
    print_ratio_table("queue_2p1c", &cols, "mutex_vecdeque", &["64B"]);
    print_ratio_table("queue_2p1c", &cols, "segqueue", &["64B"]);
}
