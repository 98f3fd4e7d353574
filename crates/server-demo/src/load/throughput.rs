//! The echo throughput scenario, [`EchoThroughput`]: `window` requests in
//! flight per connection, a writer and a reader thread per connection,
//! timed on the receiver from the first reply to the last.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use crate::protocol::{DEFAULT_MAX_BODY, DemoFraming, HEADER_LEN, Kind, encode_header};
use netbuf::{Compaction, LinearBuffer};
use serde::Serialize;

use super::clock::{Clock, IO_SLICE, first_cause, join, read_some, ser_secs, write_all};
use super::error::LoadError;
use super::transport::{Stream, Target, connect};
use super::wire::{COALESCE, check_size, expect_kind, stamp, template, verify};
use super::{DEFAULT_TIMEOUT, DEFAULT_WINDOW};

/// Minimum receive-buffer capacity of an echo-throughput reader (one per
/// connection, so it can afford fewer, larger reads).
const ECHO_RECV_CAPACITY: usize = 256 << 10;

/// Echo throughput: `messages` echo requests of `size` bytes, spread over
/// `connections`, each keeping `window` requests in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoThroughput {
    /// The server.
    pub target: Target,
    /// Body bytes per request.
    pub size: usize,
    /// Requests in total (at least 2 and at least one per connection).
    pub messages: u64,
    /// Requests in flight per connection (default [`DEFAULT_WINDOW`]).
    pub window: u64,
    /// Connections, each with a writer and a reader thread (default 1).
    pub connections: usize,
    /// Time limit of the whole run (default [`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
    /// The server enciphers its replies (`--transform chacha20`): the
    /// readers decipher them ([`Stream::decipher`] with
    /// [`DEMO_KEY`](crate::server::DEMO_KEY)) before checking them
    /// (default `false`).
    pub decipher: bool,
}

/// The result of an [`EchoThroughput`] run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ThroughputResult {
    /// Replies per second.
    pub msgs_per_sec: f64,
    /// Body megabytes (10^6 bytes) per second, one direction.
    pub mb_per_sec: f64,
    /// Replies counted (all but the first, which starts the clock).
    pub messages: u64,
    /// Body bytes of the counted replies.
    pub bytes: u64,
    /// From the first reply to the last.
    #[serde(rename = "elapsed_s", serialize_with = "ser_secs")]
    pub elapsed: Duration,
}

/// A run's writer and reader threads.
type Threads = (
    Vec<JoinHandle<Result<(), LoadError>>>,
    Vec<JoinHandle<Result<ReaderTimes, LoadError>>>,
);

#[derive(Debug, Clone, Copy)]
struct ReaderTimes {
    first: Instant,
    last: Instant,
}

impl EchoThroughput {
    /// A run with the default window, one connection and the default
    /// timeout.
    pub fn new(target: Target, size: usize, messages: u64) -> EchoThroughput {
        EchoThroughput {
            target,
            size,
            messages,
            window: DEFAULT_WINDOW,
            connections: 1,
            timeout: DEFAULT_TIMEOUT,
            decipher: false,
        }
    }

    /// Sets the window.
    pub fn with_window(mut self, window: u64) -> Self {
        self.window = window;
        self
    }

    /// Sets the number of connections.
    pub fn with_connections(mut self, connections: usize) -> Self {
        self.connections = connections;
        self
    }

    /// Sets the time limit.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets whether the replies are deciphered (see
    /// [`decipher`](Self::decipher)).
    pub fn with_decipher(mut self, decipher: bool) -> Self {
        self.decipher = decipher;
        self
    }

    /// Runs it. Fails with a typed error on a wrong reply, a closed
    /// connection or when the time limit passes.
    pub fn run(&self) -> Result<ThroughputResult, LoadError> {
        let body_len = self.check()?;
        let clock = Clock::new(self.timeout);
        let (writers, readers) = self.spawn(body_len, &clock)?;

        let mut errors = Vec::new();
        let mut times = Vec::new();
        for r in readers {
            match join(r) {
                Ok(t) => times.push(t),
                Err(e) => errors.push(e),
            }
        }
        for w in writers {
            if let Err(e) = join(w) {
                errors.push(e);
            }
        }
        if let Some(e) = first_cause(errors) {
            return Err(e);
        }
        let first = times.iter().map(|t| t.first).min();
        let last = times.iter().map(|t| t.last).max();
        let (Some(first), Some(last)) = (first, last) else {
            return Err(LoadError::Config("no connection received a reply".into()));
        };
        let elapsed = (last - first).max(Duration::from_micros(1));
        let messages = self.messages - 1;
        let bytes = messages * self.size as u64;
        let secs = elapsed.as_secs_f64();
        Ok(ThroughputResult {
            msgs_per_sec: messages as f64 / secs,
            mb_per_sec: bytes as f64 / secs / 1e6,
            messages,
            bytes,
            elapsed,
        })
    }

    /// Checks the parameters; returns the body length.
    fn check(&self) -> Result<u32, LoadError> {
        let body_len = check_size(self.size)?;
        if self.connections == 0 || self.window == 0 {
            return Err(LoadError::Config(
                "connections and window must be at least 1".into(),
            ));
        }
        if self.messages < 2 || self.messages < self.connections as u64 {
            return Err(LoadError::Config(format!(
                "need at least 2 messages and one per connection, got {} for {} connections",
                self.messages, self.connections
            )));
        }
        Ok(body_len)
    }

    /// The reader's handle of a new connection (its writer's is a clone,
    /// which does not decipher).
    fn reader_side(&self, s: Stream) -> Stream {
        if self.decipher {
            s.decipher(crate::server::DEMO_KEY, crate::server::DEMO_NONCE)
        } else {
            s
        }
    }

    /// Connects every connection and starts its writer and reader thread
    /// (the messages spread evenly over them).
    fn spawn(&self, body_len: u32, clock: &Clock) -> Result<Threads, LoadError> {
        let conns = (0..self.connections)
            .map(|_| connect(&self.target, self.timeout).map(|s| self.reader_side(s)))
            .collect::<Result<Vec<_>, _>>()?;
        let tpl = Arc::new(template(self.size));
        let per = self.messages / self.connections as u64;
        let extra = self.messages % self.connections as u64;

        let mut writers = Vec::new();
        let mut readers = Vec::new();
        for (i, rs) in conns.into_iter().enumerate() {
            let n = per + u64::from((i as u64) < extra);
            let ws = rs.try_clone().map_err(|source| LoadError::Io {
                phase: "echo throughput setup",
                source,
            })?;
            let received = Arc::new(AtomicU64::new(0));
            let (c, t, r, window) = (clock.clone(), tpl.clone(), received.clone(), self.window);
            let w = thread::Builder::new()
                .name("load-echo-writer".into())
                .spawn(move || c.guard(|| throughput_writer(ws, n, window, body_len, &t, &r, &c)))
                .map_err(|source| LoadError::Io {
                    phase: "spawning threads",
                    source,
                })?;
            let writer_thread = w.thread().clone();
            writers.push(w);
            let (c, t) = (clock.clone(), tpl.clone());
            let r = thread::Builder::new()
                .name("load-echo-reader".into())
                .spawn(move || {
                    c.guard(|| throughput_reader(rs, n, &t, &received, &writer_thread, &c))
                });
            match r {
                Ok(r) => readers.push(r),
                Err(source) => {
                    clock.abort.store(true, Ordering::Relaxed);
                    for w in writers {
                        let _ = join(w);
                    }
                    return Err(LoadError::Io {
                        phase: "spawning threads",
                        source,
                    });
                }
            }
        }
        Ok((writers, readers))
    }
}

fn throughput_writer(
    mut s: Stream,
    n: u64,
    window: u64,
    body_len: u32,
    tpl: &[u8],
    received: &AtomicU64,
    clock: &Clock,
) -> Result<(), LoadError> {
    const PHASE: &str = "echo throughput (sending)";
    s.set_write_timeout(Some(IO_SLICE))
        .map_err(|source| LoadError::Io {
            phase: PHASE,
            source,
        })?;
    let mut frame = encode_header(Kind::EchoRequest, 0, body_len).to_vec();
    frame.extend_from_slice(tpl);
    let mut out = Vec::with_capacity(COALESCE.min(frame.len() * window as usize));
    let mut sent = 0u64;
    while sent < n {
        let done = received.load(Ordering::Acquire);
        let mut credit = window.saturating_sub(sent.saturating_sub(done));
        if credit == 0 {
            clock.check("echo throughput (waiting for replies)", done, n)?;
            thread::park_timeout(Duration::from_millis(10));
            continue;
        }
        out.clear();
        while credit > 0 && sent < n {
            stamp(&mut frame[HEADER_LEN..], sent);
            sent += 1;
            credit -= 1;
            if frame.len() >= COALESCE {
                write_all(&mut s, &frame, clock, PHASE, done, n)?;
            } else {
                out.extend_from_slice(&frame);
                if out.len() + frame.len() > COALESCE {
                    break;
                }
            }
        }
        write_all(&mut s, &out, clock, PHASE, done, n)?;
    }
    Ok(())
}

fn throughput_reader(
    mut s: Stream,
    n: u64,
    tpl: &[u8],
    received: &AtomicU64,
    writer: &Thread,
    clock: &Clock,
) -> Result<ReaderTimes, LoadError> {
    const PHASE: &str = "echo throughput (receiving)";
    s.set_read_timeout(Some(IO_SLICE))
        .map_err(|source| LoadError::Io {
            phase: PHASE,
            source,
        })?;
    let mut rb = LinearBuffer::with_config(
        ECHO_RECV_CAPACITY,
        DemoFraming::with_max_body(tpl.len().max(DEFAULT_MAX_BODY)),
        Compaction::Lazy,
    );
    let mut got = 0u64;
    let mut first = None;
    let mut last = Instant::now();
    while got < n {
        read_some(&mut s, &mut rb, clock, PHASE, got, n)?;
        let now = Instant::now();
        let before = got;
        while let Some(f) = rb.next_frame()? {
            expect_kind(PHASE, &f, Kind::EchoReply)?;
            if got >= n {
                return Err(LoadError::UnexpectedFrame {
                    phase: PHASE,
                    detail: format!("reply beyond the {n} requests sent"),
                });
            }
            verify(f.body, tpl, got).map_err(|detail| LoadError::Mismatch {
                phase: PHASE,
                index: got,
                detail,
            })?;
            got += 1;
        }
        if got > before {
            first.get_or_insert(now);
            last = now;
            received.store(got, Ordering::Release);
            writer.unpark();
        }
    }
    Ok(ReaderTimes {
        first: first.unwrap_or(last),
        last,
    })
}
