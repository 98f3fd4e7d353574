//! The soak's ZMTP clients, beside the demo protocol's (same server, same
//! run, same checks), through the crate's own client
//! ([`crate::zmtp::client`]):
//!
//! * **DEALER echo** on the ROUTER endpoint: multi-part messages (1 to 4
//!   parts, some empty, bodies up to 1 MiB) whose every part carries a
//!   stamp `(magic, connection, message * 8 + part, length, checksum)`;
//!   every reply must be the next message sent, all parts, byte for byte.
//!   Some stop reading for a while (the server must push back, not drop),
//!   some vanish with replies owed or in the middle of a frame.
//! * **SUB** on the XPUB endpoint: subscribes to some of three topics
//!   (3.1 SUBSCRIBE command or 3.0 subscription message), maybe another
//!   later, maybe cancels one; every delivery `[topic, body, (extra)]` is
//!   verified and logged per topic.
//! * **PUB** on the XSUB endpoint: publishes paced, stamped messages with a
//!   per-topic sequence; some vanish inside a message's last frame (the
//!   broker must deliver nothing of it).
//! * **chaos**: peers that vanish mid-greeting or mid-frame, or send
//!   garbage (not a greeting, the PLAIN mechanism, an incompatible socket
//!   type, reserved flag bits, a part over the limit, garbage after valid
//!   echoes): the server must close them, and only them.
//!
//! Each topic is checked like a demo room ([`super::check_rooms`]): every
//! subscription is a window onto the topic's single publish order (the
//! broker fans out under one lock), with consecutive sequence numbers from
//! every publisher, so a lost, duplicated or reordered delivery fails.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{self, ErrorKind};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Ctx, EpochLog, Rng, Stamp, Totals, echo_size, make_body, parse_body, pub_size};
use crate::server::Server;
use crate::zmtp::EndpointKind;
use crate::zmtp::client::{self as zc, Client, Socket};

mod chaos;
use crate::sync::LockExt;
use chaos::chaos;

/// Magic of a ZMTP echo part.
pub const ZECHO_MAGIC: u32 = 0x4f48_435a;
/// Magic of a ZMTP publish part.
pub const ZPUB_MAGIC: u32 = 0x4255_505a;
/// The topics (none is a prefix of another).
const TOPICS: [&[u8]; 3] = [b"zt1", b"zt2", b"zt3"];
/// Topic `i` is checked as room `TOPIC_ROOM_BASE + i` (demo rooms are 1..=3).
pub const TOPIC_ROOM_BASE: u16 = 100;

/// Where the soak's ZMTP endpoints listen.
pub(super) const LOOPBACK: &str = "tcp://127.0.0.1:0";

/// The server's ZMTP endpoints the clients use.
#[derive(Debug, Clone)]
pub(super) struct Endpoints {
    pub(super) router: String,
    pub(super) xsub: String,
    pub(super) xpub: String,
}

impl Endpoints {
    /// The server's router, xsub and xpub endpoints (`None` without them).
    pub(super) fn of(server: &Server) -> Option<Endpoints> {
        let eps = server.zmtp_endpoints();
        let find = |k| eps.iter().find(|(kind, _)| *kind == k).map(|e| e.1.clone());
        Some(Endpoints {
            router: find(EndpointKind::Router)?,
            xsub: find(EndpointKind::Xsub)?,
            xpub: find(EndpointKind::Xpub)?,
        })
    }
}

/// The end-of-run checks of the ZMTP side (the topics' windows are checked
/// with the demo rooms): every connection's session opened and closed,
/// no subscriber missed a message (each one kept reading), and something
/// was verified.
pub(super) fn final_checks(server: &Server, totals: &Totals, zmtp_clients: usize) -> Vec<String> {
    let mut failures = Vec::new();
    if zmtp_clients == 0 {
        return failures;
    }
    let z = &totals.zmtp;
    if z.echo_answered == 0 || z.deliveries == 0 {
        failures
            .push("the ZMTP clients verified no echo or no delivery: nothing was tested".into());
    }
    let stats = server.zmtp_stats();
    let opened: u64 = stats.iter().map(|r| r.sessions_opened).sum();
    let closed: u64 = stats.iter().map(|r| r.sessions_closed).sum();
    if opened != z.connections || opened != closed {
        failures.push(format!(
            "zmtp sessions opened {opened} / closed {closed} vs {} ZMTP client connections",
            z.connections
        ));
    }
    for r in stats.iter().filter(|r| r.messages_dropped > 0) {
        failures.push(format!(
            "{} {}: subscribers missed {} messages though every one kept reading",
            r.kind.label(),
            r.address,
            r.messages_dropped
        ));
    }
    failures
}

/// What the ZMTP clients did.
#[derive(Debug, Default, Clone)]
pub struct ZmtpTotals {
    /// Connections opened (chaos peers included).
    pub connections: u64,
    /// Echo messages sent / answered and verified (all parts).
    pub echo_sent: u64,
    /// ... answered and verified.
    pub echo_answered: u64,
    /// Message parts verified (replies and deliveries).
    pub parts_verified: u64,
    /// Messages published.
    pub publishes: u64,
    /// Deliveries received and verified.
    pub deliveries: u64,
    /// Subscriptions / cancels sent.
    pub subscriptions: u64,
    /// ... cancels.
    pub cancels: u64,
    /// Echo clients that stopped reading for a while.
    pub slow_readers: u64,
    /// Peers that vanished mid-greeting or mid-frame.
    pub vanished_mid_frame: u64,
    /// DEALERs that vanished with replies owed.
    pub vanished_with_replies_owed: u64,
    /// Peers that sent garbage (and were closed by the server).
    pub garbage: u64,
}

impl ZmtpTotals {
    pub(super) fn add(&mut self, o: &ZmtpTotals) {
        self.connections += o.connections;
        self.echo_sent += o.echo_sent;
        self.echo_answered += o.echo_answered;
        self.parts_verified += o.parts_verified;
        self.publishes += o.publishes;
        self.deliveries += o.deliveries;
        self.subscriptions += o.subscriptions;
        self.cancels += o.cancels;
        self.slow_readers += o.slow_readers;
        self.vanished_mid_frame += o.vanished_mid_frame;
        self.vanished_with_replies_owed += o.vanished_with_replies_owed;
        self.garbage += o.garbage;
    }
}

impl fmt::Display for ZmtpTotals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "  zmtp: {} connections; DEALER echo {} sent / {} answered and verified; publish {}, \
             deliveries {} verified; {} parts verified; subscribe {}, cancel {}; faults: slow \
             readers {}, vanished mid-frame {}, vanished with replies owed {}, garbage {} (each \
             closed by the server)",
            self.connections,
            self.echo_sent,
            self.echo_answered,
            self.publishes,
            self.deliveries,
            self.parts_verified,
            self.subscriptions,
            self.cancels,
            self.slow_readers,
            self.vanished_mid_frame,
            self.vanished_with_replies_owed,
            self.garbage
        )
    }
}

/// A client thread of ZMTP connections until the deadline.
pub(super) fn client(ctx: &Ctx, eps: &Endpoints, seed: u64) -> Totals {
    let mut rng = super::stamp::rng(seed);
    let mut totals = Totals::default();
    while Instant::now() < ctx.deadline && !ctx.stop_all.load(Ordering::Relaxed) {
        let r = match rng.range(0, 99) {
            0..=39 => echo(ctx, eps, &mut rng, &mut totals),
            40..=61 => subscriber(ctx, eps, &mut rng, &mut totals),
            62..=83 => publisher(ctx, eps, &mut rng, &mut totals),
            _ => chaos(ctx, eps, &mut rng, &mut totals),
        };
        if let Err(e) = r {
            ctx.fail(format!("zmtp client: {e}"));
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    totals
}

// ---------------------------------------------------------------------------
// A connection: handshake, writer side here, reader thread.

/// What a reader thread reports.
#[derive(Default)]
struct ReadOut {
    /// The stream ended before we stopped it.
    closed_by_server: bool,
    error: Option<String>,
    answered: u64,
    parts: u64,
    deliveries: u64,
    logs: Vec<EpochLog>,
}

struct Link {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
}

struct ZConn {
    id: u64,
    w: Socket,
    link: Link,
    reader: Option<JoinHandle<ReadOut>>,
    write_failed: Option<io::Error>,
    totals: Totals,
}

impl ZConn {
    /// Connects and completes the handshake as `socket_type` (3.`minor`).
    fn open(
        ctx: &Ctx,
        ep: &str,
        socket_type: &str,
        minor: u8,
    ) -> io::Result<(ZConn, Client<Socket>)> {
        let sock = zc::connect(ep)?;
        sock.set_write_timeout(Some(Duration::from_secs(60)))?;
        sock.set_read_timeout(Some(Duration::from_secs(60)))?;
        let id = ctx.next_conn.fetch_add(1, Ordering::Relaxed);
        let mut totals = Totals {
            connections: 1,
            ..Totals::default()
        };
        totals.zmtp.connections = 1;
        let w = sock.try_clone()?;
        let mut c = Client::new(sock);
        c.max_part = ctx.max_frame;
        let identity = id.is_multiple_of(3).then(|| id.to_be_bytes());
        c.handshake_v(socket_type, identity.as_ref().map(|i| &i[..]), minor)
            .map_err(|e| io::Error::new(e.kind(), format!("{socket_type} handshake: {e}")))?;
        let link = Link {
            stop: Arc::new(AtomicBool::new(false)),
            answered: Arc::new(AtomicU64::new(0)),
        };
        Ok((
            ZConn {
                id,
                w,
                link,
                reader: None,
                write_failed: None,
                totals,
            },
            c,
        ))
    }

    fn spawn(&mut self, f: impl FnOnce(&AtomicBool, &AtomicU64) -> ReadOut + Send + 'static) {
        let (stop, answered) = (self.link.stop.clone(), self.link.answered.clone());
        self.reader = std::thread::Builder::new()
            .name(format!("soak-zrd-{}", self.id))
            .spawn(move || super::tidy(|| f(&stop, &answered)))
            .ok();
    }

    fn write(&mut self, bytes: &[u8]) -> bool {
        super::clients::write_counted(&mut self.w, bytes, &mut self.totals, &mut self.write_failed)
    }

    /// Ends the connection. `graceful`: every echo must be answered first.
    /// `behaved`: the server must not have closed it.
    fn end(mut self, ctx: &Ctx, graceful: bool, behaved: bool, into: &mut Totals) {
        if graceful && self.write_failed.is_none() {
            let end = Instant::now() + Duration::from_secs(60);
            while self.link.answered.load(Ordering::Acquire) < self.totals.zmtp.echo_sent
                && Instant::now() < end
                && !self.reader.as_ref().is_none_or(|r| r.is_finished())
            {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        self.link.stop.store(true, Ordering::Release);
        let _ = self.w.shutdown(Shutdown::Both);
        let Some(Ok(out)) = self.reader.take().map(|r| r.join()) else {
            ctx.fail(format!(
                "zmtp conn {}: reader thread missing or panicked",
                self.id
            ));
            return;
        };
        let id = self.id;
        let z = &mut self.totals.zmtp;
        z.echo_answered += out.answered;
        z.parts_verified += out.parts;
        z.deliveries += out.deliveries;
        if let Some(e) = out.error {
            ctx.fail(e);
        }
        if behaved && out.closed_by_server {
            ctx.fail(format!(
                "zmtp conn {id}: closed by the server though it behaved ({} of {} echoes \
                 answered)",
                out.answered, z.echo_sent
            ));
        } else if graceful && out.answered < z.echo_sent {
            ctx.fail(format!(
                "zmtp conn {id}: {} of {} echo replies arrived (lost replies; write error: {:?})",
                out.answered, z.echo_sent, self.write_failed
            ));
        }
        let mut logs = out.logs;
        ctx.logs.locked().append(&mut logs);
        into.add(&self.totals);
    }
}

/// Reads messages until the stream ends or `stop`; `on` checks each one.
fn read_messages(
    mut c: Client<Socket>,
    stop: &AtomicBool,
    pause: Option<(u64, Duration)>,
    mut on: impl FnMut(&[Vec<u8>], &mut ReadOut) -> Result<(), String>,
) -> ReadOut {
    let mut out = ReadOut::default();
    let mut parts = Vec::new();
    let mut pause = pause;
    let mut n = 0u64;
    loop {
        if let Some((_, dur)) = pause.filter(|p| n >= p.0) {
            pause = None;
            let end = Instant::now() + dur;
            while Instant::now() < end && !stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        match c.read_message_into(&mut parts) {
            Ok(true) => {}
            Ok(false) => {
                out.closed_by_server = !stop.load(Ordering::Acquire);
                return out;
            }
            Err(e) => {
                if !stop.load(Ordering::Acquire) {
                    if matches!(e.kind(), ErrorKind::InvalidData | ErrorKind::WouldBlock) {
                        out.error = Some(format!("zmtp: bad stream from the server: {e}"));
                    } else {
                        out.closed_by_server = true;
                    }
                }
                return out;
            }
        }
        if let Some(r) = c.commands.iter().find_map(|f| zc::error_reason(&f.body)) {
            out.error = Some(format!("zmtp: ERROR {r:?} from the server"));
            return out;
        }
        c.commands.clear();
        n += 1;
        if let Err(e) = on(&parts, &mut out) {
            out.error = Some(e);
            return out;
        }
    }
}

// ---------------------------------------------------------------------------
// DEALER echo.

/// A part's identity: `None` for an empty part.
type Sig = Option<Stamp>;

fn parse_parts(magic: u32, parts: &[Vec<u8>]) -> Result<Vec<Sig>, String> {
    parts
        .iter()
        .map(|p| {
            if p.is_empty() {
                Ok(None)
            } else {
                parse_body(magic, p).map(Some)
            }
        })
        .collect()
}

fn echo_message(rng: &mut Rng, conn: u64, seq: u64) -> (Vec<Vec<u8>>, Vec<Sig>) {
    let n = rng.range(1, 4);
    let mut parts = Vec::new();
    let mut sigs = Vec::new();
    for i in 0..n {
        if i > 0 && rng.chance(0.15) {
            parts.push(Vec::new());
            sigs.push(None);
            continue;
        }
        let len = if i == 0 {
            echo_size(rng)
        } else if rng.chance(0.05) {
            rng.range(32, 96 << 10) as usize
        } else {
            rng.range(32, 2048) as usize
        };
        let (b, st) = make_body(ZECHO_MAGIC, conn, seq * 8 + i, len);
        parts.push(b);
        sigs.push(Some(st));
    }
    (parts, sigs)
}

fn echo(ctx: &Ctx, eps: &Endpoints, rng: &mut Rng, into: &mut Totals) -> io::Result<()> {
    let (mut z, c) = ZConn::open(ctx, &eps.router, "DEALER", rng.range(0, 1) as u8)?;
    let slow = rng.chance(0.12);
    let n = rng.range(1, 200);
    let pause = slow.then(|| {
        (
            rng.range(0, n / 2),
            Duration::from_millis(rng.range(200, 1500)),
        )
    });
    if slow {
        z.totals.zmtp.slow_readers += 1;
    }
    let (tx, rx) = mpsc::channel::<Vec<Sig>>();
    let id = z.id;
    z.spawn(move |stop, answered| {
        let mut pending = VecDeque::new();
        read_messages(c, stop, pause, |parts, out| {
            while let Ok(s) = rx.try_recv() {
                pending.push_back(s);
            }
            let got = parse_parts(ZECHO_MAGIC, parts)
                .map_err(|e| format!("zmtp conn {id}: echo reply: {e}"))?;
            match pending.pop_front() {
                Some(want) if want == got => {}
                Some(want) => {
                    return Err(format!(
                        "zmtp conn {id}: echo reply {} out of order, altered or with parts \
                         lost: expected {want:?}, got {got:?}",
                        out.answered
                    ));
                }
                None => return Err(format!("zmtp conn {id}: echo reply with nothing owed")),
            }
            out.answered += 1;
            out.parts += parts.len() as u64;
            answered.store(out.answered, Ordering::Release);
            Ok(())
        })
    });
    let mut wire = Vec::new();
    for seq in 0..n {
        let (parts, sigs) = echo_message(rng, id, seq);
        let _ = tx.send(sigs);
        z.totals.zmtp.echo_sent += 1;
        wire.clear();
        zc::put_message(&mut wire, &parts);
        if !z.write(&wire) {
            break;
        }
    }
    match rng.range(0, 99) {
        0..=74 => z.end(ctx, true, true, into),
        75..=87 => {
            z.totals.zmtp.vanished_with_replies_owed += 1;
            z.end(ctx, false, true, into);
        }
        _ => {
            // Vanish inside a frame of one more message.
            let (parts, _) = echo_message(rng, id, u64::MAX >> 4);
            wire.clear();
            zc::put_message(&mut wire, &parts);
            let cut = rng.range(1, wire.len() as u64 - 1) as usize;
            z.write(&wire[..cut]);
            z.totals.zmtp.vanished_mid_frame += 1;
            z.end(ctx, false, true, into);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// PUB / SUB through the broker.

fn subscriber(ctx: &Ctx, eps: &Endpoints, rng: &mut Rng, into: &mut Totals) -> io::Result<()> {
    let minor = rng.range(0, 1) as u8;
    let (mut z, c) = ZConn::open(ctx, &eps.xpub, "SUB", minor)?;
    let (tx, rx) = mpsc::channel::<usize>();
    let id = z.id;
    z.spawn(move |stop, _| sub_reader(c, stop, id, rx));
    let mut subscribed = Vec::new();
    for t in 0..TOPICS.len() {
        if subscribed.is_empty() || rng.chance(0.4) {
            subscribe_new(&mut z, minor, &tx, &mut subscribed, t);
        }
    }
    sub_churn(ctx, &mut z, rng, minor, &tx, &mut subscribed);
    z.end(ctx, false, true, into);
    Ok(())
}

/// A SUB's reader thread: checks every delivery and logs it per topic (a
/// topic is announced on `rx` before its subscription is sent).
fn sub_reader(c: Client<Socket>, stop: &AtomicBool, id: u64, rx: mpsc::Receiver<usize>) -> ReadOut {
    let mut logs: HashMap<usize, Vec<(u64, u64)>> = HashMap::new();
    let mut out = read_messages(c, stop, None, |parts, out| {
        while let Ok(t) = rx.try_recv() {
            logs.entry(t).or_default();
        }
        check_delivery(id, parts, &mut logs)?;
        out.deliveries += 1;
        out.parts += parts.len() as u64;
        Ok(())
    });
    let mut logs: Vec<_> = logs.into_iter().collect();
    logs.sort_by_key(|(t, _)| *t);
    out.logs = logs
        .into_iter()
        .map(|(t, entries)| EpochLog {
            room: TOPIC_ROOM_BASE + t as u16,
            conn: id,
            entries,
        })
        .collect();
    out
}

/// Checks one delivery `[topic, body, (extra)]` to SUB `id` and logs it
/// under its topic.
fn check_delivery(
    id: u64,
    parts: &[Vec<u8>],
    logs: &mut HashMap<usize, Vec<(u64, u64)>>,
) -> Result<(), String> {
    let t = TOPICS
        .iter()
        .position(|t| parts.first().is_some_and(|p| p == t))
        .ok_or_else(|| format!("zmtp SUB {id}: delivery without a known topic"))?;
    let log = logs
        .get_mut(&t)
        .ok_or_else(|| format!("zmtp SUB {id}: delivery of topic {t} it never subscribed to"))?;
    let sigs = parse_parts(ZPUB_MAGIC, &parts[1..])
        .map_err(|e| format!("zmtp SUB {id}: delivery: {e}"))?;
    let Some(Some(first)) = sigs.first() else {
        return Err(format!("zmtp SUB {id}: delivery without its body part"));
    };
    for (i, s) in sigs.iter().enumerate().skip(1) {
        let ok = s.is_some_and(|s| s.conn == first.conn && s.seq == first.seq + i as u64);
        if !ok {
            return Err(format!("zmtp SUB {id}: parts of different messages mixed"));
        }
    }
    log.push((first.conn, first.seq / 8));
    Ok(())
}

/// Sends a subscription (`on`) to topic `t`, or its cancel: a 3.1 command
/// or a 3.0 subscription message, per `minor`.
fn subscribe(z: &mut ZConn, minor: u8, t: usize, on: bool) -> bool {
    let body = if minor >= 1 {
        zc::frame(
            zc::COMMAND,
            &zc::command(if on { "SUBSCRIBE" } else { "CANCEL" }, TOPICS[t]),
        )
    } else {
        let mut m = vec![on as u8];
        m.extend_from_slice(TOPICS[t]);
        zc::frame(0, &m)
    };
    z.write(&body)
}

/// Subscribes to topic `t`, telling the reader (`tx`) first.
fn subscribe_new(
    z: &mut ZConn,
    minor: u8,
    tx: &mpsc::Sender<usize>,
    subscribed: &mut Vec<usize>,
    t: usize,
) {
    let _ = tx.send(t);
    subscribe(z, minor, t, true);
    subscribed.push(t);
    z.totals.zmtp.subscriptions += 1;
}

/// A SUB's life after its first subscriptions: maybe subscribes to another
/// topic late, maybe cancels its first one, until a random end.
fn sub_churn(
    ctx: &Ctx,
    z: &mut ZConn,
    rng: &mut Rng,
    minor: u8,
    tx: &mpsc::Sender<usize>,
    subscribed: &mut Vec<usize>,
) {
    let life = Duration::from_millis(rng.range(500, 4000));
    let end = (Instant::now() + life).min(ctx.deadline + Duration::from_millis(500));
    let mut cancelled = false;
    while Instant::now() < end && z.write_failed.is_none() {
        std::thread::sleep(Duration::from_millis(50));
        let late: Vec<usize> = (0..TOPICS.len())
            .filter(|t| !subscribed.contains(t))
            .collect();
        if !late.is_empty() && rng.chance(0.02) {
            let t = late[rng.range(0, late.len() as u64 - 1) as usize];
            subscribe_new(z, minor, tx, subscribed, t);
        } else if !cancelled && subscribed.len() > 1 && rng.chance(0.02) {
            // Cancelled topics are never subscribed again: late deliveries
            // of them stay part of one window.
            subscribe(z, minor, subscribed[0], false);
            cancelled = true;
            z.totals.zmtp.cancels += 1;
        }
    }
}

fn publisher(ctx: &Ctx, eps: &Endpoints, rng: &mut Rng, into: &mut Totals) -> io::Result<()> {
    let (mut z, mut c) = ZConn::open(ctx, &eps.xsub, "PUB", rng.range(0, 1) as u8)?;
    let id = z.id;
    // The broker tells publishers the subscriptions: drain and check them.
    z.spawn(move |stop, _| {
        let mut out = ReadOut::default();
        loop {
            match c.read_frame() {
                Ok(Some(f)) => {
                    let ok = if f.is_command() {
                        matches!(f.command_name(), Some(b"SUBSCRIBE" | b"CANCEL" | b"PING"))
                    } else {
                        !f.more() && matches!(f.body.first(), Some(0 | 1))
                    };
                    if !ok {
                        out.error = Some(format!("zmtp PUB {id}: not a subscription: {f:?}"));
                        return out;
                    }
                }
                Ok(None) => {
                    out.closed_by_server = !stop.load(Ordering::Acquire);
                    return out;
                }
                Err(_) => {
                    out.closed_by_server = !stop.load(Ordering::Acquire);
                    return out;
                }
            }
        }
    });
    let mut seqs = [0u64; TOPICS.len()];
    let life = Duration::from_millis(rng.range(500, 4000));
    let end = (Instant::now() + life).min(ctx.deadline + Duration::from_millis(500));
    let mut wire = Vec::new();
    let message = |rng: &mut Rng, t: usize, seq: u64| {
        let mut parts = vec![TOPICS[t].to_vec()];
        for i in 0..rng.range(1, 3) {
            let len = if i == 0 {
                pub_size(rng)
            } else {
                rng.range(32, 600) as usize
            };
            parts.push(make_body(ZPUB_MAGIC, id, seq * 8 + i, len).0);
        }
        parts
    };
    while Instant::now() < end && z.write_failed.is_none() {
        let t = rng.range(0, TOPICS.len() as u64 - 1) as usize;
        let parts = message(rng, t, seqs[t]);
        seqs[t] += 1;
        wire.clear();
        zc::put_message(&mut wire, &parts);
        if z.write(&wire) {
            z.totals.zmtp.publishes += 1;
        }
        std::thread::sleep(Duration::from_millis(rng.range(1, 8)));
    }
    if rng.chance(0.15) {
        // Vanish inside the last frame of a message: none of it may reach
        // a subscriber.
        let t = rng.range(0, TOPICS.len() as u64 - 1) as usize;
        let parts = message(rng, t, seqs[t]);
        wire.clear();
        zc::put_message(&mut wire, &parts);
        let last = parts.last().map_or(0, |p| p.len()) as u64;
        let cut = wire.len() - rng.range(1, last) as usize;
        z.write(&wire[..cut]);
        z.totals.zmtp.vanished_mid_frame += 1;
    }
    z.end(ctx, false, true, into);
    Ok(())
}
