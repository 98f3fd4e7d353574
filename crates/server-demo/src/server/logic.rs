//! Logic threads: the handlers (echo, rooms, broadcast).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use crate::protocol::{FrameHeader, HEADER_LEN, Kind, encode_header};
use netbuf::{CondvarNotify, Message, OutFrame, Outgoing, QueueItem, SendQueue, SharedMessage};

use super::direct::{DIRECT_MAX_BODY, Staged};
use super::queue::Refused;
use super::{SessionShared, Shared};
use crate::config::BroadcastMode;
use crate::sync::{LockExt, RwLockExt};

/// One logic thread's job queue (netbuf's MPSC queue, smart notify into a
/// condvar the thread sleeps on).
pub(crate) struct LogicQueue {
    pub(crate) jobs: SendQueue<Job>,
    pub(crate) wake: Arc<CondvarNotify>,
}

pub(crate) enum Job {
    /// A decoded request.
    Frame {
        session: Arc<SessionShared>,
        header: FrameHeader,
        body: Message,
    },
    /// The session closed: forget its room memberships.
    Closed(Arc<SessionShared>),
    /// The IO threads went quiet: give back this thread's pool caches and
    /// what the allocator keeps for it (sent on their first quiet rounds,
    /// so that a logic thread can sleep without a timeout: a timed wait
    /// reads the clock on every sleep, a syscall on some machines).
    Housekeeping,
}

impl QueueItem for Job {
    fn byte_size(&self) -> usize {
        match self {
            Job::Frame { body, .. } => HEADER_LEN + body.len(),
            Job::Closed(_) | Job::Housekeeping => 0,
        }
    }
}

type Members = Arc<Mutex<Vec<Arc<SessionShared>>>>;

/// Room memberships. Publishing holds the room's lock, so every subscriber
/// sees the room's publishes in one order.
#[derive(Default)]
pub(crate) struct Rooms {
    map: RwLock<HashMap<u16, Members>>,
}

impl Rooms {
    fn room(&self, id: u16) -> Members {
        if let Some(r) = self.map.read_locked().get(&id) {
            return r.clone();
        }
        self.map.write_locked().entry(id).or_default().clone()
    }

    fn join(&self, id: u16, s: &Arc<SessionShared>) {
        let mut mine = s.rooms.locked();
        if mine.contains(&id) {
            return;
        }
        mine.push(id);
        self.room(id).locked().push(s.clone());
    }

    fn leave(&self, id: u16, s: &Arc<SessionShared>) {
        s.rooms.locked().retain(|&r| r != id);
        self.room(id).locked().retain(|m| m.id != s.id);
    }

    fn leave_all(&self, s: &Arc<SessionShared>) {
        let rooms = std::mem::take(&mut *s.rooms.locked());
        for id in rooms {
            self.room(id).locked().retain(|m| m.id != s.id);
        }
    }

    /// Total memberships (for tests and reports).
    pub(crate) fn memberships(&self) -> usize {
        self.map
            .read_locked()
            .values()
            .map(|m| m.locked().len())
            .sum()
    }
}

pub(crate) fn run(shared: Arc<Shared>, q: Arc<LogicQueue>) {
    let meter = shared.meter();
    let (mut drains, mut seen_epoch) = (0u32, 0u64);
    loop {
        let d = q.jobs.drain_each(256, |job| handle(&shared, job));
        drains = drains.wrapping_add(1);
        // When a report asks (it bumps the epoch and wakes the thread) and
        // now and then: reading the thread's CPU time is a syscall.
        let epoch = shared
            .meter_epoch
            .load(std::sync::atomic::Ordering::Relaxed);
        if epoch != seen_epoch || drains % super::ThreadMeter::METER_EVERY == 0 {
            seen_epoch = epoch;
            meter.update();
        }
        if d.idle {
            if shared.shutdown.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            // No timeout: the IO threads send `Job::Housekeeping` when
            // they go quiet, and shutdown notifies.
            q.wake.wait();
        }
    }
    q.jobs.close();
    meter.update();
}

pub(crate) fn handle(shared: &Shared, job: Job) {
    match job {
        Job::Frame {
            session,
            header,
            body,
        } => {
            let bytes = HEADER_LEN + body.capacity();
            match header.kind {
                Kind::EchoRequest => {
                    push(&session, echo_reply(body), "send queue overflow");
                }
                Kind::Join => shared.rooms.join(header.room, &session),
                Kind::Leave => shared.rooms.leave(header.room, &session),
                Kind::Publish => publish(shared, header.room, body),
                // The IO thread only dispatches the kinds above.
                _ => {}
            }
            session.answered(bytes);
        }
        Job::Closed(session) => shared.rooms.leave_all(&session),
        Job::Housekeeping => {
            netbuf::release_thread_caches();
            allocators::release_thread_memory();
        }
    }
}

/// The reply to an echo request: the request's message becomes the
/// reply's body (the payload is copied once, from the socket buffer).
pub(crate) fn echo_reply(body: Message) -> OutFrame {
    let h = encode_header(Kind::EchoReply, 0, body.len() as u32);
    OutFrame::new(h.into(), Outgoing::Owned(body))
}

fn push(session: &SessionShared, frame: OutFrame, overflow_reason: &str) {
    match session.queue.try_push(frame) {
        Ok(()) => {}
        Err(Refused::Full(_)) => session.request_close(overflow_reason),
        Err(Refused::Closed(_)) => {}
    }
}

std::thread_local! {
    /// Delivery bytes (headers and bodies) this thread's handlers queued or
    /// staged (wrapping): an IO thread running handlers inline reads it to
    /// bound what one turn queues.
    static DELIVERY_BYTES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Delivery bytes queued or staged by handlers on this thread so far
/// (wrapping).
pub(crate) fn delivery_bytes_queued() -> usize {
    DELIVERY_BYTES.with(|d| d.get())
}

fn publish(shared: &Shared, room: u16, body: Message) {
    let h = encode_header(Kind::Delivery, room, body.len() as u32);
    let msg: SharedMessage = body.freeze();
    let members = shared.rooms.room(room);
    let members = members.locked();
    let bytes = members.len() * (HEADER_LEN + msg.len());
    DELIVERY_BYTES.with(|d| d.set(d.get().wrapping_add(bytes)));
    let direct = msg.len() <= DIRECT_MAX_BODY && shared.logic.is_empty();
    for s in members.iter() {
        if direct && stage(s, &h, &msg[..]) {
            continue;
        }
        let out = match shared.cfg.broadcast {
            BroadcastMode::Shared => Outgoing::Shared(msg.clone()),
            BroadcastMode::Copy => match shared.pool.message_from(&msg) {
                Ok(m) => Outgoing::Owned(m),
                Err(_) => continue,
            },
        };
        // A subscriber that does not read is closed, never waited for: the
        // publisher and the other subscribers go on.
        push(s, OutFrame::new(h.into(), out), "slow consumer");
    }
}

/// Stages a small delivery for a subscriber of this IO thread whose send
/// queue is empty (see `direct.rs`); `false`: it takes the send queue.
fn stage(s: &SessionShared, header: &[u8], body: &[u8]) -> bool {
    // A frame still queued must leave first. (A closed session is never
    // staged into: only its own IO thread stages, and that thread's
    // `close` discards the buffer and, handlers being inline, takes the
    // session out of its rooms before any handler runs again.)
    if s.queue.queued_bytes() != 0 {
        return false;
    }
    match s.staged.stage(s.io.uid(), header, body) {
        Staged::Yes { first } => {
            if first {
                s.io.mark_ready(s.id);
            }
            true
        }
        Staged::Later => false,
    }
}
