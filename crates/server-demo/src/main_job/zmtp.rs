//! The main job's ZMTP section: the server with a ROUTER and an XSUB /
//! XPUB broker on loopback TCP, driven by the crate's own ZMTP client
//! ([`crate::zmtp::client`], no libzmq): DEALER echo with a window of
//! requests in flight, one PUB through the broker to N SUBs paced to the
//! slowest one, and per endpoint the large-path ratio and copies per byte
//! from the server's counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::markdown_table;
use crate::config::Listen;
use crate::config::StrategyArgs;
use crate::server::Server;
use crate::zmtp::client::{self, Client, Outbox, Socket};
use crate::zmtp::{EndpointKind, EndpointReport, EndpointSpec};

/// Every blocking step gives up after this long (a hang fails the row).
const STEP: Duration = Duration::from_secs(30);

/// One measured ZMTP row.
#[derive(Debug, Clone, Serialize)]
pub struct ZmtpRow {
    /// `echo 64B tcp (2 DEALER x window 64)`, `fan-out 1KiB x16`...
    pub scenario: String,
    /// Replies (echo) or deliveries (fan-out) per second.
    pub per_sec: f64,
    /// Body MB/s (one direction).
    pub mb_per_sec: f64,
    /// Server CPU nanoseconds per message (echo) or delivery (fan-out).
    pub cpu_ns_per_msg: f64,
    /// Server allocator calls per message or delivery.
    pub allocs_per_msg: f64,
    /// Large parts' bytes sent without a copy per byte of large parts
    /// (`None`: no part reached the gather threshold).
    pub large_path_ratio: Option<f64>,
    /// Bytes copied into send buffers per byte written.
    pub copies_per_byte: f64,
    /// Whole messages subscribers missed (high-water mark).
    pub dropped: u64,
}

/// One endpoint's totals after the section.
#[derive(Debug, Clone, Serialize)]
pub struct ZmtpEndpointRow {
    /// `zmtp-router`, `zmtp-xsub`, `zmtp-xpub`.
    pub kind: String,
    /// Bound address.
    pub address: String,
    /// Connections accepted.
    pub sessions: u64,
    /// Whole messages received / queued out / missed.
    pub messages: (u64, u64, u64),
    /// As [`ZmtpRow::large_path_ratio`].
    pub large_path_ratio: Option<f64>,
    /// As [`ZmtpRow::copies_per_byte`].
    pub copies_per_byte: f64,
}

/// The whole section.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ZmtpSection {
    /// Echo and fan-out rows.
    pub rows: Vec<ZmtpRow>,
    /// Per endpoint.
    pub endpoints: Vec<ZmtpEndpointRow>,
    /// Clean leak report at shutdown.
    pub leak_free: bool,
}

enum Plan {
    Echo {
        size: usize,
        messages: u64,
        clients: usize,
        window: u64,
    },
    FanOut {
        size: usize,
        subscribers: usize,
        messages: u64,
    },
}

const PLAN: [Plan; 7] = [
    Plan::Echo {
        size: 64,
        messages: 400_000,
        clients: 2,
        window: 64,
    },
    Plan::Echo {
        size: 1024,
        messages: 200_000,
        clients: 2,
        window: 64,
    },
    Plan::Echo {
        size: 64 << 10,
        messages: 8_000,
        clients: 2,
        window: 8,
    },
    Plan::Echo {
        size: 256 << 10,
        messages: 2_000,
        clients: 2,
        window: 4,
    },
    Plan::FanOut {
        size: 64,
        subscribers: 16,
        messages: 50_000,
    },
    Plan::FanOut {
        size: 1024,
        subscribers: 16,
        messages: 20_000,
    },
    Plan::FanOut {
        size: 1024,
        subscribers: 256,
        messages: 1_000,
    },
];

impl Plan {
    fn name(&self) -> String {
        let sz = crate::load::fmt_size;
        match self {
            Plan::Echo {
                size,
                clients,
                window,
                ..
            } => format!(
                "echo {} tcp ({clients} DEALER x window {window})",
                sz(*size)
            ),
            Plan::FanOut {
                size, subscribers, ..
            } => format!("fan-out {} PUB -> {subscribers} SUB", sz(*size)),
        }
    }
}

fn endpoint(server: &Server, kind: EndpointKind) -> Option<String> {
    server
        .zmtp_endpoints()
        .into_iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, a)| a)
}

fn stats_of(server: &Server, kind: EndpointKind) -> Option<EndpointReport> {
    server.zmtp_stats().into_iter().find(|r| r.kind == kind)
}

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// Runs the section on a fresh server (default strategy, 1 MiB parts).
pub fn run_zmtp() -> ZmtpSection {
    let mut section = ZmtpSection::default();
    let specs: Vec<EndpointSpec> = [EndpointKind::Router, EndpointKind::Xsub, EndpointKind::Xpub]
        .into_iter()
        .map(|kind| EndpointSpec {
            kind,
            addr: "tcp://127.0.0.1:0".parse().expect("endpoint"),
        })
        .collect();
    let cfg = StrategyArgs {
        max_frame: 1 << 20,
        ..StrategyArgs::default()
    };
    let server = match Server::start_with_zmtp(Listen::default(), &specs, cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("zmtp: cannot start: {e}");
            return section;
        }
    };
    for plan in PLAN {
        let t = Instant::now();
        match run_one(&server, &plan) {
            Ok(r) => {
                eprintln!(
                    "  zmtp {:<40} {:>12.0}/s  ({:.2} s)",
                    r.scenario,
                    r.per_sec,
                    t.elapsed().as_secs_f64()
                );
                section.rows.push(r);
            }
            Err(e) => eprintln!("  zmtp {}: failed: {e}", plan.name()),
        }
    }
    let (leaks, stats) = server.shutdown_with_stats();
    section.leak_free = leaks.is_clean();
    if !leaks.is_clean() {
        eprintln!("zmtp: LEAK after shutdown: {leaks}");
    }
    section.endpoints = stats
        .iter()
        .map(|r| ZmtpEndpointRow {
            kind: r.kind.label().to_string(),
            address: r.address.clone(),
            sessions: r.sessions_opened,
            messages: (r.messages_in, r.messages_out, r.messages_dropped),
            large_path_ratio: r.large_path_ratio(),
            copies_per_byte: r.copies_per_byte(),
        })
        .collect();
    section
}

fn run_one(server: &Server, plan: &Plan) -> Result<ZmtpRow, String> {
    let kind = match plan {
        Plan::Echo { .. } => EndpointKind::Router,
        Plan::FanOut { .. } => EndpointKind::Xpub,
    };
    let before = stats_of(server, kind).ok_or("endpoint missing")?;
    let (a0, cpu0) = server.thread_totals();
    let (per_sec, size, messages) = match *plan {
        Plan::Echo {
            size,
            messages,
            clients,
            window,
        } => {
            let ep = endpoint(server, EndpointKind::Router).ok_or("no router")?;
            let per_sec = dealer_echo(&ep, size, messages, clients, window)?;
            (per_sec, size, messages)
        }
        Plan::FanOut {
            size,
            subscribers,
            messages,
        } => {
            let xsub = endpoint(server, EndpointKind::Xsub).ok_or("no xsub")?;
            let xpub = endpoint(server, EndpointKind::Xpub).ok_or("no xpub")?;
            let (per_sec, deliveries) = fan_out(&xsub, &xpub, size, subscribers, messages)?;
            (per_sec, size, deliveries)
        }
    };
    // The run's sessions close: their flusher counters are folded in.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.live_sessions() > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    let (a1, cpu1) = server.thread_totals();
    let after = stats_of(server, kind).ok_or("endpoint missing")?;
    let d = |f: fn(&EndpointReport) -> u64| f(&after).saturating_sub(f(&before));
    let delta = EndpointReport {
        large_bytes: d(|r| r.large_bytes),
        gather_bytes: d(|r| r.gather_bytes),
        bytes_copied: d(|r| r.bytes_copied),
        bytes_written: d(|r| r.bytes_written),
        messages_dropped: d(|r| r.messages_dropped),
        ..after.clone()
    };
    let m = messages.max(1) as f64;
    Ok(ZmtpRow {
        scenario: plan.name(),
        per_sec,
        mb_per_sec: per_sec * size as f64 / 1e6,
        cpu_ns_per_msg: cpu1.saturating_sub(cpu0) as f64 / m,
        allocs_per_msg: a1.saturating_sub(a0) as f64 / m,
        large_path_ratio: delta.large_path_ratio(),
        copies_per_byte: delta.copies_per_byte(),
        dropped: delta.messages_dropped,
    })
}

fn stamp(body: &mut [u8], seq: u64) {
    body[..8].copy_from_slice(&seq.to_le_bytes());
}

fn seq_of(body: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&body[..8]);
    u64::from_le_bytes(a)
}

/// `clients` DEALERs, each with `window` requests in flight, echo
/// `messages` bodies of `size` bytes in all; every reply is checked (its
/// sequence and every byte). Returns replies per second, timed from the
/// first request to the last reply.
fn dealer_echo(
    ep: &str,
    size: usize,
    messages: u64,
    clients: usize,
    window: u64,
) -> Result<f64, String> {
    let size = size.max(8);
    let per = messages / clients as u64;
    let conns = connect_dealers(ep, clients)?;
    let start = Instant::now();
    let results: Vec<Result<(), String>> = thread::scope(|s| {
        let handles: Vec<_> = conns
            .into_iter()
            .map(|c| s.spawn(move || echo_client(s, c, size, per, window)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("client panicked".into())))
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64().max(1e-9);
    results.into_iter().collect::<Result<Vec<()>, String>>()?;
    Ok((per * clients as u64) as f64 / elapsed)
}

/// `clients` DEALERs on `ep`, handshaken, every blocking step timing out
/// after [`STEP`] (a hang fails the row instead of the job).
fn connect_dealers(ep: &str, clients: usize) -> Result<Vec<Client<Socket>>, String> {
    let mut conns = Vec::new();
    for _ in 0..clients {
        let sock = client::connect(ep).map_err(|e| err("connect", e))?;
        sock.set_read_timeout(Some(STEP))
            .map_err(|e| err("timeout", e))?;
        sock.set_write_timeout(Some(STEP))
            .map_err(|e| err("timeout", e))?;
        let mut c = Client::new(sock);
        c.handshake("DEALER", None)
            .map_err(|e| err("handshake", e))?;
        conns.push(c);
    }
    Ok(conns)
}

/// One DEALER's share, `per` requests of `size` bytes: a writer thread (in
/// scope `s`) keeps up to `window` of them in flight while this thread
/// reads and checks the replies, its count (`received`) granting the
/// writer more credit.
fn echo_client<'scope>(
    s: &'scope thread::Scope<'scope, '_>,
    mut c: Client<Socket>,
    size: usize,
    per: u64,
    window: u64,
) -> Result<(), String> {
    let w = c.get_ref().try_clone().map_err(|e| err("clone", e))?;
    let received = Arc::new(AtomicU64::new(0));
    let tpl: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
    let writer = {
        let (received, body) = (received.clone(), tpl.clone());
        s.spawn(move || send_echo_requests(w, body, &received, per, window))
    };
    check_echo_replies(&mut c, &tpl, per, &received, writer.thread())?;
    writer.join().map_err(|_| "writer panicked".to_string())?
}

/// Sends `per` copies of `body`, each stamped with its sequence, at most
/// `window` ahead of the replies `received`; waits (parked, woken by the
/// reader) while out of credit, and gives up after [`STEP`].
fn send_echo_requests(
    mut w: Socket,
    mut body: Vec<u8>,
    received: &AtomicU64,
    per: u64,
    window: u64,
) -> Result<(), String> {
    let mut out = Outbox::new();
    let mut sent = 0u64;
    let deadline = Instant::now() + STEP;
    while sent < per {
        let done = received.load(Ordering::Acquire);
        let credit = window.saturating_sub(sent - done.min(sent));
        if credit == 0 {
            if Instant::now() > deadline {
                return Err("echo: no replies (hang)".into());
            }
            out.flush(&mut w).map_err(|e| err("send", e))?;
            thread::park_timeout(Duration::from_millis(10));
            continue;
        }
        for _ in 0..credit.min(per - sent) {
            stamp(&mut body, sent);
            out.push(&mut w, &[&body[..]]).map_err(|e| err("send", e))?;
            sent += 1;
        }
        out.flush(&mut w).map_err(|e| err("send", e))?;
    }
    Ok(())
}

/// Reads `per` replies, each checked against its request (one part, the
/// sequence, every byte of `tpl` after it), counting them in `received`
/// and waking the `writer` after each.
fn check_echo_replies(
    c: &mut Client<Socket>,
    tpl: &[u8],
    per: u64,
    received: &AtomicU64,
    writer: &thread::Thread,
) -> Result<(), String> {
    let mut parts = Vec::new();
    for i in 0..per {
        if !c
            .read_message_into(&mut parts)
            .map_err(|e| err("reply", e))?
        {
            return Err("echo: server closed".into());
        }
        let ok = parts.len() == 1
            && parts[0].len() == tpl.len()
            && seq_of(&parts[0]) == i
            && parts[0][8..] == tpl[8..];
        if !ok {
            return Err(format!("echo: reply {i} differs from its request"));
        }
        received.store(i + 1, Ordering::Release);
        writer.unpark();
    }
    Ok(())
}

/// One PUB through the broker to `subscribers` SUBs: probes until every
/// subscriber is subscribed, then `messages` bodies of `size` bytes, at most
/// a window ahead of the slowest subscriber (no high-water-mark drops).
/// Each subscriber checks the sequence and length of every message.
/// Returns (deliveries per second, deliveries).
fn fan_out(
    xsub: &str,
    xpub: &str,
    size: usize,
    subscribers: usize,
    messages: u64,
) -> Result<(f64, u64), String> {
    let size = size.max(8);
    // The window keeps each subscriber's queue well under its byte bound.
    let window = ((1u64 << 20) / (size as u64 + 16)).clamp(16, 512);
    let subs = connect_subscribers(xpub, subscribers)?;
    let mut publisher = connect_publisher(xsub)?;
    let counts: Vec<AtomicU64> = (0..subscribers).map(|_| AtomicU64::new(0)).collect();
    let ready: Vec<AtomicBool> = (0..subscribers).map(|_| AtomicBool::new(false)).collect();
    let failed = AtomicBool::new(false);
    let (counts, ready, failed) = (&counts, &ready, &failed);
    let mut started = Instant::now();
    let results: Vec<Result<(), String>> = thread::scope(|s| {
        let handles: Vec<_> = subs
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                s.spawn(move || -> Result<(), String> {
                    let r = receive_fan_out(c, i, size, messages, &ready[i], &counts[i]);
                    if r.is_err() {
                        failed.store(true, Ordering::Release);
                    }
                    r
                })
            })
            .collect();
        let p = probe_until_ready(&mut publisher, ready, failed).and_then(|()| {
            started = Instant::now();
            publish_windowed(&publisher, size, messages, window, counts, failed)
        });
        if p.is_err() {
            // Unblock the subscribers: their reads time out or see EOF.
            failed.store(true, Ordering::Release);
        }
        let mut all: Vec<Result<(), String>> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("SUB panicked".into())))
            .collect();
        all.push(p);
        all
    });
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    results.into_iter().collect::<Result<Vec<()>, String>>()?;
    let deliveries = messages * subscribers as u64;
    Ok((deliveries as f64 / elapsed, deliveries))
}

/// `subscribers` SUBs on `xpub`, each subscribed to everything.
fn connect_subscribers(xpub: &str, subscribers: usize) -> Result<Vec<Client<Socket>>, String> {
    let mut subs = Vec::new();
    for _ in 0..subscribers {
        let sock = client::connect(xpub).map_err(|e| err("connect SUB", e))?;
        sock.set_read_timeout(Some(STEP))
            .map_err(|e| err("timeout", e))?;
        let mut c = Client::new(sock);
        c.handshake("SUB", None)
            .map_err(|e| err("SUB handshake", e))?;
        c.subscribe(b"").map_err(|e| err("subscribe", e))?;
        subs.push(c);
    }
    Ok(subs)
}

/// The PUB on `xsub`.
fn connect_publisher(xsub: &str) -> Result<Client<Socket>, String> {
    let psock = client::connect(xsub).map_err(|e| err("connect PUB", e))?;
    psock
        .set_write_timeout(Some(STEP))
        .map_err(|e| err("timeout", e))?;
    let mut publisher = Client::new(psock);
    publisher
        .handshake("PUB", None)
        .map_err(|e| err("PUB handshake", e))?;
    // The broker's subscription forwarding is not read: a few bytes.
    Ok(publisher)
}

/// Subscriber `i`: sets `ready` at its first probe, then checks `messages`
/// messages of `size` bytes in sequence, counting them in `count`.
fn receive_fan_out(
    mut c: Client<Socket>,
    i: usize,
    size: usize,
    messages: u64,
    ready: &AtomicBool,
    count: &AtomicU64,
) -> Result<(), String> {
    let mut parts = Vec::new();
    let mut next = 0u64;
    loop {
        if next == messages {
            break Ok(());
        }
        match c.read_message_into(&mut parts) {
            Ok(true) => {}
            Ok(false) => break Err("SUB: server closed".into()),
            Err(e) => break Err(err("SUB read", e)),
        }
        if parts.len() == 1 && parts[0].len() < 8 {
            ready.store(true, Ordering::Release);
            continue; // a probe
        }
        if parts.len() != 1 || parts[0].len() != size || seq_of(&parts[0]) != next {
            break Err(format!("SUB {i}: message {next} missing or altered"));
        }
        next += 1;
        count.store(next, Ordering::Release);
    }
}

/// Publishes probes until every subscriber has seen one.
fn probe_until_ready(
    publisher: &mut Client<Socket>,
    ready: &[AtomicBool],
    failed: &AtomicBool,
) -> Result<(), String> {
    let deadline = Instant::now() + STEP;
    while !ready.iter().all(|r| r.load(Ordering::Acquire)) {
        if Instant::now() > deadline || failed.load(Ordering::Acquire) {
            return Err("subscribers never saw a probe".into());
        }
        publisher
            .send_message(&[b"?"])
            .map_err(|e| err("probe", e))?;
        thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// Publishes `messages` bodies of `size` bytes, at most `window` ahead of
/// the slowest subscriber (`counts`).
fn publish_windowed(
    publisher: &Client<Socket>,
    size: usize,
    messages: u64,
    window: u64,
    counts: &[AtomicU64],
    failed: &AtomicBool,
) -> Result<(), String> {
    let mut w = publisher
        .get_ref()
        .try_clone()
        .map_err(|e| err("clone", e))?;
    let mut out = Outbox::new();
    let mut body: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let mut sent = 0u64;
    let mut last_progress = (0u64, Instant::now());
    while sent < messages {
        let slowest = counts
            .iter()
            .map(|c| c.load(Ordering::Acquire))
            .min()
            .unwrap_or(0);
        if slowest != last_progress.0 {
            last_progress = (slowest, Instant::now());
        } else if last_progress.1.elapsed() > STEP || failed.load(Ordering::Acquire) {
            return Err("subscribers stopped progressing".into());
        }
        let credit = (slowest + window).saturating_sub(sent).min(messages - sent);
        if credit == 0 {
            thread::sleep(Duration::from_micros(200));
            continue;
        }
        for _ in 0..credit {
            stamp(&mut body, sent);
            out.push(&mut w, &[&body[..]])
                .map_err(|e| err("publish", e))?;
            sent += 1;
        }
        out.flush(&mut w).map_err(|e| err("publish", e))?;
    }
    Ok(())
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "n/a".into(), |r| format!("{r:.2}"))
}

/// Renders the section as two Markdown tables.
pub fn render_zmtp(section: &ZmtpSection) -> String {
    let head = "scenario | msgs/s | MB/s | server CPU ns/msg | server allocs/msg | large-path | copies/byte | dropped";
    let rows = markdown_table(
        head,
        1,
        section.rows.iter().map(|r| {
            vec![
                r.scenario.clone(),
                format!("{:.0}", r.per_sec),
                format!("{:.1}", r.mb_per_sec),
                format!("{:.0}", r.cpu_ns_per_msg),
                format!("{:.3}", r.allocs_per_msg),
                fmt_ratio(r.large_path_ratio),
                format!("{:.3}", r.copies_per_byte),
                r.dropped.to_string(),
            ]
        }),
    );
    let head =
        "endpoint | address | sessions | msgs in / out / dropped | large-path ratio | copies/byte";
    let endpoints = markdown_table(
        head,
        2,
        section.endpoints.iter().map(|e| {
            let (i, o, d) = e.messages;
            vec![
                e.kind.clone(),
                e.address.clone(),
                e.sessions.to_string(),
                format!("{i} / {o} / {d}"),
                fmt_ratio(e.large_path_ratio),
                format!("{:.3}", e.copies_per_byte),
            ]
        }),
    );
    format!(
        "ZMTP 3.1 (NULL) on loopback tcp, the crate's own client (no libzmq):\n\n{rows}\n\
         (fan-out rows: msgs/s and CPU are per delivery; large-path and copies/byte of the \
         row's endpoint: router for echo, xpub for fan-out)\n\n{endpoints}\n\
         leak report after shutdown: {}\n",
        if section.leak_free { "clean" } else { "LEAK" }
    )
}
