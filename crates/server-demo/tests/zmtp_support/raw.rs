//! A raw ZMTP 3 client over a TCP or Unix socket, written from RFC 23/37,
//! for the inputs a libzmq peer never sends (and for one well-formed
//! exchange that checks this encoder against the server).

use std::io::{ErrorKind, Read, Write};

use server_demo::zmtp::client::{self as zc, Socket};

use super::STEP_TIMEOUT;

pub use zc::{COMMAND, LONG, MORE, frame};

/// A byte stream to one endpoint (`tcp://` or `ipc://`): the crate's
/// client socket, with panicking reads for the tests.
#[derive(Debug)]
pub struct Conn(Socket);

impl Conn {
    /// Connects to `ep` with the step timeout on reads and writes.
    pub fn open(ep: &str) -> Conn {
        let s = zc::connect(ep).unwrap_or_else(|e| panic!("connect {ep}: {e}"));
        s.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(STEP_TIMEOUT)).unwrap();
        Conn(s)
    }

    /// Writes all of `b`; a write error (the server already closed) is
    /// returned, not a panic, since closing is what some tests expect.
    pub fn send(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.0.write_all(b)
    }

    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }

    /// Reads exactly `n` bytes (panics on close or timeout).
    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        let mut at = 0;
        while at < n {
            match self.read(&mut v[at..]) {
                Ok(0) => panic!("closed after {at} of {n} bytes"),
                Ok(k) => at += k,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("read failed after {at} of {n} bytes: {e}"),
            }
        }
        v
    }

    /// Reads until the server closes the connection (end of stream or
    /// reset) and returns what arrived before; panics if it is still open
    /// after the step timeout.
    pub fn expect_closed(&mut self, what: &str) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match self.read(&mut buf) {
                Ok(0) => return got,
                Ok(k) => got.extend_from_slice(&buf[..k]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("{what}: connection still open after {STEP_TIMEOUT:?}")
                }
                Err(_) => return got, // reset: closed too
            }
        }
    }

    /// Reads the server's 64-byte greeting and checks its signature and
    /// major version 3.
    pub fn read_greeting(&mut self) -> Vec<u8> {
        let g = self.read_exact(64);
        assert_eq!(g[0], 0xFF, "greeting signature");
        assert_eq!(g[9], 0x7F, "greeting signature");
        assert_eq!(g[10], 3, "greeting major version");
        g
    }

    /// Reads one frame: `(flags, body)`.
    pub fn read_frame(&mut self) -> (u8, Vec<u8>) {
        let flags = self.read_exact(1)[0];
        let len = if flags & LONG != 0 {
            u64::from_be_bytes(self.read_exact(8).try_into().unwrap()) as usize
        } else {
            self.read_exact(1)[0] as usize
        };
        (flags, self.read_exact(len))
    }

    /// Reads frames until the first command and returns its name.
    pub fn read_command_name(&mut self) -> String {
        let (flags, body) = self.read_frame();
        assert!(
            flags & COMMAND != 0,
            "expected a command, got flags {flags:#04x}"
        );
        let n = body[0] as usize;
        String::from_utf8_lossy(&body[1..1 + n]).into_owned()
    }

    /// Completes a NULL handshake as `socket_type`: sends greeting and
    /// READY, reads the server's greeting and READY.
    pub fn handshake(ep: &str, socket_type: &str) -> Conn {
        let mut c = Conn::open(ep);
        c.send(&greeting(3, 1, "NULL")).unwrap();
        c.send(&ready(socket_type)).unwrap();
        c.read_greeting();
        assert_eq!(c.read_command_name(), "READY");
        c
    }
}

/// A 64-byte ZMTP greeting: signature, version `major.minor`, mechanism
/// name, as-server 0, filler.
pub fn greeting(major: u8, minor: u8, mechanism: &str) -> Vec<u8> {
    zc::greeting(major, minor, mechanism).to_vec()
}

/// A READY command frame with the `Socket-Type` property.
pub fn ready(socket_type: &str) -> Vec<u8> {
    frame(COMMAND, &zc::ready(socket_type, None))
}

/// The names of the command frames in `bytes`, a server's output after
/// its 64-byte greeting (parsing stops at the first incomplete frame).
pub fn command_names(bytes: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let mut at = 64;
    while at + 2 <= bytes.len() {
        let flags = bytes[at];
        let (len, head) = if flags & LONG != 0 {
            match bytes.get(at + 1..at + 9) {
                Some(b) => (u64::from_be_bytes(b.try_into().unwrap()) as usize, 9),
                None => break,
            }
        } else {
            (bytes[at + 1] as usize, 2)
        };
        let Some(body) = bytes.get(at + head..at + head + len) else {
            break;
        };
        if flags & COMMAND != 0 && !body.is_empty() {
            let n = (body[0] as usize).min(body.len() - 1);
            names.push(String::from_utf8_lossy(&body[1..1 + n]).into_owned());
        }
        at += head + len;
    }
    names
}
