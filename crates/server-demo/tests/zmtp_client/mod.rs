//! A small blocking ZMTP 3.1 client for the tests (NULL mechanism), written
//! from the spec, independent of the server's own encoder.

#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use server_demo::config::{Listen, StrategyArgs};
use server_demo::server::Server;
use server_demo::zmtp::{EndpointKind, EndpointSpec};

pub const MORE: u8 = 1;
pub const LONG: u8 = 2;
pub const COMMAND: u8 = 4;

/// A greeting: version `major.minor`, `mechanism`, as-server 0.
pub fn greeting(major: u8, minor: u8, mechanism: &str) -> [u8; 64] {
    let mut g = [0u8; 64];
    g[0] = 0xFF;
    g[9] = 0x7F;
    g[10] = major;
    g[11] = minor;
    g[12..12 + mechanism.len()].copy_from_slice(mechanism.as_bytes());
    g
}

/// A READY command body.
pub fn ready(socket_type: &str, identity: Option<&[u8]>) -> Vec<u8> {
    let mut b = vec![5];
    b.extend_from_slice(b"READY");
    let mut prop = |n: &str, v: &[u8]| {
        b.push(n.len() as u8);
        b.extend_from_slice(n.as_bytes());
        b.extend_from_slice(&(v.len() as u32).to_be_bytes());
        b.extend_from_slice(v);
    };
    prop("Socket-Type", socket_type.as_bytes());
    if let Some(id) = identity {
        prop("Identity", id);
    }
    b
}

/// A frame: flags, 1- or 8-byte size, body.
pub fn frame(flags: u8, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(body.len() + 9);
    if body.len() <= 255 {
        f.push(flags);
        f.push(body.len() as u8);
    } else {
        f.push(flags | LONG);
        f.extend_from_slice(&(body.len() as u64).to_be_bytes());
    }
    f.extend_from_slice(body);
    f
}

/// A command body: name and data.
pub fn command(name: &str, data: &[u8]) -> Vec<u8> {
    let mut b = vec![name.len() as u8];
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(data);
    b
}

/// Any byte stream the client can talk over.
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// A frame read from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub flags: u8,
    pub body: Vec<u8>,
}

impl Frame {
    pub fn is_command(&self) -> bool {
        self.flags & COMMAND != 0
    }
    pub fn more(&self) -> bool {
        self.flags & MORE != 0
    }
    /// The command's name, if a command.
    pub fn command_name(&self) -> Option<&[u8]> {
        let n = *self.body.first()? as usize;
        self.is_command().then(|| &self.body[1..1 + n])
    }
}

pub struct Client {
    pub s: Box<dyn Stream>,
    /// Commands read while waiting for messages (PONG...).
    pub commands: Vec<Frame>,
    /// The server's READY body.
    pub server_ready: Vec<u8>,
}

impl Client {
    pub fn new(s: impl Stream + 'static) -> Client {
        Client {
            s: Box::new(s),
            commands: Vec::new(),
            server_ready: Vec::new(),
        }
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
        self.s.write_all(bytes).unwrap();
    }

    /// Sends a greeting and reads the server's; panics unless it is
    /// ZMTP 3.1 NULL.
    pub fn greet(&mut self, minor: u8) {
        self.send(&greeting(3, minor, "NULL"));
        let mut g = [0u8; 64];
        self.s.read_exact(&mut g).unwrap();
        assert_eq!((g[0], g[9], g[10], g[11]), (0xFF, 0x7F, 3, 1));
        assert_eq!(&g[12..16], b"NULL");
    }

    /// The whole NULL handshake as `socket_type` (ZMTP 3.1).
    pub fn handshake(&mut self, socket_type: &str) {
        self.handshake_v(socket_type, 1);
    }

    /// The whole NULL handshake as `socket_type`, announcing 3.`minor`.
    pub fn handshake_v(&mut self, socket_type: &str, minor: u8) {
        self.greet(minor);
        self.send(&frame(COMMAND, &ready(socket_type, None)));
        let f = self.read_frame().unwrap().expect("READY from the server");
        assert_eq!(f.command_name(), Some(&b"READY"[..]), "{f:?}");
        self.server_ready = f.body;
    }

    pub fn send_message(&mut self, parts: &[&[u8]]) {
        let mut wire = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let more = if i + 1 < parts.len() { MORE } else { 0 };
            wire.extend_from_slice(&frame(more, p));
        }
        self.send(&wire);
    }

    pub fn send_command(&mut self, name: &str, data: &[u8]) {
        self.send(&frame(COMMAND, &command(name, data)));
    }

    /// The next frame, `None` at end of stream.
    pub fn read_frame(&mut self) -> io::Result<Option<Frame>> {
        let mut h = [0u8; 2];
        match self.s.read(&mut h[..1])? {
            0 => return Ok(None),
            _ => self.s.read_exact(&mut h[1..])?,
        }
        let flags = h[0];
        let len = if flags & LONG != 0 {
            let mut b = [0u8; 8];
            b[0] = h[1];
            self.s.read_exact(&mut b[1..])?;
            u64::from_be_bytes(b) as usize
        } else {
            h[1] as usize
        };
        let mut body = vec![0u8; len];
        self.s.read_exact(&mut body)?;
        Ok(Some(Frame { flags, body }))
    }

    /// The next whole message (commands in between are kept in
    /// `commands`).
    pub fn read_message(&mut self) -> Vec<Vec<u8>> {
        let mut parts = Vec::new();
        loop {
            let f = self
                .read_frame()
                .unwrap()
                .expect("a message, not end of stream");
            if f.is_command() {
                self.commands.push(f);
                continue;
            }
            let more = f.more();
            parts.push(f.body);
            if !more {
                return parts;
            }
        }
    }

    /// Reads until end of stream; returns the ERROR reason if one came.
    pub fn error_then_close(&mut self) -> Option<String> {
        let mut reason = None;
        while let Ok(Some(f)) = self.read_frame() {
            if f.command_name() == Some(b"ERROR") {
                let n = f.body[6] as usize;
                reason = Some(String::from_utf8_lossy(&f.body[7..7 + n]).into_owned());
            }
        }
        reason
    }

    /// Reads raw bytes until end of stream.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        let _ = self.s.read_to_end(&mut v);
        v
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

    /// Shuts down and checks that nothing leaked.
    pub fn finish(mut self) -> Vec<server_demo::zmtp::EndpointReport> {
        let (leaks, stats) = self.server.take().unwrap().shutdown_with_stats();
        assert!(leaks.is_clean(), "{leaks}");
        stats
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
