//! The reference server, built on libzmq itself: a ROUTER socket that sends
//! every message back to its sender, a PAIR socket that echoes, and
//! `zmq_proxy(XSUB, XPUB)` as the broker. Same command line and
//! `listening` lines as `server-demo serve`, so the ZMTP load generator and
//! the interop tests run against either.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::endpoint::{EndpointKind, libzmq_bind_address};

/// The reference server's command line (the ZMTP flags of `server-demo serve`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RefArgs {
    /// ROUTER endpoint that echoes each message to its sender (repeatable).
    #[arg(long = "zmtp-router")]
    pub router: Vec<String>,
    /// PAIR endpoint that echoes (repeatable).
    #[arg(long = "zmtp-pair")]
    pub pair: Vec<String>,
    /// XSUB endpoint of the broker, where publishers connect (repeatable).
    #[arg(long = "zmtp-xsub")]
    pub xsub: Vec<String>,
    /// XPUB endpoint of the broker, where subscribers connect (repeatable).
    #[arg(long = "zmtp-xpub")]
    pub xpub: Vec<String>,
    /// Largest message part accepted (libzmq's `ZMQ_MAXMSGSIZE`); a peer
    /// that sends a larger one is disconnected.
    #[arg(long = "max-frame", default_value_t = 1 << 20)]
    pub max_frame: usize,
}

/// A running reference server: its threads and the endpoints it bound.
pub struct Reference {
    endpoints: Vec<(EndpointKind, String)>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    proxy_control: Option<zmq::Socket>,
    _ctx: zmq::Context,
}

fn bind_all(
    ctx: &zmq::Context,
    ty: zmq::SocketType,
    kind: EndpointKind,
    eps: &[String],
    max_frame: usize,
    out: &mut Vec<(EndpointKind, String)>,
) -> Result<Option<zmq::Socket>, String> {
    if eps.is_empty() {
        return Ok(None);
    }
    let s = ctx.socket(ty).map_err(|e| format!("{kind} socket: {e}"))?;
    let setup = || -> zmq::Result<()> {
        s.set_linger(0)?;
        s.set_maxmsgsize(max_frame as i64)?;
        if ty == zmq::ROUTER {
            // Never drop an echo silently: a full peer blocks the send
            // instead, an unknown one fails it.
            s.set_router_mandatory(true)?;
        }
        if ty == zmq::ROUTER || ty == zmq::PAIR {
            // Receives wake up every 100 ms to look at the stop flag.
            s.set_rcvtimeo(100)?;
        }
        Ok(())
    };
    setup().map_err(|e| format!("{kind} options: {e}"))?;
    for ep in eps {
        s.bind(&libzmq_bind_address(ep))
            .map_err(|e| format!("{kind} bind {ep}: {e}"))?;
        let bound = s
            .get_last_endpoint()
            .map_err(|e| format!("{kind} endpoint: {e}"))?
            .map_err(|_| format!("{kind}: endpoint not UTF-8"))?;
        out.push((kind, bound));
    }
    Ok(Some(s))
}

/// Receives whole messages from `s` and sends each back unchanged until
/// `stop`, part by part as `zmq::Message`s (no copy of the bodies, as a
/// libzmq application would echo): a ROUTER's first part is the sender's
/// routing id, so the echo goes back to the sender with its envelope.
/// Sends block while the peer is full (nothing is dropped); a peer that
/// has gone is skipped (`ROUTER_MANDATORY`).
fn echo_loop(s: zmq::Socket, stop: Arc<AtomicBool>) {
    let mut parts: Vec<zmq::Message> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let mut m = zmq::Message::new();
        match s.recv(&mut m, 0) {
            Ok(()) => {}
            Err(zmq::Error::EAGAIN) => continue, // RCVTIMEO: look at `stop`
            Err(_) => return,
        }
        let more = m.get_more();
        parts.push(m);
        if more {
            continue;
        }
        let n = parts.len();
        for (i, p) in parts.drain(..).enumerate() {
            let flags = if i + 1 < n { zmq::SNDMORE } else { 0 };
            if s.send(p, flags).is_err() {
                break; // the rest of this message is dropped with the drain
            }
        }
    }
}

impl std::fmt::Debug for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reference")
            .field("endpoints", &self.endpoints)
            .field("threads", &self.threads.len())
            .finish_non_exhaustive()
    }
}

impl Reference {
    /// Binds every endpoint of `args` and starts serving.
    pub fn start(args: &RefArgs) -> Result<Reference, String> {
        if args.xsub.is_empty() != args.xpub.is_empty() {
            return Err("the broker needs both --zmtp-xsub and --zmtp-xpub".into());
        }
        let ctx = zmq::Context::new();
        let mut endpoints = Vec::new();
        let m = args.max_frame;
        let router = bind_all(
            &ctx,
            zmq::ROUTER,
            EndpointKind::Router,
            &args.router,
            m,
            &mut endpoints,
        )?;
        let pair = bind_all(
            &ctx,
            zmq::PAIR,
            EndpointKind::Pair,
            &args.pair,
            m,
            &mut endpoints,
        )?;
        let xsub = bind_all(
            &ctx,
            zmq::XSUB,
            EndpointKind::Xsub,
            &args.xsub,
            m,
            &mut endpoints,
        )?;
        let xpub = bind_all(
            &ctx,
            zmq::XPUB,
            EndpointKind::Xpub,
            &args.xpub,
            m,
            &mut endpoints,
        )?;
        if endpoints.is_empty() {
            return Err("give at least one --zmtp-* endpoint".into());
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (name, s) in [("zmq-ref-router", router), ("zmq-ref-pair", pair)] {
            if let Some(s) = s {
                let stop = stop.clone();
                threads.push(
                    std::thread::Builder::new()
                        .name(name.into())
                        .spawn(move || echo_loop(s, stop))
                        .map_err(|e| e.to_string())?,
                );
            }
        }
        let mut proxy_control = None;
        if let (Some(mut xsub), Some(mut xpub)) = (xsub, xpub) {
            let control_ep = "inproc://zmq-ref-proxy-control";
            let ours = ctx.socket(zmq::PAIR).map_err(|e| e.to_string())?;
            ours.bind(control_ep).map_err(|e| e.to_string())?;
            let mut theirs = ctx.socket(zmq::PAIR).map_err(|e| e.to_string())?;
            theirs.connect(control_ep).map_err(|e| e.to_string())?;
            threads.push(
                std::thread::Builder::new()
                    .name("zmq-ref-proxy".into())
                    .spawn(move || {
                        // Subscriptions flow XPUB -> XSUB, messages XSUB -> XPUB;
                        // a subscriber at its high-water mark misses messages,
                        // the publisher and the others go on.
                        let _ = zmq::proxy_steerable(&mut xsub, &mut xpub, &mut theirs);
                    })
                    .map_err(|e| e.to_string())?,
            );
            proxy_control = Some(ours);
        }
        Ok(Reference {
            endpoints,
            stop,
            threads,
            proxy_control,
            _ctx: ctx,
        })
    }

    /// The endpoints bound, in `listening` order (tcp ports resolved).
    pub fn endpoints(&self) -> &[(EndpointKind, String)] {
        &self.endpoints
    }

    /// Stops the threads. An echo thread blocked sending to a peer that
    /// does not read is left behind (it ends with the process).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(c) = self.proxy_control.take() {
            let _ = c.send("TERMINATE", 0);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        for t in self.threads.drain(..) {
            while !t.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// `zmq-ref` / `bench-report serve-zmq-ref`: serves until SIGINT, SIGTERM
/// or (with `until_stdin_closes`) the end of standard input; prints one
/// `listening zmtp-KIND EP` line per endpoint. Returns the exit code.
pub fn main_with(args: &RefArgs, until_stdin_closes: bool) -> i32 {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("zmq-ref: signal handler: {e}");
            return 1;
        }
    }
    let server = match Reference::start(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("zmq-ref: {e}");
            return 1;
        }
    };
    for (kind, ep) in server.endpoints() {
        println!("listening {kind} {ep}");
    }
    let (major, minor, patch) = zmq::version();
    eprintln!("zmq-ref: libzmq {major}.{minor}.{patch} serving");
    if until_stdin_closes {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            stop.store(true, Ordering::Relaxed);
        });
    }
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    server.stop();
    0
}
