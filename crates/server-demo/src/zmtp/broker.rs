//! The XSUB/XPUB broker, as `zmq_proxy(XSUB, XPUB)`: publishers connect to
//! the `--zmtp-xsub` endpoints, subscribers to the `--zmtp-xpub` ones.
//!
//! * Subscriptions go upstream as the proxy forwards them: a prefix is
//!   sent to every publisher when its first subscriber arrives and
//!   cancelled when its last one leaves (a libzmq PUB sends nothing to a
//!   peer that never subscribed); a publisher that connects later is told
//!   every live prefix.
//! * A message from a publisher is matched on its first part and queued,
//!   whole, to every matching subscriber: its parts are frozen once into
//!   `SharedMessage`s (no copy, one allocation per part as received) and
//!   each subscriber gets refcounts.
//! * A subscriber whose queue has no room for the whole message misses it
//!   (counted on its endpoint), as libzmq's high-water mark drops: the
//!   publisher and the other subscribers never wait for it.
//!
//! One lock covers the subscription table and the fan-out, so every
//! subscriber sees the messages in one order and the parts of one message
//! are never interleaved with another's in a queue.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use netbuf::{Message, MessagePool, OutFrame, Outgoing, SharedMessage};

use super::command;
use super::endpoint::EndpointStats;
use super::frame::{FrameFlags, encode_frame_header};
use super::subscription::Subscriptions;
use crate::server::SessionShared;
use crate::server::queue::{ENTRY_OVERHEAD, Refused};
use crate::sync::LockExt;

/// A connected subscriber or publisher.
struct Member {
    session: Arc<SessionShared>,
    stats: Arc<EndpointStats>,
    /// The peer speaks ZMTP 3.1 (subscriptions as commands).
    zmtp_3_1: bool,
}

#[derive(Default)]
struct Inner {
    subs: Subscriptions,
    subscribers: HashMap<u64, Member>,
    publishers: HashMap<u64, Member>,
    /// Scratch: matched subscriber ids, frozen parts, frames of one push.
    matched: Vec<u64>,
    parts: Vec<(netbuf::framing::HeaderBytes, SharedMessage)>,
    frames: Vec<OutFrame>,
}

/// The broker shared by every XSUB and XPUB endpoint of a server.
pub(crate) struct Broker {
    inner: Mutex<Inner>,
    /// Subscription frames sent upstream come from here.
    pool: MessagePool,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = self.lock();
        f.debug_struct("Broker")
            .field("subscribers", &g.subscribers.len())
            .field("publishers", &g.publishers.len())
            .field("prefixes", &g.subs.len())
            .finish()
    }
}

impl Broker {
    pub(crate) fn new(pool: MessagePool) -> Broker {
        Broker {
            inner: Mutex::default(),
            pool,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.locked()
    }

    /// A publisher finished its handshake: tell it every live prefix.
    pub(crate) fn add_publisher(
        &self,
        session: Arc<SessionShared>,
        stats: Arc<EndpointStats>,
        zmtp_3_1: bool,
    ) {
        let mut g = self.lock();
        let member = Member {
            session,
            stats,
            zmtp_3_1,
        };
        for prefix in g.subs.prefixes() {
            send_subscription(&self.pool, &member, true, prefix);
        }
        g.publishers.insert(member.session.id, member);
    }

    /// A subscriber finished its handshake.
    pub(crate) fn add_subscriber(
        &self,
        session: Arc<SessionShared>,
        stats: Arc<EndpointStats>,
        zmtp_3_1: bool,
    ) {
        let member = Member {
            session,
            stats,
            zmtp_3_1,
        };
        self.lock().subscribers.insert(member.session.id, member);
    }

    /// Session `id` closed: forget it; cancel upstream the prefixes only it
    /// wanted.
    pub(crate) fn remove(&self, id: u64) {
        let mut g = self.lock();
        g.publishers.remove(&id);
        if g.subscribers.remove(&id).is_some() {
            for prefix in g.subs.remove_subscriber(id) {
                for p in g.publishers.values() {
                    send_subscription(&self.pool, p, false, &prefix);
                }
            }
        }
    }

    /// Subscriber `id` subscribes to (or cancels) `topic`.
    pub(crate) fn subscription(&self, id: u64, subscribe: bool, topic: &[u8]) {
        let mut g = self.lock();
        if !g.subscribers.contains_key(&id) {
            return;
        }
        let changed = if subscribe {
            g.subs.subscribe(id, topic)
        } else {
            g.subs.cancel(id, topic)
        };
        if changed {
            for p in g.publishers.values() {
                send_subscription(&self.pool, p, subscribe, topic);
            }
        }
    }

    /// Fans a publisher's message (its parts, drained from `parts`) out to
    /// every subscriber whose prefix matches its first part.
    pub(crate) fn publish(&self, parts: &mut Vec<Message>) {
        let mut g = self.lock();
        let inner = &mut *g;
        inner.matched.clear();
        if let Some(first) = parts.first() {
            inner.subs.matches(first, &mut inner.matched);
        }
        if inner.matched.is_empty() {
            parts.clear();
            return;
        }
        let n = parts.len();
        let mut cost = 0;
        inner.parts.clear();
        for (i, m) in parts.drain(..).enumerate() {
            let h = encode_frame_header(FrameFlags::message(i + 1 < n), m.len());
            cost += h.len() + m.len() + ENTRY_OVERHEAD;
            inner.parts.push((h, m.freeze()));
        }
        for id in &inner.matched {
            let Some(sub) = inner.subscribers.get(id) else {
                continue;
            };
            let q = &sub.session.queue;
            // Whole or nothing: only this lock's holder pushes to a
            // subscriber's queue, and draining only frees room.
            if q.limit().saturating_sub(q.queued_bytes()) < cost {
                sub.stats.messages_dropped.fetch_add(1, Ordering::Relaxed);
                sub.stats
                    .bytes_dropped
                    .fetch_add((cost - n * ENTRY_OVERHEAD) as u64, Ordering::Relaxed);
                continue;
            }
            inner.frames.extend(
                inner
                    .parts
                    .iter()
                    .map(|(h, m)| OutFrame::new(*h, Outgoing::Shared(m.clone()))),
            );
            match q.push_all(&mut inner.frames) {
                Ok(()) => {
                    sub.stats.messages_out.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => inner.frames.clear(),
            }
        }
        inner.parts.clear();
    }

    /// Subscribers and publishers connected (for stats and tests).
    pub(crate) fn members(&self) -> (usize, usize) {
        let g = self.lock();
        (g.subscribers.len(), g.publishers.len())
    }
}

/// Queues a subscription (3.1: SUBSCRIBE / CANCEL command; 3.0: a message
/// whose first byte is 1 / 0) to a publisher. A publisher that lets
/// subscriptions pile up to its queue bound is closed.
fn send_subscription(pool: &MessagePool, p: &Member, subscribe: bool, topic: &[u8]) {
    let (flags, body) = if p.zmtp_3_1 {
        (
            FrameFlags::command(),
            command::subscription(subscribe, topic),
        )
    } else {
        let mut b = Vec::with_capacity(1 + topic.len());
        b.push(u8::from(subscribe));
        b.extend_from_slice(topic);
        (FrameFlags::message(false), b)
    };
    let Ok(m) = pool.message_from(&body) else {
        p.session.request_close("no memory for a subscription");
        return;
    };
    let frame = OutFrame::new(encode_frame_header(flags, m.len()), Outgoing::Owned(m));
    match p.session.queue.try_push(frame) {
        Ok(()) | Err(Refused::Closed(_)) => {}
        Err(Refused::Full(_)) => p
            .session
            .request_close("publisher does not read its subscriptions"),
    }
}
