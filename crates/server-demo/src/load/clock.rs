//! Deadlines and bounded blocking I/O: the [`Clock`] of one run (deadline,
//! time limit, abort flag shared by its threads), `write_all` / `read_some`
//! in [`IO_SLICE`] steps that check it, and the helpers that join worker
//! threads and pick the error that caused a failed run.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::protocol::DemoFraming;
use netbuf::LinearBuffer;

use super::error::LoadError;
use super::transport::Stream;

/// How long one blocking socket call may wait before the deadline and the
/// abort flag are checked again.
pub(super) const IO_SLICE: Duration = Duration::from_millis(100);

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Deadline, time limit and abort flag of one run.
#[derive(Debug, Clone)]
pub(super) struct Clock {
    deadline: Instant,
    limit: Duration,
    pub(super) abort: Arc<AtomicBool>,
}

impl Clock {
    pub(super) fn new(limit: Duration) -> Clock {
        Clock {
            deadline: Instant::now() + limit,
            limit,
            abort: Arc::new(AtomicBool::new(false)),
        }
    }

    /// `Err` if the run is aborted or past its deadline.
    pub(super) fn check(
        &self,
        phase: &'static str,
        done: u64,
        expected: u64,
    ) -> Result<(), LoadError> {
        if self.abort.load(Ordering::Relaxed) {
            return Err(LoadError::Aborted);
        }
        if Instant::now() >= self.deadline {
            return Err(LoadError::Timeout {
                phase,
                after: self.limit,
                done,
                expected,
            });
        }
        Ok(())
    }

    /// Runs `f` and sets the abort flag if it fails, so the sibling
    /// threads stop at their next check.
    pub(super) fn guard<T>(
        &self,
        f: impl FnOnce() -> Result<T, LoadError>,
    ) -> Result<T, LoadError> {
        let r = f();
        if r.is_err() {
            self.abort.store(true, Ordering::Relaxed);
        }
        r
    }
}

/// `write_all` in `IO_SLICE` steps, checking the deadline between them.
pub(super) fn write_all(
    s: &mut Stream,
    mut buf: &[u8],
    clock: &Clock,
    phase: &'static str,
    done: u64,
    expected: u64,
) -> Result<(), LoadError> {
    while !buf.is_empty() {
        match s.write(buf) {
            Ok(0) => {
                return Err(LoadError::Closed {
                    phase,
                    reason: "socket accepts no more bytes".into(),
                });
            }
            Ok(n) => buf = &buf[n..],
            Err(e) if is_timeout(&e) => clock.check(phase, done, expected)?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(LoadError::Io { phase, source }),
        }
    }
    Ok(())
}

/// One successful read into `rb` (`IO_SLICE` steps, deadline checked).
pub(super) fn read_some(
    s: &mut Stream,
    rb: &mut LinearBuffer<DemoFraming>,
    clock: &Clock,
    phase: &'static str,
    done: u64,
    expected: u64,
) -> Result<usize, LoadError> {
    loop {
        match rb.read_from(s) {
            Ok(0) => {
                rb.finish()?;
                return Err(LoadError::Closed {
                    phase,
                    reason: "end of stream".into(),
                });
            }
            Ok(n) => return Ok(n),
            Err(e) if is_timeout(&e) => clock.check(phase, done, expected)?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(LoadError::Io { phase, source }),
        }
    }
}

pub(super) fn join<T>(h: thread::JoinHandle<Result<T, LoadError>>) -> Result<T, LoadError> {
    h.join().unwrap_or(Err(LoadError::Panicked))
}

/// The first error that is not [`LoadError::Aborted`] (the cause), else
/// the first error.
pub(super) fn first_cause(errors: Vec<LoadError>) -> Option<LoadError> {
    let mut aborted = None;
    for e in errors {
        if matches!(e, LoadError::Aborted) {
            aborted.get_or_insert(e);
        } else {
            return Some(e);
        }
    }
    aborted
}

pub(super) fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}
