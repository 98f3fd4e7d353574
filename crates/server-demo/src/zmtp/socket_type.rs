//! ZMTP socket types, the kinds of endpoint this server offers, and which
//! peer types each accepts (spec 23 / 37 "socket compatibility").

use super::error::ZmtpError;

/// A ZMTP socket type, as named in the READY command's `Socket-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SocketType {
    /// `PAIR`
    Pair,
    /// `PUB`
    Pub,
    /// `SUB`
    Sub,
    /// `REQ`
    Req,
    /// `REP`
    Rep,
    /// `DEALER`
    Dealer,
    /// `ROUTER`
    Router,
    /// `PULL`
    Pull,
    /// `PUSH`
    Push,
    /// `XPUB`
    Xpub,
    /// `XSUB`
    Xsub,
}

impl SocketType {
    /// Every type.
    pub const ALL: [SocketType; 11] = [
        SocketType::Pair,
        SocketType::Pub,
        SocketType::Sub,
        SocketType::Req,
        SocketType::Rep,
        SocketType::Dealer,
        SocketType::Router,
        SocketType::Pull,
        SocketType::Push,
        SocketType::Xpub,
        SocketType::Xsub,
    ];

    /// The wire name.
    pub const fn name(self) -> &'static str {
        match self {
            SocketType::Pair => "PAIR",
            SocketType::Pub => "PUB",
            SocketType::Sub => "SUB",
            SocketType::Req => "REQ",
            SocketType::Rep => "REP",
            SocketType::Dealer => "DEALER",
            SocketType::Router => "ROUTER",
            SocketType::Pull => "PULL",
            SocketType::Push => "PUSH",
            SocketType::Xpub => "XPUB",
            SocketType::Xsub => "XSUB",
        }
    }

    /// The type named `name` (exact, upper case, as every implementation
    /// sends it).
    pub fn from_name(name: &[u8]) -> Result<SocketType, ZmtpError> {
        SocketType::ALL
            .into_iter()
            .find(|t| t.name().as_bytes() == name)
            .ok_or_else(|| ZmtpError::UnknownSocketType(String::from_utf8_lossy(name).into()))
    }
}

/// The kinds of ZMTP endpoint `serve` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndpointKind {
    /// A ROUTER that sends every message back to the peer that sent it.
    Router,
    /// A PAIR that echoes its one peer's messages.
    Pair,
    /// The broker's publisher side (an XSUB socket: PUB / XPUB peers).
    Xsub,
    /// The broker's subscriber side (an XPUB socket: SUB / XSUB peers).
    Xpub,
}

impl EndpointKind {
    /// Every kind.
    pub const ALL: [EndpointKind; 4] = [
        EndpointKind::Router,
        EndpointKind::Pair,
        EndpointKind::Xsub,
        EndpointKind::Xpub,
    ];

    /// The socket type this endpoint presents.
    pub const fn socket_type(self) -> SocketType {
        match self {
            EndpointKind::Router => SocketType::Router,
            EndpointKind::Pair => SocketType::Pair,
            EndpointKind::Xsub => SocketType::Xsub,
            EndpointKind::Xpub => SocketType::Xpub,
        }
    }

    /// Whether a peer of type `peer` may connect (the spec's valid pairs).
    pub const fn accepts(self, peer: SocketType) -> bool {
        matches!(
            (self, peer),
            (
                EndpointKind::Router,
                SocketType::Dealer | SocketType::Req | SocketType::Router
            ) | (EndpointKind::Pair, SocketType::Pair)
                | (EndpointKind::Xsub, SocketType::Pub | SocketType::Xpub)
                | (EndpointKind::Xpub, SocketType::Sub | SocketType::Xsub)
        )
    }

    /// Checks a peer's `Socket-Type` value against this endpoint.
    pub fn check_peer(self, name: &[u8]) -> Result<SocketType, ZmtpError> {
        let peer = SocketType::from_name(name)?;
        if self.accepts(peer) {
            Ok(peer)
        } else {
            Err(ZmtpError::IncompatibleSocketType {
                peer: peer.name(),
                ours: self.socket_type().name(),
            })
        }
    }

    /// Whether our READY carries an `Identity` (libzmq sends one from REQ,
    /// DEALER and ROUTER sockets).
    pub const fn sends_identity(self) -> bool {
        matches!(self, EndpointKind::Router)
    }

    /// The label in `serve`'s output and in reports, e.g. `zmtp-router`.
    pub const fn label(self) -> &'static str {
        match self {
            EndpointKind::Router => "zmtp-router",
            EndpointKind::Pair => "zmtp-pair",
            EndpointKind::Xsub => "zmtp-xsub",
            EndpointKind::Xpub => "zmtp-xpub",
        }
    }

    /// The kind whose [`label`](Self::label) is `label`.
    pub fn from_label(label: &str) -> Option<EndpointKind> {
        EndpointKind::ALL.into_iter().find(|k| k.label() == label)
    }

    /// Parses one `listening zmtp-KIND EP` line of `serve`'s output (the
    /// line a launcher reads to learn a port picked with `:0`): the kind and
    /// the endpoint, `tcp://HOST:PORT` or `ipc://PATH`.
    ///
    /// ```
    /// use server_demo::zmtp::EndpointKind;
    /// let line = "listening zmtp-router tcp://127.0.0.1:5555";
    /// let parsed = EndpointKind::parse_listening(line);
    /// assert_eq!(parsed, Some((EndpointKind::Router, "tcp://127.0.0.1:5555")));
    /// assert_eq!(EndpointKind::parse_listening("listening tcp 127.0.0.1:1"), None);
    /// ```
    pub fn parse_listening(line: &str) -> Option<(EndpointKind, &str)> {
        let mut words = line.split_whitespace();
        if words.next()? != "listening" {
            return None;
        }
        let kind = EndpointKind::from_label(words.next()?)?;
        let ep = words.next()?;
        (ep.starts_with("tcp://") || ep.starts_with("ipc://")).then_some((kind, ep))
    }
}

impl std::fmt::Display for EndpointKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compatibility_table() {
        let ok = |k: EndpointKind| -> Vec<&str> {
            SocketType::ALL
                .into_iter()
                .filter(|&t| k.accepts(t))
                .map(SocketType::name)
                .collect()
        };
        assert_eq!(ok(EndpointKind::Router), ["REQ", "DEALER", "ROUTER"]);
        assert_eq!(ok(EndpointKind::Pair), ["PAIR"]);
        assert_eq!(ok(EndpointKind::Xsub), ["PUB", "XPUB"]);
        assert_eq!(ok(EndpointKind::Xpub), ["SUB", "XSUB"]);
    }

    #[test]
    fn names_roundtrip_and_unknown_fails() {
        for t in SocketType::ALL {
            assert_eq!(SocketType::from_name(t.name().as_bytes()), Ok(t));
        }
        assert!(matches!(
            EndpointKind::Router.check_peer(b"BOGUS"),
            Err(ZmtpError::UnknownSocketType(_))
        ));
        assert!(matches!(
            EndpointKind::Router.check_peer(b"PUB"),
            Err(ZmtpError::IncompatibleSocketType { .. })
        ));
    }
}
