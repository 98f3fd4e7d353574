//! The load generator's one transport against the real server: echo and
//! ping-pong over the in-process transport (`Target::Inproc`), echo to a
//! server that enciphers its replies (`--transform chacha20`) with the
//! client deciphering them, and the typed errors where a combination does
//! not fit.

use std::time::Duration;

use server_demo::config::{Listen, StrategyArgs, TransformMode};
use server_demo::load::{
    EchoLatency, EchoThroughput, FanOut, LoadError, Outcome, Target, Workload,
};
use server_demo::server::Server;

/// Starts `cfg` with room for 256 KiB bodies.
fn start(cfg: StrategyArgs) -> Server {
    let cfg = StrategyArgs {
        max_frame: 1 << 20,
        ..cfg
    };
    Server::start(
        Listen {
            tcp: Some("127.0.0.1:0".parse().unwrap()),
            unix: None,
        },
        cfg,
    )
    .expect("server starts")
}

fn echo(size: usize, messages: u64, decipher: bool) -> Workload {
    Workload::Echo {
        size,
        messages,
        decipher,
    }
}

/// Waits for every session to close, then stops the server: nothing leaks.
fn stop(s: Server) {
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while s.live_sessions() > 0 && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(s.live_sessions(), 0, "every session closed");
    assert!(s.shutdown().is_clean());
}

/// A 64 B echo to `target` whose replies must fail their check (not time
/// out): deciphered when they are not enciphered, or the other way round.
fn check_fails(target: Target, decipher: bool) {
    let e = EchoThroughput::new(target, 64, 100)
        .with_decipher(decipher)
        .with_timeout(Duration::from_secs(20))
        .run()
        .expect_err("replies read with the wrong keystream do not check");
    assert!(
        !matches!(e, LoadError::Timeout { .. } | LoadError::Connect { .. }),
        "{e}"
    );
}

#[test]
fn echo_and_ping_pong_over_the_in_process_transport() {
    let s = start(StrategyArgs {
        io_threads: 2,
        ..StrategyArgs::default()
    });
    let target = Target::Inproc(s.inproc_connector());
    assert_eq!(target.to_string(), "inproc");
    assert_eq!(target, Target::Inproc(s.inproc_connector()));
    for size in [64, 256 << 10] {
        let o: Outcome = echo(size, 200, false).run(target.clone()).unwrap();
        assert_eq!(o.units, 200);
        assert!(o.per_sec > 0.0);
    }
    let r = EchoThroughput::new(target.clone(), 1000, 400)
        .with_connections(2)
        .run()
        .unwrap();
    assert_eq!(r.messages, 399);
    let l = EchoLatency::new(target.clone(), 64, 50).run().unwrap();
    assert_eq!(l.round_trips, 50);
    // Fan-out polls its subscribers' sockets: an in-process target has none.
    let e = FanOut::new(target, 64, 2, 5).run().unwrap_err();
    assert!(e.to_string().contains("in-process"), "{e}");
    stop(s);
}

#[test]
fn deciphered_echo_against_the_chacha20_transform() {
    let s = start(StrategyArgs {
        transform: TransformMode::Chacha20,
        ..StrategyArgs::default()
    });
    let tcp = Target::Tcp(s.tcp_addr().unwrap());
    for (size, messages) in [(64, 2_000), (1024, 500), (256 << 10, 20)] {
        let o = echo(size, messages, true).run(tcp.clone()).unwrap();
        assert_eq!(o.units, messages);
    }
    let inproc = Target::Inproc(s.inproc_connector());
    echo(100, 300, true).run(inproc).unwrap();
    // Without deciphering, the first reply's header is noise.
    check_fails(tcp, false);
    stop(s);
}

#[test]
fn deciphering_a_plain_server_fails_the_check() {
    let s = start(StrategyArgs::default());
    // A plain reply deciphered is noise.
    check_fails(Target::Tcp(s.tcp_addr().unwrap()), true);
    stop(s);
}
