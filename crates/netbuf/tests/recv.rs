//! Receive buffers and the frame codec: round trips at arbitrary read
//! boundaries for the linear and the chained buffer, garbage never panics,
//! boundaries of the body limit, large frames across many blocks.

use std::io::{self, Read, Write};

use bytes::{Buf, BufMut};
use netbuf::codec::{DEFAULT_MAX_BODY, HEADER_LEN, encode_frame_into, encode_header};
use netbuf::{
    ChainedBuffer, Compaction, DecodeError, FrameCodec, FrameSource, Kind, MessagePool,
    ReceiveBuffer, RecvBuffer,
};
use proptest::prelude::*;

allocators::global_allocator!();

/// A reader that hands out its bytes in chunks of the given sizes (cycled),
/// capped by the buffer it is given, like a socket under load.
struct SplitReader<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    i: usize,
}

impl<'a> SplitReader<'a> {
    fn new(data: &'a [u8], sizes: &[usize]) -> Self {
        let sizes = if sizes.is_empty() {
            vec![usize::MAX]
        } else {
            sizes.to_vec()
        };
        SplitReader { data, sizes, i: 0 }
    }
}

impl Read for SplitReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = self.sizes[self.i % self.sizes.len()].max(1);
        self.i += 1;
        let n = want.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

type Owned = (Kind, u16, Vec<u8>);

fn quiet_pool() -> MessagePool {
    MessagePool::builder()
        .extra_class(64)
        .extra_class(512)
        .max_message(8 << 20)
        .report_leaks_on_drop(false)
        .build()
}

fn encode(frames: &[Owned]) -> Vec<u8> {
    let mut v = Vec::new();
    for (k, r, b) in frames {
        encode_frame_into(&mut v, *k, *r, b).unwrap();
    }
    v
}

/// Reads everything from `r` through `buf`, decoding as it goes (borrowed
/// views, or owned messages when `owned`), until end of stream or the first
/// decode error.
fn drive(
    buf: &mut impl FrameSource,
    r: &mut impl Read,
    pool: &MessagePool,
    owned: bool,
) -> (Vec<Owned>, Result<(), DecodeError>) {
    let mut out = Vec::new();
    loop {
        let res = loop {
            if owned {
                match buf.next_message(pool) {
                    Ok(Some((h, m))) => out.push((h.kind, h.room, m.to_vec())),
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            } else {
                match buf.next_frame() {
                    Ok(Some(f)) => out.push((f.kind(), f.room(), f.body.to_vec())),
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            }
        };
        if let Err(e) = res {
            return (out, Err(e));
        }
        match buf.read_from(r) {
            Ok(0) => return (out, buf.finish()),
            Ok(_) => {}
            Err(e) => panic!("io error from an in-memory reader: {e}"),
        }
    }
}

fn buffers(pool: &MessagePool, codec: FrameCodec) -> Vec<(&'static str, ReceiveBuffer)> {
    let small = HEADER_LEN + codec.max_body();
    vec![
        (
            "lazy-min",
            ReceiveBuffer::Linear(RecvBuffer::with_config(small, codec, Compaction::Lazy)),
        ),
        (
            "lazy-default",
            ReceiveBuffer::Linear(RecvBuffer::with_config(16 << 10, codec, Compaction::Lazy)),
        ),
        (
            "every-read",
            ReceiveBuffer::Linear(RecvBuffer::compact_every_read(small, codec)),
        ),
        (
            "chained-64",
            ReceiveBuffer::Chained(ChainedBuffer::with_config(pool.clone(), 64, codec)),
        ),
        (
            "chained-4k",
            ReceiveBuffer::Chained(ChainedBuffer::with_config(pool.clone(), 4096, codec)),
        ),
    ]
}

fn config() -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = 64;
    }
    c
}

fn arb_frame() -> impl Strategy<Value = Owned> {
    (
        prop::sample::select(Kind::ALL.to_vec()),
        any::<u16>(),
        prop::collection::vec(any::<u8>(), 0..300),
    )
}

proptest! {
    #![proptest_config(config())]

    /// Any frame sequence, split at any read boundaries, decodes to exactly
    /// the frames encoded, through every buffer and compaction mode.
    #[test]
    fn frames_roundtrip_at_any_split(
        frames in prop::collection::vec(arb_frame(), 0..24),
        sizes in prop::collection::vec(1usize..200, 0..16),
        owned in any::<bool>(),
    ) {
        let wire = encode(&frames);
        let pool = quiet_pool();
        for (name, mut buf) in buffers(&pool, FrameCodec::with_max_body(300)) {
            let mut r = SplitReader::new(&wire, &sizes);
            let (got, end) = drive(&mut buf, &mut r, &pool, owned);
            prop_assert_eq!(end, Ok(()), "{}", name);
            prop_assert_eq!(&got, &frames, "{}", name);
            prop_assert_eq!(buf.buffered(), 0);
        }
        prop_assert_eq!(pool.stats().live_messages, 0);
    }

    /// Arbitrary bytes never panic: they end in frames and then either a
    /// clean end, a truncated frame or a typed error, the same for every
    /// buffer.
    #[test]
    fn garbage_never_panics(
        data in prop::collection::vec(any::<u8>(), 0..700),
        valid_prefix in prop::collection::vec(arb_frame(), 0..3),
        sizes in prop::collection::vec(1usize..64, 0..8),
        limit in 0usize..400,
    ) {
        let mut wire = encode(&valid_prefix);
        wire.extend_from_slice(&data);
        let pool = quiet_pool();
        let mut first: Option<(Vec<Owned>, Result<(), DecodeError>)> = None;
        for (name, mut buf) in buffers(&pool, FrameCodec::with_max_body(limit)) {
            let mut r = SplitReader::new(&wire, &sizes);
            let got = drive(&mut buf, &mut r, &pool, false);
            match &first {
                None => first = Some(got),
                Some(f) => prop_assert_eq!(f, &got, "{}", name),
            }
        }
    }

    /// Compaction never loses or reorders a byte: a stream of frames whose
    /// bodies count up decodes, under heavy compaction, to the same count.
    #[test]
    fn compaction_keeps_every_byte_in_order(
        lens in prop::collection::vec(0usize..120, 1..40),
        sizes in prop::collection::vec(1usize..50, 1..10),
    ) {
        let mut counter = 0u32;
        let mut wire = Vec::new();
        for l in &lens {
            let body: Vec<u8> = (0..*l).map(|_| { counter += 1; counter as u8 }).collect();
            encode_frame_into(&mut wire, Kind::Publish, 1, &body).unwrap();
        }
        let codec = FrameCodec::with_max_body(120);
        let mut buf = RecvBuffer::with_config(128, codec, Compaction::Lazy);
        let mut r = SplitReader::new(&wire, &sizes);
        let mut all = Vec::new();
        loop {
            while let Some(f) = buf.next_frame().unwrap() {
                all.extend_from_slice(f.body);
            }
            if buf.read_from(&mut r).unwrap() == 0 {
                break;
            }
        }
        buf.finish().unwrap();
        let expect: Vec<u8> = (1..=counter).map(|c| c as u8).collect();
        prop_assert_eq!(all, expect);
        let s = buf.stats();
        prop_assert_eq!(s.bytes_read, wire.len() as u64);
        prop_assert_eq!(s.frames, lens.len() as u64);
        // Lazy: never more bytes moved than one frame per compaction.
        prop_assert!(s.bytes_moved <= s.compactions * 128);
    }
}

#[test]
fn body_of_exactly_the_limit_and_one_more() {
    let pool = quiet_pool();
    for (name, mut buf) in buffers(&pool, FrameCodec::new()) {
        let body = vec![0xab; DEFAULT_MAX_BODY];
        let wire = encode(&[(Kind::EchoRequest, 0, body.clone())]);
        let mut r = SplitReader::new(&wire, &[1000]);
        let (got, end) = drive(&mut buf, &mut r, &pool, false);
        assert_eq!(end, Ok(()), "{name}");
        assert_eq!(got, vec![(Kind::EchoRequest, 0, body)], "{name}");

        // max + 1: the error comes with the header, before any body byte.
        let hdr = encode_header(Kind::EchoRequest, 0, DEFAULT_MAX_BODY as u32 + 1);
        let mut r = SplitReader::new(&hdr, &[3]);
        let (got, end) = drive(&mut buf, &mut r, &pool, true);
        assert!(got.is_empty());
        assert_eq!(
            end,
            Err(DecodeError::FrameTooLarge {
                len: DEFAULT_MAX_BODY as u64 + 1,
                max: DEFAULT_MAX_BODY
            }),
            "{name}"
        );
        // The error is sticky: the session is to be closed.
        assert!(buf.next_frame().is_err());
    }
}

#[test]
fn zero_length_frames_and_header_split_byte_by_byte() {
    let pool = quiet_pool();
    let frames = vec![
        (Kind::Join, 7, vec![]),
        (Kind::Publish, 7, b"x".to_vec()),
        (Kind::Leave, 7, vec![]),
        (Kind::Closing, 0, b"bye".to_vec()),
    ];
    let wire = encode(&frames);
    for (name, mut buf) in buffers(&pool, FrameCodec::new()) {
        let mut r = SplitReader::new(&wire, &[1]);
        let (got, end) = drive(&mut buf, &mut r, &pool, false);
        assert_eq!(end, Ok(()), "{name}");
        assert_eq!(got, frames, "{name}");
    }
}

#[test]
fn header_errors_close_the_session_with_a_typed_error() {
    let pool = quiet_pool();
    let mut bad_kind = encode_header(Kind::EchoRequest, 0, 0);
    bad_kind[4] = 0;
    let mut bad_flags = encode_header(Kind::EchoRequest, 0, 0);
    bad_flags[5] = 1;
    for (wire, err) in [
        (bad_kind, DecodeError::UnknownKind(0)),
        (bad_flags, DecodeError::NonZeroFlags(1)),
    ] {
        for (name, mut buf) in buffers(&pool, FrameCodec::new()) {
            let mut r = SplitReader::new(&wire, &[5]);
            let (got, end) = drive(&mut buf, &mut r, &pool, false);
            assert!(got.is_empty());
            assert_eq!(end, Err(err.clone()), "{name}");
        }
    }
    // A stream that ends inside a frame.
    let wire = encode(&[(Kind::EchoRequest, 0, vec![1; 20])]);
    for (name, mut buf) in buffers(&pool, FrameCodec::new()) {
        let mut r = SplitReader::new(&wire[..17], &[4]);
        let (_, end) = drive(&mut buf, &mut r, &pool, false);
        assert_eq!(end, Err(DecodeError::Truncated { buffered: 17 }), "{name}");
    }
}

#[test]
fn one_mib_frames_across_many_blocks() {
    let pool = quiet_pool();
    let codec = FrameCodec::with_max_body(1 << 20);
    let frames: Vec<Owned> = (0..3)
        .map(|i| {
            let body: Vec<u8> = (0..1 << 20).map(|j: usize| (j * 7 + i) as u8).collect();
            (Kind::Publish, i as u16, body)
        })
        .collect();
    let wire = encode(&frames);
    for owned in [false, true] {
        for (name, mut buf) in buffers(&pool, codec) {
            let mut r = SplitReader::new(&wire, &[65536, 1000, 7, 300_000]);
            let (got, end) = drive(&mut buf, &mut r, &pool, owned);
            assert_eq!(end, Ok(()), "{name}");
            assert!(got == frames, "{name}: 1 MiB frames differ");
            if let ReceiveBuffer::Chained(c) = &buf {
                assert_eq!(c.blocks_held(), 0, "{name}");
                assert!(c.stats().blocks_taken >= 3 * (1 << 20) / 4096, "{name}");
            }
        }
    }
    assert_eq!(pool.stats().live_messages, 0);
}

#[test]
fn chained_is_a_buf_for_write_vectored() {
    let pool = quiet_pool();
    let mut c = ChainedBuffer::with_config(pool.clone(), 64, FrameCodec::new());
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let mut r = SplitReader::new(&data, &[33, 100]);
    while c.read_from(&mut r).unwrap() > 0 {}
    assert_eq!(c.remaining(), 1000);
    let mut out = Vec::new();
    while c.has_remaining() {
        let mut io = [io::IoSlice::new(&[]); 4];
        let n = c.chunks_vectored(&mut io);
        let written = out.write_vectored(&io[..n]).unwrap();
        c.advance(written);
    }
    assert_eq!(out, data);
    assert_eq!(c.blocks_held(), 0);
    // BufMut filling, then decoding.
    let wire = encode(&[(Kind::EchoReply, 0, vec![9; 150])]);
    c.put_slice(&wire);
    let (h, m) = c.next_message(&pool).unwrap().unwrap();
    assert_eq!((h.kind, m.len()), (Kind::EchoReply, 150));
    assert!(m.is_pooled());
    let shared = m.freeze();
    assert_eq!(&shared[..], &[9; 150][..]);
    drop(shared);
    assert_eq!(pool.stats().live_messages, 0);
}

#[test]
fn idle_chained_sessions_hold_no_memory() {
    let pool = quiet_pool();
    let mut sessions: Vec<ChainedBuffer> =
        (0..100).map(|_| ChainedBuffer::new(pool.clone())).collect();
    let wire = encode(&[(Kind::EchoRequest, 0, vec![1; 100])]);
    let before = allocators::thread_stats();
    for s in &mut sessions {
        let mut r = &wire[..];
        while s.read_from(&mut r).unwrap() > 0 {}
        while s.next_frame().unwrap().is_some() {}
        assert_eq!(s.blocks_held(), 0);
    }
    assert_eq!(pool.stats().live_messages, 0);
    let d = allocators::thread_stats().since(&before);
    // Every block and deque allocated during the traffic was given back
    // (blocks to the pool's cache, which the pool accounts for itself).
    assert_eq!(pool.stats().live_bytes, 0);
    assert!(d.deallocations > 0 || d.allocations == 0);
}
