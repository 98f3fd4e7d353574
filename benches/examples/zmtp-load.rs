//! Drives one ZMTP ROUTER endpoint with the benchmark's libzmq load, for
//! counting what the server does per message (strace -c, callgrind):
//!
//! ```text
//! cargo run --release -p benches --example zmtp-load -- echo|ping EP SIZE SECONDS
//! ```

use std::time::Duration;

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() != 4 {
        eprintln!("usage: zmtp-load echo|ping EP SIZE SECONDS");
        std::process::exit(2);
    }
    let size: usize = a[2].parse().expect("SIZE");
    let run = Duration::from_secs_f64(a[3].parse().expect("SECONDS"));
    let m = match a[0].as_str() {
        "echo" => benches::zmtp::load::throughput(&a[1], size, 1, 64, run),
        _ => benches::zmtp::load::latency(&a[1], size, run),
    }
    .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "messages {} per_sec {:.0} p50_us {:?} p99_us {:?}",
        m.messages,
        m.per_sec(),
        m.p50_us,
        m.p99_us
    );
}
