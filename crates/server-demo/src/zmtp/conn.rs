//! One ZMTP connection on its IO thread: the receive buffer (ZMTP framing,
//! pool-backed), the [`ZmtpSession`] state machine, the handlers (ROUTER and
//! PAIR echo inline, the broker for XSUB / XPUB), and the send side (the
//! session's `SendQueue` drained into a `Flusher`, so large parts leave by
//! gather without a copy).
//!
//! Frames of our own (greeting, READY, PONG, ERROR) never go through the
//! queue: they wait in `control` until the flusher is at a message
//! boundary, so they never split a multi-part message another thread
//! queued.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use netbuf::{
    DEFAULT_GATHER_THRESHOLD, FlushError, FlushMetrics, Flushed, Flusher, FrameSource, Message,
    OutFrame, Outgoing, ReceiveBuffer,
};

use super::endpoint::Endpoint;
use super::error::ZmtpError;
use super::frame::{FrameFlags, ZmtpFraming, encode_frame_header};
use super::greeting::OUR_GREETING;
use super::session::{Step, ZmtpSession};
use super::socket_type::EndpointKind;
use super::{command, subscription};
use crate::config::{RecvMode, SendMode};
use crate::server::io::{DRAIN_BATCH, FLUSHER_HIGH, Offered, READ_BUDGET, Stream};
use crate::server::queue::Refusal;
use crate::server::{SessionShared, Shared};

/// Message parts of at least this many bytes are received straight into
/// their own message (no copy out of the receive buffer), as libzmq's
/// decoder receives large messages into their own buffer.
pub(crate) const DIRECT_RECV_THRESHOLD: usize = 32 << 10;

/// The highest gather threshold a ZMTP connection uses when the send path
/// is calibrated (`--send auto` without `--gather-threshold`): parts from
/// 64 KiB always leave as header + body in one vectored write, whatever a
/// noisy calibration measured (libzmq sends parts above its 8 KiB batch
/// from their own buffer).
pub(crate) const MAX_GATHER_THRESHOLD: usize = 32 << 10;

/// Why a ZMTP connection ends.
#[derive(Debug)]
pub(crate) enum ZmtpClose {
    /// The peer left or the socket failed: nothing to tell it.
    Quiet(String),
    /// The peer broke the protocol or was refused.
    Protocol(ZmtpError),
    /// The server closes it (shutdown, overflow): an ERROR says why.
    Server(String),
}

impl From<ZmtpError> for ZmtpClose {
    fn from(e: ZmtpError) -> Self {
        ZmtpClose::Protocol(e)
    }
}

/// What the connection registered that its close must undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    None,
    PairPeer,
    Broker,
}

/// The IO thread's half of a ZMTP connection.
pub(crate) struct ZmtpConn {
    pub(crate) stream: Stream,
    pub(crate) shared: Arc<SessionShared>,
    endpoint: Arc<Endpoint>,
    recv: ReceiveBuffer<ZmtpFraming>,
    flusher: Flusher<Outgoing>,
    session: ZmtpSession,
    /// Readable edge seen and not yet read to `WouldBlock`.
    pub(crate) want_read: bool,
    /// The peer's end of stream (or an error) was reported: read until
    /// `Ok(0)`, a short read proves nothing then.
    pub(crate) read_closed: bool,
    /// Our own frames, waiting for a message boundary in the flusher.
    control: VecDeque<OutFrame>,
    /// The last frame given to the flusher had MORE set.
    out_mid_message: bool,
    /// An echo reply waiting for room in the queue (reading pauses).
    stalled: Vec<OutFrame>,
    /// Scratch for a received message's parts.
    parts: Vec<Message>,
    /// Bodies at least this long count as large parts.
    large_threshold: usize,
    /// Flusher metrics already added to the endpoint's counters.
    seen: FlushMetrics,
    /// Receive-buffer copies, direct bodies and bytes zeroed already added
    /// to them.
    seen_recv: (u64, u64, u64),
    /// Body bytes decoded and not yet added to them.
    recv_bytes: u64,
    role: Role,
}

impl ZmtpConn {
    pub(crate) fn new(
        stream: Stream,
        shared: Arc<SessionShared>,
        endpoint: Arc<Endpoint>,
        server: &Shared,
    ) -> ZmtpConn {
        let cfg = &server.cfg;
        let framing = ZmtpFraming::greeting(cfg.max_frame);
        let mut recv = match cfg.recv {
            RecvMode::Linear => ReceiveBuffer::linear(framing),
            RecvMode::Chained => ReceiveBuffer::chained(server.pool.clone(), framing),
        };
        recv.set_direct_threshold(DIRECT_RECV_THRESHOLD);
        let mut threshold = server.threshold(stream.transport());
        if cfg.send == SendMode::Auto
            && cfg.gather_threshold.is_none()
            && let netbuf::GatherThreshold::Bytes(b) = &mut threshold
        {
            *b = (*b).min(MAX_GATHER_THRESHOLD);
        }
        let mut flusher = Flusher::new(threshold);
        if cfg.transform == crate::config::TransformMode::Chacha20 {
            flusher = flusher.with_transform(netbuf::ChaCha20Transform::new(
                crate::server::DEMO_KEY,
                crate::server::DEMO_NONCE,
            ));
        }
        let large_threshold = match flusher.threshold() {
            usize::MAX => DEFAULT_GATHER_THRESHOLD,
            t => t,
        };
        let session = ZmtpSession::new(endpoint.kind, shared.queue.limit());
        let mut conn = ZmtpConn {
            stream,
            shared,
            endpoint,
            recv,
            flusher,
            session,
            want_read: true,
            read_closed: false,
            control: VecDeque::new(),
            out_mid_message: false,
            stalled: Vec::new(),
            parts: Vec::new(),
            large_threshold,
            seen: FlushMetrics::default(),
            seen_recv: (0, 0, 0),
            recv_bytes: 0,
            role: Role::None,
        };
        // Sent whole right away: a libzmq peer waits for our signature
        // before it sends the rest of its greeting.
        conn.push_raw(&OUR_GREETING, server);
        conn
    }

    /// Does whatever the connection is ready for: a requested close,
    /// output, input, then the output that input produced.
    pub(crate) fn process(
        &mut self,
        server: &Shared,
        again: &mut Vec<u64>,
    ) -> Result<(), ZmtpClose> {
        if matches!(self.stream, Stream::Inproc(_)) {
            // No readiness events: a wakeup may mean new input.
            self.want_read = true;
        }
        if let Some(reason) = self.shared.take_close_reason() {
            return Err(ZmtpClose::Server(reason));
        }
        self.pump().map_err(write_failed)?;
        self.retry_stalled();
        let read = self.read_input(server, again);
        self.account_recv();
        read?;
        self.pump().map_err(write_failed)
    }

    /// Adds the receive buffer's copies since the last call to the
    /// endpoint's counters.
    fn account_recv(&mut self) {
        let now = match &self.recv {
            ReceiveBuffer::Linear(b) => {
                let s = b.stats();
                (s.bytes_copied, s.direct_bodies, s.bytes_zeroed)
            }
            // Bodies of a block or more are staged into their own block;
            // smaller ones are copied once (not counted here).
            ReceiveBuffer::Chained(b) => (0, b.stats().bodies_contiguous, 0),
        };
        let stats = &self.endpoint.stats;
        if now.0 > self.seen_recv.0 {
            stats
                .recv_bytes_copied
                .fetch_add(now.0 - self.seen_recv.0, Ordering::Relaxed);
        }
        if now.1 > self.seen_recv.1 {
            stats
                .direct_parts
                .fetch_add(now.1 - self.seen_recv.1, Ordering::Relaxed);
        }
        if now.2 > self.seen_recv.2 {
            stats
                .recv_bytes_zeroed
                .fetch_add(now.2 - self.seen_recv.2, Ordering::Relaxed);
        }
        if self.recv_bytes > 0 {
            stats
                .recv_bytes
                .fetch_add(std::mem::take(&mut self.recv_bytes), Ordering::Relaxed);
        }
        self.seen_recv = now;
    }

    /// Reads and handles input until `WouldBlock`, the read budget, or
    /// backpressure (an echo endpoint whose replies are not being read).
    fn read_input(&mut self, server: &Shared, again: &mut Vec<u64>) -> Result<(), ZmtpClose> {
        let mut budget = READ_BUDGET;
        loop {
            self.decode(server)?;
            if self.blocked() || !self.want_read {
                return Ok(());
            }
            if budget == 0 {
                again.push(self.shared.id);
                return Ok(());
            }
            let mut reader = Offered {
                stream: &mut self.stream,
                offered: 0,
            };
            // Large parts are read into their own message without zeroing
            // it first (`read(2)` into uninitialised memory).
            match self.recv.read_from_uninit(&mut reader) {
                Ok(0) => {
                    return Err(ZmtpClose::Quiet(match self.recv.finish() {
                        Ok(()) => "peer closed".into(),
                        Err(e) => format!("peer closed mid-frame: {e}"),
                    }));
                }
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    // A short read drained the socket: the next arrival is a
                    // new readiness edge. (In-process streams have no
                    // readiness events: they keep reading to WouldBlock.)
                    if n < reader.offered
                        && !self.read_closed
                        && !matches!(self.stream, Stream::Inproc(_))
                    {
                        self.want_read = false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.want_read = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ZmtpClose::Quiet(format!("read failed: {e}"))),
            }
        }
    }

    /// Echo endpoints stop taking input while their replies pile up: the
    /// requests wait in the kernel, nothing is dropped.
    fn blocked(&self) -> bool {
        matches!(
            self.endpoint.kind,
            EndpointKind::Router | EndpointKind::Pair
        ) && (!self.stalled.is_empty()
            || self.shared.queue.queued_bytes() >= self.shared.queue.limit() / 2)
    }

    /// Handles every complete frame buffered.
    fn decode(&mut self, server: &Shared) -> Result<(), ZmtpClose> {
        while !self.blocked() {
            let (header, body) = match self.recv.next_message(&server.pool) {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(()),
                Err(e) if self.recv.framing().in_greeting() => {
                    return Err(ZmtpError::Handshake(e).into());
                }
                Err(e) => return Err(ZmtpError::Frame(e).into()),
            };
            self.recv_bytes += body.len() as u64;
            match self.session.on_frame(header, body)? {
                Step::Nothing => {}
                Step::Greeted { ready } => {
                    // The frames after the greeting may be buffered already.
                    self.recv
                        .set_framing(ZmtpFraming::frames(server.cfg.max_frame));
                    self.push_command(&ready, server);
                }
                Step::Ready => self.on_ready(server)?,
                Step::Message => self.on_message(server),
                Step::Pong(context) => self.push_command(&command::pong(&context), server),
                Step::Subscription { subscribe, topic } => {
                    server
                        .zmtp
                        .broker
                        .subscription(self.shared.id, subscribe, &topic);
                }
            }
        }
        Ok(())
    }

    fn on_ready(&mut self, server: &Shared) -> Result<(), ZmtpError> {
        let zmtp_3_1 = self.session.peer().is_none_or(|p| p.greeting.is_3_1());
        match self.endpoint.kind {
            EndpointKind::Router => {}
            EndpointKind::Pair => {
                // One peer at a time, as a libzmq PAIR.
                self.endpoint
                    .pair_peer
                    .compare_exchange(0, self.shared.id, Ordering::AcqRel, Ordering::Acquire)
                    .map_err(|_| ZmtpError::PairBusy)?;
                self.role = Role::PairPeer;
            }
            EndpointKind::Xsub => {
                server.zmtp.broker.add_publisher(
                    self.shared.clone(),
                    self.endpoint.stats.clone(),
                    zmtp_3_1,
                );
                self.role = Role::Broker;
            }
            EndpointKind::Xpub => {
                server.zmtp.broker.add_subscriber(
                    self.shared.clone(),
                    self.endpoint.stats.clone(),
                    zmtp_3_1,
                );
                self.role = Role::Broker;
            }
        }
        Ok(())
    }

    fn on_message(&mut self, server: &Shared) {
        self.session.take_message(&mut self.parts);
        let stats = &self.endpoint.stats;
        stats.messages_in.fetch_add(1, Ordering::Relaxed);
        stats
            .parts_in
            .fetch_add(self.parts.len() as u64, Ordering::Relaxed);
        match self.endpoint.kind {
            EndpointKind::Router | EndpointKind::Pair => {
                // Every part back, in order: a REQ peer's empty delimiter
                // included, so its envelope is preserved. The received
                // messages are the replies' bodies: no copy.
                let n = self.parts.len();
                for (i, m) in self.parts.drain(..).enumerate() {
                    let h = encode_frame_header(FrameFlags::message(i + 1 < n), m.len());
                    self.stalled.push(OutFrame::new(h, Outgoing::Owned(m)));
                }
                self.retry_stalled();
            }
            EndpointKind::Xsub => server.zmtp.broker.publish(&mut self.parts),
            EndpointKind::Xpub => {
                // 3.0 subscription messages (first byte 1 / 0), each part
                // on its own as libzmq's XPUB reads them; other messages
                // from subscribers are dropped.
                for part in self.parts.drain(..) {
                    if let Some((subscribe, topic)) = subscription::parse_message_form(&part) {
                        server
                            .zmtp
                            .broker
                            .subscription(self.shared.id, subscribe, topic);
                    }
                }
            }
        }
    }

    /// Queues the stalled echo reply if it fits now.
    fn retry_stalled(&mut self) {
        if self.stalled.is_empty() {
            return;
        }
        match self.shared.queue.push_all(&mut self.stalled) {
            Ok(()) => {
                self.endpoint
                    .stats
                    .messages_out
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(Refusal::Closed) => self.stalled.clear(),
            // Waits; this thread is the queue's only producer, so the
            // reply goes out once the flusher drained enough.
            Err(Refusal::Full) => {}
        }
    }

    fn push_command(&mut self, body: &[u8], server: &Shared) {
        let Ok(m) = server.pool.message_from(body) else {
            return;
        };
        let h = encode_frame_header(FrameFlags::command(), m.len());
        self.control.push_back(OutFrame::new(h, Outgoing::Owned(m)));
    }

    fn push_raw(&mut self, bytes: &[u8], server: &Shared) {
        if let Ok(m) = server.pool.message_from(bytes) {
            self.control.push_back(OutFrame::new(
                netbuf::framing::HeaderBytes::EMPTY,
                Outgoing::Owned(m),
            ));
        }
    }

    /// Our frames go to the flusher if it is at a message boundary.
    fn push_control(&mut self) {
        if self.out_mid_message {
            return;
        }
        while let Some(f) = self.control.pop_front() {
            self.flusher.push(f);
        }
    }

    /// Moves queued frames into the flusher and writes until done or
    /// `WouldBlock` (a writable event resumes it, at the exact byte).
    fn pump(&mut self) -> Result<(), FlushError> {
        let result = self.pump_inner();
        let m = self.flusher.metrics();
        self.endpoint.stats.add_flush(&m, &self.seen);
        self.seen = m;
        result
    }

    fn pump_inner(&mut self) -> Result<(), FlushError> {
        loop {
            let mut idle = false;
            if self.flusher.pending_bytes() < FLUSHER_HIGH {
                self.push_control();
                let ZmtpConn {
                    flusher,
                    shared,
                    control,
                    out_mid_message,
                    large_threshold,
                    endpoint,
                    ..
                } = self;
                let mut large = 0u64;
                idle = shared.queue.drain_each(DRAIN_BATCH, |f| {
                    let h = f.header.as_slice();
                    *out_mid_message = h.first().is_some_and(|b| b & FrameFlags::MORE != 0);
                    if f.body.len() >= *large_threshold {
                        large += (h.len() + f.body.len()) as u64;
                    }
                    flusher.push(f);
                    if !*out_mid_message {
                        while let Some(c) = control.pop_front() {
                            flusher.push(c);
                        }
                    }
                });
                if large > 0 {
                    endpoint
                        .stats
                        .large_bytes
                        .fetch_add(large, Ordering::Relaxed);
                }
            }
            if self.flusher.is_empty() {
                if idle {
                    return Ok(());
                }
                continue;
            }
            match self.flusher.flush(&mut self.stream)? {
                Flushed::Done if idle && self.control.is_empty() => return Ok(()),
                Flushed::Done => {}
                Flushed::WouldBlock => return Ok(()),
            }
        }
    }

    /// Ends the connection: an ERROR command where the peer can read it,
    /// one log line, counters, and every registration undone. The caller
    /// deregisters and shuts the stream.
    pub(crate) fn teardown(&mut self, server: &Shared, why: ZmtpClose) {
        let stats = self.endpoint.stats.clone();
        let (reason, error) = match why {
            ZmtpClose::Quiet(r) => (r, None),
            ZmtpClose::Protocol(e) => {
                if !matches!(e, ZmtpError::PeerError(_)) {
                    stats.sessions_rejected.fetch_add(1, Ordering::Relaxed);
                    server
                        .counters
                        .sessions_rejected
                        .fetch_add(1, Ordering::Relaxed);
                }
                let cmd = e.error_command();
                (format!("protocol error: {e}"), cmd)
            }
            ZmtpClose::Server(r) => (r.clone(), Some(r)),
        };
        // Best effort: only at a message boundary, after our greeting.
        if let Some(text) = error.filter(|_| !self.out_mid_message) {
            self.push_control();
            self.push_command(&command::error(&text), server);
            self.push_control();
            let _ = self.flusher.flush(&mut self.stream);
        }
        tracing::info!(
            session = self.shared.id,
            endpoint = %format_args!("{} {}", self.endpoint.kind.label(), self.endpoint.address),
            reason = %reason,
            "zmtp session closed"
        );
        match self.role {
            Role::None => {}
            Role::PairPeer => {
                let _ = self.endpoint.pair_peer.compare_exchange(
                    self.shared.id,
                    0,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
            }
            Role::Broker => server.zmtp.broker.remove(self.shared.id),
        }
        self.shared.queue.close();
        let m = self.flusher.metrics();
        stats.add_flush(&m, &self.seen);
        self.seen = m;
        server.counters.add_flushed(&m);
        stats.sessions_closed.fetch_add(1, Ordering::Relaxed);
        self.flusher.clear();
        self.control.clear();
        self.stalled.clear();
        self.parts.clear();
    }
}

fn write_failed(e: FlushError) -> ZmtpClose {
    ZmtpClose::Quiet(format!("write failed: {e}"))
}
