//! ZMTP endpoints as the servers' command lines give them: `tcp://HOST:PORT`
//! (port 0 picks one) or `ipc://PATH`.

pub use server_demo::zmtp::EndpointKind;

/// Parses one `listening zmtp-KIND EP` line of a server's standard output
/// (`server-demo serve` and the libzmq reference print the same lines).
pub fn parse_listening(line: &str) -> Option<(EndpointKind, String)> {
    EndpointKind::parse_listening(line).map(|(k, ep)| (k, ep.to_string()))
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
