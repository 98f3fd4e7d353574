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

mod checks;
mod clients;
mod memory;
mod report;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{Listen, PoolMode, QueueMode, RecvMode, StrategyArgs};
use crate::protocol::HEADER_LEN;
use crate::server::Server;
use crate::zmtp::{EndpointKind, EndpointSpec};
use clap::Args;

mod rss;
mod stamp;
pub mod zmtp;

pub use checks::{ConnChecker, EpochLog, Sent, check_rooms};
pub use memory::{AFTER_LOAD_SLACK, AFTER_LOAD_WAIT, settle_rss_of};
pub use report::{Faults, Memory, SoakReport, Totals};
pub use rss::{rss_breakdown, rss_breakdown_of, rss_bytes, rss_bytes_of};
pub use stamp::{
    ECHO_MAGIC, PUB_MAGIC, Rng, STAMP_LEN, Stamp, checksum, make_body, mix64, parse_body,
};

use crate::sync::LockExt;
use clients::{client, echo_size, pub_size};
use memory::{monitor, pin_glibc_thresholds, settle_rss, tidy};
use report::mib;

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
        let mut f = self.failures.locked();
        if f.len() < 200 {
            f.push(e);
        }
    }
}

/// What a run derives from its [`SoakArgs`] before the server starts.
struct Setup {
    seed: u64,
    clients: usize,
    zmtp_clients: usize,
    max_frame: usize,
    cfg: StrategyArgs,
}

impl Setup {
    fn of(args: &SoakArgs) -> Setup {
        let seed = args.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
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
        Setup {
            seed,
            clients: args.clients.max(1),
            zmtp_clients: args.zmtp_clients,
            max_frame,
            cfg,
        }
    }

    /// Starts the server on loopback, with the ZMTP endpoints if there are
    /// ZMTP clients.
    fn start_server(&self) -> Result<Server, String> {
        let specs: Vec<EndpointSpec> =
            [EndpointKind::Router, EndpointKind::Xsub, EndpointKind::Xpub]
                .into_iter()
                .filter(|_| self.zmtp_clients > 0)
                .map(|kind| EndpointSpec {
                    kind,
                    addr: zmtp::LOOPBACK.parse().expect("endpoint"),
                })
                .collect();
        Server::start_with_zmtp(
            Listen {
                tcp: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
                unix: None,
            },
            &specs,
            self.cfg.clone(),
        )
        .map_err(|e| format!("server did not start: {e}"))
    }

    /// The memory bounds of the run, from the started server's baseline.
    fn bounds(&self, args: &SoakArgs, server: &Server) -> Memory {
        let cfg = &self.cfg;
        // Bounds. Per session the server may hold: its send queue
        // (send_queue_bytes), requests in flight (read pauses at half the
        // queue bound, plus one read of at most a receive buffer), the
        // flusher's batch and its receive buffer: 2 x queue + 3 x frame.
        // Sessions can briefly outlive their client (close latency): 2 x
        // clients.
        let frame = (self.max_frame + HEADER_LEN) as u64;
        let per_session = 2 * cfg.send_queue_bytes as u64 + 3 * frame;
        let conns = self.clients + self.zmtp_clients;
        let live_bytes_bound = 2 * conns as u64 * per_session;
        let pool_cfg = netbuf::PoolConfig::default();
        let classes = server.pool().stats().classes.len().max(1) as u64;
        let threads_bound = (conns * 2 + cfg.io_threads + cfg.logic_threads + 8) as u64;
        let cached_bound = classes
            * (pool_cfg.total_cache_bytes as u64
                + threads_bound * pool_cfg.thread_cache_bytes as u64);
        let baseline = rss_bytes();
        // Clients: a request and a reply of at most one frame each, plus the
        // reader's buffer, per connection.
        let client_bytes = conns as u64 * 4 * frame;
        let rss_bound = args.max_rss_mib.map_or(
            baseline + live_bytes_bound + cached_bound + client_bytes + (256 << 20),
            |m| m << 20,
        );
        Memory {
            baseline_rss: baseline,
            rss_bound,
            live_bytes_bound,
            cached_bound,
            ..Memory::default()
        }
    }
}

/// Runs the soak and returns its report (see [`SoakReport::passed`]).
pub fn run(args: &SoakArgs) -> SoakReport {
    let started = Instant::now();
    pin_glibc_thresholds();
    let setup = Setup::of(args);
    let mut report = SoakReport {
        seed: setup.seed,
        clients: setup.clients,
        ..SoakReport::default()
    };
    let server = match setup.start_server() {
        Ok(s) => s,
        Err(e) => {
            report.failures.push(e);
            return report;
        }
    };
    let Some(addr) = server.tcp_addr() else {
        report.failures.push("server has no TCP address".into());
        return report;
    };
    report.memory = setup.bounds(args, &server);

    let ctx = Arc::new(Ctx {
        addr,
        max_frame: setup.max_frame,
        deadline: Instant::now() + Duration::from_secs(args.seconds),
        next_conn: AtomicU64::new(1),
        logs: Mutex::new(Vec::new()),
        failures: Mutex::new(Vec::new()),
        stop_all: AtomicBool::new(false),
        zmtp: zmtp::Endpoints::of(&server),
    });

    let memory = Mutex::new(report.memory.clone());
    let monitor_stop = AtomicBool::new(false);
    let totals = std::thread::scope(|s| {
        let mon = s.spawn(|| monitor(&server, &memory, &monitor_stop, &ctx));
        let totals = run_clients(s, &ctx, &setup);
        wait_drained(&server);
        monitor_stop.store(true, Ordering::Release);
        if mon.join().is_err() {
            ctx.fail("monitor thread panicked".into());
        }
        totals
    });
    report.totals = totals;
    report.memory = memory.locked().clone();
    let room_failures = after_load(&ctx, &mut report.memory);
    final_checks(server, &ctx, room_failures, setup.zmtp_clients, &mut report);
    report.elapsed = started.elapsed();
    report
}

/// Starts the client threads (demo protocol, then ZMTP), each with a seed
/// of its own, and adds up their totals once every one has returned.
fn run_clients<'scope>(
    s: &'scope std::thread::Scope<'scope, '_>,
    ctx: &Arc<Ctx>,
    setup: &Setup,
) -> Totals {
    let seed = setup.seed;
    let handles: Vec<_> = (0..setup.clients)
        .map(|i| {
            let ctx = ctx.clone();
            let seed = mix64(seed ^ (i as u64).wrapping_mul(0x9e37_79b9));
            std::thread::Builder::new()
                .name(format!("soak-client-{i}"))
                .spawn_scoped(s, move || tidy(|| client(&ctx, seed)))
        })
        .chain((0..setup.zmtp_clients).map(|i| {
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
    totals
}

/// Every client left: waits (up to 30 s) for the server to drop back to
/// nothing (no session, room membership, broker member or pool message).
fn wait_drained(server: &Server) {
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
}

/// The after-load memory phase: runs the room checks (and drops their
/// logs), gives the freed memory back and waits for RSS to come back to
/// the baseline, recording it in `memory`; returns the room failures.
fn after_load(ctx: &Ctx, memory: &mut Memory) -> Vec<String> {
    // Every client thread joined and every session closed: the memory
    // comes back (receive and send buffers, pool caches and depot, the
    // allocator's free memory; the IO threads do it when they go quiet).
    // The room checks need the delivery logs (tens of MiB in a long run):
    // run them now and drop the logs, so the bound below is on what the
    // server holds, not on the harness's records.
    let room_failures = {
        let logs = std::mem::take(&mut *ctx.logs.locked());
        check_rooms(&logs)
    };
    // Those records were allocated by the harness's client threads and
    // freed after the server's IO threads had already trimmed (they do on
    // their first quiet rounds): hand their pages back too, so the bound
    // is on what the server keeps. The server alone, in a process of its
    // own and under each global allocator, is checked by
    // `tests/after_load_rss.rs`.
    allocators::release_free_memory();
    let after_bound = memory.baseline_rss + AFTER_LOAD_SLACK;
    let (after_rss, after_wait) = settle_rss(after_bound);
    memory.after_rss = after_rss;
    memory.after_wait = after_wait;
    memory.after_where = rss_breakdown(6);
    room_failures
}

/// The final checks, with every client gone: the server holds nothing,
/// memory came back, the session counts match the clients' connections,
/// something was verified, and the leak report after shutdown is clean.
/// Fills the report's final state and failures.
fn final_checks(
    server: Server,
    ctx: &Ctx,
    room_failures: Vec<String>,
    zmtp_clients: usize,
    report: &mut SoakReport,
) {
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
    let mut failures = std::mem::take(&mut *ctx.failures.locked());
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
    let m = &report.memory;
    if m.baseline_rss > 0 && m.after_rss > m.baseline_rss + AFTER_LOAD_SLACK {
        failures.push(format!(
            "RSS {:.1} MiB {} s after the last session closed: over the baseline {:.1} MiB + {} MiB",
            mib(m.after_rss),
            AFTER_LOAD_WAIT.as_secs(),
            mib(m.baseline_rss),
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
}

/// `server-demo soak`: runs, prints the summary, returns the exit code.
pub fn main(args: &SoakArgs) -> i32 {
    let report = run(args);
    println!("{report}");
    if report.passed() { 0 } else { 1 }
}
