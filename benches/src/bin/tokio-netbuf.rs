//! A tokio server with netbuf's data path (see
//! `benches::peers::tokio_netbuf`): `tokio-netbuf --tcp 127.0.0.1:0` prints
//! `listening tcp ADDR` and serves until killed.

allocators::global_allocator!();

fn main() {
    std::process::exit(benches::peers::run_main(
        benches::peers::PeerKind::TokioNetbuf,
    ));
}
