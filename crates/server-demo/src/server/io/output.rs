//! The output side of a demo session: queued frames into the flusher, the
//! flusher into the socket, the send buffer lent by the IO thread.

use std::sync::atomic::Ordering;

use netbuf::{Flushed, Flusher, Outgoing};

use super::{DRAIN_BATCH, DRAIN_CHUNK, FLUSHER_HIGH, FLUSHER_KEEP, Session};
use crate::server::{SessionShared, Shared};

/// Moves queued frames into the flusher and writes until done or
/// `WouldBlock` (a writable event resumes it). Frames stay in the send
/// queue, where its byte bound counts them, while the flusher already holds
/// [`FLUSHER_HIGH`] bytes: a slow peer pushes back on producers instead of
/// growing the flusher.
///
/// The flusher's send buffer is the IO thread's `spare`, lent for the turn
/// and taken back once everything was written: N sessions flushed in turn
/// hold one buffer, not N (fan-out to 256 subscribers held 256 x 16 KiB),
/// and a request-reply session allocates nothing per reply. A session whose
/// write stopped short keeps the buffer until it drains (the next turn
/// lends the thread a new one).
pub(super) fn pump_output(
    s: &mut Session,
    shared: &Shared,
    spare: &mut Vec<u8>,
) -> Result<(), netbuf::FlushError> {
    if s.io.is_none() && s.shared.queue.queued_bytes() == 0 && s.shared.staged.is_empty() {
        // Parked with nothing to send: stays parked.
        return Ok(());
    }
    let (io, stream, session) = s.io(shared);
    lend_buffer(&mut io.flusher, spare);
    loop {
        let mut idle = false;
        if io.flusher.pending_bytes() < FLUSHER_HIGH {
            // Staged frames first, every time the queue is drained: they
            // were staged while the queue was empty, so whatever is queued
            // now came after them. (Taking them only when the pump starts
            // missed a pump that started with the flusher full and drained
            // the queue once a write emptied it: the soak saw staged
            // deliveries arrive after later queued ones.)
            take_staged(&mut io.flusher, session, shared);
            // In small chunks, stopping at FLUSHER_HIGH: the flusher's
            // buffer holds at most that plus a chunk's last frame, whatever
            // the frame size.
            let mut n = 0u64;
            let flusher = &mut io.flusher;
            let mut budget = DRAIN_BATCH;
            while budget > 0 {
                let chunk = DRAIN_CHUNK.min(budget);
                budget -= chunk;
                idle = session.queue.drain_each(chunk, |f| {
                    n += 1;
                    flusher.push(f);
                });
                if idle || flusher.pending_bytes() >= FLUSHER_HIGH {
                    break;
                }
            }
            shared.counters.frames_out.fetch_add(n, Ordering::Relaxed);
        }
        if io.flusher.is_empty() {
            if idle {
                return_buffer(&mut io.flusher, spare);
                return Ok(());
            }
            continue;
        }
        match io.flusher.flush(stream)? {
            Flushed::Done if idle => {
                return_buffer(&mut io.flusher, spare);
                return Ok(());
            }
            Flushed::Done => {}
            Flushed::WouldBlock => return Ok(()),
        }
    }
}

/// Moves the frames inline handlers staged for the session (see
/// `direct.rs`) into its flusher. Staged frames go before anything queued
/// (they were encoded while the queue was empty, so a queued frame came
/// after them) and before any reply pushed into the flusher from now on.
pub(super) fn take_staged(
    flusher: &mut Flusher<Outgoing>,
    session: &SessionShared,
    shared: &Shared,
) {
    session.staged.drain(session.io.uid(), |bytes, frames| {
        flusher.push_encoded(bytes, frames);
        shared
            .counters
            .frames_out
            .fetch_add(frames, Ordering::Relaxed);
    });
}

/// Lends the IO thread's spare send buffer to a flusher holding nothing
/// pending, if the spare is the larger (a flusher with pending bytes keeps
/// its own: `swap_buffer` refuses).
pub(super) fn lend_buffer(flusher: &mut Flusher<Outgoing>, spare: &mut Vec<u8>) {
    if spare.capacity() > flusher.buffer_capacity() {
        flusher.swap_buffer(spare);
    }
}

/// Everything sent: the flusher's send buffer goes back to the IO thread's
/// spare (whichever of the two is larger is kept there). One grown past
/// [`FLUSHER_KEEP`] by a burst goes back to the allocator instead.
fn return_buffer(flusher: &mut Flusher<Outgoing>, spare: &mut Vec<u8>) {
    if flusher.buffer_capacity() > spare.capacity() {
        flusher.swap_buffer(spare);
    }
    if spare.capacity() > FLUSHER_KEEP {
        *spare = Vec::new();
    }
    if flusher.allocated() > FLUSHER_KEEP {
        flusher.release_memory();
    }
}
