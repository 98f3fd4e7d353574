//! Issue 16, item 3, on the server alone: `server-demo serve` with default
//! flags, in a process of its own (built with whichever global allocator
//! feature the test run selects), carries echo from 64 B to 256 KiB and a
//! fan-out to 256 subscribers; within 5 s after the last client left, its
//! RSS is at most its start + 8 MiB. The soak checks the same bound on a
//! process that also holds its client threads; this one measures nothing
//! but the server.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use server_demo::load::{EchoThroughput, FanOut, Target};
use server_demo::soak::{
    AFTER_LOAD_SLACK, AFTER_LOAD_WAIT, rss_breakdown_of, rss_bytes_of, settle_rss_of,
};

/// Kills the server when the test ends, whichever way.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start() -> (Server, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_server-demo"))
        // Default flags but the frame limit, raised for the 256 KiB echo.
        .args(["serve", "--tcp", "127.0.0.1:0", "--max-frame", "1048576"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("server-demo starts");
    let line = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .next()
        .expect("a listening line")
        .unwrap();
    // "listening tcp 127.0.0.1:PORT"
    let addr = line.rsplit(' ').next().unwrap().parse().expect(&line);
    (Server(child), addr)
}

/// RSS once it stopped moving for 300 ms (at most 3 s).
fn steady_rss(pid: &str) -> u64 {
    let end = Instant::now() + Duration::from_secs(3);
    let mut last = rss_bytes_of(pid);
    let mut since = Instant::now();
    while Instant::now() < end && since.elapsed() < Duration::from_millis(300) {
        std::thread::sleep(Duration::from_millis(50));
        let now = rss_bytes_of(pid);
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
    last
}

#[test]
fn the_server_gives_its_memory_back_within_5_s_of_the_last_session() {
    let (server, addr) = start();
    let pid = server.0.id().to_string();
    let start = steady_rss(&pid);
    assert!(start > 0, "no /proc/{pid}/status");
    let target = Target::Tcp(addr);
    let timeout = Duration::from_secs(120);

    let mut peak = start;
    for (size, messages) in [(64, 50_000), (16 << 10, 5_000), (256 << 10, 1_000)] {
        EchoThroughput::new(target.clone(), size, messages)
            .with_connections(16)
            .with_timeout(timeout)
            .run()
            .unwrap_or_else(|e| panic!("echo {size} B: {e}"));
        peak = peak.max(rss_bytes_of(&pid));
    }
    FanOut::new(target.clone(), 1024, 256, 2_000)
        .with_pace(256)
        .with_timeout(timeout)
        .run()
        .expect("fan-out");
    peak = peak.max(rss_bytes_of(&pid));

    // Every client connection is closed: poll as the soak does.
    let bound = start + AFTER_LOAD_SLACK;
    let (after, waited) = settle_rss_of(&pid, bound);
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    // TRACE_RSS=1: how RSS and its largest mappings move after the load.
    if std::env::var_os("TRACE_RSS").is_some() {
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(500));
            eprintln!(
                "{:.1} MiB: {}",
                mib(rss_bytes_of(&pid)),
                rss_breakdown_of(&pid, 5)
            );
        }
    }
    eprintln!(
        "server RSS: start {:.1} MiB, peak seen {:.1} MiB, {:.1} MiB {:.1} s after the last \
         client left ({})",
        mib(start),
        mib(peak),
        mib(after),
        waited.as_secs_f64(),
        allocators::active().name()
    );
    assert!(
        after <= bound,
        "RSS {:.1} MiB {} s after the last client left, over start {:.1} MiB + {} MiB; \
         largest: {}",
        mib(after),
        AFTER_LOAD_WAIT.as_secs(),
        mib(start),
        AFTER_LOAD_SLACK >> 20,
        rss_breakdown_of(&pid, 6)
    );
}
