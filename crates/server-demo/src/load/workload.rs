//! [`Workload`]: what load to run, independent of where. The main job runs
//! it against each strategy's server, `bench-report` against each of its
//! servers; [`Workload::at`] makes it a runnable [`Scenario`] for one
//! [`Target`].

use super::error::LoadError;
use super::fanout::FanOut;
use super::latency::{EchoLatency, LatencyResult};
use super::plan::{Measurement, Scenario};
use super::table::fmt_size;
use super::throughput::EchoThroughput;
use super::transport::Target;

/// A load to run, without its target. The runs use the defaults of the
/// scenario structs: window [`DEFAULT_WINDOW`](super::DEFAULT_WINDOW), one
/// connection, time limit [`DEFAULT_TIMEOUT`](super::DEFAULT_TIMEOUT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Echo throughput ([`EchoThroughput`]).
    Echo {
        /// Body bytes.
        size: usize,
        /// Messages.
        messages: u64,
        /// The server enciphers its replies (`--transform chacha20`): the
        /// client deciphers them ([`EchoThroughput::decipher`]).
        decipher: bool,
    },
    /// Ping-pong round trips ([`EchoLatency`]).
    Latency {
        /// Body bytes.
        size: usize,
        /// Round trips.
        round_trips: u64,
    },
    /// One publisher, `subscribers` members of one room ([`FanOut`]).
    FanOut {
        /// Body bytes.
        size: usize,
        /// Subscribers.
        subscribers: usize,
        /// Publishes.
        messages: u64,
    },
}

/// What a [`Workload`] run measured, in the units both reports use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// Messages (echo), round trips (ping-pong) or deliveries (fan-out)
    /// per second.
    pub per_sec: f64,
    /// Body MB/s (one direction).
    pub mb_per_sec: f64,
    /// Messages, round trips or deliveries counted (the divisor of
    /// per-message costs).
    pub units: u64,
    /// The percentiles of a [`Workload::Latency`] run.
    pub latency: Option<LatencyResult>,
}

impl Workload {
    /// Label: `echo 64 B`, `ping-pong 64 B`, `fan-out 1 KiB x256` (an
    /// echo's whether deciphered or not: its report says where it ran and
    /// how).
    pub fn name(&self) -> String {
        match *self {
            Workload::Echo { size, .. } => format!("echo {}", fmt_size(size)),
            Workload::Latency { size, .. } => format!("ping-pong {}", fmt_size(size)),
            Workload::FanOut {
                size, subscribers, ..
            } => format!("fan-out {} x{subscribers}", fmt_size(size)),
        }
    }

    /// Body size in bytes.
    pub fn size(&self) -> usize {
        match *self {
            Workload::Echo { size, .. }
            | Workload::Latency { size, .. }
            | Workload::FanOut { size, .. } => size,
        }
    }

    /// The runnable scenario against `target`.
    pub fn at(&self, target: Target) -> Scenario {
        match *self {
            Workload::Echo {
                size,
                messages,
                decipher,
            } => EchoThroughput::new(target, size, messages)
                .with_decipher(decipher)
                .into(),
            Workload::Latency { size, round_trips } => {
                EchoLatency::new(target, size, round_trips).into()
            }
            Workload::FanOut {
                size,
                subscribers,
                messages,
            } => FanOut::new(target, size, subscribers, messages).into(),
        }
    }

    /// Runs it against `target`.
    pub fn run(&self, target: Target) -> Result<Outcome, LoadError> {
        let size = self.size() as f64;
        Ok(match self.at(target).run()? {
            Measurement::Throughput(r) => Outcome {
                per_sec: r.msgs_per_sec,
                mb_per_sec: r.mb_per_sec,
                units: match *self {
                    Workload::Echo { messages, .. } => messages,
                    _ => r.messages,
                },
                latency: None,
            },
            Measurement::Latency(r) => {
                let per_sec = 1e6 / r.mean_us.max(1e-9);
                Outcome {
                    per_sec,
                    mb_per_sec: per_sec * size / 1e6,
                    units: match *self {
                        Workload::Latency { round_trips, .. } => round_trips,
                        _ => r.round_trips,
                    },
                    latency: Some(r),
                }
            }
            Measurement::FanOut(r) => Outcome {
                per_sec: r.deliveries_per_sec,
                mb_per_sec: r.deliveries_per_sec * size / 1e6,
                units: r.deliveries,
                latency: None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_scenarios() {
        let t = Target::Tcp("127.0.0.1:1".parse().unwrap());
        for decipher in [false, true] {
            let echo = Workload::Echo {
                size: 64,
                messages: 10,
                decipher,
            };
            assert_eq!(echo.name(), "echo 64 B");
            let run = EchoThroughput::new(t.clone(), 64, 10).with_decipher(decipher);
            assert_eq!(echo.at(t.clone()), Scenario::Throughput(run));
        }
        let ping = Workload::Latency {
            size: 1 << 10,
            round_trips: 5,
        };
        assert_eq!(ping.name(), "ping-pong 1 KiB");
        assert_eq!(ping.size(), 1024);
        assert_eq!(ping.at(t.clone()).mode(), "latency");
        let fan = Workload::FanOut {
            size: 1 << 10,
            subscribers: 256,
            messages: 7,
        };
        assert_eq!(fan.name(), "fan-out 1 KiB x256");
        assert_eq!(
            fan.at(t.clone()),
            Scenario::FanOut(FanOut::new(t, 1024, 256, 7))
        );
    }
}
