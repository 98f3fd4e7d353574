//! The echo latency scenario, [`EchoLatency`]: ping-pong with one request
//! in flight, round-trip percentiles from an [`hdrhistogram`].

use std::time::{Duration, Instant};

use crate::protocol::{HEADER_LEN, Kind, encode_header};
use hdrhistogram::Histogram;
use serde::Serialize;

use super::DEFAULT_TIMEOUT;
use super::clock::{Clock, IO_SLICE, read_some, write_all};
use super::error::LoadError;
use super::transport::{Target, connect};
use super::wire::{check_size, expect_kind, recv_buffer, stamp, template, verify};

/// Echo latency: ping-pong with one request in flight, `round_trips`
/// measured after one unmeasured warm-up round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoLatency {
    /// The server.
    pub target: Target,
    /// Body bytes per request.
    pub size: usize,
    /// Measured round trips (at least 1).
    pub round_trips: u64,
    /// Time limit of the whole run (default [`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
}

/// The result of an [`EchoLatency`] run, in microseconds (histogram
/// precision: 3 significant digits).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencyResult {
    /// Median round trip.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Mean.
    pub mean_us: f64,
    /// Slowest.
    pub max_us: f64,
    /// Round trips measured.
    pub round_trips: u64,
}

impl EchoLatency {
    /// A run with the default timeout.
    pub fn new(target: Target, size: usize, round_trips: u64) -> EchoLatency {
        EchoLatency {
            target,
            size,
            round_trips,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets the time limit.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs it.
    pub fn run(&self) -> Result<LatencyResult, LoadError> {
        const PHASE: &str = "echo latency";
        let body_len = check_size(self.size)?;
        if self.round_trips == 0 {
            return Err(LoadError::Config("round_trips must be at least 1".into()));
        }
        let io = |source| LoadError::Io {
            phase: PHASE,
            source,
        };
        let clock = Clock::new(self.timeout);
        let mut s = connect(&self.target, self.timeout)?;
        s.set_read_timeout(Some(IO_SLICE)).map_err(io)?;
        s.set_write_timeout(Some(IO_SLICE)).map_err(io)?;
        let tpl = template(self.size);
        let mut frame = encode_header(Kind::EchoRequest, 0, body_len).to_vec();
        frame.extend_from_slice(&tpl);
        let mut rb = recv_buffer(self.size);
        // 1 ns .. 1 hour, 3 significant digits.
        let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3)
            .map_err(|e| LoadError::Config(format!("histogram: {e}")))?;
        let n = self.round_trips;
        for seq in 0..=n {
            stamp(&mut frame[HEADER_LEN..], seq);
            let t0 = Instant::now();
            write_all(&mut s, &frame, &clock, PHASE, seq, n)?;
            loop {
                if let Some(f) = rb.next_frame()? {
                    expect_kind(PHASE, &f, Kind::EchoReply)?;
                    verify(f.body, &tpl, seq).map_err(|detail| LoadError::Mismatch {
                        phase: PHASE,
                        index: seq,
                        detail,
                    })?;
                    break;
                }
                read_some(&mut s, &mut rb, &clock, PHASE, seq, n)?;
            }
            let ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
            if seq > 0 {
                hist.saturating_record(ns.max(1));
            }
        }
        let us = |ns: u64| ns as f64 / 1e3;
        Ok(LatencyResult {
            p50_us: us(hist.value_at_quantile(0.5)),
            p99_us: us(hist.value_at_quantile(0.99)),
            p999_us: us(hist.value_at_quantile(0.999)),
            mean_us: hist.mean() / 1e3,
            max_us: us(hist.max()),
            round_trips: hist.len(),
        })
    }
}
