//! The IO thread's poll events: accepts on its listeners, and readiness
//! on its sessions and ZMTP connections.

use std::io;

use mio::event::Event;
use mio::{Events, Token};

use super::{IoThread, Stream, TCP_LISTENER, UNIX_LISTENER, WAKE, zmtp};

impl IoThread {
    /// Serves every event of one poll.
    #[inline]
    pub(super) fn dispatch_events(&mut self, events: &Events) {
        for ev in events.iter() {
            self.dispatch_event(ev);
        }
    }

    /// A listener's event accepts; a connection's records what the socket
    /// is ready for, then serves it (a wakeup only ends the poll: the ready
    /// list is read after the events).
    #[inline]
    fn dispatch_event(&mut self, ev: &Event) {
        match ev.token() {
            WAKE => {}
            TCP_LISTENER => self.accept_tcp(),
            UNIX_LISTENER => self.accept_unix(),
            t if zmtp::listener_index(t).is_some() => {
                if let Some(i) = zmtp::listener_index(t) {
                    self.accept_zmtp(i);
                }
            }
            Token(t) => {
                let id = t as u64;
                let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                if let Some(s) = self.sessions.get_mut(&id) {
                    if readable {
                        s.want_read = true;
                    }
                    if ev.is_read_closed() || ev.is_error() {
                        s.read_closed = true;
                    }
                    self.process(id);
                } else if let Some(c) = self.zmtp.get_mut(&id) {
                    if readable {
                        c.want_read = true;
                    }
                    if ev.is_read_closed() || ev.is_error() {
                        c.read_closed = true;
                    }
                    self.process(id);
                }
            }
        }
    }

    fn accept_tcp(&mut self) {
        loop {
            let Some(l) = &self.tcp else { return };
            match l.accept() {
                Ok((s, _)) => {
                    let _ = s.set_nodelay(true);
                    self.assign(Stream::Tcp(s));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // e.g. EMFILE: keep serving the sessions we have.
                    tracing::warn!(error = %e, "accept failed");
                    return;
                }
            }
        }
    }

    fn accept_unix(&mut self) {
        loop {
            let Some(l) = &self.unix else { return };
            match l.accept() {
                Ok((s, _)) => self.assign(Stream::Unix(s)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    return;
                }
            }
        }
    }
}
