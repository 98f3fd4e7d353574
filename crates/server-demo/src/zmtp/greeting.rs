//! The 64-byte ZMTP 3.x greeting (rfc.zeromq.org spec 23 / 37):
//!
//! ```text
//! offset  0  signature  0xFF, 8 padding bytes (not significant), 0x7F
//! offset 10  major      3
//! offset 11  minor      0 (ZMTP 3.0) or 1 (ZMTP 3.1)
//! offset 12  mechanism  20 bytes, ASCII, NUL-padded ("NULL", "PLAIN", "CURVE")
//! offset 32  as-server  0 or 1
//! offset 33  filler     31 bytes
//! ```
//!
//! The version is detected from the first 11 bytes, as libzmq does: a first
//! byte other than 0xFF, or a 10th byte with its low bit clear, is an
//! unversioned ZMTP 1.0 peer; byte 10 is the major version. Those checks
//! run as soon as the bytes arrive, so a peer of an older version is
//! refused before it sends the rest.

use netbuf::framing::DecodeError;

use super::error::ZmtpError;

/// Bytes in a ZMTP 3 greeting.
pub const GREETING_LEN: usize = 64;
/// Signature + major version: what the framing checks first.
pub const GREETING_HEAD_LEN: usize = 11;
/// The rest of the greeting, delivered as the greeting "frame" body.
pub const GREETING_BODY_LEN: usize = GREETING_LEN - GREETING_HEAD_LEN;

/// Our greeting: ZMTP 3.1, NULL mechanism, as-server 0.
pub const OUR_GREETING: [u8; GREETING_LEN] = {
    let mut g = [0u8; GREETING_LEN];
    g[0] = 0xFF;
    g[9] = 0x7F;
    g[10] = 3;
    g[11] = 1;
    g[12] = b'N';
    g[13] = b'U';
    g[14] = b'L';
    g[15] = b'L';
    g
};

/// A security mechanism named in a greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    /// No security (the only one this server speaks).
    Null,
    /// Any other name (PLAIN, CURVE, GSSAPI, ...).
    Other(String),
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mechanism::Null => f.write_str("NULL"),
            Mechanism::Other(n) => f.write_str(n),
        }
    }
}

/// The peer's greeting, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// Major version (3 or more).
    pub major: u8,
    /// Minor version (0: ZMTP 3.0, 1 or more: ZMTP 3.1).
    pub minor: u8,
    /// The mechanism.
    pub mechanism: Mechanism,
    /// The as-server flag.
    pub as_server: bool,
}

impl Greeting {
    /// Whether the peer speaks ZMTP 3.1 or later (PING/PONG,
    /// SUBSCRIBE/CANCEL commands).
    pub fn is_3_1(&self) -> bool {
        self.major > 3 || self.minor >= 1
    }

    /// Parses the 53 bytes after signature and major version.
    pub fn parse(major: u8, rest: &[u8]) -> Result<Greeting, ZmtpError> {
        if rest.len() != GREETING_BODY_LEN {
            return Err(ZmtpError::BadGreeting("greeting of the wrong length"));
        }
        let minor = rest[0];
        let name = &rest[1..21];
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        if name[end..].iter().any(|&b| b != 0) || !name[..end].is_ascii() {
            return Err(ZmtpError::BadGreeting("malformed mechanism name"));
        }
        let mechanism = match &name[..end] {
            b"NULL" => Mechanism::Null,
            other => Mechanism::Other(String::from_utf8_lossy(other).into_owned()),
        };
        let as_server = match rest[21] {
            0 => false,
            1 => true,
            _ => return Err(ZmtpError::BadGreeting("as-server flag is neither 0 nor 1")),
        };
        Ok(Greeting {
            major,
            minor,
            mechanism,
            as_server,
        })
    }
}

/// Checks the greeting prefix in `src`: `Ok(Some(major))` once 11 valid
/// bytes are in, `Ok(None)` while they could still become valid, an error
/// as soon as they cannot (wrong signature, version below 3).
pub fn check_prefix(src: &[u8]) -> Result<Option<u8>, DecodeError> {
    let Some(&first) = src.first() else {
        return Ok(None);
    };
    if first != 0xFF {
        return Err(DecodeError::malformed(
            "not a ZMTP 3 greeting (unversioned ZMTP 1.0 peer or garbage)",
        ));
    }
    if let Some(&b9) = src.get(9)
        && b9 & 1 == 0
    {
        return Err(DecodeError::malformed(
            "not a ZMTP 3 greeting (unversioned ZMTP 1.0 peer)",
        ));
    }
    match src.get(10) {
        None => Ok(None),
        Some(&major) if major < 3 => Err(DecodeError::malformed(
            "ZMTP major version below 3 is not supported",
        )),
        Some(&major) => Ok(Some(major)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_greeting_parses_as_null_3_1() {
        let g = &OUR_GREETING;
        assert_eq!(check_prefix(g), Ok(Some(3)));
        let parsed = Greeting::parse(3, &g[GREETING_HEAD_LEN..]).unwrap();
        assert_eq!(parsed.mechanism, Mechanism::Null);
        assert!(parsed.is_3_1() && !parsed.as_server);
    }

    #[test]
    fn every_prefix_of_a_good_greeting_waits() {
        for n in 0..GREETING_HEAD_LEN {
            assert_eq!(check_prefix(&OUR_GREETING[..n]), Ok(None), "{n}");
        }
    }

    #[test]
    fn old_versions_and_garbage_fail_early() {
        let mut g = OUR_GREETING;
        g[10] = 1; // ZMTP 2.0
        assert!(check_prefix(&g[..11]).is_err());
        g[10] = 0;
        assert!(check_prefix(&g[..11]).is_err());
        assert!(check_prefix(b"G").is_err());
        let mut v1 = OUR_GREETING;
        v1[9] = 0x00;
        assert!(check_prefix(&v1[..10]).is_err());
    }

    #[test]
    fn mechanisms_and_as_server() {
        let mut g = OUR_GREETING;
        g[12..17].copy_from_slice(b"PLAIN");
        let p = Greeting::parse(3, &g[GREETING_HEAD_LEN..]).unwrap();
        assert_eq!(p.mechanism, Mechanism::Other("PLAIN".into()));
        g[32] = 7;
        assert!(Greeting::parse(3, &g[GREETING_HEAD_LEN..]).is_err());
        let mut g = OUR_GREETING;
        g[20] = b'X'; // a byte after the NUL padding began
        assert!(Greeting::parse(3, &g[GREETING_HEAD_LEN..]).is_err());
        let mut g = OUR_GREETING;
        g[11] = 0;
        assert!(
            !Greeting::parse(3, &g[GREETING_HEAD_LEN..])
                .unwrap()
                .is_3_1()
        );
    }
}
