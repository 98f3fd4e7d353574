//! `zmq-ref`: the ZMTP reference server built on libzmq (a ROUTER that
//! echoes, a PAIR that echoes, `zmq_proxy(XSUB, XPUB)`), with the same
//! command line and `listening` lines as `server-demo serve`'s ZMTP flags.
//!
//! ```text
//! cargo run --release -p benches --bin zmq-ref -- --zmtp-router tcp://127.0.0.1:0 \
//!     --zmtp-xsub tcp://127.0.0.1:0 --zmtp-xpub tcp://127.0.0.1:0
//! ```

use benches::zmtp::reference::{RefArgs, main_with};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "libzmq reference server: ROUTER echo, PAIR echo, XSUB/XPUB proxy")]
struct Cli {
    #[command(flatten)]
    args: RefArgs,
}

fn main() {
    let cli = Cli::parse();
    std::process::exit(main_with(&cli.args, false));
}
