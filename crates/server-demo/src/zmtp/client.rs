//! A small blocking ZMTP 3.x client (NULL mechanism) for the main job's
//! load, the soak and the tests: greeting, READY as any socket type
//! (DEALER, SUB, PUB, ...), frames with MORE / LONG, multi-part messages,
//! SUBSCRIBE / CANCEL. Written from the specs (rfc.zeromq.org 23 / 37),
//! independent of the server's own encoder, so a bug in one is not hidden
//! by the same bug in the other.
//!
//! ```no_run
//! use server_demo::zmtp::client::Client;
//!
//! let mut c = Client::connect("tcp://127.0.0.1:5555").unwrap();
//! c.handshake("DEALER", None).unwrap();
//! c.send_message(&[&b"hello"[..], &[7u8; 300][..]]).unwrap();
//! let reply = c.read_message().unwrap().expect("a reply");
//! assert_eq!(reply[0], b"hello");
//! ```

use std::io::{self, BufReader, ErrorKind, Read, Write};
use std::time::Duration;

use super::EndpointAddr;
use crate::load::Target;

/// Frame flag: more parts of the same message follow.
pub const MORE: u8 = 0x01;
/// Frame flag: the size is 8 bytes (big-endian) instead of 1.
pub const LONG: u8 = 0x02;
/// Frame flag: a command frame.
pub const COMMAND: u8 = 0x04;

/// Bodies at or above this size are written straight from the caller's
/// buffer instead of being copied into the batch ([`Outbox`]).
const WRITE_THROUGH: usize = 16 << 10;
/// A batch of small frames is written once it holds this many bytes.
const BATCH: usize = 64 << 10;

/// A 64-byte greeting: signature, version `major.minor`, `mechanism`
/// (NUL-padded to 20 bytes), as-server 0, filler.
pub fn greeting(major: u8, minor: u8, mechanism: &str) -> [u8; 64] {
    let mut g = [0u8; 64];
    g[0] = 0xFF;
    g[9] = 0x7F;
    g[10] = major;
    g[11] = minor;
    let m = mechanism.as_bytes();
    let n = m.len().min(20);
    g[12..12 + n].copy_from_slice(&m[..n]);
    g
}

/// A command body: name length, name, data.
pub fn command(name: &str, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(1 + name.len() + data.len());
    b.push(name.len() as u8);
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(data);
    b
}

/// A READY command body with `Socket-Type` and, when given, `Identity`.
pub fn ready(socket_type: &str, identity: Option<&[u8]>) -> Vec<u8> {
    let mut b = command("READY", &[]);
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

/// Appends a frame header for a `len`-byte body with `flags` (LONG set
/// when the size needs 8 bytes) to `out`.
pub fn put_header(out: &mut Vec<u8>, flags: u8, len: usize) {
    if len <= 255 {
        out.push(flags & !LONG);
        out.push(len as u8);
    } else {
        out.push(flags | LONG);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// One frame: flags, 1- or 8-byte size, body.
pub fn frame(flags: u8, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(body.len() + 9);
    put_header(&mut f, flags, body.len());
    f.extend_from_slice(body);
    f
}

/// Appends a whole message (MORE on every part but the last) to `out`.
pub fn put_message<P: AsRef<[u8]>>(out: &mut Vec<u8>, parts: &[P]) {
    for (i, p) in parts.iter().enumerate() {
        let p = p.as_ref();
        put_header(out, if i + 1 < parts.len() { MORE } else { 0 }, p.len());
        out.extend_from_slice(p);
    }
}

/// The reason of an ERROR command body, if `body` is one.
pub fn error_reason(body: &[u8]) -> Option<String> {
    let rest = body.strip_prefix(b"\x05ERROR")?;
    let (&n, reason) = rest.split_first()?;
    Some(String::from_utf8_lossy(reason.get(..n as usize).unwrap_or(reason)).into_owned())
}

/// A frame read from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The flags byte as received.
    pub flags: u8,
    /// The body.
    pub body: Vec<u8>,
}

impl Frame {
    /// A command frame.
    pub fn is_command(&self) -> bool {
        self.flags & COMMAND != 0
    }
    /// More parts follow.
    pub fn more(&self) -> bool {
        self.flags & MORE != 0
    }
    /// The command's name, if a command.
    pub fn command_name(&self) -> Option<&[u8]> {
        let n = *self.body.first()? as usize;
        if self.is_command() {
            self.body.get(1..1 + n)
        } else {
            None
        }
    }
}

/// A connection to a `tcp://` or `ipc://` endpoint (or an in-process
/// one): the crate's one client stream, the load generator's.
pub type Socket = crate::load::Stream;

/// Connects to `tcp://HOST:PORT` (no Nagle) or `ipc://PATH`, with no time
/// limit of ours (the kernel's).
pub fn connect(ep: &str) -> io::Result<Socket> {
    let target = match ep.parse::<EndpointAddr>() {
        Ok(EndpointAddr::Tcp(a)) => Target::Tcp(a),
        Ok(EndpointAddr::Ipc(p)) => Target::Unix(p),
        Err(e) => return Err(io::Error::new(ErrorKind::InvalidInput, e.to_string())),
    };
    target.connect(Duration::MAX)
}

/// Batches outgoing frames: small ones are coalesced into one write,
/// large bodies go out from the caller's buffer (no copy).
#[derive(Debug, Default)]
pub struct Outbox {
    buf: Vec<u8>,
}

impl Outbox {
    /// An empty batch.
    pub fn new() -> Outbox {
        Outbox::default()
    }

    /// Queues a whole message; writes to `w` when the batch is full or a
    /// body is large.
    pub fn push<P: AsRef<[u8]>>(&mut self, w: &mut impl Write, parts: &[P]) -> io::Result<()> {
        for (i, p) in parts.iter().enumerate() {
            let p = p.as_ref();
            put_header(
                &mut self.buf,
                if i + 1 < parts.len() { MORE } else { 0 },
                p.len(),
            );
            if p.len() >= WRITE_THROUGH {
                self.flush(w)?;
                w.write_all(p)?;
            } else {
                self.buf.extend_from_slice(p);
            }
        }
        if self.buf.len() >= BATCH {
            self.flush(w)?;
        }
        Ok(())
    }

    /// Writes whatever is batched.
    pub fn flush(&mut self, w: &mut impl Write) -> io::Result<()> {
        if !self.buf.is_empty() {
            w.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// A blocking ZMTP client over any byte stream: reads are buffered, writes
/// go straight to the stream.
#[derive(Debug)]
pub struct Client<S> {
    io: BufReader<S>,
    /// Commands received while reading messages (PING, SUBSCRIBE, ...).
    pub commands: Vec<Frame>,
    /// The peer's READY body, after [`Client::handshake`].
    pub server_ready: Vec<u8>,
    /// Larger frames are refused before allocation (`InvalidData`).
    pub max_part: usize,
}

impl Client<Socket> {
    /// Connects to `tcp://HOST:PORT` or `ipc://PATH` (no handshake yet).
    pub fn connect(ep: &str) -> io::Result<Client<Socket>> {
        Ok(Client::new(connect(ep)?))
    }
}

fn invalid(what: String) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, what)
}

impl<S: Read + Write> Client<S> {
    /// A client over `s` (nothing sent yet).
    pub fn new(s: S) -> Client<S> {
        Client {
            io: BufReader::with_capacity(64 << 10, s),
            commands: Vec::new(),
            server_ready: Vec::new(),
            max_part: 1 << 30,
        }
    }

    /// The stream.
    pub fn get_ref(&self) -> &S {
        self.io.get_ref()
    }

    /// The stream (writes bypass nothing: reads are the only buffered side).
    pub fn get_mut(&mut self) -> &mut S {
        self.io.get_mut()
    }

    /// Writes raw bytes.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.io.get_mut().write_all(bytes)
    }

    /// Reads exactly `buf.len()` raw bytes (through the read buffer).
    pub fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.io.read_exact(buf)
    }

    /// Sends a 3.`minor` NULL greeting and reads the peer's; an error unless
    /// it is a ZMTP 3 NULL greeting.
    pub fn greet(&mut self, minor: u8) -> io::Result<[u8; 64]> {
        self.send(&greeting(3, minor, "NULL"))?;
        let mut g = [0u8; 64];
        self.io.read_exact(&mut g)?;
        if g[0] != 0xFF || g[9] & 1 == 0 || g[10] < 3 || &g[12..17] != b"NULL\0" {
            return Err(invalid(format!(
                "not a ZMTP 3 NULL greeting: {:02x?}",
                &g[..17]
            )));
        }
        Ok(g)
    }

    /// The whole NULL handshake as `socket_type` (ZMTP 3.1).
    pub fn handshake(&mut self, socket_type: &str, identity: Option<&[u8]>) -> io::Result<()> {
        self.handshake_v(socket_type, identity, 1)
    }

    /// The whole NULL handshake as `socket_type`, announcing 3.`minor`:
    /// greeting, READY, the peer's READY (an ERROR is an error).
    pub fn handshake_v(
        &mut self,
        socket_type: &str,
        identity: Option<&[u8]>,
        minor: u8,
    ) -> io::Result<()> {
        self.greet(minor)?;
        self.send(&frame(COMMAND, &ready(socket_type, identity)))?;
        let f = self
            .read_frame()?
            .ok_or_else(|| invalid("closed before READY".into()))?;
        if let Some(r) = error_reason(&f.body).filter(|_| f.is_command()) {
            return Err(invalid(format!("ERROR instead of READY: {r}")));
        }
        if f.command_name() != Some(b"READY") {
            return Err(invalid(format!(
                "expected READY, got flags {:#04x}",
                f.flags
            )));
        }
        self.server_ready = f.body;
        Ok(())
    }

    /// Sends one message, one write (parts may be empty).
    pub fn send_message<P: AsRef<[u8]>>(&mut self, parts: &[P]) -> io::Result<()> {
        let mut wire = Vec::new();
        put_message(&mut wire, parts);
        self.send(&wire)
    }

    /// Sends a command frame.
    pub fn send_command(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        self.send(&frame(COMMAND, &command(name, data)))
    }

    /// Subscribes to `prefix` (3.1 SUBSCRIBE command).
    pub fn subscribe(&mut self, prefix: &[u8]) -> io::Result<()> {
        self.send_command("SUBSCRIBE", prefix)
    }

    /// Cancels a subscription to `prefix` (3.1 CANCEL command).
    pub fn cancel(&mut self, prefix: &[u8]) -> io::Result<()> {
        self.send_command("CANCEL", prefix)
    }

    /// Reads the next frame's body into `body` (replacing its contents);
    /// returns its flags, `None` at end of stream on a frame boundary
    /// (`UnexpectedEof` inside a frame).
    pub fn read_frame_into(&mut self, body: &mut Vec<u8>) -> io::Result<Option<u8>> {
        let mut h = [0u8; 9];
        loop {
            match self.io.read(&mut h[..1]) {
                Ok(0) => return Ok(None),
                Ok(_) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let flags = h[0];
        let len = if flags & LONG != 0 {
            self.io.read_exact(&mut h[1..9])?;
            u64::from_be_bytes([h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8]])
        } else {
            self.io.read_exact(&mut h[1..2])?;
            h[1] as u64
        };
        if len > self.max_part as u64 {
            return Err(invalid(format!(
                "frame of {len} bytes over {}",
                self.max_part
            )));
        }
        body.clear();
        body.resize(len as usize, 0);
        self.io.read_exact(body)?;
        Ok(Some(flags))
    }

    /// The next frame, `None` at end of stream.
    pub fn read_frame(&mut self) -> io::Result<Option<Frame>> {
        let mut body = Vec::new();
        Ok(self
            .read_frame_into(&mut body)?
            .map(|flags| Frame { flags, body }))
    }

    /// The next whole message into `parts` (cleared first; commands in
    /// between are kept in [`Client::commands`]); `false` at end of stream
    /// before its first part.
    pub fn read_message_into(&mut self, parts: &mut Vec<Vec<u8>>) -> io::Result<bool> {
        parts.clear();
        loop {
            let mut body = Vec::new();
            let Some(flags) = self.read_frame_into(&mut body)? else {
                return if parts.is_empty() {
                    Ok(false)
                } else {
                    Err(ErrorKind::UnexpectedEof.into())
                };
            };
            if flags & COMMAND != 0 {
                self.commands.push(Frame { flags, body });
                continue;
            }
            parts.push(body);
            if flags & MORE == 0 {
                return Ok(true);
            }
        }
    }

    /// The next whole message, `None` at end of stream.
    pub fn read_message(&mut self) -> io::Result<Option<Vec<Vec<u8>>>> {
        let mut parts = Vec::new();
        Ok(self.read_message_into(&mut parts)?.then_some(parts))
    }

    /// Reads until end of stream (or a read error: a reset is a close
    /// too); returns the reason of the last ERROR command seen.
    pub fn error_then_close(&mut self) -> Option<String> {
        let mut reason = None;
        while let Ok(Some(f)) = self.read_frame() {
            if f.is_command()
                && let Some(r) = error_reason(&f.body)
            {
                reason = Some(r);
            }
        }
        reason
    }

    /// Reads raw bytes until end of stream.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        let _ = self.io.read_to_end(&mut v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A stream that reads from a script and records what is written.
    struct Script {
        input: Cursor<Vec<u8>>,
        output: Vec<u8>,
    }
    impl Read for Script {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            self.input.read(b)
        }
    }
    impl Write for Script {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.output.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn frames_short_and_long() {
        assert_eq!(frame(MORE, b"ab"), [1, 2, b'a', b'b']);
        let f = frame(0, &[9; 256]);
        assert_eq!(&f[..9], &[LONG, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(f.len(), 9 + 256);
        let mut m = Vec::new();
        put_message(&mut m, &[&b""[..], b"x"]);
        assert_eq!(m, [MORE, 0, 0, 1, b'x']);
    }

    #[test]
    fn handshake_and_messages_from_a_script() {
        let mut input = greeting(3, 1, "NULL").to_vec();
        input.extend(frame(COMMAND, &ready("ROUTER", None)));
        input.extend(frame(COMMAND, &command("PING", &[0, 0])));
        put_message(&mut input, &[&b"a"[..], &[5; 300][..]]);
        input.extend(frame(MORE, b"cut"));
        let mut c = Client::new(Script {
            input: Cursor::new(input),
            output: Vec::new(),
        });
        c.handshake("DEALER", Some(b"me")).unwrap();
        assert_eq!(&c.server_ready[..6], b"\x05READY");
        let m = c.read_message().unwrap().unwrap();
        assert_eq!(m, vec![b"a".to_vec(), vec![5; 300]]);
        assert_eq!(c.commands[0].command_name(), Some(&b"PING"[..]));
        // A message cut at its MORE part is an error, not a message.
        assert!(c.read_message().is_err());
        let out = &c.get_ref().output;
        assert_eq!(&out[..64], &greeting(3, 1, "NULL")[..]);
        assert_eq!(
            &out[64..],
            &frame(COMMAND, &ready("DEALER", Some(b"me")))[..]
        );
    }

    #[test]
    fn error_instead_of_ready_and_bad_greeting() {
        let mut input = greeting(3, 0, "NULL").to_vec();
        input.extend(frame(COMMAND, &command("ERROR", b"\x03bad")));
        let mut c = Client::new(Script {
            input: Cursor::new(input),
            output: Vec::new(),
        });
        let e = c.handshake("PUB", None).unwrap_err();
        assert!(e.to_string().contains("bad"), "{e}");
        let mut c = Client::new(Script {
            input: Cursor::new(greeting(3, 0, "PLAIN").to_vec()),
            output: Vec::new(),
        });
        assert!(c.handshake("PUB", None).is_err());
        assert_eq!(error_reason(b"\x05ERROR\x02no"), Some("no".into()));
    }

    #[test]
    fn outbox_coalesces_small_and_writes_large_through() {
        let mut w = Vec::new();
        let mut o = Outbox::new();
        o.push(&mut w, &[&b"x"[..]]).unwrap();
        assert!(w.is_empty());
        let big = vec![3u8; WRITE_THROUGH];
        o.push(&mut w, &[&b"h"[..], &big[..]]).unwrap();
        o.flush(&mut w).unwrap();
        let mut want = Vec::new();
        put_message(&mut want, &[&b"x"[..]]);
        put_message(&mut want, &[&b"h"[..], &big[..]]);
        assert_eq!(w, want);
    }
}
