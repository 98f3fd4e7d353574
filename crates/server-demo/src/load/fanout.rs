//! The pub/sub fan-out scenario, [`FanOut`]: N subscribers join a room and
//! are read non-blocking with `mio` from one thread while one publisher
//! publishes (optionally paced), every delivery checked in order.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::protocol::{DEFAULT_MAX_BODY, DemoFraming, FrameExt, HEADER_LEN, Kind, encode_header};
use mio::{Events, Poll, Token};
use netbuf::LinearBuffer;
use serde::Serialize;

use super::clock::{Clock, IO_SLICE, first_cause, join, ser_secs, write_all};
use super::error::LoadError;
use super::transport::{MioStream, Stream, Target, connect, raise_fd_limit};
use super::wire::{
    COALESCE, RECV_CAPACITY, check_size, expect_kind, recv_buffer, stamp, template, verify,
};
use super::{DEFAULT_TIMEOUT, FANOUT_BUFFER_LIMIT};

/// Body of the fan-out warm-up publish (never a valid measured body: those
/// are `size` bytes long and carry a sequence number below `u64::MAX`).
const WARMUP: [u8; 8] = u64::MAX.to_le_bytes();

/// Pub/sub fan-out: `subscribers` connections join `room`, then one
/// publisher publishes `messages` bodies of `size` bytes and every
/// subscriber must receive every one, in order (checked by sequence number
/// when `size >= 8`, by body otherwise).
///
/// Before measuring, the publisher publishes a warm-up message (again,
/// every 50 ms) until every subscriber has received one, which proves the
/// server has processed every join. The clock runs from the first measured
/// publish to the last delivery.
///
/// All subscribers are read from one thread with `mio`; each holds a
/// [`LinearBuffer<DemoFraming>`] of at least one frame (see [`FANOUT_BUFFER_LIMIT`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanOut {
    /// The server.
    pub target: Target,
    /// Body bytes per publish.
    pub size: usize,
    /// Subscriber connections (at least 1).
    pub subscribers: usize,
    /// Measured publishes (at least 1).
    pub messages: u64,
    /// The room id.
    pub room: u16,
    /// Time limit of the whole run (default [`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
    /// Paced: publishes at most this many messages ahead of the slowest
    /// subscriber (`None`: as fast as the socket takes them, so the
    /// server's send-queue bound decides whether a lagging subscriber is
    /// closed). A paced run measures what the server holds in steady
    /// state rather than how far its queues let subscribers lag.
    pub pace: Option<u64>,
}

/// The result of a [`FanOut`] run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FanOutResult {
    /// Delivered (subscriber, message) pairs per second.
    pub deliveries_per_sec: f64,
    /// Deliveries counted (`messages * subscribers`).
    pub deliveries: u64,
    /// From the first measured publish to the last delivery.
    #[serde(rename = "elapsed_s", serialize_with = "ser_secs")]
    pub elapsed: Duration,
}

#[derive(Debug)]
struct Subscriber {
    stream: MioStream,
    rb: LinearBuffer<DemoFraming>,
    warmed: bool,
    next: u64,
}

impl Subscriber {
    /// Checks and counts the frames in the receive buffer (warm-ups
    /// counted once in `warmed`); returns the measured deliveries taken.
    fn take_frames(
        &mut self,
        tpl: &[u8],
        messages: u64,
        room: u16,
        warmed: &AtomicUsize,
    ) -> Result<u64, LoadError> {
        const PHASE: &str = "fan-out (receiving)";
        let mut taken = 0;
        while let Some(f) = self.rb.next_frame()? {
            expect_kind(PHASE, &f, Kind::Delivery)?;
            if f.room() != room {
                return Err(LoadError::UnexpectedFrame {
                    phase: PHASE,
                    detail: format!("delivery for room {} instead of {room}", f.room()),
                });
            }
            if f.body == WARMUP {
                if self.next > 0 {
                    return Err(LoadError::UnexpectedFrame {
                        phase: PHASE,
                        detail: "warm-up delivered after measured messages".into(),
                    });
                }
                if !self.warmed {
                    self.warmed = true;
                    warmed.fetch_add(1, Ordering::Release);
                }
                continue;
            }
            if self.next >= messages {
                return Err(LoadError::UnexpectedFrame {
                    phase: PHASE,
                    detail: format!("delivery beyond the {messages} published"),
                });
            }
            verify(f.body, tpl, self.next).map_err(|detail| LoadError::Mismatch {
                phase: PHASE,
                index: self.next,
                detail,
            })?;
            self.next += 1;
            taken += 1;
        }
        Ok(taken)
    }
}

impl FanOut {
    /// A run in room 1 with the default timeout.
    pub fn new(target: Target, size: usize, subscribers: usize, messages: u64) -> FanOut {
        FanOut {
            target,
            size,
            subscribers,
            messages,
            room: 1,
            timeout: DEFAULT_TIMEOUT,
            pace: None,
        }
    }

    /// Sets the room.
    pub fn with_room(mut self, room: u16) -> Self {
        self.room = room;
        self
    }

    /// Paces the publisher: at most `window` messages ahead of the slowest
    /// subscriber (see [`FanOut::pace`]; 0 leaves the run unpaced).
    pub fn with_pace(mut self, window: u64) -> Self {
        self.pace = (window > 0).then_some(window);
        self
    }

    /// Sets the time limit.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Receive-buffer bytes the subscribers will hold together.
    pub fn buffer_memory(&self) -> usize {
        let per = RECV_CAPACITY.max(HEADER_LEN + self.size.max(DEFAULT_MAX_BODY));
        per.saturating_mul(self.subscribers)
    }

    /// Runs it (raising `RLIMIT_NOFILE` if the subscribers need it).
    pub fn run(&self) -> Result<FanOutResult, LoadError> {
        let body_len = self.check()?;
        let clock = Clock::new(self.timeout);
        let (poll, subs) = self.subscribe(&clock)?;
        let mut publisher = connect(&self.target, self.timeout)?;
        publisher
            .set_write_timeout(Some(IO_SLICE))
            .map_err(io_err("fan-out setup"))?;

        let warmed = Arc::new(AtomicUsize::new(0));
        // The deliveries of the slowest subscriber (for pacing).
        let slowest = Arc::new(AtomicU64::new(0));
        let reader = {
            let (c, w, low) = (clock.clone(), warmed.clone(), slowest.clone());
            let (tpl, messages, room) = (template(self.size), self.messages, self.room);
            thread::Builder::new()
                .name("load-fanout-reader".into())
                .spawn(move || {
                    c.guard(|| fanout_reader(poll, subs, &tpl, messages, room, &w, &low, &c))
                })
                .map_err(io_err("spawning threads"))?
        };
        let published = clock.guard(|| {
            self.warm_up(&mut publisher, &warmed, &clock)?;
            self.publish(&mut publisher, body_len, &slowest, &clock)
        });
        let delivered = join(reader);
        let (start, last) = match (published, delivered) {
            (Ok(start), Ok(last)) => (start, last),
            (p, d) => {
                let errors = [p.err(), d.err()].into_iter().flatten().collect();
                return Err(first_cause(errors).unwrap_or(LoadError::Aborted));
            }
        };
        let deliveries = self.messages * self.subscribers as u64;
        let elapsed = last
            .saturating_duration_since(start)
            .max(Duration::from_micros(1));
        Ok(FanOutResult {
            deliveries_per_sec: deliveries as f64 / elapsed.as_secs_f64(),
            deliveries,
            elapsed,
        })
    }

    /// Checks the parameters and raises `RLIMIT_NOFILE` for the
    /// subscribers; returns the body length.
    fn check(&self) -> Result<u32, LoadError> {
        let body_len = check_size(self.size)?;
        if self.subscribers == 0 || self.messages == 0 {
            return Err(LoadError::Config(
                "fan-out needs at least 1 subscriber and 1 message".into(),
            ));
        }
        if self.buffer_memory() > FANOUT_BUFFER_LIMIT {
            return Err(LoadError::Config(format!(
                "{} subscribers x {} B bodies need {} MiB of receive buffers (limit {} MiB)",
                self.subscribers,
                self.size,
                self.buffer_memory() >> 20,
                FANOUT_BUFFER_LIMIT >> 20
            )));
        }
        let needed = self.subscribers as u64 + 64;
        let limit = raise_fd_limit(needed).map_err(|source| LoadError::Io {
            phase: "raising RLIMIT_NOFILE",
            source,
        })?;
        if limit < needed {
            return Err(LoadError::FdLimit { needed, limit });
        }
        Ok(body_len)
    }

    /// Subscribers: connect, join (blocking), then hand to one `mio` poll.
    fn subscribe(&self, clock: &Clock) -> Result<(Poll, Vec<Subscriber>), LoadError> {
        let expected = self.subscribers as u64;
        let poll = Poll::new().map_err(io_err("fan-out setup"))?;
        let join_frame = encode_header(Kind::Join, self.room, 0);
        let mut subs = Vec::with_capacity(self.subscribers);
        for i in 0..self.subscribers {
            clock.check("fan-out (connecting subscribers)", i as u64, expected)?;
            let mut s = connect(&self.target, self.timeout)?;
            s.set_write_timeout(Some(IO_SLICE))
                .map_err(io_err("fan-out setup"))?;
            write_all(
                &mut s,
                &join_frame,
                clock,
                "fan-out (joining)",
                i as u64,
                expected,
            )?;
            let mut stream = s.into_mio().map_err(io_err("fan-out setup"))?;
            stream
                .register(&poll, Token(i))
                .map_err(io_err("fan-out setup"))?;
            subs.push(Subscriber {
                stream,
                rb: recv_buffer(self.size),
                warmed: false,
                next: 0,
            });
        }
        Ok((poll, subs))
    }

    /// Warm-up: publishes [`WARMUP`] until every subscriber got one,
    /// re-published every 50 ms.
    fn warm_up(
        &self,
        publisher: &mut Stream,
        warmed: &AtomicUsize,
        clock: &Clock,
    ) -> Result<(), LoadError> {
        let expected = self.subscribers as u64;
        let mut warm = encode_header(Kind::Publish, self.room, WARMUP.len() as u32).to_vec();
        warm.extend_from_slice(&WARMUP);
        loop {
            let n = warmed.load(Ordering::Acquire) as u64;
            write_all(publisher, &warm, clock, "fan-out (warm-up)", n, expected)?;
            for _ in 0..50 {
                let n = warmed.load(Ordering::Acquire) as u64;
                if n == expected {
                    return Ok(());
                }
                clock.check("fan-out (warm-up)", n, expected)?;
                thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Publishes the measured messages (coalesced, and paced if asked);
    /// returns when it started.
    fn publish(
        &self,
        publisher: &mut Stream,
        body_len: u32,
        slowest: &AtomicU64,
        clock: &Clock,
    ) -> Result<Instant, LoadError> {
        const PHASE: &str = "fan-out (publishing)";
        // Waits until publishing `seq` keeps within the pace window.
        let pace = |seq: u64| -> Result<(), LoadError> {
            let Some(window) = self.pace else {
                return Ok(());
            };
            while seq >= slowest.load(Ordering::Acquire) + window {
                clock.check(PHASE, seq, self.messages)?;
                thread::sleep(Duration::from_micros(100));
            }
            Ok(())
        };
        let start = Instant::now();
        let mut frame = encode_header(Kind::Publish, self.room, body_len).to_vec();
        frame.extend_from_slice(&template(self.size));
        let mut out = Vec::with_capacity(COALESCE.min(frame.len() * 64));
        // Coalesced writes stay well inside a pace window.
        let coalesce = match self.pace {
            Some(w) => COALESCE.min((frame.len() * (w as usize / 4)).max(frame.len())),
            None => COALESCE,
        };
        for seq in 0..self.messages {
            stamp(&mut frame[HEADER_LEN..], seq);
            if frame.len() >= coalesce {
                pace(seq)?;
                write_all(publisher, &frame, clock, PHASE, seq, self.messages)?;
            } else {
                if out.len() + frame.len() > coalesce {
                    pace(seq)?;
                    write_all(publisher, &out, clock, PHASE, seq, self.messages)?;
                    out.clear();
                }
                out.extend_from_slice(&frame);
            }
        }
        write_all(publisher, &out, clock, PHASE, self.messages, self.messages)?;
        Ok(start)
    }
}

/// `map_err` for an I/O error during `phase`.
fn io_err(phase: &'static str) -> impl FnOnce(io::Error) -> LoadError {
    move |source| LoadError::Io { phase, source }
}

/// Reads every subscriber until each has `messages` deliveries; returns
/// the time of the last one; publishes the slowest subscriber's count in
/// `slowest` (the pace).
#[allow(clippy::too_many_arguments)]
fn fanout_reader(
    mut poll: Poll,
    mut subs: Vec<Subscriber>,
    tpl: &[u8],
    messages: u64,
    room: u16,
    warmed: &AtomicUsize,
    slowest: &AtomicU64,
    clock: &Clock,
) -> Result<Instant, LoadError> {
    const PHASE: &str = "fan-out (receiving)";
    let total = messages * subs.len() as u64;
    let mut delivered = 0u64;
    let mut done = 0usize;
    let mut last = Instant::now();
    let mut events = Events::with_capacity(1024);
    while done < subs.len() {
        clock.check(PHASE, delivered, total)?;
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(50))) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(LoadError::Io {
                phase: PHASE,
                source: e,
            });
        }
        for ev in events.iter() {
            let Some(sub) = subs.get_mut(ev.token().0) else {
                continue;
            };
            // Edge-triggered: read until WouldBlock.
            loop {
                match sub.rb.read_from(&mut sub.stream) {
                    Ok(0) => {
                        sub.rb.finish()?;
                        return Err(LoadError::Closed {
                            phase: PHASE,
                            reason: format!("end of stream on subscriber {}", ev.token().0),
                        });
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(source) => {
                        return Err(LoadError::Io {
                            phase: PHASE,
                            source,
                        });
                    }
                }
                let now = Instant::now();
                let before = sub.next;
                delivered += sub.take_frames(tpl, messages, room, warmed)?;
                if before < messages && sub.next == messages {
                    done += 1;
                    last = now;
                }
            }
        }
        if !events.is_empty() {
            let low = subs.iter().map(|s| s.next).min().unwrap_or(messages);
            slowest.store(low, Ordering::Release);
        }
    }
    Ok(last)
}
