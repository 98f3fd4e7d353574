//! Self-test of the load generator against a tiny reference server (std
//! sockets, one thread per connection) that speaks the wire format of
//! `server_demo::protocol`: echo and rooms.

use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use clap::Parser;
use server_demo::load::{
    EchoLatency, EchoThroughput, FanOut, LoadArgs, LoadError, LoadMode, LoadPlan, Measurement,
    Target, parse_size, render_table, run_load, to_json,
};

/// How the reference server misbehaves, if at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Honest,
    /// Flips one body byte of every echo reply from the N-th on.
    CorruptFrom(u64),
    /// Reads requests but never answers.
    Silent,
}

type Writer = Arc<Mutex<Box<dyn Write + Send>>>;
type Rooms = Arc<Mutex<HashMap<u16, Vec<Writer>>>>;

fn send(w: &Writer, kind: u8, room: u16, body: &[u8]) -> std::io::Result<()> {
    let mut f = Vec::with_capacity(8 + body.len());
    f.extend_from_slice(&(body.len() as u32).to_le_bytes());
    f.extend_from_slice(&[kind, 0]);
    f.extend_from_slice(&room.to_le_bytes());
    f.extend_from_slice(body);
    w.lock().unwrap().write_all(&f)
}

/// One session: read frames, echo, join, publish (to every member, in order).
fn session(r: impl Read, w: Writer, rooms: Rooms, mode: Mode, echoed: Arc<AtomicU64>) {
    let mut r = BufReader::with_capacity(64 << 10, r);
    loop {
        let mut h = [0u8; 8];
        if r.read_exact(&mut h).is_err() {
            return;
        }
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let (kind, room) = (h[4], u16::from_le_bytes([h[6], h[7]]));
        if h[5] != 0 || len > 4 << 20 {
            let _ = send(&w, 7, 0, b"bad header");
            return;
        }
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let ok = match kind {
            1 => {
                let n = echoed.fetch_add(1, Ordering::Relaxed);
                match mode {
                    Mode::Silent => Ok(()),
                    Mode::CorruptFrom(k) if n >= k && !body.is_empty() => {
                        let mid = body.len() / 2 + body.len() / 4;
                        body[mid] ^= 0x5a;
                        send(&w, 2, 0, &body)
                    }
                    _ => send(&w, 2, 0, &body),
                }
            }
            3 => {
                rooms
                    .lock()
                    .unwrap()
                    .entry(room)
                    .or_default()
                    .push(w.clone());
                Ok(())
            }
            5 => {
                let members = rooms
                    .lock()
                    .unwrap()
                    .get(&room)
                    .cloned()
                    .unwrap_or_default();
                for m in &members {
                    let _ = send(m, 6, room, &body); // a dead member is skipped
                }
                Ok(())
            }
            _ => send(&w, 7, 0, b"unknown kind"),
        };
        if ok.is_err() {
            return;
        }
    }
}

struct RefServer {
    addr: SocketAddr,
    echoed: Arc<AtomicU64>,
}

fn start_tcp(mode: Mode) -> RefServer {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let rooms = Rooms::default();
    let echoed = Arc::new(AtomicU64::new(0));
    let e = echoed.clone();
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { return };
            c.set_nodelay(true).unwrap();
            let w: Writer = Arc::new(Mutex::new(Box::new(c.try_clone().unwrap())));
            let (rooms, e) = (rooms.clone(), e.clone());
            thread::spawn(move || session(c, w, rooms, mode, e));
        }
    });
    RefServer { addr, echoed }
}

fn start_unix(path: &PathBuf) {
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path).unwrap();
    let rooms = Rooms::default();
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { return };
            let w: Writer = Arc::new(Mutex::new(Box::new(c.try_clone().unwrap())));
            let rooms = rooms.clone();
            thread::spawn(move || session(c, w, rooms, Mode::Honest, Arc::default()));
        }
    });
}

fn tcp(s: &RefServer) -> Target {
    Target::Tcp(s.addr)
}

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn echo_throughput_counts_and_verifies() {
    let srv = start_tcp(Mode::Honest);
    for (size, n, conns) in [(64, 20_000, 1), (5, 3_000, 2), (100 << 10, 200, 1)] {
        let r = EchoThroughput::new(tcp(&srv), size, n)
            .with_connections(conns)
            .with_timeout(LIMIT)
            .run()
            .unwrap();
        assert_eq!(r.messages, n - 1, "first reply starts the clock");
        assert_eq!(r.bytes, (n - 1) * size as u64);
        assert!(r.msgs_per_sec > 0.0 && r.mb_per_sec > 0.0, "{r:?}");
        assert!(r.elapsed > Duration::ZERO);
    }
}

#[test]
fn echo_latency_percentiles_are_ordered() {
    let srv = start_tcp(Mode::Honest);
    let r = EchoLatency::new(tcp(&srv), 256, 2_000)
        .with_timeout(LIMIT)
        .run()
        .unwrap();
    assert_eq!(r.round_trips, 2_000);
    assert!(r.p50_us > 0.0);
    assert!(r.p50_us <= r.p99_us && r.p99_us <= r.p999_us && r.p999_us <= r.max_us);
    assert!(r.mean_us > 0.0 && r.mean_us <= r.max_us);
}

#[test]
fn fanout_16_subscribers_every_delivery_in_order() {
    let srv = start_tcp(Mode::Honest);
    let r = FanOut::new(tcp(&srv), 64, 16, 500)
        .with_room(7)
        .with_timeout(LIMIT)
        .run()
        .unwrap();
    assert_eq!(r.deliveries, 16 * 500);
    assert!(r.deliveries_per_sec > 0.0 && r.elapsed > Duration::ZERO);
    // Small bodies (no room for a sequence number) are still counted.
    let r = FanOut::new(tcp(&srv), 3, 4, 100).run().unwrap();
    assert_eq!(r.deliveries, 400);
}

#[test]
fn corrupted_reply_is_a_typed_error() {
    let srv = start_tcp(Mode::CorruptFrom(100));
    let err = EchoThroughput::new(tcp(&srv), 64, 1_000)
        .with_timeout(LIMIT)
        .run()
        .unwrap_err();
    match err {
        LoadError::Mismatch { index, .. } => assert_eq!(index, 100),
        e => panic!("expected a mismatch, got {e}"),
    }
    let srv = start_tcp(Mode::CorruptFrom(0));
    let err = EchoLatency::new(tcp(&srv), 4, 10).run().unwrap_err();
    assert!(matches!(err, LoadError::Mismatch { index: 0, .. }), "{err}");
}

#[test]
fn hung_server_is_a_timeout_not_a_hang() {
    let srv = start_tcp(Mode::Silent);
    let t = Duration::from_millis(300);
    let err = EchoThroughput::new(tcp(&srv), 64, 1_000)
        .with_timeout(t)
        .run()
        .unwrap_err();
    assert!(matches!(err, LoadError::Timeout { done: 0, .. }), "{err}");
    let err = EchoLatency::new(tcp(&srv), 64, 10)
        .with_timeout(t)
        .run()
        .unwrap_err();
    assert!(matches!(err, LoadError::Timeout { .. }), "{err}");
    assert!(srv.echoed.load(Ordering::Relaxed) > 0, "requests were sent");
}

#[test]
fn plan_over_unix_socket_renders_table_and_json() {
    let path = std::env::temp_dir().join(format!("load-selftest-{}.sock", std::process::id()));
    start_unix(&path);
    let target = Target::Unix(path.clone());
    let mut plan = LoadPlan::new();
    plan.progress = Some(false);
    plan.push(EchoThroughput::new(target.clone(), 64, 5_000).with_timeout(LIMIT));
    plan.push(EchoLatency::new(target.clone(), 64, 500).with_timeout(LIMIT));
    plan.push(FanOut::new(target.clone(), 64, 16, 200).with_timeout(LIMIT));
    plan.push(EchoThroughput::new(target, 64, 1)); // invalid: recorded, plan goes on
    let records = plan.run();
    assert_eq!(records.len(), 4);
    assert!(matches!(
        records[0].result,
        Some(Measurement::Throughput(_))
    ));
    assert!(matches!(records[1].result, Some(Measurement::Latency(_))));
    assert!(matches!(records[2].result, Some(Measurement::FanOut(_))));
    assert!(records[3].error.is_some());
    let table = render_table(&records);
    println!("{table}");
    assert_eq!(table.lines().count(), 2 + 4);
    assert!(table.contains("| echo | 64 B |") && table.contains("FAILED"));
    let json: serde_json::Value = serde_json::from_str(&to_json(&records).unwrap()).unwrap();
    assert_eq!(json[2]["result"]["fan_out"]["deliveries"], 16 * 200);
    let _ = std::fs::remove_file(&path);
}

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    load: LoadArgs,
}

#[test]
fn command_line_parses_and_runs() {
    let cli = Cli::try_parse_from(["load", "--tcp", "127.0.0.1:9"]).unwrap();
    assert_eq!(cli.load.mode, LoadMode::All);
    assert_eq!(cli.load.sizes.len(), 8);
    assert_eq!(cli.load.sizes[7], 1 << 20);
    assert_eq!(cli.load.subscribers, [1, 16, 256, 1000]);
    let (plan, skipped) = cli.load.plan().unwrap();
    assert_eq!(plan.scenarios.len() + skipped.len(), 8 * 6);
    assert!(Cli::try_parse_from(["load"]).is_err());
    assert!(Cli::try_parse_from(["load", "--tcp", "127.0.0.1:9", "--unix", "/x"]).is_err());
    assert_eq!(parse_size("4KiB"), Ok(4096));
    assert_eq!(parse_size("1M"), Ok(1 << 20));
    assert!(parse_size("1 furlong").is_err());

    let srv = start_tcp(Mode::Honest);
    let json = std::env::temp_dir().join(format!("load-selftest-{}.json", std::process::id()));
    let addr = srv.addr.to_string();
    let cli = Cli::try_parse_from([
        "load",
        "--tcp",
        &addr,
        "--mode",
        "echo",
        "--sizes",
        "64,1KiB",
        "--messages",
        "2000",
        "--json",
        json.to_str().unwrap(),
        "--no-progress",
    ])
    .unwrap();
    run_load(cli.load).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[1]["size"], 1024);
    let _ = std::fs::remove_file(&json);
}
