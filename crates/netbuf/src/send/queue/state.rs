//! The 64-bit state word every producer reserves in: its layout, the bit
//! helpers, and the backoff of the loops that update it.
//!
//! ```text
//! bit 63 ...... 32 | 31      | 30     | 29   | 28         | 27 ...... 0
//! tail index (32)  | WAITERS | CLOSED | IDLE | UNWRITABLE | queued bytes (28)
//! ```
//!
//! The tail index counts positions: `LAP` per block, the last of which
//! (the boundary, offset `BLOCK_CAP`) no slot uses; the index sits on it
//! while the producer of the block's last slot links the next block, and
//! while the queue has no block at all (a new queue starts on boundary
//! [`START_INDEX`]; [`release_idle_blocks`](super::SendQueue::release_idle_blocks)
//! moves the index of an empty queue onto the boundary of its block) until
//! a push installs one (`first` is null then: see `release.rs`).

/// Positions per block, including one "boundary" position that no slot
/// uses (it marks "the next block is being linked"). Small under loom so
/// models cross block boundaries with a handful of messages.
#[cfg(not(loom))]
const LAP: u64 = 64;
#[cfg(loom)]
const LAP: u64 = 4;
/// Slots per block.
pub(super) const BLOCK_CAP: usize = (LAP - 1) as usize;

pub(super) const BYTES_MASK: u64 = (1 << 28) - 1;
pub(super) const UNWRITABLE: u64 = 1 << 28;
pub(super) const IDLE: u64 = 1 << 29;
pub(super) const CLOSED: u64 = 1 << 30;
/// Producers wait for space: set by a producer that found the queue full
/// (after registering its waker), cleared by the next release of bytes,
/// which then wakes the registered producers.
pub(super) const WAITERS: u64 = 1 << 31;
const INDEX_SHIFT: u32 = 32;
/// One position of the tail index, in the state word.
pub(super) const INDEX_ONE: u64 = 1 << INDEX_SHIFT;
const INDEX_MASK: u64 = u64::MAX >> INDEX_SHIFT;
/// The tail index of a new queue: the boundary position before the first
/// block's slots (the queue has no block until its first push).
pub(super) const START_INDEX: u64 = BLOCK_CAP as u64;

/// The largest byte limit a [`SendQueue`](super::SendQueue) supports
/// (256 MiB - 1).
pub const MAX_LIMIT: usize = BYTES_MASK as usize;

/// The tail index of a state word.
#[inline(always)]
pub(super) fn index_of(state: u64) -> u64 {
    state >> INDEX_SHIFT
}

/// The position in its block of an index (`BLOCK_CAP`: the boundary).
#[inline(always)]
pub(super) fn offset_of(index: u64) -> usize {
    (index % LAP) as usize
}

/// The index after `index`, wrapping at 2^32.
#[inline(always)]
pub(super) fn next_index(index: u64) -> u64 {
    (index + 1) & INDEX_MASK
}

/// The boundary position of `index`'s block (`index` itself if it is one).
/// `LAP` divides 2^32, so it never wraps.
#[inline]
pub(super) fn boundary_of(index: u64) -> u64 {
    index - offset_of(index) as u64 + BLOCK_CAP as u64
}

/// `st` with its tail index replaced by `index` (the flags and the byte
/// count kept).
#[inline]
pub(super) fn with_index(st: u64, index: u64) -> u64 {
    (st & (INDEX_ONE - 1)) | ((index & INDEX_MASK) << INDEX_SHIFT)
}

/// The state after reserving `n` slots and `bytes` bytes from `st`: the
/// tail index moves on, `IDLE` is cleared (the reservation that saw it
/// notifies), and `UNWRITABLE` is set on reaching `high`.
#[inline]
pub(super) fn reserved(st: u64, n: u64, bytes: u64, high: u64) -> u64 {
    let total = (st & BYTES_MASK) + bytes;
    let mut new = st.wrapping_add(n << INDEX_SHIFT) + bytes;
    new &= !IDLE;
    if total >= high {
        new |= UNWRITABLE;
    }
    new
}

/// The state after giving back `bytes` from `st` (saturating), clearing
/// `UNWRITABLE` on falling to `low` and, if any bytes are given back,
/// `WAITERS` (the caller wakes the waiting producers if `st` had it);
/// with `idle_at = Some(head)`, also setting `IDLE` if nothing is reserved
/// beyond `head`. Returns the new state and whether it set `IDLE`.
#[inline]
pub(super) fn released(st: u64, bytes: u64, low: u64, idle_at: Option<u64>) -> (u64, bool) {
    let left = (st & BYTES_MASK).saturating_sub(bytes);
    let mut new = (st & !BYTES_MASK) | left;
    if left <= low {
        new &= !UNWRITABLE;
    }
    if bytes != 0 {
        new &= !WAITERS;
    }
    let idle = idle_at == Some(index_of(st));
    if idle {
        new |= IDLE;
    }
    (new, idle)
}

/// After a failed CAS: spins a little (exponentially, capped), so that
/// contending producers spread out.
#[inline]
pub(super) fn spin(step: &mut u32) {
    #[cfg(loom)]
    let _ = step;
    #[cfg(not(loom))]
    {
        for _ in 0..(1u32 << (*step).min(6)) {
            core::hint::spin_loop();
        }
        *step += 1;
    }
}

/// While waiting for another producer to link the next block: spins a
/// little, then yields. Under loom, yields so the model scheduler runs the
/// thread being waited for.
#[inline]
pub(super) fn backoff(step: &mut u32) {
    #[cfg(loom)]
    {
        let _ = step;
        loom::thread::yield_now();
    }
    #[cfg(not(loom))]
    {
        if *step < 6 {
            for _ in 0..(1u32 << *step) {
                core::hint::spin_loop();
            }
            *step += 1;
        } else {
            std::thread::yield_now();
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn boundaries_and_index_replacement() {
        assert_eq!(offset_of(START_INDEX), BLOCK_CAP);
        assert_eq!(boundary_of(0), 63);
        assert_eq!(boundary_of(62), 63);
        assert_eq!(boundary_of(63), 63);
        assert_eq!(boundary_of(64), 127);
        // The last block before the 2^32 wrap: its boundary is the last
        // index, and the position after it is 0, a block's first slot.
        let last = u64::from(u32::MAX);
        assert_eq!(boundary_of(last - 5), last);
        assert_eq!(offset_of(last), BLOCK_CAP);
        assert_eq!(next_index(last), 0);
        let st = (7 << INDEX_SHIFT) | WAITERS | IDLE | 123;
        assert_eq!(
            with_index(st, last),
            (last << INDEX_SHIFT) | WAITERS | IDLE | 123
        );
        assert_eq!(index_of(with_index(st, 64)), 64);
        // The installer's `fetch_add` at the last boundary wraps to 0,
        // keeping the flags and bytes.
        assert_eq!(
            with_index(st, last).wrapping_add(INDEX_ONE),
            WAITERS | IDLE | 123
        );
    }
}
