//! The XSUB / XPUB broker with ZMTP clients written in the test:
//! subscriptions forwarded to publishers (3.1 commands and 3.0 messages,
//! libzmq-style counting), prefix matching, whole multi-part delivery, and
//! a subscriber that never reads missing whole messages without stalling
//! the publisher or a fast subscriber.

mod zmtp_client;

use server_demo::config::StrategyArgs;
use server_demo::zmtp::EndpointKind;
use zmtp_client::{Client, Frame, TestServer, eventually};

fn subscriber(t: &TestServer, minor: u8) -> Client {
    let mut s = t.connect(EndpointKind::Xpub);
    s.handshake_v("SUB", minor);
    s
}

fn publisher(t: &TestServer, minor: u8) -> Client {
    let mut p = t.connect(EndpointKind::Xsub);
    p.handshake_v("PUB", minor);
    p
}

/// The next subscription a publisher is told: (subscribe, topic).
fn next_subscription(p: &mut Client, zmtp_3_1: bool) -> (bool, Vec<u8>) {
    let f: Frame = p.read_frame().unwrap().expect("a subscription");
    if zmtp_3_1 {
        match f.command_name() {
            Some(b"SUBSCRIBE") => (true, f.body[10..].to_vec()),
            Some(b"CANCEL") => (false, f.body[7..].to_vec()),
            other => panic!("not a subscription: {other:?}"),
        }
    } else {
        assert!(!f.is_command() && !f.more());
        (f.body[0] == 1, f.body[1..].to_vec())
    }
}

fn members(t: &TestServer, subs: usize, pubs: usize) {
    eventually("broker members", || {
        t.server().zmtp_broker_members() == (subs, pubs)
    });
}

#[test]
fn subscriptions_are_forwarded_with_counting() {
    let t = TestServer::start(StrategyArgs::default());
    let mut p31 = publisher(&t, 1);
    let mut p30 = publisher(&t, 0);
    let mut a = subscriber(&t, 1);
    let mut b = subscriber(&t, 0);
    members(&t, 2, 2);
    // 3.1 SUBSCRIBE command from a, 3.0 message form from b.
    a.send_command("SUBSCRIBE", b"news");
    assert_eq!(next_subscription(&mut p31, true), (true, b"news".to_vec()));
    assert_eq!(next_subscription(&mut p30, false), (true, b"news".to_vec()));
    b.send_message(&[b"\x01news"]);
    b.send_message(&[b"\x01sport"]);
    // "news" was already forwarded: only "sport" goes up.
    assert_eq!(next_subscription(&mut p31, true), (true, b"sport".to_vec()));
    assert_eq!(
        next_subscription(&mut p30, false),
        (true, b"sport".to_vec())
    );
    a.send_command("CANCEL", b"news"); // b still wants it: nothing sent
    b.send_message(&[b"\x00sport"]);
    assert_eq!(
        next_subscription(&mut p31, true),
        (false, b"sport".to_vec())
    );
    assert_eq!(
        next_subscription(&mut p30, false),
        (false, b"sport".to_vec())
    );
    // A publisher that connects later is told every live prefix.
    let mut late = publisher(&t, 1);
    assert_eq!(next_subscription(&mut late, true), (true, b"news".to_vec()));
    // The last subscriber of "news" leaves: cancelled upstream.
    drop(b);
    assert_eq!(next_subscription(&mut p31, true), (false, b"news".to_vec()));
    assert_eq!(
        next_subscription(&mut late, true),
        (false, b"news".to_vec())
    );
    drop((a, p30));
    t.finish();
}

#[test]
fn messages_reach_matching_subscribers_whole() {
    let t = TestServer::start(StrategyArgs::default());
    let mut p = publisher(&t, 1);
    let mut all = subscriber(&t, 1);
    let mut news = subscriber(&t, 1);
    let mut none = subscriber(&t, 0);
    members(&t, 3, 1);
    all.send_command("SUBSCRIBE", b"");
    news.send_command("SUBSCRIBE", b"news");
    news.send_command("SUBSCRIBE", b"ne"); // two matching prefixes: one delivery
    for _ in 0..2 {
        next_subscription(&mut p, true);
    }
    next_subscription(&mut p, true);
    p.send_message(&[b"news/1", b"", b"body"]);
    p.send_message(&[b"weather", b"rain"]);
    p.send_message(&[b"news/2"]);
    assert_eq!(
        all.read_message(),
        vec![b"news/1".to_vec(), b"".to_vec(), b"body".to_vec()]
    );
    assert_eq!(
        all.read_message(),
        vec![b"weather".to_vec(), b"rain".to_vec()]
    );
    assert_eq!(all.read_message(), vec![b"news/2".to_vec()]);
    assert_eq!(
        news.read_message(),
        vec![b"news/1".to_vec(), b"".to_vec(), b"body".to_vec()]
    );
    assert_eq!(news.read_message(), vec![b"news/2".to_vec()]);
    // After CANCEL of both prefixes, news gets nothing more; the 3.0
    // subscriber that never subscribed got nothing at all.
    news.send_command("CANCEL", b"news");
    news.send_command("CANCEL", b"ne");
    news.send_command("PING", &[0, 0]);
    let pong = news.read_frame().unwrap().unwrap();
    assert_eq!(pong.command_name(), Some(&b"PONG"[..]));
    p.send_message(&[b"news/3"]);
    assert_eq!(all.read_message(), vec![b"news/3".to_vec()]);
    none.send_command("PING", &[0, 0]);
    let f = none.read_frame().unwrap().unwrap();
    assert_eq!(f.command_name(), Some(&b"PONG"[..]));
    news.send_command("PING", &[0, 0]);
    let f = news.read_frame().unwrap().unwrap();
    assert_eq!(f.command_name(), Some(&b"PONG"[..]), "no news/3 before it");
    drop((all, news, none, p));
    let stats = t.finish();
    let xpub = stats.iter().find(|r| r.kind == EndpointKind::Xpub).unwrap();
    assert_eq!(xpub.messages_out, 6, "{xpub}");
    assert_eq!(xpub.messages_dropped, 0);
}

/// A subscriber that never reads misses whole messages once its queue is
/// full; the publisher and a fast subscriber go on, and every message the
/// fast one gets is whole and in order.
#[test]
fn slow_subscriber_misses_whole_messages_without_stalling_others() {
    let t = TestServer::start(StrategyArgs {
        send_queue_bytes: 512 << 10,
        max_frame: 64 << 10,
        ..StrategyArgs::default()
    });
    let mut p = publisher(&t, 1);
    let mut fast = subscriber(&t, 1);
    let mut slow = subscriber(&t, 1);
    members(&t, 2, 1);
    fast.send_command("SUBSCRIBE", b"t");
    slow.send_command("SUBSCRIBE", b"t");
    next_subscription(&mut p, true);
    // Paced to the fast subscriber (as the report's load generator paces
    // to the slowest one it waits for), so the fast one's bound is never
    // reached; the slow one never reads and its bound is.
    const N: u32 = 3000;
    const BATCH: u32 = 20;
    let payload = vec![7u8; 8 << 10];
    for batch in 0..N / BATCH {
        for i in batch * BATCH..(batch + 1) * BATCH {
            p.send_message(&[b"t", &i.to_be_bytes(), &payload]);
        }
        for i in batch * BATCH..(batch + 1) * BATCH {
            let m = fast.read_message();
            assert_eq!(m.len(), 3, "whole message");
            assert_eq!(m[1], i.to_be_bytes(), "in order, none missed");
            assert_eq!(m[2].len(), 8 << 10);
        }
    }
    // Every publish is done (the fast one got them all): the slow one's
    // misses are counted, and it reads what was kept for it: whole
    // messages, in order, with gaps where it missed some.
    let stats = t.server().zmtp_stats();
    let xpub = stats.iter().find(|r| r.kind == EndpointKind::Xpub).unwrap();
    let missed = xpub.messages_dropped;
    assert!(missed > 0, "the slow subscriber missed messages: {xpub}");
    assert_eq!(xpub.messages_out + missed, 2 * u64::from(N), "{xpub}");
    let mut last = None;
    for _ in 0..u64::from(N) - missed {
        let m = slow.read_message();
        assert_eq!(m.len(), 3, "whole message");
        assert_eq!(m[2].len(), 8 << 10);
        let n = u32::from_be_bytes(m[1].clone().try_into().unwrap());
        assert!(last.is_none_or(|l| n > l), "in order");
        last = Some(n);
    }
    // Nothing else was queued for it.
    slow.send_command("PING", &[0, 0]);
    let f = slow.read_frame().unwrap().unwrap();
    assert_eq!(f.command_name(), Some(&b"PONG"[..]));
    drop((p, fast, slow));
    t.finish();
}

#[test]
fn inproc_publisher_and_subscriber() {
    let t = TestServer::start(StrategyArgs::default());
    let mut s = Client::new(t.server().connect_zmtp_inproc(EndpointKind::Xpub));
    s.handshake("XSUB");
    let mut p = Client::new(t.server().connect_zmtp_inproc(EndpointKind::Xsub));
    p.handshake("XPUB");
    members(&t, 1, 1);
    s.send_message(&[b"\x01a"]);
    assert_eq!(next_subscription(&mut p, true), (true, b"a".to_vec()));
    p.send_message(&[b"abc", b"def"]);
    assert_eq!(s.read_message(), vec![b"abc".to_vec(), b"def".to_vec()]);
    drop((s, p));
    t.finish();
}
