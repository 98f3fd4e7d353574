//! Why a ZMTP connection is closed. Every variant closes that connection
//! alone; [`ZmtpError::error_command`] says whether the peer is first told
//! why with an ERROR command.

use netbuf::framing::DecodeError;

/// A protocol violation or refusal on one ZMTP connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZmtpError {
    /// The first bytes are not a ZMTP 3 greeting (garbage, or an older
    /// version): the peer cannot read an ERROR command, so it is not sent.
    #[error("bad greeting: {0}")]
    Handshake(DecodeError),
    /// The greeting's fixed fields are malformed.
    #[error("bad greeting: {0}")]
    BadGreeting(&'static str),
    /// A mechanism other than NULL.
    #[error("unsupported security mechanism {0} (only NULL)")]
    UnsupportedMechanism(String),
    /// The frame stream is invalid (reserved flags, oversize part,
    /// truncated frame...).
    #[error("{0}")]
    Frame(DecodeError),
    /// A command that is not valid here (e.g. a second READY).
    #[error("unexpected command {0}")]
    UnexpectedCommand(String),
    /// A command whose body does not parse.
    #[error("malformed command: {0}")]
    MalformedCommand(&'static str),
    /// A message frame before the handshake completed.
    #[error("message frame before READY")]
    MessageBeforeReady,
    /// READY without a Socket-Type property.
    #[error("READY without Socket-Type")]
    MissingSocketType,
    /// A socket type name no ZMTP socket has.
    #[error("unknown socket type {0:?}")]
    UnknownSocketType(String),
    /// A socket type that cannot talk to this endpoint.
    #[error("socket type {peer} is not compatible with {ours}")]
    IncompatibleSocketType {
        /// The peer's socket type.
        peer: &'static str,
        /// Ours.
        ours: &'static str,
    },
    /// An identity longer than 255 bytes or starting with a zero byte.
    #[error("invalid identity ({0} bytes)")]
    BadIdentity(usize),
    /// The parts of one message add up to more than the session may queue.
    #[error("message of {bytes} bytes exceeds the bound of {max} bytes")]
    MessageTooLarge {
        /// Bytes of the parts received so far.
        bytes: usize,
        /// The bound.
        max: usize,
    },
    /// A PAIR endpoint already has its peer.
    #[error("PAIR endpoint already has a peer")]
    PairBusy,
    /// The peer sent an ERROR command.
    #[error("peer sent ERROR: {0}")]
    PeerError(String),
}

impl ZmtpError {
    /// The reason to send in an ERROR command, or `None` when the peer
    /// should not get one (it cannot parse it, or it sent ERROR itself).
    pub fn error_command(&self) -> Option<String> {
        match self {
            ZmtpError::Handshake(_) | ZmtpError::PeerError(_) => None,
            e => Some(e.to_string()),
        }
    }
}
