//! Measuring the gather/linear crossover of the [`Flusher`] on this
//! machine: an explicit call, never made by the flusher itself.

use std::io::{self, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::flush::{DEFAULT_GATHER_THRESHOLD, Flusher, GatherThreshold, OutFrame, Transport};
use crate::framing::HeaderBytes;

/// What [`calibrate`] measured: per body size, nanoseconds per frame by the
/// linear and the gather path, and the threshold chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// The transport measured.
    pub transport: Transport,
    /// `(body size, linear ns/frame, gather ns/frame)`.
    pub rows: Vec<(usize, f64, f64)>,
    /// The smallest size from which gather was never slower.
    pub threshold: usize,
}

/// The calibrated threshold for `transport`, measured by [`calibrate`] on
/// the first call per transport in this process and remembered (the
/// default, [`DEFAULT_GATHER_THRESHOLD`], if the measurement fails).
///
/// ```no_run
/// use netbuf::{Flusher, Transport, calibrated_threshold};
/// let flusher: Flusher = Flusher::new(calibrated_threshold(Transport::Tcp));
/// ```
pub fn calibrated_threshold(transport: Transport) -> GatherThreshold {
    GatherThreshold::Bytes(calibrated(transport).threshold)
}

/// The cached calibration for `t` (measured on first use).
pub fn calibrated(t: Transport) -> &'static Calibration {
    static TCP: OnceLock<Calibration> = OnceLock::new();
    static UNIX: OnceLock<Calibration> = OnceLock::new();
    let cell = match t {
        Transport::Tcp => &TCP,
        Transport::Unix => &UNIX,
    };
    cell.get_or_init(|| {
        calibrate(t).unwrap_or(Calibration {
            transport: t,
            rows: Vec::new(),
            threshold: DEFAULT_GATHER_THRESHOLD,
        })
    })
}

/// Measures the gather/linear crossover on this machine over a loopback
/// connection of the given transport: batches of frames of each candidate
/// body size are sent both ways, best of five. Takes tens of
/// milliseconds, opens a loopback connection and spawns a reader thread;
/// [`calibrated_threshold`] runs it once per process.
pub fn calibrate(transport: Transport) -> io::Result<Calibration> {
    const SIZES: [usize; 9] = [
        512,
        1 << 10,
        2 << 10,
        4 << 10,
        8 << 10,
        16 << 10,
        32 << 10,
        64 << 10,
        128 << 10,
    ];
    let (mut tx, rx): (Box<dyn Write + Send>, Box<dyn io::Read + Send>) = match transport {
        Transport::Tcp => {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            let a = std::net::TcpStream::connect(l.local_addr()?)?;
            let (b, _) = l.accept()?;
            a.set_nodelay(true)?;
            (Box::new(a), Box::new(b))
        }
        Transport::Unix => {
            let (a, b) = std::os::unix::net::UnixStream::pair()?;
            (Box::new(a), Box::new(b))
        }
    };
    let reader = std::thread::spawn(move || {
        let mut rx = rx;
        let mut sink = vec![0u8; 256 << 10];
        while let Ok(n) = rx.read(&mut sink) {
            if n == 0 {
                break;
            }
        }
    });
    let mut rows = Vec::new();
    for size in SIZES {
        let body = vec![0x5au8; size];
        let frames = ((1usize << 20) / size).clamp(16, 256);
        let mut linear = Duration::MAX;
        let mut gather = Duration::MAX;
        for _ in 0..5 {
            for (threshold, best) in [(usize::MAX, &mut linear), (0, &mut gather)] {
                let mut f: Flusher<&[u8]> = Flusher::new(GatherThreshold::Bytes(threshold));
                let start = Instant::now();
                for _ in 0..frames {
                    f.push(OutFrame::new(HeaderBytes::new(&[0; 8]), &body[..]));
                }
                f.flush(&mut tx).map_err(io::Error::from)?;
                *best = (*best).min(start.elapsed());
            }
        }
        rows.push((
            size,
            linear.as_nanos() as f64 / frames as f64,
            gather.as_nanos() as f64 / frames as f64,
        ));
    }
    drop(tx);
    let _ = reader.join();
    // The smallest size from which gather is never slower than linear
    // (within 5%: at the top sizes both are bound by the kernel's copy, and
    // a tie must not push the threshold up on a noisy machine).
    let mut threshold = usize::MAX;
    for &(size, l, g) in rows.iter().rev() {
        if g <= l * 1.05 {
            threshold = size;
        } else {
            break;
        }
    }
    if threshold == usize::MAX {
        threshold = SIZES[SIZES.len() - 1] * 2;
    }
    Ok(Calibration {
        transport,
        rows,
        threshold,
    })
}
