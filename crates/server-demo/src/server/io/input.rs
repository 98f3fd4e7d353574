//! The input side of a demo session: frames decoded from the receive
//! buffer and handed to their handlers, and the inline echo fast path.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use netbuf::framing::DecodeError;
use netbuf::{FrameSource, ReceiveBuffer};

use super::{Close, FLUSHER_HIGH, SessionIo};
use crate::protocol::{HEADER_LEN, Kind, encode_header};
use crate::server::logic::Job;
use crate::server::{SessionShared, Shared};

/// Decodes every complete frame and hands it to its logic thread.
pub(super) fn decode_all(
    io: &mut SessionIo,
    session: &Arc<SessionShared>,
    shared: &Shared,
) -> Result<(), Close> {
    loop {
        if let Some(done) = echo_direct(io, session, shared)? {
            if done {
                return Ok(());
            }
            continue;
        }
        let next = io.recv.next_message(&shared.pool);
        let (header, body) = match next {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(()),
            Err(e) => return Err(Close::Protocol(decode_reason(&e))),
        };
        shared.counters.frames_in.fetch_add(1, Ordering::Relaxed);
        check_kind(header.kind)?;
        handle_owned(session, shared, header, body)?;
    }
}

/// The kinds a client may send; anything else closes the session.
fn check_kind(kind: Kind) -> Result<(), Close> {
    match kind {
        Kind::EchoRequest | Kind::Join | Kind::Leave | Kind::Publish => Ok(()),
        Kind::Closing => Err(Close::Quiet("peer sent closing".into())),
        k => Err(Close::Protocol(format!(
            "protocol error: unexpected kind {} from a client",
            k.as_u8()
        ))),
    }
}

/// The inline echo fast path. With handlers inline, nothing queued for the
/// session and room in its flusher, the next frame is decoded in place
/// (borrowed from the linear receive buffer) and, if it is an echo request
/// under the gather threshold, its reply is copied straight into the
/// flusher: no pooled message, no send-queue push or drain, no ready-list
/// entry. Only with the queue empty, so replies keep their order behind
/// any reply already queued; only below `FLUSHER_HIGH`, so a peer that does
/// not read fills the queue, whose bound pauses reading (backpressure), not
/// the flusher.
///
/// `Ok(None)`: not applicable, decode the usual way. `Ok(Some(true))`: no
/// complete frame buffered. `Ok(Some(false))`: a frame was handled.
fn echo_direct(
    io: &mut SessionIo,
    session: &Arc<SessionShared>,
    shared: &Shared,
) -> Result<Option<bool>, Close> {
    if !shared.logic.is_empty()
        || io.flusher.pending_bytes() >= FLUSHER_HIGH
        || session.queue.queued_bytes() != 0
    {
        return Ok(None);
    }
    let ReceiveBuffer::Linear(recv) = &mut io.recv else {
        return Ok(None);
    };
    let threshold = io.flusher.threshold();
    // Deliveries staged for this session came before this request's reply.
    super::output::take_staged(&mut io.flusher, session, shared);
    let frame = match recv.next_frame() {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(Some(true)),
        Err(e) => return Err(Close::Protocol(decode_reason(&e))),
    };
    shared.counters.frames_in.fetch_add(1, Ordering::Relaxed);
    check_kind(frame.header.kind)?;
    if frame.header.kind == Kind::EchoRequest && frame.body.len() < threshold {
        let h = encode_header(Kind::EchoReply, 0, frame.body.len() as u32);
        io.flusher.push_copy(&h, frame.body);
        shared.counters.frames_out.fetch_add(1, Ordering::Relaxed);
        return Ok(Some(false));
    }
    // Another kind, or a large echo (sent without a copy through the queue
    // path): into a message, as `next_message` would have done.
    let header = frame.header;
    let body = shared.pool.message_from(frame.body).map_err(|e| {
        Close::Protocol(format!("cannot take a {} B message: {e}", frame.body.len()))
    })?;
    handle_owned(session, shared, header, body)?;
    Ok(Some(false))
}

/// Hands a decoded frame to its handler, counting the request's memory
/// while it is in flight.
fn handle_owned(
    session: &Arc<SessionShared>,
    shared: &Shared,
    header: crate::protocol::FrameHeader,
    body: netbuf::Message,
) -> Result<(), Close> {
    // Count the memory the request holds (its block), not its length:
    // a 64 B request in a 4 KiB block costs 4 KiB until answered.
    let bytes = HEADER_LEN + body.capacity();
    session.inflight.fetch_add(bytes, Ordering::AcqRel);
    let job = Job::Frame {
        session: session.clone(),
        header,
        body,
    };
    if !dispatch(shared, job, session.id) {
        session.inflight.fetch_sub(bytes, Ordering::AcqRel);
        return Err(Close::Protocol("server overloaded".into()));
    }
    Ok(())
}

/// Hands a job to the session's logic thread, or runs it right here with
/// `--logic-threads 0` (handlers inline on the IO thread: no handoff, no
/// wakeup). Returns `false` if the logic thread's queue refused it.
pub(super) fn dispatch(shared: &Shared, job: Job, session: u64) -> bool {
    if shared.logic.is_empty() {
        crate::server::logic::handle(shared, job);
        return true;
    }
    let logic = &shared.logic[(session as usize) % shared.logic.len()];
    logic.jobs.try_push(job).is_ok()
}

fn decode_reason(e: &DecodeError) -> String {
    format!("protocol error: {e}")
}
