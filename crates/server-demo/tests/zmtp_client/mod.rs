//! The ZMTP tests' client: the crate's own blocking client
//! ([`server_demo::zmtp::client`], written from the spec, independent of
//! the server's encoder) behind the panicking calls the tests want.

#![allow(dead_code, unused_imports)] // each test binary uses a different part

use std::io;
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use server_demo::config::{Listen, StrategyArgs};
use server_demo::server::Server;
use server_demo::zmtp::client as zc;
use server_demo::zmtp::{EndpointKind, EndpointReport, EndpointSpec};

pub use zc::{COMMAND, Frame, LONG, MORE, command, frame, greeting, ready};

/// Any byte stream the client can talk over.
pub trait Stream: io::Read + io::Write + Send {}
impl<T: io::Read + io::Write + Send> Stream for T {}

/// The crate's client over any stream; every call panics on an IO error
/// (a test failure), except [`Client::read_frame`].
pub struct Client(pub zc::Client<Box<dyn Stream>>);

impl std::ops::Deref for Client {
    type Target = zc::Client<Box<dyn Stream>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Client {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Client {
    pub fn new(s: impl Stream + 'static) -> Client {
        Client(zc::Client::new(Box::new(s)))
    }

    pub fn tcp(addr: &str) -> Client {
        let addr = addr.strip_prefix("tcp://").unwrap_or(addr);
        let s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Client::new(s)
    }

    pub fn ipc(addr: &str) -> Client {
        let s = UnixStream::connect(addr.strip_prefix("ipc://").unwrap()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Client::new(s)
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.0.send(bytes).unwrap();
    }

    /// Sends a greeting and reads the server's; panics unless it is
    /// ZMTP 3.1 NULL.
    pub fn greet(&mut self, minor: u8) {
        let g = self.0.greet(minor).unwrap();
        assert_eq!((g[10], g[11]), (3, 1));
    }

    /// The whole NULL handshake as `socket_type` (ZMTP 3.1).
    pub fn handshake(&mut self, socket_type: &str) {
        self.handshake_v(socket_type, 1);
    }

    /// The whole NULL handshake as `socket_type`, announcing 3.`minor`.
    pub fn handshake_v(&mut self, socket_type: &str, minor: u8) {
        self.0.handshake_v(socket_type, None, minor).unwrap();
        assert!(self.0.server_ready.starts_with(b"\x05READY"));
    }

    pub fn send_message(&mut self, parts: &[&[u8]]) {
        self.0.send_message(parts).unwrap();
    }

    pub fn send_command(&mut self, name: &str, data: &[u8]) {
        self.0.send_command(name, data).unwrap();
    }

    /// Reads exactly `buf.len()` raw bytes.
    pub fn read_exact(&mut self, buf: &mut [u8]) {
        self.0.read_exact(buf).unwrap();
    }

    /// The next whole message (commands in between are kept in
    /// `commands`).
    pub fn read_message(&mut self) -> Vec<Vec<u8>> {
        self.0
            .read_message()
            .unwrap()
            .expect("a message, not end of stream")
    }
}

/// A server with one endpoint of each kind on loopback TCP (plus what
/// `extra` adds), and the addresses by kind.
pub struct TestServer {
    pub server: Option<Server>,
    pub eps: Vec<(EndpointKind, String)>,
}

impl TestServer {
    pub fn start(cfg: StrategyArgs) -> TestServer {
        let specs: Vec<EndpointSpec> = EndpointKind::ALL
            .into_iter()
            .map(|kind| EndpointSpec {
                kind,
                addr: "tcp://127.0.0.1:0".parse().unwrap(),
            })
            .collect();
        TestServer::with_specs(&specs, cfg)
    }

    pub fn with_specs(specs: &[EndpointSpec], cfg: StrategyArgs) -> TestServer {
        let server = Server::start_with_zmtp(Listen::default(), specs, cfg).unwrap();
        let eps = server.zmtp_endpoints();
        TestServer {
            server: Some(server),
            eps,
        }
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    pub fn addr(&self, kind: EndpointKind) -> &str {
        &self.eps.iter().find(|(k, _)| *k == kind).unwrap().1
    }

    pub fn connect(&self, kind: EndpointKind) -> Client {
        Client::tcp(self.addr(kind))
    }

    /// A DEALER peer of the ROUTER endpoint, past the handshake.
    pub fn dealer(&self) -> Client {
        let mut c = self.connect(EndpointKind::Router);
        c.handshake("DEALER");
        c
    }

    /// Shuts down and checks that nothing leaked.
    pub fn finish(mut self) -> Vec<EndpointReport> {
        let (leaks, stats) = self.server.take().unwrap().shutdown_with_stats();
        assert!(leaks.is_clean(), "{leaks}");
        stats
    }

    /// [`finish`](Self::finish), then the report of the first endpoint of
    /// `kind`.
    pub fn finish_report(self, kind: EndpointKind) -> EndpointReport {
        self.finish().into_iter().find(|r| r.kind == kind).unwrap()
    }
}

/// Waits (bounded) until `f` holds.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
