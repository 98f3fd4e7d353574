//! The main job: start the server on loopback once per strategy, drive a
//! short representative matrix through it with the load generator, and
//! print what each strategy costs (throughput, latency, server allocations
//! and CPU per message, large-path ratio), then memory per idle connection,
//! then the ZMTP section ([`zmtp`]).

pub mod zmtp;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{
    BroadcastMode, Listen, PoolMode, QueueMode, RecvMode, SendMode, StrategyArgs, TransformMode,
};
use crate::load::{LoadError, Target, Workload};
use crate::server::Server;

/// One measured row of the main job.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Strategy label (`default`, `pool=heap`, ...).
    pub strategy: String,
    /// Scenario (`echo 64B tcp`, ...).
    pub scenario: String,
    /// Messages (or deliveries) per second.
    pub per_sec: f64,
    /// Body MB/s (one direction).
    pub mb_per_sec: f64,
    /// Round-trip percentiles in microseconds (latency rows).
    pub p50_us: Option<f64>,
    /// 99th percentile.
    pub p99_us: Option<f64>,
    /// 99.9th percentile.
    pub p999_us: Option<f64>,
    /// Server allocator calls per message (counting global allocator,
    /// server threads only).
    pub allocs_per_msg: f64,
    /// Messages taken from the server's `MessagePool` (pooled or heap) per
    /// message: about 1 per delivery with `--broadcast copy`, about 1 per
    /// publish (so 1/N per delivery) with `shared`.
    pub pool_msgs_per_msg: f64,
    /// Server CPU nanoseconds per message (all server threads).
    pub cpu_ns_per_msg: f64,
    /// Share of frames the flusher sent by the gather path.
    pub large_path_ratio: f64,
}

/// Memory per idle connection.
#[derive(Debug, Clone, Serialize)]
pub struct IdleRow {
    /// `linear` or `chained`.
    pub recv: String,
    /// Connections held.
    pub connections: u64,
    /// Server heap bytes per connection (counting allocator, live bytes).
    pub bytes_per_connection: f64,
}

/// Where a case of the main job runs: which transport of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// Loopback TCP.
    Tcp,
    /// The Unix-domain socket.
    Unix,
    /// The in-process transport (no socket).
    Inproc,
}

impl Via {
    fn label(self) -> &'static str {
        match self {
            Via::Tcp => "tcp",
            Via::Unix => "unix",
            Via::Inproc => "inproc",
        }
    }

    /// The server's endpoint of this transport.
    fn target(self, server: &Server) -> Target {
        match self {
            Via::Tcp => Target::Tcp(server.tcp_addr().expect("tcp listener")),
            Via::Unix => Target::Unix(server.unix_path().expect("unix listener").clone()),
            Via::Inproc => Target::Inproc(server.inproc_connector()),
        }
    }
}

/// One case of the main job: a [`Workload`] and where it runs.
struct Case {
    work: Workload,
    via: Via,
}

impl Case {
    fn tcp(work: Workload) -> Case {
        Case {
            work,
            via: Via::Tcp,
        }
    }

    fn unix(work: Workload) -> Case {
        Case {
            work,
            via: Via::Unix,
        }
    }

    fn inproc(work: Workload) -> Case {
        Case {
            work,
            via: Via::Inproc,
        }
    }

    /// `echo 64 B tcp`, `ping-pong 64 B tcp`, `fan-out 1 KiB x256`, `echo
    /// 64 B tcp (deciphered)`, ...
    fn name(&self) -> String {
        let via = self.via.label();
        match self.work {
            Workload::FanOut { .. } if self.via == Via::Tcp => self.work.name(),
            Workload::Echo { decipher: true, .. } => {
                format!("{} {via} (deciphered)", self.work.name())
            }
            _ => format!("{} {via}", self.work.name()),
        }
    }
}

fn run_one(server: &Server, label: &str, sc: &Case) -> Result<Row, LoadError> {
    let c = server.counters();
    let (a0, cpu0) = server.thread_totals();
    let pool_allocs = |s: &Server| {
        let p = s.pool().stats();
        p.pooled_allocs + p.heap_allocs
    };
    let p0 = pool_allocs(server);
    let g0 = c.gather_frames.load(Ordering::Relaxed);
    let l0 = c.linear_frames.load(Ordering::Relaxed);
    let mut row = Row {
        strategy: label.to_string(),
        scenario: sc.name(),
        per_sec: 0.0,
        mb_per_sec: 0.0,
        p50_us: None,
        p99_us: None,
        p999_us: None,
        allocs_per_msg: 0.0,
        pool_msgs_per_msg: 0.0,
        cpu_ns_per_msg: 0.0,
        large_path_ratio: 0.0,
    };
    let messages = measure(server, sc, &mut row)?;
    // Sessions of the run close (their flusher metrics are folded in then).
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.live_sessions() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let (a1, cpu1) = server.thread_totals();
    let m = messages.max(1) as f64;
    row.allocs_per_msg = a1.saturating_sub(a0) as f64 / m;
    row.pool_msgs_per_msg = pool_allocs(server).saturating_sub(p0) as f64 / m;
    row.cpu_ns_per_msg = cpu1.saturating_sub(cpu0) as f64 / m;
    let g = c.gather_frames.load(Ordering::Relaxed) - g0;
    let l = c.linear_frames.load(Ordering::Relaxed) - l0;
    row.large_path_ratio = if g + l == 0 {
        0.0
    } else {
        g as f64 / (g + l) as f64
    };
    Ok(row)
}

/// Runs one scenario against `server`, fills the row's rates (and
/// percentiles); returns the messages it counted.
fn measure(server: &Server, sc: &Case, row: &mut Row) -> Result<u64, LoadError> {
    let o = sc.work.run(sc.via.target(server))?;
    row.per_sec = o.per_sec;
    row.mb_per_sec = o.mb_per_sec;
    if let Some(l) = o.latency {
        row.p50_us = Some(l.p50_us);
        row.p99_us = Some(l.p99_us);
        row.p999_us = Some(l.p999_us);
    }
    Ok(o.units)
}

/// The strategies the main job compares: the default, then one switch at a
/// time.
pub fn strategies() -> Vec<StrategyArgs> {
    let base = StrategyArgs {
        max_frame: 1 << 20,
        ..StrategyArgs::default()
    };
    vec![
        base.clone(),
        StrategyArgs {
            pool: PoolMode::Heap,
            ..base.clone()
        },
        StrategyArgs {
            broadcast: BroadcastMode::Copy,
            ..base.clone()
        },
        StrategyArgs {
            send: SendMode::Linear,
            ..base.clone()
        },
        StrategyArgs {
            send: SendMode::Gather,
            ..base.clone()
        },
        StrategyArgs {
            queue: QueueMode::Mutex,
            ..base.clone()
        },
        StrategyArgs {
            recv: RecvMode::Chained,
            ..base.clone()
        },
        StrategyArgs {
            transform: TransformMode::Chacha20,
            ..base.clone()
        },
        // The mode for handlers that may block (the default runs them
        // inline on the IO thread).
        StrategyArgs {
            logic_threads: 1,
            ..base
        },
    ]
}

fn scenarios(cfg: &StrategyArgs, full: bool) -> Vec<Case> {
    // The ChaCha20 transform enciphers every reply: the client deciphers.
    let decipher = cfg.transform == TransformMode::Chacha20;
    let echo = |size, messages| Workload::Echo {
        size,
        messages,
        decipher,
    };
    if decipher {
        return vec![
            Case::tcp(echo(64, 200_000)),
            Case::tcp(echo(1024, 100_000)),
            Case::tcp(echo(256 << 10, 2_000)),
        ];
    }
    let mut v = vec![
        Case::tcp(echo(64, 200_000)),
        Case::tcp(echo(1024, 100_000)),
        Case::tcp(echo(256 << 10, 2_000)),
        Case::tcp(Workload::FanOut {
            size: 1024,
            subscribers: 256,
            messages: 200,
        }),
    ];
    if full {
        v.push(Case::unix(echo(64, 200_000)));
        v.push(Case::inproc(echo(64, 200_000)));
        v.push(Case::inproc(echo(256 << 10, 2_000)));
        v.push(Case::unix(echo(256 << 10, 2_000)));
        v.push(Case::tcp(Workload::Latency {
            size: 64,
            round_trips: 5_000,
        }));
    }
    v
}

/// Runs the matrix; the default strategy gets every scenario, the others
/// the subset that shows what they change.
pub fn run_matrix() -> Vec<Row> {
    let mut rows = Vec::new();
    let dir = std::env::temp_dir().join(format!("server-demo-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    for (i, cfg) in strategies().into_iter().enumerate() {
        let label = cfg.label();
        let plan = scenarios(&cfg, i == 0);
        let server = match Server::start(
            Listen {
                tcp: Some("127.0.0.1:0".parse().expect("addr")),
                unix: Some(dir.join(format!("s{i}.sock"))),
            },
            cfg,
        ) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{label}: cannot start: {e}");
                continue;
            }
        };
        for sc in plan {
            let t = Instant::now();
            match run_one(&server, &label, &sc) {
                Ok(r) => {
                    eprintln!(
                        "  {:<22} {:<20} {:>12.0}/s  ({:.2} s)",
                        r.strategy,
                        r.scenario,
                        r.per_sec,
                        t.elapsed().as_secs_f64()
                    );
                    rows.push(r);
                }
                Err(e) => eprintln!("  {label} {}: failed: {e}", sc.name()),
            }
        }
        let leaks = server.shutdown();
        if !leaks.is_clean() {
            eprintln!("{label}: LEAK after shutdown: {leaks}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    rows
}

/// A Markdown table: the header row (`head`: the cells, `" | "` between
/// them), the alignment row (the first `left` columns left-aligned, the
/// rest right-aligned: numbers), then one row of cells each. The main
/// job's one table renderer (its ZMTP section's tables too).
fn markdown_table(head: &str, left: usize, rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut s = format!("| {head} |\n|");
    for i in 0..head.split(" | ").count() {
        s.push_str(if i < left { "---|" } else { "---:|" });
    }
    s.push('\n');
    for cells in rows {
        s.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    s
}

/// Renders the matrix as a Markdown table.
pub fn render(rows: &[Row]) -> String {
    let head = "strategy | scenario | msgs/s | MB/s | p50/p99/p99.9 us | global allocs/msg | pool msgs/msg | CPU ns/msg | large-path";
    markdown_table(
        head,
        2,
        rows.iter().map(|r| {
            let lat = match (r.p50_us, r.p99_us, r.p999_us) {
                (Some(a), Some(b), Some(c)) => format!("{a:.0}/{b:.0}/{c:.0}"),
                _ => "-".into(),
            };
            vec![
                r.strategy.clone(),
                r.scenario.clone(),
                format!("{:.0}", r.per_sec),
                format!("{:.1}", r.mb_per_sec),
                lat,
                format!("{:.3}", r.allocs_per_msg),
                format!("{:.3}", r.pool_msgs_per_msg),
                format!("{:.0}", r.cpu_ns_per_msg),
                format!("{:.2}", r.large_path_ratio),
            ]
        }),
    )
}

/// Renders the idle-memory rows as a Markdown table.
pub fn render_idle(rows: &[IdleRow]) -> String {
    let head = "receive buffer | idle connections | server heap bytes / connection";
    markdown_table(
        head,
        1,
        rows.iter().map(|r| {
            vec![
                r.recv.clone(),
                r.connections.to_string(),
                format!("{:.0}", r.bytes_per_connection),
            ]
        }),
    )
}

/// Holds `count` idle TCP connections to `addr` from this process until
/// standard input closes (the `hold` subcommand the idle measurement
/// spawns, so client and server sockets do not share one fd limit).
pub fn hold_connections(addr: std::net::SocketAddr, count: usize) -> std::io::Result<()> {
    let _ = crate::load::raise_fd_limit(u64::MAX);
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        held.push(std::net::TcpStream::connect(addr)?);
    }
    println!("held {}", held.len());
    std::io::stdout().flush()?;
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    Ok(())
}

/// Server heap bytes per idle connection, for each receive buffer.
pub fn idle_memory(count: usize) -> Vec<IdleRow> {
    let mut rows = Vec::new();
    for recv in [RecvMode::Linear, RecvMode::Chained] {
        let cfg = StrategyArgs {
            recv,
            ..StrategyArgs::default()
        };
        let Ok(server) = Server::start(
            Listen {
                tcp: Some("127.0.0.1:0".parse().expect("addr")),
                unix: None,
            },
            cfg,
        ) else {
            continue;
        };
        let addr = server.tcp_addr().expect("tcp");
        // Let the threads reach their steady state first.
        std::thread::sleep(Duration::from_millis(50));
        let before = allocators::global_stats().live_bytes;
        let Ok(exe) = std::env::current_exe() else {
            continue;
        };
        let child = Command::new(exe)
            .args([
                "hold",
                "--tcp",
                &addr.to_string(),
                "--count",
                &count.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn();
        let Ok(mut child) = child else { continue };
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while (server.live_sessions() as usize) < count && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let held = server.live_sessions();
        let after = allocators::global_stats().live_bytes;
        drop(child.stdin.take());
        let _ = child.wait();
        rows.push(IdleRow {
            recv: format!("{recv:?}").to_lowercase(),
            connections: held,
            bytes_per_connection: (after - before) as f64 / held.max(1) as f64,
        });
        let _ = server.shutdown();
    }
    rows
}

/// The whole main job; returns the process exit code.
pub fn main_job(json: Option<&std::path::Path>) -> i32 {
    let started = Instant::now();
    println!(
        "netbuf demo: server + load generator on loopback, global allocator: {} (counted)",
        allocators::active()
    );
    let t = StrategyArgs::default();
    let thresholds = (
        t.gather_threshold_for(netbuf::Transport::Tcp).resolve(),
        t.gather_threshold_for(netbuf::Transport::Unix).resolve(),
    );
    println!(
        "gather threshold calibrated on this machine: tcp {} B, unix {} B\n",
        thresholds.0, thresholds.1
    );
    let rows = run_matrix();
    println!("{}", render(&rows));
    let t = Instant::now();
    let idle = idle_memory(10_000);
    eprintln!("  idle memory: {:.2} s", t.elapsed().as_secs_f64());
    println!("{}", render_idle(&idle));
    let t = Instant::now();
    let zmtp = zmtp::run_zmtp();
    eprintln!("  zmtp section: {:.2} s", t.elapsed().as_secs_f64());
    println!("{}", zmtp::render_zmtp(&zmtp));
    println!("(total {:.1} s)", started.elapsed().as_secs_f64());
    if let Some(path) = json {
        #[derive(Serialize)]
        struct Out<'a> {
            allocator: &'static str,
            rows: &'a [Row],
            idle: &'a [IdleRow],
            zmtp: &'a zmtp::ZmtpSection,
        }
        let out = Out {
            allocator: allocators::active().name(),
            rows: &rows,
            idle: &idle,
            zmtp: &zmtp,
        };
        match serde_json::to_string_pretty(&out) {
            Ok(s) => {
                if let Err(e) = std::fs::write(path, s) {
                    eprintln!("cannot write {}: {e}", path.display());
                }
            }
            Err(e) => eprintln!("cannot serialize: {e}"),
        }
    }
    if rows.is_empty() || zmtp.rows.is_empty() || !zmtp.leak_free {
        1
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_table_aligns_numbers_right() {
        let rows = [vec!["a".to_string(), "b".into(), "1".into()]];
        assert_eq!(
            markdown_table("name | kind | n", 2, rows),
            "| name | kind | n |\n|---|---|---:|\n| a | b | 1 |\n"
        );
        assert_eq!(markdown_table("x", 0, []), "| x |\n|---:|\n");
    }

    #[test]
    fn case_names() {
        let names = |cfg: &StrategyArgs, full| {
            scenarios(cfg, full)
                .iter()
                .map(Case::name)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&StrategyArgs::default(), true),
            [
                "echo 64 B tcp",
                "echo 1 KiB tcp",
                "echo 256 KiB tcp",
                "fan-out 1 KiB x256",
                "echo 64 B unix",
                "echo 64 B inproc",
                "echo 256 KiB inproc",
                "echo 256 KiB unix",
                "ping-pong 64 B tcp",
            ]
        );
        let chacha = StrategyArgs {
            transform: TransformMode::Chacha20,
            ..StrategyArgs::default()
        };
        assert_eq!(
            names(&chacha, false),
            [
                "echo 64 B tcp (deciphered)",
                "echo 1 KiB tcp (deciphered)",
                "echo 256 KiB tcp (deciphered)",
            ]
        );
        assert_eq!(
            Case::unix(Workload::FanOut {
                size: 64,
                subscribers: 2,
                messages: 1
            })
            .name(),
            "fan-out 64 B x2 unix"
        );
    }
}
