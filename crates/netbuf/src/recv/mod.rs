//! The receive path: a [`Framing`](framing::Framing) says where frames
//! begin and end; a receive buffer reads bytes from a socket and decodes
//! them with it.
//!
//! * [`framing`]: the trait, [`HeaderBytes`](framing::HeaderBytes),
//!   [`Frame`](framing::Frame) and the errors;
//!   [`LengthDelimited`](framing::LengthDelimited), the ready-made framing.
//! * [`LinearBuffer`]: one contiguous buffer with lazy compaction.
//! * [`ChainedBuffer`]: a chain of pool blocks; an idle session holds none.
//! * [`FrameSource`] / [`ReceiveBuffer`]: either, chosen at run time.
//! * [`ReadUninit`]: sockets that read into uninitialised memory, so
//!   large bodies are not zeroed before each read.

mod chained;
pub mod framing;
mod length_delimited;
mod linear;
mod source;
mod uninit;

pub use chained::{ChainStats, ChainedBuffer};
pub use linear::{
    Compaction, DEFAULT_RECV_CAPACITY, DIRECT_HEAD_READ, LinearBuffer, PROBE_READ, RecvStats,
};
pub use source::{FrameSource, ReceiveBuffer};
#[cfg(unix)]
pub use uninit::read_fd;
pub use uninit::{ReadUninit, read_zeroed};
