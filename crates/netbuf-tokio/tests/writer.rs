//! The async writer and reader against scripted I/O: an `AsyncWrite` that
//! takes a few bytes at a time and returns `Pending` in between (partial
//! writes resumed to the byte, gather across frames, a body freed only
//! after its last byte), graceful shutdown with frames still queued, a
//! writer sleeping while the queue closes, and the reader over every
//! framing split at every byte.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::StreamExt;
use netbuf::framing::{Framing, HeaderBytes, LengthDelimited};
use netbuf::test_util::quiet_pool;
use netbuf::{Flusher, GatherThreshold, MessagePool, OutFrame, Outgoing, SendQueue};
use netbuf_tokio::{FrameReader, outbox};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Accepts at most `chunk` bytes per call, every other call `Pending`
/// (waking itself, like a socket that becomes writable again).
#[derive(Clone, Default)]
struct Scripted {
    out: Arc<Mutex<Vec<u8>>>,
    chunk: usize,
    calls: usize,
    vectored: bool,
    shut: Arc<Mutex<bool>>,
}

impl AsyncWrite for Scripted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.calls += 1;
        if self.calls.is_multiple_of(2) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let mut left = self.chunk;
        let mut n = 0;
        let mut out = self.out.lock().unwrap();
        for b in bufs {
            let k = left.min(b.len());
            out.extend_from_slice(&b[..k]);
            n += k;
            left -= k;
            if left == 0 {
                break;
            }
        }
        Poll::Ready(Ok(n))
    }
    fn is_write_vectored(&self) -> bool {
        self.vectored
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        *self.shut.lock().unwrap() = true;
        Poll::Ready(Ok(()))
    }
}

fn framings() -> [LengthDelimited; 3] {
    let b = |offset: usize, header_len: usize, little: bool| {
        let mut b = LengthDelimited::builder();
        b.length_field_offset(offset)
            .header_len(header_len)
            .max_body(1 << 20);
        if little {
            b.little_endian();
        }
        b.build().unwrap()
    };
    [b(0, 8, true), b(0, 4, false), b(2, 6, true)]
}

#[tokio::test]
async fn partial_writes_gather_and_free_bodies_only_once_written() {
    for framing in framings() {
        for vectored in [true, false] {
            let pool = quiet_pool().build();
            let io = Scripted {
                chunk: 7,
                vectored,
                ..Default::default()
            };
            let (queue, handle) = outbox(SendQueue::builder().limit(4 << 20));
            let writer = handle.writer(io.clone(), Flusher::new(GatherThreshold::Bytes(1024)));
            let mut expected = Vec::new();
            for (i, len) in [3usize, 5000, 0, 70_000, 12].into_iter().enumerate() {
                let body: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
                let m = pool.message_from(&body).unwrap();
                let out: Outgoing = if i % 2 == 0 {
                    m.into()
                } else {
                    m.freeze().into()
                };
                let f = OutFrame::encode(&framing, &HeaderBytes::EMPTY, out).unwrap();
                expected.extend_from_slice(f.header.as_slice());
                expected.extend_from_slice(&body);
                queue.send(f).await.unwrap();
            }
            // Bodies are alive while queued or partly written.
            assert!(pool.stats().live_messages > 0);
            queue.shutdown();
            let (_, metrics) = writer.run().await.unwrap();
            assert!(*io.out.lock().unwrap() == expected, "byte stream differs");
            assert!(*io.shut.lock().unwrap(), "write half shut down at the end");
            assert_eq!(
                pool.stats().live_messages,
                0,
                "every body freed once written"
            );
            let gathered = if vectored { 2 } else { 0 };
            assert_eq!(metrics.gather_frames, gathered, "vectored={vectored}");
        }
    }
}

/// A writer asleep on an empty queue wakes when the queue closes, and ends.
#[tokio::test]
async fn writer_sleeping_on_an_empty_queue_ends_on_close() {
    for hard in [false, true] {
        let io = Scripted {
            chunk: 100,
            vectored: true,
            ..Default::default()
        };
        let (queue, handle) = outbox(SendQueue::builder().limit(1 << 10));
        let task = tokio::spawn(handle.writer(io, Flusher::new(Default::default())).run());
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!task.is_finished());
        if hard {
            queue.close();
        } else {
            queue.shutdown();
        }
        tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .expect("the writer woke up and ended")
            .unwrap()
            .unwrap();
    }
}

/// Producers awaiting room: the writer drains, they complete, all in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_then_drain() {
    let framing = framings()[1];
    let io = Scripted {
        chunk: 3,
        vectored: true,
        ..Default::default()
    };
    // Room for about two small frames at a time.
    let (queue, handle) = outbox(SendQueue::builder().limit(200));
    let writer = tokio::spawn(
        handle
            .writer(io.clone(), Flusher::new(Default::default()))
            .max_buffered(16)
            .run(),
    );
    let mut expected = Vec::new();
    for i in 0..200u32 {
        let body = i.to_be_bytes().to_vec();
        let f = OutFrame::encode(
            &framing,
            &HeaderBytes::EMPTY,
            Outgoing::from(MessagePool::new().message_from(&body).unwrap()),
        )
        .unwrap();
        expected.extend_from_slice(f.header.as_slice());
        expected.extend_from_slice(&body);
        queue.send(f).await.unwrap();
    }
    queue.shutdown();
    writer.await.unwrap().unwrap();
    assert!(*io.out.lock().unwrap() == expected);
}

/// An `AsyncRead` that hands out one byte per call, `Pending` in between.
struct Trickle(Vec<u8>, usize, bool);

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.2 = !self.2;
        if self.2 {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if self.1 < self.0.len() {
            buf.put_slice(&self.0[self.1..self.1 + 1]);
            self.1 += 1;
        }
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn reader_over_every_framing_at_one_byte_per_read() {
    for framing in framings() {
        let pool = quiet_pool().build();
        let bodies: Vec<Vec<u8>> = vec![vec![], b"x".to_vec(), vec![7; 5000]];
        let mut wire = Vec::new();
        for b in &bodies {
            netbuf::framing::encode_frame_into(&framing, &mut wire, &HeaderBytes::EMPTY, b)
                .unwrap();
        }
        for chained in [false, true] {
            let got: Vec<Vec<u8>> = if chained {
                let r =
                    FrameReader::chained(Trickle(wire.clone(), 0, false), framing, pool.clone());
                r.map(|f| f.unwrap().1.to_vec()).collect().await
            } else {
                let r = FrameReader::linear(Trickle(wire.clone(), 0, false), framing, pool.clone());
                r.map(|f| f.unwrap().1.to_vec()).collect().await
            };
            assert_eq!(got, bodies);
        }
        // Ending inside a frame is an error, not a clean end.
        let cut = wire.len() - 1;
        let mut r = FrameReader::linear(&wire[..cut], framing, pool.clone());
        let mut last = None;
        while let Some(f) = r.next().await {
            last = Some(f.is_ok());
        }
        assert_eq!(last, Some(false));
        assert_eq!(framing.max_body(), 1 << 20);
        assert_eq!(pool.stats().live_messages, 0);
    }
}

/// `Framed` with the codec: one line to switch, a real tokio-util type on
/// both ends of an in-memory duplex.
#[tokio::test]
async fn framed_switches_in_one_line() {
    use futures::SinkExt;
    use netbuf_tokio::FramingCodec;
    use tokio_util::codec::Framed;
    for framing in framings() {
        let pool = MessagePool::new();
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut left = Framed::new(a, FramingCodec::new(framing, pool.clone()));
        let mut right = Framed::new(b, FramingCodec::new(framing, pool.clone()));
        for n in [0usize, 1, 300, 70_000] {
            left.send((HeaderBytes::EMPTY, vec![n as u8; n]))
                .await
                .unwrap();
            let (_, body) = right.next().await.unwrap().unwrap();
            assert_eq!(&body[..], &vec![n as u8; n][..]);
        }
        // Over the limit: a typed error before any body byte is buffered.
        let small = framing.with_max_body(10);
        let mut strict = Framed::new(tokio::io::duplex(64).0, FramingCodec::new(small, pool));
        assert!(
            strict
                .send((HeaderBytes::EMPTY, vec![0u8; 11]))
                .await
                .is_err()
        );
    }
}

/// A `Sink` producer waits for room, a cancelled `send` leaves the queue
/// usable, an item that can never fit is refused at once.
#[tokio::test]
async fn sink_backpressure_cancel_and_oversize() {
    use futures::SinkExt;
    use netbuf_tokio::QueueSink;
    let queue: Arc<SendQueue<Vec<u8>>> = Arc::new(SendQueue::builder().limit(300).build());
    let mut sink = QueueSink::new(queue.clone());
    sink.send(vec![1; 100]).await.unwrap();
    sink.send(vec![2; 100]).await.unwrap();
    // Full now: a send that cannot complete is cancelled by a timeout.
    let blocked = tokio::time::timeout(
        std::time::Duration::from_millis(50),
        sink.send(vec![3; 100]),
    );
    assert!(blocked.await.is_err(), "waited for room");
    // Draining makes room; the held item goes in on the next flush.
    let mut out = Vec::new();
    queue.drain_into(&mut out, 16);
    sink.flush().await.unwrap();
    queue.drain_into(&mut out, 16);
    assert_eq!(out.iter().map(|v| v[0]).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(sink.send(vec![9; 10_000]).await.is_err(), "can never fit");
    sink.close().await.unwrap();
    assert!(
        queue.try_push(vec![1]).is_err(),
        "closed after the sink closed"
    );
}

/// After a burst the writer gives its grown send buffer back once
/// everything was written and the queue is empty (unless told to keep it).
#[tokio::test]
async fn a_drained_writer_gives_its_burst_buffer_back() {
    for keep in [netbuf_tokio::DEFAULT_KEEP_BUFFERED, usize::MAX] {
        let pool = quiet_pool().build();
        let io = Scripted {
            chunk: usize::MAX,
            vectored: true,
            ..Default::default()
        };
        let (queue, handle) = outbox(SendQueue::builder().limit(4 << 20));
        let mut writer = handle
            .writer(io.clone(), Flusher::new(GatherThreshold::Never))
            .keep_buffered(keep);
        let framing = LengthDelimited::default();
        // 2,000 frames of 104 bytes: one ~200 KiB batch in the flusher.
        for _ in 0..2000 {
            let m = pool.message_from(&[7u8; 100]).unwrap();
            let f = OutFrame::encode(&framing, &HeaderBytes::EMPTY, m.into()).unwrap();
            queue.try_push(f).unwrap();
        }
        // Drive it until it sleeps on the empty queue (Scripted says
        // Pending every other call and wakes itself).
        let mut polls = 0;
        while std::future::poll_fn(|cx| Poll::Ready(writer.poll_run(cx).is_pending())).await
            && !io.out.lock().unwrap().len().eq(&(2000 * 104))
        {
            polls += 1;
            assert!(polls < 10_000, "the writer made no progress");
            tokio::task::yield_now().await;
        }
        // One more round: it finds the queue empty and goes to sleep.
        assert!(std::future::poll_fn(|cx| Poll::Ready(writer.poll_run(cx).is_pending())).await);
        assert_eq!(io.out.lock().unwrap().len(), 2000 * 104);
        if keep == usize::MAX {
            assert!(writer.buffered_capacity() >= 200_000, "kept");
        } else {
            assert!(
                writer.buffered_capacity() <= keep,
                "{}",
                writer.buffered_capacity()
            );
        }
    }
}
