//! The send path: a per-session [`Flusher`] turns frames into as few
//! writes as possible (small ones copied into one buffer, large ones
//! gathered without a copy), with an optional per-session [`Transform`];
//! [`calibrate`] measures where gathering starts to pay on this machine.

mod calibrate;
mod flush;
mod transform;

pub use calibrate::{Calibration, calibrate, calibrated, calibrated_threshold};
pub use flush::{
    DEFAULT_GATHER_THRESHOLD, FlushError, FlushMetrics, Flushed, Flusher, GatherThreshold, MAX_IOV,
    OutFrame, Transport,
};
#[cfg(feature = "chacha20")]
pub use transform::ChaCha20Transform;
pub use transform::Transform;
