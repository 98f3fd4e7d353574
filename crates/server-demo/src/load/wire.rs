//! What travels and how it is checked: request body templates stamped with
//! a sequence number, the byte-by-byte [`verify`] of a returned body, the
//! frame-kind checks, and the receive buffers the scenarios read into.

use crate::protocol::{DEFAULT_MAX_BODY, DemoFraming, Frame, FrameExt, Kind};
use netbuf::{Compaction, LinearBuffer};

use super::error::LoadError;

/// Small frames are coalesced into writes of up to this many bytes.
pub(super) const COALESCE: usize = 64 << 10;
/// Minimum receive-buffer capacity.
pub(super) const RECV_CAPACITY: usize = 16 << 10;

/// The request body template: a fixed pattern; bodies of 8 bytes or more
/// carry their sequence number (u64 LE) in the first 8 bytes.
pub(super) fn template(size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(7))
        .collect()
}

pub(super) fn stamp(body: &mut [u8], seq: u64) {
    if let Some(head) = body.first_chunk_mut::<8>() {
        *head = seq.to_le_bytes();
    }
}

/// Checks a returned body: exact length, sequence number, and every other
/// byte equal to the template (a `memcmp`, far cheaper than the socket).
pub(super) fn verify(body: &[u8], template: &[u8], seq: u64) -> Result<(), String> {
    if body.len() != template.len() {
        return Err(format!(
            "length {} instead of {}",
            body.len(),
            template.len()
        ));
    }
    let from = if let Some(head) = body.first_chunk::<8>() {
        let got = u64::from_le_bytes(*head);
        if got != seq {
            return Err(format!("sequence number {got} instead of {seq}"));
        }
        8
    } else {
        0
    };
    if body[from..] != template[from..] {
        let at = body[from..]
            .iter()
            .zip(&template[from..])
            .position(|(a, b)| a != b)
            .map_or(0, |p| p + from);
        return Err(format!(
            "byte {at} is {:#04x} instead of {:#04x}",
            body[at], template[at]
        ));
    }
    Ok(())
}

pub(super) fn closed_by(phase: &'static str, f: &Frame<'_>) -> LoadError {
    LoadError::Closed {
        phase,
        reason: f
            .closing_reason()
            .unwrap_or("<closing reason not UTF-8>")
            .to_owned(),
    }
}

/// Fails unless `f` is of kind `want` (a `closing` frame becomes
/// [`LoadError::Closed`]).
pub(super) fn expect_kind(phase: &'static str, f: &Frame<'_>, want: Kind) -> Result<(), LoadError> {
    match f.kind() {
        k if k == want => Ok(()),
        Kind::Closing => Err(closed_by(phase, f)),
        k => Err(LoadError::UnexpectedFrame {
            phase,
            detail: format!("kind {k:?} where {want:?} was expected"),
        }),
    }
}

pub(super) fn recv_buffer(size: usize) -> LinearBuffer<DemoFraming> {
    LinearBuffer::with_config(
        RECV_CAPACITY,
        DemoFraming::with_max_body(size.max(DEFAULT_MAX_BODY)),
        Compaction::Lazy,
    )
}

pub(super) fn check_size(size: usize) -> Result<u32, LoadError> {
    u32::try_from(size)
        .map_err(|_| LoadError::Config(format!("body size {size} does not fit the u32 length")))
}
