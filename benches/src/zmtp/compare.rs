//! The side-by-side run: the same libzmq load against the libzmq reference
//! server and `server-demo`, both running as child processes for the whole
//! run (so each one's CPU time is its own), row by row.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::endpoint::{EndpointKind, parse_listening};
use super::load::{self, Measured};
use crate::report::e2e::process_cpu_ns;

/// The two servers compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Impl {
    /// The reference server on libzmq itself (`zmq-ref`).
    Libzmq,
    /// `server-demo serve` with ZMTP endpoints.
    Demo,
}

impl Impl {
    /// Both, the baseline first.
    pub const ALL: [Impl; 2] = [Impl::Libzmq, Impl::Demo];

    /// Name in tables and plots.
    pub fn name(self) -> &'static str {
        match self {
            Impl::Libzmq => "libzmq",
            Impl::Demo => "server-demo",
        }
    }
}

/// The largest body of the benchmark plus headroom: every server's
/// `--max-frame`.
pub const MAX_FRAME: usize = 1 << 20;

/// One server of the comparison, as a child process.
#[derive(Debug)]
pub struct ZmtpServer {
    /// Which server.
    pub which: Impl,
    child: Child,
    endpoints: Vec<(EndpointKind, String)>,
    ipc_dir: PathBuf,
}

impl ZmtpServer {
    /// Starts `program args…` with a ROUTER on tcp and ipc and a broker on
    /// tcp, and waits for its four `listening` lines.
    pub fn spawn(
        which: Impl,
        program: &Path,
        lead: &[&str],
        extra: &[&str],
    ) -> Result<Self, String> {
        let ipc_dir = std::env::temp_dir().join(format!(
            "zmtp-bench-{}-{}",
            std::process::id(),
            which.name()
        ));
        std::fs::create_dir_all(&ipc_dir).map_err(|e| e.to_string())?;
        let ipc = format!("ipc://{}", ipc_dir.join("router.sock").display());
        let tcp = "tcp://127.0.0.1:0";
        let mut child = Command::new(program)
            .args(lead)
            .args(["--zmtp-router", tcp, "--zmtp-router", &ipc])
            .args(["--zmtp-xsub", tcp, "--zmtp-xpub", tcp])
            .args(["--max-frame", &MAX_FRAME.to_string()])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("{}: {e}", program.display()))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(ep) = parse_listening(&line)
                    && tx.send(ep).is_err()
                {
                    break;
                }
            }
        });
        let mut server = ZmtpServer {
            which,
            child,
            endpoints: Vec::new(),
            ipc_dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.endpoints.len() < 4 {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(ep) => server.endpoints.push(ep),
                Err(_) => {
                    return Err(format!(
                        "{} of 4 listening lines (does it speak ZMTP?)",
                        server.endpoints.len()
                    ));
                }
            }
        }
        Ok(server)
    }

    fn endpoint(&self, kind: EndpointKind, ipc: bool) -> &str {
        self.endpoints
            .iter()
            .find(|(k, ep)| *k == kind && ep.starts_with("ipc://") == ipc)
            .map(|(_, ep)| ep.as_str())
            .expect("spawn waited for every endpoint")
    }

    /// CPU nanoseconds used so far by the server's threads.
    pub fn cpu_ns(&self) -> u64 {
        process_cpu_ns(self.child.id())
    }

    /// SIGTERM (and closes standard input); kills it after 5 s.
    pub fn stop(mut self) {
        drop(self.child.stdin.take());
        // SAFETY: kill(2) on the pid of our own unreaped child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_dir_all(&self.ipc_dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.ipc_dir);
    }
}

/// One row of the ZMTP benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZScenario {
    /// DEALER echo, window of requests in flight.
    Throughput {
        /// Body size.
        size: usize,
        /// Over ipc instead of tcp.
        ipc: bool,
    },
    /// One request at a time over tcp.
    Latency {
        /// Body size.
        size: usize,
    },
    /// One PUB through the broker (tcp) to N SUBs.
    FanOut {
        /// Subscribers.
        subscribers: usize,
        /// Body size.
        size: usize,
    },
}

impl ZScenario {
    /// Body size.
    pub fn size(&self) -> usize {
        match *self {
            ZScenario::Throughput { size, .. }
            | ZScenario::Latency { size }
            | ZScenario::FanOut { size, .. } => size,
        }
    }

    /// Row label.
    pub fn label(&self) -> String {
        let sz = server_demo::load::fmt_size(self.size());
        match *self {
            ZScenario::Throughput { ipc, .. } => {
                format!("echo {sz} {}", if ipc { "ipc" } else { "tcp" })
            }
            ZScenario::Latency { .. } => format!("ping-pong {sz} tcp"),
            ZScenario::FanOut { subscribers, .. } => format!("fan-out {sz} x{subscribers} tcp"),
        }
    }
}

/// The rows of issue 15's item 5.
pub fn matrix() -> Vec<ZScenario> {
    let mut m = Vec::new();
    for ipc in [false, true] {
        for size in [64, 256, 1 << 10, 64 << 10, 128 << 10, 256 << 10] {
            m.push(ZScenario::Throughput { size, ipc });
        }
    }
    for size in [64, 4 << 10, 64 << 10, 256 << 10] {
        m.push(ZScenario::Latency { size });
    }
    for subscribers in [16, 256] {
        for size in [64, 1 << 10] {
            m.push(ZScenario::FanOut { subscribers, size });
        }
    }
    m
}

/// Requests in flight per DEALER in the throughput rows.
pub const WINDOW: usize = 64;

/// One server's figures for one row.
#[derive(Debug, Clone, Copy)]
pub struct ZSample {
    /// What the load generator measured.
    pub load: Measured,
    /// Server CPU nanoseconds per message (echo, round trip or delivery).
    pub cpu_ns_per_msg: f64,
}

/// The whole run.
#[derive(Debug)]
pub struct ZResults {
    /// Rows, in [`matrix`] order, with each server's sample or error.
    pub rows: Vec<(ZScenario, [Result<ZSample, String>; 2])>,
    /// Seconds of load per cell.
    pub seconds: f64,
    /// libzmq version of the reference and the load generator.
    pub libzmq: String,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

fn run_one(server: &ZmtpServer, sc: &ZScenario, run: Duration) -> Result<ZSample, String> {
    let cpu0 = server.cpu_ns();
    let load = match *sc {
        ZScenario::Throughput { size, ipc } => load::throughput(
            server.endpoint(EndpointKind::Router, ipc),
            size,
            1,
            WINDOW,
            run,
        )?,
        ZScenario::Latency { size } => {
            load::latency(server.endpoint(EndpointKind::Router, false), size, run)?
        }
        ZScenario::FanOut { subscribers, size } => load::fan_out(
            server.endpoint(EndpointKind::Xsub, false),
            server.endpoint(EndpointKind::Xpub, false),
            subscribers,
            size,
            64,
            run,
        )?,
    };
    let cpu = server.cpu_ns().saturating_sub(cpu0);
    Ok(ZSample {
        load,
        cpu_ns_per_msg: cpu as f64 / load.messages.max(1) as f64,
    })
}

/// How to start each server: `(program, leading args, extra args)`.
pub type Launch = (PathBuf, Vec<String>, Vec<String>);

/// Runs every row against both servers, `seconds` of load per cell.
/// A server that cannot start (or a failed cell) is reported, not fatal.
pub fn run(libzmq: &Launch, demo: &Launch, seconds: f64) -> ZResults {
    let t0 = Instant::now();
    let run = Duration::from_secs_f64(seconds);
    let spawn = |which, l: &Launch| {
        let lead: Vec<&str> = l.1.iter().map(String::as_str).collect();
        let extra: Vec<&str> = l.2.iter().map(String::as_str).collect();
        ZmtpServer::spawn(which, &l.0, &lead, &extra)
    };
    let servers = [spawn(Impl::Libzmq, libzmq), spawn(Impl::Demo, demo)];
    let mut rows = Vec::new();
    for sc in matrix() {
        let cells = [0, 1].map(|i| match &servers[i] {
            Ok(s) => run_one(s, &sc, run),
            Err(e) => Err(e.clone()),
        });
        eprintln!(
            "zmtp {:<22} {}",
            sc.label(),
            cells
                .iter()
                .zip(Impl::ALL)
                .map(|(c, w)| match c {
                    Ok(s) => format!("{}: {:.0}/s", w.name(), s.load.per_sec()),
                    Err(e) => format!("{}: {e}", w.name()),
                })
                .collect::<Vec<_>>()
                .join("  ")
        );
        rows.push((sc, cells));
    }
    for s in servers.into_iter().flatten() {
        s.stop();
    }
    let (a, b, c) = zmq::version();
    ZResults {
        rows,
        seconds,
        libzmq: format!("{a}.{b}.{c}"),
        elapsed: t0.elapsed(),
    }
}

/// How to start the libzmq reference: this binary's hidden
/// `serve-zmq-ref` subcommand (so one build runs everything).
pub fn libzmq_launch(this_exe: &Path) -> Launch {
    (
        this_exe.to_path_buf(),
        vec!["serve-zmq-ref".into()],
        Vec::new(),
    )
}

/// How to start `server-demo serve`: the binary next to `this_exe` (same
/// target directory and profile), built first with `$CARGO build` when
/// this runs under cargo. The send bound is the end-to-end matrix's, so a
/// window of 256 KiB echoes fits.
pub fn demo_launch(this_exe: &Path) -> Result<Launch, String> {
    let dir = this_exe.parent().ok_or("no executable directory")?;
    if let Ok(cargo) = std::env::var("CARGO") {
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "server-demo", "--bin", "server-demo"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd
            .current_dir(crate::report::workspace_root())
            .status()
            .map_err(|e| format!("cargo build -p server-demo: {e}"))?;
        if !status.success() {
            return Err(format!("cargo build -p server-demo: {status}"));
        }
    }
    let exe = dir.join("server-demo");
    if !exe.exists() {
        return Err(format!(
            "{} not found: cargo build --release -p server-demo",
            exe.display()
        ));
    }
    Ok((
        exe,
        vec!["serve".into()],
        vec![
            "--send-queue-bytes".into(),
            crate::report::e2e::SEND_QUEUE_BYTES.to_string(),
        ],
    ))
}
