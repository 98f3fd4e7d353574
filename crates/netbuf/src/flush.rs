//! [`Flusher`]: turns queued frames into as few writes as possible.
//!
//! Small frames are encoded (header + body) into one reusable linear send
//! buffer, so a hundred 64 B replies leave in one `write`. Frames whose body
//! is at least the gather threshold are not copied: their 8-byte header and
//! their body go to `write_vectored` as two slices, next to the linear chunk
//! before them, so small and large frames queued together still leave in
//! one call (up to [`MAX_IOV`] slices). The body is kept alive, and dropped
//! (freed through its origin tag) only once its last byte is written.
//! Partial writes and `WouldBlock` resume at the exact byte offset; frames
//! never interleave.
//!
//! # Threshold
//!
//! Copying a few KiB is cheaper than describing it to the kernel; for large
//! bodies it is the other way round. Where the crossover lies depends on the
//! machine and the transport (the field report measured 32-64 KiB on its
//! OS; the reference machine here crosses below 4 KiB on TCP), so it is a
//! setting: [`GatherThreshold::Auto`] measures it once per process per
//! transport with [`calibrate`].
//!
//! # Transforms
//!
//! A per-session [`Transform`] (e.g. [`ChaCha20Transform`], standing in for
//! session encryption) is applied at flush time, fused with the copy into
//! the send buffer: a shared broadcast body is enciphered per session
//! without a copy on the logic thread. A transform changes every byte, so a
//! session with one sends nothing by the gather path: its large bodies are
//! copied (transformed) too, and [`FlushMetrics`] shows it.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::codec::HEADER_LEN;
use crate::send_queue::QueueItem;

/// Most slices passed to one `write_vectored` call (Linux's `IOV_MAX` is
/// 1024; 64 already covers megabytes of large bodies per call).
pub const MAX_IOV: usize = 64;

/// Default threshold when none is calibrated: 16 KiB.
pub const DEFAULT_GATHER_THRESHOLD: usize = 16 << 10;

/// One frame waiting to be sent: its encoded header and its body.
///
/// ```
/// use netbuf::{codec::{encode_header, Kind}, OutFrame};
/// let f = OutFrame::new(encode_header(Kind::EchoReply, 0, 5), b"hello".to_vec());
/// assert_eq!(netbuf::QueueItem::byte_size(&f), 13);
/// ```
#[derive(Debug)]
pub struct OutFrame<B = crate::send_queue::Outgoing> {
    /// The 8-byte wire header.
    pub header: [u8; HEADER_LEN],
    /// The body (its length must match the header's length field).
    pub body: B,
}

impl<B> OutFrame<B> {
    /// A frame from an encoded header and a body.
    pub fn new(header: [u8; HEADER_LEN], body: B) -> Self {
        OutFrame { header, body }
    }
}

impl<B: AsRef<[u8]> + Send> QueueItem for OutFrame<B> {
    #[inline]
    fn byte_size(&self) -> usize {
        HEADER_LEN + self.body.as_ref().len()
    }
}

/// A per-session byte-stream transform applied while copying into the
/// send buffer (a stand-in for session encryption).
pub trait Transform: Send {
    /// Writes the transform of `src` into `dst` (same length), continuing
    /// the session's stream.
    fn apply(&mut self, src: &[u8], dst: &mut [u8]);
}

/// ChaCha20 (RFC 8439) keystream applied to the session's byte stream.
///
/// ```
/// use netbuf::{ChaCha20Transform, Transform};
/// let mut a = ChaCha20Transform::new([7; 32], [1; 12]);
/// let mut b = ChaCha20Transform::new([7; 32], [1; 12]);
/// let mut enc = [0u8; 5];
/// a.apply(b"hello", &mut enc);
/// let mut dec = [0u8; 5];
/// b.apply(&enc, &mut dec);
/// assert_eq!(&dec, b"hello");
/// ```
pub struct ChaCha20Transform {
    cipher: chacha20::ChaCha20,
}

impl ChaCha20Transform {
    /// A cipher for one session's stream.
    pub fn new(key: [u8; 32], nonce: [u8; 12]) -> Self {
        use chacha20::cipher::KeyIvInit;
        ChaCha20Transform {
            cipher: chacha20::ChaCha20::new(&key.into(), &nonce.into()),
        }
    }
}

impl std::fmt::Debug for ChaCha20Transform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChaCha20Transform")
    }
}

impl Transform for ChaCha20Transform {
    fn apply(&mut self, src: &[u8], dst: &mut [u8]) {
        use chacha20::cipher::StreamCipher;
        // Lengths are equal by contract; a ChaCha20 stream of 256 GiB per
        // session cannot be exhausted by a server's session.
        if self.cipher.apply_keystream_b2b(src, dst).is_err() {
            dst.fill(0);
        }
    }
}

/// When a body goes out by the gather path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatherThreshold {
    /// Copy everything into the linear buffer (`--send linear`).
    Never,
    /// Bodies of at least this many bytes are gathered (`--gather-threshold`).
    Bytes(usize),
    /// Measure the crossover on this machine for this transport, once per
    /// process (`--send auto`).
    Auto(Transport),
}

impl GatherThreshold {
    /// Every body by the gather path (`--send gather`).
    pub const ALWAYS: GatherThreshold = GatherThreshold::Bytes(0);

    /// The threshold in bytes (`usize::MAX` for never), calibrating if needed.
    pub fn resolve(self) -> usize {
        match self {
            GatherThreshold::Never => usize::MAX,
            GatherThreshold::Bytes(n) => n,
            GatherThreshold::Auto(t) => calibrated(t).threshold,
        }
    }
}

/// The transport a threshold is calibrated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Loopback TCP.
    Tcp,
    /// A Unix-domain stream socket.
    Unix,
}

/// Why a flush failed. The session should be closed; nothing else is
/// affected, and dropping the flusher frees every pending body.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    /// The writer accepted zero bytes (peer gone).
    #[error("the connection accepted no bytes (write returned 0)")]
    WriteZero,
    /// The writer claimed to have written more bytes than it was given: a
    /// broken `Write` implementation. Nothing was popped; the flusher's
    /// position is unchanged.
    #[error("the writer claimed {claimed} bytes written of {offered} offered")]
    WriterOverclaimed {
        /// The count the writer returned.
        claimed: usize,
        /// The bytes the flusher offered in that call.
        offered: usize,
    },
    /// Any other I/O error.
    #[error("write failed: {0}")]
    Io(#[from] io::Error),
}

impl From<FlushError> for io::Error {
    /// For callers that speak `io::Result`: `WriteZero` and
    /// `WriterOverclaimed` map to their `io::ErrorKind`s.
    fn from(e: FlushError) -> io::Error {
        match e {
            FlushError::Io(e) => e,
            FlushError::WriteZero => io::ErrorKind::WriteZero.into(),
            e @ FlushError::WriterOverclaimed { .. } => {
                io::Error::new(io::ErrorKind::InvalidData, e.to_string())
            }
        }
    }
}

/// The outcome of [`Flusher::flush`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// Everything pending was written.
    Done,
    /// The writer would block; call again when it is writable.
    WouldBlock,
}

/// What a flusher did, for the large-path ratio and copy accounting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushMetrics {
    /// Frames sent by the linear (copy) path.
    pub linear_frames: u64,
    /// Their bytes (header + body).
    pub linear_bytes: u64,
    /// Frames whose body went by the gather path.
    pub gather_frames: u64,
    /// Their bytes (header + body).
    pub gather_bytes: u64,
    /// Bytes copied into the send buffer.
    pub bytes_copied: u64,
    /// Bytes accepted by the writer.
    pub bytes_written: u64,
    /// `write` / `write_vectored` calls made.
    pub write_calls: u64,
}

impl FlushMetrics {
    /// Share of frames that took the gather path.
    pub fn large_path_ratio(&self) -> f64 {
        let n = self.linear_frames + self.gather_frames;
        if n == 0 {
            0.0
        } else {
            self.gather_frames as f64 / n as f64
        }
    }

    /// Write calls per frame.
    pub fn writes_per_frame(&self) -> f64 {
        let n = self.linear_frames + self.gather_frames;
        if n == 0 {
            0.0
        } else {
            self.write_calls as f64 / n as f64
        }
    }

    /// Bytes copied per byte written (0 for a pure gather stream, 1 for a
    /// pure linear one).
    pub fn copied_per_byte_sent(&self) -> f64 {
        if self.bytes_written == 0 {
            0.0
        } else {
            self.bytes_copied as f64 / self.bytes_written as f64
        }
    }
}

enum Segment<B> {
    /// `buf[start..end]`.
    Linear { start: usize, end: usize },
    /// A header and an uncopied body.
    Large { header: [u8; HEADER_LEN], body: B },
}

impl<B: AsRef<[u8]>> Segment<B> {
    fn len(&self) -> usize {
        match self {
            Segment::Linear { start, end } => end - start,
            Segment::Large { body, .. } => HEADER_LEN + body.as_ref().len(),
        }
    }
}

/// Turns frames into writes for one session (see the module docs).
///
/// ```
/// use netbuf::{Flusher, Flushed, GatherThreshold, OutFrame, codec::{encode_header, Kind}};
/// let mut f: Flusher<Vec<u8>> = Flusher::new(GatherThreshold::Bytes(1024));
/// f.push(OutFrame::new(encode_header(Kind::EchoReply, 0, 3), b"abc".to_vec()));
/// f.push(OutFrame::new(encode_header(Kind::EchoReply, 0, 2000), vec![7; 2000]));
/// let mut out = Vec::new();
/// assert_eq!(f.flush(&mut out).unwrap(), Flushed::Done);
/// assert_eq!(out.len(), 8 + 3 + 8 + 2000);
/// assert_eq!(f.metrics().gather_frames, 1);
/// ```
pub struct Flusher<B = crate::send_queue::Outgoing> {
    buf: Vec<u8>,
    segments: VecDeque<Segment<B>>,
    /// Bytes of `segments[0]` already written.
    head_written: usize,
    pending: usize,
    threshold: usize,
    transform: Option<Box<dyn Transform>>,
    metrics: FlushMetrics,
}

impl<B: AsRef<[u8]>> Flusher<B> {
    /// A flusher with the given threshold and no transform.
    pub fn new(threshold: GatherThreshold) -> Self {
        Flusher {
            buf: Vec::new(),
            segments: VecDeque::new(),
            head_written: 0,
            pending: 0,
            threshold: threshold.resolve(),
            transform: None,
            metrics: FlushMetrics::default(),
        }
    }

    /// Applies `t` to every byte this session sends from now on.
    pub fn with_transform(mut self, t: impl Transform + 'static) -> Self {
        self.transform = Some(Box::new(t));
        self
    }

    /// The resolved threshold in bytes (`usize::MAX`: never gather).
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// Changes the threshold for frames pushed from now on.
    pub fn set_threshold(&mut self, t: GatherThreshold) {
        self.threshold = t.resolve();
    }

    /// Bytes pushed and not yet written.
    pub fn pending_bytes(&self) -> usize {
        self.pending
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// What this flusher did so far.
    pub fn metrics(&self) -> FlushMetrics {
        self.metrics
    }

    /// Queues a frame: small ones are encoded into the send buffer now (the
    /// body is dropped right after the copy), large ones keep their body
    /// until it is written.
    pub fn push(&mut self, frame: OutFrame<B>) {
        let body_len = frame.body.as_ref().len();
        let total = HEADER_LEN + body_len;
        self.pending += total;
        if self.transform.is_none() && body_len >= self.threshold {
            self.metrics.gather_frames += 1;
            self.metrics.gather_bytes += total as u64;
            self.segments.push_back(Segment::Large {
                header: frame.header,
                body: frame.body,
            });
            return;
        }
        self.metrics.linear_frames += 1;
        self.metrics.linear_bytes += total as u64;
        self.metrics.bytes_copied += total as u64;
        self.reclaim_written_prefix();
        let start = self.buf.len();
        match &mut self.transform {
            None => {
                self.buf.extend_from_slice(&frame.header);
                self.buf.extend_from_slice(frame.body.as_ref());
            }
            Some(t) => {
                // Fused: the copy into the send buffer is the transform's
                // output, no intermediate copy.
                self.buf.resize(start + total, 0);
                t.apply(&frame.header, &mut self.buf[start..start + HEADER_LEN]);
                t.apply(frame.body.as_ref(), &mut self.buf[start + HEADER_LEN..]);
            }
        }
        let end = self.buf.len();
        match self.segments.back_mut() {
            Some(Segment::Linear { end: e, .. }) if *e == start => *e = end,
            _ => self.segments.push_back(Segment::Linear { start, end }),
        }
    }

    /// Writes as much as the writer takes. Returns [`Flushed::Done`] when
    /// nothing is left, [`Flushed::WouldBlock`] when the writer would block
    /// (call again once writable); the position is kept to the byte.
    pub fn flush<W: Write + ?Sized>(&mut self, w: &mut W) -> Result<Flushed, FlushError> {
        while !self.segments.is_empty() {
            let (result, offered) = {
                let mut iov = [IoSlice::new(&[]); MAX_IOV];
                let n = self.fill_iov(&mut iov);
                let offered: usize = iov[..n].iter().map(|s| s.len()).sum();
                let result = if n == 1 {
                    w.write(&iov[0])
                } else {
                    w.write_vectored(&iov[..n])
                };
                (result, offered)
            };
            self.metrics.write_calls += 1;
            match result {
                Ok(0) => return Err(FlushError::WriteZero),
                // Trusting a larger count would pop frames never written.
                Ok(n) if n > offered => {
                    return Err(FlushError::WriterOverclaimed {
                        claimed: n,
                        offered,
                    });
                }
                Ok(n) => self.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flushed::WouldBlock),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(FlushError::Io(e)),
            }
        }
        self.buf.clear();
        Ok(Flushed::Done)
    }

    /// Drops everything pending (the session is closing). Bodies are freed.
    pub fn clear(&mut self) {
        self.segments.clear();
        self.buf.clear();
        self.head_written = 0;
        self.pending = 0;
    }

    /// Under a writer that never drains completely (a slow peer), the send
    /// buffer would only ever grow: once the bytes already written before
    /// the first pending linear segment are the larger half of the buffer,
    /// move what is pending to the front (at most the pending bytes move,
    /// which the caller bounds by draining only while `pending_bytes()` is
    /// small).
    fn reclaim_written_prefix(&mut self) {
        let first = self.segments.iter().find_map(|s| match s {
            Segment::Linear { start, .. } => Some(*start),
            Segment::Large { .. } => None,
        });
        let consumed = match first {
            Some(start) => {
                start
                    + if self.head_is_linear() {
                        self.head_written
                    } else {
                        0
                    }
            }
            None => self.buf.len(),
        };
        if consumed == 0 || consumed < self.buf.len() / 2 || consumed < 16 << 10 {
            return;
        }
        self.buf.drain(..consumed);
        let head_linear = self.head_is_linear();
        for (i, seg) in self.segments.iter_mut().enumerate() {
            if let Segment::Linear { start, end } = seg {
                if i == 0 && head_linear {
                    // The written part of the head went with the prefix.
                    *start = 0;
                } else {
                    *start -= consumed;
                }
                *end -= consumed;
            }
        }
        if head_linear {
            self.head_written = 0;
        }
    }

    fn head_is_linear(&self) -> bool {
        matches!(self.segments.front(), Some(Segment::Linear { .. }))
    }

    fn fill_iov<'a>(&'a self, iov: &mut [IoSlice<'a>; MAX_IOV]) -> usize {
        let mut n = 0;
        let mut skip = self.head_written;
        for seg in &self.segments {
            if n + 2 > MAX_IOV {
                break;
            }
            match seg {
                Segment::Linear { start, end } => {
                    iov[n] = IoSlice::new(&self.buf[start + skip..*end]);
                    n += 1;
                }
                Segment::Large { header, body } => {
                    if skip < HEADER_LEN {
                        iov[n] = IoSlice::new(&header[skip..]);
                        iov[n + 1] = IoSlice::new(body.as_ref());
                        n += 2;
                    } else {
                        iov[n] = IoSlice::new(&body.as_ref()[skip - HEADER_LEN..]);
                        n += 1;
                    }
                }
            }
            skip = 0;
        }
        n
    }

    fn advance(&mut self, mut n: usize) {
        self.metrics.bytes_written += n as u64;
        self.pending -= n;
        while n > 0 {
            let Some(seg) = self.segments.front() else {
                break;
            };
            let left = seg.len() - self.head_written;
            if n >= left {
                n -= left;
                self.head_written = 0;
                // A large body is dropped (freed) here, fully written.
                self.segments.pop_front();
            } else {
                self.head_written += n;
                n = 0;
            }
        }
    }
}

impl<B> std::fmt::Debug for Flusher<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flusher")
            .field("pending", &self.pending)
            .field("segments", &self.segments.len())
            .field("threshold", &self.threshold)
            .field("transform", &self.transform.is_some())
            .field("metrics", &self.metrics)
            .finish()
    }
}

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

fn calibrated(t: Transport) -> &'static Calibration {
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
/// milliseconds; [`GatherThreshold::Auto`] runs it once per process.
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
                    f.push(OutFrame::new([0; HEADER_LEN], &body[..]));
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
