//! The end-to-end matrix: the load generator of `server-demo` against
//! `server-demo` (default strategies), the tokio peer, tokio-with-netbuf
//! and the lean hand-written mio server, same machine, same settings, each
//! server a child process so that its CPU time (all threads, from `/proc`)
//! and allocations (its counting global allocator) are its own.
//!
//! The children are this same binary (`bench-report serve NAME`), so one
//! build runs everything and all four servers share one global allocator.

use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use server_demo::load::{Target, Workload};

use super::median;
use super::rss::{self, PeakMethod, PeakProbe, Settle};

/// The servers compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServerKind {
    /// `server-demo` with its default strategies (1 IO thread, handlers
    /// inline).
    Demo,
    /// `server-demo` with one logic thread (`--logic-threads 1`: the mode
    /// for handlers that may block), to show what the default gains.
    DemoLogic,
    /// The idiomatic tokio + `LengthDelimitedCodec` peer.
    TokioPeer,
    /// tokio with netbuf's data path.
    TokioNetbuf,
    /// The lean hand-written mio server (no pools): the ceiling.
    MioLean,
}

impl ServerKind {
    /// All five, the baseline (tokio peer) first.
    pub const ALL: [ServerKind; 5] = [
        ServerKind::TokioPeer,
        ServerKind::Demo,
        ServerKind::DemoLogic,
        ServerKind::TokioNetbuf,
        ServerKind::MioLean,
    ];

    /// Every server but the baseline, in table order.
    pub const OTHERS: [ServerKind; 4] = [
        ServerKind::Demo,
        ServerKind::DemoLogic,
        ServerKind::TokioNetbuf,
        ServerKind::MioLean,
    ];

    /// Name used on the command line and in tables.
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Demo => "server-demo",
            ServerKind::DemoLogic => "server-demo-logic1",
            ServerKind::TokioPeer => "tokio-peer",
            ServerKind::TokioNetbuf => "tokio-netbuf",
            ServerKind::MioLean => "mio-lean",
        }
    }

    /// Parses [`name`](Self::name).
    pub fn parse(s: &str) -> Option<ServerKind> {
        ServerKind::ALL.into_iter().find(|k| k.name() == s)
    }
}

impl fmt::Display for ServerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Body limit every server runs with (what the main job gives
/// `server-demo`, so 256 KiB echoes fit).
pub const MAX_BODY: usize = 1 << 20;

/// Per-session send bound every server runs with: the fan-out runs
/// publish up to 40 MiB as fast as the socket takes them, and with the
/// 4 MiB default the lone subscriber of `fan-out x1` was (correctly)
/// closed as a slow consumer. The tokio peer's room capacity (65,536
/// messages) is the same kind of bound.
pub const SEND_QUEUE_BYTES: usize = 64 << 20;

/// Runs server `kind` in this process until standard input closes (the
/// child side of [`ServerProcess`]): prints `listening tcp ADDR`, answers
/// `stats` lines.
pub fn serve_child(kind: ServerKind) -> i32 {
    let addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
    match kind {
        ServerKind::Demo | ServerKind::DemoLogic => {
            let d = server_demo::config::StrategyArgs::default();
            let strategy = server_demo::config::StrategyArgs {
                max_frame: MAX_BODY,
                send_queue_bytes: SEND_QUEUE_BYTES,
                logic_threads: if kind == ServerKind::DemoLogic {
                    1
                } else {
                    d.logic_threads
                },
                ..d
            };
            let listen = server_demo::config::Listen {
                tcp: Some(addr),
                unix: None,
            };
            let server = match server_demo::server::Server::start(listen, strategy) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("cannot start server-demo: {e}");
                    return 1;
                }
            };
            println!("listening tcp {}", server.tcp_addr().expect("tcp listener"));
            let _ = io::stdout().flush();
            crate::peers::stdin_control();
            let leaks = server.shutdown();
            i32::from(!leaks.is_clean())
        }
        ServerKind::TokioPeer | ServerKind::TokioNetbuf | ServerKind::MioLean => {
            let cfg = crate::peers::PeerConfig {
                addr,
                max_body: MAX_BODY,
                send_queue_bytes: SEND_QUEUE_BYTES,
                ..Default::default()
            };
            let peer = match kind {
                ServerKind::TokioPeer => crate::peers::PeerKind::TokioPeer,
                ServerKind::TokioNetbuf => crate::peers::PeerKind::TokioNetbuf,
                _ => crate::peers::PeerKind::MioLean,
            };
            let server = match peer.start(cfg) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("cannot start {kind}: {e}");
                    return 1;
                }
            };
            println!("listening tcp {}", server.addr());
            let _ = io::stdout().flush();
            crate::peers::stdin_control();
            server.shutdown();
            0
        }
    }
}

/// A server running as a child process of this binary.
#[derive(Debug)]
pub struct ServerProcess {
    /// Which server.
    pub kind: ServerKind,
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl ServerProcess {
    /// Starts `exe serve NAME` and waits for its address.
    pub fn spawn(exe: &std::path::Path, kind: ServerKind) -> io::Result<ServerProcess> {
        let mut child = Command::new(exe)
            .args(["serve", kind.name()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening tcp ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| {
                let _ = child.kill();
                io::Error::other(format!("{kind}: unexpected first line {line:?}"))
            })?;
        Ok(ServerProcess {
            kind,
            addr,
            child,
            stdin,
            stdout,
        })
    }

    /// CPU nanoseconds used so far by all the server's threads (sum of
    /// `/proc/PID/task/*/schedstat`; falls back to `utime + stime` of
    /// `/proc/PID/stat` at clock-tick resolution).
    pub fn cpu_ns(&self) -> u64 {
        process_cpu_ns(self.child.id())
    }

    /// The server's process id (for `/proc/PID`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Allocator calls made by the server process so far.
    pub fn allocations(&mut self) -> Option<u64> {
        let stdin = self.stdin.as_mut()?;
        stdin.write_all(b"stats\n").ok()?;
        stdin.flush().ok()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line).ok()?;
        line.trim().strip_prefix("stats allocations=")?.parse().ok()
    }

    /// Closes its standard input (it shuts down) and waits, killing it
    /// after 5 s.
    pub fn stop(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU nanoseconds used so far by all the threads of process `pid` (sum of
/// `/proc/PID/task/*/schedstat`; falls back to `utime + stime` of
/// `/proc/PID/stat` at clock-tick resolution).
pub fn process_cpu_ns(pid: u32) -> u64 {
    let mut total = 0u64;
    let mut any = false;
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat"))
                && let Some(ns) = s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
            {
                total += ns;
                any = true;
            }
        }
    }
    if any {
        return total;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line: 11 and 12 here.
    (ticks(11) + ticks(12)) * 10_000_000
}

/// The matrix: `quick` is a seconds-long version for smoke runs.
pub fn matrix(quick: bool) -> Vec<Workload> {
    let k = |n: u64| if quick { (n / 20).max(50) } else { n };
    vec![
        Workload::Echo {
            size: 64,
            messages: k(1_000_000),
            decipher: false,
        },
        Workload::Echo {
            size: 1 << 10,
            messages: k(400_000),
            decipher: false,
        },
        Workload::Echo {
            size: 256 << 10,
            messages: k(5_000),
            decipher: false,
        },
        Workload::Latency {
            size: 64,
            round_trips: k(20_000),
        },
        Workload::Latency {
            size: 1 << 10,
            round_trips: k(20_000),
        },
        Workload::Latency {
            size: 256 << 10,
            round_trips: k(1_000),
        },
        Workload::FanOut {
            size: 1 << 10,
            subscribers: 1,
            messages: k(40_000),
        },
        Workload::FanOut {
            size: 1 << 10,
            subscribers: 16,
            messages: k(5_000),
        },
        Workload::FanOut {
            size: 1 << 10,
            subscribers: 256,
            messages: k(2_000),
        },
        Workload::FanOut {
            size: 64,
            subscribers: 16,
            messages: k(40_000),
        },
        Workload::FanOut {
            size: 64,
            subscribers: 256,
            messages: k(5_000),
        },
    ]
}

/// One run of one scenario against one server.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// Messages (echo), round trips (ping-pong) or deliveries (fan-out) per second.
    pub per_sec: f64,
    /// Body MB/s (one direction).
    pub mb_per_sec: f64,
    /// Median round trip (ping-pong).
    pub p50_us: Option<f64>,
    /// 99th percentile round trip (ping-pong).
    pub p99_us: Option<f64>,
    /// Server CPU nanoseconds (all threads) per message / round trip / delivery.
    pub cpu_ns_per_msg: f64,
    /// Server allocator calls per message / round trip / delivery.
    pub allocs_per_msg: Option<f64>,
    /// Server resident set (`VmRSS`) right before the run, bytes.
    pub rss_start: Option<u64>,
    /// Server resident set at its highest during the run, bytes (see
    /// [`PeakMethod`]).
    pub rss_peak: Option<u64>,
    /// Server resident set once the run's clients are gone and it stopped
    /// dropping, bytes (see [`Settle`]).
    pub rss_after: Option<u64>,
}

/// How [`run_once`] measures the server's resident set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RssRule {
    /// How the peak is taken.
    pub peak: PeakMethod,
    /// When "after" is taken.
    pub settle: Settle,
}

impl Default for RssRule {
    /// Sampled peak (works everywhere), "after" read right away.
    fn default() -> Self {
        RssRule {
            peak: PeakMethod::Sampled,
            settle: Settle::NONE,
        }
    }
}

/// Runs `sc` once against `server`, measuring its resident set as `rss`
/// says.
pub fn run_once(server: &mut ServerProcess, sc: &Workload, rss: RssRule) -> Result<Sample, String> {
    let target = Target::Tcp(server.addr);
    let pid = server.pid();
    let a0 = server.allocations();
    let c0 = server.cpu_ns();
    let mut s = Sample {
        rss_start: rss::rss_bytes(pid),
        ..Sample::default()
    };
    let probe = PeakProbe::start(pid, rss.peak);
    let units = run_load(target, sc, &mut s);
    // The load generator has closed its connections when it returns.
    s.rss_peak = probe.finish();
    let units = units?;
    // Let the server finish closing the run's sessions before reading.
    std::thread::sleep(Duration::from_millis(30));
    let c1 = server.cpu_ns();
    let a1 = server.allocations();
    let n = units.max(1) as f64;
    s.cpu_ns_per_msg = c1.saturating_sub(c0) as f64 / n;
    s.allocs_per_msg = match (a0, a1) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / n),
        _ => None,
    };
    s.rss_after = rss.settle.wait(pid).0;
    Ok(s)
}

/// Runs the load of `sc` against `target` (time limit
/// [`DEFAULT_TIMEOUT`](server_demo::load::DEFAULT_TIMEOUT), 60 s), fills
/// the rates of `s` and returns the units (messages, round trips,
/// deliveries) it counted.
fn run_load(target: Target, sc: &Workload, s: &mut Sample) -> Result<u64, String> {
    let o = sc.run(target).map_err(|e| e.to_string())?;
    s.per_sec = o.per_sec;
    s.mb_per_sec = o.mb_per_sec;
    if let Some(l) = o.latency {
        s.p50_us = Some(l.p50_us);
        s.p99_us = Some(l.p99_us);
    }
    Ok(o.units)
}

/// Medians over the repeats of one (scenario, server) cell.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cell {
    /// Every run.
    pub samples: Vec<Sample>,
    /// Errors of failed runs.
    pub errors: Vec<String>,
}

impl Cell {
    fn med(&self, f: impl Fn(&Sample) -> Option<f64>) -> Option<f64> {
        median(&self.samples.iter().filter_map(f).collect::<Vec<_>>())
    }
    /// Median rate.
    pub fn per_sec(&self) -> Option<f64> {
        self.med(|s| Some(s.per_sec))
    }
    /// Median MB/s.
    pub fn mb_per_sec(&self) -> Option<f64> {
        self.med(|s| Some(s.mb_per_sec))
    }
    /// Median p50.
    pub fn p50_us(&self) -> Option<f64> {
        self.med(|s| s.p50_us)
    }
    /// Median p99.
    pub fn p99_us(&self) -> Option<f64> {
        self.med(|s| s.p99_us)
    }
    /// Median CPU per message.
    pub fn cpu_ns(&self) -> Option<f64> {
        self.med(|s| Some(s.cpu_ns_per_msg))
    }
    /// Median allocations per message.
    pub fn allocs(&self) -> Option<f64> {
        self.med(|s| s.allocs_per_msg)
    }
    /// Median resident set at the start of a run, bytes.
    pub fn rss_start(&self) -> Option<f64> {
        self.med(|s| s.rss_start.map(|b| b as f64))
    }
    /// Median peak resident set during a run, bytes.
    pub fn rss_peak(&self) -> Option<f64> {
        self.med(|s| s.rss_peak.map(|b| b as f64))
    }
    /// Median resident set after a run, bytes.
    pub fn rss_after(&self) -> Option<f64> {
        self.med(|s| s.rss_after.map(|b| b as f64))
    }
    /// Spread of the rate: (min, max).
    pub fn per_sec_range(&self) -> Option<(f64, f64)> {
        let v: Vec<f64> = self.samples.iter().map(|s| s.per_sec).collect();
        let min = v.iter().copied().reduce(f64::min)?;
        let max = v.iter().copied().reduce(f64::max)?;
        Some((min, max))
    }
}

/// Results of the whole matrix.
#[derive(Debug, Clone, Default)]
pub struct Matrix {
    /// The scenarios, in order.
    pub scenarios: Vec<Workload>,
    /// The servers, baseline first.
    pub servers: Vec<ServerKind>,
    /// `(scenario index, server) -> cell`.
    pub cells: std::collections::BTreeMap<(usize, ServerKind), Cell>,
    /// Repeats per cell.
    pub repeats: usize,
    /// Wall time of the matrix.
    pub elapsed: Duration,
    /// How the resident sets were measured.
    pub rss: RssRule,
}

impl Matrix {
    /// The cell of scenario `i` on `server`.
    pub fn cell(&self, i: usize, server: ServerKind) -> Option<&Cell> {
        self.cells.get(&(i, server))
    }

    /// Index of the first scenario matching `pred`.
    pub fn find(&self, pred: impl Fn(&Workload) -> bool) -> Option<usize> {
        self.scenarios.iter().position(pred)
    }
}

/// Starts every server as a child of `exe`, warms each up, then runs
/// `repeats` rounds of the matrix (servers in a rotating order each round,
/// so drift on a shared machine does not favour one). After each run the
/// server's resident set is given up to `settle` to come down (see
/// [`Settle::up_to`]).
pub fn run_matrix(
    exe: &std::path::Path,
    scenarios: Vec<Workload>,
    repeats: usize,
    settle: Duration,
    progress: bool,
) -> io::Result<Matrix> {
    let t0 = Instant::now();
    let mut servers: Vec<ServerProcess> = Vec::new();
    for k in ServerKind::ALL {
        servers.push(ServerProcess::spawn(exe, k)?);
    }
    // Warm-up (not recorded): pools, caches, the gather calibration.
    for s in servers.iter_mut() {
        for sc in [
            Workload::Echo {
                size: 64,
                messages: 20_000,
                decipher: false,
            },
            Workload::Echo {
                size: 256 << 10,
                messages: 100,
                decipher: false,
            },
            Workload::FanOut {
                size: 1 << 10,
                subscribers: 4,
                messages: 200,
            },
        ] {
            if let Err(e) = run_once(s, &sc, RssRule::default()) {
                eprintln!("warm-up of {} failed: {e}", s.kind);
            }
        }
    }
    // Every server must support the VmHWM reset, else all are sampled.
    let peak = if servers
        .iter()
        .all(|s| PeakMethod::detect(s.pid()) == PeakMethod::ClearRefs)
    {
        PeakMethod::ClearRefs
    } else {
        PeakMethod::Sampled
    };
    let rule = RssRule {
        peak,
        settle: Settle::up_to(settle),
    };
    if progress {
        eprintln!(
            "RSS: peak = {}; after = {}",
            peak.describe(),
            rule.settle.describe()
        );
    }
    let mut m = Matrix {
        scenarios: scenarios.clone(),
        servers: ServerKind::ALL.to_vec(),
        repeats,
        rss: rule,
        ..Default::default()
    };
    for rep in 0..repeats {
        for (i, sc) in scenarios.iter().enumerate() {
            for j in 0..servers.len() {
                let n = servers.len();
                let s = &mut servers[(j + rep + i) % n];
                let r = run_once(s, sc, rule);
                if progress {
                    match &r {
                        Ok(x) => eprintln!(
                            "[{}/{repeats}] {:<22} {:<13} {:>12.0}/s  cpu {:>7.0} ns/msg  rss {}{}",
                            rep + 1,
                            sc.name(),
                            s.kind.name(),
                            x.per_sec,
                            x.cpu_ns_per_msg,
                            fmt_rss(x.rss_start, x.rss_peak, x.rss_after),
                            x.p99_us
                                .map(|p| format!("  p99 {p:.1} us"))
                                .unwrap_or_default()
                        ),
                        Err(e) => eprintln!(
                            "[{}/{repeats}] {:<22} {:<13} FAILED: {e}",
                            rep + 1,
                            sc.name(),
                            s.kind.name()
                        ),
                    }
                }
                let cell = m.cells.entry((i, s.kind)).or_default();
                match r {
                    Ok(x) => cell.samples.push(x),
                    Err(e) => cell.errors.push(e),
                }
            }
        }
    }
    for s in servers {
        s.stop();
    }
    m.elapsed = t0.elapsed();
    Ok(m)
}

/// `start / peak / after` in MB (10^6 bytes), `-` for a missing figure.
pub fn fmt_rss(start: Option<u64>, peak: Option<u64>, after: Option<u64>) -> String {
    let mb = |v: Option<u64>| v.map_or_else(|| "-".into(), |b| format!("{:.1}", b as f64 / 1e6));
    format!("{} / {} / {} MB", mb(start), mb(peak), mb(after))
}
