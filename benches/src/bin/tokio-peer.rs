//! The idiomatic tokio + `LengthDelimitedCodec` peer server
//! (see `benches::peers::tokio_peer`): `tokio-peer --tcp 127.0.0.1:0`
//! prints `listening tcp ADDR` and serves until killed.

allocators::global_allocator!();

fn main() {
    std::process::exit(benches::peers::run_main(
        benches::peers::PeerKind::TokioPeer,
    ));
}
