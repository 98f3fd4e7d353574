use server_demo::config::{Listen, StrategyArgs};
use server_demo::load::*;
use server_demo::server::Server;
#[test]
fn against_real_server() {
    let cfg = StrategyArgs {
        max_frame: 2 << 20,
        ..StrategyArgs::default()
    };
    let server = Server::start(
        Listen {
            tcp: Some("127.0.0.1:0".parse().unwrap()),
            unix: None,
        },
        cfg,
    )
    .unwrap();
    let t = Target::Tcp(server.tcp_addr().unwrap());
    let to = std::time::Duration::from_secs(30);
    let mut plan = LoadPlan::new();
    plan.progress = Some(false);
    for size in [64usize, 4096, 64 << 10, 1 << 20] {
        plan.push(
            EchoThroughput::new(t.clone(), size, if size > 100_000 { 300 } else { 20_000 })
                .with_timeout(to),
        );
        plan.push(EchoLatency::new(t.clone(), size, 500).with_timeout(to));
    }
    plan.push(
        EchoThroughput::new(t.clone(), 64, 50_000)
            .with_connections(2)
            .with_timeout(to),
    );
    for subs in [1usize, 16, 256, 1000] {
        plan.push(
            FanOut::new(
                t.clone(),
                64,
                subs,
                (200_000 / subs as u64).clamp(50, 20_000),
            )
            .with_timeout(to),
        );
    }
    let r = plan.run();
    println!("{}", render_table(&r));
    let leaks = server.shutdown();
    println!("{leaks}");
}
