//! ZMTP commands (the body of a frame with the COMMAND flag): a 1-byte name
//! length, the name, then command data.
//!
//! * `READY` (NULL mechanism): metadata properties, each a 1-byte name
//!   length, the name, a 4-byte big-endian value length, the value
//!   (`Socket-Type`, `Identity`; names are case-insensitive).
//! * `ERROR`: a 1-byte reason length and the reason.
//! * `PING` (3.1): a 2-byte TTL in tenths of a second and up to 16 bytes of
//!   context; `PONG` echoes the context.
//! * `SUBSCRIBE` / `CANCEL` (3.1): the rest of the body is the topic prefix.

use super::error::ZmtpError;

/// The most context bytes a PING carries (longer ones are truncated, as
/// libzmq does).
pub const MAX_PING_CONTEXT: usize = 16;

/// A PING's context, echoed in the PONG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PingContext {
    bytes: [u8; MAX_PING_CONTEXT],
    len: u8,
}

impl PingContext {
    /// The first [`MAX_PING_CONTEXT`] bytes of `src`.
    pub fn new(src: &[u8]) -> PingContext {
        let len = src.len().min(MAX_PING_CONTEXT);
        let mut bytes = [0u8; MAX_PING_CONTEXT];
        bytes[..len].copy_from_slice(&src[..len]);
        PingContext {
            bytes,
            len: len as u8,
        }
    }

    /// The context bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// The metadata of a READY command this server uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata<'a> {
    /// `Socket-Type`, if present.
    pub socket_type: Option<&'a [u8]>,
    /// `Identity`, if present.
    pub identity: Option<&'a [u8]>,
}

/// A parsed command, borrowing from the frame body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// `READY` with its metadata.
    Ready(Metadata<'a>),
    /// `ERROR` with its reason.
    Error(&'a [u8]),
    /// `PING`: TTL (tenths of a second) and context.
    Ping {
        /// How long the peer may wait for traffic before closing.
        ttl_deciseconds: u16,
        /// Context to echo in the PONG.
        context: PingContext,
    },
    /// `PONG` with the context of our PING.
    Pong(&'a [u8]),
    /// `SUBSCRIBE` to a topic prefix.
    Subscribe(&'a [u8]),
    /// `CANCEL` a topic prefix.
    Cancel(&'a [u8]),
    /// Any other command (ignored after the handshake, as libzmq does).
    Other(&'a [u8]),
}

impl<'a> Command<'a> {
    /// Parses a command frame's body.
    pub fn parse(body: &'a [u8]) -> Result<Command<'a>, ZmtpError> {
        let (&name_len, rest) = body
            .split_first()
            .ok_or(ZmtpError::MalformedCommand("empty command frame"))?;
        let name_len = name_len as usize;
        if rest.len() < name_len {
            return Err(ZmtpError::MalformedCommand(
                "command name past the frame end",
            ));
        }
        let (name, data) = rest.split_at(name_len);
        Ok(match name {
            b"READY" => Command::Ready(parse_metadata(data)?),
            b"ERROR" => {
                let (&len, reason) = data
                    .split_first()
                    .ok_or(ZmtpError::MalformedCommand("ERROR without a reason length"))?;
                let reason = reason
                    .get(..len as usize)
                    .ok_or(ZmtpError::MalformedCommand(
                        "ERROR reason past the frame end",
                    ))?;
                Command::Error(reason)
            }
            b"PING" => {
                let ttl = data
                    .get(..2)
                    .ok_or(ZmtpError::MalformedCommand("PING without a TTL"))?;
                Command::Ping {
                    ttl_deciseconds: u16::from_be_bytes([ttl[0], ttl[1]]),
                    context: PingContext::new(&data[2..]),
                }
            }
            b"PONG" => Command::Pong(data),
            b"SUBSCRIBE" => Command::Subscribe(data),
            b"CANCEL" => Command::Cancel(data),
            other => Command::Other(other),
        })
    }

    /// The command's name, for log lines.
    pub fn name(&self) -> String {
        match self {
            Command::Ready(_) => "READY".into(),
            Command::Error(_) => "ERROR".into(),
            Command::Ping { .. } => "PING".into(),
            Command::Pong(_) => "PONG".into(),
            Command::Subscribe(_) => "SUBSCRIBE".into(),
            Command::Cancel(_) => "CANCEL".into(),
            Command::Other(n) => String::from_utf8_lossy(n).into_owned(),
        }
    }
}

/// Parses READY metadata; any truncated property is an error.
pub fn parse_metadata(mut data: &[u8]) -> Result<Metadata<'_>, ZmtpError> {
    const TRUNCATED: ZmtpError = ZmtpError::MalformedCommand("truncated metadata property");
    let mut meta = Metadata::default();
    while let Some((&name_len, rest)) = data.split_first() {
        let name = rest.get(..name_len as usize).ok_or(TRUNCATED)?;
        let rest = &rest[name_len as usize..];
        let len = rest.get(..4).ok_or(TRUNCATED)?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let value = rest.get(4..4usize.saturating_add(len)).ok_or(TRUNCATED)?;
        if name.eq_ignore_ascii_case(b"Socket-Type") {
            meta.socket_type = Some(value);
        } else if name.eq_ignore_ascii_case(b"Identity") {
            meta.identity = Some(value);
        }
        data = &rest[4 + len..];
    }
    Ok(meta)
}

/// Appends a command body (name and data) to `out`.
fn put_command(out: &mut Vec<u8>, name: &[u8], data: &[u8]) {
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(data);
}

/// The body of a READY command with `Socket-Type` and, when given,
/// `Identity` (libzmq sends it for REQ, DEALER and ROUTER sockets).
pub fn ready(socket_type: &str, identity: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    put_command(&mut out, b"READY", &[]);
    let mut prop = |name: &[u8], value: &[u8]| {
        out.push(name.len() as u8);
        out.extend_from_slice(name);
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
    };
    prop(b"Socket-Type", socket_type.as_bytes());
    if let Some(id) = identity {
        prop(b"Identity", id);
    }
    out
}

/// The body of an ERROR command; the reason is cut to 255 bytes (at a
/// character boundary).
pub fn error(reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(255);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = Vec::with_capacity(7 + end);
    put_command(&mut out, b"ERROR", &[end as u8]);
    out.extend_from_slice(&reason.as_bytes()[..end]);
    out
}

/// The body of a PONG echoing `context`.
pub fn pong(context: &PingContext) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + MAX_PING_CONTEXT);
    put_command(&mut out, b"PONG", context.as_slice());
    out
}

/// The body of a PING with a TTL and context (for clients and tests).
pub fn ping(ttl_deciseconds: u16, context: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_command(&mut out, b"PING", &ttl_deciseconds.to_be_bytes());
    out.extend_from_slice(context);
    out
}

/// The body of a SUBSCRIBE (`subscribe`) or CANCEL command for `topic`.
pub fn subscription(subscribe: bool, topic: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + topic.len());
    let name: &[u8] = if subscribe { b"SUBSCRIBE" } else { b"CANCEL" };
    put_command(&mut out, name, topic);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_roundtrip() {
        let b = ready("DEALER", Some(b"me"));
        let Command::Ready(m) = Command::parse(&b).unwrap() else {
            panic!("READY expected")
        };
        assert_eq!(m.socket_type, Some(&b"DEALER"[..]));
        assert_eq!(m.identity, Some(&b"me"[..]));
        let b = ready("SUB", None);
        assert_eq!(
            Command::parse(&b).unwrap(),
            Command::Ready(Metadata {
                socket_type: Some(b"SUB"),
                identity: None
            })
        );
    }

    #[test]
    fn metadata_names_are_case_insensitive_and_truncation_fails() {
        let mut b = ready("PUB", None);
        b[7..18].copy_from_slice(b"socket-type");
        assert!(matches!(
            Command::parse(&b),
            Ok(Command::Ready(Metadata {
                socket_type: Some(b"PUB"),
                ..
            }))
        ));
        for cut in 7..b.len() {
            assert!(Command::parse(&b[..cut]).is_err(), "cut {cut}");
        }
        let mut huge = ready("PUB", None);
        huge[19..23].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(Command::parse(&huge).is_err());
    }

    #[test]
    fn error_ping_pong_subscribe() {
        assert_eq!(Command::parse(&error("no")).unwrap(), Command::Error(b"no"));
        let long = "x".repeat(300);
        assert_eq!(error(&long).len(), 7 + 255);
        let Command::Ping {
            ttl_deciseconds,
            context,
        } = Command::parse(&ping(50, b"ctx")).unwrap()
        else {
            panic!("PING expected")
        };
        assert_eq!((ttl_deciseconds, context.as_slice()), (50, &b"ctx"[..]));
        let Command::Ping { context, .. } = Command::parse(&ping(1, &[7; 40])).unwrap() else {
            panic!("PING expected")
        };
        assert_eq!(context.as_slice(), &[7; 16]);
        assert_eq!(
            Command::parse(&pong(&context)).unwrap(),
            Command::Pong(&[7; 16])
        );
        assert!(Command::parse(b"\x04PING\x00").is_err());
        assert_eq!(
            Command::parse(&subscription(true, b"news")).unwrap(),
            Command::Subscribe(b"news")
        );
        assert_eq!(
            Command::parse(&subscription(false, b"")).unwrap(),
            Command::Cancel(b"")
        );
        assert_eq!(Command::parse(b"\x03FOOx").unwrap(), Command::Other(b"FOO"));
        assert!(Command::parse(b"").is_err());
        assert!(Command::parse(b"\x09SUB").is_err());
        assert!(Command::parse(b"\x05ERROR").is_err());
        assert!(Command::parse(b"\x05ERROR\x05ab").is_err());
    }
}
