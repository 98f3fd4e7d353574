//! The checkers: [`ConnChecker`] judges one connection's echo replies and
//! deliveries against what it sent ([`Sent`]), and [`check_rooms`] judges
//! every subscription of a room ([`EpochLog`]) against the others.

use std::collections::{HashMap, VecDeque};

use crate::protocol::{HEADER_LEN, Kind};

use super::stamp::{ECHO_MAGIC, PUB_MAGIC, Stamp, parse_body};

/// What a client sent that the checker must know about, in send order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// An echo request.
    Echo(Stamp),
    /// A join of this room.
    Join(u16),
    /// A leave of this room, followed by this echo request (the barrier:
    /// its reply comes after every delivery of the subscription).
    Leave(u16, Stamp),
}

/// One subscription's deliveries: `(publisher, sequence)` in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochLog {
    /// The room.
    pub room: u16,
    /// The subscriber connection.
    pub conn: u64,
    /// Deliveries in arrival order.
    pub entries: Vec<(u64, u64)>,
}

/// Checks what one connection receives against what it sent.
#[derive(Debug)]
pub struct ConnChecker {
    conn: u64,
    pending: VecDeque<Sent>,
    open: HashMap<u16, Vec<(u64, u64)>>,
    /// Finished subscriptions.
    pub epochs: Vec<EpochLog>,
    /// Echo replies matched.
    pub answered: u64,
    /// Deliveries received.
    pub deliveries: u64,
    /// Bytes received (headers included).
    pub bytes_in: u64,
    /// The reason of a `closing` frame, if one came.
    pub closing: Option<String>,
}

impl ConnChecker {
    /// A checker for connection `conn`.
    pub fn new(conn: u64) -> ConnChecker {
        ConnChecker {
            conn,
            pending: VecDeque::new(),
            open: HashMap::new(),
            epochs: Vec::new(),
            answered: 0,
            deliveries: 0,
            bytes_in: 0,
            closing: None,
        }
    }

    /// Records something sent (call before writing it).
    pub fn sent(&mut self, s: Sent) {
        self.pending.push_back(s);
    }

    /// Echo replies still owed.
    pub fn outstanding(&self) -> usize {
        self.pending
            .iter()
            .filter(|s| !matches!(s, Sent::Join(_)))
            .count()
    }

    /// Joins sent before the next outstanding echo are in effect by the
    /// time anything after that echo's reply arrives.
    fn apply_joins(&mut self) {
        while let Some(&Sent::Join(r)) = self.pending.front() {
            self.pending.pop_front();
            self.open.entry(r).or_default();
        }
    }

    /// Checks one received frame.
    pub fn on_frame(&mut self, kind: Kind, room: u16, body: &[u8]) -> Result<(), String> {
        self.bytes_in += (HEADER_LEN + body.len()) as u64;
        if self.closing.is_some() {
            return Err(format!(
                "conn {}: frame of kind {} after a closing frame",
                self.conn,
                kind.as_u8()
            ));
        }
        self.apply_joins();
        match kind {
            Kind::EchoReply => {
                let got = parse_body(ECHO_MAGIC, body).map_err(|e| format!("echo reply: {e}"))?;
                match self.pending.pop_front() {
                    Some(Sent::Echo(want)) if want == got => {}
                    Some(Sent::Leave(r, want)) if want == got => {
                        if let Some(entries) = self.open.remove(&r) {
                            self.epochs.push(EpochLog {
                                room: r,
                                conn: self.conn,
                                entries,
                            });
                        }
                    }
                    Some(Sent::Echo(want) | Sent::Leave(_, want)) => {
                        return Err(format!(
                            "conn {}: echo reply out of order, duplicated or altered: expected \
                             conn {} seq {} ({} B), got conn {} seq {} ({} B)",
                            self.conn, want.conn, want.seq, want.len, got.conn, got.seq, got.len
                        ));
                    }
                    Some(Sent::Join(_)) | None => {
                        return Err(format!(
                            "conn {}: echo reply (conn {} seq {}) with no request outstanding",
                            self.conn, got.conn, got.seq
                        ));
                    }
                }
                self.answered += 1;
                Ok(())
            }
            Kind::Delivery => {
                let got = parse_body(PUB_MAGIC, body).map_err(|e| format!("delivery: {e}"))?;
                self.deliveries += 1;
                match self.open.get_mut(&room) {
                    Some(log) => {
                        log.push((got.conn, got.seq));
                        Ok(())
                    }
                    None => Err(format!(
                        "conn {}: delivery in room {room} (publisher {} seq {}) while not \
                         subscribed",
                        self.conn, got.conn, got.seq
                    )),
                }
            }
            Kind::Closing => {
                let reason = String::from_utf8_lossy(body).into_owned();
                self.closing = Some(reason);
                Ok(())
            }
            k => Err(format!(
                "conn {}: unexpected frame kind {} from the server",
                self.conn,
                k.as_u8()
            )),
        }
    }

    /// Ends the connection: open subscriptions become logs (cut where the
    /// connection ended).
    pub fn finish(&mut self) {
        let mut open: Vec<_> = self.open.drain().collect();
        open.sort_by_key(|(r, _)| *r);
        for (room, entries) in open {
            self.epochs.push(EpochLog {
                room,
                conn: self.conn,
                entries,
            });
        }
    }
}

/// Checks the subscriptions of every room (see the module docs). Returns
/// the violations found (at most a few dozen are spelled out).
pub fn check_rooms(logs: &[EpochLog]) -> Vec<String> {
    let mut errors = Vec::new();
    check_sequences(logs, &mut errors);
    check_room_orders(logs, &mut errors);
    errors
}

/// Adds a room error, spelling out at most 40 of them.
fn push_room_error(errors: &mut Vec<String>, e: String) {
    if errors.len() < 40 {
        errors.push(e);
    } else if errors.len() == 40 {
        errors.push("... more room errors".into());
    }
}

/// Per subscription: every publisher's sequence numbers consecutive.
fn check_sequences(logs: &[EpochLog], errors: &mut Vec<String>) {
    for log in logs {
        let mut last: HashMap<u64, u64> = HashMap::new();
        for &(p, s) in &log.entries {
            if let Some(prev) = last.insert(p, s)
                && s != prev.wrapping_add(1)
            {
                push_room_error(
                    errors,
                    format!(
                        "room {}: subscriber {} got publisher {}'s seq {} after seq {} \
                             (gap, duplicate or reordering)",
                        log.room, log.conn, p, s, prev
                    ),
                );
            }
        }
    }
}

/// Every two subscriptions of a room: windows onto one order.
fn check_room_orders(logs: &[EpochLog], errors: &mut Vec<String>) {
    let mut by_room: HashMap<u16, Vec<usize>> = HashMap::new();
    for (i, l) in logs.iter().enumerate() {
        by_room.entry(l.room).or_default().push(i);
    }
    let mut rooms: Vec<_> = by_room.into_iter().collect();
    rooms.sort_by_key(|(r, _)| *r);
    for (room, members) in rooms {
        let mut index: HashMap<(u64, u64), Vec<(usize, usize)>> = HashMap::new();
        for &i in &members {
            for (pos, e) in logs[i].entries.iter().enumerate() {
                index.entry(*e).or_default().push((i, pos));
            }
        }
        for &a in &members {
            for (b, (fa, fb, n)) in overlaps(logs, &index, a) {
                check_pair(logs, room, (a, fa), (b, fb), n, errors);
            }
        }
    }
}

/// The logs after `a` (in log order) that share broadcasts with log `a`
/// (looked up in the room's `index`): other log -> (first common position
/// in a, in b, common count).
fn overlaps(
    logs: &[EpochLog],
    index: &HashMap<(u64, u64), Vec<(usize, usize)>>,
    a: usize,
) -> Vec<(usize, (usize, usize, usize))> {
    let mut overlap: HashMap<usize, (usize, usize, usize)> = HashMap::new();
    for (pa, e) in logs[a].entries.iter().enumerate() {
        for &(b, pb) in index.get(e).map(|v| v.as_slice()).unwrap_or(&[]) {
            if b != a {
                overlap.entry(b).or_insert((pa, pb, 0)).2 += 1;
            }
        }
    }
    let mut overlap: Vec<_> = overlap.into_iter().filter(|(b, _)| *b > a).collect();
    overlap.sort_by_key(|(b, _)| *b);
    overlap
}

/// Checks that logs `a` and `b`, whose `n` common broadcasts start at `fa`
/// in `a` and `fb` in `b`, are windows onto one order.
fn check_pair(
    logs: &[EpochLog],
    room: u16,
    (a, fa): (usize, usize),
    (b, fb): (usize, usize),
    n: usize,
    errors: &mut Vec<String>,
) {
    let la = &logs[a].entries;
    let lb = &logs[b].entries;
    let same = match (la.get(fa..fa + n), lb.get(fb..fb + n)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    };
    let window = (fa == 0 || fb == 0) && (fa + n == la.len() || fb + n == lb.len());
    if !(same && window) {
        push_room_error(
            errors,
            format!(
                "room {room}: subscriptions of conn {} ({} deliveries) and conn {} \
                 ({} deliveries) disagree on their {} common broadcasts (a \
                 broadcast missing for one of them, or a different order)",
                logs[a].conn,
                la.len(),
                logs[b].conn,
                lb.len(),
                n
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soak::stamp::make_body;

    fn reply(conn: u64, seq: u64, len: usize) -> (Vec<u8>, Stamp) {
        make_body(ECHO_MAGIC, conn, seq, len)
    }

    #[test]
    fn body_roundtrip_and_corruption() {
        let (mut b, st) = reply(7, 3, 1000);
        assert_eq!(parse_body(ECHO_MAGIC, &b), Ok(st));
        assert!(parse_body(PUB_MAGIC, &b).is_err());
        b[500] ^= 1;
        assert!(parse_body(ECHO_MAGIC, &b).unwrap_err().contains("checksum"));
        let (b, _) = reply(7, 3, 1000);
        assert!(parse_body(ECHO_MAGIC, &b[..999]).is_err());
        assert!(parse_body(ECHO_MAGIC, &b[..10]).is_err());
    }

    #[test]
    fn echo_in_order_passes() {
        let mut c = ConnChecker::new(1);
        let bodies: Vec<_> = (0..5).map(|i| reply(1, i, 64 + i as usize)).collect();
        for (_, st) in &bodies {
            c.sent(Sent::Echo(*st));
        }
        for (b, _) in &bodies {
            c.on_frame(Kind::EchoReply, 0, b).unwrap();
        }
        assert_eq!((c.answered, c.outstanding()), (5, 0));
    }

    #[test]
    fn echo_corrupted_missing_reordered_duplicated_fail() {
        let bodies: Vec<_> = (0..3).map(|i| reply(1, i, 100)).collect();
        let fresh = || {
            let mut c = ConnChecker::new(1);
            for (_, st) in &bodies {
                c.sent(Sent::Echo(*st));
            }
            c
        };
        // Corrupted.
        let mut c = fresh();
        let mut bad = bodies[0].0.clone();
        bad[80] ^= 0x10;
        assert!(c.on_frame(Kind::EchoReply, 0, &bad).is_err());
        // Missing (seq 1 skipped).
        let mut c = fresh();
        c.on_frame(Kind::EchoReply, 0, &bodies[0].0).unwrap();
        assert!(c.on_frame(Kind::EchoReply, 0, &bodies[2].0).is_err());
        // Reordered.
        let mut c = fresh();
        assert!(c.on_frame(Kind::EchoReply, 0, &bodies[1].0).is_err());
        // Duplicated.
        let mut c = fresh();
        c.on_frame(Kind::EchoReply, 0, &bodies[0].0).unwrap();
        assert!(c.on_frame(Kind::EchoReply, 0, &bodies[0].0).is_err());
        // Unsolicited.
        let mut c = ConnChecker::new(1);
        assert!(c.on_frame(Kind::EchoReply, 0, &bodies[0].0).is_err());
        // A reply of the right stamp from another connection's payload.
        let mut c = fresh();
        let (other, _) = reply(2, 0, 100);
        assert!(c.on_frame(Kind::EchoReply, 0, &other).is_err());
    }

    #[test]
    fn delivery_outside_subscription_fails() {
        let (d, _) = make_body(PUB_MAGIC, 9, 0, 64);
        let mut c = ConnChecker::new(1);
        assert!(c.on_frame(Kind::Delivery, 2, &d).is_err());
        // Joined: accepted; after the leave barrier: refused.
        let mut c = ConnChecker::new(1);
        let (barrier, st) = reply(1, 0, 64);
        c.sent(Sent::Join(2));
        c.sent(Sent::Leave(2, st));
        c.on_frame(Kind::Delivery, 2, &d).unwrap();
        assert!(c.on_frame(Kind::Delivery, 3, &d).is_err());
        c.on_frame(Kind::EchoReply, 0, &barrier).unwrap();
        assert_eq!(c.epochs.len(), 1);
        assert_eq!(c.epochs[0].entries, vec![(9, 0)]);
        assert!(c.on_frame(Kind::Delivery, 2, &d).is_err());
        // A corrupted delivery.
        let mut c = ConnChecker::new(1);
        c.sent(Sent::Join(2));
        let mut bad = d.clone();
        bad[40] ^= 4;
        assert!(c.on_frame(Kind::Delivery, 2, &bad).is_err());
    }

    fn log(conn: u64, entries: &[(u64, u64)]) -> EpochLog {
        EpochLog {
            room: 1,
            conn,
            entries: entries.to_vec(),
        }
    }

    #[test]
    fn rooms_consistent_windows_pass() {
        // Room order: a0 b0 a1 b1 a2 b2; three overlapping windows.
        let logs = [
            log(1, &[(10, 0), (11, 0), (10, 1), (11, 1), (10, 2), (11, 2)]),
            log(2, &[(10, 1), (11, 1), (10, 2)]),
            log(3, &[(11, 0), (10, 1)]),
            log(4, &[(10, 2), (11, 2)]),
        ];
        assert_eq!(check_rooms(&logs), Vec::<String>::new());
    }

    #[test]
    fn rooms_gap_reorder_and_missed_broadcast_fail() {
        // A gap in one publisher's sequence.
        assert!(!check_rooms(&[log(1, &[(10, 0), (10, 2)])]).is_empty());
        // Reordered.
        assert!(!check_rooms(&[log(1, &[(10, 1), (10, 0)])]).is_empty());
        // Duplicated.
        assert!(!check_rooms(&[log(1, &[(10, 0), (10, 0)])]).is_empty());
        // Subscriber 2 misses b0, which subscriber 1 saw between a0 and a1
        // (per-publisher sequences still look consecutive to 2).
        let logs = [
            log(1, &[(10, 0), (11, 0), (10, 1)]),
            log(2, &[(10, 0), (10, 1)]),
        ];
        assert!(!check_rooms(&logs).is_empty());
        // Two publishers interleaved differently.
        let logs = [
            log(1, &[(10, 0), (11, 0), (10, 1)]),
            log(2, &[(11, 0), (10, 0), (10, 1)]),
        ];
        assert!(!check_rooms(&logs).is_empty());
        // Subscriber 2 misses the broadcast at the end of 1's window while
        // seeing later ones.
        let logs = [
            log(1, &[(10, 0), (11, 0)]),
            log(2, &[(10, 0), (12, 0)]),
            log(3, &[(11, 0), (12, 0)]),
        ];
        assert!(!check_rooms(&logs).is_empty());
    }
}
