//! The demo-protocol clients: each client thread opens connection after
//! connection until the deadline, each playing one scenario (echo, garbage
//! / oversize, rooms) through a [`Conn`] whose reader thread feeds a
//! [`ConnChecker`].

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use crate::load::{Stream, Target};
use crate::protocol::{DemoFraming, HEADER_LEN, Kind, encode_header};
use netbuf::{Compaction, LinearBuffer};

use super::Ctx;
use super::checks::{ConnChecker, Sent};
use super::memory::tidy;
use super::report::Totals;
use super::stamp::{ECHO_MAGIC, PUB_MAGIC, Rng, le_u32, make_body};
use crate::sync::LockExt;

/// Rooms the room clients use (1..=ROOMS).
const ROOMS: u16 = 3;

/// Shared between a connection's writer and its reader thread.
struct Link {
    tx: mpsc::Sender<Sent>,
    answered: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<ReaderOut>>,
}

struct ReaderOut {
    checker: ConnChecker,
    /// The stream ended (EOF or reset) before we asked the reader to stop.
    closed_by_server: bool,
    /// Ended inside a frame.
    truncated: bool,
    error: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The connection behaves: the server must not close it.
    Normal,
    /// A subscriber that stops reading: may be closed as a slow consumer.
    MayBeSlowConsumer,
    /// Sent garbage / oversize: the server must close it.
    ServerCloses,
    /// We drop it ourselves with replies owed: only the prefix is checked.
    WeDrop,
}

struct Conn {
    id: u64,
    stream: Stream,
    link: Link,
    echo_seq: u64,
    pub_seq: HashMap<u16, u64>,
    joined: Vec<u16>,
    totals: Totals,
    write_failed: Option<io::Error>,
    /// What a fault sent, for failure messages.
    note: String,
}

impl Conn {
    fn open(ctx: &Ctx, pause: Option<(u64, Duration)>) -> io::Result<Conn> {
        // TCP_NODELAY on; no connect time limit of ours (the kernel's).
        let stream = Target::Tcp(ctx.addr).connect(Duration::MAX)?;
        stream.set_write_timeout(Some(Duration::from_secs(60)))?;
        let rd = stream.try_clone()?;
        rd.set_read_timeout(Some(Duration::from_millis(100)))?;
        let id = ctx.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        let answered = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s, max) = (answered.clone(), stop.clone(), ctx.max_frame);
        let reader = std::thread::Builder::new()
            .name(format!("soak-rd-{id}"))
            .spawn(move || tidy(|| read_loop(id, rd, rx, a, s, max, pause)))?;
        Ok(Conn {
            id,
            stream,
            link: Link {
                tx,
                answered,
                stop,
                reader: Some(reader),
            },
            echo_seq: 0,
            pub_seq: HashMap::new(),
            joined: Vec::new(),
            totals: Totals {
                connections: 1,
                ..Totals::default()
            },
            write_failed: None,
            note: String::new(),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> bool {
        write_counted(
            &mut self.stream,
            bytes,
            &mut self.totals,
            &mut self.write_failed,
        )
    }

    fn frame(kind: Kind, room: u16, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER_LEN + body.len());
        v.extend_from_slice(&encode_header(kind, room, body.len() as u32));
        v.extend_from_slice(body);
        v
    }

    fn echo(&mut self, len: usize) -> bool {
        let (body, st) = make_body(ECHO_MAGIC, self.id, self.echo_seq, len);
        self.echo_seq += 1;
        let _ = self.link.tx.send(Sent::Echo(st));
        self.totals.echo_sent += 1;
        self.write(&Conn::frame(Kind::EchoRequest, 0, &body))
    }

    fn join(&mut self, room: u16) -> bool {
        let _ = self.link.tx.send(Sent::Join(room));
        self.joined.push(room);
        self.totals.joins += 1;
        self.write(&encode_header(Kind::Join, room, 0))
    }

    fn leave(&mut self, room: u16) -> bool {
        let (body, st) = make_body(ECHO_MAGIC, self.id, self.echo_seq, 64);
        self.echo_seq += 1;
        let _ = self.link.tx.send(Sent::Leave(room, st));
        self.joined.retain(|&r| r != room);
        self.totals.leaves += 1;
        self.totals.echo_sent += 1;
        let mut v = encode_header(Kind::Leave, room, 0).to_vec();
        v.extend_from_slice(&Conn::frame(Kind::EchoRequest, 0, &body));
        self.write(&v)
    }

    fn publish(&mut self, room: u16, len: usize) -> bool {
        let seq = self.pub_seq.entry(room).or_insert(0);
        let (body, _) = make_body(PUB_MAGIC, self.id, *seq, len);
        *seq += 1;
        self.totals.publishes += 1;
        self.write(&Conn::frame(Kind::Publish, room, &body))
    }

    /// Waits until every echo sent is answered (or the reader ended).
    fn wait_answered(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.link.answered.load(Ordering::Acquire) >= self.totals.echo_sent {
                return true;
            }
            if self.link.reader.as_ref().is_some_and(|r| r.is_finished()) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    }

    /// Ends the connection and judges it.
    fn end(mut self, ctx: &Ctx, expect: Expect, graceful: bool, into: &mut Totals) {
        let mut answered_all = true;
        if graceful && self.write_failed.is_none() {
            answered_all = self.wait_answered(Duration::from_secs(60));
        }
        if expect == Expect::ServerCloses {
            // Give the server time to close; the reader ends on EOF.
            let end = Instant::now() + Duration::from_secs(20);
            while Instant::now() < end && !self.link.reader.as_ref().is_none_or(|r| r.is_finished())
            {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        self.link.stop.store(true, Ordering::Release);
        let _ = self.stream.shutdown(Shutdown::Both);
        let out = match self.link.reader.take().map(|r| r.join()) {
            Some(Ok(o)) => o,
            _ => {
                ctx.fail(format!("conn {}: reader thread panicked", self.id));
                return;
            }
        };
        let mut checker = out.checker;
        checker.finish();
        self.totals.echo_answered += checker.answered;
        self.totals.deliveries += checker.deliveries;
        self.totals.bytes_in += checker.bytes_in;
        let id = self.id;
        if let Some(e) = out.error {
            ctx.fail(e);
        }
        self.judge(ctx, expect, answered_all, out.closed_by_server, &checker);
        // A stream cut inside a frame is only acceptable when the server
        // closed it (it may stop mid-frame) or we did.
        if out.truncated && expect == Expect::Normal && out.closed_by_server {
            ctx.fail(format!("conn {id}: stream ended inside a frame"));
        }
        ctx.logs.locked().append(&mut checker.epochs);
        into.add(&self.totals);
    }

    /// Judges how the connection ended (closed by the server or not, with
    /// which reason, every echo answered or not) against `expect`.
    fn judge(
        &mut self,
        ctx: &Ctx,
        expect: Expect,
        answered_all: bool,
        closed_by_server: bool,
        checker: &ConnChecker,
    ) {
        let id = self.id;
        let reason = checker.closing.clone();
        match expect {
            Expect::Normal | Expect::WeDrop => {
                if closed_by_server || reason.is_some() {
                    ctx.fail(format!(
                        "conn {id}: closed by the server though it behaved (closing: {reason:?}, \
                         {} of {} echoes answered)",
                        checker.answered, self.totals.echo_sent
                    ));
                } else if expect == Expect::Normal && !answered_all {
                    ctx.fail(format!(
                        "conn {id}: {} of {} echo replies arrived (lost replies; write error: \
                         {:?})",
                        checker.answered, self.totals.echo_sent, self.write_failed
                    ));
                }
            }
            Expect::MayBeSlowConsumer => {
                if closed_by_server || reason.is_some() {
                    match reason.as_deref() {
                        None | Some("slow consumer") => {
                            self.totals.faults.slow_subscribers_closed += 1
                        }
                        Some(r) => ctx.fail(format!(
                            "conn {id}: slow subscriber closed with reason {r:?}"
                        )),
                    }
                } else if !answered_all {
                    ctx.fail(format!(
                        "conn {id}: {} of {} echo replies arrived and the server did not close it",
                        checker.answered, self.totals.echo_sent
                    ));
                }
            }
            Expect::ServerCloses => {
                if !closed_by_server && reason.is_none() {
                    ctx.fail(format!(
                        "conn {id}: the server did not close a connection that sent a bad frame \
                         within 20 s ({} of {} echoes answered before; write error: {:?}; sent {})",
                        checker.answered, self.totals.echo_sent, self.write_failed, self.note
                    ));
                } else if let Some(r) = &reason
                    && !r.starts_with("protocol error")
                {
                    ctx.fail(format!("conn {id}: bad frame closed with reason {r:?}"));
                }
            }
        }
    }
}

fn read_loop(
    id: u64,
    mut rd: Stream,
    rx: mpsc::Receiver<Sent>,
    answered: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    max_frame: usize,
    pause: Option<(u64, Duration)>,
) -> ReaderOut {
    let mut checker = ConnChecker::new(id);
    let mut recv = LinearBuffer::with_config(
        256 << 10,
        DemoFraming::with_max_body(max_frame.max(1 << 20)),
        Compaction::Lazy,
    );
    let mut frames = 0u64;
    let mut pause = pause;
    let out = |checker, closed_by_server, truncated, error| ReaderOut {
        checker,
        closed_by_server,
        truncated,
        error,
    };
    loop {
        // Decode and check every complete frame.
        loop {
            if let Some((after, dur)) = pause
                && frames >= after
            {
                // A slow consumer: stop reading for a while.
                pause = None;
                let end = Instant::now() + dur;
                while Instant::now() < end && !stop.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            while let Ok(s) = rx.try_recv() {
                checker.sent(s);
            }
            let frame = match recv.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    let err = format!("conn {id}: undecodable frame from the server: {e}");
                    return out(checker, false, false, Some(err));
                }
            };
            frames += 1;
            let (kind, room) = (frame.header.kind, frame.header.room);
            if let Err(e) = checker.on_frame(kind, room, frame.body) {
                return out(checker, false, false, Some(e));
            }
            answered.store(checker.answered, Ordering::Release);
        }
        match recv.read_from(&mut rd) {
            Ok(0) => {
                let by_server = !stop.load(Ordering::Acquire);
                let truncated = recv.finish().is_err();
                return out(checker, by_server, truncated, None);
            }
            Ok(_) => {}
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::TimedOut
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                if stop.load(Ordering::Acquire) {
                    return out(checker, false, false, None);
                }
            }
            Err(_) => {
                // Reset: the server closed with unread input, or we did.
                let by_server = !stop.load(Ordering::Acquire);
                let truncated = recv.buffered() > 0;
                return out(checker, by_server, truncated, None);
            }
        }
    }
}

/// An echo body size: mostly small, sometimes up to 1 MiB.
/// Writes `bytes` whole and counts them, unless an earlier write failed:
/// the first failure is kept (the connection's end judges it) and every
/// later write is skipped. Returns whether `bytes` went out.
pub(super) fn write_counted(
    w: &mut impl Write,
    bytes: &[u8],
    totals: &mut Totals,
    failed: &mut Option<io::Error>,
) -> bool {
    if failed.is_some() {
        return false;
    }
    match w.write_all(bytes) {
        Ok(()) => {
            totals.bytes_out += bytes.len() as u64;
            true
        }
        Err(e) => {
            *failed = Some(e);
            false
        }
    }
}

pub(super) fn echo_size(rng: &mut Rng) -> usize {
    let p = rng.range(0, 999);
    (if p < 850 {
        rng.range(64, 1024)
    } else if p < 975 {
        rng.range(1024, 64 << 10)
    } else {
        rng.range(64 << 10, 1 << 20)
    }) as usize
}

pub(super) fn pub_size(rng: &mut Rng) -> usize {
    let p = rng.range(0, 99);
    (if p < 70 {
        rng.range(32, 512)
    } else if p < 97 {
        rng.range(512, 8 << 10)
    } else {
        rng.range(8 << 10, 64 << 10)
    }) as usize
}

fn scenario_echo(ctx: &Ctx, rng: &mut Rng, into: &mut Totals) -> io::Result<()> {
    let slow = rng.chance(0.15);
    let n = rng.range(1, 300);
    let pause = slow.then(|| {
        (
            rng.range(0, n / 2),
            Duration::from_millis(rng.range(200, 2000)),
        )
    });
    let mut c = Conn::open(ctx, pause)?;
    if slow {
        c.totals.faults.slow_echo_readers += 1;
    }
    let ending = rng.range(0, 99);
    for _ in 0..n {
        if !c.echo(echo_size(rng)) {
            break;
        }
    }
    if ending < 70 {
        c.end(ctx, Expect::Normal, true, into);
    } else if ending < 85 {
        c.totals.faults.drop_with_replies_owed += 1;
        c.end(ctx, Expect::WeDrop, false, into);
    } else {
        // Drop in the middle of a frame: header and part of the body.
        let (body, _) = make_body(ECHO_MAGIC, c.id, u64::MAX, echo_size(rng).max(128));
        let f = Conn::frame(Kind::EchoRequest, 0, &body);
        let cut = rng.range(1, f.len() as u64 - 1) as usize;
        c.write(&f[..cut]);
        c.totals.faults.drop_mid_frame += 1;
        c.end(ctx, Expect::WeDrop, false, into);
    }
    Ok(())
}

fn scenario_bad(ctx: &Ctx, rng: &mut Rng, oversize: bool, into: &mut Totals) -> io::Result<()> {
    let mut c = Conn::open(ctx, None)?;
    for _ in 0..rng.range(0, 20) {
        c.echo(echo_size(rng).min(4096));
    }
    let mut bad = Vec::new();
    if oversize {
        let len = rng.range(ctx.max_frame as u64 + 1, u32::MAX as u64) as u32;
        let kind = [Kind::EchoRequest, Kind::Publish, Kind::Join][rng.range(0, 2) as usize];
        bad.extend_from_slice(&encode_header(kind, 1, len));
        c.totals.faults.oversize += 1;
    } else {
        let len = rng.range(0, 4096) as u32;
        let mut h = encode_header(Kind::EchoRequest, 0, len);
        match rng.range(0, 2) {
            0 => h[4] = [0u8, 8, 9, 0x80, 0xff][rng.range(0, 4) as usize],
            1 => h[5] = rng.range(1, 255) as u8,
            // Kinds only the server sends.
            _ => h[4] = [Kind::EchoReply, Kind::Delivery][rng.range(0, 1) as usize].as_u8(),
        }
        bad.extend_from_slice(&h);
        c.totals.faults.garbage += 1;
    }
    // A header the decoder accepts (a kind only servers send) is refused
    // once its body is in: send at least the body.
    let announced = le_u32(&bad[0..4]) as usize;
    let tail = if !oversize && matches!(bad[4], 2 | 6) && bad[5] == 0 {
        announced + rng.range(0, 512) as usize
    } else {
        rng.range(0, 8192) as usize
    };
    c.note = format!("header {:02x?} + {tail} bytes", &bad[..HEADER_LEN]);
    bad.extend((0..tail).map(|_| rng.next_u64() as u8));
    c.write(&bad);
    c.end(ctx, Expect::ServerCloses, false, into);
    Ok(())
}

fn scenario_rooms(ctx: &Ctx, rng: &mut Rng, into: &mut Totals) -> io::Result<()> {
    let slow = rng.chance(0.12);
    let pause = slow.then(|| {
        (
            rng.range(0, 200),
            Duration::from_millis(rng.range(500, 3000)),
        )
    });
    let mut c = Conn::open(ctx, pause)?;
    if slow {
        c.totals.faults.slow_subscribers += 1;
    }
    let life = Duration::from_millis(rng.range(300, 4000));
    let end = (Instant::now() + life).min(ctx.deadline + Duration::from_millis(500));
    let first = rng.range(1, ROOMS as u64) as u16;
    c.join(first);
    while Instant::now() < end && c.write_failed.is_none() {
        match rng.range(0, 99) {
            0..=69 => {
                let room = if !c.joined.is_empty() && rng.chance(0.85) {
                    c.joined[rng.range(0, c.joined.len() as u64 - 1) as usize]
                } else {
                    rng.range(1, ROOMS as u64) as u16
                };
                c.publish(room, pub_size(rng));
            }
            70..=79 => {
                let room = rng.range(1, ROOMS as u64) as u16;
                if !c.joined.contains(&room) {
                    c.join(room);
                }
            }
            80..=87 => {
                if !c.joined.is_empty() {
                    let room = c.joined[rng.range(0, c.joined.len() as u64 - 1) as usize];
                    c.leave(room);
                }
            }
            _ => {
                c.echo(echo_size(rng).min(16 << 10));
            }
        }
        std::thread::sleep(Duration::from_millis(rng.range(1, 8)));
    }
    let expect = if slow {
        Expect::MayBeSlowConsumer
    } else {
        Expect::Normal
    };
    if rng.chance(0.8) {
        for room in c.joined.clone() {
            c.leave(room);
        }
        c.end(ctx, expect, true, into);
    } else {
        c.totals.faults.drop_with_replies_owed += 1;
        let expect = if slow {
            Expect::MayBeSlowConsumer
        } else {
            Expect::WeDrop
        };
        c.end(ctx, expect, false, into);
    }
    Ok(())
}

pub(super) fn client(ctx: &Ctx, seed: u64) -> Totals {
    let mut rng = super::stamp::rng(seed);
    let mut totals = Totals::default();
    while Instant::now() < ctx.deadline && !ctx.stop_all.load(Ordering::Relaxed) {
        let r = match rng.range(0, 99) {
            0..=44 => scenario_echo(ctx, &mut rng, &mut totals),
            45..=49 => scenario_bad(ctx, &mut rng, false, &mut totals),
            50..=54 => scenario_bad(ctx, &mut rng, true, &mut totals),
            _ => scenario_rooms(ctx, &mut rng, &mut totals),
        };
        if let Err(e) = r {
            ctx.fail(format!("client could not connect: {e}"));
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    totals
}
