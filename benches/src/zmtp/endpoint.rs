//! ZMTP endpoints as the servers' command lines give them: `tcp://HOST:PORT`
//! (port 0 picks one) or `ipc://PATH`.

use std::fmt;

/// The four endpoint kinds of the servers' command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EndpointKind {
    /// `--zmtp-router`: echoes every message to its sender.
    Router,
    /// `--zmtp-pair`: echoes a PAIR peer's messages.
    Pair,
    /// `--zmtp-xsub`: where publishers connect.
    Xsub,
    /// `--zmtp-xpub`: where subscribers connect.
    Xpub,
}

impl EndpointKind {
    /// All four, in command-line order.
    pub const ALL: [EndpointKind; 4] = [
        EndpointKind::Router,
        EndpointKind::Pair,
        EndpointKind::Xsub,
        EndpointKind::Xpub,
    ];

    /// `zmtp-router`, `zmtp-pair`, `zmtp-xsub`, `zmtp-xpub`: the flag
    /// without its dashes and the word of the `listening` line.
    pub fn word(self) -> &'static str {
        match self {
            EndpointKind::Router => "zmtp-router",
            EndpointKind::Pair => "zmtp-pair",
            EndpointKind::Xsub => "zmtp-xsub",
            EndpointKind::Xpub => "zmtp-xpub",
        }
    }

    /// Parses [`word`](Self::word).
    pub fn parse(word: &str) -> Option<EndpointKind> {
        EndpointKind::ALL.into_iter().find(|k| k.word() == word)
    }
}

impl fmt::Display for EndpointKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// Parses one `listening zmtp-KIND EP` line of a server's standard output.
pub fn parse_listening(line: &str) -> Option<(EndpointKind, String)> {
    let mut words = line.split_whitespace();
    if words.next()? != "listening" {
        return None;
    }
    let kind = EndpointKind::parse(words.next()?)?;
    let ep = words.next()?;
    (ep.starts_with("tcp://") || ep.starts_with("ipc://")).then(|| (kind, ep.to_string()))
}

/// The address libzmq binds for `ep`: `tcp://HOST:0` becomes libzmq's
/// `tcp://HOST:*` (an ephemeral port); anything else is unchanged.
pub fn libzmq_bind_address(ep: &str) -> String {
    match ep.strip_suffix(":0") {
        Some(host) if ep.starts_with("tcp://") => format!("{host}:*"),
        _ => ep.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_lines_and_bind_addresses() {
        assert_eq!(
            parse_listening("listening zmtp-router tcp://127.0.0.1:5555"),
            Some((EndpointKind::Router, "tcp://127.0.0.1:5555".into()))
        );
        assert_eq!(
            parse_listening("listening zmtp-xpub ipc:///tmp/x.sock"),
            Some((EndpointKind::Xpub, "ipc:///tmp/x.sock".into()))
        );
        assert_eq!(parse_listening("listening tcp 127.0.0.1:1"), None);
        assert_eq!(
            libzmq_bind_address("tcp://127.0.0.1:0"),
            "tcp://127.0.0.1:*"
        );
        assert_eq!(
            libzmq_bind_address("tcp://127.0.0.1:10"),
            "tcp://127.0.0.1:10"
        );
        assert_eq!(libzmq_bind_address("ipc:///tmp/a:0"), "ipc:///tmp/a:0");
    }
}
