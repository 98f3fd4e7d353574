//! ZMTP endpoints: addresses (`tcp://HOST:PORT`, `ipc://PATH`), and the
//! counters each endpoint keeps (sessions, messages, drops, and the send
//! path: large-path ratio and copies per byte).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use netbuf::FlushMetrics;

use super::socket_type::EndpointKind;

/// Where an endpoint listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointAddr {
    /// `tcp://HOST:PORT` (port 0 picks a free one; `*` is every interface).
    Tcp(SocketAddr),
    /// `ipc://PATH`: a Unix-domain stream socket, as libzmq's ipc transport.
    Ipc(PathBuf),
}

/// Why an endpoint address does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// Neither `tcp://` nor `ipc://`.
    #[error("endpoint {0:?} must start with tcp:// or ipc://")]
    Scheme(String),
    /// The host or port does not resolve.
    #[error("endpoint {0:?}: cannot resolve {1}")]
    Resolve(String, String),
    /// `ipc://` with an empty path.
    #[error("endpoint {0:?}: empty ipc path")]
    EmptyPath(String),
}

impl FromStr for EndpointAddr {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, AddrError> {
        if let Some(rest) = s.strip_prefix("tcp://") {
            // libzmq's wildcard host.
            let rest = match rest.strip_prefix("*:") {
                Some(port) => format!("0.0.0.0:{port}"),
                None => rest.to_string(),
            };
            let addr = rest
                .to_socket_addrs()
                .map_err(|e| AddrError::Resolve(s.into(), e.to_string()))?
                .next()
                .ok_or_else(|| AddrError::Resolve(s.into(), "no address".into()))?;
            return Ok(EndpointAddr::Tcp(addr));
        }
        if let Some(path) = s.strip_prefix("ipc://") {
            if path.is_empty() {
                return Err(AddrError::EmptyPath(s.into()));
            }
            return Ok(EndpointAddr::Ipc(PathBuf::from(path)));
        }
        Err(AddrError::Scheme(s.into()))
    }
}

impl std::fmt::Display for EndpointAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndpointAddr::Tcp(a) => write!(f, "tcp://{a}"),
            EndpointAddr::Ipc(p) => write!(f, "ipc://{}", p.display()),
        }
    }
}

/// One endpoint to open: its kind and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    /// What the endpoint does.
    pub kind: EndpointKind,
    /// Where it listens.
    pub addr: EndpointAddr,
}

/// A bound endpoint at run time: what it is, where, its counters, and
/// (PAIR) the session that holds it.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) kind: EndpointKind,
    /// The bound address as printed (`tcp://127.0.0.1:PORT`).
    pub(crate) address: String,
    pub(crate) stats: std::sync::Arc<EndpointStats>,
    /// The PAIR peer's session id (0: none).
    pub(crate) pair_peer: AtomicU64,
}

impl Endpoint {
    pub(crate) fn new(kind: EndpointKind, address: String) -> Endpoint {
        Endpoint {
            kind,
            address,
            stats: Default::default(),
            pair_peer: AtomicU64::new(0),
        }
    }

    pub(crate) fn report(&self) -> EndpointReport {
        EndpointReport::new(self.kind, &self.address, &self.stats)
    }
}

/// Live counters of one endpoint (all its sessions, open and closed).
#[derive(Debug, Default)]
pub struct EndpointStats {
    /// Connections accepted.
    pub sessions_opened: AtomicU64,
    /// Connections closed (any reason).
    pub sessions_closed: AtomicU64,
    /// Connections closed for a protocol error or refusal.
    pub sessions_rejected: AtomicU64,
    /// Whole messages received.
    pub messages_in: AtomicU64,
    /// Message parts received.
    pub parts_in: AtomicU64,
    /// Whole messages queued to peers of this endpoint.
    pub messages_out: AtomicU64,
    /// Whole messages a subscriber of this endpoint missed (over its bound).
    pub messages_dropped: AtomicU64,
    /// Bytes (header + body) of those missed messages' parts.
    pub bytes_dropped: AtomicU64,
    /// Header + body bytes of the large parts sent (body at or above the
    /// gather threshold).
    pub large_bytes: AtomicU64,
    /// Header + body bytes of parts sent by the gather path (never copied).
    pub gather_bytes: AtomicU64,
    /// Bytes copied into send buffers.
    pub bytes_copied: AtomicU64,
    /// Bytes written to the connections.
    pub bytes_written: AtomicU64,
    /// Body bytes of received message parts copied out of the receive
    /// buffer (0 for a part received straight into its own message).
    pub recv_bytes_copied: AtomicU64,
    /// Body bytes of received message parts.
    pub recv_bytes: AtomicU64,
    /// Parts received straight into their own message (no copy).
    pub direct_parts: AtomicU64,
    /// Bytes of those parts' messages zeroed before a read (0: read into
    /// uninitialised memory, `netbuf::ReadUninit`).
    pub recv_bytes_zeroed: AtomicU64,
}

impl EndpointStats {
    /// Adds what a flusher did since `before`.
    pub(crate) fn add_flush(&self, now: &FlushMetrics, before: &FlushMetrics) {
        let add = |c: &AtomicU64, a: u64, b: u64| {
            if a > b {
                c.fetch_add(a - b, Ordering::Relaxed);
            }
        };
        add(&self.gather_bytes, now.gather_bytes, before.gather_bytes);
        add(&self.bytes_copied, now.bytes_copied, before.bytes_copied);
        add(&self.bytes_written, now.bytes_written, before.bytes_written);
    }
}

/// A snapshot of one endpoint's counters.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointReport {
    /// Its kind.
    pub kind: EndpointKind,
    /// Its bound address (`tcp://127.0.0.1:PORT`, `ipc://PATH`,
    /// `inproc://zmtp-router`...).
    pub address: String,
    /// Connections accepted.
    pub sessions_opened: u64,
    /// Connections closed.
    pub sessions_closed: u64,
    /// Connections closed for a protocol error or refusal.
    pub sessions_rejected: u64,
    /// Whole messages received.
    pub messages_in: u64,
    /// Message parts received.
    pub parts_in: u64,
    /// Whole messages queued to peers.
    pub messages_out: u64,
    /// Whole messages missed by slow subscribers.
    pub messages_dropped: u64,
    /// Their bytes.
    pub bytes_dropped: u64,
    /// Bytes of large parts sent.
    pub large_bytes: u64,
    /// Bytes sent by the gather path.
    pub gather_bytes: u64,
    /// Bytes copied into send buffers.
    pub bytes_copied: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Body bytes of received parts copied out of the receive buffer.
    pub recv_bytes_copied: u64,
    /// Body bytes of received parts.
    pub recv_bytes: u64,
    /// Parts received straight into their own message.
    pub direct_parts: u64,
    /// Bytes of their messages zeroed before a read.
    pub recv_bytes_zeroed: u64,
}

impl EndpointReport {
    pub(crate) fn new(kind: EndpointKind, address: &str, s: &EndpointStats) -> Self {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EndpointReport {
            kind,
            address: address.to_string(),
            sessions_opened: g(&s.sessions_opened),
            sessions_closed: g(&s.sessions_closed),
            sessions_rejected: g(&s.sessions_rejected),
            messages_in: g(&s.messages_in),
            parts_in: g(&s.parts_in),
            messages_out: g(&s.messages_out),
            messages_dropped: g(&s.messages_dropped),
            bytes_dropped: g(&s.bytes_dropped),
            large_bytes: g(&s.large_bytes),
            gather_bytes: g(&s.gather_bytes),
            bytes_copied: g(&s.bytes_copied),
            bytes_written: g(&s.bytes_written),
            recv_bytes_copied: g(&s.recv_bytes_copied),
            recv_bytes: g(&s.recv_bytes),
            direct_parts: g(&s.direct_parts),
            recv_bytes_zeroed: g(&s.recv_bytes_zeroed),
        }
    }

    /// Bytes of large parts sent by gather without a copy, per byte of
    /// large parts sent (1.0: the whole large path is zero-copy; `None`
    /// when no large part was sent).
    pub fn large_path_ratio(&self) -> Option<f64> {
        (self.large_bytes > 0)
            .then(|| self.gather_bytes.min(self.large_bytes) as f64 / self.large_bytes as f64)
    }

    /// Bytes copied into send buffers per byte written.
    /// Receive-side copies per body byte received (0 when every part was
    /// received straight into its own message).
    pub fn recv_copies_per_byte(&self) -> f64 {
        if self.recv_bytes == 0 {
            0.0
        } else {
            self.recv_bytes_copied as f64 / self.recv_bytes as f64
        }
    }

    pub fn copies_per_byte(&self) -> f64 {
        if self.bytes_written == 0 {
            0.0
        } else {
            self.bytes_copied as f64 / self.bytes_written as f64
        }
    }
}

impl std::fmt::Display for EndpointReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: sessions {} opened / {} closed / {} rejected, messages {} in / {} out / {} dropped ({} B), \
             large-path ratio {}, copies per byte {:.3}, received: copies per byte {:.3}, \
             {} parts direct",
            self.kind.label(),
            self.address,
            self.sessions_opened,
            self.sessions_closed,
            self.sessions_rejected,
            self.messages_in,
            self.messages_out,
            self.messages_dropped,
            self.bytes_dropped,
            self.large_path_ratio()
                .map_or_else(|| "n/a".to_string(), |r| format!("{r:.3}")),
            self.copies_per_byte(),
            self.recv_copies_per_byte(),
            self.direct_parts,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            "tcp://127.0.0.1:0".parse::<EndpointAddr>().unwrap(),
            EndpointAddr::Tcp("127.0.0.1:0".parse().unwrap())
        );
        assert_eq!(
            "tcp://*:5555".parse::<EndpointAddr>().unwrap(),
            EndpointAddr::Tcp("0.0.0.0:5555".parse().unwrap())
        );
        assert_eq!(
            "ipc:///tmp/x.sock"
                .parse::<EndpointAddr>()
                .unwrap()
                .to_string(),
            "ipc:///tmp/x.sock"
        );
        assert!(matches!(
            "udp://x".parse::<EndpointAddr>(),
            Err(AddrError::Scheme(_))
        ));
        assert!(matches!(
            "ipc://".parse::<EndpointAddr>(),
            Err(AddrError::EmptyPath(_))
        ));
        assert!("tcp://nonsense".parse::<EndpointAddr>().is_err());
    }

    #[test]
    fn ratios() {
        let s = EndpointStats::default();
        let r = EndpointReport::new(EndpointKind::Router, "inproc://x", &s);
        assert_eq!(r.large_path_ratio(), None);
        s.large_bytes.store(100, Ordering::Relaxed);
        s.gather_bytes.store(100, Ordering::Relaxed);
        s.bytes_written.store(200, Ordering::Relaxed);
        s.bytes_copied.store(100, Ordering::Relaxed);
        let r = EndpointReport::new(EndpointKind::Router, "inproc://x", &s);
        assert_eq!(r.large_path_ratio(), Some(1.0));
        assert_eq!(r.copies_per_byte(), 0.5);
        assert!(r.to_string().starts_with("zmtp-router inproc://x"));
    }
}
