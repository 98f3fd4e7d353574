//! Harness of the ZMTP interop tests: the server under test as a child
//! process ([`server`]), real libzmq sockets with timeouts ([`peers`]) and a
//! raw ZMTP client for the bad inputs libzmq never sends ([`raw`]).

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod peers;
pub mod raw;
pub mod server;

use std::sync::mpsc;
use std::time::Duration;

/// Every blocking step of a test gives up after this long, so a hang fails
/// the test instead of blocking CI (never a timing assertion: a healthy run
/// finishes each step in milliseconds).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `f` on its own thread and fails the test if it has not returned
/// within `secs` (the last guard against a hang that no socket timeout
/// catches). Panics inside `f` are re-raised.
pub fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let h = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => {
            let _ = h.join();
            v
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match h.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the closure returned without sending"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("test still running after {secs} s: hang"),
    }
}

/// The two transports every test runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `tcp://127.0.0.1:PORT`.
    Tcp,
    /// `ipc://PATH` (a Unix socket).
    Ipc,
}

/// `n` bytes of a pattern that depends on `seed`, so a misplaced or
/// truncated body never compares equal.
pub fn pattern(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
