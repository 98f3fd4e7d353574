//! What a session shares between its IO thread and the logic threads.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use netbuf::Notify;

use super::direct::Staging;
use super::io::IoShared;
use super::queue::SessionQueue;
use crate::sync::LockExt;

/// The shared half of a session: its send queue and the flags that logic
/// threads use to ask its IO thread for something.
pub struct SessionShared {
    /// Session id (also its mio token on its IO thread).
    pub id: u64,
    pub(crate) queue: SessionQueue,
    pub(crate) io: Arc<IoShared>,
    close_reason: Mutex<Option<String>>,
    /// Bytes of requests handed to logic threads and not yet answered:
    /// counted with the queue for read backpressure.
    pub(crate) inflight: AtomicUsize,
    /// The IO thread stopped reading this session (backpressure).
    pub(crate) read_paused: AtomicBool,
    pub(crate) rooms: Mutex<Vec<u16>>,
    /// Frames its own IO thread's inline handlers encoded for it (see
    /// `direct.rs`); they leave before the send queue's.
    pub(crate) staged: Staging,
}

impl std::fmt::Debug for SessionShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionShared")
            .field("id", &self.id)
            .finish()
    }
}

impl SessionShared {
    pub(crate) fn new(id: u64, queue: SessionQueue, io: Arc<IoShared>) -> Self {
        SessionShared {
            staged: Staging::new(),
            id,
            queue,
            io,
            close_reason: Mutex::new(None),
            inflight: AtomicUsize::new(0),
            read_paused: AtomicBool::new(false),
            rooms: Mutex::new(Vec::new()),
        }
    }

    /// Asks the session's IO thread to close it with `reason` (the first
    /// reason given wins).
    pub fn request_close(&self, reason: &str) {
        {
            let mut r = self.close_reason.locked();
            if r.is_none() {
                *r = Some(reason.to_string());
            }
        }
        self.io.mark_ready(self.id);
    }

    pub(crate) fn take_close_reason(&self) -> Option<String> {
        self.close_reason.locked().take()
    }

    /// A request of `bytes` was answered (or dropped): if reading was paused,
    /// let the IO thread look again.
    pub(crate) fn answered(&self, bytes: usize) {
        self.inflight.fetch_sub(bytes, Ordering::AcqRel);
        // Only the first answer after a pause wakes the IO thread; it sets
        // the flag again if the session is still over its bound.
        if self.read_paused.load(Ordering::Acquire)
            && self.read_paused.swap(false, Ordering::AcqRel)
        {
            self.io.mark_ready(self.id);
        }
    }
}

/// The notify of a session's send queue: marks the session ready on its IO
/// thread (called once per empty -> non-empty transition).
pub(crate) struct SessionNotify {
    pub(crate) id: u64,
    pub(crate) io: Arc<IoShared>,
}

impl Notify for SessionNotify {
    fn notify(&self) {
        self.io.mark_ready(self.id);
    }
}
