//! Soak / chaos test (`server-demo soak`): the server in-process on
//! loopback, many client threads that connect and disconnect at random and
//! mix valid traffic with faults, and checkers that fail the run when
//! anything is lost, duplicated, reordered or corrupted, or when memory
//! leaves its bounds.
//!
//! What every client connection does (picked at random per connection):
//!
//! * **echo**: pipelined echo requests whose bodies carry
//!   `(magic, connection, sequence, length, checksum)` and a pseudo-random
//!   payload, 64 B to 1 MiB (mostly small). Some stop reading for a while
//!   (slow consumers: the server must push back, not drop or close), some
//!   disconnect with replies outstanding, some drop the connection in the
//!   middle of a frame.
//! * **garbage** / **oversize**: a few valid echoes, then a frame with an
//!   invalid kind or flags, or a length over the limit: the server must
//!   close with a `closing` frame or EOF, and what came before it must be
//!   intact.
//! * **rooms**: join, publish (bodies carry `(publisher, sequence)` and a
//!   checksum), leave, rejoin, echo in between; some stop reading (they may
//!   be closed as slow consumers, never sent corrupted data).
//!
//! The checks:
//!
//! * per connection ([`ConnChecker`]): every echo reply matches the next
//!   request sent (same connection, sequence, length, checksum; payload
//!   checksum recomputed), in order, exactly once; a connection that did
//!   not misbehave and closed gracefully got every reply; no delivery
//!   arrives for a room the connection is not in;
//! * per room ([`check_rooms`]): a subscription (from the join to the echo
//!   "barrier" sent right after the leave, which the server answers after
//!   processing the leave) sees, from every publisher, consecutive
//!   sequence numbers; and every two subscriptions of a room agree: what
//!   both saw is one identical run that starts one of them and ends one of
//!   them (each subscription is a window onto the room's single publish
//!   order, so a gap, a reordering or a broadcast missed by one subscriber
//!   shows up);
//! * memory, sampled every 100 ms: process RSS (`VmRSS`; the server runs in
//!   this process, so this includes the client threads and their buffers
//!   too), pool live bytes and pool cache bytes stay under their bounds;
//! * at the end: no live session, room membership, broker member or pool
//!   message, and a clean leak report from [`Server::shutdown`].
//!
//! ZMTP clients ([`zmtp`]: DEALER echo with checksummed multi-part
//! messages, PUB / SUB through the broker, peers that vanish mid-frame or
//! send garbage) run beside the demo protocol's on their own threads
//! (`--zmtp-clients`), against the same server, under the same checks.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::protocol::{DemoFraming, HEADER_LEN, Kind, encode_header};
use clap::Args;
use netbuf::{Compaction, LinearBuffer};

use crate::config::{Listen, PoolMode, QueueMode, RecvMode, StrategyArgs};
use crate::server::Server;
use crate::zmtp::{EndpointKind, EndpointSpec};

mod rss;
pub mod zmtp;

/// Magic of an echo body.
pub const ECHO_MAGIC: u32 = 0x4b41_4f53;
/// Magic of a publish body.
pub const PUB_MAGIC: u32 = 0x3142_5550;
/// Bytes of the stamp at the front of every soak body.
pub const STAMP_LEN: usize = 32;
/// Rooms the room clients use (1..=ROOMS).
const ROOMS: u16 = 3;

/// Options of `server-demo soak`.
#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    /// How long clients keep starting new connections, in seconds.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Client threads (each holds at most one connection at a time).
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// ZMTP client threads beside them (DEALER echo, PUB, SUB, chaos
    /// peers; 0: none).
    #[arg(long, default_value_t = 6)]
    pub zmtp_clients: usize,
    /// Seed of the pseudo-random choices (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Largest frame body the server accepts (at least 1 MiB: the largest
    /// echo body is 1 MiB).
    #[arg(long, default_value_t = (1 << 20) + (64 << 10))]
    pub max_frame: usize,
    /// Server IO threads.
    #[arg(long, default_value_t = 2)]
    pub io_threads: usize,
    /// Server logic threads (0: handlers inline on the IO threads, the
    /// server's default).
    #[arg(long, default_value_t = 0)]
    pub logic_threads: usize,
    /// Message memory of the server.
    #[arg(long, value_enum, default_value_t = PoolMode::Pooled)]
    pub pool: PoolMode,
    /// Receive buffer of the server.
    #[arg(long, value_enum, default_value_t = RecvMode::Linear)]
    pub recv: RecvMode,
    /// Send queue of the server.
    #[arg(long, value_enum, default_value_t = QueueMode::Mpsc)]
    pub queue: QueueMode,
    /// RSS bound in MiB (default: computed from the configuration, see the
    /// summary).
    #[arg(long)]
    pub max_rss_mib: Option<u64>,
}

impl Default for SoakArgs {
    fn default() -> Self {
        SoakArgs {
            seconds: 60,
            clients: 16,
            zmtp_clients: 6,
            seed: None,
            max_frame: (1 << 20) + (64 << 10),
            io_threads: 2,
            logic_threads: 0,
            pool: PoolMode::Pooled,
            recv: RecvMode::Linear,
            queue: QueueMode::Mpsc,
            max_rss_mib: None,
        }
    }
}

// ---------------------------------------------------------------------------
// Bodies: stamp + pseudo-random payload.

/// SplitMix64's finalizer.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A small deterministic PRNG (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(mix64(seed ^ 0x5eed))
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo + 1)
    }
    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// The payload checksum (word-wise FNV-style mix, finalized).
pub fn checksum(data: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(a))
            .wrapping_mul(0x0000_0100_0000_01b3)
            .rotate_left(29);
    }
    for &b in words.remainder() {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h ^ data.len() as u64)
}

/// What identifies a soak body: who sent it, its sequence number, its
/// length and the checksum of its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stamp {
    /// Sending connection.
    pub conn: u64,
    /// Sequence number (per connection for echoes, per connection and room
    /// for publishes).
    pub seq: u64,
    /// Body length, stamp included.
    pub len: u32,
    /// Checksum of the payload after the stamp.
    pub sum: u64,
}

/// Builds a body of `len` bytes (at least [`STAMP_LEN`]) and its stamp.
pub fn make_body(magic: u32, conn: u64, seq: u64, len: usize) -> (Vec<u8>, Stamp) {
    let len = len.max(STAMP_LEN);
    let mut body = vec![0u8; len];
    let mut state = mix64(conn.rotate_left(32) ^ seq ^ magic as u64);
    for chunk in body[STAMP_LEN..].chunks_mut(8) {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let w = mix64(state).to_le_bytes();
        chunk.copy_from_slice(&w[..chunk.len()]);
    }
    let sum = checksum(&body[STAMP_LEN..]);
    body[0..4].copy_from_slice(&magic.to_le_bytes());
    body[4..12].copy_from_slice(&conn.to_le_bytes());
    body[12..20].copy_from_slice(&seq.to_le_bytes());
    body[20..24].copy_from_slice(&(len as u32).to_le_bytes());
    body[24..32].copy_from_slice(&sum.to_le_bytes());
    (
        body,
        Stamp {
            conn,
            seq,
            len: len as u32,
            sum,
        },
    )
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Reads and verifies a body's stamp: magic, length field, payload
/// checksum.
pub fn parse_body(magic: u32, body: &[u8]) -> Result<Stamp, String> {
    if body.len() < STAMP_LEN {
        return Err(format!(
            "body of {} bytes is shorter than a stamp",
            body.len()
        ));
    }
    let m = le_u32(&body[0..4]);
    if m != magic {
        return Err(format!("bad magic {m:#010x} (want {magic:#010x})"));
    }
    let st = Stamp {
        conn: le_u64(&body[4..12]),
        seq: le_u64(&body[12..20]),
        len: le_u32(&body[20..24]),
        sum: le_u64(&body[24..32]),
    };
    if st.len as usize != body.len() {
        return Err(format!(
            "conn {} seq {}: body is {} bytes, stamp says {}",
            st.conn,
            st.seq,
            body.len(),
            st.len
        ));
    }
    let actual = checksum(&body[STAMP_LEN..]);
    if actual != st.sum {
        return Err(format!(
            "conn {} seq {}: payload checksum mismatch (corrupted body)",
            st.conn, st.seq
        ));
    }
    Ok(st)
}

// ---------------------------------------------------------------------------
// Per-connection checker.

/// What a client sent that the checker must know about, in send order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// An echo request.
    Echo(Stamp),
    /// A join of this room.
    Join(u16),
    /// A leave of this room, followed by this echo request (the barrier:
    /// its reply comes after every delivery of the subscription).
    Leave(u16, Stamp),
}

/// One subscription's deliveries: `(publisher, sequence)` in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochLog {
    /// The room.
    pub room: u16,
    /// The subscriber connection.
    pub conn: u64,
    /// Deliveries in arrival order.
    pub entries: Vec<(u64, u64)>,
}

/// Checks what one connection receives against what it sent.
#[derive(Debug)]
pub struct ConnChecker {
    conn: u64,
    pending: VecDeque<Sent>,
    open: HashMap<u16, Vec<(u64, u64)>>,
    /// Finished subscriptions.
    pub epochs: Vec<EpochLog>,
    /// Echo replies matched.
    pub answered: u64,
    /// Deliveries received.
    pub deliveries: u64,
    /// Bytes received (headers included).
    pub bytes_in: u64,
    /// The reason of a `closing` frame, if one came.
    pub closing: Option<String>,
}

impl ConnChecker {
    /// A checker for connection `conn`.
    pub fn new(conn: u64) -> ConnChecker {
        ConnChecker {
            conn,
            pending: VecDeque::new(),
            open: HashMap::new(),
            epochs: Vec::new(),
            answered: 0,
            deliveries: 0,
            bytes_in: 0,
            closing: None,
        }
    }

    /// Records something sent (call before writing it).
    pub fn sent(&mut self, s: Sent) {
        self.pending.push_back(s);
    }

    /// Echo replies still owed.
    pub fn outstanding(&self) -> usize {
        self.pending
            .iter()
            .filter(|s| !matches!(s, Sent::Join(_)))
            .count()
    }

    /// Joins sent before the next outstanding echo are in effect by the
    /// time anything after that echo's reply arrives.
    fn apply_joins(&mut self) {
        while let Some(&Sent::Join(r)) = self.pending.front() {
            self.pending.pop_front();
            self.open.entry(r).or_default();
        }
    }

    /// Checks one received frame.
    pub fn on_frame(&mut self, kind: Kind, room: u16, body: &[u8]) -> Result<(), String> {
        self.bytes_in += (HEADER_LEN + body.len()) as u64;
        if self.closing.is_some() {
            return Err(format!(
                "conn {}: frame of kind {} after a closing frame",
                self.conn,
                kind.as_u8()
            ));
        }
        self.apply_joins();
        match kind {
            Kind::EchoReply => {
                let got = parse_body(ECHO_MAGIC, body).map_err(|e| format!("echo reply: {e}"))?;
                match self.pending.pop_front() {
                    Some(Sent::Echo(want)) if want == got => {}
                    Some(Sent::Leave(r, want)) if want == got => {
                        if let Some(entries) = self.open.remove(&r) {
                            self.epochs.push(EpochLog {
                                room: r,
                                conn: self.conn,
                                entries,
                            });
                        }
                    }
                    Some(Sent::Echo(want) | Sent::Leave(_, want)) => {
                        return Err(format!(
                            "conn {}: echo reply out of order, duplicated or altered: expected \
                             conn {} seq {} ({} B), got conn {} seq {} ({} B)",
                            self.conn, want.conn, want.seq, want.len, got.conn, got.seq, got.len
                        ));
                    }
                    Some(Sent::Join(_)) | None => {
                        return Err(format!(
                            "conn {}: echo reply (conn {} seq {}) with no request outstanding",
                            self.conn, got.conn, got.seq
                        ));
                    }
                }
                self.answered += 1;
                Ok(())
            }
            Kind::Delivery => {
                let got = parse_body(PUB_MAGIC, body).map_err(|e| format!("delivery: {e}"))?;
                self.deliveries += 1;
                match self.open.get_mut(&room) {
                    Some(log) => {
                        log.push((got.conn, got.seq));
                        Ok(())
                    }
                    None => Err(format!(
                        "conn {}: delivery in room {room} (publisher {} seq {}) while not \
                         subscribed",
                        self.conn, got.conn, got.seq
                    )),
                }
            }
            Kind::Closing => {
                let reason = String::from_utf8_lossy(body).into_owned();
                self.closing = Some(reason);
                Ok(())
            }
            k => Err(format!(
                "conn {}: unexpected frame kind {} from the server",
                self.conn,
                k.as_u8()
            )),
        }
    }

    /// Ends the connection: open subscriptions become logs (cut where the
    /// connection ended).
    pub fn finish(&mut self) {
        let mut open: Vec<_> = self.open.drain().collect();
        open.sort_by_key(|(r, _)| *r);
        for (room, entries) in open {
            self.epochs.push(EpochLog {
                room,
                conn: self.conn,
                entries,
            });
        }
    }
}

/// Checks the subscriptions of every room (see the module docs). Returns
/// the violations found (at most a few dozen are spelled out).
pub fn check_rooms(logs: &[EpochLog]) -> Vec<String> {
    let mut errors = Vec::new();
    let push = |errors: &mut Vec<String>, e: String| {
        if errors.len() < 40 {
            errors.push(e);
        } else if errors.len() == 40 {
            errors.push("... more room errors".into());
        }
    };
    // Per subscription: every publisher's sequence numbers consecutive.
    for log in logs {
        let mut last: HashMap<u64, u64> = HashMap::new();
        for &(p, s) in &log.entries {
            if let Some(prev) = last.insert(p, s) {
                if s != prev.wrapping_add(1) {
                    push(
                        &mut errors,
                        format!(
                            "room {}: subscriber {} got publisher {}'s seq {} after seq {} \
                             (gap, duplicate or reordering)",
                            log.room, log.conn, p, s, prev
                        ),
                    );
                }
            }
        }
    }
    // Every two subscriptions of a room: windows onto one order.
    let mut by_room: HashMap<u16, Vec<usize>> = HashMap::new();
    for (i, l) in logs.iter().enumerate() {
        by_room.entry(l.room).or_default().push(i);
    }
    let mut rooms: Vec<_> = by_room.into_iter().collect();
    rooms.sort_by_key(|(r, _)| *r);
    for (room, members) in rooms {
        let mut index: HashMap<(u64, u64), Vec<(usize, usize)>> = HashMap::new();
        for &i in &members {
            for (pos, e) in logs[i].entries.iter().enumerate() {
                index.entry(*e).or_default().push((i, pos));
            }
        }
        for &a in &members {
            // other log -> (first common position in a, in b, common count)
            let mut overlap: HashMap<usize, (usize, usize, usize)> = HashMap::new();
            for (pa, e) in logs[a].entries.iter().enumerate() {
                for &(b, pb) in index.get(e).map(|v| v.as_slice()).unwrap_or(&[]) {
                    if b != a {
                        overlap.entry(b).or_insert((pa, pb, 0)).2 += 1;
                    }
                }
            }
            let mut overlap: Vec<_> = overlap.into_iter().filter(|(b, _)| *b > a).collect();
            overlap.sort_by_key(|(b, _)| *b);
            for (b, (fa, fb, n)) in overlap {
                let la = &logs[a].entries;
                let lb = &logs[b].entries;
                let same = match (la.get(fa..fa + n), lb.get(fb..fb + n)) {
                    (Some(x), Some(y)) => x == y,
                    _ => false,
                };
                let window = (fa == 0 || fb == 0) && (fa + n == la.len() || fb + n == lb.len());
                if !(same && window) {
                    push(
                        &mut errors,
                        format!(
                            "room {room}: subscriptions of conn {} ({} deliveries) and conn {} \
                             ({} deliveries) disagree on their {} common broadcasts (a \
                             broadcast missing for one of them, or a different order)",
                            logs[a].conn,
                            la.len(),
                            logs[b].conn,
                            lb.len(),
                            n
                        ),
                    );
                }
            }
        }
    }
    errors
}

// ---------------------------------------------------------------------------
// Statistics.

/// Faults the clients injected, by kind.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// Frames with an invalid kind or flags.
    pub garbage: u64,
    /// Frames whose length is over the limit.
    pub oversize: u64,
    /// Connections dropped in the middle of a frame.
    pub drop_mid_frame: u64,
    /// Connections dropped with echo replies outstanding.
    pub drop_with_replies_owed: u64,
    /// Echo clients that stopped reading for a while.
    pub slow_echo_readers: u64,
    /// Subscribers that stopped reading for a while.
    pub slow_subscribers: u64,
    /// ... of which the server closed as slow consumers.
    pub slow_subscribers_closed: u64,
}

/// Totals of a run.
#[derive(Debug, Default, Clone)]
pub struct Totals {
    /// Connections opened.
    pub connections: u64,
    /// Echo requests sent.
    pub echo_sent: u64,
    /// Echo replies received and verified.
    pub echo_answered: u64,
    /// Publishes sent.
    pub publishes: u64,
    /// Deliveries received and verified.
    pub deliveries: u64,
    /// Joins sent.
    pub joins: u64,
    /// Leaves sent.
    pub leaves: u64,
    /// Bytes written by the clients.
    pub bytes_out: u64,
    /// Bytes read by the clients.
    pub bytes_in: u64,
    /// Faults injected.
    pub faults: Faults,
    /// What the ZMTP clients did.
    pub zmtp: zmtp::ZmtpTotals,
}

impl Totals {
    fn add(&mut self, o: &Totals) {
        self.connections += o.connections;
        self.echo_sent += o.echo_sent;
        self.echo_answered += o.echo_answered;
        self.publishes += o.publishes;
        self.deliveries += o.deliveries;
        self.joins += o.joins;
        self.leaves += o.leaves;
        self.bytes_out += o.bytes_out;
        self.bytes_in += o.bytes_in;
        self.zmtp.add(&o.zmtp);
        let (f, g) = (&mut self.faults, &o.faults);
        f.garbage += g.garbage;
        f.oversize += g.oversize;
        f.drop_mid_frame += g.drop_mid_frame;
        f.drop_with_replies_owed += g.drop_with_replies_owed;
        f.slow_echo_readers += g.slow_echo_readers;
        f.slow_subscribers += g.slow_subscribers;
        f.slow_subscribers_closed += g.slow_subscribers_closed;
    }
}

/// Peaks seen by the monitor and the bounds they were held to.
#[derive(Debug, Default, Clone)]
pub struct Memory {
    /// RSS when the server had started (bytes).
    pub baseline_rss: u64,
    /// Highest RSS sampled.
    pub peak_rss: u64,
    /// Bound on RSS.
    pub rss_bound: u64,
    /// RSS once every client left and the server gave memory back (see
    /// [`AFTER_LOAD_SLACK`]), and how long that took.
    pub after_rss: u64,
    /// How long after the last session closed `after_rss` was read.
    pub after_wait: Duration,
    /// Where `after_rss` sits ([`rss_breakdown`]).
    pub after_where: String,
    /// Highest pool live bytes.
    pub peak_live_bytes: u64,
    /// Highest pool live messages.
    pub peak_live_messages: u64,
    /// Bound on pool live bytes.
    pub live_bytes_bound: u64,
    /// Highest bytes held by the pool's caches.
    pub peak_cached: u64,
    /// Bound on cache bytes.
    pub cached_bound: u64,
    /// Samples taken.
    pub samples: u64,
}

/// The outcome of a soak run.
#[derive(Debug, Default, Clone)]
pub struct SoakReport {
    /// Seed used.
    pub seed: u64,
    /// Client threads.
    pub clients: usize,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Totals over every connection.
    pub totals: Totals,
    /// Memory peaks and bounds.
    pub memory: Memory,
    /// Sessions the server opened / closed.
    pub sessions: (u64, u64),
    /// Final live sessions, room memberships, pool messages.
    pub final_state: (u64, usize, u64),
    /// Live messages in the leak report after shutdown.
    pub leaks: u64,
    /// Every failed check.
    pub failures: Vec<String>,
}

impl SoakReport {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

impl fmt::Display for SoakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.totals;
        let m = &self.memory;
        let x = &t.faults;
        writeln!(
            f,
            "soak: {:.1} s, seed {}, {} client threads, {} connections",
            self.elapsed.as_secs_f64(),
            self.seed,
            self.clients,
            t.connections
        )?;
        writeln!(
            f,
            "  messages: echo {} sent / {} answered and verified; publish {}, deliveries {} \
             verified; joins {}, leaves {}",
            t.echo_sent, t.echo_answered, t.publishes, t.deliveries, t.joins, t.leaves
        )?;
        writeln!(
            f,
            "  bytes: {:.1} MiB out, {:.1} MiB in",
            mib(t.bytes_out),
            mib(t.bytes_in)
        )?;
        writeln!(
            f,
            "  faults: garbage {}, oversize {}, drop mid-frame {}, drop with replies owed {}, \
             slow echo readers {}, slow subscribers {} ({} closed as slow consumers)",
            x.garbage,
            x.oversize,
            x.drop_mid_frame,
            x.drop_with_replies_owed,
            x.slow_echo_readers,
            x.slow_subscribers,
            x.slow_subscribers_closed
        )?;
        if t.zmtp.connections > 0 {
            writeln!(f, "{}", t.zmtp)?;
        }
        writeln!(
            f,
            "  memory ({} samples): peak RSS {:.1} MiB (baseline {:.1}, bound {:.1}; the \
             process: server + client threads), pool live peak {:.1} MiB / {} msgs (bound \
             {:.1} MiB), pool cache peak {:.1} MiB (bound {:.1} MiB)",
            m.samples,
            mib(m.peak_rss),
            mib(m.baseline_rss),
            mib(m.rss_bound),
            mib(m.peak_live_bytes),
            m.peak_live_messages,
            mib(m.live_bytes_bound),
            mib(m.peak_cached),
            mib(m.cached_bound)
        )?;
        writeln!(
            f,
            "  memory given back: RSS {:.1} MiB {:.1} s after the last session closed \
             (bound: baseline + {} MiB within {} s); largest: {}",
            mib(m.after_rss),
            m.after_wait.as_secs_f64(),
            AFTER_LOAD_SLACK >> 20,
            AFTER_LOAD_WAIT.as_secs(),
            m.after_where
        )?;
        writeln!(
            f,
            "  server: sessions opened {}, closed {}; after the clients left: live sessions {}, \
             room memberships {}, pool messages {}; leaks {}",
            self.sessions.0,
            self.sessions.1,
            self.final_state.0,
            self.final_state.1,
            self.final_state.2,
            self.leaks
        )?;
        if self.failures.is_empty() {
            write!(f, "  result: PASS (every check held)")
        } else {
            writeln!(f, "  result: FAIL ({} failed checks)", self.failures.len())?;
            for e in self.failures.iter().take(30) {
                writeln!(f, "    - {e}")?;
            }
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------
// Clients.

/// RSS the process may keep over its baseline once every session closed
/// (issue 16: the server gives its memory back).
pub const AFTER_LOAD_SLACK: u64 = 8 << 20;
/// How long after the last session closed it has to get there.
pub const AFTER_LOAD_WAIT: Duration = Duration::from_secs(5);

/// Polls RSS every 100 ms for up to [`AFTER_LOAD_WAIT`] until it is at
/// most `bound`; returns the last reading and the time waited.
fn settle_rss(bound: u64) -> (u64, Duration) {
    let t = Instant::now();
    loop {
        let now = rss_bytes();
        if now <= bound || t.elapsed() >= AFTER_LOAD_WAIT {
            return (now, t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Under glibc's malloc, fixes the mmap threshold at its default (128 KiB)
/// for this process, which also stops glibc from raising its trim
/// threshold. The soak's client threads run in the server's process, each
/// with its own malloc arena, and echo bodies up to 1 MiB: glibc then raises
/// both thresholds dynamically (to the largest freed mmap'd chunk), and the
/// free top of each client thread's arena (2-4 MiB of 16 arenas, 40+ MiB in
/// a run) stays resident, which `malloc_trim` does not reach. That is
/// memory of the harness, not of the server (whose own after-load RSS,
/// measured in a process of its own, is in the README), so the soak pins
/// the thresholds, and caps the arenas, to check the after-load bound on
/// what the server holds.
fn pin_glibc_thresholds() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if allocators::active() == allocators::AllocatorKind::System {
        // SAFETY: `mallopt` takes no pointer; M_MMAP_THRESHOLD (-3) with a
        // value within glibc's limits only changes its policy.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10) };
        // And at most 4 arenas: each of the harness's dozens of threads
        // would otherwise get one (up to 8 per core), each keeping its
        // fragments and a top below the trim threshold after the run.
        // SAFETY: as above; M_ARENA_MAX (-8) only caps future arenas.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 4) };
    }
}

/// Runs a harness thread's body, then gives back what the allocator keeps
/// for that thread alone ([`allocators::release_thread_memory`]: mimalloc's
/// heap, jemalloc's thread cache) before it exits: the harness's client
/// and reader threads live in the server's process, and their leftovers
/// would otherwise count against the server's after-load bound (a
/// mimalloc run kept 44 MiB of exited threads' pages).
pub(crate) fn tidy<T>(body: impl FnOnce() -> T) -> T {
    let out = body();
    allocators::release_thread_memory();
    out
}

pub use rss::{rss_breakdown, rss_breakdown_of, rss_bytes, rss_bytes_of};

struct Ctx {
    addr: SocketAddr,
    max_frame: usize,
    deadline: Instant,
    next_conn: AtomicU64,
    logs: Mutex<Vec<EpochLog>>,
    failures: Mutex<Vec<String>>,
    stop_all: AtomicBool,
    zmtp: Option<zmtp::Endpoints>,
}

impl Ctx {
    fn fail(&self, e: String) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if f.len() < 200 {
            f.push(e);
        }
    }
}

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
    stream: TcpStream,
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
        let stream = TcpStream::connect(ctx.addr)?;
        stream.set_nodelay(true)?;
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
        if self.write_failed.is_some() {
            return false;
        }
        match self.stream.write_all(bytes) {
            Ok(()) => {
                self.totals.bytes_out += bytes.len() as u64;
                true
            }
            Err(e) => {
                self.write_failed = Some(e);
                false
            }
        }
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
        let reason = checker.closing.clone();
        match expect {
            Expect::Normal | Expect::WeDrop => {
                if out.closed_by_server || reason.is_some() {
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
                if out.closed_by_server || reason.is_some() {
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
                if !out.closed_by_server && reason.is_none() {
                    ctx.fail(format!(
                        "conn {id}: the server did not close a connection that sent a bad frame \
                         within 20 s ({} of {} echoes answered before; write error: {:?}; sent {})",
                        checker.answered, self.totals.echo_sent, self.write_failed, self.note
                    ));
                } else if let Some(r) = &reason {
                    if !r.starts_with("protocol error") {
                        ctx.fail(format!("conn {id}: bad frame closed with reason {r:?}"));
                    }
                }
            }
        }
        // A stream cut inside a frame is only acceptable when the server
        // closed it (it may stop mid-frame) or we did.
        if out.truncated && expect == Expect::Normal && out.closed_by_server {
            ctx.fail(format!("conn {id}: stream ended inside a frame"));
        }
        ctx.logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .append(&mut checker.epochs);
        into.add(&self.totals);
    }
}

fn read_loop(
    id: u64,
    mut rd: TcpStream,
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
            if let Some((after, dur)) = pause {
                if frames >= after {
                    // A slow consumer: stop reading for a while.
                    pause = None;
                    let end = Instant::now() + dur;
                    while Instant::now() < end && !stop.load(Ordering::Acquire) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
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
fn echo_size(rng: &mut Rng) -> usize {
    let p = rng.range(0, 999);
    (if p < 850 {
        rng.range(64, 1024)
    } else if p < 975 {
        rng.range(1024, 64 << 10)
    } else {
        rng.range(64 << 10, 1 << 20)
    }) as usize
}

fn pub_size(rng: &mut Rng) -> usize {
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

fn client(ctx: &Ctx, seed: u64) -> Totals {
    let mut rng = Rng::new(seed);
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

/// Runs the soak and returns its report (see [`SoakReport::passed`]).
pub fn run(args: &SoakArgs) -> SoakReport {
    let started = Instant::now();
    pin_glibc_thresholds();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let clients = args.clients.max(1);
    let max_frame = args.max_frame.max((1 << 20) + 4096);
    let cfg = StrategyArgs {
        pool: args.pool,
        recv: args.recv,
        queue: args.queue,
        io_threads: args.io_threads.max(1),
        logic_threads: args.logic_threads,
        max_frame,
        ..StrategyArgs::default()
    };
    let mut report = SoakReport {
        seed,
        clients,
        ..SoakReport::default()
    };
    let zmtp_clients = args.zmtp_clients;
    let specs: Vec<EndpointSpec> = [EndpointKind::Router, EndpointKind::Xsub, EndpointKind::Xpub]
        .into_iter()
        .filter(|_| zmtp_clients > 0)
        .map(|kind| EndpointSpec {
            kind,
            addr: zmtp::LOOPBACK.parse().expect("endpoint"),
        })
        .collect();
    let server = match Server::start_with_zmtp(
        Listen {
            tcp: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            unix: None,
        },
        &specs,
        cfg.clone(),
    ) {
        Ok(s) => s,
        Err(e) => {
            report.failures.push(format!("server did not start: {e}"));
            return report;
        }
    };
    let Some(addr) = server.tcp_addr() else {
        report.failures.push("server has no TCP address".into());
        return report;
    };

    // Bounds. Per session the server may hold: its send queue
    // (send_queue_bytes), requests in flight (read pauses at half the
    // queue bound, plus one read of at most a receive buffer), the
    // flusher's batch and its receive buffer: 2 x queue + 3 x frame.
    // Sessions can briefly outlive their client (close latency): 2 x
    // clients.
    let frame = (max_frame + HEADER_LEN) as u64;
    let per_session = 2 * cfg.send_queue_bytes as u64 + 3 * frame;
    let conns = clients + zmtp_clients;
    let live_bytes_bound = 2 * conns as u64 * per_session;
    let pool_cfg = netbuf::PoolConfig::default();
    let classes = server.pool().stats().classes.len().max(1) as u64;
    let threads_bound = (conns * 2 + cfg.io_threads + cfg.logic_threads + 8) as u64;
    let cached_bound = classes
        * (pool_cfg.total_cache_bytes as u64 + threads_bound * pool_cfg.thread_cache_bytes as u64);
    let baseline = rss_bytes();
    // Clients: a request and a reply of at most one frame each, plus the
    // reader's buffer, per connection.
    let client_bytes = conns as u64 * 4 * frame;
    let rss_bound = args.max_rss_mib.map_or(
        baseline + live_bytes_bound + cached_bound + client_bytes + (256 << 20),
        |m| m << 20,
    );
    report.memory = Memory {
        baseline_rss: baseline,
        rss_bound,
        live_bytes_bound,
        cached_bound,
        ..Memory::default()
    };

    let ctx = Arc::new(Ctx {
        addr,
        max_frame,
        deadline: Instant::now() + Duration::from_secs(args.seconds),
        next_conn: AtomicU64::new(1),
        logs: Mutex::new(Vec::new()),
        failures: Mutex::new(Vec::new()),
        stop_all: AtomicBool::new(false),
        zmtp: zmtp::Endpoints::of(&server),
    });

    let memory = Arc::new(Mutex::new(report.memory.clone()));
    let monitor_stop = Arc::new(AtomicBool::new(false));
    let totals = std::thread::scope(|s| {
        let mon = {
            let (memory, stop, ctx) = (memory.clone(), monitor_stop.clone(), ctx.clone());
            let server = &server;
            s.spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    let rss = rss_bytes();
                    let st = server.pool().stats();
                    let mut m = memory.lock().unwrap_or_else(|p| p.into_inner());
                    m.samples += 1;
                    m.peak_rss = m.peak_rss.max(rss);
                    m.peak_live_bytes = m.peak_live_bytes.max(st.live_bytes);
                    m.peak_live_messages = m.peak_live_messages.max(st.live_messages);
                    m.peak_cached = m.peak_cached.max(st.bytes_cached);
                    if rss > m.rss_bound {
                        ctx.fail(format!(
                            "RSS {:.1} MiB over its bound {:.1} MiB",
                            mib(rss),
                            mib(m.rss_bound)
                        ));
                    }
                    if st.live_bytes > m.live_bytes_bound {
                        ctx.fail(format!(
                            "pool live bytes {:.1} MiB over their bound {:.1} MiB",
                            mib(st.live_bytes),
                            mib(m.live_bytes_bound)
                        ));
                    }
                    if st.bytes_cached > m.cached_bound {
                        ctx.fail(format!(
                            "pool cache {:.1} MiB over its bound {:.1} MiB",
                            mib(st.bytes_cached),
                            mib(m.cached_bound)
                        ));
                    }
                    drop(m);
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        let handles: Vec<_> = (0..clients)
            .map(|i| {
                let ctx = ctx.clone();
                let seed = mix64(seed ^ (i as u64).wrapping_mul(0x9e37_79b9));
                std::thread::Builder::new()
                    .name(format!("soak-client-{i}"))
                    .spawn_scoped(s, move || tidy(|| client(&ctx, seed)))
            })
            .chain((0..zmtp_clients).map(|i| {
                let ctx = ctx.clone();
                let seed = mix64(seed ^ 0x2a47 ^ (i as u64).wrapping_mul(0x9e37_79b9));
                std::thread::Builder::new()
                    .name(format!("soak-zmtp-{i}"))
                    .spawn_scoped(s, move || {
                        tidy(|| match &ctx.zmtp {
                            Some(eps) => zmtp::client(&ctx, eps, seed),
                            None => Totals::default(),
                        })
                    })
            }))
            .collect();
        let mut totals = Totals::default();
        for h in handles {
            match h.map(|h| h.join()) {
                Ok(Ok(t)) => totals.add(&t),
                Ok(Err(_)) => ctx.fail("a client thread panicked".into()),
                Err(e) => ctx.fail(format!("cannot spawn a client thread: {e}")),
            }
        }
        // Every client left: the server must drop back to nothing.
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let st = server.pool().stats();
            let done = server.live_sessions() == 0
                && server.room_memberships() == 0
                && server.zmtp_broker_members() == (0, 0)
                && st.live_messages == 0;
            if done || Instant::now() > end {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        monitor_stop.store(true, Ordering::Release);
        if mon.join().is_err() {
            ctx.fail("monitor thread panicked".into());
        }
        totals
    });
    report.totals = totals;
    report.memory = memory.lock().unwrap_or_else(|p| p.into_inner()).clone();
    // Every client thread joined and every session closed: the memory
    // comes back (receive and send buffers, pool caches and depot, the
    // allocator's free memory; the IO threads do it when they go quiet).
    // The room checks need the delivery logs (tens of MiB in a long run):
    // run them now and drop the logs, so the bound below is on what the
    // server holds, not on the harness's records.
    let room_failures = {
        let logs = std::mem::take(&mut *ctx.logs.lock().unwrap_or_else(|p| p.into_inner()));
        check_rooms(&logs)
    };
    // Those records were allocated by the harness's client threads and
    // freed after the server's IO threads had already trimmed (they do on
    // their first quiet rounds): hand their pages back too, so the bound
    // is on what the server keeps. The server alone, in a process of its
    // own and under each global allocator, is checked by
    // `tests/after_load_rss.rs`.
    allocators::release_free_memory();
    let after_bound = report.memory.baseline_rss + AFTER_LOAD_SLACK;
    let (after_rss, after_wait) = settle_rss(after_bound);
    report.memory.after_rss = after_rss;
    report.memory.after_wait = after_wait;
    report.memory.after_where = rss_breakdown(6);

    let live_messages = server.pool().stats().live_messages;
    report.final_state = (
        server.live_sessions(),
        server.room_memberships(),
        live_messages,
    );
    let c = server.counters();
    report.sessions = (
        c.sessions_opened.load(Ordering::Relaxed),
        c.sessions_closed.load(Ordering::Relaxed),
    );
    let mut failures = std::mem::take(&mut *ctx.failures.lock().unwrap_or_else(|p| p.into_inner()));
    failures.extend(room_failures);
    if report.final_state.0 != 0 {
        failures.push(format!(
            "{} sessions still live after every client left",
            report.final_state.0
        ));
    }
    if report.final_state.1 != 0 {
        failures.push(format!(
            "{} room memberships left after every client left",
            report.final_state.1
        ));
    }
    let members = server.zmtp_broker_members();
    if members != (0, 0) {
        failures.push(format!(
            "{} subscribers / {} publishers left in the ZMTP broker after every client left",
            members.0, members.1
        ));
    }
    failures.extend(zmtp::final_checks(&server, &report.totals, zmtp_clients));
    if live_messages != 0 {
        failures.push(format!(
            "{live_messages} pool messages live after every client left"
        ));
    }
    if report.memory.baseline_rss > 0 && after_rss > after_bound {
        failures.push(format!(
            "RSS {:.1} MiB {} s after the last session closed: over the baseline {:.1} MiB + {} MiB",
            mib(after_rss),
            AFTER_LOAD_WAIT.as_secs(),
            mib(report.memory.baseline_rss),
            AFTER_LOAD_SLACK >> 20
        ));
    }
    if report.sessions.0 != report.totals.connections || report.sessions.0 != report.sessions.1 {
        failures.push(format!(
            "sessions opened {} / closed {} vs {} client connections",
            report.sessions.0, report.sessions.1, report.totals.connections
        ));
    }
    if report.totals.echo_answered == 0 || report.totals.deliveries == 0 {
        failures.push("the run verified no echo or no delivery: nothing was tested".into());
    }
    let leaks = server.shutdown();
    report.leaks = leaks.live_pooled + leaks.live_heap;
    if !leaks.is_clean() {
        failures.push(format!("leak report after shutdown: {leaks}"));
    }
    report.failures = failures;
    report.elapsed = started.elapsed();
    report
}

/// `server-demo soak`: runs, prints the summary, returns the exit code.
pub fn main(args: &SoakArgs) -> i32 {
    let report = run(args);
    println!("{report}");
    if report.passed() { 0 } else { 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(conn: u64, seq: u64, len: usize) -> (Vec<u8>, Stamp) {
        make_body(ECHO_MAGIC, conn, seq, len)
    }

    #[test]
    fn body_roundtrip_and_corruption() {
        let (mut b, st) = reply(7, 3, 1000);
        assert_eq!(parse_body(ECHO_MAGIC, &b), Ok(st));
        assert!(parse_body(PUB_MAGIC, &b).is_err());
        b[500] ^= 1;
        assert!(parse_body(ECHO_MAGIC, &b).unwrap_err().contains("checksum"));
        let (b, _) = reply(7, 3, 1000);
        assert!(parse_body(ECHO_MAGIC, &b[..999]).is_err());
        assert!(parse_body(ECHO_MAGIC, &b[..10]).is_err());
    }

    #[test]
    fn echo_in_order_passes() {
        let mut c = ConnChecker::new(1);
        let bodies: Vec<_> = (0..5).map(|i| reply(1, i, 64 + i as usize)).collect();
        for (_, st) in &bodies {
            c.sent(Sent::Echo(*st));
        }
        for (b, _) in &bodies {
            c.on_frame(Kind::EchoReply, 0, b).unwrap();
        }
        assert_eq!((c.answered, c.outstanding()), (5, 0));
    }

    #[test]
    fn echo_corrupted_missing_reordered_duplicated_fail() {
        let bodies: Vec<_> = (0..3).map(|i| reply(1, i, 100)).collect();
        let fresh = || {
            let mut c = ConnChecker::new(1);
            for (_, st) in &bodies {
                c.sent(Sent::Echo(*st));
            }
            c
        };
        // Corrupted.
        let mut c = fresh();
        let mut bad = bodies[0].0.clone();
        bad[80] ^= 0x10;
        assert!(c.on_frame(Kind::EchoReply, 0, &bad).is_err());
        // Missing (seq 1 skipped).
        let mut c = fresh();
        c.on_frame(Kind::EchoReply, 0, &bodies[0].0).unwrap();
        assert!(c.on_frame(Kind::EchoReply, 0, &bodies[2].0).is_err());
        // Reordered.
        let mut c = fresh();
        assert!(c.on_frame(Kind::EchoReply, 0, &bodies[1].0).is_err());
        // Duplicated.
        let mut c = fresh();
        c.on_frame(Kind::EchoReply, 0, &bodies[0].0).unwrap();
        assert!(c.on_frame(Kind::EchoReply, 0, &bodies[0].0).is_err());
        // Unsolicited.
        let mut c = ConnChecker::new(1);
        assert!(c.on_frame(Kind::EchoReply, 0, &bodies[0].0).is_err());
        // A reply of the right stamp from another connection's payload.
        let mut c = fresh();
        let (other, _) = reply(2, 0, 100);
        assert!(c.on_frame(Kind::EchoReply, 0, &other).is_err());
    }

    #[test]
    fn delivery_outside_subscription_fails() {
        let (d, _) = make_body(PUB_MAGIC, 9, 0, 64);
        let mut c = ConnChecker::new(1);
        assert!(c.on_frame(Kind::Delivery, 2, &d).is_err());
        // Joined: accepted; after the leave barrier: refused.
        let mut c = ConnChecker::new(1);
        let (barrier, st) = reply(1, 0, 64);
        c.sent(Sent::Join(2));
        c.sent(Sent::Leave(2, st));
        c.on_frame(Kind::Delivery, 2, &d).unwrap();
        assert!(c.on_frame(Kind::Delivery, 3, &d).is_err());
        c.on_frame(Kind::EchoReply, 0, &barrier).unwrap();
        assert_eq!(c.epochs.len(), 1);
        assert_eq!(c.epochs[0].entries, vec![(9, 0)]);
        assert!(c.on_frame(Kind::Delivery, 2, &d).is_err());
        // A corrupted delivery.
        let mut c = ConnChecker::new(1);
        c.sent(Sent::Join(2));
        let mut bad = d.clone();
        bad[40] ^= 4;
        assert!(c.on_frame(Kind::Delivery, 2, &bad).is_err());
    }

    fn log(conn: u64, entries: &[(u64, u64)]) -> EpochLog {
        EpochLog {
            room: 1,
            conn,
            entries: entries.to_vec(),
        }
    }

    #[test]
    fn rooms_consistent_windows_pass() {
        // Room order: a0 b0 a1 b1 a2 b2; three overlapping windows.
        let logs = [
            log(1, &[(10, 0), (11, 0), (10, 1), (11, 1), (10, 2), (11, 2)]),
            log(2, &[(10, 1), (11, 1), (10, 2)]),
            log(3, &[(11, 0), (10, 1)]),
            log(4, &[(10, 2), (11, 2)]),
        ];
        assert_eq!(check_rooms(&logs), Vec::<String>::new());
    }

    #[test]
    fn rooms_gap_reorder_and_missed_broadcast_fail() {
        // A gap in one publisher's sequence.
        assert!(!check_rooms(&[log(1, &[(10, 0), (10, 2)])]).is_empty());
        // Reordered.
        assert!(!check_rooms(&[log(1, &[(10, 1), (10, 0)])]).is_empty());
        // Duplicated.
        assert!(!check_rooms(&[log(1, &[(10, 0), (10, 0)])]).is_empty());
        // Subscriber 2 misses b0, which subscriber 1 saw between a0 and a1
        // (per-publisher sequences still look consecutive to 2).
        let logs = [
            log(1, &[(10, 0), (11, 0), (10, 1)]),
            log(2, &[(10, 0), (10, 1)]),
        ];
        assert!(!check_rooms(&logs).is_empty());
        // Two publishers interleaved differently.
        let logs = [
            log(1, &[(10, 0), (11, 0), (10, 1)]),
            log(2, &[(11, 0), (10, 0), (10, 1)]),
        ];
        assert!(!check_rooms(&logs).is_empty());
        // Subscriber 2 misses the broadcast at the end of 1's window while
        // seeing later ones.
        let logs = [
            log(1, &[(10, 0), (11, 0)]),
            log(2, &[(10, 0), (12, 0)]),
            log(3, &[(11, 0), (12, 0)]),
        ];
        assert!(!check_rooms(&logs).is_empty());
    }
}
