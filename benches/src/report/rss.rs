//! Resident set size of a server process during the end-to-end matrix,
//! from `/proc/PID/status`: `VmRSS` at the start of a run, the peak during
//! it and the "after" figure once the run's clients are gone.
//!
//! The peak is `VmHWM` reset before each run by writing `5` to
//! `/proc/PID/clear_refs` (Linux 4.0 and later); where that is refused or
//! has no effect, a thread samples `VmRSS` every 10 ms instead
//! ([`PeakMethod`]). "After" polls `VmRSS` until it stops dropping
//! ([`Settle`]), so a run waits about a second for it, not a fixed 5 s.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`), in bytes (the
/// server's parser, [`server_demo::server::memory::status_field`]).
pub fn status_field_bytes(pid: u32, field: &str) -> Option<u64> {
    server_demo::server::memory::status_field(&pid.to_string(), field)
}

pub use server_demo::server::memory::parse_status_field;

/// Current resident set of process `pid` (`VmRSS`), in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    status_field_bytes(pid, "VmRSS")
}

/// Peak resident set of process `pid` since it started or since the last
/// [`reset_peak`] (`VmHWM`), in bytes.
pub fn hwm_bytes(pid: u32) -> Option<u64> {
    status_field_bytes(pid, "VmHWM")
}

/// Resets `VmHWM` of process `pid` to its current resident set (writes `5`
/// to `/proc/PID/clear_refs`; needs Linux 4.0+ and the right to write the
/// file, i.e. the same user).
pub fn reset_peak(pid: u32) -> std::io::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
}

/// How a run's peak resident set is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeakMethod {
    /// `VmHWM` after the run, reset through `clear_refs` before it.
    ClearRefs,
    /// The largest `VmRSS` seen by a thread sampling every [`SAMPLE_EVERY`].
    Sampled,
}

/// Sampling period of [`PeakMethod::Sampled`].
pub const SAMPLE_EVERY: Duration = Duration::from_millis(10);

impl PeakMethod {
    /// [`ClearRefs`](Self::ClearRefs) if resetting `VmHWM` of `pid` works:
    /// the write is accepted and, when the peak was above the current
    /// resident set by more than 1 MiB, it comes down. Else
    /// [`Sampled`](Self::Sampled).
    pub fn detect(pid: u32) -> PeakMethod {
        let (Some(hwm0), Some(rss0)) = (hwm_bytes(pid), rss_bytes(pid)) else {
            return PeakMethod::Sampled;
        };
        if reset_peak(pid).is_err() {
            return PeakMethod::Sampled;
        }
        match hwm_bytes(pid) {
            Some(hwm1) if hwm0 > rss0 + (1 << 20) && hwm1 >= hwm0 => PeakMethod::Sampled,
            Some(_) => PeakMethod::ClearRefs,
            None => PeakMethod::Sampled,
        }
    }

    /// How the method is described in the report.
    pub fn describe(self) -> &'static str {
        match self {
            PeakMethod::ClearRefs => {
                "`VmHWM`, reset through `/proc/PID/clear_refs` before each run"
            }
            PeakMethod::Sampled => "largest `VmRSS` sampled every 10 ms during the run",
        }
    }
}

/// Measures the peak resident set of one process over one run: created
/// before the run ([`start`](Self::start)), read after it
/// ([`finish`](Self::finish)).
#[derive(Debug)]
pub struct PeakProbe {
    pid: u32,
    sampler: Option<(Arc<AtomicBool>, JoinHandle<u64>)>,
}

impl PeakProbe {
    /// Resets the peak (`method` [`ClearRefs`](PeakMethod::ClearRefs)) or
    /// starts the sampling thread (also when the reset is refused).
    pub fn start(pid: u32, method: PeakMethod) -> PeakProbe {
        if method == PeakMethod::ClearRefs && reset_peak(pid).is_ok() {
            return PeakProbe { pid, sampler: None };
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("rss-sampler".into())
            .spawn(move || {
                let mut max = 0u64;
                while !flag.load(Ordering::Relaxed) {
                    max = max.max(rss_bytes(pid).unwrap_or(0));
                    std::thread::sleep(SAMPLE_EVERY);
                }
                max
            });
        PeakProbe {
            pid,
            sampler: handle.ok().map(|h| (stop, h)),
        }
    }

    /// The peak since [`start`](Self::start), in bytes (never below the
    /// current resident set); `None` if the process cannot be read.
    pub fn finish(self) -> Option<u64> {
        let now = rss_bytes(self.pid);
        let peak = match self.sampler {
            None => hwm_bytes(self.pid),
            Some((stop, handle)) => {
                stop.store(true, Ordering::Relaxed);
                handle.join().ok().filter(|&m| m > 0)
            }
        };
        match (peak, now) {
            (Some(p), Some(n)) => Some(p.max(n)),
            (p, n) => p.or(n),
        }
    }
}

/// When the "after" resident set is taken: `VmRSS` is polled every
/// `poll` once the run's clients are gone, and the run stops waiting when
/// it did not drop between two consecutive polls and at least `min` has
/// passed, or at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settle {
    /// Polling period.
    pub poll: Duration,
    /// Earliest stop.
    pub min: Duration,
    /// Latest stop (zero: one reading right away).
    pub max: Duration,
}

impl Settle {
    /// Polls every 100 ms, stops after 1 s at the earliest and `max` at the
    /// latest (the minimum is capped at `max`).
    pub fn up_to(max: Duration) -> Settle {
        let min = Duration::from_secs(1).min(max);
        Settle {
            poll: Duration::from_millis(100),
            min,
            max,
        }
    }

    /// One reading right away (warm-up runs).
    pub const NONE: Settle = Settle {
        poll: Duration::from_millis(100),
        min: Duration::ZERO,
        max: Duration::ZERO,
    };

    /// The rule in words, for the table's legend.
    pub fn describe(&self) -> String {
        if self.max.is_zero() {
            return "read right after the clients are gone".into();
        }
        format!(
            "polled every {} ms once the clients are gone, taken when it did not drop \
             between two polls after at least {:.1} s, or at {:.1} s",
            self.poll.as_millis(),
            self.min.as_secs_f64(),
            self.max.as_secs_f64()
        )
    }

    /// Waits for `pid`'s resident set to settle (see [`Settle`]) and
    /// returns it, in bytes, with the time waited.
    pub fn wait(&self, pid: u32) -> (Option<u64>, Duration) {
        self.run(|| rss_bytes(pid), std::thread::sleep)
    }

    /// [`wait`](Self::wait) with the reading and the sleeping supplied
    /// (time is counted in polls, so tests need no clock).
    pub fn run(
        &self,
        mut read: impl FnMut() -> Option<u64>,
        mut sleep: impl FnMut(Duration),
    ) -> (Option<u64>, Duration) {
        let mut last = read();
        let mut waited = Duration::ZERO;
        while waited < self.max {
            let step = self
                .poll
                .min(self.max - waited)
                .max(Duration::from_millis(1));
            sleep(step);
            waited += step;
            let now = read();
            let dropped = matches!((last, now), (Some(a), Some(b)) if b < a);
            last = now.or(last);
            if waited >= self.min && !dropped {
                break;
            }
        }
        (last, waited)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use server_demo::sync::LockExt;

    /// The tests that move or reset this process's peak run one at a time.
    static PEAK: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn parses_status_fields() {
        let s = "Name:\tx\nVmHWM:\t   15484 kB\nVmRSS:\t    3772 kB\nThreads:\t3\n";
        assert_eq!(parse_status_field(s, "VmRSS"), Some(3772 * 1024));
        assert_eq!(parse_status_field(s, "VmHWM"), Some(15484 * 1024));
        assert_eq!(parse_status_field(s, "VmSwap"), None);
        assert_eq!(parse_status_field(s, "Threads"), Some(3 * 1024));
    }

    #[test]
    fn reads_own_rss() {
        let pid = std::process::id();
        let rss = rss_bytes(pid).expect("VmRSS");
        assert!(rss > 100 << 10, "rss {rss}");
        assert!(hwm_bytes(pid).expect("VmHWM") >= rss / 2);
    }

    #[test]
    fn clear_refs_resets_the_peak() {
        let _one = PEAK.locked();
        let pid = std::process::id();
        // 64 MiB touched then freed (an mmap of its own with glibc, so the
        // resident set comes down and only VmHWM remembers it).
        let mut v = vec![0u8; 64 << 20];
        for b in v.iter_mut().step_by(4096) {
            *b = 1;
        }
        std::hint::black_box(&v);
        let hwm0 = hwm_bytes(pid).expect("VmHWM");
        drop(v);
        let rss = rss_bytes(pid).expect("VmRSS");
        if hwm0 < rss + (32 << 20) {
            eprintln!("allocator kept the memory (rss {rss}, hwm {hwm0}): inconclusive");
            return;
        }
        if let Err(e) = reset_peak(pid) {
            eprintln!("clear_refs refused ({e}): the report samples instead");
            assert_eq!(PeakMethod::detect(pid), PeakMethod::Sampled);
            return;
        }
        let hwm1 = hwm_bytes(pid).expect("VmHWM");
        assert!(hwm1 + (32 << 20) <= hwm0, "hwm {hwm0} -> {hwm1}");
    }

    #[test]
    fn probe_sees_a_peak_either_way() {
        let _one = PEAK.locked();
        let pid = std::process::id();
        for method in [PeakMethod::ClearRefs, PeakMethod::Sampled] {
            let start = rss_bytes(pid).expect("VmRSS");
            let probe = PeakProbe::start(pid, method);
            let mut v = vec![0u8; 32 << 20];
            for b in v.iter_mut().step_by(4096) {
                *b = 1;
            }
            std::hint::black_box(&v);
            std::thread::sleep(Duration::from_millis(50));
            drop(v);
            let peak = probe.finish().expect("peak");
            assert!(peak >= start + (16 << 20), "{method:?}: {start} -> {peak}");
        }
    }

    fn settle(rule: Settle, readings: &[u64]) -> (Option<u64>, Duration, usize) {
        let mut it = readings.iter().copied();
        let mut last = None;
        let mut reads = 0;
        let (v, t) = rule.run(
            || {
                reads += 1;
                last = it.next().or(last);
                last
            },
            |_| {},
        );
        (v, t, reads)
    }

    #[test]
    fn settle_stops_when_it_stops_dropping() {
        let rule = Settle::up_to(Duration::from_secs(5));
        // Drops for 1.5 s, then flat: stops at the first flat poll after 1 s.
        let mut r: Vec<u64> = (0..16).map(|i| 100 - i).collect();
        r.extend([85, 85, 85]);
        let (v, t, _) = settle(rule, &r);
        assert_eq!(v, Some(85));
        assert_eq!(t, Duration::from_millis(1600));
        // Flat from the start: still waits the minimum.
        let (v, t, reads) = settle(rule, &[50; 40]);
        assert_eq!((v, t, reads), (Some(50), Duration::from_secs(1), 11));
        // Never settles: the maximum.
        let r: Vec<u64> = (0..100).map(|i| 1000 - i).collect();
        let (v, t, _) = settle(rule, &r);
        assert_eq!((v, t), (Some(950), Duration::from_secs(5)));
        // Zero: one reading.
        let (v, t, reads) = settle(Settle::NONE, &[7, 6]);
        assert_eq!((v, t, reads), (Some(7), Duration::ZERO, 1));
        // A rise counts as settled.
        let (v, _, _) = settle(
            rule,
            &[9; 10].iter().copied().chain([8, 12]).collect::<Vec<_>>(),
        );
        assert_eq!(v, Some(12));
    }
}
