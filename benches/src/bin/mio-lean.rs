//! The lean hand-written mio server (see `benches::peers::mio_lean`):
//! `mio-lean --tcp 127.0.0.1:0 [--workers N]` prints `listening tcp ADDR`
//! and serves until killed (or, with `--stdin-control`, until standard
//! input closes).

allocators::global_allocator!();

fn main() {
    std::process::exit(benches::peers::run_main(benches::peers::PeerKind::MioLean));
}
