//! The server under test as a child process: `server-demo serve` with ZMTP
//! endpoints on tcp and ipc, or (for validating this harness against a real
//! peer) any program with the same command line named by the
//! `ZMTP_INTEROP_SERVER` environment variable, such as the libzmq reference
//! server `zmq-ref` of the `benches` crate.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::{STEP_TIMEOUT, Transport};

/// Largest message part the server accepts in these tests (1 MiB bodies fit).
pub const MAX_FRAME: usize = 2 << 20;

/// One endpoint kind of the command line.
pub use server_demo::zmtp::EndpointKind as Kind;

/// A running server with one endpoint of each kind on each transport.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    endpoints: Vec<(Kind, Transport, String)>,
    log: Arc<Mutex<Vec<String>>>,
    dir: PathBuf,
    reference: bool,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

impl Server {
    /// Starts the server and waits for its `listening` lines.
    pub fn start() -> Server {
        let dir = std::env::temp_dir().join(format!(
            "zmtp-interop-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (program, reference) = match std::env::var_os("ZMTP_INTEROP_SERVER") {
            Some(p) => (PathBuf::from(p), true),
            None => (PathBuf::from(env!("CARGO_BIN_EXE_server-demo")), false),
        };
        let mut cmd = Command::new(&program);
        if !reference {
            cmd.arg("serve");
        }
        let mut wanted = Vec::new();
        for kind in Kind::ALL {
            for (t, ep) in [
                (Transport::Tcp, "tcp://127.0.0.1:0".to_string()),
                (
                    Transport::Ipc,
                    format!(
                        "ipc://{}",
                        dir.join(format!("{}.sock", kind.label())).display()
                    ),
                ),
            ] {
                cmd.arg(format!("--{}", kind.label())).arg(ep);
                wanted.push((kind, t));
            }
        }
        cmd.arg("--max-frame").arg(MAX_FRAME.to_string());
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log2.lock().unwrap().push(line);
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child: Some(child),
            endpoints: Vec::new(),
            log,
            dir,
            reference,
        };
        let deadline = Instant::now() + STEP_TIMEOUT;
        while server.endpoints.len() < wanted.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(e) => panic!(
                    "{} printed {} of {} listening lines ({e}); its log:\n{}",
                    program.display(),
                    server.endpoints.len(),
                    wanted.len(),
                    server.log_text()
                ),
            };
            let Some((kind, ep)) = Kind::parse_listening(&line) else {
                continue;
            };
            let t = if ep.starts_with("tcp://") {
                Transport::Tcp
            } else if ep.starts_with("ipc://") {
                Transport::Ipc
            } else {
                panic!("unexpected endpoint in {line:?}")
            };
            server.endpoints.push((kind, t, ep.to_string()));
        }
        server
    }

    /// Whether the server is the libzmq reference (harness validation).
    pub fn is_reference(&self) -> bool {
        self.reference
    }

    /// The endpoint of `kind` on transport `t`, as the server printed it.
    pub fn endpoint(&self, kind: Kind, t: Transport) -> String {
        self.endpoints
            .iter()
            .find(|(k, tt, _)| *k == kind && *tt == t)
            .map(|e| e.2.clone())
            .unwrap_or_else(|| panic!("no {kind:?} endpoint over {t:?}"))
    }

    /// The server's standard error so far (its log lines).
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn signal_and_wait(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(s)) => return Some(s),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
            }
        }
    }

    /// Stops the server with SIGTERM and asserts that it exits with status 0
    /// (`server-demo` exits non-zero when its pool reports a leak).
    pub fn stop_clean(mut self) {
        let status = self.signal_and_wait();
        let log = self.log_text();
        match status {
            Some(s) if s.success() => {}
            Some(s) => panic!("server exited with {s} after SIGTERM; its log:\n{log}"),
            None => panic!("server did not exit after SIGTERM; its log:\n{log}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal_and_wait();
            if std::thread::panicking() {
                eprintln!("---- server log ----\n{}", self.log_text());
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
