//! What every soak body carries: a 32-byte [`Stamp`] (magic, connection,
//! sequence, length, checksum) in front of a pseudo-random payload, made by
//! [`make_body`] and checked by [`parse_body`], and the seeded [`Rng`]
//! behind every random choice of a run.

/// Magic of an echo body.
pub const ECHO_MAGIC: u32 = 0x4b41_4f53;
/// Magic of a publish body.
pub const PUB_MAGIC: u32 = 0x3142_5550;
/// Bytes of the stamp at the front of every soak body.
pub const STAMP_LEN: usize = 32;

/// SplitMix64's finalizer.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The soak's seeded generator: netbuf's test-support SplitMix64
/// ([`netbuf::test_util::Rng`]), the one PRNG of the workspace's tests,
/// fuzz harness, benches and soak.
pub use netbuf::test_util::Rng;

/// The generator a soak thread draws from for `seed` (the seed mixed first,
/// so neighbouring seeds give unrelated sequences; the same sequences as
/// before the soak shared netbuf's generator).
pub fn rng(seed: u64) -> Rng {
    Rng::new(mix64(seed ^ 0x5eed))
}

/// The payload checksum (word-wise FNV-style mix, finalized).
pub fn checksum(data: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(a))
            .wrapping_mul(0x0000_0100_0000_01b3)
            .rotate_left(29);
    }
    for &b in words.remainder() {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h ^ data.len() as u64)
}

/// What identifies a soak body: who sent it, its sequence number, its
/// length and the checksum of its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stamp {
    /// Sending connection.
    pub conn: u64,
    /// Sequence number (per connection for echoes, per connection and room
    /// for publishes).
    pub seq: u64,
    /// Body length, stamp included.
    pub len: u32,
    /// Checksum of the payload after the stamp.
    pub sum: u64,
}

/// Builds a body of `len` bytes (at least [`STAMP_LEN`]) and its stamp.
pub fn make_body(magic: u32, conn: u64, seq: u64, len: usize) -> (Vec<u8>, Stamp) {
    let len = len.max(STAMP_LEN);
    let mut body = vec![0u8; len];
    let mut state = mix64(conn.rotate_left(32) ^ seq ^ magic as u64);
    for chunk in body[STAMP_LEN..].chunks_mut(8) {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let w = mix64(state).to_le_bytes();
        chunk.copy_from_slice(&w[..chunk.len()]);
    }
    let sum = checksum(&body[STAMP_LEN..]);
    body[0..4].copy_from_slice(&magic.to_le_bytes());
    body[4..12].copy_from_slice(&conn.to_le_bytes());
    body[12..20].copy_from_slice(&seq.to_le_bytes());
    body[20..24].copy_from_slice(&(len as u32).to_le_bytes());
    body[24..32].copy_from_slice(&sum.to_le_bytes());
    (
        body,
        Stamp {
            conn,
            seq,
            len: len as u32,
            sum,
        },
    )
}

pub(super) fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

pub(super) fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Reads and verifies a body's stamp: magic, length field, payload
/// checksum.
pub fn parse_body(magic: u32, body: &[u8]) -> Result<Stamp, String> {
    if body.len() < STAMP_LEN {
        return Err(format!(
            "body of {} bytes is shorter than a stamp",
            body.len()
        ));
    }
    let m = le_u32(&body[0..4]);
    if m != magic {
        return Err(format!("bad magic {m:#010x} (want {magic:#010x})"));
    }
    let st = Stamp {
        conn: le_u64(&body[4..12]),
        seq: le_u64(&body[12..20]),
        len: le_u32(&body[20..24]),
        sum: le_u64(&body[24..32]),
    };
    if st.len as usize != body.len() {
        return Err(format!(
            "conn {} seq {}: body is {} bytes, stamp says {}",
            st.conn,
            st.seq,
            body.len(),
            st.len
        ));
    }
    let actual = checksum(&body[STAMP_LEN..]);
    if actual != st.sum {
        return Err(format!(
            "conn {} seq {}: payload checksum mismatch (corrupted body)",
            st.conn, st.seq
        ));
    }
    Ok(st)
}
