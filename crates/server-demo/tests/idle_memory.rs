//! Issue 16, item 4: an idle connection costs at most 0.5 KiB of server
//! heap in the default configuration, counted (not timed) with the
//! counting global allocator: the receive buffer is not taken by a read
//! that brings nothing, a quiet session parks its receive buffer and
//! flusher, and the send queue holds no block until its first push. Free
//! pool blocks (the depot and thread caches: server-wide, bounded, trimmed
//! when the last session closes) are not a connection's and are left out.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use server_demo::config::{Listen, StrategyArgs};
use server_demo::protocol::{HEADER_LEN, Kind, encode_header};
use server_demo::server::Server;

allocators::global_allocator!();

/// The heap is process-wide: one test at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Connections held (few enough for any fd limit; the main job measures
/// 10,000 from another process).
const CONNECTIONS: usize = 300;
/// The budget per idle connection.
const BUDGET: f64 = 512.0;

fn server() -> Server {
    Server::start(
        Listen {
            tcp: Some("127.0.0.1:0".parse().unwrap()),
            unix: None,
        },
        StrategyArgs::default(),
    )
    .expect("server starts")
}

/// Waits until the server counts `n` sessions, then until its heap stops
/// changing (the IO thread finished with the last accept).
fn settle(server: &Server, n: u64) -> u64 {
    settle_heap(server, n);
    heap(server)
}

/// Live heap bytes, less the pool's free blocks.
fn heap(server: &Server) -> u64 {
    let cached = server.memory_report().pool.bytes_cached;
    allocators::global_stats().live_bytes as u64 - cached
}

fn settle_heap(server: &Server, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.live_sessions() != n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} sessions",
            server.live_sessions()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut last = allocators::global_stats().live_bytes;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = allocators::global_stats().live_bytes;
        if now == last || Instant::now() > deadline {
            return;
        }
        last = now;
    }
}

fn per_connection(before: u64, after: u64) -> f64 {
    (after as f64 - before as f64) / CONNECTIONS as f64
}

#[test]
fn an_idle_connection_costs_at_most_half_a_kib() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let server = server();
    let addr = server.tcp_addr().unwrap();
    let mut conns = Vec::with_capacity(CONNECTIONS);
    let before = settle(&server, 0);
    for _ in 0..CONNECTIONS {
        conns.push(TcpStream::connect(addr).unwrap());
    }
    let after = settle(&server, CONNECTIONS as u64);
    let each = per_connection(before, after);
    assert!(each <= BUDGET, "{each:.0} B per idle connection");
    drop(conns);
    settle(&server, 0);
    assert!(server.shutdown().is_clean());
}

/// A connection that talked and went quiet is parked by the sweep (about
/// once a second: receive buffer, flusher and the queue's slot block
/// given back): back under the budget, and it still works after.
#[test]
fn a_connection_that_went_quiet_gives_its_buffers_back() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let server = server();
    let addr = server.tcp_addr().unwrap();
    let mut conns = Vec::with_capacity(CONNECTIONS);
    let before = settle(&server, 0);
    let body = [7u8; 1000];
    let mut frame = encode_header(Kind::EchoRequest, 0, body.len() as u32).to_vec();
    frame.extend_from_slice(&body);
    let mut reply = vec![0u8; HEADER_LEN + body.len()];
    for _ in 0..CONNECTIONS {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(&frame).unwrap();
        c.read_exact(&mut reply).unwrap();
        conns.push(c);
    }
    let busy = settle(&server, CONNECTIONS as u64);
    // The sweep runs about once a second; wait for it, up to 10 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut each = per_connection(before, busy);
    while each > BUDGET && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        each = per_connection(before, heap(&server));
    }
    assert!(each <= BUDGET, "{each:.0} B per quiet connection");
    // Parked sessions take their buffers again on the next frame.
    for c in &mut conns {
        c.write_all(&frame).unwrap();
        c.read_exact(&mut reply).unwrap();
        assert_eq!(&reply[HEADER_LEN..], &body[..]);
    }
    drop(conns);
    settle(&server, 0);
    assert!(server.shutdown().is_clean());
}
