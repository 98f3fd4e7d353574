//! ZMTP 3.0 / 3.1 (rfc.zeromq.org specs 23 and 37) with the NULL
//! mechanism, on netbuf's data path: real libzmq peers (pyzmq, the `zmq`
//! crate, JeroMQ) connect to the server's ZMTP endpoints.
//!
//! | module | concept |
//! |---|---|
//! | [`greeting`] | the 64-byte greeting, version detection from the first bytes |
//! | [`frame`] | frames as a `netbuf::framing::Framing` (flags, 1/8-byte sizes, limit before allocation) |
//! | [`command`] | READY (metadata), ERROR, PING / PONG, SUBSCRIBE / CANCEL |
//! | [`socket_type`] | socket types, endpoint kinds, compatibility |
//! | [`subscription`] | prefix matching with libzmq's counting; 3.0 subscription messages |
//! | [`session`] | the per-connection state machine (no IO) |
//! | [`endpoint`] | endpoint addresses and per-endpoint counters |
//! | [`client`] | a small blocking client (load, soak, tests) |
//! | `broker` | the XSUB / XPUB broker (`zmq_proxy`) |
//! | `conn` | a connection on its IO thread: receive buffer, handlers, queue, flusher |
//!
//! The endpoints (`serve --zmtp-router / --zmtp-pair / --zmtp-xsub /
//! --zmtp-xpub`):
//!
//! * ROUTER: every message goes back to the peer that sent it, all parts,
//!   in order (DEALER, REQ, ROUTER peers; a REQ peer's empty delimiter is
//!   echoed, so its envelope is preserved).
//! * PAIR: echo, one peer at a time (a second one gets ERROR).
//! * XSUB + XPUB: a broker as `zmq_proxy(XSUB, XPUB)` (see `broker`).
//!
//! Handlers run inline on the connection's IO thread (no logic-thread
//! handoff). Anything invalid closes that connection alone, after an ERROR
//! command where the peer can parse one, with one log line.
//!
//! ```
//! use netbuf::framing::decode_frame;
//! use server_demo::zmtp::frame::{FrameFlags, ZmtpFraming, ZmtpHeader};
//! use server_demo::zmtp::greeting::OUR_GREETING;
//!
//! // The greeting is delimited by the same framing as the frames after it.
//! let g = ZmtpFraming::greeting(1 << 20);
//! let (frame, used) = decode_frame(&g, &OUR_GREETING).unwrap().unwrap();
//! assert_eq!((frame.header, used), (ZmtpHeader::Greeting { major: 3 }, 64));
//! let f = ZmtpFraming::frames(1 << 20);
//! let (frame, _) = decode_frame(&f, &[1, 2, b'h', b'i']).unwrap().unwrap();
//! assert_eq!(frame.header, ZmtpHeader::Frame(FrameFlags::message(true)));
//! ```

pub(crate) mod broker;
pub mod client;
pub mod command;
pub(crate) mod conn;
pub mod endpoint;
pub mod error;
pub mod frame;
pub mod greeting;
pub mod session;
pub mod socket_type;
pub mod subscription;

use std::sync::Arc;

pub use endpoint::{EndpointAddr, EndpointReport, EndpointSpec};
pub use error::ZmtpError;
pub use socket_type::{EndpointKind, SocketType};

/// The ZMTP side of a running server: its endpoints and the broker.
#[derive(Debug)]
pub(crate) struct ZmtpState {
    /// Listening endpoints, in the order they were given.
    pub(crate) endpoints: Vec<Arc<endpoint::Endpoint>>,
    /// The in-process endpoints, one per kind (`EndpointKind::ALL` order).
    pub(crate) inproc: Vec<Arc<endpoint::Endpoint>>,
    pub(crate) broker: broker::Broker,
}

impl ZmtpState {
    pub(crate) fn new(pool: netbuf::MessagePool) -> ZmtpState {
        ZmtpState {
            endpoints: Vec::new(),
            inproc: EndpointKind::ALL
                .into_iter()
                .map(|k| {
                    Arc::new(endpoint::Endpoint::new(
                        k,
                        format!("inproc://{}", k.label()),
                    ))
                })
                .collect(),
            broker: broker::Broker::new(pool),
        }
    }

    pub(crate) fn inproc(&self, kind: EndpointKind) -> &Arc<endpoint::Endpoint> {
        let i = EndpointKind::ALL
            .iter()
            .position(|&k| k == kind)
            .unwrap_or_default();
        &self.inproc[i]
    }
}
