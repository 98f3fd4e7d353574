//! `server-demo`: with no arguments, the main job (server + load generator
//! on loopback, report table); `serve` runs the server; `load` drives any
//! server that speaks the framing.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand};
use server_demo::config::{Listen, StrategyArgs};
use server_demo::server::Server;

allocators::global_allocator!();

#[derive(Parser, Debug)]
#[command(version, about = "netbuf demo server and load generator")]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
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
        strategy: StrategyArgs,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let code = match cli.cmd {
        Some(Cmd::Serve {
            tcp,
            unix,
            strategy,
        }) => serve(tcp, unix, strategy),
        None => {
            eprintln!("no subcommand: see --help");
            2
        }
    };
    std::process::exit(code);
}

fn serve(tcp: Option<std::net::SocketAddr>, unix: Option<PathBuf>, strategy: StrategyArgs) -> i32 {
    if tcp.is_none() && unix.is_none() {
        eprintln!("serve: give --tcp ADDR and/or --unix PATH");
        return 2;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("cannot install signal handler: {e}");
            return 1;
        }
    }
    let server = match Server::start(Listen { tcp, unix }, strategy.clone()) {
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
    tracing::info!(
        allocator = %allocators::active(),
        strategy = %strategy.label(),
        "server started"
    );
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let leaks = server.shutdown();
    tracing::info!(%leaks, "server stopped");
    if leaks.is_clean() { 0 } else { 1 }
}
