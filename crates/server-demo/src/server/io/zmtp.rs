//! The IO thread's ZMTP side: listeners for `tcp://` and `ipc://`
//! endpoints, and the connections' lifecycle (accept, process, close).

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use mio::net::{TcpListener, UnixListener};
use mio::{Interest, Registry, Token};

use super::{IoThread, Stream};

use crate::sync::LockExt;
use crate::zmtp::EndpointAddr;
use crate::zmtp::conn::{ZmtpClose, ZmtpConn};
use crate::zmtp::endpoint::Endpoint;

/// The first ZMTP listener's token; the others count down from it.
const FIRST_LISTENER: usize = usize::MAX - 3;
/// More listeners than this on one server are refused.
const MAX_LISTENERS: usize = 4096;

pub(crate) fn listener_token(i: usize) -> Token {
    Token(FIRST_LISTENER - i)
}

pub(crate) fn listener_index(t: Token) -> Option<usize> {
    let i = FIRST_LISTENER.checked_sub(t.0)?;
    (i < MAX_LISTENERS).then_some(i)
}

/// A ZMTP endpoint's listening socket.
#[derive(Debug)]
pub(crate) enum ZmtpListener {
    Tcp(TcpListener),
    Ipc(UnixListener),
}

impl ZmtpListener {
    /// Binds `addr`; returns the listener and its printable bound address.
    pub(crate) fn bind(addr: &EndpointAddr) -> io::Result<(ZmtpListener, String)> {
        match addr {
            EndpointAddr::Tcp(a) => {
                let l = TcpListener::bind(*a)?;
                super::super::deepen_backlog(&l);
                let bound = EndpointAddr::Tcp(l.local_addr()?).to_string();
                Ok((ZmtpListener::Tcp(l), bound))
            }
            EndpointAddr::Ipc(p) => {
                // As libzmq: a stale socket file from an earlier run goes.
                let _ = std::fs::remove_file(p);
                let l = UnixListener::bind(p)?;
                super::super::deepen_backlog(&l);
                Ok((ZmtpListener::Ipc(l), addr.to_string()))
            }
        }
    }

    pub(crate) fn register(&mut self, r: &Registry, t: Token) -> io::Result<()> {
        match self {
            ZmtpListener::Tcp(l) => r.register(l, t, Interest::READABLE),
            ZmtpListener::Ipc(l) => r.register(l, t, Interest::READABLE),
        }
    }

    fn accept(&self) -> io::Result<Stream> {
        match self {
            ZmtpListener::Tcp(l) => {
                let (s, _) = l.accept()?;
                let _ = s.set_nodelay(true);
                Ok(Stream::Tcp(s))
            }
            ZmtpListener::Ipc(l) => Ok(Stream::Unix(l.accept()?.0)),
        }
    }
}

impl IoThread {
    pub(super) fn accept_zmtp(&mut self, i: usize) {
        loop {
            let Some((l, ep)) = self.zmtp_listeners.get(i) else {
                return;
            };
            match l.accept() {
                Ok(s) => {
                    let ep = ep.clone();
                    self.assign_zmtp(s, ep);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "zmtp accept failed");
                    return;
                }
            }
        }
    }

    /// Round-robin over IO threads, as demo sessions.
    fn assign_zmtp(&mut self, s: Stream, ep: Arc<Endpoint>) {
        let target = self.next_target % self.all.len();
        self.next_target = self.next_target.wrapping_add(1);
        if target == self.index {
            self.add_zmtp(s, ep);
        } else {
            self.all[target].incoming_zmtp.locked().push((s, ep));
            self.all[target].wake();
        }
    }

    pub(super) fn add_zmtp(&mut self, mut stream: Stream, ep: Arc<Endpoint>) {
        let Some(shared) = self.open_session(&mut stream) else {
            return;
        };
        let id = shared.id;
        ep.stats.sessions_opened.fetch_add(1, Ordering::Relaxed);
        let conn = ZmtpConn::new(stream, shared, ep, &self.shared);
        self.zmtp.insert(id, Box::new(conn));
        self.process_zmtp(id);
    }

    pub(super) fn process_zmtp(&mut self, id: u64) {
        let Some(c) = self.zmtp.get_mut(&id) else {
            return;
        };
        if let Err(why) = c.process(&self.shared, &mut self.again) {
            self.close_zmtp(id, why);
        }
    }

    fn close_zmtp(&mut self, id: u64, why: ZmtpClose) {
        let Some(mut c) = self.zmtp.remove(&id) else {
            return;
        };
        c.teardown(&self.shared, why);
        if let Some(src) = c.stream.source() {
            let _ = self.poll.registry().deregister(src);
        }
        c.stream.shutdown();
        self.shared
            .counters
            .sessions_closed
            .fetch_add(1, Ordering::Relaxed);
        self.shared.live_sessions.fetch_sub(1, Ordering::Relaxed);
    }

    pub(super) fn close_all_zmtp(&mut self) {
        let ids: Vec<u64> = self.zmtp.keys().copied().collect();
        for id in ids {
            self.close_zmtp(id, ZmtpClose::Server("server shutdown".into()));
        }
    }
}
