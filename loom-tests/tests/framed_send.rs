//! Loom model of the send path under three framings: two producers push
//! frames encoded by a framing (an 8-byte header with a `u32` LE length, a
//! plain 4-byte big-endian prefix, a 6-byte game header with the length at
//! offset 2) into one `SendQueue`, racing a consumer that drains into a
//! `Flusher` (small frames copied, the larger one gathered). Whatever the
//! interleaving, the bytes written are whole frames, each producer's in
//! order, and the queue's byte count returns to zero.
//!
//! Run: `scripts/loom.sh`.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use netbuf::framing::{HeaderBytes, LengthDelimited, decode_frame};
use netbuf::{Flusher, GatherThreshold, OutFrame, SendQueue};

fn framings() -> [LengthDelimited; 3] {
    let b = |offset: usize, header_len: usize, little: bool| {
        let mut b = LengthDelimited::builder();
        b.length_field_offset(offset).header_len(header_len);
        if little {
            b.little_endian();
        }
        b.build().unwrap()
    };
    [b(0, 8, true), b(0, 4, false), b(2, 6, true)]
}

/// A frame whose body says who sent it and in which order; producer 1's
/// second frame is larger than the gather threshold.
fn frame(f: &LengthDelimited, producer: u8, seq: u8) -> OutFrame<Vec<u8>> {
    let len = if producer == 1 && seq == 1 { 40 } else { 2 };
    let mut body = vec![0u8; len];
    body[0] = producer;
    body[1] = seq;
    OutFrame::encode(f, &HeaderBytes::EMPTY, body).unwrap()
}

fn drain(q: &SendQueue<OutFrame<Vec<u8>>>, fl: &mut Flusher<Vec<u8>>, out: &mut Vec<u8>) {
    q.drain_each(8, |f| fl.push(f));
    fl.flush(out).unwrap();
}

#[test]
fn frames_of_three_framings_leave_whole_and_in_order() {
    for framing in framings() {
        loom::model(move || {
            let q: Arc<SendQueue<OutFrame<Vec<u8>>>> =
                Arc::new(SendQueue::builder().limit(1 << 10).build());
            let producers: Vec<_> = (0..2u8)
                .map(|p| {
                    let q = q.clone();
                    thread::spawn(move || {
                        for seq in 0..2 {
                            q.try_push(frame(&framing, p, seq)).unwrap();
                        }
                    })
                })
                .collect();
            let mut fl = Flusher::new(GatherThreshold::Bytes(16));
            let mut out = Vec::new();
            drain(&q, &mut fl, &mut out);
            for p in producers {
                p.join().unwrap();
            }
            drain(&q, &mut fl, &mut out);
            assert_eq!(q.queued_bytes(), 0);

            // Decode what was written with the same framing.
            let mut next = [0u8; 2];
            let mut rest = &out[..];
            while let Some((f, used)) = decode_frame(&framing, rest).unwrap() {
                let (p, seq) = (f.body[0] as usize, f.body[1]);
                assert_eq!(seq, next[p], "producer {p} out of order");
                next[p] += 1;
                rest = &rest[used..];
            }
            assert!(rest.is_empty(), "a partial frame was written");
            assert_eq!(next, [2, 2]);
            assert_eq!(fl.metrics().gather_frames, 1);
        });
    }
}
