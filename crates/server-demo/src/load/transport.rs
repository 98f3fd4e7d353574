//! Where and how the clients connect: the [`Target`] (TCP, Unix-domain or
//! in-process), the blocking [`Stream`] [`Target::connect`] (and
//! [`connect`]) opens, which can also undo the server's ChaCha20 transform
//! ([`Stream::decipher`]), the non-blocking `mio` stream the fan-out
//! subscribers are read through, and [`raise_fd_limit`] for runs with many
//! sockets. The one client transport of the crate: the load generator, the
//! main job, the soak and the ZMTP client
//! ([`crate::zmtp::client::Socket`]) all connect through it.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use mio::{Interest, Poll, Token};
use serde::Serialize;

use super::error::LoadError;
use crate::server::{InprocClient, InprocConnector};

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum Target {
    /// A TCP address (loopback in this project).
    Tcp(SocketAddr),
    /// A Unix-domain socket path.
    Unix(PathBuf),
    /// A server in this process, through in-memory pipes
    /// ([`Server::inproc_connector`](crate::server::Server::inproc_connector)).
    /// No socket: fan-out runs, which poll sockets, refuse it.
    Inproc(InprocConnector),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp(a) => write!(f, "tcp {a}"),
            Target::Unix(p) => write!(f, "unix {}", p.display()),
            Target::Inproc(_) => f.write_str("inproc"),
        }
    }
}

impl Target {
    /// Opens a blocking stream to it. TCP: within `timeout`
    /// (`Duration::MAX`: no limit of ours, as `TcpStream::connect`; the
    /// kernel's own ends it), with `TCP_NODELAY` on; Unix-domain and
    /// in-process: `timeout` does not apply.
    pub fn connect(&self, timeout: Duration) -> io::Result<Stream> {
        let conn = match self {
            Target::Tcp(addr) => {
                let s = TcpStream::connect_timeout(addr, timeout.max(Duration::from_millis(1)))?;
                s.set_nodelay(true)?;
                Conn::Tcp(s)
            }
            Target::Unix(path) => Conn::Unix(UnixStream::connect(path)?),
            Target::Inproc(server) => Conn::Inproc(server.connect()),
        };
        Ok(Stream {
            conn,
            keystream: None,
        })
    }
}

/// [`Target::connect`], failing with a [`LoadError::Connect`] that names
/// the target.
pub fn connect(target: &Target, timeout: Duration) -> Result<Stream, LoadError> {
    target
        .connect(timeout)
        .map_err(|source| LoadError::Connect {
            target: target.to_string(),
            source,
        })
}

/// A blocking client stream to a [`Target`]: a TCP or Unix-domain socket,
/// or an in-process connection, optionally deciphering what it reads.
pub struct Stream {
    conn: Conn,
    /// Set by [`Stream::decipher`]: applied to every byte read.
    keystream: Option<ChaCha20>,
}

#[derive(Debug)]
enum Conn {
    /// TCP (with `TCP_NODELAY` on).
    Tcp(TcpStream),
    /// Unix-domain stream socket.
    Unix(UnixStream),
    /// In-process connection.
    Inproc(InprocClient),
}

/// `$body` with `$s` bound to the connection, whichever its kind (the
/// three have the same method names).
macro_rules! on_conn {
    ($conn:expr, $s:ident => $body:expr) => {
        match $conn {
            Conn::Tcp($s) => $body,
            Conn::Unix($s) => $body,
            Conn::Inproc($s) => $body,
        }
    };
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("conn", &self.conn)
            .field("deciphering", &self.keystream.is_some())
            .finish()
    }
}

impl Stream {
    /// A second handle to the same connection (for a reader/writer pair).
    /// It does not decipher: a keystream is one reader's, call
    /// [`decipher`](Self::decipher) on the handle that reads.
    pub fn try_clone(&self) -> io::Result<Stream> {
        let conn = match &self.conn {
            Conn::Tcp(s) => Conn::Tcp(s.try_clone()?),
            Conn::Unix(s) => Conn::Unix(s.try_clone()?),
            Conn::Inproc(s) => Conn::Inproc(s.clone()),
        };
        Ok(Stream {
            conn,
            keystream: None,
        })
    }

    /// Deciphers everything read from now on with the ChaCha20 keystream
    /// of `key` and `nonce`, from its start: the client side of a server
    /// that enciphers each connection's outgoing stream (`--transform
    /// chacha20`, with [`DEMO_KEY`](crate::server::DEMO_KEY) and
    /// [`DEMO_NONCE`](crate::server::DEMO_NONCE)). Call it before the
    /// first read.
    pub fn decipher(mut self, key: [u8; 32], nonce: [u8; 12]) -> Stream {
        self.keystream = Some(ChaCha20::new(&key.into(), &nonce.into()));
        self
    }

    /// Sets the read timeout (`None`: block forever). For a socket it
    /// holds for every handle of the connection, as for an in-process one.
    pub fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        on_conn!(&self.conn, s => s.set_read_timeout(d))
    }

    /// Sets the write timeout (`None`: block forever), for every handle of
    /// the connection.
    pub fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        on_conn!(&self.conn, s => s.set_write_timeout(d))
    }

    /// Switches non-blocking mode (sockets only: an in-process connection
    /// only blocks).
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match &self.conn {
            Conn::Tcp(s) => s.set_nonblocking(on),
            Conn::Unix(s) => s.set_nonblocking(on),
            Conn::Inproc(_) if !on => Ok(()),
            Conn::Inproc(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "an in-process connection has no non-blocking mode",
            )),
        }
    }

    /// Shuts down one or both directions.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        on_conn!(&self.conn, s => s.shutdown(how))
    }

    /// Makes it a non-blocking `mio` stream (a socket that does not
    /// decipher).
    pub(super) fn into_mio(self) -> io::Result<MioStream> {
        let unsupported = |what| Err(io::Error::new(io::ErrorKind::Unsupported, what));
        if self.keystream.is_some() {
            return unsupported("a deciphering stream cannot be polled");
        }
        self.set_nonblocking(true)?;
        match self.conn {
            Conn::Tcp(s) => Ok(MioStream::Tcp(mio::net::TcpStream::from_std(s))),
            Conn::Unix(s) => Ok(MioStream::Unix(mio::net::UnixStream::from_std(s))),
            Conn::Inproc(_) => unsupported("an in-process connection cannot be polled"),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = on_conn!(&mut self.conn, s => s.read(buf))?;
        if let Some(k) = &mut self.keystream {
            k.apply_keystream(&mut buf[..n]);
        }
        Ok(n)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        on_conn!(&mut self.conn, s => s.write(buf))
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        on_conn!(&mut self.conn, s => s.write_vectored(bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        on_conn!(&mut self.conn, s => s.flush())
    }
}

/// Raises the soft `RLIMIT_NOFILE` to at least `wanted` (capped at the hard
/// limit; `u64::MAX`: to the hard limit) and returns the soft limit now in
/// force. The one implementation: the server, the main job and the load
/// generator all call it.
#[allow(clippy::unnecessary_cast)] // `rlim_t` is `u64` on Linux, not everywhere
pub fn raise_fd_limit(wanted: u64) -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the `rlimit` we pass by a valid,
    // exclusive pointer to a live local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let cur = lim.rlim_cur as u64;
    if cur >= wanted {
        return Ok(cur);
    }
    let new = if lim.rlim_max == libc::RLIM_INFINITY {
        wanted
    } else {
        wanted.min(lim.rlim_max as u64)
    };
    lim.rlim_cur = new as libc::rlim_t;
    // SAFETY: setrlimit only reads the fully initialised `rlimit` we pass
    // by a valid pointer; the new soft limit is at most the hard limit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(new)
}

/// A non-blocking subscriber socket.
#[derive(Debug)]
pub(super) enum MioStream {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

impl MioStream {
    pub(super) fn register(&mut self, poll: &Poll, token: Token) -> io::Result<()> {
        match self {
            MioStream::Tcp(s) => poll.registry().register(s, token, Interest::READABLE),
            MioStream::Unix(s) => poll.registry().register(s, token, Interest::READABLE),
        }
    }
}

impl Read for MioStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            MioStream::Tcp(s) => s.read(buf),
            MioStream::Unix(s) => s.read(buf),
        }
    }
}
