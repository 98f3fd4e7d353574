//! Receive buffers and framings: round trips at arbitrary read boundaries
//! for the linear and the chained buffer under three framings (an 8-byte
//! header with a `u32` LE length, a plain 4-byte big-endian prefix, a
//! 6-byte game header with the length at offset 2), garbage never panics,
//! boundaries of the body limit, large frames across many blocks, raw
//! access.

use std::io::{self, Read, Write};

use bytes::{Buf, BufMut};
use netbuf::framing::{
    DEFAULT_MAX_BODY, DecodeError, Framing, HeaderBytes, LengthDelimited, encode_frame_into,
};
use netbuf::test_util::{self, ScriptedReader};
use netbuf::{ChainedBuffer, Compaction, FrameSource, LinearBuffer, MessagePool, ReceiveBuffer};
use proptest::prelude::*;

allocators::global_allocator!();

/// A decoded frame: the whole header as the framing decoded it, the body.
type Owned = (HeaderBytes, Vec<u8>);

/// The three framings every test runs over, with a body limit.
fn framings(max_body: usize) -> [(&'static str, LengthDelimited); 3] {
    let [eight, plain, game] = netbuf::test_util::fuzz::framings(max_body);
    [
        ("8-byte", eight),
        ("4-byte BE", plain),
        ("6-byte game", game),
    ]
}

/// A frame as sent: the header's own bytes (a tag), the body.
type Sent = (u8, Vec<u8>);

fn quiet_pool() -> MessagePool {
    test_util::quiet_pool()
        .extra_class(64)
        .extra_class(512)
        .max_message(8 << 20)
        .build()
}

/// The header `framing` writes for a body, with `tag` in every header
/// byte outside the length field.
fn header_for(framing: &LengthDelimited, tag: u8, body_len: usize) -> HeaderBytes {
    let tagged = HeaderBytes::new(&vec![tag; framing.header_len()]);
    framing.encode_header(&tagged, body_len).unwrap()
}

/// The wire bytes of `frames` and what a decoder must yield for them.
fn encode(framing: &LengthDelimited, frames: &[Sent]) -> (Vec<u8>, Vec<Owned>) {
    let mut v = Vec::new();
    let mut want = Vec::new();
    for (tag, b) in frames {
        let h = header_for(framing, *tag, b.len());
        encode_frame_into(framing, &mut v, &h, b).unwrap();
        want.push((h, b.clone()));
    }
    (v, want)
}

/// Reads everything from `r` through `buf`, decoding as it goes (borrowed
/// views, or owned messages when `owned`), until end of stream or the first
/// decode error.
fn drive(
    buf: &mut impl FrameSource<Framing = LengthDelimited>,
    r: &mut impl Read,
    pool: &MessagePool,
    owned: bool,
) -> (Vec<Owned>, Result<(), DecodeError>) {
    let mut out = Vec::new();
    loop {
        let res = loop {
            if owned {
                match buf.next_message(pool) {
                    Ok(Some((h, m))) => out.push((h, m.to_vec())),
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            } else {
                match buf.next_frame() {
                    Ok(Some(f)) => out.push((f.header, f.body.to_vec())),
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

type Buffer = ReceiveBuffer<LengthDelimited>;

/// Every buffer kind for `framing`, named.
fn buffers(pool: &MessagePool, framing: LengthDelimited) -> Vec<(&'static str, Buffer)> {
    let small = framing.header_len() + framing.max_body();
    vec![
        (
            "lazy-min",
            ReceiveBuffer::Linear(LinearBuffer::with_config(small, framing, Compaction::Lazy)),
        ),
        (
            "lazy-default",
            ReceiveBuffer::Linear(LinearBuffer::with_config(
                16 << 10,
                framing,
                Compaction::Lazy,
            )),
        ),
        (
            "every-read",
            ReceiveBuffer::Linear(LinearBuffer::compact_every_read(small, framing)),
        ),
        (
            "chained-64",
            ReceiveBuffer::Chained(ChainedBuffer::with_config(pool.clone(), 64, framing)),
        ),
        (
            "chained-4k",
            ReceiveBuffer::Chained(ChainedBuffer::with_config(pool.clone(), 4096, framing)),
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

fn arb_frame() -> impl Strategy<Value = Sent> {
    (any::<u8>(), prop::collection::vec(any::<u8>(), 0..300))
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
        let pool = quiet_pool();
        for (fname, framing) in framings(300) {
            let (wire, want) = encode(&framing, &frames);
            for (name, mut buf) in buffers(&pool, framing) {
                let mut r = ScriptedReader::chunks(&wire, &sizes);
                let (got, end) = drive(&mut buf, &mut r, &pool, owned);
                prop_assert_eq!(end, Ok(()), "{} {}", fname, name);
                prop_assert_eq!(&got, &want, "{} {}", fname, name);
                prop_assert_eq!(buf.buffered(), 0);
            }
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
        let pool = quiet_pool();
        for (fname, framing) in framings(limit) {
            let (mut wire, _) = encode(&framing.with_max_body(usize::MAX), &valid_prefix);
            wire.extend_from_slice(&data);
            let mut first: Option<(Vec<Owned>, Result<(), DecodeError>)> = None;
            for (name, mut buf) in buffers(&pool, framing) {
                let mut r = ScriptedReader::chunks(&wire, &sizes);
                let got = drive(&mut buf, &mut r, &pool, false);
                match &first {
                    None => first = Some(got),
                    Some(f) => prop_assert_eq!(f, &got, "{} {}", fname, name),
                }
            }
        }
        prop_assert_eq!(pool.stats().live_messages, 0);
    }

    /// Compaction never loses or reorders a byte: a stream of frames whose
    /// bodies count up decodes, under heavy compaction, to the same count.
    #[test]
    fn compaction_keeps_every_byte_in_order(
        lens in prop::collection::vec(0usize..120, 1..40),
        sizes in prop::collection::vec(1usize..50, 1..10),
    ) {
        for (_, framing) in framings(120) {
        let mut counter = 0u32;
        let mut wire = Vec::new();
        for l in &lens {
            let body: Vec<u8> = (0..*l).map(|_| { counter += 1; counter as u8 }).collect();
            encode_frame_into(&framing, &mut wire, &HeaderBytes::EMPTY, &body).unwrap();
        }
        let mut buf = LinearBuffer::with_config(128, framing, Compaction::Lazy);
        let mut r = ScriptedReader::chunks(&wire, &sizes);
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
}

#[test]
fn body_of_exactly_the_limit_and_one_more() {
    let pool = quiet_pool();
    for (fname, framing) in framings(DEFAULT_MAX_BODY) {
        for (name, mut buf) in buffers(&pool, framing) {
            let body = vec![0xab; DEFAULT_MAX_BODY];
            let (wire, want) = encode(&framing, &[(1, body)]);
            let mut r = ScriptedReader::chunks(&wire, &[1000]);
            let (got, end) = drive(&mut buf, &mut r, &pool, false);
            assert_eq!(end, Ok(()), "{fname} {name}");
            assert_eq!(got, want, "{fname} {name}");

            // max + 1: the error comes with the header, before any body byte.
            let hdr = header_for(&framing.with_max_body(usize::MAX), 1, DEFAULT_MAX_BODY + 1);
            let mut r = ScriptedReader::chunks(hdr.as_slice(), &[3]);
            let (got, end) = drive(&mut buf, &mut r, &pool, true);
            assert!(got.is_empty());
            assert_eq!(
                end,
                Err(DecodeError::FrameTooLarge {
                    len: DEFAULT_MAX_BODY as u64 + 1,
                    max: DEFAULT_MAX_BODY
                }),
                "{fname} {name}"
            );
            // The error is sticky: the session is to be closed.
            assert!(buf.next_frame().is_err());
        }
    }
    assert_eq!(pool.stats().live_messages, 0);
}

#[test]
fn zero_length_frames_and_header_split_byte_by_byte() {
    let pool = quiet_pool();
    let frames = vec![
        (3, vec![]),
        (5, b"x".to_vec()),
        (4, vec![]),
        (7, b"bye".to_vec()),
    ];
    for (fname, framing) in framings(DEFAULT_MAX_BODY) {
        let (wire, want) = encode(&framing, &frames);
        for (name, mut buf) in buffers(&pool, framing) {
            let mut r = ScriptedReader::chunks(&wire, &[1]);
            let (got, end) = drive(&mut buf, &mut r, &pool, false);
            assert_eq!(end, Ok(()), "{fname} {name}");
            assert_eq!(got, want, "{fname} {name}");
        }
    }
}

/// A framing's own validation error closes the session with that error,
/// through every buffer; a stream ending inside a frame is `Truncated`.
#[test]
fn framing_errors_close_the_session_with_a_typed_error() {
    let pool = quiet_pool();
    for (fname, framing) in framings(DEFAULT_MAX_BODY) {
        let strict = netbuf::test_util::fuzz::Strict(framing);
        let (wire, _) = encode(&framing, &[(1, b"ok".to_vec()), (1, vec![0xBA; 13])]);
        let bufs: Vec<(&str, ReceiveBuffer<netbuf::test_util::fuzz::Strict>)> = vec![
            ("linear", ReceiveBuffer::linear(strict)),
            ("chained", ReceiveBuffer::chained(pool.clone(), strict)),
        ];
        for (name, mut buf) in bufs {
            let mut r = ScriptedReader::chunks(&wire, &[5]);
            let mut bodies = Vec::new();
            let err = loop {
                match buf.next_frame() {
                    Ok(Some(f)) => bodies.push(f.body.to_vec()),
                    Ok(None) => {
                        assert!(buf.read_from(&mut r).unwrap() > 0, "{fname} {name}");
                    }
                    Err(e) => break e,
                }
            };
            assert_eq!(bodies, vec![b"ok".to_vec()], "{fname} {name}");
            assert_eq!(
                err,
                DecodeError::malformed("reserved header"),
                "{fname} {name}"
            );
        }
        // A stream that ends inside a frame.
        let (wire, _) = encode(&framing, &[(1, vec![1; 20])]);
        let cut = framing.header_len() + 9;
        for (name, mut buf) in buffers(&pool, framing) {
            let mut r = ScriptedReader::chunks(&wire[..cut], &[4]);
            let (_, end) = drive(&mut buf, &mut r, &pool, false);
            assert_eq!(
                end,
                Err(DecodeError::Truncated { buffered: cut }),
                "{fname} {name}"
            );
        }
    }
}

#[test]
fn one_mib_frames_across_many_blocks() {
    let pool = quiet_pool();
    for (fname, framing) in framings(1 << 20) {
        let frames: Vec<Sent> = (0..3)
            .map(|i| {
                let body: Vec<u8> = (0..1 << 20).map(|j: usize| (j * 7 + i) as u8).collect();
                (i as u8, body)
            })
            .collect();
        let (wire, want) = encode(&framing, &frames);
        for owned in [false, true] {
            for (name, mut buf) in buffers(&pool, framing) {
                let mut r = ScriptedReader::chunks(&wire, &[65536, 1000, 7, 300_000]);
                let (got, end) = drive(&mut buf, &mut r, &pool, owned);
                assert_eq!(end, Ok(()), "{fname} {name}");
                assert!(got == want, "{fname} {name}: 1 MiB frames differ");
                if let ReceiveBuffer::Chained(c) = &buf {
                    assert_eq!(c.blocks_held(), 0, "{fname} {name}");
                    // Each body went into a block of its own: no assembly.
                    assert_eq!(c.stats().bodies_contiguous, 3, "{fname} {name}");
                    assert_eq!(c.stats().frames_assembled, 0, "{fname} {name}");
                }
            }
        }
    }
    assert_eq!(pool.stats().live_messages, 0);
}

/// A large body received through the chained buffer is handed over as
/// the block it arrived in: the bytes copied are at most what came with
/// the header's read, whatever the body size.
#[test]
fn chained_large_body_is_taken_without_a_copy() {
    let pool = quiet_pool();
    let [_, plain, _] = framings(1 << 20).map(|(_, f)| f);
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let (wire, _) = encode(&plain, &[(0, body.clone()), (0, b"tail".to_vec())]);
    let mut c = ChainedBuffer::with_framing(pool.clone(), plain);
    let mut r = ScriptedReader::chunks(&wire, &[4096, 65536]);
    let mut got = Vec::new();
    loop {
        while let Some((_, m)) = c.next_message(&pool).unwrap() {
            got.push(m);
        }
        if c.read_from(&mut r).unwrap() == 0 {
            break;
        }
    }
    assert_eq!(got.len(), 2);
    assert_eq!(&got[0][..], &body[..]);
    assert_eq!(&got[1][..], b"tail");
    assert!(got[0].capacity() >= 300_000, "the body's own block");
    assert_eq!(c.stats().bodies_contiguous, 1);
    drop(got);
    assert_eq!(pool.stats().live_messages, 0);
}

#[test]
fn linear_raw_peek_and_consume() {
    // A hand-decoded protocol: 1-byte opcode, u16 LE length.
    let mut buf = LinearBuffer::new();
    let mut wire = vec![9u8, 3, 0];
    wire.extend_from_slice(b"abc");
    wire.extend_from_slice(&[8, 0, 0]);
    let mut r = ScriptedReader::chunks(&wire, &[2]);
    let mut out = Vec::new();
    loop {
        while let Some(h) = buf.peek(3) {
            let len = u16::from_le_bytes([h[1], h[2]]) as usize;
            let op = h[0];
            if buf.buffered() < 3 + len {
                break;
            }
            buf.consume(3);
            out.push((op, buf.peek(len).unwrap().to_vec()));
            buf.consume(len);
        }
        if buf.read_from(&mut r).unwrap() == 0 {
            break;
        }
    }
    assert_eq!(out, vec![(9, b"abc".to_vec()), (8, vec![])]);
    assert!(buf.is_empty());
}

#[test]
fn chained_is_a_buf_for_write_vectored() {
    let pool = quiet_pool();
    let [eight, ..] = framings(DEFAULT_MAX_BODY).map(|(_, f)| f);
    let mut c = ChainedBuffer::with_config(pool.clone(), 64, eight);
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let mut r = ScriptedReader::chunks(&data, &[33, 100]);
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
    let (wire, want) = encode(&eight, &[(2, vec![9; 150])]);
    c.put_slice(&wire);
    let (h, m) = c.next_message(&pool).unwrap().unwrap();
    assert_eq!((h, m.len()), (want[0].0, 150));
    assert!(m.is_pooled());
    let shared = m.freeze();
    assert_eq!(&shared[..], &[9; 150][..]);
    drop(shared);
    assert_eq!(pool.stats().live_messages, 0);
}

/// The chained buffer takes a pool on any allocator (here a counted one).
#[test]
fn chained_works_with_a_pool_on_any_allocator() {
    let alloc = allocators::CountingAllocator::new(allocator_api2::alloc::Global);
    let pool = MessagePool::builder().build_in(alloc.clone());
    let [_, plain, _] = framings(DEFAULT_MAX_BODY).map(|(_, f)| f);
    let mut c = ChainedBuffer::with_framing(pool.clone(), plain);
    let (wire, _) = encode(&plain, &[(0, vec![5; 100])]);
    c.read_from(&mut &wire[..]).unwrap();
    let m = c.take_message(4).unwrap().unwrap();
    assert_eq!(&m[..], &[0, 0, 0, 100]);
    let body = c.take_message(100).unwrap().unwrap();
    assert_eq!(&body[..], &[5; 100][..]);
    assert!(matches!(c.take_message(1), Ok(None)));
    drop((m, body));
    assert!(
        alloc.stats().allocations > 0,
        "blocks came from the counted allocator"
    );
}

#[test]
fn idle_chained_sessions_hold_no_memory() {
    let pool = quiet_pool();
    let mut sessions: Vec<ChainedBuffer> =
        (0..100).map(|_| ChainedBuffer::new(pool.clone())).collect();
    let (wire, _) = encode(&LengthDelimited::default(), &[(0, vec![1; 100])]);
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

/// A multi-part protocol on top of the trait: ZMTP-like frames (a flags
/// byte with MORE = 1 and LONG = 2, then a 1-byte or an 8-byte big-endian
/// size) decoded by the buffers frame by frame, grouped into messages by
/// the MORE flag above them.
mod multipart {
    use super::*;
    use netbuf::framing::{EncodeError, FrameInfo};

    #[derive(Debug, Clone, Copy)]
    struct Zmtpish {
        max_body: usize,
    }

    /// The decoded header: does another part of the same message follow?
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct More(bool);

    impl Framing for Zmtpish {
        type Header = More;

        fn decode_header(&self, src: &[u8]) -> Result<Option<FrameInfo<More>>, DecodeError> {
            let Some(&flags) = src.first() else {
                return Ok(None);
            };
            if flags & !3 != 0 {
                return Err(DecodeError::malformed("reserved flag bits"));
            }
            let (header_len, len) = if flags & 2 == 0 {
                let Some(&n) = src.get(1) else {
                    return Ok(None);
                };
                (2, n as u64)
            } else {
                let Some(b) = src.get(1..9) else {
                    return Ok(None);
                };
                (9, u64::from_be_bytes(b.try_into().unwrap()))
            };
            if len > self.max_body as u64 {
                return Err(DecodeError::FrameTooLarge {
                    len,
                    max: self.max_body,
                });
            }
            Ok(Some(FrameInfo {
                header: More(flags & 1 == 1),
                header_len,
                body_len: len as usize,
            }))
        }

        fn encode_header(&self, more: &More, body_len: usize) -> Result<HeaderBytes, EncodeError> {
            let flags = u8::from(more.0);
            Ok(if body_len < 256 {
                HeaderBytes::new(&[flags, body_len as u8])
            } else {
                let mut h = [flags | 2, 0, 0, 0, 0, 0, 0, 0, 0];
                h[1..].copy_from_slice(&(body_len as u64).to_be_bytes());
                HeaderBytes::new(&h)
            })
        }

        fn max_body(&self) -> usize {
            self.max_body
        }
    }

    proptest! {
        #![proptest_config(config())]
        #[test]
        fn messages_of_several_parts_stay_whole(
            messages in prop::collection::vec(
                prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 1..4), 0..8),
            sizes in prop::collection::vec(1usize..100, 1..8),
            chained in any::<bool>(),
        ) {
            let f = Zmtpish { max_body: 1000 };
            let mut wire = Vec::new();
            for m in &messages {
                for (i, part) in m.iter().enumerate() {
                    let more = More(i + 1 < m.len());
                    encode_frame_into(&f, &mut wire, &more, part).unwrap();
                }
            }
            let pool = quiet_pool();
            let mut buf: ReceiveBuffer<Zmtpish> = if chained {
                ReceiveBuffer::chained(pool.clone(), f)
            } else {
                ReceiveBuffer::linear(f)
            };
            let mut r = ScriptedReader::chunks(&wire, &sizes);
            let (mut got, mut current) = (Vec::new(), Vec::new());
            loop {
                while let Some((More(more), body)) = buf.next_message(&pool).unwrap() {
                    current.push(body.to_vec());
                    if !more {
                        got.push(std::mem::take(&mut current));
                    }
                }
                if buf.read_from(&mut r).unwrap() == 0 {
                    break;
                }
            }
            prop_assert!(buf.finish().is_ok());
            prop_assert!(current.is_empty());
            prop_assert_eq!(got, messages);
        }
    }
}
