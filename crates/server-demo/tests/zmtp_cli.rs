//! `server-demo serve` with ZMTP endpoints, as the interop tests drive it:
//! one `listening zmtp-KIND ENDPOINT` line per endpoint on stdout, the
//! endpoints serve, SIGTERM stops it cleanly (exit 0).

mod zmtp_client;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use zmtp_client::Client;

#[test]
fn serve_prints_one_line_per_endpoint_and_serves() {
    let ipc = std::env::temp_dir().join(format!("zmtp-cli-{}.sock", std::process::id()));
    let ipc = format!("ipc://{}", ipc.display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_server-demo"))
        .args([
            "serve",
            "--zmtp-router",
            "tcp://127.0.0.1:0",
            "--zmtp-router",
            &ipc,
            "--zmtp-pair",
            "tcp://127.0.0.1:0",
            "--zmtp-xsub",
            "tcp://127.0.0.1:0",
            "--zmtp-xpub",
            "tcp://127.0.0.1:0",
            "--tcp",
            "127.0.0.1:0",
            "--gather-threshold",
            "16384",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut eps = Vec::new();
    for _ in 0..6 {
        let line = lines.next().unwrap().unwrap();
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts.len(), 3, "{line}");
        assert_eq!(parts[0], "listening", "{line}");
        eps.push((parts[1].to_string(), parts[2].to_string()));
    }
    assert_eq!(eps[0].0, "tcp", "the demo protocol's line is unchanged");
    let kinds: Vec<&str> = eps[1..].iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "zmtp-router",
            "zmtp-router",
            "zmtp-pair",
            "zmtp-xsub",
            "zmtp-xpub"
        ]
    );
    assert_eq!(eps[2].1, ipc);
    for (_, addr) in &eps[1..] {
        if addr.starts_with("tcp://") {
            let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
            assert!(addr.starts_with("tcp://127.0.0.1:") && port != 0, "{addr}");
        }
    }
    let mut c = Client::tcp(&eps[1].1);
    c.handshake("DEALER");
    c.send_message(&[b"", b"via the binary"]);
    assert_eq!(
        c.read_message(),
        vec![b"".to_vec(), b"via the binary".to_vec()]
    );
    let mut c = Client::ipc(&eps[2].1);
    c.handshake("REQ");
    c.send_message(&[b"", b"over ipc"]);
    assert_eq!(c.read_message(), vec![b"".to_vec(), b"over ipc".to_vec()]);
    // SAFETY: `kill` with a child's pid and SIGTERM only signals it.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}
