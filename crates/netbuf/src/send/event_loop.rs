//! Driving a [`SendQueue`] and a [`Flusher`] from an event loop (mio,
//! epoll, poll) without extra wakeups or syscalls.
//!
//! This module holds documentation only. It describes the pattern the
//! workspace's demo server (`server-demo`: `src/server/io.rs`,
//! `src/server/io/output.rs`) follows, for a user who runs their own loop:
//! one IO thread owns a set of sockets, each session's [`Flusher`] and the
//! consumer side of each session's [`SendQueue`]; any thread (logic
//! threads, other IO threads, the IO thread's own handlers) pushes replies
//! into the queues. The example at the end runs it with a `poll(2)` loop.
//!
//! # Producers: pushing, and when a wakeup happens
//!
//! Producers call [`try_push`](SendQueue::try_push) (or
//! [`push_batch`](SendQueue::push_batch) for several messages) from any
//! thread; neither blocks nor takes a lock. The queue calls its [`Notify`]
//! (given to [`SendQueueBuilder::notify`]) in two cases only:
//!
//! * on the **first push after a drain that reported [`Drained::idle`]**:
//!   the empty -> non-empty transition of a consumer that said it may
//!   sleep (a new queue starts armed, so its first push notifies too).
//!   The producer calls it after publishing the message, on its own
//!   thread, with none of the queue's locks held. Every other push calls
//!   nothing: **while the consumer is awake** (it has not drained to idle
//!   yet, or its last drain stopped at `max`) pushes make no syscall at
//!   all: no eventfd write, no futex. A [`push_batch`](SendQueue::push_batch)
//!   notifies at most once for the whole batch;
//! * on [`shutdown`](SendQueue::shutdown) and [`close`](SendQueue::close),
//!   unconditionally, so that a sleeping consumer wakes up and ends.
//!
//! With mio, the notify is the loop's `Waker` (an eventfd write on Linux):
//! `FnNotify(move || { let _ = waker.wake(); })` (see [`FnNotify`]). With
//! many sessions per loop, the demo's notify marks its session ready
//! instead: it pushes the session's id onto the IO thread's ready list (a
//! `Mutex<Vec<u64>>`), and wakes the poller only when
//!
//! * the list was empty before this push (a non-empty list means a wake is
//!   already on its way, or the loop has not yet taken the list), and
//! * the caller is not the IO thread itself. A handler that runs inline on
//!   the IO thread and replies to a session of the same thread needs no
//!   wakeup: the loop takes the ready list after its events, before it
//!   polls again, and polls with a zero timeout while the list is not
//!   empty. (The demo tells its own thread apart with a thread-local
//!   index.)
//!
//! Wake syscalls then follow the turns of the IO thread's loop (at most one
//! per turn, for any number of sessions and messages), not messages.
//!
//! # The consumer: drain a batch into the flusher, write it once
//!
//! When a session is ready (its id came off the ready list, or its socket
//! reported writable), the IO thread runs one *pump* of it:
//!
//! 1. **Drain in chunks into the flusher.**
//!    [`drain_each`](SendQueue::drain_each)`(CHUNK, |frame| flusher.push(frame))`,
//!    repeated until a drain reports [`Drained::idle`] or the flusher holds
//!    a high mark of bytes ([`Flusher::pending_bytes`]; the demo uses
//!    16 KiB, chunks of 16 frames and at most 256 frames per write). The
//!    queue's items are
//!    [`OutFrame`]s (encoded header + body); [`Flusher::push`] copies small
//!    ones into its send buffer and keeps large bodies for a gather write.
//!    Stopping at the high mark matters: the flusher is not bounded, the
//!    queue is, so a slow peer's backlog must stay in the queue, where the
//!    byte bound counts it and refuses (or holds back) producers.
//! 2. **Write once.** [`Flusher::flush`] hands everything drained to one
//!    `write` (or `writev` when large bodies are gathered, up to
//!    [`MAX_IOV`] slices): a hundred small replies leave in one syscall,
//!    not a hundred. Calling it with nothing pending makes no syscall.
//! 3. **Decide what next** from the flush and the last drain:
//!    * [`Flushed::Done`] and the last drain was idle: the session is done
//!      for now; the queue's wakeup is armed, the next push notifies.
//!    * [`Flushed::Done`], last drain not idle (stopped at the high mark or
//!      at a frame budget): go round (the demo does), or put the session
//!      on a list of your own to continue next turn. **No push will
//!      notify** until a drain reports idle.
//!    * [`Flushed::WouldBlock`]: the socket is full. Stop, and wait for it
//!      to become writable (below).
//!    * `Err(`[`FlushError`]`)`: close the session:
//!      [`SendQueue::close`] drops what is queued (and fails later pushes),
//!      [`Flusher::clear`] what is pending.
//!
//! A **partial write** needs nothing from the caller: [`Flusher::flush`]
//! keeps its position to the byte, tries again, and returns
//! [`Flushed::WouldBlock`] when the socket takes no more; the next call
//! resumes at that byte. Frames never interleave, and a large body is freed
//! once its last byte is written.
//!
//! # `WouldBlock`: waiting for writable
//!
//! * **Edge-triggered** (mio, `EPOLLET`): register the socket once for
//!   readable **and** writable. When room appears, the next writable edge
//!   is reported; run the pump then. No re-registration syscalls.
//! * **Level-triggered** (`poll`, `epoll` without `EPOLLET`): ask for
//!   `POLLOUT` / `EPOLLOUT` only while a flush is blocked, or the loop
//!   spins on a socket that is always writable.
//!
//! While a session's flush is blocked, a notify from its queue needs no
//! write attempt (it would return `WouldBlock` again): the pump run on the
//! writable event drains the queue too. The example below does this.
//!
//! # Going idle without losing a wakeup
//!
//! Let a session sleep only after a drain that returned
//! [`Drained::idle`] `== true`. That drain **armed the wakeup itself, in
//! the same atomic step as its last check**: a CAS on the queue's state
//! word that succeeds only if nothing was reserved beyond what it read, or
//! a CAS on the slot a producer reserved and has not yet written (that
//! producer then notifies). A push racing the drain either lands before the
//! check (the drain takes it, or keeps draining) or after it (the push
//! notifies). The caller needs no re-check of its own; the protocol is
//! model-checked with loom (see "Smart notify" on [`SendQueue`]).
//!
//! What the caller must still get right:
//!
//! * **`idle == false` means "not armed".** A drain that stopped at `max`
//!   may have left messages, and no push will notify for them: drain again
//!   (now, or on a turn you schedule yourself) before relying on the
//!   notify. The same holds after a [`drain_each`](SendQueue::drain_each)
//!   whose callback panicked.
//! * **The wake itself must be sticky.** A notify may arrive after the
//!   drain and before the loop polls; an eventfd, mio's `Waker` or a
//!   self-pipe remember it, so the next poll returns at once. A wake that
//!   finds nothing to drain is harmless: that drain arms again.
//! * **Flags of your own follow the same rule: publish, then re-check.**
//!   The demo pauses reading a session whose queued and in-flight bytes
//!   reach half its queue's limit: it sets its `read_paused` flag, *then*
//!   reads the byte counts again, so a reply that freed room in between is
//!   not missed (the answering thread clears the flag and marks the session
//!   ready only if it finds it set).
//! * **[`Drained::closed`]** (reported only together with `idle`): the
//!   queue was shut down or closed and nothing is left, now or ever. Finish
//!   the flush, then close the socket.
//!
//! # Backpressure
//!
//! The queue is bounded **in bytes**, exactly: an entry costs
//! [`QueueItem::byte_size`] plus a per-entry overhead
//! ([`SendQueueBuilder::entry_overhead`]), or the memory the item pins with
//! [`SendQueueBuilder::count_pinned`] (a 1 KiB message in a 4 KiB block
//! counts 4 KiB). Concurrent producers never overshoot the limit. A
//! producer over it either **is refused** or **waits**:
//!
//! * **Refused:** [`try_push`](SendQueue::try_push) returns
//!   [`PushError::Full`] with the message, untouched;
//!   [`push_batch`](SendQueue::push_batch) returns [`BatchError::Full`]
//!   with the count pushed and leaves the rest in the caller's vector.
//!   Then drop the message (a stale update) or disconnect the peer that
//!   does not read. For replies, stop reading from the requester before
//!   it comes to that: the demo stops reading a session once its queued
//!   and in-flight bytes reach half the limit, so its requests wait in the
//!   kernel's socket buffer, not in memory, and nothing is dropped.
//! * **Waiting:** [`send(item).await`](SendQueue::send), or
//!   [`try_push_or_wait`](SendQueue::try_push_or_wait) in a `Sink`'s
//!   poll functions. The consumer's drains wake waiting producers as they
//!   release bytes; no runtime is involved. A message that can never fit
//!   ([`fits_when_empty`](SendQueue::fits_when_empty) is false) is refused
//!   at once instead of waiting forever.
//! * **Early warning:** [`is_writable`](SendQueue::is_writable) turns false
//!   at the high watermark and true again at the low one
//!   ([`SendQueueBuilder::watermarks`]), for producers that should slow
//!   down before they are refused.
//!
//! Remember the high mark of the pump (step 1 above): without it, the
//! consumer would move a slow peer's whole backlog into the unbounded
//! flusher and the bound would never refuse anyone.
//!
//! # Memory between bursts
//!
//! * **One send buffer per IO thread.** [`Flusher::swap_buffer`] lends the
//!   thread's spare buffer to the session about to be pumped and takes it
//!   back once the flush is [`Done`](Flushed::Done): sessions flushed in
//!   turn share one buffer's memory. A session whose write stopped short
//!   keeps the buffer until it drains.
//! * **Quiet sessions** give their memory back:
//!   [`Flusher::release_memory`] and
//!   [`SendQueue::release_idle_blocks`] (the queue's slot blocks; the next
//!   push installs a new one).
//! * **Fan-out from inline handlers:** bound the deliveries that one
//!   session's input may queue for other sessions before the loop flushes
//!   them (the demo's `INLINE_DELIVERY_BYTES`, 1 MiB of deliveries; the rest
//!   of that input waits for the next turn). Without it, in the README's
//!   fan-out test, one turn of a publisher's input queued 250 deliveries
//!   for each of 256 subscribers before any was written: 4.5 MB of the
//!   peak were send-queue blocks. Count bytes, not deliveries: a count
//!   small enough for 1 KiB bodies cut 64 B fan-out into tiny writes.
//! * **Small deliveries to connections of the same thread** need no queue:
//!   a handler running on the loop's thread can append them, encoded, to a
//!   per-connection buffer the loop owns, and the loop hands each batch to
//!   the flusher with [`Flusher::push_encoded`] (one copy per batch, the
//!   frames still counted). Keep the order: append only while the
//!   connection's queue is empty, and move the batch into the flusher
//!   before draining the queue and before any later reply. The demo does
//!   this for bodies up to 256 B: 392 to 160 server instructions per
//!   64 B delivery besides `memcpy` under callgrind, fan-out 64 B 1.53x to 1.96x the tokio
//!   peer (16 subscribers).
//!
//! # What this gives, in syscalls
//!
//! Measured on the demo server with `strace -c -f` over 10,000 64 B round
//! trips (figures from the repository's README):
//!
//! * **3.0 syscalls per round trip** with handlers inline on the IO thread:
//!   one `epoll_wait`, one `recvfrom`, one `sendto`. No eventfd write (the
//!   reply is produced on the IO thread itself), no futex, and no second
//!   `recvfrom`: on edge-triggered epoll, a read that returns fewer bytes
//!   than it was offered has drained the socket, so the loop stops reading
//!   there instead of reading on to `WouldBlock`.
//! * With a logic thread, 9.1 per round trip at the start of that work
//!   (2 `clock_gettime`, 2 `recvfrom` with the second one `WouldBlock`,
//!   ~1.8 `futex`, 1 eventfd `write`, 1.2 `epoll_wait`, 1 `sendto`), and 6.2
//!   once meters were published every 64 turns, logic threads slept
//!   without a timeout and a short read ended the read loop.
//! * Pipelined 64 B echo: 0.04 syscalls per message inline, no `futex` at
//!   all (0.13 to 1.4 with a logic thread, depending on how the two threads
//!   meet): many replies leave in each write.
//!
//! # Example
//!
//! Four producer threads push length-prefixed frames into one session's
//! queue; the consumer is a `poll(2)` loop on this thread. A socket pair
//! stands in for the loop's eventfd (mio's `Waker`): the notify writes a
//! byte into it. The session's socket is one end of a Unix socket pair,
//! non-blocking; a peer thread reads the other end and checks that each
//! producer's frames arrived whole and in order. The producers wait for
//! space when the queue is full (`send(..).await`), then shut the queue
//! down; the consumer sends what is left and closes the socket.
//!
//! ```
//! use std::io::{self, Read, Write};
//! use std::os::fd::AsRawFd;
//! use std::os::unix::net::UnixStream;
//! use std::sync::Arc;
//!
//! use netbuf::framing::{HeaderBytes, LengthDelimited};
//! use netbuf::{
//!     Drained, FlushError, Flushed, Flusher, FnNotify, GatherThreshold, OutFrame, SendQueue,
//! };
//!
//! type Frame = OutFrame<Vec<u8>>;
//!
//! /// Frames taken per drain call.
//! const CHUNK: usize = 16;
//! /// Bytes the flusher may hold before the pump stops draining: the rest
//! /// waits in the queue, under its byte bound.
//! const FLUSHER_HIGH: usize = 16 << 10;
//!
//! enum Pumped {
//!     /// Everything written, the queue's wakeup armed: sleep.
//!     Idle,
//!     /// The socket is full: wait for writable.
//!     Blocked,
//!     /// The queue was shut down and everything was written.
//!     Finished,
//! }
//!
//! /// One turn of a ready session: drain in chunks into the flusher,
//! /// write once per batch.
//! fn pump(
//!     queue: &SendQueue<Frame>,
//!     flusher: &mut Flusher<Vec<u8>>,
//!     socket: &mut UnixStream,
//! ) -> Result<Pumped, FlushError> {
//!     loop {
//!         let mut last = Drained::default();
//!         while flusher.pending_bytes() < FLUSHER_HIGH {
//!             last = queue.drain_each(CHUNK, |frame| flusher.push(frame));
//!             if last.idle {
//!                 break; // armed: the next push notifies
//!             }
//!         }
//!         // One write (or writev) for the whole batch; a partial write is
//!         // resumed at the exact byte by the next call.
//!         if flusher.flush(socket)? == Flushed::WouldBlock {
//!             return Ok(Pumped::Blocked);
//!         }
//!         if last.closed {
//!             return Ok(Pumped::Finished);
//!         }
//!         if last.idle {
//!             return Ok(Pumped::Idle);
//!         }
//!         // Stopped at FLUSHER_HIGH with more queued: no push will
//!         // notify for it, so go round.
//!     }
//! }
//!
//! fn main() -> io::Result<()> {
//!     // The loop's wakeup: an eventfd / mio `Waker` stand-in.
//!     let (wake_rx, wake_tx) = UnixStream::pair()?;
//!     wake_rx.set_nonblocking(true)?;
//!     wake_tx.set_nonblocking(true)?;
//!     let queue: Arc<SendQueue<Frame>> = Arc::new(
//!         SendQueue::builder()
//!             .limit(64 << 10)
//!             // Called on the empty -> non-empty transition only.
//!             .notify(FnNotify(move || {
//!                 let _ = (&wake_tx).write(&[1]);
//!             }))
//!             .build(),
//!     );
//!
//!     // The session's socket, and a peer that reads everything.
//!     let (mut socket, mut peer) = UnixStream::pair()?;
//!     socket.set_nonblocking(true)?;
//!     let reader = std::thread::spawn(move || {
//!         let mut wire = Vec::new();
//!         peer.read_to_end(&mut wire).unwrap();
//!         wire
//!     });
//!
//!     // Producers on other threads; they wait for space when it is full.
//!     const PRODUCERS: u8 = 4;
//!     const FRAMES: u32 = 2_000;
//!     let producers = {
//!         let queue = queue.clone();
//!         std::thread::spawn(move || {
//!             let framing = LengthDelimited::default(); // u32 BE length
//!             std::thread::scope(|s| {
//!                 for p in 0..PRODUCERS {
//!                     let (queue, framing) = (&queue, &framing);
//!                     s.spawn(move || {
//!                         for i in 0..FRAMES {
//!                             let mut body = vec![p; 100];
//!                             body[1..5].copy_from_slice(&i.to_be_bytes());
//!                             let frame =
//!                                 OutFrame::encode(framing, &HeaderBytes::EMPTY, body).unwrap();
//!                             // Or `try_push`, and handle `PushError::Full`.
//!                             futures::executor::block_on(queue.send(frame)).unwrap();
//!                         }
//!                     });
//!                 }
//!             });
//!             // The consumer sends what is queued, then sees `closed`.
//!             queue.shutdown();
//!         })
//!     };
//!
//!     // The event loop.
//!     let mut flusher: Flusher<Vec<u8>> = Flusher::new(GatherThreshold::default());
//!     let mut blocked = false; // the last flush returned WouldBlock
//!     loop {
//!         // Level-triggered poll: the socket only while a flush is blocked.
//!         let mut fds = [
//!             libc::pollfd { fd: wake_rx.as_raw_fd(), events: libc::POLLIN, revents: 0 },
//!             libc::pollfd {
//!                 fd: socket.as_raw_fd(),
//!                 events: if blocked { libc::POLLOUT } else { 0 },
//!                 revents: 0,
//!             },
//!         ];
//!         // SAFETY: `fds` is an array of two initialised `pollfd`s.
//!         if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
//!             let e = io::Error::last_os_error();
//!             if e.kind() == io::ErrorKind::Interrupted {
//!                 continue;
//!             }
//!             return Err(e);
//!         }
//!         if fds[0].revents != 0 {
//!             // Consume the wakeups (however many producers sent).
//!             let mut buf = [0u8; 64];
//!             while matches!((&wake_rx).read(&mut buf), Ok(n) if n > 0) {}
//!         }
//!         if blocked && fds[1].revents == 0 {
//!             // Still full: the writable event will drain the queue too.
//!             continue;
//!         }
//!         match pump(&queue, &mut flusher, &mut socket)? {
//!             Pumped::Idle => blocked = false,
//!             Pumped::Blocked => blocked = true,
//!             Pumped::Finished => break,
//!         }
//!     }
//!     drop(socket); // end of stream for the peer
//!     producers.join().unwrap();
//!
//!     // Every frame arrived, whole, in each producer's order.
//!     let wire = reader.join().unwrap();
//!     let mut next = [0u32; PRODUCERS as usize];
//!     let mut rest = &wire[..];
//!     while !rest.is_empty() {
//!         let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
//!         let body = &rest[4..4 + len];
//!         let (p, i) = (body[0] as usize, u32::from_be_bytes(body[1..5].try_into().unwrap()));
//!         assert_eq!(i, next[p]);
//!         next[p] += 1;
//!         rest = &rest[4 + len..];
//!     }
//!     assert_eq!(next, [FRAMES; PRODUCERS as usize]);
//!     assert_eq!(flusher.metrics().bytes_written, wire.len() as u64);
//!     Ok(())
//! }
//! ```
//!
//! With mio the loop has the same shape: the `Waker` is the notify, the
//! socket is registered once for `READABLE | WRITABLE` (edge-triggered, so
//! `blocked` becomes "wait for the next writable event of this token"),
//! and with many sessions the notify marks its session ready as described
//! above.

#[cfg(doc)]
use crate::{
    BatchError, Drained, FlushError, Flushed, Flusher, FnNotify, MAX_IOV, Notify, OutFrame,
    PushError, QueueItem, SendQueue, SendQueueBuilder,
};
