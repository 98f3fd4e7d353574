//! Where and how the generator connects: the [`Target`] address, the
//! blocking [`Stream`] (TCP or Unix-domain) with [`connect`], the
//! non-blocking `mio` stream the fan-out subscribers are read through, and
//! [`raise_fd_limit`] for runs with many sockets.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use mio::{Interest, Poll, Token};
use serde::Serialize;

use super::error::LoadError;

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum Target {
    /// A TCP address (loopback in this project).
    Tcp(SocketAddr),
    /// A Unix-domain socket path.
    Unix(PathBuf),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp(a) => write!(f, "tcp {a}"),
            Target::Unix(p) => write!(f, "unix {}", p.display()),
        }
    }
}

/// A blocking client stream to a [`Target`].
#[derive(Debug)]
pub enum Stream {
    /// TCP (with `TCP_NODELAY` on).
    Tcp(TcpStream),
    /// Unix-domain stream socket.
    Unix(UnixStream),
}

impl Stream {
    /// A second handle to the same socket (for a reader/writer pair).
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }

    /// Sets the read timeout (`None`: block forever).
    pub fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(d),
            Stream::Unix(s) => s.set_read_timeout(d),
        }
    }

    /// Sets the write timeout (`None`: block forever).
    pub fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(d),
            Stream::Unix(s) => s.set_write_timeout(d),
        }
    }

    /// Switches non-blocking mode.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(on),
            Stream::Unix(s) => s.set_nonblocking(on),
        }
    }

    /// Shuts down one or both directions.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
        }
    }

    /// Makes it a non-blocking `mio` stream.
    pub(super) fn into_mio(self) -> io::Result<MioStream> {
        self.set_nonblocking(true)?;
        Ok(match self {
            Stream::Tcp(s) => MioStream::Tcp(mio::net::TcpStream::from_std(s)),
            Stream::Unix(s) => MioStream::Unix(mio::net::UnixStream::from_std(s)),
        })
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

/// Connects a blocking stream to `target` (TCP: within `timeout`, with
/// `TCP_NODELAY` on).
pub fn connect(target: &Target, timeout: Duration) -> Result<Stream, LoadError> {
    let err = |source| LoadError::Connect {
        target: target.to_string(),
        source,
    };
    match target {
        Target::Tcp(addr) => {
            let s = TcpStream::connect_timeout(addr, timeout.max(Duration::from_millis(1)))
                .map_err(err)?;
            s.set_nodelay(true).map_err(err)?;
            Ok(Stream::Tcp(s))
        }
        Target::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path).map_err(err)?)),
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
