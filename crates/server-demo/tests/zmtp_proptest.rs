//! Random ZMTP streams (greeting, then frames of random flags and sizes
//! across the short/long boundary) cut at random points and fed to both
//! receive buffers: every frame comes out exactly as encoded, in order;
//! random bytes never panic the decoder.

use netbuf::framing::Framing;
use netbuf::{FrameSource, MessagePool, ReceiveBuffer};
use proptest::prelude::*;
use server_demo::zmtp::frame::{FrameFlags, ZmtpFraming, ZmtpHeader, encode_frame_header};
use server_demo::zmtp::greeting::OUR_GREETING;

const MAX_PART: usize = 70_000;

/// Reads `wire` in the given chunk sizes (cycled), switching to frame mode
/// after the greeting, and returns the decoded frames.
fn decode(
    mut buf: ReceiveBuffer<ZmtpFraming>,
    pool: &MessagePool,
    wire: &[u8],
    cuts: &[usize],
) -> Result<Vec<(ZmtpHeader, Vec<u8>)>, netbuf::framing::DecodeError> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < wire.len() {
        let n = cuts[i % cuts.len()].clamp(1, wire.len() - pos);
        i += 1;
        let mut chunk = &wire[pos..pos + n];
        pos += n;
        // As the server does: one read, then decode everything complete.
        while !chunk.is_empty() {
            buf.read_from(&mut chunk).unwrap();
            while let Some((h, body)) = buf.next_message(pool)? {
                if let ZmtpHeader::Greeting { .. } = h {
                    buf.set_framing(ZmtpFraming::frames(MAX_PART));
                }
                out.push((h, body.to_vec()));
            }
        }
    }
    buf.finish()?;
    Ok(out)
}

fn frame_strategy() -> impl Strategy<Value = (u8, Vec<u8>)> {
    let len = prop_oneof![
        0usize..4,
        250usize..260,
        Just(4096),
        4000usize..9000,
        60_000usize..MAX_PART,
    ];
    (0u8..3, len).prop_map(|(kind, len)| {
        let flags = match kind {
            0 => 0,
            1 => FrameFlags::MORE,
            _ => FrameFlags::COMMAND,
        };
        let body = (0..len).map(|i| (i * 7 + len) as u8).collect();
        (flags, body)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_streams_split_anywhere(
        frames in prop::collection::vec(frame_strategy(), 0..12),
        cuts in prop::collection::vec(1usize..20_000, 1..16),
        chained in any::<bool>(),
    ) {
        let mut wire = OUR_GREETING.to_vec();
        for (flags, body) in &frames {
            let flags = if *flags == FrameFlags::MORE {
                FrameFlags::message(true)
            } else if *flags == FrameFlags::COMMAND {
                FrameFlags::command()
            } else {
                FrameFlags::message(false)
            };
            wire.extend_from_slice(encode_frame_header(flags, body.len()).as_slice());
            wire.extend_from_slice(body);
        }
        let pool = MessagePool::new();
        let framing = ZmtpFraming::greeting(MAX_PART);
        let buf = if chained {
            ReceiveBuffer::chained(pool.clone(), framing)
        } else {
            ReceiveBuffer::linear(framing)
        };
        let got = decode(buf, &pool, &wire, &cuts).unwrap();
        prop_assert_eq!(got.len(), frames.len() + 1);
        prop_assert_eq!(got[0].0, ZmtpHeader::Greeting { major: 3 });
        for ((h, body), (flags, want)) in got[1..].iter().zip(&frames) {
            let ZmtpHeader::Frame(f) = h else { panic!("frame expected") };
            prop_assert_eq!(f.more(), *flags == FrameFlags::MORE);
            prop_assert_eq!(f.is_command(), *flags == FrameFlags::COMMAND);
            prop_assert_eq!(body, want);
        }
        drop(got);
        prop_assert_eq!(pool.stats().live_messages, 0);
    }

    #[test]
    fn random_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..2000),
        cuts in prop::collection::vec(1usize..300, 1..8),
        greeted in any::<bool>(),
    ) {
        let pool = MessagePool::new();
        let framing = if greeted {
            ZmtpFraming::frames(1000)
        } else {
            ZmtpFraming::greeting(1000)
        };
        // Errors are fine; panics and oversize allocations are not.
        let _ = decode(ReceiveBuffer::linear(framing), &pool, &bytes, &cuts);
        let _ = decode(ReceiveBuffer::chained(pool.clone(), framing), &pool, &bytes, &cuts);
        prop_assert!(framing.max_body() >= 1000);
    }
}
