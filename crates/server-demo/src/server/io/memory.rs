//! What an IO thread's sessions hold, and giving it back when they go
//! quiet: receive buffers and flusher buffers of sessions with nothing
//! pending, the thread's pool caches when it is idle, the pool's depot and
//! the allocator's free memory when the whole server has no session.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use netbuf::FrameSource;

use super::IoThread;

/// How often an IO thread releases the buffers of its quiet sessions.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Quiet polls (100 ms each) after activity on which an IO thread asks the
/// allocator to give back its free memory for this thread
/// ([`allocators::release_thread_memory`]): more than once, because blocks
/// of this thread's pages that other threads free after the first call
/// (replies written, messages dropped by logic threads) only become free
/// pages when this thread looks again. With mimalloc, one call left 9 MB
/// over the start after the load matrix; its purge delay set to 0 left
/// 1.2 MB, which is what repeated calls approach without that cost on the
/// hot path.
const ALLOCATOR_ROUNDS: u32 = 10;

/// Busy loop turns between two reads of the clock for the sweep.
const CLOCK_EVERY: u32 = 64;

/// An IO thread's memory housekeeping state.
#[derive(Debug)]
pub(crate) struct Housekeeping {
    last_sweep: Instant,
    /// The thread's pool caches were released and nothing used them since.
    caches_released: bool,
    /// Quiet polls since the last event, up to [`ALLOCATOR_ROUNDS`].
    quiet_rounds: u32,
    /// Loop turns, for [`CLOCK_EVERY`].
    turns: u32,
}

impl Housekeeping {
    pub(crate) fn new() -> Self {
        Housekeeping {
            last_sweep: Instant::now(),
            caches_released: false,
            quiet_rounds: 0,
            turns: 0,
        }
    }
}

impl Housekeeping {
    /// Loop turns so far (wrapping): the IO loop's one turn counter.
    pub(crate) fn turns(&self) -> u32 {
        self.turns
    }
}

impl IoThread {
    /// Called once per loop turn; `quiet` when the poll returned no event.
    pub(crate) fn housekeeping(&mut self, quiet: bool) {
        if !quiet {
            self.house.caches_released = false;
            self.house.quiet_rounds = 0;
        }
        // The clock is read when the poll was quiet or every
        // `CLOCK_EVERY` turns, not on every turn (on some machines each read
        // is a syscall, and a busy loop turns once per request).
        self.house.turns = self.house.turns.wrapping_add(1);
        if quiet || self.house.turns.is_multiple_of(CLOCK_EVERY) {
            let now = Instant::now();
            if now.duration_since(self.house.last_sweep) >= SWEEP_EVERY || quiet {
                self.house.last_sweep = now;
                self.sweep_sessions();
            }
        }
        if quiet && !self.house.caches_released {
            // Idle for a poll timeout: nothing else can reach this
            // thread's pool caches, so give them back now.
            self.house.caches_released = true;
            netbuf::release_thread_caches();
        }
        if quiet && self.house.quiet_rounds < ALLOCATOR_ROUNDS {
            self.house.quiet_rounds += 1;
            allocators::release_thread_memory();
            // The logic threads sleep without a timeout: they do theirs
            // when told (a full queue only skips a round).
            for q in &self.shared.logic {
                let _ = q.jobs.try_push(super::super::logic::Job::Housekeeping);
            }
            if self.sessions.is_empty()
                && self.zmtp.is_empty()
                && self.shared.live_sessions.load(Ordering::Relaxed) == 0
            {
                // No session anywhere: the depot and the allocator's free
                // memory, process-wide, on each of these rounds (what other
                // threads free after the first one is given back by the
                // next).
                self.shared.pool.trim();
                allocators::release_free_memory();
            }
        }
    }

    /// Parks every session with nothing buffered, pending or queued (drops
    /// its receive buffer and flusher; its next event takes them again),
    /// and publishes what the sessions hold. A session with a stream
    /// transform keeps its flusher (the cipher's position lives there) and
    /// only gives back buffer memory.
    fn sweep_sessions(&mut self) {
        let mut recv = 0;
        let mut flusher = 0;
        let mut queued = 0;
        for s in self.sessions.values_mut() {
            if s.park(&self.shared) {
                continue;
            }
            let Some(io) = s.io.as_mut() else {
                continue;
            };
            if io.recv.buffered() == 0
                && let netbuf::ReceiveBuffer::Linear(b) = &mut io.recv
            {
                b.release_if_empty();
            }
            if io.flusher.is_empty() {
                io.flusher.release_memory();
            }
            recv += match &io.recv {
                netbuf::ReceiveBuffer::Linear(b) => b.allocated(),
                netbuf::ReceiveBuffer::Chained(b) => b.buffered(),
            };
            flusher += io.flusher.allocated() + io.flusher.pending_bytes();
            queued += s.shared.queue.queued_bytes();
        }
        self.memory
            .publish(self.sessions.len(), recv, flusher, queued);
    }
}
