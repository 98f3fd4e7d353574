//! The libzmq-based load generator of the ZMTP benchmark: DEALER clients
//! with a window of requests in flight ([`throughput`]), a one-request
//! ping-pong client ([`latency`]) and one PUB through the broker to N SUBs
//! paced to the slowest subscriber ([`fan_out`]). Every reply is checked
//! (length and sequence number), so a server that loses or reorders
//! messages fails the run instead of posting a figure.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// What one load run measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Measured {
    /// Messages completed: echoes, round trips or deliveries.
    pub messages: u64,
    /// Wall time of the measured part.
    pub elapsed: Duration,
    /// Message body size.
    pub size: usize,
    /// Round-trip median in microseconds (latency runs).
    pub p50_us: Option<f64>,
    /// Round-trip 99th percentile in microseconds (latency runs).
    pub p99_us: Option<f64>,
}

impl Measured {
    /// Messages per second.
    pub fn per_sec(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Megabytes (10^6) of bodies per second, one direction.
    pub fn mb_per_sec(&self) -> f64 {
        self.per_sec() * self.size as f64 / 1e6
    }
}

const TIMEOUT_MS: i32 = 10_000;

fn socket(ctx: &zmq::Context, ty: zmq::SocketType, ep: &str) -> Result<zmq::Socket, String> {
    let s = ctx.socket(ty).map_err(|e| e.to_string())?;
    let setup = || -> zmq::Result<()> {
        s.set_linger(0)?;
        s.set_rcvtimeo(TIMEOUT_MS)?;
        s.set_sndtimeo(TIMEOUT_MS)?;
        s.set_rcvhwm(0)?;
        s.set_sndhwm(0)?;
        s.connect(ep)
    };
    setup().map_err(|e| format!("{ep}: {e}"))?;
    Ok(s)
}

/// Stamps `seq` into the first 8 bytes of a request body (when it has
/// room); the rest of the body is reused as it is.
fn stamp(b: &mut [u8], seq: u64) -> &[u8] {
    if b.len() >= 8 {
        b[..8].copy_from_slice(&seq.to_le_bytes());
    }
    b
}

fn check(reply: &[u8], size: usize, seq: u64) -> Result<(), String> {
    if reply.len() != size {
        return Err(format!("reply {seq}: {} bytes, sent {size}", reply.len()));
    }
    if size >= 8 && reply[..8] != seq.to_le_bytes() {
        return Err(format!("reply {seq} out of order"));
    }
    Ok(())
}

/// Receives one reply into `msg` (reused: no allocation of ours per reply)
/// and checks it.
fn recv_checked(
    s: &zmq::Socket,
    msg: &mut zmq::Message,
    size: usize,
    seq: u64,
) -> Result<(), String> {
    s.recv(msg, 0)
        .map_err(|e| format!("reply {seq}: {e} (no reply within {TIMEOUT_MS} ms)"))?;
    check(msg, size, seq)
}

/// `clients` DEALERs, each with `window` requests of `size` bytes in
/// flight, echoed by the ROUTER at `ep` for about `run`.
pub fn throughput(
    ep: &str,
    size: usize,
    clients: usize,
    window: usize,
    run: Duration,
) -> Result<Measured, String> {
    let ctx = zmq::Context::new();
    let start = Instant::now();
    let handles: Vec<_> = (0..clients.max(1))
        .map(|_| {
            let s = socket(&ctx, zmq::DEALER, ep);
            std::thread::spawn(move || -> Result<u64, String> {
                let s = s?;
                let mut buf = vec![0xA5u8; size];
                let mut reply = zmq::Message::new();
                let (mut sent, mut done) = (0u64, 0u64);
                while sent < window as u64 {
                    s.send(stamp(&mut buf, sent), 0)
                        .map_err(|e| e.to_string())?;
                    sent += 1;
                }
                let deadline = Instant::now() + run;
                while done < sent {
                    recv_checked(&s, &mut reply, size, done)?;
                    done += 1;
                    if Instant::now() < deadline {
                        s.send(stamp(&mut buf, sent), 0)
                            .map_err(|e| e.to_string())?;
                        sent += 1;
                    }
                }
                Ok(done)
            })
        })
        .collect();
    let mut messages = 0;
    for h in handles {
        messages += h.join().map_err(|_| "client panicked".to_string())??;
    }
    Ok(Measured {
        messages,
        elapsed: start.elapsed(),
        size,
        ..Measured::default()
    })
}

/// One DEALER, one request of `size` bytes at a time, for about `run`
/// (after a short warm-up); p50 and p99 of the round trips.
pub fn latency(ep: &str, size: usize, run: Duration) -> Result<Measured, String> {
    let ctx = zmq::Context::new();
    let s = socket(&ctx, zmq::DEALER, ep)?;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
    let mut buf = vec![0xA5u8; size];
    let mut reply = zmq::Message::new();
    for seq in 0..50 {
        s.send(stamp(&mut buf, seq), 0).map_err(|e| e.to_string())?;
        recv_checked(&s, &mut reply, size, seq)?;
    }
    let start = Instant::now();
    let mut seq = 50;
    while start.elapsed() < run {
        let t = Instant::now();
        s.send(stamp(&mut buf, seq), 0).map_err(|e| e.to_string())?;
        recv_checked(&s, &mut reply, size, seq)?;
        hist.saturating_record(t.elapsed().as_nanos() as u64);
        seq += 1;
    }
    Ok(Measured {
        messages: hist.len(),
        elapsed: start.elapsed(),
        size,
        p50_us: Some(hist.value_at_quantile(0.50) as f64 / 1e3),
        p99_us: Some(hist.value_at_quantile(0.99) as f64 / 1e3),
    })
}

/// One PUB (connected to the broker's XSUB endpoint) to `subscribers` SUBs
/// (on its XPUB endpoint), each subscribed to everything; batches of
/// `batch` publishes of `size` bytes, the next batch once the slowest
/// subscriber has the whole previous one. Messages counts deliveries.
pub fn fan_out(
    xsub: &str,
    xpub: &str,
    subscribers: usize,
    size: usize,
    batch: usize,
    run: Duration,
) -> Result<Measured, String> {
    let ctx = zmq::Context::new();
    let publisher = socket(&ctx, zmq::PUB, xsub)?;
    let subs = (0..subscribers)
        .map(|_| {
            let s = socket(&ctx, zmq::SUB, xpub)?;
            s.set_subscribe(b"").map_err(|e| e.to_string())?;
            Ok(s)
        })
        .collect::<Result<Vec<_>, String>>()?;
    // Until every subscription has reached the publisher through the
    // broker, publishes are dropped: probe until each SUB has one.
    let sync_deadline = Instant::now() + Duration::from_secs(30);
    let mut synced = vec![false; subs.len()];
    while synced.iter().any(|s| !s) {
        if Instant::now() > sync_deadline {
            let n = synced.iter().filter(|s| **s).count();
            return Err(format!("only {n} of {subscribers} subscribers synced"));
        }
        publisher.send(&b"S"[..], 0).map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_millis(10));
        for (i, s) in subs.iter().enumerate() {
            while let Ok(m) = s.recv_bytes(zmq::DONTWAIT) {
                synced[i] |= m == b"S";
            }
        }
    }
    std::thread::sleep(Duration::from_millis(50));
    for s in &subs {
        while s.recv_bytes(zmq::DONTWAIT).is_ok() {}
    }
    let mut msg = vec![0x5Au8; size.max(9)];
    msg[0] = b'M';
    let start = Instant::now();
    let mut seq = 0u64;
    let mut deliveries = 0u64;
    while start.elapsed() < run {
        let first = seq;
        for _ in 0..batch {
            msg[1..9].copy_from_slice(&seq.to_le_bytes());
            publisher.send(&msg[..], 0).map_err(|e| e.to_string())?;
            seq += 1;
        }
        for s in &subs {
            for want in first..seq {
                let m = s
                    .recv_bytes(0)
                    .map_err(|e| format!("delivery {want}: {e} (subscriber starved)"))?;
                if m.len() != msg.len() || m[1..9] != want.to_le_bytes() {
                    return Err(format!("delivery {want}: lost, reordered or changed"));
                }
                deliveries += 1;
            }
        }
    }
    Ok(Measured {
        messages: deliveries,
        elapsed: start.elapsed(),
        size,
        ..Measured::default()
    })
}
