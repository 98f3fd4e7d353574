//! Real libzmq sockets (the `zmq` crate, libzmq built from source) with
//! bounded waits: every receive and send gives up after [`STEP_TIMEOUT`].

use std::time::{Duration, Instant};

use super::STEP_TIMEOUT;

/// A connected libzmq socket of type `ty` with linger 0 and the step
/// timeout on sends and receives.
pub fn connect(ctx: &zmq::Context, ty: zmq::SocketType, ep: &str) -> zmq::Socket {
    let s = ctx.socket(ty).expect("socket");
    s.set_linger(0).unwrap();
    s.set_rcvtimeo(STEP_TIMEOUT.as_millis() as i32).unwrap();
    s.set_sndtimeo(STEP_TIMEOUT.as_millis() as i32).unwrap();
    s.connect(ep)
        .unwrap_or_else(|e| panic!("connect {ep}: {e}"));
    s
}

/// Sends `parts` as one message.
pub fn send(s: &zmq::Socket, parts: &[Vec<u8>]) {
    s.send_multipart(parts, 0)
        .unwrap_or_else(|e| panic!("send of {} parts: {e}", parts.len()));
}

/// Receives one whole message; fails the test after the step timeout.
pub fn recv(s: &zmq::Socket) -> Vec<Vec<u8>> {
    s.recv_multipart(0)
        .unwrap_or_else(|e| panic!("no message within {STEP_TIMEOUT:?}: {e}"))
}

/// Receives one message if one arrives within `ms` milliseconds.
pub fn try_recv(s: &zmq::Socket, ms: i64) -> Option<Vec<Vec<u8>>> {
    match s.poll(zmq::POLLIN, ms) {
        Ok(n) if n > 0 => Some(recv(s)),
        _ => None,
    }
}

/// Sends `parts` and checks that the same parts come back.
pub fn echo(s: &zmq::Socket, parts: &[Vec<u8>]) {
    send(s, parts);
    let back = recv(s);
    assert_eq!(back.len(), parts.len(), "echo changed the number of parts");
    for (i, (a, b)) in back.iter().zip(parts).enumerate() {
        assert!(
            a == b,
            "echo changed part {i}: {} bytes back, {} sent",
            a.len(),
            b.len()
        );
    }
}

/// Waits until a libzmq publisher's subscription has reached it through
/// the broker: publishes `probe` every 20 ms until every subscriber in
/// `subs` has received it (each must subscribe to a prefix of `probe`).
/// Later probes still in flight are discarded by [`drain`].
pub fn sync_subscribers(publisher: &zmq::Socket, subs: &[&zmq::Socket], probe: &[u8]) {
    let deadline = Instant::now() + STEP_TIMEOUT;
    let mut got = vec![false; subs.len()];
    while got.iter().any(|g| !g) {
        assert!(
            Instant::now() < deadline,
            "subscriptions did not reach the publisher within {STEP_TIMEOUT:?}"
        );
        publisher.send(probe, 0).expect("publish probe");
        for (i, s) in subs.iter().enumerate() {
            while let Some(m) = try_recv(s, if got[i] { 0 } else { 20 }) {
                if m[0] == probe {
                    got[i] = true;
                }
            }
        }
    }
    std::thread::sleep(Duration::from_millis(50));
    for s in subs {
        drain(s, probe);
    }
}

/// Discards messages whose first part is `probe` until none is pending.
pub fn drain(s: &zmq::Socket, probe: &[u8]) {
    while let Some(m) = try_recv(s, 50) {
        assert_eq!(m[0], probe, "unexpected message while draining probes");
    }
}

/// Monitor events of `s` (as `zmq::SocketEvent`s), read from a PAIR
/// connected to its monitor endpoint.
pub struct Monitor {
    pair: zmq::Socket,
}

impl Monitor {
    /// Starts monitoring every event of `s`.
    pub fn new(ctx: &zmq::Context, s: &zmq::Socket, name: &str) -> Monitor {
        let ep = format!("inproc://monitor-{name}");
        s.monitor(&ep, zmq::SocketEvent::ALL as i32)
            .expect("monitor");
        let pair = connect(ctx, zmq::PAIR, &ep);
        Monitor { pair }
    }

    /// Waits for the first event among `wanted`; `None` after the step timeout.
    pub fn wait_for(&self, wanted: &[zmq::SocketEvent]) -> Option<zmq::SocketEvent> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        while Instant::now() < deadline {
            let Some(m) = try_recv(&self.pair, 100) else {
                continue;
            };
            let raw = u16::from_le_bytes([m[0][0], m[0][1]]);
            let ev = zmq::SocketEvent::from_raw(raw);
            if wanted.contains(&ev) {
                return Some(ev);
            }
        }
        None
    }
}

/// First part of the probes [`sync_subscribers`] publishes in the broker
/// tests.
pub const PROBE: &[u8] = b"sync-probe";

/// Receives the next message that is not a late [`PROBE`] (one still in
/// flight when the sync ended).
pub fn recv_data(s: &zmq::Socket) -> Vec<Vec<u8>> {
    loop {
        let m = recv(s);
        if m[0] != PROBE {
            return m;
        }
    }
}

/// [`try_recv`], skipping late [`PROBE`]s.
pub fn try_recv_data(s: &zmq::Socket, ms: i64) -> Option<Vec<Vec<u8>>> {
    loop {
        let m = try_recv(s, ms)?;
        if m[0] != PROBE {
            return Some(m);
        }
    }
}
