//! The server over real loopback sockets: echo for every strategy, rooms,
//! bad input closing only its session, backpressure, slow consumers, large
//! frames, clean shutdown.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use server_demo::config::{
    BroadcastMode, Listen, PoolMode, QueueMode, RecvMode, SendMode, StrategyArgs, TransformMode,
};
use server_demo::protocol::{HEADER_LEN, Kind, encode_header};
use server_demo::server::Server;

fn start(cfg: StrategyArgs) -> Server {
    let dir = std::env::temp_dir().join(format!(
        "server-demo-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    Server::start(
        Listen {
            tcp: Some("127.0.0.1:0".parse().unwrap()),
            unix: Some(dir.with_extension("sock")),
        },
        cfg,
    )
    .expect("server starts")
}

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A connection that can be read and written from two threads at once.
trait Conn {
    fn halves(&self) -> (Box<dyn Read + Send>, Box<dyn Write + Send>);
}
impl Conn for TcpStream {
    fn halves(&self) -> (Box<dyn Read + Send>, Box<dyn Write + Send>) {
        (
            Box::new(self.try_clone().unwrap()),
            Box::new(self.try_clone().unwrap()),
        )
    }
}
impl Conn for UnixStream {
    fn halves(&self) -> (Box<dyn Read + Send>, Box<dyn Write + Send>) {
        (
            Box::new(self.try_clone().unwrap()),
            Box::new(self.try_clone().unwrap()),
        )
    }
}

fn tcp(s: &Server) -> TcpStream {
    let c = TcpStream::connect(s.tcp_addr().unwrap()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.set_nodelay(true).unwrap();
    c
}

fn unix(s: &Server) -> UnixStream {
    let c = UnixStream::connect(s.unix_path().unwrap()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c
}

fn frame(kind: Kind, room: u16, body: &[u8]) -> Vec<u8> {
    let mut v = encode_header(kind, room, body.len() as u32).to_vec();
    v.extend_from_slice(body);
    v
}

/// Reads one frame: (kind byte, room, body). `None` at end of stream.
fn read_frame(c: &mut impl Read) -> Option<(u8, u16, Vec<u8>)> {
    let mut h = [0u8; HEADER_LEN];
    c.read_exact(&mut h).ok()?;
    let len = u32::from_le_bytes(h[..4].try_into().unwrap()) as usize;
    let room = u16::from_le_bytes([h[6], h[7]]);
    let mut body = vec![0u8; len];
    c.read_exact(&mut body).ok()?;
    Some((h[4], room, body))
}

fn payload(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

fn echo_check(c: &mut impl Conn, sizes: &[usize]) {
    // Pipeline every request, then read every reply, in order.
    let mut out = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        out.extend(frame(Kind::EchoRequest, 0, &payload(n, i as u8)));
    }
    let writer_data = out;
    std::thread::scope(|s| {
        let (mut r, mut w) = c.halves();
        s.spawn(move || w.write_all(&writer_data).unwrap());
        for (i, &n) in sizes.iter().enumerate() {
            let (k, _, body) = read_frame(&mut r).expect("reply");
            assert_eq!(k, Kind::EchoReply.as_u8());
            assert_eq!(body, payload(n, i as u8), "reply {i} of {n} bytes");
        }
    });
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

const SIZES: [usize; 8] = [0, 1, 64, 256, 1024, 4096, 4097, 10 * 1024];

#[test]
fn echo_for_every_strategy_combination() {
    // Handlers inline on the IO threads (`--logic-threads 0`).
    let s = start(StrategyArgs {
        logic_threads: 0,
        io_threads: 2,
        ..StrategyArgs::default()
    });
    echo_check(&mut tcp(&s), &SIZES);
    echo_check(&mut unix(&s), &SIZES);
    assert!(s.shutdown().is_clean());

    for pool in [PoolMode::Pooled, PoolMode::Heap] {
        for send in [SendMode::Linear, SendMode::Gather, SendMode::Auto] {
            for recv in [RecvMode::Linear, RecvMode::Chained] {
                for queue in [QueueMode::Mpsc, QueueMode::Mutex] {
                    let cfg = StrategyArgs {
                        pool,
                        send,
                        recv,
                        queue,
                        gather_threshold: (send == SendMode::Auto).then_some(1024),
                        io_threads: 2,
                        logic_threads: 2,
                        ..StrategyArgs::default()
                    };
                    let s = start(cfg.clone());
                    echo_check(&mut tcp(&s), &SIZES);
                    echo_check(&mut unix(&s), &SIZES);
                    let leaks = s.shutdown();
                    assert!(leaks.is_clean(), "{}: {leaks}", cfg.label());
                }
            }
        }
    }
}

#[test]
fn many_pipelined_echoes_stay_in_order() {
    let s = start(StrategyArgs::default());
    let sizes: Vec<usize> = (0..3000).map(|i| [10, 100, 3000, 64][i % 4]).collect();
    echo_check(&mut tcp(&s), &sizes);
    assert!(s.shutdown().is_clean());
}

#[test]
fn one_mib_round_trips_with_a_raised_limit() {
    let s = start(StrategyArgs {
        max_frame: 2 << 20,
        ..StrategyArgs::default()
    });
    echo_check(&mut tcp(&s), &[1 << 20, 100, 1 << 20]);
    echo_check(&mut unix(&s), &[(1 << 20) + 5]);
    assert!(s.shutdown().is_clean());
}

#[test]
fn chacha20_transform_changes_every_byte_on_the_wire() {
    let s = start(StrategyArgs {
        transform: TransformMode::Chacha20,
        ..StrategyArgs::default()
    });
    let mut c = tcp(&s);
    let body = vec![0u8; 100];
    c.write_all(&frame(Kind::EchoRequest, 0, &body)).unwrap();
    let mut wire = vec![0u8; HEADER_LEN + 100];
    c.read_exact(&mut wire).unwrap();
    assert_ne!(&wire[HEADER_LEN..], &body[..], "enciphered");
    assert!(s.shutdown().is_clean());
}

#[test]
fn broadcast_reaches_every_subscriber_in_order() {
    for (broadcast, logic_threads) in [
        (BroadcastMode::Shared, 2),
        (BroadcastMode::Copy, 2),
        (BroadcastMode::Shared, 0),
    ] {
        let s = start(StrategyArgs {
            broadcast,
            io_threads: 2,
            logic_threads,
            ..StrategyArgs::default()
        });
        let mut subs: Vec<TcpStream> = (0..8).map(|_| tcp(&s)).collect();
        for c in &mut subs {
            c.write_all(&frame(Kind::Join, 9, &[])).unwrap();
        }
        let mut other_room = tcp(&s);
        other_room.write_all(&frame(Kind::Join, 10, &[])).unwrap();
        wait_until("joins", || s.room_memberships() == 9);
        let mut publisher = tcp(&s);
        for i in 0..200u32 {
            publisher
                .write_all(&frame(Kind::Publish, 9, &i.to_le_bytes()))
                .unwrap();
        }
        for c in &mut subs {
            for i in 0..200u32 {
                let (k, room, body) = read_frame(c).unwrap();
                assert_eq!((k, room), (Kind::Delivery.as_u8(), 9));
                assert_eq!(body, i.to_le_bytes());
            }
        }
        // Leaving stops deliveries.
        subs[0].write_all(&frame(Kind::Leave, 9, &[])).unwrap();
        wait_until("leave", || s.room_memberships() == 8);
        drop(subs);
        drop(other_room);
        wait_until("sessions closed", || s.live_sessions() == 1);
        wait_until("rooms emptied", || s.room_memberships() == 0);
        assert!(s.shutdown().is_clean());
    }
}

#[test]
fn each_bad_input_closes_only_its_session() {
    let s = start(StrategyArgs::default());
    let mut healthy = tcp(&s);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "oversize",
            encode_header(Kind::EchoRequest, 0, 20_000).to_vec(),
        ),
        ("flags", {
            let mut h = encode_header(Kind::EchoRequest, 0, 1).to_vec();
            h[5] = 1;
            h.push(0);
            h
        }),
        ("unknown kind", {
            let mut h = encode_header(Kind::EchoRequest, 0, 0).to_vec();
            h[4] = 99;
            h
        }),
        ("server-only kind", frame(Kind::Delivery, 0, b"x")),
        ("garbage", b"\xff\xff\xff\xff garbage garbage".to_vec()),
    ];
    for (name, bytes) in cases {
        let mut bad = tcp(&s);
        bad.write_all(&bytes).unwrap();
        let (k, _, reason) =
            read_frame(&mut bad).unwrap_or_else(|| panic!("{name}: closing frame"));
        assert_eq!(k, Kind::Closing.as_u8(), "{name}");
        let reason = String::from_utf8(reason).unwrap();
        assert!(reason.starts_with("protocol error"), "{name}: {reason}");
        assert!(read_frame(&mut bad).is_none(), "{name}: then closed");
        echo_check(&mut healthy, &[5, 500]);
    }
    // Dropped mid-frame: only that session goes.
    let mut mid = tcp(&s);
    mid.write_all(&encode_header(Kind::EchoRequest, 0, 100))
        .unwrap();
    mid.write_all(&[1; 10]).unwrap();
    drop(mid);
    echo_check(&mut healthy, &[7]);
    assert_eq!(
        s.counters()
            .sessions_rejected
            .load(std::sync::atomic::Ordering::Relaxed),
        5
    );
    drop(healthy);
    wait_until("all closed", || s.live_sessions() == 0);
    assert!(s.shutdown().is_clean());
}

#[test]
fn a_client_that_never_reads_gets_backpressure_and_loses_nothing() {
    let s = start(StrategyArgs {
        send_queue_bytes: 256 << 10,
        ..StrategyArgs::default()
    });
    let mut c = tcp(&s);
    let n = 4000usize;
    let body = payload(1000, 1);
    let all: Vec<u8> = (0..n)
        .flat_map(|_| frame(Kind::EchoRequest, 0, &body))
        .collect();
    let mut w = c.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&all).unwrap());
    // Not reading: the server must pause reading this session.
    wait_until("read pause", || {
        s.counters()
            .read_pauses
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    });
    let mut healthy = tcp(&s);
    echo_check(&mut healthy, &[64, 4096]);
    // Now read everything: every reply arrives, intact, in order.
    for _ in 0..n {
        let (k, _, b) = read_frame(&mut c).unwrap();
        assert_eq!(k, Kind::EchoReply.as_u8());
        assert_eq!(b, body);
    }
    writer.join().unwrap();
    assert_eq!(
        s.counters()
            .sessions_rejected
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    drop((c, healthy));
    assert!(s.shutdown().is_clean());
}

#[test]
fn a_subscriber_that_never_reads_is_closed_as_slow_consumer() {
    // 4 MiB bound; 48 MB published (more than the kernel's socket buffers can
    // absorb for a peer that never reads): a subscriber that keeps reading
    // stays within the bound, one that never reads crosses it.
    let s = start(StrategyArgs::default());
    let mut slow = tcp(&s);
    slow.write_all(&frame(Kind::Join, 1, &[])).unwrap();
    let mut fast = tcp(&s);
    fast.write_all(&frame(Kind::Join, 1, &[])).unwrap();
    wait_until("joins", || s.room_memberships() == 2);
    let mut publisher = tcp(&s);
    let body = vec![7u8; 8000];
    let n = 6000;
    let mut pw = publisher.try_clone().unwrap();
    let got = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let got2 = got.clone();
    let fast_reader = std::thread::spawn(move || {
        let mut r = std::io::BufReader::new(fast);
        for _ in 0..n {
            let (k, _, b) = read_frame(&mut r).unwrap();
            assert_eq!((k, b.len()), (Kind::Delivery.as_u8(), 8000));
            got2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        r.into_inner() // stays connected (and subscribed) until the end
    });
    for i in 0..n {
        pw.write_all(&frame(Kind::Publish, 1, &body)).unwrap();
        // The fast subscriber keeps up: never more than 0.8 MB behind.
        if i % 50 == 49 {
            wait_until("fast subscriber", || {
                got.load(std::sync::atomic::Ordering::Relaxed) + 100 > i
            });
        }
    }
    let fast = fast_reader.join().unwrap();
    // The slow subscriber was closed; the fast one and the publisher still
    // work.
    wait_until("slow consumer closed", || {
        s.counters()
            .sessions_rejected
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1
    });
    assert_eq!(s.room_memberships(), 1);
    echo_check(&mut publisher, &[10]);
    drop((slow, fast, publisher));
    assert!(s.shutdown().is_clean());
}

#[test]
fn shutdown_with_open_sessions_leaves_no_live_blocks() {
    let s = start(StrategyArgs::default());
    let mut conns: Vec<TcpStream> = (0..20).map(|_| tcp(&s)).collect();
    for c in &mut conns {
        c.write_all(&frame(Kind::Join, 3, &[])).unwrap();
        c.write_all(&frame(Kind::EchoRequest, 0, &[1; 100]))
            .unwrap();
    }
    wait_until("joins", || s.room_memberships() == 20);
    let leaks = s.shutdown();
    assert!(leaks.is_clean(), "{leaks}");
    for c in &mut conns {
        // Each got its echo, then the closing frame, then end of stream.
        let mut kinds = Vec::new();
        while let Some((k, _, _)) = read_frame(c) {
            kinds.push(k);
        }
        assert_eq!(kinds.last(), Some(&Kind::Closing.as_u8()));
    }
}

#[test]
fn in_process_transport_runs_the_same_path() {
    let s = start(StrategyArgs {
        io_threads: 2,
        ..StrategyArgs::default()
    });
    let mut a = s.connect_inproc();
    let mut b = s.connect_inproc();
    // Echo, pipelined, every size.
    let mut out = Vec::new();
    for (i, &n) in SIZES.iter().enumerate() {
        out.extend(frame(Kind::EchoRequest, 0, &payload(n, i as u8)));
    }
    a.write_all(&out).unwrap();
    for (i, &n) in SIZES.iter().enumerate() {
        let (k, _, body) = read_frame(&mut a).unwrap();
        assert_eq!(k, Kind::EchoReply.as_u8());
        assert_eq!(body, payload(n, i as u8));
    }
    // Rooms across transports: an in-process subscriber, a TCP publisher.
    b.write_all(&frame(Kind::Join, 4, &[])).unwrap();
    wait_until("join", || s.room_memberships() == 1);
    let mut publisher = tcp(&s);
    publisher
        .write_all(&frame(Kind::Publish, 4, b"hello"))
        .unwrap();
    assert_eq!(
        read_frame(&mut b).unwrap(),
        (Kind::Delivery.as_u8(), 4, b"hello".to_vec())
    );
    // Bad input closes only that in-process session.
    b.write_all(&encode_header(Kind::EchoRequest, 0, 1 << 20))
        .unwrap();
    let (k, _, _) = read_frame(&mut b).unwrap();
    assert_eq!(k, Kind::Closing.as_u8());
    assert!(read_frame(&mut b).is_none());
    echo_check_inproc(&mut a);
    drop((a, b, publisher));
    wait_until("closed", || s.live_sessions() == 0);
    assert!(s.shutdown().is_clean());
}

fn echo_check_inproc(c: &mut server_demo::server::InprocClient) {
    c.write_all(&frame(Kind::EchoRequest, 0, b"still here"))
        .unwrap();
    let (k, _, body) = read_frame(c).unwrap();
    assert_eq!((k, body), (Kind::EchoReply.as_u8(), b"still here".to_vec()));
}

#[test]
fn a_connection_dropped_mid_write_closes_only_itself() {
    let s = start(StrategyArgs {
        max_frame: 2 << 20,
        ..StrategyArgs::default()
    });
    let mut healthy = tcp(&s);
    for _ in 0..5 {
        // Ask for megabytes of replies, read a few bytes, vanish: the
        // server is mid-write when the socket goes away.
        let mut c = tcp(&s);
        let req = frame(Kind::EchoRequest, 0, &vec![3u8; 1 << 20]);
        for _ in 0..4 {
            c.write_all(&req).unwrap();
        }
        let mut some = [0u8; 100];
        c.read_exact(&mut some).unwrap();
        drop(c);
        echo_check(&mut healthy, &[64, 5000]);
    }
    drop(healthy);
    wait_until("all closed", || s.live_sessions() == 0);
    assert!(s.shutdown().is_clean());
}

/// A session parks when quiet (its buffers dropped): never while a frame
/// is half-way, even when the receive buffer holds no byte of it (the
/// chained buffer stages a large body after consuming its header). The
/// header arrives, the server sweeps (about once a second) while the body
/// is late, then the body arrives: the echo comes back whole.
#[test]
fn a_frame_split_across_a_sweep_survives_parking() {
    for recv in [RecvMode::Linear, RecvMode::Chained] {
        let s = start(StrategyArgs {
            recv,
            ..StrategyArgs::default()
        });
        let mut c = tcp(&s);
        let body = payload(8 << 10, 3);
        let f = frame(Kind::EchoRequest, 0, &body);
        c.write_all(&f[..HEADER_LEN]).unwrap();
        c.flush().unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        c.write_all(&f[HEADER_LEN..]).unwrap();
        let (kind, _, got) = read_frame(&mut c).expect("the echo comes back");
        assert_eq!(kind, Kind::EchoReply.as_u8(), "{recv:?}");
        assert!(got == body, "{recv:?}: body differs");
        drop(c);
        assert!(s.shutdown().is_clean());
    }
}

/// With handlers inline, a delivery to a session of the publisher's own IO
/// thread is staged (encoded straight into that session's buffer) while
/// echo replies go into its flusher: the session must still see its
/// deliveries and replies in the order of its requests, a delivery
/// published before its `Leave` arrives, and none after.
#[test]
fn a_session_sees_its_deliveries_and_replies_in_request_order() {
    for io_threads in [1, 2] {
        let s = start(StrategyArgs {
            io_threads,
            logic_threads: 0,
            ..StrategyArgs::default()
        });
        let mut a = tcp(&s);
        let mut b = tcp(&s);
        a.write_all(&frame(Kind::Join, 5, &[])).unwrap();
        b.write_all(&frame(Kind::Join, 5, &[])).unwrap();
        wait_until("joins", || s.room_memberships() == 2);
        let big = payload(9 << 10, 3);
        for round in 0..50u8 {
            let mut burst = frame(Kind::Publish, 5, &[round, 1]);
            burst.extend(frame(Kind::EchoRequest, 0, &[round, 2]));
            burst.extend(frame(Kind::EchoRequest, 0, &big));
            burst.extend(frame(Kind::Leave, 5, &[]));
            burst.extend(frame(Kind::EchoRequest, 0, &[round, 3]));
            burst.extend(frame(Kind::Publish, 5, &[round, 4]));
            burst.extend(frame(Kind::Join, 5, &[]));
            a.write_all(&burst).unwrap();
            let want: [(Kind, &[u8]); 4] = [
                (Kind::Delivery, &[round, 1]),
                (Kind::EchoReply, &[round, 2]),
                (Kind::EchoReply, &big),
                (Kind::EchoReply, &[round, 3]),
            ];
            for (i, (kind, body)) in want.iter().enumerate() {
                let (k, _, got) = read_frame(&mut a).unwrap();
                assert_eq!(
                    (k, &got[..]),
                    (kind.as_u8(), *body),
                    "io threads {io_threads}, round {round}, frame {i}"
                );
            }
            for tag in [1, 4] {
                let (k, room, got) = read_frame(&mut b).unwrap();
                assert_eq!(
                    (k, room, got),
                    (Kind::Delivery.as_u8(), 5, vec![round, tag])
                );
            }
        }
        drop((a, b));
        wait_until("sessions closed", || s.live_sessions() == 0);
        assert!(s.shutdown().is_clean());
    }
}
