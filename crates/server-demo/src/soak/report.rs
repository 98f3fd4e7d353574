//! What a run reports: the [`Totals`] and injected [`Faults`] of the
//! clients, the [`Memory`] peaks and bounds, and the [`SoakReport`] with
//! its human-readable summary (`Display`).

use std::fmt;
use std::time::Duration;

use super::memory::{AFTER_LOAD_SLACK, AFTER_LOAD_WAIT};
use super::zmtp;

/// Faults the clients injected, by kind.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// Frames with an invalid kind or flags.
    pub garbage: u64,
    /// Frames whose length is over the limit.
    pub oversize: u64,
    /// Connections dropped in the middle of a frame.
    pub drop_mid_frame: u64,
    /// Connections dropped with echo replies outstanding.
    pub drop_with_replies_owed: u64,
    /// Echo clients that stopped reading for a while.
    pub slow_echo_readers: u64,
    /// Subscribers that stopped reading for a while.
    pub slow_subscribers: u64,
    /// ... of which the server closed as slow consumers.
    pub slow_subscribers_closed: u64,
}

/// Totals of a run.
#[derive(Debug, Default, Clone)]
pub struct Totals {
    /// Connections opened.
    pub connections: u64,
    /// Echo requests sent.
    pub echo_sent: u64,
    /// Echo replies received and verified.
    pub echo_answered: u64,
    /// Publishes sent.
    pub publishes: u64,
    /// Deliveries received and verified.
    pub deliveries: u64,
    /// Joins sent.
    pub joins: u64,
    /// Leaves sent.
    pub leaves: u64,
    /// Bytes written by the clients.
    pub bytes_out: u64,
    /// Bytes read by the clients.
    pub bytes_in: u64,
    /// Faults injected.
    pub faults: Faults,
    /// What the ZMTP clients did.
    pub zmtp: zmtp::ZmtpTotals,
}

impl Totals {
    pub(super) fn add(&mut self, o: &Totals) {
        self.connections += o.connections;
        self.echo_sent += o.echo_sent;
        self.echo_answered += o.echo_answered;
        self.publishes += o.publishes;
        self.deliveries += o.deliveries;
        self.joins += o.joins;
        self.leaves += o.leaves;
        self.bytes_out += o.bytes_out;
        self.bytes_in += o.bytes_in;
        self.zmtp.add(&o.zmtp);
        let (f, g) = (&mut self.faults, &o.faults);
        f.garbage += g.garbage;
        f.oversize += g.oversize;
        f.drop_mid_frame += g.drop_mid_frame;
        f.drop_with_replies_owed += g.drop_with_replies_owed;
        f.slow_echo_readers += g.slow_echo_readers;
        f.slow_subscribers += g.slow_subscribers;
        f.slow_subscribers_closed += g.slow_subscribers_closed;
    }
}

/// Peaks seen by the monitor and the bounds they were held to.
#[derive(Debug, Default, Clone)]
pub struct Memory {
    /// RSS when the server had started (bytes).
    pub baseline_rss: u64,
    /// Highest RSS sampled.
    pub peak_rss: u64,
    /// Bound on RSS.
    pub rss_bound: u64,
    /// RSS once every client left and the server gave memory back (see
    /// [`AFTER_LOAD_SLACK`]), and how long that took.
    pub after_rss: u64,
    /// How long after the last session closed `after_rss` was read.
    pub after_wait: Duration,
    /// Where `after_rss` sits ([`rss_breakdown`](super::rss_breakdown)).
    pub after_where: String,
    /// Highest pool live bytes.
    pub peak_live_bytes: u64,
    /// Highest pool live messages.
    pub peak_live_messages: u64,
    /// Bound on pool live bytes.
    pub live_bytes_bound: u64,
    /// Highest bytes held by the pool's caches.
    pub peak_cached: u64,
    /// Bound on cache bytes.
    pub cached_bound: u64,
    /// Samples taken.
    pub samples: u64,
}

/// The outcome of a soak run.
#[derive(Debug, Default, Clone)]
pub struct SoakReport {
    /// Seed used.
    pub seed: u64,
    /// Client threads.
    pub clients: usize,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Totals over every connection.
    pub totals: Totals,
    /// Memory peaks and bounds.
    pub memory: Memory,
    /// Sessions the server opened / closed.
    pub sessions: (u64, u64),
    /// Final live sessions, room memberships, pool messages.
    pub final_state: (u64, usize, u64),
    /// Live messages in the leak report after shutdown.
    pub leaks: u64,
    /// Every failed check.
    pub failures: Vec<String>,
}

impl SoakReport {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

pub(super) fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

impl Memory {
    /// The summary's two memory lines: peaks against bounds, and what was
    /// given back after the load.
    fn fmt_summary(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self;
        writeln!(
            f,
            "  memory ({} samples): peak RSS {:.1} MiB (baseline {:.1}, bound {:.1}; the \
             process: server + client threads), pool live peak {:.1} MiB / {} msgs (bound \
             {:.1} MiB), pool cache peak {:.1} MiB (bound {:.1} MiB)",
            m.samples,
            mib(m.peak_rss),
            mib(m.baseline_rss),
            mib(m.rss_bound),
            mib(m.peak_live_bytes),
            m.peak_live_messages,
            mib(m.live_bytes_bound),
            mib(m.peak_cached),
            mib(m.cached_bound)
        )?;
        writeln!(
            f,
            "  memory given back: RSS {:.1} MiB {:.1} s after the last session closed \
             (bound: baseline + {} MiB within {} s); largest: {}",
            mib(m.after_rss),
            m.after_wait.as_secs_f64(),
            AFTER_LOAD_SLACK >> 20,
            AFTER_LOAD_WAIT.as_secs(),
            m.after_where
        )
    }
}

impl fmt::Display for SoakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.totals;
        let m = &self.memory;
        let x = &t.faults;
        writeln!(
            f,
            "soak: {:.1} s, seed {}, {} client threads, {} connections",
            self.elapsed.as_secs_f64(),
            self.seed,
            self.clients,
            t.connections
        )?;
        writeln!(
            f,
            "  messages: echo {} sent / {} answered and verified; publish {}, deliveries {} \
             verified; joins {}, leaves {}",
            t.echo_sent, t.echo_answered, t.publishes, t.deliveries, t.joins, t.leaves
        )?;
        writeln!(
            f,
            "  bytes: {:.1} MiB out, {:.1} MiB in",
            mib(t.bytes_out),
            mib(t.bytes_in)
        )?;
        writeln!(
            f,
            "  faults: garbage {}, oversize {}, drop mid-frame {}, drop with replies owed {}, \
             slow echo readers {}, slow subscribers {} ({} closed as slow consumers)",
            x.garbage,
            x.oversize,
            x.drop_mid_frame,
            x.drop_with_replies_owed,
            x.slow_echo_readers,
            x.slow_subscribers,
            x.slow_subscribers_closed
        )?;
        if t.zmtp.connections > 0 {
            writeln!(f, "{}", t.zmtp)?;
        }
        m.fmt_summary(f)?;
        writeln!(
            f,
            "  server: sessions opened {}, closed {}; after the clients left: live sessions {}, \
             room memberships {}, pool messages {}; leaks {}",
            self.sessions.0,
            self.sessions.1,
            self.final_state.0,
            self.final_state.1,
            self.final_state.2,
            self.leaks
        )?;
        if self.failures.is_empty() {
            write!(f, "  result: PASS (every check held)")
        } else {
            writeln!(f, "  result: FAIL ({} failed checks)", self.failures.len())?;
            for e in self.failures.iter().take(30) {
                writeln!(f, "    - {e}")?;
            }
            Ok(())
        }
    }
}
