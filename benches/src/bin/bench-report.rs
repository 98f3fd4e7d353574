//! `bench-report`: the whole suite in one report.
//!
//! 1. Reads criterion's results for every bench (`**/new/estimates.json`
//!    under the criterion directories; `--run-criterion` first runs
//!    `cargo bench -p benches --benches`).
//! 2. Runs the end-to-end matrix in this process's children: the load
//!    generator against `server-demo` (default strategies), the idiomatic
//!    tokio peer, tokio-with-netbuf and the lean hand-written mio server
//!    (the ceiling), same machine, same settings;
//!    repeated (default 3 runs), medians quoted; with each server's RSS
//!    at the start of a run, its peak and after it (`--rss-settle`).
//! 3. Writes `REPORT.md`, `RESULTS-SECTION.md` (the README's "Results"
//!    section) and SVG plots into `target/bench-report/`.
//!
//! ```text
//! cargo run --release -p benches --bin bench-report [-- --run-criterion]
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use benches::report::criterion::{self, GroupTable};
use benches::report::e2e::{self, Matrix, ServerKind};
use benches::report::plots::{self, Chart};
use benches::report::{Machine, parse_size_label, render, workspace_root};
use benches::zmtp::{compare as zmtp, reference::RefArgs, section as zmtp_section};
use clap::{Parser, Subcommand};
use server_demo::load::Workload;

allocators::global_allocator!();

#[derive(Parser, Debug)]
#[command(about = "Criterion suite + end-to-end matrix -> target/bench-report/REPORT.md")]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Run `cargo bench -p benches --benches` before reading its results.
    #[arg(long)]
    run_criterion: bool,
    /// Criterion output directories to read, first wins for a benchmark
    /// present in several (default: $CARGO_TARGET_DIR/criterion, else
    /// <workspace>/target/criterion).
    #[arg(long = "criterion-dir")]
    criterion_dirs: Vec<PathBuf>,
    /// Output directory (default <workspace>/target/bench-report).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Runs per end-to-end cell (medians are quoted).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// A seconds-long end-to-end matrix (1/20 of the messages), for smoke runs.
    #[arg(long)]
    quick: bool,
    /// Skip the end-to-end matrix (criterion tables only).
    #[arg(long)]
    no_e2e: bool,
    /// Skip the ZMTP section (server-demo against libzmq).
    #[arg(long)]
    no_zmtp: bool,
    /// Seconds of load per ZMTP cell (default 2; 0.3 with --quick).
    #[arg(long)]
    zmtp_seconds: Option<f64>,
    /// Longest wait, after each end-to-end run, for the server's RSS to
    /// stop dropping before "after" is read (polled every 100 ms, at least
    /// 1 s; 0 reads it right away).
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    rss_settle: f64,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run one server until standard input closes (the report's children).
    #[command(hide = true)]
    Serve {
        /// server-demo, tokio-peer, tokio-netbuf or mio-lean.
        server: String,
    },
    /// Run the libzmq reference server until standard input closes.
    #[command(hide = true)]
    ServeZmqRef {
        #[command(flatten)]
        args: RefArgs,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Some(Cmd::ServeZmqRef { args }) = &cli.cmd {
        std::process::exit(benches::zmtp::reference::main_with(args, true));
    }
    if let Some(Cmd::Serve { server }) = &cli.cmd {
        let code = match ServerKind::parse(server) {
            Some(k) => e2e::serve_child(k),
            None => {
                eprintln!("unknown server {server}");
                2
            }
        };
        std::process::exit(code);
    }
    if let Err(e) = run(&cli) {
        eprintln!("bench-report: {e}");
        std::process::exit(1);
    }
}

fn default_criterion_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => {
            let t = PathBuf::from(t);
            if t.is_absolute() {
                t.join("criterion")
            } else {
                workspace_root().join(t).join("criterion")
            }
        }
        None => workspace_root().join("target").join("criterion"),
    }
}

fn run(cli: &Cli) -> Result<(), String> {
    let t0 = Instant::now();
    let out = cli
        .out
        .clone()
        .unwrap_or_else(|| workspace_root().join("target").join("bench-report"));
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    if cli.run_criterion {
        eprintln!("running cargo bench -p benches --benches (several minutes) ...");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["bench", "-p", "benches", "--benches"])
            .current_dir(workspace_root())
            .status()
            .map_err(|e| format!("cargo bench: {e}"))?;
        if !status.success() {
            return Err(format!("cargo bench failed: {status}"));
        }
    }
    let dirs = if cli.criterion_dirs.is_empty() {
        vec![default_criterion_dir()]
    } else {
        cli.criterion_dirs.clone()
    };
    let estimates = criterion::read_all(&dirs);
    let tables = criterion::tables(&estimates);
    eprintln!(
        "criterion: {} benchmarks in {} groups from {}",
        estimates.len(),
        tables.len(),
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );

    let machine = Machine::probe();
    let matrix = if cli.no_e2e {
        None
    } else {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        eprintln!(
            "end-to-end matrix: {} servers x {} runs ...",
            ServerKind::ALL.len(),
            cli.repeats.max(1)
        );
        Some(
            e2e::run_matrix(
                &exe,
                e2e::matrix(cli.quick),
                cli.repeats.max(1),
                Duration::from_secs_f64(cli.rss_settle.clamp(0.0, 3600.0)),
                true,
            )
            .map_err(|e| format!("end-to-end matrix: {e}"))?,
        )
    };
    let threshold = netbuf::calibrated_threshold(netbuf::Transport::Tcp).resolve();
    let mut svgs = draw_plots(&out, matrix.as_ref(), &tables, threshold);
    let zmtp_md = if cli.no_zmtp {
        String::new()
    } else {
        zmtp_report(cli, &out, &mut svgs)?
    };
    let mut command = String::from("cargo run --release -p benches --bin bench-report");
    let mut flags = Vec::new();
    if cli.run_criterion {
        flags.push("--run-criterion".to_string());
    }
    if cli.quick {
        flags.push("--quick".into());
    }
    if cli.repeats != 3 {
        flags.push(format!("--repeats {}", cli.repeats));
    }
    if cli.no_e2e {
        flags.push("--no-e2e".into());
    }
    if cli.no_zmtp {
        flags.push("--no-zmtp".into());
    }
    if let Some(z) = cli.zmtp_seconds {
        flags.push(format!("--zmtp-seconds {z}"));
    }
    if cli.rss_settle != 5.0 {
        flags.push(format!("--rss-settle {}", cli.rss_settle));
    }
    if !flags.is_empty() {
        command.push_str(" -- ");
        command.push_str(&flags.join(" "));
    }
    let report = report_md(
        &machine,
        &command,
        matrix.as_ref(),
        &tables,
        &svgs,
        threshold,
        &dirs,
    )
    .replacen(
        "\n## Field reports, reproduced",
        &format!("{zmtp_md}\n## Field reports, reproduced"),
        1,
    );
    let path = out.join("REPORT.md");
    std::fs::write(&path, report).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut section = results_section(&machine, &command, matrix.as_ref(), &tables);
    section.push_str(&zmtp_md.replacen("\n## ZMTP", "\n### ZMTP", 1));
    let spath = out.join("RESULTS-SECTION.md");
    std::fs::write(&spath, section).map_err(|e| format!("{}: {e}", spath.display()))?;
    eprintln!(
        "wrote {} and {} ({} plots) in {:.0} s",
        path.display(),
        spath.display(),
        svgs.len(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs the ZMTP comparison, draws its plot (added to `svgs`) and returns
/// its Markdown section.
fn zmtp_report(cli: &Cli, out: &Path, svgs: &mut Vec<(String, String)>) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let seconds = cli
        .zmtp_seconds
        .unwrap_or(if cli.quick { 0.3 } else { 2.0 });
    let demo = zmtp::demo_launch(&exe).unwrap_or_else(|e| {
        eprintln!("zmtp: {e}");
        (
            PathBuf::from("server-demo (not built)"),
            Vec::new(),
            Vec::new(),
        )
    });
    eprintln!("ZMTP: libzmq reference vs server-demo, {seconds} s per cell ...");
    let results = zmtp::run(&zmtp::libzmq_launch(&exe), &demo, seconds);
    let file = "zmtp-throughput.svg";
    let plot = match zmtp_section::draw(&results, &out.join(file)) {
        Ok(true) => {
            svgs.push((
                file.into(),
                "ZMTP echo throughput by size, tcp and ipc, server-demo vs libzmq".into(),
            ));
            Some(file)
        }
        Ok(false) => None,
        Err(e) => {
            eprintln!("plot {file}: {e}");
            None
        }
    };
    Ok(zmtp_section::markdown(&results, plot))
}

fn draw_plots(
    out: &Path,
    m: Option<&Matrix>,
    tables: &[GroupTable],
    threshold: usize,
) -> Vec<(String, String)> {
    let mut done = Vec::new();
    let mut emit = |file: &str, what: &str, chart: Chart<'_>| {
        if chart.series.iter().all(|s| s.1.is_empty()) {
            return;
        }
        match plots::draw(&out.join(file), &chart) {
            Ok(()) => done.push((file.to_string(), what.to_string())),
            Err(e) => eprintln!("plot {file}: {e}"),
        }
    };
    if let Some(m) = m {
        let by_server = |keep: fn(&Workload) -> bool,
                         x: fn(&Workload) -> f64,
                         y: &dyn Fn(&e2e::Cell, &Workload) -> Option<f64>| {
            m.servers
                .iter()
                .map(|&k| {
                    let pts = m
                        .scenarios
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| keep(s))
                        .filter_map(|(i, s)| Some((x(s), y(m.cell(i, k)?, s)?)))
                        .collect();
                    (k.name().to_string(), pts)
                })
                .collect::<Vec<_>>()
        };
        let size = |s: &Workload| s.size() as f64;
        emit(
            "throughput.svg",
            "echo throughput (MB/s of bodies) by message size, per server",
            Chart {
                title: "Echo throughput by message size (window 64, 1 connection)",
                x_label: "body size",
                y_label: "MB/s (bodies, one direction)",
                series: by_server(|s| matches!(s, Workload::Echo { .. }), size, &|c, _| {
                    c.mb_per_sec()
                }),
                log_x: true,
                log_y: true,
                vlines: vec![],
                hline: None,
                x_fmt: plots::fmt_bytes,
            },
        );
        emit(
            "latency-p99.svg",
            "ping-pong p99 latency by message size, per server",
            Chart {
                title: "Ping-pong p99 round trip by message size",
                x_label: "body size",
                y_label: "p99 (us)",
                series: by_server(|s| matches!(s, Workload::Latency { .. }), size, &|c, _| {
                    c.p99_us()
                }),
                log_x: true,
                log_y: true,
                vlines: vec![],
                hline: None,
                x_fmt: plots::fmt_bytes,
            },
        );
        emit(
            "fanout.svg",
            "broadcast: time to deliver one 1 KiB publish to every subscriber, by session count",
            Chart {
                title: "Broadcast: time per 1 KiB publish, all subscribers served",
                x_label: "subscribers",
                y_label: "us per publish",
                series: by_server(
                    |s| matches!(s, Workload::FanOut { size: 1024, .. }),
                    |s| match s {
                        Workload::FanOut { subscribers, .. } => *subscribers as f64,
                        _ => 0.0,
                    },
                    &|c, s| match s {
                        Workload::FanOut { subscribers, .. } => {
                            c.per_sec().map(|r| *subscribers as f64 / r * 1e6)
                        }
                        _ => None,
                    },
                ),
                log_x: true,
                log_y: true,
                vlines: vec![],
                hline: None,
                x_fmt: plots::fmt_plain,
            },
        );
    }
    let gather: Vec<plots::Series> = ["send_tcp", "send_unix"]
        .iter()
        .filter_map(|g| tables.iter().find(|t| t.group == *g))
        .map(|t| {
            let pts = t
                .rows
                .iter()
                .filter_map(|r| {
                    Some((
                        parse_size_label(r)? as f64,
                        t.speedup(r, "gather", "linear")?,
                    ))
                })
                .collect();
            (format!("{} gather / linear", t.group), pts)
        })
        .collect();
    emit(
        "gather-linear.svg",
        "flush bench: gather speed relative to linear by body size, calibrated threshold marked",
        Chart {
            title: "Gather vs linear send (speed ratio, > 1: gather faster)",
            x_label: "body size",
            y_label: "linear time / gather time",
            series: gather,
            log_x: true,
            log_y: false,
            vlines: vec![(
                threshold.max(1) as f64,
                format!(
                    "threshold (auto, tcp): {}",
                    plots::fmt_bytes(threshold as f64)
                ),
            )],
            hline: Some(1.0),
            x_fmt: plots::fmt_bytes,
        },
    );
    let bc: Vec<plots::Series> = tables
        .iter()
        .find(|t| t.group == "broadcast")
        .map(|t| {
            t.columns
                .iter()
                .map(|c| {
                    let pts = t
                        .rows
                        .iter()
                        .filter_map(|r| Some((parse_size_label(r)? as f64, t.get(r, c)? / 1e3)))
                        .collect();
                    (c.clone(), pts)
                })
                .collect()
        })
        .unwrap_or_default();
    emit(
        "broadcast-bench.svg",
        "pool bench: broadcast of 1,000 rounds x 100 sessions by message size (copy vs shared)",
        Chart {
            title: "Broadcast bench: 1,000 rounds x 100 sessions",
            x_label: "message size",
            y_label: "us per run (median)",
            series: bc,
            log_x: true,
            log_y: true,
            vlines: vec![],
            hline: None,
            x_fmt: plots::fmt_bytes,
        },
    );
    done
}

fn report_md(
    machine: &Machine,
    command: &str,
    m: Option<&Matrix>,
    tables: &[GroupTable],
    svgs: &[(String, String)],
    threshold: usize,
    dirs: &[PathBuf],
) -> String {
    let mut o = String::new();
    o.push_str("# Benchmark report\n\n");
    o.push_str(&render::machine_block(machine, command));
    o.push_str(
        "\nRatios, not absolute times: the load generator and the server share the \
         machine. Every server runs as a child process of `bench-report` with the same \
         global allocator, a 1 MiB body limit and a 64 MiB per-session send bound (65,536 messages per room for the tokio peer's `broadcast`); `server-demo` with its default strategies \
         (1 IO thread running the handlers inline, pool, shared broadcast, small deliveries \
         staged directly, auto gather threshold; `server-demo-logic1` adds one logic thread), the tokio \
         servers on a multi-thread runtime with one worker per core, `mio-lean` (a lean \
         hand-written mio server: a poll per worker, one worker per core, plain `Vec<u8>` \
         buffers, no pools; the ceiling for small messages) with the same 64 MiB bound on a \
         connection's unsent output.\n",
    );
    match m {
        Some(m) => {
            o.push_str(&format!(
                "\n## End to end ({} runs per cell, medians; matrix took {:.0} s)\n",
                m.repeats,
                m.elapsed.as_secs_f64()
            ));
            o.push_str("\n### Targets (issue 17)\n\n");
            o.push_str(&render::targets_table(&render::targets(m)));
            o.push_str(&render::e2e_tables(m));
        }
        None => o.push_str("\n## End to end\n\nskipped (`--no-e2e`)\n"),
    }
    o.push_str("\n## Field reports, reproduced\n\n");
    o.push_str(&render::field_table(tables));
    o.push_str(&format!(
        "\nGather threshold calibrated by this run for loopback TCP: {} bytes.\n",
        threshold
    ));
    o.push_str("\n## Plots\n\n");
    for (f, what) in svgs {
        o.push_str(&format!("- [{f}]({f}): {what}\n"));
    }
    o.push_str(&format!(
        "\n## Criterion suite\n\nFrom {}. Rerun with `cargo bench -p benches` (or \
         `bench-report --run-criterion`).\n",
        dirs.iter()
            .map(|d| format!("`{}`", d.display()))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if tables.is_empty() {
        o.push_str("\nNo criterion results found.\n");
    }
    o.push_str(&render::criterion_tables(tables));
    o
}

fn results_section(
    machine: &Machine,
    command: &str,
    m: Option<&Matrix>,
    tables: &[GroupTable],
) -> String {
    let mut o = String::new();
    o.push_str("## Results\n\n");
    o.push_str(&format!(
        "Figures of one run on {}, commit `{}`, {}. The machine is a small shared VM \
         and the load generator runs on it too: read the ratios, not the absolute \
         figures. Regenerate them (about 2 minutes; `--run-criterion` adds the full \
         criterion suite first) with:\n\n```sh\n{}\n```\n\n\
         which writes `target/bench-report/REPORT.md` (every table, medians of 3 runs, \
         ratios) and SVG plots next to it.\n",
        machine.summary(),
        machine.commit,
        machine.date,
        command
    ));
    if let Some(m) = m {
        o.push_str(
            "\n### End to end: `server-demo` and tokio-with-netbuf against an idiomatic tokio \
             server\n\nSame load generator, loopback TCP, echo with 64 requests in flight on one \
             connection, ping-pong, and 1 KiB fan-out; the tokio peer is tokio + `tokio-util` \
             `LengthDelimitedCodec` with `broadcast` rooms, `mio-lean` a lean hand-written mio \
             server with plain `Vec<u8>` buffers and no pools, the ceiling for small messages \
             (`benches/src/peers/`).\n",
        );
        o.push_str(&render::e2e_tables(m));
        o.push_str("\n### Targets\n\n");
        o.push_str(&render::targets_table(&render::targets(m)));
    }
    o.push_str("\n### Field reports, reproduced (criterion)\n\n");
    o.push_str(&render::field_table(tables));
    o
}
