//! Running scenarios: the [`Scenario`] enum over the three kinds, its
//! [`Measurement`], and the [`LoadPlan`] that runs a list of them (with a
//! progress bar) into [`LoadRecord`]s.

use std::io::{self, IsTerminal};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::error::LoadError;
use super::fanout::{FanOut, FanOutResult};
use super::latency::{EchoLatency, LatencyResult};
use super::table::fmt_size;
use super::throughput::{EchoThroughput, ThroughputResult};

/// One scenario of a [`LoadPlan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scenario {
    /// Echo throughput.
    Throughput(EchoThroughput),
    /// Echo latency.
    Latency(EchoLatency),
    /// Pub/sub fan-out.
    FanOut(FanOut),
}

impl From<EchoThroughput> for Scenario {
    fn from(s: EchoThroughput) -> Self {
        Scenario::Throughput(s)
    }
}

impl From<EchoLatency> for Scenario {
    fn from(s: EchoLatency) -> Self {
        Scenario::Latency(s)
    }
}

impl From<FanOut> for Scenario {
    fn from(s: FanOut) -> Self {
        Scenario::FanOut(s)
    }
}

impl Scenario {
    /// `"echo"`, `"latency"` or `"fanout"`.
    pub fn mode(&self) -> &'static str {
        match self {
            Scenario::Throughput(_) => "echo",
            Scenario::Latency(_) => "latency",
            Scenario::FanOut(_) => "fanout",
        }
    }

    /// Body size in bytes.
    pub fn size(&self) -> usize {
        match self {
            Scenario::Throughput(s) => s.size,
            Scenario::Latency(s) => s.size,
            Scenario::FanOut(s) => s.size,
        }
    }

    /// The parameters besides mode and size, e.g. `"window 64, 1 conn"`.
    pub fn params(&self) -> String {
        match self {
            Scenario::Throughput(s) => format!(
                "{} msgs, window {}, {} conn{}",
                s.messages,
                s.window,
                s.connections,
                if s.decipher { ", deciphered" } else { "" }
            ),
            Scenario::Latency(s) => format!("{} round trips", s.round_trips),
            Scenario::FanOut(s) => format!("{} subs, {} msgs", s.subscribers, s.messages),
        }
    }

    /// Runs it.
    pub fn run(&self) -> Result<Measurement, LoadError> {
        Ok(match self {
            Scenario::Throughput(s) => Measurement::Throughput(s.run()?),
            Scenario::Latency(s) => Measurement::Latency(s.run()?),
            Scenario::FanOut(s) => Measurement::FanOut(s.run()?),
        })
    }
}

/// The result of one scenario.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Measurement {
    /// From [`EchoThroughput`].
    Throughput(ThroughputResult),
    /// From [`EchoLatency`].
    Latency(LatencyResult),
    /// From [`FanOut`].
    FanOut(FanOutResult),
}

/// One row of a plan's results: what ran and what came out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadRecord {
    /// [`Scenario::mode`].
    pub mode: &'static str,
    /// Body bytes.
    pub size: usize,
    /// [`Scenario::params`].
    pub params: String,
    /// The measurement, if the run succeeded.
    pub result: Option<Measurement>,
    /// The error, if it failed.
    pub error: Option<String>,
}

/// A list of scenarios run one after the other. A failed run is recorded
/// and the plan goes on.
#[derive(Debug, Clone, Default)]
pub struct LoadPlan {
    /// The scenarios, in order.
    pub scenarios: Vec<Scenario>,
    /// Show a progress bar: `None` (default) shows it only when stdout is a
    /// terminal.
    pub progress: Option<bool>,
}

impl LoadPlan {
    /// An empty plan.
    pub fn new() -> LoadPlan {
        LoadPlan::default()
    }

    /// Appends a scenario.
    pub fn push(&mut self, s: impl Into<Scenario>) -> &mut Self {
        self.scenarios.push(s.into());
        self
    }

    /// Runs every scenario, in order.
    pub fn run(&self) -> Vec<LoadRecord> {
        let show = self.progress.unwrap_or_else(|| io::stdout().is_terminal());
        let bar = if show {
            let b = ProgressBar::new(self.scenarios.len() as u64);
            if let Ok(style) =
                ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            {
                b.set_style(style.progress_chars("=> "));
            }
            b
        } else {
            ProgressBar::hidden()
        };
        let mut out = Vec::with_capacity(self.scenarios.len());
        for s in &self.scenarios {
            bar.set_message(format!(
                "{} {} ({})",
                s.mode(),
                fmt_size(s.size()),
                s.params()
            ));
            let r = s.run();
            out.push(LoadRecord {
                mode: s.mode(),
                size: s.size(),
                params: s.params(),
                error: r.as_ref().err().map(|e| e.to_string()),
                result: r.ok(),
            });
            bar.inc(1);
        }
        bar.finish_and_clear();
        out
    }
}
