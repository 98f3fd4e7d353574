//! The load generator: drives any server that speaks the suite's wire
//! format (see [`crate::protocol`]) over TCP or a Unix-domain socket (or,
//! in this process, the server's in-process transport) and measures it.
//!
//! Three scenarios, each a plain struct with a `run` method:
//!
//! * [`EchoThroughput`]: `window` echo requests in flight per connection
//!   (a writer and a reader thread per connection), timed on the receiver
//!   as libzmq's `local_thr` does: the clock starts when the first reply
//!   arrives, and that reply is not counted. Every reply is checked against
//!   its request (length, sequence number, body), deciphered first if the
//!   server enciphers them (`--transform chacha20`).
//! * [`EchoLatency`]: ping-pong, one request in flight; percentiles from an
//!   [`hdrhistogram`].
//! * [`FanOut`]: N subscribers join a room, one publisher publishes; the
//!   subscribers are read non-blocking with `mio` from one thread, so 1,000
//!   subscribers need 1,000 sockets but not 1,000 threads.
//!
//! A [`LoadPlan`] runs a list of them (with a progress bar when stdout is a
//! terminal); [`render_table`] and [`write_json`] report the results;
//! [`LoadArgs`] + [`run_load`] are the `server-demo load` subcommand.
//!
//! Every loop is bounded by a count and by a deadline: a server that hangs
//! yields [`LoadError::Timeout`], never a hung generator.
//!
//! The code is split by concept, each re-exported here: `transport`
//! (targets, streams, connecting: the crate's one client transport, which
//! the soak and the ZMTP client use too), `clock` (deadlines, bounded I/O),
//! `wire` (bodies and their checks), `throughput`, `latency` and `fanout`
//! (the three scenarios), `workload` (a scenario without its target, as
//! the main job and `bench-report` describe theirs), `plan` (running a list of them), `table` (the
//! Markdown table and JSON), `cli` (the subcommand) and `error`.
//!
//! ```no_run
//! use std::time::Duration;
//! use server_demo::load::{EchoLatency, EchoThroughput, LoadPlan, Target, render_table};
//!
//! let target = Target::Tcp("127.0.0.1:7000".parse().unwrap());
//! let mut plan = LoadPlan::new();
//! plan.push(EchoThroughput::new(target.clone(), 64, 100_000));
//! plan.push(EchoLatency::new(target, 64, 10_000).with_timeout(Duration::from_secs(10)));
//! let records = plan.run();
//! println!("{}", render_table(&records));
//! ```

mod cli;
mod clock;
mod error;
mod fanout;
mod latency;
mod plan;
mod table;
mod throughput;
mod transport;
mod wire;
mod workload;

pub use cli::{LoadArgs, LoadMode, parse_size, run_load};
pub use error::LoadError;
pub use fanout::{FanOut, FanOutResult};
pub use latency::{EchoLatency, LatencyResult};
pub use plan::{LoadPlan, LoadRecord, Measurement, Scenario};
pub use table::{fmt_size, render_table, to_json, write_json};
pub use throughput::{EchoThroughput, ThroughputResult};
pub use transport::{Stream, Target, connect, raise_fd_limit};
pub use workload::{Outcome, Workload};

use std::time::Duration;

/// Default time limit of one scenario run (connect to last reply).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Default number of echo requests in flight per connection.
pub const DEFAULT_WINDOW: u64 = 64;

/// Default body sizes of the `load` subcommand: 64 B, 256 B, 1 KiB, 4 KiB,
/// 64 KiB, 128 KiB, 256 KiB, 1 MiB.
pub const DEFAULT_SIZES: [usize; 8] = [
    64,
    256,
    1 << 10,
    4 << 10,
    64 << 10,
    128 << 10,
    256 << 10,
    1 << 20,
];

/// Default subscriber counts of the fan-out scenario.
pub const DEFAULT_SUBSCRIBERS: [usize; 4] = [1, 16, 256, 1000];

/// Receive buffers of all fan-out subscribers together may not exceed this
/// (each holds at least one whole frame); [`run_load`] skips larger
/// combinations and [`FanOut::run`] refuses them.
pub const FANOUT_BUFFER_LIMIT: usize = 512 << 20;
