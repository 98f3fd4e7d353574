//! The send path over real sockets: batches of 100 frames of one body size
//! written by the `Flusher` in `linear` (copy everything), `gather` (every
//! body by `write_vectored`) and `auto` (threshold calibrated on this
//! machine) mode, over loopback TCP and a Unix-domain socket. A reader
//! thread drains the other end. Reports MB/s, ratios and write calls per
//! frame.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use benches::print_ratio_table;
use criterion::{BenchmarkId, Criterion, Throughput};
use netbuf::test_util::quiet_pool;
use netbuf::{Flusher, GatherThreshold, OutFrame, Outgoing, Transport};
use server_demo::protocol::{Kind, encode_header};

allocators::global_allocator!();

const BATCH: usize = 100;
const SIZES: [(usize, &str); 8] = [
    (64, "64B"),
    (256, "256B"),
    (1 << 10, "1KiB"),
    (4 << 10, "4KiB"),
    (64 << 10, "64KiB"),
    (128 << 10, "128KiB"),
    (256 << 10, "256KiB"),
    (1 << 20, "1MiB"),
];

fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        total
    })
}

fn pair(t: Transport) -> (Box<dyn Write + Send>, std::thread::JoinHandle<u64>) {
    match t {
        Transport::Tcp => {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
            let a = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
            let (b, _) = l.accept().expect("accept");
            a.set_nodelay(true).expect("nodelay");
            (Box::new(a), drain(b))
        }
        Transport::Unix => {
            let (a, b) = UnixStream::pair().expect("socketpair");
            (Box::new(a), drain(b))
        }
    }
}

fn name(t: Transport) -> &'static str {
    match t {
        Transport::Tcp => "tcp",
        Transport::Unix => "unix",
    }
}

fn send_path(c: &mut Criterion) {
    let pool = quiet_pool().build();
    for t in [Transport::Tcp, Transport::Unix] {
        let group = format!("send_{}", name(t));
        let mut g = c.benchmark_group(&group);
        let (mut sock, reader) = pair(t);
        for (size, label) in SIZES {
            let body = pool.message_from(&vec![0x42; size]).expect("fits").freeze();
            g.throughput(Throughput::Bytes(((size + 8) * BATCH) as u64));
            for (mode, threshold) in [
                ("linear", GatherThreshold::Never),
                ("gather", GatherThreshold::ALWAYS),
                ("auto", netbuf::calibrated_threshold(t)),
            ] {
                let mut f: Flusher<Outgoing> = Flusher::new(threshold);
                g.bench_function(BenchmarkId::new(mode, label), |b| {
                    b.iter(|| {
                        for _ in 0..BATCH {
                            f.push(OutFrame::new(
                                encode_header(Kind::Delivery, 1, size as u32).into(),
                                Outgoing::Shared(body.clone()),
                            ));
                        }
                        f.flush(&mut sock).expect("blocking socket flushes fully");
                    })
                });
                WRITES.with(|w| {
                    w.borrow_mut().push((
                        group.clone(),
                        mode,
                        label,
                        f.metrics().writes_per_frame(),
                    ))
                });
            }
        }
        drop(sock);
        reader.join().expect("reader");
        g.finish();
    }
}

thread_local! {
    static WRITES: std::cell::RefCell<Vec<(String, &'static str, &'static str, f64)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    send_path(&mut c);
    c.final_summary();
    if benches::is_test_mode() {
        return;
    }
    let rows: Vec<&str> = SIZES.iter().map(|s| s.1).collect();
    for t in [Transport::Tcp, Transport::Unix] {
        let cal = netbuf::calibrated_threshold(t).resolve();
        println!(
            "\n(auto threshold calibrated for {}: {} bytes)",
            name(t),
            cal
        );
        print_ratio_table(
            &format!("send_{}", name(t)),
            &["linear", "gather", "auto"],
            "linear",
            &rows,
        );
    }
    println!("\n## write calls per frame");
    println!("| transport | mode | size | writes/frame |");
    println!("|---|---|---|---:|");
    WRITES.with(|w| {
        for (g, mode, label, wpf) in w.borrow().iter() {
            println!("| {g} | {mode} | {label} | {wpf:.4} |");
        }
    });
}
