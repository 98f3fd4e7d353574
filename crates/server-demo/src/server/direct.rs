//! Direct deliveries: a small delivery from an inline handler to a session
//! of the handler's own IO thread is encoded straight into that session's
//! staging buffer, skipping its send queue.
//!
//! Why: with handlers inline, a publish to a room whose subscribers share
//! the publisher's IO thread paid, per subscriber, a `SendQueue` push (its
//! CAS and byte accounting), a reference-count increment and decrement on
//! the shared body, a drain and the flusher's copy: 392 instructions per
//! 64 B delivery besides `memcpy` under callgrind (fan-out to 16
//! subscribers; 367 to 256), where a lean mio server that appends each
//! delivery to the subscriber's buffer spends 125 in all. Staging is that
//! append: 160 (x16) and 114 (x256) besides `memcpy`. The frame is copied
//! into the staging buffer, and the IO thread copies a session's whole
//! batch into its flusher once per turn.
//!
//! Order: a session's staged frames go out before anything still in its
//! send queue, so a delivery is staged only while the queue is empty (a
//! frame queued earlier must leave first), and `pump_output` moves the
//! staged frames into the flusher before every drain of the queue. Publishes to one room hold the
//! room's lock, so a concurrent publisher to that room either queued before
//! the check (the queue is not empty: this delivery queues too) or runs
//! after it; across rooms no order is promised. The session's own replies
//! come from handlers on this same thread: the inline echo path takes the
//! staged frames into the flusher before it writes a reply there
//! (`output::take_staged`), and a reply that takes the queue goes after
//! them anyway.
//!
//! Only the session's own IO thread touches the staging buffer: a
//! handler on it stages (checked with the thread's process-wide IO id),
//! and the same thread drains it in `pump_output`. Handlers on logic
//! threads or other IO threads take the send queue, as before.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};

use super::io::on_io_thread;

/// Bodies up to this size are staged; larger ones are shared through the
/// send queue (one allocation for all subscribers, and the flusher may
/// send them by gather write without a copy).
pub(crate) const DIRECT_MAX_BODY: usize = 256;

/// First capacity of a staging buffer.
const STAGING_START: usize = 2 << 10;

/// The most a staging buffer holds: past it, a session's deliveries take
/// its send queue until the IO thread has flushed (in order: staged frames
/// leave first). A session keeps its buffer while it has traffic; what all
/// of them stage in one turn is bounded by the IO loop's delivery budget
/// (`INLINE_DELIVERY_BYTES`, 1 MiB, checked between reads, so one read's
/// publishes more), so 16 subscribers may each fill about 80 KiB where 256
/// fill 5 KiB. At 64 KiB a quarter of the x16 deliveries still took the
/// queue (callgrind: 235 instructions per delivery besides `memcpy`,
/// against 160 at 128 KiB); peak RSS of fan-out 64 B x256 was the same
/// (13.7 and 13.8 MB).
pub(crate) const STAGING_MAX: usize = 128 << 10;

/// What [`Staging::stage`] did with a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Staged {
    /// Appended; `first` when the buffer was empty (the session must be
    /// marked ready).
    Yes { first: bool },
    /// Not on the owner thread, or the buffer is full until the next
    /// flush: use the send queue.
    Later,
}

/// Frames encoded for a session by its own IO thread, waiting for its next
/// flush.
#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    frames: u64,
}

/// A session's staging buffer (see the module docs). Lives in the
/// session's shared half; only the session's IO thread (the `owner` every
/// method is given: `IoShared::uid`) reads or writes it. Boxed and taken
/// only while in use: an idle connection pays one pointer for it.
pub(crate) struct Staging {
    cell: UnsafeCell<Option<Box<Buffer>>>,
    /// Something is staged. Written only by the owner (with the buffer);
    /// any thread may read it, and the hot paths (every echo, every pump)
    /// read it before asking which thread they are on.
    nonempty: AtomicBool,
}

// SAFETY: `cell` is only reached through `with`, which first checks that
// the calling thread is the IO thread `owner`. Every caller passes the
// `uid` of the session's own IO thread (`SessionShared::io`, fixed for the
// session's life), and a thread-local uid is unique in the process, so
// every access happens on that one thread: sharing the `Staging` between
// threads never gives two threads the buffer.
unsafe impl Sync for Staging {}

impl Staging {
    /// An empty staging buffer.
    pub(crate) fn new() -> Staging {
        Staging {
            cell: UnsafeCell::new(None),
            nonempty: AtomicBool::new(false),
        }
    }

    /// Runs `f` on the buffer if this is the IO thread `owner`.
    fn with<R>(&self, owner: usize, f: impl FnOnce(&mut Option<Box<Buffer>>) -> R) -> Option<R> {
        if !on_io_thread(owner) {
            return None;
        }
        // SAFETY: on the owner thread (checked above), the only thread that
        // reaches `cell` (see `unsafe impl Sync`). No reference into the
        // buffer outlives this call, and `f` is one of this module's
        // closures, which call nothing that could reach `with` again: the
        // `&mut` is unique for its whole life.
        Some(f(unsafe { &mut *self.cell.get() }))
    }

    /// Appends a frame (`header` then `body`) if this is the IO thread
    /// `owner` and the staged bytes stay within [`STAGING_MAX`].
    pub(crate) fn stage(&self, owner: usize, header: &[u8], body: &[u8]) -> Staged {
        self.with(owner, |slot| {
            let b = slot.get_or_insert_with(Box::default);
            let len = header.len() + body.len();
            if b.bytes.len() + len > STAGING_MAX {
                return Staged::Later;
            }
            let first = b.bytes.is_empty();
            if b.bytes.capacity() == 0 {
                // A turn usually stages many frames.
                b.bytes.reserve(STAGING_START.max(len));
            }
            b.bytes.extend_from_slice(header);
            b.bytes.extend_from_slice(body);
            b.frames += 1;
            if first {
                self.nonempty.store(true, Ordering::Relaxed);
            }
            Staged::Yes { first }
        })
        .unwrap_or(Staged::Later)
    }

    /// Nothing staged.
    pub(crate) fn is_empty(&self) -> bool {
        !self.nonempty.load(Ordering::Relaxed)
    }

    /// Hands the staged bytes and their frame count to `f` (which copies
    /// them out) and empties the buffer, keeping its storage for the next
    /// turn. Owner thread only; elsewhere `f` is not called.
    pub(crate) fn drain(&self, owner: usize, f: impl FnOnce(&[u8], u64)) {
        if self.is_empty() {
            return;
        }
        self.with(owner, |slot| {
            // Flagged non-empty: a buffer with at least one frame.
            let Some(b) = slot else {
                return;
            };
            f(&b.bytes, b.frames);
            b.bytes.clear();
            b.frames = 0;
            self.nonempty.store(false, Ordering::Relaxed);
        });
    }

    /// Drops the staged bytes and the buffer (the session closed or went
    /// idle). Owner thread only.
    pub(crate) fn discard(&self, owner: usize) {
        self.with(owner, |slot| {
            *slot = None;
            self.nonempty.store(false, Ordering::Relaxed);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::io::{enter_io_thread, next_io_uid};

    #[test]
    fn only_the_owner_thread_stages_and_drains() {
        let owner = next_io_uid();
        let staging = Staging::new();
        // Not (yet) on the owner thread: nothing is staged or drained.
        assert_eq!(staging.stage(owner, b"h", b"body"), Staged::Later);
        std::thread::scope(|s| {
            s.spawn(|| {
                enter_io_thread(owner);
                assert_eq!(
                    staging.stage(owner, b"h1", b"a"),
                    Staged::Yes { first: true }
                );
                assert_eq!(
                    staging.stage(owner, b"h2", b"bc"),
                    Staged::Yes { first: false }
                );
                assert!(!staging.is_empty());
                // Another thread sees it staged but cannot take it.
                std::thread::scope(|s| {
                    s.spawn(|| {
                        assert!(!staging.is_empty());
                        staging.drain(owner, |_, _| panic!("drained off the owner thread"));
                    });
                });
                let mut got = (Vec::new(), 0);
                staging.drain(owner, |b, n| got = (b.to_vec(), n));
                assert_eq!(got, (b"h1ah2bc".to_vec(), 2));
                assert!(staging.is_empty());
                staging.drain(owner, |_, _| panic!("nothing was staged"));
            });
        });
    }

    #[test]
    fn a_full_buffer_sends_the_rest_through_the_queue() {
        let owner = next_io_uid();
        let staging = Staging::new();
        std::thread::scope(|s| {
            s.spawn(|| {
                enter_io_thread(owner);
                let body = [7u8; 1000];
                let mut staged = 0;
                while let Staged::Yes { .. } = staging.stage(owner, &[0; 8], &body) {
                    staged += 1;
                }
                assert_eq!(staged, STAGING_MAX / 1008);
                staging.drain(owner, |b, n| {
                    assert_eq!((b.len(), n), (staged * 1008, staged as u64))
                });
                assert_eq!(
                    staging.stage(owner, &[0; 8], &body),
                    Staged::Yes { first: true }
                );
                staging.discard(owner);
                assert!(staging.is_empty());
            });
        });
    }
}
