//! [`Transform`]: a per-session byte-stream transform applied by the
//! flusher while it copies into the send buffer, and
//! [`ChaCha20Transform`] (cargo feature `chacha20`).

/// A per-session byte-stream transform applied while copying into the
/// send buffer (a stand-in for session encryption).
pub trait Transform: Send {
    /// Writes the transform of `src` into `dst` (same length), continuing
    /// the session's stream.
    fn apply(&mut self, src: &[u8], dst: &mut [u8]);
}

#[cfg(feature = "chacha20")]
/// ChaCha20 (RFC 8439) keystream applied to the session's byte stream.
///
/// ```
/// use netbuf::{ChaCha20Transform, Transform};
/// let mut a = ChaCha20Transform::new([7; 32], [1; 12]);
/// let mut b = ChaCha20Transform::new([7; 32], [1; 12]);
/// let mut enc = [0u8; 5];
/// a.apply(b"hello", &mut enc);
/// let mut dec = [0u8; 5];
/// b.apply(&enc, &mut dec);
/// assert_eq!(&dec, b"hello");
/// ```
pub struct ChaCha20Transform {
    cipher: chacha20::ChaCha20,
}

#[cfg(feature = "chacha20")]
impl ChaCha20Transform {
    /// A cipher for one session's stream.
    pub fn new(key: [u8; 32], nonce: [u8; 12]) -> Self {
        use chacha20::cipher::KeyIvInit;
        ChaCha20Transform {
            cipher: chacha20::ChaCha20::new(&key.into(), &nonce.into()),
        }
    }
}

#[cfg(feature = "chacha20")]
impl std::fmt::Debug for ChaCha20Transform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChaCha20Transform")
    }
}

#[cfg(feature = "chacha20")]
impl Transform for ChaCha20Transform {
    fn apply(&mut self, src: &[u8], dst: &mut [u8]) {
        use chacha20::cipher::StreamCipher;
        // Lengths are equal by contract; a ChaCha20 stream of 256 GiB per
        // session cannot be exhausted by a server's session.
        if self.cipher.apply_keystream_b2b(src, dst).is_err() {
            dst.fill(0);
        }
    }
}
