//! The ZMTP handshake and bad input: a greeting split at every byte,
//! versions below 3, other mechanisms, socket types the endpoint does not
//! accept, reserved flags, oversize frames (refused before allocation),
//! garbage. Each bad peer is closed alone (ERROR first where it can read
//! one) and the server goes on serving.

mod zmtp_client;

use std::time::Duration;

use server_demo::config::StrategyArgs;
use server_demo::zmtp::EndpointKind;
use zmtp_client::{COMMAND, Client, TestServer, frame, greeting, ready};

/// A healthy DEALER that checks the server still echoes.
fn still_serving(t: &TestServer) {
    let mut c = t.dealer();
    c.send_message(&[b"ok?"]);
    assert_eq!(c.read_message(), vec![b"ok?".to_vec()]);
}

#[test]
fn greeting_split_at_every_byte() {
    let t = TestServer::start(StrategyArgs::default());
    let g = greeting(3, 1, "NULL");
    // The greeting, READY and a message, cut once at every offset.
    let mut wire = g.to_vec();
    wire.extend(frame(COMMAND, &ready("DEALER", None)));
    wire.extend(frame(0, b"split"));
    for cut in 1..wire.len() {
        let mut c = t.connect(EndpointKind::Router);
        c.send(&wire[..cut]);
        // Let the server see the first piece alone.
        std::thread::sleep(Duration::from_millis(2));
        c.send(&wire[cut..]);
        let mut theirs = [0u8; 64];
        c.read_exact(&mut theirs);
        let f = c.read_frame().unwrap().unwrap();
        assert_eq!(f.command_name(), Some(&b"READY"[..]), "cut at {cut}");
        assert_eq!(c.read_message(), vec![b"split".to_vec()], "cut at {cut}");
    }
    t.finish();
}

#[test]
fn versions_below_3_are_closed_without_error() {
    let t = TestServer::start(StrategyArgs::default());
    for major in [0u8, 1, 2] {
        let mut c = t.connect(EndpointKind::Router);
        // Only the first 11 bytes: the version is detected from them.
        c.send(&greeting(major, 0, "NULL")[..11]);
        let got = c.read_to_end();
        // Our greeting (sent at once), then the close: no ERROR command.
        assert_eq!(got.len(), 64, "major {major}");
    }
    // ZMTP 1.0 (unversioned): first byte is not 0xFF.
    let mut c = t.connect(EndpointKind::Router);
    c.send(&[0x01, 0x00]);
    assert_eq!(c.read_to_end().len(), 64);
    // ... or the 10th byte's low bit is clear.
    let mut c = t.connect(EndpointKind::Router);
    let mut g = greeting(3, 0, "NULL");
    g[9] = 0;
    c.send(&g[..10]);
    assert_eq!(c.read_to_end().len(), 64);
    still_serving(&t);
    let r = t.finish_report(EndpointKind::Router);
    assert_eq!(r.sessions_rejected, 5, "{r}");
}

#[test]
fn other_mechanisms_get_error() {
    let t = TestServer::start(StrategyArgs::default());
    for mech in ["PLAIN", "CURVE", "GSSAPI"] {
        let mut c = t.connect(EndpointKind::Router);
        c.send(&greeting(3, 1, mech));
        let mut theirs = [0u8; 64];
        c.read_exact(&mut theirs);
        let reason = c.error_then_close().expect("ERROR");
        assert!(reason.contains(mech), "{reason}");
    }
    still_serving(&t);
    t.finish();
}

#[test]
fn incompatible_or_unknown_socket_types_get_error() {
    let t = TestServer::start(StrategyArgs::default());
    let cases = [
        (EndpointKind::Router, "PUB"),
        (EndpointKind::Router, "PAIR"),
        (EndpointKind::Pair, "DEALER"),
        (EndpointKind::Xsub, "SUB"),
        (EndpointKind::Xpub, "PUB"),
        (EndpointKind::Router, "BOGUS"),
    ];
    for (kind, ty) in cases {
        let mut c = t.connect(kind);
        c.greet(1);
        c.send(&frame(COMMAND, &ready(ty, None)));
        let f = c.read_frame().unwrap().unwrap();
        assert_eq!(f.command_name(), Some(&b"READY"[..]));
        let reason = c.error_then_close().expect("ERROR");
        assert!(reason.contains(ty), "{kind:?} {ty}: {reason}");
    }
    // READY without Socket-Type, a message before READY.
    let mut c = t.connect(EndpointKind::Router);
    c.greet(1);
    c.send(&frame(COMMAND, b"\x05READY"));
    assert!(c.error_then_close().unwrap().contains("Socket-Type"));
    let mut c = t.connect(EndpointKind::Router);
    c.greet(1);
    c.send(&frame(0, b"too early"));
    assert!(c.error_then_close().unwrap().contains("before READY"));
    still_serving(&t);
    t.finish();
}

#[test]
fn reserved_flags_oversize_and_garbage() {
    let t = TestServer::start(StrategyArgs {
        max_frame: 1000,
        ..StrategyArgs::default()
    });
    for flags in [0x08u8, 0x10, 0x80, 0x05] {
        let mut c = t.dealer();
        c.send(&[flags, 1, b'x']);
        let reason = c.error_then_close().expect("ERROR");
        assert!(
            reason.contains("flag") || reason.contains("MORE"),
            "{reason}"
        );
    }
    // Oversize: announced sizes far beyond memory are refused from the
    // size field alone (an allocation attempt would abort the process).
    let before = t.server().pool().stats();
    for size in [1001u64, 1 << 40, u64::MAX] {
        let mut c = t.dealer();
        let mut h = vec![0x02];
        h.extend_from_slice(&size.to_be_bytes());
        c.send(&h);
        let reason = c.error_then_close().expect("ERROR");
        assert!(reason.contains("exceeds the limit"), "{reason}");
    }
    let after = t.server().pool().stats();
    assert!(
        after.heap_allocs <= before.heap_allocs + 2,
        "no large allocation for refused frames: {before:?} -> {after:?}"
    );
    // Garbage after a good handshake, and garbage instead of a greeting.
    let mut c = t.dealer();
    c.send(b"\xff\xff\xff\xff garbage");
    assert!(c.error_then_close().is_some());
    let mut c = t.connect(EndpointKind::Router);
    c.send(b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(c.read_to_end().len(), 64);
    // Malformed commands.
    for body in [&b""[..], b"\x09SUB", b"\x04PING\x00", b"\x05ERROR"] {
        let mut c = t.dealer();
        c.send(&frame(COMMAND, body));
        assert!(c.error_then_close().is_some(), "{body:?}");
    }
    // A peer that vanishes mid-frame.
    let mut c = t.dealer();
    c.send(&[0x00, 100, 1, 2, 3]);
    drop(c);
    still_serving(&t);
    zmtp_client::eventually("sessions closed", || t.server().live_sessions() == 0);
    t.finish();
}

#[test]
fn a_peer_error_closes_quietly() {
    let t = TestServer::start(StrategyArgs::default());
    let mut c = t.connect(EndpointKind::Router);
    c.greet(1);
    c.send(&frame(COMMAND, &zmtp_client::command("ERROR", b"\x03bye")));
    // The close, and no ERROR back.
    assert_eq!(c.error_then_close(), None);
    still_serving(&t);
    t.finish();
}

/// An inproc client gets the same refusals.
#[test]
fn inproc_bad_input() {
    let t = TestServer::start(StrategyArgs::default());
    let mut c = Client::new(t.server().connect_zmtp_inproc(EndpointKind::Xpub));
    c.greet(1);
    c.send(&frame(COMMAND, &ready("DEALER", None)));
    let f = c.read_frame().unwrap().unwrap();
    assert_eq!(f.command_name(), Some(&b"READY"[..]));
    assert!(c.error_then_close().unwrap().contains("DEALER"));
    t.finish();
}
