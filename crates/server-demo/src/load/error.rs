//! The load generator's one error type, [`LoadError`]: every way a run can
//! fail (configuration, connect, I/O, deadline, a closed connection, a bad
//! or mismatched frame, the fd limit, a panicked or aborted thread).

use std::io;
use std::time::Duration;

use netbuf::framing::DecodeError;

/// Why a load run failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The scenario's parameters are unusable (e.g. fewer than 2 messages).
    #[error("invalid load configuration: {0}")]
    Config(String),
    /// Could not connect to the server.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// The target.
        target: String,
        /// The socket error.
        source: io::Error,
    },
    /// A socket (or file) operation failed.
    #[error("i/o error during {phase}: {source}")]
    Io {
        /// What the generator was doing.
        phase: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The deadline passed before the run completed.
    #[error("timed out after {after:?} during {phase} ({done} of {expected} done)")]
    Timeout {
        /// What the generator was waiting for.
        phase: &'static str,
        /// The scenario's time limit.
        after: Duration,
        /// Units (replies, deliveries, subscribers) completed.
        done: u64,
        /// Units expected.
        expected: u64,
    },
    /// The server closed the connection (with a `closing` frame's reason,
    /// or at end of stream).
    #[error("server closed the connection during {phase}: {reason}")]
    Closed {
        /// What the generator was doing.
        phase: &'static str,
        /// The `closing` frame's reason, or what happened to the socket.
        reason: String,
    },
    /// The server sent bytes that are not a valid frame stream.
    #[error("bad frame from the server: {0}")]
    Decode(#[from] DecodeError),
    /// A frame of the wrong kind or room, or one more than expected.
    #[error("unexpected frame during {phase}: {detail}")]
    UnexpectedFrame {
        /// What the generator was doing.
        phase: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// A reply or delivery whose body differs from what was sent.
    #[error("{phase}: message {index} does not match what was sent: {detail}")]
    Mismatch {
        /// What the generator was doing.
        phase: &'static str,
        /// Sequence number of the message (per connection / subscriber).
        index: u64,
        /// First difference found.
        detail: String,
    },
    /// The process cannot open enough sockets.
    #[error("need {needed} file descriptors but RLIMIT_NOFILE allows {limit}")]
    FdLimit {
        /// Descriptors needed.
        needed: u64,
        /// The limit that could be reached.
        limit: u64,
    },
    /// Another thread of the same run failed first (reported separately).
    #[error("aborted because another thread of the run failed")]
    Aborted,
    /// A worker thread panicked.
    #[error("a load generator thread panicked")]
    Panicked,
    /// JSON serialization failed.
    #[error("cannot serialize results: {0}")]
    Json(#[from] serde_json::Error),
    /// Some runs of a plan failed (their errors are in the table / JSON).
    #[error("{failed} of {total} load runs failed")]
    RunsFailed {
        /// Runs with an error.
        failed: usize,
        /// Runs in the plan.
        total: usize,
    },
}
