//! The `server-demo load` subcommand: [`LoadArgs`] (clap), the
//! [`LoadPlan`] they describe with default counts per size, and
//! [`run_load`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::protocol::HEADER_LEN;

use super::error::LoadError;
use super::fanout::FanOut;
use super::latency::EchoLatency;
use super::plan::LoadPlan;
use super::table::{fmt_size, render_table, write_json};
use super::throughput::EchoThroughput;
use super::transport::Target;
use super::{DEFAULT_WINDOW, FANOUT_BUFFER_LIMIT};

/// Which scenarios `server-demo load` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadMode {
    /// Echo throughput.
    Echo,
    /// Echo latency (ping-pong).
    Latency,
    /// Pub/sub fan-out.
    Fanout,
    /// All three.
    All,
}

/// Parses `64`, `4k`, `4KiB`, `1M`, `1MiB`, `1 MiB` (powers of 1024).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num.parse().map_err(|_| format!("bad size {s:?}"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        _ => return Err(format!("bad size unit in {s:?} (use B, KiB or MiB)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} too large"))
}

/// Arguments of `server-demo load` (flatten into a clap subcommand).
///
/// Counts left out are chosen per size so that each run moves a bounded
/// amount of data (see [`LoadArgs::plan`]).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct LoadArgs {
    /// TCP address of the server.
    #[arg(
        long,
        value_name = "ADDR",
        conflicts_with = "unix",
        required_unless_present = "unix"
    )]
    pub tcp: Option<SocketAddr>,
    /// Unix-domain socket path of the server.
    #[arg(long, value_name = "PATH")]
    pub unix: Option<PathBuf>,
    /// Scenarios to run.
    #[arg(long, value_enum, default_value_t = LoadMode::All)]
    pub mode: LoadMode,
    /// Body sizes (B, KiB, MiB suffixes). Bodies over 10 KiB need a server
    /// started with a raised --max-frame.
    #[arg(
        long,
        value_delimiter = ',',
        value_parser = parse_size,
        default_value = "64,256,1KiB,4KiB,64KiB,128KiB,256KiB,1MiB"
    )]
    pub sizes: Vec<usize>,
    /// Echo requests per throughput run / publishes per fan-out run
    /// (default: by size).
    #[arg(long, value_name = "N")]
    pub messages: Option<u64>,
    /// Round trips per latency run (default: by size).
    #[arg(long, value_name = "N")]
    pub round_trips: Option<u64>,
    /// Echo requests in flight per connection.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_WINDOW)]
    pub window: u64,
    /// Connections of a throughput run.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub connections: usize,
    /// Subscriber counts of the fan-out runs.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256,1000")]
    pub subscribers: Vec<usize>,
    /// Room of the fan-out runs.
    #[arg(long, default_value_t = 1)]
    pub room: u16,
    /// Pace the fan-out publisher: at most N publishes ahead of the
    /// slowest subscriber (0: as fast as the socket takes them).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub pace: u64,
    /// Time limit of each run, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub timeout: u64,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Never show the progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

fn clamp_count(budget: usize, per: usize, lo: u64, hi: u64) -> u64 {
    ((budget / per.max(1)) as u64).clamp(lo, hi)
}

impl LoadArgs {
    /// The target named by `--tcp` or `--unix`.
    pub fn target(&self) -> Result<Target, LoadError> {
        match (&self.tcp, &self.unix) {
            (Some(a), None) => Ok(Target::Tcp(*a)),
            (None, Some(p)) => Ok(Target::Unix(p.clone())),
            _ => Err(LoadError::Config(
                "give exactly one of --tcp or --unix".into(),
            )),
        }
    }

    /// The plan these arguments describe, and notes on the combinations it
    /// skips (fan-outs whose receive buffers would exceed
    /// [`FANOUT_BUFFER_LIMIT`]).
    ///
    /// Default counts: throughput `128 MiB / frame` requests (1,000 ..
    /// 200,000), latency `64 MiB / frame` round trips (500 .. 20,000),
    /// fan-out `32 MiB / (frame * subscribers)` publishes (20 .. 20,000).
    pub fn plan(&self) -> Result<(LoadPlan, Vec<String>), LoadError> {
        let target = self.target()?;
        let timeout = Duration::from_secs(self.timeout.max(1));
        let all = self.mode == LoadMode::All;
        let mut plan = LoadPlan {
            scenarios: Vec::new(),
            progress: if self.no_progress { Some(false) } else { None },
        };
        let mut skipped = Vec::new();
        for &size in &self.sizes {
            let frame = size + HEADER_LEN;
            if all || self.mode == LoadMode::Echo {
                let n = self
                    .messages
                    .unwrap_or_else(|| clamp_count(128 << 20, frame, 1_000, 200_000));
                plan.push(
                    EchoThroughput::new(target.clone(), size, n)
                        .with_window(self.window)
                        .with_connections(self.connections)
                        .with_timeout(timeout),
                );
            }
            if all || self.mode == LoadMode::Latency {
                let n = self
                    .round_trips
                    .unwrap_or_else(|| clamp_count(64 << 20, frame, 500, 20_000));
                plan.push(EchoLatency::new(target.clone(), size, n).with_timeout(timeout));
            }
            if all || self.mode == LoadMode::Fanout {
                for &subs in &self.subscribers {
                    let n = self.messages.unwrap_or_else(|| {
                        clamp_count(32 << 20, frame.saturating_mul(subs.max(1)), 20, 20_000)
                    });
                    let f = FanOut::new(target.clone(), size, subs, n)
                        .with_room(self.room)
                        .with_pace(self.pace)
                        .with_timeout(timeout);
                    if f.buffer_memory() > FANOUT_BUFFER_LIMIT {
                        skipped.push(format!(
                            "skipped fanout {} with {subs} subscribers: {} MiB of receive buffers (limit {} MiB)",
                            fmt_size(size),
                            f.buffer_memory() >> 20,
                            FANOUT_BUFFER_LIMIT >> 20
                        ));
                    } else {
                        plan.push(f);
                    }
                }
            }
        }
        Ok((plan, skipped))
    }
}

/// `server-demo load`: runs the plan, prints the Markdown table (and the
/// skipped combinations) on stdout, writes the JSON file if asked, and
/// fails with [`LoadError::RunsFailed`] if any run failed.
pub fn run_load(args: LoadArgs) -> Result<(), LoadError> {
    let (plan, skipped) = args.plan()?;
    let target = args.target()?;
    let records = plan.run();
    println!("load against {target}\n");
    print!("{}", render_table(&records));
    for note in &skipped {
        println!("note: {note}");
    }
    if let Some(path) = &args.json {
        write_json(path, &records)?;
    }
    let failed = records.iter().filter(|r| r.error.is_some()).count();
    if failed > 0 {
        return Err(LoadError::RunsFailed {
            failed,
            total: records.len(),
        });
    }
    Ok(())
}
