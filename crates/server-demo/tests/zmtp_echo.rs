//! ZMTP ROUTER and PAIR echo over loopback TCP, ipc and inproc, with a
//! ZMTP client written in the test: DEALER / REQ / ROUTER peers,
//! multi-part messages with empty parts, the short/long size boundary and
//! large bodies, PING -> PONG, the large-path counters.

mod zmtp_client;

use server_demo::config::{SendMode, StrategyArgs};
use server_demo::zmtp::{EndpointKind, EndpointSpec};
use zmtp_client::{Client, TestServer, eventually};

fn big_cfg() -> StrategyArgs {
    StrategyArgs {
        max_frame: 2 << 20,
        send_queue_bytes: 8 << 20,
        ..StrategyArgs::default()
    }
}

fn body(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn router_echoes_dealer_req_and_router_peers() {
    let t = TestServer::start(StrategyArgs::default());
    let mut d = t.dealer();
    // Our READY carries Socket-Type ROUTER and an (empty) Identity.
    assert!(d.server_ready.windows(6).any(|w| w == b"ROUTER"));
    assert!(d.server_ready.windows(8).any(|w| w == b"Identity"));
    d.send_message(&[b"hello"]);
    assert_eq!(d.read_message(), vec![b"hello".to_vec()]);

    // REQ: the empty delimiter comes back, so the envelope is preserved.
    let mut r = t.connect(EndpointKind::Router);
    r.handshake("REQ");
    r.send_message(&[b"", b"request"]);
    assert_eq!(r.read_message(), vec![b"".to_vec(), b"request".to_vec()]);

    let mut ro = t.connect(EndpointKind::Router);
    ro.handshake("ROUTER");
    ro.send_message(&[b"a", b"b"]);
    assert_eq!(ro.read_message(), vec![b"a".to_vec(), b"b".to_vec()]);
    drop((d, r, ro));
    let router = t.finish_report(EndpointKind::Router);
    assert_eq!((router.messages_in, router.messages_out), (3, 3));
}

#[test]
fn multipart_with_empty_parts_and_size_boundaries() {
    let t = TestServer::start(big_cfg());
    let mut c = t.dealer();
    let empties: [&[u8]; 5] = [b"", b"x", b"", b"", b"end"];
    c.send_message(&empties);
    assert_eq!(
        c.read_message(),
        empties.iter().map(|p| p.to_vec()).collect::<Vec<_>>()
    );
    c.send_message(&[b""]);
    assert_eq!(c.read_message(), vec![Vec::<u8>::new()]);
    for (i, len) in [0usize, 255, 256, 64 << 10, 1 << 20]
        .into_iter()
        .enumerate()
    {
        let b = body(len, i as u8);
        c.send_message(&[b"head", &b, b"tail"]);
        let got = c.read_message();
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].len(), len);
        assert!(got[1] == b, "body of {len} bytes corrupted");
        assert_eq!((&got[0][..], &got[2][..]), (&b"head"[..], &b"tail"[..]));
    }
    drop(c);
    t.finish();
}

#[test]
fn ping_gets_pong_with_its_context() {
    let t = TestServer::start(StrategyArgs::default());
    let mut c = t.dealer();
    let mut ping = 50u16.to_be_bytes().to_vec();
    ping.extend_from_slice(b"ctx-123");
    c.send_command("PING", &ping);
    let f = c.read_frame().unwrap().unwrap();
    assert_eq!(f.command_name(), Some(&b"PONG"[..]));
    assert_eq!(&f.body[5..], b"ctx-123");
    // A PING between the parts of a message: the message stays whole.
    let mut wire = zmtp_client::frame(zmtp_client::MORE, b"one");
    wire.extend(zmtp_client::frame(
        zmtp_client::COMMAND,
        &zmtp_client::command("PING", &[0, 0]),
    ));
    wire.extend(zmtp_client::frame(0, b"two"));
    c.send(&wire);
    assert_eq!(c.read_message(), vec![b"one".to_vec(), b"two".to_vec()]);
    assert_eq!(c.commands.len(), 1);
    assert_eq!(c.commands[0].command_name(), Some(&b"PONG"[..]));
    drop(c);
    t.finish();
}

/// Greets as ZMTP 3.1 and sends READY as a PAIR, without waiting for the
/// server's READY (or ERROR).
fn greet_as_pair(c: &mut Client) {
    c.greet(1);
    c.send(&zmtp_client::frame(
        zmtp_client::COMMAND,
        &zmtp_client::ready("PAIR", None),
    ));
}

#[test]
fn pair_echoes_one_peer_at_a_time() {
    let t = TestServer::start(StrategyArgs::default());
    let mut a = t.connect(EndpointKind::Pair);
    a.handshake("PAIR");
    a.send_message(&[b"p1", b"p2"]);
    assert_eq!(a.read_message(), vec![b"p1".to_vec(), b"p2".to_vec()]);
    let mut b = t.connect(EndpointKind::Pair);
    greet_as_pair(&mut b);
    let reason = b.error_then_close().expect("ERROR for a second PAIR peer");
    assert!(reason.contains("PAIR"), "{reason}");
    // The first peer is unaffected; once it leaves, a new one is served.
    a.send_message(&[b"still"]);
    assert_eq!(a.read_message(), vec![b"still".to_vec()]);
    drop(a);
    eventually("the PAIR slot is free", || {
        let mut c = t.connect(EndpointKind::Pair);
        greet_as_pair(&mut c);
        let Ok(Some(f)) = c.read_frame() else {
            return false;
        };
        if f.command_name() != Some(b"READY") {
            return false;
        }
        c.send_message(&[b"again"]);
        c.read_message() == vec![b"again".to_vec()]
    });
    t.finish();
}

#[test]
fn ipc_and_inproc_share_the_data_path() {
    let dir = std::env::temp_dir().join(format!("zmtp-echo-{}.sock", std::process::id()));
    let ipc = format!("ipc://{}", dir.display());
    let specs = [EndpointSpec {
        kind: EndpointKind::Router,
        addr: ipc.parse().unwrap(),
    }];
    let t = TestServer::with_specs(&specs, big_cfg());
    assert_eq!(t.eps, vec![(EndpointKind::Router, ipc.clone())]);
    let mut c = Client::ipc(&ipc);
    c.handshake("DEALER");
    let b = body(300 << 10, 9);
    c.send_message(&[b"id", &b]);
    assert_eq!(c.read_message(), vec![b"id".to_vec(), b.clone()]);

    let mut i = Client::new(t.server().connect_zmtp_inproc(EndpointKind::Router));
    i.handshake("DEALER");
    i.send_message(&[b"in", &b]);
    assert_eq!(i.read_message(), vec![b"in".to_vec(), b]);
    drop((c, i));
    let stats = t.finish();
    assert!(
        stats
            .iter()
            .any(|r| r.address == "inproc://zmtp-router" && r.messages_in == 1)
    );
    assert!(!dir.exists(), "the ipc socket file is removed at shutdown");
}

/// Large parts leave by gather without a copy: the large-path ratio is
/// 1.0 and most bytes written were never copied.
#[test]
fn large_parts_take_the_gather_path() {
    let cfg = StrategyArgs {
        send: SendMode::Auto,
        gather_threshold: Some(16 << 10),
        ..big_cfg()
    };
    let t = TestServer::start(cfg);
    let mut c = t.dealer();
    let b = body(256 << 10, 3);
    for _ in 0..8 {
        c.send_message(&[b"small", &b, b"small"]);
        let got = c.read_message();
        assert!(got[1] == b);
    }
    drop(c);
    let r = t.finish_report(EndpointKind::Router);
    assert_eq!(r.large_path_ratio(), Some(1.0), "{r}");
    assert!(r.copies_per_byte() < 0.01, "{r}");
    assert!(r.large_bytes >= 8 * (256 << 10), "{r}");

    // --send linear: every byte copied, ratio 0.
    let t = TestServer::start(StrategyArgs {
        send: SendMode::Linear,
        ..big_cfg()
    });
    let mut c = t.dealer();
    c.send_message(&[&b]);
    assert!(c.read_message()[0] == b);
    drop(c);
    let r = t.finish_report(EndpointKind::Router);
    assert_eq!(r.large_path_ratio(), Some(0.0), "{r}");
    assert!(r.copies_per_byte() > 0.99, "{r}");
}

/// Large parts are received straight into their own message: after the
/// first one (which may arrive whole in the first, unbounded read), at most
/// the short read that follows a large part (`netbuf::DIRECT_HEAD_READ`
/// bytes) is copied out of the receive buffer per large part, and no
/// part's message is zeroed before the socket read fills it.
#[test]
fn large_parts_are_received_without_a_copy() {
    let t = TestServer::start(big_cfg());
    let mut c = t.dealer();
    let b = body(256 << 10, 5);
    for _ in 0..16 {
        c.send_message(&[b"small", &b]);
        let got = c.read_message();
        assert!(got[0] == b"small" && got[1] == b);
    }
    drop(c);
    let r = t.finish_report(EndpointKind::Router);
    assert!(r.direct_parts >= 15, "{r}");
    let later = r.recv_bytes_copied.saturating_sub(256 << 10);
    assert!(
        later <= 16 * netbuf::DIRECT_HEAD_READ as u64,
        "{} bytes copied beyond the first large part: {r}",
        later
    );
    assert!(r.recv_bytes >= 16 * (256 << 10), "{r}");
    // Read by read(2) into the messages' uninitialised memory: no memset.
    assert_eq!(r.recv_bytes_zeroed, 0, "{r}");
}

/// Every strategy of the demo carries ZMTP too.
#[test]
fn echo_under_every_recv_and_queue_mode() {
    use server_demo::config::{QueueMode, RecvMode};
    for recv in [RecvMode::Linear, RecvMode::Chained] {
        for queue in [QueueMode::Mpsc, QueueMode::Mutex] {
            let t = TestServer::start(StrategyArgs {
                recv,
                queue,
                logic_threads: 0,
                io_threads: 2,
                ..big_cfg()
            });
            for _ in 0..2 {
                let mut c = t.dealer();
                for len in [0usize, 256, 5000, 70_000] {
                    let b = body(len, 1);
                    c.send_message(&[&b, b"x"]);
                    assert_eq!(c.read_message(), vec![b, b"x".to_vec()]);
                }
            }
            t.finish();
        }
    }
}

/// Two DEALERs pipelining thousands of messages each get their own
/// replies, in order, through a small send queue (reading pauses while
/// replies pile up; nothing is dropped).
#[test]
fn pipelining_dealers_get_their_own_replies_in_order() {
    use std::io::Write;
    let t = TestServer::start(StrategyArgs {
        send_queue_bytes: 64 << 10,
        ..StrategyArgs::default()
    });
    const N: u32 = 5000;
    let mut joins = Vec::new();
    for who in 0..2u8 {
        let addr = t.addr(EndpointKind::Router).trim_start_matches("tcp://");
        let s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let mut w = s.try_clone().unwrap();
        let mut c = Client::new(s);
        c.handshake("DEALER");
        let mut wire = Vec::new();
        for i in 0..N {
            wire.extend(zmtp_client::frame(zmtp_client::MORE, &[who]));
            wire.extend(zmtp_client::frame(0, &i.to_be_bytes()));
        }
        let writer = std::thread::spawn(move || w.write_all(&wire).unwrap());
        joins.push(std::thread::spawn(move || {
            for i in 0..N {
                let m = c.read_message();
                assert_eq!(m, vec![vec![who], i.to_be_bytes().to_vec()]);
            }
            writer.join().unwrap();
        }));
    }
    for j in joins {
        j.join().unwrap();
    }
    let r = t.finish_report(EndpointKind::Router);
    assert_eq!(r.messages_out, 2 * u64::from(N), "{r}");
}
