//! `server-demo`: with no arguments, the main job (server + load generator
//! on loopback, report table); `serve` runs the server; `load` drives any
//! server that speaks the framing.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand};
use server_demo::config::{Listen, StrategyArgs};
use server_demo::server::Server;
use server_demo::zmtp::{EndpointAddr, EndpointKind, EndpointSpec};

allocators::global_allocator!();

#[derive(Parser, Debug)]
#[command(
    version,
    about = "netbuf demo server and load generator",
    long_about = "Without a subcommand: the main job. Starts the server on loopback once per \
                  strategy, drives a short matrix through it with the built-in load generator \
                  and prints throughput, latency, server allocations and CPU per message, \
                  the large-path ratio, and server memory per idle connection."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Main job: also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// ZMTP endpoints of `serve`: each flag repeatable, each `tcp://HOST:PORT`
/// (port 0 picks one) or `ipc://PATH`.
#[derive(clap::Args, Debug, Default)]
struct ZmtpArgs {
    /// A ROUTER that sends every message back to its sender (DEALER, REQ,
    /// ROUTER peers).
    #[arg(long = "zmtp-router", value_name = "EP")]
    router: Vec<EndpointAddr>,
    /// A PAIR that echoes its one peer.
    #[arg(long = "zmtp-pair", value_name = "EP")]
    pair: Vec<EndpointAddr>,
    /// The broker's publisher side (XSUB: PUB / XPUB peers).
    #[arg(long = "zmtp-xsub", value_name = "EP")]
    xsub: Vec<EndpointAddr>,
    /// The broker's subscriber side (XPUB: SUB / XSUB peers).
    #[arg(long = "zmtp-xpub", value_name = "EP")]
    xpub: Vec<EndpointAddr>,
}

impl ZmtpArgs {
    fn specs(self) -> Vec<EndpointSpec> {
        let kinds = [
            (EndpointKind::Router, self.router),
            (EndpointKind::Pair, self.pair),
            (EndpointKind::Xsub, self.xsub),
            (EndpointKind::Xpub, self.xpub),
        ];
        kinds
            .into_iter()
            .flat_map(|(kind, addrs)| {
                addrs
                    .into_iter()
                    .map(move |addr| EndpointSpec { kind, addr })
            })
            .collect()
    }
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the server until SIGINT/SIGTERM.
    Serve {
        /// TCP address to listen on (port 0 picks a free port).
        #[arg(long)]
        tcp: Option<std::net::SocketAddr>,
        /// Unix-domain socket path to listen on.
        #[arg(long)]
        unix: Option<PathBuf>,
        #[command(flatten)]
        zmtp: ZmtpArgs,
        #[command(flatten)]
        strategy: StrategyArgs,
    },
    /// Drive any server that speaks the framing (echo, latency, fan-out).
    Load(server_demo::load::LoadArgs),
    /// Soak / chaos test: the server in-process on loopback under many
    /// clients that mix valid traffic with faults; checks nothing is lost or
    /// corrupted and memory stays bounded; non-zero exit on any failure.
    Soak(server_demo::soak::SoakArgs),
    /// Hold N idle TCP connections until standard input closes (used by the
    /// main job's idle-memory measurement).
    #[command(hide = true)]
    Hold {
        #[arg(long)]
        tcp: std::net::SocketAddr,
        #[arg(long, default_value_t = 10_000)]
        count: usize,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                // The main job opens and closes thousands of sessions:
                // one log line each would drown its report.
                let level = if cli_is_main_job() { "warn" } else { "info" };
                tracing_subscriber::EnvFilter::new(level)
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let code = match cli.cmd {
        Some(Cmd::Serve {
            tcp,
            unix,
            zmtp,
            strategy,
        }) => serve(tcp, unix, zmtp.specs(), strategy),
        Some(Cmd::Load(args)) => match server_demo::load::run_load(args) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("load: {e}");
                1
            }
        },
        Some(Cmd::Hold { tcp, count }) => match server_demo::main_job::hold_connections(tcp, count)
        {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("hold: {e}");
                1
            }
        },
        Some(Cmd::Soak(args)) => server_demo::soak::main(&args),
        None => server_demo::main_job::main_job(cli.json.as_deref()),
    };
    std::process::exit(code);
}

fn cli_is_main_job() -> bool {
    std::env::args()
        .nth(1)
        .is_none_or(|a| a.starts_with('-') && a != "--help" && a != "-h")
}

fn serve(
    tcp: Option<std::net::SocketAddr>,
    unix: Option<PathBuf>,
    zmtp: Vec<EndpointSpec>,
    strategy: StrategyArgs,
) -> i32 {
    if tcp.is_none() && unix.is_none() && zmtp.is_empty() {
        eprintln!("serve: give --tcp ADDR, --unix PATH and/or --zmtp-* ENDPOINT");
        return 2;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("cannot install signal handler: {e}");
            return 1;
        }
    }
    let server = match Server::start_with_zmtp(Listen { tcp, unix }, &zmtp, strategy.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return 1;
        }
    };
    if let Some(a) = server.tcp_addr() {
        println!("listening tcp {a}");
    }
    if let Some(p) = server.unix_path() {
        println!("listening unix {}", p.display());
    }
    for (kind, addr) in server.zmtp_endpoints() {
        println!("listening {} {addr}", kind.label());
    }
    tracing::info!(
        allocator = %allocators::active(),
        strategy = %strategy.label(),
        "server started"
    );
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Where the memory is before the sessions close (what they held at the
    // IO threads' last sweep, the pool, the resident set).
    tracing::info!("{}", server.memory_report());
    let (leaks, zmtp_stats) = server.shutdown_with_stats();
    for r in zmtp_stats {
        tracing::info!("{r}");
    }
    tracing::info!(%leaks, "server stopped");
    if leaks.is_clean() { 0 } else { 1 }
}
