//! Fuzz-target logic, shared by the `cargo fuzz` targets in `fuzz/` and the
//! fixed-iteration harness in `tests/fuzz_harness.rs` (not a stable API).
//!
//! Each function takes arbitrary bytes, derives a configuration and a
//! scenario from them, runs the code under test and **panics** when an
//! invariant breaks: that is how a fuzzer recognises a finding. The code
//! under test itself must never panic, whatever the bytes.
//!
//! * [`decode`]: the same byte stream, cut into arbitrary reads (with
//!   `Interrupted` / `WouldBlock` in between), goes through [`LinearBuffer`]
//!   and [`ChainedBuffer`] (through [`FrameSource`]), under one of several
//!   framings ([`framings`]); both must yield
//!   exactly the frames (and the first error) a one-shot reference decode
//!   of the whole stream yields, and report a partial frame at the end.
//! * [`flush`]: frames of arbitrary sizes (owned and shared bodies, linear
//!   and gather paths, optional transform) pushed and flushed in arbitrary
//!   order through a writer that takes arbitrary partial amounts, blocks,
//!   is interrupted or fails; the bytes written must be exactly the frames
//!   in order (or a prefix of them after a failure), and every body must be
//!   freed once the flusher is dropped.

use std::io;

use super::{Rng, Script, ScriptedReader, ScriptedWriter, Step};
use crate::framing::{
    self, DecodeError, EncodeError, FrameInfo, Framing, HeaderBytes, LengthDelimited,
};
use crate::{
    ChainedBuffer, Compaction, Flushed, Flusher, FrameSource, GatherThreshold, LinearBuffer,
    MessagePool, OutFrame, Outgoing, Transform,
};

/// The framings the fuzz targets, the harness and the property tests run
/// over: the 8-byte header of the demo (`u32` LE length, 4 bytes of its
/// own), a plain 4-byte big-endian prefix, and a game header (`u16` LE
/// opcode, `u32` LE length).
pub fn framings(max_body: usize) -> [LengthDelimited; 3] {
    let b = |offset: usize, header_len: usize, little: bool| {
        let mut b = LengthDelimited::builder();
        b.length_field_offset(offset)
            .header_len(header_len)
            .max_body(max_body);
        if little {
            b.little_endian();
        }
        b.build().expect("valid layout")
    };
    [b(0, 8, true), b(0, 4, false), b(2, 6, true)]
}

/// A framing that also rejects headers (a first header byte of 0xF0 or
/// more, or a body of exactly 13 bytes), so the targets and tests meet
/// `Malformed` errors mid-stream.
#[derive(Debug, Clone, Copy)]
pub struct Strict(pub LengthDelimited);

impl Framing for Strict {
    type Header = HeaderBytes;
    fn decode_header(&self, src: &[u8]) -> Result<Option<FrameInfo<HeaderBytes>>, DecodeError> {
        let info = self.0.decode_header(src)?;
        match info {
            Some(i) if i.header.as_slice()[0] >= 0xF0 || i.body_len == 13 => {
                Err(DecodeError::malformed("reserved header"))
            }
            other => Ok(other),
        }
    }
    fn encode_header(&self, h: &HeaderBytes, body_len: usize) -> Result<HeaderBytes, EncodeError> {
        self.0.encode_header(h, body_len)
    }
    fn max_body(&self) -> usize {
        self.0.max_body()
    }
    fn max_header_len(&self) -> usize {
        self.0.max_header_len()
    }
}

/// A keystream transform for the flush target (xor with SplitMix64 bytes),
/// so it does not need the `chacha20` feature.
#[derive(Debug, Clone)]
pub struct XorStream(Rng, u64, u8);

impl XorStream {
    /// A stream from `seed`.
    pub fn new(seed: u64) -> XorStream {
        XorStream(Rng::new(seed), 0, 8)
    }
}

impl Transform for XorStream {
    fn apply(&mut self, src: &[u8], dst: &mut [u8]) {
        for (d, s) in dst.iter_mut().zip(src) {
            if self.2 == 8 {
                self.1 = self.0.next_u64();
                self.2 = 0;
            }
            *d = s ^ (self.1 >> (8 * self.2)) as u8;
            self.2 += 1;
        }
    }
}

/// Reads bytes off the front of the fuzz input.
#[derive(Debug)]
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }
}

/// A socket double handing out the stream in arbitrary pieces (from
/// `seed`): 1 to `max_chunk` bytes a read, `Interrupted` or `WouldBlock`
/// one read in 16 each.
fn chunky(data: &[u8], seed: u64, max_chunk: usize) -> ScriptedReader<'_> {
    let mut rng = Rng::new(seed);
    ScriptedReader::new(data).with_script(Script::from_fn(move || {
        let r = rng.next_u64();
        match r % 16 {
            0 => Step::Interrupted,
            1 => Step::WouldBlock,
            _ => Step::Take(1 + (r >> 8) as usize % max_chunk),
        }
    }))
}

/// What a decode produced: the frames (header, body) and how it ended.
#[derive(Debug, PartialEq, Eq)]
struct Decoded<H> {
    frames: Vec<(H, Vec<u8>)>,
    /// The first decode error, or the `finish` result at end of stream.
    end: Result<(), DecodeError>,
}

/// The reference: the whole stream decoded at once with the framing.
fn reference<F: Framing>(framing: &F, wire: &[u8]) -> Decoded<F::Header> {
    let mut frames = Vec::new();
    let mut rest = wire;
    loop {
        match framing::decode_frame(framing, rest) {
            Ok(Some((f, used))) => {
                frames.push((f.header, f.body.to_vec()));
                rest = &rest[used..];
            }
            Ok(None) => {
                let end = if rest.is_empty() {
                    Ok(())
                } else {
                    Err(DecodeError::Truncated {
                        buffered: rest.len(),
                    })
                };
                return Decoded { frames, end };
            }
            Err(e) => {
                return Decoded {
                    frames,
                    end: Err(e),
                };
            }
        }
    }
}

/// Runs one receive buffer over the stream.
fn run_source<S: FrameSource>(
    src: &mut S,
    pool: &MessagePool,
    wire: &[u8],
    seed: u64,
    max_chunk: usize,
    as_message: u64,
) -> Decoded<<S::Framing as Framing>::Header> {
    let mut r = chunky(wire, seed, max_chunk);
    let mut frames = Vec::new();
    let mut k = 0u32;
    loop {
        // Decode every complete frame, alternating view / message.
        loop {
            let use_message = (as_message >> (k % 64)) & 1 == 1;
            k = k.wrapping_add(1);
            let next = if use_message {
                src.next_message(pool)
                    .map(|o| o.map(|(h, m)| (h, m.to_vec())))
            } else {
                src.next_frame()
                    .map(|o| o.map(|f| (f.header, f.body.to_vec())))
            };
            match next {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => {
                    return Decoded {
                        frames,
                        end: Err(e),
                    };
                }
            }
        }
        match src.read_from(&mut r) {
            Ok(0) => {
                let end = src.finish();
                return Decoded { frames, end };
            }
            Ok(_) => {}
            Err(e)
                if e.kind() == io::ErrorKind::Interrupted
                    || e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("read_from failed on a well-behaved reader: {e}"),
        }
    }
}

/// Fuzz target: the frame decoder of both receive buffers (see the module
/// docs). Panics on a divergence from the reference or a leak.
pub fn decode(data: &[u8]) {
    let mut input = Input(data);
    let max_body = [0usize, 1, 16, 100, 1000, 4096, 10 << 10, 70_000][input.byte() as usize % 8];
    let block = [16usize, 64, 256, 4096][input.byte() as usize % 4];
    let capacity = [0usize, 64, 4096, 16 << 10][input.byte() as usize % 4];
    let seed = input.byte() as u64;
    let max_chunk = 1 + input.byte() as usize * 37;
    let flags = input.byte();
    let as_message = Rng::new(input.byte() as u64).next_u64();
    let which = input.byte();
    let wire = input.0;
    let cfg = DecodeRun {
        block,
        capacity,
        seed,
        max_chunk,
        flags,
        as_message,
    };
    let framing = framings(max_body)[which as usize % 3];
    if which & 0x80 == 0 {
        cfg.run(framing, wire);
    } else {
        cfg.run(Strict(framing), wire);
    }
}

/// One decode scenario, run for a framing.
#[derive(Debug, Clone, Copy)]
struct DecodeRun {
    block: usize,
    capacity: usize,
    seed: u64,
    max_chunk: usize,
    flags: u8,
    as_message: u64,
}

impl DecodeRun {
    fn run<F: Framing + Copy>(self, framing: F, wire: &[u8])
    where
        F::Header: PartialEq,
    {
        let want = reference(&framing, wire);
        let pool = MessagePool::builder()
            .extra_class(256)
            .pooled(self.flags & 1 == 0)
            .build();
        {
            let compaction = if self.flags & 2 == 0 {
                Compaction::Lazy
            } else {
                Compaction::EveryRead
            };
            let mut linear = LinearBuffer::with_config(self.capacity, framing, compaction);
            let got = run_source(
                &mut linear,
                &pool,
                wire,
                self.seed,
                self.max_chunk,
                self.as_message,
            );
            assert!(
                got == want,
                "LinearBuffer disagrees with the reference decode"
            );
            let mut chained = ChainedBuffer::with_config(pool.clone(), self.block, framing);
            let got = run_source(
                &mut chained,
                &pool,
                wire,
                self.seed ^ 1,
                self.max_chunk,
                !self.as_message,
            );
            assert!(
                got == want,
                "ChainedBuffer disagrees with the reference decode"
            );
        }
        assert_eq!(
            pool.stats().live_messages,
            0,
            "a receive buffer leaked pool messages"
        );
    }
}

/// A writer double (from `seed`): takes 1 to `max_chunk` bytes a call,
/// or blocks or is interrupted one call in 8 each, and fails for good
/// (`BrokenPipe`) after `fail_after` calls.
fn partial(seed: u64, max_chunk: usize, fail_after: u64) -> ScriptedWriter<'static> {
    let mut rng = Rng::new(seed);
    ScriptedWriter::new()
        .with_script(Script::from_fn(move || {
            let r = rng.next_u64();
            match r % 8 {
                0 => Step::WouldBlock,
                1 => Step::Interrupted,
                _ => Step::Take(1 + (r >> 8) as usize % max_chunk),
            }
        }))
        .fail_after(fail_after, io::ErrorKind::BrokenPipe)
}

/// Flushes up to `rounds` times (a readiness loop's writes): `Ok(true)`
/// once nothing is pending, `Ok(false)` if every round would block,
/// `Err` when the writer failed (the session would close).
fn flush_up_to(
    f: &mut Flusher<Outgoing>,
    w: &mut ScriptedWriter<'_>,
    rounds: u32,
) -> Result<bool, ()> {
    for _ in 0..rounds {
        match f.flush(w) {
            Ok(Flushed::Done) => return Ok(true),
            Ok(Flushed::WouldBlock) => {}
            Err(_) => return Err(()),
        }
    }
    Ok(false)
}

/// A flush scenario, read off the front of the input (in this order, which
/// the fuzz corpus depends on).
#[derive(Debug)]
struct FlushSetup {
    threshold: GatherThreshold,
    /// Whether the stream goes through [`XorStream`] (keyed by `key`).
    transform: bool,
    key: u64,
    /// The writer double's parameters (see [`partial`]).
    fail_after: u64,
    max_chunk: usize,
    seed: u64,
    framing: LengthDelimited,
    pooled: bool,
}

impl FlushSetup {
    fn read(input: &mut Input<'_>) -> FlushSetup {
        let threshold = match input.byte() % 6 {
            0 => GatherThreshold::Never,
            1 => GatherThreshold::ALWAYS,
            2 => GatherThreshold::Bytes(1),
            3 => GatherThreshold::Bytes(64),
            4 => GatherThreshold::Bytes(4096),
            _ => GatherThreshold::Bytes(16 << 10),
        };
        let flags = input.byte();
        let fail_after = if flags & 2 == 2 {
            input.byte() as u64
        } else {
            u64::MAX
        };
        // Writes of 1 byte happen (see `partial`), but on average a
        // step is at least 32 bytes: runs stay fast.
        let max_chunk = 64 + input.byte() as usize * 257;
        let seed = input.byte() as u64;
        let framing = framings(usize::MAX)[input.byte() as usize % 3];
        FlushSetup {
            threshold,
            transform: flags & 1 == 1,
            key: u64::from(flags) << 8 | seed,
            fail_after,
            max_chunk,
            seed,
            framing,
            pooled: flags & 4 == 0,
        }
    }
}

/// A flush scenario running: the flusher under test, the writer double,
/// and the plain bytes of every frame pushed (what the writer must end up
/// with, or a prefix of it after a failure).
struct FlushRun<'a> {
    setup: &'a FlushSetup,
    pool: &'a MessagePool,
    f: Flusher<Outgoing>,
    w: ScriptedWriter<'static>,
    expected: Vec<u8>,
    /// Frames pushed (varies the bodies' bytes).
    n: u32,
    /// Body bytes an input may still push: at most 128 KiB per input.
    budget: usize,
    /// The writer failed: the session would close.
    failed: bool,
}

impl<'a> FlushRun<'a> {
    fn new(setup: &'a FlushSetup, pool: &'a MessagePool) -> FlushRun<'a> {
        let mut f: Flusher<Outgoing> = Flusher::new(setup.threshold);
        if setup.transform {
            f = f.with_transform(XorStream::new(setup.key));
        }
        FlushRun {
            setup,
            pool,
            f,
            w: partial(setup.seed, setup.max_chunk, setup.fail_after),
            expected: Vec::new(),
            n: 0,
            budget: 128 << 10,
            failed: false,
        }
    }

    /// Runs the input's operations (pushes and flushes in arbitrary order)
    /// until it ends or the writer fails, checking after each that no byte
    /// is lost or made up.
    fn ops(&mut self, input: &mut Input<'_>) {
        while !input.0.is_empty() && !self.failed {
            let op = input.byte();
            match op % 4 {
                0 | 1 => self.push_frame(input, op),
                2 => {
                    if self.f.flush(&mut self.w).is_err() {
                        self.failed = true;
                    }
                }
                _ => {
                    // A few writes' worth, as a readiness loop would do.
                    let rounds = u32::from(op >> 2) % 8;
                    if flush_up_to(&mut self.f, &mut self.w, rounds).is_err() {
                        self.failed = true;
                    }
                }
            }
            assert_eq!(
                self.f.pending_bytes() as u64 + self.w.written().len() as u64,
                self.expected.len() as u64,
                "pending + written bytes must equal the bytes pushed"
            );
        }
    }

    /// Pushes a frame (mostly small, sometimes over 64 KiB; owned or shared
    /// body, per `op`). Bodies stay within ~64 writes of the writer's
    /// largest step, so an input cannot make one run take minutes.
    fn push_frame(&mut self, input: &mut Input<'_>, op: u8) {
        let len = if op & 0x80 == 0x80 {
            (input.u16() as usize * 3).min(self.setup.max_chunk * 64)
        } else {
            input.byte() as usize * 7 % 1500
        }
        .min(self.budget);
        self.budget -= len;
        self.n = self.n.wrapping_add(1);
        let n = self.n;
        let body: Vec<u8> = (0..len).map(|i| (i as u32 ^ n) as u8).collect();
        let header = self
            .setup
            .framing
            .encode_header(&HeaderBytes::EMPTY, len)
            .expect("no limit");
        self.expected.extend_from_slice(header.as_slice());
        self.expected.extend_from_slice(&body);
        let Ok(m) = self.pool.message_from(&body) else {
            panic!("pool refused a {len} B message")
        };
        let out = if op & 0x40 == 0x40 {
            let shared = m.freeze();
            let keep = shared.clone();
            drop(keep);
            Outgoing::Shared(shared)
        } else {
            Outgoing::Owned(m)
        };
        self.f.push(OutFrame::new(header, out));
    }

    /// Drains what is pending (the writer always makes progress
    /// eventually); after a failure, drops it as a closing session would.
    fn finish(&mut self) {
        if !self.failed {
            match flush_up_to(&mut self.f, &mut self.w, 1_000_000) {
                Ok(done) => assert!(done, "flush makes no progress"),
                Err(()) => self.failed = true,
            }
            if !self.failed {
                assert!(self.f.is_empty() && self.f.pending_bytes() == 0);
                assert_eq!(
                    self.f.metrics().bytes_written,
                    self.w.written().len() as u64
                );
            }
        }
        if self.failed {
            // The session closes: what is pending is dropped.
            self.f.clear();
            assert!(self.f.is_empty());
        }
    }

    /// Drops the flusher (freeing what it still holds) and checks the bytes
    /// written: exactly the frames (transformed if the stream is), or a
    /// prefix of them after a failure.
    fn check_written(self) {
        let FlushRun {
            setup,
            f,
            w,
            mut expected,
            failed,
            ..
        } = self;
        drop(f);
        if setup.transform {
            let mut t = XorStream::new(setup.key);
            let plain = std::mem::take(&mut expected);
            expected = vec![0; plain.len()];
            t.apply(&plain, &mut expected);
        }
        if failed {
            assert!(
                expected.starts_with(w.written()),
                "bytes written before the failure are not a prefix of the frames"
            );
        } else {
            assert!(
                w.written() == expected,
                "written bytes differ from the frames"
            );
        }
    }
}

/// Fuzz target: the flusher under a partial-writing writer (see the module
/// docs). Panics on a wrong byte stream or a leaked body.
pub fn flush(data: &[u8]) {
    let mut input = Input(data);
    let setup = FlushSetup::read(&mut input);
    let pool = MessagePool::builder()
        .extra_class(256)
        .pooled(setup.pooled)
        .build();
    let mut run = FlushRun::new(&setup, &pool);
    run.ops(&mut input);
    run.finish();
    run.check_written();
    assert_eq!(pool.stats().live_messages, 0, "the flusher leaked a body");
}
