//! The soak's ZMTP chaos peers: they vanish mid-greeting or mid-frame, or
//! send garbage (not a greeting, the PLAIN mechanism, an incompatible
//! socket type, reserved flag bits, a part over the limit, garbage after
//! valid echoes). The server must close the garbage senders, and only them:
//! the other clients' checks run meanwhile.

use std::io::{self, ErrorKind, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::super::{Ctx, Rng, Totals, make_body};
use super::{Endpoints, ZConn, ZECHO_MAGIC, echo_message, parse_parts};
use crate::zmtp::client::{self as zc, Socket};

/// Waits until the server closes `s` (end of stream or reset); `false` if
/// it is still open after 20 s.
fn closed_by_server(s: &mut Socket) -> bool {
    let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

pub(super) fn chaos(
    ctx: &Ctx,
    eps: &Endpoints,
    rng: &mut Rng,
    into: &mut Totals,
) -> io::Result<()> {
    let case = rng.range(0, 7);
    if case == 7 {
        return garbage_after_echoes(ctx, eps, rng, into);
    }
    let (ep, ty) = [
        (&eps.router, "DEALER"),
        (&eps.xsub, "PUB"),
        (&eps.xpub, "SUB"),
    ][rng.range(0, 2) as usize];
    let mut t = Totals {
        connections: 1,
        ..Totals::default()
    };
    t.zmtp.connections = 1;
    let id = ctx.next_conn.fetch_add(1, Ordering::Relaxed);
    let mut s = zc::connect(ep)?;
    s.set_write_timeout(Some(Duration::from_secs(20)))?;
    let (wire, what) = chaos_wire(ctx, rng, case, ty, id);
    send_chaos(ctx, &mut s, &wire, what, id, &mut t);
    into.add(&t);
    Ok(())
}

/// What chaos peer `case` (0 to 6) of socket type `ty` sends, and what that
/// is ("vanish ..." for a peer that vanishes, else the garbage it sends).
fn chaos_wire(ctx: &Ctx, rng: &mut Rng, case: u64, ty: &str, id: u64) -> (Vec<u8>, &'static str) {
    let greeting = zc::greeting(3, 1, "NULL");
    let mut handshake = greeting.to_vec();
    handshake.extend(zc::frame(zc::COMMAND, &zc::ready(ty, None)));
    let mut wire = Vec::new();
    let what = match case {
        0 => {
            let cut = rng.range(1, 63) as usize;
            wire.extend_from_slice(&greeting[..cut]);
            "vanish mid-greeting"
        }
        1 => {
            wire.extend_from_slice(&handshake);
            let body = make_body(ZECHO_MAGIC, id, 0, rng.range(300, 256 << 10) as usize).0;
            let f = zc::frame(0, &body);
            wire.extend_from_slice(&f[..rng.range(1, f.len() as u64 - 1) as usize]);
            "vanish mid-frame"
        }
        2 => {
            wire.push(rng.range(0, 0xFE) as u8);
            wire.extend((0..rng.range(0, 300)).map(|_| rng.next_u64() as u8));
            "garbage instead of a greeting"
        }
        3 => {
            wire.extend_from_slice(&zc::greeting(3, rng.range(0, 1) as u8, "PLAIN"));
            "the PLAIN mechanism"
        }
        4 => {
            let bad = match ty {
                "DEALER" => ["PUB", "SUB", "PAIR", "BOGUS"],
                "PUB" => ["SUB", "DEALER", "ROUTER", "BOGUS"],
                _ => ["PUB", "DEALER", "PAIR", "BOGUS"],
            };
            wire.extend_from_slice(&greeting);
            wire.extend(zc::frame(
                zc::COMMAND,
                &zc::ready(bad[rng.range(0, 3) as usize], None),
            ));
            "an incompatible socket type"
        }
        5 => {
            wire.extend_from_slice(&handshake);
            wire.push(0x08 << rng.range(0, 4));
            wire.extend((0..rng.range(1, 300)).map(|_| rng.next_u64() as u8));
            "reserved flag bits"
        }
        _ => {
            wire.extend_from_slice(&handshake);
            wire.push(zc::LONG);
            let len = rng.range(ctx.max_frame as u64 + 1, u64::MAX >> 1);
            wire.extend_from_slice(&len.to_be_bytes());
            wire.extend((0..rng.range(0, 4096)).map(|_| rng.next_u64() as u8));
            "a part over the limit"
        }
    };
    (wire, what)
}

/// Sends a chaos peer's `wire` on `s`: a peer that vanishes then shuts
/// down; one that sent garbage must be closed by the server.
fn send_chaos(ctx: &Ctx, s: &mut Socket, wire: &[u8], what: &str, id: u64, t: &mut Totals) {
    let vanish = what.starts_with("vanish");
    let _ = s.write_all(wire);
    t.bytes_out += wire.len() as u64;
    if vanish {
        let _ = s.shutdown(Shutdown::Both);
        t.zmtp.vanished_mid_frame += 1;
    } else {
        t.zmtp.garbage += 1;
        if !closed_by_server(s) {
            ctx.fail(format!(
                "zmtp conn {id}: the server did not close a peer that sent {what} within 20 s"
            ));
        }
    }
}

/// A DEALER echoes a few verified messages, then sends a frame with
/// reserved flag bits: the server must close it after the replies.
fn garbage_after_echoes(
    ctx: &Ctx,
    eps: &Endpoints,
    rng: &mut Rng,
    into: &mut Totals,
) -> io::Result<()> {
    let (mut z, mut c) = ZConn::open(ctx, &eps.router, "DEALER", 1)?;
    for seq in 0..rng.range(1, 10) {
        let (parts, sigs) = echo_message(rng, z.id, seq);
        z.totals.zmtp.echo_sent += 1;
        c.send_message(&parts)?;
        let reply = c.read_message()?.unwrap_or_default();
        if parse_parts(ZECHO_MAGIC, &reply).ok() != Some(sigs) {
            ctx.fail(format!(
                "zmtp conn {}: echo reply before garbage differs",
                z.id
            ));
        }
        z.totals.zmtp.echo_answered += 1;
        z.totals.zmtp.parts_verified += reply.len() as u64;
    }
    let mut bad = vec![0x80 | rng.range(0, 7) as u8, 4];
    bad.extend_from_slice(b"junk");
    z.write(&bad);
    z.totals.zmtp.garbage += 1;
    if !closed_by_server(c.get_mut()) {
        ctx.fail(format!(
            "zmtp conn {}: the server did not close a DEALER after garbage within 20 s",
            z.id
        ));
    }
    z.link.stop.store(true, Ordering::Release);
    let _ = z.w.shutdown(Shutdown::Both);
    into.add(&z.totals);
    Ok(())
}
