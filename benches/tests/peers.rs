//! The tokio peer, the tokio-with-netbuf server and mio-lean speak the wire format:
//! echo (small and gathered sizes), a 3-subscriber room broadcast, and a
//! `closing` frame for bad input. Started in-process, so they never rot.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use benches::peers::{PeerConfig, PeerKind};
use netbuf::LinearBuffer;
use netbuf::{Compaction, DEFAULT_RECV_CAPACITY};
use server_demo::protocol::{DemoFraming, Kind, encode_frame_into};

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

fn send(s: &mut TcpStream, kind: Kind, room: u16, body: &[u8]) {
    let mut wire = Vec::new();
    encode_frame_into(&mut wire, kind, room, body).unwrap();
    s.write_all(&wire).unwrap();
}

/// Reads the next frame: (kind, room, body).
fn recv(s: &mut TcpStream, rb: &mut LinearBuffer<DemoFraming>) -> (Kind, u16, Vec<u8>) {
    loop {
        if let Some(f) = rb.next_frame().expect("valid frame") {
            return (f.header.kind, f.header.room, f.body.to_vec());
        }
        let n = rb.read_from(s).expect("read");
        assert!(n > 0, "server closed the connection");
    }
}

fn buffer() -> LinearBuffer<DemoFraming> {
    LinearBuffer::with_config(
        DEFAULT_RECV_CAPACITY,
        DemoFraming::with_max_body(1 << 20),
        Compaction::Lazy,
    )
}

fn check(kind: PeerKind) {
    let server = kind
        .start(PeerConfig {
            worker_threads: Some(2),
            ..PeerConfig::default()
        })
        .expect("start");
    let addr = server.addr();

    // Echo, in order, small and large (the large one takes the gather path
    // in tokio-netbuf whatever the calibrated threshold).
    let mut c = connect(addr);
    let mut crb = buffer();
    let bodies: Vec<Vec<u8>> = [0usize, 1, 64, 1024, 300 << 10]
        .iter()
        .map(|&n| (0..n).map(|i| (i * 7 + n) as u8).collect())
        .collect();
    for b in &bodies {
        send(&mut c, Kind::EchoRequest, 0, b);
    }
    for b in &bodies {
        let (k, room, body) = recv(&mut c, &mut crb);
        assert_eq!((k, room), (Kind::EchoReply, 0));
        assert_eq!(&body, b);
    }

    // Three subscribers (the publisher is one of them), two publishes.
    let mut subs: Vec<(TcpStream, LinearBuffer<DemoFraming>)> =
        (0..3).map(|_| (connect(addr), buffer())).collect();
    for (s, _) in subs.iter_mut() {
        send(s, Kind::Join, 7, b"");
    }
    // Joins are processed in order per connection: an echo round trip on
    // each subscriber proves its join was handled.
    for (s, rb) in subs.iter_mut() {
        send(s, Kind::EchoRequest, 0, b"sync");
        assert_eq!(recv(s, rb).0, Kind::EchoReply);
    }
    for msg in [&b"hello room"[..], &[9u8; 2000][..]] {
        send(&mut subs[0].0, Kind::Publish, 7, msg);
        for (s, rb) in subs.iter_mut() {
            let (k, room, body) = recv(s, rb);
            assert_eq!((k, room, &body[..]), (Kind::Delivery, 7, msg));
        }
    }
    // After leaving, a subscriber gets nothing more (checked by an echo
    // that must come back before any delivery).
    let (mut left, mut left_rb) = subs.pop().unwrap();
    send(&mut left, Kind::Leave, 7, b"");
    send(&mut left, Kind::EchoRequest, 0, b"left");
    assert_eq!(recv(&mut left, &mut left_rb).0, Kind::EchoReply);
    send(&mut subs[0].0, Kind::Publish, 7, b"after");
    for (s, rb) in subs.iter_mut() {
        assert_eq!(recv(s, rb).2, b"after");
    }
    send(&mut left, Kind::EchoRequest, 0, b"still");
    let (k, _, body) = recv(&mut left, &mut left_rb);
    assert_eq!((k, &body[..]), (Kind::EchoReply, &b"still"[..]));

    // Bad input: a server-only kind closes the session with a reason.
    let mut bad = connect(addr);
    let mut rb = buffer();
    send(&mut bad, Kind::Delivery, 1, b"nope");
    let (k, _, reason) = recv(&mut bad, &mut rb);
    assert_eq!(k, Kind::Closing);
    assert!(!reason.is_empty());
    let mut rest = Vec::new();
    let _ = bad.read_to_end(&mut rest);

    // The others are unaffected.
    send(&mut c, Kind::EchoRequest, 0, b"ok");
    assert_eq!(recv(&mut c, &mut crb).2, b"ok");
    server.shutdown();
}

#[test]
fn tokio_peer_speaks_the_wire_format() {
    check(PeerKind::TokioPeer);
}

#[test]
fn tokio_netbuf_speaks_the_wire_format() {
    check(PeerKind::TokioNetbuf);
}

#[test]
fn mio_lean_speaks_the_wire_format() {
    check(PeerKind::MioLean);
}

/// mio-lean closes a member that does not read as a slow consumer once its
/// unsent output passes the send bound: the deliveries it is owed, then a
/// `closing` frame with the reason, then end of stream; the publisher is
/// unaffected.
#[test]
fn mio_lean_closes_slow_consumers() {
    let server = PeerKind::MioLean
        .start(PeerConfig {
            worker_threads: Some(2),
            send_queue_bytes: 256 << 10,
            ..PeerConfig::default()
        })
        .expect("start");
    let addr = server.addr();
    let mut sub = connect(addr);
    let mut sub_rb = buffer();
    send(&mut sub, Kind::Join, 3, b"");
    send(&mut sub, Kind::EchoRequest, 0, b"sync");
    assert_eq!(recv(&mut sub, &mut sub_rb).0, Kind::EchoReply);
    let mut publisher = connect(addr);
    let mut pub_rb = buffer();
    // 64 MiB published while the subscriber reads nothing: far more than
    // the bound plus both kernels' socket buffers.
    let body = vec![5u8; 64 << 10];
    for _ in 0..1024 {
        send(&mut publisher, Kind::Publish, 3, &body);
    }
    send(&mut publisher, Kind::EchoRequest, 0, b"still here");
    let (k, _, b) = recv(&mut publisher, &mut pub_rb);
    assert_eq!((k, &b[..]), (Kind::EchoReply, &b"still here"[..]));
    let mut deliveries = 0;
    let reason = loop {
        let (k, room, b) = recv(&mut sub, &mut sub_rb);
        match k {
            Kind::Delivery => {
                assert_eq!((room, b.len()), (3, body.len()));
                deliveries += 1;
            }
            Kind::Closing => break String::from_utf8(b).unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(reason.starts_with("slow consumer"), "{reason}");
    assert!(deliveries < 1024, "{deliveries} deliveries before closing");
    let mut rest = Vec::new();
    let _ = sub.read_to_end(&mut rest);
    assert!(rest.is_empty());
    server.shutdown();
}
