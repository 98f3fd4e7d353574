//! Flusher: exact byte stream under partial writes and `WouldBlock`, every
//! body freed exactly once, nothing leaked when a session closes mid-frame,
//! transforms, errors.

use std::io;

use netbuf::framing::{Framing, HeaderBytes, LengthDelimited};
use netbuf::test_util::{Script, ScriptedWriter, Step, quiet_pool};
#[cfg(feature = "chacha20")]
use netbuf::{ChaCha20Transform, Transform};
use netbuf::{
    FlushError, Flushed, Flusher, GatherThreshold, MessagePool, OutFrame, Outgoing, Transport,
};
use proptest::prelude::*;

/// The framings the flusher runs under: 8-byte, 4-byte BE, 6-byte game.
fn framing(which: usize) -> LengthDelimited {
    netbuf::test_util::fuzz::framings(usize::MAX)[which % 3]
}

/// The header of a `len`-byte body under `framing(which)`.
fn hdr(which: usize, len: usize) -> HeaderBytes {
    framing(which)
        .encode_header(&HeaderBytes::EMPTY, len)
        .unwrap()
}

fn frame_bytes(which: usize, body: &[u8]) -> Vec<u8> {
    let mut v = hdr(which, body.len()).as_slice().to_vec();
    v.extend_from_slice(body);
    v
}

fn run(
    sizes: &[usize],
    threshold: GatherThreshold,
    limits: Vec<usize>,
    shared: bool,
    which: usize,
) -> (Vec<u8>, Vec<u8>, netbuf::FlushMetrics) {
    let pool = quiet_pool().build();
    let mut f: Flusher = Flusher::new(threshold);
    let mut expected = Vec::new();
    let mut w = ScriptedWriter::limits(&limits);
    for (i, &n) in sizes.iter().enumerate() {
        let body: Vec<u8> = (0..n).map(|k| (k * 31 + i) as u8).collect();
        expected.extend(frame_bytes(which, &body));
        let m = pool.message_from(&body).unwrap();
        let out: Outgoing = if shared { m.freeze().into() } else { m.into() };
        f.push(OutFrame::new(hdr(which, n), out));
        // Interleave flushing with pushing, as an IO loop does.
        if i % 3 == 0 {
            let _ = f.flush(&mut w).unwrap();
        }
    }
    let mut spins = 0;
    while f.flush(&mut w).unwrap() == Flushed::WouldBlock {
        spins += 1;
        assert!(spins < 1_000_000);
    }
    assert!(f.is_empty());
    assert_eq!(
        pool.stats().live_messages,
        0,
        "every body freed once written"
    );
    (w.into_written(), expected, f.metrics())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn stream_is_exact_under_partial_writes(
        sizes in prop::collection::vec(prop_oneof![0usize..100, 100usize..5000, 5000usize..70_000], 1..24),
        limits in prop::collection::vec(prop_oneof![Just(0usize), 1usize..10, 10usize..100_000], 1..8),
        mode in 0u8..3,
        shared in any::<bool>(),
        which in 0usize..3,
    ) {
        prop_assume!(limits.iter().any(|&l| l > 0));
        let threshold = match mode {
            0 => GatherThreshold::Never,
            1 => GatherThreshold::ALWAYS,
            _ => GatherThreshold::Bytes(1024),
        };
        let (out, expected, m) = run(&sizes, threshold, limits, shared, which);
        prop_assert_eq!(out.len(), expected.len());
        prop_assert!(out == expected, "byte stream differs");
        prop_assert_eq!(m.bytes_written as usize, expected.len());
        prop_assert_eq!((m.linear_frames + m.gather_frames) as usize, sizes.len());
    }
}

#[test]
fn large_bodies_are_not_copied_and_live_until_written() {
    let pool = MessagePool::new();
    let mut f: Flusher = Flusher::new(GatherThreshold::Bytes(4096));
    let body = pool.message_from(&vec![1u8; 100_000]).unwrap().freeze();
    let small = pool.message_from(b"hi").unwrap();
    f.push(OutFrame::new(hdr(0, 2), small.into()));
    f.push(OutFrame::new(hdr(0, 100_000), body.clone().into()));
    assert_eq!(
        pool.stats().live_messages,
        1,
        "the small body was copied and freed"
    );
    let mut w = ScriptedWriter::limits(&[50_000, 0]);
    assert_eq!(f.flush(&mut w).unwrap(), Flushed::WouldBlock);
    // The first call carried the small frame, the header and part of the
    // large body together.
    assert_eq!(w.written().len(), 50_000);
    assert_eq!(w.vectored_calls(), 1);
    assert_eq!(body.ref_count(), 2, "the flusher still holds the body");
    while f.flush(&mut w).unwrap() != Flushed::Done {}
    assert_eq!(body.ref_count(), 1);
    let m = f.metrics();
    assert_eq!((m.linear_frames, m.gather_frames), (1, 1));
    assert_eq!(m.bytes_copied, 10);
    assert!(m.copied_per_byte_sent() < 0.001);
    assert_eq!(m.large_path_ratio(), 0.5);
}

#[test]
fn closing_mid_frame_leaks_nothing() {
    let pool = MessagePool::new();
    let mut f: Flusher = Flusher::new(GatherThreshold::Bytes(1000));
    for n in [10, 5000, 20, 300_000] {
        let m = pool.message_from(&vec![9; n]).unwrap();
        f.push(OutFrame::new(hdr(0, n), m.into()));
    }
    let mut w = ScriptedWriter::limits(&[4000, 0]);
    assert_eq!(f.flush(&mut w).unwrap(), Flushed::WouldBlock);
    assert!(pool.stats().live_messages > 0);
    drop(f); // the session closes mid-frame
    assert_eq!(pool.stats().live_messages, 0);
}

/// Headers shorter than 8 bytes (and none at all) go through both paths,
/// interleaved with longer ones, byte-exact under partial writes.
#[test]
fn short_and_empty_headers_go_through_both_paths() {
    for threshold in [
        GatherThreshold::Never,
        GatherThreshold::ALWAYS,
        GatherThreshold::Bytes(64),
    ] {
        let mut f: Flusher<Vec<u8>> = Flusher::new(threshold);
        let mut expected = Vec::new();
        let headers: [&[u8]; 4] = [&[0x81, 2], &[], &[1], &[9, 9, 9, 9, 9, 9, 9, 9, 9]];
        for (i, h) in headers.iter().cycle().take(12).enumerate() {
            let body = vec![i as u8; [2usize, 0, 100, 5000][i % 4]];
            expected.extend_from_slice(h);
            expected.extend_from_slice(&body);
            f.push(OutFrame::new(HeaderBytes::new(h), body));
        }
        let mut w = ScriptedWriter::limits(&[3, 0, 1, 50]);
        while f.flush(&mut w).unwrap() != Flushed::Done {}
        assert!(w.written() == expected, "{threshold:?}");
    }
}

#[cfg(feature = "chacha20")]
#[test]
fn chacha20_transform_is_fused_and_decrypts() {
    let key = [3u8; 32];
    let nonce = [4u8; 12];
    let mut f: Flusher<Vec<u8>> =
        Flusher::new(GatherThreshold::ALWAYS).with_transform(ChaCha20Transform::new(key, nonce));
    let mut expected = Vec::new();
    for n in [5usize, 70_000, 0, 1000] {
        let body = vec![n as u8; n];
        expected.extend(frame_bytes(0, &body));
        f.push(OutFrame::new(hdr(0, n), body));
    }
    let mut w = ScriptedWriter::limits(&[777]);
    while f.flush(&mut w).unwrap() != Flushed::Done {}
    assert_ne!(w.written(), expected);
    let mut plain = vec![0u8; w.written().len()];
    ChaCha20Transform::new(key, nonce).apply(w.written(), &mut plain);
    assert_eq!(plain, expected);
    // A transform sends nothing by the gather path.
    assert_eq!(f.metrics().gather_frames, 0);
}

/// `push_encoded`: batches are copied in order with frames pushed around
/// them (small and large), the byte stream is exact under partial writes,
/// and the metrics count the batch's frames.
#[test]
fn encoded_batches_keep_their_place_among_frames() {
    let mut f: Flusher<Vec<u8>> = Flusher::new(GatherThreshold::Bytes(1024));
    let mut expected = Vec::new();
    let mut batch = Vec::new();
    for i in 0..4u8 {
        batch.extend(frame_bytes(0, &[i; 10]));
    }
    f.push_encoded(&batch, 4);
    expected.extend_from_slice(&batch);
    let large = vec![9u8; 4096];
    expected.extend(frame_bytes(0, &large));
    f.push(OutFrame::new(hdr(0, large.len()), large));
    let batch = frame_bytes(0, b"after");
    f.push_encoded(&batch, 1);
    expected.extend_from_slice(&batch);
    expected.extend(frame_bytes(0, b"small"));
    f.push(OutFrame::new(hdr(0, 5), b"small".to_vec()));
    assert_eq!(f.pending_bytes(), expected.len());
    let mut w = ScriptedWriter::limits(&[7, 100, 3]);
    while f.flush(&mut w).unwrap() != Flushed::Done {}
    assert_eq!(w.written(), expected);
    let m = f.metrics();
    assert_eq!((m.linear_frames, m.gather_frames), (6, 1));
    // An empty batch queues nothing.
    f.push_encoded(&[], 0);
    assert!(f.is_empty());
}

#[cfg(feature = "chacha20")]
#[test]
fn encoded_batches_go_through_the_transform() {
    let (key, nonce) = ([5u8; 32], [6u8; 12]);
    let mut f: Flusher<Vec<u8>> =
        Flusher::new(GatherThreshold::Never).with_transform(ChaCha20Transform::new(key, nonce));
    let mut batch = frame_bytes(0, b"one");
    batch.extend(frame_bytes(0, b"two"));
    let expected = batch.clone();
    f.push_encoded(&batch, 2);
    let mut w = ScriptedWriter::limits(&[5]);
    while f.flush(&mut w).unwrap() != Flushed::Done {}
    let mut plain = vec![0u8; w.written().len()];
    ChaCha20Transform::new(key, nonce).apply(w.written(), &mut plain);
    assert_eq!(plain, expected);
}

/// A writer failing every call: `Ok(0)` for `WriteZero`, else the error.
fn broken(kind: io::ErrorKind) -> ScriptedWriter<'static> {
    let step = match kind {
        io::ErrorKind::WriteZero => Step::Take(0),
        k => Step::Fail(k),
    };
    ScriptedWriter::new().with_script(Script::cycle(vec![step]))
}

#[test]
fn errors_are_typed() {
    let mut f: Flusher<Vec<u8>> = Flusher::new(GatherThreshold::Never);
    f.push(OutFrame::new(hdr(0, 1), vec![1]));
    assert!(matches!(
        f.flush(&mut broken(io::ErrorKind::WriteZero)),
        Err(FlushError::WriteZero)
    ));
    match f.flush(&mut broken(io::ErrorKind::ConnectionReset)) {
        Err(FlushError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        f.pending_bytes(),
        9,
        "nothing was lost from the pending stream"
    );
}

/// A `Write` that returns more than it was given is a typed error, in
/// debug and release alike; the pending stream is untouched (nothing popped).
#[test]
fn a_writer_claiming_more_than_offered_is_an_error() {
    for threshold in [GatherThreshold::Never, GatherThreshold::Bytes(16)] {
        let mut f: Flusher<Vec<u8>> = Flusher::new(threshold);
        f.push(OutFrame::new(hdr(0, 3), vec![1; 3]));
        f.push(OutFrame::new(hdr(0, 64), vec![2; 64]));
        let pending = f.pending_bytes();
        let mut w = ScriptedWriter::new().overclaim(5);
        match f.flush(&mut w) {
            Err(FlushError::WriterOverclaimed { claimed, offered }) => {
                assert_eq!((claimed, offered), (pending + 5, pending));
            }
            other => panic!("{threshold:?}: {other:?}"),
        }
        assert_eq!(f.pending_bytes(), pending);
        let mut honest = Vec::new();
        assert_eq!(f.flush(&mut honest).unwrap(), Flushed::Done);
        assert_eq!(honest.len(), pending);
    }
}

#[test]
fn calibration_reports_every_size_and_a_threshold() {
    for t in [Transport::Unix, Transport::Tcp] {
        let c = netbuf::calibrate(t).unwrap();
        assert_eq!(c.rows.len(), 9);
        assert!(c.rows.iter().all(|&(_, l, g)| l > 0.0 && g > 0.0));
        assert!(c.threshold >= 512);
        assert_eq!(GatherThreshold::Bytes(c.threshold).resolve(), c.threshold);
    }
    assert!(netbuf::calibrated_threshold(Transport::Unix).resolve() >= 512);
    // A flusher never calibrates by itself: `new` takes a resolved value.
    let f: Flusher<Vec<u8>> = Flusher::new(GatherThreshold::Bytes(1234));
    assert_eq!(f.threshold(), 1234);
    assert_eq!(GatherThreshold::Never.resolve(), usize::MAX);
}
