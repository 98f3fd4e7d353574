//! Where the server's memory goes: per IO thread, what its sessions hold
//! (receive buffers, flusher buffers, send queues), and the pool's blocks
//! in use, in thread caches and in the depot; printed at shutdown.
//!
//! # Memory budget
//!
//! With the default flags, one session holds at most:
//!
//! | what | bound | idle |
//! |---|---|---|
//! | receive buffer (`--recv linear`) | 16 KiB, grown to one maximal frame only while one is received | 0: taken by the first read that brings bytes, dropped within a second (the IO thread's sweep parks a quiet session) |
//! | flusher send buffer | 16 KiB + one drain chunk (16 frames) of frames under the gather threshold | 0: the buffer is the IO thread's spare, lent for the turn and taken back once everything is written (a session whose write stopped short keeps it until it drains); the flusher itself is dropped when the sweep parks the session |
//! | send queue | `--send-queue-bytes` (8 MiB), counting each message's block capacity, not its length (a shared message counts in full in each queue, so this bounds more than it sums) | the 192-byte queue itself; blocks are taken on the first push |
//! | the session itself | an `Arc<SessionShared>` (384 B with its queue) and the IO thread's boxed `Session` (40 B) | the same: 468 B of heap per idle connection in all (the main job measures it) |
//! | requests in flight | half the send-queue bound (reading pauses beyond) | 0 |
//!
//! Server-wide on top: the pool's depot (16 MiB per size class at most),
//! each thread's pool cache (256 KiB per class; given back when the thread
//! is idle for a poll timeout), and whatever the allocator keeps free
//! (asked back with `allocators::release_free_memory` when the last session
//! closes).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// What one IO thread's sessions held at its last sweep (published about
/// once a second), and the most seen.
#[derive(Debug, Default)]
pub struct MemoryMeter {
    sessions: AtomicU64,
    recv: AtomicU64,
    flusher: AtomicU64,
    queued: AtomicU64,
    peak_total: AtomicU64,
}

impl MemoryMeter {
    pub(crate) fn publish(&self, sessions: usize, recv: usize, flusher: usize, queued: usize) {
        self.sessions.store(sessions as u64, Ordering::Relaxed);
        self.recv.store(recv as u64, Ordering::Relaxed);
        self.flusher.store(flusher as u64, Ordering::Relaxed);
        self.queued.store(queued as u64, Ordering::Relaxed);
        self.peak_total
            .fetch_max((recv + flusher + queued) as u64, Ordering::Relaxed);
    }
}

/// A snapshot of where the server's memory is.
#[derive(Debug, Clone, Default)]
pub struct MemoryReport {
    /// Sessions counted by the IO threads at their last sweep.
    pub sessions: u64,
    /// Bytes of receive buffers held.
    pub recv_bytes: u64,
    /// Bytes of flusher send buffers held (capacity plus pending).
    pub flusher_bytes: u64,
    /// Bytes queued in send queues (as the queues count them).
    pub queued_bytes: u64,
    /// The largest session total (receive + flusher + queued) one IO
    /// thread saw at a sweep, summed over threads.
    pub peak_session_bytes: u64,
    /// The message pool: live messages, blocks in use and cached.
    pub pool: netbuf::PoolStats,
    /// The process's resident set now and at its peak, in bytes (Linux).
    pub rss: Option<(u64, u64)>,
}

impl MemoryReport {
    pub(crate) fn collect<'a>(
        meters: impl Iterator<Item = &'a MemoryMeter>,
        pool: netbuf::PoolStats,
    ) -> Self {
        let mut r = MemoryReport {
            pool,
            rss: rss(),
            ..Default::default()
        };
        for m in meters {
            r.sessions += m.sessions.load(Ordering::Relaxed);
            r.recv_bytes += m.recv.load(Ordering::Relaxed);
            r.flusher_bytes += m.flusher.load(Ordering::Relaxed);
            r.queued_bytes += m.queued.load(Ordering::Relaxed);
            r.peak_session_bytes += m.peak_total.load(Ordering::Relaxed);
        }
        r
    }
}

impl fmt::Display for MemoryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "memory: {} sessions hold recv {} B, flusher {} B, queued {} B (peak seen {} B); pool: {}",
            self.sessions,
            self.recv_bytes,
            self.flusher_bytes,
            self.queued_bytes,
            self.peak_session_bytes,
            self.pool
        )?;
        if let Some((now, peak)) = self.rss {
            write!(f, "; RSS {} KiB (peak {} KiB)", now >> 10, peak >> 10)?;
        }
        Ok(())
    }
}

/// `VmRSS` and `VmHWM` of this process, in bytes.
pub fn rss() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    Some((
        parse_status_field(&s, "VmRSS")?,
        parse_status_field(&s, "VmHWM")?,
    ))
}

/// A `kB` field (`VmRSS`, `VmHWM`) of `/proc/PID/status`, in bytes; `pid`
/// a number or `self`.
pub fn status_field(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_field(&status, field)
}

/// Finds `FIELD:   1234 kB` in the text of a `/proc/PID/status` file and
/// returns it in bytes.
pub fn parse_status_field(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        let mut it = rest.split_whitespace();
        let n: u64 = it.next()?.parse().ok()?;
        match it.next() {
            Some("kB") | None => Some(n * 1024),
            Some(_) => None,
        }
    })
}
