//! Receive buffers side by side: decode throughput of 64 B, 512 B and 4 KiB
//! frames arriving at random read sizes (lazy `RecvBuffer`, the same buffer
//! compacting after every read, `ChainedBuffer`, and `BytesMut` +
//! `tokio-util`'s `LengthDelimitedCodec` configured for our wire format),
//! then the memory held by 10,000 sessions, idle and with a half-received
//! frame, linear vs chained (from the counting allocator).
//!
//! `cargo bench -p benches --bench recv` prints the tables at the end.

use std::hint::black_box;
use std::time::Duration;

use benches::print_ratio_table;
use bytes::{BufMut, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput};
use netbuf::test_util::{Rng, Script, ScriptedReader, Step, quiet_pool};
use netbuf::{ChainedBuffer, DEFAULT_RECV_CAPACITY, LinearBuffer, MessagePool, ReadUninit};
use server_demo::protocol::{DEFAULT_MAX_BODY, DemoFraming, HEADER_LEN, Kind, encode_frame_into};
use tokio_util::codec::{Decoder, LengthDelimitedCodec};

allocators::global_allocator!();

const SIZES: [(usize, &str); 3] = [(64, "64B"), (512, "512B"), (4096, "4KiB")];
/// Bytes of frames decoded per iteration.
const STREAM_BYTES: usize = 256 << 10;
/// Reads return 1..=MAX_READ bytes (capped by the buffer's free space).
const MAX_READ: usize = 8192;

/// An in-memory socket: hands out the stream in chunks of pre-drawn random
/// sizes (cycled), capped by the space the reader offers.
fn reader<'a>(wire: &'a [u8], sizes: &'a [Step]) -> ScriptedReader<'a> {
    ScriptedReader::new(wire).with_script(Script::cycle(sizes))
}

fn stream(body: usize) -> Vec<u8> {
    let n = STREAM_BYTES / (HEADER_LEN + body);
    let mut v = Vec::with_capacity(n * (HEADER_LEN + body));
    let payload: Vec<u8> = (0..body).map(|i| i as u8).collect();
    for i in 0..n {
        encode_frame_into(&mut v, Kind::Publish, (i % 100) as u16, &payload).unwrap();
    }
    v
}

/// Seeded: every variant sees the same read sizes.
fn read_sizes() -> Vec<Step> {
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    (0..4099)
        .map(|_| Step::Take(1 + rng.below(MAX_READ)))
        .collect()
}

/// What every handler does with a frame: look at it.
#[inline]
fn handle(kind: u8, room: u16, body: &[u8]) -> usize {
    black_box((kind, room, body.first()));
    body.len()
}

fn run_linear(buf: &mut LinearBuffer<DemoFraming>, wire: &[u8], sizes: &[Step]) -> usize {
    let mut r = reader(wire, sizes);
    let mut total = 0;
    while buf.read_from(&mut r).unwrap() > 0 {
        while let Some(f) = buf.next_frame().unwrap() {
            total += handle(f.header.kind as u8, f.header.room, f.body);
        }
    }
    total
}

fn run_linear_owned(
    buf: &mut LinearBuffer<DemoFraming>,
    pool: &MessagePool,
    wire: &[u8],
    sizes: &[Step],
) -> usize {
    let mut r = reader(wire, sizes);
    let mut total = 0;
    while buf.read_from(&mut r).unwrap() > 0 {
        while let Some((h, m)) = buf.next_message(pool).unwrap() {
            total += handle(h.kind as u8, h.room, &m);
        }
    }
    total
}

fn run_chained(buf: &mut ChainedBuffer<DemoFraming>, wire: &[u8], sizes: &[Step]) -> usize {
    let mut r = reader(wire, sizes);
    let mut total = 0;
    while buf.read_from(&mut r).unwrap() > 0 {
        while let Some(f) = buf.next_frame().unwrap() {
            total += handle(f.header.kind as u8, f.header.room, f.body);
        }
    }
    total
}

/// Our wire format with `LengthDelimitedCodec`, as `server_demo::protocol` documents: LE
/// 4-byte length, `length_adjustment(4)`, `num_skip(4)`; the frame then
/// holds kind, flags, room, body, and the body limit is checked by hand.
fn tokio_codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .little_endian()
        .length_field_type::<u32>()
        .length_adjustment(4)
        .num_skip(4)
        .max_frame_length(DEFAULT_MAX_BODY + 4)
        .new_codec()
}

/// `BytesMut` filled the way `FramedRead` does (reserve, read into the
/// spare capacity), decoded with `LengthDelimitedCodec`.
fn run_tokio(codec: &mut LengthDelimitedCodec, wire: &[u8], sizes: &[Step]) -> usize {
    let mut r = reader(wire, sizes);
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut total = 0;
    loop {
        buf.reserve(1);
        // SAFETY: `read_uninit` writes only initialised bytes into the
        // spare capacity (`ReadUninit`'s contract), never uninitialised ones.
        let spare = unsafe { buf.chunk_mut().as_uninit_slice_mut() };
        let n = r.read_uninit(spare).unwrap();
        if n == 0 {
            break;
        }
        // SAFETY: `read_uninit` initialised the first `n` spare bytes.
        unsafe { buf.advance_mut(n) };
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            let (kind, flags) = (frame[0], frame[1]);
            assert!((1..=7).contains(&kind) && flags == 0, "bad header");
            let room = u16::from_le_bytes([frame[2], frame[3]]);
            let body = &frame[4..];
            assert!(body.len() <= DEFAULT_MAX_BODY);
            total += handle(kind, room, body);
        }
    }
    total
}

const COLUMNS: [&str; 5] = ["lazy", "every-read", "chained", "lazy-owned", "tokio-ld"];

fn decode(c: &mut Criterion) {
    let sizes = read_sizes();
    let pool = MessagePool::new();
    let mut g = c.benchmark_group("recv_decode");
    for (body, label) in SIZES {
        let wire = stream(body);
        let expect = (wire.len() / (HEADER_LEN + body)) * body;
        g.throughput(Throughput::Bytes(wire.len() as u64));

        let mut lazy = LinearBuffer::with_framing(DemoFraming::new());
        assert_eq!(run_linear(&mut lazy, &wire, &sizes), expect);
        g.bench_function(BenchmarkId::new("lazy", label), |b| {
            b.iter(|| run_linear(&mut lazy, &wire, &sizes))
        });

        let mut every = LinearBuffer::compact_every_read(DEFAULT_RECV_CAPACITY, DemoFraming::new());
        assert_eq!(run_linear(&mut every, &wire, &sizes), expect);
        g.bench_function(BenchmarkId::new("every-read", label), |b| {
            b.iter(|| run_linear(&mut every, &wire, &sizes))
        });

        let mut chained = ChainedBuffer::with_framing(pool.clone(), DemoFraming::new());
        assert_eq!(run_chained(&mut chained, &wire, &sizes), expect);
        g.bench_function(BenchmarkId::new("chained", label), |b| {
            b.iter(|| run_chained(&mut chained, &wire, &sizes))
        });

        let mut owned = LinearBuffer::with_framing(DemoFraming::new());
        assert_eq!(run_linear_owned(&mut owned, &pool, &wire, &sizes), expect);
        g.bench_function(BenchmarkId::new("lazy-owned", label), |b| {
            b.iter(|| run_linear_owned(&mut owned, &pool, &wire, &sizes))
        });

        let mut codec = tokio_codec();
        assert_eq!(run_tokio(&mut codec, &wire, &sizes), expect);
        g.bench_function(BenchmarkId::new("tokio-ld", label), |b| {
            b.iter(|| run_tokio(&mut codec, &wire, &sizes))
        });

        if !benches::is_test_mode() {
            let s = lazy.stats();
            let e = every.stats();
            println!(
                "{label}: bytes moved per byte read: lazy {:.4} ({} compactions), every-read {:.4} ({} compactions)",
                s.bytes_moved as f64 / s.bytes_read as f64,
                s.compactions,
                e.bytes_moved as f64 / e.bytes_read as f64,
                e.compactions,
            );
        }
    }
    g.finish();
}

const SESSIONS: usize = 10_000;

fn live() -> i64 {
    allocators::global_stats().live_bytes
}

/// Bytes per session held by `SESSIONS` sessions built by `make`, each fed
/// `feed` (then decoded as far as possible), measured as the change of the
/// allocator's live bytes (the sessions' own structs included; the pool's
/// cache of free blocks trimmed first).
fn per_session<S>(
    pool: &MessagePool,
    make: impl Fn() -> S,
    mut feed: impl FnMut(&mut S, &[u8]),
    wire: &[u8],
) -> (f64, f64) {
    pool.trim();
    let before = live();
    let mut sessions: Vec<S> = Vec::with_capacity(SESSIONS);
    for _ in 0..SESSIONS {
        let mut s = make();
        feed(&mut s, wire);
        sessions.push(s);
    }
    pool.trim();
    let held = (live() - before) as f64 / SESSIONS as f64;
    let blocks = pool.stats().live_bytes as f64 / SESSIONS as f64;
    drop(sessions);
    (held, blocks)
}

fn memory() {
    // The counting allocator is process-wide; run on a quiet process.
    let pool = quiet_pool().extra_class(512).build();
    let mut rows: Vec<(String, [(f64, f64); 3])> = Vec::new();
    let mut full = Vec::new();
    encode_frame_into(&mut full, Kind::EchoRequest, 0, &[7u8; 100]).unwrap();
    let cases: Vec<(String, Vec<u8>)> = [(None, "idle (after one frame)")]
        .into_iter()
        .chain([512usize, 4096].map(|b| (Some(b), "")))
        .map(|(body, name)| match body {
            None => (name.to_string(), full.clone()),
            Some(b) => {
                let mut w = Vec::new();
                encode_frame_into(&mut w, Kind::Publish, 1, &vec![1u8; b]).unwrap();
                w.truncate((HEADER_LEN + b) / 2);
                (format!("half of a {b} B frame"), w)
            }
        })
        .collect();
    for (name, wire) in &cases {
        let linear = per_session(
            &pool,
            || LinearBuffer::with_framing(DemoFraming::new()),
            |s, w| {
                let mut r = w;
                while s.read_from(&mut r).unwrap() > 0 {}
                while s.next_frame().unwrap().is_some() {}
            },
            wire,
        );
        let feed_chained = |s: &mut ChainedBuffer<DemoFraming>, w: &[u8]| {
            let mut r = w;
            while s.read_from(&mut r).unwrap() > 0 {}
            while s.next_frame().unwrap().is_some() {}
        };
        let chained = per_session(
            &pool,
            || ChainedBuffer::with_framing(pool.clone(), DemoFraming::new()),
            feed_chained,
            wire,
        );
        let chained512 = per_session(
            &pool,
            || ChainedBuffer::with_config(pool.clone(), 512, DemoFraming::new()),
            feed_chained,
            wire,
        );
        rows.push((name.clone(), [linear, chained, chained512]));
    }
    println!(
        "\n## recv_memory: bytes per session, {SESSIONS} sessions (allocator live bytes; in parentheses: pool block bytes)"
    );
    println!(
        "| {:<24} | {:>22} | {:>22} | {:>22} |",
        "state", "linear (16 KiB)", "chained (4 KiB blocks)", "chained (512 B blocks)"
    );
    println!("|---|---|---|---|");
    for (name, cells) in rows {
        let c: Vec<String> = cells
            .iter()
            .map(|(held, blocks)| format!("{held:.0} B ({blocks:.0} B)"))
            .collect();
        println!(
            "| {name:<24} | {:>22} | {:>22} | {:>22} |",
            c[0], c[1], c[2]
        );
    }
    println!(
        "(struct sizes: LinearBuffer<DemoFraming> {} B, ChainedBuffer {} B, held inline in the session vector)",
        size_of::<LinearBuffer<DemoFraming>>(),
        size_of::<ChainedBuffer<DemoFraming>>()
    );
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    decode(&mut c);
    c.final_summary();

    let rows: Vec<&str> = SIZES.iter().map(|s| s.1).collect();
    print_ratio_table("recv_decode", &COLUMNS, "tokio-ld", &rows);
    // Compaction strategy alone: lazy vs every read.
    print_ratio_table("recv_decode", &["lazy", "every-read"], "every-read", &rows);
    memory();
}
