//! Fan-out through the reader and the writer, pinned by counts (never
//! timings): a reader whose handler pushes into another connection's queue
//! yields often enough for that queue's writer (peak queued bytes, pushes
//! refused), the writer writes once per batch of frames (write calls), the
//! steady state allocates nothing per message (allocator calls, counted
//! with the `allocators` crate), and a failed writer closes its queue.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use netbuf::framing::{HeaderBytes, LengthDelimited, encode_frame_into};
use netbuf::{
    Compaction, Flusher, GatherThreshold, LinearBuffer, MessagePool, OutFrame, Outgoing, PushError,
    SendQueue,
};
use netbuf_tokio::{FrameReader, outbox};
use tokio::io::AsyncWrite;

allocators::global_allocator!();

const BODY: usize = 1 << 10;

/// `n` frames of 1 KiB in a 4-byte length framing with a 1 MiB body limit
/// (so the reader's linear buffer holds a megabyte: hundreds of frames per
/// read, as in the benches' server).
fn wire(n: usize) -> (LengthDelimited, Vec<u8>) {
    let framing = LengthDelimited::default().with_max_body(1 << 20);
    let mut wire = Vec::with_capacity(n * (BODY + 4));
    for i in 0..n {
        encode_frame_into(&framing, &mut wire, &HeaderBytes::EMPTY, &[i as u8; BODY]).unwrap();
    }
    (framing, wire)
}

/// An `AsyncWrite` that takes everything and counts calls.
#[derive(Clone, Default)]
struct Counting {
    calls: Arc<AtomicUsize>,
    bytes: Arc<AtomicUsize>,
    fail: bool,
}

impl AsyncWrite for Counting {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.fail {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        let n = bufs.iter().map(|b| b.len()).sum();
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(n, Ordering::Relaxed);
        Poll::Ready(Ok(n))
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What the publishing connection saw.
#[derive(Debug, Default)]
struct Published {
    frames: usize,
    refused: usize,
    peak_queued: usize,
}

/// The benches' fan-out publisher: every frame read is copied into a pool
/// message, frozen, and pushed (`try_push`: a full queue is a slow
/// consumer) into the subscriber's queue; then the queue is shut down.
async fn publish_all(
    reader: &mut FrameReader<&[u8], LinearBuffer<LengthDelimited>>,
    pool: &MessagePool,
    framing: &LengthDelimited,
    queue: &SendQueue<OutFrame>,
) -> Published {
    let mut p = Published::default();
    while reader.fill().await.unwrap() > 0 {
        while let Some(f) = reader.buffer_mut().next_frame().unwrap() {
            let body = pool.message_from(f.body).unwrap().freeze();
            let out =
                OutFrame::encode(framing, &HeaderBytes::EMPTY, Outgoing::Shared(body)).unwrap();
            p.frames += 1;
            match queue.try_push(out) {
                Ok(()) => p.peak_queued = p.peak_queued.max(queue.queued_bytes()),
                Err(PushError::Full { .. }) => p.refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
    }
    queue.shutdown();
    p
}

fn reader<'a>(
    wire: &'a [u8],
    framing: LengthDelimited,
    pool: &MessagePool,
) -> FrameReader<&'a [u8], LinearBuffer<LengthDelimited>> {
    FrameReader::new(
        wire,
        LinearBuffer::with_config(16 << 10, framing, Compaction::Lazy),
        pool.clone(),
    )
}

/// The fan-out x1 regression: a reader with a megabyte buffer over input
/// that is always ready (a fast publisher) never yielded, so the writer of
/// the queue it pushed into (woken on the same worker) did not run until
/// the queue was full and the subscriber was dropped as a slow consumer.
/// The reader now spends tokio's coop budget per byte read and yields
/// after about a megabyte: the queue peaks near one buffer's worth.
#[tokio::test(flavor = "current_thread")]
async fn reader_yields_to_the_writer_of_the_queue_it_fills() {
    let (framing, wire) = wire(16 << 10); // 16 MiB, four times the limit
    let pool = MessagePool::new();
    let (queue, handle) = outbox(SendQueue::builder().limit(4 << 20));
    let io = Counting::default();
    let writer = tokio::spawn(
        handle
            .writer(io.clone(), Flusher::new(GatherThreshold::Bytes(16 << 10)))
            .run(),
    );
    let mut r = reader(&wire, framing, &pool);
    let p = publish_all(&mut r, &pool, &framing, &queue).await;
    writer.await.unwrap().unwrap();
    assert_eq!(p.frames, 16 << 10);
    assert_eq!(p.refused, 0, "{p:?}");
    // One fill (up to the 1 MiB buffer) per turn, plus the frames of the
    // turn's first fill left from the one before.
    assert!(p.peak_queued <= 2 << 20, "{p:?}");
    assert_eq!(io.bytes.load(Ordering::Relaxed), wire.len());
}

/// The writer fills its flusher up to `max_buffered` before writing: one
/// write per batch, not one per drain of 64 frames.
#[tokio::test(flavor = "current_thread")]
async fn writer_writes_once_per_batch_of_frames() {
    let pool = MessagePool::new();
    let framing = LengthDelimited::default();
    let (queue, handle) = outbox(SendQueue::builder().limit(4 << 20));
    let n = 1024;
    for i in 0..n {
        let body = pool.message_from(&[i as u8; BODY]).unwrap();
        let f = OutFrame::encode(&framing, &HeaderBytes::EMPTY, body.into()).unwrap();
        queue.try_push(f).unwrap();
    }
    queue.shutdown();
    let io = Counting::default();
    let (_, metrics) = handle
        .writer(io.clone(), Flusher::new(GatherThreshold::Bytes(16 << 10)))
        .max_buffered(256 << 10)
        .run()
        .await
        .unwrap();
    let bytes = n * (BODY + 4);
    assert_eq!(io.bytes.load(Ordering::Relaxed), bytes);
    // 1 MiB in batches of at least 256 KiB: 4 writes (5 with a remainder).
    let batches = bytes.div_ceil(256 << 10);
    assert!(metrics.write_calls as usize <= batches + 1, "{metrics:?}");
    assert_eq!(io.calls.load(Ordering::Relaxed) as u64, metrics.write_calls);
}

/// Steady state, reader and writer in one task: no allocator call per
/// message (pool blocks come back through the pool, no per-message
/// futures or wakers; before the fix a backlog at the queue's limit
/// overflowed it here).
#[tokio::test(flavor = "current_thread")]
async fn steady_state_allocates_nothing_per_message() {
    let (framing, wire) = wire(8 << 10);
    let pool = MessagePool::new();
    let run = |counted: bool| {
        let (queue, handle) = outbox(SendQueue::builder().limit(4 << 20));
        let writer = handle.writer(
            Counting::default(),
            Flusher::new(GatherThreshold::Bytes(16 << 10)),
        );
        let mut r = reader(&wire, framing, &pool);
        let pool = pool.clone();
        async move {
            let both = async {
                let (p, w) =
                    tokio::join!(publish_all(&mut r, &pool, &framing, &queue), writer.run());
                w.unwrap();
                p
            };
            if counted {
                let (p, delta) = allocators::counted(both).await;
                (p, Some(delta))
            } else {
                (both.await, None)
            }
        }
    };
    // Warm-up: the pool's blocks, the flusher's buffer.
    let (p, _) = run(false).await;
    assert_eq!(p.refused, 0);
    let (p, delta) = run(true).await;
    let delta = delta.unwrap();
    assert_eq!(p.refused, 0, "{p:?}");
    let calls = delta.allocations + delta.reallocations;
    let per_message = calls as f64 / p.frames as f64;
    // No call per message: what is left is per batch (the queue links a
    // new block of slots per 63 frames beyond its spare while a turn's
    // megabyte is queued; the flusher's buffer grows once): 138 calls for
    // 8,192 messages when this was written.
    assert!(
        per_message < 0.05,
        "{calls} allocator calls for {} messages",
        p.frames
    );
}

/// A writer whose connection fails closes its queue: producers are told,
/// instead of filling a queue nobody drains.
#[tokio::test(flavor = "current_thread")]
async fn failed_writer_closes_its_queue() {
    let pool = MessagePool::new();
    let framing = LengthDelimited::default();
    let (queue, handle) = outbox(SendQueue::builder().limit(1 << 20));
    let frame = || {
        let body = pool.message_from(b"hello").unwrap();
        OutFrame::encode(&framing, &HeaderBytes::EMPTY, body.into()).unwrap()
    };
    queue.try_push(frame()).unwrap();
    let io = Counting {
        fail: true,
        ..Default::default()
    };
    let r = handle
        .writer(io, Flusher::new(GatherThreshold::Never))
        .run()
        .await;
    assert!(r.is_err());
    assert!(queue.is_closed());
    assert!(matches!(queue.try_push(frame()), Err(PushError::Closed(_))));
    assert!(matches!(
        queue.send(frame()).await,
        Err(PushError::Closed(_))
    ));
    assert_eq!(pool.stats().live_messages, 0, "what was queued is dropped");
}
