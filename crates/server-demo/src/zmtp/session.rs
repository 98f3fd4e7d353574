//! The per-connection ZMTP state machine, free of IO: frames in (as the
//! receive buffer decodes them), steps out (what to send, what to deliver).
//!
//! ```text
//! Greeting --(peer greeting: version 3+, NULL)--> Handshake   [send READY]
//! Handshake --(peer READY, compatible type)--> Active
//! Active: message parts assembled into whole messages; PING -> PONG;
//!         SUBSCRIBE / CANCEL; other commands ignored (as libzmq)
//! any error -> closed (ERROR command first where the peer can read it)
//! ```

use netbuf::Message;

use super::command::{self, Command, PingContext};
use super::error::ZmtpError;
use super::frame::{FrameFlags, ZmtpHeader};
use super::greeting::{Greeting, Mechanism};
use super::socket_type::{EndpointKind, SocketType};

/// Bytes counted per message part on top of its body when a message is
/// checked against the session's bound (its header and queue entry).
pub const PART_OVERHEAD: usize = 9 + crate::server::queue::ENTRY_OVERHEAD;

/// Where the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the peer's greeting.
    Greeting,
    /// Greetings exchanged; waiting for the peer's READY.
    Handshake,
    /// Messages flow.
    Active,
}

/// What the handshake learnt about the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its greeting.
    pub greeting: Greeting,
    /// Its socket type.
    pub socket_type: SocketType,
    /// Its identity (empty when it sent none).
    pub identity: Vec<u8>,
}

/// What a frame asks of the connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do (a part of an unfinished message, an ignored
    /// command, a PONG).
    Nothing,
    /// The peer's greeting is valid: switch the framing to frames and send
    /// this READY command body.
    Greeted {
        /// The READY command body to send.
        ready: Vec<u8>,
    },
    /// The handshake completed ([`ZmtpSession::peer`] is set).
    Ready,
    /// A whole message is ready: take it with [`ZmtpSession::take_message`].
    Message,
    /// Send a PONG with this context.
    Pong(PingContext),
    /// A SUBSCRIBE (`subscribe`) or CANCEL command for `topic`.
    Subscription {
        /// Subscribe (`true`) or cancel.
        subscribe: bool,
        /// The topic prefix.
        topic: Vec<u8>,
    },
}

/// One connection's protocol state.
#[derive(Debug)]
pub struct ZmtpSession {
    kind: EndpointKind,
    phase: Phase,
    greeting: Option<Greeting>,
    peer: Option<PeerInfo>,
    parts: Vec<Message>,
    parts_bytes: usize,
    max_message: usize,
}

impl ZmtpSession {
    /// A session of an endpoint of `kind` whose messages may hold at most
    /// `max_message` bytes (parts plus [`PART_OVERHEAD`] each).
    pub fn new(kind: EndpointKind, max_message: usize) -> ZmtpSession {
        ZmtpSession {
            kind,
            phase: Phase::Greeting,
            greeting: None,
            peer: None,
            parts: Vec::new(),
            parts_bytes: 0,
            max_message,
        }
    }

    /// The endpoint kind.
    pub fn kind(&self) -> EndpointKind {
        self.kind
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The peer, once the handshake completed.
    pub fn peer(&self) -> Option<&PeerInfo> {
        self.peer.as_ref()
    }

    /// Whether the peer's greeting was read (so it can parse an ERROR
    /// command).
    pub fn greeted(&self) -> bool {
        self.phase != Phase::Greeting
    }

    /// Handles one decoded frame.
    pub fn on_frame(&mut self, header: ZmtpHeader, body: Message) -> Result<Step, ZmtpError> {
        match (self.phase, header) {
            (Phase::Greeting, ZmtpHeader::Greeting { major }) => self.on_greeting(major, &body),
            (_, ZmtpHeader::Greeting { .. }) | (Phase::Greeting, ZmtpHeader::Frame(_)) => Err(
                ZmtpError::BadGreeting("framing out of step with the session"),
            ),
            (_, ZmtpHeader::Frame(flags)) if flags.is_command() => self.on_command(&body),
            (Phase::Handshake, ZmtpHeader::Frame(_)) => Err(ZmtpError::MessageBeforeReady),
            (Phase::Active, ZmtpHeader::Frame(flags)) => self.on_part(flags, body),
        }
    }

    /// Moves the parts of the message announced by [`Step::Message`] into
    /// `out` (in order; the last part is the one without MORE).
    pub fn take_message(&mut self, out: &mut Vec<Message>) {
        out.append(&mut self.parts);
        self.parts_bytes = 0;
    }

    /// Whether a message is partly received.
    pub fn mid_message(&self) -> bool {
        !self.parts.is_empty()
    }

    fn on_greeting(&mut self, major: u8, rest: &[u8]) -> Result<Step, ZmtpError> {
        let g = Greeting::parse(major, rest)?;
        if let Mechanism::Other(name) = &g.mechanism {
            return Err(ZmtpError::UnsupportedMechanism(name.clone()));
        }
        self.greeting = Some(g);
        self.phase = Phase::Handshake;
        let identity: Option<&[u8]> = self.kind.sends_identity().then_some(&[]);
        Ok(Step::Greeted {
            ready: command::ready(self.kind.socket_type().name(), identity),
        })
    }

    fn on_command(&mut self, body: &[u8]) -> Result<Step, ZmtpError> {
        let cmd = Command::parse(body)?;
        if let Command::Error(reason) = cmd {
            return Err(ZmtpError::PeerError(
                String::from_utf8_lossy(reason).into_owned(),
            ));
        }
        if self.phase == Phase::Handshake {
            let Command::Ready(meta) = cmd else {
                return Err(ZmtpError::UnexpectedCommand(cmd.name()));
            };
            let name = meta.socket_type.ok_or(ZmtpError::MissingSocketType)?;
            let socket_type = self.kind.check_peer(name)?;
            let identity = meta.identity.unwrap_or_default();
            if identity.len() > 255 {
                return Err(ZmtpError::BadIdentity(identity.len()));
            }
            self.peer = Some(PeerInfo {
                greeting: self
                    .greeting
                    .take()
                    .ok_or(ZmtpError::BadGreeting("no greeting"))?,
                socket_type,
                identity: identity.to_vec(),
            });
            self.phase = Phase::Active;
            return Ok(Step::Ready);
        }
        Ok(match cmd {
            Command::Ready(_) => return Err(ZmtpError::UnexpectedCommand("READY".into())),
            Command::Ping { context, .. } => Step::Pong(context),
            Command::Subscribe(t) if self.kind == EndpointKind::Xpub => Step::Subscription {
                subscribe: true,
                topic: t.to_vec(),
            },
            Command::Cancel(t) if self.kind == EndpointKind::Xpub => Step::Subscription {
                subscribe: false,
                topic: t.to_vec(),
            },
            // PONG (we send no PING), subscriptions where nothing is
            // published, unknown commands: ignored, as libzmq does.
            _ => Step::Nothing,
        })
    }

    fn on_part(&mut self, flags: FrameFlags, body: Message) -> Result<Step, ZmtpError> {
        self.parts_bytes = self.parts_bytes.saturating_add(body.len() + PART_OVERHEAD);
        if self.parts_bytes > self.max_message {
            return Err(ZmtpError::MessageTooLarge {
                bytes: self.parts_bytes,
                max: self.max_message,
            });
        }
        self.parts.push(body);
        Ok(if flags.more() {
            Step::Nothing
        } else {
            Step::Message
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zmtp::greeting::{GREETING_HEAD_LEN, OUR_GREETING};
    use netbuf::MessagePool;

    fn msg(pool: &MessagePool, b: &[u8]) -> Message {
        pool.message_from(b).unwrap()
    }

    fn greet(s: &mut ZmtpSession, pool: &MessagePool) -> Step {
        s.on_frame(
            ZmtpHeader::Greeting { major: 3 },
            msg(pool, &OUR_GREETING[GREETING_HEAD_LEN..]),
        )
        .unwrap()
    }

    fn cmd(s: &mut ZmtpSession, pool: &MessagePool, b: &[u8]) -> Result<Step, ZmtpError> {
        s.on_frame(ZmtpHeader::Frame(FrameFlags::command()), msg(pool, b))
    }

    #[test]
    fn handshake_then_multipart() {
        let pool = MessagePool::new();
        let mut s = ZmtpSession::new(EndpointKind::Router, 1 << 20);
        let Step::Greeted { ready } = greet(&mut s, &pool) else {
            panic!("greeted expected")
        };
        assert!(
            matches!(Command::parse(&ready), Ok(Command::Ready(m)) if m.identity == Some(&[][..]))
        );
        let part = |s: &mut ZmtpSession, more, b: &[u8]| {
            s.on_frame(ZmtpHeader::Frame(FrameFlags::message(more)), msg(&pool, b))
        };
        assert_eq!(
            part(&mut s, false, b"x"),
            Err(ZmtpError::MessageBeforeReady)
        );
        assert_eq!(
            cmd(&mut s, &pool, &command::ready("REQ", Some(b"id"))),
            Ok(Step::Ready)
        );
        assert_eq!(s.peer().unwrap().identity, b"id");
        assert_eq!(part(&mut s, true, b""), Ok(Step::Nothing));
        // A PING between parts is answered; the message stays whole.
        assert!(matches!(
            cmd(&mut s, &pool, &command::ping(10, b"c")),
            Ok(Step::Pong(_))
        ));
        assert_eq!(part(&mut s, false, b"body"), Ok(Step::Message));
        let mut out = Vec::new();
        s.take_message(&mut out);
        assert_eq!(out.len(), 2);
        assert_eq!((&out[0][..], &out[1][..]), (&b""[..], &b"body"[..]));
        assert_eq!(
            cmd(&mut s, &pool, &command::ready("REQ", None)),
            Err(ZmtpError::UnexpectedCommand("READY".into()))
        );
    }

    #[test]
    fn refusals() {
        let pool = MessagePool::new();
        let mut s = ZmtpSession::new(EndpointKind::Pair, 1 << 20);
        let mut plain = OUR_GREETING;
        plain[12..17].copy_from_slice(b"PLAIN");
        assert_eq!(
            s.on_frame(
                ZmtpHeader::Greeting { major: 3 },
                msg(&pool, &plain[GREETING_HEAD_LEN..])
            ),
            Err(ZmtpError::UnsupportedMechanism("PLAIN".into()))
        );
        let mut s = ZmtpSession::new(EndpointKind::Pair, 1 << 20);
        greet(&mut s, &pool);
        assert!(matches!(
            cmd(&mut s, &pool, &command::ready("DEALER", None)),
            Err(ZmtpError::IncompatibleSocketType { .. })
        ));
        let mut s = ZmtpSession::new(EndpointKind::Pair, 1 << 20);
        greet(&mut s, &pool);
        assert_eq!(
            cmd(&mut s, &pool, b"\x05READY"),
            Err(ZmtpError::MissingSocketType)
        );
        let mut s = ZmtpSession::new(EndpointKind::Pair, 1 << 20);
        greet(&mut s, &pool);
        assert!(matches!(
            cmd(&mut s, &pool, &command::ping(1, b"")),
            Err(ZmtpError::UnexpectedCommand(_))
        ));
        let mut s = ZmtpSession::new(EndpointKind::Pair, 1 << 20);
        greet(&mut s, &pool);
        assert!(matches!(
            cmd(&mut s, &pool, &command::error("bye")),
            Err(ZmtpError::PeerError(r)) if r == "bye"
        ));
    }

    #[test]
    fn message_bound_and_subscriptions() {
        let pool = MessagePool::new();
        let mut s = ZmtpSession::new(EndpointKind::Xpub, 3 * PART_OVERHEAD + 10);
        greet(&mut s, &pool);
        cmd(&mut s, &pool, &command::ready("SUB", None)).unwrap();
        assert_eq!(
            cmd(&mut s, &pool, &command::subscription(true, b"t")),
            Ok(Step::Subscription {
                subscribe: true,
                topic: b"t".to_vec()
            })
        );
        let more = ZmtpHeader::Frame(FrameFlags::message(true));
        for _ in 0..3 {
            assert_eq!(s.on_frame(more, msg(&pool, b"abc")), Ok(Step::Nothing));
        }
        assert!(matches!(
            s.on_frame(more, msg(&pool, b"abc")),
            Err(ZmtpError::MessageTooLarge { .. })
        ));
    }
}
