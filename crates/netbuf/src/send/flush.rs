//! [`Flusher`]: turns queued frames into as few writes as possible.
//!
//! Small frames are encoded (header + body) into one reusable linear send
//! buffer, so a hundred 64 B replies leave in one `write`. Frames whose body
//! is at least the gather threshold are not copied: their header (0 to 16
//! bytes, stored inline in the frame) and their body go to `write_vectored`
//! as two slices, next to the linear chunk
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
//! machine and the transport (a C++ server measured 32-64 KiB on its
//! OS; the reference machine here crosses below 4 KiB on TCP), so it is a
//! setting. [`calibrate`](crate::calibrate) measures it on this machine,
//! and [`calibrated_threshold`](crate::calibrated_threshold) does so once
//! per process per transport; the flusher itself never opens a socket or
//! spawns a thread.
//!
//! # Transforms
//!
//! A per-session [`Transform`] (e.g. `ChaCha20Transform` with the cargo
//! feature `chacha20`, standing in for session encryption) is applied at flush time, fused with the copy into
//! the send buffer: a shared broadcast body is enciphered per session
//! without a copy on the logic thread. A transform changes every byte, so a
//! session with one sends nothing by the gather path: its large bodies are
//! copied (transformed) too, and [`FlushMetrics`] shows it.

use super::transform::Transform;
use crate::framing::{EncodeError, Framing, HeaderBytes};
use crate::{Outgoing, QueueItem};
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

/// Most slices passed to one `write_vectored` call (Linux's `IOV_MAX` is
/// 1024; 64 already covers megabytes of large bodies per call).
pub const MAX_IOV: usize = 64;

/// Default threshold when none is calibrated: 16 KiB.
pub const DEFAULT_GATHER_THRESHOLD: usize = 16 << 10;

/// One frame waiting to be sent: its encoded header (0 to 16 bytes, inline)
/// and its body.
///
/// ```
/// use netbuf::OutFrame;
/// use netbuf::framing::{HeaderBytes, LengthDelimited};
///
/// let framing = LengthDelimited::default(); // 4-byte big-endian length
/// let f = OutFrame::encode(&framing, &HeaderBytes::EMPTY, b"hello".to_vec()).unwrap();
/// assert_eq!(f.header.as_slice(), &[0, 0, 0, 5]);
/// assert_eq!(netbuf::QueueItem::byte_size(&f), 9);
/// // A frame with no header at all: raw bytes.
/// let raw = OutFrame::new(HeaderBytes::EMPTY, b"ok".to_vec());
/// assert_eq!(netbuf::QueueItem::byte_size(&raw), 2);
/// ```
#[derive(Debug)]
pub struct OutFrame<B = Outgoing> {
    /// The encoded header.
    pub header: HeaderBytes,
    /// The body (its length must match what the header says).
    pub body: B,
}

impl<B> OutFrame<B> {
    /// A frame from an encoded header and a body.
    #[inline]
    pub fn new(header: HeaderBytes, body: B) -> Self {
        OutFrame { header, body }
    }
}

impl<B: AsRef<[u8]>> OutFrame<B> {
    /// A frame whose header `framing` encodes for `body`.
    #[inline]
    pub fn encode<F: Framing + ?Sized>(
        framing: &F,
        header: &F::Header,
        body: B,
    ) -> Result<Self, EncodeError> {
        let header = framing.encode_header(header, body.as_ref().len())?;
        Ok(OutFrame { header, body })
    }
}

impl<B: AsRef<[u8]> + QueueItem> QueueItem for OutFrame<B> {
    #[inline]
    fn byte_size(&self) -> usize {
        self.header.len() + self.body.as_ref().len()
    }
    #[inline]
    fn pinned_bytes(&self) -> usize {
        self.header.len() + self.body.pinned_bytes()
    }
}

/// When a body goes out by the gather path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatherThreshold {
    /// Copy everything into the linear buffer (`--send linear`).
    Never,
    /// Bodies of at least this many bytes are gathered (`--gather-threshold`,
    /// or what [`calibrated_threshold`](crate::calibrated_threshold) found).
    Bytes(usize),
}

impl Default for GatherThreshold {
    /// [`DEFAULT_GATHER_THRESHOLD`] (16 KiB): a safe middle when nothing
    /// was measured; [`calibrated_threshold`](crate::calibrated_threshold)
    /// finds this machine's crossover.
    fn default() -> Self {
        GatherThreshold::Bytes(DEFAULT_GATHER_THRESHOLD)
    }
}

impl GatherThreshold {
    /// Every body by the gather path (`--send gather`).
    pub const ALWAYS: GatherThreshold = GatherThreshold::Bytes(0);

    /// The threshold in bytes (`usize::MAX` for never).
    pub fn resolve(self) -> usize {
        match self {
            GatherThreshold::Never => usize::MAX,
            GatherThreshold::Bytes(n) => n,
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
    Large { header: HeaderBytes, body: B },
}

impl<B: AsRef<[u8]>> Segment<B> {
    fn len(&self) -> usize {
        match self {
            Segment::Linear { start, end } => end - start,
            Segment::Large { header, body } => header.len() + body.as_ref().len(),
        }
    }
}

/// Turns frames into writes for one session (see the module docs).
///
/// ```
/// use netbuf::{Flusher, Flushed, GatherThreshold, OutFrame};
/// use netbuf::framing::{HeaderBytes, LengthDelimited};
///
/// let framing = LengthDelimited::default().with_max_body(4096);
/// let mut f: Flusher<Vec<u8>> = Flusher::new(GatherThreshold::Bytes(1024));
/// f.push(OutFrame::encode(&framing, &HeaderBytes::EMPTY, b"abc".to_vec()).unwrap());
/// f.push(OutFrame::encode(&framing, &HeaderBytes::EMPTY, vec![7; 2000]).unwrap());
/// let mut out = Vec::new();
/// assert_eq!(f.flush(&mut out).unwrap(), Flushed::Done);
/// assert_eq!(out.len(), 4 + 3 + 4 + 2000);
/// assert_eq!(f.metrics().gather_frames, 1);
/// ```
pub struct Flusher<B = Outgoing> {
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
        if self.transform.is_none() && body_len >= self.threshold {
            let total = frame.header.len() + body_len;
            self.pending += total;
            self.metrics.gather_frames += 1;
            self.metrics.gather_bytes += total as u64;
            self.segments.push_back(Segment::Large {
                header: frame.header,
                body: frame.body,
            });
            return;
        }
        self.push_copy(frame.header.as_slice(), frame.body.as_ref());
    }

    /// Queues a frame given as borrowed bytes: header and body are copied
    /// into the send buffer now, whatever the body's size (no body is kept
    /// alive). For a reply built from a frame still in a receive buffer
    /// ([`FrameSource::next_frame`](crate::FrameSource::next_frame)): one
    /// copy, and no message allocated for it. Use [`push`](Self::push) for
    /// bodies at or above the gather threshold, which it never copies.
    ///
    /// ```
    /// use netbuf::{Flusher, GatherThreshold};
    ///
    /// let mut f: Flusher<Vec<u8>> = Flusher::new(GatherThreshold::Never);
    /// f.push_copy(&[0, 0, 0, 5], b"hello");
    /// let mut wire = Vec::new();
    /// f.flush(&mut wire).unwrap();
    /// assert_eq!(wire, b"\0\0\0\x05hello");
    /// ```
    pub fn push_copy(&mut self, header: &[u8], body: &[u8]) {
        self.copy_in(header, body, 1);
    }

    /// Queues `frames` frames the caller already encoded back to back in
    /// `bytes`, copied into the send buffer now (through the transform, if
    /// there is one). For a producer that batches small frames itself (an
    /// event loop's handler appending deliveries for a connection of its
    /// own thread into a buffer it keeps, instead of one
    /// [`push`](Self::push) each): one copy per batch, and the metrics
    /// still count `frames` frames.
    ///
    /// ```
    /// use netbuf::{Flusher, GatherThreshold};
    ///
    /// let mut f: Flusher<Vec<u8>> = Flusher::new(GatherThreshold::Never);
    /// let mut batch = Vec::with_capacity(64);
    /// batch.extend_from_slice(b"\0\0\0\x02hi");
    /// batch.extend_from_slice(b"\0\0\0\x03you");
    /// f.push_encoded(&batch, 2);
    /// batch.clear(); // the producer keeps its buffer for the next batch
    /// let mut wire = Vec::new();
    /// f.flush(&mut wire).unwrap();
    /// assert_eq!(wire, b"\0\0\0\x02hi\0\0\0\x03you");
    /// assert_eq!(f.metrics().linear_frames, 2);
    /// ```
    pub fn push_encoded(&mut self, bytes: &[u8], frames: u64) {
        if !bytes.is_empty() {
            self.copy_in(bytes, &[], frames);
        }
    }

    /// Copies `header` then `body` into the send buffer as `frames` frames.
    fn copy_in(&mut self, header: &[u8], body: &[u8], frames: u64) {
        let total = header.len() + body.len();
        self.pending += total;
        self.metrics.linear_frames += frames;
        self.metrics.linear_bytes += total as u64;
        self.metrics.bytes_copied += total as u64;
        self.reclaim_written_prefix();
        let start = self.buf.len();
        match &mut self.transform {
            None => {
                self.buf.extend_from_slice(header);
                self.buf.extend_from_slice(body);
            }
            Some(t) => {
                // Fused: the copy into the send buffer is the transform's
                // output, no intermediate copy.
                self.buf.resize(start + total, 0);
                let (h, b) = self.buf[start..].split_at_mut(header.len());
                t.apply(header, h);
                t.apply(body, b);
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

    /// Bytes of memory the flusher holds for itself: its send buffer's
    /// capacity and its segment list (the bodies it keeps for the gather
    /// path are the messages' own memory, not counted here).
    pub fn allocated(&self) -> usize {
        self.buf.capacity() + self.segments.capacity() * core::mem::size_of::<Segment<B>>()
    }

    /// When nothing is pending, hands the send buffer and the segment list
    /// back to the allocator (the next push takes them again) and returns
    /// the bytes released; else does nothing. A session that goes quiet
    /// then holds no send memory, however much a burst made the buffer
    /// grow.
    ///
    /// ```
    /// use netbuf::{Flusher, GatherThreshold, OutFrame};
    /// use netbuf::framing::{HeaderBytes, LengthDelimited};
    ///
    /// let mut f: Flusher<Vec<u8>> = Flusher::new(GatherThreshold::Never);
    /// let frame = OutFrame::encode(&LengthDelimited::default(), &HeaderBytes::EMPTY, vec![1; 100]);
    /// f.push(frame.unwrap());
    /// assert_eq!(f.release_memory(), 0); // pending
    /// f.flush(&mut Vec::new()).unwrap();
    /// assert!(f.release_memory() >= 104);
    /// assert_eq!(f.allocated(), 0);
    /// ```
    pub fn release_memory(&mut self) -> usize {
        if !self.segments.is_empty() {
            return 0;
        }
        let n = self.allocated();
        self.buf = Vec::new();
        self.segments = VecDeque::new();
        self.head_written = 0;
        n
    }

    /// When nothing is pending, exchanges the send buffer with `other` (a
    /// buffer lent by the caller, e.g. one per IO thread) and returns
    /// `true`; else does nothing and returns `false`. Both come out empty
    /// (length 0), with their capacities exchanged.
    ///
    /// Sessions that take turns on one thread can then share one buffer's
    /// memory: lend it before pushing, take it back once everything was
    /// written. A session whose write stopped short keeps the buffer it
    /// holds until it drains. Nothing is allocated or freed.
    ///
    /// ```
    /// use netbuf::{Flusher, GatherThreshold, OutFrame};
    /// use netbuf::framing::{HeaderBytes, LengthDelimited};
    ///
    /// let mut spare: Vec<u8> = Vec::with_capacity(16 << 10);
    /// let mut f: Flusher<Vec<u8>> = Flusher::new(GatherThreshold::Never);
    /// assert!(f.swap_buffer(&mut spare)); // lend the spare
    /// assert_eq!(spare.capacity(), 0);
    /// let frame = OutFrame::encode(&LengthDelimited::default(), &HeaderBytes::EMPTY, vec![1; 100]);
    /// f.push(frame.unwrap());
    /// assert!(!f.swap_buffer(&mut spare)); // pending: kept
    /// let mut wire = Vec::new();
    /// f.flush(&mut wire).unwrap();
    /// assert!(f.swap_buffer(&mut spare)); // take it back
    /// assert!(spare.capacity() >= 16 << 10);
    /// assert_eq!(wire.len(), 104);
    /// ```
    pub fn swap_buffer(&mut self, other: &mut Vec<u8>) -> bool {
        if !self.segments.is_empty() {
            return false;
        }
        core::mem::swap(&mut self.buf, other);
        self.buf.clear();
        other.clear();
        self.head_written = 0;
        true
    }

    /// Capacity of the send buffer (small frames are encoded into it).
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
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
        // Nothing to reclaim below 16 KiB (the rule below): the common case
        // of a small buffer skips the walk over the segments.
        if self.buf.len() < 16 << 10 {
            return;
        }
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
                    let header = header.as_slice();
                    if skip < header.len() {
                        iov[n] = IoSlice::new(&header[skip..]);
                        iov[n + 1] = IoSlice::new(body.as_ref());
                        n += 2;
                    } else {
                        iov[n] = IoSlice::new(&body.as_ref()[skip - header.len()..]);
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
